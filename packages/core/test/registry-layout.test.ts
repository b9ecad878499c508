/**
 * OCI image layouts: export/import of agent images (valid per the image-layout spec, every
 * digest checked, atomic writes, cancellation), and the embedded registry back end built on
 * them: push, pull, search and permissions through RegistryService on real data directories.
 */
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OCI_MANIFEST_MEDIA_TYPE, buildAgentImage, createSentinelApi, isSentinelError, parseAgentDefinition, readImageFromLayout, writeImageToLayout, type Principal, type SentinelApi, type TransferProgress } from '@sentinel/api-core';
import { sha256Digest } from '../src/contract/digest.js';
import { OCI_INDEX_MEDIA_TYPE, REF_NAME_ANNOTATION, listLayout } from '../src/images/layout.js';
import { AGENT_ARTIFACT_TYPE } from '../src/images/oci.js';

const ADMIN: Principal = { username: 'admin', role: 'admin' };
const ORIGIN = { secure: false, host: 'localhost:8080' };
const CREATED = '2026-02-03T04:05:06.000Z';

async function rejection(promise: Promise<unknown>): Promise<{ code: string; message: string; name?: string }> {
  try {
    await promise;
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error('expected a rejection');
}

function image(name: string, tag = 'v1', description = `the ${name} agent`) {
  return buildAgentImage(parseAgentDefinition({ name, tag, description, model: 'echo/echo', tools: ['calculator'] }), CREATED);
}

const dirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `sentinel-${prefix}-`));
  dirs.push(dir);
  return dir;
}

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Checks `dir` against the OCI image-layout spec, for the files an agent image needs. */
function expectValidLayout(dir: string): { manifests: { digest: string; size: number; mediaType: string; annotations?: Record<string, string>; artifactType?: string }[] } {
  expect(JSON.parse(readFileSync(join(dir, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
  expect(index.schemaVersion).toBe(2);
  expect(index.mediaType).toBe(OCI_INDEX_MEDIA_TYPE);
  expect(Array.isArray(index.manifests)).toBe(true);
  // Every blob is named by the sha256 of its content.
  for (const hex of readdirSync(join(dir, 'blobs', 'sha256'))) {
    expect(hex).toMatch(/^[a-f0-9]{64}$/);
    expect(sha256Digest(readFileSync(join(dir, 'blobs', 'sha256', hex)))).toBe(`sha256:${hex}`);
  }
  // Every descriptor points at a present blob of the stated size, and so do the manifests' own.
  for (const entry of index.manifests) {
    const bytes = readFileSync(join(dir, 'blobs', 'sha256', entry.digest.slice(7)));
    expect(bytes.byteLength).toBe(entry.size);
    const manifest = JSON.parse(bytes.toString('utf8'));
    for (const descriptor of [manifest.config, ...manifest.layers]) {
      expect(readFileSync(join(dir, 'blobs', 'sha256', descriptor.digest.slice(7))).byteLength).toBe(descriptor.size);
    }
  }
  return index;
}

describe('OCI image layout export and import', () => {
  it('writes a layout other OCI tools can read: oci-layout 1.0.0, index.json, sha256 blobs', async () => {
    const dir = tempDir('layout');
    const built = image('demo/helper');
    await writeImageToLayout(dir, built, { refName: 'v1' });
    const index = expectValidLayout(dir);
    expect(index.manifests).toEqual([
      { mediaType: OCI_MANIFEST_MEDIA_TYPE, digest: built.digest, size: Buffer.byteLength(built.manifest), artifactType: AGENT_ARTIFACT_TYPE, annotations: { [REF_NAME_ANNOTATION]: 'v1' } },
    ]);
    expect(readFileSync(join(dir, 'blobs', 'sha256', built.digest.slice(7)), 'utf8')).toBe(built.manifest);
    expect(readFileSync(join(dir, 'blobs', 'sha256', built.config_digest.slice(7)), 'utf8')).toBe(built.config);
    expect(readdirSync(join(dir, 'blobs', 'sha256')).sort()).toHaveLength(3);
    // No temporary files are left behind.
    expect(readdirSync(dir).sort()).toEqual(['blobs', 'index.json', 'oci-layout']);

    const read = await readImageFromLayout(dir, { refName: 'v1' });
    expect(read.digest).toBe(built.digest);
    expect(read.manifest.toString('utf8')).toBe(built.manifest);
    expect(read.config.toString('utf8')).toBe(built.config);
    expect((await readImageFromLayout(dir, { digest: built.digest })).digest).toBe(built.digest);
  });

  it('moves a ref name to the newest image and shares blobs between images', async () => {
    const dir = tempDir('layout');
    const first = image('demo/helper', 'v1', 'first');
    const second = image('demo/helper', 'v1', 'second');
    await writeImageToLayout(dir, first, { refName: 'v1' });
    await writeImageToLayout(dir, first, { refName: 'stable' });
    await writeImageToLayout(dir, second, { refName: 'v1' });
    const entries = await listLayout(dir);
    expect(entries.map((e) => [e.refName, e.digest])).toEqual([
      ['stable', first.digest],
      ['v1', second.digest],
    ]);
    expect((await readImageFromLayout(dir, { refName: 'v1' })).digest).toBe(second.digest);
    // Two manifests, two configs, one shared empty blob.
    expect(readdirSync(join(dir, 'blobs', 'sha256'))).toHaveLength(5);
    expectValidLayout(dir);
  });

  it('imports into a fresh data directory with the same digest, and an agent runs from it', async () => {
    const source = await createSentinelApi({ dataDir: tempDir('src'), tokenSecret: 'layout-spec-secret-0123456789' });
    const target = await createSentinelApi({ dataDir: tempDir('dst'), tokenSecret: 'layout-spec-secret-0123456789' });
    try {
      const built = await source.images.build(parseAgentDefinition({ name: 'demo/exported', tag: 'v3', model: 'echo/echo' }));
      const dir = tempDir('export');
      await source.registry.exportImage('demo/exported:v3', dir);
      expect((await listLayout(dir)).map((e) => e.refName)).toEqual(['v3']);
      const imported = await target.registry.importImage(dir, { refName: 'v3' }, { tag: 'demo/exported:v3' });
      expect(imported.id).toBe(built.id);
      expect((await target.images.get('demo/exported:v3')).digest).toBe(built.digest);
      const agent = await target.agents.create(ADMIN, { image: 'demo/exported:v3', name: 'from-layout' }, ORIGIN);
      expect(agent.image_id).toBe(built.digest);
      // A full name with a registry port and no tag is `:latest`, not a tag "5000/…".
      await target.registry.importImage(dir, { refName: 'v3' }, { tag: '127.0.0.1:5000/demo/exported' });
      expect((await target.images.get('127.0.0.1:5000/demo/exported')).tags).toContain('127.0.0.1:5000/demo/exported:latest');
    } finally {
      await source.close();
      await target.close();
    }
  });

  it('refuses tampered blobs, missing blobs, other layout versions and non-agent manifests', async () => {
    const built = image('demo/helper');
    const tampered = tempDir('tampered');
    await writeImageToLayout(tampered, built, { refName: 'v1' });
    const configPath = join(tampered, 'blobs', 'sha256', built.config_digest.slice(7));
    writeFileSync(configPath, built.config.replace('echo', 'ecHo'));
    const badConfig = await rejection(readImageFromLayout(tampered, { refName: 'v1' }));
    expect(badConfig.code).toBe('invalid_request');
    expect(badConfig.message).toMatch(/does not match its digest/);
    rmSync(configPath);
    expect((await rejection(readImageFromLayout(tampered, { refName: 'v1' }))).message).toMatch(/config blob .* is missing/);

    const manifestTampered = tempDir('tampered-manifest');
    await writeImageToLayout(manifestTampered, built, { refName: 'v1' });
    writeFileSync(join(manifestTampered, 'blobs', 'sha256', built.digest.slice(7)), built.manifest.replace('"schemaVersion":2', '"schemaVersion":2 '));
    expect((await rejection(readImageFromLayout(manifestTampered, { refName: 'v1' }))).message).toMatch(/manifest blob .* bytes, its descriptor says/);

    const newer = tempDir('newer');
    await writeImageToLayout(newer, built, { refName: 'v1' });
    writeFileSync(join(newer, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '2.0.0' }));
    expect((await rejection(readImageFromLayout(newer, { refName: 'v1' }))).message).toMatch(/imageLayoutVersion is "2.0.0"/);

    // A container image (another config media type) in an otherwise valid layout.
    const container = tempDir('container');
    mkdirSync(join(container, 'blobs', 'sha256'), { recursive: true });
    const config = '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}';
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST_MEDIA_TYPE,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256Digest(config), size: config.length },
      layers: [],
    });
    writeFileSync(join(container, 'blobs', 'sha256', sha256Digest(config).slice(7)), config);
    writeFileSync(join(container, 'blobs', 'sha256', sha256Digest(manifest).slice(7)), manifest);
    writeFileSync(join(container, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    writeFileSync(
      join(container, 'index.json'),
      JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX_MEDIA_TYPE, manifests: [{ mediaType: OCI_MANIFEST_MEDIA_TYPE, digest: sha256Digest(manifest), size: manifest.length, annotations: { [REF_NAME_ANNOTATION]: 'latest' } }] }),
    );
    const notAgent = await rejection(readImageFromLayout(container, { refName: 'latest' }));
    expect(notAgent.code).toBe('invalid_request');
    expect(notAgent.message).toMatch(/is not an agent image: its config media type/);

    expect((await rejection(readImageFromLayout(container, { refName: 'nope' }))).code).toBe('not_found');
    expect((await rejection(readImageFromLayout(tempDir('empty'), { refName: 'v1' }))).code).toBe('not_found');
  });

  it('refuses to write an image whose bytes do not match its digest', async () => {
    const dir = tempDir('bad-write');
    const built = image('demo/helper');
    const err = await rejection(writeImageToLayout(dir, { ...built, digest: image('demo/other').digest }, { refName: 'v1' }));
    expect(err.code).toBe('invalid_request');
    expect(existsSync(join(dir, 'index.json'))).toBe(false);
  });

  it('a write cancelled half way leaves the layout as it was: no entry, no new blob', async () => {
    const dir = tempDir('cancel');
    const kept = image('demo/kept');
    await writeImageToLayout(dir, kept, { refName: 'kept' });
    const before = readdirSync(join(dir, 'blobs', 'sha256')).sort();
    const indexBefore = readFileSync(join(dir, 'index.json'), 'utf8');

    const controller = new AbortController();
    const seen: string[] = [];
    const err = await rejection(
      writeImageToLayout(dir, image('demo/cancelled'), {
        refName: 'v1',
        signal: controller.signal,
        onBlob: (blob) => {
          seen.push(`${blob.kind}:${blob.existed}`);
          // After the new config blob is in place, the client goes away.
          if (blob.kind === 'config') controller.abort();
        },
      }),
    );
    expect(err.name).toBe('AbortError');
    expect(seen).toEqual(['config:false']);
    expect(readdirSync(join(dir, 'blobs', 'sha256')).sort()).toEqual(before);
    expect(readFileSync(join(dir, 'index.json'), 'utf8')).toBe(indexBefore);
    expect(readdirSync(dir).sort()).toEqual(['blobs', 'index.json', 'oci-layout']);
  });
});

describe('the embedded registry (OCI layouts under <dataDir>/registry)', () => {
  let dataA: string;
  let dataB: string;
  let a: SentinelApi;
  let b: SentinelApi;

  beforeEach(async () => {
    dataA = tempDir('reg-a');
    dataB = tempDir('reg-b');
    a = await createSentinelApi({ dataDir: dataA, tokenSecret: 'embedded-registry-secret-0123' });
    b = await createSentinelApi({ dataDir: dataB, tokenSecret: 'embedded-registry-secret-0123' });
  });

  afterEach(async () => {
    await a.close();
    await b.close();
  });

  it('round-trips: push, delete locally, pull back with the same digest; progress adds up', async () => {
    const built = await a.images.build(parseAgentDefinition({ name: 'demo/helper', tag: 'v1', description: 'Helps', model: 'echo/echo' }));
    const progress: TransferProgress[] = [];
    const pushed = await a.registry.push(ADMIN, { image: 'demo/helper:v1' }, { onProgress: (p) => progress.push(p) });
    expect(pushed).toEqual({ name: 'demo/helper', tag: 'v1', digest: built.digest, status: 'pushed', registry: 'embedded' });
    expect(progress.map((p) => `${p.kind}:${p.status}`)).toEqual(['config:uploading', 'config:verified', 'layer:uploading', 'layer:verified', 'manifest:uploading', 'manifest:verified']);
    const last = progress.at(-1) as TransferProgress;
    expect(last.overall.bytes).toBe(last.overall.total);
    expect(last.overall.total).toBe(built.size + Buffer.byteLength((await a.images.resolve(built.digest)).manifest));

    const layoutDir = join(dataA, 'registry', 'demo+helper');
    expect(expectValidLayout(layoutDir).manifests.map((m) => m.annotations?.[REF_NAME_ANNOTATION])).toEqual(['v1']);

    // A second push finds every blob there already.
    const again: TransferProgress[] = [];
    await a.registry.push(ADMIN, { image: built.id, tag: 'stable' }, { onProgress: (p) => again.push(p) });
    expect(again.filter((p) => p.status === 'exists').map((p) => p.kind)).toEqual(['config', 'layer', 'manifest']);

    await a.images.delete('demo/helper:v1');
    const pulled = await a.registry.pull(ADMIN, { name: 'demo/helper', tag: 'stable' });
    expect(pulled).toMatchObject({ name: 'demo/helper', tag: 'stable', digest: built.digest, status: 'pulled', registry: 'embedded' });
    expect(pulled.image.id).toBe(built.id);
    expect((await a.registry.pull(ADMIN, { name: 'demo/helper:stable' })).status).toBe('up_to_date');
    expect((await a.registry.pull(ADMIN, { name: `demo/helper@${built.digest}` })).tag).toBeNull();
  });

  it('another data directory pulls from a copy of the layouts and runs an agent from the image', async () => {
    const built = await a.images.build(parseAgentDefinition({ name: 'demo/portable', model: 'echo/echo' }));
    await a.registry.push(ADMIN, { image: 'demo/portable' });
    cpSync(join(dataA, 'registry'), join(dataB, 'registry'), { recursive: true });
    const pulled = await b.registry.pull(ADMIN, { name: 'demo/portable' });
    expect(pulled.digest).toBe(built.digest);
    expect((await b.images.list()).map((i) => i.id)).toContain(built.id);
    const agent = await b.agents.create(ADMIN, { image: 'demo/portable:latest' }, ORIGIN);
    expect(agent.image_id).toBe(built.digest);
  });

  it('searches repositories by name with limit and offset, describing the latest tag', async () => {
    for (const [name, tag] of [['agents/alpha', 'latest'], ['agents/beta', 'v2'], ['agents/gamma', 'latest'], ['tools/delta', 'latest']] as const) {
      await a.images.build(parseAgentDefinition({ name, tag, description: `about ${name}`, model: 'echo/echo' }));
      await a.registry.push(ADMIN, { image: `${name}:${tag}` });
    }
    await a.registry.push(ADMIN, { image: 'agents/beta:v2', tag: 'v1' });
    const user: Principal = { username: 'nobody', role: 'user' };
    const all = await a.registry.search(user, { query: 'AGENTS', limit: 10, offset: 0 });
    expect(all.total).toBe(3);
    expect(all.results.map((r) => r.name)).toEqual(['agents/alpha', 'agents/beta', 'agents/gamma']);
    const page = await a.registry.search(user, { query: 'agents', limit: 1, offset: 1 });
    expect(page).toMatchObject({ total: 3, offset: 1, limit: 1 });
    expect(page.results).toEqual([
      { name: 'agents/beta', tags: ['v1', 'v2'], tag: 'v2', description: 'about agents/beta', digest: (await a.images.get('agents/beta:v2')).digest, agent: true },
    ]);
    expect((await a.registry.search(user, { query: 'zzz' })).results).toEqual([]);
    expect((await a.registry.search(user, {})).total).toBe(4);
  });

  it('says clearly what is wrong: unknown image, repository or tag, malformed names, permissions', async () => {
    await a.users.create({ username: 'plain', password: 'plain-password-1' });
    await a.users.create({ username: 'pusher', password: 'pusher-password-1', can_push: true });
    const plain: Principal = { username: 'plain', role: 'user' };
    const pusher: Principal = { username: 'pusher', role: 'user' };
    await a.images.build(parseAgentDefinition({ name: 'demo/helper', tag: 'v1', model: 'echo/echo' }));

    expect(await rejection(a.registry.push(ADMIN, { image: 'demo/nothing:v1' }))).toMatchObject({ code: 'not_found', message: 'image "demo/nothing:v1" not found' });
    const forbidden = await rejection(a.registry.push(plain, { image: 'demo/helper:v1' }));
    expect(forbidden).toMatchObject({ code: 'forbidden' });
    expect(forbidden.message).toMatch(/admin role or a user allowed to push/);
    expect((await a.registry.push(pusher, { image: 'demo/helper:v1' })).status).toBe('pushed');

    expect(await rejection(a.registry.pull(plain, { name: 'demo/unknown' }))).toMatchObject({ code: 'not_found', message: 'repository demo/unknown not found in the embedded registry' });
    expect(await rejection(a.registry.pull(plain, { name: 'demo/helper:v9' }))).toMatchObject({ code: 'not_found', message: 'tag "v9" not found in embedded/demo/helper' });
    expect((await rejection(a.registry.pull(plain, { name: 'Demo/Helper' }))).code).toBe('invalid_request');
    expect((await rejection(a.registry.pull(plain, { name: 'demo/helper:v1', tag: 'v2' }))).message).toMatch(/not both/);
    expect((await rejection(a.registry.pull(plain, { name: 'sentinel/echo' }))).code).toBe('forbidden');
    // A plain user may not make the server reach another registry.
    const elsewhere = await rejection(a.registry.pull(plain, { name: 'localhost:1/demo/helper:v1' }));
    expect(elsewhere.code).toBe('forbidden');
    expect(elsewhere.message).toMatch(/only admins and users allowed to push may name a registry/);
    expect((await a.registry.pull(plain, { name: 'demo/helper:v1' })).status).toBe('up_to_date');
    expect(isSentinelError(await rejection(a.registry.push(ADMIN, { image: 'demo/helper:v1', tag: '-bad' })))).toBe(true);
  });

  it('refuses bad registry settings at start-up', async () => {
    const err = await rejection(createSentinelApi({ dataDir: tempDir('bad'), tokenSecret: 'embedded-registry-secret-0123', registry: { url: 'ftp://example.com' } }));
    expect(err).toMatchObject({ code: 'invalid_request' });
    expect(err.message).toMatch(/only http:\/\/ and https:\/\//);
    const half = await rejection(createSentinelApi({ dataDir: tempDir('bad'), tokenSecret: 'embedded-registry-secret-0123', registry: { url: 'http://127.0.0.1:5000', username: 'u' } }));
    expect(half.message).toBe('registry credentials need both a username and a password');
  });
});
