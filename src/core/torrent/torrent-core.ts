/**
 * One torrent's swarm logic, sans-I/O: every peer connection's wire protocol
 * (BEP 3 with the fast extension BEP 6, the extension protocol BEP 10,
 * metadata exchange BEP 9 and peer exchange BEP 11), the piece picker, the
 * choker, request pipelining and timeouts, bad-data handling and bans.
 *
 * The driver (src/client/torrent.ts on real sockets, or the simulator) owns
 * the connections, the disk and the clock. It feeds the core:
 *   addPeer / peerData / peerClosed / connectFailed      connections
 *   blockRead / readFailed / pieceHashed                 disk results
 *   setCongested                                         write backpressure
 *   handleTimeout(now)                                   at pollTimeout()
 * and drains `pollAction()` until it returns undefined, carrying out each
 * action: send bytes, close a connection, connect to a peer, read a block for
 * upload, write a received block, hash a completed piece — and handling the
 * events (piece verified, complete, metadata, ban, ...).
 *
 * Peers are numeric handles the driver assigns. Nothing here reads the
 * clock, sets a timer, or touches a socket or a file.
 */
import { Bitfield, MessageReader, PeerWireError, allowedFastSet, encodeHandshake, encodeMessage, encodePieceHeader, type Message, type MessageInput, type ReaderItem } from '../../codec/peer-wire.js';
import { EXT_HANDSHAKE_ID, UT_METADATA, UT_PEX, decodeExtHandshake, decodeMetadataMessage, decodePex, encodeExtHandshake, encodeMetadataMessage, encodePex, metadataPieceCount, METADATA_PIECE_SIZE } from '../../codec/extensions.js';
import { parseIp } from '../../codec/ip.js';
import { CodecError } from '../../codec/errors.js';
import { parseInfoDictionary, type Metainfo } from '../../codec/metainfo.js';
import { Choker } from '../choker.js';
import { PiecePicker, type BlockRequest } from '../piece-picker.js';
import type { Endpoint, Random } from '../../runtime/contract.js';
import { endpointKey } from '../../runtime/contract.js';
import { MetadataFetcher } from './metadata-fetcher.js';
import { RateMeter } from './rate.js';
import { LatencyEstimator, QUEUE_MAX_DEPTH, requestQueueDepth } from './request-queue.js';
import { TokenBucket } from './token-bucket.js';

export type PeerHandle = number;

/** The part of a metainfo the core needs. */
export interface TorrentLayout {
  readonly pieceCount: number;
  readonly pieceLength: number;
  readonly length: number;
  readonly private: boolean;
  /** Raw info dictionary, served to peers over BEP 9. */
  readonly infoBytes?: Buffer | undefined;
}

export interface TorrentCoreOptions {
  readonly infoHash: Uint8Array;
  readonly peerId: Uint8Array;
  readonly random: Random;
  /** Known when started from a .torrent; undefined for a magnet link (fetched with BEP 9). */
  readonly layout?: TorrentLayout | undefined;
  /** Pieces already verified (resume data or a recheck). */
  readonly have?: Iterable<number>;
  /** Our TCP listen port, told to peers in the extension handshake. */
  readonly listenPort?: number;
  readonly clientName?: string;
  /**
   * Our DHT node's UDP port (BEP 5). When set, our handshake sets the DHT
   * bit and a peer that sets it too is sent a `port` message (not for
   * private torrents, which stay off the DHT).
   */
  readonly dhtPort?: number;
  readonly maxPeers?: number;
  /** Outgoing connection attempts in flight at once. */
  readonly maxConnecting?: number;
  readonly sequential?: boolean;
  /** Shared or own limits, in bytes per second. */
  readonly uploadLimiter?: TokenBucket;
  readonly downloadLimiter?: TokenBucket;
  /** Choking (src/core/choker.ts): peers unchoked by rate. Default 4. */
  readonly regularUnchokeSlots?: number;
  /** Peers unchoked regardless of rate. Default 1. */
  readonly optimisticSlots?: number;
  /** Default 30 000. */
  readonly optimisticIntervalMs?: number;
  /** Default 10 000. */
  readonly rechokeIntervalMs?: number;
  /** A peer we are interested in that sends no block for this long loses its regular slot (anti-snubbing). Default 60 000. */
  readonly snubTimeoutMs?: number;
  /** A peer with requests outstanding that sends nothing for this long is snubbed and its requests re-issued. */
  readonly requestTimeoutMs?: number;
  readonly handshakeTimeoutMs?: number;
  /** Peer exchange (BEP 11); always off for private torrents. Default on. */
  readonly pex?: boolean;
  /** Bad pieces a peer may share in before it is banned (sole sender: banned at once). */
  readonly maxStrikes?: number;
  /**
   * Most requests we queue from one peer (our `reqq`). Default 2000, as
   * libtorrent. It bounds a peer's pipeline: Transmission 3.00 tops up its
   * requests only in a 500 ms pulse and never beyond our reqq, so 500 capped
   * it at about 16 MB/s from us.
   */
  readonly maxIncomingRequests?: number;
  /**
   * Most requests we keep outstanding at one peer, whatever its
   * bandwidth-delay product (the peer's reqq bounds it too). Default 500
   * (8 MiB), as libtorrent.
   */
  readonly maxRequestQueue?: number;
  /** Stay connected as a seed (false: the driver will stop after completing). */
  readonly seedWhenDone?: boolean;
}

export type TorrentAction =
  | { readonly type: 'send'; readonly peer: PeerHandle; readonly data: readonly Uint8Array[] }
  /**
   * Close the connection. `kind` says why: 'violation' (the peer broke the
   * protocol: oversized or malformed messages, out-of-range requests or
   * indexes, messages out of order), 'ban' (bad data; a `banned` action came
   * first) or 'normal' (limits, timeouts, duplicates, both seeds, stop).
   */
  | { readonly type: 'close'; readonly peer: PeerHandle; readonly reason: string; readonly kind: CloseKind }
  /** Dial a known peer; `source` is where we heard of it ('user', 'tracker', 'pex', 'dht', ...). */
  | { readonly type: 'connect'; readonly endpoint: Endpoint; readonly source: string }
  | { readonly type: 'read'; readonly peer: PeerHandle; readonly index: number; readonly begin: number; readonly length: number }
  | { readonly type: 'write'; readonly index: number; readonly begin: number; readonly data: Buffer }
  | { readonly type: 'verify'; readonly index: number }
  | { readonly type: 'metadata'; readonly metainfo: Metainfo }
  | { readonly type: 'peer-ready'; readonly peer: PeerHandle; readonly endpoint: Endpoint; readonly client: string }
  | { readonly type: 'piece-verified'; readonly index: number }
  | { readonly type: 'piece-failed'; readonly index: number; readonly peers: readonly Endpoint[] }
  | { readonly type: 'banned'; readonly endpoint: Endpoint; readonly reason: string }
  | { readonly type: 'complete' }
  | { readonly type: 'want-peers' }
  | { readonly type: 'dht-port'; readonly endpoint: Endpoint; readonly port: number };

export type CloseKind = 'violation' | 'ban' | 'normal';

export interface PeerSnapshot {
  readonly handle: PeerHandle;
  readonly endpoint: Endpoint;
  readonly direction: 'in' | 'out';
  readonly client: string;
  readonly amChoking: boolean;
  readonly amInterested: boolean;
  readonly peerChoking: boolean;
  readonly peerInterested: boolean;
  readonly downloadRate: number;
  readonly uploadRate: number;
  readonly downloaded: number;
  readonly uploaded: number;
  /** Fraction of pieces the peer has (0..1), when known. */
  readonly progress: number;
  readonly outstanding: number;
  /** Requests we aim to keep outstanding at it (bandwidth-delay product, request-queue.ts). */
  readonly queueDepth: number;
  /** Its request round trip as estimated (ms), once measured. */
  readonly latencyMs: number | undefined;
  readonly queued: number;
  readonly snubbed: boolean;
  readonly optimistic: boolean;
}

/** See TorrentCore.pieceMap. */
export interface PieceMap {
  readonly pieceCount: number;
  readonly piecesPerCell: number;
  /** Pieces we have, per cell. */
  readonly have: readonly number[];
  /** Connected peers holding the cell's rarest piece. */
  readonly rarest: readonly number[];
}

export interface TorrentStats {
  readonly downloaded: number;
  readonly uploaded: number;
  /** Bytes of pieces that failed verification. */
  readonly wasted: number;
  readonly downloadRate: number;
  readonly uploadRate: number;
  readonly peers: number;
  readonly connecting: number;
  readonly knownPeers: number;
  readonly piecesDone: number;
  readonly pieceCount: number;
  /** Bytes still wanted (unknown while the metadata is being fetched). */
  readonly left: number | undefined;
  readonly complete: boolean;
  readonly hasMetadata: boolean;
  readonly metadataProgress: number;
  readonly endgame: boolean;
  readonly banned: number;
}

const BLOCK = 16 * 1024;
const MAX_BLOCK = 128 * 1024;
const LOCAL_UT_METADATA = 1;
const LOCAL_UT_PEX = 2;
const TICK_MS = 1000;
const KEEPALIVE_MS = 110_000;
const IDLE_MS = 240_000;
const PEX_INTERVAL_MS = 60_000;
/** Reconnection to a known peer after its connection closed: first delay, growth x3, cap. */
const RETRY_FIRST_MS = 2_000;
const RETRY_MAX_MS = 60_000;
const RETRY_RESET_SESSION_MS = 60_000;
const USER_RETRY_MAX_MS = 30_000;
const METADATA_TIMEOUT_MS = 20_000;
/**
 * A request the peer has passed over (a later one of ours was answered) for
 * longer than this, and than OVERTAKEN_LATENCIES times its round trip, is
 * taken as lost and asked again (see reissueOvertaken).
 */
const OVERTAKEN_MIN_MS = 2_000;
const OVERTAKEN_LATENCIES = 4;
/** Answers within this long of the last pass mark raise that mark instead of adding one. */
const PASSED_MARK_GRAIN_MS = 100;
const MAX_PASSED_MARKS = 1024;
const METADATA_IDLE_MS = 60_000;
const MAX_KNOWN_PEERS = 2000;
const ALLOWED_FAST_K = 10;
const MAX_READS_IN_FLIGHT = 16;
const MAX_DEPARTED = 4096;
/** Pieces remembered as recently served, and suggested to a new peer at most (BEP 6). */
const SUGGEST_RECENT = 16;
const SUGGEST_MAX = 4;

interface Peer {
  readonly handle: PeerHandle;
  readonly endpoint: Endpoint;
  readonly direction: 'in' | 'out';
  readonly reader: MessageReader;
  readonly createdAt: number;
  ready: boolean;
  sentHandshake: boolean;
  peerIdHex: string;
  client: string;
  fast: boolean;
  extended: boolean;
  /** Their ids for extension messages. */
  extIds: Map<string, number>;
  reqq: number;
  listenPort: number | undefined;
  amChoking: boolean;
  amInterested: boolean;
  peerChoking: boolean;
  peerInterested: boolean;
  bitfield: Bitfield | undefined;
  haveAll: boolean;
  /** Haves that arrived before the metadata (magnet). */
  early: Set<number> | undefined;
  earlyBitfield: Buffer | undefined;
  messages: number;
  /** Our outstanding requests to them: key index*2^20+begin/16K... (see blockKey). */
  outReqs: Map<number, { index: number; begin: number; length: number; at: number; ahead: number; seq: number }>;
  /** Sequence number of the next request we send it. */
  reqSeq: number;
  /**
   * Pass marks: the highest sequence number answered so far (the last
   * entry) and, before it, how it rose over time (both ascending, at most
   * one mark per PASSED_MARK_GRAIN_MS), so the first time a request was
   * passed over is a binary search away. Marks at or below the oldest
   * outstanding request are dropped; at most MAX_PASSED_MARKS.
   */
  passedSeqs: number[];
  passedAts: number[];
  /** Request round trip (request-queue.ts), for the pipeline depth. */
  latency: LatencyEstimator;
  /** Its rate over the last second: the pipeline follows a rising rate sooner than `down` (5 s) shows it. */
  downRecent: RateMeter;
  /** Their requests waiting to be read from disk. */
  inQueue: BlockRequest[];
  /** Their requests being read right now (cancelled ones are marked false). */
  reading: Map<number, boolean>;
  allowedFastIn: Set<number>;
  allowedFastOut: Set<number>;
  congested: boolean;
  down: RateMeter;
  up: RateMeter;
  lastReceivedAt: number;
  lastSentAt: number;
  /** Something was sent since the last tick. */
  sentSinceTick: boolean;
  /** A have, bitfield, have-all or have-none arrived (a bitfield after that is a violation). */
  gotHaves: boolean;
  lastBlockAt: number;
  snubbedUntil: number;
  strikes: number;
  metadataAsked: number;
  /** The metadata_size it announced (BEP 9): it is only asked for metadata of that size. */
  metadataSize: number | undefined;
  /** It rejected or did not answer a metadata request: not asked again before this. */
  metadataIdleUntil: number;
  pexSent: Set<string>;
  lastPexAt: number;
  /** We sent it our suggestions (once per connection). */
  suggested: boolean;
  outbox: Uint8Array[];
  closed: boolean;
}

interface KnownPeer {
  readonly endpoint: Endpoint;
  attempts: number;
  nextAttemptAt: number;
  connected: boolean;
  source: string;
  /** Connections to it that ended in a row without a long session: spaces out the retries. */
  drops: number;
}

function blockKey(index: number, begin: number): number {
  return index * 0x100000000 + begin;
}

/** A readable client name from an Azureus-style peer id (-TR3000-, -lt0D60-, -WW0107-, ...). */
export function clientFromPeerId(id: Uint8Array): string {
  const s = Buffer.from(id).toString('latin1');
  const m = /^-([A-Za-z~]{2})([0-9A-Za-z]{4})-/.exec(s);
  if (!m) return 'unknown';
  const names: Record<string, string> = { TR: 'Transmission', lt: 'libtorrent', LT: 'libtorrent', qB: 'qBittorrent', UT: 'µTorrent', DE: 'Deluge', WW: 'WebTorrent', PK: 'peerkit', AZ: 'Vuze', BT: 'BitTorrent', KT: 'KTorrent' };
  return `${names[m[1]!] ?? m[1]} ${m[2]}`;
}

export class TorrentCore {
  private readonly o: TorrentCoreOptions;
  private readonly random: Random;
  private layout: TorrentLayout | undefined;
  private picker: PiecePicker<PeerHandle> | undefined;
  private readonly choker: Choker<PeerHandle>;
  private readonly peers = new Map<PeerHandle, Peer>();
  private readonly byPeerId = new Map<string, PeerHandle>();
  private readonly known = new Map<string, KnownPeer>();
  private readonly bannedHosts = new Set<string>();
  /** Endpoints of peers that left, by handle (bounded), for blaming them for bad pieces. */
  private readonly departed = new Map<PeerHandle, Endpoint>();
  /** Pieces read for upload lately, oldest first (see sendSuggestions). */
  private readonly recentlyServed = new Set<number>();
  private readonly connecting = new Set<string>();
  private readonly queue: TorrentAction[] = [];
  private readonly dirty = new Set<Peer>();
  private metadata: MetadataFetcher<PeerHandle> | undefined;
  /** The info dictionary matched the hash but cannot be used: not fetched again. */
  private metadataUnusable = false;
  private readonly upLimit: TokenBucket;
  private readonly downLimit: TokenBucket;
  private readonly down = new RateMeter();
  private readonly up = new RateMeter();
  private wasted = 0;
  private nextTickAt: number | undefined;
  private announcedComplete = false;
  private readonly ourHandshake: Buffer;
  private readonly maxPeers: number;
  private readonly maxConnecting: number;
  private readonly requestTimeoutMs: number;
  private readonly handshakeTimeoutMs: number;
  private readonly maxStrikes: number;
  private readonly maxIncoming: number;
  private readonly maxRequestQueue: number;
  private readonly pexEnabled: () => boolean;
  private stopped = false;
  private limiterWakeAt: number | undefined;
  /** The time of the latest input, for work triggered deep inside (refills after a close). */
  private now = 0;

  constructor(options: TorrentCoreOptions) {
    this.o = options;
    this.random = options.random;
    this.maxPeers = options.maxPeers ?? 50;
    this.maxConnecting = options.maxConnecting ?? 8;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 20_000;
    this.maxStrikes = options.maxStrikes ?? 3;
    this.maxIncoming = options.maxIncomingRequests ?? 2000;
    this.maxRequestQueue = options.maxRequestQueue ?? QUEUE_MAX_DEPTH;
    this.upLimit = options.uploadLimiter ?? new TokenBucket(0);
    this.downLimit = options.downloadLimiter ?? new TokenBucket(0);
    this.pexEnabled = () => (options.pex ?? true) && !(this.layout?.private ?? false);
    this.choker = new Choker<PeerHandle>({
      random: this.random,
      regularSlots: options.regularUnchokeSlots ?? 4,
      optimisticSlots: options.optimisticSlots ?? 1,
      optimisticIntervalMs: options.optimisticIntervalMs ?? 30_000,
      rechokeIntervalMs: options.rechokeIntervalMs ?? 10_000,
      snubTimeoutMs: options.snubTimeoutMs ?? 60_000,
    });
    const dht = options.dhtPort !== undefined && options.dhtPort > 0 && options.dhtPort < 65536 && !options.layout?.private;
    this.ourHandshake = encodeHandshake({ infoHash: options.infoHash, peerId: options.peerId, reserved: { extended: true, fast: true, dht } });
    if (options.layout) this.setLayout(options.layout, options.have);
  }

  // ------------------------------------------------------------ state

  get hasMetadata(): boolean {
    return this.layout !== undefined;
  }

  get isComplete(): boolean {
    return this.picker?.isDone ?? false;
  }

  /** The pieces we have, as a bitfield (undefined before the metadata). */
  haveBitfield(): Bitfield | undefined {
    const p = this.picker;
    if (!p || !this.layout) return undefined;
    const bf = new Bitfield(this.layout.pieceCount);
    for (let i = 0; i < this.layout.pieceCount; i++) if (p.has(i)) bf.set(i);
    return bf;
  }

  /**
   * A bounded picture of the pieces for a display: at most `maxCells` cells
   * of `piecesPerCell` consecutive pieces each (the last cell may hold
   * fewer). For each cell, how many of its pieces we have and the fewest
   * connected peers that hold any of its pieces (its rarest piece).
   * Undefined before the metadata.
   */
  pieceMap(maxCells: number): PieceMap | undefined {
    const p = this.picker;
    const n = this.layout?.pieceCount ?? 0;
    if (!p || n === 0) return undefined;
    const cells = Math.max(1, Math.min(n, Math.floor(maxCells)));
    const per = Math.ceil(n / cells);
    const count = Math.ceil(n / per);
    const have: number[] = new Array<number>(count).fill(0);
    const rarest: number[] = new Array<number>(count).fill(Infinity);
    for (let i = 0; i < n; i++) {
      const c = Math.floor(i / per);
      if (p.has(i)) have[c]!++;
      const a = p.availability(i);
      if (a < rarest[c]!) rarest[c] = a;
    }
    return { pieceCount: n, piecesPerCell: per, have, rarest };
  }

  stats(now: number): TorrentStats {
    const p = this.picker;
    let left: number | undefined;
    if (p && this.layout) {
      left = 0;
      for (let i = 0; i < this.layout.pieceCount; i++) if (!p.has(i) && p.isWanted(i)) left += p.pieceSize(i);
    }
    return {
      downloaded: this.down.total,
      uploaded: this.up.total,
      wasted: this.wasted,
      downloadRate: this.down.rate(now),
      uploadRate: this.up.rate(now),
      peers: [...this.peers.values()].filter((x) => x.ready).length,
      connecting: this.connecting.size,
      knownPeers: this.known.size,
      piecesDone: p?.completed ?? 0,
      pieceCount: this.layout?.pieceCount ?? 0,
      left,
      complete: this.isComplete,
      hasMetadata: this.hasMetadata,
      metadataProgress: this.hasMetadata ? 1 : (this.metadata?.progress ?? 0),
      endgame: p?.inEndgame ?? false,
      banned: this.bannedHosts.size,
    };
  }

  peerSnapshots(now: number): PeerSnapshot[] {
    const out: PeerSnapshot[] = [];
    for (const x of this.peers.values()) {
      if (!x.ready) continue;
      const count = this.layout ? (x.haveAll ? this.layout.pieceCount : (x.bitfield?.count ?? 0)) : 0;
      out.push({
        handle: x.handle,
        endpoint: x.endpoint,
        direction: x.direction,
        client: x.client,
        amChoking: x.amChoking,
        amInterested: x.amInterested,
        peerChoking: x.peerChoking,
        peerInterested: x.peerInterested,
        downloadRate: x.down.rate(now),
        uploadRate: x.up.rate(now),
        downloaded: x.down.total,
        uploaded: x.up.total,
        progress: this.layout ? count / this.layout.pieceCount : 0,
        outstanding: x.outReqs.size,
        queueDepth: this.queueDepth(now, x),
        latencyMs: x.latency.latencyMs,
        queued: x.inQueue.length,
        snubbed: this.choker.isSnubbed(x.handle, now),
        optimistic: this.choker.isOptimistic(x.handle),
      });
    }
    return out;
  }

  // ------------------------------------------------------------ inputs: peers

  /** Candidate peers from a tracker, PEX, a magnet link or the DHT. */
  addPeers(now: number, endpoints: readonly Endpoint[], source: string): void {
    this.now = now;
    for (const e of endpoints) {
      if (this.known.size >= MAX_KNOWN_PEERS) break;
      if (!(e.port > 0 && e.port < 65536) || this.bannedHosts.has(e.host)) continue;
      const key = endpointKey(e);
      if (this.known.has(key)) continue;
      this.known.set(key, { endpoint: { host: e.host, port: e.port }, attempts: 0, nextAttemptAt: now, connected: false, source, drops: 0 });
    }
    this.connectMore(now);
  }

  /** A connection the driver opened (out) or accepted (in). `out` gets our handshake at once. */
  addPeer(now: number, handle: PeerHandle, endpoint: Endpoint, direction: 'in' | 'out'): void {
    this.now = now;
    if (this.peers.has(handle)) throw new RangeError(`peer handle ${handle} already in use`);
    const key = endpointKey(endpoint);
    this.connecting.delete(key);
    const peer: Peer = {
      handle,
      endpoint,
      direction,
      reader: new MessageReader({ expectHandshake: true, maxBlockLength: MAX_BLOCK }),
      createdAt: now,
      ready: false,
      sentHandshake: false,
      peerIdHex: '',
      client: 'unknown',
      fast: false,
      extended: false,
      extIds: new Map(),
      reqq: 64,
      listenPort: direction === 'out' ? endpoint.port : undefined,
      amChoking: true,
      amInterested: false,
      peerChoking: true,
      peerInterested: false,
      bitfield: undefined,
      haveAll: false,
      early: undefined,
      earlyBitfield: undefined,
      messages: 0,
      outReqs: new Map(),
      reqSeq: 0,
      passedSeqs: [],
      passedAts: [],
      latency: new LatencyEstimator(),
      downRecent: new RateMeter(1000, 125),
      inQueue: [],
      reading: new Map(),
      allowedFastIn: new Set(),
      allowedFastOut: new Set(),
      congested: false,
      down: new RateMeter(),
      up: new RateMeter(),
      lastReceivedAt: now,
      lastSentAt: now,
      sentSinceTick: false,
      gotHaves: false,
      lastBlockAt: now,
      snubbedUntil: 0,
      strikes: 0,
      metadataAsked: 0,
      metadataSize: undefined,
      metadataIdleUntil: 0,
      pexSent: new Set(),
      lastPexAt: now,
      suggested: false,
      outbox: [],
      closed: false,
    };
    this.peers.set(handle, peer);
    const k = this.known.get(key);
    if (k && direction === 'out') k.connected = true;
    if (this.stopped) {
      this.close(peer, 'torrent stopped');
      return;
    }
    if (this.bannedHosts.has(endpoint.host)) {
      this.close(peer, 'banned address');
      return;
    }
    // The new connection is in `peers` already: more than maxPeers open ones means no room for it.
    if (this.readyCount() > this.maxPeers) {
      this.close(peer, 'too many peers');
      return;
    }
    if (direction === 'out') this.sendRaw(peer, this.ourHandshake, true);
    this.scheduleTick(now);
  }

  /** An outgoing connection attempt failed. */
  connectFailed(now: number, endpoint: Endpoint): void {
    this.now = now;
    const key = endpointKey(endpoint);
    this.connecting.delete(key);
    const k = this.known.get(key);
    if (k) {
      k.connected = false;
      k.attempts++;
      if (k.source === 'user') {
        // A peer the user named is never given up on (it may not be up yet): 2 s, 4 s, 8 s... at most every 30 s.
        k.nextAttemptAt = now + Math.min(USER_RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.min(k.attempts - 1, 10));
      } else if (k.attempts >= 5) this.known.delete(key);
      else k.nextAttemptAt = now + 15_000 * 2 ** (k.attempts - 1);
    }
    this.connectMore(now);
  }

  /**
   * Bytes from a peer. `borrowed`: the driver will reuse `data`'s memory once it has carried
   * out the actions this call queues (drain `pollAction()` first); the core copies what it keeps.
   */
  peerData(now: number, handle: PeerHandle, data: Uint8Array, borrowed = false): void {
    this.now = now;
    const peer = this.peers.get(handle);
    if (!peer || peer.closed) return;
    peer.lastReceivedAt = now;
    peer.reader.push(data, borrowed);
    try {
      this.readItems(now, peer);
    } finally {
      if (borrowed) peer.reader.detach();
    }
  }

  private readItems(now: number, peer: Peer): void {
    try {
      for (;;) {
        let item: ReaderItem | undefined;
        try {
          item = peer.reader.next();
        } catch (e) {
          if (e instanceof PeerWireError && e.recoverable) continue; // unknown message id: skipped, as BEP 3 allows
          throw e;
        }
        if (!item) break;
        this.onItem(now, peer, item);
        if (peer.closed) return;
      }
    } catch (e) {
      if (e instanceof CodecError) this.close(peer, `protocol error: ${e.message}`, 'violation');
      else throw e;
      return;
    }
    this.fillRequests(now, peer);
  }

  peerClosed(now: number, handle: PeerHandle, reason = 'closed by peer'): void {
    this.now = now;
    const peer = this.peers.get(handle);
    if (!peer) return;
    void reason;
    this.forget(now, peer);
  }

  /** The driver's socket buffer is full (true) or drained (false). */
  setCongested(now: number, handle: PeerHandle, congested: boolean): void {
    this.now = now;
    const peer = this.peers.get(handle);
    if (!peer) return;
    peer.congested = congested;
    if (!congested) this.serveReads(now, peer);
  }

  // ------------------------------------------------------------ inputs: disk

  /** A block the driver read for upload. */
  blockRead(now: number, handle: PeerHandle, index: number, begin: number, data: Buffer): void {
    this.now = now;
    const peer = this.peers.get(handle);
    if (!peer || peer.closed) return;
    const key = blockKey(index, begin);
    const live = peer.reading.get(key);
    peer.reading.delete(key);
    if (live) {
      this.sendRaw(peer, encodePieceHeader(index, begin, data.length));
      this.sendRaw(peer, data);
      peer.up.add(now, data.length);
      this.up.add(now, data.length);
      this.choker.setUploadRate(peer.handle, peer.up.rate(now));
    }
    this.serveReads(now, peer);
  }

  readFailed(now: number, handle: PeerHandle, index: number, begin: number, length: number): void {
    this.now = now;
    const peer = this.peers.get(handle);
    if (!peer) return;
    const key = blockKey(index, begin);
    const live = peer.reading.get(key);
    peer.reading.delete(key);
    // A cancelled read was answered with a reject already.
    if (live && peer.fast) this.send(peer, { type: 'reject', index, begin, length });
    this.serveReads(now, peer);
  }

  /** The result of hashing a piece after a `verify` action. */
  pieceHashed(now: number, index: number, ok: boolean): void {
    this.now = now;
    const picker = this.picker;
    if (!picker || picker.has(index)) return;
    if (ok) {
      for (const c of picker.pieceVerified(index)) {
        const p = this.peers.get(c.peer);
        if (p) {
          p.outReqs.delete(blockKey(c.index, c.begin));
          this.send(p, { type: 'cancel', index: c.index, begin: c.begin, length: c.length });
        }
      }
      this.queue.push({ type: 'piece-verified', index });
      for (const p of this.peers.values()) {
        if (!p.ready) continue;
        this.send(p, { type: 'have', index });
        this.updateInterest(now, p);
      }
      if (picker.isDone && !this.announcedComplete) {
        this.announcedComplete = true;
        this.queue.push({ type: 'complete' });
        this.rechoke(now);
        for (const p of this.peers.values()) if (p.ready && this.isSeed(p)) this.close(p, 'both seeds');
      }
    } else {
      const contributors = picker.pieceFailed(index);
      this.wasted += picker.pieceSize(index);
      // Peers gone before the hash came back (perhaps on purpose) are still to blame.
      const blamed: { peer: Peer | undefined; endpoint: Endpoint }[] = [];
      for (const h of contributors) {
        const p = this.peers.get(h);
        const endpoint = p?.endpoint ?? this.departed.get(h);
        if (endpoint) blamed.push({ peer: p, endpoint });
      }
      // A contributor already banned for bad data explains the failure: the others, who
      // merely shared the piece with it, get no strike (or an honest seed that shared
      // pieces with a fast bad peer would soon be banned too, with every hash result
      // that was still on its way).
      const explained = blamed.some((b) => this.bannedHosts.has(b.endpoint.host));
      for (const { peer: p, endpoint } of explained ? [] : blamed) {
        if (!p) {
          if (contributors.size === 1) this.banHost(endpoint, 'sent data for a piece that failed the hash check');
          continue;
        }
        p.strikes++;
        if (contributors.size === 1 || p.strikes >= this.maxStrikes) this.ban(p, `sent data for ${p.strikes} piece(s) that failed the hash check`);
      }
      this.queue.push({ type: 'piece-failed', index, peers: blamed.map((b) => b.endpoint) });
    }
    for (const p of this.peers.values()) if (p.ready && !p.closed) this.fillRequests(now, p);
  }

  // ------------------------------------------------------------ inputs: time

  pollTimeout(): number | undefined {
    let t = this.nextTickAt;
    if (this.picker && this.peers.size > 0) {
      const r = this.choker.nextRechokeAt();
      t = t === undefined ? r : Math.min(t, r);
    }
    if (this.limiterWakeAt !== undefined) t = t === undefined ? this.limiterWakeAt : Math.min(t, this.limiterWakeAt);
    return t === undefined ? undefined : Math.max(t, 0);
  }

  handleTimeout(now: number): void {
    this.now = now;
    if (this.limiterWakeAt !== undefined && now >= this.limiterWakeAt) {
      this.limiterWakeAt = undefined;
      for (const p of this.peers.values()) {
        this.serveReads(now, p);
        this.fillRequests(now, p);
      }
    }
    if (this.picker && this.peers.size > 0 && now >= this.choker.nextRechokeAt()) this.rechoke(now);
    if (this.nextTickAt !== undefined && now >= this.nextTickAt) {
      this.nextTickAt = undefined;
      this.tick(now);
    }
  }

  /** Starts the tick (connect attempts, keep-alives, timeouts). */
  start(now: number): void {
    this.now = now;
    this.stopped = false;
    this.scheduleTick(now);
    this.connectMore(now);
  }

  /** Closes every connection. */
  stop(): void {
    this.stopped = true;
    for (const p of [...this.peers.values()]) this.close(p, 'torrent stopped');
    this.nextTickAt = undefined;
  }

  // ------------------------------------------------------------ outputs

  pollAction(): TorrentAction | undefined {
    for (const p of this.dirty) {
      this.dirty.delete(p);
      if (p.outbox.length === 0 || p.closed) continue;
      const data = p.outbox;
      p.outbox = [];
      return { type: 'send', peer: p.handle, data };
    }
    return this.queue.shift();
  }

  /** Metadata parsed and checked by the driver for a .torrent added later, or by us from BEP 9. */
  setMetadata(now: number, layout: TorrentLayout): void {
    this.now = now;
    if (this.layout) return;
    this.setLayout(layout, []);
    this.metadata = undefined;
    for (const p of this.peers.values()) {
      if (!p.ready) continue;
      this.applyEarlyHaves(p);
      this.updateInterest(now, p);
      this.fillRequests(now, p);
    }
  }

  // ------------------------------------------------------------ internals

  private setLayout(layout: TorrentLayout, have: Iterable<number> | undefined): void {
    this.layout = layout;
    this.picker = new PiecePicker<PeerHandle>({
      pieceCount: layout.pieceCount,
      pieceLength: layout.pieceLength,
      totalLength: layout.length,
      random: this.random,
      mode: this.o.sequential ? 'sequential' : 'rarest',
    });
    for (const i of have ?? []) this.picker.setHave(i);
    if (this.picker.isDone) this.announcedComplete = true;
  }

  private readyCount(): number {
    let n = 0;
    for (const p of this.peers.values()) if (!p.closed) n++;
    return n;
  }

  private isSeed(p: Peer): boolean {
    return p.haveAll || (p.bitfield !== undefined && p.bitfield.count === p.bitfield.length && p.bitfield.length > 0);
  }

  private scheduleTick(now: number): void {
    if (this.nextTickAt === undefined && !this.stopped) this.nextTickAt = now + TICK_MS;
  }

  private connectMore(now: number): void {
    if (this.stopped) return;
    if (this.isComplete && !(this.o.seedWhenDone ?? true)) return;
    let room = Math.min(this.maxPeers - this.readyCount(), this.maxConnecting) - this.connecting.size;
    if (room <= 0) return;
    const connectedHosts = new Set<string>();
    for (const p of this.peers.values()) connectedHosts.add(endpointKey(p.endpoint));
    for (const [key, k] of this.known) {
      if (room <= 0) break;
      if (k.connected || this.connecting.has(key) || connectedHosts.has(key) || k.nextAttemptAt > now) continue;
      k.connected = true;
      this.connecting.add(key);
      this.queue.push({ type: 'connect', endpoint: k.endpoint, source: k.source });
      room--;
    }
  }

  private tick(now: number): void {
    this.scheduleTick(now);
    for (const p of [...this.peers.values()]) {
      if (p.closed) continue;
      if (!p.ready) {
        if (now - p.createdAt > this.handshakeTimeoutMs) this.close(p, 'no handshake');
        continue;
      }
      if (now - p.lastReceivedAt > IDLE_MS) {
        this.close(p, 'inactive');
        continue;
      }
      if (p.sentSinceTick) {
        p.sentSinceTick = false;
        p.lastSentAt = now;
      } else if (now - p.lastSentAt > KEEPALIVE_MS) this.send(p, { type: 'keep-alive' });
      // Requests that went unanswered: the peer is snubbing us; hand its blocks to others.
      // The wait counts from the last block or, if later, from the oldest request still
      // outstanding: a peer that kept us choked for a while is not late the moment it unchokes.
      if (p.outReqs.size > 0 && this.picker && now - Math.max(p.lastBlockAt, this.oldestRequestAt(p)) > this.requestTimeoutMs) {
        for (const r of p.outReqs.values()) {
          this.picker.requestTimedOut(p.handle, r.index, r.begin);
          // Cancelled, so a later request for the block (to this peer too) is not a duplicate to it.
          this.send(p, { type: 'cancel', index: r.index, begin: r.begin, length: r.length });
        }
        p.outReqs.clear();
        p.snubbedUntil = now + this.requestTimeoutMs;
        this.choker.markSnubbed(p.handle, true);
        for (const q of this.peers.values()) if (q !== p) this.fillRequests(now, q);
      } else if (p.outReqs.size > 0 && this.picker && p.passedSeqs.length > 0) this.reissueOvertaken(now, p);
      else if (p.outReqs.size === 0 && p.passedSeqs.length > 0) {
        p.passedSeqs.length = 0; // nothing outstanding: no mark can pass a later request
        p.passedAts.length = 0;
      }
      this.choker.setDownloadRate(p.handle, p.down.rate(now));
      this.choker.setUploadRate(p.handle, p.up.rate(now));
      if (this.pexEnabled() && now - p.lastPexAt >= PEX_INTERVAL_MS) this.sendPex(now, p);
      this.fillRequests(now, p);
    }
    if (!this.layout) {
      for (const h of this.metadata?.expire(now, METADATA_TIMEOUT_MS) ?? []) {
        const p = this.peers.get(h);
        if (!p) continue;
        p.metadataAsked = Math.max(0, p.metadataAsked - 1);
        // Too slow: ask the others first (it would otherwise be asked again at once).
        p.metadataIdleUntil = now + METADATA_IDLE_MS;
      }
      this.ensureMetadataFetcher();
      this.requestMetadataAll(now, true);
    }
    // Forget attempts that will never succeed, and look for more peers.
    this.connectMore(now);
    if (!this.isComplete && this.readyCount() < Math.min(this.maxPeers, 10) && this.connecting.size === 0) {
      const idle = [...this.known.values()].every((k) => k.connected || k.nextAttemptAt > now);
      if (idle) this.queue.push({ type: 'want-peers' });
    }
  }

  /**
   * Requests the peer has passed over for a while: a block we asked for
   * later came more than OVERTAKEN_MIN_MS (and OVERTAKEN_LATENCIES round
   * trips) ago, and they are still outstanding. Peers serve their queue
   * nearly in order (a seeder may answer from its cache before a disk read
   * completes, which reorders by milliseconds), so such a request was
   * dropped: Transmission 3.00 now and then holds one of a full queue for
   * seconds and then rejects it, which at the end of a download stalled it
   * for 8.5 s of 36 (bench:download --only b --size 256). Cancelled and asked
   * again (of this peer too), instead of waiting for the request timeout; a
   * block that comes anyway is accepted if still missing, else ignored. The
   * wait counts from the first time the request was passed, not from when it
   * was sent: at a rate-limited peer every request waits seconds in its
   * queue, and a small reordering there must not send requests to the back.
   */
  private reissueOvertaken(now: number, p: Peer): void {
    const picker = this.picker!;
    const wait = Math.max(OVERTAKEN_MIN_MS, OVERTAKEN_LATENCIES * (p.latency.latencyMs ?? 0));
    const seqs = p.passedSeqs;
    const ats = p.passedAts;
    let minSeq = Infinity;
    for (const r of p.outReqs.values()) if (r.seq < minSeq) minSeq = r.seq;
    // Marks at or below the oldest outstanding request can never be the first to pass one.
    let drop = 0;
    while (drop < seqs.length && seqs[drop]! <= minSeq) drop++;
    if (drop > 0) {
      seqs.splice(0, drop);
      ats.splice(0, drop);
    }
    if (seqs.length === 0) return;
    const answered = seqs[seqs.length - 1]!;
    let reissued = false;
    for (const [key, r] of p.outReqs) {
      if (r.seq >= answered) continue;
      // The first mark above r.seq: when r was first passed over.
      let lo = 0;
      let hi = seqs.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (seqs[mid]! > r.seq) hi = mid;
        else lo = mid + 1;
      }
      if (lo >= seqs.length || now - ats[lo]! <= wait) continue;
      p.outReqs.delete(key);
      picker.requestTimedOut(p.handle, r.index, r.begin);
      this.send(p, { type: 'cancel', index: r.index, begin: r.begin, length: r.length });
      reissued = true;
    }
    if (reissued) for (const q of this.peers.values()) this.fillRequests(now, q);
  }

  private oldestRequestAt(p: Peer): number {
    let t = Infinity;
    for (const r of p.outReqs.values()) if (r.at < t) t = r.at;
    return t;
  }

  private rechoke(now: number): void {
    const seeding = this.isComplete;
    for (const p of this.peers.values()) {
      if (!p.ready) continue;
      this.choker.setDownloadRate(p.handle, p.down.rate(now));
      this.choker.setUploadRate(p.handle, p.up.rate(now));
    }
    const { unchoke, choke } = this.choker.rechoke(now, { seeding });
    for (const h of choke) {
      const p = this.peers.get(h);
      if (!p || p.amChoking) continue;
      p.amChoking = true;
      this.send(p, { type: 'choke' });
      // Requests of a choked peer are dropped (BEP 3), or rejected one by one (BEP 6).
      const keep: BlockRequest[] = [];
      for (const r of p.inQueue) {
        if (p.allowedFastOut.has(r.index)) keep.push(r);
        else if (p.fast) this.send(p, { type: 'reject', index: r.index, begin: r.begin, length: r.length });
      }
      p.inQueue = keep;
    }
    for (const h of unchoke) {
      const p = this.peers.get(h);
      if (!p || !p.amChoking) continue;
      p.amChoking = false;
      this.send(p, { type: 'unchoke' });
      this.serveReads(now, p);
    }
  }

  private onItem(now: number, peer: Peer, item: ReaderItem): void {
    switch (item.type) {
      case 'handshake':
        this.onHandshake(now, peer, item.infoHash, item.peerId, item.extended, item.fast, item.dht);
        return;
      case 'handshake-start':
      case 'handshake-peer-id':
        return; // not used: the reader is in whole-handshake mode
      default:
        this.onMessage(now, peer, item);
    }
  }

  private onHandshake(now: number, peer: Peer, infoHash: Buffer, peerId: Buffer, extended: boolean, fast: boolean, dht: boolean): void {
    if (!infoHash.equals(this.o.infoHash)) {
      this.close(peer, 'handshake for another torrent');
      return;
    }
    if (peerId.equals(this.o.peerId)) {
      // Connected to ourselves: never try this address again.
      this.known.delete(endpointKey(peer.endpoint));
      this.close(peer, 'connected to ourselves');
      return;
    }
    const idHex = peerId.toString('hex');
    const existing = this.byPeerId.get(idHex);
    if (existing !== undefined && this.peers.get(existing)?.ready) {
      this.close(peer, 'duplicate connection');
      return;
    }
    if (peer.direction === 'in') this.sendRaw(peer, this.ourHandshake, true);
    peer.ready = true;
    peer.peerIdHex = idHex;
    peer.client = clientFromPeerId(peerId);
    peer.fast = fast;
    peer.extended = extended;
    this.byPeerId.set(idHex, peer.handle);
    this.choker.add(peer.handle, now);
    this.picker?.addPeer(peer.handle);
    if (extended) {
      const yourip = parseIp(peer.endpoint.host);
      this.send(peer, {
        type: 'extended',
        id: EXT_HANDSHAKE_ID,
        payload: encodeExtHandshake({
          m: { [UT_METADATA]: LOCAL_UT_METADATA, [UT_PEX]: this.pexEnabled() ? LOCAL_UT_PEX : 0 },
          v: this.o.clientName ?? 'peerkit',
          // Not listening (port 0) is no port to tell: the encoder would refuse it and cost us every peer.
          p: this.o.listenPort !== undefined && this.o.listenPort > 0 && this.o.listenPort < 65536 ? this.o.listenPort : undefined,
          reqq: this.maxIncoming,
          metadataSize: this.layout?.infoBytes?.length,
          yourip: yourip ?? undefined,
          uploadOnly: this.isComplete ? true : undefined,
        }),
      });
    }
    this.sendHaves(peer);
    const dhtPort = this.o.dhtPort;
    if (dht && dhtPort !== undefined && dhtPort > 0 && dhtPort < 65536 && !this.layout?.private) this.send(peer, { type: 'port', port: dhtPort });
    this.queue.push({ type: 'peer-ready', peer: peer.handle, endpoint: peer.endpoint, client: peer.client });
  }

  private sendHaves(peer: Peer): void {
    const picker = this.picker;
    const layout = this.layout;
    if (!picker || !layout || picker.completed === 0) {
      if (peer.fast) this.send(peer, { type: 'have-none' });
      return;
    }
    if (picker.completed === layout.pieceCount && peer.fast) this.send(peer, { type: 'have-all' });
    else this.send(peer, { type: 'bitfield', bytes: this.haveBitfield()!.toBuffer() });
    // BEP 6: pieces this peer may ask for even while choked.
    const ip = parseIp(peer.endpoint.host);
    if (peer.fast && ip && ip.length === 4) {
      for (const i of allowedFastSet(ALLOWED_FAST_K, this.o.infoHash, ip, layout.pieceCount)) {
        peer.allowedFastOut.add(i);
        if (picker.has(i)) this.send(peer, { type: 'allowed-fast', index: i });
      }
    }
  }

  private validIndex(peer: Peer, index: number): boolean {
    if (!this.layout) return true;
    if (index < this.layout.pieceCount) return true;
    this.close(peer, `piece index ${index} out of range`, 'violation');
    return false;
  }

  private onMessage(now: number, peer: Peer, m: Message): void {
    peer.messages++;
    const picker = this.picker;
    switch (m.type) {
      case 'keep-alive':
        return;
      case 'choke': {
        peer.peerChoking = true;
        if (!peer.fast && picker) {
          picker.peerChoked(peer.handle);
          peer.outReqs.clear();
        }
        return;
      }
      case 'unchoke':
        peer.peerChoking = false;
        return; // requests are sent after the batch (peerData)
      case 'interested':
        peer.peerInterested = true;
        this.choker.setInterested(peer.handle, true);
        this.sendSuggestions(peer);
        return;
      case 'not-interested':
        peer.peerInterested = false;
        this.choker.setInterested(peer.handle, false);
        return;
      case 'have': {
        peer.gotHaves = true;
        if (!this.validIndex(peer, m.index)) return;
        if (!picker || !this.layout) {
          peer.early ??= new Set();
          if (peer.early.size < 1_000_000) peer.early.add(m.index);
          return;
        }
        peer.bitfield ??= new Bitfield(this.layout.pieceCount);
        if (!peer.bitfield.get(m.index)) {
          peer.bitfield.set(m.index);
          if (picker.peerHave(peer.handle, m.index) && !peer.amInterested) this.updateInterest(now, peer);
          if (this.isComplete && this.isSeed(peer)) this.close(peer, 'both seeds');
        }
        return;
      }
      case 'bitfield': {
        if (peer.gotHaves) {
          this.close(peer, 'bitfield after other piece announcements', 'violation');
          return;
        }
        peer.gotHaves = true;
        if (!this.layout) {
          peer.earlyBitfield = Buffer.from(m.bytes);
          return;
        }
        peer.bitfield = new Bitfield(this.layout.pieceCount, m.bytes); // throws BAD_BITFIELD: closes the peer
        picker!.peerBitfield(peer.handle, m.bytes);
        this.updateInterest(now, peer);
        if (this.isComplete && this.isSeed(peer)) this.close(peer, 'both seeds');
        return;
      }
      case 'have-all':
      case 'have-none': {
        if (!peer.fast) {
          this.close(peer, `${m.type} without the fast extension`, 'violation');
          return;
        }
        if (peer.gotHaves) {
          this.close(peer, `${m.type} after other piece announcements`, 'violation');
          return;
        }
        peer.gotHaves = true;
        peer.haveAll = m.type === 'have-all';
        if (picker) {
          if (peer.haveAll) picker.peerHaveAll(peer.handle);
          else picker.peerHaveNone(peer.handle);
          this.updateInterest(now, peer);
          if (this.isComplete && peer.haveAll) this.close(peer, 'both seeds');
        }
        return;
      }
      case 'request':
        this.onRequest(now, peer, m.index, m.begin, m.length);
        return;
      case 'cancel': {
        const key = blockKey(m.index, m.begin);
        if (peer.reading.get(key)) {
          // Being read: the piece will not be sent. BEP 6: every request gets exactly one answer.
          peer.reading.set(key, false);
          if (peer.fast) this.send(peer, { type: 'reject', index: m.index, begin: m.begin, length: m.length });
        }
        const before = peer.inQueue.length;
        peer.inQueue = peer.inQueue.filter((r) => !(r.index === m.index && r.begin === m.begin && r.length === m.length));
        if (peer.fast && peer.inQueue.length < before) this.send(peer, { type: 'reject', index: m.index, begin: m.begin, length: m.length });
        return;
      }
      case 'piece':
        this.onBlock(now, peer, m.index, m.begin, m.block);
        return;
      case 'reject': {
        if (!peer.fast) {
          this.close(peer, 'reject without the fast extension', 'violation');
          return;
        }
        const key = blockKey(m.index, m.begin);
        if (peer.outReqs.delete(key)) picker?.peerRejected(peer.handle, m.index, m.begin);
        return;
      }
      case 'allowed-fast':
        if (!this.validIndex(peer, m.index)) return;
        peer.allowedFastIn.add(m.index);
        picker?.peerAllowedFast(peer.handle, m.index);
        return;
      case 'suggest':
        // A hint (the peer has the piece at hand): a tie-break in the picker, bounded there.
        if (!this.validIndex(peer, m.index)) return;
        picker?.peerSuggest(peer.handle, m.index);
        return;
      case 'port':
        if (m.port > 0 && !this.layout?.private) this.queue.push({ type: 'dht-port', endpoint: peer.endpoint, port: m.port });
        return;
      case 'extended':
        this.onExtended(now, peer, m.id, m.payload);
        return;
    }
  }

  private onRequest(now: number, peer: Peer, index: number, begin: number, length: number): void {
    const picker = this.picker;
    if (!picker || !this.layout) {
      if (peer.fast) this.send(peer, { type: 'reject', index, begin, length });
      return;
    }
    if (index >= this.layout.pieceCount || length <= 0 || length > MAX_BLOCK || begin + length > picker.pieceSize(index)) {
      this.close(peer, `request out of range (piece ${index}, ${begin}+${length})`, 'violation');
      return;
    }
    const allowed = !peer.amChoking || peer.allowedFastOut.has(index);
    if (!picker.has(index) || !allowed || peer.inQueue.length >= this.maxIncoming) {
      if (peer.fast) this.send(peer, { type: 'reject', index, begin, length });
      return;
    }
    peer.inQueue.push({ index, begin, length });
    this.serveReads(now, peer);
  }

  private serveReads(now: number, peer: Peer): void {
    while (!peer.closed && !peer.congested && peer.inQueue.length > 0 && peer.reading.size < MAX_READS_IN_FLIGHT) {
      const r = peer.inQueue[0]!;
      if (!this.upLimit.take(now, r.length)) {
        this.wakeAt(this.upLimit.availableAt(now));
        return;
      }
      peer.inQueue.shift();
      peer.reading.set(blockKey(r.index, r.begin), true);
      this.noteServed(r.index);
      this.queue.push({ type: 'read', peer: peer.handle, index: r.index, begin: r.begin, length: r.length });
    }
  }

  /** A piece is being read for upload: most recently served last, at most SUGGEST_RECENT. */
  private noteServed(index: number): void {
    const r = this.recentlyServed;
    if (r.has(index)) r.delete(index);
    r.add(index);
    if (r.size > SUGGEST_RECENT) r.delete(r.values().next().value!);
  }

  /**
   * BEP 6 suggest, once per peer, when it first becomes interested: up to
   * SUGGEST_MAX of the pieces we served most recently that it lacks. The
   * driver keeps recently read pieces in its read cache, so serving these
   * costs no disk read, and peers that follow the hint share those pieces
   * among themselves sooner.
   */
  private sendSuggestions(peer: Peer): void {
    if (!peer.fast || peer.suggested || !this.picker || !this.layout) return;
    peer.suggested = true;
    let n = 0;
    for (const i of [...this.recentlyServed].reverse()) {
      if (n >= SUGGEST_MAX) break;
      if (!this.picker.has(i) || peer.haveAll || peer.bitfield?.get(i) === true) continue;
      this.send(peer, { type: 'suggest', index: i });
      n++;
    }
  }

  private wakeAt(t: number): void {
    if (this.limiterWakeAt === undefined || t < this.limiterWakeAt) this.limiterWakeAt = t;
  }

  private onBlock(now: number, peer: Peer, index: number, begin: number, block: Buffer): void {
    const picker = this.picker;
    if (!picker || !this.layout) {
      this.close(peer, 'piece data before the metadata', 'violation');
      return;
    }
    if (index >= this.layout.pieceCount || begin + block.length > picker.pieceSize(index)) {
      this.close(peer, `block out of range (piece ${index}, ${begin}+${block.length})`, 'violation');
      return;
    }
    const key = blockKey(index, begin);
    const req = peer.outReqs.get(key);
    peer.outReqs.delete(key);
    peer.lastBlockAt = now;
    peer.down.add(now, block.length);
    peer.downRecent.add(now, block.length);
    if (req) {
      peer.latency.sample(now - req.at, req.ahead, block.length, peer.downRecent.rate(now));
      const marks = peer.passedSeqs;
      const last = marks.length - 1;
      if (last < 0 || req.seq > marks[last]!) {
        if (last >= 0 && now - peer.passedAts[last]! < PASSED_MARK_GRAIN_MS) {
          // One mark per grain (a fast peer answers thousands of blocks a second): the
          // requests it passes count as passed up to that much early, against a 2 s wait.
          marks[last] = req.seq;
        } else {
          if (marks.length >= MAX_PASSED_MARKS) {
            // Forgetting the oldest mark only makes a request look passed over later than it was.
            marks.shift();
            peer.passedAts.shift();
          }
          marks.push(req.seq);
          peer.passedAts.push(now);
        }
      }
    }
    this.down.add(now, block.length);
    this.choker.blockReceived(peer.handle, now);
    if (now < peer.snubbedUntil) {
      peer.snubbedUntil = 0;
      this.choker.markSnubbed(peer.handle, false);
    }
    const r = picker.blockReceived(peer.handle, index, begin, block.length);
    if (!r.accepted) return; // a late duplicate (endgame) or unrequested data: ignored
    for (const c of r.cancels) {
      const other = this.peers.get(c.peer);
      if (other && other !== peer) {
        other.outReqs.delete(blockKey(c.index, c.begin));
        this.send(other, { type: 'cancel', index: c.index, begin: c.begin, length: c.length });
      }
    }
    // The reader's view may share memory with the socket chunk; the write action owns it from here.
    this.queue.push({ type: 'write', index, begin, data: block });
    if (r.pieceComplete) this.queue.push({ type: 'verify', index });
  }

  private updateInterest(now: number, peer: Peer): void {
    const want = this.picker ? !this.picker.isDone && this.picker.interesting(peer.handle) : false;
    if (want === peer.amInterested) return;
    peer.amInterested = want;
    this.choker.setAmInterested(peer.handle, want, now);
    this.send(peer, { type: want ? 'interested' : 'not-interested' });
  }

  /** Desired requests in flight: the peer's bandwidth-delay product and some (request-queue.ts), within its reqq. */
  private queueDepth(now: number, peer: Peer): number {
    const rate = Math.max(peer.down.rate(now), peer.downRecent.rate(now));
    return requestQueueDepth(rate, peer.latency.latencyMs ?? NaN, peer.reqq, BLOCK, this.maxRequestQueue);
  }

  private fillRequests(now: number, peer: Peer): void {
    const picker = this.picker;
    if (!picker || !peer.ready || peer.closed || !peer.amInterested || picker.isDone) return;
    if (now < peer.snubbedUntil) return;
    const choked = peer.peerChoking;
    if (choked && peer.allowedFastIn.size === 0) return;
    let want = this.queueDepth(now, peer) - peer.outReqs.size;
    if (want <= 0) return;
    if (!this.downLimit.unlimited) {
      const tokens = this.downLimit.available(now);
      if (tokens <= 0) {
        this.wakeAt(this.downLimit.availableAt(now));
        return;
      }
      // As many requests as there are tokens for (and one in debt), not a whole pipeline at once.
      want = Math.min(want, Math.floor(tokens / BLOCK) + 1);
    }
    const reqs = picker.pick(peer.handle, want, choked ? { choked: true, allowedFast: peer.allowedFastIn } : undefined);
    for (const r of reqs) {
      if (!this.downLimit.unlimited) this.downLimit.take(now, r.length);
      peer.outReqs.set(blockKey(r.index, r.begin), { index: r.index, begin: r.begin, length: r.length, at: now, ahead: peer.outReqs.size, seq: peer.reqSeq++ });
      this.send(peer, { type: 'request', index: r.index, begin: r.begin, length: r.length });
    }
  }

  // ------------------------------------------------------------ extensions

  private onExtended(now: number, peer: Peer, id: number, payload: Buffer): void {
    if (id === EXT_HANDSHAKE_ID) {
      const h = decodeExtHandshake(payload);
      for (const [name, n] of h.m) {
        if (n === 0) peer.extIds.delete(name);
        else peer.extIds.set(name, n);
      }
      if (h.reqq !== undefined) peer.reqq = Math.max(1, Math.min(h.reqq, 2000));
      if (h.p !== undefined && h.p > 0) peer.listenPort = h.p;
      if (h.v) peer.client = h.v.slice(0, 64);
      if (h.metadataSize !== undefined) peer.metadataSize = h.metadataSize;
      this.ensureMetadataFetcher();
      this.requestMetadata(now, peer);
      return;
    }
    if (id === LOCAL_UT_METADATA) this.onMetadataMessage(now, peer, payload);
    else if (id === LOCAL_UT_PEX) {
      if (!this.pexEnabled()) return;
      const pex = decodePex(payload);
      this.addPeers(now, [...pex.added, ...pex.added6], 'pex');
    }
    // Unknown extension ids: ignored, as BEP 10 asks.
  }

  /**
   * Makes sure the metadata is being fetched at a size some usable peer announced. The
   * first size seen is kept while a peer that announced it can still be asked; when
   * none can (they left, were banned, reject or time out), the fetch starts over at the
   * size most of the others announced. So neither a peer lying about metadata_size nor
   * one that never answers can hold the download up for good. Peers that rejected or
   * timed out count only when there is nobody else.
   */
  private ensureMetadataFetcher(): void {
    if (this.layout || this.metadataUnusable) return;
    const sizesOf = (idleToo: boolean): Map<number, number> => {
      const sizes = new Map<number, number>();
      for (const p of this.peers.values()) {
        if (!p.ready || p.closed || p.metadataSize === undefined || !p.extIds.has(UT_METADATA)) continue;
        if (!idleToo && this.now < p.metadataIdleUntil) continue;
        sizes.set(p.metadataSize, (sizes.get(p.metadataSize) ?? 0) + 1);
      }
      return sizes;
    };
    let sizes = sizesOf(false);
    if (sizes.size === 0) sizes = sizesOf(true);
    if (sizes.size === 0 || (this.metadata && sizes.has(this.metadata.size))) return;
    let best = 0;
    let count = 0;
    for (const [size, n] of sizes) {
      if (n > count) {
        best = size;
        count = n;
      }
    }
    // The codec already bounds metadata_size, so the fetcher accepts it.
    this.metadata = new MetadataFetcher(this.o.infoHash, best);
  }

  /** Metadata requests to every peer that can take some: the willing first, then (`idleToo`) those that failed us lately. */
  private requestMetadataAll(now: number, idleToo: boolean): void {
    for (const p of this.peers.values()) this.requestMetadata(now, p);
    if (idleToo) for (const p of this.peers.values()) this.requestMetadata(now, p, true);
  }

  private requestMetadata(now: number, peer: Peer, idleToo = false): void {
    const f = this.metadata;
    const theirId = peer.extIds.get(UT_METADATA);
    if (!f || this.layout || !peer.ready || peer.closed || theirId === undefined) return;
    if (peer.metadataSize !== f.size || (!idleToo && now < peer.metadataIdleUntil)) return;
    for (;;) {
      const piece = f.next(peer.handle, now);
      if (piece === undefined) return;
      peer.metadataAsked++;
      this.send(peer, { type: 'extended', id: theirId, payload: encodeMetadataMessage({ msgType: 'request', piece }) });
    }
  }

  private onMetadataMessage(now: number, peer: Peer, payload: Buffer): void {
    const msg = decodeMetadataMessage(payload);
    const theirId = peer.extIds.get(UT_METADATA);
    if (msg.msgType === 'request') {
      if (theirId === undefined) return;
      const info = this.layout?.infoBytes;
      if (!info || msg.piece >= metadataPieceCount(info.length)) {
        this.send(peer, { type: 'extended', id: theirId, payload: encodeMetadataMessage({ msgType: 'reject', piece: msg.piece }) });
        return;
      }
      const start = msg.piece * METADATA_PIECE_SIZE;
      const data = info.subarray(start, Math.min(info.length, start + METADATA_PIECE_SIZE));
      this.send(peer, { type: 'extended', id: theirId, payload: encodeMetadataMessage({ msgType: 'data', piece: msg.piece, totalSize: info.length, data }) });
      return;
    }
    const f = this.metadata;
    if (!f) return;
    if (msg.msgType === 'reject') {
      f.release(peer.handle, msg.piece);
      peer.metadataAsked = Math.max(0, peer.metadataAsked - 1);
      // It does not have it (yet): let the others have a go.
      peer.metadataIdleUntil = now + METADATA_IDLE_MS;
      this.ensureMetadataFetcher();
      this.requestMetadataAll(now, false);
      return;
    }
    if (msg.msgType !== 'data') return;
    if (msg.totalSize !== peer.metadataSize) {
      this.close(peer, 'metadata of a different size than it announced', 'violation');
      return;
    }
    // An answer for a fetch given up on (started over at another size).
    if (msg.totalSize !== f.size) return;
    peer.metadataAsked = Math.max(0, peer.metadataAsked - 1);
    const r = f.receive(peer.handle, msg.piece, msg.data);
    if (r.kind === 'bad-hash') {
      for (const h of r.sources) {
        const p = this.peers.get(h);
        if (p && r.sources.size === 1) this.ban(p, 'sent metadata that does not match the info hash');
      }
      // Perhaps the size was wrong too: start over at a size the remaining peers agree on.
      this.metadata = undefined;
      this.ensureMetadataFetcher();
      this.requestMetadataAll(now, true);
      return;
    }
    if (r.kind === 'done') {
      let metainfo: Metainfo;
      try {
        metainfo = parseInfoDictionary(r.bytes, this.o.infoHash);
      } catch (e) {
        // Hash matches but the dictionary is unusable (e.g. unsafe paths): nobody can fix that.
        this.metadata = undefined;
        this.metadataUnusable = true;
        this.queue.push({ type: 'banned', endpoint: peer.endpoint, reason: `metadata is invalid: ${(e as Error).message}` });
        return;
      }
      this.queue.push({ type: 'metadata', metainfo });
      this.setMetadata(now, { pieceCount: metainfo.pieceCount, pieceLength: metainfo.pieceLength, length: metainfo.length, private: metainfo.private, infoBytes: metainfo.infoBytes });
      return;
    }
    this.requestMetadata(now, peer);
  }

  private applyEarlyHaves(peer: Peer): void {
    const picker = this.picker!;
    const n = this.layout!.pieceCount;
    if (peer.earlyBitfield) {
      try {
        peer.bitfield = new Bitfield(n, peer.earlyBitfield);
        picker.peerBitfield(peer.handle, peer.earlyBitfield);
      } catch {
        this.close(peer, 'bad bitfield', 'violation');
        return;
      }
      peer.earlyBitfield = undefined;
    }
    if (peer.haveAll) picker.peerHaveAll(peer.handle);
    if (peer.early) {
      peer.bitfield ??= new Bitfield(n);
      for (const i of peer.early) {
        if (i >= n) {
          this.close(peer, `piece index ${i} out of range`, 'violation');
          return;
        }
        if (!peer.bitfield.get(i)) {
          peer.bitfield.set(i);
          picker.peerHave(peer.handle, i);
        }
      }
      peer.early = undefined;
    }
  }

  private sendPex(now: number, peer: Peer): void {
    peer.lastPexAt = now;
    const theirId = peer.extIds.get(UT_PEX);
    if (theirId === undefined) return;
    const current = new Map<string, Endpoint>();
    for (const p of this.peers.values()) {
      if (p === peer || !p.ready || p.listenPort === undefined) continue;
      const e = { host: p.endpoint.host, port: p.listenPort };
      current.set(endpointKey(e), e);
    }
    const added: Endpoint[] = [];
    const added6: Endpoint[] = [];
    for (const [k, e] of current) {
      if (peer.pexSent.has(k) || added.length + added6.length >= 50) continue;
      (e.host.includes(':') ? added6 : added).push(e);
      peer.pexSent.add(k);
    }
    const dropped: Endpoint[] = [];
    const dropped6: Endpoint[] = [];
    for (const k of [...peer.pexSent]) {
      if (current.has(k)) continue;
      peer.pexSent.delete(k);
      const m = /^\[(.*)\]:(\d+)$/.exec(k) ?? /^(.*):(\d+)$/.exec(k);
      if (m && dropped.length + dropped6.length < 50) (m[1]!.includes(':') ? dropped6 : dropped).push({ host: m[1]!, port: Number(m[2]) });
    }
    if (added.length + added6.length + dropped.length + dropped6.length === 0) return;
    this.send(peer, { type: 'extended', id: theirId, payload: encodePex({ added, dropped, added6, dropped6 }) });
  }

  // ------------------------------------------------------------ sending and closing

  private send(peer: Peer, msg: MessageInput): void {
    this.sendRaw(peer, encodeMessage(msg));
  }

  private sendRaw(peer: Peer, bytes: Uint8Array, handshake = false): void {
    if (peer.closed) return;
    if (handshake) peer.sentHandshake = true;
    peer.outbox.push(bytes);
    peer.sentSinceTick = true;
    this.dirty.add(peer);
  }

  private ban(peer: Peer, reason: string): void {
    this.banHost(peer.endpoint, reason);
    this.close(peer, `banned: ${reason}`, 'ban');
  }

  private banHost(endpoint: Endpoint, reason: string): void {
    if (!this.bannedHosts.has(endpoint.host)) {
      this.bannedHosts.add(endpoint.host);
      this.queue.push({ type: 'banned', endpoint, reason });
    }
    for (const [k, kp] of this.known) if (kp.endpoint.host === endpoint.host) this.known.delete(k);
  }

  private close(peer: Peer, reason: string, kind: CloseKind = 'normal'): void {
    if (peer.closed) return;
    // Whatever is queued for the peer goes out before the close.
    if (peer.outbox.length > 0) {
      this.queue.push({ type: 'send', peer: peer.handle, data: peer.outbox });
      peer.outbox = [];
    }
    this.dirty.delete(peer);
    peer.closed = true;
    this.queue.push({ type: 'close', peer: peer.handle, reason, kind });
    this.detach(peer);
  }

  /** The driver reported the connection gone. */
  private forget(now: number, peer: Peer): void {
    if (!peer.closed) {
      peer.closed = true;
      this.dirty.delete(peer);
      this.detach(peer);
    }
    this.peers.delete(peer.handle);
    // Remembered so a piece it contributed to can still be blamed on it after it left.
    this.departed.set(peer.handle, peer.endpoint);
    if (this.departed.size > MAX_DEPARTED) this.departed.delete(this.departed.keys().next().value!);
    const k = this.known.get(endpointKey(peer.endpoint));
    if (k) {
      k.connected = false;
      // A peer that dropped us may take us back soon (Transmission drops its peers when a magnet's
      // metadata arrives, for instance): retry after 2 s, then 6, 18, 54 and at most every 60 s.
      // A long session (or any data) counts as a success and starts the series again.
      if (peer.ready && (now - peer.createdAt >= RETRY_RESET_SESSION_MS || peer.down.total > 0)) k.drops = 0;
      k.drops++;
      k.nextAttemptAt = now + Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 3 ** (k.drops - 1));
    }
    this.connectMore(now);
  }

  private detach(peer: Peer): void {
    if (this.byPeerId.get(peer.peerIdHex) === peer.handle) this.byPeerId.delete(peer.peerIdHex);
    this.choker.remove(peer.handle);
    if (this.picker) {
      this.picker.removePeer(peer.handle);
    }
    this.metadata?.release(peer.handle);
    peer.outReqs.clear();
    peer.inQueue = [];
    peer.reading.clear();
    // Others can take over this peer's requests.
    if (this.picker) for (const q of this.peers.values()) if (q !== peer && q.ready && !q.closed) this.fillRequests(this.now, q);
  }
}
