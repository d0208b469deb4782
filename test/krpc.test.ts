import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encode } from '../src/codec/bencode.js';
import {
  decodeCompactAddress,
  decodeKrpc,
  encodeCompactAddress,
  encodeKrpc,
  KrpcError,
  MAX_KRPC_BYTES,
  splitNodes,
  type KrpcMessage,
} from '../src/codec/krpc.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const isKrpc = (code?: string) => (e: unknown) => e instanceof KrpcError && (code === undefined || e.code === code);

test('BEP 5 examples decode to the documented fields and encode back byte for byte', () => {
  const examples: [string, (m: KrpcMessage) => void][] = [
    ['d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe', (m) => {
      assert.equal(m.y, 'q');
      assert.ok(m.y === 'q' && m.q === 'ping');
      assert.deepEqual(m.t, b('aa'));
      assert.ok(m.y === 'q' && m.id.equals(b('abcdefghij0123456789')));
    }],
    ['d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re', (m) => {
      assert.ok(m.y === 'r' && m.id.equals(b('mnopqrstuvwxyz123456')));
    }],
    ['d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe', (m) => {
      assert.ok(m.y === 'q' && m.q === 'find_node' && m.target.equals(b('mnopqrstuvwxyz123456')));
    }],
    ['d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe', (m) => {
      assert.ok(m.y === 'q' && m.q === 'get_peers' && m.infoHash.equals(b('mnopqrstuvwxyz123456')));
    }],
    ['d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re', (m) => {
      assert.ok(m.y === 'r');
      assert.deepEqual(m.values?.map((v) => v.toString('latin1')), ['axje.u', 'idhtnm']);
      assert.deepEqual(m.token, b('aoeusnth'));
    }],
    ['d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe', (m) => {
      assert.ok(m.y === 'q' && m.q === 'announce_peer');
      assert.equal(m.port, 6881);
      assert.equal(m.impliedPort, true);
    }],
    ['d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee', (m) => {
      assert.ok(m.y === 'e' && m.code === 201 && m.message === 'A Generic Error Ocurred');
    }],
  ];
  for (const [text, check] of examples) {
    const m = decodeKrpc(b(text));
    check(m);
    assert.equal(encodeKrpc(m).toString('latin1'), text);
  }
});

test('compact node info (26 and 38 bytes), the ip field and the ro flag', () => {
  const id = Buffer.alloc(20, 7);
  const n4 = Buffer.concat([id, Buffer.from([127, 0, 0, 1, 0x1a, 0xe1])]);
  const n6 = Buffer.concat([id, Buffer.alloc(15), Buffer.from([1, 0, 80])]);
  const msg = encodeKrpc({ y: 'r', t: b('xy'), id, nodes: Buffer.concat([n4, n4]), nodes6: n6, ip: { host: '1.2.3.4', port: 6881 } });
  const m = decodeKrpc(msg);
  assert.ok(m.y === 'r');
  assert.deepEqual(splitNodes(m.nodes!, 4).map((n) => n.address), [{ host: '127.0.0.1', port: 6881 }, { host: '127.0.0.1', port: 6881 }]);
  assert.deepEqual(splitNodes(m.nodes6!, 6)[0]!.address, { host: '::1', port: 80 });
  assert.deepEqual(m.ip, { host: '1.2.3.4', port: 6881 });
  const q = decodeKrpc(encodeKrpc({ y: 'q', t: b('a'), id, ro: true, q: 'ping' }));
  assert.ok(q.y === 'q' && q.ro);
  assert.deepEqual(decodeCompactAddress(encodeCompactAddress({ host: '::ffff:1.2.3.4', port: 9 })), { host: '::ffff:1.2.3.4', port: 9 });
  assert.throws(() => decodeKrpc(encode({ t: 'a', y: 'r', r: { id, nodes: Buffer.alloc(27) } })), isKrpc('BAD_LENGTH'));
  assert.throws(() => decodeKrpc(encode({ t: 'a', y: 'r', r: { id, nodes6: Buffer.alloc(26) } })), isKrpc('BAD_LENGTH'));
  assert.throws(() => decodeKrpc(encode({ t: 'a', y: 'r', ip: Buffer.alloc(5), r: { id } })), isKrpc('BAD_VALUE'));
});

test('BEP 44 put and get: value kept as its exact bencoded bytes, limits enforced', () => {
  const id = Buffer.alloc(20, 1);
  const put = { y: 'q' as const, t: b('pp'), id, ro: false, q: 'put' as const, token: b('tok'), value: encode({ a: 'hello', n: 5 }), k: Buffer.alloc(32, 2), sig: Buffer.alloc(64, 3), seq: 4, salt: b('salt'), cas: 3 };
  const m = decodeKrpc(encodeKrpc(put));
  assert.deepEqual(m, put);
  const tooBig = encode({ t: 'a', y: 'q', q: 'put', a: { id, token: 'x', v: Buffer.alloc(1000) } });
  assert.throws(() => decodeKrpc(tooBig), (e: unknown) => e instanceof KrpcError && e.code === 'TOO_LARGE' && e.transactionId?.toString() === 'a');
  const saltTooBig = encode({ t: 'a', y: 'q', q: 'put', a: { id, token: 'x', v: 'x', k: Buffer.alloc(32), sig: Buffer.alloc(64), seq: 1, salt: Buffer.alloc(65) } });
  assert.throws(() => decodeKrpc(saltTooBig), isKrpc('BAD_LENGTH'));
  const sigWithoutKey = encode({ t: 'a', y: 'q', q: 'put', a: { id, token: 'x', v: 'x', sig: Buffer.alloc(64) } });
  assert.throws(() => decodeKrpc(sigWithoutKey), isKrpc('BAD_VALUE'));
  const get = decodeKrpc(encode({ t: 'a', y: 'r', r: { id, v: [1, 'two'], seq: 9, k: Buffer.alloc(32), sig: Buffer.alloc(64), token: 'tk' } }));
  assert.ok(get.y === 'r' && get.value!.equals(encode([1, 'two'])) && get.seq === 9);
});

test('malformed queries name their transaction id so a node can answer 203; unknown methods decode for a 204', () => {
  const id = Buffer.alloc(20);
  const cases: [Record<string, unknown>, string][] = [
    [{ t: 'zz', y: 'q', q: 'find_node', a: { id } }, 'MISSING_KEY'],
    [{ t: 'zz', y: 'q', q: 'find_node', a: { id, target: Buffer.alloc(19) } }, 'BAD_LENGTH'],
    [{ t: 'zz', y: 'q', q: 'ping', a: { id: 5 } }, 'BAD_TYPE'],
    [{ t: 'zz', y: 'q', q: 'ping' }, 'MISSING_KEY'],
    [{ t: 'zz', y: 'q', q: 'announce_peer', a: { id, info_hash: id, port: 0, token: 'x' } }, 'BAD_VALUE'],
    [{ t: 'zz', y: 'q', q: 'announce_peer', a: { id, info_hash: id, port: 70000, token: 'x' } }, 'BAD_VALUE'],
    [{ t: 'zz', y: 'q', q: 'get', a: { id, target: id, seq: -1 } }, 'BAD_VALUE'],
    [{ t: 'zz', y: 'q', q: 'ping', a: { id }, ro: 2 }, 'BAD_VALUE'],
  ];
  for (const [msg, code] of cases) {
    assert.throws(() => decodeKrpc(encode(msg as never)), (e: unknown) => e instanceof KrpcError && e.code === code && e.transactionId?.toString() === 'zz', JSON.stringify(msg));
  }
  const implied = decodeKrpc(encode({ t: 'a', y: 'q', q: 'announce_peer', a: { id, info_hash: id, implied_port: 1, token: 'x' } }));
  assert.ok(implied.y === 'q' && implied.q === 'announce_peer' && implied.impliedPort && implied.port === 0);
  const unknown = decodeKrpc(encode({ t: 'a', y: 'q', q: 'vote', a: { id } }));
  assert.ok(unknown.y === 'q' && unknown.q === 'unknown' && unknown.method === 'vote');
  // Malformed responses carry no transaction id to answer: nobody answers a response.
  assert.throws(() => decodeKrpc(encode({ t: 'a', y: 'r', r: { id: 'short' } })), (e: unknown) => e instanceof KrpcError && e.transactionId === undefined);
});

test('envelope errors: not a dict, no t, bad y, oversized, non-canonical, trailing bytes', () => {
  assert.throws(() => decodeKrpc(b('le')), isKrpc('NOT_A_DICT'));
  assert.throws(() => decodeKrpc(b('d1:y1:qe')), isKrpc('MISSING_KEY'));
  assert.throws(() => decodeKrpc(b('d1:t0:1:y1:qe')), isKrpc('BAD_TYPE'));
  assert.throws(() => decodeKrpc(b('d1:t1:a1:y1:xe')), isKrpc('UNKNOWN_TYPE'));
  assert.throws(() => decodeKrpc(b('d1:t1:ae')), isKrpc('MISSING_KEY'));
  assert.throws(() => decodeKrpc(b('d1:y1:q1:t1:ae')), isKrpc('BENCODE'));
  assert.throws(() => decodeKrpc(b('d1:t1:a1:y1:eeX')), isKrpc('BENCODE'));
  assert.throws(() => decodeKrpc(new Uint8Array(MAX_KRPC_BYTES + 1)), isKrpc('TOO_LARGE'));
  assert.throws(() => decodeKrpc(b('d1:eli201ee1:t1:a1:y1:ee')), isKrpc('BAD_TYPE'));
  assert.throws(() => decodeKrpc(encode({ t: 'a', y: 'r', r: { id: Buffer.alloc(20), values: [Buffer.alloc(7)] } })), isKrpc('BAD_VALUE'));
  assert.throws(() => encodeKrpc({ y: 'q', t: b('a'), id: Buffer.alloc(19), ro: false, q: 'ping' }), isKrpc('UNENCODABLE'));
});

// ---------------------------------------------------------------- properties

const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n }).map((u) => Buffer.from(u));
const tid = fc.uint8Array({ minLength: 1, maxLength: 8 }).map((u) => Buffer.from(u));
const want = fc.option(fc.record({ n4: fc.boolean(), n6: fc.boolean() }).map((w) => ({ ...w })), { nil: undefined });
const endpoint4 = fc.record({ host: fc.ipV4(), port: fc.integer({ min: 0, max: 65535 }) }).map((e) => ({ ...e }));
const bvalue = fc.letrec((tie) => ({
  v: fc.oneof({ depthSize: 'small' }, fc.integer(), fc.string({ maxLength: 20 }), fc.array(tie('v'), { maxLength: 4 }), fc.array(fc.tuple(fc.stringMatching(/^[a-z]{0,6}$/), tie('v')), { maxLength: 4 }).map((kv) => new Map(kv))),
})).v.map((v) => encode(v as never)).filter((raw) => raw.length <= 1000);

function strip<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

const query = fc.oneof(
  fc.record({ q: fc.constant('ping' as const) }),
  fc.record({ q: fc.constant('find_node' as const), target: bytes(20), want }),
  fc.record({ q: fc.constant('get_peers' as const), infoHash: bytes(20), want }),
  fc.record({ q: fc.constant('announce_peer' as const), infoHash: bytes(20), port: fc.integer({ min: 1, max: 65535 }), impliedPort: fc.boolean(), token: fc.uint8Array({ maxLength: 20 }).map((u) => Buffer.from(u)) }),
  fc.record({ q: fc.constant('get' as const), target: bytes(20), seq: fc.option(fc.nat(), { nil: undefined }), want }),
  fc.record({ q: fc.constant('put' as const), token: bytes(8), value: bvalue }),
  fc.record({ q: fc.constant('put' as const), token: bytes(8), value: bvalue, k: bytes(32), sig: bytes(64), seq: fc.nat(), salt: fc.option(fc.uint8Array({ minLength: 1, maxLength: 64 }).map((u) => Buffer.from(u)), { nil: undefined }), cas: fc.option(fc.nat(), { nil: undefined }) }),
  fc.record({ q: fc.constant('sample_infohashes' as const), target: bytes(20) }),
);

const message: fc.Arbitrary<KrpcMessage> = fc.oneof(
  fc.tuple(tid, bytes(20), fc.boolean(), query).map(([t, id, ro, body]) => strip({ y: 'q' as const, t, id, ro, ...body }) as KrpcMessage),
  fc
    .record({
      t: tid,
      id: bytes(20),
      ip: fc.option(endpoint4, { nil: undefined }),
      nodes: fc.option(fc.integer({ min: 0, max: 8 }).chain((n) => bytes(26 * n)), { nil: undefined }),
      nodes6: fc.option(fc.integer({ min: 0, max: 4 }).chain((n) => bytes(38 * n)), { nil: undefined }),
      values: fc.option(fc.array(fc.oneof(bytes(6), bytes(18)), { maxLength: 10 }), { nil: undefined }),
      token: fc.option(bytes(8), { nil: undefined }),
      value: fc.option(bvalue, { nil: undefined }),
      seq: fc.option(fc.nat(), { nil: undefined }),
    })
    .map((r) => strip({ y: 'r' as const, ...r }) as KrpcMessage),
  fc.record({ t: tid, code: fc.integer({ min: 200, max: 399 }), message: fc.string({ maxLength: 40 }) }).map((e) => ({ y: 'e' as const, ...e })),
);

test('property: every message encodes and decodes back to itself', () => {
  fc.assert(
    fc.property(message, (m) => {
      const wire = encodeKrpc(m);
      const back = decodeKrpc(wire);
      assert.deepEqual(back, m);
      assert.deepEqual(encodeKrpc(back), wire);
    }),
    { numRuns: 1500 },
  );
});

test('fuzz: random bytes, truncations and byte flips of valid messages only ever throw KrpcError', () => {
  const onlyKrpcErrors = (data: Uint8Array): void => {
    try {
      const m = decodeKrpc(data);
      encodeKrpc(m); // whatever decodes must re-encode
    } catch (e) {
      if (!(e instanceof KrpcError)) throw e;
    }
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), onlyKrpcErrors), { numRuns: 3000 });
  fc.assert(
    fc.property(message, fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }), (m, cut, at, byte) => {
      const wire = encodeKrpc(m);
      onlyKrpcErrors(wire.subarray(0, cut % (wire.length + 1)));
      const flipped = Buffer.from(wire);
      flipped[at % flipped.length] = byte;
      onlyKrpcErrors(flipped);
    }),
    { numRuns: 3000 },
  );
});
