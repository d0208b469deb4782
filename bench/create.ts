/**
 * bench/create: torrent creation of a generated file, peerkit vs
 * transmission-create, in the same run on the same (page-cached) file.
 *
 *   npm run bench:create -- [--size MiB] [--rounds N] [--piece-length KiB]
 *
 * Both tools run as separate processes through their CLIs; wall time and
 * peak RSS (VmHWM from /proc, sampled until exit) are measured for each,
 * rounds alternate which tool goes first, and the best round of each is
 * compared. Both must produce the same info hash.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseMetainfo } from '../src/codec/metainfo.js';

const args = process.argv.slice(2);
const opt = (name: string, def: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const sizeMiB = opt('--size', 1024);
const rounds = opt('--rounds', 3);
const pieceKiB = opt('--piece-length', 1024);
const peerkitBin = fileURLToPath(new URL('../../bin/peerkit.js', import.meta.url));

interface Sample {
  seconds: number;
  peakRssMB: number;
}

function peakRss(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

function measure(cmd: string, argv: string[]): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    let peak = 0;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setInterval(() => (peak = Math.max(peak, peakRss(child.pid!))), 10);
    const kill = setTimeout(() => child.kill('SIGKILL'), 600_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearInterval(timer);
      clearTimeout(kill);
      if (code !== 0) reject(new Error(`${cmd} exited with ${code}: ${stderr.trim()}`));
      else resolve({ seconds: (performance.now() - t0) / 1000, peakRssMB: peak });
    });
  });
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-bench-create-'));
  try {
    const file = join(dir, 'bench.bin');
    const fh = await open(file, 'w');
    for (let left = sizeMiB * 1024 * 1024; left > 0; ) {
      const n = Math.min(left, 8 * 1024 * 1024);
      await fh.write(randomBytes(n));
      left -= n;
    }
    await fh.close();
    await readFile(file).catch(() => undefined); // warm the page cache (both tools then read from memory)
    const tracker = 'http://127.0.0.1:6969/announce';
    const ours: Sample[] = [];
    const theirs: Sample[] = [];
    const run = {
      peerkit: () => measure(process.execPath, [peerkitBin, 'create', file, '-o', join(dir, 'p.torrent'), '-t', tracker, '--piece-length', `${pieceKiB}KiB`, '--no-date']),
      transmission: () => measure('transmission-create', ['-o', join(dir, 't.torrent'), '-t', tracker, '-s', String(pieceKiB), file]),
    };
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? (['peerkit', 'transmission'] as const) : (['transmission', 'peerkit'] as const);
      for (const who of order) {
        const s = await run[who]();
        (who === 'peerkit' ? ours : theirs).push(s);
        console.log(`round ${r + 1} ${who.padEnd(12)} ${s.seconds.toFixed(3)} s  ${(sizeMiB / s.seconds).toFixed(0)} MiB/s  peak RSS ${s.peakRssMB.toFixed(1)} MB`);
      }
    }
    const a = parseMetainfo(await readFile(join(dir, 'p.torrent'))).infoHashHex;
    const b = parseMetainfo(await readFile(join(dir, 't.torrent'))).infoHashHex;
    const best = (xs: Sample[]): Sample => xs.reduce((m, x) => (x.seconds < m.seconds ? x : m));
    const bo = best(ours);
    const bt = best(theirs);
    const maxRss = Math.max(...ours.map((s) => s.peakRssMB));
    console.log(`\nmachine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`);
    console.log(`file: ${sizeMiB} MiB, piece length ${pieceKiB} KiB, ${rounds} rounds, best of each`);
    console.log(`peerkit create:      ${bo.seconds.toFixed(3)} s (${(sizeMiB / bo.seconds).toFixed(0)} MiB/s), peak RSS max ${maxRss.toFixed(1)} MB`);
    console.log(`transmission-create: ${bt.seconds.toFixed(3)} s (${(sizeMiB / bt.seconds).toFixed(0)} MiB/s), peak RSS ${bt.peakRssMB.toFixed(1)} MB`);
    console.log(`ratio (transmission time / peerkit time): ${(bt.seconds / bo.seconds).toFixed(2)}x  ${bt.seconds >= bo.seconds ? '(peerkit faster)' : '(peerkit slower)'}`);
    console.log(`same info hash: ${a === b ? 'yes' : 'NO'} (${a})`);
    console.log(`RSS target (< 100 MB): ${maxRss < 100 ? 'met' : 'MISSED'}`);
    if (a !== b) process.exitCode = 1;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
