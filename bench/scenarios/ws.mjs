// The WebSocket scenarios: chat round trips, events fan-out, idle-socket memory. Servers on
// CPU 0; the load generators (bench/loadgen/*.mjs, a minimal client that keeps up with any
// server here) on CPU 1.
import { fileURLToPath } from 'node:url';
import { lastJsonLine, runLoadGenerator, startServer } from '../lib/processes.mjs';
import { alternate } from '../lib/rounds.mjs';
import { median, summarize } from '../lib/stats.mjs';

const script = (path) => fileURLToPath(new URL(path, import.meta.url));
const SENTINEL = script('../servers/sentinel.mjs');
const BARE_WS = script('../baselines/ws.mjs');
const CHAT_LOAD = script('../loadgen/ws-chat.mjs');
const FANOUT_LOAD = script('../loadgen/ws-fanout.mjs');
const IDLE_LOAD = script('../loadgen/ws-idle.mjs');

/** Twelve words: the echo agent answers in 7 chunks, so a turn is 10 frames in both contenders. */
const CHAT_CONTENT = 'please echo these twelve words back to me so we can time it';

async function startContenders(ctx, data, { journalBaseline = false } = {}) {
  const sentinel = (name, extra) => ({
    name,
    script: SENTINEL,
    args: ['--data-dir', ctx.copyOf(data, `ws-${name.replace(/\W+/g, '-')}-${ctx.nextId()}`).dir, '--secret', ctx.secret, '--log-requests', String(ctx.logRequests), ...extra],
  });
  const contenders = [
    sentinel('sentinel', []),
    // The same server with run frames not journaled: the baseline of the journaling ratio.
    ...(journalBaseline ? [sentinel('sentinel (runs journal off)', ['--runs-journal', 'off'])] : []),
    { name: 'ws', script: BARE_WS, args: ['--secret', ctx.secret] },
  ];
  // Started together (each sits idle while the other is measured).
  const started = await Promise.allSettled(
    contenders.map((contender) =>
      startServer({
        name: contender.name,
        script: contender.script,
        args: contender.args,
        cpu: ctx.cpu.server,
        logFile: ctx.tmp(`${contender.name}-${ctx.nextId()}.log`),
      }),
    ),
  );
  const failed = started.find((outcome) => outcome.status === 'rejected');
  if (failed) {
    for (const outcome of started) if (outcome.status === 'fulfilled') await outcome.value.stop();
    throw failed.reason;
  }
  contenders.forEach((contender, i) => {
    contender.server = started[i].value;
    ctx.log(`  ${contender.name} listening on ${contender.server.url} (pid ${contender.server.pid})`);
  });
  return contenders;
}

const wsUrl = (server) => server.url.replace(/^http/, 'ws');

export const wsChatScenario = {
  id: 'ws-chat',
  title: 'WS chat round trip (echo, delay 0)',
  unit: 'ms',
  better: 'lower',
  async run(ctx) {
    ctx.log(this.title);
    const data = await ctx.seed('ws');
    const socketCounts = ctx.smoke ? [1, 10] : [1, 100];
    const contenders = await startContenders(ctx, data, { journalBaseline: true });
    const rows = [];
    const checks = [];
    try {
      for (const sockets of socketCounts) {
        const chat = async (contender, durationSec, warmupSec) => {
          const cpuBefore = await contender.server.command('cpu');
          const { stdout } = await runLoadGenerator({
            name: `ws-chat ${contender.name}`,
            command: process.execPath,
            args: [
              CHAT_LOAD,
              '--url', wsUrl(contender.server),
              '--token', data.token,
              '--agents', data.agentIds.slice(0, sockets).join(','),
              '--sockets', String(sockets),
              '--duration', String(durationSec),
              '--warmup', String(warmupSec),
              '--content', CHAT_CONTENT,
            ],
            cpu: ctx.cpu.load,
          });
          const cpuAfter = await contender.server.command('cpu');
          const result = lastJsonLine(stdout);
          if (result.errors > 0 || result.turns === 0) throw new Error(`${contender.name}: ${result.errors} error frames, ${result.turns} turns: ${result.last_error ?? ''}`);
          // Server CPU per turn, warm-up turns included (the load generator counts only the
          // recorded ones): a cost figure that other work on the machine barely moves.
          const turnsServed = result.turns_total ?? result.turns;
          const cpuMicros = cpuAfter.user - cpuBefore.user + (cpuAfter.system - cpuBefore.system);
          return { ...result, cpu_us_per_request: cpuMicros / turnsServed };
        };
        const samples = await alternate({
          contenders,
          rounds: ctx.rounds,
          log: ctx.log,
          warmup: ctx.warmup > 0 ? (c) => chat(c, ctx.warmup, 0.2) : undefined,
          measure: (c) => chat(c, ctx.duration, ctx.smoke ? 0.1 : 0.5),
        });
        for (const contender of contenders) {
          const list = samples.get(contender.name);
          rows.push({
            contender: `${contender.name} (${sockets} socket${sockets === 1 ? '' : 's'})`,
            samples: list,
            ...summarize(list.map((s) => s.p50_ms)),
            p50_ms: median(list.map((s) => s.p50_ms)),
            p99_ms: median(list.map((s) => s.p99_ms)),
            turns_per_s: median(list.map((s) => s.turns_per_s)),
            cpu_us_per_request: median(list.map((s) => s.cpu_us_per_request)),
            frames_per_turn: median(list.map((s) => s.frames_per_turn)),
          });
        }
        const ours = median(samples.get('sentinel').map((s) => s.p50_ms));
        const bare = median(samples.get('ws').map((s) => s.p50_ms));
        const overhead = ours === null || bare === null ? null : ours - bare;
        checks.push({
          name: `chat overhead, ${sockets} socket${sockets === 1 ? '' : 's'} (sentinel p50 − ws p50)`,
          format: 'ms',
          value: overhead,
          target: '< 1 ms',
          pass: overhead === null ? null : overhead < 1,
        });
        // Runs (issue 16): the turn round trip with every frame journaled, against the same
        // server with journaling off, measured in the same alternating rounds.
        const unjournaled = median(samples.get('sentinel (runs journal off)').map((s) => s.p50_ms));
        const ratio = ours === null || unjournaled === null || unjournaled === 0 ? null : ours / unjournaled;
        checks.push({
          name: `run journaling, ${sockets} socket${sockets === 1 ? '' : 's'} (sentinel p50 / journal-off p50)`,
          value: ratio,
          target: '<= 1.10',
          pass: ratio === null ? null : ratio <= 1.1,
        });
      }
    } finally {
      for (const contender of contenders) await contender.server.stop();
    }
    return { rows, checks };
  },
};

export const wsFanoutScenario = {
  id: 'ws-fanout',
  title: 'WS events fan-out to 1,000 subscribers',
  unit: 'deliveries/s',
  better: 'higher',
  async run(ctx) {
    ctx.log(this.title);
    const data = await ctx.seed('ws');
    const sockets = ctx.smoke ? 50 : 1000;
    const events = ctx.smoke ? 20 : 200;
    const agentId = data.agentIds[0];
    const contenders = await startContenders(ctx, data);
    const burst = async (contender) => {
      let loadgen;
      let ready;
      const isReady = new Promise((resolve) => (ready = resolve));
      const done = runLoadGenerator({
        name: `ws-fanout ${contender.name}`,
        command: process.execPath,
        args: [
          FANOUT_LOAD,
          '--url', wsUrl(contender.server),
          '--path', `/v1/agents/${agentId}/events`,
          '--token', data.token,
          '--sockets', String(sockets),
          '--expect', String(events),
        ],
        cpu: ctx.cpu.load,
        onStart: (child) => (loadgen = child),
        onLine: (line) => {
          if (line.trim() === 'ready') ready();
        },
      });
      await Promise.race([isReady, done]);
      loadgen.stdin.write('go\n');
      await contender.server.command('emit', { agentId, count: events });
      const result = lastJsonLine((await done).stdout);
      if (!result.complete) throw new Error(`${contender.name}: ${result.deliveries} of ${result.wanted} frames delivered (${result.sockets_short} sockets short)`);
      return result;
    };
    let rows;
    let checks;
    try {
      const samples = await alternate({
        contenders,
        rounds: ctx.rounds,
        log: ctx.log,
        warmup: ctx.warmup > 0 ? burst : undefined,
        measure: async (c) => ({ per_second: (await burst(c)).per_second }),
      });
      rows = contenders.map((c) => ({
        contender: c.name === 'ws' ? 'ws (naive broadcast)' : c.name,
        samples: samples.get(c.name),
        ...summarize(samples.get(c.name).map((s) => s.per_second)),
      }));
      const value = rows[0].median && rows[1].median ? rows[0].median / rows[1].median : null;
      checks = [{ name: 'sentinel / naive ws broadcast', value, target: '>= 2', pass: value === null ? null : value >= 2 }];
    } finally {
      for (const contender of contenders) await contender.server.stop();
    }
    return { rows, checks, notes: [`${sockets} subscribers of one agent, bursts of ${events} events (${sockets * events} frames per round)`] };
  },
};

export const wsIdleScenario = {
  id: 'ws-idle',
  title: 'WS idle authenticated socket, server RSS',
  unit: 'KiB/socket',
  better: 'lower',
  async run(ctx) {
    ctx.log(this.title);
    const data = await ctx.seed('ws');
    const sizes = ctx.smoke ? [100] : [1000, 5000];
    const agentId = data.agentIds[0];
    const rows = [];
    const checks = [];
    const hold = async (server, sockets, onReady) => {
      let loadgen;
      let ready;
      const isReady = new Promise((resolve) => (ready = resolve));
      const done = runLoadGenerator({
        name: 'ws-idle',
        command: process.execPath,
        args: [IDLE_LOAD, '--url', wsUrl(server), '--path', `/v1/agents/${agentId}/chat`, '--token', data.token, '--sockets', String(sockets)],
        cpu: ctx.cpu.load,
        onStart: (child) => (loadgen = child),
        onLine: (line) => {
          if (line.trim() === 'ready') ready();
        },
      });
      await Promise.race([isReady, done]);
      const value = await onReady();
      loadgen.stdin.write('done\n');
      await done;
      return value;
    };
    // A fresh server per measurement: RSS only grows back slowly after sockets close.
    const measure = async (spec, sockets) => {
      const server = await startServer({ name: spec.name, script: spec.script, args: spec.args(), cpu: ctx.cpu.server, logFile: ctx.tmp(`idle-${ctx.nextId()}.log`) });
      try {
        // Warm the code paths (lazy modules, JIT) before the "before" reading.
        await hold(server, 50, async () => undefined);
        const before = (await server.command('memory')).rss;
        const after = await hold(server, sockets, async () => (await server.command('memory')).rss);
        return { kib_per_socket: (after - before) / sockets / 1024, rss_before_mib: before / 2 ** 20, rss_after_mib: after / 2 ** 20 };
      } finally {
        await server.stop();
      }
    };
    const specs = [
      { name: 'sentinel', script: SENTINEL, args: () => ['--data-dir', ctx.copyOf(data, `idle-sentinel-${ctx.nextId()}`).dir, '--secret', ctx.secret, '--log-requests', String(ctx.logRequests)] },
      { name: 'ws', script: BARE_WS, args: () => ['--secret', ctx.secret] },
    ];
    for (const sockets of sizes) {
      const samples = await alternate({ contenders: specs, rounds: ctx.rounds, log: ctx.log, measure: (spec) => measure(spec, sockets) });
      for (const spec of specs) {
        rows.push({ contender: `${spec.name} (${sockets} sockets)`, samples: samples.get(spec.name), ...summarize(samples.get(spec.name).map((s) => s.kib_per_socket)) });
      }
      const ours = median(samples.get('sentinel').map((s) => s.kib_per_socket));
      const bare = median(samples.get('ws').map((s) => s.kib_per_socket));
      const value = ours !== null && bare ? ours / bare : null;
      checks.push({ name: `sentinel / ws RSS per socket (${sockets})`, value, target: '<= 1.3', pass: value === null ? null : value <= 1.3 });
    }
    return { rows, checks };
  },
};
