/**
 * `sentinel` from a checkout, as the README says: the root package.json's `sentinel` script
 * through pnpm, flags passed through after pnpm's `--` (which pnpm hands on as it is).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { assertBuilt, cleanEnv } from './spawn-cli.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const PNPM = ['-y', 'pnpm@10.34.9', '--silent'];
const ROOT_SCRIPTS = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;

let tmp: string;

beforeAll(() => {
  assertBuilt();
});

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sentinel-scripts-'));
});

afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});

interface Run {
  output: () => string;
  errors: () => string;
  exited: Promise<number | null>;
  /** Signals the whole process group: pnpm and the node it started. */
  kill: (signal: NodeJS.Signals) => void;
}

function pnpm(args: string[], env: NodeJS.ProcessEnv): Run {
  const child = spawn('npx', [...PNPM, ...args], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  return {
    output: () => out,
    errors: () => err,
    exited: new Promise((resolve) => child.on('close', (code) => resolve(code))),
    kill: (signal) => {
      try {
        process.kill(-(child.pid as number), signal);
      } catch {
        // Already gone.
      }
    },
  };
}

describe('root package.json scripts', () => {
  it('start builds first and passes flags through to sentinel api', () => {
    expect(ROOT_SCRIPTS.start).toBe('pnpm build && node packages/cli/dist/bin.js api');
    expect(ROOT_SCRIPTS.sentinel).toBe('node packages/cli/dist/bin.js');
  });

  it('pnpm sentinel --version', async () => {
    const run = pnpm(['sentinel', '--version'], cleanEnv(tmp));
    expect(await run.exited).toBe(0);
    expect(run.output()).toMatch(/^sentinel \d+\.\d+\.\d+ \(commit ([0-9a-f]{12}|unknown), node v[\d.]+\)\n$/);
  }, 60_000);

  it('pnpm sentinel api -- --port 0 …: pnpm keeps the "--", the binary drops it and serves', async () => {
    const run = pnpm(
      ['sentinel', 'api', '--', '--port', '0', '--host', '127.0.0.1', '--data-dir', join(tmp, 'data')],
      cleanEnv(tmp, { SENTINEL_ADMIN_PASSWORD: 'a-long-admin-password' }),
    );
    try {
      const deadline = Date.now() + 30_000;
      let match: RegExpExecArray | null = null;
      while (!(match = /SentinelStacks API listening on (\S+)/.exec(run.output())) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(match, `stderr: ${run.errors()}`).not.toBeNull();
      const res = await request(`${(match as RegExpExecArray)[1]}/v1/health`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.json()).toEqual({ status: 'ok' });
    } finally {
      run.kill('SIGTERM');
    }
    await run.exited;
  }, 60_000);

  it('typed by hand, a stray "--" stays a usage error', async () => {
    const env = cleanEnv(tmp);
    delete env.npm_lifecycle_event;
    const run = spawn(process.execPath, [join(ROOT, 'packages/cli/dist/bin.js'), 'api', '--', '--port', '0'], { env });
    let err = '';
    run.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    const code = await new Promise<number | null>((resolve) => run.on('close', resolve));
    expect(code).toBe(2);
    expect(err).toBe('sentinel api: unexpected argument "--port" (sentinel api takes only flags)\n');
  });
});
