/**
 * A minimal SVG writer for the simulator's plots: line charts (time series,
 * step CDFs) with axes, ticks and a legend. Output is a pure function of the
 * input (numbers are printed with fixed precision), so the same run gives
 * byte-identical files.
 */

export interface Series {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
  /** Draw as a step function (for CDFs). */
  readonly step?: boolean;
}

export interface ChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  readonly width?: number;
  readonly height?: number;
  /** Fixed y range (default: from the data, starting at 0). */
  readonly yMin?: number;
  readonly yMax?: number;
}

const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A number for SVG coordinates: two decimals, no trailing zeros. */
function n(x: number): string {
  const r = Math.round(x * 100) / 100;
  return Object.is(r, -0) ? '0' : String(r);
}

/** Ticks at 1, 2 or 5 times a power of ten, about `count` of them over [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.round(v / step) * step);
  return out;
}

function label(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-3) return v.toExponential(1);
  return String(Math.round(v * 1000) / 1000);
}

export function lineChart(o: ChartOptions): string {
  const width = o.width ?? 640;
  const height = o.height ?? 400;
  const left = 70;
  const right = 20;
  const top = 40;
  const bottom = 55;
  const pw = width - left - right;
  const ph = height - top - bottom;
  let xMin = Infinity;
  let xMax = -Infinity;
  let yMin = o.yMin ?? 0;
  let yMax = o.yMax ?? -Infinity;
  for (const s of o.series)
    for (const [x, y] of s.points) {
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      xMin = Math.min(xMin, x);
      xMax = Math.max(xMax, x);
      if (o.yMin === undefined) yMin = Math.min(yMin, y);
      if (o.yMax === undefined) yMax = Math.max(yMax, y);
    }
  if (!(xMax > xMin)) {
    xMin = Number.isFinite(xMin) ? xMin - 1 : 0;
    xMax = xMin + 2;
  }
  if (!(yMax > yMin)) yMax = yMin + 1;
  const sx = (x: number): number => left + ((x - xMin) / (xMax - xMin)) * pw;
  const sy = (y: number): number => top + ph - ((y - yMin) / (yMax - yMin)) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${n(width / 2)}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`);
  for (const t of niceTicks(xMin, xMax)) {
    out.push(`<line x1="${n(sx(t))}" y1="${top}" x2="${n(sx(t))}" y2="${top + ph}" stroke="#eee"/>`);
    out.push(`<text x="${n(sx(t))}" y="${top + ph + 16}" text-anchor="middle">${label(t)}</text>`);
  }
  for (const t of niceTicks(yMin, yMax)) {
    out.push(`<line x1="${left}" y1="${n(sy(t))}" x2="${left + pw}" y2="${n(sy(t))}" stroke="#eee"/>`);
    out.push(`<text x="${left - 6}" y="${n(sy(t) + 4)}" text-anchor="end">${label(t)}</text>`);
  }
  out.push(`<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${n(left + pw / 2)}" y="${height - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  out.push(`<text x="16" y="${n(top + ph / 2)}" text-anchor="middle" transform="rotate(-90 16 ${n(top + ph / 2)})">${esc(o.yLabel)}</text>`);
  o.series.forEach((s, k) => {
    const colour = COLOURS[k % COLOURS.length]!;
    const pts: string[] = [];
    let prev: readonly [number, number] | undefined;
    for (const p of s.points) {
      if (!Number.isFinite(p[0]) || !Number.isFinite(p[1])) continue;
      if (s.step && prev) pts.push(`${n(sx(p[0]))},${n(sy(prev[1]))}`);
      pts.push(`${n(sx(p[0]))},${n(sy(p[1]))}`);
      prev = p;
    }
    if (pts.length > 0) out.push(`<polyline fill="none" stroke="${colour}" stroke-width="1.5" points="${pts.join(' ')}"/>`);
    const ly = top + 14 + 16 * k;
    out.push(`<line x1="${left + 10}" y1="${ly - 4}" x2="${left + 30}" y2="${ly - 4}" stroke="${colour}" stroke-width="2"/>`);
    out.push(`<text x="${left + 36}" y="${ly}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/**
 * The empirical CDF of `values` as step points (x = value, y = fraction <= x):
 * one point per distinct value, and of those only the ones that rise at least
 * 1/maxPoints above the last point kept (the largest value always kept). The
 * step drawn through them is then below the true CDF by less than
 * 1/maxPoints everywhere, and 100 000 lookups make a chart of at most about
 * maxPoints points rather than one per operation.
 */
export function cdfPoints(values: readonly number[], maxPoints = 1000): [number, number][] {
  const sorted = Float64Array.from(values.filter(Number.isFinite)).sort();
  const count = sorted.length;
  const pts: [number, number][] = [];
  if (count === 0) return pts;
  const minRise = 1 / Math.max(1, maxPoints);
  pts.push([sorted[0]!, 0]);
  let lastY = 0;
  for (let i = 0; i < count; i++) {
    const last = i === count - 1;
    if (!last && sorted[i + 1] === sorted[i]) continue;
    const y = (i + 1) / count;
    if (last || y - lastY >= minRise) {
      pts.push([sorted[i]!, y]);
      lastY = y;
    }
  }
  return pts;
}

export function cdfChart(o: { title: string; xLabel: string; series: readonly { name: string; values: readonly number[] }[] }): string {
  return lineChart({
    title: o.title,
    xLabel: o.xLabel,
    yLabel: 'fraction',
    yMin: 0,
    yMax: 1,
    series: o.series.map((s) => ({ name: `${s.name} (n=${s.values.length})`, points: cdfPoints(s.values), step: true })),
  });
}
