/**
 * Reading a Prometheus text exposition the way a scraper does: `parse-prometheus-text-format`
 * (a real parser of the format, not a regex of our own), and small lookups over its result for
 * the metrics specs.
 *
 * That parser folds every series of a labelled histogram into one (its `flattenMetrics` keeps
 * only the `le` buckets), so histograms are read the way Prometheus stores them anyway: as
 * their `_bucket`, `_sum` and `_count` series. The text is parsed twice: as served, for the
 * declared types, and with histogram TYPE lines left out, for those series with their labels.
 */
import { createRequire } from 'node:module';

/** One sample of a counter or gauge, or one histogram series (buckets by `le`). */
export interface PromSample {
  labels?: Record<string, string>;
  value?: string;
  buckets?: Record<string, string>;
  count?: string;
  sum?: string;
}

/** One metric family. */
export interface PromFamily {
  name: string;
  help: string;
  type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
  metrics: PromSample[];
}

/** A parsed exposition: families by name (a histogram `h` as `h`, typed, and `h_bucket`, `h_sum`, `h_count`). */
export type Exposition = Map<string, PromFamily>;

// A CommonJS package without types: required, and given the shape its README documents.
const parse = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => PromFamily[];

/** Parses an exposition text into its families by name. */
export function parseExposition(text: string): Exposition {
  const families: Exposition = new Map();
  for (const family of parse(text)) families.set(family.name, family);
  const histograms = [...families.values()].filter((family) => family.type === 'HISTOGRAM').map((family) => family.name);
  const untyped = text
    .split('\n')
    .filter((line) => !histograms.some((name) => line === `# TYPE ${name} histogram`))
    .join('\n');
  // prom-client writes `_sum` and `_count` per label set, in turns, so one name comes back as
  // several families: their samples belong together.
  const suffixed = new Map<string, PromFamily>();
  for (const family of parse(untyped)) {
    if (families.has(family.name)) continue;
    const seen = suffixed.get(family.name);
    if (seen === undefined) suffixed.set(family.name, { ...family, metrics: [...family.metrics] });
    else seen.metrics.push(...family.metrics);
  }
  for (const [name, family] of suffixed) families.set(name, family);
  return families;
}

function matches(sample: PromSample, labels: Record<string, string>): boolean {
  return Object.entries(labels).every(([name, value]) => sample.labels?.[name] === value);
}

/** The samples of `name` whose labels include `labels`; throws when the family is missing. */
export function samplesOf(families: Map<string, PromFamily>, name: string, labels: Record<string, string> = {}): PromSample[] {
  const family = families.get(name);
  if (family === undefined) throw new Error(`no metric ${name} in the exposition (has: ${[...families.keys()].join(', ')})`);
  return family.metrics.filter((sample) => matches(sample, labels));
}

function total(samples: PromSample[]): number {
  let sum = 0;
  for (const sample of samples) sum += Number(sample.value ?? 'NaN');
  return sum;
}

/** Sum of the values of the matching samples of a counter or gauge `name`, or of the observation counts of a histogram `name`. */
export function valueOf(families: Exposition, name: string, labels: Record<string, string> = {}): number {
  return total(histogramPart(families, name, '_count', labels) ?? samplesOf(families, name, labels));
}

/** Sum of the observed values (`_sum`) of the matching series of histogram `name`. */
export function sumOf(families: Exposition, name: string, labels: Record<string, string> = {}): number {
  const samples = histogramPart(families, name, '_sum', labels);
  if (samples === undefined) throw new Error(`${name} is not a histogram`);
  return total(samples);
}

/** The label sets of histogram `name` (one per series), from its `_count` series. */
export function histogramSeries(families: Exposition, name: string): Record<string, string>[] {
  return (histogramPart(families, name, '_count', {}) ?? []).map((sample) => sample.labels ?? {});
}

/** The `suffix` samples of histogram `name` (none yet when it has no series); undefined when `name` is no histogram. */
function histogramPart(families: Exposition, name: string, suffix: '_count' | '_sum', labels: Record<string, string>): PromSample[] | undefined {
  if (samplesFamilyType(families, name) !== 'HISTOGRAM') return undefined;
  return families.has(`${name}${suffix}`) ? samplesOf(families, `${name}${suffix}`, labels) : [];
}

function samplesFamilyType(families: Exposition, name: string): PromFamily['type'] {
  const family = families.get(name);
  if (family === undefined) throw new Error(`no metric ${name} in the exposition (has: ${[...families.keys()].join(', ')})`);
  return family.type;
}

/** Every series in the exposition, a histogram's `_bucket`, `_sum` and `_count` lines included, for cardinality checks. */
export function seriesCount(families: Exposition, include: (name: string) => boolean = () => true): number {
  let count = 0;
  for (const family of families.values()) {
    // The typed histogram family is a folded copy of its suffixed ones: count those only.
    if (family.type === 'HISTOGRAM' || !include(family.name)) continue;
    count += family.metrics.length;
  }
  return count;
}
