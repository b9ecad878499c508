/**
 * `@sentinel/api-core/postgres`: the PostgreSQL Store for running several instances on one
 * database (docs/ARCHITECTURE.md#scale-out). A sub-path of its own so that `pg` is loaded only by those who use it.
 */
export { openPostgresStore, type PostgresStore, type PostgresStoreOptions } from './store.js';
export { postgresMigrations, POSTGRES_MIGRATIONS_TABLE_SQL, type PostgresMigration } from './migrations.js';
export {
  PostgresRegistryBackend,
  REGISTRY_CHUNK_BYTES,
  type PostgresRegistryBackendOptions,
  type PutBlobOptions,
  type PutBlobResult,
  type RegistryDatabase,
} from './registry.js';
export { isPostgresUrl, redactDatabaseUrl } from './url.js';
