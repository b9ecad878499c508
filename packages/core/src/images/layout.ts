/**
 * OCI image-layout directories (image-spec v1.1 `image-layout.md`): `oci-layout`, `index.json`
 * and content-addressed `blobs/sha256/<hex>`. Agent images are exported into one so any OCI
 * tool (oras, skopeo, crane, regctl) can read them, and imported back with every digest and
 * size checked. The embedded registry back end keeps one such layout per repository.
 *
 * Crash safety: every file is written to a temporary name, flushed and renamed, and
 * `index.json` (the only thing that names an image) is replaced last, so a crash or a cancelled
 * write leaves at most unreferenced blobs, never a reference to a missing or half-written one.
 * Writers of one directory are serialised within the process (a promise queue) and across
 * processes (an O_EXCL lock file with stale-lock recovery, see layout-lock.ts), so concurrent
 * writers never lose each other's index.json entries. Readers need no lock: every file they
 * read is replaced by a rename, whole.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { isDigest, sha256Digest } from '../contract/digest.js';
import { invalidRequest, SentinelError, tooLarge } from '../contract/errors.js';
import { withLayoutFileLock } from './layout-lock.js';
import {
  AGENT_ARTIFACT_TYPE,
  AGENT_CONFIG_MEDIA_TYPE,
  EMPTY_DESCRIPTOR,
  OCI_MANIFEST_MEDIA_TYPE,
  parseAgentManifest,
  type OciDescriptor,
} from './oci.js';

export const OCI_LAYOUT_FILE = 'oci-layout';
export const OCI_LAYOUT_VERSION = '1.0.0';
export const OCI_INDEX_MEDIA_TYPE = 'application/vnd.oci.image.index.v1+json';
/** The annotation that names a manifest in a layout's index.json (a tag, or a full reference). */
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

/** Manifests bigger than this are refused (the registry client's cap too). Default 4 MiB. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Config blobs (agent definitions) bigger than this are refused. Default 1 MiB. */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** index.json bigger than this is refused (a layout with ~30 000 tags). */
const MAX_INDEX_BYTES = 16 * 1024 * 1024;

const EMPTY_BLOB = Buffer.from('{}', 'utf8');

/** The bytes of an agent image: what a layout, a registry and the Store all hold. */
export interface ImageBytes {
  /** `sha256:…` of `manifest`. */
  digest: string;
  manifest: string | Uint8Array;
  config: string | Uint8Array;
}

/** One manifest listed in a layout's index.json. */
export interface LayoutEntry {
  /** The `org.opencontainers.image.ref.name` annotation, when the entry has one. */
  refName: string | undefined;
  digest: string;
  size: number;
  mediaType: string;
  artifactType: string | undefined;
  annotations: Record<string, string>;
}

/** A blob as {@link writeImageToLayout} handled it, for progress reporting. */
export interface LayoutBlobEvent {
  digest: string;
  kind: 'manifest' | 'config' | 'layer';
  size: number;
  /** True when the layout already held the blob (nothing was written). */
  existed: boolean;
}

export interface WriteLayoutOptions {
  /** The ref.name annotation of the manifest in index.json; an entry with the same name is replaced (the tag moves). Default: none (the manifest is listed unnamed). */
  refName?: string;
  /** Aborting before index.json is replaced removes the blobs this call created and rejects. Default: none. */
  signal?: AbortSignal;
  /** Called once per blob, after it is in place. Default: none. */
  onBlob?: (event: LayoutBlobEvent) => void;
}

interface IndexFile {
  schemaVersion: 2;
  mediaType: typeof OCI_INDEX_MEDIA_TYPE;
  manifests: (OciDescriptor & { artifactType?: string })[];
  annotations?: Record<string, string>;
}

function toBuffer(bytes: string | Uint8Array): Buffer {
  return typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function layoutError(dir: string, why: string): SentinelError {
  return invalidRequest(`${dir} is not a valid OCI image layout: ${why}`);
}

/** `blobs/sha256/<hex>` under `dir`; the digest is checked first so it can never escape the directory. */
export function blobPath(dir: string, digest: string): string {
  if (!isDigest(digest)) throw invalidRequest(`unsupported digest "${digest.slice(0, 80)}": only sha256 is supported`);
  return join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
}

function isMissing(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/** Writes `bytes` to `path` through a flushed temporary file and a rename: readers see all or nothing. */
async function writeFileAtomic(path: string, bytes: Uint8Array, tmpDir: string): Promise<void> {
  const tmp = join(tmpDir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  const handle = await open(tmp, 'wx', 0o644);
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Reads a file of at most `cap` bytes; null when it does not exist. */
async function readCapped(path: string, cap: number, what: string): Promise<Buffer | null> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
  if (size > cap) throw tooLarge(what, size, cap);
  try {
    return await readFile(path);
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}

/** True when the blob is present with exactly these bytes' digest (a corrupt copy is rewritten). */
async function hasBlob(path: string, digest: string, size: number): Promise<boolean> {
  try {
    const info = await stat(path);
    if (info.size !== size) return false;
    return sha256Digest(await readFile(path)) === digest;
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
}

function parseIndex(dir: string, text: Buffer): IndexFile {
  let value: unknown;
  try {
    value = JSON.parse(text.toString('utf8'));
  } catch {
    throw layoutError(dir, 'index.json is not JSON');
  }
  const index = value as Partial<IndexFile> | null;
  if (typeof index !== 'object' || index === null || index.schemaVersion !== 2 || !Array.isArray(index.manifests)) {
    throw layoutError(dir, 'index.json needs schemaVersion 2 and a manifests array');
  }
  for (const entry of index.manifests) {
    const e = entry as Partial<OciDescriptor> | null;
    if (typeof e !== 'object' || e === null || typeof e.mediaType !== 'string' || typeof e.digest !== 'string' || typeof e.size !== 'number') {
      throw layoutError(dir, 'an index.json entry is not a descriptor (mediaType, digest, size)');
    }
  }
  return { schemaVersion: 2, mediaType: OCI_INDEX_MEDIA_TYPE, manifests: index.manifests, ...(index.annotations ? { annotations: index.annotations } : {}) };
}

/**
 * Reads the layout's index.json; null when `dir` holds no layout at all. A directory with an
 * `oci-layout` of another version, or a broken index.json, is an `invalid_request`.
 */
async function readIndex(dir: string): Promise<IndexFile | null> {
  const marker = await readCapped(join(dir, OCI_LAYOUT_FILE), 64 * 1024, `${dir}/${OCI_LAYOUT_FILE}`);
  if (marker === null) return null;
  let version: unknown;
  try {
    version = (JSON.parse(marker.toString('utf8')) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
  } catch {
    throw layoutError(dir, 'oci-layout is not JSON');
  }
  if (version !== OCI_LAYOUT_VERSION) throw layoutError(dir, `imageLayoutVersion is ${JSON.stringify(version)}, expected "${OCI_LAYOUT_VERSION}"`);
  const text = await readCapped(join(dir, 'index.json'), MAX_INDEX_BYTES, `${dir}/index.json`);
  if (text === null) throw layoutError(dir, 'index.json is missing');
  return parseIndex(dir, text);
}

function toEntry(descriptor: IndexFile['manifests'][number]): LayoutEntry {
  const annotations = descriptor.annotations ?? {};
  return {
    refName: annotations[REF_NAME_ANNOTATION],
    digest: descriptor.digest,
    size: descriptor.size,
    mediaType: descriptor.mediaType,
    artifactType: descriptor.artifactType,
    annotations,
  };
}

/** The manifests a layout lists, in index.json order; an empty list when `dir` holds no layout. */
export async function listLayout(dir: string): Promise<LayoutEntry[]> {
  const index = await readIndex(dir);
  return index === null ? [] : index.manifests.map(toEntry);
}

// One writer per layout directory at a time: queued within this process, then the lock file
// against other processes (the queue keeps one process's writers from polling the file).
const writers = new Map<string, Promise<unknown>>();

async function withLayoutLock<T>(dir: string, work: () => Promise<T>): Promise<T> {
  const key = resolve(dir);
  const previous = writers.get(key) ?? Promise.resolve();
  const locked = async () => {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    return withLayoutFileLock(dir, work);
  };
  const current = previous.then(locked, locked);
  const settled = current.then(
    () => undefined,
    () => undefined,
  );
  writers.set(key, settled);
  try {
    return await current;
  } finally {
    if (writers.get(key) === settled) writers.delete(key);
  }
}

/**
 * Writes an agent image into the OCI image layout at `dir` (created, with `oci-layout` and an
 * empty `index.json`, when missing): the manifest, config and empty-layer blobs, then index.json
 * with the manifest's descriptor (artifactType and, with `refName`, the ref.name annotation).
 * The image is checked first (digest of the manifest bytes, agent artifact shape). Blobs already
 * present are kept. On failure or abort before index.json is replaced, the blobs this call
 * created are removed again. Throws SentinelError `invalid_request` for a bad image or a
 * directory that holds something else than a 1.0.0 layout.
 */
export async function writeImageToLayout(dir: string, image: ImageBytes, options: WriteLayoutOptions = {}): Promise<void> {
  const manifest = toBuffer(image.manifest);
  const config = toBuffer(image.config);
  // Refuses anything that is not an agent image whose manifest hashes to `digest`.
  parseAgentManifest(manifest, config, { digest: image.digest });
  const configDigest = sha256Digest(config);
  const { signal, onBlob, refName } = options;
  throwIfAborted(signal);

  await withLayoutLock(dir, async () => {
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true, mode: 0o755 });
    let index = await readIndex(dir);
    if (index === null) {
      await writeFileAtomic(join(dir, OCI_LAYOUT_FILE), Buffer.from(JSON.stringify({ imageLayoutVersion: OCI_LAYOUT_VERSION })), dir);
      index = { schemaVersion: 2, mediaType: OCI_INDEX_MEDIA_TYPE, manifests: [] };
    }

    const created: string[] = [];
    try {
      const blobs: { digest: string; bytes: Buffer; kind: LayoutBlobEvent['kind'] }[] = [
        { digest: configDigest, bytes: config, kind: 'config' },
        { digest: EMPTY_DESCRIPTOR.digest, bytes: EMPTY_BLOB, kind: 'layer' },
        // The manifest last: a layout never holds a manifest whose blobs are missing.
        { digest: image.digest, bytes: manifest, kind: 'manifest' },
      ];
      for (const blob of blobs) {
        throwIfAborted(signal);
        const path = blobPath(dir, blob.digest);
        const existed = await hasBlob(path, blob.digest, blob.bytes.byteLength);
        if (!existed) {
          await writeFileAtomic(path, blob.bytes, dir);
          created.push(path);
        }
        onBlob?.({ digest: blob.digest, kind: blob.kind, size: blob.bytes.byteLength, existed });
      }
      throwIfAborted(signal);

      const descriptor: IndexFile['manifests'][number] = {
        mediaType: OCI_MANIFEST_MEDIA_TYPE,
        digest: image.digest,
        size: manifest.byteLength,
        artifactType: AGENT_ARTIFACT_TYPE,
        ...(refName === undefined ? {} : { annotations: { [REF_NAME_ANNOTATION]: refName } }),
      };
      const kept = index.manifests.filter((entry) =>
        refName === undefined
          ? !(entry.digest === image.digest && entry.annotations?.[REF_NAME_ANNOTATION] === undefined)
          : entry.annotations?.[REF_NAME_ANNOTATION] !== refName,
      );
      const next: IndexFile = { ...index, manifests: [...kept, descriptor] };
      await writeFileAtomic(join(dir, 'index.json'), Buffer.from(JSON.stringify(next)), dir);
    } catch (err) {
      // Only blobs nobody references: this call created them and index.json never named them.
      await Promise.all(created.map((path) => rm(path, { force: true }).catch(() => undefined)));
      throw err;
    }
  });
}

/** Which manifest to read from a layout: by ref.name (a tag) or by digest. */
export type LayoutSelector = { refName: string } | { digest: string };

export interface ReadLayoutOptions {
  /** Default {@link MAX_MANIFEST_BYTES}. */
  maxManifestBytes?: number;
  /** Default {@link MAX_CONFIG_BYTES}. */
  maxConfigBytes?: number;
}

/** What {@link readImageFromLayout} returns: verified bytes plus the index entry they came from. */
export interface LayoutImage {
  digest: string;
  manifest: Buffer;
  config: Buffer;
  entry: LayoutEntry;
}

function notInLayout(dir: string, selector: LayoutSelector): SentinelError {
  const what = 'refName' in selector ? `ref "${selector.refName}"` : `manifest ${selector.digest}`;
  return new SentinelError('not_found', `${what} not found in OCI image layout ${dir}`);
}

async function readVerifiedBlob(dir: string, descriptor: { digest: string; size: number }, cap: number, what: string): Promise<Buffer> {
  if (!Number.isSafeInteger(descriptor.size) || descriptor.size < 0) throw layoutError(dir, `${what} descriptor has a bad size`);
  if (descriptor.size > cap) throw tooLarge(what, descriptor.size, cap);
  const bytes = await readCapped(blobPath(dir, descriptor.digest), cap, what);
  if (bytes === null) throw layoutError(dir, `${what} blob ${descriptor.digest} is missing`);
  if (bytes.byteLength !== descriptor.size) throw layoutError(dir, `${what} blob ${descriptor.digest} is ${bytes.byteLength} bytes, its descriptor says ${descriptor.size}`);
  if (sha256Digest(bytes) !== descriptor.digest) throw layoutError(dir, `${what} blob does not match its digest ${descriptor.digest}`);
  return bytes;
}

/**
 * Reads an agent image from the layout at `dir`: finds the index.json entry (the last one with
 * that ref.name, or that digest), then reads and verifies the manifest, config and layer blobs
 * (size and sha256 of each against its descriptor) and the agent artifact shape.
 * Throws `not_found` when the layout (or the entry) is missing, `invalid_request` for a broken
 * layout, a digest mismatch or a manifest that is not an agent image, `payload_too_large` past
 * the caps.
 */
export async function readImageFromLayout(dir: string, selector: LayoutSelector, options: ReadLayoutOptions = {}): Promise<LayoutImage> {
  const maxManifestBytes = options.maxManifestBytes ?? MAX_MANIFEST_BYTES;
  const maxConfigBytes = options.maxConfigBytes ?? MAX_CONFIG_BYTES;
  const index = await readIndex(dir);
  if (index === null) throw new SentinelError('not_found', `no OCI image layout at ${dir}`);
  const entries = index.manifests.map(toEntry);
  const matches = entries.filter((entry) => ('refName' in selector ? entry.refName === selector.refName : entry.digest === selector.digest));
  const entry = matches.at(-1);
  if (entry === undefined) throw notInLayout(dir, selector);
  if (entry.mediaType !== OCI_MANIFEST_MEDIA_TYPE) {
    throw invalidRequest(`${entry.digest} in ${dir} is not an agent image: its media type is ${entry.mediaType}`);
  }
  const manifest = await readVerifiedBlob(dir, entry, maxManifestBytes, 'manifest');
  let parsed: { config?: { mediaType?: unknown; digest?: unknown; size?: unknown }; layers?: unknown };
  try {
    parsed = JSON.parse(manifest.toString('utf8')) as typeof parsed;
  } catch {
    throw layoutError(dir, `manifest ${entry.digest} is not JSON`);
  }
  const configDescriptor = parsed.config;
  if (typeof configDescriptor !== 'object' || configDescriptor === null || configDescriptor.mediaType !== AGENT_CONFIG_MEDIA_TYPE) {
    throw invalidRequest(`${entry.digest} in ${dir} is not an agent image: its config media type is not ${AGENT_CONFIG_MEDIA_TYPE}`);
  }
  if (typeof configDescriptor.digest !== 'string' || typeof configDescriptor.size !== 'number') throw layoutError(dir, 'the config descriptor is incomplete');
  const config = await readVerifiedBlob(dir, { digest: configDescriptor.digest, size: configDescriptor.size }, maxConfigBytes, 'config');
  // Checks the artifact shape (only empty layers) before any layer blob is opened.
  parseAgentManifest(manifest, config, { digest: entry.digest });
  // The empty layer is embedded in the manifest too; when its blob is present it must be right.
  const emptyBlob = await readCapped(blobPath(dir, EMPTY_DESCRIPTOR.digest), 1024, 'empty layer');
  if (emptyBlob !== null && sha256Digest(emptyBlob) !== EMPTY_DESCRIPTOR.digest) throw layoutError(dir, 'the empty layer blob does not match its digest');
  return { digest: entry.digest, manifest, config, entry };
}
