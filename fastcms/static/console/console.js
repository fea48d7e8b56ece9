// FastCMS live console, on the browser client (/static/fastcms/realtime.js): one client for the
// chosen stream, one (anonymous) for the presence list; plain DOM.
// Every value from the server is written with textContent or setAttribute, never as HTML.
import { createRealtime } from '../fastcms/realtime.js';

(() => {
  const SYSTEM_KEYS = new Set(['id', 'collection', 'created', 'updated']);
  const MAX_ROWS = 300;
  const SUMMARY_LENGTH = 140;

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

  let client = null; // the Realtime client of the chosen stream, or null
  let opened = false; // whether this connection has been open (a later wait is a reconnect)

  function setState(state) {
    ui.state.textContent = state;
    ui.state.dataset.state = state;
    ui.disconnect.disabled = state === 'closed';
  }

  function describe(error, retryInMs) {
    const text = error.status ? `${error.status}: ${error.detail}` : error.detail;
    const where = typeof error.position === 'number' ? ` (at position ${error.position})` : '';
    const retry = retryInMs !== null ? ` Retrying in ${Math.round(retryInMs / 100) / 10} s.` : '';
    return `${text}${where}${retry}`;
  }

  // The client's state, in the console's words: connecting, connected, reconnecting, closed.
  function showState(state, info) {
    if (state === 'open') {
      opened = true;
      setState('connected');
      showMessage(ui.streamError, '');
      if (info.connected) addEvent(info.connected);
    } else if (state === 'connecting') {
      setState(opened || info.retryInMs !== null ? 'reconnecting' : 'connecting');
      if (info.error) showMessage(ui.streamError, describe(info.error, info.retryInMs), 'error');
    } else {
      setState('closed');
      if (info.error) showMessage(ui.streamError, describe(info.error, null), 'error');
    }
    if (info.url) ui.streamUrl.textContent = `GET ${info.url}`;
  }

  function connect() {
    stop();
    showMessage(ui.streamError, '');
    const value = (input) => input.value.trim() || undefined;
    client = createRealtime({
      token: value(ui.token), userId: value(ui.userId), userName: value(ui.userName), onStateChange: showState,
    });
    opened = false;
    // A failed resume shows in the `connected` row ("history too old"); the events go on.
    client.subscribe(chosenCollection() || '*', ui.query.value.trim(), addEvent, {
      onError: (error) => showMessage(ui.streamError, describe(error, null), 'error'),
    });
  }

  function stop() {
    if (client) client.close();
    client = null;
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

  // --- presence ---------------------------------------------------------------------------

  function renderPresence(users) {
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
    if (ui.selfPresence) ui.selfPresence.hidden = !(viewerId && users.some((user) => user.user_id === viewerId));
  }

  // The snapshot, then the stream from the snapshot's event id: no join or leave is missed.
  function watchPresence() {
    const watcher = createRealtime({
      onStateChange: (state, info) => {
        if (state === 'open') ui.presenceState.textContent = 'live';
        else if (info.error) ui.presenceState.textContent = `unavailable: ${info.error.detail}`;
        else if (state === 'connecting') ui.presenceState.textContent = 'reconnecting…';
      },
    });
    watcher.presence(renderPresence);
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
  renderPresence([]);
  watchPresence();
})();
