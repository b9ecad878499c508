// Fan-out: opens `sockets` subscribers, waits for each one's first frame (the snapshot or
// welcome), prints `ready`, then on `go` (stdin) counts frames until every socket has received
// `expect` more. Prints {deliveries, seconds, per_second, complete}.
//   node ws-fanout.mjs --url ws://127.0.0.1:PORT --path /v1/agents/ID/events --token T
//                      --sockets 1000 --expect 200 [--timeout 30]
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseFlags } from '../lib/server-control.mjs';
import { connectMany } from '../lib/ws-raw-client.mjs';

const flags = parseFlags(process.argv.slice(2));
const target = new URL(flags.url);
const socketCount = Number(flags.sockets);
const expect = Number(flags.expect);
const timeoutMs = Number(flags.timeout ?? '30') * 1000;
const wanted = socketCount * expect;

let firstFramesSeen = 0;
let onAllFirst;
const allFirst = new Promise((resolve) => (onAllFirst = resolve));
let deliveries = 0;
let startedAt = 0;
let finishedAt = 0;
let onComplete;
const complete = new Promise((resolve) => (onComplete = resolve));

const clients = await connectMany(socketCount, () => ({
  host: target.hostname,
  port: Number(target.port),
  path: flags.path,
  headers: { Authorization: `Bearer ${flags.token}` },
  onFrame(_payload, client) {
    if (client.frames === 1) {
      if (++firstFramesSeen === socketCount) onAllFirst();
      return;
    }
    if (++deliveries === wanted) {
      finishedAt = performance.now();
      onComplete();
    }
  },
}));
if (firstFramesSeen < socketCount) await allFirst;
process.stdout.write('ready\n');

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.trim() === 'go') break;
}
startedAt = performance.now();
const timer = setTimeout(onComplete, timeoutMs);
await complete;
clearTimeout(timer);
const end = finishedAt || performance.now();
const seconds = (end - startedAt) / 1000;
const short = clients.filter((client) => client.frames - 1 !== expect).length;
for (const client of clients) client.destroy();
process.stdout.write(
  `${JSON.stringify({ deliveries, wanted, seconds, per_second: deliveries / seconds, complete: deliveries === wanted, sockets_short: short })}\n`,
);
process.exit(0);
