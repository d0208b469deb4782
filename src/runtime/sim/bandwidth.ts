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
  readonly bytes: number;
  readonly done: () => void;
}

/** One direction of a stream. */
export class Flow {
  readonly src: LinkEnds;
  readonly dst: LinkEnds;
  /** Bytes per ms while active. */
  rate = 0;
  /** @internal */
  queue: Segment[] = [];
  /** @internal */
  head = 0;
  /** @internal */
  active = false;
  /** @internal Order among flows (set when it first becomes active). */
  id = 0;
  /** @internal Position in the scheduler's active list. */
  slot = -1;
  /** @internal Bytes of the head segment left at time t0. */
  rem0 = 0;
  /** @internal */
  t0 = 0;
  /** @internal When the head segment is transmitted, at the current rate. */
  due = Infinity;
  /** @internal Small messages sent outside the fair share finish by then. */
  fastUntil = -Infinity;
  /** Bytes transmitted before the last anchor point (see `transmitted`). */
  private sentBefore = 0;

  constructor(src: LinkEnds, dst: LinkEnds) {
    this.src = src;
    this.dst = dst;
  }

  /** @internal Moves the progress of the head segment forward to `now`. */
  anchor(now: number): void {
    if (this.rate === Infinity) return;
    const progressed = Math.min(this.rem0, this.rate * (now - this.t0));
    if (progressed > 0) {
      this.rem0 -= progressed;
      this.sentBefore += progressed;
    }
    this.t0 = now;
  }

  /** @internal */
  addSent(bytes: number): void {
    this.sentBefore += bytes;
  }

  /** Bytes transmitted so far (as of the last rate change or segment end). */
  get transmitted(): number {
    return this.sentBefore;
  }

  /** Bytes queued and not yet transmitted (as of the last rate change or segment end). */
  get backlog(): number {
    if (!this.active) return 0;
    let b = this.rem0;
    for (let i = this.head + 1; i < this.queue.length; i++) b += this.queue[i]!.bytes;
    return b;
  }
}

function earlier(a: Flow, b: Flow): boolean {
  return a.due < b.due || (a.due === b.due && a.id < b.id);
}

export interface FlowSchedulerOptions {
  /**
   * A write of at most this many bytes on an idle flow is not entered into
   * the fair share: it takes bytes / min(upload, download) and leaves the
   * other flows' rates alone (requests, HAVEs, keep-alives). Order within
   * the flow is kept. Default 0 (off: the exact model). 1024 makes a
   * 100-peer flash crowd about ten times faster to simulate, and moved the
   * 10-leecher flash crowd's completion times by about +6 % (five seeds).
   */
  readonly smallMessageBytes?: number;
}

/**
 * Transmits the queued segments of flows at max-min fair rates. Work is
 * proportional to the changes, not to the time simulated: rates are
 * recomputed (O(flows + hosts^2) at worst) only when a flow starts or goes
 * idle; between those, each segment end costs O(log flows) on a heap of
 * flows ordered by when their head segment will be done, and a flow's
 * progress is computed from its rate only when needed.
 */
export class FlowScheduler {
  private readonly engine: SimEngine;
  private readonly smallBytes: number;
  private active: Flow[] = [];
  private heap: Flow[] = [];
  private timer: TimerHandle | undefined;
  private timerAt = Infinity;
  private nextId = 1;
  /** Rate recomputations so far (for benches and tests). */
  recomputes = 0;

  constructor(engine: SimEngine, options: FlowSchedulerOptions = {}) {
    this.engine = engine;
    this.smallBytes = options.smallMessageBytes ?? 0;
  }

  /** Active flows (with bytes queued). */
  get activeFlows(): readonly Flow[] {
    return this.active;
  }

  /**
   * Queues `bytes` on the flow; `done` runs when the last of them has been
   * transmitted (then the caller adds the propagation latency). The `done`
   * callbacks of one flow run in the order of the sends.
   */
  send(flow: Flow, bytes: number, done: () => void): void {
    if (flow.active) {
      flow.queue.push({ bytes, done });
      return;
    }
    const now = this.engine.now;
    if (bytes <= this.smallBytes) {
      const cap = Math.min(flow.src.uploadBps, flow.dst.downloadBps) / 1000;
      const at = Math.max(now, flow.fastUntil) + (cap === Infinity ? 0 : bytes / cap);
      flow.fastUntil = at;
      flow.addSent(bytes);
      this.engine.post(at, done);
      return;
    }
    if (flow.id === 0) flow.id = this.nextId++;
    flow.queue = [{ bytes, done }];
    flow.head = 0;
    flow.rem0 = bytes;
    flow.t0 = now;
    flow.active = true;
    flow.slot = this.active.length;
    this.active.push(flow);
    this.recompute(now);
  }

  /** Drops everything queued on the flow (a reset or a destroyed stream); its pending `done` callbacks never run. */
  clear(flow: Flow): void {
    if (!flow.active) return;
    const now = this.engine.now;
    flow.anchor(now);
    this.deactivate(flow);
    this.recompute(now);
  }

  private deactivate(flow: Flow): void {
    flow.queue = [];
    flow.head = 0;
    flow.active = false;
    flow.due = Infinity;
    flow.rem0 = 0;
    const last = this.active.pop()!;
    if (last !== flow) {
      this.active[flow.slot] = last;
      last.slot = flow.slot;
    }
    flow.slot = -1;
  }

  private recompute(now: number): void {
    this.recomputes++;
    const flows = this.active;
    const n = flows.length;
    if (n > 0) {
      for (const f of flows) f.anchor(now);
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
      for (let i = 0; i < n; i++) {
        const f = flows[i]!;
        f.rate = rates[i]!;
        f.due = f.rate === Infinity ? now : f.rate > 0 ? now + f.rem0 / f.rate : Infinity;
      }
    }
    // Rebuild the heap (Floyd).
    const heap = flows.slice();
    this.heap = heap;
    for (let i = (heap.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
    this.arm();
  }

  private arm(): void {
    const next = this.heap.length > 0 ? this.heap[0]!.due : Infinity;
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
    let idle = false;
    // Segment ends only post deliveries; nothing here re-enters the scheduler.
    const heap = this.heap;
    while (heap.length > 0 && heap[0]!.due <= now) {
      const f = heap[0]!;
      // The head segment is transmitted.
      const seg = f.queue[f.head]!;
      f.addSent(f.rem0);
      f.rem0 = 0;
      f.head++;
      if (f.fastUntil > now) this.engine.post(f.fastUntil, seg.done);
      else seg.done();
      if (f.head < f.queue.length) {
        if (f.head > 64 && f.head * 2 > f.queue.length) {
          f.queue = f.queue.slice(f.head);
          f.head = 0;
        }
        f.rem0 = f.queue[f.head]!.bytes;
        f.t0 = now;
        f.due = f.rate === Infinity ? now : f.rate > 0 ? now + f.rem0 / f.rate : Infinity;
        this.siftDown(0);
      } else {
        this.deactivate(f);
        const last = heap.pop()!;
        if (heap.length > 0 && last !== f) {
          heap[0] = last;
          this.siftDown(0);
        }
        idle = true;
      }
    }
    if (idle) this.recompute(now);
    else this.arm();
  };

  private siftDown(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const item = heap[i]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && earlier(heap[c + 1]!, heap[c]!)) c++;
      if (!earlier(heap[c]!, item)) break;
      heap[i] = heap[c]!;
      i = c;
    }
    heap[i] = item;
  }
}
