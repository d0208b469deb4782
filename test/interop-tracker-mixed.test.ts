/**
 * Interop: Transmission 3.00 and WebTorrent 1.9.7 find each other through the
 * peerkit tracker (src/tracker) and exchange a torrent, in both directions,
 * over an http:// only torrent and over a udp:// only torrent; peerkit's
 * client seeds to Transmission through a udp:// only torrent; and a private
 * torrent with passkeys swarms Transmission and WebTorrent over HTTP while a
 * wrong passkey is refused.
 *
 * Transmission 3.00 never dials a 127.0.0.0/8 peer a tracker names (see
 * test/harness/transmission.ts), so each Transmission runs in a network
 * namespace of its own (test/harness/netns.ts: 10.A.B.(i+2), no route out)
 * and everything else in the root namespace on the bridge's 10.A.B.1: the
 * tracker, WebTorrent (listening there and dialling from there) and the
 * peerkit client. Nothing leaves the test's network.
 *
 * Each case has a tracker of its own serving one protocol only (the other is
 * off), so the peers the clients found can only have come from that
 * protocol. Every copy is compared byte for byte with the source. The cases
 * run concurrently; each takes about 10-20 s, most of it Transmission's 10 s
 * rechoke pulse. The test fails, never skips, when a program is missing.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '../src/client/client.js';
import { createTorrent } from '../src/files/create-torrent.js';
import type { Metainfo } from '../src/codec/metainfo.js';
import { startTracker, type StartTrackerOptions, type TrackerHandle } from '../src/tracker/index.js';
import { createNetwork, type NetnsHost, type TestNetwork } from './harness/netns.js';
import { startTransmission, type TransmissionHandle } from './harness/transmission.js';
import { startWebTorrent, type WebTorrentHandle } from './harness/webtorrent.js';
import { liveProcesses } from './harness/proc.js';

let root = '';
let net: TestNetwork;
let made = 0;
let nextHost = 0;

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
  readonly src: string;
}

/** A fresh file (1 MiB + 777 bytes, 32 KiB pieces: the last one short) and its torrent announcing to `url` only. */
async function fixture(url: string, priv = false): Promise<Fixture> {
  const n = ++made;
  const name = `m${n}.bin`;
  const seedDir = join(root, `seed-${n}`);
  mkdirSync(seedDir, { recursive: true });
  const bytes = content(1024 * 1024 + 777, name);
  const src = join(seedDir, name);
  writeFileSync(src, bytes);
  const t = await createTorrent(src, { pieceLength: 32 * 1024, announce: [[url]], private: priv });
  const torrentFile = join(root, `${n}.torrent`);
  writeFileSync(torrentFile, t.torrent);
  return { seedDir, bytes, name, metainfo: t.metainfo, torrentFile, src };
}

/** The same data's torrent (same infohash) announcing to another URL, e.g. another user's passkey. */
async function retarget(f: Fixture, url: string): Promise<string> {
  const t = await createTorrent(f.src, { pieceLength: f.metainfo.pieceLength, announce: [[url]], private: f.metainfo.private });
  assert.equal(t.metainfo.infoHashHex, f.metainfo.infoHashHex);
  const file = join(root, `${++made}.torrent`);
  writeFileSync(file, t.torrent);
  return file;
}

function assertCopy(f: Fixture, dir: string, who: string): void {
  assert.ok(readFileSync(join(dir, f.name)).equals(f.bytes), `${who}: the copy differs from the source`);
}

async function waitFor(what: string, ms: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Scope {
  readonly tracker: TrackerHandle;
  /** The tracker's one announce URL (of the case's protocol). */
  readonly url: string;
  transmission(o: { mode: 'seed' | 'leech'; torrent: string; dir: string; log: string }): Promise<TransmissionHandle>;
  webtorrent(o: { mode: 'seed' | 'download'; torrent: string; dir: string; announce: string; log: string }): Promise<WebTorrentHandle>;
  client(): Promise<Client>;
  dir(name: string): string;
}

/** One case: a tracker of its own on 10.A.B.1 serving `proto` only; everything started is stopped afterwards. */
async function withCase(proto: 'http' | 'udp', options: StartTrackerOptions, body: (s: Scope) => Promise<void>): Promise<void> {
  const host = net.rootAddress!;
  const tracker = await startTracker({ host, interval: 5, ...options, http: proto === 'http' ? 0 : false, udp: proto === 'udp' ? 0 : false });
  const stops: (() => Promise<void>)[] = [() => tracker.close()];
  const procs: { process: { exitInfo: unknown }; pid: number }[] = [];
  const scope: Scope = {
    tracker,
    url: (proto === 'http' ? tracker.httpUrl : tracker.udpUrl)!,
    transmission: async (o) => {
      const ns: NetnsHost = net.hosts[nextHost++]!;
      const tx = await startTransmission({ mode: o.mode, torrent: o.torrent, dir: o.dir, netns: ns, allowedHosts: net.addresses, logFile: join(root, o.log) });
      procs.push(tx);
      stops.push(() => tx.stop());
      return tx;
    },
    webtorrent: async (o) => {
      const wt = await startWebTorrent({ mode: o.mode, torrent: o.torrent, dir: o.dir, host, announce: [o.announce], allowedHosts: net.addresses, logFile: join(root, o.log) });
      procs.push(wt);
      stops.push(() => wt.stop());
      return wt;
    },
    client: async () => {
      const c = await Client.create({ port: 0, host });
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
  for (const p of procs) assert.notEqual(p.process.exitInfo, undefined, `pid ${p.pid} still runs after stop()`);
  assert.equal(tracker.stats().internalErrors, 0);
}

/** The tracker saw at least `atLeast` announces over `proto` and none over the other. */
function assertOnly(s: Scope, proto: 'http' | 'udp', atLeast: number): void {
  const a = s.tracker.stats().announces;
  assert.ok(a[proto] >= atLeast, `announces over ${proto}: ${JSON.stringify(a)}`);
  assert.equal(a[proto === 'http' ? 'udp' : 'http'], 0, 'nothing over the other protocol');
}

before(async () => {
  for (const program of ['transmission-cli', 'stdbuf', 'setpriv', 'ip']) {
    const r = spawnSync(program, ['--help'], { stdio: 'ignore', timeout: 10_000 });
    assert.ok(!(r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT'), `${program} not found on PATH (run .ci/run)`);
  }
  root = mkdtempSync(join(tmpdir(), 'peerkit-interop-mixed-'));
  // One namespace per Transmission: 4 public cases, 1 peerkit case, 1 private case.
  net = await createNetwork({ hosts: 6 });
  assert.ok(net.rootAddress);
});

after(async () => {
  await net?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
  assert.deepEqual(liveProcesses().map((p) => p.pid), [], 'every child process has exited');
});

describe('Transmission and WebTorrent through the peerkit tracker', { concurrency: true }, () => {
  for (const proto of ['http', 'udp'] as const) {
    test(`Transmission seeds, WebTorrent finds it through the ${proto}:// tracker and downloads`, { timeout: 75_000 }, async () => {
      await withCase(proto, {}, async (s) => {
        const f = await fixture(s.url);
        const tx = await s.transmission({ mode: 'seed', torrent: f.torrentFile, dir: f.seedDir, log: `tx-seed-${proto}.log` });
        await tx.waitForSeeding(20_000);
        await waitFor('the Transmission seeder in the swarm', 20_000, () => s.tracker.core.peersOf(f.metainfo.infoHash).some((p) => p.seeder && p.host === tx.host));
        const out = s.dir(`wt-from-tx-${proto}`);
        const wt = await s.webtorrent({ mode: 'download', torrent: f.torrentFile, dir: out, announce: s.url, log: `wt-leech-${proto}.log` });
        await wt.waitForComplete(50_000);
        assertCopy(f, out, `WebTorrent from Transmission (${proto})`);
        assert.ok(wt.events.some((e) => e.type === 'wire' && e.addr === `${tx.host}:${tx.port}`), 'WebTorrent dialled the Transmission the tracker named');
        assertOnly(s, proto, 2);
        const peers = s.tracker.core.peersOf(f.metainfo.infoHash).map((p) => `${p.host}:${p.port}`).sort();
        assert.deepEqual(peers, [`${tx.host}:${tx.port}`, `${net.rootAddress}:${wt.port}`].sort());
        await waitFor("WebTorrent's completed announce", 15_000, () => s.tracker.core.scrape(f.metainfo.infoHash).downloaded === 1);
      });
    });

    test(`WebTorrent seeds, Transmission finds it through the ${proto}:// tracker and downloads`, { timeout: 75_000 }, async () => {
      await withCase(proto, {}, async (s) => {
        const f = await fixture(s.url);
        const wt = await s.webtorrent({ mode: 'seed', torrent: f.torrentFile, dir: f.seedDir, announce: s.url, log: `wt-seed-${proto}.log` });
        await wt.waitForSeeding(20_000);
        await waitFor('the WebTorrent seeder in the swarm', 20_000, () => s.tracker.core.peersOf(f.metainfo.infoHash).some((p) => p.seeder && p.port === wt.port));
        const out = s.dir(`tx-from-wt-${proto}`);
        const tx = await s.transmission({ mode: 'leech', torrent: f.torrentFile, dir: out, log: `tx-leech-${proto}.log` });
        await tx.waitForComplete(50_000);
        assertCopy(f, out, `Transmission from WebTorrent (${proto})`);
        // Transmission dials only the peers it hears of: the connection came from its namespace's address.
        assert.ok(wt.events.some((e) => e.type === 'wire' && e.addr.startsWith(`${tx.host}:`)), `WebTorrent saw Transmission connect: ${JSON.stringify(wt.events.filter((e) => e.type === 'wire'))}`);
        assertOnly(s, proto, 2);
        assert.ok(s.tracker.core.peersOf(f.metainfo.infoHash).some((p) => p.host === tx.host && p.port === tx.port), 'Transmission is in the swarm');
        await waitFor("Transmission's completed announce", 15_000, () => s.tracker.core.scrape(f.metainfo.infoHash).downloaded === 1);
      });
    });
  }

  test('peerkit seeds, Transmission finds it through the udp:// tracker and downloads', { timeout: 75_000 }, async () => {
    await withCase('udp', {}, async (s) => {
      const f = await fixture(s.url);
      const pk = await s.client();
      const seed = await pk.add(f.metainfo, { dir: f.seedDir, trackerMinIntervalMs: 1000 });
      assert.equal(seed.isComplete, true);
      await waitFor('the peerkit seeder in the swarm', 15_000, () => s.tracker.core.peersOf(f.metainfo.infoHash).some((p) => p.seeder && p.port === pk.port));
      const out = s.dir('tx-from-pk');
      const tx = await s.transmission({ mode: 'leech', torrent: f.torrentFile, dir: out, log: 'tx-from-pk.log' });
      await tx.waitForComplete(50_000);
      assertCopy(f, out, 'Transmission from peerkit (udp)');
      assert.ok(seed.stats().uploaded >= f.bytes.length, 'the peerkit seeder sent the data');
      assertOnly(s, 'udp', 2);
    });
  });

  test('private: Transmission seeds with one passkey, WebTorrent downloads with another over HTTP, both accounted; a wrong passkey is refused', { timeout: 75_000 }, async () => {
    await withCase('http', { private: true, users: ['alice', 'bob'] }, async (s) => {
      const [alice, bob] = s.tracker.users();
      const f = await fixture(s.tracker.announceUrls(alice!.passkey).http!, true);
      assert.equal(f.metainfo.private, true);
      const tx = await s.transmission({ mode: 'seed', torrent: f.torrentFile, dir: f.seedDir, log: 'tx-private.log' });
      await tx.waitForSeeding(20_000);
      await waitFor("alice's Transmission in the swarm", 20_000, () => s.tracker.core.peersOf(f.metainfo.infoHash).some((p) => p.seeder && p.host === tx.host));
      const bobUrl = s.tracker.announceUrls(bob!.passkey).http!;
      const out = s.dir('wt-private');
      const wt = await s.webtorrent({ mode: 'download', torrent: await retarget(f, bobUrl), dir: out, announce: bobUrl, log: 'wt-private.log' });
      await wt.waitForComplete(50_000);
      assertCopy(f, out, 'WebTorrent (private, passkey) from Transmission');
      assert.ok(wt.events.some((e) => e.type === 'wire' && e.addr === `${tx.host}:${tx.port}`), 'WebTorrent dialled the Transmission the tracker named');
      await waitFor("bob's download accounted", 15_000, () => s.tracker.users().find((u) => u.name === 'bob')!.downloaded >= f.bytes.length);

      // A WebTorrent with an unregistered passkey: refused with the reason, never in the swarm, gets nothing.
      const wrongUrl = s.tracker.announceUrls('0'.repeat(32)).http!;
      const before = s.tracker.stats().failures['bad-passkey'];
      const wrongOut = s.dir('wt-wrong');
      const wrong = await s.webtorrent({ mode: 'download', torrent: await retarget(f, wrongUrl), dir: wrongOut, announce: wrongUrl, log: 'wt-wrong.log' });
      await wrong.waitForEvent('warning', 15_000, (e) => /unregistered passkey/.test(e.message));
      assert.ok(s.tracker.stats().failures['bad-passkey'] > before);
      assert.ok(!s.tracker.core.peersOf(f.metainfo.infoHash).some((p) => p.port === wrong.port), 'not in the swarm');
      assert.ok(!wrong.events.some((e) => e.type === 'wire'), 'no peer connection');
      assert.equal(s.tracker.core.peersOf(f.metainfo.infoHash).length, 2, 'alice and bob only');
      // Transmission reports its upload on a later announce: alice gets the credit.
      await waitFor("alice's upload accounted", 20_000, () => s.tracker.users().find((u) => u.name === 'alice')!.uploaded >= f.bytes.length);
    });
  });
});
