/**
 * The runtime contract: the only way a protocol core reaches the world.
 *
 * A *core* (src/core/**) is a sans-I/O state machine. It is given input
 * events together with the current time, and it is polled for what it wants
 * done: datagrams or bytes to send, the next deadline at which it wants to be
 * woken, and events for its owner. It never opens a socket, never sets a
 * timer and never reads the clock or an ambient random source.
 *
 * A *runtime* supplies time, timers, seeded randomness, UDP datagrams and
 * reliable byte streams. There are two: the real one (src/runtime/real, on
 * node:dgram, node:net and Node's timers) and the simulated one
 * (src/runtime/sim, a deterministic discrete-event engine with a virtual
 * network). A *driver* (src/runtime/drive.ts) wires a core to a runtime; the
 * same core and the same driver run unchanged on either.
 *
 * Times are milliseconds as plain numbers. On the real runtime they count from
 * an arbitrary origin (a monotonic clock); in the simulator they count from
 * the start of the run. Cores only ever compare and add them.
 */

/** A transport address. `host` is a literal IPv4 or IPv6 address, never a name. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export function endpointKey(e: Endpoint): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.port === b.port && a.host === b.host;
}

/** Monotonic time in milliseconds. */
export interface Clock {
  now(): number;
}

export interface TimerHandle {
  cancel(): void;
}

export interface Timers {
  /** Calls `fn` once, when the clock reaches `at` (or at once if it already has). */
  at(at: number, fn: () => void): TimerHandle;
}

/**
 * A source of randomness. In the simulator it is a seeded PRNG, so a run is
 * reproducible; on the real runtime it is backed by node:crypto.
 * Cores that need randomness are handed one of these.
 */
export interface Random {
  /** A uniformly distributed unsigned 32-bit integer. */
  u32(): number;
  /** A float in [0, 1). */
  float(): number;
  /** An integer in [0, n), for 0 < n <= 2^32. */
  below(n: number): number;
  /** `n` random bytes. */
  bytes(n: number): Uint8Array;
}

/** A bound UDP socket. */
export interface DatagramSocket {
  readonly local: Endpoint;
  /**
   * Sends one datagram, best effort: it may be lost, and errors only lose it.
   * The runtime may read `data` after returning, so do not modify it
   * afterwards. A no-op once the socket is closed.
   */
  send(to: Endpoint, data: Uint8Array): void;
  /** Adds a handler for received datagrams (each handler gets every one). */
  onMessage(fn: (from: Endpoint, data: Uint8Array) => void): void;
  close(): void;
}

/**
 * A reliable, ordered byte stream (TCP on the real runtime). `write` returns
 * false when the caller should wait for `onDrain` before writing more.
 */
export interface ByteStream {
  readonly local: Endpoint;
  readonly remote: Endpoint;
  /**
   * Queues `data` for sending; false once the stream's buffer is full (wait for drain). The
   * caller must not change `data` until `onWritten` is called, once the stream no longer needs
   * it (handed to the network, copied, or dropped because the stream closed); it may be called
   * before `write` returns.
   */
  write(data: Uint8Array, onWritten?: () => void): boolean;
  /**
   * Adds a data handler. Bytes that arrive before the first one is added wait for it.
   * With `borrow`, the handler accepts memory that is only valid during the call (the
   * runtime may read the next bytes into it): it copies whatever it keeps. A runtime may
   * still hand such a handler memory of its own.
   */
  onData(fn: (data: Uint8Array) => void, options?: { borrow?: boolean }): void;
  onDrain(fn: () => void): void;
  /**
   * Stops handing received data to `onData` handlers until `resume()`. The
   * bytes wait in the stream; once its buffers fill, the sender's `write`
   * returns false. This is how a slow reader pushes back.
   */
  pause(): void;
  /** Resumes delivery after `pause()`. */
  resume(): void;
  /**
   * Called once, when the stream is closed by either side or fails (with the
   * error, if any). A handler added after the close is still called, once,
   * asynchronously.
   */
  onClose(fn: (error?: Error) => void): void;
  /** Half-close after pending writes are flushed. */
  end(): void;
  /** Close at once, discarding pending writes. */
  destroy(): void;
}

export interface StreamListener {
  readonly local: Endpoint;
  close(): void;
}

export interface BindOptions {
  /** Local address; defaults to the runtime's own (127.0.0.1 on the real one). */
  host?: string;
  /** 0 or omitted: any free port. */
  port?: number;
}

/** Everything a driver needs from the world. */
export interface Runtime {
  readonly clock: Clock;
  readonly timers: Timers;
  readonly random: Random;
  bindDatagram(options?: BindOptions): Promise<DatagramSocket>;
  listenStream(options: BindOptions, onConnection: (stream: ByteStream) => void): Promise<StreamListener>;
  connectStream(to: Endpoint, options?: { timeoutMs?: number }): Promise<ByteStream>;
}

/** A datagram a core wants sent. */
export interface Transmit {
  readonly to: Endpoint;
  readonly data: Uint8Array;
}

/**
 * The shape of a datagram-based core, after quinn-proto's `Endpoint`: feed it
 * input with the current time, then drain `pollTransmit`, `pollEvent` and
 * `pollTimeout` until they return undefined.
 */
export interface DatagramCore<Event> {
  handleDatagram(now: number, from: Endpoint, data: Uint8Array): void;
  /** Called when the clock has reached the deadline last returned by `pollTimeout`. */
  handleTimeout(now: number): void;
  pollTransmit(): Transmit | undefined;
  pollEvent(): Event | undefined;
  /** The next absolute time at which the core wants `handleTimeout`, if any. */
  pollTimeout(): number | undefined;
}
