/**
 * The WebSocket close codes (RFC 6455 §7.4.1) the server uses, with what each means here. They
 * live in the core's protocol layer, not in the `ws` transport, so the AsyncAPI document can
 * describe them without the core importing a transport; the transport takes its numbers from here.
 */

export interface WebSocketCloseCode {
  code: number;
  /** When the server closes with it. */
  meaning: string;
}

/** Every close code the server sends, by name. */
export const WEBSOCKET_CLOSE_CODES = {
  normal: { code: 1000, meaning: 'Normal closure: the agent was deleted (nothing is wrong with the connection).' },
  going_away: { code: 1001, meaning: 'Going away: the server is shutting down; reconnect to another instance or later.' },
  policy_violation: { code: 1008, meaning: 'Policy violation: the client read too slowly and its send queue overflowed.' },
  message_too_big: { code: 1009, meaning: 'Message too big: a client frame was larger than the server’s maximum payload.' },
  internal_error: { code: 1011, meaning: 'Internal error: a bug on the server while serving the socket.' },
  credential_revoked: {
    code: 4401,
    meaning:
      'Credential revoked or expired: the token was logged out or revoked (revoke-tokens, a password change), the user deleted or disabled, the API key revoked, or the credential expired. Reconnect with a fresh one.',
  },
} as const satisfies Record<string, WebSocketCloseCode>;
