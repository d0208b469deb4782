/**
 * What the dashboard shows comes from sources: one per thing being watched
 * (a BitTorrent client, a tracker, a DHT node). The
 * server knows nothing about BitTorrent: it asks each source for its state
 * (JSON for the page and the API) and its table rows (CSV) together, at
 * most once a tick (so the page, the JSON and the CSVs of one tick agree),
 * its metric families (Prometheus, on every scrape) and its chart values
 * (sampled once a tick), and labels everything with the source's id. A new kind of source is a class
 * implementing this interface plus, for the page, a panel renderer keyed by
 * `kind` in assets.ts.
 */
import type { MetricFamily } from '../metrics/prometheus.js';

export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue | undefined };

export type Cell = string | number | boolean | null | undefined;

/** Rows for a CSV export; several sources may fill the same table (the server adds a `source` column). */
export interface Table {
  readonly columns: readonly string[];
  readonly rows: readonly (readonly Cell[])[];
}

export interface DashboardSource {
  /** Unique within one dashboard, shown to the user: 'seeder', 'leecher 1', 'tracker'. */
  readonly id: string;
  /** How the page renders `state()`: 'client', 'tracker' or 'dht'. */
  readonly kind: string;
  /** The source's state for the page and `/api/state`; must be bounded in size. */
  state(): JsonValue;
  /** Tables by name ('peers', 'torrents', 'swarms'), served as `/<name>.csv`. */
  tables?(): Readonly<Record<string, Table>>;
  /**
   * The state and the tables read at one instant, when they share figures
   * that change with time (rates): the server uses it, when there is one,
   * instead of calling state() and tables() one after the other.
   */
  snapshot?(): { readonly state: JsonValue; readonly tables: Readonly<Record<string, Table>> };
  /** Prometheus families; the server adds a `source` label to every sample. Not `process_*` ones: the server adds those once. */
  metrics?(): readonly MetricFamily[];
  /** This tick's values for the charts, by chart name ('download', 'upload', 'announces'). */
  series?(): Readonly<Record<string, number>>;
}
