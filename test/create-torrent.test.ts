import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { createTorrent, hashSource, listSource, CreateTorrentError } from '../src/files/create-torrent.js';
import { defaultPieceLength } from '../src/codec/metainfo.js';
import { verifyPieces } from '../src/files/verify-pieces.js';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-create-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Reference: hash the concatenation in memory (only for small test data). */
function referencePieces(data: Buffer, pieceLength: number): Buffer {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += pieceLength) out.push(createHash('sha1').update(data.subarray(at, at + pieceLength)).digest());
  return Buffer.concat(out);
}

test('piece hashes are the same inline and in worker threads, and match an in-memory reference, across file boundaries', async () => {
  await withDir(async (dir) => {
    const parts = [randomBytes(70_001), randomBytes(1), randomBytes(150_000), randomBytes(16_384)];
    const files = await Promise.all(
      parts.map(async (p, i) => {
        const absPath = join(dir, `f${i}`);
        await writeFile(absPath, p);
        return { absPath, path: [`f${i}`], length: p.length };
      }),
    );
    const whole = Buffer.concat(parts);
    for (const pl of [16_384, 32_768, 262_144]) {
      const expected = referencePieces(whole, pl);
      for (const workers of [0, 1, 2]) {
        // Small chunks force many jobs, so ordering across workers is exercised.
        const got = await hashSource(files, pl, { workers, chunkBytes: 16_384 });
        assert.ok(got.equals(expected), `piece length ${pl}, ${workers} workers`);
      }
    }
  });
});

test('progress is reported up to the total', async () => {
  await withDir(async (dir) => {
    const file = join(dir, 'x');
    await writeFile(file, randomBytes(300_000));
    const seen: number[] = [];
    await createTorrent(file, { pieceLength: 16_384, onProgress: (done, total) => (assert.equal(total, 300_000), seen.push(done)) });
    assert.equal(seen.at(-1), 300_000);
    assert.ok(seen.every((v, i) => i === 0 || v >= seen[i - 1]!));
  });
});

test('a created torrent verifies against its own data, and round-trips its fields', async () => {
  await withDir(async (dir) => {
    const root = join(dir, 'set');
    await mkdir(join(root, 'sub'), { recursive: true });
    await writeFile(join(root, 'one'), randomBytes(40_000));
    await writeFile(join(root, 'sub', 'two'), randomBytes(25_000));
    const { metainfo } = await createTorrent(root, {
      pieceLength: 16_384,
      announce: [['http://127.0.0.1:1/a', 'http://127.0.0.1:2/a'], ['udp://127.0.0.1:3']],
      urlList: ['http://127.0.0.1:4/files/'],
      comment: 'hello',
      name: 'renamed',
      private: true,
      creationDate: 1_700_000_000,
    });
    assert.equal(metainfo.name, 'renamed');
    assert.equal(metainfo.isMultiFile, true);
    assert.equal(metainfo.private, true);
    assert.deepEqual(metainfo.announceList, [['http://127.0.0.1:1/a', 'http://127.0.0.1:2/a'], ['udp://127.0.0.1:3']]);
    assert.deepEqual(metainfo.urlList, ['http://127.0.0.1:4/files/']);
    assert.equal(metainfo.comment, 'hello');
    assert.equal(metainfo.creationDate, 1_700_000_000);
    assert.deepEqual(metainfo.files.map((f) => [f.path.join('/'), f.length, f.offset]), [['one', 40_000, 0], ['sub/two', 25_000, 40_000]]);
    // verifyPieces looks under <dir>/<name>: the data lives under "set", so check with the real name.
    const again = await createTorrent(root, { pieceLength: 16_384 });
    const v = await verifyPieces(dir, again.metainfo);
    assert.equal(v.validCount, again.metainfo.pieceCount);
  });
});

test('clear errors for what cannot become a torrent', async () => {
  await withDir(async (dir) => {
    await assert.rejects(createTorrent(join(dir, 'missing')), (e: unknown) => e instanceof CreateTorrentError && /no such file/.test(e.message));
    await writeFile(join(dir, 'empty'), '');
    await assert.rejects(createTorrent(join(dir, 'empty')), /empty/);
    await mkdir(join(dir, 'hollow'));
    await writeFile(join(dir, 'hollow', '.only-hidden'), 'x');
    await assert.rejects(createTorrent(join(dir, 'hollow')), /no non-empty files/);
    await writeFile(join(dir, 'ok'), 'data');
    for (const pl of [1000, 8192, 3 * 16_384, 128 * 1024 * 1024]) {
      await assert.rejects(createTorrent(join(dir, 'ok'), { pieceLength: pl }), /power of two/);
    }
  });
});

test('file order folds ASCII case, compares whole relative paths, and puts non-ASCII bytes first (signed char)', async () => {
  await withDir(async (dir) => {
    const root = join(dir, 'r');
    await mkdir(join(root, 'a'), { recursive: true });
    for (const f of ['a.txt', 'a-z', 'B', 'a/b', 'c', 'é']) await writeFile(join(root, f), f);
    const layout = await listSource(root);
    assert.deepEqual(layout.files.map((f) => f.path.join('/')), ['é', 'a-z', 'a.txt', 'a/b', 'B', 'c']);
  });
});

test('default piece length keeps the piece count near 1,000-2,000 within 16 KiB..16 MiB', () => {
  assert.equal(defaultPieceLength(1), 16 * 1024);
  assert.equal(defaultPieceLength(1024 ** 3), 1024 * 1024);
  assert.equal(defaultPieceLength(1024 ** 5), 16 * 1024 * 1024);
  for (const size of [10e6, 700e6, 4.7e9, 50e9]) {
    const pl = defaultPieceLength(size);
    assert.ok((size / pl <= 2000 || pl === 16 * 1024 * 1024) && (pl === 16 * 1024 || size / pl > 1000), `${size} -> ${pl}`);
  }
});
