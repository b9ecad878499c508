/**
 * Local images: build from a definition, list, resolve references the way Docker does
 * (digest, short ID, `name:tag`, `name`), delete. Images are immutable; a tag is a movable
 * pointer to one.
 *
 * Ownership works the way registries do it. A repository (an image name without its tag)
 * belongs to the user who first created it; its first path component is a namespace:
 * `sentinel/…` is reserved for admins, and a namespace equal to an existing username belongs
 * to that user. Only a repository's owner or an admin creates, moves or deletes its tags.
 * Repositories are public (every logged-in user reads and runs them) unless their owner made
 * them private: then they are a 404 to other non-admin users. Methods that take a principal
 * apply these rules; without one (the server itself, an embedding app) everything is allowed.
 * Every tag created, moved or deleted is journaled under the repository (see
 * {@link repositoryJournalId}): who did it, and from which digest to which.
 */
import { isDigest } from '../contract/digest.js';
import { conflict, forbidden, invalidInput, invalidRequest, isSentinelError, notFound, SentinelError } from '../contract/errors.js';
import type { AgentJournal } from '../journal.js';
import type { Logger } from '../contract/logger.js';
import { silentLogger } from '../contract/logger.js';
import type { AgentDefinition, EventRecord, ImageRecord, ImageResource, Principal, RepositoryRecord, RepositoryVisibility } from '../contract/models.js';
import type { ModelProvider } from '../providers/types.js';
import type { Store } from '../store/types.js';
import { buildAgentImage } from './oci.js';
import { IMAGE_NAME_MAX_LENGTH, IMAGE_TAG_PATTERN, LOCAL_IMAGE_NAME_PATTERN, parseAgentDefinition } from './sentinelfile.js';

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

// Local names may carry the registry they were pulled from (`host:port/demo/helper`).
const NAME_RE = new RegExp(LOCAL_IMAGE_NAME_PATTERN);
const TAG_RE = new RegExp(IMAGE_TAG_PATTERN);
const HEX_RE = /^[0-9a-f]+$/;
/** References are short strings; anything longer is refused before any lookup. */
const MAX_REF_LENGTH = 256;

/** The namespace reserved for admins (the built-in images live there). */
export const RESERVED_REPOSITORY_NAMESPACE = 'sentinel';

/**
 * Owner of the repositories no user owns: those under `sentinel/`, those built by the server
 * or an embedding app without a principal, and those that existed before owners were recorded.
 * Only admins manage them, whatever users exist.
 */
export const SYSTEM_OWNER = 'sentinel';

/** The journal stream (see {@link AgentJournal}) of a repository's tag history. */
export function repositoryJournalId(name: string): string {
  return `repository:${name}`;
}

/** A repository as the API returns it. */
export interface RepositoryResource extends RepositoryRecord {
  /** Its tags (`name:tag`) that point at an image now, sorted. */
  tags: string[];
}

/** What a definition needs from this server that the server does not have. */
export interface DefinitionCheck {
  /** Unknown provider or tools: the image could never run here. `path` names the field (`tools[0]`). */
  errors: { path: string; message: string }[];
  /** A known provider this server has not configured (no API key...): it could run once configured. */
  warnings: string[];
}

/** A parsed image reference. */
export type ImageReference =
  | { kind: 'digest'; digest: string }
  | { kind: 'prefix'; hex: string; nameTag: string | null }
  | { kind: 'tag'; nameTag: string };

/** Splits `name:tag` (tag optional, default `latest`); null when either part is malformed. */
function parseNameTag(ref: string): string | null {
  // Only a colon after the last slash starts the tag: one before it is a registry port.
  const last = ref.lastIndexOf(':');
  const colon = last > ref.lastIndexOf('/') ? last : -1;
  const name = colon === -1 ? ref : ref.slice(0, colon);
  const tag = colon === -1 ? 'latest' : ref.slice(colon + 1);
  if (name.length > IMAGE_NAME_MAX_LENGTH || !NAME_RE.test(name) || !TAG_RE.test(tag)) return null;
  return `${name}:${tag}`;
}

/**
 * Parses an image reference: `sha256:<64 hex>`, 64 hex, a hex prefix of at least
 * {@link SHORT_ID_LENGTH} (which may also be a valid repository name: Docker tries the name
 * first, so do we), `name:tag` or `name` (= `name:latest`), where a name pulled from a named
 * registry starts with its `host[:port]/`.
 * Throws SentinelError `invalid_request` for anything else.
 */
export function parseImageReference(ref: string): ImageReference {
  if (ref.length > 0 && ref.length <= MAX_REF_LENGTH) {
    if (isDigest(ref)) return { kind: 'digest', digest: ref };
    if (ref.length === 64 && HEX_RE.test(ref)) return { kind: 'digest', digest: `sha256:${ref}` };
    if (ref.length >= SHORT_ID_LENGTH && ref.length < 64 && HEX_RE.test(ref)) return { kind: 'prefix', hex: ref, nameTag: parseNameTag(ref) };
    const nameTag = parseNameTag(ref);
    if (nameTag) return { kind: 'tag', nameTag };
  }
  const shown = ref.length > 80 ? `${ref.slice(0, 80)}…` : ref;
  throw invalidRequest(`invalid image reference "${shown}": use an image ID (sha256:…, 12+ hex) or name[:tag]`);
}

/** The repository (name without tag) of a stored `name:tag`. */
export function repositoryOf(nameTag: string): string {
  const colon = nameTag.lastIndexOf(':');
  return colon === -1 ? nameTag : nameTag.slice(0, colon);
}

/** The first path component of a repository name, or null for a one-component name. */
function namespaceOf(name: string): string | null {
  const slash = name.indexOf('/');
  return slash === -1 ? null : name.slice(0, slash);
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

/**
 * The API shape of an image (docs/ARCHITECTURE.md#wire-shapes): Docker's fields plus the definition, and the
 * owner and visibility of the repository of `name` from `repositories` (null when the image is
 * untagged or `repositories` does not hold it; default: none).
 */
export function toImageResource(record: ImageRecord, repositories?: ReadonlyMap<string, RepositoryRecord>): ImageResource {
  const def = imageDefinition(record);
  const first = record.tags[0];
  const { name, tag } = first === undefined ? { name: '<none>', tag: '<none>' } : splitNameTag(first);
  const repository = first === undefined ? undefined : repositories?.get(name);
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
    ...(def.tool_approval === undefined ? {} : { tool_approval: def.tool_approval }),
    capabilities: def.capabilities,
    instructions: def.instructions,
    owner: repository?.owner ?? null,
    visibility: repository?.visibility ?? null,
  };
}

export interface ImageServiceOptions {
  store: Store;
  /** Default: silent. */
  logger?: Logger;
  /** Clock for build timestamps. Default `Date.now`. */
  now?: () => number;
  /** Where tag moves are journaled (see {@link repositoryJournalId}). Default none: not journaled. */
  journal?: AgentJournal;
  /**
   * The live tool set (`api.tools`, which embedding apps extend): builds naming a tool it does
   * not have are refused. Default none: tools are not checked.
   */
  tools?: { get(name: string): unknown; names(): string[] };
  /** The live model providers (`api.providers`): builds naming an unknown provider are refused. Default none: not checked. */
  providers?: { has(name: string): boolean; get(name: string): Pick<ModelProvider, 'configurationProblem'>; names(): string[] };
}

/** Who acts: a logged-in user, or undefined for the server itself (everything allowed). */
type Actor = Principal | undefined;

const VISIBILITIES: readonly RepositoryVisibility[] = ['public', 'private'];

function isAdmin(actor: Actor): boolean {
  return actor === undefined || actor.role === 'admin';
}

function isReserved(name: string): boolean {
  return namespaceOf(name) === RESERVED_REPOSITORY_NAMESPACE;
}

/** A repository no row describes (stored before owners were recorded, or put into the Store directly): the server's, public. */
function unownedRepository(name: string): RepositoryRecord {
  return { name, owner: SYSTEM_OWNER, visibility: 'public', created_at: STARTER_IMAGE_CREATED_AT };
}

/** True when `actor` may create, move and delete tags of `repository`. */
function mayManage(actor: Actor, repository: RepositoryRecord): boolean {
  if (isAdmin(actor)) return true;
  if (isReserved(repository.name) || repository.owner === SYSTEM_OWNER) return false;
  return repository.owner === actor?.username;
}

/** True when `actor` may read and run images of `repository`. */
function maySee(actor: Actor, repository: RepositoryRecord): boolean {
  return repository.visibility === 'public' || mayManage(actor, repository);
}

function shortDigest(digest: string | null): string {
  return digest === null ? 'nothing' : digest.slice(0, 'sha256:'.length + SHORT_ID_LENGTH);
}

export class ImageService {
  private readonly store: Store;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly journal: AgentJournal | undefined;
  private readonly tools: ImageServiceOptions['tools'];
  private readonly providers: ImageServiceOptions['providers'];

  constructor(options: ImageServiceOptions) {
    this.store = options.store;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.journal = options.journal;
    this.tools = options.tools;
    this.providers = options.providers;
  }

  /**
   * What `def` needs that this server lacks, against the live tool set and providers: unknown
   * tools and providers are `errors`, a known provider that is not configured a `warning`.
   */
  checkDefinition(def: Pick<AgentDefinition, 'model' | 'tools'>): DefinitionCheck {
    const errors: DefinitionCheck['errors'] = [];
    const warnings: string[] = [];
    const providers = this.providers;
    if (providers) {
      const provider = def.model.provider;
      if (!providers.has(provider)) {
        errors.push({ path: 'model.provider', message: `unknown model provider "${provider}" (this server has: ${providers.names().join(', ')})` });
      } else {
        const problem = providers.get(provider).configurationProblem?.();
        if (problem !== undefined) warnings.push(`model provider "${provider}" is not configured on this server: ${problem}`);
      }
    }
    const tools = this.tools;
    if (tools) {
      def.tools.forEach((tool, i) => {
        if (tools.get(tool) === undefined) errors.push({ path: `tools[${i}]`, message: `unknown tool "${tool}" (this server has: ${tools.names().join(', ')})` });
      });
    }
    return { errors, warnings };
  }

  /**
   * Why an image cannot run on this server now (unknown provider or tool, provider not
   * configured), or an empty list. Agents show it as `runnable` / `reason`.
   */
  runProblems(def: Pick<AgentDefinition, 'model' | 'tools'>): string[] {
    const check = this.checkDefinition(def);
    return [...check.errors.map((e) => `${e.path}: ${e.message}`), ...check.warnings];
  }

  /**
   * Builds and stores the image of `def` and tags it `name:tag`, moving the tag away from
   * any image that had it (like `docker build -t`). Refused with `invalid_request` when `def`
   * names a tool or model provider this server does not have, and with `forbidden` when
   * `options.principal` may not tag in the repository (see the module comment).
   * `options.createdAt` defaults to now (a fixed value gives a reproducible digest);
   * `options.principal` defaults to none (the server: allowed everywhere); `options.visibility`
   * sets the repository's visibility (default: public for a new repository, unchanged otherwise).
   */
  async build(def: AgentDefinition, options: { createdAt?: string; principal?: Principal; visibility?: RepositoryVisibility } = {}): Promise<ImageResource> {
    const { errors } = this.checkDefinition(def);
    if (errors.length > 0) throw invalidInput('image definition', errors);
    const createdAt = options.createdAt ?? new Date(this.now()).toISOString();
    const built = buildAgentImage(def, createdAt);
    const nameTag = `${def.name}:${def.tag}`;
    await this.authorizeTags(options.principal, [nameTag], built.digest, options.visibility);
    await this.store.putImage(
      { digest: built.digest, manifest: built.manifest, config: built.config, config_digest: built.config_digest, size: built.size, created_at: createdAt },
      [nameTag],
    );
    this.logger.info('image built', { image: nameTag, digest: built.digest, ...(options.principal ? { user: options.principal.username } : {}) });
    const stored = await this.store.getImage(built.digest);
    if (!stored) throw new Error(`image ${built.digest} vanished right after it was stored`);
    const repositories = await this.repositoriesOf(stored);
    return toImageResource(this.visibleRecord(stored, options.principal, repositories), repositories);
  }

  /**
   * The ownership check of every path that points tags at an image (builds, registry pulls,
   * imports), called right before the Store write: claims the repositories that do not exist yet
   * for `principal` (or for their namespace's user; see the module comment), refuses
   * `forbidden` when `principal` may not tag in one of them, and journals each tag it will
   * create or move. The journal is written first, so no move goes unrecorded; a write that then
   * fails leaves an entry for a move that did not happen, never the reverse.
   * `principal` undefined: the server itself, allowed everywhere.
   */
  async checkMayTag(principal: Principal | undefined, nameTags: readonly string[], digest: string): Promise<void> {
    await this.authorizeTags(principal, nameTags, digest, undefined);
  }

  private async authorizeTags(actor: Actor, nameTags: readonly string[], digest: string, visibility: RepositoryVisibility | undefined): Promise<void> {
    if (visibility !== undefined && !VISIBILITIES.includes(visibility)) throw invalidRequest('visibility must be "public" or "private"');
    const names = [...new Set(nameTags.map(repositoryOf))];
    for (const name of names) {
      let repository = await this.store.getRepository(name);
      if (repository === null) {
        // Tags without a repository row were written by code that recorded no owners (a Store
        // filled directly, an older instance mid-upgrade): the server's, like the migration says.
        const owner = (await this.hasTags(name)) ? SYSTEM_OWNER : await this.ownerOfNewRepository(name, actor);
        repository = await this.store.claimRepository({ name, owner, visibility: visibility ?? 'public', created_at: new Date(this.now()).toISOString() });
      }
      if (!mayManage(actor, repository)) throw this.notYours(name);
      if (visibility !== undefined && repository.visibility !== visibility) await this.store.updateRepository(name, { visibility });
    }
    for (const nameTag of new Set(nameTags)) {
      const from = await this.store.resolveTag(nameTag);
      if (from !== digest) await this.journalTag(actor, nameTag, from === null ? 'tag_created' : 'tag_moved', from, digest);
    }
  }

  /** True when some tag of repository `name` exists (the rare path: a repository without its row). */
  private async hasTags(name: string): Promise<boolean> {
    return (await this.store.listImages()).some((image) => image.tags.some((t) => repositoryOf(t) === name));
  }

  /** Who a repository created now by `actor` belongs to; `forbidden` when `actor` may not create it. */
  private async ownerOfNewRepository(name: string, actor: Actor): Promise<string> {
    const namespace = namespaceOf(name);
    if (namespace === RESERVED_REPOSITORY_NAMESPACE) {
      if (!isAdmin(actor)) throw forbidden(`image names under ${RESERVED_REPOSITORY_NAMESPACE}/ are reserved for admins`);
      return SYSTEM_OWNER;
    }
    if (namespace !== null && namespace !== actor?.username && (await this.store.getUser(namespace)) !== null) {
      if (!isAdmin(actor)) {
        throw forbidden(`the namespace ${namespace}/ belongs to user ${namespace}: only they or an admin may create repositories in it`);
      }
      // An admin creating a repository in a user's namespace creates it for that user.
      return namespace;
    }
    return actor?.username ?? SYSTEM_OWNER;
  }

  private notYours(name: string): SentinelError {
    if (isReserved(name)) return forbidden(`image names under ${RESERVED_REPOSITORY_NAMESPACE}/ are reserved for admins`);
    return forbidden(`repository ${name} belongs to another user: only its owner or an admin may create, move or delete its tags`);
  }

  private async journalTag(actor: Actor, nameTag: string, type: 'tag_created' | 'tag_moved' | 'tag_deleted', from: string | null, to: string | null): Promise<void> {
    const repository = repositoryOf(nameTag);
    const by = actor?.username ?? SYSTEM_OWNER;
    const verb = type === 'tag_created' ? 'created' : type === 'tag_moved' ? 'moved' : 'deleted';
    const content =
      type === 'tag_created' ? `Tag ${nameTag} created at ${shortDigest(to)} by ${by}`
      : type === 'tag_moved' ? `Tag ${nameTag} moved from ${shortDigest(from)} to ${shortDigest(to)} by ${by}`
      : `Tag ${nameTag} deleted (was ${shortDigest(from)}) by ${by}`;
    const data = { repository, tag: splitNameTag(nameTag).tag, name_tag: nameTag, from, to, by };
    if (type === 'tag_moved') this.logger.info('image tag moved', data);
    if (this.journal) await this.journal.event(repositoryJournalId(repository), type, content, data);
    else this.logger.debug(`image tag ${verb}`, data);
  }

  /** Every repository by name. */
  private async repositoryMap(): Promise<Map<string, RepositoryRecord>> {
    return new Map((await this.store.listRepositories()).map((r) => [r.name, r]));
  }

  /** The repositories of one image's tags by name (one lookup each: an image has few tags). */
  private async repositoriesOf(record: ImageRecord): Promise<Map<string, RepositoryRecord>> {
    const names = [...new Set(record.tags.map(repositoryOf))];
    const found = await Promise.all(names.map((name) => this.store.getRepository(name)));
    return new Map(found.filter((r): r is RepositoryRecord => r !== null).map((r) => [r.name, r]));
  }

  private async repositoryOrUnowned(name: string): Promise<RepositoryRecord> {
    return (await this.store.getRepository(name)) ?? unownedRepository(name);
  }

  /**
   * `record` as `actor` may see it: only the tags of repositories they may see (null when it
   * has tags and they may see none). An untagged image is visible: its digest is all there is,
   * and whoever knows it (an agent's `image_id`, a pull by digest) may use it.
   */
  private visibleRecord(record: ImageRecord, actor: Actor, repositories: ReadonlyMap<string, RepositoryRecord>): ImageRecord;
  private visibleRecord(record: ImageRecord, actor: Actor, repositories: ReadonlyMap<string, RepositoryRecord>, strict: true): ImageRecord | null;
  private visibleRecord(record: ImageRecord, actor: Actor, repositories: ReadonlyMap<string, RepositoryRecord>, strict = false): ImageRecord | null {
    if (isAdmin(actor) || record.tags.length === 0) return record;
    const tags = record.tags.filter((t) => maySee(actor, repositories.get(repositoryOf(t)) ?? unownedRepository(repositoryOf(t))));
    if (tags.length === 0 && strict) return null;
    return tags.length === record.tags.length ? record : { ...record, tags };
  }

  /**
   * Local images `principal` may see (default none: every image), newest first. An untagged
   * image shows only to admins (and without a principal): nothing says whose it was.
   */
  async list(principal?: Principal): Promise<ImageResource[]> {
    const [records, repositories] = await Promise.all([this.store.listImages(), this.repositoryMap()]);
    const out: ImageResource[] = [];
    for (const record of records) {
      if (record.tags.length === 0 && !isAdmin(principal)) continue;
      const visible = this.visibleRecord(record, principal, repositories, true);
      if (visible) out.push(toImageResource(visible, repositories));
    }
    return out;
  }

  /**
   * Finds the image a reference points at (see {@link parseImageReference}), as `principal`
   * may see it (default none: every image, every tag): a tag of a private repository of
   * someone else is `not_found`, and the record lists only the tags `principal` may see.
   * Throws `invalid_request` for a malformed reference or an ambiguous short ID, and
   * `not_found` (`image "<ref>" not found`) when nothing matches.
   */
  async resolve(ref: string, principal?: Principal): Promise<ImageRecord> {
    const { record, viaTag } = await this.find(ref);
    if (isAdmin(principal)) return record;
    if (viaTag !== null && !maySee(principal, await this.repositoryOrUnowned(repositoryOf(viaTag)))) throw notFound('image', ref);
    const visible = this.visibleRecord(record, principal, await this.repositoriesOf(record), true);
    if (!visible) throw notFound('image', ref);
    return visible;
  }

  /** The record `ref` names, and the `name:tag` it was found by (null: by digest or short ID). */
  private async find(ref: string): Promise<{ record: ImageRecord; viaTag: string | null }> {
    const parsed = parseImageReference(ref);
    let digest: string | null;
    let viaTag: string | null = null;
    if (parsed.kind === 'digest') {
      digest = parsed.digest;
    } else if (parsed.kind === 'tag') {
      digest = await this.store.resolveTag(parsed.nameTag);
      viaTag = parsed.nameTag;
    } else {
      digest = parsed.nameTag === null ? null : await this.store.resolveTag(parsed.nameTag);
      if (digest !== null) viaTag = parsed.nameTag;
      else {
        const matches = await this.store.findImagesByDigestPrefix(parsed.hex);
        if (matches.length > 1) throw invalidRequest(`ambiguous image id "${ref}": ${matches.length} images match; give more digits`);
        const [only] = matches;
        if (only) return { record: only, viaTag: null };
      }
    }
    const record = digest === null ? null : await this.store.getImage(digest);
    if (!record) throw notFound('image', ref);
    return { record, viaTag };
  }

  /** The image a reference points at, as the API returns it to `principal` (default none: the server). */
  async get(ref: string, principal?: Principal): Promise<ImageResource> {
    const record = await this.resolve(ref, principal);
    return toImageResource(record, await this.repositoriesOf(record));
  }

  /**
   * Deletes the image (every tag pointing at it goes with it). Refused with `conflict`
   * while agents use it: an agent keeps running the exact image it was created from.
   * With a `principal` who is not an admin: `not_found` for an image they may not see, and
   * `forbidden` unless they own every repository it is tagged in (an untagged image: admins only).
   * Returns the digest and the tags it had (for the audit log).
   */
  async delete(ref: string, principal?: Principal): Promise<{ digest: string; tags: string[] }> {
    const visible = await this.resolve(ref, principal);
    const record = isAdmin(principal) ? visible : ((await this.store.getImage(visible.digest)) ?? visible);
    if (!isAdmin(principal)) {
      if (record.tags.length === 0) throw forbidden(`image ${ref} has no tags: only an admin may delete an untagged image`);
      const repositories = await this.repositoriesOf(record);
      const foreign = new Set(record.tags.map(repositoryOf).filter((name) => !mayManage(principal, repositories.get(name) ?? unownedRepository(name))));
      if (foreign.size > 0) {
        throw forbidden(`image ${ref} is tagged in ${foreign.size} repositor${foreign.size === 1 ? 'y' : 'ies'} you do not own: only their owners or an admin may delete it`);
      }
    }
    const users = await this.store.countAgentsUsingImage(record.digest);
    if (users > 0) throw conflict(`image ${ref} is used by ${users} agent(s)`);
    // Journaled first, like tag moves: a delete never goes unrecorded.
    for (const nameTag of record.tags) await this.journalTag(principal, nameTag, 'tag_deleted', record.digest, null);
    if (!(await this.store.deleteImage(record.digest))) throw notFound('image', ref);
    this.logger.info('image deleted', { image: ref, digest: record.digest, ...(principal ? { user: principal.username } : {}) });
    return { digest: record.digest, tags: record.tags };
  }

  /** The repository a `name` or `name:tag` belongs to, checked; `invalid_request` for anything else. */
  private repositoryName(ref: string): string {
    const nameTag = ref.length <= MAX_REF_LENGTH && !isDigest(ref) ? parseNameTag(ref) : null;
    if (nameTag === null) throw invalidRequest(`invalid repository "${ref.slice(0, 80)}": give an image name (name or name:tag), not an ID`);
    return repositoryOf(nameTag);
  }

  /** A repository `principal` may see, or `not_found` (an unknown one, or someone else's private one). */
  private async visibleRepository(name: string, principal: Actor): Promise<RepositoryRecord> {
    const repository = await this.store.getRepository(name);
    if (repository === null || !maySee(principal, repository)) throw new SentinelError('not_found', `repository ${name} not found`);
    return repository;
  }

  private async toRepositoryResource(repository: RepositoryRecord): Promise<RepositoryResource> {
    // Tags come from the images: a repository keeps its owner after its last tag went.
    const tags = (await this.store.listImages()).flatMap((image) => image.tags).filter((t) => repositoryOf(t) === repository.name).sort();
    return { ...repository, tags };
  }

  /** The repository of `ref` (a name, or `name:tag`) with its owner, visibility and tags. */
  async repository(ref: string, principal?: Principal): Promise<RepositoryResource> {
    return this.toRepositoryResource(await this.visibleRepository(this.repositoryName(ref), principal));
  }

  /**
   * Makes the repository of `ref` public or private (journaled). `not_found` when `principal`
   * may not see it, `forbidden` when they see it but do not own it.
   */
  async setVisibility(principal: Principal | undefined, ref: string, visibility: RepositoryVisibility): Promise<RepositoryResource> {
    if (!VISIBILITIES.includes(visibility)) throw invalidRequest('visibility must be "public" or "private"');
    const name = this.repositoryName(ref);
    const repository = await this.visibleRepository(name, principal);
    if (!mayManage(principal, repository)) throw this.notYours(name);
    if (repository.visibility === visibility) return this.toRepositoryResource(repository);
    const updated = await this.store.updateRepository(name, { visibility });
    if (updated === null) throw new SentinelError('not_found', `repository ${name} not found`);
    const by = principal?.username ?? SYSTEM_OWNER;
    await this.journal?.event(repositoryJournalId(name), 'visibility_changed', `Repository ${name} made ${visibility} by ${by}`, { repository: name, from: repository.visibility, to: visibility, by });
    this.logger.info('repository visibility changed', { repository: name, visibility, user: by });
    return this.toRepositoryResource(updated);
  }

  /**
   * The journal of the repository of `ref`: its tags created, moved and deleted and its
   * visibility changes, oldest first, after `since` (an event seq; default 0), at most `limit`
   * (default 100). `not_found` when `principal` may not see the repository.
   */
  async history(ref: string, principal?: Principal, options: { since?: number; limit?: number } = {}): Promise<EventRecord[]> {
    const name = this.repositoryName(ref);
    await this.visibleRepository(name, principal);
    return this.store.listEvents(repositoryJournalId(name), options.since ?? 0, options.limit ?? 100);
  }

  /**
   * Makes sure `sentinel/echo:latest` exists, building it from the fixed starter definition
   * when it does not resolve. An existing tag (even moved to another image) is left alone.
   */
  async ensureStarterImage(): Promise<ImageResource> {
    try {
      return await this.get(STARTER_IMAGE_REF);
    } catch (err) {
      if (!isSentinelError(err) || err.code !== 'not_found') throw err;
    }
    // Through the parser, so the starter image is exactly what a user-built one would be.
    return this.build(parseAgentDefinition(STARTER_IMAGE_DEFINITION), { createdAt: STARTER_IMAGE_CREATED_AT });
  }
}
