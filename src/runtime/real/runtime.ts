/**
 * The real runtime: the runtime contract over node:dgram, node:net, Node's
 * timers and node:crypto.
 *
 * - Clock: `performance.now()`, monotonic milliseconds from process start.
 * - Timers: one internal queue ordered by (deadline, insertion order) served
 *   by a single Node timer, so timers due at the same time fire in the order
 *   they were set (as in the simulator), a callback never runs before the
 *   clock has reached its deadline (Node may wake up to a millisecond early;
 *   it is re-armed then), and deadlines beyond Node's 2^31-1 ms limit work.
 *   The Node timer is ref'd while any timer is pending, so pending timers keep
 *   the process alive; cancelling the last one releases it.
 * - Random: node:crypto (`randomFillSync` through a small pool), or the
 *   simulator's seeded PRNG when `seed` is given.
 * - Datagrams: node:dgram, udp4 or udp6 according to the address, bound to
 *   127.0.0.1 unless another host is given. Sending on a closed socket is a
 *   no-op; send errors (for example EMSGSIZE) drop the datagram, as the
 *   network could have.
 * - Streams: node:net with Nagle disabled and allowHalfOpen=false (a side
 *   that reads the peer's end ends too, then closes).
 *
 * Received Buffers are handed on as plain Uint8Array views of the same
 * memory, without copying.
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect as netConnect, createServer, isIP, type Server, type Socket as TcpSocket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type {
  BindOptions,
  ByteStream,
  Clock,
  DatagramSocket,
  Endpoint,
  Random,
  Runtime,
  StreamListener,
  TimerHandle,
  Timers,
} from '../contract.js';
import { EventQueue } from '../sim/event-queue.js';
import { RandomBase, seededRandom, type Seed } from '../sim/prng.js';

export interface RealRuntimeOptions {
  /** Use the simulator's seeded PRNG with this seed instead of node:crypto (for reproducible tests). */
  seed?: Seed;
  /** Or any Random at all. Takes precedence over `seed`. */
  random?: Random;
  /** Address that bindDatagram and listenStream use when none is given. Default 127.0.0.1. */
  defaultHost?: string;
}

export type RealRuntime = Runtime;

/** Node's timers cannot wait longer than this. */
const MAX_NODE_DELAY = 0x7fff_ffff;

function view(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

function withCode(code: string, message: string): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

/** Cryptographically strong randomness. */
export class CryptoRandom extends RandomBase {
  private readonly pool = new Uint8Array(4096);
  private pos = 4096;

  u32(): number {
    if (this.pos + 4 > this.pool.length) {
      randomFillSync(this.pool);
      this.pos = 0;
    }
    const p = this.pool;
    const i = this.pos;
    this.pos = i + 4;
    return (p[i]! | (p[i + 1]! << 8) | (p[i + 2]! << 16) | (p[i + 3]! << 24)) >>> 0;
  }

  override bytes(n: number): Uint8Array {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`bytes(n) needs a non-negative integer, got ${n}`);
    return view(randomBytes(n));
  }
}

class RealTimers implements Timers {
  private readonly queue = new EventQueue<() => void>();
  private handle: ReturnType<typeof setTimeout> | undefined;
  private armedAt = Infinity;
  private readonly clock: Clock;

  constructor(clock: Clock) {
    this.clock = clock;
  }

  at(at: number, fn: () => void): TimerHandle {
    if (!Number.isFinite(at)) throw new RangeError(`timer deadline must be finite, got ${at}`);
    const entry = this.queue.push(at, fn);
    this.arm();
    return {
      cancel: () => {
        entry.cancel();
        if (this.queue.size === 0) this.disarm();
      },
    };
  }

  private disarm(): void {
    if (this.handle !== undefined) clearTimeout(this.handle);
    this.handle = undefined;
    this.armedAt = Infinity;
  }

  private arm(): void {
    const next = this.queue.peekTime();
    if (next === undefined) {
      this.disarm();
      return;
    }
    if (this.handle !== undefined && this.armedAt <= next) return;
    this.disarm();
    const delay = Math.min(MAX_NODE_DELAY, Math.max(0, Math.ceil(next - this.clock.now())));
    this.armedAt = next;
    this.handle = setTimeout(() => this.fire(), delay);
  }

  private fire(): void {
    this.handle = undefined;
    this.armedAt = Infinity;
    const now = this.clock.now();
    // Only timers set before this batch started run in it, so a callback that
    // keeps re-arming itself for "now" cannot starve I/O.
    const limit = this.queue.sequence;
    try {
      for (;;) {
        const top = this.queue.peek();
        if (top === undefined || top.time > now || top.seq >= limit) break;
        this.queue.pop();
        top.value();
      }
    } finally {
      this.arm();
    }
  }
}

function endpointOf(address: string | undefined, port: number | undefined): Endpoint {
  return { host: address ?? '', port: port ?? 0 };
}

class RealDatagramSocket implements DatagramSocket {
  readonly local: Endpoint;
  private closed = false;
  private readonly socket: UdpSocket;

  constructor(socket: UdpSocket) {
    this.socket = socket;
    const address = socket.address();
    this.local = { host: address.address, port: address.port };
    // Errors after binding (ICMP-related, EMSGSIZE, ...) only lose datagrams.
    socket.on('error', () => {});
  }

  send(to: Endpoint, data: Uint8Array): void {
    if (this.closed) return;
    this.socket.send(data, to.port, to.host, () => {});
  }

  onMessage(fn: (from: Endpoint, data: Uint8Array) => void): void {
    this.socket.on('message', (msg, rinfo) => {
      if (!this.closed) fn({ host: rinfo.address, port: rinfo.port }, view(msg));
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }
}

class RealListener implements StreamListener {
  readonly local: Endpoint;
  private closed = false;
  private readonly server: Server;

  constructor(server: Server) {
    this.server = server;
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('listener has no TCP address');
    this.local = { host: address.address, port: address.port };
    server.on('error', () => {});
  }

  /** Stops accepting; streams already accepted stay open. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
  }
}

/**
 * Outgoing connections read into one buffer shared by every such socket of the
 * runtime (node:net's `onread`): reads allocate nothing, where a fresh buffer
 * for each read made V8 collect its heap every ~20 MB received. Callbacks run
 * one at a time, each handing the bytes on before the next read, so one
 * buffer serves all; handlers that did not ask to borrow get a copy.
 */
const SHARED_READ_BYTES = 256 * 1024;

interface DataHandler {
  readonly fn: (data: Uint8Array) => void;
  readonly borrow: boolean;
}

class RealByteStream implements ByteStream {
  readonly local: Endpoint;
  readonly remote: Endpoint;
  private readonly socket: TcpSocket;
  private closed = false;
  private paused = false;
  private closeError: Error | undefined;
  private lastError: Error | undefined;
  private readonly closeHandlers: ((error?: Error) => void)[] = [];
  private readonly handlers: DataHandler[] = [];
  /** Read into the shared buffer (`onread`), not delivered as 'data' events. */
  private readonly sharedReads: boolean;
  /** Shared-buffer reads that came before the first handler: copies, delivered when it is added. */
  private early: Uint8Array[] = [];

  constructor(socket: TcpSocket, sharedReads = false) {
    this.socket = socket;
    this.sharedReads = sharedReads;
    socket.setNoDelay(true);
    this.local = endpointOf(socket.localAddress, socket.localPort);
    this.remote = endpointOf(socket.remoteAddress, socket.remotePort);
    socket.on('error', (error) => {
      this.lastError ??= error;
    });
    socket.on('close', () => {
      this.closed = true;
      this.closeError = this.lastError;
      const handlers = this.closeHandlers.splice(0);
      for (const fn of handlers) fn(this.closeError);
    });
    // Until a handler is added, received bytes wait in the socket.
    if (sharedReads) socket.pause();
  }

  /** node:net's onread callback: `n` bytes are in the shared `buffer`. False pauses the socket. */
  readInto(n: number, buffer: Uint8Array): boolean {
    const data = new Uint8Array(buffer.buffer, buffer.byteOffset, n);
    if (this.handlers.length === 0 || this.paused || this.early.length > 0) {
      // Node may read once more after pause() (a resume() earlier in the same tick restarts
      // reading on the next one): such bytes wait, copied, for resume().
      this.early.push(data.slice());
      return false;
    }
    this.deliver(data, true);
    return !this.paused;
  }

  /** Delivers what waited, then lets the socket read again (unless paused meanwhile). */
  private readonly flushEarly = (): void => {
    this.flushScheduled = false;
    while (this.early.length > 0 && !this.paused && this.handlers.length > 0 && !this.closedByUs) {
      this.deliver(this.early.shift()!, false);
    }
    if (!this.paused && this.early.length === 0) this.socket.resume();
  };

  private flushScheduled = false;
  private closedByUs = false;

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Not from inside resume() or onData(): their callers may be in the middle of handling data.
    queueMicrotask(this.flushEarly);
  }

  private deliver(data: Uint8Array, shared: boolean): void {
    let copy: Uint8Array | undefined;
    for (const h of this.handlers) {
      if (h.borrow || !shared) h.fn(data);
      else h.fn((copy ??= data.slice()));
    }
  }

  write(data: Uint8Array, onWritten?: () => void): boolean {
    const socket = this.socket;
    if (this.closed || socket.destroyed || socket.writableEnded) {
      onWritten?.();
      return false;
    }
    // Writes made in one tick leave together: the socket is corked until the
    // tick ends, then one writev sends them all (a seeder answering a batch of
    // requests makes one system call, not one per 16 KiB block, and its
    // header + block pairs need no copying into one buffer).
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(this.uncork);
    }
    // Node calls back once the bytes are with the kernel, or with an error when the socket is
    // destroyed first; either way the buffer is free again.
    return onWritten ? socket.write(data, () => onWritten()) : socket.write(data);
  }

  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  onData(fn: (data: Uint8Array) => void, options: { borrow?: boolean } = {}): void {
    const first = this.handlers.length === 0;
    this.handlers.push({ fn, borrow: options.borrow === true });
    if (!first) return;
    if (!this.sharedReads) {
      // Attaching the first 'data' listener switches the socket to flowing mode;
      // until then received bytes wait in the socket.
      this.socket.on('data', (chunk: Buffer) => this.deliver(view(chunk), false));
      if (this.paused) this.socket.pause(); // adding a 'data' listener resumes the socket
      return;
    }
    if (!this.paused) this.scheduleFlush();
  }

  onDrain(fn: () => void): void {
    this.socket.on('drain', fn);
  }

  pause(): void {
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    this.paused = false;
    if (this.handlers.length === 0) return;
    if (this.sharedReads) this.scheduleFlush();
    else this.socket.resume();
  }

  onClose(fn: (error?: Error) => void): void {
    if (this.closed) {
      const error = this.closeError;
      queueMicrotask(() => fn(error));
      return;
    }
    this.closeHandlers.push(fn);
  }

  end(): void {
    if (!this.closed) this.socket.end();
  }

  destroy(): void {
    this.closedByUs = true;
    this.early = [];
    if (!this.closed) this.socket.destroy();
  }
}

/** Creates the real runtime. See the module comment for the semantics. */
export function createRealRuntime(options: RealRuntimeOptions = {}): RealRuntime {
  const clock: Clock = { now: () => performance.now() };
  const timers = new RealTimers(clock);
  const random: Random = options.random ?? (options.seed !== undefined ? seededRandom(options.seed) : new CryptoRandom());
  const defaultHost = options.defaultHost ?? '127.0.0.1';
  const sharedReadBuffer = Buffer.allocUnsafeSlow(SHARED_READ_BYTES);

  function bindDatagram(bind: BindOptions = {}): Promise<DatagramSocket> {
    const host = bind.host ?? defaultHost;
    return new Promise((resolve, reject) => {
      const family = isIP(host);
      if (family === 0) {
        reject(withCode('EINVAL', `not an IP address: ${host}`));
        return;
      }
      const socket = createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 });
      const onError = (error: Error): void => {
        socket.close();
        reject(error);
      };
      socket.once('error', onError);
      socket.bind({ address: host, port: bind.port ?? 0, exclusive: true }, () => {
        socket.off('error', onError);
        resolve(new RealDatagramSocket(socket));
      });
    });
  }

  function listenStream(bind: BindOptions, onConnection: (stream: ByteStream) => void): Promise<StreamListener> {
    const host = bind.host ?? defaultHost;
    return new Promise((resolve, reject) => {
      if (isIP(host) === 0) {
        reject(withCode('EINVAL', `not an IP address: ${host}`));
        return;
      }
      const server = createServer({ noDelay: true, allowHalfOpen: false }, (socket) => {
        onConnection(new RealByteStream(socket));
      });
      const onError = (error: Error): void => {
        server.close();
        reject(error);
      };
      server.once('error', onError);
      server.listen({ host, port: bind.port ?? 0, exclusive: true, ipv6Only: isIP(host) === 6 }, () => {
        server.off('error', onError);
        resolve(new RealListener(server));
      });
    });
  }

  function connectStream(to: Endpoint, connectOptions: { timeoutMs?: number } = {}): Promise<ByteStream> {
    return new Promise((resolve, reject) => {
      if (isIP(to.host) === 0) {
        reject(withCode('EINVAL', `not an IP address: ${to.host}`));
        return;
      }
      let stream: RealByteStream | undefined;
      const socket = netConnect({
        host: to.host,
        port: to.port,
        noDelay: true,
        allowHalfOpen: false,
        onread: { buffer: sharedReadBuffer, callback: (n, buf) => (stream ? stream.readInto(n, buf) : false) },
      });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onError = (error: Error): void => {
        if (timer !== undefined) clearTimeout(timer);
        socket.destroy();
        reject(error);
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        if (timer !== undefined) clearTimeout(timer);
        socket.off('error', onError);
        stream = new RealByteStream(socket, true);
        resolve(stream);
      });
      const timeoutMs = connectOptions.timeoutMs;
      if (timeoutMs !== undefined) {
        timer = setTimeout(
          () => {
            socket.off('error', onError);
            socket.on('error', () => {});
            socket.destroy();
            reject(withCode('ETIMEDOUT', `connect to ${to.host}:${to.port} timed out after ${timeoutMs} ms`));
          },
          Math.min(MAX_NODE_DELAY, Math.max(0, timeoutMs)),
        );
      }
    });
  }

  return { clock, timers, random, bindDatagram, listenStream, connectStream };
}
