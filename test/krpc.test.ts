import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decode, encode } from '../src/codec/bencode.js';
import {
  decodeCompactAddress,
  decodeKrpc,
  decodeKrpcFast,
  decodeKrpcGeneric,
  encodeCompactAddress,
  encodeKrpc,
  encodeKrpcGeneric,
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

// ---------------------------------------------------------------- the fast paths against the generic codec

/** Both encoders give the same bytes, or both refuse with KrpcError UNENCODABLE. */
function sameEncoding(m: KrpcMessage): void {
  let fast: Buffer | KrpcError;
  let generic: Buffer | KrpcError;
  try {
    fast = encodeKrpc(m);
  } catch (e) {
    assert.ok(e instanceof KrpcError && e.code === 'UNENCODABLE', `fast encoder threw ${String(e)}`);
    fast = e;
  }
  try {
    generic = encodeKrpcGeneric(m);
  } catch (e) {
    assert.ok(e instanceof KrpcError && e.code === 'UNENCODABLE', `generic encoder threw ${String(e)}`);
    generic = e;
  }
  if (fast instanceof KrpcError || generic instanceof KrpcError) {
    assert.ok(fast instanceof KrpcError && generic instanceof KrpcError, `only one encoder refused: fast ${String(fast)}, generic ${String(generic)}`);
  } else {
    assert.equal(fast.toString('hex'), generic.toString('hex'));
  }
}

/** Whatever the fast decoder returns, the generic decoder returns too (and it never returns what the generic one refuses). */
function sameDecoding(data: Uint8Array): KrpcMessage | undefined {
  const fast = decodeKrpcFast(data);
  if (fast === undefined) return undefined;
  const generic = decodeKrpcGeneric(data); // throws (failing the test) if the fast path accepted something invalid
  assert.deepStrictEqual(fast, generic);
  return fast;
}

const version = fc.option(fc.uint8Array({ maxLength: 16 }).map((u) => Buffer.from(u)), { nil: undefined });
const withVersion = fc.tuple(message, version).map(([m, v]) => (v === undefined ? m : ({ ...m, version: v } as KrpcMessage)));

// Messages as a careless caller might build them: wrong lengths, odd numbers, unknown methods, any text.
const oddBytes = fc.oneof(bytes(0), bytes(19), bytes(20), bytes(21), bytes(26), bytes(27), bytes(38), bytes(64), bytes(65));
const oddInt = fc.oneof(fc.integer({ min: -5, max: 70_000 }), fc.constant(Number.MAX_SAFE_INTEGER), fc.constant(2 ** 53), fc.constant(1.5), fc.constant(-0));
const oddMessage: fc.Arbitrary<KrpcMessage> = fc.oneof(
  fc.record({ t: fc.oneof(tid, bytes(0), bytes(33)), id: oddBytes, ro: fc.boolean(), version, target: oddBytes, want }).map(({ version: v, ...r }) => strip({ y: 'q' as const, q: 'find_node' as const, ...r, version: v }) as KrpcMessage),
  fc.record({ t: tid, id: oddBytes, ro: fc.boolean(), infoHash: oddBytes, port: oddInt, impliedPort: fc.boolean(), token: oddBytes }).map((r) => ({ y: 'q' as const, q: 'announce_peer' as const, ...r }) as KrpcMessage),
  fc.record({ t: tid, id: bytes(20), ro: fc.boolean(), target: oddBytes, seq: fc.option(oddInt, { nil: undefined }), want }).map((r) => strip({ y: 'q' as const, q: 'get' as const, ...r }) as KrpcMessage),
  fc.record({ t: tid, id: bytes(20), ro: fc.boolean(), token: bytes(4), value: fc.oneof(bvalue, oddBytes), k: fc.option(oddBytes, { nil: undefined }), sig: fc.option(oddBytes, { nil: undefined }), seq: fc.option(oddInt, { nil: undefined }), salt: fc.option(fc.oneof(bytes(3), bytes(65)), { nil: undefined }), cas: fc.option(oddInt, { nil: undefined }) }).map((r) => strip({ y: 'q' as const, q: 'put' as const, ...r }) as KrpcMessage),
  fc.record({ t: tid, id: bytes(20), ro: fc.boolean(), method: fc.string({ maxLength: 12, unit: 'binary' }) }).map((r) => ({ y: 'q' as const, q: 'unknown' as const, ...r }) as KrpcMessage),
  fc
    .record({
      t: tid,
      id: oddBytes,
      version,
      ip: fc.option(fc.oneof(endpoint4, fc.record({ host: fc.oneof(fc.ipV6(), fc.constant('not an ip')), port: oddInt })), { nil: undefined }),
      nodes: fc.option(oddBytes, { nil: undefined }),
      nodes6: fc.option(oddBytes, { nil: undefined }),
      values: fc.option(fc.oneof(fc.array(fc.oneof(bytes(6), bytes(18)), { maxLength: 10 }), fc.array(bytes(18), { minLength: 190, maxLength: 240 })), { nil: undefined }),
      token: fc.option(oddBytes, { nil: undefined }),
      value: fc.option(fc.oneof(bvalue, oddBytes), { nil: undefined }),
      k: fc.option(oddBytes, { nil: undefined }),
      sig: fc.option(oddBytes, { nil: undefined }),
      seq: fc.option(oddInt, { nil: undefined }),
      samples: fc.option(oddBytes, { nil: undefined }),
      interval: fc.option(oddInt, { nil: undefined }),
      num: fc.option(oddInt, { nil: undefined }),
    })
    .map((r) => strip({ y: 'r' as const, ...r }) as KrpcMessage),
  fc.record({ t: tid, code: oddInt, message: fc.string({ maxLength: 40, unit: 'binary' }), ip: fc.option(endpoint4, { nil: undefined }) }).map((e) => strip({ y: 'e' as const, ...e }) as KrpcMessage),
);

// Responses around the size limit.
const big = fc
  .record({ t: tid, id: bytes(20), values: fc.array(fc.oneof(bytes(6), bytes(18)), { minLength: 150, maxLength: 240 }), token: fc.option(bytes(8), { nil: undefined }) })
  .map((r) => strip({ y: 'r' as const, ...r }) as KrpcMessage);

test('property: the fast encoder writes exactly the bytes of the generic one, and refuses what it refuses', () => {
  fc.assert(fc.property(withVersion, sameEncoding), { numRuns: 2000 });
  fc.assert(fc.property(oddMessage, sameEncoding), { numRuns: 3000 });
  fc.assert(fc.property(big, sameEncoding), { numRuns: 300 });
  // Exactly at the limit, and one byte over it.
  const id = Buffer.alloc(20, 1);
  const fill = (n: number): KrpcMessage => ({ y: 'r', t: b('aa'), id, token: Buffer.alloc(n) });
  const base = encodeKrpcGeneric(fill(0)).length;
  const at = MAX_KRPC_BYTES - base - 3; // the token's length prefix grows from 1 to 4 digits
  assert.equal(encodeKrpc(fill(at)).length, MAX_KRPC_BYTES);
  sameEncoding(fill(at));
  assert.throws(() => encodeKrpc(fill(at + 1)), isKrpc('UNENCODABLE'));
  sameEncoding(fill(at + 1));
});

test('encoded messages kept side by side stay intact, failed encodings included (they share slabs)', () => {
  const msgs = fc.sample(fc.oneof(withVersion, oddMessage, big), { numRuns: 3000, seed: 11 });
  const kept: [KrpcMessage, Buffer][] = [];
  for (const m of msgs) {
    try {
      kept.push([m, encodeKrpc(m)]);
    } catch (e) {
      assert.ok(e instanceof KrpcError);
    }
  }
  assert.ok(kept.length > 1000);
  for (const [m, wire] of kept) assert.equal(wire.toString('hex'), encodeKrpcGeneric(m).toString('hex'));
});

// Dictionaries that look like KRPC: the known keys (and some others) with values of every type.
const anyBytes = fc.oneof(bytes(0), bytes(1), bytes(2), bytes(6), bytes(16), bytes(17), bytes(18), bytes(20), bytes(26), bytes(32), bytes(33), bytes(38), bytes(52), bytes(64), bytes(65), fc.constantFrom(...['n4', 'n6', 'q', 'r', 'e', 'ping', 'find_node', 'get_peers', 'announce_peer', 'get', 'put', 'vote'].map((s) => b(s))));
const anyInt = fc.oneof(fc.constantFrom(0, 1, 2, 6881, 65535, 65536, -1, Number.MAX_SAFE_INTEGER), fc.constant(2n ** 60n));
const anyValue = fc.oneof(anyBytes, anyInt, fc.array(anyBytes, { maxLength: 3 }), fc.array(anyBytes, { minLength: 8, maxLength: 10 }), fc.array(anyInt, { maxLength: 2 }), fc.constant(new Map([['x', 1]])));
const bodyKeys = ['id', 'target', 'info_hash', 'token', 'port', 'implied_port', 'seq', 'want', 'nodes', 'nodes6', 'values', 'v', 'k', 'sig', 'samples', 'interval', 'num', 'zz'];
const body = fc.dictionary(fc.constantFrom(...bodyKeys), anyValue, { maxKeys: 8 }).map((d) => new Map(Object.entries(d)));
const krpcLike = fc
  .record(
    {
      a: fc.oneof(body, anyValue),
      e: fc.oneof(fc.tuple(anyInt, anyBytes), anyValue),
      ip: anyValue,
      q: anyValue,
      r: fc.oneof(body, anyValue),
      ro: anyValue,
      t: anyValue,
      v: anyValue,
      y: fc.oneof(fc.constantFrom(b('q'), b('r'), b('e')), anyValue),
      zz: anyValue,
    },
    { requiredKeys: [] },
  )
  .map((d) => encode(new Map(Object.entries(d)) as never));

/** The messages the fast decoder is for: the common queries (not put, not sample_infohashes) and responses without BEP 44 fields. */
const common = fc.oneof(
  fc.tuple(tid, bytes(20), fc.boolean(), version, query.filter((q) => q.q !== 'put' && q.q !== 'sample_infohashes')).map(([t, id, ro, v, q]) => strip({ y: 'q' as const, t, id, ro, version: v, ...q }) as KrpcMessage),
  fc
    .record({
      t: tid,
      id: bytes(20),
      version,
      ip: fc.option(endpoint4, { nil: undefined }),
      nodes: fc.option(fc.integer({ min: 0, max: 8 }).chain((n) => bytes(26 * n)), { nil: undefined }),
      nodes6: fc.option(fc.integer({ min: 0, max: 4 }).chain((n) => bytes(38 * n)), { nil: undefined }),
      values: fc.option(fc.array(fc.oneof(bytes(6), bytes(18)), { maxLength: 10 }), { nil: undefined }),
      token: fc.option(bytes(8), { nil: undefined }),
    })
    .map((r) => strip({ y: 'r' as const, ...r }) as KrpcMessage),
);

/** A dictionary written with its entries in the given order (sorted or not, duplicates or not). */
type Entries = [string, unknown][];
class Body {
  constructor(readonly entries: Entries) {}
}
function rawDict(entries: Entries): Buffer {
  return Buffer.concat([b('d'), ...entries.flatMap(([k, v]) => [encode(b(k)), v instanceof Body ? rawDict(v.entries) : encode(v as never)]), b('e')]);
}
const allKeys = ['a', 'e', 'ip', 'q', 'r', 'ro', 't', 'v', 'y', 'x', ...bodyKeys];
// Byte strings at the limits the decoders check (ids, version, transaction id, token, node lists).
const edgeBytes = fc.constantFrom(0, 1, 16, 17, 19, 20, 21, 32, 33, 52, 53, 64, 65, 76).chain((n) => bytes(n));
const edit = fc.record({ op: fc.integer({ min: 0, max: 5 }), inBody: fc.boolean(), i: fc.nat(), j: fc.nat(), key: fc.constantFrom(...allKeys), value: fc.oneof(anyValue, edgeBytes) });
/** A common message taken apart into entries, edited (entries swapped, duplicated, dropped, replaced, added), put together again. */
const edited = fc.tuple(common, fc.array(edit, { minLength: 1, maxLength: 2 })).map(([m, edits]) => {
  const top: Entries = [...(decode(encodeKrpc(m)) as Map<string, unknown>)].map(([k, v]) => [k, v instanceof Map ? new Body([...(v as Map<string, unknown>)]) : v]);
  const body = top.find(([, v]) => v instanceof Body)![1] as Body;
  for (const { op, inBody, i, j, key, value } of edits) {
    const list = inBody ? body.entries : top;
    if (list.length === 0) continue;
    const x = i % list.length;
    const y = j % list.length;
    if (op === 0) [list[x], list[y]] = [list[y]!, list[x]!];
    else if (op === 1) list.splice(y, 0, list[x]!);
    else if (op === 2) list.splice(x, 1);
    else if (op === 3 || op === 5) list[x] = [list[x]![0], value];
    else list.splice(x, 0, [key, value]);
  }
  return rawDict(top);
});

test('property: the fast decoder returns what the generic decoder returns, or leaves the message to it', () => {
  fc.assert(fc.property(krpcLike, (wire) => void sameDecoding(wire)), { numRuns: 3000 });
  fc.assert(fc.property(edited, (wire) => void sameDecoding(wire)), { numRuns: 6000 });
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (wire) => void sameDecoding(wire)), { numRuns: 2000 });
  fc.assert(
    fc.property(withVersion, fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.nat(), (m, cut, at, byte, swap) => {
      const wire = encodeKrpc(m);
      sameDecoding(wire);
      sameDecoding(wire.subarray(0, cut % (wire.length + 1)));
      const flipped = Buffer.from(wire);
      flipped[at % flipped.length] = byte;
      sameDecoding(flipped);
      const inserted = Buffer.concat([wire.subarray(0, at % wire.length), Buffer.from([byte]), wire.subarray(at % wire.length)]);
      sameDecoding(inserted);
      sameDecoding(Buffer.concat([wire, Buffer.from([byte])]));
      // A leading zero put before a length prefix or an integer.
      const runs: number[] = [];
      for (let k = 0; k < wire.length; k++) if (wire[k]! >= 0x30 && wire[k]! <= 0x39 && (k === 0 || !(wire[k - 1]! >= 0x30 && wire[k - 1]! <= 0x39))) runs.push(k);
      const z = runs[at % runs.length]!;
      sameDecoding(Buffer.concat([wire.subarray(0, z), b('0'), wire.subarray(z)]));
      // Two adjacent bytes swapped: reorders keys, digits and letters.
      const i = swap % Math.max(1, wire.length - 1);
      const swapped = Buffer.from(wire);
      [swapped[i], swapped[i + 1]] = [swapped[i + 1]!, swapped[i]!];
      sameDecoding(swapped);
    }),
    { numRuns: 3000 },
  );
});

test('the fast decoder takes every common message itself (and plain Uint8Arrays as well as Buffers)', () => {
  fc.assert(
    fc.property(common, (m) => {
      const wire = encodeKrpc(m);
      const fast = sameDecoding(wire);
      assert.ok(fast !== undefined, `the fast path gave up on ${wire.toString('latin1')}`);
      assert.deepStrictEqual(fast, m);
      assert.deepStrictEqual(decodeKrpcFast(new Uint8Array(wire)), m);
    }),
    { numRuns: 2000 },
  );
  // What it leaves to the generic decoder: errors, BEP 44 values, unknown keys and methods.
  const id = b('abcdefghij0123456789');
  const others = [
    { t: 'aa', y: 'e', e: [201, 'oops'] },
    { t: 'aa', y: 'r', r: { id, v: 1 } },
    { t: 'aa', y: 'q', q: 'vote', a: { id } },
    { t: 'aa', y: 'q', q: 'ping', a: { id, zz: 1 } },
  ];
  for (const o of others) {
    const wire = encode(o);
    assert.equal(decodeKrpcFast(wire), undefined, wire.toString('latin1'));
    assert.ok(decodeKrpc(wire));
  }
});
