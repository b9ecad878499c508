// Chat round trips over WebSocket: each socket sends a message, waits for `stream_end`, and sends
// the next one (closed loop). Records the time from send to `stream_end` after a warm-up.
//   node ws-chat.mjs --url ws://127.0.0.1:PORT --token T --agents id1,id2 --sockets N
//                    --duration S --warmup S --content "text"
// Prints one JSON line: {turns, turns_per_s, p50_ms, p99_ms, min_ms, max_ms, frames_per_turn, errors}.
import { performance } from 'node:perf_hooks';
import { parseFlags } from '../lib/server-control.mjs';
import { percentile } from '../lib/stats.mjs';
import { connectMany } from '../lib/ws-raw-client.mjs';

const flags = parseFlags(process.argv.slice(2));
const target = new URL(flags.url);
const agents = flags.agents.split(',');
const socketCount = Number(flags.sockets);
const durationMs = Number(flags.duration) * 1000;
const warmupMs = Number(flags.warmup ?? '1') * 1000;
const message = JSON.stringify({ type: 'message', content: flags.content });

const latencies = [];
let errors = 0;
let lastError = '';
let framesInTurns = 0;
let turnsTotal = 0;
let recording = false;
let stopping = false;

const states = new Array(socketCount);
const welcomed = [];

const clients = await connectMany(socketCount, (i) => ({
  host: target.hostname,
  port: Number(target.port),
  path: `/v1/agents/${agents[i % agents.length]}/chat`,
  headers: { Authorization: `Bearer ${flags.token}` },
  decode: true,
  onFrame(payload, client) {
    const state = states[i];
    if (state === undefined) {
      // The welcome frame: the socket is ready for its first message.
      states[i] = { sentAt: 0, frames: 0, inFlight: false };
      welcomed[i]?.();
      return;
    }
    state.frames++;
    if (payload.includes('"type":"stream_end"') || payload.includes('"type":"response"')) {
      if (recording) {
        latencies.push(performance.now() - state.sentAt);
        framesInTurns += state.frames;
      }
      turnEnded(client, state);
    } else if (payload.includes('"type":"error"')) {
      errors++;
      lastError = payload.slice(0, 300);
      turnEnded(client, state);
    }
  },
}));

function turnEnded(client, state) {
  turnsTotal++;
  state.inFlight = false;
  if (!stopping) sendNext(client, state);
  else state.done?.();
}

function sendNext(client, state) {
  state.inFlight = true;
  state.frames = 0;
  state.sentAt = performance.now();
  client.send(message);
}

// Every socket first gets its welcome frame.
await Promise.all(
  clients.map((_client, i) => (states[i] !== undefined ? undefined : new Promise((resolve) => (welcomed[i] = resolve)))),
);
clients.forEach((client, i) => sendNext(client, states[i]));

await new Promise((resolve) => setTimeout(resolve, warmupMs));
recording = true;
const started = performance.now();
await new Promise((resolve) => setTimeout(resolve, durationMs));
recording = false;
const elapsedMs = performance.now() - started;
stopping = true;
// Let the turns in flight finish so the server is idle for the next contender.
await Promise.race([
  Promise.all(states.map((state) => (state.inFlight ? new Promise((resolve) => (state.done = resolve)) : undefined))),
  new Promise((resolve) => setTimeout(resolve, 2000)),
]);
for (const client of clients) client.destroy();

latencies.sort((a, b) => a - b);
const result = {
  turns: latencies.length,
  turns_total: turnsTotal,
  turns_per_s: latencies.length / (elapsedMs / 1000),
  p50_ms: percentile(latencies, 50),
  p99_ms: percentile(latencies, 99),
  min_ms: latencies[0] ?? null,
  max_ms: latencies.at(-1) ?? null,
  frames_per_turn: latencies.length > 0 ? framesInTurns / latencies.length : 0,
  errors,
  ...(errors > 0 ? { last_error: lastError } : {}),
};
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
