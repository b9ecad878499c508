/**
 * What every namespace shares: the `{signal?}` every method takes, and NDJSON streams whose
 * error line (the server's `{error, code, docs}` after the 200 was sent) becomes a thrown
 * SentinelApiError like every other failure.
 */
import { abortedError, SentinelApiError } from './errors.js';
import type { RequestOptions, Transport } from './transport.js';
import { ERROR_STATUS } from './types.js';

/** Options every SDK method takes. */
export interface CallOptions {
  /** Aborts the call (a request, or a stream as it runs); the call then fails with code `aborted`. */
  signal?: AbortSignal;
}

/** What a namespace needs of its client (read on each call, so the credential in use is current). */
export interface TransportHolder {
  readonly transport: Transport;
}

/** `{signal}` when there is one (the transport's options are exact: no `signal: undefined`). */
export function signalOf(options: CallOptions | undefined): Pick<RequestOptions, 'signal'> {
  return options?.signal ? { signal: options.signal } : {};
}

/** A path segment: ids, names and image references (which hold `/` and `:`) percent-encoded. */
export function segment(value: string): string {
  return encodeURIComponent(value);
}

interface ErrorLine {
  error: string;
  code: string;
  docs?: unknown;
  details?: unknown;
}

function isErrorLine(value: unknown): value is ErrorLine {
  return typeof value === 'object' && value !== null && typeof (value as ErrorLine).error === 'string' && typeof (value as ErrorLine).code === 'string';
}

/**
 * An NDJSON answer's items; an abort ends it with `aborted` (even with lines still buffered), and an error line ends the stream with a SentinelApiError whose status
 * is the one the code maps to (the HTTP status was already 200 when the stream failed).
 */
export async function* ndjson<T>(transport: Transport, method: string, path: string, options: RequestOptions): AsyncGenerator<T> {
  for await (const item of transport.lines<unknown>(method, path, options)) {
    // Lines already buffered when the signal fired are not handed out: an abort stops the stream at once.
    if (options.signal?.aborted) throw abortedError(options.signal);
    if (isErrorLine(item)) {
      throw new SentinelApiError({
        status: (ERROR_STATUS as Record<string, number>)[item.code] ?? 500,
        code: item.code,
        message: item.error,
        ...(typeof item.docs === 'string' ? { docs: item.docs } : {}),
        ...(item.details === undefined ? {} : { details: item.details }),
      });
    }
    yield item as T;
  }
}
