/**
 * The embedded registry shared by several `sentinel api` processes on one PostgreSQL database
 * (and one Redis prefix): built binaries, no --registry, real HTTP and WebSocket clients. An
 * image built and pushed on A is found by a search on B and pulled on C with the same digest,
 * and an agent created from it on C chats. Before the registry moved into the database, each
 * instance had its own layout directory: B's search came back empty and C's pull was a 404.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInstances, type Instances } from './instances.js';
import { callJson as call } from './spawn-cli.js';

type Frame = Record<string, any>;

/** Sends one chat message on a fresh socket and resolves with the turn's terminal frame. */
function chatOnce(url: string, token: string, content: string): Promise<Frame> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
    const frames: Frame[] = [];
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no answer; frames ${JSON.stringify(frames.slice(-4))}`));
    }, 15_000);
    ws.on('error', reject);
    ws.on('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with ${res.statusCode}`)));
    ws.on('open', () => ws.send(JSON.stringify({ type: 'message', content, message_id: 'm-1' })));
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      frames.push(frame);
      if (frame.message_id === 'm-1' && (frame.type === 'stream_end' || frame.type === 'response' || frame.type === 'error')) {
        clearTimeout(timer);
        ws.close();
        resolve(frame);
      }
    });
  });
}

describe('the embedded registry shared by instances on one PostgreSQL', () => {
  let instances: Instances;
  const urls: Record<'a' | 'b' | 'c', string> = { a: '', b: '', c: '' };
  let token: string;

  beforeAll(async () => {
    instances = await createInstances('sentinel-multi-registry-');
    const start = async (name: 'a' | 'b' | 'c') => (await instances.start(name)).url;
    [urls.a, urls.b, urls.c] = await Promise.all([start('a'), start('b'), start('c')]);
    token = await instances.login({ url: urls.a });
  }, 60_000);

  afterAll(async () => {
    await instances?.close();
  });

  it('build and push on A, search on B, pull on C with the same digest, and an agent from it chats on C', async () => {
    const built = await call('POST', `${urls.a}/v1/images`, token, {
      name: 'demo/shared',
      tag: 'v1',
      description: 'pushed on A',
      model: { provider: 'echo', name: 'echo' },
      instructions: 'Answer briefly.',
    });
    expect(built.status, JSON.stringify(built.json)).toBe(201);
    const digest = built.json.id as string;

    const pushed = await call('POST', `${urls.a}/v1/registry/push`, token, { image: 'demo/shared:v1' });
    expect(pushed).toMatchObject({ status: 200, json: { name: 'demo/shared', tag: 'v1', digest, status: 'pushed', registry: 'embedded' } });
    // Into the database, not A's data directory.
    expect(existsSync(join(instances.tmp, 'a', 'registry'))).toBe(false);

    const search = await call('GET', `${urls.b}/v1/registry/search?query=shared`, token);
    expect(search.status, JSON.stringify(search.json)).toBe(200);
    expect(search.json).toMatchObject({ total: 1, results: [{ name: 'demo/shared', tags: ['v1'], tag: 'v1', digest, description: 'pushed on A', agent: true }] });

    // The local images are shared too: delete the local copy (on B) so C's pull has only the
    // registry's bytes to go on.
    expect((await call('DELETE', `${urls.b}/v1/images/${encodeURIComponent('demo/shared:v1')}`, token)).status).toBe(204);
    expect((await call('GET', `${urls.c}/v1/images/${encodeURIComponent('demo/shared:v1')}`, token)).status).toBe(404);
    const pulled = await call('POST', `${urls.c}/v1/registry/pull`, token, { name: 'demo/shared:v1' });
    expect(pulled).toMatchObject({ status: 200, json: { name: 'demo/shared', tag: 'v1', digest, status: 'pulled', registry: 'embedded' } });
    expect((await call('GET', `${urls.a}/v1/images/${encodeURIComponent('demo/shared:v1')}`, token)).json).toMatchObject({ id: digest });

    const agent = await call('POST', `${urls.c}/v1/agents`, token, { image: 'demo/shared:v1', name: 'from-the-registry' });
    expect(agent.status, JSON.stringify(agent.json)).toBe(201);
    expect(agent.json.image_id).toBe(digest);
    const end = await chatOnce(`${urls.c.replace(/^http/, 'ws')}/v1/agents/${agent.json.id as string}/chat`, token, 'hello from C');
    expect(end).toMatchObject({ type: 'stream_end', reason: 'stop', content: 'Echo: hello from C' });
  });

  it('the same image and tag pushed from A and B at once (twice each): every push succeeds, C sees one tag and pulls it', async () => {
    const built = await call('POST', `${urls.b}/v1/images`, token, { name: 'demo/raced', tag: 'v1', model: { provider: 'echo', name: 'echo' } });
    expect(built.status, JSON.stringify(built.json)).toBe(201);
    const results = await Promise.all([urls.a, urls.b, urls.a, urls.b].map((url) => call('POST', `${url}/v1/registry/push`, token, { image: 'demo/raced:v1', tag: 'latest' })));
    for (const result of results) expect(result, JSON.stringify(result.json)).toMatchObject({ status: 200, json: { digest: built.json.id, status: 'pushed' } });
    const search = await call('GET', `${urls.c}/v1/registry/search?query=raced`, token);
    expect(search.json).toMatchObject({ total: 1, results: [{ name: 'demo/raced', tags: ['latest'], digest: built.json.id, agent: true }] });
    const pulled = await call('POST', `${urls.c}/v1/registry/pull`, token, { name: 'demo/raced:latest' });
    expect(pulled).toMatchObject({ status: 200, json: { digest: built.json.id, status: 'pulled' } });
  });
});
