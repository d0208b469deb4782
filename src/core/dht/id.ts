/**
 * 160-bit ids and compact addresses as *binary strings*: one UTF-16 code unit
 * per byte (latin1), 20 characters for an id, 6 or 18 for an address. V8
 * stores them as one-byte strings (about 40 bytes for an id), they are
 * immutable, compare with `===`, hash as Map keys, and concatenate straight
 * into compact node lists, which is why the routing table and the lookups
 * use them instead of Buffers (a Buffer costs a few hundred bytes of
 * bookkeeping; the simulator runs 100,000 tables in one process).
 *
 * Also here: XOR-distance helpers, CRC32-C and the BEP 42 id rules.
 */
import type { Endpoint, Random } from '../../runtime/contract.js';
import { formatIp, parseIp } from '../../codec/ip.js';

/** A node id or infohash: 20 latin1 characters. */
export type Id = string;
/** A compact address: 6 (IPv4) or 18 (IPv6) latin1 characters. */
export type Addr = string;

export const ID_BYTES = 20;

export function idOf(bytes: Uint8Array): Id {
  return (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)).toString('latin1');
}

export function idBytes(id: Id): Buffer {
  return Buffer.from(id, 'latin1');
}

/**
 * A copy of `bytes` in an ArrayBuffer of its own. Buffer.from and
 * Buffer.allocUnsafe hand out slices of Node's shared 8 KiB pool for small
 * sizes, and one small long-lived slice keeps its whole 8 KiB block alive
 * (each node's secret on its own block, in a process of many nodes, was
 * 8 KiB per node). What the core keeps for long (secrets, the version,
 * stored items, items handed to the caller) is copied with this instead.
 */
export function ownedCopy(bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafeSlow(bytes.length);
  out.set(bytes);
  return out;
}

export function idHex(id: Id): string {
  return idBytes(id).toString('hex');
}

export function randomId(random: Random): Id {
  return idOf(random.bytes(ID_BYTES));
}

/** Number of leading bits `a` and `b` share (160 when equal). */
export function commonPrefixBits(a: Id, b: Id): number {
  for (let i = 0; i < ID_BYTES; i++) {
    const x = a.charCodeAt(i) ^ b.charCodeAt(i);
    if (x !== 0) return i * 8 + (Math.clz32(x) - 24);
  }
  return 160;
}

/** Negative when `a` is closer to `target` than `b` in XOR distance, 0 when equally close (a === b). */
export function compareDistance(target: Id, a: Id, b: Id): number {
  for (let i = 0; i < ID_BYTES; i++) {
    const t = target.charCodeAt(i);
    const da = t ^ a.charCodeAt(i);
    const db = t ^ b.charCodeAt(i);
    if (da !== db) return da - db;
  }
  return 0;
}

/** An id that shares exactly `bits` leading bits with `base` (then differs at bit `bits`), the rest random. */
export function randomIdWithPrefix(base: Id, bits: number, random: Random): Id {
  const out = Buffer.from(random.bytes(ID_BYTES));
  const b = idBytes(base);
  const whole = Math.min(bits >> 3, ID_BYTES);
  b.copy(out, 0, 0, whole);
  if (bits < 160) {
    const byte = bits >> 3;
    const bit = 7 - (bits & 7);
    const keepMask = (0xff << (bit + 1)) & 0xff; // bits above `bit` come from base
    let v = (b[byte]! & keepMask) | (out[byte]! & ~keepMask & 0xff);
    v = (v & ~(1 << bit)) | (~b[byte]! & (1 << bit)); // flip bit `bits`
    out[byte] = v & 0xff;
  }
  return out.toString('latin1');
}

// ---------------------------------------------------------------- addresses

export function addrOf(e: Endpoint): Addr | undefined {
  const v4 = ipv4Word(e.host);
  if (v4 >= 0) {
    if (!Number.isInteger(e.port) || e.port < 0 || e.port > 65535) return undefined;
    return String.fromCharCode(v4 >>> 24, (v4 >>> 16) & 0xff, (v4 >>> 8) & 0xff, v4 & 0xff, e.port >> 8, e.port & 0xff);
  }
  const ip = parseIp(e.host);
  if (ip === undefined || !Number.isInteger(e.port) || e.port < 0 || e.port > 65535) return undefined;
  if (ip.length === 4) return String.fromCharCode(ip[0]!, ip[1]!, ip[2]!, ip[3]!, e.port >> 8, e.port & 0xff);
  return Buffer.from(ip).toString('latin1') + String.fromCharCode(e.port >> 8, e.port & 0xff);
}

/**
 * A dotted-quad IPv4 address as a 32-bit number, or -1 if the text is not
 * one (the rules of parseIpv4, without allocating: every received datagram
 * goes through `addrOf`).
 */
function ipv4Word(text: string): number {
  const n = text.length;
  if (n < 7 || n > 15) return -1;
  let word = 0;
  let parts = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? text.charCodeAt(i) : 0x2e;
    if (c === 0x2e) {
      if (digits === 0 || parts > 3 || value > 255) return -1;
      word = word * 256 + value;
      parts++;
      value = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if ((digits > 0 && value === 0) || ++digits > 3) return -1;
      value = value * 10 + (c - 0x30);
    } else return -1;
  }
  return parts === 4 ? word : -1;
}

export function endpointOf(addr: Addr): Endpoint {
  const n = addr.length - 2;
  if (n === 4) {
    return { host: `${addr.charCodeAt(0)}.${addr.charCodeAt(1)}.${addr.charCodeAt(2)}.${addr.charCodeAt(3)}`, port: (addr.charCodeAt(4) << 8) | addr.charCodeAt(5) };
  }
  const ip = new Uint8Array(n);
  for (let i = 0; i < n; i++) ip[i] = addr.charCodeAt(i);
  return { host: formatIp(ip), port: (addr.charCodeAt(n) << 8) | addr.charCodeAt(n + 1) };
}

export function addrFamily(addr: Addr): 4 | 6 {
  return addr.length === 6 ? 4 : 6;
}

/** The address without the port (4 or 16 characters). */
export function addrIp(addr: Addr): string {
  return addr.slice(0, addr.length - 2);
}

/** The BEP 42 / Sybil-limit prefix: the /24 of an IPv4 address, the /48 of an IPv6 one. */
export function addrPrefix(addr: Addr): string {
  return addr.length === 6 ? addr.slice(0, 3) : addr.slice(0, 6);
}

/** A usable unicast peer address: not unspecified, multicast or broadcast, and a non-zero port. */
export function isUsableAddr(addr: Addr): boolean {
  const port = (addr.charCodeAt(addr.length - 2) << 8) | addr.charCodeAt(addr.length - 1);
  if (port === 0) return false;
  const a = addr.charCodeAt(0);
  if (addr.length === 6) {
    if (a === 0 || a >= 224) return false; // 0/8, multicast, reserved and broadcast
    return true;
  }
  if (a === 0xff) return false; // multicast
  for (let i = 0; i < 16; i++) if (addr.charCodeAt(i) !== 0) return true;
  return false; // ::
}

/** Local-network addresses, exempt from BEP 42 id checks and the per-prefix limit (loopback, private, link-local). */
export function isLocalIp(ip: Uint8Array): boolean {
  if (ip.length === 4) {
    const [a, b] = [ip[0]!, ip[1]!];
    return a === 10 || a === 127 || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168) || (a === 169 && b === 254);
  }
  if (ip.length !== 16) return false;
  let zeros = true;
  for (let i = 0; i < 15; i++) if (ip[i] !== 0) zeros = false;
  if (zeros && ip[15] === 1) return true; // ::1
  if ((ip[0]! & 0xfe) === 0xfc) return true; // fc00::/7 unique local
  if (ip[0] === 0xfe && (ip[1]! & 0xc0) === 0x80) return true; // fe80::/10
  return false;
}

export function isLocalAddr(addr: Addr): boolean {
  const n = addr.length - 2;
  if (n === 4) {
    // isLocalIp's IPv4 rule, read straight from the string (this runs for every query a node answers).
    const a = addr.charCodeAt(0);
    const b = addr.charCodeAt(1);
    return a === 10 || a === 127 || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168) || (a === 169 && b === 254);
  }
  const ip = new Uint8Array(n);
  for (let i = 0; i < n; i++) ip[i] = addr.charCodeAt(i);
  return isLocalIp(ip);
}

// ---------------------------------------------------------------- CRC32-C and BEP 42

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC32C_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const V4_MASK = [0x03, 0x0f, 0x3f, 0xff];
const V6_MASK = [0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff];

/** BEP 42: the CRC32-C of the masked address with `r` (0..7) folded in. */
function bep42Crc(ip: Uint8Array, r: number): number {
  const mask = ip.length === 4 ? V4_MASK : V6_MASK;
  const buf = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) buf[i] = ip[i]! & mask[i]!;
  buf[0] = buf[0]! | ((r & 7) << 5);
  return crc32c(buf);
}

/** A BEP 42 node id for an external IP address (bytes), with the random parts from `random`. */
export function bep42Id(ip: Uint8Array, random: Random, r = random.below(8)): Id {
  const crc = bep42Crc(ip, r);
  const id = Buffer.from(random.bytes(ID_BYTES));
  id[0] = crc >>> 24;
  id[1] = (crc >>> 16) & 0xff;
  id[2] = ((crc >>> 8) & 0xf8) | (id[2]! & 7);
  id[19] = r;
  return id.toString('latin1');
}

/** Whether `id` is a valid BEP 42 id for the IP address (bytes). */
export function isBep42Id(id: Id, ip: Uint8Array): boolean {
  if (ip.length !== 4 && ip.length !== 16) return false;
  const crc = bep42Crc(ip, id.charCodeAt(19) & 7);
  return id.charCodeAt(0) === crc >>> 24 && id.charCodeAt(1) === ((crc >>> 16) & 0xff) && (id.charCodeAt(2) & 0xf8) === ((crc >>> 8) & 0xf8);
}

/** BEP 42 check of a node: local addresses are exempt (always true). */
export function idMatchesAddr(id: Id, addr: Addr): boolean {
  if (isLocalAddr(addr)) return true; // read from the string: no allocation for the common local case
  const n = addr.length - 2;
  const ip = new Uint8Array(n);
  for (let i = 0; i < n; i++) ip[i] = addr.charCodeAt(i);
  return isLocalIp(ip) || isBep42Id(id, ip);
}
