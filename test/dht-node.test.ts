/**
 * DhtNode on the real runtime, on 127.0.0.1 only: a small network that
 * bootstraps through one node, announces, finds peers, stores BEP 44 items,
 * and a node that restarts from its state file with no bootstrap node at all.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DhtNode, parseHostPort } from '../src/dht/index.js';
import { encode } from '../src/codec/bencode.js';
import { immutableTarget, keyPairFromSeed, mutableTarget } from '../src/core/dht/bep44.js';

const fast = { timeoutMs: 300 };

test('DhtNode: loopback network of 8, announce/get_peers, put/get, restart from the state file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-dht-'));
  const nodes: DhtNode[] = [];
  try {
    for (let i = 0; i < 8; i++) nodes.push(await DhtNode.start({ dht: fast, stateFile: i === 7 ? join(dir, 'state.json') : undefined }));
    const first = nodes[0]!.address;
    for (const n of nodes.slice(1)) await n.bootstrap([`${first.host}:${first.port}`]);
    await nodes[0]!.bootstrap([]);
    for (const n of nodes) assert.ok(n.core.stats(n.runtime.clock.now()).nodes >= 4, 'tables filled');

    const ih = Buffer.alloc(20, 0x42);
    const a = await nodes[2]!.announce(ih, 7777);
    assert.ok(a.ok && a.stored >= 3);
    const p = await nodes[5]!.getPeers(ih);
    assert.deepEqual(p.peers, [{ host: '127.0.0.1', port: 7777 }]);

    const value = encode('stored on loopback');
    assert.ok((await nodes[1]!.put({ value })).ok);
    const got = await nodes[6]!.get(immutableTarget(value));
    assert.ok(got.ok && got.item!.value.equals(value));

    const seed = Buffer.alloc(32, 1);
    const put = await nodes[3]!.putMutable(seed, encode({ n: 1 }), 1);
    assert.ok(put.ok);
    const k = (await nodes[4]!.get(mutableTarget(keyPairFromSeed(seed).publicKey))).item;
    assert.ok(k !== undefined && k.seq === 1);

    // Restart node 7 from its state file: the same id, and a table rebuilt from the saved nodes alone.
    const id7 = nodes[7]!.id;
    await nodes[7]!.close();
    const saved = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as { id: string; nodes: unknown[] };
    assert.equal(saved.id, id7.toString('hex'));
    assert.ok(saved.nodes.length >= 4);
    nodes[7] = await DhtNode.start({ dht: fast, stateFile: join(dir, 'state.json') });
    assert.ok(nodes[7].id.equals(id7));
    assert.equal(nodes[7].core.stats(0).nodes, 0, 'saved nodes are not trusted before they answer');
    const r = await nodes[7].bootstrap([]);
    assert.ok(r.responses >= 4);
    assert.ok(nodes[7].core.stats(nodes[7].runtime.clock.now()).nodes >= 4);
  } finally {
    await Promise.all(nodes.map((n) => n.close()));
    await rm(dir, { recursive: true, force: true });
  }
});

test('DhtNode: saves that overlap (a periodic one still writing when close() saves) run in turn and all succeed', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-dht-'));
  try {
    const node = await DhtNode.start({ stateFile: join(dir, 's.json'), saveIntervalMs: 0 });
    await Promise.all([node.save(), node.save(), node.save(), node.close()]);
    const saved = JSON.parse(await readFile(join(dir, 's.json'), 'utf8')) as { id: string };
    assert.equal(saved.id, node.id.toString('hex'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('DhtNode: close() resolves operations still running (ok: false); the state file is also saved periodically', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-dht-'));
  try {
    const silent = await DhtNode.start({});
    const node = await DhtNode.start({ dht: { timeoutMs: 60_000 }, stateFile: join(dir, 's.json'), saveIntervalMs: 50 });
    const pending = node.ping(silent.address); // answered... but we close first
    await silent.close();
    const lookup = node.bootstrap([{ host: '127.0.0.1', port: 9 }]); // nobody there: waits for its timeout
    await new Promise((r) => setTimeout(r, 150));
    const saved = JSON.parse(await readFile(join(dir, 's.json'), 'utf8')) as { id: string };
    assert.equal(saved.id, node.id.toString('hex'), 'saved by the timer, before any close');
    await node.close();
    const [p, l] = await Promise.all([pending, lookup]);
    assert.equal(typeof p.ok, 'boolean');
    assert.equal(l.ok, false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('DhtNode over IPv6 (::1): nodes6 lists, 18-byte compact peers', async () => {
  const nodes: DhtNode[] = [];
  try {
    for (let i = 0; i < 6; i++) nodes.push(await DhtNode.start({ host: '::1', dht: fast }));
    const first = `[::1]:${nodes[0]!.address.port}`;
    for (const n of nodes.slice(1)) assert.ok((await n.bootstrap([first])).responses >= 1);
    const ih = Buffer.alloc(20, 7);
    assert.ok((await nodes[2]!.announce(ih, 4444)).stored >= 3);
    const r = await nodes[5]!.getPeers(ih);
    assert.deepEqual(r.peers, [{ host: '::1', port: 4444 }]);
    assert.ok(r.nodes.every((n) => n.address.host === '::1'));
  } finally {
    await Promise.all(nodes.map((n) => n.close()));
  }
});

test('parseHostPort', () => {
  assert.deepEqual(parseHostPort('router.bittorrent.com:6881'), { host: 'router.bittorrent.com', port: 6881 });
  assert.deepEqual(parseHostPort('[::1]:5'), { host: '::1', port: 5 });
  assert.throws(() => parseHostPort('nope'));
  assert.throws(() => parseHostPort('h:0'));
});
