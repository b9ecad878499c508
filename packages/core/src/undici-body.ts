/**
 * Discarding an undici response body we will not read. undici's BodyReadable, destroyed
 * before its end, emits an `'error'` (RequestAbortedError); with no listener that is an
 * uncaught exception, which would take the whole server down. Every early discard goes
 * through here.
 */
const ignore = () => {};

/** The part of a body stream this needs (undici's BodyReadable is a Node Readable). */
export interface DiscardableBody {
  readonly readableEnded: boolean;
  readonly destroyed?: boolean;
  on(event: 'error', listener: (err: unknown) => void): unknown;
  destroy(): unknown;
}

/** Destroys `body` unless it already ended, swallowing the abort error it emits. */
export function discardBody(body: DiscardableBody): void {
  if (body.readableEnded || body.destroyed) return;
  body.on('error', ignore);
  body.destroy();
}
