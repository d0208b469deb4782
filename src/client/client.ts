/**
 * The BitTorrent client: listens for peers, routes incoming connections to
 * their torrent by the info hash in the handshake, and holds what torrents
 * share (peer id, listen port, global connection and rate limits).
 *
 *   const client = await Client.create({ port: 6881 });
 *   const t = await client.add('magnet:?xt=urn:btih:...', { dir: './downloads' });
 *   t.on('complete', () => ...);
 */
import { readFile } from 'node:fs/promises';
import { parseMagnet } from '../codec/magnet.js';
import { parseMetainfo, type Metainfo } from '../codec/metainfo.js';
import { decodeHandshakeStart, HANDSHAKE_START_LENGTH } from '../codec/peer-wire.js';
import { TokenBucket } from '../core/torrent/token-bucket.js';
import type { ByteStream, Runtime, StreamListener } from '../runtime/contract.js';
import { createRealRuntime } from '../runtime/real/runtime.js';
import { Torrent, type ChokingOptions, type TorrentHost, type TorrentOptions, type TorrentSource } from './torrent.js';
import { TypedEmitter } from './typed-emitter.js';
import { DhtNode } from '../dht/node.js';
import type { DhtOptions } from '../core/dht/index.js';

export interface ClientOptions {
  /** TCP port to listen on; 0 picks a free one. Default 6881. */
  readonly port?: number;
  /** Address to listen on. Default 0.0.0.0 (all local addresses). */
  readonly host?: string;
  readonly runtime?: Runtime;
  /** 20 bytes; default `-PK0100-` and 12 random characters. */
  readonly peerId?: Uint8Array;
  /** Connections across all torrents (incoming and outgoing, handshaking ones too). Default 200. */
  readonly maxConnections?: number;
  /** Choking settings for every torrent (a torrent's own TorrentOptions.choking wins). */
  readonly choking?: ChokingOptions;
  /** Bytes per second across all torrents; 0 = unlimited. */
  readonly uploadLimit?: number;
  readonly downloadLimit?: number;
  /** The name sent in the extension handshake (`v`). Default `peerkit 0.1.0`. */
  readonly clientName?: string;
  /**
   * A Mainline DHT node (BEP 5) for finding peers of public torrents: a
   * running DhtNode (the caller closes it), or options for one the client
   * starts on its own host and closes with it. It contacts only the
   * `bootstrap` nodes named (and nodes saved in `stateFile`). Default: none.
   */
  readonly dht?: DhtNode | ClientDhtOptions;
}

export interface ClientDhtOptions {
  /** UDP port; default 0 (any free one). */
  readonly port?: number;
  /** HOST:PORT of nodes to join through, e.g. router.bittorrent.com:6881 for the public DHT. */
  readonly bootstrap?: readonly string[];
  /** A JSON file keeping the node's id and routing table across runs. */
  readonly stateFile?: string;
  /** Core options (k, alpha, BEP 42, limits). */
  readonly options?: DhtOptions;
}

export interface ClientEvents {
  torrent: (t: Torrent) => void;
  warning: (message: string) => void;
}

const PEER_ID_PREFIX = '-PK0100-';
const HANDSHAKE_WAIT_MS = 10_000;

function makePeerId(runtime: Runtime): Buffer {
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
  let id = PEER_ID_PREFIX;
  while (id.length < 20) id += alphabet[runtime.random.below(alphabet.length)];
  return Buffer.from(id, 'latin1');
}

/** Reads a .torrent path, a magnet link, or raw .torrent bytes. */
export async function resolveSource(source: string | Uint8Array | Metainfo): Promise<TorrentSource> {
  if (typeof source === 'string' && /^magnet:/i.test(source)) {
    const m = parseMagnet(source);
    return { infoHash: m.infoHash, name: m.name, trackers: m.trackers.map((t) => [t]), peers: m.peers };
  }
  let meta: Metainfo;
  if (typeof source === 'string') meta = parseMetainfo(await readFile(source));
  else if (source instanceof Uint8Array) meta = parseMetainfo(source);
  else meta = source;
  return { infoHash: meta.infoHash, name: meta.name, metainfo: meta, trackers: [], peers: [] };
}

export class Client extends TypedEmitter<ClientEvents> {
  readonly runtime: Runtime;
  readonly peerId: Buffer;
  private listener: StreamListener | undefined;
  private readonly torrentsByHash = new Map<string, Torrent>();
  private handles = 0;
  private connections = 0;
  private readonly maxConnections: number;
  private host: TorrentHost;
  private closed = false;
  private dhtNode: DhtNode | undefined;
  private ownsDht = false;

  private constructor(options: ClientOptions) {
    super();
    this.runtime = options.runtime ?? createRealRuntime();
    this.peerId = options.peerId ? Buffer.from(options.peerId) : makePeerId(this.runtime);
    if (this.peerId.length !== 20) throw new RangeError('a peer id is 20 bytes');
    this.maxConnections = options.maxConnections ?? 200;
    if (!(Number.isInteger(this.maxConnections) && this.maxConnections > 0)) throw new RangeError('maxConnections is a positive integer');
    const listenPort = (): number => this.port;
    this.host = {
      runtime: this.runtime,
      peerId: this.peerId,
      get port() {
        return listenPort();
      },
      clientName: options.clientName ?? 'peerkit 0.1.0',
      uploadLimiter: new TokenBucket(options.uploadLimit ?? 0),
      downloadLimiter: new TokenBucket(options.downloadLimit ?? 0),
      choking: options.choking,
      nextHandle: () => ++this.handles,
      reserveConnection: () => {
        if (this.connections >= this.maxConnections) return false;
        this.connections++;
        return true;
      },
      releaseConnection: () => {
        this.connections = Math.max(0, this.connections - 1);
      },
    };
  }

  /** Creates a client and starts listening for peers. */
  static async create(options: ClientOptions = {}): Promise<Client> {
    const c = new Client(options);
    c.listener = await c.runtime.listenStream({ host: options.host ?? '0.0.0.0', port: options.port ?? 6881 }, (s) => c.onIncoming(s));
    const d = options.dht;
    let dhtReady: Promise<unknown> | undefined;
    if (d !== undefined) {
      try {
        if (d instanceof DhtNode) c.dhtNode = d;
        else {
          c.dhtNode = await DhtNode.start({ runtime: c.runtime, host: options.host ?? '0.0.0.0', port: d.port ?? 0, stateFile: d.stateFile, dht: d.options });
          c.ownsDht = true;
          // Joining takes a few round trips; torrents added meanwhile look up once it is done.
          dhtReady = c.dhtNode.bootstrap(d.bootstrap ?? []).catch((e: unknown) => c.emit('warning', `DHT bootstrap: ${(e as Error).message}`));
        }
      } catch (e) {
        c.listener.close();
        throw e;
      }
      const node = c.dhtNode;
      c.host = { ...c.host, dht: node, dhtPort: node.address.port, dhtReady };
    }
    return c;
  }

  get port(): number {
    return this.listener?.local.port ?? 0;
  }

  /** The DHT node peers are looked up on, if any. */
  get dht(): DhtNode | undefined {
    return this.dhtNode;
  }

  get torrents(): Torrent[] {
    return [...this.torrentsByHash.values()];
  }

  get(infoHashHex: string): Torrent | undefined {
    return this.torrentsByHash.get(infoHashHex.toLowerCase());
  }

  /** Adds a torrent (path of a .torrent, magnet link, bytes, or parsed metainfo), checks its data and starts it. */
  async add(source: string | Uint8Array | Metainfo, options: TorrentOptions): Promise<Torrent> {
    if (this.closed) throw new Error('the client is closed');
    const src = await resolveSource(source);
    const hex = src.infoHash.toString('hex');
    if (this.torrentsByHash.has(hex)) throw new Error(`torrent ${hex} is already added`);
    const t = new Torrent(this.host, src, options);
    this.torrentsByHash.set(hex, t);
    this.emit('torrent', t);
    try {
      await t.start();
    } catch (e) {
      this.torrentsByHash.delete(hex);
      await t.stop().catch(() => undefined);
      throw e;
    }
    return t;
  }

  async remove(infoHashHex: string): Promise<void> {
    const t = this.torrentsByHash.get(infoHashHex);
    if (!t) return;
    this.torrentsByHash.delete(infoHashHex);
    await t.stop();
  }

  /** Stops every torrent (announcing `stopped`, writing resume data) and the listener. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listener?.close();
    await Promise.all(this.torrents.map((t) => t.stop()));
    this.torrentsByHash.clear();
    if (this.ownsDht) await this.dhtNode?.close();
  }

  private onIncoming(stream: ByteStream): void {
    if (this.closed || !this.host.reserveConnection()) {
      stream.destroy();
      return;
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    let sink: ((d: Uint8Array) => void) | undefined;
    let routed = false;
    const timer = this.runtime.timers.at(this.runtime.clock.now() + HANDSHAKE_WAIT_MS, () => {
      if (!routed) stream.destroy();
    });
    stream.onClose(() => {
      timer.cancel();
      if (!routed) this.host.releaseConnection();
    });
    stream.onData((d) => {
      if (sink) {
        sink(d);
        return;
      }
      if (routed) return;
      chunks.push(d);
      size += d.length;
      if (size < HANDSHAKE_START_LENGTH) return;
      const first = Buffer.concat(chunks);
      let torrent: Torrent | undefined;
      try {
        torrent = this.torrentsByHash.get(decodeHandshakeStart(first).infoHash.toString('hex'));
      } catch {
        torrent = undefined;
      }
      timer.cancel();
      if (!torrent) {
        stream.destroy();
        return;
      }
      routed = true;
      torrent.attach(stream, 'in', first, (s) => (sink = s));
    });
  }
}
