/**
 * The tracker's statistics as JSON (`/stats`) and in the Prometheus text
 * exposition format 0.0.4 (`/metrics`). Names follow Prometheus practice:
 * the `peerkit_tracker_` prefix, base units, `_total` on counters, one
 * metric per meaning with labels for the dimensions. Rates are not
 * exported: `rate(peerkit_tracker_announces_total[1m])` gives announces per
 * second (the JSON and the dashboard show a 10-second average). The
 * process's memory and start time use the standard `process_*` names and
 * are added once per exposition (here, or by the dashboard), not by
 * `trackerMetricFamilies`.
 */
import type { FailureKind, TrackerStats } from '../core/tracker/tracker-core.js';
import { processMetricFamilies } from '../metrics/process.js';
import { renderPrometheus, type MetricFamily, type MetricType, type Sample } from '../metrics/prometheus.js';

/** What the servers add to the core's figures. */
export interface ServerStats {
  readonly httpRequests: number;
  /** HTTP connections closed at once because their address already had its share open (absent: 0). */
  readonly httpConnectionsRefused?: number;
  /** Requests or datagrams that hit an unexpected error (answered 500 or dropped). */
  readonly internalErrors: number;
  readonly residentMemoryBytes: number;
  readonly uptimeSeconds: number;
}

export type FullStats = TrackerStats & ServerStats;

export { PROMETHEUS_CONTENT_TYPE } from '../metrics/prometheus.js';

function metric(out: MetricFamily[], name: string, type: MetricType, help: string, samples: readonly Sample[]): void {
  out.push({ name, type, help, samples: samples.map(([l, v]) => [l, Number.isFinite(v) ? v : 0] as const) });
}

const FAILURE_KINDS: readonly FailureKind[] = ['bad-request', 'unregistered-torrent', 'bad-passkey', 'tracker-full', 'peer-id-in-use', 'rate-limited', 'full-scrape'];

/** The tracker's own metric families (for merging into another exposition, like the dashboard's); no `process_*` ones. */
export function trackerMetricFamilies(s: FullStats): MetricFamily[] {
  const out: MetricFamily[] = [];
  metric(out, 'peerkit_tracker_torrents', 'gauge', 'Torrents in the swarm registry.', [[undefined, s.torrents]]);
  metric(out, 'peerkit_tracker_seeders', 'gauge', 'Peers that have the whole torrent.', [[undefined, s.seeders]]);
  metric(out, 'peerkit_tracker_leechers', 'gauge', 'Peers still downloading.', [[undefined, s.leechers]]);
  metric(out, 'peerkit_tracker_users', 'gauge', 'Registered users (private mode).', [[undefined, s.users]]);
  metric(out, 'peerkit_tracker_announces_total', 'counter', 'Announce requests parsed, by protocol.', [
    [{ protocol: 'http' }, s.announces.http],
    [{ protocol: 'udp' }, s.announces.udp],
  ]);
  metric(out, 'peerkit_tracker_scrapes_total', 'counter', 'Scrape requests parsed, by protocol.', [
    [{ protocol: 'http' }, s.scrapes.http],
    [{ protocol: 'udp' }, s.scrapes.udp],
  ]);
  metric(out, 'peerkit_tracker_udp_connects_total', 'counter', 'BEP 15 connect requests answered.', [[undefined, s.udpConnects]]);
  metric(
    out,
    'peerkit_tracker_errors_total',
    'counter',
    'Failure responses sent (HTTP failure reason or UDP error), by kind.',
    FAILURE_KINDS.map((k) => [{ kind: k.replace(/-/g, '_') }, s.failures[k]] as const),
  );
  metric(out, 'peerkit_tracker_dropped_datagrams_total', 'counter', 'UDP datagrams dropped without a reply, by reason.', [
    [{ reason: 'malformed' }, s.dropped.malformed],
    [{ reason: 'forged_connection_id' }, s.dropped.forgedConnectionId],
    [{ reason: 'rate_limited' }, s.dropped.rateLimited],
  ]);
  metric(out, 'peerkit_tracker_peers_refused_total', 'counter', 'Peers answered but not stored because a cap was reached.', [[undefined, s.peersRefused]]);
  metric(out, 'peerkit_tracker_torrents_evicted_total', 'counter', 'Dead or lone-peer torrents dropped to make room for new ones at the torrent cap.', [[undefined, s.torrentsEvicted ?? 0]]);
  metric(out, 'peerkit_tracker_peers_expired_total', 'counter', 'Peers removed after missing their announces.', [[undefined, s.peersExpired]]);
  metric(out, 'peerkit_tracker_http_requests_total', 'counter', 'HTTP requests received.', [[undefined, s.httpRequests]]);
  metric(out, 'peerkit_tracker_http_connections_refused_total', 'counter', 'HTTP connections closed at once: their address had too many open.', [[undefined, s.httpConnectionsRefused ?? 0]]);
  metric(out, 'peerkit_tracker_internal_errors_total', 'counter', 'Requests that failed inside the tracker (HTTP 500 or dropped).', [[undefined, s.internalErrors]]);
  metric(out, 'peerkit_tracker_peer_memory_bytes', 'gauge', 'Bytes allocated for peer records.', [[undefined, s.peerMemoryBytes]]);
  return out;
}

/** The tracker's /metrics: its families and the process's. */
export function prometheusText(s: FullStats): string {
  return renderPrometheus([...trackerMetricFamilies(s), ...processMetricFamilies()]);
}

export function statsJson(s: FullStats): string {
  return `${JSON.stringify(s, null, 2)}\n`;
}
