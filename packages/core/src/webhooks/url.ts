/**
 * Which webhook URLs are accepted. A webhook makes the server send requests where a user says,
 * so it follows the `http_fetch` address policy (tools/net-policy.ts): loopback, private and
 * link-local targets are refused unless the operator allows them (a lab, a test). The policy is
 * checked when the URL is given (run or agent create) and again at every delivery, with the
 * connection pinned to the checked addresses (a DNS answer that changes cannot swap one in).
 */
import { invalidRequest, isSentinelError } from '../contract/errors.js';
import type { JsonSchema } from '../contract/route.js';
import { resolveAllowedAddresses, type HostResolver, type ResolvedAddress } from '../tools/net-policy.js';

/** Longest webhook URL accepted, in characters. */
export const WEBHOOK_URL_MAX_LENGTH = 2048;

/** The JSON Schema of a webhook URL field (the shape; {@link checkWebhookUrl} does the rest). */
export const WEBHOOK_URL_SCHEMA: JsonSchema = {
  type: 'string',
  minLength: 1,
  maxLength: WEBHOOK_URL_MAX_LENGTH,
  pattern: '^[Hh][Tt][Tt][Pp][Ss]?://',
  description: 'Absolute http(s) URL the run is POSTed to, signed per Standard Webhooks, on completed, failed, cancelled and requires_action',
};

export interface WebhookAddressPolicy {
  /** Let loopback, private and link-local targets through (a lab, a test). Default false. */
  allowPrivateAddresses?: boolean;
  /** Host name resolver. Default `node:dns` lookup (every address). */
  resolver?: HostResolver;
}

/**
 * The URL parsed, after the checks that need no network: absolute http/https, at most 2048
 * characters, no user name or password in it (they would be sent to the receiver and shown in
 * deliveries). `invalid_request` naming the problem otherwise.
 */
export function parseWebhookUrl(text: string): URL {
  if (text.length > WEBHOOK_URL_MAX_LENGTH) throw invalidRequest(`webhook: the URL is longer than ${WEBHOOK_URL_MAX_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalidRequest('webhook: not an absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalidRequest('webhook: the URL must be http:// or https://');
  if (url.username !== '' || url.password !== '') throw invalidRequest('webhook: credentials in the URL are not accepted (the request is signed)');
  if (url.hostname === '') throw invalidRequest('webhook: the URL has no host');
  return url;
}

/**
 * {@link parseWebhookUrl}, then the address policy: every address of the host must be public
 * unless `allowPrivateAddresses`. Returns the URL as given and the checked addresses (none for
 * a name that does not resolve now: it is checked again at delivery). `invalid_request` for a
 * refused host.
 */
export async function checkWebhookUrl(text: string, policy: WebhookAddressPolicy = {}): Promise<{ url: string; addresses: ResolvedAddress[] }> {
  const url = parseWebhookUrl(text);
  try {
    const addresses = await resolveAllowedAddresses(url.hostname, { ...policy, what: 'webhook' });
    // As given: the record shows what the client sent (undici parses it the same way at delivery).
    return { url: text, addresses };
  } catch (err) {
    // A name that does not resolve now may later (DNS is down, the receiver is not deployed
    // yet): accepted, and checked again at every delivery, which records why it failed.
    if (isSentinelError(err) && err.code === 'upstream_error') return { url: text, addresses: [] };
    // The body named the URL: a refusal is the request's fault (400), not a missing permission.
    if (isSentinelError(err)) throw invalidRequest(err.message, { cause: err });
    throw err;
  }
}
