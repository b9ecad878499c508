/**
 * The Docker-style client commands, as a user runs them: the BUILT binary spawned with a
 * temporary HOME (so `~/.sentinel/config.json` is the test's) against a real server on port 0.
 * Login, run -d, ps (table, json, -q, -a), chat from piped stdin, logs and logs -f (stopped by a
 * signal), events, inspect, stop/start/rm, images, build, rmi, references (prefix, ambiguous),
 * completion, and the exit codes: 2 for bad arguments, 1 with one `message (code)` line for an
 * unknown agent or a server that is down.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { listen, type RunningServer } from '@sentinel/api-http';
import { attachWebSocket, type WebSocketHandle } from '@sentinel/api-ws';
import { assertBuilt, callJson, cleanEnv, killAll, runCli, type CliProcess } from './spawn-cli.js';

const ADMIN_PASSWORD = 'client-commands-admin-password';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

let dir: string;
let home: string;
let api: SentinelApi;
let server: RunningServer;
let sockets: WebSocketHandle;
let token: string;

/** Runs one command to its end with the test's HOME (and `extra` env); `input` is piped to stdin. */
async function sentinel(args: string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<Result> {
  const cli = runCli(args, cleanEnv(home, options.env), options.input);
  const exit = await cli.exited(20_000);
  return { code: exit.code, stdout: cli.stdout(), stderr: cli.stderr() };
}

/** Starts a long-running command (logs -f, events) and returns it. */
function start(args: string[]): CliProcess {
  return runCli(args, cleanEnv(home));
}

const ESC = '\u001b[';

beforeAll(async () => {
  assertBuilt();
  dir = mkdtempSync(join(tmpdir(), 'sentinel-client-cli-'));
  home = join(dir, 'home');
  api = await createSentinelApi({ dataDir: join(dir, 'data'), adminPassword: ADMIN_PASSWORD, tokenSecret: 'client-cli-spec-secret-0123456789abcdef' });
  server = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false });
  sockets = attachWebSocket(server.server, api);
  const login = await callJson('POST', `${server.url}/v1/auth/login`, undefined, { username: 'admin', password: ADMIN_PASSWORD });
  token = login.json.token as string;
});

afterEach(async () => {
  await killAll();
});

afterAll(async () => {
  await sockets?.close();
  await server?.close();
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('sentinel login / logout', () => {
  it('logs in with --password-stdin, keeps the token per server in a 0600 config, and remembers the server', async () => {
    const wrong = await sentinel(['login', server.url, '-u', 'admin', '--password-stdin'], { input: 'not-the-password\n' });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toBe('sentinel login: invalid username or password (unauthorized)\n');

    const ok = await sentinel(['login', server.url, '-u', 'admin', '--password-stdin'], { input: `${ADMIN_PASSWORD}\n` });
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toBe(`Login Succeeded (admin on ${server.url})\n`);
    const file = join(home, '.sentinel', 'config.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const config = JSON.parse(readFileSync(file, 'utf8')) as { current: string; servers: Record<string, { token: string; username: string }> };
    expect(config.current).toBe(server.url);
    expect(config.servers[server.url]?.username).toBe('admin');
    // The saved token is a real one: the server answers to it.
    expect((await callJson('GET', `${server.url}/v1/auth/me`, config.servers[server.url]?.token)).json).toMatchObject({ username: 'admin' });

    // No --server: the remembered one.
    const ps = await sentinel(['ps']);
    expect(ps.code).toBe(0);
    expect(ps.stdout).toMatch(/^AGENT ID +NAME +IMAGE +STATUS +CREATED +MODEL\n/);
  });

  it('without a terminal and without --password-stdin it cannot prompt: a usage error, exit 2', async () => {
    const result = await sentinel(['login', server.url, '-u', 'admin']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe('sentinel login: cannot prompt for password: stdin is not a terminal (use -u and --password-stdin)\n');
  });

  it('--token and SENTINEL_TOKEN override the saved login; --server and SENTINEL_HOST the saved server; logout revokes and forgets', async () => {
    const other = join(dir, 'other-home');
    const env = cleanEnv(other, { SENTINEL_HOST: server.url, SENTINEL_TOKEN: token });
    const viaEnv = runCli(['images', '-q'], env);
    expect((await viaEnv.exited()).code).toBe(0);
    expect(viaEnv.stdout()).toMatch(/^[0-9a-f]{12}\n/);
    const viaFlags = runCli(['--server', server.url, 'images', '--token', token, '-q'], cleanEnv(other));
    expect((await viaFlags.exited()).code).toBe(0);
    expect(viaFlags.stdout()).toBe(viaEnv.stdout());
    // Nobody logged in there: a 401 from the server, exit 1.
    const anonymous = runCli(['images'], cleanEnv(other, { SENTINEL_HOST: server.url }));
    expect((await anonymous.exited()).code).toBe(1);
    expect(anonymous.stderr()).toMatch(/^sentinel images: .+ \(unauthorized\)\n$/);

    // Log in a second HOME, then log out: the token stops working on the server and leaves the file.
    const second = runCli(['login', server.url, '-u', 'admin', '--password-stdin'], cleanEnv(other), ADMIN_PASSWORD);
    expect((await second.exited()).code).toBe(0);
    const file = join(other, '.sentinel', 'config.json');
    const saved = (JSON.parse(readFileSync(file, 'utf8')) as { servers: Record<string, { token: string }> }).servers[server.url]?.token;
    const logout = runCli(['logout'], cleanEnv(other));
    expect((await logout.exited()).code).toBe(0);
    expect(logout.stdout()).toBe(`Removing login credentials for ${server.url}\n`);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ servers: {} });
    expect((await callJson('GET', `${server.url}/v1/auth/me`, saved)).status).toBe(401);
  });
});

describe('agents: run, ps, chat, logs, events, inspect, stop/start/rm', () => {
  let agentId: string;

  it('run -d prints the new agent id; ps shows it as a table, as the API objects with --format json, ids with -q', async () => {
    const run = await sentinel(['run', '-d', 'sentinel/echo', '--name', 'helper', '-e', 'LANG=en', '-e', 'TZ=UTC']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^[0-9a-f]{16}\n$/);
    agentId = run.stdout.trim();

    const table = await sentinel(['ps']);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^AGENT ID +NAME +IMAGE +STATUS +CREATED +MODEL$/);
    expect(lines.find((l) => l.includes('helper'))).toMatch(new RegExp(`^${agentId.slice(0, 12)} +helper +sentinel/echo:latest +running +.+ago +echo/echo$`));
    // Not a terminal: no colour codes.
    expect(table.stdout).not.toContain(ESC);

    const asJson = await sentinel(['ps', '--format', 'json']);
    const fromApi = await callJson('GET', `${server.url}/v1/agents`, token);
    expect(JSON.parse(asJson.stdout)).toEqual(fromApi.json.agents);
    expect((JSON.parse(asJson.stdout) as { environment: string[] }[]).find((a) => (a as unknown as { id: string }).id === agentId)?.environment.sort()).toEqual(['LANG', 'TZ']);

    const quiet = await sentinel(['ps', '-q']);
    expect(quiet.stdout.split('\n')).toContain(agentId);
  });

  it('chat from piped stdin: each line is one message, each answer printed as it streams, exit 0 after the last at EOF', async () => {
    const result = await sentinel(['chat', 'helper'], { input: 'Hi there, agent\n\nsecond message\n' });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('Echo: Hi there, agent\nEcho: second message\n');

    // run without -d attaches the same chat to the new agent.
    const attached = await sentinel(['run', 'sentinel/echo:latest', '--name', 'attached'], { input: 'straight in\n' });
    expect(attached).toEqual({ code: 0, stdout: 'Echo: straight in\n', stderr: '' });
    expect((await callJson('GET', `${server.url}/v1/agents/attached`, token)).json.status).toBe('running');
    expect((await sentinel(['rm', '-f', 'attached'])).code).toBe(0);
  });

  it('logs prints the stored lines (--tail, --level); logs -f follows new lines until a signal ends it with exit 0', async () => {
    // The "processed" line is written just after the answer went out: wait for it.
    let stored: { timestamp: string; message: string }[] = [];
    for (let i = 0; i < 100 && stored.filter((r) => r.message.includes('processed')).length < 2; i++) {
      stored = (await callJson('GET', `${server.url}/v1/agents/${agentId}/logs`, token)).json.logs;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const logs = await sentinel(['logs', '--tail', '2', 'helper']);
    expect(logs.code).toBe(0);
    const lines = logs.stdout.trimEnd().split('\n');
    expect(lines).toEqual(stored.slice(-2).map((r) => `${r.timestamp} INFO  ${r.message}`));
    expect(lines[1]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z INFO {2}message cli-\d+-2 processed: stop, \d+ tokens$/);
    const warnings = await sentinel(['logs', '--level', 'error', agentId]);
    expect(warnings).toEqual({ code: 0, stdout: '', stderr: '' });

    const follow = start(['logs', '-f', '--tail', '1', 'helper']);
    await follow.waitFor(() => follow.stdout().includes('processed'), 'the stored tail line');
    // A line written after the follow started arrives.
    const chat = await sentinel(['chat', 'helper'], { input: 'written while following\n' });
    expect(chat.code).toBe(0);
    await follow.waitFor(() => follow.stdout().split('\n').filter((l) => l.includes('processed')).length === 2, 'the new line');
    expect(await follow.stop('SIGINT')).toEqual({ code: 0, signal: null });
    expect(follow.stderr()).toBe('');
  });

  it('events prints one JSON object a line, from the status snapshot on, and replays with --since', async () => {
    const events = start(['events', agentId]);
    await events.waitFor(() => events.stdout().includes('"agent_status"'), 'the status snapshot');
    expect((await sentinel(['chat', 'helper'], { input: 'an event please\n' })).code).toBe(0);
    await events.waitFor(() => events.stdout().includes('"message_processed"'), 'message_processed');
    expect(await events.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const frames = events.stdout().trimEnd().split('\n').map((line) => JSON.parse(line) as { event_type: string; seq?: number });
    expect(frames[0]?.event_type).toBe('agent_status');
    const received = frames.find((f) => f.event_type === 'message_received');
    expect(received?.seq).toBeGreaterThan(0);

    const replay = start(['events', '--since', String((received?.seq as number) - 1), 'helper']);
    await replay.waitFor(() => replay.stdout().includes('"message_processed"'), 'the replayed events');
    await replay.stop('SIGINT');
    const replayed = replay.stdout().trimEnd().split('\n').map((line) => JSON.parse(line) as { seq?: number });
    expect(replayed[1]?.seq).toBe(received?.seq);
  });

  it('inspect shows agents and images as the API objects; an unknown reference is exit 1 with one line', async () => {
    const inspect = await sentinel(['inspect', agentId.slice(0, 6), 'sentinel/echo:latest']);
    expect(inspect.stderr).toBe('');
    expect(inspect.code).toBe(0);
    const [agent, image] = JSON.parse(inspect.stdout) as [Record<string, unknown>, Record<string, unknown>];
    expect(agent).toEqual((await callJson('GET', `${server.url}/v1/agents/${agentId}`, token)).json);
    expect(image).toEqual((await callJson('GET', `${server.url}/v1/images/sentinel%2Fecho:latest`, token)).json);

    const unknown = await sentinel(['inspect', 'no-such-thing']);
    expect(unknown).toEqual({ code: 1, stdout: '', stderr: 'sentinel inspect: no such agent or image: no-such-thing (not_found)\n' });
    const chat = await sentinel(['chat', 'no-such-agent'], { input: 'hello\n' });
    expect(chat.code).toBe(1);
    expect(chat.stderr).toMatch(/^sentinel chat: .*not found.* \(not_found\)\n$/);
    expect(chat.stderr).not.toMatch(/\n\s+at /);
  });

  it('an ambiguous id prefix is an error that lists the matches', async () => {
    // 17 agents: two share a first hex digit for certain.
    const ids: string[] = [];
    for (let i = 0; i < 17; i++) ids.push((await callJson('POST', `${server.url}/v1/agents`, token, { image: 'sentinel/echo:latest', name: `many-${i}` })).json.id as string);
    const byDigit = new Map<string, string[]>();
    for (const id of ids) byDigit.set(id[0] as string, [...(byDigit.get(id[0] as string) ?? []), id]);
    const [digit, clash] = [...byDigit.entries()].find(([, list]) => list.length > 1) as [string, string[]];
    const result = await sentinel(['stop', digit]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^sentinel stop: .+ \(conflict\)\n$/);
    for (const id of clash) expect(result.stderr).toContain(id.slice(0, 12));
    const removed = await sentinel(['rm', '-f', ...ids]);
    expect(removed.code).toBe(0);
    expect(removed.stdout).toBe(ids.map((id) => `${id}\n`).join(''));
  });

  it('stop, start and rm: rm refuses a running agent without -f; several agents in one call', async () => {
    const other = (await sentinel(['run', '-d', 'sentinel/echo:latest', '--name', 'other'])).stdout.trim();
    const stop = await sentinel(['stop', 'helper', other.slice(0, 8)]);
    expect(stop).toEqual({ code: 0, stdout: `helper\n${other.slice(0, 8)}\n`, stderr: '' });
    expect((await sentinel(['ps'])).stdout).not.toContain('helper');
    const all = await sentinel(['ps', '-a']);
    expect(all.stdout).toMatch(/helper +sentinel\/echo:latest +stopped/);

    expect((await sentinel(['start', 'helper'])).code).toBe(0);
    expect((await sentinel(['ps'])).stdout).toMatch(/helper +sentinel\/echo:latest +running/);

    const refused = await sentinel(['rm', 'helper', 'other']);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('other\n');
    expect(refused.stderr).toBe('sentinel rm: agent helper is running: stop it first or use rm -f (conflict)\n');
    expect((await sentinel(['rm', '-f', 'helper'])).code).toBe(0);
    expect((await callJson('GET', `${server.url}/v1/agents/${agentId}`, token)).status).toBe(404);
    const gone = await sentinel(['stop', 'helper']);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/^sentinel stop: .+ \(not_found\)\n$/);
  });
});

describe('images: build, images, rmi', () => {
  it('build -f makes an image; images lists it (table, -q, json); run takes an id prefix; rmi removes it', async () => {
    const file = join(dir, 'Sentinelfile');
    writeFileSync(file, ['name: demo/cli', 'tag: v1', 'description: Built by the CLI spec', 'model:', '  provider: echo', '  name: echo', 'instructions: Be brief.', 'tools: [calculator]', ''].join('\n'));
    const build = await sentinel(['build', '-f', file]);
    expect(build.stderr).toBe('');
    expect(build.code).toBe(0);
    const shortId = /^Successfully built ([0-9a-f]{12})\nSuccessfully tagged demo\/cli:v1\n$/.exec(build.stdout)?.[1] as string;
    expect(shortId).toBeDefined();

    const table = await sentinel(['images']);
    expect(table.stdout).toMatch(/^REPOSITORY +TAG +IMAGE ID +CREATED +SIZE +MODEL\n/);
    expect(table.stdout).toMatch(new RegExp(`\\ndemo/cli +v1 +${shortId} +.+ago +\\d+B +echo/echo\\n`));
    expect((await sentinel(['images', '-q'])).stdout.split('\n')).toContain(shortId);
    const asJson = await sentinel(['images', '--format', 'json']);
    expect(JSON.parse(asJson.stdout)).toEqual((await callJson('GET', `${server.url}/v1/images`, token)).json.images);

    const run = await sentinel(['run', '-d', shortId.slice(0, 7), '--name', 'from-prefix']);
    expect(run.code).toBe(0);
    expect((await callJson('GET', `${server.url}/v1/agents/from-prefix`, token)).json.image).toBe('demo/cli:v1');
    expect((await sentinel(['rm', '-f', 'from-prefix'])).code).toBe(0);

    const rmi = await sentinel(['rmi', 'demo/cli:v1']);
    expect(rmi.code).toBe(0);
    expect(rmi.stdout).toMatch(/^Untagged: demo\/cli:v1\nDeleted: sha256:[0-9a-f]{64}\n$/);
    const again = await sentinel(['rmi', 'demo/cli:v1']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^sentinel rmi: .+ \(not_found\)\n$/);
    // An image id prefix shared by several images lists them (17 images: two share a first digit).
    const built: { id: string; short_id: string }[] = [];
    for (let i = 0; i < 17; i++) {
      const definition = { name: `demo/many${i}`, tag: 'v1', description: `image ${i}`, model: { provider: 'echo', name: 'echo' }, instructions: 'Be brief.' };
      built.push((await callJson('POST', `${server.url}/v1/images`, token, definition)).json);
    }
    const digit = [...'0123456789abcdef'].find((d) => built.filter((image) => image.short_id.startsWith(d)).length > 1) as string;
    const ambiguous = await sentinel(['rmi', digit]);
    expect(ambiguous.code).toBe(1);
    expect(ambiguous.stderr).toMatch(new RegExp(`^sentinel rmi: image reference "${digit}" is ambiguous: .+ \\(conflict\\)\n$`));
    for (const image of built.filter((b) => b.short_id.startsWith(digit))) expect(ambiguous.stderr).toContain(image.short_id);
    expect((await sentinel(['rmi', ...built.map((image) => image.short_id)])).code).toBe(0);

    const missing = await sentinel(['build', '-f', join(dir, 'nope.yaml')]);
    expect(missing).toEqual({ code: 1, stdout: '', stderr: `sentinel build: cannot read ${join(dir, 'nope.yaml')}: no such file or directory\n` });
  });
});

describe('usage, help, completion and failures', () => {
  it.each([
    ['an unknown flag', ['ps', '--bogus'], /^sentinel ps: unknown option '--bogus'\n/],
    ['a missing argument', ['run'], /^sentinel run: missing required argument 'image'\n/],
    ['a bad --format', ['images', '--format', 'yaml'], /^sentinel images: --format must be table or json, not "yaml"\n$/],
    ['a bad --tail', ['logs', '--tail', 'ten', 'helper'], /^sentinel logs: --tail must be a number or all, not "ten"\n$/],
    ['a bad -e', ['run', '-e', 'NOEQUALS', 'sentinel/echo'], /^sentinel run: -e takes KEY=VALUE, not "NOEQUALS"\n$/],
    ['a bad --since seq', ['events', '--since', 'yesterday', 'helper'], /^sentinel events: --since must be an event seq/],
    ['a stray argument', ['ps', 'extra'], /^sentinel ps: too many arguments/],
    ['an unknown shell', ['completion', 'fish'], /^sentinel completion: completion supports bash and zsh, not "fish"\n$/],
    ['global flags and no command', ['--server', 'http://127.0.0.1:9'], /^Usage: sentinel \[options\] \[command\]\n/],
  ])('%s is a usage error: exit 2, one message on stderr', async (_what, args, message) => {
    const result = await sentinel(args);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(message);
  });

  it('--help everywhere: sentinel --help lists the client commands, COMMAND --help and help COMMAND describe one', async () => {
    const main = await sentinel(['--help']);
    expect(main.code).toBe(0);
    for (const command of ['login', 'ps', 'run IMAGE', 'chat AGENT', 'logs [-f] AGENT', 'push NAME[:TAG]', 'completion bash|zsh']) expect(main.stdout).toContain(`  ${command}`);
    const ps = await sentinel(['ps', '--help']);
    expect(ps.code).toBe(0);
    expect(ps.stdout).toMatch(/^Usage: sentinel ps \[options\]\n/);
    expect(ps.stdout).toContain('--format <format>');
    expect(ps.stdout).toContain('--server <url>');
    const viaHelp = await sentinel(['help', 'logs']);
    expect(viaHelp.code).toBe(0);
    expect(viaHelp.stdout).toMatch(/^Usage: sentinel logs \[options\] <agent>\n/);
    const typo = await sentinel(['imagse']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/^sentinel: unknown command "imagse" \(did you mean "images"\?\)\n/);
  });

  it('completion bash and zsh print scripts a shell accepts', async () => {
    const bash = await sentinel(['completion', 'bash']);
    expect(bash.code).toBe(0);
    const script = join(dir, 'completion.bash');
    writeFileSync(script, bash.stdout);
    const { stdout } = await promisify(execFile)('bash', ['-c', `source ${script}; complete -p sentinel; COMP_WORDS=(sentinel pu); COMP_CWORD=1; _sentinel; echo "\${COMPREPLY[*]}"; COMP_WORDS=(sentinel ps --f); COMP_CWORD=2; _sentinel; echo "\${COMPREPLY[*]}"`]);
    expect(stdout).toBe('complete -o default -F _sentinel sentinel\npush pull\n--format\n');
    const zsh = await sentinel(['completion', 'zsh']);
    expect(zsh.code).toBe(0);
    expect(zsh.stdout).toMatch(/^#compdef sentinel\n/);
    expect(zsh.stdout).toContain("'logs:Show an agent");
  });

  it('a server that is down: exit 1 with one clear line naming the server', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const result = await sentinel(['--server', `http://127.0.0.1:${port}`, 'ps']);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(new RegExp(`^sentinel ps: cannot reach http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.* \\(network_error\\)\\n$`));
    const login = await sentinel(['login', `127.0.0.1:${port}`, '-u', 'admin', '--password-stdin'], { input: 'x\n' });
    expect(login.code).toBe(1);
    expect(login.stderr).toMatch(/\(network_error\)\n$/);
  });

});
