/**
 * A BitTorrent Client as a dashboard source: its torrents (progress, rates,
 * ratio, a bucketed piece map) and its peers (address, client name, choke
 * and interest both ways, rates, bytes, ratio, progress). Row counts are
 * capped so a big client cannot make the page or the API unbounded.
 */
import type { Client } from '../client/client.js';
import type { Torrent } from '../client/torrent.js';
import type { PeerSnapshot } from '../core/torrent/torrent-core.js';
import type { MetricFamily, Sample } from '../metrics/prometheus.js';
import { DhtSource } from './dht-source.js';
import type { DashboardSource, JsonValue, Table } from './source.js';

export interface ClientSourceOptions {
  /** Most torrents listed. Default 100. */
  readonly maxTorrents?: number;
  /** Most peers listed (the busiest first). Default 500. */
  readonly maxPeers?: number;
  /** Cells of a piece map at most. Default 256. */
  readonly pieceMapCells?: number;
}

export interface TorrentRow {
  readonly infoHash: string;
  readonly name: string;
  readonly state: 'checking' | 'metadata' | 'downloading' | 'seeding' | 'complete' | 'error';
  readonly size: number | null;
  /** 0..1 by bytes (by pieces until the size is known). */
  readonly progress: number;
  readonly piecesDone: number;
  readonly pieceCount: number;
  readonly downloadRate: number;
  readonly uploadRate: number;
  readonly downloaded: number;
  readonly uploaded: number;
  readonly wasted: number;
  /** uploaded / downloaded, or uploaded / size while nothing was downloaded (as Transmission); null when both are 0. */
  readonly ratio: number | null;
  readonly peers: number;
  readonly knownPeers: number;
  readonly pieceMap: { readonly piecesPerCell: number; readonly have: readonly number[]; readonly rarest: readonly number[] } | null;
  /** The torrent on the DHT (null when it is not): lookups run, peer addresses found, nodes that stored our announce last time. */
  readonly dht: { readonly rounds: number; readonly peersFound: number; readonly stored: number } | null;
  readonly error?: string;
}

export interface PeerRow {
  readonly torrent: string;
  readonly torrentName: string;
  readonly address: string;
  readonly client: string;
  readonly direction: 'in' | 'out';
  readonly amChoking: boolean;
  readonly amInterested: boolean;
  readonly peerChoking: boolean;
  readonly peerInterested: boolean;
  readonly downloadRate: number;
  readonly uploadRate: number;
  readonly downloaded: number;
  readonly uploaded: number;
  /** What we uploaded to the peer over what we downloaded from it; null when we downloaded nothing from it. */
  readonly ratio: number | null;
  readonly progress: number;
  readonly snubbed: boolean;
  readonly optimistic: boolean;
}

export interface ClientState {
  readonly port: number;
  readonly peerId: string;
  readonly totals: { readonly downloadRate: number; readonly uploadRate: number; readonly downloaded: number; readonly uploaded: number; readonly peers: number; readonly torrents: number };
  readonly torrents: readonly TorrentRow[];
  readonly peers: readonly PeerRow[];
  /** Peers not listed because of the cap. */
  readonly peersOmitted: number;
}

const address = (host: string, port: number): string => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

/** A peer id for display: printable ASCII kept, anything else as `.`. */
function printablePeerId(id: Buffer): string {
  let s = '';
  for (const b of id) s += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.';
  return s;
}

export function torrentRow(t: Torrent, cells: number): TorrentRow {
  const base = { infoHash: t.infoHashHex, name: t.name };
  if (!t.isRunning) {
    return { ...base, state: t.error ? 'error' : 'checking', size: t.metainfo?.length ?? null, progress: 0, piecesDone: 0, pieceCount: t.metainfo?.pieceCount ?? 0, downloadRate: 0, uploadRate: 0, downloaded: 0, uploaded: 0, wasted: 0, ratio: null, peers: 0, knownPeers: 0, pieceMap: null, dht: null, ...(t.error ? { error: t.error.message } : {}) };
  }
  const s = t.stats();
  const size = t.metainfo?.length ?? null;
  const progress = size !== null && s.left !== undefined && size > 0 ? (size - s.left) / size : s.pieceCount > 0 ? s.piecesDone / s.pieceCount : 0;
  const denominator = s.downloaded > 0 ? s.downloaded : (size ?? 0);
  const map = t.pieceMap(cells);
  let state: TorrentRow['state'];
  if (t.error) state = 'error';
  else if (!s.hasMetadata) state = 'metadata';
  else if (!s.complete) state = 'downloading';
  else state = t.options.seed === false ? 'complete' : 'seeding';
  return {
    ...base,
    state,
    size,
    progress,
    piecesDone: s.piecesDone,
    pieceCount: s.pieceCount,
    downloadRate: s.downloadRate,
    uploadRate: s.uploadRate,
    downloaded: s.downloaded,
    uploaded: s.uploaded,
    wasted: s.wasted,
    ratio: denominator > 0 ? s.uploaded / denominator : null,
    peers: s.peers,
    knownPeers: s.knownPeers,
    pieceMap: map ? { piecesPerCell: map.piecesPerCell, have: map.have, rarest: map.rarest } : null,
    dht: t.dht ? { rounds: t.dht.rounds, peersFound: t.dht.peersFound, stored: t.dht.stored } : null,
    ...(t.error ? { error: t.error.message } : {}),
  };
}

export function peerRow(t: Torrent, p: PeerSnapshot): PeerRow {
  return {
    torrent: t.infoHashHex,
    torrentName: t.name,
    address: address(p.endpoint.host, p.endpoint.port),
    client: p.client,
    direction: p.direction,
    amChoking: p.amChoking,
    amInterested: p.amInterested,
    peerChoking: p.peerChoking,
    peerInterested: p.peerInterested,
    downloadRate: p.downloadRate,
    uploadRate: p.uploadRate,
    downloaded: p.downloaded,
    uploaded: p.uploaded,
    ratio: p.downloaded > 0 ? p.uploaded / p.downloaded : null,
    progress: p.progress,
    snubbed: p.snubbed,
    optimistic: p.optimistic,
  };
}

export const TORRENT_COLUMNS = ['info_hash', 'name', 'state', 'size_bytes', 'progress', 'pieces_done', 'pieces', 'download_rate_bytes_per_second', 'upload_rate_bytes_per_second', 'downloaded_bytes', 'uploaded_bytes', 'wasted_bytes', 'ratio', 'peers'] as const;
export const PEER_COLUMNS = ['info_hash', 'torrent', 'address', 'client', 'direction', 'am_choking', 'am_interested', 'peer_choking', 'peer_interested', 'download_rate_bytes_per_second', 'upload_rate_bytes_per_second', 'downloaded_bytes', 'uploaded_bytes', 'ratio', 'progress'] as const;

export class ClientSource implements DashboardSource {
  readonly kind = 'client';
  private readonly maxTorrents: number;
  private readonly maxPeers: number;
  private readonly cells: number;

  constructor(
    readonly id: string,
    private readonly client: Client,
    options: ClientSourceOptions = {},
  ) {
    this.maxTorrents = options.maxTorrents ?? 100;
    this.maxPeers = options.maxPeers ?? 500;
    this.cells = options.pieceMapCells ?? 256;
  }

  private torrents(): Torrent[] {
    return this.client.torrents.slice(0, this.maxTorrents);
  }

  private collect(): { torrents: TorrentRow[]; peers: PeerRow[]; omitted: number } {
    const torrents: TorrentRow[] = [];
    let peers: PeerRow[] = [];
    for (const t of this.torrents()) {
      torrents.push(torrentRow(t, this.cells));
      if (t.isRunning) for (const p of t.peers()) peers.push(peerRow(t, p));
    }
    let omitted = 0;
    if (peers.length > this.maxPeers) {
      omitted = peers.length - this.maxPeers;
      peers.sort((a, b) => b.downloadRate + b.uploadRate - (a.downloadRate + a.uploadRate));
      peers = peers.slice(0, this.maxPeers);
    }
    peers.sort((a, b) => (a.torrent < b.torrent ? -1 : a.torrent > b.torrent ? 1 : a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    return { torrents, peers, omitted };
  }

  state(): JsonValue {
    return this.snapshot().state;
  }

  tables(): Record<string, Table> {
    return this.snapshot().tables;
  }

  /** State and tables from one reading of the client (the rates in both are the same numbers). */
  snapshot(): { state: JsonValue; tables: Record<string, Table> } {
    const { torrents, peers, omitted } = this.collect();
    const sum = (f: (r: TorrentRow) => number): number => torrents.reduce((acc, r) => acc + f(r), 0);
    const state: ClientState = {
      port: this.client.port,
      peerId: printablePeerId(this.client.peerId),
      totals: {
        downloadRate: sum((r) => r.downloadRate),
        uploadRate: sum((r) => r.uploadRate),
        downloaded: sum((r) => r.downloaded),
        uploaded: sum((r) => r.uploaded),
        peers: sum((r) => r.peers),
        torrents: this.client.torrents.length,
      },
      torrents,
      peers,
      peersOmitted: omitted,
    };
    return {
      state: state as unknown as JsonValue,
      tables: {
        torrents: {
          columns: TORRENT_COLUMNS,
          rows: torrents.map((r) => [r.infoHash, r.name, r.state, r.size, r.progress, r.piecesDone, r.pieceCount, r.downloadRate, r.uploadRate, r.downloaded, r.uploaded, r.wasted, r.ratio, r.peers]),
        },
        peers: {
          columns: PEER_COLUMNS,
          rows: peers.map((p) => [p.torrent, p.torrentName, p.address, p.client, p.direction, p.amChoking, p.amInterested, p.peerChoking, p.peerInterested, p.downloadRate, p.uploadRate, p.downloaded, p.uploaded, p.ratio, p.progress]),
        },
      },
    };
  }

  metrics(): MetricFamily[] {
    const rows = this.torrents().map((t) => ({ t, s: t.isRunning ? t.stats() : undefined }));
    const per = (f: (s: NonNullable<(typeof rows)[number]['s']>) => number): Sample[] => rows.flatMap(({ t, s }) => (s ? [[{ torrent: t.infoHashHex }, f(s)] as const] : []));
    return [
      { name: 'peerkit_client_torrents', type: 'gauge', help: 'Torrents added to the client.', samples: [[undefined, this.client.torrents.length]] },
      { name: 'peerkit_client_torrent_info', type: 'gauge', help: 'Always 1; the torrent\'s name as a label.', samples: rows.map(({ t }) => [{ torrent: t.infoHashHex, name: t.name }, 1] as const) },
      { name: 'peerkit_client_downloaded_bytes_total', type: 'counter', help: 'Piece data received from peers.', samples: per((s) => s.downloaded) },
      { name: 'peerkit_client_uploaded_bytes_total', type: 'counter', help: 'Piece data sent to peers.', samples: per((s) => s.uploaded) },
      { name: 'peerkit_client_wasted_bytes_total', type: 'counter', help: 'Bytes of pieces that failed their hash check.', samples: per((s) => s.wasted) },
      { name: 'peerkit_client_left_bytes', type: 'gauge', help: 'Bytes still wanted (absent while the metadata is being fetched).', samples: rows.flatMap(({ t, s }) => (s?.left !== undefined ? [[{ torrent: t.infoHashHex }, s.left] as const] : [])) },
      { name: 'peerkit_client_pieces', type: 'gauge', help: 'Pieces in the torrent.', samples: per((s) => s.pieceCount) },
      { name: 'peerkit_client_verified_pieces', type: 'gauge', help: 'Pieces held and verified.', samples: per((s) => s.piecesDone) },
      { name: 'peerkit_client_peers', type: 'gauge', help: 'Connected peers (handshake done).', samples: per((s) => s.peers) },
      { name: 'peerkit_client_known_peers', type: 'gauge', help: 'Candidate peers known (tracker, PEX, magnet).', samples: per((s) => s.knownPeers) },
      { name: 'peerkit_client_banned_peers', type: 'gauge', help: 'Peer addresses banned for bad data or protocol abuse.', samples: per((s) => s.banned) },
    ];
  }

  series(): Record<string, number> {
    let down = 0;
    let up = 0;
    for (const t of this.client.torrents) {
      if (!t.isRunning) continue;
      const s = t.stats();
      down += s.downloadRate;
      up += s.uploadRate;
    }
    return { download: down, upload: up };
  }
}

/** A client's sources: the client as `id` and, when it runs a DHT node, that node as `<id> dht`. */
export function clientSources(id: string, client: Client, options: ClientSourceOptions = {}): DashboardSource[] {
  const node = client.dht;
  return node === undefined ? [new ClientSource(id, client, options)] : [new ClientSource(id, client, options), new DhtSource(`${id} dht`, node)];
}
