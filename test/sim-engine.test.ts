import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { EventQueue } from '../src/runtime/sim/event-queue.js';
import { SimEngine, SimLimitError } from '../src/runtime/sim/engine.js';
import { SeededRandom, seededRandom } from '../src/runtime/sim/prng.js';

function drain<T>(q: EventQueue<T>): T[] {
  const out: T[] = [];
  for (let e = q.pop(); e !== undefined; e = q.pop()) out.push(e.value);
  return out;
}

test('event queue pops in time order, same-time entries in insertion order', () => {
  const q = new EventQueue<string>();
  q.push(30, 'c1');
  q.push(10, 'a1');
  q.push(20, 'b1');
  q.push(10, 'a2');
  q.push(30, 'c2');
  q.push(10, 'a3');
  q.push(-5, 'neg');
  assert.equal(q.size, 7);
  assert.equal(q.peekTime(), -5);
  assert.deepEqual(drain(q), ['neg', 'a1', 'a2', 'a3', 'b1', 'c1', 'c2']);
  assert.equal(q.size, 0);
  assert.equal(q.pop(), undefined);
  assert.equal(q.peekTime(), undefined);
});

test('event queue cancellation is lazy, idempotent and keeps order', () => {
  const q = new EventQueue<number>();
  const handles = Array.from({ length: 10 }, (_, i) => q.push(i % 3, i));
  handles[0]!.cancel();
  handles[4]!.cancel();
  handles[4]!.cancel(); // twice is harmless
  assert.equal(handles[4]!.pending, false);
  assert.equal(q.size, 8);
  const first = q.pop()!;
  assert.equal(first.value, 3);
  first.cancel(); // cancelling a popped entry is harmless
  assert.equal(q.size, 7);
  assert.deepEqual(drain(q), [6, 9, 1, 7, 2, 5, 8]);
  assert.throws(() => q.push(NaN, 0), RangeError);
});

test('event queue compacts when most entries are cancelled', () => {
  const q = new EventQueue<number>();
  const handles = [];
  for (let i = 0; i < 1000; i++) handles.push(q.push(1000 - i, i));
  for (let i = 0; i < 1000; i++) if (i % 10 !== 0) handles[i]!.cancel();
  assert.equal(q.size, 100);
  const values = drain(q);
  assert.deepEqual(values, Array.from({ length: 100 }, (_, k) => 990 - 10 * k));
});

test('property: event queue behaves like a stable sort by time, with cancellation', () => {
  type Op = { kind: 'push'; time: number } | { kind: 'pop' } | { kind: 'cancel'; pick: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 5, arbitrary: fc.record({ kind: fc.constant('push' as const), time: fc.integer({ min: 0, max: 20 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('pop' as const) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat() }) },
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
      const q = new EventQueue<number>();
      const handles: ReturnType<EventQueue<number>['push']>[] = [];
      // Reference: a plain list of live [time, seq] kept sorted.
      let model: { time: number; seq: number }[] = [];
      let seq = 0;
      const popped: number[] = [];
      const expected: number[] = [];
      for (const o of ops) {
        if (o.kind === 'push') {
          handles.push(q.push(o.time, seq));
          model.push({ time: o.time, seq });
          seq++;
        } else if (o.kind === 'pop') {
          const e = q.pop();
          model.sort((a, b) => a.time - b.time || a.seq - b.seq);
          const m = model.shift();
          assert.equal(e?.value, m?.seq);
          if (e !== undefined) popped.push(e.value);
          if (m !== undefined) expected.push(m.seq);
        } else if (handles.length > 0) {
          const h = handles[o.pick % handles.length]!;
          h.cancel();
          model = model.filter((m) => m.seq !== h.value);
        }
        assert.equal(q.size, model.length);
      }
      model.sort((a, b) => a.time - b.time || a.seq - b.seq);
      assert.deepEqual(drain(q), model.map((m) => m.seq));
      assert.deepEqual(popped, expected);
    }),
    { numRuns: 300 },
  );
});

test('engine runs events in (time, insertion) order and the clock never goes backwards', () => {
  const engine = new SimEngine();
  const trace: string[] = [];
  engine.schedule(50, () => trace.push(`b@${engine.now}`));
  engine.schedule(10, () => {
    trace.push(`a@${engine.now}`);
    engine.schedule(5, () => trace.push(`past@${engine.now}`)); // in the past: runs at 10
    engine.schedule(10, () => trace.push(`same@${engine.now}`));
    engine.after(15, () => trace.push(`after@${engine.now}`));
  });
  engine.schedule(50, () => trace.push(`c@${engine.now}`));
  const result = engine.run();
  assert.deepEqual(trace, ['a@10', 'past@10', 'same@10', 'after@25', 'b@50', 'c@50']);
  assert.deepEqual(result, { events: 6, reason: 'idle', now: 50 });
  assert.equal(engine.eventsProcessed, 6);
  assert.throws(() => engine.schedule(NaN, () => {}), RangeError);
  assert.throws(() => engine.schedule(Infinity, () => {}), RangeError);
});

test('engine run stops at until, maxEvents and stop(); step runs one event', () => {
  const engine = new SimEngine();
  const seen: number[] = [];
  for (let t = 1; t <= 10; t++) engine.schedule(t * 100, () => seen.push(engine.now));
  assert.deepEqual(engine.run({ until: 250 }), { events: 2, reason: 'until', now: 250 });
  assert.deepEqual(engine.run({ maxEvents: 3 }), { events: 3, reason: 'maxEvents', now: 500 });
  assert.equal(engine.step(), true);
  assert.equal(engine.now, 600);
  engine.schedule(650, () => engine.stop());
  assert.deepEqual(engine.run(), { events: 1, reason: 'stopped', now: 650 });
  assert.equal(engine.pendingEvents, 4);
  assert.deepEqual(engine.run({ until: 5000 }), { events: 4, reason: 'idle', now: 5000 }); // idle, then the clock moves to until
  assert.deepEqual(seen, [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]);
  assert.equal(engine.step(), false);
  assert.equal(engine.now, 5000);
});

test('engine timers can be cancelled, runUntilIdle detects runaway loops, no re-entrant runs', () => {
  const engine = new SimEngine();
  let fired = 0;
  const h = engine.timers.at(100, () => fired++);
  engine.timers.at(50, () => h.cancel());
  engine.runUntilIdle();
  assert.equal(fired, 0);
  assert.equal(engine.now, 50);

  const loop = (): void => {
    engine.after(1, loop);
  };
  loop();
  assert.throws(() => engine.runUntilIdle(1000), SimLimitError);

  const engine2 = new SimEngine();
  engine2.schedule(1, () => engine2.run());
  assert.throws(() => engine2.run(), /already running/);
});

test('engine runAsync lets promise continuations run between events, at the right time', async () => {
  const engine = new SimEngine();
  const sleep = (ms: number): Promise<void> => new Promise((resolve) => engine.after(ms, resolve));
  const trace: string[] = [];
  const task = async (name: string, step: number): Promise<void> => {
    for (let i = 0; i < 3; i++) {
      await sleep(step);
      trace.push(`${name}@${engine.now}`);
    }
  };
  const done = Promise.all([task('x', 10), task('y', 15)]);
  const result = await engine.runAsync();
  await done;
  assert.equal(result.reason, 'idle');
  assert.deepEqual(trace, ['x@10', 'y@15', 'x@20', 'y@30', 'x@30', 'y@45']);
});

/** A random workload: events that schedule more events at random times and record a trace. */
function workloadTrace(seed: number): string[] {
  const engine = new SimEngine();
  const random = seededRandom(seed);
  const trace: string[] = [];
  let spawned = 0;
  const event = (id: number) => (): void => {
    trace.push(`${engine.now}:${id}`);
    const children = random.below(3);
    for (let c = 0; c < children && spawned < 2000; c++) {
      const child = ++spawned;
      const handle = engine.after(random.below(50), event(child));
      if (random.float() < 0.1) handle.cancel();
    }
  };
  for (let i = 0; i < 20; i++) engine.schedule(random.below(10), event(-i));
  engine.runUntilIdle();
  return trace;
}

test('determinism: same seed gives an identical trace, different seeds differ', () => {
  const a = workloadTrace(1234);
  const b = workloadTrace(1234);
  const c = workloadTrace(1235);
  assert.ok(a.length > 100);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

test('prng: seeding is reproducible; number and bigint seeds agree; seeds differ', () => {
  const take = (r: SeededRandom, n = 16): number[] => Array.from({ length: n }, () => r.u32());
  assert.deepEqual(take(seededRandom(42)), take(seededRandom(42)));
  assert.deepEqual(take(seededRandom(42)), take(seededRandom(42n)));
  assert.deepEqual(take(seededRandom('peerkit')), take(seededRandom('peerkit')));
  const distinct = new Set([0, 1, 2, -1, 42, 2 ** 53 - 1, 0.5, 'x', 'y', 2n ** 64n, -(2n ** 64n)].map((s) => take(seededRandom(s), 4).join(',')));
  assert.equal(distinct.size, 11);
  for (const v of take(seededRandom(7), 1000)) assert.ok(Number.isInteger(v) && v >= 0 && v < 2 ** 32);
});

test('prng: forks are reproducible, independent of parent draws and of each other', () => {
  const root = seededRandom(99);
  const a1 = root.fork('host:a');
  for (let i = 0; i < 100; i++) root.u32();
  const a2 = root.fork('host:a');
  const b = root.fork('host:b');
  const xs = Array.from({ length: 32 }, () => a1.u32());
  assert.deepEqual(Array.from({ length: 32 }, () => a2.u32()), xs);
  const ys = Array.from({ length: 32 }, () => b.u32());
  assert.notDeepEqual(xs, ys);
  assert.notDeepEqual(seededRandom(100).fork('host:a').u32(), seededRandom(99).fork('host:a').u32());
  // Forking is not the same as re-seeding with the label.
  assert.notEqual(seededRandom('host:a').u32(), seededRandom(99).fork('host:a').u32());
});

test('prng: distribution sanity (below, float, bits, bytes)', () => {
  const r = seededRandom(2024);
  const n = 100_000;
  const k = 10;
  const counts = new Array<number>(k).fill(0);
  for (let i = 0; i < n; i++) counts[r.below(k)]!++;
  const expected = n / k;
  const chi2 = counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
  assert.ok(chi2 < 40, `chi-square ${chi2} too large for 9 degrees of freedom`); // p < 1e-5 otherwise

  let sum = 0;
  let min = 1;
  let max = 0;
  for (let i = 0; i < n; i++) {
    const f = r.float();
    assert.ok(f >= 0 && f < 1);
    sum += f;
    min = Math.min(min, f);
    max = Math.max(max, f);
  }
  assert.ok(Math.abs(sum / n - 0.5) < 0.01);
  assert.ok(min < 0.001 && max > 0.999);

  const bitCounts = new Array<number>(32).fill(0);
  for (let i = 0; i < 20_000; i++) {
    const v = r.u32();
    for (let b = 0; b < 32; b++) if ((v >>> b) & 1) bitCounts[b]!++;
  }
  for (const c of bitCounts) assert.ok(Math.abs(c / 20_000 - 0.5) < 0.03, `bit frequency ${c / 20_000}`);

  const bytes = r.bytes(64_003);
  assert.equal(bytes.length, 64_003);
  const byteCounts = new Array<number>(256).fill(0);
  for (const b of bytes) byteCounts[b]!++;
  assert.ok(Math.min(...byteCounts) > 150 && Math.max(...byteCounts) < 350);

  for (let i = 0; i < 1000; i++) assert.equal(r.below(1), 0);
  const big = r.below(2 ** 32);
  assert.ok(big >= 0 && big < 2 ** 32);
  assert.throws(() => r.below(0), RangeError);
  assert.throws(() => r.below(1.5), RangeError);
  assert.throws(() => r.below(2 ** 32 + 1), RangeError);
  assert.throws(() => r.bytes(-1), RangeError);
});

test('property: below(n) stays in range for any n', () => {
  const r = seededRandom(5);
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 32 }), (n) => {
      for (let i = 0; i < 20; i++) {
        const v = r.below(n);
        assert.ok(Number.isInteger(v) && v >= 0 && v < n);
      }
    }),
  );
});

test('posted events interleave with pushed ones in (time, insertion) order; take() reports their time', () => {
  const q = new EventQueue<string>();
  q.post(5, 'p5');
  const h = q.push(5, 'h5');
  q.post(1, 'p1');
  q.push(9, 'h9');
  q.post(5, 'p5b');
  h.cancel();
  assert.equal(q.size, 4);
  const out: string[] = [];
  const times: number[] = [];
  for (let v = q.take(); v !== undefined; v = q.take()) {
    out.push(v);
    times.push(q.lastTime);
  }
  assert.deepEqual(out, ['p1', 'p5', 'p5b', 'h9']);
  assert.deepEqual(times, [1, 5, 5, 9]);
  // pop() of a posted value still hands out an entry.
  q.post(3, 'x');
  const e = q.pop()!;
  assert.equal(e.value, 'x');
  assert.equal(e.time, 3);
  assert.equal(e.pending, false);
});

test('property: a mix of post, push, cancel and take matches a stable sort by time', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.constantFrom('post', 'push', 'take', 'cancel'), fc.integer({ min: 0, max: 10 }), fc.nat()), { maxLength: 500 }),
      (ops) => {
        const q = new EventQueue<number>();
        let model: { time: number; seq: number }[] = [];
        const handles: { seq: number; h: ReturnType<EventQueue<number>['push']> }[] = [];
        let seq = 0;
        for (const [kind, time, pick] of ops) {
          if (kind === 'post') {
            q.post(time, seq);
            model.push({ time, seq: seq++ });
          } else if (kind === 'push') {
            handles.push({ seq, h: q.push(time, seq) });
            model.push({ time, seq: seq++ });
          } else if (kind === 'take') {
            model.sort((a, b) => a.time - b.time || a.seq - b.seq);
            const m = model.shift();
            const v = q.take();
            assert.equal(v, m?.seq);
            if (m) assert.equal(q.lastTime, m.time);
          } else if (handles.length > 0) {
            const { seq: s, h } = handles[pick % handles.length]!;
            h.cancel();
            model = model.filter((m) => m.seq !== s);
          }
          assert.equal(q.size, model.length);
        }
      },
    ),
    { numRuns: 300 },
  );
});
