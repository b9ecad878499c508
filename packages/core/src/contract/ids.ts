/** Generated identifiers of the chat protocol: a readable prefix and 64 random bits (96 for runs). */
import { randomFillSync } from 'node:crypto';

/**
 * Client-supplied ids (`message_id`, `request_id`): letters, digits and `_ . : -`, 1-128
 * characters. Generated ids match it too, so a client can `cancel` by an id the server made.
 */
export const CLIENT_ID_PATTERN = '^[A-Za-z0-9_.:-]{1,128}$';

// Random bytes are drawn 4 KiB at a time: a call to the CSPRNG per id cost ≈ 5 µs, and every
// chat turn makes one or two ids (measured: 3% of a turn's CPU under 100 chatting sockets).
const POOL_BYTES = 4096;
const ID_BYTES = 8;
let pool = Buffer.alloc(0);
let poolOffset = 0;

function randomHex(bytes: number = ID_BYTES): string {
  if (poolOffset + bytes > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafe(POOL_BYTES));
    poolOffset = 0;
  }
  const hex = pool.toString('hex', poolOffset, poolOffset + bytes);
  poolOffset += bytes;
  return hex;
}

function randomId(prefix: string): string {
  return `${prefix}_${randomHex()}`;
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

/** The random part of a run id: 48 bits after the 48-bit time (runs are looked up with their owner checked). */
const RUN_ID_RANDOM_BYTES = 6;

/**
 * `run_<24 hex>`: one run (a turn as a resource, runs/types.ts). The first 12 hex digits are
 * the creation time in ms, like a UUIDv7: a run's rows and its frames' (keyed by run id) then
 * go to the right edge of their B-trees instead of a random page each (measured with SQLite: a
 * random id made journaling a turn's frames cost about twice the pages, and CPU, per commit).
 */
export function newRunId(nowMs: number = Date.now()): string {
  return `run_${Math.max(0, Math.floor(nowMs)).toString(16).padStart(12, '0').slice(-12)}${randomHex(RUN_ID_RANDOM_BYTES)}`;
}

/** `apr_<16 hex>`: one tool call waiting for a person's approval (a `tool_approval_required` request). */
export function newApprovalRequestId(): string {
  return randomId('apr');
}
