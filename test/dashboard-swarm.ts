/**
 * A demo-like swarm on 127.0.0.1 for the dashboard tests: a tracker, a
 * seeder and leechers, each its own Client, and a dashboard showing them
 * all. Leechers are added on demand, so a test can watch them appear.
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
import { ClientSource } from '../src/dashboard/client-source.js';
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
  let tracker: TrackerHandle | undefined;
  let dashboard: DashboardHandle | undefined;
  const close = async (): Promise<void> => {
    await Promise.all(clients.map((c) => c.close()));
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
    const seeder = await Client.create({ port: 0, host: '127.0.0.1', uploadLimit: o.seederUploadLimit ?? 0 });
    clients.push(seeder);
    await seeder.add(metainfo, { dir: seedDir });
    dashboard = await startDashboard({ port: 0, token: o.token, intervalMs: o.intervalMs ?? 250, sources: [new TrackerSource('tracker', tracker), new ClientSource('seeder', seeder)] });
    const leechers: Torrent[] = [];
    const d = dashboard;
    return {
      work,
      tracker,
      seeder,
      metainfo,
      torrent,
      dashboard: d,
      leechers,
      async addLeecher(clientName?: string, magnet = false): Promise<Torrent> {
        const c = await Client.create({ port: 0, host: '127.0.0.1', clientName });
        clients.push(c);
        d.addSource(new ClientSource(`leecher ${leechers.length + 1}`, c));
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
