/**
 * `client.events` across a restart of the server PROCESS: a real `sentinel api` child (the built
 * CLI: run `pnpm build` first) is stopped with SIGTERM and started again on the same data dir and
 * port; the iterator reconnects by itself with `since` = the last seq it delivered and the
 * consumer gets every stored event once, in seq order: the same list a fresh replay gives. The
 * iterator reaches the server through a loopback proxy held shut until the restarted server has
 * new events, so those can only come by the replay.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createClient, SentinelApiError, type EventFrame, type SentinelClient } from '@sentinel/api-client';
import { ADMIN_PASSWORD, createAgent, startProxy } from './live-env.js';

const BIN_PATH = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));
const URL_LINE = /SentinelStacks API listening on (\S+)/;

const children = new Set<ChildProcess>();

afterEach(() => {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
});

interface ApiProcess {
  url: string;
  stop(): Promise<void>;
}

/** Starts `sentinel api` and resolves with its URL once it listens. */
function startApi(dataDir: string, home: string, port: number): Promise<ApiProcess> {
  if (!existsSync(BIN_PATH)) throw new Error(`${BIN_PATH} is missing: run pnpm build first`);
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('SENTINEL_')) env[key] = value;
  Object.assign(env, { HOME: home, SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD, SENTINEL_RATE_LIMIT_CHAT: '0' });
  const child = spawn(process.execPath, [BIN_PATH, 'api', '--port', String(port), '--host', '127.0.0.1', '--data-dir', dataDir, '--log-requests=false'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  let err = '';
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return new Promise<ApiProcess>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sentinel api did not start: ${err}`)), 20_000);
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const match = URL_LINE.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve({
          url: match[1]!,
          stop: async () => {
            child.kill('SIGTERM');
            await exited;
            children.delete(child);
          },
        });
      }
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`sentinel api exited (${code}) before listening: ${err}`));
    });
  });
}

async function chatOnce(client: SentinelClient, agentId: string, content: string, messageId: string): Promise<void> {
  const session = client.chat(agentId);
  try {
    for await (const frame of session.send(content, { messageId })) if (frame.type === 'error') throw new Error(`chat failed: ${frame.code} ${frame.error}`);
  } finally {
    session.close();
  }
}

async function until(events: AsyncIterator<EventFrame>, into: EventFrame[], done: (frame: EventFrame) => boolean): Promise<void> {
  for (;;) {
    const next = await events.next();
    if (next.done) throw new Error('the events ended early');
    into.push(next.value);
    if (done(next.value)) return;
  }
}

const processedFor =
  (messageId: string) =>
  (frame: EventFrame): boolean =>
    frame.event_type === 'message_processed' && (frame.data as { message_id?: string } | undefined)?.message_id === messageId;

const seqs = (frames: EventFrame[]): number[] => frames.filter((frame) => frame.seq !== undefined).map((frame) => frame.seq!);

describe('client.events across a server restart', () => {
  const home = mkdtempSync(join(tmpdir(), 'sentinel-client-restart-'));
  const dataDir = join(home, 'data');

  afterAll(() => {
    rmSync(home, { recursive: true, force: true });
  });

  it('resumes from the last seq it delivered: every event once, in seq order', async () => {
    const first = await startApi(dataDir, home, 0);
    const port = Number(new URL(first.url).port);
    const client = createClient({ baseUrl: first.url });
    await client.login('admin', ADMIN_PASSWORD);
    const agentId = await createAgent(client);
    await chatOnce(client, agentId, 'before the restart', 'm-before');

    const proxy = await startProxy(first.url);
    const viaProxy = createClient({ baseUrl: proxy.url, token: client.transport.credential! });
    const events = viaProxy.events(agentId, { since: 0, reconnect: { initialDelayMs: 50, maxDelayMs: 250 } });
    const frames: EventFrame[] = [];
    try {
      await until(events, frames, processedFor('m-before'));
      const pending = events.next();

      proxy.hold = true;
      await first.stop();
      const second = await startApi(dataDir, home, port);
      try {
        expect(second.url).toBe(first.url);
        // The token survives: the signing secret is kept in the data dir.
        const status = await client.transport.request<{ status: string }>('GET', `/v1/agents/${agentId}`);
        if (status.status !== 'running') await client.transport.request('POST', `/v1/agents/${agentId}/start`);
        await chatOnce(client, agentId, 'after the restart', 'm-after');
        const attempts = proxy.accepted;
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(proxy.accepted).toBeGreaterThan(attempts);
        proxy.hold = false;

        const next = await pending;
        if (next.done) throw new Error('the events ended at the restart');
        frames.push(next.value);
        if (!processedFor('m-after')(next.value)) await until(events, frames, processedFor('m-after'));

        const delivered = seqs(frames);
        expect(new Set(delivered).size).toBe(delivered.length);
        expect(delivered).toEqual([...delivered].sort((a, b) => a - b));
        // A fresh replay from 0 on the restarted server has exactly the same events.
        const replay: EventFrame[] = [];
        const fresh = client.events(agentId, { since: 0 });
        try {
          await until(fresh, replay, processedFor('m-after'));
        } finally {
          await fresh.return();
        }
        expect(delivered).toEqual(seqs(replay));
        expect(delivered[0]).toBe(1);
        expect(delivered.at(-1)).toBe(delivered.length);
        // The iterator did reconnect: a second snapshot, after the restart.
        expect(frames.filter((frame) => frame.event_type === 'agent_status' && frame.seq === undefined).length).toBeGreaterThanOrEqual(2);
      } finally {
        await events.return().catch((err: unknown) => {
          if (!(err instanceof SentinelApiError)) throw err;
        });
        await second.stop();
      }
    } finally {
      await events.return().catch(() => undefined);
      await proxy.close();
    }
  }, 60_000);
});
