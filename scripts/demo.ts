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
 * byte for byte and the upload ratios are printed. Exits non-zero if anything
 * does not hold.
 *
 * Options: --size MiB (default 64), --leechers N (default 5), --dht-nodes N
 * (default 20), --keep (leave
 * the files in place and keep seeding until Ctrl-C), --dashboard [HOST:]PORT
 * (default 127.0.0.1 and a free port; the URL is printed), --dashboard-token
 * TOKEN (or PEERKIT_DASHBOARD_TOKEN), --no-dashboard, --limit MiB (each
 * client's upload limit per second, to watch the swarm at a slower pace).
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
import { dashboardSettings } from '../src/cli/dashboard-option.js';
import { clientSources } from '../src/dashboard/client-source.js';
import { DhtSource } from '../src/dashboard/dht-source.js';
import type { DashboardSource } from '../src/dashboard/source.js';
import { startDashboard, type DashboardHandle } from '../src/dashboard/server.js';
import { TrackerSource } from '../src/dashboard/tracker-source.js';

const args = process.argv.slice(2);
const num = (name: string, def: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const sizeMiB = num('--size', 64);
const leecherCount = num('--leechers', 5);
const dhtCount = num('--dht-nodes', 20);
const keep = args.includes('--keep');
const uploadLimit = Math.round(num('--limit', 0) * 1024 * 1024);
const str = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
let dashboardAt: ReturnType<typeof dashboardSettings>;
try {
  dashboardAt = args.includes('--no-dashboard') ? undefined : dashboardSettings({ dashboard: str('--dashboard') ?? '127.0.0.1:0', dashboardToken: str('--dashboard-token') });
} catch (e) {
  console.error(`demo: ${(e as Error).message}`);
  process.exit(2);
}
if (!(sizeMiB > 0 && sizeMiB <= 4096) || !(Number.isInteger(leecherCount) && leecherCount >= 1 && leecherCount <= 50) || !(Number.isInteger(dhtCount) && dhtCount >= 1 && dhtCount <= 50) || !(uploadLimit >= 0)) {
  console.error('demo: --size takes MiB (1-4096), --leechers a count (1-50), --dht-nodes a count (1-50), --limit MiB per second');
  process.exit(2);
}
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
  console.log(`\n== ${title}`);
}

async function main(): Promise<number> {
  const work = await mkdtemp(join(tmpdir(), 'peerkit-demo-'));
  // Ctrl-C before the end: no half-written files left behind (sockets close with the process).
  const interrupted = (signal: NodeJS.Signals): void => {
    console.log(`\ndemo: interrupted (${signal})`);
    if (!keep) rmSync(work, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  const clients: Client[] = [];
  const dhtNodes: DhtNode[] = [];
  let tracker: Awaited<ReturnType<typeof startTracker>> | undefined;
  let dashboard: DashboardHandle | undefined;
  let ok = true;
  const check = (cond: boolean, what: string): void => {
    console.log(`${cond ? 'ok  ' : 'FAIL'} ${what}`);
    ok &&= cond;
  };
  try {
    step('a tracker on 127.0.0.1 (HTTP and UDP)');
    tracker = await startTracker({ host: '127.0.0.1', http: 0, udp: 0 });
    console.log(`${tracker.httpUrl}\n${tracker.udpUrl}`);
    if (dashboardAt) {
      dashboard = await startDashboard({ ...dashboardAt, sources: [new TrackerSource('tracker', tracker)] });
      console.log(`dashboard: ${dashboard.url}`);
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
    if ((await run(['info', torrentPath])) !== 0) return 1;

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
      t.on('banned', (e, r) => console.log(`leecher ${i + 1} banned ${e.host}:${e.port}: ${r}`));
      leechers.push(t);
      console.log(`leecher ${i + 1}: port ${c.port}, DHT node on ${c.dht?.address.port}${typeof source === 'string' ? `, from ${source}` : ', from the .torrent'}`);
    }
    if (hidden > 0) console.log(`(${hidden} sources not on the dashboard: it shows at most 128)`);

    step('downloading');
    const tty = process.stdout.isTTY === true;
    const multi = tty ? new cliProgress.MultiBar({ format: ' {name} |{bar}| {percentage}% ↓ {down} ↑ {up} peers {peers}', hideCursor: true, fps: 5 }, cliProgress.Presets.shades_classic) : undefined;
    const bars = leechers.map((_t, i) => multi?.create(100, 0, { name: `leecher ${i + 1}`, down: '', up: '', peers: '' }));
    const draw = (): void => {
      leechers.forEach((t, i) => {
        const s = t.stats();
        const pct = s.pieceCount ? Math.floor((1000 * s.piecesDone) / s.pieceCount) / 10 : 0;
        const fields = { name: `leecher ${i + 1}`, down: formatRate(s.downloadRate).padStart(11), up: formatRate(s.uploadRate).padStart(11), peers: String(s.peers) };
        if (multi) bars[i]!.update(pct, fields);
        else console.log(`leecher ${i + 1}: ${pct.toFixed(1).padStart(5)}%  down ${fields.down}  up ${fields.up}  peers ${fields.peers}`);
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

    step('who uploaded what (ratio = uploaded / size)');
    const all = [seedTorrent, ...leechers];
    for (const [i, t] of all.entries()) {
      const s = t.stats();
      const doneIn = doneAt.get(t);
      console.log(
        `${(i === 0 ? 'seeder' : `leecher ${i}`).padEnd(10)} downloaded ${formatBytes(s.downloaded).padStart(10)}  uploaded ${formatBytes(s.uploaded).padStart(10)}  ratio ${(s.uploaded / size).toFixed(2)}` +
          (doneIn ? `  done after ${((doneIn - started) / 1000).toFixed(1)} s` : ''),
      );
    }
    const swarm = tracker.core.scrape(metainfo.infoHash);
    console.log(`tracker sees ${swarm.complete} seeders, ${swarm.incomplete} leechers, ${swarm.downloaded} completed downloads`);
    const stored = dhtNodes.reduce((a, n) => a + n.core.stats(n.runtime.clock.now()).storedPeers, 0);
    console.log(`the DHT's ${dhtCount} nodes store ${stored} peer addresses for the torrent's infohash`);
    console.log(ok ? '\ndemo: all checks passed' : '\ndemo: some checks FAILED');
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    if (keep && ok) {
      console.log(`files kept in ${work}; seeding until Ctrl-C${dashboard ? `; dashboard at ${dashboard.url}` : ''}`);
      await new Promise<void>((r) => process.once('SIGINT', () => r()));
    }
    return ok ? 0 : 1;
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(dhtNodes.map((n) => n.close()));
    await dashboard?.close();
    await tracker?.close();
    if (!keep) await rm(work, { recursive: true, force: true });
  }
}

process.exitCode = await main();
