/**
 * DhtCore driven by hand: scripted datagrams in, decoded datagrams out, a
 * hand-turned clock. No runtime, no network.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeKrpc, encodeKrpc, type KrpcMessage, type KrpcQuery, type KrpcResponse, type QueryBody } from '../src/codec/krpc.js';
import { encode } from '../src/codec/bencode.js';
import { DhtCore, type DhtEvent, type DhtOptions, type OperationResult } from '../src/core/dht/index.js';
import { idOf, isBep42Id } from '../src/core/dht/id.js';
import { ItemStore } from '../src/core/dht/storage.js';
import { parseIp } from '../src/codec/ip.js';
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

test('addNode (a warm start) puts live nodes in the table without a ping; the table rules still hold; they are answered to others', () => {
  const core = makeCore();
  assert.equal(core.addNode(0, SELF, A), false, 'our own id');
  assert.equal(core.addNode(0, idA, { host: '::1', port: 1 }), false, 'the other family');
  assert.equal(core.addNode(0, idA, { host: '10.0.0.2', port: 0 }), false, 'port 0 is not usable');
  assert.throws(() => core.addNode(0, Buffer.alloc(19), A), RangeError);
  // Nine nodes of bucket 0 (first bit 1): eight get slots, the ninth waits in the replacement cache.
  const far = Array.from({ length: 9 }, (_, i) => Buffer.concat([Buffer.from([0x80 | i]), Buffer.alloc(19, i)]));
  for (let i = 0; i < far.length; i++) assert.equal(core.addNode(0, far[i]!, { host: `10.0.1.${i + 1}`, port: 6881 }), true);
  assert.equal(core.tableSize, 8);
  assert.equal(core.inTable(far[8]!), false);
  assert.equal(core.tableNodes(0, 100).filter((n) => n.replacement).length, 1);
  // A closer node splits the bucket; nothing was sent to any of them.
  const near = Buffer.concat([Buffer.from([0x01]), Buffer.alloc(19, 1)]);
  assert.equal(core.addNode(0, near, B), true);
  assert.equal(core.tableSize, 9);
  assert.equal(core.bucketStats(0).length > 1, true);
  assert.equal(drain(core).length, 0, 'no ping');
  assert.equal(core.stats(0).good, 9, 'added nodes count as having answered');
  // And a find_node for that region returns them.
  const r = ask(core, 1, { host: '10.0.9.9', port: 9 }, Buffer.alloc(20, 0x77), { q: 'find_node', target: near });
  assert.ok(r.y === 'r' && r.nodes !== undefined && r.nodes.subarray(0, 20).equals(near));
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

test('a lookup runs alpha=3 (the default) requests at a time, does not stall on a silent node, and ends on the closest set', () => {
  const core = makeCore({ k: 3, timeoutMs: 100, retries: 1 });
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
  assert.equal(done.result.queries, 5, 'four queries and one resend');
  assert.equal(done.result.responses, 3);
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

test('after a bootstrap, every part of the id space farther than the k closest neighbours is refreshed, farthest first, two lookups at a time, one query each', () => {
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
    assert.equal(qs.length, ranges.length, 'a refresh asks one node at a time');
    for (const r of ranges) if (!refreshed.includes(r)) refreshed.push(r);
    reply(now, qs); // nobody knows anyone else: each refresh ends once it has asked both nodes
  }
  assert.deepEqual(refreshed, [0, 1, 2, 3, 4, 5]);
});

test('a join refresh fills its bucket to joinRefreshFill nodes (default 2), asking one node at a time, then stops', () => {
  const far = [0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0].map((b, i) => ({ id: Buffer.concat([Buffer.from([b, i]), Buffer.alloc(18)]), at: { host: `10.0.1.${i + 1}`, port: 6881 } }));
  const run = (options: DhtOptions): number => {
    const core = makeCore({ k: 4, timeoutMs: 100, ...options });
    const near = [0x01, 0x02].map((b, i) => ({ id: Buffer.concat([Buffer.from([b]), Buffer.alloc(19)]), at: { host: `10.0.0.${31 + i}`, port: 6881 } }));
    core.bootstrap(0, near.map((n) => ({ id: n.id, address: n.at })));
    let farAsked = 0;
    for (let now = 1; now < 100; now++) {
      const qs = drain(core).filter((o) => o.msg.y === 'q');
      if (qs.length === 0) break;
      for (const o of qs) {
        const msg = o.msg;
        assert.ok(msg.y === 'q' && msg.q === 'find_node');
        const nearNode = near.find((n) => n.at.host === o.to.host);
        const farNode = far.find((n) => n.at.host === o.to.host);
        // The near nodes tell refreshes (not the self-lookup) of the far ones; the far ones know nobody.
        const list = msg.target.equals(SELF) ? [] : far.map((n) => nodeInfo(n.id, n.at.host, n.at.port));
        if (nearNode !== undefined) answer(core, now, o.to, msg, nearNode.id, { nodes: Buffer.concat(list) });
        else {
          if (sharedBits(msg.target, SELF) === 0) farAsked++;
          answer(core, now, o.to, msg, farNode!.id, { nodes: Buffer.alloc(0) });
        }
      }
    }
    assert.equal(core.stats(100).operations, 0, 'the pass ended');
    return farAsked;
  };
  assert.equal(run({}), 2, 'the refresh of the far half asks two of its six nodes');
  assert.equal(run({ joinRefreshFill: 4 }), 4, 'joinRefreshFill = k fills the bucket whole');
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
  assert.ok(changed.id.equals(core.id));
  assert.ok(isBep42Id(idOf(core.id), parseIp('203.0.113.5')!), 'the new id is a valid BEP 42 id for the voted address');
  assert.deepEqual(core.externalAddress, seen);
  // The nodes that answered are still in the rebuilt table.
  for (let i = 0; i < 3; i++) assert.ok(core.inTable(Buffer.alloc(20, 0x30 + i)));
});

test('BEP 42 votes are counted per voter IP: one host with three sockets cannot move our id; three hosts can', () => {
  const core = makeCore({ addressVotes: 3 });
  const claim = { host: '198.51.100.77', port: 6881 };
  const vote = (now: number, voters: Endpoint[]): DhtEvent[] => {
    core.bootstrap(now, voters);
    const qs = drain(core).filter((o) => o.msg.y === 'q' && o.msg.q === 'find_node' && voters.some((v) => v.host === o.to.host && v.port === o.to.port));
    assert.equal(qs.length, voters.length);
    for (const o of qs) answer(core, now + 1, o.to, o.msg, Buffer.alloc(20, 0x40 + o.to.port - 7000 + Number(o.to.host.split('.')[3])), { ip: claim });
    return events(core);
  };
  const oneHost = vote(0, [7001, 7002, 7003].map((port) => ({ host: '10.0.4.1', port })));
  assert.ok(!oneHost.some((e) => e.type === 'external-address' || e.type === 'id-changed'), 'three sockets of one host are one voter');
  assert.ok(core.id.equals(SELF));
  assert.equal(core.externalAddress, undefined);
  // Two more hosts make three voters.
  const more = vote(10, [{ host: '10.0.4.2', port: 7001 }, { host: '10.0.4.3', port: 7001 }]);
  assert.ok(more.some((e) => e.type === 'external-address'));
  assert.ok(isBep42Id(idOf(core.id), parseIp(claim.host)!));
});

test('BEP 44: an oversized value is answered 205, an oversized salt 207, as BEP 44 defines', () => {
  const core = makeCore();
  const g = ask(core, 0, A, idA, { q: 'get', target: Buffer.alloc(20) }, true);
  assert.ok(g.y === 'r');
  const put = (a: Record<string, unknown>): KrpcMessage => {
    const t = Buffer.from('pz');
    core.handleDatagram(0, A, encode({ t, y: 'q', q: 'put', a: { id: idA, token: g.token!, ...a } } as Parameters<typeof encode>[0]));
    const out = drain(core).filter((o) => o.msg.t.equals(t));
    assert.equal(out.length, 1);
    return out[0]!.msg;
  };
  const big = put({ v: 'x'.repeat(1000) }); // bencoded: 1005 bytes
  assert.ok(big.y === 'e' && big.code === 205, JSON.stringify(big));
  const salted = put({ v: 'hi', k: Buffer.alloc(32, 1), sig: Buffer.alloc(64, 2), seq: 1, salt: Buffer.alloc(65, 3) });
  assert.ok(salted.y === 'e' && salted.code === 207, JSON.stringify(salted));
  // At the limits the put is read, and checked as usual (here: a bad signature).
  const atLimit = put({ v: 'hi', k: Buffer.alloc(32, 1), sig: Buffer.alloc(64, 2), seq: 1, salt: Buffer.alloc(64, 3) });
  assert.ok(atLimit.y === 'e' && atLimit.code === 206);
  // Other malformed queries still get 203.
  const other = put({ v: 'hi', k: Buffer.alloc(31, 1), sig: Buffer.alloc(64, 2), seq: 1 });
  assert.ok(other.y === 'e' && other.code === 203);
  assert.equal(core.stats(0).storedItems, 0);
});

/**
 * A getter's view of a BEP 44 get: six nodes (ids next to the target, the
 * first closest) answer a get lookup each with its own `items` entry;
 * within a round of answers, closer nodes answer first.
 */
function runGet(target: Buffer, items: (Partial<KrpcResponse> | undefined)[], salt?: Buffer): { result: OperationResult; order: number[] } {
  const core = makeCore({ timeoutMs: 100 });
  const nodes = items.map((_, i) => {
    const id = Buffer.from(target);
    id[19] = id[19]! ^ (i + 1);
    return { id, at: { host: `10.0.5.${i + 1}`, port: 6881 } };
  });
  const index = new Map(nodes.map((n, i) => [n.at.host, i]));
  const order: number[] = [];
  const serve = (now: number, gets: boolean): void => {
    for (let round = 0; round < 30; round++) {
      const qs = drain(core).filter((o) => o.msg.y === 'q');
      if (qs.length === 0) return;
      qs.sort((a, b) => index.get(a.to.host)! - index.get(b.to.host)!);
      for (const o of qs) {
        const i = index.get(o.to.host)!;
        if (gets && o.msg.y === 'q' && o.msg.q === 'get') {
          order.push(i);
          answer(core, now, o.to, o.msg, nodes[i]!.id, { token: Buffer.from('tk'), ...(items[i] ?? {}) });
        } else answer(core, now, o.to, o.msg, nodes[i]!.id);
      }
    }
  };
  core.bootstrap(0, nodes.map((n) => ({ id: n.id, address: n.at })));
  serve(1, false);
  events(core);
  const op = core.get(2, target, salt);
  serve(3, true);
  const done = events(core).find((e) => e.type === 'done' && e.op === op);
  assert.ok(done !== undefined && done.type === 'done', 'the get finished');
  return { result: done.result, order };
}

test('BEP 44 get as the getter: a wrong-hash immutable item and forged mutable items are rejected, a lower seq never replaces a higher one', () => {
  const value = encode('the real value');
  const target = immutableTarget(value);
  const wrong = runGet(target, [{ value: encode('not it') }, { value: encode('nor this') }, undefined]);
  assert.equal(wrong.result.ok, false);
  assert.equal(wrong.result.item, undefined);
  assert.equal(wrong.order.length, 3, 'every node was asked');
  const right = runGet(target, [{ value: encode('not it') }, { value }, undefined]);
  assert.ok(right.result.ok && right.result.item!.value.equals(value));
  assert.equal(right.result.item!.value.buffer.byteLength, right.result.item!.value.length, 'the item owns its memory (not a slice of the datagram or the Buffer pool)');

  const seed = Buffer.alloc(32, 7);
  const salt = Buffer.from('room');
  const m5 = signMutableItem(seed, encode('five'), 5, salt);
  const m3 = signMutableItem(seed, encode('three'), 3, salt);
  const m9 = signMutableItem(seed, encode('nine'), 9, salt);
  const otherSalt = signMutableItem(seed, encode('seven'), 7, Buffer.from('hall'));
  const otherKey = signMutableItem(Buffer.alloc(32, 8), encode('eight'), 8, salt);
  const asResponse = (m: typeof m5, over: Partial<KrpcResponse> = {}): Partial<KrpcResponse> => ({ value: m.value, k: m.k!, sig: m.sig!, seq: m.seq!, ...over });
  const mt = mutableTarget(m5.k!, salt);
  const got = runGet(
    mt,
    [
      asResponse(m5),
      asResponse(m3), // valid, but a lower seq than the one already known
      asResponse(m9, { value: encode('forged') }), // bad signature
      asResponse(m9, { seq: 10 }), // seq not the signed one
      asResponse(otherSalt), // signed for another salt
      asResponse(otherKey), // another key's item: not this target
    ],
    salt,
  );
  assert.deepEqual(got.order.slice(0, 2), [0, 1], 'the seq 3 answer came after the seq 5 one');
  assert.equal(got.order.length, 6);
  assert.ok(got.result.ok);
  assert.equal(got.result.item!.seq, 5);
  assert.ok(got.result.item!.value.equals(encode('five')));
  assert.ok(got.result.item!.k!.equals(m5.k!));
  // Without the right salt nothing verifies.
  const noSalt = runGet(mt, [asResponse(m5), asResponse(m3)], Buffer.from('hall'));
  assert.equal(noSalt.result.ok, false);
});

test('an announce counts its store-phase queries and resends in `queries`', () => {
  const core = makeCore({ timeoutMs: 100, retries: 1 });
  const nodes = [1, 2].map((i) => ({ id: Buffer.alloc(20, i), at: { host: `10.0.6.${i}`, port: 6881 } }));
  const ih = Buffer.alloc(20, 3);
  core.bootstrap(0, nodes.map((n) => ({ id: n.id, address: n.at })));
  const who = (o: { to: Endpoint }): Buffer => nodes.find((n) => n.at.host === o.to.host)!.id;
  for (const o of drain(core)) answer(core, 1, o.to, o.msg, who(o));
  for (const o of drain(core)) if (o.msg.y === 'q') answer(core, 1, o.to, o.msg, who(o)); // the refresh pass
  events(core);
  const op = core.announce(2, ih, 7000);
  const gp = drain(core).filter((o) => o.msg.y === 'q' && o.msg.q === 'get_peers');
  assert.equal(gp.length, 2);
  for (const o of gp) answer(core, 3, o.to, o.msg, who(o), { token: Buffer.from('tok') });
  const ann = drain(core).filter((o) => o.msg.y === 'q' && o.msg.q === 'announce_peer');
  assert.equal(ann.length, 2);
  answer(core, 4, ann[0]!.to, ann[0]!.msg, who(ann[0]!));
  core.handleTimeout(103); // the other store query is resent once
  const resent = drain(core).filter((o) => o.msg.y === 'q' && o.msg.q === 'announce_peer');
  assert.equal(resent.length, 1);
  answer(core, 104, resent[0]!.to, resent[0]!.msg, who(resent[0]!));
  const done = events(core).find((e) => e.type === 'done' && e.op === op);
  assert.ok(done !== undefined && done.type === 'done');
  assert.equal(done.result.stored, 2);
  assert.equal(done.result.queries, 5, 'two get_peers, two announce_peer and one resend');
});

test('ItemStore keeps an item in one ArrayBuffer of its own, never a slice of the datagram or of Node\'s Buffer pool', () => {
  const store = new ItemStore();
  const datagram = Buffer.from('x'.repeat(200));
  const item = { value: datagram.subarray(10, 30), k: datagram.subarray(30, 62), sig: datagram.subarray(62, 126), seq: 4, salt: datagram.subarray(126, 130) };
  store.set(0, 'T'.repeat(20), item);
  const kept = store.get(0, 'T'.repeat(20))!;
  for (const b of [kept.value, kept.k!, kept.sig!, kept.salt!]) assert.equal(b.buffer.byteLength, 20 + 32 + 64 + 4);
  assert.ok(kept.value.equals(item.value) && kept.k!.equals(item.k) && kept.sig!.equals(item.sig) && kept.salt!.equals(item.salt));
  datagram.fill(0);
  assert.ok(kept.value.equals(Buffer.from('x'.repeat(20))), 'a copy, not a view');
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

test('fuzz: hostile answers to our own outstanding queries (bogus node lists, wrong types, missing keys) never throw, are all counted, and never put a bogus node in the table', () => {
  const R: Endpoint = { host: '10.0.9.1', port: 6881 };
  const idR = Buffer.alloc(20, 0x5a);
  const bytes = (min: number, max: number): fc.Arbitrary<Buffer> => fc.uint8Array({ minLength: min, maxLength: max }).map((u) => Buffer.from(u));
  const ip = fc.oneof(
    fc.constantFrom([0, 0, 0, 0], [255, 255, 255, 255], [224, 0, 0, 1], [10, 0, 9, 1], [192, 168, 1, 1], [127, 0, 0, 1], [10, 0, 9, 2]).map((a) => Buffer.from(a)),
    bytes(4, 4),
  );
  const port = fc.oneof(fc.constant(0), fc.constant(6881), fc.integer({ min: 1, max: 65535 }));
  const nodeId = fc.oneof(fc.constant(SELF), fc.constant(idR), bytes(20, 20));
  const entry = fc.tuple(nodeId, ip, port).map(([id, a, p]) => Buffer.concat([id, a, Buffer.from([p >> 8, p & 0xff])]));
  const nodes = fc.oneof(
    fc.array(entry, { maxLength: 12 }).map((es) => Buffer.concat(es)), // well formed, bogus entries
    fc.array(entry, { minLength: 1, maxLength: 3 }).map((es) => Buffer.concat([...es, ...es, ...es])), // duplicates
    fc.array(entry, { minLength: 100, maxLength: 150 }).map((es) => Buffer.concat(es)), // huge (near the 4096-byte datagram limit)
    bytes(0, 300), // any length
    fc.integer(),
    fc.constant([]),
  );
  const body = fc.record(
    {
      id: fc.oneof(fc.constant(idR), nodeId, bytes(0, 25), fc.integer()),
      nodes,
      nodes6: fc.oneof(bytes(0, 80), fc.integer()),
      token: fc.oneof(bytes(0, 24), fc.integer()),
      values: fc.oneof(fc.array(bytes(6, 6), { maxLength: 5 }), fc.array(bytes(0, 9), { maxLength: 3 }), fc.integer()),
      v: fc.oneof(fc.integer(), bytes(0, 40)),
    },
    { requiredKeys: [] },
  );
  // Well-formed answers whose node lists are bogus: the case that reaches the lookup and the table.
  const wellFormed = fc.record({
    id: fc.oneof(fc.constant(idR), fc.constant(idR), bytes(20, 20)),
    nodes: fc.oneof(
      fc.array(entry, { maxLength: 12 }).map((es) => Buffer.concat(es)),
      fc.array(entry, { minLength: 1, maxLength: 3 }).map((es) => Buffer.concat([...es, ...es, ...es])),
      fc.array(entry, { minLength: 100, maxLength: 150 }).map((es) => Buffer.concat(es)),
    ),
    token: bytes(0, 24),
  });
  const reply = fc.record({
    y: fc.oneof({ arbitrary: fc.constant('r'), weight: 6 }, fc.constantFrom('e', 'q', 'x')),
    t: fc.oneof({ arbitrary: fc.constant('ours'), weight: 6 }, fc.constantFrom('other', 'missing')),
    body: fc.oneof({ arbitrary: wellFormed, weight: 3 }, { arbitrary: body, weight: 1 }),
    e: fc.oneof(fc.tuple(fc.integer(), fc.string({ maxLength: 8 })), fc.integer()),
    ip: fc.oneof(fc.constant(undefined), bytes(6, 6), bytes(0, 8)),
    junk: fc.option(bytes(0, 60), { freq: 8 }),
  });
  // How the nodes our lookups learned of answer (they are all the fuzzer).
  const followUp = fc.constantFrom('silent', 'from-elsewhere', 'random-id', 'our-id', 'as-R', 'as-listed');
  let populated = 0; // runs that ended with nodes in the table
  let followedUp = 0; // runs in which a lookup queried nodes from a hostile list
  fc.assert(
    fc.property(fc.array(reply, { minLength: 1, maxLength: 12 }), fc.array(followUp, { minLength: 1, maxLength: 6 }), fc.boolean(), (replies, followUps, seedHasId) => {
      const core = makeCore({ timeoutMs: 100, retries: 1, maintenanceMs: 1000 });
      const listed = new Map<string, Buffer>(); // address -> an id a node list gave for it
      const answered = new Set<string>(); // id@address pairs that answered one of our queries
      let fed = 0;
      let r = 0;
      let f = 0;
      const key = (id: Buffer, e: Endpoint): string => `${id.toString('hex')}@${e.host}:${e.port}`;
      const feed = (now: number, from: Endpoint, data: Buffer): void => {
        core.handleDatagram(now, from, data); // must not throw
        fed++;
        const s = core.stats(now);
        assert.equal(s.malformed + s.unmatched + s.responsesReceived + s.queriesReceived + s.rateLimited, fed, 'every datagram is counted once');
      };
      const bogus = (host: string, p: number): boolean => p === 0 || host === '0.0.0.0' || Number(host.split('.')[0]) >= 224;
      let now = 0;
      for (let round = 0; round < 3; round++) {
        now += 1;
        core.bootstrap(now, [seedHasId ? { id: idR, address: R } : { address: R }]);
        for (let step = 0; step < 40; step++) {
          const out = drain(core); // whatever we send is valid KRPC (drain decodes it)
          for (const o of out) {
            assert.ok(!bogus(o.to.host, o.to.port), `sent to ${o.to.host}:${o.to.port}`);
            if (o.msg.y !== 'q') continue;
            const t = o.msg.t;
            if (o.to.host === R.host && o.to.port === R.port) {
              const spec = replies[r++ % replies.length]!;
              const msg: Record<string, unknown> = { y: spec.y };
              if (spec.t === 'ours') msg.t = t;
              else if (spec.t === 'other') msg.t = Buffer.from([t[0]! ^ 0xff, t[1] ?? 0]);
              if (spec.y === 'e') msg.e = spec.e;
              else msg.r = { ...spec.body }; // fast-check builds records with a null prototype
              if (spec.ip !== undefined) msg.ip = spec.ip;
              const data = spec.junk ?? encode(msg as Parameters<typeof encode>[0]);
              const b = spec.body;
              if (spec.junk === null && spec.y === 'r' && spec.t === 'ours' && Buffer.isBuffer(b.id) && b.id.length === 20) answered.add(key(b.id, R));
              if (Buffer.isBuffer(b.nodes)) {
                for (let p = 0; p + 26 <= b.nodes.length; p += 26) {
                  const n = b.nodes.subarray(p, p + 26);
                  listed.set(`${n[20]}.${n[21]}.${n[22]}.${n[23]}:${(n[24]! << 8) | n[25]!}`, Buffer.from(n.subarray(0, 20)));
                }
              }
              feed(now, R, data);
              continue;
            }
            if (f === 0) followedUp++;
            const how = followUps[f++ % followUps.length]!;
            const id = how === 'our-id' ? SELF : how === 'as-R' ? idR : how === 'as-listed' ? (listed.get(`${o.to.host}:${o.to.port}`) ?? idR) : Buffer.alloc(20, 0x70 + (f % 16));
            if (how === 'silent') continue;
            const from = how === 'from-elsewhere' ? { host: o.to.host, port: (o.to.port % 65535) + 1 } : o.to;
            if (from === o.to) answered.add(key(id, from));
            feed(now, from, encodeKrpc({ y: 'r', t, id } as KrpcResponse));
          }
          now += 60;
          core.handleTimeout(now);
          if (out.length === 0 && core.stats(now).transactions === 0) break;
        }
      }
      core.handleTimeout(now + 10_000);
      drain(core);
      if (core.tableNodes(now, 1000).length > 0) populated++;
      for (const n of core.tableNodes(now, 1000)) {
        assert.ok(!bogus(n.host, n.port), `bogus address in the table: ${n.host}:${n.port}`);
        assert.notEqual(n.id, SELF.toString('hex'), 'our own id in the table');
        assert.ok(answered.has(`${n.id}@${n.host}:${n.port}`), `${n.id}@${n.host}:${n.port} is in the table but never answered a query of ours with that id from that address`);
      }
    }),
    { numRuns: 400 },
  );
  // The property is not vacuous: tables did fill from genuine answers, and hostile lists were followed.
  assert.ok(populated >= 15 && followedUp >= 15, `populated ${populated}, followed up ${followedUp}`);
});
