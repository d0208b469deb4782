/**
 * HTTP tracker protocol, both directions: BEP 3 (announce), BEP 23 (compact
 * peer lists), BEP 7 (IPv6: `peers6`, `ipv4=`/`ipv6=`), BEP 48 (scrape).
 *
 * Client side: `buildAnnounceUrl`, `buildScrapeUrl`, `decodeAnnounceResponse`,
 * `decodeScrapeResponse`. Server side: `parseAnnounceQuery`,
 * `parseScrapeQuery`, `encodeAnnounceResponse`, `encodeScrapeResponse`,
 * `encodeFailure`.
 *
 * Binary parameters (info_hash, peer_id, trackerid) are percent-encoded and
 * decoded byte by byte: they are arbitrary bytes, not UTF-8 text, so neither
 * URLSearchParams nor decodeURIComponent can be used on them.
 *
 * Every failure is a TrackerError (a CodecError) with a stable `code` and a
 * `reason`: the short human text a tracker puts in its `failure reason`.
 */
import type { Endpoint } from '../runtime/contract.js';
import { decode, encode, isBytes, isDict, isList, type BencodeDict, type BencodeInput, type BencodeValue } from './bencode.js';
import { decodeCompactPeers, encodeCompactPeers } from './compact.js';
import { CodecError } from './errors.js';
import { formatIp, parseIp } from './ip.js';

// ---------------------------------------------------------------- errors

export type TrackerErrorCode =
  // URLs and query strings
  | 'BAD_URL'
  | 'NOT_ANNOUNCE_URL'
  | 'QUERY_TOO_LONG'
  | 'TOO_MANY_PARAMS'
  | 'BAD_ENCODING'
  | 'MISSING_PARAM'
  | 'DUPLICATE_PARAM'
  | 'BAD_INFO_HASH'
  | 'BAD_PEER_ID'
  | 'BAD_PORT'
  | 'BAD_INTEGER'
  | 'BAD_EVENT'
  | 'BAD_PARAM'
  // bencoded responses
  | 'BAD_BENCODE'
  | 'NOT_A_DICT'
  | 'BAD_FIELD'
  | 'BAD_PEERS'
  | 'TOO_MANY_PEERS'
  // UDP (BEP 15) packets
  | 'TRUNCATED'
  | 'BAD_LENGTH'
  | 'BAD_PROTOCOL_ID'
  | 'BAD_ACTION'
  | 'TOO_MANY_HASHES'
  | 'OUT_OF_RANGE';

/** A tracker codec failure. `reason` is suitable for a tracker's `failure reason`. */
export class TrackerError extends CodecError {
  declare readonly code: TrackerErrorCode;
  /** Short human text, without the "tracker:" prefix: what a tracker would send back. */
  readonly reason: string;
  constructor(code: TrackerErrorCode, reason: string, offset?: number) {
    super('tracker', code, reason, offset);
    this.name = 'TrackerError';
    this.reason = reason;
  }
}

function fail(code: TrackerErrorCode, reason: string, offset?: number): never {
  throw new TrackerError(code, reason, offset);
}

// ---------------------------------------------------------------- percent-encoding

const HEX = '0123456789ABCDEF';

/** RFC 3986 unreserved characters stay literal; every other byte becomes %XX. */
function isUnreserved(b: number): boolean {
  return (
    (b >= 0x30 && b <= 0x39) || // 0-9
    (b >= 0x41 && b <= 0x5a) || // A-Z
    (b >= 0x61 && b <= 0x7a) || // a-z
    b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e // - . _ ~
  );
}

/** Percent-encodes bytes, one byte at a time (binary-safe). Strings are taken as UTF-8. */
export function percentEncodeBytes(input: Uint8Array | string): string {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  let out = '';
  for (const b of bytes) {
    out += isUnreserved(b) ? String.fromCharCode(b) : `%${HEX[b >> 4]!}${HEX[b & 15]!}`;
  }
  return out;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

/**
 * Decodes a percent-encoded component into raw bytes. `+` is a space (the
 * query string is form-encoded); characters outside ASCII are refused, since
 * a well-formed URL never carries them unescaped.
 */
export function percentDecodeBytes(text: string): Buffer {
  const out = Buffer.alloc(text.length);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x25) {
      const hi = i + 1 < text.length ? hexValue(text.charCodeAt(i + 1)) : -1;
      const lo = i + 2 < text.length ? hexValue(text.charCodeAt(i + 2)) : -1;
      if (hi < 0 || lo < 0) fail('BAD_ENCODING', 'malformed percent-encoding in query string', i);
      out[n++] = (hi << 4) | lo;
      i += 2;
    } else if (c === 0x2b) {
      out[n++] = 0x20;
    } else if (c > 0x20 && c < 0x7f) {
      out[n++] = c;
    } else {
      fail('BAD_ENCODING', 'query string contains a character that must be escaped', i);
    }
  }
  return out.subarray(0, n);
}

// ---------------------------------------------------------------- URLs

export type AnnounceEvent = 'started' | 'completed' | 'stopped';
/** HTTP trackers also know BEP 21's `paused` (a partial seed that is not downloading). */
export type HttpAnnounceEvent = AnnounceEvent | 'paused';

/** What a client announces; shared by the HTTP and UDP protocols. Byte counts are safe integers. */
export interface AnnounceParams {
  readonly infoHash: Uint8Array;
  readonly peerId: Uint8Array;
  readonly port: number;
  readonly uploaded: number;
  readonly downloaded: number;
  readonly left: number;
  /** Omitted for a regular (periodic) announce. */
  readonly event?: AnnounceEvent | undefined;
  /** How many peers are wanted; omitted for the tracker's default. */
  readonly numWant?: number | undefined;
  /** An unsigned 32-bit key (BEP 7 / BEP 15), identifying this client across addresses. */
  readonly key?: number | undefined;
}

export interface HttpAnnounceParams extends Omit<AnnounceParams, 'event'> {
  readonly event?: HttpAnnounceEvent | undefined;
  /** Ask for a compact response (BEP 23). Default true. */
  readonly compact?: boolean | undefined;
  /** Ask the tracker to leave peer ids out of a non-compact response. */
  readonly noPeerId?: boolean | undefined;
  /** The `tracker id` of an earlier response, sent back as is. */
  readonly trackerId?: Uint8Array | undefined;
  /** BEP 3 `ip`: this client's address (or name), when it is not the request's source. */
  readonly ip?: string | undefined;
  /** BEP 7 `ipv4`: an IPv4 address or `a.b.c.d:port` endpoint. */
  readonly ipv4?: string | undefined;
  /** BEP 7 `ipv6`: an IPv6 address or `[addr]:port` endpoint. */
  readonly ipv6?: string | undefined;
}

const MAX_U32 = 0xffffffff;

function checkHash(bytes: Uint8Array, code: 'BAD_INFO_HASH' | 'BAD_PEER_ID', what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== 20) fail(code, `${what} must be 20 bytes`);
}

function checkCount(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) fail('BAD_INTEGER', `${what} must be a non-negative integer`);
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) fail('BAD_PORT', 'port must be an integer from 1 to 65535');
}

interface SplitUrl {
  /** scheme://authority */
  readonly origin: string;
  readonly path: string;
  /** Without the '?'; undefined when the URL has no '?'. */
  readonly query: string | undefined;
}

/** Splits an http(s) URL without normalising it (the passkey in its query must survive byte for byte). */
function splitHttpUrl(url: string): SplitUrl {
  const m = /^(https?:\/\/[^/?#]+)([^?#]*)(?:\?([^#]*))?(?:#.*)?$/i.exec(url);
  if (!m) return fail('BAD_URL', 'not an http or https URL');
  for (let i = 0; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) fail('BAD_URL', 'URL contains a character that must be escaped');
  }
  return { origin: m[1]!, path: m[2]!, query: m[3] };
}

function joinQuery(u: SplitUrl, params: string): string {
  const existing = u.query === undefined || u.query === '' ? '' : u.query.endsWith('&') ? u.query : `${u.query}&`;
  return `${u.origin}${u.path}?${existing}${params}`;
}

/**
 * The GET URL of an announce (BEP 3). Query parameters already in
 * `announceUrl` (a private tracker's passkey) are kept as they are; a
 * fragment is dropped.
 */
export function buildAnnounceUrl(announceUrl: string, params: HttpAnnounceParams): string {
  const u = splitHttpUrl(announceUrl);
  checkHash(params.infoHash, 'BAD_INFO_HASH', 'info_hash');
  checkHash(params.peerId, 'BAD_PEER_ID', 'peer_id');
  checkPort(params.port);
  checkCount(params.uploaded, 'uploaded');
  checkCount(params.downloaded, 'downloaded');
  checkCount(params.left, 'left');
  const q: string[] = [
    `info_hash=${percentEncodeBytes(params.infoHash)}`,
    `peer_id=${percentEncodeBytes(params.peerId)}`,
    `port=${params.port}`,
    `uploaded=${params.uploaded}`,
    `downloaded=${params.downloaded}`,
    `left=${params.left}`,
    `compact=${params.compact === false ? 0 : 1}`,
  ];
  if (params.noPeerId) q.push('no_peer_id=1');
  if (params.event !== undefined) {
    if (!EVENTS.has(params.event)) fail('BAD_EVENT', `unknown event ${String(params.event)}`);
    q.push(`event=${params.event}`);
  }
  if (params.numWant !== undefined) {
    checkCount(params.numWant, 'numwant');
    q.push(`numwant=${params.numWant}`);
  }
  if (params.key !== undefined) {
    if (!Number.isInteger(params.key) || params.key < 0 || params.key > MAX_U32) fail('BAD_PARAM', 'key must be an unsigned 32-bit integer');
    q.push(`key=${formatKey(params.key)}`);
  }
  if (params.trackerId !== undefined) q.push(`trackerid=${percentEncodeBytes(params.trackerId)}`);
  if (params.ip !== undefined) q.push(`ip=${percentEncodeBytes(params.ip)}`);
  if (params.ipv4 !== undefined) q.push(`ipv4=${percentEncodeBytes(params.ipv4)}`);
  if (params.ipv6 !== undefined) q.push(`ipv6=${percentEncodeBytes(params.ipv6)}`);
  return joinQuery(u, q.join('&'));
}

/** The HTTP form of a 32-bit key: eight upper-case hex digits. */
export function formatKey(key: number): string {
  return key.toString(16).toUpperCase().padStart(8, '0');
}

/**
 * The scrape URL of an announce URL (BEP 48): the last path component must
 * start with `announce`, which becomes `scrape` (`/x/announce.php?pk=1` ->
 * `/x/scrape.php?pk=1`); any other tracker does not support scrape and is
 * refused with NOT_ANNOUNCE_URL. With no info hashes it is a full scrape.
 */
export function buildScrapeUrl(announceUrl: string, infoHashes: readonly Uint8Array[] = []): string {
  const u = splitHttpUrl(announceUrl);
  const slash = u.path.lastIndexOf('/');
  const last = u.path.slice(slash + 1);
  if (slash < 0 || !last.startsWith('announce')) fail('NOT_ANNOUNCE_URL', 'the announce URL does not end in a component starting with "announce"; no scrape URL');
  const path = `${u.path.slice(0, slash + 1)}scrape${last.slice('announce'.length)}`;
  for (const h of infoHashes) checkHash(h, 'BAD_INFO_HASH', 'info_hash');
  const params = infoHashes.map((h) => `info_hash=${percentEncodeBytes(h)}`).join('&');
  if (params === '') return u.query === undefined ? `${u.origin}${path}` : `${u.origin}${path}?${u.query}`;
  return joinQuery({ ...u, path }, params);
}

// ---------------------------------------------------------------- server side: query strings

export interface QueryLimits {
  /** Longest query string accepted, in characters. Default 8192. */
  maxQueryLength?: number;
  /** Most `name=value` pairs accepted. Default 128. */
  maxParams?: number;
}

export interface AnnounceQueryOptions extends QueryLimits {
  /** numwant when the client gives none (or a negative one). Default 50. */
  defaultNumWant?: number;
  /** numwant is clamped to this. Default 200. */
  maxNumWant?: number;
}

/** An announce as a tracker receives it. */
export interface ParsedAnnounce {
  readonly infoHash: Buffer;
  readonly peerId: Buffer;
  readonly port: number;
  readonly uploaded: number;
  readonly downloaded: number;
  readonly left: number;
  readonly event: HttpAnnounceEvent | undefined;
  /** Clamped to [0, maxNumWant]; the default when absent or negative. */
  readonly numWant: number;
  /** What the client asked: true, false, or undefined when it did not say. */
  readonly compact: boolean | undefined;
  readonly noPeerId: boolean;
  /** Opaque; as the client sent it (bytes as latin1 characters). */
  readonly key: string | undefined;
  readonly trackerId: Buffer | undefined;
  /** BEP 3 `ip` and BEP 7 `ipv4`/`ipv6`, as sent (latin1); see `parseAddressParam`. */
  readonly ip: string | undefined;
  readonly ipv4: string | undefined;
  readonly ipv6: string | undefined;
}

const EVENTS: ReadonlySet<string> = new Set(['started', 'completed', 'stopped', 'paused']);
const KNOWN_ANNOUNCE_PARAMS = new Set([
  'info_hash', 'peer_id', 'port', 'uploaded', 'downloaded', 'left', 'event', 'numwant', 'compact', 'no_peer_id', 'key', 'trackerid', 'ip', 'ipv4', 'ipv6',
]);
const MAX_TEXT_PARAM = 256;

/** Splits a raw query string into (name, bytes) pairs, bounded. A leading '?' is allowed. */
function splitQuery(raw: string, limits: QueryLimits): { name: string; value: Buffer }[] {
  const maxLen = limits.maxQueryLength ?? 8192;
  const maxParams = limits.maxParams ?? 128;
  if (typeof raw !== 'string') fail('BAD_ENCODING', 'query string is not a string');
  if (raw.length > maxLen) fail('QUERY_TOO_LONG', `query string longer than ${maxLen} characters`);
  const q = raw.startsWith('?') ? raw.slice(1) : raw;
  const out: { name: string; value: Buffer }[] = [];
  if (q === '') return out;
  for (const part of q.split('&')) {
    if (part === '') continue;
    if (out.length >= maxParams) fail('TOO_MANY_PARAMS', `more than ${maxParams} query parameters`);
    const eq = part.indexOf('=');
    const name = percentDecodeBytes(eq < 0 ? part : part.slice(0, eq)).toString('latin1');
    const value = eq < 0 ? Buffer.alloc(0) : percentDecodeBytes(part.slice(eq + 1));
    out.push({ name, value });
  }
  return out;
}

const LEFT_UNKNOWN = new Set(['9223372036854775807', '18446744073709551615']);

function parseUint(value: Buffer, name: string): number {
  if (value.length === 0 || value.length > 16) fail('BAD_INTEGER', `${name} is not a valid number`);
  let n = 0;
  for (const c of value) {
    if (c < 0x30 || c > 0x39) {
      if (c === 0x2d) fail('BAD_INTEGER', `${name} must not be negative`);
      fail('BAD_INTEGER', `${name} is not a valid number`);
    }
    n = n * 10 + (c - 0x30);
  }
  if (!Number.isSafeInteger(n)) fail('BAD_INTEGER', `${name} is too large`);
  return n;
}

function textParam(value: Buffer, name: string): string {
  if (value.length > MAX_TEXT_PARAM) fail('BAD_PARAM', `${name} is too long`);
  return value.toString('latin1');
}

/**
 * Parses the query string of an announce (server side). Unknown parameters
 * are ignored; a known parameter given twice is an error.
 */
export function parseAnnounceQuery(rawQuery: string, options: AnnounceQueryOptions = {}): ParsedAnnounce {
  const defaultNumWant = options.defaultNumWant ?? 50;
  const maxNumWant = options.maxNumWant ?? 200;
  const seen = new Map<string, Buffer>();
  for (const { name, value } of splitQuery(rawQuery, options)) {
    if (!KNOWN_ANNOUNCE_PARAMS.has(name)) continue;
    if (seen.has(name)) fail('DUPLICATE_PARAM', `${name} given more than once`);
    seen.set(name, value);
  }
  const required = (name: string): Buffer => seen.get(name) ?? fail('MISSING_PARAM', `missing ${name}`);

  const infoHash = required('info_hash');
  if (infoHash.length !== 20) fail('BAD_INFO_HASH', 'invalid info_hash');
  const peerId = required('peer_id');
  if (peerId.length !== 20) fail('BAD_PEER_ID', 'invalid peer_id');
  const portRaw = required('port');
  const port = /^[0-9]{1,5}$/.test(portRaw.toString('latin1')) ? Number(portRaw.toString('latin1')) : -1;
  if (port < 1 || port > 65535) fail('BAD_PORT', 'invalid port');
  const uploaded = parseUint(required('uploaded'), 'uploaded');
  const downloaded = parseUint(required('downloaded'), 'downloaded');
  // Transmission 3.00 announces a magnet link whose metadata it lacks with left=2^63-1 ("unknown"):
  // read that sentinel (and 2^64-1) as the largest safe integer rather than refuse the announce.
  const leftRaw = required('left');
  const left = LEFT_UNKNOWN.has(leftRaw.toString('latin1')) ? Number.MAX_SAFE_INTEGER : parseUint(leftRaw, 'left');

  let event: HttpAnnounceEvent | undefined;
  const ev = seen.get('event')?.toString('latin1');
  if (ev !== undefined && ev !== '' && ev !== 'empty') {
    if (!EVENTS.has(ev)) fail('BAD_EVENT', 'invalid event');
    event = ev as HttpAnnounceEvent;
  }

  let numWant = defaultNumWant;
  const nw = seen.get('numwant');
  if (nw !== undefined && nw.length > 0) {
    // A negative numwant (often -1) means "the default"; a huge one is clamped.
    const negative = nw[0] === 0x2d;
    const digits = negative ? nw.subarray(1) : nw;
    if (digits.length === 0 || digits.length > 16 || !digits.every((c) => c >= 0x30 && c <= 0x39)) fail('BAD_INTEGER', 'numwant is not a valid number');
    if (!negative) numWant = Math.min(Number(digits.toString('latin1')), maxNumWant);
  }
  numWant = Math.max(0, Math.min(numWant, maxNumWant));

  const flag = (name: string): boolean | undefined => {
    const v = seen.get(name);
    if (v === undefined) return undefined;
    const s = v.toString('latin1');
    if (s === '1') return true;
    if (s === '0') return false;
    return fail('BAD_PARAM', `invalid ${name}`);
  };
  const compact = flag('compact');
  const noPeerId = flag('no_peer_id') ?? false;

  const trackerId = seen.get('trackerid');
  if (trackerId !== undefined && trackerId.length > MAX_TEXT_PARAM) fail('BAD_PARAM', 'trackerid is too long');
  const optText = (name: string): string | undefined => {
    const v = seen.get(name);
    return v === undefined ? undefined : textParam(v, name);
  };
  return {
    infoHash,
    peerId,
    port,
    uploaded,
    downloaded,
    left,
    event,
    numWant,
    compact,
    noPeerId,
    key: optText('key'),
    trackerId,
    ip: optText('ip'),
    ipv4: optText('ipv4'),
    ipv6: optText('ipv6'),
  };
}

/**
 * Parses a scrape query string (server side): every `info_hash`, each
 * exactly 20 bytes. None means a full scrape. Other parameters are ignored.
 */
export function parseScrapeQuery(rawQuery: string, limits: QueryLimits = {}): Buffer[] {
  const out: Buffer[] = [];
  for (const { name, value } of splitQuery(rawQuery, limits)) {
    if (name !== 'info_hash') continue;
    if (value.length !== 20) fail('BAD_INFO_HASH', 'invalid info_hash');
    out.push(value);
  }
  return out;
}

/**
 * Reads a BEP 7 `ipv4=`/`ipv6=` (or BEP 3 `ip=`) value: an address literal
 * or an endpoint (`a.b.c.d:port`, `[v6]:port`). The port defaults to
 * `defaultPort`. Undefined for anything else (a host name, another family).
 */
export function parseAddressParam(value: string, family: 4 | 6, defaultPort: number): Endpoint | undefined {
  let host = value;
  let port = defaultPort;
  const m = family === 6 ? /^\[([^\]]+)\]:([0-9]{1,5})$/.exec(value) : /^([0-9.]+):([0-9]{1,5})$/.exec(value);
  if (m) {
    host = m[1]!;
    port = Number(m[2]);
  } else if (family === 6 && value.startsWith('[') && value.endsWith(']')) {
    host = value.slice(1, -1);
  }
  if (port < 1 || port > 65535 || !Number.isInteger(port)) return undefined;
  const ip = parseIp(host);
  if (!ip || ip.length !== (family === 4 ? 4 : 16)) return undefined;
  return { host: formatIp(ip), port };
}

// ---------------------------------------------------------------- responses

/** A peer from a tracker: an endpoint, with its peer id when a non-compact response gave one. */
export interface TrackerPeer extends Endpoint {
  readonly peerId?: Buffer;
}

export interface AnnounceFailure {
  readonly failureReason: string;
  readonly warningMessage?: string;
  /** BEP 31 `retry in`: minutes, or 'never'. */
  readonly retryIn?: number | 'never';
}

export interface AnnounceSuccess {
  readonly failureReason?: undefined;
  readonly warningMessage?: string;
  /** Seconds until the next regular announce. */
  readonly interval: number;
  /** Seconds the client must at least wait between announces. */
  readonly minInterval?: number;
  readonly trackerId?: Buffer;
  /** Seeders. */
  readonly complete?: number;
  /** Leechers. */
  readonly incomplete?: number;
  /** BEP 24: this client's address as the tracker saw it. */
  readonly externalIp?: string;
  /** From `peers` (compact or dictionary list) followed by `peers6`. */
  readonly peers: TrackerPeer[];
}

export type AnnounceResponse = AnnounceFailure | AnnounceSuccess;

export interface ResponseLimits {
  /** Largest response body accepted, in bytes. Default 2 MiB. */
  maxInputBytes?: number;
  /** Most peers accepted in one response. Default 10000. */
  maxPeers?: number;
}

const MAX_INTERVAL = 0x7fffffff;

function decodeBody(bytes: Uint8Array, limits: ResponseLimits): BencodeDict {
  const maxInput = limits.maxInputBytes ?? 2 * 1024 * 1024;
  if (!(bytes instanceof Uint8Array)) fail('BAD_BENCODE', 'response is not bytes');
  if (bytes.length > maxInput) fail('BAD_BENCODE', `response of ${bytes.length} bytes exceeds the limit of ${maxInput}`);
  let v: BencodeValue;
  try {
    // Real trackers do not always sort their keys; duplicates are still refused.
    v = decode(bytes, { maxInputBytes: maxInput, maxDepth: 8, allowUnsortedKeys: true });
  } catch (e) {
    if (e instanceof CodecError) {
      const err = new TrackerError('BAD_BENCODE', `response is not valid bencode (${e.code})`, e.offset);
      (err as { cause?: unknown }).cause = e;
      throw err;
    }
    throw e;
  }
  if (!isDict(v)) return fail('NOT_A_DICT', 'response is not a dictionary');
  return v;
}

function getCount(d: BencodeDict, key: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = d.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || v < 0 || v > max) return fail('BAD_FIELD', `"${key}" is not an integer in range`);
  return v;
}

function getText(d: BencodeDict, key: string): string | undefined {
  const v = d.get(key);
  if (v === undefined) return undefined;
  if (!isBytes(v)) return fail('BAD_FIELD', `"${key}" is not a string`);
  return v.toString('utf8');
}

function compactPeers(v: Buffer, family: 4 | 6, key: string): TrackerPeer[] {
  const size = family === 4 ? 6 : 18;
  if (v.length % size !== 0) fail('BAD_PEERS', `"${key}" length ${v.length} is not a multiple of ${size}`);
  return decodeCompactPeers(v, family);
}

function dictPeers(list: BencodeValue[], out: TrackerPeer[], maxPeers: number): void {
  for (const item of list) {
    if (!isDict(item)) fail('BAD_PEERS', 'a peer is not a dictionary');
    const ipv = item.get('ip');
    const port = item.get('port');
    const pid = item.get('peer id');
    if (!isBytes(ipv)) fail('BAD_PEERS', 'a peer has no "ip" string');
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) fail('BAD_PEERS', 'a peer has no valid "port"');
    if (pid !== undefined && (!isBytes(pid) || pid.length !== 20)) fail('BAD_PEERS', 'a peer has an invalid "peer id"');
    if (out.length >= maxPeers) fail('TOO_MANY_PEERS', `more than ${maxPeers} peers`);
    // BEP 3 allows a DNS name here; an Endpoint is a literal address, so such peers are skipped.
    const ip = ipv.length <= 45 ? parseIp(ipv.toString('latin1')) : undefined;
    if (!ip) continue;
    const peer: TrackerPeer = pid === undefined ? { host: formatIp(ip), port } : { host: formatIp(ip), port, peerId: pid };
    out.push(peer);
  }
}

/** Decodes an announce response body (client side). */
export function decodeAnnounceResponse(bytes: Uint8Array, limits: ResponseLimits = {}): AnnounceResponse {
  const maxPeers = limits.maxPeers ?? 10000;
  const d = decodeBody(bytes, limits);
  const warningMessage = getText(d, 'warning message');
  const failureReason = getText(d, 'failure reason');
  if (failureReason !== undefined) {
    const r = d.get('retry in');
    let retryIn: number | 'never' | undefined;
    if (typeof r === 'number' && r >= 0) retryIn = r;
    else if (isBytes(r) && r.toString('latin1') === 'never') retryIn = 'never';
    return {
      failureReason,
      ...(warningMessage !== undefined ? { warningMessage } : {}),
      ...(retryIn !== undefined ? { retryIn } : {}),
    };
  }
  const interval = getCount(d, 'interval', MAX_INTERVAL);
  if (interval === undefined) return fail('BAD_FIELD', 'response has neither "failure reason" nor "interval"');
  const minInterval = getCount(d, 'min interval', MAX_INTERVAL);
  const complete = getCount(d, 'complete');
  const incomplete = getCount(d, 'incomplete');
  const tid = d.get('tracker id');
  if (tid !== undefined && !isBytes(tid)) fail('BAD_FIELD', '"tracker id" is not a string');
  const ext = d.get('external ip');
  let externalIp: string | undefined;
  if (ext !== undefined) {
    if (!isBytes(ext) || (ext.length !== 4 && ext.length !== 16)) fail('BAD_FIELD', '"external ip" is not 4 or 16 bytes');
    externalIp = formatIp(ext);
  }

  const peers: TrackerPeer[] = [];
  const p4 = d.get('peers');
  if (p4 !== undefined) {
    if (isBytes(p4)) {
      if (p4.length / 6 > maxPeers) fail('TOO_MANY_PEERS', `more than ${maxPeers} peers`);
      peers.push(...compactPeers(p4, 4, 'peers'));
    } else if (isList(p4)) {
      dictPeers(p4, peers, maxPeers);
    } else {
      fail('BAD_PEERS', '"peers" is neither a string nor a list');
    }
  }
  const p6 = d.get('peers6');
  if (p6 !== undefined) {
    if (!isBytes(p6)) fail('BAD_PEERS', '"peers6" is not a string');
    const more = compactPeers(p6, 6, 'peers6');
    if (peers.length + more.length > maxPeers) fail('TOO_MANY_PEERS', `more than ${maxPeers} peers`);
    peers.push(...more);
  }
  return {
    interval,
    peers,
    ...(warningMessage !== undefined ? { warningMessage } : {}),
    ...(minInterval !== undefined ? { minInterval } : {}),
    ...(tid !== undefined ? { trackerId: tid } : {}),
    ...(complete !== undefined ? { complete } : {}),
    ...(incomplete !== undefined ? { incomplete } : {}),
    ...(externalIp !== undefined ? { externalIp } : {}),
  };
}

export interface EncodeAnnounceOptions {
  /**
   * Compact (BEP 23 `peers` + BEP 7 `peers6` strings), or BEP 3 dictionary
   * list. Default true.
   */
  compact?: boolean;
  /** Leave `peer id` out of a dictionary list (the client sent no_peer_id=1). */
  noPeerId?: boolean;
}

export interface AnnounceReply {
  readonly interval: number;
  readonly minInterval?: number | undefined;
  readonly trackerId?: Uint8Array | undefined;
  readonly complete?: number | undefined;
  readonly incomplete?: number | undefined;
  readonly warningMessage?: string | undefined;
  readonly externalIp?: string | undefined;
  readonly peers: readonly TrackerPeer[];
}

function checkReplyCount(n: number | undefined, what: string, max = Number.MAX_SAFE_INTEGER): void {
  if (n !== undefined && (!Number.isSafeInteger(n) || n < 0 || n > max)) fail('BAD_FIELD', `${what} must be a non-negative integer`);
}

function peerIp(p: Endpoint): Uint8Array {
  const ip = parseIp(p.host);
  if (!ip) return fail('BAD_PEERS', `peer host ${p.host} is not an IP address`);
  if (!Number.isInteger(p.port) || p.port < 0 || p.port > 65535) fail('BAD_PEERS', `peer port ${p.port} is out of range`);
  return ip;
}

/** Encodes a successful announce response (server side). */
export function encodeAnnounceResponse(reply: AnnounceReply, options: EncodeAnnounceOptions = {}): Buffer {
  checkReplyCount(reply.interval, 'interval', MAX_INTERVAL);
  checkReplyCount(reply.minInterval, 'min interval', MAX_INTERVAL);
  checkReplyCount(reply.complete, 'complete');
  checkReplyCount(reply.incomplete, 'incomplete');
  const d = new Map<string, BencodeInput>();
  d.set('interval', reply.interval);
  if (reply.minInterval !== undefined) d.set('min interval', reply.minInterval);
  if (reply.complete !== undefined) d.set('complete', reply.complete);
  if (reply.incomplete !== undefined) d.set('incomplete', reply.incomplete);
  if (reply.trackerId !== undefined) d.set('tracker id', reply.trackerId);
  if (reply.warningMessage !== undefined) d.set('warning message', reply.warningMessage);
  if (reply.externalIp !== undefined) {
    const ip = parseIp(reply.externalIp);
    if (!ip) fail('BAD_FIELD', 'external ip is not an IP address');
    d.set('external ip', ip);
  }
  if (options.compact ?? true) {
    const v4: Endpoint[] = [];
    const v6: Endpoint[] = [];
    for (const p of reply.peers) (peerIp(p).length === 4 ? v4 : v6).push({ host: p.host, port: p.port });
    d.set('peers', encodeCompactPeers(v4, 4));
    if (v6.length > 0) d.set('peers6', encodeCompactPeers(v6, 6));
  } else {
    d.set(
      'peers',
      reply.peers.map((p) => {
        const host = formatIp(peerIp(p));
        const entry = new Map<string, BencodeInput>([
          ['ip', host],
          ['port', p.port],
        ]);
        if (p.peerId !== undefined && !options.noPeerId) {
          if (p.peerId.length !== 20) fail('BAD_PEERS', 'a peer id must be 20 bytes');
          entry.set('peer id', p.peerId);
        }
        return entry;
      }),
    );
  }
  return encode(d);
}

/** A `failure reason` response (BEP 3), optionally with BEP 31's `retry in` (minutes or 'never'). */
export function encodeFailure(reason: string, retryIn?: number | 'never'): Buffer {
  const d = new Map<string, BencodeInput>([['failure reason', reason]]);
  if (retryIn !== undefined) {
    if (retryIn !== 'never') checkReplyCount(retryIn, 'retry in');
    d.set('retry in', retryIn);
  }
  return encode(d);
}

// ---------------------------------------------------------------- scrape

export interface ScrapeFile {
  readonly infoHash: Buffer;
  /** Seeders. */
  readonly complete: number;
  /** Completed downloads, ever. */
  readonly downloaded: number;
  /** Leechers. */
  readonly incomplete: number;
}

export type ScrapeResponse = { readonly failureReason: string } | { readonly failureReason?: undefined; readonly files: ScrapeFile[] };

/**
 * Decodes a scrape response (BEP 48). A missing count reads as 0; a count of
 * the wrong type, or a key that is not a 20-byte info hash, is an error.
 * Files are in the byte order of their info hashes.
 */
export function decodeScrapeResponse(bytes: Uint8Array, limits: ResponseLimits & { maxFiles?: number } = {}): ScrapeResponse {
  const maxFiles = limits.maxFiles ?? 10000;
  const d = decodeBody(bytes, limits);
  const failureReason = getText(d, 'failure reason') ?? getText(d, 'failure_reason');
  if (failureReason !== undefined) return { failureReason };
  const filesV = d.get('files');
  if (filesV === undefined) return { files: [] };
  if (!isDict(filesV)) return fail('BAD_FIELD', '"files" is not a dictionary');
  if (filesV.size > maxFiles) fail('BAD_FIELD', `more than ${maxFiles} files`);
  const files: ScrapeFile[] = [];
  for (const [key, stats] of [...filesV].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    if (key.length !== 20) fail('BAD_INFO_HASH', 'a "files" key is not a 20-byte info hash');
    if (!isDict(stats)) fail('BAD_FIELD', 'a "files" entry is not a dictionary');
    files.push({
      infoHash: Buffer.from(key, 'latin1'),
      complete: getCount(stats, 'complete') ?? 0,
      downloaded: getCount(stats, 'downloaded') ?? 0,
      incomplete: getCount(stats, 'incomplete') ?? 0,
    });
  }
  return { files };
}

/** Encodes a scrape response (server side); info hashes must be distinct. */
export function encodeScrapeResponse(files: readonly ScrapeFile[]): Buffer {
  const m = new Map<string, BencodeInput>();
  for (const f of files) {
    checkHash(f.infoHash, 'BAD_INFO_HASH', 'info hash');
    checkReplyCount(f.complete, 'complete');
    checkReplyCount(f.downloaded, 'downloaded');
    checkReplyCount(f.incomplete, 'incomplete');
    const key = Buffer.from(f.infoHash).toString('latin1');
    if (m.has(key)) fail('BAD_INFO_HASH', 'the same info hash twice');
    m.set(key, { complete: f.complete, downloaded: f.downloaded, incomplete: f.incomplete });
  }
  return encode(new Map([['files', m]]));
}
