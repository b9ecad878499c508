/** Generated identifiers of the chat protocol: a readable prefix and 64 random bits. */
import { randomBytes } from 'node:crypto';

/**
 * Client-supplied ids (`message_id`, `request_id`): letters, digits and `_ . : -`, 1-128
 * characters. Generated ids match it too, so a client can `cancel` by an id the server made.
 */
export const CLIENT_ID_PATTERN = '^[A-Za-z0-9_.:-]{1,128}$';

function randomId(prefix: string): string {
  return `${prefix}_${randomBytes(8).toString('hex')}`;
}

/** `msg_<16 hex>`: a message the client sent without a `message_id`. */
export function newMessageId(): string {
  return randomId('msg');
}

/** `resp_<16 hex>`: the agent's response to one message. */
export function newResponseId(): string {
  return randomId('resp');
}

/** `req_<16 hex>`: a `tool_request` sent without a `request_id`. */
export function newRequestId(): string {
  return randomId('req');
}
