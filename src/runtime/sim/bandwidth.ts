/**
 * Flow-level bandwidth for the simulated network.
 *
 * Every direction of a stream whose endpoints have a finite capacity is a
 * *flow*. A flow is active while it has bytes queued. The active flows share
 * the hosts' capacities max-min fairly: each flow is limited by its sender's
 * upload and its receiver's download capacity (the access links; the core of
 * the network is assumed not to be the bottleneck), and the allocation is the
 * one progressive filling gives: raise every flow's rate together; when a
 * host's capacity is used up, freeze the flows through it; go on with the
 * rest. Rates are recomputed only when a flow starts or ends, and bytes move
 * at constant rates in between, so a transfer costs a few events however big
 * it is.
 *
 * `maxMinFair` is the allocation alone, a pure function, tested against
 * hand-computed cases and properties (feasible; every flow has a saturated
 * resource on which it has the largest rate).
 */
import type { TimerHandle } from '../contract.js';
import type { SimEngine } from './engine.js';

/**
 * Max-min fair rates. Flow i uses resources `up[i]` and `down[i]` (indices
 * into `capacity`; distinct resource sets for ups and downs are the caller's
 * business). Capacities may be Infinity; a flow with only infinite resources
 * gets Infinity. Ties are broken by resource index, so the result is
 * deterministic.
 */
export function maxMinFair(up: ArrayLike<number>, down: ArrayLike<number>, capacity: ArrayLike<number>): Float64Array {
  const f = up.length;
  const r = capacity.length;
  const rate = new Float64Array(f);
  const remaining = Float64Array.from(capacity);
  const count = new Int32Array(r);
  const frozen = new Uint8Array(f);
  for (let i = 0; i < f; i++) {
    count[up[i]!]!++;
    count[down[i]!]!++;
  }
  // Flows of each resource, for the freezing step.
  const start = new Int32Array(r + 1);
  for (let k = 0; k < r; k++) start[k + 1] = start[k]! + count[k]!;
  const fill = start.slice(0, r);
  const members = new Int32Array(2 * f);
  for (let i = 0; i < f; i++) {
    members[fill[up[i]!]!++] = i;
    members[fill[down[i]!]!++] = i;
  }
  let left = f;
  while (left > 0) {
    let best = -1;
    let share = Infinity;
    for (let k = 0; k < r; k++) {
      const c = count[k]!;
      if (c === 0) continue;
      const s = remaining[k]! / c;
      if (s < share) {
        share = s;
        best = k;
      }
    }
    if (best < 0) {
      // Only infinite resources are left.
      for (let i = 0; i < f; i++) if (!frozen[i]) rate[i] = Infinity;
      break;
    }
    if (share < 0) share = 0;
    for (let m = start[best]!; m < start[best + 1]!; m++) {
      const i = members[m]!;
      if (frozen[i]) continue;
      frozen[i] = 1;
      left--;
      rate[i] = share;
      const u = up[i]!;
      const d = down[i]!;
      remaining[u] = remaining[u]! - share;
      remaining[d] = remaining[d]! - share;
      count[u]!--;
      count[d]!--;
    }
  }
  return rate;
}

/** A host's access link, as the scheduler sees it. Rates in bytes per second. */
export interface LinkEnds {
  readonly uid: number;
  readonly uploadBps: number;
  readonly downloadBps: number;
}

interface Segment {
  remaining: number;
  readonly done: () => void;
}

/** One direction of a stream. */
export class Flow {
  readonly src: LinkEnds;
  readonly dst: LinkEnds;
  /** Bytes per ms while active. */
  rate = 0;
  /** Bytes transmitted since the flow was created. */
  sent = 0;
  /** @internal */
  queue: Segment[] = [];
  /** @internal */
  head = 0;
  /** @internal */
  active = false;

  constructor(src: LinkEnds, dst: LinkEnds) {
    this.src = src;
    this.dst = dst;
  }

  /** Bytes queued and not yet transmitted. */
  get backlog(): number {
    let b = 0;
    for (let i = this.head; i < this.queue.length; i++) b += this.queue[i]!.remaining;
    return b;
  }
}

/** Within a nanosecond of the end of a transfer counts as the end (float rounding). */
const NS = 1e-6;

export class FlowScheduler {
  private readonly engine: SimEngine;
  private active: Flow[] = [];
  private lastSettle = 0;
  private timer: TimerHandle | undefined;
  private timerAt = Infinity;
  /** Rate recomputations so far (for benches and tests). */
  recomputes = 0;

  constructor(engine: SimEngine) {
    this.engine = engine;
  }

  /** Active flows (with bytes queued), in the order they became active. */
  get activeFlows(): readonly Flow[] {
    return this.active;
  }

  /**
   * Queues `bytes` on the flow; `done` runs when the last of them has been
   * transmitted (then the caller adds the propagation latency). Zero bytes
   * complete once everything queued before them has.
   */
  send(flow: Flow, bytes: number, done: () => void): void {
    const now = this.engine.now;
    if (flow.active) {
      flow.queue.push({ remaining: bytes, done });
      return;
    }
    if (bytes === 0) {
      done();
      return;
    }
    this.settle(now);
    flow.queue.push({ remaining: bytes, done });
    flow.active = true;
    this.active.push(flow);
    this.recompute(now);
  }

  /** Drops everything queued on the flow (a reset or a destroyed stream); `done` callbacks never run. */
  clear(flow: Flow): void {
    if (!flow.active) return;
    const now = this.engine.now;
    this.settle(now);
    flow.queue = [];
    flow.head = 0;
    if (flow.active) {
      flow.active = false;
      this.active = this.active.filter((f) => f !== flow);
      this.recompute(now);
    }
  }

  /** Moves every active flow forward to `now`, completing segments; returns whether a flow went idle. */
  private settle(now: number): boolean {
    const dt = now - this.lastSettle;
    this.lastSettle = now;
    let idle = false;
    const completed: (() => void)[] = [];
    for (const flow of this.active) {
      let budget = flow.rate * dt;
      const tolerance = Math.max(NS, flow.rate * NS);
      while (flow.head < flow.queue.length) {
        const seg = flow.queue[flow.head]!;
        if (seg.remaining <= budget + tolerance) {
          budget -= seg.remaining;
          flow.sent += seg.remaining;
          seg.remaining = 0;
          flow.head++;
          completed.push(seg.done);
          if (budget < 0) budget = 0;
        } else {
          seg.remaining -= budget;
          flow.sent += budget;
          break;
        }
      }
      if (flow.head === flow.queue.length) {
        flow.queue = [];
        flow.head = 0;
        flow.active = false;
        idle = true;
      } else if (flow.head > 64 && flow.head * 2 > flow.queue.length) {
        flow.queue = flow.queue.slice(flow.head);
        flow.head = 0;
      }
    }
    if (idle) this.active = this.active.filter((f) => f.active);
    for (const done of completed) done();
    return idle;
  }

  private recompute(now: number): void {
    this.recomputes++;
    const flows = this.active;
    const n = flows.length;
    if (n > 0) {
      // Compact resource indices: 2k = upload of the k-th host seen, 2k+1 = its download.
      const slot = new Map<number, number>();
      const capacity: number[] = [];
      const up = new Int32Array(n);
      const down = new Int32Array(n);
      const resource = (h: LinkEnds): number => {
        let k = slot.get(h.uid);
        if (k === undefined) {
          k = capacity.length;
          slot.set(h.uid, k);
          capacity.push(h.uploadBps / 1000, h.downloadBps / 1000);
        }
        return k;
      };
      for (let i = 0; i < n; i++) {
        up[i] = resource(flows[i]!.src);
        down[i] = resource(flows[i]!.dst) + 1;
      }
      const rates = maxMinFair(up, down, capacity);
      for (let i = 0; i < n; i++) flows[i]!.rate = rates[i]!;
    }
    this.reschedule(now);
  }

  /** Arms the one timer for the earliest segment completion. */
  private reschedule(now: number): void {
    let next = Infinity;
    for (const flow of this.active) {
      const seg = flow.queue[flow.head]!;
      const t = flow.rate === Infinity ? now : flow.rate > 0 ? now + seg.remaining / flow.rate : Infinity;
      if (t < next) next = t;
    }
    if (next === this.timerAt) return;
    this.timer?.cancel();
    this.timer = undefined;
    this.timerAt = next;
    if (next < Infinity) this.timer = this.engine.schedule(next, this.onTimer);
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.engine.now;
    const before = this.active.length;
    const idle = this.settle(now);
    if (idle || this.active.length !== before) this.recompute(now);
    else this.reschedule(now);
  };
}
