/**
 * `client.registry`: search, push and pull. A push or pull is a stream of progress records (one
 * per blob step, with the whole transfer's bytes) ending with the result, read from the NDJSON
 * answer as it arrives; `.result()` skips the progress. Leaving the loop early or aborting
 * cancels the transfer on the server (it stores nothing half-done).
 */
import { SentinelApiError } from './errors.js';
import { ndjson, signalOf, type CallOptions, type TransportHolder } from './call.js';
import type { PullInput, PullResult, PushInput, PushResult, RegistrySearchResult, TransferProgress } from './models.js';
import type { paths } from './types.js';

export type SearchQuery = NonNullable<paths['/v1/registry/search']['get']['parameters']['query']>;

const PROGRESS_STATUSES: ReadonlySet<string> = new Set<TransferProgress['status']>(['uploading', 'downloading', 'exists', 'verified']);

/** True for a progress record, false for the result that ends a transfer. */
export function isTransferProgress(record: { status: string }): record is TransferProgress {
  return PROGRESS_STATUSES.has(record.status);
}

/**
 * One push or pull. Iterate it for the progress records and then the result (the last item);
 * the request goes out when iteration starts, and only one iteration is allowed.
 */
export class Transfer<R extends { status: string }> implements AsyncIterable<TransferProgress | R> {
  readonly #start: () => AsyncGenerator<TransferProgress | R>;
  #started = false;

  constructor(start: () => AsyncGenerator<TransferProgress | R>) {
    this.#start = start;
  }

  [Symbol.asyncIterator](): AsyncIterator<TransferProgress | R> {
    if (this.#started) throw new TypeError('a transfer can be iterated once');
    this.#started = true;
    return this.#run();
  }

  async *#run(): AsyncGenerator<TransferProgress | R> {
    let result: R | undefined;
    for await (const record of this.#start()) {
      if (!isTransferProgress(record)) result = record as R;
      yield record;
    }
    if (result === undefined) throw new SentinelApiError({ status: 200, code: 'invalid_response', message: 'the transfer stream ended without a result' });
  }

  /** Runs the transfer to its end and returns the result, passing each progress record to `onProgress`. */
  async result(onProgress?: (progress: TransferProgress) => void): Promise<R> {
    let result: R | undefined;
    for await (const record of this) {
      if (isTransferProgress(record)) onProgress?.(record);
      else result = record;
    }
    return result as R;
  }
}

export class RegistryApi {
  readonly #holder: TransportHolder;

  constructor(holder: TransportHolder) {
    this.#holder = holder;
  }

  /** Repository names in the registry (its catalog), paged. */
  search(query: SearchQuery = {}, options: CallOptions = {}): Promise<RegistrySearchResult> {
    return this.#holder.transport.request<RegistrySearchResult>('GET', '/v1/registry/search', { query: { ...query }, ...signalOf(options) });
  }

  /** Pushes a local image: progress records, then `{name, tag, digest, status: 'pushed', registry}`. */
  push(input: PushInput, options: CallOptions = {}): Transfer<PushResult> {
    return new Transfer(() => ndjson<TransferProgress | PushResult>(this.#holder.transport, 'POST', '/v1/registry/push', { body: input, ...signalOf(options) }));
  }

  /** Pulls an image into the local images, digest-verified: progress records, then the result with the local `image`. */
  pull(input: PullInput, options: CallOptions = {}): Transfer<PullResult> {
    return new Transfer(() => ndjson<TransferProgress | PullResult>(this.#holder.transport, 'POST', '/v1/registry/pull', { body: input, ...signalOf(options) }));
  }
}
