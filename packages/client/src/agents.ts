/**
 * `client.agents`: create, inspect, start, stop and delete agents, and read their logs. Every
 * reference may be an id, a unique id prefix or a name (the server resolves it).
 */
import { segment, signalOf, type CallOptions, type TransportHolder } from './call.js';
import { agentLogs, followAgentLogs, type LogsQuery } from './logs.js';
import type { Agent, CreateAgentInput, LogRecord } from './models.js';

export class AgentsApi {
  readonly #holder: TransportHolder;

  constructor(holder: TransportHolder) {
    this.#holder = holder;
  }

  /** Your agents (every agent, for an admin). */
  async list(options: CallOptions = {}): Promise<Agent[]> {
    const answer = await this.#holder.transport.request<{ agents: Agent[] }>('GET', '/v1/agents', signalOf(options));
    return answer.agents;
  }

  /** One agent; 404 `not_found` when there is none you may see, 409 `conflict` for an ambiguous prefix. */
  get(id: string, options: CallOptions = {}): Promise<Agent> {
    return this.#holder.transport.request<Agent>('GET', `/v1/agents/${segment(id)}`, signalOf(options));
  }

  /** Creates and starts an agent from an image (`warnings` says what would keep it from running). */
  create(input: CreateAgentInput, options: CallOptions = {}): Promise<Agent> {
    return this.#holder.transport.request<Agent>('POST', '/v1/agents', { body: input, ...signalOf(options) });
  }

  /** Stops and deletes an agent. */
  async delete(id: string, options: CallOptions = {}): Promise<void> {
    await this.#holder.transport.request<void>('DELETE', `/v1/agents/${segment(id)}`, signalOf(options));
  }

  /** Starts a stopped agent (idempotent). */
  start(id: string, options: CallOptions = {}): Promise<Agent> {
    return this.#holder.transport.request<Agent>('POST', `/v1/agents/${segment(id)}/start`, signalOf(options));
  }

  /** Stops an agent: its turns end and new messages are refused until it is started (idempotent). */
  stop(id: string, options: CallOptions = {}): Promise<Agent> {
    return this.#holder.transport.request<Agent>('POST', `/v1/agents/${segment(id)}/stop`, signalOf(options));
  }

  /** The log lines kept so far, oldest first (`since`, `tail`, `level` filter them). */
  logs(id: string, options: LogsQuery & CallOptions = {}): Promise<LogRecord[]> {
    return agentLogs(this.#holder, id, options);
  }

  /**
   * The log lines, then each new one as it is written: `for await (const line of
   * client.agents.followLogs(id, {signal}))`. Ends on `break` or abort.
   */
  followLogs(id: string, options: LogsQuery & CallOptions = {}): AsyncGenerator<LogRecord, void, undefined> {
    return followAgentLogs(this.#holder, id, options);
  }
}
