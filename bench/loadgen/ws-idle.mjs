// Idle sockets: opens `sockets` authenticated WebSockets, waits for each one's first frame
// (the welcome), prints `ready`, holds them open until `done` arrives on stdin, then closes them.
//   node ws-idle.mjs --url ws://127.0.0.1:PORT --path /v1/agents/ID/chat --token T --sockets 1000
import { createInterface } from 'node:readline';
import { parseFlags } from '../lib/server-control.mjs';
import { connectMany } from '../lib/ws-raw-client.mjs';

const flags = parseFlags(process.argv.slice(2));
const target = new URL(flags.url);
const socketCount = Number(flags.sockets);

let welcomed = 0;
let onAllWelcomed;
const allWelcomed = new Promise((resolve) => (onAllWelcomed = resolve));
const clients = await connectMany(socketCount, () => ({
  host: target.hostname,
  port: Number(target.port),
  path: flags.path,
  headers: { Authorization: `Bearer ${flags.token}` },
  onFrame(_payload, client) {
    if (client.frames === 1 && ++welcomed === socketCount) onAllWelcomed();
  },
}));
if (welcomed < socketCount) await allWelcomed;
process.stdout.write('ready\n');

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.trim() === 'done') break;
}
for (const client of clients) client.destroy();
process.stdout.write(`${JSON.stringify({ sockets: clients.length, welcomed })}\n`);
process.exit(0);
