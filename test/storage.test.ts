import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { FileStorage, StorageError } from '../src/storage/file-storage.js';
import { IncrementalPieceHasher } from '../src/storage/piece-hasher.js';
import { loadResume, planResume, resumePath, saveResume } from '../src/storage/resume.js';
import type { PieceLayout } from '../src/files/verify-pieces.js';

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-storage-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function layoutOf(content: Buffer, fileLengths: number[], pieceLength: number): PieceLayout {
  const hashes: Buffer[] = [];
  for (let at = 0; at < content.length; at += pieceLength) hashes.push(createHash('sha1').update(content.subarray(at, at + pieceLength)).digest());
  return {
    name: 'multi',
    pieceLength,
    length: content.length,
    pieces: Buffer.concat(hashes),
    isMultiFile: fileLengths.length > 1,
    files: fileLengths.map((length, i) => ({ path: ['d', `f${i}`], length })),
  };
}

test('blocks written across file boundaries read back byte-exact, files created sparse at full size', async () => {
  await withTemp(async (dir) => {
    const fileLengths = [10, 0, 70_000, 3, 50_000];
    const total = fileLengths.reduce((a, b) => a + b, 0);
    const content = randomBytes(total);
    const layout = layoutOf(content, fileLengths, 32 * 1024);
    const storage = new FileStorage(dir, layout, { maxOpenFiles: 2 });
    await storage.allocate();
    // Write every 16 KiB block, in a scrambled order, several at once.
    const blocks: [number, number, number][] = [];
    for (let p = 0; p * layout.pieceLength < total; p++) {
      for (let b = 0; b < storage.pieceSize(p); b += 16384) blocks.push([p, b, Math.min(16384, storage.pieceSize(p) - b)]);
    }
    blocks.reverse();
    await Promise.all(blocks.map(([p, b, len]) => storage.write(p, b, content.subarray(p * layout.pieceLength + b, p * layout.pieceLength + b + len))));
    for (const [p, b, len] of blocks) {
      const got = await storage.read(p, b, len);
      assert.ok(got.equals(content.subarray(p * layout.pieceLength + b, p * layout.pieceLength + b + len)), `block ${p}/${b}`);
    }
    await storage.close();
    let at = 0;
    for (const [i, len] of fileLengths.entries()) {
      const onDisk = await readFile(join(dir, 'multi', 'd', `f${i}`));
      assert.ok(onDisk.equals(content.subarray(at, at + len)), `file ${i}`);
      at += len;
    }
  });
});

test('a new file is created sparse: full size on disk before all of it is written', async () => {
  await withTemp(async (dir) => {
    const content = Buffer.alloc(4 * 1024 * 1024, 1);
    const layout = { ...layoutOf(content, [content.length], 1 << 20), isMultiFile: false, name: 'big.bin' };
    const storage = new FileStorage(dir, layout);
    await storage.write(3, 0, Buffer.alloc(16384, 2));
    await storage.close();
    const s = await stat(join(dir, 'big.bin'));
    assert.equal(s.size, content.length);
    assert.ok(s.blocks * 512 < content.length / 2, `allocated ${s.blocks * 512} bytes: not sparse`);
  });
});

test('reads outside the torrent or of missing data are StorageErrors; read-only storage creates nothing', async () => {
  await withTemp(async (dir) => {
    const content = randomBytes(1000);
    const layout = { ...layoutOf(content, [1000], 16384), isMultiFile: false, name: 'x' };
    const ro = new FileStorage(dir, layout, { readOnly: true });
    await assert.rejects(ro.read(0, 0, 100), (e: unknown) => e instanceof StorageError && e.code === 'MISSING_DATA');
    await assert.rejects(ro.read(0, 900, 200), (e: unknown) => e instanceof StorageError && e.code === 'OUT_OF_RANGE');
    await ro.close();
    await assert.rejects(stat(join(dir, 'x')));
    await writeFile(join(dir, 'x'), content.subarray(0, 500));
    const short = new FileStorage(dir, layout, { readOnly: true });
    await assert.rejects(short.read(0, 400, 200), (e: unknown) => e instanceof StorageError && e.code === 'MISSING_DATA');
    await short.close();
  });
});

test('incremental hashing: in order, out of order within budget, and fallback beyond it', () => {
  const piece = randomBytes(64 * 1024);
  const want = createHash('sha1').update(piece).digest();
  const blocks = [0, 1, 2, 3].map((i) => piece.subarray(i * 16384, (i + 1) * 16384));
  const h = new IncrementalPieceHasher(32 * 1024);
  blocks.forEach((b, i) => h.add(7, i * 16384, b));
  assert.deepEqual(h.finish(7, piece.length), want);

  h.add(1, 16384, blocks[1]!);
  h.add(1, 32768, blocks[2]!);
  assert.equal(h.bufferedBytes, 32768);
  h.add(1, 0, blocks[0]!);
  h.add(1, 16384, blocks[1]!); // endgame duplicate, ignored
  h.add(1, 49152, blocks[3]!);
  assert.equal(h.bufferedBytes, 0);
  assert.deepEqual(h.finish(1, piece.length), want);

  h.add(2, 49152, blocks[3]!);
  h.add(2, 32768, blocks[2]!);
  h.add(2, 16384, blocks[1]!); // over the 32 KiB budget: this piece is hashed from disk instead
  h.add(2, 0, blocks[0]!);
  assert.equal(h.finish(2, piece.length), undefined);
  assert.equal(h.bufferedBytes, 0);
});

test('property: any arrival order gives the right digest or a fallback, never a wrong digest', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 200_000 }), fc.infiniteStream(fc.nat()), (nblocks, budget, rnd) => {
      const piece = createHash('sha512').update(`${nblocks}`).digest().subarray(0, 40);
      const data = Buffer.concat(Array.from({ length: nblocks }, (_, i) => Buffer.alloc(1000, i + 1)));
      const order = Array.from({ length: nblocks }, (_, i) => i);
      const it = rnd[Symbol.iterator]();
      for (let i = order.length - 1; i > 0; i--) {
        const j = it.next().value % (i + 1);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      const h = new IncrementalPieceHasher(budget);
      for (const i of order) h.add(0, i * 1000, data.subarray(i * 1000, (i + 1) * 1000));
      const d = h.finish(0, data.length);
      if (d) assert.deepEqual(d, createHash('sha1').update(data).digest());
      assert.equal(h.bufferedBytes, 0);
      assert.ok(piece.length > 0);
    }),
  );
});

test('resume data round-trips atomically and plans what to trust and what to check', async () => {
  await withTemp(async (dir) => {
    const path = resumePath(dir, 'ab'.repeat(20));
    assert.equal(await loadResume(path, 'ab'.repeat(20), 10, 2), undefined);
    const rec = { infoHashHex: 'ab'.repeat(20), have: Uint8Array.from([0b10100000, 0b01000000]), files: [{ size: 100, mtimeMs: 5000 }, undefined] };
    await saveResume(path, rec);
    const back = await loadResume(path, 'ab'.repeat(20), 10, 2);
    assert.deepEqual(back, rec);
    assert.equal(await loadResume(path, 'cd'.repeat(20), 10, 2), undefined, 'another torrent');
    assert.equal(await loadResume(path, 'ab'.repeat(20), 30, 2), undefined, 'wrong piece count');
    await writeFile(path, 'garbage');
    assert.equal(await loadResume(path, 'ab'.repeat(20), 10, 2), undefined, 'corrupt record');

    // Pieces 0..4 in file 0, 5..9 in file 1.
    const filesOfPiece = (i: number): number[] => [i < 5 ? 0 : 1];
    const sizes = [100, 100];
    const saved = { infoHashHex: 'x', have: Uint8Array.from([0b11000100, 0b01000000]), files: [{ size: 100, mtimeMs: 1 }, { size: 100, mtimeMs: 2 }] };
    // Clean stop: nothing changed since the save → trust the record, check nothing.
    let plan = planResume(saved, [{ size: 100, mtimeMs: 1 }, { size: 100, mtimeMs: 2 }], sizes, 10, filesOfPiece);
    assert.deepEqual(plan.trusted.flatMap((t, i) => (t ? [i] : [])), [0, 1, 5, 9]);
    assert.deepEqual(plan.toCheck, []);
    // Killed after more writes to file 1 → its unrecorded pieces are checked.
    plan = planResume(saved, [{ size: 100, mtimeMs: 1 }, { size: 100, mtimeMs: 3 }], sizes, 10, filesOfPiece);
    assert.deepEqual(plan.trusted.flatMap((t, i) => (t ? [i] : [])), [0, 1, 5, 9]);
    assert.deepEqual(plan.toCheck, [6, 7, 8]);
    // File 0 vanished → nothing in it is trusted or checked.
    plan = planResume(saved, [undefined, { size: 100, mtimeMs: 2 }], sizes, 10, filesOfPiece);
    assert.deepEqual(plan.trusted.flatMap((t, i) => (t ? [i] : [])), [5, 9]);
    // No record at all → check every piece whose files are present.
    plan = planResume(undefined, [{ size: 100, mtimeMs: 1 }, { size: 50, mtimeMs: 2 }], sizes, 10, filesOfPiece);
    assert.deepEqual(plan.toCheck, [0, 1, 2, 3, 4]);
  });
});

test('file stats report size and mtime, undefined for a missing file', async () => {
  await withTemp(async (dir) => {
    const content = randomBytes(300);
    const layout = layoutOf(content, [100, 200], 16384);
    const storage = new FileStorage(dir, layout);
    await storage.write(0, 0, content.subarray(0, 50));
    await storage.sync();
    await utimes(join(dir, 'multi', 'd', 'f0'), 1000, 1000);
    const stats = await storage.fileStats();
    assert.equal(stats[0]!.size, 100);
    assert.equal(stats[0]!.mtimeMs, 1_000_000);
    assert.equal(stats[1], undefined);
    assert.deepEqual(storage.filesOfPiece(0), [0, 1]);
    await storage.close();
  });
});
