/**
 * `npm run demo`: a whole swarm on this machine, on 127.0.0.1 only.
 *
 * It generates a file, creates its torrent announcing to a peerkit tracker
 * (HTTP and UDP) started here, starts a Mainline DHT of peerkit nodes
 * bootstrapped among themselves, then runs one seeder and several leechers,
 * each a separate peerkit Client with its own port, folder and DHT node
 * (joined through the demo's nodes). The last leecher starts from a
 * trackerless magnet link (the infohash alone): it finds its peers through
 * the DHT and fetches the metadata from them first.
 * Progress is shown while they swap pieces; at the end every copy is checked
 * byte for byte, the tracker must have seen every client that has its URL
 * and handed peers to the leechers, and the upload ratios are printed.
 *
 * Options (`--help` lists them): --size MiB (default 64), --leechers N
 * (default 5), --dht-nodes N (default 20), --limit MiB (each client's upload
 * limit per second, to watch the swarm at a slower pace), --keep (keep
 * everything running after the checks, seeding with the dashboard up, until
 * Ctrl-C or SIGTERM), --dashboard [HOST:]PORT (default 127.0.0.1 and a free
 * port; the URL is printed), --dashboard-token TOKEN (or
 * PEERKIT_DASHBOARD_TOKEN; needed for a non-loopback --dashboard),
 * --no-dashboard. Unknown options and a --dashboard without its value are
 * refused.
 *
 * Exit codes: 0 every check passed (with --keep: and it was then stopped by
 * SIGINT or SIGTERM), 1 a check failed or something broke, 2 bad options,
 * 130 / 143 stopped by SIGINT / SIGTERM before the checks were done. The
 * work folder (in the system's temp folder) is removed in every case. If
 * stdout is closed early (`npm run demo | head`), the demo goes on without
 * printing there, and says its verdict (and, with --keep, that it keeps
 * running and when it shuts down) on stderr.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { Client } from '../src/client/client.js';
import { DhtNode } from '../src/dht/node.js';
import type { Torrent } from '../src/client/torrent.js';
import { buildMagnet } from '../src/codec/magnet.js';
import { createTorrent } from '../src/files/create-torrent.js';
import { verifyPieces } from '../src/files/verify-pieces.js';
import { startTracker } from '../src/tracker/index.js';
import { run } from '../src/cli/main.js';
import { formatBytes, formatRate } from '../src/cli/format.js';
import { addDashboardOptions, dashboardSettings } from '../src/cli/dashboard-option.js';
import { clientSources } from '../src/dashboard/client-source.js';
import { DhtSource } from '../src/dashboard/dht-source.js';
import type { DashboardSource } from '../src/dashboard/source.js';
import { startDashboard, type DashboardHandle } from '../src/dashboard/server.js';
import { TrackerSource } from '../src/dashboard/tracker-source.js';

// Output: once stdout is gone (a closed pipe), the demo carries on silently instead of dying on EPIPE
// with its work folder left behind.
let quiet = false;
const gone = (e: NodeJS.ErrnoException): void => {
  if (e.code !== 'EPIPE' && e.code !== 'ERR_STREAM_DESTROYED') throw e;
  if (!quiet) process.stderr.write('demo: stdout is closed; carrying on, the verdict goes to stderr\n');
  quiet = true;
};
process.stdout.on('error', gone);
process.stderr.on('error', () => undefined); // nowhere left to report to
const say = (line = ''): void => {
  if (!quiet) process.stdout.write(`${line}\n`);
};
/** For the lines that matter (the verdict, keeping running, shutting down): on stderr once stdout is gone. */
const tell = (line: string): void => {
  if (quiet) process.stderr.write(`${line}\n`);
  else say(line);
};
const stdout = new Writable({
  write(chunk: Buffer, _encoding, done): void {
    if (!quiet) process.stdout.write(chunk);
    done();
  },
});

function numberIn(min: number, max: number, integer: boolean): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) throw new InvalidArgumentError(`${integer ? 'a whole number' : 'a number'} from ${min} to ${max}`);
    return n;
  };
}

interface DemoOptions {
  size: number;
  leechers: number;
  dhtNodes: number;
  limit: number;
  keep?: boolean;
  dashboard?: string | false;
  dashboardToken?: string;
}

function parseArgs(argv: string[]): DemoOptions {
  const program = new Command('demo')
    .description('a tracker, a DHT, a seeder and leechers on 127.0.0.1, with a live dashboard; every copy is checked')
    .usage('[options]   (npm run demo -- [options])')
    .option('--size <MiB>', 'size of the generated file, MiB', numberIn(0.1, 4096, false), 64)
    .option('--leechers <n>', 'leechers (the last one starts from a trackerless magnet link)', numberIn(1, 50, true), 5)
    .option('--dht-nodes <n>', 'plain DHT nodes besides the clients\' own', numberIn(1, 50, true), 20)
    .option('--limit <MiB>', 'each client\'s upload limit, MiB per second (0: none)', numberIn(0, 1024, false), 0)
    .option('--keep', 'after the checks, keep seeding with the dashboard up until Ctrl-C or SIGTERM');
  addDashboardOptions(program)
    .option('--no-dashboard', 'no dashboard')
    .helpOption('-h, --help', 'show help')
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeOut: (t) => say(t.trimEnd()), writeErr: (t) => process.stderr.write(t), outputError: (t, write) => write(`demo: ${t.replace(/^error: /, '')}`) });
  program.parse(argv, { from: 'user' });
  return program.opts<DemoOptions>();
}

let opts: DemoOptions;
let dashboardAt: ReturnType<typeof dashboardSettings>;
try {
  opts = parseArgs(process.argv.slice(2));
  if (typeof opts.dashboard === 'string' && opts.dashboard.startsWith('-')) throw new Error(`--dashboard needs [HOST:]PORT, not ${opts.dashboard}`);
  dashboardAt = opts.dashboard === false ? undefined : dashboardSettings({ dashboard: opts.dashboard ?? '127.0.0.1:0', dashboardToken: opts.dashboardToken });
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2); // help, or a usage error already printed
  process.stderr.write(`demo: ${(e as Error).message}\n`);
  process.exit(2);
}
const sizeMiB = opts.size;
const leecherCount = opts.leechers;
const dhtCount = opts.dhtNodes;
const keep = opts.keep === true;
const uploadLimit = Math.round(opts.limit * 1024 * 1024);
const TIME_LIMIT_MS = 300_000;

/** Deterministic pseudo-random content: SHA-256 in counter mode, 1 MiB at a time. */
async function generateFile(path: string, bytes: number, seed: string): Promise<void> {
  const fh = await open(path, 'w');
  try {
    const block = Buffer.allocUnsafe(1024 * 1024);
    for (let written = 0, n = 0; written < bytes; n++) {
      for (let i = 0; i < block.length; i += 32) createHash('sha256').update(`${seed}:${n}:${i}`).digest().copy(block, i);
      const len = Math.min(block.length, bytes - written);
      await fh.write(block, 0, len);
      written += len;
    }
  } finally {
    await fh.close();
  }
}

/** Waits until `check()` holds, polling; false after `ms`. */
async function until(ms: number, check: () => boolean): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/** Rejects after `ms`: every step of the demo is bounded in time. */
function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_r, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no result after ${ms / 1000} s`)), ms)))]).finally(() => clearTimeout(timer));
}

function step(title: string): void {
  say(`\n== ${title}`);
}

async function main(): Promise<number> {
  const work = await mkdtemp(join(tmpdir(), 'peerkit-demo-'));
  say(`work folder: ${work}`);
  // Ctrl-C or SIGTERM before the end: no half-written files left behind (sockets close with the process).
  const interrupted = (signal: NodeJS.Signals): void => {
    tell(`demo: interrupted (${signal})`);
    rmSync(work, { recursive: true, force: true });
    process.exit(signal === 'SIGTERM' ? 143 : 130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  const clients: Client[] = [];
  const dhtNodes: DhtNode[] = [];
  let tracker: Awaited<ReturnType<typeof startTracker>> | undefined;
  let dashboard: DashboardHandle | undefined;
  let ok = true;
  const check = (cond: boolean, what: string): void => {
    say(`${cond ? 'ok  ' : 'FAIL'} ${what}`);
    ok &&= cond;
  };
  try {
    step('a tracker on 127.0.0.1 (HTTP and UDP)');
    tracker = await startTracker({ host: '127.0.0.1', http: 0, udp: 0 });
    say(`${tracker.httpUrl}\n${tracker.udpUrl}`);
    if (dashboardAt) {
      dashboard = await startDashboard({ ...dashboardAt, sources: [new TrackerSource('tracker', tracker)] });
      say(`dashboard: ${dashboard.url}`);
    }
    let hidden = 0;
    const show = (sources: readonly DashboardSource[]): void => {
      for (const src of sources) {
        try {
          dashboard?.addSource(src);
        } catch {
          hidden++; // the dashboard's source limit: the rest run unseen
        }
      }
    };

    step(`a DHT of ${dhtCount} nodes on 127.0.0.1, bootstrapped among themselves`);
    for (let i = 0; i < dhtCount; i++) dhtNodes.push(await DhtNode.start({ host: '127.0.0.1', port: 0 }));
    const dhtSeeds = dhtNodes.slice(0, 3).map((n) => `127.0.0.1:${n.address.port}`);
    // All join through the first node at once; then the first looks itself up again to learn of the rest,
    // and everyone once more (as a node's periodic refresh would), so the tables fill out.
    await within(20_000, 'DHT bootstrap', Promise.all(dhtNodes.slice(1).map((n) => n.bootstrap([dhtSeeds[0]!]))));
    await within(20_000, 'DHT bootstrap', dhtNodes[0]!.bootstrap(dhtSeeds.slice(1)));
    await within(20_000, 'DHT bootstrap', Promise.all(dhtNodes.slice(1).map((n) => n.bootstrap())));
    const tableSizes = dhtNodes.map((n) => n.core.stats(n.runtime.clock.now()).nodes);
    check(tableSizes.every((x) => x > 0) || dhtCount === 1, `every DHT node knows others: ${Math.min(...tableSizes)}-${Math.max(...tableSizes)} nodes in their tables`);
    dhtNodes.forEach((n, i) => show([new DhtSource(`dht ${String(i + 1).padStart(2, '0')}`, n)]));
    const dhtOption = { bootstrap: dhtSeeds, port: 0 };

    step(`generating ${sizeMiB} MiB and creating its torrent`);
    const seedDir = join(work, 'seeder');
    await mkdir(seedDir, { recursive: true });
    const size = Math.round(sizeMiB * 1024 * 1024) - 12_345; // an odd size: the last piece is short
    const file = join(seedDir, 'peerkit-demo.bin');
    await generateFile(file, size, 'demo');
    const { torrent, metainfo } = await createTorrent(file, { announce: [[tracker.httpUrl!], [tracker.udpUrl!]], createdBy: 'peerkit demo' });
    const torrentPath = join(work, 'peerkit-demo.torrent');
    await writeFile(torrentPath, torrent);
    if ((await run(['info', torrentPath], { stdout, stderr: process.stderr })) !== 0) return 1;

    step(`a seeder and ${leecherCount} leechers, each its own client on its own port`);
    const seeder = await Client.create({ port: 0, host: '127.0.0.1', uploadLimit, dht: dhtOption });
    clients.push(seeder);
    show(clientSources('seeder', seeder));
    const seedTorrent = await seeder.add(metainfo, { dir: seedDir });
    check(seedTorrent.isComplete, `seeder on port ${seeder.port} verified its ${metainfo.pieceCount} pieces`);
    // The seeder announces itself on the DHT: the trackerless leecher will find it there.
    check(await until(20_000, () => (seedTorrent.dht?.stored ?? 0) > 0), `seeder announced on the DHT (stored by ${seedTorrent.dht?.stored ?? 0} nodes, its DHT node on port ${seeder.dht?.address.port})`);
    const leechers: Torrent[] = [];
    const started = performance.now();
    const doneAt = new Map<Torrent, number>();
    for (let i = 0; i < leecherCount; i++) {
      const c = await Client.create({ port: 0, host: '127.0.0.1', uploadLimit, dht: dhtOption });
      clients.push(c);
      show(clientSources(`leecher ${i + 1}`, c));
      // The last leecher starts from a trackerless magnet link (the infohash alone): peers from the DHT, then metadata from them (BEP 9).
      const source = i === leecherCount - 1 ? buildMagnet({ infoHash: metainfo.infoHash }) : metainfo;
      const t = await c.add(source, { dir: join(work, `leecher-${i + 1}`), trackerMinIntervalMs: 2000 });
      t.on('complete', () => doneAt.set(t, performance.now()));
      t.on('banned', (e, r) => say(`leecher ${i + 1} banned ${e.host}:${e.port}: ${r}`));
      leechers.push(t);
      say(`leecher ${i + 1}: port ${c.port}, DHT node on ${c.dht?.address.port}${typeof source === 'string' ? `, from ${source}` : ', from the .torrent'}`);
    }
    if (hidden > 0) say(`(${hidden} sources not on the dashboard: it shows at most 128)`);

    step('downloading');
    const tty = process.stdout.isTTY === true;
    const multi = tty && !quiet ? new cliProgress.MultiBar({ format: ' {name} |{bar}| {percentage}% ↓ {down} ↑ {up} peers {peers}', hideCursor: true, fps: 5 }, cliProgress.Presets.shades_classic) : undefined;
    const bars = leechers.map((_t, i) => multi?.create(100, 0, { name: `leecher ${i + 1}`, down: '', up: '', peers: '' }));
    const draw = (): void => {
      leechers.forEach((t, i) => {
        const s = t.stats();
        const pct = s.pieceCount ? Math.floor((1000 * s.piecesDone) / s.pieceCount) / 10 : 0;
        const fields = { name: `leecher ${i + 1}`, down: formatRate(s.downloadRate).padStart(11), up: formatRate(s.uploadRate).padStart(11), peers: String(s.peers) };
        if (multi) bars[i]!.update(pct, fields);
        else say(`leecher ${i + 1}: ${pct.toFixed(1).padStart(5)}%  down ${fields.down}  up ${fields.up}  peers ${fields.peers}`);
      });
    };
    const everyone = Promise.all(leechers.map((t) => (t.isComplete ? Promise.resolve() : new Promise<void>((r) => t.on('complete', () => r())))));
    const ticker = setInterval(draw, tty ? 200 : 1000);
    let timedOut = false;
    await Promise.race([everyone, new Promise<void>((r) => setTimeout(() => ((timedOut = true), r()), TIME_LIMIT_MS).unref())]);
    clearInterval(ticker);
    draw();
    multi?.stop();
    const secs = (performance.now() - started) / 1000;
    check(!timedOut, `all ${leecherCount} leechers complete in ${secs.toFixed(1)} s (${formatRate((size * leecherCount) / secs)} delivered in total)`);

    step('checking every copy');
    const original = createHash('sha1').update(await readFile(file)).digest('hex');
    for (let i = 0; i < leechers.length; i++) {
      const dir = join(work, `leecher-${i + 1}`);
      const v = await verifyPieces(dir, metainfo);
      const same = createHash('sha1').update(await readFile(join(dir, metainfo.name))).digest('hex') === original;
      check(v.validCount === v.pieceCount && same, `leecher ${i + 1}: ${v.validCount}/${v.pieceCount} pieces verified, file identical to the original`);
    }
    const magnetLeecher = leechers[leechers.length - 1]!;
    check((magnetLeecher.dht?.peersFound ?? 0) > 0, `leecher ${leechers.length} (trackerless magnet) found ${magnetLeecher.dht?.peersFound ?? 0} peer addresses through the DHT`);

    step('checking the tracker was used');
    // Every client with the tracker's URL (all but the magnet leecher) announced: the tracker holds its address.
    const registered = new Set(tracker.core.peersOf(metainfo.infoHash).map((p) => `${p.host}:${p.port}`));
    const announcers = clients.slice(0, leecherCount).map((c, i) => ({ name: i === 0 ? 'seeder' : `leecher ${i}`, at: `127.0.0.1:${c.port}` }));
    const unseen = announcers.filter((a) => !registered.has(a.at)).map((a) => a.name);
    check(unseen.length === 0, `the tracker saw announces from all ${announcers.length} clients with its URL${unseen.length ? `; not from ${unseen.join(', ')}` : ''} (${tracker.stats().announces.http} over HTTP, ${tracker.stats().announces.udp} over UDP)`);
    const received = leechers.slice(0, -1).map((t) => t.trackers.reduce((n, s) => n + s.peersReceived, 0));
    check(received.every((n) => n > 0), received.length === 0 ? 'no leecher used the tracker (the only one is trackerless)' : `the tracker handed out peers to every leecher that asked: ${received.join(', ')} addresses`);

    step('who uploaded what (ratio = uploaded / size)');
    const all = [seedTorrent, ...leechers];
    for (const [i, t] of all.entries()) {
      const s = t.stats();
      const doneIn = doneAt.get(t);
      say(
        `${(i === 0 ? 'seeder' : `leecher ${i}`).padEnd(10)} downloaded ${formatBytes(s.downloaded).padStart(10)}  uploaded ${formatBytes(s.uploaded).padStart(10)}  ratio ${(s.uploaded / size).toFixed(2)}` +
          (doneIn ? `  done after ${((doneIn - started) / 1000).toFixed(1)} s` : ''),
      );
    }
    const swarm = tracker.core.scrape(metainfo.infoHash);
    say(`tracker sees ${swarm.complete} seeders, ${swarm.incomplete} leechers, ${swarm.downloaded} completed downloads`);
    const stored = dhtNodes.reduce((a, n) => a + n.core.stats(n.runtime.clock.now()).storedPeers, 0);
    say(`the DHT's ${dhtCount} nodes store ${stored} peer addresses for the torrent's infohash`);
    say();
    tell(ok ? 'demo: all checks passed' : 'demo: some checks FAILED');
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    if (keep && ok) {
      tell(`keeping everything running (files in ${work}, seeding${dashboard ? `, dashboard at ${dashboard.url}` : ''}) until Ctrl-C or SIGTERM`);
      // SIGTERM (a service manager, `kill`) stops it the same way as Ctrl-C: everything is closed and the folder removed.
      const signal = await new Promise<NodeJS.Signals>((r) => {
        const stop = (sig: NodeJS.Signals): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          r(sig);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
      tell(`demo: ${signal}, shutting down`);
    }
    return ok ? 0 : 1;
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(dhtNodes.map((n) => n.close()));
    await dashboard?.close();
    await tracker?.close();
    await rm(work, { recursive: true, force: true });
  }
}

process.exitCode = await main();
