/**
 * `npm run demo`: what peerkit can do today, end to end, on this machine only.
 *
 * It generates a single file and a folder of files, makes a torrent of each
 * (announcing to a loopback tracker URL; nothing is contacted), prints their
 * metainfo and magnet links, verifies the data against the torrents, then
 * damages one piece of a copy and shows the check catching exactly that
 * piece. It exits non-zero if anything does not hold.
 *
 * Options: --size MiB (default 64), --keep (leave the files in place).
 */
import { mkdtemp, mkdir, open, rm, writeFile, copyFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTorrent } from '../src/files/create-torrent.js';
import { verifyPieces, filePathOnDisk } from '../src/files/verify-pieces.js';
import { run } from '../src/cli/main.js';
import { formatBytes, formatRate } from '../src/cli/format.js';

const args = process.argv.slice(2);
const sizeArg = args.indexOf('--size');
const sizeMiB = sizeArg >= 0 ? Number(args[sizeArg + 1]) : 64;
const keep = args.includes('--keep');
if (!Number.isFinite(sizeMiB) || sizeMiB <= 0 || sizeMiB > 4096) {
  console.error('demo: --size takes a number of MiB between 1 and 4096');
  process.exit(2);
}

/** Deterministic pseudo-random content: SHA-256 in counter mode, 1 MiB at a time. */
async function generateFile(path: string, bytes: number, seed: string): Promise<void> {
  const fh = await open(path, 'w');
  try {
    const block = Buffer.allocUnsafe(1024 * 1024);
    for (let written = 0, n = 0; written < bytes; n++) {
      for (let i = 0; i < block.length; i += 32) createHash('sha256').update(`${seed}:${n}:${i}`).digest().copy(block, i);
      const len = Math.min(block.length, bytes - written);
      await fh.write(block, 0, len);
      written += len;
    }
  } finally {
    await fh.close();
  }
}

function step(title: string): void {
  console.log(`\n== ${title}`);
}

async function main(): Promise<number> {
  const work = await mkdtemp(join(tmpdir(), 'peerkit-demo-'));
  let ok = true;
  const check = (cond: boolean, what: string): void => {
    console.log(`${cond ? 'ok  ' : 'FAIL'} ${what}`);
    ok &&= cond;
  };
  try {
    const data = join(work, 'data');
    await mkdir(data);

    step(`generating ${sizeMiB} MiB of test data in ${data}`);
    const single = join(data, 'peerkit-demo.bin');
    // An odd size, so the last piece is short.
    const singleSize = sizeMiB * 1024 * 1024 - 12345;
    await generateFile(single, singleSize, 'single');
    const folder = join(data, 'album');
    await mkdir(join(folder, 'disc 2'), { recursive: true });
    await generateFile(join(folder, 'track01.flac'), 3_000_001, 'a');
    await generateFile(join(folder, 'disc 2', 'track02.flac'), 2_500_000, 'b');
    await writeFile(join(folder, 'cover.txt'), 'peerkit demo album\n');
    console.log(`${single} (${formatBytes(singleSize)}), ${folder}/ (3 files)`);

    step('creating torrents (peerkit create)');
    const tracker = 'http://127.0.0.1:6969/announce';
    const singleTorrent = join(work, 'peerkit-demo.torrent');
    const folderTorrent = join(work, 'album.torrent');
    const t0 = performance.now();
    const created = await createTorrent(single, { announce: [[tracker]], createdBy: 'peerkit demo' });
    const secs = (performance.now() - t0) / 1000;
    await writeFile(singleTorrent, created.torrent);
    console.log(`hashed ${formatBytes(singleSize)} in ${secs.toFixed(2)} s (${formatRate(singleSize / secs)})`);
    if ((await run(['create', folder, '-o', folderTorrent, '--tracker', tracker, '--piece-length', '256KiB', '--no-date'])) !== 0) return 1;

    step('metainfo and magnet link (peerkit info)');
    if ((await run(['info', singleTorrent])) !== 0) return 1;
    console.log('');
    if ((await run(['info', folderTorrent])) !== 0) return 1;

    step('verifying the data against the torrents');
    const v1 = await verifyPieces(data, created.metainfo);
    check(v1.validCount === v1.pieceCount, `${single}: ${v1.validCount}/${v1.pieceCount} pieces verified`);
    const folderMeta = (await createTorrent(folder, { pieceLength: 256 * 1024, announce: [[tracker]] })).metainfo;
    const v2 = await verifyPieces(data, folderMeta);
    check(v2.validCount === v2.pieceCount, `${folder}: ${v2.validCount}/${v2.pieceCount} pieces verified (pieces span file boundaries)`);

    step('damaging one piece of a copy: the check must catch exactly that piece');
    const copyDir = join(work, 'copy');
    await mkdir(copyDir);
    const copyPath = filePathOnDisk(copyDir, created.metainfo, 0);
    await copyFile(single, copyPath);
    const victim = Math.floor(created.metainfo.pieceCount / 2);
    const fh = await open(copyPath, 'r+');
    await fh.write(Buffer.from('peerkit was here'), 0, 16, victim * created.metainfo.pieceLength + 100);
    await fh.close();
    const v3 = await verifyPieces(copyDir, created.metainfo);
    const bad = v3.valid.flatMap((good, i) => (good ? [] : [i]));
    check(bad.length === 1 && bad[0] === victim, `damaged piece ${victim} detected; bad pieces: [${bad.join(', ')}]`);

    console.log(ok ? '\ndemo: all checks passed' : '\ndemo: some checks FAILED');
    if (keep) console.log(`files kept in ${work}`);
    return ok ? 0 : 1;
  } finally {
    if (!keep) await rm(work, { recursive: true, force: true });
  }
}

process.exitCode = await main();
