import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Choker, type ChokerOptions } from '../src/core/choker.js';
import { seededRandom } from '../src/runtime/sim/index.js';

function choker(o: Partial<ChokerOptions> & { seed?: number } = {}): Choker<string> {
  return new Choker<string>({ random: seededRandom(o.seed ?? 1), ...o });
}

/** Adds peers p0..p(n-1), interested, download rate (n - i) * 1000 unless given. */
function populate(c: Choker<string>, n: number, now = 0, rate = (i: number) => (n - i) * 1000): string[] {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = `p${i}`;
    c.add(id, now);
    c.setInterested(id, true);
    c.setDownloadRate(id, rate(i));
    ids.push(id);
  }
  return ids;
}

const regularOf = (c: Choker<string>): string[] => c.unchoked().filter((p) => !c.isOptimistic(p));
const optimisticOf = (c: Choker<string>): string[] => c.unchoked().filter((p) => c.isOptimistic(p));

test('with enough interested peers: the regular slots go to the fastest, plus one optimistic', () => {
  const c = choker();
  populate(c, 10);
  const r = c.rechoke(0);
  assert.equal(r.unchoke.length, 5);
  assert.deepEqual(r.choke, []);
  assert.deepEqual(regularOf(c), ['p0', 'p1', 'p2', 'p3']);
  const [opt] = optimisticOf(c);
  assert.ok(opt !== undefined && !['p0', 'p1', 'p2', 'p3'].includes(opt));
  assert.deepEqual(new Set(c.unchoked()), new Set(r.unchoke));

  // Rates change: the new fastest peers take over at the next rechoke, and only changes are returned.
  const [f1, f2] = ['p7', 'p8', 'p9'].filter((p) => p !== opt) as [string, string];
  c.setDownloadRate(f1, 1e6);
  c.setDownloadRate(f2, 1e6 - 1);
  c.setDownloadRate('p0', 0);
  c.setDownloadRate('p1', 0);
  const r2 = c.rechoke(10_000);
  assert.deepEqual(regularOf(c), ['p2', 'p3', f1, f2]);
  assert.equal(c.unchoked().length, 5);
  assert.equal(optimisticOf(c)[0], opt, 'the optimistic unchoke holds until its 30 s are up');
  const before = new Set([...['p0', 'p1', 'p2', 'p3'], opt]);
  const after = new Set(c.unchoked());
  assert.deepEqual(new Set(r2.unchoke), new Set([...after].filter((p) => !before.has(p))));
  assert.deepEqual(new Set(r2.choke), new Set([...before].filter((p) => !after.has(p))));
  // Nothing changed: nothing to send.
  assert.deepEqual(c.rechoke(20_000), { unchoke: [], choke: [] });
});

test('custom slot counts', () => {
  const c = choker({ regularSlots: 2, optimisticSlots: 3 });
  populate(c, 10);
  c.rechoke(0);
  assert.deepEqual(regularOf(c), ['p0', 'p1']);
  assert.equal(optimisticOf(c).length, 3);
  const none = choker({ regularSlots: 0, optimisticSlots: 0 });
  populate(none, 3);
  assert.deepEqual(none.rechoke(0), { unchoke: [], choke: [] });
});

test('the optimistic unchoke rotates every 30 s, not at every rechoke', () => {
  const c = choker({ seed: 7 });
  populate(c, 12);
  const history: string[] = [];
  for (let t = 0; t <= 120_000; t += 10_000) {
    assert.ok(c.nextRechokeAt() <= t);
    c.rechoke(t);
    assert.equal(c.nextRechokeAt(), t + 10_000);
    const opt = optimisticOf(c);
    assert.equal(opt.length, 1);
    history.push(opt[0]!);
  }
  for (let k = 0; k < history.length; k++) {
    if (k % 3 === 0 && k > 0) assert.notEqual(history[k], history[k - 1], `rotated at ${k * 10} s`);
    else if (k > 0) assert.equal(history[k], history[k - 1], `held at ${k * 10} s`);
  }
  // Two candidates: the one rotated out waits its turn, so they alternate.
  const two = choker({ seed: 5 });
  populate(two, 6);
  const seen: string[] = [];
  for (let t = 0; t <= 150_000; t += 30_000) {
    two.rechoke(t);
    seen.push(optimisticOf(two)[0]!);
  }
  for (let k = 1; k < seen.length; k++) assert.notEqual(seen[k], seen[k - 1]);
});

test('the optimistic unchoke goes only to interested choked peers, and is replaced when it stops being one', () => {
  const c = choker({ seed: 3 });
  populate(c, 6);
  c.add('lazy', 0); // not interested: never optimistic
  c.rechoke(0);
  const [opt] = optimisticOf(c);
  assert.ok(opt === 'p4' || opt === 'p5');
  // It loses interest: a rechoke is due at once, and the other one takes the slot.
  c.setInterested(opt, false);
  assert.ok(c.nextRechokeAt() <= 1000);
  const r = c.rechoke(1000);
  const other = opt === 'p4' ? 'p5' : 'p4';
  assert.deepEqual(optimisticOf(c), [other]);
  assert.deepEqual(r, { unchoke: [other], choke: [opt] });
  // It disconnects: same.
  c.setInterested(opt, true);
  c.remove(other);
  assert.ok(c.nextRechokeAt() <= 2000);
  c.rechoke(2000);
  assert.deepEqual(optimisticOf(c), [opt]);
});

test('newly connected peers are three times as likely to be the optimistic unchoke', () => {
  let newPicked = 0;
  const runs = 900;
  for (let seed = 0; seed < runs; seed++) {
    const c = choker({ seed, regularSlots: 1 });
    populate(c, 7, -100_000); // p0 regular; p1..p6 old candidates
    if (seed % 2 === 0) c.add('new', 0);
    else c.add('new'); // connected "now"
    c.setInterested('new', true);
    c.rechoke(0);
    if (c.isOptimistic('new')) newPicked++;
  }
  // Weights: 3 for the new peer, 1 for each of the 6 old ones: 1/3 (uniform would be 1/7).
  const share = newPicked / runs;
  assert.ok(share > 0.27 && share < 0.4, `new peer share ${share}`);
});

test('a snubbing peer loses its regular slot; a block or seeding restores it', () => {
  const c = choker({ optimisticSlots: 0, regularSlots: 2 });
  populate(c, 4);
  for (const p of ['p0', 'p1', 'p2', 'p3']) c.setAmInterested(p, true, 0);
  c.rechoke(0);
  assert.deepEqual(c.unchoked(), ['p0', 'p1']);
  // p1..p3 keep sending blocks; p0 (the fastest on paper) sends nothing for a minute.
  for (const t of [20_000, 40_000, 59_000]) for (const p of ['p1', 'p2', 'p3']) c.blockReceived(p, t);
  c.rechoke(59_999);
  assert.equal(c.isSnubbed('p0', 59_999), false);
  assert.deepEqual(c.unchoked(), ['p0', 'p1']);
  assert.equal(c.isSnubbed('p0', 60_000), true);
  const r = c.rechoke(60_000);
  assert.deepEqual(r, { unchoke: ['p2'], choke: ['p0'] });
  // Seeding: we are not waiting for anything, so no one is snubbed.
  c.setUploadRate('p0', 9000);
  c.rechoke(61_000, { seeding: true });
  assert.ok(c.isUnchoked('p0'));
  // A block ends the snub.
  c.blockReceived('p0', 70_000);
  c.rechoke(70_000);
  assert.deepEqual(c.unchoked(), ['p0', 'p1']);
  // Not interested in it: it cannot snub us.
  c.setAmInterested('p0', false, 200_000);
  assert.equal(c.isSnubbed('p0', 300_000), false);
  // Marked by the caller.
  for (const p of ['p1', 'p2', 'p3']) c.blockReceived(p, 299_000);
  c.markSnubbed('p1');
  c.rechoke(300_000);
  assert.ok(!c.isUnchoked('p1'));
  assert.deepEqual(c.unchoked(), ['p0', 'p2']);
});

test('by default only interested peers are unchoked; one that becomes interested is unchoked at once', () => {
  const c = choker({ optimisticSlots: 1, regularSlots: 3 });
  populate(c, 2);
  c.add('fast', 0);
  c.setDownloadRate('fast', 1e6);
  c.add('idle', 0);
  c.rechoke(0);
  assert.deepEqual(c.unchoked(), ['p0', 'p1']);
  c.setInterested('idle', true);
  assert.ok(c.nextRechokeAt() <= 1, 'a free slot makes the rechoke due at once');
  assert.deepEqual(c.rechoke(1), { unchoke: ['idle'], choke: [] });
  c.setInterested('idle', false);
  assert.deepEqual(c.rechoke(2), { unchoke: [], choke: ['idle'] });
});

test('with unchokeUninterested (BEP 3): uninterested peers with a better rate than the slowest downloader are unchoked too', () => {
  const c = choker({ optimisticSlots: 0, regularSlots: 3, unchokeUninterested: true });
  populate(c, 5); // p0..p4 rates 5000..1000
  c.add('fast', 0);
  c.setDownloadRate('fast', 4500); // better than p1..p4, not interested
  c.add('slow', 0);
  c.setDownloadRate('slow', 500);
  c.rechoke(0);
  assert.deepEqual(c.unchoked(), ['p0', 'p1', 'p2', 'fast']);
  // It becomes interested: the slowest downloader makes way, at once.
  c.setInterested('fast', true);
  assert.ok(c.nextRechokeAt() <= 0);
  assert.deepEqual(c.rechoke(1), { unchoke: [], choke: ['p2'] });
  assert.deepEqual(c.unchoked(), ['p0', 'p1', 'fast']);
  // Too few interested peers: everyone is unchoked, interested or not.
  const few = choker({ optimisticSlots: 0, unchokeUninterested: true });
  populate(few, 2);
  few.add('x', 0);
  few.rechoke(0);
  assert.deepEqual(few.unchoked(), ['p0', 'p1', 'x']);
});

test('seeding ranks by upload rate', () => {
  const c = choker({ optimisticSlots: 0, regularSlots: 2 });
  populate(c, 4); // download rates favour p0, p1
  c.setUploadRate('p3', 10_000);
  c.setUploadRate('p2', 9_000);
  c.rechoke(0, { seeding: true });
  assert.deepEqual(c.unchoked(), ['p2', 'p3']);
  c.rechoke(10_000);
  assert.deepEqual(c.unchoked(), ['p0', 'p1']);
});

test('rechoke scheduling', () => {
  const c = choker({ rechokeIntervalMs: 5000 });
  assert.equal(c.nextRechokeAt(), -Infinity, 'due at once before the first rechoke');
  populate(c, 3);
  c.rechoke(100);
  assert.equal(c.nextRechokeAt(), 5100);
  c.add('late', 200);
  c.setInterested('late', true); // every peer is unchoked already; a slot is free
  assert.equal(c.nextRechokeAt(), 100);
  c.rechoke(300);
  assert.ok(c.isUnchoked('late'));
  c.setDownloadRate('p0', 1); // no reason to hurry
  assert.equal(c.nextRechokeAt(), 5300);
  assert.equal(c.remove('p1'), true);
  assert.equal(c.nextRechokeAt(), 300, 'an unchoked peer left');
  assert.equal(c.remove('p1'), false);
  assert.equal(c.isUnchoked('p1'), false);
});

test('the same seed and inputs give the same choices', () => {
  const script = (seed: number): string[] => {
    const c = choker({ seed });
    const log: string[] = [];
    populate(c, 20, 0, () => 1000); // all tied: randomness decides
    for (let t = 0; t < 300_000; t += 10_000) {
      if (t === 50_000) c.remove('p3');
      if (t === 80_000) {
        c.add('n', t);
        c.setInterested('n', true);
      }
      const r = c.rechoke(t);
      log.push(`${t}:+${r.unchoke.join(',')}:-${r.choke.join(',')}`);
    }
    return log;
  };
  assert.deepEqual(script(42), script(42));
  assert.notDeepEqual(script(42), script(43));
});

test('property: slot counts, rate order, snubbing and reported changes stay consistent', () => {
  const op = fc.oneof(
    fc.record({ k: fc.constant('add' as const), p: fc.nat(11) }),
    fc.record({ k: fc.constant('remove' as const), p: fc.nat(11) }),
    fc.record({ k: fc.constant('interested' as const), p: fc.nat(11), v: fc.boolean() }),
    fc.record({ k: fc.constant('amInterested' as const), p: fc.nat(11), v: fc.boolean() }),
    fc.record({ k: fc.constant('rate' as const), p: fc.nat(11), down: fc.nat(5), up: fc.nat(5) }),
    fc.record({ k: fc.constant('block' as const), p: fc.nat(11) }),
    fc.record({ k: fc.constant('snub' as const), p: fc.nat(11) }),
    fc.record({ k: fc.constant('rechoke' as const), dt: fc.integer({ min: 0, max: 40_000 }), seeding: fc.boolean() }),
  );
  fc.assert(
    fc.property(fc.nat(), fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 2 }), fc.boolean(), fc.array(op, { minLength: 10, maxLength: 150, size: 'max' }), (seed, regularSlots, optimisticSlots, unchokeUninterested, ops) => {
      const c = new Choker<number>({ random: seededRandom(seed), regularSlots, optimisticSlots, unchokeUninterested });
      let now = 0;
      const unchoked = new Set<number>();
      const interested = new Set<number>();
      const down = new Map<number, number>();
      const up = new Map<number, number>();
      for (const o of ops) {
        switch (o.k) {
          case 'add':
            if (!c.has(o.p)) {
              c.add(o.p, now);
              down.set(o.p, 0);
              up.set(o.p, 0);
            }
            break;
          case 'remove':
            c.remove(o.p);
            unchoked.delete(o.p);
            interested.delete(o.p);
            down.delete(o.p);
            up.delete(o.p);
            break;
          case 'interested':
            if (!c.has(o.p)) break;
            c.setInterested(o.p, o.v);
            if (o.v) interested.add(o.p);
            else interested.delete(o.p);
            break;
          case 'amInterested':
            c.setAmInterested(o.p, o.v, now);
            break;
          case 'rate':
            if (!c.has(o.p)) break;
            c.setDownloadRate(o.p, o.down);
            c.setUploadRate(o.p, o.up);
            down.set(o.p, o.down);
            up.set(o.p, o.up);
            break;
          case 'block':
            c.blockReceived(o.p, now);
            break;
          case 'snub':
            c.markSnubbed(o.p);
            break;
          case 'rechoke': {
            now += o.dt;
            const r = c.rechoke(now, { seeding: o.seeding });
            for (const p of r.unchoke) {
              assert.ok(!unchoked.has(p), 'unchoke only reported for choked peers');
              unchoked.add(p);
            }
            for (const p of r.choke) {
              assert.ok(unchoked.has(p), 'choke only reported for unchoked peers');
              unchoked.delete(p);
            }
            assert.deepEqual(new Set(c.unchoked()), unchoked);
            const rate = (p: number): number => (o.seeding ? up : down).get(p)!;
            const snubbed = (p: number): boolean => !o.seeding && c.isSnubbed(p, now);
            const regular = [...unchoked].filter((p) => !c.isOptimistic(p));
            const optimistic = [...unchoked].filter((p) => c.isOptimistic(p));
            const rankable = [...interested].filter((p) => !snubbed(p));
            const regularDownloaders = regular.filter((p) => interested.has(p));
            assert.equal(regularDownloaders.length, Math.min(regularSlots, rankable.length), 'regular slots filled');
            assert.ok(regular.every((p) => !snubbed(p)), 'no regular slot for a snubbed peer');
            const restInterested = [...interested].filter((p) => !regular.includes(p));
            assert.equal(optimistic.length, Math.min(optimisticSlots, restInterested.length), 'optimistic slots filled');
            assert.ok(optimistic.every((p) => interested.has(p)));
            // Rate order: no choked rankable interested peer is faster than a regular downloader.
            const slowest = Math.min(...regularDownloaders.map(rate));
            for (const p of rankable) if (!regular.includes(p)) assert.ok(rate(p) <= slowest);
            // Uninterested regular peers beat the slowest downloader, unless slots are left over.
            for (const p of regular) {
              if (!interested.has(p) && regularDownloaders.length === regularSlots) assert.ok(rate(p) > slowest);
            }
            if (!unchokeUninterested) assert.ok([...unchoked].every((p) => interested.has(p)), 'only interested peers unchoked');
            assert.equal(c.nextRechokeAt(), now + 10_000);
            break;
          }
        }
      }
    }),
    { numRuns: 400 },
  );
});
