/**
 * `peerkit get` and `peerkit seed` as a user runs them: bin/peerkit.js in a
 * child process on 127.0.0.1, its output and its exit code. Seeders are
 * either in this process (a rate-limited Client, so a download takes a few
 * seconds) or `peerkit seed` children.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '../src/client/client.js';
import type { Torrent } from '../src/client/torrent.js';
import { createTorrent } from '../src/files/create-torrent.js';
import { buildMagnet } from '../src/codec/magnet.js';
import { createServer, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { run } from '../src/cli/main.js';
import { MessageReader, encodeHandshake, encodeMessage } from '../src/codec/peer-wire.js';
import type { Metainfo } from '../src/codec/metainfo.js';
import { freePort, lineSplitter, spawnManaged, waitUntil, withTimeout, type ManagedProcess } from './harness/proc.js';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'peerkit.js');
const KiB = 1024;
const MiB = 1024 * KiB;

interface Run {
  readonly proc: ManagedProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  /** Exit code (null if killed by a signal), within `ms`. */
  exit(ms: number): Promise<number | null>;
}

function peerkit(args: readonly string[]): Run {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const proc = spawnManaged(process.execPath, [bin, ...args], { onStdout: lineSplitter((l) => stdout.push(l)), onStderr: lineSplitter((l) => stderr.push(l)) });
  return {
    proc,
    stdout,
    stderr,
    exit: async (ms) => (await withTimeout(`peerkit ${args[0]} to exit: ${proc.tail()}`, ms, proc.exited)).code,
  };
}

interface Fixture {
  readonly dir: string;
  readonly seedDir: string;
  readonly data: Buffer;
  readonly metainfo: Metainfo;
  readonly torrentPath: string;
}

async function withFixture(size: number, fn: (f: Fixture) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-clicl-'));
  try {
    const seedDir = join(dir, 'seed');
    await mkdir(seedDir);
    const data = randomBytes(size);
    await writeFile(join(seedDir, 'data.bin'), data);
    const { torrent, metainfo } = await createTorrent(join(seedDir, 'data.bin'), { pieceLength: 32 * KiB });
    const torrentPath = join(dir, 'data.torrent');
    await writeFile(torrentPath, torrent);
    await fn({ dir, seedDir, data, metainfo, torrentPath });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** An in-process seeder of the fixture, at most `uploadLimit` bytes/s. */
async function seeder(f: Fixture, uploadLimit: number): Promise<{ client: Client; torrent: Torrent }> {
  const client = await Client.create({ port: 0, host: '127.0.0.1', uploadLimit });
  const torrent = await client.add(f.metainfo, { dir: f.seedDir });
  assert.equal(torrent.isComplete, true);
  return { client, torrent };
}

const PROGRESS_LINE = /^(\d+\.\d)% \S+ \S+\/\S+ \S+ down \S+ \S+\/s up \S+ \S+\/s peers (\d+) eta (\S+)$/;

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  test(`get interrupted by ${signal} before completion exits ${code} with one clear line, and keeps the verified pieces`, { timeout: 60_000 }, async () => {
    await withFixture(6 * MiB, async (f) => {
      const s = await seeder(f, 512 * KiB);
      try {
        const out = join(f.dir, 'out');
        const get = peerkit(['get', f.torrentPath, '--out', out, '--port', '0', '--host', '127.0.0.1', '--peer', `127.0.0.1:${s.client.port}`]);
        try {
          // stdout is a pipe: plain progress lines; wait for one with some data in.
          await waitUntil('some progress', 30_000, () => get.stdout.some((l) => Number(PROGRESS_LINE.exec(l)?.[1] ?? 0) > 0));
          await get.proc.stop(signal, 10_000);
          assert.equal(get.proc.exitInfo?.code, code, get.proc.tail());
          const last = get.stderr.at(-1) ?? '';
          assert.match(last, new RegExp(`^peerkit: interrupted by ${signal} before the download completed \\(\\d+ of ${f.metainfo.pieceCount} pieces verified\\)`));
        } finally {
          await get.proc.stop('SIGKILL');
        }
        // A resume record exists for what was verified.
        const resume = await readFile(join(out, '.peerkit', `${f.metainfo.infoHashHex}.resume`));
        assert.ok(resume.length > 0);
      } finally {
        await s.client.close();
      }
    });
  });
}

test('get exits 0 once every piece is verified; plain progress lines (percent, rates, peers, ETA) when stdout is not a terminal', { timeout: 60_000 }, async () => {
  await withFixture(3 * MiB + 777, async (f) => {
    const s = await seeder(f, 1 * MiB);
    try {
      const out = join(f.dir, 'out');
      const get = peerkit(['get', f.torrentPath, '--out', out, '--port', '0', '--host', '127.0.0.1', '--peer', `127.0.0.1:${s.client.port}`]);
      assert.equal(await get.exit(45_000), 0, get.proc.tail());
      assert.ok((await readFile(join(out, 'data.bin'))).equals(f.data));
      const lines = get.stdout.map((l) => PROGRESS_LINE.exec(l)).filter((m) => m !== null);
      assert.ok(lines.length >= 2, `plain progress lines on stdout: ${get.stdout.join('\n')}`);
      assert.equal(lines.length, get.stdout.length, 'nothing but progress lines on stdout');
      assert.equal(lines.at(-1)![1], '100.0');
      assert.ok(lines.some((m) => Number(m[2]) >= 1), 'the peer count is shown');
      assert.ok(lines.some((m) => /^\d+:\d\d$/.test(m[3]!)), 'an ETA is shown while downloading');
      assert.ok(get.stdout.every((l) => !l.includes('\x1b')), 'no terminal escapes in the plain lines');
      assert.ok(get.stderr.some((l) => /complete, every piece verified/.test(l)), get.stderr.join('\n'));
    } finally {
      await s.client.close();
    }
  });
});

test('get on a bad or missing torrent file exits non-zero with one line', { timeout: 30_000 }, async () => {
  await withFixture(64 * KiB, async (f) => {
    const junk = join(f.dir, 'junk.torrent');
    await writeFile(junk, 'd4:infod4:name1:xee');
    const bad = peerkit(['get', junk, '--out', join(f.dir, 'o1'), '--port', '0']);
    assert.equal(await bad.exit(20_000), 1);
    assert.equal(bad.stderr.length, 1, bad.stderr.join('\n'));
    assert.match(bad.stderr[0]!, /^peerkit: metainfo: /);
    const missing = peerkit(['get', join(f.dir, 'nope.torrent'), '--out', join(f.dir, 'o2'), '--port', '0']);
    assert.equal(await missing.exit(20_000), 1);
    assert.equal(missing.stderr.length, 1, missing.stderr.join('\n'));
    assert.match(missing.stderr[0]!, /^peerkit: no such file or directory: .*nope\.torrent/);
  });
});

test('get of a magnet link with no tracker, peer or DHT is an immediate error; a bad option value too', { timeout: 30_000 }, async () => {
  await withFixture(64 * KiB, async (f) => {
    const magnet = buildMagnet({ infoHash: f.metainfo.infoHash, name: 'data.bin' });
    const r = peerkit(['get', magnet, '--out', join(f.dir, 'o'), '--port', '0', '--host', '127.0.0.1']);
    assert.equal(await r.exit(20_000), 1);
    assert.equal(r.stderr.length, 1, r.stderr.join('\n'));
    assert.match(r.stderr[0]!, /^peerkit: the magnet link gives no way to find peers .*--tracker.*--peer.*--bootstrap/);
    for (const [flag, value] of [['--max-peers', '0'], ['--max-connections', 'many'], ['--unchoke-slots', '-1'], ['--snub-timeout', '0']] as const) {
      const u = peerkit(['get', f.torrentPath, '--out', join(f.dir, 'o'), '--port', '0', flag, value]);
      assert.equal(await u.exit(20_000), 1, flag);
      assert.match(u.stderr.join('\n'), new RegExp(`^peerkit: ${flag} takes`), flag);
    }
  });
});

test('get with an unreachable --peer warns once, keeps trying, and --timeout ends it with exit 1', { timeout: 30_000 }, async () => {
  await withFixture(64 * KiB, async (f) => {
    const closed = await freePort();
    const r = peerkit(['get', f.torrentPath, '--out', join(f.dir, 'o'), '--port', '0', '--host', '127.0.0.1', '--peer', `127.0.0.1:${closed}`, '--timeout', '7', '-q']);
    assert.equal(await r.exit(25_000), 1, r.proc.tail());
    const warnings = r.stderr.filter((l) => l.startsWith('warning: '));
    assert.equal(warnings.length, 1, r.stderr.join('\n'));
    assert.match(warnings[0]!, new RegExp(`^warning: cannot connect to peer 127\\.0\\.0\\.1:${closed}: .*ECONNREFUSED.*; will keep trying$`));
    assert.match(r.stderr.at(-1)!, /^peerkit: not complete after 7 s \(0 of 2 pieces verified, 0 peer\(s\) connected\)$/);
    // --verbose shows every attempt: it was tried again (after 2 s, then 4 s).
    const v = peerkit(['get', f.torrentPath, '--out', join(f.dir, 'o'), '--port', '0', '--host', '127.0.0.1', '--peer', `127.0.0.1:${closed}`, '--timeout', '5', '-q', '--verbose']);
    assert.equal(await v.exit(25_000), 1, v.proc.tail());
    const attempts = v.stderr.filter((l) => l.startsWith(`could not connect to 127.0.0.1:${closed} (from user): `));
    assert.ok(attempts.length >= 2, v.stderr.join('\n'));
  });
});

test('the long options: seed --dir --port (and the choking flags); get --out --port --seed --max-peers; the getter seeds on after completing', { timeout: 90_000 }, async () => {
  await withFixture(2 * MiB + 5, async (f) => {
    const seedPort = await freePort();
    const seed = peerkit(['seed', f.torrentPath, '--dir', f.seedDir, '--port', String(seedPort), '--host', '127.0.0.1', '--upload-limit', '4MiB',
      '--unchoke-slots', '2', '--optimistic-slots', '1', '--rechoke-interval', '5', '--optimistic-interval', '20', '--snub-timeout', '30', '--max-connections', '20']);
    let get: Run | undefined;
    let third: Client | undefined;
    try {
      await waitUntil('the seeder to verify its data', 30_000, () => seed.stderr.some((l) => /pieces verified on disk/.test(l)));
      assert.ok(seed.stderr.some((l) => l.includes(`listening on port ${seedPort}`)), seed.stderr.join('\n'));
      const getPort = await freePort();
      const out = join(f.dir, 'out');
      get = peerkit(['get', f.torrentPath, '--out', out, '--port', String(getPort), '--host', '127.0.0.1', '--seed', '--max-peers', '3', '--peer', `127.0.0.1:${seedPort}`]);
      const g = get;
      await waitUntil('the download to complete', 45_000, () => g.stderr.some((l) => /complete, every piece verified/.test(l)));
      assert.ok(g.stderr.some((l) => l.includes(`listening on port ${getPort}`)), g.stderr.join('\n'));
      assert.ok(g.stderr.some((l) => /seeding; press Ctrl-C to stop/.test(l)));
      assert.ok((await readFile(join(out, 'data.bin'))).equals(f.data));
      assert.equal(g.proc.exitInfo, undefined, 'with --seed, get keeps running');
      // It really seeds: a third client gets the file from it alone.
      third = await Client.create({ port: 0, host: '127.0.0.1' });
      const t = await third.add(f.metainfo, { dir: join(f.dir, 'third'), peers: [{ host: '127.0.0.1', port: getPort }] });
      await withTimeout('the third client to complete from the get --seed process', 30_000, new Promise<void>((resolve) => (t.isComplete ? resolve() : t.on('complete', resolve))));
      assert.ok((await readFile(join(f.dir, 'third', 'data.bin'))).equals(f.data));
      // A seeding get stopped by a signal has done its job: exit 0. So does seed.
      await g.proc.stop('SIGINT', 10_000);
      assert.equal((await g.proc.exited).code, 0, g.proc.tail());
      await seed.proc.stop('SIGTERM', 10_000);
      assert.equal(seed.proc.exitInfo?.code, 0, seed.proc.tail());
      assert.ok(seed.stderr.some((l) => /stopping \(SIGTERM\)/.test(l)));
    } finally {
      await third?.close();
      await get?.proc.stop('SIGKILL');
      await seed.proc.stop('SIGKILL');
    }
  });
});

test('a peer that breaks the protocol is dropped with a warning line naming the violation; normal output stays clean', { timeout: 60_000 }, async () => {
  await withFixture(1 * MiB, async (f) => {
    const s = await seeder(f, 512 * KiB); // a download of ~2 s: the bad peer is surely met on the way
    // On 127.0.0.2: handshakes, then asks for a piece past the end of the torrent.
    const sockets: Socket[] = [];
    const bad = createServer((sock) => {
      sockets.push(sock);
      sock.on('error', () => undefined);
      const reader = new MessageReader({ expectHandshake: true });
      sock.on('data', (chunk: Buffer) => {
        reader.push(chunk);
        for (const m of reader) {
          if (m.type !== 'handshake') continue;
          sock.write(encodeHandshake({ infoHash: f.metainfo.infoHash, peerId: Buffer.from('-EV0001-badbadbadbad', 'latin1'), reserved: { fast: true } }));
          sock.write(Buffer.concat([encodeMessage({ type: 'have-none' }), encodeMessage({ type: 'request', index: f.metainfo.pieceCount, begin: 0, length: 16 * KiB })]));
        }
      });
    });
    await new Promise<void>((resolve) => bad.listen(0, '127.0.0.2', resolve));
    const badPort = (bad.address() as { port: number }).port;
    try {
      const get = peerkit(['get', f.torrentPath, '--out', join(f.dir, 'out'), '--port', '0', '--host', '127.0.0.1', '--peer', `127.0.0.2:${badPort}`, '--peer', `127.0.0.1:${s.client.port}`]);
      assert.equal(await get.exit(45_000), 0, get.proc.tail());
      const warnings = get.stderr.filter((l) => l.startsWith('warning: '));
      assert.deepEqual(warnings, [`warning: dropped peer 127.0.0.2:${badPort}: protocol violation: request out of range (piece ${f.metainfo.pieceCount}, 0+16384)`]);
      // Ordinary disconnects (the seeder at the end) are not reported without --verbose.
      assert.ok(get.stderr.every((l) => !/disconnected from/.test(l)), get.stderr.join('\n'));
    } finally {
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((resolve) => bad.close(() => resolve()));
      await s.client.close();
    }
  });
});

/** A stream that collects what is written, claiming to be a terminal or not. */
class Capture extends PassThrough {
  text = '';
  readonly columns = 120;
  constructor(readonly isTTY: boolean) {
    super();
    this.on('data', (d: Buffer) => (this.text += d.toString('utf8')));
  }
}

test('progress goes by stdout: a bar when stdout is a terminal, plain lines when it is not (whatever stderr is); the ETA is --:-- while the metadata is unknown', { timeout: 30_000 }, async () => {
  await withFixture(64 * KiB, async (f) => {
    const closed = await freePort();
    const magnet = buildMagnet({ infoHash: f.metainfo.infoHash, name: 'data.bin', peers: [{ host: '127.0.0.1', port: closed }] });
    const args = (out: string): string[] => ['get', magnet, '--out', join(f.dir, out), '--port', '0', '--host', '127.0.0.1', '--timeout', '2.5'];

    const tty = { stdout: new Capture(true), stderr: new Capture(false) };
    assert.equal(await run(args('a'), tty), 1);
    assert.match(tty.stdout.text, /[█░]/, 'a bar on the terminal');
    assert.match(tty.stdout.text, /metadata 0%.*ETA --:--/);
    assert.doesNotMatch(tty.stdout.text, / eta \S+\n/, 'no plain lines');
    assert.doesNotMatch(tty.stderr.text, /[█░]|%/, 'nothing of the progress on stderr');
    assert.match(tty.stderr.text, /peerkit: not complete after 2\.5 s \(the metadata not fetched yet, 0 peer\(s\) connected\)/);

    const piped = { stdout: new Capture(false), stderr: new Capture(true) };
    assert.equal(await run(args('b'), piped), 1);
    const lines = piped.stdout.text.split('\n').filter((l) => l !== '');
    assert.ok(lines.length >= 2, piped.stdout.text);
    for (const l of lines) assert.match(l, /^0\.0% metadata 0% down 0 B\/s up 0 B\/s peers 0 eta --:--$/);
    assert.doesNotMatch(piped.stdout.text + piped.stderr.text, /[█░]/, 'no bar anywhere');
  });
});

test('seed on incomplete data says so, then downloads the rest while seeding; SIGTERM exits 0', { timeout: 30_000 }, async () => {
  await withFixture(256 * KiB, async (f) => {
    const empty = join(f.dir, 'empty');
    await mkdir(empty);
    const seed = peerkit(['seed', f.torrentPath, '--dir', empty, '--port', '0', '--host', '127.0.0.1']);
    try {
      await waitUntil('the incomplete-data message', 20_000, () => seed.stderr.some((l) => /incomplete/.test(l)));
      const line = seed.stderr.find((l) => /incomplete/.test(l))!;
      assert.equal(line, `data.bin: the data in ${empty} is incomplete (0 of ${f.metainfo.pieceCount} pieces verified); downloading the rest, seeding meanwhile`);
      await seed.proc.stop('SIGTERM', 10_000);
      assert.equal((await seed.proc.exited).code, 0, seed.proc.tail());
    } finally {
      await seed.proc.stop('SIGKILL');
    }
  });
});
