#!/usr/bin/env node
// `pnpm bench`: SentinelStacks against the baselines a Node engineer would pick instead, in the
// same run. Every server under test is its own process on 127.0.0.1 (pinned to CPU 0 when
// taskset is available), every load generator another process (CPU 1). Each scenario: warm-up,
// then alternating rounds (A B, B A, ...) of fixed duration; medians, min–max, and ratios
// against the baselines measured in the same run. See docs/BENCHMARKS.md.
//
//   node bench/run.mjs [--rounds 3] [--duration 5] [--warmup 2] [--only id,id] [--smoke]
//                      [--log-requests true|false] [--http-tool wrk|autocannon] [--keep] [--out path.json]
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { copyDataDir, seedDataDir } from './lib/fixtures.mjs';
import { commandWorks, detectTaskset } from './lib/processes.mjs';
import { formatTable } from './lib/table.mjs';
import { agentsCreateScenario, agentsListKeyScenario, agentsListScenario, healthScenario, metricsCostScenario } from './scenarios/http.mjs';
import { eventLogScenario } from './scenarios/event-log.mjs';
import { tracingAgentsListScenario, tracingHealthScenario } from './scenarios/tracing.mjs';
import { wsChatScenario, wsFanoutScenario, wsIdleScenario } from './scenarios/ws.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PACKAGES = ['core', 'http', 'ws', 'cli'];
const SCENARIOS = [healthScenario, agentsListScenario, agentsListKeyScenario, agentsCreateScenario, metricsCostScenario, wsChatScenario, wsFanoutScenario, wsIdleScenario, eventLogScenario, tracingHealthScenario, tracingAgentsListScenario];

function usage(message) {
  process.stderr.write(`bench: ${message}\n`);
  process.stderr.write(
    'usage: node bench/run.mjs [--rounds N] [--duration SEC] [--warmup SEC] [--only id,id] [--smoke] [--log-requests true|false]\n' +
      '                          [--http-tool wrk|autocannon] [--keep] [--out FILE]\n' +
      `scenarios: ${SCENARIOS.map((s) => s.id).join(', ')}\n`,
  );
  process.exit(2);
}

function parseArgs(argv) {
  const options = { rounds: 3, duration: 5, warmup: 2, only: undefined, smoke: false, logRequests: true, httpTool: undefined, keep: false, out: undefined };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [name, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) usage(`${name} needs a value`);
      return v;
    };
    const positive = (v) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n <= 0) usage(`${name} must be a positive number, got ${v}`);
      return n;
    };
    switch (name) {
      case '--rounds':
        options.rounds = Math.round(positive(value()));
        break;
      case '--duration':
        options.duration = positive(value());
        break;
      case '--warmup':
        options.warmup = Number(value());
        break;
      case '--only':
        options.only = value().split(',').map((s) => s.trim()).filter(Boolean);
        break;
      case '--smoke':
        options.smoke = true;
        break;
      case '--log-requests':
        options.logRequests = value() !== 'false';
        break;
      case '--http-tool': {
        const tool = value();
        if (tool !== 'wrk' && tool !== 'autocannon') usage(`--http-tool must be wrk or autocannon, got ${tool}`);
        options.httpTool = tool;
        break;
      }
      case '--keep':
        options.keep = true;
        break;
      case '--out':
        options.out = value();
        break;
      case '--help':
      case '-h':
        usage('help');
        break;
      default:
        usage(`unknown argument ${arg}`);
    }
  }
  if (options.smoke) {
    // A few seconds in all: proves every scenario still runs end to end, measures nothing.
    options.rounds = 1;
    options.duration = 0.5;
    options.warmup = 0;
  }
  for (const id of options.only ?? []) if (!SCENARIOS.some((s) => s.id === id)) usage(`unknown scenario ${id}`);
  return options;
}

/** The newest modification time under `dir` (recursively), in ms. */
function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/** The benchmark runs the BUILT packages: refuse to start without them, warn when they look stale. */
function checkBuilt() {
  const missing = PACKAGES.filter((pkg) => !existsSync(join(ROOT, 'packages', pkg, 'dist', 'index.js')));
  if (missing.length > 0) {
    process.stderr.write(`bench: packages/{${missing.join(',')}}/dist is missing: run \`pnpm build\` first (the benchmark runs the built packages)\n`);
    process.exit(1);
  }
  const stale = PACKAGES.filter((pkg) => newestMtime(join(ROOT, 'packages', pkg, 'src')) > statSync(join(ROOT, 'packages', pkg, 'dist', 'index.js')).mtimeMs);
  if (stale.length > 0) process.stderr.write(`bench: warning: packages/{${stale.join(',')}}/src is newer than its dist; run \`pnpm build\` to measure the current code\n`);
}

function machineInfo(taskset) {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpuModel;
  } catch {
    // not Linux: os.cpus() is all there is
  }
  return {
    cpus: availableParallelism(),
    cpu_model: cpuModel,
    memory_gib: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    taskset,
  };
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  checkBuilt();
  const core = await import(join(ROOT, 'packages/core/dist/index.js'));

  const machine = machineInfo(false);
  const taskset = detectTaskset(machine.cpus);
  machine.taskset = taskset;
  const httpTool = options.httpTool ?? (commandWorks('wrk', ['-v']) ? 'wrk' : 'autocannon');
  if (httpTool === 'wrk' && !commandWorks('wrk', ['-v'])) usage('--http-tool wrk: wrk is not installed');
  const cpu = taskset ? { server: 0, load: 1 } : { server: undefined, load: undefined };
  const log = (line) => process.stderr.write(`${line}\n`);

  log(`SentinelStacks bench${options.smoke ? ' (smoke: harness check only, figures mean nothing)' : ''}`);
  log(`machine: ${machine.cpus} CPUs (${machine.cpu_model}), node ${machine.node}`);
  log(
    taskset
      ? 'pinning: servers on CPU 0, load generators on CPU 1 (taskset)'
      : 'pinning: none (taskset unavailable or a single CPU): servers and load generators share the CPUs',
  );
  log(`http load: ${httpTool === 'wrk' ? 'wrk -t1 -c50 (keep-alive)' : `autocannon -c 50${options.httpTool ? '' : ' (wrk not found)'}`}`);
  log(`method: ${options.warmup > 0 ? `${options.warmup} s warm-up, then ` : ''}${options.rounds} alternating round(s) of ${options.duration} s per contender; request logs ${options.logRequests ? 'on' : 'off'} in every contender`);

  const workDir = mkdtempSync(join(tmpdir(), 'sentinel-bench-'));
  const secret = 'bench-secret-0123456789abcdef-0123456789';
  const seeds = new Map();
  let counter = 0;
  const ctx = {
    smoke: options.smoke,
    rounds: options.rounds,
    duration: options.duration,
    warmup: options.warmup,
    logRequests: options.logRequests,
    cpu,
    httpTool,
    core,
    secret,
    log,
    nextId: () => ++counter,
    tmp: (name) => join(workDir, name),
    /** A seeded data directory (made once per kind): 'list' has 50 agents, 'ws' 100 (5 and 10 in a smoke run). */
    async seed(kind) {
      if (!seeds.has(kind)) {
        // The smoke run only needs every path to work: fewer agents make it start faster.
        const agentCount = kind === 'list' ? (options.smoke ? 5 : 50) : options.smoke ? 10 : 100;
        seeds.set(kind, seedDataDir({ core, dir: join(workDir, `seed-${kind}`), secret, agentCount }));
      }
      return seeds.get(kind);
    },
    copyOf: (seed, name) => copyDataDir(seed, join(workDir, name)),
  };

  const selected = SCENARIOS.filter((s) => !options.only || options.only.includes(s.id));
  const results = [];
  let failed = false;
  try {
    for (const scenario of selected) {
      const started = Date.now();
      try {
        const outcome = await scenario.run(ctx);
        log(`  (${scenario.id}: ${((Date.now() - started) / 1000).toFixed(1)} s)`);
        results.push({ id: scenario.id, title: scenario.title, unit: scenario.unit, better: scenario.better, ...outcome });
      } catch (err) {
        failed = true;
        log(`bench: scenario ${scenario.id} failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
        results.push({ id: scenario.id, title: scenario.title, unit: scenario.unit, error: err instanceof Error ? err.message : String(err), rows: [], checks: [] });
      }
    }
  } finally {
    if (options.keep) log(`kept ${workDir}`);
    else rmSync(workDir, { recursive: true, force: true });
  }

  const report = {
    date: new Date().toISOString(),
    smoke: options.smoke,
    machine,
    method: {
      rounds: options.rounds,
      duration_s: options.duration,
      warmup_s: options.warmup,
      alternating: true,
      http_load: httpTool === 'wrk' ? 'wrk -t1 -c50 --latency (keep-alive)' : 'autocannon -c 50',
      pinning: taskset ? { servers: 'CPU 0', load_generators: 'CPU 1' } : 'none',
      request_logs: options.logRequests,
    },
    scenarios: results,
  };
  const table = formatTable(report);
  process.stdout.write(`${table}\n`);
  const resultsDir = join(ROOT, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const out = options.out ?? join(resultsDir, options.smoke ? 'smoke.json' : 'latest.json');
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  log(`wrote ${out}`);
  if (failed) process.exit(1);
}

main().catch((err) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
