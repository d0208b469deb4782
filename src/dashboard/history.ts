/**
 * The charts' history: one sample per tick of each (chart, source) value,
 * the last `capacity` ticks only. A series that was not reported in a tick
 * gets null there; one that has been null for the whole window is dropped.
 */

export interface HistoryJson {
  /** Sample times, seconds since the epoch. */
  readonly t: readonly number[];
  /** chart name -> source id -> values, aligned with `t`. */
  readonly charts: Readonly<Record<string, Readonly<Record<string, readonly (number | null)[]>>>>;
}

export interface Sample {
  readonly t: number;
  readonly charts: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

/** Series (chart x source) kept at most, whatever the sources report. */
const MAX_SERIES = 256;

export class History {
  private readonly times: number[] = [];
  private readonly charts = new Map<string, Map<string, (number | null)[]>>();
  private seriesCount = 0;

  constructor(readonly capacity: number) {
    if (!(Number.isInteger(capacity) && capacity >= 2)) throw new RangeError('history capacity must be an integer >= 2');
  }

  get length(): number {
    return this.times.length;
  }

  push(sample: Sample): void {
    const full = this.times.length === this.capacity;
    if (full) this.times.shift();
    this.times.push(sample.t);
    const n = this.times.length;
    const reported = new Set<(number | null)[]>();
    for (const [chart, bySource] of Object.entries(sample.charts)) {
      let series = this.charts.get(chart);
      for (const [source, value] of Object.entries(bySource)) {
        let values = series?.get(source);
        if (values === undefined) {
          if (this.seriesCount >= MAX_SERIES) continue;
          if (series === undefined) {
            series = new Map();
            this.charts.set(chart, series);
          }
          values = new Array<number | null>(n - 1).fill(null);
          series.set(source, values);
          this.seriesCount++;
        } else if (full) values.shift();
        values.push(Number.isFinite(value) ? value : null);
        reported.add(values);
      }
    }
    // Series not reported this tick: align them, and drop those gone for the whole window.
    for (const [chart, series] of this.charts) {
      for (const [source, values] of series) {
        if (reported.has(values)) continue;
        if (full) values.shift();
        values.push(null);
        if (values.every((v) => v === null)) {
          series.delete(source);
          this.seriesCount--;
        }
      }
      if (series.size === 0) this.charts.delete(chart);
    }
  }

  toJSON(): HistoryJson {
    const charts: Record<string, Record<string, (number | null)[]>> = {};
    for (const [chart, series] of this.charts) {
      const c: Record<string, (number | null)[]> = {};
      for (const [source, values] of series) c[source] = [...values];
      charts[chart] = c;
    }
    return { t: [...this.times], charts };
  }
}
