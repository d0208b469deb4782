/**
 * A simulated network of hosts over a SimEngine.
 *
 * Each host has a purely virtual IP address (10.0.0.1, 10.0.0.2, ... by
 * default; nothing here ever touches a real socket) and exposes a Runtime
 * (`host.runtime`) whose clock and timers are the engine's and whose random
 * source is the host's own seeded stream, so driver code written against the
 * runtime contract runs on it unchanged.
 *
 * Datagrams: a send is delivered to the destination socket after the link's
 * latency, unless it is lost (per-link loss probability, drawn from the
 * network's seeded PRNG) or nobody has that port bound when it arrives, in
 * which cases it silently disappears. The bytes are copied at send time,
 * unless the socket was bound with `noCopy` (see SimBindOptions).
 *
 * Streams: reliable, ordered byte streams, with retransmission abstracted
 * away. A connect sends a SYN that takes one latency; if a listener is there
 * the connection is accepted at once on the server side and the client's
 * promise resolves when the SYN-ACK is back, one more latency later;
 * otherwise the client is refused (ECONNREFUSED) after that round trip. A
 * SYN to an address with no live host gets no answer (only the optional
 * connect timeout ends the wait). Written bytes arrive after the latency, in
 * order, never lost. `end` and `destroy` reach the other side after the
 * latency like data; a side that gets the other's FIN ends its own side too
 * and closes (Node's allowHalfOpen=false), so both sides' `onClose` run. Data
 * that reaches an already closed side is answered with a reset, which closes
 * the sender with ECONNRESET.
 *
 * `write` returns false once the bytes written but not yet consumed by the
 * reader (handed to its `onData` handlers) reach `streamHighWaterMark`;
 * `onDrain` runs when they have all been consumed. Like a TCP window, this
 * bounds a stream to one high-water mark per one-way latency, and a reader
 * that is paused (or has no data handler yet) pushes back on the writer.
 *
 * Bandwidth: a host may have an upload and a download capacity (bytes/s,
 * unlimited by default). A stream direction between hosts of which one has a
 * finite capacity is a flow of the network's FlowScheduler (bandwidth.ts):
 * its bytes are transmitted at a max-min fair share of the sender's upload
 * and the receiver's download, recomputed when flows start and end, and each
 * write arrives one latency after its last byte is transmitted. Datagrams are
 * small and are not rate limited; they take the latency only.
 *
 * Reachability: a host added with `nat: true` accepts no unsolicited inbound
 * traffic. A SYN to it is dropped (the connect gets no answer), and a
 * datagram reaches one of its sockets only from an address that socket has
 * sent to within `natMappingMs` (an address-restricted cone NAT).
 *
 * Latency models are in latency.ts; hosts carry placement hints (`region`,
 * `site`) for them.
 *
 * Everything is deterministic: the same seed and the same calls give the same
 * event order and the same outputs.
 */
import type {
  BindOptions,
  ByteStream,
  Clock,
  DatagramSocket,
  Endpoint,
  Runtime,
  StreamListener,
  TimerHandle,
  Timers,
} from '../contract.js';
import { SimEngine } from './engine.js';
import { Flow, FlowScheduler } from './bandwidth.js';
import { seededRandom, type Seed, type SeededRandom } from './prng.js';

/** A per-link quantity: (sender, receiver) -> value. */
export type LinkFunction = (from: SimHost, to: SimHost) => number;

export interface SimNetworkOptions {
  /** The engine to run on; a new one by default. */
  engine?: SimEngine;
  /** Seed of the network's PRNG (loss draws) and of every host's stream. Default 0. */
  seed?: Seed;
  /** One-way latency in ms: a constant (default 10) or a function of the link. */
  latencyMs?: number | LinkFunction;
  /** Probability in [0, 1] that a datagram is lost: a constant (default 0) or a function of the link. */
  loss?: number | LinkFunction;
  /** Bytes written but not yet consumed by the reader at which `write` starts returning false. Default 64 KiB. */
  streamHighWaterMark?: number;
  /** Larger datagrams are dropped at the sender. Default 65507 (the IPv4 UDP limit). */
  maxDatagramSize?: number;
  /** How long a NATed socket keeps accepting datagrams from an address it sent to. Default 120 000 ms. */
  natMappingMs?: number;
  /** Over a rate-limited link, writes are carried in segments of at most this many bytes. Default 16 KiB. */
  segmentBytes?: number;
  /** Writes up to this size on an idle flow skip the fair share (see FlowSchedulerOptions). Default 0. */
  smallMessageBytes?: number;
}

/** Simulator-only options of `SimHost.bind`. */
export interface SimBindOptions {
  /**
   * Hand the bytes this socket sends to their receiver as they are, without
   * the defensive copy. Only for senders that never modify a buffer after
   * sending it (the contract asks that of everyone; DhtCore encodes every
   * message into a fresh buffer) talking to receivers that never modify what
   * they receive: it saves an allocation per datagram.
   */
  noCopy?: boolean;
}

export interface AddHostOptions {
  /** The host's address (any IPv4 or IPv6 literal); the next free 10.0.x.y by default. */
  address?: string;
  /** A label for traces; the address by default. */
  name?: string;
  /** Upload capacity in bytes per second (default Infinity). */
  uploadBps?: number;
  /** Download capacity in bytes per second (default Infinity). */
  downloadBps?: number;
  /** Behind a NAT: no unsolicited inbound connections or datagrams. */
  nat?: boolean;
  /** Placement hint for latency models: a region (geographic) or site name (matrix). */
  region?: string;
  /** Placement hint for the matrix model: a site number. */
  site?: number;
}

export interface SimNetworkStats {
  datagramsSent: number;
  datagramsDelivered: number;
  /** Dropped by the loss model. */
  datagramsLost: number;
  /** Addressed to no host, or to a host that was down when they arrived. */
  datagramsUnroutable: number;
  /** Arrived at a port nobody had bound. */
  datagramsNoListener: number;
  /** Unsolicited, dropped by the receiver's NAT. */
  datagramsFiltered: number;
  /** Bigger than maxDatagramSize. */
  datagramsOversize: number;
  streamsOpened: number;
  connectionsRefused: number;
  /** SYNs dropped by the receiver's NAT. */
  connectionsFiltered: number;
  /** Stream bytes that reached the receiving host (consumed or waiting). */
  streamBytesDelivered: number;
}

/** An error with a Node-style `code` (ECONNREFUSED, ETIMEDOUT, EADDRINUSE, ...). */
export class SimNetError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(`${code}: ${message}`);
    this.name = 'SimNetError';
    this.code = code;
  }
}

const EPHEMERAL_FIRST = 49152;
const EPHEMERAL_COUNT = 65536 - EPHEMERAL_FIRST;

function checkProbability(p: number): number {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`loss probability must be in [0, 1], got ${p}`);
  return p;
}

function checkCapacity(name: string, bps: number | undefined): number {
  if (bps === undefined) return Infinity;
  if (!(bps > 0)) throw new RangeError(`${name} must be > 0 bytes/s (or Infinity), got ${bps}`);
  return bps;
}

function checkLatency(ms: number): number {
  if (!(ms >= 0 && ms < Infinity)) throw new RangeError(`latency must be a finite number >= 0, got ${ms}`);
  return ms;
}

export class SimNetwork {
  readonly engine: SimEngine;
  /** The network's own stream (loss draws). Hosts get forks of the root seed, not of this. */
  readonly random: SeededRandom;
  readonly stats: SimNetworkStats = {
    datagramsSent: 0,
    datagramsDelivered: 0,
    datagramsLost: 0,
    datagramsUnroutable: 0,
    datagramsNoListener: 0,
    datagramsFiltered: 0,
    datagramsOversize: 0,
    streamsOpened: 0,
    connectionsRefused: 0,
    connectionsFiltered: 0,
    streamBytesDelivered: 0,
  };
  /** @internal */
  readonly streamHighWaterMark: number;
  /** @internal */
  readonly maxDatagramSize: number;
  /** @internal */
  readonly natMappingMs: number;
  /** @internal */
  readonly segmentBytes: number;
  /** Shares host capacities among stream flows. */
  readonly flows: FlowScheduler;

  private readonly root: SeededRandom;
  private readonly latencyFn: LinkFunction;
  private readonly lossFn: LinkFunction;
  private readonly byAddress = new Map<string, SimHost>();
  private readonly spareDeliveries: Delivery[] = [];
  private readonly incarnations = new Map<string, number>();
  private nextAuto = 1;
  private nextUid = 1;

  constructor(options: SimNetworkOptions = {}) {
    this.engine = options.engine ?? new SimEngine();
    this.root = seededRandom(options.seed ?? 0);
    this.random = this.root.fork('network');
    const latency = options.latencyMs ?? 10;
    if (typeof latency === 'number') {
      checkLatency(latency);
      this.latencyFn = () => latency;
    } else {
      this.latencyFn = latency;
    }
    const loss = options.loss ?? 0;
    if (typeof loss === 'number') {
      checkProbability(loss);
      this.lossFn = () => loss;
    } else {
      this.lossFn = loss;
    }
    this.streamHighWaterMark = options.streamHighWaterMark ?? 64 * 1024;
    if (!(this.streamHighWaterMark > 0)) throw new RangeError('streamHighWaterMark must be > 0');
    this.maxDatagramSize = options.maxDatagramSize ?? 65507;
    this.natMappingMs = options.natMappingMs ?? 120_000;
    this.segmentBytes = options.segmentBytes ?? 16 * 1024;
    if (!(this.segmentBytes >= 1)) throw new RangeError('segmentBytes must be >= 1');
    checkLatency(this.natMappingMs);
    this.flows = new FlowScheduler(this.engine, { smallMessageBytes: options.smallMessageBytes ?? 0 });
  }

  /** The current simulated time. */
  get now(): number {
    return this.engine.now;
  }

  /** The live hosts, in the order they were added. */
  get hosts(): SimHost[] {
    return [...this.byAddress.values()];
  }

  /** Adds a host. Its random stream is forked from the root seed by its address (and incarnation). */
  addHost(options: AddHostOptions = {}): SimHost {
    const address = options.address ?? this.nextAutoAddress();
    if (address.length === 0) throw new RangeError('host address must not be empty');
    if (this.byAddress.has(address)) throw new SimNetError('EADDRINUSE', `a host with address ${address} exists`);
    const incarnation = (this.incarnations.get(address) ?? 0) + 1;
    this.incarnations.set(address, incarnation);
    const label = incarnation === 1 ? `host:${address}` : `host:${address}#${incarnation}`;
    const host = new SimHost(this, address, options.name ?? address, this.root.fork(label), this.nextUid++, options);
    this.byAddress.set(address, host);
    return host;
  }

  /** The live host with this address. */
  host(address: string): SimHost | undefined {
    return this.byAddress.get(address);
  }

  /** Crashes the host (see `SimHost.crash`) and frees its address. */
  removeHost(host: SimHost): void {
    host.crash();
    if (this.byAddress.get(host.address) === host) this.byAddress.delete(host.address);
  }

  /** The one-way latency of a link, in ms. */
  latency(from: SimHost, to: SimHost): number {
    return checkLatency(this.latencyFn(from, to));
  }

  /** The loss probability of a link. */
  lossProbability(from: SimHost, to: SimHost): number {
    return checkProbability(this.lossFn(from, to));
  }

  /**
   * How long `bytes` take from `from` to `to`. Today just the latency; the
   * place where a bandwidth model (serialisation delay, queues) will go.
   */
  transitTime(from: SimHost, to: SimHost, _bytes: number): number {
    return this.latency(from, to);
  }

  /** @internal The event that hands a datagram to `dest`; its record is reused afterwards, so a datagram allocates none. */
  delivery(dest: SimHost, from: Endpoint, port: number, data: Uint8Array): () => void {
    const d = this.spareDeliveries.pop() ?? new Delivery(this.spareDeliveries);
    d.dest = dest;
    d.from = from;
    d.port = port;
    d.data = data;
    return d.run;
  }

  /** @internal Decides whether a datagram on this link is lost. */
  drawLoss(from: SimHost, to: SimHost): boolean {
    const p = this.lossProbability(from, to);
    if (p <= 0) return false;
    if (p >= 1) return true;
    return this.random.float() < p;
  }

  private nextAutoAddress(): string {
    for (;;) {
      const n = this.nextAuto++;
      const low = ((n - 1) % 254) + 1;
      const rest = Math.floor((n - 1) / 254);
      const mid = rest % 256;
      const high = Math.floor(rest / 256);
      if (high > 255) throw new RangeError('out of automatic host addresses');
      const address = `10.${high}.${mid}.${low}`;
      if (!this.byAddress.has(address) && !this.incarnations.has(address)) return address;
    }
  }
}

/** Spare delivery records kept for reuse at most (more in flight at once are simply not kept). */
const MAX_SPARE_DELIVERIES = 1 << 16;

/** A datagram on its way: the event's state, with the event (`run`) made once per record. */
class Delivery {
  dest: SimHost | undefined = undefined;
  from: Endpoint | undefined = undefined;
  port = 0;
  data: Uint8Array | undefined = undefined;
  readonly run: () => void;

  constructor(spare: Delivery[]) {
    this.run = (): void => {
      const dest = this.dest!;
      const from = this.from!;
      const port = this.port;
      const data = this.data!;
      this.dest = undefined;
      this.from = undefined;
      this.data = undefined;
      if (spare.length < MAX_SPARE_DELIVERIES) spare.push(this);
      dest.deliverDatagram(from, port, data);
    };
  }
}

type PortOwner = SimDatagramSocket | SimListener | SimStreamEnd | 'connecting';

/** A simulated machine. */
export class SimHost {
  readonly network: SimNetwork;
  readonly address: string;
  readonly name: string;
  /** This host's own random stream (also `runtime.random`). */
  readonly random: SeededRandom;
  /** The runtime for code running on this host. */
  readonly runtime: Runtime;
  /** A number unique in the network (never reused, unlike addresses). */
  readonly uid: number;
  /** Capacities in bytes per second (Infinity: unlimited). */
  readonly uploadBps: number;
  readonly downloadBps: number;
  /** Behind a NAT: no unsolicited inbound traffic. */
  readonly nat: boolean;
  /** Placement hints for latency models. */
  readonly region: string | undefined;
  readonly site: number | undefined;

  private up = true;
  /** @internal */
  readonly udpPorts = new Map<number, SimDatagramSocket>();
  /** The socket bound last: most hosts have one, and a delivery to it skips the port map. */
  private lastBound: SimDatagramSocket | undefined = undefined;
  /** @internal Listeners and client-side stream ports. */
  readonly tcpPorts = new Map<number, PortOwner>();
  /** @internal Open stream ends on this host. */
  readonly streams = new Set<SimStreamEnd>();
  private udpCursor = 0;
  private tcpCursor = 0;

  constructor(network: SimNetwork, address: string, name: string, random: SeededRandom, uid: number, options: AddHostOptions = {}) {
    this.network = network;
    this.address = address;
    this.name = name;
    this.random = random;
    this.uid = uid;
    this.uploadBps = checkCapacity('uploadBps', options.uploadBps);
    this.downloadBps = checkCapacity('downloadBps', options.downloadBps);
    this.nat = options.nat ?? false;
    this.region = options.region;
    this.site = options.site;
    this.runtime = new SimRuntime(this);
  }

  /**
   * Binds a datagram socket, synchronously (the runtime's `bindDatagram` is
   * this behind a promise). Throws SimNetError on a taken port or a down host.
   */
  bind(options: BindOptions = {}, sim: SimBindOptions = {}): DatagramSocket {
    this.checkBindHost(options.host);
    const port = this.allocatePort('udp', options.port);
    const socket = new SimDatagramSocket(this, { host: this.address, port }, sim.noCopy ?? false);
    this.udpPorts.set(port, socket);
    this.lastBound = socket;
    return socket;
  }

  /**
   * Listens for streams, synchronously (the runtime's `listenStream` is this
   * behind a promise). Throws SimNetError on a taken port or a down host.
   */
  listen(options: BindOptions, onConnection: (stream: ByteStream) => void): StreamListener {
    this.checkBindHost(options.host);
    const port = this.allocatePort('tcp', options.port);
    const listener = new SimListener(this, { host: this.address, port }, onConnection);
    this.tcpPorts.set(port, listener);
    return listener;
  }

  /**
   * Connects a stream with a callback instead of a promise, so that code run
   * by the synchronous `engine.run` sees the result at the simulated time it
   * happens (a promise continuation would wait for the run to return).
   * `done` is never called once this host is down.
   */
  connect(to: Endpoint, options: { timeoutMs?: number }, done: (error: Error | undefined, stream?: ByteStream) => void): void {
    connectStream(this, to, options, done);
  }

  get alive(): boolean {
    return this.up;
  }

  /**
   * Crashes the host: its sockets and listeners vanish, its timers never fire,
   * traffic to it is dropped, and the peers of its streams get a reset after
   * the link latency. No callback of the host's runs any more.
   */
  crash(): void {
    if (!this.up) return;
    this.up = false;
    for (const socket of this.udpPorts.values()) socket.closed = true;
    this.udpPorts.clear();
    for (const owner of this.tcpPorts.values()) if (owner instanceof SimListener) owner.closed = true;
    this.tcpPorts.clear();
    const streams = [...this.streams];
    this.streams.clear();
    for (const stream of streams) stream.crash();
  }

  /** @internal */
  allocatePort(kind: 'udp' | 'tcp', requested: number | undefined): number {
    const ports: Map<number, unknown> = kind === 'udp' ? this.udpPorts : this.tcpPorts;
    if (requested !== undefined && requested !== 0) {
      if (!Number.isInteger(requested) || requested < 1 || requested > 65535) {
        throw new RangeError(`port must be an integer in [0, 65535], got ${requested}`);
      }
      if (ports.has(requested)) throw new SimNetError('EADDRINUSE', `${this.address}:${requested} is in use`);
      return requested;
    }
    let cursor = kind === 'udp' ? this.udpCursor : this.tcpCursor;
    for (let k = 0; k < EPHEMERAL_COUNT; k++) {
      const port = EPHEMERAL_FIRST + cursor;
      cursor = (cursor + 1) % EPHEMERAL_COUNT;
      if (!ports.has(port)) {
        if (kind === 'udp') this.udpCursor = cursor;
        else this.tcpCursor = cursor;
        return port;
      }
    }
    throw new SimNetError('EADDRINUSE', `no free ${kind} port on ${this.address}`);
  }

  /** @internal */
  checkBindHost(host: string | undefined): void {
    if (host !== undefined && host !== this.address && host !== '0.0.0.0' && host !== '::') {
      throw new SimNetError('EADDRNOTAVAIL', `${host} is not an address of host ${this.address}`);
    }
    if (!this.up) throw new SimNetError('EHOSTDOWN', `host ${this.address} is down`);
  }

  /** @internal A datagram reaches this host. */
  deliverDatagram(from: Endpoint, port: number, data: Uint8Array): void {
    const stats = this.network.stats;
    if (!this.up) {
      stats.datagramsUnroutable++;
      return;
    }
    // An open socket is the one registered for its port (a port cannot be bound twice).
    const last = this.lastBound;
    const socket = last !== undefined && last.port === port && !last.closed ? last : this.udpPorts.get(port);
    if (socket === undefined || socket.closed) {
      stats.datagramsNoListener++;
      return;
    }
    if (this.nat && !socket.accepts(from.host)) {
      stats.datagramsFiltered++;
      return;
    }
    stats.datagramsDelivered++;
    socket.receive(from, data);
  }
}

class SimRuntime implements Runtime {
  readonly clock: Clock;
  readonly timers: Timers;
  readonly random: SeededRandom;
  private readonly host: SimHost;

  constructor(host: SimHost) {
    this.host = host;
    const engine = host.network.engine;
    this.clock = engine.clock;
    this.random = host.random;
    // A crashed host's timers never fire. A driver arms the same callback again and again, so its guarded
    // wrapper is made once and reused.
    let lastFn: (() => void) | undefined;
    let lastGuarded: (() => void) | undefined;
    this.timers = {
      at: (at: number, fn: () => void): TimerHandle => {
        if (fn !== lastFn) {
          lastFn = fn;
          lastGuarded = () => {
            if (host.alive) fn();
          };
        }
        return engine.schedule(at, lastGuarded!);
      },
    };
  }

  bindDatagram(options: BindOptions = {}): Promise<DatagramSocket> {
    try {
      return Promise.resolve(this.host.bind(options));
    } catch (error) {
      return Promise.reject(error as Error);
    }
  }

  listenStream(options: BindOptions, onConnection: (stream: ByteStream) => void): Promise<StreamListener> {
    try {
      return Promise.resolve(this.host.listen(options, onConnection));
    } catch (error) {
      return Promise.reject(error as Error);
    }
  }

  connectStream(to: Endpoint, options: { timeoutMs?: number } = {}): Promise<ByteStream> {
    return new Promise<ByteStream>((resolve, reject) => {
      connectStream(this.host, to, options, (error, stream) => (error === undefined ? resolve(stream!) : reject(error)));
    });
  }
}

/** The stream connect of `src` (see SimHost.connect). */
function connectStream(src: SimHost, to: Endpoint, options: { timeoutMs?: number }, done: (error: Error | undefined, stream?: ByteStream) => void): void {
  const network = src.network;
  const engine = network.engine;
  let port: number;
  try {
    if (!src.alive) throw new SimNetError('EHOSTDOWN', `host ${src.address} is down`);
    port = src.allocatePort('tcp', undefined);
  } catch (error) {
    const e = error as Error;
    engine.postAfter(0, () => done(e));
    return;
  }
  src.tcpPorts.set(port, 'connecting');
  const local: Endpoint = { host: src.address, port };
  let settled = false;
  let timer: TimerHandle | undefined;
  const fail = (error: Error): void => {
    settled = true;
    timer?.cancel();
    if (src.tcpPorts.get(port) === 'connecting') src.tcpPorts.delete(port);
    if (src.alive) done(error);
  };
  if (options.timeoutMs !== undefined) {
    timer = engine.after(checkLatency(options.timeoutMs), () => {
      if (!settled) fail(new SimNetError('ETIMEDOUT', `connect to ${to.host}:${to.port} timed out`));
    });
  }
  const dest = network.host(to.host);
  if (dest === undefined) return; // no such host: the SYN goes nowhere
  engine.postAfter(network.transitTime(src, dest, 0), () => {
    // The SYN arrives at `dest`.
    if (!dest.alive || settled) return;
    if (dest.nat) {
      network.stats.connectionsFiltered++;
      return; // unsolicited: the NAT drops it
    }
    const listener = dest.tcpPorts.get(to.port);
    if (!(listener instanceof SimListener) || listener.closed) {
      network.stats.connectionsRefused++;
      engine.postAfter(network.transitTime(dest, src, 0), () => {
        if (!settled) fail(new SimNetError('ECONNREFUSED', `connection to ${to.host}:${to.port} refused`));
      });
      return;
    }
    const server = new SimStreamEnd(dest, { host: dest.address, port: to.port }, local, false);
    const client = new SimStreamEnd(src, local, server.local, true);
    server.peer = client;
    client.peer = server;
    src.tcpPorts.set(port, client);
    src.streams.add(client);
    dest.streams.add(server);
    network.stats.streamsOpened++;
    engine.postAfter(network.transitTime(dest, src, 0), () => {
      // The SYN-ACK arrives back at `src`.
      if (!src.alive || client.closed) return;
      if (settled) {
        client.abort(); // we gave up meanwhile
        return;
      }
      settled = true;
      timer?.cancel();
      done(undefined, client);
    });
    listener.onConnection(server);
  });
}

/** NAT mappings kept per socket before expired ones are swept (and, if still over, the oldest dropped). */
const MAX_PINHOLES = 4096;

class SimDatagramSocket implements DatagramSocket {
  readonly local: Endpoint;
  /** @internal */
  closed = false;
  private readonly host: SimHost;
  /** Behind a NAT: remote address -> when the mapping expires. In refresh order. */
  private pinholes: Map<string, number> | undefined;
  private readonly handlers: ((from: Endpoint, data: Uint8Array) => void)[] = [];
  /** The handler when there is exactly one (the usual case), called without walking the list. */
  private soleHandler: ((from: Endpoint, data: Uint8Array) => void) | undefined = undefined;
  /** @internal `local.port`, read on every delivery. */
  readonly port: number;

  constructor(
    host: SimHost,
    local: Endpoint,
    private readonly noCopy: boolean,
  ) {
    this.host = host;
    this.local = local;
    this.port = local.port;
  }

  send(to: Endpoint, data: Uint8Array): void {
    const host = this.host;
    if (this.closed || !host.alive) return;
    const network = host.network;
    const stats = network.stats;
    stats.datagramsSent++;
    if (data.length > network.maxDatagramSize) {
      stats.datagramsOversize++;
      return;
    }
    if (host.nat) this.openPinhole(to.host);
    const dest = network.host(to.host);
    if (dest === undefined) {
      stats.datagramsUnroutable++;
      return;
    }
    if (network.drawLoss(host, dest)) {
      stats.datagramsLost++;
      return;
    }
    const copy = this.noCopy ? data : new Uint8Array(data);
    network.engine.postAfter(network.transitTime(host, dest, copy.length), network.delivery(dest, this.local, to.port, copy));
  }

  onMessage(fn: (from: Endpoint, data: Uint8Array) => void): void {
    this.handlers.push(fn);
    this.soleHandler = this.handlers.length === 1 ? fn : undefined;
  }

  /** @internal Whether the NAT lets a datagram from `remote` through to this socket. */
  accepts(remote: string): boolean {
    const expires = this.pinholes?.get(remote);
    return expires !== undefined && expires >= this.host.network.now;
  }

  private openPinhole(remote: string): void {
    const network = this.host.network;
    const now = network.now;
    this.pinholes ??= new Map();
    const pinholes = this.pinholes;
    pinholes.delete(remote); // re-insert: the map stays in refresh order
    pinholes.set(remote, now + network.natMappingMs);
    if (pinholes.size > MAX_PINHOLES) {
      for (const [k, t] of pinholes) if (t < now) pinholes.delete(k);
      for (const k of pinholes.keys()) {
        if (pinholes.size <= MAX_PINHOLES) break;
        pinholes.delete(k);
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.host.udpPorts.get(this.local.port) === this) this.host.udpPorts.delete(this.local.port);
  }

  /** @internal */
  receive(from: Endpoint, data: Uint8Array): void {
    if (this.soleHandler !== undefined) {
      if (!this.closed) this.soleHandler(from, data);
      return;
    }
    for (const fn of this.handlers) {
      if (this.closed) return;
      fn(from, data);
    }
  }
}

class SimListener implements StreamListener {
  readonly local: Endpoint;
  /** @internal */
  closed = false;
  /** @internal */
  readonly onConnection: (stream: ByteStream) => void;
  private readonly host: SimHost;

  constructor(host: SimHost, local: Endpoint, onConnection: (stream: ByteStream) => void) {
    this.host = host;
    this.local = local;
    this.onConnection = onConnection;
  }

  /** Stops accepting; streams already accepted stay open. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.host.tcpPorts.get(this.local.port) === this) this.host.tcpPorts.delete(this.local.port);
  }
}

/** One side of a simulated stream. */
class SimStreamEnd implements ByteStream {
  readonly local: Endpoint;
  readonly remote: Endpoint;
  /** @internal */
  peer: SimStreamEnd | undefined;
  /** @internal */
  closed = false;

  private readonly host: SimHost;
  private readonly ownsPort: boolean;
  private readonly dataHandlers: ((data: Uint8Array) => void)[] = [];
  private readonly drainHandlers: (() => void)[] = [];
  private readonly closeHandlers: ((error?: Error) => void)[] = [];
  private closeError: Error | undefined;
  /** Received chunks waiting for a data handler (or for a scheduled flush). */
  private inbox: Uint8Array[] = [];
  private flushScheduled = false;
  private paused = false;
  private finReceived = false;
  private readEnded = false;
  private writeEnded = false;
  /** Bytes written by this side and not yet consumed by the peer's reader. */
  private outstanding = 0;
  private needDrain = false;
  /** Arrival time of the last segment sent by this side, to keep the direction ordered. */
  private lastArrival = -Infinity;
  /** This direction's flow, when bandwidth applies to it. */
  private flow: Flow | undefined;

  constructor(host: SimHost, local: Endpoint, remote: Endpoint, ownsPort: boolean) {
    this.host = host;
    this.local = local;
    this.remote = remote;
    this.ownsPort = ownsPort;
  }

  write(data: Uint8Array, onWritten?: () => void): boolean {
    if (this.closed || this.writeEnded || !this.host.alive) {
      onWritten?.();
      return false;
    }
    const hwm = this.host.network.streamHighWaterMark;
    if (data.length === 0) {
      onWritten?.();
      return this.outstanding < hwm;
    }
    const chunk = new Uint8Array(data);
    onWritten?.(); // copied: the caller's buffer is free
    this.outstanding += chunk.length;
    const seg = this.host.network.segmentBytes;
    if (chunk.length <= seg || !this.rateLimited()) {
      this.sendSegment(chunk.length, (peer) => peer.receiveData(this, chunk));
    } else {
      // Through a rate-limited link a big write arrives piece by piece, as TCP segments would.
      for (let at = 0; at < chunk.length; at += seg) {
        const part = chunk.subarray(at, Math.min(at + seg, chunk.length));
        this.sendSegment(part.length, (peer) => peer.receiveData(this, part));
      }
    }
    if (this.outstanding >= hwm) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  onData(fn: (data: Uint8Array) => void): void {
    this.dataHandlers.push(fn);
    if (this.inbox.length > 0) this.scheduleFlush();
  }

  onDrain(fn: () => void): void {
    this.drainHandlers.push(fn);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.inbox.length > 0 && this.dataHandlers.length > 0) this.scheduleFlush();
  }

  onClose(fn: (error?: Error) => void): void {
    if (this.closed) {
      const error = this.closeError;
      const host = this.host;
      host.network.engine.postAfter(0, () => {
        if (host.alive) fn(error);
      });
      return;
    }
    this.closeHandlers.push(fn);
  }

  end(): void {
    if (this.closed || this.writeEnded) return;
    this.writeEnded = true;
    this.sendSegment(0, (peer) => peer.receiveFin());
    if (this.readEnded) this.closeLocal(undefined);
  }

  destroy(): void {
    if (this.closed) return;
    this.dropFlow();
    this.discardInbox();
    if (!this.writeEnded) {
      this.writeEnded = true;
      this.sendSegment(0, (peer) => peer.receiveFin());
    }
    this.closeLocal(undefined);
  }

  /** @internal Closes without callbacks and without FIN, resetting the peer (a timed-out connect). */
  abort(): void {
    if (this.closed) return;
    this.dropFlow();
    this.sendSegment(0, (peer) => peer.receiveReset());
    this.closed = true;
    this.release();
  }

  /** @internal The host crashed: vanish silently and reset the peer. */
  crash(): void {
    if (this.closed) return;
    this.closed = true;
    this.dropFlow();
    this.discardInbox();
    const peer = this.peer;
    if (peer !== undefined && !peer.closed) {
      const network = this.host.network;
      network.engine.postAfter(network.transitTime(this.host, peer.host, 0), () => peer.receiveReset());
    }
  }

  private sendSegment(bytes: number, arrive: (peer: SimStreamEnd) => void): void {
    const peer = this.peer;
    if (peer === undefined) return;
    const network = this.host.network;
    const engine = network.engine;
    const propagate = (): void => {
      const at = Math.max(engine.now + network.transitTime(this.host, peer.host, bytes), this.lastArrival);
      this.lastArrival = at;
      engine.post(at, () => arrive(peer));
    };
    if (this.flow === undefined && this.rateLimited()) {
      this.flow = new Flow(this.host, peer.host);
    }
    if (this.flow === undefined) propagate();
    else network.flows.send(this.flow, bytes, propagate);
  }

  /** Whether bandwidth applies to this direction. */
  private rateLimited(): boolean {
    const peer = this.peer;
    return peer !== undefined && (this.host.uploadBps < Infinity || peer.host.downloadBps < Infinity);
  }

  /** Discards bytes not yet transmitted. */
  private dropFlow(): void {
    if (this.flow !== undefined) this.host.network.flows.clear(this.flow);
  }

  private receiveData(sender: SimStreamEnd, chunk: Uint8Array): void {
    if (this.closed || !this.host.alive) {
      sender.consumed(chunk.length);
      if (this.host.alive && !sender.closed) this.sendSegment(0, (peer) => peer.receiveReset());
      return;
    }
    this.host.network.stats.streamBytesDelivered += chunk.length;
    if (this.dataHandlers.length > 0 && this.inbox.length === 0 && !this.paused) {
      this.emitData(chunk);
    } else {
      this.inbox.push(chunk);
    }
  }

  private receiveFin(): void {
    if (this.closed || !this.host.alive) return;
    this.finReceived = true;
    if (this.inbox.length === 0) this.finishRead();
  }

  private receiveReset(): void {
    if (this.closed || !this.host.alive) return;
    this.dropFlow();
    this.discardInbox();
    this.writeEnded = true;
    const error = new SimNetError('ECONNRESET', `connection ${this.local.host}:${this.local.port} reset by peer`);
    this.closeLocal(error);
  }

  /** The writer's bookkeeping when `bytes` of its data have been consumed (or dropped) by the reader. */
  private consumed(bytes: number): void {
    this.outstanding -= bytes;
    if (this.needDrain && this.outstanding === 0 && !this.closed && this.host.alive) {
      this.needDrain = false;
      for (const fn of this.drainHandlers) {
        if (this.closed) return;
        fn();
      }
    }
  }

  private finishRead(): void {
    if (this.readEnded) return;
    this.readEnded = true;
    if (!this.writeEnded) {
      // allowHalfOpen=false: the peer finished, so finish too.
      this.writeEnded = true;
      this.sendSegment(0, (peer) => peer.receiveFin());
    }
    this.closeLocal(undefined);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.host.network.engine.postAfter(0, () => {
      this.flushScheduled = false;
      if (this.closed || !this.host.alive) return;
      while (this.inbox.length > 0 && this.dataHandlers.length > 0 && !this.paused) {
        const chunk = this.inbox.shift()!;
        this.emitData(chunk);
        if (this.closed) return;
      }
      if (this.finReceived && this.inbox.length === 0) this.finishRead();
    });
  }

  /** Hands a chunk to the data handlers; it then no longer counts against the writer. */
  private emitData(chunk: Uint8Array): void {
    this.peer?.consumed(chunk.length);
    for (const fn of this.dataHandlers) {
      if (this.closed) return;
      fn(chunk);
    }
  }

  private discardInbox(): void {
    let bytes = 0;
    for (const chunk of this.inbox) bytes += chunk.length;
    this.inbox = [];
    if (bytes > 0) this.peer?.consumed(bytes);
  }

  private closeLocal(error: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError = error;
    this.release();
    for (const fn of this.closeHandlers) fn(error);
    this.closeHandlers.length = 0;
  }

  private release(): void {
    this.host.streams.delete(this);
    if (this.ownsPort && this.host.tcpPorts.get(this.local.port) === this) this.host.tcpPorts.delete(this.local.port);
  }
}
