/**
 * The client end to end on 127.0.0.1: a seeder and leechers in this process,
 * connected directly (no tracker): a single-file torrent with a short last
 * piece, a multi-file torrent, and a magnet link (metadata over BEP 9).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '../src/client/client.js';
import type { Torrent } from '../src/client/torrent.js';
import { createTorrent } from '../src/files/create-torrent.js';
import { buildMagnet } from '../src/codec/magnet.js';

function completes(t: Torrent, ms = 30_000): Promise<void> {
  if (t.isComplete) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${t.name} did not complete in ${ms} ms: ${JSON.stringify(t.stats())}`)), ms);
    t.on('complete', () => {
      clearTimeout(timer);
      resolve();
    });
    t.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

async function withClients(n: number, fn: (clients: Client[], dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-loop-'));
  const clients: Client[] = [];
  try {
    for (let i = 0; i < n; i++) clients.push(await Client.create({ port: 0, host: '127.0.0.1' }));
    await fn(clients, dir);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await rm(dir, { recursive: true, force: true });
  }
}

test('single file with a short last piece: seeder to two leechers, byte for byte', async () => {
  await withClients(3, async ([seeder, a, b], dir) => {
    const seedDir = join(dir, 'seed');
    await mkdir(seedDir);
    const data = randomBytes(3 * 1024 * 1024 + 12_345);
    await writeFile(join(seedDir, 'data.bin'), data);
    const { metainfo } = await createTorrent(join(seedDir, 'data.bin'), { pieceLength: 64 * 1024 });
    const s = await seeder!.add(metainfo, { dir: seedDir });
    assert.equal(s.isComplete, true, 'the seeder verified its data');
    const peers = [{ host: '127.0.0.1', port: seeder!.port }];
    const ta = await a!.add(metainfo, { dir: join(dir, 'a'), peers });
    const tb = await b!.add(metainfo, { dir: join(dir, 'b'), peers: [...peers, { host: '127.0.0.1', port: a!.port }] });
    await Promise.all([completes(ta), completes(tb)]);
    assert.ok((await readFile(join(dir, 'a', 'data.bin'))).equals(data));
    assert.ok((await readFile(join(dir, 'b', 'data.bin'))).equals(data));
    assert.equal(ta.stats().left, 0);
  });
});

test('multi-file torrent, pieces spanning files', async () => {
  await withClients(2, async ([seeder, leecher], dir) => {
    const root = join(dir, 'seed', 'set');
    await mkdir(join(root, 'sub'), { recursive: true });
    const files: [string, Buffer][] = [
      ['a.bin', randomBytes(100_000)],
      ['sub/b.bin', randomBytes(1)],
      ['sub/c.bin', randomBytes(300_000)],
    ];
    for (const [p, d] of files) await writeFile(join(root, p), d);
    const { metainfo } = await createTorrent(root, { pieceLength: 32 * 1024 });
    await seeder!.add(metainfo, { dir: join(dir, 'seed') });
    const t = await leecher!.add(metainfo, { dir: join(dir, 'out'), peers: [{ host: '127.0.0.1', port: seeder!.port }] });
    await completes(t);
    for (const [p, d] of files) assert.ok((await readFile(join(dir, 'out', 'set', p))).equals(d), p);
  });
});

test('magnet link: metadata fetched from the seeder (BEP 9), then the data', async () => {
  await withClients(2, async ([seeder, leecher], dir) => {
    const seedDir = join(dir, 'seed');
    await mkdir(seedDir);
    const data = randomBytes(500_000);
    await writeFile(join(seedDir, 'm.bin'), data);
    const { metainfo } = await createTorrent(join(seedDir, 'm.bin'), { pieceLength: 16 * 1024 });
    await seeder!.add(metainfo, { dir: seedDir });
    const magnet = buildMagnet({ infoHash: metainfo.infoHash, name: 'm.bin', peers: [{ host: '127.0.0.1', port: seeder!.port }] });
    const t = await leecher!.add(magnet, { dir: join(dir, 'out') });
    assert.equal(t.metainfo, undefined);
    const gotMetadata = new Promise<void>((r) => t.on('metadata', () => r()));
    await completes(t);
    await gotMetadata;
    assert.equal(t.infoHashHex, metainfo.infoHashHex);
    assert.equal(t.name, 'm.bin');
    assert.equal(t.stats().pieceCount, metainfo.pieceCount);
    assert.ok((await readFile(join(dir, 'out', 'm.bin'))).equals(data));
  });
});

test('choking settings: the client\'s defaults and a torrent\'s own, merged (1 regular slot from the client, 1 optimistic from the torrent)', { timeout: 30_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-choke-'));
  const clients: Client[] = [];
  try {
    const seedDir = join(dir, 'seed');
    await mkdir(seedDir);
    await writeFile(join(seedDir, 'c.bin'), randomBytes(4 * 1024 * 1024));
    const { metainfo } = await createTorrent(join(seedDir, 'c.bin'), { pieceLength: 64 * 1024 });
    // Slow, so the leechers stay interested for the whole test.
    const seeder = await Client.create({ port: 0, host: '127.0.0.1', uploadLimit: 256 * 1024, choking: { unchokeSlots: 1, optimisticSlots: 0, rechokeIntervalMs: 500 } });
    clients.push(seeder);
    const s = await seeder.add(metainfo, { dir: seedDir, choking: { optimisticSlots: 1 } });
    for (let i = 0; i < 4; i++) {
      const c = await Client.create({ port: 0, host: '127.0.0.1' });
      clients.push(c);
      await c.add(metainfo, { dir: join(dir, `l${i}`), peers: [{ host: '127.0.0.1', port: seeder.port }], pex: false });
    }
    let most = 0;
    let interested = 0;
    const end = Date.now() + 3000;
    while (Date.now() < end) {
      const ps = s.peers();
      interested = Math.max(interested, ps.filter((p) => p.peerInterested).length);
      most = Math.max(most, ps.filter((p) => !p.amChoking).length);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(interested, 4, 'every leecher wanted data from the seeder');
    assert.equal(most, 2, 'one regular and one optimistic slot, never more');
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await rm(dir, { recursive: true, force: true });
  }
});
