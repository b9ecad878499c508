/**
 * One-time WebSocket tickets (docs/ARCHITECTURE.md#auth-and-tenancy): a browser cannot set
 * headers on a WebSocket, and a long-lived token in a URL ends up in proxy logs and browser
 * history. So a client that holds a credential mints a ticket (`POST /v1/ws-tickets`) and opens
 * `…/chat?ticket=…`: the ticket is valid once, for 30 s, for one agent and one channel.
 *
 * The ticket is 256 random bits; only its SHA-256 is used as the storage key, so the store
 * (Redis with several instances) never holds a usable secret. What the key holds is the caller's
 * principal (username, role, scopes), the resolved agent id, the channel, and the underlying
 * credential (a login token's claims, or the credential id of another kind), so a socket opened
 * with the ticket is closed when that credential is revoked or expires.
 * Consumption is atomic (GETDEL in Redis, delete-on-read in process): a replay is refused even
 * when two instances race for it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { invalidRequest, SentinelError } from '../contract/errors.js';
import type { Principal, Role } from '../contract/models.js';
import { isScope, type Scope } from '../contract/scopes.js';
import type { TokenClaims } from './tokens.js';

/** The channels a ticket can open: the WebSocket endpoints. */
export type TicketChannel = 'chat' | 'events';

/** Where tickets wait to be consumed. */
export interface TicketStore {
  /** Stores `value` under `key` for `ttlMs`. */
  put(key: string, value: string, ttlMs: number): Promise<void>;
  /** Returns and deletes the value in one atomic step; null when absent or expired. */
  take(key: string): Promise<string | null>;
}

/** Tickets in process (one instance): a Map with expiry, swept as it is used. */
export class LocalTicketStore implements TicketStore {
  readonly #entries = new Map<string, { value: string; expiresAtMs: number }>();
  readonly #now: () => number;

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  async put(key: string, value: string, ttlMs: number): Promise<void> {
    const now = this.#now();
    // Insertion order is expiry order (one TTL for all), so expired entries are at the front.
    for (const [k, entry] of this.#entries) {
      if (entry.expiresAtMs > now) break;
      this.#entries.delete(k);
    }
    this.#entries.set(key, { value, expiresAtMs: now + ttlMs });
  }

  async take(key: string): Promise<string | null> {
    const entry = this.#entries.get(key);
    if (entry === undefined) return null;
    this.#entries.delete(key);
    return entry.expiresAtMs > this.#now() ? entry.value : null;
  }
}

/** What `POST /v1/ws-tickets` returns. */
export interface IssuedTicket {
  ticket: string;
  /** RFC 3339, UTC, milliseconds. */
  expires_at: string;
}

/** A consumed ticket: the principal it carries and the underlying login token's claims, when it was minted with one. */
export interface ConsumedTicket {
  principal: Principal;
  agentId: string;
  /** The underlying token's claims (a login session), to recheck it now and while the socket is open. */
  claims?: TokenClaims;
}

/** The stored form; short names, it is written once per ticket. */
interface TicketRecord {
  u: string;
  r: Role;
  s?: string[];
  a: string;
  c: TicketChannel;
  /** The underlying credential's expiry (ms); absent: none. */
  e?: number;
  /** The underlying credential's id (a key's id); absent for tokens, whose claims are in `t`. */
  k?: string;
  t?: TokenClaims;
}

const PREFIX = 'wst_';
const TICKET_BYTES = 32;
const TICKET_LENGTH = PREFIX.length + Math.ceil((TICKET_BYTES * 4) / 3);
const TICKET_PATTERN = /^wst_[A-Za-z0-9_-]{43}$/;

/** Default lifetime: 30 s. */
export const DEFAULT_TICKET_TTL_MS = 30_000;

function keyOf(ticket: string): string {
  return createHash('sha256').update(ticket).digest('hex');
}

/** The non-secret id a ticket goes by (a socket opened with it is tracked under it). */
function idOf(key: string): string {
  return `ticket:${key.slice(0, 16)}`;
}

function refused(message: string): SentinelError {
  return new SentinelError('unauthorized', message);
}

export interface TicketServiceOptions {
  /** Where tickets wait. Default: in process. */
  store?: TicketStore;
  /** Lifetime of a ticket in ms. Default 30000. */
  ttlMs?: number;
  /** Clock in epoch ms. Default `Date.now`. */
  now?: () => number;
}

/** Mints and consumes tickets (see the module comment). */
export class TicketService {
  readonly #store: TicketStore;
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(options: TicketServiceOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#store = options.store ?? new LocalTicketStore({ now: this.#now });
    this.#ttlMs = options.ttlMs ?? DEFAULT_TICKET_TTL_MS;
    if (!Number.isInteger(this.#ttlMs) || this.#ttlMs <= 0) throw invalidRequest('ticket lifetime must be a positive whole number of ms');
  }

  /**
   * Mints a ticket for `principal` to open `channel` of agent `agentId` (already resolved and
   * authorized by the caller). `claims`: the principal's login token, when it is one.
   */
  async issue(principal: Principal, agentId: string, channel: TicketChannel, claims?: TokenClaims): Promise<IssuedTicket> {
    const ticket = PREFIX + randomBytes(TICKET_BYTES).toString('base64url');
    const record: TicketRecord = {
      u: principal.username,
      r: principal.role,
      a: agentId,
      c: channel,
      ...(principal.scopes === undefined ? {} : { s: [...principal.scopes] }),
      ...(principal.expiresAtMs === undefined ? {} : { e: principal.expiresAtMs }),
      ...(claims === undefined && principal.credentialId !== undefined ? { k: principal.credentialId } : {}),
      ...(claims === undefined ? {} : { t: claims }),
    };
    const expiresAtMs = this.#now() + this.#ttlMs;
    await this.#store.put(keyOf(ticket), JSON.stringify(record), this.#ttlMs);
    return { ticket, expires_at: new Date(expiresAtMs).toISOString() };
  }

  /**
   * Consumes `ticket` for `channel`: the principal it carries (`via: 'ticket'`, `credentialId`
   * the ticket's id, `expiresAtMs` the underlying credential's expiry) and the agent it is for.
   * Malformed, unknown, used, expired or for another channel: `unauthorized`. The caller
   * compares the agent and rechecks the underlying credential.
   */
  async consume(ticket: string, channel: TicketChannel): Promise<ConsumedTicket> {
    if (ticket.length !== TICKET_LENGTH || !TICKET_PATTERN.test(ticket)) throw refused('invalid ticket');
    const key = keyOf(ticket);
    const stored = await this.#store.take(key);
    if (stored === null) throw refused('ticket unknown, expired or already used');
    const record = JSON.parse(stored) as TicketRecord;
    if (record.c !== channel) throw refused('ticket is for another channel');
    const scopes = record.s?.filter(isScope) as Scope[] | undefined;
    const principal: Principal = Object.freeze({
      username: record.u,
      role: record.r,
      via: 'ticket' as const,
      credentialId: idOf(key),
      ...(scopes === undefined ? {} : { scopes: Object.freeze(scopes) }),
      ...(record.e === undefined ? {} : { expiresAtMs: record.e }),
    });
    if (record.e !== undefined && record.e <= this.#now()) throw refused('the credential behind this ticket has expired');
    return { principal, agentId: record.a, ...(record.t === undefined ? {} : { claims: record.t }) };
  }
}
