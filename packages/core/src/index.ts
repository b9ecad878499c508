export * from './errors.js';
export * from './logger.js';
export type * from './models.js';
export type * from './store/types.js';
export type * from './routes/types.js';
export * from './validation.js';
export * from './api.js';
