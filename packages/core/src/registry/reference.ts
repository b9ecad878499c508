/**
 * Image references the way Docker reads them: `[registry/]repository[:tag][@digest]`, and the
 * `--registry` URL `http(s)://host[:port][/namespace]`. The grammar is the distribution
 * project's (`reference/regexp.go`), restricted to sha256 digests (the only algorithm our
 * images use). A malformed reference is a 400 with a message that says what is wrong, never a
 * request to a registry.
 */
import { isDigest } from '../contract/digest.js';
import { invalidRequest, SentinelError } from '../contract/errors.js';

/** One path component of a repository name (distribution's `path-component`). */
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const PATH_COMPONENT_RE = new RegExp(`^${PATH_COMPONENT}$`);
/** A host name component, or an IPv4 address part. */
const DOMAIN_COMPONENT_RE = /^(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])$/;
const PORT_RE = /^[0-9]{1,5}$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;

/** Repository names (including any namespace) are at most this long, as in distribution. */
export const REPOSITORY_MAX_LENGTH = 255;
/** References longer than this are refused before parsing. */
export const REFERENCE_MAX_LENGTH = 512;

/** A parsed `[registry/]repository[:tag][@digest]`. */
export interface RegistryReference {
  /** `host[:port]` when the reference names a registry; undefined for the default registry. */
  registry: string | undefined;
  /** Repository path, e.g. `demo/helper`. */
  repository: string;
  /** Undefined when the reference gives none (callers default to `latest` unless a digest is given). */
  tag: string | undefined;
  /** `sha256:<64 hex>`, when the reference pins one. */
  digest: string | undefined;
}

function invalidReference(ref: string, why: string): SentinelError {
  const shown = ref.length > 80 ? `${ref.slice(0, 80)}…` : ref;
  return invalidRequest(`invalid image reference "${shown}": ${why}`);
}

/** True for `host`, `host:port`, `a.b.c`, `localhost:5000`: the registry part of a reference. */
export function isValidRegistryHost(host: string): boolean {
  const colon = host.lastIndexOf(':');
  const name = colon === -1 ? host : host.slice(0, colon);
  if (colon !== -1) {
    const port = host.slice(colon + 1);
    if (!PORT_RE.test(port) || Number(port) > 65535) return false;
  }
  return name.length > 0 && name.length <= 253 && name.split('.').every((part) => DOMAIN_COMPONENT_RE.test(part));
}

/** Checks a repository path against the distribution grammar; returns why not, or undefined. */
export function repositoryProblem(repository: string): string | undefined {
  if (repository.length === 0) return 'the repository name is empty';
  if (repository.length > REPOSITORY_MAX_LENGTH) return `the repository name is longer than ${REPOSITORY_MAX_LENGTH} characters`;
  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT_RE.test(component)) {
      return `"${component}" is not a valid repository path component (lowercase letters, digits, and . _ __ - between them)`;
    }
  }
  return undefined;
}

/** True for a tag registries accept: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`. */
export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/**
 * Parses a Docker-like reference. The first `/`-separated component is a registry host when it
 * contains `.` or `:` or is `localhost` (Docker's rule), so `demo/helper` is a repository on the
 * default registry and `localhost:5000/demo/helper:v1` names a registry. Unlike Docker, no
 * `docker.io/library/` is implied: the default registry is the server's.
 * Throws SentinelError `invalid_request` saying what is wrong.
 */
export function parseRegistryReference(ref: string): RegistryReference {
  if (ref.length === 0) throw invalidReference(ref, 'it is empty');
  if (ref.length > REFERENCE_MAX_LENGTH) throw invalidReference(ref, `it is longer than ${REFERENCE_MAX_LENGTH} characters`);
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!isDigest(digest)) throw invalidReference(ref, 'the digest must be sha256:<64 lowercase hex digits>');
  }
  let registry: string | undefined;
  const slash = rest.indexOf('/');
  if (slash !== -1) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      if (!isValidRegistryHost(first)) throw invalidReference(ref, `"${first}" is not a valid registry host[:port]`);
      registry = first;
      rest = rest.slice(slash + 1);
    }
  }
  let tag: string | undefined;
  // A colon after the last slash separates the tag (a colon before it was a port).
  const colon = rest.lastIndexOf(':');
  if (colon !== -1 && colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw invalidReference(ref, 'a tag is 1 to 128 characters of letters, digits, _ . and -, not starting with . or -');
  }
  const problem = repositoryProblem(rest);
  if (problem) throw invalidReference(ref, problem);
  return { registry, repository: rest, tag, digest };
}

/** Formats a reference back: `[registry/]repository[:tag][@digest]`. */
export function formatRegistryReference(ref: RegistryReference): string {
  return `${ref.registry === undefined ? '' : `${ref.registry}/`}${ref.repository}${ref.tag === undefined ? '' : `:${ref.tag}`}${ref.digest === undefined ? '' : `@${ref.digest}`}`;
}

/** A registry address from `--registry` or a request: where it is and the namespace images go under. */
export interface RegistryLocation {
  /** `http(s)://host[:port]`, no trailing slash. */
  origin: string;
  /** `host[:port]` as references name it. */
  host: string;
  /** Repository prefix without slashes at either end, e.g. `team/agents`; `''` for none. */
  namespace: string;
}

function invalidRegistryUrl(url: string, why: string): SentinelError {
  const shown = url.length > 120 ? `${url.slice(0, 120)}…` : url;
  return invalidRequest(`invalid registry "${shown}": ${why}`);
}

/**
 * Parses `http(s)://host[:port][/namespace]`. A bare `host[:port][/namespace]` means HTTPS,
 * except for loopback hosts (`localhost`, `127.x.x.x`), which mean plain HTTP like Docker's
 * implicit insecure registries. Credentials, queries and fragments in the URL are refused:
 * credentials belong in their own options, where they are never logged.
 */
export function parseRegistryLocation(url: string): RegistryLocation {
  if (url.length === 0 || url.length > 2048) throw invalidRegistryUrl(url, 'give http(s)://host[:port][/namespace]');
  const hasScheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(url);
  let parsed: URL;
  try {
    parsed = new URL(hasScheme ? url : `${isLoopbackHost(url.split('/')[0] ?? '') ? 'http' : 'https'}://${url}`);
  } catch {
    throw invalidRegistryUrl(url, 'not a URL; give http(s)://host[:port][/namespace]');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw invalidRegistryUrl(url, 'only http:// and https:// registries are supported');
  if (parsed.username !== '' || parsed.password !== '') throw invalidRegistryUrl(url, 'put credentials in the username/password options, not in the URL');
  if (parsed.search !== '' || parsed.hash !== '') throw invalidRegistryUrl(url, 'a registry URL has no query or fragment');
  const namespace = parsed.pathname.replace(/^\/+|\/+$/g, '');
  if (namespace !== '') {
    const problem = repositoryProblem(namespace);
    if (problem) throw invalidRegistryUrl(url, `bad namespace: ${problem}`);
  }
  return { origin: parsed.origin, host: parsed.host, namespace };
}

/** `localhost`, `127.x.x.x` or `[::1]`, with or without a port. */
export function isLoopbackHost(host: string): boolean {
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
  return name === 'localhost' || name === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(name);
}
