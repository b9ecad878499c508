/**
 * The per-agent turn lock on Redis: `SET <prefix>turn-lock:<agent> <token> NX PX <lease>`,
 * renewed every lease/3 while the turn runs, released by compare-and-delete (a holder whose
 * lease lapsed never deletes its successor's lock). A crashed instance stops renewing and its
 * lock expires after one lease.
 *
 * Waiting is fair between instances: a waiter that finds the lock taken claims the agent's
 * "next" key (`<prefix>turn-next:<agent>`, a short-lived claim it refreshes while it waits),
 * and only the claimant may take the lock when it frees up. Without it, the instance that just
 * released would win every race for its own next queued turn, and a client on another instance
 * could wait for as long as the first one stays busy. Waiters retry with a backoff of at most
 * `maxRetryDelayMs` and are woken at once by the release notice published on
 * `<prefix>turn-released`.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { silentLogger, type Logger } from '../contract/logger.js';
import type { TurnLease, TurnLock } from '../runtime/turn-lock.js';
import { busUnavailable, errorText } from './connection.js';
import type { RedisEventBus } from './event-bus.js';

export interface RedisTurnLockOptions {
  /** The bus whose command connection, prefix and release notices the lock uses. Required. */
  bus: Pick<RedisEventBus, 'client' | 'keyPrefix' | 'listen'>;
  /** How long a lock lasts without renewal, in ms (a crashed holder blocks the agent this long at most). Default 15000. */
  leaseMs?: number;
  /** Longest pause between two attempts of a waiter, in ms. Default 100. */
  maxRetryDelayMs?: number;
  /** How long a waiter's claim to be next lasts without refresh, in ms. Default 1000. */
  claimMs?: number;
  /** Where failed renewals and releases are reported. Default: silent. */
  logger?: Logger;
}

/** A Redis-backed {@link TurnLock}, with the release notices it listens to. */
export interface RedisTurnLock extends TurnLock {
  /** Stops listening for release notices (the bus's connections stay open). Idempotent. */
  close(): void;
}

// KEYS: lock, next. ARGV: token, lease ms, claim ms. 1 = acquired, 0 = wait.
const ACQUIRE = `
local next = redis.call('GET', KEYS[2])
if next and next ~= ARGV[1] then return 0 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if next then redis.call('DEL', KEYS[2]) end
  return 1
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
return 0
`;

// KEYS: lock. ARGV: token, lease ms. 1 = renewed, 0 = no longer ours.
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;

// KEYS: lock. ARGV: token, notice channel, agent id. 1 = released, 0 = was not ours any more.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
`;

// KEYS: next. ARGV: token. Gives up a claim to be next (a waiter that stopped waiting).
const UNCLAIM = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/** Creates the lock (see {@link RedisTurnLockOptions} for the defaults). */
export function createRedisTurnLock(options: RedisTurnLockOptions): RedisTurnLock {
  const { bus } = options;
  const client: Redis = bus.client;
  const leaseMs = options.leaseMs ?? 15_000;
  const maxRetryDelayMs = options.maxRetryDelayMs ?? 100;
  const claimMs = options.claimMs ?? 1000;
  const logger = options.logger ?? silentLogger;
  for (const [name, value] of Object.entries({ leaseMs, maxRetryDelayMs, claimMs })) {
    if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`turn lock option ${name} must be a positive integer, got ${value}`);
  }
  if (claimMs <= maxRetryDelayMs) throw new RangeError('turn lock claimMs must be longer than maxRetryDelayMs (a waiter refreshes its claim on every attempt)');
  const lockKey = (agentId: string) => `${bus.keyPrefix}turn-lock:${agentId}`;
  const nextKey = (agentId: string) => `${bus.keyPrefix}turn-next:${agentId}`;
  const noticeChannel = `${bus.keyPrefix}turn-released`;

  /** agent id → wake-up functions of this instance's waiters. */
  const waiters = new Map<string, Set<() => void>>();
  const wake = (agentId: string) => {
    for (const resume of [...(waiters.get(agentId) ?? [])]) resume();
  };
  const stopListening = bus.listen('turn-released', wake, () => {
    // Notices may have been missed while Redis was away: everyone tries again now.
    for (const agentId of [...waiters.keys()]) wake(agentId);
  });

  /** Sleeps `ms`, or less when the agent's lock is released; rejects when `signal` aborts. */
  function pause(agentId: string, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      let waiting = waiters.get(agentId);
      if (!waiting) {
        waiting = new Set();
        waiters.set(agentId, waiting);
      }
      const set = waiting;
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        set.delete(resume);
        if (set.size === 0 && waiters.get(agentId) === set) waiters.delete(agentId);
      };
      const resume = () => {
        done();
        resolve();
      };
      const onAbort = () => {
        done();
        reject(signal.reason);
      };
      const timer = setTimeout(resume, ms);
      set.add(resume);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** `grantedAt`: when the command that set the lock's expiry was sent (the lease counts from there at the latest). */
  function lease(agentId: string, token: string, grantedAt: number): TurnLease {
    const lost = new AbortController();
    let released = false;
    let renewedAt = grantedAt;
    const renew = async () => {
      const sentAt = Date.now();
      try {
        const result = await client.eval(RENEW, 1, lockKey(agentId), token, String(leaseMs));
        if (released) return;
        if (result === 1) {
          renewedAt = sentAt;
          return;
        }
        logger.error('agent turn lock lost: another holder has it', { agent_id: agentId });
        stop();
        lost.abort(new Error('turn lock lost'));
      } catch (err) {
        if (released) return;
        // Redis may come back before the lease runs out; after that the lock is gone for sure.
        if (Date.now() - renewedAt >= leaseMs) {
          logger.error('agent turn lock lost: could not renew it in time', { agent_id: agentId, error: errorText(err) });
          stop();
          lost.abort(new Error('turn lock lost'));
        } else {
          logger.warn('agent turn lock renewal failed; retrying', { agent_id: agentId, error: errorText(err) });
        }
      }
    };
    const timer = setInterval(() => void renew(), Math.max(1, Math.floor(leaseMs / 3)));
    timer.unref();
    const stop = () => clearInterval(timer);
    return {
      lost: lost.signal,
      async release() {
        if (released) return;
        released = true;
        stop();
        try {
          await client.eval(RELEASE, 1, lockKey(agentId), token, noticeChannel, agentId);
        } catch (err) {
          logger.warn('agent turn lock release failed; it expires with its lease', { agent_id: agentId, error: errorText(err) });
        }
        // Waiters of this instance need not wait for the notice to come back from Redis.
        wake(agentId);
      },
    };
  }

  return {
    async acquire(agentId, signal) {
      const token = randomUUID();
      let delay = Math.min(5, maxRetryDelayMs);
      for (;;) {
        if (signal.aborted) {
          await client.eval(UNCLAIM, 1, nextKey(agentId), token).catch(() => undefined);
          throw signal.reason;
        }
        let acquired: unknown;
        const sentAt = Date.now();
        try {
          acquired = await client.eval(ACQUIRE, 2, lockKey(agentId), nextKey(agentId), token, String(leaseMs), String(claimMs));
        } catch (err) {
          throw busUnavailable(err);
        }
        if (acquired === 1) {
          if (!signal.aborted) return lease(agentId, token, sentAt);
          // Aborted while the command was in flight: hand the lock straight back.
          await lease(agentId, token, sentAt).release();
          throw signal.reason;
        }
        try {
          await pause(agentId, delay, signal);
        } catch {
          // Loop once more: the aborted branch gives up the claim and throws.
        }
        delay = Math.min(delay * 2, maxRetryDelayMs);
      }
    },
    close() {
      stopListening();
      for (const agentId of [...waiters.keys()]) wake(agentId);
    },
  };
}
