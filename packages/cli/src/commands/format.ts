/**
 * Output helpers: Docker-style borderless tables that fit the terminal (the widest columns give
 * way first, cut with `…`), JSON exactly as the API sent it, and human sizes and ages.
 */
import { paint, type Terminal } from './context.js';

const GAP = 3;

/**
 * Column widths so the row fits `columns`: the widest column gives way first, one character at
 * a time, never below its header; the first column (the id people copy) is never cut. When even
 * that does not fit, the rows are as narrow as they can be and wrap.
 */
function fitWidths(natural: number[], headers: string[], columns: number | undefined): number[] {
  const widths = [...natural];
  if (columns === undefined) return widths;
  const floor = headers.map((h, i) => (i === 0 ? (natural[0] as number) : Math.max(4, h.length)));
  const total = (): number => widths.reduce((sum, w) => sum + w, 0) + GAP * (widths.length - 1);
  while (total() > columns) {
    let widest = -1;
    for (let i = 1; i < widths.length; i++) {
      if ((widths[i] as number) > (floor[i] as number) && (widest < 0 || (widths[i] as number) > (widths[widest] as number))) widest = i;
    }
    if (widest < 0) break;
    widths[widest] = (widths[widest] as number) - 1;
  }
  return widths;
}

function cut(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}…`;
}

/** A table: header row in bold (on a colour terminal), then the rows, fitted to the width. */
export function table(term: Terminal, headers: string[], rows: string[][]): string {
  const natural = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').replace(/\s+/g, ' ').length)));
  const widths = fitWidths(natural, headers, term.columns);
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => {
        const text = cut(cell.replace(/\s+/g, ' '), widths[i] as number);
        return i === cells.length - 1 ? text : text.padEnd(widths[i] as number);
      })
      .join(' '.repeat(GAP))
      .trimEnd();
  const head = line(headers);
  return [paint(term, 'bold', head), ...rows.map(line)].join('\n') + '\n';
}

/** `--format json`: the API's objects, unchanged, one JSON document. */
export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** `12 seconds ago`, `3 hours ago`, as `docker ps` shows ages. */
export function ago(iso: string, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (Number.isNaN(seconds)) return iso;
  const units: [number, string][] = [
    [86_400 * 365, 'year'],
    [86_400 * 30, 'month'],
    [86_400 * 7, 'week'],
    [86_400, 'day'],
    [3_600, 'hour'],
    [60, 'minute'],
  ];
  for (const [size, name] of units) {
    const n = Math.floor(seconds / size);
    if (n >= 1) return `${n} ${name}${n === 1 ? '' : 's'} ago`;
  }
  return seconds < 2 ? 'Less than a second ago' : `${seconds} seconds ago`;
}

export function bytes(n: number): string {
  if (n < 1000) return `${n}B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = -1;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)}${units[unit] as string}`;
}

/** Docker's short ids: 12 hex digits, without a `sha256:` prefix. */
export function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}
