/**
 * Open sockets follow their credential (issue 13): a socket whose token is logged out or
 * revoked, whose user is deleted or disabled, whose API key is revoked, or whose credential
 * expires, is closed with 4401. Three paths, from fastest to slowest:
 * - a revocation naming the socket's credential id closes it at once;
 * - a revocation naming its user rechecks it with the core at once (a password change revokes
 *   older tokens only, so the core decides which sockets go);
 * - a timer closes it at its credential's `expiresAtMs`, and every `recheckIntervalMs` every
 *   socket is rechecked (the safety net for a revocation message that never arrived).
 */
import type { CredentialRevocation, CredentialSurface, Logger, Principal } from '@sentinel/api-core';
import { CLOSE_CREDENTIAL_REVOKED } from './close-codes.js';
import type { Connection } from './connection.js';

/** setTimeout's largest delay; a later expiry is caught by the periodic recheck. */
const MAX_TIMER_MS = 2_147_483_647;

interface Watched {
  principal: Principal;
  timer: NodeJS.Timeout | undefined;
}

export interface CredentialWatch {
  /** Starts following `connection`'s credential. */
  add(connection: Connection, principal: Principal): void;
  /** Stops following it (the socket closed). */
  remove(connection: Connection): void;
  /** Stops everything. */
  close(): void;
}

function addTo(index: Map<string, Set<Connection>>, key: string, connection: Connection): void {
  let set = index.get(key);
  if (set === undefined) index.set(key, (set = new Set()));
  set.add(connection);
}

function removeFrom(index: Map<string, Set<Connection>>, key: string, connection: Connection): void {
  const set = index.get(key);
  if (set === undefined) return;
  set.delete(connection);
  if (set.size === 0) index.delete(key);
}

export function watchCredentials(
  api: Partial<Pick<CredentialSurface, 'recheckCredential' | 'credentialRevocations'>>,
  options: { recheckIntervalMs: number; logger: Logger },
): CredentialWatch {
  const watched = new Map<Connection, Watched>();
  const byUser = new Map<string, Set<Connection>>();
  const byCredential = new Map<string, Set<Connection>>();
  const { logger } = options;

  const close = (connection: Connection, reason: string): void => {
    const entry = watched.get(connection);
    logger.info('websocket closed: credential no longer valid', { username: entry?.principal.username, reason });
    remove(connection);
    void connection.closeSocket(CLOSE_CREDENTIAL_REVOKED, reason);
  };

  const recheck = (connection: Connection): void => {
    const entry = watched.get(connection);
    if (entry === undefined || api.recheckCredential === undefined) return;
    api.recheckCredential(entry.principal).then(
      () => undefined,
      (err: unknown) => {
        if (!watched.has(connection)) return;
        const code = (err as { code?: unknown } | null)?.code;
        // Only a verdict closes the socket; the store being down for a moment must not drop everyone.
        if (code === 'unauthorized' || code === 'forbidden') close(connection, err instanceof Error ? err.message : 'credential revoked');
        else logger.warn('websocket credential recheck failed', { error: err instanceof Error ? err.message : String(err) });
      },
    );
  };

  const onRevocation = (revocation: CredentialRevocation): void => {
    if (revocation.credentialId !== undefined) {
      for (const connection of [...(byCredential.get(revocation.credentialId) ?? [])]) close(connection, 'credential revoked');
    }
    if (revocation.username !== undefined) {
      for (const connection of [...(byUser.get(revocation.username) ?? [])]) recheck(connection);
    }
    if (revocation.username === undefined && revocation.credentialId === undefined) {
      for (const connection of [...watched.keys()]) recheck(connection);
    }
  };
  const unsubscribe = api.credentialRevocations?.subscribe(onRevocation);

  const interval = setInterval(() => {
    for (const connection of [...watched.keys()]) recheck(connection);
  }, options.recheckIntervalMs);
  interval.unref();

  function remove(connection: Connection): void {
    const entry = watched.get(connection);
    if (entry === undefined) return;
    watched.delete(connection);
    clearTimeout(entry.timer);
    removeFrom(byUser, entry.principal.username, connection);
    if (entry.principal.credentialId !== undefined) removeFrom(byCredential, entry.principal.credentialId, connection);
  }

  return {
    add(connection, principal) {
      const entry: Watched = { principal, timer: undefined };
      watched.set(connection, entry);
      addTo(byUser, principal.username, connection);
      if (principal.credentialId !== undefined) addTo(byCredential, principal.credentialId, connection);
      if (principal.expiresAtMs !== undefined) {
        const delay = principal.expiresAtMs - Date.now();
        if (delay <= 0) {
          close(connection, 'credential expired');
          return;
        }
        if (delay <= MAX_TIMER_MS) {
          entry.timer = setTimeout(() => close(connection, 'credential expired'), delay);
          entry.timer.unref();
        }
      }
    },
    remove,
    close() {
      unsubscribe?.();
      clearInterval(interval);
      for (const connection of [...watched.keys()]) remove(connection);
    },
  };
}
