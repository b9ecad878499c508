// core.mjs: the core without any transport (node examples/core.mjs); safe to run again and again.
import { createJsonLogger, createSentinelApi, parseAgentDefinition } from '@sentinel/api-core';

const api = await createSentinelApi({ dataDir: process.env.SENTINEL_DATA_DIR ?? './data', logger: createJsonLogger({ level: 'warn' }) });
try {
  const admin = { username: 'admin', role: 'admin' };
  const origin = { secure: false, host: 'localhost:8080' }; // for the agents' ws:// endpoint URLs

  // Building the same definition again gives the same image (its ID is its content's digest).
  const image = await api.images.build(parseAgentDefinition({ name: 'demo/helper', model: 'echo/echo' }));
  // Agent names are unique: reuse the agent of an earlier run instead of failing with a conflict.
  const agents = await api.agents.list(admin, origin);
  const agent = agents.find((a) => a.name === 'helper') ?? (await api.agents.create(admin, { image: 'demo/helper:latest', name: 'helper' }, origin));
  console.log(`image ${image.id}, agent ${agent.name} (${agent.id}) is ${agent.status}`);
  console.log(await api.agents.logs(admin, agent.id, { tail: 5 }));
} finally {
  await api.close();
}
