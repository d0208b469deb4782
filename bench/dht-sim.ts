/**
 * DHT on the simulator: N DhtCores (default 2,000) on a SimNetwork driven by
 * the generic driver, each joining through a random earlier node, then idle
 * for a simulated 20 minutes (pings, bucket refreshes). Prints the datagrams
 * sent per join (by every node, until 30 s after the last join: the join's
 * own lookups, its bucket refreshes, and the answers and verify pings they
 * cause), heap bytes per idle node (core + driver + simulated socket), then
 * the outcome of random find_node lookups: exact closest set found, hops,
 * queries.
 *
 *     npm run build && node --expose-gc dist/bench/dht-sim.js [N] [lookups]
 */
import { DhtCore, type OperationResult } from '../src/core/dht/index.js';
import { driveDatagramCore, type DriveHandle } from '../src/runtime/drive.js';
import { SimNetwork } from '../src/runtime/sim/index.js';
import type { Endpoint } from '../src/runtime/contract.js';

const N = Number(process.argv[2] ?? 2000);
const LOOKUPS = Number(process.argv[3] ?? 200);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

interface Node {
  core: DhtCore;
  handle: DriveHandle;
  address: Endpoint;
  results: Map<number, OperationResult>;
}

const net = new SimNetwork({ seed: 42, latencyMs: (a, b) => 10 + ((a.address.charCodeAt(a.address.length - 1) * 7 + b.address.charCodeAt(b.address.length - 1)) % 90) });
gc();
const before = process.memoryUsage().heapUsed;
const nodes: Node[] = [];
for (let i = 0; i < N; i++) {
  const host = net.addHost();
  const socket = await host.runtime.bindDatagram({ port: 6881 });
  const core = new DhtCore({ random: host.random, now: net.engine.now });
  const node: Node = { core, handle: undefined as unknown as DriveHandle, address: socket.local, results: new Map() };
  node.handle = driveDatagramCore(host.runtime, socket, core, (e) => {
    if (e.type === 'done' && e.result.kind !== 'bootstrap') node.results.set(e.op, e.result);
  });
  nodes.push(node);
  if (i > 0) {
    const via = nodes[Math.floor(net.random.float() * i)]!;
    core.bootstrap(net.engine.now, [via.address]);
    node.handle.poke();
  }
  net.engine.run({ until: net.engine.now + 50 });
}
net.engine.run({ until: net.engine.now + 30_000 });
let joinSent = 0;
for (const n of nodes) joinSent += n.core.stats(net.engine.now).sent;
console.log(`datagrams per join: ${(joinSent / N).toFixed(1)} (sent by all nodes until 30 s after the last join, divided by N)`);
const t0 = performance.now();
net.engine.run({ until: net.engine.now + 20 * 60_000 });
const idleWall = performance.now() - t0;
gc();
const after = process.memoryUsage().heapUsed;
const perNode = (after - before) / N;
let tableNodes = 0;
for (const n of nodes) tableNodes += n.core.stats(net.engine.now).nodes;
console.log(`nodes: ${N}; heap per idle node: ${(perNode / 1024).toFixed(1)} KiB; average table size ${(tableNodes / N).toFixed(1)}; 20 simulated minutes idle in ${(idleWall / 1000).toFixed(1)} s`);

const xor = (a: Buffer, b: Uint8Array): Buffer => Buffer.from(a.map((x, i) => x ^ b[i]!));
const ids = nodes.map((n) => n.core.id);
let exact = 0;
let hops = 0;
let queries = 0;
for (let i = 0; i < LOOKUPS; i++) {
  const from = nodes[Math.floor(net.random.float() * N)]!;
  const target = net.random.bytes(20);
  const op = from.core.findNode(net.engine.now, target);
  from.handle.poke();
  while (!from.results.has(op)) net.engine.run({ until: net.engine.now + 100 });
  const r = from.results.get(op)!;
  const truth = ids.filter((id) => !id.equals(from.core.id)).sort((a, b) => Buffer.compare(xor(a, target), xor(b, target))).slice(0, 8);
  if (r.nodes.length === 8 && r.nodes.every((n, j) => n.id.equals(truth[j]!))) exact++;
  hops += r.hops;
  queries += r.queries;
}
console.log(`lookups: ${LOOKUPS}; exact closest 8 found: ${((100 * exact) / LOOKUPS).toFixed(1)} %; mean hops ${(hops / LOOKUPS).toFixed(2)}; mean queries ${(queries / LOOKUPS).toFixed(1)}`);
