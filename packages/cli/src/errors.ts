/**
 * The two ways `sentinel` fails. The binary prints the one-line message of either and exits
 * 2 for a {@link UsageError} (the conventional "usage" status, so scripts can tell a typo
 * from a runtime failure) and 1 for anything else.
 */

/** A mistake in how the command was called: unknown flag, bad value, stray argument, half a TLS pair. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A runtime failure already phrased for the user (unreadable file, port in use...). */
export class CommandError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CommandError';
  }
}

/** Name check rather than `instanceof`, so it survives duplicated module copies. */
export function isUsageError(value: unknown): value is UsageError {
  return value instanceof Error && value.name === 'UsageError';
}

/**
 * The message of anything thrown, squeezed onto one line: the binary's contract is exactly
 * one stderr line per failure, and some library messages span several.
 */
export function oneLineMessage(value: unknown): string {
  const text = value instanceof Error ? value.message : typeof value === 'string' ? value : String(value);
  const line = text.replace(/\s*\n\s*/g, ' ').trim();
  return line.length > 0 ? line : 'unknown error';
}

const FS_REASONS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'is a directory',
  ENOTDIR: 'a parent of it is not a directory',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'name too long',
  EMFILE: 'too many open files',
};

/** A short reason for a file-system error, without Node's `ENOENT: ..., open '<path>'` noise. */
export function describeFsError(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && FS_REASONS[code] !== undefined) return FS_REASONS[code];
  return oneLineMessage(err);
}
