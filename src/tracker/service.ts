/**
 * The glue between the sans-I/O TrackerCore and the world: one core shared
 * by every HTTP and UDP socket of a tracker, the real runtime's clock and
 * timers for its sweep deadline, and the user store that persists its
 * accounting events.
 *
 * After every input the servers call `afterInput()`, which first writes the
 * core's accounting events to the store and only then lets the caller send
 * its reply, so an acknowledged announce is always on disk (in the kernel)
 * first; then it re-arms the one timer for the core's next deadline.
 */
import type { TrackerCore } from '../core/tracker/tracker-core.js';
import type { Runtime, TimerHandle } from '../runtime/contract.js';
import type { FullStats } from './metrics.js';
import type { UserStore } from './store.js';

export class TrackerService {
  readonly core: TrackerCore;
  readonly runtime: Runtime;
  readonly store: UserStore | undefined;
  httpRequests = 0;
  /** HTTP connections closed at once because their address had too many open. */
  httpConnectionsRefused = 0;
  internalErrors = 0;
  private timer: TimerHandle | undefined;
  private timerAt: number | undefined;
  private readonly startedAt: number;
  private closed = false;
  private readonly onError: (error: unknown) => void;

  constructor(core: TrackerCore, runtime: Runtime, store: UserStore | undefined, onError: (error: unknown) => void) {
    this.core = core;
    this.runtime = runtime;
    this.store = store;
    this.onError = onError;
    this.startedAt = runtime.clock.now();
  }

  now(): number {
    return this.runtime.clock.now();
  }

  /** Reports an unexpected error without stopping the tracker. */
  fault(error: unknown): void {
    this.internalErrors++;
    try {
      this.onError(error);
    } catch {
      // a failing error handler must not take the tracker down either
    }
  }

  /** Persists pending events, then re-arms the deadline timer. Call after every input to the core. */
  afterInput(): void {
    const core = this.core;
    for (let e = core.pollEvent(); e !== undefined; e = core.pollEvent()) {
      if (e.type === 'accounting' && this.store !== undefined) {
        try {
          this.store.account(e.passkey, e.uploaded, e.downloaded, e.completed, e.peer, e.reported);
        } catch (error) {
          this.fault(error);
        }
      }
    }
    this.arm();
  }

  private arm(): void {
    if (this.closed) return;
    const at = this.core.pollTimeout();
    if (at === this.timerAt) return;
    this.timer?.cancel();
    this.timer = undefined;
    this.timerAt = at;
    if (at !== undefined) {
      this.timer = this.runtime.timers.at(at, () => {
        this.timer = undefined;
        this.timerAt = undefined;
        try {
          this.core.handleTimeout(this.now());
        } catch (error) {
          this.fault(error);
        }
        this.afterInput();
      });
    }
  }

  stats(): FullStats {
    const now = this.now();
    return {
      ...this.core.stats(now),
      httpRequests: this.httpRequests,
      httpConnectionsRefused: this.httpConnectionsRefused,
      internalErrors: this.internalErrors,
      residentMemoryBytes: process.memoryUsage.rss(),
      uptimeSeconds: Math.round((now - this.startedAt) / 1000),
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
  }
}
