/**
 * Node lifecycles for any scenario kind: who is online, churn (sessions and
 * offline times from distributions, departures split between graceful
 * leaves and crashes) and scripted scenario events (crash, leave, join, make
 * hostile). The kind says what joining, leaving and turning hostile mean for
 * its nodes (`NodeControl`); this module decides when, from its own seeded
 * random stream, so the schedule does not depend on what the nodes draw.
 */
import type { Random } from '../runtime/contract.js';
import type { SimEngine } from '../runtime/sim/engine.js';
import { resolveDistribution, sample, type Distribution, type DistributionSpec } from './distributions.js';

export type Departure = 'graceful' | 'crash';

export interface ChurnSpec {
  /** Nodes subject to churn: a group name of the kind (default: every node the kind lets churn). */
  readonly group?: string;
  /** How long a node stays online. */
  readonly session: DistributionSpec;
  /** How long a departed node stays away before it rejoins; absent: it never does. */
  readonly offline?: DistributionSpec;
  /** Share of departures that are crashes (no goodbye); the rest leave gracefully. Default 1. */
  readonly crashFraction?: number;
  /** Churn starts at this time (default 0). */
  readonly startMs?: number;
}

export type ScenarioEvent =
  | { readonly atMs: number; readonly type: 'crash' | 'leave' | 'join'; readonly count?: number; readonly fraction?: number; readonly group?: string }
  | { readonly atMs: number; readonly type: 'hostile'; readonly count?: number; readonly fraction?: number; readonly group?: string; readonly behaviour: string };

/** What a scenario kind does for its nodes. */
export interface NodeControl {
  /** Brings node i online (a fresh host; its state is the kind's business). */
  start(i: number): void;
  /** Takes node i offline. */
  stop(i: number, how: Departure): void;
  /** Makes node i behave as `behaviour`; false if the kind does not know it. */
  makeHostile(i: number, behaviour: string): boolean;
  /** The nodes of a named group (undefined: no such group). Default group: '*'. */
  group(name: string): readonly number[] | undefined;
}

export interface LifecycleStats {
  joins: number;
  graceful: number;
  crashes: number;
  hostile: number;
}

export class Lifecycle {
  readonly stats: LifecycleStats = { joins: 0, graceful: 0, crashes: 0, hostile: 0 };
  private readonly up: Uint8Array;
  private readonly sessionEnd: ((() => void) | undefined)[];
  private count = 0;
  private churned: { spec: ChurnSpec; session: Distribution; offline: Distribution | undefined; members: Set<number> } | undefined;
  /** Called after every change of who is online (for time series). */
  onChange: ((now: number) => void) | undefined;

  constructor(
    private readonly engine: SimEngine,
    private readonly random: Random,
    readonly size: number,
    private readonly control: NodeControl,
  ) {
    this.up = new Uint8Array(size);
    this.sessionEnd = new Array<(() => void) | undefined>(size).fill(undefined);
  }

  get online(): number {
    return this.count;
  }

  isOnline(i: number): boolean {
    return this.up[i] === 1;
  }

  join(i: number): void {
    if (this.up[i]) return;
    this.up[i] = 1;
    this.count++;
    this.stats.joins++;
    this.control.start(i);
    const c = this.churned;
    if (c?.members.has(i) && this.engine.now >= (c.spec.startMs ?? 0)) this.scheduleSessionEnd(i);
    this.onChange?.(this.engine.now);
  }

  leave(i: number, how: Departure): void {
    if (!this.up[i]) return;
    this.up[i] = 0;
    this.count--;
    this.sessionEnd[i] = undefined;
    if (how === 'crash') this.stats.crashes++;
    else this.stats.graceful++;
    this.control.stop(i, how);
    const c = this.churned;
    if (c?.offline && c.members.has(i)) {
      const back = sample(c.offline, this.random);
      this.engine.after(back, () => this.join(i));
    }
    this.onChange?.(this.engine.now);
  }

  /** Starts churn for the spec's group. */
  churn(spec: ChurnSpec): void {
    const members = this.groupOf(spec.group ?? '*', 'churn.group');
    const crash = spec.crashFraction ?? 1;
    if (!(crash >= 0 && crash <= 1)) throw new RangeError(`churn.crashFraction must be in [0, 1], got ${crash}`);
    this.churned = {
      spec,
      session: resolveDistribution(spec.session),
      offline: spec.offline === undefined ? undefined : resolveDistribution(spec.offline),
      members: new Set(members),
    };
    this.engine.schedule(spec.startMs ?? 0, () => {
      for (const i of members) if (this.up[i] && this.sessionEnd[i] === undefined) this.scheduleSessionEnd(i);
    });
  }

  /** Schedules scripted events. */
  schedule(events: readonly ScenarioEvent[]): void {
    for (const e of events) this.engine.schedule(e.atMs, () => this.apply(e));
  }

  private scheduleSessionEnd(i: number): void {
    const c = this.churned!;
    const length = sample(c.session, this.random);
    const crash = this.random.float() < (c.spec.crashFraction ?? 1);
    const fn = (): void => {
      if (this.sessionEnd[i] !== fn) return; // a later session replaced this one
      if (this.up[i]) this.leave(i, crash ? 'crash' : 'graceful');
    };
    this.sessionEnd[i] = fn;
    this.engine.after(length, fn);
  }

  private groupOf(name: string, where: string): readonly number[] {
    const g = this.control.group(name);
    if (g === undefined) throw new RangeError(`${where}: unknown group "${name}"`);
    return g;
  }

  private apply(e: ScenarioEvent): void {
    const group = this.groupOf(e.group ?? '*', 'event.group');
    const wantOnline = e.type !== 'join';
    const pool = group.filter((i) => (this.up[i] === 1) === wantOnline);
    const n = Math.min(pool.length, e.count ?? Math.round((e.fraction ?? 0) * pool.length));
    // A partial Fisher-Yates shuffle picks n of the pool.
    for (let k = 0; k < n; k++) {
      const j = k + this.random.below(pool.length - k);
      const t = pool[k]!;
      pool[k] = pool[j]!;
      pool[j] = t;
    }
    const chosen = pool.slice(0, n).sort((a, b) => a - b);
    for (const i of chosen) {
      switch (e.type) {
        case 'crash':
          this.leave(i, 'crash');
          break;
        case 'leave':
          this.leave(i, 'graceful');
          break;
        case 'join':
          this.join(i);
          break;
        case 'hostile':
          if (this.control.makeHostile(i, e.behaviour)) this.stats.hostile++;
          break;
      }
    }
  }
}
