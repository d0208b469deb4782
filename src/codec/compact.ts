/**
 * Compact peer and node lists: BEP 23 (IPv4 peers, 6 bytes each), BEP 7
 * (IPv6 peers, 18 bytes each) and BEP 5 compact node info (20-byte id plus a
 * compact address; 26 or 38 bytes). Shared by trackers, PEX and the DHT.
 */
import type { Endpoint } from '../runtime/contract.js';
import { CodecError } from './errors.js';
import { formatIp, parseIp } from './ip.js';

export class CompactError extends CodecError {
  constructor(code: 'BAD_LENGTH' | 'BAD_ADDRESS' | 'BAD_PORT' | 'BAD_ID', message: string, offset?: number) {
    super('compact', code, message, offset);
    this.name = 'CompactError';
  }
}

export type AddressFamily = 4 | 6;
const addrLen = (family: AddressFamily): number => (family === 4 ? 4 : 16);

/** Decodes a list of compact peers; a length that is not a multiple of the entry size is an error. */
export function decodeCompactPeers(bytes: Uint8Array, family: AddressFamily): Endpoint[] {
  const a = addrLen(family);
  const size = a + 2;
  if (bytes.length % size !== 0) throw new CompactError('BAD_LENGTH', `compact IPv${family} peer list of ${bytes.length} bytes is not a multiple of ${size}`);
  const out: Endpoint[] = [];
  for (let p = 0; p < bytes.length; p += size) {
    out.push({ host: formatIp(bytes.subarray(p, p + a)), port: (bytes[p + a]! << 8) | bytes[p + a + 1]! });
  }
  return out;
}

function writeEndpoint(out: Uint8Array, at: number, e: Endpoint, family: AddressFamily): void {
  const ip = parseIp(e.host);
  if (!ip || ip.length !== addrLen(family)) throw new CompactError('BAD_ADDRESS', `${e.host} is not an IPv${family} address`);
  if (!Number.isInteger(e.port) || e.port < 0 || e.port > 65535) throw new CompactError('BAD_PORT', `port ${e.port} is out of range`);
  out.set(ip, at);
  out[at + ip.length] = e.port >> 8;
  out[at + ip.length + 1] = e.port & 0xff;
}

/** Encodes peers of one family; peers of the other family are an error (filter first with `familyOf`). */
export function encodeCompactPeers(peers: readonly Endpoint[], family: AddressFamily): Buffer {
  const size = addrLen(family) + 2;
  const out = Buffer.alloc(peers.length * size);
  peers.forEach((e, i) => writeEndpoint(out, i * size, e, family));
  return out;
}

/** 4 or 6 for a literal address, undefined for anything else. */
export function familyOf(host: string): AddressFamily | undefined {
  const ip = parseIp(host);
  return ip === undefined ? undefined : ip.length === 4 ? 4 : 6;
}

export interface CompactNode {
  readonly id: Buffer;
  readonly address: Endpoint;
}

/** BEP 5 compact node info: 20-byte node id followed by a compact address. */
export function decodeCompactNodes(bytes: Uint8Array, family: AddressFamily): CompactNode[] {
  const a = addrLen(family);
  const size = 20 + a + 2;
  if (bytes.length % size !== 0) throw new CompactError('BAD_LENGTH', `compact IPv${family} node list of ${bytes.length} bytes is not a multiple of ${size}`);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: CompactNode[] = [];
  for (let p = 0; p < buf.length; p += size) {
    out.push({
      id: buf.subarray(p, p + 20),
      address: { host: formatIp(buf.subarray(p + 20, p + 20 + a)), port: buf.readUInt16BE(p + 20 + a) },
    });
  }
  return out;
}

export function encodeCompactNodes(nodes: readonly CompactNode[], family: AddressFamily): Buffer {
  const size = 20 + addrLen(family) + 2;
  const out = Buffer.alloc(nodes.length * size);
  nodes.forEach((n, i) => {
    if (n.id.length !== 20) throw new CompactError('BAD_ID', `node id of ${n.id.length} bytes, not 20`);
    out.set(n.id, i * size);
    writeEndpoint(out, i * size + 20, n.address, family);
  });
  return out;
}
