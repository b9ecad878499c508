// Baseline: a bare `ws` server written the naive way (JSON.stringify per send, no cork), for
// the three WebSocket scenarios:
// - chat: on a message, the frames the echo agent sends (thinking, stream_start, the answer in
//   chunks of 1-3 words, stream_end with usage), back to back;
// - fan-out: on the harness's `emit` command, each event frame sent to every client;
// - idle sockets: a welcome frame on connection, then nothing.
// The upgrade is authenticated like the server's (jsonwebtoken HS256, KeyObject made once).
//   node ws.mjs --secret <secret>
import { createSecretKey, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { announce, parseFlags, serveCommands } from '../lib/server-control.mjs';
import { jwt } from './deps.mjs';

const flags = parseFlags(process.argv.slice(2));
const key = createSecretKey(Buffer.from(flags.secret, 'utf8'));
const server = createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ noServer: true });

server.on('upgrade', (req, socket, head) => {
  const header = req.headers.authorization ?? '';
  try {
    jwt.verify(header.slice(7), key, { algorithms: ['HS256'], issuer: 'sentinelstacks' });
  } catch {
    socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

const now = () => new Date().toISOString();

function chunksOf(text) {
  const words = text.match(/\S+\s*/g) ?? [];
  const chunks = [];
  for (let i = 0, n = 1; i < words.length; i += n, n = (n % 3) + 1) chunks.push(words.slice(i, i + n).join(''));
  return chunks;
}

wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.send(JSON.stringify({ type: 'event', event_type: 'connection_established', timestamp: now(), data: { status: 'running' } }));
  ws.on('message', (data) => {
    const message = JSON.parse(data.toString());
    const messageId = message.message_id ?? randomBytes(8).toString('hex');
    const responseId = randomBytes(8).toString('hex');
    const answer = `Echo: ${message.content}`;
    ws.send(JSON.stringify({ type: 'event', event_type: 'thinking', timestamp: now(), message_id: messageId }));
    ws.send(JSON.stringify({ type: 'stream_start', timestamp: now(), message_id: messageId, response_id: responseId }));
    chunksOf(answer).forEach((content, chunkIndex) => {
      ws.send(JSON.stringify({ type: 'stream_chunk', timestamp: now(), message_id: messageId, response_id: responseId, chunk_index: chunkIndex, content }));
    });
    const usage = { input_tokens: Math.ceil(message.content.length / 4), output_tokens: Math.ceil(answer.length / 4) };
    usage.total_tokens = usage.input_tokens + usage.output_tokens;
    ws.send(JSON.stringify({ type: 'stream_end', timestamp: now(), message_id: messageId, response_id: responseId, content: answer, reason: 'stop', usage }));
  });
});

let seq = 0;
serveCommands({
  emit({ agentId, count }) {
    for (let i = 0; i < count; i++) {
      const frame = { type: 'event', event_type: 'bench_event', timestamp: now(), content: `bench event ${i}`, data: { i }, seq: ++seq, agent_id: agentId };
      for (const client of wss.clients) client.send(JSON.stringify(frame));
    }
    return { emitted: count };
  },
});

server.listen(0, '127.0.0.1', () => announce('ws baseline', `http://127.0.0.1:${server.address().port}`));
