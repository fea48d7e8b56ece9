/**
 * React hooks for FastCMS real-time: every component of a page shares one stream.
 *
 *   import { useRealtime, useLiveQuery, configureRealtime } from '/static/fastcms/react.js';
 *   configureRealtime({ token });   // optional, before the first render: the shared client's options
 *   const { events, connected } = useRealtime('posts', 'status=published');   // the seed's hook
 *   const { records, connected } = useLiveQuery('products', 'price>100');    // a list kept live
 *
 * React comes from the page: `import React from "react"` is resolved by the page's import map
 * (React 18 or later), so this file has no dependency and no build step.
 *
 * @module fastcms/react
 */

import React from 'react';
import { createRealtime } from './realtime.js';

const RECORD_EVENTS = new Set(['record.created', 'record.updated', 'record.deleted']);

/** @type {import('./realtime.js').Realtime|null} */
let shared = null;
/** @type {import('./realtime.js').RealtimeOptions} */
let sharedOptions = {};

/**
 * Set the options of the page's shared client (token, getToken, baseUrl, userId...). A client
 * already made with other options is closed; hooks rendered after this use the new one.
 * @param {import('./realtime.js').RealtimeOptions} options
 */
export function configureRealtime(options) {
  sharedOptions = options;
  if (shared) shared.close();
  shared = null;
}

/**
 * The page's shared client, made on first use.
 * @returns {import('./realtime.js').Realtime}
 */
export function getRealtime() {
  shared ??= createRealtime(sharedOptions);
  return shared;
}

/**
 * Whether the shared stream is open, as React state.
 * @param {import('./realtime.js').Realtime} rt
 * @returns {boolean}
 */
function useConnected(rt) {
  return React.useSyncExternalStore(
    (onChange) => rt.onState(onChange),
    () => rt.state === 'open',
    () => false,
  );
}

/**
 * The seed's `useRealtime`: the record events of `collection` (all collections when empty) that
 * match `query`, accumulated since mount, and whether the stream is open.
 * @param {string|null|undefined} collection
 * @param {string} [query]
 * @returns {{events: import('./realtime.js').RealtimeEvent[], connected: boolean}}
 */
export function useRealtime(collection, query = '') {
  const rt = getRealtime();
  const [events, setEvents] = React.useState(/** @type {import('./realtime.js').RealtimeEvent[]} */ ([]));
  React.useEffect(
    () => rt.subscribe(collection || '*', query || '', (event) => {
      if (RECORD_EVENTS.has(event.type)) setEvents((previous) => [...previous, event]);
    }),
    [rt, collection, query],
  );
  return { events, connected: useConnected(rt) };
}

/**
 * The records of `collection` that match `query`, as the REST list returns them (all pages,
 * ordered by `created`), kept current by the stream; and whether the stream is open.
 * @param {string} collection
 * @param {string} [query]
 * @returns {{records: any[], connected: boolean}}
 */
export function useLiveQuery(collection, query = '') {
  const rt = getRealtime();
  const [records, setRecords] = React.useState(/** @type {any[]} */ ([]));
  React.useEffect(() => {
    const live = rt.live(collection, query || '', setRecords);
    setRecords(live.records); // empty until loaded: never the list of another query
    return () => live.close();
  }, [rt, collection, query]);
  return { records, connected: useConnected(rt) };
}
