/**
 * Which tracker to announce to, with which event, and when: BEP 12
 * announce-list tiers plus the announce schedule of one torrent. Pure: time
 * is passed in, randomness is injected, nothing is sent from here.
 *
 * Tiers (BEP 12): each tier is shuffled once, when the list is read. An
 * announce *round* tries the trackers of the first tier in order, then those
 * of the next tier, and so on, until one answers; the tracker that answers
 * moves to the front of its tier. Every round starts again from the first
 * tracker of the first tier. When every tracker of every tier fails, the
 * round is retried after a backoff that doubles with each failed round.
 *
 * Events: a tracker that has not yet accepted an announce from this session
 * gets `started`. After `complete(now)`, the next accepted announce carries
 * `completed`, once per torrent (when that tracker has not had `started`
 * yet, it gets `started` instead, and learns from `left=0` that we are a
 * seed; it is not told `completed`, which would count a download it never
 * saw). `stop(now)` sends `stopped`, best effort (one attempt each), to every
 * tracker that accepted an announce in this session.
 *
 * The driver asks `nextAnnounceAt()` when to wake, calls `poll(now)` at or
 * after that time for the attempt to make, and reports the outcome with
 * `succeeded`/`failed` and the attempt's token. Outcomes of attempts that
 * are no longer current (after `stop`, or a second report) are ignored.
 *
 * Times are milliseconds; intervals reported by trackers are in seconds, as
 * trackers send them.
 */
import type { AnnounceEvent } from '../codec/tracker-http.js';
import type { Random } from '../runtime/contract.js';

export interface TrackerTiersOptions {
  readonly random: Random;
  /** Tracker intervals shorter than this are raised to it (ms). Default 60 000. */
  readonly minIntervalFloorMs?: number;
  /** Tracker intervals longer than this are cut to it (ms). Default 24 h. */
  readonly maxIntervalMs?: number;
  /** Wait after the first failed round (ms); it doubles with each further one. Default 60 000. */
  readonly backoffBaseMs?: number;
  /** Longest wait after failed rounds (ms). Default 1 h. */
  readonly backoffMaxMs?: number;
}

export type TiersState = 'idle' | 'running' | 'stopping' | 'stopped';

/** One announce to make now. `attempt` identifies it when reporting the outcome. */
export interface AnnounceAttempt {
  readonly attempt: number;
  readonly url: string;
  /** Index of the tier the tracker is in. */
  readonly tier: number;
  readonly event: AnnounceEvent | undefined;
}

/** What a tracker answered, in seconds, as the protocols carry it. */
export interface AnnounceOutcome {
  readonly interval: number;
  readonly minInterval?: number | undefined;
}

/**
 * The tiers a torrent announces to (BEP 12): `announce-list` when it has a
 * non-empty tier, else the single `announce` URL. Empty tiers and repeated
 * URLs (after their first appearance) are dropped.
 */
export function announceTiers(announce: string | undefined, announceList?: readonly (readonly string[])[]): string[][] {
  const seen = new Set<string>();
  const tiers: string[][] = [];
  for (const tier of announceList ?? []) {
    const t: string[] = [];
    for (const u of tier) {
      if (typeof u !== 'string' || u === '' || seen.has(u)) continue;
      seen.add(u);
      t.push(u);
    }
    if (t.length > 0) tiers.push(t);
  }
  if (tiers.length > 0) return tiers;
  return announce !== undefined && announce !== '' ? [[announce]] : [];
}

interface InFlight {
  readonly attempt: number;
  readonly url: string;
  readonly event: AnnounceEvent | undefined;
  /** Whether `completed` was pending when this attempt was handed out. */
  readonly completedPending: boolean;
}

export class TrackerTiers {
  private readonly order: string[][];
  private readonly floorMs: number;
  private readonly capMs: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;

  private current: TiersState = 'idle';
  private nextAt: number | undefined;
  private inFlight: InFlight | undefined;
  private attemptSeq = 0;
  /** Position in the current round. */
  private tier = 0;
  private index = 0;
  private failedRounds = 0;
  /** Trackers that accepted an announce in this session (they know us). */
  private readonly known = new Set<string>();
  private completed: 'no' | 'pending' | 'sent' = 'no';
  /** Earliest time for an announce the user asks for (the tracker's min interval). */
  private earliestManual = -Infinity;
  private stopQueue: string[] = [];

  constructor(tiers: readonly (readonly string[])[], options: TrackerTiersOptions) {
    this.floorMs = options.minIntervalFloorMs ?? 60_000;
    this.capMs = options.maxIntervalMs ?? 24 * 3_600_000;
    this.backoffBaseMs = options.backoffBaseMs ?? 60_000;
    this.backoffMaxMs = options.backoffMaxMs ?? 3_600_000;
    this.order = announceTiers(undefined, tiers).map((t) => shuffle(t, options.random));
  }

  get state(): TiersState {
    return this.current;
  }

  /** The tiers in their current order (shuffled, with answering trackers promoted). */
  get tiers(): string[][] {
    return this.order.map((t) => [...t]);
  }

  /** Whether `completed` has been delivered to a tracker. */
  get completedSent(): boolean {
    return this.completed === 'sent';
  }

  /** Consecutive rounds in which no tracker answered. */
  get failures(): number {
    return this.failedRounds;
  }

  /** Begins a session: the first announce (`started`) is due at once. */
  start(now: number): void {
    if (this.current === 'running') return;
    this.current = 'running';
    this.inFlight = undefined;
    this.known.clear();
    this.stopQueue = [];
    this.failedRounds = 0;
    this.resetRound();
    this.earliestManual = -Infinity;
    this.nextAt = this.order.length > 0 ? now : undefined;
  }

  /** The download finished: `completed` is announced next, at once (only the first call counts). */
  complete(now: number): void {
    if (this.completed !== 'no') return;
    this.completed = 'pending';
    if (this.current === 'running' && this.nextAt !== undefined) {
      // An announce already in flight may have been sent before completion; `completed` follows it.
      if (!this.inFlight) {
        this.resetRound();
        this.nextAt = Math.min(this.nextAt, now);
      }
    }
  }

  /** Shutdown: `stopped` to every tracker that knows us, then the state becomes 'stopped'. */
  stop(now: number): void {
    if (this.current === 'stopping' || this.current === 'stopped') return;
    const notify = new Set(this.known);
    // A `started` may be on its way: tell that tracker too.
    if (this.inFlight) notify.add(this.inFlight.url);
    this.inFlight = undefined;
    this.stopQueue = this.order.flat().filter((u) => notify.has(u));
    this.current = 'stopping';
    this.nextAt = now;
    this.advanceStop();
  }

  /**
   * Asks for an announce before the interval is up. It is due at once, or
   * when the tracker's min interval allows; returns that time (undefined
   * when not running or an announce is in flight).
   */
  reannounce(now: number): number | undefined {
    if (this.current !== 'running' || this.inFlight || this.nextAt === undefined) return undefined;
    this.resetRound();
    this.nextAt = Math.min(this.nextAt, Math.max(now, this.earliestManual));
    return this.nextAt;
  }

  /** When the next announce is due; undefined while one is in flight or there is nothing to do. */
  nextAnnounceAt(): number | undefined {
    return this.inFlight ? undefined : this.nextAt;
  }

  /** The announce to make now, if one is due. It stays in flight until its outcome is reported. */
  poll(now: number): AnnounceAttempt | undefined {
    if (this.inFlight || this.nextAt === undefined || now < this.nextAt) return undefined;
    let url: string;
    let tier: number;
    let event: AnnounceEvent | undefined;
    if (this.current === 'stopping') {
      url = this.stopQueue[0]!;
      tier = this.order.findIndex((t) => t.includes(url));
      event = 'stopped';
    } else if (this.current === 'running') {
      url = this.order[this.tier]![this.index]!;
      tier = this.tier;
      event = !this.known.has(url) ? 'started' : this.completed === 'pending' ? 'completed' : undefined;
    } else {
      return undefined;
    }
    const attempt = ++this.attemptSeq;
    this.inFlight = { attempt, url, event, completedPending: this.completed === 'pending' };
    return { attempt, url, tier, event };
  }

  /** The tracker answered. False when the attempt is not the current one (the report is ignored). */
  succeeded(now: number, attempt: number, outcome: AnnounceOutcome): boolean {
    const f = this.inFlight;
    if (!f || f.attempt !== attempt) return false;
    this.inFlight = undefined;
    if (this.current === 'stopping') {
      this.stopQueue.shift();
      this.advanceStop();
      return true;
    }
    // BEP 12: a tracker that answers moves to the front of its tier.
    const t = this.order.find((tier) => tier.includes(f.url))!;
    t.splice(t.indexOf(f.url), 1);
    t.unshift(f.url);
    this.known.add(f.url);
    if (f.event === 'completed' || (f.event === 'started' && f.completedPending)) this.completed = 'sent';
    this.failedRounds = 0;
    this.resetRound();

    const interval = this.clampInterval(outcome.interval);
    const minInterval = outcome.minInterval === undefined ? 0 : Math.min(secondsToMs(outcome.minInterval), this.capMs);
    this.earliestManual = now + minInterval;
    this.nextAt = this.completed === 'pending' ? now : now + Math.max(interval, minInterval);
    return true;
  }

  /** The tracker did not answer, or refused. False when the attempt is not the current one. */
  failed(now: number, attempt: number): boolean {
    const f = this.inFlight;
    if (!f || f.attempt !== attempt) return false;
    this.inFlight = undefined;
    if (this.current === 'stopping') {
      this.stopQueue.shift();
      this.advanceStop();
      return true;
    }
    this.index++;
    if (this.index >= this.order[this.tier]!.length) {
      this.tier++;
      this.index = 0;
    }
    if (this.tier < this.order.length) {
      this.nextAt = now;
    } else {
      this.failedRounds++;
      this.resetRound();
      this.nextAt = now + this.backoff(this.failedRounds);
    }
    return true;
  }

  private resetRound(): void {
    this.tier = 0;
    this.index = 0;
  }

  private advanceStop(): void {
    if (this.stopQueue.length > 0) return;
    this.current = 'stopped';
    this.nextAt = undefined;
    this.known.clear();
  }

  private clampInterval(seconds: number): number {
    return Math.min(Math.max(secondsToMs(seconds), this.floorMs), this.capMs);
  }

  private backoff(rounds: number): number {
    return Math.min(this.backoffBaseMs * 2 ** Math.min(rounds - 1, 40), this.backoffMaxMs);
  }
}

function secondsToMs(s: number): number {
  return Number.isFinite(s) && s > 0 ? s * 1000 : 0;
}

/** Fisher–Yates with the injected random source. */
function shuffle<T>(items: readonly T[], random: Random): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = random.below(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
