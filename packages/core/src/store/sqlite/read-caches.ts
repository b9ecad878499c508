/**
 * The SQLite store's read caches: what the hot paths (dashboards listing agents, every chat
 * turn reading its agent and history and appending six rows) would otherwise ask SQLite for.
 * They are exact, not eventually consistent: the store's own writes update or drop entries
 * inside their commit, and anything else (another process's commit, seen through
 * `PRAGMA data_version`; a failed COMMIT; a user's deletion) empties them all.
 */
import type { AgentRecord, MessageRecord } from '../../contract/models.js';
import { toAgent, type AgentRow } from '../rows.js';

/** Key of the every-agent list in the agent-list cache (owners are user names, never empty). */
export const ALL_AGENTS = '';
/** Owners whose agent lists are cached at once. */
const AGENT_LIST_CACHE_SIZE = 1024;
/** Agents whose next log, event and message seq numbers are known at once. */
const NEXT_SEQ_CACHE_AGENTS = 4096;
/** Agent records cached by id at once. */
const AGENT_CACHE_SIZE = 4096;
/** Agents whose recent conversation is cached at once. */
const CONVERSATION_CACHE_AGENTS = 256;
/** Newest messages kept per cached conversation (the runtime reads 100 by default). */
const CONVERSATION_CACHE_MESSAGES = 200;
/** Characters of content kept per cached conversation, at most. */
const CONVERSATION_CACHE_CHARS = 256 * 1024;

/** The newest messages of one agent, oldest first; `complete` when they are all it has. */
interface CachedConversation {
  messages: MessageRecord[];
  chars: number;
  complete: boolean;
}

/** Freezes `value` and everything reachable from it (records shared between callers must not change). */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** One SQLite store's read caches (see the file comment). Records in them are frozen. */
export class SqliteReadCaches {
  /**
   * Agent lists by owner (ALL_AGENTS: every agent), as last read. Listing agents is what
   * dashboards poll, and the query is most of a list request's cost (≈ 40% of the bare node:http
   * baseline's CPU for 50 agents, measured here). Valid while nothing changed the agents table:
   * our own writes to it clear the cache, and `PRAGMA data_version` tells us another process
   * committed (see {@link check}).
   */
  readonly agentLists = new Map<string, readonly AgentRecord[]>();
  /**
   * Agent records by id, frozen, as last read or written: every chat turn reads its agent
   * (status, image, parameters) before it starts (≈ 2% of a turn's CPU as a query). Kept exact
   * like agentLists: our own writes to an agent replace or drop its entry inside their commit,
   * anything else (another process, a failed commit, a user's deletion) empties the cache.
   */
  readonly agents = new Map<string, AgentRecord>();
  /**
   * The next seq of each agent's logs, events and messages, as our own appends left them. A
   * turn appends six rows, five of which asked SQLite for MAX(seq) first. Only used inside the
   * group commit's transaction, after its data_version check (so no other connection can have
   * appended since); set after a write succeeded, dropped with the agent, emptied with the
   * other caches (another process's commit, a failed COMMIT).
   */
  readonly nextSeqs = { logs: new Map<string, number>(), events: new Map<string, number>(), messages: new Map<string, number>() };
  /**
   * The newest messages of recently active agents. Every turn reads the agent's history (up to
   * 100 messages by default) and appends to it; reading it back from SQLite was the largest
   * single cost of a chat turn here (≈ 20% of the server's CPU under 100 chatting sockets).
   * Our own appends extend an entry inside their commit; anything else that changes messages
   * (a delete, another process) drops it. Bounded per agent and in agents (see the constants).
   */
  readonly #conversations = new Map<string, CachedConversation>();
  /** `PRAGMA data_version` when the caches above were last known valid. */
  #dataVersion = -1;

  /** Empties the caches when `dataVersion` (`PRAGMA data_version`) says another connection committed since they were filled. */
  check(dataVersion: number): void {
    if (dataVersion !== this.#dataVersion) {
      this.clear();
      this.#dataVersion = dataVersion;
    }
  }

  /** Empties every cache. */
  clear(): void {
    this.agentLists.clear();
    this.agents.clear();
    this.nextSeqs.logs.clear();
    this.nextSeqs.events.clear();
    this.nextSeqs.messages.clear();
    this.#conversations.clear();
  }

  /** Drops what is cached about a deleted agent: its delete trigger removed its rows, so numbering would restart. */
  forgetAgent(id: string): void {
    this.agentLists.clear();
    this.agents.delete(id);
    this.#conversations.delete(id);
    this.nextSeqs.logs.delete(id);
    this.nextSeqs.events.delete(id);
    this.nextSeqs.messages.delete(id);
  }

  /** Caches the list of `key`'s agents (bounded: past the bound the oldest list is dropped, a miss only costs the query). */
  putAgentList(key: string, records: readonly AgentRecord[]): void {
    if (this.agentLists.size >= AGENT_LIST_CACHE_SIZE) this.agentLists.delete(this.agentLists.keys().next().value as string);
    this.agentLists.set(key, records);
  }

  /** Freezes and caches the agent read or written as `row` (bounded: past it, the oldest entry goes). */
  cacheAgent(id: string, row: AgentRow): AgentRecord {
    return this.putAgent(id, deepFreeze(toAgent(row)));
  }

  /** Caches `record` (frozen, nested values included) as the agent's current row, and returns it. */
  putAgent(id: string, record: AgentRecord): AgentRecord {
    if (this.agents.size >= AGENT_CACHE_SIZE && !this.agents.has(id)) this.agents.delete(this.agents.keys().next().value as string);
    this.agents.set(id, record);
    return record;
  }

  /** Records `next` as the agent's next seq (bounded: past the bound an arbitrary old entry goes, a miss only costs the query). */
  rememberNextSeq(known: Map<string, number>, agentId: string, next: number): void {
    if (known.size >= NEXT_SEQ_CACHE_AGENTS) known.delete(known.keys().next().value as string);
    known.set(agentId, next);
  }

  /**
   * The agent's newest `limit` messages (all of them when `limit` is undefined), oldest first,
   * when the cache holds that many; undefined when the database must be asked.
   */
  recentMessages(agentId: string, limit: number | undefined): MessageRecord[] | undefined {
    const cached = this.#conversations.get(agentId);
    if (cached === undefined || !(cached.complete || (limit !== undefined && cached.messages.length >= limit))) return undefined;
    // Most recently used last, so the bound evicts the agent that chatted longest ago.
    this.#conversations.delete(agentId);
    this.#conversations.set(agentId, cached);
    const { messages } = cached;
    return limit === undefined || limit >= messages.length ? messages.slice() : messages.slice(messages.length - limit);
  }

  /**
   * Caches the newest messages of an agent as just read (frozen), unless they are past the
   * per-agent bounds; `complete` when they are the whole conversation.
   */
  putConversation(agentId: string, messages: readonly MessageRecord[], complete: boolean): void {
    const chars = messages.reduce((sum, m) => sum + m.content.length, 0);
    if (messages.length > CONVERSATION_CACHE_MESSAGES || chars > CONVERSATION_CACHE_CHARS) return;
    if (this.#conversations.size >= CONVERSATION_CACHE_AGENTS) this.#conversations.delete(this.#conversations.keys().next().value as string);
    this.#conversations.set(agentId, { messages: messages.slice(), chars, complete });
  }

  /** Adds messages our own commit just stored to the agent's cached conversation, if it has one. */
  extendConversation(agentId: string, added: readonly MessageRecord[]): void {
    const cached = this.#conversations.get(agentId);
    if (cached === undefined) return;
    for (const message of added) {
      cached.messages.push(message);
      cached.chars += message.content.length;
    }
    // Keep the newest: what falls off the front means the entry no longer holds everything.
    while (cached.messages.length > CONVERSATION_CACHE_MESSAGES || cached.chars > CONVERSATION_CACHE_CHARS) {
      const dropped = cached.messages.shift();
      if (dropped === undefined) break;
      cached.chars -= dropped.content.length;
      cached.complete = false;
    }
  }
}
