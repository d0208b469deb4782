/**
 * The client with the DHT, on 127.0.0.1: a magnet link with no tracker and
 * no peer finds a seeder through the DHT alone, fetches the metadata (BEP 9)
 * and completes; and a peer that sets the DHT reserved bit is sent a BEP 5
 * PORT message with the DHT's UDP port.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '../src/client/client.js';
import { DhtNode } from '../src/dht/index.js';
import { createTorrent } from '../src/files/create-torrent.js';
import { buildMagnet } from '../src/codec/magnet.js';
import { encodeHandshake, MessageReader } from '../src/codec/peer-wire.js';

test('a trackerless magnet link completes through the DHT; peers that speak DHT get a PORT message', { timeout: 90_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-client-dht-'));
  const dhts: DhtNode[] = [];
  const clients: Client[] = [];
  try {
    for (let i = 0; i < 4; i++) dhts.push(await DhtNode.start({ dht: { timeoutMs: 500 } }));
    const [router, seedDht, leechDht, other] = dhts as [DhtNode, DhtNode, DhtNode, DhtNode];
    const via = `127.0.0.1:${router.address.port}`;
    for (const d of [seedDht, leechDht, other]) await d.bootstrap([via]);

    const seedDir = join(dir, 'seed');
    await mkdir(seedDir);
    const data = randomBytes(1024 * 1024 + 777);
    await writeFile(join(seedDir, 'file.bin'), data);
    const { metainfo } = await createTorrent(join(seedDir, 'file.bin'), { pieceLength: 32 * 1024 });
    const seeder = await Client.create({ port: 0, host: '127.0.0.1', dht: seedDht });
    clients.push(seeder);
    await seeder.add(metainfo, { dir: seedDir });

    // The seeder's announce lands on the DHT.
    let found = false;
    for (let i = 0; i < 50 && !found; i++) {
      const r = await other.getPeers(metainfo.infoHash);
      found = r.peers.some((p) => p.port === seeder.port);
      if (!found) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(found, 'the seeder announced itself on the DHT');

    const leecher = await Client.create({ port: 0, host: '127.0.0.1', dht: leechDht });
    clients.push(leecher);
    const magnet = buildMagnet({ infoHash: metainfo.infoHash }); // no tracker, no peer
    const t = await leecher.add(magnet, { dir: join(dir, 'leech') });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not complete: ${JSON.stringify(t.stats())}`)), 60_000);
      t.on('complete', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    assert.ok((await readFile(join(dir, 'leech', 'file.bin'))).equals(data));

    // A raw peer with the DHT bit set receives PORT <seeder's DHT port>.
    const port = await new Promise<number>((resolve, reject) => {
      const sock = connect(seeder.port, '127.0.0.1');
      const reader = new MessageReader({ expectHandshake: true });
      const timer = setTimeout(() => reject(new Error('no PORT message')), 10_000);
      sock.on('connect', () => sock.write(encodeHandshake({ infoHash: metainfo.infoHash, peerId: randomBytes(20), reserved: { dht: true, fast: true } })));
      sock.on('error', reject);
      sock.on('data', (d: Buffer) => {
        reader.push(d);
        for (let item = reader.next(); item !== undefined; item = reader.next()) {
          if (item.type === 'port') {
            clearTimeout(timer);
            sock.destroy();
            resolve(item.port);
          }
        }
      });
    });
    assert.equal(port, seedDht.address.port);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(dhts.map((d) => d.close()));
    await rm(dir, { recursive: true, force: true });
  }
});
