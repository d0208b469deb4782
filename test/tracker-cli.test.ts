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
    try {
      const http = (await t.line(/^ {2}(http:\/\/127\.0\.0\.1:\d+\/announce)$/))[1]!;
      await t.line(/^ {2}udp:\/\/127\.0\.0\.1:\d+\/announce$/);
      await t.line(/mode: private, 1 users, .*whitelist of 1 torrents/);
      const passkey = (await t.line(/user alice: passkey ([0-9a-f]{32})/))[1]!;
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
    // Again on the same data: the same passkey, SIGINT stops it too.
    const again = new Running(['--udp', '0', '--private', '--data', data, '--add-user', 'alice']);
    try {
      const passkey = (await again.line(/user alice: passkey ([0-9a-f]{32})/))[1]!;
      assert.match(passkey, /^[0-9a-f]{32}$/);
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

test('peerkit tracker: usage errors are one line and exit 1', () => {
  const run = (...args: string[]): { code: number | null; stderr: string } => {
    const r = spawnSync(process.execPath, [bin, 'tracker', ...args], { encoding: 'utf8', timeout: 10_000 });
    return { code: r.status, stderr: r.stderr };
  };
  let r = run('--private');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^peerkit: --private needs --data/);
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
