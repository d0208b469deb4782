/**
 * Fetching the info dictionary from peers (BEP 9), for a download started
 * from a magnet link. Pieces of 16 KiB are requested from peers that
 * advertise ut_metadata, one peer per piece at a time; when all are in, the
 * SHA-1 of the whole must equal the info hash. Pure: time is passed in.
 */
import { createHash } from 'node:crypto';
import { METADATA_MAX_SIZE, METADATA_PIECE_SIZE, metadataPieceCount, metadataPieceLength } from '../../codec/extensions.js';

export type MetadataResult<P> =
  | { readonly kind: 'more' }
  | { readonly kind: 'ignored' }
  | { readonly kind: 'done'; readonly bytes: Buffer }
  | { readonly kind: 'bad-hash'; readonly sources: ReadonlySet<P> };

export class MetadataFetcher<P> {
  readonly size: number;
  readonly pieceCount: number;
  private readonly buf: Buffer;
  private readonly have: boolean[];
  private readonly asked = new Map<number, { peer: P; at: number }>();
  private readonly sources = new Set<P>();
  private received = 0;

  constructor(
    private readonly infoHash: Uint8Array,
    size: number,
  ) {
    if (!Number.isSafeInteger(size) || size <= 0 || size > METADATA_MAX_SIZE) throw new RangeError(`metadata size ${size} out of range`);
    this.size = size;
    this.pieceCount = metadataPieceCount(size);
    this.buf = Buffer.alloc(size);
    this.have = new Array<boolean>(this.pieceCount).fill(false);
  }

  get progress(): number {
    return this.received / this.pieceCount;
  }

  /** A piece to ask `peer` for now, if any is neither received nor asked of someone else. */
  next(peer: P, now: number, maxPerPeer = 4): number | undefined {
    let mine = 0;
    for (const a of this.asked.values()) if (a.peer === peer) mine++;
    if (mine >= maxPerPeer) return undefined;
    for (let i = 0; i < this.pieceCount; i++) {
      if (!this.have[i] && !this.asked.has(i)) {
        this.asked.set(i, { peer, at: now });
        return i;
      }
    }
    return undefined;
  }

  receive(peer: P, piece: number, data: Uint8Array): MetadataResult<P> {
    if (!Number.isInteger(piece) || piece < 0 || piece >= this.pieceCount || this.have[piece]) return { kind: 'ignored' };
    if (data.length !== metadataPieceLength(this.size, piece)) return { kind: 'ignored' };
    const a = this.asked.get(piece);
    if (a?.peer === peer) this.asked.delete(piece);
    this.buf.set(data, piece * METADATA_PIECE_SIZE);
    this.have[piece] = true;
    this.received++;
    this.sources.add(peer);
    if (this.received < this.pieceCount) return { kind: 'more' };
    if (createHash('sha1').update(this.buf).digest().equals(this.infoHash)) return { kind: 'done', bytes: this.buf };
    const sources = new Set(this.sources);
    this.reset();
    return { kind: 'bad-hash', sources };
  }

  /** The peer refused or left: its pieces go back to the pool. */
  release(peer: P, piece?: number): void {
    for (const [i, a] of this.asked) if (a.peer === peer && (piece === undefined || piece === i)) this.asked.delete(i);
  }

  /** Requests older than `timeoutMs` go back to the pool; returns the peers that were too slow. */
  expire(now: number, timeoutMs: number): P[] {
    const slow: P[] = [];
    for (const [i, a] of this.asked) {
      if (now - a.at >= timeoutMs) {
        this.asked.delete(i);
        slow.push(a.peer);
      }
    }
    return slow;
  }

  private reset(): void {
    this.have.fill(false);
    this.asked.clear();
    this.sources.clear();
    this.received = 0;
  }
}
