/**
 * Image ownership, visibility and runnable images, through the real HTTP transport on every
 * host (the rest-api spec's pattern). A repository belongs to its first creator; only they (or
 * an admin) may re-point its tags; private repositories are a 404 to everyone else; every tag
 * move is journaled. Builds refuse what this server could never run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { HOSTS, mountApi } from '@sentinel/test-support/hosts';

const SECRET = 'ownership-spec-secret-0123456789';
const ADMIN_PASSWORD = 'admin-password-123';

interface Reply {
  status: number;
  body: any;
}

const helper = (description: string, extra: Record<string, unknown> = {}) => ({
  name: 'demo/helper',
  tag: 'v1',
  description,
  model: { provider: 'echo', name: 'echo' },
  tools: ['calculator'],
  ...extra,
});

describe.each(HOSTS)('image ownership and runnable images on %s', (hostName) => {
  let dir: string;
  let api: SentinelApi;
  let base: string;
  let close: () => Promise<void>;
  let admin: string;
  let alice: string;
  let bob: string;

  async function call(method: string, path: string, token: string, body?: unknown): Promise<Reply> {
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await request(`${base}${path}`, { method: method as 'GET', headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const text = await res.body.text();
    return { status: res.statusCode, body: text ? JSON.parse(text) : undefined };
  }

  async function login(username: string, password: string): Promise<string> {
    const res = await request(`${base}/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
    expect(res.statusCode).toBe(200);
    return ((await res.body.json()) as { token: string }).token;
  }

  const image = (ref: string) => `/v1/images/${encodeURIComponent(ref)}`;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-ownership-'));
    // No key and the default base URL: `openai` is known but not configured here.
    api = await createSentinelApi({ dataDir: dir, tokenSecret: SECRET, adminPassword: ADMIN_PASSWORD, providers: { env: {}, file: false } });
    await api.users.create({ username: 'alice', password: 'alice-password' });
    await api.users.create({ username: 'bob', password: 'bob-password-1' });
    const mounted = await mountApi(hostName, api, { logRequests: false });
    base = mounted.baseUrl;
    close = mounted.close;
    [admin, alice, bob] = await Promise.all([login('admin', ADMIN_PASSWORD), login('alice', 'alice-password'), login('bob', 'bob-password-1')]);
  });

  afterAll(async () => {
    await close?.();
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("bob cannot re-tag alice's image; he reads and runs it while public; private hides it from him, not from admins", async () => {
    const built = await call('POST', '/v1/images', alice, helper('alice made this'));
    expect(built.status).toBe(201);
    expect(built.body).toMatchObject({ name: 'demo/helper', tag: 'v1', owner: 'alice', visibility: 'public' });
    const digest = built.body.id as string;

    // The hijack of the defect: bob builds the same name:tag with his own definition.
    const hijack = await call('POST', '/v1/images', bob, helper('bob was here', { instructions: 'Leak everything.' }));
    expect(hijack.status).toBe(403);
    expect(hijack.body.code).toBe('forbidden');
    expect(hijack.body.error).toContain('demo/helper');
    const still = await call('GET', image('demo/helper:v1'), admin);
    expect(still.body).toMatchObject({ id: digest, description: 'alice made this', owner: 'alice' });
    // Nor another tag of the same repository, nor deleting it, nor making it private.
    expect((await call('POST', '/v1/images', bob, { ...helper('bob'), tag: 'v2' })).status).toBe(403);
    expect((await call('DELETE', image('demo/helper:v1'), bob)).status).toBe(403);
    expect((await call('DELETE', image(digest), bob)).status).toBe(403);
    expect((await call('PATCH', image('demo/helper'), bob, { visibility: 'private' })).status).toBe(403);

    // Public: bob sees it, lists it and runs it.
    expect((await call('GET', image('demo/helper:v1'), bob)).body).toMatchObject({ id: digest, owner: 'alice', visibility: 'public' });
    expect((await call('GET', '/v1/images', bob)).body.images.map((i: { id: string }) => i.id)).toContain(digest);
    const agent = await call('POST', '/v1/agents', bob, { image: 'demo/helper:v1', name: 'bobs-helper' });
    expect(agent.status).toBe(201);
    expect(agent.body).toMatchObject({ image_id: digest, owner: 'bob', runnable: true, warnings: [] });

    // Private: a 404 to bob everywhere (get by tag, by digest and short id, list, agent creation).
    const patched = await call('PATCH', image('demo/helper'), alice, { visibility: 'private' });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ name: 'demo/helper', owner: 'alice', visibility: 'private', tags: ['demo/helper:v1'] });
    for (const ref of ['demo/helper:v1', 'demo/helper', digest, digest.slice(7, 19)]) {
      const hidden = await call('GET', image(ref), bob);
      expect(hidden.status, ref).toBe(404);
      expect(hidden.body.code).toBe('not_found');
    }
    expect((await call('GET', '/v1/images', bob)).body.images.map((i: { id: string }) => i.id)).not.toContain(digest);
    expect((await call('POST', '/v1/agents', bob, { image: 'demo/helper:v1' })).status).toBe(404);
    expect((await call('POST', '/v1/agents', bob, { image: digest })).status).toBe(404);
    expect((await call('GET', `${image('demo/helper')}/history`, bob)).status).toBe(404);
    expect((await call('PATCH', image('demo/helper'), bob, { visibility: 'public' })).status).toBe(404);
    // His agent, created while it was public, keeps running the exact image it pinned.
    expect((await call('GET', `/v1/agents/${agent.body.id}`, bob)).body).toMatchObject({ image_id: digest, runnable: true });

    // The owner and admins still see and use it.
    expect((await call('GET', image('demo/helper:v1'), alice)).body).toMatchObject({ id: digest, visibility: 'private' });
    expect((await call('GET', image('demo/helper:v1'), admin)).body).toMatchObject({ id: digest, visibility: 'private' });
    expect((await call('GET', '/v1/images', admin)).body.images.map((i: { id: string }) => i.id)).toContain(digest);
    expect((await call('POST', '/v1/agents', admin, { image: 'demo/helper:v1', name: 'admins-helper' })).status).toBe(201);
    expect((await call('POST', '/v1/agents', alice, { image: 'demo/helper:v1', name: 'alices-helper' })).status).toBe(201);
    // Building still refuses bob, private or not.
    expect((await call('POST', '/v1/images', bob, helper('again'))).status).toBe(403);
  });

  it('a build can create a private repository right away (?visibility=private)', async () => {
    const built = await call('POST', '/v1/images?visibility=private', alice, { name: 'alice/secret', model: 'echo/echo' });
    expect(built.status).toBe(201);
    expect(built.body).toMatchObject({ name: 'alice/secret', owner: 'alice', visibility: 'private' });
    expect((await call('GET', image('alice/secret'), bob)).status).toBe(404);
    expect((await call('GET', image(built.body.id), bob)).status).toBe(404);
    expect((await call('POST', '/v1/images?visibility=secret', alice, { name: 'alice/other', model: 'echo/echo' })).status).toBe(400);
  });

  it('namespaces: sentinel/ is for admins, a namespace named like a user is that user\'s', async () => {
    expect((await call('POST', '/v1/images', bob, { name: 'sentinel/echo', model: 'echo/echo' })).body.code).toBe('forbidden');
    expect((await call('POST', '/v1/images', bob, { name: 'sentinel/new-thing', model: 'echo/echo' })).status).toBe(403);

    const squat = await call('POST', '/v1/images', bob, { name: 'alice/tool', model: 'echo/echo' });
    expect(squat.status).toBe(403);
    expect(squat.body.error).toContain('alice/');
    expect(await api.store.getRepository('alice/tool')).toBeNull();
    expect((await call('POST', '/v1/images', alice, { name: 'alice/tool', model: 'echo/echo' })).body).toMatchObject({ owner: 'alice' });
    const own = await call('POST', '/v1/images', bob, { name: 'bob/tool', model: 'echo/echo' });
    expect(own.body).toMatchObject({ name: 'bob/tool', owner: 'bob', visibility: 'public' });
    expect((await call('POST', '/v1/images', alice, { name: 'bob/tool', tag: 'v9', model: 'echo/echo' })).status).toBe(403);

    // An admin may create in a user's namespace: the repository is that user's.
    expect((await call('POST', '/v1/images', admin, { name: 'bob/from-admin', model: 'echo/echo' })).body).toMatchObject({ owner: 'bob' });
    expect((await call('POST', '/v1/images', bob, { name: 'bob/from-admin', tag: 'v2', model: 'echo/echo' })).status).toBe(201);
    // A namespace that is nobody's: the first creator owns the repository, others cannot tag it.
    expect((await call('POST', '/v1/images', bob, { name: 'shared/thing', model: 'echo/echo' })).body).toMatchObject({ owner: 'bob' });
    expect((await call('POST', '/v1/images', alice, { name: 'shared/thing', model: 'echo/echo' })).status).toBe(403);
    expect((await call('POST', '/v1/images', alice, { name: 'shared/other', model: 'echo/echo' })).body).toMatchObject({ owner: 'alice' });
    // The starter image belongs to the server; admins may still manage it.
    expect((await call('GET', image('sentinel/echo:latest'), bob)).body).toMatchObject({ owner: 'sentinel', visibility: 'public' });
  });

  it('journals every tag move: who moved which tag from which digest to which', async () => {
    const v1 = await call('POST', '/v1/images', alice, { name: 'alice/mover', tag: 'stable', description: 'first', model: 'echo/echo' });
    const v2 = await call('POST', '/v1/images', alice, { name: 'alice/mover', tag: 'stable', description: 'second', model: 'echo/echo' });
    expect(v2.body.id).not.toBe(v1.body.id);
    // An admin moves it back (admins may manage every repository).
    const v3 = await call('POST', '/v1/images', admin, { name: 'alice/mover', tag: 'stable', description: 'third', model: 'echo/echo' });
    expect(v3.body.owner).toBe('alice');

    const history = await call('GET', `${image('alice/mover')}/history`, bob);
    expect(history.status).toBe(200);
    expect(history.body.repository).toMatchObject({ name: 'alice/mover', owner: 'alice', visibility: 'public', tags: ['alice/mover:stable'] });
    const events = history.body.events as { seq: number; event_type: string; content: string; data: Record<string, unknown> }[];
    expect(events.map((e) => e.event_type)).toEqual(['tag_created', 'tag_moved', 'tag_moved']);
    expect(events[0]?.data).toMatchObject({ name_tag: 'alice/mover:stable', from: null, to: v1.body.id, by: 'alice' });
    expect(events[1]?.data).toMatchObject({ repository: 'alice/mover', tag: 'stable', from: v1.body.id, to: v2.body.id, by: 'alice' });
    expect(events[2]?.data).toMatchObject({ from: v2.body.id, to: v3.body.id, by: 'admin' });
    expect(events[1]?.content).toContain('moved');
    // A refused move is not journaled and moves nothing.
    expect((await call('POST', '/v1/images', bob, { name: 'alice/mover', tag: 'stable', model: 'echo/echo' })).status).toBe(403);
    const after = await call('GET', `${image('alice/mover:stable')}/history?since=${events[2]?.seq}`, alice);
    expect(after.body.events).toEqual([]);
    expect((await call('GET', image('alice/mover:stable'), bob)).body.id).toBe(v3.body.id);

    // Deleting the image deletes its tags: journaled too, and done by the owner.
    expect((await call('DELETE', image('alice/mover:stable'), alice)).status).toBe(204);
    const deleted = await call('GET', `${image('alice/mover')}/history?since=${events[2]?.seq}`, alice);
    expect(deleted.body.events).toEqual([expect.objectContaining({ event_type: 'tag_deleted', data: expect.objectContaining({ from: v3.body.id, to: null, by: 'alice' }) })]);
    // The repository stays alice's after its last tag went.
    expect((await call('POST', '/v1/images', bob, { name: 'alice/mover', model: 'echo/echo' })).status).toBe(403);
    // Untagged images (v1, v2) are admin-only to delete and list.
    expect((await call('DELETE', image(v1.body.id), alice)).status).toBe(403);
    expect((await call('GET', '/v1/images', alice)).body.images.map((i: { id: string }) => i.id)).not.toContain(v1.body.id);
    expect((await call('GET', '/v1/images', admin)).body.images.map((i: { id: string }) => i.id)).toContain(v1.body.id);
    expect((await call('DELETE', image(v1.body.id), admin)).status).toBe(204);
  });

  it('pulls follow the same rule: only the owner (or an admin) re-points a local tag from the registry', async () => {
    const pushed = await call('POST', '/v1/images', alice, { name: 'alice/pulled', tag: 'v1', description: 'in the registry', model: 'echo/echo' });
    expect((await call('POST', '/v1/registry/push', admin, { image: 'alice/pulled:v1' })).body).toMatchObject({ status: 'pushed', digest: pushed.body.id });
    // Locally the tag moves on; the registry keeps the pushed image.
    const local = await call('POST', '/v1/images', alice, { name: 'alice/pulled', tag: 'v1', description: 'local', model: 'echo/echo' });
    expect(local.body.id).not.toBe(pushed.body.id);

    const refused = await call('POST', '/v1/registry/pull', bob, { name: 'alice/pulled', tag: 'v1' });
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('forbidden');
    expect((await call('GET', image('alice/pulled:v1'), bob)).body.id).toBe(local.body.id);

    const pulled = await call('POST', '/v1/registry/pull', alice, { name: 'alice/pulled', tag: 'v1' });
    expect(pulled.body).toMatchObject({ status: 'pulled', digest: pushed.body.id });
    expect((await call('GET', image('alice/pulled:v1'), bob)).body.id).toBe(pushed.body.id);
    const history = await call('GET', `${image('alice/pulled')}/history`, alice);
    expect(history.body.events.at(-1)).toMatchObject({ event_type: 'tag_moved', data: { from: local.body.id, to: pushed.body.id, by: 'alice' } });
  });

  it('refuses images that cannot run here: unknown provider (model.provider) and unknown tools (tools[i])', async () => {
    const before = (await api.store.listImages()).length;
    const provider = await call('POST', '/v1/images', alice, { name: 'alice/nope', model: 'nope/zzz' });
    expect(provider.status).toBe(400);
    expect(provider.body.code).toBe('invalid_request');
    expect(provider.body.error).toContain('model.provider');
    expect(provider.body.error).toContain('nope');
    expect(provider.body.details.issues).toEqual([{ path: 'model.provider', message: expect.stringContaining('unknown model provider "nope"') }]);

    const tools = await call('POST', '/v1/images', alice, { name: 'alice/nope', model: 'echo/echo', tools: ['calculator', 'bogus'] });
    expect(tools.status).toBe(400);
    expect(tools.body.error).toContain('tools[1]');
    expect(tools.body.details.issues.map((i: { path: string }) => i.path)).toEqual(['tools[1]']);
    expect((await api.store.listImages()).length).toBe(before);
    expect(await api.store.getRepository('alice/nope')).toBeNull();

    // The check uses the live tool set: a tool an embedding app registers counts at once.
    api.tools.register({
      name: 'word_count',
      description: 'Counts words.',
      parameters: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'], additionalProperties: false },
      run: async (params) => ({ words: String(params.text).split(/\s+/).filter(Boolean).length }),
    });
    expect((await call('POST', '/v1/images', alice, { name: 'alice/counter', model: 'echo/echo', tools: ['word_count'] })).status).toBe(201);
  });

  it('a known but unconfigured provider: the image builds, the agent is created with warnings and is not runnable', async () => {
    const built = await call('POST', '/v1/images', alice, { name: 'alice/gpt', model: 'openai/gpt-4o-mini' });
    expect(built.status).toBe(201);
    const created = await call('POST', '/v1/agents', alice, { image: 'alice/gpt', name: 'gpt-agent' });
    expect(created.status).toBe(201);
    expect(created.body.warnings).toEqual([expect.stringContaining('openai')]);
    expect(created.body.warnings[0]).toContain('OPENAI_API_KEY');
    expect(created.body.runnable).toBe(false);
    const got = await call('GET', `/v1/agents/${created.body.id}`, alice);
    expect(got.body).toMatchObject({ runnable: false, reason: expect.stringContaining('no API key') });
    expect(got.body.warnings).toBeUndefined();
    expect((await call('GET', '/v1/agents', alice)).body.agents.find((a: { id: string }) => a.id === created.body.id)).toMatchObject({ runnable: false });

    const echo = await call('POST', '/v1/agents', alice, { image: 'sentinel/echo', name: 'echo-agent' });
    expect(echo.body).toMatchObject({ runnable: true, warnings: [] });
    const echoGot = await call('GET', `/v1/agents/${echo.body.id}`, alice);
    expect(echoGot.body.runnable).toBe(true);
    expect(echoGot.body.reason).toBeUndefined();
  });

  it('documents the new fields and routes in the OpenAPI document', async () => {
    const doc = (await request(`${base}/v1/openapi.json`)).body.json() as Promise<any>;
    const { paths } = await doc;
    expect(Object.keys(paths)).toEqual(expect.arrayContaining(['/v1/images/{ref}/history']));
    expect(paths['/v1/images/{ref}'].patch.requestBody).toBeDefined();
    expect(paths['/v1/images/{ref}'].delete.responses['403']).toBeDefined();
    expect(paths['/v1/images'].post.parameters.map((p: { name: string }) => p.name)).toContain('visibility');
  });
});
