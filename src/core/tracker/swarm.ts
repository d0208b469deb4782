/**
 * The swarm registry of the tracker: every torrent it knows and the peers of
 * each, kept compact.
 *
 * Peers are not objects. Each is a fixed-size record of 32-bit words in a
 * shared arena (`PeerArena`), and each torrent owns one contiguous block of
 * records there:
 *
 *     word 0..4    peer id (20 bytes)
 *     word 5..8    IP address, 16 bytes (IPv4 as IPv4-mapped IPv6, ::ffff:a.b.c.d)
 *     word 9       port (low 16 bits) | flags << 16
 *     word 10      last announce, whole seconds since the registry's origin
 *     word 11      key (BEP 7 / BEP 15), valid when FLAG_KEY is set
 *     -- only with accounting (private trackers):
 *     word 12      user number
 *     word 13      unused (alignment)
 *     word 14..15  last reported `uploaded` (float64)
 *     word 16..17  last reported `downloaded` (float64)
 *
 * That is 48 bytes a peer (72 with accounting). Blocks come in size classes
 * about 1.5x apart (1, 2, 3, 4, 6, 8, 12, ...), carved out of large shared
 * chunks, so a torrent costs one small object, one Map entry and at most a
 * third of its block in slack, and there is no per-torrent ArrayBuffer. A
 * torrent with many peers also gets an open-addressing hash index from peer
 * id to record; small ones are searched linearly (a few words per record).
 *
 * Removal swaps the last record into the hole, so records stay dense and
 * slot numbers are only valid until the next change.
 *
 * This module is pure bookkeeping: protocol decisions (who may announce, what
 * to answer) live in tracker-core.ts.
 */
import type { Random } from '../../runtime/contract.js';

export const FLAG_SEEDER = 1;
export const FLAG_V6 = 2;
export const FLAG_KEY = 4;
/** BEP 21 partial seed: not downloading, so it is not sent seeders either. */
export const FLAG_PAUSED = 8;
/** Its `completed` has been counted (so a retransmission is not counted again). */
export const FLAG_COMPLETED = 16;

const W_IP = 5;
const W_PORTFLAGS = 9;
const W_SEEN = 10;
const W_KEY = 11;
const W_USER = 12;
const W_UP = 14;
const W_DOWN = 16;
const BASE_WORDS = 12;
const ACCOUNTING_WORDS = 18;

/** Torrents looked at, at most, to make room for a new one when the registry is full. */
const EVICT_SCAN = 256;
/** Torrents at or above this block capacity keep a hash index. */
const INDEX_MIN_CAP = 48;
/** Words in the largest chunk an arena allocates at once (4 MiB). */
const MAX_CHUNK_WORDS = 1 << 20;
/** Words in the first chunk of a size class (16 KiB); later chunks double. */
const MIN_CHUNK_WORDS = 1 << 12;
/** Block ids are chunk · ID_SPLIT + block-in-chunk. */
const ID_SPLIT = 1 << 20;

/** Block capacities: 1, 2, 3, 4, 6, 8, 12, 16, ... (alternately x1.5 and x4/3), ending exactly at `max`. */
export function sizeClasses(max: number): number[] {
  const out: number[] = [];
  let c = 1;
  while (c < max) {
    out.push(c);
    c = c < 4 ? c + 1 : c % 3 === 0 ? (c / 3) * 4 : (c / 2) * 3;
  }
  out.push(max);
  return out;
}

interface Chunk {
  readonly u32: Uint32Array;
  readonly u8: Uint8Array;
  readonly f64: Float64Array;
  readonly blocks: number;
  used: number;
}

/** Fixed-stride records in size-classed blocks carved from shared chunks; freed blocks are reused. */
export class PeerArena {
  readonly stride: number;
  readonly caps: readonly number[];
  private readonly chunks: Chunk[][];
  private readonly free: number[][];
  private reserved = 0;

  constructor(strideWords: number, maxRecords: number) {
    this.stride = strideWords;
    this.caps = sizeClasses(maxRecords);
    this.chunks = this.caps.map(() => []);
    this.free = this.caps.map(() => []);
  }

  /** The smallest class holding `n` records (n <= the largest capacity). */
  classFor(n: number): number {
    const caps = this.caps;
    let lo = 0;
    let hi = caps.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (caps[mid]! >= n) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  alloc(cls: number): number {
    const free = this.free[cls]!;
    if (free.length > 0) return free.pop()!;
    const list = this.chunks[cls]!;
    let last = list[list.length - 1];
    if (last === undefined || last.used === last.blocks) {
      const blockWords = this.caps[cls]! * this.stride;
      const target = Math.min(MAX_CHUNK_WORDS, Math.max(MIN_CHUNK_WORDS, last === undefined ? 0 : last.blocks * blockWords * 2));
      const blocks = Math.max(1, Math.min(ID_SPLIT - 1, Math.floor(target / blockWords)));
      // Words are a multiple of 2, so the Float64Array view covers the chunk exactly.
      const buffer = new ArrayBuffer(blocks * blockWords * 4 + (blocks * blockWords % 2) * 4);
      last = { u32: new Uint32Array(buffer), u8: new Uint8Array(buffer), f64: new Float64Array(buffer), blocks, used: 0 };
      list.push(last);
      this.reserved += buffer.byteLength;
    }
    return (list.length - 1) * ID_SPLIT + last.used++;
  }

  release(cls: number, id: number): void {
    this.free[cls]!.push(id);
  }

  chunkOf(cls: number, id: number): Chunk {
    return this.chunks[cls]![Math.floor(id / ID_SPLIT)]!;
  }

  /** Word offset of block `id` in its chunk. */
  baseOf(cls: number, id: number): number {
    return (id % ID_SPLIT) * this.caps[cls]! * this.stride;
  }

  /** Bytes of chunk memory allocated so far (never returned; reused through the free lists). */
  get reservedBytes(): number {
    return this.reserved;
  }
}

/** One torrent: counters and a view of its block of peer records. */
export class Torrent {
  /** The info hash as a 20-character latin1 string (the registry's key). */
  readonly key: string;
  u32: Uint32Array;
  u8: Uint8Array;
  f64: Float64Array;
  /** Word offset of record 0. */
  base = 0;
  cls = -1;
  block = -1;
  cap = 0;
  count = 0;
  seeders = 0;
  /** `completed` events seen (scrape's `downloaded`). */
  downloaded = 0;
  /** When its expired peers were last removed (registry seconds). */
  lastPurge = 0;
  /** Open-addressing index of slot+1 by peer id hash (0 = empty), for large torrents. */
  index: Int32Array | undefined;

  constructor(key: string, empty: Uint32Array) {
    this.key = key;
    this.u32 = empty;
    this.u8 = new Uint8Array(0);
    this.f64 = new Float64Array(0);
  }
}

export interface SwarmOptions {
  readonly maxTorrents: number;
  readonly maxPeersPerTorrent: number;
  readonly maxPeers: number;
  /** Seconds after its last announce when a peer is dropped. */
  readonly peerTimeoutSec: number;
  /** Keep per-peer user and last reported byte counts (private trackers). */
  readonly accounting: boolean;
  readonly random: Random;
}

/** Why an insert failed. */
export type InsertRefusal = 'torrent-full' | 'tracker-full';

const EMPTY = new Uint32Array(0);

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export class SwarmRegistry {
  readonly torrents = new Map<string, Torrent>();
  readonly arena: PeerArena;
  readonly stride: number;
  readonly options: SwarmOptions;
  peers = 0;
  seeders = 0;
  /** Peers removed because they stopped announcing. */
  expired = 0;
  /** Torrents dropped to make room for new ones (at the torrent cap). */
  evicted = 0;
  /** Scratch for `select`: chosen slots. */
  readonly chosen: Int32Array;
  private readonly marks: Uint32Array;
  private markGen = 0;
  private readonly hashSeed: number;
  private sweepIter: Iterator<Torrent> | undefined;
  private evictIter: Iterator<Torrent> | undefined;

  constructor(options: SwarmOptions, maxNumWant: number) {
    if (!(options.maxPeersPerTorrent >= 1) || !(options.maxTorrents >= 1) || !(options.maxPeers >= 1)) throw new RangeError('swarm caps must be >= 1');
    this.options = options;
    this.stride = options.accounting ? ACCOUNTING_WORDS : BASE_WORDS;
    this.arena = new PeerArena(this.stride, options.maxPeersPerTorrent);
    this.chosen = new Int32Array(Math.max(1, Math.min(options.maxPeersPerTorrent, 3 * maxNumWant + 3)));
    this.marks = new Uint32Array(options.maxPeersPerTorrent);
    this.hashSeed = options.random.u32();
  }

  get leechers(): number {
    return this.peers - this.seeders;
  }

  /**
   * The torrent, creating it. At the torrent cap, with `nowSec`, a dead or
   * lone-peer torrent makes room (see `evictOne`); undefined when none does.
   */
  getOrCreate(key: string, nowSec?: number): Torrent | undefined {
    let t = this.torrents.get(key);
    if (t === undefined) {
      if (this.torrents.size >= this.options.maxTorrents && (nowSec === undefined || !this.evictOne(nowSec))) return undefined;
      t = new Torrent(key, EMPTY);
      this.torrents.set(key, t);
    }
    return t;
  }

  get(key: string): Torrent | undefined {
    return this.torrents.get(key);
  }

  /**
   * Drops one torrent to make room for a new one: among the next
   * EVICT_SCAN torrents of a cursor that cycles through the registry, the
   * first with no live peer, else the one whose only peer announced least
   * recently. Torrents of two or more peers are never dropped (a swarm the
   * tracker is actually helping), so a flood of made-up info hashes, each
   * with one peer, displaces itself and lone peers, not real swarms.
   * Returns false when every torrent looked at has two peers or more.
   */
  private evictOne(nowSec: number): boolean {
    const timeout = this.options.peerTimeoutSec;
    let best: Torrent | undefined;
    let bestSeen = Infinity;
    let dead = false;
    const scan = Math.min(EVICT_SCAN, this.torrents.size);
    for (let n = 0; n < scan; n++) {
      this.evictIter ??= this.torrents.values();
      let r = this.evictIter.next();
      if (r.done === true) {
        this.evictIter = this.torrents.values();
        r = this.evictIter.next();
        if (r.done === true) break;
      }
      const t = r.value;
      if (t.count >= 2) continue;
      const seen = t.count === 0 ? -1 : this.lastSeen(t, 0);
      if (t.count === 0 || nowSec - seen > timeout) {
        best = t;
        dead = true;
        break;
      }
      if (seen < bestSeen) {
        best = t;
        bestSeen = seen;
      }
    }
    if (best === undefined) return false;
    if (dead) this.expired += best.count;
    while (best.count > 0) this.remove(best, best.count - 1);
    this.releaseBlock(best);
    this.torrents.delete(best.key);
    this.evicted++;
    return true;
  }

  // ------------------------------------------------------------ record access

  /** Word offset of record `slot`. */
  at(t: Torrent, slot: number): number {
    return t.base + slot * this.stride;
  }

  flags(t: Torrent, slot: number): number {
    return t.u32[t.base + slot * this.stride + W_PORTFLAGS]! >>> 16;
  }

  port(t: Torrent, slot: number): number {
    return t.u32[t.base + slot * this.stride + W_PORTFLAGS]! & 0xffff;
  }

  lastSeen(t: Torrent, slot: number): number {
    return t.u32[t.base + slot * this.stride + W_SEEN]!;
  }

  key(t: Torrent, slot: number): number {
    return t.u32[t.base + slot * this.stride + W_KEY]!;
  }

  user(t: Torrent, slot: number): number {
    return t.u32[t.base + slot * this.stride + W_USER]!;
  }

  lastUploaded(t: Torrent, slot: number): number {
    return t.f64[(t.base + slot * this.stride + W_UP) >> 1]!;
  }

  lastDownloaded(t: Torrent, slot: number): number {
    return t.f64[(t.base + slot * this.stride + W_DOWN) >> 1]!;
  }

  setReported(t: Torrent, slot: number, uploaded: number, downloaded: number): void {
    const o = t.base + slot * this.stride;
    t.f64[(o + W_UP) >> 1] = uploaded;
    t.f64[(o + W_DOWN) >> 1] = downloaded;
  }

  setUser(t: Torrent, slot: number, user: number): void {
    t.u32[t.base + slot * this.stride + W_USER] = user;
  }

  /** The record's peer id, as a copy. */
  peerId(t: Torrent, slot: number): Buffer {
    const o = (t.base + slot * this.stride) * 4;
    return Buffer.from(t.u8.subarray(o, o + 20));
  }

  /** The record's address bytes (4 or 16), as a view that is only valid until the next change. */
  ipView(t: Torrent, slot: number): Uint8Array {
    const o = (t.base + slot * this.stride + W_IP) * 4;
    return (this.flags(t, slot) & FLAG_V6) !== 0 ? t.u8.subarray(o, o + 16) : t.u8.subarray(o + 12, o + 16);
  }

  /** Writes the compact form (address, then port big-endian) of a record into `out` at `at`; returns bytes written. */
  writeCompact(t: Torrent, slot: number, out: Uint8Array, at: number): number {
    const o = t.base + slot * this.stride;
    const pf = t.u32[o + W_PORTFLAGS]!;
    const v6 = ((pf >>> 16) & FLAG_V6) !== 0;
    const len = v6 ? 16 : 4;
    const u8 = t.u8;
    const src = (o + W_IP) * 4 + (v6 ? 0 : 12);
    for (let i = 0; i < len; i++) out[at + i] = u8[src + i]!;
    out[at + len] = (pf >>> 8) & 0xff;
    out[at + len + 1] = pf & 0xff;
    return len + 2;
  }

  /** Whether the record has exactly this address (words from `WordScratch.setIp`) and port. */
  sameEndpoint(t: Torrent, slot: number, ip: Uint32Array, port: number): boolean {
    const u = t.u32;
    const o = t.base + slot * this.stride;
    return (u[o + W_PORTFLAGS]! & 0xffff) === port && u[o + W_IP] === ip[0] && u[o + W_IP + 1] === ip[1] && u[o + W_IP + 2] === ip[2] && u[o + W_IP + 3] === ip[3];
  }

  sameIp(t: Torrent, slot: number, ip: Uint32Array): boolean {
    const u = t.u32;
    const o = t.base + slot * this.stride + W_IP;
    return u[o] === ip[0] && u[o + 1] === ip[1] && u[o + 2] === ip[2] && u[o + 3] === ip[3];
  }

  // ------------------------------------------------------------ lookup

  private hash(pid: Uint32Array): number {
    let h = this.hashSeed;
    for (let i = 0; i < 5; i++) h = fmix32(h ^ pid[i]!) + i;
    return fmix32(h);
  }

  private hashAt(t: Torrent, slot: number): number {
    const o = t.base + slot * this.stride;
    const u = t.u32;
    let h = this.hashSeed;
    for (let i = 0; i < 5; i++) h = fmix32(h ^ u[o + i]!) + i;
    return fmix32(h);
  }

  private pidAt(t: Torrent, slot: number, pid: Uint32Array): boolean {
    const u = t.u32;
    const o = t.base + slot * this.stride;
    return u[o] === pid[0] && u[o + 1] === pid[1] && u[o + 2] === pid[2] && u[o + 3] === pid[3] && u[o + 4] === pid[4];
  }

  /** The slot of the peer with this id (as 5 words), or -1. */
  find(t: Torrent, pid: Uint32Array): number {
    const index = t.index;
    if (index !== undefined) {
      const mask = index.length - 1;
      for (let i = this.hash(pid) & mask; ; i = (i + 1) & mask) {
        const e = index[i]!;
        if (e === 0) return -1;
        if (this.pidAt(t, e - 1, pid)) return e - 1;
      }
    }
    const u = t.u32;
    const s = this.stride;
    const p0 = pid[0];
    for (let i = 0, o = t.base; i < t.count; i++, o += s) {
      if (u[o] === p0 && u[o + 1] === pid[1] && u[o + 2] === pid[2] && u[o + 3] === pid[3] && u[o + 4] === pid[4]) return i;
    }
    return -1;
  }

  /** The slot of a peer with this address and port, or -1 (linear). */
  findEndpoint(t: Torrent, ip: Uint32Array, port: number): number {
    for (let i = 0; i < t.count; i++) if (this.sameEndpoint(t, i, ip, port)) return i;
    return -1;
  }

  private indexInsert(t: Torrent, slot: number): void {
    const index = t.index!;
    const mask = index.length - 1;
    let i = this.hashAt(t, slot) & mask;
    while (index[i] !== 0) i = (i + 1) & mask;
    index[i] = slot + 1;
  }

  /** Position in the index of the entry for `slot`. */
  private indexPos(t: Torrent, slot: number): number {
    const index = t.index!;
    const mask = index.length - 1;
    for (let i = this.hashAt(t, slot) & mask; ; i = (i + 1) & mask) {
      const e = index[i]!;
      if (e === slot + 1) return i;
      if (e === 0) throw new Error('swarm index out of step');
    }
  }

  /** Removes the index entry at position `i` (backward-shift deletion for linear probing). */
  private indexDeleteAt(t: Torrent, i: number): void {
    const index = t.index!;
    const mask = index.length - 1;
    index[i] = 0;
    for (let j = (i + 1) & mask; index[j] !== 0; j = (j + 1) & mask) {
      const k = this.hashAt(t, index[j]! - 1) & mask;
      const between = i <= j ? i < k && k <= j : i < k || k <= j;
      if (between) continue;
      index[i] = index[j]!;
      index[j] = 0;
      i = j;
    }
  }

  private rebuildIndex(t: Torrent): void {
    if (t.cap < INDEX_MIN_CAP) {
      t.index = undefined;
      return;
    }
    let size = 1;
    while (size < t.cap * 2) size <<= 1;
    t.index = new Int32Array(size);
    for (let i = 0; i < t.count; i++) this.indexInsert(t, i);
  }

  // ------------------------------------------------------------ blocks

  private moveTo(t: Torrent, cls: number): void {
    const arena = this.arena;
    const id = arena.alloc(cls);
    const chunk = arena.chunkOf(cls, id);
    const base = arena.baseOf(cls, id);
    if (t.count > 0) chunk.u32.set(t.u32.subarray(t.base, t.base + t.count * this.stride), base);
    if (t.block >= 0) arena.release(t.cls, t.block);
    t.u32 = chunk.u32;
    t.u8 = chunk.u8;
    t.f64 = chunk.f64;
    t.base = base;
    t.cls = cls;
    t.block = id;
    t.cap = arena.caps[cls]!;
    this.rebuildIndex(t);
  }

  private releaseBlock(t: Torrent): void {
    if (t.block >= 0) this.arena.release(t.cls, t.block);
    t.u32 = EMPTY;
    t.block = -1;
    t.cls = -1;
    t.cap = 0;
    t.base = 0;
    t.index = undefined;
  }

  // ------------------------------------------------------------ changes

  /**
   * Adds a peer; returns its slot, or a refusal when the torrent or the
   * tracker is at its cap. `pid` is 5 words, `ip` 4 words (see `WordScratch.setIp`).
   */
  insert(t: Torrent, pid: Uint32Array, ip: Uint32Array, port: number, flags: number, nowSec: number, key: number): number | InsertRefusal {
    if (t.count >= this.options.maxPeersPerTorrent) return 'torrent-full';
    if (this.peers >= this.options.maxPeers) return 'tracker-full';
    if (t.count === t.cap) this.moveTo(t, t.cls + 1);
    const slot = t.count++;
    const u = t.u32;
    const o = t.base + slot * this.stride;
    u[o] = pid[0]!;
    u[o + 1] = pid[1]!;
    u[o + 2] = pid[2]!;
    u[o + 3] = pid[3]!;
    u[o + 4] = pid[4]!;
    u[o + W_IP] = ip[0]!;
    u[o + W_IP + 1] = ip[1]!;
    u[o + W_IP + 2] = ip[2]!;
    u[o + W_IP + 3] = ip[3]!;
    u[o + W_PORTFLAGS] = (port | (flags << 16)) >>> 0;
    u[o + W_SEEN] = nowSec;
    u[o + W_KEY] = key;
    if (this.stride > BASE_WORDS) {
      u[o + W_USER] = 0;
      t.f64[(o + W_UP) >> 1] = 0;
      t.f64[(o + W_DOWN) >> 1] = 0;
    }
    if (t.index !== undefined) this.indexInsert(t, slot);
    this.peers++;
    if ((flags & FLAG_SEEDER) !== 0) {
      t.seeders++;
      this.seeders++;
    }
    return slot;
  }

  /** Updates a peer's address, port, flags, time and key, keeping the counters right. */
  update(t: Torrent, slot: number, ip: Uint32Array, port: number, flags: number, nowSec: number, key: number): void {
    const u = t.u32;
    const o = t.base + slot * this.stride;
    const was = (u[o + W_PORTFLAGS]! >>> 16) & FLAG_SEEDER;
    const now = flags & FLAG_SEEDER;
    if (was !== now) {
      const d = now !== 0 ? 1 : -1;
      t.seeders += d;
      this.seeders += d;
    }
    u[o + W_IP] = ip[0]!;
    u[o + W_IP + 1] = ip[1]!;
    u[o + W_IP + 2] = ip[2]!;
    u[o + W_IP + 3] = ip[3]!;
    u[o + W_PORTFLAGS] = (port | (flags << 16)) >>> 0;
    u[o + W_SEEN] = nowSec;
    u[o + W_KEY] = key;
  }

  /** Removes the peer in `slot`; the last record moves into it. */
  remove(t: Torrent, slot: number): void {
    const last = t.count - 1;
    if ((this.flags(t, slot) & FLAG_SEEDER) !== 0) {
      t.seeders--;
      this.seeders--;
    }
    if (t.index !== undefined) {
      this.indexDeleteAt(t, this.indexPos(t, slot));
      if (slot !== last) t.index[this.indexPos(t, last)] = slot + 1;
    }
    if (slot !== last) {
      const s = this.stride;
      t.u32.copyWithin(t.base + slot * s, t.base + last * s, t.base + last * s + s);
    }
    t.count--;
    this.peers--;
  }

  /** Removes peers not heard from within the timeout; shrinks the block when mostly empty. Returns how many went. */
  purge(t: Torrent, nowSec: number): number {
    t.lastPurge = nowSec;
    const timeout = this.options.peerTimeoutSec;
    let removed = 0;
    for (let i = t.count - 1; i >= 0; i--) {
      if (nowSec - this.lastSeen(t, i) > timeout) {
        this.remove(t, i);
        removed++;
      }
    }
    this.expired += removed;
    if (t.count === 0) this.releaseBlock(t);
    else if (t.cls > 0 && t.count * 3 < this.arena.caps[t.cls - 1]!) this.moveTo(t, this.arena.classFor(t.count * 2));
    return removed;
  }

  /** Drops a torrent that has no peers left; returns whether it went. */
  dropIfEmpty(t: Torrent): boolean {
    if (t.count !== 0) return false;
    this.releaseBlock(t);
    this.torrents.delete(t.key);
    return true;
  }

  /**
   * One step of the incremental sweep: purges up to `budget` torrents and
   * drops the empty ones. Returns true when a full pass over the registry
   * has just ended.
   */
  sweepStep(nowSec: number, budget: number): boolean {
    this.sweepIter ??= this.torrents.values();
    for (let n = 0; n < budget; n++) {
      const r = this.sweepIter.next();
      if (r.done === true) {
        this.sweepIter = undefined;
        return true;
      }
      const t = r.value;
      this.purge(t, nowSec);
      this.dropIfEmpty(t);
    }
    return false;
  }

  /** A whole pass at once (the incremental sweep starts over afterwards). */
  sweepAll(nowSec: number): void {
    for (const t of this.torrents.values()) {
      this.purge(t, nowSec);
      this.dropIfEmpty(t);
    }
    this.sweepIter = undefined;
  }

  // ------------------------------------------------------------ selection

  private nextMark(): number {
    if (this.markGen >= 0xfffffffe) {
      this.marks.fill(0);
      this.markGen = 0;
    }
    return ++this.markGen;
  }

  /**
   * Picks up to `numWant` peers at random into `this.chosen` and returns how
   * many. Left out: the slot `self`, peers heard from longer ago than the
   * timeout, seeders when `noSeeders`, peers of the other family when
   * `family` is 4 or 6 (0: any), and any peer at `selfIp`:`selfPort` when
   * `self` is -1 (the requester is not stored).
   *
   * Small swarms are shuffled exactly (partial Fisher-Yates over the
   * eligible slots); large ones are sampled by drawing distinct random slots
   * and keeping the eligible ones, then, if draws run out (few eligible),
   * scanning from a random start.
   */
  select(t: Torrent, self: number, noSeeders: boolean, family: 0 | 4 | 6, numWant: number, nowSec: number, selfIp: Uint32Array, selfPort: number): number {
    const n = t.count;
    const want = Math.min(numWant, this.chosen.length);
    if (want <= 0 || n === 0) return 0;
    const out = this.chosen;
    const random = this.options.random;
    if (n <= out.length) {
      let m = 0;
      for (let i = 0; i < n; i++) if (this.eligible(t, i, self, noSeeders, family, nowSec, selfIp, selfPort)) out[m++] = i;
      const k = Math.min(m, want);
      if (m > k) {
        for (let j = 0; j < k; j++) {
          const r = j + random.below(m - j);
          const v = out[r]!;
          out[r] = out[j]!;
          out[j] = v;
        }
      }
      return k;
    }
    const gen = this.nextMark();
    const marks = this.marks;
    let k = 0;
    for (let tries = want * 8; k < want && tries > 0; tries--) {
      const i = random.below(n);
      if (marks[i] === gen) continue;
      marks[i] = gen;
      if (this.eligible(t, i, self, noSeeders, family, nowSec, selfIp, selfPort)) out[k++] = i;
    }
    if (k < want) {
      const start = random.below(n);
      for (let j = 0; j < n && k < want; j++) {
        const i = (start + j) % n;
        if (marks[i] !== gen && this.eligible(t, i, self, noSeeders, family, nowSec, selfIp, selfPort)) out[k++] = i;
      }
    }
    return k;
  }

  private eligible(t: Torrent, i: number, self: number, noSeeders: boolean, family: 0 | 4 | 6, nowSec: number, selfIp: Uint32Array, selfPort: number): boolean {
    if (i === self) return false;
    const o = t.base + i * this.stride;
    const u = t.u32;
    const f = u[o + W_PORTFLAGS]! >>> 16;
    if (noSeeders && (f & FLAG_SEEDER) !== 0) return false;
    if (family !== 0 && ((f & FLAG_V6) !== 0) !== (family === 6)) return false;
    if (nowSec - u[o + W_SEEN]! > this.options.peerTimeoutSec) return false;
    if (self < 0 && this.sameEndpoint(t, i, selfIp, selfPort)) return false;
    return true;
  }
}

/** Scratch words shared by callers: a 20-byte id or a 16-byte address as native-endian u32 words. */
export class WordScratch {
  readonly pid = new Uint32Array(5);
  readonly ip = new Uint32Array(4);
  private readonly pidBytes = new Uint8Array(this.pid.buffer);
  private readonly ipBytes = new Uint8Array(this.ip.buffer);

  setPeerId(id: Uint8Array, offset = 0): Uint32Array {
    const b = this.pidBytes;
    for (let i = 0; i < 20; i++) b[i] = id[offset + i]!;
    return this.pid;
  }

  /** Address bytes (4 or 16) into 4 words; IPv4 becomes IPv4-mapped IPv6, so equal words mean equal addresses. */
  setIp(ip: Uint8Array): Uint32Array {
    const b = this.ipBytes;
    if (ip.length === 4) {
      b.fill(0, 0, 10);
      b[10] = 0xff;
      b[11] = 0xff;
      b.set(ip, 12);
    } else {
      b.set(ip.subarray(0, 16));
    }
    return this.ip;
  }
}
