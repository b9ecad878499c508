/**
 * What a registry back end does for the registry service: push an image's bytes under a
 * repository and tag, pull them back verified, list what it holds for search. Two back ends:
 * any OCI distribution registry over HTTP(S), and the embedded OCI image layouts on disk.
 */
import type { ImageBytes } from '../../images/layout.js';

/** Progress of one blob (or the manifest) of a transfer. */
export interface BlobProgressEvent {
  /** `uploading`/`downloading` while bytes move, `exists` when the target had the blob already, `verified` once it is in place and checked. */
  status: 'uploading' | 'downloading' | 'exists' | 'verified';
  digest: string;
  kind: 'manifest' | 'config' | 'layer';
  /** Bytes moved (or present) so far. */
  bytes: number;
  /** The blob's size. */
  total: number;
}

export interface TransferOptions {
  /** Called as blobs move. Default: none. */
  onProgress?: (event: BlobProgressEvent) => void;
  /** Aborting cancels the transfer; the call rejects with the signal's reason. Default: none. */
  signal?: AbortSignal;
  /** Called with the size of every chunk sent or received over the network, for the minimum-rate check. Default: none. */
  onBytes?: (bytes: number) => void;
}

/** An image's bytes as pulled: verified against `digest`, and shaped like an agent image. */
export interface PulledImageBytes {
  digest: string;
  manifest: Buffer;
  config: Buffer;
}

/** The manifest a tag points at, for search results. */
export interface TagDescription {
  digest: string;
  /** The `org.opencontainers.image.description` annotation; `''` when absent. */
  description: string;
  /** True when the manifest is an agent image (our artifact type / config media type). */
  agent: boolean;
}

export interface RegistryBackend {
  /** How messages and results name this back end: `host[:port]`, or `embedded`. */
  readonly name: string;
  /**
   * Stores the image under `repository:tag`: blobs first (skipping those already there), the
   * manifest last, so a cancelled push never leaves a tag pointing at missing content.
   */
  push(image: ImageBytes, target: { repository: string; tag: string }, options?: TransferOptions): Promise<void>;
  /**
   * Fetches the manifest (by tag or `sha256:` digest) and the config blob, each verified
   * against its digest and size cap. Refuses (`invalid_request`) a manifest that is not an
   * agent image before fetching anything else.
   */
  pull(repository: string, reference: string, options?: TransferOptions): Promise<PulledImageBytes>;
  /** Every repository (full paths). `upstream_error` when the registry offers no catalog. */
  listRepositories(signal?: AbortSignal): Promise<string[]>;
  /** The repository's tags, in the back end's order. */
  listTags(repository: string, signal?: AbortSignal): Promise<string[]>;
  /** What `repository:tag` points at. */
  describeTag(repository: string, tag: string, signal?: AbortSignal): Promise<TagDescription>;
  /** Releases connections. Idempotent. */
  close(): Promise<void>;
}
