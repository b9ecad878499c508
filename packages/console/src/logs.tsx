/**
 * The Logs pane: follows the open agent's log (the last lines, then each new one as it is
 * written) at the chosen minimum level; changing the level restarts the follow.
 */
import { useEffect, useState } from 'preact/hooks';
import type { LogLevel, LogRecord, SentinelClient } from '@sentinel/api-client/browser';
import type { ReportError } from './app.js';

const LEVELS: LogLevel[] = ['debug', 'info', 'warn', 'error'];
const MAX_LINES = 500;

export function LogsPane({ client, agentId, report }: { client: SentinelClient; agentId: string; report: ReportError }) {
  const [level, setLevel] = useState<LogLevel>('debug');
  const [lines, setLines] = useState<LogRecord[]>([]);

  useEffect(() => {
    const controller = new AbortController();
    setLines([]);
    void (async () => {
      try {
        for await (const line of client.agents.followLogs(agentId, { level, tail: 100, signal: controller.signal })) {
          setLines((old) => {
            const next = [...old, line];
            return next.length > MAX_LINES ? next.slice(-MAX_LINES) : next;
          });
        }
      } catch (err) {
        if (!controller.signal.aborted) report(err);
      }
    })();
    return () => controller.abort();
  }, [agentId, level]);

  return (
    <section class="card pane" aria-labelledby="logs-title">
      <div class="row">
        <h2 id="logs-title">Logs</h2>
        <label class="inline">
          Level
          <select value={level} onChange={(e) => setLevel(e.currentTarget.value as LogLevel)}>
            {LEVELS.map((l) => (
              <option key={l} value={l}>
                {l}
              </option>
            ))}
          </select>
        </label>
        <span class="muted small">following</span>
      </div>
      <ol class="rows mono" data-testid="logs">
        {lines.map((line) => (
          <li key={line.seq} class={`log log-${line.level}`}>
            <span class="muted">{line.timestamp.slice(11, 19)}</span> <span class="lvl">{line.level}</span> {line.message}
          </li>
        ))}
      </ol>
    </section>
  );
}
