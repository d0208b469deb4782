/**
 * Metainfo (.torrent) v1: parse, validate and build.
 *
 * BEP 3 single- and multi-file torrents, BEP 12 announce-list, BEP 27
 * private flag, BEP 19 url-list, BEP 47 padding files (recognised, not
 * created). The info hash is SHA-1 over the exact bytes of the `info`
 * dictionary as they appear in the input, so a torrent with unusual but
 * valid encoding keeps the hash every other client computes for it.
 *
 * Everything that ends up as a path on disk is validated here: a component
 * that is empty, `.` or `..`, or that holds `/`, `\` or NUL is refused, as
 * are duplicate paths and a file that is also used as a folder.
 */
import { createHash } from 'node:crypto';
import { CodecError } from './errors.js';
import { decode, decodeWithSpans, encode, isBytes, isDict, isInteger, isList, BencodeError, type BencodeDict, type BencodeValue } from './bencode.js';

export type MetainfoErrorCode =
  | 'NOT_BENCODE'
  | 'NOT_A_DICT'
  | 'MISSING_FIELD'
  | 'WRONG_TYPE'
  | 'BAD_VALUE'
  | 'BAD_PIECES'
  | 'BAD_PATH'
  | 'DUPLICATE_PATH'
  | 'TOO_LARGE'
  | 'HASH_MISMATCH';

export class MetainfoError extends CodecError {
  declare readonly code: MetainfoErrorCode;
  constructor(code: MetainfoErrorCode, message: string, offset?: number) {
    super('metainfo', code, message, offset);
    this.name = 'MetainfoError';
  }
}

export interface MetainfoFile {
  /** Path components below the torrent's folder (for a single-file torrent: [name]). */
  readonly path: readonly string[];
  readonly length: number;
  /** Where the file starts in the torrent's byte stream. */
  readonly offset: number;
  /** A BEP 47 padding file: never written to disk. */
  readonly padding: boolean;
}

export interface Metainfo {
  readonly infoHash: Buffer;
  readonly infoHashHex: string;
  /** The raw bytes of the info dictionary, as hashed (what BEP 9 serves). */
  readonly infoBytes: Buffer;
  readonly name: string;
  readonly pieceLength: number;
  readonly pieceCount: number;
  /** Concatenated 20-byte SHA-1 hashes, one per piece. */
  readonly pieces: Buffer;
  /** Total length in bytes, padding files included. */
  readonly length: number;
  readonly files: readonly MetainfoFile[];
  readonly isMultiFile: boolean;
  readonly private: boolean;
  /** Tiers of tracker URLs (BEP 12); a lone `announce` becomes one tier. */
  readonly announceList: string[][];
  /** Web seeds (BEP 19). */
  readonly urlList: string[];
  readonly comment: string | undefined;
  readonly createdBy: string | undefined;
  /** Seconds since the Unix epoch. */
  readonly creationDate: number | undefined;
}

export interface MetainfoLimits {
  /** Largest .torrent accepted. Default 32 MiB. */
  maxBytes?: number;
  /** Most files in a multi-file torrent. Default 200,000. */
  maxFiles?: number;
  /** Largest piece length. Default 128 MiB. */
  maxPieceLength?: number;
  /** Deepest path (components per file). Default 64. */
  maxPathDepth?: number;
}

const DEFAULTS: Required<MetainfoLimits> = {
  maxBytes: 32 * 1024 * 1024,
  maxFiles: 200_000,
  maxPieceLength: 128 * 1024 * 1024,
  maxPathDepth: 64,
};

/** Limits with defaults; a limit given as undefined keeps its default. */
function withDefaults(limits: MetainfoLimits): Required<MetainfoLimits> {
  return {
    maxBytes: limits.maxBytes ?? DEFAULTS.maxBytes,
    maxFiles: limits.maxFiles ?? DEFAULTS.maxFiles,
    maxPieceLength: limits.maxPieceLength ?? DEFAULTS.maxPieceLength,
    maxPathDepth: limits.maxPathDepth ?? DEFAULTS.maxPathDepth,
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

function field(dict: BencodeDict, key: string): BencodeValue | undefined {
  return dict.get(key);
}

function str(v: BencodeValue | undefined, what: string): string {
  if (!isBytes(v)) throw new MetainfoError('WRONG_TYPE', `${what} must be a byte string`);
  return utf8.decode(v);
}

function optStr(dict: BencodeDict, key: string, what: string): string | undefined {
  const v = field(dict, key);
  return v === undefined ? undefined : str(v, what);
}

function int(v: BencodeValue | undefined, what: string, min: number, max: number): number {
  if (!isInteger(v)) throw new MetainfoError('WRONG_TYPE', `${what} must be an integer`);
  if (typeof v === 'bigint' || v < min || v > max) {
    throw new MetainfoError('BAD_VALUE', `${what} is ${String(v)}, outside ${min}..${max}`);
  }
  return v;
}

/** A path component that is safe to create on disk under the download folder. */
export function checkPathComponent(c: string, what: string): void {
  if (c.length === 0) throw new MetainfoError('BAD_PATH', `${what}: empty path component`);
  if (c === '.' || c === '..') throw new MetainfoError('BAD_PATH', `${what}: path component "${c}" is not allowed`);
  if (/[/\\\0]/.test(c)) throw new MetainfoError('BAD_PATH', `${what}: path component ${JSON.stringify(c)} holds "/", "\\" or NUL`);
  if (c.length > 1024) throw new MetainfoError('BAD_PATH', `${what}: path component longer than 1024 characters`);
}

function parseAnnounceList(top: BencodeDict): string[][] {
  const list = field(top, 'announce-list');
  const tiers: string[][] = [];
  const seen = new Set<string>();
  if (list !== undefined) {
    if (!isList(list)) throw new MetainfoError('WRONG_TYPE', 'announce-list must be a list of lists');
    for (const tier of list) {
      if (!isList(tier)) throw new MetainfoError('WRONG_TYPE', 'each announce-list tier must be a list');
      const urls: string[] = [];
      for (const u of tier) {
        const url = str(u, 'announce-list URL').trim();
        if (url.length > 0 && !seen.has(url)) {
          seen.add(url);
          urls.push(url);
        }
      }
      if (urls.length > 0) tiers.push(urls);
    }
  }
  // BEP 12: when announce-list is present (and not empty) it replaces announce.
  if (tiers.length === 0) {
    const announce = optStr(top, 'announce', 'announce')?.trim();
    if (announce) tiers.push([announce]);
  }
  return tiers;
}

function parseUrlList(top: BencodeDict): string[] {
  const v = field(top, 'url-list');
  if (v === undefined) return [];
  if (isBytes(v)) return v.length > 0 ? [utf8.decode(v)] : [];
  if (!isList(v)) throw new MetainfoError('WRONG_TYPE', 'url-list must be a string or a list of strings');
  return v.map((u) => str(u, 'url-list entry')).filter((u) => u.length > 0);
}

interface ParsedInfo {
  name: string;
  pieceLength: number;
  pieceCount: number;
  pieces: Buffer;
  length: number;
  files: MetainfoFile[];
  isMultiFile: boolean;
  private: boolean;
}

function parseInfo(info: BencodeDict, limits: Required<MetainfoLimits>): ParsedInfo {
  const nameValue = field(info, 'name.utf-8') ?? field(info, 'name');
  if (nameValue === undefined) throw new MetainfoError('MISSING_FIELD', 'info.name is missing');
  const name = str(nameValue, 'info.name');
  checkPathComponent(name, 'info.name');

  const plValue = field(info, 'piece length');
  if (plValue === undefined) throw new MetainfoError('MISSING_FIELD', 'info["piece length"] is missing');
  const pieceLength = int(plValue, 'info["piece length"]', 1, limits.maxPieceLength);

  const piecesValue = field(info, 'pieces');
  if (piecesValue === undefined) throw new MetainfoError('MISSING_FIELD', 'info.pieces is missing');
  if (!isBytes(piecesValue)) throw new MetainfoError('WRONG_TYPE', 'info.pieces must be a byte string');
  if (piecesValue.length === 0 || piecesValue.length % 20 !== 0) {
    throw new MetainfoError('BAD_PIECES', `info.pieces is ${piecesValue.length} bytes, not a positive multiple of 20`);
  }
  const pieceCount = piecesValue.length / 20;

  const privValue = field(info, 'private');
  const isPrivate = privValue !== undefined && isInteger(privValue) && Number(privValue) === 1;

  const files: MetainfoFile[] = [];
  let length = 0;
  const lengthValue = field(info, 'length');
  const filesValue = field(info, 'files');
  if (lengthValue !== undefined && filesValue !== undefined) {
    throw new MetainfoError('BAD_VALUE', 'info has both "length" and "files"');
  }
  let isMultiFile: boolean;
  if (filesValue !== undefined) {
    isMultiFile = true;
    if (!isList(filesValue)) throw new MetainfoError('WRONG_TYPE', 'info.files must be a list');
    if (filesValue.length === 0) throw new MetainfoError('BAD_VALUE', 'info.files is empty');
    if (filesValue.length > limits.maxFiles) throw new MetainfoError('TOO_LARGE', `${filesValue.length} files exceed the limit of ${limits.maxFiles}`);
    const seenFiles = new Set<string>();
    const seenDirs = new Set<string>();
    for (const [i, f] of filesValue.entries()) {
      if (!isDict(f)) throw new MetainfoError('WRONG_TYPE', `info.files[${i}] must be a dictionary`);
      const flen = int(field(f, 'length'), `info.files[${i}].length`, 0, Number.MAX_SAFE_INTEGER);
      const pathValue = field(f, 'path.utf-8') ?? field(f, 'path');
      if (pathValue === undefined) throw new MetainfoError('MISSING_FIELD', `info.files[${i}].path is missing`);
      if (!isList(pathValue)) throw new MetainfoError('WRONG_TYPE', `info.files[${i}].path must be a list`);
      if (pathValue.length === 0) throw new MetainfoError('BAD_PATH', `info.files[${i}].path is empty`);
      if (pathValue.length > limits.maxPathDepth) throw new MetainfoError('BAD_PATH', `info.files[${i}].path is deeper than ${limits.maxPathDepth}`);
      const path = pathValue.map((c) => str(c, `info.files[${i}].path component`));
      for (const c of path) checkPathComponent(c, `info.files[${i}].path`);
      const attr = field(f, 'attr');
      const padding = isBytes(attr) && attr.includes(0x70 /* p */);
      const key = path.join('/');
      if (!padding) {
        if (seenFiles.has(key) || seenDirs.has(key)) throw new MetainfoError('DUPLICATE_PATH', `info.files[${i}]: "${key}" appears twice or is also a folder`);
        seenFiles.add(key);
        for (let d = 1; d < path.length; d++) {
          const dir = path.slice(0, d).join('/');
          if (seenFiles.has(dir)) throw new MetainfoError('DUPLICATE_PATH', `info.files[${i}]: "${dir}" is both a file and a folder`);
          seenDirs.add(dir);
        }
      }
      if (length + flen > Number.MAX_SAFE_INTEGER) throw new MetainfoError('TOO_LARGE', 'total length is too large');
      files.push({ path, length: flen, offset: length, padding });
      length += flen;
    }
  } else if (lengthValue !== undefined) {
    isMultiFile = false;
    length = int(lengthValue, 'info.length', 0, Number.MAX_SAFE_INTEGER);
    files.push({ path: [name], length, offset: 0, padding: false });
  } else {
    throw new MetainfoError('MISSING_FIELD', 'info has neither "length" nor "files"');
  }
  if (length === 0) throw new MetainfoError('BAD_VALUE', 'the torrent holds no data (total length 0)');
  const expected = Math.ceil(length / pieceLength);
  if (expected !== pieceCount) {
    throw new MetainfoError('BAD_PIECES', `${pieceCount} piece hashes for ${length} bytes in pieces of ${pieceLength} (expected ${expected})`);
  }
  return { name, pieceLength, pieceCount, pieces: piecesValue, length, files, isMultiFile, private: isPrivate };
}

function sha1(bytes: Uint8Array): Buffer {
  return createHash('sha1').update(bytes).digest();
}

function asDict(bytes: Uint8Array, limits: Required<MetainfoLimits>): { top: BencodeDict; infoBytes: Buffer } {
  if (bytes.length > limits.maxBytes) throw new MetainfoError('TOO_LARGE', `${bytes.length} bytes exceed the limit of ${limits.maxBytes}`);
  let decoded: ReturnType<typeof decodeWithSpans>;
  try {
    // Real-world torrents sometimes have unsorted keys; the hash is taken over the raw bytes anyway.
    decoded = decodeWithSpans(bytes, { maxInputBytes: limits.maxBytes, allowUnsortedKeys: true });
  } catch (e) {
    if (e instanceof BencodeError) throw new MetainfoError('NOT_BENCODE', `not valid bencode: ${e.message}`, e.offset);
    throw e;
  }
  const top = decoded.value;
  if (!isDict(top)) throw new MetainfoError('NOT_A_DICT', 'a .torrent must be a bencoded dictionary');
  const info = top.get('info');
  if (info === undefined) throw new MetainfoError('MISSING_FIELD', 'the "info" dictionary is missing');
  if (!isDict(info)) throw new MetainfoError('WRONG_TYPE', '"info" must be a dictionary');
  const span = decoded.spanOf(info);
  if (!span) throw new MetainfoError('BAD_VALUE', 'could not locate the info dictionary');
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { top, infoBytes: buf.subarray(span.start, span.end) };
}

function assemble(top: BencodeDict | undefined, infoBytes: Buffer, parsed: ParsedInfo): Metainfo {
  const infoHash = sha1(infoBytes);
  const creation = top?.get('creation date');
  return {
    infoHash,
    infoHashHex: infoHash.toString('hex'),
    infoBytes,
    ...parsed,
    announceList: top ? parseAnnounceList(top) : [],
    urlList: top ? parseUrlList(top) : [],
    comment: top ? optStr(top, 'comment', 'comment') : undefined,
    createdBy: top ? optStr(top, 'created by', 'created by') : undefined,
    creationDate: isInteger(creation) && typeof creation === 'number' ? creation : undefined,
  };
}

/** Parses and validates a .torrent file. */
export function parseMetainfo(bytes: Uint8Array, limits: MetainfoLimits = {}): Metainfo {
  const lim = withDefaults(limits);
  const { top, infoBytes } = asDict(bytes, lim);
  const parsed = parseInfo(top.get('info') as BencodeDict, lim);
  return assemble(top, infoBytes, parsed);
}

/**
 * Parses a bare info dictionary, as fetched from peers with BEP 9, and
 * checks it against the info hash we asked for.
 */
export function parseInfoDictionary(infoBytes: Uint8Array, expectedInfoHash?: Uint8Array, limits: MetainfoLimits = {}): Metainfo {
  const lim = withDefaults(limits);
  if (infoBytes.length > lim.maxBytes) throw new MetainfoError('TOO_LARGE', `${infoBytes.length} bytes exceed the limit of ${lim.maxBytes}`);
  const buf = Buffer.from(infoBytes.buffer, infoBytes.byteOffset, infoBytes.byteLength);
  if (expectedInfoHash && !sha1(buf).equals(expectedInfoHash)) {
    throw new MetainfoError('HASH_MISMATCH', 'the info dictionary does not match the info hash');
  }
  let info: BencodeValue;
  try {
    info = decode(buf, { maxInputBytes: lim.maxBytes, allowUnsortedKeys: true });
  } catch (e) {
    if (e instanceof BencodeError) throw new MetainfoError('NOT_BENCODE', `not valid bencode: ${e.message}`, e.offset);
    throw e;
  }
  if (!isDict(info)) throw new MetainfoError('NOT_A_DICT', 'the info dictionary is not a dictionary');
  return assemble(undefined, buf, parseInfo(info, lim));
}

/** Adds trackers (e.g. from a magnet link) to a metainfo parsed from a bare info dictionary. */
export function withTrackers(m: Metainfo, announceList: string[][]): Metainfo {
  return { ...m, announceList: announceList.filter((t) => t.length > 0) };
}

// ---------------------------------------------------------------- building

export interface InfoFields {
  readonly name: string;
  readonly pieceLength: number;
  readonly pieces: Uint8Array;
  /** Single-file torrent: its length. */
  readonly length?: number;
  /** Multi-file torrent: the files in torrent order. */
  readonly files?: readonly { readonly path: readonly string[]; readonly length: number }[];
  /**
   * BEP 27. `true` writes private=1; `false` writes private=0, as
   * transmission-create does (so both produce the same info hash);
   * `undefined` leaves the key out.
   */
  readonly private?: boolean;
}

export interface TorrentFields {
  readonly info: InfoFields;
  readonly announceList?: readonly (readonly string[])[];
  readonly urlList?: readonly string[];
  readonly comment?: string;
  readonly createdBy?: string;
  readonly creationDate?: number;
}

/** Encodes the info dictionary canonically. */
export function encodeInfo(info: InfoFields): Buffer {
  checkPathComponent(info.name, 'name');
  if ((info.length === undefined) === (info.files === undefined)) {
    throw new MetainfoError('BAD_VALUE', 'give exactly one of length (single file) or files (multi-file)');
  }
  for (const f of info.files ?? []) for (const c of f.path) checkPathComponent(c, 'file path');
  const dict: Record<string, unknown> = {
    name: info.name,
    'piece length': info.pieceLength,
    pieces: info.pieces,
    private: info.private === undefined ? undefined : info.private ? 1 : 0,
  };
  if (info.files) dict.files = info.files.map((f) => ({ length: f.length, path: [...f.path] }));
  else dict.length = info.length;
  return encode(dict as Parameters<typeof encode>[0]);
}

/** Encodes a whole .torrent; the result parses back with `parseMetainfo`. */
export function encodeTorrent(t: TorrentFields): Buffer {
  const infoBytes = encodeInfo(t.info);
  const tiers = (t.announceList ?? []).map((tier) => tier.filter((u) => u.length > 0)).filter((tier) => tier.length > 0);
  const first = tiers[0]?.[0];
  const top: Record<string, unknown> = {
    announce: first,
    'announce-list': tiers.length > 1 || (tiers[0]?.length ?? 0) > 1 ? tiers : undefined,
    comment: t.comment,
    'created by': t.createdBy,
    'creation date': t.creationDate,
    encoding: 'UTF-8',
    'url-list': t.urlList && t.urlList.length > 0 ? [...t.urlList] : undefined,
  };
  // Splice the info bytes in verbatim: keys sort as "info" between "encoding" and "url-list".
  const head = encode(Object.fromEntries(Object.entries(top).filter(([k]) => k < 'info')) as Parameters<typeof encode>[0]);
  const tail = encode(Object.fromEntries(Object.entries(top).filter(([k]) => k > 'info')) as Parameters<typeof encode>[0]);
  return Buffer.concat([head.subarray(0, head.length - 1), Buffer.from('4:info'), infoBytes, tail.subarray(1)]);
}

/** The piece length peerkit picks for a given total size: about 1,000–2,000 pieces, 16 KiB to 16 MiB. */
export function defaultPieceLength(totalLength: number): number {
  let pl = 16 * 1024;
  while (pl < 16 * 1024 * 1024 && totalLength / pl > 2000) pl *= 2;
  return pl;
}
