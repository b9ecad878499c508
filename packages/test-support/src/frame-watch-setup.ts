/**
 * vitest `setupFiles` entry (vitest.config.ts): every spec's client WebSocket frames are
 * checked against the AsyncAPI document (frame-watch.ts).
 */
import { installFrameValidation } from './frame-watch.js';

installFrameValidation();
