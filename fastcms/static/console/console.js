// FastCMS live console: one EventSource for the chosen stream, one for presence, plain DOM.
// Every value from the server is written with textContent or setAttribute, never as HTML.
'use strict';

(() => {
  const EVENT_TYPES = [
    'record.created', 'record.updated', 'record.deleted',
    'collection.created', 'collection.updated', 'collection.deleted',
    'user.joined', 'user.left',
  ];
  const SYSTEM_KEYS = new Set(['id', 'collection', 'created', 'updated']);
  const MAX_ROWS = 300;
  const SUMMARY_LENGTH = 140;
  const RETRY_MIN_MS = 2000;
  const RETRY_MAX_MS = 30000;

  const $ = (id) => document.getElementById(id);
  const ui = {
    connectForm: $('connect-form'), collection: $('collection'), collectionName: $('collection-name'),
    query: $('query'), userId: $('user-id'), userName: $('user-name'), token: $('token'),
    disconnect: $('disconnect'), state: $('state'), streamUrl: $('stream-url'), streamError: $('stream-error'),
    createForm: $('create-form'), recordJson: $('record-json'), createResult: $('create-result'),
    events: document.querySelector('#events tbody'), eventCount: $('event-count'),
    eventsEmpty: $('events-empty'), clear: $('clear'),
    presence: $('presence'), presenceCount: $('presence-count'), presenceState: $('presence-state'),
    presenceEmpty: $('presence-empty'), selfPresence: $('self-presence'),
  };
  const viewerId = document.body.dataset.viewerId || null; // signed in: the presence feed counts this page

  // --- helpers ------------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function clock(timestamp) {
    // Browsers parse milliseconds reliably; the API sends microseconds.
    const date = new Date(String(timestamp).replace(/(\.\d{3})\d+/, '$1'));
    if (Number.isNaN(date.getTime())) return String(timestamp ?? '');
    return date.toLocaleTimeString([], { hour12: false });
  }

  function shorten(text) {
    return text.length > SUMMARY_LENGTH ? `${text.slice(0, SUMMARY_LENGTH - 1)}…` : text;
  }

  function chosenCollection() {
    return ui.collectionName.value.trim() || ui.collection.value;
  }

  // The server's message from an error response: `detail` (+ position) or DRF's field errors.
  async function errorMessage(response) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      return `${response.status} ${response.statusText || 'error'}`.trim();
    }
    if (body && typeof body.detail === 'string') {
      return typeof body.position === 'number' ? `${body.detail} (at position ${body.position})` : body.detail;
    }
    if (body && typeof body === 'object') {
      return Object.entries(body)
        .map(([field, messages]) => `${field}: ${[].concat(messages).join(' ')}`)
        .join('\n');
    }
    return `${response.status} error`;
  }

  function showMessage(node, text, kind) {
    node.hidden = !text;
    node.textContent = text || '';
    node.className = kind || '';
  }

  // --- the event list ---------------------------------------------------------------------

  function summary(event) {
    const data = event.data || {};
    if (event.type === 'connected') {
      const parts = [`client ${data.client_id}`];
      if (data.query) parts.push(`query ${data.query}`);
      if (data.user_id) parts.push(`user ${data.user_id}`);
      if (data.recovered === true) parts.push('missed events replayed');
      if (data.recovered === false) parts.push('history too old: reload your data');
      return parts.join(' · ');
    }
    if (event.type.startsWith('user.')) {
      const who = data.user_name ? `${data.user_name} (${data.user_id})` : String(data.user_id);
      return `${who} · ${data.connections} connection${data.connections === 1 ? '' : 's'}`;
    }
    if (event.type.startsWith('collection.')) {
      const fields = Array.isArray(data.fields) ? data.fields.map((field) => field.name).join(', ') : '';
      return `fields: ${fields || '(none)'}`;
    }
    const values = Object.entries(data).filter(([key]) => !SYSTEM_KEYS.has(key));
    if (values.length === 0 && Object.keys(data).length === 1) return 'no longer visible to you';
    return values.map(([key, value]) => `${key}=${JSON.stringify(value)}`).join('  ');
  }

  function addEvent(event) {
    const row = el('tr', 'event');
    row.dataset.type = event.type;
    if (event.record_id) row.dataset.recordId = event.record_id;
    row.append(
      el('td', `type type-${event.type.split('.')[0]}`, event.type),
      el('td', 'collection', event.collection ?? '—'),
      el('td', 'record-id', event.record_id ?? '—'),
    );
    const data = el('td', 'summary', shorten(summary(event)));
    data.title = JSON.stringify(event.data, null, 2);
    const when = el('time', '', clock(event.timestamp));
    when.setAttribute('datetime', String(event.timestamp ?? ''));
    const time = el('td', 'time');
    time.append(when);
    row.append(data, time);
    ui.events.prepend(row);
    while (ui.events.rows.length > MAX_ROWS) ui.events.deleteRow(-1);
    updateEventCount();
  }

  function updateEventCount() {
    ui.eventCount.textContent = String(ui.events.rows.length);
    ui.eventsEmpty.hidden = ui.events.rows.length > 0;
  }

  // --- the stream ---------------------------------------------------------------------------

  let source = null; // the open EventSource, or null
  let probe = null; // the AbortController of a fetch reading why the stream failed
  let retryTimer = null;
  let retryDelay = 0;
  let attempt = 0; // bumped by every Connect and Disconnect, so stale answers are dropped

  function setState(state) {
    ui.state.textContent = state;
    ui.state.dataset.state = state;
    ui.disconnect.disabled = state === 'closed';
  }

  function streamUrl() {
    const name = chosenCollection();
    const path = name ? `/api/v1/realtime/${encodeURIComponent(name)}` : '/api/v1/realtime';
    const params = new URLSearchParams();
    const fields = { query: ui.query, user_id: ui.userId, user_name: ui.userName, token: ui.token };
    for (const [key, input] of Object.entries(fields)) {
      if (input.value.trim()) params.set(key, input.value.trim());
    }
    const search = params.toString();
    return search ? `${path}?${search}` : path;
  }

  function connect() {
    stop();
    retryDelay = 0;
    showMessage(ui.streamError, '');
    const url = streamUrl();
    ui.streamUrl.textContent = `GET ${url.replace(/([?&]token=)[^&]*/, '$1…')}`;
    open(url);
  }

  function open(url) {
    setState('connecting');
    const es = new EventSource(url);
    source = es;
    es.addEventListener('connected', (e) => {
      if (source !== es) return;
      retryDelay = 0;
      setState('connected');
      showMessage(ui.streamError, '');
      addEvent(JSON.parse(e.data));
    });
    for (const type of EVENT_TYPES) {
      es.addEventListener(type, (e) => {
        if (source === es) addEvent(JSON.parse(e.data));
      });
    }
    es.onerror = () => {
      if (source !== es) return;
      if (es.readyState === EventSource.CLOSED) {
        // The browser gives up on a non-200 answer without showing it: read it ourselves.
        source = null;
        explainFailure(url);
      } else {
        setState('reconnecting'); // a dropped stream: the browser resumes with Last-Event-ID
      }
    };
  }

  async function explainFailure(url) {
    const mine = attempt;
    const controller = new AbortController();
    probe = controller;
    let response;
    let message;
    try {
      response = await fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store', signal: controller.signal });
      if (!response.ok) message = `${response.status}: ${await errorMessage(response)}`;
    } catch {
      if (mine === attempt) retryLater(url, 'The server cannot be reached.');
      return;
    }
    if (mine !== attempt) return;
    probe = null;
    if (response.ok) {
      controller.abort(); // the stream would open now: let the EventSource take it
      retryLater(url, '');
    } else if (response.status < 500) {
      setState('closed'); // the same request would fail the same way
      showMessage(ui.streamError, message, 'error');
    } else {
      retryLater(url, message);
    }
  }

  function retryLater(url, message) {
    retryDelay = Math.min(RETRY_MAX_MS, retryDelay ? retryDelay * 2 : RETRY_MIN_MS);
    setState('reconnecting');
    if (message) showMessage(ui.streamError, `${message} Retrying in ${retryDelay / 1000} s.`, 'error');
    retryTimer = setTimeout(() => {
      retryTimer = null;
      open(url);
    }, retryDelay);
  }

  function stop() {
    attempt += 1;
    if (retryTimer !== null) clearTimeout(retryTimer);
    retryTimer = null;
    if (probe) probe.abort();
    probe = null;
    if (source) source.close();
    source = null;
    setState('closed');
  }

  // --- creating a record --------------------------------------------------------------------

  async function createRecord() {
    const name = chosenCollection();
    if (!name) {
      showMessage(ui.createResult, 'Choose a collection first.', 'error');
      return;
    }
    let body;
    try {
      body = JSON.parse(ui.recordJson.value);
    } catch (error) {
      showMessage(ui.createResult, `Not valid JSON: ${error.message}`, 'error');
      return;
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      showMessage(ui.createResult, 'The record must be a JSON object.', 'error');
      return;
    }
    const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
    const token = ui.token.value.trim();
    if (token) {
      headers.Authorization = `Token ${token}`;
    } else {
      // Signed in through the admin: the session needs Django's CSRF token.
      headers['X-CSRFToken'] = document.querySelector('meta[name="csrf-token"]').content;
    }
    let response;
    try {
      response = await fetch(`/api/v1/collections/${encodeURIComponent(name)}/records/`, {
        method: 'POST', headers, body: JSON.stringify(body), credentials: 'same-origin',
      });
    } catch {
      showMessage(ui.createResult, 'The server cannot be reached.', 'error');
      return;
    }
    if (response.ok) {
      const record = await response.json();
      showMessage(ui.createResult, `Created ${record.id} in ${record.collection}.`, 'ok');
    } else {
      showMessage(ui.createResult, `${response.status}: ${await errorMessage(response)}`, 'error');
    }
  }

  // --- presence -----------------------------------------------------------------------------

  const present = new Map();
  let presenceSource = null;

  function renderPresence() {
    const users = [...present.values()].sort((a, b) => (a.user_id < b.user_id ? -1 : 1));
    const items = users.map((user) => {
      const item = el('li', 'user');
      item.dataset.userId = user.user_id;
      const since = el('time', 'muted', clock(user.last_seen));
      since.setAttribute('datetime', String(user.last_seen ?? ''));
      item.append(el('span', 'name', user.user_name || user.user_id), el('code', 'user-id', user.user_id), since);
      if (user.user_id === viewerId) item.append(el('span', 'you', 'you, this page'));
      return item;
    });
    ui.presence.replaceChildren(...items);
    ui.presenceCount.textContent = String(users.length);
    ui.presenceEmpty.hidden = users.length > 0;
    if (ui.selfPresence) ui.selfPresence.hidden = !(viewerId && present.has(viewerId));
  }

  async function loadPresence() {
    const response = await fetch('/api/v1/presence', { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (!response.ok) throw new Error(await errorMessage(response));
    const body = await response.json();
    present.clear();
    for (const user of body.users) present.set(user.user_id, user);
    renderPresence();
    return response.headers.get('X-Last-Event-ID');
  }

  // Snapshot, then a stream from the snapshot's event id: no join or leave is missed between them.
  async function watchPresence() {
    let since;
    try {
      since = await loadPresence();
    } catch (error) {
      ui.presenceState.textContent = `unavailable: ${error.message}`;
      setTimeout(watchPresence, RETRY_MAX_MS / 3);
      return;
    }
    // Only user.* events are wanted here; no record has an empty id, so record events stay away.
    const params = new URLSearchParams({ query: 'id=""' });
    if (since) params.set('last_event_id', since);
    const es = new EventSource(`/api/v1/realtime?${params}`);
    presenceSource = es;
    es.addEventListener('connected', (e) => {
      ui.presenceState.textContent = 'live';
      if (JSON.parse(e.data).data.recovered === false) {
        // Joins and leaves were missed (history too old): the list is reloaded instead.
        loadPresence().catch((error) => {
          ui.presenceState.textContent = `unavailable: ${error.message}`;
        });
      }
    });
    es.addEventListener('user.joined', (e) => {
      const user = JSON.parse(e.data).data;
      present.set(user.user_id, user);
      renderPresence();
    });
    es.addEventListener('user.left', (e) => {
      present.delete(JSON.parse(e.data).data.user_id);
      renderPresence();
    });
    es.onerror = () => {
      ui.presenceState.textContent = 'reconnecting…';
      if (es.readyState === EventSource.CLOSED && presenceSource === es) {
        presenceSource = null;
        setTimeout(watchPresence, RETRY_MAX_MS / 3);
      }
    };
  }

  // --- wiring -------------------------------------------------------------------------------

  ui.connectForm.addEventListener('submit', (e) => {
    e.preventDefault();
    connect();
  });
  ui.disconnect.addEventListener('click', stop);
  ui.createForm.addEventListener('submit', (e) => {
    e.preventDefault();
    createRecord();
  });
  ui.clear.addEventListener('click', () => {
    ui.events.replaceChildren();
    updateEventCount();
  });
  setState('closed');
  updateEventCount();
  renderPresence();
  watchPresence();
})();
