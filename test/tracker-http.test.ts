import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encode } from '../src/codec/bencode.js';
import { CodecError } from '../src/codec/errors.js';
import { formatIp, parseIp } from '../src/codec/ip.js';
import {
  TrackerError,
  buildAnnounceUrl,
  buildScrapeUrl,
  decodeAnnounceResponse,
  decodeScrapeResponse,
  encodeAnnounceResponse,
  encodeFailure,
  encodeScrapeResponse,
  parseAddressParam,
  parseAnnounceQuery,
  parseScrapeQuery,
  percentDecodeBytes,
  percentEncodeBytes,
  type HttpAnnounceParams,
  type TrackerPeer,
} from '../src/codec/tracker-http.js';

const isCode = (code: string) => (e: unknown) => e instanceof TrackerError && e.codec === 'tracker' && e.code === code;
const fill = (b: number, n = 20): Buffer => Buffer.alloc(n, b);
const queryOf = (url: string): string => url.slice(url.indexOf('?') + 1);

/** fc.record without null-prototype objects (deepStrictEqual compares prototypes). */
function rec<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model, { noNullPrototype: true }) as unknown as fc.Arbitrary<T>;
}

// Not UTF-8, and full of bytes that must be escaped: NUL, space, '+', '%', '&', '=', 0xff.
const nastyHash = Buffer.from([0x00, 0x20, 0x2b, 0x25, 0x26, 0x3d, 0xff, 0xfe, 0x80, 0x41, 0x7e, 0x2e, 0x2d, 0x5f, 0xc3, 0x28, 0x0a, 0x3f, 0x23, 0x2f]);

const baseParams: HttpAnnounceParams = {
  infoHash: nastyHash,
  peerId: Buffer.from('-PK0001-abcdefghijkl', 'latin1'),
  port: 6881,
  uploaded: 0,
  downloaded: 100,
  left: 12345,
};

test('percent-encoding is byte-wise: unreserved characters stay, every other byte becomes %XX', () => {
  assert.equal(percentEncodeBytes(nastyHash), '%00%20%2B%25%26%3D%FF%FE%80A~.-_%C3%28%0A%3F%23%2F');
  assert.deepEqual(percentDecodeBytes('%00%20%2B%25%26%3D%FF%FE%80A~.-_%C3%28%0A%3F%23%2F'), nastyHash);
  assert.deepEqual(percentDecodeBytes('%ff%Fe+a'), Buffer.from([0xff, 0xfe, 0x20, 0x61]));
  for (const bad of ['%', '%4', '%G0', '%0g', 'a b', 'é', 'a\nb']) assert.throws(() => percentDecodeBytes(bad), isCode('BAD_ENCODING'), bad);
});

test('buildAnnounceUrl: BEP 3 parameters, binary info_hash/peer_id, optional fields', () => {
  const url = buildAnnounceUrl('http://tracker.example:6969/announce', baseParams);
  assert.equal(
    url,
    'http://tracker.example:6969/announce?info_hash=%00%20%2B%25%26%3D%FF%FE%80A~.-_%C3%28%0A%3F%23%2F&peer_id=-PK0001-abcdefghijkl&port=6881&uploaded=0&downloaded=100&left=12345&compact=1',
  );
  const full = buildAnnounceUrl('https://t.example/announce', {
    ...baseParams,
    event: 'started',
    numWant: 80,
    key: 0x1a2b,
    trackerId: Buffer.from([0x01, 0x61]),
    ip: '10.0.0.1',
    ipv6: '[2001:db8::1]:6882',
    ipv4: '1.2.3.4',
    compact: false,
    noPeerId: true,
  });
  assert.equal(
    queryOf(full).split('&').slice(6).join('&'),
    'compact=0&no_peer_id=1&event=started&numwant=80&key=00001A2B&trackerid=%01a&ip=10.0.0.1&ipv4=1.2.3.4&ipv6=%5B2001%3Adb8%3A%3A1%5D%3A6882',
  );
});

test('buildAnnounceUrl keeps the query of the announce URL (a passkey) and drops a fragment', () => {
  assert.ok(buildAnnounceUrl('http://t.example/ann/announce.php?passkey=S3cr%2Ft', baseParams).startsWith('http://t.example/ann/announce.php?passkey=S3cr%2Ft&info_hash=%00'));
  assert.ok(buildAnnounceUrl('http://t.example/announce?pk=1&', baseParams).startsWith('http://t.example/announce?pk=1&info_hash='));
  assert.ok(buildAnnounceUrl('http://t.example/announce?', baseParams).startsWith('http://t.example/announce?info_hash='));
  assert.ok(buildAnnounceUrl('http://t.example/announce#frag', baseParams).startsWith('http://t.example/announce?info_hash='));
  assert.ok(buildAnnounceUrl('HTTP://t.example', baseParams).startsWith('HTTP://t.example?info_hash='));
});

test('buildAnnounceUrl refuses bad URLs and bad parameters', () => {
  for (const bad of ['udp://t.example:80/announce', 'ftp://x/announce', 'http:///announce', 'http://t.example/an nounce', 'not a url']) {
    assert.throws(() => buildAnnounceUrl(bad, baseParams), isCode('BAD_URL'), bad);
  }
  assert.throws(() => buildAnnounceUrl('http://t/a', { ...baseParams, infoHash: fill(1, 19) }), isCode('BAD_INFO_HASH'));
  assert.throws(() => buildAnnounceUrl('http://t/a', { ...baseParams, peerId: fill(1, 21) }), isCode('BAD_PEER_ID'));
  assert.throws(() => buildAnnounceUrl('http://t/a', { ...baseParams, port: 0 }), isCode('BAD_PORT'));
  assert.throws(() => buildAnnounceUrl('http://t/a', { ...baseParams, left: -1 }), isCode('BAD_INTEGER'));
  assert.throws(() => buildAnnounceUrl('http://t/a', { ...baseParams, uploaded: 0.5 }), isCode('BAD_INTEGER'));
  assert.throws(() => buildAnnounceUrl('http://t/a', { ...baseParams, key: 2 ** 32 }), isCode('BAD_PARAM'));
  assert.throws(() => buildAnnounceUrl('http://t/a', { ...baseParams, event: 'finished' as 'started' }), isCode('BAD_EVENT'));
});

test('buildScrapeUrl follows the BEP 48 announce -> scrape rule', () => {
  const h = fill(0x61);
  const cases: [string, string][] = [
    ['http://example.com/announce', 'http://example.com/scrape'],
    ['http://example.com/x/announce', 'http://example.com/x/scrape'],
    ['http://example.com/announce.php', 'http://example.com/scrape.php'],
    ['http://example.com/announce?x2%0644', 'http://example.com/scrape?x2%0644'],
    ['http://example.com/announce?x=2/4', 'http://example.com/scrape?x=2/4'],
    ['https://example.com:8443/p/announce.php?passkey=abc', 'https://example.com:8443/p/scrape.php?passkey=abc'],
  ];
  for (const [announce, scrape] of cases) assert.equal(buildScrapeUrl(announce), scrape, announce);
  for (const none of ['http://example.com/a', 'http://example.com/x%064announce', 'http://example.com/announce/', 'http://example.com', 'http://example.com/announce/x']) {
    assert.throws(() => buildScrapeUrl(none), isCode('NOT_ANNOUNCE_URL'), none);
  }
  assert.equal(buildScrapeUrl('http://e/announce', [h, fill(0xff)]), `http://e/scrape?info_hash=${'a'.repeat(20)}&info_hash=${'%FF'.repeat(20)}`);
  assert.equal(buildScrapeUrl('http://e/announce?pk=1', [h]), `http://e/scrape?pk=1&info_hash=${'a'.repeat(20)}`);
  assert.throws(() => buildScrapeUrl('http://e/announce', [fill(1, 10)]), isCode('BAD_INFO_HASH'));
});

test('parseAnnounceQuery decodes what buildAnnounceUrl built, binary bytes intact', () => {
  const url = buildAnnounceUrl('http://t.example/announce?passkey=zz', { ...baseParams, event: 'completed', numWant: 30, key: 0xdeadbeef, trackerId: Buffer.from([0xff, 0x00]) });
  const parsed = parseAnnounceQuery(queryOf(url));
  assert.deepEqual(parsed, {
    infoHash: nastyHash,
    peerId: Buffer.from('-PK0001-abcdefghijkl', 'latin1'),
    port: 6881,
    uploaded: 0,
    downloaded: 100,
    left: 12345,
    event: 'completed',
    numWant: 30,
    compact: true,
    noPeerId: false,
    key: 'DEADBEEF',
    trackerId: Buffer.from([0xff, 0x00]),
    ip: undefined,
    ipv4: undefined,
    ipv6: undefined,
  });
  // A leading '?', lower-case escapes, '+' as space, unknown parameters and empty pairs are all fine.
  const q = `?info_hash=${'%ab'.repeat(20)}&&peer_id=${'x'.repeat(19)}+&port=1&uploaded=1&downloaded=2&left=3&supportcrypto=1&event=&ip=a+b`;
  const p = parseAnnounceQuery(q);
  assert.deepEqual(p.infoHash, fill(0xab));
  assert.deepEqual(p.peerId, Buffer.from(`${'x'.repeat(19)} `));
  assert.equal(p.event, undefined);
  assert.equal(p.compact, undefined);
  assert.equal(p.numWant, 50);
  assert.equal(p.ip, 'a b');
  assert.equal(parseAnnounceQuery(q.replace('event=', 'event=empty')).event, undefined);
  assert.equal(parseAnnounceQuery(q.replace('event=', 'event=paused')).event, 'paused');
});

test('parseAnnounceQuery clamps numwant and treats a negative numwant as the default', () => {
  const q = (nw: string): string => `info_hash=${'a'.repeat(20)}&peer_id=${'b'.repeat(20)}&port=80&uploaded=0&downloaded=0&left=0&numwant=${nw}`;
  assert.equal(parseAnnounceQuery(q('1000')).numWant, 200);
  assert.equal(parseAnnounceQuery(q('1000'), { maxNumWant: 500 }).numWant, 500);
  assert.equal(parseAnnounceQuery(q('-1')).numWant, 50);
  assert.equal(parseAnnounceQuery(q('-1'), { defaultNumWant: 20 }).numWant, 20);
  assert.equal(parseAnnounceQuery(q('0')).numWant, 0);
  assert.equal(parseAnnounceQuery(q('99999999999999999999'.slice(0, 16))).numWant, 200);
  assert.throws(() => parseAnnounceQuery(q('ten')), isCode('BAD_INTEGER'));
  assert.throws(() => parseAnnounceQuery(q('-x')), isCode('BAD_INTEGER'));
});

test('parseAnnounceQuery refuses bad requests with codes and the reason a tracker sends back', () => {
  const good: Record<string, string> = { info_hash: 'a'.repeat(20), peer_id: 'b'.repeat(20), port: '6881', uploaded: '0', downloaded: '0', left: '0' };
  const q = (over: Record<string, string | undefined>): string =>
    Object.entries({ ...good, ...over })
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${v}`)
      .join('&');
  const cases: [Record<string, string | undefined>, string, string][] = [
    [{ info_hash: undefined }, 'MISSING_PARAM', 'missing info_hash'],
    [{ info_hash: 'a'.repeat(19) }, 'BAD_INFO_HASH', 'invalid info_hash'],
    [{ info_hash: '%00'.repeat(21) }, 'BAD_INFO_HASH', 'invalid info_hash'],
    [{ peer_id: 'b'.repeat(21) }, 'BAD_PEER_ID', 'invalid peer_id'],
    [{ port: undefined }, 'MISSING_PARAM', 'missing port'],
    [{ port: '0' }, 'BAD_PORT', 'invalid port'],
    [{ port: '65536' }, 'BAD_PORT', 'invalid port'],
    [{ port: '-5' }, 'BAD_PORT', 'invalid port'],
    [{ left: undefined }, 'MISSING_PARAM', 'missing left'],
    [{ uploaded: '-1' }, 'BAD_INTEGER', 'uploaded must not be negative'],
    [{ downloaded: '1e3' }, 'BAD_INTEGER', 'downloaded is not a valid number'],
    [{ left: '' }, 'BAD_INTEGER', 'left is not a valid number'],
    [{ left: '9007199254740993' }, 'BAD_INTEGER', 'left is too large'],
    [{ left: '12345678901234567' }, 'BAD_INTEGER', 'left is not a valid number'],
    [{ event: 'finished' }, 'BAD_EVENT', 'invalid event'],
    [{ compact: 'yes' }, 'BAD_PARAM', 'invalid compact'],
    [{ ip: 'x'.repeat(300) }, 'BAD_PARAM', 'ip is too long'],
    [{ info_hash: '%zz' }, 'BAD_ENCODING', 'malformed percent-encoding in query string'],
  ];
  for (const [over, code, reason] of cases) {
    assert.throws(
      () => parseAnnounceQuery(q(over)),
      (e: unknown) => isCode(code)(e) && (e as TrackerError).reason === reason,
      `${JSON.stringify(over)} -> ${code}`,
    );
  }
  assert.throws(() => parseAnnounceQuery(`${q({})}&port=1`), (e: unknown) => isCode('DUPLICATE_PARAM')(e) && (e as TrackerError).reason === 'port given more than once');
  assert.throws(() => parseAnnounceQuery(`${q({})}&x=${'y'.repeat(9000)}`), isCode('QUERY_TOO_LONG'));
  assert.throws(() => parseAnnounceQuery(`${q({})}${'&z=1'.repeat(200)}`), isCode('TOO_MANY_PARAMS'));
  // The reason is what goes in the failure response.
  try {
    parseAnnounceQuery(q({ info_hash: 'short' }));
  } catch (e) {
    assert.deepEqual(decodeAnnounceResponse(encodeFailure((e as TrackerError).reason)), { failureReason: 'invalid info_hash' });
  }
});

test('parseScrapeQuery collects every info_hash; parseAddressParam reads BEP 7 endpoints', () => {
  assert.deepEqual(parseScrapeQuery(`info_hash=${'%01'.repeat(20)}&info_hash=${'b'.repeat(20)}&pk=1`), [fill(1), fill(0x62)]);
  assert.deepEqual(parseScrapeQuery(''), []);
  assert.throws(() => parseScrapeQuery('info_hash=abc'), isCode('BAD_INFO_HASH'));
  assert.deepEqual(parseAddressParam('2001::53Aa:64c:0:7f83:bc43:dec9', 6, 6881), { host: '2001:0:53aa:64c:0:7f83:bc43:dec9', port: 6881 });
  assert.deepEqual(parseAddressParam('[2001:DB8::1]:6882', 6, 6881), { host: '2001:db8::1', port: 6882 });
  assert.deepEqual(parseAddressParam('[::1]', 6, 1), { host: '::1', port: 1 });
  assert.deepEqual(parseAddressParam('1.2.3.4:99', 4, 6881), { host: '1.2.3.4', port: 99 });
  assert.deepEqual(parseAddressParam('1.2.3.4', 4, 6881), { host: '1.2.3.4', port: 6881 });
  for (const [v, fam] of [['261.52.89.12', 4], ['1.2.3.4', 6], ['::1', 4], ['[::1]:0', 6], ['[::1]:70000', 6], ['host.example', 4]] as const) {
    assert.equal(parseAddressParam(v, fam, 6881), undefined, v);
  }
});

test('decodeAnnounceResponse: compact peers (BEP 23) and peers6 (BEP 7)', () => {
  // BEP 7's example, with real addresses.
  const body = Buffer.concat([
    Buffer.from('d8:completei5e10:incompletei3e8:intervali1800e12:min intervali900e5:peers12:'),
    Buffer.from('7f0000011ae10a000002c8d5', 'hex'),
    Buffer.from('6:peers618:'),
    Buffer.from('20010db80000000000000000000000011ae1', 'hex'),
    Buffer.from('10:tracker id3:abc15:warning message4:hmm!e'),
  ]);
  assert.deepEqual(decodeAnnounceResponse(body), {
    interval: 1800,
    minInterval: 900,
    complete: 5,
    incomplete: 3,
    trackerId: Buffer.from('abc'),
    warningMessage: 'hmm!',
    peers: [
      { host: '127.0.0.1', port: 6881 },
      { host: '10.0.0.2', port: 51413 },
      { host: '2001:db8::1', port: 6881 },
    ],
  });
  assert.deepEqual(decodeAnnounceResponse(Buffer.from('d8:intervali60e5:peers0:e')), { interval: 60, peers: [] });
  // Unsorted keys happen in the wild and are accepted; external ip (BEP 24) is read.
  assert.deepEqual(decodeAnnounceResponse(Buffer.concat([Buffer.from('d8:intervali60e11:external ip4:'), Buffer.from([9, 8, 7, 6]), Buffer.from('e')])), { interval: 60, peers: [], externalIp: '9.8.7.6' });
  assert.deepEqual(decodeAnnounceResponse(Buffer.from('d8:intervali60e5:peerslee')), { interval: 60, peers: [] });
});

test('decodeAnnounceResponse: dictionary-model peers with ip, port and peer id; host names skipped', () => {
  const body = encode({
    interval: 120,
    peers: [
      { ip: '192.168.1.5', port: 6881, 'peer id': fill(0x41) },
      { ip: '2001:DB8::2', port: 1 },
      { ip: 'peer.example.org', port: 6881 },
      { ip: '::ffff:1.2.3.4', port: 2 },
    ],
  });
  assert.deepEqual(decodeAnnounceResponse(body), {
    interval: 120,
    peers: [
      { host: '192.168.1.5', port: 6881, peerId: fill(0x41) },
      { host: '2001:db8::2', port: 1 },
      { host: '::ffff:1.2.3.4', port: 2 },
    ],
  });
});

test('decodeAnnounceResponse: failure reason, with BEP 31 retry in', () => {
  assert.deepEqual(decodeAnnounceResponse(Buffer.from('d14:failure reason17:torrent not founde')), { failureReason: 'torrent not found' });
  assert.deepEqual(decodeAnnounceResponse(Buffer.from('d14:failure reason3:bad8:retry in5:nevere')), { failureReason: 'bad', retryIn: 'never' });
  assert.deepEqual(decodeAnnounceResponse(Buffer.from('d14:failure reason3:bad8:retry ini30e15:warning message1:we')), { failureReason: 'bad', retryIn: 30, warningMessage: 'w' });
  assert.deepEqual(encodeFailure('unregistered torrent'), Buffer.from('d14:failure reason20:unregistered torrente'));
  assert.deepEqual(encodeFailure('slow down', 10), Buffer.from('d14:failure reason9:slow down8:retry ini10ee'));
});

test('decodeAnnounceResponse is strict on types and bounded', () => {
  const bad: [string | Buffer, string][] = [
    ['', 'BAD_BENCODE'],
    ['d8:intervali60e', 'BAD_BENCODE'],
    ['d8:intervali60ee trailing', 'BAD_BENCODE'],
    ['le', 'NOT_A_DICT'],
    ['i5e', 'NOT_A_DICT'],
    ['de', 'BAD_FIELD'],
    ['d8:interval2:60e', 'BAD_FIELD'],
    ['d8:intervali-1ee', 'BAD_FIELD'],
    ['d8:intervali99999999999999999999ee', 'BAD_FIELD'],
    ['d8:intervali60e12:min intervali-5ee', 'BAD_FIELD'],
    ['d8:completei-1e8:intervali60ee', 'BAD_FIELD'],
    ['d14:failure reasoni5ee', 'BAD_FIELD'],
    ['d8:intervali60e10:tracker idi1ee', 'BAD_FIELD'],
    ['d8:intervali60e5:peers5:abcdee', 'BAD_PEERS'],
    ['d8:intervali60e5:peersi1ee', 'BAD_PEERS'],
    ['d8:intervali60e5:peersli1eee', 'BAD_PEERS'],
    ['d8:intervali60e5:peersld2:ip3:::14:porti70000eeee', 'BAD_PEERS'],
    ['d8:intervali60e5:peersld4:porti1eeee', 'BAD_PEERS'],
    ['d8:intervali60e5:peersld2:ip3:::17:peer id3:abc4:porti1eeee', 'BAD_PEERS'],
    ['d8:intervali60e6:peers65:abcdee', 'BAD_PEERS'],
    ['d8:intervali60e6:peers6le', 'BAD_BENCODE'],
    ['d8:intervali60e6:peers6lee', 'BAD_PEERS'],
    ['d11:external ip3:abc8:intervali60ee', 'BAD_FIELD'],
  ];
  for (const [body, code] of bad) assert.throws(() => decodeAnnounceResponse(Buffer.from(body)), isCode(code), String(body));
  const many = encode({ interval: 60, peers: Buffer.alloc(6 * 11) });
  assert.throws(() => decodeAnnounceResponse(many, { maxPeers: 10 }), isCode('TOO_MANY_PEERS'));
  assert.equal((decodeAnnounceResponse(many, { maxPeers: 11 }) as { peers: unknown[] }).peers.length, 11);
  assert.throws(() => decodeAnnounceResponse(many, { maxInputBytes: 20 }), isCode('BAD_BENCODE'));
  const dictMany = encode({ interval: 60, peers: Array.from({ length: 4 }, () => ({ ip: '10.1.1.1', port: 1 })) });
  assert.throws(() => decodeAnnounceResponse(dictMany, { maxPeers: 3 }), isCode('TOO_MANY_PEERS'));
  const deep = Buffer.from(`d8:intervali60e1:x${'l'.repeat(20)}${'e'.repeat(20)}e`);
  assert.throws(() => decodeAnnounceResponse(deep), isCode('BAD_BENCODE'));
});

test('encodeAnnounceResponse: compact splits peers into peers/peers6; non-compact lists dictionaries', () => {
  const peers: TrackerPeer[] = [
    { host: '127.0.0.1', port: 6881, peerId: fill(0x50) },
    { host: '2001:db8::1', port: 6881 },
  ];
  const compact = encodeAnnounceResponse({ interval: 1800, minInterval: 60, complete: 1, incomplete: 2, peers });
  assert.deepEqual(
    compact,
    Buffer.concat([
      Buffer.from('d8:completei1e10:incompletei2e8:intervali1800e12:min intervali60e5:peers6:'),
      Buffer.from('7f0000011ae1', 'hex'),
      Buffer.from('6:peers618:'),
      Buffer.from('20010db80000000000000000000000011ae1', 'hex'),
      Buffer.from('e'),
    ]),
  );
  assert.deepEqual(encodeAnnounceResponse({ interval: 5, peers: [] }), Buffer.from('d8:intervali5e5:peers0:e'));
  const dict = encodeAnnounceResponse({ interval: 1800, peers, trackerId: Buffer.from('t1'), warningMessage: 'w' }, { compact: false });
  assert.deepEqual(dict, Buffer.from(`d8:intervali1800e5:peersld2:ip9:127.0.0.17:peer id20:${'P'.repeat(20)}4:porti6881eed2:ip11:2001:db8::14:porti6881eee10:tracker id2:t115:warning message1:we`));
  assert.deepEqual(decodeAnnounceResponse(dict), { interval: 1800, trackerId: Buffer.from('t1'), warningMessage: 'w', peers });
  const noIds = encodeAnnounceResponse({ interval: 1, peers }, { compact: false, noPeerId: true });
  assert.ok(!noIds.includes('peer id'));
  assert.throws(() => encodeAnnounceResponse({ interval: -1, peers: [] }), isCode('BAD_FIELD'));
  assert.throws(() => encodeAnnounceResponse({ interval: 1, peers: [{ host: 'peer.example', port: 1 }] }), isCode('BAD_PEERS'));
  assert.throws(() => encodeAnnounceResponse({ interval: 1, peers: [{ host: '1.2.3.4', port: 65536 }] }), isCode('BAD_PEERS'));
  assert.throws(() => encodeAnnounceResponse({ interval: 1, peers: [{ host: '1.2.3.4', port: 1, peerId: fill(1, 3) }] }, { compact: false }), isCode('BAD_PEERS'));
});

test('scrape responses: the BEP 48 example, round trip, failures and strictness', () => {
  const x = Buffer.from('x'.repeat(20));
  const y = Buffer.from('y'.repeat(20));
  const z = Buffer.from('z'.repeat(20));
  const example = Buffer.from(
    `d5:filesd20:${x}d8:completei11e10:downloadedi13772e10:incompletei19ee20:${y}d8:completei21e10:downloadedi206e10:incompletei20ee20:${z}d8:completei14e10:downloadedi12191e10:incompletei9eeee`,
  );
  const files = [
    { infoHash: x, complete: 11, downloaded: 13772, incomplete: 19 },
    { infoHash: y, complete: 21, downloaded: 206, incomplete: 20 },
    { infoHash: z, complete: 14, downloaded: 12191, incomplete: 9 },
  ];
  assert.deepEqual(decodeScrapeResponse(example), { files });
  assert.deepEqual(encodeScrapeResponse([files[2]!, files[0]!, files[1]!]), example);
  assert.deepEqual(decodeScrapeResponse(Buffer.from('d5:filesdee')), { files: [] });
  assert.deepEqual(decodeScrapeResponse(Buffer.from('de')), { files: [] });
  assert.deepEqual(decodeScrapeResponse(Buffer.from(`d5:filesd20:${x}d8:completei1eeee`)), { files: [{ infoHash: x, complete: 1, downloaded: 0, incomplete: 0 }] });
  assert.deepEqual(decodeScrapeResponse(Buffer.from('d14:failure reason4:nopee')), { failureReason: 'nope' });
  assert.deepEqual(decodeScrapeResponse(Buffer.from('d14:failure_reason4:nopee')), { failureReason: 'nope' });
  assert.throws(() => decodeScrapeResponse(Buffer.from('d5:filesd3:abcdeee')), isCode('BAD_INFO_HASH'));
  assert.throws(() => decodeScrapeResponse(Buffer.from(`d5:filesd20:${x}i1eee`)), isCode('BAD_FIELD'));
  assert.throws(() => decodeScrapeResponse(Buffer.from(`d5:filesd20:${x}d8:complete1:1eee`)), isCode('BAD_FIELD'));
  assert.throws(() => decodeScrapeResponse(Buffer.from('d5:fileslee')), isCode('BAD_FIELD'));
  assert.throws(() => decodeScrapeResponse(example, { maxFiles: 2 }), isCode('BAD_FIELD'));
  assert.throws(() => encodeScrapeResponse([files[0]!, files[0]!]), isCode('BAD_INFO_HASH'));
  assert.throws(() => encodeScrapeResponse([{ ...files[0]!, complete: -1 }]), isCode('BAD_FIELD'));
});

// ---------------------------------------------------------------- properties

const hash = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((u) => Buffer.from(u));
const count = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const text = fc.string({ maxLength: 40 });

test('property: buildAnnounceUrl -> parseAnnounceQuery gives back the parameters', () => {
  fc.assert(
    fc.property(
      rec({
        infoHash: hash,
        peerId: hash,
        port: fc.integer({ min: 1, max: 65535 }),
        uploaded: count,
        downloaded: count,
        left: count,
        event: fc.constantFrom(undefined, 'started' as const, 'completed' as const, 'stopped' as const, 'paused' as const),
        numWant: fc.option(fc.integer({ min: 0, max: 200 }), { nil: undefined }),
        key: fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: undefined }),
        trackerId: fc.option(fc.uint8Array({ maxLength: 30 }).map((u) => Buffer.from(u)), { nil: undefined }),
        ip: fc.option(fc.string({ unit: 'binary-ascii', maxLength: 40 }), { nil: undefined }),
        ipv6: fc.option(fc.ipV6(), { nil: undefined }),
        compact: fc.boolean(),
        noPeerId: fc.boolean(),
      }),
      fc.constantFrom('http://t.example/announce', 'https://t.example:443/x/announce.php?passkey=a%2Fb&u=1', 'http://127.0.0.1:8080/announce?'),
      (params, base) => {
        const url = buildAnnounceUrl(base, params);
        const p = parseAnnounceQuery(url.slice(url.indexOf('?') + 1));
        assert.deepEqual(p.infoHash, params.infoHash);
        assert.deepEqual(p.peerId, params.peerId);
        assert.equal(p.port, params.port);
        assert.equal(p.uploaded, params.uploaded);
        assert.equal(p.downloaded, params.downloaded);
        assert.equal(p.left, params.left);
        assert.equal(p.event, params.event);
        assert.equal(p.numWant, params.numWant ?? 50);
        assert.equal(p.key, params.key === undefined ? undefined : params.key.toString(16).toUpperCase().padStart(8, '0'));
        assert.deepEqual(p.trackerId, params.trackerId);
        assert.equal(p.ip, params.ip);
        assert.equal(p.ipv6, params.ipv6);
        assert.equal(p.compact, params.compact);
        assert.equal(p.noPeerId, params.noPeerId);
      },
    ),
    { numRuns: 1000 },
  );
});

test('property: buildScrapeUrl -> parseScrapeQuery gives back the info hashes', () => {
  fc.assert(
    fc.property(fc.array(hash, { maxLength: 10 }), (hashes) => {
      const url = buildScrapeUrl('http://t.example/announce?pk=1', hashes);
      assert.deepEqual(parseScrapeQuery(url.slice(url.indexOf('?') + 1)), hashes);
    }),
  );
});

const v4 = fc.ipV4().map((h) => formatIp(parseIp(h)!));
const v6 = fc.ipV6().map((h) => formatIp(parseIp(h)!));
const port = fc.integer({ min: 0, max: 65535 });

test('property: compact announce responses round-trip (IPv4 peers, then IPv6 peers)', () => {
  fc.assert(
    fc.property(
      fc.array(rec({ host: v4, port }), { maxLength: 30 }),
      fc.array(rec({ host: v6, port }), { maxLength: 30 }),
      rec({
        interval: fc.integer({ min: 0, max: 0x7fffffff }),
        minInterval: fc.option(fc.integer({ min: 0, max: 0x7fffffff }), { nil: undefined }),
        complete: fc.option(count, { nil: undefined }),
        incomplete: fc.option(count, { nil: undefined }),
        trackerId: fc.option(fc.uint8Array({ maxLength: 20 }).map((u) => Buffer.from(u)), { nil: undefined }),
        warningMessage: fc.option(text, { nil: undefined }),
        externalIp: fc.option(fc.oneof(v4, v6), { nil: undefined }),
      }),
      (p4, p6, fields) => {
        const reply = { ...fields, peers: [...p4, ...p6] };
        const decoded = decodeAnnounceResponse(encodeAnnounceResponse(reply));
        const expected = Object.fromEntries(Object.entries(reply).filter(([, v]) => v !== undefined));
        assert.deepEqual(decoded, expected);
      },
    ),
    { numRuns: 500 },
  );
});

test('property: non-compact announce responses round-trip, peer ids included', () => {
  const peer = fc.oneof(
    rec({ host: fc.oneof(v4, v6), port }),
    rec({ host: fc.oneof(v4, v6), port, peerId: hash }),
  );
  fc.assert(
    fc.property(fc.array(peer, { maxLength: 30 }), fc.integer({ min: 0, max: 100000 }), (peers, interval) => {
      assert.deepEqual(decodeAnnounceResponse(encodeAnnounceResponse({ interval, peers }, { compact: false })), { interval, peers });
    }),
    { numRuns: 500 },
  );
});

test('property: scrape responses round-trip, files in info-hash byte order', () => {
  fc.assert(
    fc.property(fc.uniqueArray(rec({ infoHash: hash, complete: count, downloaded: count, incomplete: count }), { selector: (f) => f.infoHash.toString('hex'), maxLength: 20 }), (files) => {
      const sorted = [...files].sort((a, b) => Buffer.compare(a.infoHash, b.infoHash));
      assert.deepEqual(decodeScrapeResponse(encodeScrapeResponse(files)), { files: sorted });
    }),
    { numRuns: 500 },
  );
});

// ---------------------------------------------------------------- fuzz

const onlyTrackerErrors = (fn: () => unknown): void => {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof CodecError)) throw e;
    assert.ok(e instanceof TrackerError, `expected a TrackerError, got ${(e as Error).name}`);
  }
};

test('fuzz: random query strings are parsed or refused with TrackerError only', () => {
  const piece = fc.oneof(
    fc.constantFrom('info_hash=', 'peer_id=', 'port=', 'uploaded=', 'downloaded=', 'left=', 'event=', 'numwant=', 'compact=', 'key=', 'trackerid=', 'ip=', '&', '=', '%', '%2', '%zz', '%00', '%ff', '+', '-', '?', '#', '9', '99999999999999999999', 'started'),
    fc.string({ maxLength: 8 }),
    fc.string({ unit: 'binary', maxLength: 4 }),
  );
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 40 }).map((a) => a.join('')), (q) => {
      onlyTrackerErrors(() => parseAnnounceQuery(q));
      onlyTrackerErrors(() => parseScrapeQuery(q));
    }),
    { numRuns: 5000 },
  );
  // Mostly-valid queries with one field spoiled.
  const valid = queryOf(buildAnnounceUrl('http://t/announce', { ...baseParams, event: 'started' })).split('&');
  fc.assert(
    fc.property(fc.nat(), fc.string({ unit: 'binary-ascii', maxLength: 30 }), (i, junk) => {
      const parts = [...valid];
      parts[i % parts.length] = junk;
      onlyTrackerErrors(() => parseAnnounceQuery(parts.join('&')));
    }),
    { numRuns: 3000 },
  );
});

test('fuzz: random bytes and random bencoded values decode or fail with TrackerError only', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      onlyTrackerErrors(() => decodeAnnounceResponse(bytes));
      onlyTrackerErrors(() => decodeScrapeResponse(bytes));
    }),
    { numRuns: 3000 },
  );
  const { value } = fc.letrec<{ value: unknown }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.integer({ min: -1000, max: 100000 }),
      fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
      fc.uint8Array({ maxLength: 40 }),
      fc.constantFrom('1.2.3.4', '::1', 'x', 'host.example', 'never'),
      fc.array(tie('value'), { maxLength: 4 }),
      fc.dictionary(fc.constantFrom('interval', 'min interval', 'peers', 'peers6', 'ip', 'port', 'peer id', 'complete', 'incomplete', 'downloaded', 'files', 'failure reason', 'retry in', 'tracker id', 'external ip', 'x'.repeat(20)), tie('value'), { maxKeys: 6, noNullPrototype: true }),
    ),
  }));
  fc.assert(
    fc.property(value, (v) => {
      const bytes = encode(v as Parameters<typeof encode>[0]);
      onlyTrackerErrors(() => decodeAnnounceResponse(bytes));
      onlyTrackerErrors(() => decodeScrapeResponse(bytes));
      onlyTrackerErrors(() => decodeAnnounceResponse(encode({ interval: 60, peers: v as Parameters<typeof encode>[0] })));
      onlyTrackerErrors(() => decodeScrapeResponse(encode({ files: v as Parameters<typeof encode>[0] })));
    }),
    { numRuns: 3000 },
  );
});
