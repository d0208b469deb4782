/**
 * A sans-I/O UDP tracker client (BEP 15).
 *
 * The owner calls `announce(now, tracker, params)` or
 * `scrape(now, tracker, infoHashes)` and gets a request id back; it then
 * feeds datagrams and timeouts in and drains transmits and events out, as
 * for any `DatagramCore`.
 *
 * For each request the client:
 *  - uses a cached connection id for the tracker when it has one that is
 *    still usable (BEP 15: for one minute after it was received), or else
 *    sends a connect request first. A request started while another one is
 *    already connecting to the same tracker waits for that connect instead
 *    of sending its own (it sends its own only if its own retransmission
 *    deadline comes first);
 *  - picks every transaction id from the injected Random, and accepts a
 *    response only when the source address, the transaction id and the
 *    action all match what it sent (an error response, action 3, matches any
 *    outstanding transaction);
 *  - retransmits after base·2^n (BEP 15: 15 s · 2^n), n counting up from 0
 *    with every retransmission and going back to 0 when the tracker answers
 *    a connect; when the connection id expired in the meantime the
 *    retransmission is a new connect. After the wait of the attempt with
 *    n = maxRetransmitExponent (BEP 15: 8) runs out, the request times out.
 *
 * Datagrams that do not decode are counted in `stats.malformed`, valid ones
 * nobody asked for in `stats.unsolicited`; neither ever throws.
 *
 * Tracker intervals are reported in seconds, as trackers send them; every
 * time the core handles is in milliseconds.
 */
import { CodecError } from '../codec/errors.js';
import type { AnnounceParams } from '../codec/tracker-http.js';
import {
  MAX_SCRAPE_HASHES,
  TrackerError,
  decodeResponse,
  encodeRequest,
  udpFamily,
  type AddressFamily,
  type UdpAnnounceRequest,
  type UdpResponse,
} from '../codec/tracker-udp.js';
import { formatIp, parseIp } from '../codec/ip.js';
import type { DatagramCore, Endpoint, Random, Transmit } from '../runtime/contract.js';

export interface UdpTrackerClientOptions {
  readonly random: Random;
  /** The first retransmission timeout, in ms. BEP 15: 15 000. */
  readonly retransmitBaseMs?: number;
  /** The largest n in base·2^n; the request fails when that wait runs out. BEP 15: 8. */
  readonly maxRetransmitExponent?: number;
  /** How long a connection id is used after it was received, in ms. BEP 15: 60 000. */
  readonly connectionIdTtlMs?: number;
}

/** An announce over UDP: the common parameters, plus the IPv4 `IP address` field and BEP 41 URLData. */
export interface UdpAnnounceParams extends AnnounceParams {
  readonly ip?: string | undefined;
  readonly urlData?: Uint8Array | undefined;
}

export interface UdpScrapeResult {
  readonly infoHash: Buffer;
  readonly seeders: number;
  readonly completed: number;
  readonly leechers: number;
}

export type UdpTrackerEvent =
  | {
      readonly type: 'announced';
      readonly id: number;
      readonly tracker: Endpoint;
      /** Seconds until the next regular announce. */
      readonly interval: number;
      readonly leechers: number;
      readonly seeders: number;
      readonly peers: readonly Endpoint[];
    }
  | { readonly type: 'scraped'; readonly id: number; readonly tracker: Endpoint; readonly files: readonly UdpScrapeResult[] }
  | { readonly type: 'error'; readonly id: number; readonly tracker: Endpoint; readonly message: string }
  | { readonly type: 'timeout'; readonly id: number; readonly tracker: Endpoint };

export interface UdpTrackerClientStats {
  /** Datagrams sent, retransmissions included. */
  sent: number;
  retransmits: number;
  /** Datagrams that did not decode as a BEP 15 response. */
  malformed: number;
  /** Well-formed responses that matched no outstanding transaction (address, id and action). */
  unsolicited: number;
}

type Body = { readonly kind: 'announce'; readonly params: UdpAnnounceParams } | { readonly kind: 'scrape'; readonly infoHashes: readonly Buffer[] };
type TxAction = 'connect' | 'announce' | 'scrape';

interface Request {
  readonly id: number;
  readonly tracker: Endpoint;
  /** Canonical address key of the tracker. */
  readonly key: string;
  readonly family: AddressFamily;
  readonly body: Body;
  phase: 'connect' | 'request';
  /** The outstanding transaction; undefined while waiting on another request's connect. */
  txid: number | undefined;
  txAction: TxAction;
  n: number;
  deadline: number;
}

interface Connection {
  readonly id: bigint;
  readonly expiresAt: number;
}

/** An address key that does not depend on how the address was spelled (IPv4-mapped IPv6 counts as IPv4). */
function trackerKey(e: Endpoint): string | undefined {
  const ip = parseIp(e.host);
  if (!ip) return undefined;
  const fam = udpFamily(e.host);
  const host = ip.length === 16 && fam === 4 ? formatIp(ip.subarray(12)) : formatIp(ip);
  return `${host}|${e.port}`;
}

export class UdpTrackerClient implements DatagramCore<UdpTrackerEvent> {
  readonly stats: UdpTrackerClientStats = { sent: 0, retransmits: 0, malformed: 0, unsolicited: 0 };

  private readonly random: Random;
  private readonly baseMs: number;
  private readonly maxN: number;
  private readonly ttlMs: number;
  private nextId = 1;
  private readonly requests = new Map<number, Request>();
  private readonly transactions = new Map<string, Request>();
  private readonly connections = new Map<string, Connection>();
  private readonly transmits: Transmit[] = [];
  private readonly events: UdpTrackerEvent[] = [];

  constructor(options: UdpTrackerClientOptions) {
    this.random = options.random;
    this.baseMs = options.retransmitBaseMs ?? 15_000;
    this.maxN = options.maxRetransmitExponent ?? 8;
    this.ttlMs = options.connectionIdTtlMs ?? 60_000;
    if (!(this.baseMs > 0) || !Number.isFinite(this.baseMs)) throw new RangeError('retransmitBaseMs must be a positive number');
    if (!Number.isInteger(this.maxN) || this.maxN < 0 || this.maxN > 30) throw new RangeError('maxRetransmitExponent must be an integer from 0 to 30');
    if (!(this.ttlMs >= 0) || !Number.isFinite(this.ttlMs)) throw new RangeError('connectionIdTtlMs must be a non-negative number');
  }

  /** Starts an announce; throws TrackerError at once when the tracker or the parameters are invalid. */
  announce(now: number, tracker: Endpoint, params: UdpAnnounceParams): number {
    // Encode once with placeholders, so bad parameters fail here rather than later.
    encodeRequest(this.announceRequest(params, 0n, 0));
    return this.start(now, tracker, { kind: 'announce', params });
  }

  /** Starts a scrape of 1 to 74 torrents; throws TrackerError at once when the input is invalid. */
  scrape(now: number, tracker: Endpoint, infoHashes: readonly Uint8Array[]): number {
    if (infoHashes.length > MAX_SCRAPE_HASHES) throw new TrackerError('TOO_MANY_HASHES', `at most ${MAX_SCRAPE_HASHES} info hashes per scrape`);
    const hashes = infoHashes.map((h) => Buffer.from(h));
    encodeRequest({ action: 'scrape', connectionId: 0n, transactionId: 0, infoHashes: hashes });
    return this.start(now, tracker, { kind: 'scrape', infoHashes: hashes });
  }

  /** Forgets a request; no event will come for it. False when it was not pending. */
  cancel(id: number): boolean {
    const req = this.requests.get(id);
    if (!req) return false;
    this.finish(req);
    return true;
  }

  /** Requests still waiting for an answer. */
  get pending(): number {
    return this.requests.size;
  }

  /** Whether a usable connection id is cached for the tracker at `now`. */
  hasConnection(now: number, tracker: Endpoint): boolean {
    const key = trackerKey(tracker);
    return key !== undefined && this.connection(key, now) !== undefined;
  }

  handleDatagram(now: number, from: Endpoint, data: Uint8Array): void {
    const key = trackerKey(from);
    const family = udpFamily(from.host);
    if (key === undefined || family === undefined) {
      this.stats.malformed++;
      return;
    }
    let res: UdpResponse;
    try {
      res = decodeResponse(data, family);
    } catch (e) {
      if (e instanceof CodecError) {
        this.stats.malformed++;
        return;
      }
      throw e;
    }
    const req = this.transactions.get(`${key}#${res.transactionId}`);
    if (!req || (res.action !== 'error' && res.action !== req.txAction)) {
      this.stats.unsolicited++;
      return;
    }
    switch (res.action) {
      case 'error':
        // A tracker that refuses a request may have forgotten our connection id.
        if (req.phase === 'request') this.connections.delete(key);
        this.finish(req);
        this.events.push({ type: 'error', id: req.id, tracker: req.tracker, message: res.message });
        return;
      case 'connect': {
        const conn: Connection = { id: res.connectionId, expiresAt: now + this.ttlMs };
        this.connections.set(key, conn);
        for (const r of this.requests.values()) {
          if (r.key === key && r.phase === 'connect') {
            r.n = 0;
            this.sendRequest(r, conn, now);
          }
        }
        return;
      }
      case 'announce':
        if (req.body.kind !== 'announce') break;
        this.finish(req);
        this.events.push({
          type: 'announced',
          id: req.id,
          tracker: req.tracker,
          interval: res.interval,
          leechers: res.leechers,
          seeders: res.seeders,
          peers: res.peers,
        });
        return;
      case 'scrape': {
        if (req.body.kind !== 'scrape') break;
        const hashes = req.body.infoHashes;
        if (res.files.length > hashes.length) {
          this.stats.malformed++;
          return;
        }
        this.finish(req);
        this.events.push({
          type: 'scraped',
          id: req.id,
          tracker: req.tracker,
          files: res.files.map((f, i) => ({ infoHash: hashes[i]!, seeders: f.seeders, completed: f.completed, leechers: f.leechers })),
        });
        return;
      }
    }
    this.stats.unsolicited++;
  }

  handleTimeout(now: number): void {
    for (const [key, conn] of this.connections) if (conn.expiresAt <= now) this.connections.delete(key);
    for (const req of [...this.requests.values()]) {
      if (req.deadline > now || !this.requests.has(req.id)) continue;
      if (req.n >= this.maxN) {
        this.finish(req);
        this.events.push({ type: 'timeout', id: req.id, tracker: req.tracker });
        continue;
      }
      req.n++;
      const conn = req.phase === 'request' ? this.connection(req.key, now) : undefined;
      if (conn) this.sendRequest(req, conn, now);
      else this.sendConnect(req, now);
    }
  }

  pollTransmit(): Transmit | undefined {
    return this.transmits.shift();
  }

  pollEvent(): UdpTrackerEvent | undefined {
    return this.events.shift();
  }

  pollTimeout(): number | undefined {
    let min: number | undefined;
    for (const r of this.requests.values()) if (min === undefined || r.deadline < min) min = r.deadline;
    return min;
  }

  // ---------------------------------------------------------------- internals

  private start(now: number, tracker: Endpoint, body: Body): number {
    const key = trackerKey(tracker);
    const family = udpFamily(tracker.host);
    if (key === undefined || family === undefined) throw new TrackerError('BAD_PARAM', `tracker host ${tracker.host} is not an IP address`);
    if (!Number.isInteger(tracker.port) || tracker.port < 1 || tracker.port > 65535) throw new TrackerError('BAD_PORT', `tracker port ${tracker.port} is out of range`);
    for (const [k, c] of this.connections) if (c.expiresAt <= now) this.connections.delete(k);
    const req: Request = { id: this.nextId++, tracker, key, family, body, phase: 'connect', txid: undefined, txAction: 'connect', n: 0, deadline: now };
    this.requests.set(req.id, req);
    const conn = this.connection(key, now);
    if (conn) this.sendRequest(req, conn, now);
    else this.sendConnect(req, now);
    return req.id;
  }

  private connection(key: string, now: number): Connection | undefined {
    const c = this.connections.get(key);
    return c && c.expiresAt > now ? c : undefined;
  }

  private timeoutFor(n: number): number {
    return this.baseMs * 2 ** n;
  }

  private sendConnect(req: Request, now: number): void {
    const retransmit = req.phase === 'connect' && req.txid !== undefined;
    req.phase = 'connect';
    req.deadline = now + this.timeoutFor(req.n);
    if (!retransmit) {
      this.release(req);
      // Wait for another request's connect to the same tracker rather than send a second one.
      for (const r of this.requests.values()) {
        if (r !== req && r.key === req.key && r.phase === 'connect' && r.txid !== undefined) return;
      }
      this.claim(req, 'connect');
    }
    this.transmit(req, encodeRequest({ action: 'connect', transactionId: req.txid! }), retransmit);
  }

  private sendRequest(req: Request, conn: Connection, now: number): void {
    const action: TxAction = req.body.kind;
    const retransmit = req.phase === 'request' && req.txAction === action && req.txid !== undefined;
    req.phase = 'request';
    req.deadline = now + this.timeoutFor(req.n);
    if (!retransmit) {
      this.release(req);
      this.claim(req, action);
    }
    const txid = req.txid!;
    const data =
      req.body.kind === 'announce'
        ? encodeRequest(this.announceRequest(req.body.params, conn.id, txid))
        : encodeRequest({ action: 'scrape', connectionId: conn.id, transactionId: txid, infoHashes: req.body.infoHashes });
    this.transmit(req, data, retransmit);
  }

  private announceRequest(p: UdpAnnounceParams, connectionId: bigint, transactionId: number): UdpAnnounceRequest {
    return {
      action: 'announce',
      connectionId,
      transactionId,
      infoHash: p.infoHash,
      peerId: p.peerId,
      downloaded: p.downloaded,
      left: p.left,
      uploaded: p.uploaded,
      event: p.event,
      ip: p.ip,
      key: p.key,
      numWant: p.numWant,
      port: p.port,
      urlData: p.urlData,
    };
  }

  private transmit(req: Request, data: Uint8Array, retransmit: boolean): void {
    this.stats.sent++;
    if (retransmit) this.stats.retransmits++;
    this.transmits.push({ to: req.tracker, data });
  }

  /** Gives the request a fresh transaction id, unique among those outstanding for its tracker. */
  private claim(req: Request, action: TxAction): void {
    let txid = this.random.u32() >>> 0;
    for (let tries = 0; this.transactions.has(`${req.key}#${txid}`); tries++) {
      txid = tries < 32 ? this.random.u32() >>> 0 : (txid + 1) >>> 0;
    }
    req.txid = txid;
    req.txAction = action;
    this.transactions.set(`${req.key}#${txid}`, req);
  }

  private release(req: Request): void {
    if (req.txid !== undefined) this.transactions.delete(`${req.key}#${req.txid}`);
    req.txid = undefined;
  }

  private finish(req: Request): void {
    this.release(req);
    this.requests.delete(req.id);
  }
}
