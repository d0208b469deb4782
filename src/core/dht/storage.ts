/**
 * What a DHT node stores for others: announced peers (BEP 5) and BEP 44
 * items, both bounded in count and expiring. Keys are binary strings (see
 * id.ts); a Map's insertion order doubles as the eviction order, since a
 * refresh deletes and re-inserts.
 */
import type { Random } from '../../runtime/contract.js';
import type { Item } from './bep44.js';
import type { Addr, Id } from './id.js';

export interface PeerStoreOptions {
  /** Peers kept per infohash (default 200). */
  maxPerInfoHash?: number;
  /** Infohashes tracked (default 2,000). */
  maxInfoHashes?: number;
  /** Peers kept in total (default 20,000). */
  maxPeers?: number;
  /** How long an announce is kept, in ms (default 30 minutes). */
  ttlMs?: number;
}

export class PeerStore {
  private readonly map = new Map<Id, Map<Addr, number>>();
  private total = 0;
  readonly maxPerInfoHash: number;
  readonly maxInfoHashes: number;
  readonly maxPeers: number;
  readonly ttlMs: number;

  constructor(options: PeerStoreOptions = {}) {
    this.maxPerInfoHash = options.maxPerInfoHash ?? 200;
    this.maxInfoHashes = options.maxInfoHashes ?? 2000;
    this.maxPeers = options.maxPeers ?? 20_000;
    this.ttlMs = options.ttlMs ?? 30 * 60_000;
  }

  get size(): number {
    return this.total;
  }

  get infoHashes(): number {
    return this.map.size;
  }

  add(now: number, infoHash: Id, peer: Addr): void {
    let peers = this.map.get(infoHash);
    if (peers === undefined) {
      if (this.map.size >= this.maxInfoHashes) this.evictInfoHash();
      peers = new Map();
      this.map.set(infoHash, peers);
    }
    if (peers.delete(peer)) this.total--;
    else if (peers.size >= this.maxPerInfoHash) {
      const oldest = peers.keys().next().value!;
      peers.delete(oldest);
      this.total--;
    }
    if (this.total >= this.maxPeers) this.evictPeer(infoHash);
    peers.set(peer, now + this.ttlMs);
    this.total++;
  }

  private evictInfoHash(): void {
    const first = this.map.keys().next().value!;
    this.total -= this.map.get(first)!.size;
    this.map.delete(first);
  }

  /** Frees one slot: the oldest peer of the oldest infohash other than `keep` (or of `keep` itself). */
  private evictPeer(keep: Id): void {
    for (const [ih, peers] of this.map) {
      if (ih === keep && this.map.size > 1) continue;
      const oldest = peers.keys().next().value;
      if (oldest === undefined) continue;
      peers.delete(oldest);
      this.total--;
      if (peers.size === 0 && ih !== keep) this.map.delete(ih);
      return;
    }
  }

  /** Up to `max` live peers of an infohash, a random window when there are more. */
  get(now: number, infoHash: Id, max: number, random: Random): Addr[] {
    const peers = this.map.get(infoHash);
    if (peers === undefined) return [];
    const live: Addr[] = [];
    for (const [p, exp] of peers) if (exp > now) live.push(p);
    if (live.length <= max) return live;
    const start = random.below(live.length);
    const out: Addr[] = [];
    for (let i = 0; i < max; i++) out.push(live[(start + i) % live.length]!);
    return out;
  }

  /** Up to `max` infohashes we hold peers for (BEP 51 samples). */
  sampleInfoHashes(max: number): Id[] {
    const out: Id[] = [];
    for (const ih of this.map.keys()) {
      if (out.length >= max) break;
      out.push(ih);
    }
    return out;
  }

  /** Drops expired announces. */
  sweep(now: number): void {
    for (const [ih, peers] of this.map) {
      for (const [p, exp] of peers) {
        if (exp <= now) {
          peers.delete(p);
          this.total--;
        }
      }
      if (peers.size === 0) this.map.delete(ih);
    }
  }
}

export interface StoredItem extends Item {
  expires: number;
}

export interface ItemStoreOptions {
  /** Items kept (default 1,000; at most 1000 bytes of value each). */
  maxItems?: number;
  /** How long an item lives without being put again, in ms (BEP 44: 2 hours). */
  ttlMs?: number;
}

export class ItemStore {
  private readonly map = new Map<Id, StoredItem>();
  readonly maxItems: number;
  readonly ttlMs: number;

  constructor(options: ItemStoreOptions = {}) {
    this.maxItems = options.maxItems ?? 1000;
    this.ttlMs = options.ttlMs ?? 2 * 60 * 60_000;
  }

  get size(): number {
    return this.map.size;
  }

  get(now: number, target: Id): StoredItem | undefined {
    const item = this.map.get(target);
    return item !== undefined && item.expires > now ? item : undefined;
  }

  /**
   * Stores a validated item, copying its buffers off the datagram into one
   * ArrayBuffer of its own (never slices of Node's shared 8 KiB pool, which a
   * stored item would otherwise keep alive whole).
   */
  set(now: number, target: Id, item: Item): void {
    if (!this.map.delete(target) && this.map.size >= this.maxItems) this.map.delete(this.map.keys().next().value!);
    const block = Buffer.allocUnsafeSlow(item.value.length + (item.k?.length ?? 0) + (item.sig?.length ?? 0) + (item.salt?.length ?? 0));
    let at = 0;
    const copy = (b: Buffer | undefined): Buffer | undefined => {
      if (b === undefined) return undefined;
      block.set(b, at);
      at += b.length;
      return block.subarray(at - b.length, at);
    };
    const stored: StoredItem = { value: copy(item.value)!, expires: now + this.ttlMs };
    if (item.k !== undefined) Object.assign(stored, { k: copy(item.k), sig: copy(item.sig), seq: item.seq, salt: copy(item.salt) });
    this.map.set(target, stored);
  }

  sweep(now: number): void {
    for (const [t, item] of this.map) if (item.expires <= now) this.map.delete(t);
  }
}
