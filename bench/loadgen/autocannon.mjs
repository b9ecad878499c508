// HTTP load with autocannon (the fallback when wrk is not installed), in its own process.
// Same request as the wrk scripts: Origin header, optional bearer token, optional JSON body;
// with --unique-agents true each POST /v1/agents names its agent uniquely (names are unique
// per owner). Prints autocannon's result as one JSON line.
//   node autocannon.mjs --url U --connections 50 --duration S [--method M] [--token T] [--body B] [--unique-agents true]
import autocannon from 'autocannon';
import { parseFlags } from '../lib/server-control.mjs';

const flags = parseFlags(process.argv.slice(2));
const headers = { Origin: 'http://bench.example' };
if (flags.token) headers.Authorization = `Bearer ${flags.token}`;
if (flags.body || flags['unique-agents'] === 'true') headers['Content-Type'] = 'application/json';
const prefix = `b${process.pid.toString(36)}${Date.now().toString(36)}`;
let counter = 0;

const request = { method: flags.method ?? 'GET', headers };
if (flags['unique-agents'] === 'true') {
  request.setupRequest = (req) => ({ ...req, body: JSON.stringify({ image: 'sentinel/echo:latest', name: `${prefix}-${++counter}` }) });
} else if (flags.body) {
  request.body = flags.body;
}

const result = await autocannon({
  url: flags.url,
  connections: Number(flags.connections ?? '50'),
  duration: Number(flags.duration),
  requests: [request],
});
process.stdout.write(`${JSON.stringify(result)}\n`);
