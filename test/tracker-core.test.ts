/**
 * The sans-I/O tracker core: announce lifecycle, caps, expiry, selection
 * rules, scrape, access modes and accounting, BEP 15 connection ids, rate
 * limiting, and the swarm registry's packed records against a plain model.
 * Everything runs on a hand-turned clock and a seeded Random.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildAnnounceUrl, buildScrapeUrl, decodeAnnounceResponse, decodeScrapeResponse, type AnnounceSuccess, type HttpAnnounceParams } from '../src/codec/tracker-http.js';
import { decodeResponse, encodeRequest, type UdpAnnounceRequest, type UdpResponse } from '../src/codec/tracker-udp.js';
import { TrackerCore, type TrackerCoreOptions, type TrackerEvent } from '../src/core/tracker/tracker-core.js';
import { SwarmRegistry, WordScratch, sizeClasses, FLAG_SEEDER } from '../src/core/tracker/swarm.js';
import { ConnectionIds } from '../src/core/tracker/connection-id.js';
import { RateLimiter } from '../src/core/tracker/rate-limit.js';
import { seededRandom } from '../src/runtime/sim/prng.js';
import type { Endpoint } from '../src/runtime/contract.js';

const IH = Buffer.alloc(20, 0xaa);
const IH2 = Buffer.alloc(20, 0xbb);

function pid(n: number): Buffer {
  const b = Buffer.alloc(20, 0x2d);
  b.write('-PK0100-', 0, 'latin1');
  b.writeUInt32BE(n, 16);
  return b;
}

function core(options: Partial<TrackerCoreOptions> = {}): TrackerCore {
  return new TrackerCore({ random: seededRandom(7), rateLimit: false, ...options });
}

interface Ann extends Partial<HttpAnnounceParams> {
  n: number;
}

/** An HTTP announce from 10.0.0.x (x = n % 250 + 1) or a given host, port 6000 + n. */
function httpTarget(a: Ann, path = '/announce'): string {
  const url = buildAnnounceUrl(`http://t${path}`, { infoHash: IH, peerId: pid(a.n), port: 6000 + a.n, uploaded: 0, downloaded: 0, left: 100, ...a });
  return url.slice('http://t'.length);
}

function announce(c: TrackerCore, now: number, a: Ann & { host?: string }, path?: string): AnnounceSuccess {
  const r = c.handleHttp(now, { host: a.host ?? `10.0.${a.n >> 7}.${(a.n & 127) + 1}`, port: 40000 }, httpTarget(a, path));
  assert.equal(r.status, 200);
  const d = decodeAnnounceResponse(r.body);
  if (d.failureReason !== undefined) assert.fail(`announce failed: ${d.failureReason}`);
  return d;
}

function announceFailure(c: TrackerCore, now: number, a: Ann & { host?: string }, path?: string): string {
  const r = c.handleHttp(now, { host: a.host ?? '10.0.0.1', port: 40000 }, httpTarget(a, path));
  const d = decodeAnnounceResponse(r.body);
  assert.ok(d.failureReason !== undefined, 'expected a failure');
  return d.failureReason;
}

const ports = (d: AnnounceSuccess): number[] => d.peers.map((p) => p.port).sort((x, y) => x - y);

// ---------------------------------------------------------------- lifecycle

test('started, regular, completed, stopped: counts, lists and scrape follow the lifecycle', () => {
  const c = core();
  let d = announce(c, 0, { n: 1, event: 'started' });
  assert.equal(d.interval, 1800);
  assert.equal(d.minInterval, 900);
  assert.deepEqual([d.complete, d.incomplete, d.peers.length], [0, 1, 0]);
  assert.equal(d.externalIp, '10.0.0.2');
  d = announce(c, 1000, { n: 2, event: 'started' });
  assert.deepEqual(ports(d), [6001]);
  assert.deepEqual([d.complete, d.incomplete], [0, 2]);
  d = announce(c, 2000, { n: 1, event: 'completed', left: 0, downloaded: 100 });
  assert.deepEqual([d.complete, d.incomplete], [1, 1]);
  assert.deepEqual(ports(d), [6002], 'a seeder still gets leechers');
  // A retransmitted completed is counted once.
  announce(c, 2500, { n: 1, event: 'completed', left: 0, downloaded: 100 });
  assert.deepEqual(c.scrape(IH), { complete: 1, downloaded: 1, incomplete: 1 });
  d = announce(c, 3000, { n: 2, event: 'stopped' });
  assert.deepEqual(d.peers, []);
  assert.deepEqual([d.complete, d.incomplete], [1, 0]);
  assert.equal(c.peersOf(IH).length, 1);
  assert.deepEqual(c.stats(3000).announces, { http: 5, udp: 0 });
});

test('seeders are not sent to seeders, nor partial seeds (BEP 21 paused); nobody gets itself', () => {
  const c = core();
  for (let n = 0; n < 5; n++) announce(c, 0, { n, event: 'started', left: 0 }); // seeders 0..4
  for (let n = 5; n < 8; n++) announce(c, 0, { n, event: 'started' }); // leechers 5..7
  const seeder = announce(c, 1, { n: 0, left: 0 });
  assert.deepEqual(ports(seeder), [6005, 6006, 6007]);
  const paused = announce(c, 1, { n: 9, event: 'paused', left: 50 });
  assert.deepEqual(ports(paused), [6005, 6006, 6007]);
  const leecher = announce(c, 1, { n: 5 });
  assert.deepEqual(ports(leecher), [6000, 6001, 6002, 6003, 6004, 6006, 6007, 6009]);
});

test('numwant is honoured and capped; selection is random across announces', () => {
  const c = core({ maxNumWant: 30 });
  for (let n = 0; n < 100; n++) announce(c, 0, { n, event: 'started' });
  assert.equal(announce(c, 1, { n: 0, numWant: 7 }).peers.length, 7);
  assert.equal(announce(c, 1, { n: 0, numWant: 0 }).peers.length, 0);
  assert.equal(announce(c, 1, { n: 0, numWant: 1_000_000 }).peers.length, 30);
  assert.equal(announce(c, 1, { n: 0 }).peers.length, 30, 'default 50 is capped at max 30');
  const seen = new Set<number>();
  for (let i = 0; i < 40; i++) for (const p of announce(c, 2, { n: 0, numWant: 5 }).peers) seen.add(p.port);
  assert.ok(seen.size > 60, `random picks cover the swarm (saw ${seen.size})`);
  assert.ok(!seen.has(6000), 'never itself');
});

test('large swarm (sampled selection) excludes self, seeders-to-seeders, and returns distinct peers', () => {
  const c = core({ maxNumWant: 50 });
  for (let n = 0; n < 1000; n++) announce(c, 0, { n, event: 'started', left: n % 10 === 0 ? 100 : 0 }); // 100 leechers, 900 seeders
  for (let i = 0; i < 20; i++) {
    const d = announce(c, 1, { n: 10 * i + 1, left: 0 });
    const got = ports(d);
    assert.equal(new Set(got).size, got.length, 'distinct');
    assert.equal(got.length, 50);
    for (const p of got) assert.equal((p - 6000) % 10, 0, 'only leechers');
  }
});

test('a peer announcing again from a new port replaces its record; a restarted client at the same endpoint replaces the stale one', () => {
  const c = core();
  announce(c, 0, { n: 1, event: 'started' });
  announce(c, 0, { n: 1, port: 7777, host: '10.0.0.2' });
  assert.deepEqual(c.peersOf(IH).map((p) => p.port), [7777]);
  // Same address and port, new peer id: the old record goes.
  announce(c, 0, { n: 2, port: 7777, host: '10.0.0.2', event: 'started' });
  assert.deepEqual(c.peersOf(IH).map((p) => p.peerId.readUInt32BE(16)), [2]);
});

test('a peer id with a key cannot be taken over from another address without the key (BEP 7)', () => {
  const c = core();
  announce(c, 0, { n: 1, event: 'started', key: 0xdeadbeef, host: '10.0.0.2' });
  assert.match(announceFailure(c, 0, { n: 1, event: 'stopped', host: '10.9.9.9' }), /key mismatch/);
  assert.match(announceFailure(c, 0, { n: 1, event: 'stopped', host: '10.9.9.9', key: 1 }), /key mismatch/);
  assert.equal(c.peersOf(IH).length, 1);
  // With the key, the peer may move.
  announce(c, 0, { n: 1, key: 0xdeadbeef, host: '10.9.9.9' });
  assert.equal(c.peersOf(IH)[0]!.host, '10.9.9.9');
  announce(c, 0, { n: 1, event: 'stopped', key: 0xdeadbeef, host: '10.9.9.9' });
  assert.equal(c.peersOf(IH).length, 0);
});

test('non-compact responses carry peer ids unless no_peer_id; IPv6 peers go to peers6', () => {
  const c = core();
  announce(c, 0, { n: 1, event: 'started', host: '2001:db8::1' });
  announce(c, 0, { n: 2, event: 'started', host: '10.0.0.3' });
  announce(c, 0, { n: 3, event: 'started', host: '::ffff:10.0.0.4' }); // IPv4-mapped counts as IPv4
  const compact = announce(c, 1, { n: 4, event: 'started' });
  assert.deepEqual(compact.peers.map((p) => `${p.host}:${p.port}`).sort(), ['10.0.0.3:6002', '10.0.0.4:6003', '2001:db8::1:6001']);
  const dict = announce(c, 1, { n: 4, compact: false });
  assert.deepEqual(dict.peers.map((p) => p.peerId?.readUInt32BE(16)).sort(), [1, 2, 3]);
  const noId = announce(c, 1, { n: 4, compact: false, noPeerId: true });
  assert.ok(noId.peers.every((p) => p.peerId === undefined));
  assert.equal(noId.peers.length, 3);
});

// ---------------------------------------------------------------- caps and expiry

test('caps: torrents, peers per torrent, peers in all', () => {
  const c = core({ maxTorrents: 2, maxPeersPerTorrent: 3, maxPeers: 4 });
  for (let n = 0; n < 3; n++) announce(c, 0, { n, event: 'started' });
  const full = announce(c, 0, { n: 3, event: 'started' });
  assert.match(full.warningMessage ?? '', /swarm is full/);
  assert.equal(full.peers.length, 3, 'still answered');
  assert.equal(c.peersOf(IH).length, 3);
  announce(c, 0, { n: 4, infoHash: IH2, event: 'started' });
  const trackerFull = announce(c, 0, { n: 5, infoHash: IH2, event: 'started' });
  assert.match(trackerFull.warningMessage ?? '', /tracker is full/);
  const s = c.stats(0);
  assert.equal(s.peers, 4);
  assert.equal(s.torrents, 2);
  assert.equal(s.peersRefused, 2);
});

test('torrent cap: a new torrent evicts a dead torrent, else the least recently announced lone-peer one, never a swarm; refused when all are swarms', () => {
  const c = core({ maxTorrents: 3, interval: 60, peerTimeout: 90 });
  const ih = (b: number): Buffer => Buffer.alloc(20, b);
  // T1: a swarm of two; T2 and T3: one peer each, T2 the older.
  announce(c, 0, { n: 1, infoHash: ih(1), event: 'started' });
  announce(c, 0, { n: 2, infoHash: ih(1), event: 'started' });
  announce(c, 10_000, { n: 3, infoHash: ih(2), event: 'started' });
  announce(c, 20_000, { n: 4, infoHash: ih(3), event: 'started' });
  // T2's peer announces again later than T3's: now T3 is the least recently announced.
  announce(c, 25_000, { n: 3, infoHash: ih(2) });
  announce(c, 30_000, { n: 5, infoHash: ih(4), event: 'started' });
  const has = (b: number): boolean => c.scrape(ih(b)).incomplete > 0;
  assert.deepEqual([1, 2, 3, 4].map(has), [true, true, false, true], 'T3 made room');
  assert.equal(c.stats(30_000).torrentsEvicted, 1);
  // Make T2 and T4 swarms too: nothing can be evicted, a new torrent is refused.
  announce(c, 31_000, { n: 6, infoHash: ih(2), event: 'started' });
  announce(c, 31_000, { n: 7, infoHash: ih(4), event: 'started' });
  assert.match(announceFailure(c, 32_000, { n: 8, infoHash: ih(5), event: 'started' }), /too many torrents/);
  assert.equal(c.stats(32_000).failures['tracker-full'], 1);
  // A swarm whose peers all left with stopped but was not swept yet is dead: it makes room at once.
  announce(c, 33_000, { n: 6, infoHash: ih(2), event: 'stopped' });
  announce(c, 33_000, { n: 3, infoHash: ih(2), event: 'stopped' });
  announce(c, 34_000, { n: 8, infoHash: ih(5), event: 'started' });
  assert.deepEqual([1, 2, 4, 5].map(has), [true, false, true, true]);
  // A lone peer past its timeout is dead too, and counts as expired.
  const d = core({ maxTorrents: 2, interval: 60, peerTimeout: 90 });
  announce(d, 0, { n: 1, infoHash: ih(1), event: 'started' });
  announce(d, 100_000, { n: 2, infoHash: ih(2), event: 'started' });
  announce(d, 100_000, { n: 3, infoHash: ih(2), event: 'started' });
  announce(d, 101_000, { n: 4, infoHash: ih(3), event: 'started' });
  assert.deepEqual([1, 2, 3].map((b) => d.scrape(ih(b)).incomplete), [0, 2, 1]);
  assert.equal(d.stats(101_000).peersExpired, 1);
  assert.equal(d.stats(101_000).peers, 3);
});

test('peers expire after missed announces; sweep drops empty torrents; pollTimeout drives it', () => {
  const c = core({ interval: 60, peerTimeout: 90, sweepIntervalMs: 10_000, sweepBatch: 1 });
  announce(c, 0, { n: 1, event: 'started' });
  announce(c, 0, { n: 2, event: 'started', infoHash: IH2 });
  announce(c, 50_000, { n: 3, event: 'started' });
  assert.equal(c.pollTimeout(), 10_000);
  // At 95 s peer 1 and 2 are past 90 s; peer 3 is not. Selection already hides them.
  assert.deepEqual(ports(announce(c, 95_000, { n: 4, event: 'started' })), [6003]);
  for (let now = 95_000, i = 0; i < 10; i++) {
    c.handleTimeout(now);
    now = c.pollTimeout()!;
  }
  assert.deepEqual(c.peersOf(IH).map((p) => p.port).sort(), [6003, 6004]);
  assert.equal(c.stats(95_000).torrents, 1, 'the torrent of peer 2 went');
  assert.equal(c.stats(95_000).peersExpired, 2);
  c.sweep(500_000);
  assert.equal(c.stats(500_000).peers, 0);
  assert.equal(c.stats(500_000).torrents, 0);
});

test('a completed with left > 0, retransmitted, counts once (per peer and per user); a new session of the peer may count again', () => {
  const c = core({ private: true });
  c.addUser('alice', 'a'.repeat(32));
  const path = `/announce/${'a'.repeat(32)}`;
  announce(c, 0, { n: 1, event: 'started' }, path);
  for (let i = 0; i < 3; i++) announce(c, 1000 + i, { n: 1, event: 'completed', left: 5, downloaded: 95 }, path);
  assert.equal(c.scrape(IH).downloaded, 1);
  assert.equal(c.user('a'.repeat(32))!.completed, 1);
  // It becomes a seeder later: still once.
  announce(c, 5000, { n: 1, event: 'completed', left: 0, downloaded: 100 }, path);
  assert.equal(c.scrape(IH).downloaded, 1);
  // Over UDP too.
  const id = connect(c, 0);
  for (let i = 0; i < 2; i++) udp(c, 6000 + i, A, udpAnnounce(20, id, { event: 'completed', left: 7, urlData: Buffer.from(path) }));
  assert.equal(c.scrape(IH).downloaded, 2, 'the UDP peer (another peer id) counted once');
  // stopped, then a new session that completes again: a second download of the same peer id.
  announce(c, 7000, { n: 1, event: 'stopped', left: 0, downloaded: 100 }, path);
  announce(c, 8000, { n: 1, event: 'started' }, path);
  announce(c, 9000, { n: 1, event: 'completed', left: 3 }, path);
  assert.equal(c.scrape(IH).downloaded, 3);
  assert.equal(c.user('a'.repeat(32))!.completed, 3);
});

test("private: each peer's last report leaves in its events; handed back after a restart, what a peer reported across the restart is credited exactly once", () => {
  const A_KEY = 'a'.repeat(32);
  const B_KEY = 'b'.repeat(32);
  const path = (k: string): string => `/announce/${k}`;
  // The owner's store: the last report of each peer, from the events.
  const reports = new Map<string, { passkey: string; uploaded: number; downloaded: number }>();
  let credited = { up: 0, down: 0 };
  const drain = (c: TrackerCore): void => {
    for (let e = c.pollEvent(); e; e = c.pollEvent()) {
      credited = { up: credited.up + e.uploaded, down: credited.down + e.downloaded };
      assert.equal(typeof e.peer, 'string');
      assert.equal(e.peer!.length, 40);
      if (e.reported === null) reports.delete(e.peer!);
      else reports.set(e.peer!, { passkey: e.passkey, uploaded: e.reported![0], downloaded: e.reported![1] });
    }
  };
  const start = (): TrackerCore => {
    const c = core({ private: true, lastReported: (p) => reports.get(p) });
    c.addUser('alice', A_KEY);
    c.addUser('bob', B_KEY);
    return c;
  };
  let c = start();
  announce(c, 0, { n: 1, event: 'started', uploaded: 0 }, path(A_KEY));
  drain(c);
  assert.equal(reports.size, 1, 'a started peer has a report, even of zeros');
  announce(c, 1000, { n: 1, uploaded: 100, downloaded: 10 }, path(A_KEY));
  drain(c);
  assert.deepEqual(credited, { up: 100, down: 10 });
  // A retransmission changes nothing and yields no event.
  announce(c, 1001, { n: 1, uploaded: 100, downloaded: 10 }, path(A_KEY));
  assert.equal(c.pollEvent(), undefined);
  // "Restart": a fresh core with the same store.
  c = start();
  announce(c, 2000, { n: 1, uploaded: 250, downloaded: 30 }, path(A_KEY));
  announce(c, 2001, { n: 1, uploaded: 250, downloaded: 30 }, path(A_KEY)); // retransmitted
  drain(c);
  assert.deepEqual(credited, { up: 250, down: 30 }, 'the cumulative report, credited once');
  assert.deepEqual(c.user(A_KEY), { name: 'alice', passkey: A_KEY, uploaded: 150, downloaded: 20, completed: 0 });
  // Another user cannot take alice's peer id after a restart, with or without started.
  c = start();
  assert.match(announceFailure(c, 3000, { n: 1, uploaded: 900, downloaded: 0 }, path(B_KEY)), /another user/);
  assert.match(announceFailure(c, 3000, { n: 1, uploaded: 900, downloaded: 0, event: 'started' }, path(B_KEY)), /another user/);
  assert.equal(c.user(B_KEY)!.uploaded, 0);
  // Counters that went down (a new client session) credit nothing and reset the report.
  c = start();
  announce(c, 4000, { n: 2, event: 'started', uploaded: 50 }, path(A_KEY));
  drain(c);
  c = start();
  announce(c, 5000, { n: 2, uploaded: 20 }, path(A_KEY));
  announce(c, 6000, { n: 2, uploaded: 70 }, path(A_KEY));
  drain(c);
  assert.equal(c.user(A_KEY)!.uploaded, 50, '50 from before, then 50 beyond the reset');
  // stopped forgets the peer.
  const before = reports.size;
  announce(c, 7000, { n: 2, event: 'stopped', uploaded: 70 }, path(A_KEY));
  drain(c);
  assert.equal(reports.size, before - 1);
  // A stopped that is the first announce after a restart credits the rest once, and forgets the peer.
  c = start();
  const upBefore = credited.up;
  announce(c, 8000, { n: 1, event: 'stopped', uploaded: 300, downloaded: 30 }, path(A_KEY));
  drain(c); // the owner persists each announce's events before the next (TrackerService.afterInput)
  announce(c, 8001, { n: 1, event: 'stopped', uploaded: 300, downloaded: 30 }, path(A_KEY)); // retransmitted
  drain(c);
  assert.equal(credited.up - upBefore, 50, '300 reported, 250 credited before the restart');
  assert.equal(reports.size, before - 2);
  // bob's stopped for a peer id alice held is refused, and credits nobody.
  c = start();
  announce(c, 9000, { n: 5, event: 'started' }, path(A_KEY));
  drain(c);
  c = start();
  assert.match(announceFailure(c, 9500, { n: 5, event: 'stopped', uploaded: 10 }, path(B_KEY)), /another user/);
  // A peer that expired and was swept keeps its report in the store: when it comes back
  // without started it is credited from there.
  const exp = new TrackerCore({ random: seededRandom(7), rateLimit: false, private: true, interval: 60, peerTimeout: 90, lastReported: (p) => reports.get(p) });
  exp.addUser('alice', A_KEY);
  announce(exp, 0, { n: 3, event: 'started', uploaded: 10 }, path(A_KEY));
  drain(exp);
  exp.sweep(200_000);
  assert.equal(exp.peersOf(IH).length, 0, 'expired');
  announce(exp, 200_000, { n: 3, uploaded: 40 }, path(A_KEY));
  drain(exp);
  assert.equal(exp.user(A_KEY)!.uploaded, 40);
  // Without a store (no lastReported) such a peer is credited only from its next announce.
  const mem = core({ private: true, interval: 60, peerTimeout: 90 });
  mem.addUser('alice', A_KEY);
  announce(mem, 0, { n: 3, event: 'started', uploaded: 10 }, path(A_KEY));
  mem.sweep(200_000);
  announce(mem, 200_000, { n: 3, uploaded: 40 }, path(A_KEY));
  announce(mem, 201_000, { n: 3, uploaded: 45 }, path(A_KEY));
  assert.equal(mem.user(A_KEY)!.uploaded, 15);
  assert.equal(mem.pollEvent()?.peer, undefined, 'and its events carry no peer reports');
});

// ---------------------------------------------------------------- scrape

test('HTTP scrape: counts per info hash, duplicates once, unknown as zeros, full scrape refused unless allowed', () => {
  const c = core();
  announce(c, 0, { n: 1, event: 'started' });
  announce(c, 0, { n: 2, event: 'completed', left: 0 });
  const target = (hashes: Buffer[]): string => buildScrapeUrl('http://t/announce', hashes).slice('http://t'.length);
  const r = decodeScrapeResponse(c.handleHttp(0, { host: '10.0.0.1', port: 1 }, target([IH, IH2, IH])).body);
  assert.ok(r.failureReason === undefined);
  assert.deepEqual(
    r.files.map((f) => [f.infoHash.toString('hex').slice(0, 2), f.complete, f.downloaded, f.incomplete]),
    [['aa', 1, 1, 1], ['bb', 0, 0, 0]],
  );
  const full = decodeScrapeResponse(c.handleHttp(0, { host: '10.0.0.1', port: 1 }, '/scrape').body);
  assert.match(full.failureReason ?? '', /full scrape/);
  const open = core({ allowFullScrape: true });
  announce(open, 0, { n: 1, event: 'started' });
  const all = decodeScrapeResponse(open.handleHttp(0, { host: '10.0.0.1', port: 1 }, '/scrape').body);
  assert.ok(all.failureReason === undefined);
  assert.equal(all.files.length, 1);
});

// ---------------------------------------------------------------- UDP

const A: Endpoint = { host: '10.1.1.1', port: 5000 };

function udp(c: TrackerCore, now: number, from: Endpoint, bytes: Uint8Array): Buffer | undefined {
  c.handleDatagram(now, from, bytes);
  const t = c.pollTransmit();
  assert.equal(c.pollTransmit(), undefined, 'at most one reply');
  if (t === undefined) return undefined;
  assert.deepEqual(t.to, from);
  return Buffer.from(t.data);
}

function connect(c: TrackerCore, now: number, from: Endpoint = A): bigint {
  const r = udp(c, now, from, encodeRequest({ action: 'connect', transactionId: 42 }));
  assert.ok(r);
  const d = decodeResponse(r, from.host.includes(':') ? 6 : 4);
  assert.equal(d.action, 'connect');
  assert.equal(d.transactionId, 42);
  return (d as { connectionId: bigint }).connectionId;
}

function udpAnnounce(n: number, connectionId: bigint, extra: Partial<UdpAnnounceRequest> = {}): Buffer {
  return encodeRequest({ action: 'announce', connectionId, transactionId: 1000 + n, infoHash: IH, peerId: pid(n), downloaded: 0, left: 10, uploaded: 0, port: 6000 + n, event: 'started', ...extra });
}

test('UDP: connect, announce, scrape; the reply echoes the transaction id and lists same-family peers', () => {
  const c = core();
  const B: Endpoint = { host: '10.1.1.2', port: 5000 };
  const V6: Endpoint = { host: '2001:db8::7', port: 5000 };
  const cidA = connect(c, 0, A);
  const cidB = connect(c, 0, B);
  const cid6 = connect(c, 0, V6);
  assert.notEqual(cidA, cidB, 'ids depend on the address');
  udp(c, 0, A, udpAnnounce(1, cidA));
  udp(c, 0, V6, udpAnnounce(3, cid6));
  let r = decodeResponse(udp(c, 1, B, udpAnnounce(2, cidB))!, 4) as Extract<UdpResponse, { action: 'announce' }>;
  assert.equal(r.action, 'announce');
  assert.equal(r.transactionId, 1002);
  assert.deepEqual([r.interval, r.leechers, r.seeders], [1800, 3, 0]);
  assert.deepEqual(r.peers, [{ host: '10.1.1.1', port: 6001 }]);
  r = decodeResponse(udp(c, 1, V6, udpAnnounce(3, cid6, { event: undefined }))!, 6) as typeof r;
  assert.deepEqual(r.peers, [], 'IPv6 requester gets only IPv6 peers (none but itself)');
  const s = decodeResponse(udp(c, 2, A, encodeRequest({ action: 'scrape', connectionId: cidA, transactionId: 9, infoHashes: [IH2, IH] }))!, 4);
  assert.deepEqual(s, { action: 'scrape', transactionId: 9, files: [{ seeders: 0, completed: 0, leechers: 0 }, { seeders: 0, completed: 0, leechers: 3 }] });
  // Retransmitting the same announce changes nothing.
  udp(c, 3, A, udpAnnounce(1, cidA));
  assert.equal(c.peersOf(IH).length, 3);
  assert.equal(c.stats(3).udpConnects, 3);
});

test('UDP retransmission: every resent announce (started, regular, completed with left > 0 and = 0, stopped) gets the same answer and changes the state once', () => {
  const c = core({ private: true });
  c.addUser('alice', 'a'.repeat(32));
  const urlData = Buffer.from(`/announce/${'a'.repeat(32)}`);
  const B: Endpoint = { host: '10.1.1.2', port: 5000 };
  const cidA = connect(c, 0, A);
  const cidB = connect(c, 0, B);
  // A seeder, so B's answers have one peer and are the same bytes each time (no random order).
  udp(c, 0, A, udpAnnounce(1, cidA, { left: 0, urlData }));
  let events = 0;
  const drain = (): void => {
    for (let e = c.pollEvent(); e; e = c.pollEvent()) events++;
  };
  drain();
  const steps: Partial<UdpAnnounceRequest>[] = [
    { event: 'started', uploaded: 0, downloaded: 0, left: 100 },
    { event: undefined, uploaded: 50, downloaded: 60, left: 40 },
    { event: 'completed', uploaded: 70, downloaded: 95, left: 5 },
    { event: 'completed', uploaded: 80, downloaded: 100, left: 0 },
  ];
  const expectedScrape = [
    { complete: 1, incomplete: 1, downloaded: 0 },
    { complete: 1, incomplete: 1, downloaded: 0 },
    { complete: 1, incomplete: 1, downloaded: 1 },
    { complete: 2, incomplete: 0, downloaded: 1 },
  ];
  let now = 1000;
  for (const [i, step] of steps.entries()) {
    const req = udpAnnounce(2, cidB, { ...step, transactionId: 77 + i, urlData });
    const first = udp(c, now, B, req)!;
    drain();
    const eventsAfterFirst = events;
    const state = JSON.stringify([c.scrape(IH), c.user('a'.repeat(32)), c.peersOf(IH).map((p) => [p.port, p.seeder])]);
    for (let k = 0; k < 3; k++) {
      now += 3000; // BEP 15 clients resend after 15 * 2^n s; the tracker cannot tell either way
      const again = udp(c, now, B, req)!;
      assert.ok(again.equals(first), `step ${i}: the resent announce gets the same answer`);
      drain();
      assert.equal(events, eventsAfterFirst, `step ${i}: no new accounting`);
      assert.equal(JSON.stringify([c.scrape(IH), c.user('a'.repeat(32)), c.peersOf(IH).map((p) => [p.port, p.seeder])]), state, `step ${i}: state unchanged`);
    }
    assert.deepEqual(c.scrape(IH), expectedScrape[i], `step ${i}`);
    now += 1000;
  }
  assert.deepEqual(c.user('a'.repeat(32)), { name: 'alice', passkey: 'a'.repeat(32), uploaded: 80, downloaded: 100, completed: 1 });
  // stopped, resent: removed once, the answer the same.
  const stop = udpAnnounce(2, cidB, { event: 'stopped', uploaded: 90, downloaded: 100, left: 0, transactionId: 99, urlData });
  const first = udp(c, now, B, stop)!;
  assert.ok(udp(c, now + 3000, B, stop)!.equals(first));
  assert.equal(c.peersOf(IH).length, 1);
  assert.equal(c.user('a'.repeat(32))!.uploaded, 90);
});

test('UDP connection ids: forged or foreign ids are dropped; an id lasts one to two windows', () => {
  const c = core({ connectionIdWindowMs: 120_000 });
  const id = connect(c, 119_000);
  assert.equal(udp(c, 119_000, A, udpAnnounce(1, id ^ 1n)), undefined, 'forged: no reply');
  assert.equal(udp(c, 119_000, { host: '10.1.1.9', port: 5000 }, udpAnnounce(1, id)), undefined, 'another address: no reply');
  assert.ok(udp(c, 119_000 + 120_000, A, udpAnnounce(1, id)), 'still valid in the next window (>= 2 minutes after it was issued)');
  assert.equal(udp(c, 240_000, A, udpAnnounce(1, id)), undefined, 'two windows on: expired');
  assert.equal(c.stats(0).dropped.forgedConnectionId, 3);
  // A port change (NAT rebinding) keeps the id valid: it is bound to the address.
  assert.ok(udp(c, 240_000, { host: A.host, port: 6000 }, udpAnnounce(1, connect(c, 240_000))));
});

test('UDP property: an id issued at t is accepted until t + window and never after t + 2 windows', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 0, max: 360_000 }), (t, dt) => {
      const ids = new ConnectionIds({ secret: new Uint8Array(32).fill(3), windowMs: 120_000 });
      const ip = new Uint8Array(16).fill(1);
      const id = ids.issue(t, ip, 'x');
      const ok = ids.verify(t + dt, ip, 'x', id);
      if (dt < 120_000) assert.equal(ok, true);
      if (dt >= 240_000) assert.equal(ok, false);
    }),
    { numRuns: 300 },
  );
});

test('UDP hostile datagrams: truncated, oversized, bad protocol id, unknown action, bad event; never a throw, never a reply without a valid id', () => {
  const c = core();
  const id = connect(c, 0);
  assert.equal(udp(c, 0, A, new Uint8Array(15)), undefined);
  assert.equal(udp(c, 0, A, new Uint8Array(4000)), undefined);
  const badConnect = encodeRequest({ action: 'connect', transactionId: 1 });
  badConnect[0] = 9;
  assert.equal(udp(c, 0, A, badConnect), undefined);
  const truncated = udpAnnounce(1, id).subarray(0, 60);
  const e = decodeResponse(udp(c, 0, A, truncated)!, 4);
  assert.equal(e.action, 'error');
  assert.match((e as { message: string }).message, /shorter than 98/);
  const badEvent = udpAnnounce(1, id);
  badEvent.writeUInt32BE(7, 80);
  assert.equal(decodeResponse(udp(c, 0, A, badEvent)!, 4).action, 'error');
  const unknown = udpAnnounce(1, id);
  unknown.writeUInt32BE(77, 8);
  assert.equal(udp(c, 0, A, unknown), undefined);
  const zeroPort = udpAnnounce(1, id, { port: 0 });
  assert.equal(decodeResponse(udp(c, 0, A, zeroPort)!, 4).action, 'error');
  const huge = decodeResponse(udp(c, 0, A, udpAnnounce(1, id, { numWant: 0x7fffffff }))!, 4);
  assert.equal(huge.action, 'announce');
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), fc.boolean(), (bytes, withId) => {
      const b = Buffer.from(bytes);
      if (withId && b.length >= 8) b.writeBigUInt64BE(id, 0);
      c.handleDatagram(1, A, b);
      while (c.pollTransmit());
    }),
    { numRuns: 500 },
  );
});

// ---------------------------------------------------------------- HTTP hostile input

test('HTTP hostile queries get a failure reason, never a throw', () => {
  const c = core();
  const fail = (target: string): string => {
    const r = c.handleHttp(0, A, target);
    assert.equal(r.status, 200);
    const d = decodeAnnounceResponse(r.body);
    assert.ok(d.failureReason !== undefined, target);
    return d.failureReason;
  };
  assert.match(fail('/announce?info_hash=abc&peer_id=x&port=1&uploaded=0&downloaded=0&left=0'), /info_hash/);
  assert.match(fail('/announce'), /missing/);
  assert.match(fail('/announce?info_hash=%zz'), /percent/);
  assert.match(fail(`/announce?${'a=1&'.repeat(5000)}`), /longer|more than/);
  assert.match(fail(httpTarget({ n: 1 }).replace('port=6001', 'port=99999')), /port/);
  assert.match(fail(httpTarget({ n: 1 }).replace('left=100', 'left=-1')), /negative/);
  assert.match(fail(`${httpTarget({ n: 1 })}&event=bogus`), /event/);
  assert.equal(c.handleHttp(0, A, '/nope').status, 404);
  assert.equal(c.handleHttp(0, A, '/a/b/c/announce').status, 404);
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), (s) => {
      const r = c.handleHttp(0, A, `/announce?${s}`);
      assert.equal(r.status, 200);
      c.handleHttp(0, A, `/scrape?${s}`);
      c.handleHttp(0, A, s);
    }),
    { numRuns: 500 },
  );
});

// ---------------------------------------------------------------- access modes

test('whitelist: unlisted torrents are refused (HTTP failure, UDP error) and scrape as zeros', () => {
  const c = core({ whitelist: [IH.toString('hex')] });
  announce(c, 0, { n: 1, event: 'started' });
  assert.match(announceFailure(c, 0, { n: 1, infoHash: IH2, event: 'started' }), /not authorized/);
  const id = connect(c, 0);
  const e = decodeResponse(udp(c, 0, A, udpAnnounce(2, id, { infoHash: IH2 }))!, 4);
  assert.equal(e.action, 'error');
  assert.equal(c.stats(0).failures['unregistered-torrent'], 2);
  c.setWhitelist([IH, IH2]);
  announce(c, 0, { n: 1, infoHash: IH2, event: 'started' });
});

test('private: passkey in path or query, required and checked; per-user accounting from differences', () => {
  const c = core({ private: true });
  c.addUser('alice', 'a'.repeat(32));
  c.addUser('bob', 'b'.repeat(32));
  const events: TrackerEvent[] = [];
  const drain = (): void => {
    for (let e = c.pollEvent(); e; e = c.pollEvent()) events.push(e);
  };
  assert.match(announceFailure(c, 0, { n: 1, event: 'started' }), /passkey required/);
  assert.match(announceFailure(c, 0, { n: 1, event: 'started' }, '/announce/wrongkey'), /unregistered passkey/);
  announce(c, 0, { n: 1, event: 'started', uploaded: 5 }, `/announce/${'a'.repeat(32)}`);
  announce(c, 0, { n: 1, uploaded: 105, downloaded: 40 }, `/${'a'.repeat(32)}/announce`);
  announce(c, 0, { n: 1, uploaded: 105, downloaded: 40 }, `/announce?passkey=${'a'.repeat(32)}`); // a retransmission: no change
  announce(c, 0, { n: 1, uploaded: 205, downloaded: 40, left: 0, event: 'completed' }, `/announce/${'a'.repeat(32)}`);
  // Bob cannot speak for Alice's peer id.
  assert.match(announceFailure(c, 0, { n: 1, event: 'stopped', host: '10.0.0.2' }, `/announce/${'b'.repeat(32)}`), /another user/);
  // A peer the tracker does not know and that does not say started is credited only from its next announce.
  announce(c, 0, { n: 2, uploaded: 1000, downloaded: 1000 }, `/announce/${'b'.repeat(32)}`);
  announce(c, 0, { n: 2, uploaded: 1500, downloaded: 1000, event: 'stopped' }, `/announce/${'b'.repeat(32)}`);
  drain();
  assert.deepEqual(c.user('a'.repeat(32)), { name: 'alice', passkey: 'a'.repeat(32), uploaded: 205, downloaded: 40, completed: 1 });
  assert.deepEqual(c.user('b'.repeat(32)), { name: 'bob', passkey: 'b'.repeat(32), uploaded: 500, downloaded: 0, completed: 0 });
  assert.deepEqual(
    events.map((e) => [e.passkey[0], e.uploaded, e.downloaded, e.completed]),
    [['a', 5, 0, 0], ['a', 100, 40, 0], ['a', 100, 0, 1], ['b', 500, 0, 0]],
  );
  // Scrape needs a passkey too; UDP scrape is refused (no URLData in a scrape).
  const scrape = (t: string): string | undefined => decodeScrapeResponse(c.handleHttp(0, A, t).body).failureReason;
  assert.match(scrape(`/scrape?info_hash=${'%AA'.repeat(20)}`) ?? '', /passkey required/);
  assert.equal(scrape(`/scrape/${'a'.repeat(32)}?info_hash=${'%AA'.repeat(20)}`), undefined);
  // UDP announce with the passkey in BEP 41 URLData.
  const id = connect(c, 0);
  const ok = decodeResponse(udp(c, 0, A, udpAnnounce(3, id, { urlData: Buffer.from(`/announce/${'a'.repeat(32)}`) }))!, 4);
  assert.equal(ok.action, 'announce');
  const bad = decodeResponse(udp(c, 0, A, udpAnnounce(4, id))!, 4);
  assert.deepEqual([bad.action, (bad as { message: string }).message], ['error', 'passkey required']);
  // Removing a user refuses its passkey from then on.
  c.removeUser('b'.repeat(32));
  assert.match(announceFailure(c, 0, { n: 5, event: 'started' }, `/announce/${'b'.repeat(32)}`), /unregistered/);
});

// ---------------------------------------------------------------- rate limiting

test('rate limiting: a burst, then drops (UDP) or a failure (HTTP), refilling with time', () => {
  const c = core({ rateLimit: { perSecond: 10, burst: 20 } });
  let replies = 0;
  for (let i = 0; i < 100; i++) if (udp(c, 0, A, encodeRequest({ action: 'connect', transactionId: i }))) replies++;
  assert.equal(replies, 20);
  assert.equal(c.stats(0).dropped.rateLimited, 80);
  assert.ok(udp(c, 150, A, encodeRequest({ action: 'connect', transactionId: 1 })), 'refilled one token after 100 ms');
  assert.match(announceFailure(c, 150, { n: 1, host: A.host }), /rate limit/);
  // Another address is not affected; IPv6 is limited per /64.
  assert.ok(udp(c, 150, { host: '10.1.1.2', port: 1 }, encodeRequest({ action: 'connect', transactionId: 1 })));
  let v6 = 0;
  for (let i = 0; i < 30; i++) if (udp(c, 150, { host: `2001:db8::${i + 1}`, port: 1 }, encodeRequest({ action: 'connect', transactionId: i }))) v6++;
  assert.equal(v6, 20);
});

test('RateLimiter property: never more than burst + rate x time grants', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 500 }), { minLength: 1, maxLength: 300, size: 'max' }), fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 30 }), (gaps, rate, burst) => {
      const rl = new RateLimiter({ perSecond: rate, burst, maxTracked: 10 });
      let now = 0;
      let granted = 0;
      for (const g of gaps) {
        now += g;
        if (rl.allow(now, 'k')) granted++;
      }
      assert.ok(granted <= burst + (rate * now) / 1000 + 1e-9);
    }),
    { numRuns: 200 },
  );
});

// ---------------------------------------------------------------- properties of the announce logic

test('property: counts match a model; lists never hold the requester, stale or foreign-family peers, or seeders for seeders', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          peer: fc.integer({ min: 0, max: 11 }),
          event: fc.constantFrom(undefined, 'started', 'completed', 'stopped'),
          seeder: fc.boolean(),
          numWant: fc.integer({ min: 0, max: 15 }),
          dt: fc.integer({ min: 0, max: 40_000 }),
        }),
        { minLength: 1, maxLength: 80, size: 'max' },
      ),
      (steps) => {
        const c = core({ interval: 60, peerTimeout: 90 });
        // `counted`: its `completed` was counted (once per peer record, whatever `left` says).
        const model = new Map<number, { seeder: boolean; at: number; counted: boolean }>();
        // The core keeps whole seconds: a peer is stale when the seconds differ by more than the timeout.
        const stale = (now: number, at: number): boolean => Math.floor(now / 1000) - Math.floor(at / 1000) > 90;
        let now = 0;
        let downloads = 0;
        for (const s of steps) {
          now += s.dt;
          for (const [k, v] of model) if (stale(now, v.at)) model.delete(k);
          const host = s.peer < 6 ? `10.0.0.${s.peer + 1}` : `2001:db8::${s.peer}`;
          const d = announce(c, now, { n: s.peer, host, event: s.event as 'started' | undefined, left: s.seeder ? 0 : 10, numWant: s.numWant });
          const before = model.get(s.peer);
          if (s.event === 'stopped') model.delete(s.peer);
          else {
            const counts = s.event === 'completed' && before?.seeder !== true && before?.counted !== true;
            if (counts) downloads++;
            model.set(s.peer, { seeder: s.seeder, at: now, counted: counts || before?.counted === true });
          }
          assert.ok(d.peers.length <= s.numWant);
          for (const p of d.peers) {
            const n = p.port - 6000;
            assert.notEqual(n, s.peer, 'not itself');
            const m = model.get(n);
            assert.ok(m, `peer ${n} is in the swarm`);
            assert.ok(!stale(now, m.at), 'not stale');
            if (s.seeder && s.event !== 'stopped') assert.equal(m.seeder, false, 'no seeders to seeders');
          }
          if (s.event !== 'stopped') {
            // Every eligible peer is returned when numwant allows.
            const eligible = [...model].filter(([n, m]) => n !== s.peer && !(s.seeder && m.seeder));
            if (eligible.length <= s.numWant) assert.equal(d.peers.length, eligible.length);
          }
        }
        c.sweep(now);
        for (const [k, v] of model) if (stale(now, v.at)) model.delete(k);
        const sc = c.scrape(IH);
        assert.equal(sc.complete + sc.incomplete, model.size);
        assert.equal(sc.complete, [...model.values()].filter((m) => m.seeder).length);
        if (model.size > 0) assert.equal(sc.downloaded, downloads);
      },
    ),
    { numRuns: 100 },
  );
});

// ---------------------------------------------------------------- the registry itself

test('swarm registry property: packed records, hash index and swap-removal agree with a Map model', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.constantFrom('add', 'add', 'add', 'remove', 'seed'), fc.integer({ min: 0, max: 400 })), { minLength: 200, maxLength: 1500, size: 'max' }),
      (ops) => {
        const reg = new SwarmRegistry({ maxTorrents: 10, maxPeersPerTorrent: 300, maxPeers: 1000, peerTimeoutSec: 100, accounting: false, random: seededRandom(1) }, 50);
        const scratch = new WordScratch();
        const t = reg.getOrCreate('x'.repeat(20))!;
        const model = new Map<number, boolean>();
        for (const [op, k] of ops) {
          const p = scratch.setPeerId(pid(k));
          const ip = scratch.setIp(new Uint8Array([10, 0, k >> 8, k & 255]));
          const slot = reg.find(t, p);
          assert.equal(slot >= 0, model.has(k));
          if (op === 'add' && slot < 0) {
            const r = reg.insert(t, p, ip, 1000 + k, 0, 0, 0);
            if (model.size >= 300) assert.equal(r, 'torrent-full');
            else model.set(k, false);
          } else if (op === 'remove' && slot >= 0) {
            reg.remove(t, slot);
            model.delete(k);
          } else if (op === 'seed' && slot >= 0) {
            reg.update(t, slot, ip, 1000 + k, FLAG_SEEDER, 0, 0);
            model.set(k, true);
          }
        }
        assert.equal(t.count, model.size);
        assert.equal(t.seeders, [...model.values()].filter(Boolean).length);
        assert.equal(reg.peers, model.size);
        for (const [k, seeder] of model) {
          const slot = reg.find(t, scratch.setPeerId(pid(k)));
          assert.ok(slot >= 0);
          assert.equal(reg.port(t, slot), 1000 + k);
          assert.equal((reg.flags(t, slot) & FLAG_SEEDER) !== 0, seeder);
        }
      },
    ),
    { numRuns: 60 },
  );
});

test('size classes step by about 1.5x and end at the cap', () => {
  assert.deepEqual(sizeClasses(100), [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 100]);
  assert.deepEqual(sizeClasses(1), [1]);
});

test('memory: 5000 torrents x 10 peers use well under 100 bytes of record memory a peer', () => {
  const c = core({ maxNumWant: 10 });
  const ih = Buffer.alloc(20);
  for (let t = 0; t < 5000; t++) {
    ih.writeUInt32BE(t, 0);
    for (let p = 0; p < 10; p++) {
      c.handleHttp(0, { host: `10.0.${p}.1`, port: 1 }, httpTarget({ n: p, infoHash: ih, numWant: 0 }));
    }
  }
  const s = c.stats(0);
  assert.equal(s.peers, 50_000);
  assert.ok(s.peerMemoryBytes / s.peers < 100, `${s.peerMemoryBytes / s.peers} bytes a peer`);
});

test('property: the 98-byte UDP announce fast path answers byte for byte like the general decoder', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          peer: fc.integer({ min: 0, max: 6 }),
          event: fc.integer({ min: 0, max: 5 }),
          port: fc.constantFrom(0, 1, 6881, 65535),
          left: fc.constantFrom(0n, 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 1n),
          uploaded: fc.bigInt({ min: 0n, max: 2n ** 54n }),
          numWant: fc.integer({ min: -5, max: 300 }),
          key: fc.integer({ min: 0, max: 3 }),
          host: fc.constantFrom('10.0.0.1', '10.0.0.2', '2001:db8::1'),
        }),
        { minLength: 1, maxLength: 30, size: 'max' },
      ),
      (steps) => {
        const fast = core({ random: seededRandom(99) });
        const slow = core({ random: seededRandom(99) });
        for (const s of steps) {
          const from = { host: s.host, port: 7000 };
          const cid = connect(fast, 0, from);
          assert.equal(connect(slow, 0, from), cid);
          const pkt = udpAnnounce(s.peer, cid, { event: undefined, port: 1, key: s.key, numWant: 0 });
          pkt.writeUInt32BE(s.event, 80);
          pkt.writeUInt16BE(s.port, 96);
          pkt.writeBigUInt64BE(s.left, 64);
          pkt.writeBigUInt64BE(s.uploaded, 72);
          pkt.writeInt32BE(s.numWant, 92);
          const a = udp(fast, 1, from, pkt);
          const b = udp(slow, 1, from, Buffer.concat([pkt, Buffer.from([0])])); // an end-of-options byte: the general path
          assert.deepEqual(a, b);
        }
        assert.deepEqual(fast.stats(1), slow.stats(1));
      },
    ),
    { numRuns: 150 },
  );
});

// ---------------------------------------------------------------- top swarms (dashboard)

test('topSwarms: the busiest swarms first, ties by info hash, at most the limit', () => {
  const c = core();
  const hashes = [Buffer.alloc(20, 0x11), Buffer.alloc(20, 0x22), Buffer.alloc(20, 0x33), Buffer.alloc(20, 0x44)];
  const sizes = [2, 5, 2, 1];
  let n = 0;
  hashes.forEach((ih, i) => {
    for (let k = 0; k < sizes[i]!; k++) announce(c, 1000, { n: ++n, infoHash: ih, left: k === 0 ? 0 : 100 });
  });
  const top = c.topSwarms(3);
  assert.deepEqual(
    top.map((s) => [s.infoHash.slice(0, 2), s.seeders, s.leechers]),
    [
      ['22', 1, 4],
      ['11', 1, 1],
      ['33', 1, 1],
    ],
  );
  assert.equal(c.topSwarms(10).length, 4);
  assert.deepEqual(c.topSwarms(0), []);
  const model = hashes
    .map((ih) => {
      const s = c.scrape(ih);
      return { infoHash: ih.toString('hex'), seeders: s.complete, leechers: s.incomplete, downloaded: s.downloaded };
    })
    .sort((x, y) => y.seeders + y.leechers - (x.seeders + x.leechers) || (x.infoHash < y.infoHash ? -1 : 1));
  fc.assert(fc.property(fc.integer({ min: 1, max: 6 }), (limit) => assert.deepEqual(c.topSwarms(limit), model.slice(0, limit))));
});
