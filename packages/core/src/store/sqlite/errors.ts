/** How the SQLite store reports failures: better-sqlite3's error codes turned into the SentinelError codes callers branch on. */
import { SentinelError, isSentinelError } from '../../contract/errors.js';
import { STORE_REFUSED_MESSAGE } from '../types.js';

/** The `<reason>` of `cannot open database <path>: <reason>`, in words a user can act on. */
export function openFailureReason(err: unknown): string {
  if (isSentinelError(err)) return err.message;
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ENOENT':
      return 'the directory does not exist';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'it is a directory';
    case 'SQLITE_NOTADB':
      return 'the file is not a SQLite database';
    default:
      return err instanceof Error ? err.message : String(err);
  }
}

/** Messages naming the record a constraint violation is about. */
export interface ConstraintMessages {
  /** Message for a UNIQUE / PRIMARY KEY violation; gets SQLite's message to tell keys apart. */
  conflict?: (sqliteMessage: string) => string;
  /** Message for a FOREIGN KEY violation. */
  foreignKey?: () => string;
}

/** Runs one write and turns SQLite's failures into the SentinelError codes callers branch on. */
export function run<T>(write: () => T, messages: ConstraintMessages = {}): T {
  try {
    return write();
  } catch (err) {
    throw sqliteFailure(err, messages);
  }
}

/** The SentinelError a SQLite failure means to callers (other errors unchanged). */
export function sqliteFailure(err: unknown, messages: ConstraintMessages = {}): unknown {
  if (isSentinelError(err)) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : '';
  switch (code) {
    case 'SQLITE_CONSTRAINT_UNIQUE':
    case 'SQLITE_CONSTRAINT_PRIMARYKEY':
      return new SentinelError('conflict', messages.conflict?.(message) ?? 'the record already exists', { cause: err });
    case 'SQLITE_CONSTRAINT_FOREIGNKEY':
      return new SentinelError('invalid_request', messages.foreignKey?.() ?? 'a referenced record does not exist', { cause: err });
    case 'SQLITE_CONSTRAINT_CHECK':
    case 'SQLITE_CONSTRAINT_NOTNULL':
      // SQLite's text names the constraint and its SQL: it stays in `cause` (logged), never in the message.
      return new SentinelError('invalid_request', STORE_REFUSED_MESSAGE, { cause: err });
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      return new SentinelError('unavailable', 'the database is busy; try again', { cause: err });
    case 'SQLITE_FULL':
      return new SentinelError('unavailable', 'the database disk is full', { cause: err });
    default:
      return err;
  }
}
