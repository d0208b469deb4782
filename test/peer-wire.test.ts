import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CodecError } from '../src/codec/errors.js';
import {
  allowedFastSet,
  Bitfield,
  decodeHandshake,
  decodeHandshakeStart,
  decodeMessage,
  encodeHandshake,
  encodeMessage,
  encodePieceHeader,
  HANDSHAKE_LENGTH,
  MessageReader,
  PeerWireError,
  reservedBytes,
  type Message,
  type PeerWireErrorCode,
  type ReaderItem,
} from '../src/codec/peer-wire.js';

const isWire = (code: PeerWireErrorCode) => (e: unknown) => e instanceof PeerWireError && e.code === code;
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const bytes = (opts: { minLength?: number; maxLength?: number } = {}) => fc.uint8Array(opts).map((u) => Buffer.from(u));
const id20 = bytes({ minLength: 20, maxLength: 20 });

const arbMessage: fc.Arbitrary<Message> = fc.oneof(
  fc.constantFrom<Message>(
    { type: 'keep-alive' },
    { type: 'choke' },
    { type: 'unchoke' },
    { type: 'interested' },
    { type: 'not-interested' },
    { type: 'have-all' },
    { type: 'have-none' },
  ),
  u32.map((index): Message => ({ type: 'have', index })),
  u32.map((index): Message => ({ type: 'suggest', index })),
  u32.map((index): Message => ({ type: 'allowed-fast', index })),
  bytes({ maxLength: 64 }).map((b): Message => ({ type: 'bitfield', bytes: b })),
  fc.tuple(fc.constantFrom('request' as const, 'cancel' as const, 'reject' as const), u32, u32, u32).map(([type, index, begin, length]): Message => ({ type, index, begin, length })),
  fc.tuple(u32, u32, bytes({ maxLength: 300 })).map(([index, begin, block]): Message => ({ type: 'piece', index, begin, block })),
  fc.integer({ min: 0, max: 65535 }).map((port): Message => ({ type: 'port', port })),
  fc.tuple(fc.integer({ min: 0, max: 255 }), bytes({ maxLength: 100 })).map(([id, payload]): Message => ({ type: 'extended', id, payload })),
);

/** Copies byte fields so comparisons do not depend on views. */
function plain(item: ReaderItem): unknown {
  return JSON.parse(JSON.stringify(item, (_k, v: unknown) => (v && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer' ? Buffer.from((v as { data: number[] }).data).toString('hex') : v)));
}

function drain(r: MessageReader): ReaderItem[] {
  const out: ReaderItem[] = [];
  for (const item of r) out.push(item);
  return out;
}

/** Cuts `buf` at the given (sorted, deduplicated) positions. */
function cut(buf: Buffer, points: number[]): Buffer[] {
  const ps = [...new Set(points.map((p) => p % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of ps) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}

// ---------------------------------------------------------------- handshake

test('handshake: exact bytes and reserved bits (BEP 3, 5, 6, 10)', () => {
  const infoHash = Buffer.alloc(20, 0xaa);
  const peerId = Buffer.from('-PK0001-abcdefghijkl');
  const hs = encodeHandshake({ infoHash, peerId, reserved: { extended: true, fast: true, dht: true } });
  assert.equal(hs.length, HANDSHAKE_LENGTH);
  assert.equal(hs.subarray(0, 20).toString('latin1'), '\x13BitTorrent protocol');
  assert.equal(hs.subarray(20, 28).toString('hex'), '0000000000100005');
  assert.deepEqual(hs.subarray(28, 48), infoHash);
  assert.deepEqual(hs.subarray(48, 68), peerId);
  const d = decodeHandshake(hs);
  assert.deepEqual(d, { reserved: hex('0000000000100005'), infoHash, peerId, extended: true, fast: true, dht: true });
  assert.deepEqual(reservedBytes({ fast: true }), hex('0000000000000004'));
  const plainHs = decodeHandshake(encodeHandshake({ infoHash, peerId }));
  assert.equal(plainHs.extended || plainHs.fast || plainHs.dht, false);
  // Two steps: the first 48 bytes name the torrent.
  const start = decodeHandshakeStart(hs.subarray(0, 48));
  assert.deepEqual(start.infoHash, infoHash);
  assert.equal(start.extended, true);
  // Bytes after the handshake are left alone; returned buffers are copies.
  const withMore = Buffer.concat([hs, hex('00000001 02')]);
  const d2 = decodeHandshake(withMore);
  withMore.fill(0);
  assert.deepEqual(d2.peerId, peerId);
});

test('property: handshakes round-trip with any reserved bytes', () => {
  fc.assert(
    fc.property(id20, id20, bytes({ minLength: 8, maxLength: 8 }), (infoHash, peerId, reserved) => {
      const d = decodeHandshake(encodeHandshake({ infoHash, peerId, reserved }));
      assert.deepEqual(d.infoHash, infoHash);
      assert.deepEqual(d.peerId, peerId);
      assert.deepEqual(d.reserved, reserved);
      assert.equal(d.extended, (reserved[5]! & 0x10) !== 0);
      assert.equal(d.fast, (reserved[7]! & 0x04) !== 0);
      assert.equal(d.dht, (reserved[7]! & 0x01) !== 0);
    }),
  );
});

test('handshake: bad protocol, truncation and bad arguments are refused', () => {
  const hs = encodeHandshake({ infoHash: Buffer.alloc(20, 1), peerId: Buffer.alloc(20, 2) });
  for (let n = 0; n < HANDSHAKE_LENGTH; n++) {
    assert.throws(() => decodeHandshake(hs.subarray(0, n)), isWire('TRUNCATED'), `length ${n}`);
  }
  for (let n = 0; n < 48; n++) assert.throws(() => decodeHandshakeStart(hs.subarray(0, n)), isWire('TRUNCATED'));
  const badLen = Buffer.from(hs);
  badLen[0] = 18;
  assert.throws(() => decodeHandshake(badLen), isWire('BAD_PROTOCOL'));
  assert.throws(() => decodeHandshakeStart(badLen.subarray(0, 1)), isWire('BAD_PROTOCOL'));
  const badName = Buffer.from(hs);
  badName[5] = 0x78;
  assert.throws(() => decodeHandshake(badName), (e: unknown) => isWire('BAD_PROTOCOL')(e) && (e as PeerWireError).offset === 1);
  assert.throws(() => decodeHandshakeStart(badName.subarray(0, 10)), isWire('BAD_PROTOCOL'));
  assert.throws(() => encodeHandshake({ infoHash: Buffer.alloc(19), peerId: Buffer.alloc(20) }), isWire('BAD_ARGUMENT'));
  assert.throws(() => encodeHandshake({ infoHash: Buffer.alloc(20), peerId: Buffer.alloc(21) }), isWire('BAD_ARGUMENT'));
  assert.throws(() => encodeHandshake({ infoHash: Buffer.alloc(20), peerId: Buffer.alloc(20), reserved: Buffer.alloc(7) }), isWire('BAD_ARGUMENT'));
});

// ---------------------------------------------------------------- messages

test('messages: exact bytes for every type (BEP 3, 5, 6, 10)', () => {
  const cases: [Message, string][] = [
    [{ type: 'keep-alive' }, '00000000'],
    [{ type: 'choke' }, '00000001 00'],
    [{ type: 'unchoke' }, '00000001 01'],
    [{ type: 'interested' }, '00000001 02'],
    [{ type: 'not-interested' }, '00000001 03'],
    [{ type: 'have', index: 0x01020304 }, '00000005 04 01020304'],
    [{ type: 'bitfield', bytes: hex('ff80') }, '00000003 05 ff80'],
    [{ type: 'request', index: 1, begin: 0x4000, length: 0x4000 }, '0000000d 06 00000001 00004000 00004000'],
    [{ type: 'piece', index: 2, begin: 3, block: hex('aabb') }, '0000000b 07 00000002 00000003 aabb'],
    [{ type: 'cancel', index: 1, begin: 2, length: 3 }, '0000000d 08 00000001 00000002 00000003'],
    [{ type: 'port', port: 6881 }, '00000003 09 1ae1'],
    [{ type: 'suggest', index: 7 }, '00000005 0d 00000007'],
    [{ type: 'have-all' }, '00000001 0e'],
    [{ type: 'have-none' }, '00000001 0f'],
    [{ type: 'reject', index: 1, begin: 2, length: 3 }, '0000000d 10 00000001 00000002 00000003'],
    [{ type: 'allowed-fast', index: 0xffffffff }, '00000005 11 ffffffff'],
    [{ type: 'extended', id: 0, payload: Buffer.from('de') }, '00000004 14 00 6465'],
  ];
  for (const [msg, wire] of cases) {
    assert.equal(encodeMessage(msg).toString('hex'), hex(wire).toString('hex'), msg.type);
    assert.deepEqual(decodeMessage(hex(wire)), msg, msg.type);
  }
});

test('property: every message type round-trips through encodeMessage / decodeMessage', () => {
  fc.assert(
    fc.property(arbMessage, (msg) => {
      assert.deepEqual(decodeMessage(encodeMessage(msg), { maxBlockLength: 1024 }), msg);
    }),
    { numRuns: 2000 },
  );
});

test('property: piece header + block is the piece message', () => {
  fc.assert(
    fc.property(u32, u32, bytes({ maxLength: 200 }), (index, begin, block) => {
      const header = encodePieceHeader(index, begin, block.length);
      assert.equal(header.length, 13);
      assert.deepEqual(Buffer.concat([header, block]), encodeMessage({ type: 'piece', index, begin, block }));
    }),
  );
  // The header is 13 bytes, whatever the block length it announces.
  assert.equal(encodePieceHeader(0, 0, 0xfffffff0).buffer.byteLength < 1 << 20, true);
});

test('encoders refuse values the wire cannot carry', () => {
  const bad: Message[] = [
    { type: 'have', index: -1 },
    { type: 'have', index: 2 ** 32 },
    { type: 'have', index: 1.5 },
    { type: 'request', index: 0, begin: 0, length: NaN },
    { type: 'port', port: 65536 },
    { type: 'extended', id: 256, payload: Buffer.alloc(0) },
  ];
  for (const m of bad) assert.throws(() => encodeMessage(m), isWire('BAD_ARGUMENT'), JSON.stringify(m));
  assert.throws(() => encodePieceHeader(0, 0, 2 ** 32), isWire('BAD_ARGUMENT'));
});

test('decodeMessage: wrong lengths, unknown ids, truncation and trailing bytes', () => {
  // Fixed-size messages must have their exact size.
  const fixed: [number, number][] = [
    [0, 1], [1, 1], [2, 1], [3, 1], [4, 5], [6, 13], [8, 13], [9, 3], [13, 5], [14, 1], [15, 1], [16, 13], [17, 5],
  ];
  for (const [id, len] of fixed) {
    for (const wrong of [len - 1, len + 1, len + 4]) {
      if (wrong < 1) continue;
      const f = Buffer.alloc(4 + wrong);
      f.writeUInt32BE(wrong, 0);
      f[4] = id;
      assert.throws(() => decodeMessage(f), (e: unknown) => isWire('BAD_LENGTH')(e) && (e as PeerWireError).messageId === id, `id ${id} length ${wrong}`);
    }
  }
  assert.throws(() => decodeMessage(hex('00000008 07 00000000 000000')), isWire('BAD_LENGTH'));
  assert.throws(() => decodeMessage(hex('00000001 14')), isWire('BAD_LENGTH'));
  for (const id of [10, 11, 12, 18, 19, 21, 255]) {
    assert.throws(() => decodeMessage(Buffer.from([0, 0, 0, 3, id, 1, 2])), (e: unknown) => isWire('UNKNOWN_ID')(e) && (e as PeerWireError).messageId === id);
  }
  // Every strict prefix of a valid frame is truncated.
  const frame = encodeMessage({ type: 'request', index: 1, begin: 2, length: 3 });
  for (let n = 0; n < frame.length; n++) assert.throws(() => decodeMessage(frame.subarray(0, n)), isWire('TRUNCATED'), `prefix ${n}`);
  assert.throws(() => decodeMessage(Buffer.concat([frame, hex('00')])), isWire('TRAILING_DATA'));
  assert.throws(() => decodeMessage(hex('00000000 00')), isWire('TRAILING_DATA'));
  // Limits.
  assert.throws(() => decodeMessage(hex('ffffffff')), isWire('TOO_LARGE'));
  const bigPiece = encodeMessage({ type: 'piece', index: 0, begin: 0, block: Buffer.alloc(100) });
  assert.throws(() => decodeMessage(bigPiece, { maxBlockLength: 99 }), isWire('TOO_LARGE'));
  assert.doesNotThrow(() => decodeMessage(bigPiece, { maxBlockLength: 100 }));
  assert.throws(() => decodeMessage(encodeMessage({ type: 'bitfield', bytes: Buffer.alloc(50) }), { maxMessageLength: 50 }), isWire('TOO_LARGE'));
});

test('fuzz: decodeMessage and the handshake decoders only ever throw PeerWireError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (u) => {
      for (const f of [() => decodeMessage(u), () => decodeHandshake(u), () => decodeHandshakeStart(u)]) {
        try {
          f();
        } catch (e) {
          assert.ok(e instanceof PeerWireError, String(e));
        }
      }
    }),
    { numRuns: 3000 },
  );
  // Frames with a plausible length prefix reach the id checks too.
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 20 }), (id, body) => {
      const f = Buffer.concat([Buffer.from([0, 0, 0, body.length + 1, id]), body]);
      try {
        decodeMessage(f);
      } catch (e) {
        assert.ok(e instanceof PeerWireError, String(e));
      }
    }),
    { numRuns: 3000 },
  );
});

// ---------------------------------------------------------------- reader

test('reader: a stream cut at every byte boundary yields the same items', () => {
  const hs = encodeHandshake({ infoHash: Buffer.alloc(20, 3), peerId: Buffer.alloc(20, 4), reserved: { extended: true } });
  const msgs: Message[] = [
    { type: 'bitfield', bytes: hex('f0') },
    { type: 'keep-alive' },
    { type: 'piece', index: 1, begin: 16384, block: Buffer.from('hello world') },
    { type: 'have', index: 9 },
    { type: 'extended', id: 3, payload: Buffer.from('d1:ai1ee') },
  ];
  const stream = Buffer.concat([hs, ...msgs.map(encodeMessage)]);
  const whole = new MessageReader({ expectHandshake: true });
  whole.push(stream);
  const expected = drain(whole).map(plain);
  assert.equal(expected.length, 1 + msgs.length);
  assert.equal((expected[0] as { type: string }).type, 'handshake');
  for (let i = 0; i <= stream.length; i++) {
    for (let j = i; j <= stream.length; j += 7) {
      const r = new MessageReader({ expectHandshake: true });
      const got: ReaderItem[] = [];
      for (const c of cut(stream, [i, j])) {
        r.push(c);
        got.push(...drain(r));
      }
      assert.deepEqual(got.map(plain), expected, `cut at ${i}, ${j}`);
      assert.equal(r.buffered, 0);
      assert.equal(r.offset, stream.length);
    }
  }
  // One byte at a time.
  const r = new MessageReader({ expectHandshake: true });
  const got: ReaderItem[] = [];
  for (const b of stream) {
    r.push(Buffer.from([b]));
    got.push(...drain(r));
  }
  assert.deepEqual(got.map(plain), expected);
});

test('property: random messages in random chunks decode to the same messages', () => {
  fc.assert(
    fc.property(fc.array(arbMessage, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (msgs, points) => {
      const stream = Buffer.concat(msgs.map(encodeMessage));
      const r = new MessageReader({ maxBlockLength: 1024 });
      const got: ReaderItem[] = [];
      for (const c of cut(stream, points)) {
        r.push(c);
        got.push(...drain(r));
      }
      assert.deepEqual(got, msgs);
      assert.equal(r.buffered, 0);
    }),
    { numRuns: 500 },
  );
});

test('property: borrowed chunks: items are the same when the caller reuses its buffer after each detach', () => {
  fc.assert(
    fc.property(fc.array(arbMessage, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (msgs, points) => {
      const stream = Buffer.concat(msgs.map(encodeMessage));
      const r = new MessageReader({ maxBlockLength: 1024 });
      const scratch = Buffer.alloc(stream.length + 1);
      const got: unknown[] = [];
      for (const c of cut(stream, points)) {
        // The caller's one read buffer: the bytes are lent, then overwritten with junk.
        const lent = scratch.subarray(0, c.length);
        c.copy(lent);
        r.push(lent, true);
        for (const item of drain(r)) {
          // A piece block must be copied before the buffer is reused (the driver's store does it);
          // every other item must already own its memory.
          got.push(item.type === 'piece' ? { ...item, block: Buffer.from(item.block) } : item);
        }
        r.detach();
        scratch.fill(0xee);
      }
      assert.deepEqual(got, msgs);
      assert.equal(r.buffered, 0);
    }),
    { numRuns: 500 },
  );
});

test('reader: split handshake mode gives the info hash before the peer id', () => {
  const infoHash = Buffer.alloc(20, 0x11);
  const peerId = Buffer.alloc(20, 0x22);
  const hs = encodeHandshake({ infoHash, peerId, reserved: { fast: true } });
  const r = new MessageReader({ expectHandshake: 'split' });
  r.push(hs.subarray(0, 47));
  assert.equal(r.next(), undefined);
  r.push(hs.subarray(47, 50));
  const start = r.next();
  assert.ok(start?.type === 'handshake-start');
  assert.deepEqual(start.infoHash, infoHash);
  assert.equal(start.fast, true);
  assert.equal(r.next(), undefined);
  assert.equal(r.handshakeDone, false);
  r.push(Buffer.concat([hs.subarray(50), encodeMessage({ type: 'have-all' })]));
  const id = r.next();
  assert.ok(id?.type === 'handshake-peer-id');
  assert.deepEqual(id.peerId, peerId);
  assert.equal(r.handshakeDone, true);
  assert.deepEqual(r.next(), { type: 'have-all' });
});

test('reader: a bad handshake fails at the first byte that shows it', () => {
  const r = new MessageReader({ expectHandshake: true });
  r.push(Buffer.from([0x16]));
  assert.throws(() => r.next(), isWire('BAD_PROTOCOL'));
  assert.throws(() => r.next(), isWire('BAD_PROTOCOL'));
  const r2 = new MessageReader({ expectHandshake: true });
  const hs = encodeHandshake({ infoHash: Buffer.alloc(20), peerId: Buffer.alloc(20) });
  hs[10] = hs[10]! ^ 0x20;
  r2.push(hs);
  assert.throws(() => r2.next(), isWire('BAD_PROTOCOL'));
  assert.ok(r2.error instanceof PeerWireError);
});

test('reader: a huge declared length fails on the 4-byte prefix alone, before any body is kept', () => {
  const r = new MessageReader();
  r.push(hex('ffffffff'));
  assert.throws(() => r.next(), (e: unknown) => isWire('TOO_LARGE')(e) && (e as PeerWireError).offset === 0 && !(e as PeerWireError).recoverable);
  assert.equal(r.buffered, 0);
  // The reader stays failed and keeps nothing more.
  r.push(Buffer.alloc(1 << 16));
  assert.equal(r.buffered, 0);
  assert.throws(() => r.next(), isWire('TOO_LARGE'));
  // Just over the limit, with the offset of the frame in the stream.
  const r2 = new MessageReader({ maxMessageLength: 1000 });
  r2.push(Buffer.concat([encodeMessage({ type: 'choke' }), hex('000003e9')]));
  assert.deepEqual(r2.next(), { type: 'choke' });
  assert.throws(() => r2.next(), (e: unknown) => isWire('TOO_LARGE')(e) && (e as PeerWireError).offset === 5);
  // A piece whose block is over maxBlockLength fails on the 5-byte header.
  const r3 = new MessageReader({ maxBlockLength: 16384 });
  r3.push(hex('0000400a 07'));
  assert.throws(() => r3.next(), isWire('TOO_LARGE'));
  const r4 = new MessageReader({ maxBlockLength: 16384 });
  r4.push(hex('0000400a'));
  assert.equal(r4.next(), undefined);
  r4.push(hex('07'));
  assert.throws(() => r4.next(), isWire('TOO_LARGE'));
});

test('reader: unknown ids and wrong lengths are skipped frame by frame, body unbuffered', () => {
  const r = new MessageReader();
  const unknown = Buffer.concat([hex('00000401 63'), Buffer.alloc(0x400, 0x55)]);
  const stream = Buffer.concat([encodeMessage({ type: 'unchoke' }), unknown, hex('00000002 04 00'), encodeMessage({ type: 'have', index: 5 })]);
  r.push(stream.subarray(0, 5 + 5 + 10)); // unchoke, the unknown header, 10 bytes of its body
  assert.deepEqual(r.next(), { type: 'unchoke' });
  assert.throws(() => r.next(), (e: unknown) => isWire('UNKNOWN_ID')(e) && (e as PeerWireError).recoverable && (e as PeerWireError).messageId === 0x63 && (e as PeerWireError).offset === 9);
  assert.equal(r.buffered, 0);
  // The rest of the unknown body is dropped on arrival.
  r.push(stream.subarray(20, 20 + 1000));
  assert.equal(r.buffered, 0);
  r.push(stream.subarray(1020));
  assert.throws(() => r.next(), (e: unknown) => isWire('BAD_LENGTH')(e) && (e as PeerWireError).recoverable);
  assert.deepEqual(r.next(), { type: 'have', index: 5 });
  assert.equal(r.next(), undefined);
  assert.equal(r.offset, stream.length);
});

test('reader: piece blocks are views of the pushed chunk when they fit in it', () => {
  const frame = encodeMessage({ type: 'piece', index: 0, begin: 0, block: Buffer.alloc(16384, 7) });
  const chunk = Buffer.concat([frame, frame]);
  const r = new MessageReader();
  r.push(chunk);
  const m = r.next();
  assert.ok(m?.type === 'piece');
  assert.equal(m.block.buffer, chunk.buffer);
  assert.equal(m.block.byteOffset, chunk.byteOffset + 13);
  // Split across chunks: one copy into a fresh buffer.
  const r2 = new MessageReader();
  r2.push(frame.subarray(0, 100));
  r2.push(frame.subarray(100));
  const m2 = r2.next();
  assert.ok(m2?.type === 'piece');
  assert.deepEqual(m2.block, Buffer.alloc(16384, 7));
});

test('reader: many tiny chunks and large streams stay linear', () => {
  const frame = encodeMessage({ type: 'piece', index: 1, begin: 0, block: Buffer.alloc(16384, 1) });
  const stream = Buffer.concat(new Array<Buffer>(256).fill(frame)); // ~4 MiB
  const r = new MessageReader();
  let n = 0;
  const started = process.hrtime.bigint();
  for (let p = 0; p < stream.length; p += 1500) {
    r.push(stream.subarray(p, p + 1500));
    for (const m of r) if (m.type === 'piece') n++;
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  assert.equal(n, 256);
  assert.ok(ms < 2000, `took ${ms} ms`);
  // Thousands of 1-byte chunks buffered before a read.
  const r2 = new MessageReader();
  const big = encodeMessage({ type: 'bitfield', bytes: Buffer.alloc(20000, 0xff) });
  for (const b of big) r2.push(Buffer.from([b]));
  const m = r2.next();
  assert.ok(m?.type === 'bitfield' && m.bytes.length === 20000);
});

test('fuzz: the reader only ever throws PeerWireError, and recovers where it says it can', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 10 }), fc.constantFrom<boolean | 'split'>(false, true, 'split'), (u, points, expectHandshake) => {
      const r = new MessageReader({ expectHandshake, maxMessageLength: 200, maxBlockLength: 64 });
      let failed = false;
      for (const c of cut(Buffer.from(u), points)) {
        r.push(c);
        for (let guard = 0; guard < 1000 && !failed; guard++) {
          try {
            if (r.next() === undefined) break;
          } catch (e) {
            assert.ok(e instanceof PeerWireError, String(e));
            assert.ok(e instanceof CodecError);
            if (!e.recoverable) failed = true;
          }
        }
      }
      assert.ok(r.buffered <= u.length);
    }),
    { numRuns: 2000 },
  );
});

test('property: after any mix of good, unknown and mis-sized frames, the reader stays in step', () => {
  const anyFrame = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 30 })).map(([id, body]) => {
    const f = Buffer.alloc(5 + body.length);
    f.writeUInt32BE(1 + body.length, 0);
    f[4] = id;
    f.set(body, 5);
    return f;
  });
  fc.assert(
    fc.property(fc.array(anyFrame, { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 20 }), (frames, points) => {
      // What decodeMessage says about each frame on its own is what the reader says in sequence.
      const expected = frames.map((f) => {
        try {
          return plain(decodeMessage(f));
        } catch (e) {
          assert.ok(e instanceof PeerWireError && e.recoverable, String(e));
          return e.code;
        }
      });
      const r = new MessageReader();
      const got: unknown[] = [];
      for (const c of cut(Buffer.concat(frames), points)) {
        r.push(c);
        for (;;) {
          try {
            const item = r.next();
            if (item === undefined) break;
            got.push(plain(item));
          } catch (e) {
            assert.ok(e instanceof PeerWireError && e.recoverable, String(e));
            got.push(e.code);
          }
        }
      }
      assert.deepEqual(got, expected);
      assert.equal(r.buffered, 0);
    }),
    { numRuns: 500 },
  );
});

// ---------------------------------------------------------------- bitfield

test('bitfield: bit order, spare bits, sizes', () => {
  const b = new Bitfield(10, hex('8040'));
  assert.equal(b.get(0), true);
  assert.equal(b.get(9), true);
  assert.equal(b.get(1), false);
  assert.equal(b.count, 2);
  assert.deepEqual([...b], [0, 9]);
  assert.throws(() => new Bitfield(10, hex('8020')), isWire('BAD_BITFIELD'));
  assert.throws(() => new Bitfield(10, hex('80')), isWire('BAD_BITFIELD'));
  assert.throws(() => new Bitfield(10, hex('804000')), isWire('BAD_BITFIELD'));
  assert.doesNotThrow(() => new Bitfield(16, hex('ffff')));
  assert.equal(new Bitfield(0).isComplete, true);
  assert.equal(Bitfield.byteLength(17), 3);
  const full = Bitfield.full(10);
  assert.equal(full.toBuffer().toString('hex'), 'ffc0');
  assert.equal(full.isComplete, true);
  assert.equal(full.count, 10);
  assert.throws(() => full.set(10), isWire('BAD_INDEX'));
  assert.throws(() => full.clear(-1), isWire('BAD_INDEX'));
  assert.equal(full.get(10), false);
  assert.equal(full.get(0.5), false);
  assert.throws(() => new Bitfield(-1), isWire('BAD_ARGUMENT'));
  // The constructor copies its input.
  const src = hex('ff');
  const c = new Bitfield(8, src);
  src[0] = 0;
  assert.equal(c.count, 8);
});

test('property: bitfield matches a set model under any sequence of changes', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 200 }).chain((n) => fc.tuple(fc.constant(n), fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: n - 1 })), { maxLength: 300 }))),
      ([n, ops]) => {
        const b = new Bitfield(n);
        const model = new Set<number>();
        for (const [add, i] of ops) {
          if (add) {
            assert.equal(b.set(i), !model.has(i));
            model.add(i);
          } else {
            assert.equal(b.clear(i), model.has(i));
            model.delete(i);
          }
        }
        assert.equal(b.count, model.size);
        assert.equal(b.isEmpty, model.size === 0);
        assert.equal(b.isComplete, model.size === n);
        assert.deepEqual([...b], [...model].sort((x, y) => x - y));
        for (let i = 0; i < n; i++) assert.equal(b.get(i), model.has(i));
        const wire = b.toBuffer();
        assert.equal(wire.length, Math.ceil(n / 8));
        const again = new Bitfield(n, wire);
        assert.deepEqual([...again], [...b]);
        assert.equal(again.count, b.count);
        // It travels in a bitfield message unchanged.
        const m = decodeMessage(encodeMessage({ type: 'bitfield', bytes: wire }));
        assert.ok(m.type === 'bitfield');
        assert.deepEqual(new Bitfield(n, m.bytes).toBuffer(), wire);
      },
    ),
  );
});

test('property: full(n) has every piece and no spare bit; any spare bit is refused', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 300 }), (n) => {
      const f = Bitfield.full(n);
      assert.equal(f.count, n);
      assert.equal([...f].length, n);
      const wire = f.toBuffer();
      assert.doesNotThrow(() => new Bitfield(n, wire));
      if (n % 8 !== 0) {
        for (let bit = n % 8; bit < 8; bit++) {
          const bad = Buffer.from(wire);
          bad[bad.length - 1] = bad[bad.length - 1]! | (0x80 >>> bit);
          assert.throws(() => new Bitfield(n, bad), isWire('BAD_BITFIELD'));
        }
      }
    }),
  );
});

// ---------------------------------------------------------------- allowed fast

test('allowed-fast set: the BEP 6 example vectors', () => {
  const infoHash = Buffer.alloc(20, 0xaa);
  assert.deepEqual(allowedFastSet(7, infoHash, '80.4.4.200', 1313), [1059, 431, 808, 1217, 287, 376, 1188]);
  assert.deepEqual(allowedFastSet(9, infoHash, Uint8Array.from([80, 4, 4, 200]), 1313), [1059, 431, 808, 1217, 287, 376, 1188, 353, 508]);
  // Only the first three octets count; IPv4-mapped IPv6 is IPv4.
  assert.deepEqual(allowedFastSet(7, infoHash, '80.4.4.1', 1313), [1059, 431, 808, 1217, 287, 376, 1188]);
  assert.deepEqual(allowedFastSet(7, infoHash, '::ffff:80.4.4.200', 1313), [1059, 431, 808, 1217, 287, 376, 1188]);
  // k is capped by the piece count; every piece then appears once.
  assert.deepEqual(allowedFastSet(10, infoHash, '80.4.4.200', 3).sort(), [0, 1, 2]);
  assert.deepEqual(allowedFastSet(10, infoHash, '80.4.4.200', 0), []);
  assert.deepEqual(allowedFastSet(0, infoHash, '80.4.4.200', 10), []);
  assert.throws(() => allowedFastSet(7, infoHash, '2001:db8::1', 1313), isWire('BAD_ARGUMENT'));
  assert.throws(() => allowedFastSet(7, infoHash, 'not-an-ip', 1313), isWire('BAD_ARGUMENT'));
  assert.throws(() => allowedFastSet(7, Buffer.alloc(19), '1.2.3.4', 1313), isWire('BAD_ARGUMENT'));
  assert.throws(() => allowedFastSet(-1, infoHash, '1.2.3.4', 1313), isWire('BAD_ARGUMENT'));
});

test('property: allowed-fast sets are prefixes of each other and distinct', () => {
  fc.assert(
    fc.property(id20, fc.ipV4(), fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 0, max: 20 }), (infoHash, ip, pieces, k) => {
      const small = allowedFastSet(k, infoHash, ip, pieces);
      const large = allowedFastSet(k + 1, infoHash, ip, pieces);
      assert.equal(small.length, Math.min(k, pieces));
      assert.deepEqual(large.slice(0, small.length), small);
      assert.equal(new Set(large).size, large.length);
      for (const i of large) assert.ok(i >= 0 && i < pieces);
    }),
    { numRuns: 300 },
  );
});
