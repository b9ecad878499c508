// mount-fastify.mjs: the API under /v1 (and its docs under /docs) of a Fastify 5 app (node examples/mount-fastify.mjs).
import Fastify from 'fastify';
import { createSentinelApi } from '@sentinel/api-core';
import { toNodeListener } from '@sentinel/api-http';

const port = Number(process.env.PORT ?? 3001);
const api = await createSentinelApi({ dataDir: process.env.SENTINEL_DATA_DIR ?? './data' });
if (api.generatedAdminPassword) console.error(`admin password (shown once): ${api.generatedAdminPassword}`);

// Give /v1 the raw request unread: the listener reads the body with its own size cap.
const listener = toNodeListener(api);
const fastify = Fastify();
await fastify.register(async (scope) => {
  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
  const handOver = (request, reply) => {
    reply.hijack();
    listener(request.raw, reply.raw);
  };
  scope.all('/v1', handOver);
  scope.all('/v1/*', handOver);
  scope.all('/docs', handOver);
  scope.all('/docs/*', handOver);
});
fastify.get('/', async () => 'my app');
const url = await fastify.listen({ port, host: '127.0.0.1' });
console.log(`listening on ${url}`);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await fastify.close();
    await api.close();
  });
}
