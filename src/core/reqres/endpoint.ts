/**
 * A sans-I/O request/response endpoint over datagrams: the smallest useful
 * protocol core, and the proof that one core runs unchanged on the real
 * runtime and in the simulator.
 *
 * As a client, `request(now, to, payload)` sends a request and retransmits it
 * with exponential backoff (retransmitMs, then x backoff each time, capped at
 * maxRetransmitMs) until a response arrives from the address it was sent to,
 * or `maxAttempts` transmissions have each gone unanswered for their whole
 * timeout. The outcome is an event: `response` (with the round-trip time of
 * the last transmission, the time since the first one and the number of
 * transmissions) or `timeout`. Responses from another address or for unknown
 * transaction ids are counted and ignored.
 *
 * As a server (when given a `responder`), it answers requests and remembers
 * each answer per (client address, transaction id) for `dedupWindowMs`, so a
 * retransmitted request gets the very same answer without the responder being
 * called again: at-most-once execution within the window. The cache holds at
 * most `maxCachedResponses` answers; beyond that the oldest are evicted (and
 * counted), which weakens at-most-once for them. Expired answers are dropped
 * lazily, as requests arrive, so the server never needs a timer.
 *
 * Malformed datagrams are counted and dropped; no network input makes a
 * method throw. There is no I/O, no clock and no timer in here: every input
 * carries the time, and the owner asks `pollTimeout` when to call back.
 */
import { endpointKey, sameEndpoint } from '../../runtime/contract.js';
import type { DatagramCore, Endpoint, Random, Transmit } from '../../runtime/contract.js';
import { MAX_PAYLOAD, decodeMessage, encodeMessage } from './wire.js';

export type Responder = (request: Uint8Array, from: Endpoint) => Uint8Array;

export interface ReqResOptions {
  /** Source of transaction ids. */
  random: Random;
  /** Timeout of the first transmission, in ms. Default 500. */
  retransmitMs?: number;
  /** Each retransmission waits this many times longer than the previous one. Default 2. */
  backoff?: number;
  /** Upper bound of one transmission's timeout. Default 60 000 ms. */
  maxRetransmitMs?: number;
  /** Transmissions of a request before it times out. Default 4. */
  maxAttempts?: number;
  /** Answers requests when given; without it requests are counted and ignored. */
  responder?: Responder;
  /** How long an answer is kept for retransmitted requests, in ms. Default 10 000. 0 disables the cache. */
  dedupWindowMs?: number;
  /** Bound on cached answers. Default 1024. */
  maxCachedResponses?: number;
}

export type ReqResEvent =
  | {
      readonly type: 'response';
      readonly id: number;
      /** A view of the received datagram. */
      readonly payload: Uint8Array;
      /** Time from the last transmission to the response. */
      readonly rtt: number;
      /** Time from the first transmission to the response. */
      readonly elapsed: number;
      /** Transmissions made. */
      readonly attempts: number;
    }
  | { readonly type: 'timeout'; readonly id: number; readonly attempts: number };

export interface ReqResStats {
  requestsSent: number;
  retransmissions: number;
  responsesReceived: number;
  timeouts: number;
  /** Responses for no request in flight (late, duplicate or forged). */
  unknownResponses: number;
  /** Responses for a request in flight but from another address. */
  wrongSourceResponses: number;
  requestsAnswered: number;
  /** Retransmitted requests answered from the cache. */
  duplicateRequests: number;
  /** Requests received without a responder. */
  unhandledRequests: number;
  cacheEvictions: number;
  malformed: number;
}

interface Pending {
  readonly id: number;
  readonly to: Endpoint;
  readonly packet: Uint8Array;
  readonly firstSentAt: number;
  lastSentAt: number;
  attempts: number;
  rto: number;
  deadline: number;
}

interface CachedAnswer {
  readonly packet: Uint8Array;
  readonly expires: number;
}

function checkNumber(name: string, value: number, min: number, integer = false): number {
  if (!(value >= min) || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new RangeError(`${name} must be ${integer ? 'an integer' : 'a finite number'} >= ${min}, got ${value}`);
  }
  return value;
}

export class ReqResEndpoint implements DatagramCore<ReqResEvent> {
  readonly stats: ReqResStats = {
    requestsSent: 0,
    retransmissions: 0,
    responsesReceived: 0,
    timeouts: 0,
    unknownResponses: 0,
    wrongSourceResponses: 0,
    requestsAnswered: 0,
    duplicateRequests: 0,
    unhandledRequests: 0,
    cacheEvictions: 0,
    malformed: 0,
  };

  private readonly random: Random;
  private readonly retransmitMs: number;
  private readonly backoff: number;
  private readonly maxRetransmitMs: number;
  private readonly maxAttempts: number;
  private readonly responder: Responder | undefined;
  private readonly dedupWindowMs: number;
  private readonly maxCached: number;

  private readonly pending = new Map<number, Pending>();
  /** Answers in insertion order, which is also expiry order. */
  private readonly cache = new Map<string, CachedAnswer>();
  private transmits: Transmit[] = [];
  private transmitHead = 0;
  private events: ReqResEvent[] = [];
  private eventHead = 0;
  private nextDeadline: number | undefined;
  private deadlineDirty = false;

  constructor(options: ReqResOptions) {
    this.random = options.random;
    this.retransmitMs = checkNumber('retransmitMs', options.retransmitMs ?? 500, Number.MIN_VALUE);
    this.backoff = checkNumber('backoff', options.backoff ?? 2, 1);
    this.maxRetransmitMs = checkNumber('maxRetransmitMs', options.maxRetransmitMs ?? 60_000, this.retransmitMs);
    this.maxAttempts = checkNumber('maxAttempts', options.maxAttempts ?? 4, 1, true);
    this.responder = options.responder;
    this.dedupWindowMs = checkNumber('dedupWindowMs', options.dedupWindowMs ?? 10_000, 0);
    this.maxCached = checkNumber('maxCachedResponses', options.maxCachedResponses ?? 1024, 1, true);
  }

  /** Requests in flight. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Answers currently cached for deduplication. */
  get cachedResponses(): number {
    return this.cache.size;
  }

  /**
   * Sends a request to `to` and returns its transaction id. Throws RangeError
   * if the payload is larger than MAX_PAYLOAD bytes.
   */
  request(now: number, to: Endpoint, payload: Uint8Array): number {
    if (payload.length > MAX_PAYLOAD) throw new RangeError(`payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD}`);
    const id = this.freshId();
    const packet = encodeMessage({ kind: 'request', id, payload });
    const entry: Pending = {
      id,
      to: { host: to.host, port: to.port },
      packet,
      firstSentAt: now,
      lastSentAt: now,
      attempts: 1,
      rto: this.retransmitMs,
      deadline: now + this.retransmitMs,
    };
    this.pending.set(id, entry);
    this.stats.requestsSent++;
    this.transmits.push({ to: entry.to, data: packet });
    this.markDeadlines();
    return id;
  }

  /** Forgets a request in flight without an event. Returns false if it was not in flight. */
  cancel(id: number): boolean {
    const removed = this.pending.delete(id);
    if (removed) this.markDeadlines();
    return removed;
  }

  handleDatagram(now: number, from: Endpoint, data: Uint8Array): void {
    const decoded = decodeMessage(data);
    if (!decoded.ok) {
      this.stats.malformed++;
      return;
    }
    const { kind, id, payload } = decoded.message;
    if (kind === 'request') this.onRequest(now, from, id, payload);
    else this.onResponse(now, from, id, payload);
  }

  handleTimeout(now: number): void {
    const nextDeadline = this.pollTimeout();
    if (nextDeadline === undefined || nextDeadline > now) return;
    for (const entry of this.pending.values()) {
      if (entry.deadline > now) continue;
      if (entry.attempts >= this.maxAttempts) {
        this.pending.delete(entry.id);
        this.stats.timeouts++;
        this.events.push({ type: 'timeout', id: entry.id, attempts: entry.attempts });
        continue;
      }
      entry.attempts++;
      entry.rto = Math.min(entry.rto * this.backoff, this.maxRetransmitMs);
      entry.lastSentAt = now;
      entry.deadline = now + entry.rto;
      this.stats.retransmissions++;
      this.transmits.push({ to: entry.to, data: entry.packet });
    }
    this.markDeadlines();
  }

  pollTransmit(): Transmit | undefined {
    if (this.transmitHead >= this.transmits.length) return undefined;
    const t = this.transmits[this.transmitHead++];
    if (this.transmitHead === this.transmits.length) {
      this.transmits = [];
      this.transmitHead = 0;
    }
    return t;
  }

  pollEvent(): ReqResEvent | undefined {
    if (this.eventHead >= this.events.length) return undefined;
    const e = this.events[this.eventHead++];
    if (this.eventHead === this.events.length) {
      this.events = [];
      this.eventHead = 0;
    }
    return e;
  }

  pollTimeout(): number | undefined {
    if (this.deadlineDirty) {
      let min: number | undefined;
      for (const entry of this.pending.values()) if (min === undefined || entry.deadline < min) min = entry.deadline;
      this.nextDeadline = min;
      this.deadlineDirty = false;
    }
    return this.nextDeadline;
  }

  private markDeadlines(): void {
    this.deadlineDirty = true;
  }

  private freshId(): number {
    for (let tries = 0; tries < 1000; tries++) {
      const id = this.random.u32();
      if (!this.pending.has(id)) return id;
    }
    throw new Error('could not find a free transaction id');
  }

  private onRequest(now: number, from: Endpoint, id: number, payload: Uint8Array): void {
    this.expireCache(now);
    const key = `${endpointKey(from)}#${id}`;
    const cached = this.cache.get(key);
    if (cached !== undefined) {
      this.stats.duplicateRequests++;
      this.transmits.push({ to: from, data: cached.packet });
      return;
    }
    if (this.responder === undefined) {
      this.stats.unhandledRequests++;
      return;
    }
    const answer = this.responder(payload, from);
    const packet = encodeMessage({ kind: 'response', id, payload: answer });
    if (this.dedupWindowMs > 0) {
      if (this.cache.size >= this.maxCached) {
        const oldest = this.cache.keys().next();
        if (oldest.done !== true) {
          this.cache.delete(oldest.value);
          this.stats.cacheEvictions++;
        }
      }
      this.cache.set(key, { packet, expires: now + this.dedupWindowMs });
    }
    this.stats.requestsAnswered++;
    this.transmits.push({ to: { host: from.host, port: from.port }, data: packet });
  }

  private onResponse(now: number, from: Endpoint, id: number, payload: Uint8Array): void {
    const entry = this.pending.get(id);
    if (entry === undefined) {
      this.stats.unknownResponses++;
      return;
    }
    if (!sameEndpoint(from, entry.to)) {
      this.stats.wrongSourceResponses++;
      return;
    }
    this.pending.delete(id);
    this.markDeadlines();
    this.stats.responsesReceived++;
    this.events.push({
      type: 'response',
      id,
      payload,
      rtt: now - entry.lastSentAt,
      elapsed: now - entry.firstSentAt,
      attempts: entry.attempts,
    });
  }

  private expireCache(now: number): void {
    for (const [key, answer] of this.cache) {
      if (answer.expires > now) break;
      this.cache.delete(key);
    }
  }
}
