/**
 * The images view: the local images, inspect (the whole image, its definition included), build
 * from a pasted Sentinelfile, and push/pull to the registry with a <progress> bar fed by the
 * SDK's transfer stream (each record carries the whole transfer's bytes so far and total).
 */
import { useEffect, useState } from 'preact/hooks';
import type { Image, SentinelClient, TransferProgress } from '@sentinel/api-client/browser';
import { isTransferProgress } from '@sentinel/api-client/browser';
import type { ReportError } from './app.js';

/** A starting point for the Sentinelfile box (the README's example, on the echo model). */
const EXAMPLE = `name: my/helper
tag: v1
description: A first agent definition
model:
  provider: echo
  name: echo
instructions: You are a helpful assistant. Answer briefly.
tools: [calculator, current_time]
capabilities: [chat, streaming]
`;

interface Transferring {
  ref: string;
  action: 'Push' | 'Pull';
  bytes: number;
  total: number;
  /** Finished: the bar stays, full, beside the result until the next transfer. */
  done: boolean;
}

export function ImagesView({ client, report }: { client: SentinelClient; report: ReportError }) {
  const [images, setImages] = useState<Image[]>([]);
  const [inspected, setInspected] = useState<Image | undefined>(undefined);
  const [sentinelfile, setSentinelfile] = useState(EXAMPLE);
  const [building, setBuilding] = useState(false);
  const [transfer, setTransfer] = useState<Transferring | undefined>(undefined);
  const [notice, setNotice] = useState<string | undefined>(undefined);

  const refresh = async () => {
    try {
      setImages(await client.images.list());
    } catch (err) {
      report(err);
    }
  };

  useEffect(() => {
    void refresh();
  }, []);

  const build = async () => {
    setBuilding(true);
    try {
      const image = await client.images.build(sentinelfile);
      setNotice(`Built ${image.name}:${image.tag} (${image.short_id})`);
      await refresh();
    } catch (err) {
      report(err);
    } finally {
      setBuilding(false);
    }
  };

  const move = async (image: Image, action: 'Push' | 'Pull') => {
    const ref = `${image.name}:${image.tag}`;
    setTransfer({ ref, action, bytes: 0, total: 0, done: false });
    setNotice(undefined);
    try {
      const stream = action === 'Push' ? client.registry.push({ image: ref }) : client.registry.pull({ name: image.name, tag: image.tag });
      for await (const record of stream) {
        if (isTransferProgress(record)) {
          const progress: TransferProgress = record;
          setTransfer({ ref, action, bytes: progress.overall.bytes, total: progress.overall.total, done: false });
        } else {
          setNotice(`${action === 'Push' ? 'Pushed' : 'Pulled'} ${ref} (${record.status})`);
          setTransfer((old) => ({ ref, action, bytes: old?.total || 1, total: old?.total || 1, done: true }));
        }
      }
      if (action === 'Pull') await refresh();
    } catch (err) {
      setTransfer(undefined);
      report(err);
    }
  };

  const busy = transfer !== undefined && !transfer.done;

  const remove = async (image: Image) => {
    try {
      await client.images.delete(image.id);
      if (inspected?.id === image.id) setInspected(undefined);
      await refresh();
    } catch (err) {
      report(err);
    }
  };

  const inspect = async (image: Image) => {
    try {
      setInspected(await client.images.get(image.id));
    } catch (err) {
      report(err);
    }
  };

  return (
    <div class="images-view">
      <section class="card" aria-labelledby="images-title">
        <div class="row">
          <h2 id="images-title">Images</h2>
          <button type="button" class="secondary" onClick={() => void refresh()}>
            Refresh
          </button>
        </div>
        {notice && (
          <p class="notice" role="status">
            {notice}
          </p>
        )}
        {transfer && (
          <label class="progress">
            {transfer.done ? (transfer.action === 'Push' ? 'Pushed' : 'Pulled') : transfer.action === 'Push' ? 'Pushing' : 'Pulling'} {transfer.ref}
            {transfer.total > 0 ? <progress max={transfer.total} value={transfer.bytes} /> : <progress />}
          </label>
        )}
        {images.length === 0 && <p class="muted">No images yet: build one below.</p>}
        <ul class="image-list" aria-label="Images">
          {images.map((image) => (
            <li key={image.id} class="image" data-image={`${image.name}:${image.tag}`}>
              <button type="button" class="link name" onClick={() => void inspect(image)}>
                {image.name}:{image.tag}
              </button>
              <span class="muted small">
                {image.short_id} · {formatSize(image.size)}
              </span>
              <span class="actions">
                <button type="button" class="secondary" onClick={() => void inspect(image)}>
                  Inspect
                </button>
                <button type="button" class="secondary" disabled={busy} onClick={() => void move(image, 'Push')}>
                  Push
                </button>
                <button type="button" class="secondary" disabled={busy} onClick={() => void move(image, 'Pull')}>
                  Pull
                </button>
                <button type="button" class="danger" onClick={() => void remove(image)}>
                  Delete
                </button>
              </span>
            </li>
          ))}
        </ul>
      </section>
      {inspected && (
        <section class="card" aria-labelledby="inspect-title">
          <div class="row">
            <h2 id="inspect-title">
              {inspected.name}:{inspected.tag}
            </h2>
            <button type="button" class="secondary" onClick={() => setInspected(undefined)}>
              Close
            </button>
          </div>
          <pre class="mono definition" data-testid="definition">
            {JSON.stringify(inspected, null, 2)}
          </pre>
        </section>
      )}
      <section class="card" aria-labelledby="build-title">
        <h2 id="build-title">Build an image</h2>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void build();
          }}
        >
          <label>
            Sentinelfile
            <textarea class="mono" rows={10} spellcheck={false} value={sentinelfile} onInput={(e) => setSentinelfile(e.currentTarget.value)} />
          </label>
          <button type="submit" disabled={building}>
            Build
          </button>
        </form>
      </section>
    </div>
  );
}

function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
