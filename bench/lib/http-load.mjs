// HTTP load: wrk (-t1 -c50, keep-alive) when installed, else autocannon (50 connections), each
// in its own process pinned to the load generator's CPU. Returns requests/s and latency
// percentiles; any non-2xx answer or socket error is a harness failure (a benchmark of error
// responses would measure the wrong thing).
import { fileURLToPath } from 'node:url';
import { lastJsonLine, runLoadGenerator } from './processes.mjs';

const LUA = fileURLToPath(new URL('../wrk/request.lua', import.meta.url));
const CREATE_AGENT_LUA = fileURLToPath(new URL('../wrk/create-agent.lua', import.meta.url));
const AUTOCANNON = fileURLToPath(new URL('../loadgen/autocannon.mjs', import.meta.url));

const UNIT_MS = { us: 0.001, ms: 1, s: 1000, m: 60_000 };
let runCounter = 0;

function toMs(text) {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text);
  if (!match) return null;
  return Number(match[1]) * UNIT_MS[match[2]];
}

/** Parses wrk's text report (run with --latency). */
export function parseWrk(output) {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(output);
  const requests = Number(/(\d+) requests in/.exec(output)?.[1] ?? NaN);
  if (!rps) throw new Error(`cannot read wrk's output: ${output.slice(0, 800)}`);
  const latency = {};
  for (const match of output.matchAll(/^\s+(50|75|90|99)%\s+([\d.]+(?:us|ms|s|m))\s*$/gm)) latency[match[1]] = toMs(match[2]);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(output)?.[1] ?? 0);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const errors = socketErrors ? socketErrors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
  return { rps: Number(rps[1]), requests, p50_ms: latency['50'] ?? null, p99_ms: latency['99'] ?? null, non2xx, errors };
}

/**
 * One load run against `url`: `{ method, token, body }` per request, `connections` (default 50)
 * for `durationSec`. `uniqueAgents`: POST /v1/agents bodies with a unique name per request
 * (wrk only). Resolves with {rps, requests, p50_ms, p99_ms, non2xx, errors, tool}.
 */
export async function runHttpLoad({ tool, url, method = 'GET', token, body, uniqueAgents = false, connections = 50, durationSec: requested, cpu }) {
  // wrk takes whole seconds only.
  const durationSec = Math.max(1, Math.round(requested));
  if (tool === 'wrk') {
    const { stdout } = await runLoadGenerator({
      name: 'wrk',
      command: 'wrk',
      args: ['-t1', `-c${connections}`, `-d${durationSec}s`, '--latency', '-s', uniqueAgents ? CREATE_AGENT_LUA : LUA, url],
      cpu,
      env: { BENCH_METHOD: method, BENCH_TOKEN: token ?? '', BENCH_BODY: body ?? '', BENCH_NAME_PREFIX: `b${(++runCounter).toString(36)}${process.pid.toString(36)}` },
    });
    return { ...parseWrk(stdout), tool };
  }
  const args = [AUTOCANNON, '--url', url, '--connections', String(connections), '--duration', String(durationSec), '--method', method];
  if (token) args.push('--token', token);
  if (uniqueAgents) args.push('--unique-agents', 'true');
  else if (body) args.push('--body', body);
  const { stdout } = await runLoadGenerator({ name: 'autocannon', command: process.execPath, args, cpu });
  const report = lastJsonLine(stdout);
  return {
    rps: report.requests.average,
    requests: report.requests.total,
    p50_ms: report.latency.p50,
    p99_ms: report.latency.p99,
    non2xx: report.non2xx ?? 0,
    errors: (report.errors ?? 0) + (report.timeouts ?? 0),
    tool,
  };
}
