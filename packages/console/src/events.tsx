/**
 * The Events pane: the open agent's events as the SDK's resuming iterator delivers them (stored
 * history from seq 0, then live; after a dropped connection the SDK reconnects with the last seq
 * it delivered, so nothing repeats and nothing is missed). One row per event, its event_type first.
 */
import type { EventFrame } from '@sentinel/api-client/browser';

export function EventsPane({ events }: { events: EventFrame[] }) {
  return (
    <section class="card pane" aria-labelledby="events-title">
      <h2 id="events-title">Events</h2>
      <ol class="rows" data-testid="events">
        {events
          .slice()
          .reverse()
          .map((event, i) => (
            <li key={event.seq ?? `live-${events.length - i}`} class="event-row">
              <span class="etype">{event.event_type}</span>
              {event.seq !== undefined && <span class="muted small">#{event.seq}</span>}
              <span class="muted small">{event.timestamp.slice(11, 19)}</span>
              {event.content && <span class="econtent">{event.content}</span>}
            </li>
          ))}
      </ol>
    </section>
  );
}
