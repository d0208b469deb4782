/**
 * The "flash-crowd" scenario kind: S seeders and P leechers of one file of
 * F bytes, each node the real TorrentCore (PiecePicker, Choker, peer wire,
 * PEX) over simulated streams with the given upload/download capacities
 * (one `leecher` class, or `leecherClasses` with a share of the leechers
 * each).
 *
 * Peers find each other through a tracker on its own simulated host: the
 * real TrackerCore behind the real UDP server loop (src/sim/tracker.ts),
 * which every peer announces to over BEP 15 with the real client's
 * TrackerTiers and UdpTrackerClient (`started` on joining, again when its
 * core wants more peers, `completed`, and `stopped` on a graceful leave).
 * NATed leechers (`natFraction`) accept no incoming connections and only
 * connect out.
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
 * Groups for churn and events: "seeders", "leechers", "*" (all), and each
 * named leecher class. Hostile behaviour: "corrupt" (serves blocks of 0xff;
 * the receivers' hash check fails and their cores strike and ban the node).
 */
import type { SimHost } from '../../runtime/sim/network.js';
import type { Lifecycle, Departure } from '../lifecycle.js';
import { ScenarioError, type ObjectSchema } from '../schema.js';
import { registerKind, type KindContext, type KindRun, type KindSummary, type ScenarioKind } from '../scenario.js';
import { TorrentNode } from '../torrent-node.js';
import { SimTracker } from '../tracker.js';
import { lineChart } from '../svg.js';
import { num, quantile } from '../metrics.js';

export interface FlashCrowdParams {
  readonly fileBytes: number;
  readonly pieceBytes: number;
  readonly seeders: number;
  readonly leechers: number;
  readonly seeder: { readonly uploadBps: number; readonly downloadBps?: number };
  /** One capacity class for every leecher; or `leecherClasses`. */
  readonly leecher?: LeecherClass;
  readonly leecherClasses?: readonly LeecherClass[];
  readonly joinOverMs: number;
  readonly natFraction: number;
  readonly seedAfterDone: boolean;
  readonly maxPeers: number;
  readonly peersPerAnnounce: number;
  readonly unchokeSlots: number;
  readonly tracker: { readonly intervalS: number };
}

export interface LeecherClass {
  /** A group name for churn and events. */
  readonly name?: string;
  /** Share of the leechers (classes: the shares add up to 1). */
  readonly fraction?: number;
  readonly uploadBps: number;
  readonly downloadBps: number;
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
    leecher: { schema: { type: 'object', properties: { uploadBps: { schema: capacity('bytes/s') }, downloadBps: { schema: capacity('bytes/s') } } }, optional: true },
    leecherClasses: {
      schema: {
        type: 'array',
        minItems: 1,
        maxItems: 100,
        description: 'capacity classes, each with its share of the leechers (instead of leecher)',
        items: {
          type: 'object',
          properties: {
            name: { schema: { type: 'string', maxLength: 100, description: 'a group name for churn and events' }, optional: true },
            fraction: { schema: { type: 'number', above: 0, max: 1 } },
            uploadBps: { schema: capacity('bytes/s') },
            downloadBps: { schema: capacity('bytes/s') },
          },
        },
      },
      optional: true,
    },
    joinOverMs: { schema: { type: 'number', min: 0, description: 'leechers join uniformly over this window (0: all at once)' }, default: 0 },
    natFraction: { schema: { type: 'number', min: 0, max: 1 }, default: 0 },
    seedAfterDone: { schema: { type: 'boolean' }, default: true },
    maxPeers: { schema: { type: 'number', integer: true, min: 1, max: 1000 }, default: 50 },
    peersPerAnnounce: { schema: { type: 'number', integer: true, min: 1, max: 200, description: "numwant of the peers' announces" }, default: 50 },
    unchokeSlots: { schema: { type: 'number', integer: true, min: 1, max: 100 }, default: 4 },
    tracker: {
      schema: {
        type: 'object',
        properties: {
          intervalS: { schema: { type: 'number', integer: true, min: 1, max: 86_400, description: "the tracker's announce interval; peers not heard from for 1.5 intervals are dropped" }, default: 1800 },
        },
      },
      default: {},
    },
  },
  oneOf: [['leecher', 'leecherClasses']],
};

const PORT = 6881;
const TRACKER_ADDRESS = '10.255.255.254';
const TRACKER_PORT = 6969;

/** The leecher classes of the params (one for `leecher`). */
function classesOf(p: FlashCrowdParams): readonly LeecherClass[] {
  return p.leecherClasses ?? [{ ...p.leecher!, fraction: 1 }];
}

/**
 * How many leechers each class gets: its share of P rounded by largest
 * remainder (ties to the earlier class), so the counts add up to P.
 */
export function leecherClassCounts(p: FlashCrowdParams): number[] {
  const classes = classesOf(p);
  const exact = classes.map((c) => (c.fraction ?? 1) * p.leechers);
  const counts = exact.map(Math.floor);
  let left = p.leechers - counts.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (let k = 0; left > 0; k = (k + 1) % order.length, left--) counts[order[k]![1]]!++;
  return counts;
}

/**
 * The class of each leecher, interleaved (smooth weighted round robin) so a
 * class is spread over the joining order and the NATed tail, not a block.
 */
function leecherClassOrder(p: FlashCrowdParams): number[] {
  const counts = leecherClassCounts(p);
  const credit = counts.map(() => 0);
  const out: number[] = [];
  for (let j = 0; j < p.leechers; j++) {
    let best = -1;
    for (let c = 0; c < counts.length; c++) {
      credit[c]! += counts[c]!;
      if (counts[c]! > 0 && (best < 0 || credit[c]! > credit[best]!)) best = c;
    }
    credit[best]! -= p.leechers;
    out.push(best);
  }
  return out;
}

/** The fluid-model lower bound on the last completion time, in ms (see the module comment). */
export function fluidLowerBoundMs(p: FlashCrowdParams): number {
  const F = p.fileBytes;
  const classes = classesOf(p);
  const counts = leecherClassCounts(p);
  const us = p.seeders * p.seeder.uploadBps;
  let sumUi = 0;
  let dmin = Infinity;
  classes.forEach((c, i) => {
    if (counts[i] === 0) return;
    sumUi += counts[i]! * c.uploadBps;
    dmin = Math.min(dmin, c.downloadBps);
  });
  return 1000 * Math.max(F / us, F / dmin, (p.leechers * F) / (us + sumUi));
}

interface NodeState {
  readonly index: number;
  readonly seeder: boolean;
  readonly nat: boolean;
  readonly uploadBps: number;
  readonly downloadBps: number | undefined;
  /** Index into the leecher classes; -1 for a seeder. */
  readonly cls: number;
  readonly address: string;
  /** Verified pieces, kept across sessions (like resume data). */
  readonly have: Set<number>;
  host: SimHost | undefined;
  node: TorrentNode | undefined;
  hostile: boolean;
  firstJoinMs: number | undefined;
  completedMs: number | undefined;
  /** Totals of finished sessions. */
  uploaded: number;
  downloaded: number;
  removeTimer: { cancel(): void } | undefined;
  /** The node of a graceful leave whose host lingers (its `stopped` announce may still go out). */
  leaving: TorrentNode | undefined;
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
  private readonly tracker: SimTracker;
  private readonly announceUrl: string;
  /** Announce counters of the sessions that ended. */
  private readonly retired = { announces: 0, failed: 0, peersReceived: 0 };
  private completed = 0;
  /** Connections that ended, as seen by the node that stayed: with a FIN, or reset. */
  private readonly closed = { fin: 0, reset: 0 };
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
    const classes = classesOf(p);
    const classOf = leecherClassOrder(p);
    for (let i = 0; i < this.size; i++) {
      const seeder = i < p.seeders;
      const bw = seeder ? p.seeder : classes[classOf[i - p.seeders]!]!;
      this.nodes.push({
        index: i,
        seeder,
        // The last natCount leechers are behind NATs.
        nat: !seeder && i >= this.size - natCount,
        uploadBps: bw.uploadBps,
        downloadBps: bw.downloadBps,
        cls: seeder ? -1 : classOf[i - p.seeders]!,
        address: nodeAddress(i),
        have: new Set(seeder ? Array.from({ length: pieceCount }, (_, k) => k) : []),
        host: undefined,
        node: undefined,
        hostile: false,
        firstJoinMs: undefined,
        completedMs: undefined,
        uploaded: 0,
        downloaded: 0,
        removeTimer: undefined,
        leaving: undefined,
      });
    }
    const all = this.nodes.map((n) => n.index);
    this.groups = new Map([
      ['*', all],
      ['seeders', all.filter((i) => this.nodes[i]!.seeder)],
      ['leechers', all.filter((i) => !this.nodes[i]!.seeder)],
    ]);
    classes.forEach((c, k) => {
      if (c.name !== undefined) this.groups.set(c.name, all.filter((i) => i >= p.seeders && classOf[i - p.seeders] === k));
    });
    this.boundMs = fluidLowerBoundMs(p);
    // The tracker's host never churns; it has no capacity limit (announces are tiny).
    this.tracker = new SimTracker({
      host: ctx.network.addHost({ address: TRACKER_ADDRESS, name: 'tracker' }),
      port: TRACKER_PORT,
      interval: p.tracker.intervalS,
      // The swarm is the experiment: the tracker's per-torrent cap must not cut it.
      maxPeersPerTorrent: Math.max(20_000, this.size),
    });
    this.announceUrl = this.tracker.url;
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
    this.retire(n.leaving);
    n.leaving = undefined;
    const host = network.addHost({ address: n.address, uploadBps: n.uploadBps, downloadBps: n.downloadBps, nat: n.nat });
    n.host = host;
    n.firstJoinMs ??= engine.now;
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
      trackers: { tiers: [[this.announceUrl]], numWant: this.p.peersPerAnnounce },
      onPiece: (index) => n.have.add(index),
      onComplete: () => this.onComplete(n),
      onPeerClosed: (reset) => (reset ? this.closed.reset++ : this.closed.fin++),
      onBan: () => this.bans++,
      onPieceFailed: () => this.failedPieces++,
    });
    node.hostile = n.hostile;
    n.node = node;
    node.start();
  }

  stop(i: number, how: Departure): void {
    const n = this.nodes[i]!;
    const node = n.node;
    const host = n.host;
    if (!node || !host) return;
    const s = node.core.stats(this.ctx.engine.now);
    n.uploaded += s.uploaded;
    n.downloaded += s.downloaded;
    n.node = undefined;
    if (how === 'crash') {
      node.crashed();
      this.retire(node);
      this.ctx.network.removeHost(host);
      n.host = undefined;
      return;
    }
    node.stop();
    n.leaving = node;
    // Let the FINs and the `stopped` announce go out, then the machine is gone.
    n.removeTimer = this.ctx.engine.after(3000, () => {
      n.removeTimer = undefined;
      this.retire(n.leaving);
      n.leaving = undefined;
      if (n.host === host) {
        this.ctx.network.removeHost(host);
        n.host = undefined;
      }
    });
  }

  private retire(node: TorrentNode | undefined): void {
    const st = node?.announcer?.stats;
    if (st === undefined) return;
    this.retired.announces += st.announces;
    this.retired.failed += st.failed;
    this.retired.peersReceived += st.peersReceived;
  }

  /** Announce counters over every session so far. */
  private get announceTotals(): { announces: number; failed: number; peersReceived: number } {
    const sum = { ...this.retired };
    for (const n of this.nodes) {
      for (const node of [n.node, n.leaving]) {
        const st = node?.announcer?.stats;
        if (st === undefined) continue;
        sum.announces += st.announces;
        sum.failed += st.failed;
        sum.peersReceived += st.peersReceived;
      }
    }
    return sum;
  }

  makeHostile(i: number, behaviour: string): boolean {
    if (behaviour !== 'corrupt') return false;
    const n = this.nodes[i]!;
    n.hostile = true;
    if (n.node) n.node.hostile = true;
    return true;
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

  /** The leechers' share of pieces verified (1 when every leecher has the file). */
  progress(): number {
    let pieces = 0;
    for (let i = this.p.seeders; i < this.size; i++) pieces += this.nodes[i]!.have.size;
    return pieces / (this.p.leechers * this.layout.pieceCount);
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
    const t = this.tracker.stats(now);
    const a = this.announceTotals;
    const rows: [string, string][] = [
      ['file', `${this.p.fileBytes} bytes in ${this.layout.pieceCount} pieces of ${this.p.pieceBytes}; ${this.p.seeders} seeder(s), ${this.p.leechers} leechers`],
      ['completed', `${this.completed}/${this.p.leechers} leechers by ${num(now / 1000)} s`],
      ['fluid bound', `${num(this.boundMs / 1000)} s = max(F/u_s, F/d_min, P*F/(u_s+sum u_i))${this.disturbed() ? ' (for all leechers present from t=0 without churn: not this run)' : ''}`],
      ['last completion', last === undefined ? 'not every leecher completed' : `${num(last / 1000)} s, ratio to the bound ${num(ratio!)}`],
      ['uploaded', `seeders ${seedUp} bytes, leechers ${leechUp} bytes (${num(leechUp / Math.max(1, seedUp + leechUp))} of all)`],
      ['hash failures', `${this.failedPieces} pieces, ${this.bans} bans`],
      ['connections', `${this.closed.fin} ended with a FIN, ${this.closed.reset} reset (seen by the peer that stayed)`],
      [
        'tracker',
        `${t.announces.udp} announces, ${t.udpConnects} connects (BEP 15); ${t.peers} peers listed at the end (${t.seeders} seeders); ${a.failed} announces failed` +
          (this.tracker.internalErrors > 0 ? `; ${this.tracker.internalErrors} INTERNAL ERRORS (${this.tracker.firstError})` : ''),
      ],
    ];
    const counts = leecherClassCounts(this.p);
    const classes = classesOf(this.p).map((c, k) => {
      const done = this.nodes.filter((n) => n.cls === k && n.completedMs !== undefined).map((n) => n.completedMs! - (n.firstJoinMs ?? 0));
      return {
        name: c.name ?? null,
        leechers: counts[k]!,
        uploadBps: c.uploadBps,
        downloadBps: c.downloadBps,
        completed: done.length,
        meanDownloadMs: done.length === 0 ? null : done.reduce((x, y) => x + y, 0) / done.length,
        maxDownloadMs: done.length === 0 ? null : Math.max(...done),
      };
    });
    if (this.p.leecherClasses !== undefined) {
      const text = classes.map((c, k) => `${c.name ?? `#${k + 1}`}: ${c.leechers} x ${c.uploadBps}/${c.downloadBps} B/s up/down, mean download ${c.meanDownloadMs === null ? '-' : `${num(c.meanDownloadMs / 1000)} s`}`);
      rows.splice(1, 0, ['leecher classes', text.join('; ')]);
    }
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
        connectionsClosed: { ...this.closed },
        classes,
        tracker: {
          announces: t.announces.udp,
          connects: t.udpConnects,
          peersAtEnd: t.peers,
          seedersAtEnd: t.seeders,
          peersExpired: t.peersExpired,
          dropped: t.dropped,
          failures: t.failures,
          announcesFailed: a.failed,
          peersReceived: a.peersReceived,
          internalErrors: this.tracker.internalErrors,
        },
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
  groups: (p) => ['seeders', 'leechers', ...(p.leecherClasses ?? []).flatMap((c) => (c.name === undefined ? [] : [c.name]))],
  behaviours: ['corrupt'],
  check(p) {
    if (p.leecherClasses !== undefined) {
      const sum = p.leecherClasses.reduce((a, c) => a + c.fraction!, 0);
      if (Math.abs(sum - 1) > 1e-9) throw new ScenarioError('scenario.params.leecherClasses', `the fractions must add up to 1, got ${sum}`);
      const seen = new Set(['*', 'seeders', 'leechers']);
      p.leecherClasses.forEach((c, k) => {
        if (c.name === undefined) return;
        if (seen.has(c.name)) throw new ScenarioError(`scenario.params.leecherClasses[${k}].name`, `"${c.name}" is taken (by "*", "seeders", "leechers" or an earlier class)`);
        seen.add(c.name);
      });
    }
    if ((p.pieceBytes & (p.pieceBytes - 1)) !== 0) throw new ScenarioError('scenario.params.pieceBytes', `must be a power of two, got ${p.pieceBytes}`);
    if (Math.ceil(p.fileBytes / p.pieceBytes) > 1_000_000) throw new ScenarioError('scenario.params.pieceBytes', 'gives more than 1 000 000 pieces');
  },
  create: (ctx, p) => new FlashCrowdRun(ctx, p),
};

registerKind(flashCrowd);
