/**
 * The tracker servers over loopback (127.0.0.1 and ::1 only): HTTP and UDP
 * announces that find each other, IPv4 and IPv6 in one swarm, /stats and
 * /metrics, private passkeys, and hostile input on both protocols (garbage,
 * oversized and truncated requests, forged connection ids, floods). After
 * every attack the tracker must still answer a valid request.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { buildAnnounceUrl, buildScrapeUrl, decodeAnnounceResponse, decodeScrapeResponse, type AnnounceSuccess, type HttpAnnounceParams } from '../src/codec/tracker-http.js';
import { decodeResponse, encodeRequest, type UdpAnnounceRequest, type UdpResponse } from '../src/codec/tracker-udp.js';
import { startTracker, UserStore, type TrackerHandle } from '../src/tracker/index.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const IH = Buffer.alloc(20, 0x5a);

function pid(n: number): Buffer {
  const b = Buffer.alloc(20, 0x30);
  b.write('-PK0100-', 0, 'latin1');
  b.writeUInt32BE(n, 16);
  return b;
}

interface HttpResult {
  status: number;
  body: Buffer;
  headers: Record<string, string | string[] | undefined>;
}

function httpGet(url: string, method = 'GET', headers: Record<string, string> = {}, localAddress?: string): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent: false, timeout: 5000, ...(localAddress !== undefined ? { localAddress } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** Sends raw bytes over TCP and returns whatever comes back before the server closes (or 3 s pass). */
function rawTcp(host: string, port: number, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host, port });
    const chunks: Buffer[] = [];
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const timer = setTimeout(done, 3000);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('close', done);
    s.on('error', done);
    s.write(bytes);
  });
}

async function announceHttp(base: string, p: Partial<HttpAnnounceParams> & { n: number }): Promise<AnnounceSuccess> {
  const r = await httpGet(buildAnnounceUrl(base, { infoHash: IH, peerId: pid(p.n), port: 7000 + p.n, uploaded: 0, downloaded: 0, left: 1, ...p }));
  assert.equal(r.status, 200);
  const d = decodeAnnounceResponse(r.body);
  if (d.failureReason !== undefined) assert.fail(`failure: ${d.failureReason}`);
  return d;
}

async function failureHttp(url: string): Promise<string> {
  const r = await httpGet(url);
  assert.equal(r.status, 200);
  const d = decodeAnnounceResponse(r.body);
  assert.ok(d.failureReason !== undefined, `expected a failure for ${url}`);
  return d.failureReason;
}

class UdpClient {
  readonly socket: UdpSocket;
  private readonly queue: Buffer[] = [];
  private waiter: ((b: Buffer | undefined) => void) | undefined;

  private constructor(socket: UdpSocket) {
    this.socket = socket;
    socket.on('message', (m: Buffer) => {
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w(m);
      } else this.queue.push(m);
    });
  }

  static async open(host = '127.0.0.1'): Promise<UdpClient> {
    const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((resolve) => s.bind(0, host, resolve));
    return new UdpClient(s);
  }

  send(host: string, port: number, data: Uint8Array): void {
    this.socket.send(data, port, host);
  }

  /** The next datagram, or undefined after `ms`. */
  next(ms = 300): Promise<Buffer | undefined> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve(undefined);
      }, ms);
      this.waiter = (b) => {
        clearTimeout(timer);
        resolve(b);
      };
    });
  }

  async ask(host: string, port: number, data: Uint8Array, ms = 300): Promise<UdpResponse | undefined> {
    this.send(host, port, data);
    const r = await this.next(ms);
    return r === undefined ? undefined : decodeResponse(r, host.includes(':') ? 6 : 4);
  }

  async connect(host: string, port: number): Promise<bigint> {
    const r = await this.ask(host, port, encodeRequest({ action: 'connect', transactionId: 77 }), 2000);
    assert.ok(r && r.action === 'connect', 'connect answered');
    return r.connectionId;
  }

  close(): void {
    this.socket.close();
  }
}

function udpAnnounce(connectionId: bigint, n: number, extra: Partial<UdpAnnounceRequest> = {}): Buffer {
  return encodeRequest({ action: 'announce', connectionId, transactionId: n, infoHash: IH, peerId: pid(n), downloaded: 0, left: 1, uploaded: 0, port: 7000 + n, event: 'started', ...extra });
}

function portOf(url: string): number {
  return Number(/:(\d+)\//.exec(url)![1]);
}

async function withTracker(options: Parameters<typeof startTracker>[0], fn: (t: TrackerHandle) => Promise<void>): Promise<void> {
  const errors: unknown[] = [];
  const t = await startTracker({ onError: (e) => errors.push(e), ...options });
  try {
    await fn(t);
  } finally {
    await t.close();
  }
  assert.deepEqual(errors, [], 'no internal errors');
}

test('HTTP and UDP peers find each other through one tracker on loopback; scrape, /stats and /metrics', async () => {
  await withTracker({}, async (t) => {
    assert.match(t.httpUrl!, /^http:\/\/127\.0\.0\.1:\d+\/announce$/);
    assert.match(t.udpUrl!, /^udp:\/\/127\.0\.0\.1:\d+\/announce$/);
    assert.ok(t.httpPort! > 0 && t.udpPort! > 0);
    await announceHttp(t.httpUrl!, { n: 1, event: 'started' });
    const u = await UdpClient.open();
    try {
      const cid = await u.connect('127.0.0.1', t.udpPort!);
      const r = await u.ask('127.0.0.1', t.udpPort!, udpAnnounce(cid, 2), 2000);
      assert.ok(r && r.action === 'announce');
      assert.deepEqual(r.peers, [{ host: '127.0.0.1', port: 7001 }]);
      assert.deepEqual([r.leechers, r.seeders], [2, 0]);
      const back = await announceHttp(t.httpUrl!, { n: 1 });
      assert.deepEqual(back.peers.map((p) => p.port), [7002]);
      const s = decodeScrapeResponse((await httpGet(buildScrapeUrl(t.httpUrl!, [IH]))).body);
      assert.ok(s.failureReason === undefined);
      assert.deepEqual(s.files.map((f) => [f.complete, f.incomplete]), [[0, 2]]);
      const sc = await u.ask('127.0.0.1', t.udpPort!, encodeRequest({ action: 'scrape', connectionId: cid, transactionId: 5, infoHashes: [IH] }), 2000);
      assert.deepEqual(sc, { action: 'scrape', transactionId: 5, files: [{ seeders: 0, completed: 0, leechers: 2 }] });
    } finally {
      u.close();
    }
    const base = t.httpUrl!.replace('/announce', '');
    const stats = await httpGet(`${base}/stats`);
    assert.equal(stats.status, 200);
    assert.match(String(stats.headers['content-type']), /json/);
    const js = JSON.parse(stats.body.toString()) as { torrents: number; leechers: number; announces: { http: number; udp: number }; residentMemoryBytes: number };
    assert.deepEqual([js.torrents, js.leechers, js.announces.http, js.announces.udp], [1, 2, 2, 1]);
    assert.ok(js.residentMemoryBytes > 0);
    const m = await httpGet(`${base}/metrics`);
    assert.match(String(m.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const text = m.body.toString();
    const names = new Set<string>();
    for (const line of text.trimEnd().split('\n')) {
      if (line.startsWith('# TYPE ')) {
        const [, , name, type] = line.split(' ');
        assert.match(name!, /^(peerkit_tracker|process)_[a-z0-9_]+$/);
        assert.equal(name!.endsWith('_total'), type === 'counter', `${name}: counters and only counters end in _total`);
        names.add(name!);
      } else if (!line.startsWith('# HELP ')) {
        const m2 = /^([a-z_0-9]+)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?[0-9.e+]+)$/.exec(line);
        assert.ok(m2, `sample line: ${line}`);
        assert.ok(names.has(m2[1]!), `${m2[1]} has a TYPE line first`);
      }
    }
    assert.match(text, /^peerkit_tracker_announces_total\{protocol="udp"\} 1$/m);
    assert.match(text, /^peerkit_tracker_leechers 2$/m);
    for (const n of ['torrents', 'seeders', 'leechers', 'announces_total', 'errors_total']) assert.ok(names.has(`peerkit_tracker_${n}`), n);
    // A rate is left to Prometheus (rate() over the counter); the process's figures have their standard names.
    assert.ok(!names.has('peerkit_tracker_announces_per_second'));
    for (const n of ['process_resident_memory_bytes', 'process_start_time_seconds', 'process_cpu_seconds_total']) assert.ok(names.has(n), n);
  });
});

/** The value of one sample line of a Prometheus text exposition. */
function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

test('/metrics values follow real traffic: announces per second, seeders, leechers, errors by kind', { timeout: 30_000 }, async () => {
  await withTracker({ rateLimit: false }, async (t) => {
    const base = t.httpUrl!.replace('/announce', '');
    // 15 announces (5 peers, 3 each; 2 of them seeders), 3 bad requests, 1 UDP announce.
    for (let round = 0; round < 3; round++) {
      for (let n = 1; n <= 5; n++) await announceHttp(t.httpUrl!, { n, left: n <= 2 ? 0 : 1, event: round === 0 ? 'started' : undefined });
    }
    const ok = buildAnnounceUrl(t.httpUrl!, { infoHash: IH, peerId: pid(9), port: 7009, uploaded: 0, downloaded: 0, left: 1 });
    for (let i = 0; i < 3; i++) await failureHttp(ok.replace(/info_hash=[^&]+/, 'info_hash=%01%02'));
    const u = await UdpClient.open();
    try {
      const cid = await u.connect('127.0.0.1', t.udpPort!);
      assert.equal((await u.ask('127.0.0.1', t.udpPort!, udpAnnounce(cid, 6), 2000))?.action, 'announce');
    } finally {
      u.close();
    }
    // /stats averages the last 10 whole seconds: once the second(s) of this traffic are past,
    // it reads (15 + 1) / 10, and stays there until they leave the window. /metrics carries
    // no ready-made rate (Prometheus computes it from announces_total).
    type Stats = { announcesPerSecond: number };
    let js: Stats;
    const deadline = Date.now() + 8000;
    do {
      js = JSON.parse((await httpGet(`${base}/stats`)).body.toString()) as Stats;
      if (js.announcesPerSecond === 1.6) break;
      await new Promise((r) => setTimeout(r, 100));
    } while (Date.now() < deadline);
    assert.equal(js.announcesPerSecond, 1.6);
    const text = (await httpGet(`${base}/metrics`)).body.toString();
    assert.equal(sample(text, 'peerkit_tracker_announces_per_second'), undefined, 'no ready-made rate in /metrics');
    assert.equal(sample(text, 'peerkit_tracker_seeders'), 2);
    assert.equal(sample(text, 'peerkit_tracker_leechers'), 4);
    assert.equal(sample(text, 'peerkit_tracker_torrents'), 1);
    assert.equal(sample(text, 'peerkit_tracker_errors_total{kind="bad_request"}'), 3);
    assert.equal(sample(text, 'peerkit_tracker_errors_total{kind="bad_passkey"}'), 0);
    assert.equal(sample(text, 'peerkit_tracker_announces_total{protocol="http"}'), 15);
    assert.equal(sample(text, 'peerkit_tracker_announces_total{protocol="udp"}'), 1);
    assert.equal(sample(text, 'peerkit_tracker_udp_connects_total'), 1);
  });
});

test('hostile input against a private tracker with a store: nothing stored is lost or changed, the next announce is still accounted', { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'peerkit-hostile-store-'));
  try {
    const first = await startTracker({ private: true, dataDir: dir, users: ['alice', 'bob'], rateLimit: false });
    const before = first.users();
    const alice = before.find((x) => x.name === 'alice')!;
    const bob = before.find((x) => x.name === 'bob')!;
    const aliceUrl = first.announceUrls(alice.passkey).http!;
    await announceHttp(aliceUrl, { n: 1, event: 'started' });
    await announceHttp(aliceUrl, { n: 1, uploaded: 4000, downloaded: 1000 });
    await first.close();

    await withTracker({ private: true, dataDir: dir, rateLimit: false }, async (t) => {
      const stored = t.users();
      assert.deepEqual(stored.map((x) => [x.name, x.uploaded, x.downloaded]).sort(), [['alice', 4000, 1000], ['bob', 0, 0]]);
      const port = t.httpPort!;
      const http = t.httpUrl!;
      const aUrl = t.announceUrls(alice.passkey).http!;
      const good = (n: number): string => buildAnnounceUrl(aUrl, { infoHash: IH, peerId: pid(n), port: 7000 + n, uploaded: 0, downloaded: 0, left: 1 });
      // HTTP: garbage, huge heads, bad parameters with a good passkey, wrong and malformed passkeys, huge counters.
      assert.match(await rawTcp('127.0.0.1', port, 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400/);
      assert.match(await rawTcp('127.0.0.1', port, `GET /announce/${alice.passkey}?${'x'.repeat(20000)} HTTP/1.1\r\nhost: a\r\n\r\n`), /^HTTP\/1\.1 431/);
      assert.match(await failureHttp(good(2).replace(/info_hash=[^&]+/, 'info_hash=%01')), /info_hash/);
      assert.match(await failureHttp(good(2).replace('uploaded=0', 'uploaded=-5')), /uploaded/);
      assert.match(await failureHttp(good(2).replace('uploaded=0', 'uploaded=99999999999999999999')), /uploaded/);
      assert.match(await failureHttp(good(2).replace(alice.passkey, 'x'.repeat(32))), /unregistered passkey/);
      assert.match(await failureHttp(good(2).replace(alice.passkey, '..%2F..%2Fetc')), /passkey/);
      assert.match(await failureHttp(buildAnnounceUrl(`${http}?passkey=${'z'.repeat(200)}`, { infoHash: IH, peerId: pid(2), port: 7002, uploaded: 0, downloaded: 0, left: 1 })), /passkey/);
      // bob cannot take alice's peer id, although this tracker has not seen it since its restart
      // (the store knows whose it is): neither with a regular announce nor with started.
      for (const event of [undefined, 'started'] as const) {
        assert.match(await failureHttp(buildAnnounceUrl(t.announceUrls(bob.passkey).http!, { infoHash: IH, peerId: pid(1), port: 7001, uploaded: 9e9, downloaded: 0, left: 1, event })), /another user/);
      }
      // UDP: junk, truncated, oversized, forged ids, bad URLData.
      const u = await UdpClient.open();
      try {
        const cid = await u.connect('127.0.0.1', t.udpPort!);
        assert.equal(await u.ask('127.0.0.1', t.udpPort!, Buffer.alloc(10), 100), undefined);
        assert.equal(await u.ask('127.0.0.1', t.udpPort!, Buffer.alloc(5000, 7), 100), undefined);
        assert.equal(await u.ask('127.0.0.1', t.udpPort!, udpAnnounce(cid ^ 1n, 3, { urlData: Buffer.from(`/announce/${alice.passkey}`), uploaded: 1e9 }), 100), undefined);
        const trunc = await u.ask('127.0.0.1', t.udpPort!, udpAnnounce(cid, 3, { urlData: Buffer.from(`/announce/${alice.passkey}`) }).subarray(0, 99), 1000);
        assert.equal(trunc?.action, 'error');
        const wrong = await u.ask('127.0.0.1', t.udpPort!, udpAnnounce(cid, 3, { urlData: Buffer.from('/announce/\u0000\u00ff') }), 1000);
        assert.equal(wrong?.action, 'error');
        const scrape = await u.ask('127.0.0.1', t.udpPort!, encodeRequest({ action: 'scrape', connectionId: cid, transactionId: 4, infoHashes: [IH] }), 1000);
        assert.equal(scrape?.action, 'error');
      } finally {
        u.close();
      }
      // Nothing changed: same users, same passkeys, same totals.
      assert.deepEqual(t.users(), stored);
      // And the tracker still accounts: alice's peer carries on.
      await announceHttp(aUrl, { n: 1, uploaded: 4500, downloaded: 1000 });
      assert.equal(t.users().find((x) => x.name === 'alice')!.uploaded, 4500);
      assert.equal(t.stats().internalErrors, 0);
    });
    // On disk: every user and total, and no damaged line.
    const s = UserStore.open(dir);
    try {
      assert.deepEqual(s.recovery.skipped + s.recovery.truncatedBytes, 0);
      assert.deepEqual(s.list().map((x) => [x.name, x.passkey, x.uploaded, x.downloaded]).sort(), [['alice', alice.passkey, 4500, 1000], ['bob', bob.passkey, 0, 0]]);
    } finally {
      s.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('IPv4 and IPv6 in one swarm: peers6 over HTTP, same-family peers over UDP', async () => {
  await withTracker({ host: ['127.0.0.1', '::1'], rateLimit: false }, async (t) => {
    assert.equal(t.httpUrls.length, 2);
    assert.match(t.httpUrls[1]!, /^http:\/\/\[::1\]:\d+\/announce$/);
    await announceHttp(t.httpUrls[1]!, { n: 1, event: 'started' });
    const d = await announceHttp(t.httpUrls[0]!, { n: 2, event: 'started' });
    assert.deepEqual(d.peers, [{ host: '::1', port: 7001 }]);
    assert.equal(d.externalIp, '127.0.0.1');
    const u6 = await UdpClient.open('::1');
    try {
      const port6 = portOf(t.udpUrls[1]!);
      const cid = await u6.connect('::1', port6);
      const r = await u6.ask('::1', port6, udpAnnounce(cid, 3), 2000);
      assert.ok(r && r.action === 'announce');
      assert.deepEqual(r.peers, [{ host: '::1', port: 7001 }], 'only IPv6 peers over IPv6');
      assert.deepEqual([r.leechers, r.seeders], [3, 0]);
    } finally {
      u6.close();
    }
  });
});

test('hostile HTTP: garbage, huge heads, wrong methods, bad queries, slow and abandoned connections; still serving after', async () => {
  await withTracker({ rateLimit: false }, async (t) => {
    const port = t.httpPort!;
    const base = t.httpUrl!;
    assert.match(await rawTcp('127.0.0.1', port, 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400/);
    assert.match(await rawTcp('127.0.0.1', port, `GET /announce?${'x'.repeat(20000)} HTTP/1.1\r\nhost: a\r\n\r\n`), /^HTTP\/1\.1 431/);
    assert.match(await rawTcp('127.0.0.1', port, `GET /announce HTTP/1.1\r\nhost: a\r\nx: ${'y'.repeat(10000)}\r\n\r\n`), /^HTTP\/1\.1 431/);
    assert.match(await rawTcp('127.0.0.1', port, Buffer.from([0, 1, 2, 255, 254, 13, 10, 13, 10])), /^HTTP\/1\.1 400/);
    assert.equal((await httpGet(base, 'POST')).status, 405);
    assert.equal((await httpGet(base.replace('/announce', '/nothing'))).status, 404);
    const ok = buildAnnounceUrl(base, { infoHash: IH, peerId: pid(1), port: 7001, uploaded: 0, downloaded: 0, left: 1 });
    assert.match(await failureHttp(ok.replace(/info_hash=[^&]+/, 'info_hash=%01%02')), /info_hash/);
    assert.match(await failureHttp(ok.replace(/info_hash=[^&]+/, `info_hash=${'%01'.repeat(21)}`)), /info_hash/);
    assert.match(await failureHttp(ok.replace(/peer_id=[^&]+/, 'peer_id=short')), /peer_id/);
    assert.match(await failureHttp(`${ok}&info_hash=${'%01'.repeat(20)}`), /more than once/);
    assert.match(await failureHttp(ok.replace('port=7001', 'port=0')), /port/);
    assert.match(await failureHttp(ok.replace('uploaded=0', 'uploaded=99999999999999999999')), /uploaded/);
    assert.match(await failureHttp(ok.replace('uploaded=0', 'uploaded=%')), /percent/);
    assert.match(await failureHttp(`${base}?${'a=b&'.repeat(1000)}`), /longer than|more than/);
    for (let n = 10; n < 60; n++) await announceHttp(base, { n, event: 'started' });
    const many = await announceHttp(base, { n: 1, numWant: 1e15 });
    assert.equal(many.peers.length, 50, 'numwant capped at what exists (50 others)');
    // Abandoned and half-sent requests: opened, partly written, destroyed.
    await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        new Promise<void>((resolve) => {
          const s = tcpConnect({ host: '127.0.0.1', port }, () => {
            s.write(i % 2 === 0 ? 'GET /announce?info_hash=' : 'GET / HTTP/1.1\r\nhost');
            setTimeout(() => {
              s.destroy();
              resolve();
            }, 20);
          });
          s.on('error', () => resolve());
        }),
      ),
    );
    // 100 at once is over one address's connection share (64): another address is served at once ...
    const other = decodeAnnounceResponse((await httpGet(buildAnnounceUrl(base, { infoHash: IH, peerId: pid(2), port: 7002, uploaded: 0, downloaded: 0, left: 1 }), 'GET', {}, '127.0.0.2')).body);
    assert.equal(other.failureReason, undefined);
    // ... and the attacker's own address as soon as the tracker has seen its connections close.
    let after: AnnounceSuccess | undefined;
    for (let i = 0; i < 100 && after === undefined; i++) {
      after = await announceHttp(base, { n: 1 }).catch(async () => {
        await new Promise((r) => setTimeout(r, 50));
        return undefined;
      });
    }
    assert.equal(after?.interval, 1800);
    assert.equal(t.stats().internalErrors, 0);
  });
});

test('hostile UDP: junk, truncated and oversized datagrams, forged ids and a flood are dropped; other addresses are still served', async () => {
  await withTracker({ rateLimit: { perSecond: 20, burst: 100 } }, async (t) => {
    const port = t.udpPort!;
    const u = await UdpClient.open('127.0.0.1');
    const other = await UdpClient.open('127.0.0.2');
    try {
      const cid = await u.connect('127.0.0.1', port);
      assert.equal(await u.ask('127.0.0.1', port, Buffer.alloc(10), 100), undefined, 'truncated: dropped');
      assert.equal(await u.ask('127.0.0.1', port, Buffer.alloc(60_000, 1), 100), undefined, 'oversized: dropped');
      assert.equal(await u.ask('127.0.0.1', port, udpAnnounce(cid ^ 0xffffn, 1), 100), undefined, 'forged id: dropped');
      const trunc = await u.ask('127.0.0.1', port, udpAnnounce(cid, 1).subarray(0, 50), 1000);
      assert.equal(trunc?.action, 'error', 'a truncated announce with a valid id gets an error');
      const big = await u.ask('127.0.0.1', port, udpAnnounce(cid, 1, { numWant: 0x7fffffff }), 1000);
      assert.equal(big?.action, 'announce');
      // A flood of 2000 connects from one address: the bucket (100 + 20/s) answers a bounded few.
      // Sent in bursts of 100 so that the kernel's socket buffers do not drop them before the tracker sees them.
      let answered = 0;
      for (let i = 0; i < 2000; i++) {
        u.send('127.0.0.1', port, encodeRequest({ action: 'connect', transactionId: i }));
        if (i % 100 === 99) while ((await u.next(5)) !== undefined) answered++;
      }
      while ((await u.next(200)) !== undefined) answered++;
      assert.ok(answered <= 130, `answered ${answered}`);
      // Another address is unaffected.
      const cid2 = await other.connect('127.0.0.1', port);
      const r = await other.ask('127.0.0.1', port, udpAnnounce(cid2, 2), 1000);
      assert.ok(r && r.action === 'announce');
      assert.deepEqual(r.peers, [{ host: '127.0.0.1', port: 7001 }]);
      const s = t.stats();
      assert.ok(s.dropped.rateLimited >= 1800);
      assert.equal(s.dropped.forgedConnectionId, 1);
      assert.ok(s.dropped.malformed >= 1);
      assert.equal(s.internalErrors, 0);
    } finally {
      u.close();
      other.close();
    }
  });
});

test('private tracker: passkey URLs announce, a wrong passkey is refused; accounting is kept per user', async () => {
  await withTracker({ private: true, users: ['alice'] }, async (t) => {
    const alice = t.users()[0]!;
    assert.equal(alice.name, 'alice');
    assert.match(alice.passkey, /^[0-9a-f]{32}$/);
    const urls = t.announceUrls(alice.passkey);
    await announceHttp(urls.http!, { n: 1, event: 'started' });
    await announceHttp(urls.http!, { n: 1, uploaded: 1000, downloaded: 300 });
    assert.match(await failureHttp(buildAnnounceUrl(t.announceUrls('0'.repeat(32)).http!, { infoHash: IH, peerId: pid(2), port: 7002, uploaded: 0, downloaded: 0, left: 1 })), /unregistered passkey/);
    assert.match(await failureHttp(buildAnnounceUrl(t.httpUrl!, { infoHash: IH, peerId: pid(2), port: 7002, uploaded: 0, downloaded: 0, left: 1 })), /passkey required/);
    const bob = t.addUser('bob');
    const u = await UdpClient.open();
    try {
      const cid = await u.connect('127.0.0.1', t.udpPort!);
      const ok = await u.ask('127.0.0.1', t.udpPort!, udpAnnounce(cid, 3, { urlData: Buffer.from(`/announce/${bob}`) }), 2000);
      assert.equal(ok?.action, 'announce');
      const bad = await u.ask('127.0.0.1', t.udpPort!, udpAnnounce(cid, 4, { urlData: Buffer.from('/announce/nope') }), 2000);
      assert.deepEqual(bad && bad.action === 'error' ? bad.message : bad, 'unregistered passkey');
    } finally {
      u.close();
    }
    assert.deepEqual(
      t.users().map((x) => [x.name, x.uploaded, x.downloaded]).sort(),
      [['alice', 1000, 300], ['bob', 0, 0]],
    );
  });
});

test('close releases the ports; startTracker refuses bad options', async () => {
  const t = await startTracker({ rateLimit: false });
  const { httpPort, udpPort } = t;
  await t.close();
  await t.close(); // idempotent
  const again = await startTracker({ http: httpPort, udp: udpPort });
  assert.equal(again.httpPort, httpPort);
  assert.equal(again.udpPort, udpPort);
  await again.close();
  await assert.rejects(startTracker({ host: 'localhost' }), /not an IP address/);
  await assert.rejects(startTracker({ http: false, udp: false }), /nothing to serve/);
  await assert.rejects(startTracker({ http: 70000 }), /port/);
});
