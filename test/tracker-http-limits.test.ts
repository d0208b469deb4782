/**
 * The HTTP tracker under floods from one address, over real sockets on
 * loopback, with rate limiting ON: two source addresses, 127.0.0.1 (the
 * attacker) and 127.0.0.2 (everyone else). One address can neither lock the
 * others out by holding half-sent requests (a per-address connection cap,
 * and timeouts Node checks every second) nor by sending requests as fast as
 * it can (the token bucket answers it "rate limit exceeded", BEP 31
 * `retry in`), while the other address keeps getting real answers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { connect as tcpConnect, type Socket } from 'node:net';
import { buildAnnounceUrl, decodeAnnounceResponse, type AnnounceSuccess } from '../src/codec/tracker-http.js';
import { connectionKey } from '../src/tracker/http-server.js';
import { startTracker, type TrackerHandle } from '../src/tracker/index.js';

const IH = Buffer.alloc(20, 0x6b);
const ATTACKER = '127.0.0.1';
const OTHER = '127.0.0.2';

function pid(n: number): Buffer {
  const b = Buffer.alloc(20, 0x30);
  b.write('-PK0100-', 0, 'latin1');
  b.writeUInt32BE(n, 16);
  return b;
}

function announceUrl(t: TrackerHandle, n: number): string {
  return buildAnnounceUrl(t.httpUrl!, { infoHash: IH, peerId: pid(n), port: 7000 + n, uploaded: 0, downloaded: 0, left: 1 });
}

function get(url: string, localAddress: string, agent: Agent | false = false): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { localAddress, agent, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function announceFrom(t: TrackerHandle, localAddress: string, n: number): Promise<AnnounceSuccess> {
  const r = await get(announceUrl(t, n), localAddress);
  assert.equal(r.status, 200);
  const d = decodeAnnounceResponse(r.body);
  if (d.failureReason !== undefined) assert.fail(`failure: ${d.failureReason}`);
  return d;
}

/** A connection from `localAddress` that sends `bytes` and then nothing; resolves once connected. */
function hold(t: TrackerHandle, localAddress: string, bytes: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect({ host: '127.0.0.1', port: t.httpPort!, localAddress }, () => {
      s.write(bytes);
      resolve(s);
    });
    s.on('error', reject);
  });
}

/** Everything the server sends on `s` until it closes the connection (bounded). */
function untilClosed(s: Socket, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`the server kept the connection open for ${ms} ms`));
    }, ms);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
  });
}

/** Sends a whole request on a fresh connection and returns what came back before the close. */
async function rawRequest(t: TrackerHandle, localAddress: string, path: string): Promise<string> {
  const s = await hold(t, localAddress, `GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
  return untilClosed(s, 10_000);
}

test('connection keys: an IPv4 address, or the /64 of an IPv6 one', () => {
  assert.equal(connectionKey('127.0.0.1'), '127.0.0.1');
  assert.equal(connectionKey('2001:db8:1:2:3:4:5:6'), connectionKey('2001:db8:1:2:ffff::1'));
  assert.notEqual(connectionKey('2001:db8:1:2::1'), connectionKey('2001:db8:1:3::1'));
  assert.equal(connectionKey('::1'), '00000000000000000000000000000000'.slice(0, 16) + '/64');
});

test('one address holding half-sent requests takes only its share of connections: the others are still served', { timeout: 30_000 }, async () => {
  const t = await startTracker({ host: '127.0.0.1', udp: false, maxConnectionsPerAddress: 8, maxConnections: 100 });
  const held: Socket[] = [];
  try {
    // The attacker fills its share with requests that never finish.
    for (let i = 0; i < 8; i++) held.push(await hold(t, ATTACKER, 'GET /announce?info_hash='));
    // Its next connection is closed without an answer (connections are accepted in order,
    // so the eight above are counted first) ...
    const refused = await rawRequest(t, ATTACKER, '/stats');
    assert.equal(refused, '', 'no answer on a connection over the cap');
    assert.equal(t.stats().httpConnectionsRefused, 1);
    // ... while another address gets real answers, many times over.
    for (let n = 1; n <= 12; n++) {
      const d = await announceFrom(t, OTHER, n);
      assert.equal((d.complete ?? 0) + (d.incomplete ?? 0), n);
    }
    assert.equal(t.stats().httpConnectionsRefused, 1, 'the other address was never refused');
    assert.equal(held.filter((s) => !s.destroyed).length, 8, 'the held connections are still open');
    // Once the attacker lets go, its share is free again.
    for (const s of held) s.destroy();
    let answer = '';
    for (let i = 0; i < 100 && !answer.startsWith('HTTP/1.1 200'); i++) {
      answer = await rawRequest(t, ATTACKER, '/stats');
      if (!answer) await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(answer, /^HTTP\/1\.1 200/);
    // The metric is exported.
    const metrics = (await get(t.httpUrl!.replace(/\/announce$/, '/metrics'), OTHER)).body.toString();
    assert.match(metrics, /^peerkit_tracker_http_connections_refused_total \d+$/m);
    assert.equal(t.stats().internalErrors, 0);
  } finally {
    for (const s of held) s.destroy();
    await t.close();
  }
});

test('a half-sent request, or a connection that sends nothing, is cut off after headersTimeout (checked every second)', { timeout: 30_000 }, async () => {
  // With Node's default checking interval (30 s) these would stay open far longer than the wait below.
  const t = await startTracker({ host: '127.0.0.1', udp: false, headersTimeoutMs: 1500 });
  try {
    const half = await hold(t, ATTACKER, 'GET /announce?info_hash=%5a');
    const silent = await hold(t, ATTACKER, '');
    const [a, b] = await Promise.all([untilClosed(half, 12_000), untilClosed(silent, 12_000)]);
    assert.match(a, /^HTTP\/1\.1 408 Request Timeout/);
    assert.ok(b === '' || b.startsWith('HTTP/1.1 408'), `a silent connection is closed: ${JSON.stringify(b)}`);
    // The tracker still serves.
    await announceFrom(t, ATTACKER, 1);
  } finally {
    await t.close();
  }
});

test('rate limiting ON: an HTTP request flood from one address is answered "rate limit exceeded", another address still gets peers', { timeout: 60_000 }, async () => {
  const perSecond = 2;
  const burst = 10;
  const t = await startTracker({ host: '127.0.0.1', udp: false, rateLimit: { perSecond, burst } });
  const agent = new Agent({ keepAlive: true, maxSockets: 8, localAddress: ATTACKER });
  try {
    const total = 200;
    let ok = 0;
    let limited = 0;
    const started = Date.now();
    // 200 announces, 8 at a time over keep-alive connections, as fast as the tracker answers.
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < total) {
        const n = ++next;
        const r = await get(announceUrl(t, n), ATTACKER, agent);
        assert.equal(r.status, 200);
        const d = decodeAnnounceResponse(r.body);
        if (d.failureReason === undefined) ok++;
        else {
          assert.match(d.failureReason, /rate limit/);
          assert.equal(d.retryIn, 1, 'BEP 31 retry in');
          limited++;
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const seconds = (Date.now() - started) / 1000;
    assert.equal(ok + limited, total);
    // The bucket lets through the burst, then perSecond: never more.
    assert.ok(ok >= burst, `the burst was admitted: ${ok}`);
    assert.ok(ok <= burst + Math.ceil(seconds * perSecond) + 1, `${ok} admitted in ${seconds} s`);
    assert.equal(t.stats().failures['rate-limited'], limited);
    // The other address is not affected: a normal answer, listing the attacker's admitted peers.
    const d = await announceFrom(t, OTHER, 10_000);
    assert.equal(d.incomplete, ok + 1);
    assert.ok(d.peers.length > 0 && d.peers.every((p) => p.host === ATTACKER));
    // The flood shows in /metrics (fetched from the other address, which has tokens left).
    const metrics = (await get(t.httpUrl!.replace(/\/announce$/, '/metrics'), OTHER)).body.toString();
    assert.match(metrics, new RegExp(`^peerkit_tracker_errors_total\\{kind="rate_limited"\\} ${limited}$`, 'm'));
    // And a burst of fresh connections from the attacker (over its connection cap too) leaves the other address served.
    const flood = Array.from({ length: 150 }, () => rawRequest(t, ATTACKER, '/announce').catch(() => ''));
    const during = await announceFrom(t, OTHER, 10_001);
    assert.equal(during.incomplete, ok + 2);
    const answers = await Promise.all(flood);
    assert.ok(answers.every((a) => a === '' || a.startsWith('HTTP/1.1 ')), 'every flood connection was answered or closed');
    assert.equal(t.stats().internalErrors, 0);
  } finally {
    agent.destroy();
    await t.close();
  }
});
