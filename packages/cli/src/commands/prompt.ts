/**
 * Reading a username and a password: from a terminal with a prompt (the password with no echo),
 * or the password from stdin for scripts (`--password-stdin`, as `docker login` does, so it
 * never appears in `ps` or the shell history).
 */
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { UsageError } from '../errors.js';

/** Prompts on stderr (stdout stays clean for scripts); with `hidden`, typed characters are not echoed. */
export function ask(question: string, hidden = false): Promise<string> {
  if (process.stdin.isTTY !== true) throw new UsageError(`cannot prompt for ${question.replace(/:\s*$/, '').toLowerCase()}: stdin is not a terminal (use -u and --password-stdin)`);
  let muted = false;
  const output = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (!muted) process.stderr.write(chunk);
      callback();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  return new Promise((resolve, reject) => {
    rl.on('SIGINT', () => {
      rl.close();
      process.stderr.write('\n');
      reject(new UsageError('cancelled'));
    });
    rl.question(question, (answer) => {
      rl.close();
      if (hidden) process.stderr.write('\n');
      resolve(answer);
    });
    muted = hidden;
  });
}

/** All of stdin, without its final newline (`echo secret | sentinel login --password-stdin`). */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}
