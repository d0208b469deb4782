/**
 * Hashes pieces as their blocks arrive, so a downloaded piece is verified
 * without reading it back from disk. Blocks normally arrive in order within a
 * piece; a block that arrives early is held until the gap before it fills,
 * within a byte budget shared by all pieces. A piece whose early blocks did
 * not fit the budget falls back to being hashed from disk.
 */
import { createHash, type Hash } from 'node:crypto';

interface PieceState {
  hash: Hash;
  next: number; // bytes hashed so far
  pending: Map<number, Uint8Array>; // begin -> block, not yet contiguous
  fallback: boolean;
}

export class IncrementalPieceHasher {
  private readonly pieces = new Map<number, PieceState>();
  private pendingBytes = 0;

  constructor(private readonly maxPendingBytes = 8 * 1024 * 1024) {}

  add(index: number, begin: number, data: Uint8Array): void {
    let st = this.pieces.get(index);
    if (!st) {
      st = { hash: createHash('sha1'), next: 0, pending: new Map(), fallback: false };
      this.pieces.set(index, st);
    }
    if (st.fallback) return;
    if (begin === st.next) {
      st.hash.update(data);
      st.next += data.length;
      for (let more = st.pending.get(st.next); more; more = st.pending.get(st.next)) {
        st.pending.delete(st.next);
        this.pendingBytes -= more.length;
        st.hash.update(more);
        st.next += more.length;
      }
    } else if (begin > st.next && !st.pending.has(begin) && this.pendingBytes + data.length <= this.maxPendingBytes) {
      // Copy: the caller's buffer may be reused once its write completes.
      st.pending.set(begin, Uint8Array.prototype.slice.call(data));
      this.pendingBytes += data.length;
    } else if (begin >= st.next) {
      this.toFallback(st);
    }
    // begin < next: a duplicate of a block already hashed (endgame); nothing to do.
  }

  /**
   * The SHA-1 of the piece if all `size` bytes were hashed in memory, or
   * undefined when it must be hashed from disk. Forgets the piece either way.
   */
  finish(index: number, size: number): Buffer | undefined {
    const st = this.pieces.get(index);
    this.drop(index);
    if (!st || st.fallback || st.next !== size) return undefined;
    return st.hash.digest();
  }

  drop(index: number): void {
    const st = this.pieces.get(index);
    if (!st) return;
    for (const b of st.pending.values()) this.pendingBytes -= b.length;
    this.pieces.delete(index);
  }

  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  private toFallback(st: PieceState): void {
    st.fallback = true;
    for (const b of st.pending.values()) this.pendingBytes -= b.length;
    st.pending.clear();
  }
}
