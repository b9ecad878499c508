/**
 * Streamed responses (logs follow, events over SSE): a route's StreamResult written as NDJSON
 * or, when the client asks for `text/event-stream`, as Server-Sent Events. Paced by the client:
 * the next item is pulled only once the previous write was accepted ('drain' when `write()`
 * says the socket buffer is full), so a slow reader holds back the producer instead of growing
 * our memory (the core's push buffers are bounded and fail past their cap).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { publicErrorBody, toPublicError, type Logger, type StreamItem, type StreamResult } from '@sentinel/api-core';

export type StreamFormat = 'ndjson' | 'sse';

export interface StreamOptions {
  /** Milliseconds between SSE `: ping` comments that keep proxies from closing an idle stream; 0 turns them off. Default 15 000. */
  sseHeartbeatMs?: number;
}

/** Ends every open stream (server shutdown). */
export interface StreamTracker {
  /** Ends the open streams cleanly; idempotent per stream. */
  endAll(): void;
  /** How many streams are open. */
  readonly size: number;
}

export interface StreamTrackerInternal extends StreamTracker {
  add(stop: () => void): () => void;
}

export function createStreamTracker(): StreamTrackerInternal {
  const stops = new Set<() => void>();
  return {
    add(stop) {
      stops.add(stop);
      return () => stops.delete(stop);
    },
    endAll() {
      for (const stop of [...stops]) stop();
    },
    get size() {
      return stops.size;
    },
  };
}

/** SSE when the client accepts `text/event-stream` (with a non-zero q), NDJSON otherwise. */
export function streamFormatOf(accept: string | undefined): StreamFormat {
  if (accept === undefined) return 'ndjson';
  for (const range of accept.split(',')) {
    const [type = '', ...params] = range.split(';');
    if (type.trim().toLowerCase() !== 'text/event-stream') continue;
    const q = params.map((p) => p.trim().toLowerCase()).find((p) => p.startsWith('q='));
    if (q === undefined || Number(q.slice(2)) > 0) return 'sse';
  }
  return 'ndjson';
}

const CONTENT_TYPES: Record<StreamFormat, string> = { ndjson: 'application/x-ndjson', sse: 'text/event-stream' };
const LINE_BREAKS = /\r\n|\r|\n/;

/** SSE field values end at a line break: one in an id or event name would forge a field. */
function sseFieldValue(value: string): string {
  return LINE_BREAKS.test(value) ? value.split(LINE_BREAKS).join(' ') : value;
}

/** Formats one item; a multi-line JSON text stays one NDJSON line / one SSE event. */
export function formatStreamItem(item: StreamItem, format: StreamFormat): string {
  const multiline = LINE_BREAKS.test(item.json);
  if (format === 'ndjson') {
    // Outside strings JSON line breaks are whitespace, and inside strings they are escaped:
    // dropping them keeps the value and makes it one line.
    return `${multiline ? item.json.split(LINE_BREAKS).join('') : item.json}\n`;
  }
  let text = '';
  if (item.id !== undefined) text += `id: ${sseFieldValue(item.id)}\n`;
  if (item.event !== undefined) text += `event: ${sseFieldValue(item.event)}\n`;
  text += multiline ? item.json.split(LINE_BREAKS).map((line) => `data: ${line}\n`).join('') : `data: ${item.json}\n`;
  return `${text}\n`;
}

function errorItem(err: unknown, format: StreamFormat): string {
  return formatStreamItem({ json: JSON.stringify(publicErrorBody(toPublicError(err))), event: 'error' }, format);
}

function appendVary(res: ServerResponse, value: string): void {
  const existing = res.getHeader('Vary');
  res.setHeader('Vary', existing === undefined ? value : `${String(existing)}, ${value}`);
}

export interface SendStreamContext {
  status: number;
  /** HEAD: headers only (the producer is released at once). */
  omitBody: boolean;
  tracker: StreamTrackerInternal;
  log: Logger;
  /** Aborts the route's signal: called when the stream is ended from our side (shutdown), so the producer lets go too. */
  abortProducer(): void;
  heartbeatMs: number;
}

/**
 * Writes `stream` to `res` until the producer ends, the client leaves or the tracker ends all
 * streams. Never rejects: a producer failure after the headers becomes an error item (SSE
 * `event: error`, NDJSON a `{error, code}` line) and the end of the response, logged when
 * internal. The iterator's `return()` is called whenever we stop before it finished.
 */
export async function sendStream(req: IncomingMessage, res: ServerResponse, stream: StreamResult, ctx: SendStreamContext): Promise<void> {
  const iterator = stream.items[Symbol.asyncIterator]();
  // Not awaited: an async generator queues return() behind a pending next(), which may wait
  // for an event that never comes. The producer also sees its signal abort.
  const release = () => {
    try {
      Promise.resolve(iterator.return?.()).catch((err: unknown) => {
        ctx.log.warn('stream cleanup failed', { error: err instanceof Error ? err.message : String(err) });
      });
    } catch (err) {
      ctx.log.warn('stream cleanup failed', { error: err instanceof Error ? err.message : String(err) });
    }
  };
  // The client left while the route was being invoked: only the producer needs releasing.
  if (res.destroyed) {
    release();
    return;
  }

  const format = stream.format ?? streamFormatOf(req.headers.accept);
  if (stream.format === undefined) appendVary(res, 'Accept');
  res.writeHead(ctx.status, {
    'Content-Type': CONTENT_TYPES[format],
    'Cache-Control': 'no-cache',
    'X-Accel-Buffering': 'no',
  });
  if (ctx.omitBody) {
    res.end();
    release();
    return;
  }
  // The client learns the stream is open before the first item (EventSource fires 'open').
  res.flushHeaders();

  let stopped = false;
  let wake: (() => void) | undefined;
  const stoppedSignal = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const stop = () => {
    if (stopped) return;
    stopped = true;
    wake?.();
  };
  const onClose = () => stop();
  res.once('close', onClose);
  const unregister = ctx.tracker.add(() => {
    stop();
    ctx.abortProducer();
  });

  let heartbeat: NodeJS.Timeout | undefined;
  if (format === 'sse' && ctx.heartbeatMs > 0) {
    heartbeat = setInterval(() => {
      // Skipped while backpressured: the socket is not idle then.
      if (!stopped && !res.writableNeedDrain) res.write(': ping\n\n');
    }, ctx.heartbeatMs);
    heartbeat.unref();
  }

  let corked = false;
  const uncork = () => {
    corked = false;
    res.uncork();
  };

  let finished = false;
  try {
    for (;;) {
      const pending = iterator.next();
      // If we stop first, nobody awaits this one any more: its rejection must not go unhandled.
      pending.catch(() => undefined);
      const next = await Promise.race([pending, stoppedSignal.then(() => undefined)]);
      if (next === undefined || stopped) break;
      if (next.done) {
        finished = true;
        break;
      }
      // Items that arrive in one burst leave in one write to the socket.
      if (!corked) {
        corked = true;
        res.cork();
        process.nextTick(uncork);
      }
      if (!res.write(formatStreamItem(next.value, format))) {
        await Promise.race([new Promise<void>((resolve) => res.once('drain', resolve)), stoppedSignal]);
      }
    }
  } catch (err) {
    finished = true;
    if (toPublicError(err).code === 'internal') ctx.log.error('stream failed', { error: err instanceof Error ? err.message : String(err) });
    if (!stopped && !res.destroyed) res.write(errorItem(err, format));
  } finally {
    if (heartbeat) clearInterval(heartbeat);
    unregister();
    res.off('close', onClose);
    if (!res.destroyed && !res.writableEnded) res.end();
    if (!finished) release();
  }
}
