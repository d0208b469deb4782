/**
 * peerkit's client and the peerkit tracker in private mode over UDP only:
 * the client sends the path and query of its udp:// announce URL as BEP 41
 * URLData, so the passkey in `udp://HOST:PORT/<passkey>/announce` (or
 * `?passkey=`) reaches the tracker. Two users swarm and are accounted; a
 * wrong passkey is refused with the tracker's reason. Loopback only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '../src/client/client.js';
import type { Torrent } from '../src/client/torrent.js';
import { udpUrlData } from '../src/client/tracker-announcer.js';
import { withTrackers } from '../src/codec/metainfo.js';
import { createTorrent } from '../src/files/create-torrent.js';
import { startTracker } from '../src/tracker/index.js';

test('BEP 41 URLData of a udp:// URL: its path and query', () => {
  const text = (u: string): string | undefined => {
    const b = udpUrlData(u);
    return b === undefined ? undefined : Buffer.from(b).toString();
  };
  assert.equal(text('udp://127.0.0.1:6969/announce/abc'), '/announce/abc');
  assert.equal(text('udp://[::1]:6969/announce?passkey=abc&x=1'), '/announce?passkey=abc&x=1');
  assert.equal(text('udp://tracker.example:80?passkey=k'), '?passkey=k');
  assert.equal(text('udp://127.0.0.1:6969/announce#frag'), '/announce');
  assert.equal(text('udp://127.0.0.1:6969'), undefined);
  assert.equal(text('udp://127.0.0.1:6969/'), undefined);
  assert.equal(text(`udp://127.0.0.1:6969/${'x'.repeat(2000)}`), undefined, 'too long for a datagram a tracker accepts');
});

function completes(t: Torrent, ms: number, who: string): Promise<void> {
  if (t.isComplete) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${who}: did not complete in ${ms} ms: ${JSON.stringify(t.stats())}`)), ms);
    t.on('complete', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function waitFor(what: string, ms: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('private over UDP: peerkit clients with passkeys in udp:// URLs swarm and are accounted; a wrong passkey is refused', { timeout: 40_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'peerkit-private-udp-'));
  const tracker = await startTracker({ host: '127.0.0.1', http: false, private: true, users: ['alice', 'bob'], interval: 5 });
  const clients: Client[] = [];
  try {
    const [alice, bob] = tracker.users();
    const seedDir = join(dir, 'seed');
    mkdirSync(seedDir);
    const bytes = Buffer.alloc(700_001);
    for (let i = 0; i < bytes.length; i += 32) createHash('sha256').update(`u:${i}`).digest().copy(bytes, i);
    writeFileSync(join(seedDir, 'p.bin'), bytes);
    const aliceUrl = tracker.announceUrls(alice!.passkey).udp!;
    assert.match(aliceUrl, /^udp:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32}\/announce$/);
    // bob puts his passkey in the query, the other form the tracker reads.
    const bobUrl = `${tracker.udpUrl!}?passkey=${bob!.passkey}`;
    const made = await createTorrent(join(seedDir, 'p.bin'), { pieceLength: 32 * 1024, announce: [[aliceUrl]], private: true });
    const open = async (): Promise<Client> => {
      const c = await Client.create({ port: 0, host: '127.0.0.1' });
      clients.push(c);
      return c;
    };
    const seeder = await (await open()).add(made.metainfo, { dir: seedDir, trackerMinIntervalMs: 1000 });
    assert.equal(seeder.isComplete, true);
    await waitFor("alice's seeder in the swarm", 10_000, () => tracker.core.peersOf(made.metainfo.infoHash).some((p) => p.seeder));
    const out = join(dir, 'bob');
    const leecher = await (await open()).add(withTrackers(made.metainfo, [[bobUrl]]), { dir: out, seed: false, trackerMinIntervalMs: 1000 });
    await completes(leecher, 30_000, 'bob over a private UDP tracker');
    assert.ok(readFileSync(join(out, 'p.bin')).equals(bytes), 'the copy matches');
    await waitFor("bob's download accounted", 15_000, () => tracker.users().find((u) => u.name === 'bob')!.downloaded >= bytes.length);
    // A wrong passkey: refused with the reason, not in the swarm.
    const mallory = await open();
    const warnings: string[] = [];
    const wrong = await mallory.add(withTrackers(made.metainfo, [[tracker.announceUrls('0'.repeat(32)).udp!]]), { dir: join(dir, 'mallory'), seed: false });
    wrong.on('warning', (w) => warnings.push(w));
    await waitFor('the refusal', 15_000, () => warnings.some((w) => /unregistered passkey/.test(w)));
    assert.ok(!tracker.core.peersOf(made.metainfo.infoHash).some((p) => p.port === mallory.port), 'not in the swarm');
    const s = tracker.stats();
    assert.equal(s.announces.http, 0);
    assert.ok(s.announces.udp >= 3);
    assert.ok(s.failures['bad-passkey'] >= 1);
    assert.equal(tracker.core.peersOf(made.metainfo.infoHash).length, 2, 'alice and bob');
  } finally {
    for (const c of clients) await c.close().catch(() => {});
    await tracker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
