import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encode } from '../src/codec/bencode.js';
import { CodecError } from '../src/codec/errors.js';
import {
  decodeExtHandshake,
  decodeMetadataMessage,
  decodePex,
  encodeExtHandshake,
  encodeMetadataMessage,
  encodePex,
  ExtensionError,
  METADATA_PIECE_SIZE,
  metadataPieceCount,
  metadataPieceLength,
  PexFlags,
  type ExtensionErrorCode,
} from '../src/codec/extensions.js';
import { formatIp, parseIp } from '../src/codec/ip.js';
import { decodeMessage, encodeMessage } from '../src/codec/peer-wire.js';

const isExt = (code: ExtensionErrorCode) => (e: unknown) => e instanceof ExtensionError && e.code === code;
const latin1 = (s: string) => Buffer.from(s, 'latin1');

// ---------------------------------------------------------------- BEP 10 handshake

test('extension handshake: the BEP 10 example decodes', () => {
  const wire = Buffer.concat([latin1('d1:md11:LT_metadatai1e6:\xb5T_PEXi2ee1:pi6881e1:v13:'), Buffer.from('µTorrent 1.2'), latin1('e')]);
  const h = decodeExtHandshake(wire);
  assert.deepEqual([...h.m], [['LT_metadata', 1], ['\xb5T_PEX', 2]]);
  assert.equal(h.p, 6881);
  assert.equal(h.v, 'µTorrent 1.2');
  assert.deepEqual(h.invalid, []);
  // Disabling an extension later: the 0 is kept.
  assert.deepEqual([...decodeExtHandshake(latin1('d1:md11:LT_metadatai0eee')).m], [['LT_metadata', 0]]);
});

test('extension handshake: encoding is canonical and carries every field', () => {
  const payload = encodeExtHandshake({
    m: { ut_pex: 2, ut_metadata: 1 },
    v: 'peerkit 0.1',
    p: 6881,
    reqq: 250,
    metadataSize: 31235,
    yourip: '10.0.0.1',
    ipv4: Uint8Array.from([1, 2, 3, 4]),
    ipv6: '2001:db8::1',
    e: true,
    uploadOnly: false,
    extra: { lt_donthave: 7 },
  });
  assert.ok(payload.toString('latin1').startsWith('d1:ei1e4:ipv44:\x01\x02\x03\x04'));
  const h = decodeExtHandshake(payload);
  assert.deepEqual(Object.fromEntries(h.m), { ut_metadata: 1, ut_pex: 2 });
  assert.equal(h.v, 'peerkit 0.1');
  assert.equal(h.p, 6881);
  assert.equal(h.reqq, 250);
  assert.equal(h.metadataSize, 31235);
  assert.equal(h.yourip, '10.0.0.1');
  assert.equal(h.ipv4, '1.2.3.4');
  assert.equal(h.ipv6, '2001:db8::1');
  assert.equal(h.e, true);
  assert.equal(h.uploadOnly, false);
  assert.equal(h.raw.get('lt_donthave'), 7);
  // It travels as extended message 0.
  const m = decodeMessage(encodeMessage({ type: 'extended', id: 0, payload }));
  assert.ok(m.type === 'extended' && m.id === 0);
  assert.deepEqual(decodeExtHandshake(m.payload).m, h.m);
  assert.deepEqual(decodeExtHandshake(encodeExtHandshake({ m: new Map([['ut_pex', 0]]) })).m, new Map([['ut_pex', 0]]));
});

test('property: extension handshakes round-trip', () => {
  const name = fc.string({ minLength: 1, maxLength: 12, unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz_'.split('')) });
  fc.assert(
    fc.property(
      fc.dictionary(name, fc.integer({ min: 0, max: 255 }), { noNullPrototype: true }),
      fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
      fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
      fc.option(fc.integer({ min: 1, max: 100000 }), { nil: undefined }),
      fc.option(fc.integer({ min: 1, max: 16 * 1024 * 1024 }), { nil: undefined }),
      fc.option(fc.oneof(fc.ipV4(), fc.ipV6()), { nil: undefined }),
      fc.option(fc.boolean(), { nil: undefined }),
      (m, v, p, reqq, metadataSize, yourip, e) => {
        const h = decodeExtHandshake(encodeExtHandshake({ m, v, p, reqq, metadataSize, yourip, e }));
        assert.deepEqual(Object.fromEntries(h.m), { ...m });
        assert.equal(h.v, v === undefined ? undefined : Buffer.from(v).toString('utf8'));
        assert.equal(h.p, p);
        assert.equal(h.reqq, reqq);
        assert.equal(h.metadataSize, metadataSize);
        assert.equal(h.yourip, yourip === undefined ? undefined : formatIp(parseIp(yourip)!));
        assert.equal(h.e, e);
        assert.deepEqual(h.invalid, []);
      },
    ),
  );
});

test('extension handshake: known keys of the wrong type are left out and listed; m must be a dict', () => {
  const h = decodeExtHandshake(
    encode({
      m: { ut_metadata: 3, ut_pex: 'x', big: 256, neg: -1, off: 0 },
      p: 0,
      v: 12,
      reqq: 'many',
      metadata_size: 1024 * 1024 * 1024,
      yourip: Buffer.alloc(5),
      ipv4: Buffer.alloc(16),
      ipv6: Buffer.alloc(4),
      e: 2,
      other: [1, 2, { deep: 'ok' }],
    }),
  );
  assert.deepEqual([...h.m], [['off', 0], ['ut_metadata', 3]]);
  for (const k of ['p', 'v', 'reqq', 'metadata_size', 'yourip', 'ipv4', 'ipv6', 'e']) assert.equal((h as unknown as Record<string, unknown>)[k === 'metadata_size' ? 'metadataSize' : k], undefined, k);
  assert.deepEqual([...h.invalid].sort(), ['e', 'ipv4', 'ipv6', 'm.big', 'm.neg', 'm.ut_pex', 'metadata_size', 'p', 'reqq', 'v', 'yourip']);
  assert.ok(h.raw.has('other'));
  // No m at all is an empty m (every key is optional).
  assert.equal(decodeExtHandshake(encode({ p: 1 })).m.size, 0);
  assert.throws(() => decodeExtHandshake(encode({ m: [1] })), isExt('WRONG_TYPE'));
  assert.throws(() => decodeExtHandshake(encode([1])), isExt('NOT_A_DICT'));
  assert.throws(() => decodeExtHandshake(latin1('d1:mde')), isExt('NOT_BENCODE'));
  assert.throws(() => decodeExtHandshake(latin1('de junk')), isExt('NOT_BENCODE'));
  assert.throws(() => decodeExtHandshake(encode({ v: Buffer.alloc(70000) })), isExt('TOO_LARGE'));
  // A smaller metadata limit applies to metadata_size.
  assert.equal(decodeExtHandshake(encode({ metadata_size: 2000 }), { maxMetadataSize: 1000 }).metadataSize, undefined);
  // Unsorted keys from other clients are accepted; the proto key is just a name.
  assert.deepEqual([...decodeExtHandshake(latin1('d1:md6:ut_pexi1e9:__proto__i2eee')).m], [['ut_pex', 1], ['__proto__', 2]]);
  // Encoders refuse what cannot go on the wire.
  assert.throws(() => encodeExtHandshake({ m: { x: 256 } }), isExt('BAD_ARGUMENT'));
  assert.throws(() => encodeExtHandshake({ m: {}, p: 0 }), isExt('BAD_ARGUMENT'));
  assert.throws(() => encodeExtHandshake({ m: {}, ipv4: '::1' }), isExt('BAD_ARGUMENT'));
  assert.throws(() => encodeExtHandshake({ m: {}, yourip: 'example.org' }), isExt('BAD_ARGUMENT'));
});

// ---------------------------------------------------------------- BEP 9 ut_metadata

test('ut_metadata: the BEP 9 examples', () => {
  assert.equal(encodeMetadataMessage({ msgType: 'request', piece: 0 }).toString('latin1'), 'd8:msg_typei0e5:piecei0ee');
  assert.deepEqual(decodeMetadataMessage(latin1('d8:msg_typei0e5:piecei0ee')), { msgType: 'request', piece: 0 });
  assert.deepEqual(decodeMetadataMessage(latin1('d8:msg_typei2e5:piecei0ee')), { msgType: 'reject', piece: 0 });
  const data = Buffer.alloc(3425, 0x78);
  const wire = encodeMetadataMessage({ msgType: 'data', piece: 0, totalSize: 3425, data });
  assert.equal(wire.subarray(0, 44).toString('latin1'), 'd8:msg_typei1e5:piecei0e10:total_sizei3425ee');
  const d = decodeMetadataMessage(wire);
  assert.ok(d.msgType === 'data');
  assert.equal(d.totalSize, 3425);
  assert.deepEqual(d.data, data);
  assert.equal(d.data.buffer, wire.buffer); // a view, no copy
});

test('property: ut_metadata messages round-trip, with exact piece sizes', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 5 * METADATA_PIECE_SIZE }).chain((total) => fc.tuple(fc.constant(total), fc.integer({ min: 0, max: metadataPieceCount(total) - 1 }))),
      fc.constantFrom('request' as const, 'data' as const, 'reject' as const),
      ([totalSize, piece], msgType) => {
        const size = metadataPieceLength(totalSize, piece);
        assert.equal(size, piece < metadataPieceCount(totalSize) - 1 ? METADATA_PIECE_SIZE : totalSize - piece * METADATA_PIECE_SIZE);
        if (msgType !== 'data') {
          assert.deepEqual(decodeMetadataMessage(encodeMetadataMessage({ msgType, piece })), { msgType, piece });
          return;
        }
        const data = Buffer.alloc(size, piece);
        assert.deepEqual(decodeMetadataMessage(encodeMetadataMessage({ msgType, piece, totalSize, data })), { msgType, piece, totalSize, data });
        // One byte more or less is refused both ways.
        for (const wrong of [size - 1, size + 1]) {
          if (wrong < 0 || wrong > METADATA_PIECE_SIZE) continue;
          assert.throws(() => encodeMetadataMessage({ msgType, piece, totalSize, data: Buffer.alloc(wrong) }), isExt('BAD_PIECE_SIZE'));
          const forged = Buffer.concat([encode({ msg_type: 1, piece, total_size: totalSize }), Buffer.alloc(wrong)]);
          assert.throws(() => decodeMetadataMessage(forged), isExt('BAD_PIECE_SIZE'));
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('ut_metadata: hostile and malformed messages', () => {
  const msg = (d: Record<string, unknown>, tail = Buffer.alloc(0)) => Buffer.concat([encode(d as never), tail]);
  assert.throws(() => decodeMetadataMessage(msg({ msg_type: 1, piece: 0, total_size: 32 * 1024 * 1024 }, Buffer.alloc(16384))), isExt('BAD_VALUE'));
  assert.throws(() => decodeMetadataMessage(msg({ msg_type: 1, piece: 2, total_size: 20000 }, Buffer.alloc(10))), isExt('BAD_VALUE'));
  assert.throws(() => decodeMetadataMessage(msg({ msg_type: 1, piece: 0 }, Buffer.alloc(10))), isExt('MISSING_FIELD'));
  assert.throws(() => decodeMetadataMessage(msg({ msg_type: 0 })), isExt('MISSING_FIELD'));
  assert.throws(() => decodeMetadataMessage(msg({ piece: 0 })), isExt('MISSING_FIELD'));
  assert.throws(() => decodeMetadataMessage(msg({ msg_type: 'x', piece: 0 })), isExt('WRONG_TYPE'));
  assert.throws(() => decodeMetadataMessage(msg({ msg_type: 0, piece: 'x' })), isExt('WRONG_TYPE'));
  assert.throws(() => decodeMetadataMessage(msg({ msg_type: 0, piece: -1 })), isExt('BAD_VALUE'));
  assert.throws(() => decodeMetadataMessage(msg({ msg_type: 0, piece: 100000 })), isExt('BAD_VALUE'));
  assert.throws(() => decodeMetadataMessage(msg({ msg_type: 0, piece: 0 }, Buffer.from('x'))), isExt('TRAILING_DATA'));
  assert.throws(() => decodeMetadataMessage(Buffer.alloc(20000)), isExt('TOO_LARGE'));
  assert.throws(() => decodeMetadataMessage(latin1('l1:ae')), isExt('NOT_A_DICT'));
  assert.throws(() => decodeMetadataMessage(latin1('d8:msg_type')), isExt('NOT_BENCODE'));
  // Unknown message types are reported, for the caller to ignore (BEP 9).
  assert.deepEqual(decodeMetadataMessage(msg({ msg_type: 7, piece: 1 })), { msgType: 'unknown', type: 7, piece: 1 });
  assert.deepEqual(decodeMetadataMessage(msg({ msg_type: 3 }, Buffer.from('xyz'))), { msgType: 'unknown', type: 3, piece: undefined });
  // Limits and arguments on the encoding side.
  assert.throws(() => encodeMetadataMessage({ msgType: 'data', piece: 0 }), isExt('BAD_ARGUMENT'));
  assert.throws(() => encodeMetadataMessage({ msgType: 'request', piece: -1 }), isExt('BAD_ARGUMENT'));
  assert.throws(() => encodeMetadataMessage({ msgType: 'data', piece: 0, totalSize: 100, data: Buffer.alloc(100) }, { maxMetadataSize: 99 }), isExt('BAD_ARGUMENT'));
  assert.throws(() => encodeMetadataMessage({ msgType: 'data', piece: 1, totalSize: 100, data: Buffer.alloc(0) }), isExt('BAD_ARGUMENT'));
  assert.equal(metadataPieceCount(16384), 1);
  assert.equal(metadataPieceCount(16385), 2);
  assert.equal(metadataPieceLength(16385, 1), 1);
  assert.equal(metadataPieceLength(16385, 2), 0);
});

// ---------------------------------------------------------------- BEP 11 ut_pex

const v4peer = fc.record({ host: fc.ipV4(), port: fc.integer({ min: 0, max: 65535 }) }, { noNullPrototype: true });
const v6peer = fc.record({ host: fc.ipV6().map((h) => formatIp(parseIp(h)!)), port: fc.integer({ min: 0, max: 65535 }) }, { noNullPrototype: true });

test('property: ut_pex messages round-trip with flags', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(v4peer, fc.integer({ min: 0, max: 0x1f })), { maxLength: 50 }),
      fc.array(v4peer, { maxLength: 50 }),
      fc.array(fc.tuple(v6peer, fc.integer({ min: 0, max: 0x1f })), { maxLength: 20 }),
      fc.array(v6peer, { maxLength: 20 }),
      (a4, dropped, a6, dropped6) => {
        const p = decodePex(
          encodePex({ added: a4.map(([e]) => e), addedFlags: a4.map(([, f]) => f), dropped, added6: a6.map(([e]) => e), added6Flags: a6.map(([, f]) => f), dropped6 }),
        );
        assert.deepEqual(p, {
          added: a4.map(([e]) => e),
          addedFlags: a4.map(([, f]) => f),
          dropped,
          added6: a6.map(([e]) => e),
          added6Flags: a6.map(([, f]) => f),
          dropped6,
          truncated: false,
        });
      },
    ),
    { numRuns: 300 },
  );
});

test('ut_pex: flags, empty lists and the wire form', () => {
  const wire = encodePex({ added: [{ host: '127.0.0.1', port: 6881 }], addedFlags: [PexFlags.seed | PexFlags.utp], dropped: [] });
  assert.equal(wire.toString('hex'), Buffer.concat([latin1('d5:added6:'), Buffer.from('7f0000011ae1', 'hex'), latin1('7:added.f1:\x067:dropped0:e')]).toString('hex'));
  // No flags sent: zeros; flags of the wrong count: ignored.
  assert.deepEqual(decodePex(encodePex({ added: [{ host: '1.2.3.4', port: 1 }], dropped: [] })).addedFlags, [0]);
  assert.deepEqual(decodePex(encode({ added: Buffer.from('010203040001', 'hex'), 'added.f': Buffer.from([1, 2]) })).addedFlags, [0]);
  assert.deepEqual(decodePex(encode({})), { added: [], addedFlags: [], dropped: [], added6: [], added6Flags: [], dropped6: [], truncated: false });
  assert.equal(PexFlags.preferEncryption | PexFlags.holepunch | PexFlags.reachable, 0x19);
});

test('ut_pex: lists over the cap are cut, malformed lists refused', () => {
  const many = Buffer.alloc(6 * 300, 1);
  const flags = Buffer.alloc(300, PexFlags.seed);
  const p = decodePex(encode({ added: many, 'added.f': flags, dropped: Buffer.alloc(6 * 10, 2) }));
  assert.equal(p.added.length, 200);
  assert.equal(p.addedFlags.length, 200);
  assert.ok(p.addedFlags.every((f) => f === PexFlags.seed));
  assert.equal(p.dropped.length, 10);
  assert.equal(p.truncated, true);
  assert.equal(decodePex(encode({ dropped6: Buffer.alloc(18 * 30) }), { maxPeers: 25 }).dropped6.length, 25);
  assert.throws(() => decodePex(encode({ added: Buffer.alloc(7) })), isExt('BAD_VALUE'));
  assert.throws(() => decodePex(encode({ added6: Buffer.alloc(6) })), isExt('BAD_VALUE'));
  assert.throws(() => decodePex(encode({ added: 5 })), isExt('WRONG_TYPE'));
  assert.throws(() => decodePex(encode({ added: Buffer.alloc(0), 'added.f': [1] })), isExt('WRONG_TYPE'));
  assert.throws(() => decodePex(encode({ added: Buffer.alloc(70000 - 70000 % 6) })), isExt('TOO_LARGE'));
  assert.throws(() => decodePex(latin1('i1e')), isExt('NOT_A_DICT'));
  assert.throws(() => decodePex(latin1('d5:added')), isExt('NOT_BENCODE'));
  assert.throws(() => encodePex({ added: [{ host: '::1', port: 1 }], dropped: [] }), (e: unknown) => e instanceof CodecError);
  assert.throws(() => encodePex({ added: [{ host: '1.2.3.4', port: 1 }], addedFlags: [], dropped: [] }), isExt('BAD_ARGUMENT'));
  assert.throws(() => encodePex({ added: [{ host: '1.2.3.4', port: 1 }], addedFlags: [256], dropped: [] }), isExt('BAD_ARGUMENT'));
  assert.throws(() => encodePex({ added: [], dropped: [], added6Flags: [1] }), isExt('BAD_ARGUMENT'));
});

// ---------------------------------------------------------------- fuzz

test('fuzz: the extension decoders only ever throw ExtensionError', () => {
  const check = (u: Uint8Array) => {
    for (const f of [decodeExtHandshake, decodeMetadataMessage, decodePex] as ((u: Uint8Array) => unknown)[]) {
      try {
        f(u);
      } catch (e) {
        assert.ok(e instanceof ExtensionError, String(e));
      }
    }
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), check), { numRuns: 3000 });
  // Structured junk: dictionaries with the known keys holding anything.
  const anyValue = fc.letrec<{ v: unknown }>((tie) => ({
    v: fc.oneof(
      { depthSize: 'small' },
      fc.integer({ min: -5, max: 70000 }),
      fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)),
      fc.array(tie('v'), { maxLength: 3 }),
      fc.dictionary(fc.constantFrom('m', 'ut_pex', 'ut_metadata', 'x'), tie('v'), { maxKeys: 3, noNullPrototype: true }),
    ),
  })).v;
  const keys = fc.constantFrom('m', 'p', 'v', 'reqq', 'metadata_size', 'yourip', 'ipv4', 'ipv6', 'e', 'upload_only', 'msg_type', 'piece', 'total_size', 'added', 'added.f', 'added6', 'added6.f', 'dropped', 'dropped6');
  fc.assert(
    fc.property(fc.dictionary(keys, anyValue, { maxKeys: 8, noNullPrototype: true }), fc.uint8Array({ maxLength: 20 }), (d, tail) => {
      const body = encode(d as never);
      check(body);
      check(Buffer.concat([body, tail]));
    }),
    { numRuns: 2000 },
  );
});
