// attach-websocket.mjs: REST and the chat/events WebSockets on your own server (node examples/attach-websocket.mjs).
import http from 'node:http';
import express from 'express';
import { createSentinelApi } from '@sentinel/api-core';
import { toNodeListener } from '@sentinel/api-http';
import { attachWebSocket } from '@sentinel/api-ws';

const port = Number(process.env.PORT ?? 3000);
const api = await createSentinelApi({ dataDir: process.env.SENTINEL_DATA_DIR ?? './data' });
if (api.generatedAdminPassword) console.error(`admin password (shown once): ${api.generatedAdminPassword}`);

const app = express();
app.use(toNodeListener(api));
const server = http.createServer(app); // or app.listen(…), or fastify.server
const sockets = attachWebSocket(server, api);
server.listen(port, '127.0.0.1', () => console.log(`listening on http://127.0.0.1:${server.address().port}`));

// Shutdown: stop accepting, end turns (reason "shutdown", sockets closed with 1001), then the rest.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    server.close();
    server.closeIdleConnections();
    await api.shutdown();
    await sockets.close();
    await api.close();
  });
}
