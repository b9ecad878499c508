/**
 * `sentinel push` / `pull` output: on a terminal one progress bar per blob (cli-progress), as
 * `docker pull` draws them; piped, one plain line per blob step, so logs stay readable.
 */
import cliProgress from 'cli-progress';
import type { Context } from './context.js';
import { bytes, shortId } from './format.js';
import { isTransferProgress, type TransferProgress } from '@sentinel/api-client';

/** Shows a push's or pull's progress (the SDK's Transfer) and resolves with its result. */
export async function showTransfer<R extends { status: string; name: string; tag?: string | null; digest: string }>(ctx: Context, stream: AsyncIterable<TransferProgress | R>): Promise<R> {
  const multi = ctx.term.tty
    ? new cliProgress.MultiBar(
        {
          stream: ctx.term.out,
          format: '{kind} {digest}: [{bar}] {size} {status}',
          barsize: 30,
          hideCursor: true,
          clearOnComplete: false,
          stopOnComplete: false,
          noTTYOutput: false,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  const bars = new Map<string, cliProgress.SingleBar>();
  let result: R | undefined;
  try {
    for await (const line of stream) {
      if (!isTransferProgress(line)) {
        result = line as R;
        continue;
      }
      const digest = shortId(line.digest);
      const payload = { kind: line.kind.padEnd(8), digest, status: line.status, size: `${bytes(line.bytes)}/${bytes(line.total)}` };
      if (multi) {
        const bar = bars.get(line.digest);
        if (bar) bar.update(line.bytes, payload);
        else bars.set(line.digest, multi.create(Math.max(1, line.total), line.bytes, payload));
      } else {
        ctx.term.out.write(`${digest}: ${line.status} ${line.kind} ${line.bytes}/${line.total}\n`);
      }
    }
  } finally {
    multi?.stop();
  }
  if (result === undefined) throw new Error('the transfer ended without a result');
  return result;
}
