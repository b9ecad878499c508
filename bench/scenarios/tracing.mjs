// The cost of OpenTelemetry tracing (issue 18): the same `sentinel api` twice in one run, with
// alternating rounds: tracing unconfigured (no OTEL_* variables: the API's no-op, what every
// untraced deployment runs) and tracing on, every request sampled (always_on) and exported over
// OTLP/HTTP (the SDK's default http/protobuf, batched) to a loopback collector in this process,
// which answers like a collector and counts what arrives. A third contender samples 10 %.
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { measureHttp } from './http.mjs';

const SENTINEL = fileURLToPath(new URL('../servers/sentinel.mjs', import.meta.url));

/** A loopback OTLP/HTTP collector: `POST /v1/traces` answered 200 `{}` (JSON) or an empty protobuf, bytes and exports counted. */
async function startCollector() {
  const stats = { exports: 0, bytes: 0 };
  const server = createServer((req, res) => {
    req.on('data', (chunk) => {
      stats.bytes += chunk.length;
    });
    req.on('end', () => {
      stats.exports++;
      const json = (req.headers['content-type'] ?? '').startsWith('application/json');
      // An empty ExportTraceServiceResponse: full success in either encoding.
      res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' }).end(json ? '{}' : '');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, stats, close: () => new Promise((resolve) => server.close(resolve)) };
}

function contenders(ctx, collector) {
  const args = (d) => ['--data-dir', d.dir, '--secret', ctx.secret, '--log-requests', String(ctx.logRequests)];
  return [
    { name: 'tracing off', script: SENTINEL, args },
    {
      name: 'tracing 100%',
      script: SENTINEL,
      args,
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_SERVICE_NAME: 'sentinel-bench',
        OTEL_TRACES_SAMPLER: 'always_on',
      },
    },
    // What a busy deployment would run: one request in ten traced (and every child of a sampled caller).
    {
      name: 'tracing 10%',
      script: SENTINEL,
      args,
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_SERVICE_NAME: 'sentinel-bench',
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.1',
      },
    },
  ];
}

function tracingScenario({ id, title, request }) {
  return {
    id,
    title,
    unit: 'req/s',
    better: 'higher',
    async run(ctx) {
      const data = await ctx.seed('list');
      const collector = await startCollector();
      let rows;
      try {
        rows = await measureHttp(ctx, { title, data, contenders: contenders(ctx, collector), request });
      } finally {
        await collector.close();
      }
      const off = rows.find((r) => r.contender === 'tracing off')?.median;
      const on = rows.find((r) => r.contender === 'tracing 100%')?.median;
      const value = off && on ? on / off : null;
      const tenth = rows.find((r) => r.contender === 'tracing 10%')?.median;
      const tenthValue = off && tenth ? tenth / off : null;
      const cpuOf = (name) => rows.find((r) => r.contender === name)?.cpu_us_per_request;
      const cpuRatio = cpuOf('tracing off') && cpuOf('tracing 100%') ? cpuOf('tracing 100%') / cpuOf('tracing off') : null;
      const notes = [
        `tracing 100%: OTEL_TRACES_SAMPLER=always_on, OTLP/HTTP (http/protobuf, BatchSpanProcessor defaults) to a loopback collector; request logs ${ctx.logRequests ? 'on' : 'off'}`,
        `the collector received ${collector.stats.exports} exports, ${(collector.stats.bytes / 1e6).toFixed(1)} MB`,
      ];
      return {
        rows,
        notes,
        checks: [
          { name: 'tracing 100% / tracing off', value, target: '>= 0.90', pass: value === null ? null : value >= 0.9 },
          { name: 'tracing 100% / tracing off (CPU per request)', value: cpuRatio, target: 'none (reported)', pass: null },
          { name: 'tracing 10% / tracing off', value: tenthValue, target: 'none (reported)', pass: null },
        ],
      };
    },
  };
}

export const tracingHealthScenario = tracingScenario({ id: 'tracing-health', title: 'GET /v1/health, tracing off vs sampled 100 %', request: { method: 'GET', path: '/v1/health' } });

export const tracingAgentsListScenario = tracingScenario({
  id: 'tracing-agents-list',
  title: 'GET /v1/agents (authenticated, 50 agents), tracing off vs sampled 100 %',
  request: { method: 'GET', path: '/v1/agents', auth: true },
});
