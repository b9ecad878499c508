// Seeded data for the scenarios, made through the BUILT core (the same code the server runs):
// one user `bench` with N agents from the starter image, that user's token and an API key of
// theirs (scope agents:read). Each contender
// gets its own copy of the database file, so no contender reads another's writes.
import { cpSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

/** Name of the benchmark user; its password never leaves this process. */
export const BENCH_USER = 'bench';

/** Creates `<dir>` with a seeded sentinel.db: user `bench` owning `agentCount` agents. */
export async function seedDataDir({ core, dir, secret, agentCount }) {
  mkdirSync(dir, { recursive: true });
  const api = await core.createSentinelApi({ dataDir: dir, tokenSecret: secret, adminPassword: 'bench-admin-password' });
  try {
    await api.users.create({ username: BENCH_USER, password: 'bench-password-1', role: 'user' });
    const principal = { username: BENCH_USER, role: 'user' };
    const origin = { secure: false, host: '127.0.0.1' };
    const agentIds = [];
    for (let i = 0; i < agentCount; i++) {
      const agent = await api.agents.create(principal, { image: 'sentinel/echo:latest' }, origin);
      agentIds.push(agent.id);
    }
    const { token } = await api.authService.issueToken(BENCH_USER);
    // In the seeded file, so every copy of it knows the key.
    const { key: apiKey } = await api.apiKeys.create(principal, { name: 'bench', scopes: ['agents:read'] });
    return { dir, dbPath: join(dir, 'sentinel.db'), token, apiKey, agentIds };
  } finally {
    // Closing checkpoints the WAL into the main file, so copying sentinel.db alone is enough.
    await api.close();
  }
}

/** A private copy of a seeded data directory for one contender. */
export function copyDataDir(seed, dir) {
  cpSync(seed.dir, dir, { recursive: true });
  return { ...seed, dir, dbPath: join(dir, 'sentinel.db') };
}
