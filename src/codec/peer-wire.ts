/**
 * The BitTorrent peer wire protocol: BEP 3 handshake and messages, BEP 5
 * `port`, BEP 6 fast extension (suggest, have-all, have-none, reject,
 * allowed-fast and the canonical allowed-fast set), BEP 10 `extended`.
 *
 * Three ways in:
 *   - `decodeHandshake` / `decodeHandshakeStart` and `decodeMessage` for
 *     bytes that are already framed;
 *   - `MessageReader`, a streaming decoder for a TCP byte stream: it checks
 *     every declared length against its limits as soon as the 4-byte prefix
 *     (and the id byte) arrive, before any body is buffered, and hands out
 *     zero-copy views where a frame lies inside one pushed chunk;
 *   - `Bitfield`, the piece set of BEP 3 with its spare-bit rule.
 *
 * Validation is complete at the frame header: a message's length and id say
 * whether it is well formed (fixed-size messages must have their exact
 * size), so the body never needs a second look. Every failure is a
 * PeerWireError carrying the byte offset.
 */
import { createHash } from 'node:crypto';
import { CodecError } from './errors.js';
import { parseIp } from './ip.js';

export type PeerWireErrorCode =
  /** Fewer bytes than the handshake or the frame needs. */
  | 'TRUNCATED'
  /** A frame given to `decodeMessage` holds bytes after the declared length. */
  | 'TRAILING_DATA'
  /** The handshake does not start with "\x13BitTorrent protocol". */
  | 'BAD_PROTOCOL'
  /** A declared length above the limit (maxMessageLength, or maxBlockLength for pieces). */
  | 'TOO_LARGE'
  /** A length that does not fit the message id (e.g. `have` not 5 bytes). */
  | 'BAD_LENGTH'
  /** A message id this codec does not know; the frame itself was well delimited. */
  | 'UNKNOWN_ID'
  /** A bitfield of the wrong size or with spare bits set. */
  | 'BAD_BITFIELD'
  /** A piece index outside a Bitfield. */
  | 'BAD_INDEX'
  /** An encoder or helper was given a value it cannot represent. */
  | 'BAD_ARGUMENT';

export class PeerWireError extends CodecError {
  declare readonly code: PeerWireErrorCode;
  /**
   * For errors a MessageReader raised about one frame (UNKNOWN_ID,
   * BAD_LENGTH): true, meaning the reader skips that frame and the caller may
   * go on calling `next()` if it chooses to tolerate it. False for errors that
   * leave the stream unusable (TOO_LARGE, BAD_PROTOCOL, TRUNCATED).
   */
  readonly recoverable: boolean;
  /** The message id involved, where there is one. */
  readonly messageId: number | undefined;
  constructor(code: PeerWireErrorCode, message: string, offset?: number, extra: { recoverable?: boolean; messageId?: number } = {}) {
    super('peer-wire', code, message, offset);
    this.name = 'PeerWireError';
    this.recoverable = extra.recoverable ?? false;
    this.messageId = extra.messageId;
  }
}

// ---------------------------------------------------------------- handshake

export const PROTOCOL = 'BitTorrent protocol';
const PROTOCOL_BYTES = Buffer.from(`\x13${PROTOCOL}`, 'latin1');
/** pstrlen + pstr + reserved + info hash: what a server needs to pick a torrent. */
export const HANDSHAKE_START_LENGTH = 48;
export const HANDSHAKE_LENGTH = 68;

/** Reserved-byte flags: BEP 10 extension protocol, BEP 6 fast extension, BEP 5 DHT. */
export interface ReservedFlags {
  readonly extended?: boolean;
  readonly fast?: boolean;
  readonly dht?: boolean;
}

export interface HandshakeFields {
  readonly infoHash: Uint8Array;
  readonly peerId: Uint8Array;
  /** Flags to set, or the 8 raw reserved bytes. Default: all zero. */
  readonly reserved?: ReservedFlags | Uint8Array;
}

/** The first 48 bytes of a handshake. Buffers are copies, not views of the input. */
export interface HandshakeStart {
  readonly reserved: Buffer;
  readonly infoHash: Buffer;
  /** reserved[5] & 0x10 (BEP 10). */
  readonly extended: boolean;
  /** reserved[7] & 0x04 (BEP 6). */
  readonly fast: boolean;
  /** reserved[7] & 0x01 (BEP 5). */
  readonly dht: boolean;
}

export interface Handshake extends HandshakeStart {
  readonly peerId: Buffer;
}

/** The 8 reserved bytes for a set of flags. */
export function reservedBytes(flags: ReservedFlags): Buffer {
  const r = Buffer.alloc(8);
  if (flags.extended) r[5] = 0x10;
  if (flags.fast) r[7]! |= 0x04;
  if (flags.dht) r[7]! |= 0x01;
  return r;
}

function bytes20(v: Uint8Array, what: string): void {
  if (!(v instanceof Uint8Array) || v.length !== 20) {
    throw new PeerWireError('BAD_ARGUMENT', `${what} must be 20 bytes, not ${v instanceof Uint8Array ? v.length : typeof v}`);
  }
}

export function encodeHandshake(h: HandshakeFields): Buffer {
  bytes20(h.infoHash, 'info hash');
  bytes20(h.peerId, 'peer id');
  const out = Buffer.alloc(HANDSHAKE_LENGTH);
  PROTOCOL_BYTES.copy(out, 0);
  const r = h.reserved;
  if (r instanceof Uint8Array) {
    if (r.length !== 8) throw new PeerWireError('BAD_ARGUMENT', `reserved must be 8 bytes, not ${r.length}`);
    out.set(r, 20);
  } else if (r !== undefined) {
    out.set(reservedBytes(r), 20);
  }
  out.set(h.infoHash, 28);
  out.set(h.peerId, 48);
  return out;
}

function asBuffer(input: Uint8Array): Buffer {
  return Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
}

/**
 * Checks the first min(20, buf.length) bytes against "\x13BitTorrent protocol";
 * `base` is the stream offset of `buf[0]`, for error reports.
 */
function checkProtocol(buf: Buffer, base: number): void {
  if (buf.length === 0) return;
  if (buf[0] !== 19) throw new PeerWireError('BAD_PROTOCOL', `handshake protocol length is ${buf[0]}, not 19`, base);
  const n = Math.min(20, buf.length);
  if (buf.compare(PROTOCOL_BYTES, 0, n, 0, n) !== 0) {
    throw new PeerWireError('BAD_PROTOCOL', `handshake protocol is not "${PROTOCOL}"`, base + 1);
  }
}

function startFields(buf: Buffer): HandshakeStart {
  const reserved = Buffer.from(buf.subarray(20, 28));
  return {
    reserved,
    infoHash: Buffer.from(buf.subarray(28, 48)),
    extended: (reserved[5]! & 0x10) !== 0,
    fast: (reserved[7]! & 0x04) !== 0,
    dht: (reserved[7]! & 0x01) !== 0,
  };
}

/**
 * Decodes the first 48 bytes of a handshake (protocol, reserved, info hash),
 * so a listener serving many torrents can choose one before the peer id
 * arrives. Bytes after the 48th are ignored.
 */
export function decodeHandshakeStart(input: Uint8Array): HandshakeStart {
  const buf = asBuffer(input);
  checkProtocol(buf, 0);
  if (buf.length < HANDSHAKE_START_LENGTH) throw new PeerWireError('TRUNCATED', `handshake start needs ${HANDSHAKE_START_LENGTH} bytes, got ${buf.length}`, buf.length);
  return startFields(buf);
}

/**
 * Decodes a 68-byte handshake. Bytes after the 68th are not looked at (they
 * belong to the message stream), so `buf.subarray(HANDSHAKE_LENGTH)` is what
 * follows. The returned buffers are copies.
 */
export function decodeHandshake(input: Uint8Array): Handshake {
  const buf = asBuffer(input);
  const start = decodeHandshakeStart(buf);
  if (buf.length < HANDSHAKE_LENGTH) throw new PeerWireError('TRUNCATED', `handshake needs ${HANDSHAKE_LENGTH} bytes, got ${buf.length}`, buf.length);
  return { ...start, peerId: Buffer.from(buf.subarray(48, 68)) };
}

// ---------------------------------------------------------------- messages

export const MessageId = {
  choke: 0,
  unchoke: 1,
  interested: 2,
  notInterested: 3,
  have: 4,
  bitfield: 5,
  request: 6,
  piece: 7,
  cancel: 8,
  port: 9,
  suggest: 13,
  haveAll: 14,
  haveNone: 15,
  reject: 16,
  allowedFast: 17,
  extended: 20,
} as const;

export interface BlockRef {
  readonly index: number;
  readonly begin: number;
  readonly length: number;
}

/**
 * One peer wire message. Decoded `bytes`, `block` and `payload` are views
 * of the input (no copy) when the frame lay in one chunk.
 */
export type Message =
  | { readonly type: 'keep-alive' }
  | { readonly type: 'choke' }
  | { readonly type: 'unchoke' }
  | { readonly type: 'interested' }
  | { readonly type: 'not-interested' }
  | { readonly type: 'have'; readonly index: number }
  | { readonly type: 'bitfield'; readonly bytes: Buffer }
  | ({ readonly type: 'request' } & BlockRef)
  | { readonly type: 'piece'; readonly index: number; readonly begin: number; readonly block: Buffer }
  | ({ readonly type: 'cancel' } & BlockRef)
  | { readonly type: 'port'; readonly port: number }
  | { readonly type: 'suggest'; readonly index: number }
  | { readonly type: 'have-all' }
  | { readonly type: 'have-none' }
  | ({ readonly type: 'reject' } & BlockRef)
  | { readonly type: 'allowed-fast'; readonly index: number }
  | { readonly type: 'extended'; readonly id: number; readonly payload: Buffer };

export type MessageType = Message['type'];

/** What encoders accept: the same shapes, with any Uint8Array for byte fields. */
export type MessageInput =
  | Exclude<Message, { type: 'bitfield' } | { type: 'piece' } | { type: 'extended' }>
  | { readonly type: 'bitfield'; readonly bytes: Uint8Array }
  | { readonly type: 'piece'; readonly index: number; readonly begin: number; readonly block: Uint8Array }
  | { readonly type: 'extended'; readonly id: number; readonly payload: Uint8Array };

export interface MessageLimits {
  /**
   * Largest length prefix accepted (id byte plus payload), checked before
   * anything of the body is buffered. Default 1 MiB: a bitfield that size
   * covers 8 million pieces.
   */
  maxMessageLength?: number;
  /** Largest block in a `piece` message. Default 128 KiB (blocks are normally 16 KiB). */
  maxBlockLength?: number;
}

export const DEFAULT_MAX_MESSAGE_LENGTH = 1024 * 1024;
export const DEFAULT_MAX_BLOCK_LENGTH = 128 * 1024;

interface Limits {
  readonly maxMessage: number;
  readonly maxBlock: number;
}

function resolveLimits(l: MessageLimits): Limits {
  return { maxMessage: l.maxMessageLength ?? DEFAULT_MAX_MESSAGE_LENGTH, maxBlock: l.maxBlockLength ?? DEFAULT_MAX_BLOCK_LENGTH };
}

/** Exact length prefix for fixed-size messages by id; 0 = variable size; -1 = unknown id. */
const FIXED_LENGTH = new Int32Array(256).fill(-1);
for (const id of [MessageId.choke, MessageId.unchoke, MessageId.interested, MessageId.notInterested, MessageId.haveAll, MessageId.haveNone]) FIXED_LENGTH[id] = 1;
for (const id of [MessageId.have, MessageId.suggest, MessageId.allowedFast]) FIXED_LENGTH[id] = 5;
for (const id of [MessageId.request, MessageId.cancel, MessageId.reject]) FIXED_LENGTH[id] = 13;
FIXED_LENGTH[MessageId.port] = 3;
FIXED_LENGTH[MessageId.bitfield] = 0;
FIXED_LENGTH[MessageId.piece] = 0;
FIXED_LENGTH[MessageId.extended] = 0;

/** Checks a length prefix alone (before the id is known). */
function lengthError(len: number, lim: Limits, at: number): PeerWireError | undefined {
  if (len > lim.maxMessage) return new PeerWireError('TOO_LARGE', `message length ${len} exceeds the limit of ${lim.maxMessage}`, at);
  return undefined;
}

/** Checks a length prefix against its id: after this, the body always parses. */
function headerError(len: number, id: number, lim: Limits, at: number): PeerWireError | undefined {
  const fixed = FIXED_LENGTH[id]!;
  const extra = { recoverable: true, messageId: id };
  if (fixed < 0) return new PeerWireError('UNKNOWN_ID', `unknown message id ${id} (length ${len})`, at + 4, extra);
  if (fixed > 0) {
    if (len !== fixed) return new PeerWireError('BAD_LENGTH', `message id ${id} must have length ${fixed}, not ${len}`, at, extra);
    return undefined;
  }
  if (id === MessageId.piece) {
    if (len < 9) return new PeerWireError('BAD_LENGTH', `piece message of length ${len} is shorter than its 9-byte header`, at, extra);
    if (len - 9 > lim.maxBlock) {
      return new PeerWireError('TOO_LARGE', `piece block of ${len - 9} bytes exceeds the limit of ${lim.maxBlock}`, at, { messageId: id });
    }
  } else if (id === MessageId.extended && len < 2) {
    return new PeerWireError('BAD_LENGTH', 'extended message without an extended message id', at, extra);
  }
  return undefined;
}

/** Parses a body whose length already passed `headerError`. */
function parseBody(id: number, body: Buffer): Message {
  switch (id) {
    case MessageId.choke:
      return { type: 'choke' };
    case MessageId.unchoke:
      return { type: 'unchoke' };
    case MessageId.interested:
      return { type: 'interested' };
    case MessageId.notInterested:
      return { type: 'not-interested' };
    case MessageId.have:
      return { type: 'have', index: body.readUInt32BE(0) };
    case MessageId.bitfield:
      return { type: 'bitfield', bytes: body };
    case MessageId.request:
      return { type: 'request', index: body.readUInt32BE(0), begin: body.readUInt32BE(4), length: body.readUInt32BE(8) };
    case MessageId.piece:
      return { type: 'piece', index: body.readUInt32BE(0), begin: body.readUInt32BE(4), block: body.subarray(8) };
    case MessageId.cancel:
      return { type: 'cancel', index: body.readUInt32BE(0), begin: body.readUInt32BE(4), length: body.readUInt32BE(8) };
    case MessageId.port:
      return { type: 'port', port: body.readUInt16BE(0) };
    case MessageId.suggest:
      return { type: 'suggest', index: body.readUInt32BE(0) };
    case MessageId.haveAll:
      return { type: 'have-all' };
    case MessageId.haveNone:
      return { type: 'have-none' };
    case MessageId.reject:
      return { type: 'reject', index: body.readUInt32BE(0), begin: body.readUInt32BE(4), length: body.readUInt32BE(8) };
    case MessageId.allowedFast:
      return { type: 'allowed-fast', index: body.readUInt32BE(0) };
    case MessageId.extended:
      return { type: 'extended', id: body[0]!, payload: body.subarray(1) };
    default:
      // Unreachable: headerError refuses every other id.
      throw new PeerWireError('UNKNOWN_ID', `unknown message id ${id}`, undefined, { recoverable: true, messageId: id });
  }
}

/**
 * Decodes exactly one frame, length prefix included. The frame must be
 * complete and hold nothing after the declared length.
 */
export function decodeMessage(frame: Uint8Array, limits: MessageLimits = {}): Message {
  const buf = asBuffer(frame);
  const lim = resolveLimits(limits);
  if (buf.length < 4) throw new PeerWireError('TRUNCATED', `frame of ${buf.length} bytes has no complete length prefix`, buf.length);
  const len = buf.readUInt32BE(0);
  const tooLong = lengthError(len, lim, 0);
  if (tooLong) throw tooLong;
  if (len === 0) {
    if (buf.length > 4) throw new PeerWireError('TRAILING_DATA', `${buf.length - 4} bytes after a keep-alive`, 4);
    return { type: 'keep-alive' };
  }
  if (buf.length < 5) throw new PeerWireError('TRUNCATED', 'frame ends before its message id', buf.length);
  const id = buf[4]!;
  const bad = headerError(len, id, lim, 0);
  if (bad) throw bad;
  if (buf.length < 4 + len) throw new PeerWireError('TRUNCATED', `frame declares ${len} bytes but holds ${buf.length - 4}`, buf.length);
  if (buf.length > 4 + len) throw new PeerWireError('TRAILING_DATA', `${buf.length - 4 - len} bytes after the message`, 4 + len);
  return parseBody(id, buf.subarray(5, 4 + len));
}

function u32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new PeerWireError('BAD_ARGUMENT', `${what} ${v} is not a 32-bit unsigned integer`);
  return v;
}

function frame(len: number, id: number): Buffer {
  if (len > 0xffffffff) throw new PeerWireError('BAD_ARGUMENT', `message of ${len} bytes does not fit a 32-bit length`);
  const out = Buffer.allocUnsafe(4 + len);
  out.writeUInt32BE(len, 0);
  out[4] = id;
  return out;
}

function blockRef(id: number, m: BlockRef): Buffer {
  const out = frame(13, id);
  out.writeUInt32BE(u32(m.index, 'index'), 5);
  out.writeUInt32BE(u32(m.begin, 'begin'), 9);
  out.writeUInt32BE(u32(m.length, 'length'), 13);
  return out;
}

function indexOnly(id: number, index: number): Buffer {
  const out = frame(5, id);
  out.writeUInt32BE(u32(index, 'index'), 5);
  return out;
}

/**
 * The 13 bytes before a piece message's block: write this, then the block
 * itself, and nothing has to be copied into one buffer.
 */
export function encodePieceHeader(index: number, begin: number, blockLength: number): Buffer {
  const len = 9 + u32(blockLength, 'block length');
  if (len > 0xffffffff) throw new PeerWireError('BAD_ARGUMENT', `block of ${blockLength} bytes does not fit a 32-bit length`);
  const out = Buffer.allocUnsafe(13);
  out.writeUInt32BE(len, 0);
  out[4] = MessageId.piece;
  out.writeUInt32BE(u32(index, 'index'), 5);
  out.writeUInt32BE(u32(begin, 'begin'), 9);
  return out;
}

/** Encodes one message with its length prefix. */
export function encodeMessage(msg: MessageInput): Buffer {
  switch (msg.type) {
    case 'keep-alive':
      return Buffer.alloc(4);
    case 'choke':
      return frame(1, MessageId.choke);
    case 'unchoke':
      return frame(1, MessageId.unchoke);
    case 'interested':
      return frame(1, MessageId.interested);
    case 'not-interested':
      return frame(1, MessageId.notInterested);
    case 'have-all':
      return frame(1, MessageId.haveAll);
    case 'have-none':
      return frame(1, MessageId.haveNone);
    case 'have':
      return indexOnly(MessageId.have, msg.index);
    case 'suggest':
      return indexOnly(MessageId.suggest, msg.index);
    case 'allowed-fast':
      return indexOnly(MessageId.allowedFast, msg.index);
    case 'request':
      return blockRef(MessageId.request, msg);
    case 'cancel':
      return blockRef(MessageId.cancel, msg);
    case 'reject':
      return blockRef(MessageId.reject, msg);
    case 'bitfield': {
      const out = frame(1 + msg.bytes.length, MessageId.bitfield);
      out.set(msg.bytes, 5);
      return out;
    }
    case 'piece': {
      const header = encodePieceHeader(msg.index, msg.begin, msg.block.length);
      const out = Buffer.allocUnsafe(13 + msg.block.length);
      header.copy(out, 0);
      out.set(msg.block, 13);
      return out;
    }
    case 'port': {
      if (!Number.isInteger(msg.port) || msg.port < 0 || msg.port > 65535) throw new PeerWireError('BAD_ARGUMENT', `port ${msg.port} is out of range`);
      const out = frame(3, MessageId.port);
      out.writeUInt16BE(msg.port, 5);
      return out;
    }
    case 'extended': {
      if (!Number.isInteger(msg.id) || msg.id < 0 || msg.id > 255) throw new PeerWireError('BAD_ARGUMENT', `extended message id ${msg.id} is not a byte`);
      const out = frame(2 + msg.payload.length, MessageId.extended);
      out[5] = msg.id;
      out.set(msg.payload, 6);
      return out;
    }
    default: {
      const never: never = msg;
      throw new PeerWireError('BAD_ARGUMENT', `unknown message type ${JSON.stringify((never as { type: unknown }).type)}`);
    }
  }
}

// ---------------------------------------------------------------- streaming reader

/** Handshake items a MessageReader yields when told to expect a handshake. */
export type HandshakeItem =
  | ({ readonly type: 'handshake' } & Handshake)
  | ({ readonly type: 'handshake-start' } & HandshakeStart)
  | { readonly type: 'handshake-peer-id'; readonly peerId: Buffer };

export type ReaderItem = Message | HandshakeItem;

export interface MessageReaderOptions extends MessageLimits {
  /**
   * Read a handshake before the messages. `true`: one 'handshake' item once
   * all 68 bytes are in. `'split'`: a 'handshake-start' item at 48 bytes
   * (info hash known, peer id not yet), then a 'handshake-peer-id' item.
   * Default false: the stream starts with messages.
   */
  expectHandshake?: boolean | 'split';
}

const EMPTY = Buffer.alloc(0);
const Stage = { HandshakeStart: 0, HandshakePeerId: 1, Messages: 2 } as const;
type Stage = (typeof Stage)[keyof typeof Stage];

/**
 * Streaming decoder for one connection's inbound bytes.
 *
 *   reader.push(chunk);
 *   for (const item of reader) handle(item);   // or: while ((m = reader.next())) ...
 *
 * `push` keeps a reference to the chunk (no copy), so the caller must not
 * reuse that memory afterwards; decoded byte fields are views of the pushed
 * chunks when a frame lies within one chunk, and fresh buffers otherwise.
 *
 * Every length prefix is checked against the limits as soon as its 4 bytes
 * arrive (and against the id as soon as the 5th does), before any more of
 * the body is kept. Errors:
 *   - recoverable (UNKNOWN_ID, BAD_LENGTH; `err.recoverable === true`): the
 *     frame is skipped, its body discarded as it arrives without buffering;
 *     a caller that tolerates it may keep calling `next()`;
 *   - fatal (TOO_LARGE, BAD_PROTOCOL): the reader stays failed, and every
 *     later `next()` throws the same error; drop the connection.
 */
export class MessageReader implements Iterable<ReaderItem> {
  private readonly lim: Limits;
  private readonly split: boolean;
  private stage: Stage;
  private chunks: (Buffer | undefined)[] = [];
  private first = 0;
  private off = 0;
  private avail = 0;
  private skipLeft = 0;
  private consumed = 0;
  /** Some chunk pushed since the last detach() is borrowed memory. */
  private borrowing = false;
  private failure: PeerWireError | undefined;

  constructor(options: MessageReaderOptions = {}) {
    this.lim = resolveLimits(options);
    this.split = options.expectHandshake === 'split';
    this.stage = options.expectHandshake ? Stage.HandshakeStart : Stage.Messages;
  }

  /** Bytes pushed and not yet consumed. */
  get buffered(): number {
    return this.avail;
  }

  /** Stream offset of the next unread byte: every byte consumed or skipped so far. */
  get offset(): number {
    return this.consumed;
  }

  /** True once the handshake (if one was expected) has been read. */
  get handshakeDone(): boolean {
    return this.stage === Stage.Messages;
  }

  /** The fatal error this reader failed with, if any. */
  get error(): PeerWireError | undefined {
    return this.failure;
  }

  /**
   * Adds received bytes. A `borrowed` chunk is memory the caller will reuse once it has
   * handled the items read now: the reader then copies every item except piece blocks
   * (which the caller copies as it handles them), and the caller must call `detach()`
   * before reusing the memory, which copies what is still unread.
   */
  push(chunk: Uint8Array, borrowed = false): void {
    if (this.failure || chunk.length === 0) return;
    if (borrowed) this.borrowing = true;
    let buf = asBuffer(chunk);
    if (this.skipLeft > 0) {
      const k = Math.min(this.skipLeft, buf.length);
      this.skipLeft -= k;
      this.consumed += k;
      if (k === buf.length) return;
      buf = buf.subarray(k);
    }
    this.chunks.push(buf);
    this.avail += buf.length;
  }

  /** Copies the unread bytes of borrowed chunks into memory of the reader's own. */
  detach(): void {
    if (!this.borrowing) return;
    this.borrowing = false;
    if (this.avail === 0) {
      this.chunks = [];
      this.first = 0;
      this.off = 0;
      return;
    }
    const own = Buffer.allocUnsafe(this.avail);
    let w = 0;
    for (let i = this.first; i < this.chunks.length; i++) {
      const c = this.chunks[i]!;
      const from = i === this.first ? this.off : 0;
      c.copy(own, w, from);
      w += c.length - from;
    }
    this.chunks = [own];
    this.first = 0;
    this.off = 0;
  }

  /** The next complete item, or undefined when more bytes are needed. */
  next(): ReaderItem | undefined {
    if (this.failure) throw this.failure;
    if (this.skipLeft > 0) {
      const k = Math.min(this.skipLeft, this.avail);
      this.discard(k);
      this.skipLeft -= k;
      if (this.skipLeft > 0) return undefined;
    }
    if (this.stage !== Stage.Messages) return this.nextHandshake();
    if (this.avail < 4) return undefined;
    const at = this.consumed;
    const len = this.uint32At(0);
    const tooLong = lengthError(len, this.lim, at);
    if (tooLong) return this.fail(tooLong);
    if (len === 0) {
      this.discard(4);
      return { type: 'keep-alive' };
    }
    if (this.avail < 5) return undefined;
    const id = this.byteAt(4);
    const bad = headerError(len, id, this.lim, at);
    if (bad) {
      if (!bad.recoverable) return this.fail(bad);
      const k = Math.min(4 + len, this.avail);
      this.discard(k);
      this.skipLeft = 4 + len - k;
      throw bad;
    }
    if (this.avail < 4 + len) return undefined;
    this.discard(5);
    const body = this.take(len - 1);
    // Piece blocks stay views (the caller copies them into the piece); the rest is small.
    return parseBody(id, this.borrowing && id !== MessageId.piece ? Buffer.from(body) : body);
  }

  /** Drains the items available now (stops when more bytes are needed). */
  *[Symbol.iterator](): Iterator<ReaderItem> {
    for (;;) {
      const item = this.next();
      if (item === undefined) return;
      yield item;
    }
  }

  private nextHandshake(): HandshakeItem | undefined {
    if (this.stage === Stage.HandshakeStart) {
      if (this.avail >= 1 && this.byteAt(0) !== 19) {
        return this.fail(new PeerWireError('BAD_PROTOCOL', `handshake protocol length is ${this.byteAt(0)}, not 19`, this.consumed));
      }
      const need = this.split ? HANDSHAKE_START_LENGTH : HANDSHAKE_LENGTH;
      if (this.avail < need) return undefined;
      const at = this.consumed;
      const buf = this.take(need);
      try {
        checkProtocol(buf, at);
      } catch (e) {
        return this.fail(e as PeerWireError);
      }
      const start = startFields(buf);
      if (!this.split) {
        this.stage = Stage.Messages;
        return { type: 'handshake', ...start, peerId: Buffer.from(buf.subarray(48, 68)) };
      }
      this.stage = Stage.HandshakePeerId;
      return { type: 'handshake-start', ...start };
    }
    if (this.avail < 20) return undefined;
    this.stage = Stage.Messages;
    return { type: 'handshake-peer-id', peerId: Buffer.from(this.take(20)) };
  }

  private fail(e: PeerWireError): never {
    this.failure = e;
    this.chunks = [];
    this.first = 0;
    this.off = 0;
    this.avail = 0;
    throw e;
  }

  private byteAt(i: number): number {
    let p = this.off + i;
    for (let c = this.first; ; c++) {
      const chunk = this.chunks[c]!;
      if (p < chunk.length) return chunk[p]!;
      p -= chunk.length;
    }
  }

  private uint32At(i: number): number {
    const c = this.chunks[this.first]!;
    if (c.length - this.off >= i + 4) return c.readUInt32BE(this.off + i);
    return ((this.byteAt(i) << 24) | (this.byteAt(i + 1) << 16) | (this.byteAt(i + 2) << 8) | this.byteAt(i + 3)) >>> 0;
  }

  /** Removes n buffered bytes (n <= avail) and returns them: a view when they lie in one chunk. */
  private take(n: number): Buffer {
    if (n === 0) return EMPTY;
    const c = this.chunks[this.first]!;
    if (c.length - this.off >= n) {
      const out = c.subarray(this.off, this.off + n);
      this.discard(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let w = 0;
    while (w < n) {
      const chunk = this.chunks[this.first]!;
      const k = Math.min(chunk.length - this.off, n - w);
      chunk.copy(out, w, this.off, this.off + k);
      w += k;
      this.discard(k);
    }
    return out;
  }

  /** Drops n buffered bytes (n <= avail). */
  private discard(n: number): void {
    this.avail -= n;
    this.consumed += n;
    while (n > 0) {
      const chunk = this.chunks[this.first]!;
      const left = chunk.length - this.off;
      if (n < left) {
        this.off += n;
        return;
      }
      n -= left;
      this.chunks[this.first] = undefined;
      this.first++;
      this.off = 0;
    }
    if (this.first === this.chunks.length) {
      this.chunks = [];
      this.first = 0;
    } else if (this.first >= 64 && this.first * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.first);
      this.first = 0;
    }
  }
}

// ---------------------------------------------------------------- bitfield

const POPCOUNT = new Uint8Array(256);
for (let i = 1; i < 256; i++) POPCOUNT[i] = (i & 1) + POPCOUNT[i >> 1]!;

/**
 * The set of pieces a peer has (BEP 3): bit 7 of byte 0 is piece 0. The
 * count of set bits is kept up to date on every change.
 */
export class Bitfield implements Iterable<number> {
  /** Number of pieces. */
  readonly length: number;
  private readonly bits: Buffer;
  private setCount = 0;

  /** Bytes a bitfield of `pieceCount` pieces takes on the wire: ceil(n / 8). */
  static byteLength(pieceCount: number): number {
    return Math.ceil(pieceCount / 8);
  }

  /** A bitfield with every piece set. */
  static full(pieceCount: number): Bitfield {
    const b = new Bitfield(pieceCount);
    b.bits.fill(0xff);
    const spare = pieceCount & 7;
    if (spare !== 0) b.bits[b.bits.length - 1] = (0xff00 >>> spare) & 0xff;
    b.setCount = pieceCount;
    return b;
  }

  /**
   * An empty bitfield, or one read from `bytes` (copied). Bytes of the wrong
   * length, or with any of the spare bits after the last piece set, are
   * refused with BAD_BITFIELD: BEP 3 says to drop such a peer.
   */
  constructor(pieceCount: number, bytes?: Uint8Array) {
    if (!Number.isSafeInteger(pieceCount) || pieceCount < 0 || pieceCount > 0x100000000) {
      throw new PeerWireError('BAD_ARGUMENT', `piece count ${pieceCount} is not a valid number of pieces`);
    }
    this.length = pieceCount;
    const size = Bitfield.byteLength(pieceCount);
    if (bytes === undefined) {
      this.bits = Buffer.alloc(size);
      return;
    }
    if (bytes.length !== size) {
      throw new PeerWireError('BAD_BITFIELD', `bitfield of ${bytes.length} bytes for ${pieceCount} pieces, expected ${size}`, Math.min(bytes.length, size));
    }
    const spare = pieceCount & 7;
    if (spare !== 0 && (bytes[size - 1]! & (0xff >>> spare)) !== 0) {
      throw new PeerWireError('BAD_BITFIELD', `bitfield has spare bits set after piece ${pieceCount - 1}`, size - 1);
    }
    this.bits = Buffer.from(bytes);
    let n = 0;
    for (let i = 0; i < size; i++) n += POPCOUNT[this.bits[i]!]!;
    this.setCount = n;
  }

  /** Whether piece i is set; false for any index outside 0..length-1. */
  get(i: number): boolean {
    if (!(i >= 0 && i < this.length) || !Number.isInteger(i)) return false;
    return (this.bits[Math.floor(i / 8)]! & (0x80 >>> i % 8)) !== 0;
  }

  /** Sets piece i; returns true when it was not set before. */
  set(i: number): boolean {
    this.check(i);
    const byte = Math.floor(i / 8);
    const mask = 0x80 >>> i % 8;
    const b = this.bits[byte]!;
    if ((b & mask) !== 0) return false;
    this.bits[byte] = b | mask;
    this.setCount++;
    return true;
  }

  /** Clears piece i; returns true when it was set before. */
  clear(i: number): boolean {
    this.check(i);
    const byte = Math.floor(i / 8);
    const mask = 0x80 >>> i % 8;
    const b = this.bits[byte]!;
    if ((b & mask) === 0) return false;
    this.bits[byte] = b & ~mask;
    this.setCount--;
    return true;
  }

  /** Number of pieces set. */
  get count(): number {
    return this.setCount;
  }

  get isComplete(): boolean {
    return this.setCount === this.length;
  }

  get isEmpty(): boolean {
    return this.setCount === 0;
  }

  /** A copy of the wire bytes, ready for a `bitfield` message. */
  toBuffer(): Buffer {
    return Buffer.from(this.bits);
  }

  /** Set piece indexes in ascending order. */
  *[Symbol.iterator](): Iterator<number> {
    const bits = this.bits;
    for (let byte = 0; byte < bits.length; byte++) {
      let b = bits[byte]!;
      while (b !== 0) {
        const bit = Math.clz32(b) - 24;
        yield byte * 8 + bit;
        b &= ~(0x80 >>> bit);
      }
    }
  }

  private check(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) {
      throw new PeerWireError('BAD_INDEX', `piece index ${i} is outside 0..${this.length - 1}`);
    }
  }
}

// ---------------------------------------------------------------- allowed fast

/**
 * The canonical allowed-fast set of BEP 6 for a peer at `ip`: `k` distinct
 * piece indexes (fewer only when the torrent has fewer than k pieces). The
 * address is an IPv4 address as text or 4 bytes (an IPv4-mapped IPv6 address
 * is taken as its IPv4 part); BEP 6 has no provision for IPv6, so any other
 * address is refused with BAD_ARGUMENT.
 */
export function allowedFastSet(k: number, infoHash: Uint8Array, ip: Uint8Array | string, pieceCount: number): number[] {
  if (!Number.isSafeInteger(k) || k < 0) throw new PeerWireError('BAD_ARGUMENT', `set size ${k} is not a non-negative integer`);
  if (!Number.isSafeInteger(pieceCount) || pieceCount < 0 || pieceCount > 0x100000000) {
    throw new PeerWireError('BAD_ARGUMENT', `piece count ${pieceCount} is not a valid number of pieces`);
  }
  bytes20(infoHash, 'info hash');
  const addr = typeof ip === 'string' ? parseIp(ip) : ip;
  let v4: Uint8Array | undefined;
  if (addr?.length === 4) v4 = addr;
  else if (addr?.length === 16 && addr.subarray(0, 10).every((b) => b === 0) && addr[10] === 0xff && addr[11] === 0xff) v4 = addr.subarray(12);
  if (!v4) throw new PeerWireError('BAD_ARGUMENT', `allowed-fast sets are defined for IPv4 addresses only, not ${typeof ip === 'string' ? ip : `${ip.length} bytes`}`);

  const want = Math.min(k, pieceCount);
  const out: number[] = [];
  if (want === 0) return out;
  let x: Buffer = Buffer.alloc(24);
  x[0] = v4[0]!;
  x[1] = v4[1]!;
  x[2] = v4[2]!; // x[3] stays 0: ip & 0xffffff00
  x.set(infoHash, 4);
  const seen = new Set<number>();
  while (out.length < want) {
    x = createHash('sha1').update(x).digest();
    for (let j = 0; j < 20 && out.length < want; j += 4) {
      const index = x.readUInt32BE(j) % pieceCount;
      if (!seen.has(index)) {
        seen.add(index);
        out.push(index);
      }
    }
  }
  return out;
}
