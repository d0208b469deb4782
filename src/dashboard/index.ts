/**
 * The live dashboard: `startDashboard({ sources })` serves a web page, an
 * event stream, JSON, CSV and Prometheus metrics about its sources.
 */
export { startDashboard } from './server.js';
export type { DashboardOptions, DashboardHandle } from './server.js';
export type { DashboardSource, JsonValue, Cell, Table } from './source.js';
export { ClientSource, clientSources, PEER_COLUMNS, TORRENT_COLUMNS } from './client-source.js';
export type { ClientSourceOptions, ClientState, PeerRow, TorrentRow } from './client-source.js';
export { TrackerSource, SWARM_COLUMNS } from './tracker-source.js';
export { DhtSource, DHT_NODE_COLUMNS, DHT_BUCKET_COLUMNS, bucketPrefix } from './dht-source.js';
export type { DhtLike, DhtSourceOptions, DhtState, DhtBucketRow, DhtOperationRow } from './dht-source.js';
export type { TrackerSourceOptions } from './tracker-source.js';
export { parseListenAddress, isLoopback, checkBind, tokenMatches, requestToken, isLoopbackHostHeader, DashboardConfigError } from './access.js';
export type { ListenAddress } from './access.js';
export { toCsv, parseCsv, CsvError } from './csv.js';
export { History } from './history.js';
