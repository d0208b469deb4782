/**
 * bench/download: one seeder, one leecher, a generated file, peerkit and
 * Transmission 3.00 (transmission-cli) in every pairing, in the same run.
 *
 *   npm run bench:download -- [--size MiB] [--timeout SECONDS] [--only a,b,c,d,e]
 *
 *   (a) peerkit leecher      <- peerkit seeder       127.0.0.1
 *   (b) peerkit leecher      <- Transmission seeder  127.0.0.1 (the leecher dials it)
 *   (c) Transmission leecher <- peerkit seeder       127.0.0.1 (the seeder dials it: `seed --peer`)
 *   (d) Transmission leecher <- Transmission seeder  two network namespaces on a
 *       bridge (veth, not loopback): Transmission 3.00 never dials a 127/8 peer
 *       it hears of from a tracker (see test/harness/transmission.ts), so the
 *       leecher learns the seeder from a tracker stub at a 10.x address.
 *   (e) peerkit leecher      <- Transmission seeder  the same two namespaces as (d),
 *       the peerkit leecher dialing the seeder: (e) against (d) compares the two
 *       leechers over the same path from the same kind of seeder.
 *
 * Every process is separate and started through the harness (own process
 * group, SIGKILLed with us). Each leecher writes into a fresh folder, removed
 * after its row. A row counts only when the copy is verified: peerkit `get`
 * exits 0 only then; for Transmission, waitForComplete re-hashes every piece.
 *
 * Time: from the moment the seeder is ready (its data verified) and the
 * leecher is started, to the leecher reporting completion (peerkit: exit;
 * Transmission: its status line turns to "Seeding"). In (c) the clock starts
 * when the seeder, started after the Transmission leecher is up, says its data
 * is verified (it dials right after). Transmission unchokes and declares
 * interest only in its 10 s rechoke pulse, so rows with Transmission on either
 * side include up to ~10 s of waiting; the "transfer" column measures from the
 * leecher's first 16 MiB read (rchar from /proc/PID/io) to completion, which
 * leaves that wait out.
 *
 * Peak RSS: VmHWM from /proc, sampled until exit. The seeder's peak is reset
 * (`echo 5 > /proc/PID/clear_refs`) once its data is verified, so it covers
 * the upload, not the initial hash check.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnManaged, lineSplitter, withTimeout, type ManagedProcess } from '../test/harness/proc.js';
import { startTransmission, type TransmissionHandle } from '../test/harness/transmission.js';
import { createNetwork, type NetnsHost, type TestNetwork } from '../test/harness/netns.js';
import { startTrackerStub, type TrackerStub } from '../test/harness/tracker-stub.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def;
};
const sizeMiB = Number(opt('--size', '1024'));
const timeoutMs = Number(opt('--timeout', '300')) * 1000;
const only = new Set(opt('--only', 'a,b,c,d,e').split(','));
const peerkitBin = fileURLToPath(new URL('../../bin/peerkit.js', import.meta.url));
const sizeBytes = sizeMiB * 1024 * 1024;
const START_BYTES = 16 * 1024 * 1024;

type Row = 'a' | 'b' | 'c' | 'd' | 'e';
const LABEL: Record<Row, string> = {
  a: '(a) peerkit <- peerkit',
  b: '(b) peerkit <- Transmission',
  c: '(c) Transmission <- peerkit',
  d: '(d) Transmission <- Transmission',
  e: '(e) peerkit <- Transmission (netns)',
};

interface Result {
  seconds: number;
  /** Seconds from the leecher's first 16 MiB to completion, if seen. */
  transferSeconds: number | undefined;
  leecherRssMB: number;
  seederRssMB: number;
}

function procField(pid: number, file: string, re: RegExp): number | undefined {
  try {
    const m = re.exec(readFileSync(`/proc/${pid}/${file}`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Samples a process's VmHWM (and rchar) every 20 ms until stopped. */
class Sampler {
  peakMB = 0;
  firstBytesAt: number | undefined;
  private readonly timer: NodeJS.Timeout;
  constructor(private readonly pid: number) {
    this.timer = setInterval(() => this.sample(), 20);
    this.timer.unref(); // a failed row must not keep the process alive
  }
  sample(): void {
    const hwm = procField(this.pid, 'status', /VmHWM:\s+(\d+) kB/);
    if (hwm !== undefined) this.peakMB = Math.max(this.peakMB, hwm / 1024);
    if (this.firstBytesAt === undefined) {
      const rchar = procField(this.pid, 'io', /rchar:\s+(\d+)/);
      if (rchar !== undefined && rchar >= START_BYTES) this.firstBytesAt = performance.now();
    }
  }
  /** Forgets the peak so far (the kernel's and ours). */
  resetPeak(): void {
    try {
      writeFileSync(`/proc/${this.pid}/clear_refs`, '5');
      this.peakMB = 0;
    } catch (e) {
      console.log(`  (could not reset the peak RSS of pid ${this.pid}: ${(e as Error).message}; seeder RSS includes its hash check)`);
    }
  }
  stop(): void {
    this.sample();
    clearInterval(this.timer);
  }
}

interface PeerkitSeeder {
  proc: ManagedProcess;
  port: number;
  ready: Promise<void>;
}

/** `peerkit seed`; `ready` resolves when it says its data is verified (it dials --peer right after). */
function startPeerkitSeeder(torrent: string, dataDir: string, peers: string[] = []): PeerkitSeeder {
  let port = 0;
  let onReady!: () => void;
  const readyP = new Promise<void>((resolve) => (onReady = resolve));
  const proc = spawnManaged(process.execPath, [peerkitBin, 'seed', torrent, '-d', dataDir, '--port', '0', '--host', '127.0.0.1', ...peers.flatMap((p) => ['--peer', p])], {
    onStderr: lineSplitter((line) => {
      const m = /listening on port (\d+)/.exec(line);
      if (m) port = Number(m[1]);
      if (/verified/.test(line)) onReady();
    }),
  });
  const s: PeerkitSeeder = {
    proc,
    get port() {
      return port;
    },
    ready: withTimeout(
      'the peerkit seeder to verify its data',
      120_000,
      Promise.race([
        readyP,
        proc.exited.then((e) => {
          throw new Error(`peerkit seed exited (code ${e.code}, signal ${e.signal}): ${proc.tail()}`);
        }),
      ]),
    ),
  };
  return s;
}

/** `peerkit get` from one peer; resolves with the leecher's numbers once it exits 0. */
async function peerkitLeecher(torrent: string, out: string, peer: string, seederPid: number, inside?: { net: TestNetwork; host: NetnsHost }): Promise<Result> {
  const seeder = new Sampler(seederPid);
  seeder.resetPeak();
  const t0 = performance.now();
  const argv = [peerkitBin, 'get', torrent, '-o', out, '--port', '0', '--host', inside ? inside.host.address : '127.0.0.1', '--peer', peer, '-q'];
  const proc = inside ? inside.net.spawn(inside.host, process.execPath, argv) : spawnManaged(process.execPath, argv);
  const leecher = new Sampler(proc.pid);
  try {
    const e = await withTimeout('peerkit get', timeoutMs, proc.exited);
    const t1 = performance.now();
    leecher.stop();
    seeder.stop();
    if (e.code !== 0) throw new Error(`peerkit get exited (code ${e.code}, signal ${e.signal}): ${proc.tail()}`);
    return {
      seconds: (t1 - t0) / 1000,
      transferSeconds: leecher.firstBytesAt === undefined ? undefined : (t1 - leecher.firstBytesAt) / 1000,
      leecherRssMB: leecher.peakMB,
      seederRssMB: seeder.peakMB,
    };
  } finally {
    leecher.stop();
    seeder.stop();
    await proc.stop('SIGKILL', 1000);
  }
}

/** Waits for a Transmission leecher to finish (timed: status "Seeding"), then re-hashes its copy. */
async function transmissionDone(leecher: TransmissionHandle, t0: number, ls: Sampler, ss: Sampler): Promise<Result> {
  await leecher.waitForStatus('download complete (seeding)', timeoutMs, (s) => s.kind === 'seeding');
  const t1 = performance.now();
  ls.stop();
  ss.stop();
  await leecher.waitForComplete(120_000, { verify: true });
  return {
    seconds: (t1 - t0) / 1000,
    transferSeconds: ls.firstBytesAt === undefined ? undefined : (t1 - ls.firstBytesAt) / 1000,
    leecherRssMB: ls.peakMB,
    seederRssMB: ss.peakMB,
  };
}

async function rowA(torrent: string, dataDir: string, out: string): Promise<Result> {
  const seeder = startPeerkitSeeder(torrent, dataDir);
  try {
    await seeder.ready;
    return await peerkitLeecher(torrent, out, `127.0.0.1:${seeder.port}`, seeder.proc.pid);
  } finally {
    await seeder.proc.stop('SIGKILL', 1000);
  }
}

async function rowB(torrent: string, dataDir: string, out: string): Promise<Result> {
  const seeder = await startTransmission({ mode: 'seed', torrent, dir: dataDir, messageLevel: 1 });
  try {
    await seeder.waitForSeeding(120_000);
    return await peerkitLeecher(torrent, out, `127.0.0.1:${seeder.port}`, seeder.pid);
  } finally {
    await seeder.stop();
  }
}

async function rowC(torrent: string, dataDir: string, out: string): Promise<Result> {
  const leecher = await startTransmission({ mode: 'leech', torrent, dir: out, messageLevel: 1 });
  let seeder: PeerkitSeeder | undefined;
  try {
    const ls = new Sampler(leecher.pid);
    seeder = startPeerkitSeeder(torrent, dataDir, [`127.0.0.1:${leecher.port}`]);
    await seeder.ready;
    const t0 = performance.now();
    const ss = new Sampler(seeder.proc.pid);
    ss.resetPeak();
    return await transmissionDone(leecher, t0, ls, ss);
  } finally {
    await seeder?.proc.stop('SIGKILL', 1000);
    await leecher.stop();
  }
}

async function rowD(dir: string, dataDir: string, out: string): Promise<Result> {
  let net: TestNetwork | undefined;
  let tracker: TrackerStub | undefined;
  let seeder: TransmissionHandle | undefined;
  let leecher: TransmissionHandle | undefined;
  try {
    net = await createNetwork({ hosts: 2 });
    const [sh, lh] = net.hosts as [(typeof net.hosts)[0], (typeof net.hosts)[0]];
    tracker = await startTrackerStub({ host: net.rootAddress!, peers: [{ host: sh.address, port: 51413 }] });
    // Same info dictionary (same infohash) as the other rows, with the stub as its tracker.
    const torrent = join(dir, 'bench-tracker.torrent');
    await runTo(process.execPath, [peerkitBin, 'create', join(dataDir, 'bench.bin'), '-o', torrent, '--piece-length', '1MiB', '--no-date', '-t', tracker.announceUrl]);
    seeder = await startTransmission({ mode: 'seed', torrent, dir: dataDir, netns: sh, allowedHosts: net.addresses, messageLevel: 1 });
    await seeder.waitForSeeding(120_000);
    const ss = new Sampler(seeder.pid);
    ss.resetPeak();
    const t0 = performance.now();
    leecher = await startTransmission({ mode: 'leech', torrent, dir: out, netns: lh, allowedHosts: net.addresses, messageLevel: 1 });
    const ls = new Sampler(leecher.pid);
    return await transmissionDone(leecher, t0, ls, ss);
  } finally {
    await leecher?.stop();
    await seeder?.stop();
    await tracker?.close();
    await net?.stop();
  }
}

async function rowE(dir: string, dataDir: string, out: string): Promise<Result> {
  let net: TestNetwork | undefined;
  let tracker: TrackerStub | undefined;
  let seeder: TransmissionHandle | undefined;
  try {
    net = await createNetwork({ hosts: 2 });
    const [sh, lh] = net.hosts as [(typeof net.hosts)[0], (typeof net.hosts)[0]];
    // The seeder is started exactly as in (d); only the leecher differs.
    tracker = await startTrackerStub({ host: net.rootAddress!, peers: [{ host: sh.address, port: 51413 }] });
    const torrent = join(dir, 'bench-tracker.torrent');
    await runTo(process.execPath, [peerkitBin, 'create', join(dataDir, 'bench.bin'), '-o', torrent, '--piece-length', '1MiB', '--no-date', '-t', tracker.announceUrl]);
    seeder = await startTransmission({ mode: 'seed', torrent, dir: dataDir, netns: sh, allowedHosts: net.addresses, messageLevel: 1 });
    await seeder.waitForSeeding(120_000);
    return await peerkitLeecher(torrent, out, `${sh.address}:51413`, seeder.pid, { net, host: lh });
  } finally {
    await seeder?.stop();
    await tracker?.close();
    await net?.stop();
  }
}

async function runTo(cmd: string, argv: string[]): Promise<void> {
  const p = spawnManaged(cmd, argv);
  const e = await withTimeout(cmd, 120_000, p.exited).finally(() => p.stop('SIGKILL', 1000));
  if (e.code !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited (code ${e.code}): ${p.tail()}`);
}

const mbps = (s: number | undefined): string => (s === undefined ? '-' : (sizeBytes / 1e6 / s).toFixed(0));

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-bench-download-'));
  const results = new Map<Row, Result>();
  const skipped = new Map<Row, string>();
  try {
    const dataDir = join(dir, 'data');
    await runTo('mkdir', ['-p', dataDir]);
    const file = join(dataDir, 'bench.bin');
    const fh = await open(file, 'w');
    for (let left = sizeBytes; left > 0; ) {
      const n = Math.min(left, 8 * 1024 * 1024);
      await fh.write(randomBytes(n));
      left -= n;
    }
    await fh.close();
    await readFile(file).catch(() => undefined); // warm the page cache
    const torrent = join(dir, 'bench.torrent');
    await runTo(process.execPath, [peerkitBin, 'create', file, '-o', torrent, '--piece-length', '1MiB', '--no-date']);
    const rows: [Row, (out: string) => Promise<Result>][] = [
      ['a', (out) => rowA(torrent, dataDir, out)],
      ['b', (out) => rowB(torrent, dataDir, out)],
      ['c', (out) => rowC(torrent, dataDir, out)],
      ['d', (out) => rowD(dir, dataDir, out)],
      ['e', (out) => rowE(dir, dataDir, out)],
    ];
    for (const [row, run] of rows) {
      if (!only.has(row)) continue;
      if ((row === 'd' || row === 'e') && process.getuid?.() !== 0) {
        skipped.set(row, 'needs root for network namespaces');
        console.log(`${LABEL[row]}: skipped (${skipped.get(row)})`);
        continue;
      }
      const out = await mkdtemp(join(dir, `leech-${row}-`));
      try {
        const r = await withTimeout(LABEL[row], timeoutMs + 300_000, run(out));
        results.set(row, r);
        console.log(
          `${LABEL[row].padEnd(34)} ${r.seconds.toFixed(2)} s  ${mbps(r.seconds)} MB/s  transfer ${mbps(r.transferSeconds)} MB/s  ` +
            `leecher RSS ${r.leecherRssMB.toFixed(1)} MB  seeder RSS ${r.seederRssMB.toFixed(1)} MB  verified`,
        );
      } catch (e) {
        skipped.set(row, `failed: ${(e as Error).message.split('\n')[0]}`);
        console.log(`${LABEL[row]}: FAILED\n${(e as Error).message}`);
        process.exitCode = 1;
      } finally {
        await rm(out, { recursive: true, force: true });
      }
    }

    console.log(`\nmachine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`);
    console.log(`file: ${sizeMiB} MiB, 1 MiB pieces; MB = 10^6 bytes; (d) and (e) run over a veth bridge between two namespaces`);
    console.log('\n| pairing (leecher <- seeder) | time | MB/s | MB/s after first 16 MiB | leecher peak RSS | seeder peak RSS |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    for (const row of ['a', 'b', 'c', 'd', 'e'] as Row[]) {
      const r = results.get(row);
      if (r) console.log(`| ${LABEL[row]} | ${r.seconds.toFixed(2)} s | ${mbps(r.seconds)} | ${mbps(r.transferSeconds)} | ${r.leecherRssMB.toFixed(1)} MB | ${r.seederRssMB.toFixed(1)} MB |`);
      else if (skipped.has(row)) console.log(`| ${LABEL[row]} | ${skipped.get(row)} | | | | |`);
    }
    const ratio = (p: Row, t: Row, what: string): void => {
      const a = results.get(p);
      const b = results.get(t);
      if (!a || !b) return;
      const tr = a.transferSeconds && b.transferSeconds ? `, after first 16 MiB ${(b.transferSeconds / a.transferSeconds).toFixed(2)}x` : '';
      console.log(
        `${what}: speed ${(b.seconds / a.seconds).toFixed(2)}x${tr}; leecher RSS ${(a.leecherRssMB / b.leecherRssMB).toFixed(2)}x, seeder RSS ${(a.seederRssMB / b.seederRssMB).toFixed(2)}x`,
      );
    };
    console.log('\nratios peerkit / Transmission (speed: higher is better for peerkit; RSS: lower is better):');
    ratio('a', 'd', 'both sides, (a) vs (d)');
    ratio('a', 'c', 'as leecher from a peerkit seeder, (a) vs (c)');
    ratio('e', 'd', 'as leecher from a Transmission seeder, same namespaces, (e) vs (d)');
    ratio('b', 'd', 'as leecher from a Transmission seeder, (b) on loopback vs (d)');
    ratio('a', 'b', 'as seeder (same peerkit leecher), (a) vs (b)');
    const a = results.get('a');
    const d = results.get('d');
    console.log('\ntargets:');
    const twice = (p: Row, t: Row, what: string): void => {
      const x = results.get(p);
      const y = results.get(t);
      if (x && y) console.log(`  peerkit downloads >= 2x Transmission ${what}: ${y.seconds / x.seconds >= 2 ? 'met' : 'MISSED'} (${(y.seconds / x.seconds).toFixed(2)}x)`);
    };
    twice('a', 'c', 'from a peerkit seeder (a vs c)');
    twice('e', 'd', 'from a Transmission seeder (e vs d)');
    if (a && d) console.log(`  both sides, peerkit pair vs Transmission pair (a vs d): ${(d.seconds / a.seconds).toFixed(2)}x`);
    if (a) console.log(`  >= 300 MB/s peerkit to peerkit: ${sizeBytes / 1e6 / a.seconds >= 300 ? 'met' : 'MISSED'} (${mbps(a.seconds)} MB/s)`);
    const rss = [...results.entries()].flatMap(([row, r]) => [
      ...(row === 'a' || row === 'b' || row === 'e' ? [r.leecherRssMB] : []),
      ...(row === 'a' || row === 'c' ? [r.seederRssMB] : []),
    ]);
    if (rss.length) console.log(`  peerkit RSS <= 150 MB: ${Math.max(...rss) <= 150 ? 'met' : 'MISSED'} (max ${Math.max(...rss).toFixed(1)} MB)`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
