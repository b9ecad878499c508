/**
 * The back end for any OCI distribution registry (Docker's `registry`, Harbor, GHCR, zot…):
 * pushes blobs then the manifest through {@link RegistryClient}, pulls and verifies them,
 * lists the catalog and tags for search.
 */
import { MAX_CONFIG_BYTES, type ImageBytes } from '../../images/layout.js';
import { sha256Digest } from '../../contract/digest.js';
import { OCI_MANIFEST_MEDIA_TYPE, EMPTY_DESCRIPTOR } from '../../images/oci.js';
import { requireAgentManifest, summarizeManifest } from '../agent-manifest.js';
import { RegistryClient, type RegistryClientOptions } from '../client.js';
import type { BlobProgressEvent, PulledImageBytes, RegistryBackend, TagDescription, TransferOptions } from './types.js';

/** Turns a running total (what the client reports) into deltas for `onBytes`. */
function deltas(onBytes: ((bytes: number) => void) | undefined): (total: number) => void {
  let last = 0;
  return (total) => {
    if (total > last) onBytes?.(total - last);
    last = total;
  };
}

function bytesOf(value: string | Uint8Array): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

export interface DistributionBackendOptions extends RegistryClientOptions {
  /** Largest config blob pulled. Default 1 MiB ({@link MAX_CONFIG_BYTES}). */
  maxConfigBytes?: number;
}

/** A remote OCI distribution registry as a {@link RegistryBackend} (see the module comment). */
export class DistributionBackend implements RegistryBackend {
  readonly name: string;
  private readonly client: RegistryClient;
  private readonly maxConfigBytes: number;

  constructor(options: DistributionBackendOptions) {
    this.client = new RegistryClient(options);
    this.name = this.client.host;
    this.maxConfigBytes = options.maxConfigBytes ?? MAX_CONFIG_BYTES;
  }

  /** The underlying client (for catalog paging or pings by embedders). */
  get registryClient(): RegistryClient {
    return this.client;
  }

  async push(image: ImageBytes, target: { repository: string; tag: string }, options: TransferOptions = {}): Promise<void> {
    const { signal, onProgress } = options;
    const report = (event: BlobProgressEvent) => onProgress?.(event);
    const config = bytesOf(image.config);
    const manifest = bytesOf(image.manifest);
    const blobs: { digest: string; bytes: Buffer; kind: BlobProgressEvent['kind'] }[] = [
      { digest: sha256Digest(config), bytes: config, kind: 'config' },
      { digest: EMPTY_DESCRIPTOR.digest, bytes: Buffer.from('{}'), kind: 'layer' },
    ];
    for (const blob of blobs) {
      const total = blob.bytes.byteLength;
      // Already there (pushed before, or shared with another image): nothing to send.
      if ((await this.client.blobSize(target.repository, blob.digest, { access: 'push', ...(signal ? { signal } : {}) })) !== null) {
        report({ status: 'exists', digest: blob.digest, kind: blob.kind, bytes: total, total });
        continue;
      }
      report({ status: 'uploading', digest: blob.digest, kind: blob.kind, bytes: 0, total });
      const moved = deltas(options.onBytes);
      await this.client.uploadBlob(target.repository, blob.digest, blob.bytes, {
        ...(signal ? { signal } : {}),
        onProgress: (bytes) => {
          moved(bytes);
          report({ status: 'uploading', digest: blob.digest, kind: blob.kind, bytes, total });
        },
      });
      report({ status: 'verified', digest: blob.digest, kind: blob.kind, bytes: total, total });
    }
    const total = manifest.byteLength;
    report({ status: 'uploading', digest: image.digest, kind: 'manifest', bytes: 0, total });
    await this.client.putManifest(target.repository, target.tag, manifest, { mediaType: OCI_MANIFEST_MEDIA_TYPE, ...(signal ? { signal } : {}) });
    options.onBytes?.(total);
    report({ status: 'verified', digest: image.digest, kind: 'manifest', bytes: total, total });
  }

  async pull(repository: string, reference: string, options: TransferOptions = {}): Promise<PulledImageBytes> {
    const { signal, onProgress } = options;
    // A manifest is small and its digest unknown until it is here (pulls by tag): one line once verified.
    const fetched = await this.client.getManifest(repository, reference, { ...(signal ? { signal } : {}), onProgress: deltas(options.onBytes) });
    const manifestSize = fetched.bytes.byteLength;
    onProgress?.({ status: 'verified', digest: fetched.digest, kind: 'manifest', bytes: manifestSize, total: manifestSize });
    const config = requireAgentManifest(fetched.bytes, fetched.mediaType, `${this.name}/${repository}:${reference}`);
    onProgress?.({ status: 'downloading', digest: config.digest, kind: 'config', bytes: 0, total: config.size });
    const moved = deltas(options.onBytes);
    const configBytes = await this.client.getBlob(repository, config, {
      maxBytes: this.maxConfigBytes,
      ...(signal ? { signal } : {}),
      onProgress: (bytes) => {
        moved(bytes);
        onProgress?.({ status: 'downloading', digest: config.digest, kind: 'config', bytes, total: config.size });
      },
    });
    onProgress?.({ status: 'verified', digest: config.digest, kind: 'config', bytes: config.size, total: config.size });
    return { digest: fetched.digest, manifest: fetched.bytes, config: configBytes };
  }

  listRepositories(signal?: AbortSignal): Promise<string[]> {
    return this.client.listRepositories(signal ? { signal } : {});
  }

  listTags(repository: string, signal?: AbortSignal): Promise<string[]> {
    return this.client.listTags(repository, signal ? { signal } : {});
  }

  async describeTag(repository: string, tag: string, signal?: AbortSignal): Promise<TagDescription> {
    const fetched = await this.client.getManifest(repository, tag, signal ? { signal } : {});
    const summary = summarizeManifest(fetched.bytes, fetched.mediaType);
    return { digest: fetched.digest, description: summary.description, agent: summary.agent };
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
