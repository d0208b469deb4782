/**
 * Which blocks to ask which peer for: the piece picker of a BitTorrent
 * downloader (BEP 3 requests of 16 KiB blocks, BEP 6 allowed-fast, endgame).
 * Pure: randomness is injected, nothing is sent from here; the caller turns
 * the requests and cancels it is handed into wire messages.
 *
 * Order of preference in `pick(peer, max)`, for pieces the peer has:
 *
 *  1. Started pieces: first the piece this peer was last given blocks of,
 *     then any other piece with blocks nobody has been asked for yet (oldest
 *     started first). Finishing pieces before starting new ones keeps few
 *     pieces in progress, so they can be verified and shared sooner.
 *  2. 'rarest' mode, until `randomFirstPieces` pieces are complete: a random
 *     piece, so that a new downloader gets something to trade quickly.
 *  3. 'rarest' mode: a piece the fewest connected peers have, ties broken at
 *     random with the injected Random.
 *  4. 'sequential' mode: the lowest-index piece, within `sequentialWindow`
 *     pieces of the first piece we lack; beyond the window (when set), rarest.
 *     While the peer chokes us, the lowest of its allowed-fast pieces (BEP 6;
 *     in 'rarest' mode the rarest of them).
 *  Suggestions (BEP 6 suggest, `peerSuggest`) break ties in 2 and 3: a
 *     suggested piece is taken among the random first pieces, or when it is
 *     as rare as the rarest piece the peer has.
 *  5. Endgame: when every block that can be fetched from a connected peer is
 *     already requested, blocks outstanding at other peers are requested once
 *     more (never twice from one peer; those with the fewest requests first).
 *     When one copy arrives, `blockReceived` returns the cancels to send.
 *
 * Outside endgame every block has at most one outstanding request.
 *
 * Data structures and costs (N pieces, B buckets = highest availability + 1):
 *  - Availability is a count per piece of the peers that announced it by
 *    `have`/bitfield; peers that have everything (have-all, full bitfields,
 *    or whose haves complete the set) are one shared counter instead, so a
 *    seed costs O(1) and does not change the order of pieces.
 *  - Pieces that are wanted, missing and not started ("candidates") are kept
 *    in one array sorted by availability, split into buckets with known
 *    boundaries (the scheme of libtorrent's piece picker). A `have` moves a
 *    piece one bucket up with a single swap, O(1); starting or re-adding a
 *    piece costs O(B).
 *  - Rarest-first for a peer that has everything takes a random piece of the
 *    first non-empty bucket, O(B). For other peers the buckets are scanned from
 *    the rarest, starting at a random position in each, and the scan stops at
 *    the first piece the peer has; after ~N/32 misses it switches to a scan of
 *    the peer's bitfield ANDed with the candidate bitset, 32 pieces a step, so
 *    a pick costs O(B + N/32) at worst and usually much less.
 *  - Block state exists only for pieces in progress (a Map), and each peer
 *    keeps the set of its outstanding requests: `pick` is O(max) while a
 *    started piece has free blocks, and `blockReceived` is O(1) plus one step
 *    per duplicate request (endgame).
 *
 * Peers are identified by any value usable as a Map key (a string or a
 * numeric handle). Blocks are `blockSize` bytes; the last block of a piece and
 * the last piece of the torrent may be shorter.
 */
import type { Random } from '../runtime/contract.js';

export type PickMode = 'rarest' | 'sequential';

export interface PiecePickerOptions {
  readonly pieceCount: number;
  readonly pieceLength: number;
  readonly totalLength: number;
  /** Bytes per request. Default 16 384. */
  readonly blockSize?: number;
  readonly random: Random;
  /** While fewer pieces than this are complete, new pieces are picked at random ('rarest' mode). Default 4. */
  readonly randomFirstPieces?: number;
  /** Default 'rarest'. */
  readonly mode?: PickMode;
  /**
   * 'sequential' mode: only pieces within this many of the first missing
   * piece are picked lowest-first; others are picked rarest-first. Default
   * Infinity (strictly lowest index first).
   */
  readonly sequentialWindow?: number;
  /** Pieces not to download (can be changed later with `setWanted`). */
  readonly skip?: Iterable<number>;
}

/** A request to send: `length` bytes at `begin` in piece `index`. */
export interface BlockRequest {
  readonly index: number;
  readonly begin: number;
  readonly length: number;
}

/** A request outstanding at `peer` (for cancels). */
export interface PeerBlock<P> extends BlockRequest {
  readonly peer: P;
}

export interface PickOptions {
  /** The peer chokes us: only pieces in the allowed-fast set may be requested (BEP 6). */
  readonly choked?: boolean;
  /** Overrides the set recorded with `peerAllowedFast`. */
  readonly allowedFast?: ReadonlySet<number>;
}

export interface BlockReceived<P> {
  /** The block was new and is wanted: store it. False for duplicates, unwanted or malformed blocks. */
  readonly accepted: boolean;
  /** Every block of the piece is now received: hash it, then call `pieceVerified` or `pieceFailed`. */
  readonly pieceComplete: boolean;
  /** Requests for this block outstanding at other peers (endgame): send them a cancel. */
  readonly cancels: readonly PeerBlock<P>[];
}

export interface PickerStats {
  readonly pieces: number;
  /** Pieces we have. */
  readonly complete: number;
  /** Pieces with block state: being downloaded or awaiting verification. */
  readonly inProgress: number;
  /** Blocks with at least one outstanding request. */
  readonly requested: number;
  readonly endgame: boolean;
  readonly peers: number;
}

/**
 * What a peer announced in its bitfield: an object with `get(i)` (a Bitfield
 * class), an array of booleans, or the packed wire format of BEP 3 (a
 * Uint8Array whose byte 0 high bit is piece 0). Bits past the last piece are ignored.
 */
export type BitfieldLike = { get(index: number): boolean } | ArrayLike<boolean> | Uint8Array;

const FREE = 0;
const REQUESTED = 1;
const RECEIVED = 2;

const NO_CANCELS: readonly PeerBlock<never>[] = Object.freeze([]);
/** Suggestions (BEP 6) kept per peer; older ones are forgotten. */
export const MAX_SUGGESTED = 16;

/** Index of the lowest set bit of a non-zero 32-bit value. */
function ctz(x: number): number {
  return 31 - Math.clz32(x & -x);
}

function bit(words: Uint32Array, i: number): boolean {
  return ((words[i >>> 5]! >>> (i & 31)) & 1) === 1;
}

function setBit(words: Uint32Array, i: number): void {
  words[i >>> 5]! |= 1 << (i & 31);
}

function clearBit(words: Uint32Array, i: number): void {
  words[i >>> 5]! &= ~(1 << (i & 31));
}

interface PeerState<P> {
  readonly id: P;
  /** Has every piece (counted in `haveAll`, not in `bits`/`avail`). */
  all: boolean;
  readonly bits: Uint32Array;
  /** Pieces set in `bits`. */
  count: number;
  /** Pieces set in `bits` that are wanted and missing (the peer is interesting while > 0). */
  want: number;
  /** Outstanding requests, as block keys (index * blocksPerPiece + block). */
  readonly out: Set<number>;
  /** The piece this peer was last given blocks of, or -1. */
  current: number;
  /** Pieces the peer allows us to request while it chokes us (BEP 6). */
  fast: Set<number> | undefined;
  /** Pieces it suggested (BEP 6), most recent last, at most MAX_SUGGESTED. */
  suggested: Set<number> | undefined;
}

/** Block state of a piece in progress. */
class Partial<P> {
  readonly state: Uint8Array;
  /** The first requester of each requested block. */
  readonly owner: (P | undefined)[];
  /** Further requesters (endgame), by block. */
  extra: Map<number, P[]> | undefined;
  /** Who delivered each received block. */
  readonly sender: (P | undefined)[];
  /** Blocks neither received nor requested. */
  free: number;
  received = 0;
  /** No free block below this. */
  hint = 0;

  constructor(
    readonly index: number,
    readonly blocks: number,
  ) {
    this.state = new Uint8Array(blocks);
    this.owner = new Array<P | undefined>(blocks).fill(undefined);
    this.sender = new Array<P | undefined>(blocks).fill(undefined);
    this.free = blocks;
  }
}

export class PiecePicker<P = string | number> {
  readonly pieceCount: number;
  readonly pieceLength: number;
  readonly totalLength: number;
  readonly blockSize: number;
  readonly mode: PickMode;

  private readonly random: Random;
  private readonly randomFirst: number;
  private readonly window: number;
  /** Blocks in a full-size piece; block keys are index * bpp + block. */
  private readonly bpp: number;
  private readonly words: number;

  private readonly haveW: Uint32Array;
  private readonly wantW: Uint32Array;
  /** Candidates: wanted, missing, not in progress (exactly the pieces in `order`). */
  private readonly candW: Uint32Array;
  /** Peers (other than have-all peers) that have each piece. */
  private readonly avail: Int32Array;
  /** Candidates sorted by availability; `pos` is each piece's place in it, or -1. */
  private readonly order: Int32Array;
  private readonly pos: Int32Array;
  private len: number;
  /** ends[b]: end (exclusive) of the bucket of pieces with availability b; the last one is `len`. */
  private readonly ends: number[];
  private haveAll = 0;

  private done = 0;
  /** Pieces wanted and missing. */
  private missing: number;
  /** No missing wanted piece in words below this. */
  private seqWord = 0;

  private readonly partials = new Map<number, Partial<P>>();
  /** Pieces in progress that have free blocks, oldest first. */
  private readonly open = new Set<number>();
  /** Blocks with at least one outstanding request. */
  private requested = 0;
  private readonly peers = new Map<P, PeerState<P>>();

  constructor(options: PiecePickerOptions) {
    const { pieceCount, pieceLength, totalLength } = options;
    const blockSize = options.blockSize ?? 16_384;
    if (!Number.isSafeInteger(pieceLength) || pieceLength <= 0) throw new RangeError(`bad pieceLength ${pieceLength}`);
    if (!Number.isSafeInteger(totalLength) || totalLength < 0) throw new RangeError(`bad totalLength ${totalLength}`);
    if (!Number.isSafeInteger(blockSize) || blockSize <= 0) throw new RangeError(`bad blockSize ${blockSize}`);
    if (pieceCount !== Math.ceil(totalLength / pieceLength)) {
      throw new RangeError(`pieceCount ${pieceCount} does not match totalLength ${totalLength} / pieceLength ${pieceLength}`);
    }
    this.pieceCount = pieceCount;
    this.pieceLength = pieceLength;
    this.totalLength = totalLength;
    this.blockSize = blockSize;
    this.mode = options.mode ?? 'rarest';
    this.random = options.random;
    this.randomFirst = options.randomFirstPieces ?? 4;
    this.window = options.sequentialWindow ?? Infinity;
    this.bpp = Math.ceil(pieceLength / blockSize);
    this.words = (pieceCount + 31) >>> 5;
    this.haveW = new Uint32Array(this.words);
    this.wantW = new Uint32Array(this.words);
    this.candW = new Uint32Array(this.words);
    this.avail = new Int32Array(pieceCount);
    this.order = new Int32Array(pieceCount);
    this.pos = new Int32Array(pieceCount).fill(-1);
    this.len = 0;
    this.ends = [0];
    for (let i = 0; i < pieceCount; i++) setBit(this.wantW, i);
    this.missing = pieceCount;
    for (const i of options.skip ?? []) {
      if (this.valid(i) && bit(this.wantW, i)) {
        clearBit(this.wantW, i);
        this.missing--;
      }
    }
    // Every wanted piece starts as a candidate of availability 0.
    for (let i = 0; i < pieceCount; i++) {
      if (!bit(this.wantW, i)) continue;
      this.order[this.len] = i;
      this.pos[i] = this.len++;
      setBit(this.candW, i);
    }
    this.ends[0] = this.len;
  }

  // ---- geometry ----

  /** Bytes in piece `index` (the last one may be short). */
  pieceSize(index: number): number {
    return index === this.pieceCount - 1 ? this.totalLength - (this.pieceCount - 1) * this.pieceLength : this.pieceLength;
  }

  /** Blocks in piece `index`. */
  blocksIn(index: number): number {
    return Math.ceil(this.pieceSize(index) / this.blockSize);
  }

  /** Bytes in block `block` of piece `index` (the last block of a piece may be short). */
  blockLength(index: number, block: number): number {
    return Math.min(this.blockSize, this.pieceSize(index) - block * this.blockSize);
  }

  // ---- our pieces ----

  /** Pieces we have. */
  get completed(): number {
    return this.done;
  }

  /** We have every piece. */
  get isComplete(): boolean {
    return this.done === this.pieceCount;
  }

  /** We have every wanted piece: nothing left to download. */
  get isDone(): boolean {
    return this.missing === 0;
  }

  /** Wanted pieces we do not have yet. */
  get remaining(): number {
    return this.missing;
  }

  has(index: number): boolean {
    return this.valid(index) && bit(this.haveW, index);
  }

  isWanted(index: number): boolean {
    return this.valid(index) && bit(this.wantW, index);
  }

  /**
   * We have piece `index` (from resume data, or verified). Requests still
   * outstanding for it are dropped and returned, for cancels. O(peers + B).
   */
  setHave(index: number): PeerBlock<P>[] {
    if (!this.valid(index) || bit(this.haveW, index)) return [];
    if (bit(this.wantW, index)) this.adjustMissing(index, -1);
    setBit(this.haveW, index);
    this.done++;
    const cancels: PeerBlock<P>[] = [];
    const p = this.partials.get(index);
    if (p) {
      for (let b = 0; b < p.blocks; b++) {
        if (p.state[b] === REQUESTED) this.stripRequesters(p, b, undefined, cancels);
      }
      this.partials.delete(index);
      this.open.delete(index);
    }
    if (this.pos[index]! >= 0) this.removeCand(index);
    return cancels;
  }

  /** The piece's hash matched: we have it. Returns cancels for any request still outstanding. */
  pieceVerified(index: number): PeerBlock<P>[] {
    return this.setHave(index);
  }

  /**
   * The piece's hash did not match: its received blocks are discarded so it
   * is fetched again. Returns the peers that delivered them (for penalties).
   */
  pieceFailed(index: number): Set<P> {
    const who = new Set<P>();
    const p = this.partials.get(index);
    if (!p) return who;
    for (let b = 0; b < p.blocks; b++) {
      if (p.state[b] !== RECEIVED) continue;
      who.add(p.sender[b]!);
      p.sender[b] = undefined;
      p.state[b] = FREE;
      p.free++;
    }
    p.received = 0;
    p.hint = 0;
    if (p.free > 0) this.open.add(index);
    this.maybeDrop(p);
    return who;
  }

  /** The peers that delivered the received blocks of a piece in progress. */
  contributors(index: number): Set<P> {
    const who = new Set<P>();
    const p = this.partials.get(index);
    if (p) for (const s of p.sender) if (s !== undefined) who.add(s);
    return who;
  }

  /**
   * Whether to download piece `index`. Unwanting a piece in progress keeps
   * what was received and lets outstanding requests finish, but no more
   * blocks of it are picked. O(peers + B).
   */
  setWanted(index: number, wanted: boolean): void {
    if (!this.valid(index) || bit(this.wantW, index) === wanted) return;
    if (wanted) {
      if (!bit(this.haveW, index)) this.adjustMissing(index, +1);
      setBit(this.wantW, index);
      this.seqWord = Math.min(this.seqWord, index >>> 5);
    } else {
      if (!bit(this.haveW, index)) this.adjustMissing(index, -1);
      clearBit(this.wantW, index);
    }
    this.refreshCand(index);
  }

  // ---- peers ----

  /** Registers a peer that has nothing yet (also done implicitly by the other peer calls). */
  addPeer(peer: P): void {
    this.peerState(peer);
  }

  /** The peer announced piece `index`. Returns whether we want that piece (so the peer is interesting). O(1). */
  peerHave(peer: P, index: number): boolean {
    if (!this.valid(index)) return false;
    const ps = this.peerState(peer);
    const wanted = this.wantedMissing(index);
    if (ps.all || bit(ps.bits, index)) return wanted;
    setBit(ps.bits, index);
    ps.count++;
    if (wanted) ps.want++;
    this.incAvail(index);
    if (ps.count === this.pieceCount) this.convertToAll(ps);
    return wanted;
  }

  /** The peer's bitfield (replaces what it announced before). O(N). */
  peerBitfield(peer: P, bitfield: BitfieldLike): void {
    const ps = this.peerState(peer);
    this.clearPeer(ps);
    const n = this.pieceCount;
    const bits = ps.bits;
    let count = 0;
    const bf = bitfield as { get?: unknown };
    if (typeof bf.get === 'function') {
      const g = bitfield as { get(index: number): boolean };
      for (let i = 0; i < n; i++) {
        if (g.get(i)) {
          setBit(bits, i);
          count++;
        }
      }
    } else if (bitfield instanceof Uint8Array) {
      const bytes = Math.min(bitfield.length, (n + 7) >>> 3);
      for (let j = 0; j < bytes; j++) {
        const v = bitfield[j]!;
        if (v === 0) continue;
        for (let k = 0; k < 8; k++) {
          const i = j * 8 + k;
          if (i < n && (v & (0x80 >>> k)) !== 0) {
            setBit(bits, i);
            count++;
          }
        }
      }
    } else {
      const arr = bitfield as ArrayLike<boolean>;
      const m = Math.min(arr.length, n);
      for (let i = 0; i < m; i++) {
        if (arr[i]) {
          setBit(bits, i);
          count++;
        }
      }
    }
    if (count === n && n > 0) {
      bits.fill(0);
      ps.all = true;
      this.haveAll++;
      return;
    }
    ps.count = count;
    this.forEachBit(bits, (i) => {
      this.incAvail(i);
      if (this.wantedMissing(i)) ps.want++;
    });
  }

  /** The peer has every piece (BEP 6 have-all, or a seed). O(1) unless it had announced pieces before. */
  peerHaveAll(peer: P): void {
    const ps = this.peerState(peer);
    if (ps.all) return;
    this.clearPeer(ps);
    ps.all = true;
    this.haveAll++;
  }

  /** The peer has nothing (BEP 6 have-none). */
  peerHaveNone(peer: P): void {
    this.clearPeer(this.peerState(peer));
  }

  /** The peer may be asked for piece `index` while it chokes us (BEP 6 allowed-fast). */
  peerAllowedFast(peer: P, index: number): void {
    if (!this.valid(index)) return;
    const ps = this.peerState(peer);
    (ps.fast ??= new Set()).add(index);
  }

  /**
   * The peer suggests piece `index` (BEP 6 suggest: it has it at hand, e.g.
   * in its cache). A hint only: among new pieces equally good by the mode's
   * rules (random first pieces, or equally rare ones) a suggested piece the
   * peer has is taken first. Ignored in 'sequential' mode. The last
   * MAX_SUGGESTED suggestions of a peer are kept.
   */
  peerSuggest(peer: P, index: number): void {
    if (!this.valid(index) || this.mode === 'sequential') return;
    const ps = this.peerState(peer);
    const set = (ps.suggested ??= new Set());
    set.delete(index);
    set.add(index);
    if (set.size > MAX_SUGGESTED) set.delete(set.values().next().value!);
  }

  /** The peer is gone: its requests go back to the pool (returned), its pieces no longer count. */
  removePeer(peer: P): BlockRequest[] {
    const ps = this.peers.get(peer);
    if (!ps) return [];
    const released = this.releaseAll(ps, undefined);
    this.clearPeer(ps);
    this.peers.delete(peer);
    return released;
  }

  /** Whether the peer has a piece we want and lack (send `interested` while true). O(1). */
  interesting(peer: P): boolean {
    const ps = this.peers.get(peer);
    if (!ps) return false;
    return ps.all ? this.missing > 0 : ps.want > 0;
  }

  /** Whether the peer announced piece `index`. */
  peerHas(peer: P, index: number): boolean {
    const ps = this.peers.get(peer);
    return ps !== undefined && this.valid(index) && (ps.all || bit(ps.bits, index));
  }

  /** Connected peers that have piece `index`. */
  availability(index: number): number {
    return this.valid(index) ? this.avail[index]! + this.haveAll : 0;
  }

  /** Requests outstanding at the peer. */
  outstanding(peer: P): number {
    return this.peers.get(peer)?.out.size ?? 0;
  }

  // ---- requests ----

  /**
   * Up to `max` blocks to request from `peer`, all in pieces it has; they
   * count as outstanding at the peer until received, failed or dropped.
   * With `{ choked: true }` only pieces in the allowed-fast set are picked.
   */
  pick(peer: P, max: number, options?: PickOptions): BlockRequest[] {
    const out: BlockRequest[] = [];
    const ps = this.peers.get(peer);
    if (!ps || !(max > 0) || this.missing === 0) return out;
    if (!ps.all && ps.want === 0) return out;
    let fast: ReadonlySet<number> | undefined;
    if (options?.choked === true) {
      fast = options.allowedFast ?? ps.fast;
      if (!fast || fast.size === 0) return out;
    }
    // 1. Started pieces: this peer's own, then the others.
    if (ps.current >= 0) this.take(ps, ps.current, max, out, fast);
    if (out.length < max && this.open.size > 0) {
      for (const i of this.open) {
        if (i === ps.current || (fast && !fast.has(i))) continue;
        this.take(ps, i, max, out, fast);
        if (out.length >= max) break;
      }
    }
    // 2-4. New pieces.
    while (out.length < max && this.len > 0) {
      const i = this.choose(ps, fast);
      if (i < 0) break;
      this.start(i);
      this.take(ps, i, max, out, fast);
    }
    // 5. Endgame.
    if (out.length < max && this.endgame()) this.takeDuplicates(ps, max, out, fast);
    return out;
  }

  /**
   * A block arrived. Requests for it at other peers are dropped and returned
   * as cancels. Blocks that were not requested from this peer (late, after a
   * choke or a timeout) are accepted too if still needed.
   */
  blockReceived(peer: P, index: number, begin: number, length?: number): BlockReceived<P> {
    const no: BlockReceived<P> = { accepted: false, pieceComplete: false, cancels: NO_CANCELS };
    const b = this.blockOf(index, begin);
    if (b < 0 || (length !== undefined && length !== this.blockLength(index, b))) return no;
    let p = this.partials.get(index);
    if (!p) {
      if (!this.wantedMissing(index)) return no;
      p = this.start(index);
    }
    const state = p.state[b];
    if (state === RECEIVED) return no;
    let cancels: PeerBlock<P>[] | readonly PeerBlock<P>[] = NO_CANCELS;
    if (state === REQUESTED) {
      if (p.owner[b] !== peer || p.extra?.has(b) === true) cancels = [];
      this.stripRequesters(p, b, peer, cancels as PeerBlock<P>[]);
    } else {
      p.free--;
      if (p.free === 0) this.open.delete(index);
    }
    p.state[b] = RECEIVED;
    p.received++;
    p.sender[b] = peer;
    return { accepted: true, pieceComplete: p.received === p.blocks, cancels };
  }

  /** The request failed (no answer, connection trouble): the block goes back to the pool. */
  requestFailed(peer: P, index: number, begin: number): boolean {
    const ps = this.peers.get(peer);
    const b = this.blockOf(index, begin);
    if (!ps || b < 0) return false;
    const key = index * this.bpp + b;
    if (!ps.out.delete(key)) return false;
    const p = this.partials.get(index)!;
    this.unrequest(p, b, peer);
    this.maybeDrop(p);
    return true;
  }

  /** The peer rejected the request (BEP 6 reject): the block goes back to the pool. */
  peerRejected(peer: P, index: number, begin: number): boolean {
    return this.requestFailed(peer, index, begin);
  }

  /**
   * The request took too long: the block goes back to the pool so another
   * peer can be asked (send the slow peer a cancel, or let it be: a late
   * block is still accepted by `blockReceived`).
   */
  requestTimedOut(peer: P, index: number, begin: number): boolean {
    return this.requestFailed(peer, index, begin);
  }

  /**
   * The peer choked us: its outstanding requests go back to the pool (and are
   * returned), except those in pieces it allows while choked (`allowedFast`,
   * default the set recorded with `peerAllowedFast`).
   */
  peerChoked(peer: P, allowedFast?: ReadonlySet<number>): BlockRequest[] {
    const ps = this.peers.get(peer);
    if (!ps) return [];
    return this.releaseAll(ps, allowedFast ?? ps.fast);
  }

  stats(): PickerStats {
    return {
      pieces: this.pieceCount,
      complete: this.done,
      inProgress: this.partials.size,
      requested: this.requested,
      endgame: this.endgame(),
      peers: this.peers.size,
    };
  }

  /**
   * Endgame: blocks are outstanding, and none that a connected peer could
   * give us is unrequested. O(1) unless only started pieces remain.
   */
  get inEndgame(): boolean {
    return this.endgame();
  }

  // ---- internals: picking ----

  private endgame(): boolean {
    if (this.requested === 0) return false;
    // Candidates nobody connected has (availability 0, no have-all peer) cannot be requested anyway.
    const unavailable = this.haveAll > 0 ? 0 : this.ends[0]!;
    if (this.len > unavailable) return false;
    for (const i of this.open) {
      if (bit(this.wantW, i) && (this.haveAll > 0 || this.avail[i]! > 0)) return false;
    }
    return true;
  }

  /** Requests free blocks of piece `i` for the peer, if it has the piece. */
  private take(ps: PeerState<P>, i: number, max: number, out: BlockRequest[], fast: ReadonlySet<number> | undefined): void {
    const p = this.partials.get(i);
    if (!p || p.free === 0 || !bit(this.wantW, i) || !(ps.all || bit(ps.bits, i)) || (fast && !fast.has(i))) return;
    const st = p.state;
    let b = p.hint;
    while (b < p.blocks && st[b] !== FREE) b++;
    p.hint = b;
    const bs = this.blockSize;
    for (; b < p.blocks && out.length < max; b++) {
      if (st[b] !== FREE) continue;
      this.addRequest(p, b, ps);
      out.push({ index: i, begin: b * bs, length: this.blockLength(i, b) });
    }
    ps.current = i;
  }

  /** Duplicate requests for the endgame: blocks outstanding elsewhere, fewest requesters first. */
  private takeDuplicates(ps: PeerState<P>, max: number, out: BlockRequest[], fast: ReadonlySet<number> | undefined): void {
    const found: { p: Partial<P>; b: number; n: number }[] = [];
    for (const p of this.partials.values()) {
      const i = p.index;
      if (p.received === p.blocks || !bit(this.wantW, i) || !(ps.all || bit(ps.bits, i)) || (fast && !fast.has(i))) continue;
      const base = i * this.bpp;
      for (let b = 0; b < p.blocks; b++) {
        if (p.state[b] === REQUESTED && !ps.out.has(base + b)) found.push({ p, b, n: 1 + (p.extra?.get(b)?.length ?? 0) });
      }
    }
    found.sort((x, y) => x.n - y.n);
    for (const { p, b } of found) {
      if (out.length >= max) break;
      this.addRequest(p, b, ps);
      out.push({ index: p.index, begin: b * this.blockSize, length: this.blockLength(p.index, b) });
    }
  }

  /** A candidate piece to start for the peer, or -1. */
  private choose(ps: PeerState<P>, fast: ReadonlySet<number> | undefined): number {
    if (fast) return this.mode === 'sequential' ? this.lowestOf(ps, fast) : this.rarestOf(ps, fast);
    if (this.mode === 'sequential') {
      const i = this.lowest(ps);
      return i >= 0 || this.window === Infinity ? i : this.rarest(ps);
    }
    if (this.done < this.randomFirst) return this.suggestedPiece(ps, -1) ?? this.randomPiece(ps);
    const i = this.rarest(ps);
    return i < 0 ? i : (this.suggestedPiece(ps, this.avail[i]!) ?? i);
  }

  /**
   * A candidate the peer suggested and has, of availability `avail` (any when
   * -1), most recent suggestion first; suggestions no longer candidates are
   * dropped. O(MAX_SUGGESTED).
   */
  private suggestedPiece(ps: PeerState<P>, avail: number): number | undefined {
    const set = ps.suggested;
    if (!set || set.size === 0) return undefined;
    let found: number | undefined;
    for (const i of [...set].reverse()) {
      if (this.pos[i]! < 0) {
        set.delete(i); // started, had or unwanted: the hint is spent
        continue;
      }
      if (found === undefined && (ps.all || bit(ps.bits, i)) && (avail < 0 || this.avail[i] === avail)) found = i;
    }
    return found;
  }

  private rarest(ps: PeerState<P>): number {
    const { ends, order, random } = this;
    if (ps.all) {
      for (let b = 0, s = 0; b < ends.length; s = ends[b++]!) {
        const size = ends[b]! - s;
        if (size > 0) return order[s + random.below(size)]!;
      }
      return -1;
    }
    // A peer's own pieces have availability >= 1: bucket 0 is skipped.
    let budget = this.words + 64;
    for (let b = 1; b < ends.length; b++) {
      const s = ends[b - 1]!;
      const size = ends[b]! - s;
      if (size === 0) continue;
      const off = random.below(size);
      for (let k = 0; k < size; k++) {
        let j = off + k;
        if (j >= size) j -= size;
        const i = order[s + j]!;
        if (bit(ps.bits, i)) return i;
        if (--budget < 0) return this.scanPeer(ps, true);
      }
    }
    return -1;
  }

  private randomPiece(ps: PeerState<P>): number {
    const { order, random, len } = this;
    if (len === 0) return -1;
    if (ps.all) return order[random.below(len)]!;
    let budget = this.words + 64;
    const off = random.below(len);
    for (let k = 0; k < len; k++) {
      let j = off + k;
      if (j >= len) j -= len;
      const i = order[j]!;
      if (bit(ps.bits, i)) return i;
      if (--budget < 0) return this.scanPeer(ps, false);
    }
    return -1;
  }

  /**
   * Scans the peer's bitfield against the candidates, 32 pieces a step: a
   * uniformly random one of the rarest (`rarest`) or of all of them.
   */
  private scanPeer(ps: PeerState<P>, rarest: boolean): number {
    const { candW, avail } = this;
    const bits = ps.bits;
    let best = Infinity;
    let n = 0;
    for (let w = 0; w < this.words; w++) {
      let m = bits[w]! & candW[w]!;
      while (m !== 0) {
        const low = m & -m;
        m ^= low;
        if (!rarest) {
          n++;
          continue;
        }
        const a = avail[(w << 5) + 31 - Math.clz32(low)]!;
        if (a < best) {
          best = a;
          n = 1;
        } else if (a === best) n++;
      }
    }
    if (n === 0) return -1;
    let r = this.random.below(n);
    for (let w = 0; w < this.words; w++) {
      let m = bits[w]! & candW[w]!;
      while (m !== 0) {
        const low = m & -m;
        m ^= low;
        const i = (w << 5) + 31 - Math.clz32(low);
        if (rarest && avail[i] !== best) continue;
        if (r-- === 0) return i;
      }
    }
    return -1;
  }

  /** Rarest candidate among the allowed-fast pieces the peer has. */
  private rarestOf(ps: PeerState<P>, set: ReadonlySet<number>): number {
    let best = -1;
    let bestA = Infinity;
    let ties = 0;
    for (const i of set) {
      if (!this.valid(i) || this.pos[i]! < 0 || !(ps.all || bit(ps.bits, i))) continue;
      const a = this.avail[i]!;
      if (a < bestA) {
        bestA = a;
        best = i;
        ties = 1;
      } else if (a === bestA && this.random.below(++ties) === 0) best = i;
    }
    return best;
  }

  /** Lowest-index candidate among the allowed-fast pieces the peer has (sequential mode). */
  private lowestOf(ps: PeerState<P>, set: ReadonlySet<number>): number {
    let best = -1;
    for (const i of set) {
      if (!this.valid(i) || this.pos[i]! < 0 || !(ps.all || bit(ps.bits, i))) continue;
      if (best < 0 || i < best) best = i;
    }
    return best;
  }

  /** Lowest-index candidate the peer has, within the window from the first missing piece; -1 if none. */
  private lowest(ps: PeerState<P>): number {
    const { wantW, haveW, candW } = this;
    let w = this.seqWord;
    while (w < this.words && (wantW[w]! & ~haveW[w]!) === 0) w++;
    this.seqWord = w;
    if (w === this.words) return -1;
    const base = (w << 5) + ctz(wantW[w]! & ~haveW[w]!);
    const limit = Math.min(this.pieceCount, base + this.window);
    for (; w < this.words && w << 5 < limit; w++) {
      const m = candW[w]! & (ps.all ? -1 : ps.bits[w]!);
      if (m !== 0) {
        const i = (w << 5) + ctz(m);
        return i < limit ? i : -1;
      }
    }
    return -1;
  }

  // ---- internals: block state ----

  /** The block number of a valid (index, begin), or -1. */
  private blockOf(index: number, begin: number): number {
    if (!this.valid(index) || !Number.isInteger(begin) || begin < 0 || begin % this.blockSize !== 0) return -1;
    const b = begin / this.blockSize;
    return b < this.blocksIn(index) ? b : -1;
  }

  private start(i: number): Partial<P> {
    if (this.pos[i]! >= 0) this.removeCand(i);
    const p = new Partial<P>(i, this.blocksIn(i));
    this.partials.set(i, p);
    this.open.add(i);
    return p;
  }

  private addRequest(p: Partial<P>, b: number, ps: PeerState<P>): void {
    if (p.state[b] === FREE) {
      p.state[b] = REQUESTED;
      p.owner[b] = ps.id;
      p.free--;
      this.requested++;
      if (p.free === 0) this.open.delete(p.index);
    } else {
      const extra = (p.extra ??= new Map());
      const list = extra.get(b);
      if (list) list.push(ps.id);
      else extra.set(b, [ps.id]);
    }
    ps.out.add(p.index * this.bpp + b);
  }

  /** Removes one requester of a requested block; the block is free again when none is left. */
  private unrequest(p: Partial<P>, b: number, peer: P): void {
    const list = p.extra?.get(b);
    if (p.owner[b] === peer) {
      p.owner[b] = list?.pop();
    } else if (list) {
      const k = list.indexOf(peer);
      if (k >= 0) list.splice(k, 1);
    }
    if (list && list.length === 0) p.extra!.delete(b);
    if (p.owner[b] === undefined && p.state[b] === REQUESTED) {
      p.state[b] = FREE;
      p.free++;
      this.requested--;
      if (b < p.hint) p.hint = b;
      if (p.free === 1) this.open.add(p.index);
    }
  }

  /** Drops every request for a requested block; cancels for all but `except`. The block is left not free. */
  private stripRequesters(p: Partial<P>, b: number, except: P | undefined, cancels: PeerBlock<P>[]): void {
    const key = p.index * this.bpp + b;
    const begin = b * this.blockSize;
    const length = this.blockLength(p.index, b);
    const drop = (r: P): void => {
      this.peers.get(r)?.out.delete(key);
      if (r !== except) cancels.push({ peer: r, index: p.index, begin, length });
    };
    drop(p.owner[b]!);
    const list = p.extra?.get(b);
    if (list) {
      for (const r of list) drop(r);
      p.extra!.delete(b);
    }
    p.owner[b] = undefined;
    this.requested--;
  }

  /** Forgets a piece in progress that has nothing received and nothing requested. */
  private maybeDrop(p: Partial<P>): void {
    if (p.free !== p.blocks || this.partials.get(p.index) !== p) return;
    this.partials.delete(p.index);
    this.open.delete(p.index);
    this.refreshCand(p.index);
  }

  private releaseAll(ps: PeerState<P>, keep: ReadonlySet<number> | undefined): BlockRequest[] {
    const released: BlockRequest[] = [];
    for (const key of ps.out) {
      const i = Math.floor(key / this.bpp);
      if (keep?.has(i)) continue;
      const b = key - i * this.bpp;
      ps.out.delete(key);
      const p = this.partials.get(i)!;
      this.unrequest(p, b, ps.id);
      this.maybeDrop(p);
      released.push({ index: i, begin: b * this.blockSize, length: this.blockLength(i, b) });
    }
    return released;
  }

  // ---- internals: availability and candidates ----

  private valid(i: number): boolean {
    return Number.isInteger(i) && i >= 0 && i < this.pieceCount;
  }

  private wantedMissing(i: number): boolean {
    return bit(this.wantW, i) && !bit(this.haveW, i);
  }

  /** A piece became (un)wanted-and-missing: update the count and every peer's interest. */
  private adjustMissing(i: number, d: 1 | -1): void {
    this.missing += d;
    for (const ps of this.peers.values()) if (!ps.all && bit(ps.bits, i)) ps.want += d;
  }

  private peerState(peer: P): PeerState<P> {
    let ps = this.peers.get(peer);
    if (!ps) {
      ps = { id: peer, all: false, bits: new Uint32Array(this.words), count: 0, want: 0, out: new Set(), current: -1, fast: undefined, suggested: undefined };
      this.peers.set(peer, ps);
    }
    return ps;
  }

  /** Forgets what the peer announced. */
  private clearPeer(ps: PeerState<P>): void {
    if (ps.all) {
      ps.all = false;
      this.haveAll--;
      return;
    }
    if (ps.count === 0) return;
    this.forEachBit(ps.bits, (i) => this.decAvail(i));
    ps.bits.fill(0);
    ps.count = 0;
    ps.want = 0;
  }

  /** The peer's haves completed the set: count it as a have-all peer. */
  private convertToAll(ps: PeerState<P>): void {
    this.clearPeer(ps);
    ps.all = true;
    this.haveAll++;
  }

  private forEachBit(words: Uint32Array, fn: (i: number) => void): void {
    for (let w = 0; w < words.length; w++) {
      let m = words[w]!;
      while (m !== 0) {
        const low = m & -m;
        m ^= low;
        fn((w << 5) + 31 - Math.clz32(low));
      }
    }
  }

  private refreshCand(i: number): void {
    const should = this.wantedMissing(i) && !this.partials.has(i);
    const is = this.pos[i]! >= 0;
    if (should && !is) this.insertCand(i);
    else if (!should && is) this.removeCand(i);
  }

  private swap(x: number, y: number): void {
    const { order, pos } = this;
    const a = order[x]!;
    const b = order[y]!;
    order[x] = b;
    order[y] = a;
    pos[b] = x;
    pos[a] = y;
  }

  private ensureBucket(a: number): void {
    while (this.ends.length <= a) this.ends.push(this.len);
  }

  /** Drops empty buckets at the top. */
  private trim(): void {
    const e = this.ends;
    while (e.length > 1 && e[e.length - 2] === this.len) e.pop();
  }

  /** Adds a candidate: appended to the top bucket, then moved down bucket by bucket. O(B). */
  private insertCand(i: number): void {
    const a = this.avail[i]!;
    this.ensureBucket(a);
    const e = this.ends;
    let cur = this.len++;
    this.order[cur] = i;
    this.pos[i] = cur;
    e[e.length - 1] = this.len;
    for (let b = e.length - 1; b > a; b--) {
      const s = e[b - 1]!;
      this.swap(cur, s);
      cur = s;
      e[b - 1] = s + 1;
    }
    setBit(this.candW, i);
  }

  /** Removes a candidate: moved up to the end of the array bucket by bucket, then cut off. O(B). */
  private removeCand(i: number): void {
    const e = this.ends;
    let cur = this.pos[i]!;
    for (let b = this.avail[i]!; b < e.length; b++) {
      const last = e[b]! - 1;
      this.swap(cur, last);
      cur = last;
      e[b] = last;
    }
    this.len--;
    this.pos[i] = -1;
    clearBit(this.candW, i);
    this.trim();
  }

  /** One more peer has piece i: a candidate moves from the end of its bucket to the start of the next. O(1). */
  private incAvail(i: number): void {
    const a = this.avail[i]!;
    this.avail[i] = a + 1;
    if (this.pos[i]! < 0) return;
    this.ensureBucket(a + 1);
    const last = this.ends[a]! - 1;
    this.swap(this.pos[i]!, last);
    this.ends[a] = last;
  }

  /** One peer fewer has piece i: a candidate moves from the start of its bucket to the end of the previous. O(1). */
  private decAvail(i: number): void {
    const a = this.avail[i]!;
    this.avail[i] = a - 1;
    if (this.pos[i]! < 0) return;
    const s = this.ends[a - 1]!;
    this.swap(this.pos[i]!, s);
    this.ends[a - 1] = s + 1;
    this.trim();
  }
}
