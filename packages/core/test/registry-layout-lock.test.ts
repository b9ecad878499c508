/**
 * Two real processes writing one OCI image layout at once (the embedded registry's repository
 * directory, as two `sentinel api` on one data directory would): the layout module is bundled
 * from the sources with esbuild and run in two node children that write many images each, some
 * identical. Afterwards index.json lists every image and every blob verifies. Plus the lock
 * file's stale-lock recovery (a dead holder) and waiting for a live holder.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAgentImage, readImageFromLayout, writeImageToLayout, type AgentDefinition } from '@sentinel/api-core';
import { listLayout } from '../src/images/layout.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const SRC = resolve(HERE, '../src');
const LOCK_FILE = '.sentinel-write.lock';
const PER_WORKER = 40;

function definition(name: string, tag: string, description: string): AgentDefinition {
  return { name, tag, description, model: { provider: 'echo', name: 'echo', parameters: {} }, instructions: 'Say it back.', tools: [], capabilities: ['chat'] } as AgentDefinition;
}

// The child: writes PER_WORKER images into the layout; every 4th one is the same for both workers.
const CHILD_SOURCE = `
const [bundle, dir, worker, count] = process.argv.slice(2);
const { buildAgentImage, writeImageToLayout } = await import(bundle);
const def = (name, tag, description) => ({ name, tag, description, model: { provider: 'echo', name: 'echo', parameters: {} }, instructions: 'Say it back.', tools: [], capabilities: ['chat'] });
const written = [];
for (let i = 0; i < Number(count); i++) {
  const shared = i % 4 === 0;
  const image = buildAgentImage(def(shared ? 'shared/img' : 'w' + worker + '/img', 't' + i, shared ? 'shared ' + i : 'worker ' + worker + ' image ' + i), '2026-01-01T00:00:00.000Z');
  const refName = 'w' + worker + '-t' + i;
  await writeImageToLayout(dir, image, { refName });
  written.push({ refName, digest: image.digest });
}
process.stdout.write(JSON.stringify(written));
`;

function runChild(script: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('exit', (code) => resolveRun({ code, stdout, stderr }));
  });
}

describe('one OCI image layout written by two processes at once', () => {
  let work: string;
  let bundle: string;
  let script: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'sentinel-layout-lock-'));
    // esbuild comes with tsup (a root dev dependency); bundling runs the TypeScript sources as they are.
    const requireFromTsup = createRequire(createRequire(import.meta.url).resolve('tsup'));
    const esbuild = (await import(requireFromTsup.resolve('esbuild'))) as { build(options: Record<string, unknown>): Promise<unknown> };
    const entry = join(work, 'entry.ts');
    writeFileSync(entry, `export { writeImageToLayout } from ${JSON.stringify(join(SRC, 'images/layout.ts'))};\nexport { buildAgentImage } from ${JSON.stringify(join(SRC, 'images/oci.ts'))};\n`);
    bundle = join(work, 'layout.mjs');
    await esbuild.build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'esm', target: 'node20', outfile: bundle, logLevel: 'silent' });
    script = join(work, 'child.mjs');
    writeFileSync(script, CHILD_SOURCE);
  });

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('keeps every image of both writers in index.json, and every blob verifies', async () => {
    const dir = join(work, 'registry', 'demo+shared');
    const [one, two] = await Promise.all([runChild(script, [bundle, dir, '1', String(PER_WORKER)]), runChild(script, [bundle, dir, '2', String(PER_WORKER)])]);
    expect(one, one.stderr).toMatchObject({ code: 0 });
    expect(two, two.stderr).toMatchObject({ code: 0 });
    const written = [...(JSON.parse(one.stdout) as { refName: string; digest: string }[]), ...(JSON.parse(two.stdout) as { refName: string; digest: string }[])];
    expect(written).toHaveLength(2 * PER_WORKER);

    const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
    const listed = new Map(index.manifests.map((m) => [m.annotations?.['org.opencontainers.image.ref.name'], m.digest]));
    expect(index.manifests).toHaveLength(2 * PER_WORKER);
    for (const { refName, digest } of written) {
      expect(listed.get(refName), refName).toBe(digest);
      // Reads and verifies the manifest, config and layer against their digests.
      expect((await readImageFromLayout(dir, { refName })).digest).toBe(digest);
    }
    const blobs = readdirSync(join(dir, 'blobs', 'sha256'));
    for (const hex of blobs) expect(createHash('sha256').update(readFileSync(join(dir, 'blobs', 'sha256', hex))).digest('hex')).toBe(hex);
    // Shared images were written once: 2 × 30 worker images + 10 shared, each a manifest and a config, plus the empty layer.
    expect(blobs).toHaveLength(2 * (2 * (PER_WORKER - PER_WORKER / 4) + PER_WORKER / 4) + 1);
    // No lock, breaker or temporary file left behind.
    expect(readdirSync(dir).sort()).toEqual(['blobs', 'index.json', 'oci-layout']);
  }, 60_000);

  it('breaks the lock of a writer that died, and waits for one that is alive', async () => {
    const dir = join(work, 'stale');
    mkdirSync(dir, { recursive: true });
    // A pid that surely is dead: a child that already exited.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: dead, host: hostname(), token: 'dead-writer' }));
    const first = buildAgentImage(definition('demo/stale', 'v1', 'after a crash'), '2026-01-01T00:00:00.000Z');
    const started = Date.now();
    await writeImageToLayout(dir, first, { refName: 'v1' });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await listLayout(dir)).map((e) => e.refName)).toEqual(['v1']);
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);

    // A live holder (a sleeping child) keeps the lock: the write waits until it is released.
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
    try {
      writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: holder.pid, host: hostname(), token: 'live-writer' }));
      const second = buildAgentImage(definition('demo/stale', 'v2', 'after the wait'), '2026-01-01T00:00:00.000Z');
      let done = false;
      const writing = writeImageToLayout(dir, second, { refName: 'v2' }).then(() => (done = true));
      await new Promise((r) => setTimeout(r, 500));
      expect(done).toBe(false);
      expect((await listLayout(dir)).map((e) => e.refName)).toEqual(['v1']);
      rmSync(join(dir, LOCK_FILE));
      await writing;
      expect((await listLayout(dir)).map((e) => e.refName)).toEqual(['v1', 'v2']);
    } finally {
      holder.kill('SIGKILL');
    }
  }, 30_000);
});
