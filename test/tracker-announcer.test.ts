/**
 * The tracker announcer on the real runtime against small in-test trackers on
 * 127.0.0.1 (HTTP and UDP, built from our codecs): lifecycle events reach the
 * tracker in order, peers come back, a dead tracker in the first tier fails
 * over to the next tier, and `stop` sends `stopped`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { createSocket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { parseAnnounceQuery, encodeAnnounceResponse } from '../src/codec/tracker-http.js';
import { decodeRequest, encodeResponse } from '../src/codec/tracker-udp.js';
import { TrackerAnnouncer } from '../src/client/tracker-announcer.js';
import { createRealRuntime } from '../src/runtime/real/runtime.js';
import type { Endpoint } from '../src/runtime/contract.js';

const infoHash = Buffer.alloc(20, 7);
const peerId = Buffer.from('-PK0100-abcdefghijkl');

function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (cond()) resolve();
      else if (Date.now() > until) reject(new Error('timed out'));
      else setTimeout(tick, 10);
    };
    tick();
  });
}

async function httpTracker(peers: Endpoint[]): Promise<{ url: string; events: (string | undefined)[]; lefts: number[]; server: Server }> {
  const events: (string | undefined)[] = [];
  const lefts: number[] = [];
  const server = createServer((req, res) => {
    const q = parseAnnounceQuery(req.url!.split('?')[1] ?? '');
    events.push(q.event);
    lefts.push(q.left);
    res.end(encodeAnnounceResponse({ interval: 1800, complete: 1, incomplete: 2, peers }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/announce`, events, lefts, server };
}

test('HTTP: started, peers, completed, stopped', async () => {
  const t = await httpTracker([{ host: '127.0.0.1', port: 7001 }, { host: '::1', port: 7002 }]);
  const runtime = createRealRuntime();
  let left = 100;
  const got: Endpoint[] = [];
  const a = new TrackerAnnouncer({
    runtime,
    tiers: [[t.url]],
    infoHash,
    peerId,
    port: 6881,
    totals: () => ({ uploaded: 0, downloaded: 100 - left, left }),
    onPeers: (p) => got.push(...p),
  });
  try {
    a.start();
    await waitFor(() => got.length === 2);
    assert.deepEqual(got, [{ host: '127.0.0.1', port: 7001 }, { host: '::1', port: 7002 }]);
    left = 0;
    a.complete();
    await waitFor(() => t.events.length === 2);
    await a.stop();
    assert.deepEqual(t.events, ['started', 'completed', 'stopped']);
    assert.deepEqual(t.lefts, [100, 0, 0]);
    const st = a.trackers[0]!;
    assert.equal(st.lastResult, 'ok');
    assert.equal(st.seeders, 1);
    assert.equal(st.leechers, 2);
  } finally {
    a.close();
    t.server.close();
  }
});

test('UDP (BEP 15) tracker, reached after the first tier fails', async () => {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  const port = (sock.address() as AddressInfo).port;
  const events: (string | undefined)[] = [];
  sock.on('message', (msg, rinfo) => {
    const req = decodeRequest(msg);
    const reply =
      req.action === 'connect'
        ? encodeResponse({ action: 'connect', transactionId: req.transactionId, connectionId: 42n })
        : req.action === 'announce'
          ? (events.push(req.event), encodeResponse({ action: 'announce', transactionId: req.transactionId, interval: 900, leechers: 3, seeders: 4, peers: [{ host: '127.0.0.9', port: 9 }] }))
          : undefined;
    if (reply) sock.send(reply, rinfo.port, rinfo.address);
  });
  // A tier-1 tracker that refuses connections: the round fails over to tier 2.
  const dead = createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const deadUrl = `http://127.0.0.1:${(dead.address() as AddressInfo).port}/announce`;
  await new Promise<void>((r) => dead.close(() => r()));

  const runtime = createRealRuntime();
  const errors: string[] = [];
  const got: Endpoint[] = [];
  const a = new TrackerAnnouncer({
    runtime,
    tiers: [[deadUrl], [`udp://127.0.0.1:${port}`]],
    infoHash,
    peerId,
    port: 6881,
    totals: () => ({ uploaded: 0, downloaded: 0, left: 5 }),
    onPeers: (p) => got.push(...p),
    onError: (url) => errors.push(url),
    udpRetransmitBaseMs: 200,
  });
  try {
    a.start();
    await waitFor(() => got.length === 1);
    assert.deepEqual(got, [{ host: '127.0.0.9', port: 9 }]);
    assert.deepEqual(errors, [deadUrl]);
    await a.stop();
    assert.deepEqual(events, ['started', 'stopped']);
    const udp = a.trackers.find((s) => s.url.startsWith('udp'))!;
    assert.equal(udp.seeders, 4);
  } finally {
    a.close();
    sock.close();
  }
});

test('a tracker that refuses gets its failure reason reported, and stop() with no answer is bounded', async () => {
  const server = createServer((_req, res) => res.end('d14:failure reason11:not for youe'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/a`;
  const runtime = createRealRuntime();
  const errors: string[] = [];
  const a = new TrackerAnnouncer({ runtime, tiers: [[url]], infoHash, peerId, port: 1, totals: () => ({ uploaded: 0, downloaded: 0, left: 1 }), onPeers: () => undefined, onError: (_u, m) => errors.push(m) });
  try {
    a.start();
    await waitFor(() => errors.length === 1);
    assert.match(errors[0]!, /not for you/);
    const t0 = Date.now();
    await a.stop(500);
    assert.ok(Date.now() - t0 < 2000);
  } finally {
    a.close();
    server.close();
  }
});
