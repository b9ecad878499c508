/**
 * Vitest setup file: installs the OpenAPI contract checker (contract.ts) on the global undici
 * dispatcher for the REST specs (packages/http, core, ws and client tests: the SDK specs call every route through fetch), and fails a test whose
 * responses broke the document, with each violation spelled out. The number of responses checked
 * goes to the global setup (contract-global-setup.ts), which prints the total once.
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, inject } from 'vitest';
import { Agent, getGlobalDispatcher, setGlobalDispatcher, type Dispatcher } from 'undici';
import { closeDocumentAgent, contractInterceptor, createRecorder, formatViolations, type ContractRecorder } from './contract.js';

/** The specs whose REST responses are held to the document. */
const CHECKED_FILES = /[\\/]packages[\\/](http|core|ws|client)[\\/]test[\\/]/;

const recorder: ContractRecorder = createRecorder();
const previous = getGlobalDispatcher();
let checking: Dispatcher | undefined;

async function takeViolations(): Promise<string | undefined> {
  while (recorder.pending.size > 0) await Promise.all([...recorder.pending]);
  const violations = recorder.violations.splice(0);
  if (violations.length === 0) return undefined;
  return `${violations.length} response(s) the OpenAPI document does not describe:\n\n${formatViolations(violations)}`;
}

beforeAll(() => {
  // Other packages' specs (the CLI's) keep the dispatcher they had: nothing changes for them.
  if (!CHECKED_FILES.test(expect.getState().testPath ?? '')) return;
  recorder.active = true;
  checking = new Agent().compose(contractInterceptor(recorder));
  setGlobalDispatcher(checking);
});

afterEach(async () => {
  const problem = await takeViolations();
  if (problem) throw new Error(problem);
});

afterAll(async () => {
  const problem = await takeViolations();
  if (checking) {
    recorder.active = false;
    setGlobalDispatcher(previous);
    await Promise.all([checking.close(), closeDocumentAgent()]);
  }
  if (recorder.checked > 0) appendFileSync(join(inject('contractCountDir'), `${process.pid}.counts`), `${recorder.checked}\n`);
  if (problem) throw new Error(problem);
});
