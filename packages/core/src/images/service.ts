/**
 * Local images: build from a definition, list, resolve references the way Docker does
 * (digest, short ID, `name:tag`, `name`), delete. Images are immutable; a tag is a movable
 * pointer to one.
 */
import { isSentinelError, SentinelError } from '../errors.js';
import type { Logger } from '../logger.js';
import { silentLogger } from '../logger.js';
import type { AgentDefinition, ImageRecord, ImageResource } from '../models.js';
import type { Store } from '../store/types.js';
import { buildAgentImage } from './oci.js';
import { IMAGE_NAME_MAX_LENGTH, IMAGE_NAME_PATTERN, IMAGE_TAG_PATTERN, parseAgentDefinition } from './sentinelfile.js';

/** Shortest hex prefix accepted as an image ID, like `docker images` shows. */
export const SHORT_ID_LENGTH = 12;

/** The built-in offline image, present in every data directory. */
export const STARTER_IMAGE_REF = 'sentinel/echo:latest';

/**
 * Fixed so the starter image has the same digest in every data directory: the definition
 * and the created annotation are constants.
 */
export const STARTER_IMAGE_CREATED_AT = '2026-01-01T00:00:00.000Z';

export const STARTER_IMAGE_DEFINITION: AgentDefinition = Object.freeze({
  name: 'sentinel/echo',
  tag: 'latest',
  description: 'Offline starter agent: echoes what you say; needs no model provider or API key.',
  model: { provider: 'echo', name: 'echo', parameters: {} },
  instructions:
    'You are the SentinelStacks offline starter agent. You run on the built-in echo provider, ' +
    'which repeats the user message back instead of calling a language model. Use it to try ' +
    'agents, chat streaming, events and tools without any API key.',
  tools: ['calculator', 'current_time'],
  capabilities: ['chat', 'streaming'],
}) as AgentDefinition;

const NAME_RE = new RegExp(IMAGE_NAME_PATTERN);
const TAG_RE = new RegExp(IMAGE_TAG_PATTERN);
const FULL_DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
const HEX_RE = /^[0-9a-f]+$/;
/** References are short strings; anything longer is refused before any lookup. */
const MAX_REF_LENGTH = 256;

/** A parsed image reference. */
export type ImageReference =
  | { kind: 'digest'; digest: string }
  | { kind: 'prefix'; hex: string; nameTag: string | null }
  | { kind: 'tag'; nameTag: string };

function notFound(ref: string): SentinelError {
  return new SentinelError('not_found', `image "${ref}" not found`);
}

/** Splits `name:tag` (tag optional, default `latest`); null when either part is malformed. */
function parseNameTag(ref: string): string | null {
  const colon = ref.lastIndexOf(':');
  const name = colon === -1 ? ref : ref.slice(0, colon);
  const tag = colon === -1 ? 'latest' : ref.slice(colon + 1);
  if (name.length > IMAGE_NAME_MAX_LENGTH || !NAME_RE.test(name) || !TAG_RE.test(tag)) return null;
  return `${name}:${tag}`;
}

/**
 * Parses an image reference: `sha256:<64 hex>`, 64 hex, a hex prefix of at least
 * {@link SHORT_ID_LENGTH} (which may also be a valid repository name: Docker tries the name
 * first, so do we), `name:tag` or `name` (= `name:latest`).
 * Throws SentinelError `invalid_request` for anything else.
 */
export function parseImageReference(ref: string): ImageReference {
  if (ref.length > 0 && ref.length <= MAX_REF_LENGTH) {
    if (FULL_DIGEST_RE.test(ref)) return { kind: 'digest', digest: ref };
    if (ref.length === 64 && HEX_RE.test(ref)) return { kind: 'digest', digest: `sha256:${ref}` };
    if (ref.length >= SHORT_ID_LENGTH && ref.length < 64 && HEX_RE.test(ref)) return { kind: 'prefix', hex: ref, nameTag: parseNameTag(ref) };
    const nameTag = parseNameTag(ref);
    if (nameTag) return { kind: 'tag', nameTag };
  }
  const shown = ref.length > 80 ? `${ref.slice(0, 80)}…` : ref;
  throw new SentinelError('invalid_request', `invalid image reference "${shown}": use an image ID (sha256:…, 12+ hex) or name[:tag]`);
}

/** Splits a stored `name:tag`. */
function splitNameTag(nameTag: string): { name: string; tag: string } {
  const colon = nameTag.lastIndexOf(':');
  return colon === -1 ? { name: nameTag, tag: 'latest' } : { name: nameTag.slice(0, colon), tag: nameTag.slice(colon + 1) };
}

/** The definition stored as an image's config blob (validated when it was built or pulled). */
export function imageDefinition(record: ImageRecord): AgentDefinition {
  return JSON.parse(record.config) as AgentDefinition;
}

/** The API shape of an image (docs/ARCHITECTURE.md#wire-shapes): Docker's fields plus the definition. */
export function toImageResource(record: ImageRecord): ImageResource {
  const def = imageDefinition(record);
  const first = record.tags[0];
  const { name, tag } = first === undefined ? { name: '<none>', tag: '<none>' } : splitNameTag(first);
  const hex = record.digest.slice('sha256:'.length);
  return {
    id: record.digest,
    short_id: hex.slice(0, SHORT_ID_LENGTH),
    digest: record.digest,
    name,
    tag,
    tags: [...record.tags],
    created_at: record.created_at,
    size: record.size,
    base_model: `${def.model.provider}/${def.model.name}`,
    features: [...new Set([...def.capabilities, ...def.tools])].sort(),
    description: def.description,
    model: def.model,
    tools: def.tools,
    capabilities: def.capabilities,
    instructions: def.instructions,
  };
}

export interface ImageServiceOptions {
  store: Store;
  /** Default: silent. */
  logger?: Logger;
  /** Clock for build timestamps. Default `Date.now`. */
  now?: () => number;
}

export class ImageService {
  private readonly store: Store;
  private readonly logger: Logger;
  private readonly now: () => number;

  constructor(options: ImageServiceOptions) {
    this.store = options.store;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
  }

  /**
   * Builds and stores the image of `def` and tags it `name:tag`, moving the tag away from
   * any image that had it (like `docker build -t`). `options.createdAt` defaults to now;
   * a fixed value gives a reproducible digest.
   */
  async build(def: AgentDefinition, options: { createdAt?: string } = {}): Promise<ImageResource> {
    const createdAt = options.createdAt ?? new Date(this.now()).toISOString();
    const built = buildAgentImage(def, createdAt);
    const nameTag = `${def.name}:${def.tag}`;
    await this.store.putImage(
      { digest: built.digest, manifest: built.manifest, config: built.config, config_digest: built.config_digest, size: built.size, created_at: createdAt },
      [nameTag],
    );
    this.logger.info('image built', { image: nameTag, digest: built.digest });
    const stored = await this.store.getImage(built.digest);
    if (!stored) throw new Error(`image ${built.digest} vanished right after it was stored`);
    return toImageResource(stored);
  }

  /** Every local image, newest first. */
  async list(): Promise<ImageResource[]> {
    return (await this.store.listImages()).map(toImageResource);
  }

  /**
   * Finds the image a reference points at (see {@link parseImageReference}).
   * Throws `invalid_request` for a malformed reference or an ambiguous short ID, and
   * `not_found` (`image "<ref>" not found`) when nothing matches.
   */
  async resolve(ref: string): Promise<ImageRecord> {
    const parsed = parseImageReference(ref);
    let digest: string | null;
    if (parsed.kind === 'digest') {
      digest = parsed.digest;
    } else if (parsed.kind === 'tag') {
      digest = await this.store.resolveTag(parsed.nameTag);
    } else {
      digest = parsed.nameTag === null ? null : await this.store.resolveTag(parsed.nameTag);
      if (digest === null) {
        const matches = await this.store.findImagesByDigestPrefix(parsed.hex);
        if (matches.length > 1) throw new SentinelError('invalid_request', `ambiguous image id "${ref}": ${matches.length} images match; give more digits`);
        const [only] = matches;
        if (only) return only;
      }
    }
    const record = digest === null ? null : await this.store.getImage(digest);
    if (!record) throw notFound(ref);
    return record;
  }

  /** The image a reference points at, as the API returns it. */
  async get(ref: string): Promise<ImageResource> {
    return toImageResource(await this.resolve(ref));
  }

  /**
   * Deletes the image (every tag pointing at it goes with it). Refused with `conflict`
   * while agents use it: an agent keeps running the exact image it was created from.
   */
  async delete(ref: string): Promise<void> {
    const record = await this.resolve(ref);
    const users = await this.store.countAgentsUsingImage(record.digest);
    if (users > 0) throw new SentinelError('conflict', `image ${ref} is used by ${users} agent(s)`);
    if (!(await this.store.deleteImage(record.digest))) throw notFound(ref);
    this.logger.info('image deleted', { image: ref, digest: record.digest });
  }

  /**
   * Makes sure `sentinel/echo:latest` exists, building it from the fixed starter definition
   * when it does not resolve. An existing tag (even moved to another image) is left alone.
   */
  async ensureStarterImage(): Promise<ImageResource> {
    try {
      return toImageResource(await this.resolve(STARTER_IMAGE_REF));
    } catch (err) {
      if (!isSentinelError(err) || err.code !== 'not_found') throw err;
    }
    // Through the parser, so the starter image is exactly what a user-built one would be.
    return this.build(parseAgentDefinition(STARTER_IMAGE_DEFINITION), { createdAt: STARTER_IMAGE_CREATED_AT });
  }
}
