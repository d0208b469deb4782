/**
 * Payloads carried in BEP 10 `extended` messages: the extension handshake
 * (BEP 10), ut_metadata (BEP 9) and ut_pex (BEP 11).
 *
 * These functions work on the payload after the extended message id byte;
 * wrap the result with `encodeMessage({ type: 'extended', id, payload })`
 * from peer-wire.ts (id 0 for the handshake, the peer's advertised id for
 * the others).
 *
 * Policies, chosen so a hostile peer can neither crash nor bloat us:
 *   - Extension handshake: the payload must be a bencoded dictionary no
 *     larger than 64 KiB, and `m`, if present, must be a dictionary
 *     (ExtensionError otherwise). Any other known key with the wrong type or
 *     an out-of-range value is left out of the result (and its name listed in
 *     `invalid`) rather than failing the handshake: a cosmetic field such as
 *     `v` should not cost a connection. Entries of `m` whose value is not an
 *     integer 0..255 are likewise left out (listed as `m.<name>`). A value 0
 *     is kept: it means "disabled", and since later handshakes are additive
 *     the session needs to see it.
 *   - ut_metadata: strict. Metadata sizes above `maxMetadataSize` (default
 *     16 MiB) are refused; a data message's piece must be exactly 16 KiB,
 *     except the last piece which must be exactly what remains. Unknown
 *     msg_type values decode to `{ msgType: 'unknown' }`, because BEP 9 says
 *     they MUST be ignored.
 *   - ut_pex: keys of the wrong type or compact lists of the wrong length are
 *     an error (the caller just drops the message); payloads over 64 KiB are
 *     refused; each list is truncated to `maxPeers` entries (default 200,
 *     BEP 11 asks for at most 50 after the first message) and `truncated`
 *     says so, since PEX is advisory and the first peers are still useful.
 */
import type { Endpoint } from '../runtime/contract.js';
import { decode, decodePrefix, encode, isBytes, isDict, isInteger, BencodeError, type BencodeDict, type BencodeInput, type BencodeValue } from './bencode.js';
import { CompactError, decodeCompactPeers, encodeCompactPeers, type AddressFamily } from './compact.js';
import { CodecError } from './errors.js';
import { formatIp, parseIp } from './ip.js';

export type ExtensionErrorCode =
  /** The payload is not valid bencode. */
  | 'NOT_BENCODE'
  /** The payload is bencode but not a dictionary. */
  | 'NOT_A_DICT'
  | 'MISSING_FIELD'
  | 'WRONG_TYPE'
  | 'BAD_VALUE'
  /** Bytes after the dictionary where none belong. */
  | 'TRAILING_DATA'
  /** A ut_metadata data piece of the wrong size for its index. */
  | 'BAD_PIECE_SIZE'
  /** A payload or declared size above the limit. */
  | 'TOO_LARGE'
  /** An encoder was given a value it cannot represent. */
  | 'BAD_ARGUMENT';

export class ExtensionError extends CodecError {
  declare readonly code: ExtensionErrorCode;
  constructor(code: ExtensionErrorCode, message: string, offset?: number, options?: { cause?: unknown }) {
    super('extension', code, message, offset);
    this.name = 'ExtensionError';
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}

/** Names of the extensions peerkit speaks, as they appear in `m`. */
export const UT_METADATA = 'ut_metadata';
export const UT_PEX = 'ut_pex';

/** The extended message id of the extension handshake. */
export const EXT_HANDSHAKE_ID = 0;

const utf8 = new TextDecoder('utf-8', { fatal: false });

function decodeDict(payload: Uint8Array, maxBytes: number, what: string): BencodeDict {
  if (payload.length > maxBytes) throw new ExtensionError('TOO_LARGE', `${what} of ${payload.length} bytes exceeds the limit of ${maxBytes}`);
  let v: BencodeValue;
  try {
    v = decode(payload, { maxInputBytes: maxBytes, maxDepth: 32, allowUnsortedKeys: true });
  } catch (e) {
    if (e instanceof BencodeError) throw new ExtensionError('NOT_BENCODE', `${what}: ${e.message}`, e.offset, { cause: e });
    throw e;
  }
  if (!isDict(v)) throw new ExtensionError('NOT_A_DICT', `${what} is not a dictionary`, 0);
  return v;
}

/** A safe integer in min..max, or undefined. */
function intIn(v: BencodeValue | undefined, min: number, max: number): number | undefined {
  return typeof v === 'number' && v >= min && v <= max ? v : undefined;
}

// ---------------------------------------------------------------- BEP 10 handshake

export interface ExtHandshakeFields {
  /** Extension name -> the id the peer must use to send it to us; 0 disables it. */
  readonly m: Readonly<Record<string, number>> | ReadonlyMap<string, number>;
  /** Client name and version. */
  readonly v?: string;
  /** Our TCP listen port. */
  readonly p?: number;
  /** How many outstanding requests we accept. */
  readonly reqq?: number;
  /** BEP 9 `metadata_size`: the length of the info dictionary. */
  readonly metadataSize?: number;
  /** The address we see the peer at (4 or 16 bytes, or text). */
  readonly yourip?: string | Uint8Array;
  /** Our IPv4 address, for the peer to connect back to. */
  readonly ipv4?: string | Uint8Array;
  /** Our IPv6 address, for the peer to connect back to. */
  readonly ipv6?: string | Uint8Array;
  /** `e`: we prefer encrypted connections (MSE). */
  readonly e?: boolean;
  /** BEP 21 `upload_only`: we are a seed or only upload. */
  readonly uploadOnly?: boolean;
  /** More top-level keys, encoded as given (they must not clash with the ones above). */
  readonly extra?: Readonly<Record<string, BencodeInput>>;
}

export interface ExtHandshake {
  /** Extension name -> id for sending it to this peer; 0 = disabled. Binary (latin1) names. */
  readonly m: ReadonlyMap<string, number>;
  readonly v: string | undefined;
  readonly p: number | undefined;
  readonly reqq: number | undefined;
  readonly metadataSize: number | undefined;
  /** Our address as the peer sees it, as text. */
  readonly yourip: string | undefined;
  readonly ipv4: string | undefined;
  readonly ipv6: string | undefined;
  readonly e: boolean | undefined;
  readonly uploadOnly: boolean | undefined;
  /** Known keys left out because of a wrong type or value (`m.<name>` for entries of m). */
  readonly invalid: readonly string[];
  /** The whole decoded dictionary, for keys this codec does not know. */
  readonly raw: BencodeDict;
}

export interface ExtHandshakeLimits {
  /** Largest payload accepted. Default 64 KiB. */
  maxBytes?: number;
  /** Largest metadata_size kept. Default 16 MiB (see METADATA_MAX_SIZE). */
  maxMetadataSize?: number;
}

export const EXT_HANDSHAKE_MAX_BYTES = 64 * 1024;
const MAX_CLIENT_NAME = 256;
const MAX_REQQ = 0x7fffffff;

function ipBytes(v: string | Uint8Array, what: string, sizes: readonly number[]): Uint8Array {
  const b = typeof v === 'string' ? parseIp(v) : v;
  if (!b || !sizes.includes(b.length)) throw new ExtensionError('BAD_ARGUMENT', `${what} ${typeof v === 'string' ? JSON.stringify(v) : `of ${v.length} bytes`} is not a valid address here`);
  return b;
}

function checkExtId(name: string, id: number): number {
  if (!Number.isInteger(id) || id < 0 || id > 255) throw new ExtensionError('BAD_ARGUMENT', `extension ${JSON.stringify(name)} has id ${id}, not 0..255`);
  return id;
}

/** Encodes the extension handshake payload (send it as extended message id 0). */
export function encodeExtHandshake(h: ExtHandshakeFields): Buffer {
  const m = new Map<string, number>();
  const entries = h.m instanceof Map ? [...(h.m as ReadonlyMap<string, number>)] : Object.entries(h.m as Readonly<Record<string, number>>);
  for (const [name, id] of entries) m.set(name, checkExtId(name, id));
  const out: Record<string, BencodeInput | undefined> = { ...h.extra };
  out.m = m;
  if (h.v !== undefined) out.v = h.v;
  if (h.p !== undefined) {
    if (!Number.isInteger(h.p) || h.p < 1 || h.p > 65535) throw new ExtensionError('BAD_ARGUMENT', `port ${h.p} is out of range`);
    out.p = h.p;
  }
  if (h.reqq !== undefined) {
    if (!Number.isInteger(h.reqq) || h.reqq < 1 || h.reqq > MAX_REQQ) throw new ExtensionError('BAD_ARGUMENT', `reqq ${h.reqq} is out of range`);
    out.reqq = h.reqq;
  }
  if (h.metadataSize !== undefined) {
    if (!Number.isSafeInteger(h.metadataSize) || h.metadataSize < 1) throw new ExtensionError('BAD_ARGUMENT', `metadata size ${h.metadataSize} is not a positive integer`);
    out.metadata_size = h.metadataSize;
  }
  if (h.yourip !== undefined) out.yourip = ipBytes(h.yourip, 'yourip', [4, 16]);
  if (h.ipv4 !== undefined) out.ipv4 = ipBytes(h.ipv4, 'ipv4', [4]);
  if (h.ipv6 !== undefined) out.ipv6 = ipBytes(h.ipv6, 'ipv6', [16]);
  if (h.e !== undefined) out.e = h.e ? 1 : 0;
  if (h.uploadOnly !== undefined) out.upload_only = h.uploadOnly ? 1 : 0;
  return encode(out);
}

/** Decodes an extension handshake payload; see the policy at the top of this file. */
export function decodeExtHandshake(payload: Uint8Array, limits: ExtHandshakeLimits = {}): ExtHandshake {
  const dict = decodeDict(payload, limits.maxBytes ?? EXT_HANDSHAKE_MAX_BYTES, 'extension handshake');
  const maxMeta = limits.maxMetadataSize ?? METADATA_MAX_SIZE;
  const invalid: string[] = [];
  const m = new Map<string, number>();
  const mv = dict.get('m');
  if (mv !== undefined) {
    if (!isDict(mv)) throw new ExtensionError('WRONG_TYPE', 'extension handshake key "m" is not a dictionary');
    for (const [name, id] of mv) {
      const n = intIn(id, 0, 255);
      if (n === undefined) invalid.push(`m.${name}`);
      else m.set(name, n);
    }
  }
  const known = <T>(key: string, read: (v: BencodeValue) => T | undefined): T | undefined => {
    const v = dict.get(key);
    if (v === undefined) return undefined;
    const r = read(v);
    if (r === undefined) invalid.push(key);
    return r;
  };
  const ip = (sizes: readonly number[]) => (v: BencodeValue) => (isBytes(v) && sizes.includes(v.length) ? formatIp(v) : undefined);
  const flag = (v: BencodeValue) => (v === 0 ? false : v === 1 ? true : undefined);
  return {
    m,
    v: known('v', (v) => (isBytes(v) && v.length <= MAX_CLIENT_NAME ? utf8.decode(v) : undefined)),
    p: known('p', (v) => intIn(v, 1, 65535)),
    reqq: known('reqq', (v) => intIn(v, 1, MAX_REQQ)),
    metadataSize: known('metadata_size', (v) => intIn(v, 1, maxMeta)),
    yourip: known('yourip', ip([4, 16])),
    ipv4: known('ipv4', ip([4])),
    ipv6: known('ipv6', ip([16])),
    e: known('e', flag),
    uploadOnly: known('upload_only', flag),
    invalid,
    raw: dict,
  };
}

// ---------------------------------------------------------------- BEP 9 ut_metadata

export const METADATA_PIECE_SIZE = 16384;
/** Default largest metadata (info dictionary) accepted: 16 MiB, about 800,000 pieces' hashes. */
export const METADATA_MAX_SIZE = 16 * 1024 * 1024;
/** Room for the bencoded header in front of a data piece. */
const METADATA_HEADER_MAX = 1024;

export type MetadataMessage =
  | { readonly msgType: 'request'; readonly piece: number }
  | { readonly msgType: 'data'; readonly piece: number; readonly totalSize: number; readonly data: Buffer }
  | { readonly msgType: 'reject'; readonly piece: number }
  /** A msg_type this codec does not know: BEP 9 says to ignore it. */
  | { readonly msgType: 'unknown'; readonly type: number; readonly piece: number | undefined };

export interface MetadataMessageInput {
  readonly msgType: 'request' | 'data' | 'reject';
  readonly piece: number;
  /** Required for data. */
  readonly totalSize?: number;
  /** Required for data. */
  readonly data?: Uint8Array;
}

export interface MetadataLimits {
  /** Largest total_size accepted. Default METADATA_MAX_SIZE (16 MiB). */
  maxMetadataSize?: number;
}

const MSG_TYPE = { request: 0, data: 1, reject: 2 } as const;

/** Number of 16 KiB pieces metadata of `totalSize` bytes is sent in. */
export function metadataPieceCount(totalSize: number): number {
  return Math.ceil(totalSize / METADATA_PIECE_SIZE);
}

/** The exact size of piece `piece` of metadata of `totalSize` bytes, or 0 if there is no such piece. */
export function metadataPieceLength(totalSize: number, piece: number): number {
  const start = piece * METADATA_PIECE_SIZE;
  if (!Number.isInteger(piece) || piece < 0 || start >= totalSize) return 0;
  return Math.min(METADATA_PIECE_SIZE, totalSize - start);
}

function checkPieceData(piece: number, totalSize: number, dataLength: number, fail: (code: ExtensionErrorCode, msg: string) => never): void {
  const expected = metadataPieceLength(totalSize, piece);
  if (expected === 0) fail('BAD_VALUE', `piece ${piece} is past the end of ${totalSize} bytes of metadata`);
  if (dataLength !== expected) fail('BAD_PIECE_SIZE', `metadata piece ${piece} of ${totalSize} bytes must hold ${expected} bytes, not ${dataLength}`);
}

export function encodeMetadataMessage(msg: MetadataMessageInput, limits: MetadataLimits = {}): Buffer {
  const fail = (code: ExtensionErrorCode, text: string): never => {
    throw new ExtensionError(code === 'BAD_PIECE_SIZE' ? code : 'BAD_ARGUMENT', text);
  };
  const type = MSG_TYPE[msg.msgType];
  if (type === undefined) fail('BAD_ARGUMENT', `unknown msg_type ${JSON.stringify(msg.msgType)}`);
  const maxMeta = limits.maxMetadataSize ?? METADATA_MAX_SIZE;
  if (!Number.isInteger(msg.piece) || msg.piece < 0 || msg.piece >= metadataPieceCount(maxMeta)) fail('BAD_ARGUMENT', `piece ${msg.piece} is out of range`);
  if (msg.msgType !== 'data') return encode({ msg_type: type, piece: msg.piece });
  const { totalSize, data } = msg;
  if (totalSize === undefined || data === undefined) return fail('BAD_ARGUMENT', 'a data message needs totalSize and data');
  if (!Number.isSafeInteger(totalSize) || totalSize < 1 || totalSize > maxMeta) fail('BAD_ARGUMENT', `total size ${totalSize} is out of range`);
  checkPieceData(msg.piece, totalSize, data.length, fail);
  const head = encode({ msg_type: type, piece: msg.piece, total_size: totalSize });
  const out = Buffer.allocUnsafe(head.length + data.length);
  head.copy(out, 0);
  out.set(data, head.length);
  return out;
}

/**
 * Decodes a ut_metadata payload: a bencoded dictionary, followed for data
 * messages by the raw piece (`data` is a view of the input).
 */
export function decodeMetadataMessage(payload: Uint8Array, limits: MetadataLimits = {}): MetadataMessage {
  const maxMeta = limits.maxMetadataSize ?? METADATA_MAX_SIZE;
  const max = METADATA_PIECE_SIZE + METADATA_HEADER_MAX;
  if (payload.length > max) throw new ExtensionError('TOO_LARGE', `ut_metadata payload of ${payload.length} bytes exceeds the limit of ${max}`);
  let value: BencodeValue;
  let end: number;
  try {
    ({ value, end } = decodePrefix(payload, { maxDepth: 8, allowUnsortedKeys: true }));
  } catch (e) {
    if (e instanceof BencodeError) throw new ExtensionError('NOT_BENCODE', `ut_metadata: ${e.message}`, e.offset, { cause: e });
    throw e;
  }
  if (!isDict(value)) throw new ExtensionError('NOT_A_DICT', 'ut_metadata message is not a dictionary', 0);
  const int = (key: string, min: number, maxv: number, required: boolean): number | undefined => {
    const v = value.get(key);
    if (v === undefined) {
      if (required) throw new ExtensionError('MISSING_FIELD', `ut_metadata message has no ${key}`);
      return undefined;
    }
    if (!isInteger(v)) throw new ExtensionError('WRONG_TYPE', `ut_metadata ${key} is not an integer`);
    if (typeof v === 'bigint' || v < min || v > maxv) throw new ExtensionError('BAD_VALUE', `ut_metadata ${key} ${String(v)} is outside ${min}..${maxv}`);
    return v;
  };
  const msgType = value.get('msg_type');
  if (msgType === undefined) throw new ExtensionError('MISSING_FIELD', 'ut_metadata message has no msg_type');
  if (!isInteger(msgType)) throw new ExtensionError('WRONG_TYPE', 'ut_metadata msg_type is not an integer');
  const maxPiece = metadataPieceCount(maxMeta) - 1;
  if (msgType !== MSG_TYPE.request && msgType !== MSG_TYPE.data && msgType !== MSG_TYPE.reject) {
    const piece = value.get('piece');
    return {
      msgType: 'unknown',
      type: typeof msgType === 'number' ? msgType : Number(msgType),
      piece: typeof piece === 'number' && piece >= 0 && piece <= maxPiece ? piece : undefined,
    };
  }
  const piece = int('piece', 0, maxPiece, true)!;
  if (msgType !== MSG_TYPE.data) {
    if (end !== payload.length) throw new ExtensionError('TRAILING_DATA', `${payload.length - end} bytes after a ut_metadata ${msgType === MSG_TYPE.request ? 'request' : 'reject'}`, end);
    return { msgType: msgType === MSG_TYPE.request ? 'request' : 'reject', piece };
  }
  const totalSize = int('total_size', 1, maxMeta, true)!;
  const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  const data = buf.subarray(end);
  checkPieceData(piece, totalSize, data.length, (code, text) => {
    throw new ExtensionError(code, text, end);
  });
  return { msgType: 'data', piece, totalSize, data };
}

// ---------------------------------------------------------------- BEP 11 ut_pex

/** BEP 11 per-peer flags (added.f / added6.f). */
export const PexFlags = {
  /** Prefers encryption (the `e` field of its extension handshake). */
  preferEncryption: 0x01,
  /** Seed or upload-only. */
  seed: 0x02,
  /** Supports uTP. */
  utp: 0x04,
  /** Announced ut_holepunch support. */
  holepunch: 0x08,
  /** We reached it with an outgoing connection: it accepts connections. */
  reachable: 0x10,
} as const;

export interface PexFields {
  readonly added: readonly Endpoint[];
  /** One flags byte per added peer. Default: none sent. */
  readonly addedFlags?: readonly number[];
  readonly dropped: readonly Endpoint[];
  readonly added6?: readonly Endpoint[];
  readonly added6Flags?: readonly number[];
  readonly dropped6?: readonly Endpoint[];
}

export interface Pex {
  readonly added: Endpoint[];
  /** Same length as `added`; 0 where the peer sent no flags. */
  readonly addedFlags: number[];
  readonly dropped: Endpoint[];
  readonly added6: Endpoint[];
  readonly added6Flags: number[];
  readonly dropped6: Endpoint[];
  /** True when some list held more than `maxPeers` entries and was cut. */
  readonly truncated: boolean;
}

export interface PexLimits {
  /** Most entries kept from each of the four lists. Default 200. */
  maxPeers?: number;
  /** Largest payload accepted. Default 64 KiB. */
  maxBytes?: number;
}

export const PEX_MAX_PEERS = 200;
export const PEX_MAX_BYTES = 64 * 1024;

function flagBytes(flags: readonly number[] | undefined, count: number, what: string): Buffer | undefined {
  if (flags === undefined) return undefined;
  if (flags.length !== count) throw new ExtensionError('BAD_ARGUMENT', `${what} has ${flags.length} entries for ${count} peers`);
  const out = Buffer.alloc(count);
  flags.forEach((f, i) => {
    if (!Number.isInteger(f) || f < 0 || f > 255) throw new ExtensionError('BAD_ARGUMENT', `${what}[${i}] = ${f} is not a byte`);
    out[i] = f;
  });
  return out;
}

/**
 * Encodes a ut_pex payload. `added` and `dropped` are always written (empty
 * when there is nothing), the IPv6 lists only when not empty. Peers of the
 * wrong family or with a bad port throw CompactError.
 */
export function encodePex(p: PexFields): Buffer {
  const added6 = p.added6 ?? [];
  const dropped6 = p.dropped6 ?? [];
  const out: Record<string, BencodeInput | undefined> = {
    added: encodeCompactPeers(p.added, 4),
    'added.f': flagBytes(p.addedFlags, p.added.length, 'addedFlags'),
    dropped: encodeCompactPeers(p.dropped, 4),
  };
  if (added6.length > 0) {
    out.added6 = encodeCompactPeers(added6, 6);
    out['added6.f'] = flagBytes(p.added6Flags, added6.length, 'added6Flags');
  } else if (p.added6Flags !== undefined && p.added6Flags.length > 0) {
    throw new ExtensionError('BAD_ARGUMENT', `added6Flags has ${p.added6Flags.length} entries for 0 peers`);
  }
  if (dropped6.length > 0) out.dropped6 = encodeCompactPeers(dropped6, 6);
  return encode(out);
}

/** Decodes a ut_pex payload; see the policy at the top of this file. */
export function decodePex(payload: Uint8Array, limits: PexLimits = {}): Pex {
  const dict = decodeDict(payload, limits.maxBytes ?? PEX_MAX_BYTES, 'ut_pex message');
  const maxPeers = limits.maxPeers ?? PEX_MAX_PEERS;
  let truncated = false;
  const bytes = (key: string): Buffer | undefined => {
    const v = dict.get(key);
    if (v === undefined) return undefined;
    if (!isBytes(v)) throw new ExtensionError('WRONG_TYPE', `ut_pex ${key} is not a byte string`);
    return v;
  };
  /** The first maxPeers entries of a compact list, and how many it held. */
  const peers = (key: string, family: AddressFamily): { list: Endpoint[]; total: number } => {
    const b = bytes(key);
    if (b === undefined) return { list: [], total: 0 };
    const size = family === 4 ? 6 : 18;
    if (b.length % size !== 0) throw new ExtensionError('BAD_VALUE', `ut_pex ${key} of ${b.length} bytes is not a multiple of ${size}`);
    const total = b.length / size;
    if (total > maxPeers) truncated = true;
    try {
      return { list: decodeCompactPeers(b.subarray(0, Math.min(total, maxPeers) * size), family), total };
    } catch (e) {
      if (e instanceof CompactError) throw new ExtensionError('BAD_VALUE', `ut_pex ${key}: ${e.message}`, undefined, { cause: e });
      throw e;
    }
  };
  /** Flags for the kept peers; flags whose count does not match the list are ignored, as other clients do. */
  const flags = (key: string, kept: number, total: number): number[] => {
    const b = bytes(key);
    const out = new Array<number>(kept).fill(0);
    if (b !== undefined && b.length === total) for (let i = 0; i < kept; i++) out[i] = b[i]!;
    return out;
  };
  const added = peers('added', 4);
  const added6 = peers('added6', 6);
  const dropped = peers('dropped', 4);
  const dropped6 = peers('dropped6', 6);
  return {
    added: added.list,
    addedFlags: flags('added.f', added.list.length, added.total),
    dropped: dropped.list,
    added6: added6.list,
    added6Flags: flags('added6.f', added6.list.length, added6.total),
    dropped6: dropped6.list,
    truncated,
  };
}
