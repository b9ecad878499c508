// Baseline: bare node:http, written the way a Node engineer would without a framework.
// GET /v1/health → {"status":"ok"}; GET /v1/agents → jsonwebtoken HS256 verify (KeyObject made
// once), the same SQLite query, the same JSON. With --log-requests true: one JSON request-log
// line per request on stdout, CORS headers and an X-Request-Id, as the server does by default.
// With --prebuilt true, GET /v1/agents still verifies the JWT on every request but writes bytes
// built once per Host (the same query and JSON, run on the first request only): the ceiling of
// a list route that serves cached bytes, i.e. "the same 25 KB, minus the work of building it".
//   node node-http.mjs --db <sentinel.db> --secret <secret> --log-requests true|false [--prebuilt true]
import { createSecretKey, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { performance } from 'node:perf_hooks';
import { announce, parseFlags, serveCommands } from '../lib/server-control.mjs';
import { openAgentsDb } from './agents-db.mjs';
import { jwt } from './deps.mjs';

const flags = parseFlags(process.argv.slice(2));
const logRequests = flags['log-requests'] !== 'false';
const prebuilt = flags.prebuilt === 'true';
/** `${user} ${host}` → the list's bytes, with --prebuilt (built on first use). */
const prebuiltBodies = new Map();
const key = createSecretKey(Buffer.from(flags.secret, 'utf8'));
const db = openAgentsDb(flags.db);
const idPrefix = randomBytes(6).toString('base64url');
let requestCount = 0;

function sendJson(res, status, body) {
  const json = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(json) });
  res.end(json);
}

function userOf(req) {
  const header = req.headers.authorization;
  if (!header?.startsWith('Bearer ')) return null;
  try {
    const claims = jwt.verify(header.slice(7), key, { algorithms: ['HS256'], issuer: 'sentinelstacks' });
    return typeof claims.sub === 'string' ? claims.sub : null;
  } catch {
    return null;
  }
}

const server = createServer((req, res) => {
  if (logRequests) {
    const started = performance.now();
    const requestId = `${idPrefix}-${(++requestCount).toString(36)}`;
    res.setHeader('X-Request-Id', requestId);
    if (req.headers.origin !== undefined) {
      res.setHeader('Access-Control-Allow-Origin', '*');
      res.setHeader('Access-Control-Expose-Headers', 'X-Request-Id, Retry-After');
    }
    res.once('finish', () => {
      const line = {
        time: new Date().toISOString(),
        level: 'info',
        msg: 'request',
        request_id: requestId,
        method: req.method,
        path: req.url,
        status: res.statusCode,
        duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
        remote: req.socket.remoteAddress,
      };
      process.stdout.write(`${JSON.stringify(line)}\n`);
    });
  }
  if (req.url === '/v1/health') return sendJson(res, 200, { status: 'ok' });
  if (req.url === '/v1/agents' && req.method === 'GET') {
    const user = userOf(req);
    if (user === null) return sendJson(res, 401, { error: 'invalid token', code: 'unauthorized' });
    if (prebuilt) {
      const key = `${user} ${req.headers.host}`;
      let bytes = prebuiltBodies.get(key);
      if (bytes === undefined) prebuiltBodies.set(key, (bytes = Buffer.from(JSON.stringify({ agents: db.listAgents(user, req.headers.host) }))));
      res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': bytes.length });
      return res.end(bytes);
    }
    return sendJson(res, 200, { agents: db.listAgents(user, req.headers.host) });
  }
  sendJson(res, 404, { error: 'not found', code: 'not_found' });
});
server.keepAliveTimeout = 5000;
server.listen(0, '127.0.0.1', () => announce('node:http baseline', `http://127.0.0.1:${server.address().port}`));
serveCommands();
