/**
 * The client on the DHT (BEP 5), on 127.0.0.1 only: a trackerless magnet
 * link (the infohash alone: no tracker, no peer address) finds its seeder
 * through a small DHT, fetches the metadata from it (BEP 9) and completes;
 * the seeder announced itself. Peers exchange BEP 5 `port` messages, so a
 * client whose DHT node knows nobody learns its peer's node (and the peer
 * its). A private torrent stays off the DHT.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '../src/client/client.js';
import type { Torrent } from '../src/client/torrent.js';
import { DhtNode } from '../src/dht/index.js';
import { createTorrent } from '../src/files/create-torrent.js';
import { buildMagnet } from '../src/codec/magnet.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../bin/peerkit.js', import.meta.url));

const fast = { timeoutMs: 300 };

function content(bytes: number, seed: string): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 32) createHash('sha256').update(`${seed}:${i}`).digest().copy(out, i);
  return out;
}

function completes(t: Torrent, ms: number): Promise<void> {
  if (t.isComplete) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`did not complete in ${ms} ms: ${JSON.stringify({ stats: t.stats(), dht: t.dht })}`)), ms);
    t.on('complete', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function waitFor(what: string, ms: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('a trackerless magnet link finds its seeder through the DHT, gets the metadata from it and completes; private torrents stay off the DHT', { timeout: 30_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-client-dht-'));
  const nodes: DhtNode[] = [];
  const clients: Client[] = [];
  try {
    // A DHT of 6 plain nodes joined through the first.
    for (let i = 0; i < 6; i++) nodes.push(await DhtNode.start({ dht: fast }));
    const boot = `127.0.0.1:${nodes[0]!.address.port}`;
    for (const n of nodes.slice(1)) await n.bootstrap([boot]);

    const seedDir = join(dir, 'seed');
    await mkdir(seedDir);
    const bytes = content(700_000, 'dht');
    await writeFile(join(seedDir, 'dht.bin'), bytes);
    const made = await createTorrent(join(seedDir, 'dht.bin'), { pieceLength: 32 * 1024 });
    assert.equal(made.metainfo.announceList.length, 0, 'no tracker');

    const seeder = await Client.create({ port: 0, host: '127.0.0.1', dht: { bootstrap: [boot], options: fast } });
    clients.push(seeder);
    const s = await seeder.add(made.metainfo, { dir: seedDir });
    assert.equal(s.isComplete, true);
    // The seeder's announce reached nodes of the DHT.
    await waitFor('the seeder announced', 10_000, () => (s.dht?.stored ?? 0) > 0);
    const found = await nodes[3]!.getPeers(made.metainfo.infoHash);
    assert.deepEqual(found.peers, [{ host: '127.0.0.1', port: seeder.port }], 'a plain node finds the seeder');

    const leecher = await Client.create({ port: 0, host: '127.0.0.1', dht: { bootstrap: [boot], options: fast } });
    clients.push(leecher);
    const magnet = buildMagnet({ infoHash: made.metainfo.infoHash });
    assert.doesNotMatch(magnet, /tr=|x\.pe=/);
    const out = join(dir, 'out');
    const t = await leecher.add(magnet, { dir: out, seed: false });
    await completes(t, 20_000);
    assert.ok((await readFile(join(out, 'dht.bin'))).equals(bytes), 'the copy matches');
    assert.equal(t.metainfo?.infoHashHex, made.metainfo.infoHashHex);
    assert.ok((t.dht?.peersFound ?? 0) >= 1, 'the peer came from the DHT');

    // BEP 5 port messages: a client whose DHT node joined nothing (no bootstrap) meets the seeder
    // directly; each side's port message makes the other ping its node, which then sits in its table.
    const loner = await Client.create({ port: 0, host: '127.0.0.1', dht: { options: fast } });
    clients.push(loner);
    const knows = (a: Client, b: Client): boolean => a.dht!.core.exportNodes().some((n) => n.port === b.dht!.address.port);
    assert.ok(!knows(loner, seeder) && !knows(seeder, loner));
    const direct = await loner.add(made.metainfo, { dir: join(dir, 'loner'), seed: false, peers: [{ host: '127.0.0.1', port: seeder.port }] });
    await completes(direct, 10_000);
    await waitFor('the DHT nodes to know each other through port messages', 5000, () => knows(loner, seeder) && knows(seeder, loner));

    // A private torrent: never announced on the DHT.
    const privDir = join(dir, 'priv');
    await mkdir(privDir);
    await writeFile(join(privDir, 'p.bin'), content(100_000, 'private'));
    const priv = await createTorrent(join(privDir, 'p.bin'), { pieceLength: 32 * 1024, private: true });
    const p = await seeder.add(priv.metainfo, { dir: privDir });
    assert.equal(p.dht, undefined, 'no DHT announcer for a private torrent');
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual((await nodes[2]!.getPeers(priv.metainfo.infoHash)).peers, [], 'not on the DHT');
  } finally {
    for (const c of clients) await c.close();
    await Promise.all(nodes.map((n) => n.close()));
    await rm(dir, { recursive: true, force: true });
  }
});

test('CLI: `peerkit seed --bootstrap` announces on the DHT and `peerkit get MAGNET --bootstrap` downloads through it', { timeout: 40_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-cli-dht-'));
  const nodes: DhtNode[] = [];
  const children: ChildProcess[] = [];
  try {
    for (let i = 0; i < 4; i++) nodes.push(await DhtNode.start({ dht: fast }));
    const boot = `127.0.0.1:${nodes[0]!.address.port}`;
    for (const n of nodes.slice(1)) await n.bootstrap([boot]);
    const seedDir = join(dir, 'seed');
    await mkdir(seedDir);
    const bytes = content(300_000, 'cli-dht');
    await writeFile(join(seedDir, 'c.bin'), bytes);
    const made = await createTorrent(join(seedDir, 'c.bin'), { pieceLength: 32 * 1024 });
    await writeFile(join(dir, 'c.torrent'), made.torrent);
    const seeder = spawn(process.execPath, [bin, 'seed', join(dir, 'c.torrent'), '-d', seedDir, '--port', '0', '--host', '127.0.0.1', '--dht-port', '0', '--bootstrap', boot, '-q'], { stdio: 'ignore' });
    children.push(seeder);
    // The seeder is on the DHT once a plain node finds it.
    const deadline = Date.now() + 15_000;
    for (;;) {
      if ((await nodes[2]!.getPeers(made.metainfo.infoHash)).peers.length > 0) break;
      assert.ok(Date.now() < deadline, 'the seeder announced on the DHT');
      await new Promise((r) => setTimeout(r, 200));
    }
    const out = join(dir, 'out');
    const get = spawn(process.execPath, [bin, 'get', buildMagnet({ infoHash: made.metainfo.infoHash }), '-o', out, '--port', '0', '--host', '127.0.0.1', '--dht-port', '0', '--bootstrap', boot, '--timeout', '20', '-q'], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(get);
    let stderr = '';
    get.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => get.once('exit', (c) => resolve(c)));
    assert.equal(code, 0, `get exited ${code}: ${stderr}`);
    assert.ok((await readFile(join(out, 'c.bin'))).equals(bytes));
    const state = JSON.parse(await readFile(join(out, '.peerkit', 'dht.json'), 'utf8')) as { nodes: unknown[] };
    assert.ok(state.nodes.length >= 1, 'the routing table was saved for the next run');
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await Promise.all(nodes.map((n) => n.close()));
    await rm(dir, { recursive: true, force: true });
  }
});
