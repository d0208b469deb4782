/**
 * Interop: a Transmission 3.00 leecher finds a peerkit seeder through the
 * DHT alone (a magnet link with no tracker and no peer).
 *
 * Transmission's DHT (jech/dht) treats 127.0.0.0/8 as martian, and it wants
 * more than 8 known nodes before it announces or searches, so: Transmission
 * runs in a network namespace of the test network (netns.ts: no route out),
 * and twelve peerkit DHT nodes plus the peerkit seeder run in the root
 * namespace on the bridge address. Transmission is pointed at them with a
 * `dht.bootstrap` file ("host port" lines) in its config folder. While it
 * knows too few nodes it would also try dht.transmissionbt.com: inside the
 * namespace there is no route and no reachable resolver, so that fails
 * locally and nothing leaves the machine.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '../src/client/client.js';
import { DhtNode } from '../src/dht/index.js';
import { buildMagnet } from '../src/codec/magnet.js';
import { createTorrent } from '../src/files/create-torrent.js';
import { createNetwork } from './harness/netns.js';
import { startTransmission } from './harness/transmission.js';

test('Transmission 3.00 (DHT on, in a namespace) downloads a trackerless magnet from a peerkit seeder found through the DHT', { timeout: 300_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'peerkit-tx-dht-'));
  const net = await createNetwork({ hosts: 1 });
  const dhts: DhtNode[] = [];
  let seeder: Client | undefined;
  let tx: Awaited<ReturnType<typeof startTransmission>> | undefined;
  try {
    const [host] = net.hosts;
    const rootAddress = net.rootAddress;
    assert.ok(host !== undefined && rootAddress !== undefined);
    for (let i = 0; i < 12; i++) dhts.push(await DhtNode.start({ host: rootAddress, dht: { timeoutMs: 1000 } }));
    const first = `${rootAddress}:${dhts[0]!.address.port}`;
    for (const d of dhts.slice(1)) await d.bootstrap([first]);
    await dhts[0]!.bootstrap([`${rootAddress}:${dhts[1]!.address.port}`]);

    const seedDir = join(root, 'seed');
    mkdirSync(seedDir);
    const data = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < data.length; i += 32) createHash('sha256').update(`tx-dht:${i}`).digest().copy(data, i);
    writeFileSync(join(seedDir, 'payload.bin'), data);
    const { metainfo } = await createTorrent(join(seedDir, 'payload.bin'), { pieceLength: 64 * 1024 });
    seeder = await Client.create({ port: 0, host: rootAddress, dht: dhts[0]! });
    const s = await seeder.add(metainfo, { dir: seedDir });

    const configDir = join(root, 'tx-config');
    mkdirSync(configDir);
    writeFileSync(join(configDir, 'dht.bootstrap'), dhts.map((d) => `${rootAddress} ${d.address.port}\n`).join(''));
    const dir = join(root, 'leech');
    tx = await startTransmission({
      mode: 'leech',
      torrent: buildMagnet({ infoHash: metainfo.infoHash }),
      dir,
      netns: host,
      allowedHosts: net.addresses,
      configDir,
      settings: { 'dht-enabled': true },
      logFile: join(root, 'tx.log'),
    });
    try {
      await tx.waitForComplete(240_000);
    } catch (e) {
      throw new Error(`${(e as Error).message}\nDHT nodes: ${dhts.map((d) => d.core.stats(d.runtime.clock.now()).nodes).join(',')}; Transmission log:\n${readFileSync(join(root, 'tx.log'), 'utf8').split('\n').filter((l) => /DHT|peer/i.test(l)).slice(-30).join('\n')}`, { cause: e });
    }
    assert.ok(readFileSync(join(dir, 'payload.bin')).equals(data));
    assert.ok(s.stats().uploaded >= data.length);
  } finally {
    await tx?.stop();
    await seeder?.close();
    for (const d of dhts) await d.close();
    await net.stop();
    rmSync(root, { recursive: true, force: true });
  }
});
