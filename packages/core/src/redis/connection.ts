/**
 * Redis connections for scale-out: the `redis://` URL, the client settings that keep a Redis
 * outage from hanging requests, and the one error every Redis failure becomes.
 *
 * The URL is parsed here rather than by ioredis, because ioredis copies every query parameter
 * into its options: `?prefix=` is ours, and anything else is refused instead of silently
 * changing a client setting.
 */
import type { RedisOptions } from 'ioredis';
import { SentinelError, isSentinelError } from '../contract/errors.js';

/** Keys and channels start with this unless the URL or the options say otherwise. */
export const DEFAULT_KEY_PREFIX = 'sentinel:';

/** A prefix is short and plain, so it can name keys in `redis-cli` without quoting. */
const KEY_PREFIX_PATTERN = /^[A-Za-z0-9:._-]{1,64}$/;

export interface RedisTarget {
  /** Connection settings for ioredis (host, port, credentials, db, TLS). */
  readonly connection: Pick<RedisOptions, 'host' | 'port' | 'username' | 'password' | 'db' | 'tls'>;
  /** The `prefix` query parameter, when given. */
  readonly keyPrefix: string | undefined;
  /** The `turn_lease_ms` query parameter (the turn lock's lease), when given. */
  readonly turnLeaseMs: number | undefined;
  /** The URL with its password masked, for logs and error messages. */
  readonly display: string;
}

/**
 * Parses `redis://[user[:password]@]host[:port][/db][?prefix=p&turn_lease_ms=n]` (or
 * `rediss://` for TLS).
 * Throws SentinelError `invalid_request` naming what is wrong (never echoing the password).
 */
export function parseRedisUrl(url: string): RedisTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new SentinelError('invalid_request', 'invalid bus URL: expected redis://host:port[/db][?prefix=name]');
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new SentinelError('invalid_request', `invalid bus URL: the scheme must be redis:// or rediss://, got ${parsed.protocol}//`);
  }
  if (parsed.hostname === '') throw new SentinelError('invalid_request', 'invalid bus URL: no host');
  const display = maskedUrl(parsed);
  const path = parsed.pathname.replace(/^\/+/, '');
  let db: number | undefined;
  if (path !== '') {
    if (!/^\d{1,5}$/.test(path)) throw new SentinelError('invalid_request', `invalid bus URL ${display}: the path must be a database number`);
    db = Number(path);
  }
  let keyPrefix: string | undefined;
  let turnLeaseMs: number | undefined;
  for (const [name, value] of parsed.searchParams) {
    if (name === 'prefix') {
      checkKeyPrefix(value);
      keyPrefix = value;
    } else if (name === 'turn_lease_ms') {
      turnLeaseMs = /^\d{1,9}$/.test(value) ? Number(value) : Number.NaN;
      if (!(turnLeaseMs >= 100)) throw new SentinelError('invalid_request', `invalid bus URL ${display}: turn_lease_ms must be an integer of at least 100`);
    } else {
      throw new SentinelError('invalid_request', `invalid bus URL ${display}: unknown parameter "${name}" (known: prefix, turn_lease_ms)`);
    }
  }
  // WHATWG URL keeps IPv6 brackets in `hostname`; sockets want the bare address.
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  const connection: RedisTarget['connection'] = {
    host,
    port: parsed.port === '' ? 6379 : Number(parsed.port),
    ...(parsed.username === '' ? {} : { username: decodeURIComponent(parsed.username) }),
    ...(parsed.password === '' ? {} : { password: decodeURIComponent(parsed.password) }),
    ...(db === undefined ? {} : { db }),
    ...(parsed.protocol === 'rediss:' ? { tls: { servername: host } } : {}),
  };
  return { connection, keyPrefix, turnLeaseMs, display };
}

/** Throws `invalid_request` unless `prefix` is 1 to 64 of `A-Z a-z 0-9 : . _ -`. */
export function checkKeyPrefix(prefix: string): void {
  if (!KEY_PREFIX_PATTERN.test(prefix)) {
    throw new SentinelError('invalid_request', 'invalid bus key prefix: use 1 to 64 letters, digits or ":._-"');
  }
}

/** `url` with any password replaced by `***`: safe to log. */
export function maskRedisUrl(url: string): string {
  try {
    return maskedUrl(new URL(url));
  } catch {
    return '(unparsable URL)';
  }
}

function maskedUrl(url: URL): string {
  const copy = new URL(url.href);
  if (copy.password !== '') copy.password = '***';
  return copy.href;
}

export interface RedisClientTimeouts {
  /** Longest wait for a TCP connection (and the first connection of the bus), in ms. Default 2000. */
  connectTimeoutMs?: number;
  /** Longest wait for one command's reply, in ms. Default 2000. */
  commandTimeoutMs?: number;
}

/** Pause before the n-th reconnection attempt: quick at first, at most 1 s; never gives up. */
function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 5), 1000);
}

/**
 * Settings of the command connection. A request that needs Redis while it is down must fail
 * at once (503), not wait in an offline queue: no offline queue, one retry, bounded connect and
 * command times. Reconnection goes on in the background for as long as it takes.
 */
export function commandClientOptions(target: RedisTarget, timeouts: RedisClientTimeouts, name: string): RedisOptions {
  return {
    ...target.connection,
    connectionName: name,
    connectTimeout: timeouts.connectTimeoutMs ?? 2000,
    commandTimeout: timeouts.commandTimeoutMs ?? 2000,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    retryStrategy: reconnectDelay,
    lazyConnect: false,
  };
}

/**
 * Settings of the subscriber connection. Unlike commands, a SUBSCRIBE issued while Redis is
 * down waits for the reconnection (and ioredis resubscribes every channel after one): a
 * stream opened during an outage starts receiving once Redis is back.
 */
export function subscriberClientOptions(target: RedisTarget, timeouts: RedisClientTimeouts, name: string): RedisOptions {
  return {
    ...target.connection,
    connectionName: name,
    connectTimeout: timeouts.connectTimeoutMs ?? 2000,
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    autoResubscribe: true,
    retryStrategy: reconnectDelay,
    lazyConnect: false,
  };
}

/** What went wrong, in words an operator can act on (ioredis's own texts are cryptic). */
function reason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (/enableOfflineQueue|Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET|EPIPE|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT/.test(message)) {
    return 'Redis is not reachable';
  }
  if (/Command timed out/.test(message)) return 'Redis did not answer in time';
  if (/MaxRetriesPerRequest/.test(message)) return 'Redis connection lost';
  return message.split('\n')[0] ?? 'unknown error';
}

/** Every Redis failure a request sees: SentinelError `unavailable` (HTTP 503). */
export function busUnavailable(err: unknown): SentinelError {
  if (isSentinelError(err)) return err;
  return new SentinelError('unavailable', `event bus unavailable: ${reason(err)}`, { cause: err });
}

/** An error's message for a log line (never its stack: logs stay one line). */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * A message from another instance on a bus channel, as an object, or null when it is not JSON
 * (a message from a newer or foreign writer is ignored, never a crash of the subscriber).
 */
export function parseBusPayload(payload: string): Record<string, unknown> | null {
  try {
    const parsed: unknown = JSON.parse(payload);
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * True when a bus message of kind `run_frames` has the shape its readers rely on (a run id and
 * `{seq, json}` frames): another instance's frames are checked before anyone replays them.
 */
export function isRunFramesPayload(message: Record<string, unknown>): boolean {
  const { run_id: runId, frames } = message;
  return (
    typeof runId === 'string' &&
    Array.isArray(frames) &&
    frames.every((f: unknown) => {
      if (typeof f !== 'object' || f === null) return false;
      const { seq, json } = f as Record<string, unknown>;
      return typeof seq === 'number' && Number.isSafeInteger(seq) && seq > 0 && typeof json === 'string';
    })
  );
}
