#!/usr/bin/env node
// Prints a results file (default bench/results/latest.json) as text or, with --markdown, as the
// Markdown tables docs/BENCHMARKS.md carries.
//   node bench/report.mjs [--markdown] [results.json]
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { formatMarkdown, formatTable } from './lib/table.mjs';

const args = process.argv.slice(2);
const markdown = args.includes('--markdown');
const file = args.find((a) => !a.startsWith('--')) ?? fileURLToPath(new URL('./results/latest.json', import.meta.url));
const report = JSON.parse(readFileSync(file, 'utf8'));
process.stdout.write(`${markdown ? formatMarkdown(report) : formatTable(report)}\n`);
