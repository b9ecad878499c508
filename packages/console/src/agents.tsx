/**
 * The agents view: the list with each agent's live status, the "New agent" form, and for the open
 * agent its chat, events and logs. Status comes from each agent's events stream (the snapshot it
 * starts with, then every `agent_status` event), never from polling; the same stream feeds the
 * Events pane, so one socket per listed agent does both. The stream starts at `since: 0` so the
 * pane shows the stored history; the replay ends with the latest stored status, so a status seen
 * during the replay is corrected by the time it finishes.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Agent, EventFrame, SentinelClient } from '@sentinel/api-client/browser';
import { isSentinelApiError } from '@sentinel/api-client/browser';
import type { ReportError } from './app.js';
import { Chat, forgetHistory } from './chat.js';
import { EventsPane } from './events.js';
import { LogsPane } from './logs.js';

/** How many events each agent keeps in memory for the pane. */
const MAX_EVENTS = 300;

export const STARTER_IMAGE = 'sentinel/echo:latest';

interface Props {
  client: SentinelClient;
  report: ReportError;
}

export function AgentsView({ client, report }: Props) {
  const [agents, setAgents] = useState<Agent[]>([]);
  const [loaded, setLoaded] = useState(false);
  const [status, setStatus] = useState<Record<string, string>>({});
  const [events, setEvents] = useState<Record<string, EventFrame[]>>({});
  const [selected, setSelected] = useState<string | undefined>(undefined);
  const [showNew, setShowNew] = useState(false);
  const streams = useRef(new Map<string, AbortController>());

  const refresh = async () => {
    try {
      const list = await client.agents.list();
      setAgents(list);
      setStatus((old) => {
        const next = { ...old };
        for (const agent of list) next[agent.id] ??= agent.status;
        return next;
      });
    } catch (err) {
      report(err);
    } finally {
      setLoaded(true);
    }
  };

  useEffect(() => {
    void refresh();
    const open = streams.current;
    return () => {
      for (const controller of open.values()) controller.abort();
      open.clear();
    };
  }, []);

  // One events stream per listed agent; streams of agents no longer listed are closed.
  useEffect(() => {
    const open = streams.current;
    const ids = new Set(agents.map((a) => a.id));
    for (const [id, controller] of open) {
      if (!ids.has(id)) {
        controller.abort();
        open.delete(id);
      }
    }
    for (const id of ids) {
      if (open.has(id)) continue;
      const controller = new AbortController();
      open.set(id, controller);
      void follow(id, controller.signal);
    }
  }, [agents]);

  const follow = async (id: string, signal: AbortSignal) => {
    try {
      for await (const frame of client.events(id, { since: 0, signal })) {
        const data = frame.data as { status?: unknown } | undefined;
        if (frame.event_type === 'agent_status' && typeof data?.status === 'string') {
          const value = data.status;
          setStatus((old) => ({ ...old, [id]: value }));
        }
        // The snapshot each connection starts with is the state now, not a stored event: it sets
        // the status but would repeat in the pane after every reconnect.
        if (frame.event_type === 'agent_status' && frame.seq === undefined) continue;
        setEvents((old) => {
          const list = [...(old[id] ?? []), frame];
          return { ...old, [id]: list.length > MAX_EVENTS ? list.slice(-MAX_EVENTS) : list };
        });
      }
      // A normal end: the server closed for good because the agent was deleted.
      if (!signal.aborted) forget(id);
    } catch (err) {
      if (!signal.aborted && !(isSentinelApiError(err) && err.code === 'not_found')) report(err);
      if (isSentinelApiError(err) && err.code === 'not_found') forget(id);
    }
  };

  const forget = (id: string) => {
    forgetHistory(id);
    setAgents((old) => old.filter((a) => a.id !== id));
    setSelected((old) => (old === id ? undefined : old));
  };

  const act = async (fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      report(err);
    }
  };

  const onCreate = async (image: string, name: string) => {
    try {
      const agent = await client.agents.create({ image, ...(name ? { name } : {}) });
      setAgents((old) => [...old.filter((a) => a.id !== agent.id), agent]);
      setStatus((old) => ({ ...old, [agent.id]: agent.status }));
      setShowNew(false);
      setSelected(agent.id);
      if (agent.warnings?.length) report(new Error(agent.warnings.join('; ')));
    } catch (err) {
      report(err);
    }
  };

  const current = agents.find((a) => a.id === selected);

  return (
    <div class="agents-view">
      <section class="card agents" aria-labelledby="agents-title">
        <div class="row">
          <h2 id="agents-title">Agents</h2>
          <button type="button" onClick={() => setShowNew((v) => !v)} aria-expanded={showNew}>
            New agent
          </button>
          <button type="button" class="secondary" onClick={() => void refresh()}>
            Refresh
          </button>
        </div>
        {showNew && <NewAgent onCreate={onCreate} onCancel={() => setShowNew(false)} />}
        {loaded && agents.length === 0 && <p class="muted">No agents yet: create one from an image.</p>}
        <ul class="agent-list" aria-label="Agents">
          {agents.map((agent) => {
            const state = status[agent.id] ?? agent.status;
            return (
              <li key={agent.id} class={agent.id === selected ? 'agent selected' : 'agent'} data-agent={agent.name}>
                <button type="button" class="link name" aria-pressed={agent.id === selected} onClick={() => setSelected(agent.id)}>
                  {agent.name}
                </button>
                <span class={`status status-${state}`} data-testid="status">
                  {state}
                </span>
                <span class="muted small">{agent.image}</span>
                <span class="actions">
                  <button type="button" class="secondary" onClick={() => void act(() => client.agents.start(agent.id))}>
                    Start
                  </button>
                  <button type="button" class="secondary" onClick={() => void act(() => client.agents.stop(agent.id))}>
                    Stop agent
                  </button>
                  <button
                    type="button"
                    class="danger"
                    onClick={() =>
                      void act(async () => {
                        await client.agents.delete(agent.id);
                        forget(agent.id);
                      })
                    }
                  >
                    Delete
                  </button>
                </span>
              </li>
            );
          })}
        </ul>
      </section>
      {current && (
        <section class="detail" aria-label={`Agent ${current.name}`}>
          <Chat key={current.id} client={client} agent={current} report={report} />
          <EventsPane events={events[current.id] ?? []} />
          <LogsPane key={current.id} client={client} agentId={current.id} report={report} />
        </section>
      )}
    </div>
  );
}

function NewAgent({ onCreate, onCancel }: { onCreate: (image: string, name: string) => Promise<void>; onCancel: () => void }) {
  const [image, setImage] = useState(STARTER_IMAGE);
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  return (
    <form
      class="new-agent"
      aria-label="New agent"
      onSubmit={(e) => {
        e.preventDefault();
        setBusy(true);
        void onCreate(image.trim(), name.trim()).finally(() => setBusy(false));
      }}
    >
      <label>
        Image
        <input name="image" required value={image} onInput={(e) => setImage(e.currentTarget.value)} />
      </label>
      <label>
        Name
        <input name="name" placeholder="optional" value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <div class="row">
        <button type="submit" disabled={busy}>
          Create
        </button>
        <button type="button" class="secondary" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
