/**
 * The embedded registry in PostgreSQL (store/postgres/registry.ts) on a real server, a fresh database
 * per test: chunked, digest-checked blobs streamed back, refusals that store nothing,
 * concurrent puts and tag pushes from several stores (instances), and the API picking this
 * back end when its store is PostgreSQL so two APIs on one database share their registry.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildAgentImage, createSentinelApi, parseAgentDefinition, type Principal, type SentinelApi } from '@sentinel/api-core';
import { sha256Digest } from '../src/contract/digest.js';
import { LayoutBackend } from '../src/registry/backends/layout.js';
import { openPostgresStore, PostgresRegistryBackend, REGISTRY_CHUNK_BYTES, type PostgresStore } from '@sentinel/api-core/postgres';
import { createTestDatabase, queryDatabase, type TestDatabase } from '@sentinel/test-support/postgres';

const ADMIN: Principal = { username: 'admin', role: 'admin' };
const ORIGIN = { secure: false, host: 'localhost:8080' };
const CREATED = '2026-02-03T04:05:06.000Z';
const SECRET = 'postgres-registry-secret-0123456789';

let db: TestDatabase;
const stores: PostgresStore[] = [];
const apis: SentinelApi[] = [];
const dirs: string[] = [];

beforeEach(async () => {
  db = await createTestDatabase();
});

afterEach(async () => {
  await Promise.all(apis.splice(0).map((api) => api.close()));
  await Promise.all(stores.splice(0).map((store) => store.close()));
  await db.drop();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A store on the test's database: each one is a pool of its own, like another instance. */
async function openStore(): Promise<PostgresStore> {
  const store = await openPostgresStore({ url: db.url });
  stores.push(store);
  return store;
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-pgreg-'));
  dirs.push(dir);
  return dir;
}

async function rejection(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error('expected a rejection');
}

/** Yields `bytes` in pieces of uneven sizes that never line up with the chunk size. */
async function* pieces(bytes: Buffer, size = 100_003): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.byteLength; at += size) {
    await new Promise((resolve) => setImmediate(resolve));
    yield new Uint8Array(bytes.subarray(at, at + size));
  }
}

async function readAll(backend: PostgresRegistryBackend, digest: string): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of backend.readBlob(digest)) chunks.push(chunk);
  return chunks;
}

async function rowCounts(digest: string): Promise<{ blobs: number; chunks: number }> {
  const [row] = await queryDatabase<{ blobs: number; chunks: number }>(
    db.url,
    'SELECT (SELECT COUNT(*)::int FROM registry_blobs WHERE digest = $1) AS blobs, (SELECT COUNT(*)::int FROM registry_blob_chunks WHERE digest = $1) AS chunks',
    [digest],
  );
  return row ?? { blobs: -1, chunks: -1 };
}

function image(name: string, tag = 'v1', description = `the ${name} agent`) {
  return buildAgentImage(parseAgentDefinition({ name, tag, description, model: 'echo/echo', tools: ['calculator'] }), CREATED);
}

describe('PostgreSQL registry blobs', () => {
  it('stores a blob of several chunks from a stream and streams it back chunk by chunk, digest verified', async () => {
    const backend = (await openStore()).registryBackend();
    const bytes = randomBytes(4 * REGISTRY_CHUNK_BYTES + 12_345);
    const digest = sha256Digest(bytes);
    const progress: number[] = [];
    expect(await backend.putBlob(digest, pieces(bytes), { onProgress: (n) => progress.push(n) })).toEqual({ existed: false, size: bytes.byteLength });
    expect(progress).toEqual([1, 2, 3, 4].map((n) => n * REGISTRY_CHUNK_BYTES).concat(bytes.byteLength));

    // Five rows of at most 256 KiB, numbered from 0.
    const chunks = await queryDatabase<{ idx: number; n: number }>(db.url, 'SELECT idx, octet_length(bytes) AS n FROM registry_blob_chunks WHERE digest = $1 ORDER BY idx', [digest]);
    expect(chunks).toEqual([0, 1, 2, 3, 4].map((idx) => ({ idx, n: idx < 4 ? REGISTRY_CHUNK_BYTES : 12_345 })));

    // Read back by another instance, one chunk at a time.
    const other = (await openStore()).registryBackend();
    const read = await readAll(other, digest);
    expect(read.map((c) => c.byteLength)).toEqual([REGISTRY_CHUNK_BYTES, REGISTRY_CHUNK_BYTES, REGISTRY_CHUNK_BYTES, REGISTRY_CHUNK_BYTES, 12_345]);
    expect(sha256Digest(Buffer.concat(read))).toBe(digest);
    expect(await other.blobSize(digest)).toBe(bytes.byteLength);
    expect(await other.blobSize(sha256Digest('absent'))).toBeNull();
    expect(await rejection(readAll(other, sha256Digest('absent')))).toMatchObject({ code: 'not_found' });

    // Putting it again writes nothing and says so.
    expect(await backend.putBlob(digest, bytes)).toEqual({ existed: true, size: bytes.byteLength });
    expect(await rowCounts(digest)).toEqual({ blobs: 1, chunks: 5 });
  });

  it('refuses bytes that do not match the declared digest, storing nothing, as a buffer or a stream', async () => {
    const backend = (await openStore()).registryBackend();
    const claimed = randomBytes(3 * REGISTRY_CHUNK_BYTES);
    const digest = sha256Digest(claimed);
    const other = Buffer.from(claimed);
    other[other.byteLength - 1] = (other[other.byteLength - 1] ?? 0) ^ 0xff;

    const fromBuffer = await rejection(backend.putBlob(digest, other));
    expect(fromBuffer).toMatchObject({ code: 'invalid_request' });
    expect(fromBuffer.message).toContain(`digest mismatch: the ${other.byteLength} bytes given for ${digest}`);
    // The mismatch shows only at the last byte: the chunks written before are rolled back.
    const fromStream = await rejection(backend.putBlob(digest, pieces(other)));
    expect(fromStream).toMatchObject({ code: 'invalid_request' });
    expect(fromStream.message).toContain('digest mismatch');
    expect(await rowCounts(digest)).toEqual({ blobs: 0, chunks: 0 });
    expect(await rejection(backend.putBlob('sha256:nothex', claimed))).toMatchObject({ code: 'invalid_request' });

    // Once the right bytes are in, wrong bytes under that digest are still refused.
    await backend.putBlob(digest, claimed);
    expect(await rejection(backend.putBlob(digest, pieces(other)))).toMatchObject({ code: 'invalid_request' });
    expect(sha256Digest(Buffer.concat(await readAll(backend, digest)))).toBe(digest);
  });

  it('cancels a put mid-stream: nothing is stored', async () => {
    const backend = (await openStore()).registryBackend();
    const bytes = randomBytes(3 * REGISTRY_CHUNK_BYTES);
    const digest = sha256Digest(bytes);
    const controller = new AbortController();
    const err = await rejection(backend.putBlob(digest, pieces(bytes), { signal: controller.signal, onProgress: () => controller.abort(new Error('client went away')) }));
    expect(err.message).toBe('client went away');
    expect(await rowCounts(digest)).toEqual({ blobs: 0, chunks: 0 });
  });

  it('lets several instances put the same blob at once: all succeed, it is stored once', async () => {
    const backends = await Promise.all([1, 2, 3].map(async () => (await openStore()).registryBackend()));
    const bytes = randomBytes(2 * REGISTRY_CHUNK_BYTES + 7);
    const digest = sha256Digest(bytes);
    const results = await Promise.all(Array.from({ length: 9 }, (_, i) => (backends[i % 3] as PostgresRegistryBackend).putBlob(digest, i % 2 === 0 ? bytes : pieces(bytes))));
    expect(results.filter((r) => !r.existed)).toHaveLength(1);
    expect(results.every((r) => r.size === bytes.byteLength)).toBe(true);
    expect(await rowCounts(digest)).toEqual({ blobs: 1, chunks: 3 });
    expect(Buffer.concat(await readAll(backends[2] as PostgresRegistryBackend, digest)).equals(bytes)).toBe(true);
  });

  it('detects a damaged chunk on read: the stream and a pull fail with upstream_error', async () => {
    const backend = (await openStore()).registryBackend();
    const built = image('demo/damaged');
    await backend.push(built, { repository: 'demo/damaged', tag: 'v1' });
    await queryDatabase(db.url, "UPDATE registry_blob_chunks SET bytes = overlay(bytes placing '\\x20'::bytea from 1) WHERE digest = $1", [built.config_digest]);
    const err = await rejection(readAll(backend, built.config_digest));
    expect(err).toMatchObject({ code: 'upstream_error' });
    expect(err.message).toContain(`digest mismatch: blob ${built.config_digest}`);
    expect(await rejection(backend.pull('demo/damaged', 'v1'))).toMatchObject({ code: 'upstream_error' });
  });
});

describe('PostgreSQL registry repositories and tags', () => {
  it('pushes on one instance; another lists, describes and pulls it by tag and by digest', async () => {
    const a = (await openStore()).registryBackend();
    const b = (await openStore()).registryBackend();
    const built = image('demo/helper', 'v1', 'helps');
    const events: string[] = [];
    await a.push(built, { repository: 'team/demo/helper', tag: 'v1' }, { onProgress: (e) => events.push(`${e.status}:${e.kind}`) });
    expect(events).toEqual(['uploading:config', 'verified:config', 'uploading:layer', 'verified:layer', 'uploading:manifest', 'verified:manifest']);
    events.length = 0;
    await a.push(built, { repository: 'team/demo/helper', tag: 'stable' }, { onProgress: (e) => events.push(`${e.status}:${e.kind}`) });
    expect(events).toEqual(['exists:config', 'exists:layer', 'exists:manifest']);

    expect(await b.listRepositories()).toEqual(['team/demo/helper']);
    expect(await b.listTags('team/demo/helper')).toEqual(['stable', 'v1']);
    expect(await b.describeTag('team/demo/helper', 'v1')).toEqual({ digest: built.digest, description: 'helps', agent: true });
    for (const reference of ['v1', built.digest]) {
      const pulled = await b.pull('team/demo/helper', reference);
      expect(pulled.digest).toBe(built.digest);
      expect(pulled.manifest.toString('utf8')).toBe(built.manifest);
      expect(pulled.config.toString('utf8')).toBe(built.config);
    }
    expect(await rejection(b.pull('team/demo/helper', 'v9'))).toMatchObject({ code: 'not_found', message: 'tag "v9" not found in embedded/team/demo/helper' });
    expect(await rejection(b.pull('team/other', 'v1'))).toMatchObject({ code: 'not_found', message: 'repository team/other not found in the embedded registry' });
    expect(await rejection(b.listTags('team/other'))).toMatchObject({ code: 'not_found' });
    expect(await rejection(b.describeTag('team/demo/helper', 'v9'))).toMatchObject({ code: 'not_found' });
    // A manifest of another repository is not pulled through this one.
    expect(await rejection(b.pull('team/other', built.digest))).toMatchObject({ code: 'not_found' });
  });

  it('refuses an image whose manifest does not hash to its digest, storing nothing', async () => {
    const backend = (await openStore()).registryBackend();
    const built = image('demo/helper');
    expect(await rejection(backend.push({ ...built, digest: sha256Digest('something else') }, { repository: 'demo/helper', tag: 'v1' }))).toMatchObject({ code: 'invalid_request' });
    expect(await queryDatabase(db.url, 'SELECT digest FROM registry_blobs')).toEqual([]);
    expect(await backend.listRepositories()).toEqual([]);
  });

  it('pushing one tag from several instances at once: every push succeeds and the tag names one whole image; then the last writer wins', async () => {
    const backends = await Promise.all([1, 2, 3].map(async () => (await openStore()).registryBackend()));
    const images = [1, 2, 3, 4, 5, 6].map((n) => image('demo/raced', 'v1', `version ${n}`));
    await Promise.all(images.map((built, i) => (backends[i % 3] as PostgresRegistryBackend).push(built, { repository: 'demo/raced', tag: 'latest' })));
    const described = await (backends[0] as PostgresRegistryBackend).describeTag('demo/raced', 'latest');
    expect(images.map((i) => i.digest)).toContain(described.digest);
    const pulled = await (backends[1] as PostgresRegistryBackend).pull('demo/raced', 'latest');
    expect(pulled.digest).toBe(described.digest);
    expect(sha256Digest(pulled.manifest)).toBe(described.digest);
    expect(await (backends[2] as PostgresRegistryBackend).listTags('demo/raced')).toEqual(['latest']);

    const last = images[2] as (typeof images)[number];
    await (backends[0] as PostgresRegistryBackend).push(images[5] as (typeof images)[number], { repository: 'demo/raced', tag: 'latest' });
    await (backends[1] as PostgresRegistryBackend).push(last, { repository: 'demo/raced', tag: 'latest' });
    expect((await (backends[2] as PostgresRegistryBackend).pull('demo/raced', 'latest')).digest).toBe(last.digest);
    // Every image pushed is still there by digest.
    for (const built of images) expect((await (backends[2] as PostgresRegistryBackend).pull('demo/raced', built.digest)).digest).toBe(built.digest);
  });
});

describe('createSentinelApi with the PostgreSQL store', () => {
  it('uses the registry in the database: a push through one API is searched and pulled through another, no layout on disk', async () => {
    const [dirA, dirB] = [tempDir(), tempDir()];
    const a = await createSentinelApi({ dataDir: dirA, storeUrl: db.url, tokenSecret: SECRET, adminPassword: 'correct-horse-battery' });
    apis.push(a);
    const b = await createSentinelApi({ dataDir: dirB, storeUrl: db.url, tokenSecret: SECRET, adminPassword: 'correct-horse-battery' });
    apis.push(b);
    expect(a.registry.embedded).toBeInstanceOf(PostgresRegistryBackend);
    expect(a.registry.defaultRegistry).toBe('embedded');

    const built = await a.images.build(parseAgentDefinition({ name: 'demo/shared', tag: 'v2', description: 'shared by all', model: 'echo/echo' }));
    const pushed = await a.registry.push(ADMIN, { image: 'demo/shared:v2' });
    expect(pushed).toEqual({ name: 'demo/shared', tag: 'v2', digest: built.digest, status: 'pushed', registry: 'embedded' });
    expect(existsSync(join(dirA, 'registry'))).toBe(false);

    const page = await b.registry.search(ADMIN, { query: 'shared' });
    expect(page).toMatchObject({ total: 1, results: [{ name: 'demo/shared', tags: ['v2'], tag: 'v2', digest: built.digest, description: 'shared by all', agent: true }] });
    // One database holds the local images too: the pull finds it there, and once the local
    // copy is deleted it comes back from the registry's bytes alone.
    expect(await b.registry.pull(ADMIN, { name: 'demo/shared:v2' })).toMatchObject({ digest: built.digest, status: 'up_to_date' });
    await a.images.delete('demo/shared:v2');
    expect(await rejection(b.images.get('demo/shared:v2'))).toMatchObject({ code: 'not_found' });
    const pulled = await b.registry.pull(ADMIN, { name: 'demo/shared:v2' });
    expect(pulled).toMatchObject({ name: 'demo/shared', tag: 'v2', digest: built.digest, status: 'pulled', registry: 'embedded' });
    const agent = await b.agents.create(ADMIN, { image: 'demo/shared:v2', name: 'from-shared' }, ORIGIN);
    expect(agent.image_id).toBe(built.digest);
  });

  it('keeps the layout directory as the embedded registry on SQLite', async () => {
    const api = await createSentinelApi({ dataDir: tempDir(), tokenSecret: SECRET });
    apis.push(api);
    expect(api.registry.embedded).toBeInstanceOf(LayoutBackend);
  });
});
