/**
 * The discrete-event engine: a virtual clock and a queue of callbacks keyed by
 * (time, insertion order). Running it pops the earliest event, sets the clock
 * to its time and calls it; nothing else moves the clock, so a run is a pure
 * function of its inputs.
 *
 * The clock never goes backwards: an event scheduled in the past runs at the
 * current time, after the events already due then.
 *
 * Callback-style code (drivers, cores, the simulated network) runs inside the
 * synchronous `run`/`step`. Code that awaits promises between simulated
 * events (for example `await runtime.connectStream(...)` followed by more
 * work) must be run with `runAsync`, which lets pending promise continuations
 * run after every event, before the clock moves on.
 */
import type { Clock, TimerHandle, Timers } from '../contract.js';
import { EventQueue } from './event-queue.js';

export interface RunOptions {
  /** Run events due at or before this time, then set the clock to it. */
  until?: number;
  /** Stop after this many events. */
  maxEvents?: number;
}

export type RunStopReason = 'idle' | 'until' | 'maxEvents' | 'stopped';

export interface RunResult {
  /** Events run by this call. */
  events: number;
  reason: RunStopReason;
  /** The clock when the call returned. */
  now: number;
}

/** Thrown by `runUntilIdle` when events are still queued after its limit. */
export class SimLimitError extends Error {
  constructor(limit: number, now: number) {
    super(`simulation not idle after ${limit} events (t=${now} ms): runaway event loop?`);
    this.name = 'SimLimitError';
  }
}

export interface SimEngineOptions {
  /** The clock's initial value (default 0). */
  startTime?: number;
}

function yieldToMicrotasks(): Promise<void> {
  // A macrotask: every pending promise continuation runs before it resolves.
  return new Promise((resolve) => setImmediate(resolve));
}

export class SimEngine {
  private readonly queue = new EventQueue<() => void>();
  private time: number;
  private processed = 0;
  private running = false;
  private stopRequested = false;

  /** The engine's clock, for a Runtime. */
  readonly clock: Clock;
  /** The engine's timers, for a Runtime. */
  readonly timers: Timers;

  constructor(options: SimEngineOptions = {}) {
    const start = options.startTime ?? 0;
    if (!Number.isFinite(start)) throw new RangeError('startTime must be finite');
    this.time = start;
    this.clock = { now: () => this.time };
    this.timers = { at: (at, fn) => this.schedule(at, fn) };
  }

  /** The current simulated time in milliseconds. */
  get now(): number {
    return this.time;
  }

  /** Events run since the engine was created. */
  get eventsProcessed(): number {
    return this.processed;
  }

  /** Events queued and not cancelled. */
  get pendingEvents(): number {
    return this.queue.size;
  }

  /** When the next event is due, if any. */
  nextEventTime(): number | undefined {
    return this.queue.peekTime();
  }

  /** Runs `fn` at time `at` (at the current time if `at` is in the past). */
  schedule(at: number, fn: () => void): TimerHandle {
    if (!Number.isFinite(at)) throw new RangeError(`event time must be finite, got ${at}`);
    return this.queue.push(at < this.time ? this.time : at, fn);
  }

  /**
   * Runs `fn` at time `at` like `schedule`, but returns no handle: it cannot
   * be cancelled, and nothing is allocated for it. For deliveries that always
   * happen (the network's messages).
   */
  post(at: number, fn: () => void): void {
    if (!Number.isFinite(at)) throw new RangeError(`event time must be finite, got ${at}`);
    this.queue.post(at < this.time ? this.time : at, fn);
  }

  /** `post` after `delayMs`. */
  postAfter(delayMs: number, fn: () => void): void {
    this.post(this.time + delayMs, fn);
  }

  /** Runs `fn` `delayMs` from now. */
  after(delayMs: number, fn: () => void): TimerHandle {
    return this.schedule(this.time + delayMs, fn);
  }

  /** Makes the current `run`/`runAsync` return after the event being run. */
  stop(): void {
    this.stopRequested = true;
  }

  /** Runs the next event. Returns false if there was none. */
  step(): boolean {
    this.enter();
    try {
      return this.runOne();
    } finally {
      this.running = false;
    }
  }

  /** Runs events until the queue is empty, `until` is passed, `maxEvents` have run, or `stop()` is called. */
  run(options: RunOptions = {}): RunResult {
    const { until, maxEvents } = checkRunOptions(options);
    this.enter();
    let events = 0;
    let reason: RunStopReason;
    try {
      for (;;) {
        if (events >= maxEvents) {
          reason = 'maxEvents';
          break;
        }
        const next = this.queue.peekTime();
        if (next === undefined) {
          reason = 'idle';
          break;
        }
        if (next > until) {
          reason = 'until';
          break;
        }
        this.runOne();
        events++;
        if (this.stopRequested) {
          reason = 'stopped';
          break;
        }
      }
    } finally {
      this.running = false;
      this.stopRequested = false;
    }
    if ((reason === 'idle' || reason === 'until') && until !== Infinity && until > this.time) this.time = until;
    return { events, reason, now: this.time };
  }

  /**
   * Like `run`, but after every event lets pending promise continuations run
   * (they may schedule more events at the current time). Use it for async
   * code; it is much slower than `run`.
   */
  async runAsync(options: RunOptions = {}): Promise<RunResult> {
    const { until, maxEvents } = checkRunOptions(options);
    this.enter();
    let events = 0;
    let reason: RunStopReason;
    try {
      await yieldToMicrotasks();
      for (;;) {
        if (events >= maxEvents) {
          reason = 'maxEvents';
          break;
        }
        let next = this.queue.peekTime();
        if (next === undefined) {
          await yieldToMicrotasks();
          next = this.queue.peekTime();
          if (next === undefined) {
            reason = 'idle';
            break;
          }
        }
        if (next > until) {
          reason = 'until';
          break;
        }
        this.runOne();
        events++;
        await yieldToMicrotasks();
        if (this.stopRequested) {
          reason = 'stopped';
          break;
        }
      }
    } finally {
      this.running = false;
      this.stopRequested = false;
    }
    if ((reason === 'idle' || reason === 'until') && until !== Infinity && until > this.time) this.time = until;
    return { events, reason, now: this.time };
  }

  /**
   * Runs until no events are left and returns how many ran. Throws
   * SimLimitError if events are still queued after `limit` of them.
   */
  runUntilIdle(limit = 10_000_000): number {
    const result = this.run({ maxEvents: limit });
    if (result.reason === 'maxEvents' && this.queue.size > 0) throw new SimLimitError(limit, this.time);
    return result.events;
  }

  private enter(): void {
    if (this.running) throw new Error('SimEngine is already running (run/step called from inside an event)');
    this.running = true;
    this.stopRequested = false;
  }

  private runOne(): boolean {
    const fn = this.queue.take();
    if (fn === undefined) return false;
    this.time = this.queue.lastTime;
    this.processed++;
    fn();
    return true;
  }
}

function checkRunOptions(options: RunOptions): { until: number; maxEvents: number } {
  const until = options.until ?? Infinity;
  const maxEvents = options.maxEvents ?? Infinity;
  if (Number.isNaN(until)) throw new RangeError('until must not be NaN');
  if (Number.isNaN(maxEvents) || maxEvents < 0) throw new RangeError('maxEvents must be >= 0');
  return { until, maxEvents };
}
