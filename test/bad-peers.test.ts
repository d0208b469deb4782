/**
 * Hostile peers on real loopback sockets against the real Client: a peer
 * (written here with node:net and our wire codec) that claims every piece and
 * answers every request with corrupted data, and peers that break the framing
 * right after the handshake. An honest peerkit seeder is always there too; the
 * leecher must end with the right bytes, ban or drop the bad peer, and go on.
 *
 * The bad peers listen on 127.0.0.2: bans are per address, and the honest
 * seeder on 127.0.0.1 must not share it.
 *
 * And peers that are honest but awkward: partial seeds that each hold a
 * different large piece, so the leecher has several big pieces in progress.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtemp, mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '../src/client/client.js';
import type { Torrent } from '../src/client/torrent.js';
import { createTorrent } from '../src/files/create-torrent.js';
import type { Metainfo } from '../src/codec/metainfo.js';
import { MessageReader, encodeHandshake, encodeMessage } from '../src/codec/peer-wire.js';
import type { Endpoint } from '../src/runtime/contract.js';

const KiB = 1024;
const BAD_HOST = '127.0.0.2';

/** Rejects after `ms` with `what` (worked out then), so no wait in this file is unbounded. */
function within<T>(p: Promise<T>, ms: number, what: string | (() => string)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${typeof what === 'string' ? what : what()}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function completes(t: Torrent, ms: number): Promise<void> {
  if (t.isComplete) return Promise.resolve();
  return within(
    new Promise<void>((resolve, reject) => {
      t.on('complete', () => resolve());
      t.on('error', reject);
    }),
    ms,
    () => `${t.name} to complete (${JSON.stringify(t.stats())})`,
  );
}

type Behaviour = 'corrupt' | 'huge-length' | 'garbage' | 'bad-request';

/** A peer that speaks the handshake properly, then misbehaves. */
class BadPeer {
  readonly server: Server;
  readonly sockets: Socket[] = [];
  handshakes = 0;
  blocksSent = 0;
  private closes = 0;
  private readonly waiters: (() => void)[] = [];

  constructor(
    private readonly meta: Metainfo,
    private readonly behaviour: Behaviour,
  ) {
    this.server = createServer((s) => this.onConnection(s));
  }

  async listen(): Promise<Endpoint> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, BAD_HOST, () => resolve());
    });
    const a = this.server.address();
    assert.ok(a && typeof a === 'object');
    return { host: BAD_HOST, port: a.port };
  }

  /** Resolves once a connection to it has been closed (by the leecher, which is the only one dialling). */
  closed(): Promise<void> {
    if (this.closes > 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(s: Socket): void {
    this.sockets.push(s);
    s.on('error', () => undefined);
    s.on('close', () => {
      this.closes++;
      for (const w of this.waiters.splice(0)) w();
    });
    const reader = new MessageReader({ expectHandshake: true });
    s.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      try {
        for (const m of reader) this.onMessage(s, m.type, m);
      } catch {
        s.destroy();
      }
    });
  }

  private onMessage(s: Socket, type: string, m: unknown): void {
    if (type === 'handshake') {
      this.handshakes++;
      s.write(encodeHandshake({ infoHash: this.meta.infoHash, peerId: Buffer.from(`-EV0001-${randomBytes(6).toString('hex')}`, 'latin1'), reserved: { fast: true } }));
      switch (this.behaviour) {
        case 'corrupt':
          s.write(Buffer.concat([encodeMessage({ type: 'have-all' }), encodeMessage({ type: 'unchoke' })]));
          return;
        case 'huge-length':
          // Claims a 4 GiB message; a careful reader refuses before buffering any of it.
          s.write(Buffer.concat([encodeMessage({ type: 'have-all' }), Buffer.from([0xff, 0xff, 0xff, 0xff, 7]), randomBytes(1000)]));
          return;
        case 'garbage':
          s.write(Buffer.from('GARBAGE, NOT A MESSAGE '.repeat(20)));
          return;
        case 'bad-request':
          // Well-framed, but asks for a piece past the end of the torrent.
          s.write(Buffer.concat([encodeMessage({ type: 'have-none' }), encodeMessage({ type: 'interested' }), encodeMessage({ type: 'request', index: this.meta.pieceCount + 5, begin: 0, length: 16 * KiB })]));
          return;
      }
    }
    if (type === 'request' && this.behaviour === 'corrupt') {
      const r = m as { index: number; begin: number; length: number };
      this.blocksSent++;
      s.write(encodeMessage({ type: 'piece', index: r.index, begin: r.begin, block: randomBytes(r.length) }));
    }
  }
}

interface Swarm {
  dir: string;
  data: Buffer;
  metainfo: Metainfo;
  seeder: Client;
  leecher: Client;
}

/** An honest seeder (rate-limited so the bad peer surely gets requests) and a leecher client. */
async function withSwarm(fn: (s: Swarm) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-bad-'));
  const clients: Client[] = [];
  try {
    const seedDir = join(dir, 'seed');
    await mkdir(seedDir);
    const data = randomBytes(2 * 1024 * KiB + 5000);
    await writeFile(join(seedDir, 'data.bin'), data);
    const { metainfo } = await createTorrent(join(seedDir, 'data.bin'), { pieceLength: 64 * KiB });
    const seeder = await Client.create({ port: 0, host: '127.0.0.1', uploadLimit: 768 * KiB });
    clients.push(seeder);
    const leecher = await Client.create({ port: 0, host: '127.0.0.1' });
    clients.push(leecher);
    const s = await seeder.add(metainfo, { dir: seedDir });
    assert.equal(s.isComplete, true);
    await fn({ dir, data, metainfo, seeder, leecher });
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await rm(dir, { recursive: true, force: true });
  }
}

test('a peer sending corrupt data is caught, banned and closed; the download completes from the honest seeder', { timeout: 20_000 }, async () => {
  await withSwarm(async ({ dir, data, metainfo, seeder, leecher }) => {
    const bad = new BadPeer(metainfo, 'corrupt');
    const badAt = await bad.listen();
    try {
      const failed: { index: number; peers: readonly Endpoint[] }[] = [];
      const banned: { endpoint: Endpoint; reason: string }[] = [];
      const honest = { host: '127.0.0.1', port: seeder.port };
      const t = await leecher.add(metainfo, { dir: join(dir, 'out'), peers: [badAt, honest] });
      t.on('piece-failed', (index, peers) => failed.push({ index, peers }));
      t.on('banned', (endpoint, reason) => banned.push({ endpoint, reason }));
      const kinds: string[] = [];
      t.on('disconnect', (endpoint, reason, kind) => endpoint.host === BAD_HOST && kinds.push(`${kind}: ${reason}`));
      await completes(t, 15_000);
      assert.ok((await readFile(join(dir, 'out', 'data.bin'))).equals(data), 'the leecher has the right bytes');
      assert.ok(bad.handshakes >= 1 && bad.blocksSent > 0, `the bad peer took part (${bad.blocksSent} blocks)`);
      assert.ok(failed.length >= 1, 'piece-failed was emitted');
      assert.ok(failed.some((f) => f.peers.some((p) => p.host === BAD_HOST && p.port === badAt.port)), JSON.stringify(failed));
      assert.ok(failed.every((f) => f.peers.some((p) => p.host === BAD_HOST)), 'every failed piece had the bad peer in it');
      assert.deepEqual(banned.map((b) => b.endpoint), [badAt], 'the bad peer, and only it, was banned');
      assert.match(banned[0]!.reason, /hash check/);
      await within(bad.closed(), 5000, 'the bad peer to be disconnected');
      await within(
        (async () => {
          while (kinds.length === 0) await new Promise((r) => setTimeout(r, 20));
        })(),
        5000,
        'the disconnect event',
      );
      assert.match(kinds[0]!, /^ban: banned: sent data for \d+ piece\(s\) that failed the hash check$/);
      assert.equal(t.stats().banned, 1);
      assert.ok(t.stats().wasted > 0);
      assert.ok(t.peers().every((p) => p.endpoint.host !== BAD_HOST), 'no connection left to the bad peer');
    } finally {
      await bad.stop();
    }
  });
});

const VIOLATIONS = {
  'huge-length': { what: 'a 0xffffffff length prefix', reason: /^protocol error: .*exceeds/ },
  garbage: { what: 'garbage', reason: /^protocol error: / },
  'bad-request': { what: 'a request for a piece past the end', reason: /^request out of range \(piece \d+, 0\+16384\)$/ },
} as const;

for (const behaviour of ['huge-length', 'garbage', 'bad-request'] as const) {
  test(`a peer sending ${VIOLATIONS[behaviour].what} after the handshake is dropped with the reason reported; the download goes on`, { timeout: 20_000 }, async () => {
    await withSwarm(async ({ dir, data, metainfo, seeder, leecher }) => {
      const bad = new BadPeer(metainfo, behaviour);
      const badAt = await bad.listen();
      try {
        const honest = { host: '127.0.0.1', port: seeder.port };
        const t = await leecher.add(metainfo, { dir: join(dir, 'out'), peers: [badAt, honest] });
        const warnings: string[] = [];
        t.on('warning', (w) => warnings.push(w));
        const disconnects: { endpoint: Endpoint; reason: string; kind: string }[] = [];
        t.on('disconnect', (endpoint, reason, kind) => disconnects.push({ endpoint, reason, kind }));
        await within(bad.closed(), 5000, 'the bad peer to be disconnected');
        await within(
          (async () => {
            while (!disconnects.some((d) => d.endpoint.host === BAD_HOST)) await new Promise((r) => setTimeout(r, 20));
          })(),
          5000,
          () => `the disconnect event (${JSON.stringify(disconnects)})`,
        );
        const d = disconnects.filter((x) => x.endpoint.host === BAD_HOST);
        assert.equal(d.length, 1, JSON.stringify(d));
        assert.equal(d[0]!.kind, 'violation');
        assert.match(d[0]!.reason, VIOLATIONS[behaviour].reason);
        assert.deepEqual(d[0]!.endpoint, badAt);
        assert.equal(bad.handshakes, 1);
        assert.equal(t.isComplete, false, 'dropped early, long before the download ends');
        await completes(t, 15_000);
        assert.ok((await readFile(join(dir, 'out', 'data.bin'))).equals(data));
        assert.equal(t.stats().wasted, 0);
        assert.ok(t.peers().every((p) => p.endpoint.host !== BAD_HOST));
        assert.deepEqual(warnings, []);
      } finally {
        await bad.stop();
      }
    });
  });
}

test('partial seeds each holding a different 16 MiB piece: several large pieces in progress at once do not stall the download', { timeout: 20_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-partial-'));
  const clients: Client[] = [];
  try {
    const pieceLength = 16 * 1024 * KiB;
    const n = 4;
    const data = randomBytes(n * pieceLength);
    await mkdir(join(dir, 'full'));
    await writeFile(join(dir, 'full', 'd.bin'), data);
    const { metainfo } = await createTorrent(join(dir, 'full', 'd.bin'), { pieceLength });
    const peers: Endpoint[] = [];
    for (let i = 0; i < n; i++) {
      // Seed i has only piece i (the rest of its file is a hole).
      const d = join(dir, `seed${i}`);
      await mkdir(d);
      const fh = await open(join(d, 'd.bin'), 'w');
      await fh.truncate(n * pieceLength);
      await fh.write(data, i * pieceLength, pieceLength, i * pieceLength);
      await fh.close();
      const c = await Client.create({ port: 0, host: '127.0.0.1' });
      clients.push(c);
      const t = await c.add(metainfo, { dir: d });
      assert.equal(t.stats().piecesDone, 1);
      peers.push({ host: '127.0.0.1', port: c.port });
    }
    const leecher = await Client.create({ port: 0, host: '127.0.0.1' });
    clients.push(leecher);
    const t = await leecher.add(metainfo, { dir: join(dir, 'out'), peers });
    await completes(t, 15_000);
    assert.ok((await readFile(join(dir, 'out', 'd.bin'))).equals(data));
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await rm(dir, { recursive: true, force: true });
  }
});
