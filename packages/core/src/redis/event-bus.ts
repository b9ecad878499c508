/**
 * The Redis event bus (docs/ARCHITECTURE.md#scale-out): what one instance publishes for an agent reaches the
 * agent's subscribers on every instance. Local subscribers get it at once, in process (the same
 * mitt bus a single instance uses); other instances get it through Redis PUBLISH on
 * `<prefix>agent:<id>`. Each instance SUBSCRIBEs to an agent's channel only while it has a
 * local subscriber for that agent, on one dedicated subscriber connection.
 *
 * A message carries the id of the instance that sent it, and an instance drops its own echo,
 * so a local subscriber never gets a message twice.
 *
 * The bus is not durable, and Redis pub/sub loses what is published while a connection is down.
 * Readers do not depend on it: events are in the Store before they are published, the events
 * stream fills gaps from the Store, and whenever messages may have been missed the bus tells
 * local subscribers to catch up (`{kind: 'resync'}`): after a reconnection, and once Redis has
 * confirmed a new SUBSCRIBE (a reader that read the Store before that could otherwise miss what
 * was published in between). A failed publish is logged, never thrown: the write it announces
 * is already durable.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { createLocalEventBus, type AgentBusMessage, type EventBus } from '../bus.js';
import type { UserChange, UserChangeFeed } from '../auth/users.js';
import { SentinelError } from '../contract/errors.js';
import { silentLogger, type Logger } from '../contract/logger.js';
import {
  DEFAULT_KEY_PREFIX,
  busUnavailable,
  checkKeyPrefix,
  commandClientOptions,
  errorText,
  isRunFramesPayload,
  parseBusPayload,
  parseRedisUrl,
  subscriberClientOptions,
  type RedisClientTimeouts,
} from './connection.js';

export interface RedisEventBusOptions extends RedisClientTimeouts {
  /** `redis://[user[:password]@]host[:port][/db][?prefix=name]`, or `rediss://` for TLS. Required. */
  url: string;
  /** Start of every key and channel name, so several deployments can share one Redis. Default: the URL's `prefix`, else `sentinel:`. */
  keyPrefix?: string;
  /** Where connection losses and failed publishes are reported (never the password). Default: silent. */
  logger?: Logger;
  /** Called each time one of the bus's two connections is ready again after a loss (metrics). Default: nothing. */
  onReconnect?: () => void;
}

/** The Redis {@link EventBus}, plus what the other scale-out parts share with it. */
export interface RedisEventBus extends EventBus {
  readonly shared: true;
  /** Rejects with SentinelError `unavailable` unless both connections work (one PING round trip). */
  ping(): Promise<void>;
  /**
   * Resolves once both connections are up; rejects with `unavailable` when they are not within
   * the connect timeout (they keep trying in the background: close the bus to stop them).
   */
  ready(): Promise<void>;
  /** The prefix of every key and channel. */
  readonly keyPrefix: string;
  /** This instance's id (random), as carried by its messages. */
  readonly instanceId: string;
  /** The command connection, shared with the turn lock and the login limiter (closed with the bus). */
  readonly client: Redis;
  /** The URL with its password masked (for logs). */
  readonly displayUrl: string;
  /** Cross-instance invalidation of cached users, on channel `<prefix>users`. */
  readonly userChanges: UserChangeFeed;
  /**
   * Listens to the raw channel `<prefix><name>` (subscribed while anyone listens). `onResync`
   * is called when messages may have been missed: after a reconnection, and once the
   * subscription is confirmed. Returns the unsubscribe function.
   */
  listen(name: string, handler: (payload: string) => void, onResync?: () => void): () => void;
}

/** How a message travels: the sender's instance id and the message. */
interface Envelope {
  i: string;
  m: AgentBusMessage;
}

/** Agents whose failed publishes are remembered, to send them a resync once Redis is back. */
const MAX_REMEMBERED_FAILURES = 10_000;

function isEnvelope(value: unknown): value is Envelope {
  if (typeof value !== 'object' || value === null) return false;
  const { i, m } = value as Record<string, unknown>;
  if (typeof i !== 'string' || typeof m !== 'object' || m === null) return false;
  const kind = (m as Record<string, unknown>).kind;
  if (typeof kind !== 'string') return false;
  return kind !== 'run_frames' || isRunFramesPayload(m as Record<string, unknown>);
}

/**
 * Creates the bus and starts connecting (see {@link RedisEventBusOptions} for the defaults).
 * Throws `invalid_request` for a malformed URL or prefix; await `ready()` before relying on it.
 */
export function createRedisEventBus(options: RedisEventBusOptions): RedisEventBus {
  const target = parseRedisUrl(options.url);
  const keyPrefix = options.keyPrefix ?? target.keyPrefix ?? DEFAULT_KEY_PREFIX;
  checkKeyPrefix(keyPrefix);
  const logger = options.logger ?? silentLogger;
  const instanceId = randomUUID();
  const agentChannelPrefix = `${keyPrefix}agent:`;
  const usersChannel = `${keyPrefix}users`;

  const local = createLocalEventBus({ logger });
  const client = new Redis(commandClientOptions(target, options, 'sentinel-bus-command'));
  const subscriber = new Redis(subscriberClientOptions(target, options, 'sentinel-bus-subscriber'));
  /** channel → number of local holders (agents' subscribers, raw listeners). */
  const subscribed = new Map<string, number>();
  const rawHandlers = new Map<string, Set<(payload: string) => void>>();
  /** channel → what its raw listeners do when messages may have been missed. */
  const resyncHandlers = new Map<string, Set<() => void>>();
  const failedAgents = new Set<string>();
  /** username → the latest change whose publish failed, sent again once Redis is back. */
  const failedUsers = new Map<string, UserChange>();
  let closed = false;

  // Connection state, logged once per outage rather than once per failed command.
  const connectionLog = (name: string, connection: Redis, onRecovered: () => void) => {
    let wasReady = false;
    let down = false;
    connection.on('ready', () => {
      if (down) logger.info('redis connection restored', { connection: name, url: target.display });
      down = false;
      if (wasReady) {
        options.onReconnect?.();
        onRecovered();
      }
      wasReady = true;
    });
    connection.on('error', (err: unknown) => {
      if (down || closed) return;
      down = true;
      logger.warn('redis connection failed', { connection: name, url: target.display, error: errorText(err) });
    });
    connection.on('end', () => {
      if (!closed) logger.error('redis connection ended', { connection: name, url: target.display });
    });
  };
  connectionLog('command', client, () => {
    // Whoever missed this instance's publishes during the outage catches up now.
    for (const agentId of [...failedAgents]) {
      failedAgents.delete(agentId);
      sendRemote(agentChannelPrefix + agentId, agentId, { kind: 'resync' });
    }
    for (const change of [...failedUsers.values()]) {
      failedUsers.delete(change.username);
      userChanges.publish(change);
    }
  });
  connectionLog('subscriber', subscriber, () => {
    // ioredis resubscribes right after 'ready'; a PING answered after those SUBSCRIBEs proves
    // they are active, so nothing published from then on is missed by the catch-up below.
    setImmediate(() => {
      subscriber
        .ping()
        .then(() => {
          if (closed) return;
          for (const channel of [...subscribed.keys()]) resync(channel);
        })
        .catch((err: unknown) => logger.warn('redis resubscription check failed', { error: errorText(err) }));
    });
  });

  subscriber.on('message', (channel: string, payload: string) => {
    if (closed) return;
    if (channel.startsWith(agentChannelPrefix)) {
      let envelope: unknown;
      try {
        envelope = JSON.parse(payload);
      } catch {
        envelope = undefined;
      }
      if (!isEnvelope(envelope)) {
        logger.warn('malformed event bus message dropped', { channel });
        return;
      }
      if (envelope.i === instanceId) return;
      local.publish(channel.slice(agentChannelPrefix.length), envelope.m);
      return;
    }
    for (const handler of [...(rawHandlers.get(channel) ?? [])]) {
      try {
        handler(payload);
      } catch (err) {
        logger.error('event bus listener failed', { channel, error: errorText(err) });
      }
    }
  });

  /** Tells the channel's local listeners that messages may have been missed: they catch up from the Store. */
  function resync(channel: string): void {
    if (closed || !subscribed.has(channel)) return;
    if (channel.startsWith(agentChannelPrefix)) local.publish(channel.slice(agentChannelPrefix.length), { kind: 'resync' });
    for (const handler of [...(resyncHandlers.get(channel) ?? [])]) handler();
  }

  function hold(channel: string): void {
    const count = subscribed.get(channel) ?? 0;
    subscribed.set(channel, count + 1);
    if (count === 0) {
      // Until Redis confirms the SUBSCRIBE, other instances' messages do not reach this one;
      // what a listener read from the Store meanwhile may already be stale, so it reads again.
      subscriber.subscribe(channel).then(
        () => resync(channel),
        (err: unknown) => {
          if (!closed) logger.warn('redis subscribe failed', { channel, error: errorText(err) });
        },
      );
    }
  }

  function letGo(channel: string): void {
    const count = subscribed.get(channel) ?? 0;
    if (count > 1) {
      subscribed.set(channel, count - 1);
      return;
    }
    subscribed.delete(channel);
    if (closed) return;
    subscriber.unsubscribe(channel).catch((err: unknown) => {
      if (!closed) logger.warn('redis unsubscribe failed', { channel, error: errorText(err) });
    });
  }

  function sendRemote(channel: string, agentId: string, message: AgentBusMessage): void {
    const payload = JSON.stringify({ i: instanceId, m: message } satisfies Envelope);
    client.publish(channel, payload).catch((err: unknown) => {
      if (closed) return;
      if (failedAgents.size < MAX_REMEMBERED_FAILURES) failedAgents.add(agentId);
      logger.warn('event bus publish failed (the Store has the record; other instances catch up later)', {
        agent_id: agentId,
        kind: message.kind,
        error: errorText(err),
      });
    });
  }

  function listen(name: string, handler: (payload: string) => void, onResync?: () => void): () => void {
    if (closed) return () => {};
    const channel = keyPrefix + name;
    let handlers = rawHandlers.get(channel);
    if (!handlers) {
      handlers = new Set();
      rawHandlers.set(channel, handlers);
    }
    // A wrapper per call, so the same function listening twice unsubscribes twice.
    const entry = (payload: string) => handler(payload);
    handlers.add(entry);
    const onMissed = onResync === undefined ? undefined : () => onResync();
    if (onMissed) {
      let set = resyncHandlers.get(channel);
      if (!set) {
        set = new Set();
        resyncHandlers.set(channel, set);
      }
      set.add(onMissed);
    }
    hold(channel);
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      handlers.delete(entry);
      if (handlers.size === 0) rawHandlers.delete(channel);
      const missed = resyncHandlers.get(channel);
      if (onMissed && missed) {
        missed.delete(onMissed);
        if (missed.size === 0) resyncHandlers.delete(channel);
      }
      letGo(channel);
    };
  }

  // On the wire: {i: sender, u: username, id?: user id, v?: token version, or null once deleted}.
  const userChanges: UserChangeFeed = {
    publish(change) {
      if (closed) return;
      const { username } = change;
      const payload = JSON.stringify({
        i: instanceId,
        u: username,
        ...(change.user_id === undefined ? {} : { id: change.user_id }),
        ...(change.token_version === undefined ? {} : { v: change.token_version }),
      });
      client.publish(usersChannel, payload).catch((err: unknown) => {
        if (closed) return;
        // Sent again once Redis is back: a deleted user's or a revoked token must not stay valid elsewhere.
        if (failedUsers.has(username) || failedUsers.size < MAX_REMEMBERED_FAILURES) failedUsers.set(username, change);
        logger.warn('user change publish failed; it is sent again once Redis is back', { username, error: errorText(err) });
      });
    },
    subscribe(listener) {
      return listen(
        'users',
        (payload) => {
          const parsed = parseBusPayload(payload);
          if (parsed === null) return;
          const { i, u, id, v } = parsed;
          if (typeof u !== 'string' || i === instanceId) return;
          listener({
            username: u,
            ...(typeof id === 'string' ? { user_id: id } : {}),
            ...(v === null || (typeof v === 'number' && Number.isSafeInteger(v)) ? { token_version: v } : {}),
          });
        },
        () => listener(null),
      );
    },
  };

  function whenReady(connection: Redis, timeoutMs: number): Promise<void> {
    if (connection.status === 'ready') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        connection.off('ready', onReady);
        reject(new SentinelError('unavailable', `event bus unavailable: cannot connect to Redis at ${target.display}`));
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      connection.once('ready', onReady);
    });
  }

  async function quit(connection: Redis): Promise<void> {
    if (connection.status === 'ready') {
      // QUIT lets the replies of commands in flight (the last publishes) arrive first.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        connection.quit().catch(() => undefined),
        new Promise((resolve) => {
          timer = setTimeout(resolve, 1000);
        }),
      ]);
      clearTimeout(timer);
    }
    connection.disconnect();
  }

  return {
    shared: true,
    keyPrefix,
    instanceId,
    client,
    displayUrl: target.display,
    userChanges,
    listen,
    publish(agentId, message) {
      if (closed) return;
      local.publish(agentId, message);
      sendRemote(agentChannelPrefix + agentId, agentId, message);
    },
    subscribe(agentId, listener) {
      if (closed) return () => {};
      const channel = agentChannelPrefix + agentId;
      const unsubscribeLocal = local.subscribe(agentId, listener);
      hold(channel);
      let active = true;
      return () => {
        if (!active) return;
        active = false;
        unsubscribeLocal();
        letGo(channel);
      };
    },
    async ping() {
      if (closed) throw new SentinelError('unavailable', 'event bus closed');
      if (subscriber.status !== 'ready') throw new SentinelError('unavailable', 'event bus unavailable: Redis is not reachable');
      try {
        await client.ping();
      } catch (err) {
        throw busUnavailable(err);
      }
    },
    async ready() {
      const timeoutMs = (options.connectTimeoutMs ?? 2000) + 500;
      await Promise.all([whenReady(client, timeoutMs), whenReady(subscriber, timeoutMs)]);
    },
    async close() {
      if (closed) return;
      closed = true;
      await local.close();
      rawHandlers.clear();
      resyncHandlers.clear();
      subscribed.clear();
      await Promise.all([quit(client), quit(subscriber)]);
    },
  };
}
