/**
 * Error code → HTTP status. A `Record` over the core's `ErrorCode` union, so adding a code to
 * the core without mapping it here is a compile error, not a silent 500.
 */
import type { ErrorCode } from '@sentinel/api-core';

const HTTP_STATUS_BY_ERROR_CODE: Record<ErrorCode, number> = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  agent_busy: 429,
  upstream_error: 502,
  unavailable: 503,
  internal: 500,
};

/** The HTTP status for a core error code; 500 for anything unknown (a code from a newer core). */
export function statusForErrorCode(code: ErrorCode): number {
  return HTTP_STATUS_BY_ERROR_CODE[code] ?? 500;
}
