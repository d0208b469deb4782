/**
 * DhtCore: one Mainline DHT node (BEP 5 with BEP 32, 42, 43, 44 and 51) as a
 * sans-I/O DatagramCore. Feed it datagrams and timeouts with the current
 * time, start operations (bootstrap, lookups, announce, get, put, ping), and
 * drain `pollTransmit`, `pollEvent` and `pollTimeout`. Every operation ends
 * with exactly one `done` event carrying its result.
 *
 * State is plain data, built to be run 100,000 times in one process by the
 * simulator: ids and addresses are binary strings (id.ts), transactions are
 * records in one Map ordered by deadline (no closures, no per-node timers),
 * and every table, store and lookup is bounded.
 *
 * Security rules:
 * - a response is matched by transaction id *and* source address, and must
 *   come from the id we expected when we knew it;
 * - only nodes that answered our queries enter the routing table; node lists
 *   only feed lookups; unknown queriers are pinged before they are trusted;
 * - malformed KRPC is answered with error 203 when it was a query with a
 *   readable transaction id, and otherwise dropped; nothing malformed changes
 *   any state.
 */
import type { DatagramCore, Endpoint, Random, Transmit } from '../../runtime/contract.js';
import {
  decodeKrpc,
  encodeKrpc,
  KRPC_CAS_MISMATCH,
  KRPC_INVALID_SIGNATURE,
  KRPC_MESSAGE_TOO_BIG,
  KRPC_METHOD_UNKNOWN,
  KRPC_PROTOCOL_ERROR,
  KRPC_SALT_TOO_BIG,
  KRPC_SEQ_TOO_LOW,
  KrpcError,
  type KrpcErrorMessage,
  type KrpcMessage,
  type KrpcQuery,
  type KrpcResponse,
  type QueryBody,
  type Want,
  MAX_ITEM_VALUE_BYTES,
  MAX_SALT_BYTES,
} from '../../codec/krpc.js';
import { decode as decodeBencode, encode as encodeBencode, isBytes, isDict, type BencodeValue } from '../../codec/bencode.js';
import { itemMatchesTarget, sha1, targetOf, verifyItemSignature, type Item } from './bep44.js';
import {
  addrIp,
  addrOf,
  bep42Id,
  commonPrefixBits,
  compareDistance,
  endpointOf,
  idBytes,
  idHex,
  idMatchesAddr,
  idOf,
  isLocalAddr,
  ownedCopy,
  isUsableAddr,
  randomId,
  type Addr,
  type Id,
} from './id.js';
import { NEVER, RoutingTable, wholeMs, type BucketStats, type NodeEntry, type NodeState, type RoutingTableOptions, type SavedNode } from './routing-table.js';
import { ItemStore, PeerStore, type ItemStoreOptions, type PeerStoreOptions } from './storage.js';
import { RateLimiter } from '../tracker/rate-limit.js';

export interface DhtOptions extends RoutingTableOptions {
  /** Parallel requests per lookup (default 3). */
  alpha?: number;
  /** Time before a request is retried (once) and stops counting against alpha, in ms (default 2000). */
  timeoutMs?: number;
  /** Resends of an unanswered query (default 1). */
  retries?: number;
  /** Most queries one lookup sends, retries included (default 200). */
  maxLookupQueries?: number;
  /** Candidates a lookup keeps, closest first (default 8 k). */
  lookupWidth?: number;
  /** Operations running at once (default 64); more are refused with an immediate failed result. */
  maxOperations?: number;
  /** Outstanding transactions (default 2048). */
  maxTransactions?: number;
  /** Address family of the socket this node runs on (default 4). */
  family?: 4 | 6;
  /** BEP 43 read-only node: says `ro` in its queries and answers none. Default false. */
  readOnly?: boolean;
  /** Token secret rotation period in ms; a token is valid for one to two periods (default 5 minutes). */
  tokenRotateMs?: number;
  /** Maintenance tick in ms: liveness pings, bucket refresh, expiry (default 10 s). */
  maintenanceMs?: number;
  /** Refresh a bucket that has not changed for this long, in ms (default 15 minutes). */
  bucketRefreshMs?: number;
  /**
   * Refresh an empty bucket after this long without change, in ms (default
   * 1 minute); a bucket holding fewer than k nodes is due in proportion to
   * how full it is, between this and `bucketRefreshMs`.
   */
  emptyBucketRefreshMs?: number;
  /**
   * After a join, each bucket farther than our closest neighbours is
   * refreshed until it holds this many nodes (default 2; k fills them whole
   * at once). Lookups need a few live nodes in every part of the id space,
   * not k; the maintenance refresh fills a short bucket the rest of the way
   * over the following minutes (it is due sooner the emptier it is), so a
   * join costs a few queries per bucket instead of k or more.
   */
  joinRefreshFill?: number;
  /** Ping a questionable node at most this often, in ms (default 60 s). */
  pingIntervalMs?: number;
  /** Distinct voter IPs needed to accept an external address from the `ip` field (default 3). */
  addressVotes?: number;
  /** Switch to a BEP 42 id when the voted external address is public and our id does not match it (default true). */
  deriveIdFromAddress?: boolean;
  /** Client version sent as `v` (default "PK01"). */
  version?: Uint8Array;
  /**
   * Queries answered per source (an IP address; IP and port for local
   * addresses), as a token bucket: `false` for no limit. Default 50 per
   * second, bursts of 200, 1,024 sources tracked. Queries over it are dropped.
   */
  queryRateLimit?: false | { perSecond: number; burst: number; maxTracked?: number };
  peers?: PeerStoreOptions;
  items?: ItemStoreOptions;
}

export interface DhtCoreInit {
  /** Our node id (20 bytes); random if omitted. */
  id?: Uint8Array;
  random: Random;
  now: number;
  options?: DhtOptions;
}

export type OperationKind = 'bootstrap' | 'find_node' | 'get_peers' | 'announce' | 'get' | 'put' | 'ping' | 'refresh';

export interface FoundNode {
  readonly id: Buffer;
  readonly address: Endpoint;
}

export interface OperationResult {
  readonly kind: OperationKind;
  /** The lookup target (infohash, item target, node id); for a ping, the id that answered. */
  readonly target: Buffer;
  /** False for a ping nobody answered, an operation refused, or a put/announce no node accepted. */
  readonly ok: boolean;
  /** The closest nodes that answered, closest first (at most k). */
  readonly nodes: readonly FoundNode[];
  /** Peers found (get_peers and announce). */
  readonly peers: readonly Endpoint[];
  /** The item found (get: verified; the highest seq for a mutable item). */
  readonly item?: Item;
  /** Steps from the first nodes asked to the closest node that answered (1 = one of the first). */
  readonly hops: number;
  /** Queries sent: the lookup's, the store phase's (announce/put) and every resend of either. */
  readonly queries: number;
  readonly responses: number;
  /** Announce/put: nodes that acknowledged the store. */
  readonly stored: number;
  /** KRPC error codes received from nodes asked to store. */
  readonly errors: readonly number[];
}

export type DhtEvent =
  | { readonly type: 'done'; readonly op: number; readonly result: OperationResult }
  /** The external address voted by other nodes changed. */
  | { readonly type: 'external-address'; readonly address: Endpoint }
  /** Our id changed to a BEP 42 id for our external address; the table was rebuilt. */
  | { readonly type: 'id-changed'; readonly id: Buffer }
  /** A peer announced itself to us. */
  | { readonly type: 'announce'; readonly infoHash: Buffer; readonly peer: Endpoint };

/** A routing table entry as `tableNodes()` lists it. */
export interface TableNode {
  /** Node id, hex. */
  readonly id: string;
  readonly host: string;
  readonly port: number;
  /** Bucket index: leading bits the id shares with ours (the last bucket: at least that many). */
  readonly bucket: number;
  /** In the bucket's replacement cache rather than the table proper. */
  readonly replacement: boolean;
  readonly state: NodeState;
  /** Last time we heard from it. */
  readonly lastSeen: number;
  /** Last time it answered one of our queries. */
  readonly lastResponse: number | undefined;
  /** Unanswered queries in a row. */
  readonly fails: number;
  /** BEP 42: its id matches its address (or the address is local). */
  readonly secure: boolean;
}

/** An operation in flight as `operations()` lists it. */
export interface OperationInfo {
  readonly op: number;
  readonly kind: OperationKind;
  /** Target (infohash, item target, node id), hex. */
  readonly target: string;
  /** Looking up, storing (announce_peer / put to the closest nodes found), or a ping awaiting its answer. */
  readonly phase: 'lookup' | 'store' | 'ping';
  readonly started: number;
  /** Queries sent so far (retries included). */
  readonly queries: number;
  readonly responses: number;
  /** Queries awaiting an answer. */
  readonly inflight: number;
  /** Candidate nodes the lookup holds. */
  readonly candidates: number;
  /** Peers found so far (get_peers, announce). */
  readonly peers: number;
  /** Started by the node itself (a bucket refresh), not by a caller. */
  readonly internal: boolean;
}

export interface DhtStats {
  nodes: number;
  good: number;
  questionable: number;
  bad: number;
  replacements: number;
  buckets: number;
  transactions: number;
  operations: number;
  storedPeers: number;
  storedInfoHashes: number;
  storedItems: number;
  queriesReceived: number;
  responsesReceived: number;
  malformed: number;
  unmatched: number;
  /** Queries dropped by the per-source rate limit. */
  rateLimited: number;
  sent: number;
}

// Candidate states in a lookup.
const NEW = 0;
const INFLIGHT = 1;
const SLOW = 2;
const DONE = 3;
const FAILED = 4;

class Candidate {
  state = NEW;
  /** The token it gave (latin1), for the store phase. */
  token: string | undefined = undefined;
  constructor(
    public id: Id | undefined,
    readonly addr: Addr,
    readonly hop: number,
  ) {}
}

type Method = 'find_node' | 'get_peers' | 'get';

class Operation {
  /** Candidates with known ids, closest first. */
  cands: Candidate[] = [];
  /** Bootstrap addresses whose ids we do not know yet. */
  seeds: Candidate[] = [];
  seen = new Set<Addr>();
  inflight = 0;
  queries = 0;
  responses = 0;
  peers = new Set<Addr>();
  item: Item | undefined = undefined;
  /** 0 looking up, 1 storing (announce/put), 2 finished. */
  phase = 0;
  pending = 0;
  stored = 0;
  errors: number[] = [];
  answeredBy: Id | undefined = undefined;
  // Operation parameters.
  port = 0;
  impliedPort = false;
  putItem: Item | undefined = undefined;
  cas: number | undefined = undefined;
  salt: Buffer | undefined = undefined;
  /** When it started (for `operations()`). */
  started = 0;
  /** The target as bytes for queries, made on the first one. */
  targetBytes: Buffer | undefined = undefined;
  /** A refresh: it ends once its bucket holds this many nodes. */
  fill = 0;
  constructor(
    readonly op: number,
    readonly kind: OperationKind,
    readonly target: Id,
    readonly method: Method,
    readonly internal: boolean,
  ) {}
}

const PING = 0;
const LOOKUP = 1;
const STORE = 2;
const USER_PING = 3;

class Txn {
  slow = false;
  constructor(
    readonly tid: number,
    readonly addr: Addr,
    readonly expect: Id | undefined,
    readonly data: Buffer,
    public deadline: number,
    public tries: number,
    readonly purpose: number,
    readonly operation: Operation | undefined,
    readonly cand: Candidate | undefined,
  ) {}
}

/** The transaction id of the query being encoded: the encoder copies it, so one scratch buffer serves every query. */
const TID = Buffer.alloc(2);
/** The node lists of the reply being encoded, likewise (one per address family, grown when k needs it). */
const NODE_LISTS = { 4: Buffer.allocUnsafeSlow(26 * 8), 6: Buffer.allocUnsafeSlow(38 * 8) };

const MAX_LOOKUP_PEERS = 2000;
const MAX_VERIFY_PINGS = 16;
const PEERS_PER_RESPONSE = 50;
/** Our client version `v`, shared by every node that does not set its own (read only). */
const DEFAULT_VERSION = ownedCopy(Buffer.from('PK01', 'latin1'));
/** Bucket refresh lookups running at once. */
const MAX_REFRESHES = 2;

/**
 * BEP 44's error code for a put query the codec refused over a size limit:
 * 205 when its value is over 1000 bytes, 207 when its salt is over 64, else
 * 203. Only malformed queries get here, so the second parse costs nothing in
 * the normal case (and the datagram is at most 4096 bytes).
 */
function putLimitError(data: Uint8Array): number {
  let top: BencodeValue;
  try {
    top = decodeBencode(data);
  } catch {
    return KRPC_PROTOCOL_ERROR;
  }
  const a = isDict(top) ? top.get('a') : undefined;
  const q = isDict(top) ? top.get('q') : undefined;
  if (!isDict(a) || !isBytes(q) || q.toString('latin1') !== 'put') return KRPC_PROTOCOL_ERROR;
  const v = a.get('v');
  if (v !== undefined && encodeBencode(v).length > MAX_ITEM_VALUE_BYTES) return KRPC_MESSAGE_TOO_BIG;
  const salt = a.get('salt');
  if (isBytes(salt) && salt.length > MAX_SALT_BYTES) return KRPC_SALT_TOO_BIG;
  return KRPC_PROTOCOL_ERROR;
}

export class DhtCore implements DatagramCore<DhtEvent> {
  private selfId: Id;
  private table: RoutingTable;
  private readonly random: Random;
  private readonly tableOptions: RoutingTableOptions;
  readonly k: number;
  private readonly alpha: number;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly maxLookupQueries: number;
  private readonly lookupWidth: number;
  private readonly maxOperations: number;
  private readonly maxTransactions: number;
  readonly family: 4 | 6;
  readonly readOnly: boolean;
  private readonly tokenRotateMs: number;
  private readonly maintenanceMs: number;
  private readonly bucketRefreshMs: number;
  private readonly emptyBucketRefreshMs: number;
  private readonly pingIntervalMs: number;
  private readonly joinRefreshFill: number;
  private readonly addressVotes: number;
  private readonly deriveId: boolean;
  private readonly version: Buffer;

  private readonly txns = new Map<number, Txn>();
  private nextTid: number;
  private readonly ops = new Map<number, Operation>();
  private nextOp = 1;
  private verifyPings = 0;
  /** Bucket refreshes (internal lookups) running. */
  private refreshes = 0;
  /** The next bucket of the refresh pass that follows a bootstrap (-1: no pass running). */
  private refreshNext = -1;

  private secret: Buffer;
  private previousSecret: Buffer;
  private rotateAt: number;
  private nextMaintenance: number;
  private readonly peerStore: PeerStore;
  private readonly itemStore: ItemStore;

  /** Voted external address -> the IPs (addrIp) that voted for it. */
  private votes = new Map<Addr, Set<string>>();
  private external: Addr | undefined = undefined;

  private outQ: Transmit[] = [];
  private outHead = 0;
  private evQ: DhtEvent[] = [];
  private evHead = 0;

  private readonly counters = { queriesReceived: 0, responsesReceived: 0, malformed: 0, unmatched: 0, rateLimited: 0, sent: 0 };
  private readonly rateOptions: false | { perSecond: number; burst: number; maxTracked?: number };
  /** Created on the first query, so an idle node pays nothing for it. */
  private limiter: RateLimiter | undefined = undefined;
  private limiterSweptAt = -Infinity;
  private selfBytesBuf: Buffer | undefined = undefined;
  private selfBytesOf: Id | undefined = undefined;

  constructor(init: DhtCoreInit) {
    const o = init.options ?? {};
    this.random = init.random;
    if (init.id !== undefined && init.id.length !== 20) throw new RangeError('a node id has 20 bytes');
    this.selfId = init.id === undefined ? randomId(this.random) : idOf(init.id);
    this.tableOptions = o;
    this.table = new RoutingTable(this.selfId, init.now, o);
    this.k = this.table.k;
    this.alpha = o.alpha ?? 3;
    this.timeoutMs = o.timeoutMs ?? 2000;
    this.retries = o.retries ?? 1;
    this.maxLookupQueries = o.maxLookupQueries ?? 200;
    this.lookupWidth = o.lookupWidth ?? 8 * this.k;
    this.maxOperations = o.maxOperations ?? 64;
    this.maxTransactions = o.maxTransactions ?? 2048;
    this.family = o.family ?? 4;
    this.readOnly = o.readOnly ?? false;
    this.tokenRotateMs = o.tokenRotateMs ?? 5 * 60_000;
    this.maintenanceMs = o.maintenanceMs ?? 10_000;
    this.bucketRefreshMs = o.bucketRefreshMs ?? 15 * 60_000;
    this.emptyBucketRefreshMs = o.emptyBucketRefreshMs ?? 60_000;
    this.pingIntervalMs = o.pingIntervalMs ?? 60_000;
    this.joinRefreshFill = Math.min(this.k, Math.max(1, o.joinRefreshFill ?? 2));
    this.addressVotes = o.addressVotes ?? 3;
    this.deriveId = o.deriveIdFromAddress ?? true;
    this.version = o.version === undefined ? DEFAULT_VERSION : ownedCopy(o.version);
    this.rateOptions = o.queryRateLimit ?? { perSecond: 50, burst: 200, maxTracked: 1024 };
    if (!(this.alpha >= 1) || !(this.timeoutMs > 0) || !(this.retries >= 0)) throw new RangeError('alpha >= 1, timeoutMs > 0 and retries >= 0 are required');
    this.nextTid = this.random.below(0x10000);
    this.secret = ownedCopy(this.random.bytes(16));
    this.previousSecret = this.secret;
    this.rotateAt = init.now + this.tokenRotateMs;
    this.nextMaintenance = init.now + this.maintenanceMs;
    this.peerStore = new PeerStore(o.peers);
    this.itemStore = new ItemStore(o.items);
  }

  get id(): Buffer {
    return idBytes(this.selfId);
  }

  /** The external address other nodes agree they see us at, if any. */
  get externalAddress(): Endpoint | undefined {
    return this.external === undefined ? undefined : endpointOf(this.external);
  }

  /** Nodes in the routing table: `stats().nodes`, without walking the table. */
  get tableSize(): number {
    return this.table.size;
  }

  stats(now: number): DhtStats {
    return {
      ...this.table.stats(now),
      transactions: this.txns.size,
      operations: this.ops.size,
      storedPeers: this.peerStore.size,
      storedInfoHashes: this.peerStore.infoHashes,
      storedItems: this.itemStore.size,
      ...this.counters,
    };
  }

  /** The table's nodes, for saving (reload them as bootstrap seeds: they are verified again). */
  exportNodes(): SavedNode[] {
    const out: SavedNode[] = [];
    for (const n of this.table.entries()) out.push({ id: idHex(n.id), ...endpointOf(n.addr) });
    return out;
  }

  /** The routing table's nodes closest to `target` (default: our id). */
  closestNodes(now: number, target: Uint8Array = this.id, n = this.k): FoundNode[] {
    return this.table.closest(idOf(target), n, now).map((e) => ({ id: idBytes(e.id), address: endpointOf(e.addr) }));
  }

  /** Whether a node is in the routing table (not counting replacement caches). */
  inTable(id: Uint8Array): boolean {
    return this.table.has(idOf(id));
  }

  /** The routing table bucket by bucket, for dashboards (see RoutingTable.bucketStats). */
  bucketStats(now: number): BucketStats[] {
    return this.table.bucketStats(now);
  }

  /**
   * The routing table's nodes (then, with `replacements`, the replacement
   * caches'), bucket by bucket, at most `max`; for dashboards and exports.
   */
  tableNodes(now: number, max: number, replacements = true): TableNode[] {
    const out: TableNode[] = [];
    const add = (n: NodeEntry, bucket: number, replacement: boolean): void => {
      const { host, port } = endpointOf(n.addr);
      out.push({ id: idHex(n.id), host, port, bucket, replacement, state: this.table.state(n, now), lastSeen: n.lastSeen, lastResponse: n.lastResponse === NEVER ? undefined : n.lastResponse, fails: n.fails, secure: n.secure });
    };
    for (let pass = 0; pass < (replacements ? 2 : 1); pass++) {
      for (let i = 0; i < this.table.bucketCount; i++) {
        const b = this.table.bucketEntries(i);
        for (const n of pass === 0 ? b.nodes : b.replacements) {
          if (out.length >= max) return out;
          add(n, i, pass === 1);
        }
      }
    }
    return out;
  }

  /** Operations in flight (lookups, stores, pings, our own bucket refreshes), oldest first, at most `max`. */
  operations(max: number): OperationInfo[] {
    const out: OperationInfo[] = [];
    for (const o of this.ops.values()) {
      if (out.length >= max) break;
      out.push({ op: o.op, kind: o.kind, target: idHex(o.target), phase: o.phase === 0 ? 'lookup' : o.kind === 'ping' ? 'ping' : 'store', started: o.started, queries: o.queries, responses: o.responses, inflight: o.phase === 0 ? o.inflight : o.pending, candidates: o.cands.length + o.seeds.length, peers: o.peers.size, internal: o.internal });
    }
    return out;
  }

  /**
   * Puts a node in the routing table as if it had just answered us, without
   * a ping: for nodes the caller knows to be alive, such as a simulator's
   * warm start (an oracle filling the table from the whole population).
   * Every rule of the table still applies (bucket sizes, the prefix limit,
   * BEP 42 priority). Returns whether the node is in the table or its
   * replacement cache afterwards. Never use it for addresses heard from the
   * network: those must answer a query first.
   */
  addNode(now: number, id: Uint8Array, address: Endpoint): boolean {
    if (id.length !== 20) throw new RangeError('a node id has 20 bytes');
    const addr = addrOf(address);
    if (!this.usableHere(addr)) return false;
    return this.table.seen(now, idOf(id), addr, true) !== 'rejected';
  }

  // ------------------------------------------------------------ operations

  /**
   * Joins the network: a lookup of our own id starting from `seeds`
   * (addresses, with ids when known, for example from a saved table) and
   * whatever the table already holds. Seeds only enter the table once they
   * answer.
   */
  bootstrap(now: number, seeds: readonly (Endpoint | { id?: Uint8Array; address: Endpoint })[]): number {
    const op = this.newOperation(now, 'bootstrap', this.selfId, 'find_node', false);
    if (op === undefined) return this.refused('bootstrap', this.selfId);
    for (const s of seeds) {
      const address = 'address' in s ? s.address : s;
      const id = 'address' in s && s.id !== undefined && s.id.length === 20 ? idOf(s.id) : undefined;
      this.addCandidate(op, id, addrOf(address), 1);
    }
    return this.startLookup(now, op);
  }

  findNode(now: number, target: Uint8Array): number {
    return this.lookup(now, 'find_node', idOf(target), 'find_node');
  }

  getPeers(now: number, infoHash: Uint8Array): number {
    return this.lookup(now, 'get_peers', idOf(infoHash), 'get_peers');
  }

  /** A get_peers lookup, then announce_peer to the closest nodes that gave a token. Port 0 (or omitted) asks for implied_port. */
  announce(now: number, infoHash: Uint8Array, port?: number): number {
    const op = this.newOperation(now, 'announce', idOf(infoHash), 'get_peers', false);
    if (op === undefined) return this.refused('announce', idOf(infoHash));
    op.port = port ?? 0;
    op.impliedPort = port === undefined || port === 0;
    return this.startLookup(now, op, true);
  }

  /** BEP 44 get of the item at `target`; pass the salt for a salted mutable item (it is not part of the target's response). */
  get(now: number, target: Uint8Array, salt?: Uint8Array): number {
    const op = this.newOperation(now, 'get', idOf(target), 'get', false);
    if (op === undefined) return this.refused('get', idOf(target));
    if (salt !== undefined && salt.length > 0) op.salt = ownedCopy(salt);
    return this.startLookup(now, op, true);
  }

  /** BEP 44 put of an immutable item (`{ value }`) or a signed mutable item; `cas` for compare-and-swap. */
  put(now: number, item: Item, cas?: number): number {
    const target = idOf(targetOf(item));
    const op = this.newOperation(now, 'put', target, 'get', false);
    if (op === undefined) return this.refused('put', target);
    op.putItem = item;
    op.cas = cas;
    op.salt = item.salt;
    return this.startLookup(now, op, true);
  }

  ping(now: number, to: Endpoint): number {
    const op = this.newOperation(now, 'ping', this.selfId, 'find_node', false);
    const addr = addrOf(to);
    if (op === undefined || addr === undefined) return this.refused('ping', this.selfId);
    op.phase = 1;
    op.pending = 1;
    const sent = this.sendQuery(now, addr, undefined, USER_PING, op, undefined, { q: 'ping' });
    if (sent) op.queries++;
    if (!sent) this.finish(op);
    return op.op;
  }

  private lookup(now: number, kind: OperationKind, target: Id, method: Method): number {
    const op = this.newOperation(now, kind, target, method, false);
    if (op === undefined) return this.refused(kind, target);
    return this.startLookup(now, op, true);
  }

  private newOperation(now: number, kind: OperationKind, target: Id, method: Method, internal: boolean): Operation | undefined {
    if (this.ops.size >= this.maxOperations) return undefined;
    const op = new Operation(this.nextOp++, kind, target, method, internal);
    op.started = now;
    this.ops.set(op.op, op);
    return op;
  }

  private refused(kind: OperationKind, target: Id): number {
    const op = this.nextOp++;
    this.emit({ type: 'done', op, result: { kind, target: idBytes(target), ok: false, nodes: [], peers: [], hops: 0, queries: 0, responses: 0, stored: 0, errors: [] } });
    return op;
  }

  private startLookup(now: number, op: Operation, fromTable = true): number {
    // The table's 2k closest: the first answers bring closer ones, so more would only be sorted and dropped.
    if (fromTable) for (const n of this.table.closest(op.target, Math.min(this.lookupWidth, 2 * this.k), now, this.family)) this.addCandidate(op, n.id, n.addr, 1);
    this.step(now, op);
    return op.op;
  }

  /** An address we could query: usable, and of our own family. */
  private usableHere(addr: Addr | undefined): addr is Addr {
    return addr !== undefined && isUsableAddr(addr) && (addr.length === 6) === (this.family === 4);
  }

  private addCandidate(op: Operation, id: Id | undefined, addr: Addr | undefined, hop: number): void {
    if (!this.usableHere(addr)) return;
    if (id === this.selfId || op.seen.has(addr)) return;
    if (op.seen.size >= this.maxLookupQueries * (this.k + 1)) return;
    op.seen.add(addr);
    const c = new Candidate(id, addr, hop);
    if (id === undefined) {
      op.seeds.push(c);
      return;
    }
    this.insertCandidate(op, c);
  }

  private insertCandidate(op: Operation, c: Candidate): void {
    const cands = op.cands;
    let lo = 0;
    let hi = cands.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareDistance(op.target, cands[mid]!.id!, c.id!) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= this.lookupWidth) return;
    cands.splice(lo, 0, c);
    if (cands.length > this.lookupWidth) {
      // Drop the farthest candidate that is not being asked.
      for (let i = cands.length - 1; i >= 0; i--) {
        const s = cands[i]!.state;
        if (s !== INFLIGHT && s !== SLOW) {
          cands.splice(i, 1);
          break;
        }
      }
    }
  }

  private step(now: number, op: Operation): void {
    if (op.phase !== 0) return;
    if (op.kind === 'refresh' && this.regionCount(commonPrefixBits(this.selfId, op.target)) >= op.fill) {
      // A refresh is for filling its bucket: once it holds enough, the rest of the lookup would teach us nothing.
      this.lookupFinished(now, op);
      return;
    }
    const budget = (): boolean => op.queries < this.maxLookupQueries;
    // A refresh is background work: one query at a time, so it stops as soon as its bucket holds enough.
    const alpha = op.internal ? 1 : this.alpha;
    let busy = false;
    for (const s of op.seeds) {
      if (s.state === NEW && op.inflight < alpha && budget()) this.queryCandidate(now, op, s);
      if (s.state === INFLIGHT || s.state === SLOW) busy = true;
    }
    let alive = 0;
    for (const c of op.cands) {
      if (c.state === FAILED) continue;
      if (alive >= this.k) break;
      alive++;
      if (c.state === NEW && op.inflight < alpha && budget()) this.queryCandidate(now, op, c);
      if (c.state === INFLIGHT || c.state === SLOW || (c.state === NEW && budget())) busy = true;
    }
    if (!busy) this.lookupFinished(now, op);
  }

  private queryCandidate(now: number, op: Operation, c: Candidate): void {
    const target = (op.targetBytes ??= idBytes(op.target));
    const body =
      op.method === 'find_node'
        ? { q: 'find_node' as const, target }
        : op.method === 'get_peers'
          ? { q: 'get_peers' as const, infoHash: target }
          : { q: 'get' as const, target };
    op.queries++;
    if (this.sendQuery(now, c.addr, c.id, LOOKUP, op, c, body)) {
      c.state = INFLIGHT;
      op.inflight++;
    } else {
      c.state = FAILED;
    }
  }

  private lookupFinished(now: number, op: Operation): void {
    if (op.kind !== 'announce' && op.kind !== 'put') {
      this.finish(op);
      if (op.kind === 'bootstrap') this.queueFarRefreshes(now);
      else if (op.kind === 'refresh') this.startRefreshes(now);
      return;
    }
    op.phase = 1;
    for (const c of this.closestDone(op)) {
      if (c.token === undefined) continue;
      const sent =
        op.kind === 'announce'
          ? this.sendQuery(now, c.addr, c.id, STORE, op, c, { q: 'announce_peer', infoHash: idBytes(op.target), port: op.port, impliedPort: op.impliedPort, token: Buffer.from(c.token, 'latin1') })
          : this.sendQuery(now, c.addr, c.id, STORE, op, c, this.putBody(op, Buffer.from(c.token, 'latin1')));
      if (sent) {
        op.pending++;
        op.queries++;
      }
    }
    if (op.pending === 0) this.finish(op);
  }

  private putBody(op: Operation, token: Buffer): QueryBody {
    const it = op.putItem!;
    const body: { q: 'put'; token: Buffer; value: Buffer; k?: Buffer; sig?: Buffer; seq?: number; salt?: Buffer; cas?: number } = { q: 'put', token, value: it.value };
    if (it.k !== undefined) {
      body.k = it.k;
      body.sig = it.sig!;
      body.seq = it.seq!;
      if (it.salt !== undefined && it.salt.length > 0) body.salt = it.salt;
      if (op.cas !== undefined) body.cas = op.cas;
    }
    return body;
  }

  private closestDone(op: Operation): Candidate[] {
    const out: Candidate[] = [];
    for (const c of op.cands) {
      if (c.state === DONE) out.push(c);
      if (out.length >= this.k) break;
    }
    return out;
  }

  private finish(op: Operation): void {
    if (op.phase === 2) return;
    op.phase = 2;
    this.ops.delete(op.op);
    if (op.kind === 'refresh') this.refreshes--;
    if (op.internal) return;
    const done = this.closestDone(op);
    const nodes = done.map((c) => ({ id: idBytes(c.id!), address: endpointOf(c.addr) }));
    const peers = [...op.peers].map(endpointOf);
    let ok = true;
    if (op.kind === 'ping') ok = op.answeredBy !== undefined;
    else if (op.kind === 'announce' || op.kind === 'put') ok = op.stored > 0;
    else if (op.kind === 'get') ok = op.item !== undefined;
    const result: OperationResult = {
      kind: op.kind,
      target: idBytes(op.kind === 'ping' ? (op.answeredBy ?? op.target) : op.target),
      ok,
      nodes,
      peers,
      ...(op.item === undefined ? {} : { item: op.item }),
      hops: done.length > 0 ? done[0]!.hop : 0,
      queries: op.queries,
      responses: op.responses,
      stored: op.stored,
      errors: op.errors,
    };
    this.emit({ type: 'done', op: op.op, result });
  }

  // ------------------------------------------------------------ transactions

  private sendQuery(
    now: number,
    addr: Addr,
    expect: Id | undefined,
    purpose: number,
    op: Operation | undefined,
    cand: Candidate | undefined,
    body: QueryBody,
  ): boolean {
    if (this.txns.size >= this.maxTransactions) return false;
    let tid = this.nextTid;
    for (let i = 0; this.txns.has(tid); i++) {
      if (i > 0x10000) return false;
      tid = (tid + 1) & 0xffff;
    }
    this.nextTid = (tid + 1) & 0xffff;
    TID[0] = tid >> 8;
    TID[1] = tid & 0xff;
    let data: Buffer;
    try {
      data = encodeKrpc(this.queryMessage(TID, body));
    } catch (e) {
      if (e instanceof KrpcError) return false;
      throw e;
    }
    this.txns.set(tid, new Txn(tid, addr, expect, data, now + this.timeoutMs, this.retries, purpose, op, cand));
    this.transmit(endpointOf(addr), data);
    return true;
  }

  private queryMessage(t: Buffer, body: QueryBody): KrpcMessage {
    return { y: 'q', t, id: this.selfBytes(), ro: this.readOnly, version: this.version, ...body } as KrpcMessage;
  }

  /** Our id as bytes for outgoing messages, kept until the id changes (in a buffer of its own: it pins no pool slab). */
  private selfBytes(): Buffer {
    if (this.selfBytesOf !== this.selfId) {
      const b = Buffer.allocUnsafeSlow(20);
      b.write(this.selfId, 'latin1');
      this.selfBytesBuf = b;
      this.selfBytesOf = this.selfId;
    }
    return this.selfBytesBuf!;
  }

  private transmit(to: Endpoint, data: Buffer): void {
    this.counters.sent++;
    this.outQ.push({ to, data });
  }

  private emit(e: DhtEvent): void {
    this.evQ.push(e);
  }

  private expire(now: number): void {
    const due: Txn[] = [];
    for (const t of this.txns.values()) {
      if (t.deadline > now) break;
      due.push(t);
    }
    for (const t of due) {
      if (this.txns.get(t.tid) !== t) continue;
      if (t.tries > 0) {
        t.tries--;
        if (t.operation !== undefined) t.operation.queries++;
        t.deadline = now + this.timeoutMs;
        this.txns.delete(t.tid);
        this.txns.set(t.tid, t);
        this.counters.sent++;
        this.outQ.push({ to: endpointOf(t.addr), data: t.data });
        if (t.purpose === LOOKUP && !t.slow) {
          // The lookup stops waiting for it: another candidate gets its slot.
          t.slow = true;
          t.cand!.state = SLOW;
          t.operation!.inflight--;
          this.step(now, t.operation!);
        }
        continue;
      }
      this.txns.delete(t.tid);
      if (t.expect !== undefined) this.table.failed(now, t.expect);
      this.txnFailed(now, t, undefined);
    }
  }

  /** A transaction ended without a usable response (timeout, error reply, wrong id). */
  private txnFailed(now: number, t: Txn, errorCode: number | undefined): void {
    if (t.purpose === PING) {
      this.verifyPings = Math.max(0, this.verifyPings - (t.expect === undefined ? 1 : 0));
      return;
    }
    const op = t.operation!;
    if (t.purpose === LOOKUP) {
      t.cand!.state = FAILED;
      if (!t.slow) op.inflight--;
      this.step(now, op);
    } else {
      if (errorCode !== undefined) op.errors.push(errorCode);
      if (--op.pending <= 0) this.finish(op);
    }
  }

  // ------------------------------------------------------------ input

  handleDatagram(now: number, from: Endpoint, data: Uint8Array): void {
    const fromAddr = addrOf(from);
    if (fromAddr === undefined || !isUsableAddr(fromAddr)) return;
    let msg: KrpcMessage;
    try {
      msg = decodeKrpc(data);
    } catch (e) {
      if (!(e instanceof KrpcError)) throw e;
      this.counters.malformed++;
      if (e.transactionId !== undefined && !this.readOnly) {
        const code = e.code === 'TOO_LARGE' || e.code === 'BAD_LENGTH' ? putLimitError(data) : KRPC_PROTOCOL_ERROR;
        this.sendError(from, e.transactionId, code, code === KRPC_MESSAGE_TOO_BIG ? 'message (v field) too big' : code === KRPC_SALT_TOO_BIG ? 'salt (salt field) too big' : 'Protocol Error');
      }
      return;
    }
    if (msg.y === 'q') {
      if (this.rateOptions !== false) {
        this.limiter ??= new RateLimiter({ maxTracked: 1024, ...this.rateOptions });
        // Buckets of sources that went quiet are dropped each tick, and sooner when many pile up.
        if (this.limiter.tracked >= 128 && now - this.limiterSweptAt >= 1000) {
          this.limiterSweptAt = now;
          this.limiter.sweep(now);
        }
        if (!this.limiter.allow(now, isLocalAddr(fromAddr) ? fromAddr : addrIp(fromAddr))) {
          this.counters.rateLimited++;
          return;
        }
      }
      this.onQuery(now, from, fromAddr, msg);
    } else this.onResponse(now, fromAddr, msg);
  }

  handleTimeout(now: number): void {
    this.expire(now);
    if (now >= this.nextMaintenance) {
      this.nextMaintenance = now + this.maintenanceMs;
      this.maintenance(now);
    }
  }

  pollTransmit(): Transmit | undefined {
    if (this.outHead >= this.outQ.length) {
      if (this.outQ.length > 0) {
        this.outQ = [];
        this.outHead = 0;
      }
      return undefined;
    }
    const t = this.outQ[this.outHead]!;
    this.outQ[this.outHead++] = undefined as unknown as Transmit;
    return t;
  }

  pollEvent(): DhtEvent | undefined {
    if (this.evHead >= this.evQ.length) {
      if (this.evQ.length > 0) {
        this.evQ = [];
        this.evHead = 0;
      }
      return undefined;
    }
    const e = this.evQ[this.evHead]!;
    this.evQ[this.evHead++] = undefined as unknown as DhtEvent;
    return e;
  }

  pollTimeout(): number | undefined {
    const first = this.txns.values().next().value;
    return first === undefined ? this.nextMaintenance : Math.min(first.deadline, this.nextMaintenance);
  }

  // ------------------------------------------------------------ responses

  private onResponse(now: number, fromAddr: Addr, msg: KrpcResponse | KrpcErrorMessage): void {
    if (msg.t.length !== 2) {
      this.counters.unmatched++;
      return;
    }
    const tid = (msg.t[0]! << 8) | msg.t[1]!;
    const t = this.txns.get(tid);
    if (t === undefined || t.addr !== fromAddr) {
      this.counters.unmatched++;
      return;
    }
    this.txns.delete(tid);
    this.counters.responsesReceived++;
    if (msg.y === 'e') {
      if (t.expect !== undefined) this.table.seen(now, t.expect, fromAddr, false);
      this.txnFailed(now, t, msg.code);
      return;
    }
    const id = idOf(msg.id);
    if ((t.expect !== undefined && id !== t.expect) || id === this.selfId) {
      // Not the node we asked (or a reflection of ourselves): never let it into the table.
      if (t.expect !== undefined) this.table.failed(now, t.expect);
      this.txnFailed(now, t, undefined);
      return;
    }
    if (msg.ip !== undefined) this.vote(now, fromAddr, msg.ip);
    const toPing: NodeEntry[] = [];
    this.table.seen(now, id, fromAddr, true, toPing);
    for (const n of toPing) this.pingNode(now, n);
    switch (t.purpose) {
      case PING:
        if (t.expect === undefined) this.verifyPings = Math.max(0, this.verifyPings - 1);
        return;
      case USER_PING: {
        const op = t.operation!;
        op.answeredBy = id;
        op.responses++;
        op.pending--;
        this.finish(op);
        return;
      }
      case STORE: {
        const op = t.operation!;
        op.stored++;
        if (--op.pending <= 0) this.finish(op);
        return;
      }
      default:
        this.onLookupResponse(now, t, id, msg);
    }
  }

  private onLookupResponse(now: number, t: Txn, id: Id, msg: KrpcResponse): void {
    const op = t.operation!;
    const c = t.cand!;
    if (op.phase !== 0) return;
    if (!t.slow) op.inflight--;
    op.responses++;
    c.state = DONE;
    if (msg.token !== undefined) c.token = msg.token.toString('latin1');
    if (c.id === undefined) {
      // A bootstrap seed told us who it is.
      c.id = id;
      op.seeds.splice(op.seeds.indexOf(c), 1);
      this.insertCandidate(op, c);
    }
    const list = this.family === 4 ? msg.nodes : msg.nodes6;
    if (list !== undefined) {
      const size = this.family === 4 ? 26 : 38;
      const s = list.toString('latin1');
      for (let p = 0; p + size <= s.length; p += size) this.addCandidate(op, s.slice(p, p + 20), s.slice(p + 20, p + size), c.hop + 1);
    }
    if (msg.values !== undefined && (op.method === 'get_peers')) {
      for (const v of msg.values) {
        if (op.peers.size >= MAX_LOOKUP_PEERS) break;
        const a = v.toString('latin1');
        if (isUsableAddr(a)) op.peers.add(a);
      }
    }
    if (msg.value !== undefined && op.method === 'get') {
      const item: Item =
        msg.k === undefined
          ? { value: ownedCopy(msg.value) }
          : { value: ownedCopy(msg.value), k: ownedCopy(msg.k), ...(msg.sig === undefined ? {} : { sig: ownedCopy(msg.sig) }), ...(msg.seq === undefined ? {} : { seq: msg.seq }), ...(op.salt === undefined ? {} : { salt: op.salt }) };
      if (itemMatchesTarget(item, idBytes(op.target)) && (op.item === undefined || (item.seq ?? 0) > (op.item.seq ?? 0))) op.item = item;
    }
    this.step(now, op);
  }

  /**
   * A node told us (the `ip` field) the address it sees us at. Votes are
   * counted per voter IP, not IP and port, so one host with many sockets is
   * one voter and cannot move our id alone. Votes for the address already
   * adopted are not kept.
   */
  private vote(now: number, voter: Addr, seen: Endpoint): void {
    const addr = addrOf(seen);
    if (addr === undefined || !isUsableAddr(addr) || addr === this.external) return;
    let voters = this.votes.get(addr);
    if (voters === undefined) {
      if (this.votes.size >= 16) this.votes.delete(this.votes.keys().next().value!);
      voters = new Set();
      this.votes.set(addr, voters);
    }
    if (voters.size < 64) voters.add(addrIp(voter));
    if (voters.size < this.addressVotes) return;
    this.external = addr;
    this.votes.clear();
    this.emit({ type: 'external-address', address: seen });
    if (this.deriveId && !isLocalAddr(addr) && !idMatchesAddr(this.selfId, addr)) this.changeId(now, addr);
  }

  /** Takes a BEP 42 id for our external address and rebuilds the table around it. */
  private changeId(now: number, external: Addr): void {
    const ip = Buffer.from(addrIp(external), 'latin1');
    this.selfId = bep42Id(ip, this.random);
    const old = [...this.table.entries()];
    this.table = new RoutingTable(this.selfId, now, this.tableOptions);
    for (const n of old) {
      if (n.lastResponse === NEVER) continue;
      this.table.seen(n.lastResponse, n.id, n.addr, true);
      const e = this.table.get(n.id);
      if (e !== undefined) e.lastSeen = n.lastSeen;
    }
    this.emit({ type: 'id-changed', id: ownedCopy(idBytes(this.selfId)) });
  }

  // ------------------------------------------------------------ queries

  private sendError(to: Endpoint, t: Buffer, code: number, message: string): void {
    this.transmit(to, encodeKrpc({ y: 'e', t, code, message }));
  }

  private reply(to: Endpoint, body: Omit<KrpcResponse, 'y' | 'id' | 'ip' | 'version'>): void {
    let data: Buffer;
    try {
      data = encodeKrpc({ y: 'r', id: this.selfBytes(), ip: to, version: this.version, ...body });
    } catch (e) {
      if (e instanceof KrpcError) return;
      throw e;
    }
    this.transmit(to, data);
  }

  private token(ip: string, secret: Buffer): Buffer {
    return sha1(secret, Buffer.from(ip, 'latin1')).subarray(0, 8);
  }

  private tokenValid(ip: string, token: Buffer): boolean {
    return token.equals(this.token(ip, this.secret)) || token.equals(this.token(ip, this.previousSecret));
  }

  /**
   * `nodes` and/or `nodes6` for a reply: the families asked for with `want`,
   * else the querier's. They are views of scratch buffers: encode the reply
   * before the next call.
   */
  private nodeLists(now: number, target: Id, want: Want | undefined, fromAddr: Addr): { nodes?: Buffer; nodes6?: Buffer } {
    const v4 = want === undefined ? fromAddr.length === 6 : want.n4 || (!want.n6 && fromAddr.length === 6);
    const v6 = want === undefined ? fromAddr.length === 18 : want.n6;
    const out: { nodes?: Buffer; nodes6?: Buffer } = {};
    const list = (family: 4 | 6): Buffer => {
      const found = this.table.closest(target, this.k, now, family);
      const size = found.length * (family === 4 ? 26 : 38);
      if (NODE_LISTS[family].length < size) NODE_LISTS[family] = Buffer.allocUnsafeSlow(size);
      const out = NODE_LISTS[family].subarray(0, size);
      let p = 0;
      for (const n of found) {
        const id = n.id;
        for (let i = 0; i < 20; i++) out[p++] = id.charCodeAt(i);
        const addr = n.addr;
        for (let i = 0; i < addr.length; i++) out[p++] = addr.charCodeAt(i);
      }
      return out;
    };
    if (v4) out.nodes = list(4);
    if (v6) out.nodes6 = list(6);
    return out;
  }

  private onQuery(now: number, from: Endpoint, fromAddr: Addr, q: KrpcQuery): void {
    this.counters.queriesReceived++;
    const id = idOf(q.id);
    if (id === this.selfId) return; // our own query reflected back (or a forgery of our id)
    if (this.readOnly) return;
    const ip = addrIp(fromAddr);
    switch (q.q) {
      case 'ping':
        this.reply(from, { t: q.t });
        break;
      case 'find_node':
        this.reply(from, { t: q.t, ...this.nodeLists(now, idOf(q.target), q.want, fromAddr) });
        break;
      case 'get_peers': {
        const ih = idOf(q.infoHash);
        const peers = this.peerStore.get(now, ih, PEERS_PER_RESPONSE, this.random).filter((p) => p.length === fromAddr.length);
        const values = peers.length > 0 ? peers.map((p) => Buffer.from(p, 'latin1')) : undefined;
        this.reply(from, { t: q.t, token: this.token(ip, this.secret), ...this.nodeLists(now, ih, q.want, fromAddr), ...(values === undefined ? {} : { values }) });
        break;
      }
      case 'announce_peer': {
        if (!this.tokenValid(ip, q.token)) {
          this.sendError(from, q.t, KRPC_PROTOCOL_ERROR, 'bad token');
          break;
        }
        const port = q.impliedPort ? from.port : q.port;
        const peer = addrOf({ host: from.host, port });
        if (peer !== undefined && isUsableAddr(peer)) {
          this.peerStore.add(now, idOf(q.infoHash), peer);
          this.emit({ type: 'announce', infoHash: ownedCopy(q.infoHash), peer: { host: from.host, port } });
        }
        this.reply(from, { t: q.t });
        break;
      }
      case 'get': {
        const target = idOf(q.target);
        const item = this.itemStore.get(now, target);
        const body: { -readonly [K in keyof KrpcResponse]?: KrpcResponse[K] } = { t: q.t, token: this.token(ip, this.secret), ...this.nodeLists(now, target, q.want, fromAddr) };
        if (item !== undefined) {
          if (item.k === undefined) body.value = item.value;
          else {
            body.seq = item.seq!;
            if (q.seq === undefined || item.seq! > q.seq) {
              body.value = item.value;
              body.k = item.k;
              body.sig = item.sig!;
            }
          }
        }
        this.reply(from, body as Omit<KrpcResponse, 'y' | 'id' | 'ip' | 'version'>);
        break;
      }
      case 'put':
        this.onPut(now, from, ip, q);
        break;
      case 'sample_infohashes': {
        const samples: Buffer[] = [];
        // BEP 51: a sample of the infohashes we store (up to 20).
        for (const ih of this.peerStore.sampleInfoHashes(20)) samples.push(Buffer.from(ih, 'latin1'));
        this.reply(from, { t: q.t, samples: Buffer.concat(samples), interval: 300, num: this.peerStore.infoHashes, ...this.nodeLists(now, idOf(q.target), q.want, fromAddr) });
        break;
      }
      case 'unknown':
        this.sendError(from, q.t, KRPC_METHOD_UNKNOWN, 'Method Unknown');
        break;
    }
    if (!q.ro) this.heardFrom(now, id, fromAddr);
  }

  private onPut(now: number, from: Endpoint, ip: string, q: Extract<KrpcQuery, { q: 'put' }>): void {
    if (!this.tokenValid(ip, q.token)) {
      this.sendError(from, q.t, KRPC_PROTOCOL_ERROR, 'bad token');
      return;
    }
    if (q.k === undefined) {
      this.itemStore.set(now, idOf(sha1(q.value)), { value: q.value });
      this.reply(from, { t: q.t });
      return;
    }
    if (!verifyItemSignature(q.k, q.sig!, q.value, q.seq!, q.salt)) {
      this.sendError(from, q.t, KRPC_INVALID_SIGNATURE, 'invalid signature');
      return;
    }
    const target = idOf(targetOf({ value: q.value, k: q.k, ...(q.salt === undefined ? {} : { salt: q.salt }) }));
    const old = this.itemStore.get(now, target);
    if (old !== undefined) {
      if (q.cas !== undefined && q.cas !== old.seq) {
        this.sendError(from, q.t, KRPC_CAS_MISMATCH, 'CAS mismatch');
        return;
      }
      if (q.seq! < old.seq! || (q.seq === old.seq && !q.value.equals(old.value))) {
        this.sendError(from, q.t, KRPC_SEQ_TOO_LOW, 'sequence number less than current');
        return;
      }
    }
    this.itemStore.set(now, target, { value: q.value, k: q.k, sig: q.sig!, seq: q.seq!, ...(q.salt === undefined ? {} : { salt: q.salt }) });
    this.reply(from, { t: q.t });
  }

  /** A node queried us: refresh it if known, else ping it if it could get a slot. */
  private heardFrom(now: number, id: Id, addr: Addr): void {
    if (this.table.seen(now, id, addr, false) !== 'rejected') return;
    if (this.table.get(id) !== undefined) return;
    if (this.verifyPings >= MAX_VERIFY_PINGS || !this.table.wouldAccept(id, addr, now)) return;
    if ((addr.length === 6) !== (this.family === 4)) return;
    if (this.sendQuery(now, addr, undefined, PING, undefined, undefined, { q: 'ping' })) this.verifyPings++;
  }

  private pingNode(now: number, n: NodeEntry): void {
    if (now - n.lastPing < this.pingIntervalMs) return;
    n.lastPing = wholeMs(now);
    this.sendQuery(now, n.addr, n.id, PING, undefined, undefined, { q: 'ping' });
  }

  // ------------------------------------------------------------ maintenance

  private maintenance(now: number): void {
    if (now >= this.rotateAt) {
      this.previousSecret = this.secret;
      this.secret = ownedCopy(this.random.bytes(16));
      this.rotateAt = now + this.tokenRotateMs;
      this.peerStore.sweep(now);
      this.itemStore.sweep(now);
    }
    this.limiter?.sweep(now);
    for (const n of this.table.questionable(now, 3, this.pingIntervalMs)) this.pingNode(now, n);
    this.startRefreshes(now);
    if (this.refreshes < MAX_REFRESHES && this.table.size > 0) {
      const target = this.table.staleBucketTarget(now, this.bucketRefreshMs, this.random, this.emptyBucketRefreshMs);
      if (target !== undefined) this.startRefresh(now, target, this.k);
    }
  }

  /**
   * After a bootstrap, as Kademlia (§2.3) says: refresh every bucket farther
   * than our closest neighbours' (the k the table holds), farthest first, so
   * lookups into the far half of the id space work at once rather than after
   * bucketRefreshMs (only nodes that answered us enter the table, so a
   * self-lookup alone leaves far buckets nearly empty). The bound is taken again at each step,
   * since the refreshes themselves split buckets. Each bucket is filled to
   * `joinRefreshFill` nodes, not k: a bucket holding that many when its turn
   * comes is skipped, and a refresh asks one node at a time and ends once
   * its bucket holds that many (at two, about three queries a bucket).
   * At most MAX_REFRESHES run at once, so a join does not flood the network.
   */
  private queueFarRefreshes(now: number): void {
    this.refreshNext = 0;
    this.startRefreshes(now);
  }

  private startRefreshes(now: number): void {
    while (this.refreshNext >= 0 && this.refreshes < MAX_REFRESHES) {
      const i = this.refreshNext;
      if (i >= this.nearestBucket(now)) {
        // Done, unless refreshes still running may split the table further.
        if (this.refreshes === 0) this.refreshNext = -1;
        return;
      }
      this.refreshNext = i + 1;
      if (this.regionCount(i) >= this.joinRefreshFill) continue;
      if (!this.startRefresh(now, this.table.refreshTarget(i, now, this.random), this.joinRefreshFill)) {
        this.refreshNext = i; // no operation slot: the next tick tries again
        return;
      }
    }
  }

  /**
   * Leading bits the farthest of our k closest neighbours shares with us (0
   * with an empty table): every part of the id space sharing fewer is
   * farther than them, whether it has a bucket of its own yet or is still
   * part of the last one (a short self-lookup can leave the table unsplit).
   */
  private nearestBucket(now: number): number {
    const near = this.table.closest(this.selfId, this.k, now);
    return near.length === 0 ? 0 : commonPrefixBits(this.selfId, near[near.length - 1]!.id);
  }

  /**
   * Table nodes sharing exactly `bits` leading bits with us: bucket `bits`,
   * or the part of the last bucket that a split would give it.
   */
  private regionCount(bits: number): number {
    const last = this.table.bucketCount - 1;
    const nodes = this.table.bucketEntries(Math.min(bits, last)).nodes;
    if (bits < last) return nodes.length;
    let c = 0;
    for (const n of nodes) if (commonPrefixBits(this.selfId, n.id) === bits) c++;
    return c;
  }

  private startRefresh(now: number, target: Id, fill: number): boolean {
    const op = this.newOperation(now, 'refresh', target, 'find_node', true);
    if (op === undefined) return false;
    op.fill = fill;
    this.refreshes++;
    this.startLookup(now, op);
    return true;
  }
}
