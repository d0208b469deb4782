/**
 * Whom to upload to: the BitTorrent choking algorithm (tit-for-tat), as
 * described in BEP 3 and done by the mainline client. Pure: time is passed
 * in, randomness is injected; the caller sends the choke/unchoke messages
 * and calls `rechoke` when `nextRechokeAt()` is reached.
 *
 * Every rechoke (every `rechokeIntervalMs`, default 10 s):
 *
 *  - Regular slots. Peers are ranked by rate: while downloading, by how fast
 *    they send to us (reciprocation); while seeding, by how fast we upload to
 *    them (the peers that can take data fastest get it, which spreads the
 *    torrent quickest). Walking down the ranking, each peer is unchoked; an
 *    interested one is a *downloader*, and the walk stops once there are
 *    `regularSlots` downloaders. So uninterested peers with a better rate than
 *    the slowest downloader are unchoked too, and can start at once if they
 *    become interested (the downloader with the worst rate is then choked at
 *    the next rechoke, which an interest change brings forward). When fewer
 *    than `regularSlots` peers are interested, every ranked peer is unchoked.
 *    That is with `unchokeUninterested`; by default uninterested peers are
 *    not ranked at all, and only interested ones are unchoked.
 *    Equal rates: interested first, then those already unchoked, then random.
 *  - Anti-snubbing. While downloading, a peer we are interested in that has
 *    not sent us a block for `snubTimeoutMs` (counted from when we became
 *    interested, or from its last block) is snubbed, as is one marked with
 *    `markSnubbed`: it is left out of the ranking, so it loses any regular
 *    slot. It can still be unchoked optimistically.
 *  - Optimistic slots. `optimisticSlots` interested peers outside the regular
 *    set are unchoked regardless of rate; they are replaced every
 *    `optimisticIntervalMs` (default 30 s), or sooner when they leave, lose
 *    interest or earn a regular slot. A replacement is drawn at random, peers
 *    connected within the last `optimisticIntervalMs` three times as likely as
 *    others (mainline puts new connections at a random place in its rotation,
 *    three times as likely at the front), and not the peer just rotated out
 *    unless it is the only candidate. Optimistic slots come on top of the
 *    regular ones: with enough interested peers, regularSlots + optimisticSlots
 *    peers are unchoked.
 *
 * Deterministic: equal inputs and an equally seeded Random give equal results.
 */
import type { Random } from '../runtime/contract.js';

export interface ChokerOptions {
  readonly random: Random;
  /** Downloaders unchoked by rate. Default 4. */
  readonly regularSlots?: number;
  /** Peers unchoked regardless of rate. Default 1. */
  readonly optimisticSlots?: number;
  /** Default 10 000. */
  readonly rechokeIntervalMs?: number;
  /** Default 30 000. */
  readonly optimisticIntervalMs?: number;
  /** Default 60 000. */
  readonly snubTimeoutMs?: number;
  /**
   * BEP 3's reference algorithm also unchokes uninterested peers that rank
   * above the slowest downloader, so they can start the moment they become
   * interested. Default false: only interested peers are unchoked, as
   * libtorrent does. An unchoke sent before a peer is interested can be lost
   * on it: WebTorrent 1.9.7 registers its unchoke handler only once the
   * torrent is ready, so an early unchoke left it waiting forever. An
   * interested peer is unchoked at the next rechoke, which its interest
   * brings forward when a slot is free, so this costs one round trip.
   */
  readonly unchokeUninterested?: boolean;
}

export interface RechokeOptions {
  /** We have everything we want: rank by upload rate, no snubbing. Default false. */
  readonly seeding?: boolean;
}

/** Changes to send, relative to the state after the previous rechoke. */
export interface RechokeResult<P> {
  readonly unchoke: P[];
  readonly choke: P[];
}

interface PeerEntry {
  /** When it connected; NaN until the next rechoke when not given. */
  addedAt: number;
  /** The peer is interested in us. */
  interested: boolean;
  /** We are interested in the peer. */
  amInterested: boolean;
  amInterestedAt: number;
  lastBlockAt: number;
  snubMarked: boolean;
  /** Bytes/s the peer sends us. */
  down: number;
  /** Bytes/s we send the peer. */
  up: number;
  unchoked: boolean;
  optimistic: boolean;
}

interface Ranked<P> {
  readonly id: P;
  readonly e: PeerEntry;
  readonly rate: number;
  readonly tie: number;
}

export class Choker<P = string | number> {
  readonly regularSlots: number;
  private readonly unchokeUninterested: boolean;
  readonly optimisticSlots: number;
  readonly rechokeIntervalMs: number;
  readonly optimisticIntervalMs: number;
  readonly snubTimeoutMs: number;
  private readonly random: Random;
  private readonly peers = new Map<P, PeerEntry>();
  private optimistic: P[] = [];
  private nextOptimisticAt = -Infinity;
  private lastRechokeAt = -Infinity;
  private dueAt = -Infinity;

  constructor(options: ChokerOptions) {
    this.random = options.random;
    this.regularSlots = options.regularSlots ?? 4;
    this.unchokeUninterested = options.unchokeUninterested ?? false;
    this.optimisticSlots = options.optimisticSlots ?? 1;
    this.rechokeIntervalMs = options.rechokeIntervalMs ?? 10_000;
    this.optimisticIntervalMs = options.optimisticIntervalMs ?? 30_000;
    this.snubTimeoutMs = options.snubTimeoutMs ?? 60_000;
    for (const [name, v] of [['regularSlots', this.regularSlots], ['optimisticSlots', this.optimisticSlots]] as const) {
      if (!(Number.isInteger(v) && v >= 0)) throw new RangeError(`${name} must be a whole number >= 0 (got ${v})`);
    }
    for (const [name, v] of [['rechokeIntervalMs', this.rechokeIntervalMs], ['optimisticIntervalMs', this.optimisticIntervalMs], ['snubTimeoutMs', this.snubTimeoutMs]] as const) {
      if (!(v > 0 && Number.isFinite(v))) throw new RangeError(`${name} must be a positive number (got ${v})`);
    }
  }

  /**
   * A connected peer, choked and not interested. `nowMs` is when it
   * connected (default: the time of the next rechoke); peers connected less
   * than `optimisticIntervalMs` ago are favoured for the optimistic unchoke.
   */
  add(peer: P, nowMs?: number): void {
    if (this.peers.has(peer)) return;
    this.peers.set(peer, {
      addedAt: nowMs ?? NaN,
      interested: false,
      amInterested: false,
      amInterestedAt: -Infinity,
      lastBlockAt: -Infinity,
      snubMarked: false,
      down: 0,
      up: 0,
      unchoked: false,
      optimistic: false,
    });
  }

  /** The peer disconnected. If it was unchoked, a rechoke is due at once (its slot is free). */
  remove(peer: P): boolean {
    const e = this.peers.get(peer);
    if (!e) return false;
    this.peers.delete(peer);
    if (e.optimistic) this.optimistic = this.optimistic.filter((p) => p !== peer);
    if (e.unchoked) this.soon();
    return true;
  }

  has(peer: P): boolean {
    return this.peers.has(peer);
  }

  get size(): number {
    return this.peers.size;
  }

  /**
   * The peer is (not) interested in us. A change at an unchoked peer, or a
   * choked peer becoming interested while a slot is free, makes a rechoke due at once.
   */
  setInterested(peer: P, interested: boolean): void {
    const e = this.peers.get(peer);
    if (!e || e.interested === interested) return;
    e.interested = interested;
    if (e.unchoked || (interested && this.downloaders() < this.regularSlots + this.optimisticSlots)) this.soon();
  }

  /** We are (not) interested in the peer (snubbing is only judged while we are). */
  setAmInterested(peer: P, interested: boolean, nowMs: number): void {
    const e = this.peers.get(peer);
    if (!e || e.amInterested === interested) return;
    e.amInterested = interested;
    if (interested) e.amInterestedAt = nowMs;
  }

  /** A block arrived from the peer: it is not snubbing us. */
  blockReceived(peer: P, nowMs: number): void {
    const e = this.peers.get(peer);
    if (!e) return;
    e.lastBlockAt = Math.max(e.lastBlockAt, nowMs);
    e.snubMarked = false;
  }

  /** Marks the peer snubbed (or clears the mark); a block from it clears the mark too. */
  markSnubbed(peer: P, snubbed = true): void {
    const e = this.peers.get(peer);
    if (e) e.snubMarked = snubbed;
  }

  /** How fast the peer sends to us, bytes/s (the ranking while downloading). */
  setDownloadRate(peer: P, bytesPerSecond: number): void {
    const e = this.peers.get(peer);
    if (e) e.down = bytesPerSecond;
  }

  /** How fast we send to the peer, bytes/s (the ranking while seeding). */
  setUploadRate(peer: P, bytesPerSecond: number): void {
    const e = this.peers.get(peer);
    if (e) e.up = bytesPerSecond;
  }

  isSnubbed(peer: P, nowMs: number): boolean {
    const e = this.peers.get(peer);
    return e !== undefined && this.snubbed(e, nowMs);
  }

  isUnchoked(peer: P): boolean {
    return this.peers.get(peer)?.unchoked ?? false;
  }

  isOptimistic(peer: P): boolean {
    return this.peers.get(peer)?.optimistic ?? false;
  }

  /** The unchoked peers, in the order they were added. */
  unchoked(): P[] {
    const out: P[] = [];
    for (const [id, e] of this.peers) if (e.unchoked) out.push(id);
    return out;
  }

  /** When to call `rechoke` next: -Infinity (or a past time) means at once. */
  nextRechokeAt(): number {
    return this.dueAt;
  }

  /** Decides who is unchoked now; returns the changes to send. */
  rechoke(nowMs: number, options?: RechokeOptions): RechokeResult<P> {
    const seeding = options?.seeding ?? false;
    this.lastRechokeAt = nowMs;
    this.dueAt = nowMs + this.rechokeIntervalMs;

    // Regular slots: rank, then walk down until there are enough downloaders.
    const ranked: Ranked<P>[] = [];
    for (const [id, e] of this.peers) {
      if (Number.isNaN(e.addedAt)) e.addedAt = nowMs;
      if (!seeding && this.snubbed(e, nowMs)) continue;
      if (!e.interested && !this.unchokeUninterested) continue;
      ranked.push({ id, e, rate: seeding ? e.up : e.down, tie: this.random.u32() });
    }
    ranked.sort(
      (a, b) =>
        b.rate - a.rate ||
        Number(b.e.interested) - Number(a.e.interested) ||
        Number(b.e.unchoked && !b.e.optimistic) - Number(a.e.unchoked && !a.e.optimistic) ||
        a.tie - b.tie,
    );
    const regular = new Set<P>();
    let downloaders = 0;
    for (const r of ranked) {
      if (downloaders >= this.regularSlots) break;
      regular.add(r.id);
      if (r.e.interested) downloaders++;
    }

    // Optimistic slots: keep the current ones until the rotation, unless no longer eligible.
    const eligible = (p: P): boolean => !regular.has(p) && this.peers.get(p)?.interested === true;
    const previous = this.optimistic;
    let keep: P[];
    if (nowMs >= this.nextOptimisticAt) {
      keep = [];
      this.nextOptimisticAt = nowMs + this.optimisticIntervalMs;
    } else {
      keep = previous.filter(eligible);
    }
    while (keep.length < this.optimisticSlots) {
      const pick = this.drawOptimistic(nowMs, (p) => eligible(p) && !keep.includes(p), previous);
      if (pick === undefined) break;
      keep.push(pick);
    }
    this.optimistic = keep;

    const unchoke: P[] = [];
    const choke: P[] = [];
    for (const [id, e] of this.peers) {
      e.optimistic = keep.includes(id);
      const u = e.optimistic || regular.has(id);
      if (u && !e.unchoked) unchoke.push(id);
      else if (!u && e.unchoked) choke.push(id);
      e.unchoked = u;
    }
    return { unchoke, choke };
  }

  /** A weighted draw among eligible peers, avoiding `avoid` unless nothing else is eligible. */
  private drawOptimistic(nowMs: number, ok: (p: P) => boolean, avoid: readonly P[]): P | undefined {
    for (const strict of [true, false]) {
      const ids: P[] = [];
      const weights: number[] = [];
      let total = 0;
      for (const id of this.peers.keys()) {
        if (!ok(id) || (strict && avoid.includes(id))) continue;
        const w = nowMs - this.peers.get(id)!.addedAt < this.optimisticIntervalMs ? 3 : 1;
        ids.push(id);
        weights.push(w);
        total += w;
      }
      if (total === 0) continue;
      let r = this.random.below(total);
      for (let k = 0; k < ids.length; k++) {
        r -= weights[k]!;
        if (r < 0) return ids[k];
      }
    }
    return undefined;
  }

  private snubbed(e: PeerEntry, nowMs: number): boolean {
    if (e.snubMarked) return true;
    return e.amInterested && nowMs - Math.max(e.lastBlockAt, e.amInterestedAt) >= this.snubTimeoutMs;
  }

  /** Interested peers currently unchoked. */
  private downloaders(): number {
    let n = 0;
    for (const e of this.peers.values()) if (e.unchoked && e.interested) n++;
    return n;
  }

  private soon(): void {
    this.dueAt = Math.min(this.dueAt, this.lastRechokeAt);
  }
}
