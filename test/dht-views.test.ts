/**
 * DhtCore's read-only views for dashboards (operations in flight, the
 * routing table by bucket and node), on a core driven by hand: scripted
 * datagrams in, decoded datagrams out, a hand-turned clock.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeKrpc, encodeKrpc, type KrpcMessage, type KrpcResponse } from '../src/codec/krpc.js';
import { DhtCore } from '../src/core/dht/index.js';
import { seededRandom } from '../src/runtime/sim/index.js';
import type { Endpoint } from '../src/runtime/contract.js';

const SELF = Buffer.alloc(20, 0x00);

function makeCore(options: ConstructorParameters<typeof DhtCore>[0]['options'] = {}): DhtCore {
  return new DhtCore({ id: SELF, random: seededRandom(11), now: 0, options });
}

function drain(core: DhtCore): { to: Endpoint; msg: KrpcMessage }[] {
  const out: { to: Endpoint; msg: KrpcMessage }[] = [];
  for (let t = core.pollTransmit(); t !== undefined; t = core.pollTransmit()) out.push({ to: t.to, msg: decodeKrpc(t.data) });
  return out;
}

function answer(core: DhtCore, now: number, from: Endpoint, to: KrpcMessage, id: Buffer, extra: Partial<KrpcResponse> = {}): void {
  core.handleDatagram(now, from, encodeKrpc({ y: 'r', t: to.t, id, ...extra } as KrpcResponse));
}

test('operations() lists lookups in flight with their queries and age; tableNodes() lists the table by bucket, bounded', () => {
  const core = makeCore({ k: 3, alpha: 2, timeoutMs: 100 });
  assert.deepEqual(core.operations(10), []);
  const seeds = [1, 2, 3].map((i) => ({ id: Buffer.alloc(20, 0x10 * i), at: { host: `10.0.0.${10 + i}`, port: 6881 } }));
  const boot = core.bootstrap(5, seeds.map((s) => ({ id: s.id, address: s.at })));
  const out = drain(core);
  const ops = core.operations(10);
  assert.deepEqual(ops.map((o) => [o.op, o.kind, o.phase, o.started, o.internal, o.target]), [[boot, 'bootstrap', 'lookup', 5, false, SELF.toString('hex')]]);
  assert.equal(ops[0]!.queries, 2, 'alpha queries sent');
  assert.equal(ops[0]!.inflight, 2);
  assert.equal(ops[0]!.candidates, 3);
  // Answers put the seeds in the table; the bootstrap ends and leaves the list.
  const reply = (now: number, list: { to: Endpoint; msg: KrpcMessage }[]): void => {
    for (const o of list) {
      const s = seeds.find((x) => x.at.host === o.to.host)!;
      answer(core, now, s.at, o.msg, s.id);
    }
  };
  reply(20, out);
  reply(30, drain(core));
  // The bootstrap left the list; the refreshes of the farther buckets it started are listed, as internal.
  const refreshes = core.operations(10);
  assert.ok(refreshes.length > 0 && refreshes.every((o) => o.kind === 'refresh' && o.internal && o.op !== boot), JSON.stringify(refreshes));
  for (let i = 0; i < 10 && core.operations(10).length > 0; i++) reply(35, drain(core));
  assert.deepEqual(core.operations(10), []);
  // A get_peers from the table, and a ping: both listed until answered.
  const target = Buffer.alloc(20, 0x77);
  const look = core.getPeers(50, target);
  const ping = core.ping(60, { host: '10.0.0.99', port: 7000 });
  const listed = core.operations(10);
  assert.deepEqual(listed.map((o) => [o.op, o.kind, o.phase, o.started, o.target]), [[look, 'get_peers', 'lookup', 50, target.toString('hex')], [ping, 'ping', 'ping', 60, SELF.toString('hex')]]);
  assert.equal(listed[0]!.queries, 2);
  assert.equal(listed[1]!.inflight, 1);
  assert.deepEqual(core.operations(1).map((o) => o.op), [look], 'bounded, oldest first');
  const nodes = core.tableNodes(40, 100);
  assert.deepEqual(nodes.map((n) => [n.host, n.port, n.bucket, n.replacement, n.state, n.fails]).sort(), seeds.map((s) => [s.at.host, 6881, 0, false, 'good', 0]).sort());
  assert.ok(nodes.every((n) => /^[0-9a-f]{40}$/.test(n.id) && n.lastResponse !== undefined && n.lastSeen >= 20));
  assert.equal(core.tableNodes(40, 2).length, 2);
  const buckets = core.bucketStats(40);
  assert.equal(buckets.length, core.stats(40).buckets);
  assert.equal(buckets.reduce((a, b) => a + b.nodes, 0), 3);
});
