/**
 * peerkit as a library: `import { parseMetainfo, createTorrent, ... } from 'peerkit'`.
 *
 * Layers (see docs/architecture.md): pure codecs, sans-I/O protocol cores,
 * runtimes that drive the cores (real sockets or the simulator), and the
 * file and storage helpers of the BitTorrent client.
 */

// Codecs: pure, strict, typed errors.
export { CodecError, isCodecError } from './codec/errors.js';
export { decode as bdecode, decodePrefix as bdecodePrefix, decodeWithSpans as bdecodeWithSpans, encode as bencode, BencodeError, isBytes, isDict, isInteger, isList } from './codec/bencode.js';
export type { BencodeDict, BencodeInput, BencodeValue, DecodeLimits } from './codec/bencode.js';
export { parseMetainfo, parseInfoDictionary, withTrackers, encodeInfo, encodeTorrent, defaultPieceLength, MetainfoError } from './codec/metainfo.js';
export type { Metainfo, MetainfoFile, MetainfoLimits, InfoFields, TorrentFields } from './codec/metainfo.js';
export { parseMagnet, buildMagnet, MagnetError, decodeBase32, encodeBase32 } from './codec/magnet.js';
export type { Magnet, MagnetFields, MagnetPeer } from './codec/magnet.js';
export { parseIp, formatIp } from './codec/ip.js';
export { decodeCompactPeers, encodeCompactPeers, decodeCompactNodes, encodeCompactNodes, CompactError } from './codec/compact.js';
export type { CompactNode } from './codec/compact.js';
export * as trackerHttp from './codec/tracker-http.js';
export * as trackerUdp from './codec/tracker-udp.js';

// Sans-I/O cores.
export { ReqResEndpoint } from './core/reqres/index.js';
export type { ReqResEvent, ReqResOptions, ReqResStats, Responder } from './core/reqres/index.js';
export { UdpTrackerClient } from './core/udp-tracker-client.js';
// The BitTorrent protocol cores (sans-I/O) and the peer wire codecs, for drivers of your own.
export { TorrentCore, clientFromPeerId } from './core/torrent/torrent-core.js';
export type { TorrentCoreOptions, TorrentAction, TorrentLayout, TorrentStats, PeerSnapshot, PieceMap, PeerHandle } from './core/torrent/torrent-core.js';
export { PiecePicker } from './core/piece-picker.js';
export type { PiecePickerOptions, PickMode } from './core/piece-picker.js';
export { Choker } from './core/choker.js';
export type { ChokerOptions, RechokeResult } from './core/choker.js';
export * as peerWire from './codec/peer-wire.js';
export * as extensions from './codec/extensions.js';
export { TrackerTiers, announceTiers } from './core/tracker-tiers.js';

// The runtime contract and its two implementations.
export type { Endpoint, Clock, Timers, TimerHandle, Random, DatagramSocket, ByteStream, StreamListener, Runtime, Transmit, DatagramCore } from './runtime/contract.js';
export { endpointKey, sameEndpoint } from './runtime/contract.js';
export { createRealRuntime, CryptoRandom } from './runtime/real/runtime.js';
export type { RealRuntimeOptions } from './runtime/real/runtime.js';
export { driveDatagramCore } from './runtime/drive.js';
export type { DriveOptions, DriveHandle } from './runtime/drive.js';
export * as sim from './runtime/sim/index.js';
/** Simulator scenarios: files, kinds (flash-crowd), runner, churn, metrics. */
export * as simulation from './sim/index.js';

// Files and storage.
export { createTorrent, listSource, hashSource, CreateTorrentError } from './files/create-torrent.js';
export type { CreateTorrentOptions, CreatedTorrent, SourceFile, SourceLayout } from './files/create-torrent.js';
export { verifyPieces, filePathOnDisk } from './files/verify-pieces.js';
export type { PieceLayout, VerifyResult } from './files/verify-pieces.js';
export { FileStorage, StorageError } from './storage/file-storage.js';
export { IncrementalPieceHasher } from './storage/piece-hasher.js';
export { saveResume, loadResume, planResume, resumePath } from './storage/resume.js';
export type { ResumeRecord, ResumePlan } from './storage/resume.js';
export { startTracker, type StartTrackerOptions, type TrackerHandle } from './tracker/index.js';

// The BitTorrent client (the README's `import { Client } from 'peerkit'`).
export { Client } from './client/client.js';
export type { ClientOptions } from './client/client.js';
export type { Torrent, TorrentOptions } from './client/torrent.js';
export type { ScrapeOutcome, TrackerStatus } from './client/tracker-announcer.js';

// The live dashboard (web page, event stream, JSON, CSV, Prometheus).
export { startDashboard, ClientSource, clientSources, TrackerSource, DhtSource, parseListenAddress, DashboardConfigError } from './dashboard/index.js';
export type { DashboardOptions, DashboardHandle, DashboardSource } from './dashboard/index.js';
export { renderPrometheus, mergeFamilies, PROMETHEUS_CONTENT_TYPE } from './metrics/prometheus.js';
export type { MetricFamily } from './metrics/prometheus.js';

// Mainline DHT (BEP 5, 42, 43, 44, 51): the sans-I/O core, the KRPC codec and the node on a runtime
export { DhtCore, RoutingTable, immutableTarget, mutableTarget, signMutableItem, keyPairFromSeed, verifyItemSignature, bep42Id, isBep42Id } from './core/dht/index.js';
export type { DhtCoreInit, DhtEvent, DhtOptions, DhtStats, FoundNode, Item as DhtItem, OperationKind as DhtOperationKind, OperationResult as DhtResult } from './core/dht/index.js';
export { decodeKrpc, encodeKrpc, KrpcError } from './codec/krpc.js';
export type { KrpcMessage, KrpcQuery, KrpcResponse, KrpcErrorMessage } from './codec/krpc.js';
export { DhtNode } from './dht/index.js';
export type { DhtNodeOptions } from './dht/index.js';
