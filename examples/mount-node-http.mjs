// mount-node-http.mjs: the API as a whole node:http server (node examples/mount-node-http.mjs).
import http from 'node:http';
import { createSentinelApi } from '@sentinel/api-core';
import { toNodeListener } from '@sentinel/api-http';

const port = Number(process.env.PORT ?? 8080);
// The admin is SENTINEL_ADMIN_USER / SENTINEL_ADMIN_PASSWORD, else "admin" with a generated password.
const api = await createSentinelApi({ dataDir: process.env.SENTINEL_DATA_DIR ?? './data' });
if (api.generatedAdminPassword) console.error(`admin password (shown once): ${api.generatedAdminPassword}`);

const server = http.createServer(toNodeListener(api));
server.listen(port, '127.0.0.1', () => console.log(`listening on http://127.0.0.1:${server.address().port}`));

// Ctrl-C or SIGTERM: close the server first, then the api (it closes the database).
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    server.close();
    server.closeIdleConnections();
    await api.close();
  });
}
