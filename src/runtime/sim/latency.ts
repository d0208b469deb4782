/**
 * Latency models for the simulated network: pure functions of a link (the
 * two hosts' addresses and placement hints) and a seed, so the same seed
 * gives the same latencies whatever order hosts are created or packets sent.
 *
 *   constantLatency(ms)                    every link the same
 *   uniformLatency(min, max, seed)         per link (unordered pair), uniform in [min, max]
 *   geographicLatency({ regions, ... })    hosts placed at coordinates in weighted regions;
 *                                          latency = access(a) + access(b) + distance * msPerUnit
 *   matrixLatency(matrix)                  a site-to-site matrix (ms), hosts mapped to sites
 *
 * The matrix model takes numbers, never a path: the caller reads the file
 * and hands `parseLatencyMatrix` its text.
 *
 * Placement comes from the host's hints (`region`, `site`, given at
 * `addHost`) or else from a hash of its address and the seed.
 */
import type { LinkFunction, SimHost } from './network.js';
import { SimNetError } from './network.js';

/** A 32-bit FNV-1a hash of a string, then mixed with a seed (murmur3's finaliser). */
export function hash32(text: string, seed = 0): number {
  return hashFinish(fnv(0x811c9dc5 ^ (seed >>> 0), text));
}

/** FNV-1a over the string's code units, continuing from `h`. */
function fnv(h: number, text: string): number {
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h;
}

function hashFinish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A float in [0, 1) from a hash of `text` and `seed`. */
export function hashUnit(text: string, seed = 0): number {
  return hash32(text, seed) / 0x1_0000_0000;
}

function checkMs(name: string, ms: number): void {
  if (!(ms >= 0 && ms < Infinity)) throw new RangeError(`${name} must be a finite number >= 0 ms, got ${ms}`);
}

export function constantLatency(ms: number): LinkFunction {
  checkMs('latency', ms);
  return () => ms;
}

/** A fixed latency per (unordered) pair of hosts, uniform in [minMs, maxMs]. */
export function uniformLatency(minMs: number, maxMs: number, seed = 0): LinkFunction {
  checkMs('minMs', minMs);
  checkMs('maxMs', maxMs);
  if (maxMs < minMs) throw new RangeError(`maxMs (${maxMs}) must be >= minMs (${minMs})`);
  const span = maxMs - minMs;
  const init = 0x811c9dc5 ^ (seed >>> 0);
  return (a, b) => {
    // hashUnit(`${low}|${high}`, seed), without building the key for every datagram.
    const low = a.address < b.address ? a.address : b.address;
    const high = low === a.address ? b.address : a.address;
    const h = fnv(Math.imul(fnv(init, low) ^ 0x7c, 0x01000193), high);
    return minMs + span * (hashFinish(h) / 0x1_0000_0000);
  };
}

export interface GeoRegion {
  readonly name: string;
  /** Relative share of hosts placed here (default 1). */
  readonly weight?: number;
  /** The region's centre, in abstract distance units. */
  readonly center: readonly [number, number];
  /** Hosts are placed uniformly in a disc of this radius around the centre (default 0). */
  readonly radius?: number;
  /** One-way access (last-mile) latency range of hosts in the region, ms. */
  readonly accessMs: readonly [number, number];
}

export interface GeoOptions {
  readonly regions: readonly GeoRegion[];
  /** One-way propagation per distance unit (default 1: units are ms). */
  readonly msPerUnit?: number;
  readonly seed?: number;
}

export interface GeoPlacement {
  readonly region: GeoRegion;
  readonly x: number;
  readonly y: number;
  readonly accessMs: number;
}

/** A geographic model; `place(host)` says where a host is (for metrics and tests). */
export interface GeoModel extends LinkFunction {
  place(host: Pick<SimHost, 'address' | 'region'>): GeoPlacement;
}

export function geographicLatency(options: GeoOptions): GeoModel {
  const regions = options.regions;
  if (regions.length === 0) throw new RangeError('geographic latency needs at least one region');
  const msPerUnit = options.msPerUnit ?? 1;
  checkMs('msPerUnit', msPerUnit);
  const seed = options.seed ?? 0;
  const byName = new Map<string, GeoRegion>();
  let total = 0;
  for (const r of regions) {
    const w = r.weight ?? 1;
    if (!(w >= 0 && w < Infinity)) throw new RangeError(`region ${r.name}: weight must be >= 0`);
    checkMs(`region ${r.name}: accessMs[0]`, r.accessMs[0]);
    checkMs(`region ${r.name}: accessMs[1]`, r.accessMs[1]);
    if (r.accessMs[1] < r.accessMs[0]) throw new RangeError(`region ${r.name}: accessMs must be [min, max]`);
    if (byName.has(r.name)) throw new RangeError(`region ${r.name} is defined twice`);
    byName.set(r.name, r);
    total += w;
  }
  if (!(total > 0)) throw new RangeError('geographic latency needs a region with weight > 0');

  const place = (host: Pick<SimHost, 'address' | 'region'>): GeoPlacement => {
    const a = host.address;
    let region: GeoRegion | undefined;
    if (host.region !== undefined) {
      region = byName.get(host.region);
      if (region === undefined) throw new SimNetError('EINVAL', `host ${a}: unknown region ${host.region}`);
    } else {
      let pick = hashUnit(`region|${a}`, seed) * total;
      for (const r of regions) {
        pick -= r.weight ?? 1;
        if (pick < 0) {
          region = r;
          break;
        }
      }
      region ??= regions[regions.length - 1]!;
    }
    // Uniform in the disc: radius ~ sqrt(u).
    const rr = (region.radius ?? 0) * Math.sqrt(hashUnit(`r|${a}`, seed));
    const theta = 2 * Math.PI * hashUnit(`t|${a}`, seed);
    const [lo, hi] = region.accessMs;
    return {
      region,
      x: region.center[0] + rr * Math.cos(theta),
      y: region.center[1] + rr * Math.sin(theta),
      accessMs: lo + (hi - lo) * hashUnit(`access|${a}`, seed),
    };
  };
  // Placements are pure, so caching them only saves work; the cache is cleared when it grows large.
  const cache = new Map<string, GeoPlacement>();
  const placed = (host: SimHost): GeoPlacement => {
    const key = host.region === undefined ? host.address : `${host.address}@${host.region}`;
    let p = cache.get(key);
    if (p === undefined) {
      if (cache.size >= 1 << 18) cache.clear();
      p = place(host);
      cache.set(key, p);
    }
    return p;
  };
  const fn = ((from: SimHost, to: SimHost): number => {
    if (from === to) return 0;
    const a = placed(from);
    const b = placed(to);
    return a.accessMs + b.accessMs + Math.hypot(a.x - b.x, a.y - b.y) * msPerUnit;
  }) as GeoModel;
  fn.place = place;
  return fn;
}

/** A square matrix of one-way latencies (ms) between sites. */
export interface LatencyMatrix {
  readonly sites: readonly string[];
  readonly ms: readonly (readonly number[])[];
}

export class LatencyMatrixError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LatencyMatrixError';
  }
}

const MAX_SITES = 4096;

/**
 * Parses a latency matrix: either JSON `{ "sites": [...], "ms": [[...], ...] }`
 * or CSV whose first row is `,site1,site2,...` and each further row
 * `siteK,ms,ms,...`. Every entry must be a finite number >= 0.
 */
export function parseLatencyMatrix(text: string): LatencyMatrix {
  const trimmed = text.trim();
  let sites: string[];
  let ms: number[][];
  if (trimmed.startsWith('{')) {
    let raw: unknown;
    try {
      raw = JSON.parse(trimmed);
    } catch (e) {
      throw new LatencyMatrixError(`latency matrix: invalid JSON: ${(e as Error).message}`);
    }
    const o = raw as { sites?: unknown; ms?: unknown };
    if (!Array.isArray(o.sites) || !o.sites.every((s) => typeof s === 'string')) throw new LatencyMatrixError('latency matrix: "sites" must be an array of strings');
    if (!Array.isArray(o.ms)) throw new LatencyMatrixError('latency matrix: "ms" must be an array of rows');
    sites = o.sites as string[];
    ms = (o.ms as unknown[]).map((row, i) => {
      if (!Array.isArray(row)) throw new LatencyMatrixError(`latency matrix: ms[${i}] must be an array`);
      return row.map((v, j) => {
        if (typeof v !== 'number') throw new LatencyMatrixError(`latency matrix: ms[${i}][${j}] must be a number`);
        return v;
      });
    });
  } else {
    const lines = trimmed.split(/\r?\n/).filter((l) => l.trim() !== '');
    if (lines.length < 2) throw new LatencyMatrixError('latency matrix: CSV needs a header row and at least one site row');
    sites = lines[0]!.split(',').slice(1).map((s) => s.trim());
    ms = lines.slice(1).map((line, i) => {
      const cells = line.split(',');
      if (cells[0]!.trim() !== sites[i]) throw new LatencyMatrixError(`latency matrix: row ${i + 2} must start with site "${sites[i] ?? '?'}"`);
      return cells.slice(1).map((c, j) => {
        const v = Number(c.trim());
        if (c.trim() === '' || Number.isNaN(v)) throw new LatencyMatrixError(`latency matrix: row ${i + 2}, column ${j + 2}: "${c.trim()}" is not a number`);
        return v;
      });
    });
  }
  return checkMatrix({ sites, ms });
}

export function checkMatrix(m: LatencyMatrix): LatencyMatrix {
  const n = m.sites.length;
  if (n === 0) throw new LatencyMatrixError('latency matrix: no sites');
  if (n > MAX_SITES) throw new LatencyMatrixError(`latency matrix: ${n} sites (at most ${MAX_SITES})`);
  if (new Set(m.sites).size !== n) throw new LatencyMatrixError('latency matrix: site names must be distinct');
  if (m.ms.length !== n) throw new LatencyMatrixError(`latency matrix: ${m.ms.length} rows for ${n} sites`);
  m.ms.forEach((row, i) => {
    if (row.length !== n) throw new LatencyMatrixError(`latency matrix: row ${i} (${m.sites[i]}) has ${row.length} entries, expected ${n}`);
    row.forEach((v, j) => {
      if (!(v >= 0 && v < Infinity)) throw new LatencyMatrixError(`latency matrix: ms[${i}][${j}] must be a finite number >= 0, got ${v}`);
    });
  });
  return m;
}

/**
 * Latency from a site matrix. A host is at the site named by its `region`
 * hint, or at the site numbered by its `site` hint, or else at a site chosen
 * by a hash of its address and the seed.
 */
export function matrixLatency(matrix: LatencyMatrix, seed = 0): LinkFunction {
  checkMatrix(matrix);
  const n = matrix.sites.length;
  const index = new Map(matrix.sites.map((s, i) => [s, i]));
  const flat = new Float64Array(n * n);
  matrix.ms.forEach((row, i) => row.forEach((v, j) => (flat[i * n + j] = v)));
  const siteOf = (h: SimHost): number => {
    if (h.region !== undefined) {
      const i = index.get(h.region);
      if (i === undefined) throw new SimNetError('EINVAL', `host ${h.address}: unknown site ${h.region}`);
      return i;
    }
    if (h.site !== undefined) return ((h.site % n) + n) % n;
    return hash32(h.address, seed) % n;
  };
  return (from, to) => (from === to ? 0 : flat[siteOf(from) * n + siteOf(to)]!);
}
