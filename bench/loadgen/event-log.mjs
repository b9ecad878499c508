// Event-log append throughput on SQLite, in its own process (pinned like a server).
//   node event-log.mjs --mode journal|naive|transaction --db <file> --seconds S [--agents 100] [--writers 100] [--ack true]
// - journal: the server's path: AgentJournal.event() (Store append, then the bus publish) from
//   `writers` concurrent writers spread over `agents` agents, each awaiting its own append
//   before the next (as turns, tools and fan-outs of many agents write), so the batch is
//   whatever the Store's group commit gathers from the appends in flight: at most `writers`.
// - naive: better-sqlite3 as a user would write it (WAL, synchronous NORMAL, SQLite's default
//   checkpoints): one INSERT per event, each its own commit.
// - transaction: better-sqlite3, `batch` (default 1,000) INSERTs per transaction: the ceiling
//   of batching at that size.
// With --ack true (journal mode), prints `<agent> <seq>` for every acknowledged event, for the
// kill -9 check. Prints {events, seconds, per_second} at the end otherwise.
import { performance } from 'node:perf_hooks';
import { AgentJournal, createLocalEventBus, openSqliteStore } from '../../packages/core/dist/index.js';
import { Database } from '../baselines/deps.mjs';
import { parseFlags } from '../lib/server-control.mjs';

const flags = parseFlags(process.argv.slice(2));
const seconds = Number(flags.seconds);
const writers = Number(flags.writers ?? '100');
const agents = Number(flags.agents ?? '100');
const batchSize = Number(flags.batch ?? '1000');
const ack = flags.ack === 'true';
const agentIds = Array.from({ length: agents }, (_, i) => `bench-agent-${i}`);

// The schema comes from the server's own migrations, so every mode writes the same table.
const store = await openSqliteStore({ path: flags.db });

let events = 0;
const started = performance.now();
const deadline = started + seconds * 1000;

if (flags.mode === 'journal') {
  const journal = new AgentJournal({ store, bus: createLocalEventBus() });
  const writer = async (agentId) => {
    let i = 0;
    while (performance.now() < deadline) {
      const record = await journal.event(agentId, 'message_processed', `bench event ${i}`, { i, agent_id: agentId });
      i++;
      events++;
      if (ack) process.stdout.write(`${agentId} ${record.seq}\n`);
    }
  };
  await Promise.all(Array.from({ length: writers }, (_, i) => writer(agentIds[i % agents])));
  await store.close();
} else {
  await store.close();
  const db = new Database(flags.db);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  // The ceilings run with the store's own checkpoint interval; the naive loop keeps SQLite's
  // default, as a hand-written program would.
  if (flags.mode === 'transaction') db.pragma('wal_autocheckpoint = 10000');
  const insert = db.prepare('INSERT INTO agent_events (agent_id, seq, event_type, timestamp, content, data) VALUES (?, ?, ?, ?, ?, ?)');
  const seqs = new Map(agentIds.map((id) => [id, 0]));
  const one = (n) => {
    const agentId = agentIds[n % agentIds.length];
    const seq = seqs.get(agentId) + 1;
    seqs.set(agentId, seq);
    insert.run(agentId, seq, 'message_processed', new Date().toISOString(), `bench event ${n}`, JSON.stringify({ i: n, agent_id: agentId }));
  };
  if (flags.mode === 'naive') {
    while (performance.now() < deadline) one(events++);
  } else if (flags.mode === 'transaction') {
    const batch = db.transaction((from) => {
      for (let n = from; n < from + batchSize; n++) one(n);
    });
    while (performance.now() < deadline) {
      batch(events);
      events += batchSize;
    }
  } else {
    throw new Error(`unknown mode ${flags.mode}`);
  }
  db.close();
}

const elapsed = (performance.now() - started) / 1000;
if (!ack) process.stdout.write(`${JSON.stringify({ events, seconds: elapsed, per_second: events / elapsed })}\n`);
