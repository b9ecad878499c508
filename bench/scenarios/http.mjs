// The HTTP scenarios: each contender is a server process on CPU 0, driven by wrk (or
// autocannon) on CPU 1 with 50 keep-alive connections, in alternating rounds.
import { fileURLToPath } from 'node:url';
import { runHttpLoad } from '../lib/http-load.mjs';
import { startServer } from '../lib/processes.mjs';
import { alternate } from '../lib/rounds.mjs';
import { median, summarize } from '../lib/stats.mjs';

const script = (path) => fileURLToPath(new URL(path, import.meta.url));
const SENTINEL = script('../servers/sentinel.mjs');
const NODE_HTTP = script('../baselines/node-http.mjs');
const FASTIFY = script('../baselines/fastify.mjs');

/**
 * The `sentinel api` flags of the authentication scenario (`agents-list-key`), the one place to
 * set them: both its contenders (JWT and API key) run with exactly these, so "with rate
 * limiting on" is one flag added here.
 */
export const AUTH_SCENARIO_API_FLAGS = [];

function serverSpecs(ctx, data, names) {
  const logFlag = String(ctx.logRequests);
  const sentinelWith = (name, apiFlags, token) => ({
    name,
    script: SENTINEL,
    args: (d) => ['--data-dir', d.dir, '--secret', ctx.secret, '--log-requests', logFlag, '--api-flags', JSON.stringify(apiFlags)],
    token,
  });
  const all = {
    // The same server twice, once per credential: a user's login token, and that user's API key.
    'sentinel jwt': sentinelWith('sentinel jwt', AUTH_SCENARIO_API_FLAGS, (d) => d.token),
    'sentinel key': sentinelWith('sentinel key', AUTH_SCENARIO_API_FLAGS, (d) => d.apiKey),
    sentinel: { name: 'sentinel', script: SENTINEL, args: (d) => ['--data-dir', d.dir, '--secret', ctx.secret, '--log-requests', logFlag] },
    // The same server with the rate limits off: `sentinel` takes a unit from a bucket on every request.
    'sentinel limits off': {
      name: 'sentinel limits off',
      script: SENTINEL,
      args: (d) => ['--data-dir', d.dir, '--secret', ctx.secret, '--log-requests', logFlag, '--rate-limits', 'off'],
    },
    // The same server with Prometheus metrics off (`--no-metrics`): `sentinel` records every
    // request into its histogram and times every store call.
    'sentinel metrics off': sentinelWith('sentinel metrics off', ['--no-metrics']),
    'node:http': { name: 'node:http', script: NODE_HTTP, args: (d) => ['--db', d.dbPath, '--secret', ctx.secret, '--log-requests', logFlag] },
    // The same server writing the list's bytes built once: JWT verify + 25 KB write, nothing else.
    'node:http bytes': {
      name: 'node:http bytes',
      script: NODE_HTTP,
      args: (d) => ['--db', d.dbPath, '--secret', ctx.secret, '--log-requests', logFlag, '--prebuilt', 'true'],
    },
    fastify: { name: 'fastify', script: FASTIFY, args: (d) => ['--db', d.dbPath, '--secret', ctx.secret, '--log-requests', logFlag] },
  };
  // A contender is a name from the table above, or a spec of a scenario's own (tracing.mjs).
  return names.map((entry) => {
    const spec = typeof entry === 'string' ? all[entry] : entry;
    return { ...spec, data: ctx.copyOf(data, `${spec.name.replace(/\W/g, '')}-${ctx.nextId()}`) };
  });
}

/** Starts every contender, runs the alternating rounds of `request`, stops them. */
export async function measureHttp(ctx, { title, data, contenders: names, request }) {
  ctx.log(`${title}`);
  const specs = serverSpecs(ctx, data, names);
  const servers = new Map();
  try {
    // Started together (they sit idle while the others are measured).
    const started = await Promise.allSettled(
      specs.map((spec) =>
        startServer({
          name: spec.name,
          script: spec.script,
          args: spec.args(spec.data),
          cpu: ctx.cpu.server,
          ...(spec.env ? { env: spec.env } : {}),
          logFile: ctx.tmp(`${spec.name.replace(/\W/g, '')}-${ctx.nextId()}.log`),
        }),
      ),
    );
    started.forEach((outcome, i) => {
      if (outcome.status === 'fulfilled') servers.set(specs[i].name, outcome.value);
    });
    const failed = started.find((outcome) => outcome.status === 'rejected');
    if (failed) throw failed.reason;
    for (const server of servers.values()) ctx.log(`  ${server.name} listening on ${server.url} (pid ${server.pid})`);
    const load = (contender, durationSec) =>
      runHttpLoad({
        tool: ctx.httpTool,
        url: `${servers.get(contender.name).url}${request.path}`,
        method: request.method,
        token: request.auth ? (contender.token?.(data) ?? data.token) : undefined,
        body: request.body,
        uniqueAgents: request.uniqueAgents,
        durationSec,
        cpu: ctx.cpu.load,
      });
    const samples = await alternate({
      contenders: specs,
      rounds: ctx.rounds,
      log: ctx.log,
      warmup: ctx.warmup > 0 ? (c) => load(c, ctx.warmup) : undefined,
      measure: async (contender) => {
        const server = servers.get(contender.name);
        const cpuBefore = await server.command('cpu');
        const result = await load(contender, ctx.duration);
        const cpuAfter = await server.command('cpu');
        // CPU time per request: the server's own cost, far less sensitive than req/s to
        // whatever else runs on a shared machine.
        const cpuMicros = cpuAfter.user - cpuBefore.user + (cpuAfter.system - cpuBefore.system);
        if (result.non2xx > 0 || result.errors > 0) {
          throw new Error(`${contender.name}: ${result.non2xx} non-2xx answers and ${result.errors} socket errors during ${title}`);
        }
        return { rps: result.rps, p50_ms: result.p50_ms, p99_ms: result.p99_ms, cpu_us_per_request: cpuMicros / result.requests };
      },
    });
    return specs.map((spec) => {
      const list = samples.get(spec.name);
      return {
        contender: spec.name,
        samples: list,
        ...summarize(list.map((s) => s.rps)),
        p50_ms: median(list.map((s) => s.p50_ms)),
        p99_ms: median(list.map((s) => s.p99_ms)),
        cpu_us_per_request: median(list.map((s) => s.cpu_us_per_request)),
      };
    });
  } finally {
    for (const server of servers.values()) await server.stop();
  }
}

const ratio = (rows, a, b) => {
  const x = rows.find((r) => r.contender === a)?.median;
  const y = rows.find((r) => r.contender === b)?.median;
  return x == null || !y ? null : x / y;
};
const p99Of = (rows, name) => rows.find((r) => r.contender === name)?.p99_ms ?? null;

export const healthScenario = {
  id: 'health',
  title: 'GET /v1/health',
  unit: 'req/s',
  better: 'higher',
  async run(ctx) {
    const data = await ctx.seed('list');
    const rows = await measureHttp(ctx, {
      title: this.title,
      data,
      contenders: ['sentinel', 'node:http'],
      request: { method: 'GET', path: '/v1/health' },
    });
    const value = ratio(rows, 'sentinel', 'node:http');
    return { rows, checks: [{ name: 'sentinel / node:http', value, target: '>= 0.85', pass: value === null ? null : value >= 0.85 }] };
  },
};

export const agentsListScenario = {
  id: 'agents-list',
  title: 'GET /v1/agents (authenticated, 50 agents)',
  unit: 'req/s',
  better: 'higher',
  async run(ctx) {
    const data = await ctx.seed('list');
    const rows = await measureHttp(ctx, {
      title: this.title,
      data,
      contenders: ['sentinel', 'sentinel limits off', 'node:http', 'node:http bytes', 'fastify'],
      request: { method: 'GET', path: '/v1/agents', auth: true },
    });
    const notes = [
      `the user's token; ${data.agentIds.length} agents in the store, all the user's; request logs ${ctx.logRequests ? 'on' : 'off'} and CORS in every contender`,
      'sentinel checks its rate limit (in process) on every request; "sentinel limits off" is the same server without',
    ];
    const vsNoLimits = ratio(rows, 'sentinel', 'sentinel limits off');
    const vsBare = ratio(rows, 'sentinel', 'node:http');
    const vsFastify = ratio(rows, 'sentinel', 'fastify');
    const vsBytes = ratio(rows, 'sentinel', 'node:http bytes');
    const ours = p99Of(rows, 'sentinel');
    const worstBaseline = Math.min(p99Of(rows, 'node:http') ?? Infinity, p99Of(rows, 'fastify') ?? Infinity);
    return {
      rows,
      notes,
      checks: [
        { name: 'sentinel / sentinel limits off (rate-limit cost)', value: vsNoLimits, target: '>= 0.95', pass: vsNoLimits === null ? null : vsNoLimits >= 0.95 },
        { name: 'sentinel / node:http', value: vsBare, target: '>= 1.0', pass: vsBare === null ? null : vsBare >= 1.0 },
        { name: 'sentinel / fastify', value: vsFastify, target: '>= 1.3', pass: vsFastify === null ? null : vsFastify >= 1.3 },
        { name: 'sentinel / node:http bytes (prebuilt body)', value: vsBytes, target: '>= 0.8', pass: vsBytes === null ? null : vsBytes >= 0.8 },
        {
          name: 'sentinel p99',
          format: 'ms',
          value: ours,
          target: `<= ${Number.isFinite(worstBaseline) ? worstBaseline.toFixed(2) : '?'} (best baseline p99)`,
          pass: ours === null || !Number.isFinite(worstBaseline) ? null : ours <= worstBaseline,
        },
      ],
    };
  },
};

export const agentsListKeyScenario = {
  id: 'agents-list-key',
  title: 'GET /v1/agents with an API key vs a JWT (50 agents)',
  unit: 'req/s',
  better: 'higher',
  async run(ctx) {
    const data = await ctx.seed('list');
    const rows = await measureHttp(ctx, {
      title: this.title,
      data,
      contenders: ['sentinel jwt', 'sentinel key'],
      request: { method: 'GET', path: '/v1/agents', auth: true },
    });
    const flags = AUTH_SCENARIO_API_FLAGS.length === 0 ? 'no extra server flags' : `server flags ${AUTH_SCENARIO_API_FLAGS.join(' ')}`;
    const notes = [`one user's login token vs that user's API key (scope agents:read); ${data.agentIds.length} agents; ${flags}; request logs ${ctx.logRequests ? 'on' : 'off'}`];
    const value = ratio(rows, 'sentinel key', 'sentinel jwt');
    const cpuJwt = rows.find((r) => r.contender === 'sentinel jwt')?.cpu_us_per_request;
    const cpuKey = rows.find((r) => r.contender === 'sentinel key')?.cpu_us_per_request;
    const cpuRatio = cpuJwt && cpuKey ? cpuKey / cpuJwt : null;
    return {
      rows,
      notes,
      checks: [
        { name: 'key / jwt (req/s)', value, target: '>= 0.95', pass: value === null ? null : value >= 0.95 },
        { name: 'key / jwt (CPU per request)', value: cpuRatio, target: '<= 1.05', pass: cpuRatio === null ? null : cpuRatio <= 1.05 },
      ],
    };
  },
};

export const agentsCreateScenario = {
  id: 'agents-create',
  title: 'POST /v1/agents (validate + write)',
  unit: 'req/s',
  better: 'higher',
  async run(ctx) {
    const data = await ctx.seed('list');
    const rows = await measureHttp(ctx, {
      title: this.title,
      data,
      contenders: ['sentinel', 'fastify'],
      // wrk names each agent uniquely (names are unique per owner); autocannon sends this body.
      request: { method: 'POST', path: '/v1/agents', auth: true, uniqueAgents: true, body: JSON.stringify({ image: 'sentinel/echo:latest' }) },
    });
    const value = ratio(rows, 'sentinel', 'fastify');
    return { rows, checks: [{ name: 'sentinel / fastify', value, target: 'none (reported)', pass: null }] };
  },
};

/**
 * What metrics cost (issue 18): health and the authenticated list, each with metrics on (the
 * default) and `--no-metrics`, in alternating rounds of one run; tracing is not configured.
 */
export const metricsCostScenario = {
  id: 'metrics-cost',
  title: 'metrics on vs off: GET /v1/health and authenticated GET /v1/agents',
  unit: 'req/s',
  better: 'higher',
  async run(ctx) {
    const data = await ctx.seed('list');
    const contenders = ['sentinel', 'sentinel metrics off'];
    const health = await measureHttp(ctx, { title: `${this.title}: health`, data, contenders, request: { method: 'GET', path: '/v1/health' } });
    const list = await measureHttp(ctx, { title: `${this.title}: agents`, data, contenders, request: { method: 'GET', path: '/v1/agents', auth: true } });
    const named = (rows, what) => rows.map((row) => ({ ...row, contender: `${what}: ${row.contender === 'sentinel' ? 'metrics on' : 'metrics off'}` }));
    const rows = [...named(health, 'health'), ...named(list, 'agents')];
    const check = (what, source) => {
      const value = ratio(source, 'sentinel', 'sentinel metrics off');
      return { name: `${what}: metrics on / off (req/s)`, value, target: '>= 0.97', pass: value === null ? null : value >= 0.97 };
    };
    const cpu = (what, source) => {
      const on = source.find((r) => r.contender === 'sentinel')?.cpu_us_per_request;
      const off = source.find((r) => r.contender === 'sentinel metrics off')?.cpu_us_per_request;
      const value = on && off ? on / off : null;
      return { name: `${what}: metrics on / off (CPU per request)`, value, target: 'reported', pass: null };
    };
    return {
      rows,
      notes: [
        `${data.agentIds.length} agents of one user, that user's token; request logs ${ctx.logRequests ? 'on' : 'off'}; tracing not configured; process metrics on`,
        'metrics on: one histogram observation per request (method, route template, status) plus one per store call',
      ],
      checks: [check('health', health), check('agents', list), cpu('health', health), cpu('agents', list)],
    };
  },
};
