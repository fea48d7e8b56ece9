/**
 * FastCMS real-time client: many live queries over one Server-Sent Events stream.
 *
 *   import { createRealtime } from '/static/fastcms/realtime.js';
 *   const rt = createRealtime({ token });                 // or getToken, or nothing (anonymous/session)
 *   const stop = rt.subscribe('posts', 'status=published', (event) => console.log(event));
 *   const list = rt.live('products', 'price>100', (records) => render(records));
 *
 * One ES module, no dependency, no build step. Every subscription of one client shares one
 * stream (`GET /api/v1/realtime?subscribe=...`); adding or removing one reconnects it, resuming
 * from the last event seen, so nothing is lost. The stream is read with `fetch()` rather than
 * `EventSource`, because EventSource hides status codes (a 404 and a 503 look alike, and it
 * stops for good on either) and cannot back off with jitter; resuming, backoff and stream
 * tokens are all handled here. The account token is only ever sent in an `Authorization`
 * header (to get short-lived stream tokens and to read lists); the stream URL carries a stream
 * token, so no header is needed there and a cross-origin stream needs no preflight.
 *
 * @module fastcms/realtime
 */

const STREAM_PATH = '/api/v1/realtime';
const TOKENS_PATH = '/api/v1/realtime/tokens';
const PRESENCE_PATH = '/api/v1/presence';
const MAX_SUBSCRIPTIONS = 20; // distinct (collection, query) pairs on one stream
const MAX_DELAY_MS = 30000;
const DEFAULT_RETRY_MS = 3000;
const DEBOUNCE_MS = 25; // subscriptions changed within this window cost one reconnect
const PAGE_SIZE = 500;
const RENEW_MARGIN_MS = 60000; // a stream token is renewed when it has less than this left
const PRESENCE_QUERY = 'id=""'; // no record has an empty id: only presence (and collection) events
const RECORD_EVENTS = new Set(['record.created', 'record.updated', 'record.deleted']);

/**
 * An event as the server sends it (the seed's envelope; `subscriptions` and `left` are the
 * server's labels on a multiplexed stream).
 * @typedef {Object} RealtimeEvent
 * @property {string|null} id
 * @property {string} type
 * @property {string|null} collection
 * @property {string|null} record_id
 * @property {any} data
 * @property {string} timestamp
 * @property {string[]} [subscriptions]
 * @property {string[]} [left]
 */

/**
 * What a subscription learns about an event beyond the envelope.
 * @typedef {Object} EventInfo
 * @property {boolean} left true when an update took the record out of this subscription's query (or out of your view): drop it
 */

/**
 * A refusal from the server (`{detail, code}` plus the HTTP status), or a network failure (status 0).
 * @typedef {Object} RealtimeError
 * @property {number} status
 * @property {string} code
 * @property {string} detail
 * @property {number|null} [position] where an invalid query went wrong
 */

/** @typedef {'connecting'|'open'|'closed'} RealtimeState */

/**
 * Told to state listeners with each change of state or error.
 * @typedef {Object} StateInfo
 * @property {RealtimeError|null} error why the last attempt failed, if it did
 * @property {number|null} retryInMs when the next attempt starts, while waiting for it
 * @property {RealtimeEvent|null} connected the `connected` event of the open stream
 * @property {string|null} url the stream's URL, its token left out
 */

/**
 * @typedef {Object} RealtimeOptions
 * @property {string} [baseUrl] where the API is, e.g. `https://cms.example.com` (default: this page's origin)
 * @property {string} [token] an account token (sent only in an Authorization header)
 * @property {() => (string|null|Promise<string|null>)} [getToken] returns an account token, asked each time one is needed
 * @property {string} [userId] presence: the user this client counts as (anonymous callers, or staff)
 * @property {string} [userName] presence: the name shown for an anonymous `userId`
 * @property {RequestCredentials} [credentials] cookies on requests (default `same-origin`: a signed-in session works)
 * @property {(state: RealtimeState, info: StateInfo) => void} [onStateChange]
 */

/**
 * @typedef {Object} SubscribeOptions
 * @property {() => void} [onRefetch] a resume was not possible (history too old, or the server restarted): reload
 * @property {(error: RealtimeError) => void} [onError] the server refused this subscription; it has ended
 */

/**
 * Ids increase; the server's have the form `<number>-<number>` ("0" before the first event).
 * @param {string|null} a
 * @param {string|null} b
 * @returns {number} negative, 0 or positive; a null id comes before any other
 */
export function compareIds(a, b) {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  const [ams, aseq] = idParts(a);
  const [bms, bseq] = idParts(b);
  return ams - bms || aseq - bseq;
}

/** @param {string} id */
function idParts(id) {
  const match = /^(\d+)-(\d+)$/.exec(id);
  return match ? [Number(match[1]), Number(match[2])] : [0, 0];
}

/** @param {string|null} a @param {string|null} b */
function newer(a, b) {
  return compareIds(a, b) >= 0 ? a : b;
}

/**
 * `{status, code, detail}` from an error response.
 * @param {Response} response
 * @returns {Promise<RealtimeError & {label?: string}>}
 */
async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: described by its status
  }
  if (body && typeof body.detail === 'string') {
    return { status: response.status, code: String(body.code || 'error'), detail: body.detail,
      position: typeof body.position === 'number' ? body.position : null, label: body.label };
  }
  if (body && typeof body === 'object') { // validation errors: {"field": ["message"]}
    const detail = Object.entries(body).map(([key, value]) => `${key}: ${[].concat(value).join(' ')}`).join('\n');
    return { status: response.status, code: 'invalid', detail };
  }
  return { status: response.status, code: 'error', detail: `${response.status} ${response.statusText}`.trim() };
}

/** @param {number} ms @param {AbortSignal} signal */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(undefined); }, { once: true });
  });
}

/** Order of the REST list: by `created`, then by id. @param {any} a @param {any} b */
function byCreated(a, b) {
  if (a.created !== b.created) return a.created < b.created ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Read a `text/event-stream` body, calling `onMessage(type, data, id)` per event and
 * `onComment()` per comment line, as the HTML standard's EventSource parser does.
 * @param {ReadableStream<Uint8Array>} body
 * @param {{onMessage: (type: string, data: string, id: string|null) => void, onComment: () => void, onRetry: (ms: number) => void}} handlers
 */
async function readEventStream(body, { onMessage, onComment, onRetry }) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let type = '';
  let data = [];
  let id = null;
  let first = true;
  const line = (text) => {
    if (text === '') {
      if (data.length) onMessage(type || 'message', data.join('\n'), id);
      type = '';
      data = [];
      return;
    }
    if (text.startsWith(':')) {
      onComment();
      return;
    }
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id' && !value.includes('\0')) id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) onRetry(Number(value));
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      if (first && buffer) {
        if (buffer.charCodeAt(0) === 0xfeff) buffer = buffer.slice(1);
        first = false;
      }
      // A lone \r at the end may be half of a \r\n: wait for the next chunk.
      const lines = buffer.split(/\r\n|\r(?!$)|\n/);
      buffer = lines.pop() ?? '';
      for (const text of lines) line(text);
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * One (collection, query) on the stream, under a label; several subscriptions may share it.
 * @typedef {Object} Channel
 * @property {string} label
 * @property {string} collection
 * @property {string} query
 * @property {Set<Subscription>} subs
 * @property {boolean} onStream true while the stream being opened or read carries it
 */

/**
 * @typedef {Object} Subscription
 * @property {Channel} channel
 * @property {(event: RealtimeEvent, info: EventInfo) => void} onEvent
 * @property {() => void} [onRefetch]
 * @property {(error: RealtimeError) => void} [onError]
 * @property {string|null} seen events up to this id are not for it (null: from whenever the stream starts)
 * @property {boolean} attached whether the stream being read was opened with it (else it waits for the next one)
 */

/** The client; make one with `createRealtime`. */
export class Realtime {
  /** @param {RealtimeOptions} [options] */
  constructor(options = {}) {
    this.baseUrl = (options.baseUrl || '').replace(/\/+$/, '');
    this.options = options;
    /** @type {RealtimeState} */
    this.state = 'closed';
    /** @type {StateInfo} */
    this.info = { error: null, retryInMs: null, connected: null, url: null };
    /** @type {Map<string, Channel>} by collection and query */
    this.channels = new Map();
    /** @type {Map<string, Channel>} by label */
    this.labels = new Map();
    this.labelCount = 0;
    /** @type {Set<(state: RealtimeState, info: StateInfo) => void>} */
    this.listeners = new Set();
    if (options.onStateChange) this.listeners.add(options.onStateChange);
    this.latest = null; // the newest event id the stream has given (or its cursor)
    this.pendingCursor = null; // a resumed stream's cursor, trusted once its replay has been read
    this.retryMs = DEFAULT_RETRY_MS;
    this.attempt = 0;
    this.generation = 0; // bumped by every (re)start, so a superseded loop stops
    this.controller = null;
    this.timer = null;
    this.closed = false;
    this.streamToken = null; // {token, renewAt}
    this.tokenRetried = false; // a refused stream token was replaced once since the last open stream
    this.onOnline = () => { if (this.state === 'connecting') this.restart(); };
    if (typeof window !== 'undefined') window.addEventListener('online', this.onOnline);
  }

  /**
   * Receive the events of `collection` (or `"*"`: every collection you may list, and presence)
   * that match `query`. Events sent before this call are not delivered.
   * @param {string} collection
   * @param {string} query a live query (`""` for every record)
   * @param {(event: RealtimeEvent, info: EventInfo) => void} onEvent
   * @param {SubscribeOptions} [options]
   * @returns {() => void} unsubscribe
   */
  subscribe(collection, query, onEvent, options = {}) {
    const sub = this.add(collection, query || '', onEvent, options, this.latest);
    return () => this.remove(sub);
  }

  /**
   * A list kept equal to what `GET /api/v1/collections/{collection}/records/?query=` returns (all
   * pages, ordered by `created`): loaded, then kept by the stream, reloaded when a resume fails.
   * @param {string} collection
   * @param {string} query
   * @param {(records: any[]) => void} [onChange] after each change, with the new list
   * @param {{onError?: (error: RealtimeError) => void}} [options]
   * @returns {LiveQuery}
   */
  live(collection, query, onChange, options = {}) {
    if (!collection || collection === '*') throw new TypeError('live() needs one collection');
    return new LiveQuery(this, collection, query || '', onChange, options.onError);
  }

  /**
   * Who is connected (`GET /api/v1/presence`), kept by the stream's user.joined and user.left.
   * @param {(users: any[]) => void} [onChange] after each change, with the new list
   * @param {{onError?: (error: RealtimeError) => void}} [options]
   * @returns {PresenceList}
   */
  presence(onChange, options = {}) {
    return new PresenceList(this, onChange, options.onError);
  }

  /**
   * Listen to state changes; returns a function that stops listening.
   * @param {(state: RealtimeState, info: StateInfo) => void} listener
   * @returns {() => void}
   */
  onState(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** End every subscription and the stream. */
  close() {
    this.closed = true;
    this.generation += 1;
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
    for (const channel of this.channels.values()) channel.subs.clear();
    this.channels.clear();
    this.labels.clear();
    if (typeof window !== 'undefined') window.removeEventListener('online', this.onOnline);
    this.setState('closed', { retryInMs: null, connected: null });
  }

  // --- subscriptions ----------------------------------------------------------------------

  /**
   * @param {string} collection @param {string} query
   * @param {(event: RealtimeEvent, info: EventInfo) => void} onEvent
   * @param {SubscribeOptions} options
   * @param {string|null} seen
   * @returns {Subscription}
   */
  add(collection, query, onEvent, options, seen) {
    if (this.closed) throw new Error('this realtime client is closed');
    const key = JSON.stringify([collection, query]);
    let channel = this.channels.get(key);
    if (!channel) {
      if (this.channels.size >= MAX_SUBSCRIPTIONS) {
        throw new RangeError(`at most ${MAX_SUBSCRIPTIONS} different live queries share one connection`);
      }
      this.labelCount += 1;
      channel = { label: `q${this.labelCount}`, collection, query, subs: new Set(), onStream: false };
      this.channels.set(key, channel);
      this.labels.set(channel.label, channel);
    }
    // On the stream already, and needing nothing from before it: it joins the stream as it is.
    // Else a reconnect resumes from its position, so it misses nothing (while the stream's own
    // position is not known yet, `opened` decides).
    const known = this.latest !== null;
    const attached = channel.onStream && (seen === null || (known && compareIds(seen, this.latest) >= 0));
    /** @type {Subscription} */
    const sub = { channel, onEvent, onRefetch: options.onRefetch, onError: options.onError, seen, attached };
    channel.subs.add(sub);
    if (!attached && (known || !channel.onStream)) this.schedule();
    return sub;
  }

  /** @param {Subscription} sub */
  remove(sub) {
    const { channel } = sub;
    if (!channel.subs.delete(sub) || channel.subs.size) return;
    this.dropChannel(channel);
    this.schedule();
  }

  /** @param {Channel} channel */
  dropChannel(channel) {
    this.channels.delete(JSON.stringify([channel.collection, channel.query]));
    this.labels.delete(channel.label);
  }

  /** Reconnect soon with the new set of subscriptions (changes made meanwhile share it). */
  schedule() {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.restart(), DEBOUNCE_MS);
  }

  /** Drop the current stream (or the wait for the next attempt) and connect now. */
  restart() {
    clearTimeout(this.timer);
    this.generation += 1;
    if (this.controller) this.controller.abort();
    this.run(this.generation);
  }

  /** @param {RealtimeState} state @param {Partial<StateInfo>} [info] */
  setState(state, info = {}) {
    this.state = state;
    this.info = { ...this.info, ...info };
    for (const listener of [...this.listeners]) {
      try {
        listener(state, this.info);
      } catch (error) {
        rethrowLater(error);
      }
    }
  }

  // --- the connection -----------------------------------------------------------------------

  /** Connect, read, reconnect with backoff, until superseded, closed or refused for good. @param {number} generation */
  async run(generation) {
    const controller = new AbortController();
    this.controller = controller;
    while (generation === this.generation) {
      if (this.channels.size === 0) {
        this.setState('closed', { retryInMs: null, connected: null, url: null });
        return;
      }
      this.setState('connecting', { retryInMs: null, connected: null });
      let outcome;
      try {
        outcome = await this.connectOnce(controller.signal);
      } catch (error) {
        if (generation !== this.generation) return;
        outcome = { error: NETWORK_ERROR };
      }
      if (generation !== this.generation) return;
      for (const channel of this.channels.values()) channel.onStream = false;
      if (outcome.again) continue;
      if (outcome.fatal) {
        this.setState('closed', { error: outcome.error, retryInMs: null, connected: null });
        return;
      }
      const delay = this.nextDelay(outcome.retryAfterMs);
      this.setState('connecting', { error: outcome.error ?? null, retryInMs: delay, connected: null });
      await sleep(delay, controller.signal);
    }
  }

  /** Exponential backoff from the server's `retry`, with jitter, at most 30 s. @param {number} [atLeastMs] */
  nextDelay(atLeastMs = 0) {
    const ceiling = Math.min(MAX_DELAY_MS, this.retryMs * 2 ** Math.min(this.attempt, 16));
    this.attempt += 1;
    return Math.max(atLeastMs, Math.round(ceiling * (0.5 + Math.random() / 2)));
  }

  /**
   * One stream: open it, read it until it ends. Resolves with what to do next.
   * @param {AbortSignal} signal
   * @returns {Promise<{again?: boolean, fatal?: boolean, error?: RealtimeError, retryAfterMs?: number}>}
   */
  async connectOnce(signal) {
    let token = null;
    try {
      token = await this.currentStreamToken();
    } catch (error) {
      if (signal.aborted) throw error;
      const refused = isRefusal(error) ? error : NETWORK_ERROR;
      if (!isFinal(refused)) return { error: refused };
      this.endAll(refused);
      return { fatal: true, error: refused };
    }
    const channels = [...this.channels.values()]; // as they are now, after the wait for a token
    if (channels.length === 0) return { again: true };
    const resumeFrom = this.resumePoint(channels);
    for (const channel of channels) {
      channel.onStream = true;
      for (const sub of channel.subs) sub.attached = true;
    }
    const params = new URLSearchParams();
    params.set('subscribe', JSON.stringify(Object.fromEntries(
      channels.map((c) => [c.label, { collection: c.collection, query: c.query }]))));
    if (resumeFrom !== null) params.set('last_event_id', resumeFrom);
    if (this.options.userId) params.set('user_id', this.options.userId);
    if (this.options.userName) params.set('user_name', this.options.userName);
    const shown = `${this.baseUrl}${STREAM_PATH}?${params}`;
    if (token) params.set('token', token);
    this.info = { ...this.info, url: shown };
    const response = await fetch(`${this.baseUrl}${STREAM_PATH}?${params}`, {
      headers: { Accept: 'text/event-stream' },
      cache: 'no-store',
      credentials: this.options.credentials ?? 'same-origin',
      signal,
    });
    if (!response.ok) return this.refused(response, Boolean(token));
    if (!response.body) {
      const error = { status: 0, code: 'unsupported', detail: 'This browser cannot read a response as a stream.' };
      this.endAll(error);
      return { fatal: true, error };
    }
    await readEventStream(response.body, {
      onMessage: (type, data, id) => this.message(type, data, id, resumeFrom, channels),
      onComment: () => this.settleCursor(),
      onRetry: (ms) => { this.retryMs = ms; },
    });
    return {}; // the server ended the stream (maximum age, overflow, shutdown): resume
  }

  /**
   * Where to resume: the oldest position among the subscriptions (null: start fresh).
   * @param {Channel[]} channels
   */
  resumePoint(channels) {
    let oldest = null;
    let any = false;
    for (const channel of channels) {
      for (const sub of channel.subs) {
        if (sub.seen === null) continue;
        oldest = any ? (compareIds(sub.seen, oldest) < 0 ? sub.seen : oldest) : sub.seen;
        any = true;
      }
    }
    return any ? oldest : null;
  }

  /**
   * A refused stream: drop the subscription the server named, renew the token, or back off.
   * @param {Response} response @param {boolean} usedToken
   */
  async refused(response, usedToken) {
    const { label, ...error } = await errorOf(response);
    const channel = label ? this.labels.get(label) : undefined;
    if (channel && isFinal(error)) {
      // That subscription alone is refused (its collection is gone, its query invalid, ...): it
      // ends and the others go on.
      const own = { ...error, detail: error.detail.replace(/^subscribe\[[^\]]*\]: /, '') };
      const subs = [...channel.subs];
      this.dropChannel(channel);
      channel.subs.clear();
      for (const sub of subs) callSafely(sub.onError, own);
      return { again: true, error: own };
    }
    if (error.status === 401 && usedToken && !this.tokenRetried) {
      this.tokenRetried = true; // expired, or the credentials changed: try one new stream token
      this.streamToken = null;
      return { again: true, error };
    }
    if (!isFinal(error)) {
      const retryAfter = Number(response.headers.get('Retry-After'));
      return { error, retryAfterMs: Number.isFinite(retryAfter) ? retryAfter * 1000 : 0 };
    }
    this.endAll(error);
    return { fatal: true, error };
  }

  /**
   * The server refused the stream itself (a bad token, a forbidden user id, ...): every
   * subscription ends, told why.
   * @param {RealtimeError} error
   */
  endAll(error) {
    const subs = [];
    for (const channel of this.channels.values()) {
      subs.push(...channel.subs);
      channel.subs.clear();
    }
    this.channels.clear();
    this.labels.clear();
    for (const sub of subs) callSafely(sub.onError, error);
  }

  /** A stream token for the URL (null without an account token: anonymous or session). */
  async currentStreamToken() {
    const cached = this.streamToken;
    if (cached?.token && Date.now() < cached.renewAt) return cached.token;
    const account = await this.accountToken();
    if (!account) return null;
    const response = await fetch(`${this.baseUrl}${TOKENS_PATH}`, {
      method: 'POST',
      headers: { Authorization: `Token ${account}`, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
    });
    if (!response.ok) throw await errorOf(response);
    const { token, expires } = await response.json();
    // Lifetime by the server's clock (its Date header), so a wrong local clock does no harm.
    const serverNow = Date.parse(response.headers.get('Date') || '') || Date.now();
    const lifetime = parseTime(expires) - serverNow;
    const renewIn = Math.max(0, Math.min(lifetime - RENEW_MARGIN_MS, lifetime / 2));
    this.streamToken = { token, renewAt: Date.now() + renewIn };
    return token;
  }

  /** The account token, from `token` or `getToken` (asked each time). */
  async accountToken() {
    if (this.options.getToken) return (await this.options.getToken()) || null;
    return this.options.token || null;
  }

  /** Headers for REST reads: the account token, if any, in `Authorization`. */
  async apiHeaders() {
    const account = await this.accountToken();
    return account ? { Accept: 'application/json', Authorization: `Token ${account}` } : { Accept: 'application/json' };
  }

  /**
   * GET a JSON resource of the API.
   * @param {string} path @returns {Promise<Response>}
   */
  async get(path) {
    const response = await fetch(`${this.baseUrl}${path}`, {
      headers: await this.apiHeaders(),
      cache: 'no-store',
      credentials: this.options.credentials ?? 'same-origin',
    });
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  // --- events ------------------------------------------------------------------------------

  /**
   * @param {string} type @param {string} data @param {string|null} id
   * @param {string|null} resumeFrom @param {Channel[]} channels the stream's subscriptions
   */
  message(type, data, id, resumeFrom, channels) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    if (type === 'connected') {
      this.opened(event, resumeFrom, channels);
      return;
    }
    if (id === null || event.id === null) return;
    this.settleCursor(id);
    const left = new Set(event.left || []);
    for (const label of event.subscriptions || []) {
      const channel = this.labels.get(label);
      if (!channel) continue;
      for (const sub of [...channel.subs]) {
        if (!sub.attached || (sub.seen !== null && compareIds(id, sub.seen) <= 0)) continue; // not yet, or seen
        callSafely(sub.onEvent, event, { left: left.has(label) });
      }
      if (event.type === 'collection.deleted' && channel.collection !== '*') {
        this.dropChannel(channel); // the server has ended it
        channel.subs.clear();
      }
    }
    // Everything up to `id` has now been seen by the subscriptions this stream carries.
    for (const channel of channels) {
      for (const sub of channel.subs) {
        if (sub.attached && (sub.seen === null || compareIds(id, sub.seen) > 0)) sub.seen = id;
      }
    }
    this.latest = newer(id, this.latest);
  }

  /**
   * `connected`: the stream is open; a fresh one starts its subscriptions at its cursor, a failed
   * resume asks them to reload.
   * @param {RealtimeEvent} event @param {string|null} resumeFrom @param {Channel[]} channels
   */
  opened(event, resumeFrom, channels) {
    const { cursor = null, recovered = null } = event.data || {};
    this.attempt = 0;
    this.tokenRetried = false;
    const refetch = [];
    for (const channel of channels) {
      for (const sub of channel.subs) {
        if (!sub.attached) continue;
        if (recovered === false && sub.seen !== null) refetch.push(sub);
        if (sub.seen === null || recovered === false) sub.seen = cursor;
      }
    }
    if (resumeFrom === null || recovered === false) {
      this.latest = newer(cursor, this.latest);
      this.pendingCursor = null;
    } else {
      this.pendingCursor = cursor; // the replay follows; trusted once something after it arrives
    }
    // Subscriptions added to these channels while the stream was opening: those needing nothing
    // from before its cursor join it; the others wait for a reconnect from their position.
    let behind = false;
    for (const channel of channels) {
      for (const sub of channel.subs) {
        if (sub.attached) continue;
        if (sub.seen === null || compareIds(sub.seen, cursor) >= 0) sub.attached = true;
        else behind = true;
      }
    }
    if (behind) this.schedule();
    this.setState('open', { error: null, retryInMs: null, connected: event });
    for (const sub of refetch) callSafely(sub.onRefetch);
  }

  /**
   * Once a resumed stream has sent anything after its replay, its cursor is a safe position for
   * everyone (so an idle subscription does not fall behind the history).
   * @param {string|null} [id] the id of a live event, if that is what arrived
   */
  settleCursor(id = null) {
    const cursor = this.pendingCursor;
    if (cursor === null || (id !== null && compareIds(id, cursor) <= 0)) return;
    this.pendingCursor = null;
    for (const channel of this.channels.values()) {
      for (const sub of channel.subs) {
        if (sub.attached && compareIds(cursor, sub.seen) > 0) sub.seen = cursor;
      }
    }
    this.latest = newer(cursor, this.latest);
  }
}

const NETWORK_ERROR = Object.freeze({ status: 0, code: 'network', detail: 'The server cannot be reached.' });

/** @param {any} error @returns {error is RealtimeError} */
function isRefusal(error) {
  return Boolean(error) && typeof error.status === 'number' && typeof error.detail === 'string';
}

/** A refusal that the same request would meet again (4xx but 429), unlike an overload or an outage. @param {RealtimeError} error */
function isFinal(error) {
  return error.status >= 400 && error.status < 500 && error.status !== 429;
}

/** @param {string} text ISO 8601 with microseconds */
function parseTime(text) {
  return Date.parse(String(text).replace(/(\.\d{3})\d+/, '$1'));
}

/** @param {Function|undefined} fn @param {...any} args */
function callSafely(fn, ...args) {
  if (!fn) return;
  try {
    fn(...args);
  } catch (error) {
    rethrowLater(error);
  }
}

/** A listener's exception is reported (as uncaught), never allowed to break the stream. @param {unknown} error */
function rethrowLater(error) {
  setTimeout(() => { throw error; });
}

/**
 * A snapshot read over REST, then kept current by the stream from the snapshot's event id (what
 * `LiveQuery` and `PresenceList` share). Loading retries with backoff until it succeeds, unless the
 * server refuses for good (a 4xx other than 429): then it fails, with `error` and `onError`.
 * Events that arrive while a snapshot loads wait for it, and only those after it are applied.
 */
class Snapshot {
  /**
   * @param {Realtime} rt
   * @param {((value: any[]) => void)|undefined} onChange
   * @param {((error: RealtimeError) => void)|undefined} onError
   */
  constructor(rt, onChange, onError) {
    this.rt = rt;
    this.onChange = onChange;
    this.onError = onError;
    /** @type {RealtimeError|null} the last refusal; while loading, the error it retries after */
    this.error = null;
    this.closed = false;
    this.loading = false;
    /** @type {Array<[RealtimeEvent, EventInfo]>|null} events that arrived during a load */
    this.buffer = null;
    /** @type {(() => void)|null} */
    this.unsubscribe = null;
    /** Settles when the first load is done (subclasses start it once their fields are set). */
    this.ready = Promise.resolve();
  }

  /** Stop following. */
  close() {
    this.closed = true;
    if (this.unsubscribe) this.unsubscribe();
    this.unsubscribe = null;
  }

  /** Read the snapshot (retrying), subscribe from its event id once, then apply what arrived meanwhile. */
  async load() {
    this.loading = true;
    this.buffer = [];
    let loaded;
    for (let attempt = 0; !this.closed; attempt += 1) {
      try {
        loaded = await this.read();
        this.error = null;
        break;
      } catch (error) {
        const refused = /** @type {RealtimeError} */ (error);
        if (isFinal(refused)) {
          this.fail(refused);
          return;
        }
        this.error = refused;
        await sleep(Math.min(MAX_DELAY_MS, DEFAULT_RETRY_MS * 2 ** attempt) * (0.5 + Math.random() / 2),
          new AbortController().signal);
      }
    }
    if (this.closed || !loaded || this.rt.closed) return;
    const buffered = this.buffer ?? [];
    this.buffer = null;
    this.loading = false;
    this.take(loaded.value);
    if (!this.unsubscribe) {
      const [collection, query] = this.topic();
      try {
        const sub = this.rt.add(collection, query, (event, info) => this.receive(event, info),
          { onRefetch: () => this.reload(), onError: (error) => this.fail(error) }, loaded.since);
        this.unsubscribe = () => this.rt.remove(sub);
      } catch (error) {
        this.fail({ status: 0, code: 'too_many_subscriptions', detail: String(/** @type {Error} */ (error).message) });
        return;
      }
    }
    for (const [event, info] of buffered) {
      if (compareIds(event.id, loaded.since) > 0) this.apply(event, info);
    }
    this.changed();
  }

  reload() {
    if (!this.loading && !this.closed) this.load();
  }

  /** @param {RealtimeError} error */
  fail(error) {
    this.error = error;
    this.close();
    callSafely(this.onError, error);
  }

  /** @param {RealtimeEvent} event @param {EventInfo} info */
  receive(event, info) {
    if (this.buffer) {
      this.buffer.push([event, info]);
      return;
    }
    if (this.apply(event, info)) this.changed();
  }

  changed() {
    callSafely(this.onChange, this.value());
  }

  /* What a subclass gives: */

  /** @returns {Promise<{value: any[], since: string}>} the snapshot and its `X-Last-Event-ID` */
  async read() {
    throw new Error('not implemented');
  }

  /** @returns {[string, string]} the stream subscription: collection (or `*`) and query */
  topic() {
    throw new Error('not implemented');
  }

  /** Replace the state with a snapshot's. @param {any[]} value */
  take(value) {
    throw new Error('not implemented');
  }

  /** @returns {any[]} the state given to `onChange` */
  value() {
    throw new Error('not implemented');
  }

  /**
   * @param {RealtimeEvent} event @param {EventInfo} info
   * @returns {boolean} whether the state changed
   */
  apply(event, info) {
    throw new Error('not implemented');
  }
}

/**
 * A live list; from `rt.live()`. `records` is replaced (never mutated) on each change.
 */
export class LiveQuery extends Snapshot {
  /**
   * @param {Realtime} rt @param {string} collection @param {string} query
   * @param {((records: any[]) => void)|undefined} onChange
   * @param {((error: RealtimeError) => void)|undefined} onError
   */
  constructor(rt, collection, query, onChange, onError) {
    super(rt, onChange, onError);
    this.collection = collection;
    this.query = query;
    /** @type {any[]} */
    this.records = [];
    this.ready = this.load();
  }

  /** Every page (keyset by `created`, `id`). */
  async read() {
    const { records, since } = await fetchAll(this.rt, this.collection, this.query);
    return { value: records, since };
  }

  /** @returns {[string, string]} */
  topic() {
    return [this.collection, this.query];
  }

  /** @param {any[]} records */
  take(records) {
    this.records = records;
  }

  value() {
    return this.records;
  }

  /**
   * @param {RealtimeEvent} event @param {EventInfo} info
   * @returns {boolean} whether the list changed
   */
  apply(event, info) {
    const { type, data } = event;
    if (type === 'collection.updated') {
      this.reload(); // rules or fields changed: what the list shows may have changed everywhere
      return false;
    }
    if (type === 'collection.deleted') {
      this.records = [];
      this.close();
      return true;
    }
    if (!RECORD_EVENTS.has(type) || !data) return false;
    const id = event.record_id;
    const without = this.records.filter((record) => record.id !== id);
    if (type === 'record.deleted' || info.left) {
      if (without.length === this.records.length) return false;
      this.records = without;
      return true;
    }
    let index = without.length;
    while (index > 0 && byCreated(without[index - 1], data) > 0) index -= 1; // usually at the end
    without.splice(index, 0, data);
    this.records = without;
    return true;
  }
}

/**
 * Every page of a record list, and the `X-Last-Event-ID` of the first read.
 * @param {Realtime} rt @param {string} collection @param {string} query
 * @returns {Promise<{records: any[], since: string}>}
 */
async function fetchAll(rt, collection, query) {
  const path = `/api/v1/collections/${encodeURIComponent(collection)}/records/`;
  const records = [];
  let since = null;
  let after = null; // the last record read: the next page starts after it (keyset, so no page shifts)
  let page = 1;
  let keyset = true;
  for (;;) {
    const params = new URLSearchParams({ page_size: String(PAGE_SIZE), ordering: 'created' });
    let filter = query;
    if (after && keyset) {
      const where = `created > "${after.created}" || (created = "${after.created}" && id > "${after.id}")`;
      filter = query.trim() ? `(${query}) && (${where})` : where;
    } else if (after) {
      params.set('page', String(page));
    }
    if (filter.trim()) params.set('query', filter);
    let response;
    try {
      response = await rt.get(`${path}?${params}`);
    } catch (error) {
      if (after && keyset && /** @type {RealtimeError} */ (error).status === 400) {
        keyset = false; // the query plus the keyset is over the language's limits: pages by number
        continue;
      }
      throw error;
    }
    since ??= response.headers.get('X-Last-Event-ID') || '0';
    const body = await response.json();
    records.push(...body.results);
    if (!body.next || body.results.length === 0) break;
    after = body.results[body.results.length - 1];
    page += 1;
  }
  const unique = new Map(records.map((record) => [record.id, record]));
  return { records: [...unique.values()].sort(byCreated), since };
}

/** The presence list; from `rt.presence()`. `users` is replaced on each change, sorted by user_id. */
export class PresenceList extends Snapshot {
  /**
   * @param {Realtime} rt
   * @param {((users: any[]) => void)|undefined} onChange
   * @param {((error: RealtimeError) => void)|undefined} onError
   */
  constructor(rt, onChange, onError) {
    super(rt, onChange, onError);
    /** @type {any[]} */
    this.users = [];
    this.ready = this.load();
  }

  async read() {
    const response = await this.rt.get(PRESENCE_PATH);
    const since = response.headers.get('X-Last-Event-ID') || '0';
    const body = await response.json();
    return { value: body.users, since };
  }

  /** @returns {[string, string]} */
  topic() {
    return ['*', PRESENCE_QUERY];
  }

  /** @param {any[]} users */
  take(users) {
    this.users = [...users];
  }

  value() {
    return this.users;
  }

  /** @param {RealtimeEvent} event @returns {boolean} */
  apply(event) {
    if (event.type !== 'user.joined' && event.type !== 'user.left') return false;
    const user = event.data;
    const others = this.users.filter((item) => item.user_id !== user.user_id);
    if (event.type === 'user.joined') {
      others.push(user);
      others.sort((a, b) => (a.user_id < b.user_id ? -1 : a.user_id > b.user_id ? 1 : 0));
    }
    this.users = others;
    return true;
  }
}

/**
 * A real-time client. Every subscription, live list and presence list made with it shares one
 * stream; `close()` ends them all.
 * @param {RealtimeOptions} [options]
 * @returns {Realtime}
 */
export function createRealtime(options = {}) {
  return new Realtime(options);
}
