import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { UploadCache } from '../src/client/upload-cache.js';

const PIECE = 1024;

/** Piece i's bytes are all (i + 1) & 0xff, so any overwrite by another piece shows. */
function fill(index: number, size: number, into: Buffer): Buffer {
  into.fill((index + 1) & 0xff, 0, size);
  return into;
}

function cacheWith(maxPieces: number, reads: number[] = [], lastSize = PIECE): UploadCache {
  return new UploadCache({
    pieceLength: PIECE,
    maxBytes: maxPieces * PIECE,
    read: async (index, size, into) => {
      reads.push(index);
      await new Promise((r) => setImmediate(r));
      return fill(index, Math.min(size, lastSize), into);
    },
  });
}

const intact = (b: Buffer, index: number): boolean => b.every((x) => x === ((index + 1) & 0xff));

test('upload cache: one read serves every block of a cached piece; concurrent callers share it', async () => {
  const reads: number[] = [];
  const c = cacheWith(4, reads);
  const [a, b] = await Promise.all([c.block(3, PIECE, 0, 16), c.block(3, PIECE, 512, 16)]);
  const d = await c.block(3, PIECE, 1000, 24);
  assert.deepEqual(reads, [3]);
  assert.ok(intact(a, 3) && intact(b, 3) && intact(d, 3));
  assert.equal(d.length, 24);
  assert.equal(c.cachedBytes, PIECE);
});

test('upload cache: a buffer is used again only once it left the cache and every reference is back', async () => {
  const c = cacheWith(1);
  const first = await c.block(0, PIECE, 0, 16);
  const sending = c.retain(first)!; // a stream write of the block
  assert.ok(sending);
  c.release(first);
  const second = await c.block(1, PIECE, 0, 16); // evicts piece 0, whose memory is still being written
  assert.notEqual(second.buffer, first.buffer);
  assert.ok(intact(first, 0), 'a block still being written was overwritten');
  c.release(second);
  assert.equal(c.freeBuffers, 0);
  const third = await c.block(2, PIECE, 0, 16); // evicts piece 1, which nothing references: free
  assert.ok(intact(third, 2));
  assert.equal(c.freeBuffers, 1);
  assert.ok(intact(first, 0));
  sending(); // the write of piece 0's block is done: its buffer is free too
  sending(); // a second call changes nothing
  assert.equal(c.freeBuffers, 2);
  const fourth = await c.block(3, PIECE, 0, 16);
  assert.ok(fourth.buffer === first.buffer || fourth.buffer === second.buffer, 'a free buffer was not reused');
  assert.equal(c.freeBuffers, 1);
  assert.ok(intact(fourth, 3));
  assert.ok(intact(third, 2));
});

test('upload cache: a block served from the cache holds its piece as a read does', async () => {
  const c = cacheWith(1);
  c.release(await c.block(0, PIECE, 0, 16)); // piece 0 cached, nothing held
  const hit = await c.block(0, PIECE, 100, 16); // served from the cache
  c.release(await c.block(1, PIECE, 0, 16)); // evicts piece 0 while `hit` is held
  c.release(await c.block(2, PIECE, 0, 16)); // evicts piece 1: its buffer is free
  c.release(await c.block(3, PIECE, 0, 16)); // reuses a free buffer
  c.release(await c.block(4, PIECE, 0, 16));
  assert.ok(intact(hit, 0), 'a block served from the cache was overwritten');
  c.release(hit);
});

test('upload cache: a piece pushed out before its waiter resumes still reaches that waiter intact', async () => {
  const c = cacheWith(1);
  // Both reads finish before either caller continues; the second evicts the first.
  const [a, b] = await Promise.all([c.block(0, PIECE, 0, PIECE), c.block(1, PIECE, 0, PIECE)]);
  assert.ok(intact(a, 0), 'the first waiter got memory that was reused');
  assert.ok(intact(b, 1));
  c.release(a);
  c.release(b);
});

test('upload cache: the short last piece and blocks that are not pooled are left to the GC', async () => {
  const c = cacheWith(2, [], 100);
  const short = await c.block(9, 100, 0, 100);
  assert.ok(intact(short, 9));
  assert.equal(c.retain(short), undefined);
  assert.equal(c.retain(Buffer.alloc(10)), undefined);
  c.release(short);
  c.release(Buffer.alloc(10));
  c.clear();
  assert.equal(c.cachedBytes, 0);
});

test('upload cache: a failed read is passed on and holds nothing', async () => {
  let fail = true;
  const c = new UploadCache({
    pieceLength: PIECE,
    maxBytes: 2 * PIECE,
    read: async (index, size, into) => {
      await new Promise((r) => setImmediate(r));
      if (fail) throw new Error('disk on fire');
      return fill(index, size, into);
    },
  });
  await assert.rejects(c.block(0, PIECE, 0, 16), /disk on fire/);
  assert.equal(c.cachedBytes, 0);
  fail = false;
  assert.ok(intact(await c.block(0, PIECE, 0, 16), 0));
});

type Op = { kind: 'block'; piece: number } | { kind: 'retain'; which: number } | { kind: 'release'; which: number } | { kind: 'done'; which: number } | { kind: 'clear' };

test('property: under any order of reads, writes and releases, no block in use is ever overwritten and the pool stays bounded', async () => {
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('block' as const), piece: fc.nat({ max: 7 }) }),
    fc.record({ kind: fc.constant('retain' as const), which: fc.nat() }),
    fc.record({ kind: fc.constant('release' as const), which: fc.nat() }),
    fc.record({ kind: fc.constant('done' as const), which: fc.nat() }),
    fc.record({ kind: fc.constant('clear' as const) }),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(op, { maxLength: 60 }), fc.integer({ min: 1, max: 3 }), async (ops, maxPieces) => {
      const c = cacheWith(maxPieces);
      const held: { block: Buffer; piece: number; released: boolean }[] = [];
      const writes: { block: Buffer; piece: number; done: () => void }[] = [];
      const live = (): void => {
        for (const h of held) if (!h.released) assert.ok(intact(h.block, h.piece), `block of piece ${h.piece} overwritten`);
        for (const w of writes) assert.ok(intact(w.block, w.piece), `block of piece ${w.piece} overwritten while written`);
        assert.ok(c.freeBuffers <= maxPieces + 8);
      };
      const pending: Promise<void>[] = [];
      for (const o of ops) {
        if (o.kind === 'block') {
          pending.push(c.block(o.piece, PIECE, 0, 64).then((block) => void held.push({ block, piece: o.piece, released: false })));
        } else if (o.kind === 'retain' && held.length > 0) {
          const h = held[o.which % held.length]!;
          if (!h.released) {
            const done = c.retain(h.block);
            if (done) writes.push({ block: h.block, piece: h.piece, done });
          }
        } else if (o.kind === 'release' && held.length > 0) {
          const h = held[o.which % held.length]!;
          if (!h.released) {
            h.released = true;
            c.release(h.block);
          }
        } else if (o.kind === 'done' && writes.length > 0) {
          writes.splice(o.which % writes.length, 1)[0]!.done();
        } else if (o.kind === 'clear') {
          c.clear();
        }
        if (pending.length > 2) await pending.shift();
        live();
      }
      await Promise.all(pending);
      live();
    }),
    { numRuns: 300 },
  );
});
