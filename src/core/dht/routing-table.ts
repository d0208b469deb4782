/**
 * The Kademlia routing table (BEP 5), sans-I/O and small.
 *
 * Buckets are indexed by the number of leading bits a node id shares with our
 * own id; the last bucket holds everything at least that close, and it is the
 * only one that splits (along our own id) when it fills. Each bucket holds at
 * most `k` nodes plus a bounded replacement cache.
 *
 * A node is *good* if it answered one of our queries and was heard from
 * within `goodMs` (15 minutes), *bad* after `maxFails` unanswered queries in
 * a row, and *questionable* otherwise. Only nodes that answered one of our
 * queries are ever inserted: a node that merely sends us queries, or appears
 * in someone's node list, must first answer a ping. That, and the address
 * checks, keep forged node lists and spoofed queries out of the table.
 *
 * BEP 42 and Sybil limits: at most `prefixLimit` nodes of one /24 (IPv4) or
 * /48 (IPv6) in a bucket (local-network addresses are exempt), and a node
 * whose id does not match its address is *deprioritised*: a node with a
 * matching id takes its slot when the bucket is full, and replacements with
 * matching ids are promoted first.
 *
 * Entries are small objects holding binary strings (see id.ts), no Buffers.
 */
import type { Random } from '../../runtime/contract.js';
import { addrPrefix, commonPrefixBits, compareDistance, idMatchesAddr, isLocalAddr, randomIdWithPrefix, type Addr, type Id } from './id.js';

export interface RoutingTableOptions {
  /** Bucket size (default 8). */
  k?: number;
  /** Replacement cache per bucket (default 8). */
  replacements?: number;
  /** Unanswered queries in a row that make a node bad (default 2). */
  maxFails?: number;
  /** How long a node stays good after it was last heard from, in ms (default 15 minutes). */
  goodMs?: number;
  /** Most nodes of one /24 or /48 per bucket, 0 for no limit (default 2; local addresses are exempt). */
  prefixLimit?: number;
  /** Deprioritise nodes whose id does not match their address (BEP 42; default true). */
  enforceBep42?: boolean;
}

/**
 * "Never", for the times of a NodeEntry. Entry times are whole milliseconds
 * (`wholeMs`) and this sentinel is a small integer too, so V8 keeps them in
 * the object instead of boxing each in a heap number of its own (three per
 * entry, a sixth of a simulated node's memory). A node up for more than
 * 2^31 ms only loses that saving.
 */
export const NEVER = -(2 ** 30);

/** A time as entries keep it: whole milliseconds. */
export function wholeMs(now: number): number {
  return Math.floor(now);
}

export class NodeEntry {
  /**
   * Last time we heard anything from it (a response or a query), in whole ms. It only
   * moves forward once the table has been scanned for questionable nodes
   * (the scan relies on that to skip quiet tables); a table rebuilt around a
   * new id may set it back before its first scan.
   */
  lastSeen: number;
  /** Last time it answered one of our queries (NEVER: never). */
  lastResponse = NEVER;
  /** Last time we sent it a liveness ping (NEVER: never). */
  lastPing = NEVER;
  /** Unanswered queries in a row. */
  fails = 0;
  /** BEP 42: its id matches its address (or the address is local). */
  readonly secure: boolean;
  /** The id's first 24 bits (`idKey`): lookups and distance comparisons read this before the id string. */
  readonly key: number;

  constructor(
    readonly id: Id,
    public addr: Addr,
    now: number,
  ) {
    this.lastSeen = wholeMs(now);
    this.secure = idMatchesAddr(id, addr);
    this.key = idKey(id);
  }
}

/**
 * An id's first three bytes as a number (a small integer, stored unboxed).
 * Entries whose keys differ have different ids; XOR distances to a target
 * compare like `key ^ idKey(target)` unless those are equal.
 */
export function idKey(id: Id): number {
  return (id.charCodeAt(0) << 16) | (id.charCodeAt(1) << 8) | id.charCodeAt(2);
}

/**
 * The ids and addresses of table entries, one string per distinct value:
 * in a simulator every node's table holds the same few hundred thousand ids
 * and addresses, each arriving as a fresh string decoded from a datagram, and
 * sharing them saves about a third of a routing table's memory. Only taken
 * on insertion; bounded (cleared when full, which only loses sharing).
 */
const shared = new Map<string, string>();
const MAX_SHARED = 1 << 20;

function share(s: string): string {
  const known = shared.get(s);
  if (known !== undefined) return known;
  if (shared.size >= MAX_SHARED) shared.clear();
  shared.set(s, s);
  return s;
}

export type NodeState = 'good' | 'questionable' | 'bad';

export interface BucketStats {
  /** Nodes in the bucket (at most k). */
  readonly nodes: number;
  readonly good: number;
  readonly questionable: number;
  readonly bad: number;
  /** Nodes in its replacement cache. */
  readonly replacements: number;
  /** When a node last joined it or answered us from it (or it was refreshed). */
  readonly changed: number;
}

const EMPTY_BUCKET: { readonly nodes: readonly NodeEntry[]; readonly replacements: readonly NodeEntry[] } = { nodes: [], replacements: [] };

/**
 * A bucket's arrays are replaced by exactly sized copies when they grow
 * (`concat`, `slice`) rather than pushed to: a pushed array reserves 16
 * slots, which in a simulator of 100,000 nodes with a dozen buckets each,
 * two arrays a bucket, was as much memory as the entries themselves.
 */
class Bucket {
  nodes: NodeEntry[] = [];
  replacements: NodeEntry[] = [];
  constructor(public changed: number) {}
}

export type InsertResult =
  /** Known node, refreshed. */
  | 'updated'
  | 'added'
  /** Bucket full: kept in the replacement cache. */
  | 'replacement'
  /** Not taken (our own id, an address conflict with a good node, the prefix limit, or it never answered us). */
  | 'rejected';

/** A node as saved to disk: binary strings are not JSON-friendly, so hex and text. */
export interface SavedNode {
  id: string;
  host: string;
  port: number;
}

export class RoutingTable {
  readonly k: number;
  readonly maxReplacements: number;
  readonly maxFails: number;
  readonly goodMs: number;
  readonly prefixLimit: number;
  readonly enforceBep42: boolean;
  private readonly buckets: Bucket[];
  private count = 0;
  /**
   * Before this time no node can be questionable, so `questionable()` need
   * not scan: at the last scan none was, every node was good until at least
   * then, and no query to one has failed since (`failed()` resets it).
   * Nodes inserted or heard from since are good until at least the scan's
   * time plus `goodMs`, which bounds it too.
   */
  private quietUntil = -Infinity;

  constructor(
    readonly self: Id,
    now: number,
    options: RoutingTableOptions = {},
  ) {
    this.k = options.k ?? 8;
    this.maxReplacements = options.replacements ?? 8;
    this.maxFails = options.maxFails ?? 2;
    this.goodMs = options.goodMs ?? 15 * 60_000;
    this.prefixLimit = options.prefixLimit ?? 2;
    this.enforceBep42 = options.enforceBep42 ?? true;
    if (!(this.k >= 1)) throw new RangeError('k must be >= 1');
    this.buckets = [new Bucket(now)];
  }

  /** Nodes in the table (not counting replacements). */
  get size(): number {
    return this.count;
  }

  get bucketCount(): number {
    return this.buckets.length;
  }

  state(n: NodeEntry, now: number): NodeState {
    if (n.fails >= this.maxFails) return 'bad';
    if (n.lastResponse !== NEVER && now - n.lastSeen < this.goodMs && n.fails === 0) return 'good';
    return 'questionable';
  }

  private indexOf(id: Id): number {
    return Math.min(commonPrefixBits(this.self, id), this.buckets.length - 1);
  }

  /** The node with this id, in the table or in a replacement cache. */
  get(id: Id): NodeEntry | undefined {
    const b = this.buckets[this.indexOf(id)]!;
    const key = idKey(id);
    for (const n of b.nodes) if (n.key === key && n.id === id) return n;
    for (const n of b.replacements) if (n.key === key && n.id === id) return n;
    return undefined;
  }

  /** Whether `id` is in the table proper (not only a replacement). */
  has(id: Id): boolean {
    const b = this.buckets[this.indexOf(id)]!;
    return b.nodes.some((n) => n.id === id);
  }

  private prefixCount(b: Bucket, addr: Addr): number {
    const p = addrPrefix(addr);
    let c = 0;
    for (const n of b.nodes) if (addrPrefix(n.addr) === p) c++;
    return c;
  }

  private prefixAllowed(b: Bucket, addr: Addr): boolean {
    return this.prefixLimit <= 0 || isLocalAddr(addr) || this.prefixCount(b, addr) < this.prefixLimit;
  }

  /**
   * Whether a node we have not verified yet could get a slot (so it is
   * worth a ping): the bucket has room, a bad node, or can split.
   */
  wouldAccept(id: Id, addr: Addr, now: number): boolean {
    if (id === this.self) return false;
    const i = this.indexOf(id);
    const b = this.buckets[i]!;
    if (b.nodes.some((n) => n.id === id)) return false;
    if (!this.prefixAllowed(b, addr)) return false;
    if (b.nodes.length < this.k) return true;
    if (i === this.buckets.length - 1 && this.buckets.length < 160) return true;
    return b.nodes.some((n) => this.state(n, now) !== 'good');
  }

  /**
   * Records that we heard from a node. `responded` means it answered one of
   * our queries (only such nodes are inserted); otherwise only a known
   * node's `lastSeen` moves. Returns what happened, and fills `toPing` with
   * questionable nodes of a full bucket that should be pinged (if they fail,
   * a replacement takes their slot).
   */
  seen(now: number, id: Id, addr: Addr, responded: boolean, toPing?: NodeEntry[]): InsertResult {
    if (id === this.self) return 'rejected';
    let i = this.indexOf(id);
    let b = this.buckets[i]!;
    let known: NodeEntry | undefined;
    let inTable = false;
    const key = idKey(id);
    for (const n of b.nodes) {
      if (n.key === key && n.id === id) {
        known = n;
        inTable = true;
        break;
      }
    }
    if (known === undefined) {
      for (const n of b.replacements) {
        if (n.key === key && n.id === id) {
          known = n;
          break;
        }
      }
    }
    if (known !== undefined) {
      if (known.addr !== addr) {
        // Same id, another address: a good node keeps its address (no hijacking by spoofed ids).
        if (this.state(known, now) === 'good' || !responded) return 'rejected';
        known.addr = share(addr);
      }
      known.lastSeen = wholeMs(now);
      if (responded) {
        known.lastResponse = wholeMs(now);
        known.fails = 0;
      }
      if (inTable) b.changed = now;
      return 'updated';
    }
    if (!responded) return 'rejected';
    for (;;) {
      if (!this.prefixAllowed(b, addr)) return 'rejected';
      const entry = new NodeEntry(share(id), share(addr), now);
      entry.lastResponse = wholeMs(now);
      if (b.nodes.length < this.k) {
        b.nodes = b.nodes.concat(entry); // exactly sized (see Bucket)
        b.changed = now;
        this.count++;
        return 'added';
      }
      const bad = b.nodes.findIndex((n) => this.state(n, now) === 'bad');
      if (bad >= 0) {
        b.nodes[bad] = entry;
        b.changed = now;
        return 'added';
      }
      if (i === this.buckets.length - 1 && this.buckets.length < 160) {
        this.split();
        i = this.indexOf(id);
        b = this.buckets[i]!;
        continue;
      }
      if (this.enforceBep42 && entry.secure) {
        const insecure = b.nodes.findIndex((n) => !n.secure);
        if (insecure >= 0) {
          this.addReplacement(b, b.nodes[insecure]!);
          b.nodes[insecure] = entry;
          b.changed = now;
          return 'added';
        }
      }
      this.addReplacement(b, entry);
      if (toPing !== undefined) {
        for (const n of b.nodes) if (this.state(n, now) === 'questionable') toPing.push(n);
      }
      return 'replacement';
    }
  }

  private addReplacement(b: Bucket, entry: NodeEntry): void {
    if (this.maxReplacements <= 0) return;
    if (b.replacements.length >= this.maxReplacements) {
      // Drop the oldest insecure one first, else the oldest.
      let drop = this.enforceBep42 ? b.replacements.findIndex((n) => !n.secure) : -1;
      if (drop < 0 || (!entry.secure && this.enforceBep42)) drop = 0;
      b.replacements.splice(drop, 1);
    }
    b.replacements = b.replacements.concat(entry);
  }

  private split(): void {
    const last = this.buckets.length - 1;
    const old = this.buckets[last]!;
    const next = new Bucket(old.changed);
    const stay: NodeEntry[] = [];
    for (const n of old.nodes) (commonPrefixBits(this.self, n.id) > last ? next.nodes : stay).push(n);
    old.nodes = stay.slice();
    next.nodes = next.nodes.slice();
    const stayR: NodeEntry[] = [];
    for (const n of old.replacements) (commonPrefixBits(this.self, n.id) > last ? next.replacements : stayR).push(n);
    old.replacements = stayR.slice();
    next.replacements = next.replacements.slice();
    this.buckets.push(next);
  }

  /**
   * A query to the node went unanswered. Once it is bad, the best
   * replacement (answered most recently, BEP 42-matching first) takes its slot.
   */
  failed(now: number, id: Id): void {
    this.quietUntil = -Infinity;
    const b = this.buckets[this.indexOf(id)]!;
    const ri = b.replacements.findIndex((n) => n.id === id);
    if (ri >= 0) {
      b.replacements.splice(ri, 1);
      return;
    }
    const i = b.nodes.findIndex((n) => n.id === id);
    if (i < 0) return;
    const n = b.nodes[i]!;
    n.fails++;
    if (this.state(n, now) !== 'bad') return;
    const r = this.bestReplacement(b);
    if (r >= 0) {
      b.nodes[i] = b.replacements[r]!;
      b.replacements.splice(r, 1);
      b.changed = now;
    }
  }

  private bestReplacement(b: Bucket): number {
    let best = -1;
    for (let j = 0; j < b.replacements.length; j++) {
      const r = b.replacements[j]!;
      if (r.fails > 0 || !this.prefixAllowed(b, r.addr)) continue;
      if (best < 0) {
        best = j;
        continue;
      }
      const cur = b.replacements[best]!;
      if (this.enforceBep42 && r.secure !== cur.secure) {
        if (r.secure) best = j;
      } else if (r.lastSeen >= cur.lastSeen) best = j;
    }
    return best;
  }

  /** Removes a node outright (for example one that turned out to be us). */
  remove(id: Id): void {
    const b = this.buckets[this.indexOf(id)]!;
    const i = b.nodes.findIndex((n) => n.id === id);
    if (i >= 0) {
      b.nodes.splice(i, 1);
      this.count--;
    }
    const r = b.replacements.findIndex((n) => n.id === id);
    if (r >= 0) b.replacements.splice(r, 1);
  }

  /**
   * Up to `n` non-bad nodes closest to `target` in XOR distance, closest
   * first, optionally of one address family. Buckets are visited in
   * distance order: the target's own bucket, then every deeper one (all
   * farther from the target than the first, all closer than the shallower
   * ones), then the shallower ones, nearest first. For a reply's few nodes
   * each group is merged in by insertion into at most `n` places, so nothing
   * is copied or sorted whole; for a lookup's long list a group is sorted.
   * (`now` is not needed: being bad depends on failures only.)
   */
  closest(target: Id, n: number, _now: number, family?: 4 | 6): NodeEntry[] {
    const out: NodeEntry[] = [];
    if (!(n >= 1)) return out;
    const last = this.buckets.length - 1;
    const p = Math.min(commonPrefixBits(this.self, target), last);
    const tk = idKey(target);
    if (n > 16) {
      // Insertion would move O(n) entries per node: sort each group instead (the deeper buckets as one).
      this.sortedInto(out, this.buckets[p]!.nodes, target, n, family);
      if (out.length < n && p < last) {
        const deeper: NodeEntry[] = [];
        for (let i = p + 1; i <= last; i++) for (const e of this.buckets[i]!.nodes) deeper.push(e);
        this.sortedInto(out, deeper, target, n, family);
      }
      for (let i = p - 1; i >= 0 && out.length < n; i--) this.sortedInto(out, this.buckets[i]!.nodes, target, n, family);
      return out;
    }
    this.takeClosest(out, this.buckets[p]!.nodes, target, tk, n, family, 0);
    if (out.length < n) {
      const base = out.length;
      for (let i = p + 1; i <= last; i++) this.takeClosest(out, this.buckets[i]!.nodes, target, tk, n, family, base);
    }
    for (let i = p - 1; i >= 0 && out.length < n; i--) this.takeClosest(out, this.buckets[i]!.nodes, target, tk, n, family, out.length);
    return out;
  }

  /** Appends the usable nodes of `group` to `out` in distance order, keeping `out` to at most `n`. */
  private sortedInto(out: NodeEntry[], group: readonly NodeEntry[], target: Id, n: number, family: 4 | 6 | undefined): void {
    const maxFails = this.maxFails;
    const ok = group.filter((e) => e.fails < maxFails && (family === undefined || (family === 4) === (e.addr.length === 6)));
    ok.sort((a, b) => compareDistance(target, a.id, b.id));
    for (let i = 0; i < ok.length && out.length < n; i++) out.push(ok[i]!);
  }

  /** Inserts the usable nodes of `group` into `out[base..]` in distance order, keeping `out` to at most `n`. */
  private takeClosest(out: NodeEntry[], group: readonly NodeEntry[], target: Id, tk: number, n: number, family: 4 | 6 | undefined, base: number): void {
    const maxFails = this.maxFails;
    for (let g = 0; g < group.length; g++) {
      const e = group[g]!;
      if (e.fails >= maxFails) continue; // bad
      const d = e.key ^ tk;
      let j = out.length;
      if (j >= n) {
        // Full: it must beat the farthest kept node of its own group, which it then replaces.
        if (j <= base) continue;
        const f = out[j - 1]!;
        const df = f.key ^ tk;
        if (d > df || (d === df && compareDistance(target, e.id, f.id) >= 0)) continue;
        j--;
      }
      if (family !== undefined && (family === 4) !== (e.addr.length === 6)) continue;
      for (; j > base; j--) {
        const f = out[j - 1]!;
        const df = f.key ^ tk;
        if (d > df || (d === df && compareDistance(target, e.id, f.id) >= 0)) break;
        out[j] = f;
      }
      out[j] = e;
    }
  }

  /** Every node in the table, bucket by bucket. */
  *entries(): IterableIterator<NodeEntry> {
    for (const b of this.buckets) yield* b.nodes;
  }

  /**
   * Nodes due a liveness ping: questionable, and not pinged in the last
   * `intervalMs`. A node's maintenance tick calls this every few seconds;
   * while the table is quiet (see `quietUntil`) it returns at once instead of
   * walking every entry.
   */
  questionable(now: number, max: number, intervalMs: number): NodeEntry[] {
    const out: NodeEntry[] = [];
    if (now < this.quietUntil) return out;
    let quiet = now + this.goodMs; // a node inserted after this scan stays good at least that long
    let busy = false;
    for (const b of this.buckets) {
      for (const n of b.nodes) {
        if (out.length >= max) {
          this.quietUntil = -Infinity;
          return out;
        }
        const s = this.state(n, now);
        if (s === 'questionable') {
          busy = true;
          if (now - n.lastPing >= intervalMs) out.push(n);
        } else if (s === 'good' && n.lastSeen + this.goodMs < quiet) quiet = n.lastSeen + this.goodMs;
        // A bad node stays bad until it answers (then it is good) or is replaced.
      }
    }
    this.quietUntil = busy ? -Infinity : quiet;
    return out;
  }

  /**
   * A random id in the range of the stalest bucket that is due a refresh, if
   * any. A full bucket is due after `refreshMs` without change; one holding
   * fewer nodes sooner, in proportion to how full it is, and an empty one
   * after `emptyRefreshMs` (an empty far bucket is what makes lookups into
   * its part of the id space fail).
   */
  staleBucketTarget(now: number, refreshMs: number, random: Random, emptyRefreshMs = refreshMs): Id | undefined {
    let oldest = -1;
    for (let i = 0; i < this.buckets.length; i++) {
      const b = this.buckets[i]!;
      const due = Math.min(refreshMs, Math.max(emptyRefreshMs, (refreshMs * b.nodes.length) / this.k));
      if (now - b.changed >= due && (oldest < 0 || b.changed < this.buckets[oldest]!.changed)) oldest = i;
    }
    if (oldest < 0) return undefined;
    const last = this.buckets.length - 1;
    // The last bucket covers every id sharing >= `last` bits: any id below it, ours with random low bits.
    return this.refreshTarget(oldest === last ? last + random.below(161 - last) : oldest, now, random);
  }

  /**
   * A random id sharing exactly `bits` leading bits with ours, for a refresh
   * lookup of that part of the id space (bucket `bits`, or a part of the
   * last bucket); the bucket holding it counts as refreshed now.
   */
  refreshTarget(bits: number, now: number, random: Random): Id {
    this.buckets[Math.min(bits, this.buckets.length - 1)]!.changed = now; // refreshed (a lookup is about to touch it)
    return randomIdWithPrefix(this.self, bits, random);
  }

  /**
   * Per-bucket counts, bucket 0 (the farthest half of the id space) first;
   * for dashboards. Bucket `i` holds ids sharing exactly `i` leading bits
   * with ours (the last one: at least that many).
   */
  bucketStats(now: number): BucketStats[] {
    const out: BucketStats[] = [];
    for (const b of this.buckets) {
      let good = 0;
      let bad = 0;
      for (const n of b.nodes) {
        const s = this.state(n, now);
        if (s === 'good') good++;
        else if (s === 'bad') bad++;
      }
      out.push({ nodes: b.nodes.length, good, questionable: b.nodes.length - good - bad, bad, replacements: b.replacements.length, changed: b.changed });
    }
    return out;
  }

  /** Bucket `i`'s nodes and replacement cache, read-only (no copy); empty arrays past the last bucket. */
  bucketEntries(i: number): { readonly nodes: readonly NodeEntry[]; readonly replacements: readonly NodeEntry[] } {
    return this.buckets[i] ?? EMPTY_BUCKET;
  }

  /** Summary for stats and tests. */
  stats(now: number): { nodes: number; good: number; questionable: number; bad: number; replacements: number; buckets: number } {
    let good = 0;
    let questionable = 0;
    let bad = 0;
    let replacements = 0;
    for (const b of this.buckets) {
      replacements += b.replacements.length;
      for (const n of b.nodes) {
        const s = this.state(n, now);
        if (s === 'good') good++;
        else if (s === 'bad') bad++;
        else questionable++;
      }
    }
    return { nodes: this.count, good, questionable, bad, replacements, buckets: this.buckets.length };
  }
}
