"""The cluster's event log in Redis: its keys, its bounded append, and reading entries back.

One Redis Stream holds every event; its entry ids are the event ids. Each entry has the fields
`k` (kind: `r` for record and collection events, `p` for presence and internal events), `o` (the
origin key the appending process gave it) and `e` (the event, `Event.to_wire`).

Appending is one Lua script, so the bounds always hold: record and collection events are kept
up to `FASTCMS_HISTORY_SIZE` entries, `FASTCMS_HISTORY_BYTES` bytes and `FASTCMS_HISTORY_SECONDS`;
presence and internal events have a bound of their own (the same count and age, listed in
`<log>:ephemeral` and removed with XDEL), so their churn never evicts a record event. The newest
trimmed record or collection id is the watermark (`<log>:trimmed`): a resume from before it is not
`recovered`. `<log>:origin` is the first id of this log, so ids of an older log (Redis restarted
empty) are recognised.

The relay's batches are fenced by its lock and deduplicated by the outbox row keys it has
appended (`realtime.backends.redis_relay`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from realtime.backends.base import parse_id
from realtime.events import COLLECTION_TYPES, RECORD_TYPES, CollectionInfo, Event

logger = logging.getLogger(__name__)

KEPT, EPHEMERAL = "r", "p"  # record/collection events; presence and internal events
FENCED = "FENCED"  # the error of a relay batch whose lock was lost

# KEYS: 1 stream, 2 byte count, 3 trimmed watermark, 4 origin, 5 ephemeral ids (list),
#       6 relay lock, 7 relayed outbox keys (sorted set scored by row id)
# ARGV: 1 size, 2 age in ms, 3 bytes, 4 relay token ('' when not a relay batch), 5 floor (relayed
#       keys of rows below it are forgotten; ''), 6 '0' to release the lock after, else its new
#       lease in ms,
#       then for each entry: kind, origin key, payload, relayed member ('' for none), its score.
# Returns the new entry ids, '' for an entry whose outbox row was appended before.
APPEND = """
local size, age, max_bytes, token = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
if token ~= '' then
  if redis.call('GET', KEYS[6]) ~= token then
    return redis.error_reply('FENCED the relay lock was lost')
  end
  if ARGV[5] ~= '' then redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. ARGV[5]) end
end
local bytes = tonumber(redis.call('GET', KEYS[2]) or '0')
local ids = {}
for i = 7, #ARGV, 5 do
  local kind, member, payload = ARGV[i], ARGV[i + 3], ARGV[i + 2]
  if member ~= '' and redis.call('ZSCORE', KEYS[7], member) then
    ids[#ids + 1] = ''
  else
    if member ~= '' then redis.call('ZADD', KEYS[7], ARGV[i + 4], member) end
    local id = redis.call('XADD', KEYS[1], '*', 'k', kind, 'o', ARGV[i + 1], 'e', payload)
    redis.call('SET', KEYS[4], id, 'NX')
    if kind == 'p' then redis.call('RPUSH', KEYS[5], id) else bytes = bytes + #payload end
    ids[#ids + 1] = id
  end
end
if token ~= '' then
  if ARGV[6] == '0' then redis.call('DEL', KEYS[6]) else redis.call('PEXPIRE', KEYS[6], ARGV[6]) end
end

local now = redis.call('TIME')
local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - age
local function ms(id) return tonumber(string.match(id, '^(%d+)')) or 0 end
while true do
  local n = redis.call('LLEN', KEYS[5])
  if n == 0 then break end
  local head = redis.call('LINDEX', KEYS[5], 0)
  if n <= size and ms(head) >= cutoff then break end
  redis.call('LPOP', KEYS[5])
  redis.call('XDEL', KEYS[1], head)
end
local kept = redis.call('XLEN', KEYS[1]) - redis.call('LLEN', KEYS[5])
while kept > 0 do
  local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  if not head then break end
  if kept <= size and bytes <= max_bytes and ms(head[1]) >= cutoff then break end
  redis.call('XDEL', KEYS[1], head[1])
  local kind, payload = nil, ''
  for j = 1, #head[2], 2 do
    if head[2][j] == 'k' then kind = head[2][j + 1] elseif head[2][j] == 'e' then payload = head[2][j + 1] end
  end
  if kind == 'p' then
    redis.call('LREM', KEYS[5], 1, head[1])
  else
    kept = kept - 1
    bytes = bytes - #payload
    redis.call('SET', KEYS[3], head[1])
  end
end
if kept <= 0 or bytes < 0 then bytes = 0 end
redis.call('SET', KEYS[2], bytes)
return ids
"""


@dataclass(frozen=True, slots=True)
class LogKeys:
    """The Redis keys of one log (prefix `FASTCMS_REDIS_PREFIX`)."""

    stream: str
    bytes: str
    trimmed: str
    origin: str
    ephemeral: str
    lock: str
    relayed: str

    @classmethod
    def for_prefix(cls, prefix: str) -> LogKeys:
        log = f"{prefix}:events"
        return cls(
            stream=log,
            bytes=f"{log}:bytes",
            trimmed=f"{log}:trimmed",
            origin=f"{log}:origin",
            ephemeral=f"{log}:ephemeral",
            lock=f"{log}:relay-lock",
            relayed=f"{log}:relayed",
        )

    def as_list(self) -> list[str]:
        """KEYS of the append script, in its order."""
        return [self.stream, self.bytes, self.trimmed, self.origin, self.ephemeral, self.lock, self.relayed]


@dataclass(frozen=True, slots=True)
class Entry:
    """One event to append: its kind, origin key and payload; `member` and `score` (the outbox
    row's key and id) when it comes from the outbox, so it is appended once."""

    kind: str
    key: str
    payload: str
    member: str = ""
    score: int = 0


@dataclass(frozen=True, slots=True)
class Bounds:
    size: int
    seconds: float
    bytes: int


def kind_of(event_type: str) -> str:
    """Record and collection events are kept for resumes; the others have their own bound."""
    return KEPT if event_type in RECORD_TYPES or event_type in COLLECTION_TYPES else EPHEMERAL


def append_args(
    entries: list[Entry],
    bounds: Bounds,
    *,
    token: str = "",
    floor: int | None = None,
    release: bool = False,
    lease_ms: int = 0,
) -> list[Any]:
    """ARGV of the append script (no entries: only trim to the bounds). A relay batch (`token`)
    releases the relay lock after it, or extends its lease to `lease_ms`."""
    args: list[Any] = [
        bounds.size,
        int(bounds.seconds * 1000),
        bounds.bytes,
        token,
        "" if floor is None else floor,
        "0" if release else max(1, lease_ms),
    ]
    for entry in entries:
        args += [entry.kind, entry.key, entry.payload, entry.member, entry.score]
    return args


def text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _field(fields: dict[Any, Any], name: str) -> str | None:
    value = fields.get(name.encode(), fields.get(name))
    return text(value)


def origin_key(fields: dict[Any, Any]) -> str | None:
    """The origin key of an entry (None when it has none)."""
    return _field(fields, "o")


def parse_entry(entry_id: str, fields: dict[Any, Any]) -> Event | None:
    """The event of a log entry, or None (logged) when the entry is malformed."""
    try:
        wire = json.loads(_field(fields, "e") or "")
        schema = wire.get("schema")
        event = Event(
            type=_typed(wire["type"], str),
            collection=_typed(wire.get("collection"), str, optional=True),
            record_id=_typed(wire.get("record_id"), str, optional=True),
            data=_typed(wire["data"], dict),
            timestamp=_typed(wire["timestamp"], str),
            previous=_typed(wire.get("previous"), dict, optional=True),
            schema=CollectionInfo.from_dict(schema) if schema is not None else None,
            id=entry_id,
        )
        if event.type in RECORD_TYPES and (event.schema is None or event.record_id is None):
            raise ValueError("a record event without its collection or record id")
        if event.type in COLLECTION_TYPES and event.schema is None:
            raise ValueError("a collection event without its collection")
    except Exception as exc:  # any shape of garbage: skip the entry, keep the log readable
        logger.error("skipping malformed event log entry %s: %s", entry_id, exc)
        return None
    return event


def _typed(value: Any, kind: type, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def id_key(event_id: str | bytes | None) -> tuple[int, int] | None:
    """A log id as a sortable pair (None for none or a malformed one)."""
    value = text(event_id)
    return parse_id(value) if value is not None else None
