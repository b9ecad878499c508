/**
 * The console's one SDK client and its session token. The token lives in sessionStorage (this
 * tab only, gone when it closes, never a cookie another origin's request could carry); every
 * URL is relative to the page's origin, so the console talks only to the server that served it.
 */
import { createClient, isSentinelApiError, type SentinelClient } from '@sentinel/api-client/browser';

const TOKEN_KEY = 'sentinel.console.token';

/** A client for this origin, with the token this tab kept (if any). */
export function makeClient(): SentinelClient {
  const token = readStorage(TOKEN_KEY);
  return createClient({ baseUrl: location.origin, ...(token ? { token } : {}) });
}

export function saveToken(token: string | undefined): void {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage refused (private mode quotas): the token stays in memory only.
  }
}

export function hasStoredToken(): boolean {
  return readStorage(TOKEN_KEY) !== undefined;
}

/** "<message> (<code>)": the words a person reads and the code the error catalogue explains. */
export function describeError(err: unknown): string {
  if (isSentinelApiError(err)) return `${err.message} (${err.code})`;
  if (err instanceof Error) return `${err.message} (client_error)`;
  return `${String(err)} (client_error)`;
}

export function readStorage(key: string): string | undefined {
  try {
    return sessionStorage.getItem(key) ?? undefined;
  } catch {
    return undefined;
  }
}

export function writeStorage(key: string, value: string): void {
  try {
    sessionStorage.setItem(key, value);
  } catch {
    // Full or refused: the value lives only as long as the page.
  }
}

export function removeStorage(key: string): void {
  try {
    sessionStorage.removeItem(key);
  } catch {
    // Nothing kept, nothing to remove.
  }
}
