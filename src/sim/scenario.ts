/**
 * Scenario files: the common part of every scenario (seed, duration,
 * network, churn, events), the registry of scenario kinds, and the runner.
 *
 * A scenario is JSON:
 *
 *   { "kind": "flash-crowd", "name": "...", "seed": 1, "durationMs": 600000,
 *     "sampleIntervalMs": 1000,
 *     "network": { "latency": { "model": "constant", "ms": 20 }, "loss": 0 },
 *     "churn": { "group": "leechers", "session": { "type": "weibull", ... } },
 *     "events": [ { "atMs": 5000, "type": "crash", "fraction": 0.2 } ],
 *     "params": { ...the kind's own fields... } }
 *
 * A kind (`ScenarioKind`) brings the schema of its `params`, and creates the
 * nodes, says what joining/leaving/turning hostile means for them, samples
 * its time series and writes its summary and plots. The runner owns the
 * engine, the network, the lifecycle (churn and events), the sampler and the
 * metrics, so a new kind (a Kademlia one, next to flash-crowd) only plugs in
 * its nodes: `registerKind(kind)`.
 *
 * The runner does no I/O: files the scenario names (a latency matrix) are
 * read through the `loadFile` the caller passes, and results come back as a
 * map of file names to contents, which the CLI writes. Everything in them is
 * a function of the scenario and its seed.
 */
import { htmlReport } from './report.js';
import { SimNetwork } from '../runtime/sim/network.js';
import type { LinkFunction } from '../runtime/sim/network.js';
import { seededRandom, type SeededRandom } from '../runtime/sim/prng.js';
import type { SimEngine } from '../runtime/sim/engine.js';
import { constantLatency, geographicLatency, matrixLatency, parseLatencyMatrix, uniformLatency, type GeoRegion } from '../runtime/sim/latency.js';
import { resolveDistribution, type DistributionSpec } from './distributions.js';
import { Lifecycle, type ChurnSpec, type NodeControl, type ScenarioEvent } from './lifecycle.js';
import { Metrics, num, roundDeep } from './metrics.js';
import { ScenarioError, validate, toJsonSchema, type ObjectSchema, type Schema, type UnionSchema } from './schema.js';
import { cdfChart, lineChart } from './svg.js';

// ------------------------------------------------------------------ schema

const ms = (description?: string): Schema => ({ type: 'number', min: 0, description });
const positive = (description?: string): Schema => ({ type: 'number', above: 0, description });
const fraction = (description?: string): Schema => ({ type: 'number', min: 0, max: 1, description });
const pair: Schema = { type: 'array', items: { type: 'number' }, minItems: 2, maxItems: 2 };

export const distributionSchema: UnionSchema = {
  type: 'union',
  tag: 'type',
  description: 'a duration distribution; exponential, weibull and pareto can instead be calibrated by dropFraction + withinMs',
  variants: {
    constant: { type: 'object', properties: { ms: { schema: ms() } } },
    uniform: { type: 'object', properties: { minMs: { schema: ms() }, maxMs: { schema: ms() } } },
    exponential: {
      type: 'object',
      properties: {
        meanMs: { schema: positive(), optional: true },
        dropFraction: { schema: { type: 'number', above: 0, max: 0.999999 }, optional: true },
        withinMs: { schema: positive(), optional: true },
      },
      oneOf: [['meanMs', 'dropFraction']],
    },
    weibull: {
      type: 'object',
      properties: {
        shape: { schema: positive() },
        scaleMs: { schema: positive(), optional: true },
        dropFraction: { schema: { type: 'number', above: 0, max: 0.999999 }, optional: true },
        withinMs: { schema: positive(), optional: true },
      },
      oneOf: [['scaleMs', 'dropFraction']],
    },
    pareto: {
      type: 'object',
      properties: {
        shape: { schema: positive() },
        minMs: { schema: positive(), optional: true },
        dropFraction: { schema: { type: 'number', above: 0, max: 0.999999 }, optional: true },
        withinMs: { schema: positive(), optional: true },
      },
      oneOf: [['minMs', 'dropFraction']],
    },
  },
};

const latencySchema: UnionSchema = {
  type: 'union',
  tag: 'model',
  variants: {
    constant: { type: 'object', properties: { ms: { schema: ms('one-way latency') } } },
    uniform: { type: 'object', properties: { minMs: { schema: ms() }, maxMs: { schema: ms() } } },
    geographic: {
      type: 'object',
      properties: {
        msPerUnit: { schema: ms(), default: 1 },
        regions: {
          schema: {
            type: 'array',
            minItems: 1,
            maxItems: 1000,
            items: {
              type: 'object',
              properties: {
                name: { schema: { type: 'string', maxLength: 100 } },
                weight: { schema: { type: 'number', min: 0 }, default: 1 },
                center: { schema: pair },
                radius: { schema: { type: 'number', min: 0 }, default: 0 },
                accessMs: { schema: { type: 'array', items: ms(), minItems: 2, maxItems: 2 } },
              },
            },
          },
        },
      },
    },
    matrix: { type: 'object', properties: { file: { schema: { type: 'string', description: 'CSV or JSON matrix, relative to the scenario file' } } } },
  },
};

const eventSchema: ObjectSchema = {
  type: 'object',
  properties: {
    atMs: { schema: ms() },
    type: { schema: { type: 'string', enum: ['crash', 'leave', 'join', 'hostile'] } },
    count: { schema: { type: 'number', integer: true, min: 0 }, optional: true },
    fraction: { schema: fraction(), optional: true },
    group: { schema: { type: 'string', maxLength: 100 }, optional: true },
    behaviour: { schema: { type: 'string', maxLength: 100 }, optional: true },
  },
  oneOf: [['count', 'fraction']],
};

const churnSchema: ObjectSchema = {
  type: 'object',
  properties: {
    group: { schema: { type: 'string', maxLength: 100 }, optional: true },
    session: { schema: distributionSchema },
    offline: { schema: distributionSchema, optional: true },
    crashFraction: { schema: fraction('share of departures that are crashes'), default: 1 },
    startMs: { schema: ms(), default: 0 },
  },
};

function scenarioSchema(params: Schema): ObjectSchema {
  return {
    type: 'object',
    description: 'a peerkit simulator scenario',
    properties: {
      $schema: { schema: { type: 'string' }, optional: true },
      kind: { schema: { type: 'string', enum: [...kinds.keys()] } },
      name: { schema: { type: 'string', maxLength: 200 }, optional: true },
      description: { schema: { type: 'string' }, optional: true },
      seed: { schema: { type: 'number', integer: true, min: 0 }, default: 1 },
      durationMs: { schema: positive('simulated time limit') },
      sampleIntervalMs: { schema: { type: 'number', min: 1 }, default: 1000 },
      maxEvents: { schema: { type: 'number', integer: true, min: 1 }, default: 2_000_000_000 },
      network: {
        schema: {
          type: 'object',
          properties: {
            latency: { schema: latencySchema, default: { model: 'constant', ms: 20 } },
            loss: { schema: fraction('datagram loss probability'), default: 0 },
            streamHighWaterMark: { schema: { type: 'number', integer: true, min: 1 }, default: 65536 },
            natMappingMs: { schema: ms(), default: 120_000 },
            smallMessageBytes: {
              schema: { type: 'number', integer: true, min: 0, max: 65536, description: 'stream writes up to this size on an idle flow skip the fair share (faster, approximate); 0 = exact' },
              default: 0,
            },
          },
        },
        default: {},
      },
      churn: { schema: churnSchema, optional: true },
      events: { schema: { type: 'array', items: eventSchema, maxItems: 10_000 }, default: [] },
      params: { schema: params },
    },
  };
}

// ------------------------------------------------------------------ kinds

export interface Scenario {
  readonly kind: string;
  readonly name?: string;
  readonly description?: string;
  readonly seed: number;
  readonly durationMs: number;
  readonly sampleIntervalMs: number;
  readonly maxEvents: number;
  readonly network: {
    readonly latency:
      | { readonly model: 'constant'; readonly ms: number }
      | { readonly model: 'uniform'; readonly minMs: number; readonly maxMs: number }
      | { readonly model: 'geographic'; readonly msPerUnit: number; readonly regions: readonly GeoRegion[] }
      | { readonly model: 'matrix'; readonly file: string };
    readonly loss: number;
    readonly streamHighWaterMark: number;
    readonly natMappingMs: number;
    readonly smallMessageBytes: number;
  };
  readonly churn?: ChurnSpec;
  readonly events: readonly ScenarioEvent[];
  readonly params: unknown;
}

export interface KindContext {
  readonly scenario: Scenario;
  readonly network: SimNetwork;
  readonly engine: SimEngine;
  /** The kind's own stream (forked from the seed by 'kind'). */
  readonly random: SeededRandom;
  readonly metrics: Metrics;
}

export interface KindSummary {
  /** Rows of the printed table. */
  readonly rows: readonly (readonly [string, string])[];
  /** Goes into summary.json under "results". */
  readonly json: Readonly<Record<string, unknown>>;
}

/** One run of a kind. The runner drives the lifecycle through its NodeControl methods. */
export interface KindRun extends NodeControl {
  /** Number of nodes (indices 0 .. size-1). */
  readonly size: number;
  /** Initial joins and anything else to schedule. */
  begin(lifecycle: Lifecycle): void;
  /** The scenario's goal is reached: the run may stop early. */
  done(now: number): boolean;
  /** When the goal should be reached, if the kind knows beforehand (the progress display's 100 %). */
  expectedEndMs?(): number;
  /** How far the goal is, in [0, 1], for kinds whose end is not known beforehand (the progress display). */
  progress?(now: number): number;
  /** Time-series values at `now` (same keys every time). */
  sample(now: number): Readonly<Record<string, number>>;
  /** Called once when the run ends (record unfinished operations, etc.). */
  finish(now: number): void;
  summary(now: number): KindSummary;
  /** Extra files (SVG plots), name -> contents. */
  plots(): Readonly<Record<string, string>>;
}

export interface ScenarioKind<P = unknown> {
  readonly name: string;
  readonly description: string;
  readonly params: ObjectSchema;
  /**
   * The group names `churn.group` and `events[i].group` may use with these
   * params, besides '*' (every node), which is always one. The run's
   * `group(name)` must answer each of them. Default: '*' only.
   */
  groups?(params: P): readonly string[];
  /** The behaviours a `hostile` event may name. Default: none. */
  readonly behaviours?: readonly string[];
  /** Checks across fields that the schema cannot express; throw ScenarioError with the path. */
  check?(params: P, scenario: Scenario): void;
  create(ctx: KindContext, params: P): KindRun;
}

const kinds = new Map<string, ScenarioKind>();

export function registerKind<P>(kind: ScenarioKind<P>): void {
  if (kinds.has(kind.name)) throw new Error(`scenario kind ${kind.name} is already registered`);
  kinds.set(kind.name, kind as ScenarioKind);
}

export function scenarioKinds(): readonly ScenarioKind[] {
  return [...kinds.values()];
}

/** A JSON Schema of scenario files for every registered kind. */
export function scenarioJsonSchema(): Record<string, unknown> {
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'peerkit simulator scenario',
    oneOf: [...kinds.values()].map((k) => {
      const s = toJsonSchema(scenarioSchema(k.params));
      const props = s['properties'] as Record<string, unknown>;
      props['kind'] = { const: k.name, description: k.description };
      // An editor can list the kind's hostile behaviours (group names depend on the params).
      const event = (props['events'] as { items: { properties: Record<string, unknown> } }).items;
      event.properties['behaviour'] = { description: 'hostile events only', enum: [...(k.behaviours ?? [])] };
      return s;
    }),
  };
}

function checkDistribution(d: DistributionSpec, path: string): void {
  if ('dropFraction' in d && (d as { withinMs?: number }).withinMs === undefined) throw new ScenarioError(`${path}.withinMs`, 'is required with dropFraction');
  if (!('dropFraction' in d) && 'withinMs' in d) throw new ScenarioError(`${path}.withinMs`, 'only goes with dropFraction');
  if (d.type === 'uniform' && d.maxMs < d.minMs) throw new ScenarioError(`${path}.maxMs`, 'must be >= minMs');
  resolveDistribution(d);
}

/** Validates a parsed scenario file. Throws ScenarioError naming the field. */
export function parseScenario(raw: unknown): Scenario {
  const top = validate(raw, scenarioSchema({ type: 'any' })) as Scenario;
  const kind = kinds.get(top.kind)!;
  const params = validate(top.params, kind.params, 'scenario.params');
  const scenario: Scenario = { ...top, params };
  const lat = scenario.network.latency;
  if (lat.model === 'uniform' && lat.maxMs < lat.minMs) throw new ScenarioError('scenario.network.latency.maxMs', 'must be >= minMs');
  if (lat.model === 'geographic') {
    lat.regions.forEach((r, i) => {
      if (r.accessMs[1]! < r.accessMs[0]!) throw new ScenarioError(`scenario.network.latency.regions[${i}].accessMs`, 'must be [min, max]');
    });
  }
  if (scenario.churn) {
    checkDistribution(scenario.churn.session, 'scenario.churn.session');
    if (scenario.churn.offline) checkDistribution(scenario.churn.offline, 'scenario.churn.offline');
  }
  // Names the kind must know, and times the run reaches: checked now, not when the event fires.
  const groups = kindGroups(kind, params);
  const checkGroup = (name: string | undefined, path: string): void => {
    if (name !== undefined && !groups.includes(name)) {
      throw new ScenarioError(path, `unknown group ${JSON.stringify(name)} for kind ${kind.name}; expected one of ${groups.map((g) => JSON.stringify(g)).join(', ')}`);
    }
  };
  const behaviours = kind.behaviours ?? [];
  const late = (at: number): string => `${at} is after durationMs (${scenario.durationMs}): it would never happen`;
  if (scenario.churn) {
    checkGroup(scenario.churn.group, 'scenario.churn.group');
    const startMs = scenario.churn.startMs ?? 0;
    if (startMs > scenario.durationMs) throw new ScenarioError('scenario.churn.startMs', late(startMs));
  }
  scenario.events.forEach((e, i) => {
    const path = `scenario.events[${i}]`;
    checkGroup(e.group, `${path}.group`);
    if (e.atMs > scenario.durationMs) throw new ScenarioError(`${path}.atMs`, late(e.atMs));
    const behaviour = (e as { behaviour?: string }).behaviour;
    if (e.type !== 'hostile') {
      if (behaviour !== undefined) throw new ScenarioError(`${path}.behaviour`, 'only goes with a hostile event');
      return;
    }
    if (behaviour === undefined) throw new ScenarioError(`${path}.behaviour`, 'is required for a hostile event');
    if (!behaviours.includes(behaviour)) {
      throw new ScenarioError(
        `${path}.behaviour`,
        behaviours.length === 0
          ? `unknown behaviour ${JSON.stringify(behaviour)}: kind ${kind.name} has no hostile behaviours`
          : `unknown behaviour ${JSON.stringify(behaviour)} for kind ${kind.name}; expected one of ${behaviours.map((b) => JSON.stringify(b)).join(', ')}`,
      );
    }
  });
  kind.check?.(params, scenario);
  return scenario;
}

/** '*' and the kind's own group names for these params. */
function kindGroups(kind: ScenarioKind, params: unknown): readonly string[] {
  return ['*', ...(kind.groups?.(params) ?? []).filter((g) => g !== '*')];
}

/** Parses scenario text (JSON). */
export function parseScenarioText(text: string): Scenario {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ScenarioError('scenario', `not valid JSON: ${(e as Error).message}`);
  }
  return parseScenario(raw);
}

// ------------------------------------------------------------------ runner

export interface RunOptions {
  /** Overrides the scenario's seed. */
  readonly seed?: number;
  /** Reads a file the scenario names (relative paths are the caller's business). */
  readonly loadFile?: (path: string) => string;
}

export interface RunResult {
  /** File name -> contents. */
  readonly files: Readonly<Record<string, string>>;
  /** The summary table, as printed. */
  readonly table: string;
  readonly summary: Readonly<Record<string, unknown>>;
}

export class ScenarioRun {
  readonly scenario: Scenario;
  readonly network: SimNetwork;
  readonly engine: SimEngine;
  readonly metrics = new Metrics();
  readonly lifecycle: Lifecycle;
  private readonly kind: ScenarioKind;
  private readonly run: KindRun;
  private goalReached = false;
  private ended = false;
  private endedAt = 0;

  constructor(scenario: Scenario, options: RunOptions = {}) {
    this.scenario = options.seed === undefined ? scenario : { ...scenario, seed: options.seed };
    const s = this.scenario;
    this.kind = kinds.get(s.kind)!;
    const root = seededRandom(s.seed);
    this.network = new SimNetwork({
      seed: s.seed,
      latencyMs: latencyModel(s, options.loadFile),
      loss: s.network.loss,
      streamHighWaterMark: s.network.streamHighWaterMark,
      natMappingMs: s.network.natMappingMs,
      smallMessageBytes: s.network.smallMessageBytes,
    });
    this.engine = this.network.engine;
    this.run = this.kind.create({ scenario: s, network: this.network, engine: this.engine, random: root.fork('kind'), metrics: this.metrics }, s.params);
    for (const g of kindGroups(this.kind, s.params)) {
      if (this.run.group(g) === undefined) throw new Error(`scenario kind ${s.kind} declares group "${g}" but its run does not know it`);
    }
    this.lifecycle = new Lifecycle(this.engine, root.fork('lifecycle'), this.run.size, this.run);
    this.run.begin(this.lifecycle);
    if (s.churn) this.lifecycle.churn(s.churn);
    this.lifecycle.schedule(s.events);
    const sampler = (): void => {
      const now = this.engine.now;
      this.metrics.sample(now, { online: this.lifecycle.online, ...this.run.sample(now) });
      if (this.run.done(now)) {
        this.goalReached = true;
        this.engine.stop();
        return;
      }
      this.engine.after(s.sampleIntervalMs, sampler);
    };
    this.engine.schedule(0, sampler);
  }

  /** Simulated time so far. */
  get now(): number {
    return this.engine.now;
  }

  get events(): number {
    return this.engine.eventsProcessed;
  }

  /** Where the run is expected to end: the kind's estimate (at most durationMs) or durationMs. */
  get expectedEndMs(): number {
    const d = this.scenario.durationMs;
    const e = this.run.expectedEndMs?.();
    return e === undefined || !(e >= 0) ? d : Math.min(d, e);
  }

  /** Whether `expectedEndMs` is the kind's estimate (rather than only the time limit). */
  get endKnown(): boolean {
    return this.run.expectedEndMs !== undefined;
  }

  /** How far the run is, in [0, 1]: 1 once it ended; the kind's measure, or simulated time over expectedEndMs. */
  progress(): number {
    if (this.ended) return 1;
    const own = this.run.progress?.(this.engine.now);
    const end = this.expectedEndMs;
    const p = own ?? (end > 0 ? this.engine.now / end : 0);
    return Math.min(1, Math.max(0, Number.isFinite(p) ? p : 0));
  }

  get finished(): boolean {
    return this.ended;
  }

  /** Runs up to `simMs` more simulated time (or `maxEventsPerCall` events); returns true when the run is over. */
  advance(simMs: number, maxEventsPerCall = Infinity): boolean {
    if (this.ended) return true;
    const s = this.scenario;
    const until = Math.min(this.engine.now + simMs, s.durationMs);
    const left = s.maxEvents - this.engine.eventsProcessed;
    const r = this.engine.run({ until, maxEvents: Math.min(left, maxEventsPerCall) });
    if (this.goalReached || r.reason === 'idle' || this.engine.now >= s.durationMs || this.engine.eventsProcessed >= s.maxEvents) {
      this.ended = true;
      this.endedAt = this.engine.now;
      this.run.finish(this.endedAt);
    }
    return this.ended;
  }

  /** Runs to the end. */
  runToEnd(): RunResult {
    while (!this.advance(Infinity));
    return this.result();
  }

  /** The output files (call after the run ended). */
  result(): RunResult {
    if (!this.ended) throw new Error('the run has not ended');
    const s = this.scenario;
    const m = this.metrics;
    const kindSummary = this.run.summary(this.endedAt);
    const ops = m.summarise();
    const stats = this.network.stats;
    const endReason = this.goalReached ? 'goal reached' : this.engine.eventsProcessed >= s.maxEvents ? 'maxEvents' : this.endedAt >= s.durationMs ? 'durationMs' : 'idle';
    const summary = roundDeep({
      scenario: s.name ?? s.kind,
      kind: s.kind,
      seed: s.seed,
      endedAtMs: this.endedAt,
      endReason,
      events: this.engine.eventsProcessed,
      lifecycle: { ...this.lifecycle.stats, onlineAtEnd: this.lifecycle.online },
      network: { ...stats, flowRecomputes: this.network.flows.recomputes },
      operations: ops,
      results: kindSummary.json,
    }) as Record<string, unknown>;

    const rows: (readonly [string, string])[] = [
      ['scenario', `${s.name ?? '(unnamed)'} (${s.kind}), seed ${s.seed}`],
      ['simulated', `${num(this.endedAt / 1000)} s (${endReason}), ${this.engine.eventsProcessed} events`],
      ['nodes', `${this.run.size}, ${this.lifecycle.online} online at the end; joins ${this.lifecycle.stats.joins}, leaves ${this.lifecycle.stats.graceful}, crashes ${this.lifecycle.stats.crashes}, hostile ${this.lifecycle.stats.hostile}`],
    ];
    for (const o of ops) {
      const l = o.latencyMs;
      let text = `${o.ok}/${o.count} ok; latency p50 ${num(l.p50)} ms, p90 ${num(l.p90)} ms, p99 ${num(l.p99)} ms, max ${num(l.max)} ms`;
      if (o.hopsMean !== undefined) text += `; hops mean ${num(o.hopsMean)}`;
      if (o.messagesMean !== undefined) text += `; messages mean ${num(o.messagesMean)}`;
      rows.push([`op ${o.kind}`, text]);
    }
    rows.push(...kindSummary.rows);
    const width = Math.max(...rows.map((r) => r[0].length));
    const table = `${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n`;

    const files: Record<string, string> = {
      'scenario.json': `${JSON.stringify(s, null, 2)}\n`,
      'summary.json': `${JSON.stringify(summary, null, 2)}\n`,
      'summary.txt': table,
      'operations.csv': m.operationsCsv(),
      'operations.json': m.operationsJson(),
      'timeseries.csv': m.seriesCsv(),
      'timeseries.json': m.seriesJson(),
      'network-size.svg': lineChart({
        title: 'Nodes online',
        xLabel: 'simulated time (s)',
        yLabel: 'nodes',
        series: [{ name: 'online', points: m.series('online').map(([t, v]) => [t / 1000, v]) }],
      }),
    };
    for (const o of ops) {
      const values = m.operations.filter((r) => r.kind === o.kind && r.ok).map((r) => (r.endMs - r.startMs) / 1000);
      files[`cdf-${o.kind}.svg`] = cdfChart({ title: `CDF of ${o.kind} time`, xLabel: 'seconds', series: [{ name: o.kind, values }] });
      if (o.hopsMean !== undefined) {
        const hops = m.operations.filter((r) => r.kind === o.kind && r.ok && r.hops !== undefined).map((r) => r.hops!);
        files[`cdf-${o.kind}-hops.svg`] = cdfChart({ title: `CDF of ${o.kind} hops`, xLabel: 'hops', series: [{ name: o.kind, values: hops }] });
      }
    }
    Object.assign(files, this.run.plots());
    files['report.html'] = htmlReport({ title: `peerkit sim: ${s.name ?? s.kind} (seed ${s.seed})`, rows, files });
    return { files, table, summary };
  }
}

function latencyModel(s: Scenario, loadFile: ((path: string) => string) | undefined): LinkFunction {
  const l = s.network.latency;
  switch (l.model) {
    case 'constant':
      return constantLatency(l.ms);
    case 'uniform':
      return uniformLatency(l.minMs, l.maxMs, s.seed);
    case 'geographic':
      return geographicLatency({ regions: l.regions, msPerUnit: l.msPerUnit, seed: s.seed });
    case 'matrix': {
      if (!loadFile) throw new ScenarioError('scenario.network.latency.file', 'cannot be read here (no file loader)');
      let text: string;
      try {
        text = loadFile(l.file);
      } catch (e) {
        throw new ScenarioError('scenario.network.latency.file', `cannot be read: ${(e as Error).message}`);
      }
      try {
        return matrixLatency(parseLatencyMatrix(text), s.seed);
      } catch (e) {
        throw new ScenarioError('scenario.network.latency.file', (e as Error).message);
      }
    }
  }
}
