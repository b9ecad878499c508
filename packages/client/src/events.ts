/**
 * `client.events(agentId, {since})`: the agent's events over `/v1/agents/{id}/events`
 * (README, "The events WebSocket") as an async iterable that survives dropped connections and
 * server restarts: it reconnects with `?since=<the last seq it delivered>`, and the server
 * replays what came meanwhile, so the consumer sees every stored event once, in seq order
 * (replays that overlap are dropped by seq here).
 *
 * Frames without a seq are delivered as they come: the `agent_status` snapshot each connection
 * starts with (the state now, not a stored event) and `resync_required` (the events after the
 * cursor are no longer retained; the stream goes on from `data.oldest_seq`, and so does the
 * cursor here).
 */
import type { EventFrame, ServerFrame } from '@sentinel/api-core';
import { abortedError, SentinelApiError } from './errors.js';
import { AsyncQueue, backoffDelay, isRetryable, openSocket, sleep, type ReconnectOptions, type SocketAuth, type SocketEnd } from './socket.js';
import type { Transport, WebSocketLike } from './transport.js';

export type { EventFrame } from '@sentinel/api-core';

export interface EventsOptions {
  /**
   * Start after this seq (replaying the stored events after it). Default: from now on. Without
   * it, a drop before the first stored event arrived reconnects "from now on" again (the server
   * does not say where "now" was), so events of that gap can be missed; pass `since: 0` (or a
   * seq you kept) when every event matters.
   */
  since?: number;
  /** Ends the iteration: it just ends, as a loop's `break` does (the way `followLogs` stops too). */
  signal?: AbortSignal;
  /**
   * Reconnection after a socket that was open drops (a server restart included). Default: retry
   * without limit, 250 ms doubling to 10 s, with jitter; `false`: a drop fails the iteration with
   * `connection_lost`. The first socket is not retried: a server down or refusing fails at once.
   */
  reconnect?: ReconnectOptions | false;
  /** How the socket authenticates: `subprotocol` (default) or a one-time `ticket` per connection (see {@link SocketAuth}). */
  auth?: SocketAuth;
}

type Item = { frame: EventFrame } | { end: SocketEnd };

/**
 * The events of one agent. Ends normally when the server closes for good with 1000 (the agent
 * was deleted), when the loop breaks and when the signal aborts; fails with a SentinelApiError
 * for a refusal (404, 401, a 4401 close), or `connection_lost` when reconnecting gave up.
 */
export async function* agentEvents(transport: Transport, agentId: string, options: EventsOptions = {}): AsyncGenerator<EventFrame, void, undefined> {
  const { signal } = options;
  const reconnect = options.reconnect;
  // A private controller ends the socket and any wait when the consumer breaks out.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  let cursor = options.since;
  let opens = 0;
  let attempt = 0;
  let ws: WebSocketLike | undefined;
  try {
    for (;;) {
      if (signal?.aborted) throw abortedError(signal);
      const queue = new AsyncQueue<Item>();
      try {
        const target = { agentId, channel: 'events' as const, query: { since: cursor }, ...(options.auth ? { auth: options.auth } : {}) };
        ws = await openSocket(transport, target, stop.signal, {
          onText: (text) => {
            const frame = parse(text);
            if (frame?.type === 'event') queue.push({ frame });
          },
          onClose: (end) => {
            queue.push({ end });
            queue.end();
          },
        });
      } catch (err) {
        if (signal?.aborted) throw abortedError(signal);
        if (!isRetryable(err) || opens === 0) throw err;
        ws = undefined;
      }
      let end: SocketEnd | undefined;
      if (ws) {
        opens += 1;
        attempt = 0;
        let unlisten = (): void => undefined;
        const abortWait = new Promise<never>((_, reject) => {
          const onStop = () => reject(abortedError(signal));
          if (stop.signal.aborted) onStop();
          stop.signal.addEventListener('abort', onStop, { once: true });
          unlisten = () => stop.signal.removeEventListener('abort', onStop);
        });
        abortWait.catch(() => undefined);
        try {
          for (;;) {
            const next = await Promise.race([queue.next(), abortWait]);
            if (next.done) break;
            const item = next.value;
            if ('end' in item) {
              end = item.end;
              break;
            }
            const frame = item.frame;
            if (frame.event_type === 'resync_required') {
              const oldest = (frame.data as { oldest_seq?: unknown } | undefined)?.oldest_seq;
              if (typeof oldest === 'number') cursor = Math.max(cursor ?? 0, oldest - 1);
              yield frame;
              continue;
            }
            if (frame.seq !== undefined) {
              if (cursor !== undefined && frame.seq <= cursor) continue;
              cursor = frame.seq;
            }
            yield frame;
          }
        } finally {
          unlisten();
        }
        ws = undefined;
        if (end && !end.retry) {
          if (end.finished) return;
          throw end.error;
        }
      }
      if (reconnect === false || (reconnect?.maxAttempts !== undefined && attempt >= reconnect.maxAttempts)) {
        throw new SentinelApiError({ status: 0, code: 'connection_lost', message: 'the events connection dropped and was not reopened', ...(end ? { cause: end.error } : {}) });
      }
      await sleep(backoffDelay(attempt++, reconnect === undefined ? {} : reconnect), stop.signal).catch(() => {
        throw abortedError(signal);
      });
    }
  } catch (err) {
    // An abort ends the iteration; whatever it interrupted is no failure.
    if (signal?.aborted) return;
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    stop.abort();
    if (ws) {
      try {
        ws.close(1000);
      } catch {
        // Already closing.
      }
    }
  }
}

function parse(text: string): ServerFrame | undefined {
  try {
    return JSON.parse(text) as ServerFrame;
  } catch {
    return undefined;
  }
}
