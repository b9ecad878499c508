// mount-express.mjs: the API next to your own Express 5 routes (node examples/mount-express.mjs).
import express from 'express';
import { createSentinelApi } from '@sentinel/api-core';
import { toNodeListener } from '@sentinel/api-http';

const port = Number(process.env.PORT ?? 3000);
const api = await createSentinelApi({ dataDir: process.env.SENTINEL_DATA_DIR ?? './data' });
if (api.generatedAdminPassword) console.error(`admin password (shown once): ${api.generatedAdminPassword}`);

const app = express();
app.use(toNodeListener(api)); // answers /v1/*, calls next() for every other path
app.get('/', (_req, res) => res.send('my app'));
const server = app.listen(port, '127.0.0.1', () => console.log(`listening on http://127.0.0.1:${server.address().port}`));

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    server.close();
    server.closeIdleConnections();
    await api.close();
  });
}
