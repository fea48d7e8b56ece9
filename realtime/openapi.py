"""OpenAPI descriptions of the SSE and presence endpoints (plain Django views DRF cannot see)."""

from __future__ import annotations

from typing import Any

_ERROR = {
    "description": "Refused before the stream starts",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"detail": {"type": "string"}, "code": {"type": "string"}}}
        }
    },
}
_STREAM_PARAMETERS = [
    {"name": "query", "in": "query", "schema": {"type": "string"}, "description": "Live query, e.g. `price>100`."},
    {
        "name": "token",
        "in": "query",
        "schema": {"type": "string"},
        "description": "API token, or a stream token from POST /api/v1/realtime/tokens (EventSource cannot "
        "send headers; a stream token keeps the account token out of URLs).",
    },
    {"name": "user_id", "in": "query", "schema": {"type": "string"}, "description": "Presence identity."},
    {
        "name": "user_name",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Presence name (anonymous callers).",
    },
    {
        "name": "last_event_id",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Resume after this event id (the `Last-Event-ID` header wins).",
    },
]
_SUBSCRIBE = {
    "name": "subscribe",
    "in": "query",
    "schema": {"type": "string"},
    "description": 'Several live queries on one stream, as JSON: `{"<label>": {"collection": "<name or *>", '
    '"query": "<query>"}}` (at most 20 labels of `[A-Za-z0-9_-]{1,32}`; not with `query`). Each event is sent '
    "once, with `subscriptions` (the labels it matched) and `left` (those whose query the record left).",
}
_STREAM_RESPONSES = {
    "200": {
        "description": "`text/event-stream`: `connected`, then record.*, collection.* and user.* events",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    **{code: _ERROR for code in ("400", "401", "403", "404", "503")},
    "429": {
        **_ERROR,
        "description": "Too many open streams, or too many opened in the last minute (per user, or per IP "
        "when anonymous, across all workers); the latter with `Retry-After`",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}},
    },
}


def paths() -> dict[str, Any]:
    return {
        "/api/v1/realtime": {
            "get": {
                "operationId": "realtime_stream",
                "summary": "Events of every collection you may list, and presence; or several live queries",
                "tags": ["realtime"],
                "parameters": [*_STREAM_PARAMETERS, _SUBSCRIBE],
                "responses": _STREAM_RESPONSES,
            }
        },
        "/api/v1/realtime/{name}": {
            "get": {
                "operationId": "realtime_collection_stream",
                "summary": "Events of one collection",
                "tags": ["realtime"],
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    *_STREAM_PARAMETERS,
                ],
                "responses": _STREAM_RESPONSES,
            }
        },
        "/api/v1/presence": {
            "get": {
                "operationId": "presence",
                "summary": "Who is connected (sorted by user_id)",
                "tags": ["presence"],
                "responses": {
                    "200": {
                        "description": "Present users; `X-Last-Event-ID` header for a gapless subscribe",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "users": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "properties": {
                                                    "user_id": {"type": "string"},
                                                    "user_name": {"type": "string", "nullable": True},
                                                    "connections": {"type": "integer"},
                                                    "last_seen": {"type": "string", "format": "date-time"},
                                                },
                                            },
                                        },
                                        "count": {"type": "integer"},
                                    },
                                }
                            }
                        },
                    },
                    "503": {**_ERROR, "description": "Presence cannot be known now (`realtime_unavailable`)"},
                },
            }
        },
    }
