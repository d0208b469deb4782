/**
 * The "kademlia" scenario kind: N nodes of peerkit's Mainline DHT core
 * (DhtCore, BEP 5) on the simulated network, each wired by the generic
 * datagram driver (src/runtime/drive.ts) exactly as on the real runtime.
 * Nodes join over `joinOverMs` through the bootstrap nodes (the core then
 * refreshes its far buckets itself, and fills the rest from the nodes that
 * query it; `refreshAfterMs`, off by default, makes each node look up its
 * own id once more that long after joining); then `lookups` find_node
 * lookups run from random online nodes, spread over `lookupsOverMs`, each
 * for the id of another random online node. A lookup succeeds when that
 * node is among the k closest it returns.
 *
 * `warmStart` skips the join, as large-N studies of lookups usually do:
 * every node starts at 0 with the table a long-running node would have,
 * filled by an oracle from the whole population (see `fillFromOracle`)
 * through the core's `addNode`. Lookups and churn then run on the protocol
 * as always, and a node that comes back after churn joins for real.
 *
 * Operations recorded: `lookup` (hops, queries as messages, success) and
 * `bootstrap`. Groups: "bootstrap" (the first `bootstrapNodes`), "nodes"
 * (the others), "*". Hostile behaviour: "silent" (the node stops answering:
 * a black hole that lookups must route around).
 */
import { DhtCore, type DhtEvent, type OperationResult } from '../../core/dht/index.js';
import type { DatagramSocket, Endpoint } from '../../runtime/contract.js';
import { driveDatagramCore, type DriveHandle } from '../../runtime/drive.js';
import type { SimHost } from '../../runtime/sim/network.js';
import type { Departure, Lifecycle } from '../lifecycle.js';
import { num, quantile } from '../metrics.js';
import { registerKind, type KindContext, type KindRun, type KindSummary, type ScenarioKind } from '../scenario.js';
import { ScenarioError, type ObjectSchema } from '../schema.js';
import { lineChart } from '../svg.js';

export interface KademliaParams {
  readonly nodes: number;
  readonly bootstrapNodes: number;
  readonly joinOverMs: number;
  readonly refreshAfterMs: number;
  readonly lookups: number;
  readonly lookupsStartMs: number;
  readonly lookupsOverMs: number;
  readonly k: number;
  readonly alpha: number;
  readonly timeoutMs: number;
  readonly natFraction: number;
  readonly warmStart: boolean;
}

export const kademliaParams: ObjectSchema = {
  type: 'object',
  properties: {
    nodes: { schema: { type: 'number', integer: true, min: 2, max: 1_000_000, description: 'N' } },
    bootstrapNodes: { schema: { type: 'number', integer: true, min: 1, max: 1000 }, default: 1 },
    joinOverMs: { schema: { type: 'number', min: 0 }, default: 60_000 },
    refreshAfterMs: { schema: { type: 'number', min: 0, description: 'a node looks up its own id again this long after joining (0: never)' }, default: 0 },
    lookups: { schema: { type: 'number', integer: true, min: 0, max: 10_000_000, description: 'M' } },
    lookupsStartMs: { schema: { type: 'number', min: 0 }, optional: true },
    lookupsOverMs: { schema: { type: 'number', min: 0 }, default: 60_000 },
    k: { schema: { type: 'number', integer: true, min: 1, max: 64 }, default: 8 },
    alpha: { schema: { type: 'number', integer: true, min: 1, max: 64 }, default: 3 },
    timeoutMs: { schema: { type: 'number', above: 0 }, default: 2000 },
    natFraction: { schema: { type: 'number', min: 0, max: 1, description: 'share of the non-bootstrap nodes behind NATs (the last ones)' }, default: 0 },
    warmStart: {
      schema: { type: 'boolean', description: 'every node starts at 0 with a routing table filled by an oracle instead of joining (joinOverMs and refreshAfterMs are then unused)' },
      default: false,
    },
  },
};

const PORT = 6881;

interface NodeState {
  readonly index: number;
  readonly address: string;
  readonly id: Uint8Array;
  readonly nat: boolean;
  host: SimHost | undefined;
  socket: DatagramSocket | undefined;
  core: DhtCore | undefined;
  drive: DriveHandle | undefined;
  hostile: boolean;
  /** Started at least once (a warm start fills only the first session's table). */
  started: boolean;
  /** Operations of this node's core that we record: op id -> what and since when. */
  readonly ops: Map<number, { kind: 'lookup' | 'bootstrap'; startMs: number; target?: Uint8Array }>;
}

/** An id's first 32 bits as a number. */
function prefixOf(id: Uint8Array): number {
  return id[0]! * 2 ** 24 + id[1]! * 2 ** 16 + id[2]! * 2 ** 8 + id[3]!;
}

function nodeAddress(i: number): string {
  const n = i + 1;
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

class KademliaRun implements KindRun {
  readonly size: number;
  private readonly ctx: KindContext;
  private readonly p: KademliaParams;
  private readonly nodes: NodeState[] = [];
  private readonly groups: Map<string, number[]>;
  private readonly online: number[] = [];
  private readonly where = new Map<number, number>();
  private readonly lookupsStart: number;
  private issued = 0;
  /** Lookups whose time came, issued or not (none may have been online). */
  private attempted = 0;
  private finished = 0;
  private succeeded = 0;
  private inFlight = 0;
  private oracle: { prefixes: Float64Array; order: Uint32Array } | undefined = undefined;

  constructor(ctx: KindContext, p: KademliaParams) {
    this.ctx = ctx;
    this.p = p;
    this.size = p.nodes;
    const natFrom = p.nodes - Math.round(p.natFraction * (p.nodes - p.bootstrapNodes));
    for (let i = 0; i < p.nodes; i++) {
      this.nodes.push({ index: i, address: nodeAddress(i), id: ctx.random.bytes(20), nat: i >= natFrom, host: undefined, socket: undefined, core: undefined, drive: undefined, hostile: false, started: false, ops: new Map() });
    }
    const all = this.nodes.map((n) => n.index);
    this.groups = new Map([
      ['*', all],
      ['bootstrap', all.slice(0, p.bootstrapNodes)],
      ['nodes', all.slice(p.bootstrapNodes)],
    ]);
    this.lookupsStart = p.lookupsStartMs ?? (p.warmStart ? 10_000 : p.joinOverMs + p.refreshAfterMs + 30_000);
  }

  begin(lifecycle: Lifecycle): void {
    const { random } = this.ctx;
    const joins = this.nodes.map((n) => ({ at: n.index < this.p.bootstrapNodes || this.p.warmStart ? 0 : random.float() * this.p.joinOverMs, i: n.index }));
    const lookups = Float64Array.from({ length: this.p.lookups }, () => this.lookupsStart + random.float() * this.p.lookupsOverMs);
    // Arrivals are drawn up front (the same draws as one event each) but queued one at a time, in time
    // order: N joins and M lookups waiting in the event queue would make every push and pop deeper.
    joins.sort((a, b) => a.at - b.at || a.i - b.i);
    lookups.sort();
    this.chain(joins.length, (j) => joins[j]!.at, (j) => lifecycle.join(joins[j]!.i));
    this.chain(lookups.length, (j) => lookups[j]!, () => this.issueLookup());
  }

  /** Runs `run(0..count-1)` at the (non-decreasing) times `at(j)`, with one event queued at a time. */
  private chain(count: number, at: (j: number) => number, run: (j: number) => void): void {
    const engine = this.ctx.engine;
    let j = 0;
    const next = (): void => {
      const t = at(j);
      // Every arrival due at the same time runs in this event, in order.
      while (j < count && at(j) === t) run(j++);
      if (j < count) engine.post(at(j), next);
    };
    if (count > 0) engine.post(at(0), next);
  }

  /**
   * A warm start: the node's table is filled as a long-running node's would
   * be, from the whole population instead of through messages. For each
   * distance (ids sharing exactly b leading bits with the node's, b = 0 to
   * 31), up to k nodes of that part of the id space are picked at random and
   * handed to the core's `addNode`, farthest first, so the table's own rules
   * decide what it keeps. Nodes behind NATs are left out (nobody could have
   * verified them with a ping). Deterministic: the scenario's random stream
   * picks.
   */
  private fillFromOracle(n: NodeState, core: DhtCore): void {
    const index = (this.oracle ??= this.buildOracle());
    const { prefixes, order } = index;
    const { random, engine } = this.ctx;
    const mine = prefixOf(n.id);
    const firstAtLeast = (v: number): number => {
      let lo = 0;
      let hi = prefixes.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (prefixes[mid]! < v) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
    for (let b = 0; b < 32; b++) {
      const span = 2 ** (31 - b);
      // Ids whose first b bits are ours and whose bit b is not.
      const low = Math.floor(mine / (2 * span)) * 2 * span + (Math.floor(mine / span) % 2 === 0 ? span : 0);
      const from = firstAtLeast(low);
      const to = firstAtLeast(low + span);
      const count = to - from;
      if (count === 0) continue;
      const picks: number[] = [];
      if (count <= this.p.k) for (let j = from; j < to; j++) picks.push(j);
      else {
        while (picks.length < this.p.k) {
          const j = from + random.below(count);
          if (!picks.includes(j)) picks.push(j);
        }
      }
      for (const j of picks) {
        const m = this.nodes[order[j]!]!;
        if (m !== n) core.addNode(engine.now, m.id, { host: m.address, port: PORT });
      }
    }
  }

  /** The reachable nodes sorted by their ids' first 32 bits (for `fillFromOracle`). */
  private buildOracle(): { prefixes: Float64Array; order: Uint32Array } {
    const reachable = this.nodes.filter((m) => !m.nat);
    reachable.sort((x, y) => prefixOf(x.id) - prefixOf(y.id) || x.index - y.index);
    return { prefixes: Float64Array.from(reachable, (m) => prefixOf(m.id)), order: Uint32Array.from(reachable, (m) => m.index) };
  }

  group(name: string): readonly number[] | undefined {
    return this.groups.get(name);
  }

  start(i: number): void {
    const n = this.nodes[i]!;
    const { network, engine } = this.ctx;
    if (n.host?.alive) network.removeHost(n.host);
    const host = network.addHost({ address: n.address, nat: n.nat });
    // DhtCore encodes every message into a fresh buffer and never writes to one it received: no copy needed.
    const socket = host.bind({ port: PORT }, { noCopy: true });
    const core = new DhtCore({ id: n.id, random: host.random, now: engine.now, options: { k: this.p.k, alpha: this.p.alpha, timeoutMs: this.p.timeoutMs } });
    n.host = host;
    n.socket = socket;
    n.core = core;
    n.ops.clear();
    n.drive = driveDatagramCore(host.runtime, socket, core, (e: DhtEvent) => this.onEvent(n, e));
    if (n.hostile) this.silence(n);
    this.where.set(i, this.online.length);
    this.online.push(i);
    const first = !n.started;
    n.started = true;
    if (first && this.p.warmStart) {
      this.fillFromOracle(n, core);
      n.drive.poke();
      return;
    }
    // Join through the bootstrap nodes (the first one starts alone).
    const seeds: Endpoint[] = [];
    for (let b = 0; b < this.p.bootstrapNodes; b++) if (b !== i) seeds.push({ host: this.nodes[b]!.address, port: PORT });
    if (seeds.length > 0) this.track(n, 'bootstrap', core.bootstrap(engine.now, seeds));
    n.drive.poke();
    if (this.p.refreshAfterMs > 0) {
      host.runtime.timers.at(engine.now + this.p.refreshAfterMs, () => {
        if (n.core !== core || n.drive === undefined) return;
        core.bootstrap(engine.now, []);
        n.drive.poke();
      });
    }
  }

  stop(i: number, how: Departure): void {
    const n = this.nodes[i]!;
    const at = this.where.get(i);
    if (at !== undefined) {
      const last = this.online.pop()!;
      if (last !== i) {
        this.online[at] = last;
        this.where.set(last, at);
      }
      this.where.delete(i);
    }
    // Lookups the node had running die with it: they count as failed.
    for (const op of n.ops.values()) {
      if (op.kind !== 'lookup') continue;
      this.inFlight--;
      this.finished++;
      this.ctx.metrics.record({ kind: 'lookup', node: i, startMs: op.startMs, endMs: this.ctx.engine.now, ok: false });
    }
    n.ops.clear();
    n.drive?.stop();
    if (how === 'graceful') n.socket?.close();
    if (n.host) this.ctx.network.removeHost(n.host);
    n.host = undefined;
    n.socket = undefined;
    n.core = undefined;
    n.drive = undefined;
  }

  makeHostile(i: number, behaviour: string): boolean {
    if (behaviour !== 'silent') return false;
    const n = this.nodes[i]!;
    n.hostile = true;
    this.silence(n);
    return true;
  }

  /** A silent node's socket goes away: queries to it are lost, it sends nothing. */
  private silence(n: NodeState): void {
    n.drive?.stop();
    n.socket?.close();
  }

  private track(n: NodeState, kind: 'lookup' | 'bootstrap', op: number, target?: Uint8Array): void {
    n.ops.set(op, { kind, startMs: this.ctx.engine.now, target });
  }

  /** A random online node that is not hostile (O(1) expected; undefined if none turns up). */
  private pickOnline(not?: NodeState): NodeState | undefined {
    const { random } = this.ctx;
    for (let tries = 0; tries < 64 && this.online.length > 0; tries++) {
      const n = this.nodes[this.online[random.below(this.online.length)]!]!;
      if (!n.hostile && n !== not) return n;
    }
    return undefined;
  }

  private issueLookup(): void {
    this.attempted++;
    const from = this.pickOnline();
    const to = from && this.pickOnline(from);
    if (from === undefined || to === undefined) return;
    this.issued++;
    this.inFlight++;
    this.track(from, 'lookup', from.core!.findNode(this.ctx.engine.now, to.id), to.id);
    from.drive!.poke();
  }

  private onEvent(n: NodeState, e: DhtEvent): void {
    if (e.type !== 'done') return;
    const op = n.ops.get(e.op);
    if (op === undefined) return;
    n.ops.delete(e.op);
    const r: OperationResult = e.result;
    const now = this.ctx.engine.now;
    if (op.kind === 'bootstrap') {
      this.ctx.metrics.record({ kind: 'bootstrap', node: n.index, startMs: op.startMs, endMs: now, ok: r.ok, hops: r.hops, messages: r.queries });
      return;
    }
    const target = Buffer.from(op.target!);
    const ok = r.nodes.some((x) => x.id.equals(target));
    this.inFlight--;
    this.finished++;
    if (ok) this.succeeded++;
    this.ctx.metrics.record({ kind: 'lookup', node: n.index, startMs: op.startMs, endMs: now, ok, hops: r.hops, messages: r.queries });
  }

  done(now: number): boolean {
    // Every lookup is issued before lookupsStart + lookupsOverMs.
    return now >= this.lookupsStart + this.p.lookupsOverMs && this.inFlight === 0;
  }

  expectedEndMs(): number {
    return this.lookupsStart + this.p.lookupsOverMs;
  }

  /**
   * Simulated time up to the first lookup, then the share of lookups settled
   * (finished, or not issued for want of an online node), so the display
   * stays below 100 % while the last lookups wait out their timeouts.
   */
  progress(now: number): number {
    const end = this.expectedEndMs();
    if (!(end > 0)) return 0;
    const before = this.lookupsStart / end;
    if (now < this.lookupsStart || this.p.lookups === 0) return Math.min(now, this.lookupsStart) / end;
    const settled = this.finished + (this.attempted - this.issued);
    return before + (1 - before) * Math.min(1, settled / this.p.lookups);
  }

  sample(_now: number): Record<string, number> {
    // Mean routing table size over at most 200 online nodes, picked evenly.
    const step = Math.max(1, Math.ceil(this.online.length / 200));
    let sum = 0;
    let count = 0;
    for (let j = 0; j < this.online.length; j += step) {
      const core = this.nodes[this.online[j]!]!.core;
      if (!core) continue;
      sum += core.tableSize;
      count++;
    }
    return {
      lookups_in_flight: this.inFlight,
      lookups_done: this.finished,
      lookup_success_rate: this.finished === 0 ? 0 : this.succeeded / this.finished,
      mean_table_size: count === 0 ? 0 : sum / count,
    };
  }

  finish(now: number): void {
    for (const n of this.nodes) {
      for (const op of n.ops.values()) {
        if (op.kind !== 'lookup') continue;
        this.ctx.metrics.record({ kind: 'lookup', node: n.index, startMs: op.startMs, endMs: now, ok: false });
      }
      n.ops.clear();
    }
  }

  summary(): KindSummary {
    const lookups = this.ctx.metrics.operations.filter((o) => o.kind === 'lookup');
    const hops = lookups.filter((o) => o.ok && o.hops !== undefined).map((o) => o.hops!).sort((a, b) => a - b);
    const rate = lookups.length === 0 ? 0 : lookups.filter((o) => o.ok).length / lookups.length;
    return {
      rows: [
        ['network', `${this.p.nodes} nodes (${this.p.bootstrapNodes} bootstrap), k=${this.p.k}, alpha=${this.p.alpha}`],
        ['lookups', `${lookups.length} of ${this.p.lookups} issued; success ${num(rate)}; hops p50 ${num(quantile(hops, 0.5))}, p90 ${num(quantile(hops, 0.9))}`],
      ],
      json: { nodes: this.p.nodes, lookups: lookups.length, successRate: rate, hopsMedian: quantile(hops, 0.5), log2Nodes: Math.log2(this.p.nodes) },
    };
  }

  plots(): Record<string, string> {
    const m = this.ctx.metrics;
    const secs = (col: string): [number, number][] => m.series(col).map(([t, v]) => [t / 1000, v]);
    return {
      'routing-tables.svg': lineChart({ title: 'Mean routing table size', xLabel: 'simulated time (s)', yLabel: 'nodes', series: [{ name: 'mean table size', points: secs('mean_table_size') }] }),
    };
  }
}

export const kademlia: ScenarioKind<KademliaParams> = {
  name: 'kademlia',
  description: 'N Mainline DHT nodes (the real DhtCore) bootstrap, then M lookups, under churn if the scenario says so',
  params: kademliaParams,
  groups: () => ['bootstrap', 'nodes'],
  behaviours: ['silent'],
  check(p) {
    if (p.bootstrapNodes >= p.nodes) throw new ScenarioError('scenario.params.bootstrapNodes', `must be less than nodes (${p.nodes})`);
  },
  create: (ctx, p) => new KademliaRun(ctx, p),
};

registerKind(kademlia);
