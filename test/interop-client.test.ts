/**
 * Interop of peerkit's Client with real clients, both directions, every copy
 * compared byte for byte with the source:
 *
 * - Transmission 3.00 seeds; peerkit downloads from the .torrent (dialing
 *   Transmission directly) and from a magnet link whose only source is our
 *   tracker (src/tracker), metadata over BEP 9 from Transmission.
 * - peerkit seeds; Transmission downloads. On loopback Transmission never
 *   dials a 127.0.0.0/8 peer (see test/harness/transmission.ts), so for the
 *   .torrent the peerkit seeder dials it (the `peers` option of Client.add).
 *   For a magnet link and for a second .torrent case Transmission runs in a
 *   network namespace, where it dials the peerkit seeder our tracker names.
 * - WebTorrent 1.9.7 seeds; peerkit downloads from the .torrent and from a
 *   magnet link (x.pe). peerkit seeds; WebTorrent downloads from the .torrent
 *   (peer from our tracker) and from a magnet link (addPeer).
 *
 * Payloads: a two-file torrent (pieces span the files, the last piece is
 * short) and a single file whose last piece is short. Transmission keeps one
 * peer per IP address and peerkit dials from 127.0.0.1, so each Transmission
 * has one peerkit peer. Transfers with Transmission take ~10 s (its rechoke
 * pulse). The tests fail, never skip, when a client or tool is missing.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Client } from '../src/client/client.js';
import type { Torrent } from '../src/client/torrent.js';
import { createTorrent } from '../src/files/create-torrent.js';
import { buildMagnet } from '../src/codec/magnet.js';
import type { Metainfo } from '../src/codec/metainfo.js';
import { startTracker, type TrackerHandle } from '../src/tracker/index.js';
import { startTransmission } from './harness/transmission.js';
import { startWebTorrent } from './harness/webtorrent.js';
import { createNetwork } from './harness/netns.js';
import { liveProcesses } from './harness/proc.js';

function content(bytes: number, seed: string): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 32) createHash('sha256').update(`${seed}:${i}`).digest().copy(out, i);
  return out;
}

interface Payload {
  /** Folder holding the data as the torrent lays it out (the seeders' -w / dir). */
  readonly seedDir: string;
  /** Relative path (from a download folder) to bytes. */
  readonly files: ReadonlyMap<string, Buffer>;
  readonly metainfo: Metainfo;
  /** The .torrent, without trackers. */
  readonly torrentFile: string;
  /** The source folder or file, for torrents with trackers (same infohash). */
  readonly src: string;
}

let root = '';
/** Two files, 64 KiB pieces spanning them, short last piece (1 777 780 bytes). */
let multi: Payload;
/** One file of 2 MiB + 12 345 bytes, 32 KiB pieces: the last piece is 12 345 bytes. */
let single: Payload;

async function makePayload(name: string, files: Map<string, Buffer>, pieceLength: number, isDir: boolean): Promise<Payload> {
  const seedDir = join(root, `seed-${name}`);
  for (const [path, bytes] of files) {
    mkdirSync(join(seedDir, path, '..'), { recursive: true });
    writeFileSync(join(seedDir, path), bytes);
  }
  const src = isDir ? join(seedDir, name) : join(seedDir, [...files.keys()][0]!);
  const made = await createTorrent(src, { pieceLength });
  const torrentFile = join(root, `${name}.torrent`);
  writeFileSync(torrentFile, made.torrent);
  return { seedDir, files, metainfo: made.metainfo, torrentFile, src };
}

let tracked = 0;
/** The payload's torrent announcing to `url` (same infohash), written to a file of its own. */
async function withTracker(p: Payload, url: string): Promise<{ metainfo: Metainfo; torrentFile: string }> {
  const made = await createTorrent(p.src, { pieceLength: p.metainfo.pieceLength, announce: [[url]] });
  assert.equal(made.metainfo.infoHashHex, p.metainfo.infoHashHex);
  const torrentFile = join(root, `tracked-${++tracked}.torrent`);
  writeFileSync(torrentFile, made.torrent);
  return { metainfo: made.metainfo, torrentFile };
}

/** A tracker of our own (src/tracker) for one test, so that no test finds another's peers. */
async function ourTracker(defer: Defer, host = '127.0.0.1'): Promise<TrackerHandle> {
  const t = await startTracker({ host, interval: 5, udp: false });
  defer({ stop: () => t.close() });
  assert.ok(t.httpUrl);
  return t;
}

function assertSameData(p: Payload, dir: string, who: string): void {
  for (const [path, bytes] of p.files) {
    const got = readFileSync(join(dir, path));
    assert.ok(got.equals(bytes), `${who}: ${path} differs from the source (${got.length} vs ${bytes.length} bytes)`);
  }
}

function completes(t: Torrent, ms: number, who: string): Promise<void> {
  if (t.isComplete) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${who}: ${t.name} did not complete in ${ms} ms: ${JSON.stringify(t.stats())}`)), ms);
    t.on('complete', () => {
      clearTimeout(timer);
      resolve();
    });
    t.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

interface Stoppable {
  stop(): Promise<void>;
  readonly process?: { readonly exitInfo: unknown; readonly pid: number };
}
type Defer = <T extends Stoppable>(h: T) => T;

/** Runs `body`, then stops everything it deferred, in reverse order, also when it throws; checks child processes exited. */
async function withCleanup(body: (defer: Defer, client: (host?: string) => Promise<Client>) => Promise<void>): Promise<void> {
  const started: Stoppable[] = [];
  const defer: Defer = (h) => {
    started.push(h);
    return h;
  };
  const client = async (host = '127.0.0.1'): Promise<Client> => {
    const c = await Client.create({ port: 0, host });
    defer({ stop: () => c.close() });
    return c;
  };
  try {
    await body(defer, client);
  } finally {
    for (const h of [...started].reverse()) await h.stop().catch(() => {});
  }
  for (const h of started) if (h.process) assert.notEqual(h.process.exitInfo, undefined, `pid ${h.process.pid} still runs after stop()`);
}

before(async () => {
  for (const program of ['transmission-cli', 'stdbuf', 'setpriv', 'ip']) {
    const r = spawnSync(program, ['--help'], { stdio: 'ignore', timeout: 10_000 });
    assert.ok(!(r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT'), `${program} not found on PATH (run .ci/run)`);
  }
  root = mkdtempSync(join(tmpdir(), 'peerkit-interop-client-'));
  multi = await makePayload(
    'set',
    new Map([
      ['set/a.bin', content(1_000_003, 'a')],
      ['set/sub/b.bin', content(777_777, 'b')],
    ]),
    64 * 1024,
    true,
  );
  single = await makePayload('one.bin', new Map([['one.bin', content(2 * 1024 * 1024 + 12_345, 'one')]]), 32 * 1024, false);
  assert.notEqual(multi.metainfo.length % multi.metainfo.pieceLength, 0, 'multi-file: short last piece');
  assert.equal(multi.metainfo.files.length, 2);
  assert.equal(single.metainfo.length % single.metainfo.pieceLength, 12_345);
});

after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
  assert.deepEqual(liveProcesses().map((p) => p.pid), [], 'every child process has exited');
});

describe('peerkit Client with real clients', { concurrency: true }, () => {
  test('Transmission seeds a multi-file torrent; peerkit downloads the .torrent, dialing it', { timeout: 60_000 }, async () => {
    await withCleanup(async (defer, client) => {
      const tx = defer(await startTransmission({ mode: 'seed', torrent: multi.torrentFile, dir: multi.seedDir, logFile: join(root, 'tx-seed-1.log') }));
      await tx.waitForSeeding(15_000);
      const pk = await client();
      const dir = join(root, 'pk-from-tx');
      const peers: string[] = [];
      const t = await pk.add(multi.metainfo, { dir, peers: [{ host: '127.0.0.1', port: tx.port }], seed: false });
      t.on('peer', (e, c) => peers.push(`${e.host}:${e.port} ${c}`));
      await completes(t, 45_000, 'peerkit from Transmission');
      assertSameData(multi, dir, 'peerkit (.torrent, from Transmission)');
      assert.deepEqual(peers.map((x) => x.split(' ')[0]), [`127.0.0.1:${tx.port}`], `peers: ${peers.join(', ')}`);
    });
  });

  test('Transmission seeds; peerkit downloads a magnet link whose only source is our tracker (metadata over BEP 9)', { timeout: 60_000 }, async () => {
    await withCleanup(async (defer, client) => {
      const tracker = await ourTracker(defer);
      const { torrentFile } = await withTracker(single, tracker.httpUrl!);
      const tx = defer(await startTransmission({ mode: 'seed', torrent: torrentFile, dir: single.seedDir, logFile: join(root, 'tx-seed-2.log') }));
      await tx.waitForSeeding(15_000);
      const pk = await client();
      const dir = join(root, 'pk-magnet-from-tx');
      const magnet = buildMagnet({ infoHash: single.metainfo.infoHash, name: single.metainfo.name, trackers: [tracker.httpUrl!] });
      const t = await pk.add(magnet, { dir, seed: false, trackerMinIntervalMs: 1000 });
      assert.equal(t.metainfo, undefined);
      const peers: string[] = [];
      t.on('peer', (e, c) => peers.push(`${e.host}:${e.port} ${c}`));
      await completes(t, 45_000, 'peerkit magnet from Transmission');
      assert.equal((t.metainfo as Metainfo | undefined)?.infoHashHex, single.metainfo.infoHashHex);
      assertSameData(single, dir, 'peerkit (magnet, from Transmission via tracker)');
      assert.deepEqual(peers.map((x) => x.split(' ')[0]), [`127.0.0.1:${tx.port}`], `peers: ${peers.join(', ')}`);
    });
  });

  test('peerkit seeds a short-last-piece file; Transmission downloads the .torrent when peerkit dials it', { timeout: 60_000 }, async () => {
    await withCleanup(async (defer, client) => {
      const dir = join(root, 'tx-from-pk');
      const tx = defer(await startTransmission({ mode: 'leech', torrent: single.torrentFile, dir, logFile: join(root, 'tx-leech-1.log') }));
      const pk = await client();
      const s = await pk.add(single.metainfo, { dir: single.seedDir, peers: [{ host: '127.0.0.1', port: tx.port }] });
      assert.equal(s.isComplete, true);
      await tx.waitForComplete(45_000);
      assertSameData(single, dir, 'Transmission (.torrent, from peerkit)');
      assert.ok(s.stats().uploaded >= single.metainfo.length, `peerkit uploaded ${s.stats().uploaded}`);
    });
  });

  // On loopback this case stalls: after the metadata arrives Transmission restarts the torrent,
  // dropping the peerkit seeder that dialed it; Transmission 3.00 never dials a 127/8 address
  // itself, and peerkit redials a peer that closed only after 60 s. So Transmission runs in a
  // namespace, where it finds (and redials) the peerkit seeder through our tracker.
  test('peerkit seeds a multi-file torrent; Transmission in a network namespace downloads a magnet link (tracker, metadata from peerkit)', { timeout: 60_000 }, async () => {
    await withCleanup(async (defer, client) => {
      const net = defer(await createNetwork({ hosts: 1 }));
      const [host] = net.hosts;
      assert.ok(host && net.rootAddress);
      const nsTracker = await ourTracker(defer, net.rootAddress);
      const pk = await client(net.rootAddress);
      const s = await pk.add(multi.metainfo, { dir: multi.seedDir, trackers: [[nsTracker.httpUrl!]], trackerMinIntervalMs: 1000 });
      const dir = join(root, 'tx-magnet-from-pk');
      const magnet = buildMagnet({ infoHash: multi.metainfo.infoHash, name: multi.metainfo.name, trackers: [nsTracker.httpUrl!] });
      const tx = defer(await startTransmission({ mode: 'leech', torrent: magnet, dir, netns: host, allowedHosts: net.addresses, logFile: join(root, 'tx-leech-2.log') }));
      await tx.waitForComplete(45_000);
      assert.equal(tx.metainfo()?.infoHashHex, multi.metainfo.infoHashHex);
      assertSameData(multi, dir, 'Transmission (namespace, magnet, from peerkit)');
      assert.ok(s.stats().uploaded >= multi.metainfo.length, `peerkit uploaded ${s.stats().uploaded}`);
    });
  });

  test('Transmission in a network namespace downloads from the peerkit seeder our tracker names', { timeout: 60_000 }, async () => {
    const names: string[] = [];
    await withCleanup(async (defer, client) => {
      const net = defer(await createNetwork({ hosts: 1 }));
      names.push(...net.hosts.map((h) => h.name));
      const [host] = net.hosts;
      assert.ok(host && net.rootAddress);
      const nsTracker = await ourTracker(defer, net.rootAddress);
      const pk = await client(net.rootAddress);
      const { metainfo, torrentFile } = await withTracker(multi, nsTracker.httpUrl!);
      const s = await pk.add(metainfo, { dir: multi.seedDir, trackerMinIntervalMs: 1000 });
      const dir = join(root, 'tx-ns-from-pk');
      const tx = defer(await startTransmission({ mode: 'leech', torrent: torrentFile, dir, netns: host, allowedHosts: net.addresses, logFile: join(root, 'tx-ns.log') }));
      await tx.waitForComplete(45_000);
      assertSameData(multi, dir, 'Transmission (namespace, peer from our tracker)');
      assert.ok(s.stats().uploaded >= multi.metainfo.length, `peerkit uploaded ${s.stats().uploaded}`);
    });
    const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    assert.ok(!names.some((n) => left.includes(n)), `namespaces left behind: ${left}`);
  });

  test('WebTorrent seeds a multi-file torrent; peerkit downloads the .torrent and a magnet link (x.pe)', { timeout: 45_000 }, async () => {
    await withCleanup(async (defer, client) => {
      const wt = defer(await startWebTorrent({ mode: 'seed', torrent: multi.torrentFile, dir: multi.seedDir, logFile: join(root, 'wt-seed.log') }));
      await wt.waitForSeeding(15_000);
      const peer = { host: '127.0.0.1', port: wt.port };
      const [a, b] = [await client(), await client()];
      const dirA = join(root, 'pk-from-wt');
      const dirB = join(root, 'pk-magnet-from-wt');
      const ta = await a.add(multi.metainfo, { dir: dirA, peers: [peer], seed: false });
      const tb = await b.add(buildMagnet({ infoHash: multi.metainfo.infoHash, name: multi.metainfo.name, peers: [peer] }), { dir: dirB, seed: false, pex: false });
      await Promise.all([completes(ta, 30_000, 'peerkit from WebTorrent'), completes(tb, 30_000, 'peerkit magnet from WebTorrent')]);
      assertSameData(multi, dirA, 'peerkit (.torrent, from WebTorrent)');
      assertSameData(multi, dirB, 'peerkit (magnet, from WebTorrent)');
      assert.equal(tb.metainfo?.infoHashHex, multi.metainfo.infoHashHex);
    });
  });

  test('peerkit seeds a short-last-piece file; WebTorrent downloads the .torrent (peer from our tracker) and a magnet link (addPeer)', { timeout: 45_000 }, async () => {
    await withCleanup(async (defer, client) => {
      const tracker = await ourTracker(defer);
      const pk = await client();
      const s = await pk.add(single.metainfo, { dir: single.seedDir, trackers: [[tracker.httpUrl!]], trackerMinIntervalMs: 1000 });
      assert.equal(s.isComplete, true);
      const dirA = join(root, 'wt-from-pk');
      const dirB = join(root, 'wt-magnet-from-pk');
      const fromTracker = defer(await startWebTorrent({ mode: 'download', torrent: single.torrentFile, dir: dirA, announce: [tracker.httpUrl!], host: '127.0.0.2', logFile: join(root, 'wt-a.log') }));
      const magnet = buildMagnet({ infoHash: single.metainfo.infoHash, name: single.metainfo.name });
      const fromMagnet = defer(await startWebTorrent({ mode: 'download', torrent: magnet, dir: dirB, host: '127.0.0.3', logFile: join(root, 'wt-b.log') }));
      fromMagnet.addPeer(`127.0.0.1:${pk.port}`);
      await Promise.all([fromTracker.waitForComplete(30_000), fromMagnet.waitForComplete(30_000)]).catch((e: Error) => {
        throw new Error(`${e.message}\npeerkit seeder's peers: ${JSON.stringify(s.peers())}`, { cause: e });
      });
      assertSameData(single, dirA, 'WebTorrent (.torrent, from peerkit via tracker)');
      assertSameData(single, dirB, 'WebTorrent (magnet, from peerkit)');
      assert.equal(fromMagnet.metainfo()?.infoHashHex, single.metainfo.infoHashHex);
      assert.ok(fromTracker.events.some((e) => e.type === 'wire' && e.addr === `127.0.0.1:${pk.port}`), 'WebTorrent dialed the peerkit seeder from the tracker');
    });
  });
});
