/**
 * Scrape from the client side: Torrent.scrape() and `peerkit scrape` ask the
 * peerkit tracker over HTTP (BEP 48) and UDP (BEP 15), on 127.0.0.1, and
 * report its counts; a refusing or silent tracker is an error of its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import { Client } from '../src/client/client.js';
import { createTorrent } from '../src/files/create-torrent.js';
import { startTracker } from '../src/tracker/index.js';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'peerkit.js');

/** Runs the CLI without blocking this process (the tracker it asks runs here). */
function peerkit(...args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 20_000 }, (error, stdout, stderr) => {
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

test('Torrent.scrape() and `peerkit scrape` get the counts over HTTP and UDP; refusals and silence are reported per tracker', { timeout: 30_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-scrape-'));
  const tracker = await startTracker({ host: '127.0.0.1', interval: 60 });
  const priv = await startTracker({ host: '127.0.0.1', private: true, users: ['u'], udp: false });
  // A UDP port that never answers.
  const silent = createSocket('udp4');
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
  const client = await Client.create({ port: 0, host: '127.0.0.1' });
  try {
    await mkdir(join(dir, 'seed'));
    await writeFile(join(dir, 'seed', 's.bin'), Buffer.alloc(100_000, 7));
    const silentUrl = `udp://127.0.0.1:${silent.address().port}/announce`;
    const badPasskeyUrl = priv.announceUrls('1'.repeat(32)).http!;
    const made = await createTorrent(join(dir, 'seed', 's.bin'), { pieceLength: 32 * 1024, announce: [[tracker.httpUrl!], [tracker.udpUrl!], [badPasskeyUrl], [silentUrl]] });
    await writeFile(join(dir, 's.torrent'), made.torrent);
    const t = await client.add(made.metainfo, { dir: join(dir, 'seed') });
    const deadline = Date.now() + 10_000;
    while (tracker.core.scrape(made.metainfo.infoHash).complete < 1) {
      assert.ok(Date.now() < deadline, 'the seeder announced');
      await new Promise((r) => setTimeout(r, 50));
    }

    const results = await t.scrape(1000);
    const byUrl = new Map(results.map((r) => [r.url, r]));
    assert.deepEqual(byUrl.get(tracker.httpUrl!), { url: tracker.httpUrl!, seeders: 1, leechers: 0, completed: 0 });
    assert.deepEqual(byUrl.get(tracker.udpUrl!), { url: tracker.udpUrl!, seeders: 1, leechers: 0, completed: 0 });
    assert.match(byUrl.get(badPasskeyUrl)!.error ?? '', /passkey/);
    assert.deepEqual(byUrl.get(silentUrl), { url: silentUrl, error: 'no answer' });

    // The CLI: a text line per tracker (the silent one given a short timeout), exit 0 as some answered.
    const r = await peerkit('scrape', join(dir, 's.torrent'), '--timeout', '1');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${tracker.httpUrl!.replace(/[.?]/g, '\\$&')}: 1 seeders, 0 leechers, 0 completed`));
    assert.match(r.stdout, new RegExp(`${tracker.udpUrl!.replace(/[.?]/g, '\\$&')}: 1 seeders, 0 leechers, 0 completed`));
    assert.match(r.stdout, new RegExp(`${silentUrl.replace(/[.?]/g, '\\$&')}: no answer`));
    const json = await peerkit('scrape', join(dir, 's.torrent'), '--timeout', '1', '--json');
    const parsed = JSON.parse(json.stdout) as { infoHash: string; trackers: { url: string; seeders?: number }[] };
    assert.equal(parsed.infoHash, made.metainfo.infoHashHex);
    assert.equal(parsed.trackers.find((x) => x.url === tracker.udpUrl)?.seeders, 1);
    // Only trackers that refuse or stay silent: exit 1 with a message.
    const none = await peerkit('scrape', `magnet:?xt=urn:btih:${made.metainfo.infoHashHex}`, '-t', silentUrl, '--timeout', '1');
    assert.equal(none.status, 1);
    assert.match(none.stderr, /no tracker answered/);
  } finally {
    await client.close();
    await tracker.close();
    await priv.close();
    silent.close();
    await rm(dir, { recursive: true, force: true });
  }
});
