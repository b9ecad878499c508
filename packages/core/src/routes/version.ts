/**
 * `GET /v1/version` (public), like Docker's `/version`: what a client or an operator needs to
 * know which server answers, without logging in. It says nothing secret: no hosts, no paths.
 */
import { API_VERSION, apiVersionHeader, sentinelCommit, sentinelVersion } from '../version.js';
import type { RouteDef } from '../contract/route.js';

/** The answer of `GET /v1/version`. */
export interface VersionInfo {
  /** The server's version, e.g. `0.1.0`. */
  version: string;
  /** The REST API's version (`v1`). */
  api_version: string;
  /** The API's `major.minor` (docs/VERSIONING.md), the `Sentinel-Api-Version` header's value, e.g. `1.0`. */
  api_revision: string;
  /** The git commit of the build, or null when unknown. */
  commit: string | null;
  /** The Node.js version, e.g. `v20.19.0`. */
  node: string;
  /** Which store kind holds the data: `sqlite`, `postgres`, or `custom` (an embedding app's). */
  store: string;
  /** Which event bus carries events: `local` (in process) or `redis`. */
  bus: string;
}

export interface VersionRouteDeps {
  /** Default `unknown`. */
  store?: string;
  /** Default `local`. */
  bus?: string;
}

/** The version information of this process. */
export function versionInfo(deps: VersionRouteDeps = {}): VersionInfo {
  return {
    version: sentinelVersion(),
    api_version: API_VERSION,
    api_revision: apiVersionHeader(),
    commit: sentinelCommit(),
    node: process.version,
    store: deps.store ?? 'unknown',
    bus: deps.bus ?? 'local',
  };
}

export function versionRoutes(deps: VersionRouteDeps = {}): RouteDef[] {
  const info = Object.freeze(versionInfo(deps));
  return [
    {
      method: 'GET',
      path: '/v1/version',
      auth: 'public',
      summary: 'Server version, API version and revision, build commit, Node.js version, store and bus kinds',
      schemas: {
        response: {
          type: 'object',
          properties: {
            version: { type: 'string' },
            api_version: { type: 'string' },
            api_revision: { type: 'string', description: 'major.minor, as in the Sentinel-Api-Version header' },
            commit: { type: ['string', 'null'] },
            node: { type: 'string' },
            store: { type: 'string' },
            bus: { type: 'string' },
          },
          required: ['version', 'api_version', 'api_revision', 'commit', 'node', 'store', 'bus'],
          additionalProperties: false,
        },
      },
      handler: () => info,
    },
  ];
}
