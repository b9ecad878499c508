/**
 * Request ids: a caller's `X-Request-Id` is kept when it is harmless (it ends up in logs and
 * headers, so only a short token alphabet), otherwise we mint one. Minting is a string
 * concatenation, not a UUID: it runs on every request.
 */
import { randomBytes } from 'node:crypto';

const ACCEPTED_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

// Random per process so ids from several instances behind one balancer don't collide.
const PROCESS_PREFIX = randomBytes(6).toString('base64url');
let counter = 0;

/** A fresh id: `<process-random>-<counter in base 36>`. */
export function generateRequestId(): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `${PROCESS_PREFIX}-${counter.toString(36)}`;
}

/** The incoming `X-Request-Id` if it matches `^[A-Za-z0-9._:-]{1,128}$`, else a generated one. */
export function requestIdFor(incoming: string | string[] | undefined): string {
  return typeof incoming === 'string' && ACCEPTED_REQUEST_ID.test(incoming) ? incoming : generateRequestId();
}
