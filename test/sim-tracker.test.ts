/**
 * The simulator's tracker and announcer: the real TrackerCore behind the
 * real UDP server loop on one simulated host, peers announcing to it with the
 * real client's TrackerTiers and UdpTrackerClient, over simulated datagrams.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Endpoint } from '../src/runtime/contract.js';
import { SimNetwork } from '../src/runtime/sim/index.js';
import { SimAnnouncer, SimTracker } from '../src/sim/tracker.js';

const infoHash = Buffer.alloc(20, 7);

function peer(network: SimNetwork, tracker: SimTracker, i: number, got: Endpoint[][], o: { left?: number; nat?: boolean } = {}): { a: SimAnnouncer; host: ReturnType<SimNetwork['addHost']> } {
  const host = network.addHost({ address: `10.0.0.${i + 1}`, nat: o.nat });
  const peerId = Buffer.alloc(20, i + 1);
  got[i] = [];
  const a = new SimAnnouncer({
    host,
    tiers: [[tracker.url]],
    infoHash,
    peerId,
    port: 6881,
    totals: () => ({ uploaded: 0, downloaded: 0, left: o.left ?? 1000 }),
    onPeers: (peers) => got[i]!.push(...peers),
  });
  return { a, host };
}

test('peers announce over BEP 15 to the real TrackerCore and get each other; stopped removes a peer, a crashed one expires', () => {
  const network = new SimNetwork({ seed: 4, latencyMs: 15 });
  const tracker = new SimTracker({ host: network.addHost({ address: '10.9.9.9' }), interval: 60 });
  assert.equal(tracker.url, 'udp://10.9.9.9:6969');
  const got: Endpoint[][] = [];
  // One seed (left = 0) and three leechers, one of them behind a NAT (its own announces open the way back).
  const nodes = [peer(network, tracker, 0, got, { left: 0 }), peer(network, tracker, 1, got), peer(network, tracker, 2, got, { nat: true }), peer(network, tracker, 3, got)];
  nodes.forEach((n, i) => network.engine.schedule(i * 1000, () => n.a.start()));
  network.engine.run({ until: 10_000 });
  const listed = () => tracker.core.peersOf(infoHash).map((p) => p.host).sort();
  assert.deepEqual(listed(), ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']);
  // The tracker never sends a peer itself, and sends leechers everyone it knows when they asked.
  assert.deepEqual(got[0], []);
  assert.deepEqual(got[1]!.map((p) => p.host), ['10.0.0.1']);
  assert.deepEqual(got[3]!.map((p) => p.host).sort(), ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
  assert.ok(got.flat().every((p) => p.port === 6881), 'the announced listening port, not the UDP source port');
  const s = tracker.stats(network.now);
  assert.equal(s.udpConnects, 4);
  assert.equal(s.announces.udp, 4);
  assert.equal(s.seeders, 1);
  assert.equal(tracker.internalErrors, 0);
  // Graceful: `stopped` reaches the tracker and the peer is gone from its list at once.
  nodes[1]!.a.stop();
  network.engine.run({ until: 11_000 });
  assert.deepEqual(listed(), ['10.0.0.1', '10.0.0.3', '10.0.0.4']);
  // A crash says nothing: the peer stays listed until it misses its announces (1.5 intervals), while
  // the others keep announcing every interval and stay.
  nodes[3]!.a.close();
  network.removeHost(nodes[3]!.host);
  network.engine.run({ until: 60_000 });
  assert.ok(listed().includes('10.0.0.4'));
  network.engine.run({ until: 200_000 });
  assert.deepEqual(listed(), ['10.0.0.1', '10.0.0.3']);
  assert.ok(tracker.stats(network.now).announces.udp >= 4 + 1 + 2 * 2, 'regular re-announces every interval');
  assert.equal(tracker.stats(network.now).peersExpired, 1);
});

test('lost datagrams are retransmitted on the BEP 15 schedule, and a tracker that never answers fails the round', () => {
  // Every datagram from the peer is lost until t = 40 s: the connect goes out at 0, 15 s and 45 s (15 * 2^n).
  const network: SimNetwork = new SimNetwork({ seed: 1, latencyMs: 10, loss: (from): number => (from.address === '10.0.0.1' && network.now < 40_000 ? 1 : 0) });
  const tracker = new SimTracker({ host: network.addHost({ address: '10.9.9.9' }) });
  const got: Endpoint[][] = [];
  const { a } = peer(network, tracker, 0, got);
  a.start();
  network.engine.run({ until: 44_000 });
  assert.equal(tracker.stats(network.now).udpConnects, 0);
  network.engine.run({ until: 46_000 });
  assert.equal(tracker.stats(network.now).announces.udp, 1);
  assert.equal(a.stats.failed, 0);
  assert.equal(network.stats.datagramsLost, 2);

  // No tracker at that address: after the last retransmission the announce fails (and the tiers back off).
  const lonely = new SimNetwork({ seed: 1, latencyMs: 10 });
  const host = lonely.addHost({ address: '10.0.0.1' });
  const b = new SimAnnouncer({ host, tiers: [['udp://10.9.9.9:6969']], infoHash, peerId: Buffer.alloc(20, 1), port: 6881, totals: () => ({ uploaded: 0, downloaded: 0, left: 1 }), onPeers: () => assert.fail('no peers') });
  b.start();
  // 15 s * (2^0 + ... + 2^8) = 7665 s until the request times out.
  lonely.engine.run({ until: 7_664_000 });
  assert.equal(b.stats.failed, 0);
  lonely.engine.run({ until: 7_666_000 });
  assert.equal(b.stats.failed, 1);
});
