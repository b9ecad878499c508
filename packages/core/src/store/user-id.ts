/** Immutable user ids, made in one place so every store and the user service agree on their shape. */
import { randomBytes } from 'node:crypto';

/** A new user id: 32 lowercase hex characters (128 random bits), the shape the migrations give existing users too. */
export function newUserId(): string {
  return randomBytes(16).toString('hex');
}
