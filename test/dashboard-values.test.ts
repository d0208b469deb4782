/**
 * The dashboard's numbers are the client's numbers.
 *
 * 1. A client holding a known set of pieces, connected to three scripted
 *    peers on 127.0.0.1 that send a known bitfield and known choke/interest
 *    messages and nothing else: the peers table shows exactly who chokes
 *    and who is interested, each way, and the piece map (held pieces and
 *    how many connected peers hold each, held pieces included) equals what
 *    the bitfields say, per piece and per cell of several pieces, in the
 *    JSON and over HTTP.
 * 2. A live swarm: every value of the peers and torrents tables (choke and
 *    interest both ways, rates, bytes, ratio, progress) equals what
 *    Torrent.peers() and Torrent.stats() say at the same moment, and the
 *    swarm is checked to have rows where the two sides differ, so a
 *    mapping that swapped them would fail.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '../src/client/client.js';
import type { Torrent } from '../src/client/torrent.js';
import { Bitfield, encodeHandshake, encodeMessage, HANDSHAKE_LENGTH, type MessageInput } from '../src/codec/peer-wire.js';
import type { PeerSnapshot } from '../src/core/torrent/torrent-core.js';
import { ClientSource, type ClientState, type PeerRow, type TorrentRow } from '../src/dashboard/client-source.js';
import { parseCsv } from '../src/dashboard/csv.js';
import { startDashboard } from '../src/dashboard/server.js';
import { createTorrent } from '../src/files/create-torrent.js';
import { completes, startSwarm } from './dashboard-swarm.js';

const PIECE = 16 * 1024;
const PIECES = 40;

/** A peer that answers the handshake, sends its bitfield and the given messages, then only listens. */
async function scriptedPeer(infoHash: Buffer, has: (i: number) => boolean, then: MessageInput[]): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let got = 0;
    s.on('data', (d: Buffer) => {
      if (got >= HANDSHAKE_LENGTH) return; // everything after the handshake is ignored
      got += d.length;
      if (got < HANDSHAKE_LENGTH) return;
      const bits = new Bitfield(PIECES);
      for (let i = 0; i < PIECES; i++) if (has(i)) bits.set(i);
      const peerId = Buffer.concat([Buffer.from('-SC0001-'), Buffer.from(randomBytes(6).toString('hex'))]);
      s.write(Buffer.concat([encodeHandshake({ infoHash, peerId }), encodeMessage({ type: 'bitfield', bytes: bits.toBuffer() }), ...then.map(encodeMessage)]));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

async function until<T>(what: string, f: () => T | undefined, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request(url, { agent: false, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    })
      .on('error', reject)
      .end();
  });
}

test('scripted peers with known bitfields and messages: choke and interest both ways, the piece map per piece and per cell', { timeout: 60_000 }, async () => {
  const work = await mkdtemp(join(tmpdir(), 'peerkit-values-'));
  const peers: { port: number; close: () => Promise<void> }[] = [];
  let client: Client | undefined;
  try {
    // The torrent: 40 pieces, the last one short. The client's copy has pieces 10-29 right and zeros elsewhere.
    const size = PIECES * PIECE - 1000;
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i += 32) createHash('sha256').update(`values:${i}`).digest().copy(data, i, 0, Math.min(32, size - i));
    await mkdir(join(work, 'orig'));
    await writeFile(join(work, 'orig', 'v.bin'), data);
    const { metainfo } = await createTorrent(join(work, 'orig', 'v.bin'), { pieceLength: PIECE });
    const held = (i: number): boolean => i >= 10 && i < 30;
    const partial = Buffer.alloc(size);
    data.copy(partial, 10 * PIECE, 10 * PIECE, 30 * PIECE);
    await mkdir(join(work, 'c'));
    await writeFile(join(work, 'c', 'v.bin'), partial);

    // A: every third piece; unchokes us, not interested. B: only pieces we hold (even ones); interested, keeps us choked. C: pieces 0-19; says nothing.
    const bitfields = [(i: number) => i % 3 === 0, (i: number) => held(i) && i % 2 === 0, (i: number) => i < 20];
    const [a, b, c] = [
      await scriptedPeer(metainfo.infoHash, bitfields[0]!, [{ type: 'unchoke' }]),
      await scriptedPeer(metainfo.infoHash, bitfields[1]!, [{ type: 'interested' }]),
      await scriptedPeer(metainfo.infoHash, bitfields[2]!, []),
    ];
    peers.push(a!, b!, c!);
    client = await Client.create({ port: 0, host: '127.0.0.1' });
    const t = await client.add(metainfo, { dir: join(work, 'c'), pex: false, dht: false, peers: peers.map((p) => ({ host: '127.0.0.1', port: p.port })) });
    const source = new ClientSource('client', client);
    const coarse = new ClientSource('coarse', client, { pieceMapCells: 16 });

    // Settled: all three connected, and B (interested) unchoked by our choker.
    const st = await until('three peers, B unchoked', () => {
      const s = source.state() as unknown as ClientState;
      const rowB = s.peers.find((p) => p.address === `127.0.0.1:${b!.port}`);
      return s.peers.length === 3 && rowB?.amChoking === false ? s : undefined;
    });
    const row = (port: number): PeerRow => st.peers.find((p) => p.address === `127.0.0.1:${port}`)!;
    const flags = (p: PeerRow): [boolean, boolean, boolean, boolean] => [p.amChoking, p.amInterested, p.peerChoking, p.peerInterested];
    // [we choke it, we are interested in it, it chokes us, it is interested in us]
    assert.deepEqual(flags(row(a!.port)), [true, true, false, false], 'A: unchoked us, has pieces we lack, not interested in us');
    assert.deepEqual(flags(row(b!.port)), [false, false, true, true], 'B: interested in us (so unchoked), has nothing we lack, chokes us');
    assert.deepEqual(flags(row(c!.port)), [true, true, true, false], 'C: has pieces we lack, said nothing');
    for (const [k, p] of [a, b, c].entries()) {
      const r = row(p!.port);
      const n = Array.from({ length: PIECES }, (_x, i) => i).filter(bitfields[k]!).length;
      assert.equal(r.progress, n / PIECES, `peer ${k}: its share of the pieces`);
      assert.equal(r.direction, 'out');
      assert.deepEqual([r.downloaded, r.uploaded, r.ratio, r.torrent], [0, 0, null, metainfo.infoHash.toString('hex')]);
    }

    // The piece map, one piece a cell: held = our pieces; availability = how many of A, B, C have the piece, held or not.
    const expectedAvail = Array.from({ length: PIECES }, (_x, i) => bitfields.filter((f) => f(i)).length);
    const torrentRow = st.torrents[0]!;
    assert.equal(torrentRow.pieceMap!.piecesPerCell, 1);
    assert.deepEqual(torrentRow.pieceMap!.have, Array.from({ length: PIECES }, (_x, i) => (held(i) ? 1 : 0)));
    assert.deepEqual(torrentRow.pieceMap!.rarest, expectedAvail);
    assert.ok(expectedAvail.some((n, i) => held(i) && n > 0), 'held pieces have their availability too');
    assert.equal(torrentRow.piecesDone, 20);
    assert.equal(torrentRow.peers, 3);
    // Cells of 3 pieces (40 pieces, at most 16 cells: 14 cells, the last of one piece): how many held, and the fewest peers over the cell's pieces.
    const cs = coarse.state() as unknown as ClientState;
    const map = cs.torrents[0]!.pieceMap!;
    assert.equal(map.piecesPerCell, 3);
    const cells = Array.from({ length: 14 }, (_x, k) => Array.from({ length: 3 }, (_y, j) => k * 3 + j).filter((i) => i < PIECES));
    assert.deepEqual(map.have, cells.map((ps) => ps.filter(held).length));
    assert.deepEqual(map.rarest, cells.map((ps) => Math.min(...ps.map((i) => expectedAvail[i]!))));

    // The same over HTTP: the JSON and the peers CSV.
    const d = await startDashboard({ sources: [source] });
    try {
      const j = JSON.parse(await get(`${d.baseUrl}api/state`)) as { sources: { state: ClientState }[] };
      assert.deepEqual(j.sources[0]!.state.torrents[0]!.pieceMap, torrentRow.pieceMap);
      const csv = parseCsv(await get(`${d.baseUrl}peers.csv`));
      const col = (n: string): number => csv[0]!.indexOf(n);
      const byPort = (port: number): string[] => csv.find((r) => r[col('address')] === `127.0.0.1:${port}`)!;
      for (const [p, f] of [[a!, [true, true, false, false]], [b!, [false, false, true, true]], [c!, [true, true, true, false]]] as const) {
        assert.deepEqual(['am_choking', 'am_interested', 'peer_choking', 'peer_interested'].map((n) => byPort(p.port)[col(n)]), f.map(String));
      }
    } finally {
      await d.close();
    }
    // The client itself agrees (the source only reads it).
    const truth = new Map(t.peers().map((p) => [`${p.endpoint.host}:${p.endpoint.port}`, p]));
    for (const r of st.peers) assert.deepEqual(flags(r), [truth.get(r.address)!.amChoking, truth.get(r.address)!.amInterested, truth.get(r.address)!.peerChoking, truth.get(r.address)!.peerInterested]);
  } finally {
    await client?.close();
    await Promise.all(peers.map((p) => p.close()));
    await rm(work, { recursive: true, force: true });
  }
});

/** Rates are read from a running clock: two reads a few microseconds apart may differ by a hair, or by a slot's bytes at a 250 ms boundary. */
const closeRate = (a: number, b: number): boolean => Math.abs(a - b) <= Math.max(1, 0.01 * Math.max(a, b));

/** Differences between the source's rows and the client's own figures, read back to back. */
function mirror(source: ClientSource, torrents: readonly Torrent[]): { problems: string[]; peers: PeerRow[]; torrents: TorrentRow[] } {
  const s = source.state() as unknown as ClientState;
  const problems: string[] = [];
  for (const t of torrents) {
    const stats = t.stats();
    const truth: PeerSnapshot[] = t.peers();
    const row = s.torrents.find((r) => r.infoHash === t.infoHashHex)!;
    const size = t.metainfo!.length;
    const want = { downloaded: stats.downloaded, uploaded: stats.uploaded, wasted: stats.wasted, peers: stats.peers, piecesDone: stats.piecesDone, pieceCount: stats.pieceCount, progress: (size - stats.left!) / size, ratio: stats.uploaded / (stats.downloaded > 0 ? stats.downloaded : size) };
    for (const [k, v] of Object.entries(want)) if (row[k as keyof typeof want] !== v) problems.push(`${source.id} torrent ${k}: ${String(row[k as keyof typeof want])} != ${v}`);
    if (!closeRate(row.downloadRate, stats.downloadRate) || !closeRate(row.uploadRate, stats.uploadRate)) problems.push(`${source.id} torrent rates: ${row.downloadRate}/${row.uploadRate} != ${stats.downloadRate}/${stats.uploadRate}`);
    const rows = s.peers.filter((p) => p.torrent === t.infoHashHex);
    if (rows.length !== truth.length) problems.push(`${source.id}: ${rows.length} peer rows, ${truth.length} peers`);
    for (const p of truth) {
      const address = `${p.endpoint.host}:${p.endpoint.port}`;
      const r = rows.find((x) => x.address === address);
      if (!r) {
        problems.push(`${source.id}: no row for ${address}`);
        continue;
      }
      const exact = { direction: p.direction, client: p.client, amChoking: p.amChoking, amInterested: p.amInterested, peerChoking: p.peerChoking, peerInterested: p.peerInterested, downloaded: p.downloaded, uploaded: p.uploaded, progress: p.progress, ratio: p.downloaded > 0 ? p.uploaded / p.downloaded : null };
      for (const [k, v] of Object.entries(exact)) if (r[k as keyof typeof exact] !== v) problems.push(`${source.id} ${address} ${k}: ${String(r[k as keyof typeof exact])} != ${String(v)}`);
      if (!closeRate(r.downloadRate, p.downloadRate) || !closeRate(r.uploadRate, p.uploadRate)) problems.push(`${source.id} ${address} rates: ${r.downloadRate}/${r.uploadRate} != ${p.downloadRate}/${p.uploadRate}`);
    }
  }
  return { problems, peers: s.peers as PeerRow[], torrents: s.torrents as TorrentRow[] };
}

test('a live swarm: the peers and torrents tables equal Torrent.peers() and Torrent.stats(), with rows where the two directions differ', { timeout: 90_000 }, async () => {
  const swarm = await startSwarm({ bytes: 3 * 1024 * 1024 - 999, seederUploadLimit: 768 * 1024 });
  try {
    const leechers = [await swarm.addLeecher(), await swarm.addLeecher()];
    const sources = [new ClientSource('seeder', swarm.seeder), ...swarm.leecherClients.map((c, i) => new ClientSource(`leecher ${i + 1}`, c))];
    const torrentsOf = [swarm.seeder.torrents, ...leechers.map((t) => [t])];
    // What a swapped mapping would need to go unnoticed: every pair below equal in every row. The swarm shows them different.
    const seen = { choke: false, interest: false, rates: false, bytes: false, torrentRates: false, torrentBytes: false };
    let checks = 0;
    const done = Promise.all(leechers.map((l) => completes(l, 80_000)));
    let finished = false;
    void done.then(() => (finished = true));
    while (!finished || checks < 5) {
      for (const [k, src] of sources.entries()) {
        let m = mirror(src, torrentsOf[k]!);
        // A read that straddled a rate-slot boundary is read again; a wrong mapping fails every time.
        for (let retry = 0; retry < 3 && m.problems.length > 0; retry++) m = mirror(src, torrentsOf[k]!);
        assert.deepEqual(m.problems, [], `${src.id}: the dashboard says what the client says`);
        checks++;
        for (const p of m.peers) {
          seen.choke ||= p.amChoking !== p.peerChoking;
          seen.interest ||= p.amInterested !== p.peerInterested;
          seen.rates ||= Math.abs(p.downloadRate - p.uploadRate) > 0.05 * Math.max(p.downloadRate, p.uploadRate) && Math.max(p.downloadRate, p.uploadRate) > 0;
          seen.bytes ||= p.downloaded !== p.uploaded;
        }
        for (const t of m.torrents) {
          seen.torrentRates ||= Math.abs(t.downloadRate - t.uploadRate) > 0.05 * Math.max(t.downloadRate, t.uploadRate) && Math.max(t.downloadRate, t.uploadRate) > 0;
          seen.torrentBytes ||= t.downloaded !== t.uploaded;
        }
      }
      if (finished && checks >= 5) break;
      await new Promise((r) => setTimeout(r, 150));
    }
    await done;
    assert.deepEqual(seen, { choke: true, interest: true, rates: true, bytes: true, torrentRates: true, torrentBytes: true }, 'rows where each pair differs, so a swap would have failed');
    // At the end: every leecher's row says complete, with its ratio.
    for (const [k, src] of sources.entries()) {
      const m = mirror(src, torrentsOf[k]!);
      assert.deepEqual(m.problems, []);
      assert.equal(m.torrents[0]!.progress, 1);
    }
  } finally {
    await swarm.close();
  }
});
