/**
 * `client.images`: the server's local images. A build takes a Sentinelfile as its YAML text (sent
 * as application/yaml, so the server parses it exactly as `sentinel build` would) or as an object.
 */
import { segment, signalOf, type CallOptions, type TransportHolder } from './call.js';
import type { AgentDefinition, Image, Visibility } from './models.js';

export interface BuildOptions extends CallOptions {
  /** The repository's visibility (default: public when new, else unchanged). */
  visibility?: Visibility;
}

export class ImagesApi {
  readonly #holder: TransportHolder;

  constructor(holder: TransportHolder) {
    this.#holder = holder;
  }

  /** The images you may see (public ones and your own; every image for an admin). */
  async list(options: CallOptions = {}): Promise<Image[]> {
    const answer = await this.#holder.transport.request<{ images: Image[] }>('GET', '/v1/images', signalOf(options));
    return answer.images;
  }

  /** One image by ID, short ID, `name:tag` or `name`. */
  get(ref: string, options: CallOptions = {}): Promise<Image> {
    return this.#holder.transport.request<Image>('GET', `/v1/images/${segment(ref)}`, signalOf(options));
  }

  /** Builds an image from a Sentinelfile (its YAML text, or the definition as an object) and tags it name:tag. */
  build(sentinelfile: string | AgentDefinition, options: BuildOptions = {}): Promise<Image> {
    const body = typeof sentinelfile === 'string' ? { rawBody: sentinelfile, contentType: 'application/yaml' } : { body: sentinelfile };
    return this.#holder.transport.request<Image>('POST', '/v1/images', { ...body, query: { visibility: options.visibility }, ...signalOf(options) });
  }

  /** Deletes an image with all its tags (409 `conflict` while agents use it). */
  async delete(ref: string, options: CallOptions = {}): Promise<void> {
    await this.#holder.transport.request<void>('DELETE', `/v1/images/${segment(ref)}`, signalOf(options));
  }
}
