/**
 * Agent images as OCI artifacts (docs/ARCHITECTURE.md#images-and-the-registry, OCI image-spec v1.1): an image manifest whose
 * config blob is the agent definition, with the empty-layer convention because an agent has
 * no filesystem layers. The image ID is the sha256 of the exact manifest bytes, so those
 * bytes are produced once (canonical JSON) and stored and pushed unchanged.
 */
import { sha256Digest } from '../contract/digest.js';
import { invalidRequest, SentinelError } from '../contract/errors.js';
import type { AgentDefinition } from '../contract/models.js';
import { parseAgentDefinition } from './sentinelfile.js';

export const AGENT_ARTIFACT_TYPE = 'application/vnd.sentinel.agent.v1+json';
export const AGENT_CONFIG_MEDIA_TYPE = 'application/vnd.sentinel.agent.config.v1+json';
export const OCI_MANIFEST_MEDIA_TYPE = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_EMPTY_MEDIA_TYPE = 'application/vnd.oci.empty.v1+json';

/** An OCI content descriptor. */
export interface OciDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  /** Base64 of the content, embedded (image-spec v1.1 allows it for small blobs). */
  data?: string;
  annotations?: Record<string, string>;
}

/** The image-spec's empty descriptor: the blob `{}` (2 bytes), embedded as `e30=`. */
export const EMPTY_DESCRIPTOR: Readonly<Required<Pick<OciDescriptor, 'mediaType' | 'digest' | 'size' | 'data'>>> = Object.freeze({
  mediaType: OCI_EMPTY_MEDIA_TYPE,
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
  data: 'e30=',
});

/** The OCI image manifest of an agent image. */
export interface AgentImageManifest {
  schemaVersion: 2;
  mediaType: typeof OCI_MANIFEST_MEDIA_TYPE;
  artifactType: typeof AGENT_ARTIFACT_TYPE;
  config: OciDescriptor;
  layers: OciDescriptor[];
  annotations?: Record<string, string>;
}

/** What {@link buildAgentImage} produces: the bytes to store (and push) and their digests. */
export interface BuiltAgentImage {
  /** The exact manifest bytes; `digest` is their sha256. */
  manifest: string;
  /** The exact config blob bytes (canonical JSON of the definition). */
  config: string;
  digest: string;
  config_digest: string;
  /** Config bytes + empty layer bytes. */
  size: number;
}

function canonical(value: unknown, out: string[]): void {
  if (value === null) {
    out.push('null');
    return;
  }
  switch (typeof value) {
    case 'string':
    case 'boolean':
      out.push(JSON.stringify(value));
      return;
    case 'number':
      // JSON.stringify would silently turn these into null: a changed definition, not ours to invent.
      if (!Number.isFinite(value)) throw new TypeError('canonicalJson: non-finite number');
      out.push(JSON.stringify(value));
      return;
    case 'object':
      break;
    default:
      throw new TypeError(`canonicalJson: cannot encode a ${typeof value}`);
  }
  if (Array.isArray(value)) {
    out.push('[');
    value.forEach((item, i) => {
      if (i > 0) out.push(',');
      canonical(item === undefined ? null : item, out);
    });
    out.push(']');
    return;
  }
  const record = value as Record<string, unknown>;
  // Default sort compares UTF-16 code units: deterministic, and what JCS (RFC 8785) specifies.
  const keys = Object.keys(record).filter((k) => record[k] !== undefined).sort();
  out.push('{');
  keys.forEach((key, i) => {
    if (i > 0) out.push(',');
    out.push(JSON.stringify(key), ':');
    canonical(record[key], out);
  });
  out.push('}');
}

/**
 * Deterministic JSON: object keys sorted at every level, no whitespace, `undefined` object
 * members dropped (as JSON.stringify does). Throws TypeError on non-finite numbers and
 * values JSON cannot hold (functions, symbols, bigints).
 */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  canonical(value, out);
  return out.join('');
}

// postgres/registry.ts still imports the digest helper from here; it can go once that file imports contract/digest.ts.
export { sha256Digest };

function byteLength(bytes: string | Uint8Array): number {
  return typeof bytes === 'string' ? Buffer.byteLength(bytes, 'utf8') : bytes.byteLength;
}

/**
 * Builds the OCI artifact of an agent definition. `createdAt` (RFC 3339) goes into the
 * `org.opencontainers.image.created` annotation; a fixed value gives a reproducible digest.
 */
export function buildAgentImage(def: AgentDefinition, createdAt: string): BuiltAgentImage {
  const config = canonicalJson(def);
  const configDigest = sha256Digest(config);
  const configSize = byteLength(config);
  const manifestValue: AgentImageManifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST_MEDIA_TYPE,
    artifactType: AGENT_ARTIFACT_TYPE,
    config: { mediaType: AGENT_CONFIG_MEDIA_TYPE, digest: configDigest, size: configSize },
    layers: [{ ...EMPTY_DESCRIPTOR }],
    annotations: {
      'org.opencontainers.image.title': def.name,
      'org.opencontainers.image.description': def.description,
      'org.opencontainers.image.version': def.tag,
      'org.opencontainers.image.created': createdAt,
    },
  };
  const manifest = canonicalJson(manifestValue);
  return { manifest, config, digest: sha256Digest(manifest), config_digest: configDigest, size: configSize + EMPTY_DESCRIPTOR.size };
}

function invalidImage(message: string): SentinelError {
  return invalidRequest(`invalid agent image: ${message}`);
}

function decodeUtf8(bytes: string | Uint8Array): string {
  return typeof bytes === 'string' ? bytes : new TextDecoder('utf-8', { fatal: true }).decode(bytes);
}

function parseJson(bytes: string | Uint8Array, what: string): unknown {
  try {
    return JSON.parse(decodeUtf8(bytes)) as unknown;
  } catch {
    throw invalidImage(`${what} is not valid UTF-8 JSON`);
  }
}

/**
 * Reads an agent image back from its manifest and config bytes (a registry pull): checks the
 * manifest's media and artifact types, the config descriptor's media type, digest and size
 * against the config bytes, the layers (only empty-layer descriptors), and, when
 * `options.digest` is given, the manifest digest. Then validates the definition.
 * Throws SentinelError `invalid_request` ('invalid agent image: …').
 */
export function parseAgentManifest(
  manifestBytes: string | Uint8Array,
  configBytes: string | Uint8Array,
  /** `digest`: the manifest digest the caller expects. Default: not checked. */
  options: { digest?: string } = {},
): AgentDefinition {
  if (options.digest !== undefined && sha256Digest(manifestBytes) !== options.digest) {
    throw invalidImage(`manifest digest does not match ${options.digest}`);
  }
  const manifest = parseJson(manifestBytes, 'manifest');
  if (typeof manifest !== 'object' || manifest === null || Array.isArray(manifest)) throw invalidImage('manifest is not an object');
  const m = manifest as Record<string, unknown>;
  if (m.schemaVersion !== 2) throw invalidImage('manifest schemaVersion must be 2');
  if (m.mediaType !== OCI_MANIFEST_MEDIA_TYPE) throw invalidImage(`manifest mediaType must be ${OCI_MANIFEST_MEDIA_TYPE}`);
  const config = m.config as Record<string, unknown> | undefined;
  if (typeof config !== 'object' || config === null) throw invalidImage('manifest has no config descriptor');
  if (config.mediaType !== AGENT_CONFIG_MEDIA_TYPE) throw invalidImage(`config mediaType must be ${AGENT_CONFIG_MEDIA_TYPE}`);
  // An artifact may omit artifactType when the config media type identifies it (image-spec v1.1).
  if (m.artifactType !== undefined && m.artifactType !== AGENT_ARTIFACT_TYPE) throw invalidImage(`artifactType must be ${AGENT_ARTIFACT_TYPE}`);
  if (config.digest !== sha256Digest(configBytes)) throw invalidImage('config digest does not match the config bytes');
  if (config.size !== byteLength(configBytes)) throw invalidImage('config size does not match the config bytes');
  const layers = m.layers;
  if (!Array.isArray(layers)) throw invalidImage('manifest layers must be an array');
  for (const layer of layers as unknown[]) {
    const l = layer as Record<string, unknown> | null;
    if (typeof l !== 'object' || l === null || l.mediaType !== OCI_EMPTY_MEDIA_TYPE || l.digest !== EMPTY_DESCRIPTOR.digest || l.size !== EMPTY_DESCRIPTOR.size) {
      throw invalidImage('an agent image has only empty layers');
    }
  }
  return parseAgentDefinition(parseJson(configBytes, 'config'));
}
