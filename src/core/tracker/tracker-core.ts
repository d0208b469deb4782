/**
 * The tracker, sans I/O: one core serves both the HTTP (BEP 3, 23, 7, 48)
 * and the UDP (BEP 15, 41) protocols over one swarm registry.
 *
 * Inputs, each with the current time in ms:
 *  - `handleHttp(now, remote, target)`: a GET request's target (path and
 *    query); returns the response at once.
 *  - `handleDatagram(now, from, bytes)`: a UDP request; the reply, if any, is
 *    then available from `pollTransmit()`.
 *  - `handleTimeout(now)` when the deadline of `pollTimeout()` is reached: an
 *    incremental sweep that expires peers which missed their announces and
 *    forgets idle rate-limit buckets. `sweep(now)` does a whole pass at once.
 *
 * `pollEvent()` yields accounting records for private trackers (bytes a
 * user reported since its last announce), for the owner to persist.
 *
 * Policy, in one place:
 *  - Access: open; or a whitelist of info hashes; and/or private, where every
 *    announce and scrape carries a registered passkey (in the path,
 *    `/announce/<passkey>` or `/<passkey>/announce`, or `?passkey=`; over UDP
 *    in BEP 41 URLData).
 *  - A peer is its peer id within a torrent. A known peer id announcing from
 *    another address must present the same `key` it first announced with
 *    (BEP 7), or the announce is refused. A new peer replaces a stale record
 *    at the same address and port (a client restarted with a fresh id).
 *  - Seeders (and BEP 21 partial seeds) are not sent seeders. The requester
 *    is never sent itself. Peers are picked at random (the injected Random).
 *    Over UDP only peers of the datagram's address family are sent (BEP 15);
 *    over HTTP IPv4 peers go in `peers` and IPv6 ones in `peers6` (BEP 7).
 *  - `completed` is counted once per peer (a retransmitted announce does
 *    not count twice, whatever its `left`); retransmitted announces change
 *    nothing else either, since byte counts are taken as differences from
 *    the last report.
 *  - Accounting (private): a peer that announces `started` is credited with
 *    all it reports; later announces with what they report beyond the last
 *    report. The last report of each peer leaves the core in its accounting
 *    events (`peer`, `reported`), and the owner can hand it back through the
 *    `lastReported` option: a peer the core does not know (after a restart,
 *    or expired) that announces without `started` is then credited with the
 *    difference from that last report, so what it reported across a restart
 *    counts exactly once. Without such a record it is only credited from its
 *    next announce on, so a restart never counts the same bytes twice.
 *  - Caps: torrents, peers per torrent, peers in all. A peer that does not
 *    fit is answered (with a warning over HTTP) but not stored. A new
 *    torrent at the torrent cap first evicts a dead or lone-peer torrent
 *    (the least recently announced of those a bounded scan finds; never a
 *    swarm of two or more), and is refused only when there is none.
 *  - Per-address token-bucket rate limiting (IPv6 per /64). Over UDP,
 *    refused, malformed and forged-connection-id datagrams are dropped
 *    without a reply, so the tracker can never be used to reflect traffic.
 *    Requests with a valid connection id that fail get a BEP 15 error.
 */
import { CodecError } from '../../codec/errors.js';
import { formatIp, parseIp } from '../../codec/ip.js';
import {
  encodeAnnounceResponse,
  encodeFailure,
  encodeScrapeResponse,
  parseAddressParam,
  parseAnnounceQuery,
  parseScrapeQuery,
  TrackerError,
  type AnnounceEvent,
  type HttpAnnounceEvent,
  type ScrapeFile,
  type TrackerPeer,
} from '../../codec/tracker-http.js';
import { ACTION_CONNECT, PROTOCOL_ID, decodeRequest, encodeResponse, type UdpAnnounceRequest, type UdpScrapeRequest } from '../../codec/tracker-udp.js';
import type { DatagramCore, Endpoint, Random, Transmit } from '../../runtime/contract.js';
import { ConnectionIds } from './connection-id.js';
import { RateLimiter, type RateLimitOptions } from './rate-limit.js';
import { FLAG_COMPLETED, FLAG_KEY, FLAG_PAUSED, FLAG_SEEDER, FLAG_V6, SwarmRegistry, WordScratch, type Torrent } from './swarm.js';

export interface TrackerCoreOptions {
  readonly random: Random;
  /** Seconds between regular announces. Default 1800. */
  readonly interval?: number;
  /** Seconds a client must at least wait between announces. Default interval / 2. */
  readonly minInterval?: number;
  /** Seconds after its last announce when a peer is dropped. Default 1.5 x interval. */
  readonly peerTimeout?: number;
  /** Default 1 000 000. */
  readonly maxTorrents?: number;
  /** Default 20 000. */
  readonly maxPeersPerTorrent?: number;
  /** Peers in all torrents together. Default 10 000 000. */
  readonly maxPeers?: number;
  /** Peers sent when the client does not say. Default 50. */
  readonly defaultNumWant?: number;
  /** numwant is capped at this. Default 200. */
  readonly maxNumWant?: number;
  /** Only these info hashes (20 bytes, or 40 hex digits) are tracked. Default: any. */
  readonly whitelist?: Iterable<Uint8Array | string>;
  /** Every announce and scrape needs a registered passkey. Default false. */
  readonly private?: boolean;
  /** Allow a scrape without info hashes (lists every torrent). Default false. */
  readonly allowFullScrape?: boolean;
  /** Per-address limit; false for none. Default 50 per second, bursts of 200. */
  readonly rateLimit?: RateLimitOptions | false;
  /** BEP 15 connection id window in ms; an id is valid for one to two windows. Default 120 000. */
  readonly connectionIdWindowMs?: number;
  /** Believe the `ip`/`ipv4`/`ipv6` parameters and the UDP IP field (only behind a trusted front end). Default false. */
  readonly trustClientIp?: boolean;
  /** ms between sweep passes. Default 30 000. */
  readonly sweepIntervalMs?: number;
  /**
   * Private trackers: the last `uploaded`/`downloaded` a peer reported, as
   * the owner persisted it from accounting events (`peer` is the event's
   * key). Asked when a peer the core does not hold announces: without
   * `started` it is credited from there, and another user may not take
   * its peer id. When given, every announce that changes a peer's report
   * (or adds or removes a peer) yields an event carrying it.
   */
  readonly lastReported?: (peer: string) => ReportedCounters | undefined;
  /** Torrents purged per sweep step. Default 10 000. */
  readonly sweepBatch?: number;
}

export interface TrackerUser {
  readonly name: string;
  readonly passkey: string;
  readonly uploaded: number;
  readonly downloaded: number;
  /** Torrents this user completed (`completed` events). */
  readonly completed: number;
}

/** A peer's last report, kept by the owner across restarts (see `lastReported`). */
export interface ReportedCounters {
  readonly passkey: string;
  readonly uploaded: number;
  readonly downloaded: number;
}

/** Bytes a user reported since its previous announce; the owner persists it. */
export interface AccountingEvent {
  readonly type: 'accounting';
  readonly passkey: string;
  readonly uploaded: number;
  readonly downloaded: number;
  readonly completed: number;
  /**
   * With the `lastReported` option: the peer (info hash and peer id, 40
   * latin1 characters) and its report as of this announce, to keep with
   * the credit (`null`: the peer left with `stopped`, forget it).
   */
  readonly peer?: string;
  readonly reported?: readonly [uploaded: number, downloaded: number] | null;
}

export type TrackerEvent = AccountingEvent;

export type FailureKind = 'bad-request' | 'unregistered-torrent' | 'bad-passkey' | 'tracker-full' | 'peer-id-in-use' | 'rate-limited' | 'full-scrape';

export interface TrackerStats {
  readonly torrents: number;
  readonly peers: number;
  readonly seeders: number;
  readonly leechers: number;
  readonly users: number;
  /** Announces per second over the last 10 seconds. */
  readonly announcesPerSecond: number;
  readonly announces: { readonly http: number; readonly udp: number };
  readonly scrapes: { readonly http: number; readonly udp: number };
  readonly udpConnects: number;
  /** Failure responses sent (HTTP failure reason, UDP error), by kind. */
  readonly failures: Readonly<Record<FailureKind, number>>;
  /** UDP datagrams dropped without a reply, by cause. */
  readonly dropped: { readonly malformed: number; readonly forgedConnectionId: number; readonly rateLimited: number };
  /** Peers not stored because a cap was reached. */
  readonly peersRefused: number;
  readonly peersExpired: number;
  /** Torrents dropped to make room for new ones at the torrent cap (absent: 0). */
  readonly torrentsEvicted?: number;
  /** Bytes of peer-record memory allocated. */
  readonly peerMemoryBytes: number;
}

/** One swarm's counts, as in a scrape, with its info hash in hex. */
export interface SwarmSummary {
  readonly infoHash: string;
  readonly seeders: number;
  readonly leechers: number;
  /** `completed` events seen. */
  readonly downloaded: number;
}

export interface HttpReply {
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer;
}

/** An announce, whatever the protocol. The peer id is in `this.scratch.pid` (set by the caller). */
interface AnnounceInput {
  /** The info hash as the registry's latin1 key. */
  readonly infoKey: string;
  /** The peer's address, 4 or 16 bytes (IPv4-mapped already unwrapped). */
  readonly ip: Uint8Array;
  readonly port: number;
  readonly uploaded: number;
  readonly downloaded: number;
  readonly left: number;
  readonly event: HttpAnnounceEvent | undefined;
  readonly numWant: number;
  readonly key: number | undefined;
  readonly passkey: string | undefined;
}

type AnnounceOutcome =
  | { readonly ok: false; readonly kind: FailureKind; readonly reason: string }
  | { readonly ok: true; readonly t: Torrent | undefined; readonly n: number; readonly complete: number; readonly incomplete: number; readonly warning: string | undefined };

interface Addr {
  /** 4 or 16 bytes. */
  readonly ip: Uint8Array;
  /** 16 bytes, IPv4 mapped. */
  readonly ip16: Uint8Array;
  readonly family: 4 | 6;
  /** Rate-limit key: the IPv4 address or the IPv6 /64. */
  readonly rateKey: string;
}

interface UserState {
  readonly name: string;
  readonly passkey: string;
  readonly number: number;
  uploaded: number;
  downloaded: number;
  completed: number;
}

const UNREGISTERED = 'Requested download is not authorized for use with this tracker';
const MAX_UDP_REQUEST = 2048;
const PURGE_EVERY_SEC = 15;
const TEXT = 'text/plain; charset=utf-8';
const PASSKEY_RE = /^[A-Za-z0-9_-]{1,64}$/;
const HEX40 = /^[0-9a-fA-F]{40}$/;

/** The 20-byte info hash given as bytes or 40 hex digits, as the registry's latin1 key. */
export function infoHashKey(h: Uint8Array | string): string {
  if (typeof h === 'string') {
    if (!HEX40.test(h)) throw new RangeError(`not a 40-digit hex info hash: ${h}`);
    return Buffer.from(h, 'hex').toString('latin1');
  }
  if (h.length !== 20) throw new RangeError('an info hash has 20 bytes');
  return Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString('latin1');
}

/** An HTTP `key` (opaque text, usually 8 hex digits) as a 32-bit number, the way UDP carries it. */
export function keyNumber(key: string): number {
  if (/^[0-9a-fA-F]{1,8}$/.test(key)) return parseInt(key, 16) >>> 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function reply(body: Buffer, status = 200, contentType = TEXT): HttpReply {
  return { status, contentType, body };
}

function writeU32(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 24;
  out[at + 1] = (v >>> 16) & 0xff;
  out[at + 2] = (v >>> 8) & 0xff;
  out[at + 3] = v & 0xff;
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

/** A big-endian 64-bit count, or -1 beyond 2^53 - 1. */
function readCount(b: Uint8Array, at: number): number {
  const hi = readU32(b, at);
  return hi > 0x1fffff ? -1 : hi * 0x100000000 + readU32(b, at + 4);
}

const PROTOCOL_HI = Number(PROTOCOL_ID >> 32n);
const PROTOCOL_LO = Number(PROTOCOL_ID & 0xffffffffn);
const UDP_EVENTS: readonly (AnnounceEvent | undefined)[] = [undefined, 'completed', 'started', 'stopped'];

const clampU32 = (n: number): number => Math.min(0xffffffff, Math.max(0, Math.floor(n)));

export class TrackerCore implements DatagramCore<TrackerEvent> {
  readonly swarm: SwarmRegistry;
  readonly interval: number;
  readonly minInterval: number;
  readonly peerTimeout: number;
  readonly isPrivate: boolean;
  private readonly random: Random;
  private readonly defaultNumWant: number;
  private readonly maxNumWant: number;
  private readonly allowFullScrape: boolean;
  private readonly trustClientIp: boolean;
  private readonly sweepIntervalMs: number;
  private readonly sweepBatch: number;
  private readonly lastReported: ((peer: string) => ReportedCounters | undefined) | undefined;
  private whitelist: Set<string> | undefined;
  private readonly cids: ConnectionIds;
  private readonly limiter: RateLimiter | undefined;
  private readonly scratch = new WordScratch();
  private readonly usersByKey = new Map<string, UserState>();
  private readonly usersByNumber: (UserState | undefined)[] = [undefined];
  private readonly transmits: Transmit[] = [];
  private readonly events: TrackerEvent[] = [];
  private readonly addrCache = new Map<string, Addr | null>();
  private readonly v4Out: Buffer;
  private readonly v6Out: Buffer;
  private originSec: number | undefined;
  private nextSweepAt: number | undefined;
  // counters
  private readonly rate = new Float64Array(16);
  private rateSec = 0;
  private httpAnnounces = 0;
  private udpAnnounces = 0;
  private httpScrapes = 0;
  private udpScrapes = 0;
  private udpConnects = 0;
  private readonly failures: Record<FailureKind, number> = {
    'bad-request': 0,
    'unregistered-torrent': 0,
    'bad-passkey': 0,
    'tracker-full': 0,
    'peer-id-in-use': 0,
    'rate-limited': 0,
    'full-scrape': 0,
  };
  private droppedMalformed = 0;
  private droppedForged = 0;
  private droppedRateLimited = 0;
  private peersRefused = 0;

  constructor(options: TrackerCoreOptions) {
    const positive = (v: number | undefined, d: number, what: string): number => {
      const n = v ?? d;
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`${what} must be a positive integer`);
      return n;
    };
    this.random = options.random;
    this.interval = positive(options.interval, 1800, 'interval');
    this.minInterval = positive(options.minInterval, Math.max(1, Math.floor(this.interval / 2)), 'minInterval');
    this.peerTimeout = positive(options.peerTimeout, Math.ceil(this.interval * 1.5), 'peerTimeout');
    this.maxNumWant = positive(options.maxNumWant, 200, 'maxNumWant');
    this.defaultNumWant = Math.min(this.maxNumWant, options.defaultNumWant ?? 50);
    if (!(this.defaultNumWant >= 0)) throw new RangeError('defaultNumWant must be >= 0');
    this.isPrivate = options.private === true;
    this.allowFullScrape = options.allowFullScrape === true;
    this.trustClientIp = options.trustClientIp === true;
    this.sweepIntervalMs = positive(options.sweepIntervalMs, 30_000, 'sweepIntervalMs');
    this.sweepBatch = positive(options.sweepBatch, 10_000, 'sweepBatch');
    this.lastReported = this.isPrivate ? options.lastReported : undefined;
    this.swarm = new SwarmRegistry(
      {
        maxTorrents: positive(options.maxTorrents, 1_000_000, 'maxTorrents'),
        maxPeersPerTorrent: positive(options.maxPeersPerTorrent, 20_000, 'maxPeersPerTorrent'),
        maxPeers: positive(options.maxPeers, 10_000_000, 'maxPeers'),
        peerTimeoutSec: this.peerTimeout,
        accounting: this.isPrivate,
        random: options.random,
      },
      this.maxNumWant,
    );
    if (options.whitelist !== undefined) this.setWhitelist(options.whitelist);
    this.cids = new ConnectionIds({ secret: options.random.bytes(32), windowMs: options.connectionIdWindowMs ?? 120_000 });
    const rl = options.rateLimit ?? { perSecond: 50, burst: 200 };
    this.limiter = rl === false ? undefined : new RateLimiter(rl);
    this.v4Out = Buffer.alloc(this.maxNumWant * 6);
    this.v6Out = Buffer.alloc(this.maxNumWant * 18);
  }

  // ------------------------------------------------------------ configuration

  /** Replaces the whitelist; undefined tracks any torrent. */
  setWhitelist(list: Iterable<Uint8Array | string> | undefined): void {
    if (list === undefined) {
      this.whitelist = undefined;
      return;
    }
    const set = new Set<string>();
    for (const h of list) set.add(infoHashKey(h));
    this.whitelist = set;
  }

  get whitelistSize(): number | undefined {
    return this.whitelist?.size;
  }

  /** Registers a user (or restores one with its totals, when loading from a store). */
  addUser(name: string, passkey: string, totals: { uploaded?: number; downloaded?: number; completed?: number } = {}): void {
    if (!PASSKEY_RE.test(passkey)) throw new RangeError('a passkey is 1 to 64 characters of A-Z a-z 0-9 _ -');
    if (this.usersByKey.has(passkey)) throw new RangeError('passkey already registered');
    const u: UserState = { name, passkey, number: this.usersByNumber.length, uploaded: totals.uploaded ?? 0, downloaded: totals.downloaded ?? 0, completed: totals.completed ?? 0 };
    this.usersByNumber.push(u);
    this.usersByKey.set(passkey, u);
  }

  /** Unregisters a passkey; its peers are refused from their next announce. */
  removeUser(passkey: string): boolean {
    const u = this.usersByKey.get(passkey);
    if (u === undefined) return false;
    this.usersByKey.delete(passkey);
    this.usersByNumber[u.number] = undefined;
    return true;
  }

  user(passkey: string): TrackerUser | undefined {
    const u = this.usersByKey.get(passkey);
    return u === undefined ? undefined : { name: u.name, passkey: u.passkey, uploaded: u.uploaded, downloaded: u.downloaded, completed: u.completed };
  }

  users(): TrackerUser[] {
    return [...this.usersByKey.values()].map((u) => ({ name: u.name, passkey: u.passkey, uploaded: u.uploaded, downloaded: u.downloaded, completed: u.completed }));
  }

  /** A fresh random passkey (32 hex digits) from the injected Random. */
  newPasskey(): string {
    return Buffer.from(this.random.bytes(16)).toString('hex');
  }

  // ------------------------------------------------------------ time

  /** Whole seconds on the registry's clock: the runtime's, shifted only if it starts below zero. */
  private secs(now: number): number {
    this.originSec ??= Math.min(0, Math.floor(now / 1000));
    this.nextSweepAt ??= now + this.sweepIntervalMs;
    return Math.max(0, Math.floor(now / 1000) - this.originSec);
  }

  private countAnnounce(now: number): void {
    const sec = Math.floor(now / 1000);
    if (sec !== this.rateSec) {
      const gap = Math.min(16, sec - this.rateSec);
      for (let i = 1; i <= gap; i++) this.rate[(this.rateSec + i) & 15] = 0;
      this.rateSec = sec;
    }
    this.rate[sec & 15]!++;
  }

  // ------------------------------------------------------------ addresses

  private addr(host: string): Addr | undefined {
    const hit = this.addrCache.get(host);
    if (hit !== undefined) return hit ?? undefined;
    let made: Addr | null = null;
    const raw = parseIp(host);
    if (raw !== undefined) made = this.makeAddr(raw);
    if (this.addrCache.size >= 4096) this.addrCache.clear();
    this.addrCache.set(host, made);
    return made ?? undefined;
  }

  private makeAddr(raw: Uint8Array): Addr {
    let ip = raw;
    if (raw.length === 16 && raw.subarray(0, 10).every((b) => b === 0) && raw[10] === 0xff && raw[11] === 0xff) ip = raw.slice(12);
    const ip16 = new Uint8Array(16);
    if (ip.length === 4) {
      ip16[10] = 0xff;
      ip16[11] = 0xff;
      ip16.set(ip, 12);
    } else {
      ip16.set(ip);
    }
    const family = ip.length === 4 ? 4 : 6;
    const rateKey = family === 4 ? formatIp(ip) : `${Buffer.from(ip.subarray(0, 8)).toString('hex')}/64`;
    return { ip, ip16, family, rateKey };
  }

  private admitAddr(now: number, a: Addr): boolean {
    return this.limiter === undefined || this.limiter.allow(now, a.rateKey);
  }

  /** Takes a rate-limit token for `host`, for requests the core does not answer itself (such as /stats). */
  admit(now: number, host: string): boolean {
    const a = this.addr(host);
    if (a === undefined) return false;
    if (this.admitAddr(now, a)) return true;
    this.failures['rate-limited']++;
    return false;
  }

  // ------------------------------------------------------------ announce (protocol-neutral)

  private refuse(kind: FailureKind, reason: string): AnnounceOutcome {
    return { ok: false, kind, reason };
  }

  private announce(now: number, input: AnnounceInput, family: 0 | 4 | 6): AnnounceOutcome {
    const swarm = this.swarm;
    const key = input.infoKey;
    if (this.whitelist !== undefined && !this.whitelist.has(key)) return this.refuse('unregistered-torrent', UNREGISTERED);
    let user: UserState | undefined;
    if (this.isPrivate) {
      if (input.passkey === undefined) return this.refuse('bad-passkey', 'passkey required');
      user = this.usersByKey.get(input.passkey);
      if (user === undefined) return this.refuse('bad-passkey', 'unregistered passkey');
    }
    const nowSec = this.secs(now);
    const pid = this.scratch.pid;
    const ipw = this.scratch.setIp(input.ip);
    const event = input.event;
    const port = input.port;

    if (event === 'stopped') {
      const t = swarm.get(key);
      const slot = t === undefined ? -1 : swarm.find(t, pid);
      if (t !== undefined && slot >= 0) {
        const why = this.checkIdentity(t, slot, ipw, input.key, user);
        if (why !== undefined) return why;
        if (user !== undefined) this.account(t, slot, user, input, 0, undefined, true);
        swarm.remove(t, slot);
      } else if (user !== undefined && this.lastReported !== undefined) {
        // Unknown here (a restart): its last report may be in the owner's store; credit the rest and forget it.
        const peer = this.peerKey(key);
        const prior = this.lastReported(peer);
        if (prior !== undefined && prior.passkey !== user.passkey) return this.refuse('peer-id-in-use', 'peer id in use by another user');
        if (prior !== undefined) this.credit(user, input, prior, 0, peer, true);
      }
      if (t === undefined) return { ok: true, t: undefined, n: 0, complete: 0, incomplete: 0, warning: undefined };
      return { ok: true, t, n: 0, complete: t.seeders, incomplete: t.count - t.seeders, warning: undefined };
    }

    const t = swarm.getOrCreate(key, nowSec);
    if (t === undefined) {
      this.peersRefused++;
      return this.refuse('tracker-full', 'tracker is full: too many torrents');
    }
    if (nowSec - t.lastPurge >= PURGE_EVERY_SEC) swarm.purge(t, nowSec);

    const seeder = input.left === 0;
    const flags = (seeder ? FLAG_SEEDER : 0) | (input.ip.length === 16 ? FLAG_V6 : 0) | (input.key !== undefined ? FLAG_KEY : 0) | (event === 'paused' ? FLAG_PAUSED : 0);
    const keyWord = input.key ?? 0;
    let warning: string | undefined;
    let slot = swarm.find(t, pid);
    if (slot >= 0 && nowSec - swarm.lastSeen(t, slot) > this.peerTimeout) {
      // Expired but not yet swept: it starts afresh, as if the tracker had never seen it
      // (its last report, if the owner kept it, is still found through lastReported).
      swarm.remove(t, slot);
      swarm.expired++;
      slot = -1;
    }
    if (slot >= 0) {
      const why = this.checkIdentity(t, slot, ipw, input.key, user);
      if (why !== undefined) return why;
      const old = swarm.flags(t, slot);
      // Once per peer: not again from a seeder, nor from a retransmission (whatever its `left`).
      const completed = event === 'completed' && (old & (FLAG_SEEDER | FLAG_COMPLETED)) === 0 ? 1 : 0;
      t.downloaded += completed;
      if (user !== undefined) this.account(t, slot, user, input, completed, undefined, false);
      swarm.update(t, slot, ipw, port, flags | (old & FLAG_COMPLETED) | (completed !== 0 ? FLAG_COMPLETED : 0), nowSec, keyWord);
    } else {
      // After a restart the owner's store still knows whose peer this is.
      let prior: ReportedCounters | null = null;
      if (user !== undefined && this.lastReported !== undefined) {
        prior = this.lastReported(this.peerKey(key)) ?? null;
        if (prior !== null && prior.passkey !== user.passkey) return this.refuse('peer-id-in-use', 'peer id in use by another user');
      }
      const stale = swarm.findEndpoint(t, ipw, port);
      if (stale >= 0) swarm.remove(t, stale);
      const completed = event === 'completed' ? 1 : 0;
      const r = swarm.insert(t, pid, ipw, port, flags | (completed !== 0 ? FLAG_COMPLETED : 0), nowSec, keyWord);
      t.downloaded += completed;
      if (typeof r === 'number') {
        slot = r;
        if (user !== undefined) {
          swarm.setUser(t, slot, user.number);
          this.account(t, slot, user, input, completed, prior, false);
        }
      } else {
        slot = -1;
        this.peersRefused++;
        warning = r === 'torrent-full' ? 'this swarm is full; you were not added to it' : 'the tracker is full; you were not added';
        if (user !== undefined && completed > 0) this.emitAccounting(user, 0, 0, completed);
      }
    }
    const n = swarm.select(t, slot, seeder || event === 'paused', family, input.numWant, nowSec, ipw, port);
    return { ok: true, t, n, complete: t.seeders, incomplete: t.count - t.seeders, warning };
  }

  /** Undefined when the announce may speak for the peer in `slot`; else the refusal. */
  private checkIdentity(t: Torrent, slot: number, ipw: Uint32Array, key: number | undefined, user: UserState | undefined): AnnounceOutcome | undefined {
    const swarm = this.swarm;
    if (user !== undefined && swarm.user(t, slot) !== user.number) return this.refuse('peer-id-in-use', 'peer id in use by another user');
    if (!swarm.sameIp(t, slot, ipw) && (swarm.flags(t, slot) & FLAG_KEY) !== 0 && (key === undefined || key !== swarm.key(t, slot))) {
      return this.refuse('peer-id-in-use', 'peer id in use from another address (key mismatch)');
    }
    return undefined;
  }

  /**
   * Credits the user with what the peer reported since its last report.
   * `fresh` is undefined for a peer the core holds (its record has the last
   * report); for a new record, the same user's last report the owner kept,
   * or null. `gone`: the peer leaves.
   */
  private account(t: Torrent, slot: number, user: UserState, input: AnnounceInput, completed: number, fresh: ReportedCounters | null | undefined, gone: boolean): void {
    const swarm = this.swarm;
    let last: { uploaded: number; downloaded: number } | undefined;
    const peer = this.lastReported !== undefined ? this.peerKey(input.infoKey) : undefined;
    if (fresh === undefined) {
      last = { uploaded: swarm.lastUploaded(t, slot), downloaded: swarm.lastDownloaded(t, slot) };
    } else if (input.event === 'started') {
      last = { uploaded: 0, downloaded: 0 };
    } else if (fresh !== null) {
      last = fresh;
    }
    swarm.setReported(t, slot, input.uploaded, input.downloaded);
    this.credit(user, input, last, completed, peer, gone || fresh !== undefined);
  }

  /**
   * Credits what `input` reports beyond `last` (nothing without one) and
   * emits the event; with `peer`, the event carries the new report when it
   * changed or `force` (a new or leaving peer).
   */
  private credit(user: UserState, input: AnnounceInput, last: { uploaded: number; downloaded: number } | undefined, completed: number, peer: string | undefined, force: boolean): void {
    const gone = input.event === 'stopped';
    let up = 0;
    let down = 0;
    // Without a last report nothing is credited (it may have been credited before a restart);
    // counters that went down mean a new client session: start over from here.
    if (last !== undefined && input.uploaded >= last.uploaded) up = input.uploaded - last.uploaded;
    if (last !== undefined && input.downloaded >= last.downloaded) down = input.downloaded - last.downloaded;
    const changed = peer !== undefined && (force || last === undefined || last.uploaded !== input.uploaded || last.downloaded !== input.downloaded);
    if (up > 0 || down > 0 || completed > 0 || changed) {
      this.emitAccounting(user, up, down, completed, changed ? peer : undefined, gone ? null : [input.uploaded, input.downloaded]);
    }
  }

  /** The key of the announcing peer (`scratch.pid`) in events and the owner's store: info hash and peer id, 40 latin1 characters. */
  private peerKey(infoKey: string): string {
    return infoKey + Buffer.from(this.scratch.pid.buffer, this.scratch.pid.byteOffset, 20).toString('latin1');
  }

  private emitAccounting(user: UserState, up: number, down: number, completed: number, peer?: string, reported?: readonly [number, number] | null): void {
    user.uploaded += up;
    user.downloaded += down;
    user.completed += completed;
    this.events.push(
      peer === undefined
        ? { type: 'accounting', passkey: user.passkey, uploaded: up, downloaded: down, completed }
        : { type: 'accounting', passkey: user.passkey, uploaded: up, downloaded: down, completed, peer, reported: reported ?? null },
    );
  }

  // ------------------------------------------------------------ scrape (protocol-neutral)

  private scrapeOne(key: string): { complete: number; downloaded: number; incomplete: number } {
    const t = this.whitelist === undefined || this.whitelist.has(key) ? this.swarm.get(key) : undefined;
    if (t === undefined) return { complete: 0, downloaded: 0, incomplete: 0 };
    return { complete: t.seeders, downloaded: t.downloaded, incomplete: t.count - t.seeders };
  }

  // ------------------------------------------------------------ HTTP

  /**
   * Answers a GET of `target` (path and query, as in the request line) from
   * `remote`. Announce and scrape answers are bencoded, with status 200 even
   * for a failure (BEP 3); other paths get a 404.
   */
  handleHttp(now: number, remote: Endpoint, target: string): HttpReply {
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    const query = q < 0 ? '' : target.slice(q + 1);
    const route = routeOf(path);
    if (route === undefined) return reply(Buffer.from('not found\n'), 404);
    const a = this.addr(remote.host);
    if (a === undefined) return reply(encodeFailure('bad source address'));
    if (!this.admitAddr(now, a)) {
      this.failures['rate-limited']++;
      return reply(encodeFailure('rate limit exceeded, slow down', 1));
    }
    const passkey = route.passkey ?? queryPasskey(query);
    try {
      return route.action === 'announce' ? this.httpAnnounce(now, a, query, passkey) : this.httpScrape(query, passkey);
    } catch (e) {
      if (e instanceof TrackerError) {
        this.failures['bad-request']++;
        return reply(encodeFailure(e.reason));
      }
      if (e instanceof CodecError) {
        this.failures['bad-request']++;
        return reply(encodeFailure('invalid request'));
      }
      throw e;
    }
  }

  private httpAnnounce(now: number, a: Addr, query: string, passkey: string | undefined): HttpReply {
    const p = parseAnnounceQuery(query, { defaultNumWant: this.defaultNumWant, maxNumWant: this.maxNumWant });
    this.httpAnnounces++;
    this.countAnnounce(now);
    let ip = a.ip;
    if (this.trustClientIp) {
      const given = (p.ipv4 !== undefined ? parseAddressParam(p.ipv4, 4, p.port) : undefined) ?? (p.ipv6 !== undefined ? parseAddressParam(p.ipv6, 6, p.port) : undefined) ?? (p.ip !== undefined ? parseIpParam(p.ip) : undefined);
      if (given !== undefined) ip = parseIp(given.host) ?? ip;
    }
    this.scratch.setPeerId(p.peerId);
    const out = this.announce(
      now,
      {
        infoKey: p.infoHash.toString('latin1'),
        ip,
        port: p.port,
        uploaded: p.uploaded,
        downloaded: p.downloaded,
        left: p.left,
        event: p.event,
        numWant: p.event === 'stopped' ? 0 : p.numWant,
        key: p.key === undefined ? undefined : keyNumber(p.key),
        passkey,
      },
      0,
    );
    if (!out.ok) {
      this.failures[out.kind]++;
      return reply(encodeFailure(out.reason));
    }
    if (p.compact === false) return reply(this.dictBody(out, a, p.noPeerId));
    return reply(this.compactBody(out, a));
  }

  /** The compact (BEP 23 + BEP 7) announce body, written directly from the peer records. */
  private compactBody(out: Extract<AnnounceOutcome, { ok: true }>, a: Addr): Buffer {
    const swarm = this.swarm;
    let n4 = 0;
    let n6 = 0;
    if (out.t !== undefined) {
      for (let i = 0; i < out.n; i++) {
        const slot = swarm.chosen[i]!;
        if ((swarm.flags(out.t, slot) & FLAG_V6) !== 0) n6 += swarm.writeCompact(out.t, slot, this.v6Out, n6);
        else n4 += swarm.writeCompact(out.t, slot, this.v4Out, n4);
      }
    }
    const parts: Buffer[] = [
      Buffer.from(`d8:completei${out.complete}e11:external ip${a.ip.length}:`, 'latin1'),
      Buffer.from(a.ip),
      Buffer.from(`10:incompletei${out.incomplete}e8:intervali${this.interval}e12:min intervali${this.minInterval}e5:peers${n4}:`, 'latin1'),
      this.v4Out.subarray(0, n4),
    ];
    if (n6 > 0) parts.push(Buffer.from(`6:peers6${n6}:`, 'latin1'), this.v6Out.subarray(0, n6));
    if (out.warning !== undefined) parts.push(Buffer.from(`15:warning message${Buffer.byteLength(out.warning)}:${out.warning}`, 'utf8'));
    parts.push(Buffer.from('e', 'latin1'));
    return Buffer.concat(parts);
  }

  /** The BEP 3 dictionary-list body (clients that send compact=0). */
  private dictBody(out: Extract<AnnounceOutcome, { ok: true }>, a: Addr, noPeerId: boolean): Buffer {
    const swarm = this.swarm;
    const peers: TrackerPeer[] = [];
    if (out.t !== undefined) {
      for (let i = 0; i < out.n; i++) {
        const slot = swarm.chosen[i]!;
        peers.push({ host: formatIp(swarm.ipView(out.t, slot)), port: swarm.port(out.t, slot), peerId: swarm.peerId(out.t, slot) });
      }
    }
    return encodeAnnounceResponse(
      { interval: this.interval, minInterval: this.minInterval, complete: out.complete, incomplete: out.incomplete, externalIp: formatIp(a.ip), warningMessage: out.warning, peers },
      { compact: false, noPeerId },
    );
  }

  private httpScrape(query: string, passkey: string | undefined): HttpReply {
    const hashes = parseScrapeQuery(query);
    this.httpScrapes++;
    if (this.isPrivate) {
      if (passkey === undefined) return this.httpFail('bad-passkey', 'passkey required');
      if (!this.usersByKey.has(passkey)) return this.httpFail('bad-passkey', 'unregistered passkey');
    }
    const files: ScrapeFile[] = [];
    if (hashes.length === 0) {
      if (!this.allowFullScrape) return this.httpFail('full-scrape', 'full scrape is not allowed; name the info hashes');
      for (const t of this.swarm.torrents.values()) {
        files.push({ infoHash: Buffer.from(t.key, 'latin1'), complete: t.seeders, downloaded: t.downloaded, incomplete: t.count - t.seeders });
      }
    } else {
      const seen = new Set<string>();
      for (const h of hashes) {
        const key = h.toString('latin1');
        if (seen.has(key)) continue;
        seen.add(key);
        files.push({ infoHash: h, ...this.scrapeOne(key) });
      }
    }
    return reply(encodeScrapeResponse(files));
  }

  private httpFail(kind: FailureKind, reason: string): HttpReply {
    this.failures[kind]++;
    return reply(encodeFailure(reason));
  }

  // ------------------------------------------------------------ UDP

  handleDatagram(now: number, from: Endpoint, data: Uint8Array): void {
    if (data.length < 16 || data.length > MAX_UDP_REQUEST) {
      this.droppedMalformed++;
      return;
    }
    const a = this.addr(from.host);
    if (a === undefined) {
      this.droppedMalformed++;
      return;
    }
    if (!this.admitAddr(now, a)) {
      this.droppedRateLimited++;
      return;
    }
    const action = readU32(data, 8);
    const tid = readU32(data, 12);
    if (action === ACTION_CONNECT) {
      if (readU32(data, 0) !== PROTOCOL_HI || readU32(data, 4) !== PROTOCOL_LO) {
        this.droppedMalformed++;
        return;
      }
      this.secs(now);
      const id = this.cids.issueWords(now, a.ip16, from.host);
      const out = Buffer.allocUnsafe(16);
      writeU32(out, 0, ACTION_CONNECT);
      writeU32(out, 4, tid);
      writeU32(out, 8, id[0]!);
      writeU32(out, 12, id[1]!);
      this.udpConnects++;
      this.transmits.push({ to: from, data: out });
      return;
    }
    if (!this.cids.verifyWords(now, a.ip16, from.host, readU32(data, 0), readU32(data, 4))) {
      this.droppedForged++;
      return;
    }
    if (action === 1 && data.length === 98 && this.fastAnnounce(now, from, a, data, tid)) return;
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    let req;
    try {
      req = decodeRequest(buf);
    } catch (e) {
      if (!(e instanceof CodecError)) throw e;
      if (action !== 1 && action !== 2) {
        this.droppedMalformed++;
        return;
      }
      this.udpError(from, tid, 'bad-request', e instanceof TrackerError ? e.reason : 'invalid request');
      return;
    }
    if (req.action === 'announce') this.udpAnnounce(now, from, a, req);
    else if (req.action === 'scrape') this.udpScrape(from, req);
  }

  /**
   * The common case, a plain 98-byte announce, read straight from the
   * datagram without the general decoder's copies. Returns false for
   * anything it does not handle (an unknown event, a byte count beyond
   * 2^53 - 1, port 0, an IP field to honour), which then goes the general way
   * and gets the decoder's exact error. Tests check both ways agree.
   */
  private fastAnnounce(now: number, from: Endpoint, a: Addr, data: Uint8Array, tid: number): boolean {
    const event = readU32(data, 80);
    const port = (data[96]! << 8) | data[97]!;
    if (event > 3 || port === 0 || (this.trustClientIp && readU32(data, 84) !== 0)) return false;
    const downloaded = readCount(data, 56);
    const left = readCount(data, 64);
    const uploaded = readCount(data, 72);
    if (downloaded < 0 || left < 0 || uploaded < 0) return false;
    this.udpAnnounces++;
    this.countAnnounce(now);
    const ev = UDP_EVENTS[event];
    const nw = readU32(data, 92) | 0;
    const numWant = ev === 'stopped' ? 0 : nw < 0 ? this.defaultNumWant : Math.min(nw, this.maxNumWant);
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.scratch.setPeerId(data, 36);
    const out = this.announce(
      now,
      { infoKey: buf.toString('latin1', 16, 36), ip: a.ip, port, uploaded, downloaded, left, event: ev, numWant, key: readU32(data, 88), passkey: undefined },
      a.family,
    );
    this.udpAnnounceReply(from, a, tid, out);
    return true;
  }

  private udpError(to: Endpoint, tid: number, kind: FailureKind, message: string): void {
    this.failures[kind]++;
    this.transmits.push({ to, data: encodeResponse({ action: 'error', transactionId: tid, message }) });
  }

  private udpAnnounce(now: number, from: Endpoint, a: Addr, req: UdpAnnounceRequest): void {
    this.udpAnnounces++;
    this.countAnnounce(now);
    if (req.port === 0) {
      this.udpError(from, req.transactionId, 'bad-request', 'invalid port');
      return;
    }
    let ip = a.ip;
    if (this.trustClientIp && req.ip !== undefined && a.family === 4) ip = parseIp(req.ip) ?? ip;
    const numWant = req.event === 'stopped' ? 0 : req.numWant === undefined || req.numWant < 0 ? this.defaultNumWant : Math.min(req.numWant, this.maxNumWant);
    this.scratch.setPeerId(req.peerId);
    const out = this.announce(
      now,
      {
        infoKey: infoHashKey(req.infoHash),
        ip,
        port: req.port,
        uploaded: req.uploaded,
        downloaded: req.downloaded,
        left: req.left,
        event: req.event,
        numWant,
        key: req.key,
        passkey: req.urlData === undefined ? undefined : urlDataPasskey(req.urlData),
      },
      a.family,
    );
    this.udpAnnounceReply(from, a, req.transactionId, out);
  }

  private udpAnnounceReply(from: Endpoint, a: Addr, tid: number, out: AnnounceOutcome): void {
    if (!out.ok) {
      this.udpError(from, tid, out.kind, out.reason);
      return;
    }
    const swarm = this.swarm;
    const size = a.family === 4 ? 6 : 18;
    const res = Buffer.allocUnsafe(20 + out.n * size);
    writeU32(res, 0, 1);
    writeU32(res, 4, tid);
    writeU32(res, 8, this.interval);
    writeU32(res, 12, clampU32(out.incomplete));
    writeU32(res, 16, clampU32(out.complete));
    let at = 20;
    if (out.t !== undefined) for (let i = 0; i < out.n; i++) at += swarm.writeCompact(out.t, swarm.chosen[i]!, res, at);
    this.transmits.push({ to: from, data: res });
  }

  private udpScrape(from: Endpoint, req: UdpScrapeRequest): void {
    this.udpScrapes++;
    if (this.isPrivate) {
      this.udpError(from, req.transactionId, 'bad-passkey', 'scrape needs a passkey; use HTTP');
      return;
    }
    const files = req.infoHashes.map((h) => {
      const s = this.scrapeOne(infoHashKey(h));
      return { seeders: clampU32(s.complete), completed: clampU32(s.downloaded), leechers: clampU32(s.incomplete) };
    });
    this.transmits.push({ to: from, data: encodeResponse({ action: 'scrape', transactionId: req.transactionId, files }) });
  }

  // ------------------------------------------------------------ DatagramCore polls, timeouts

  pollTransmit(): Transmit | undefined {
    return this.transmits.shift();
  }

  pollEvent(): TrackerEvent | undefined {
    return this.events.shift();
  }

  pollTimeout(): number | undefined {
    return this.nextSweepAt;
  }

  handleTimeout(now: number): void {
    if (this.nextSweepAt === undefined || now < this.nextSweepAt) return;
    const done = this.swarm.sweepStep(this.secs(now), this.sweepBatch);
    if (done) {
      this.limiter?.sweep(now);
      this.nextSweepAt = now + this.sweepIntervalMs;
    } else {
      this.nextSweepAt = now;
    }
  }

  /** A whole sweep pass now: expired peers and empty torrents go. */
  sweep(now: number): void {
    const nowSec = this.secs(now);
    this.swarm.sweepAll(nowSec);
    this.limiter?.sweep(now);
    this.nextSweepAt = now + this.sweepIntervalMs;
  }

  // ------------------------------------------------------------ stats

  stats(now: number): TrackerStats {
    const sec = Math.floor(now / 1000);
    let sum = 0;
    for (let i = 1; i <= 10; i++) {
      const s = sec - i;
      if (s <= this.rateSec && this.rateSec - s < 16) sum += this.rate[s & 15]!;
    }
    const swarm = this.swarm;
    return {
      torrents: swarm.torrents.size,
      peers: swarm.peers,
      seeders: swarm.seeders,
      leechers: swarm.leechers,
      users: this.usersByKey.size,
      announcesPerSecond: sum / 10,
      announces: { http: this.httpAnnounces, udp: this.udpAnnounces },
      scrapes: { http: this.httpScrapes, udp: this.udpScrapes },
      udpConnects: this.udpConnects,
      failures: { ...this.failures },
      dropped: { malformed: this.droppedMalformed, forgedConnectionId: this.droppedForged, rateLimited: this.droppedRateLimited },
      peersRefused: this.peersRefused,
      peersExpired: swarm.expired,
      torrentsEvicted: swarm.evicted,
      peerMemoryBytes: swarm.arena.reservedBytes,
    };
  }

  /**
   * The `limit` swarms with the most peers, most first, ties by info hash
   * (for dashboards). One pass over the torrents; the kept list is bounded.
   */
  topSwarms(limit: number): SwarmSummary[] {
    const max = Math.max(0, Math.floor(limit));
    const kept: Torrent[] = [];
    const before = (a: Torrent, b: Torrent): boolean => a.count > b.count || (a.count === b.count && a.key < b.key);
    if (max === 0) return [];
    for (const t of this.swarm.torrents.values()) {
      if (kept.length === max && !before(t, kept[max - 1]!)) continue;
      let i = kept.length === max ? max - 1 : kept.length;
      while (i > 0 && before(t, kept[i - 1]!)) {
        kept[i] = kept[i - 1]!;
        i--;
      }
      kept[i] = t;
    }
    return kept.map((t) => ({ infoHash: Buffer.from(t.key, 'latin1').toString('hex'), seeders: t.seeders, leechers: t.count - t.seeders, downloaded: t.downloaded }));
  }

  /** Counts of one torrent, as a scrape would give them. */
  scrape(infoHash: Uint8Array | string): { complete: number; downloaded: number; incomplete: number } {
    return this.scrapeOne(infoHashKey(infoHash));
  }

  /** The stored peers of a torrent (for tests and inspection; allocates). */
  peersOf(infoHash: Uint8Array | string): { peerId: Buffer; host: string; port: number; seeder: boolean }[] {
    const t = this.swarm.get(infoHashKey(infoHash));
    if (t === undefined) return [];
    const out: { peerId: Buffer; host: string; port: number; seeder: boolean }[] = [];
    for (let i = 0; i < t.count; i++) {
      out.push({ peerId: this.swarm.peerId(t, i), host: formatIp(this.swarm.ipView(t, i)), port: this.swarm.port(t, i), seeder: (this.swarm.flags(t, i) & FLAG_SEEDER) !== 0 });
    }
    return out;
  }
}

// ---------------------------------------------------------------- routes and passkeys

interface Route {
  readonly action: 'announce' | 'scrape';
  readonly passkey: string | undefined;
}

/** `/announce`, `/announce/<pk>`, `/<pk>/announce`, and the same for scrape. */
export function routeOf(path: string): Route | undefined {
  const seg = path.split('/');
  if (seg[0] !== '' || seg.length < 2 || seg.length > 3) return undefined;
  const isAction = (s: string | undefined): s is 'announce' | 'scrape' => s === 'announce' || s === 'scrape';
  if (seg.length === 2) return isAction(seg[1]) ? { action: seg[1], passkey: undefined } : undefined;
  if (isAction(seg[1])) return { action: seg[1], passkey: seg[2] === '' ? undefined : seg[2] };
  if (isAction(seg[2]) && seg[1] !== '') return { action: seg[2], passkey: seg[1] };
  return undefined;
}

/** The `passkey` query parameter, if any (passkeys are plain characters; no decoding needed). */
function queryPasskey(query: string): string | undefined {
  for (const part of query.split('&', 256)) {
    if (part.startsWith('passkey=')) return part.slice(8);
  }
  return undefined;
}

/** The passkey in BEP 41 URLData (`/announce/<pk>`, `/<pk>/announce`, or `?passkey=`). */
function urlDataPasskey(urlData: Uint8Array): string | undefined {
  const text = Buffer.from(urlData.buffer, urlData.byteOffset, urlData.byteLength).toString('latin1');
  const q = text.indexOf('?');
  const route = routeOf(q < 0 ? text : text.slice(0, q));
  return route?.passkey ?? (q < 0 ? undefined : queryPasskey(text.slice(q + 1)));
}

function parseIpParam(value: string): Endpoint | undefined {
  const ip = parseIp(value);
  return ip === undefined ? undefined : { host: formatIp(ip), port: 0 };
}
