/**
 * A real CNCF distribution registry (Debian's `docker-registry`) on a loopback port with a temp
 * storage dir, anonymous, for the push and pull specs of the SDK and the CLI. (The registry specs of the http
 * package have a fuller helper with auth and proxies; this is the anonymous part of it.)
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const REGISTRY_BINARY = '/usr/bin/docker-registry';

export interface RunningRegistry {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>` */
  host: string;
  stop(): Promise<void>;
}

/** Starts `docker-registry serve` on 127.0.0.1 and a port it picks; fails (never skips) when it is not installed. */
export async function startDockerRegistry(): Promise<RunningRegistry> {
  if (!existsSync(REGISTRY_BINARY)) throw new Error('install docker-registry (apt-get install docker-registry)');
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-docker-registry-'));
  const config = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(join(dir, 'storage'))}`,
    'http:',
    '  addr: 127.0.0.1:0',
    `  secret: ${JSON.stringify(randomBytes(16).toString('hex'))}`,
  ];
  const configFile = join(dir, 'config.yml');
  writeFileSync(configFile, `${config.join('\n')}\n`);
  const child = spawn(REGISTRY_BINARY, ['serve', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let output = '';
  const host = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`docker-registry did not start within 10 s:\n${output}`)), 10_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const match = /listening on (127\.0\.0\.1:\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1] as string);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`docker-registry exited with ${code}:\n${output}`));
    });
  });
  const url = `http://${host}`;
  // "listening" is logged just before it serves: wait for a real answer.
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(`${url}/v2/`);
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch (err) {
      if (attempt > 50) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  let stopped: Promise<void> | undefined;
  return {
    url,
    host,
    stop: () =>
      (stopped ??= (async () => {
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3_000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
      })()),
  };
}
