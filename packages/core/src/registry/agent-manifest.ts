/**
 * The first look at a pulled manifest: is it an agent image at all? Decided from the manifest
 * alone, before any blob is fetched, so pulling a container image or an index by mistake costs
 * one small request and gives a clear 400 instead of downloading layers.
 */
import { isDigest } from '../contract/digest.js';
import { invalidRequest } from '../contract/errors.js';
import { AGENT_ARTIFACT_TYPE, AGENT_CONFIG_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE } from '../images/oci.js';

/** The config descriptor of an agent manifest. */
export interface AgentConfigDescriptor {
  digest: string;
  size: number;
}

/** What a manifest says about itself: enough for search results and the pull's next step. */
export interface ManifestSummary {
  agent: boolean;
  /** Why it is not an agent image (for messages); undefined when it is one. */
  problem: string | undefined;
  config: AgentConfigDescriptor | undefined;
  description: string;
}

/** Reads the manifest's media type, artifact type, config descriptor and description annotation. */
export function summarizeManifest(bytes: Uint8Array, contentType: string | undefined): ManifestSummary {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return { agent: false, problem: 'the manifest is not JSON', config: undefined, description: '' };
  }
  const m = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const annotations = (typeof m.annotations === 'object' && m.annotations !== null ? m.annotations : {}) as Record<string, unknown>;
  const descriptionValue = annotations['org.opencontainers.image.description'];
  const description = typeof descriptionValue === 'string' ? descriptionValue : '';
  const mediaType = typeof m.mediaType === 'string' ? m.mediaType : contentType;
  const fail = (problem: string): ManifestSummary => ({ agent: false, problem, config: undefined, description });
  if (mediaType !== OCI_MANIFEST_MEDIA_TYPE) return fail(`its media type is ${mediaType ?? 'unknown'}, not ${OCI_MANIFEST_MEDIA_TYPE}`);
  if (m.artifactType !== undefined && m.artifactType !== AGENT_ARTIFACT_TYPE) return fail(`its artifactType is ${String(m.artifactType)}, not ${AGENT_ARTIFACT_TYPE}`);
  const config = m.config as Record<string, unknown> | undefined;
  if (typeof config !== 'object' || config === null) return fail('it has no config descriptor');
  if (config.mediaType !== AGENT_CONFIG_MEDIA_TYPE) return fail(`its config media type is ${String(config.mediaType)}, not ${AGENT_CONFIG_MEDIA_TYPE}`);
  if (typeof config.digest !== 'string' || !isDigest(config.digest) || typeof config.size !== 'number') {
    return fail('its config descriptor has no sha256 digest or size');
  }
  return { agent: true, problem: undefined, config: { digest: config.digest, size: config.size }, description };
}

/** The config descriptor of an agent manifest; `invalid_request` ("<what> is not an agent image: …") otherwise. */
export function requireAgentManifest(bytes: Uint8Array, contentType: string | undefined, what: string): AgentConfigDescriptor {
  const summary = summarizeManifest(bytes, contentType);
  if (!summary.agent || summary.config === undefined) throw invalidRequest(`${what} is not an agent image: ${summary.problem ?? 'unknown shape'}`);
  return summary.config;
}
