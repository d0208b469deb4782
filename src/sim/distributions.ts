/**
 * Random durations for churn: session lengths and offline times, drawn by
 * inverse transform from a `Random`, so a seeded stream gives the same
 * sequence every run.
 *
 * Every family can be given by its usual parameters, or calibrated by the
 * figure studies report: "a fraction `dropFraction` of sessions end within
 * `withinMs`" (for example 15-20 % of sessions dropping within the run). The
 * calibration solves the CDF for the scale: F(withinMs) = dropFraction.
 */
import type { Random } from '../runtime/contract.js';

export type Distribution =
  | { readonly type: 'constant'; readonly ms: number }
  | { readonly type: 'uniform'; readonly minMs: number; readonly maxMs: number }
  | { readonly type: 'exponential'; readonly meanMs: number }
  /** Weibull with shape k and scale lambda: F(t) = 1 - exp(-(t/lambda)^k). */
  | { readonly type: 'weibull'; readonly shape: number; readonly scaleMs: number }
  /** Pareto (type I) with shape alpha and minimum x_m: F(t) = 1 - (x_m/t)^alpha for t >= x_m. */
  | { readonly type: 'pareto'; readonly shape: number; readonly minMs: number };

/** A family calibrated by "dropFraction of sessions end within withinMs". */
export type Calibrated =
  | { readonly type: 'exponential'; readonly dropFraction: number; readonly withinMs: number }
  | { readonly type: 'weibull'; readonly shape: number; readonly dropFraction: number; readonly withinMs: number }
  | { readonly type: 'pareto'; readonly shape: number; readonly dropFraction: number; readonly withinMs: number };

export type DistributionSpec = Distribution | Calibrated;

function isCalibrated(d: DistributionSpec): d is Calibrated {
  return 'dropFraction' in d;
}

/** Turns a calibrated spec into plain parameters (a plain one is returned as is). */
export function resolveDistribution(d: DistributionSpec): Distribution {
  if (!isCalibrated(d)) return d;
  const f = d.dropFraction;
  const w = d.withinMs;
  if (!(f > 0 && f < 1)) throw new RangeError(`dropFraction must be in (0, 1), got ${f}`);
  if (!(w > 0 && w < Infinity)) throw new RangeError(`withinMs must be > 0, got ${w}`);
  const l = -Math.log1p(-f); // -ln(1 - f)
  switch (d.type) {
    case 'exponential':
      return { type: 'exponential', meanMs: w / l };
    case 'weibull':
      return { type: 'weibull', shape: d.shape, scaleMs: w / l ** (1 / d.shape) };
    case 'pareto':
      return { type: 'pareto', shape: d.shape, minMs: w * (1 - f) ** (1 / d.shape) };
  }
}

/** Draws one duration in ms (>= 0). */
export function sample(d: Distribution, random: Random): number {
  switch (d.type) {
    case 'constant':
      return d.ms;
    case 'uniform':
      return d.minMs + (d.maxMs - d.minMs) * random.float();
    case 'exponential':
      return -d.meanMs * Math.log1p(-random.float());
    case 'weibull':
      return d.scaleMs * (-Math.log1p(-random.float())) ** (1 / d.shape);
    case 'pareto':
      return d.minMs / (1 - random.float()) ** (1 / d.shape);
  }
}

/** The CDF, P(duration <= t). */
export function cdf(d: Distribution, t: number): number {
  if (t < 0) return 0;
  switch (d.type) {
    case 'constant':
      return t >= d.ms ? 1 : 0;
    case 'uniform':
      return d.maxMs === d.minMs ? (t >= d.minMs ? 1 : 0) : Math.min(1, Math.max(0, (t - d.minMs) / (d.maxMs - d.minMs)));
    case 'exponential':
      return 1 - Math.exp(-t / d.meanMs);
    case 'weibull':
      return 1 - Math.exp(-((t / d.scaleMs) ** d.shape));
    case 'pareto':
      return t < d.minMs ? 0 : 1 - (d.minMs / t) ** d.shape;
  }
}

/** Lanczos approximation of the gamma function (g = 7, n = 9), for x > 0. */
export function gamma(x: number): number {
  if (x < 0.5) return Math.PI / (Math.sin(Math.PI * x) * gamma(1 - x));
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  x -= 1;
  let a = c[0]!;
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i]! / (x + i);
  return Math.sqrt(2 * Math.PI) * t ** (x + 0.5) * Math.exp(-t) * a;
}

/** The mean (Infinity for a Pareto with shape <= 1). */
export function mean(d: Distribution): number {
  switch (d.type) {
    case 'constant':
      return d.ms;
    case 'uniform':
      return (d.minMs + d.maxMs) / 2;
    case 'exponential':
      return d.meanMs;
    case 'weibull':
      return d.scaleMs * gamma(1 + 1 / d.shape);
    case 'pareto':
      return d.shape <= 1 ? Infinity : (d.shape * d.minMs) / (d.shape - 1);
  }
}
