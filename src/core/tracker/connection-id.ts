/**
 * BEP 15 connection ids that cannot be forged and need no state: the id is
 * the first 64 bits of HMAC-SHA-256(secret, window || address), where the
 * window is the time divided into fixed spans (default two minutes) and the
 * address is the requester's 16-byte IP (IPv4 as IPv4-mapped IPv6).
 *
 * An id is accepted in its own window and the next one, so it stays valid
 * for at least one window after it was issued (BEP 15: "until two minutes
 * after it has been sent") and at most two. Only someone who receives the
 * tracker's reply at that address can know it; a spoofed source address never
 * sees it, so it cannot be used to make the tracker send announce replies to
 * a victim.
 *
 * The port is left out on purpose: a client behind a NAT whose mapping moves
 * between connect and announce still gets through, and an attacker gains
 * nothing from it (the address is what matters for reflection).
 *
 * HMACs are cached per address for the current and previous windows (bounded),
 * since a busy client asks many times within one window.
 */
import { createHmac } from 'node:crypto';

export interface ConnectionIdOptions {
  /** 32 secret bytes, from the injected Random. */
  readonly secret: Uint8Array;
  /** Window length in ms. Default 120 000. */
  readonly windowMs?: number;
  /** Cached ids per window. Default 65 536. */
  readonly maxCached?: number;
}

export class ConnectionIds {
  private readonly secret: Buffer;
  readonly windowMs: number;
  private readonly maxCached: number;
  private window = Number.NaN;
  /** Cached ids as [high 32 bits, low 32 bits]. */
  private current = new Map<string, Uint32Array>();
  private previous = new Map<string, Uint32Array>();
  private readonly windowBytes = Buffer.alloc(8);

  constructor(options: ConnectionIdOptions) {
    if (options.secret.length < 16) throw new RangeError('connection id secret must have at least 16 bytes');
    this.secret = Buffer.from(options.secret);
    this.windowMs = options.windowMs ?? 120_000;
    if (!(this.windowMs > 0)) throw new RangeError('windowMs must be > 0');
    this.maxCached = options.maxCached ?? 65_536;
  }

  private compute(window: number, ip16: Uint8Array): Uint32Array {
    this.windowBytes.writeDoubleBE(window, 0);
    const mac = createHmac('sha256', this.secret).update(this.windowBytes).update(ip16).digest();
    return Uint32Array.of(mac.readUInt32BE(0), mac.readUInt32BE(4));
  }

  private advance(now: number): number {
    const w = Math.floor(now / this.windowMs);
    if (w !== this.window) {
      this.previous = w === this.window + 1 ? this.current : new Map();
      this.current = new Map();
      this.window = w;
    }
    return w;
  }

  private idFor(window: number, cache: Map<string, Uint32Array>, cacheKey: string, ip16: Uint8Array): Uint32Array {
    let id = cache.get(cacheKey);
    if (id === undefined) {
      id = this.compute(window, ip16);
      if (cache.size >= this.maxCached) cache.clear();
      cache.set(cacheKey, id);
    }
    return id;
  }

  /** The id for this address now, as [high, low] 32-bit words. `cacheKey` must identify the address (its text form). */
  issueWords(now: number, ip16: Uint8Array, cacheKey: string): Uint32Array {
    const w = this.advance(now);
    return this.idFor(w, this.current, cacheKey, ip16);
  }

  issue(now: number, ip16: Uint8Array, cacheKey: string): bigint {
    const [hi, lo] = this.issueWords(now, ip16, cacheKey);
    return (BigInt(hi!) << 32n) | BigInt(lo!);
  }

  /** Whether the id with these 32-bit halves was issued to this address in the current or the previous window. */
  verifyWords(now: number, ip16: Uint8Array, cacheKey: string, hi: number, lo: number): boolean {
    const w = this.advance(now);
    const cur = this.idFor(w, this.current, cacheKey, ip16);
    if (cur[0] === hi && cur[1] === lo) return true;
    const prev = this.idFor(w - 1, this.previous, cacheKey, ip16);
    return prev[0] === hi && prev[1] === lo;
  }

  verify(now: number, ip16: Uint8Array, cacheKey: string, id: bigint): boolean {
    return this.verifyWords(now, ip16, cacheKey, Number(id >> 32n), Number(id & 0xffffffffn));
  }
}
