// Receives SentinelStacks run webhooks and checks their Standard Webhooks signature with
// node:crypto only. WEBHOOK_SECRET is yours: GET /v1/auth/webhook-secret.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';

const key = Buffer.from(process.env.WEBHOOK_SECRET.replace(/^whsec_/, ''), 'base64');

function verify(headers, body) {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  // Older than 5 minutes (or from the future): a replay.
  if (!id || !timestamp || Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false;
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest();
  return (headers['webhook-signature'] ?? '').split(' ').some((entry) => {
    const [version, signature] = entry.split(',');
    const given = Buffer.from(signature ?? '', 'base64');
    return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
  });
}

// A retry carries the same webhook-id: handle each event once, answer 2xx every time.
const seen = new Set();
const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    if (!verify(req.headers, body)) return res.writeHead(401).end();
    if (!seen.has(req.headers['webhook-id'])) {
      seen.add(req.headers['webhook-id']);
      const event = JSON.parse(body);
      console.log(`${event.type} ${event.data.id} ${event.data.status}`);
    }
    res.writeHead(204).end();
  });
});
server.listen(Number(process.env.PORT ?? 8787), '127.0.0.1', () => {
  console.log(`webhook receiver on http://127.0.0.1:${server.address().port}`);
});
process.on('SIGTERM', () => server.close());
