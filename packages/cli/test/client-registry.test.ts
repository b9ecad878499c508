/**
 * `sentinel push`, `search` and `pull` through the built binary against a real docker-registry:
 * an image built on server A is pushed (plain progress lines when stdout is not a terminal,
 * then the result), found by a search, and pulled by server B (another data directory, the same
 * registry) with the same digest; an agent runs from the pulled image. A pull of a missing tag
 * is exit 1 with one line.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { listen, type RunningServer } from '@sentinel/api-http';
import { attachWebSocket, type WebSocketHandle } from '@sentinel/api-ws';
import { startDockerRegistry, type RunningRegistry } from '@sentinel/test-support/docker-registry';
import { assertBuilt, callJson, cleanEnv, killAll, runCli } from './spawn-cli.js';

const ADMIN_PASSWORD = 'client-registry-admin-password';

interface Node {
  api: SentinelApi;
  server: RunningServer;
  sockets: WebSocketHandle;
  token: string;
}

let dir: string;
let registry: RunningRegistry;
let a: Node;
let b: Node;

async function startNode(name: string): Promise<Node> {
  const api = await createSentinelApi({
    dataDir: join(dir, name),
    adminPassword: ADMIN_PASSWORD,
    tokenSecret: `client-registry-secret-${name}-0123456789abcdef`,
    registry: { url: registry.url },
  });
  const server = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false });
  const sockets = attachWebSocket(server.server, api);
  const token = (await callJson('POST', `${server.url}/v1/auth/login`, undefined, { username: 'admin', password: ADMIN_PASSWORD })).json.token as string;
  return { api, server, sockets, token };
}

/** Runs one command against `node` (its URL and token through SENTINEL_HOST / SENTINEL_TOKEN). */
async function sentinel(node: Node, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = runCli(args, cleanEnv(join(dir, 'home'), { SENTINEL_HOST: node.server.url, SENTINEL_TOKEN: node.token }));
  const exit = await cli.exited(60_000);
  return { code: exit.code, stdout: cli.stdout(), stderr: cli.stderr() };
}

beforeAll(async () => {
  assertBuilt();
  dir = mkdtempSync(join(tmpdir(), 'sentinel-client-registry-'));
  registry = await startDockerRegistry();
  [a, b] = await Promise.all([startNode('a'), startNode('b')]);
}, 60_000);

afterEach(async () => {
  await killAll();
});

afterAll(async () => {
  for (const node of [a, b]) {
    await node?.sockets.close();
    await node?.server.close();
    await node?.api.close();
  }
  await registry?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('sentinel push / search / pull against docker-registry', () => {
  it('pushes from A with a progress line per blob step, finds it, pulls it into B with the same digest', async () => {
    const file = join(dir, 'Sentinelfile.yaml');
    writeFileSync(file, ['name: demo/shipped', 'tag: v1', 'description: Shipped through a registry', 'model:', '  provider: echo', '  name: echo', 'instructions: Be brief.', ''].join('\n'));
    expect((await sentinel(a, ['build', '-f', file])).code).toBe(0);
    const digest = (await callJson('GET', `${a.server.url}/v1/images/demo%2Fshipped:v1`, a.token)).json.id as string;

    const push = await sentinel(a, ['push', 'demo/shipped:v1']);
    expect(push.stderr).toBe('');
    expect(push.code).toBe(0);
    const lines = push.stdout.trimEnd().split('\n');
    // Not a terminal: plain lines, no bar drawing.
    expect(push.stdout).not.toContain('\u001b[');
    expect(lines.slice(0, -1).length).toBeGreaterThanOrEqual(3);
    for (const line of lines.slice(0, -1)) expect(line).toMatch(/^[0-9a-f]{12}: (uploading|exists|verified) (manifest|config|layer) \d+\/\d+$/);
    expect(lines.some((line) => line.startsWith(`${digest.slice(7, 19)}: verified manifest `))).toBe(true);
    expect(lines.at(-1)).toBe(`demo/shipped:v1: pushed ${digest}`);

    const search = await sentinel(b, ['search', 'shipped', '--limit', '5']);
    expect(search.code).toBe(0);
    expect(search.stdout).toMatch(/^NAME +TAGS +DESCRIPTION\ndemo\/shipped +v1 +Shipped through a registry\n$/);
    const searchJson = await sentinel(b, ['search', 'shipped', '--format', 'json']);
    expect(JSON.parse(searchJson.stdout)).toEqual((await callJson('GET', `${b.server.url}/v1/registry/search?query=shipped`, b.token)).json.results);

    expect((await callJson('GET', `${b.server.url}/v1/images/demo%2Fshipped:v1`, b.token)).status).toBe(404);
    const pull = await sentinel(b, ['pull', 'demo/shipped:v1']);
    expect(pull.stderr).toBe('');
    expect(pull.code).toBe(0);
    const pulled = pull.stdout.trimEnd().split('\n');
    for (const line of pulled.slice(0, -1)) expect(line).toMatch(/^[0-9a-f]{12}: (downloading|verified) (manifest|config|layer) \d+\/\d+$/);
    expect(pulled.at(-1)).toBe(`demo/shipped:v1: pulled ${digest}`);
    const images = await sentinel(b, ['images']);
    expect(images.stdout).toMatch(new RegExp(`\\ndemo/shipped +v1 +${digest.slice(7, 19)} `));

    const run = await sentinel(b, ['run', '-d', 'demo/shipped:v1', '--name', 'shipped']);
    expect(run.code).toBe(0);
    const chat = runCli(['chat', 'shipped'], cleanEnv(join(dir, 'home'), { SENTINEL_HOST: b.server.url, SENTINEL_TOKEN: b.token }), 'from the registry\n');
    expect((await chat.exited()).code).toBe(0);
    expect(chat.stdout()).toBe('Echo: from the registry\n');
  });

  it('pulling a tag the registry does not have is exit 1 with one line', async () => {
    const pull = await sentinel(b, ['pull', 'demo/shipped:nope']);
    expect(pull.code).toBe(1);
    expect(pull.stdout).toBe('');
    expect(pull.stderr).toMatch(/^sentinel pull: .+ \(not_found\)\n$/);
  });
});
