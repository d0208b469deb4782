import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TrackerError, decodeRequest, encodeResponse, type UdpAnnounceRequest, type UdpRequest, type UdpResponse } from '../src/codec/tracker-udp.js';
import { UdpTrackerClient, type UdpAnnounceParams, type UdpTrackerEvent } from '../src/core/udp-tracker-client.js';
import type { Endpoint, Random, Transmit } from '../src/runtime/contract.js';

/** Hands out the given u32 values first, then a simple deterministic sequence. */
class ScriptedRandom implements Random {
  private state = 0x9e3779b9;
  constructor(private readonly script: number[] = []) {}
  u32(): number {
    const next = this.script.shift();
    if (next !== undefined) return next >>> 0;
    this.state = (Math.imul(this.state, 1664525) + 1013904223) >>> 0;
    return this.state;
  }
  float(): number {
    return this.u32() / 2 ** 32;
  }
  below(n: number): number {
    return Math.floor(this.float() * n);
  }
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.u32() & 0xff);
  }
}

const tracker: Endpoint = { host: '127.0.0.1', port: 6969 };
const params: UdpAnnounceParams = {
  infoHash: Buffer.alloc(20, 0x11),
  peerId: Buffer.alloc(20, 0x22),
  port: 6881,
  uploaded: 1,
  downloaded: 2,
  left: 3,
  event: 'started',
  key: 0x1234,
  numWant: 50,
};

function drain(c: UdpTrackerClient): Transmit[] {
  const out: Transmit[] = [];
  for (let t = c.pollTransmit(); t; t = c.pollTransmit()) out.push(t);
  return out;
}

function events(c: UdpTrackerClient): UdpTrackerEvent[] {
  const out: UdpTrackerEvent[] = [];
  for (let e = c.pollEvent(); e; e = c.pollEvent()) out.push(e);
  return out;
}

/** The single datagram the client sent, decoded as the tracker would. */
function sentOne(c: UdpTrackerClient, to: Endpoint = tracker): UdpRequest {
  const out = drain(c);
  assert.equal(out.length, 1, 'exactly one datagram');
  assert.deepEqual(out[0]!.to, to);
  return decodeRequest(out[0]!.data);
}

const reply = (c: UdpTrackerClient, now: number, res: UdpResponse, from: Endpoint = tracker, family: 4 | 6 = 4): void =>
  c.handleDatagram(now, from, encodeResponse(res, family));

/** Connects the client to `tracker` (connection id `cid`) for a fresh announce at `now`; returns the request id and the announce sent. */
function connectAndAnnounce(c: UdpTrackerClient, now: number, cid: bigint): { id: number; req: UdpAnnounceRequest } {
  const id = c.announce(now, tracker, params);
  const connect = sentOne(c);
  assert.equal(connect.action, 'connect');
  reply(c, now, { action: 'connect', transactionId: connect.transactionId, connectionId: cid });
  const req = sentOne(c);
  assert.equal(req.action, 'announce');
  return { id, req: req as UdpAnnounceRequest };
}

test('connect, then announce with the connection id; the response becomes an announced event', () => {
  const c = new UdpTrackerClient({ random: new ScriptedRandom([111, 222]) });
  const id = c.announce(0, tracker, params);
  assert.deepEqual(sentOne(c), { action: 'connect', transactionId: 111 });
  assert.equal(c.pollTimeout(), 15_000);
  assert.equal(c.pollEvent(), undefined);

  reply(c, 1000, { action: 'connect', transactionId: 111, connectionId: 0xabcdef0123456789n });
  const ann = sentOne(c);
  assert.deepEqual(ann, {
    action: 'announce',
    connectionId: 0xabcdef0123456789n,
    transactionId: 222,
    infoHash: params.infoHash,
    peerId: params.peerId,
    downloaded: 2,
    left: 3,
    uploaded: 1,
    event: 'started',
    ip: undefined,
    key: 0x1234,
    numWant: 50,
    port: 6881,
    urlData: undefined,
  });
  assert.equal(c.pollTimeout(), 16_000);

  const peers = [{ host: '10.0.0.1', port: 1 }, { host: '10.0.0.2', port: 2 }];
  reply(c, 1500, { action: 'announce', transactionId: 222, interval: 1800, leechers: 4, seeders: 9, peers });
  assert.deepEqual(events(c), [{ type: 'announced', id, tracker, interval: 1800, leechers: 4, seeders: 9, peers }]);
  assert.equal(c.pollTimeout(), undefined);
  assert.equal(c.pending, 0);
  assert.deepEqual(c.stats, { sent: 2, retransmits: 0, malformed: 0, unsolicited: 0 });
});

test('the connection id is reused for 60 s after it was received, then renewed', () => {
  const c = new UdpTrackerClient({ random: new ScriptedRandom() });
  const { req } = connectAndAnnounce(c, 1000, 77n);
  reply(c, 1100, { action: 'announce', transactionId: req.transactionId, interval: 60, leechers: 0, seeders: 0, peers: [] });
  events(c);
  assert.ok(c.hasConnection(60_999, tracker));
  assert.ok(!c.hasConnection(61_000, tracker));

  // Within the minute: straight to the announce, with the cached id; a scrape too.
  c.announce(60_999, tracker, params);
  const again = sentOne(c);
  assert.equal(again.action, 'announce');
  assert.equal((again as UdpAnnounceRequest).connectionId, 77n);
  c.scrape(60_999, tracker, [Buffer.alloc(20, 1)]);
  const scrape = sentOne(c);
  assert.equal(scrape.action, 'scrape');
  assert.equal(scrape.action === 'scrape' && scrape.connectionId, 77n);

  // A minute after it was received, it is not used any more: connect first.
  c.announce(61_000, tracker, params);
  const connect = sentOne(c);
  assert.equal(connect.action, 'connect');
  reply(c, 61_500, { action: 'connect', transactionId: connect.transactionId, connectionId: 78n });
  // Every request still waiting may use the new id.
  const after = drain(c).map((t) => decodeRequest(t.data));
  assert.deepEqual(after.map((r) => r.action), ['announce']);
  assert.equal((after[0] as UdpAnnounceRequest).connectionId, 78n);
});

test('retransmission follows BEP 15: 15·2^n seconds, n up to 8, then a timeout event', () => {
  const c = new UdpTrackerClient({ random: new ScriptedRandom([5]) });
  const id = c.announce(0, tracker, params);
  const sends: number[] = [];
  const txids = new Set<number>();
  let now = 0;
  for (;;) {
    for (const t of drain(c)) {
      const r = decodeRequest(t.data);
      assert.equal(r.action, 'connect');
      txids.add(r.transactionId);
      sends.push(now);
    }
    const ev = events(c);
    if (ev.length > 0) {
      assert.deepEqual(ev, [{ type: 'timeout', id, tracker }]);
      break;
    }
    const next = c.pollTimeout();
    assert.ok(next !== undefined && next > now);
    // Waking early changes nothing.
    c.handleTimeout(next - 1);
    assert.equal(drain(c).length, 0);
    now = next;
    c.handleTimeout(now);
  }
  assert.deepEqual(sends.map((t) => t / 1000), [0, 15, 45, 105, 225, 465, 945, 1905, 3825]);
  assert.equal(now / 1000, 7665);
  assert.deepEqual([...txids], [5], 'a retransmission repeats its transaction id');
  assert.equal(c.pollTimeout(), undefined);
  assert.deepEqual(c.stats, { sent: 9, retransmits: 8, malformed: 0, unsolicited: 0 });
});

test('BEP 15 "announce times out": announces are retransmitted until the connection id expires, then it reconnects', () => {
  const c = new UdpTrackerClient({ random: new ScriptedRandom() });
  connectAndAnnounce(c, 1000, 9n); // connect at 1 s, announce at 1 s
  const log: string[] = [];
  for (let i = 0; i < 4; i++) {
    const now = c.pollTimeout()!;
    c.handleTimeout(now);
    for (const t of drain(c)) log.push(`${now / 1000}:${decodeRequest(t.data).action}`);
  }
  // 1 + 15 = 16, + 30 = 46, + 60 = 106 (id received at 1 s expired at 61 s), + 120 = 226.
  assert.deepEqual(log, ['16:announce', '46:announce', '106:connect', '226:connect']);
});

test('base and maximum exponent are configurable (short loopback timeouts)', () => {
  const c = new UdpTrackerClient({ random: new ScriptedRandom(), retransmitBaseMs: 10, maxRetransmitExponent: 2 });
  const id = c.announce(1000, tracker, params);
  const times: number[] = [1000];
  drain(c);
  let ev: UdpTrackerEvent[] = [];
  while (ev.length === 0) {
    const now = c.pollTimeout()!;
    c.handleTimeout(now);
    if (drain(c).length > 0) times.push(now);
    ev = events(c);
    if (ev.length > 0) assert.equal(now, 1070);
  }
  assert.deepEqual(times, [1000, 1010, 1030]);
  assert.deepEqual(ev, [{ type: 'timeout', id, tracker }]);
  assert.throws(() => new UdpTrackerClient({ random: new ScriptedRandom(), retransmitBaseMs: 0 }), RangeError);
  assert.throws(() => new UdpTrackerClient({ random: new ScriptedRandom(), maxRetransmitExponent: -1 }), RangeError);
});

test('error responses (action 3) end the request with an error event', () => {
  const c = new UdpTrackerClient({ random: new ScriptedRandom() });
  const { id, req } = connectAndAnnounce(c, 0, 5n);
  reply(c, 10, { action: 'error', transactionId: req.transactionId, message: 'torrent not registered' });
  assert.deepEqual(events(c), [{ type: 'error', id, tracker, message: 'torrent not registered' }]);
  assert.equal(c.pending, 0);
  assert.equal(c.pollTimeout(), undefined);
  // The tracker may have forgotten our connection id: the next request connects again.
  assert.ok(!c.hasConnection(20, tracker));
  const id2 = c.announce(20, tracker, params);
  const connect = sentOne(c);
  assert.equal(connect.action, 'connect');
  reply(c, 30, { action: 'error', transactionId: connect.transactionId, message: 'go away' });
  assert.deepEqual(events(c), [{ type: 'error', id: id2, tracker, message: 'go away' }]);
});

test('responses with another transaction id, source or action are ignored and counted', () => {
  const c = new UdpTrackerClient({ random: new ScriptedRandom([1000, 2000]) });
  const id = c.announce(0, tracker, params);
  sentOne(c);
  reply(c, 1, { action: 'connect', transactionId: 1001, connectionId: 1n });
  reply(c, 1, { action: 'connect', transactionId: 1000, connectionId: 1n }, { host: '127.0.0.1', port: 6970 });
  reply(c, 1, { action: 'connect', transactionId: 1000, connectionId: 1n }, { host: '127.0.0.2', port: 6969 });
  reply(c, 1, { action: 'announce', transactionId: 1000, interval: 1, leechers: 1, seeders: 1, peers: [] });
  reply(c, 1, { action: 'scrape', transactionId: 1000, files: [] });
  assert.equal(drain(c).length, 0);
  assert.deepEqual(events(c), []);
  assert.deepEqual(c.stats, { sent: 1, retransmits: 0, malformed: 0, unsolicited: 5 });

  reply(c, 2, { action: 'connect', transactionId: 1000, connectionId: 1n });
  const ann = sentOne(c);
  assert.equal(ann.transactionId, 2000);
  // The connect transaction is over: a duplicate connect response is unsolicited now.
  reply(c, 3, { action: 'connect', transactionId: 1000, connectionId: 1n });
  reply(c, 3, { action: 'connect', transactionId: 2000, connectionId: 1n });
  reply(c, 3, { action: 'error', transactionId: 2001, message: 'x' });
  assert.equal(c.stats.unsolicited, 8);
  reply(c, 4, { action: 'announce', transactionId: 2000, interval: 30, leechers: 0, seeders: 1, peers: [] });
  assert.deepEqual(events(c), [{ type: 'announced', id, tracker, interval: 30, leechers: 0, seeders: 1, peers: [] }]);
  // ...and so is a late duplicate of the answer.
  reply(c, 5, { action: 'announce', transactionId: 2000, interval: 30, leechers: 0, seeders: 1, peers: [] });
  assert.equal(c.stats.unsolicited, 9);
  assert.deepEqual(events(c), []);
});

test('malformed datagrams are counted and dropped, never thrown', () => {
  const c = new UdpTrackerClient({ random: new ScriptedRandom([7]) });
  c.announce(0, tracker, params);
  drain(c);
  c.handleDatagram(1, tracker, new Uint8Array(0));
  c.handleDatagram(1, tracker, Buffer.from('00000000000000070000', 'hex'));
  c.handleDatagram(1, tracker, Buffer.from('0000000900000007', 'hex'));
  c.handleDatagram(1, { host: 'not-an-address', port: 1 }, Buffer.alloc(16));
  assert.deepEqual(c.stats, { sent: 1, retransmits: 0, malformed: 4, unsolicited: 0 });
  assert.equal(c.pending, 1);
});

test('scrape: files are matched to the info hashes asked for; an over-long answer is malformed', () => {
  const c = new UdpTrackerClient({ random: new ScriptedRandom([1, 2]) });
  const hashes = [Buffer.alloc(20, 0xa), Buffer.alloc(20, 0xb)];
  const id = c.scrape(0, tracker, hashes);
  sentOne(c);
  reply(c, 1, { action: 'connect', transactionId: 1, connectionId: 3n });
  assert.deepEqual(sentOne(c), { action: 'scrape', connectionId: 3n, transactionId: 2, infoHashes: hashes });
  const stat = (n: number) => ({ seeders: n, completed: n + 1, leechers: n + 2 });
  reply(c, 2, { action: 'scrape', transactionId: 2, files: [stat(1), stat(2), stat(3)] });
  assert.equal(c.stats.malformed, 1);
  assert.deepEqual(events(c), []);
  reply(c, 2, { action: 'scrape', transactionId: 2, files: [stat(1), stat(5)] });
  assert.deepEqual(events(c), [{ type: 'scraped', id, tracker, files: [{ infoHash: hashes[0], ...stat(1) }, { infoHash: hashes[1], ...stat(5) }] }]);
  assert.throws(() => c.scrape(3, tracker, Array.from({ length: 75 }, () => Buffer.alloc(20))), (e: unknown) => e instanceof TrackerError && e.code === 'TOO_MANY_HASHES');
  assert.throws(() => c.scrape(3, tracker, []), (e: unknown) => e instanceof TrackerError && e.code === 'BAD_LENGTH');
});

test('requests started together share one connect', () => {
  const c = new UdpTrackerClient({ random: new ScriptedRandom([10, 11, 12, 13]) });
  const a = c.announce(0, tracker, params);
  const b = c.announce(0, tracker, { ...params, infoHash: Buffer.alloc(20, 0x33) });
  const s = c.scrape(5, tracker, [Buffer.alloc(20, 1)]);
  assert.deepEqual(sentOne(c), { action: 'connect', transactionId: 10 });
  reply(c, 100, { action: 'connect', transactionId: 10, connectionId: 99n });
  const sent = drain(c).map((t) => decodeRequest(t.data));
  assert.deepEqual(sent.map((r) => [r.action, r.transactionId]), [['announce', 11], ['announce', 12], ['scrape', 13]]);
  for (const r of sent) assert.equal((r as { connectionId: bigint }).connectionId, 99n);
  reply(c, 101, { action: 'announce', transactionId: 12, interval: 1, leechers: 0, seeders: 0, peers: [] });
  reply(c, 101, { action: 'scrape', transactionId: 13, files: [{ seeders: 1, completed: 1, leechers: 1 }] });
  reply(c, 102, { action: 'announce', transactionId: 11, interval: 2, leechers: 0, seeders: 0, peers: [] });
  assert.deepEqual(events(c).map((e) => [e.type, e.id]), [['announced', b], ['scraped', s], ['announced', a]]);
});

test('a request waiting on another one\'s connect sends its own when that one gives up', () => {
  const c = new UdpTrackerClient({ random: new ScriptedRandom([10, 20]), retransmitBaseMs: 100, maxRetransmitExponent: 1 });
  const a = c.announce(0, tracker, params);
  assert.deepEqual(sentOne(c), { action: 'connect', transactionId: 10 });
  const b = c.announce(50, tracker, params);
  assert.equal(drain(c).length, 0);
  assert.ok(c.cancel(a));
  assert.ok(!c.cancel(a));
  assert.equal(c.pollTimeout(), 150);
  c.handleTimeout(150);
  assert.deepEqual(sentOne(c), { action: 'connect', transactionId: 20 });
  // The answer to the cancelled request's connect is not ours any more.
  reply(c, 160, { action: 'connect', transactionId: 10, connectionId: 1n });
  assert.equal(c.stats.unsolicited, 1);
  c.handleTimeout(c.pollTimeout()!);
  assert.deepEqual(events(c), [{ type: 'timeout', id: b, tracker }]);
});

test('over IPv6 the announce response carries 18-byte peers', () => {
  const v6: Endpoint = { host: '::1', port: 6969 };
  const c = new UdpTrackerClient({ random: new ScriptedRandom([1, 2]) });
  const id = c.announce(0, v6, params);
  sentOne(c, v6);
  reply(c, 1, { action: 'connect', transactionId: 1, connectionId: 4n }, v6, 6);
  sentOne(c, v6);
  const peers = [{ host: '2001:db8::7', port: 51413 }];
  reply(c, 2, { action: 'announce', transactionId: 2, interval: 900, leechers: 1, seeders: 0, peers }, v6, 6);
  assert.deepEqual(events(c), [{ type: 'announced', id, tracker: v6, interval: 900, leechers: 1, seeders: 0, peers }]);
});

test('an IPv4 tracker answering through a dual-stack socket (::ffff:a.b.c.d) is matched', () => {
  const c = new UdpTrackerClient({ random: new ScriptedRandom([1]) });
  c.announce(0, tracker, params);
  sentOne(c);
  reply(c, 1, { action: 'connect', transactionId: 1, connectionId: 4n }, { host: '::ffff:127.0.0.1', port: 6969 }, 4);
  assert.equal(sentOne(c).action, 'announce');
});

test('bad parameters or trackers are refused at once with TrackerError', () => {
  const c = new UdpTrackerClient({ random: new ScriptedRandom() });
  const isTrackerError = (code: string) => (e: unknown) => e instanceof TrackerError && e.code === code;
  assert.throws(() => c.announce(0, tracker, { ...params, infoHash: Buffer.alloc(19) }), isTrackerError('BAD_INFO_HASH'));
  assert.throws(() => c.announce(0, tracker, { ...params, left: -1 }), isTrackerError('OUT_OF_RANGE'));
  assert.throws(() => c.announce(0, { host: 'tracker.example', port: 80 }, params), isTrackerError('BAD_PARAM'));
  assert.throws(() => c.announce(0, { host: '127.0.0.1', port: 0 }, params), isTrackerError('BAD_PORT'));
  assert.equal(c.pending, 0);
  assert.equal(drain(c).length, 0);
});

test('fuzz: random datagrams from anywhere never throw, and the real answer still gets through', () => {
  const source = fc.oneof(
    fc.constant(tracker),
    fc.constantFrom<Endpoint>({ host: '127.0.0.1', port: 1 }, { host: '::1', port: 6969 }, { host: '::ffff:127.0.0.1', port: 6969 }, { host: 'junk', port: 6969 }),
  );
  const txid = fc.oneof(fc.constantFrom(1, 2), fc.integer({ min: 0, max: 0xffffffff }));
  const shaped = fc.oneof(
    fc.record({ action: fc.constant('connect' as const), transactionId: txid, connectionId: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
    fc.record({ action: fc.constant('announce' as const), transactionId: txid, interval: fc.nat(), leechers: fc.nat(), seeders: fc.nat(), peers: fc.constant([]) }),
    fc.record({ action: fc.constant('scrape' as const), transactionId: txid, files: fc.array(fc.record({ seeders: fc.nat(), completed: fc.nat(), leechers: fc.nat() }), { maxLength: 3 }) }),
    fc.record({ action: fc.constant('error' as const), transactionId: fc.integer({ min: 3, max: 0xffffffff }), message: fc.string() }),
  ).map((r) => encodeResponse(r as UdpResponse, 4));
  const datagram = fc.oneof(fc.uint8Array({ maxLength: 120 }), shaped, shaped.chain((b) => fc.nat({ max: b.length }).map((n) => b.subarray(0, n))));
  fc.assert(
    fc.property(fc.array(fc.tuple(source, datagram, fc.boolean()), { maxLength: 30 }), (inputs) => {
      const c = new UdpTrackerClient({ random: new ScriptedRandom([1, 2]), retransmitBaseMs: 1000 });
      const id = c.announce(0, tracker, params);
      let now = 0;
      let finished = false;
      let last = decodeRequest(drain(c)[0]!.data);
      for (const [from, data, tick] of inputs) {
        now += 1;
        c.handleDatagram(now, from, data);
        if (tick && c.pollTimeout() !== undefined) {
          now = Math.max(now, c.pollTimeout()!);
          c.handleTimeout(now);
        }
        for (const e of events(c)) {
          assert.equal(e.id, id);
          finished = true;
        }
        for (const t of drain(c)) last = decodeRequest(t.data);
      }
      assert.equal(c.stats.sent >= 1, true);
      if (!finished && c.pending === 1) {
        // Whatever came before, a proper exchange still completes the request.
        if (last.action === 'connect') {
          reply(c, now, { action: 'connect', transactionId: last.transactionId, connectionId: 42n });
          last = sentOne(c);
        }
        assert.equal(last.action, 'announce');
        reply(c, now, { action: 'announce', transactionId: last.transactionId, interval: 5, leechers: 0, seeders: 0, peers: [] });
        const ev = events(c);
        assert.equal(ev.length, 1);
        assert.equal(ev[0]!.id, id);
      }
    }),
    { numRuns: 1000 },
  );
});
