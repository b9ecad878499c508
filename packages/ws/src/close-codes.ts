/**
 * WebSocket close codes (RFC 6455 §7.4.1) for the reasons the core gives when it ends a
 * stream. A `Record` over the core's `StreamCloseReason` union, so a new reason in the core
 * without a code here is a compile error, not a silent 1011.
 */
import { WEBSOCKET_CLOSE_CODES, type StreamCloseReason } from '@sentinel/api-core';

// The numbers come from the core's table, which the AsyncAPI document describes.
/** 1000: normal closure (the agent is gone; nothing is wrong with the connection). */
export const CLOSE_NORMAL = WEBSOCKET_CLOSE_CODES.normal.code;
/** 1001: going away (the server is shutting down). */
export const CLOSE_GOING_AWAY = WEBSOCKET_CLOSE_CODES.going_away.code;
/** 1008: policy violation (the consumer fell too far behind). */
export const CLOSE_POLICY_VIOLATION = WEBSOCKET_CLOSE_CODES.policy_violation.code;
/** 1011: internal error (a bug on our side while serving the socket). */
export const CLOSE_INTERNAL_ERROR = WEBSOCKET_CLOSE_CODES.internal_error.code;
/**
 * 4401 (private-use range, "401" as in HTTP): the socket's credential stopped being valid: its
 * token was logged out or revoked (revoke-tokens, password change or reset), its user was deleted
 * or disabled, its API key revoked, or the token, key or ticket's underlying credential expired.
 * Reconnect with a fresh credential.
 */
export const CLOSE_CREDENTIAL_REVOKED = WEBSOCKET_CLOSE_CODES.credential_revoked.code;

const CLOSE_CODE_BY_REASON: Record<StreamCloseReason, number> = {
  agent_deleted: CLOSE_NORMAL,
  shutdown: CLOSE_GOING_AWAY,
  too_slow: CLOSE_POLICY_VIOLATION,
};

/** The close code for a core stream close reason. */
export function closeCodeFor(reason: StreamCloseReason): number {
  return CLOSE_CODE_BY_REASON[reason] ?? CLOSE_INTERNAL_ERROR;
}

// A close frame's payload is at most 125 bytes, 2 of which are the code.
const MAX_CLOSE_REASON_BYTES = 123;

/**
 * Trims a close reason to what fits in a close frame without splitting a UTF-8 sequence
 * (ws throws on an over-long reason, which would turn a close into a crash).
 */
export function fitCloseReason(reason: string): string {
  if (Buffer.byteLength(reason) <= MAX_CLOSE_REASON_BYTES) return reason;
  let cut = reason.slice(0, MAX_CLOSE_REASON_BYTES);
  while (Buffer.byteLength(cut) > MAX_CLOSE_REASON_BYTES) cut = cut.slice(0, -1);
  return cut;
}
