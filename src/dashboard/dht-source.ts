/**
 * A Mainline DHT node as a dashboard source: its routing table bucket by
 * bucket (the id prefix each bucket covers, its nodes good, questionable
 * and bad, its replacement cache), the operations in flight (lookups,
 * announces, stores, pings), its counters and stores, a CSV of the table
 * and of the buckets, Prometheus families `peerkit_dht_*`, and two chart
 * series: nodes in the table and queries received per second.
 *
 * It only reads the node's core (DhtCore's read-only views) with the
 * node's own clock; every list is capped.
 */
import type { DhtCore, OperationKind } from '../core/dht/dht-core.js';
import type { MetricFamily, Sample } from '../metrics/prometheus.js';
import type { Endpoint } from '../runtime/contract.js';
import type { DashboardSource, JsonValue, Table } from './source.js';

/** What the source needs of a node (a DhtNode has it). */
export interface DhtLike {
  readonly core: DhtCore;
  readonly address: Endpoint;
  readonly runtime: { readonly clock: { now(): number } };
}

export interface DhtSourceOptions {
  /** Operations in flight listed at most, oldest first. Default 50. */
  readonly maxOperations?: number;
  /** Rows of the routing table CSV at most (table nodes first, then replacements). Default 2000. */
  readonly maxNodes?: number;
}

export interface DhtBucketRow {
  readonly index: number;
  /** The id prefix the bucket covers, as bits ('' for the whole space); long prefixes are cut, see `depth`. */
  readonly prefix: string;
  /** Bits in the prefix. */
  readonly depth: number;
  readonly nodes: number;
  readonly good: number;
  readonly questionable: number;
  readonly bad: number;
  readonly replacements: number;
  /** Seconds since a node last joined or answered from it (or it was refreshed). */
  readonly changedSecondsAgo: number;
}

export interface DhtOperationRow {
  readonly op: number;
  readonly kind: string;
  readonly target: string;
  readonly phase: string;
  readonly queries: number;
  readonly responses: number;
  readonly inflight: number;
  readonly candidates: number;
  readonly peers: number;
  readonly ageSeconds: number;
  readonly internal: boolean;
}

export interface DhtState {
  readonly id: string;
  readonly address: string;
  readonly externalAddress: string | null;
  /** Bucket size. */
  readonly k: number;
  readonly nodes: number;
  readonly good: number;
  readonly questionable: number;
  readonly bad: number;
  readonly replacements: number;
  readonly transactions: number;
  readonly operations: number;
  readonly queriesReceived: number;
  readonly responsesReceived: number;
  readonly malformed: number;
  readonly unmatched: number;
  readonly sent: number;
  readonly storedPeers: number;
  readonly storedInfoHashes: number;
  readonly storedItems: number;
  readonly queriesPerSecond: number;
  readonly responsesPerSecond: number;
  readonly buckets: readonly DhtBucketRow[];
  readonly lookups: readonly DhtOperationRow[];
  /** Operations in flight not listed because of the cap. */
  readonly lookupsOmitted: number;
}

export const DHT_NODE_COLUMNS = ['node_id', 'address', 'bucket', 'replacement', 'state', 'last_seen_seconds_ago', 'last_response_seconds_ago', 'fails', 'bep42_id_matches'] as const;
export const DHT_BUCKET_COLUMNS = ['bucket', 'prefix', 'depth', 'nodes', 'good', 'questionable', 'bad', 'replacements', 'changed_seconds_ago'] as const;

/** Every kind of DHT operation: `peerkit_dht_operations` has a sample (0 when idle) for each. */
export const DHT_OPERATION_KINDS = ['bootstrap', 'refresh', 'find_node', 'get_peers', 'announce', 'get', 'put', 'ping'] as const satisfies readonly OperationKind[];
// A kind added to the core but not listed here fails to compile.
const _allKinds: [Exclude<OperationKind, (typeof DHT_OPERATION_KINDS)[number]>] extends [never] ? true : never = true;
void _allKinds;

/** Prefix bits shown at most; a deeper bucket's prefix ends in '…'. */
const PREFIX_SHOWN = 32;

const address = (e: Endpoint): string => (e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`);

/**
 * The prefix bucket `index` of `count` covers for our id: our first `index`
 * bits then the other value of bit `index`; the last bucket has our first
 * `index` bits (everything at least that close).
 */
export function bucketPrefix(self: Uint8Array, index: number, count: number): { prefix: string; depth: number } {
  const last = index === count - 1;
  const depth = last ? index : index + 1;
  let prefix = '';
  for (let i = 0; i < Math.min(depth, PREFIX_SHOWN); i++) {
    let bit = (self[i >> 3]! >> (7 - (i & 7))) & 1;
    if (!last && i === index) bit ^= 1;
    prefix += String(bit);
  }
  if (depth > PREFIX_SHOWN) prefix += '…';
  return { prefix, depth };
}

/** Per-second rate of a counter, measured over at least a second. */
class Rate {
  private t: number | undefined;
  private count = 0;
  value = 0;
  update(now: number, count: number): number {
    if (this.t === undefined || count < this.count) {
      this.t = now;
      this.count = count;
    } else if (now - this.t >= 1000) {
      this.value = ((count - this.count) * 1000) / (now - this.t);
      this.t = now;
      this.count = count;
    }
    return this.value;
  }
}

const seconds = (now: number, t: number): number => Math.max(0, Math.round((now - t) / 100) / 10);

export class DhtSource implements DashboardSource {
  readonly kind = 'dht';
  private readonly maxOperations: number;
  private readonly maxNodes: number;
  private readonly queryRate = new Rate();
  private readonly responseRate = new Rate();

  constructor(
    readonly id: string,
    private readonly node: DhtLike,
    options: DhtSourceOptions = {},
  ) {
    this.maxOperations = options.maxOperations ?? 50;
    this.maxNodes = options.maxNodes ?? 2000;
  }

  private now(): number {
    return this.node.runtime.clock.now();
  }

  private rates(now: number, s: { queriesReceived: number; responsesReceived: number }): { queries: number; responses: number } {
    return { queries: this.queryRate.update(now, s.queriesReceived), responses: this.responseRate.update(now, s.responsesReceived) };
  }

  buckets(now = this.now()): DhtBucketRow[] {
    const core = this.node.core;
    const self = core.id;
    const stats = core.bucketStats(now);
    return stats.map((b, i) => ({ index: i, ...bucketPrefix(self, i, stats.length), nodes: b.nodes, good: b.good, questionable: b.questionable, bad: b.bad, replacements: b.replacements, changedSecondsAgo: seconds(now, b.changed) }));
  }

  /** State and tables at one instant (the same clock reading for every "seconds ago"). */
  snapshot(): { state: JsonValue; tables: Record<string, Table> } {
    const now = this.now();
    return { state: this.state(now), tables: this.tables(now) };
  }

  state(now = this.now()): JsonValue {
    const core = this.node.core;
    const s = core.stats(now);
    const r = this.rates(now, s);
    const ops = core.operations(this.maxOperations);
    const ext = core.externalAddress;
    const state: DhtState = {
      id: core.id.toString('hex'),
      address: address(this.node.address),
      externalAddress: ext === undefined ? null : address(ext),
      k: core.k,
      nodes: s.nodes,
      good: s.good,
      questionable: s.questionable,
      bad: s.bad,
      replacements: s.replacements,
      transactions: s.transactions,
      operations: s.operations,
      queriesReceived: s.queriesReceived,
      responsesReceived: s.responsesReceived,
      malformed: s.malformed,
      unmatched: s.unmatched,
      sent: s.sent,
      storedPeers: s.storedPeers,
      storedInfoHashes: s.storedInfoHashes,
      storedItems: s.storedItems,
      queriesPerSecond: r.queries,
      responsesPerSecond: r.responses,
      buckets: this.buckets(now),
      lookups: ops.map((o) => ({ op: o.op, kind: o.kind, target: o.target, phase: o.phase, queries: o.queries, responses: o.responses, inflight: o.inflight, candidates: o.candidates, peers: o.peers, ageSeconds: seconds(now, o.started), internal: o.internal })),
      lookupsOmitted: Math.max(0, s.operations - ops.length),
    };
    return state as unknown as JsonValue;
  }

  tables(now = this.now()): Record<string, Table> {
    const nodes = this.node.core.tableNodes(now, this.maxNodes);
    return {
      dht_nodes: {
        columns: DHT_NODE_COLUMNS,
        rows: nodes.map((n) => [n.id, address(n), n.bucket, n.replacement, n.state, seconds(now, n.lastSeen), n.lastResponse === undefined ? null : seconds(now, n.lastResponse), n.fails, n.secure]),
      },
      dht_buckets: {
        columns: DHT_BUCKET_COLUMNS,
        rows: this.buckets(now).map((b) => [b.index, b.prefix, b.depth, b.nodes, b.good, b.questionable, b.bad, b.replacements, b.changedSecondsAgo]),
      },
    };
  }

  metrics(): MetricFamily[] {
    const now = this.now();
    const core = this.node.core;
    const s = core.stats(now);
    const byKind = new Map<string, number>(DHT_OPERATION_KINDS.map((k) => [k, 0]));
    for (const o of core.operations(Number.MAX_SAFE_INTEGER)) byKind.set(o.kind, (byKind.get(o.kind) ?? 0) + 1);
    const one = (v: number): Sample[] => [[undefined, v]];
    return [
      { name: 'peerkit_dht_nodes', type: 'gauge', help: 'Nodes in the routing table, by state (good: answered within 15 minutes; bad: failed queries in a row).', samples: [[{ state: 'good' }, s.good], [{ state: 'questionable' }, s.questionable], [{ state: 'bad' }, s.bad]] },
      { name: 'peerkit_dht_replacement_nodes', type: 'gauge', help: 'Nodes waiting in the buckets\' replacement caches.', samples: one(s.replacements) },
      { name: 'peerkit_dht_buckets', type: 'gauge', help: 'Buckets in the routing table.', samples: one(s.buckets) },
      { name: 'peerkit_dht_bucket_nodes', type: 'gauge', help: 'Nodes per bucket (bucket = leading bits shared with our id).', samples: core.bucketStats(now).map((b, i) => [{ bucket: String(i) }, b.nodes] as const) },
      { name: 'peerkit_dht_operations', type: 'gauge', help: 'Operations in flight (lookups, announces, stores, pings), by kind; 0 for an idle kind.', samples: [...byKind].map(([kind, n]) => [{ kind }, n] as const) },
      { name: 'peerkit_dht_transactions', type: 'gauge', help: 'Queries sent and awaiting an answer.', samples: one(s.transactions) },
      { name: 'peerkit_dht_queries_received_total', type: 'counter', help: 'KRPC queries received from other nodes.', samples: one(s.queriesReceived) },
      { name: 'peerkit_dht_responses_received_total', type: 'counter', help: 'Answers received to our queries (responses and errors).', samples: one(s.responsesReceived) },
      { name: 'peerkit_dht_malformed_messages_total', type: 'counter', help: 'Datagrams that were not valid KRPC.', samples: one(s.malformed) },
      { name: 'peerkit_dht_unmatched_responses_total', type: 'counter', help: 'Responses matching no query of ours (late, unknown transaction or wrong address).', samples: one(s.unmatched) },
      { name: 'peerkit_dht_sent_datagrams_total', type: 'counter', help: 'Datagrams sent (queries, retries, responses, errors).', samples: one(s.sent) },
      { name: 'peerkit_dht_stored_peers', type: 'gauge', help: 'Peer addresses stored for other nodes (announce_peer).', samples: one(s.storedPeers) },
      { name: 'peerkit_dht_stored_infohashes', type: 'gauge', help: 'Infohashes with stored peers.', samples: one(s.storedInfoHashes) },
      { name: 'peerkit_dht_stored_items', type: 'gauge', help: 'BEP 44 items stored for other nodes.', samples: one(s.storedItems) },
    ];
  }

  series(): Record<string, number> {
    const now = this.now();
    const s = this.node.core.stats(now);
    return { dht_nodes: s.nodes, dht_queries: this.rates(now, s).queries };
  }
}
