// sdk.ts: the SDK from Node: log in, create an agent, chat with it, follow its logs.
import { createClient, isSentinelApiError } from '@sentinel/api-client';

const { API = 'http://localhost:8080', PASSWORD = '' } = process.env;
const client = createClient({ baseUrl: API });

try {
  await client.login('admin', PASSWORD);

  // The agent resource, typed from the server's own schema.
  const agent = await client.agents.create({ image: 'sentinel/echo:latest' });
  console.log(`agent ${agent.name} (${agent.id}) is ${agent.status}`);

  // One chat turn: the answer streams in as frames.
  const chat = client.chat(agent.id);
  for await (const frame of chat.send('hello')) {
    if (frame.type === 'stream_chunk') process.stdout.write(frame.content);
    else if (frame.type === 'stream_end') console.log(`\n[${frame.reason}]`);
  }
  chat.close();

  // Its log: the lines so far, then new ones as they are written; the signal ends it after 2 s.
  for await (const line of client.agents.followLogs(agent.id, { signal: AbortSignal.timeout(2000) })) {
    console.log(`${line.timestamp} ${line.level.padEnd(5)} ${line.message}`);
  }

  await client.agents.delete(agent.id);
} catch (err) {
  // Every failure is a SentinelApiError: status, code, and the docs entry explaining it.
  if (!isSentinelApiError(err)) throw err;
  console.error(`${err.status} ${err.code}: ${err.message} (${API}${err.docs ?? ''})`);
  process.exitCode = 1;
}
