/**
 * `peerkit tracker` as a user runs it: a child process that prints the URLs
 * it serves, answers announces, prints passkeys of the users it was asked
 * to add, reloads its whitelist on SIGHUP and stops cleanly on SIGTERM or
 * SIGINT (exit code 0, store unlocked).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { createInterface, type Interface } from 'node:readline';
import { buildAnnounceUrl, decodeAnnounceResponse } from '../src/codec/tracker-http.js';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'peerkit.js');

function get(url: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
    });
    req.on('error', reject);
    req.end();
  });
}

class Running {
  readonly child: ChildProcess;
  private readonly lines: string[] = [];
  private readonly rl: Interface;
  private wake: (() => void) | undefined;
  readonly exit: Promise<number | null>;
  stderr = '';

  constructor(args: string[]) {
    this.child = spawn(process.execPath, [bin, 'tracker', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.rl = createInterface({ input: this.child.stdout! });
    this.rl.on('line', (l) => {
      this.lines.push(l);
      this.wake?.();
    });
    this.child.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString()));
    this.exit = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  /** Waits for a stdout line matching `re` (10 s at most). */
  async line(re: RegExp): Promise<RegExpExecArray> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      for (const l of this.lines) {
        const m = re.exec(l);
        if (m) return m;
      }
      if (Date.now() > deadline) throw new Error(`no line matching ${re}; got:\n${this.lines.join('\n')}\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 100);
      });
    }
  }
}

test('peerkit tracker: serves the printed URLs, adds users, reloads the whitelist on SIGHUP, stops on SIGTERM and SIGINT', { timeout: 25_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'peerkit-tcli-'));
  const ih = Buffer.alloc(20, 0x42);
  try {
    const wl = join(dir, 'wl.txt');
    writeFileSync(wl, `# allowed\n${'11'.repeat(20)}\n`);
    const data = join(dir, 'data');
    const t = new Running(['--http', '0', '--udp', '0', '--private', '--data', data, '--add-user', 'alice', '--whitelist', wl]);
    let firstPasskey = '';
    try {
      const http = (await t.line(/^ {2}(http:\/\/127\.0\.0\.1:\d+\/announce)$/))[1]!;
      await t.line(/^ {2}udp:\/\/127\.0\.0\.1:\d+\/announce$/);
      await t.line(/mode: private, 1 users, .*whitelist of 1 torrents/);
      const passkey = (await t.line(/user alice: passkey ([0-9a-f]{32})/))[1]!;
      firstPasskey = passkey;
      const url = (params: { infoHash: Buffer }): string => buildAnnounceUrl(http.replace(/announce$/, `announce/${passkey}`), { ...params, peerId: Buffer.alloc(20, 1), port: 1234, uploaded: 0, downloaded: 0, left: 0 });
      let d = decodeAnnounceResponse(await get(url({ infoHash: ih })));
      assert.match(d.failureReason ?? '', /not authorized/);
      writeFileSync(wl, `${ih.toString('hex')}\n`);
      t.child.kill('SIGHUP');
      await t.line(/whitelist reloaded, 1 torrents/);
      d = decodeAnnounceResponse(await get(url({ infoHash: ih })));
      assert.equal(d.failureReason, undefined);
      t.child.kill('SIGTERM');
      assert.equal(await t.exit, 0);
      await t.line(/stopped \(SIGTERM\)/);
      assert.ok(!existsSync(join(data, 'LOCK')), 'store unlocked');
    } finally {
      t.child.kill('SIGKILL');
    }
    // Again on the same data: the same passkey (alice exists, so no new one), SIGINT stops it too.
    const again = new Running(['--udp', '0', '--private', '--data', data, '--add-user', 'alice', '--add-user', 'bob']);
    try {
      const passkey = (await again.line(/user alice: passkey ([0-9a-f]{32})/))[1]!;
      assert.equal(passkey, firstPasskey, 'the stored passkey, not a new one');
      const bobKey = (await again.line(/user bob: passkey ([0-9a-f]{32})/))[1]!;
      assert.notEqual(bobKey, passkey);
      await again.line(/mode: private, 2 users/);
      // UDP only: the passkey URL printed is a udp:// one.
      await again.line(new RegExp(`^ {4}udp://127\\.0\\.0\\.1:\\d+/${passkey}/announce$`));
      await again.line(/^ {2}udp:/);
      assert.ok(!(await again.line(/mode/)).input.includes('whitelist'));
      again.child.kill('SIGINT');
      assert.equal(await again.exit, 0);
    } finally {
      again.child.kill('SIGKILL');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A port free for both TCP and UDP on `host` right now. */
async function freePort(host: string): Promise<number> {
  const { createServer } = await import('node:net');
  const { createSocket } = await import('node:dgram');
  for (let i = 0; i < 20; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, host, () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const u = createSocket(host.includes(':') ? 'udp6' : 'udp4');
      u.once('error', () => resolve(false));
      u.bind(port, host, () => u.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
  throw new Error('no free port');
}

function udpConnect(host: string, port: number): Promise<boolean> {
  return import('node:dgram').then(
    ({ createSocket }) =>
      new Promise<boolean>((resolve) => {
        const u = createSocket(host.includes(':') ? 'udp6' : 'udp4');
        const timer = setTimeout(() => {
          u.close();
          resolve(false);
        }, 3000);
        u.on('message', (m: Buffer) => {
          clearTimeout(timer);
          u.close();
          resolve(m.length === 16 && m.readUInt32BE(0) === 0 && m.readUInt32BE(4) === 0x1234);
        });
        const req = Buffer.alloc(16);
        req.writeBigUInt64BE(0x41727101980n, 0);
        req.writeUInt32BE(0, 8);
        req.writeUInt32BE(0x1234, 12);
        u.send(req, port, host);
      }),
  );
}

test('peerkit tracker: --host (repeated, IPv4 and IPv6) and fixed ports bind exactly there; cap flags take effect', { timeout: 25_000 }, async () => {
  const port = await freePort('127.0.0.2');
  const t = new Running(['--host', '127.0.0.2', '--host', '::1', '--http', String(port), '--udp', String(port), '--max-numwant', '2', '--max-peers-per-torrent', '3', '--max-connections-per-address', '5', '--rate-limit', '0']);
  try {
    await t.line(new RegExp(`^ {2}http://127\\.0\\.0\\.2:${port}/announce$`));
    await t.line(new RegExp(`^ {2}http://\\[::1\\]:${port}/announce$`));
    await t.line(new RegExp(`^ {2}udp://127\\.0\\.0\\.2:${port}/announce$`));
    await t.line(new RegExp(`^ {2}udp://\\[::1\\]:${port}/announce$`));
    const ih = Buffer.alloc(20, 0x33);
    const announce = async (base: string, n: number): Promise<ReturnType<typeof decodeAnnounceResponse>> =>
      decodeAnnounceResponse(await get(buildAnnounceUrl(base, { infoHash: ih, peerId: Buffer.alloc(20, n), port: 1000 + n, uploaded: 0, downloaded: 0, left: 1, numWant: 50 })));
    // Both addresses serve one swarm; --max-peers-per-torrent 3 and --max-numwant 2 hold.
    for (let n = 1; n <= 3; n++) assert.equal((await announce(n % 2 === 0 ? `http://[::1]:${port}/announce` : `http://127.0.0.2:${port}/announce`, n)).failureReason, undefined);
    const fourth = await announce(`http://127.0.0.2:${port}/announce`, 4);
    assert.equal(fourth.failureReason, undefined);
    assert.ok(fourth.failureReason === undefined && /swarm is full/.test(fourth.warningMessage ?? ''), `the 4th peer is answered but not stored: ${JSON.stringify(fourth)}`);
    assert.ok(fourth.failureReason === undefined && fourth.peers.length === 2, 'numwant capped at 2');
    assert.ok(await udpConnect('127.0.0.2', port), 'UDP answers on 127.0.0.2');
    assert.ok(await udpConnect('::1', port), 'UDP answers on ::1');
    // Not bound anywhere else: 127.0.0.1 on that port refuses.
    await assert.rejects(get(`http://127.0.0.1:${port}/stats`), /ECONNREFUSED/);
  } finally {
    t.child.kill('SIGTERM');
    assert.equal(await t.exit, 0);
  }
});

test('peerkit tracker: with neither --http nor --udp both are on port 6969', { timeout: 25_000 }, async () => {
  // A loopback address of its own, so that nothing else on the machine holds 6969 there.
  const host = `127.${69 + (process.pid % 100)}.${(process.pid >> 8) % 250}.9`;
  const t = new Running(['--host', host]);
  try {
    const esc = host.replace(/\./g, '\\.');
    await t.line(new RegExp(`^ {2}http://${esc}:6969/announce$`));
    await t.line(new RegExp(`^ {2}udp://${esc}:6969/announce$`));
    const stats = JSON.parse((await get(`http://${host}:6969/stats`)).toString()) as { torrents: number };
    assert.equal(stats.torrents, 0);
    assert.ok(await udpConnect(host, 6969));
  } finally {
    t.child.kill('SIGINT');
    assert.equal(await t.exit, 0);
  }
});

test('peerkit tracker: usage errors are one line and exit 1', () => {
  const run = (...args: string[]): { code: number | null; stderr: string } => {
    const r = spawnSync(process.execPath, [bin, 'tracker', ...args], { encoding: 'utf8', timeout: 10_000 });
    return { code: r.status, stderr: r.stderr };
  };
  let r = run('--private');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^peerkit: --private needs --data/);
  r = run('--data', '/nonexistent-peerkit-dir', '--http', '0');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^peerkit: --data only makes sense with --private/);
  r = run('--http', 'x');
  assert.match(r.stderr, /not a port/);
  const dir = mkdtempSync(join(tmpdir(), 'peerkit-tcli-'));
  try {
    writeFileSync(join(dir, 'wl'), 'nothex\n');
    r = run('--http', '0', '--whitelist', join(dir, 'wl'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /wl:1: not a 40-digit hex info hash/);
    r = run('--host', 'localhost', '--http', '0');
    assert.match(r.stderr, /not an IP address/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
  assert.match(help.stdout, /\btracker\b/);
});
