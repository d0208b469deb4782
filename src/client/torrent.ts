/**
 * A torrent in the client: the driver of one TorrentCore on a Runtime. It
 * owns the peer connections, the files (FileStorage), hashing of completed
 * pieces, resume data and the tracker announcer; every protocol decision is
 * the core's. Keep it thin: what can be decided without I/O belongs in
 * src/core/torrent.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Metainfo } from '../codec/metainfo.js';
import { parseInfoDictionary, withTrackers } from '../codec/metainfo.js';
import { TorrentCore, type CloseKind, type PeerHandle, type PeerSnapshot, type PieceMap, type TorrentAction, type TorrentStats } from '../core/torrent/torrent-core.js';
import type { TokenBucket } from '../core/torrent/token-bucket.js';
import type { ByteStream, Endpoint, Runtime, TimerHandle } from '../runtime/contract.js';
import { FileStorage } from '../storage/file-storage.js';
import { IncrementalPieceHasher } from '../storage/piece-hasher.js';
import { HashPool } from '../files/hash-pool.js';
import { loadResume, planResume, resumePath, saveResume } from '../storage/resume.js';
import { TrackerAnnouncer, type HttpGet, type ScrapeOutcome, type TrackerStatus } from './tracker-announcer.js';
import { DhtAnnouncer, type DhtAnnounceStatus, type DhtPeerFinder } from './dht-announcer.js';
import { UploadCache } from './upload-cache.js';
import { TypedEmitter } from './typed-emitter.js';

export interface TorrentOptions {
  /** Folder the torrent's files are written to (or seeded from). */
  readonly dir: string;
  /** Keep seeding after the download completes. Default true. */
  readonly seed?: boolean;
  /** Download pieces in order (for streaming). */
  readonly sequential?: boolean;
  /** Ignore resume data and hash everything on disk. */
  readonly recheck?: boolean;
  readonly maxPeers?: number;
  /** Peers to connect to directly, besides the trackers'. */
  readonly peers?: readonly Endpoint[];
  /** Extra tracker tiers. */
  readonly trackers?: readonly (readonly string[])[];
  /** Peer exchange (BEP 11); never used for private torrents. Default true. */
  readonly pex?: boolean;
  /** Tracker timing (ms), for tests. */
  readonly trackerMinIntervalMs?: number;
  /** Use the client's DHT node for this torrent (if it has one; never for private torrents). Default true. */
  readonly dht?: boolean;
  readonly httpGet?: HttpGet;
  /** Choking (tit-for-tat) settings for this torrent; default the client's (ClientOptions.choking). */
  readonly choking?: ChokingOptions;
}

/** The choking algorithm's settings (src/core/choker.ts). */
export interface ChokingOptions {
  /** Peers unchoked by rate (tit-for-tat). Default 4. */
  readonly unchokeSlots?: number;
  /** Peers unchoked regardless of rate. Default 1. */
  readonly optimisticSlots?: number;
  /** How often the optimistic unchokes rotate. Default 30 000 ms. */
  readonly optimisticIntervalMs?: number;
  /** How often the regular slots are recomputed. Default 10 000 ms. */
  readonly rechokeIntervalMs?: number;
  /** A peer we are interested in that sends no block for this long loses its regular slot. Default 60 000 ms. */
  readonly snubTimeoutMs?: number;
}

/** Why a connection ended: as TorrentCore closed it ('violation', 'ban', 'normal'), or 'remote' (the peer or the network). */
export type DisconnectKind = CloseKind | 'remote';

export interface TorrentEvents {
  /** The info dictionary arrived from peers (magnet links). */
  metadata: (metainfo: Metainfo) => void;
  /** Existing data was checked and the torrent is running. */
  ready: (verifiedPieces: number) => void;
  checking: (done: number, total: number) => void;
  piece: (index: number) => void;
  'piece-failed': (index: number, peers: readonly Endpoint[]) => void;
  complete: () => void;
  peer: (endpoint: Endpoint, client: string) => void;
  /**
   * A peer connection ended. `kind` 'violation': we closed it because the
   * peer broke the protocol (`reason` says how); 'ban': bad data (a `banned`
   * event came first); 'normal': limits, timeouts, both seeds, stop;
   * 'remote': the peer hung up or the connection failed.
   */
  disconnect: (endpoint: Endpoint, reason: string, kind: DisconnectKind) => void;
  /** An outgoing connection could not be made. `source` is where the address came from ('user' for ones given to us). It is retried later. */
  'connect-failed': (endpoint: Endpoint, reason: string, source: string) => void;
  banned: (endpoint: Endpoint, reason: string) => void;
  warning: (message: string) => void;
  error: (error: Error) => void;
}

/** What the client shares with its torrents. */
export interface TorrentHost {
  readonly runtime: Runtime;
  readonly peerId: Buffer;
  readonly port: number;
  readonly clientName: string;
  readonly uploadLimiter: TokenBucket;
  readonly downloadLimiter: TokenBucket;
  /** Choking defaults for torrents that set none. */
  readonly choking?: ChokingOptions | undefined;
  nextHandle(): PeerHandle;
  /** The client's DHT node, if it runs one (BEP 5), and its UDP port. */
  readonly dht?: (DhtPeerFinder & { ping(to: Endpoint): Promise<unknown> }) | undefined;
  readonly dhtPort?: number | undefined;
  /** Settles when the DHT node has bootstrapped (its first lookups wait for it). */
  readonly dhtReady?: Promise<unknown> | undefined;
  /** Whether the global connection limit leaves room for one more. */
  reserveConnection(): boolean;
  releaseConnection(): void;
}

export interface TorrentSource {
  readonly infoHash: Buffer;
  readonly name?: string | undefined;
  readonly metainfo?: Metainfo | undefined;
  readonly trackers: readonly (readonly string[])[];
  readonly peers: readonly Endpoint[];
}

const RESUME_EVERY_MS = 5000;
/** Received pieces are assembled in memory up to this many bytes (then blocks go straight to disk). */
const MAX_ASSEMBLY_BYTES = 32 * 1024 * 1024;
/** Whole pieces kept after a read for upload, so 16 KiB requests cost one disk read per piece. */
const READ_CACHE_BYTES = 32 * 1024 * 1024;
const CACHE_WHOLE_PIECES_UP_TO = 4 * 1024 * 1024;

/**
 * Piece hashing for all torrents of the process. Inline (0 workers): at
 * loopback speeds the main thread has room for SHA-1 (about 0.7 s per GiB),
 * and a worker isolate costs ~30 MB of RSS for no measured gain
 * (1 GiB peerkit to peerkit: 3.3-3.4 s either way; 118 MB vs 152 MB peak).
 */
let sharedHashPool: HashPool | undefined;
function hashPool(): HashPool {
  sharedHashPool ??= new HashPool(0);
  return sharedHashPool;
}

export class Torrent extends TypedEmitter<TorrentEvents> {
  readonly infoHash: Buffer;
  readonly infoHashHex: string;
  metainfo: Metainfo | undefined;
  private core!: TorrentCore;
  private storage: FileStorage | undefined;
  private readonly hasher = new IncrementalPieceHasher();
  private announcer: TrackerAnnouncer | undefined;
  private dhtAnnouncer: DhtAnnouncer | undefined;
  private readonly streams = new Map<PeerHandle, ByteStream>();
  /** Why we closed a connection, until its stream reports the close. */
  private readonly closing = new Map<PeerHandle, { reason: string; kind: CloseKind }>();
  private readonly congested = new Set<PeerHandle>();
  private readonly pendingWrites = new Map<number, Promise<void>[]>();
  /** Pieces being assembled in memory: written to disk only once their hash is right. */
  private readonly assembling = new Map<number, { buffer: ArrayBuffer; view: Buffer }>();
  private assemblyBytes = 0;
  /**
   * Full-size piece buffers whose piece is written (or dropped), kept for the
   * next pieces: a GiB downloaded no longer allocates a GiB of buffers for
   * the garbage collector to sweep. At most MAX_ASSEMBLY_BYTES of them.
   */
  private readonly spareBuffers: ArrayBuffer[] = [];
  /** Pieces whose blocks went straight to disk (assembly memory was full). */
  private readonly onDisk = new Set<number>();
  private pendingDiskBytes = 0;
  /** Complete pieces in memory waiting for their hash and write: freed without any more input. */
  private verifyingBytes = 0;
  private readPaused = false;
  private uploadCache: UploadCache | undefined;
  private readonly closeTimers = new Set<TimerHandle>();
  private timer: TimerHandle | undefined;
  private timerAt: number | undefined;
  private pumping = false;
  private again = false;
  private stopped = false;
  private resumeDirty = false;
  private resumeTimer: TimerHandle | undefined;
  private resumeSaving: Promise<void> | undefined;
  private failed: Error | undefined;
  private readonly metaDir: string;

  constructor(
    private readonly host: TorrentHost,
    private readonly source: TorrentSource,
    readonly options: TorrentOptions,
  ) {
    super();
    this.infoHash = source.infoHash;
    this.infoHashHex = source.infoHash.toString('hex');
    this.metainfo = source.metainfo;
    this.metaDir = join(options.dir, '.peerkit');
  }

  get name(): string {
    return this.metainfo?.name ?? this.source.name ?? this.infoHashHex;
  }

  get isComplete(): boolean {
    return this.core?.isComplete ?? false;
  }

  get error(): Error | undefined {
    return this.failed;
  }

  get trackers(): readonly TrackerStatus[] {
    return this.announcer?.trackers ?? [];
  }

  /** Asks the torrent's trackers for its seeder and leecher counts (scrape), without announcing. */
  async scrape(timeoutMs?: number): Promise<ScrapeOutcome[]> {
    return this.announcer?.scrape(timeoutMs) ?? [];
  }

  /** The DHT side of peer discovery, when the client runs a DHT node and the torrent is public. */
  get dht(): DhtAnnounceStatus | undefined {
    return this.dhtAnnouncer?.status;
  }

  /** Where peers can come from: tracker tiers, peers given directly (options or magnet x.pe), the DHT. */
  get sources(): { trackers: number; peers: number; dht: boolean } {
    const tiers = [...(this.metainfo?.announceList ?? []), ...this.source.trackers, ...(this.options.trackers ?? [])];
    return {
      trackers: tiers.reduce((n, t) => n + t.length, 0),
      peers: this.source.peers.length + (this.options.peers?.length ?? 0),
      dht: this.dhtAnnouncer !== undefined,
    };
  }

  /** Whether start() has got as far as running the core (stats, peers and pieceMap need it). */
  get isRunning(): boolean {
    return this.core !== undefined;
  }

  stats(): TorrentStats {
    return this.core.stats(this.host.runtime.clock.now());
  }

  peers(): PeerSnapshot[] {
    return this.core.peerSnapshots(this.host.runtime.clock.now());
  }

  /** Pieces held and their availability in at most `maxCells` cells (see TorrentCore.pieceMap). */
  pieceMap(maxCells: number): PieceMap | undefined {
    return this.core?.pieceMap(maxCells);
  }

  /** Checks existing data, then joins the swarm. */
  async start(): Promise<void> {
    const rt = this.host.runtime;
    await mkdir(this.metaDir, { recursive: true });
    if (!this.metainfo) {
      // A magnet link we already fetched the metadata of in an earlier run.
      const saved = await readFile(join(this.metaDir, `${this.infoHashHex}.torrent`)).catch(() => undefined);
      if (saved) {
        try {
          this.metainfo = withTrackers(parseInfoDictionary(saved, this.infoHash), []);
        } catch {
          // unusable: fetch it again
        }
      }
    }
    let have: number[] = [];
    if (this.metainfo) have = await this.openStorage(this.metainfo);
    if (this.stopped) return;
    const m = this.metainfo;
    const choking = { ...this.host.choking, ...this.options.choking };
    this.core = new TorrentCore({
      infoHash: this.infoHash,
      peerId: this.host.peerId,
      random: rt.random,
      layout: m ? { pieceCount: m.pieceCount, pieceLength: m.pieceLength, length: m.length, private: m.private, infoBytes: m.infoBytes } : undefined,
      have,
      listenPort: this.host.port,
      clientName: this.host.clientName,
      maxPeers: this.options.maxPeers,
      sequential: this.options.sequential,
      uploadLimiter: this.host.uploadLimiter,
      downloadLimiter: this.host.downloadLimiter,
      pex: this.options.pex,
      seedWhenDone: this.options.seed ?? true,
      dhtPort: this.options.dht === false ? undefined : this.host.dhtPort,
      regularUnchokeSlots: choking.unchokeSlots,
      optimisticSlots: choking.optimisticSlots,
      optimisticIntervalMs: choking.optimisticIntervalMs,
      rechokeIntervalMs: choking.rechokeIntervalMs,
      snubTimeoutMs: choking.snubTimeoutMs,
    });
    const tiers = [...(m?.announceList ?? []), ...this.source.trackers, ...(this.options.trackers ?? [])];
    this.announcer = new TrackerAnnouncer({
      runtime: rt,
      tiers,
      infoHash: this.infoHash,
      peerId: this.host.peerId,
      port: this.host.port,
      totals: () => {
        const s = this.core.stats(rt.clock.now());
        return { uploaded: s.uploaded, downloaded: s.downloaded, left: s.left ?? this.metainfo?.length ?? 16 * 1024 * 1024 };
      },
      onPeers: (peers) => {
        this.core.addPeers(rt.clock.now(), peers, 'tracker');
        this.pump();
      },
      onError: (url, message) => this.emit('warning', `tracker ${url}: ${message}`),
      httpGet: this.options.httpGet,
      minIntervalFloorMs: this.options.trackerMinIntervalMs,
      backoffBaseMs: this.options.trackerMinIntervalMs,
    });
    const now = rt.clock.now();
    this.core.start(now);
    this.core.addPeers(now, [...this.source.peers, ...(this.options.peers ?? [])], 'user');
    this.announcer.start();
    if (this.core.isComplete) this.announcer.complete();
    // BEP 5 for public torrents (BEP 27: never for private ones; a magnet's privacy shows with its metadata).
    const dht = this.host.dht;
    if (dht && this.options.dht !== false && !m?.private) {
      this.dhtAnnouncer = new DhtAnnouncer({
        runtime: rt,
        dht,
        infoHash: this.infoHash,
        port: this.host.port,
        onPeers: (peers) => {
          if (this.stopped) return;
          this.core.addPeers(rt.clock.now(), peers, 'dht');
          this.pump();
        },
        onError: (message) => this.emit('warning', message),
        after: this.host.dhtReady,
      });
      this.dhtAnnouncer.start();
    }
    this.pump();
    this.emit('ready', have.length);
  }

  /** Opens the files and works out which pieces are already there. */
  private async openStorage(m: Metainfo): Promise<number[]> {
    this.storage = new FileStorage(this.options.dir, m);
    const rec = this.options.recheck ? undefined : await loadResume(resumePath(this.metaDir, this.infoHashHex), this.infoHashHex, m.pieceCount, m.files.length);
    const current = await this.storage.fileStats();
    const plan = planResume(
      rec,
      current,
      m.files.map((f) => f.length),
      m.pieceCount,
      (i) => this.storage!.filesOfPiece(i),
    );
    const have: number[] = [];
    plan.trusted.forEach((t, i) => t && have.push(i));
    let done = 0;
    for (const i of plan.toCheck) {
      if (this.stopped) break;
      if (await this.hashFromDisk(i).then((ok) => ok, () => false)) have.push(i);
      this.emit('checking', ++done, plan.toCheck.length);
    }
    have.sort((a, b) => a - b);
    this.resumeDirty = true;
    return have;
  }

  private async hashFromDisk(index: number): Promise<boolean> {
    const m = this.metainfo!;
    const size = Math.min(m.pieceLength, m.length - index * m.pieceLength);
    const data = await this.storage!.read(index, 0, size);
    return createHash('sha1').update(data).digest().equals(m.pieces.subarray(index * 20, index * 20 + 20));
  }

  /** A connection for this torrent: outgoing (we connected) or incoming (the client routed it here). */
  attach(stream: ByteStream, direction: 'in' | 'out', initial?: Uint8Array, route?: (sink: (data: Uint8Array) => void) => void): void {
    const rt = this.host.runtime;
    if (this.stopped || !this.core) {
      stream.destroy();
      this.host.releaseConnection();
      return;
    }
    const handle = this.host.nextHandle();
    this.streams.set(handle, stream);
    this.core.addPeer(rt.clock.now(), handle, stream.remote, direction);
    const sink = (data: Uint8Array): void => {
      this.core.peerData(rt.clock.now(), handle, data);
      this.pump();
    };
    if (route) route(sink);
    else {
      // The runtime may lend its read buffer: blocks are copied into their pieces (store) in
      // this pump, before the buffer is read into again.
      stream.onData(
        (data) => {
          this.core.peerData(rt.clock.now(), handle, data, true);
          this.pump();
        },
        { borrow: true },
      );
    }
    if (this.readPaused) stream.pause();
    stream.onDrain(() => {
      if (this.congested.delete(handle)) {
        this.core.setCongested(rt.clock.now(), handle, false);
        this.pump();
      }
    });
    stream.onClose((error) => {
      const why = this.closing.get(handle);
      this.closing.delete(handle);
      this.streams.delete(handle);
      this.congested.delete(handle);
      this.host.releaseConnection();
      this.core.peerClosed(rt.clock.now(), handle);
      this.emit('disconnect', stream.remote, why?.reason ?? (error ? `connection error: ${error.message}` : 'closed by peer'), why?.kind ?? 'remote');
      this.pump();
    });
    if (initial && initial.length > 0) sink(initial);
    this.pump();
  }

  private pump(): void {
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.again = false;
        for (let a = this.core.pollAction(); a; a = this.core.pollAction()) this.act(a);
      } while (this.again);
    } finally {
      this.pumping = false;
    }
    const at = this.stopped ? undefined : this.core.pollTimeout();
    if (at !== this.timerAt) {
      this.timer?.cancel();
      this.timerAt = at;
      this.timer =
        at === undefined
          ? undefined
          : this.host.runtime.timers.at(at, () => {
              this.timer = undefined;
              this.timerAt = undefined;
              this.core.handleTimeout(this.host.runtime.clock.now());
              this.pump();
            });
    }
  }

  private act(a: TorrentAction): void {
    const rt = this.host.runtime;
    switch (a.type) {
      case 'send': {
        const s = this.streams.get(a.peer);
        if (!s) return;
        // Several buffers (a block's header and the block) are written one by one: the stream
        // gathers the writes of a tick into one writev, so nothing is copied.
        let ok = true;
        const cache = this.uploadCache;
        for (const d of a.data) ok = s.write(d, cache?.retain(d)) && ok;
        if (!ok && !this.congested.has(a.peer)) {
          this.congested.add(a.peer);
          this.core.setCongested(rt.clock.now(), a.peer, true);
        }
        return;
      }
      case 'close': {
        const s = this.streams.get(a.peer);
        if (!s) return;
        this.closing.set(a.peer, { reason: a.reason, kind: a.kind });
        s.end();
        // A peer that does not finish the close is cut off; stop() cancels these so they never hold the process.
        const t = rt.timers.at(rt.clock.now() + 2000, () => {
          this.closeTimers.delete(t);
          s.destroy();
        });
        this.closeTimers.add(t);
        return;
      }
      case 'connect': {
        if (!this.host.reserveConnection()) {
          this.core.connectFailed(rt.clock.now(), a.endpoint);
          return;
        }
        rt.connectStream(a.endpoint, { timeoutMs: 10_000 }).then(
          (stream) => this.attach(stream, 'out'),
          (e: unknown) => {
            this.host.releaseConnection();
            if (this.stopped) return;
            this.emit('connect-failed', a.endpoint, e instanceof Error ? e.message : String(e), a.source);
            this.core.connectFailed(rt.clock.now(), a.endpoint);
            this.pump();
          },
        );
        return;
      }
      case 'read': {
        this.readBlock(a.index, a.begin, a.length).then(
          (data) => {
            this.core.blockRead(rt.clock.now(), a.peer, a.index, a.begin, data);
            this.pump(); // the block's stream write (if it is still wanted) takes its own reference
            this.uploadCache?.release(data);
          },
          (e: Error) => {
            this.emit('warning', `reading piece ${a.index}: ${e.message}`);
            this.core.readFailed(rt.clock.now(), a.peer, a.index, a.begin, a.length);
            this.pump();
          },
        );
        return;
      }
      case 'write': {
        this.store(a.index, a.begin, a.data);
        return;
      }
      case 'verify': {
        void this.verify(a.index);
        return;
      }
      case 'metadata': {
        this.metainfo = withTrackers(a.metainfo, this.source.trackers.map((t) => [...t]));
        this.storage = new FileStorage(this.options.dir, this.metainfo);
        if (this.metainfo.private) {
          // BEP 27: a private torrent's peers come from its trackers only.
          this.dhtAnnouncer?.stop();
          this.dhtAnnouncer = undefined;
        }
        void this.saveInfo(a.metainfo.infoBytes);
        this.emit('metadata', this.metainfo);
        return;
      }
      case 'piece-verified':
        this.markResumeDirty();
        this.emit('piece', a.index);
        return;
      case 'piece-failed':
        this.emit('piece-failed', a.index, a.peers);
        return;
      case 'complete':
        this.spareBuffers.length = 0; // nothing more to assemble: give the memory back
        this.announcer?.complete();
        this.markResumeDirty(true);
        this.emit('complete');
        return;
      case 'peer-ready':
        this.emit('peer', a.endpoint, a.client);
        return;
      case 'banned':
        this.emit('banned', a.endpoint, a.reason);
        return;
      case 'want-peers':
        this.announcer?.reannounce();
        this.dhtAnnouncer?.lookupSoon();
        return;
      case 'dht-port':
        // A peer's DHT node (BEP 5 port message): ping it, so it can join our routing table.
        this.host.dht?.ping({ host: a.endpoint.host, port: a.port }).catch(() => undefined);
        return;
    }
  }

  private pieceSize(index: number): number {
    const m = this.metainfo!;
    return Math.min(m.pieceLength, m.length - index * m.pieceLength);
  }

  /** A received block: into its piece's memory, or (when that is full) straight to disk. */
  private store(index: number, begin: number, data: Buffer): void {
    const storage = this.storage;
    if (!storage) return;
    let asm = this.assembling.get(index);
    const size = this.pieceSize(index);
    if (!asm && !this.onDisk.has(index) && this.assemblyBytes + size <= MAX_ASSEMBLY_BYTES) {
      // Every byte of a reused buffer is overwritten by the piece's blocks before it is hashed.
      const buffer = (size === this.metainfo!.pieceLength ? this.spareBuffers.pop() : undefined) ?? new ArrayBuffer(size);
      asm = { buffer, view: Buffer.from(buffer) };
      this.assembling.set(index, asm);
      this.assemblyBytes += size;
    }
    if (asm) {
      asm.view.set(data, begin);
    } else {
      // The block may be a view of a borrowed read buffer, and both of these keep it.
      data = Buffer.from(data);
      this.onDisk.add(index);
      this.hasher.add(index, begin, data);
      this.pendingDiskBytes += data.length;
      const p = storage
        .write(index, begin, data)
        .catch((e: Error) => this.fail(new Error(`writing piece ${index}: ${e.message}`)))
        .finally(() => {
          this.pendingDiskBytes -= data.length;
          this.updateFlow();
        });
      const list = this.pendingWrites.get(index) ?? [];
      list.push(p);
      this.pendingWrites.set(index, list);
    }
    this.updateFlow();
  }

  /**
   * Stops reading from peers while too much received data waits for the disk or the hasher.
   * Only work that finishes on its own counts: memory held by pieces still being received is
   * freed only by receiving more, so pausing for it would deadlock (and once assembly memory
   * is full, new pieces go straight to disk anyway).
   */
  private updateFlow(): void {
    const busy = this.pendingDiskBytes > 16 * 1024 * 1024 || this.verifyingBytes > MAX_ASSEMBLY_BYTES * 0.5;
    if (busy && !this.readPaused) {
      this.readPaused = true;
      for (const s of this.streams.values()) s.pause();
    } else if (!busy && this.readPaused && this.pendingDiskBytes < 4 * 1024 * 1024 && this.verifyingBytes < MAX_ASSEMBLY_BYTES * 0.25) {
      this.readPaused = false;
      for (const s of this.streams.values()) s.resume();
    }
  }

  /**
   * A block for upload, from a small cache of whole pieces (pieces over 4 MiB are read block by
   * block). A cached block holds a reference to its piece's memory: `releaseBlock` gives it back.
   */
  private readBlock(index: number, begin: number, length: number): Promise<Buffer> {
    const storage = this.storage;
    if (!storage) return Promise.reject(new Error('no storage'));
    const size = this.pieceSize(index);
    if (size > CACHE_WHOLE_PIECES_UP_TO) return storage.read(index, begin, length);
    this.uploadCache ??= new UploadCache({
      pieceLength: this.metainfo!.pieceLength,
      maxBytes: READ_CACHE_BYTES,
      read: (i, n, into) => storage.read(i, 0, n, into),
    });
    return this.uploadCache.block(index, size, begin, length);
  }

  private async verify(index: number): Promise<void> {
    const m = this.metainfo!;
    const asm = this.assembling.get(index);
    if (asm) {
      this.assembling.delete(index);
      const size = this.pieceSize(index);
      let ok = false;
      let written = false;
      let spare: ArrayBuffer | undefined;
      this.verifyingBytes += size;
      try {
        const { digest, buffer } = await hashPool().hash(asm.buffer, size);
        ok = digest.equals(m.pieces.subarray(index * 20, index * 20 + 20));
        // Only good data reaches the disk; the piece counts as ours once it is written.
        if (ok && !this.stopped && this.storage) {
          await this.storage.write(index, 0, Buffer.from(buffer, 0, size));
          written = true;
        }
        spare = buffer; // written, or not worth writing: free for the next piece
      } catch (e) {
        if (!this.stopped) this.fail(new Error(`writing piece ${index}: ${(e as Error).message}`));
      } finally {
        if (spare && spare.byteLength === m.pieceLength && (this.spareBuffers.length + 1) * m.pieceLength <= MAX_ASSEMBLY_BYTES) this.spareBuffers.push(spare);
        this.assemblyBytes -= size;
        this.verifyingBytes -= size;
        this.updateFlow();
      }
      if (this.stopped || this.failed) return;
      this.core.pieceHashed(this.host.runtime.clock.now(), index, ok && written);
      this.pump();
      return;
    }
    this.onDisk.delete(index);
    const writes = this.pendingWrites.get(index) ?? [];
    this.pendingWrites.delete(index);
    await Promise.all(writes);
    if (this.stopped || this.failed) return;
    const size = Math.min(m.pieceLength, m.length - index * m.pieceLength);
    const digest = this.hasher.finish(index, size);
    let ok: boolean;
    if (digest) ok = digest.equals(m.pieces.subarray(index * 20, index * 20 + 20));
    else ok = await this.hashFromDisk(index).catch(() => false);
    if (this.stopped) return;
    this.core.pieceHashed(this.host.runtime.clock.now(), index, ok);
    this.pump();
  }

  private async saveInfo(info: Buffer): Promise<void> {
    const path = join(this.metaDir, `${this.infoHashHex}.torrent`);
    const tmp = `${path}.${process.pid}.tmp`;
    try {
      await writeFile(tmp, info);
      await rename(tmp, path);
    } catch (e) {
      this.emit('warning', `could not save the metadata: ${(e as Error).message}`);
    }
  }

  private markResumeDirty(now = false): void {
    this.resumeDirty = true;
    if (now) {
      void this.saveResumeNow();
      return;
    }
    if (this.resumeTimer || this.stopped) return;
    const rt = this.host.runtime;
    this.resumeTimer = rt.timers.at(rt.clock.now() + RESUME_EVERY_MS, () => {
      this.resumeTimer = undefined;
      void this.saveResumeNow();
    });
  }

  /** Writes resume data (only pieces whose data is on disk are ever recorded). */
  async saveResumeNow(): Promise<void> {
    while (this.resumeSaving) await this.resumeSaving;
    if (!this.resumeDirty || !this.storage || !this.core) return;
    this.resumeDirty = false;
    const have = this.core.haveBitfield();
    if (!have) return;
    const storage = this.storage;
    this.resumeSaving = (async () => {
      try {
        const files = await storage.fileStats();
        await saveResume(resumePath(this.metaDir, this.infoHashHex), { infoHashHex: this.infoHashHex, have: have.toBuffer(), files });
      } catch (e) {
        this.emit('warning', `could not save resume data: ${(e as Error).message}`);
      } finally {
        this.resumeSaving = undefined;
      }
    })();
    await this.resumeSaving;
  }

  private fail(e: Error): void {
    if (this.failed) return;
    this.failed = e;
    this.emit('error', e);
    void this.stop();
  }

  /** Announces `stopped`, closes every connection, writes resume data. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.timer?.cancel();
    this.resumeTimer?.cancel();
    this.dhtAnnouncer?.stop();
    if (this.core) {
      this.core.stop();
      for (let a = this.core.pollAction(); a; a = this.core.pollAction()) if (a.type === 'send' || a.type === 'close') this.act(a);
    }
    for (const s of this.streams.values()) s.destroy();
    for (const t of this.closeTimers) t.cancel();
    this.closeTimers.clear();
    const stopAnnounce = this.announcer?.stop(2000);
    for (const list of this.pendingWrites.values()) await Promise.all(list);
    this.resumeDirty = true;
    await this.saveResumeNow();
    await stopAnnounce;
    await this.storage?.close();
  }
}
