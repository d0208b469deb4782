/**
 * Self-test of the interop harness (test/harness): real Transmission 3.00 and
 * WebTorrent 1.9.7 move a generated two-file torrent both ways, and the data
 * is compared byte for byte with the source.
 *
 * - Transmission seeds on 127.0.0.1; two WebTorrents dial it directly, one
 *   with the .torrent, one with a magnet link (metadata from Transmission).
 * - WebTorrent seeds on 127.0.0.1; Transmission, told that peer by a
 *   loopback tracker, never dials it (libtransmission drops 127.0.0.0/8 peers
 *   from trackers), but when WebTorrent dials Transmission it downloads.
 * - Transmission in a network namespace of its own (10.x), WebTorrent and a
 *   tracker stub on the root side of the test bridge: Transmission dials the
 *   peer the tracker gives it.
 *
 * Each transfer takes about 10 s: Transmission decides interest and unchokes
 * in its rechoke pulse, every 10 s. Needs transmission-cli, ip (iproute2),
 * setpriv (util-linux), stdbuf (coreutils) and root for the namespace; it
 * fails, never skips, when one is missing.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createTorrent } from '../src/files/create-torrent.js';
import { buildMagnet } from '../src/codec/magnet.js';
import type { Metainfo } from '../src/codec/metainfo.js';
import { startTransmission } from './harness/transmission.js';
import { startWebTorrent } from './harness/webtorrent.js';
import { startTrackerStub } from './harness/tracker-stub.js';
import { createNetwork } from './harness/netns.js';
import { liveProcesses, sleep, waitUntil } from './harness/proc.js';

let root = '';
let seedDir = '';
let torrentFile = '';
let metainfo: Metainfo;
const files = new Map<string, Buffer>([
  ['a.bin', content(700_001, 'a')],
  ['sub/b.bin', content(400_000, 'b')],
]);

function content(bytes: number, seed: string): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 32) createHash('sha256').update(`${seed}:${i}`).digest().copy(out, i);
  return out;
}

/** Every file of the payload under `dir`, byte for byte. */
function assertSameData(dir: string, who: string): void {
  for (const [path, bytes] of files) {
    const got = readFileSync(join(dir, 'payload', path));
    assert.ok(got.equals(bytes), `${who}: payload/${path} differs from the source (${got.length} vs ${bytes.length} bytes)`);
  }
}

interface Stoppable {
  stop(): Promise<void>;
  readonly process?: { readonly exitInfo: unknown; readonly pid: number };
}

/** Runs `body`, then stops everything it deferred (also when it throws), twice, as stop() must allow; then checks those processes exited. */
async function withCleanup(body: (defer: <T extends Stoppable>(h: T) => T) => Promise<void>): Promise<void> {
  const started: Stoppable[] = [];
  try {
    await body((h) => {
      started.push(h);
      return h;
    });
  } finally {
    for (const h of [...started].reverse()) await h.stop();
    for (const h of started) await h.stop();
  }
  for (const h of started) if (h.process) assert.notEqual(h.process.exitInfo, undefined, `pid ${h.process.pid} still runs after stop()`);
}

before(async () => {
  for (const program of ['transmission-cli', 'setpriv', 'stdbuf', 'ip']) {
    const r = spawnSync(program, ['--help'], { stdio: 'ignore', timeout: 10_000 });
    assert.ok(!(r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT'), `${program} not found on PATH (run .ci/run)`);
  }
  root = mkdtempSync(join(tmpdir(), 'peerkit-harness-'));
  seedDir = join(root, 'seed');
  for (const [path, bytes] of files) {
    mkdirSync(join(seedDir, 'payload', path, '..'), { recursive: true });
    writeFileSync(join(seedDir, 'payload', path), bytes);
  }
  const made = await createTorrent(join(seedDir, 'payload'), { pieceLength: 64 * 1024 });
  metainfo = made.metainfo;
  torrentFile = join(root, 'payload.torrent');
  writeFileSync(torrentFile, made.torrent);
});

after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
  assert.deepEqual(liveProcesses().map((p) => p.pid), [], 'every harness process has exited');
});

// The three run side by side: most of their time is Transmission's 10 s rechoke pulse.
describe('interop harness', { concurrency: true }, () => {
  test('Transmission seeds on 127.0.0.1; WebTorrent downloads it from a .torrent and from a magnet link, dialing Transmission', { timeout: 40_000 }, async () => {
    await withCleanup(async (defer) => {
      const tx = defer(await startTransmission({ mode: 'seed', torrent: torrentFile, dir: seedDir, logFile: join(root, 'tx-seed.log') }));
      await tx.waitForSeeding(10_000);
      const peer = `127.0.0.1:${tx.port}`;
      // Transmission keeps one peer per IP address: each WebTorrent gets its own loopback address.
      const fromTorrent = defer(await startWebTorrent({ mode: 'download', torrent: torrentFile, dir: join(root, 'wt-torrent'), host: '127.0.0.2', peers: [peer] }));
      const magnet = buildMagnet({ infoHash: metainfo.infoHash, name: metainfo.name });
      const fromMagnet = defer(await startWebTorrent({ mode: 'download', torrent: magnet, dir: join(root, 'wt-magnet'), host: '127.0.0.3', peers: [peer] }));
      await Promise.all([fromTorrent.waitForComplete(30_000), fromMagnet.waitForComplete(30_000)]);
      assertSameData(join(root, 'wt-torrent'), 'WebTorrent (.torrent)');
      assertSameData(join(root, 'wt-magnet'), 'WebTorrent (magnet)');
      assert.equal(fromMagnet.metainfo()?.infoHashHex, metainfo.infoHashHex);
      assert.deepEqual(fromTorrent.events.filter((e) => e.type === 'wire').map((e) => e.type === 'wire' && e.addr), [peer]);
      const seeding = await tx.waitForStatus('seeding to both', 5000, (s) => s.kind === 'seeding');
      assert.equal(seeding.kind, 'seeding');
    });
  });

  test('Transmission on 127.0.0.1 ignores a loopback peer from its tracker, yet downloads when that peer dials in', { timeout: 40_000 }, async () => {
    await withCleanup(async (defer) => {
      const wt = defer(await startWebTorrent({ mode: 'seed', torrent: torrentFile, dir: seedDir }));
      await wt.waitForSeeding(10_000);
      const stub = defer(await startTrackerStub({ peers: [{ host: '127.0.0.1', port: wt.port }], interval: 5 }));
      const magnet = buildMagnet({ infoHash: metainfo.infoHash, name: metainfo.name, trackers: [stub.announceUrl] });
      const dir = join(root, 'tx-loopback');
      const tx = defer(await startTransmission({ mode: 'leech', torrent: magnet, dir, logFile: join(root, 'tx-loopback.log') }));
      // It announces and is told about the seeder at 127.0.0.1 ...
      await waitUntil('an announce answered with the seeder', 10_000, () => stub.announces.some((a) => a.port === tx.port && a.infoHashHex === metainfo.infoHashHex));
      await waitUntil('Transmission to log the peer', 5000, () => /Got 1 peers from tracker/.test(tx.output()));
      // ... but never connects to it (libtransmission's martian filter).
      await sleep(3000);
      assert.equal(wt.events.filter((e) => e.type === 'wire').length, 0, 'Transmission dialed a 127.0.0.1 peer from a tracker');
      assert.deepEqual(tx.status?.kind === 'downloading' && [tx.status.percent, tx.status.peersConnected], [0, 0]);
      // An incoming connection from loopback is accepted: metadata, then data.
      wt.addPeer(`127.0.0.1:${tx.port}`);
      await tx.waitForComplete(30_000);
      assertSameData(dir, 'Transmission (magnet, peer dialed in)');
      assert.equal(tx.metainfo()?.infoHashHex, metainfo.infoHashHex);
    });
  });

  test('Transmission in its own network namespace downloads from a WebTorrent seeder its tracker names', { timeout: 40_000 }, async () => {
    await withCleanup(async (defer) => {
      const net = defer(await createNetwork({ hosts: 1 }));
      const [host] = net.hosts;
      assert.ok(host && net.rootAddress);
      const wt = defer(await startWebTorrent({ mode: 'seed', torrent: torrentFile, dir: seedDir, host: net.rootAddress, allowedHosts: net.addresses }));
      await wt.waitForSeeding(10_000);
      const stub = defer(await startTrackerStub({ host: net.rootAddress, peers: [{ host: net.rootAddress, port: wt.port }], interval: 5 }));
      const withTracker = await createTorrent(join(seedDir, 'payload'), { pieceLength: 64 * 1024, announce: [[stub.announceUrl]] });
      assert.equal(withTracker.metainfo.infoHashHex, metainfo.infoHashHex);
      const tracked = join(root, 'tracked.torrent');
      writeFileSync(tracked, withTracker.torrent);
      const dir = join(root, 'tx-netns');
      const tx = defer(await startTransmission({ mode: 'leech', torrent: tracked, dir, netns: host, allowedHosts: net.addresses, logFile: join(root, 'tx-netns.log') }));
      assert.equal(tx.host, host.address);
      await tx.waitForComplete(30_000);
      assertSameData(dir, 'Transmission (namespace, tracker peer)');
      assert.ok(stub.announces.some((a) => a.from === host.address && a.port === tx.port), `announced from ${host.address}: ${JSON.stringify(stub.announces)}`);
      assert.ok(wt.events.some((e) => e.type === 'wire' && e.addr.startsWith(`${host.address}:`)), 'Transmission dialed the seeder');
    });
    const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    assert.ok(!left.includes(`peerkit-${process.pid}-`), `namespaces left behind: ${left}`);
  });
});
