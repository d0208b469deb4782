/**
 * Seeded pseudo-random numbers for the simulator (and for the real runtime
 * when a seed is given).
 *
 * The generator is xoshiro128** (Blackman & Vigna): 128 bits of state, four
 * 32-bit words, a handful of 32-bit integer operations per output, period
 * 2^128 - 1. Its state is filled from a 64-bit *key* with splitmix64.
 *
 * A key is derived from the seed (a number, a bigint or a string) by a small
 * absorbing hash built on splitmix64's finaliser. `fork(label)` derives a
 * child key from the parent's key and the label, not from the parent's
 * current state: a host's stream therefore depends only on the root seed and
 * its label, never on how many numbers anybody else drew before it was
 * created. Forking the same label twice gives the same stream.
 *
 * Key derivation uses BigInt and is meant for set-up time (once per host);
 * drawing numbers uses only 32-bit integer arithmetic.
 */
import type { Random } from '../contract.js';

/** What a generator can be seeded with. Integers are equal seeds whether given as number or bigint. */
export type Seed = number | bigint | string;

const MASK64 = (1n << 64n) - 1n;
const GOLDEN64 = 0x9e3779b97f4a7c15n;
const TWO_POW_32 = 0x1_0000_0000;
const TWO_POW_53 = 9007199254740992;
const TWO_POW_26 = 67108864;

/** splitmix64's output function (a strong 64-bit bijective mixer). */
function mix64(z: bigint): bigint {
  z &= MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/** Absorbs one 64-bit word into a 64-bit hash state. */
function absorb(h: bigint, w: bigint): bigint {
  return mix64(((h + GOLDEN64) & MASK64) ^ (w & MASK64));
}

/** Absorbs a byte string: its bytes packed little-endian into 64-bit words, then its length. */
function absorbBytes(h: bigint, bytes: Uint8Array): bigint {
  let word = 0n;
  let shift = 0n;
  for (const b of bytes) {
    word |= BigInt(b) << shift;
    shift += 8n;
    if (shift === 64n) {
      h = absorb(h, word);
      word = 0n;
      shift = 0n;
    }
  }
  if (shift !== 0n) h = absorb(h, word);
  return absorb(h, BigInt(bytes.length));
}

const TAG_INTEGER = 0x1n;
const TAG_FLOAT = 0x2n;
const TAG_STRING = 0x3n;
const TAG_FORK = 0x4n;
const utf8 = new TextEncoder();

/** The 64-bit key of a seed. */
export function seedKey(seed: Seed): bigint {
  let h = 0x5eed_0000_0000_0001n;
  if (typeof seed === 'number') {
    if (Number.isSafeInteger(seed)) {
      seed = BigInt(seed);
    } else {
      if (Number.isNaN(seed)) throw new RangeError('seed must not be NaN');
      const view = new DataView(new ArrayBuffer(8));
      view.setFloat64(0, seed, true);
      return absorb(absorb(h, TAG_FLOAT), view.getBigUint64(0, true));
    }
  }
  if (typeof seed === 'bigint') {
    h = absorb(h, TAG_INTEGER);
    const negative = seed < 0n;
    let magnitude = negative ? -seed : seed;
    let words = 0n;
    do {
      h = absorb(h, magnitude & MASK64);
      magnitude >>= 64n;
      words += 1n;
    } while (magnitude !== 0n);
    return absorb(h, (words << 1n) | (negative ? 1n : 0n));
  }
  return absorbBytes(absorb(h, TAG_STRING), utf8.encode(seed));
}

/** The key of the child stream `label` of the stream with key `parent`. */
export function forkKey(parent: bigint, label: string | number): bigint {
  return absorbBytes(absorb(absorb(0x5eed_0000_0000_0002n, parent), TAG_FORK), utf8.encode(String(label)));
}

/**
 * `float`, `below` and `bytes` built on an abstract `u32`, shared by the seeded
 * generator and the crypto-backed one of the real runtime.
 */
export abstract class RandomBase implements Random {
  abstract u32(): number;

  float(): number {
    // 53 random bits: 27 from the first draw, 26 from the second.
    const a = this.u32() >>> 5;
    const b = this.u32() >>> 6;
    return (a * TWO_POW_26 + b) / TWO_POW_53;
  }

  below(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > TWO_POW_32) {
      throw new RangeError(`below(n) needs an integer 0 < n <= 2^32, got ${n}`);
    }
    if (n === TWO_POW_32) return this.u32();
    // Rejection sampling: accept only draws from the largest multiple of n
    // below 2^32, so every residue is equally likely.
    const threshold = (TWO_POW_32 - n) % n;
    for (;;) {
      const r = this.u32();
      if (r >= threshold) return r % n;
    }
  }

  bytes(n: number): Uint8Array {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`bytes(n) needs a non-negative integer, got ${n}`);
    const out = new Uint8Array(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      const r = this.u32();
      out[i] = r & 0xff;
      out[i + 1] = (r >>> 8) & 0xff;
      out[i + 2] = (r >>> 16) & 0xff;
      out[i + 3] = r >>> 24;
    }
    if (i < n) {
      let r = this.u32();
      for (; i < n; i++) {
        out[i] = r & 0xff;
        r >>>= 8;
      }
    }
    return out;
  }
}

/** A reproducible xoshiro128** stream. */
export class SeededRandom extends RandomBase {
  /** The 64-bit key this stream was started from (identifies it for `fork`). */
  readonly key: bigint;
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** Prefer `seededRandom(seed)`; this takes an already derived key. */
  constructor(key: bigint) {
    super();
    this.key = key & MASK64;
    // Fill the 128-bit state with two splitmix64 outputs.
    let state = this.key;
    state = (state + GOLDEN64) & MASK64;
    const a = mix64(state);
    state = (state + GOLDEN64) & MASK64;
    const b = mix64(state);
    this.s0 = Number(a & 0xffff_ffffn);
    this.s1 = Number(a >> 32n);
    this.s2 = Number(b & 0xffff_ffffn);
    this.s3 = Number(b >> 32n);
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the all-zero state is a fixed point
  }

  /** An independent, reproducible child stream, determined by this stream's key and `label` only. */
  fork(label: string | number): SeededRandom {
    return new SeededRandom(forkKey(this.key, label));
  }

  u32(): number {
    const s0 = this.s0;
    const s1 = this.s1;
    let s2 = this.s2;
    let s3 = this.s3;
    const m = Math.imul(s1, 5);
    const result = Math.imul((m << 7) | (m >>> 25), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    this.s1 = s1 ^ s2;
    this.s0 = s0 ^ s3;
    this.s2 = s2 ^ t;
    this.s3 = (s3 << 11) | (s3 >>> 21);
    return result;
  }
}

/** A seeded generator: the same seed always gives the same numbers. */
export function seededRandom(seed: Seed): SeededRandom {
  return new SeededRandom(seedKey(seed));
}
