/**
 * `sentinel api` and its metrics flags, through the built binary: `/metrics` on the main port
 * needs an admin credential; `--metrics-port` adds a listener on loopback that needs none;
 * `--no-metrics` turns both off; the two flags together are a usage error (exit 2).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseExposition, valueOf } from '@sentinel/test-support/prometheus';
import { callJson, cleanEnv, runCli, useCliScratch, type CliProcess } from './spawn-cli.js';

const ADMIN_PASSWORD = 'metrics-admin-password';
const METRICS_LINE = /^Metrics \(no auth\) at (\S+)\/metrics$/m;
const scratch = useCliScratch('sentinel-cli-metrics-');

function startApi(args: string[]): CliProcess {
  return runCli(['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', join(scratch.dir, `data-${args.join('')}`), ...args], cleanEnv(scratch.dir, { SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD }));
}

describe('sentinel api: metrics', () => {
  it('--metrics-port serves /metrics without auth on 127.0.0.1; the main port asks for an admin', async () => {
    const cli = startApi(['--metrics-port', '0']);
    const url = await cli.url();
    await cli.waitFor(() => METRICS_LINE.test(cli.stdout()), 'the metrics line');
    const metricsUrl = METRICS_LINE.exec(cli.stdout())?.[1] as string;
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(new URL(metricsUrl).port).not.toBe(new URL(url).port);

    expect((await callJson('GET', `${url}/v1/health`, undefined)).status).toBe(200);
    const open = await fetch(`${metricsUrl}/metrics`);
    expect(open.status).toBe(200);
    const families = parseExposition(await open.text());
    expect(valueOf(families, 'http_server_request_duration_seconds', { route: '/v1/health', status: '200' })).toBe(1);

    expect((await fetch(`${url}/metrics`)).status).toBe(401);
    const login = await callJson('POST', `${url}/v1/auth/login`, undefined, { username: 'admin', password: ADMIN_PASSWORD });
    const guarded = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${login.json.token as string}` } });
    expect(guarded.status).toBe(200);
    expect(parseExposition(await guarded.text()).has('sentinel_turns_total')).toBe(true);
    expect((await cli.stop()).code).toBe(0);
  });

  it('--no-metrics: no /metrics anywhere (404)', async () => {
    const cli = startApi(['--no-metrics']);
    const url = await cli.url();
    const login = await callJson('POST', `${url}/v1/auth/login`, undefined, { username: 'admin', password: ADMIN_PASSWORD });
    const response = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${login.json.token as string}` } });
    expect(response.status).toBe(404);
    expect((await cli.stop()).code).toBe(0);
  });

  it('--no-metrics with --metrics-port: a usage error, exit 2, nothing started', async () => {
    const cli = startApi(['--no-metrics', '--metrics-port', '0']);
    expect((await cli.exited()).code).toBe(2);
    expect(cli.stderr()).toContain('--metrics-port needs metrics');
    expect(cli.stdout()).not.toContain('listening on');
  });
});
