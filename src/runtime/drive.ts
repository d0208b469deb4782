/**
 * The generic driver for datagram cores: it feeds a DatagramCore from a
 * DatagramSocket and a Runtime's clock and timers, and carries out what the
 * core asks for. It is the only glue between a core and the world, and it is
 * the same on the real runtime and in the simulator.
 *
 * After every input (a datagram, an expired timer, or a `poke()` after the
 * owner called the core directly) it *flushes*: it sends every pending
 * transmit, hands every pending event to `onEvent`, and repeats while
 * `onEvent` caused more work; then it makes sure one timer is armed no later
 * than the core's `pollTimeout()` deadline. The timer is re-armed only when
 * the deadline moves *earlier*: when it moves later (a datagram core's
 * deadline is usually its oldest request's, which moves on with every
 * answer), the armed timer is kept, and when it fires before the deadline it
 * only re-arms for it. So `handleTimeout(now)` is still called only once the
 * clock has reached the core's current deadline, and then the driver flushes
 * again; but an answer costs no timer cancel and re-arm.
 *
 * Flushing never recurses: a `poke()` (or any input) arriving from inside
 * `onEvent` just asks the flush in progress for another round. One flush does
 * at most `maxRoundsPerFlush` rounds; if `onEvent` keeps producing work
 * beyond that, the rest is deferred to a timer due now, so even a core and an
 * owner that feed each other forever cannot block the runtime.
 */
import type { DatagramCore, DatagramSocket, Runtime, TimerHandle } from './contract.js';

export interface DriveOptions {
  /** Close the socket on `stop()`. Default false: the caller owns the socket. */
  closeSocketOnStop?: boolean;
  /** Bound on poll rounds in one flush before deferring (default 1000). */
  maxRoundsPerFlush?: number;
}

export interface DriveHandle {
  /** Flush after the owner called a core method directly (for example to start a request). */
  poke(): void;
  /** Stops driving: no more input reaches the core, the timer is cancelled. */
  stop(): void;
  readonly stopped: boolean;
}

export function driveDatagramCore<Event>(
  runtime: Runtime,
  socket: DatagramSocket,
  core: DatagramCore<Event>,
  onEvent: (event: Event) => void,
  options: DriveOptions = {},
): DriveHandle {
  const maxRounds = options.maxRoundsPerFlush ?? 1000;
  if (!(maxRounds >= 1)) throw new RangeError('maxRoundsPerFlush must be >= 1');
  let stopped = false;
  let flushing = false;
  let again = false;
  let timer: TimerHandle | undefined;
  let timerAt: number | undefined;
  let deferred: TimerHandle | undefined;

  const cancelTimer = (): void => {
    timer?.cancel();
    timer = undefined;
    timerAt = undefined;
  };

  const arm = (at: number): void => {
    timerAt = at;
    timer = runtime.timers.at(at, onTimer);
  };

  const onTimer = (): void => {
    timer = undefined;
    timerAt = undefined;
    if (stopped) return;
    const now = runtime.clock.now();
    const deadline = core.pollTimeout();
    if (deadline === undefined) return; // the core no longer wants a timeout
    if (deadline > now) {
      arm(deadline); // it moved later since this timer was armed
      return;
    }
    core.handleTimeout(now);
    flush();
  };

  const onDeferred = (): void => {
    deferred = undefined;
    flush();
  };

  function flush(): void {
    if (stopped) return;
    if (flushing) {
      again = true;
      return;
    }
    flushing = true;
    try {
      let rounds = 0;
      do {
        again = false;
        if (++rounds > maxRounds) {
          deferred ??= runtime.timers.at(runtime.clock.now(), onDeferred);
          break;
        }
        for (let t = core.pollTransmit(); t !== undefined; t = core.pollTransmit()) socket.send(t.to, t.data);
        for (let e = core.pollEvent(); e !== undefined; e = core.pollEvent()) {
          again = true; // the owner may have called the core: poll once more
          onEvent(e);
          if (stopped) return;
        }
      } while (again);
      const deadline = core.pollTimeout();
      if (deadline !== undefined && (timerAt === undefined || deadline < timerAt)) {
        cancelTimer();
        arm(deadline);
      }
    } finally {
      flushing = false;
    }
  }

  socket.onMessage((from, data) => {
    if (stopped) return;
    core.handleDatagram(runtime.clock.now(), from, data);
    flush();
  });

  return {
    poke: flush,
    stop(): void {
      if (stopped) return;
      stopped = true;
      cancelTimer();
      deferred?.cancel();
      deferred = undefined;
      if (options.closeSocketOnStop === true) socket.close();
    },
    get stopped(): boolean {
      return stopped;
    },
  };
}
