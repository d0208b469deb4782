/**
 * Magnet URIs (BEP 9): `magnet:?xt=urn:btih:<hash>&dn=<name>&tr=<tracker>&x.pe=<peer>`.
 *
 * The info hash may be 40 hex digits or 32 base32 characters. Several `tr`
 * and `x.pe` parameters are allowed; unknown parameters are ignored, as
 * BEP 9 asks. Input is bounded in length and parameter count.
 */
import { CodecError } from './errors.js';
import { formatIp, parseIp } from './ip.js';

export type MagnetErrorCode = 'NOT_A_MAGNET' | 'TOO_LARGE' | 'BAD_ENCODING' | 'NO_INFO_HASH' | 'BAD_INFO_HASH' | 'BAD_PEER';

export class MagnetError extends CodecError {
  declare readonly code: MagnetErrorCode;
  constructor(code: MagnetErrorCode, message: string) {
    super('magnet', code, message);
    this.name = 'MagnetError';
  }
}

export interface MagnetPeer {
  readonly host: string;
  readonly port: number;
}

export interface Magnet {
  readonly infoHash: Buffer;
  readonly infoHashHex: string;
  readonly name: string | undefined;
  readonly trackers: string[];
  readonly peers: MagnetPeer[];
  /** Web seeds (`ws`). */
  readonly webSeeds: string[];
  /** Exact length (`xl`), when given. */
  readonly length: number | undefined;
}

export const MAX_MAGNET_LENGTH = 64 * 1024;
const MAX_PARAMS = 1000;
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 without padding; undefined when the text is not base32. */
export function decodeBase32(text: string): Buffer | undefined {
  // ASCII only: toUpperCase() maps e.g. 'ı' to 'I' and 'ß' to 'SS'.
  if (!/^[A-Za-z2-7]*$/.test(text)) return undefined;
  const out = Buffer.alloc(Math.floor((text.length * 5) / 8));
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (const ch of text.toUpperCase()) {
    const v = BASE32.indexOf(ch);
    if (v < 0) return undefined;
    acc = ((acc << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  return out;
}

export function encodeBase32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let acc = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += BASE32[(acc >> bits) & 31];
    }
  }
  if (bits > 0) out += BASE32[(acc << (5 - bits)) & 31];
  return out;
}

function parseInfoHash(text: string): Buffer {
  if (/^[0-9a-fA-F]{40}$/.test(text)) return Buffer.from(text, 'hex');
  if (text.length === 32) {
    const b = decodeBase32(text);
    if (b && b.length === 20) return b;
  }
  throw new MagnetError('BAD_INFO_HASH', `"${text.slice(0, 80)}" is neither 40 hex digits nor 32 base32 characters`);
}

function percentDecode(value: string, plusIsSpace: boolean): string {
  try {
    return decodeURIComponent(plusIsSpace ? value.replace(/\+/g, ' ') : value);
  } catch {
    throw new MagnetError('BAD_ENCODING', `bad percent-encoding in "${value.slice(0, 80)}"`);
  }
}

/** Parses `host:port`, `[v6]:port` (the x.pe form); hosts may be names. */
export function parsePeerAddress(text: string): MagnetPeer {
  const bracketed = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text);
  const m = bracketed ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) throw new MagnetError('BAD_PEER', `"${text.slice(0, 80)}" is not host:port`);
  const raw = m[1]!;
  const ip = parseIp(raw);
  if (bracketed && !ip) throw new MagnetError('BAD_PEER', `"${raw.slice(0, 80)}" in brackets is not an IPv6 address`);
  if (!ip && !/^[A-Za-z0-9.-]{1,253}$/.test(raw)) throw new MagnetError('BAD_PEER', `"${raw.slice(0, 80)}" is not an address`);
  return { host: ip ? formatIp(ip) : raw, port };
}

export function parseMagnet(uri: string): Magnet {
  if (uri.length > MAX_MAGNET_LENGTH) throw new MagnetError('TOO_LARGE', `magnet link longer than ${MAX_MAGNET_LENGTH} characters`);
  if (!/^magnet:\?/i.test(uri)) throw new MagnetError('NOT_A_MAGNET', 'a magnet link starts with "magnet:?"');
  const query = uri.slice(8).split('#')[0]!;
  const params = query.split('&').filter((p) => p.length > 0);
  if (params.length > MAX_PARAMS) throw new MagnetError('TOO_LARGE', `more than ${MAX_PARAMS} parameters`);
  let infoHash: Buffer | undefined;
  let sawV2 = false;
  let name: string | undefined;
  let length: number | undefined;
  const trackers: string[] = [];
  const peers: MagnetPeer[] = [];
  const webSeeds: string[] = [];
  for (const p of params) {
    const eq = p.indexOf('=');
    const key = (eq < 0 ? p : p.slice(0, eq)).toLowerCase().replace(/\.\d+$/, ''); // xt.1, tr.2 ...
    const raw = eq < 0 ? '' : p.slice(eq + 1);
    switch (key) {
      case 'xt': {
        const v = percentDecode(raw, false);
        if (/^urn:btih:/i.test(v)) infoHash ??= parseInfoHash(v.slice(9));
        else if (/^urn:btmh:/i.test(v)) sawV2 = true;
        break;
      }
      case 'dn':
        name ??= percentDecode(raw, true);
        break;
      case 'tr': {
        const t = percentDecode(raw, false);
        if (t.length > 0 && !trackers.includes(t)) trackers.push(t);
        break;
      }
      case 'x.pe':
        peers.push(parsePeerAddress(percentDecode(raw, false)));
        break;
      case 'ws': {
        const w = percentDecode(raw, false);
        if (w.length > 0) webSeeds.push(w);
        break;
      }
      case 'xl': {
        const n = Number(percentDecode(raw, false));
        if (Number.isSafeInteger(n) && n > 0) length = n;
        break;
      }
      default:
        break; // BEP 9: ignore what we do not know
    }
  }
  if (!infoHash) {
    throw new MagnetError('NO_INFO_HASH', sawV2 ? 'only a BitTorrent v2 hash (btmh) was given; peerkit speaks v1' : 'no xt=urn:btih: parameter');
  }
  return { infoHash, infoHashHex: infoHash.toString('hex'), name, trackers, peers, webSeeds, length };
}

export interface MagnetFields {
  readonly infoHash: Uint8Array;
  readonly name?: string | undefined;
  readonly trackers?: readonly string[];
  readonly peers?: readonly MagnetPeer[];
  readonly webSeeds?: readonly string[];
}

export function buildMagnet(m: MagnetFields): string {
  if (m.infoHash.length !== 20) throw new MagnetError('BAD_INFO_HASH', 'an info hash is 20 bytes');
  const parts = [`xt=urn:btih:${Buffer.from(m.infoHash).toString('hex')}`];
  if (m.name !== undefined && m.name.length > 0) parts.push(`dn=${encodeURIComponent(m.name)}`);
  for (const t of m.trackers ?? []) parts.push(`tr=${encodeURIComponent(t)}`);
  for (const w of m.webSeeds ?? []) parts.push(`ws=${encodeURIComponent(w)}`);
  for (const p of m.peers ?? []) parts.push(`x.pe=${encodeURIComponent(p.host.includes(':') ? `[${p.host}]:${p.port}` : `${p.host}:${p.port}`)}`);
  return `magnet:?${parts.join('&')}`;
}
