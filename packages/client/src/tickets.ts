/**
 * `client.tickets`: one-time WebSocket tickets, for opening an agent's chat or events socket
 * with `?ticket=` instead of a credential (valid 30 s, single use, one agent and channel).
 */
import { signalOf, type CallOptions, type TransportHolder } from './call.js';
import type { TicketChannel, WsTicket } from './models.js';

export class TicketsApi {
  readonly #holder: TransportHolder;

  constructor(holder: TransportHolder) {
    this.#holder = holder;
  }

  /** A ticket for the `chat` or `events` socket of one agent (id, prefix or name). */
  create(agentId: string, channel: TicketChannel, options: CallOptions = {}): Promise<WsTicket> {
    return this.#holder.transport.request<WsTicket>('POST', '/v1/ws-tickets', { body: { agent_id: agentId, channel }, ...signalOf(options) });
  }
}
