/**
 * Metrics of a simulation run, for any scenario kind: per-operation records
 * (a download, a lookup: start, end, success, hops, messages, bytes) and time
 * series sampled at a fixed simulated interval. `files()` renders them as
 * CSV and JSON (and the kind adds SVG plots); numbers are printed with fixed
 * rules, so a run's files are a pure function of its scenario and seed.
 *
 * Memory is bounded: at most `maxOperations` records and `maxSamples`
 * samples are kept; the rest are counted as dropped.
 */

export interface OperationRecord {
  /** What the operation was: 'download', 'lookup', ... */
  readonly kind: string;
  readonly node: number;
  readonly startMs: number;
  readonly endMs: number;
  readonly ok: boolean;
  readonly hops?: number;
  readonly messages?: number;
  readonly bytes?: number;
}

export interface MetricsOptions {
  readonly maxOperations?: number;
  readonly maxSamples?: number;
}

/** Fixed-precision text for a number: integers as they are, others to 6 significant digits. */
export function num(x: number | undefined): string {
  if (x === undefined) return '';
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (Number.isInteger(x)) return String(x);
  return String(Number(x.toPrecision(6)));
}

function round(x: number): number | string {
  return Number.isFinite(x) ? Number(num(x)) : num(x);
}

export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export interface OperationSummary {
  readonly kind: string;
  readonly count: number;
  readonly ok: number;
  readonly latencyMs: { readonly p50: number; readonly p90: number; readonly p99: number; readonly max: number; readonly mean: number };
  readonly hopsMean: number | undefined;
  readonly messagesMean: number | undefined;
}

export class Metrics {
  readonly operations: OperationRecord[] = [];
  operationsDropped = 0;
  private readonly columns: string[] = ['t_ms'];
  private readonly rows: number[][] = [];
  samplesDropped = 0;
  private readonly maxOperations: number;
  private readonly maxSamples: number;

  constructor(options: MetricsOptions = {}) {
    this.maxOperations = options.maxOperations ?? 1_000_000;
    this.maxSamples = options.maxSamples ?? 100_000;
  }

  record(op: OperationRecord): void {
    if (this.operations.length >= this.maxOperations) {
      this.operationsDropped++;
      return;
    }
    this.operations.push(op);
  }

  /** One row of the time series; the first sample fixes the columns (in the order given). */
  sample(now: number, values: Readonly<Record<string, number>>): void {
    if (this.rows.length >= this.maxSamples) {
      this.samplesDropped++;
      return;
    }
    if (this.columns.length === 1) this.columns.push(...Object.keys(values));
    this.rows.push([now, ...this.columns.slice(1).map((c) => values[c] ?? NaN)]);
  }

  get seriesColumns(): readonly string[] {
    return this.columns;
  }

  /** The (t, value) points of a column of the time series. */
  series(column: string): [number, number][] {
    const k = this.columns.indexOf(column);
    if (k < 0) return [];
    return this.rows.map((r) => [r[0]!, r[k]!]);
  }

  summarise(): OperationSummary[] {
    const kinds = [...new Set(this.operations.map((o) => o.kind))].sort();
    return kinds.map((kind) => {
      const ops = this.operations.filter((o) => o.kind === kind);
      const ok = ops.filter((o) => o.ok);
      const lat = ok.map((o) => o.endMs - o.startMs).sort((a, b) => a - b);
      const hops = ok.filter((o) => o.hops !== undefined).map((o) => o.hops!);
      const msgs = ops.filter((o) => o.messages !== undefined).map((o) => o.messages!);
      const mean = (xs: number[]): number | undefined => (xs.length === 0 ? undefined : xs.reduce((a, b) => a + b, 0) / xs.length);
      return {
        kind,
        count: ops.length,
        ok: ok.length,
        latencyMs: { p50: quantile(lat, 0.5), p90: quantile(lat, 0.9), p99: quantile(lat, 0.99), max: lat.length ? lat[lat.length - 1]! : NaN, mean: mean(lat) ?? NaN },
        hopsMean: mean(hops),
        messagesMean: mean(msgs),
      };
    });
  }

  operationsCsv(): string {
    const lines = ['kind,node,start_ms,end_ms,latency_ms,ok,hops,messages,bytes'];
    for (const o of this.operations) {
      lines.push([o.kind, o.node, num(o.startMs), num(o.endMs), num(o.endMs - o.startMs), o.ok ? 1 : 0, num(o.hops), num(o.messages), num(o.bytes)].join(','));
    }
    return `${lines.join('\n')}\n`;
  }

  operationsJson(): string {
    const ops = this.operations.map((o) => {
      const r: Record<string, unknown> = { kind: o.kind, node: o.node, startMs: round(o.startMs), endMs: round(o.endMs), latencyMs: round(o.endMs - o.startMs), ok: o.ok };
      if (o.hops !== undefined) r['hops'] = o.hops;
      if (o.messages !== undefined) r['messages'] = o.messages;
      if (o.bytes !== undefined) r['bytes'] = o.bytes;
      return r;
    });
    return `${JSON.stringify({ operations: ops, dropped: this.operationsDropped })}\n`;
  }

  seriesCsv(): string {
    return `${[this.columns.join(','), ...this.rows.map((r) => r.map(num).join(','))].join('\n')}\n`;
  }

  seriesJson(): string {
    const out: Record<string, (number | string)[]> = {};
    this.columns.forEach((c, k) => (out[c] = this.rows.map((r) => round(r[k]!))));
    return `${JSON.stringify({ series: out, dropped: this.samplesDropped })}\n`;
  }
}

/** Rounds every number in a JSON-able value with `num`'s rules (for summaries). */
export function roundDeep(v: unknown): unknown {
  if (typeof v === 'number') return round(v);
  if (Array.isArray(v)) return v.map(roundDeep);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, roundDeep(x)]));
  return v;
}

/** A least-squares fit y = a + b * log2(x), with its coefficient of determination. */
export interface LogFit {
  readonly a: number;
  readonly b: number;
  readonly r2: number;
}

/**
 * Fits y = a + b log2(x) (for "lookup hops grow like log N": x = network
 * size, y = mean hops). Needs at least two distinct x > 0.
 */
export function fitLog2(xs: readonly number[], ys: readonly number[]): LogFit {
  if (xs.length !== ys.length) throw new RangeError('fitLog2: xs and ys differ in length');
  const lx = xs.map((x) => {
    if (!(x > 0)) throw new RangeError(`fitLog2: x must be > 0, got ${x}`);
    return Math.log2(x);
  });
  const n = lx.length;
  const mx = lx.reduce((s, v) => s + v, 0) / n;
  const my = ys.reduce((s, v) => s + v, 0) / n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = lx[i]! - mx;
    const dy = ys[i]! - my;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  if (!(sxx > 0)) throw new RangeError('fitLog2: needs at least two distinct x');
  const b = sxy / sxx;
  const a = my - b * mx;
  const r2 = syy === 0 ? 1 : (sxy * sxy) / (sxx * syy);
  return { a, b, r2 };
}
