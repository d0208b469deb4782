/**
 * KRPC, the DHT's message format (BEP 5), over the strict bencode codec, with
 * the extensions peerkit speaks: BEP 32 (`nodes6`, `want`), BEP 42 (the `ip`
 * field), BEP 43 (`ro`), BEP 44 (`get`/`put`) and BEP 51
 * (`sample_infohashes`).
 *
 * Decoding is strict: a message is one canonical bencoded dictionary of at
 * most `MAX_KRPC_BYTES`, every key the method needs is present with the right
 * type and length, compact node lists are whole multiples of their entry
 * size, and every failure is a `KrpcError` (a CodecError) with a stable code.
 * When the failure is in a query whose transaction id could be read, the
 * error carries it (`transactionId`), so a node can answer with a KRPC error
 * 203 instead of staying silent.
 *
 * Compact node lists are kept as validated raw bytes (`nodes`, `nodes6`):
 * the DHT core slices them itself without building objects; `splitNodes`
 * gives the entries as `CompactNode`s for everyone else. A BEP 44 value is
 * kept as its exact bencoded bytes (`value`), because signatures and targets
 * are computed over those; since the decoder only accepts canonical bencode,
 * re-encoding a decoded value gives back the very bytes that were received.
 */
import type { Endpoint } from '../runtime/contract.js';
import { BencodeError, decode, encode, isBytes, isDict, isList, type BencodeDict, type BencodeInput, type BencodeValue } from './bencode.js';
import { decodeCompactNodes, type CompactNode } from './compact.js';
import { CodecError } from './errors.js';
import { formatIp, parseIp } from './ip.js';

/** Largest KRPC datagram accepted. A BEP 44 put with a 1000-byte value and full node lists stays well below. */
export const MAX_KRPC_BYTES = 4096;
/** Longest transaction id accepted (clients use 2 to 4 bytes). */
export const MAX_TRANSACTION_ID_BYTES = 32;
/** BEP 44: the bencoded value of an item is at most 1000 bytes. */
export const MAX_ITEM_VALUE_BYTES = 1000;
/** BEP 44: a salt is at most 64 bytes. */
export const MAX_SALT_BYTES = 64;
/** Most peers accepted in one `values` list. */
export const MAX_VALUES = 512;
export const COMPACT_NODE_V4 = 26;
export const COMPACT_NODE_V6 = 38;

/** KRPC error codes (BEP 5, BEP 44). */
export const KRPC_GENERIC_ERROR = 201;
export const KRPC_SERVER_ERROR = 202;
export const KRPC_PROTOCOL_ERROR = 203;
export const KRPC_METHOD_UNKNOWN = 204;
export const KRPC_MESSAGE_TOO_BIG = 205;
export const KRPC_INVALID_SIGNATURE = 206;
export const KRPC_SALT_TOO_BIG = 207;
export const KRPC_CAS_MISMATCH = 301;
export const KRPC_SEQ_TOO_LOW = 302;

export type KrpcErrorCode =
  | 'BENCODE'
  | 'TOO_LARGE'
  | 'NOT_A_DICT'
  | 'MISSING_KEY'
  | 'BAD_TYPE'
  | 'BAD_LENGTH'
  | 'BAD_VALUE'
  | 'UNKNOWN_TYPE'
  | 'UNENCODABLE';

export class KrpcError extends CodecError {
  declare readonly code: KrpcErrorCode;
  /** The transaction id of a malformed *query*, when it could be read: answer it with error 203. */
  readonly transactionId: Buffer | undefined;
  constructor(code: KrpcErrorCode, message: string, transactionId?: Buffer, offset?: number) {
    super('krpc', code, message, offset);
    this.name = 'KrpcError';
    this.transactionId = transactionId;
  }
}

/** BEP 32 `want`: which address families of nodes the querier wants back. */
export interface Want {
  readonly n4: boolean;
  readonly n6: boolean;
}

export type QueryBody =
  | { readonly q: 'ping' }
  | { readonly q: 'find_node'; readonly target: Buffer; readonly want?: Want }
  | { readonly q: 'get_peers'; readonly infoHash: Buffer; readonly want?: Want }
  | {
      readonly q: 'announce_peer';
      readonly infoHash: Buffer;
      /** The `port` argument (may be 0 or absent when `impliedPort` is set). */
      readonly port: number;
      /** BEP 5 `implied_port`: use the UDP source port instead of `port`. */
      readonly impliedPort: boolean;
      readonly token: Buffer;
    }
  | { readonly q: 'get'; readonly target: Buffer; readonly seq?: number; readonly want?: Want }
  | {
      readonly q: 'put';
      readonly token: Buffer;
      /** The item's value, as its exact bencoded bytes. */
      readonly value: Buffer;
      readonly k?: Buffer;
      readonly sig?: Buffer;
      readonly seq?: number;
      readonly salt?: Buffer;
      readonly cas?: number;
    }
  | { readonly q: 'sample_infohashes'; readonly target: Buffer; readonly want?: Want }
  /** A method this codec does not know; BEP 5 says to answer it with error 204. */
  | { readonly q: 'unknown'; readonly method: string };

export type QueryMethod = QueryBody['q'];

interface Common {
  /** Transaction id. */
  readonly t: Buffer;
  /** The sender's client version (`v` at the top level), if given. */
  readonly version?: Buffer;
  /** BEP 42: the address the sender sees us at (responses and errors), if given. */
  readonly ip?: Endpoint;
}

export type KrpcQuery = Common & {
  readonly y: 'q';
  /** The querying node's id. */
  readonly id: Buffer;
  /** BEP 43 read-only node: do not add it to routing tables. */
  readonly ro: boolean;
} & QueryBody;

export interface KrpcResponse extends Common {
  readonly y: 'r';
  readonly id: Buffer;
  /** Compact IPv4 node infos, 26 bytes each, validated. */
  readonly nodes?: Buffer;
  /** Compact IPv6 node infos, 38 bytes each, validated. */
  readonly nodes6?: Buffer;
  /** Compact peers, 6 (IPv4) or 18 (IPv6) bytes each. */
  readonly values?: readonly Buffer[];
  readonly token?: Buffer;
  /** BEP 44 item value, as its exact bencoded bytes. */
  readonly value?: Buffer;
  readonly k?: Buffer;
  readonly sig?: Buffer;
  readonly seq?: number;
  /** BEP 51 */
  readonly samples?: Buffer;
  readonly interval?: number;
  readonly num?: number;
}

export interface KrpcErrorMessage extends Common {
  readonly y: 'e';
  readonly code: number;
  readonly message: string;
}

export type KrpcMessage = KrpcQuery | KrpcResponse | KrpcErrorMessage;

// ---------------------------------------------------------------- decoding

function fail(code: KrpcErrorCode, message: string, t?: Buffer): never {
  throw new KrpcError(code, message, t);
}

class Reader {
  constructor(readonly dict: BencodeDict, readonly where: string, readonly t: Buffer | undefined) {}

  has(key: string): boolean {
    return this.dict.has(key);
  }

  bytes(key: string, length?: number, max?: number): Buffer {
    const v = this.dict.get(key);
    if (v === undefined) fail('MISSING_KEY', `${this.where} has no "${key}"`, this.t);
    return this.checkBytes(key, v, length, max);
  }

  optBytes(key: string, length?: number, max?: number): Buffer | undefined {
    const v = this.dict.get(key);
    return v === undefined ? undefined : this.checkBytes(key, v, length, max);
  }

  private checkBytes(key: string, v: BencodeValue, length: number | undefined, max: number | undefined): Buffer {
    if (!isBytes(v)) fail('BAD_TYPE', `${this.where} "${key}" is not a byte string`, this.t);
    if (length !== undefined && v.length !== length) fail('BAD_LENGTH', `${this.where} "${key}" has ${v.length} bytes, not ${length}`, this.t);
    if (max !== undefined && v.length > max) fail('BAD_LENGTH', `${this.where} "${key}" has ${v.length} bytes, more than ${max}`, this.t);
    return v;
  }

  int(key: string, min: number, max: number): number {
    const v = this.dict.get(key);
    if (v === undefined) fail('MISSING_KEY', `${this.where} has no "${key}"`, this.t);
    return this.checkInt(key, v, min, max);
  }

  optInt(key: string, min: number, max: number): number | undefined {
    const v = this.dict.get(key);
    return v === undefined ? undefined : this.checkInt(key, v, min, max);
  }

  private checkInt(key: string, v: BencodeValue, min: number, max: number): number {
    if (typeof v === 'bigint') fail('BAD_VALUE', `${this.where} "${key}" is out of range`, this.t);
    if (typeof v !== 'number') fail('BAD_TYPE', `${this.where} "${key}" is not an integer`, this.t);
    if (v < min || v > max) fail('BAD_VALUE', `${this.where} "${key}" = ${v} is out of range [${min}, ${max}]`, this.t);
    return v;
  }

  /** A flag: absent or 0 is false, 1 is true; anything else is an error. */
  flag(key: string): boolean {
    const v = this.optInt(key, 0, 1);
    return v === 1;
  }

  want(): Want | undefined {
    const v = this.dict.get('want');
    if (v === undefined) return undefined;
    if (!isList(v)) fail('BAD_TYPE', `${this.where} "want" is not a list`, this.t);
    if (v.length > 8) fail('BAD_LENGTH', `${this.where} "want" has ${v.length} entries`, this.t);
    let n4 = false;
    let n6 = false;
    for (const w of v) {
      if (!isBytes(w)) fail('BAD_TYPE', `${this.where} "want" holds a non-string`, this.t);
      const s = w.toString('latin1');
      if (s === 'n4') n4 = true;
      else if (s === 'n6') n6 = true;
    }
    return { n4, n6 };
  }

  /** A BEP 44 value: any bencoded value, re-encoded (canonical input makes that the received bytes), at most 1000 bytes. */
  itemValue(key: string, required: boolean): Buffer | undefined {
    const v = this.dict.get(key);
    if (v === undefined) {
      if (required) fail('MISSING_KEY', `${this.where} has no "${key}"`, this.t);
      return undefined;
    }
    const raw = encode(v);
    if (raw.length > MAX_ITEM_VALUE_BYTES) fail('TOO_LARGE', `${this.where} item value of ${raw.length} bytes exceeds ${MAX_ITEM_VALUE_BYTES}`, this.t);
    return raw;
  }

  nodes(key: string, entry: number): Buffer | undefined {
    const v = this.optBytes(key);
    if (v !== undefined && v.length % entry !== 0) fail('BAD_LENGTH', `${this.where} "${key}" of ${v.length} bytes is not a multiple of ${entry}`, this.t);
    return v;
  }
}

function decodeIpField(v: BencodeValue | undefined, t: Buffer): Endpoint | undefined {
  if (v === undefined) return undefined;
  if (!isBytes(v) || (v.length !== 6 && v.length !== 18)) fail('BAD_VALUE', '"ip" is not a compact address of 6 or 18 bytes', t);
  return decodeCompactAddress(v);
}

/** A compact address (BEP 5/7/23: address bytes then a big-endian port) of 6 or 18 bytes. */
export function decodeCompactAddress(b: Uint8Array): Endpoint {
  if (b.length !== 6 && b.length !== 18) fail('BAD_LENGTH', `compact address of ${b.length} bytes`);
  const a = b.length - 2;
  return { host: formatIp(b.subarray(0, a)), port: (b[a]! << 8) | b[a + 1]! };
}

/** The compact form of an endpoint (6 or 18 bytes). */
export function encodeCompactAddress(e: Endpoint): Buffer {
  const ip = parseIp(e.host);
  if (ip === undefined) fail('UNENCODABLE', `${e.host} is not an IP address`);
  if (!Number.isInteger(e.port) || e.port < 0 || e.port > 65535) fail('UNENCODABLE', `port ${e.port} is out of range`);
  const out = Buffer.allocUnsafe(ip.length + 2);
  out.set(ip, 0);
  out.writeUInt16BE(e.port, ip.length);
  return out;
}

function decodeQuery(top: BencodeDict, t: Buffer, common: { version?: Buffer }): KrpcQuery {
  const qv = top.get('q');
  if (qv === undefined) fail('MISSING_KEY', 'query has no "q"', t);
  if (!isBytes(qv) || qv.length === 0 || qv.length > 64) fail('BAD_TYPE', 'query method is not a short byte string', t);
  const av = top.get('a');
  if (av === undefined) fail('MISSING_KEY', 'query has no "a"', t);
  if (!isDict(av)) fail('BAD_TYPE', 'query arguments are not a dictionary', t);
  const method = qv.toString('latin1');
  const a = new Reader(av, `${method} query`, t);
  const id = a.bytes('id', 20);
  const base = { y: 'q' as const, t, id, ro: new Reader(top, 'message', t).flag('ro'), ...common };
  switch (method) {
    case 'ping':
      return { ...base, q: 'ping' };
    case 'find_node':
      return { ...base, q: 'find_node', target: a.bytes('target', 20), ...optWant(a) };
    case 'get_peers':
      return { ...base, q: 'get_peers', infoHash: a.bytes('info_hash', 20), ...optWant(a) };
    case 'announce_peer': {
      const impliedPort = a.flag('implied_port');
      const port = impliedPort ? (a.optInt('port', 0, 65535) ?? 0) : a.int('port', 1, 65535);
      return { ...base, q: 'announce_peer', infoHash: a.bytes('info_hash', 20), port, impliedPort, token: a.bytes('token', undefined, 64) };
    }
    case 'get': {
      const seq = a.optInt('seq', 0, Number.MAX_SAFE_INTEGER);
      return { ...base, q: 'get', target: a.bytes('target', 20), ...(seq === undefined ? {} : { seq }), ...optWant(a) };
    }
    case 'put': {
      const token = a.bytes('token', undefined, 64);
      const value = a.itemValue('v', true)!;
      const k = a.optBytes('k', 32);
      const out: { -readonly [K in keyof Extract<QueryBody, { q: 'put' }>]: Extract<QueryBody, { q: 'put' }>[K] } = { q: 'put', token, value };
      if (k !== undefined) {
        out.k = k;
        out.sig = a.bytes('sig', 64);
        out.seq = a.int('seq', 0, Number.MAX_SAFE_INTEGER);
        const salt = a.optBytes('salt', undefined, MAX_SALT_BYTES);
        if (salt !== undefined && salt.length > 0) out.salt = salt;
        const cas = a.optInt('cas', 0, Number.MAX_SAFE_INTEGER);
        if (cas !== undefined) out.cas = cas;
      } else if (a.has('sig') || a.has('seq') || a.has('salt')) {
        fail('BAD_VALUE', 'put query has "sig", "seq" or "salt" without "k"', t);
      }
      return { ...base, ...out };
    }
    case 'sample_infohashes':
      return { ...base, q: 'sample_infohashes', target: a.bytes('target', 20), ...optWant(a) };
    default:
      return { ...base, q: 'unknown', method };
  }
}

function optWant(a: Reader): { want?: Want } {
  const want = a.want();
  return want === undefined ? {} : { want };
}

function decodeResponse(top: BencodeDict, t: Buffer, common: { version?: Buffer; ip?: Endpoint }): KrpcResponse {
  const rv = top.get('r');
  if (rv === undefined) fail('MISSING_KEY', 'response has no "r"');
  if (!isDict(rv)) fail('BAD_TYPE', 'response body is not a dictionary');
  const r = new Reader(rv, 'response', undefined);
  const out: { -readonly [K in keyof KrpcResponse]: KrpcResponse[K] } = { y: 'r', t, id: r.bytes('id', 20), ...common };
  const nodes = r.nodes('nodes', COMPACT_NODE_V4);
  if (nodes !== undefined) out.nodes = nodes;
  const nodes6 = r.nodes('nodes6', COMPACT_NODE_V6);
  if (nodes6 !== undefined) out.nodes6 = nodes6;
  const values = rv.get('values');
  if (values !== undefined) {
    if (!isList(values)) fail('BAD_TYPE', 'response "values" is not a list');
    if (values.length > MAX_VALUES) fail('BAD_LENGTH', `response "values" has ${values.length} entries, more than ${MAX_VALUES}`);
    for (const p of values) {
      if (!isBytes(p) || (p.length !== 6 && p.length !== 18)) fail('BAD_VALUE', 'response "values" holds an entry that is not a compact peer of 6 or 18 bytes');
    }
    out.values = values as Buffer[];
  }
  const token = r.optBytes('token', undefined, 64);
  if (token !== undefined) out.token = token;
  const value = r.itemValue('v', false);
  if (value !== undefined) out.value = value;
  const k = r.optBytes('k', 32);
  if (k !== undefined) out.k = k;
  const sig = r.optBytes('sig', 64);
  if (sig !== undefined) out.sig = sig;
  const seq = r.optInt('seq', 0, Number.MAX_SAFE_INTEGER);
  if (seq !== undefined) out.seq = seq;
  const samples = r.optBytes('samples');
  if (samples !== undefined) {
    if (samples.length % 20 !== 0) fail('BAD_LENGTH', `response "samples" of ${samples.length} bytes is not a multiple of 20`);
    out.samples = samples;
  }
  const interval = r.optInt('interval', 0, 21600);
  if (interval !== undefined) out.interval = interval;
  const num = r.optInt('num', 0, Number.MAX_SAFE_INTEGER);
  if (num !== undefined) out.num = num;
  return out;
}

function decodeErrorMessage(top: BencodeDict, t: Buffer, common: { version?: Buffer; ip?: Endpoint }): KrpcErrorMessage {
  const ev = top.get('e');
  if (ev === undefined) fail('MISSING_KEY', 'error message has no "e"');
  if (!isList(ev) || ev.length < 2) fail('BAD_TYPE', 'error "e" is not a list of a code and a message');
  const [code, message] = ev;
  if (typeof code !== 'number' || !Number.isInteger(code)) fail('BAD_TYPE', 'error code is not an integer');
  if (!isBytes(message)) fail('BAD_TYPE', 'error message is not a byte string');
  return { y: 'e', t, code, message: message.subarray(0, 256).toString('utf8'), ...common };
}

/**
 * Decodes one KRPC datagram; throws `KrpcError` on anything malformed.
 *
 * The common messages (ping, find_node, get_peers, announce_peer and get
 * queries; responses with node lists, tokens and peers) are read by a
 * single-pass scanner (`decodeKrpcFast`) that builds no intermediate
 * dictionaries. Anything it is not sure of (an unknown key, an error message,
 * any malformation) goes to the generic decoder, which gives the result or
 * the exact error, so the scanner only ever speeds up what would have decoded
 * anyway, to the same value.
 */
export function decodeKrpc(data: Uint8Array): KrpcMessage {
  return decodeKrpcFast(data) ?? decodeKrpcGeneric(data);
}

/** The generic decoder over bencode's `decode`: the reference `decodeKrpcFast` is tested against. */
export function decodeKrpcGeneric(data: Uint8Array): KrpcMessage {
  if (data.length > MAX_KRPC_BYTES) fail('TOO_LARGE', `datagram of ${data.length} bytes exceeds ${MAX_KRPC_BYTES}`);
  let top: BencodeValue;
  try {
    top = decode(data, { maxInputBytes: MAX_KRPC_BYTES, maxDepth: 16 });
  } catch (e) {
    if (e instanceof BencodeError) throw new KrpcError('BENCODE', e.message, undefined, e.offset);
    throw e;
  }
  if (!isDict(top)) fail('NOT_A_DICT', 'message is not a dictionary');
  const tv = top.get('t');
  if (tv === undefined) fail('MISSING_KEY', 'message has no transaction id "t"');
  if (!isBytes(tv) || tv.length === 0 || tv.length > MAX_TRANSACTION_ID_BYTES) fail('BAD_TYPE', 'transaction id is not a byte string of 1 to 32 bytes');
  const t = tv;
  const yv = top.get('y');
  // A query's id is known once "y" says it is one; before that, no answer is owed.
  const y = isBytes(yv) && yv.length === 1 ? yv.toString('latin1') : undefined;
  const tq = y === 'q' ? t : undefined;
  const version = top.get('v');
  if (version !== undefined && (!isBytes(version) || version.length > 16)) fail('BAD_TYPE', 'client version "v" is not a short byte string', tq);
  const common: { version?: Buffer; ip?: Endpoint } = version === undefined ? {} : { version };
  if (y === 'q') return decodeQuery(top, t, common);
  const ip = decodeIpField(top.get('ip'), t);
  if (ip !== undefined) common.ip = ip;
  if (y === 'r') return decodeResponse(top, t, common);
  if (y === 'e') return decodeErrorMessage(top, t, common);
  if (yv === undefined) fail('MISSING_KEY', 'message has no type "y"');
  return fail('UNKNOWN_TYPE', 'message type "y" is not q, r or e');
}

// ---------------------------------------------------------------- encoding

type Dict = { [key: string]: BencodeInput | undefined };

function wantList(w: Want | undefined): BencodeInput | undefined {
  if (w === undefined) return undefined;
  const out: string[] = [];
  if (w.n4) out.push('n4');
  if (w.n6) out.push('n6');
  return out;
}

/** Reads a BEP 44 value back into a bencode value for embedding (it was validated as bencode when built). */
function embedValue(raw: Buffer): BencodeInput {
  if (raw.length > MAX_ITEM_VALUE_BYTES) fail('UNENCODABLE', `item value of ${raw.length} bytes exceeds ${MAX_ITEM_VALUE_BYTES}`);
  try {
    return decode(raw, { maxInputBytes: MAX_ITEM_VALUE_BYTES }) as BencodeInput;
  } catch (e) {
    if (e instanceof BencodeError) throw new KrpcError('UNENCODABLE', `item value is not canonical bencode: ${e.message}`);
    throw e;
  }
}

function checkLen(name: string, b: Uint8Array | undefined, len: number): void {
  if (b !== undefined && b.length !== len) fail('UNENCODABLE', `${name} must have ${len} bytes, not ${b.length}`);
}

/**
 * The generic encoder: the message as a plain object through bencode's
 * `encode`. `encodeKrpc` writes the same bytes directly; this is the
 * reference it is tested against.
 */
export function encodeKrpcGeneric(m: KrpcMessage): Buffer {
  if (m.t.length === 0 || m.t.length > MAX_TRANSACTION_ID_BYTES) fail('UNENCODABLE', 'transaction id must have 1 to 32 bytes');
  const top: Dict = { t: m.t, y: m.y, v: m.version };
  if (m.y === 'q') {
    checkLen('id', m.id, 20);
    const a: Dict = { id: m.id };
    let q: string = m.q;
    switch (m.q) {
      case 'ping':
        break;
      case 'find_node':
        checkLen('target', m.target, 20);
        a.target = m.target;
        a.want = wantList(m.want);
        break;
      case 'get_peers':
        checkLen('info_hash', m.infoHash, 20);
        a.info_hash = m.infoHash;
        a.want = wantList(m.want);
        break;
      case 'announce_peer':
        checkLen('info_hash', m.infoHash, 20);
        a.info_hash = m.infoHash;
        a.port = m.port;
        a.token = m.token;
        if (m.impliedPort) a.implied_port = 1;
        break;
      case 'get':
        checkLen('target', m.target, 20);
        a.target = m.target;
        a.seq = m.seq;
        a.want = wantList(m.want);
        break;
      case 'put':
        checkLen('k', m.k, 32);
        checkLen('sig', m.sig, 64);
        if (m.salt !== undefined && m.salt.length > MAX_SALT_BYTES) fail('UNENCODABLE', `salt of ${m.salt.length} bytes exceeds ${MAX_SALT_BYTES}`);
        a.token = m.token;
        a.v = embedValue(m.value);
        a.k = m.k;
        a.sig = m.sig;
        a.seq = m.seq;
        a.salt = m.salt;
        a.cas = m.cas;
        break;
      case 'sample_infohashes':
        checkLen('target', m.target, 20);
        a.target = m.target;
        a.want = wantList(m.want);
        break;
      case 'unknown':
        q = m.method;
        break;
    }
    top.q = Buffer.from(q, 'latin1');
    top.a = a;
    if (m.ro) top.ro = 1;
  } else {
    if (m.ip !== undefined) top.ip = encodeCompactAddress(m.ip);
    if (m.y === 'r') {
      checkLen('id', m.id, 20);
      if (m.nodes !== undefined && m.nodes.length % COMPACT_NODE_V4 !== 0) fail('UNENCODABLE', 'nodes is not a multiple of 26 bytes');
      if (m.nodes6 !== undefined && m.nodes6.length % COMPACT_NODE_V6 !== 0) fail('UNENCODABLE', 'nodes6 is not a multiple of 38 bytes');
      top.r = {
        id: m.id,
        nodes: m.nodes,
        nodes6: m.nodes6,
        values: m.values,
        token: m.token,
        v: m.value === undefined ? undefined : embedValue(m.value),
        k: m.k,
        sig: m.sig,
        seq: m.seq,
        samples: m.samples,
        interval: m.interval,
        num: m.num,
      };
    } else {
      top.e = [m.code, m.message];
    }
  }
  try {
    const out = encode(top);
    if (out.length > MAX_KRPC_BYTES) fail('UNENCODABLE', `message of ${out.length} bytes exceeds ${MAX_KRPC_BYTES}`);
    return out;
  } catch (e) {
    if (e instanceof BencodeError) throw new KrpcError('UNENCODABLE', e.message);
    throw e;
  }
}

// ---------------------------------------------------------------- fast encoding

/*
 * `encodeKrpc` writes the message straight into a slab of its own,
 * dictionary keys in their (known, sorted) order, and hands out a view of
 * exactly the message's bytes. It gives byte for byte what
 * `encodeKrpcGeneric` gives, and throws the same KrpcError('UNENCODABLE')
 * where that one does (the property test in test/krpc.test.ts holds the two
 * together); a message that outgrows MAX_KRPC_BYTES fails as soon as it does.
 *
 * Messages are packed one after another into 64 KiB slabs, away from Node's
 * shared 8 KiB Buffer pool, so a DHT node's traffic neither churns that pool
 * nor lets a short-lived message pin a slab holding long-lived buffers. A
 * slab is freed once every message in it is (a kept message keeps its slab).
 */

const SLAB_BYTES = 64 * 1024;
let scratch = Buffer.allocUnsafeSlow(SLAB_BYTES);
/** Where the message being written starts in `scratch`. */
let wbase = 0;
/** Where the next byte goes in `scratch`. */
let wlen = 0;

function wReserve(n: number): void {
  // A message starts with at least MAX_KRPC_BYTES free in the slab, so within the limit it always fits.
  if (wlen + n - wbase > MAX_KRPC_BYTES) fail('UNENCODABLE', `message exceeds ${MAX_KRPC_BYTES} bytes`);
}

/** Writes a short ASCII constant (a key with its length prefix, a type letter). */
function wAscii(s: string): void {
  wReserve(s.length);
  const buf = scratch;
  let p = wlen;
  for (let i = 0; i < s.length; i++) buf[p++] = s.charCodeAt(i);
  wlen = p;
}

function wByte(c: number): void {
  wReserve(1);
  scratch[wlen++] = c;
}

/** A non-negative integer's decimal digits. */
function wDigits(n: number): void {
  if (n < 10) {
    wReserve(1);
    scratch[wlen++] = 0x30 + n;
    return;
  }
  if (n < 100) {
    wReserve(2);
    scratch[wlen++] = 0x30 + ((n / 10) | 0);
    scratch[wlen++] = 0x30 + (n % 10);
    return;
  }
  wAscii(String(n));
}

/** A byte string: length, colon, bytes. */
function wBytes(b: Uint8Array): void {
  const n = b.length;
  wDigits(n);
  wReserve(n + 1);
  scratch[wlen++] = 0x3a;
  if (n <= 32) {
    const buf = scratch;
    let p = wlen;
    for (let i = 0; i < n; i++) buf[p++] = b[i]!;
    wlen = p;
  } else {
    scratch.set(b, wlen);
    wlen += n;
  }
}

/** A bencoded integer (bencode's rule: a safe integer). */
function wInt(v: number): void {
  if (!Number.isSafeInteger(v)) fail('UNENCODABLE', `number ${v} is not a safe integer`);
  wByte(0x69);
  if (v < 0) {
    wByte(0x2d);
    wDigits(-v);
  } else wDigits(v === 0 ? 0 : v);
  wByte(0x65);
}

/** Raw, already canonical bencode (a BEP 44 value, checked like `embedValue` checks it). */
function wRawValue(raw: Buffer): void {
  embedValue(raw); // validates (size, canonical bencode) and throws what the generic encoder throws
  wReserve(raw.length);
  scratch.set(raw, wlen);
  wlen += raw.length;
}

function wWant(w: Want | undefined): void {
  if (w === undefined) return;
  wAscii('4:wantl');
  if (w.n4) wAscii('2:n4');
  if (w.n6) wAscii('2:n6');
  wByte(0x65);
}

/** The compact form of an endpoint, as a byte string (6 or 18 bytes). */
function wAddress(e: Endpoint): void {
  const ip = parseIp(e.host);
  if (ip === undefined) fail('UNENCODABLE', `${e.host} is not an IP address`);
  if (!Number.isInteger(e.port) || e.port < 0 || e.port > 65535) fail('UNENCODABLE', `port ${e.port} is out of range`);
  const n = ip.length + 2;
  wDigits(n);
  wReserve(n + 1);
  const buf = scratch;
  let p = wlen;
  buf[p++] = 0x3a;
  for (let i = 0; i < ip.length; i++) buf[p++] = ip[i]!;
  buf[p++] = e.port >> 8;
  buf[p++] = e.port & 0xff;
  wlen = p;
}

function wQueryArgs(m: KrpcQuery): void {
  // Keys in byte order: cas id implied_port info_hash k port salt seq sig target token v want.
  switch (m.q) {
    case 'ping':
      wAscii('2:id');
      wBytes(m.id);
      break;
    case 'find_node':
    case 'sample_infohashes':
      checkLen('target', m.target, 20);
      wAscii('2:id');
      wBytes(m.id);
      wAscii('6:target');
      wBytes(m.target);
      wWant(m.want);
      break;
    case 'get_peers':
      checkLen('info_hash', m.infoHash, 20);
      wAscii('2:id');
      wBytes(m.id);
      wAscii('9:info_hash');
      wBytes(m.infoHash);
      wWant(m.want);
      break;
    case 'announce_peer':
      checkLen('info_hash', m.infoHash, 20);
      wAscii('2:id');
      wBytes(m.id);
      if (m.impliedPort) wAscii('12:implied_porti1e');
      wAscii('9:info_hash');
      wBytes(m.infoHash);
      if (m.port !== undefined) {
        wAscii('4:port');
        wInt(m.port);
      }
      if (m.token !== undefined) {
        wAscii('5:token');
        wBytes(m.token);
      }
      break;
    case 'get':
      checkLen('target', m.target, 20);
      wAscii('2:id');
      wBytes(m.id);
      if (m.seq !== undefined) {
        wAscii('3:seq');
        wInt(m.seq);
      }
      wAscii('6:target');
      wBytes(m.target);
      wWant(m.want);
      break;
    case 'put':
      checkLen('k', m.k, 32);
      checkLen('sig', m.sig, 64);
      if (m.salt !== undefined && m.salt.length > MAX_SALT_BYTES) fail('UNENCODABLE', `salt of ${m.salt.length} bytes exceeds ${MAX_SALT_BYTES}`);
      if (m.cas !== undefined) {
        wAscii('3:cas');
        wInt(m.cas);
      }
      wAscii('2:id');
      wBytes(m.id);
      if (m.k !== undefined) {
        wAscii('1:k');
        wBytes(m.k);
      }
      if (m.salt !== undefined) {
        wAscii('4:salt');
        wBytes(m.salt);
      }
      if (m.seq !== undefined) {
        wAscii('3:seq');
        wInt(m.seq);
      }
      if (m.sig !== undefined) {
        wAscii('3:sig');
        wBytes(m.sig);
      }
      if (m.token !== undefined) {
        wAscii('5:token');
        wBytes(m.token);
      }
      wAscii('1:v');
      wRawValue(m.value);
      break;
    case 'unknown':
      wAscii('2:id');
      wBytes(m.id);
      break;
  }
}

function wResponseBody(m: KrpcResponse): void {
  // Keys in byte order: id interval k nodes nodes6 num samples seq sig token v values.
  wAscii('d2:id');
  wBytes(m.id);
  if (m.interval !== undefined) {
    wAscii('8:interval');
    wInt(m.interval);
  }
  if (m.k !== undefined) {
    wAscii('1:k');
    wBytes(m.k);
  }
  if (m.nodes !== undefined) {
    wAscii('5:nodes');
    wBytes(m.nodes);
  }
  if (m.nodes6 !== undefined) {
    wAscii('6:nodes6');
    wBytes(m.nodes6);
  }
  if (m.num !== undefined) {
    wAscii('3:num');
    wInt(m.num);
  }
  if (m.samples !== undefined) {
    wAscii('7:samples');
    wBytes(m.samples);
  }
  if (m.seq !== undefined) {
    wAscii('3:seq');
    wInt(m.seq);
  }
  if (m.sig !== undefined) {
    wAscii('3:sig');
    wBytes(m.sig);
  }
  if (m.token !== undefined) {
    wAscii('5:token');
    wBytes(m.token);
  }
  if (m.value !== undefined) {
    wAscii('1:v');
    wRawValue(m.value);
  }
  if (m.values !== undefined) {
    wAscii('6:valuesl');
    for (const v of m.values) wBytes(v);
    wByte(0x65);
  }
  wByte(0x65);
}

function wTail(m: KrpcMessage, y: string): void {
  // t, v, y close every message (keys after a, e, ip, q, r and ro).
  wAscii('1:t');
  wBytes(m.t);
  if (m.version !== undefined) {
    wAscii('1:v');
    wBytes(m.version);
  }
  wAscii(y);
}

/** Encodes a KRPC message (any of the decoded shapes). */
export function encodeKrpc(m: KrpcMessage): Buffer {
  if (m.t.length === 0 || m.t.length > MAX_TRANSACTION_ID_BYTES) fail('UNENCODABLE', 'transaction id must have 1 to 32 bytes');
  wlen = wbase;
  // Top-level keys in byte order: a e ip q r ro t v y.
  if (m.y === 'q') {
    checkLen('id', m.id, 20);
    wAscii('d1:ad');
    wQueryArgs(m);
    wAscii('e1:q');
    if (m.q === 'unknown') {
      const n = m.method.length;
      wDigits(n);
      wReserve(n + 1);
      scratch[wlen++] = 0x3a;
      wlen += scratch.write(m.method, wlen, 'latin1');
    } else wBytes(QUERY_NAMES[m.q]);
    if (m.ro) wAscii('2:roi1e');
    wTail(m, '1:y1:qe');
  } else if (m.y === 'r') {
    wByte(0x64);
    if (m.ip !== undefined) {
      wAscii('2:ip');
      wAddress(m.ip);
    }
    checkLen('id', m.id, 20);
    if (m.nodes !== undefined && m.nodes.length % COMPACT_NODE_V4 !== 0) fail('UNENCODABLE', 'nodes is not a multiple of 26 bytes');
    if (m.nodes6 !== undefined && m.nodes6.length % COMPACT_NODE_V6 !== 0) fail('UNENCODABLE', 'nodes6 is not a multiple of 38 bytes');
    wAscii('1:r');
    wResponseBody(m);
    wTail(m, '1:y1:re');
  } else {
    wAscii('d1:el');
    wInt(m.code);
    wBytes(Buffer.from(m.message, 'utf8'));
    wByte(0x65);
    if (m.ip !== undefined) {
      wAscii('2:ip');
      wAddress(m.ip);
    }
    wTail(m, '1:y1:ee');
  }
  const out = scratch.subarray(wbase, wlen);
  wbase = (wlen + 7) & ~7;
  if (SLAB_BYTES - wbase < MAX_KRPC_BYTES) {
    scratch = Buffer.allocUnsafeSlow(SLAB_BYTES);
    wbase = 0;
  }
  return out;
}

const QUERY_NAMES: Record<Exclude<QueryMethod, 'unknown'>, Buffer> = {
  ping: Buffer.from('ping'),
  find_node: Buffer.from('find_node'),
  get_peers: Buffer.from('get_peers'),
  announce_peer: Buffer.from('announce_peer'),
  get: Buffer.from('get'),
  put: Buffer.from('put'),
  sample_infohashes: Buffer.from('sample_infohashes'),
};

// ---------------------------------------------------------------- fast decoding

/*
 * `decodeKrpcFast` reads the common messages in one pass over the bytes,
 * checking canonical bencode as it goes (length prefixes without leading
 * zeros, integers without leading zeros, keys in strictly increasing order,
 * nothing after the message), and hands out views of the input like the
 * generic decoder does. It knows a fixed set of keys; on any other key, on
 * an error message, a BEP 44 put or value, and on anything malformed it
 * gives up (undefined) and the generic decoder takes over. So it never
 * accepts what the generic decoder refuses, and what it returns is what that
 * one would return (the property test in test/krpc.test.ts checks both).
 *
 * The scanner keeps its position in module state; it calls nothing that
 * could re-enter it.
 */

let rp = 0; // read position
let rs = 0; // start of the byte string just read

/** Reads a canonical byte string at `rp`: its length (its bytes start at `rs`), or -1. */
function rStr(buf: Buffer, end: number): number {
  let p = rp;
  if (p >= end) return -1;
  let c = buf[p]!;
  if (c === 0x30) {
    if (p + 1 >= end || buf[p + 1] !== 0x3a) return -1;
    rs = rp = p + 2;
    return 0;
  }
  let len = 0;
  const first = p;
  while (c >= 0x30 && c <= 0x39) {
    len = len * 10 + (c - 0x30);
    if (++p - first > 4) return -1; // a datagram is at most 4096 bytes
    if (p >= end) return -1;
    c = buf[p]!;
  }
  if (p === first || c !== 0x3a) return -1;
  p++;
  if (len > end - p) return -1;
  rs = p;
  rp = p + len;
  return len;
}

/** Reads a canonical non-negative integer of at most 15 digits at `rp`, or -1. */
function rInt(buf: Buffer, end: number): number {
  let p = rp;
  if (p + 2 >= end || buf[p] !== 0x69) return -1;
  p++;
  let c = buf[p]!;
  if (c === 0x30) {
    if (buf[p + 1] !== 0x65) return -1;
    rp = p + 2;
    return 0;
  }
  let n = 0;
  const first = p;
  while (c >= 0x30 && c <= 0x39) {
    n = n * 10 + (c - 0x30);
    if (++p - first > 15 || p >= end) return -1;
    c = buf[p]!;
  }
  if (p === first || c !== 0x65) return -1;
  rp = p + 1;
  return n;
}

/** Whether the `len` bytes at `at` spell `s` (ASCII). */
function spells(buf: Buffer, at: number, len: number, s: string): boolean {
  if (len !== s.length) return false;
  for (let i = 0; i < len; i++) if (buf[at + i] !== s.charCodeAt(i)) return false;
  return true;
}

// Fields found by the scanner: start offsets (-1: absent) and lengths of byte strings, integer values (-1: absent).
let fA = false;
let fR = false;
let fIp = -1;
let fIpLen = 0;
let fQ = -1;
let fQLen = 0;
let fRo = -1;
let fT = -1;
let fTLen = 0;
let fV = -1;
let fVLen = 0;
let fY = -1;
let fYLen = 0;
// Inside `a` or `r`.
let fId = -1;
let fIdLen = 0;
let fTarget = -1;
let fTargetLen = 0;
let fInfoHash = -1;
let fInfoHashLen = 0;
let fToken = -1;
let fTokenLen = 0;
let fPort = -1;
let fImplied = -1;
let fSeq = -1;
let fWant = false;
let fN4 = false;
let fN6 = false;
let fNodes = -1;
let fNodesLen = 0;
let fNodes6 = -1;
let fNodes6Len = 0;
let fValuesAt = -1;
let fValuesCount = 0;

/** The `want` list of a query: at most 8 byte strings. */
function rWant(buf: Buffer, end: number): boolean {
  rp++; // 'l'
  let count = 0;
  for (;;) {
    if (rp >= end) return false;
    if (buf[rp] === 0x65) break;
    if (++count > 8) return false;
    const n = rStr(buf, end);
    if (n < 0) return false;
    if (n === 2 && buf[rs] === 0x6e) {
      if (buf[rs + 1] === 0x34) fN4 = true;
      else if (buf[rs + 1] === 0x36) fN6 = true;
    }
  }
  rp++;
  fWant = true;
  return true;
}

/** The `values` list of a response: compact peers of 6 or 18 bytes, at most MAX_VALUES. */
function rValues(buf: Buffer, end: number): boolean {
  rp++; // 'l'
  fValuesAt = rp;
  let count = 0;
  for (;;) {
    if (rp >= end) return false;
    if (buf[rp] === 0x65) break;
    if (++count > MAX_VALUES) return false;
    const n = rStr(buf, end);
    if (n !== 6 && n !== 18) return false;
  }
  rp++;
  fValuesCount = count;
  return true;
}

/** The query arguments `a` or the response body `r` (one key set covers both; `inR` says which). */
function rBody(buf: Buffer, end: number, inR: boolean): boolean {
  rp++; // 'd'
  let rank = -1;
  for (;;) {
    if (rp >= end) return false;
    if (buf[rp] === 0x65) break;
    const klen = rStr(buf, end);
    if (klen < 0) return false;
    const k = rs;
    // Ranks follow the byte order of every key either dictionary may hold:
    // id implied_port info_hash nodes nodes6 port seq target token values want.
    let r: number;
    let n: number;
    switch (klen) {
      case 2:
        if (!spells(buf, k, 2, 'id')) return false;
        r = 0;
        n = rStr(buf, end);
        if (n < 0) return false;
        fId = rs;
        fIdLen = n;
        break;
      case 3:
        if (inR || !spells(buf, k, 3, 'seq')) return false;
        r = 6;
        fSeq = rInt(buf, end);
        if (fSeq < 0) return false;
        break;
      case 4:
        if (!inR && spells(buf, k, 4, 'port')) {
          r = 5;
          fPort = rInt(buf, end);
          if (fPort < 0) return false;
        } else if (!inR && spells(buf, k, 4, 'want')) {
          r = 10;
          if (rp >= end || buf[rp] !== 0x6c || !rWant(buf, end)) return false;
        } else return false;
        break;
      case 5:
        if (spells(buf, k, 5, 'token')) {
          r = 8;
          n = rStr(buf, end);
          if (n < 0) return false;
          fToken = rs;
          fTokenLen = n;
        } else if (inR && spells(buf, k, 5, 'nodes')) {
          r = 3;
          n = rStr(buf, end);
          if (n < 0) return false;
          fNodes = rs;
          fNodesLen = n;
        } else return false;
        break;
      case 6:
        if (!inR && spells(buf, k, 6, 'target')) {
          r = 7;
          n = rStr(buf, end);
          if (n < 0) return false;
          fTarget = rs;
          fTargetLen = n;
        } else if (inR && spells(buf, k, 6, 'nodes6')) {
          r = 4;
          n = rStr(buf, end);
          if (n < 0) return false;
          fNodes6 = rs;
          fNodes6Len = n;
        } else if (inR && spells(buf, k, 6, 'values')) {
          r = 9;
          if (rp >= end || buf[rp] !== 0x6c || !rValues(buf, end)) return false;
        } else return false;
        break;
      case 9:
        if (inR || !spells(buf, k, 9, 'info_hash')) return false;
        r = 2;
        n = rStr(buf, end);
        if (n < 0) return false;
        fInfoHash = rs;
        fInfoHashLen = n;
        break;
      case 12:
        if (inR || !spells(buf, k, 12, 'implied_port')) return false;
        r = 1;
        fImplied = rInt(buf, end);
        if (fImplied < 0) return false;
        break;
      default:
        return false;
    }
    if (r <= rank) return false;
    rank = r;
  }
  rp++;
  return true;
}

function resetFields(): void {
  fA = fR = false;
  fIp = fQ = fRo = fT = fV = fY = -1;
  fId = fTarget = fInfoHash = fToken = fPort = fImplied = fSeq = -1;
  fWant = fN4 = fN6 = false;
  fNodes = fNodes6 = fValuesAt = -1;
}

/** Scans the top-level dictionary; false if anything is not as the fast path expects. */
function rMessage(buf: Buffer): boolean {
  const end = buf.length;
  resetFields();
  if (end < 2 || buf[0] !== 0x64) return false;
  rp = 1;
  let rank = -1;
  for (;;) {
    if (rp >= end) return false;
    if (buf[rp] === 0x65) break;
    const klen = rStr(buf, end);
    if (klen < 0) return false;
    const k0 = buf[rs]!;
    // Ranks follow the byte order of the top-level keys: a ip q r ro t v y ('e' is left to the generic decoder).
    let r: number;
    let n: number;
    if (klen === 1) {
      switch (k0) {
        case 0x61: // a
          r = 0;
          if (rp >= end || buf[rp] !== 0x64 || !rBody(buf, end, false)) return false;
          fA = true;
          break;
        case 0x71: // q
          r = 2;
          n = rStr(buf, end);
          if (n < 0) return false;
          fQ = rs;
          fQLen = n;
          break;
        case 0x72: // r
          r = 3;
          if (rp >= end || buf[rp] !== 0x64 || !rBody(buf, end, true)) return false;
          fR = true;
          break;
        case 0x74: // t
          r = 5;
          n = rStr(buf, end);
          if (n < 0) return false;
          fT = rs;
          fTLen = n;
          break;
        case 0x76: // v
          r = 6;
          n = rStr(buf, end);
          if (n < 0) return false;
          fV = rs;
          fVLen = n;
          break;
        case 0x79: // y
          r = 7;
          n = rStr(buf, end);
          if (n < 0) return false;
          fY = rs;
          fYLen = n;
          break;
        default:
          return false;
      }
    } else if (klen === 2 && k0 === 0x69 && buf[rs + 1] === 0x70) {
      r = 1; // ip
      n = rStr(buf, end);
      if (n < 0) return false;
      fIp = rs;
      fIpLen = n;
    } else if (klen === 2 && k0 === 0x72 && buf[rs + 1] === 0x6f) {
      r = 4; // ro
      fRo = rInt(buf, end);
      if (fRo < 0) return false;
    } else return false;
    if (r <= rank) return false;
    rank = r;
  }
  return rp + 1 === end;
}

/**
 * The fast path of `decodeKrpc`: the message, or undefined when it is not
 * one of the common shapes (or not valid); see above. Exported for tests.
 */
export function decodeKrpcFast(data: Uint8Array): KrpcMessage | undefined {
  if (data.length > MAX_KRPC_BYTES) return undefined;
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (!rMessage(buf)) return undefined;
  if (fT < 0 || fTLen === 0 || fTLen > MAX_TRANSACTION_ID_BYTES || fY < 0 || fYLen !== 1) return undefined;
  if (fV >= 0 && fVLen > 16) return undefined;
  if (fId < 0 || fIdLen !== 20) return undefined;
  const t = buf.subarray(fT, fT + fTLen);
  const id = buf.subarray(fId, fId + 20);
  const y = buf[fY];
  if (y === 0x71) {
    // A query: `ip` is ignored (as the generic decoder does), `r` must not be there.
    if (!fA || fR || fQ < 0 || fQLen === 0 || fRo > 1 || fNodes >= 0 || fNodes6 >= 0 || fValuesAt >= 0) return undefined;
    const ro = fRo === 1;
    const version = fV >= 0 ? buf.subarray(fV, fV + fVLen) : undefined;
    const want: Want | undefined = fWant ? { n4: fN4, n6: fN6 } : undefined;
    let m: Record<string, unknown>;
    if (spells(buf, fQ, fQLen, 'find_node')) {
      if (fTargetLen !== 20 || fTarget < 0) return undefined;
      m = { y: 'q', t, id, ro, q: 'find_node', target: buf.subarray(fTarget, fTarget + 20) };
      if (want !== undefined) m.want = want;
    } else if (spells(buf, fQ, fQLen, 'ping')) {
      m = { y: 'q', t, id, ro, q: 'ping' };
    } else if (spells(buf, fQ, fQLen, 'get_peers')) {
      if (fInfoHashLen !== 20 || fInfoHash < 0) return undefined;
      m = { y: 'q', t, id, ro, q: 'get_peers', infoHash: buf.subarray(fInfoHash, fInfoHash + 20) };
      if (want !== undefined) m.want = want;
    } else if (spells(buf, fQ, fQLen, 'announce_peer')) {
      if (fImplied > 1 || fInfoHash < 0 || fInfoHashLen !== 20 || fToken < 0 || fTokenLen > 64) return undefined;
      const impliedPort = fImplied === 1;
      let port: number;
      if (impliedPort) {
        if (fPort > 65535) return undefined;
        port = fPort < 0 ? 0 : fPort;
      } else {
        if (fPort < 1 || fPort > 65535) return undefined;
        port = fPort;
      }
      m = { y: 'q', t, id, ro, q: 'announce_peer', infoHash: buf.subarray(fInfoHash, fInfoHash + 20), port, impliedPort, token: buf.subarray(fToken, fToken + fTokenLen) };
    } else if (spells(buf, fQ, fQLen, 'get')) {
      if (fTargetLen !== 20 || fTarget < 0 || fSeq > Number.MAX_SAFE_INTEGER) return undefined;
      m = { y: 'q', t, id, ro, q: 'get', target: buf.subarray(fTarget, fTarget + 20) };
      if (fSeq >= 0) m.seq = fSeq;
      if (want !== undefined) m.want = want;
    } else return undefined;
    if (version !== undefined) m.version = version;
    return m as unknown as KrpcMessage;
  }
  if (y === 0x72) {
    // A response: only `r` and the envelope.
    if (!fR || fA || fQ >= 0 || fRo >= 0) return undefined;
    if (fIp >= 0 && fIpLen !== 6 && fIpLen !== 18) return undefined;
    if (fNodes >= 0 && fNodesLen % COMPACT_NODE_V4 !== 0) return undefined;
    if (fNodes6 >= 0 && fNodes6Len % COMPACT_NODE_V6 !== 0) return undefined;
    if (fToken >= 0 && fTokenLen > 64) return undefined;
    const m: { -readonly [K in keyof KrpcResponse]?: unknown } = { y: 'r', t, id };
    if (fV >= 0) m.version = buf.subarray(fV, fV + fVLen);
    if (fIp >= 0) m.ip = decodeCompactAddress(buf.subarray(fIp, fIp + fIpLen));
    if (fNodes >= 0) m.nodes = buf.subarray(fNodes, fNodes + fNodesLen);
    if (fNodes6 >= 0) m.nodes6 = buf.subarray(fNodes6, fNodes6 + fNodes6Len);
    if (fValuesAt >= 0) {
      const values: Buffer[] = [];
      rp = fValuesAt;
      for (let i = 0; i < fValuesCount; i++) {
        const n = rStr(buf, buf.length);
        values.push(buf.subarray(rs, rs + n));
      }
      m.values = values;
    }
    if (fToken >= 0) m.token = buf.subarray(fToken, fToken + fTokenLen);
    return m as KrpcMessage;
  }
  return undefined;
}

/** The entries of a validated `nodes` (family 4) or `nodes6` (family 6) list. */
export function splitNodes(bytes: Uint8Array, family: 4 | 6): CompactNode[] {
  try {
    return decodeCompactNodes(bytes, family);
  } catch (e) {
    if (e instanceof CodecError) throw new KrpcError('BAD_LENGTH', e.message);
    throw e;
  }
}

/** Decodes a `values` entry. */
export function decodePeer(b: Uint8Array): Endpoint {
  return decodeCompactAddress(b);
}
