/**
 * The uploader's cache of whole pieces, with memory that is used again.
 *
 * A seeder answers 16 KiB requests from whole pieces read into memory (one
 * disk read serves the piece's 64 blocks, to every peer asking for it). A
 * fresh buffer for every piece read made V8 run a full collection about every
 * 20 MB of reads (it counts the buffers as external memory), about a second of
 * a seeder's CPU per GiB served. Here a piece's buffer goes back to a bounded
 * free list once nothing needs it any more: it has left the cache and every
 * block cut from it has been handed to the kernel.
 *
 * References are counted per buffer. `block` takes one for its caller, who
 * gives it back with `release` once the block has been passed on; every
 * stream write of a block takes one with `retain` and gives it back when the
 * write is done. A block that is never written (the request was cancelled)
 * holds nothing. A reference that is never given back only keeps that buffer
 * out of the pool (the garbage collector frees it as before), and the table
 * of buffers in use is bounded by how many pooled buffers exist.
 */
export interface UploadCacheOptions {
  /** Full piece length; only pieces of this size use pooled buffers (the short last one does not). */
  readonly pieceLength: number;
  /** Most bytes of pieces kept cached. */
  readonly maxBytes: number;
  /** Reads `size` bytes of piece `index` into `into` (which is at least that long). */
  readonly read: (index: number, size: number, into: Buffer) => Promise<Buffer>;
}

interface PendingRead {
  /** Callers waiting for the read, each owed a reference. */
  waiters: number;
  done: Promise<Entry>;
}

interface Entry {
  readonly buf: Buffer;
  refs: number;
  cached: boolean;
}

export class UploadCache {
  private readonly entries = new Map<number, Entry>();
  private readonly reading = new Map<number, PendingRead>();
  /** Pooled buffers in use (cached or referenced), by their memory. */
  private readonly inUse = new Map<ArrayBufferLike, Entry>();
  private readonly free: Buffer[] = [];
  private bytes = 0;
  private readonly maxPooled: number;

  constructor(private readonly options: UploadCacheOptions) {
    // The cache's own pieces, plus a few whose blocks are still being written out.
    this.maxPooled = Math.max(1, Math.floor(options.maxBytes / options.pieceLength)) + 8;
  }

  /** Bytes of pieces held in the cache. */
  get cachedBytes(): number {
    return this.bytes;
  }

  /** Buffers waiting in the free list (for tests). */
  get freeBuffers(): number {
    return this.free.length;
  }

  /**
   * Block (index, begin, length) of a piece of `size` bytes, holding one reference to its
   * memory for the caller; give it back with `release(block)`.
   */
  async block(index: number, size: number, begin: number, length: number): Promise<Buffer> {
    let entry = this.entries.get(index);
    if (entry) {
      // Refresh its place in the LRU order.
      this.entries.delete(index);
      this.entries.set(index, entry);
      entry.refs++;
    } else {
      // The reference is taken when the read completes, before anything else can run: by the
      // time this continues, other reads may have pushed the piece out of the cache already.
      let pending = this.reading.get(index);
      if (!pending) {
        const waiting = { waiters: 0 } as PendingRead;
        waiting.done = this.load(index, size, waiting);
        pending = waiting;
        this.reading.set(index, pending);
      }
      pending.waiters++;
      entry = await pending.done;
    }
    return entry.buf.subarray(begin, begin + length);
  }

  /** Takes a reference to `data`'s memory if it is a pooled piece; returns the function that gives it back. */
  retain(data: Uint8Array): (() => void) | undefined {
    const entry = this.inUse.get(data.buffer);
    if (!entry) return undefined;
    entry.refs++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      entry.refs--;
      this.maybeFree(entry);
    };
  }

  /** Gives back the reference `block` took. */
  release(data: Uint8Array): void {
    const entry = this.inUse.get(data.buffer);
    if (!entry) return;
    entry.refs--;
    this.maybeFree(entry);
  }

  /** Drops every cached piece; buffers still referenced are freed when their last reference goes. */
  clear(): void {
    for (const entry of this.entries.values()) {
      entry.cached = false;
      this.maybeFree(entry);
    }
    this.entries.clear();
    this.bytes = 0;
    this.free.length = 0;
  }

  private async load(index: number, size: number, pending: PendingRead): Promise<Entry> {
    const full = size === this.options.pieceLength;
    // Its own memory (never a slice of Node's shared pool), so the buffer is its ArrayBuffer.
    const buf = (full ? this.free.pop() : undefined) ?? Buffer.allocUnsafeSlow(size);
    const pooled = full && this.inUse.size < this.maxPooled;
    const entry: Entry = { buf, refs: 0, cached: true };
    if (pooled) this.inUse.set(buf.buffer, entry);
    try {
      await this.options.read(index, size, buf);
    } catch (e) {
      this.reading.delete(index);
      entry.cached = false;
      this.maybeFree(entry);
      throw e;
    }
    this.reading.delete(index);
    entry.refs += pending.waiters;
    this.entries.set(index, entry);
    this.bytes += size;
    for (const [i, old] of this.entries) {
      if (this.bytes <= this.options.maxBytes) break;
      this.entries.delete(i);
      this.bytes -= old.buf.length;
      old.cached = false;
      this.maybeFree(old);
    }
    return entry;
  }

  private maybeFree(entry: Entry): void {
    if (entry.cached || entry.refs > 0) return;
    if (this.inUse.get(entry.buf.buffer) !== entry) return;
    this.inUse.delete(entry.buf.buffer);
    if (this.free.length < this.maxPooled) this.free.push(entry.buf);
  }
}
