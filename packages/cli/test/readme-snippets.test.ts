/**
 * The README's walk-through works when pasted: every fenced block marked `<!-- runnable -->`
 * is extracted in order and run by bash (`set -euo pipefail`, one shell, so variables carry
 * from block to block, as they do for a reader) against a real `sentinel api` started here on a
 * free port, with a temp data dir and a known admin password (the `API=` and `PASSWORD=` lines
 * are substituted). Each block's exit status and key outputs are checked. And every block
 * marked `<!-- file: examples/… -->` must equal that file, so the README cannot drift from the
 * examples CI runs (examples.test.ts).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, BIN_PATH, cleanEnv, killAll, runCli, type CliProcess } from './spawn-cli.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const ADMIN_PASSWORD = 'readme-admin-password';

interface Block {
  /** What the marker says: `runnable`, or `file: <path>`. */
  marker: string;
  info: string;
  body: string;
  line: number;
}

/** Fenced blocks preceded (on the line before the fence) by an HTML comment marker. */
function markedBlocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  for (let i = 1; i < lines.length; i++) {
    const marker = /^<!-- (.+?) -->$/.exec(lines[i - 1] as string);
    const fence = /^```(\S*)$/.exec(lines[i] as string);
    if (!marker || !fence) continue;
    const end = lines.indexOf('```', i + 1);
    if (end < 0) throw new Error(`README line ${i + 1}: unterminated fence`);
    blocks.push({ marker: marker[1] as string, info: fence[1] as string, body: lines.slice(i + 1, end).join('\n') + '\n', line: i + 1 });
    i = end;
  }
  return blocks;
}

const blocks = markedBlocks(README);
const runnable = blocks.filter((b) => b.marker === 'runnable');

describe('README examples are the files under examples/', () => {
  it('each `file:` block equals its file, and every example file is shown', () => {
    const files = blocks.filter((b) => b.marker.startsWith('file: '));
    for (const block of files) {
      const path = block.marker.slice('file: '.length);
      expect(existsSync(join(ROOT, path)), `README line ${block.line}: ${path} exists`).toBe(true);
      expect(block.body, `README line ${block.line} vs ${path}`).toBe(readFileSync(join(ROOT, path), 'utf8'));
    }
    const shown = new Set(files.map((b) => b.marker.slice('file: '.length)));
    const examples = readdirSync(join(ROOT, 'examples')).filter((f) => /\.(mjs|js|ts)$/.test(f));
    expect(examples.length).toBeGreaterThan(0);
    for (const file of examples) expect(shown.has(`examples/${file}`), `examples/${file} is in the README`).toBe(true);
  });
});

describe('the README walk-through, pasted in order', () => {
  let tmp: string;
  let server: CliProcess;
  let url: string;

  beforeAll(async () => {
    assertBuilt();
    tmp = mkdtempSync(join(tmpdir(), 'sentinel-readme-'));
    server = runCli(['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', join(tmp, 'data')], cleanEnv(tmp, { SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD }));
    url = await server.url();
  });

  afterAll(async () => {
    await killAll();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('marks the walk-through blocks runnable, as sh', () => {
    expect(runnable.length).toBeGreaterThanOrEqual(4);
    for (const block of runnable) expect(block.info, `README line ${block.line}`).toBe('sh');
  });

  it('every runnable block exits 0 and prints what the README says', async () => {
    const work = join(tmp, 'work');
    const state = join(tmp, 'state');
    mkdirSync(work);
    mkdirSync(state);
    // The blocks run from "the root of the checkout"; files they write (Sentinelfile.yaml) stay in tmp.
    symlinkSync(join(ROOT, 'examples'), join(work, 'examples'));

    let substitutions = 0;
    const script = ['set -euo pipefail'];
    runnable.forEach((block, index) => {
      const body = block.body
        .replace(/^API=.*$/m, () => (substitutions++, `API=${url}`))
        .replace(/^PASSWORD=.*$/m, () => (substitutions++, `PASSWORD='${ADMIN_PASSWORD}'`));
      script.push(`echo ${index} > ${state}/current`, '{', body, `} > ${state}/${index}.out 2> ${state}/${index}.err`);
    });
    script.push(`echo done > ${state}/current`);
    expect(substitutions).toBe(2);
    writeFileSync(join(tmp, 'walkthrough.sh'), script.join('\n') + '\n');

    // `sentinel` on PATH, as the README assumes: the built binary.
    const bin = join(tmp, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'sentinel'), `#!/bin/sh\nexec '${process.execPath}' '${BIN_PATH}' "$@"\n`, { mode: 0o755 });
    const env = cleanEnv(tmp);
    env.PATH = `${bin}:${env.PATH ?? ''}`;
    delete env.API;
    const code = await new Promise<number | null>((resolve) => {
      const bash = spawn('bash', [join(tmp, 'walkthrough.sh')], { cwd: work, env, stdio: 'ignore' });
      bash.on('close', resolve);
    });
    const current = readFileSync(join(state, 'current'), 'utf8').trim();
    const read = (index: number, kind: 'out' | 'err'): string => {
      const path = join(state, `${index}.${kind}`);
      return existsSync(path) ? readFileSync(path, 'utf8') : '';
    };
    if (current !== 'done') {
      const index = Number(current);
      throw new Error(`README block at line ${runnable[index]?.line} failed (exit ${code}):\nstdout: ${read(index, 'out')}\nstderr: ${read(index, 'err')}`);
    }
    expect(code).toBe(0);

    const outputs = runnable.map((_block, index) => read(index, 'out'));
    const find = (needle: string): string => {
      const hit = outputs.find((out, index) => runnable[index]?.body.includes(needle));
      if (hit === undefined) throw new Error(`no runnable block contains ${needle}`);
      return hit;
    };
    // The curl session: the starter image, the built one, the agent, alice, two 204s, the version.
    const session = find('/v1/auth/login');
    expect(session).toContain('"sentinel/echo"');
    expect(session).toContain('"demo/helper"');
    expect(session).toContain('"name":"helper"');
    expect(session).toContain('"username":"alice"');
    // curl prints bodies without a final newline, so a status code may follow a JSON body on its line.
    expect(session.match(/(?:^|[}\]])204$/gm)).toHaveLength(2);
    expect(session).toMatch(/"api_version":"v1"/);
    // The chat through examples/chat.mjs, on the agent the session created.
    const chat = find('examples/chat.mjs');
    expect(chat).toContain('Echo: Hi there, agent');
    expect(chat).toMatch(/\[stop, \d+ tokens\]/);
    // Stop and start, then the delete that ends the walk-through.
    const stopStart = find('/stop');
    expect(stopStart).toContain('"status":"stopped"');
    expect(stopStart).toContain('"status":"running"');
    expect(find('-X DELETE "$API/v1/agents/$AGENT"')).toBe('204\n');
    // Runs over REST: waited for, streamed, resumed after seq 3 (twice), replayed by its key, the
    // key with another body refused, stream: true, a cancel, the list, the runner deleted.
    const runs = find('/runs/$RUN/stream');
    expect(runs).toContain('"status":"completed","input":{"content":"Hello, runs"},"output":{"content":"Echo: Hello, runs","reason":"stop"}');
    // SSE ids (the first follows the waited-for JSON on its line, curl adding no newline).
    const ids = [...runs.matchAll(/id: (\d+)\n/g)].map((m) => Number(m[1]));
    const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
    const frames = ids.findIndex((id, i) => i > 0 && id <= (ids[i - 1] as number));
    expect(frames).toBeGreaterThan(3);
    const streamed = ids.length - frames - 2 * (frames - 3);
    // The whole stream, twice the frames after seq 3, then the stream: true run from seq 1.
    expect(ids).toEqual([...range(1, frames), ...range(4, frames), ...range(4, frames), ...range(1, streamed)]);
    expect(runs).toMatch(/^Idempotency-Replayed: true\r?$/im);
    expect(runs).toMatch(/^409$/m);
    expect(runs).toContain('"content":"Echo: Stream this","reason":"stop"');
    expect(runs).toMatch(/"status":"cancelled"/);
    expect(runs).toMatch(/\{"runs":\[\{"id":"run_[0-9a-f]{24}"/);
    expect(runs).toMatch(/(?:^|[}\]])204$/m);
    // The `sentinel` walk-through: login, run, chat, logs -f, push, pull, logout.
    const cli = find('sentinel login');
    expect(cli).toContain(`Login Succeeded (admin on ${url})`);
    expect(cli).toMatch(/^sentinel\/echo +latest +[0-9a-f]{12} /m);
    expect(cli).toMatch(/^[0-9a-f]{12} +bot +sentinel\/echo:latest +running /m);
    expect(cli).toContain('Echo: Hello from the CLI\n');
    expect(cli).toMatch(/INFO {2}message cli-\d+-1 processed: stop/);
    expect(cli).toMatch(/^demo\/helper:v1: pushed sha256:[0-9a-f]{64}$/m);
    expect(cli).toMatch(/^Untagged: demo\/helper:v1$/m);
    expect(cli).toMatch(/^demo\/helper:v1: pulled sha256:[0-9a-f]{64}$/m);
    expect(cli).toMatch(/^demo\/helper +v1 +/m);
    expect(cli).toContain(`Removing login credentials for ${url}`);
    // Monitoring: a metrics:read key scrapes /metrics, which has counted the walk-through's turns.
    expect(find('"$API/metrics"')).toMatch(/^sentinel_turns_total\{status="stop"\} [1-9]\d*$/m);
    for (const [index, block] of runnable.entries()) expect(read(index, 'err'), `stderr of README line ${block.line}`).toBe('');
  }, 120_000);
});

describe('comments point inside the repository', () => {
  /** Source files of the repository (not dist, not node_modules), relative to ROOT. */
  function sources(dir = ''): string[] {
    const out: string[] = [];
    for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      if (entry.name === 'node_modules' || entry.name === 'dist' || entry.name.startsWith('.')) continue;
      const path = dir === '' ? entry.name : `${dir}/${entry.name}`;
      if (entry.isDirectory()) out.push(...sources(path));
      else if (/\.(ts|mjs|js)$/.test(entry.name)) out.push(path);
    }
    return out;
  }

  // Spelled in two parts so that this file does not cite it itself.
  const OUTSIDE = ['DESIGN', 'md'].join('.');

  it('every docs/ARCHITECTURE.md anchor names a heading there, and nothing cites the design notes outside the repository', () => {
    const architecture = readFileSync(join(ROOT, 'docs/ARCHITECTURE.md'), 'utf8');
    // GitHub's anchors: lower case, punctuation dropped, spaces to hyphens.
    const anchors = new Set(
      [...architecture.matchAll(/^#{2,3} (.+)$/gm)].map((m) => (m[1] as string).toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-')),
    );
    let references = 0;
    for (const file of sources()) {
      const text = readFileSync(join(ROOT, file), 'utf8');
      expect(text.includes(OUTSIDE), `${file} cites ${OUTSIDE}, which is not in this repository`).toBe(false);
      for (const match of text.matchAll(/docs\/ARCHITECTURE\.md#([a-z0-9-]+)/g)) {
        references++;
        expect(anchors.has(match[1] as string), `${file}: #${match[1]} is not a heading of docs/ARCHITECTURE.md`).toBe(true);
      }
    }
    expect(references).toBeGreaterThan(30);
  });
});
