import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RoutingTable, type NodeEntry } from '../src/core/dht/routing-table.js';
import { addrOf, bep42Id, commonPrefixBits, compareDistance, crc32c, endpointOf, idOf, isBep42Id, randomIdWithPrefix, type Addr, type Id } from '../src/core/dht/id.js';
import { formatIp, parseIp } from '../src/codec/ip.js';
import { seededRandom } from '../src/runtime/sim/index.js';

const hexId = (h: string): Id => Buffer.from(h, 'hex').toString('latin1');
const addr = (host: string, port = 6881): Addr => addrOf({ host, port })!;

test('CRC32-C and the BEP 42 test vectors', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  // BEP 42's table: IP, rand, expected id prefix (first 21 bits checked) and last byte.
  const vectors: [string, number, string][] = [
    ['124.31.75.21', 1, '5fbfbf'],
    ['21.75.31.124', 86, '5a3ce9'],
    ['65.23.51.170', 22, 'a5d432'],
    ['84.124.73.14', 65, '1b0321'],
    ['43.213.53.83', 90, 'e56f6c'],
  ];
  const random = seededRandom(1);
  for (const [ip, rand, prefix] of vectors) {
    const bytes = parseIp(ip)!;
    const id = bep42Id(bytes, random, rand & 7);
    const b = Buffer.from(id, 'latin1');
    assert.equal(b.subarray(0, 2).toString('hex'), prefix.slice(0, 4), ip);
    assert.equal(b[2]! & 0xf8, Buffer.from(prefix, 'hex')[2]! & 0xf8, ip);
    assert.equal(b[19], rand & 7);
    assert.ok(isBep42Id(id, bytes));
    // The official vectors, with their real last byte, verify too.
    const official = Buffer.from(id, 'latin1');
    official[19] = rand;
    assert.ok(isBep42Id(official.toString('latin1'), bytes), `${ip} official`);
    assert.ok(!isBep42Id(id, parseIp('1.1.1.1')!));
  }
});

test('id helpers: prefix bits, distance order, ids within a bucket', () => {
  const a = hexId('ff'.repeat(20));
  assert.equal(commonPrefixBits(a, a), 160);
  assert.equal(commonPrefixBits(a, hexId('7f' + 'ff'.repeat(19))), 0);
  assert.equal(commonPrefixBits(a, hexId('ff' + 'fe' + 'ff'.repeat(18))), 15);
  const random = seededRandom(2);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 159 }), fc.uint8Array({ minLength: 20, maxLength: 20 }), (bits, base) => {
      const id = randomIdWithPrefix(idOf(base), bits, random);
      assert.equal(commonPrefixBits(idOf(base), id), bits);
    }),
  );
  const t = hexId('00'.repeat(20));
  assert.ok(compareDistance(t, hexId('01' + '00'.repeat(19)), hexId('02' + '00'.repeat(19))) < 0);
});

test('buckets split along our own id; a full far bucket keeps newcomers as replacements', () => {
  const random = seededRandom(3);
  const self = hexId('00'.repeat(20));
  const table = new RoutingTable(self, 0, { k: 4, replacements: 2 });
  // Far nodes (first bit 1): one bucket of 4 once split off.
  const far = Array.from({ length: 7 }, (_, i) => hexId('80' + i.toString(16).padStart(2, '0') + '00'.repeat(18)));
  far.forEach((id, i) => table.seen(0, id, addr(`10.0.0.${i + 1}`), true));
  assert.equal(table.size, 4);
  assert.equal(table.stats(0).replacements, 2);
  // Near nodes make the own bucket split further.
  for (let i = 0; i < 20; i++) table.seen(0, randomIdWithPrefix(self, 1 + (i % 10), random), addr(`10.0.1.${i + 1}`), true);
  assert.ok(table.bucketCount > 2);
  for (const e of table.entries()) assert.notEqual(e.id, self);
  // A node that only queried us is not added; our own id never is.
  assert.equal(table.seen(0, hexId('c0' + '00'.repeat(19)), addr('10.0.2.1'), false), 'rejected');
  assert.equal(table.seen(0, self, addr('10.0.2.2'), true), 'rejected');
});

test('good, questionable and bad; a bad node is replaced by the best replacement', () => {
  const self = hexId('00'.repeat(20));
  const table = new RoutingTable(self, 0, { k: 2, replacements: 2, maxFails: 2, goodMs: 1000 });
  const ids = ['80', '81', '82'].map((p) => hexId(p + '00'.repeat(19)));
  table.seen(0, ids[0]!, addr('10.0.0.1'), true);
  table.seen(0, ids[1]!, addr('10.0.0.2'), true);
  // Force the far bucket to exist and be full (own bucket split first).
  const toPing: import('../src/core/dht/routing-table.js').NodeEntry[] = [];
  assert.equal(table.seen(2000, ids[2]!, addr('10.0.0.3'), true, toPing), 'replacement');
  assert.deepEqual(toPing.map((n) => n.id), [ids[0], ids[1]]); // both questionable by now
  assert.equal(table.state(table.get(ids[0]!)!, 2000), 'questionable');
  table.failed(2000, ids[0]!);
  assert.equal(table.has(ids[0]!), true); // one failure: questionable still
  table.failed(2000, ids[0]!);
  assert.equal(table.has(ids[0]!), false); // bad: replaced
  assert.equal(table.has(ids[2]!), true);
  // A node heard from again is good; a good node keeps its address against a spoofed one.
  table.seen(2100, ids[1]!, addr('10.0.0.2'), true);
  assert.equal(table.state(table.get(ids[1]!)!, 2100), 'good');
  assert.equal(table.seen(2100, ids[1]!, addr('10.9.9.9'), true), 'rejected');
  assert.equal(table.get(ids[1]!)!.addr, addr('10.0.0.2'));
});

test('BEP 42: per-prefix limit for public addresses; a matching id takes the slot of a non-matching one', () => {
  const random = seededRandom(4);
  const self = hexId('00'.repeat(20));
  const table = new RoutingTable(self, 0, { k: 3, prefixLimit: 1 });
  const far = (i: number): Id => hexId('8' + i.toString(16) + '00'.repeat(19));
  assert.equal(table.seen(0, far(1), addr('8.8.8.1'), true), 'added');
  assert.equal(table.seen(0, far(2), addr('8.8.8.2'), true), 'rejected'); // same /24
  assert.equal(table.seen(0, far(3), addr('10.0.0.1'), true), 'added'); // local: exempt
  assert.equal(table.seen(0, far(4), addr('10.0.0.2'), true), 'added');
  // Bucket of 3 is full; split the own bucket away first by adding near nodes.
  for (let i = 0; i < 3; i++) table.seen(0, randomIdWithPrefix(self, 3 + i, random), addr(`10.1.0.${i + 1}`), true);
  // A secure id for a public address, in the same far bucket: it evicts the insecure 8.8.8.1 node.
  const ip = parseIp('9.9.9.9')!;
  let secure: Id;
  do secure = bep42Id(ip, random);
  while ((secure.charCodeAt(0) & 0x80) === 0);
  assert.equal(table.seen(0, secure, addr('9.9.9.9'), true), 'added');
  assert.equal(table.has(far(1)), false);
  assert.equal(table.has(secure), true);
});

test('property: addrOf and endpointOf agree with parseIp/formatIp for any text and port', () => {
  const reference = (host: string, port: number): Addr | undefined => {
    const ip = parseIp(host);
    if (ip === undefined || !Number.isInteger(port) || port < 0 || port > 65535) return undefined;
    return Buffer.from(ip).toString('latin1') + String.fromCharCode(port >> 8, port & 0xff);
  };
  const near = fc.array(fc.constantFrom('0', '1', '2', '5', '9', '.', '.', 'a', ':', 'f'), { maxLength: 17 }).map((cs) => cs.join(''));
  const quads = fc.array(fc.oneof(fc.integer({ min: 0, max: 300 }).map(String), fc.constantFrom('00', '01', '')), { minLength: 3, maxLength: 5 }).map((p) => p.join('.'));
  const port = fc.oneof(fc.integer({ min: -2, max: 65537 }), fc.constant(1.5));
  fc.assert(
    fc.property(fc.oneof(near, quads, fc.ipV4(), fc.ipV6()), port, (host, p) => {
      const got = addrOf({ host, port: p });
      assert.equal(got, reference(host, p));
      if (got !== undefined) assert.deepEqual(endpointOf(got), { host: formatIp(parseIp(host)!), port: p });
    }),
    { numRuns: 5000 },
  );
});

test('property: closest() returns the n closest non-bad nodes in distance order', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ minLength: 20, maxLength: 20 }), { minLength: 1, maxLength: 120 }), fc.uint8Array({ minLength: 20, maxLength: 20 }), fc.uint8Array({ minLength: 20, maxLength: 20 }), (ids, selfB, targetB) => {
      const self = idOf(selfB);
      const target = idOf(targetB);
      const table = new RoutingTable(self, 0, { k: 8, prefixLimit: 0 });
      ids.forEach((b, i) => table.seen(0, idOf(b), addr(`10.${(i >> 8) & 255}.${i & 255}.1`), true));
      const all = [...table.entries()].map((e) => e.id).sort((a, b) => compareDistance(target, a, b));
      const got = table.closest(target, 8, 0).map((e) => e.id);
      assert.deepEqual(got, all.slice(0, 8));
    }),
    { numRuns: 300 },
  );
  // Deep tables (ids sharing long prefixes with ours, targets near us), bad nodes, both families, any n.
  const random = seededRandom(5);
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 20, maxLength: 20 }),
      fc.array(fc.record({ bits: fc.integer({ min: 0, max: 24 }), v6: fc.boolean(), fails: fc.nat(3) }), { minLength: 1, maxLength: 150 }),
      fc.integer({ min: 0, max: 30 }),
      fc.oneof(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 15, max: 80 })),
      fc.constantFrom(undefined, 4 as const, 6 as const),
      (selfB, nodes, targetBits, n, family) => {
        const self = idOf(selfB);
        const table = new RoutingTable(self, 0, { k: 8, prefixLimit: 0 });
        nodes.forEach((x, i) => {
          const id = randomIdWithPrefix(self, x.bits, random);
          const a = x.v6 ? Buffer.concat([Buffer.from([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i >> 8, i & 255]), Buffer.from([0x1a, 0xe1])]).toString('latin1') : addr(`10.${(i >> 8) & 255}.${i & 255}.1`);
          if (table.seen(0, id, a, true) === 'added') for (let f = 0; f < x.fails; f++) table.failed(0, id);
        });
        const target = randomIdWithPrefix(self, targetBits, random);
        const usable = [...table.entries()].filter((e) => table.state(e, 0) !== 'bad' && (family === undefined || (family === 4) === (e.addr.length === 6)));
        const want = usable.map((e) => e.id).sort((a, b) => compareDistance(target, a, b)).slice(0, n);
        assert.deepEqual(table.closest(target, n, 0, family).map((e) => e.id), want);
      },
    ),
    { numRuns: 400 },
  );
});

test('property: questionable() gives what a walk over every node gives, also when it skips a quiet table', () => {
  const reference = (table: RoutingTable, now: number, max: number, intervalMs: number): NodeEntry[] => {
    const out: NodeEntry[] = [];
    for (let i = 0; i < table.bucketCount; i++) {
      for (const n of table.bucketEntries(i).nodes) {
        if (out.length >= max) return out;
        if (table.state(n, now) === 'questionable' && now - n.lastPing >= intervalMs) out.push(n);
      }
    }
    return out;
  };
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 20, maxLength: 20 }),
      fc.array(fc.uint8Array({ minLength: 20, maxLength: 20 }), { minLength: 1, maxLength: 30 }),
      fc.array(fc.record({ op: fc.integer({ min: 0, max: 3 }), node: fc.nat(), dt: fc.oneof(fc.nat(50), fc.nat(1500)), max: fc.integer({ min: 1, max: 4 }) }), { maxLength: 120 }),
      (selfB, idBytes, ops) => {
        const ids = idBytes.map((b) => idOf(b));
        const table = new RoutingTable(idOf(selfB), 0, { k: 4, replacements: 2, goodMs: 1000, maxFails: 2 });
        let now = 0;
        for (const { op, node, dt, max } of ops) {
          now += dt;
          const i = node % ids.length;
          const a = addr(`10.0.${i}.1`);
          if (op === 0) table.seen(now, ids[i]!, a, true);
          else if (op === 1) table.seen(now, ids[i]!, a, false);
          else if (op === 2) table.failed(now, ids[i]!);
          else {
            const want = reference(table, now, max, 300);
            const got = table.questionable(now, max, 300);
            assert.deepEqual(got, want);
            for (const n of got) n.lastPing = now; // what DhtCore's pingNode does
          }
        }
      },
    ),
    { numRuns: 500 },
  );
});

test('bucketStats and bucketEntries agree with stats(), entries() and each node\'s bucket, whatever was inserted or failed', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 20, maxLength: 20 }),
      fc.array(fc.record({ id: fc.uint8Array({ minLength: 20, maxLength: 20 }), host: fc.integer({ min: 1, max: 250 }), fail: fc.nat(2), at: fc.nat(5000) }), { maxLength: 80 }),
      (selfBytes, ops) => {
        const self = idOf(selfBytes);
        const table = new RoutingTable(self, 0, { k: 4, replacements: 3, goodMs: 2000 });
        for (const o of ops) {
          const id = idOf(o.id);
          table.seen(o.at, id, addr(`10.${o.host}.0.1`), true);
          for (let i = 0; i < o.fail; i++) table.failed(o.at, id);
        }
        const now = 3000;
        const per = table.bucketStats(now);
        const all = table.stats(now);
        assert.equal(per.length, table.bucketCount);
        const sum = (f: (b: (typeof per)[number]) => number): number => per.reduce((a, b) => a + f(b), 0);
        assert.deepEqual(
          { nodes: sum((b) => b.nodes), good: sum((b) => b.good), questionable: sum((b) => b.questionable), bad: sum((b) => b.bad), replacements: sum((b) => b.replacements) },
          { nodes: all.nodes, good: all.good, questionable: all.questionable, bad: all.bad, replacements: all.replacements },
        );
        const listed: string[] = [];
        per.forEach((b, i) => {
          const e = table.bucketEntries(i);
          assert.equal(e.nodes.length, b.nodes);
          assert.equal(e.replacements.length, b.replacements);
          assert.ok(b.nodes <= 4 && b.replacements <= 3);
          for (const n of [...e.nodes, ...e.replacements]) assert.equal(Math.min(commonPrefixBits(self, n.id), per.length - 1), i);
          listed.push(...e.nodes.map((n) => n.id));
        });
        assert.deepEqual(listed, [...table.entries()].map((n) => n.id));
        assert.deepEqual(table.bucketEntries(per.length), { nodes: [], replacements: [] });
      },
    ),
    { numRuns: 200 },
  );
});

test('staleBucketTarget: an empty bucket is due after emptyRefreshMs, a full one after refreshMs, a short one in between', () => {
  const random = seededRandom(9);
  const self = hexId('00'.repeat(20));
  const table = new RoutingTable(self, 0, { k: 4 });
  // Bucket 0 (first bit 1) full, bucket 1 (01...) two of four, buckets 2 and 3 empty, bucket 4 (00001...)
  // full, and the last one empty (0c, a fifth 00001 node, split the table down to it, then became a replacement).
  const ids = ['80', '90', 'a0', 'b0', '40', '50', '08', '09', '0a', '0b', '0c'].map((h) => hexId(h + '00'.repeat(19)));
  ids.forEach((id, i) => table.seen(0, id, addr(`10.0.0.${i + 1}`), true));
  assert.deepEqual(table.bucketStats(0).map((b) => b.nodes), [4, 2, 0, 0, 4, 0]);
  const due = (now: number): number | undefined => {
    const t = table.staleBucketTarget(now, 8000, random, 1000);
    return t === undefined ? undefined : Math.min(commonPrefixBits(self, t), 5);
  };
  assert.equal(due(999), undefined);
  // The empty buckets are due after 1000 ms, one per call (each counts as refreshed when handed out).
  const empty = [due(1000), due(1000), due(1000)];
  assert.deepEqual([...empty].sort(), [2, 3, 5]);
  assert.equal(due(1999), undefined);
  // The half-full bucket 1 is due after half of refreshMs (the stalest due bucket comes first).
  assert.equal(due(3999), 2, 'an empty bucket is due again emptyRefreshMs after its refresh');
  assert.equal(due(4000), 1);
  // The full ones only after refreshMs.
  for (let i = 0; i < 4; i++) assert.ok(![0, 1, 4].includes(due(7999)!));
  const full = [due(8000), due(8000)].sort();
  assert.deepEqual(full, [0, 4]);
});
