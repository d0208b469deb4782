/**
 * Client features over real loopback sockets: --recheck (TorrentOptions.recheck),
 * upload and download rate limits, the global connection limit
 * (ClientOptions.maxConnections) and sequential mode. Rates are checked as
 * upper bounds with generous margins (a loaded machine only makes transfers
 * slower), so nothing here depends on timing going well.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, type ClientOptions } from '../src/client/client.js';
import type { Torrent } from '../src/client/torrent.js';
import { createTorrent } from '../src/files/create-torrent.js';
import type { Metainfo } from '../src/codec/metainfo.js';
import type { Endpoint } from '../src/runtime/contract.js';
import { allowedFastSet } from '../src/codec/peer-wire.js';
import { parseIp } from '../src/codec/ip.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function completes(t: Torrent, ms: number): Promise<void> {
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

async function until(what: () => string, ms: number, cond: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface World {
  readonly dir: string;
  readonly seedDir: string;
  readonly data: Buffer;
  readonly metainfo: Metainfo;
  client(o?: ClientOptions): Promise<Client>;
}

async function withWorld(size: number, pieceLength: number, fn: (w: World) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-feat-'));
  const clients: Client[] = [];
  try {
    const seedDir = join(dir, 'seed');
    await mkdir(seedDir);
    const data = randomBytes(size);
    await writeFile(join(seedDir, 'f.bin'), data);
    const { metainfo } = await createTorrent(join(seedDir, 'f.bin'), { pieceLength });
    await fn({
      dir,
      seedDir,
      data,
      metainfo,
      client: async (o) => {
        const c = await Client.create({ port: 0, host: '127.0.0.1', ...o });
        clients.push(c);
        return c;
      },
    });
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await rm(dir, { recursive: true, force: true });
  }
}

const at = (c: Client): Endpoint => ({ host: '127.0.0.1', port: c.port });

test('--recheck: a piece corrupted on disk after completing is found and fetched again, and only it', { timeout: 60_000 }, async () => {
  await withWorld(2 * MiB + 100, 64 * KiB, async (w) => {
    const seeder = await w.client();
    await seeder.add(w.metainfo, { dir: w.seedDir });
    const out = join(w.dir, 'out');
    const first = await w.client();
    const t1 = await first.add(w.metainfo, { dir: out, peers: [at(seeder)], seed: false });
    await completes(t1, 30_000);
    await first.close();

    // Flip bytes inside piece 7, keeping the file's size (resume data trusts pieces on size alone).
    const bad = 7;
    const fh = await open(join(out, 'f.bin'), 'r+');
    await fh.write(Buffer.alloc(100, 0xaa), 0, 100, bad * w.metainfo.pieceLength + 1000);
    await fh.close();

    // Without --recheck the resume data is trusted: complete at once (which is why --recheck exists).
    const trusting = await w.client();
    const t2 = await trusting.add(w.metainfo, { dir: out, seed: false });
    assert.equal(t2.isComplete, true);
    await trusting.close();

    const rechecker = await w.client();
    const t3 = await rechecker.add(w.metainfo, { dir: out, peers: [at(seeder)], seed: false, recheck: true });
    assert.equal(t3.stats().piecesDone, w.metainfo.pieceCount - 1, 'the hash check found the one bad piece');
    const fetched: number[] = [];
    t3.on('piece', (i) => fetched.push(i));
    await completes(t3, 30_000);
    assert.deepEqual(fetched, [bad], 'only the bad piece was downloaded again');
    assert.equal(t3.stats().downloaded, w.metainfo.pieceLength);
    assert.ok((await readFile(join(out, 'f.bin'))).equals(w.data));
  });
});

test('upload limit: a seeder limited to 256 KiB/s sends no more than that (plus its burst) over a window', { timeout: 60_000 }, async () => {
  await withWorld(16 * MiB, 256 * KiB, async (w) => {
    const rate = 256 * KiB;
    const seeder = await w.client({ uploadLimit: rate });
    const s = await seeder.add(w.metainfo, { dir: w.seedDir });
    const leecher = await w.client();
    const t = await leecher.add(w.metainfo, { dir: join(w.dir, 'out'), peers: [at(seeder)] });
    await until(() => 'the first bytes', 20_000, () => t.stats().downloaded > 0);
    const start = Date.now();
    const from = s.stats().uploaded;
    await new Promise((r) => setTimeout(r, 2000));
    const sent = s.stats().uploaded - from;
    const received = t.stats().downloaded;
    const elapsed = (Date.now() - start) / 1000;
    // 2 s at 256 KiB/s is 512 KiB; the bound allows 50 % more, the burst and the bytes before the window.
    assert.ok(sent <= rate * elapsed * 1.5 + 256 * KiB, `${sent} bytes sent in ${elapsed} s`);
    assert.ok(received < 1.5 * MiB, `${received} bytes arrived by ${elapsed} s after the first`);
    assert.ok(sent > 0, 'it does send');
  });
});

test('download limit: a leecher limited to 256 KiB/s receives no more than that (plus its burst) from an unlimited seeder', { timeout: 60_000 }, async () => {
  await withWorld(16 * MiB, 256 * KiB, async (w) => {
    const rate = 256 * KiB;
    const seeder = await w.client();
    await seeder.add(w.metainfo, { dir: w.seedDir });
    const leecher = await w.client({ downloadLimit: rate });
    const t = await leecher.add(w.metainfo, { dir: join(w.dir, 'out'), peers: [at(seeder)] });
    await until(() => 'the first bytes', 20_000, () => t.stats().downloaded > 0);
    const start = Date.now();
    const from = t.stats().downloaded;
    await new Promise((r) => setTimeout(r, 2000));
    const got = t.stats().downloaded - from;
    const elapsed = (Date.now() - start) / 1000;
    assert.ok(got <= rate * elapsed * 1.5 + 256 * KiB, `${got} bytes in ${elapsed} s`);
    assert.ok(t.stats().downloaded < 1.5 * MiB, `${t.stats().downloaded} bytes in all`);
    assert.ok(got > 0, 'it does download');
  });
});

test('global connection limit: maxConnections bounds outgoing and incoming connections across the client', { timeout: 60_000 }, async () => {
  await withWorld(4 * MiB, 64 * KiB, async (w) => {
    // Four slow seeders; a leecher allowed two connections in all.
    const seeders: Client[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await w.client({ uploadLimit: 128 * KiB });
      await c.add(w.metainfo, { dir: w.seedDir });
      seeders.push(c);
    }
    const leecher = await w.client({ maxConnections: 2 });
    const t = await leecher.add(w.metainfo, { dir: join(w.dir, 'out'), peers: seeders.map(at), maxPeers: 50 });
    let most = 0;
    const sample = (): void => {
      most = Math.max(most, t.peers().length);
    };
    const timer = setInterval(sample, 20);
    try {
      await until(() => `two peers (${t.peers().length})`, 20_000, () => t.peers().length === 2);
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      clearInterval(timer);
    }
    assert.equal(most, 2, 'never more than two connections');

    // Incoming too: a seeder allowing one connection, dialled by three leechers.
    const strict = await w.client({ maxConnections: 1, uploadLimit: 128 * KiB });
    const s = await strict.add(w.metainfo, { dir: w.seedDir });
    const leechers: Torrent[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await w.client();
      leechers.push(await c.add(w.metainfo, { dir: join(w.dir, `in${i}`), peers: [at(strict)], pex: false }));
    }
    let mostIn = 0;
    const end = Date.now() + 2000;
    while (Date.now() < end) {
      mostIn = Math.max(mostIn, s.peers().length);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(mostIn, 1, 'the seeder kept to one connection');
    assert.equal(leechers.filter((l) => l.stats().downloaded > 0).length, 1, 'one leecher got in');
  });
});

test('sequential mode: pieces are verified in order (up to the few in flight at once)', { timeout: 60_000 }, async () => {
  await withWorld(4 * MiB, 64 * KiB, async (w) => {
    const seeder = await w.client({ uploadLimit: 2 * MiB });
    await seeder.add(w.metainfo, { dir: w.seedDir });
    const leecher = await w.client();
    const t = await leecher.add(w.metainfo, { dir: join(w.dir, 'out'), peers: [at(seeder)], sequential: true });
    const order: number[] = [];
    t.on('piece', (i) => order.push(i));
    await completes(t, 40_000);
    assert.equal(order.length, w.metainfo.pieceCount);
    assert.ok((await readFile(join(w.dir, 'out', 'f.bin'))).equals(w.data));
    // When piece i is verified, every piece well before it is verified already. The exception:
    // before the seeder unchokes us we may fetch its allowed-fast pieces (BEP 6), lowest first.
    const fast = new Set(allowedFastSet(10, w.metainfo.infoHash, parseIp('127.0.0.1')!, w.metainfo.pieceCount));
    const window = 12;
    const done = new Set<number>();
    for (const i of order) {
      if (fast.has(i)) {
        done.add(i);
        continue;
      }
      for (let j = 0; j < i - window; j++) assert.ok(done.has(j), `piece ${i} verified before piece ${j}: ${order.join(',')}`);
      done.add(i);
    }
    // And overall the order is nearly sorted: few inversions.
    const rest = order.filter((i) => !fast.has(i));
    let inversions = 0;
    for (let a = 0; a < rest.length; a++) for (let b = a + 1; b < rest.length; b++) if (rest[a]! > rest[b]!) inversions++;
    assert.ok(inversions <= order.length, `${inversions} inversions: ${order.join(',')}`);
  });
});
