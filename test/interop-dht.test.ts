/**
 * Interop with WebTorrent's DHT (the npm package bittorrent-dht, pinned in
 * devDependencies): a mixed network of 10 bittorrent-dht and 10 peerkit
 * nodes on 127.0.0.1, bootstrapped among themselves only (bittorrent-dht's
 * `bootstrap` is always an explicit loopback list, never its public
 * default). Each side finds the peers the other side announced, and BEP 44
 * items (immutable and mutable) put by one side are got by the other.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { createHash, sign as edSign, verify as edVerify, createPublicKey } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { Socket as UdpSocket } from 'node:dgram';
import { DhtNode } from '../src/dht/index.js';
import { encode } from '../src/codec/bencode.js';
import { immutableTarget, keyPairFromSeed, mutableTarget } from '../src/core/dht/bep44.js';
import type { Endpoint } from '../src/runtime/contract.js';

interface BdPeer {
  host: string;
  port: number;
}
interface BdItem {
  v: Buffer;
  k?: Buffer;
  seq?: number;
  sig?: Buffer;
}
interface BittorrentDht extends EventEmitter {
  nodeId: Buffer;
  listen(port: number, host: string, cb: () => void): void;
  address(): { address: string; port: number };
  announce(infoHash: Buffer, port: number, cb: (err: Error | null) => void): void;
  lookup(infoHash: Buffer, cb: (err: Error | null, n: number) => void): void;
  put(opts: { v: Buffer; k?: Buffer; seq?: number; salt?: Buffer; sign?: (buf: Buffer) => Buffer }, cb: (err: Error | null, hash: Buffer, n: number) => void): void;
  get(key: Buffer, opts: { salt?: Buffer; cache?: boolean }, cb: (err: Error | null, res: BdItem | null) => void): void;
  nodes: { toArray(): unknown[] };
  destroy(cb: () => void): void;
}
type DhtCtor = new (opts: Record<string, unknown>) => BittorrentDht;

const require = createRequire(import.meta.url);
const DHT = require('bittorrent-dht') as DhtCtor;

const SPKI = Buffer.from('302a300506032b6570032100', 'hex');
const verify = (sig: Buffer, msg: Buffer, k: Buffer): boolean => {
  try {
    return edVerify(null, msg, createPublicKey({ key: Buffer.concat([SPKI, k]), format: 'der', type: 'spki' }), sig);
  } catch {
    return false;
  }
};

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result in ${ms} ms`)), ms);
    }),
  ]);
}

async function startBd(bootstrap: string[]): Promise<BittorrentDht> {
  // `bootstrap` is never left to its default (public routers): an explicit loopback list, possibly empty.
  const dht = new DHT({ bootstrap, verify, host: '127.0.0.1', timeBucketOutdated: 60_000 });
  dht.on('error', () => {});
  dht.on('warning', () => {});
  await new Promise<void>((resolve) => dht.listen(0, '127.0.0.1', resolve));
  if (bootstrap.length > 0) await new Promise<void>((resolve) => (dht as unknown as { ready?: boolean }).ready === true ? resolve() : dht.once('ready', () => resolve()));
  return dht;
}

// Network safety net: every datagram this process sends must go to loopback.
const sentTo = new Set<string>();
const originalSend = UdpSocket.prototype.send;
UdpSocket.prototype.send = function (this: UdpSocket, ...args: unknown[]) {
  const host = args.filter((a): a is string => typeof a === 'string').pop() ?? '';
  sentTo.add(host);
  if (!(host.startsWith('127.') || host === '::1')) throw new Error(`refusing to send a datagram to ${host}`);
  return (originalSend as (...a: unknown[]) => void).apply(this, args);
} as typeof UdpSocket.prototype.send;

test('interop: 10 bittorrent-dht + 10 peerkit nodes on loopback: peers and BEP 44 items cross both ways', { timeout: 120_000 }, async () => {
  const pk: DhtNode[] = [];
  const bd: BittorrentDht[] = [];
  try {
    // Seeds: one of each, knowing each other.
    pk.push(await DhtNode.start({ dht: { timeoutMs: 500 } }));
    const pkSeed = `127.0.0.1:${pk[0]!.address.port}`;
    bd.push(await startBd([pkSeed]));
    const bdSeed = `127.0.0.1:${bd[0]!.address().port}`;
    for (let i = 1; i < 10; i++) {
      bd.push(await startBd([pkSeed, bdSeed]));
      const n = await DhtNode.start({ dht: { timeoutMs: 500 } });
      pk.push(n);
      const r = await n.bootstrap([pkSeed, bdSeed]);
      assert.ok(r.responses >= 2);
    }
    for (const n of pk) await n.bootstrap([bdSeed]);
    // Every peerkit table holds bittorrent-dht nodes and the other way round.
    const bdPorts = new Set(bd.map((d) => d.address().port));
    const pkPorts = new Set(pk.map((n) => n.address.port));
    for (const n of pk) {
      const nodes = n.core.closestNodes(n.runtime.clock.now(), n.id, 40);
      assert.ok(nodes.some((x) => bdPorts.has(x.address.port)), 'a peerkit table without bittorrent-dht nodes');
    }
    for (const d of bd) {
      const ports = (d.nodes.toArray() as { port: number }[]).map((x) => x.port);
      assert.ok(ports.some((p) => pkPorts.has(p)), 'a bittorrent-dht table without peerkit nodes');
    }

    // bittorrent-dht announces, peerkit finds.
    const ih1 = createHash('sha1').update('interop-1').digest();
    const pkHeard: Endpoint[] = [];
    for (const n of pk) n.onEvent((e) => e.type === 'announce' && e.infoHash.equals(ih1) && pkHeard.push(e.peer));
    await withTimeout(new Promise<void>((resolve, reject) => bd[3]!.announce(ih1, 6001, (err) => (err ? reject(err) : resolve()))), 30_000, 'bittorrent-dht announce');
    assert.ok(pkHeard.length > 0, 'no peerkit node stored the bittorrent-dht announce');
    const found = await pk[6]!.getPeers(ih1);
    assert.ok(found.peers.some((p) => p.host === '127.0.0.1' && p.port === 6001), `peerkit did not find the peer: ${JSON.stringify(found.peers)}`);

    // peerkit announces, bittorrent-dht finds.
    const ih2 = createHash('sha1').update('interop-2').digest();
    let bdHeard = 0;
    for (const d of bd) d.on('announce_peer', (ih: Buffer) => ih.equals(ih2) && bdHeard++);
    const ann = await pk[2]!.announce(ih2, 6002);
    assert.ok(ann.ok && ann.stored >= 4);
    assert.ok(bdHeard > 0, 'no bittorrent-dht node stored the peerkit announce');
    const bdPeers: BdPeer[] = [];
    const onPeer = (peer: BdPeer, ih: Buffer): void => void (ih.equals(ih2) && bdPeers.push(peer));
    bd[8]!.on('peer', onPeer);
    await withTimeout(new Promise<void>((resolve, reject) => bd[8]!.lookup(ih2, (err) => (err ? reject(err) : resolve()))), 30_000, 'bittorrent-dht lookup');
    assert.ok(bdPeers.some((p) => p.host === '127.0.0.1' && p.port === 6002), `bittorrent-dht did not find the peer: ${JSON.stringify(bdPeers)}`);

    // BEP 44 immutable: bittorrent-dht puts, peerkit gets; and back.
    const bdValue = Buffer.from('put by bittorrent-dht');
    const bdHash = await withTimeout(new Promise<Buffer>((resolve, reject) => bd[1]!.put({ v: bdValue }, (err, hash) => (err ? reject(err) : resolve(hash)))), 30_000, 'bittorrent-dht put');
    assert.ok(bdHash.equals(immutableTarget(encode(bdValue))));
    const got = await pk[4]!.get(bdHash);
    assert.ok(got.ok && got.item!.value.equals(encode(bdValue)), 'peerkit did not get the immutable item');
    const pkValue = encode({ from: 'peerkit', n: 42 });
    assert.ok((await pk[7]!.put({ value: pkValue })).ok);
    const bdGot = await withTimeout(new Promise<BdItem | null>((resolve, reject) => bd[9]!.get(immutableTarget(pkValue), { cache: false }, (err, res) => (err ? reject(err) : resolve(res)))), 30_000, 'bittorrent-dht get');
    assert.ok(bdGot !== null && encode(bdGot.v as never).equals(pkValue), 'bittorrent-dht did not get the immutable item');

    // BEP 44 mutable with salt: bittorrent-dht puts (signing with node:crypto), peerkit gets; and back.
    const seedA = Buffer.alloc(32, 0x0a);
    const keyA = keyPairFromSeed(seedA);
    const salt = Buffer.from('interop');
    await withTimeout(
      new Promise<void>((resolve, reject) =>
        bd[2]!.put({ v: Buffer.from('mutable from bittorrent-dht'), k: keyA.publicKey, seq: 3, salt, sign: (buf) => edSign(null, buf, keyA.privateKey) }, (err) => (err ? reject(err) : resolve())),
      ),
      30_000,
      'bittorrent-dht mutable put',
    );
    const mget = await pk[5]!.get(mutableTarget(keyA.publicKey, salt), salt);
    assert.ok(mget.ok, 'peerkit did not get the mutable item');
    assert.equal(mget.item!.seq, 3);
    assert.ok(mget.item!.value.equals(encode(Buffer.from('mutable from bittorrent-dht'))));

    const seedB = Buffer.alloc(32, 0x0b);
    const keyB = keyPairFromSeed(seedB);
    assert.ok((await pk[3]!.putMutable(seedB, encode('mutable from peerkit'), 7, { salt })).ok);
    const bdM = await withTimeout(new Promise<BdItem | null>((resolve, reject) => bd[6]!.get(mutableTarget(keyB.publicKey, salt), { salt, cache: false }, (err, res) => (err ? reject(err) : resolve(res)))), 30_000, 'bittorrent-dht mutable get');
    assert.ok(bdM !== null, 'bittorrent-dht did not get the mutable item');
    assert.equal(bdM.seq, 7);
    assert.ok(bdM.k!.equals(keyB.publicKey));
    assert.equal(Buffer.from(bdM.v).toString(), 'mutable from peerkit');
    assert.deepEqual([...sentTo].filter((h) => !h.startsWith('127.')), []);
  } finally {
    await Promise.all(pk.map((n) => n.close()));
    await Promise.all(bd.map((d) => new Promise<void>((resolve) => d.destroy(resolve))));
  }
});
