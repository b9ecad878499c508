/**
 * Content-Type → the core's body formats. Only UTF-8 is accepted: the core decodes text, and
 * guessing another charset would turn bytes into the wrong characters silently.
 */
import { SentinelError, type BodyFormat } from '@sentinel/api-core';

const MEDIA_TYPE_BY_FORMAT: Record<BodyFormat, string> = { json: 'application/json', yaml: 'application/yaml' };
const YAML_TYPES = new Set(['application/yaml', 'application/x-yaml', 'text/yaml']);

function formatOfMediaType(mediaType: string): BodyFormat | undefined {
  if (mediaType === 'application/json' || mediaType.endsWith('+json')) return 'json';
  if (YAML_TYPES.has(mediaType)) return 'yaml';
  return undefined;
}

function unsupported(accepted: readonly BodyFormat[]): SentinelError {
  const types = accepted.map((f) => MEDIA_TYPE_BY_FORMAT[f]);
  const message = types.length === 1 ? `Content-Type must be ${types[0]}` : `Content-Type must be one of ${types.join(', ')}`;
  return new SentinelError('unsupported_media_type', message);
}

/**
 * The format of a body sent with `contentType`, among the route's `accepted` formats.
 * Throws `unsupported_media_type` for a missing or unaccepted type, or a charset other than UTF-8.
 */
export function bodyFormatOf(contentType: string | undefined, accepted: readonly BodyFormat[]): BodyFormat {
  if (contentType === undefined) throw unsupported(accepted);
  const [typePart = '', ...parameters] = contentType.split(';');
  const format = formatOfMediaType(typePart.trim().toLowerCase());
  if (format === undefined || !accepted.includes(format)) throw unsupported(accepted);
  for (const parameter of parameters) {
    const eq = parameter.indexOf('=');
    if (eq === -1 || parameter.slice(0, eq).trim().toLowerCase() !== 'charset') continue;
    const charset = parameter.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1').toLowerCase();
    if (charset !== 'utf-8' && charset !== 'utf8') {
      throw new SentinelError('unsupported_media_type', `unsupported charset "${charset}": send UTF-8`);
    }
  }
  return format;
}
