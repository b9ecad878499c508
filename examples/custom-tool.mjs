// custom-tool.mjs: configure the built-in tools, register your own, and call it (node examples/custom-tool.mjs).
import { createSentinelApi, parseAgentDefinition } from '@sentinel/api-core';

const api = await createSentinelApi({
  dataDir: process.env.SENTINEL_DATA_DIR ?? './data',
  providers: { openai: { baseUrl: 'http://127.0.0.1:8000/v1' } }, // keys: environment or providers.json
  httpFetch: { allowHosts: ['docs.example.com'] },
  webSearch: { url: 'http://127.0.0.1:8888' },
});

api.tools.register({
  name: 'word_count',
  description: 'Counts the words of a text.',
  parameters: { type: 'object', properties: { text: { type: 'string', maxLength: 100000 } }, required: ['text'], additionalProperties: false },
  run: async (params) => ({ words: String(params.text).split(/\s+/).filter(Boolean).length }),
});

try {
  // An image that lists the tool; its agents may then use it.
  const admin = { username: 'admin', role: 'admin' };
  const origin = { secure: false, host: 'localhost:8080' };
  await api.images.build(parseAgentDefinition({ name: 'demo/counter', model: 'echo/echo', tools: ['word_count'] }));
  const agent =
    (await api.agents.list(admin, origin)).find((a) => a.name === 'counter') ??
    (await api.agents.create(admin, { image: 'demo/counter:latest', name: 'counter' }, origin));

  // A chat session without any transport: the frames a WebSocket client would get arrive in `send`.
  const prepared = await api.chat.prepare(admin, agent.id);
  let session;
  const result = await new Promise((resolve) => {
    session = prepared.open({
      send: (out) => {
        if (out.frame.type === 'tool_result') resolve(out.frame);
      },
      close: () => undefined,
    });
    session.receive(JSON.stringify({ type: 'tool_request', tool: 'word_count', parameters: { text: 'one two three' }, request_id: 'r1' }));
  });
  session.detach();
  console.log(`word_count: ${JSON.stringify(result.result)}`);
} finally {
  await api.close();
}
