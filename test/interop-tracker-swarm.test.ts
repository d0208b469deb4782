/**
 * Interop: two Transmission 3.00 clients find each other through the
 * peerkit tracker and one downloads a torrent from the other.
 *
 * Transmission refuses peers at 127.0.0.0/8 and ::1 (martian addresses in
 * libtransmission), so this cannot run over plain loopback. The test runs it
 * inside a network namespace of its own (`unshare -rn`: a user and network
 * namespace needing no privileges), whose only interface is its own `lo`,
 * given the address 10.99.0.1. The tracker and both clients bind that address;
 * nothing can leave the namespace, which has no other interface and no route.
 *
 * The torrent lists an HTTP and a UDP announce URL (one tier each);
 * Transmission announces to both. The download takes about 12 s, most of it
 * waiting for the seeder's choker, which unchokes new peers only every 10 s.
 *
 * Needs transmission-cli, transmission-create, unshare (util-linux) and ip
 * (iproute2); it fails, never skips, when one is missing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');

/** Runs inside the namespace; prints one JSON line with what happened. */
const INNER = `
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { startTracker } from ${JSON.stringify(join(root, 'dist/src/tracker/index.js'))};
import { parseMetainfo } from ${JSON.stringify(join(root, 'dist/src/codec/metainfo.js'))};

const dir = process.argv[2];
const must = (cmd, args) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20000 });
  if (r.error || r.status !== 0) throw new Error(cmd + ' ' + args.join(' ') + ': ' + (r.error?.message ?? r.stderr));
  return r.stdout;
};
must('ip', ['link', 'set', 'lo', 'up']);
must('ip', ['addr', 'add', '10.99.0.1/32', 'dev', 'lo']);
const HOST = '10.99.0.1';
const children = [];
const result = { done: false };
const tracker = await startTracker({ host: HOST, rateLimit: false });
try {
  const seedDir = join(dir, 'seed');
  const leechDir = join(dir, 'leech');
  mkdirSync(seedDir, { recursive: true });
  mkdirSync(leechDir, { recursive: true });
  const data = Buffer.alloc(3 * 1024 * 1024);
  for (let i = 0; i < data.length; i += 32) createHash('sha256').update('swarm:' + i).digest().copy(data, i);
  writeFileSync(join(seedDir, 'payload.bin'), data);
  const torrent = join(dir, 'swarm.torrent');
  must('transmission-create', ['-o', torrent, '-s', '256', '-t', tracker.httpUrl, '-t', tracker.udpUrl, join(seedDir, 'payload.bin')]);
  const infoHash = parseMetainfo(readFileSync(torrent)).infoHash;
  const client = (name, port, downloadDir) => {
    const cfg = join(dir, name);
    mkdirSync(cfg, { recursive: true });
    writeFileSync(join(cfg, 'settings.json'), JSON.stringify({
      'dht-enabled': false, 'lpd-enabled': false, 'pex-enabled': false, 'utp-enabled': false, 'port-forwarding-enabled': false,
      'bind-address-ipv4': HOST, 'bind-address-ipv6': '::1', 'rpc-enabled': false, 'peer-port': port, 'peer-port-random-on-start': false,
      'speed-limit-up-enabled': false, 'ratio-limit-enabled': false, 'message-level': 1,
    }));
    const c = spawn('transmission-cli', ['-g', cfg, '-w', downloadDir, '-p', String(port), '-v', torrent], { stdio: 'ignore' });
    children.push(c);
    return c;
  };
  const started = Date.now();
  const wait = async (ms, check) => {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
    return true;
  };
  client('seeder', 51413, seedDir);
  result.seederAnnounced = await wait(8000, () => tracker.core.scrape(infoHash).complete === 1);
  client('leecher', 51414, leechDir);
  const got = join(leechDir, 'payload.bin');
  result.done = await wait(22000, () => existsSync(got) && readFileSync(got).equals(data));
  result.ms = Date.now() - started;
  // The leecher reports completed right after it finishes.
  await wait(3000, () => tracker.core.scrape(infoHash).downloaded === 1);
  result.scrape = tracker.core.scrape(infoHash);
  result.peers = tracker.core.peersOf(infoHash).map((p) => ({ host: p.host, port: p.port, seeder: p.seeder }));
  const s = tracker.stats();
  result.announces = s.announces;
  result.failures = s.failures;
  result.internalErrors = s.internalErrors;
} catch (e) {
  result.error = String(e?.stack ?? e);
} finally {
  for (const c of children) c.kill('SIGKILL');
  await tracker.close();
}
process.stdout.write(JSON.stringify(result) + '\\n');
process.exit(0);
`;

test('two Transmission clients find each other through the tracker (HTTP and UDP) and one downloads from the other', { timeout: 29_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'peerkit-swarm-'));
  try {
    const script = join(dir, 'inner.mjs');
    writeFileSync(script, INNER);
    const child = spawn('unshare', ['-rn', process.execPath, script, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 28_000);
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(new Error(`cannot run unshare (util-linux): ${e.message}`));
      });
      child.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    assert.equal(code, 0, `namespace run failed: ${err}`);
    const r = JSON.parse(out.trim().split('\n').pop()!) as {
      done: boolean;
      error?: string;
      seederAnnounced: boolean;
      ms: number;
      scrape: { complete: number; downloaded: number; incomplete: number };
      peers: { host: string; port: number; seeder: boolean }[];
      announces: { http: number; udp: number };
      internalErrors: number;
    };
    assert.equal(r.error, undefined, r.error);
    assert.ok(r.seederAnnounced, 'the seeder announced');
    assert.ok(r.done, `the leecher got the whole file (${JSON.stringify(r)})`);
    assert.ok(r.announces.http >= 2 && r.announces.udp >= 2, `both clients used both protocols: ${JSON.stringify(r.announces)}`);
    assert.deepEqual(r.scrape, { complete: 2, downloaded: 1, incomplete: 0 });
    assert.deepEqual(r.peers.map((p) => `${p.host}:${p.port}:${p.seeder}`).sort(), ['10.99.0.1:51413:true', '10.99.0.1:51414:true']);
    assert.equal(r.internalErrors, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
