import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PiecePicker, type BlockRequest, type PiecePickerOptions } from '../src/core/piece-picker.js';
import { seededRandom } from '../src/runtime/sim/index.js';

const KiB = 1024;

function picker(o: Partial<PiecePickerOptions> & { pieceCount: number; pieceLength?: number; seed?: number }): PiecePicker<string> {
  const pieceLength = o.pieceLength ?? 64 * KiB;
  return new PiecePicker<string>({
    totalLength: o.pieceCount * pieceLength,
    pieceLength,
    random: seededRandom(o.seed ?? 1),
    ...o,
  });
}

/** Pieces [from, to) set, as a boolean array of `n`. */
function range(n: number, from: number, to: number): boolean[] {
  return Array.from({ length: n }, (_, i) => i >= from && i < to);
}

function only(n: number, ...pieces: number[]): boolean[] {
  return Array.from({ length: n }, (_, i) => pieces.includes(i));
}

const key = (r: BlockRequest): string => `${r.index}:${r.begin}`;

test('geometry: a short last piece and short last blocks are requested exactly', () => {
  // 40 000-byte pieces: blocks 16384, 16384, 7232. Last piece 20 000 bytes: 16384, 3616.
  const p = new PiecePicker<string>({ pieceCount: 4, pieceLength: 40_000, totalLength: 3 * 40_000 + 20_000, random: seededRandom(3) });
  assert.equal(p.pieceSize(3), 20_000);
  assert.equal(p.blocksIn(0), 3);
  assert.equal(p.blocksIn(3), 2);
  p.peerHaveAll('s');
  const got = p.pick('s', 100).map((r) => [r.index, r.begin, r.length] as const);
  got.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const want: [number, number, number][] = [];
  for (let i = 0; i < 3; i++) want.push([i, 0, 16384], [i, 16384, 16384], [i, 32768, 7232]);
  want.push([3, 0, 16384], [3, 16384, 3616]);
  assert.deepEqual(got, want);
  const total = got.reduce((s, [, , l]) => s + l, 0);
  assert.equal(total, p.totalLength);
  // A block of the wrong length is refused; the right one completes the piece.
  assert.equal(p.blockReceived('s', 3, 16384, 16384).accepted, false);
  assert.equal(p.blockReceived('s', 3, 0, 16384).pieceComplete, false);
  assert.deepEqual(p.blockReceived('s', 3, 16384, 3616), { accepted: true, pieceComplete: true, cancels: [] });
  assert.equal(p.blockReceived('s', 3, 16384, 3616).accepted, false, 'a second copy is not accepted');

  assert.throws(() => new PiecePicker({ pieceCount: 5, pieceLength: 40_000, totalLength: 140_000, random: seededRandom(1) }), RangeError);
  // A piece that is a single short block.
  const tiny = new PiecePicker<string>({ pieceCount: 1, pieceLength: 1 << 20, totalLength: 100, random: seededRandom(1) });
  tiny.peerHaveAll('s');
  assert.deepEqual(tiny.pick('s', 5), [{ index: 0, begin: 0, length: 100 }]);
});

test('availability: bitfield forms, haves, have-all and removal', () => {
  const p = picker({ pieceCount: 10 });
  p.peerBitfield('a', new Uint8Array([0b1010_0000, 0b0100_0000])); // pieces 0, 2, 9
  p.peerBitfield('b', { get: (i: number) => i === 2 || i === 3 });
  p.peerBitfield('c', only(10, 2));
  p.peerHaveAll('s');
  assert.deepEqual(
    Array.from({ length: 10 }, (_, i) => p.availability(i)),
    [2, 1, 4, 2, 1, 1, 1, 1, 1, 2],
  );
  assert.equal(p.peerHave('c', 5), true);
  assert.equal(p.availability(5), 2);
  assert.ok(p.peerHas('a', 9) && !p.peerHas('a', 1));
  p.removePeer('s');
  assert.equal(p.availability(0), 1);
  assert.equal(p.availability(1), 0);
  // A full bitfield counts as have-all; haves that complete a peer's set make it one too.
  p.peerBitfield('full', new Uint8Array([0xff, 0xc0]));
  assert.equal(p.availability(1), 1);
  for (let i = 0; i < 10; i++) p.peerHave('d', i);
  assert.equal(p.availability(1), 2);
  p.removePeer('d');
  p.removePeer('full');
  assert.equal(p.availability(1), 0);
  // Interest follows what we lack.
  assert.equal(p.interesting('b'), true);
  p.setHave(2);
  p.setHave(3);
  assert.equal(p.interesting('b'), false);
  assert.equal(p.peerHave('b', 3), false, 'we have it already');
  p.peerHaveNone('a');
  assert.equal(p.availability(0), 0);
  assert.equal(p.interesting('a'), false);
});

test('rarest first: the piece fewest peers have is chosen, ties at random', () => {
  const seen = new Set<number>();
  for (let seed = 0; seed < 40; seed++) {
    const p = picker({ pieceCount: 20, randomFirstPieces: 0, seed });
    p.peerBitfield('a', range(20, 0, 20));
    p.peerBitfield('b', range(20, 0, 16));
    p.peerBitfield('c', range(20, 0, 16));
    p.peerBitfield('d', range(20, 4, 18)); // 16, 17 are had by a and d: availability 2; 18, 19 only by a.
    const [r] = p.pick('a', 1);
    assert.ok(r && (r.index === 18 || r.index === 19), `seed ${seed} picked ${r?.index}`);
    seen.add(r.index);
    // d lacks 18 and 19: its rarest are 16 and 17.
    const [q] = p.pick('d', 1);
    assert.ok(q && (q.index === 16 || q.index === 17));
  }
  assert.deepEqual([...seen].sort(), [18, 19], 'ties are broken both ways');

  // A seed is counted for every piece alike: its rarest is what nobody else has.
  const p = picker({ pieceCount: 8, randomFirstPieces: 0 });
  p.peerHaveAll('seed');
  p.peerBitfield('x', range(8, 0, 7));
  assert.equal(p.pick('seed', 1)[0]!.index, 7);
});

test('rarest first stays right for a peer with few pieces among many (bitfield scan)', () => {
  const n = 4096;
  const p = picker({ pieceCount: n, pieceLength: 64 * KiB, randomFirstPieces: 0 });
  for (let k = 0; k < 5; k++) p.peerBitfield(`common${k}`, range(n, 0, n - 10));
  // The sparse peer has three pieces, all common, and one of them slightly rarer.
  p.peerBitfield('sparse', only(n, 100, 2000, 3000));
  p.peerHave('common0', n - 1); // does not matter to 'sparse'
  p.removePeer('common4');
  p.peerHave('common3', n - 2);
  p.peerBitfield('common2', range(n, 0, 3000)); // piece 3000 is now rarer
  assert.equal(p.availability(3000), 4 + 0);
  assert.equal(p.pick('sparse', 1)[0]!.index, 3000);
  assert.equal(p.pick('sparse', 1)[0]!.index, 3000, 'its own piece continues');
  assert.equal(p.pick('sparse', 1)[0]!.index, 3000);
  assert.equal(p.pick('sparse', 1)[0]!.index, 3000);
  const next = p.pick('sparse', 1)[0]!.index;
  assert.ok(next === 100 || next === 2000);
});

test('random first pieces: new pieces are random until that many are complete, then rarest', () => {
  const n = 64;
  const picked = new Set<number>();
  for (let seed = 0; seed < 30; seed++) {
    const p = picker({ pieceCount: n, pieceLength: 16 * KiB, randomFirstPieces: 2, seed });
    p.peerHaveAll('s');
    p.peerBitfield('x', range(n, 8, n)); // 0..7 are the rarest
    const first = p.pick('s', 1)[0]!.index;
    picked.add(first);
    p.blockReceived('s', first, 0);
    p.pieceVerified(first);
    const second = p.pick('s', 1)[0]!.index;
    p.blockReceived('s', second, 0);
    p.pieceVerified(second);
    assert.equal(p.completed, 2);
    // Two complete: rarest from now on.
    for (let k = 0; k < 3; k++) {
      const r = p.pick('s', 1)[0]!;
      assert.ok(r.index < 8 || r.index === first || r.index === second, `rarest after the random start, got ${r.index}`);
      p.blockReceived('s', r.index, 0);
      p.pieceVerified(r.index);
    }
  }
  assert.ok([...picked].some((i) => i >= 8), 'random picks reach common pieces');
  assert.ok(picked.size > 10, 'and are spread out');
});

test('started pieces are finished first, the peer’s own piece before others', () => {
  const p = picker({ pieceCount: 8, pieceLength: 64 * KiB, mode: 'sequential' });
  p.peerHaveAll('c');
  p.peerBitfield('a', range(8, 1, 8));
  // c starts piece 0, a (lacking 0) starts piece 1.
  assert.deepEqual(p.pick('c', 1).map(key), ['0:0']);
  assert.deepEqual(p.pick('a', 1).map(key), ['1:0']);
  // a now gets piece 0 too, but its own piece 1 comes first.
  p.peerHave('a', 0);
  assert.deepEqual(p.pick('a', 2).map(key), ['1:16384', '1:32768']);
  // A new peer joins the oldest started piece before starting one.
  p.peerHaveAll('d');
  assert.deepEqual(p.pick('d', 4).map(key), ['0:16384', '0:32768', '0:49152', '1:49152']);
  assert.equal(p.stats().inProgress, 2);
  assert.deepEqual(p.pick('d', 1).map(key), ['2:0']);
});

test('suggest (BEP 6): a tie-break among random first pieces and equally rare ones, never over a rarer piece; bounded; ignored in sequential mode', () => {
  // Random first pieces: the suggestion is taken.
  const a = picker({ pieceCount: 64, pieceLength: 16 * KiB });
  a.peerHaveAll('s');
  a.peerSuggest('s', 37);
  assert.deepEqual(a.pick('s', 1).map((r) => r.index), [37]);
  // Once the random phase is over: rarest first, the suggestion breaks the tie among equally rare pieces.
  const b = picker({ pieceCount: 64, pieceLength: 16 * KiB, randomFirstPieces: 0 });
  b.peerHaveAll('s');
  b.peerBitfield('x', only(64, 10, 20)); // 10 and 20 are more common than the rest
  b.peerSuggest('s', 20);
  const first = b.pick('s', 1)[0]!.index;
  assert.notEqual(first, 20, 'a more common piece is not taken over a rarer one');
  b.peerSuggest('s', 41);
  assert.deepEqual(b.pick('s', 1).map((r) => r.index), [41], 'among equally rare pieces, the suggested one');
  // A suggestion of a piece it does not have, or one we have or started, is no use.
  const c = picker({ pieceCount: 64, pieceLength: 16 * KiB });
  c.peerBitfield('x', only(64, 1, 2, 3));
  c.peerSuggest('x', 50);
  assert.ok([1, 2, 3].includes(c.pick('x', 1)[0]!.index));
  // The latest suggestion first.
  const d = picker({ pieceCount: 64, pieceLength: 16 * KiB });
  d.peerHaveAll('s');
  for (let i = 40; i < 56; i++) d.peerSuggest('s', i);
  assert.deepEqual(d.pick('s', 1).map((r) => r.index), [55]);
  // Bounded: only the latest 16 are kept. Piece 0, suggested before 16 others the peer lacks,
  // is forgotten: the pick is random among the peer's pieces again, not always 0.
  const picks = new Set<number>();
  for (let seed = 1; seed <= 20; seed++) {
    const q = picker({ pieceCount: 64, pieceLength: 16 * KiB, seed });
    q.peerBitfield('x', only(64, 0, 60, 61, 62, 63));
    q.peerSuggest('x', 0);
    for (let i = 40; i < 56; i++) q.peerSuggest('x', i);
    picks.add(q.pick('x', 1)[0]!.index);
    const kept = picker({ pieceCount: 64, pieceLength: 16 * KiB, seed });
    kept.peerBitfield('x', only(64, 0, 60, 61, 62, 63));
    for (let i = 41; i < 56; i++) kept.peerSuggest('x', i);
    kept.peerSuggest('x', 0);
    assert.deepEqual(kept.pick('x', 1).map((r) => r.index), [0], 'a kept suggestion counts');
  }
  assert.ok(picks.size > 1, `picks ${[...picks].join(',')}`);
  // Sequential mode: order wins.
  const e = picker({ pieceCount: 64, pieceLength: 16 * KiB, mode: 'sequential' });
  e.peerHaveAll('s');
  e.peerSuggest('s', 37);
  assert.deepEqual(e.pick('s', 1).map((r) => r.index), [0]);
});

test('sequential while choked: the lowest of the allowed-fast pieces first', () => {
  const p = picker({ pieceCount: 40, pieceLength: 16 * KiB, mode: 'sequential' });
  p.peerHaveAll('s');
  p.peerBitfield('rare', only(40, 31)); // 31 is rarer than 7 and 20; rarest-first would take it
  const fast = new Set([31, 7, 20]);
  assert.deepEqual(p.pick('s', 2, { choked: true, allowedFast: fast }).map((r) => r.index), [7, 20]);
  assert.deepEqual(p.pick('s', 5, { choked: true, allowedFast: fast }).map((r) => r.index), [31]);
  const r = picker({ pieceCount: 40, pieceLength: 16 * KiB });
  r.peerHaveAll('s');
  r.peerBitfield('rare', only(40, 7, 20));
  assert.deepEqual(r.pick('s', 1, { choked: true, allowedFast: fast }).map((x) => x.index), [31], 'rarest mode: the rarest allowed-fast piece');
});

test('sequential: lowest index first; with a window, rarest beyond it', () => {
  const p = picker({ pieceCount: 6, pieceLength: 16 * KiB, mode: 'sequential' });
  p.peerHaveAll('s');
  p.peerBitfield('x', only(6, 3, 4, 5));
  assert.deepEqual(p.pick('s', 3).map((r) => r.index), [0, 1, 2]);
  assert.deepEqual(p.pick('x', 2).map((r) => r.index), [3, 4]);
  p.blockReceived('s', 0, 0);
  p.pieceVerified(0);
  // 5 is the last unrequested piece; then endgame: x's outstanding 3 and 4 are duplicated.
  assert.deepEqual(p.pick('s', 5).map((r) => r.index), [5, 3, 4]);

  const w = picker({ pieceCount: 20, pieceLength: 16 * KiB, mode: 'sequential', sequentialWindow: 3 });
  w.peerHaveAll('s');
  w.peerBitfield('x', range(20, 0, 19)); // piece 19 is the rarest
  assert.deepEqual(w.pick('s', 3).map((r) => r.index), [0, 1, 2]);
  // 0..2 are in progress: the window [0, 3) is used up, so rarest.
  assert.deepEqual(w.pick('s', 1).map((r) => r.index), [19]);
  w.peerBitfield('y', only(20, 0, 1, 2, 10));
  assert.deepEqual(w.pick('y', 1).map((r) => r.index), [10]);
});

test('endgame: outstanding blocks are duplicated at other peers, and cancelled when one copy arrives', () => {
  const p = picker({ pieceCount: 2, pieceLength: 32 * KiB });
  p.peerHaveAll('a');
  p.peerHaveAll('b');
  p.peerBitfield('c', only(2, 0));
  const a = p.pick('a', 3);
  assert.equal(a.length, 3);
  assert.equal(p.stats().endgame, false);
  const b = p.pick('b', 10);
  // One block was left; then endgame: b duplicates a's three blocks.
  assert.equal(b.length, 4);
  assert.equal(p.stats().endgame, true);
  assert.deepEqual(new Set(b.map(key)).size, 4);
  for (const r of a) assert.ok(b.some((x) => key(x) === key(r)));
  assert.deepEqual(p.pick('b', 10), [], 'never the same block twice from one peer');
  assert.deepEqual(p.pick('a', 10).length, 1, 'a duplicates the one block b has alone');
  // c only has piece 0: it duplicates only blocks of piece 0.
  const c = p.pick('c', 10);
  assert.ok(c.length > 0 && c.every((r) => r.index === 0));
  assert.equal(p.outstanding('a'), 4);

  const first = a[0]!;
  const res = p.blockReceived('a', first.index, first.begin, first.length);
  assert.equal(res.accepted, true);
  const expected = ['b', ...(c.some((r) => key(r) === key(first)) ? ['c'] : [])];
  assert.deepEqual(res.cancels.map((x) => x.peer).sort(), expected);
  for (const x of res.cancels) assert.deepEqual({ index: x.index, begin: x.begin, length: x.length }, first);
  assert.equal(p.outstanding('a'), 3);
  assert.equal(p.outstanding('b'), 3);
  // The late copy from b is not accepted again.
  assert.equal(p.blockReceived('b', first.index, first.begin).accepted, false);
});

test('a choke returns the peer’s requests to the pool, except allowed-fast ones', () => {
  const p = picker({ pieceCount: 4, pieceLength: 32 * KiB, mode: 'sequential' });
  p.peerHaveAll('a');
  p.peerHaveAll('b');
  const got = p.pick('a', 4);
  assert.deepEqual(got.map(key), ['0:0', '0:16384', '1:0', '1:16384']);
  assert.equal(p.outstanding('a'), 4);
  const released = p.peerChoked('a', new Set([1]));
  assert.deepEqual(released.map(key), ['0:0', '0:16384']);
  assert.equal(p.outstanding('a'), 2);
  assert.equal(p.stats().inProgress, 1, 'piece 0 holds no state once nothing of it is requested');
  assert.deepEqual(p.pick('b', 2).map(key), ['0:0', '0:16384']);
  // A block that arrives after all (the choke raced it) is still taken, and b's request is cancelled.
  const late = p.blockReceived('a', 0, 0);
  assert.equal(late.accepted, true);
  assert.deepEqual(late.cancels, [{ peer: 'b', index: 0, begin: 0, length: 16384 }]);
  assert.equal(p.outstanding('b'), 1);
  // A rejected or timed-out request goes back too.
  assert.equal(p.peerRejected('b', 0, 16384), true);
  assert.equal(p.peerRejected('b', 0, 16384), false);
  assert.deepEqual(p.pick('b', 1).map(key), ['0:16384']);
  assert.equal(p.requestTimedOut('b', 0, 16384), true);
  assert.equal(p.outstanding('b'), 0);
  // A peer that leaves gives back everything.
  assert.deepEqual(p.removePeer('a').map(key), ['1:0', '1:16384']);
  assert.equal(p.stats().requested, 0);
});

test('allowed fast: a choked peer is only asked for its allowed-fast pieces', () => {
  const p = picker({ pieceCount: 10, pieceLength: 32 * KiB, randomFirstPieces: 0 });
  p.peerHaveAll('a');
  p.peerBitfield('b', range(10, 0, 9));
  assert.deepEqual(p.pick('a', 4, { choked: true }), [], 'nothing allowed');
  p.peerAllowedFast('a', 3);
  p.peerAllowedFast('a', 9);
  // 9 is the rarest of the allowed ones.
  assert.deepEqual(p.pick('a', 4, { choked: true }).map(key), ['9:0', '9:16384', '3:0', '3:16384']);
  assert.deepEqual(p.pick('a', 4, { choked: true }), []);
  assert.deepEqual(p.pick('b', 2, { choked: true, allowedFast: new Set([5]) }).map(key), ['5:0', '5:16384']);
  // Choking keeps the allowed-fast requests.
  assert.deepEqual(p.peerChoked('a'), []);
  assert.equal(p.outstanding('a'), 4);
  // Unchoked, anything goes.
  assert.equal(p.pick('a', 1).length, 1);
});

test('a piece that fails its hash is fetched again, and its contributors are reported', () => {
  const p = picker({ pieceCount: 2, pieceLength: 48 * KiB, mode: 'sequential' });
  p.peerHaveAll('a');
  p.peerHaveAll('b');
  assert.deepEqual(p.pick('a', 2).map(key), ['0:0', '0:16384']);
  assert.deepEqual(p.pick('b', 1).map(key), ['0:32768']);
  assert.equal(p.blockReceived('a', 0, 0).pieceComplete, false);
  assert.equal(p.blockReceived('b', 0, 32768).pieceComplete, false);
  assert.equal(p.blockReceived('a', 0, 16384).pieceComplete, true);
  assert.deepEqual(p.contributors(0), new Set(['a', 'b']));
  // Awaiting verification: not picked again, not counted as complete.
  assert.equal(p.has(0), false);
  assert.deepEqual(p.pick('b', 3).map(key), ['1:0', '1:16384', '1:32768']);
  assert.deepEqual(p.pieceFailed(0), new Set(['a', 'b']));
  assert.deepEqual(p.contributors(0), new Set());
  assert.deepEqual(p.pick('a', 3).map(key), ['0:0', '0:16384', '0:32768']);
  for (let b = 0; b < 3; b++) p.blockReceived('a', 0, b * 16384);
  assert.deepEqual(p.pieceVerified(0), []);
  assert.ok(p.has(0));
  assert.equal(p.completed, 1);
  for (let b = 0; b < 3; b++) p.blockReceived('b', 1, b * 16384);
  p.pieceVerified(1);
  assert.ok(p.isComplete && p.isDone);
  assert.deepEqual(p.pick('a', 5), []);
});

test('resume and skip: pieces we have or do not want are never requested', () => {
  const p = picker({ pieceCount: 6, pieceLength: 16 * KiB, mode: 'sequential', skip: [1] });
  p.setHave(0);
  p.setWanted(2, false);
  p.peerHaveAll('s');
  assert.equal(p.remaining, 3);
  assert.deepEqual(p.pick('s', 10).map((r) => r.index), [3, 4, 5]);
  // Completing a piece we hold requests for (e.g. from another source) cancels them.
  assert.deepEqual(p.setHave(4), [{ peer: 's', index: 4, begin: 0, length: 16384 }]);
  assert.equal(p.outstanding('s'), 2);
  p.setWanted(1, true);
  assert.deepEqual(p.pick('s', 10).map((r) => r.index), [1]);
  assert.equal(p.isComplete, false);
  assert.equal(p.stats().complete, 2);
});

// ---- properties ----

type Op =
  | { k: 'join'; peer: number; all: boolean; bits: boolean[] }
  | { k: 'have'; peer: number; index: number }
  | { k: 'pick'; peer: number; max: number; choked: boolean; fast: number[] }
  | { k: 'receive'; which: number; late: boolean }
  | { k: 'fail'; which: number }
  | { k: 'choke'; peer: number }
  | { k: 'leave'; peer: number }
  | { k: 'verify'; bad: boolean }
  | { k: 'resume'; index: number };

const MAX_PIECES = 12;
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant('join' as const), peer: fc.nat(5), all: fc.boolean(), bits: fc.array(fc.boolean(), { minLength: MAX_PIECES, maxLength: MAX_PIECES }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('have' as const), peer: fc.nat(5), index: fc.nat(MAX_PIECES - 1) }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant('pick' as const), peer: fc.nat(5), max: fc.integer({ min: 1, max: 6 }), choked: fc.boolean(), fast: fc.array(fc.nat(MAX_PIECES - 1), { maxLength: 3 }) }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant('receive' as const), which: fc.nat(), late: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('fail' as const), which: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('choke' as const), peer: fc.nat(5) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('leave' as const), peer: fc.nat(5) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('verify' as const), bad: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('resume' as const), index: fc.nat(MAX_PIECES - 1) }) },
);

const geometryArb = fc
  .record({
    pieceCount: fc.integer({ min: 1, max: MAX_PIECES }),
    blockSize: fc.constantFrom(4, 8, 16),
    blocksPerPiece: fc.integer({ min: 1, max: 4 }),
    tail: fc.integer({ min: 1, max: 64 }),
    mode: fc.constantFrom('rarest' as const, 'sequential' as const),
    randomFirstPieces: fc.integer({ min: 0, max: 3 }),
    window: fc.constantFrom(Infinity, 2),
    seed: fc.nat(),
  })
  .map((g) => {
    const pieceLength = g.blockSize * g.blocksPerPiece - (g.blocksPerPiece > 1 ? g.blockSize - 1 : 0); // often not a multiple of the block size
    const last = Math.min(pieceLength, g.tail);
    return { ...g, pieceLength, totalLength: (g.pieceCount - 1) * pieceLength + last };
  });

test('property: against a model, requests are always valid and unique outside endgame', () => {
  fc.assert(
    fc.property(geometryArb, fc.array(opArb, { minLength: 10, maxLength: 150, size: 'max' }), (g, ops) => {
      const p = new PiecePicker<number>({
        pieceCount: g.pieceCount,
        pieceLength: g.pieceLength,
        totalLength: g.totalLength,
        blockSize: g.blockSize,
        mode: g.mode,
        randomFirstPieces: g.randomFirstPieces,
        sequentialWindow: g.window,
        random: seededRandom(g.seed),
      });
      const n = g.pieceCount;
      const peerHas = new Map<number, Set<number>>();
      const have = new Set<number>();
      /** block key -> requesting peers */
      const out = new Map<string, Set<number>>();
      /** piece -> block begin -> sender */
      const received = new Map<number, Map<number, number>>();
      const bk = (i: number, b: number): string => `${i}:${b}`;
      const blockLen = (i: number, begin: number): number => Math.min(g.blockSize, p.pieceSize(i) - begin);
      const blocksOf = (i: number): number => Math.ceil(p.pieceSize(i) / g.blockSize);
      const outstandingList = (): [number, number, number][] => {
        const l: [number, number, number][] = [];
        for (const [k, s] of out) {
          const [i, b] = k.split(':').map(Number) as [number, number];
          for (const peer of s) l.push([peer, i, b]);
        }
        return l;
      };
      const dropPeerRequests = (peer: number, keep?: ReadonlySet<number>): void => {
        for (const [k, s] of out) {
          if (keep?.has(Number(k.split(':')[0]))) continue;
          s.delete(peer);
          if (s.size === 0) out.delete(k);
        }
      };
      const fastSets = new Map<number, Set<number>>();

      for (const op of ops) {
        switch (op.k) {
          case 'join': {
            if (peerHas.has(op.peer)) {
              dropPeerRequests(op.peer);
              p.removePeer(op.peer);
              fastSets.delete(op.peer);
            }
            const s = new Set<number>();
            if (op.all) {
              p.peerHaveAll(op.peer);
              for (let i = 0; i < n; i++) s.add(i);
            } else {
              const bits = op.bits.slice(0, n);
              p.peerBitfield(op.peer, bits);
              bits.forEach((b, i) => b && s.add(i));
            }
            peerHas.set(op.peer, s);
            break;
          }
          case 'have': {
            if (!peerHas.has(op.peer) || op.index >= n) break;
            assert.equal(p.peerHave(op.peer, op.index), !have.has(op.index));
            peerHas.get(op.peer)!.add(op.index);
            break;
          }
          case 'pick': {
            if (!peerHas.has(op.peer)) {
              assert.deepEqual(p.pick(op.peer, op.max), []);
              break;
            }
            const fast = new Set(op.fast.filter((i) => i < n));
            if (op.choked) fastSets.set(op.peer, fast);
            const got = p.pick(op.peer, op.max, op.choked ? { choked: true, allowedFast: fast } : undefined);
            assert.ok(got.length <= op.max);
            let dup = false;
            for (const r of got) {
              assert.ok(!have.has(r.index), 'never a piece we have');
              assert.ok(peerHas.get(op.peer)!.has(r.index), 'never a piece the peer lacks');
              if (op.choked) assert.ok(fast.has(r.index), 'only allowed-fast pieces while choked');
              assert.equal(r.begin % g.blockSize, 0);
              assert.equal(r.length, blockLen(r.index, r.begin));
              assert.ok(r.length > 0);
              assert.ok(!received.get(r.index)?.has(r.begin), 'never a block we have received');
              const s = out.get(bk(r.index, r.begin)) ?? new Set();
              assert.ok(!s.has(op.peer), 'never the same block twice from one peer');
              if (s.size > 0) dup = true;
              s.add(op.peer);
              out.set(bk(r.index, r.begin), s);
            }
            if (dup) {
              // Endgame, by the model: no block a connected peer has is left unrequested.
              for (let i = 0; i < n; i++) {
                if (have.has(i) || ![...peerHas.values()].some((s) => s.has(i))) continue;
                for (let b = 0; b < blocksOf(i) * g.blockSize; b += g.blockSize) {
                  assert.ok(out.has(bk(i, b)) || received.get(i)?.has(b), `duplicates only in endgame; ${i}:${b} is free`);
                }
              }
              assert.ok(p.stats().endgame);
            }
            break;
          }
          case 'receive': {
            const l = outstandingList();
            if (l.length === 0) break;
            const [peer, i, b] = l[op.which % l.length]!;
            const sender = op.late ? [...peerHas.keys()][op.which % peerHas.size]! : peer;
            const res = p.blockReceived(sender, i, b, blockLen(i, b));
            assert.equal(res.accepted, true);
            const others = [...out.get(bk(i, b))!].filter((x) => x !== sender).sort();
            assert.deepEqual(res.cancels.map((c) => c.peer).sort(), others);
            out.delete(bk(i, b));
            const m = received.get(i) ?? new Map<number, number>();
            m.set(b, sender);
            received.set(i, m);
            assert.equal(res.pieceComplete, m.size === blocksOf(i));
            break;
          }
          case 'fail': {
            const l = outstandingList();
            if (l.length === 0) break;
            const [peer, i, b] = l[op.which % l.length]!;
            assert.equal(p.requestFailed(peer, i, b), true);
            const s = out.get(bk(i, b))!;
            s.delete(peer);
            if (s.size === 0) out.delete(bk(i, b));
            break;
          }
          case 'choke': {
            if (!peerHas.has(op.peer)) break;
            const keep = fastSets.get(op.peer) ?? new Set<number>();
            p.peerChoked(op.peer, keep);
            dropPeerRequests(op.peer, keep);
            break;
          }
          case 'leave': {
            if (!peerHas.has(op.peer)) break;
            p.removePeer(op.peer);
            dropPeerRequests(op.peer);
            peerHas.delete(op.peer);
            fastSets.delete(op.peer);
            break;
          }
          case 'verify': {
            const done = [...received].find(([i, m]) => m.size === blocksOf(i));
            if (!done) break;
            const [i, m] = done;
            if (op.bad) {
              assert.deepEqual(p.pieceFailed(i), new Set(m.values()));
            } else {
              p.pieceVerified(i);
              have.add(i);
            }
            received.delete(i);
            break;
          }
          case 'resume': {
            if (op.index >= n || have.has(op.index)) break;
            const cancels = p.setHave(op.index);
            const expect = outstandingList().filter(([, i]) => i === op.index);
            assert.equal(cancels.length, expect.length);
            have.add(op.index);
            received.delete(op.index);
            for (const k of [...out.keys()]) if (k.startsWith(`${op.index}:`)) out.delete(k);
            break;
          }
        }
        // Cross-checks after every step.
        for (const [peer, s] of peerHas) {
          let count = 0;
          for (const s2 of out.values()) if (s2.has(peer)) count++;
          assert.equal(p.outstanding(peer), count);
          assert.equal(p.interesting(peer), [...s].some((i) => !have.has(i)));
        }
        for (let i = 0; i < n; i++) {
          assert.equal(p.availability(i), [...peerHas.values()].filter((s) => s.has(i)).length);
          assert.equal(p.has(i), have.has(i));
        }
        assert.equal(p.stats().requested, out.size);
        assert.equal(p.completed, have.size);
      }
    }),
    { numRuns: 400 },
  );
});

test('property: picking, receiving and verifying always ends with every piece complete', () => {
  fc.assert(
    fc.property(
      geometryArb,
      fc.array(fc.array(fc.boolean(), { minLength: MAX_PIECES, maxLength: MAX_PIECES }), { minLength: 1, maxLength: 5 }),
      fc.nat(),
      (g, fields, seed) => {
        const p = new PiecePicker<number>({
          pieceCount: g.pieceCount,
          pieceLength: g.pieceLength,
          totalLength: g.totalLength,
          blockSize: g.blockSize,
          mode: g.mode,
          randomFirstPieces: g.randomFirstPieces,
          sequentialWindow: g.window,
          random: seededRandom(g.seed),
        });
        const n = g.pieceCount;
        const rnd = seededRandom(seed);
        // Every piece is somewhere: the last peer gets whatever the others lack.
        const bits = fields.map((f) => f.slice(0, n));
        bits[bits.length - 1] = bits[bits.length - 1]!.map((b, i) => b || !bits.some((f) => f[i]));
        bits.forEach((f, peer) => p.peerBitfield(peer, f));
        const failedOnce = new Set<number>();
        let inFlight: [number, BlockRequest][] = [];
        let rounds = 0;
        while (!p.isComplete) {
          assert.ok(++rounds < 10_000, 'terminates');
          for (let peer = 0; peer < bits.length; peer++) {
            for (const r of p.pick(peer, 1 + rnd.below(4))) inFlight.push([peer, r]);
          }
          // Deliver some of what is in flight, in random order; occasionally a choke.
          const keep: [number, BlockRequest][] = [];
          for (const item of inFlight) {
            const [peer, r] = item;
            if (rnd.below(3) === 0) {
              keep.push(item);
              continue;
            }
            const res = p.blockReceived(peer, r.index, r.begin, r.length);
            if (res.pieceComplete) {
              if (!failedOnce.has(r.index) && rnd.below(4) === 0) {
                failedOnce.add(r.index);
                p.pieceFailed(r.index);
              } else {
                p.pieceVerified(r.index);
              }
            }
          }
          inFlight = keep;
          if (rnd.below(10) === 0) {
            const peer = rnd.below(bits.length);
            p.peerChoked(peer);
            inFlight = inFlight.filter(([x]) => x !== peer);
          }
        }
        assert.equal(p.completed, n);
        assert.deepEqual(p.pick(0, 10), []);
        assert.equal(p.stats().inProgress, 0);
      },
    ),
    { numRuns: 300 },
  );
});

test('scale: 16k pieces, 60 peers, a full download stays cheap', () => {
  const n = 16_384;
  const bs = 16 * KiB;
  const p = new PiecePicker<number>({ pieceCount: n, pieceLength: 4 * bs, totalLength: n * 4 * bs, random: seededRandom(9) });
  const rnd = seededRandom(10);
  const peers = 60;
  for (let k = 0; k < peers; k++) {
    if (k % 10 === 0) p.peerHaveAll(k);
    else {
      const f = new Uint8Array(n / 8);
      for (let j = 0; j < f.length; j++) f[j] = rnd.u32() & (k % 3 === 0 ? 0x11 : 0xff);
      p.peerBitfield(k, f);
    }
  }
  const started = process.hrtime.bigint();
  let blocks = 0;
  const queue: [number, BlockRequest][] = [];
  while (!p.isComplete) {
    for (let k = 0; k < peers; k++) for (const r of p.pick(k, 4 - p.outstanding(k) + 4)) queue.push([k, r]);
    while (queue.length > 0) {
      const [k, r] = queue.pop()!;
      const res = p.blockReceived(k, r.index, r.begin);
      if (res.accepted) blocks++;
      if (res.pieceComplete) p.pieceVerified(r.index);
      if (k === 1 && blocks % 1000 === 0) p.peerHave(k, rnd.below(n));
    }
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  assert.equal(blocks, n * 4);
  // Generous bound (the point is no O(pieces) work per block): typically well under a second.
  assert.ok(ms < 10_000, `took ${ms} ms`);
});
