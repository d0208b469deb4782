import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { decodeWithSpans, encode, isDict, type BencodeInput } from '../src/codec/bencode.js';
import {
  defaultPieceLength,
  encodeInfo,
  encodeTorrent,
  MetainfoError,
  parseInfoDictionary,
  parseMetainfo,
  type InfoFields,
  type MetainfoErrorCode,
  type MetainfoLimits,
  type TorrentFields,
} from '../src/codec/metainfo.js';

const sha1 = (b: Uint8Array): Buffer => createHash('sha1').update(b).digest();
const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** `count` distinct 20-byte piece hashes. */
function fakePieces(count: number): Buffer {
  return Buffer.concat(Array.from({ length: count }, (_, i) => sha1(Buffer.from(`piece ${i}`))));
}

type Obj = { [key: string]: BencodeInput | undefined };

/** A valid single-file info dictionary (5 bytes, one piece) with fields overridden. */
function singleInfo(over: Obj = {}): Obj {
  return { name: 'a.txt', 'piece length': 16384, pieces: fakePieces(1), length: 5, ...over };
}

/** A valid multi-file info dictionary (two files, 30 bytes, two pieces of 16) with fields overridden. */
function multiInfo(over: Obj = {}): Obj {
  return {
    name: 'dir',
    'piece length': 16,
    pieces: fakePieces(2),
    files: [
      { length: 10, path: ['x', 'one.bin'] },
      { length: 20, path: ['two.bin'] },
    ],
    ...over,
  };
}

function torrentBytes(info: BencodeInput, top: Obj = {}): Buffer {
  return encode({ announce: 'http://tracker.example/announce', info, ...top });
}

function expectCode(fn: () => unknown, code: MetainfoErrorCode, what: string = code): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof MetainfoError, `${what}: expected MetainfoError, got ${String(e)}`);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    return true;
  });
}

function expectRejected(info: BencodeInput, code: MetainfoErrorCode, what: string, limits?: MetainfoLimits): void {
  expectCode(() => parseMetainfo(torrentBytes(info), limits), code, what);
}

// ---------------------------------------------------------------- arbitraries

/** A path component that is safe on disk: non-empty, not . or .., no / \ NUL; any Unicode otherwise. */
const componentArb = fc
  .string({ unit: fc.oneof(fc.constantFrom('a', 'b', '.', '-', ' '), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 })), minLength: 1, maxLength: 10 })
  .filter((c) => c !== '.' && c !== '..' && !/[/\\\0]/.test(c));

/** Paths none of which equals another or is a folder of another. */
const pathsArb = fc.array(fc.array(componentArb, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 8 }).map((paths) => {
  const kept: string[][] = [];
  for (const p of paths) {
    const key = p.join('/');
    const clash = kept.some((q) => {
      const k = q.join('/');
      return k === key || k.startsWith(`${key}/`) || key.startsWith(`${k}/`);
    });
    if (!clash) kept.push(p);
  }
  return kept;
});

const pieceLengthArb = fc.oneof(fc.integer({ min: 1, max: 64 }), fc.constantFrom(16384, 32768, 1 << 20), fc.integer({ min: 1, max: 128 * 1024 * 1024 }));

const infoArb: fc.Arbitrary<InfoFields> = pieceLengthArb.chain((pieceLength) => {
  const lengthArb = fc.integer({ min: 0, max: pieceLength * 4 });
  const privateArb = fc.constantFrom<boolean | undefined>(true, false, undefined);
  const single = fc.record({ name: componentArb, length: lengthArb.map((l) => Math.max(1, l)), private: privateArb });
  const multi = fc.record({
    name: componentArb,
    files: pathsArb.chain((paths) =>
      fc.array(lengthArb, { minLength: paths.length, maxLength: paths.length }).map((lengths) => paths.map((path, i) => ({ path, length: lengths[i]! })))),
    private: privateArb,
  });
  return fc.oneof(single, multi.filter((m) => m.files.some((f) => f.length > 0))).map((r): InfoFields => {
    const total = 'files' in r ? r.files.reduce((s, f) => s + f.length, 0) : r.length;
    return { ...r, pieceLength, pieces: fakePieces(Math.ceil(total / pieceLength)) };
  });
});

const textArb = fc.option(fc.string({ unit: 'grapheme', maxLength: 30 }), { nil: undefined });

const torrentArb: fc.Arbitrary<TorrentFields> = fc.record({
  info: infoArb,
  announceList: fc.option(fc.array(fc.array(fc.webUrl(), { maxLength: 3 }), { maxLength: 4 }), { nil: undefined }),
  urlList: fc.option(fc.array(fc.webUrl(), { maxLength: 3 }), { nil: undefined }),
  comment: textArb,
  createdBy: textArb,
  creationDate: fc.option(fc.integer({ min: 0, max: 2 ** 40 }), { nil: undefined }),
});

/** What BEP 12 makes of the tiers: duplicates (across all tiers) and then empty tiers dropped. */
function expectedTiers(tiers: readonly (readonly string[])[] | undefined): string[][] {
  const seen = new Set<string>();
  const out: string[][] = [];
  for (const tier of tiers ?? []) {
    const t = tier.filter((u) => !seen.has(u) && (seen.add(u), true));
    if (t.length > 0) out.push(t);
  }
  return out;
}

// ---------------------------------------------------------------- round trip

test('property: encodeTorrent -> parseMetainfo gives back every field; the info hash is over the info bytes', () => {
  fc.assert(
    fc.property(torrentArb, (t) => {
      const bytes = encodeTorrent(t);
      const m = parseMetainfo(bytes);
      const info = t.info;
      assert.equal(m.name, info.name);
      assert.equal(m.pieceLength, info.pieceLength);
      assert.ok(m.pieces.equals(info.pieces));
      assert.equal(m.pieceCount, info.pieces.length / 20);
      assert.equal(m.private, info.private === true);
      assert.equal(m.isMultiFile, info.files !== undefined);
      const files = info.files ?? [{ path: [info.name], length: info.length! }];
      assert.equal(m.files.length, files.length);
      let offset = 0;
      files.forEach((f, i) => {
        const got = m.files[i]!;
        assert.deepEqual(got.path, f.path);
        assert.equal(got.length, f.length);
        assert.equal(got.offset, offset, 'offsets are cumulative');
        assert.equal(got.padding, false);
        offset += f.length;
      });
      assert.equal(m.length, offset);
      assert.equal(m.pieceCount, Math.ceil(m.length / m.pieceLength));
      assert.deepEqual(m.announceList, expectedTiers(t.announceList));
      assert.deepEqual(m.urlList, t.urlList ?? []);
      assert.equal(m.comment, t.comment);
      assert.equal(m.createdBy, t.createdBy);
      assert.equal(m.creationDate, t.creationDate);

      const infoBytes = encodeInfo(info);
      assert.ok(m.infoBytes.equals(infoBytes));
      assert.ok(m.infoHash.equals(sha1(infoBytes)));
      assert.equal(m.infoHashHex, sha1(infoBytes).toString('hex'));
      // ... and over the exact span the info dictionary occupies in the file.
      const { value, spanOf } = decodeWithSpans(bytes);
      assert.ok(isDict(value));
      const span = spanOf(value.get('info') as object)!;
      assert.ok(m.infoHash.equals(sha1(bytes.subarray(span.start, span.end))));
      // The encoding is canonical: a strict bencode decode accepts it.
      assert.doesNotThrow(() => decodeWithSpans(bytes));
      // A bare info dictionary (BEP 9) parses to the same torrent.
      const bare = parseInfoDictionary(infoBytes, m.infoHash);
      assert.deepEqual({ ...bare, announceList: m.announceList, urlList: m.urlList, comment: m.comment, createdBy: m.createdBy, creationDate: m.creationDate }, m);
    }),
    { numRuns: 400 },
  );
});

test('private: true writes private=1, false writes private=0, undefined leaves the key out; the hashes differ', () => {
  const base = { name: 'f', pieceLength: 16384, pieces: fakePieces(1), length: 1 };
  const on = encodeInfo({ ...base, private: true });
  const off = encodeInfo({ ...base, private: false });
  const absent = encodeInfo(base);
  assert.match(on.toString('latin1'), /7:privatei1e/);
  assert.match(off.toString('latin1'), /7:privatei0e/);
  assert.doesNotMatch(absent.toString('latin1'), /private/);
  assert.equal(new Set([on, off, absent].map((x) => sha1(x).toString('hex'))).size, 3);
  assert.equal(parseInfoDictionary(on).private, true);
  assert.equal(parseInfoDictionary(off).private, false);
  assert.equal(parseInfoDictionary(absent).private, false);
});

test('unsorted keys inside info parse, and the hash is over the raw bytes, not a canonical re-encoding', () => {
  const pieces = fakePieces(1).toString('latin1');
  const rawInfo = `d4:name5:a.txt6:pieces20:${pieces}12:piece lengthi16384e6:lengthi5ee`;
  const bytes = b(`d8:announce9:http://t/4:info${rawInfo}e`);
  const m = parseMetainfo(bytes);
  assert.equal(m.name, 'a.txt');
  assert.equal(m.length, 5);
  assert.deepEqual(m.announceList, [['http://t/']]);
  assert.ok(m.infoBytes.equals(b(rawInfo)));
  assert.ok(m.infoHash.equals(sha1(b(rawInfo))));
  const canonical = encodeInfo({ name: m.name, pieceLength: m.pieceLength, pieces: m.pieces, length: m.length });
  assert.ok(!canonical.equals(b(rawInfo)));
  assert.ok(!m.infoHash.equals(sha1(canonical)));
  // The same goes for a bare info dictionary, checked against the raw hash.
  assert.ok(parseInfoDictionary(b(rawInfo), sha1(b(rawInfo))).infoHash.equals(m.infoHash));
});

test('BEP 12: announce-list overrides announce, empty tiers and duplicate URLs are dropped', () => {
  const parse = (top: Obj) => parseMetainfo(torrentBytes(singleInfo(), top)).announceList;
  assert.deepEqual(parse({ announce: 'http://a/', 'announce-list': [['http://b/'], ['http://c/']] }), [['http://b/'], ['http://c/']]);
  assert.deepEqual(parse({ 'announce-list': [[], ['http://x/'], []] }), [['http://x/']]);
  assert.deepEqual(parse({ 'announce-list': [['http://x/', 'http://x/', 'http://y/'], ['http://y/', 'http://z/'], ['http://x/']] }), [['http://x/', 'http://y/'], ['http://z/']]);
  assert.deepEqual(parse({ 'announce-list': [['', ' http://p/ ']] }), [['http://p/']]);
  // An announce-list with nothing in it falls back to announce.
  assert.deepEqual(parse({ announce: 'http://a/', 'announce-list': [[], ['']] }), [['http://a/']]);
  assert.deepEqual(parse({ announce: 'http://a/', 'announce-list': [] }), [['http://a/']]);
  assert.deepEqual(parse({ announce: undefined }), []);
  assert.deepEqual(parse({ announce: '' }), []);
  expectCode(() => parse({ 'announce-list': ['http://flat/'] }), 'WRONG_TYPE');
  expectCode(() => parse({ 'announce-list': 'http://x/' }), 'WRONG_TYPE');
});

test('encodeTorrent writes announce alone for one tracker, announce-list for more', () => {
  const info: InfoFields = { name: 'f', pieceLength: 16384, pieces: fakePieces(1), length: 1 };
  const one = encodeTorrent({ info, announceList: [['http://a/']] }).toString('latin1');
  assert.match(one, /8:announce9:http:\/\/a\//);
  assert.doesNotMatch(one, /announce-list/);
  const two = encodeTorrent({ info, announceList: [['http://a/'], [], ['http://b/']] });
  assert.match(two.toString('latin1'), /announce-list/);
  assert.deepEqual(parseMetainfo(two).announceList, [['http://a/'], ['http://b/']]);
  assert.deepEqual(parseMetainfo(encodeTorrent({ info })).announceList, []);
});

test('url-list may be a single string or a list (BEP 19); empty entries are dropped', () => {
  const parse = (top: Obj) => parseMetainfo(torrentBytes(singleInfo(), top)).urlList;
  assert.deepEqual(parse({ 'url-list': 'http://ws/' }), ['http://ws/']);
  assert.deepEqual(parse({ 'url-list': '' }), []);
  assert.deepEqual(parse({ 'url-list': ['http://a/', '', 'http://b/'] }), ['http://a/', 'http://b/']);
  assert.deepEqual(parse({}), []);
  expectCode(() => parse({ 'url-list': 5 }), 'WRONG_TYPE');
  expectCode(() => parse({ 'url-list': [5] }), 'WRONG_TYPE');
});

test('name.utf-8 and path.utf-8 are preferred over name and path', () => {
  const m = parseMetainfo(
    torrentBytes(
      multiInfo({
        name: b('caf\xe9'),
        'name.utf-8': 'café',
        files: [
          { length: 10, path: [b('\xfcber')], 'path.utf-8': ['über'] },
          { length: 20, path: ['plain'] },
        ],
      }),
    ),
  );
  assert.equal(m.name, 'café');
  assert.deepEqual(m.files.map((f) => f.path), [['über'], ['plain']]);
  assert.equal(parseMetainfo(torrentBytes(singleInfo({ 'name.utf-8': 'ünï.txt' }))).name, 'ünï.txt');
  // A bad name.utf-8 is refused even when name itself is fine.
  expectRejected(singleInfo({ 'name.utf-8': '..' }), 'BAD_PATH', 'name.utf-8 ..');
});

test('BEP 47 padding files are flagged, count toward offsets, and may repeat a path', () => {
  const m = parseMetainfo(
    torrentBytes({
      name: 'dir',
      'piece length': 16,
      pieces: fakePieces(3),
      files: [
        { length: 5, path: ['a'] },
        { attr: 'p', length: 11, path: ['.pad', '11'] },
        { length: 10, path: ['b'] },
        { attr: 'p', length: 6, path: ['.pad', '11'] },
        { attr: 'x', length: 1, path: ['c'] },
      ],
    }),
  );
  assert.deepEqual(
    m.files.map((f) => [f.path.join('/'), f.offset, f.length, f.padding]),
    [
      ['a', 0, 5, false],
      ['.pad/11', 5, 11, true],
      ['b', 16, 10, false],
      ['.pad/11', 26, 6, true],
      ['c', 32, 1, false],
    ],
  );
  assert.equal(m.length, 33);
});

test('optional top-level fields: comment, created by, creation date', () => {
  const m = parseMetainfo(torrentBytes(singleInfo(), { comment: 'hi ✓', 'created by': 'peerkit', 'creation date': 1700000000 }));
  assert.equal(m.comment, 'hi ✓');
  assert.equal(m.createdBy, 'peerkit');
  assert.equal(m.creationDate, 1700000000);
  expectCode(() => parseMetainfo(torrentBytes(singleInfo(), { comment: 7 })), 'WRONG_TYPE');
});

test('defaultPieceLength: a power of two from 16 KiB to 16 MiB giving at most about 2,000 pieces', () => {
  assert.equal(defaultPieceLength(0), 16384);
  assert.equal(defaultPieceLength(1), 16384);
  assert.equal(defaultPieceLength(2000 * 16384), 16384);
  assert.equal(defaultPieceLength(2000 * 16384 + 1), 32768);
  assert.equal(defaultPieceLength(2 ** 50), 16 * 1024 * 1024);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 48 }), (n) => {
      const pl = defaultPieceLength(n);
      assert.ok(pl >= 16384 && pl <= 16 * 1024 * 1024 && (pl & (pl - 1)) === 0);
      if (pl < 16 * 1024 * 1024) assert.ok(n / pl <= 2000);
      if (pl > 16384) assert.ok(n / (pl / 2) > 2000);
    }),
  );
});

// ---------------------------------------------------------------- parseInfoDictionary

test('parseInfoDictionary accepts the matching hash and refuses any other with HASH_MISMATCH', () => {
  const infoBytes = encode(multiInfo());
  const hash = sha1(infoBytes);
  const m = parseInfoDictionary(infoBytes, hash);
  assert.ok(m.infoHash.equals(hash));
  assert.equal(m.name, 'dir');
  assert.deepEqual(m.announceList, []);
  assert.ok(parseInfoDictionary(new Uint8Array(infoBytes), new Uint8Array(hash)).infoHash.equals(hash));
  const wrong = Buffer.from(hash);
  wrong[19]! ^= 1;
  expectCode(() => parseInfoDictionary(infoBytes, wrong), 'HASH_MISMATCH');
  expectCode(() => parseInfoDictionary(infoBytes, hash.subarray(0, 19)), 'HASH_MISMATCH');
  expectCode(() => parseInfoDictionary(b('i1e')), 'NOT_A_DICT');
  expectCode(() => parseInfoDictionary(b('d4:name')), 'NOT_BENCODE');
  expectCode(() => parseInfoDictionary(encode(multiInfo({ files: [] }))), 'BAD_VALUE');
});

// ---------------------------------------------------------------- hostile input

test('hostile: not a bencoded dictionary with an info dictionary', () => {
  expectCode(() => parseMetainfo(b('')), 'NOT_BENCODE', 'empty');
  expectCode(() => parseMetainfo(b('hello world')), 'NOT_BENCODE', 'text');
  expectCode(() => parseMetainfo(b('d4:infod')), 'NOT_BENCODE', 'truncated');
  expectCode(() => parseMetainfo(Buffer.concat([torrentBytes(singleInfo()), b('x')])), 'NOT_BENCODE', 'trailing data');
  expectCode(() => parseMetainfo(b('d1:ai1e1:ai2ee')), 'NOT_BENCODE', 'duplicate keys');
  expectCode(() => parseMetainfo(encode([singleInfo()])), 'NOT_A_DICT', 'top-level list');
  expectCode(() => parseMetainfo(b('i42e')), 'NOT_A_DICT', 'top-level integer');
  expectCode(() => parseMetainfo(encode({ announce: 'http://t/' })), 'MISSING_FIELD', 'no info');
  expectCode(() => parseMetainfo(encode({ info: 'x' })), 'WRONG_TYPE', 'info a string');
  expectCode(() => parseMetainfo(encode({ info: [] })), 'WRONG_TYPE', 'info a list');
});

test('hostile: missing or mistyped required info fields', () => {
  expectRejected(singleInfo({ name: undefined }), 'MISSING_FIELD', 'no name');
  expectRejected(singleInfo({ 'piece length': undefined }), 'MISSING_FIELD', 'no piece length');
  expectRejected(singleInfo({ pieces: undefined }), 'MISSING_FIELD', 'no pieces');
  expectRejected(singleInfo({ length: undefined }), 'MISSING_FIELD', 'neither length nor files');
  expectRejected(singleInfo({ name: 5 }), 'WRONG_TYPE', 'name an integer');
  expectRejected(singleInfo({ 'piece length': '16384' }), 'WRONG_TYPE', 'piece length a string');
  expectRejected(singleInfo({ pieces: [] }), 'WRONG_TYPE', 'pieces a list');
  expectRejected(singleInfo({ length: '5' }), 'WRONG_TYPE', 'length a string');
  expectRejected(multiInfo({ files: { length: 1 } }), 'WRONG_TYPE', 'files a dict');
  expectRejected(multiInfo({ files: ['x'] }), 'WRONG_TYPE', 'file entry a string');
  expectRejected(multiInfo({ files: [{ length: 30 }] }), 'MISSING_FIELD', 'file without path');
  expectRejected(multiInfo({ files: [{ path: ['a'] }] }), 'WRONG_TYPE', 'file without length');
  expectRejected(multiInfo({ files: [{ length: 30, path: 'a' }] }), 'WRONG_TYPE', 'path a string');
  expectRejected(multiInfo({ files: [{ length: 30, path: [7] }] }), 'WRONG_TYPE', 'path component an integer');
});

test('hostile: pieces that do not fit the length', () => {
  expectRejected(singleInfo({ pieces: Buffer.alloc(19) }), 'BAD_PIECES', '19 bytes');
  expectRejected(singleInfo({ pieces: Buffer.alloc(21) }), 'BAD_PIECES', '21 bytes');
  expectRejected(singleInfo({ pieces: Buffer.alloc(0) }), 'BAD_PIECES', 'empty pieces');
  expectRejected(singleInfo({ length: 16385, pieces: fakePieces(1) }), 'BAD_PIECES', 'too few pieces');
  expectRejected(singleInfo({ length: 16384, pieces: fakePieces(2) }), 'BAD_PIECES', 'too many pieces');
  expectRejected(multiInfo({ pieces: fakePieces(1) }), 'BAD_PIECES', 'multi-file too few');
  expectRejected(multiInfo({ pieces: fakePieces(3) }), 'BAD_PIECES', 'multi-file too many');
  // Exactly on a boundary is fine.
  assert.equal(parseMetainfo(torrentBytes(singleInfo({ length: 32768, pieces: fakePieces(2) }))).pieceCount, 2);
});

test('hostile: lengths and piece lengths out of range', () => {
  expectRejected(singleInfo({ length: 0 }), 'BAD_VALUE', 'zero length');
  expectRejected(multiInfo({ files: [{ length: 0, path: ['a'] }, { length: 0, path: ['b'] }] }), 'BAD_VALUE', 'all files empty');
  expectRejected(singleInfo({ length: -1 }), 'BAD_VALUE', 'negative length');
  expectRejected(singleInfo({ length: 2n ** 64n }), 'BAD_VALUE', 'bigint length');
  expectRejected(multiInfo({ files: [{ length: -5, path: ['a'] }, { length: 35, path: ['b'] }] }), 'BAD_VALUE', 'negative file length');
  expectRejected(multiInfo({ files: [{ length: 2n ** 60n, path: ['a'] }] }), 'BAD_VALUE', 'bigint file length');
  expectRejected(
    multiInfo({ 'piece length': 2 ** 27, files: [{ length: Number.MAX_SAFE_INTEGER, path: ['a'] }, { length: 1, path: ['b'] }] }),
    'TOO_LARGE',
    'total beyond 2^53',
  );
  expectRejected(singleInfo({ length: 5, files: [{ length: 5, path: ['a'] }] }), 'BAD_VALUE', 'both length and files');
  expectRejected(multiInfo({ files: [] }), 'BAD_VALUE', 'empty files');
  expectRejected(singleInfo({ 'piece length': 0 }), 'BAD_VALUE', 'piece length 0');
  expectRejected(singleInfo({ 'piece length': -16384 }), 'BAD_VALUE', 'negative piece length');
  expectRejected(singleInfo({ 'piece length': 128 * 1024 * 1024 + 1 }), 'BAD_VALUE', 'piece length over the default limit');
  expectRejected(singleInfo({ 'piece length': 2n ** 70n }), 'BAD_VALUE', 'bigint piece length');
  expectRejected(singleInfo({ 'piece length': 32768 }), 'BAD_VALUE', 'piece length over a set limit', { maxPieceLength: 16384 });
  assert.equal(parseMetainfo(torrentBytes(singleInfo({ 'piece length': 128 * 1024 * 1024 }))).pieceLength, 128 * 1024 * 1024);
});

test('hostile: unsafe names and path components', () => {
  for (const bad of ['..', '.', '', 'a/b', '/etc', 'a\\b', '..\\x', 'a\0b', 'x'.repeat(1025)]) {
    expectRejected(multiInfo({ files: [{ length: 30, path: ['ok', bad] }] }), 'BAD_PATH', `path component ${JSON.stringify(bad)}`);
    expectRejected(singleInfo({ name: bad }), 'BAD_PATH', `name ${JSON.stringify(bad)}`);
    expectRejected(multiInfo({ name: bad }), 'BAD_PATH', `multi-file name ${JSON.stringify(bad)}`);
    // path.utf-8 is held to the same rules, and padding files too.
    expectRejected(multiInfo({ files: [{ length: 30, path: ['ok'], 'path.utf-8': [bad] }] }), 'BAD_PATH', `path.utf-8 ${JSON.stringify(bad)}`);
    expectRejected(multiInfo({ files: [{ length: 30, path: [bad], attr: 'p' }] }), 'BAD_PATH', `padding ${JSON.stringify(bad)}`);
  }
  expectRejected(multiInfo({ files: [{ length: 30, path: [] }] }), 'BAD_PATH', 'empty path list');
  expectRejected(multiInfo({ files: [{ length: 30, path: Array.from({ length: 65 }, () => 'd') }] }), 'BAD_PATH', 'path too deep');
  expectRejected(multiInfo({ files: [{ length: 30, path: ['a', 'b', 'c'] }] }), 'BAD_PATH', 'path deeper than a set limit', { maxPathDepth: 2 });
  // These look odd but are safe and allowed.
  const m = parseMetainfo(torrentBytes(multiInfo({ files: [{ length: 10, path: ['...'] }, { length: 20, path: ['.hidden', 'a..b', ' '] }] })));
  assert.deepEqual(m.files.map((f) => f.path), [['...'], ['.hidden', 'a..b', ' ']]);
});

test('hostile: duplicate paths and a file that is also a folder', () => {
  const files = (...paths: string[][]) => multiInfo({ files: paths.map((path, i) => ({ length: i === 0 ? 30 : 0, path })) });
  expectRejected(files(['a'], ['a']), 'DUPLICATE_PATH', 'same file twice');
  expectRejected(files(['d', 'a'], ['d', 'a']), 'DUPLICATE_PATH', 'same nested file twice');
  expectRejected(files(['a'], ['a', 'b']), 'DUPLICATE_PATH', 'file then folder');
  expectRejected(files(['a', 'b'], ['a']), 'DUPLICATE_PATH', 'folder then file');
  expectRejected(files(['a', 'b', 'c'], ['a', 'b']), 'DUPLICATE_PATH', 'deep folder then file');
  expectRejected(files(['x'], ['y'], ['x', 'y', 'z']), 'DUPLICATE_PATH', 'file then deep folder');
  // Siblings in one folder are fine.
  assert.equal(parseMetainfo(torrentBytes(files(['a', 'b'], ['a', 'c'], ['ab']))).files.length, 3);
});

test('hostile: limits on file count and input size', () => {
  const three = multiInfo({ files: [{ length: 10, path: ['a'] }, { length: 10, path: ['b'] }, { length: 10, path: ['c'] }] });
  expectRejected(three, 'TOO_LARGE', 'three files, limit two', { maxFiles: 2 });
  assert.equal(parseMetainfo(torrentBytes(three), { maxFiles: 3 }).files.length, 3);
  const bytes = torrentBytes(singleInfo());
  expectCode(() => parseMetainfo(bytes, { maxBytes: bytes.length - 1 }), 'TOO_LARGE', 'one byte over maxBytes');
  assert.equal(parseMetainfo(bytes, { maxBytes: bytes.length }).name, 'a.txt');
  // The same limit, and the same code, for a bare info dictionary (checked before hashing).
  const info = encode(singleInfo());
  expectCode(() => parseInfoDictionary(info, sha1(info), { maxBytes: info.length - 1 }), 'TOO_LARGE', 'bare info over maxBytes');
  expectCode(() => parseInfoDictionary(info, Buffer.alloc(20), { maxBytes: info.length - 1 }), 'TOO_LARGE', 'bare info over maxBytes, wrong hash');
  assert.equal(parseInfoDictionary(info, sha1(info), { maxBytes: info.length }).name, 'a.txt');
});

// ---------------------------------------------------------------- fuzz

function onlyMetainfoErrors(input: Uint8Array, run: (u: Uint8Array) => unknown = (u) => parseMetainfo(u)): void {
  try {
    run(input);
  } catch (e) {
    assert.ok(e instanceof MetainfoError, `non-MetainfoError for ${Buffer.from(input).toString('hex')}: ${String(e)}`);
  }
}

const validTorrent = encodeTorrent({
  info: {
    name: 'dir',
    pieceLength: 16,
    pieces: fakePieces(3),
    files: [
      { path: ['a', 'b.txt'], length: 20 },
      { path: ['c'], length: 13 },
    ],
    private: true,
  },
  announceList: [['http://a/', 'udp://b:1/'], ['http://c/']],
  urlList: ['http://ws/'],
  comment: 'c',
  creationDate: 1,
});

type Mutation = { kind: 'flip'; at: number; bit: number } | { kind: 'set'; at: number; byte: number } | { kind: 'cut'; at: number } | { kind: 'insert'; at: number; bytes: Uint8Array } | { kind: 'delete'; at: number; n: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: fc.constantFrom(...'ilde0123456789:-/.'.split('').map((c) => c.charCodeAt(0)), 0, 0xff) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.constantFrom(...['e', 'i0e', 'le', 'de', '0:', '1:/', '2:..', 'i-1e'].map((s) => b(s)))) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
);

function mutate(input: Buffer, mutations: readonly Mutation[]): Buffer {
  let buf = Buffer.from(input);
  for (const m of mutations) {
    const at = buf.length === 0 ? 0 : m.at % (buf.length + (m.kind === 'insert' ? 1 : 0));
    if (m.kind === 'flip' && buf.length > 0) buf[at]! ^= 1 << m.bit;
    else if (m.kind === 'set' && buf.length > 0) buf[at] = m.byte;
    else if (m.kind === 'cut') buf = buf.subarray(0, at);
    else if (m.kind === 'insert') buf = Buffer.concat([buf.subarray(0, at), m.bytes, buf.subarray(at)]);
    else if (m.kind === 'delete') buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + m.n)]);
  }
  return buf;
}

test('fuzz: random bytes never throw anything but a MetainfoError', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (u) => onlyMetainfoErrors(u)), { numRuns: 3000 });
  const alphabet = fc.constantFrom(...'ilde0123456789:-'.split('').map((c) => c.charCodeAt(0)));
  fc.assert(fc.property(fc.array(alphabet, { maxLength: 120 }), (a) => onlyMetainfoErrors(Uint8Array.from(a))), { numRuns: 3000 });
  // A dictionary prefix gets random bytes past the bencode layer more often.
  fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), (u) => onlyMetainfoErrors(Buffer.concat([b('d4:infod'), u]))), { numRuns: 1000 });
});

test('fuzz: mutations of a valid torrent (and of its info dictionary) never throw anything but a MetainfoError', () => {
  assert.equal(parseMetainfo(validTorrent).files.length, 2);
  const validInfo = parseMetainfo(validTorrent).infoBytes;
  fc.assert(
    fc.property(fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (mutations) => {
      onlyMetainfoErrors(mutate(validTorrent, mutations));
      onlyMetainfoErrors(mutate(validInfo, mutations), (u) => parseInfoDictionary(u));
    }),
    { numRuns: 5000 },
  );
});

test('fuzz: a valid torrent truncated at every byte fails with a MetainfoError', () => {
  const small = torrentBytes(singleInfo());
  assert.equal(parseMetainfo(small).name, 'a.txt');
  for (let cut = 0; cut < small.length; cut++) {
    expectCode(() => parseMetainfo(small.subarray(0, cut)), 'NOT_BENCODE', `cut at ${cut}`);
  }
  for (let cut = 0; cut < validTorrent.length; cut++) {
    assert.throws(() => parseMetainfo(validTorrent.subarray(0, cut)), MetainfoError);
  }
});
