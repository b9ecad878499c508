// The baselines use the same libraries the server does (better-sqlite3, jsonwebtoken), from the
// core package's own node_modules: they are the core's dependencies, not the workspace root's.
import { createRequire } from 'node:module';

const requireFromCore = createRequire(new URL('../../packages/core/package.json', import.meta.url));

/** better-sqlite3's Database class. */
export const Database = requireFromCore('better-sqlite3');
/** jsonwebtoken. */
export const jwt = requireFromCore('jsonwebtoken');
