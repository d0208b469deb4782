/**
 * DHT benchmark on loopback: a network of N nodes (default 1,000) of one
 * implementation in one process, peerkit's DhtNode or WebTorrent's
 * bittorrent-dht, each run in its own child process so RSS is its own.
 *
 * Each node joins through the first node and a random earlier one. Then 20
 * infohashes are announced from random nodes, and L (default 100)
 * sequential get_peers lookups for them start at random other nodes.
 * Measured: lookup latency (median, p95), success (the announced peer was
 * found), datagrams sent per lookup (every socket in the process, counted
 * by wrapping dgram's send, so the same way for both), memory per idle node.
 * Only 127.0.0.1 is ever contacted (the send wrapper throws otherwise).
 *
 * Memory per node is (after - before) / N, where "before" is taken before the
 * first node starts and "after" once the network has joined and idled for
 * 45 s, each after three forced full GCs a little apart (the children run
 * with --expose-gc). The idle time matters: 12 s after the join, RSS still
 * held some 20 KiB per peerkit node of free heap pages that V8 gives back
 * later on its own (52 KiB per node at 12 s, 32 KiB at 45 s, for the same
 * 22 KiB of heap); by 45 s it has, and every node has had its maintenance
 * ticks (which sweep the per-source rate-limit entries of the join burst).
 * RSS also holds V8's young generation, which grows to tens of MiB during
 * the join burst and stays committed: process-wide, bounded by the
 * semi-space limit, not per-node state, yet divided by N here. So each
 * implementation also runs memory only with the young generation capped
 * (--max-semi-space-size=1), which takes it out: three times, interleaved,
 * since RSS varies a lot between runs (the median is printed, and the range).
 *
 *     npm run bench:dht [-- N L]
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Socket as UdpSocket } from 'node:dgram';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import type { EventEmitter } from 'node:events';
import { DhtNode } from '../src/dht/index.js';
import { createRealRuntime } from '../src/runtime/real/runtime.js';

interface Result {
  impl: string;
  nodes: number;
  lookups: number;
  success: number;
  medianMs: number;
  p95Ms: number;
  messagesPerLookup: number;
  rssPerNodeKiB: number;
  heapPerNodeKiB: number;
  /** ArrayBuffer memory (Buffers) per node. */
  arrayBuffersPerNodeKiB: number;
  joinSeconds: number;
}

let sent = 0;
const originalSend = UdpSocket.prototype.send;
UdpSocket.prototype.send = function (this: UdpSocket, ...args: unknown[]) {
  const host = args.filter((a): a is string => typeof a === 'string').pop() ?? '';
  if (!host.startsWith('127.')) throw new Error(`refusing to send a datagram to ${host}`);
  sent++;
  return (originalSend as (...a: unknown[]) => void).apply(this, args);
} as typeof UdpSocket.prototype.send;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const gc = (): void => (globalThis as { gc?: () => void }).gc?.();
/** Full GCs (synchronous with --expose-gc), a few, with pauses: free heap pages are given back, the join's garbage is gone. */
async function reduceMemory(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(300);
  }
}

interface Impl {
  start(bootstrap: string[]): Promise<string>;
  announce(i: number, ih: Buffer, port: number): Promise<void>;
  lookup(i: number, ih: Buffer): Promise<string[]>;
  close(): Promise<void>;
}

function peerkitImpl(): Impl {
  const runtime = createRealRuntime();
  const nodes: DhtNode[] = [];
  return {
    async start(bootstrap) {
      const n = await DhtNode.start({ runtime });
      nodes.push(n);
      if (bootstrap.length > 0) await n.bootstrap(bootstrap);
      return `127.0.0.1:${n.address.port}`;
    },
    async announce(i, ih, port) {
      await nodes[i]!.announce(ih, port);
    },
    async lookup(i, ih) {
      const r = await nodes[i]!.getPeers(ih);
      return r.peers.map((p) => `${p.host}:${p.port}`);
    },
    async close() {
      for (const n of nodes) await n.close();
    },
  };
}

interface BittorrentDht extends EventEmitter {
  listen(port: number, host: string, cb: () => void): void;
  address(): { port: number };
  announce(ih: Buffer, port: number, cb: (err: Error | null) => void): void;
  lookup(ih: Buffer, cb: (err: Error | null) => void): void;
  destroy(cb: () => void): void;
}

function bittorrentDhtImpl(): Impl {
  const DHT = createRequire(import.meta.url)('bittorrent-dht') as new (o: Record<string, unknown>) => BittorrentDht;
  const nodes: BittorrentDht[] = [];
  return {
    async start(bootstrap) {
      // `bootstrap` is an explicit loopback list (empty for the first node): never the public default.
      const d = new DHT({ bootstrap: bootstrap.length > 0 ? bootstrap : false, host: '127.0.0.1' });
      d.on('error', () => {});
      d.on('warning', () => {});
      nodes.push(d);
      await new Promise<void>((r) => d.listen(0, '127.0.0.1', r));
      await new Promise<void>((r) => ((d as unknown as { ready?: boolean }).ready === true ? r() : d.once('ready', () => r())));
      return `127.0.0.1:${d.address().port}`;
    },
    async announce(i, ih, port) {
      await new Promise<void>((resolve, reject) => nodes[i]!.announce(ih, port, (err) => (err ? reject(err) : resolve())));
    },
    async lookup(i, ih) {
      const d = nodes[i]!;
      const found: string[] = [];
      const onPeer = (p: { host: string; port: number }, h: Buffer): void => void (h.equals(ih) && found.push(`${p.host}:${p.port}`));
      d.on('peer', onPeer);
      await new Promise<void>((resolve) => d.lookup(ih, () => resolve()));
      d.off('peer', onPeer);
      return found;
    },
    async close() {
      await Promise.all(nodes.map((d) => new Promise<void>((r) => d.destroy(r))));
    },
  };
}

async function child(implName: string, n: number, lookups: number): Promise<Result> {
  const impl = implName === 'peerkit' ? peerkitImpl() : bittorrentDhtImpl();
  // A fixed sequence of choices, the same for both implementations.
  let seed = 12345;
  const rand = (k: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % k;
  };
  await reduceMemory();
  const m0 = process.memoryUsage();
  const t0 = performance.now();
  const addrs: string[] = [await impl.start([])];
  for (let i = 1; i < n; i++) {
    const via = addrs[rand(i)]!;
    addrs.push(await impl.start(via === addrs[0] ? [addrs[0]!] : [addrs[0]!, via]));
  }
  const joinSeconds = (performance.now() - t0) / 1000;
  await sleep(45_000);
  await reduceMemory();
  const m1 = process.memoryUsage();
  const perNode = (a: number, b: number): number => (b - a) / n / 1024;
  const memory = { rssPerNodeKiB: perNode(m0.rss, m1.rss), heapPerNodeKiB: perNode(m0.heapUsed, m1.heapUsed), arrayBuffersPerNodeKiB: perNode(m0.arrayBuffers, m1.arrayBuffers) };
  if (lookups === 0) {
    await impl.close();
    return { impl: implName, nodes: n, lookups, success: 0, medianMs: 0, p95Ms: 0, messagesPerLookup: 0, ...memory, joinSeconds };
  }
  const hashes = Array.from({ length: 20 }, (_, j) => createHash('sha1').update(`bench-${j}`).digest());
  const owners: number[] = [];
  for (let j = 0; j < hashes.length; j++) {
    owners.push(rand(n));
    await impl.announce(owners[j]!, hashes[j]!, 20000 + j);
  }
  const times: number[] = [];
  let success = 0;
  let messages = 0;
  for (let k = 0; k < lookups; k++) {
    const j = rand(hashes.length);
    let from = rand(n);
    if (from === owners[j]) from = (from + 1) % n;
    const before = sent;
    const t = performance.now();
    const peers = await impl.lookup(from, hashes[j]!);
    times.push(performance.now() - t);
    messages += sent - before;
    if (peers.includes(`127.0.0.1:${20000 + j}`)) success++;
  }
  await impl.close();
  times.sort((a, b) => a - b);
  const q = (p: number): number => times[Math.min(times.length - 1, Math.floor(p * times.length))]!;
  return { impl: implName, nodes: n, lookups, success: success / lookups, medianMs: q(0.5), p95Ms: q(0.95), messagesPerLookup: messages / lookups, ...memory, joinSeconds };
}

function runChild(impl: string, n: number, lookups: number, flags: string[] = []): Promise<Result> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['--expose-gc', ...flags, new URL(import.meta.url).pathname, '--child', impl, String(n), String(lookups)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => c.kill('SIGKILL'), 30 * 60_000);
    c.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`${impl} run exited with ${code}`));
      resolve(JSON.parse(out.trim().split('\n').pop()!) as Result);
    });
  });
}

const args = process.argv.slice(2);
if (args[0] === '--child') {
  const r = await child(args[1]!, Number(args[2]), Number(args[3]));
  process.stdout.write(`${JSON.stringify(r)}\n`);
  process.exit(0);
} else {
  const n = Number(args[0] ?? 1000);
  const lookups = Number(args[1] ?? 100);
  console.log(`DHT bench: ${n} nodes per implementation on 127.0.0.1, ${lookups} get_peers lookups; ${cpus().length} x ${cpus()[0]?.model ?? '?'}; node ${process.version}`);
  const rows: Result[] = [];
  for (const impl of ['peerkit', 'bittorrent-dht']) {
    const r = await runChild(impl, n, lookups);
    rows.push(r);
    console.log(
      `${impl.padEnd(15)} success ${(100 * r.success).toFixed(1)} %  median ${r.medianMs.toFixed(1)} ms  p95 ${r.p95Ms.toFixed(1)} ms  ` +
        `messages/lookup ${r.messagesPerLookup.toFixed(1)}  RSS/node ${r.rssPerNodeKiB.toFixed(1)} KiB  heap/node ${r.heapPerNodeKiB.toFixed(1)} KiB  ` +
        `buffers/node ${r.arrayBuffersPerNodeKiB.toFixed(1)} KiB  join ${r.joinSeconds.toFixed(1)} s`,
    );
  }
  // Memory only, young generation capped, three runs each, interleaved: RSS varies a lot from run to
  // run (how many free pages V8 and malloc have given back), so the median is kept, the range shown.
  const memRuns: Record<string, Result[]> = { peerkit: [], 'bittorrent-dht': [] };
  for (let run = 0; run < 3; run++) for (const impl of ['peerkit', 'bittorrent-dht']) memRuns[impl]!.push(await runChild(impl, n, 0, ['--max-semi-space-size=1']));
  const median = (rs: Result[], f: (r: Result) => number): number => rs.map(f).sort((x, y) => x - y)[Math.floor(rs.length / 2)]!;
  const capped: Result[] = [];
  for (const impl of ['peerkit', 'bittorrent-dht']) {
    const rs = memRuns[impl]!;
    const rss = rs.map((r) => r.rssPerNodeKiB);
    const r = { ...rs[0]!, rssPerNodeKiB: median(rs, (x) => x.rssPerNodeKiB), heapPerNodeKiB: median(rs, (x) => x.heapPerNodeKiB), arrayBuffersPerNodeKiB: median(rs, (x) => x.arrayBuffersPerNodeKiB) };
    capped.push(r);
    console.log(
      `${impl.padEnd(15)} young generation capped (--max-semi-space-size=1), memory only, median of 3: RSS/node ${r.rssPerNodeKiB.toFixed(1)} KiB ` +
        `(${Math.min(...rss).toFixed(1)}-${Math.max(...rss).toFixed(1)})  heap/node ${r.heapPerNodeKiB.toFixed(1)} KiB  buffers/node ${r.arrayBuffersPerNodeKiB.toFixed(1)} KiB`,
    );
  }
  const [p, b] = rows as [Result, Result];
  const [pc, bc] = capped as [Result, Result];
  console.log(
    `ratios peerkit/bittorrent-dht: median latency ${(p.medianMs / b.medianMs).toFixed(2)}, p95 ${(p.p95Ms / b.p95Ms).toFixed(2)}, ` +
      `messages ${(p.messagesPerLookup / b.messagesPerLookup).toFixed(2)}, RSS/node ${(p.rssPerNodeKiB / b.rssPerNodeKiB).toFixed(2)}, ` +
      `RSS/node capped ${(pc.rssPerNodeKiB / bc.rssPerNodeKiB).toFixed(2)}`,
  );
}
