/**
 * Typed errors for every codec. A decoder never lets a bare TypeError or
 * RangeError escape: malformed input always surfaces as a CodecError whose
 * `code` says what was wrong and, where it applies, `offset` says where.
 */
export class CodecError extends Error {
  /** Which codec raised it: 'bencode', 'metainfo', 'magnet', ... */
  readonly codec: string;
  /** A stable machine-readable reason, e.g. 'UNEXPECTED_END'. */
  readonly code: string;
  /** Byte offset in the input where the problem was found, when it has one. */
  readonly offset: number | undefined;

  constructor(codec: string, code: string, message: string, offset?: number) {
    super(offset === undefined ? `${codec}: ${message}` : `${codec}: ${message} (at byte ${offset})`);
    this.name = 'CodecError';
    this.codec = codec;
    this.code = code;
    this.offset = offset;
  }
}

export function isCodecError(e: unknown): e is CodecError {
  return e instanceof CodecError;
}
