/**
 * Interop: Transmission 3.00 (transmission-cli, installed by .ci/run)
 * announcing to the peerkit tracker on 127.0.0.1, over HTTP and over UDP,
 * public and private. The test fails, never skips, when a program is missing.
 *
 * Transmission is configured through settings.json in its -g folder: no
 * DHT, LPD, PEX, uTP or port forwarding, peer sockets bound to 127.0.0.1 and
 * ::1 only. Observed facts this test pins down:
 *  - it announces to every tier of a torrent, so one process exercises both
 *    protocols; SIGINT makes it send `stopped` (SIGTERM kills it without),
 *    and the tracker drops it;
 *  - it shows a tracker's failure reason ("Tracker gave an error:: ...");
 *  - it sends no BEP 41 URLData over UDP, so a passkey in a udp:// URL never
 *    reaches a tracker: private torrents need an http:// announce URL;
 *  - it will not connect to peers at 127.0.0.0/8 or ::1 (libtransmission
 *    treats them as martian addresses), so two Transmissions cannot swarm
 *    over loopback; interop-tracker-swarm.test.ts does that inside a private
 *    network namespace instead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { parseMetainfo } from '../src/codec/metainfo.js';
import { startTracker, type TrackerHandle } from '../src/tracker/index.js';

const run = promisify(execFile);

test('transmission-cli and transmission-create are installed (run .ci/run, or apt-get install transmission-cli)', async () => {
  for (const program of ['transmission-cli', 'transmission-create']) {
    await run(program, ['--help'], { timeout: 10_000 }).catch((e: NodeJS.ErrnoException) => {
      assert.notEqual(e.code, 'ENOENT', `${program} not found on PATH`);
    });
  }
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function content(bytes: number, seed: string): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 32) createHash('sha256').update(`${seed}:${i}`).digest().copy(out, i);
  return out;
}

/** Makes a torrent of a fresh file with transmission-create; returns its path and info hash. */
async function makeTorrent(dir: string, name: string, trackers: string[], priv: boolean): Promise<{ torrent: string; infoHash: Buffer; dataDir: string }> {
  const dataDir = join(dir, `${name}-data`);
  mkdirSync(dataDir, { recursive: true });
  const file = join(dataDir, `${name}.bin`);
  writeFileSync(file, content(512 * 1024, name));
  const torrent = join(dir, `${name}.torrent`);
  await run('transmission-create', ['-o', torrent, '-s', '64', ...(priv ? ['-p'] : []), ...trackers.flatMap((t) => ['-t', t]), file], { timeout: 30_000 });
  return { torrent, infoHash: parseMetainfo(readFileSync(torrent)).infoHash, dataDir };
}

interface Transmission {
  child: ChildProcess;
  port: number;
  log: string;
  exited: Promise<void>;
}

/** Starts transmission-cli seeding `torrent` from `dataDir` (verified first, so it starts complete). */
async function startTransmission(dir: string, name: string, torrent: string, dataDir: string): Promise<Transmission> {
  const cfg = join(dir, `${name}-cfg`);
  mkdirSync(cfg, { recursive: true });
  const port = await freePort();
  writeFileSync(
    join(cfg, 'settings.json'),
    JSON.stringify({
      'dht-enabled': false,
      'lpd-enabled': false,
      'pex-enabled': false,
      'utp-enabled': false,
      'port-forwarding-enabled': false,
      'bind-address-ipv4': '127.0.0.1',
      'bind-address-ipv6': '::1',
      'rpc-enabled': false,
      'peer-port': port,
      'peer-port-random-on-start': false,
      'speed-limit-up-enabled': false,
      'ratio-limit-enabled': false,
      'message-level': 2,
    }),
  );
  const log = join(dir, `${name}.log`);
  const fd = openSync(log, 'w');
  const child = spawn('transmission-cli', ['-g', cfg, '-w', dataDir, '-p', String(port), '-v', torrent], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', () => {});
  return { child, port, log, exited };
}

/** SIGINT (transmission-cli then closes its session and sends `stopped`; SIGTERM just kills it), SIGKILL after 5 s. */
async function stop(t: Transmission): Promise<void> {
  if (t.child.exitCode !== null || t.child.signalCode !== null) return;
  t.child.kill('SIGINT');
  const timer = setTimeout(() => t.child.kill('SIGKILL'), 5000);
  await t.exited;
  clearTimeout(timer);
}

async function waitFor(what: string, ms: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function withSetup(options: Parameters<typeof startTracker>[0], fn: (dir: string, tracker: TrackerHandle, started: Transmission[]) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'peerkit-txi-'));
  const tracker = await startTracker(options);
  const started: Transmission[] = [];
  try {
    await fn(dir, tracker, started);
  } finally {
    for (const t of started) await stop(t);
    await tracker.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('Transmission announces over HTTP and over UDP, appears in the swarm as a seeder, and leaves with stopped', { timeout: 25_000 }, async () => {
  await withSetup({}, async (dir, tracker, started) => {
    const { torrent, infoHash, dataDir } = await makeTorrent(dir, 'public', [tracker.httpUrl!, tracker.udpUrl!], false);
    const tx = await startTransmission(dir, 'public', torrent, dataDir);
    started.push(tx);
    await waitFor('announces over both protocols', 10_000, () => {
      const s = tracker.stats();
      return s.announces.http >= 1 && s.announces.udp >= 1 && tracker.core.peersOf(infoHash).length === 1;
    });
    const [peer] = tracker.core.peersOf(infoHash);
    assert.equal(peer!.host, '127.0.0.1');
    assert.equal(peer!.port, tx.port);
    assert.equal(peer!.seeder, true);
    assert.match(peer!.peerId.toString('latin1'), /^-TR3000-/);
    assert.deepEqual(tracker.core.scrape(infoHash), { complete: 1, downloaded: 0, incomplete: 0 });
    assert.ok(tracker.stats().udpConnects >= 1);
    // Transmission only sends `stopped` to trackers whose answer it has already processed; give it a moment.
    await new Promise((r) => setTimeout(r, 1500));
    await stop(tx);
    await waitFor('the stopped announce', 5000, () => tracker.core.peersOf(infoHash).length === 0);
    assert.equal(tracker.stats().failures['bad-request'], 0);
  });
});

test('private: a passkey in the HTTP URL is accepted, a wrong one refused with its reason; a udp:// passkey cannot reach the tracker', { timeout: 25_000 }, async () => {
  await withSetup({ private: true, users: ['alice'] }, async (dir, tracker, started) => {
    const passkey = tracker.users()[0]!.passkey;
    const good = await makeTorrent(dir, 'good', [tracker.announceUrls(passkey).http!], true);
    const bad = await makeTorrent(dir, 'bad', [tracker.announceUrls('f'.repeat(32)).http!], true);
    const udp = await makeTorrent(dir, 'udp', [tracker.announceUrls(passkey).udp!], true);
    const txGood = await startTransmission(dir, 'good', good.torrent, good.dataDir);
    const txBad = await startTransmission(dir, 'bad', bad.torrent, bad.dataDir);
    const txUdp = await startTransmission(dir, 'udp', udp.torrent, udp.dataDir);
    started.push(txGood, txBad, txUdp);
    await waitFor('the good announce and two refusals', 10_000, () => tracker.core.peersOf(good.infoHash).length === 1 && tracker.stats().failures['bad-passkey'] >= 2);
    assert.equal(tracker.core.peersOf(bad.infoHash).length, 0);
    assert.equal(tracker.core.peersOf(udp.infoHash).length, 0);
    assert.equal(tracker.core.peersOf(good.infoHash)[0]!.port, txGood.port);
    await waitFor('Transmission to log the reasons', 5000, () => /unregistered passkey/.test(readFileSync(txBad.log, 'latin1')) && /passkey required/.test(readFileSync(txUdp.log, 'latin1')));
    const alice = tracker.users()[0]!;
    assert.deepEqual([alice.name, alice.uploaded, alice.downloaded], ['alice', 0, 0]);
  });
});
