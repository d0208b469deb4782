import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BencodeError, decode, decodePrefix, decodeWithSpans, encode, isDict, type BencodeValue } from '../src/codec/bencode.js';
import { CodecError } from '../src/codec/errors.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

function expectError(input: string | Buffer, code: string, offset?: number, limits = {}): void {
  assert.throws(
    () => decode(typeof input === 'string' ? b(input) : input, limits),
    (e: unknown) => {
      assert.ok(e instanceof BencodeError, `expected BencodeError, got ${String(e)}`);
      assert.equal(e.code, code, `for ${JSON.stringify(String(input))}: ${e.message}`);
      if (offset !== undefined) assert.equal(e.offset, offset, e.message);
      return true;
    },
  );
}

/** Arbitrary decoded-form values: what `decode` returns and `encode` accepts. */
const valueArb: fc.Arbitrary<BencodeValue> = fc.letrec<{ v: BencodeValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.maxSafeInteger(),
    fc.bigInt({ min: -(2n ** 200n), max: 2n ** 200n }).filter((n) => n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)),
    fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)),
    fc.array(tie('v'), { maxLength: 5 }),
    fc.array(fc.tuple(fc.uint8Array({ maxLength: 8 }).map((u) => Buffer.from(u).toString('latin1')), tie('v')), { maxLength: 5 }).map((entries) => new Map(entries)),
  ),
})).v;

test('decodes every type', () => {
  assert.equal(decode(b('i42e')), 42);
  assert.equal(decode(b('i-42e')), -42);
  assert.equal(decode(b('i0e')), 0);
  assert.deepEqual(decode(b('4:spam')), b('spam'));
  assert.deepEqual(decode(b('0:')), b(''));
  assert.deepEqual(decode(b('l4:spami7ee')), [b('spam'), 7]);
  const d = decode(b('d3:cow3:moo4:spaml1:a1:bee'));
  assert.ok(isDict(d));
  assert.deepEqual(d.get('cow'), b('moo'));
  assert.deepEqual(d.get('spam'), [b('a'), b('b')]);
});

test('integers beyond the safe range decode as bigint, within it as number', () => {
  assert.equal(decode(b('i9007199254740991e')), Number.MAX_SAFE_INTEGER);
  assert.equal(decode(b('i9007199254740992e')), 9007199254740992n);
  assert.equal(decode(b('i-123456789012345678901234567890e')), -123456789012345678901234567890n);
  assert.equal(decode(b('i1234567890123456e')), 1234567890123456);
});

test('encodes canonically: sorted keys by bytes, undefined properties left out', () => {
  assert.equal(encode({ z: 1, a: 'x', m: undefined }).toString(), 'd1:a1:x1:zi1ee');
  assert.equal(encode(new Map([['b', 1], ['a', 2]])).toString(), 'd1:ai2e1:bi1ee');
  // byte order, not locale order: 'B' (0x42) sorts before 'a' (0x61)
  assert.equal(encode({ a: 1, B: 2 }).toString(), 'd1:Bi2e1:ai1ee');
  assert.equal(encode('héllo').toString('latin1'), `6:${Buffer.from('héllo').toString('latin1')}`);
  assert.equal(encode(-0).toString(), 'i0e');
  assert.equal(encode(123456789012345678901234567890n).toString(), 'i123456789012345678901234567890e');
});

test('encode refuses what bencode cannot represent', () => {
  for (const bad of [1.5, NaN, Infinity, 2 ** 60, null, true, undefined, () => 1, Symbol('x'), new Date(0)]) {
    assert.throws(() => encode(bad as never), (e: unknown) => e instanceof BencodeError && e.code === 'UNENCODABLE');
  }
  assert.throws(() => encode({ ['\u1234']: 1 }), (e: unknown) => e instanceof BencodeError && e.code === 'UNENCODABLE');
  const cyclic: unknown[] = [];
  cyclic.push(cyclic);
  assert.throws(() => encode(cyclic as never), (e: unknown) => e instanceof BencodeError && e.code === 'UNENCODABLE');
});

test('rejects non-canonical and malformed input with a typed error and its offset', () => {
  expectError('i-0e', 'NEGATIVE_ZERO', 1);
  expectError('i03e', 'LEADING_ZERO', 1);
  expectError('i-03e', 'LEADING_ZERO', 2);
  expectError('ie', 'INVALID_INTEGER', 1);
  expectError('i-e', 'INVALID_INTEGER', 1);
  expectError('i1.5e', 'INVALID_INTEGER', 2);
  expectError('i+1e', 'INVALID_INTEGER', 1);
  expectError('i12', 'UNEXPECTED_END', 3);
  expectError('03:abc', 'LEADING_ZERO', 0);
  expectError('3abc', 'INVALID_LENGTH', 1);
  expectError('-3:abc', 'UNEXPECTED_BYTE', 0);
  expectError('5:abc', 'UNEXPECTED_END', 0);
  expectError('l', 'UNEXPECTED_END', 1);
  expectError('li1e', 'UNEXPECTED_END', 4);
  expectError('d1:a', 'UNEXPECTED_END', 4);
  expectError('di1ei2ee', 'NON_STRING_KEY', 1);
  expectError('d1:bi1e1:ai2ee', 'UNSORTED_KEYS', 7);
  expectError('d1:ai1e1:ai2ee', 'DUPLICATE_KEY', 7);
  expectError('i1ei2e', 'TRAILING_DATA', 3);
  expectError('', 'UNEXPECTED_END', 0);
  expectError('x', 'UNEXPECTED_BYTE', 0);
  expectError('e', 'UNEXPECTED_BYTE', 0);
});

test('unsorted keys can be allowed, duplicates never', () => {
  const d = decode(b('d1:bi1e1:ai2ee'), { allowUnsortedKeys: true });
  assert.ok(isDict(d));
  assert.equal(d.get('a'), 2);
  expectError('d1:bi1e1:ai2e1:bi3ee', 'DUPLICATE_KEY', 13, { allowUnsortedKeys: true });
});

test('limits: input size, depth and string length are checked before any declared length is trusted', () => {
  expectError(Buffer.alloc(101, 0x30), 'INPUT_TOO_LARGE', 0, { maxInputBytes: 100 });
  expectError('l'.repeat(65) + 'e'.repeat(65), 'DEPTH_EXCEEDED', 64);
  assert.doesNotThrow(() => decode(b('l'.repeat(64) + 'e'.repeat(64))));
  expectError('d1:a'.repeat(10) + 'i1e' + 'e'.repeat(10), 'DEPTH_EXCEEDED', undefined, { maxDepth: 5 });
  expectError('10:0123456789', 'STRING_TOO_LONG', 0, { maxStringBytes: 9 });
  // A huge declared length is refused without allocating it.
  expectError('9999999999999:x', 'UNEXPECTED_END', 0);
  expectError('99999999999999999999:x', 'INVALID_LENGTH', 0);
  expectError('i' + '9'.repeat(100) + 'e', 'INTEGER_TOO_LONG', 1);
  // Deep nesting far beyond the limit fails cleanly rather than overflowing the stack.
  expectError('l'.repeat(200_000), 'DEPTH_EXCEEDED', 64);
});

test('decodePrefix returns the value and where it ended (BEP 9 metadata pieces carry raw bytes after it)', () => {
  const { value, end } = decodePrefix(b('d8:msg_typei1e5:piecei0eeRAWBYTES'));
  assert.ok(isDict(value));
  assert.equal(value.get('msg_type'), 1);
  assert.equal(end, 'd8:msg_typei1e5:piecei0ee'.length);
});

test('decodeWithSpans gives the exact byte range of a nested value', () => {
  const input = b('d4:infod6:lengthi5e4:name1:xe3:zzzi1ee');
  const { value, spanOf } = decodeWithSpans(input);
  assert.ok(isDict(value));
  const info = value.get('info');
  assert.ok(isDict(info));
  const span = spanOf(info);
  assert.ok(span);
  assert.equal(input.subarray(span.start, span.end).toString(), 'd6:lengthi5e4:name1:xe');
});

test('decoded byte strings are zero-copy views of the input', () => {
  const input = b('4:abcd');
  const v = decode(input) as Buffer;
  assert.equal(v.buffer, input.buffer);
});

test('property: decode(encode(v)) equals v, and encoding is canonical (re-encodes identically)', () => {
  fc.assert(
    fc.property(valueArb, (v) => {
      const bytes = encode(v);
      const back = decode(bytes);
      assert.deepEqual(back, v);
      assert.deepEqual(encode(back), bytes);
    }),
    { numRuns: 500 },
  );
});

test('property: canonical input decodes and re-encodes to the same bytes', () => {
  fc.assert(
    fc.property(valueArb, (v) => {
      const bytes = encode(v);
      assert.ok(encode(decode(bytes)).equals(bytes));
    }),
  );
});

function onlyCodecErrors(input: Uint8Array): void {
  try {
    decode(input, { maxDepth: 16 });
  } catch (e) {
    if (!(e instanceof CodecError)) throw new Error(`non-codec error for ${Buffer.from(input).toString('hex')}: ${String(e)}`, { cause: e });
  }
}

test('fuzz: random bytes never throw anything but a BencodeError', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (u) => onlyCodecErrors(u)), { numRuns: 3000 });
  // Bytes drawn from bencode's own alphabet reach far deeper into the decoder.
  const alphabet = fc.constantFrom(...'ilde0123456789:-xa'.split('').map((c) => c.charCodeAt(0)));
  fc.assert(fc.property(fc.array(alphabet, { maxLength: 100 }), (a) => onlyCodecErrors(Uint8Array.from(a))), { numRuns: 5000 });
});

test('fuzz: every truncation and every single-byte mutation of valid input fails cleanly or decodes', () => {
  fc.assert(
    fc.property(valueArb, fc.nat(), fc.nat(255), (v, pos, byte) => {
      const bytes = encode(v);
      for (let cut = 0; cut < bytes.length; cut++) {
        assert.throws(() => decode(bytes.subarray(0, cut)), BencodeError);
      }
      const mutated = Buffer.from(bytes);
      mutated[pos % mutated.length] = byte;
      onlyCodecErrors(mutated);
    }),
    { numRuns: 300 },
  );
});
