/**
 * Trackers in the simulator, both ends running peerkit's own code:
 *
 *  - `SimTracker`: the tracker a `peerkit tracker` serves over UDP. The same
 *    TrackerCore, wrapped by the same TrackerService and fed by the same
 *    UDP server loop (src/tracker/udp-server.ts `serveUdp`), on a simulated
 *    host; only the socket and the clock are the simulator's.
 *  - `SimAnnouncer`: a peer's announcing, as src/client/tracker-announcer.ts
 *    does it for UDP trackers: the BEP 12 tier schedule (TrackerTiers) and
 *    the BEP 15 client (UdpTrackerClient) on the generic datagram driver.
 *    The real announcer awaits promises between steps; the simulator's
 *    engine runs no promise continuations between events, so this driver
 *    makes the same calls in the same order from callbacks instead.
 *
 * The datagrams between them are real BEP 15 connects and announces,
 * carried (and delayed, lost, filtered by NATs) by the simulated network.
 */
import type { Endpoint, DatagramSocket, TimerHandle } from '../runtime/contract.js';
import type { SimHost } from '../runtime/sim/network.js';
import { driveDatagramCore, type DriveHandle } from '../runtime/drive.js';
import { TrackerCore, type TrackerCoreOptions, type TrackerStats } from '../core/tracker/tracker-core.js';
import { TrackerTiers, type AnnounceAttempt } from '../core/tracker-tiers.js';
import { UdpTrackerClient, type UdpTrackerEvent } from '../core/udp-tracker-client.js';
import { TrackerService } from '../tracker/service.js';
import { serveUdp } from '../tracker/udp-server.js';

export interface SimTrackerOptions extends Omit<TrackerCoreOptions, 'random'> {
  readonly host: SimHost;
  /** UDP port (default 6969). */
  readonly port?: number;
}

export class SimTracker {
  readonly host: SimHost;
  readonly core: TrackerCore;
  readonly service: TrackerService;
  readonly socket: DatagramSocket;
  /** Internal errors of the core (a bug if ever non-zero), with the first one's message. */
  firstError: string | undefined;

  constructor(o: SimTrackerOptions) {
    const { host, port, ...core } = o;
    this.host = host;
    this.core = new TrackerCore({ ...core, random: host.runtime.random });
    this.service = new TrackerService(this.core, host.runtime, undefined, (error) => {
      this.firstError ??= error instanceof Error ? error.message : String(error);
    });
    this.socket = host.bind({ port: port ?? 6969 });
    serveUdp(this.service, this.socket);
    // Arms the core's sweep timer, as the real tracker does once it is up.
    this.service.afterInput();
  }

  get endpoint(): Endpoint {
    return this.socket.local;
  }

  /** The announce URL peers use. */
  get url(): string {
    return `udp://${this.socket.local.host}:${this.socket.local.port}`;
  }

  stats(now: number): TrackerStats {
    return this.core.stats(now);
  }

  get internalErrors(): number {
    return this.service.internalErrors;
  }
}

export interface TransferTotals {
  readonly uploaded: number;
  readonly downloaded: number;
  readonly left: number;
}

export interface SimAnnouncerOptions {
  readonly host: SimHost;
  /** BEP 12 tiers of `udp://<ip>:<port>` URLs. */
  readonly tiers: readonly (readonly string[])[];
  readonly infoHash: Uint8Array;
  readonly peerId: Uint8Array;
  /** Our listening port. */
  readonly port: number;
  /** Peers asked for (default 50, as the real client). */
  readonly numWant?: number;
  readonly totals: () => TransferTotals;
  readonly onPeers: (peers: readonly Endpoint[]) => void;
  /** TrackerTiers timing, in ms (see there). */
  readonly minIntervalFloorMs?: number;
  readonly backoffBaseMs?: number;
  /** BEP 15 retransmission base (ms; 15 000 by the spec). */
  readonly retransmitBaseMs?: number;
  readonly maxRetransmitExponent?: number;
}

export interface SimAnnouncerStats {
  announces: number;
  failed: number;
  peersReceived: number;
}

const UDP_URL = /^udp:\/\/(\[[^\]]+\]|[^:/]+):(\d{1,5})(?:[/?].*)?$/i;

/** The endpoint of a `udp://` URL whose host is an IP literal (the simulator has no resolver). */
function udpEndpoint(url: string): Endpoint | undefined {
  const m = UDP_URL.exec(url);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export class SimAnnouncer {
  readonly stats: SimAnnouncerStats = { announces: 0, failed: 0, peersReceived: 0 };
  private readonly o: SimAnnouncerOptions;
  private readonly tiers: TrackerTiers;
  private readonly key: number;
  private readonly socket: DatagramSocket;
  private readonly client: UdpTrackerClient;
  private readonly drive: DriveHandle;
  private readonly waiting = new Map<number, AnnounceAttempt>();
  private timer: TimerHandle | undefined;
  private closed = false;

  constructor(o: SimAnnouncerOptions) {
    this.o = o;
    const random = o.host.runtime.random;
    // The same draws in the same order as TrackerAnnouncer: the tier shuffle, the key, then the client's ids.
    this.tiers = new TrackerTiers(o.tiers, { random, minIntervalFloorMs: o.minIntervalFloorMs, backoffBaseMs: o.backoffBaseMs });
    this.key = random.u32();
    this.socket = o.host.bind({});
    this.client = new UdpTrackerClient({ random, retransmitBaseMs: o.retransmitBaseMs, maxRetransmitExponent: o.maxRetransmitExponent });
    this.drive = driveDatagramCore(o.host.runtime, this.socket, this.client, (e) => this.onEvent(e));
  }

  private get now(): number {
    return this.o.host.runtime.clock.now();
  }

  /** Begins the session: `started` goes out at once. */
  start(): void {
    this.tiers.start(this.now);
    this.schedule();
  }

  /** The download finished: announce `completed`. */
  complete(): void {
    this.tiers.complete(this.now);
    this.schedule();
  }

  /** The core wants more peers: announce now (or when the tracker's min interval allows). */
  reannounce(): void {
    this.tiers.reannounce(this.now);
    this.schedule();
  }

  /** Graceful shutdown: `stopped` to every tracker that knows us (best effort), then the socket closes. */
  stop(): void {
    if (this.closed) return;
    if (this.tiers.state !== 'running') {
      this.close();
      return;
    }
    this.tiers.stop(this.now);
    this.schedule();
  }

  /** Stops at once, sending nothing (a crash, or the end of a graceful stop). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
    this.waiting.clear();
    this.drive.stop();
    this.socket.close();
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.tiers.state === 'stopped') {
      this.close();
      return;
    }
    const at = this.tiers.nextAnnounceAt();
    this.timer?.cancel();
    this.timer = at === undefined ? undefined : this.o.host.runtime.timers.at(at, () => this.fire());
  }

  private fire(): void {
    this.timer = undefined;
    if (this.closed) return;
    const attempt = this.tiers.poll(this.now);
    if (!attempt) {
      this.schedule();
      return;
    }
    const tracker = udpEndpoint(attempt.url);
    const totals = this.o.totals();
    let id: number;
    try {
      if (tracker === undefined) throw new Error('not a udp:// URL with an IP address');
      id = this.client.announce(this.now, tracker, {
        infoHash: this.o.infoHash,
        peerId: this.o.peerId,
        port: this.o.port,
        uploaded: totals.uploaded,
        downloaded: totals.downloaded,
        left: totals.left,
        numWant: attempt.event === 'stopped' ? 0 : (this.o.numWant ?? 50),
        key: this.key,
        event: attempt.event,
      });
    } catch {
      this.stats.failed++;
      this.tiers.failed(this.now, attempt.attempt);
      this.schedule();
      return;
    }
    this.stats.announces++;
    this.waiting.set(id, attempt);
    this.drive.poke();
  }

  private onEvent(e: UdpTrackerEvent): void {
    const attempt = this.waiting.get(e.id);
    if (attempt === undefined || this.closed) return;
    this.waiting.delete(e.id);
    if (e.type === 'announced') {
      this.stats.peersReceived += e.peers.length;
      if (e.peers.length > 0) this.o.onPeers(e.peers);
      if (this.closed) return;
      this.tiers.succeeded(this.now, attempt.attempt, { interval: e.interval });
    } else {
      this.stats.failed++;
      this.tiers.failed(this.now, attempt.attempt);
    }
    this.schedule();
  }
}
