// Event-log append throughput on SQLite (events/s), and the kill -9 check: every event the
// journal acknowledged must be in the file after the writer is killed mid-stream.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Database } from '../baselines/deps.mjs';
import { lastJsonLine, pinned, runLoadGenerator } from '../lib/processes.mjs';
import { alternate } from '../lib/rounds.mjs';
import { summarize } from '../lib/stats.mjs';

const WRITER = fileURLToPath(new URL('../loadgen/event-log.mjs', import.meta.url));

// Every contender writes to 100 agents. The journal's batches are what its group commit gathers
// from the appends in flight, so it runs at two concurrencies; the raw better-sqlite3 rows are
// the baselines (one commit per event, as a plain loop does) and the ceilings of batching.
const CONTENDERS = [
  { id: 'journal-1000', name: 'sentinel journal, 1,000 appends in flight', mode: 'journal', args: ['--writers', '1000'], smoke: true },
  { id: 'journal-100', name: 'sentinel journal, 100 appends in flight', mode: 'journal', args: ['--writers', '100'] },
  { id: 'naive', name: 'better-sqlite3, 1 commit per event', mode: 'naive', args: [], smoke: true },
  { id: 'tx-100', name: 'better-sqlite3, 100 per transaction', mode: 'transaction', args: ['--batch', '100'] },
  { id: 'tx-1000', name: 'better-sqlite3, 1,000 per transaction', mode: 'transaction', args: ['--batch', '1000'] },
];

/** Runs the journal writer with acknowledgements, SIGKILLs it after `afterMs`, checks the file. */
async function killCheck(ctx, afterMs) {
  const db = ctx.tmp(`kill-${ctx.nextId()}.db`);
  const argv = pinned(ctx.cpu.server, process.execPath, [WRITER, '--mode', 'journal', '--db', db, '--seconds', '60', '--ack', 'true']);
  const child = spawn(argv.command, argv.args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const acknowledged = [];
  let partial = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (text) => {
    partial += text;
    const lines = partial.split('\n');
    partial = lines.pop();
    for (const line of lines) if (line) acknowledged.push(line);
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  // Kill only once appends are flowing, so the kill lands mid-stream.
  const start = Date.now();
  while (acknowledged.length < 100 && Date.now() - start < 20_000) {
    await new Promise((r) => setTimeout(r, 20));
    if (child.exitCode !== null) break;
  }
  await new Promise((r) => setTimeout(r, afterMs));
  // taskset execs node in place, so the pid is node's: this is a real SIGKILL of the writer.
  child.kill('SIGKILL');
  const { signal } = await exited;
  if (signal !== 'SIGKILL') throw new Error(`the writer was not killed by SIGKILL (${signal}): ${stderr}`);
  // The pipe may still hold lines written before the kill.
  await new Promise((r) => setImmediate(r));
  const file = new Database(db, { readonly: true });
  const exists = file.prepare('SELECT 1 FROM agent_events WHERE agent_id = ? AND seq = ?').pluck();
  let lost = 0;
  for (const line of acknowledged) {
    const [agentId, seq] = line.split(' ');
    if (exists.get(agentId, Number(seq)) === undefined) lost++;
  }
  const stored = file.prepare('SELECT COUNT(*) FROM agent_events').pluck().get();
  file.close();
  return { acknowledged: acknowledged.length, stored, lost };
}

export const eventLogScenario = {
  id: 'event-log',
  title: 'Event-log append on SQLite',
  unit: 'events/s',
  better: 'higher',
  async run(ctx) {
    ctx.log(this.title);
    const run = async (contender, seconds) => {
      const { stdout } = await runLoadGenerator({
        name: `event-log ${contender.mode}`,
        command: process.execPath,
        args: [WRITER, '--mode', contender.mode, '--db', ctx.tmp(`events-${contender.mode}-${ctx.nextId()}.db`), '--seconds', String(seconds), ...contender.args],
        cpu: ctx.cpu.server,
      });
      return lastJsonLine(stdout);
    };
    // The smoke run proves both kinds of writer run; the other rows add nothing to that.
    const contenders = ctx.smoke ? CONTENDERS.filter((c) => c.smoke) : CONTENDERS;
    const samples = await alternate({
      contenders,
      rounds: ctx.rounds,
      log: ctx.log,
      warmup: ctx.warmup > 0 ? (c) => run(c, Math.min(1, ctx.warmup)) : undefined,
      measure: async (c) => ({ per_second: (await run(c, ctx.duration)).per_second }),
    });
    const rows = contenders.map((c) => ({ contender: c.name, samples: samples.get(c.name), ...summarize(samples.get(c.name).map((s) => s.per_second)) }));
    const median = (id) => {
      const name = CONTENDERS.find((c) => c.id === id)?.name;
      return rows.find((r) => r.contender === name)?.median ?? null;
    };
    const ratio = (a, b) => (median(a) !== null && median(b) ? median(a) / median(b) : null);
    const ours = median('journal-1000');
    const kill = await killCheck(ctx, ctx.smoke ? 100 : 1000);
    ctx.log(`  kill -9: ${kill.acknowledged} acknowledged, ${kill.stored} stored, ${kill.lost} lost`);
    return {
      rows,
      checks: [
        { name: 'journal events/s, 1,000 in flight', format: 'rate', value: ours, target: '>= 50,000 events/s', pass: ours === null ? null : ours >= 50_000 },
        { name: 'journal, 1,000 in flight / 1 commit per event', value: ratio('journal-1000', 'naive'), target: 'none (reported)', pass: null },
        { name: 'journal, 1,000 in flight / 1,000 per transaction', value: ratio('journal-1000', 'tx-1000'), target: 'none (reported)', pass: null },
        { name: 'journal, 100 in flight / 100 per transaction', value: ratio('journal-100', 'tx-100'), target: 'none (reported)', pass: null },
        {
          name: 'acknowledged events lost on kill -9',
          format: 'count',
          value: kill.lost,
          target: `0 (of ${kill.acknowledged} acknowledged)`,
          pass: kill.acknowledged > 0 && kill.lost === 0,
        },
      ],
      kill_check: kill,
    };
  },
};
