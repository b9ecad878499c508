// The report as text (stdout) and as Markdown (docs/BENCHMARKS.md).

function formatNumber(value, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  if (unit === 'ms') return value < 10 ? value.toFixed(3) : value.toFixed(1);
  if (unit === 'KiB/socket' || unit === 'us') return value.toFixed(1);
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US');
  return value.toFixed(1);
}

function formatRatio(check) {
  if (check.value === null || check.value === undefined) return '–';
  switch (check.format) {
    case 'ms':
      return `${check.value.toFixed(3)} ms`;
    case 'count':
      return String(check.value);
    case 'rate':
      return `${Math.round(check.value).toLocaleString('en-US')}/s`;
    default:
      return `${check.value.toFixed(2)}×`;
  }
}

function verdict(check) {
  if (check.pass === true) return 'PASS';
  if (check.pass === false) return 'MISS';
  return '';
}

function pad(text, width, right = false) {
  const s = String(text);
  return right ? s.padStart(width) : s.padEnd(width);
}

/** Plain-text table: one block per scenario, its rows, then its ratios against the targets. */
export function formatTable(report) {
  const lines = [];
  const header = `${pad('scenario / contender', 44)}${pad('median', 14, true)}${pad('min–max', 26, true)}${pad('p50 ms', 10, true)}${pad('p99 ms', 10, true)}${pad('CPU µs/op', 12, true)}`;
  lines.push(header, '-'.repeat(header.length));
  for (const scenario of report.scenarios) {
    lines.push(`${scenario.title} [${scenario.unit}${scenario.better === 'lower' ? ', lower is better' : ''}]`);
    if (scenario.error) lines.push(`  FAILED: ${scenario.error}`);
    for (const row of scenario.rows) {
      const range = `${formatNumber(row.min, scenario.unit)}–${formatNumber(row.max, scenario.unit)}`;
      lines.push(
        `${pad(`  ${row.contender}`, 44)}${pad(formatNumber(row.median, scenario.unit), 14, true)}${pad(range, 26, true)}` +
          `${pad(row.p50_ms === undefined ? '' : formatNumber(row.p50_ms, 'ms'), 10, true)}${pad(row.p99_ms === undefined ? '' : formatNumber(row.p99_ms, 'ms'), 10, true)}` +
          `${pad(row.cpu_us_per_request === undefined ? '' : formatNumber(row.cpu_us_per_request, 'us'), 12, true)}`,
      );
    }
    for (const check of scenario.checks) {
      lines.push(`${pad(`  → ${check.name}`, 44)}${pad(formatRatio(check), 14, true)}   target ${check.target}  ${verdict(check)}`);
    }
    for (const note of scenario.notes ?? []) lines.push(`  note: ${note}`);
  }
  return lines.join('\n');
}

/** Markdown tables for docs/BENCHMARKS.md: the figures, then the ratios against the targets. */
export function formatMarkdown(report) {
  const lines = [
    '| Scenario | Contender | Median | Min–max | p50 ms | p99 ms | CPU µs/op |',
    '|---|---|--:|--:|--:|--:|--:|',
  ];
  for (const scenario of report.scenarios) {
    scenario.rows.forEach((row, i) => {
      const title = i === 0 ? `${scenario.title} (${scenario.unit})` : '';
      lines.push(
        `| ${title} | ${row.contender} | ${formatNumber(row.median, scenario.unit)} | ${formatNumber(row.min, scenario.unit)}–${formatNumber(row.max, scenario.unit)} | ` +
          `${row.p50_ms === undefined ? '' : formatNumber(row.p50_ms, 'ms')} | ${row.p99_ms === undefined ? '' : formatNumber(row.p99_ms, 'ms')} | ` +
          `${row.cpu_us_per_request === undefined ? '' : formatNumber(row.cpu_us_per_request, 'us')} |`,
      );
    });
  }
  lines.push('', '| Scenario | Ratio | Value | Target | Result |', '|---|---|--:|---|---|');
  for (const scenario of report.scenarios) {
    for (const check of scenario.checks) {
      lines.push(`| ${scenario.title} | ${check.name} | ${formatRatio(check)} | ${check.target} | ${verdict(check) || 'reported'} |`);
    }
  }
  return lines.join('\n');
}
