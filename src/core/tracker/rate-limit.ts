/**
 * Per-address rate limiting: one token bucket per key (the tracker uses the
 * IPv4 address, or the /64 prefix of an IPv6 one), refilled continuously at
 * `perSecond` up to `burst`, driven by the `now` it is given.
 *
 * Memory is bounded: at most `maxTracked` buckets; when full, the oldest
 * bucket is forgotten (which only ever errs towards letting someone through).
 * `sweep(now)` forgets buckets that have refilled completely, since a full
 * bucket is the same as no bucket.
 */
export interface RateLimitOptions {
  /** Sustained requests per second per address. */
  readonly perSecond: number;
  /** Requests allowed at once after a quiet spell. */
  readonly burst: number;
  /** Buckets kept at most. Default 100 000. */
  readonly maxTracked?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;
  private readonly burst: number;
  private readonly maxTracked: number;

  constructor(options: RateLimitOptions) {
    if (!(options.perSecond > 0) || !(options.burst >= 1)) throw new RangeError('rate limit needs perSecond > 0 and burst >= 1');
    this.perMs = options.perSecond / 1000;
    this.burst = options.burst;
    this.maxTracked = options.maxTracked ?? 100_000;
  }

  get tracked(): number {
    return this.buckets.size;
  }

  /** Takes one token for `key`; false when the bucket is empty. */
  allow(now: number, key: string): boolean {
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= this.maxTracked) {
        const oldest = this.buckets.keys().next();
        if (oldest.done !== true) this.buckets.delete(oldest.value);
      }
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    } else if (now > b.at) {
      b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.perMs);
      b.at = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Forgets buckets that have refilled. */
  sweep(now: number): void {
    for (const [key, b] of this.buckets) {
      if (b.tokens + (now - b.at) * this.perMs >= this.burst) this.buckets.delete(key);
    }
  }
}
