/**
 * DhtCore driven by hand: scripted datagrams in, decoded datagrams out, a
 * hand-turned clock. No runtime, no network.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeKrpc, encodeKrpc, type KrpcMessage, type KrpcQuery, type KrpcResponse, type QueryBody } from '../src/codec/krpc.js';
import { encode } from '../src/codec/bencode.js';
import { DhtCore, type DhtEvent, type DhtOptions } from '../src/core/dht/index.js';
import { immutableTarget, mutableTarget, signMutableItem } from '../src/core/dht/bep44.js';
import { seededRandom } from '../src/runtime/sim/index.js';
import type { Endpoint } from '../src/runtime/contract.js';

const A: Endpoint = { host: '10.0.0.2', port: 1000 };
const B: Endpoint = { host: '10.0.0.3', port: 2000 };
const idA = Buffer.alloc(20, 0xa0);
const idB = Buffer.alloc(20, 0xb0);
const SELF = Buffer.alloc(20, 0x00);

function makeCore(options: DhtOptions = {}, id: Buffer = SELF): DhtCore {
  return new DhtCore({ id, random: seededRandom(11), now: 0, options });
}

function drain(core: DhtCore): { to: Endpoint; msg: KrpcMessage }[] {
  const out: { to: Endpoint; msg: KrpcMessage }[] = [];
  for (let t = core.pollTransmit(); t !== undefined; t = core.pollTransmit()) out.push({ to: t.to, msg: decodeKrpc(t.data) });
  return out;
}

function events(core: DhtCore): DhtEvent[] {
  const out: DhtEvent[] = [];
  for (let e = core.pollEvent(); e !== undefined; e = core.pollEvent()) out.push(e);
  return out;
}

let tcounter = 0;
function ask(core: DhtCore, now: number, from: Endpoint, id: Buffer, body: QueryBody, ro = false): KrpcMessage {
  const t = Buffer.from([0x51, tcounter++ & 0xff]);
  core.handleDatagram(now, from, encodeKrpc({ y: 'q', t, id, ro, ...body } as KrpcQuery));
  const out = drain(core).filter((o) => o.msg.t.equals(t));
  assert.equal(out.length, 1, 'exactly one answer');
  assert.deepEqual(out[0]!.to, from);
  return out[0]!.msg;
}

function answer(core: DhtCore, now: number, from: Endpoint, to: KrpcMessage, id: Buffer, extra: Partial<KrpcResponse> = {}): void {
  core.handleDatagram(now, from, encodeKrpc({ y: 'r', t: to.t, id, ...extra } as KrpcResponse));
}

function nodeInfo(id: Buffer, host: string, port: number): Buffer {
  const ip = host.split('.').map(Number);
  return Buffer.concat([id, Buffer.from(ip), Buffer.from([port >> 8, port & 0xff])]);
}

test('ping and find_node are answered with our id, the querier address (BEP 42 ip) and the closest nodes', () => {
  const core = makeCore();
  const r = ask(core, 0, A, idA, { q: 'ping' });
  assert.ok(r.y === 'r');
  assert.ok(r.id.equals(SELF));
  assert.deepEqual(r.ip, A);
});

test('a querier is pinged before it enters the table, and only if it answers from the same address with the same id', () => {
  const core = makeCore();
  const t = Buffer.from('zz');
  core.handleDatagram(0, A, encodeKrpc({ y: 'q', t, id: idA, ro: false, q: 'ping' }));
  const out = drain(core);
  assert.equal(out.length, 2);
  const ping = out.find((o) => o.msg.y === 'q')!;
  assert.deepEqual(ping.to, A);
  assert.equal(core.inTable(idA), false);
  // An answer from another address is ignored.
  answer(core, 10, B, ping.msg, idA);
  assert.equal(core.inTable(idA), false);
  answer(core, 10, A, ping.msg, idA);
  assert.equal(core.inTable(idA), true);
  // A read-only querier is answered but never pinged nor added.
  core.handleDatagram(20, B, encodeKrpc({ y: 'q', t, id: idB, ro: true, q: 'ping' }));
  assert.equal(drain(core).length, 1);
  assert.equal(core.inTable(idB), false);
  const f = ask(core, 30, B, idB, { q: 'find_node', target: idA }, true);
  assert.ok(f.y === 'r');
  assert.ok(f.nodes!.equals(nodeInfo(idA, '10.0.0.2', 1000)));
});

test('get_peers gives a token; announce_peer needs it (from the same IP), honours implied_port, and get_peers then returns the peer', () => {
  const core = makeCore();
  const ih = Buffer.alloc(20, 0x77);
  const g = ask(core, 0, A, idA, { q: 'get_peers', infoHash: ih }, true);
  assert.ok(g.y === 'r' && g.token !== undefined && g.values === undefined);
  const bad = ask(core, 0, A, idA, { q: 'announce_peer', infoHash: ih, port: 7000, impliedPort: false, token: Buffer.from('nope') }, true);
  assert.ok(bad.y === 'e' && bad.code === 203);
  const stolen = ask(core, 0, B, idB, { q: 'announce_peer', infoHash: ih, port: 7000, impliedPort: false, token: g.token }, true);
  assert.ok(stolen.y === 'e' && stolen.code === 203, 'a token is bound to the IP it was given to');
  const ok = ask(core, 0, A, idA, { q: 'announce_peer', infoHash: ih, port: 7000, impliedPort: false, token: g.token }, true);
  assert.ok(ok.y === 'r');
  const ok2 = ask(core, 0, { host: '10.0.0.9', port: 4321 }, idB, { q: 'get_peers', infoHash: ih }, true);
  assert.ok(ok2.y === 'r');
  ask(core, 0, { host: '10.0.0.9', port: 4321 }, idB, { q: 'announce_peer', infoHash: ih, port: 0, impliedPort: true, token: ok2.token! }, true);
  const ev = events(core).filter((e) => e.type === 'announce');
  assert.deepEqual(ev.map((e) => e.type === 'announce' && e.peer), [{ host: '10.0.0.2', port: 7000 }, { host: '10.0.0.9', port: 4321 }]);
  const g2 = ask(core, 1, B, idB, { q: 'get_peers', infoHash: ih }, true);
  assert.ok(g2.y === 'r');
  assert.deepEqual(g2.values!.map((v) => v.toString('hex')).sort(), ['0a0000021b58', '0a00000910e1']);
});

test('tokens stay valid for one rotation, then expire', () => {
  const core = makeCore({ tokenRotateMs: 1000, maintenanceMs: 100 });
  const ih = Buffer.alloc(20, 1);
  const g = ask(core, 0, A, idA, { q: 'get_peers', infoHash: ih }, true);
  assert.ok(g.y === 'r');
  core.handleTimeout(1000); // rotation: still valid as the previous secret
  const still = ask(core, 1000, A, idA, { q: 'announce_peer', infoHash: ih, port: 1, impliedPort: false, token: g.token! }, true);
  assert.equal(still.y, 'r');
  core.handleTimeout(2000);
  const gone = ask(core, 2000, A, idA, { q: 'announce_peer', infoHash: ih, port: 1, impliedPort: false, token: g.token! }, true);
  assert.ok(gone.y === 'e' && gone.code === 203);
});

test('stored peers are bounded per infohash and in total, and expire', () => {
  const core = makeCore({ peers: { maxPerInfoHash: 3, maxPeers: 5, ttlMs: 10_000 }, tokenRotateMs: 5000, maintenanceMs: 1000 });
  const announce = (now: number, ih: Buffer, host: string): void => {
    const from = { host, port: 999 };
    const g = ask(core, now, from, idA, { q: 'get_peers', infoHash: ih }, true);
    assert.ok(g.y === 'r');
    ask(core, now, from, idA, { q: 'announce_peer', infoHash: ih, port: 5, impliedPort: false, token: g.token! }, true);
  };
  const ih1 = Buffer.alloc(20, 1);
  const ih2 = Buffer.alloc(20, 2);
  for (let i = 1; i <= 5; i++) announce(0, ih1, `10.0.1.${i}`);
  assert.equal(core.stats(0).storedPeers, 3);
  for (let i = 1; i <= 3; i++) announce(0, ih2, `10.0.2.${i}`);
  assert.equal(core.stats(0).storedPeers, 5);
  core.handleTimeout(20_000);
  const g = ask(core, 20_000, B, idB, { q: 'get_peers', infoHash: ih1 }, true);
  assert.ok(g.y === 'r' && g.values === undefined);
  assert.equal(core.stats(20_000).storedPeers, 0);
});

test('BEP 44 put/get as a storing node: immutable, mutable with salt, 206 bad signature, 302 stale seq, 301 CAS', () => {
  const core = makeCore();
  const token = (): Buffer => {
    const g = ask(core, 0, A, idA, { q: 'get', target: Buffer.alloc(20) }, true);
    assert.ok(g.y === 'r');
    return g.token!;
  };
  const value = encode('immutable!');
  assert.equal(ask(core, 0, A, idA, { q: 'put', token: token(), value }, true).y, 'r');
  const gi = ask(core, 0, B, idB, { q: 'get', target: immutableTarget(value) }, true);
  assert.ok(gi.y === 'r' && gi.value!.equals(value));

  const seed = Buffer.alloc(32, 5);
  const salt = Buffer.from('room');
  const m1 = signMutableItem(seed, encode({ n: 1 }), 1, salt);
  const put = (item: typeof m1, cas?: number): KrpcMessage =>
    ask(core, 0, A, idA, { q: 'put', token: token(), value: item.value, k: item.k!, sig: item.sig!, seq: item.seq!, salt: item.salt!, ...(cas === undefined ? {} : { cas }) }, true);
  assert.equal(put(m1).y, 'r');
  const forged = { ...m1, value: encode({ n: 666 }) };
  const f = put(forged);
  assert.ok(f.y === 'e' && f.code === 206);
  const m3 = signMutableItem(seed, encode({ n: 3 }), 3, salt);
  const cas = put(m3, 2);
  assert.ok(cas.y === 'e' && cas.code === 301);
  assert.equal(put(m3, 1).y, 'r');
  const stale = put(signMutableItem(seed, encode({ n: 2 }), 2, salt));
  assert.ok(stale.y === 'e' && stale.code === 302);
  const target = mutableTarget(m1.k!, salt);
  const gm = ask(core, 0, B, idB, { q: 'get', target }, true);
  assert.ok(gm.y === 'r' && gm.seq === 3 && gm.value!.equals(encode({ n: 3 })) && gm.k!.equals(m1.k!));
  // With seq given and nothing newer, only the seq comes back.
  const cur = ask(core, 0, B, idB, { q: 'get', target, seq: 3 }, true);
  assert.ok(cur.y === 'r' && cur.seq === 3 && cur.value === undefined);
});

test('malformed datagrams: a query with a readable t gets 203, an unknown method 204, anything else silence, and the table is untouched', () => {
  const core = makeCore();
  core.handleDatagram(0, A, encode({ t: 'ab', y: 'q', q: 'find_node', a: { id: idA } }));
  const [e203] = drain(core);
  assert.ok(e203!.msg.y === 'e' && e203!.msg.code === 203 && e203!.msg.t.toString() === 'ab');
  const e204 = ask(core, 0, A, idA, { q: 'unknown', method: 'frobnicate' } as QueryBody, true);
  assert.ok(e204.y === 'e' && e204.code === 204);
  for (const junk of ['', 'de', 'i42e', 'd1:t2:ab1:y1:re', 'd1:rd2:id3:abce1:t2:ab1:y1:re', 'x'.repeat(5000)]) {
    core.handleDatagram(0, A, Buffer.from(junk));
    assert.deepEqual(drain(core), [], junk.slice(0, 20));
  }
  // Port 0 and unusable sources are ignored outright.
  core.handleDatagram(0, { host: '10.0.0.2', port: 0 }, encodeKrpc({ y: 'q', t: Buffer.from('a'), id: idA, ro: false, q: 'ping' }));
  assert.deepEqual(drain(core), []);
  assert.equal(core.stats(0).nodes, 0);
});

test('fuzz: hostile datagrams never throw and never put a node in the table', () => {
  const core = makeCore();
  const id = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((u) => Buffer.from(u));
  const hostile = fc.oneof(
    fc.uint8Array({ maxLength: 400 }),
    // Responses to transactions we never opened, with node lists.
    fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 4 }), id, fc.uint8Array({ maxLength: 8 * 26 })).map(([t, rid, nodes]) =>
      encode({ t: Buffer.from(t), y: 'r', r: { id: rid, nodes: Buffer.from(nodes.subarray(0, nodes.length - (nodes.length % 26))) } }),
    ),
    // Queries with wrong types everywhere.
    fc.record({ t: fc.string({ maxLength: 3 }), y: fc.constantFrom('q', 'r', 'e', 'z'), q: fc.constantFrom('ping', 'find_node', 'get_peers', 'announce_peer', 'get', 'put'), a: fc.dictionary(fc.constantFrom('id', 'target', 'info_hash', 'port', 'token', 'v', 'k', 'sig', 'seq'), fc.oneof(fc.integer(), fc.string({ maxLength: 30 }))) }).map((m) => encode({ ...m, a: { ...m.a } })),
  );
  fc.assert(
    fc.property(fc.array(hostile, { maxLength: 20 }), (datagrams) => {
      for (const d of datagrams) {
        core.handleDatagram(0, A, d);
        for (let t = core.pollTransmit(); t !== undefined; t = core.pollTransmit()) decodeKrpc(t.data); // whatever we send is valid KRPC
      }
      // Queriers are pinged, never added before they answer.
      assert.equal(core.stats(0).nodes, 0);
    }),
    { numRuns: 500 },
  );
});

test('a lookup runs alpha=3 requests at a time, does not stall on a silent node, and ends on the closest set', () => {
  const core = makeCore({ k: 3, alpha: 3, timeoutMs: 100, retries: 1 });
  const seeds = [1, 2, 3, 4].map((i) => ({ id: Buffer.alloc(20, 0x10 * i), at: { host: `10.0.0.${10 + i}`, port: 6881 } }));
  const boot = core.bootstrap(0, seeds.map((s) => ({ id: s.id, address: s.at })));
  let out = drain(core);
  assert.deepEqual(out.map((o) => o.to.host), ['10.0.0.11', '10.0.0.12', '10.0.0.13'], 'alpha requests to the closest');
  // 0x10 and 0x20 answer with a closer node; 0x30 stays silent.
  const close = { id: Buffer.alloc(20, 0x01), at: { host: '10.0.0.50', port: 6881 } };
  for (const o of out.slice(0, 2)) {
    const s = seeds.find((x) => x.at.host === o.to.host)!;
    answer(core, 10, s.at, o.msg, s.id, { nodes: nodeInfo(close.id, close.at.host, close.at.port) });
  }
  out = drain(core);
  assert.deepEqual(out.map((o) => o.to.host), ['10.0.0.50']);
  // The silent node times out: retried once, and the lookup stops waiting for it.
  core.handleTimeout(100);
  const retry = drain(core);
  assert.deepEqual(retry.map((o) => o.to.host), ['10.0.0.13']);
  answer(core, 110, close.at, out[0]!.msg, close.id);
  // The closest 3 (0x01, 0x10, 0x20) answered: done without waiting for the silent one.
  const done = events(core).find((e) => e.type === 'done' && e.op === boot);
  assert.ok(done !== undefined && done.type === 'done');
  assert.deepEqual(done.result.nodes.map((n) => n.id[0]), [0x01, 0x10, 0x20]);
  assert.equal(done.result.hops, 2);
  assert.equal(done.result.queries, 4);
  assert.ok(core.inTable(close.id));
  // The silent node fails for good after its retry (no third datagram); it never entered the table.
  core.handleTimeout(200);
  core.handleTimeout(300);
  assert.deepEqual(drain(core).filter((o) => o.to.host === '10.0.0.13'), []);
  assert.equal(core.inTable(seeds[2]!.id), false);
});

function sharedBits(a: Buffer, b: Buffer): number {
  for (let i = 0; i < 20; i++) {
    const x = a[i]! ^ b[i]!;
    if (x !== 0) return i * 8 + Math.clz32(x) - 24;
  }
  return 160;
}

test('after a bootstrap, every part of the id space farther than the k closest neighbours is refreshed, farthest first, two lookups at a time', () => {
  const core = makeCore({ k: 2, timeoutMs: 100 });
  // The self-lookup ends on two nodes sharing 7 and 6 leading bits with us: ranges 0..5 are farther.
  const near = [
    { id: Buffer.concat([Buffer.from([0x01]), Buffer.alloc(19)]), at: { host: '10.0.0.31', port: 6881 } },
    { id: Buffer.concat([Buffer.from([0x02]), Buffer.alloc(19)]), at: { host: '10.0.0.32', port: 6881 } },
  ];
  const boot = core.bootstrap(0, near.map((n) => ({ id: n.id, address: n.at })));
  const reply = (now: number, qs: { to: Endpoint; msg: KrpcMessage }[]): void => {
    for (const o of qs) answer(core, now, o.to, o.msg, near.find((n) => n.at.host === o.to.host)!.id);
  };
  reply(1, drain(core));
  assert.ok(events(core).some((e) => e.type === 'done' && e.op === boot));
  const refreshed: number[] = [];
  for (let now = 2; now < 20; now++) {
    const qs = drain(core).filter((o) => o.msg.y === 'q');
    if (qs.length === 0) break;
    const ranges = [...new Set(qs.map((o) => (o.msg.y === 'q' && o.msg.q === 'find_node' ? sharedBits(o.msg.target, SELF) : -1)))];
    assert.ok(ranges.length <= 2, `at most two refreshes at once, got ranges ${ranges.join(',')}`);
    refreshed.push(...ranges);
    reply(now, qs); // nobody knows anyone else: each refresh ends on its first answers
  }
  assert.deepEqual(refreshed, [0, 1, 2, 3, 4, 5]);
});

test('a response from the wrong id does not enter the table; an external address voted 3 times is adopted with a BEP 42 id', () => {
  const core = makeCore({ addressVotes: 3 });
  const op = core.bootstrap(0, [{ id: idA, address: A }]);
  const [q] = drain(core);
  answer(core, 1, A, q!.msg, idB); // claims another id
  assert.equal(core.inTable(idA), false);
  assert.equal(core.inTable(idB), false);
  assert.ok(events(core).some((e) => e.type === 'done' && e.op === op));
  const voters = [1, 2, 3].map((i) => ({ host: `10.0.3.${i}`, port: 6881 }));
  const seen = { host: '203.0.113.5', port: 6881 };
  core.bootstrap(2, voters);
  const qs = drain(core);
  qs.forEach((o, i) => answer(core, 3, o.to, o.msg, Buffer.alloc(20, 0x30 + i), { ip: seen }));
  const ev = events(core);
  assert.ok(ev.some((e) => e.type === 'external-address' && e.address.host === '203.0.113.5'));
  const changed = ev.find((e) => e.type === 'id-changed');
  assert.ok(changed !== undefined && changed.type === 'id-changed');
  assert.ok(!changed.id.equals(SELF));
  assert.deepEqual(core.externalAddress, seen);
  // The nodes that answered are still in the rebuilt table.
  for (let i = 0; i < 3; i++) assert.ok(core.inTable(Buffer.alloc(20, 0x30 + i)));
});

test('operations beyond maxOperations fail at once; a ping nobody answers fails after its retry', () => {
  const core = makeCore({ maxOperations: 1, timeoutMs: 50 });
  const p = core.ping(0, A);
  const refused = core.ping(0, B);
  assert.ok(events(core).some((e) => e.type === 'done' && e.op === refused && !e.result.ok));
  assert.equal(drain(core).length, 1);
  core.handleTimeout(50);
  assert.equal(drain(core).length, 1); // the retry
  core.handleTimeout(100);
  const done = events(core).find((e) => e.type === 'done' && e.op === p);
  assert.ok(done !== undefined && done.type === 'done' && !done.result.ok);
});

test('queries are rate limited per source IP (per address and port on local networks), and the limit refills', () => {
  const core = makeCore({ queryRateLimit: { perSecond: 10, burst: 20 } });
  const ping = (now: number, from: Endpoint): number => {
    core.handleDatagram(now, from, encodeKrpc({ y: 'q', t: Buffer.from('pp'), id: idA, ro: true, q: 'ping' }));
    return drain(core).length;
  };
  let answered = 0;
  for (let i = 0; i < 30; i++) answered += ping(0, { host: '198.51.100.7', port: 1000 + i }); // one public IP, many ports
  assert.equal(answered, 20);
  assert.equal(ping(0, { host: '198.51.100.8', port: 1 }), 1, 'another IP has its own bucket');
  assert.equal(ping(0, { host: '10.0.0.9', port: 1 }) + ping(0, { host: '10.0.0.9', port: 2 }), 2, 'local sources are told apart by port');
  answered = 0;
  for (let i = 0; i < 30; i++) answered += ping(1000, { host: '198.51.100.7', port: 1 });
  assert.equal(answered, 10, 'one second refills ten');
  assert.equal(core.stats(1000).rateLimited, 30);
});

test('maintenance: questionable nodes are pinged, unanswered ones go bad and leave, stale buckets are refreshed by a lookup', () => {
  const core = makeCore({ maintenanceMs: 1000, bucketRefreshMs: 60_000, pingIntervalMs: 10_000, goodMs: 30_000, timeoutMs: 100, retries: 0, maxFails: 1 });
  // Two nodes answer a bootstrap and enter the table.
  const nodes = [
    { id: Buffer.alloc(20, 0x80), at: { host: '10.0.0.21', port: 6881 } },
    { id: Buffer.alloc(20, 0x40), at: { host: '10.0.0.22', port: 6881 } },
  ];
  core.bootstrap(0, nodes.map((n) => ({ id: n.id, address: n.at })));
  for (const o of drain(core)) answer(core, 1, o.to, o.msg, nodes.find((n) => n.at.host === o.to.host)!.id);
  assert.equal(core.stats(1).nodes, 2);
  // Within goodMs nothing is pinged.
  core.handleTimeout(10_000);
  assert.deepEqual(drain(core).filter((o) => o.msg.y === 'q' && o.msg.q === 'ping'), []);
  // After goodMs both are questionable: pinged. One answers, the other does not and is dropped (maxFails 1).
  core.handleTimeout(40_000);
  const pings = drain(core).filter((o) => o.msg.y === 'q' && o.msg.q === 'ping');
  assert.deepEqual(pings.map((o) => o.to.host).sort(), ['10.0.0.21', '10.0.0.22']);
  answer(core, 40_010, nodes[0]!.at, pings.find((o) => o.to.host === '10.0.0.21')!.msg, nodes[0]!.id);
  core.handleTimeout(40_200);
  const s = core.stats(40_200);
  assert.equal(s.good, 1);
  assert.equal(s.bad, 1, 'the silent node is bad (no replacement to take its slot)');
  // A bucket is refreshed once it has not changed for bucketRefreshMs (the answer at 40 010 changed it).
  drain(core);
  core.handleTimeout(70_000);
  assert.deepEqual(drain(core).filter((o) => o.msg.y === 'q' && o.msg.q === 'find_node'), []);
  core.handleTimeout(101_000);
  const refresh = drain(core).filter((o) => o.msg.y === 'q' && o.msg.q === 'find_node');
  assert.equal(refresh.length, 1);
  assert.equal(refresh[0]!.to.host, '10.0.0.21', 'bad nodes are not asked');
});
