/**
 * UDP tracker protocol (BEP 15), every packet in both directions, with the
 * BEP 41 option list after an announce request read (URLData) and otherwise
 * tolerated.
 *
 * All integers are big-endian. Connection ids are opaque 64-bit values and
 * are carried as bigint; transaction ids, keys and counts are unsigned 32-bit
 * numbers; the 64-bit byte counts of an announce are safe integers (a value
 * beyond 2^53 - 1 is refused with OUT_OF_RANGE rather than rounded).
 *
 * Lengths are checked strictly: each packet must reach its minimum size, and
 * the repeated parts (peers, info hashes, scrape entries) must come in whole
 * entries. Bytes beyond a fixed-size packet are ignored, as BEP 15 asks
 * ("do not expect packets to be exactly of a certain size").
 *
 * The peer list of an announce response has 6-byte entries when the
 * datagram travelled over IPv4 and 18-byte entries over IPv6, so the
 * response codec takes the address family of the datagram (`udpFamily`).
 */
import type { Endpoint } from '../runtime/contract.js';
import { decodeCompactPeers, encodeCompactPeers } from './compact.js';
import { formatIp, parseIp, parseIpv4 } from './ip.js';
import { TrackerError, type AnnounceEvent, type TrackerErrorCode } from './tracker-http.js';

export { TrackerError };
export type { AnnounceEvent };

/** The magic constant of a connect request. */
export const PROTOCOL_ID = 0x41727101980n;
export const ACTION_CONNECT = 0;
export const ACTION_ANNOUNCE = 1;
export const ACTION_SCRAPE = 2;
export const ACTION_ERROR = 3;
/** Info hashes in one scrape request (BEP 15: "up to about 74"; 16 + 74·20 bytes fits a 1500-byte MTU). */
export const MAX_SCRAPE_HASHES = 74;
export const CONNECT_REQUEST_SIZE = 16;
export const CONNECT_RESPONSE_SIZE = 16;
export const ANNOUNCE_REQUEST_SIZE = 98;
export const ANNOUNCE_RESPONSE_HEADER = 20;
export const SCRAPE_REQUEST_HEADER = 16;
export const SCRAPE_RESPONSE_HEADER = 8;
const MAX_DATAGRAM = 65535;
const MAX_U32 = 0xffffffff;

function fail(code: TrackerErrorCode, reason: string, offset?: number): never {
  throw new TrackerError(code, reason, offset);
}

export type AddressFamily = 4 | 6;

/**
 * The address family BEP 15 means for a datagram from (or to) `host`: an
 * IPv4-mapped IPv6 address (what a dual-stack socket reports for an IPv4
 * sender) counts as IPv4. Undefined for anything but an address literal.
 */
export function udpFamily(host: string): AddressFamily | undefined {
  const ip = parseIp(host);
  if (!ip) return undefined;
  if (ip.length === 4) return 4;
  for (let i = 0; i < 10; i++) if (ip[i] !== 0) return 6;
  return ip[10] === 0xff && ip[11] === 0xff ? 4 : 6;
}

// ---------------------------------------------------------------- packet types

export interface UdpConnectRequest {
  readonly action: 'connect';
  readonly transactionId: number;
}

export interface UdpAnnounceRequest {
  readonly action: 'announce';
  readonly connectionId: bigint;
  readonly transactionId: number;
  readonly infoHash: Uint8Array;
  readonly peerId: Uint8Array;
  readonly downloaded: number;
  readonly left: number;
  readonly uploaded: number;
  /** Undefined for a regular announce (event 0). */
  readonly event?: AnnounceEvent | undefined;
  /** The IPv4 `IP address` field; undefined is 0 (the source address). */
  readonly ip?: string | undefined;
  /** Unsigned 32-bit. Default 0. */
  readonly key?: number | undefined;
  /** Signed 32-bit; -1 (the default) asks for the tracker's default. */
  readonly numWant?: number | undefined;
  readonly port: number;
  /** BEP 41 URLData: the path and query of the tracker URL. */
  readonly urlData?: Uint8Array | undefined;
}

export interface UdpScrapeRequest {
  readonly action: 'scrape';
  readonly connectionId: bigint;
  readonly transactionId: number;
  readonly infoHashes: readonly Uint8Array[];
}

export type UdpRequest = UdpConnectRequest | UdpAnnounceRequest | UdpScrapeRequest;

export interface UdpConnectResponse {
  readonly action: 'connect';
  readonly transactionId: number;
  readonly connectionId: bigint;
}

export interface UdpAnnounceResponse {
  readonly action: 'announce';
  readonly transactionId: number;
  /** Seconds. */
  readonly interval: number;
  readonly leechers: number;
  readonly seeders: number;
  readonly peers: readonly Endpoint[];
}

export interface UdpScrapeStats {
  readonly seeders: number;
  readonly completed: number;
  readonly leechers: number;
}

export interface UdpScrapeResponse {
  readonly action: 'scrape';
  readonly transactionId: number;
  /** One entry per info hash of the request, in the same order. */
  readonly files: readonly UdpScrapeStats[];
}

export interface UdpErrorResponse {
  readonly action: 'error';
  readonly transactionId: number;
  readonly message: string;
}

export type UdpResponse = UdpConnectResponse | UdpAnnounceResponse | UdpScrapeResponse | UdpErrorResponse;

// ---------------------------------------------------------------- checks

function checkU32(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > MAX_U32) fail('OUT_OF_RANGE', `${what} must be an unsigned 32-bit integer`);
}

function checkI32(n: number, what: string): void {
  if (!Number.isInteger(n) || n < -0x80000000 || n > 0x7fffffff) fail('OUT_OF_RANGE', `${what} must be a signed 32-bit integer`);
}

function checkU64(n: bigint, what: string): void {
  if (typeof n !== 'bigint' || n < 0n || n > 0xffffffffffffffffn) fail('OUT_OF_RANGE', `${what} must be an unsigned 64-bit integer`);
}

function checkCount(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) fail('OUT_OF_RANGE', `${what} must be a non-negative safe integer`);
}

function checkHash(h: Uint8Array, code: 'BAD_INFO_HASH' | 'BAD_PEER_ID', what: string): void {
  if (!(h instanceof Uint8Array) || h.length !== 20) fail(code, `${what} must be 20 bytes`);
}

function view(bytes: Uint8Array): Buffer {
  if (!(bytes instanceof Uint8Array)) return fail('TRUNCATED', 'datagram is not bytes');
  if (bytes.length > MAX_DATAGRAM) fail('BAD_LENGTH', `datagram of ${bytes.length} bytes is larger than any UDP datagram`);
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function need(buf: Buffer, n: number, what: string): void {
  if (buf.length < n) fail('TRUNCATED', `${what} of ${buf.length} bytes is shorter than ${n}`);
}

function readCount64(buf: Buffer, at: number, what: string): number {
  const v = buf.readBigUInt64BE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail('OUT_OF_RANGE', `${what} is larger than 2^53 - 1`, at);
  return Number(v);
}

const EVENT_CODES: Readonly<Record<AnnounceEvent, number>> = { completed: 1, started: 2, stopped: 3 };
const EVENT_NAMES: readonly (AnnounceEvent | undefined)[] = [undefined, 'completed', 'started', 'stopped'];

// ---------------------------------------------------------------- requests (client -> tracker)

export function encodeRequest(req: UdpRequest): Buffer {
  switch (req.action) {
    case 'connect': {
      checkU32(req.transactionId, 'transaction id');
      const out = Buffer.alloc(CONNECT_REQUEST_SIZE);
      out.writeBigUInt64BE(PROTOCOL_ID, 0);
      out.writeUInt32BE(ACTION_CONNECT, 8);
      out.writeUInt32BE(req.transactionId, 12);
      return out;
    }
    case 'announce':
      return encodeAnnounceRequest(req);
    case 'scrape': {
      checkU64(req.connectionId, 'connection id');
      checkU32(req.transactionId, 'transaction id');
      const n = req.infoHashes.length;
      if (n === 0) fail('BAD_LENGTH', 'a scrape request needs at least one info hash');
      if (n > MAX_SCRAPE_HASHES) fail('TOO_MANY_HASHES', `at most ${MAX_SCRAPE_HASHES} info hashes per scrape`);
      const out = Buffer.alloc(SCRAPE_REQUEST_HEADER + 20 * n);
      out.writeBigUInt64BE(req.connectionId, 0);
      out.writeUInt32BE(ACTION_SCRAPE, 8);
      out.writeUInt32BE(req.transactionId, 12);
      req.infoHashes.forEach((h, i) => {
        checkHash(h, 'BAD_INFO_HASH', 'info hash');
        out.set(h, SCRAPE_REQUEST_HEADER + 20 * i);
      });
      return out;
    }
    default:
      return fail('BAD_ACTION', 'unknown request action');
  }
}

function encodeAnnounceRequest(req: UdpAnnounceRequest): Buffer {
  checkU64(req.connectionId, 'connection id');
  checkU32(req.transactionId, 'transaction id');
  checkHash(req.infoHash, 'BAD_INFO_HASH', 'info hash');
  checkHash(req.peerId, 'BAD_PEER_ID', 'peer id');
  checkCount(req.downloaded, 'downloaded');
  checkCount(req.left, 'left');
  checkCount(req.uploaded, 'uploaded');
  const key = req.key ?? 0;
  checkU32(key, 'key');
  const numWant = req.numWant ?? -1;
  checkI32(numWant, 'num_want');
  if (!Number.isInteger(req.port) || req.port < 0 || req.port > 65535) fail('BAD_PORT', 'port must be 0..65535');
  let event = 0;
  if (req.event !== undefined) {
    event = EVENT_CODES[req.event] ?? fail('BAD_EVENT', `unknown event ${String(req.event)}`);
  }
  let ip: Uint8Array = new Uint8Array(4);
  if (req.ip !== undefined) ip = parseIpv4(req.ip) ?? fail('BAD_PARAM', 'the IP address field takes an IPv4 address');

  // BEP 41 options: URLData in chunks of at most 255 bytes.
  const url = req.urlData ?? new Uint8Array(0);
  const chunks = Math.ceil(url.length / 255);
  const out = Buffer.alloc(ANNOUNCE_REQUEST_SIZE + url.length + 2 * chunks);
  out.writeBigUInt64BE(req.connectionId, 0);
  out.writeUInt32BE(ACTION_ANNOUNCE, 8);
  out.writeUInt32BE(req.transactionId, 12);
  out.set(req.infoHash, 16);
  out.set(req.peerId, 36);
  out.writeBigUInt64BE(BigInt(req.downloaded), 56);
  out.writeBigUInt64BE(BigInt(req.left), 64);
  out.writeBigUInt64BE(BigInt(req.uploaded), 72);
  out.writeUInt32BE(event, 80);
  out.set(ip, 84);
  out.writeUInt32BE(key, 88);
  out.writeInt32BE(numWant, 92);
  out.writeUInt16BE(req.port, 96);
  let p = ANNOUNCE_REQUEST_SIZE;
  for (let i = 0; i < url.length; i += 255) {
    const chunk = url.subarray(i, i + 255);
    out[p++] = 0x02;
    out[p++] = chunk.length;
    out.set(chunk, p);
    p += chunk.length;
  }
  return out;
}

/** Reads BEP 41 options; URLData chunks are joined. A malformed tail is ignored (options are advisory). */
function readOptions(buf: Buffer, start: number): Buffer | undefined {
  const url: Buffer[] = [];
  let p = start;
  while (p < buf.length) {
    const type = buf[p]!;
    if (type === 0x00) break; // EndOfOptions
    if (type === 0x01) {
      p++; // NOP
      continue;
    }
    if (p + 1 >= buf.length) break;
    const len = buf[p + 1]!;
    if (p + 2 + len > buf.length) break;
    if (type === 0x02) url.push(buf.subarray(p + 2, p + 2 + len));
    p += 2 + len;
  }
  return url.length === 0 ? undefined : Buffer.concat(url);
}

/** What a tracker receives: any of the three requests. */
export function decodeRequest(bytes: Uint8Array): UdpRequest {
  const buf = view(bytes);
  need(buf, 16, 'request');
  const action = buf.readUInt32BE(8);
  const transactionId = buf.readUInt32BE(12);
  switch (action) {
    case ACTION_CONNECT:
      if (buf.readBigUInt64BE(0) !== PROTOCOL_ID) fail('BAD_PROTOCOL_ID', 'connect request without the protocol id', 0);
      return { action: 'connect', transactionId };
    case ACTION_ANNOUNCE: {
      need(buf, ANNOUNCE_REQUEST_SIZE, 'announce request');
      const eventCode = buf.readUInt32BE(80);
      if (eventCode > 3) fail('BAD_EVENT', `unknown event ${eventCode}`, 80);
      const ipBytes = buf.subarray(84, 88);
      const urlData = readOptions(buf, ANNOUNCE_REQUEST_SIZE);
      return {
        action: 'announce',
        connectionId: buf.readBigUInt64BE(0),
        transactionId,
        infoHash: Buffer.from(buf.subarray(16, 36)),
        peerId: Buffer.from(buf.subarray(36, 56)),
        downloaded: readCount64(buf, 56, 'downloaded'),
        left: readCount64(buf, 64, 'left'),
        uploaded: readCount64(buf, 72, 'uploaded'),
        event: EVENT_NAMES[eventCode],
        ip: buf.readUInt32BE(84) === 0 ? undefined : formatIp(ipBytes),
        key: buf.readUInt32BE(88),
        numWant: buf.readInt32BE(92),
        port: buf.readUInt16BE(96),
        urlData,
      };
    }
    case ACTION_SCRAPE: {
      const body = buf.length - SCRAPE_REQUEST_HEADER;
      if (body === 0) fail('BAD_LENGTH', 'scrape request without info hashes');
      if (body % 20 !== 0) fail('BAD_LENGTH', `scrape request body of ${body} bytes is not a multiple of 20`);
      if (body / 20 > MAX_SCRAPE_HASHES) fail('TOO_MANY_HASHES', `more than ${MAX_SCRAPE_HASHES} info hashes`);
      const infoHashes: Buffer[] = [];
      for (let p = SCRAPE_REQUEST_HEADER; p < buf.length; p += 20) infoHashes.push(Buffer.from(buf.subarray(p, p + 20)));
      return { action: 'scrape', connectionId: buf.readBigUInt64BE(0), transactionId, infoHashes };
    }
    default:
      return fail('BAD_ACTION', `unknown request action ${action}`, 8);
  }
}

// ---------------------------------------------------------------- responses (tracker -> client)

/** Encodes a response; `family` is the address family of the datagram (it sets the peer entry size). */
export function encodeResponse(res: UdpResponse, family: AddressFamily = 4): Buffer {
  checkU32(res.transactionId, 'transaction id');
  switch (res.action) {
    case 'connect': {
      checkU64(res.connectionId, 'connection id');
      const out = Buffer.alloc(CONNECT_RESPONSE_SIZE);
      out.writeUInt32BE(ACTION_CONNECT, 0);
      out.writeUInt32BE(res.transactionId, 4);
      out.writeBigUInt64BE(res.connectionId, 8);
      return out;
    }
    case 'announce': {
      checkU32(res.interval, 'interval');
      checkU32(res.leechers, 'leechers');
      checkU32(res.seeders, 'seeders');
      let peers: Buffer;
      try {
        peers = encodeCompactPeers(res.peers, family);
      } catch (e) {
        return fail('BAD_PEERS', `peers must all be IPv${family} endpoints: ${(e as Error).message}`);
      }
      const out = Buffer.alloc(ANNOUNCE_RESPONSE_HEADER + peers.length);
      out.writeUInt32BE(ACTION_ANNOUNCE, 0);
      out.writeUInt32BE(res.transactionId, 4);
      out.writeUInt32BE(res.interval, 8);
      out.writeUInt32BE(res.leechers, 12);
      out.writeUInt32BE(res.seeders, 16);
      out.set(peers, ANNOUNCE_RESPONSE_HEADER);
      if (out.length > MAX_DATAGRAM) fail('BAD_LENGTH', 'too many peers for one datagram');
      return out;
    }
    case 'scrape': {
      const out = Buffer.alloc(SCRAPE_RESPONSE_HEADER + 12 * res.files.length);
      if (out.length > MAX_DATAGRAM) fail('BAD_LENGTH', 'too many scrape entries for one datagram');
      out.writeUInt32BE(ACTION_SCRAPE, 0);
      out.writeUInt32BE(res.transactionId, 4);
      res.files.forEach((f, i) => {
        checkU32(f.seeders, 'seeders');
        checkU32(f.completed, 'completed');
        checkU32(f.leechers, 'leechers');
        const p = SCRAPE_RESPONSE_HEADER + 12 * i;
        out.writeUInt32BE(f.seeders, p);
        out.writeUInt32BE(f.completed, p + 4);
        out.writeUInt32BE(f.leechers, p + 8);
      });
      return out;
    }
    case 'error': {
      const msg = Buffer.from(res.message, 'utf8');
      if (msg.length > MAX_DATAGRAM - 8) fail('BAD_LENGTH', 'error message too long for one datagram');
      const out = Buffer.alloc(8 + msg.length);
      out.writeUInt32BE(ACTION_ERROR, 0);
      out.writeUInt32BE(res.transactionId, 4);
      out.set(msg, 8);
      return out;
    }
    default:
      return fail('BAD_ACTION', 'unknown response action');
  }
}

/** What a client receives. `family` is the address family of the datagram's source. */
export function decodeResponse(bytes: Uint8Array, family: AddressFamily): UdpResponse {
  const buf = view(bytes);
  need(buf, 8, 'response');
  const action = buf.readUInt32BE(0);
  const transactionId = buf.readUInt32BE(4);
  switch (action) {
    case ACTION_CONNECT:
      need(buf, CONNECT_RESPONSE_SIZE, 'connect response');
      return { action: 'connect', transactionId, connectionId: buf.readBigUInt64BE(8) };
    case ACTION_ANNOUNCE: {
      need(buf, ANNOUNCE_RESPONSE_HEADER, 'announce response');
      const stride = family === 4 ? 6 : 18;
      const body = buf.length - ANNOUNCE_RESPONSE_HEADER;
      if (body % stride !== 0) fail('BAD_LENGTH', `peer list of ${body} bytes is not a multiple of ${stride} (IPv${family})`, ANNOUNCE_RESPONSE_HEADER);
      return {
        action: 'announce',
        transactionId,
        interval: buf.readUInt32BE(8),
        leechers: buf.readUInt32BE(12),
        seeders: buf.readUInt32BE(16),
        peers: decodeCompactPeers(buf.subarray(ANNOUNCE_RESPONSE_HEADER), family),
      };
    }
    case ACTION_SCRAPE: {
      const body = buf.length - SCRAPE_RESPONSE_HEADER;
      if (body % 12 !== 0) fail('BAD_LENGTH', `scrape response body of ${body} bytes is not a multiple of 12`, SCRAPE_RESPONSE_HEADER);
      const files: UdpScrapeStats[] = [];
      for (let p = SCRAPE_RESPONSE_HEADER; p < buf.length; p += 12) {
        files.push({ seeders: buf.readUInt32BE(p), completed: buf.readUInt32BE(p + 4), leechers: buf.readUInt32BE(p + 8) });
      }
      return { action: 'scrape', transactionId, files };
    }
    case ACTION_ERROR:
      return { action: 'error', transactionId, message: buf.toString('utf8', 8) };
    default:
      return fail('BAD_ACTION', `unknown response action ${action}`, 0);
  }
}
