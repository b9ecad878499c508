// The server under test: `sentinel api` itself (the CLI's runApiCommand, same composition,
// same defaults: request log on stdout, CORS on), from the BUILT packages. The only changes are
// the echo provider's chunk delay, set to 0 as the chat scenario asks, and the connection caps,
// raised because every load generator connects from 127.0.0.1 (the idle scenario holds 5,000
// sockets; the default per-address cap is 256), and the rate limits: every load generator is one
// caller, so with `--rate-limits on` (the default) every class is set so high that the check runs
// on every request and frame but never refuses one (its cost is measured, not its 429s), and
// with `off` they are turned off (the `sentinel limits off` contender, for the ratio).
// `--runs-journal off` turns run frame journaling off (`runs: { journal: false }`): the baseline
// of the ws-chat scenario's journaling ratio, never a production setting.
//   node bench/servers/sentinel.mjs --data-dir <dir> --secret <secret> [--log-requests true|false] [--rate-limits on|off]
//                                   [--runs-journal on|off] [--api-flags '<JSON array of extra `sentinel api` flags>']
import { EchoProvider } from '../../packages/core/dist/index.js';
import { runApiCommand } from '../../packages/cli/dist/index.js';
import { parseFlags, serveCommands } from '../lib/server-control.mjs';

const flags = parseFlags(process.argv.slice(2));
const limit = (flags['rate-limits'] ?? 'on') === 'off' ? '0' : '1000000000';
const running = await runApiCommand(
  [
    '--port', '0',
    '--host', '127.0.0.1',
    '--data-dir', flags['data-dir'],
    '--token-auth-secret', flags.secret,
    `--log-requests=${flags['log-requests'] ?? 'true'}`,
    '--max-connections', '100000',
    '--max-connections-per-address', '100000',
    '--rate-limit-read', limit,
    '--rate-limit-write', limit,
    '--rate-limit-auth', limit,
    '--rate-limit-chat', limit,
    // A scenario's own server flags (e.g. rate limiting), appended last so they win.
    ...(flags['api-flags'] ? JSON.parse(flags['api-flags']) : []),
  ],
  { ...process.env, SENTINEL_ADMIN_PASSWORD: 'bench-admin-password' },
  { stdout: process.stdout, stderr: process.stderr },
  (flags['runs-journal'] ?? 'on') === 'off' ? { runs: { journal: false } } : {},
);
running.api.providers.register(new EchoProvider({ chunkDelayMs: 0 }));

serveCommands({
  // A burst of `count` events on one agent through the journal (Store write, then the bus),
  // all issued at once, as concurrent turns would.
  async emit({ agentId, count }) {
    const writes = [];
    for (let i = 0; i < count; i++) {
      writes.push(running.api.journal.event(agentId, 'bench_event', `bench event ${i}`, { i }));
    }
    await Promise.all(writes);
    return { emitted: count };
  },
}, { exitOnSigterm: false });

process.once('SIGTERM', () => {
  running.close().finally(() => process.exit(0));
});
