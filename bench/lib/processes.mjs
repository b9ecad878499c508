// Child processes of a benchmark: servers under test and load generators, each its own process,
// pinned to a CPU with taskset when it is available (server on one core, load on the other, so
// they never compete for the same core).
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** True when `taskset` runs here and the machine has at least two CPUs to pin to. */
export function detectTaskset(cpuCount) {
  if (cpuCount < 2) return false;
  const probe = spawnSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
  return probe.status === 0;
}

/** True when `cmd --version` (or the given probe) runs. */
export function commandWorks(cmd, args = ['--version']) {
  const probe = spawnSync(cmd, args, { stdio: 'ignore' });
  return probe.error === undefined;
}

/** The argv that runs `command args` on `cpu` (or unpinned when `cpu` is undefined). */
export function pinned(cpu, command, args) {
  if (cpu === undefined) return { command, args };
  return { command: 'taskset', args: ['-c', String(cpu), command, ...args] };
}

const LISTENING = /listening on (https?:\/\/[^\s]+)/;

/**
 * Starts a server script: stdout goes to `logFile` (request logs land there, as they would with
 * `node server.js > server.log`), stderr is kept for error messages, and an IPC channel carries
 * the harness's commands (memory readings, event bursts). Resolves once the server printed
 * `listening on <url>`.
 */
export async function startServer({ name, script, args = [], cpu, logFile, env = {}, timeoutMs = 30_000 }) {
  const logFd = openSync(logFile, 'w');
  const argv = pinned(cpu, process.execPath, ['--expose-gc', script, ...args]);
  const child = spawn(argv.command, argv.args, {
    stdio: ['ignore', logFd, 'pipe', 'ipc'],
    env: { ...process.env, ...env },
  });
  closeSync(logFd);
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text) => {
    stderr = (stderr + text).slice(-4000);
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let exitInfo;
  void exited.then((info) => {
    exitInfo = info;
  });

  const deadline = Date.now() + timeoutMs;
  let url;
  while (url === undefined) {
    if (exitInfo) throw new Error(`${name} exited (${exitInfo.code ?? exitInfo.signal}) before listening: ${stderr.trim()}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name} did not print "listening on <url>" within ${timeoutMs} ms: ${stderr.trim()}`);
    }
    const head = readFileSync(logFile, 'utf8').slice(0, 64 * 1024);
    url = LISTENING.exec(head)?.[1];
    if (url === undefined) await sleep(20);
  }

  let nextId = 1;
  const pending = new Map();
  child.on('message', (message) => {
    const waiter = pending.get(message?.id);
    if (!waiter) return;
    pending.delete(message.id);
    if (message.error) waiter.reject(new Error(`${name}: ${message.error}`));
    else waiter.resolve(message.result);
  });
  void exited.then(() => {
    for (const waiter of pending.values()) waiter.reject(new Error(`${name} exited: ${stderr.trim()}`));
    pending.clear();
  });

  return {
    name,
    url,
    port: Number(new URL(url).port),
    pid: child.pid,
    get stderr() {
      return stderr;
    },
    /** Sends a command over IPC and resolves with the server's answer. */
    command(cmd, payload = {}) {
      if (exitInfo) return Promise.reject(new Error(`${name} is not running: ${stderr.trim()}`));
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        child.send({ id, cmd, ...payload });
      });
    },
    /** SIGTERM, then SIGKILL after a grace period. */
    async stop(graceMs = 5_000) {
      if (exitInfo) return exitInfo;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const info = await exited;
      clearTimeout(timer);
      return info;
    },
  };
}

/**
 * Runs a load generator to completion and returns its stdout (the generators print one JSON
 * object on their last line). `onLine` sees each stdout line as it comes (for "ready" handshakes);
 * `stdin` is returned through `onStart` for generators that wait for a "go".
 */
export function runLoadGenerator({ name, command, args, cpu, env = {}, onLine, onStart, timeoutMs = 300_000 }) {
  const argv = pinned(cpu, command, args);
  const child = spawn(argv.command, argv.args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  onStart?.(child);
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (text) => {
    stdout += text;
    if (!onLine) return;
    partial += text;
    let newline;
    while ((newline = partial.indexOf('\n')) !== -1) {
      const line = partial.slice(0, newline);
      partial = partial.slice(newline + 1);
      onLine(line, child);
    }
  });
  child.stderr.on('data', (text) => {
    stderr = (stderr + text).slice(-8000);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} timed out after ${timeoutMs} ms: ${stderr.trim()}`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${name} could not start: ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`${name} failed (${code ?? signal}): ${stderr.trim() || stdout.trim().slice(-2000)}`));
    });
  });
}

/** The JSON object a load generator printed last. */
export function lastJsonLine(stdout) {
  const lines = stdout.trim().split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]?.trim();
    if (line?.startsWith('{')) return JSON.parse(line);
  }
  throw new Error(`no JSON result in output: ${stdout.slice(-500)}`);
}
