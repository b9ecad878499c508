import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OCI_MANIFEST_MEDIA_TYPE, buildAgentImage, createSentinelApi, isSentinelError, parseAgentDefinition, type SentinelApi } from '@sentinel/api-core';
import { decodeBody } from '../src/body.js';
import { sha256Digest } from '../src/contract/digest.js';
import { AGENT_ARTIFACT_TYPE, AGENT_CONFIG_MEDIA_TYPE, EMPTY_DESCRIPTOR, canonicalJson, parseAgentManifest } from '../src/images/oci.js';
import { STARTER_IMAGE_REF } from '../src/images/service.js';

function sentinelError(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (err) {
    expect(isSentinelError(err)).toBe(true);
    return err as { code: string; message: string };
  }
  throw new Error('expected a SentinelError');
}

async function rejection(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    expect(isSentinelError(err)).toBe(true);
    return err as { code: string; message: string };
  }
  throw new Error('expected a rejection');
}

const SENTINELFILE_YAML = `
name: acme/research-bot
tag: v1.2
description: Finds things
model:
  provider: openai
  name: gpt-4o-mini
  parameters:
    temperature: 0.7
    max_tokens: 512
    stop: ["\\n\\n"]
    flag: yes
instructions: |
  You are careful.
tools: [calculator, current_time]
capabilities: [chat]
`;

describe('Sentinelfile parsing', () => {
  it('parses YAML keeping numbers as numbers and YAML 1.2 strings as strings', () => {
    const def = parseAgentDefinition(decodeBody('yaml', SENTINELFILE_YAML));
    expect(def).toEqual({
      name: 'acme/research-bot',
      tag: 'v1.2',
      description: 'Finds things',
      model: { provider: 'openai', name: 'gpt-4o-mini', parameters: { temperature: 0.7, max_tokens: 512, stop: ['\n\n'], flag: 'yes' } },
      instructions: 'You are careful.\n',
      tools: ['calculator', 'current_time'],
      capabilities: ['chat'],
    });
    expect(typeof def.model.parameters.temperature).toBe('number');
  });

  it('parses JSON, applies defaults and splits a "provider/name" model string at the first slash', () => {
    const def = parseAgentDefinition(decodeBody('json', '{"name":"bot","model":"ollama/library/llama3.1:8b"}'));
    expect(def).toEqual({
      name: 'bot',
      tag: 'latest',
      description: '',
      model: { provider: 'ollama', name: 'library/llama3.1:8b', parameters: {} },
      instructions: '',
      tools: [],
      capabilities: [],
    });
  });

  it('lists every problem in one 400, unknown top-level fields by name', () => {
    const err = sentinelError(() =>
      parseAgentDefinition({
        name: 'Bad Name',
        tag: '-x',
        model: { provider: 'OpenAI' },
        tools: ['calculator', 'calculator', 'Bad-Tool'],
        description: 'd'.repeat(4097),
        baseModel: 'gpt',
        extra: 1,
      }),
    );
    expect(err.code).toBe('invalid_request');
    for (const fragment of ['/name', '/tag', '/model/provider', '"name" is required', '/tools', '/tools/2', '/description', 'unknown field "baseModel"', 'unknown field "extra"']) {
      expect(err.message).toContain(fragment);
    }
    expect(sentinelError(() => parseAgentDefinition({ model: 'openai/x' })).message).toContain('"name" is required');
    expect(sentinelError(() => parseAgentDefinition({ name: 'a', model: 'no-slash' })).message).toContain('/model');
    expect(sentinelError(() => parseAgentDefinition({ name: 'a', model: 42 })).message).toContain('/model');
    expect(sentinelError(() => parseAgentDefinition({ name: 'a'.repeat(129), model: 'a/b' })).message).toContain('/name');
  });

  it('takes tool entries with an approval mode: names stay in tools, gated ones also in tool_approval', () => {
    const def = parseAgentDefinition(
      decodeBody('yaml', 'name: a\nmodel: p/m\ntools:\n  - current_time\n  - {name: calculator, approval: required}\n  - {name: http_fetch, approval: never}\n'),
    );
    expect(def.tools).toEqual(['current_time', 'calculator', 'http_fetch']);
    expect(def.tool_approval).toEqual(['calculator']);
    // Without a gated tool the definition is exactly what it was before approvals existed (same digest).
    const plain = parseAgentDefinition({ name: 'a', model: 'p/m', tools: ['calculator', { name: 'current_time', approval: 'never' }] });
    expect(Object.keys(plain)).not.toContain('tool_approval');
    expect(JSON.stringify(plain)).toBe(JSON.stringify(parseAgentDefinition({ name: 'a', model: 'p/m', tools: ['calculator', 'current_time'] })));
    expect(sentinelError(() => parseAgentDefinition({ name: 'a', model: 'p/m', tools: ['calculator', { name: 'calculator', approval: 'required' }] })).message).toContain(
      'tool calculator is listed twice',
    );
    for (const entry of [{ name: 'calculator', approval: 'sometimes' }, { approval: 'required' }, { name: 'calculator', extra: 1 }, { name: 'Bad-Tool' }]) {
      expect(sentinelError(() => parseAgentDefinition({ name: 'a', model: 'p/m', tools: [entry] })).message).toContain('/tools/0');
    }
  });

  it('refuses parameters JSON cannot carry (YAML .nan) and absurd nesting', () => {
    const nan = decodeBody('yaml', 'name: a\nmodel: {provider: p, name: m, parameters: {t: .nan}}');
    expect(sentinelError(() => parseAgentDefinition(nan)).message).toContain('numbers must be finite');
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = { d: deep };
    expect(sentinelError(() => parseAgentDefinition({ name: 'a', model: { provider: 'p', name: 'm', parameters: { deep } } })).message).toContain('nested deeper');
  });

  it('decodeBody reports malformed JSON and YAML, refuses several documents and alias bombs', () => {
    expect(sentinelError(() => decodeBody('json', '{"a":')).message).toMatch(/^malformed JSON: /);
    expect(sentinelError(() => decodeBody('yaml', 'a: [1, 2')).message).toMatch(/^malformed YAML: /);
    expect(sentinelError(() => decodeBody('yaml', 'a: 1\n---\nb: 2\n')).message).toBe('malformed YAML: expected one document, found several');
    expect(sentinelError(() => decodeBody('yaml', 'a: 1\na: 2\n')).message).toMatch(/^malformed YAML: /);
    const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 12; i++) lines.push(`a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]`);
    expect(sentinelError(() => decodeBody('yaml', lines.join('\n'))).message).toMatch(/^malformed YAML: .*alias/i);
  });
});

describe('OCI artifact', () => {
  const def = parseAgentDefinition({ name: 'acme/bot', tag: '1', model: { provider: 'echo', name: 'echo', parameters: { temperature: 0.7 } } });

  it('canonicalJson sorts keys at every level, keeps array order, has no whitespace', () => {
    const a = canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: 'x' } });
    const b = canonicalJson({ a: { c: 'x', d: [3, { y: 2, z: 1 }] }, b: 1 });
    expect(a).toBe(b);
    expect(a).toBe('{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}');
    expect(canonicalJson({ u: undefined, s: 'é"\n' })).toBe('{"s":"é\\"\\n"}');
    expect(() => canonicalJson({ n: Number.NaN })).toThrow(TypeError);
  });

  it('the empty descriptor is the sha256 of "{}"', () => {
    expect(EMPTY_DESCRIPTOR.digest).toBe(`sha256:${createHash('sha256').update('{}').digest('hex')}`);
    expect(Buffer.from(EMPTY_DESCRIPTOR.data, 'base64').toString()).toBe('{}');
    expect(EMPTY_DESCRIPTOR.size).toBe(2);
  });

  it('builds a manifest whose digest is the sha256 of its exact bytes', () => {
    const built = buildAgentImage(def, '2026-02-03T04:05:06.000Z');
    expect(built.digest).toBe(sha256Digest(built.manifest));
    expect(built.digest).toBe(`sha256:${createHash('sha256').update(Buffer.from(built.manifest, 'utf8')).digest('hex')}`);
    expect(built.config).toBe(canonicalJson(def));
    expect(built.config_digest).toBe(sha256Digest(built.config));
    expect(built.size).toBe(Buffer.byteLength(built.config) + 2);
    const manifest = JSON.parse(built.manifest);
    expect(manifest).toEqual({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST_MEDIA_TYPE,
      artifactType: AGENT_ARTIFACT_TYPE,
      config: { mediaType: AGENT_CONFIG_MEDIA_TYPE, digest: built.config_digest, size: Buffer.byteLength(built.config) },
      layers: [EMPTY_DESCRIPTOR],
      annotations: {
        'org.opencontainers.image.title': 'acme/bot',
        'org.opencontainers.image.description': '',
        'org.opencontainers.image.version': '1',
        'org.opencontainers.image.created': '2026-02-03T04:05:06.000Z',
      },
    });
    expect(built.manifest).toBe(canonicalJson(manifest));
    // Deterministic: same definition and time, same bytes.
    expect(buildAgentImage(parseAgentDefinition(JSON.parse(built.config)), '2026-02-03T04:05:06.000Z').digest).toBe(built.digest);
    expect(buildAgentImage(def, '2026-02-03T04:05:07.000Z').digest).not.toBe(built.digest);
  });

  it('parseAgentManifest round-trips and checks digests, sizes and media types', () => {
    const built = buildAgentImage(def, '2026-02-03T04:05:06.000Z');
    expect(parseAgentManifest(built.manifest, built.config, { digest: built.digest })).toEqual(def);
    expect(parseAgentManifest(Buffer.from(built.manifest), Buffer.from(built.config))).toEqual(def);
    expect(sentinelError(() => parseAgentManifest(built.manifest, built.config.replace('0.7', '0.8'))).message).toContain('config digest');
    expect(sentinelError(() => parseAgentManifest(built.manifest, built.config, { digest: sha256Digest('x') })).message).toContain('manifest digest');
    const wrongType = built.manifest.replace(AGENT_CONFIG_MEDIA_TYPE, 'application/vnd.oci.image.config.v1+json');
    expect(sentinelError(() => parseAgentManifest(wrongType, built.config)).message).toContain('config mediaType');
    expect(sentinelError(() => parseAgentManifest('not json', built.config)).code).toBe('invalid_request');
  });
});

describe('ImageService on SQLite', () => {
  const dirs: string[] = [];
  let api: SentinelApi;

  function tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'sentinel-images-'));
    dirs.push(dir);
    return dir;
  }

  beforeAll(async () => {
    api = await createSentinelApi({ dataDir: tempDir(), adminPassword: 'admin-password-1' });
  });

  afterAll(async () => {
    await api?.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('the starter image has the same digest in every data directory and is not rebuilt', async () => {
    const other = await createSentinelApi({ dataDir: tempDir(), adminPassword: 'admin-password-1' });
    try {
      const a = await api.images.get(STARTER_IMAGE_REF);
      const b = await other.images.get(STARTER_IMAGE_REF);
      expect(a.id).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(b.id).toBe(a.id);
      expect(a).toMatchObject({ name: 'sentinel/echo', tag: 'latest', base_model: 'echo/echo', created_at: '2026-01-01T00:00:00.000Z' });
      expect(a.features).toEqual(['calculator', 'chat', 'current_time', 'streaming']);
      expect((await other.images.ensureStarterImage()).id).toBe(a.id);
      expect((await other.images.list()).length).toBe(1);
    } finally {
      await other.close();
    }
  });

  it('resolves every reference form; unknown is 404, malformed is 400', async () => {
    const built = await api.images.build(parseAgentDefinition({ name: 'acme/resolver', tag: 'v2', model: 'openai/gpt-4o', tools: ['calculator'] }));
    const hex = built.id.slice('sha256:'.length);
    expect(built.short_id).toBe(hex.slice(0, 12));
    for (const ref of [built.id, hex, hex.slice(0, 12), hex.slice(0, 20), 'acme/resolver:v2']) {
      expect((await api.images.resolve(ref)).digest).toBe(built.id);
    }
    await api.images.build(parseAgentDefinition({ name: 'acme/resolver', model: 'openai/gpt-4o' }));
    expect((await api.images.get('acme/resolver')).tag).toBe('latest');
    expect((await api.images.get('acme/resolver')).id).not.toBe(built.id);
    const missing = await rejection(api.images.get('acme/nothing:here'));
    expect(missing).toMatchObject({ code: 'not_found', message: 'image "acme/nothing:here" not found' });
    expect((await rejection(api.images.get(`sha256:${'0'.repeat(64)}`))).code).toBe('not_found');
    expect((await rejection(api.images.get('0123456789ab'))).code).toBe('not_found');
    for (const bad of ['Upper/Case', 'a:b:c!', '', 'x'.repeat(300), '../etc/passwd']) {
      expect((await rejection(api.images.get(bad))).code).toBe('invalid_request');
    }
  });

  it('an ambiguous short id is a 400', async () => {
    const built = buildAgentImage(parseAgentDefinition({ name: 'acme/twin', model: 'echo/echo' }), '2026-01-01T00:00:00.000Z');
    const base = { manifest: built.manifest, config: built.config, config_digest: built.config_digest, size: built.size, created_at: '2026-01-01T00:00:00.000Z' };
    // Two digests sharing a 14-hex prefix cannot be found by hashing; store them directly.
    await api.store.putImage({ ...base, digest: `sha256:abcdefabcdefab${'1'.repeat(50)}` }, ['acme/twin:one']);
    await api.store.putImage({ ...base, digest: `sha256:abcdefabcdefab${'2'.repeat(50)}` }, ['acme/twin:two']);
    const err = await rejection(api.images.resolve('abcdefabcdef'));
    expect(err.code).toBe('invalid_request');
    expect(err.message).toContain('ambiguous image id');
    expect((await api.images.resolve('abcdefabcdefab2')).tags).toEqual(['acme/twin:two']);
  });

  it('building again with the same name:tag moves the tag to the new image', async () => {
    const first = await api.images.build(parseAgentDefinition({ name: 'acme/mover', tag: 't', model: 'echo/echo', description: 'one' }));
    const second = await api.images.build(parseAgentDefinition({ name: 'acme/mover', tag: 't', model: 'echo/echo', description: 'two' }));
    expect(second.id).not.toBe(first.id);
    expect((await api.images.get('acme/mover:t')).description).toBe('two');
    const orphan = await api.images.get(first.id);
    expect(orphan).toMatchObject({ name: '<none>', tag: '<none>', tags: [], description: 'one' });
    const listed = await api.images.list();
    expect(listed.map((i) => i.id)).toEqual(expect.arrayContaining([first.id, second.id]));
  });

  it('delete is refused (409) while an agent uses the image, then works', async () => {
    const image = await api.images.build(parseAgentDefinition({ name: 'acme/busy', model: 'echo/echo' }));
    const admin = { username: 'admin', role: 'admin' as const };
    const agent = await api.agents.create(admin, { image: 'acme/busy' }, { secure: false, host: 'localhost' });
    const err = await rejection(api.images.delete('acme/busy'));
    expect(err).toMatchObject({ code: 'conflict', message: 'image acme/busy is used by 1 agent(s)' });
    await api.agents.delete(admin, agent.id);
    await api.images.delete(image.short_id);
    expect((await rejection(api.images.get(image.id))).code).toBe('not_found');
    expect((await rejection(api.images.get('acme/busy'))).code).toBe('not_found');
  });

  it('tags stored without an owner (a Store filled directly, an older instance) belong to the server, not to the next builder', async () => {
    await api.users.create({ username: 'mallory', password: 'mallory-password' });
    const mallory = { username: 'mallory', role: 'user' as const };
    const built = buildAgentImage(parseAgentDefinition({ name: 'legacy/tool', model: 'echo/echo' }), '2026-01-01T00:00:00.000Z');
    await api.store.putImage({ digest: built.digest, manifest: built.manifest, config: built.config, config_digest: built.config_digest, size: built.size, created_at: '2026-01-01T00:00:00.000Z' }, ['legacy/tool:v1']);
    const hijack = await rejection(api.images.build(parseAgentDefinition({ name: 'legacy/tool', tag: 'v2', model: 'echo/echo' }), { principal: mallory }));
    expect(hijack.code).toBe('forbidden');
    expect((await api.store.getRepository('legacy/tool'))?.owner).toBe('sentinel');
    expect((await api.images.get('legacy/tool:v1', mallory)).owner).toBe('sentinel');
    // A brand-new repository is the builder's, and without a principal (the server, an embedding app) the server's.
    expect((await api.images.build(parseAgentDefinition({ name: 'mallory-made', model: 'echo/echo' }), { principal: mallory })).owner).toBe('mallory');
    expect((await api.images.build(parseAgentDefinition({ name: 'app/made', model: 'echo/echo' }))).owner).toBe('sentinel');
  });

  it('checkMayTag is what pulls and imports call: it claims, refuses and journals without storing anything', async () => {
    const mallory = { username: 'mallory', role: 'user' as const };
    const digest = `sha256:${'e'.repeat(64)}`;
    await api.images.checkMayTag(mallory, ['mallory/pulled:v1'], digest);
    expect(await api.store.getRepository('mallory/pulled')).toMatchObject({ owner: 'mallory', visibility: 'public' });
    expect(await api.store.resolveTag('mallory/pulled:v1')).toBeNull();
    expect((await api.images.history('mallory/pulled')).map((e) => [e.event_type, e.data.to, e.data.by])).toEqual([['tag_created', digest, 'mallory']]);
    expect((await rejection(api.images.checkMayTag(mallory, ['sentinel/echo:latest'], digest))).code).toBe('forbidden');
    expect((await rejection(api.images.checkMayTag(mallory, ['legacy/tool:v1'], digest))).code).toBe('forbidden');
    await api.images.checkMayTag(undefined, ['legacy/tool:v1'], digest);
  });
});
