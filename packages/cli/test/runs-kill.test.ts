/**
 * `kill -9` of a real `sentinel api` in the middle of a run (issue 16): after a restart on the
 * same data (the SQLite file, or a fresh PostgreSQL database) the run is `failed` with code
 * `interrupted`, never stuck `running`: a chat socket that `resume`s it gets the frames that
 * were journaled before the kill and then a terminal `error` frame `interrupted`. Real
 * processes, real HTTP and WebSocket.
 */
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';
import { callJson as call, cleanEnv, runCli, useCliScratch, type CliProcess } from './spawn-cli.js';

const ADMIN_PASSWORD = 'runs-kill-admin-password';

const scratch = useCliScratch('sentinel-cli-runs-kill-');
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

type Frame = Record<string, any>;

function startApi(dataDir: string, extra: string[]): CliProcess {
  return runCli(['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', dataDir, ...extra], cleanEnv(scratch.dir, { SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD }));
}

/** A chat socket that records every frame. */
async function chat(url: string, agentId: string, token: string): Promise<{ ws: WebSocket; frames: Frame[]; until: (probe: (frames: Frame[]) => boolean, what: string) => Promise<void> }> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/agents/${agentId}/chat`, { headers: { authorization: `Bearer ${token}` } });
  const frames: Frame[] = [];
  ws.on('message', (data) => frames.push(JSON.parse(String(data)) as Frame));
  ws.on('error', () => undefined);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const until = async (probe: (frames: Frame[]) => boolean, what: string) => {
    for (const deadline = Date.now() + 15_000; !probe(frames); ) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(frames.slice(-3))}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };
  return { ws, frames, until };
}

describe.each(['sqlite', 'postgres'] as const)('a run after kill -9 of its server (%s)', (kind) => {
  it('is failed / interrupted after the restart: a resume gets the journaled frames, then the terminal error frame', async () => {
    const dataDir = join(scratch.dir, 'data');
    const storeArgs = kind === 'postgres' ? ['--store', db.url] : [];
    const first = startApi(dataDir, storeArgs);
    const url = await first.url();
    const token = (await call('POST', `${url}/v1/auth/login`, undefined, { username: 'admin', password: ADMIN_PASSWORD })).json.token as string;
    const created = await call('POST', `${url}/v1/agents`, token, { image: 'sentinel/echo:latest', name: `killed-${kind}` });
    expect(created.status).toBe(201);
    const agentId = created.json.id as string;
    const socket = await chat(url, agentId, token);
    // The echo provider sends a chunk every 15 ms: this answer takes several seconds.
    const words = Array.from({ length: 400 }, (_, i) => `w${i}`).join(' ');
    socket.ws.send(JSON.stringify({ type: 'message', content: words, message_id: `kill-${kind}` }));
    await socket.until((frames) => frames.filter((f) => f.type === 'stream_chunk').length >= 30, 'thirty chunks');
    const runId = socket.frames.find((f) => f.run_id !== undefined)!.run_id as string;
    expect(await first.stop('SIGKILL')).toMatchObject({ signal: 'SIGKILL' });
    socket.ws.terminate();

    const second = startApi(dataDir, storeArgs);
    const url2 = await second.url();
    const token2 = (await call('POST', `${url2}/v1/auth/login`, undefined, { username: 'admin', password: ADMIN_PASSWORD })).json.token as string;
    const resumed = await chat(url2, agentId, token2);
    resumed.ws.send(JSON.stringify({ type: 'resume', run_id: runId }));
    await resumed.until((frames) => frames.some((f) => f.type === 'error' || f.type === 'stream_end'), 'the terminal frame');
    const frames = resumed.frames.filter((f) => f.run_id === runId);
    const end = frames.at(-1)!;
    expect(end).toMatchObject({ type: 'error', code: 'interrupted', run_id: runId, message_id: `kill-${kind}` });
    expect(frames.map((f) => f.seq)).toEqual(Array.from({ length: frames.length }, (_, i) => i + 1));
    // Journaled at least every 200 ms: most of what the first socket saw was durable.
    expect(frames.filter((f) => f.type === 'stream_chunk').length).toBeGreaterThan(0);
    for (const frame of frames.slice(0, -1)) expect(socket.frames).toContainEqual(frame);
    // The same message_id again is that (failed) run, not a second turn.
    resumed.ws.send(JSON.stringify({ type: 'message', content: words, message_id: `kill-${kind}` }));
    await resumed.until((frames) => frames.filter((f) => f.type === 'error' && f.run_id === runId).length === 2, 'the replayed end');
    expect(resumed.frames.some((f) => f.type === 'stream_start' && f.run_id !== runId)).toBe(false);
    resumed.ws.close();
    await second.stop();
  });
});
