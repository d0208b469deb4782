import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildMagnet, decodeBase32, encodeBase32, MAX_MAGNET_LENGTH, MagnetError, parseMagnet, parsePeerAddress, type MagnetErrorCode, type MagnetPeer } from '../src/codec/magnet.js';
import { formatIp, parseIp } from '../src/codec/ip.js';

const HEX = 'c12fe1c06bba254a9dc9f519b335aa7c1367a88a';
const HASH = Buffer.from(HEX, 'hex');
const B32 = encodeBase32(HASH);
const XT = `xt=urn:btih:${HEX}`;

function expectCode(fn: () => unknown, code: MagnetErrorCode, what: string = code): MagnetError {
  let caught: MagnetError | undefined;
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof MagnetError, `${what}: expected MagnetError, got ${String(e)}`);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    caught = e;
    return true;
  });
  return caught!;
}

// ---------------------------------------------------------------- parsing

test('the info hash may be 40 hex digits or 32 base32 characters, either case', () => {
  assert.equal(B32.length, 32);
  assert.equal(B32, 'YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK');
  for (const xt of [HEX, HEX.toUpperCase(), B32, B32.toLowerCase(), 'yEx6DqDlXiSuVhOj6Um3GnNkPqJwPkEk']) {
    const m = parseMagnet(`magnet:?xt=urn:btih:${xt}`);
    assert.ok(m.infoHash.equals(HASH), xt);
    assert.equal(m.infoHashHex, HEX);
  }
  // The scheme, the key and the urn prefix are case-insensitive too.
  assert.equal(parseMagnet(`MAGNET:?XT=URN:BTIH:${HEX}`).infoHashHex, HEX);
  // A percent-encoded xt is decoded first.
  assert.equal(parseMagnet(`magnet:?xt=urn%3Abtih%3A${HEX}`).infoHashHex, HEX);
});

test('a bare magnet has no name, trackers, peers, web seeds or length', () => {
  assert.deepEqual(parseMagnet(`magnet:?${XT}`), { infoHash: HASH, infoHashHex: HEX, name: undefined, trackers: [], peers: [], webSeeds: [], length: undefined });
});

test('dn is percent-decoded, with + as a space; the first dn wins', () => {
  assert.equal(parseMagnet(`magnet:?${XT}&dn=Big%20Buck+Bunny`).name, 'Big Buck Bunny');
  assert.equal(parseMagnet(`magnet:?${XT}&dn=a%2Bb%26c%3Dd%25e%23f`).name, 'a+b&c=d%e#f');
  assert.equal(parseMagnet(`magnet:?${XT}&dn=caf%C3%A9%20%E2%9C%93`).name, 'café ✓');
  assert.equal(parseMagnet(`magnet:?dn=first&${XT}&dn=second`).name, 'first');
  assert.equal(parseMagnet(`magnet:?${XT}&dn=`).name, '');
});

test('several tr are kept in order, without duplicates or empties; + stays a +', () => {
  const m = parseMagnet(
    `magnet:?tr=udp%3A%2F%2Fa.example%3A80&${XT}&tr=http://b.example/announce?x=1%262&tr=udp%3A%2F%2Fa.example%3A80&tr=&tr=http://c+d/&tr.1=http://e/`,
  );
  assert.deepEqual(m.trackers, ['udp://a.example:80', 'http://b.example/announce?x=1&2', 'http://c+d/', 'http://e/']);
});

test('x.pe peers: IPv4, bracketed IPv6 (canonicalised) and host names', () => {
  const m = parseMagnet(`magnet:?${XT}&x.pe=10.0.0.1:6881&x.pe=[2001:DB8:0::0:1]:51413&x.pe=%5B%3A%3A1%5D%3A1&x.pe=peer.example.org:65535`);
  assert.deepEqual(m.peers, [
    { host: '10.0.0.1', port: 6881 },
    { host: '2001:db8::1', port: 51413 },
    { host: '::1', port: 1 },
    { host: 'peer.example.org', port: 65535 },
  ]);
  assert.deepEqual(parsePeerAddress('[::ffff:1.2.3.4]:80'), { host: '::ffff:1.2.3.4', port: 80 });
});

test('xl gives the length; ws gives web seeds; junk xl is ignored', () => {
  const m = parseMagnet(`magnet:?${XT}&xl=10826029&ws=http%3A%2F%2Fws.example%2Ff&ws=&ws=http://ws2/`);
  assert.equal(m.length, 10826029);
  assert.deepEqual(m.webSeeds, ['http://ws.example/f', 'http://ws2/']);
  for (const xl of ['', 'abc', '0', '-5', '1.5', '99999999999999999999']) {
    assert.equal(parseMagnet(`magnet:?${XT}&xl=${xl}`).length, undefined, xl);
  }
});

test('numbered keys (xt.1, tr.2, dn.1) count as their base key', () => {
  const m = parseMagnet(`magnet:?xt.1=urn:btih:${B32}&dn.1=n&tr.1=http://a/&tr.2=http://b/&x.pe.1=1.2.3.4:5`);
  assert.equal(m.infoHashHex, HEX);
  assert.equal(m.name, 'n');
  assert.deepEqual(m.trackers, ['http://a/', 'http://b/']);
  assert.deepEqual(m.peers, [{ host: '1.2.3.4', port: 5 }]);
});

test('unknown parameters, empty parameters, keys without a value and the fragment are ignored', () => {
  const m = parseMagnet(`magnet:?&&foo=bar&${XT}&as=http://x/&kt=a+b&mt=%zz&so=0-1&novalue&=&x.pe.bad=%&tr=http://a/#tr=http://frag/&x.pe=bad`);
  assert.equal(m.infoHashHex, HEX);
  assert.deepEqual(m.trackers, ['http://a/']);
  assert.deepEqual(m.peers, []);
});

test('the first btih wins; other xt URNs are skipped', () => {
  const other = 'ff'.repeat(20);
  assert.equal(parseMagnet(`magnet:?xt=urn:sha1:XYZ&xt=urn:btmh:1220${'ab'.repeat(32)}&${XT}&xt=urn:btih:${other}`).infoHashHex, HEX);
});

test('a magnet with only a BitTorrent v2 hash (btmh) or no xt at all has NO_INFO_HASH', () => {
  const e = expectCode(() => parseMagnet(`magnet:?xt=urn:btmh:1220${'ab'.repeat(32)}&dn=x`), 'NO_INFO_HASH');
  assert.match(e.message, /v2/);
  assert.doesNotMatch(expectCode(() => parseMagnet('magnet:?dn=x&tr=http://a/'), 'NO_INFO_HASH').message, /v2/);
  expectCode(() => parseMagnet('magnet:?'), 'NO_INFO_HASH');
  expectCode(() => parseMagnet('magnet:?xt=urn:sha1:abc'), 'NO_INFO_HASH');
});

// ---------------------------------------------------------------- errors

test('not a magnet link', () => {
  for (const s of ['', 'magnet:', 'magnet:xt=urn:btih:' + HEX, 'http://example.org/?' + XT, ' magnet:?' + XT, 'magnet?:' + XT, HEX]) {
    expectCode(() => parseMagnet(s), 'NOT_A_MAGNET', JSON.stringify(s));
  }
});

test('bad info hash lengths and characters', () => {
  const bad = [
    '',
    HEX.slice(1),
    HEX + '0',
    HEX.slice(0, 38) + 'g0',
    HEX.slice(0, 39) + ' ',
    B32.slice(1),
    B32 + 'A',
    B32.slice(0, 31) + '1',
    B32.slice(0, 31) + '0',
    B32.slice(0, 31) + '8',
    B32.slice(0, 31) + '=',
    B32.slice(0, 24) + '========',
    // Characters that upper-case to base32 letters are still not base32.
    'ı' + B32.slice(1),
    'ſ' + B32.slice(1),
    'ß' + B32.slice(1),
    'ﬀ' + B32.slice(1),
    '０'.repeat(40),
    'a'.repeat(64),
  ];
  for (const h of bad) expectCode(() => parseMagnet(`magnet:?xt=urn:btih:${encodeURIComponent(h)}`), 'BAD_INFO_HASH', JSON.stringify(h));
});

test('bad percent-encoding is BAD_ENCODING, wherever it is', () => {
  for (const p of [`dn=%E0%A4%A`, 'dn=%zz', 'dn=%', 'tr=%C3', 'ws=%FF', 'xt=urn:btih:%ZZ', 'x.pe=%5', 'xl=%', 'dn=%ED%A0%80']) {
    expectCode(() => parseMagnet(`magnet:?${XT}&${p}`), 'BAD_ENCODING', p);
  }
});

test('bad x.pe peers are BAD_PEER', () => {
  for (const pe of ['1.2.3.4:0', '1.2.3.4:70000', '1.2.3.4:65536', '1.2.3.4', '1.2.3.4:', ':80', '[::1]', '[::1]:0', '::1:80', '[::1:80', 'a b:80', 'host:port', '1.2.3.4:-1', '1.2.3.4:123456', '[]:80', '[zz::]:80', 'x'.repeat(254) + ':80', '']) {
    expectCode(() => parseMagnet(`magnet:?${XT}&x.pe=${encodeURIComponent(pe)}`), 'BAD_PEER', JSON.stringify(pe));
    expectCode(() => parsePeerAddress(pe), 'BAD_PEER', JSON.stringify(pe));
  }
});

test('too long, or too many parameters, is TOO_LARGE (checked before anything else)', () => {
  const long = `magnet:?${XT}&dn=${'a'.repeat(MAX_MAGNET_LENGTH)}`;
  expectCode(() => parseMagnet(long), 'TOO_LARGE', 'long magnet');
  expectCode(() => parseMagnet('x'.repeat(MAX_MAGNET_LENGTH + 1)), 'TOO_LARGE', 'long junk');
  const fits = `magnet:?${XT}&dn=`;
  assert.equal(parseMagnet(fits + 'a'.repeat(MAX_MAGNET_LENGTH - fits.length)).name!.length, MAX_MAGNET_LENGTH - fits.length);
  expectCode(() => parseMagnet(`magnet:?${XT}${'&a=1'.repeat(1000)}`), 'TOO_LARGE', 'many parameters');
});

test('buildMagnet: hex hash, name only when non-empty, refuses a hash that is not 20 bytes', () => {
  assert.equal(buildMagnet({ infoHash: HASH }), `magnet:?${XT}`);
  assert.equal(buildMagnet({ infoHash: HASH, name: '' }), `magnet:?${XT}`);
  assert.equal(
    buildMagnet({ infoHash: HASH, name: 'a b+c', trackers: ['http://t/a?b=1&c'], webSeeds: ['http://w/'], peers: [{ host: '::1', port: 1 }, { host: '1.2.3.4', port: 2 }] }),
    `magnet:?${XT}&dn=a%20b%2Bc&tr=http%3A%2F%2Ft%2Fa%3Fb%3D1%26c&ws=http%3A%2F%2Fw%2F&x.pe=%5B%3A%3A1%5D%3A1&x.pe=1.2.3.4%3A2`,
  );
  for (const n of [0, 19, 21, 32]) expectCode(() => buildMagnet({ infoHash: new Uint8Array(n) }), 'BAD_INFO_HASH', `${n} bytes`);
});

// ---------------------------------------------------------------- base32

test('base32 follows RFC 4648 (no padding) and decodes case-insensitively', () => {
  const vectors: [string, string][] = [
    ['', ''],
    ['f', 'MY'],
    ['fo', 'MZXQ'],
    ['foo', 'MZXW6'],
    ['foob', 'MZXW6YQ'],
    ['fooba', 'MZXW6YTB'],
    ['foobar', 'MZXW6YTBOI'],
  ];
  for (const [plain, coded] of vectors) {
    assert.equal(encodeBase32(Buffer.from(plain)), coded);
    assert.equal(decodeBase32(coded)!.toString(), plain);
    assert.equal(decodeBase32(coded.toLowerCase())!.toString(), plain);
  }
  for (const bad of ['MZXW6=', 'MZ XW', '0', '1', '8', '9', 'ı', 'ß', 'ſ', 'Ａ']) assert.equal(decodeBase32(bad), undefined, bad);
});

test('property: decodeBase32(encodeBase32(bytes)) gives the bytes back, in either case', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (u) => {
      const text = encodeBase32(u);
      assert.match(text, /^[A-Z2-7]*$/);
      assert.equal(text.length, Math.ceil((u.length * 8) / 5));
      assert.deepEqual(decodeBase32(text), Buffer.from(u));
      assert.deepEqual(decodeBase32(text.toLowerCase()), Buffer.from(u));
    }),
    { numRuns: 1000 },
  );
});

test('property: only the 32 base32 letters of either case ever decode', () => {
  // The non-ASCII characters listed are exactly those whose toUpperCase() is made of base32 letters.
  const unit = fc.oneof(fc.constantFrom(...'ßıſﬀﬁﬂﬃﬄﬅﬆaZ27018='), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }));
  fc.assert(
    fc.property(fc.string({ unit, maxLength: 40 }), (s) => {
      assert.equal(decodeBase32(s) !== undefined, /^[A-Za-z2-7]*$/.test(s), JSON.stringify(s));
    }),
    { numRuns: 2000 },
  );
});

// ---------------------------------------------------------------- round trip

const textUnit = fc.oneof(fc.constantFrom('&', '=', '+', '%', '#', '?', ' ', '%20', '%zz', '/', ':', '[', ']'), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }));
const textArb = (minLength: number) => fc.string({ unit: textUnit, minLength, maxLength: 40 });

const peerArb: fc.Arbitrary<MagnetPeer> = fc.record({
  host: fc.oneof(
    fc.ipV4(),
    fc.ipV6().map((h) => formatIp(parseIp(h)!)),
    fc.domain(),
  ),
  port: fc.integer({ min: 1, max: 65535 }),
}, { noNullPrototype: true });

test('property: buildMagnet -> parseMagnet round-trips the hash, name, trackers, web seeds and peers', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 20, maxLength: 20 }),
      fc.option(textArb(0), { nil: undefined }),
      fc.uniqueArray(fc.oneof(fc.webUrl({ withQueryParameters: true, withFragments: true }), textArb(1)), { maxLength: 6 }),
      fc.array(fc.oneof(fc.webUrl(), textArb(1)), { maxLength: 3 }),
      fc.array(peerArb, { maxLength: 4 }),
      (infoHash, name, trackers, webSeeds, peers) => {
        const uri = buildMagnet({ infoHash, name, trackers, webSeeds, peers });
        const m = parseMagnet(uri);
        assert.deepEqual(m.infoHash, Buffer.from(infoHash));
        assert.equal(m.infoHashHex, Buffer.from(infoHash).toString('hex'));
        assert.equal(m.name, name === '' ? undefined : name);
        assert.deepEqual(m.trackers, trackers);
        assert.deepEqual(m.webSeeds, webSeeds);
        assert.deepEqual(m.peers, peers);
        assert.equal(m.length, undefined);
        // Building again from what was parsed gives the same link.
        assert.equal(buildMagnet(m), uri);
      },
    ),
    { numRuns: 1000 },
  );
});

test('property: a base32 magnet parses to the same hash as the hex one', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 20, maxLength: 20 }), fc.boolean(), (u, lower) => {
      const b32 = encodeBase32(u);
      const fromB32 = parseMagnet(`magnet:?xt=urn:btih:${lower ? b32.toLowerCase() : b32}`);
      const fromHex = parseMagnet(buildMagnet({ infoHash: u }));
      assert.deepEqual(fromB32.infoHash, fromHex.infoHash);
    }),
  );
});

test('property: any valid host:port survives parsePeerAddress', () => {
  fc.assert(
    fc.property(peerArb, (p) => {
      const text = p.host.includes(':') ? `[${p.host}]:${p.port}` : `${p.host}:${p.port}`;
      assert.deepEqual(parsePeerAddress(text), p);
    }),
  );
});

// ---------------------------------------------------------------- fuzz

function onlyMagnetErrors(uri: string): void {
  try {
    parseMagnet(uri);
  } catch (e) {
    assert.ok(e instanceof MagnetError, `non-MagnetError for ${JSON.stringify(uri)}: ${String(e)}`);
  }
}

test('fuzz: random text after "magnet:?" never throws anything but a MagnetError', () => {
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => onlyMagnetErrors(`magnet:?${s}`)), { numRuns: 3000 });
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => onlyMagnetErrors(s)), { numRuns: 1000 });
  // Tokens from the magnet grammar reach further into the parser.
  const token = fc.constantFrom(
    'xt=', 'urn:btih:', 'urn:btmh:', HEX, B32, B32.toLowerCase(), 'dn=', 'tr=', 'ws=', 'xl=', 'x.pe=', 'xt.1=', '.2', '&', '=', '%', '%2', '%C3', '%A9', '%5B', '%5D', '%3A',
    '[', ']', ':', '::1', '1.2.3.4', '0', '7', '65535', '99999', '+', '#', 'a', 'é', '\uD800', ' ', '-',
  );
  fc.assert(fc.property(fc.array(token, { maxLength: 30 }), (ts) => onlyMagnetErrors(`magnet:?${ts.join('')}`)), { numRuns: 5000 });
  fc.assert(fc.property(fc.array(token, { maxLength: 20 }), (ts) => onlyMagnetErrors(`magnet:?${XT}&${ts.join('')}`)), { numRuns: 3000 });
});

test('fuzz: parsePeerAddress on random text throws only MagnetError', () => {
  fc.assert(
    fc.property(fc.string({ unit: fc.constantFrom(...'[]:.0123456789abcdefx-%'.split('')), maxLength: 50 }), (s) => {
      try {
        const p = parsePeerAddress(s);
        assert.ok(p.port >= 1 && p.port <= 65535);
      } catch (e) {
        assert.ok(e instanceof MagnetError, String(e));
      }
    }),
    { numRuns: 3000 },
  );
});
