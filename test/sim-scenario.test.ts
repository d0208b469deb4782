import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { ScenarioError, ScenarioRun, parseScenario, parseScenarioText, scenarioJsonSchema, fluidLowerBoundMs, leecherClassCounts, type FlashCrowdParams } from '../src/sim/index.js';
import { cdf, mean, resolveDistribution, sample, type Distribution, type DistributionSpec } from '../src/sim/distributions.js';
import { Lifecycle, type NodeControl } from '../src/sim/lifecycle.js';
import { SimEngine } from '../src/runtime/sim/engine.js';
import { seededRandom } from '../src/runtime/sim/prng.js';
import { lineChart, cdfPoints, niceTicks } from '../src/sim/svg.js';

const scenarioFile = (name: string): string => readFileSync(new URL(`../../scenarios/${name}`, import.meta.url), 'utf8');

function flash(params: Partial<FlashCrowdParams> = {}, extra: Record<string, unknown> = {}): unknown {
  return {
    kind: 'flash-crowd',
    name: 'test',
    seed: 3,
    durationMs: 600_000,
    network: { latency: { model: 'constant', ms: 20 } },
    params: { fileBytes: 1 << 20, pieceBytes: 32768, leechers: 4, seeder: { uploadBps: 1_000_000 }, leecher: { uploadBps: 500_000, downloadBps: 2_000_000 }, ...params },
    ...extra,
  };
}

function errorOf(raw: unknown): ScenarioError {
  try {
    parseScenario(raw);
  } catch (e) {
    assert.ok(e instanceof ScenarioError, `not a ScenarioError: ${String(e)}`);
    return e;
  }
  assert.fail('accepted');
}

test('scenario validation: a wrong field gets an error naming its path', () => {
  const base = flash() as Record<string, unknown>;
  const params = base['params'] as Record<string, unknown>;
  const cases: [unknown, string, RegExp][] = [
    [{ ...base, kind: 'nope' }, 'scenario.kind', /must be one of "flash-crowd"/],
    [{ ...base, durationMs: -1 }, 'scenario.durationMs', /must be a number > 0, got -1/],
    [{ ...base, dureationMs: 5 }, 'scenario.dureationMs', /unknown field \(expected one of: .*durationMs/],
    [{ ...base, params: { ...params, leechers: 2.5 } }, 'scenario.params.leechers', /must be an integer/],
    [{ ...base, params: { ...params, leecher: { uploadBps: 1 } } }, 'scenario.params.leecher.downloadBps', /is required/],
    [{ ...base, params: { ...params, pieceBytes: 20000 } }, 'scenario.params.pieceBytes', /power of two/],
    [{ ...base, network: { latency: { model: 'uniform', minMs: 50, maxMs: 10 } } }, 'scenario.network.latency.maxMs', /must be >= minMs/],
    [{ ...base, network: { latency: { model: 'warp' } } }, 'scenario.network.latency.model', /"constant", "uniform", "geographic", "matrix"/],
    [{ ...base, network: { latency: { model: 'geographic', regions: [{ name: 'a', center: [0], accessMs: [1, 2] }] } } }, 'scenario.network.latency.regions[0].center', /at least 2/],
    [{ ...base, churn: { session: { type: 'weibull', shape: 0.5, dropFraction: 0.2 } } }, 'scenario.churn.session.withinMs', /required with dropFraction/],
    [{ ...base, churn: { session: { type: 'pareto', shape: 2, minMs: 5, dropFraction: 0.2, withinMs: 9 } } }, 'scenario.churn.session', /exactly one of "minMs", "dropFraction"/],
    [{ ...base, events: [{ atMs: 1, type: 'crash' }] }, 'scenario.events[0]', /exactly one of "count", "fraction"/],
    [{ ...base, events: [{ atMs: 1, type: 'hostile', count: 1 }] }, 'scenario.events[0].behaviour', /required/],
    [{ ...base, events: [{ atMs: 1, type: 'crash', fraction: 1.5 }] }, 'scenario.events[0].fraction', /<= 1/],
  ];
  for (const [raw, path, message] of cases) {
    const e = errorOf(raw);
    assert.equal(e.path, path, e.message);
    assert.match(e.message, message);
    assert.ok(e.message.startsWith(`${path}: `));
  }
  assert.throws(() => parseScenarioText('{"kind":'), (e: unknown) => e instanceof ScenarioError && /not valid JSON/.test(e.message));
});

test('scenario validation: groups, behaviours and event times are checked against the kind when the file is read', () => {
  const kad = (extra: Record<string, unknown>): unknown => ({ kind: 'kademlia', durationMs: 600_000, params: { nodes: 50, lookups: 10 }, ...extra });
  const cases: [unknown, string, RegExp][] = [
    [kad({ events: [{ atMs: 1000, type: 'crash', fraction: 0.1, group: 'leechers' }] }), 'scenario.events[0].group', /^scenario\.events\[0\]\.group: unknown group "leechers" for kind kademlia; expected one of "\*", "bootstrap", "nodes"$/],
    [kad({ churn: { group: 'seeders', session: { type: 'constant', ms: 1 } } }), 'scenario.churn.group', /unknown group "seeders" for kind kademlia/],
    [kad({ events: [{ atMs: 1, type: 'crash', count: 1 }, { atMs: 1, type: 'hostile', count: 1, behaviour: 'corrupt' }] }), 'scenario.events[1].behaviour', /unknown behaviour "corrupt" for kind kademlia; expected one of "silent"$/],
    [kad({ events: [{ atMs: 1, type: 'leave', count: 1, behaviour: 'silent' }] }), 'scenario.events[0].behaviour', /only goes with a hostile event/],
    [kad({ events: [{ atMs: 600_001, type: 'crash', count: 1 }] }), 'scenario.events[0].atMs', /600001 is after durationMs \(600000\): it would never happen/],
    [kad({ churn: { startMs: 700_000, session: { type: 'constant', ms: 1 } } }), 'scenario.churn.startMs', /after durationMs/],
    [flash({}, { events: [{ atMs: 1, type: 'join', count: 1, group: 'nodes' }] }), 'scenario.events[0].group', /unknown group "nodes" for kind flash-crowd; expected one of "\*", "seeders", "leechers"/],
    [flash({}, { events: [{ atMs: 1, type: 'hostile', count: 1, behaviour: 'silent' }] }), 'scenario.events[0].behaviour', /unknown behaviour "silent" for kind flash-crowd; expected one of "corrupt"/],
  ];
  for (const [raw, path, message] of cases) {
    const e = errorOf(raw);
    assert.equal(e.path, path, e.message);
    assert.match(e.message, message);
  }
  // Defaults nested in a default are filled in: no "network" at all is the default network.
  assert.deepEqual(parseScenario(kad({})).network, { latency: { model: 'constant', ms: 20 }, loss: 0, streamHighWaterMark: 65536, natMappingMs: 120_000, smallMessageBytes: 0 });
  // What the kinds declare is accepted (an event at the very end still runs).
  parseScenario(kad({ churn: { group: 'nodes', session: { type: 'constant', ms: 1 } }, events: [{ atMs: 600_000, type: 'hostile', fraction: 0.1, group: 'bootstrap', behaviour: 'silent' }] }));
  parseScenario(flash({}, { churn: { group: '*', session: { type: 'constant', ms: 1 } }, events: [{ atMs: 5, type: 'hostile', count: 1, group: 'seeders', behaviour: 'corrupt' }] }));
  // The JSON Schema lists each kind's behaviours.
  const schema = scenarioJsonSchema() as { oneOf: { properties: { kind: { const: string }; events: { items: { properties: { behaviour: { enum: string[] } } } } } }[] };
  const behaviours = Object.fromEntries(schema.oneOf.map((k) => [k.properties.kind.const, k.properties.events.items.properties.behaviour.enum]));
  assert.deepEqual(behaviours['kademlia'], ['silent']);
  assert.deepEqual(behaviours['flash-crowd'], ['corrupt']);
});

test('property: the validator never throws anything but ScenarioError on arbitrary JSON', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      try {
        parseScenario(v);
      } catch (e) {
        assert.ok(e instanceof ScenarioError, String(e));
      }
    }),
    { numRuns: 300 },
  );
  // Mutating one field of a valid scenario gives a ScenarioError or a valid scenario, nothing else.
  fc.assert(
    fc.property(fc.constantFrom('durationMs', 'seed', 'sampleIntervalMs', 'network', 'events', 'params', 'churn'), fc.jsonValue(), (field, v) => {
      const raw = { ...(flash() as Record<string, unknown>), [field]: v };
      try {
        parseScenario(raw);
      } catch (e) {
        assert.ok(e instanceof ScenarioError, String(e));
        assert.ok(e.path.startsWith(`scenario.${field}`), e.path);
      }
    }),
    { numRuns: 300 },
  );
});

test('the ready-made scenarios are valid, defaults are filled in, and the JSON Schema lists the kinds', () => {
  const shippedScenarios = readdirSync(new URL('../../scenarios/', import.meta.url)).filter((f) => f.endsWith('.json') && f !== 'schema.json');
  assert.ok(shippedScenarios.length >= 4);
  for (const f of shippedScenarios) {
    const s = parseScenarioText(scenarioFile(f));
    assert.ok(['flash-crowd', 'kademlia'].includes(s.kind), `${f}: ${s.kind}`);
    // Files a scenario names are there and valid (the matrix one).
    if (s.network.latency.model === 'matrix') new ScenarioRun(s, { loadFile: (p) => scenarioFile(p) });
  }
  const s = parseScenario(flash());
  assert.equal(s.sampleIntervalMs, 1000);
  assert.deepEqual(s.events, []);
  assert.equal((s.params as FlashCrowdParams).unchokeSlots, 4);
  const schema = scenarioJsonSchema();
  const shipped = JSON.parse(scenarioFile('schema.json')) as unknown;
  assert.deepEqual(shipped, schema, 'scenarios/schema.json is out of date: regenerate it with `peerkit sim --schema`');
});

test('every shipped scenario runs (shortened: fewer nodes, smaller files) to its goal and writes its files', () => {
  const shipped = readdirSync(new URL('../../scenarios/', import.meta.url)).filter((f) => f.endsWith('.json') && f !== 'schema.json');
  const kinds = new Set<string>();
  for (const f of shipped) {
    const raw = JSON.parse(scenarioFile(f)) as { kind: string; params: Record<string, number> };
    kinds.add(raw.kind);
    const p = raw.params;
    // Files stay big enough (8 MiB and more) for the fluid bound to be the point, not the first round trips.
    const params: Record<string, number> =
      raw.kind === 'flash-crowd'
        ? { ...p, fileBytes: Math.min(p['fileBytes']!, 16 << 20), leechers: Math.min(p['leechers']!, 12) }
        : { ...p, nodes: Math.min(p['nodes']!, 150), lookups: Math.min(p['lookups']!, 150) };
    const r = new ScenarioRun(parseScenario({ ...raw, params }), { loadFile: (name) => scenarioFile(name) }).runToEnd();
    assert.equal(r.summary['endReason'], 'goal reached', `${f}: ${r.table}`);
    for (const name of ['summary.json', 'summary.txt', 'operations.csv', 'timeseries.csv', 'network-size.svg', 'report.html']) assert.ok(r.files[name]!.length > 0, `${f}: ${name}`);
    const res = r.summary['results'] as Record<string, unknown>;
    if (raw.kind === 'flash-crowd') {
      assert.equal(res['completed'], params['leechers'], f);
      assert.equal((res['tracker'] as { internalErrors: number }).internalErrors, 0, f);
      // Undisturbed runs are the theory check's case: within 1.3x of the fluid bound, and never under it.
      if (res['boundApplies'] === true) {
        const ratio = res['ratioToBound'] as number;
        assert.ok(ratio >= 1 && ratio <= 1.3, `${f}: ratio ${ratio}`);
      }
    } else {
      const lookup = (r.summary['operations'] as { kind: string; count: number; ok: number }[]).find((o) => o.kind === 'lookup')!;
      assert.equal(lookup.count, params['lookups'], f);
      assert.ok(lookup.ok / lookup.count > 0.85, `${f}: ${lookup.ok}/${lookup.count} lookups found their node`);
    }
  }
  assert.deepEqual([...kinds].sort(), ['flash-crowd', 'kademlia']);
});

test('flash crowd: the real TorrentCore swarm completes within 1.3x the fluid-model lower bound', () => {
  const s = parseScenarioText(scenarioFile('flash-crowd-small.json'));
  const p = s.params as FlashCrowdParams;
  assert.ok(p.leechers >= 8 && p.leechers <= 20);
  // Three seeds: the bound is no accident of one schedule.
  for (const seed of [1, 2, 3]) {
    const run = new ScenarioRun(s, { seed });
    const r = run.runToEnd();
    const res = r.summary['results'] as { lastCompletionMs: number; fluidLowerBoundMs: number; ratioToBound: number; completed: number; boundApplies: boolean };
    assert.equal(res.boundApplies, true);
    assert.equal(res.completed, p.leechers);
    // The bound, computed by hand for this file: max(F/u_s, F/d_min, P*F/(u_s + sum u_i)).
    const F = p.fileBytes;
    const leecher = p.leecher!;
    const expected = 1000 * Math.max(F / p.seeder.uploadBps, F / leecher.downloadBps, (p.leechers * F) / (p.seeder.uploadBps + p.leechers * leecher.uploadBps));
    assert.ok(Math.abs(fluidLowerBoundMs(p) - expected) < 1e-6);
    // No schedule can beat the bound; ours must come within 30 % of it.
    assert.ok(res.lastCompletionMs >= expected, `${res.lastCompletionMs} < ${expected}`);
    assert.ok(res.ratioToBound <= 1.3, `ratio ${res.ratioToBound}`);
    // Every leecher downloaded the whole file, and the leechers did most of the uploading.
    const ops = r.files['operations.csv']!.trim().split('\n').slice(1);
    assert.equal(ops.length, p.leechers);
    assert.ok(ops.every((l) => l.split(',')[5] === '1'));
  }
});

test('flash crowd: the peers find each other through the real TrackerCore, announcing over BEP 15', () => {
  const r = new ScenarioRun(parseScenario(flash({ leechers: 6 }))).runToEnd();
  const res = r.summary['results'] as { completed: number; tracker: { announces: number; connects: number; peersAtEnd: number; seedersAtEnd: number; peersReceived: number; internalErrors: number; announcesFailed: number } };
  assert.equal(res.completed, 6);
  const t = res.tracker;
  assert.equal(t.internalErrors, 0);
  assert.equal(t.announcesFailed, 0);
  // Each node connected (BEP 15) and announced `started`; each leecher announced `completed` too.
  assert.ok(t.connects >= 7, `${t.connects} connects`);
  assert.ok(t.announces >= 7 + 6, `${t.announces} announces`);
  // The tracker knows the whole swarm, and that every leecher finished.
  assert.equal(t.peersAtEnd, 7);
  assert.equal(t.seedersAtEnd, 7);
  // The leechers announcing later got the earlier ones: the seeder, then up to all six nodes.
  assert.ok(t.peersReceived >= 1 + 2 + 3 + 4 + 5 + 6, `${t.peersReceived} peers received`);
  const net = r.summary['network'] as { datagramsSent: number; datagramsDelivered: number };
  assert.ok(net.datagramsSent >= 2 * (7 + 13), 'connects, announces and their replies are datagrams on the simulated network');
  assert.equal(net.datagramsDelivered, net.datagramsSent);
});

test('flash crowd, graceful leaves: leechers that go when done, or by a leave event, send FINs and `stopped`; the swarm still completes', () => {
  type Res = { completed: number; connectionsClosed: { fin: number; reset: number }; tracker: { peersAtEnd: number } };
  type Life = { graceful: number; crashes: number; onlineAtEnd: number };
  const params = { leechers: 8, fileBytes: 2 << 20 };
  // seedAfterDone: false, every leecher leaves as soon as it has the file.
  const a = new ScenarioRun(parseScenario(flash({ ...params, seedAfterDone: false }))).runToEnd();
  const ra = a.summary['results'] as Res;
  const la = a.summary['lifecycle'] as Life;
  assert.equal(ra.completed, 8);
  assert.equal(la.graceful, 8);
  assert.equal(la.crashes, 0);
  assert.equal(la.onlineAtEnd, 1);
  assert.ok(ra.connectionsClosed.fin > 0);
  assert.equal(ra.connectionsClosed.reset, 0, 'a graceful leave resets no connection');
  // Only the seeder is still listed: each leaver's `stopped` reached the tracker.
  assert.equal(ra.tracker.peersAtEnd, 1);
  // Half the leechers leave mid-download and come back: still no reset, and everyone completes.
  const events = (type: string): unknown[] => [
    { atMs: 2000, type, fraction: 0.5, group: 'leechers' },
    { atMs: 5000, type: 'join', fraction: 1, group: 'leechers' },
  ];
  const b = new ScenarioRun(parseScenario(flash(params, { events: events('leave') }))).runToEnd();
  const rb = b.summary['results'] as Res;
  assert.equal(rb.completed, 8);
  assert.equal((b.summary['lifecycle'] as Life).graceful, 4);
  assert.ok(rb.connectionsClosed.fin > 0);
  assert.equal(rb.connectionsClosed.reset, 0);
  // The same with crashes: the peers that stay see resets instead.
  const c = new ScenarioRun(parseScenario(flash(params, { events: events('crash') }))).runToEnd();
  const rc = c.summary['results'] as Res;
  assert.equal(rc.completed, 8);
  assert.equal((c.summary['lifecycle'] as Life).crashes, 4);
  assert.ok(rc.connectionsClosed.reset > 0, 'a crash resets the connections');
});

test('flash crowd with leecher capacity classes: counts by share, the bound over d_min and sum u_i, a group per named class', () => {
  const fast = { name: 'fast', fraction: 0.5, uploadBps: 1_000_000, downloadBps: 4_000_000 };
  const slow = { name: 'slow', fraction: 0.5, uploadBps: 250_000, downloadBps: 1_000_000 };
  const bad: [unknown, string, RegExp][] = [
    [flash({ leecherClasses: [fast, slow] }), 'scenario.params', /needs exactly one of "leecher", "leecherClasses", got 2/],
    [flash({ leecher: undefined, leecherClasses: [fast, { ...slow, fraction: 0.4 }] }), 'scenario.params.leecherClasses', /add up to 1, got 0.9/],
    [flash({ leecher: undefined, leecherClasses: [{ ...fast, name: 'leechers' }, slow] }), 'scenario.params.leecherClasses[0].name', /"leechers" is taken/],
    [flash({ leecher: undefined, leecherClasses: [fast, { ...slow, name: 'fast' }] }), 'scenario.params.leecherClasses[1].name', /"fast" is taken/],
    [flash({ leecher: undefined, leecherClasses: [fast, { ...slow, fraction: 0 }] }), 'scenario.params.leecherClasses[1].fraction', /> 0/],
  ];
  for (const [raw, path, message] of bad) {
    const e = errorOf(raw);
    assert.equal(e.path, path, e.message);
    assert.match(e.message, message);
  }
  // Largest remainder: the counts add up to P, each within 1 of its share (ties to the earlier class).
  const counts = (fractions: number[], leechers: number): number[] =>
    leecherClassCounts({ leechers, leecherClasses: fractions.map((fraction) => ({ fraction, uploadBps: 1, downloadBps: 1 })) } as unknown as FlashCrowdParams);
  assert.deepEqual(counts([0.5, 0.25, 0.25], 10), [5, 3, 2]);
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 5000 }), (weights, leechers) => {
      const total = weights.reduce((a, b) => a + b, 0);
      const fractions = weights.map((w) => w / total);
      const c = counts(fractions, leechers);
      assert.equal(c.reduce((a, b) => a + b, 0), leechers);
      c.forEach((n, k) => assert.ok(Math.abs(n - fractions[k]! * leechers) < 1, `${n} vs ${fractions[k]! * leechers}`));
    }),
  );
  const F = 4 << 20;
  const raw = flash(
    { leechers: 10, fileBytes: F, leecher: undefined, leecherClasses: [fast, slow], seeder: { uploadBps: 2_000_000 } },
    { events: [{ atMs: 1000, type: 'crash', count: 1, group: 'slow' }] },
  );
  const s = parseScenario(raw);
  const p = s.params as FlashCrowdParams;
  // By hand: d_min is the slow class's download, sum u_i = 5 x 1 MB/s + 5 x 0.25 MB/s.
  const bound = 1000 * Math.max(F / 2_000_000, F / 1_000_000, (10 * F) / (2_000_000 + 5 * 1_000_000 + 5 * 250_000));
  assert.ok(Math.abs(fluidLowerBoundMs(p) - bound) < 1e-6);
  const r = new ScenarioRun(s).runToEnd();
  type Cls = { name: string; leechers: number; completed: number; meanDownloadMs: number; maxDownloadMs: number };
  const res = r.summary['results'] as { classes: Cls[]; completed: number };
  const [f, sl] = res.classes as [Cls, Cls];
  assert.equal(f.leechers, 5);
  assert.equal(sl.leechers, 5);
  // The crash hit the "slow" group, and the crashed node never came back.
  assert.equal(f.completed, 5);
  assert.equal(sl.completed, 4);
  // Each class's hosts got its capacities: nobody downloads F faster than its own link allows,
  // and the slow class, a quarter of the fast one's capacities, finishes later on average.
  assert.ok(f.maxDownloadMs >= (1000 * F) / fast.downloadBps && sl.maxDownloadMs >= (1000 * F) / slow.downloadBps);
  assert.ok(sl.meanDownloadMs > f.meanDownloadMs, `slow ${sl.meanDownloadMs} ms, fast ${f.meanDownloadMs} ms`);
  assert.match(r.table, /leecher classes\s+fast: 5 x 1000000\/4000000 B\/s up\/down, mean download [\d.]+ s; slow: 5 x /);
});

test('same seed, byte-identical output files; another seed, different ones', () => {
  const raw = flash({ leechers: 5 }, { churn: { group: 'leechers', session: { type: 'exponential', dropFraction: 0.3, withinMs: 5000 }, offline: { type: 'constant', ms: 2000 } }, events: [{ atMs: 1000, type: 'crash', count: 1, group: 'leechers' }] });
  const a = new ScenarioRun(parseScenario(raw)).runToEnd();
  const b = new ScenarioRun(parseScenario(raw)).runToEnd();
  const c = new ScenarioRun(parseScenario(raw), { seed: 99 }).runToEnd();
  assert.deepEqual(Object.keys(a.files).sort(), Object.keys(b.files).sort());
  for (const name of Object.keys(a.files)) assert.equal(a.files[name], b.files[name], `${name} differs between two runs with the same seed`);
  assert.equal(a.table, b.table);
  assert.notEqual(a.files['timeseries.csv'], c.files['timeseries.csv']);
  assert.match(c.files['scenario.json']!, /"seed": 99/);
  for (const f of ['operations.csv', 'operations.json', 'timeseries.csv', 'timeseries.json', 'summary.json', 'summary.txt', 'network-size.svg', 'cdf-download.svg', 'swarm-completion.svg', 'upload-ratios.svg']) {
    assert.ok(a.files[f] !== undefined, `missing ${f}`);
  }
  assert.ok((a.summary['lifecycle'] as { crashes: number }).crashes >= 1);
});

test('how a run is cut into steps (as the CLI does for its progress display) does not change its files', () => {
  const raw = flash({ leechers: 4 }, { events: [{ atMs: 700, type: 'crash', count: 1, group: 'leechers' }, { atMs: 2500, type: 'join', fraction: 1 }] });
  const whole = new ScenarioRun(parseScenario(raw)).runToEnd();
  const run = new ScenarioRun(parseScenario(raw));
  let k = 0;
  while (!run.advance(1 + ((k * 37) % 97), 1 + ((k * 101) % 500))) k++;
  assert.ok(k > 20);
  const stepped = run.result();
  for (const name of Object.keys(whole.files)) assert.equal(stepped.files[name], whole.files[name], name);
});

test('flash crowd under churn, NATs and a hostile peer: the corrupt peer is banned and every leecher completes', () => {
  const raw = flash(
    { leechers: 8, natFraction: 0.5, fileBytes: 2 << 20 },
    {
      events: [
        { atMs: 0, type: 'hostile', count: 1, group: 'leechers', behaviour: 'corrupt' },
        { atMs: 3000, type: 'crash', fraction: 0.25, group: 'leechers' },
        { atMs: 6000, type: 'join', fraction: 1, group: 'leechers' },
      ],
    },
  );
  const run = new ScenarioRun(parseScenario(raw));
  const r = run.runToEnd();
  const res = r.summary['results'] as { completed: number; bans: number; failedPieces: number };
  assert.equal(res.completed, 8);
  assert.ok(res.failedPieces > 0, 'the corrupt peer served no data');
  assert.ok(res.bans > 0, 'nobody banned the corrupt peer');
  const life = r.summary['lifecycle'] as { crashes: number; joins: number; hostile: number };
  assert.equal(life.crashes, 2);
  assert.equal(life.joins, 9 + 2);
  assert.equal(life.hostile, 1);
  const net = r.summary['network'] as { connectionsFiltered: number };
  assert.ok(net.connectionsFiltered > 0, 'NATed leechers were never dialled');
});

test('distributions: sample means and CDFs match theory; calibration puts dropFraction before withinMs', () => {
  const rnd = seededRandom('dist');
  const dists: Distribution[] = [
    { type: 'exponential', meanMs: 1000 },
    { type: 'weibull', shape: 0.7, scaleMs: 500 },
    { type: 'weibull', shape: 2, scaleMs: 500 },
    { type: 'pareto', shape: 3, minMs: 100 },
    { type: 'uniform', minMs: 10, maxMs: 20 },
  ];
  const n = 40_000;
  for (const d of dists) {
    const xs = Array.from({ length: n }, () => sample(d, rnd));
    assert.ok(xs.every((x) => x >= 0));
    const m = xs.reduce((a, b) => a + b, 0) / n;
    assert.ok(Math.abs(m - mean(d)) / mean(d) < 0.05, `${d.type}: mean ${m} vs ${mean(d)}`);
    // Kolmogorov-Smirnov distance against the CDF (critical value at 1e-3: 1.95 / sqrt(n)).
    xs.sort((a, b) => a - b);
    let ks = 0;
    xs.forEach((x, i) => (ks = Math.max(ks, Math.abs(cdf(d, x) - (i + 1) / n), Math.abs(cdf(d, x) - i / n))));
    assert.ok(ks < 1.95 / Math.sqrt(n), `${d.type}: KS ${ks}`);
  }
  for (const type of ['exponential', 'weibull', 'pareto'] as const) {
    for (const f of [0.15, 0.2]) {
      const d = resolveDistribution((type === 'exponential' ? { type, dropFraction: f, withinMs: 60_000 } : { type, shape: 1.5, dropFraction: f, withinMs: 60_000 }) as DistributionSpec);
      assert.ok(Math.abs(cdf(d, 60_000) - f) < 1e-9, `${type} ${f}: ${cdf(d, 60_000)}`);
      const dropped = Array.from({ length: 20_000 }, () => sample(d, rnd)).filter((x) => x <= 60_000).length / 20_000;
      assert.ok(Math.abs(dropped - f) < 0.015, `${type} ${f}: ${dropped}`);
    }
  }
});

test('lifecycle: churn keeps the expected share online; events pick among the right group', () => {
  const engine = new SimEngine();
  const started: number[] = [];
  const stopped: [number, string][] = [];
  const hostile: number[] = [];
  const n = 2000;
  const control: NodeControl = {
    start: (i) => started.push(i),
    stop: (i, how) => stopped.push([i, how]),
    makeHostile: (i, b) => (b === 'evil' ? (hostile.push(i), true) : false),
    group: (name) => (name === '*' ? Array.from({ length: n }, (_, i) => i) : name === 'odd' ? Array.from({ length: n / 2 }, (_, i) => 2 * i + 1) : undefined),
  };
  const life = new Lifecycle(engine, seededRandom(5), n, control);
  for (let i = 0; i < n; i++) life.join(i);
  // Sessions and offline times both exponential with mean 10 s: half the nodes online in steady state.
  life.churn({ session: { type: 'exponential', meanMs: 10_000 }, offline: { type: 'exponential', meanMs: 10_000 }, crashFraction: 0.5 });
  life.schedule([
    { atMs: 100_000, type: 'hostile', count: 10, group: 'odd', behaviour: 'evil' },
    { atMs: 100_000, type: 'hostile', count: 10, behaviour: 'unknown' },
  ]);
  engine.run({ until: 100_000 });
  assert.ok(Math.abs(life.online / n - 0.5) < 0.05, `${life.online} online`);
  const crashes = stopped.filter(([, h]) => h === 'crash').length;
  assert.ok(Math.abs(crashes / stopped.length - 0.5) < 0.03);
  assert.equal(life.stats.crashes + life.stats.graceful, stopped.length);
  assert.equal(hostile.length, 10);
  assert.ok(hostile.every((i) => i % 2 === 1 && life.isOnline(i)));
  assert.equal(life.stats.hostile, 10);
  assert.throws(() => life.churn({ group: 'nope', session: { type: 'constant', ms: 1 } }), /unknown group "nope"/);
});

test('svg writer: deterministic, escaped, finite', () => {
  const chart = (): string =>
    lineChart({ title: 'a <b> & "c"', xLabel: 'x', yLabel: 'y', series: [{ name: 's', points: [[0, 1], [1, 3], [2, NaN], [3, 2]] }, { name: 'cdf', points: cdfPoints([3, 1, 2]), step: true }] });
  const svg = chart();
  assert.equal(svg, chart());
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  assert.match(svg, /a &lt;b&gt; &amp; &quot;c&quot;/);
  assert.doesNotMatch(svg, /NaN|Infinity|undefined/);
  assert.deepEqual(cdfPoints([3, 1, 2]), [[1, 0], [1, 1 / 3], [2, 2 / 3], [3, 1]]);
  assert.deepEqual(niceTicks(0, 10), [0, 2, 4, 6, 8, 10]);
  // An empty chart is still a valid picture.
  assert.doesNotMatch(lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [] }), /NaN|Infinity/);
});

test('cdfPoints: one point per distinct value, at most about maxPoints of them, and the step drawn is below the true CDF by less than 1/maxPoints', () => {
  assert.deepEqual(cdfPoints([2, 1, 1, 2, 2]), [[1, 0], [1, 0.4], [2, 1]]);
  assert.deepEqual(cdfPoints([5, NaN, Infinity]), [[5, 0], [5, 1]]);
  assert.equal(cdfPoints(Array.from({ length: 100_000 }, (_, i) => i)).length, 1001);
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -50, max: 50 }), { maxLength: 300 }), fc.integer({ min: 1, max: 40 }), (values, maxPoints) => {
      const pts = cdfPoints(values, maxPoints);
      if (values.length === 0) return pts.length === 0;
      assert.ok(pts.length <= maxPoints + 2);
      assert.equal(pts[pts.length - 1]![1], 1);
      for (let j = 1; j < pts.length; j++) assert.ok(pts[j]![0] >= pts[j - 1]![0] && pts[j]![1] > pts[j - 1]![1]);
      for (const v of values) {
        const trueF = values.filter((w) => w <= v).length / values.length;
        const drawn = Math.max(...pts.filter((p) => p[0] <= v).map((p) => p[1]));
        assert.ok(trueF - drawn >= -1e-12 && trueF - drawn < 1 / maxPoints, `at ${v}: true ${trueF}, drawn ${drawn}`);
      }
      return true;
    }),
  );
});

test('report.html: the summary table, every plot inline, links to the data files; the scenario name escaped; no scripts or outside assets', () => {
  const r = new ScenarioRun(parseScenario(flash({ leechers: 3 }, { name: '<script>alert(1)</script> & co' }))).runToEnd();
  const html = r.files['report.html'];
  assert.ok(html !== undefined, 'report.html written');
  assert.ok(!html.includes('<script>alert(1)</script>'), 'the name is escaped');
  assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt; &amp; co/);
  assert.doesNotMatch(html, /<script|src="http|href="http/i, 'self-contained, no scripts');
  for (const line of r.table.trim().split('\n')) {
    const label = line.split(/\s{2,}/)[0]!.trim();
    assert.ok(html.includes(`<td>${label}</td>`), `summary row ${label}`);
  }
  const svgs = Object.keys(r.files).filter((n) => n.endsWith('.svg'));
  assert.ok(svgs.length >= 4);
  assert.equal((html.match(/<svg[\s>]/g) ?? []).length, svgs.length, 'every plot inline');
  for (const n of ['operations.csv', 'timeseries.csv', 'summary.json']) assert.ok(html.includes(`href="${n}"`), `link to ${n}`);
});
