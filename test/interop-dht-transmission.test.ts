/**
 * Transmission 3.00's DHT pointed at our own nodes: a Transmission leecher
 * finds a peerkit seeder through the DHT alone (a .torrent with no tracker,
 * no peer address given), then downloads from it.
 *
 * What makes it possible, and safe:
 *  - Transmission has no setting for DHT bootstrap nodes, but it reads a file
 *    `dht.bootstrap` in its config folder (one "HOST PORT" per line) when its
 *    saved table (dht.dat) does not give it enough good nodes. That file names
 *    a peerkit node here.
 *  - Only when that is still not enough (fewer than ~9 nodes, some of them
 *    good) does it fall back to a DNS lookup of dht.transmissionbt.com, every
 *    15 s. So the test gives it a DHT of 12 peerkit nodes, and runs it in a
 *    network namespace with no route out of the test subnet: even a fallback
 *    lookup could not leave the namespace.
 *  - Observed (message level 2): "DHT: Attempting manual bootstrap" at start,
 *    "Starting IPv4 DHT announce (poor, 10 nodes)" ~22 s later, the seeder
 *    connected ~5 s after that, and its own announce_peer reached our nodes a
 *    few seconds after completion. No fallback lookup was logged.
 *  - It will not talk to peers on 127.0.0.0/8 (see harness/transmission.ts),
 *    hence the namespace; the DHT nodes and the seeder listen on the root
 *    namespace's address on the test bridge.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '../src/client/client.js';
import { DhtNode } from '../src/dht/index.js';
import { createTorrent } from '../src/files/create-torrent.js';
import { createNetwork } from './harness/netns.js';
import { startTransmission } from './harness/transmission.js';
import { liveProcesses } from './harness/proc.js';

function content(bytes: number, seed: string): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 32) createHash('sha256').update(`${seed}:${i}`).digest().copy(out, i);
  return out;
}

test('Transmission 3.00 finds a peerkit seeder through the DHT alone (dht.bootstrap naming a peerkit node) and downloads from it', { timeout: 90_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'peerkit-dht-tx-'));
  const net = await createNetwork({ hosts: 1 });
  const nodes: DhtNode[] = [];
  let client: Client | undefined;
  let tx: Awaited<ReturnType<typeof startTransmission>> | undefined;
  try {
    const [host] = net.hosts;
    const addr = net.rootAddress;
    assert.ok(host && addr);
    const fast = { timeoutMs: 500 };
    for (let i = 0; i < 12; i++) nodes.push(await DhtNode.start({ host: addr, dht: fast }));
    const boot = `${addr}:${nodes[0]!.address.port}`;
    for (const n of nodes.slice(1)) await n.bootstrap([boot]);

    const seedDir = join(root, 'seed');
    mkdirSync(seedDir);
    const bytes = content(1_200_000, 'tx-dht');
    writeFileSync(join(seedDir, 'tx-dht.bin'), bytes);
    const made = await createTorrent(join(seedDir, 'tx-dht.bin'), { pieceLength: 64 * 1024 });
    assert.equal(made.metainfo.announceList.length, 0, 'no tracker in the torrent');
    const torrentFile = join(root, 'tx-dht.torrent');
    writeFileSync(torrentFile, made.torrent);

    client = await Client.create({ port: 0, host: addr, dht: { bootstrap: [boot], options: fast } });
    const seed = await client.add(made.metainfo, { dir: seedDir });
    const deadline = Date.now() + 15_000;
    while ((seed.dht?.stored ?? 0) === 0) {
      assert.ok(Date.now() < deadline, 'the seeder announced on the DHT');
      await new Promise((r) => setTimeout(r, 100));
    }

    const configDir = join(root, 'tx-config');
    mkdirSync(configDir);
    // Every node of our DHT, so its table is good enough at once and it never wants its fallback router.
    writeFileSync(join(configDir, 'dht.bootstrap'), nodes.map((n) => `${n.address.host} ${n.address.port}\n`).join(''));
    const out = join(root, 'tx-out');
    tx = await startTransmission({
      mode: 'leech',
      torrent: torrentFile,
      dir: out,
      netns: host,
      allowedHosts: net.addresses,
      configDir,
      settings: { 'dht-enabled': true },
      messageLevel: 2,
      logFile: join(root, 'tx.log'),
    });
    await tx.waitForComplete(70_000);
    assert.ok(readFileSync(join(out, 'tx-dht.bin')).equals(bytes), 'the copy matches');
    assert.ok(seed.stats().uploaded >= bytes.length, 'the data came from the peerkit seeder');
    // Transmission's own DHT node joined ours: it announced the torrent, so our nodes now name it as a peer.
    // (Its announce_peer follows its get_peers search by some seconds.)
    const until = Date.now() + 20_000;
    for (;;) {
      const found = await nodes[5]!.getPeers(made.metainfo.infoHash);
      if (found.peers.some((p) => p.host === host.address && p.port === tx!.port)) break;
      assert.ok(Date.now() < until, `Transmission announced itself on the DHT: ${JSON.stringify(found.peers)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await tx?.stop().catch(() => undefined);
    await client?.close();
    await Promise.all(nodes.map((n) => n.close()));
    await net.stop();
    rmSync(root, { recursive: true, force: true });
  }
  assert.deepEqual(liveProcesses().map((p) => p.pid), [], 'every child process has exited');
});
