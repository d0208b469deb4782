/**
 * The private tracker's store: journal round trips, torn tails, every crash
 * point of a compaction, the directory lock, and a real tracker process
 * killed with SIGKILL (between announces and in the middle of a burst) and
 * restarted, whose passkeys and accounting must survive exactly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { buildAnnounceUrl, decodeAnnounceResponse } from '../src/codec/tracker-http.js';
import { decodeResponse, encodeRequest } from '../src/codec/tracker-udp.js';
import { UserStore } from '../src/tracker/store.js';

const root = join(import.meta.dirname, '..', '..');

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'peerkit-store-'));
}

test('round trip: users and totals survive close and reopen; the journal is compacted on close', () => {
  const dir = tempDir();
  try {
    const s = UserStore.open(dir);
    s.addUser('alice', 'a1');
    s.addUser('bob', 'b1');
    s.account('a1', 10, 20, 0);
    s.account('a1', 5, 0, 1);
    s.account('nobody', 1, 1, 1); // ignored
    s.removeUser('b1');
    assert.throws(() => s.addUser('again', 'a1'), /already registered/);
    s.close();
    assert.deepEqual(readdirSync(dir).sort(), ['journal.1', 'users.snapshot']);
    const t = UserStore.open(dir);
    assert.deepEqual(t.list(), [{ name: 'alice', passkey: 'a1', uploaded: 15, downloaded: 20, completed: 1 }]);
    assert.equal(t.recovery.replayed, 0);
    t.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a torn last line is cut off; a damaged line in the middle is skipped', () => {
  const dir = tempDir();
  try {
    const s = UserStore.open(dir);
    s.addUser('alice', 'a1');
    s.account('a1', 1, 0, 0);
    s.account('a1', 2, 0, 0);
    s.abandon(); // a crash: the LOCK stays behind with our pid, which the next open takes over

    const journal = join(dir, 'journal.0');
    const lines = readFileSync(journal, 'utf8').split('\n');
    lines[1] = lines[1]!.replace('"u":1', '"u":9'); // CRC no longer matches
    writeFileSync(journal, lines.join('\n'));
    appendFileSync(journal, '12345678 {"t":"acct","k":"a1","u":100'); // torn
    const t = UserStore.open(dir);
    assert.deepEqual(t.recovery, { generation: 0, replayed: 2, truncatedBytes: 37, skipped: 1 });
    assert.equal(t.get('a1')!.uploaded, 2);
    t.account('a1', 3, 0, 0);
    t.close();
    const u = UserStore.open(dir);
    assert.equal(u.get('a1')!.uploaded, 5);
    u.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('compaction is crash-safe at every step: nothing lost, nothing counted twice', () => {
  const dir = tempDir();
  try {
    const s = UserStore.open(dir, { compactAfterRecords: 1_000_000 });
    s.addUser('alice', 'a1');
    s.account('a1', 7, 0, 0);
    s.sync();
    s.abandon();
    const journal0 = readFileSync(join(dir, 'journal.0'));
    // Step 1 done (empty journal.1 exists), snapshot not yet renamed: the old state rules.
    writeFileSync(join(dir, 'journal.1'), '');
    writeFileSync(join(dir, 'users.snapshot.tmp'), '{"version":1,"gen');
    let t = UserStore.open(dir);
    assert.equal(t.get('a1')!.uploaded, 7);
    assert.ok(!existsSync(join(dir, 'journal.1')) && !existsSync(join(dir, 'users.snapshot.tmp')), 'leftovers removed');
    t.abandon();
    // Snapshot renamed (generation 1, with the totals), old journal not yet removed: it must not be replayed.
    writeFileSync(join(dir, 'users.snapshot'), JSON.stringify({ version: 1, generation: 1, users: [{ name: 'alice', passkey: 'a1', uploaded: 7, downloaded: 0, completed: 0 }] }));
    writeFileSync(join(dir, 'journal.0'), journal0);
    writeFileSync(join(dir, 'journal.1'), '');
    t = UserStore.open(dir);
    assert.equal(t.get('a1')!.uploaded, 7);
    assert.ok(!existsSync(join(dir, 'journal.0')));
    t.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('compaction by size keeps totals; the lock refuses a second owner and takes over a dead one', () => {
  const dir = tempDir();
  try {
    const s = UserStore.open(dir, { compactAfterRecords: 10 });
    s.addUser('alice', 'a1');
    for (let i = 0; i < 25; i++) s.account('a1', 1, 2, 0);
    assert.throws(() => UserStore.open(dir), /already open in this process/);
    s.close();
    writeFileSync(join(dir, 'LOCK'), `${process.ppid}\n`); // a live process that is not us
    assert.throws(() => UserStore.open(dir), /in use by process/);
    writeFileSync(join(dir, 'LOCK'), '999999999\n'); // no such process
    const t = UserStore.open(dir);
    assert.deepEqual(t.get('a1'), { name: 'alice', passkey: 'a1', uploaded: 25, downloaded: 50, completed: 0 });
    assert.ok(Number(/journal\.(\d+)/.exec(readdirSync(dir).join(' '))![1]) >= 2, 'compacted at least twice');
    t.close();
    writeFileSync(join(dir, 'users.snapshot'), '{not json');
    assert.throws(() => UserStore.open(dir), /damaged/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------- SIGKILL

const CHILD = `
import { startTracker } from ${JSON.stringify(join(root, 'dist/src/tracker/index.js'))};
const t = await startTracker({ private: true, dataDir: process.argv[2], users: ['alice', 'bob'], rateLimit: false });
process.stdout.write(JSON.stringify({ http: t.httpUrl, udpPort: t.udpPort, users: t.users() }) + '\\n');
`;

interface ChildInfo {
  child: ChildProcess;
  http: string;
  udpPort: number;
  users: { name: string; passkey: string; uploaded: number; downloaded: number }[];
}

async function startChild(script: string, dir: string): Promise<ChildInfo> {
  const child = spawn(process.execPath, [script, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error('tracker child did not start')), 10_000);
    rl.once('line', (l) => {
      clearTimeout(timer);
      rl.close();
      resolve(l);
    });
    child.once('exit', (code) => reject(new Error(`tracker child exited with ${code}`)));
  });
  return { child, ...(JSON.parse(line) as Omit<ChildInfo, 'child'>) };
}

async function kill9(child: ChildProcess): Promise<void> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}

function get(url: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

function peerId(round: number, n: number): Buffer {
  const b = Buffer.alloc(20, 0x41);
  b.writeUInt32BE(round, 8);
  b.writeUInt32BE(n, 16);
  return b;
}

const IH = Buffer.alloc(20, 0x77);

async function httpAnnounce(url: string, round: number, n: number, uploaded: number, event?: 'started'): Promise<void> {
  const body = await get(buildAnnounceUrl(url, { infoHash: IH, peerId: peerId(round, n), port: 9000 + n, uploaded, downloaded: uploaded >> 1, left: 10, event }));
  const d = decodeAnnounceResponse(body);
  assert.ok(d.failureReason === undefined, d.failureReason);
}

/** One UDP connect + announce with the passkey in BEP 41 URLData; resolves when the reply came. */
async function udpAnnounce(port: number, passkey: string, round: number, uploaded: number): Promise<void> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const next = (): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no UDP reply')), 3000);
      s.once('message', (m: Buffer) => {
        clearTimeout(timer);
        resolve(m);
      });
    });
  try {
    s.send(encodeRequest({ action: 'connect', transactionId: 1 }), port, '127.0.0.1');
    const c = decodeResponse(await next(), 4);
    assert.equal(c.action, 'connect');
    s.send(
      encodeRequest({ action: 'announce', connectionId: (c as { connectionId: bigint }).connectionId, transactionId: 2, infoHash: IH, peerId: peerId(round, 999), downloaded: 0, left: 5, uploaded, port: 9999, event: 'started', urlData: Buffer.from(`/announce/${passkey}`) }),
      port,
      '127.0.0.1',
    );
    assert.equal(decodeResponse(await next(), 4).action, 'announce');
  } finally {
    s.close();
  }
}

test('SIGKILL: a tracker killed between announces and in the middle of a burst keeps every acknowledged byte and every passkey', { timeout: 30_000 }, async () => {
  const dir = tempDir();
  const script = join(dir, 'child.mjs');
  writeFileSync(script, CHILD);
  const data = join(dir, 'data');
  let children: ChildProcess[] = [];
  try {
    let expected = { alice: 0, bob: 0 };
    let passkeys: Record<string, string> | undefined;
    for (let round = 0; round < 3; round++) {
      const c = await startChild(script, data);
      children.push(c.child);
      const byName = Object.fromEntries(c.users.map((u) => [u.name, u]));
      const keys = Object.fromEntries(c.users.map((u) => [u.name, u.passkey]));
      if (passkeys === undefined) passkeys = keys;
      assert.deepEqual(keys, passkeys, 'passkeys survive');
      assert.equal(byName.alice!.uploaded, expected.alice, `round ${round}: alice's total`);
      assert.equal(byName.bob!.uploaded, expected.bob, `round ${round}: bob's total`);
      const alice = c.http.replace(/\/announce$/, `/announce/${keys.alice!}`);
      // Sequential announces, each acknowledged before the next.
      await httpAnnounce(alice, round, 1, 0, 'started');
      let up = 0;
      for (let i = 0; i < 5; i++) {
        up += 1000 * (i + 1);
        await httpAnnounce(alice, round, 1, up);
      }
      expected = { ...expected, alice: expected.alice + up };
      await udpAnnounce(c.udpPort, keys.bob!, round, 777);
      expected.bob += 777;
      await kill9(c.child);
      children = [];
    }
    // Kill in the middle of a burst: what was acknowledged is there, nothing beyond what was sent.
    const c = await startChild(script, data);
    children.push(c.child);
    const alice = c.http.replace(/\/announce$/, `/announce/${passkeys!.alice!}`);
    let acknowledged = 0;
    let killed = false;
    const burst = Array.from({ length: 40 }, (_, n) =>
      httpAnnounce(alice, 100, n, 10 + n, 'started').then(
        async () => {
          acknowledged += 10 + n;
          if (!killed && acknowledged > 100) {
            killed = true;
            await kill9(c.child);
          }
        },
        () => {},
      ),
    );
    await Promise.all(burst);
    if (!killed) await kill9(c.child);
    children = [];
    const sent = Array.from({ length: 40 }, (_, n) => 10 + n).reduce((a, b) => a + b, 0);
    const last = await startChild(script, data);
    children.push(last.child);
    const total = last.users.find((u) => u.name === 'alice')!.uploaded - expected.alice;
    assert.ok(total >= acknowledged, `kept ${total} >= acknowledged ${acknowledged}`);
    assert.ok(total <= sent, `kept ${total} <= sent ${sent}`);
    assert.equal(last.users.find((u) => u.name === 'bob')!.uploaded, expected.bob);
  } finally {
    for (const ch of children) await kill9(ch).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
});

test('peer reports: kept with the credit in one journal line, through replay and snapshots, bounded (least recently updated go first), forgotten on stopped', () => {
  const dir = tempDir();
  const peer = (n: number): string => Buffer.concat([IH, peerId(0, n)]).toString('latin1');
  try {
    const s = UserStore.open(dir, { maxPeerReports: 3 });
    s.addUser('alice', 'a1');
    s.account('a1', 0, 0, 0, peer(1), [0, 0]);
    s.account('a1', 100, 10, 0, peer(1), [100, 10]);
    s.account('a1', 5, 0, 0, peer(2), [5, 0]);
    s.account('a1', 0, 0, 0, peer(3), [0, 0]);
    s.account('a1', 0, 0, 0, peer(9), null); // forgetting an unknown peer writes nothing
    assert.deepEqual(s.peerReport(peer(1)), { passkey: 'a1', uploaded: 100, downloaded: 10 });
    const lines = readFileSync(join(dir, 'journal.0'), 'utf8').trim().split('\n');
    assert.equal(lines.length, 5, 'the user and four accounting lines');
    assert.match(lines[2]!, /"u":100,"d":10,"c":0,"p":"[0-9a-f]{80}","r":\[100,10\]/);
    s.account('a1', 1, 0, 0, peer(1), [101, 10]); // peer 1 is now the most recently updated
    s.account('a1', 0, 0, 0, peer(4), [0, 0]); // over the bound: peer 2 goes
    assert.equal(s.peerReports, 3);
    assert.equal(s.peerReport(peer(2)), undefined);
    s.abandon();
    // Replay rebuilds the same table.
    const t = UserStore.open(dir, { maxPeerReports: 3 });
    assert.deepEqual([1, 2, 3, 4].map((n) => t.peerReport(peer(n))?.uploaded), [101, undefined, 0, 0]);
    assert.equal(t.get('a1')!.uploaded, 106);
    t.account('a1', 0, 0, 0, peer(3), null);
    assert.equal(t.peerReport(peer(3)), undefined, 'stopped forgets');
    t.close(); // compacts: the table goes into the snapshot
    const snap = JSON.parse(readFileSync(join(dir, 'users.snapshot'), 'utf8')) as { peers: unknown[] };
    assert.equal(snap.peers.length, 2);
    const u = UserStore.open(dir);
    assert.deepEqual(u.peerReport(peer(1)), { passkey: 'a1', uploaded: 101, downloaded: 10 });
    assert.deepEqual(u.peerReport(peer(4)), { passkey: 'a1', uploaded: 0, downloaded: 0 });
    assert.equal(u.peerReports, 2);
    u.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** One UDP connect + announce with the same peer id every time; resolves with whether the reply came. */
async function udpAnnounceAs(port: number, passkey: string, n: number, uploaded: number, downloaded: number, event?: 'started', waitForReply = true): Promise<void> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const next = (): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no UDP reply')), 3000);
      s.once('message', (m: Buffer) => {
        clearTimeout(timer);
        resolve(m);
      });
    });
  try {
    s.send(encodeRequest({ action: 'connect', transactionId: 1 }), port, '127.0.0.1');
    const c = decodeResponse(await next(), 4);
    assert.equal(c.action, 'connect');
    const req = encodeRequest({ action: 'announce', connectionId: (c as { connectionId: bigint }).connectionId, transactionId: 2, infoHash: IH, peerId: peerId(7, n), downloaded, left: 5, uploaded, port: 9000 + n, event, urlData: Buffer.from(`/announce/${passkey}`) });
    if (!waitForReply) {
      await new Promise<void>((resolve) => s.send(req, port, '127.0.0.1', () => resolve()));
      return;
    }
    s.send(req, port, '127.0.0.1');
    assert.equal(decodeResponse(await next(), 4).action, 'announce');
  } finally {
    s.close();
  }
}

test('SIGKILL and restart: a peer that keeps its peer id and cumulative counters is credited every byte exactly once', { timeout: 40_000 }, async () => {
  const dir = tempDir();
  const script = join(dir, 'child.mjs');
  writeFileSync(script, CHILD);
  const data = join(dir, 'data');
  let children: ChildProcess[] = [];
  const announceAs = async (url: string, n: number, uploaded: number, downloaded: number, event?: 'started' | 'stopped'): Promise<void> => {
    const body = await get(buildAnnounceUrl(url, { infoHash: IH, peerId: peerId(7, n), port: 9000 + n, uploaded, downloaded, left: 10, event }));
    const d = decodeAnnounceResponse(body);
    assert.ok(d.failureReason === undefined, d.failureReason);
  };
  try {
    // alice announces over HTTP, bob over UDP (BEP 41 URLData); both keep one client session throughout.
    let up = 0;
    let down = 0;
    let bobUp = 0;
    for (let round = 0; round < 4; round++) {
      const c = await startChild(script, data);
      children.push(c.child);
      const keys = Object.fromEntries(c.users.map((u) => [u.name, u.passkey]));
      const byName = Object.fromEntries(c.users.map((u) => [u.name, u]));
      // What the peers reported, cumulative, before the kill: every byte exactly once.
      assert.deepEqual([byName.alice!.uploaded, byName.alice!.downloaded, byName.bob!.uploaded], [up, down, bobUp], `round ${round}: totals after the restart`);
      const alice = c.http.replace(/\/announce$/, `/announce/${keys.alice!}`);
      if (round === 0) {
        await announceAs(alice, 1, 0, 0, 'started');
        await udpAnnounceAs(c.udpPort, keys.bob!, 2, 0, 0, 'started');
      }
      // The first announce after a restart comes without `started`, with the counters of the whole session.
      for (let i = 0; i < 3; i++) {
        up += 1000 * (round + 1) + i;
        down += 300 + i;
        await announceAs(alice, 1, up, down);
        await announceAs(alice, 1, up, down); // a retransmission: changes nothing
      }
      bobUp += 4321;
      await udpAnnounceAs(c.udpPort, keys.bob!, 2, bobUp, 0);
      await udpAnnounceAs(c.udpPort, keys.bob!, 2, bobUp, 0); // a retransmission
      if (round === 3) {
        // Killed while an announce is in flight: whether or not the tracker took it, the peer sends
        // the same counters again after the restart, and they must count once.
        bobUp += 99;
        await udpAnnounceAs(c.udpPort, keys.bob!, 2, bobUp, 0, undefined, false);
      }
      await kill9(c.child);
      children = [];
      if (round === 3) {
        const d = await startChild(script, data);
        children.push(d.child);
        await udpAnnounceAs(d.udpPort, keys.bob!, 2, bobUp, 0);
        await kill9(d.child);
        children = [];
      }
    }
    const last = await startChild(script, data);
    children.push(last.child);
    const byName = Object.fromEntries(last.users.map((u) => [u.name, u]));
    assert.deepEqual([byName.alice!.uploaded, byName.alice!.downloaded, byName.bob!.uploaded], [up, down, bobUp]);
    // The first announce after this restart is alice's stopped: its last bytes count too, once.
    const aliceUrl = last.http.replace(/\/announce$/, `/announce/${byName.alice!.passkey}`);
    await announceAs(aliceUrl, 1, up + 77, down, 'stopped');
    await kill9(last.child);
    children = [];
    const final = await startChild(script, data);
    children.push(final.child);
    assert.equal(final.users.find((u) => u.name === 'alice')!.uploaded, up + 77);
  } finally {
    for (const ch of children) await kill9(ch).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
});
