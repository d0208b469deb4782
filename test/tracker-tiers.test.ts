import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TrackerTiers, announceTiers, type AnnounceAttempt } from '../src/core/tracker-tiers.js';
import type { Random } from '../src/runtime/contract.js';

/** `below` answers from a script (then 0) and records what it was asked; the rest is fixed. */
class ScriptedRandom implements Random {
  readonly belowCalls: number[] = [];
  constructor(private readonly script: number[] = []) {}
  u32(): number {
    return 0x12345678;
  }
  float(): number {
    return 0.5;
  }
  below(n: number): number {
    this.belowCalls.push(n);
    const v = this.script.shift() ?? 0;
    assert.ok(v >= 0 && v < n, `scripted ${v} not below ${n}`);
    return v;
  }
  bytes(n: number): Uint8Array {
    return new Uint8Array(n);
  }
}

/** A Random whose shuffle leaves every tier in its original order (j = i at every step). */
const identity = (): Random => ({
  u32: () => 0,
  float: () => 0.999,
  below: (n: number) => n - 1,
  bytes: (n: number) => new Uint8Array(n),
});

const opts = { random: identity(), minIntervalFloorMs: 1000 };

function expectAttempt(t: TrackerTiers, now: number, url: string, event: AnnounceAttempt['event']): AnnounceAttempt {
  const a = t.poll(now);
  assert.ok(a, `an attempt is due at ${now}`);
  assert.equal(a.url, url);
  assert.equal(a.event, event);
  return a;
}

test('announceTiers: announce-list wins over announce; empty tiers and repeated URLs dropped', () => {
  assert.deepEqual(announceTiers('http://a/announce', [['http://b/announce', 'udp://c:80'], [], ['http://b/announce', 'http://d/announce']]), [
    ['http://b/announce', 'udp://c:80'],
    ['http://d/announce'],
  ]);
  assert.deepEqual(announceTiers('http://a/announce', [[], ['']]), [['http://a/announce']]);
  assert.deepEqual(announceTiers('http://a/announce'), [['http://a/announce']]);
  assert.deepEqual(announceTiers(undefined, []), []);
  assert.deepEqual(announceTiers('', undefined), []);
});

test('each tier is shuffled once, with the injected random source (Fisher-Yates)', () => {
  const r = new ScriptedRandom([0, 0, 1]);
  const t = new TrackerTiers([['a', 'b', 'c'], ['d', 'e'], ['f']], { random: r });
  // Tier 1: i=2 swaps with 0 -> c b a; i=1 swaps with 0 -> b c a. Tier 2: i=1 with 1 -> d e.
  assert.deepEqual(t.tiers, [['b', 'c', 'a'], ['d', 'e'], ['f']]);
  assert.deepEqual(r.belowCalls, [3, 2, 2]);
  // Reading the tiers again does not reshuffle.
  assert.deepEqual(t.tiers, [['b', 'c', 'a'], ['d', 'e'], ['f']]);
  assert.deepEqual(r.belowCalls, [3, 2, 2]);
});

test('BEP 12 example: a tracker that answers moves to the front of its tier', () => {
  const t = new TrackerTiers([['t1', 't2', 't3']], opts);
  t.start(0);
  t.failed(0, expectAttempt(t, 0, 't1', 'started').attempt);
  t.succeeded(0, expectAttempt(t, 0, 't2', 'started').attempt, { interval: 10 });
  assert.deepEqual(t.tiers, [['t2', 't1', 't3']]);
  // Next round starts from the front; neither t2 nor t1 answers, t3 does.
  assert.equal(t.nextAnnounceAt(), 10_000);
  t.failed(10_000, expectAttempt(t, 10_000, 't2', undefined).attempt);
  t.failed(10_000, expectAttempt(t, 10_000, 't1', 'started').attempt);
  t.succeeded(10_000, expectAttempt(t, 10_000, 't3', 'started').attempt, { interval: 10 });
  assert.deepEqual(t.tiers, [['t3', 't2', 't1']]);
});

test('tiers are tried in order; every round starts at the first tier again', () => {
  const t = new TrackerTiers([['a', 'b'], ['c'], ['d']], opts);
  t.start(5);
  t.failed(5, expectAttempt(t, 5, 'a', 'started').attempt);
  t.failed(6, expectAttempt(t, 6, 'b', 'started').attempt);
  t.failed(7, expectAttempt(t, 7, 'c', 'started').attempt);
  const d = expectAttempt(t, 8, 'd', 'started');
  assert.equal(d.tier, 2);
  t.succeeded(8, d.attempt, { interval: 100 });
  assert.deepEqual(t.tiers, [['a', 'b'], ['c'], ['d']]);
  assert.equal(t.failures, 0);
  const a = expectAttempt(t, 100_008, 'a', 'started');
  assert.equal(a.tier, 0);
  t.succeeded(100_008, a.attempt, { interval: 100 });
  // a knows us now; the round still starts with it.
  expectAttempt(t, 200_008, 'a', undefined);
});

test('when every tracker fails, the round is retried after a doubling backoff, capped', () => {
  const t = new TrackerTiers([['a'], ['b']], { random: identity(), backoffBaseMs: 1000, backoffMaxMs: 5000 });
  t.start(0);
  let now = 0;
  const waits: number[] = [];
  for (let round = 0; round < 5; round++) {
    t.failed(now, expectAttempt(t, now, 'a', 'started').attempt);
    assert.equal(t.nextAnnounceAt(), now, 'the next tracker is tried at once');
    t.failed(now, expectAttempt(t, now, 'b', 'started').attempt);
    const next = t.nextAnnounceAt()!;
    waits.push(next - now);
    assert.equal(t.poll(next - 1), undefined);
    now = next;
  }
  assert.deepEqual(waits, [1000, 2000, 4000, 5000, 5000]);
  assert.equal(t.failures, 5);
  t.succeeded(now, expectAttempt(t, now, 'a', 'started').attempt, { interval: 60 });
  assert.equal(t.failures, 0);
  assert.equal(t.nextAnnounceAt(), now + 60_000);
});

test('event lifecycle: started first, completed once, stopped at shutdown', () => {
  const t = new TrackerTiers([['a', 'b']], opts);
  assert.equal(t.state, 'idle');
  assert.equal(t.nextAnnounceAt(), undefined);
  assert.equal(t.poll(0), undefined);
  t.start(1000);
  assert.equal(t.state, 'running');
  assert.equal(t.nextAnnounceAt(), 1000);
  const first = expectAttempt(t, 1000, 'a', 'started');
  // While in flight: nothing else is handed out, and there is no deadline.
  assert.equal(t.poll(1000), undefined);
  assert.equal(t.nextAnnounceAt(), undefined);
  t.succeeded(1500, first.attempt, { interval: 1800 });
  assert.equal(t.nextAnnounceAt(), 1500 + 1_800_000);
  t.succeeded(1_801_600, expectAttempt(t, 1_801_500, 'a', undefined).attempt, { interval: 1800 });
  assert.equal(t.nextAnnounceAt(), 1_801_600 + 1_800_000);

  // Completion: announced at once, once.
  t.complete(1_900_000);
  assert.equal(t.nextAnnounceAt(), 1_900_000);
  t.succeeded(1_900_000, expectAttempt(t, 1_900_000, 'a', 'completed').attempt, { interval: 1800 });
  assert.ok(t.completedSent);
  t.complete(1_900_001);
  assert.equal(t.nextAnnounceAt(), 1_900_000 + 1_800_000);
  const stale = expectAttempt(t, 3_700_000, 'a', undefined).attempt;

  // Shutdown while an announce is in flight: its outcome no longer counts; 'stopped' goes to a.
  t.stop(3_700_001);
  assert.equal(t.state, 'stopping');
  assert.equal(t.succeeded(3_700_002, stale, { interval: 5 }), false);
  const stop = expectAttempt(t, 3_700_002, 'a', 'stopped');
  t.succeeded(3_700_003, stop.attempt, { interval: 5 });
  assert.equal(t.state, 'stopped');
  assert.equal(t.nextAnnounceAt(), undefined);
  assert.equal(t.poll(9_999_999), undefined);
});

test('stopped goes, once each, to every tracker that knows us, even if it fails', () => {
  const t = new TrackerTiers([['a', 'b'], ['c']], opts);
  t.start(0);
  t.succeeded(0, expectAttempt(t, 0, 'a', 'started').attempt, { interval: 10 });
  t.failed(10_000, expectAttempt(t, 10_000, 'a', undefined).attempt);
  t.failed(10_000, expectAttempt(t, 10_000, 'b', 'started').attempt);
  // Fail-over: c has not heard from us, so it gets 'started'.
  t.succeeded(10_000, expectAttempt(t, 10_000, 'c', 'started').attempt, { interval: 10 });
  t.stop(12_000);
  t.failed(12_000, expectAttempt(t, 12_000, 'a', 'stopped').attempt);
  t.succeeded(12_001, expectAttempt(t, 12_001, 'c', 'stopped').attempt, { interval: 10 });
  assert.equal(t.state, 'stopped');
  // Restarting is a new session: 'started' again.
  t.start(20_000);
  expectAttempt(t, 20_000, 'a', 'started');
});

test('stop before any tracker answered: nothing to send, unless a started is on its way', () => {
  const quiet = new TrackerTiers([['a']], opts);
  quiet.start(0);
  quiet.failed(0, expectAttempt(quiet, 0, 'a', 'started').attempt);
  quiet.stop(1);
  assert.equal(quiet.state, 'stopped');
  assert.equal(quiet.poll(1), undefined);

  const busy = new TrackerTiers([['a']], opts);
  busy.start(0);
  expectAttempt(busy, 0, 'a', 'started');
  busy.stop(1);
  expectAttempt(busy, 1, 'a', 'stopped');

  const idle = new TrackerTiers([['a']], opts);
  idle.stop(0);
  assert.equal(idle.state, 'stopped');
  const none = new TrackerTiers([], opts);
  none.start(0);
  assert.equal(none.nextAnnounceAt(), undefined);
  assert.equal(none.poll(0), undefined);
});

test('completed during an in-flight started follows right after; completed before started is folded into it', () => {
  const t = new TrackerTiers([['a']], opts);
  t.start(0);
  const s = expectAttempt(t, 0, 'a', 'started');
  t.complete(1);
  assert.equal(t.poll(1), undefined);
  t.succeeded(2, s.attempt, { interval: 1800 });
  assert.equal(t.nextAnnounceAt(), 2);
  t.succeeded(2, expectAttempt(t, 2, 'a', 'completed').attempt, { interval: 1800 });
  assert.ok(t.completedSent);

  // Completion pending when a tracker that never heard of us is reached: it gets 'started' only.
  const u = new TrackerTiers([['a'], ['b']], opts);
  u.start(0);
  u.succeeded(0, expectAttempt(u, 0, 'a', 'started').attempt, { interval: 100 });
  u.complete(50_000);
  u.failed(50_000, expectAttempt(u, 50_000, 'a', 'completed').attempt);
  u.succeeded(50_000, expectAttempt(u, 50_000, 'b', 'started').attempt, { interval: 100 });
  assert.ok(u.completedSent);
  assert.equal(u.nextAnnounceAt(), 150_000);
  expectAttempt(u, 150_000, 'a', undefined);
});

test('intervals: floor, cap, min interval, and reannounce honouring min interval', () => {
  const t = new TrackerTiers([['a']], { random: identity(), minIntervalFloorMs: 30_000, maxIntervalMs: 3_600_000 });
  t.start(0);
  t.succeeded(0, expectAttempt(t, 0, 'a', 'started').attempt, { interval: 5 });
  assert.equal(t.nextAnnounceAt(), 30_000, 'raised to the floor');
  t.succeeded(30_000, expectAttempt(t, 30_000, 'a', undefined).attempt, { interval: 999_999 });
  assert.equal(t.nextAnnounceAt(), 30_000 + 3_600_000, 'cut to the cap');
  const at = 3_630_000;
  t.succeeded(at, expectAttempt(t, at, 'a', undefined).attempt, { interval: 60, minInterval: 300 });
  assert.equal(t.nextAnnounceAt(), at + 300_000, 'never sooner than min interval');
  const at2 = at + 300_000;
  t.succeeded(at2, expectAttempt(t, at2, 'a', undefined).attempt, { interval: 1800, minInterval: 120 });
  assert.equal(t.nextAnnounceAt(), at2 + 1_800_000);
  // A manual reannounce waits for min interval...
  assert.equal(t.reannounce(at2 + 10_000), at2 + 120_000);
  assert.equal(t.poll(at2 + 119_999), undefined);
  const manual = expectAttempt(t, at2 + 120_000, 'a', undefined);
  assert.equal(t.reannounce(at2 + 120_000), undefined, 'not while an announce is in flight');
  t.succeeded(at2 + 120_000, manual.attempt, { interval: 1800 });
  // ...and is due at once once min interval has passed.
  assert.equal(t.reannounce(at2 + 500_000), at2 + 500_000);
});

test('outcomes of stale or unknown attempts are ignored', () => {
  const t = new TrackerTiers([['a', 'b']], opts);
  t.start(0);
  const a = expectAttempt(t, 0, 'a', 'started');
  assert.equal(t.succeeded(0, a.attempt + 1, { interval: 10 }), false);
  assert.equal(t.failed(0, a.attempt + 1), false);
  assert.equal(t.failed(0, a.attempt), true);
  assert.equal(t.failed(0, a.attempt), false, 'a second report of the same attempt');
  assert.equal(t.succeeded(0, a.attempt, { interval: 10 }), false);
  expectAttempt(t, 0, 'b', 'started');
});

test('property: under any sequence of outcomes the tiers stay a permutation of each tier, events follow the lifecycle', () => {
  const step = fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('ok' as const), interval: fc.integer({ min: 0, max: 4000 }), minInterval: fc.option(fc.integer({ min: 0, max: 4000 }), { nil: undefined }) }) },
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('fail' as const) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('complete' as const) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('stop' as const) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('start' as const) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('reannounce' as const) }) },
  );
  const tiersArb = fc
    .array(fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 4 })
    .map((ts) => announceTiers(undefined, ts.map((t) => t.map((n) => `udp://t${n}:80`))));
  const sorted = (x: string[][]): string[][] => x.map((tier) => [...tier].sort());
  fc.assert(
    fc.property(tiersArb, fc.array(fc.nat(), { maxLength: 30 }), fc.array(step, { maxLength: 80 }), (tiers, script, steps) => {
      const random: Random = { ...identity(), below: (n: number) => (script.shift() ?? 0) % n };
      const t = new TrackerTiers(tiers, { random, minIntervalFloorMs: 1000, backoffBaseMs: 1000 });
      assert.deepEqual(sorted(t.tiers), sorted(tiers));
      let now = 0;
      const known = new Set<string>();
      let completeCalled = false;
      let completedDelivered = 0;
      let pending: AnnounceAttempt | undefined;
      t.start(now);
      for (const s of steps) {
        if (!pending) {
          const due = t.nextAnnounceAt();
          if (due !== undefined) {
            assert.ok(due >= now, 'deadlines do not go back in time');
            now = Math.max(now, due);
          }
          pending = t.poll(now);
          if (pending) {
            assert.equal(pending.event === 'stopped', t.state === 'stopping');
            if (pending.event !== 'stopped') assert.equal(pending.event === 'started', !known.has(pending.url), 'started exactly when the tracker does not know us');
            if (pending.event === 'completed') assert.ok(completeCalled);
            assert.ok(t.tiers[pending.tier]!.includes(pending.url));
          }
        }
        const before = t.state;
        switch (s.kind) {
          case 'start':
            t.start(now);
            if (before !== 'running') {
              known.clear();
              pending = undefined;
            }
            break;
          case 'stop':
            t.stop(now);
            if (before === 'running' || before === 'idle') pending = undefined;
            break;
          case 'complete':
            t.complete(now);
            completeCalled = true;
            break;
          case 'reannounce':
            t.reannounce(now);
            break;
          case 'ok':
          case 'fail':
            if (!pending) break;
            if (s.kind === 'ok') {
              assert.ok(t.succeeded(now, pending.attempt, { interval: s.interval, minInterval: s.minInterval }));
              if (pending.event !== 'stopped') {
                known.add(pending.url);
                assert.equal(t.tiers[pending.tier]![0], pending.url, 'promoted to the front of its tier');
              }
              if (pending.event === 'completed') completedDelivered++;
            } else {
              assert.ok(t.failed(now, pending.attempt));
            }
            pending = undefined;
            break;
        }
        if (t.state === 'stopped') known.clear();
        assert.deepEqual(sorted(t.tiers), sorted(tiers));
      }
      assert.ok(completedDelivered <= 1, 'completed is delivered at most once');
    }),
    { numRuns: 500 },
  );
});
