/** The `peerkit` command as a user runs it: a child process, its output and its exit code. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMetainfo } from '../src/codec/metainfo.js';
import { parseMagnet } from '../src/codec/magnet.js';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'peerkit.js');

function peerkit(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-cli-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('--help lists the commands, --version prints the package version', async () => {
  const help = peerkit('--help');
  assert.equal(help.code, 0);
  for (const cmd of ['create', 'info']) assert.match(help.stdout, new RegExp(`\\b${cmd}\\b`));
  const pkg = JSON.parse(await readFile(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  const v = peerkit('--version');
  assert.equal(v.code, 0);
  assert.equal(v.stdout.trim(), pkg.version);
  const sub = peerkit('create', '--help');
  assert.equal(sub.code, 0);
  assert.match(sub.stdout, /--piece-length/);
});

test('create then info: single file, trackers, piece length, private, name', async () => {
  await withTemp(async (dir) => {
    const file = join(dir, 'data.bin');
    await writeFile(file, Buffer.alloc(100_000, 7));
    const out = join(dir, 'data.torrent');
    const r = peerkit('create', file, '-o', out, '--tracker', 'http://127.0.0.1:6969/announce', '--tracker', 'udp://127.0.0.1:6969', '--piece-length', '32KiB', '--private', '--name', 'renamed.bin');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /info hash: [0-9a-f]{40}/);
    const m = parseMetainfo(await readFile(out));
    assert.equal(m.name, 'renamed.bin');
    assert.equal(m.pieceLength, 32768);
    assert.equal(m.pieceCount, 4);
    assert.equal(m.length, 100_000);
    assert.equal(m.private, true);
    assert.deepEqual(m.announceList, [['http://127.0.0.1:6969/announce'], ['udp://127.0.0.1:6969']]);

    const info = peerkit('info', out, '--json');
    assert.equal(info.code, 0, info.stderr);
    const j = JSON.parse(info.stdout) as { infoHash: string; magnet: string; pieceCount: number; files: { path: string; length: number }[] };
    assert.equal(j.infoHash, m.infoHashHex);
    assert.equal(j.pieceCount, 4);
    assert.equal(parseMagnet(j.magnet).infoHashHex, m.infoHashHex);

    const text = peerkit('info', out);
    assert.equal(text.code, 0);
    assert.match(text.stdout, new RegExp(m.infoHashHex));
    assert.match(text.stdout, /private:\s+yes/);

    const mag = peerkit('info', j.magnet, '--json');
    assert.equal(mag.code, 0, mag.stderr);
    assert.equal((JSON.parse(mag.stdout) as { infoHash: string }).infoHash, m.infoHashHex);
  });
});

test('create from a folder lists every file under the folder name', async () => {
  await withTemp(async (dir) => {
    const folder = join(dir, 'album');
    await mkdir(join(folder, 'sub'), { recursive: true });
    await writeFile(join(folder, 'a.txt'), 'hello');
    await writeFile(join(folder, 'sub', 'b.txt'), Buffer.alloc(70_000, 1));
    const out = join(dir, 'album.torrent');
    const r = peerkit('create', folder, '-o', out);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(peerkit('info', out, '--json').stdout) as { name: string; multiFile: boolean; files: { path: string; length: number }[]; length: number };
    assert.equal(info.name, 'album');
    assert.equal(info.multiFile, true);
    assert.deepEqual(info.files.map((f) => [f.path, f.length]).sort(), [['a.txt', 5], ['sub/b.txt', 70_000]]);
    assert.equal(info.length, 70_005);
  });
});

test('errors are one clear line on stderr, a non-zero exit, and a stack only with --debug', async () => {
  await withTemp(async (dir) => {
    const missing = peerkit('info', join(dir, 'nope.torrent'));
    assert.notEqual(missing.code, 0);
    assert.equal(missing.stderr.trim().split('\n').length, 1, missing.stderr);
    assert.match(missing.stderr, /^peerkit: no such file or directory: .*nope\.torrent/);

    const junk = join(dir, 'junk.torrent');
    await writeFile(junk, 'd4:infoi1ee');
    const bad = peerkit('info', junk);
    assert.notEqual(bad.code, 0);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
    assert.match(bad.stderr, /^peerkit: metainfo: /);

    const debug = peerkit('info', junk, '--debug');
    assert.notEqual(debug.code, 0);
    assert.match(debug.stderr, /\n\s+at /, 'a stack trace with --debug');

    const badMagnet = peerkit('info', 'magnet:?xt=urn:btih:123');
    assert.notEqual(badMagnet.code, 0);
    assert.match(badMagnet.stderr, /^peerkit: magnet: /);

    const file = join(dir, 'x.bin');
    await writeFile(file, 'x');
    const badSize = peerkit('create', file, '-o', join(dir, 'x.torrent'), '--piece-length', 'lots');
    assert.notEqual(badSize.code, 0);
    assert.equal(badSize.stderr.trim().split('\n').length, 1, badSize.stderr);
    assert.match(badSize.stderr, /--piece-length/);

    const noOut = peerkit('create', file);
    assert.notEqual(noOut.code, 0);
    assert.match(noOut.stderr, /^peerkit: .*--output/);

    const unknown = peerkit('frobnicate');
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /^peerkit: /);
  });
});
