/**
 * A priority queue of timed events: a 4-ary min-heap ordered by
 * (time, insertion sequence). Two events due at the same time come out in the
 * order they were pushed, so a run is totally ordered and reproducible.
 *
 * The keys live in one Float64Array, interleaved (time, seq) per slot, so a
 * sift compares numbers in contiguous memory and never dereferences an
 * entry; the entries move in a parallel plain array. A 4-ary heap halves the
 * depth of a binary one, and its four children share a cache line or two.
 * Deliveries are `post`ed without a handle object, so they allocate nothing
 * here. (An in-process A/B with a standing queue of 100 000: 0.75-0.94 M
 * pops+pushes/s for the former binary heap of entry objects, 1.7-3.3 M/s
 * for this one with take/post; see BENCHMARKS.md for bench:sim.)
 *
 * Cancellation is eager: a handle knows its slot (kept up to date as entries
 * move), so `cancel()` removes the entry at once in O(log n). Protocol cores
 * arm a timeout per request and cancel most of them; removing them keeps the
 * heap at the size of what is really pending.
 */
import type { TimerHandle } from '../contract.js';

/** One queued event; also the handle that cancels it. */
export class QueueEntry<T> implements TimerHandle {
  /** The queue while the entry is pending; null once popped or cancelled. */
  owner: EventQueue<T> | null;
  readonly time: number;
  readonly seq: number;
  value: T;
  /** @internal The entry's slot in the heap while pending. */
  slot = -1;

  constructor(owner: EventQueue<T>, time: number, seq: number, value: T) {
    this.owner = owner;
    this.time = time;
    this.seq = seq;
    this.value = value;
  }

  /** True while the entry is neither popped nor cancelled. */
  get pending(): boolean {
    return this.owner !== null;
  }

  /** Removes the entry from its queue. Harmless if it was already popped or cancelled. */
  cancel(): void {
    this.owner?.cancelEntry(this);
  }
}

const INITIAL_CAPACITY = 64;

export class EventQueue<T> {
  /** keys[2i] = time, keys[2i+1] = seq of the event in slot i. */
  private keys = new Float64Array(2 * INITIAL_CAPACITY);
  /** The value in each slot. */
  private values: (T | undefined)[] = new Array<T | undefined>(INITIAL_CAPACITY).fill(undefined);
  /** The handle of each slot: null for a `post`ed value, which cannot be cancelled. */
  private handles: (QueueEntry<T> | null)[] = new Array<QueueEntry<T> | null>(INITIAL_CAPACITY).fill(null);
  private n = 0;
  private nextSeq = 0;
  /** The time of the value last returned by `take`. */
  lastTime = 0;

  /** Number of pending entries. */
  get size(): number {
    return this.n;
  }

  /** The sequence number the next `push` will get. */
  get sequence(): number {
    return this.nextSeq;
  }

  /** Queues `value` at `time` (any number that is not NaN) and returns its handle. */
  push(time: number, value: T): QueueEntry<T> {
    if (Number.isNaN(time)) throw new RangeError('event time must not be NaN');
    const seq = this.nextSeq++;
    const entry = new QueueEntry(this, time, seq, value);
    if (this.n === this.values.length) this.grow();
    this.siftUp(this.n++, time, seq, value, entry);
    return entry;
  }

  /**
   * Queues `value` at `time` without a handle: it cannot be cancelled, and
   * nothing is allocated (the fast path for message deliveries).
   */
  post(time: number, value: T): void {
    if (Number.isNaN(time)) throw new RangeError('event time must not be NaN');
    if (this.n === this.values.length) this.grow();
    this.siftUp(this.n++, time, this.nextSeq++, value, null);
  }

  /** The earliest pending entry, without removing it. */
  peek(): QueueEntry<T> | undefined {
    if (this.n === 0) return undefined;
    return this.handles[0] ?? this.entryOfTop();
  }

  /** The time of the earliest pending entry. */
  peekTime(): number | undefined {
    return this.n > 0 ? this.keys[0] : undefined;
  }

  /** Removes and returns the earliest pending entry. */
  pop(): QueueEntry<T> | undefined {
    if (this.n === 0) return undefined;
    const entry = this.handles[0] ?? this.entryOfTop();
    this.removeAt(0);
    entry.owner = null;
    return entry;
  }

  /**
   * Removes the earliest pending entry and returns its value (its time is
   * then in `lastTime`); undefined when empty. Allocates nothing.
   */
  take(): T | undefined {
    if (this.n === 0) return undefined;
    const handle = this.handles[0]!;
    if (handle !== null) handle.owner = null;
    this.lastTime = this.keys[0]!;
    const value = this.values[0] as T;
    this.removeAt(0);
    return value;
  }

  /** Removes every entry. */
  clear(): void {
    for (let i = 0; i < this.n; i++) {
      const h = this.handles[i];
      if (h) h.owner = null;
      this.handles[i] = null;
      this.values[i] = undefined;
    }
    this.n = 0;
  }

  /** @internal Use `entry.cancel()`. */
  cancelEntry(entry: QueueEntry<T>): void {
    if (entry.owner !== this) return;
    entry.owner = null;
    this.removeAt(entry.slot);
  }

  /** A handle for the posted value at the top (only `pop`/`peek` of a posted value need one). */
  private entryOfTop(): QueueEntry<T> {
    const entry = new QueueEntry(this, this.keys[0]!, this.keys[1]!, this.values[0] as T);
    entry.slot = 0;
    this.handles[0] = entry;
    return entry;
  }

  private grow(): void {
    const capacity = this.values.length * 2;
    const keys = new Float64Array(2 * capacity);
    keys.set(this.keys);
    this.keys = keys;
    const values = new Array<T | undefined>(capacity).fill(undefined);
    const handles = new Array<QueueEntry<T> | null>(capacity).fill(null);
    for (let i = 0; i < this.n; i++) {
      values[i] = this.values[i];
      handles[i] = this.handles[i]!;
    }
    this.values = values;
    this.handles = handles;
  }

  /** Removes the entry in slot i: the last entry fills the hole and moves up or down. */
  private removeAt(i: number): void {
    const last = --this.n;
    const values = this.values;
    const handles = this.handles;
    if (i === last) {
      values[last] = undefined;
      handles[last] = null;
      return;
    }
    const keys = this.keys;
    const value = values[last] as T;
    const handle = handles[last]!;
    const time = keys[2 * last]!;
    const seq = keys[2 * last + 1]!;
    values[last] = undefined;
    handles[last] = null;
    if (i > 0) {
      const parent = (i - 1) >> 2;
      const pt = keys[2 * parent]!;
      if (time < pt || (time === pt && seq < keys[2 * parent + 1]!)) {
        this.siftUp(i, time, seq, value, handle);
        return;
      }
    }
    this.siftDown(i, time, seq, value, handle);
  }

  /** Places the event at slot i or above it. */
  private siftUp(i: number, time: number, seq: number, value: T, handle: QueueEntry<T> | null): void {
    const keys = this.keys;
    const values = this.values;
    const handles = this.handles;
    while (i > 0) {
      const parent = (i - 1) >> 2;
      const pt = keys[2 * parent]!;
      if (pt < time || (pt === time && keys[2 * parent + 1]! < seq)) break;
      keys[2 * i] = pt;
      keys[2 * i + 1] = keys[2 * parent + 1]!;
      values[i] = values[parent];
      const h = handles[parent]!;
      handles[i] = h;
      if (h !== null) h.slot = i;
      i = parent;
    }
    keys[2 * i] = time;
    keys[2 * i + 1] = seq;
    values[i] = value;
    handles[i] = handle;
    if (handle !== null) handle.slot = i;
  }

  /** Places the event at slot i or below it. */
  private siftDown(i: number, time: number, seq: number, value: T, handle: QueueEntry<T> | null): void {
    const keys = this.keys;
    const values = this.values;
    const handles = this.handles;
    const n = this.n;
    for (;;) {
      const first = 4 * i + 1;
      if (first >= n) break;
      let best = first;
      let bt = keys[2 * first]!;
      let bs = keys[2 * first + 1]!;
      const end = first + 4 < n ? first + 4 : n;
      for (let c = first + 1; c < end; c++) {
        const ct = keys[2 * c]!;
        if (ct < bt || (ct === bt && keys[2 * c + 1]! < bs)) {
          best = c;
          bt = ct;
          bs = keys[2 * c + 1]!;
        }
      }
      if (time < bt || (time === bt && seq < bs)) break;
      keys[2 * i] = bt;
      keys[2 * i + 1] = bs;
      values[i] = values[best];
      const h = handles[best]!;
      handles[i] = h;
      if (h !== null) h.slot = i;
      i = best;
    }
    keys[2 * i] = time;
    keys[2 * i + 1] = seq;
    values[i] = value;
    handles[i] = handle;
    if (handle !== null) handle.slot = i;
  }
}
