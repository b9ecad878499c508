/**
 * The interactive side of the client commands, under a real pseudo-terminal: tmux runs the
 * built binary in a detached pane (its own server socket, so nothing of a user's tmux is
 * touched) and the test types into it with `send-keys` and reads the screen with
 * `capture-pane`. The server's echo provider is slowed down (150 ms a chunk) so a turn is still
 * streaming when Ctrl-C arrives. Checked: `sentinel login` prompts and does not echo the
 * password; `sentinel chat` streams, colours its prompt on a terminal, Ctrl-C cancels the running
 * turn (the server ends it with reason "cancelled") and the session goes on, and Ctrl-C at the
 * prompt (or twice during a turn) exits 0. Tool approval: a gated tool's call shows its
 * parameters and asks "Approve? [y/N]"; y runs it and the answer goes on, N asks why and the
 * model gets the refusal; from a pipe (no terminal) the chat prints the pending request and
 * exits 3, and `sentinel runs ls|inspect|approve|cancel` (real processes) decide and inspect it.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { listen, type RunningServer } from '@sentinel/api-http';
import { attachWebSocket, type WebSocketHandle } from '@sentinel/api-ws';
import { assertBuilt, BIN_PATH, callJson, cleanEnv, killAll, runCli } from './spawn-cli.js';

const TMUX = '/usr/bin/tmux';
const ESC = '\u001b';
const ADMIN_PASSWORD = 'tty-admin-password-secret';
const run = promisify(execFile);

let dir: string;
let api: SentinelApi;
let server: RunningServer;
let sockets: WebSocketHandle;
let token: string;
let agentId: string;
let gatedId: string;
const socketName = `sentinel-cli-test-${process.pid}`;

function tmux(...args: string[]): Promise<{ stdout: string }> {
  return run(TMUX, ['-L', socketName, '-f', '/dev/null', ...args]);
}

const quote = (value: string): string => `'${value.replace(/'/g, "'\\''")}'`;

/**
 * Starts `sentinel <args>` in a new pane (`width` x 40) named `name`; the shell writes its exit status
 * to `<dir>/<name>.exit` when it ends, and the pane stays a minute for the screen to be read (the
 * tmux server goes in afterAll). Only PATH, HOME, TERM and `env` reach the command.
 */
async function startPane(name: string, args: string[], env: Record<string, string> = {}, width = 120): Promise<string> {
  const exitFile = join(dir, `${name}.exit`);
  const vars = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: join(dir, 'home'), TERM: 'xterm-256color', ...env };
  const command = `env -i ${Object.entries(vars).map(([k, v]) => `${k}=${quote(v)}`).join(' ')} ${quote(process.execPath)} ${quote(BIN_PATH)} ${args.map(quote).join(' ')}; echo $? > ${quote(exitFile)}; sleep 60`;
  await tmux('new-session', '-d', '-s', name, '-x', String(width), '-y', '40', command);
  return exitFile;
}

async function screen(name: string, escapes = false): Promise<string> {
  return (await tmux('capture-pane', '-p', ...(escapes ? ['-e'] : []), '-t', name)).stdout;
}

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function waitForScreen(name: string, what: string, predicate: (text: string) => boolean): Promise<string> {
  let last = '';
  await waitFor(what, async () => {
    last = await screen(name).catch(() => last);
    return predicate(last);
  }).catch((err: Error) => {
    throw new Error(`${err.message}; screen:\n${last}`);
  });
  return last;
}

async function exitCode(file: string): Promise<number> {
  await waitFor(`the exit status in ${file}`, () => existsSync(file) && readFileSync(file, 'utf8').trim() !== '');
  return Number(readFileSync(file, 'utf8').trim());
}

beforeAll(async () => {
  assertBuilt();
  if (!existsSync(TMUX)) throw new Error('install tmux (apt-get install tmux): the interactive CLI spec needs a pseudo-terminal');
  dir = mkdtempSync(join(tmpdir(), 'sentinel-client-tty-'));
  api = await createSentinelApi({
    dataDir: join(dir, 'data'),
    adminPassword: ADMIN_PASSWORD,
    tokenSecret: 'client-tty-spec-secret-0123456789abcdef',
    runtime: { echoChunkDelayMs: 150 },
  });
  server = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false });
  sockets = attachWebSocket(server.server, api);
  token = (await callJson('POST', `${server.url}/v1/auth/login`, undefined, { username: 'admin', password: ADMIN_PASSWORD })).json.token as string;
  agentId = (await callJson('POST', `${server.url}/v1/agents`, token, { image: 'sentinel/echo:latest', name: 'slow' })).json.id as string;
  const gatedImage = await callJson('POST', `${server.url}/v1/images`, token, {
    name: 'demo/gated',
    tag: 'v1',
    model: { provider: 'echo', name: 'echo' },
    tools: [{ name: 'calculator', approval: 'required' }],
  });
  expect(gatedImage.status).toBe(201);
  gatedId = (await callJson('POST', `${server.url}/v1/agents`, token, { image: gatedImage.json.id as string, name: 'gated' })).json.id as string;
});

afterAll(async () => {
  await killAll();
  // Only this spec's tmux server (its own socket) goes.
  await tmux('kill-server').catch(() => undefined);
  await sockets?.close();
  await server?.close();
  await api?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('sentinel on a terminal (tmux)', () => {
  it('login prompts for the username and the password, and never shows the password', async () => {
    const exit = await startPane('login', ['login', server.url]);
    await waitForScreen('login', 'the username prompt', (text) => text.includes('Username:'));
    await tmux('send-keys', '-t', 'login', 'admin', 'Enter');
    await waitForScreen('login', 'the password prompt', (text) => text.includes('Password:'));
    await tmux('send-keys', '-t', 'login', ADMIN_PASSWORD, 'Enter');
    expect(await exitCode(exit)).toBe(0);
    const shown = await screen('login');
    expect(shown).toMatch(/^Username: admin\nPassword:\n/);
    expect(shown).toContain(`Login Succeeded (admin on ${server.url})`);
    expect(shown).not.toContain(ADMIN_PASSWORD);
    const config = JSON.parse(readFileSync(join(dir, 'home', '.sentinel', 'config.json'), 'utf8')) as { current: string };
    expect(config.current).toBe(server.url);
  });

  it('chat streams the answer; Ctrl-C cancels the running turn and the session goes on; Ctrl-C at the prompt exits 0', async () => {
    const exit = await startPane('chat', ['chat', 'slow'], { SENTINEL_HOST: server.url, SENTINEL_TOKEN: token });
    await waitForScreen('chat', 'the prompt', (text) => /^>/m.test(text));
    // On a terminal the prompt is coloured (cyan).
    expect(await screen('chat', true)).toMatch(new RegExp(`${ESC}\\[36m(?:${ESC}\\[\\d+m)*>`));

    const long = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');
    await tmux('send-keys', '-t', 'chat', long, 'Enter');
    await waitForScreen('chat', 'the answer streaming', (text) => text.includes('Echo: word0'));
    await tmux('send-keys', '-t', 'chat', 'C-c');
    const cancelled = await waitForScreen('chat', 'the cancelled turn', (text) => text.includes('[cancelled]'));
    // The answer was cut short: its end never arrived.
    const answer = cancelled.split('\n').find((line) => line.startsWith('Echo: '));
    expect(answer).toMatch(/^Echo: word0 .*\[cancelled\]$/);
    expect(answer).not.toContain('word39');
    // The server ended the turn as cancelled (its log says so), not as a finished answer.
    const logs = async (): Promise<string[]> => ((await callJson('GET', `${server.url}/v1/agents/${agentId}/logs`, token)).json.logs as { message: string }[]).map((l) => l.message);
    await waitFor('the cancelled log line', async () => (await logs()).some((m) => /processed: cancelled/.test(m)));
    expect((await logs()).some((m) => /processed: stop/.test(m))).toBe(false);

    // Still connected: the next message is answered in full.
    await tmux('send-keys', '-t', 'chat', 'short one', 'Enter');
    await waitForScreen('chat', 'the next answer', (text) => text.includes('Echo: short one'));
    await waitForScreen('chat', 'the prompt again', (text) => /Echo: short one\n>/.test(text));
    expect(existsSync(exit)).toBe(false);
    await tmux('send-keys', '-t', 'chat', 'C-c');
    expect(await exitCode(exit)).toBe(0);
  });

  it('two Ctrl-C during a turn exit 0; NO_COLOR turns the colour off on a terminal too', async () => {
    const exit = await startPane('chat2', ['chat', 'slow'], { SENTINEL_HOST: server.url, SENTINEL_TOKEN: token, NO_COLOR: '1' });
    await waitForScreen('chat2', 'the prompt', (text) => /^>/m.test(text));
    expect(await screen('chat2', true)).not.toMatch(new RegExp(`${ESC}\\[(?:2|36)m`));
    await tmux('send-keys', '-t', 'chat2', Array.from({ length: 40 }, (_, i) => `w${i}`).join(' '), 'Enter');
    await waitForScreen('chat2', 'the answer streaming', (text) => text.includes('Echo: w0'));
    await tmux('send-keys', '-t', 'chat2', 'C-c');
    await tmux('send-keys', '-t', 'chat2', 'C-c');
    expect(await exitCode(exit)).toBe(0);
  });
  it('push on a terminal draws a progress bar per blob, then the result', async () => {
    const built = await callJson('POST', `${server.url}/v1/images`, token, {
      name: 'demo/tty',
      tag: 'v1',
      description: 'Pushed from a terminal',
      model: { provider: 'echo', name: 'echo' },
      instructions: 'Be brief.',
    });
    expect(built.status).toBe(201);
    const exit = await startPane('push', ['push', 'demo/tty:v1'], { SENTINEL_HOST: server.url, SENTINEL_TOKEN: token });
    expect(await exitCode(exit)).toBe(0);
    const shown = await screen('push');
    const bars = shown.split('\n').filter((line) => /^(manifest|config|layer) +[0-9a-f]{12}: \[[\u2588\u2591]{30}\] \S+\/\S+ (uploading|exists|verified)$/.test(line.trimEnd()));
    expect(bars.map((line) => line.split(' ')[0]).sort()).toEqual(['config', 'layer', 'manifest']);
    expect(shown).toContain(`demo/tty:v1: pushed ${built.json.id as string}`);
  });
  it('chat asks "Approve? [y/N]" for a gated tool call: y runs it, N asks why and the model is told; the answer goes on', async () => {
    const exit = await startPane('approve', ['chat', 'gated'], { SENTINEL_HOST: server.url, SENTINEL_TOKEN: token });
    await waitForScreen('approve', 'the prompt', (text) => /^>/m.test(text));
    await tmux('send-keys', '-t', 'approve', '/tool calculator {"expression":"6*7"}', 'Enter');
    const asked = await waitForScreen('approve', 'the approval question', (text) => text.includes('Approve? [y/N]'));
    expect(asked).toContain('Approval required: calculator {"expression":"6*7"}');
    await tmux('send-keys', '-t', 'approve', 'y', 'Enter');
    const approved = await waitForScreen('approve', 'the answer after the approval', (text) => /Tool calculator returned: .*"result":42/.test(text));
    expect(approved).toContain('[approved]');
    await waitForScreen('approve', 'the prompt again', (text) => /"result":42\}\n>/.test(text));

    await tmux('send-keys', '-t', 'approve', '/tool calculator {"expression":"2+2"}', 'Enter');
    await waitForScreen('approve', 'the second question', (text) => text.split('Approve? [y/N]').length === 3);
    await tmux('send-keys', '-t', 'approve', 'n', 'Enter');
    await waitForScreen('approve', 'the reason question', (text) => text.includes('Reason (optional):'));
    await tmux('send-keys', '-t', 'approve', 'no maths today', 'Enter');
    const refused = await waitForScreen('approve', 'the answer after the refusal', (text) => /Tool calculator returned: .*no maths today/.test(text));
    expect(refused).toContain('[refused: no maths today]');
    expect(refused).not.toContain('"result":4}');
    await waitForScreen('approve', 'the prompt after the refusal', (text) => /no maths today.*\n>/.test(text));

    // The server holds both decisions on the runs.
    const runs = (await callJson('GET', `${server.url}/v1/agents/${gatedId}/runs`, token)).json.runs as { status: string; output: { content: string } | null }[];
    expect(runs.slice(0, 2).map((r) => r.status)).toEqual(['completed', 'completed']);
    await tmux('send-keys', '-t', 'approve', 'C-c');
    expect(await exitCode(exit)).toBe(0);
  });

  it('from a pipe a gated call cannot be answered: the chat prints the request and exits 3; sentinel runs approves and inspects it', async () => {
    const env = cleanEnv(join(dir, 'home'), { SENTINEL_HOST: server.url, SENTINEL_TOKEN: token });
    const piped = runCli(['chat', 'gated'], env, '/tool calculator {"expression":"3*3"}\n');
    const ended = await piped.exited(20_000);
    expect(ended.code).toBe(3);
    const said = piped.stderr();
    const match = /run (run_[0-9a-f]{24}) is waiting for approval of calculator \{"expression":"3\*3"\} \(request (\S+), expires [^)]+\)/.exec(said);
    expect(match, said).not.toBeNull();
    const [, runId, requestId] = match as RegExpExecArray;
    expect(said).toContain(`sentinel runs approve ${gatedId} ${runId} ${requestId}`);

    // The run waits on the server (closing the socket cancelled nothing).
    const ls = runCli(['runs', 'ls', 'gated', '--status', 'requires_action'], env);
    expect((await ls.exited()).code).toBe(0);
    expect(ls.stdout()).toMatch(new RegExp(`^RUN ID +STATUS +CREATED +TOKENS +INPUT\n${runId} +requires_action +`));

    const approve = runCli(['runs', 'approve', 'gated', runId as string], env);
    expect((await approve.exited()).code, approve.stderr()).toBe(0);
    expect(approve.stdout()).toMatch(new RegExp(`^${runId} approved ${requestId}: `));
    const waited = await callJson('GET', `${server.url}/v1/agents/${gatedId}/runs/${runId}?wait=20`, token);
    expect(waited.json).toMatchObject({ status: 'completed' });
    expect((waited.json as { output: { content: string } }).output.content).toContain('"result":9');

    const inspect = runCli(['runs', 'inspect', 'gated', runId as string], env);
    expect((await inspect.exited()).code).toBe(0);
    expect(JSON.parse(inspect.stdout())).toMatchObject([{ id: runId, status: 'completed', input: { content: '/tool calculator {"expression":"3*3"}' } }]);

    // Nothing left to decide: a clear error, exit 1; a refused decision and a cancel of a waiting run.
    const again = runCli(['runs', 'approve', 'gated', runId as string], env);
    expect((await again.exited()).code).toBe(1);
    expect(again.stderr()).toMatch(/waits for no decision \(status completed\) \(conflict\)/);

    const second = runCli(['chat', 'gated'], env, '/tool calculator {"expression":"4*4"}\n');
    expect((await second.exited(20_000)).code).toBe(3);
    const secondRun = /run (run_[0-9a-f]{24})/.exec(second.stderr())?.[1] as string;
    const deny = runCli(['runs', 'approve', 'gated', secondRun, '--deny', '--reason', 'not from a script'], env);
    expect((await deny.exited()).code, deny.stderr()).toBe(0);
    expect(deny.stdout()).toContain(`${secondRun} refused`);
    const denied = await callJson('GET', `${server.url}/v1/agents/${gatedId}/runs/${secondRun}?wait=20`, token);
    expect((denied.json as { output: { content: string } }).output.content).toContain('not from a script');

    const third = runCli(['chat', 'gated'], env, '/tool calculator {"expression":"5*5"}\n');
    expect((await third.exited(20_000)).code).toBe(3);
    const thirdRun = /run (run_[0-9a-f]{24})/.exec(third.stderr())?.[1] as string;
    const cancel = runCli(['runs', 'cancel', 'gated', thirdRun], env);
    expect((await cancel.exited()).code, cancel.stderr()).toBe(0);
    expect(cancel.stdout()).toBe(`${thirdRun} cancelled\n`);
  });

  it('tables fit the terminal: in 70 columns the widest columns are cut with …, the id never', async () => {
    const exit = await startPane('narrow', ['ps', '-a'], { SENTINEL_HOST: server.url, SENTINEL_TOKEN: token }, 70);
    expect(await exitCode(exit)).toBe(0);
    const lines = (await screen('narrow')).split('\n').filter((line) => line.trim() !== '');
    expect(lines[0]).toMatch(/^AGENT ID/);
    expect(lines.some((line) => line.startsWith(`${agentId.slice(0, 12)} `))).toBe(true);
    for (const line of lines) expect(line.trimEnd().length).toBeLessThanOrEqual(70);
    expect(lines.join('\n')).toContain('…');
  });
});
