/**
 * The "flash-crowd" scenario kind: S seeders and P leechers of one file of
 * F bytes, each node the real TorrentCore (PiecePicker, Choker, peer wire,
 * PEX) over simulated streams with the given upload/download capacities.
 *
 * Peers find each other through a simulated tracker: a joining node (and a
 * node whose core asks for more peers, at most every 30 s) gets up to
 * `peersPerAnnounce` random online nodes. NATed leechers (`natFraction`)
 * accept no incoming connections and only connect out.
 *
 * Theory check: with all leechers present at t = 0, no node can finish
 * before the fluid-model lower bound
 *
 *     T* = max(F / u_s, F / d_min, P * F / (u_s + sum u_i))
 *
 * (u_s the seeders' total upload, d_min the smallest leecher download, u_i
 * the leechers' uploads): the seeders must send every byte at least once,
 * the slowest leecher must receive F, and the P * F bytes received in all
 * must be uploaded by someone. The summary reports the last completion time
 * over T*.
 *
 * Groups for churn and events: "seeders", "leechers", "*" (all).
 * Hostile behaviour: "corrupt" (serves blocks of 0xff; the receivers' hash
 * check fails and their cores strike and ban the node).
 */
import type { Endpoint } from '../../runtime/contract.js';
import type { SimHost } from '../../runtime/sim/network.js';
import type { Lifecycle, Departure } from '../lifecycle.js';
import { ScenarioError, type ObjectSchema } from '../schema.js';
import { registerKind, type KindContext, type KindRun, type KindSummary, type ScenarioKind } from '../scenario.js';
import { TorrentNode } from '../torrent-node.js';
import { lineChart } from '../svg.js';
import { num, quantile } from '../metrics.js';

export interface FlashCrowdParams {
  readonly fileBytes: number;
  readonly pieceBytes: number;
  readonly seeders: number;
  readonly leechers: number;
  readonly seeder: { readonly uploadBps: number; readonly downloadBps?: number };
  readonly leecher: { readonly uploadBps: number; readonly downloadBps: number };
  readonly joinOverMs: number;
  readonly natFraction: number;
  readonly seedAfterDone: boolean;
  readonly maxPeers: number;
  readonly peersPerAnnounce: number;
  readonly unchokeSlots: number;
}

const capacity = (description: string) => ({ type: 'number' as const, above: 0, description });

export const flashCrowdParams: ObjectSchema = {
  type: 'object',
  properties: {
    fileBytes: { schema: { type: 'number', integer: true, min: 1, max: 2 ** 40, description: 'F, the file size' } },
    pieceBytes: { schema: { type: 'number', integer: true, min: 16384, max: 16 * 1024 * 1024, description: 'a power of two' }, default: 262144 },
    seeders: { schema: { type: 'number', integer: true, min: 1, max: 1000 }, default: 1 },
    leechers: { schema: { type: 'number', integer: true, min: 1, max: 100_000, description: 'P' } },
    seeder: { schema: { type: 'object', properties: { uploadBps: { schema: capacity('bytes/s') }, downloadBps: { schema: capacity('bytes/s'), optional: true } } } },
    leecher: { schema: { type: 'object', properties: { uploadBps: { schema: capacity('bytes/s') }, downloadBps: { schema: capacity('bytes/s') } } } },
    joinOverMs: { schema: { type: 'number', min: 0, description: 'leechers join uniformly over this window (0: all at once)' }, default: 0 },
    natFraction: { schema: { type: 'number', min: 0, max: 1 }, default: 0 },
    seedAfterDone: { schema: { type: 'boolean' }, default: true },
    maxPeers: { schema: { type: 'number', integer: true, min: 1, max: 1000 }, default: 50 },
    peersPerAnnounce: { schema: { type: 'number', integer: true, min: 1, max: 200 }, default: 50 },
    unchokeSlots: { schema: { type: 'number', integer: true, min: 1, max: 100 }, default: 4 },
  },
};

const PORT = 6881;
const REANNOUNCE_MS = 30_000;

/** The fluid-model lower bound on the last completion time, in ms (see the module comment). */
export function fluidLowerBoundMs(p: FlashCrowdParams): number {
  const F = p.fileBytes;
  const us = p.seeders * p.seeder.uploadBps;
  const sumUi = p.leechers * p.leecher.uploadBps;
  const dmin = p.leecher.downloadBps;
  return 1000 * Math.max(F / us, F / dmin, (p.leechers * F) / (us + sumUi));
}

interface NodeState {
  readonly index: number;
  readonly seeder: boolean;
  readonly nat: boolean;
  readonly address: string;
  /** Verified pieces, kept across sessions (like resume data). */
  readonly have: Set<number>;
  host: SimHost | undefined;
  node: TorrentNode | undefined;
  hostile: boolean;
  firstJoinMs: number | undefined;
  completedMs: number | undefined;
  lastAnnounceMs: number;
  /** Totals of finished sessions. */
  uploaded: number;
  downloaded: number;
  removeTimer: { cancel(): void } | undefined;
}

function nodeAddress(i: number): string {
  const n = i + 1;
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

class FlashCrowdRun implements KindRun {
  readonly size: number;
  private readonly ctx: KindContext;
  private readonly p: FlashCrowdParams;
  private readonly nodes: NodeState[] = [];
  private readonly layout;
  private readonly infoHash: Uint8Array;
  private readonly zeros: Buffer;
  private readonly garbage: Buffer;
  private readonly groups: Map<string, number[]>;
  private lifecycle!: Lifecycle;
  /** Indices of the nodes online, for the simulated tracker (swap-removed; `where` maps back). */
  private readonly online: number[] = [];
  private readonly where = new Map<number, number>();
  private completed = 0;
  private bans = 0;
  private failedPieces = 0;
  private readonly boundMs: number;

  constructor(ctx: KindContext, p: FlashCrowdParams) {
    this.ctx = ctx;
    this.p = p;
    this.size = p.seeders + p.leechers;
    const pieceCount = Math.ceil(p.fileBytes / p.pieceBytes);
    this.layout = { pieceCount, pieceLength: p.pieceBytes, length: p.fileBytes, private: false };
    this.infoHash = ctx.random.bytes(20);
    // One piece of each payload, shared by every node: memory does not grow with the swarm.
    this.zeros = Buffer.alloc(p.pieceBytes);
    this.garbage = Buffer.alloc(p.pieceBytes, 0xff);
    const natCount = Math.round(p.natFraction * p.leechers);
    for (let i = 0; i < this.size; i++) {
      const seeder = i < p.seeders;
      this.nodes.push({
        index: i,
        seeder,
        // The last natCount leechers are behind NATs.
        nat: !seeder && i >= this.size - natCount,
        address: nodeAddress(i),
        have: new Set(seeder ? Array.from({ length: pieceCount }, (_, k) => k) : []),
        host: undefined,
        node: undefined,
        hostile: false,
        firstJoinMs: undefined,
        completedMs: undefined,
        lastAnnounceMs: -Infinity,
        uploaded: 0,
        downloaded: 0,
        removeTimer: undefined,
      });
    }
    const all = this.nodes.map((n) => n.index);
    this.groups = new Map([
      ['*', all],
      ['seeders', all.filter((i) => this.nodes[i]!.seeder)],
      ['leechers', all.filter((i) => !this.nodes[i]!.seeder)],
    ]);
    this.boundMs = fluidLowerBoundMs(p);
  }

  begin(lifecycle: Lifecycle): void {
    this.lifecycle = lifecycle;
    const { engine, random } = this.ctx;
    for (const n of this.nodes) {
      const at = n.seeder || this.p.joinOverMs === 0 ? 0 : random.float() * this.p.joinOverMs;
      engine.schedule(at, () => lifecycle.join(n.index));
    }
  }

  group(name: string): readonly number[] | undefined {
    return this.groups.get(name);
  }

  start(i: number): void {
    const n = this.nodes[i]!;
    const { network, engine } = this.ctx;
    // A graceful leaver's host lingers to finish its closes; a quick rejoin replaces it.
    if (n.host?.alive) network.removeHost(n.host);
    n.removeTimer?.cancel();
    n.removeTimer = undefined;
    const bw = n.seeder ? this.p.seeder : this.p.leecher;
    const host = network.addHost({ address: n.address, uploadBps: bw.uploadBps, downloadBps: bw.downloadBps, nat: n.nat });
    n.host = host;
    n.firstJoinMs ??= engine.now;
    if (!this.where.has(i)) {
      this.where.set(i, this.online.length);
      this.online.push(i);
    }
    const node = new TorrentNode({
      host,
      infoHash: this.infoHash,
      layout: this.layout,
      have: n.have,
      port: PORT,
      maxPeers: this.p.maxPeers,
      regularUnchokeSlots: this.p.unchokeSlots,
      seedWhenDone: true,
      zeros: this.zeros,
      garbage: this.garbage,
      onPiece: (index) => n.have.add(index),
      onComplete: () => this.onComplete(n),
      onWantPeers: () => {
        if (engine.now - n.lastAnnounceMs < REANNOUNCE_MS) return;
        n.lastAnnounceMs = engine.now;
        node.addPeers(this.announce(n));
      },
      onBan: () => this.bans++,
      onPieceFailed: () => this.failedPieces++,
    });
    node.hostile = n.hostile;
    n.node = node;
    n.lastAnnounceMs = engine.now;
    node.start(this.announce(n));
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
    const node = n.node;
    const host = n.host;
    if (!node || !host) return;
    const s = node.core.stats(this.ctx.engine.now);
    n.uploaded += s.uploaded;
    n.downloaded += s.downloaded;
    n.node = undefined;
    if (how === 'crash') {
      node.crashed();
      this.ctx.network.removeHost(host);
      n.host = undefined;
      return;
    }
    node.stop();
    // Let the FINs go out, then the machine is gone.
    n.removeTimer = this.ctx.engine.after(3000, () => {
      n.removeTimer = undefined;
      if (n.host === host) {
        this.ctx.network.removeHost(host);
        n.host = undefined;
      }
    });
  }

  makeHostile(i: number, behaviour: string): boolean {
    if (behaviour !== 'corrupt') return false;
    const n = this.nodes[i]!;
    n.hostile = true;
    if (n.node) n.node.hostile = true;
    return true;
  }

  /** The simulated tracker: up to peersPerAnnounce random online nodes other than `n` (O(peersPerAnnounce)). */
  private announce(n: NodeState): Endpoint[] {
    const online = this.online;
    const random = this.ctx.random;
    const others = online.length - (this.where.has(n.index) ? 1 : 0);
    const k = Math.min(others, this.p.peersPerAnnounce);
    const picked: number[] = [];
    if (others <= 2 * k) {
      // Small swarm: a partial shuffle of a copy.
      const pool = online.filter((i) => i !== n.index);
      for (let j = 0; j < k; j++) {
        const r = j + random.below(pool.length - j);
        const t = pool[j]!;
        pool[j] = pool[r]!;
        pool[r] = t;
        picked.push(pool[j]!);
      }
    } else {
      // Large swarm: draw with rejection (at most half the candidates are ever taken).
      const seen = new Set<number>([n.index]);
      while (picked.length < k) {
        const i = online[random.below(online.length)]!;
        if (seen.has(i)) continue;
        seen.add(i);
        picked.push(i);
      }
    }
    return picked.map((i) => ({ host: this.nodes[i]!.address, port: PORT }));
  }

  private onComplete(n: NodeState): void {
    if (n.seeder || n.completedMs !== undefined) return;
    const now = this.ctx.engine.now;
    n.completedMs = now;
    this.completed++;
    this.ctx.metrics.record({ kind: 'download', node: n.index, startMs: n.firstJoinMs ?? 0, endMs: now, ok: true, bytes: this.p.fileBytes });
    if (!this.p.seedAfterDone) this.ctx.engine.after(0, () => this.lifecycle.leave(n.index, 'graceful'));
  }

  done(): boolean {
    return this.completed === this.p.leechers;
  }

  private totals(n: NodeState): { up: number; down: number } {
    const s = n.node?.core.stats(this.ctx.engine.now);
    return { up: n.uploaded + (s?.uploaded ?? 0), down: n.downloaded + (s?.downloaded ?? 0) };
  }

  sample(): Record<string, number> {
    let pieces = 0;
    let seederUp = 0;
    let leecherUp = 0;
    let leecherDown = 0;
    const ratios: number[] = [];
    for (const n of this.nodes) {
      const t = this.totals(n);
      if (n.seeder) {
        seederUp += t.up;
        continue;
      }
      pieces += n.have.size;
      leecherUp += t.up;
      leecherDown += t.down;
      if (t.down > 0) ratios.push(t.up / t.down);
    }
    ratios.sort((a, b) => a - b);
    return {
      completed_fraction: this.completed / this.p.leechers,
      mean_progress: pieces / (this.p.leechers * this.layout.pieceCount),
      seeder_uploaded_bytes: seederUp,
      leechers_uploaded_bytes: leecherUp,
      leechers_downloaded_bytes: leecherDown,
      upload_ratio_median: ratios.length ? quantile(ratios, 0.5) : 0,
      upload_ratio_min: ratios.length ? ratios[0]! : 0,
      upload_ratio_max: ratios.length ? ratios[ratios.length - 1]! : 0,
    };
  }

  finish(now: number): void {
    for (const n of this.nodes) {
      if (n.seeder || n.completedMs !== undefined) continue;
      this.ctx.metrics.record({ kind: 'download', node: n.index, startMs: n.firstJoinMs ?? now, endMs: now, ok: false, bytes: n.have.size * this.p.pieceBytes });
    }
  }

  /** Whether the run departs from the bound's assumptions (late joins, churn, events). */
  private disturbed(): boolean {
    const s = this.ctx.scenario;
    return this.p.joinOverMs > 0 || s.churn !== undefined || s.events.length > 0;
  }

  summary(now: number): KindSummary {
    const times = this.nodes.filter((n) => n.completedMs !== undefined).map((n) => n.completedMs!);
    const last = times.length === this.p.leechers ? Math.max(...times) : undefined;
    const ratio = last === undefined ? undefined : last / this.boundMs;
    const up = this.nodes.map((n) => this.totals(n));
    const seedUp = up.slice(0, this.p.seeders).reduce((a, t) => a + t.up, 0);
    const leechUp = up.slice(this.p.seeders).reduce((a, t) => a + t.up, 0);
    const rows: [string, string][] = [
      ['file', `${this.p.fileBytes} bytes in ${this.layout.pieceCount} pieces of ${this.p.pieceBytes}; ${this.p.seeders} seeder(s), ${this.p.leechers} leechers`],
      ['completed', `${this.completed}/${this.p.leechers} leechers by ${num(now / 1000)} s`],
      ['fluid bound', `${num(this.boundMs / 1000)} s = max(F/u_s, F/d_min, P*F/(u_s+sum u_i))${this.disturbed() ? ' (for all leechers present from t=0 without churn: not this run)' : ''}`],
      ['last completion', last === undefined ? 'not every leecher completed' : `${num(last / 1000)} s, ratio to the bound ${num(ratio!)}`],
      ['uploaded', `seeders ${seedUp} bytes, leechers ${leechUp} bytes (${num(leechUp / Math.max(1, seedUp + leechUp))} of all)`],
      ['hash failures', `${this.failedPieces} pieces, ${this.bans} bans`],
    ];
    return {
      rows,
      json: {
        fluidLowerBoundMs: this.boundMs,
        boundApplies: !this.disturbed(),
        lastCompletionMs: last ?? null,
        ratioToBound: ratio ?? null,
        completed: this.completed,
        leechers: this.p.leechers,
        pieceCount: this.layout.pieceCount,
        seedersUploadedBytes: seedUp,
        leechersUploadedBytes: leechUp,
        failedPieces: this.failedPieces,
        bans: this.bans,
      },
    };
  }

  plots(): Record<string, string> {
    const m = this.ctx.metrics;
    const secs = (col: string): [number, number][] => m.series(col).map(([t, v]) => [t / 1000, v]);
    return {
      'swarm-completion.svg': lineChart({
        title: 'Swarm completion',
        xLabel: 'simulated time (s)',
        yLabel: 'fraction',
        yMin: 0,
        yMax: 1,
        series: [
          { name: 'leechers complete', points: secs('completed_fraction') },
          { name: 'mean progress', points: secs('mean_progress') },
        ],
      }),
      'upload-ratios.svg': lineChart({
        title: 'Leecher upload ratios (uploaded / downloaded)',
        xLabel: 'simulated time (s)',
        yLabel: 'ratio',
        series: [
          { name: 'median', points: secs('upload_ratio_median') },
          { name: 'min', points: secs('upload_ratio_min') },
          { name: 'max', points: secs('upload_ratio_max') },
        ],
      }),
    };
  }
}

export const flashCrowd: ScenarioKind<FlashCrowdParams> = {
  name: 'flash-crowd',
  description: 'one seeder (or a few) and P leechers of a file of size F, real TorrentCore per peer',
  params: flashCrowdParams,
  groups: () => ['seeders', 'leechers'],
  behaviours: ['corrupt'],
  check(p) {
    if ((p.pieceBytes & (p.pieceBytes - 1)) !== 0) throw new ScenarioError('scenario.params.pieceBytes', `must be a power of two, got ${p.pieceBytes}`);
    if (Math.ceil(p.fileBytes / p.pieceBytes) > 1_000_000) throw new ScenarioError('scenario.params.pieceBytes', 'gives more than 1 000 000 pieces');
  },
  create: (ctx, p) => new FlashCrowdRun(ctx, p),
};

registerKind(flashCrowd);
