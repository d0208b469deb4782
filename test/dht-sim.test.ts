/**
 * Many DhtCores on the simulated network, each wired by the generic driver
 * (src/runtime/drive.ts) exactly as on the real runtime: bootstrap, lookups,
 * announces and BEP 44 items, with and without packet loss and with a share
 * of nodes that never answer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DhtCore, type DhtEvent, type OperationResult } from '../src/core/dht/index.js';
import { signMutableItem } from '../src/core/dht/bep44.js';
import { encode } from '../src/codec/bencode.js';
import { driveDatagramCore, type DriveHandle } from '../src/runtime/drive.js';
import { SimNetwork } from '../src/runtime/sim/index.js';
import type { Endpoint } from '../src/runtime/contract.js';
import { immutableTarget, mutableTarget } from '../src/core/dht/bep44.js';

interface SimNode {
  core: DhtCore;
  handle: DriveHandle;
  address: Endpoint;
  results: Map<number, OperationResult>;
  announces: number;
}

async function buildNetwork(n: number, options: { seed: number; loss?: number; silent?: number; k?: number }): Promise<{ net: SimNetwork; nodes: SimNode[] }> {
  const net = new SimNetwork({ seed: options.seed, latencyMs: (a, b) => 5 + ((a.address.charCodeAt(a.address.length - 1) + b.address.charCodeAt(b.address.length - 1)) % 40), loss: options.loss ?? 0 });
  const nodes: SimNode[] = [];
  for (let i = 0; i < n; i++) {
    const host = net.addHost();
    const socket = await host.runtime.bindDatagram({ port: 6881 });
    const core = new DhtCore({ random: host.random, now: net.engine.now, options: { timeoutMs: 1000, ...(options.k === undefined ? {} : { k: options.k }) } });
    const node: SimNode = { core, handle: undefined as unknown as DriveHandle, address: socket.local, results: new Map(), announces: 0 };
    if (i >= n - (options.silent ?? 0)) {
      socket.close(); // a dead node: every query to it is lost
    } else {
      node.handle = driveDatagramCore(host.runtime, socket, core, (e: DhtEvent) => {
        if (e.type === 'done') node.results.set(e.op, e.result);
        if (e.type === 'announce') node.announces++;
      });
    }
    nodes.push(node);
  }
  return { net, nodes };
}

function start(node: SimNode, f: (now: number) => number, now: number): number {
  const op = f(now);
  node.handle.poke();
  return op;
}

async function bootstrapAll(net: SimNetwork, nodes: SimNode[], live: number): Promise<void> {
  // Each node joins through one earlier node (the first joins through nobody), one after another.
  for (let i = 1; i < live; i++) {
    const via = nodes[Math.floor(net.random.float() * i)]!;
    start(nodes[i]!, (now) => nodes[i]!.core.bootstrap(now, [via.address]), net.engine.now);
    net.engine.run({ until: net.engine.now + 200 });
  }
  net.engine.run({ until: net.engine.now + 30_000 });
  // A second round, as a real node does with its periodic refresh, so early joiners learn of later ones.
  for (let i = 0; i < live; i++) start(nodes[i]!, (now) => nodes[i]!.core.bootstrap(now, []), net.engine.now);
  net.engine.run({ until: net.engine.now + 30_000 });
}

function run(net: SimNetwork, node: SimNode, f: (now: number) => number, ms = 60_000): OperationResult {
  const op = start(node, f, net.engine.now);
  const until = net.engine.now + ms;
  while (!node.results.has(op) && net.engine.now < until) net.engine.run({ until: Math.min(until, net.engine.now + 500) });
  const r = node.results.get(op);
  assert.ok(r !== undefined, `operation ${op} did not finish within ${ms} ms`);
  return r;
}

test('sim: 300 nodes bootstrap, then every lookup finds the true closest nodes in few hops', async () => {
  const { net, nodes } = await buildNetwork(300, { seed: 1 });
  await bootstrapAll(net, nodes, 300);
  const now = net.engine.now;
  for (const n of nodes) {
    const s = n.core.stats(now);
    assert.ok(s.nodes >= 8, `a node has only ${s.nodes} nodes in its table`);
    assert.equal(n.core.tableSize, s.nodes);
  }
  let exact = 0;
  let hops = 0;
  let queries = 0;
  const lookups = 40;
  for (let i = 0; i < lookups; i++) {
    const target = net.random.bytes(20);
    const from = nodes[Math.floor(net.random.float() * nodes.length)]!;
    const r = run(net, from, (t) => from.core.findNode(t, target));
    // Ground truth: the 8 closest ids among all nodes.
    const truth = nodes
      .filter((n) => n !== from)
      .map((n) => n.core.id)
      .sort((a, b) => Buffer.compare(xor(a, target), xor(b, target)))
      .slice(0, 8);
    if (r.nodes.length === 8 && r.nodes.every((x, j) => x.id.equals(truth[j]!))) exact++;
    hops += r.hops;
    queries += r.queries;
  }
  assert.ok(exact >= lookups * 0.95, `only ${exact}/${lookups} lookups found the exact closest set`);
  assert.ok(hops / lookups < 6, `average hops ${hops / lookups}`);
  assert.ok(queries / lookups < 60, `average queries ${queries / lookups}`);
});

test('sim: 400 nodes join through one bootstrap node within a minute; far buckets are filled at join and >= 99.5 % of lookups find their target', async () => {
  // k = 4 makes tables sparse, which is where a join that looks up only its own id leaves the far
  // buckets empty (about half the nodes had an empty bucket 0, and ~1.2 % of these lookups missed).
  const k = 4;
  const { net, nodes } = await buildNetwork(400, { seed: 21, k });
  const joinAt = nodes.map((_, i) => (i === 0 ? 0 : Math.floor(net.random.float() * 60_000)));
  const order = nodes.map((_, i) => i).filter((i) => i > 0).sort((a, b) => joinAt[a]! - joinAt[b]!);
  for (const i of order) {
    net.engine.run({ until: joinAt[i]! });
    start(nodes[i]!, (now) => nodes[i]!.core.bootstrap(now, [nodes[0]!.address]), net.engine.now);
  }
  // No second self-lookup: what a node knows comes from its own join and from the others' traffic.
  net.engine.run({ until: 90_000 });
  const now = net.engine.now;
  for (const [i, n] of nodes.entries()) {
    const buckets = n.core.bucketStats(now);
    assert.ok(buckets.length >= 4, `node ${i} has only ${buckets.length} buckets`);
    // The far buckets hold nodes (bucket b covers 1/2^(b+1) of the 400 nodes: at least 12 for b <= 4).
    for (let b = 0; b < Math.min(5, buckets.length - 1); b++) assert.ok(buckets[b]!.nodes >= 1, `node ${i}: bucket ${b} is empty (${buckets.map((x) => x.nodes).join(',')})`);
  }
  let found = 0;
  const lookups = 600;
  for (let l = 0; l < lookups; l++) {
    const from = nodes[Math.floor(net.random.float() * nodes.length)]!;
    let to = from;
    while (to === from) to = nodes[Math.floor(net.random.float() * nodes.length)]!;
    const r = run(net, from, (t) => from.core.findNode(t, to.core.id));
    if (r.nodes.some((x) => x.id.equals(to.core.id))) found++;
  }
  assert.ok(found >= lookups * 0.995, `only ${found}/${lookups} lookups found their target`);
});

function xor(a: Buffer, b: Uint8Array): Buffer {
  const out = Buffer.alloc(20);
  for (let i = 0; i < 20; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

test('sim: announce and get_peers, immutable and mutable items, with 5% loss and 10% dead nodes', async () => {
  const { net, nodes } = await buildNetwork(200, { seed: 7, loss: 0.05, silent: 20 });
  // Dead nodes were never bootstrapped, but the live ones may still learn of them: the lookups must route around.
  await bootstrapAll(net, nodes, 180);
  const live = nodes.slice(0, 180);
  const infoHash = net.random.bytes(20);
  for (const [i, port] of [[3, 5000], [50, 5001], [120, 0]] as const) {
    const r = run(net, live[i]!, (t) => live[i]!.core.announce(t, infoHash, port === 0 ? undefined : port));
    assert.equal(r.kind, 'announce');
    assert.ok(r.ok && r.stored >= 4, `announce stored at ${r.stored} nodes`);
  }
  const found = run(net, live[170]!, (t) => live[170]!.core.getPeers(t, infoHash));
  const ports = found.peers.map((p) => `${p.host}:${p.port}`).sort();
  assert.deepEqual(ports, [`${live[120]!.address.host}:6881`, `${live[3]!.address.host}:5000`, `${live[50]!.address.host}:5001`].sort());

  const value = encode({ hello: 'world' });
  const put = run(net, live[10]!, (t) => live[10]!.core.put(t, { value }));
  assert.ok(put.ok && put.stored >= 4);
  const got = run(net, live[99]!, (t) => live[99]!.core.get(t, immutableTarget(value)));
  assert.ok(got.ok && got.item!.value.equals(value));

  const seed = Buffer.alloc(32, 9);
  const salt = Buffer.from('s');
  const v1 = signMutableItem(seed, encode('first'), 1, salt);
  assert.ok(run(net, live[20]!, (t) => live[20]!.core.put(t, v1)).ok);
  const v2 = signMutableItem(seed, encode('second'), 2, salt);
  assert.ok(run(net, live[30]!, (t) => live[30]!.core.put(t, v2, 1)).ok);
  const stale = run(net, live[40]!, (t) => live[40]!.core.put(t, v1));
  // Nodes holding seq 2 refuse it with 302 (one that missed the second put through loss may still take it).
  assert.ok(stale.errors.filter((c) => c === 302).length > stale.stored, `a stale seq must be refused with 302: ${JSON.stringify(stale)}`);
  const m = run(net, live[150]!, (t) => live[150]!.core.get(t, mutableTarget(v1.k!, salt), salt));
  assert.ok(m.ok);
  assert.equal(m.item!.seq, 2);
  assert.ok(m.item!.value.equals(encode('second')));
});

test('sim: a run is a pure function of its seed', async () => {
  const once = async (): Promise<string> => {
    const { net, nodes } = await buildNetwork(40, { seed: 3, loss: 0.1 });
    await bootstrapAll(net, nodes, 40);
    const r = run(net, nodes[5]!, (t) => nodes[5]!.core.findNode(t, Buffer.alloc(20, 0xab)));
    return JSON.stringify({ ids: r.nodes.map((n) => n.id.toString('hex')), q: r.queries, stats: net.stats, now: net.engine.now });
  };
  assert.equal(await once(), await once());
});
