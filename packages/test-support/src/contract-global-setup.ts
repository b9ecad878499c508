/**
 * Vitest global setup of the OpenAPI contract checker: a directory where each test file adds
 * how many responses it checked, and, at the end of the run, the total printed once.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    contractCountDir: string;
  }
}

export default function setup(project: TestProject): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-contract-'));
  project.provide('contractCountDir', dir);
  return () => {
    let total = 0;
    for (const file of readdirSync(dir)) {
      for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) total += Number(line) || 0;
    }
    rmSync(dir, { recursive: true, force: true });
    if (total > 0) console.log(`OpenAPI contract checker: ${total} REST responses validated against the document`);
  };
}
