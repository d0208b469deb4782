/**
 * A priority queue of timed events: a binary min-heap ordered by
 * (time, insertion sequence). Two events due at the same time come out in the
 * order they were pushed, so a run is totally ordered and reproducible.
 *
 * The heap is a flat array of small, monomorphic entry objects compared by a
 * plain module-level function (no comparator closure). Cancellation is lazy:
 * a cancelled entry stays in the heap, marked dead, and is skipped when it
 * reaches the top; when dead entries outnumber live ones the heap is
 * compacted so that repeatedly re-armed timers cannot make it grow without
 * bound.
 */
import type { TimerHandle } from '../contract.js';

/** One queued event; also the handle that cancels it. */
export class QueueEntry<T> implements TimerHandle {
  /** The queue while the entry is pending; null once popped or cancelled. */
  owner: EventQueue<T> | null;
  readonly time: number;
  readonly seq: number;
  value: T;

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

function before<T>(a: QueueEntry<T>, b: QueueEntry<T>): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}

const COMPACT_MIN_DEAD = 64;

export class EventQueue<T> {
  private heap: QueueEntry<T>[] = [];
  private nextSeq = 0;
  private dead = 0;

  /** Number of pending (not cancelled) entries. */
  get size(): number {
    return this.heap.length - this.dead;
  }

  /** The sequence number the next `push` will get. */
  get sequence(): number {
    return this.nextSeq;
  }

  /** Queues `value` at `time` (any number that is not NaN). */
  push(time: number, value: T): QueueEntry<T> {
    if (Number.isNaN(time)) throw new RangeError('event time must not be NaN');
    const entry = new QueueEntry(this, time, this.nextSeq++, value);
    this.heap.push(entry);
    this.siftUp(this.heap.length - 1);
    return entry;
  }

  /** The earliest pending entry, without removing it. */
  peek(): QueueEntry<T> | undefined {
    this.dropDeadTop();
    return this.heap[0];
  }

  /** The time of the earliest pending entry. */
  peekTime(): number | undefined {
    this.dropDeadTop();
    return this.heap[0]?.time;
  }

  /** Removes and returns the earliest pending entry. */
  pop(): QueueEntry<T> | undefined {
    this.dropDeadTop();
    const top = this.removeTop();
    if (top !== undefined) top.owner = null;
    return top;
  }

  /** Removes every entry. */
  clear(): void {
    for (const e of this.heap) e.owner = null;
    this.heap = [];
    this.dead = 0;
  }

  /** @internal Use `entry.cancel()`. */
  cancelEntry(entry: QueueEntry<T>): void {
    if (entry.owner !== this) return;
    entry.owner = null;
    this.dead++;
    if (this.dead >= COMPACT_MIN_DEAD && this.dead * 2 > this.heap.length) this.compact();
  }

  private dropDeadTop(): void {
    const heap = this.heap;
    while (heap.length > 0 && heap[0]!.owner === null) {
      this.removeTop();
      this.dead--;
    }
  }

  private removeTop(): QueueEntry<T> | undefined {
    const heap = this.heap;
    const n = heap.length;
    if (n === 0) return undefined;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (n > 1) {
      heap[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  /** Drops dead entries and re-heapifies (Floyd). The order is total, so the result is deterministic. */
  private compact(): void {
    const live: QueueEntry<T>[] = [];
    for (const e of this.heap) if (e.owner !== null) live.push(e);
    this.heap = live;
    this.dead = 0;
    for (let i = (live.length >>> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  private siftUp(i: number): void {
    const heap = this.heap;
    const item = heap[i]!;
    while (i > 0) {
      const parent = (i - 1) >>> 1;
      const p = heap[parent]!;
      if (!before(item, p)) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = item;
  }

  private siftDown(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const item = heap[i]!;
    const half = n >>> 1;
    while (i < half) {
      let child = 2 * i + 1;
      let c = heap[child]!;
      const right = child + 1;
      if (right < n) {
        const r = heap[right]!;
        if (before(r, c)) {
          child = right;
          c = r;
        }
      }
      if (!before(c, item)) break;
      heap[i] = c;
      i = child;
    }
    heap[i] = item;
  }
}
