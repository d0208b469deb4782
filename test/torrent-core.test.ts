/**
 * TorrentCore driven directly, sans I/O: scripted fake peers speak the wire
 * protocol through our own codec, time is a number we turn by hand, the
 * randomness is seeded, and the "disk" is a Buffer: 'write' actions land in
 * it, 'verify' is answered with the real SHA-1 against the generated piece
 * list and 'read' with `blockRead`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { TorrentCore, type TorrentAction, type TorrentCoreOptions, type TorrentLayout } from '../src/core/torrent/torrent-core.js';
import { TokenBucket } from '../src/core/torrent/token-bucket.js';
import { MessageReader, allowedFastSet, encodeHandshake, encodeMessage, type Message, type MessageInput, type ReaderItem } from '../src/codec/peer-wire.js';
import { decodeExtHandshake, decodeMetadataMessage, encodeExtHandshake, encodeMetadataMessage, encodePex, type ExtHandshake, type ExtHandshakeFields } from '../src/codec/extensions.js';
import { encodeInfo } from '../src/codec/metainfo.js';
import { seededRandom } from '../src/runtime/sim/index.js';
import type { Endpoint } from '../src/runtime/contract.js';

const KiB = 1024;
const BLOCK = 16 * KiB;
const OUR_ID = Buffer.from('-PK0100-ourselves001', 'latin1');

const sha1 = (b: Uint8Array): Buffer => createHash('sha1').update(b).digest();

// ---------------------------------------------------------------- fixtures

interface Fixture {
  readonly data: Buffer;
  readonly pieceLength: number;
  readonly pieceCount: number;
  readonly length: number;
  readonly hashes: readonly Buffer[];
  readonly infoBytes: Buffer;
  readonly infoHash: Buffer;
  readonly layout: TorrentLayout;
}

/**
 * A generated torrent. `fakeData`: random piece hashes and no data (for
 * metadata tests that need a large info dictionary but never move pieces).
 */
function fixture(o: { pieceLength?: number; length?: number; seed?: number; private?: boolean; fakeData?: boolean } = {}): Fixture {
  const pieceLength = o.pieceLength ?? 32 * KiB;
  const length = o.length ?? 4 * pieceLength + 1000;
  const rnd = seededRandom(o.seed ?? 7);
  const pieceCount = Math.ceil(length / pieceLength);
  const data = o.fakeData ? Buffer.alloc(0) : Buffer.from(rnd.bytes(length));
  const hashes: Buffer[] = [];
  for (let i = 0; i < pieceCount; i++) hashes.push(o.fakeData ? Buffer.from(rnd.bytes(20)) : sha1(data.subarray(i * pieceLength, Math.min(length, (i + 1) * pieceLength))));
  const infoBytes = encodeInfo({ name: 'f.bin', pieceLength, pieces: Buffer.concat(hashes), length, private: o.private });
  return {
    data,
    pieceLength,
    pieceCount,
    length,
    hashes,
    infoBytes,
    infoHash: sha1(infoBytes),
    layout: { pieceCount, pieceLength, length, private: o.private ?? false, infoBytes },
  };
}

function pieceSize(fx: Fixture, i: number): number {
  return Math.min(fx.pieceLength, fx.length - i * fx.pieceLength);
}

function blocksOf(fx: Fixture, i: number): { index: number; begin: number; length: number }[] {
  const out = [];
  for (let b = 0; b < pieceSize(fx, i); b += BLOCK) out.push({ index: i, begin: b, length: Math.min(BLOCK, pieceSize(fx, i) - b) });
  return out;
}

// ---------------------------------------------------------------- harness

type Got = Message | Extract<ReaderItem, { type: 'handshake' }>;
type Of<T extends Got['type']> = Extract<Got, { type: T }>;
type BlockRef = { readonly index: number; readonly begin: number; readonly length: number };
const bkey = (r: { index: number; begin: number }): string => `${r.index}:${r.begin}`;

/** The remote end of one connection: what the core sent it, and helpers to talk back. */
class FakePeer {
  readonly reader = new MessageReader({ expectHandshake: true, maxBlockLength: 128 * KiB });
  readonly got: Got[] = [];
  /** Requests received and not yet served or cancelled. */
  readonly pending = new Map<string, BlockRef>();
  closed: string | undefined;
  /** Our id for extension messages to the core, learned from its extension handshake. */
  coreExt: ExtHandshake | undefined;
  readonly peerId: Buffer;

  constructor(
    readonly h: Harness,
    readonly handle: number,
    readonly endpoint: Endpoint,
  ) {
    this.peerId = Buffer.from(`-XX0001-${String(handle).padStart(12, '0')}`, 'latin1');
  }

  of<T extends Got['type']>(type: T): Of<T>[] {
    return this.got.filter((m): m is Of<T> => m.type === type);
  }

  types(): string[] {
    return this.got.map((m) => m.type);
  }

  clear(): void {
    this.got.length = 0;
  }

  receive(bytes: Uint8Array): void {
    this.reader.push(Buffer.from(bytes));
    for (const item of this.reader) {
      if (item.type === 'handshake-start' || item.type === 'handshake-peer-id') continue;
      this.got.push(item);
      if (item.type === 'request') this.pending.set(bkey(item), item);
      if (item.type === 'cancel') this.pending.delete(bkey(item));
      if (item.type === 'extended' && item.id === 0) this.coreExt = decodeExtHandshake(item.payload);
    }
  }

  raw(bytes: Uint8Array): void {
    this.h.raw(this, bytes);
  }

  handshake(o: { fast?: boolean; extended?: boolean; dht?: boolean; infoHash?: Uint8Array; peerId?: Uint8Array } = {}): void {
    this.raw(encodeHandshake({ infoHash: o.infoHash ?? this.h.fx.infoHash, peerId: o.peerId ?? this.peerId, reserved: { fast: o.fast ?? true, extended: o.extended ?? true, dht: o.dht ?? false } }));
  }

  feed(...msgs: MessageInput[]): void {
    this.raw(Buffer.concat(msgs.map((m) => encodeMessage(m))));
  }

  ext(fields: ExtHandshakeFields): void {
    this.feed({ type: 'extended', id: 0, payload: encodeExtHandshake(fields) });
  }

  /** Answers every pending request with the right data (or `corrupt` data). */
  serve(o: { corrupt?: boolean; which?: (r: BlockRef) => boolean } = {}): number {
    const msgs: MessageInput[] = [];
    for (const [k, r] of this.pending) {
      if (o.which && !o.which(r)) continue;
      this.pending.delete(k);
      const start = r.index * this.h.fx.pieceLength + r.begin;
      const block = Buffer.from(this.h.fx.data.subarray(start, start + r.length));
      if (o.corrupt) block[0]! ^= 0xff;
      msgs.push({ type: 'piece', index: r.index, begin: r.begin, block });
    }
    if (msgs.length > 0) this.feed(...msgs);
    return msgs.length;
  }
}

class Harness {
  readonly core: TorrentCore;
  now = 1000;
  readonly actions: TorrentAction[] = [];
  readonly peers = new Map<number, FakePeer>();
  readonly image: Buffer;
  readonly verified: number[] = [];
  readonly connects: Endpoint[] = [];
  completes = 0;
  autoVerify = true;
  autoRead = true;
  readonly verifyQueue: number[] = [];
  readonly readQueue: Extract<TorrentAction, { type: 'read' }>[] = [];
  private nextHandle = 1;

  constructor(
    readonly fx: Fixture,
    opts: Partial<TorrentCoreOptions> & { noLayout?: boolean } = {},
  ) {
    this.image = Buffer.alloc(fx.length);
    this.core = new TorrentCore({
      infoHash: fx.infoHash,
      peerId: OUR_ID,
      random: seededRandom(42),
      layout: opts.noLayout ? undefined : fx.layout,
      listenPort: 6881,
      clientName: 'peerkit-test',
      ...opts,
    });
    this.core.start(this.now);
    this.drain();
  }

  /** A new connection: `out` as if we dialled it, `in` as if it dialled us. */
  connect(direction: 'in' | 'out', endpoint: Endpoint = { host: `10.0.0.${this.nextHandle}`, port: 6881 }): FakePeer {
    const handle = this.nextHandle++;
    const p = new FakePeer(this, handle, endpoint);
    this.peers.set(handle, p);
    this.core.addPeer(this.now, handle, endpoint, direction);
    this.drain();
    return p;
  }

  /** A ready peer: connected, handshaken, with its extension handshake and piece announcement sent. */
  peer(o: { fast?: boolean; extended?: boolean; seed?: boolean; reqq?: number; direction?: 'in' | 'out'; host?: string } = {}): FakePeer {
    const fast = o.fast ?? true;
    const p = this.connect(o.direction ?? 'out', o.host ? { host: o.host, port: 6881 } : undefined);
    p.handshake({ fast, extended: o.extended ?? true });
    if (o.extended ?? true) p.ext({ m: { ut_metadata: 3, ut_pex: 4 }, reqq: o.reqq, v: 'fake' });
    if (o.seed ?? true) p.feed(fast ? { type: 'have-all' } : { type: 'bitfield', bytes: fullBitfield(this.fx.pieceCount) });
    else if (fast) p.feed({ type: 'have-none' });
    return p;
  }

  raw(peer: FakePeer, bytes: Uint8Array): void {
    this.core.peerData(this.now, peer.handle, bytes);
    this.drain();
  }

  /** Carries out every pending action (and, when automatic, the disk's answers). */
  drain(): TorrentAction[] {
    const all: TorrentAction[] = [];
    for (let rounds = 0; rounds < 10_000; rounds++) {
      const closedNow: FakePeer[] = [];
      for (let a = this.core.pollAction(); a; a = this.core.pollAction()) {
        all.push(a);
        this.actions.push(a);
        switch (a.type) {
          case 'send': {
            const p = this.peers.get(a.peer);
            assert.ok(p, `send to unknown peer ${a.peer}`);
            assert.equal(p.closed, undefined, `send to peer ${a.peer} after it was closed`);
            p.receive(Buffer.concat(a.data));
            break;
          }
          case 'close': {
            const p = this.peers.get(a.peer)!;
            assert.equal(p.closed, undefined, 'closed twice');
            p.closed = a.reason;
            closedNow.push(p);
            break;
          }
          case 'write':
            a.data.copy(this.image, a.index * this.fx.pieceLength + a.begin);
            break;
          case 'verify':
            this.verifyQueue.push(a.index);
            break;
          case 'read':
            this.readQueue.push(a);
            break;
          case 'piece-verified':
            this.verified.push(a.index);
            break;
          case 'complete':
            this.completes++;
            break;
          case 'connect':
            this.connects.push(a.endpoint);
            break;
          default:
            break;
        }
      }
      // The driver reports the sockets gone.
      for (const p of closedNow) this.core.peerClosed(this.now, p.handle);
      let more = closedNow.length > 0;
      while (this.autoVerify && this.verifyQueue.length > 0) {
        this.hashPiece(this.verifyQueue.shift()!);
        more = true;
      }
      while (this.autoRead && this.readQueue.length > 0) {
        this.doRead(this.readQueue.shift()!);
        more = true;
      }
      if (!more) return all;
    }
    throw new Error('drain did not settle');
  }

  /** The real SHA-1 of what was written, against the piece list. */
  hashPiece(index: number): void {
    const start = index * this.fx.pieceLength;
    const ok = sha1(this.image.subarray(start, start + pieceSize(this.fx, index))).equals(this.fx.hashes[index]!);
    this.core.pieceHashed(this.now, index, ok);
  }

  doRead(a: Extract<TorrentAction, { type: 'read' }>): void {
    const start = a.index * this.fx.pieceLength + a.begin;
    this.core.blockRead(this.now, a.peer, a.index, a.begin, Buffer.from(this.fx.data.subarray(start, start + a.length)));
  }

  /** Moves the clock forward by `ms`, calling handleTimeout at every deadline on the way. */
  advance(ms: number): void {
    const target = this.now + ms;
    for (let i = 0; ; i++) {
      assert.ok(i < 100_000, 'timeouts do not settle');
      const t = this.core.pollTimeout();
      if (t === undefined || t > target) break;
      this.now = Math.max(this.now, t);
      this.core.handleTimeout(this.now);
      this.drain();
    }
    this.now = target;
  }

  /** Advances in steps, letting `each` act (e.g. feed keep-alives) between them. */
  advanceBy(total: number, step: number, each: () => void): void {
    for (let t = 0; t < total; t += step) {
      this.advance(Math.min(step, total - t));
      each();
    }
  }

  actionsOf<T extends TorrentAction['type']>(type: T, from = 0): Extract<TorrentAction, { type: T }>[] {
    return this.actions.slice(from).filter((a): a is Extract<TorrentAction, { type: T }> => a.type === type);
  }
}

function fullBitfield(n: number): Buffer {
  const b = Buffer.alloc(Math.ceil(n / 8), 0xff);
  if (n % 8 !== 0) b[b.length - 1] = (0xff00 >>> n % 8) & 0xff;
  return b;
}

function bitfieldOf(n: number, pieces: readonly number[]): Buffer {
  const b = Buffer.alloc(Math.ceil(n / 8));
  for (const i of pieces) b[i >> 3]! |= 0x80 >> (i & 7);
  return b;
}

// ---------------------------------------------------------------- handshakes

test('outgoing: our handshake goes out first, alone, until the peer answers', () => {
  const h = new Harness(fixture());
  const p = h.connect('out');
  assert.deepEqual(p.types(), ['handshake']);
  const hs = p.of('handshake')[0]!;
  assert.ok(hs.infoHash.equals(h.fx.infoHash));
  assert.ok(hs.peerId.equals(OUR_ID));
  assert.equal(hs.extended, true);
  assert.equal(hs.fast, true);
  p.handshake();
  assert.deepEqual(p.types().slice(0, 3), ['handshake', 'extended', 'have-none'], 'no second handshake; extension handshake, then our (empty) pieces');
  assert.equal(p.of('handshake').length, 1);
  assert.equal(h.actionsOf('peer-ready').length, 1);
});

test('incoming: nothing is sent before the peer handshakes; then our handshake comes first', () => {
  const h = new Harness(fixture());
  const p = h.connect('in');
  assert.deepEqual(p.types(), []);
  // The handshake arriving in pieces works the same.
  const hs = encodeHandshake({ infoHash: h.fx.infoHash, peerId: p.peerId, reserved: { fast: true, extended: true } });
  p.raw(hs.subarray(0, 30));
  assert.deepEqual(p.types(), []);
  p.raw(hs.subarray(30));
  assert.equal(p.types()[0], 'handshake');
  assert.ok(p.of('handshake')[0]!.infoHash.equals(h.fx.infoHash));
  assert.equal(p.closed, undefined);
});

test('a handshake for another torrent closes the connection', () => {
  const h = new Harness(fixture());
  const p = h.connect('out');
  p.handshake({ infoHash: Buffer.alloc(20, 9) });
  assert.match(p.closed ?? '', /another torrent/);
  const q = h.connect('in');
  q.handshake({ infoHash: Buffer.alloc(20, 9) });
  assert.match(q.closed ?? '', /another torrent/);
  assert.equal(q.of('handshake').length, 0, 'no handshake answered for a torrent we do not have');
});

test('a connection to ourselves is closed and the address never dialled again', () => {
  const h = new Harness(fixture());
  const self = { host: '10.9.9.9', port: 7000 };
  h.core.addPeers(h.now, [self], 'tracker');
  h.drain();
  assert.deepEqual(h.connects, [self]);
  const handle = 99;
  const p = new FakePeer(h, handle, self);
  h.peers.set(handle, p);
  h.core.addPeer(h.now, handle, self, 'out');
  h.drain();
  p.handshake({ peerId: OUR_ID });
  assert.match(p.closed ?? '', /ourselves/);
  h.advance(10 * 60_000);
  assert.equal(h.connects.length, 1, 'not dialled again');
});

test('the extension handshake: ut_metadata, ut_pex, metadata_size when we have the info, reqq, v, p', () => {
  const fx = fixture();
  const h = new Harness(fx, { maxIncomingRequests: 250 });
  const p = h.peer();
  const e = p.coreExt!;
  assert.ok(e);
  assert.equal(e.m.get('ut_metadata'), 1);
  assert.equal(e.m.get('ut_pex'), 2);
  assert.equal(e.metadataSize, fx.infoBytes.length);
  assert.equal(e.reqq, 250);
  assert.equal(e.v, 'peerkit-test');
  assert.equal(e.p, 6881);
  assert.equal(e.yourip, p.endpoint.host);

  // A magnet start (no info yet): no metadata_size.
  const m = new Harness(fx, { noLayout: true });
  assert.equal(m.peer().coreExt!.metadataSize, undefined);

  // A private torrent: PEX disabled (id 0).
  const priv = new Harness(fixture({ private: true }));
  assert.equal(priv.peer().coreExt!.m.get('ut_pex'), 0);

  // Without a listen port the handshake still goes out, without `p`.
  const np = new Harness(fx, { listenPort: 0 });
  const q = np.peer();
  assert.equal(q.closed, undefined);
  assert.equal(q.coreExt!.p, undefined);
});

test('no extension handshake to a peer that does not support BEP 10', () => {
  const h = new Harness(fixture());
  const p = h.peer({ extended: false });
  assert.equal(p.of('extended').length, 0);
});

// ---------------------------------------------------------------- piece announcements

test('what we have: have-none / have-all with fast, a bitfield otherwise; allowed-fast for pieces we have', () => {
  const fx = fixture();
  const none = new Harness(fx);
  assert.deepEqual(none.peer({ seed: false }).types().filter((t) => t !== 'extended'), ['handshake', 'have-none']);
  assert.deepEqual(none.peer({ seed: false, fast: false }).types().filter((t) => t !== 'extended'), ['handshake']);

  const all = [...Array(fx.pieceCount).keys()];
  const seed = new Harness(fx, { have: all });
  const f = seed.peer({ seed: false });
  assert.equal(f.of('have-all').length, 1);
  assert.equal(f.of('bitfield').length, 0);
  // BEP 6 allowed-fast set for the peer's address, for pieces we have.
  const expected = allowedFastSet(10, fx.infoHash, f.endpoint.host, fx.pieceCount);
  assert.deepEqual(
    f.of('allowed-fast').map((m) => m.index),
    expected,
  );
  const nf = seed.peer({ seed: false, fast: false });
  assert.deepEqual(nf.of('bitfield').map((m) => [...m.bytes]), [[...fullBitfield(fx.pieceCount)]]);

  const some = new Harness(fx, { have: [1, 3] });
  const s = some.peer({ seed: false });
  assert.deepEqual(s.of('bitfield').map((m) => [...m.bytes]), [[...bitfieldOf(fx.pieceCount, [1, 3])]]);
  for (const m of s.of('allowed-fast')) assert.ok([1, 3].includes(m.index), 'allowed-fast only for pieces we have');
});

test('interest follows availability', () => {
  const fx = fixture();
  const h = new Harness(fx, { have: [0] });
  const p = h.peer({ seed: false });
  assert.equal(p.of('interested').length, 0);
  p.feed({ type: 'have', index: 0 });
  assert.equal(p.of('interested').length, 0, 'it has nothing we lack');
  p.feed({ type: 'have', index: 2 });
  assert.equal(p.of('interested').length, 1);
  p.feed({ type: 'unchoke' });
  assert.ok(p.of('request').every((r) => r.index === 2));
  p.serve();
  assert.deepEqual(h.verified, [2]);
  assert.equal(p.of('not-interested').length, 1, 'nothing more to get from it');
  p.feed({ type: 'have', index: 3 });
  assert.equal(p.of('interested').length, 2);
});

// ---------------------------------------------------------------- requests

test('requests go out only after an unchoke', () => {
  const h = new Harness(fixture());
  const p = h.peer({ fast: false });
  assert.equal(p.of('interested').length, 1);
  assert.equal(p.of('request').length, 0);
  h.advance(5000);
  assert.equal(p.of('request').length, 0);
  p.feed({ type: 'unchoke' });
  assert.ok(p.of('request').length > 0);
});

test('while choked, only allowed-fast pieces are requested', () => {
  const fx = fixture();
  const h = new Harness(fx);
  const p = h.peer();
  assert.equal(p.of('request').length, 0);
  p.feed({ type: 'allowed-fast', index: 2 });
  const reqs = p.of('request');
  assert.ok(reqs.length > 0);
  assert.ok(reqs.every((r) => r.index === 2), JSON.stringify(reqs));
  assert.equal(reqs.length, blocksOf(fx, 2).length);
  p.serve();
  assert.deepEqual(h.verified, [2]);
  assert.equal(p.pending.size, 0, 'nothing else asked while choked');
});

test('the request pipeline never exceeds the peer\'s reqq', () => {
  const fx = fixture({ pieceLength: 256 * KiB, length: 8 * 256 * KiB });
  for (const reqq of [1, 3, 5, 20]) {
    const h = new Harness(fx);
    const p = h.peer({ reqq });
    p.feed({ type: 'unchoke' });
    assert.ok(p.pending.size > 0);
    assert.ok(p.pending.size <= reqq, `reqq ${reqq}: ${p.pending.size} outstanding`);
    // Keep serving one block at a time: the bound holds throughout.
    for (let i = 0; i < 40 && p.pending.size > 0; i++) {
      const first = p.pending.values().next().value!;
      p.serve({ which: (r) => r === first });
      assert.ok(p.pending.size <= reqq, `reqq ${reqq}: ${p.pending.size} outstanding`);
    }
  }
});

/**
 * A seed with a round trip of `latencyMs` (a request is answered no sooner)
 * that sends at most `rate` bytes/s, for `seconds` of simulated time in 5 ms
 * steps. Returns the requests outstanding at the end and the bytes received
 * in the last second.
 */
function pipeline(o: { rate: number; latencyMs: number; reqq?: number; seconds?: number }): { outstanding: number; lastSecond: number; most: number } {
  const fx = fixture({ pieceLength: 1024 * KiB, length: 512 * 1024 * KiB, fakeData: true });
  const h = new Harness(fx);
  h.autoVerify = false; // the data is made up: nothing is hashed
  const p = h.peer({ reqq: o.reqq ?? 2000 });
  const sentAt = new Map<string, number>();
  const step = 5;
  const end = (o.seconds ?? 6) * 1000;
  let budget = 0;
  let lastSecond = 0;
  let most = 0;
  p.feed({ type: 'unchoke' });
  for (let t = 0; t < end; t += step) {
    for (const k of p.pending.keys()) if (!sentAt.has(k)) sentAt.set(k, h.now);
    most = Math.max(most, p.pending.size);
    budget = Math.min(budget + (o.rate * step) / 1000, o.rate); // at most a second's worth saved up
    const msgs: MessageInput[] = [];
    for (const [k, r] of p.pending) {
      if (h.now - sentAt.get(k)! < o.latencyMs || budget < r.length) break; // served in order
      budget -= r.length;
      p.pending.delete(k);
      sentAt.delete(k);
      if (t >= end - 1000) lastSecond += r.length;
      msgs.push({ type: 'piece', index: r.index, begin: r.begin, block: Buffer.alloc(r.length) });
    }
    if (msgs.length > 0) p.feed(...msgs);
    h.advance(step);
  }
  return { outstanding: p.pending.size, lastSecond, most };
}

test('the request pipeline follows the bandwidth-delay product: deeper for a faster or farther peer, within reqq, and the link stays full', () => {
  const MB = 1_000_000;
  const near = pipeline({ rate: 1 * MB, latencyMs: 20, seconds: 10 });
  const far = pipeline({ rate: 1 * MB, latencyMs: 2000, seconds: 10 });
  const fastFar = pipeline({ rate: 2 * MB, latencyMs: 2000, seconds: 10 });
  const capped = pipeline({ rate: 2 * MB, latencyMs: 2000, reqq: 150, seconds: 10 });
  assert.ok(near.outstanding < far.outstanding, `latency: ${near.outstanding} < ${far.outstanding}`);
  assert.ok(far.outstanding < fastFar.outstanding, `rate: ${far.outstanding} < ${fastFar.outstanding}`);
  // Enough to cover the round trip (rate x latency / 16 KiB), not wildly more.
  const bdp = (rate: number, ms: number): number => (rate * ms) / 1000 / BLOCK;
  assert.ok(far.outstanding >= bdp(1 * MB, 2000) && far.outstanding <= 3 * bdp(1 * MB, 2000) + 16, `far ${far.outstanding} vs BDP ${bdp(1 * MB, 2000)}`);
  assert.ok(fastFar.outstanding >= bdp(2 * MB, 2000) && fastFar.outstanding <= 3 * bdp(2 * MB, 2000) + 16, `fast far ${fastFar.outstanding} vs BDP ${bdp(2 * MB, 2000)}`);
  // A near peer gets the floor's worth, about 1.5 s of its rate, not the most it would take.
  assert.ok(near.outstanding <= 1.5 * bdp(1 * MB, 1000) + 16, `near ${near.outstanding}`);
  // The peer's reqq bounds it, all along.
  assert.ok(capped.most <= 150, `capped at most ${capped.most}`);
  // Each link is kept busy: the last second moved (nearly) the peer's whole rate.
  for (const [name, r, rate] of [['near', near, 1 * MB], ['far', far, 1 * MB], ['fast far', fastFar, 2 * MB]] as const) {
    assert.ok(r.lastSecond >= 0.9 * rate, `${name}: ${r.lastSecond} bytes in the last second`);
  }
  // The reqq-capped one cannot be: 150 blocks per 2 s round trip is about 1.2 MB/s.
  assert.ok(capped.lastSecond < 0.9 * 2 * MB, `capped ${JSON.stringify(capped)}`);
});

test('received blocks become writes, a complete piece a verify; a good hash announces it and completes once', () => {
  const fx = fixture();
  const h = new Harness(fx);
  h.autoVerify = false;
  const a = h.peer();
  const b = h.peer({ seed: false });
  a.feed({ type: 'unchoke' });
  const before = h.actions.length;
  a.serve();
  const writes = h.actionsOf('write', before);
  assert.ok(writes.length > 0);
  for (const w of writes) {
    const start = w.index * fx.pieceLength + w.begin;
    assert.ok(w.data.equals(fx.data.subarray(start, start + w.data.length)));
  }
  // Verify actions come only for pieces whose every block was written.
  const written = new Set(writes.map((w) => bkey(w)));
  for (const v of h.actionsOf('verify', before)) for (const blk of blocksOf(fx, v.index)) assert.ok(written.has(bkey(blk)));
  for (let round = 0; round < 50 && h.verified.length < fx.pieceCount; round++) {
    while (h.verifyQueue.length > 0) {
      const i = h.verifyQueue.shift()!;
      const haves = b.of('have').length;
      h.hashPiece(i);
      h.drain();
      assert.equal(b.of('have').length, haves + 1, 'HAVE broadcast to the other peer');
      assert.equal(b.of('have').at(-1)!.index, i);
    }
    a.serve();
  }
  assert.deepEqual([...h.verified].sort((x, y) => x - y), [...Array(fx.pieceCount).keys()]);
  assert.equal(h.completes, 1);
  assert.ok(h.image.equals(fx.data));
  // A late duplicate hash result changes nothing.
  h.core.pieceHashed(h.now, 0, true);
  h.drain();
  assert.equal(h.completes, 1);
  assert.equal(h.verified.length, fx.pieceCount);
  assert.equal(h.core.isComplete, true);
  assert.equal(a.closed, 'both seeds');
});

test('a bad piece from one peer: piece-failed, that peer banned and closed, the piece fetched again elsewhere, the address never dialled', () => {
  const fx = fixture();
  const h = new Harness(fx);
  const bad = h.peer({ host: '10.6.6.6' });
  bad.feed({ type: 'unchoke' });
  const asked = [...bad.pending.values()];
  const pieces = new Set(asked.map((r) => r.index));
  bad.serve({ corrupt: true });
  const failed = h.actionsOf('piece-failed');
  assert.ok(failed.length >= 1);
  assert.ok(pieces.has(failed[0]!.index));
  assert.deepEqual(failed[0]!.peers, [bad.endpoint]);
  const banned = h.actionsOf('banned');
  assert.equal(banned.length, 1);
  assert.deepEqual(banned[0]!.endpoint, bad.endpoint);
  assert.match(bad.closed ?? '', /banned/);
  assert.deepEqual(h.actionsOf('close').filter((a) => a.peer === bad.handle).map((a) => a.kind), ['ban']);
  assert.equal(h.core.stats(h.now).banned, 1);
  assert.ok(h.core.stats(h.now).wasted > 0);

  // An honest peer gets the failed piece asked again and completes the torrent.
  const good = h.peer();
  good.feed({ type: 'unchoke' });
  assert.ok(good.of('request').some((r) => r.index === failed[0]!.index));
  for (let i = 0; i < 20 && !h.core.isComplete; i++) good.serve();
  assert.equal(h.completes, 1);
  assert.ok(h.image.equals(fx.data));

  // The banned address is ignored from now on, whichever way it comes.
  const dialled = h.connects.length;
  h.core.addPeers(h.now, [{ host: '10.6.6.6', port: 6881 }, { host: '10.6.6.6', port: 51413 }], 'pex');
  h.drain();
  h.advance(5 * 60_000);
  assert.ok(h.connects.slice(dialled).every((e) => e.host !== '10.6.6.6'));
  const again = h.connect('in', { host: '10.6.6.6', port: 40000 });
  assert.match(again.closed ?? '', /banned/);
});

test('pieces shared with a peer already banned for bad data do not count against the others', () => {
  const fx = fixture({ pieceLength: 64 * KiB, length: 8 * 64 * KiB });
  const h = new Harness(fx, { maxStrikes: 1 });
  h.autoVerify = false;
  const bad = h.peer({ reqq: 2, host: '10.6.6.6' });
  const good = h.peer({ reqq: 2 });
  const owner = new Map<string, FakePeer>();
  // The bad peer alone first (a piece of its own), then both with two requests each: pieces get shared.
  bad.feed({ type: 'unchoke' });
  for (let i = 0; i < 2; i++) {
    for (const r of bad.pending.values()) owner.set(bkey(r), bad);
    bad.serve({ corrupt: true });
  }
  good.feed({ type: 'unchoke' });
  for (let i = 0; i < 12; i++) {
    for (const r of bad.pending.values()) owner.set(bkey(r), bad);
    for (const r of good.pending.values()) owner.set(bkey(r), good);
    bad.serve({ corrupt: true });
    good.serve();
  }
  const byPiece = new Map<number, Set<FakePeer>>();
  for (const [k, p] of owner) {
    const i = Number(k.split(':')[0]);
    byPiece.set(i, (byPiece.get(i) ?? new Set()).add(p));
  }
  const queued = [...h.verifyQueue];
  const sole = queued.filter((i) => byPiece.get(i)!.size === 1 && byPiece.get(i)!.has(bad));
  const shared = queued.filter((i) => byPiece.get(i)!.size === 2);
  assert.ok(sole.length > 0 && shared.length > 0, `sole ${sole} shared ${shared}`);
  h.verifyQueue.length = 0;
  // The bad peer's own piece fails first: it is banned. Then the shared ones fail.
  h.hashPiece(sole[0]!);
  h.drain();
  assert.deepEqual(h.actionsOf('banned').map((b) => b.endpoint.host), ['10.6.6.6']);
  for (const i of shared) h.hashPiece(i);
  h.drain();
  assert.ok(h.actionsOf('piece-failed').length >= 1 + shared.length);
  assert.deepEqual(h.actionsOf('banned').map((b) => b.endpoint.host), ['10.6.6.6'], 'the honest peer is not banned for sharing pieces with it');
  assert.equal(good.closed, undefined);
  for (let i = 0; i < 100 && !h.core.isComplete; i++) {
    good.serve();
    while (h.verifyQueue.length > 0) h.hashPiece(h.verifyQueue.shift()!);
    h.drain();
  }
  assert.equal(h.completes, 1);
  assert.ok(h.image.equals(fx.data));
});

test('strikes: a peer never the sole sender, in three bad pieces each shared with a different honest peer, is banned at the third; the honest ones are not', () => {
  const fx = fixture({ pieceLength: 2 * BLOCK, length: 12 * 2 * BLOCK });
  const h = new Harness(fx); // maxStrikes 3 (the default)
  h.autoVerify = false;
  const bad = h.peer({ reqq: 1, host: '10.6.6.6' });
  bad.feed({ type: 'unchoke' });
  const honest: FakePeer[] = [];
  for (let k = 0; k < 3; k++) {
    assert.equal(bad.pending.size, 1);
    const mine = [...bad.pending.values()][0]!;
    assert.equal(mine.begin, 0, 'the bad peer starts a new piece');
    // A new honest peer takes the other block of that piece: the piece is shared.
    const hk = h.peer({ reqq: 1, fast: false });
    honest.push(hk);
    hk.feed({ type: 'unchoke' });
    assert.deepEqual([...hk.pending.values()].map((r) => [r.index, r.begin]), [[mine.index, BLOCK]]);
    hk.serve();
    hk.feed({ type: 'choke' }); // and steps aside, so the next piece goes to the next one
    bad.serve({ corrupt: true });
    assert.deepEqual(h.verifyQueue, [mine.index]);
    h.hashPiece(h.verifyQueue.shift()!);
    h.drain();
    const failed = h.actionsOf('piece-failed').at(-1)!;
    assert.equal(failed.index, mine.index);
    assert.deepEqual(new Set(failed.peers.map((e) => e.host)), new Set(['10.6.6.6', hk.endpoint.host]), 'both senders are named');
    if (k < 2) {
      assert.equal(h.actionsOf('banned').length, 0, `no ban after ${k + 1} shared bad piece(s)`);
      assert.equal(bad.closed, undefined);
    }
  }
  assert.deepEqual(h.actionsOf('banned').map((b) => b.endpoint.host), ['10.6.6.6']);
  assert.match(h.actionsOf('banned')[0]!.reason, /3 piece\(s\) that failed/);
  assert.match(bad.closed ?? '', /banned/);
  for (const hk of honest) assert.equal(hk.closed, undefined, 'honest peers stay');
  // The honest peers finish the download.
  for (const hk of honest) hk.feed({ type: 'unchoke' });
  for (let i = 0; i < 200 && !h.core.isComplete; i++) {
    for (const hk of honest) hk.serve();
    while (h.verifyQueue.length > 0) h.hashPiece(h.verifyQueue.shift()!);
    h.drain();
  }
  assert.equal(h.completes, 1);
  assert.ok(h.image.equals(fx.data));
});

test('a peer that disconnects before its bad piece is hashed is still blamed and banned', () => {
  const fx = fixture();
  const h = new Harness(fx);
  h.autoVerify = false;
  const bad = h.peer({ host: '10.6.6.7' });
  bad.feed({ type: 'unchoke' });
  bad.serve({ corrupt: true });
  assert.ok(h.verifyQueue.length > 0);
  // It hangs up while the disk is hashing.
  h.core.peerClosed(h.now, bad.handle);
  bad.closed = 'gone';
  h.drain();
  while (h.verifyQueue.length > 0) h.hashPiece(h.verifyQueue.shift()!);
  h.drain();
  const failed = h.actionsOf('piece-failed');
  assert.ok(failed.length > 0);
  assert.deepEqual(failed[0]!.peers, [bad.endpoint]);
  assert.equal(h.actionsOf('banned').length, 1);
  h.core.addPeers(h.now, [bad.endpoint], 'tracker');
  h.drain();
  assert.ok(h.connects.every((e) => e.host !== '10.6.6.7'));
});

// ---------------------------------------------------------------- protocol violations

test('protocol violations close the connection with a reason', () => {
  const fx = fixture();
  const cases: [string, (h: Harness) => FakePeer, RegExp][] = [
    ['out-of-range have', (h) => { const p = h.peer({ seed: false }); p.feed({ type: 'have', index: fx.pieceCount }); return p; }, /out of range/],
    ['request beyond the piece end', (h) => { const p = h.peer({ seed: false }); p.feed({ type: 'request', index: fx.pieceCount - 1, begin: 0, length: BLOCK }); return p; }, /request out of range/],
    ['request for a piece index past the end', (h) => { const p = h.peer({ seed: false }); p.feed({ type: 'request', index: fx.pieceCount, begin: 0, length: BLOCK }); return p; }, /request out of range/],
    ['oversized request', (h) => { const p = h.peer({ seed: false }); p.feed({ type: 'request', index: 0, begin: 0, length: 256 * KiB }); return p; }, /request out of range/],
    ['oversized length prefix', (h) => { const p = h.peer({ seed: false }); p.raw(Buffer.from([0xff, 0xff, 0xff, 0xff, 7])); return p; }, /protocol error.*exceeds/],
    ['bitfield with spare bits', (h) => { const p = h.peer({ seed: false, fast: false }); const bf = Buffer.alloc(Math.ceil(fx.pieceCount / 8), 0xff); p.feed({ type: 'bitfield', bytes: bf }); return p; }, /spare bits/],
    ['bitfield of the wrong size', (h) => { const p = h.peer({ seed: false, fast: false }); p.feed({ type: 'bitfield', bytes: Buffer.alloc(9) }); return p; }, /bitfield/],
    ['bitfield after have', (h) => { const p = h.peer({ seed: false, fast: false }); p.feed({ type: 'have', index: 0 }, { type: 'bitfield', bytes: bitfieldOf(fx.pieceCount, [1]) }); return p; }, /bitfield after/],
    ['have-all without fast', (h) => { const p = h.peer({ seed: false, fast: false }); p.feed({ type: 'have-all' }); return p; }, /have-all without the fast extension/],
    ['have-none without fast', (h) => { const p = h.peer({ seed: false, fast: false }); p.feed({ type: 'have-none' }); return p; }, /have-none without the fast extension/],
    ['have-all after have-none', (h) => { const p = h.peer({ seed: false }); p.feed({ type: 'have-all' }); return p; }, /after other piece announcements/],
    ['reject without fast', (h) => { const p = h.peer({ fast: false }); p.feed({ type: 'reject', index: 0, begin: 0, length: BLOCK }); return p; }, /reject without the fast extension/],
    ['a block past the piece end', (h) => { const p = h.peer(); p.feed({ type: 'piece', index: fx.pieceCount - 1, begin: 0, block: Buffer.alloc(BLOCK) }); return p; }, /block out of range/],
    ['not a handshake', (h) => { const p = h.connect('in'); p.raw(Buffer.from('GET / HTTP/1.1\r\n\r\n')); return p; }, /protocol error/],
  ];
  for (const [name, run, reason] of cases) {
    const h = new Harness(fx);
    const p = run(h);
    assert.match(p.closed ?? '(still open)', reason, name);
    // Marked as a violation, so the driver can report it (src/client/torrent.ts: the 'disconnect' event).
    const closes = h.actionsOf('close').filter((a) => a.peer === p.handle);
    assert.deepEqual(closes.map((a) => a.kind), ['violation'], name);
    // Nothing more is sent to a closed peer (the harness asserts it too).
    const n = p.got.length;
    h.advance(60_000);
    assert.equal(p.got.length, n, name);
  }
});

test('unknown message ids are skipped, the connection goes on', () => {
  const h = new Harness(fixture());
  const p = h.peer({ fast: false });
  const unknown = Buffer.from([0, 0, 0, 3, 99, 1, 2]);
  p.raw(Buffer.concat([unknown, encodeMessage({ type: 'unchoke' })]));
  assert.equal(p.closed, undefined);
  assert.ok(p.of('request').length > 0, 'the unchoke after it was read');
});

// ---------------------------------------------------------------- uploading

/** A seed core and a peer that wants everything, unchoked by the first rechoke. */
function seeding(o: { fast?: boolean } & Partial<TorrentCoreOptions> = {}): { h: Harness; p: FakePeer } {
  const fx = fixture();
  const h = new Harness(fx, { have: [...Array(fx.pieceCount).keys()], ...o });
  const p = h.peer({ seed: false, fast: o.fast ?? true });
  p.feed({ type: 'interested' });
  h.advance(0);
  return { h, p };
}

test('BEP 6 suggest, sent: a new interested peer is told the pieces we served last (at most 4, not ones it has), once; not without fast', () => {
  const fx = fixture({ pieceLength: 32 * KiB, length: 20 * 32 * KiB });
  const h = new Harness(fx, { have: [...Array(fx.pieceCount).keys()] });
  const first = h.peer({ seed: false });
  first.feed({ type: 'interested' });
  h.advance(0);
  assert.equal(first.of('suggest').length, 0, 'nothing served yet: nothing to suggest');
  // It fetches pieces 3, 9, 4, 12, 15, 9 (served in that order).
  for (const i of [3, 9, 4, 12, 15, 9]) first.feed({ type: 'request', index: i, begin: 0, length: BLOCK });
  assert.equal(first.of('piece').length, 6);
  // A newcomer that has piece 15 already.
  const b = h.peer({ seed: false, fast: false });
  const c = h.peer({ seed: false });
  c.feed({ type: 'have', index: 15 });
  for (const p of [b, c]) p.feed({ type: 'interested' });
  assert.deepEqual(c.of('suggest').map((m) => m.index), [9, 12, 4, 3], 'most recent first, bounded, without 15');
  assert.equal(b.of('suggest').length, 0, 'suggest is a fast-extension message');
  // Once per connection.
  c.feed({ type: 'not-interested' }, { type: 'interested' });
  assert.equal(c.of('suggest').length, 4);
});

test('BEP 6 suggest, received: the suggested piece is fetched first among equals; a bad index closes the connection', () => {
  const fx = fixture({ pieceLength: 16 * KiB, length: 64 * 16 * KiB });
  const h = new Harness(fx);
  const p = h.peer();
  p.feed({ type: 'suggest', index: 37 }, { type: 'unchoke' });
  assert.equal(p.of('request')[0]!.index, 37);
  const q = h.peer();
  q.feed({ type: 'suggest', index: fx.pieceCount });
  assert.match(q.closed ?? '', /out of range/);
});

test('incoming requests: served once unchoked, with the right data', () => {
  const { h, p } = seeding();
  assert.equal(p.of('unchoke').length, 1);
  p.feed({ type: 'request', index: 1, begin: BLOCK, length: BLOCK });
  const pieces = p.of('piece');
  assert.equal(pieces.length, 1);
  assert.ok(pieces[0]!.block.equals(h.fx.data.subarray(h.fx.pieceLength + BLOCK, h.fx.pieceLength + 2 * BLOCK)));
  assert.equal(h.core.stats(h.now).uploaded, BLOCK);
});

test('requests while we choke: rejected with fast (except allowed-fast pieces), dropped without', () => {
  const fx = fixture({ pieceLength: 16 * KiB, length: 30 * 16 * KiB });
  const all = [...Array(fx.pieceCount).keys()];
  const h = new Harness(fx, { have: all });
  const f = h.peer({ seed: false });
  const allowed = f.of('allowed-fast').map((m) => m.index);
  const notAllowed = all.find((i) => !allowed.includes(i));
  assert.ok(notAllowed !== undefined && allowed.length > 0);
  f.feed({ type: 'request', index: notAllowed, begin: 0, length: BLOCK });
  assert.deepEqual(f.of('reject').map((r) => r.index), [notAllowed]);
  assert.equal(h.actionsOf('read').length, 0);
  f.feed({ type: 'request', index: allowed[0]!, begin: 0, length: BLOCK });
  assert.equal(f.of('piece').length, 1, 'an allowed-fast piece is served while choked');

  const n = h.peer({ seed: false, fast: false });
  const reads = h.actionsOf('read').length;
  n.feed({ type: 'request', index: 0, begin: 0, length: BLOCK });
  assert.equal(n.closed, undefined);
  assert.equal(n.of('piece').length + n.of('reject').length, 0);
  assert.equal(h.actionsOf('read').length, reads, 'no disk read for a choked peer');
});

test('a request for a piece we do not have is rejected (fast)', () => {
  const fx = fixture();
  const h = new Harness(fx, { have: [0] });
  const p = h.peer({ seed: false });
  p.feed({ type: 'interested' });
  h.advance(0);
  assert.equal(p.of('unchoke').length, 1);
  p.feed({ type: 'request', index: 1, begin: 0, length: BLOCK });
  assert.deepEqual(p.of('reject').map((r) => r.index), [1]);
  assert.equal(p.closed, undefined);
});

test('choking a peer rejects its queued requests (fast)', () => {
  const fx = fixture({ pieceLength: 16 * KiB, length: 30 * 16 * KiB });
  const h = new Harness(fx, { have: [...Array(fx.pieceCount).keys()], regularUnchokeSlots: 1 });
  const a = h.peer({ seed: false });
  const b = h.peer({ seed: false });
  a.feed({ type: 'interested' });
  b.feed({ type: 'interested' });
  h.advance(0);
  assert.equal(a.of('unchoke').length, 1);
  assert.equal(b.of('unchoke').length, 1, 'one regular and one optimistic slot');
  // a's socket is full: its requests wait in the queue.
  h.core.setCongested(h.now, a.handle, true);
  const allowed = new Set(a.of('allowed-fast').map((m) => m.index));
  const reqs = blocksOf(fx, 0).concat(blocksOf(fx, 1)).filter((r) => !allowed.has(r.index));
  assert.ok(reqs.length > 0);
  a.feed(...reqs.map((r) => ({ type: 'request' as const, ...r })));
  assert.equal(a.of('piece').length, 0);
  // Losing interest gets a choked at the next rechoke (it is brought forward).
  a.feed({ type: 'not-interested' });
  h.advance(0);
  assert.equal(a.of('choke').length, 1);
  assert.deepEqual(
    a.of('reject').map(bkey).sort(),
    reqs.map(bkey).sort(),
  );
  h.core.setCongested(h.now, a.handle, false);
  h.drain();
  assert.equal(a.of('piece').length, 0, 'nothing served after the rejects');
});

test('a cancel before the read completes: no piece is sent (a reject with fast)', () => {
  for (const fast of [false, true]) {
    const { h, p } = seeding({ fast });
    h.autoRead = false;
    p.feed({ type: 'request', index: 0, begin: 0, length: BLOCK });
    assert.equal(h.readQueue.length, 1);
    p.feed({ type: 'cancel', index: 0, begin: 0, length: BLOCK });
    h.doRead(h.readQueue.shift()!);
    h.drain();
    assert.equal(p.of('piece').length, 0, `fast ${fast}`);
    // BEP 6: every request gets exactly one answer, a piece or a reject.
    assert.equal(p.of('reject').length, fast ? 1 : 0, `fast ${fast}`);
  }
  // Cancelled while still queued (socket congested): never read at all.
  const { h, p } = seeding({ fast: false });
  h.core.setCongested(h.now, p.handle, true);
  p.feed({ type: 'request', index: 0, begin: 0, length: BLOCK }, { type: 'cancel', index: 0, begin: 0, length: BLOCK });
  h.core.setCongested(h.now, p.handle, false);
  h.drain();
  assert.equal(h.actionsOf('read').length, 0);
  assert.equal(p.of('piece').length, 0);
});

test('the upload limit delays reads, and pollTimeout says when to come back', () => {
  const rate = 32 * KiB;
  const { h, p } = seeding({ uploadLimiter: new TokenBucket(rate, 32 * KiB) });
  h.autoRead = true;
  const reqs = [0, 1, 2, 3].flatMap((i) => blocksOf(h.fx, i)).slice(0, 12);
  p.feed(...reqs.map((r) => ({ type: 'request' as const, ...r })));
  const start = h.now;
  const servedAtStart = p.of('piece').length;
  assert.ok(servedAtStart >= 1 && servedAtStart <= 3, `${servedAtStart} blocks at once`);
  const t = h.core.pollTimeout();
  assert.ok(t !== undefined && t > h.now && t <= h.now + 1000, `wake at ${t} (now ${h.now})`);
  // Over 4 s, about rate * 4 s + the burst goes out, never more.
  for (let ms = 0; ms < 4000; ms += 100) {
    h.advance(100);
    const sent = p.of('piece').length * BLOCK;
    const allowed = rate * ((h.now - start) / 1000) + 32 * KiB + BLOCK;
    assert.ok(sent <= allowed, `${sent} bytes sent by ${h.now - start} ms (allowed ${allowed})`);
  }
  assert.ok(p.of('piece').length >= 8, `only ${p.of('piece').length} blocks in 4 s at 32 KiB/s`);
});

// ---------------------------------------------------------------- seeding and time

test('the download limit paces requests: about rate x time + the burst are asked for, never a whole pipeline at once', () => {
  const rate = 64 * KiB;
  const fx = fixture({ pieceLength: 256 * KiB, length: 16 * 256 * KiB });
  const h = new Harness(fx, { downloadLimiter: new TokenBucket(rate, 64 * KiB) });
  const p = h.peer();
  p.feed({ type: 'unchoke' });
  const start = h.now;
  // The first batch: the burst's worth and one more, not the pipeline's depth.
  assert.ok(p.of('request').length <= 64 / 16 + 1, `${p.of('request').length} requests at once`);
  for (let ms = 0; ms < 10_000; ms += 50) {
    p.serve(); // an instant, unlimited seed: only the limit holds us back
    h.advance(50);
    const asked = p.of('request').reduce((n, r) => n + r.length, 0);
    const allowed = rate * ((h.now - start) / 1000) + 64 * KiB + 2 * BLOCK;
    assert.ok(asked <= allowed, `${asked} bytes requested by ${h.now - start} ms (allowed ${allowed})`);
  }
  const got = p.of('request').length * BLOCK;
  assert.ok(got >= 0.8 * rate * 10, `only ${got} bytes in 10 s at ${rate} B/s`);
});

test('two seeds disconnect', () => {
  const fx = fixture();
  const all = [...Array(fx.pieceCount).keys()];
  const h = new Harness(fx, { have: all });
  const f = h.peer({ fast: true });
  assert.equal(f.closed, 'both seeds');
  const n = h.peer({ fast: false });
  assert.equal(n.closed, 'both seeds');
  // A leecher that completes later, by haves.
  const l = h.peer({ seed: false, fast: false });
  for (const i of all) l.feed({ type: 'have', index: i });
  assert.equal(l.closed, 'both seeds');
  // And a download finishing closes the seeds it had.
  const d = new Harness(fx);
  const s = d.peer();
  const leech = d.peer({ seed: false });
  s.feed({ type: 'unchoke' });
  for (let i = 0; i < 20 && !d.core.isComplete; i++) s.serve();
  assert.equal(s.closed, 'both seeds');
  assert.equal(leech.closed, undefined);
});

test('a keep-alive after about two minutes without sending', () => {
  const h = new Harness(fixture());
  const p = h.peer({ seed: false });
  // The peer keeps talking (so it is not idle), we have nothing to say.
  const keepAlives = (): number => p.of('keep-alive').length;
  h.advanceBy(100_000, 10_000, () => p.feed({ type: 'keep-alive' }));
  assert.equal(keepAlives(), 0);
  h.advanceBy(15_000, 1000, () => p.feed({ type: 'keep-alive' }));
  assert.equal(keepAlives(), 1);
  h.advanceBy(100_000, 10_000, () => p.feed({ type: 'keep-alive' }));
  assert.equal(keepAlives(), 1);
  h.advanceBy(20_000, 1000, () => p.feed({ type: 'keep-alive' }));
  assert.equal(keepAlives(), 2);
  assert.equal(p.closed, undefined);
});

test('a peer silent for four minutes is closed', () => {
  const h = new Harness(fixture());
  const p = h.peer({ seed: false });
  h.advance(235_000);
  assert.equal(p.closed, undefined);
  h.advance(10_000);
  assert.equal(p.closed, 'inactive');
  // A connection that never handshakes is dropped much sooner.
  const q = h.connect('in');
  h.advance(25_000);
  assert.equal(q.closed, 'no handshake');
});

test('a request timeout re-issues the blocks to another peer and cancels them at the slow one', () => {
  const fx = fixture({ pieceLength: 64 * KiB, length: 32 * 64 * KiB });
  const h = new Harness(fx, { requestTimeoutMs: 30_000 });
  const slow = h.peer();
  slow.feed({ type: 'unchoke' });
  const stuck = [...slow.pending.values()];
  assert.ok(stuck.length > 0);
  const other = h.peer();
  other.feed({ type: 'unchoke' });
  // The other peer answers a block a second; the slow one never answers.
  const step = (): void => {
    slow.feed({ type: 'keep-alive' });
    const first = other.pending.values().next().value;
    if (first) other.serve({ which: (r) => r === first });
  };
  h.advanceBy(29_000, 1000, step);
  assert.equal(slow.of('cancel').length, 0, 'not before the timeout');
  assert.ok(other.of('request').every((r) => !stuck.some((s) => bkey(s) === bkey(r))), 'nothing stuck asked twice yet');
  h.advanceBy(3000, 1000, step);
  assert.deepEqual(slow.of('cancel').map(bkey).sort(), stuck.map(bkey).sort(), 'the stuck requests cancelled at the slow peer');
  assert.equal(h.core.stats(h.now).endgame, false, 'this is not the endgame asking twice');
  assert.ok(h.core.peerSnapshots(h.now).find((x) => x.handle === slow.handle)!.snubbed);
  // The blocks went back to the pool: the other peer gets them in due course, the slow one is left alone.
  const stuckKeys = new Set(stuck.map(bkey));
  const reissued = new Set<string>();
  let endgameAt = -1;
  for (let i = 0; i < 1000 && !h.core.isComplete; i++) {
    const before = other.got.length;
    step();
    for (const m of other.got.slice(before)) if (m.type === 'request' && stuckKeys.has(bkey(m))) reissued.add(bkey(m));
    if (endgameAt < 0 && h.core.stats(h.now).endgame) endgameAt = reissued.size;
  }
  assert.equal(reissued.size, stuck.length, 'every stuck block asked of the other peer');
  assert.equal(endgameAt, stuck.length, 'all of them before the endgame');
  assert.equal(slow.pending.size, 0);
  assert.equal(h.completes, 1);
  assert.ok(h.image.equals(fx.data));
});

/** A 2 MiB torrent (64 KiB pieces), one seed peer that has unchoked us; the request timeout 30 s. */
function unchokedPeer(): { fx: Fixture; h: Harness; p: FakePeer } {
  const fx = fixture({ pieceLength: 64 * KiB, length: 32 * 64 * KiB });
  const h = new Harness(fx, { requestTimeoutMs: 30_000 });
  const p = h.peer();
  p.feed({ type: 'unchoke' });
  return { fx, h, p };
}

test('a request the peer passed over is cancelled and asked again after 2 s (and 4 round trips), not at the request timeout', () => {
  const { fx, h, p } = unchokedPeer();
  const held = p.pending.values().next().value!;
  // It answers every request but the first one, as they come.
  const step = (): void => {
    p.serve({ which: (r) => bkey(r) !== bkey(held) });
  };
  step();
  h.advanceBy(2000, 500, step);
  assert.equal(p.of('cancel').length, 0, 'not within 2 s');
  assert.equal(p.of('request').filter((r) => bkey(r) === bkey(held)).length, 1);
  h.advanceBy(1500, 500, step);
  assert.deepEqual(p.of('cancel').map(bkey), [bkey(held)], 'the passed-over request is cancelled, and only it');
  assert.equal(p.of('request').filter((r) => bkey(r) === bkey(held)).length, 2, 'and asked again');
  assert.equal(h.core.peerSnapshots(h.now)[0]!.snubbed, false, 'the peer is not snubbed for it');
  for (let i = 0; i < 50 && !h.core.isComplete; i++) p.serve();
  assert.ok(h.core.isComplete);
  assert.ok(h.image.equals(fx.data));
});

test('a request answered out of order soon after it was passed over is left alone, however long it waited in the queue before (a rate-limited seeder)', () => {
  const { h, p } = unchokedPeer();
  const first = p.pending.values().next().value!;
  // Nothing answered for 3 s (the requests queue at the peer), then all but the first one,
  // and the first one a second later.
  h.advanceBy(3000, 500, () => p.feed({ type: 'keep-alive' }));
  p.serve({ which: (r) => bkey(r) !== bkey(first) });
  h.advanceBy(1000, 500, () => p.serve({ which: (r) => bkey(r) !== bkey(first) }));
  assert.equal(p.of('cancel').length, 0, 'passed over for 1 s only: not cancelled though 4 s old');
  p.serve();
  for (let i = 0; i < 50 && !h.core.isComplete; i++) p.serve();
  assert.ok(h.core.isComplete);
  assert.equal(p.of('cancel').length, 0);
  assert.equal(p.of('request').filter((r) => bkey(r) === bkey(first)).length, 1, 'asked once');
});

test('requests not yet passed over are left alone however long they wait (a slow peer is the request timeout\'s business)', () => {
  const { h, p } = unchokedPeer();
  // It answers one request every 5 s, oldest first: slow, but in order.
  h.advanceBy(20_000, 5000, () => {
    const first = p.pending.values().next().value;
    if (first) p.serve({ which: (r) => r === first });
  });
  assert.equal(p.of('cancel').length, 0);
});

test('the request timeout counts from the request, not from the last block long ago', () => {
  const fx = fixture();
  const h = new Harness(fx, { requestTimeoutMs: 30_000 });
  const p = h.peer();
  // It keeps us choked for a minute (keep-alives only), then unchokes.
  h.advanceBy(60_000, 10_000, () => p.feed({ type: 'keep-alive' }));
  p.feed({ type: 'unchoke' });
  const asked = p.of('request').length;
  assert.ok(asked > 0);
  h.advanceBy(5000, 1000, () => p.feed({ type: 'keep-alive' }));
  assert.equal(p.of('cancel').length, 0, 'requests 5 s old did not time out');
  assert.equal(p.of('request').length, asked, 'and were not re-issued');
  assert.equal(h.core.peerSnapshots(h.now)[0]!.outstanding, asked, 'they are still outstanding');
  for (let i = 0; i < 20 && !h.core.isComplete; i++) p.serve();
  assert.ok(h.core.isComplete);
});

// ---------------------------------------------------------------- metadata (BEP 9)

/** A peer with the info dictionary, serving ut_metadata pieces (optionally bad ones). */
function metadataServer(p: FakePeer, info: Buffer, o: { corrupt?: boolean } = {}): number {
  const ours = p.coreExt?.m.get('ut_metadata');
  assert.ok(ours, 'the core announced ut_metadata');
  let served = 0;
  for (const m of p.of('extended')) {
    if (m.id !== 3) continue; // the id the fake peer gave ut_metadata
    const msg = decodeMetadataMessage(m.payload);
    if (msg.msgType !== 'request') continue;
    const data = Buffer.from(info.subarray(msg.piece * 16384, Math.min(info.length, (msg.piece + 1) * 16384)));
    if (o.corrupt) data[0]! ^= 1;
    served++;
    p.feed({ type: 'extended', id: ours, payload: encodeMetadataMessage({ msgType: 'data', piece: msg.piece, totalSize: info.length, data }) });
  }
  return served;
}

test('magnet start: the info is fetched from a peer over ut_metadata, then the download starts', () => {
  const fx = fixture({ pieceLength: 16 * KiB, length: 1200 * 16 * KiB, fakeData: true });
  assert.ok(fx.infoBytes.length > 16384, 'more than one metadata piece');
  const h = new Harness(fx, { noLayout: true });
  assert.equal(h.core.hasMetadata, false);
  const p = h.connect('out');
  p.handshake();
  p.ext({ m: { ut_metadata: 3 }, metadataSize: fx.infoBytes.length });
  p.feed({ type: 'have-all' }, { type: 'unchoke' });
  const requests = p.of('extended').filter((m) => m.id === 3).map((m) => decodeMetadataMessage(m.payload));
  assert.deepEqual(requests.map((r) => r.msgType), ['request', 'request']);
  assert.equal(p.of('request').length, 0, 'no block requests before the metadata');
  assert.ok(h.core.stats(h.now).metadataProgress === 0);
  metadataServer(p, fx.infoBytes);
  const meta = h.actionsOf('metadata');
  assert.equal(meta.length, 1);
  assert.ok(meta[0]!.metainfo.infoHash.equals(fx.infoHash));
  assert.equal(meta[0]!.metainfo.pieceCount, fx.pieceCount);
  assert.equal(h.core.hasMetadata, true);
  assert.equal(p.of('interested').length, 1);
  assert.ok(p.of('request').length > 0, 'block requests once the info is known');
  // Haves that arrived before the metadata count too.
  const h2 = new Harness(fx, { noLayout: true });
  const q = h2.connect('out');
  q.handshake({ fast: false });
  q.ext({ m: { ut_metadata: 3 }, metadataSize: fx.infoBytes.length });
  q.feed({ type: 'have', index: 5 }, { type: 'unchoke' });
  metadataServer(q, fx.infoBytes);
  assert.equal(h2.core.hasMetadata, true);
  assert.ok(q.of('request').length > 0);
  assert.ok(q.of('request').every((r) => r.index === 5));
});

test('metadata failing the info hash, from a single peer: banned; an honest peer then supplies it', () => {
  const fx = fixture({ pieceLength: 16 * KiB, length: 1200 * 16 * KiB, fakeData: true });
  const h = new Harness(fx, { noLayout: true });
  const bad = h.connect('out', { host: '10.6.6.6', port: 6881 });
  bad.handshake();
  bad.ext({ m: { ut_metadata: 3 }, metadataSize: fx.infoBytes.length });
  metadataServer(bad, fx.infoBytes, { corrupt: true });
  assert.equal(h.actionsOf('metadata').length, 0);
  const banned = h.actionsOf('banned');
  assert.equal(banned.length, 1);
  assert.equal(banned[0]!.endpoint.host, '10.6.6.6');
  assert.match(bad.closed ?? '', /banned.*info hash/);
  const good = h.connect('out');
  good.handshake();
  good.ext({ m: { ut_metadata: 3 }, metadataSize: fx.infoBytes.length });
  metadataServer(good, fx.infoBytes);
  assert.equal(h.actionsOf('metadata').length, 1);
});

test('a peer that never answers metadata requests does not hold up the others', () => {
  const fx = fixture({ pieceLength: 16 * KiB, length: 1200 * 16 * KiB, fakeData: true });
  const h = new Harness(fx, { noLayout: true });
  const mute = h.connect('out');
  mute.handshake();
  mute.ext({ m: { ut_metadata: 3 }, metadataSize: fx.infoBytes.length });
  assert.ok(mute.of('extended').filter((m) => m.id === 3).length > 0, 'the first peer is asked');
  const good = h.connect('out');
  good.handshake();
  good.ext({ m: { ut_metadata: 3 }, metadataSize: fx.infoBytes.length });
  // The good peer answers whatever it is asked, the mute one nothing (but it stays connected).
  for (let t = 0; t < 60 && !h.core.hasMetadata; t++) {
    metadataServer(good, fx.infoBytes);
    good.clear();
    h.advance(1000);
    mute.feed({ type: 'keep-alive' });
    good.feed({ type: 'keep-alive' });
  }
  assert.equal(h.core.hasMetadata, true);
  assert.ok(h.now < 1000 + 30_000, `took until ${h.now - 1000} ms`);
  assert.equal(mute.closed, undefined);
});

test('a peer that rejects metadata requests: the others are asked at once', () => {
  const fx = fixture({ pieceLength: 16 * KiB, length: 1200 * 16 * KiB, fakeData: true });
  const h = new Harness(fx, { noLayout: true });
  const no = h.connect('out');
  no.handshake();
  no.ext({ m: { ut_metadata: 3 }, metadataSize: fx.infoBytes.length });
  const good = h.connect('out');
  good.handshake();
  good.ext({ m: { ut_metadata: 3 }, metadataSize: fx.infoBytes.length });
  const ours = no.coreExt!.m.get('ut_metadata')!;
  for (const m of no.of('extended').filter((x) => x.id === 3)) {
    const r = decodeMetadataMessage(m.payload);
    no.feed({ type: 'extended', id: ours, payload: encodeMetadataMessage({ msgType: 'reject', piece: r.piece! }) });
  }
  metadataServer(good, fx.infoBytes);
  assert.equal(h.core.hasMetadata, true, 'no waiting for a timeout');
});

test('a peer lying about metadata_size does not lock out the honest peers', () => {
  const fx = fixture({ pieceLength: 16 * KiB, length: 1200 * 16 * KiB, fakeData: true });
  const h = new Harness(fx, { noLayout: true });
  const liar = h.connect('out', { host: '10.6.6.6', port: 6881 });
  liar.handshake();
  liar.ext({ m: { ut_metadata: 3 }, metadataSize: 5000 });
  const good = h.connect('out');
  good.handshake();
  good.ext({ m: { ut_metadata: 3 }, metadataSize: fx.infoBytes.length });
  // The liar serves nothing; the honest peer serves the real info.
  for (let i = 0; i < 5 && !h.core.hasMetadata; i++) {
    metadataServer(good, fx.infoBytes);
    good.clear();
    h.advanceBy(25_000, 5000, () => {
      liar.feed({ type: 'keep-alive' });
      good.feed({ type: 'keep-alive' });
    });
  }
  assert.equal(good.closed, undefined);
  assert.equal(h.core.hasMetadata, true);
});

test('serving ut_metadata: data when we have the info, reject when we do not or the piece is past the end', () => {
  const fx = fixture();
  const h = new Harness(fx);
  const p = h.peer({ seed: false });
  const ours = p.coreExt!.m.get('ut_metadata')!;
  p.feed({ type: 'extended', id: ours, payload: encodeMetadataMessage({ msgType: 'request', piece: 0 }) });
  const replies = p.of('extended').filter((m) => m.id === 3).map((m) => decodeMetadataMessage(m.payload));
  assert.equal(replies.length, 1);
  const r = replies[0]!;
  assert.equal(r.msgType, 'data');
  assert.ok(r.msgType === 'data' && r.totalSize === fx.infoBytes.length && r.data.equals(fx.infoBytes));
  p.feed({ type: 'extended', id: ours, payload: encodeMetadataMessage({ msgType: 'request', piece: 1 }) });
  assert.equal(decodeMetadataMessage(p.of('extended').filter((m) => m.id === 3).at(-1)!.payload).msgType, 'reject');

  const m = new Harness(fx, { noLayout: true });
  const q = m.peer({ seed: false });
  q.feed({ type: 'extended', id: q.coreExt!.m.get('ut_metadata')!, payload: encodeMetadataMessage({ msgType: 'request', piece: 0 }) });
  const rep = q.of('extended').filter((x) => x.id === 3).map((x) => decodeMetadataMessage(x.payload));
  assert.deepEqual(rep.map((x) => x.msgType), ['reject']);
});

// ---------------------------------------------------------------- PEX, limits

test('PEX: added peers become connect actions; nothing for a private torrent', () => {
  const fx = fixture();
  const h = new Harness(fx);
  const p = h.peer({ seed: false });
  const ours = p.coreExt!.m.get('ut_pex')!;
  const added = [
    { host: '10.1.2.3', port: 6881 },
    { host: '10.1.2.4', port: 51413 },
  ];
  p.feed({ type: 'extended', id: ours, payload: encodePex({ added, dropped: [] }) });
  assert.deepEqual(h.connects, added);
  assert.equal(h.core.stats(h.now).knownPeers, 2);

  const priv = new Harness(fixture({ private: true }));
  const q = priv.peer({ seed: false });
  q.feed({ type: 'extended', id: 2, payload: encodePex({ added, dropped: [] }) });
  assert.deepEqual(priv.connects, []);
  assert.equal(q.closed, undefined);
});

test('PEX: we tell peers about the others we are connected to', () => {
  const h = new Harness(fixture());
  const a = h.peer({ seed: false });
  const b = h.peer({ seed: false });
  h.advanceBy(61_000, 10_000, () => {
    a.feed({ type: 'keep-alive' });
    b.feed({ type: 'keep-alive' });
  });
  const pexToA = a.of('extended').filter((m) => m.id === 4);
  assert.equal(pexToA.length, 1);
});

test('connection limit: maxPeers connections, the next one is closed', () => {
  const h = new Harness(fixture(), { maxPeers: 3 });
  const ps = [h.peer({ seed: false, direction: 'in' }), h.peer({ seed: false, direction: 'in' }), h.peer({ seed: false, direction: 'in' })];
  for (const p of ps) assert.equal(p.closed, undefined);
  const extra = h.connect('in');
  assert.equal(extra.closed, 'too many peers');
  assert.deepEqual(h.actionsOf('close').filter((a) => a.peer === extra.handle).map((a) => a.kind), ['normal'], 'a limit is no violation');
  // One leaves: room for one more.
  h.core.peerClosed(h.now, ps[0]!.handle);
  ps[0]!.closed = 'gone';
  h.drain();
  const next = h.peer({ seed: false, direction: 'in' });
  assert.equal(next.closed, undefined);
  assert.equal(h.core.stats(h.now).peers, 3);
});

test('outgoing connections stay within maxPeers and maxConnecting', () => {
  const h = new Harness(fixture(), { maxPeers: 5, maxConnecting: 2 });
  const eps = Array.from({ length: 10 }, (_, i) => ({ host: `10.2.0.${i + 1}`, port: 6881 }));
  h.core.addPeers(h.now, eps, 'tracker');
  h.drain();
  assert.equal(h.connects.length, 2);
  h.core.connectFailed(h.now, h.connects[0]!);
  h.drain();
  assert.equal(h.connects.length, 3);
});

test('an unreachable peer is dialled again: one the user named for ever (2 s, 4 s, ... at most 30 s apart), one from a tracker five times', () => {
  const h = new Harness(fixture());
  const user = { host: '10.3.0.1', port: 6881 };
  const tracker = { host: '10.3.0.2', port: 6881 };
  h.core.addPeers(h.now, [user], 'user');
  h.core.addPeers(h.now, [tracker], 'tracker');
  h.drain();
  const sources = h.actionsOf('connect').map((a) => a.source).sort();
  assert.deepEqual(sources, ['tracker', 'user']);
  const dialTimes = new Map<string, number[]>([[user.host, []], [tracker.host, []]]);
  let seen = 0;
  const start = h.now;
  // Every attempt fails at once; 40 minutes go by.
  for (let step = 0; step < 2400; step++) {
    for (const e of h.connects.slice(seen)) {
      dialTimes.get(e.host)!.push(h.now - start);
      h.core.connectFailed(h.now, e);
    }
    seen = h.connects.length;
    h.drain();
    h.advance(1000);
  }
  const u = dialTimes.get(user.host)!;
  const t = dialTimes.get(tracker.host)!;
  assert.equal(t.length, 5, `tracker peer dialled at ${t.join(', ')}`);
  assert.ok(u.length > 60, `user peer dialled ${u.length} times`);
  const gaps = u.slice(1).map((x, i) => x - u[i]!);
  assert.ok(gaps[0]! >= 2000 && gaps[0]! <= 3000, `first retry after ${gaps[0]} ms`);
  assert.ok(gaps[1]! >= 4000 && gaps[1]! <= 5000, `second retry after ${gaps[1]} ms`);
  assert.ok(gaps.every((g) => g <= 31_000), `gaps ${gaps.join(', ')}`);
  assert.ok(gaps.slice(-5).every((g) => g >= 30_000), 'the backoff reaches its 30 s cap');
});

// ---------------------------------------------------------------- the property

interface SeedModel {
  peer: FakePeer;
  fast: boolean;
  choking: boolean;
  allowedFast: Set<number>;
  /** Requests waiting to be answered, in order. */
  queue: BlockRef[];
  /** Bytes sent towards the core and not yet delivered. */
  out: Buffer[];
  lastDeliveredAt: number;
  /** Requests the core has outstanding here, as the core should see them. */
  open: Set<string>;
}

type Step =
  | { kind: 'deliver'; seed: number; bytes: number }
  | { kind: 'serve'; seed: number; n: number }
  | { kind: 'toggle'; seed: number }
  | { kind: 'time'; ms: number };

const stepArb = (seeds: number): fc.Arbitrary<Step> =>
  fc.oneof(
    { weight: 5, arbitrary: fc.record({ kind: fc.constant('deliver' as const), seed: fc.nat(seeds - 1), bytes: fc.integer({ min: 1, max: 40_000 }) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('serve' as const), seed: fc.nat(seeds - 1), n: fc.integer({ min: 1, max: 8 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('toggle' as const), seed: fc.nat(seeds - 1) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('time' as const), ms: fc.oneof(fc.integer({ min: 1, max: 8000 }), fc.integer({ min: 20_000, max: 45_000 })) }) },
  );

test('property: honest seeds, any interleaving and chunking: every piece verified, one complete, no wasted request', () => {
  fc.assert(
    fc.property(
      fc.record({
        pieces: fc.integer({ min: 1, max: 9 }),
        lastShort: fc.integer({ min: 0, max: 32 * KiB - 1 }),
        seeds: fc.array(fc.record({ fast: fc.boolean(), allowedFast: fc.array(fc.nat(8), { maxLength: 3 }), startUnchoked: fc.boolean() }), { minLength: 1, maxLength: 4 }),
        /** Pieces we start with (resume data); at least one is always missing. */
        have: fc.array(fc.nat(8), { maxLength: 8 }),
        seed: fc.nat(),
      }).chain((c) => fc.tuple(fc.constant(c), fc.array(stepArb(c.seeds.length), { maxLength: 200 }))),
      ([c, steps]) => {
        const length = c.pieces * 32 * KiB - c.lastShort;
        const fx = fixture({ pieceLength: 32 * KiB, length, seed: c.seed });
        const have = [...new Set(c.have.filter((i) => i < fx.pieceCount - 1))];
        const h = new Harness(fx, { random: seededRandom(c.seed), have });
        for (const i of have) fx.data.copy(h.image, i * fx.pieceLength, i * fx.pieceLength, i * fx.pieceLength + pieceSize(fx, i));
        const verifiedSet = new Set<number>(have);
        const models: SeedModel[] = [];
        const byHandle = new Map<number, SeedModel>();

        const enqueue = (m: SeedModel, msg: MessageInput): void => {
          m.out.push(encodeMessage(msg));
        };
        // What the core sends each seed: check the invariants, and let the seed react.
        const onCoreMessage = (m: SeedModel, msg: Got): void => {
          switch (msg.type) {
            case 'request': {
              const k = bkey(msg);
              assert.ok(!verifiedSet.has(msg.index), `request for piece ${msg.index} we already have`);
              assert.ok(!m.open.has(k), `block ${k} requested twice from peer ${m.peer.handle}`);
              m.open.add(k);
              if (m.choking && !m.allowedFast.has(msg.index)) {
                if (m.fast) enqueue(m, { index: msg.index, begin: msg.begin, length: msg.length, type: 'reject' });
                return;
              }
              m.queue.push(msg);
              return;
            }
            case 'cancel': {
              m.open.delete(bkey(msg));
              const i = m.queue.findIndex((r) => bkey(r) === bkey(msg));
              if (i >= 0) {
                m.queue.splice(i, 1);
                if (m.fast) enqueue(m, { index: msg.index, begin: msg.begin, length: msg.length, type: 'reject' });
              }
              return;
            }
            default:
              return;
          }
        };
        const seen = new Map<number, number>();
        const pump = (): void => {
          for (const m of models) {
            const got = m.peer.got;
            for (let i = seen.get(m.peer.handle) ?? 0; i < got.length; i++) onCoreMessage(m, got[i]!);
            seen.set(m.peer.handle, got.length);
          }
        };
        const originalDrain = h.drain.bind(h);
        h.drain = () => {
          const acts = originalDrain();
          for (const a of acts) if (a.type === 'piece-verified') verifiedSet.add(a.index);
          pump();
          return acts;
        };

        /** Delivers `n` bytes of what the seed sent, updating the view of the core's open requests. */
        const deliver = (m: SeedModel, n: number): void => {
          if (m.peer.closed || m.out.length === 0) return;
          const all = Buffer.concat(m.out);
          const chunk = all.subarray(0, n);
          m.out = chunk.length < all.length ? [Buffer.from(all.subarray(chunk.length))] : [];
          m.lastDeliveredAt = h.now;
          // Track which messages complete in this chunk, to close requests from the core's point of view.
          trackers.get(m)!.push(chunk);
          for (const item of trackers.get(m)!) {
            if (item.type === 'piece' || item.type === 'reject') m.open.delete(bkey(item));
            if (item.type === 'choke' && !m.fast) m.open.clear();
          }
          h.raw(m.peer, Buffer.from(chunk));
        };
        const trackers = new Map<SeedModel, MessageReader>();

        c.seeds.forEach((s, i) => {
          const p = h.connect('out', { host: `10.3.0.${i + 1}`, port: 6881 });
          const m: SeedModel = { peer: p, fast: s.fast, choking: !s.startUnchoked, allowedFast: new Set(s.fast ? s.allowedFast.filter((x) => x < fx.pieceCount) : []), queue: [], out: [], lastDeliveredAt: h.now, open: new Set() };
          models.push(m);
          byHandle.set(p.handle, m);
          trackers.set(m, new MessageReader({ maxBlockLength: 128 * KiB }));
          m.out.push(encodeHandshake({ infoHash: fx.infoHash, peerId: p.peerId, reserved: { fast: s.fast, extended: true } }));
          enqueue(m, { type: 'extended', id: 0, payload: encodeExtHandshake({ m: { ut_metadata: 3 }, reqq: 16 }) });
          enqueue(m, s.fast ? { type: 'have-all' } : { type: 'bitfield', bytes: fullBitfield(fx.pieceCount) });
          for (const i of m.allowedFast) enqueue(m, { type: 'allowed-fast', index: i });
          if (!m.choking) enqueue(m, { type: 'unchoke' });
        });
        // The handshake is not a message: hand it to the trackers' readers pre-skipped.
        for (const m of models) {
          const hs = m.out.shift()!;
          h.raw(m.peer, hs);
        }

        const serve = (m: SeedModel, n: number): void => {
          for (let k = 0; k < n && m.queue.length > 0; k++) {
            const r = m.queue.shift()!;
            const start = r.index * fx.pieceLength + r.begin;
            enqueue(m, { type: 'piece', index: r.index, begin: r.begin, block: fx.data.subarray(start, start + r.length) });
          }
        };
        const toggle = (m: SeedModel): void => {
          m.choking = !m.choking;
          if (m.choking) {
            const kept: BlockRef[] = [];
            for (const r of m.queue) {
              if (m.allowedFast.has(r.index)) kept.push(r);
              else if (m.fast) enqueue(m, { index: r.index, begin: r.begin, length: r.length, type: 'reject' });
            }
            m.queue = m.fast ? kept : [];
            enqueue(m, { type: 'choke' });
          } else enqueue(m, { type: 'unchoke' });
        };
        const time = (ms: number): void => {
          h.advance(ms);
          // A link never holds bytes back for long (the core would rightly drop a silent peer).
          for (const m of models) {
            if (h.now - m.lastDeliveredAt >= 15_000) {
              serve(m, m.choking ? 0 : m.queue.length);
              enqueue(m, { type: 'keep-alive' });
              deliver(m, Infinity);
            }
          }
        };

        for (const s of steps) {
          if (s.kind === 'time') time(s.ms);
          else {
            const m = models[s.seed % models.length]!;
            if (s.kind === 'deliver') deliver(m, s.bytes);
            else if (s.kind === 'serve') serve(m, s.n);
            else toggle(m);
          }
        }
        // Then everyone behaves: unchoke, answer and deliver everything until done.
        for (const m of models) if (m.choking && !m.peer.closed) toggle(m);
        for (let round = 0; round < 400 && h.completes === 0; round++) {
          for (const m of models) {
            serve(m, m.queue.length);
            deliver(m, Infinity);
          }
          if (round % 4 === 3) time(1000);
        }
        assert.equal(h.completes, 1, `not complete: ${JSON.stringify(h.core.stats(h.now))}`);
        assert.deepEqual([...verifiedSet].sort((a, b) => a - b), [...Array(fx.pieceCount).keys()]);
        assert.equal(h.verified.length, fx.pieceCount - have.length, 'each missing piece verified once');
        assert.ok(h.verified.every((i) => !have.includes(i)));
        assert.ok(h.image.equals(fx.data));
        assert.equal(h.actionsOf('piece-failed').length, 0);
        assert.equal(h.actionsOf('banned').length, 0);
        for (const m of models) assert.ok(m.peer.closed === undefined || m.peer.closed === 'both seeds', `seed closed: ${m.peer.closed}`);
        // Nothing more happens after completion.
        time(60_000);
        assert.equal(h.completes, 1);
      },
    ),
    { numRuns: 300 },
  );
});

test('a peer that closed on us is dialled again after 2 s, then 6 s, 18 s...; a session with data restarts the series', () => {
  const h = new Harness(fixture(), {});
  const ep = { host: '10.7.0.1', port: 6881 };
  h.core.addPeers(h.now, [ep], 'tracker');
  h.drain();
  assert.equal(h.connects.length, 1);
  /** Dials happen at ticks: when did the next dial come, counting from `from`? */
  const nextDialAfter = (from: number): number => {
    const n = h.connects.length;
    for (let i = 0; i < 200 && h.connects.length === n; i++) h.advance(250);
    assert.equal(h.connects.length, n + 1, 'dialled again');
    return h.now - from;
  };
  const sessionWithoutData = (): number => {
    const p = h.connect('out', ep);
    p.handshake({ fast: true, extended: true });
    p.feed({ type: 'have-none' });
    const closedAt = h.now;
    h.core.peerClosed(h.now, p.handle);
    p.closed = 'gone';
    h.drain();
    return nextDialAfter(closedAt);
  };
  const waits = [sessionWithoutData(), sessionWithoutData(), sessionWithoutData()];
  assert.ok(waits[0]! >= 2_000 && waits[0]! < 4_000, `first retry after ${waits[0]} ms`);
  assert.ok(waits[1]! >= 6_000 && waits[1]! < 8_000, `second retry after ${waits[1]} ms`);
  assert.ok(waits[2]! >= 18_000 && waits[2]! < 20_000, `third retry after ${waits[2]} ms`);
  // A session in which the peer sent us data: the next retry is the first one again.
  const p = h.connect('out', ep);
  p.handshake({ fast: true, extended: true });
  p.feed({ type: 'have-all' });
  p.feed({ type: 'unchoke' });
  const req = p.of('request')[0];
  assert.ok(req, 'a block was requested');
  p.feed({ type: 'piece', index: req.index, begin: req.begin, block: h.fx.data.subarray(req.index * h.fx.pieceLength + req.begin, req.index * h.fx.pieceLength + req.begin + req.length) });
  const closedAt = h.now;
  h.core.peerClosed(h.now, p.handle);
  p.closed = 'gone';
  h.drain();
  const wait = nextDialAfter(closedAt);
  assert.ok(wait >= 2_000 && wait < 4_000, `retry after a useful session after ${wait} ms`);
});

test('choking options reach the choker: regular and optimistic slots, rechoke and optimistic intervals, snub timeout', () => {
  const fx = fixture();
  const all = Array.from({ length: fx.pieceCount }, (_, i) => i);
  const unchoked = (h: Harness, peers: FakePeer[]): number => h.core.peerSnapshots(h.now).filter((s) => peers.some((p) => p.handle === s.handle) && !s.amChoking).length;
  const seedWith = (o: Partial<TorrentCoreOptions>): { h: Harness; leechers: FakePeer[] } => {
    const h = new Harness(fx, { have: all, ...o });
    const leechers = Array.from({ length: 6 }, () => h.peer({ seed: false }));
    for (const l of leechers) l.feed({ type: 'interested' });
    h.advance(1000);
    return { h, leechers };
  };
  // Defaults: 4 regular + 1 optimistic.
  const d = seedWith({});
  assert.equal(unchoked(d.h, d.leechers), 5);
  // 1 regular, no optimistic.
  const one = seedWith({ regularUnchokeSlots: 1, optimisticSlots: 0 });
  assert.equal(unchoked(one.h, one.leechers), 1);
  // 2 regular + 3 optimistic.
  const five = seedWith({ regularUnchokeSlots: 2, optimisticSlots: 3 });
  assert.equal(unchoked(five.h, five.leechers), 5);

  // The optimistic unchoke rotates on its interval: with no regular slot, each rotation may pick another peer.
  const rot = seedWith({ regularUnchokeSlots: 0, optimisticSlots: 1, optimisticIntervalMs: 5000, rechokeIntervalMs: 1000 });
  const seen = new Set<number>();
  for (let i = 0; i < 12; i++) {
    const u = rot.h.core.peerSnapshots(rot.h.now).filter((x) => !x.amChoking);
    assert.equal(u.length, 1);
    seen.add(u[0]!.handle);
    rot.h.advance(5000);
  }
  assert.ok(seen.size >= 3, `the optimistic slot went to ${seen.size} peers in a minute`);

  // Snub timeout: a peer we want from that sends nothing for snubTimeoutMs is snubbed (and not before).
  const h = new Harness(fx, { snubTimeoutMs: 8000 });
  const p = h.peer();
  p.feed({ type: 'unchoke' });
  p.serve();
  h.advance(6000);
  p.feed({ type: 'keep-alive' });
  assert.equal(h.core.peerSnapshots(h.now)[0]!.snubbed, false);
  h.advance(3000);
  assert.equal(h.core.peerSnapshots(h.now)[0]!.snubbed, true, 'snubbed after 8 s without a block');
});

test('a seeder sends unchoke only once a peer is interested, and then at once (WebTorrent 1.9.7 loses an earlier one)', () => {
  const fx = fixture();
  const h = new Harness(fx, { have: Array.from({ length: fx.pieceCount }, (_, i) => i) });
  assert.equal(h.core.stats(h.now).complete, true, 'we are a seed');
  const leecher = h.peer({ seed: false });
  h.advance(30_000); // several rechokes
  assert.equal(leecher.of('unchoke').length, 0, 'not unchoked while uninterested');
  leecher.feed({ type: 'interested' });
  h.advance(0);
  assert.equal(leecher.of('unchoke').length, 1, 'unchoked as soon as interested');
});

// ---------------------------------------------------------------- piece map (dashboard)

test('pieceMap: pieces held and the rarest availability per cell, bounded by the cell count', () => {
  const fx = fixture({ pieceLength: 16 * KiB, length: 10 * 16 * KiB - 100, fakeData: true }); // 10 pieces
  const h = new Harness(fx, { have: [0, 1, 4] });
  const a = h.peer({ seed: false, fast: false });
  a.feed({ type: 'bitfield', bytes: bitfieldOf(fx.pieceCount, [2, 3, 4, 5]) });
  const b = h.peer({ seed: false, fast: false });
  b.feed({ type: 'bitfield', bytes: bitfieldOf(fx.pieceCount, [3, 5, 9]) });

  const full = h.core.pieceMap(100)!;
  assert.equal(full.piecesPerCell, 1);
  assert.deepEqual(full.have, [1, 1, 0, 0, 1, 0, 0, 0, 0, 0]);
  assert.deepEqual(full.rarest, [0, 0, 1, 2, 1, 2, 0, 0, 0, 1]);

  // 4 cells of 3 pieces (the last holds one): [0,1,2] [3,4,5] [6,7,8] [9]
  const m = h.core.pieceMap(4)!;
  assert.equal(m.piecesPerCell, 3);
  assert.equal(m.pieceCount, 10);
  assert.deepEqual(m.have, [2, 1, 0, 0]);
  assert.deepEqual(m.rarest, [0, 1, 0, 1]);

  const one = h.core.pieceMap(1)!;
  assert.deepEqual([one.piecesPerCell, one.have, one.rarest], [10, [3], [0]]);
  assert.equal(h.core.pieceMap(0)!.have.length, 1, 'at least one cell');
});

test('pieceMap: undefined before the metadata', () => {
  const h = new Harness(fixture(), { noLayout: true });
  assert.equal(h.core.pieceMap(16), undefined);
});

test('BEP 5: with a DHT port our handshake sets the DHT bit, a DHT peer gets a port message and its own is reported; never for private torrents', () => {
  const pub = new Harness(fixture(), { dhtPort: 6999 });
  const dhtPeer = pub.connect('out');
  dhtPeer.handshake({ dht: true });
  const ours = dhtPeer.of('handshake')[0]!;
  assert.equal(ours.dht, true, 'our handshake has the DHT bit');
  assert.deepEqual(dhtPeer.of('port').map((m) => m.port), [6999]);
  const plain = pub.connect('out');
  plain.handshake({ dht: false });
  assert.equal(plain.of('port').length, 0, 'no port message to a peer without the DHT bit');
  const before = pub.actions.length;
  dhtPeer.feed({ type: 'port', port: 7001 });
  const reported = pub.actions.slice(before).filter((a) => a.type === 'dht-port');
  assert.deepEqual(reported, [{ type: 'dht-port', endpoint: dhtPeer.endpoint, port: 7001 }]);

  const priv = new Harness(fixture({ private: true }), { dhtPort: 6999 });
  const p = priv.connect('out');
  p.handshake({ dht: true });
  assert.equal(p.of('handshake')[0]!.dht, false, 'no DHT bit for a private torrent');
  assert.equal(p.of('port').length, 0);
  const b2 = priv.actions.length;
  p.feed({ type: 'port', port: 7001 });
  assert.equal(priv.actions.slice(b2).filter((a) => a.type === 'dht-port').length, 0, "a private torrent's peer's DHT port is ignored");

  const none = new Harness(fixture(), {});
  const q = none.connect('out');
  q.handshake({ dht: true });
  assert.equal(q.of('handshake')[0]!.dht, false, 'no DHT port, no DHT bit');
});
