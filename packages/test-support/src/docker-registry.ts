/**
 * A real CNCF distribution registry (Debian's `docker-registry`) on a loopback port with a temp
 * storage dir, anonymous or behind htpasswd basic auth or token (bearer) auth. Shared by the
 * http package's registry specs (which add proxies and a token server around it) and the SDK's
 * push and pull specs, so both start the registry the one same way.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const REGISTRY_BINARY = '/usr/bin/docker-registry';
const HTPASSWD_BINARY = '/usr/bin/htpasswd';

export interface RunningRegistry {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>` */
  host: string;
  storageDir: string;
  /** Everything the registry wrote (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

export interface TokenAuthConfig {
  realm: string;
  service: string;
  issuer: string;
  /** PEM file with the certificate whose key signs the tokens. */
  rootCertBundle: string;
}

export interface RegistryOptions {
  /** Basic auth with one user (bcrypt htpasswd file made by `htpasswd -Bbn`). */
  htpasswd?: { username: string; password: string };
  /** Token auth: the registry trusts tokens signed by the bundle's key. */
  token?: TokenAuthConfig;
}

/** Fails (never skips) when the registry is not installed: the registry specs need it. */
export function requireDockerRegistry(): void {
  if (!existsSync(REGISTRY_BINARY)) throw new Error('install docker-registry (apt-get install docker-registry)');
}

function yamlString(value: string): string {
  return JSON.stringify(value);
}

/** Starts `docker-registry serve` on 127.0.0.1 and a port it picks; resolves once it answers /v2/. */
export async function startDockerRegistry(options: RegistryOptions = {}): Promise<RunningRegistry> {
  requireDockerRegistry();
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-registry-'));
  const storageDir = join(dir, 'storage');
  const lines = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${yamlString(storageDir)}`,
    '  delete:',
    '    enabled: true',
    'http:',
    '  addr: 127.0.0.1:0',
    `  secret: ${yamlString(randomBytes(16).toString('hex'))}`,
  ];
  if (options.htpasswd) {
    if (!existsSync(HTPASSWD_BINARY)) throw new Error('install apache2-utils for htpasswd (apt-get install apache2-utils)');
    const { stdout } = await promisify(execFile)(HTPASSWD_BINARY, ['-Bbn', options.htpasswd.username, options.htpasswd.password]);
    const file = join(dir, 'htpasswd');
    writeFileSync(file, stdout);
    lines.push('auth:', '  htpasswd:', '    realm: sentinel-test', `    path: ${yamlString(file)}`);
  } else if (options.token) {
    const t = options.token;
    lines.push(
      'auth:',
      '  token:',
      `    realm: ${yamlString(t.realm)}`,
      `    service: ${yamlString(t.service)}`,
      `    issuer: ${yamlString(t.issuer)}`,
      `    rootcertbundle: ${yamlString(t.rootCertBundle)}`,
    );
  }
  const configFile = join(dir, 'config.yml');
  writeFileSync(configFile, `${lines.join('\n')}\n`);

  const child: ChildProcess = spawn(REGISTRY_BINARY, ['serve', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`docker-registry did not start within 10 s:\n${output}`)), 10_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const match = /listening on (127\.0\.0\.1:\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1] as string);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`docker-registry exited with ${code}:\n${output}`));
    });
  });
  const url = `http://${address}`;
  // Listening is logged just before serving starts: wait for a real answer (401 behind auth).
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(`${url}/v2/`);
      await res.arrayBuffer();
      if (res.status === 200 || res.status === 401) break;
    } catch (err) {
      if (attempt > 50) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  let stopped: Promise<void> | undefined;
  return {
    url,
    host: address,
    storageDir,
    log: () => output,
    stop: () =>
      (stopped ??= (async () => {
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3_000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
      })()),
  };
}
