// The server side of the harness's IPC channel: every server under test (ours and the
// baselines) answers the same commands, so the harness measures them all the same way.

/** RSS after two full GCs (servers run with --expose-gc), so garbage does not count as cost. */
export function settledRss() {
  const gc = globalThis.gc;
  if (typeof gc === 'function') {
    gc();
    gc();
  }
  return process.memoryUsage().rss;
}

/**
 * Answers the harness's commands: `memory` and `cpu` (always) and the server's own `handlers`
 * (`{ emit: async (msg) => result }`). Exits when the harness goes away, and on SIGTERM unless
 * `exitOnSigterm` is false (a server with its own graceful shutdown). An orderly exit also lets
 * `node --cpu-prof` write its profile.
 */
export function serveCommands(handlers = {}, { exitOnSigterm = true } = {}) {
  if (exitOnSigterm) process.once('SIGTERM', () => process.exit(0));
  if (typeof process.send !== 'function') return;
  const all = { memory: () => ({ rss: settledRss() }), cpu: () => process.cpuUsage(), ...handlers };
  process.on('message', (message) => {
    const handler = all[message?.cmd];
    if (!handler) {
      process.send({ id: message?.id, error: `unknown command ${String(message?.cmd)}` });
      return;
    }
    Promise.resolve()
      .then(() => handler(message))
      .then(
        (result) => process.send({ id: message.id, result }),
        (err) => process.send({ id: message.id, error: err instanceof Error ? err.message : String(err) }),
      );
  });
  process.on('disconnect', () => process.exit(0));
}

/** The line the harness waits for (the same words `sentinel api` prints). */
export function announce(name, url) {
  process.stdout.write(`${name} listening on ${url}\n`);
}

/** Parses `--key value` pairs into an object. */
export function parseFlags(argv) {
  const flags = {};
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i];
    if (!key?.startsWith('--')) throw new Error(`unexpected argument ${key}`);
    flags[key.slice(2)] = argv[i + 1] ?? '';
  }
  return flags;
}
