/**
 * Where tools may connect. A model decides what URL a tool fetches, and a model can be talked
 * into anything by the text it reads, so the server's operator decides which hosts are
 * reachable (an allow-list), and addresses inside the network (loopback, private, link-local,
 * unique-local, metadata services at 169.254.169.254) are refused unless explicitly allowed:
 * otherwise an agent is a proxy into the server's own network (SSRF).
 * Names are resolved here, every address is checked, and the connection is pinned to the
 * checked addresses, so a DNS answer that changes between check and connect (rebinding)
 * cannot swap in an internal address.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import { forbidden, invalidRequest, upstream } from '../contract/errors.js';

/** One resolved address. */
export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** A resolver: every address of a host name. Default: `node:dns` `lookup(host, {all: true})`. */
export type HostResolver = (hostname: string) => Promise<ResolvedAddress[]>;

const HOST_LABELS = /^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** A host name as URL parsing gives it, compared as lowercase without IPv6 brackets or a trailing dot. */
export function normalizeHost(hostname: string): string {
  let host = hostname.trim().toLowerCase();
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host.endsWith('.')) host = host.slice(0, -1);
  return host;
}

/**
 * The hosts a tool may reach: exact names (`api.example.com`), IP literals, `*.example.com` for
 * every subdomain of example.com (not example.com itself), or `*` for every host. Empty: none.
 */
export class HostAllowList {
  private readonly exact = new Set<string>();
  private readonly suffixes: string[] = [];
  private readonly any: boolean;

  /** Throws SentinelError `invalid_request` for an entry that is not a host name, `*.name`, `*` or an IP. */
  constructor(entries: readonly string[], what = 'allow-list') {
    let any = false;
    for (const raw of entries) {
      const entry = normalizeHost(raw);
      if (entry === '') continue;
      if (entry === '*') {
        any = true;
      } else if (entry.startsWith('*.') && HOST_LABELS.test(entry.slice(2))) {
        this.suffixes.push(entry.slice(1));
      } else if (isIP(entry) !== 0 || HOST_LABELS.test(entry)) {
        this.exact.add(entry);
      } else {
        throw invalidRequest(`${what} entry "${raw}" is not a host name, "*.domain", "*" or an IP address`);
      }
    }
    this.any = any;
  }

  /** True when no host is allowed. */
  get isEmpty(): boolean {
    return !this.any && this.exact.size === 0 && this.suffixes.length === 0;
  }

  /** True when `hostname` (as in `URL.hostname`) is allowed. */
  allows(hostname: string): boolean {
    const host = normalizeHost(hostname);
    if (this.any || this.exact.has(host)) return true;
    return this.suffixes.some((suffix) => host.endsWith(suffix) && host.length > suffix.length);
  }
}

/** IPv4 ranges that are not the public internet: [first address, prefix length]. */
const IPV4_SPECIAL: readonly (readonly [string, number])[] = [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local (cloud metadata services live here)
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and the broadcast address
];

function ipv4ToInt(address: string): number {
  const parts = address.split('.').map(Number);
  return (((parts[0] ?? 0) << 24) | ((parts[1] ?? 0) << 16) | ((parts[2] ?? 0) << 8) | (parts[3] ?? 0)) >>> 0;
}

const IPV4_RANGES = IPV4_SPECIAL.map(([first, bits]) => {
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  // `>>> 0` everywhere: JavaScript's bitwise operators give signed results, and 172.16/12 is "negative".
  return { base: (ipv4ToInt(first) & mask) >>> 0, mask };
});

function isSpecialIpv4(address: string): boolean {
  const value = ipv4ToInt(address);
  return IPV4_RANGES.some(({ base, mask }) => ((value & mask) >>> 0) === base);
}

/** The eight 16-bit groups of an IPv6 address (zone id dropped, embedded dotted IPv4 read). */
function ipv6Groups(address: string): number[] {
  let text = address.split('%')[0] ?? '';
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const v4 = ipv4ToInt(dotted[1] ?? '0.0.0.0');
    text = `${text.slice(0, dotted.index)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const start = parse(head);
  const end = tail === undefined ? [] : parse(tail);
  const fill = tail === undefined ? [] : new Array<number>(8 - start.length - end.length).fill(0);
  return [...start, ...fill, ...end];
}

function embeddedIpv4(high: number, low: number): string {
  return `${high >>> 8}.${high & 0xff}.${low >>> 8}.${low & 0xff}`;
}

function isSpecialIpv6(address: string): boolean {
  const g = ipv6Groups(address);
  const [g0 = 0, g1 = 0, g2 = 0, g3 = 0, g4 = 0, g5 = 0, g6 = 0, g7 = 0] = g;
  // ::/96 (unspecified, loopback, IPv4-compatible) and ::ffff:0:0/96 (IPv4-mapped: judge the IPv4).
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0) {
    if (g5 === 0xffff) return isSpecialIpv4(embeddedIpv4(g6, g7));
    return true;
  }
  // 64:ff9b::/96 NAT64 and 2002::/16 6to4 carry an IPv4 address: judge that one.
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return isSpecialIpv4(embeddedIpv4(g6, g7));
  if (g0 === 0x2002) return isSpecialIpv4(embeddedIpv4(g1, g2));
  if ((g0 & 0xfe00) === 0xfc00) return true; // fc00::/7 unique local
  if ((g0 & 0xffc0) === 0xfe80) return true; // fe80::/10 link-local
  if ((g0 & 0xffc0) === 0xfec0) return true; // fec0::/10 old site-local
  if ((g0 & 0xff00) === 0xff00) return true; // ff00::/8 multicast
  if (g0 === 0x2001 && g1 === 0x0db8) return true; // documentation
  if (g0 === 0x2001 && g1 === 0) return true; // Teredo: tunnels to an address we cannot see
  if (g0 === 0x0100 && g1 === 0 && g2 === 0 && g3 === 0) return true; // discard-only
  return false;
}

/**
 * True for every address that is not a public internet address: loopback, private, link-local,
 * unique-local, carrier-grade NAT, multicast, reserved, documentation, unspecified, and IPv6
 * forms that embed one of those (IPv4-mapped, NAT64, 6to4). Non-IP text counts as not public.
 */
export function isPrivateAddress(address: string): boolean {
  const host = normalizeHost(address);
  const family = isIP(host.split('%')[0] ?? '');
  if (family === 4) return isSpecialIpv4(host);
  if (family === 6) return isSpecialIpv6(host);
  return true;
}

/** Resolves with `node:dns` (every address, in the resolver's order). */
export const systemResolver: HostResolver = async (hostname) => {
  const answers = await dnsLookup(hostname, { all: true, verbatim: true });
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

export interface ResolveAllowedOptions {
  /** Let loopback/private/link-local/unique-local addresses through. Default false. */
  allowPrivateAddresses?: boolean;
  /** Default {@link systemResolver}. */
  resolver?: HostResolver;
  /** Names the caller in errors (e.g. the tool). Default `'tool'`. */
  what?: string;
}

/**
 * Every address of `hostname` (an IP literal is its own address), after checking each one.
 * Throws SentinelError `forbidden` when any address is private (one bad address is enough: the
 * connection could use it), `upstream_error` when the name does not resolve.
 */
export async function resolveAllowedAddresses(hostname: string, options: ResolveAllowedOptions = {}): Promise<ResolvedAddress[]> {
  const what = options.what ?? 'tool';
  const host = normalizeHost(hostname);
  const family = isIP(host);
  let addresses: ResolvedAddress[];
  if (family !== 0) {
    addresses = [{ address: host, family: family === 6 ? 6 : 4 }];
  } else {
    try {
      addresses = await (options.resolver ?? systemResolver)(host);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      throw upstream(what, `cannot resolve ${host}${typeof code === 'string' ? ` (${code})` : ''}`, { cause: err });
    }
    if (addresses.length === 0) throw upstream(what, `${host} has no address`);
  }
  if (!options.allowPrivateAddresses) {
    const internal = addresses.find((a) => isPrivateAddress(a.address));
    if (internal) {
      throw forbidden(
        `${what}: ${host} ${family === 0 ? `resolves to ${internal.address}, ` : 'is '}a loopback, private or link-local address; refused`,
      );
    }
  }
  return addresses;
}

/**
 * A `net.connect` lookup that answers only with `addresses` (already checked), whatever name it
 * is asked about: the connection goes where the check said, never where a second DNS answer says.
 */
export function pinnedLookup(addresses: readonly ResolvedAddress[]): LookupFunction {
  return (_hostname, options, callback) => {
    const wanted = options.family === 4 || options.family === 6 ? addresses.filter((a) => a.family === options.family) : [...addresses];
    const list = wanted.length > 0 ? wanted : [...addresses];
    if (options.all) {
      (callback as (err: NodeJS.ErrnoException | null, addresses: ResolvedAddress[]) => void)(null, list);
      return;
    }
    const first = list[0] as ResolvedAddress;
    (callback as (err: NodeJS.ErrnoException | null, address: string, family: number) => void)(null, first.address, first.family);
  };
}
