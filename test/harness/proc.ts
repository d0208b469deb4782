/**
 * Process plumbing shared by the interop harness (test/harness/*): child
 * processes in their own process group that die with the test, bounded waits,
 * free ports, and a guard that keeps real clients away from any address that
 * is not ours.
 *
 * Every child is started as `setpriv --pdeathsig KILL -- CMD ...` in a new
 * process group (detached): the kernel SIGKILLs it if the test process dies
 * in any way (even SIGKILL, where no exit handler runs), stop() signals the
 * whole group, and a process 'exit' hook SIGKILLs whatever is still running.
 *
 * This file is a helper, not a test, but Node 20's `node --test dist/test/`
 * loads every .js below a folder named test; importing it has no side effect
 * beyond one 'exit' listener.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { isIP } from 'node:net';

/** Throws when `timeoutMs` passes before `check` returns true; polls every `intervalMs`. */
export async function waitUntil(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(Math.min(intervalMs, Math.max(1, deadline - Date.now())));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects with a timeout error unless `p` settles within `timeoutMs`. */
export async function withTimeout<T>(what: string, timeoutMs: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A TCP port that was free on `host` a moment ago (bind to port 0, read it, close). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const address = s.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** True for 127.0.0.0/8, ::1 and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}

/**
 * Refuses a URL or host:port whose host is neither loopback nor one of
 * `allowedHosts` (the addresses of namespaces this harness made): real
 * clients must never be pointed anywhere else.
 */
export function assertLocalEndpoint(what: string, target: string, allowedHosts: readonly string[] = []): void {
  let host: string;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) {
    host = new URL(target).hostname;
  } else {
    const m = /^\[([^\]]+)\]:\d+$/.exec(target) ?? /^([^:]+):\d+$/.exec(target);
    if (!m) throw new Error(`${what}: cannot read a host in ${JSON.stringify(target)}`);
    host = m[1]!;
  }
  host = host.replace(/^\[|\]$/g, '');
  if (!isLoopbackHost(host) && !allowedHosts.includes(host)) {
    throw new Error(`${what}: ${JSON.stringify(target)} is not on loopback or in a test namespace; the harness only talks to local addresses`);
  }
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Settles when the process has exited (or could not start: code null, signal null). */
  readonly exited: Promise<ExitInfo>;
  readonly exitInfo: ExitInfo | undefined;
  /** The last `keep` bytes of stdout+stderr, for error messages. */
  tail(): string;
  /**
   * Signals the process group (SIGTERM unless told), SIGKILLs it after
   * `graceMs`, and waits for the exit (bounded). Safe to call any number of
   * times, also after the process died by itself.
   */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

export interface SpawnOptions {
  readonly cwd?: string | undefined;
  readonly env?: NodeJS.ProcessEnv | undefined;
  /** 'pipe' keeps a stdin pipe open (the child sees EOF when we die). Default 'ignore'. */
  readonly stdin?: 'pipe' | 'ignore';
  /** Called with every chunk of stdout / stderr. */
  readonly onStdout?: (chunk: string) => void;
  readonly onStderr?: (chunk: string) => void;
  /** Also append stdout and stderr here (a log to read after a failure). */
  readonly logFile?: string | undefined;
  /** How much output tail() keeps. Default 16 KiB. */
  readonly keep?: number;
}

const live = new Set<ManagedProcess>();
let exitHookInstalled = false;

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone already
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of live) killGroup(p.pid, 'SIGKILL');
  });
}

/** Child processes started by the harness that have not exited yet. */
export function liveProcesses(): readonly ManagedProcess[] {
  return [...live];
}

/**
 * Starts `cmd args` in a new process group, under `setpriv --pdeathsig KILL`
 * so that it cannot outlive the test process. `prefix` (e.g. `ip netns exec
 * NAME`) goes between setpriv and the command; it must exec, not fork.
 */
export function spawnManaged(cmd: string, args: readonly string[], opts: SpawnOptions = {}, prefix: readonly string[] = []): ManagedProcess {
  installExitHook();
  const keep = opts.keep ?? 16 * 1024;
  let tail = '';
  const log: WriteStream | undefined = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
  const remember = (s: string): void => {
    tail += s;
    if (tail.length > 2 * keep) tail = tail.slice(-keep);
    log?.write(s);
  };
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', ...prefix, cmd, ...args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    detached: true,
    stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
  });
  let exitInfo: ExitInfo | undefined;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('error', (e) => {
      remember(`\n[harness] cannot start ${cmd}: ${e.message}\n`);
      exitInfo ??= { code: null, signal: null };
      resolve(exitInfo);
    });
    child.once('close', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
  });
  child.stdout?.setEncoding('latin1');
  child.stderr?.setEncoding('latin1');
  child.stdout?.on('data', (s: string) => {
    remember(s);
    opts.onStdout?.(s);
  });
  child.stderr?.on('data', (s: string) => {
    remember(s);
    opts.onStderr?.(s);
  });
  child.stdin?.on('error', () => {});
  const pid = child.pid ?? -1;
  let stopping: Promise<void> | undefined;
  const handle: ManagedProcess = {
    child,
    pid,
    exited,
    get exitInfo() {
      return exitInfo;
    },
    tail: () => tail.slice(-keep),
    stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000): Promise<void> {
      stopping ??= (async () => {
        if (pid > 0 && exitInfo === undefined) {
          killGroup(pid, signal);
          const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), graceMs);
          await withTimeout(`${cmd} (pid ${pid}) to exit`, graceMs + 5000, exited).finally(() => clearTimeout(timer));
        }
        // Anything it left behind in its group goes too.
        if (pid > 0) killGroup(pid, 'SIGKILL');
        live.delete(handle);
        await new Promise<void>((resolve) => (log ? log.end(resolve) : resolve()));
      })();
      return stopping;
    },
  };
  if (pid > 0) {
    live.add(handle);
    void exited.then(() => {
      if (!stopping) live.delete(handle);
    });
  }
  return handle;
}

/** Splits a stream of text into lines on \n or \r (Transmission redraws its status line with \r). */
export function lineSplitter(onLine: (line: string) => void): (chunk: string) => void {
  let rest = '';
  return (chunk: string) => {
    rest += chunk;
    const parts = rest.split(/\r\n|\r|\n/);
    rest = parts.pop() ?? '';
    for (const p of parts) {
      const line = p.trimEnd();
      if (line !== '') onLine(line);
    }
  };
}
