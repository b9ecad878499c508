import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '@sentinel/api-core';
import { statusForErrorCode } from '@sentinel/api-http';
import { API_ENV_ONLY, API_FLAGS, UsageError, formatApiHelp, formatMainHelp, parseApiArgs, type ApiConfig } from '@sentinel/cli';
import { closestMatch, editDistance } from '../src/suggest.js';

/** Parses and insists on a run (not help/version). */
function config(argv: string[], env: NodeJS.ProcessEnv = {}): ApiConfig {
  const parsed = parseApiArgs(argv, env);
  if (parsed.kind !== 'run') throw new Error(`expected a run, got ${parsed.kind}`);
  return parsed.config;
}

/** The UsageError message a call throws. */
function usageError(argv: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    parseApiArgs(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    const message = (err as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }
  throw new Error(`expected ${JSON.stringify(argv)} to be refused`);
}

describe('parseApiArgs: defaults', () => {
  it('uses the table defaults when nothing is given', () => {
    expect(config([])).toEqual({
      port: 8080,
      host: 'localhost',
      tlsCert: undefined,
      tlsKey: undefined,
      tokenAuthSecret: undefined,
      cors: true,
      logRequests: true,
      otelCaptureContent: false,
      console: true,
      dataDir: '~/.sentinel',
      registryTimeout: 600,
      registryMinRate: 1024,
      registryRateWindow: 30,
      registryAllowPrivate: false,
      webhookAllowPrivate: false,
      adminUsername: 'admin',
      adminPassword: undefined,
      maxConnections: 10_000,
      maxConnectionsPerAddress: 256,
      rateLimitRead: 1200,
      rateLimitWrite: 600,
      rateLimitAuth: 120,
      rateLimitChat: 120,
      trustProxy: false,
      approvalTimeoutMs: 3_600_000,
      metrics: true,
      metricsPort: undefined,
      metricsHost: '127.0.0.1',
    });
  });

  it('every default in the table is what the parser produces', () => {
    const parsed = config([]) as unknown as Record<string, unknown>;
    for (const flag of API_FLAGS) expect(parsed[flag.key], flag.name).toBe(flag.default);
  });
});

describe('parseApiArgs: flag forms', () => {
  it('reads --name value, --name=value and the short alias', () => {
    expect(config(['--port', '9000']).port).toBe(9000);
    expect(config(['--port=9001']).port).toBe(9001);
    expect(config(['-p', '9002']).port).toBe(9002);
    expect(config(['-p=9003']).port).toBe(9003);
    expect(config(['--port', '0']).port).toBe(0);
    expect(config(['--port', '65535']).port).toBe(65535);
  });

  it('reads every string flag', () => {
    const parsed = config([
      '--host', '0.0.0.0',
      '--tls-cert', '/etc/cert.pem',
      '--tls-key=/etc/key.pem',
      '--token-auth-secret', 'a-secret-of-enough-length',
      '--data-dir', '/var/lib/sentinel',
    ]);
    expect(parsed).toMatchObject({
      host: '0.0.0.0',
      tlsCert: '/etc/cert.pem',
      tlsKey: '/etc/key.pem',
      tokenAuthSecret: 'a-secret-of-enough-length',
      dataDir: '/var/lib/sentinel',
    });
  });

  it('keeps an = inside a value', () => {
    expect(config(['--token-auth-secret=abc=def=ghijklmnopq']).tokenAuthSecret).toBe('abc=def=ghijklmnopq');
  });

  it('reads booleans as a bare flag, =word, a following word, and --no-', () => {
    expect(config(['--cors']).cors).toBe(true);
    expect(config(['--no-cors']).cors).toBe(false);
    expect(config(['--no-log-requests']).logRequests).toBe(false);
    expect(config(['--no-console']).console).toBe(false);
    for (const [word, value] of [
      ['true', true], ['false', false], ['1', true], ['0', false], ['yes', true], ['no', false], ['FALSE', false], ['Yes', true],
    ] as const) {
      expect(config([`--cors=${word}`]).cors, word).toBe(value);
      expect(config(['--log-requests', word]).logRequests, word).toBe(value);
    }
  });

  it('a bare bool flag does not swallow the next flag', () => {
    const parsed = config(['--cors', '--port', '81']);
    expect(parsed.cors).toBe(true);
    expect(parsed.port).toBe(81);
  });

  it('the last occurrence wins', () => {
    expect(config(['--port', '1', '--port', '2']).port).toBe(2);
    expect(config(['--no-cors', '--cors']).cors).toBe(true);
  });

  it('accepts a lone -- terminator', () => {
    expect(config(['--port', '5', '--']).port).toBe(5);
  });
});

describe('parseApiArgs: environment', () => {
  const env = {
    SENTINEL_PORT: '7000',
    SENTINEL_HOST: '127.0.0.1',
    SENTINEL_TLS_CERT: '/c.pem',
    SENTINEL_TLS_KEY: '/k.pem',
    SENTINEL_TOKEN_SECRET: 'env-secret-0123456789',
    SENTINEL_CORS: 'no',
    SENTINEL_LOG_REQUESTS: '0',
    SENTINEL_CONSOLE: 'false',
    SENTINEL_DATA_DIR: '/env/data',
    SENTINEL_ADMIN_USER: 'root',
    SENTINEL_ADMIN_PASSWORD: 'hunter2hunter2',
    SENTINEL_MAX_CONNECTIONS: '5000',
    SENTINEL_MAX_CONNECTIONS_PER_ADDRESS: '64',
    SENTINEL_RATE_LIMIT_READ: '10',
    SENTINEL_RATE_LIMIT_WRITE: '0',
    SENTINEL_RATE_LIMIT_AUTH: '3',
    SENTINEL_RATE_LIMIT_CHAT: '7',
    SENTINEL_TRUST_PROXY: 'true',
    SENTINEL_REGISTRY_TIMEOUT: '60',
    SENTINEL_REGISTRY_MIN_RATE: '0',
    SENTINEL_REGISTRY_RATE_WINDOW: '5',
    SENTINEL_REGISTRY_ALLOW_PRIVATE: 'yes',
    SENTINEL_WEBHOOK_ALLOW_PRIVATE: 'true',
    SENTINEL_APPROVAL_TIMEOUT: '15m',
    SENTINEL_METRICS: 'false',
    SENTINEL_METRICS_PORT: '9464',
    SENTINEL_METRICS_HOST: '0.0.0.0',
    // The one flag whose variable is a standard's, not ours (the GenAI instrumentations' name).
    OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: 'true',
  };

  it('every flag has its SENTINEL_ variable', () => {
    expect(config([], env)).toEqual({
      port: 7000,
      host: '127.0.0.1',
      tlsCert: '/c.pem',
      tlsKey: '/k.pem',
      tokenAuthSecret: 'env-secret-0123456789',
      cors: false,
      logRequests: false,
      otelCaptureContent: true,
      console: false,
      dataDir: '/env/data',
      registryTimeout: 60,
      registryMinRate: 0,
      registryRateWindow: 5,
      registryAllowPrivate: true,
      webhookAllowPrivate: true,
      adminUsername: 'root',
      adminPassword: 'hunter2hunter2',
      maxConnections: 5000,
      maxConnectionsPerAddress: 64,
      rateLimitRead: 10,
      rateLimitWrite: 0,
      rateLimitAuth: 3,
      rateLimitChat: 7,
      trustProxy: true,
      approvalTimeoutMs: 900_000,
      metrics: false,
      metricsPort: 9464,
      metricsHost: '0.0.0.0',
    });
  });

  it('refuses connection caps that are not positive integers', () => {
    expect(usageError(['--max-connections', '0'])).toContain('--max-connections must be an integer from 1 to 1000000');
    expect(usageError(['--max-connections=lots'])).toContain('--max-connections');
    expect(usageError(['--max-connections-per-address', '-1'])).toContain('--max-connections-per-address');
    expect(config(['--max-connections', '20000', '--max-connections-per-address=1000'])).toMatchObject({ maxConnections: 20_000, maxConnectionsPerAddress: 1000 });
  });

  it('takes the approval timeout as a duration with a unit (a bare number is seconds), within 1 s to 7 days', () => {
    for (const [text, ms] of [['30s', 30_000], ['1500ms', 1_500], ['2h', 7_200_000], ['1d', 86_400_000], ['90', 90_000]] as const) {
      expect(config(['--approval-timeout', text]).approvalTimeoutMs, text).toBe(ms);
    }
    for (const bad of ['10ms', '8d', '1.5h', 'soon', '-5s', '']) {
      expect(usageError([`--approval-timeout=${bad}`]), bad).toContain('--approval-timeout');
    }
    expect(usageError(['--approval-timeout', 'soon'])).toContain('must be a duration from 1000 ms to 604800000 ms such as 30s, 15m or 2h, got "soon"');
  });

  it('a flag beats its variable', () => {
    const parsed = config(['--port', '1', '--host=::1', '--cors', '--log-requests=yes', '--data-dir', '/flag'], env);
    expect(parsed).toMatchObject({ port: 1, host: '::1', cors: true, logRequests: true, dataDir: '/flag' });
    expect(parsed.tlsCert).toBe('/c.pem');
  });

  it('env booleans accept the same words', () => {
    for (const [word, value] of [['true', true], ['FALSE', false], ['1', true], ['0', false], ['yes', true], ['no', false]] as const) {
      expect(config([], { SENTINEL_CORS: word }).cors, word).toBe(value);
    }
  });

  it('an empty variable counts as unset', () => {
    const parsed = config([], { SENTINEL_PORT: '', SENTINEL_HOST: '', SENTINEL_ADMIN_PASSWORD: '', SENTINEL_ADMIN_USER: '' });
    expect(parsed).toMatchObject({ port: 8080, host: 'localhost', adminPassword: undefined, adminUsername: 'admin' });
  });

  it('SENTINEL_PORT=0 picks a free port like --port 0', () => {
    expect(config([], { SENTINEL_PORT: '0' }).port).toBe(0);
  });

  it('a bad variable is refused by name', () => {
    expect(usageError([], { SENTINEL_PORT: 'http' })).toBe('SENTINEL_PORT must be an integer from 0 to 65535, got "http"');
    expect(usageError([], { SENTINEL_CORS: 'maybe' })).toBe('SENTINEL_CORS must be true or false (or 1/0, yes/no), got "maybe"');
  });

  it('a flag that overrides a bad variable wins without reading it', () => {
    expect(config(['--port', '5'], { SENTINEL_PORT: 'http' }).port).toBe(5);
  });
});

describe('parseApiArgs: errors', () => {
  it('unknown flags suggest the closest one', () => {
    expect(usageError(['--prot', '1'])).toBe('unknown flag --prot (did you mean --port?)');
    expect(usageError(['--data_dir', '/x'])).toBe('unknown flag --data_dir (did you mean --data-dir?)');
    expect(usageError(['--no-cosr'])).toBe('unknown flag --no-cosr (did you mean --no-cors?)');
    expect(usageError(['--log'])).toBe('unknown flag --log (did you mean --log-requests?)');
    expect(usageError(['-port', '1'])).toBe('unknown flag -port (did you mean --port?)');
    expect(usageError(['--tlscert', 'x'])).toBe('unknown flag --tlscert (did you mean --tls-cert?)');
  });

  it('unknown flags with nothing close get no suggestion', () => {
    expect(usageError(['--verbose'])).toBe('unknown flag --verbose');
    expect(usageError(['-x'])).toBe('unknown flag -x');
    expect(usageError(['--no-port'])).toBe('unknown flag --no-port (--port is not a boolean flag)');
  });

  it('a missing value', () => {
    expect(usageError(['--port'])).toBe('--port needs a value');
    expect(usageError(['-p'])).toBe('-p needs a value');
    expect(usageError(['--host', '--port', '1'])).toBe('--host needs a value');
    expect(usageError(['--data-dir='])).toBe('--data-dir needs a value');
    expect(usageError(['--token-auth-secret'])).toBe('--token-auth-secret needs a value');
  });

  it('a port that is not an integer in 0..65535', () => {
    expect(usageError(['--port', 'abc'])).toBe('--port must be an integer from 0 to 65535, got "abc"');
    expect(usageError(['--port', '70000'])).toBe('--port must be an integer from 0 to 65535, got "70000"');
    expect(usageError(['--port', '-1'])).toBe('--port must be an integer from 0 to 65535, got "-1"');
    expect(usageError(['--port=80.5'])).toBe('--port must be an integer from 0 to 65535, got "80.5"');
    expect(usageError(['-p', '1e3'])).toBe('-p must be an integer from 0 to 65535, got "1e3"');
    expect(usageError(['--port='])).toBe('--port must be an integer from 0 to 65535, got ""');
  });

  it('a bad boolean', () => {
    expect(usageError(['--cors=maybe'])).toBe('--cors must be true or false (or 1/0, yes/no), got "maybe"');
    expect(usageError(['--log-requests='])).toBe('--log-requests must be true or false (or 1/0, yes/no), got ""');
    expect(usageError(['--no-cors=true'])).toBe('--no-cors takes no value');
  });

  it('a positional argument', () => {
    expect(usageError(['serve'])).toBe('unexpected argument "serve" (sentinel api takes only flags)');
    expect(usageError(['--cors', 'maybe'])).toBe('unexpected argument "maybe" (sentinel api takes only flags)');
    expect(usageError(['--', '--port'])).toBe('unexpected argument "--port" (sentinel api takes only flags)');
    expect(usageError(['-'])).toBe('unexpected argument "-" (sentinel api takes only flags)');
  });
});

describe('parseApiArgs: help and version', () => {
  it('--help and -h win over everything else, even a typo next to them', () => {
    expect(parseApiArgs(['--help'])).toEqual({ kind: 'help' });
    expect(parseApiArgs(['-h'])).toEqual({ kind: 'help' });
    expect(parseApiArgs(['--prot', '1', '--help'])).toEqual({ kind: 'help' });
    expect(parseApiArgs(['--help'], { SENTINEL_PORT: 'bad' })).toEqual({ kind: 'help' });
  });

  it('--version', () => {
    expect(parseApiArgs(['--version'])).toEqual({ kind: 'version' });
  });

  it('after -- they are plain (refused) arguments', () => {
    expect(usageError(['--', '--help'])).toBe('unexpected argument "--help" (sentinel api takes only flags)');
  });
});

describe('help text', () => {
  const help = formatApiHelp();

  it('lists every flag of the table with its env variable and default', () => {
    for (const flag of API_FLAGS) {
      expect(help).toContain(`--${flag.name}`);
      expect(help).toContain(`env ${flag.env}, default ${flag.defaultLabel ?? String(flag.default)}`);
      if (flag.alias) expect(help).toContain(`-${flag.alias}, --${flag.name}`);
      expect(help).toContain(flag.description);
    }
  });

  it('documents the env-only variables, --help, --version and the precedence', () => {
    for (const variable of API_ENV_ONLY) {
      expect(help).toContain(variable.env);
      expect(help).toContain(variable.defaultLabel);
    }
    expect(help).toContain('-h, --help');
    expect(help).toContain('--version');
    expect(help).toMatch(/flag beats its environment variable/);
    expect(help.startsWith('Usage: sentinel api [flags]')).toBe(true);
  });

  it('the main help names the api command', () => {
    expect(formatMainHelp()).toMatch(/^Usage: sentinel <command>/);
    expect(formatMainHelp()).toMatch(/\n {2}api +Start the API server/);
  });
});

describe('suggestions', () => {
  it('edit distance counts a transposition as one edit', () => {
    expect(editDistance('port', 'port')).toBe(0);
    expect(editDistance('prot', 'port')).toBe(1);
    expect(editDistance('hots', 'host')).toBe(1);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('kitten', 'sitting')).toBe(3);
  });

  it('closestMatch prefers a unique prefix and refuses far-off words', () => {
    expect(closestMatch('tls', ['tls-cert', 'tls-key'])).toBeUndefined();
    expect(closestMatch('tls-c', ['tls-cert', 'tls-key'])).toBe('tls-cert');
    expect(closestMatch('zzzz', ['port', 'host'])).toBeUndefined();
    expect(closestMatch('', ['port'])).toBeUndefined();
  });
});

describe('README stays in step with the code', () => {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  const rows = readme.split('\n').filter((line) => line.startsWith('| `'));

  it('has one row per flag with its alias, variable and default', () => {
    for (const flag of API_FLAGS) {
      const names = flag.alias ? `\`--${flag.name}\`, \`-${flag.alias}\`` : `\`--${flag.name}\``;
      const row = rows.find((line) => line.startsWith(`| ${names} |`));
      expect(row, `README row for --${flag.name}`).toBeDefined();
      const cells = (row as string).split('|').map((cell) => cell.trim());
      expect(cells[2]).toBe(`\`${flag.env}\``);
      const shownDefault = (cells[3] as string).replace(/`/g, '');
      expect(shownDefault).toBe(flag.defaultLabel?.replace(/`/g, '') ?? String(flag.default));
    }
    for (const variable of API_ENV_ONLY) {
      expect(rows.some((line) => line.startsWith(`| \`${variable.env}\` |`)), variable.env).toBe(true);
    }
  });

  it('lists every error code with its HTTP status', () => {
    for (const code of ERROR_CODES) {
      expect(rows.some((line) => line.startsWith(`| \`${code}\` | ${statusForErrorCode(code)} |`)), code).toBe(true);
    }
  });
});
