/**
 * A token bucket for rate limits, with time passed in. One bucket may be
 * shared by several torrents for a global limit. `rate` 0 or Infinity means
 * unlimited.
 */
export class TokenBucket {
  private tokens: number;
  private last: number | undefined;

  constructor(
    public rate: number,
    /** Most bytes that can be spent at once after an idle spell. Default: one second's worth, at least 64 KiB. */
    private readonly burst = Math.max(64 * 1024, rate),
  ) {
    this.tokens = this.burst;
  }

  get unlimited(): boolean {
    return !(this.rate > 0) || this.rate === Infinity;
  }

  private refill(now: number): void {
    if (this.last !== undefined && now > this.last) this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
  }

  /** Takes `n` tokens if they are there; a debt of one request is allowed so large blocks never starve. */
  take(now: number, n: number): boolean {
    if (this.unlimited) return true;
    this.refill(now);
    if (this.tokens <= 0) return false;
    this.tokens -= n;
    return true;
  }

  /** Tokens there now (negative while in debt); Infinity when unlimited. */
  available(now: number): number {
    if (this.unlimited) return Infinity;
    this.refill(now);
    return this.tokens;
  }

  /** When tokens will next be available (now, if they are). */
  availableAt(now: number): number {
    if (this.unlimited) return now;
    this.refill(now);
    return this.tokens > 0 ? now : now + Math.ceil((-this.tokens * 1000) / this.rate) + 1;
  }
}
