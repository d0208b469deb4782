/**
 * Interop of the peerkit tracker (src/tracker) with WebTorrent 1.9.7 and with
 * peerkit's own client, on loopback:
 *
 * - two WebTorrent processes announce to it, over UDP (BEP 15) and over HTTP,
 *   find each other through it and one downloads from the other;
 * - a peerkit seeder and a WebTorrent leecher meet through it over UDP, and a
 *   peerkit leecher finds a WebTorrent seeder through it over HTTP;
 * - a private torrent: WebTorrent and peerkit announce with the user's
 *   passkey in the HTTP URL and swarm, the user's transfer is accounted, and
 *   a peerkit client with a wrong passkey is refused with the reason.
 *
 * Every WebTorrent listens on 127.0.0.1 (its tracker client announces from
 * there, so the tracker can name no other address for it) and runs with DHT,
 * LSD, uTP, UPnP, NAT-PMP and PEX off; every copy is compared byte for byte
 * with the source.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '../src/client/client.js';
import type { Torrent } from '../src/client/torrent.js';
import { createTorrent } from '../src/files/create-torrent.js';
import { withTrackers, type Metainfo } from '../src/codec/metainfo.js';
import { startTracker, type StartTrackerOptions, type TrackerHandle } from '../src/tracker/index.js';
import { startWebTorrent, type WebTorrentHandle } from './harness/webtorrent.js';
import { liveProcesses } from './harness/proc.js';

let root = '';
let made = 0;

function content(bytes: number, seed: string): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 32) createHash('sha256').update(`${seed}:${i}`).digest().copy(out, i);
  return out;
}

interface Fixture {
  readonly seedDir: string;
  readonly bytes: Buffer;
  readonly name: string;
  readonly metainfo: Metainfo;
  readonly torrentFile: string;
}

/** A fresh single file (1.5 MiB + 1 000 bytes, 64 KiB pieces) and its torrent announcing to `announce`. */
async function fixture(announce: string, priv = false): Promise<Fixture> {
  const n = ++made;
  const name = `f${n}.bin`;
  const seedDir = join(root, `seed-${n}`);
  mkdirSync(seedDir, { recursive: true });
  const bytes = content(1536 * 1024 + 1000, name);
  writeFileSync(join(seedDir, name), bytes);
  const t = await createTorrent(join(seedDir, name), { pieceLength: 64 * 1024, announce: [[announce]], private: priv });
  const torrentFile = join(root, `${n}.torrent`);
  writeFileSync(torrentFile, t.torrent);
  return { seedDir, bytes, name, metainfo: t.metainfo, torrentFile };
}

function assertCopy(f: Fixture, dir: string, who: string): void {
  assert.ok(readFileSync(join(dir, f.name)).equals(f.bytes), `${who}: the copy differs from the source`);
}

function completes(t: Torrent, ms: number, who: string): Promise<void> {
  if (t.isComplete) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${who}: did not complete in ${ms} ms: ${JSON.stringify(t.stats())}`)), ms);
    t.on('complete', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function waitFor(what: string, ms: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Scope {
  tracker: TrackerHandle;
  webtorrent(o: Parameters<typeof startWebTorrent>[0]): Promise<WebTorrentHandle>;
  client(): Promise<Client>;
  dir(name: string): string;
}

/** A tracker of its own for one test, and everything started in it stopped afterwards. */
async function withTracker(options: StartTrackerOptions, body: (s: Scope) => Promise<void>): Promise<void> {
  const tracker = await startTracker({ host: '127.0.0.1', interval: 5, ...options });
  const stops: (() => Promise<void>)[] = [() => tracker.close()];
  const wts: WebTorrentHandle[] = [];
  const scope: Scope = {
    tracker,
    webtorrent: async (o) => {
      const h = await startWebTorrent(o);
      wts.push(h);
      stops.push(() => h.stop());
      return h;
    },
    client: async () => {
      const c = await Client.create({ port: 0 });
      stops.push(() => c.close());
      return c;
    },
    dir: (name) => join(root, `${++made}-${name}`),
  };
  try {
    await body(scope);
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
  }
  for (const h of wts) assert.notEqual(h.process.exitInfo, undefined, `WebTorrent pid ${h.pid} still runs after stop()`);
}

before(() => {
  root = mkdtempSync(join(tmpdir(), 'peerkit-interop-tracker-wt-'));
});

after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
  assert.deepEqual(liveProcesses().map((p) => p.pid), [], 'every child process has exited');
});

for (const proto of ['udp', 'http'] as const) {
  test(`two WebTorrents find each other through the peerkit tracker over ${proto.toUpperCase()} and one downloads from the other`, { timeout: 40_000 }, async () => {
    await withTracker({}, async (s) => {
      const url = proto === 'udp' ? s.tracker.udpUrl! : s.tracker.httpUrl!;
      const f = await fixture(url);
      const seeder = await s.webtorrent({ mode: 'seed', torrent: f.torrentFile, dir: f.seedDir, announce: [url], logFile: join(root, `wt-seed-${proto}.log`) });
      await waitFor('the seeder in the swarm', 15_000, () => s.tracker.core.peersOf(f.metainfo.infoHash).some((p) => p.seeder));
      const out = s.dir('wt-leech');
      const leecher = await s.webtorrent({ mode: 'download', torrent: f.torrentFile, dir: out, announce: [url], logFile: join(root, `wt-leech-${proto}.log`) });
      await leecher.waitForComplete(25_000);
      assertCopy(f, out, `WebTorrent leecher (${proto})`);
      assert.ok(leecher.events.some((e) => e.type === 'wire' && e.addr === `127.0.0.1:${seeder.port}`), 'the leecher dialled the seeder the tracker named');
      const stats = s.tracker.stats();
      assert.ok(stats.announces[proto] >= 2, `announces over ${proto}: ${JSON.stringify(stats.announces)}`);
      assert.equal(stats.announces[proto === 'udp' ? 'http' : 'udp'], 0, 'nothing over the other protocol');
      if (proto === 'udp') assert.ok(stats.udpConnects >= 2, 'a connect per client');
      const hosts = s.tracker.core.peersOf(f.metainfo.infoHash).map((p) => `${p.host}:${p.port}`).sort();
      assert.deepEqual(hosts, [`127.0.0.1:${seeder.port}`, `127.0.0.1:${leecher.port}`].sort());
      // The leecher told the tracker it completed (WebTorrent announces `completed`), and it counts as a download.
      await waitFor('the completed announce', 10_000, () => s.tracker.core.scrape(f.metainfo.infoHash).downloaded === 1);
      assert.deepEqual(s.tracker.core.scrape(f.metainfo.infoHash), { complete: 2, downloaded: 1, incomplete: 0 });
    });
  });
}

test('peerkit and WebTorrent meet through the peerkit tracker: a peerkit seeder over UDP, a peerkit leecher over HTTP', { timeout: 40_000 }, async () => {
  await withTracker({}, async (s) => {
    // peerkit seeds; WebTorrent leeches; both announce over UDP only.
    const a = await fixture(s.tracker.udpUrl!);
    const pk = await s.client();
    const seed = await pk.add(a.metainfo, { dir: a.seedDir, trackerMinIntervalMs: 1000 });
    assert.equal(seed.isComplete, true);
    await waitFor('the peerkit seeder in the swarm', 10_000, () => s.tracker.core.peersOf(a.metainfo.infoHash).some((p) => p.seeder && p.port === pk.port));
    const outA = s.dir('wt-from-pk');
    const wt = await s.webtorrent({ mode: 'download', torrent: a.torrentFile, dir: outA, announce: [s.tracker.udpUrl!], logFile: join(root, 'wt-from-pk.log') });
    await wt.waitForComplete(25_000);
    assertCopy(a, outA, 'WebTorrent from the peerkit seeder (UDP tracker)');
    assert.ok(seed.stats().uploaded >= a.bytes.length, 'the peerkit seeder sent the data');

    // WebTorrent seeds; peerkit leeches; both announce over HTTP only.
    const b = await fixture(s.tracker.httpUrl!);
    await s.webtorrent({ mode: 'seed', torrent: b.torrentFile, dir: b.seedDir, announce: [s.tracker.httpUrl!], logFile: join(root, 'wt-seed-for-pk.log') });
    await waitFor('the WebTorrent seeder in the swarm', 15_000, () => s.tracker.core.peersOf(b.metainfo.infoHash).some((p) => p.seeder));
    const outB = s.dir('pk-from-wt');
    const leech = await pk.add(b.metainfo, { dir: outB, seed: false });
    await completes(leech, 25_000, 'peerkit from the WebTorrent seeder (HTTP tracker)');
    assertCopy(b, outB, 'peerkit from the WebTorrent seeder (HTTP tracker)');
    const st = s.tracker.stats();
    assert.ok(st.announces.udp >= 2 && st.announces.http >= 2, JSON.stringify(st.announces));
  });
});

test('private: WebTorrent and peerkit swarm with passkeys in the HTTP URL, the transfer is accounted to the user, a wrong passkey is refused', { timeout: 40_000 }, async () => {
  await withTracker({ private: true, users: ['alice', 'bob'] }, async (s) => {
    const [alice, bob] = s.tracker.users();
    const aliceUrl = s.tracker.announceUrls(alice!.passkey).http!;
    const bobUrl = s.tracker.announceUrls(bob!.passkey).http!;
    const f = await fixture(aliceUrl, true);
    assert.equal(f.metainfo.private, true);
    // alice seeds with peerkit; bob leeches with WebTorrent; each with their own passkey.
    const pk = await s.client();
    const seed = await pk.add(f.metainfo, { dir: f.seedDir, trackerMinIntervalMs: 1000 });
    await waitFor('the peerkit seeder in the swarm', 10_000, () => s.tracker.core.peersOf(f.metainfo.infoHash).length === 1);
    const out = s.dir('wt-private');
    await s.webtorrent({ mode: 'download', torrent: f.torrentFile, dir: out, announce: [bobUrl], logFile: join(root, 'wt-private.log') }).then((wt) => wt.waitForComplete(25_000));
    assertCopy(f, out, 'WebTorrent (private, passkey)');
    await waitFor("bob's download accounted", 10_000, () => s.tracker.users().find((u) => u.name === 'bob')!.downloaded >= f.bytes.length);
    // A peerkit client with an unknown passkey: refused, with the tracker's reason, and not in the swarm.
    const mallory = await s.client();
    const warnings: string[] = [];
    const wrongDir = s.dir('wrong-passkey');
    const wrong = await mallory.add(withTrackers(f.metainfo, [[s.tracker.announceUrls('0'.repeat(32)).http!]]), { dir: wrongDir, seed: false });
    wrong.on('warning', (w) => warnings.push(w));
    await waitFor('the refusal', 10_000, () => warnings.some((w) => /passkey/.test(w)));
    assert.ok(s.tracker.stats().failures['bad-passkey'] >= 1);
    assert.ok(!s.tracker.core.peersOf(f.metainfo.infoHash).some((p) => p.port === mallory.port), 'not in the swarm');
    assert.ok(seed.isComplete);
  });
});
