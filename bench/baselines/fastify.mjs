// Baseline: fastify 5 with @fastify/jwt (HS256), written the way a fastify user would.
// GET /v1/agents → request.jwtVerify(), the same SQLite query, the same JSON; POST /v1/agents →
// the server's body schema (fastify compiles it with ajv), one INSERT, 201. With
// --log-requests true: one JSON log line per request (fastify's pino, as the server writes one
// line per request; fastify's own two lines are turned off), CORS headers and an X-Request-Id.
//   node fastify.mjs --db <sentinel.db> --secret <secret> --log-requests true|false
import fastifyJwt from '@fastify/jwt';
import Fastify from 'fastify';
import { announce, parseFlags, serveCommands } from '../lib/server-control.mjs';
import { CREATE_AGENT_BODY_SCHEMA, openAgentsDb } from './agents-db.mjs';

const flags = parseFlags(process.argv.slice(2));
const logRequests = flags['log-requests'] !== 'false';
const db = openAgentsDb(flags.db);

const app = Fastify({ logger: logRequests, disableRequestLogging: true });
await app.register(fastifyJwt, { secret: flags.secret, verify: { algorithms: ['HS256'], allowedIss: 'sentinelstacks' } });

if (logRequests) {
  app.addHook('onRequest', async (request, reply) => {
    reply.header('X-Request-Id', request.id);
    if (request.headers.origin !== undefined) {
      reply.header('Access-Control-Allow-Origin', '*');
      reply.header('Access-Control-Expose-Headers', 'X-Request-Id, Retry-After');
    }
  });
  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      { method: request.method, path: request.url, status: reply.statusCode, duration_ms: reply.elapsedTime, remote: request.ip },
      'request',
    );
  });
}

const authenticate = async (request, reply) => {
  try {
    await request.jwtVerify();
  } catch {
    return reply.code(401).send({ error: 'invalid token', code: 'unauthorized' });
  }
};

app.get('/v1/health', async () => ({ status: 'ok' }));
app.get('/v1/agents', { onRequest: authenticate }, async (request) => ({ agents: db.listAgents(request.user.sub, request.headers.host) }));
app.post('/v1/agents', { onRequest: authenticate, schema: { body: CREATE_AGENT_BODY_SCHEMA } }, async (request, reply) => {
  const agent = db.createAgent(request.user.sub, request.body, request.headers.host);
  if (agent === null) return reply.code(404).send({ error: `image "${request.body.image}" not found`, code: 'not_found' });
  return reply.code(201).send(agent);
});

const address = await app.listen({ port: 0, host: '127.0.0.1' });
announce('fastify baseline', address);
serveCommands();
