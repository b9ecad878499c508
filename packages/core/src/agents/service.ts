/**
 * Agents: instances of images, owned by the user who created them (docs/ARCHITECTURE.md#auth-and-tenancy). A user sees
 * and touches only their own agents (another user's is a 404, so IDs reveal nothing); admins
 * see all. Every status change is stored, logged and announced as an `agent_status` event.
 *
 * Every method takes an agent reference the way Docker takes a container: the full id, the
 * agent's name, or a unique prefix of its id, within the agents the principal may see. An exact
 * id wins over a name, a name over a prefix; an ambiguous one is a `conflict` listing the matches.
 */
import { randomBytes } from 'node:crypto';
import { conflict, invalidRequest, isSentinelError, notFound, SentinelError } from '../contract/errors.js';
import type { Logger, LogLevel } from '../contract/logger.js';
import { silentLogger } from '../contract/logger.js';
import type { AgentDefinition, AgentRecord, AgentResource, AgentStatus, LogRecord, Principal } from '../contract/models.js';
import type { ImageService } from '../images/service.js';
import { imageDefinition, parseImageReference, SHORT_ID_LENGTH } from '../images/service.js';
import type { AgentJournal } from '../journal.js';
import { PreparedJsonCache } from '../routes/prepared-json.js';
import type { PreparedJson, RequestOrigin } from '../contract/route.js';
import type { Store } from '../store/types.js';
import { parseLogSince } from './log-query.js';
import { CHAT_ENDPOINT, endpointUrl, EVENTS_ENDPOINT } from '../protocol/endpoints.js';
import { checkWebhookUrl, type WebhookAddressPolicy } from '../webhooks/url.js';

export interface CreateAgentInput {
  /** Image reference: ID, short ID, `name:tag` or `name`. */
  image: string;
  /** Default `<last path part of the image name>-<first 6 of the id>`. */
  name?: string;
  /** Model parameters layered over the image's `model.parameters`. Default none. */
  parameters?: Record<string, unknown>;
  /** Environment variables for tools; only their names are ever returned. Default none. */
  environment?: Record<string, string>;
  /** Default webhook URL of the agent's runs (a run's own wins), checked against the webhook address policy. Default none. */
  webhook?: string;
}

export interface AgentLogsQuery {
  /** RFC 3339, unix seconds, or a duration back from now (`10m`). Default: from the start. */
  since?: string;
  /** Last N lines, or 'all'. Default 'all'. */
  tail?: number | 'all';
  /** Minimum level. Default: every level. */
  level?: LogLevel;
  /** Only lines with a seq above this (a follower catching up). Default: no bound. */
  afterSeq?: number;
}

/**
 * What the agent service needs from the runtime that runs turns (implemented by AgentRuntime):
 * stop and delete end the agent's turns before the status changes or the rows go.
 */
export interface AgentTurnControl {
  /** Refuses new turns and aborts the agent's turns with reason `stopped`; resolves when they settled. */
  stop(agentId: string): Promise<void>;
  /** Accepts turns again. */
  start(agentId: string): void;
  /** Aborts the agent's turns with reason `deleted` and refuses new ones; resolves when they settled. */
  remove(agentId: string): Promise<void>;
  /** Called once the agent's rows are gone (or the delete failed): the runtime drops its state. */
  forget(agentId: string): void;
}

export interface AgentServiceOptions {
  store: Store;
  images: ImageService;
  journal: AgentJournal;
  /** The runtime whose turns stop/start/delete control. Default none (no turns to end). */
  runtime?: AgentTurnControl;
  /** Default: silent. */
  logger?: Logger;
  /** Clock for timestamps and relative `since`. Default `Date.now`. */
  now?: () => number;
  /** Refuses (`quota_exceeded`) an agent beyond its owner's quota. Default none (unlimited). */
  quota?: { checkNewAgent(owner: string): Promise<void> };
  /** Where an agent's default webhook may point (webhooks/url.ts). Default: public addresses only. */
  webhookPolicy?: WebhookAddressPolicy;
}

/** Agent names: unicode letters and digits, space, `._-`, starting with a letter or digit. */
export const AGENT_NAME_PATTERN = '^[\\p{L}\\p{N}][\\p{L}\\p{N} ._-]{0,63}$';
const AGENT_NAME_RE = new RegExp(AGENT_NAME_PATTERN, 'u');

/** Longest default-name stem, so `<stem>-<6 hex>` fits the 64-character name limit. */
const MAX_NAME_STEM = 57;

/** Matches listed in the `details` of an ambiguous agent reference, at most. */
const MAX_LISTED_MATCHES = 20;
/** Image definitions kept for `runnable` (images are immutable, so entries never go stale). */
const DEFINITION_CACHE_SIZE = 256;
const HEX_RE = /^[0-9a-f]+$/;
/** Longest agent reference looked up, in UTF-16 units: ids and names are at most 64 characters (a name's may take two units each). */
const MAX_REFERENCE_LENGTH = 128;

/** Whether the server can run an agent now; see {@link AgentResource.runnable}. */
export interface AgentRunStatus {
  runnable: boolean;
  reason?: string;
}

/** The API shape of an agent (docs/ARCHITECTURE.md#wire-shapes). Environment values never leave the server. `run` default: runnable. */
export function toAgentResource(record: AgentRecord, origin: RequestOrigin, run: AgentRunStatus = { runnable: true }): AgentResource {
  const endpointParams = { id: record.id };
  return {
    id: record.id,
    name: record.name,
    image: record.image,
    image_id: record.image_id,
    status: record.status,
    created_at: record.created_at,
    updated_at: record.updated_at,
    model: record.model,
    owner: record.owner,
    parameters: record.parameters,
    environment: Object.keys(record.environment).sort(),
    api_usage: { requests: record.usage_requests, tokens: record.usage_tokens },
    endpoints: { chat: endpointUrl(CHAT_ENDPOINT, endpointParams, origin), events: endpointUrl(EVENTS_ENDPOINT, endpointParams, origin) },
    runnable: run.runnable,
    ...(run.reason === undefined ? {} : { reason: run.reason }),
  };
}

function ambiguous(ref: string, matches: readonly AgentRecord[], how: 'name' | 'id prefix'): SentinelError {
  const listed = matches.slice(0, MAX_LISTED_MATCHES).map((a) => ({ id: a.id, name: a.name, owner: a.owner }));
  const count = matches.length > MAX_LISTED_MATCHES ? `more than ${MAX_LISTED_MATCHES}` : String(matches.length);
  const hint = how === 'name' ? 'use the id' : 'give more of the id';
  return conflict(`agent reference "${ref}" is ambiguous: ${count} agents match by ${how}; ${hint}`, { details: { matches: listed } });
}

function statusContent(name: string, status: AgentStatus): string {
  switch (status) {
    case 'created':
      return `Agent ${name} was created`;
    case 'running':
      return `Agent ${name} is running`;
    case 'stopped':
      return `Agent ${name} stopped`;
    case 'error':
      return `Agent ${name} failed`;
  }
}

export class AgentService {
  private readonly store: Store;
  private readonly images: ImageService;
  private readonly journal: AgentJournal;
  private readonly runtime: AgentTurnControl | undefined;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly quota: { checkNewAgent(owner: string): Promise<void> } | undefined;
  private readonly webhookPolicy: WebhookAddressPolicy;
  private readonly definitions = new Map<string, Pick<AgentDefinition, 'model' | 'tools'>>();
  /** `GET /v1/agents` bodies by (owner view, origin); see {@link listJson}. */
  private readonly listBodies = new PreparedJsonCache();

  constructor(options: AgentServiceOptions) {
    this.store = options.store;
    this.images = options.images;
    this.journal = options.journal;
    this.runtime = options.runtime;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.quota = options.quota;
    this.webhookPolicy = options.webhookPolicy ?? {};
  }

  private timestamp(): string {
    return new Date(this.now()).toISOString();
  }

  /**
   * The agent `ref` names among those the principal may see (see the module comment):
   * `not_found` when none (never `forbidden`), `conflict` with the matches in `details` when a
   * name or an id prefix fits several. An admin's own agent wins over other users' of the same name.
   */
  private async visibleRecord(principal: Principal, ref: string): Promise<AgentRecord> {
    // Ids and names are at most 64 characters: anything longer names nothing (and costs no lookup).
    if (ref.length === 0 || ref.length > MAX_REFERENCE_LENGTH) throw notFound('agent', ref.slice(0, 80));
    const exact = await this.store.getAgent(ref);
    if (exact && (principal.role === 'admin' || exact.owner === principal.username)) return exact;
    const owner = principal.role === 'admin' ? {} : { owner: principal.username };
    const named = await this.store.findAgents({ ...owner, name: ref, limit: MAX_LISTED_MATCHES + 1 });
    const [onlyNamed] = named;
    if (named.length === 1 && onlyNamed) return onlyNamed;
    if (named.length > 1) {
      const own = named.filter((a) => a.owner === principal.username);
      if (own.length === 1 && own[0]) return own[0];
      throw ambiguous(ref, named, 'name');
    }
    // Generated ids are hex: anything else cannot be a prefix of one.
    if (HEX_RE.test(ref)) {
      const prefixed = await this.store.findAgents({ ...owner, idPrefix: ref, limit: MAX_LISTED_MATCHES + 1 });
      const [onlyPrefixed] = prefixed;
      if (prefixed.length === 1 && onlyPrefixed) return onlyPrefixed;
      if (prefixed.length > 1) throw ambiguous(ref, prefixed, 'id prefix');
    }
    throw notFound('agent', ref);
  }

  /** The provider and tools of an image, cached by digest. */
  private async definitionOf(digest: string): Promise<Pick<AgentDefinition, 'model' | 'tools'> | undefined> {
    const cached = this.definitions.get(digest);
    if (cached) return cached;
    const image = await this.store.getImage(digest);
    if (!image) return undefined;
    const { model, tools } = imageDefinition(image);
    if (this.definitions.size >= DEFINITION_CACHE_SIZE) {
      const oldest = this.definitions.keys().next().value;
      if (oldest !== undefined) this.definitions.delete(oldest);
    }
    this.definitions.set(digest, { model, tools });
    return { model, tools };
  }

  /**
   * Whether this server can run the agent's image as it is configured now (the live provider and
   * tool sets: an embedding app may register more later), and why not.
   */
  private async runStatus(record: AgentRecord): Promise<AgentRunStatus> {
    const def = await this.definitionOf(record.image_id);
    if (!def) return { runnable: false, reason: `image ${record.image_id} is missing` };
    const problems = this.images.runProblems(def);
    return problems.length === 0 ? { runnable: true } : { runnable: false, reason: problems.join('; ') };
  }

  private async resource(record: AgentRecord, origin: RequestOrigin): Promise<AgentResource> {
    return toAgentResource(record, origin, await this.runStatus(record));
  }

  private async announceStatus(record: AgentRecord): Promise<void> {
    await this.journal.event(record.id, 'agent_status', statusContent(record.name, record.status), {
      agent_id: record.id,
      status: record.status,
      memory: null,
      api_usage: { requests: record.usage_requests, tokens: record.usage_tokens },
    });
  }

  private async setStatus(record: AgentRecord, status: AgentStatus): Promise<AgentRecord> {
    const updated = await this.store.updateAgent(record.id, { status, updated_at: this.timestamp() });
    if (!updated) throw notFound('agent', record.id);
    return updated;
  }

  /**
   * Creates an agent from an image and starts it. Unknown image → `not_found` naming it;
   * a name the owner already uses → `conflict`.
   */
  async create(principal: Principal, input: CreateAgentInput, origin: RequestOrigin): Promise<AgentResource> {
    // The route validates too; this guards the other callers (CLI, embedding apps).
    if (input.name !== undefined && !AGENT_NAME_RE.test(input.name)) {
      throw invalidRequest('invalid agent name: 1-64 letters, digits, spaces or ._- starting with a letter or digit');
    }
    const ref = parseImageReference(input.image);
    // Before anything is written: a refused URL leaves no agent behind.
    const webhook = input.webhook === undefined ? undefined : (await checkWebhookUrl(input.webhook, this.webhookPolicy)).url;
    // Agents that exist count, whatever their status: a stopped one can start at any moment.
    // Two creates racing may both pass; the quota is a budget, not a lock.
    await this.quota?.checkNewAgent(principal.username);
    // As the principal may see it: another user's private image is a 404, like a missing one.
    const image = await this.images.resolve(input.image, principal);
    const def = imageDefinition(image);
    const shortId = image.digest.slice('sha256:'.length, 'sha256:'.length + SHORT_ID_LENGTH);
    // Record what the client meant: the tag it named, else the image's own first tag.
    const imageRef = ref.kind === 'tag' ? ref.nameTag : (image.tags[0] ?? image.digest);
    const id = randomBytes(8).toString('hex');
    const stem = (def.name.split('/').pop() ?? def.name).slice(0, MAX_NAME_STEM);
    const name = input.name ?? `${stem}-${id.slice(0, 6)}`;
    const createdAt = this.timestamp();
    let record: AgentRecord = {
      id,
      name,
      owner: principal.username,
      image: imageRef,
      image_id: image.digest,
      status: 'created',
      model: `${def.model.provider}/${def.model.name}`,
      // Stored merged: the agent shows (and later runs with) its effective parameters, and
      // the image it pins never changes underneath it.
      parameters: { ...def.model.parameters, ...(input.parameters ?? {}) },
      environment: { ...(input.environment ?? {}) },
      usage_requests: 0,
      usage_tokens: 0,
      created_at: createdAt,
      updated_at: createdAt,
    };
    // The Store enforces (owner, name) uniqueness atomically, across instances too: `conflict`.
    try {
      await this.store.createAgent(record);
    } catch (err) {
      // Six hex digits collide by the birthday bound after a few thousand unnamed agents of one
      // owner; a generated name must never refuse the request, so fall back to the whole id
      // (as unique as the id itself, and still within the 64-character limit).
      if (input.name !== undefined || !isSentinelError(err) || err.code !== 'conflict') throw err;
      record = { ...record, name: `${stem.slice(0, 64 - 1 - id.length)}-${id}` };
      await this.store.createAgent(record);
    }
    if (webhook !== undefined) await this.store.setAgentWebhook(id, webhook);
    // Issued together, each group shares one commit of the Store (SqliteStore's group commit):
    // three commits per new agent instead of six. The status events still come out in order.
    const [, , running] = await Promise.all([
      this.journal.log(id, 'info', `agent created from image ${imageRef} (${shortId})`, { image_id: image.digest }),
      this.announceStatus(record),
      this.setStatus(record, 'running'),
    ]);
    await Promise.all([this.journal.log(id, 'info', 'agent started'), this.announceStatus(running)]);
    this.logger.info('agent created', { agent_id: id, owner: principal.username, image: imageRef });
    // Created even so: the server may be configured (or the tool registered) later.
    const warnings = this.images.runProblems(def);
    if (warnings.length > 0) await this.journal.log(id, 'warn', `agent cannot run yet: ${warnings.join('; ')}`, { warnings });
    const run = warnings.length === 0 ? { runnable: true } : { runnable: false, reason: warnings.join('; ') };
    return { ...toAgentResource(running, origin, run), warnings, ...(webhook === undefined ? {} : { webhook }) };
  }

  /** The principal's agents (every agent for an admin), newest first. */
  async list(principal: Principal, origin: RequestOrigin): Promise<AgentResource[]> {
    const records = await this.store.listAgents(principal.role === 'admin' ? {} : { owner: principal.username });
    return Promise.all(records.map((r) => this.resource(r, origin)));
  }

  /**
   * {@link list} as `{"agents": [...]}` bytes with a strong ETag, built once per version of the
   * view: reused while the Store returns the same frozen records (SqliteStore does until
   * anything changes the agents, here or in another process) and every agent's `runnable` is
   * unchanged (it follows the live provider and tool sets), rebuilt otherwise. The key holds
   * the owner view and the origin, so one user's bytes are never another's.
   */
  async listJson(principal: Principal, origin: RequestOrigin): Promise<PreparedJson> {
    const admin = principal.role === 'admin';
    const records = await this.store.listAgents(admin ? {} : { owner: principal.username });
    const statuses = await Promise.all(records.map((r) => this.runStatus(r)));
    // Owner names cannot contain a space; '*' is the admin's every-agent view. The reasons of
    // unrunnable agents are part of the body, so they are part of the key.
    const unrunnable = statuses.some((s) => !s.runnable) ? ` ${JSON.stringify(statuses.map((s) => s.reason ?? ''))}` : '';
    const key = `${admin ? '*' : `u:${principal.username}`} ${origin.secure ? 'wss' : 'ws'} ${origin.host}${unrunnable}`;
    return this.listBodies.get(key, records, () => ({ agents: records.map((r, i) => toAgentResource(r, origin, statuses[i])) }));
  }

  /** One agent by reference (id, name or id prefix); `not_found` when unknown or not visible to the principal. */
  async get(principal: Principal, ref: string, origin: RequestOrigin): Promise<AgentResource> {
    const record = await this.visibleRecord(principal, ref);
    const [resource, webhook] = await Promise.all([this.resource(record, origin), this.store.getAgentWebhook(record.id)]);
    return webhook === null ? resource : { ...resource, webhook };
  }

  /**
   * The stored record (for other services: runtime, streams) by reference, with the same
   * visibility rule. Callers go on with `record.id`, never with the reference.
   */
  async getRecord(principal: Principal, ref: string): Promise<AgentRecord> {
    return this.visibleRecord(principal, ref);
  }

  /**
   * Stops the agent: new messages are refused (`conflict`), its turns end with reason
   * `stopped`, then the status is stored, logged and announced. Idempotent: an agent already
   * stopped is returned as is.
   */
  async stop(principal: Principal, ref: string, origin: RequestOrigin): Promise<AgentResource> {
    const record = await this.visibleRecord(principal, ref);
    const { id } = record;
    // Turns first: once the status says stopped, nothing of the agent runs any more.
    await this.runtime?.stop(id);
    if (record.status === 'stopped') return this.resource(record, origin);
    const stopped = await this.setStatus(record, 'stopped');
    await this.journal.log(id, 'info', 'agent stopped');
    await this.announceStatus(stopped);
    this.logger.info('agent stopped', { agent_id: id, by: principal.username });
    return this.resource(stopped, origin);
  }

  /**
   * Starts a stopped (or failed) agent: the status is stored, logged and announced, then it
   * accepts messages again. Idempotent: a running agent is returned as is.
   */
  async start(principal: Principal, ref: string, origin: RequestOrigin): Promise<AgentResource> {
    const record = await this.visibleRecord(principal, ref);
    const { id } = record;
    if (record.status === 'running') {
      this.runtime?.start(id);
      return this.resource(record, origin);
    }
    // Status first: a turn checks the stored status when it begins.
    const running = await this.setStatus(record, 'running');
    this.runtime?.start(id);
    await this.journal.log(id, 'info', 'agent started');
    await this.announceStatus(running);
    this.logger.info('agent started', { agent_id: id, by: principal.username });
    return this.resource(running, origin);
  }

  /**
   * Ends the agent's turns (reason `deleted`), stops it (status, log line and event reach live
   * subscribers), then deletes it with its logs, events and messages, then tells subscribers it
   * is gone. Returns the record as it was (the audit log names the owner).
   */
  async delete(principal: Principal, ref: string): Promise<AgentRecord> {
    const record = await this.visibleRecord(principal, ref);
    const { id } = record;
    await this.runtime?.remove(id);
    try {
      if (record.status !== 'stopped') {
        const stopped = await this.setStatus(record, 'stopped');
        await this.journal.log(id, 'info', 'agent stopped');
        await this.announceStatus(stopped);
      }
      await this.store.deleteAgent(id);
      this.journal.announceDeleted(id);
    } finally {
      this.runtime?.forget(id);
    }
    this.logger.info('agent deleted', { agent_id: id, by: principal.username });
    return record;
  }

  /** Log lines like `docker logs`: oldest first, filtered by since / tail / minimum level. */
  async logs(principal: Principal, ref: string, query: AgentLogsQuery = {}): Promise<LogRecord[]> {
    // Parse first: a malformed query is a 400 whoever asks.
    const since = query.since === undefined ? undefined : parseLogSince(query.since, this.now());
    if (query.tail !== undefined && query.tail !== 'all' && (!Number.isInteger(query.tail) || query.tail < 0)) {
      throw invalidRequest('invalid "tail": use a non-negative integer or "all"');
    }
    const { id } = await this.visibleRecord(principal, ref);
    return this.store.listLogs(id, {
      ...(since === undefined ? {} : { since }),
      ...(query.tail === undefined || query.tail === 'all' ? {} : { tail: query.tail }),
      ...(query.level === undefined ? {} : { level: query.level }),
      ...(query.afterSeq === undefined ? {} : { afterSeq: query.afterSeq }),
    });
  }
}
