/**
 * A tracker as a dashboard source: its figures (the same as its /stats),
 * the busiest swarms with seeders and leechers, its metric families (the
 * same as its /metrics) and the announce rate for a chart.
 */
import type { SwarmSummary } from '../core/tracker/tracker-core.js';
import type { TrackerHandle } from '../tracker/index.js';
import { trackerMetricFamilies } from '../tracker/metrics.js';
import type { MetricFamily } from '../metrics/prometheus.js';
import type { DashboardSource, JsonValue, Table } from './source.js';

export interface TrackerSourceOptions {
  /** Swarms listed, the most peers first. Default 50. */
  readonly maxSwarms?: number;
}

export const SWARM_COLUMNS = ['info_hash', 'seeders', 'leechers', 'completed'] as const;

export class TrackerSource implements DashboardSource {
  readonly kind = 'tracker';
  private readonly maxSwarms: number;

  constructor(
    readonly id: string,
    private readonly tracker: Pick<TrackerHandle, 'core' | 'stats' | 'httpUrl' | 'udpUrl'>,
    options: TrackerSourceOptions = {},
  ) {
    this.maxSwarms = options.maxSwarms ?? 50;
  }

  private swarms(): SwarmSummary[] {
    return this.tracker.core.topSwarms(this.maxSwarms);
  }

  state(): JsonValue {
    const s = this.tracker.stats();
    return {
      httpUrl: this.tracker.httpUrl ?? null,
      udpUrl: this.tracker.udpUrl ?? null,
      torrents: s.torrents,
      peers: s.peers,
      seeders: s.seeders,
      leechers: s.leechers,
      announcesPerSecond: s.announcesPerSecond,
      announces: s.announces.http + s.announces.udp,
      scrapes: s.scrapes.http + s.scrapes.udp,
      uptimeSeconds: s.uptimeSeconds,
      swarms: this.swarms().map((w) => ({ ...w })),
    };
  }

  tables(): Record<string, Table> {
    return { swarms: { columns: SWARM_COLUMNS, rows: this.swarms().map((w) => [w.infoHash, w.seeders, w.leechers, w.downloaded]) } };
  }

  metrics(): MetricFamily[] {
    return trackerMetricFamilies(this.tracker.stats());
  }

  series(): Record<string, number> {
    return { announces: this.tracker.stats().announcesPerSecond };
  }
}
