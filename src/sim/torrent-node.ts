/**
 * A simulated BitTorrent peer: the real TorrentCore (with its PiecePicker and
 * Choker) driven over a simulated host's byte streams. This is the
 * simulator's counterpart of src/client/torrent.ts and just as thin: every
 * protocol decision is the core's.
 *
 * What differs from the real driver is the disk. The simulator knows every
 * honest byte of the torrent is zero, so reads are answered from one shared
 * zero-filled piece buffer (a hostile node answers from a buffer of 0xff),
 * received blocks are not stored, and the hash check of a completed piece is
 * "did any block of it carry a non-zero byte" instead of SHA-1. The core
 * still gets `blockRead` and `pieceHashed` like it does from the real disk,
 * so bans, strikes and re-downloads follow the real code. Memory per node is
 * the core's own state plus a set of tainted pieces.
 *
 * Trackers are announced to as the real client does (a SimAnnouncer: the
 * same TrackerTiers and UdpTrackerClient): `started` when the node starts,
 * `completed` when the core completes, a re-announce when the core wants
 * peers, `stopped` on a graceful stop and nothing on a crash.
 */
import { TorrentCore, type PeerHandle, type TorrentAction, type TorrentLayout } from '../core/torrent/torrent-core.js';
import type { ByteStream, Endpoint, StreamListener, TimerHandle } from '../runtime/contract.js';
import type { SimHost } from '../runtime/sim/network.js';
import { SimAnnouncer, type SimAnnouncerOptions } from './tracker.js';

export interface TorrentNodeOptions {
  readonly host: SimHost;
  readonly infoHash: Uint8Array;
  readonly layout: TorrentLayout;
  /** Pieces the node has at start. */
  readonly have: Iterable<number>;
  readonly port: number;
  readonly maxPeers?: number;
  readonly regularUnchokeSlots?: number;
  readonly seedWhenDone?: boolean;
  /** Honest payload: at least one piece of zeros, shared by every node. */
  readonly zeros: Buffer;
  /** Hostile payload: at least one piece of 0xff, shared. */
  readonly garbage: Buffer;
  /**
   * Trackers to announce to (TrackerTiers + UdpTrackerClient, as the real
   * client): the peers they send go to the core, `completed` and `stopped`
   * are announced, and the core's want-peers asks them again.
   */
  readonly trackers?: Omit<SimAnnouncerOptions, 'host' | 'infoHash' | 'peerId' | 'port' | 'totals' | 'onPeers'>;
  readonly onPiece?: (index: number) => void;
  readonly onComplete?: () => void;
  /** The core wants more peers (after the trackers were asked). */
  readonly onWantPeers?: () => void;
  /** A peer was banned. */
  readonly onBan?: (endpoint: Endpoint, reason: string) => void;
  readonly onPieceFailed?: (index: number) => void;
  /** A connection ended while the node runs: by a FIN (false) or a reset (true, the far end crashed). */
  readonly onPeerClosed?: (reset: boolean) => void;
}

export class TorrentNode {
  readonly host: SimHost;
  readonly core: TorrentCore;
  readonly peerId: Uint8Array;
  readonly announcer: SimAnnouncer | undefined;
  /** Serve garbage for every block read. */
  hostile = false;
  private readonly o: TorrentNodeOptions;
  private readonly streams = new Map<PeerHandle, ByteStream>();
  private readonly congested = new Set<PeerHandle>();
  private readonly tainted = new Set<number>();
  private readonly deferred: (() => void)[] = [];
  /** Reads for peers whose stream is congested: answered as it drains. */
  private readonly held = new Map<PeerHandle, { index: number; begin: number; length: number }[]>();
  private listener: StreamListener | undefined;
  private nextHandle = 1;
  private timer: TimerHandle | undefined;
  private timerAt: number | undefined;
  private pumping = false;
  private again = false;
  private stopped = false;

  constructor(o: TorrentNodeOptions) {
    this.o = o;
    this.host = o.host;
    const peerId = Buffer.alloc(20);
    peerId.write('-PK0001-', 'latin1');
    peerId.set(o.host.random.bytes(12), 8);
    this.peerId = peerId;
    this.core = new TorrentCore({
      infoHash: o.infoHash,
      peerId,
      random: o.host.random,
      layout: o.layout,
      have: o.have,
      listenPort: o.port,
      clientName: 'peerkit-sim',
      maxPeers: o.maxPeers,
      regularUnchokeSlots: o.regularUnchokeSlots,
      seedWhenDone: o.seedWhenDone ?? true,
      pex: true,
    });
    this.announcer =
      o.trackers === undefined
        ? undefined
        : new SimAnnouncer({
            ...o.trackers,
            host: o.host,
            infoHash: o.infoHash,
            peerId,
            port: o.port,
            totals: () => {
              const s = this.core.stats(this.now);
              return { uploaded: s.uploaded, downloaded: s.downloaded, left: s.left ?? o.layout.length };
            },
            onPeers: (peers) => this.addPeers(peers),
          });
  }

  private get now(): number {
    return this.host.network.now;
  }

  /** Listens, starts the core with the given peers (if any) and starts announcing, as the real client does. */
  start(peers: readonly Endpoint[] = []): void {
    this.listener = this.host.listen({ port: this.o.port }, (stream) => this.attach(stream, 'in'));
    this.core.start(this.now);
    if (peers.length > 0) this.core.addPeers(this.now, peers, 'user');
    this.announcer?.start();
    if (this.core.isComplete) this.announcer?.complete();
    this.pump();
  }

  addPeers(peers: readonly Endpoint[]): void {
    if (this.stopped) return;
    this.core.addPeers(this.now, peers, 'tracker');
    this.pump();
  }

  /** Graceful: the core closes every connection (the FINs go out) and `stopped` is announced. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.timer?.cancel();
    this.announcer?.stop();
    this.listener?.close();
    this.core.stop();
    for (let a = this.core.pollAction(); a; a = this.core.pollAction()) if (a.type === 'send' || a.type === 'close') this.act(a);
    for (const s of this.streams.values()) s.end();
  }

  /** The host crashed: nothing more runs (the network resets the streams). */
  crashed(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.announcer?.close();
  }

  private attach(stream: ByteStream, direction: 'in' | 'out'): void {
    if (this.stopped) {
      stream.destroy();
      return;
    }
    const handle = this.nextHandle++;
    this.streams.set(handle, stream);
    this.core.addPeer(this.now, handle, stream.remote, direction);
    stream.onData((data) => {
      this.core.peerData(this.now, handle, data);
      this.pump();
    });
    stream.onDrain(() => {
      if (this.congested.delete(handle)) {
        // Held reads go first, in order; each is held again if the stream fills up.
        const held = this.held.get(handle);
        this.held.delete(handle);
        for (const r of held ?? []) this.deferred.push(() => this.serveRead(handle, r.index, r.begin, r.length));
        this.core.setCongested(this.now, handle, false);
        this.pump();
      }
    });
    stream.onClose((error) => {
      this.streams.delete(handle);
      this.congested.delete(handle);
      this.held.delete(handle);
      if (this.stopped) return;
      this.o.onPeerClosed?.(error !== undefined);
      this.core.peerClosed(this.now, handle);
      this.pump();
    });
    this.pump();
  }

  private serveRead(peer: PeerHandle, index: number, begin: number, length: number): void {
    if (this.congested.has(peer)) {
      const held = this.held.get(peer);
      if (held === undefined) this.held.set(peer, [{ index, begin, length }]);
      else held.push({ index, begin, length });
      return;
    }
    const payload = this.hostile ? this.o.garbage : this.o.zeros;
    this.core.blockRead(this.now, peer, index, begin, payload.subarray(0, length));
  }

  private pump(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.again = false;
        for (let a = this.core.pollAction(); a; a = this.core.pollAction()) this.act(a);
        // Disk results, answered at once (the simulated disk is infinitely fast), one at a
        // time: the block just read is written before the next read, so a stream that
        // fills up holds the rest.
        if (this.deferred.length > 0) {
          this.deferred.shift()!();
          this.again = true;
        }
      } while (this.again && !this.stopped);
    } finally {
      this.pumping = false;
    }
    if (this.stopped) return;
    const at = this.core.pollTimeout();
    if (at !== this.timerAt) {
      this.timer?.cancel();
      this.timerAt = at;
      this.timer =
        at === undefined
          ? undefined
          : this.host.runtime.timers.at(at, () => {
              this.timer = undefined;
              this.timerAt = undefined;
              if (this.stopped) return;
              this.core.handleTimeout(this.now);
              this.pump();
            });
    }
  }

  private act(a: TorrentAction): void {
    switch (a.type) {
      case 'send': {
        const s = this.streams.get(a.peer);
        if (!s) return;
        const data = a.data.length === 1 ? a.data[0]! : Buffer.concat(a.data);
        if (!s.write(data) && !this.congested.has(a.peer)) {
          this.congested.add(a.peer);
          this.core.setCongested(this.now, a.peer, true);
        }
        return;
      }
      case 'close': {
        const s = this.streams.get(a.peer);
        if (!s) return;
        s.end();
        this.host.runtime.timers.at(this.now + 2000, () => s.destroy());
        return;
      }
      case 'connect':
        this.host.connect(a.endpoint, { timeoutMs: 10_000 }, (error, stream) => {
          if (error !== undefined || stream === undefined) {
            if (this.stopped) return;
            this.core.connectFailed(this.now, a.endpoint);
            this.pump();
            return;
          }
          this.attach(stream, 'out');
        });
        return;
      case 'read': {
        // Like a client that reads for upload only while the socket takes data,
        // so a slow link queues about one high-water mark, not every read in flight.
        const { peer, index, begin, length } = a;
        this.deferred.push(() => this.serveRead(peer, index, begin, length));
        return;
      }
      case 'write':
        // Honest blocks are all zeros, hostile ones all 0xff: one byte tells them apart.
        if (a.data.length > 0 && a.data[a.data.length >> 1] !== 0) this.tainted.add(a.index);
        return;
      case 'verify': {
        const index = a.index;
        const ok = !this.tainted.delete(index);
        if (!ok) this.o.onPieceFailed?.(index);
        this.deferred.push(() => this.core.pieceHashed(this.now, index, ok));
        return;
      }
      case 'piece-verified':
        this.o.onPiece?.(a.index);
        return;
      case 'complete':
        this.announcer?.complete();
        this.o.onComplete?.();
        return;
      case 'want-peers':
        this.announcer?.reannounce();
        this.o.onWantPeers?.();
        return;
      case 'banned':
        this.o.onBan?.(a.endpoint, a.reason);
        return;
      case 'metadata':
      case 'peer-ready':
      case 'piece-failed':
      case 'dht-port':
        return;
    }
  }
}
