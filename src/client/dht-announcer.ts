/**
 * Finds a torrent's peers on the DHT (BEP 5) and announces us there: the
 * DHT's counterpart of TrackerAnnouncer, driven by the runtime's timers.
 *
 * At start, and then every `intervalMs` (default 15 min, within the 10 min
 * token validity of the nodes' last answers plus a lookup), it runs one
 * iterative announce: a get_peers lookup towards the infohash whose peers are
 * handed to `onPeers`, then announce_peer to the closest nodes that gave a
 * token. Not listening (port 0) means a plain get_peers, nothing announced.
 * A round that found no peers is repeated sooner (30 s, doubling up to the
 * interval), and `lookupSoon()` (the torrent is short of peers) starts a
 * get_peers at once unless one ran in the last `minGapMs`.
 */
import type { Endpoint, Runtime, TimerHandle } from '../runtime/contract.js';

/** What the announcer needs of a DHT node (DhtNode has it). */
export interface DhtPeerFinder {
  getPeers(infoHash: Uint8Array): Promise<{ readonly peers: readonly Endpoint[] }>;
  announce(infoHash: Uint8Array, port?: number): Promise<{ readonly peers: readonly Endpoint[]; readonly stored: number }>;
}

export interface DhtAnnouncerOptions {
  readonly runtime: Runtime;
  readonly dht: DhtPeerFinder;
  readonly infoHash: Uint8Array;
  /** Our BitTorrent listen port; 0: look up only. */
  readonly port: number;
  readonly onPeers: (peers: readonly Endpoint[]) => void;
  readonly onError?: (message: string) => void;
  /** The first round waits for this (the node's bootstrap): a lookup in an empty table finds nothing. */
  readonly after?: Promise<unknown>;
  readonly intervalMs?: number;
  readonly retryMs?: number;
  readonly minGapMs?: number;
}

export interface DhtAnnounceStatus {
  /** Lookups started. */
  readonly rounds: number;
  /** Peers found, all rounds. */
  readonly peersFound: number;
  /** Nodes that stored our announce in the last round. */
  readonly stored: number;
  readonly lastAt: number | undefined;
}

export class DhtAnnouncer {
  private readonly rt: Runtime;
  private readonly intervalMs: number;
  private readonly retryMs: number;
  private readonly minGapMs: number;
  private timer: TimerHandle | undefined;
  private running = false;
  private stopped = false;
  private lastEndedAt = -Infinity;
  private nextRetryMs: number;
  private rounds = 0;
  private peersFound = 0;
  private stored = 0;
  private lastAt: number | undefined;

  constructor(private readonly o: DhtAnnouncerOptions) {
    this.rt = o.runtime;
    this.intervalMs = o.intervalMs ?? 15 * 60_000;
    this.retryMs = o.retryMs ?? 30_000;
    this.minGapMs = o.minGapMs ?? 60_000;
    this.nextRetryMs = this.retryMs;
  }

  get status(): DhtAnnounceStatus {
    return { rounds: this.rounds, peersFound: this.peersFound, stored: this.stored, lastAt: this.lastAt };
  }

  start(): void {
    const go = (): void => this.round(true);
    if (this.o.after) void this.o.after.then(go, go);
    else go();
  }

  /** The torrent wants more peers: a get_peers now, unless one ran recently. */
  lookupSoon(): void {
    if (this.stopped || this.running || this.rt.clock.now() - this.lastEndedAt < this.minGapMs) return;
    this.round(false);
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
  }

  private schedule(delayMs: number): void {
    this.timer?.cancel();
    if (this.stopped) return;
    this.timer = this.rt.timers.at(this.rt.clock.now() + delayMs, () => {
      this.timer = undefined;
      this.round(true);
    });
  }

  private round(announce: boolean): void {
    if (this.stopped) return;
    if (this.running) {
      // A lookup between rounds is under way: the round waits for it.
      if (announce) this.schedule(5_000);
      return;
    }
    this.running = true;
    this.rounds++;
    this.lastAt = this.rt.clock.now();
    const op: Promise<{ readonly peers: readonly Endpoint[]; readonly stored?: number }> = announce && this.o.port > 0 ? this.o.dht.announce(this.o.infoHash, this.o.port) : this.o.dht.getPeers(this.o.infoHash);
    op.then(
      (r) => {
        this.running = false;
        this.lastEndedAt = this.rt.clock.now();
        if (this.stopped) return;
        if (announce) this.stored = r.stored ?? 0;
        this.peersFound += r.peers.length;
        if (r.peers.length > 0) this.o.onPeers(r.peers);
        if (!announce) return; // a lookup between rounds leaves the schedule as it is
        if (r.peers.length > 0 || this.stored > 0) {
          this.nextRetryMs = this.retryMs;
          this.schedule(this.intervalMs);
        } else {
          this.schedule(this.nextRetryMs);
          this.nextRetryMs = Math.min(this.intervalMs, this.nextRetryMs * 2);
        }
      },
      (e: unknown) => {
        this.running = false;
        this.lastEndedAt = this.rt.clock.now();
        if (this.stopped) return;
        this.o.onError?.(`DHT: ${(e as Error).message}`);
        if (announce) this.schedule(this.nextRetryMs);
      },
    );
  }
}
