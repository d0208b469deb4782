/**
 * Bencode (BEP 3), strict and bounded.
 *
 * Decoded values:
 *   integer     -> number (or bigint when outside Number's safe range)
 *   byte string -> Buffer (a zero-copy view of the input)
 *   list        -> BencodeValue[]
 *   dictionary  -> Map whose keys are "binary" strings: one UTF-16 code unit
 *                  per byte (latin1), so any key round-trips exactly and the
 *                  JavaScript string order is the byte order BEP 3 asks for.
 *
 * The decoder rejects non-canonical input by default (leading zeros, -0,
 * unsorted or duplicate keys, trailing bytes) and enforces limits on input
 * size, nesting depth and string length before it looks at any length the
 * input declares. Every failure is a BencodeError carrying the byte offset.
 */
import { CodecError } from './errors.js';

export type BencodeValue = number | bigint | Buffer | BencodeValue[] | BencodeDict;
export type BencodeDict = Map<string, BencodeValue>;

/** What `encode` accepts: decoded values plus JS conveniences. */
export type BencodeInput =
  | number
  | bigint
  | string
  | Uint8Array
  | readonly BencodeInput[]
  | ReadonlyMap<string, BencodeInput>
  | { readonly [key: string]: BencodeInput | undefined };

export type BencodeErrorCode =
  | 'INPUT_TOO_LARGE'
  | 'UNEXPECTED_END'
  | 'UNEXPECTED_BYTE'
  | 'INVALID_INTEGER'
  | 'INTEGER_TOO_LONG'
  | 'LEADING_ZERO'
  | 'NEGATIVE_ZERO'
  | 'INVALID_LENGTH'
  | 'STRING_TOO_LONG'
  | 'DEPTH_EXCEEDED'
  | 'NON_STRING_KEY'
  | 'UNSORTED_KEYS'
  | 'DUPLICATE_KEY'
  | 'TRAILING_DATA'
  | 'UNENCODABLE';

export class BencodeError extends CodecError {
  declare readonly code: BencodeErrorCode;
  constructor(code: BencodeErrorCode, message: string, offset?: number) {
    super('bencode', code, message, offset);
    this.name = 'BencodeError';
  }
}

export interface DecodeLimits {
  /** Largest input accepted, in bytes. Default 16 MiB. */
  maxInputBytes?: number;
  /** Deepest nesting of lists and dictionaries. Default 64. */
  maxDepth?: number;
  /** Longest byte string. Default: bounded by the input itself. */
  maxStringBytes?: number;
  /** Accept dictionaries whose keys are not in sorted order (duplicates are always refused). Default false. */
  allowUnsortedKeys?: boolean;
}

const DEFAULT_MAX_INPUT = 16 * 1024 * 1024;
const DEFAULT_MAX_DEPTH = 64;
const MAX_INT_DIGITS = 64; // longer integers are refused before parsing

const CH_i = 0x69;
const CH_l = 0x6c;
const CH_d = 0x64;
const CH_e = 0x65;
const CH_COLON = 0x3a;
const CH_MINUS = 0x2d;
const CH_0 = 0x30;
const CH_9 = 0x39;

interface Span {
  start: number;
  end: number;
}

class Decoder {
  pos = 0;
  readonly maxDepth: number;
  readonly maxString: number;
  readonly allowUnsorted: boolean;
  readonly spans: WeakMap<object, Span> | undefined;

  constructor(readonly buf: Buffer, limits: DecodeLimits, recordSpans: boolean) {
    this.maxDepth = limits.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.maxString = limits.maxStringBytes ?? Number.MAX_SAFE_INTEGER;
    this.allowUnsorted = limits.allowUnsortedKeys ?? false;
    this.spans = recordSpans ? new WeakMap() : undefined;
  }

  fail(code: BencodeErrorCode, message: string, at = this.pos): never {
    throw new BencodeError(code, message, at);
  }

  value(depth: number): BencodeValue {
    const start = this.pos;
    if (start >= this.buf.length) this.fail('UNEXPECTED_END', 'input ended where a value was expected');
    const c = this.buf[start]!;
    let v: BencodeValue;
    if (c === CH_i) {
      this.pos++;
      return this.integer(CH_e);
    } else if (c >= CH_0 && c <= CH_9) {
      v = this.string();
    } else if (c === CH_l) {
      if (depth >= this.maxDepth) this.fail('DEPTH_EXCEEDED', `nesting deeper than ${this.maxDepth}`);
      this.pos++;
      const list: BencodeValue[] = [];
      for (;;) {
        if (this.pos >= this.buf.length) this.fail('UNEXPECTED_END', 'list not terminated');
        if (this.buf[this.pos] === CH_e) break;
        list.push(this.value(depth + 1));
      }
      this.pos++;
      v = list;
    } else if (c === CH_d) {
      if (depth >= this.maxDepth) this.fail('DEPTH_EXCEEDED', `nesting deeper than ${this.maxDepth}`);
      this.pos++;
      const dict: BencodeDict = new Map();
      let prev: string | undefined;
      for (;;) {
        if (this.pos >= this.buf.length) this.fail('UNEXPECTED_END', 'dictionary not terminated');
        const kc = this.buf[this.pos]!;
        if (kc === CH_e) break;
        const keyAt = this.pos;
        if (kc < CH_0 || kc > CH_9) this.fail('NON_STRING_KEY', 'dictionary key is not a byte string');
        const key = this.string().toString('latin1');
        if (prev !== undefined && key <= prev) {
          if (key === prev || dict.has(key)) this.fail('DUPLICATE_KEY', `duplicate dictionary key ${JSON.stringify(key)}`, keyAt);
          if (!this.allowUnsorted) this.fail('UNSORTED_KEYS', `dictionary key ${JSON.stringify(key)} is out of order`, keyAt);
        }
        if (this.allowUnsorted && dict.has(key)) this.fail('DUPLICATE_KEY', `duplicate dictionary key ${JSON.stringify(key)}`, keyAt);
        if (this.pos >= this.buf.length) this.fail('UNEXPECTED_END', 'dictionary key without a value');
        dict.set(key, this.value(depth + 1));
        prev = key;
      }
      this.pos++;
      v = dict;
    } else {
      this.fail('UNEXPECTED_BYTE', `unexpected byte 0x${c.toString(16).padStart(2, '0')}`);
    }
    this.spans?.set(v, { start, end: this.pos });
    return v;
  }

  /** Parses digits up to `terminator` (already past the 'i'); returns the integer. */
  integer(terminator: number): number | bigint {
    const buf = this.buf;
    const start = this.pos;
    let p = start;
    let negative = false;
    if (p < buf.length && buf[p] === CH_MINUS) {
      negative = true;
      p++;
    }
    const digitsStart = p;
    while (p < buf.length && buf[p]! >= CH_0 && buf[p]! <= CH_9) {
      p++;
      if (p - digitsStart > MAX_INT_DIGITS) this.fail('INTEGER_TOO_LONG', `integer longer than ${MAX_INT_DIGITS} digits`, start);
    }
    if (p >= buf.length) this.fail('UNEXPECTED_END', 'integer not terminated', p);
    if (buf[p] !== terminator) this.fail('INVALID_INTEGER', `unexpected byte 0x${buf[p]!.toString(16).padStart(2, '0')} in integer`, p);
    const ndigits = p - digitsStart;
    if (ndigits === 0) this.fail('INVALID_INTEGER', 'integer has no digits', start);
    if (buf[digitsStart] === CH_0 && ndigits > 1) this.fail('LEADING_ZERO', 'integer has a leading zero', digitsStart);
    if (negative && ndigits === 1 && buf[digitsStart] === CH_0) this.fail('NEGATIVE_ZERO', 'integer is -0', start);
    this.pos = p + 1;
    if (ndigits <= 15) {
      let n = 0;
      for (let i = digitsStart; i < p; i++) n = n * 10 + (buf[i]! - CH_0);
      return negative ? -n : n;
    }
    const big = BigInt(buf.toString('latin1', start, p));
    if (big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(big);
    return big;
  }

  string(): Buffer {
    const start = this.pos;
    const buf = this.buf;
    let p = start;
    let len = 0;
    while (p < buf.length && buf[p]! >= CH_0 && buf[p]! <= CH_9) {
      len = len * 10 + (buf[p]! - CH_0);
      p++;
      if (p - start > 16) this.fail('INVALID_LENGTH', 'string length has too many digits', start);
    }
    if (p >= buf.length) this.fail('UNEXPECTED_END', 'string length not terminated', p);
    if (buf[p] !== CH_COLON) this.fail('INVALID_LENGTH', 'string length not followed by a colon', p);
    if (buf[start] === CH_0 && p - start > 1) this.fail('LEADING_ZERO', 'string length has a leading zero', start);
    if (len > this.maxString) this.fail('STRING_TOO_LONG', `string of ${len} bytes exceeds the limit of ${this.maxString}`, start);
    const dataStart = p + 1;
    if (len > buf.length - dataStart) this.fail('UNEXPECTED_END', `string of ${len} bytes runs past the end of the input`, start);
    this.pos = dataStart + len;
    return buf.subarray(dataStart, dataStart + len);
  }
}

function toBuffer(input: Uint8Array): Buffer {
  return Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
}

function checkSize(buf: Buffer, limits: DecodeLimits): void {
  const max = limits.maxInputBytes ?? DEFAULT_MAX_INPUT;
  if (buf.length > max) throw new BencodeError('INPUT_TOO_LARGE', `input of ${buf.length} bytes exceeds the limit of ${max}`, 0);
}

/** Decodes exactly one value that must fill the whole input. */
export function decode(input: Uint8Array, limits: DecodeLimits = {}): BencodeValue {
  const buf = toBuffer(input);
  checkSize(buf, limits);
  const d = new Decoder(buf, limits, false);
  const v = d.value(0);
  if (d.pos !== buf.length) d.fail('TRAILING_DATA', `${buf.length - d.pos} bytes after the value`);
  return v;
}

/**
 * Decodes one value at the start of the input and says where it ended: for
 * messages that carry raw bytes after a bencoded header (BEP 9 metadata).
 */
export function decodePrefix(input: Uint8Array, limits: DecodeLimits = {}): { value: BencodeValue; end: number } {
  const buf = toBuffer(input);
  checkSize(buf, limits);
  const d = new Decoder(buf, limits, false);
  const value = d.value(0);
  return { value, end: d.pos };
}

/**
 * Decodes like `decode`, and also remembers the exact byte range of every
 * string, list and dictionary, so a caller can hash the raw bytes of a
 * sub-value (the metainfo `info` dictionary) as they were received.
 */
export function decodeWithSpans(
  input: Uint8Array,
  limits: DecodeLimits = {},
): { value: BencodeValue; spanOf(v: object): { start: number; end: number } | undefined } {
  const buf = toBuffer(input);
  checkSize(buf, limits);
  const d = new Decoder(buf, limits, true);
  const value = d.value(0);
  if (d.pos !== buf.length) d.fail('TRAILING_DATA', `${buf.length - d.pos} bytes after the value`);
  const spans = d.spans!;
  return { value, spanOf: (v) => spans.get(v) };
}

// ---------------------------------------------------------------- encoding

const MAX_ENCODE_DEPTH = 256;

class Writer {
  buf: Buffer = Buffer.allocUnsafe(256);
  len = 0;

  reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  ascii(s: string): void {
    this.reserve(s.length);
    this.len += this.buf.write(s, this.len, 'latin1');
  }

  bytes(b: Uint8Array): void {
    this.ascii(`${b.length}:`);
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
}

function encodeKey(w: Writer, key: string): void {
  for (let i = 0; i < key.length; i++) {
    if (key.charCodeAt(i) > 0xff) {
      throw new BencodeError('UNENCODABLE', `dictionary key ${JSON.stringify(key)} is not a binary (latin1) string`);
    }
  }
  w.ascii(`${key.length}:`);
  w.ascii(key);
}

function encodeInto(w: Writer, v: BencodeInput, depth: number): void {
  if (depth > MAX_ENCODE_DEPTH) throw new BencodeError('UNENCODABLE', `value nested deeper than ${MAX_ENCODE_DEPTH} (a cycle?)`);
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new BencodeError('UNENCODABLE', `number ${v} is not a safe integer`);
    w.ascii(`i${v === 0 ? 0 : v}e`);
  } else if (typeof v === 'bigint') {
    w.ascii(`i${v}e`);
  } else if (typeof v === 'string') {
    w.bytes(Buffer.from(v, 'utf8'));
  } else if (v instanceof Uint8Array) {
    w.bytes(v);
  } else if (Array.isArray(v)) {
    w.ascii('l');
    for (const item of v as readonly BencodeInput[]) encodeInto(w, item, depth + 1);
    w.ascii('e');
  } else if (v instanceof Map) {
    const keys = [...(v as ReadonlyMap<string, BencodeInput>).keys()].sort(compareKeys);
    w.ascii('d');
    for (const k of keys) {
      encodeKey(w, k);
      encodeInto(w, (v as ReadonlyMap<string, BencodeInput>).get(k)!, depth + 1);
    }
    w.ascii('e');
  } else if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    const obj = v as { readonly [key: string]: BencodeInput | undefined };
    const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort(compareKeys);
    w.ascii('d');
    for (const k of keys) {
      encodeKey(w, k);
      encodeInto(w, obj[k]!, depth + 1);
    }
    w.ascii('e');
  } else {
    throw new BencodeError('UNENCODABLE', `cannot bencode a value of type ${v === null ? 'null' : typeof v}`);
  }
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Canonical encoding: dictionary keys sorted by their bytes. Plain-object
 * keys and Map keys are binary (latin1) strings; string *values* are UTF-8.
 * Properties whose value is undefined are left out.
 */
export function encode(v: BencodeInput): Buffer {
  const w = new Writer();
  encodeInto(w, v, 0);
  return w.buf.subarray(0, w.len);
}

// ---------------------------------------------------------------- typed access

/** Type guards, for consumers that walk decoded values. */
export const isDict = (v: BencodeValue | undefined): v is BencodeDict => v instanceof Map;
export const isList = (v: BencodeValue | undefined): v is BencodeValue[] => Array.isArray(v);
export const isBytes = (v: BencodeValue | undefined): v is Buffer => Buffer.isBuffer(v);
export const isInteger = (v: BencodeValue | undefined): v is number | bigint => typeof v === 'number' || typeof v === 'bigint';
