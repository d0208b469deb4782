/**
 * A demo-like swarm on 127.0.0.1 for the dashboard tests: a tracker, a
 * seeder and leechers, each its own Client, optionally a small DHT of plain
 * nodes that every client joins, and a dashboard showing them all. Leechers are added on demand, so a test can watch them appear.
 * Not a test file itself (npm test runs *.test.js only).
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '../src/client/client.js';
import type { Torrent } from '../src/client/torrent.js';
import { buildMagnet } from '../src/codec/magnet.js';
import type { Metainfo } from '../src/codec/metainfo.js';
import { clientSources } from '../src/dashboard/client-source.js';
import { DhtSource } from '../src/dashboard/dht-source.js';
import { DhtNode } from '../src/dht/node.js';
import { startDashboard, type DashboardHandle } from '../src/dashboard/server.js';
import { TrackerSource } from '../src/dashboard/tracker-source.js';
import { createTorrent } from '../src/files/create-torrent.js';
import { startTracker, type TrackerHandle } from '../src/tracker/index.js';

export interface SwarmOptions {
  readonly bytes: number;
  /** The seeder's upload limit (bytes/s), so the transfer lasts long enough to watch. 0: none. */
  readonly seederUploadLimit?: number;
  readonly token?: string;
  readonly intervalMs?: number;
  /** Plain DHT nodes to start (sources `dht 1`...); every client then runs a DHT node joined through them (source `<client> dht`). Default 0: no DHT. */
  readonly dhtNodes?: number;
}

export interface Swarm {
  readonly work: string;
  readonly tracker: TrackerHandle;
  readonly seeder: Client;
  readonly metainfo: Metainfo;
  /** The .torrent file's bytes. */
  readonly torrent: Buffer;
  readonly dashboard: DashboardHandle;
  readonly leechers: Torrent[];
  /** The leechers' clients, in the same order. */
  readonly leecherClients: Client[];
  readonly dhtNodes: readonly DhtNode[];
  /**
   * Adds a leecher (its own Client and a dashboard source `leecher N`);
   * `clientName` is what it tells peers it is; `magnet` starts it from a
   * magnet link (metadata from peers first).
   */
  addLeecher(clientName?: string, magnet?: boolean): Promise<Torrent>;
  close(): Promise<void>;
}

/** Deterministic content: SHA-256 in counter mode. */
function content(bytes: number): Buffer {
  const b = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i += 32) createHash('sha256').update(`dash:${i}`).digest().copy(b, i, 0, Math.min(32, bytes - i));
  return b;
}

export async function startSwarm(o: SwarmOptions): Promise<Swarm> {
  const work = await mkdtemp(join(tmpdir(), 'peerkit-dash-'));
  const clients: Client[] = [];
  const dhtNodes: DhtNode[] = [];
  let tracker: TrackerHandle | undefined;
  let dashboard: DashboardHandle | undefined;
  const close = async (): Promise<void> => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(dhtNodes.map((n) => n.close()));
    await dashboard?.close();
    await tracker?.close();
    await rm(work, { recursive: true, force: true });
  };
  try {
    tracker = await startTracker({ host: '127.0.0.1', http: 0, udp: 0 });
    const announceUrl = tracker.httpUrl!;
    const seedDir = join(work, 'seeder');
    await mkdir(seedDir);
    const file = join(seedDir, 'dash.bin');
    await writeFile(file, content(o.bytes));
    const { metainfo, torrent } = await createTorrent(file, { announce: [[announceUrl]], pieceLength: 16 * 1024 });
    for (let i = 0; i < (o.dhtNodes ?? 0); i++) dhtNodes.push(await DhtNode.start({ host: '127.0.0.1', port: 0, dht: { timeoutMs: 500 } }));
    const boot = dhtNodes.slice(0, 2).map((n) => `127.0.0.1:${n.address.port}`);
    await Promise.all(dhtNodes.slice(1).map((n) => n.bootstrap([boot[0]!])));
    if (dhtNodes.length > 0) await dhtNodes[0]!.bootstrap(boot.slice(1));
    const dht = dhtNodes.length > 0 ? { dht: { bootstrap: boot, options: { timeoutMs: 500 } } } : {};
    const seeder = await Client.create({ port: 0, host: '127.0.0.1', uploadLimit: o.seederUploadLimit ?? 0, ...dht });
    clients.push(seeder);
    await seeder.add(metainfo, { dir: seedDir });
    dashboard = await startDashboard({
      port: 0,
      token: o.token,
      intervalMs: o.intervalMs ?? 250,
      sources: [new TrackerSource('tracker', tracker), ...dhtNodes.map((n, i) => new DhtSource(`dht ${i + 1}`, n)), ...clientSources('seeder', seeder)],
    });
    const leechers: Torrent[] = [];
    const leecherClients: Client[] = [];
    const d = dashboard;
    return {
      work,
      tracker,
      seeder,
      metainfo,
      torrent,
      dashboard: d,
      leechers,
      leecherClients,
      dhtNodes,
      async addLeecher(clientName?: string, magnet = false): Promise<Torrent> {
        const c = await Client.create({ port: 0, host: '127.0.0.1', clientName, ...dht });
        clients.push(c);
        leecherClients.push(c);
        for (const src of clientSources(`leecher ${leechers.length + 1}`, c)) d.addSource(src);
        const source = magnet ? buildMagnet({ infoHash: metainfo.infoHash, name: metainfo.name, trackers: [announceUrl] }) : metainfo;
        const t = await c.add(source, { dir: join(work, `leecher-${leechers.length + 1}`), trackerMinIntervalMs: 1000 });
        leechers.push(t);
        return t;
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Resolves when the torrent is complete; rejects after `ms`. */
export function completes(t: Torrent, ms = 60_000): Promise<void> {
  if (t.isComplete) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${t.name} not complete after ${ms} ms`)), ms);
    t.on('complete', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
