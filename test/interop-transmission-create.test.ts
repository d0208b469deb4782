/**
 * Interop: `peerkit create` and transmission-create (Debian transmission-cli)
 * must give the same info hash for the same data, piece length, tracker and
 * private flag, single-file and multi-file. `.ci/run` installs the tool; if
 * it is missing this test fails rather than skipping.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile, readFile, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { createTorrent } from '../src/files/create-torrent.js';
import { parseMetainfo } from '../src/codec/metainfo.js';

const run = promisify(execFile);

function data(bytes: number, seed: string): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 32) createHash('sha256').update(`${seed}:${i}`).digest().copy(out, i);
  return out;
}

/** Runs transmission-create and returns the info hash that transmission-show reports for its file. */
async function transmissionHash(path: string, out: string, pieceLength: number, tracker: string, priv: boolean): Promise<string> {
  const args = ['-o', out, '-s', String(pieceLength / 1024), '-t', tracker];
  if (priv) args.push('-p');
  await run('transmission-create', [...args, path], { timeout: 60_000 });
  const { stdout } = await run('transmission-show', [out], { timeout: 30_000 });
  const m = /Hash:\s*([0-9a-f]{40})/.exec(stdout);
  assert.ok(m, `transmission-show printed no hash:\n${stdout}`);
  // Our parser must agree with transmission about its own file too.
  assert.equal(parseMetainfo(await readFile(out)).infoHashHex, m[1]);
  return m[1]!;
}

test('transmission-create is installed (run .ci/run, or apt-get install transmission-cli)', async () => {
  await run('transmission-create', ['--help'], { timeout: 10_000 }).catch((e: NodeJS.ErrnoException & { stdout?: string }) => {
    // transmission-create --help exits non-zero on some versions; only a missing binary fails.
    assert.notEqual(e.code, 'ENOENT', 'transmission-create not found on PATH');
  });
});

test('single file: same info hash as transmission-create for several piece lengths, trackers and the private flag', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-tc-'));
  try {
    const file = join(dir, 'Some File (1).bin');
    await writeFile(file, data(1_000_003, 'single')); // short last piece at every piece length
    const cases: [number, string, boolean][] = [
      [16 * 1024, 'http://127.0.0.1:6969/announce', false],
      [32 * 1024, 'udp://127.0.0.1:6969', true],
      [256 * 1024, 'http://127.0.0.1:1/a?passkey=x&y=%20', false],
      [2 * 1024 * 1024, 'http://127.0.0.1:6969/announce', false],
    ];
    for (const [pl, tracker, priv] of cases) {
      const theirs = await transmissionHash(file, join(dir, `t-${pl}.torrent`), pl, tracker, priv);
      const ours = await createTorrent(file, { pieceLength: pl, announce: [[tracker]], private: priv });
      assert.equal(ours.metainfo.infoHashHex, theirs, `piece length ${pl}, private ${priv}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('multi-file folder: same info hash, file order and skipped files as transmission-create', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-tc-'));
  try {
    const root = join(dir, 'My Album');
    await mkdir(join(root, 'Disc 2', 'extras'), { recursive: true });
    await mkdir(join(root, 'a'), { recursive: true });
    await mkdir(join(root, '.hidden-dir'), { recursive: true });
    await writeFile(join(root, 'track01.flac'), data(300_001, 't1'));
    await writeFile(join(root, 'Track02.flac'), data(200_000, 't2'));
    await writeFile(join(root, 'Disc 2', 'track03.flac'), data(65_536, 't3'));
    await writeFile(join(root, 'Disc 2', 'extras', 'notes.txt'), 'liner notes\n');
    await writeFile(join(root, 'a', 'b'), data(1_000, 'ab'));
    await writeFile(join(root, 'a.txt'), 'a dot txt\n');
    await writeFile(join(root, 'a-z'), 'dash\n');
    await writeFile(join(root, 'B'), 'upper case B\n');
    await writeFile(join(root, 'empty.dat'), ''); // skipped: empty
    await writeFile(join(root, '.DS_Store'), 'junk'); // skipped: dot-file
    await writeFile(join(root, '.hidden-dir', 'x'), 'junk'); // skipped: dot-folder
    await writeFile(join(root, 'ünïcödé name.txt'), 'utf-8 name\n');
    await symlink(join(root, 'a.txt'), join(root, 'link-to-a.txt')); // followed
    for (const pl of [16 * 1024, 64 * 1024]) {
      const theirs = await transmissionHash(root, join(dir, `m-${pl}.torrent`), pl, 'http://127.0.0.1:6969/announce', false);
      const ours = await createTorrent(root, { pieceLength: pl, announce: [['http://127.0.0.1:6969/announce']] });
      assert.equal(ours.metainfo.infoHashHex, theirs, `piece length ${pl}`);
      const theirFiles = parseMetainfo(await readFile(join(dir, `m-${pl}.torrent`))).files.map((f) => f.path.join('/'));
      assert.deepEqual(ours.metainfo.files.map((f) => f.path.join('/')), theirFiles);
      assert.ok(!theirFiles.some((p) => p.includes('.DS_Store') || p.includes('empty.dat') || p.includes('.hidden-dir')));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
