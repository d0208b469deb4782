import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CompactError, decodeCompactNodes, decodeCompactPeers, encodeCompactNodes, encodeCompactPeers, familyOf } from '../src/codec/compact.js';
import { formatIp, parseIp } from '../src/codec/ip.js';

test('IPv4 and IPv6 text forms parse and format canonically (RFC 5952)', () => {
  assert.deepEqual(parseIp('127.0.0.1'), Uint8Array.from([127, 0, 0, 1]));
  for (const bad of ['256.0.0.1', '1.2.3', '01.2.3.4', '1.2.3.4.5', 'a.b.c.d', '', '1:2:3:4:5:6:7:8:9', '1::2::3', ':::', 'g::1', '12345::1', '::1.2.3']) {
    assert.equal(parseIp(bad), undefined, bad);
  }
  const cases: [string, string][] = [
    ['::1', '::1'],
    ['::', '::'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['::ffff:10.1.2.3', '::ffff:10.1.2.3'],
    ['fe80::1:2', 'fe80::1:2'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
  ];
  for (const [input, canonical] of cases) assert.equal(formatIp(parseIp(input)!), canonical, input);
});

test('property: IPv4 parsing accepts exactly four decimal parts 0-255 without leading zeros', () => {
  const reference = (text: string): number[] | undefined => {
    const parts = text.split('.');
    if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255)) return undefined;
    return parts.map(Number);
  };
  const near = fc.array(fc.constantFrom('0', '1', '2', '5', '9', '.', '.', 'a', ' ', ':'), { maxLength: 17 }).map((cs) => cs.join(''));
  const quads = fc.array(fc.oneof(fc.integer({ min: 0, max: 300 }).map(String), fc.constantFrom('00', '01', '010', '1000', '')), { minLength: 3, maxLength: 5 }).map((p) => p.join('.'));
  fc.assert(
    fc.property(fc.oneof(near, quads), (text) => {
      const got = parseIp(text);
      const want = reference(text);
      if (want === undefined) assert.ok(got === undefined || got.length === 16, text);
      else assert.deepEqual(got, Uint8Array.from(want), text);
    }),
    { numRuns: 5000 },
  );
});

test('property: any 4 or 16 bytes format to text that parses back to the same bytes', () => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 })), (bytes) => {
      assert.deepEqual(parseIp(formatIp(bytes)), bytes);
    }),
    { numRuns: 2000 },
  );
});

test('compact peers round-trip for both families (BEP 23, BEP 7)', () => {
  const v4 = [{ host: '127.0.0.1', port: 6881 }, { host: '10.0.0.255', port: 65535 }];
  const b4 = encodeCompactPeers(v4, 4);
  assert.equal(b4.toString('hex'), '7f0000011ae10a0000ffffff');
  assert.deepEqual(decodeCompactPeers(b4, 4), v4);
  const v6 = [{ host: '::1', port: 1 }];
  assert.deepEqual(decodeCompactPeers(encodeCompactPeers(v6, 6), 6), v6);
  assert.equal(familyOf('::1'), 6);
  assert.equal(familyOf('1.2.3.4'), 4);
  assert.equal(familyOf('example.org'), undefined);
});

test('compact lists of the wrong length or with bad entries are refused with CompactError', () => {
  assert.throws(() => decodeCompactPeers(new Uint8Array(7), 4), (e: unknown) => e instanceof CompactError && e.code === 'BAD_LENGTH');
  assert.throws(() => decodeCompactPeers(new Uint8Array(17), 6), (e: unknown) => e instanceof CompactError && e.code === 'BAD_LENGTH');
  assert.throws(() => decodeCompactNodes(new Uint8Array(25), 4), (e: unknown) => e instanceof CompactError && e.code === 'BAD_LENGTH');
  assert.throws(() => encodeCompactPeers([{ host: '::1', port: 1 }], 4), (e: unknown) => e instanceof CompactError && e.code === 'BAD_ADDRESS');
  assert.throws(() => encodeCompactPeers([{ host: '1.2.3.4', port: 70000 }], 4), (e: unknown) => e instanceof CompactError && e.code === 'BAD_PORT');
  assert.throws(() => encodeCompactNodes([{ id: Buffer.alloc(19), address: { host: '1.2.3.4', port: 1 } }], 4), (e: unknown) => e instanceof CompactError && e.code === 'BAD_ID');
});

test('property: compact node info round-trips (BEP 5)', () => {
  const node = fc.record({
    id: fc.uint8Array({ minLength: 20, maxLength: 20 }).map((u) => Buffer.from(u)),
    address: fc.record({ host: fc.ipV4(), port: fc.integer({ min: 0, max: 65535 }) }),
  });
  fc.assert(
    fc.property(fc.array(node, { maxLength: 16 }), (nodes) => {
      const canon = nodes.map((n) => ({ id: n.id, address: { host: formatIp(parseIp(n.address.host)!), port: n.address.port } }));
      assert.deepEqual(decodeCompactNodes(encodeCompactNodes(canon, 4), 4), canon);
    }),
  );
});

test('fuzz: decoding random bytes only ever throws CompactError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), fc.constantFrom<4 | 6>(4, 6), (u, family) => {
      for (const f of [decodeCompactPeers, decodeCompactNodes]) {
        try {
          f(u, family);
        } catch (e) {
          assert.ok(e instanceof CompactError, String(e));
        }
      }
    }),
  );
});
