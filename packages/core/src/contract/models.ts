/**
 * Records are what the Store keeps; resources are what the API returns (snake_case, the
 * original project's shapes plus ours, docs/ARCHITECTURE.md#wire-shapes). Conversions live next to the
 * services that own them.
 */
import type { LogLevel } from './logger.js';
import type { Scope } from './scopes.js';

export type Role = 'admin' | 'user';

export interface UserRecord {
  /**
   * Immutable, opaque id, generated when the user is created and never reused: a user deleted
   * and created again under the same name is another user, and tokens are bound to this id.
   */
  id: string;
  username: string;
  /** `scrypt$N$r$p$salt$hash` (base64url parts); never leaves the core. */
  password_hash: string;
  role: Role;
  /** Users allowed to push to the registry (admins always may). */
  can_push: boolean;
  /**
   * Tokens carry the version they were issued at and are refused once it is older than this.
   * Starts at 0; a password change or reset adds 1, revoking every token issued before it.
   */
  token_version: number;
  /**
   * A disabled account keeps its data but authenticates no more: its tokens and keys are
   * refused and it cannot log in, until an admin enables it again. Default false.
   */
  disabled: boolean;
  /** Model tokens (prompt + completion) the user's agents may use per UTC day; null = unlimited. */
  quota_tokens_per_day: number | null;
  /** Turns the user's agents may start per UTC day; null = unlimited. */
  quota_turns_per_day: number | null;
  /** Agents the user may own at once; null = unlimited. */
  quota_concurrent_agents: number | null;
  created_at: string;
  updated_at: string;
}

/** The fields of a user that are optional on creation (defaults: enabled, no quotas). */
export type UserDefaults = 'id' | 'token_version' | 'disabled' | 'quota_tokens_per_day' | 'quota_turns_per_day' | 'quota_concurrent_agents';

/** A user to create: the store generates `id` (random), starts `token_version` at 0, enabled and unlimited, when they are absent. */
export type NewUserRecord = Omit<UserRecord, UserDefaults> & Partial<Pick<UserRecord, UserDefaults>>;

/**
 * How a caller authenticated: a login session (a JWT from `POST /v1/auth/login`, or an OpenID
 * Connect token), an API key, or a one-time WebSocket ticket.
 */
export type CredentialKind = 'session' | 'key' | 'ticket';

/** Who a request acts as, after authentication. */
export interface Principal {
  username: string;
  role: Role;
  /**
   * The scopes this credential holds (contract/scopes.ts). Absent: every scope of `role`, as for
   * a login session. An API key's list is already cut to its owner's role.
   */
  scopes?: readonly Scope[];
  /** How the caller authenticated. Default (absent): `session`. */
  via?: CredentialKind;
  /**
   * The credential's own id (a token's `jti`, an API key's id, a ticket's id), so what revokes
   * that credential can find the sockets it opened. Default: none.
   */
  credentialId?: string;
  /** When the credential stops being valid (ms since the epoch), for sockets to close on time. Default: never. */
  expiresAtMs?: number;
}

export type AgentStatus = 'created' | 'running' | 'stopped' | 'error';

export interface AgentRecord {
  id: string;
  name: string;
  owner: string;
  /** The image reference the client asked for, as resolved (`name:tag`). */
  image: string;
  /** The image digest (`sha256:…`): the agent keeps running the exact image it was created from. */
  image_id: string;
  status: AgentStatus;
  /** Model as `provider/name`, copied from the image at creation. */
  model: string;
  parameters: Record<string, unknown>;
  environment: Record<string, string>;
  usage_requests: number;
  usage_tokens: number;
  created_at: string;
  updated_at: string;
}

/** The agent as the API returns it. */
export interface AgentResource {
  id: string;
  name: string;
  image: string;
  image_id: string;
  status: AgentStatus;
  created_at: string;
  updated_at: string;
  model: string;
  owner: string;
  parameters: Record<string, unknown>;
  /** Names of the environment variables set; values are never returned (they are often secrets). */
  environment: string[];
  api_usage: { requests: number; tokens: number };
  endpoints: { chat: string; events: string };
  /** False when this server cannot run the agent's image as it is configured now (see `reason`). */
  runnable: boolean;
  /** Why the agent cannot run; only when `runnable` is false. */
  reason?: string;
  /** What agent creation noticed (an unconfigured provider, an unknown tool); only on the create answer. */
  warnings?: string[];
}

/** The agent definition (a "Sentinelfile"), validated. It is the OCI config blob of an image. */
export interface AgentDefinition {
  name: string;
  tag: string;
  description: string;
  model: { provider: string; name: string; parameters: Record<string, unknown> };
  instructions: string;
  tools: string[];
  capabilities: string[];
  /** The tools of `tools` whose every call waits for a person's decision (Sentinelfile `approval: required`). Absent when none. */
  tool_approval?: string[];
}

export interface ImageRecord {
  /** `sha256:<64 hex>` of the manifest bytes: the image ID. */
  digest: string;
  /** The exact manifest bytes (UTF-8 JSON) whose sha256 is `digest`. */
  manifest: string;
  /** The exact config blob bytes (UTF-8 JSON): the agent definition. */
  config: string;
  config_digest: string;
  /** Sum of config and layer sizes, like `docker images` SIZE. */
  size: number;
  created_at: string;
  /** Tags pointing at this image (`name:tag`), filled in by list/get. */
  tags: string[];
}

export type RepositoryVisibility = 'public' | 'private';

/**
 * A repository: an image name without its tag. It belongs to the user who first created it
 * (or to its namespace's user, or to `sentinel` for the reserved namespace and for what
 * existed before ownership was recorded); only its owner or an admin may tag images in it.
 */
export interface RepositoryRecord {
  name: string;
  owner: string;
  visibility: RepositoryVisibility;
  created_at: string;
}

/** The image as the API returns it. */
export interface ImageResource {
  id: string;
  short_id: string;
  digest: string;
  name: string;
  tag: string;
  tags: string[];
  created_at: string;
  size: number;
  base_model: string;
  features: string[];
  description: string;
  model: { provider: string; name: string; parameters: Record<string, unknown> };
  tools: string[];
  /** The tools of `tools` whose calls wait for a person's approval; absent when none. */
  tool_approval?: string[];
  capabilities: string[];
  instructions: string;
  /** Owner of the repository of `name` (null for an untagged image). */
  owner: string | null;
  /** Visibility of the repository of `name` (null for an untagged image). */
  visibility: RepositoryVisibility | null;
}

export interface LogRecord {
  agent_id: string;
  seq: number;
  timestamp: string;
  level: LogLevel;
  message: string;
  fields?: Record<string, unknown>;
}

export type NewLogRecord = Omit<LogRecord, 'seq'>;

export interface EventRecord {
  agent_id: string;
  /** Monotonic per agent, from 1. */
  seq: number;
  event_type: string;
  timestamp: string;
  content: string;
  data: Record<string, unknown>;
}

export type NewEventRecord = Omit<EventRecord, 'seq'>;

/** A tool call the model made, as kept in the conversation history. */
export interface ToolCallRecord {
  /** The provider's call id (or one we generated), echoed back with the result. */
  id: string;
  name: string;
  arguments: Record<string, unknown>;
}

export type MessageRole = 'user' | 'assistant' | 'tool';

/** One message of an agent's conversation history (the system prompt is the image's, not stored here). */
export interface MessageRecord {
  agent_id: string;
  /** Monotonic per agent, from 1. */
  seq: number;
  role: MessageRole;
  content: string;
  /** Assistant messages that called tools. */
  tool_calls?: ToolCallRecord[];
  /** Tool messages: which call this answers, and the tool's name. */
  tool_call_id?: string;
  tool_name?: string;
  /** The client's message id for user messages (and the response id for assistant ones). */
  message_id?: string;
  created_at: string;
}

export type NewMessageRecord = Omit<MessageRecord, 'seq'>;
