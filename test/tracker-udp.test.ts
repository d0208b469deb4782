import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CodecError } from '../src/codec/errors.js';
import { formatIp, parseIp } from '../src/codec/ip.js';
import {
  MAX_SCRAPE_HASHES,
  PROTOCOL_ID,
  TrackerError,
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  udpFamily,
  type UdpRequest,
  type UdpResponse,
} from '../src/codec/tracker-udp.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const isCode = (code: string) => (e: unknown) => e instanceof TrackerError && e.codec === 'tracker' && e.code === code;
const fill = (b: number, n = 20): Buffer => Buffer.alloc(n, b);

test('connect request and response match the BEP 15 layout byte for byte', () => {
  const req = encodeRequest({ action: 'connect', transactionId: 0x12345678 });
  // protocol_id 0x41727101980 | action 0 | transaction_id
  assert.equal(req.toString('hex'), '0000041727101980' + '00000000' + '12345678');
  assert.deepEqual(decodeRequest(req), { action: 'connect', transactionId: 0x12345678 });
  assert.equal(PROTOCOL_ID, 0x41727101980n);

  const res = hex('00000000 12345678 aabbccdd11223344');
  assert.deepEqual(decodeResponse(res, 4), { action: 'connect', transactionId: 0x12345678, connectionId: 0xaabbccdd11223344n });
  assert.deepEqual(encodeResponse({ action: 'connect', transactionId: 0x12345678, connectionId: 0xaabbccdd11223344n }), res);
  // Longer packets are accepted: BEP 15 says not to expect exact sizes.
  assert.deepEqual(decodeResponse(Buffer.concat([res, hex('ff')]), 4), { action: 'connect', transactionId: 0x12345678, connectionId: 0xaabbccdd11223344n });
});

test('announce request is 98 bytes laid out as in BEP 15', () => {
  const bytes = encodeRequest({
    action: 'announce',
    connectionId: 0x0102030405060708n,
    transactionId: 0xcafebabe,
    infoHash: fill(0x11),
    peerId: fill(0x22),
    downloaded: 1000,
    left: 2000,
    uploaded: 3000,
    event: 'started',
    key: 0xdeadbeef,
    port: 6881,
  });
  const expected = hex(`
    0102030405060708 00000001 cafebabe
    ${'11'.repeat(20)} ${'22'.repeat(20)}
    00000000000003e8 00000000000007d0 0000000000000bb8
    00000002 00000000 deadbeef ffffffff 1ae1`);
  assert.equal(bytes.length, 98);
  assert.deepEqual(bytes, expected);
  assert.deepEqual(decodeRequest(bytes), {
    action: 'announce',
    connectionId: 0x0102030405060708n,
    transactionId: 0xcafebabe,
    infoHash: fill(0x11),
    peerId: fill(0x22),
    downloaded: 1000,
    left: 2000,
    uploaded: 3000,
    event: 'started',
    ip: undefined,
    key: 0xdeadbeef,
    numWant: -1,
    port: 6881,
    urlData: undefined,
  });
  const events: [number, string | undefined][] = [[0, undefined], [1, 'completed'], [2, 'started'], [3, 'stopped']];
  for (const [code, name] of events) {
    const b = Buffer.from(expected);
    b.writeUInt32BE(code, 80);
    assert.equal((decodeRequest(b) as { event?: string }).event, name);
  }
  const withIp = encodeRequest({ action: 'announce', connectionId: 1n, transactionId: 1, infoHash: fill(1), peerId: fill(2), downloaded: 0, left: 0, uploaded: 0, ip: '10.1.2.3', numWant: 50, port: 1 });
  assert.equal(withIp.subarray(84, 88).toString('hex'), '0a010203');
  assert.equal(withIp.readInt32BE(92), 50);
  assert.equal((decodeRequest(withIp) as { ip?: string }).ip, '10.1.2.3');
});

test('BEP 41 options after an announce request: URLData is read, NOP/unknown skipped, a broken tail tolerated', () => {
  const base = encodeRequest({ action: 'announce', connectionId: 7n, transactionId: 9, infoHash: fill(1), peerId: fill(2), downloaded: 0, left: 5, uploaded: 0, port: 6881 });
  const url = Buffer.from('/announce?passkey=abc', 'latin1');
  const withOptions = Buffer.concat([base, hex('01'), hex('02'), Buffer.from([8]), url.subarray(0, 8), hex('7f 02 aaaa'), hex('02'), Buffer.from([url.length - 8]), url.subarray(8), hex('00 ff ff')]);
  const d = decodeRequest(withOptions);
  assert.equal(d.action, 'announce');
  assert.deepEqual(d.action === 'announce' && d.urlData, url);
  // Truncated option: length runs past the end; what came before still counts.
  const truncated = Buffer.concat([base, hex('02 05 4142'), hex('')]);
  assert.equal((decodeRequest(truncated) as { urlData?: Buffer }).urlData, undefined);
  const truncated2 = Buffer.concat([base, hex('02 02 4142 02')]);
  assert.deepEqual((decodeRequest(truncated2) as { urlData?: Buffer }).urlData, Buffer.from('AB'));
  // The encoder splits long URLData into 255-byte options.
  const long = Buffer.alloc(600, 0x61);
  const enc = encodeRequest({ action: 'announce', connectionId: 7n, transactionId: 9, infoHash: fill(1), peerId: fill(2), downloaded: 0, left: 5, uploaded: 0, port: 6881, urlData: long });
  assert.equal(enc.length, 98 + 600 + 3 * 2);
  assert.deepEqual(enc.subarray(98, 100), hex('02ff'));
  assert.deepEqual((decodeRequest(enc) as { urlData?: Buffer }).urlData, long);
});

test('announce response: 6-byte peers over IPv4, 18-byte peers over IPv6', () => {
  const v4 = hex(`00000001 00000005 00000708 0000000a 00000014 7f000001 1ae1 0a000002 c8d5`);
  assert.deepEqual(decodeResponse(v4, 4), {
    action: 'announce',
    transactionId: 5,
    interval: 1800,
    leechers: 10,
    seeders: 20,
    peers: [{ host: '127.0.0.1', port: 6881 }, { host: '10.0.0.2', port: 51413 }],
  });
  assert.deepEqual(encodeResponse(decodeResponse(v4, 4), 4), v4);

  const v6 = hex(`00000001 00000006 00000384 00000001 00000002 20010db8000000000000000000000001 1ae1`);
  assert.deepEqual(decodeResponse(v6, 6), { action: 'announce', transactionId: 6, interval: 900, leechers: 1, seeders: 2, peers: [{ host: '2001:db8::1', port: 6881 }] });
  assert.deepEqual(encodeResponse(decodeResponse(v6, 6), 6), v6);
  // The same 18-byte body is 3 IPv4 peers; a 6-byte body is no IPv6 peer list.
  assert.equal((decodeResponse(v6, 4) as { peers: readonly unknown[] }).peers.length, 3);
  assert.throws(() => decodeResponse(v4.subarray(0, 26), 6), isCode('BAD_LENGTH'));
  assert.throws(() => decodeResponse(v4.subarray(0, 25), 4), isCode('BAD_LENGTH'));
  assert.deepEqual(decodeResponse(v4.subarray(0, 20), 4), { action: 'announce', transactionId: 5, interval: 1800, leechers: 10, seeders: 20, peers: [] });
  assert.throws(() => encodeResponse({ action: 'announce', transactionId: 1, interval: 1, leechers: 0, seeders: 0, peers: [{ host: '::1', port: 1 }] }, 4), isCode('BAD_PEERS'));
});

test('scrape request and response (BEP 15), 1 to 74 info hashes', () => {
  const req = encodeRequest({ action: 'scrape', connectionId: 0x0a0b0c0d01020304n, transactionId: 77, infoHashes: [fill(0xaa), fill(0xbb)] });
  assert.deepEqual(req, hex(`0a0b0c0d01020304 00000002 0000004d ${'aa'.repeat(20)} ${'bb'.repeat(20)}`));
  assert.deepEqual(decodeRequest(req), { action: 'scrape', connectionId: 0x0a0b0c0d01020304n, transactionId: 77, infoHashes: [fill(0xaa), fill(0xbb)] });

  const most = Array.from({ length: MAX_SCRAPE_HASHES }, (_, i) => fill(i));
  assert.equal(encodeRequest({ action: 'scrape', connectionId: 1n, transactionId: 1, infoHashes: most }).length, 16 + 74 * 20);
  assert.throws(() => encodeRequest({ action: 'scrape', connectionId: 1n, transactionId: 1, infoHashes: [...most, fill(0xff)] }), isCode('TOO_MANY_HASHES'));
  assert.throws(() => encodeRequest({ action: 'scrape', connectionId: 1n, transactionId: 1, infoHashes: [] }), isCode('BAD_LENGTH'));
  assert.throws(() => encodeRequest({ action: 'scrape', connectionId: 1n, transactionId: 1, infoHashes: [fill(1, 19)] }), isCode('BAD_INFO_HASH'));
  assert.throws(() => decodeRequest(Buffer.concat([req.subarray(0, 16), Buffer.alloc(75 * 20)])), isCode('TOO_MANY_HASHES'));
  assert.throws(() => decodeRequest(req.subarray(0, 16)), isCode('BAD_LENGTH'));
  assert.throws(() => decodeRequest(req.subarray(0, 50)), isCode('BAD_LENGTH'));

  const res = hex('00000002 0000004d 00000005 00000064 00000003 00000000 00000001 00000002');
  assert.deepEqual(decodeResponse(res, 4), {
    action: 'scrape',
    transactionId: 77,
    files: [{ seeders: 5, completed: 100, leechers: 3 }, { seeders: 0, completed: 1, leechers: 2 }],
  });
  assert.deepEqual(encodeResponse(decodeResponse(res, 4)), res);
  assert.throws(() => decodeResponse(res.subarray(0, 19), 4), isCode('BAD_LENGTH'));
});

test('error response: action 3, transaction id, then the message', () => {
  const bytes = encodeResponse({ action: 'error', transactionId: 0x01020304, message: 'Connection ID missmatch.' });
  assert.deepEqual(bytes, Buffer.concat([hex('00000003 01020304'), Buffer.from('Connection ID missmatch.')]));
  assert.deepEqual(decodeResponse(bytes, 4), { action: 'error', transactionId: 0x01020304, message: 'Connection ID missmatch.' });
  assert.deepEqual(decodeResponse(hex('00000003 00000009'), 6), { action: 'error', transactionId: 9, message: '' });
});

test('truncated packets, wrong magic, unknown actions, events and oversized counts are TrackerErrors with codes', () => {
  const connect = encodeRequest({ action: 'connect', transactionId: 1 });
  for (let n = 0; n < 16; n++) assert.throws(() => decodeRequest(connect.subarray(0, n)), isCode('TRUNCATED'), `connect request prefix ${n}`);
  const announce = encodeRequest({ action: 'announce', connectionId: 3n, transactionId: 1, infoHash: fill(1), peerId: fill(2), downloaded: 0, left: 0, uploaded: 0, port: 1 });
  for (let n = 16; n < 98; n++) assert.throws(() => decodeRequest(announce.subarray(0, n)), isCode('TRUNCATED'), `announce request prefix ${n}`);
  const connectRes = encodeResponse({ action: 'connect', transactionId: 1, connectionId: 2n });
  for (let n = 0; n < 16; n++) assert.throws(() => decodeResponse(connectRes.subarray(0, n), 4), isCode('TRUNCATED'), `connect response prefix ${n}`);
  const announceRes = encodeResponse({ action: 'announce', transactionId: 1, interval: 2, leechers: 3, seeders: 4, peers: [] });
  for (let n = 0; n < 20; n++) assert.throws(() => decodeResponse(announceRes.subarray(0, n), 4), isCode('TRUNCATED'), `announce response prefix ${n}`);

  const badMagic = Buffer.from(connect);
  badMagic[7] = badMagic[7]! ^ 1;
  assert.throws(() => decodeRequest(badMagic), isCode('BAD_PROTOCOL_ID'));
  const badAction = Buffer.from(connect);
  badAction.writeUInt32BE(3, 8);
  assert.throws(() => decodeRequest(badAction), isCode('BAD_ACTION'));
  assert.throws(() => decodeResponse(hex('00000004 00000000'), 4), isCode('BAD_ACTION'));
  const badEvent = Buffer.from(announce);
  badEvent.writeUInt32BE(4, 80);
  assert.throws(() => decodeRequest(badEvent), isCode('BAD_EVENT'));
  const huge = Buffer.from(announce);
  huge.writeBigUInt64BE(0xffffffffffffffffn, 64);
  assert.throws(() => decodeRequest(huge), (e: unknown) => isCode('OUT_OF_RANGE')(e) && (e as TrackerError).offset === 64);
  assert.throws(() => decodeResponse(Buffer.alloc(70000), 4), isCode('BAD_LENGTH'));

  assert.throws(() => encodeRequest({ action: 'connect', transactionId: -1 }), isCode('OUT_OF_RANGE'));
  assert.throws(() => encodeRequest({ action: 'connect', transactionId: 2 ** 32 }), isCode('OUT_OF_RANGE'));
  const ok = { action: 'announce', connectionId: 3n, transactionId: 1, infoHash: fill(1), peerId: fill(2), downloaded: 0, left: 0, uploaded: 0, port: 1 } as const;
  assert.throws(() => encodeRequest({ ...ok, peerId: fill(2, 21) }), isCode('BAD_PEER_ID'));
  assert.throws(() => encodeRequest({ ...ok, left: -1 }), isCode('OUT_OF_RANGE'));
  assert.throws(() => encodeRequest({ ...ok, uploaded: 1.5 }), isCode('OUT_OF_RANGE'));
  assert.throws(() => encodeRequest({ ...ok, connectionId: -1n }), isCode('OUT_OF_RANGE'));
  assert.throws(() => encodeRequest({ ...ok, ip: '::1' }), isCode('BAD_PARAM'));
  assert.throws(() => encodeRequest({ ...ok, port: 65536 }), isCode('BAD_PORT'));
  assert.throws(() => encodeRequest({ ...ok, numWant: 2 ** 31 }), isCode('OUT_OF_RANGE'));
  assert.throws(() => encodeRequest({ ...ok, event: 'paused' as 'started' }), isCode('BAD_EVENT'));
});

test('udpFamily: the family of the datagram, IPv4-mapped IPv6 counting as IPv4', () => {
  assert.equal(udpFamily('127.0.0.1'), 4);
  assert.equal(udpFamily('::ffff:127.0.0.1'), 4);
  assert.equal(udpFamily('::1'), 6);
  assert.equal(udpFamily('2001:db8::1'), 6);
  assert.equal(udpFamily('tracker.example'), undefined);
});

// ---------------------------------------------------------------- properties

/** fc.record without null-prototype objects (deepStrictEqual compares prototypes). */
function rec<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model, { noNullPrototype: true }) as unknown as fc.Arbitrary<T>;
}

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const count = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const hash = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((u) => Buffer.from(u));
const connId = fc.bigInt({ min: 0n, max: 0xffffffffffffffffn });
const v4peer = rec({ host: fc.ipV4().map((h) => formatIp(parseIp(h)!)), port: fc.integer({ min: 0, max: 65535 }) });
const v6peer = rec({ host: fc.ipV6().map((h) => formatIp(parseIp(h)!)), port: fc.integer({ min: 0, max: 65535 }) });

const requestArb: fc.Arbitrary<UdpRequest> = fc.oneof(
  rec({ action: fc.constant('connect' as const), transactionId: u32 }),
  rec({
    action: fc.constant('announce' as const),
    connectionId: connId,
    transactionId: u32,
    infoHash: hash,
    peerId: hash,
    downloaded: count,
    left: count,
    uploaded: count,
    event: fc.constantFrom(undefined, 'started' as const, 'completed' as const, 'stopped' as const),
    ip: fc.option(fc.ipV4().filter((h) => h !== '0.0.0.0').map((h) => formatIp(parseIp(h)!)), { nil: undefined }),
    key: u32,
    numWant: fc.integer({ min: -0x80000000, max: 0x7fffffff }),
    port: fc.integer({ min: 0, max: 65535 }),
    urlData: fc.option(fc.uint8Array({ minLength: 1, maxLength: 700 }).map((u) => Buffer.from(u)), { nil: undefined }),
  }),
  rec({ action: fc.constant('scrape' as const), connectionId: connId, transactionId: u32, infoHashes: fc.array(hash, { minLength: 1, maxLength: MAX_SCRAPE_HASHES }) }),
);

test('property: every request round-trips through encodeRequest/decodeRequest', () => {
  fc.assert(
    fc.property(requestArb, (req) => {
      assert.deepEqual(decodeRequest(encodeRequest(req)), req);
    }),
    { numRuns: 1500 },
  );
});

test('property: every response round-trips for its address family', () => {
  const family = fc.constantFrom(4 as const, 6 as const);
  const responseFor = (fam: 4 | 6): fc.Arbitrary<UdpResponse> =>
    fc.oneof(
      rec({ action: fc.constant('connect' as const), transactionId: u32, connectionId: connId }),
      rec({ action: fc.constant('announce' as const), transactionId: u32, interval: u32, leechers: u32, seeders: u32, peers: fc.array(fam === 4 ? v4peer : v6peer, { maxLength: 60 }) }),
      rec({ action: fc.constant('scrape' as const), transactionId: u32, files: fc.array(rec({ seeders: u32, completed: u32, leechers: u32 }), { maxLength: 80 }) }),
      rec({ action: fc.constant('error' as const), transactionId: u32, message: fc.string({ maxLength: 100 }).map((s) => Buffer.from(s, 'utf8').toString('utf8')) }),
    );
  fc.assert(
    fc.property(family.chain((fam) => fc.tuple(fc.constant(fam), responseFor(fam))), ([fam, res]) => {
      assert.deepEqual(decodeResponse(encodeResponse(res, fam), fam), res);
    }),
    { numRuns: 1500 },
  );
});

const onlyCodecErrors = (fn: () => unknown): void => {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof CodecError)) throw e;
    assert.ok(e instanceof TrackerError, `expected a TrackerError, got ${(e as Error).name}`);
  }
};

test('fuzz: random bytes decode or fail with TrackerError only (never TypeError/RangeError)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.constantFrom(4 as const, 6 as const), (bytes, fam) => {
      onlyCodecErrors(() => decodeRequest(bytes));
      onlyCodecErrors(() => decodeResponse(bytes, fam));
    }),
    { numRuns: 5000 },
  );
});

test('fuzz: mutated and truncated valid packets decode or fail with TrackerError only', () => {
  const packet = fc.oneof(
    requestArb.map((r) => encodeRequest(r)),
    rec({ action: fc.constant('announce' as const), transactionId: u32, interval: u32, leechers: u32, seeders: u32, peers: fc.array(v4peer, { maxLength: 10 }) }).map((r) => encodeResponse(r, 4)),
  );
  fc.assert(
    fc.property(packet, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.nat(), fc.constantFrom(4 as const, 6 as const), (pkt, edits, cut, fam) => {
      const b = Buffer.from(pkt);
      for (const [at, v] of edits) if (b.length > 0) b[at % b.length] = v;
      const t = b.subarray(0, b.length === 0 ? 0 : cut % (b.length + 1));
      onlyCodecErrors(() => decodeRequest(t));
      onlyCodecErrors(() => decodeResponse(t, fam));
      onlyCodecErrors(() => decodeRequest(b));
      onlyCodecErrors(() => decodeResponse(b, fam));
    }),
    { numRuns: 3000 },
  );
});
