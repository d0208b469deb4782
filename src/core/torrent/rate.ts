/**
 * Transfer rate over a sliding window, with time passed in. Bytes are
 * counted into fixed slots (250 ms); the rate is the sum over the last
 * `windowMs` divided by the window (shorter at the start).
 */
export class RateMeter {
  private readonly slots: Float64Array;
  private readonly slotMs: number;
  private head = -1; // slot number of the newest slot
  private sum = 0;
  private started: number | undefined;
  total = 0;

  constructor(windowMs = 5000, slotMs = 250) {
    this.slotMs = slotMs;
    this.slots = new Float64Array(Math.max(1, Math.round(windowMs / slotMs)));
  }

  add(now: number, bytes: number): void {
    this.advance(now);
    this.slots[this.head % this.slots.length]! += bytes;
    this.sum += bytes;
    this.total += bytes;
  }

  /** Bytes per second. */
  rate(now: number): number {
    this.advance(now);
    if (this.started === undefined) return 0;
    const spanMs = Math.min(this.slots.length * this.slotMs, Math.max(this.slotMs, now - this.started));
    return (this.sum * 1000) / spanMs;
  }

  private advance(now: number): void {
    const slot = Math.floor(now / this.slotMs);
    this.started ??= now;
    if (this.head < 0) {
      this.head = slot;
      return;
    }
    if (slot <= this.head) return;
    const n = this.slots.length;
    if (slot - this.head >= n) {
      this.slots.fill(0);
      this.sum = 0;
    } else {
      for (let s = this.head + 1; s <= slot; s++) {
        const i = s % n;
        this.sum -= this.slots[i]!;
        this.slots[i] = 0;
      }
    }
    this.head = slot;
  }
}
