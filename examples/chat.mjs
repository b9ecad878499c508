// chat.mjs: sends one message and prints the streamed answer.
import WebSocket from 'ws';

const { API_WS = 'ws://localhost:8080', TOKEN, AGENT } = process.env;
const ws = new WebSocket(`${API_WS}/v1/agents/${AGENT}/chat`, {
  headers: { Authorization: `Bearer ${TOKEN}` },
});

ws.on('unexpected-response', (_req, res) => {
  console.error(`refused: HTTP ${res.statusCode}`);
  process.exit(1);
});
ws.on('open', () => {
  ws.send(JSON.stringify({ type: 'message', content: process.argv[2] ?? 'Hello!', message_id: 'm1' }));
});
ws.on('message', (data) => {
  const frame = JSON.parse(data.toString());
  if (frame.type === 'stream_chunk') process.stdout.write(frame.content);
  else if (frame.type === 'stream_end') {
    console.log(`\n[${frame.reason}, ${frame.usage.total_tokens} tokens]`);
    ws.close(1000);
  } else if (frame.type === 'error') {
    console.error(`\nerror ${frame.code}: ${frame.error}`);
    process.exitCode = 1;
    ws.close(1000);
  }
});
