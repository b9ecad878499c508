/**
 * The embedded registry: one OCI image layout per repository under a root directory
 * (`<dataDir>/registry/` by default), so push, pull and search work with no registry to run.
 * A repository's path becomes one directory name with `/` written as `+` (a character
 * repository names cannot hold), so `demo/helper` lives in `registry/demo+helper/` and no
 * repository's layout can nest inside another's. Each layout is a plain OCI image layout that
 * oras, skopeo or crane read directly (`oci:registry/demo+helper:v1`).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isDigest } from '../../contract/digest.js';
import { isSentinelError, SentinelError } from '../../contract/errors.js';
import {
  blobPath,
  listLayout,
  MAX_MANIFEST_BYTES,
  OCI_LAYOUT_FILE,
  readImageFromLayout,
  writeImageToLayout,
  type ImageBytes,
} from '../../images/layout.js';
import { summarizeManifest } from '../agent-manifest.js';
import type { BlobProgressEvent, PulledImageBytes, RegistryBackend, TagDescription, TransferOptions } from './types.js';


export interface LayoutBackendOptions {
  /** Directory holding one layout per repository. Created on the first push. */
  root: string;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/** The embedded registry as a {@link RegistryBackend} (see the module comment). */
export class LayoutBackend implements RegistryBackend {
  readonly name = 'embedded';
  readonly root: string;

  constructor(options: LayoutBackendOptions) {
    this.root = options.root;
  }

  /** The layout directory of a repository (see the module comment for the naming). */
  repositoryDir(repository: string): string {
    return join(this.root, repository.replaceAll('/', '+'));
  }

  async push(image: ImageBytes, target: { repository: string; tag: string }, options: TransferOptions = {}): Promise<void> {
    const { signal, onProgress } = options;
    await writeImageToLayout(this.repositoryDir(target.repository), image, {
      refName: target.tag,
      ...(signal ? { signal } : {}),
      onBlob: (blob) => {
        const base = { digest: blob.digest, kind: blob.kind, bytes: blob.size, total: blob.size };
        if (blob.existed) {
          onProgress?.({ status: 'exists', ...base });
        } else {
          onProgress?.({ status: 'uploading', ...base });
          onProgress?.({ status: 'verified', ...base });
        }
      },
    });
  }

  async pull(repository: string, reference: string, options: TransferOptions = {}): Promise<PulledImageBytes> {
    const { signal, onProgress } = options;
    throwIfAborted(signal);
    const dir = this.repositoryDir(repository);
    if (!(await this.hasRepository(repository))) throw new SentinelError('not_found', `repository ${repository} not found in the embedded registry`);
    let image;
    try {
      image = await readImageFromLayout(dir, isDigest(reference) ? { digest: reference } : { refName: reference });
    } catch (err) {
      if (isSentinelError(err) && err.code === 'not_found') {
        throw new SentinelError('not_found', isDigest(reference) ? `manifest ${reference} not found in embedded/${repository}` : `tag "${reference}" not found in embedded/${repository}`);
      }
      throw err;
    }
    throwIfAborted(signal);
    const report = (kind: BlobProgressEvent['kind'], digest: string, size: number) => {
      onProgress?.({ status: 'downloading', digest, kind, bytes: size, total: size });
      onProgress?.({ status: 'verified', digest, kind, bytes: size, total: size });
    };
    report('manifest', image.digest, image.manifest.byteLength);
    const configDigest = (JSON.parse(image.manifest.toString('utf8')) as { config: { digest: string } }).config.digest;
    report('config', configDigest, image.config.byteLength);
    return { digest: image.digest, manifest: image.manifest, config: image.config };
  }

  async listRepositories(signal?: AbortSignal): Promise<string[]> {
    throwIfAborted(signal);
    let names: string[];
    try {
      names = await readdir(this.root);
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ENOENT') return [];
      throw err;
    }
    const repositories: string[] = [];
    for (const name of names.sort()) {
      if (name.startsWith('.')) continue;
      const repository = name.replaceAll('+', '/');
      if (await this.hasRepository(repository)) repositories.push(repository);
    }
    return repositories;
  }

  async listTags(repository: string, signal?: AbortSignal): Promise<string[]> {
    throwIfAborted(signal);
    if (!(await this.hasRepository(repository))) throw new SentinelError('not_found', `repository ${repository} not found in the embedded registry`);
    const tags = new Set<string>();
    for (const entry of await listLayout(this.repositoryDir(repository))) if (entry.refName !== undefined) tags.add(entry.refName);
    return [...tags].sort();
  }

  async describeTag(repository: string, tag: string, signal?: AbortSignal): Promise<TagDescription> {
    throwIfAborted(signal);
    const dir = this.repositoryDir(repository);
    const entry = (await listLayout(dir)).filter((e) => e.refName === tag).at(-1);
    if (entry === undefined) throw new SentinelError('not_found', `tag "${tag}" not found in embedded/${repository}`);
    let bytes: Buffer;
    try {
      bytes = await readFile(blobPath(dir, entry.digest));
    } catch {
      return { digest: entry.digest, description: '', agent: false };
    }
    if (bytes.byteLength > MAX_MANIFEST_BYTES) return { digest: entry.digest, description: '', agent: false };
    const summary = summarizeManifest(bytes, entry.mediaType);
    return { digest: entry.digest, description: summary.description, agent: summary.agent };
  }

  async close(): Promise<void> {}

  private async hasRepository(repository: string): Promise<boolean> {
    try {
      return (await stat(join(this.repositoryDir(repository), OCI_LAYOUT_FILE))).isFile();
    } catch {
      return false;
    }
  }
}
