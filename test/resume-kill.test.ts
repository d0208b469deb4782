/**
 * Crash safety of a download: a leecher in a child process is SIGKILLed in
 * the middle of a ~64 MiB download from a rate-limited seeder; a new leecher
 * on the same folder must start with (at least) the pieces its resume data
 * recorded, never fetch them again, and finish with the right bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '../src/client/client.js';
import type { Torrent } from '../src/client/torrent.js';
import { createTorrent } from '../src/files/create-torrent.js';
import { decode, isBytes, isDict } from '../src/codec/bencode.js';

const MiB = 1024 * 1024;
const CHILD = fileURLToPath(new URL('./fixtures/resume-leecher.js', import.meta.url));

/** Pieces recorded in a resume file (undefined while there is none). */
async function recordedPieces(path: string): Promise<Set<number> | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch {
    return undefined;
  }
  const v = decode(bytes);
  assert.ok(isDict(v));
  const have = v.get('have');
  assert.ok(isBytes(have));
  const out = new Set<number>();
  for (let i = 0; i < have.length * 8; i++) if ((have[i >> 3]! & (0x80 >> (i & 7))) !== 0) out.add(i);
  return out;
}

async function until(cond: () => Promise<boolean> | boolean, ms: number, what: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function completes(t: Torrent, ms: number): Promise<void> {
  if (t.isComplete) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not complete after ${ms} ms: ${JSON.stringify(t.stats())}`)), ms);
    t.on('complete', () => {
      clearTimeout(timer);
      resolve();
    });
    t.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

test('SIGKILL in the middle of a download: a restart keeps the verified pieces and fetches only the rest', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-kill-'));
  const clients: Client[] = [];
  let child: ReturnType<typeof spawn> | undefined;
  try {
    const seedDir = join(dir, 'seed');
    const outDir = join(dir, 'out');
    await mkdir(seedDir);
    const data = randomBytes(64 * MiB);
    await writeFile(join(seedDir, 'big.bin'), data);
    const { torrent, metainfo } = await createTorrent(join(seedDir, 'big.bin'), { pieceLength: 64 * 1024 });
    const torrentPath = join(dir, 'big.torrent');
    await writeFile(torrentPath, torrent);
    const pieceLength = metainfo.pieceLength;
    assert.equal(metainfo.length % pieceLength, 0, 'every piece full size, for the byte count below');

    // A seeder slow enough that the download takes several seconds (resume data is saved every 5 s).
    const slow = await Client.create({ port: 0, host: '127.0.0.1', uploadLimit: 6 * MiB });
    clients.push(slow);
    await slow.add(metainfo, { dir: seedDir });

    child = spawn(process.execPath, [CHILD, torrentPath, outDir, `127.0.0.1:${slow.port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let reported = 0;
    let childComplete = false;
    let stderr = '';
    let stdoutRest = '';
    child.stdout!.on('data', (d: Buffer) => {
      const lines = (stdoutRest + d.toString()).split('\n');
      stdoutRest = lines.pop()!;
      for (const line of lines) {
        const m = /^pieces (\d+)$/.exec(line);
        if (m) reported = Math.max(reported, Number(m[1]));
        if (line === 'complete') childComplete = true;
      }
    });
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child!.once('exit', (code, signal) => resolve({ code, signal })));

    // Wait until the child has verified pieces and its resume file records some of them.
    const resume = join(outDir, '.peerkit', `${metainfo.infoHashHex}.resume`);
    const want = 32;
    await until(
      async () => reported >= want && ((await recordedPieces(resume))?.size ?? 0) >= want,
      30_000,
      () => `the child's progress (reported ${reported} pieces; stderr: ${stderr})`,
    );
    assert.equal(childComplete, false);
    child.kill('SIGKILL');
    const exit = await exited;
    assert.equal(exit.signal, 'SIGKILL', `the child died of the kill, not before (${JSON.stringify(exit)}, stderr: ${stderr})`);
    child = undefined;
    const recorded = (await recordedPieces(resume))!;
    assert.ok(recorded.size >= want && recorded.size < metainfo.pieceCount, `recorded ${recorded.size} of ${metainfo.pieceCount}`);

    // Restart in this process, from a seeder without a limit.
    await slow.close();
    const fast = await Client.create({ port: 0, host: '127.0.0.1' });
    clients.push(fast);
    await fast.add(metainfo, { dir: seedDir });
    const leecher = await Client.create({ port: 0, host: '127.0.0.1' });
    clients.push(leecher);
    let ready: number | undefined;
    const fetched: number[] = [];
    leecher.on('torrent', (t) => {
      t.on('ready', (n) => (ready = n));
      t.on('piece', (i) => fetched.push(i));
    });
    const t = await leecher.add(torrentPath, { dir: outDir, peers: [{ host: '127.0.0.1', port: fast.port }] });
    assert.ok(ready !== undefined, 'ready was emitted');
    assert.ok(ready >= recorded.size, `started with ${ready} pieces, ${recorded.size} were recorded`);
    await completes(t, 30_000);
    assert.deepEqual(
      fetched.filter((i) => recorded.has(i)),
      [],
      'no recorded piece was downloaded again',
    );
    assert.equal(fetched.length + ready, metainfo.pieceCount);
    const downloaded = t.stats().downloaded;
    const slack = 2 * pieceLength;
    assert.ok(downloaded <= metainfo.length - ready * pieceLength + slack, `downloaded ${downloaded} bytes; ${ready} of ${metainfo.pieceCount} pieces were kept`);
    assert.ok((await readFile(join(outDir, 'big.bin'))).equals(data), 'the file is right byte for byte');
  } finally {
    child?.kill('SIGKILL');
    await Promise.all(clients.map((c) => c.close()));
    await rm(dir, { recursive: true, force: true });
  }
});
