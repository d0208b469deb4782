/**
 * Torrent data on disk: maps piece/offset ranges onto the torrent's files
 * (pieces may span files), creates files sparse on first write, and keeps a
 * bounded cache of open file handles. Nothing is held in memory beyond the
 * block being read or written.
 */
import { mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { filePathOnDisk, type PieceLayout } from '../files/verify-pieces.js';

export interface FileStorageOptions {
  /** Most file handles kept open at once. Default 64. */
  maxOpenFiles?: number;
  /** Open files read-only and never create them (a seeder that must not touch its data). */
  readOnly?: boolean;
}

export class StorageError extends Error {
  constructor(readonly code: 'OUT_OF_RANGE' | 'MISSING_DATA' | 'CLOSED', message: string) {
    super(message);
    this.name = 'StorageError';
  }
}

interface HandleEntry {
  handle: Promise<FileHandle>;
  users: number;
  evicted: boolean;
}

interface Span {
  file: number;
  fileOffset: number;
  length: number;
}

export class FileStorage {
  readonly layout: PieceLayout;
  readonly dir: string;
  private readonly fileStarts: number[];
  private readonly handles = new Map<number, HandleEntry>(); // insertion order = LRU order
  private readonly maxOpen: number;
  private readonly readOnly: boolean;
  private closed = false;

  constructor(dir: string, layout: PieceLayout, options: FileStorageOptions = {}) {
    this.dir = dir;
    this.layout = layout;
    this.maxOpen = Math.max(1, options.maxOpenFiles ?? 64);
    this.readOnly = options.readOnly ?? false;
    this.fileStarts = [];
    let at = 0;
    for (const f of layout.files) {
      this.fileStarts.push(at);
      at += f.length;
    }
  }

  pieceSize(index: number): number {
    const { pieceLength, length } = this.layout;
    return Math.min(pieceLength, length - index * pieceLength);
  }

  /** The file spans covering `length` bytes at torrent offset `offset`. */
  private spans(offset: number, length: number): Span[] {
    if (offset < 0 || length < 0 || offset + length > this.layout.length) {
      throw new StorageError('OUT_OF_RANGE', `range ${offset}+${length} is outside the torrent (${this.layout.length} bytes)`);
    }
    // Binary search for the last file starting at or before offset.
    let lo = 0;
    let hi = this.fileStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.fileStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    const out: Span[] = [];
    let file = lo;
    let pos = offset;
    let left = length;
    while (left > 0 && file < this.layout.files.length) {
      const start = this.fileStarts[file]!;
      const flen = this.layout.files[file]!.length;
      const inFile = Math.min(left, start + flen - pos);
      if (inFile > 0) {
        out.push({ file, fileOffset: pos - start, length: inFile });
        pos += inFile;
        left -= inFile;
      }
      file++;
    }
    return out;
  }

  /** Runs `fn` with the open handle of `file`; an evicted handle closes only once nobody uses it. */
  private async withFile<T>(file: number, fn: (fh: FileHandle) => Promise<T>): Promise<T> {
    if (this.closed) throw new StorageError('CLOSED', 'storage is closed');
    let entry = this.handles.get(file);
    if (entry) {
      this.handles.delete(file);
      this.handles.set(file, entry);
    } else {
      entry = { handle: this.openHandle(file), users: 0, evicted: false };
      const created = entry;
      created.handle.catch(() => {
        if (this.handles.get(file) === created) this.handles.delete(file);
      });
      this.handles.set(file, created);
      while (this.handles.size > this.maxOpen) {
        const [oldest, victim] = this.handles.entries().next().value as [number, HandleEntry];
        this.handles.delete(oldest);
        victim.evicted = true;
        if (victim.users === 0) void victim.handle.then((fh) => fh.close()).catch(() => undefined);
      }
    }
    const used = entry;
    used.users++;
    try {
      return await fn(await used.handle);
    } finally {
      used.users--;
      if (used.evicted && used.users === 0) void used.handle.then((fh) => fh.close()).catch(() => undefined);
    }
  }

  private async openHandle(file: number): Promise<FileHandle> {
    const path = filePathOnDisk(this.dir, this.layout, file);
    if (this.readOnly) return open(path, 'r');
    try {
      return await open(path, 'r+');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      await mkdir(dirname(path), { recursive: true });
      const fh = await open(path, 'w+');
      // Sparse: set the final size without writing zeros.
      await fh.truncate(this.layout.files[file]!.length);
      return fh;
    }
  }

  /** Reads `length` bytes at (piece, begin). Missing or short files are a StorageError('MISSING_DATA'). */
  async read(index: number, begin: number, length: number, into?: Buffer): Promise<Buffer> {
    const out = into ?? Buffer.allocUnsafe(length);
    let filled = 0;
    for (const span of this.spans(index * this.layout.pieceLength + begin, length)) {
      try {
        await this.withFile(span.file, async (fh) => {
          let got = 0;
          while (got < span.length) {
            const { bytesRead } = await fh.read(out, filled + got, span.length - got, span.fileOffset + got);
            if (bytesRead === 0) throw new StorageError('MISSING_DATA', `${filePathOnDisk(this.dir, this.layout, span.file)} is shorter than the torrent says`);
            got += bytesRead;
          }
        });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new StorageError('MISSING_DATA', `${filePathOnDisk(this.dir, this.layout, span.file)} does not exist`);
        throw e;
      }
      filled += span.length;
    }
    return out;
  }

  async write(index: number, begin: number, data: Uint8Array): Promise<void> {
    let used = 0;
    for (const span of this.spans(index * this.layout.pieceLength + begin, data.length)) {
      await this.withFile(span.file, async (fh) => {
        let put = 0;
        while (put < span.length) {
          const { bytesWritten } = await fh.write(data, used + put, span.length - put, span.fileOffset + put);
          put += bytesWritten;
        }
      });
      used += span.length;
    }
  }

  /**
   * Creates every file that does not exist yet, sparse at its final size
   * (zero-length files included, which no block write would ever create).
   */
  async allocate(): Promise<void> {
    if (this.readOnly) return;
    for (let i = 0; i < this.layout.files.length; i++) {
      await this.withFile(i, async () => undefined);
    }
  }

  /** Size and modification time of each file, undefined where it does not exist (for resume data). */
  async fileStats(): Promise<({ size: number; mtimeMs: number } | undefined)[]> {
    return Promise.all(
      this.layout.files.map(async (_, i) => {
        try {
          const s = await stat(filePathOnDisk(this.dir, this.layout, i));
          return { size: s.size, mtimeMs: Math.floor(s.mtimeMs) };
        } catch {
          return undefined;
        }
      }),
    );
  }

  /** Which files does piece `index` touch. */
  filesOfPiece(index: number): number[] {
    const size = this.pieceSize(index);
    return this.spans(index * this.layout.pieceLength, size).map((s) => s.file);
  }

  /** Flushes written data to disk (before resume data claims it is there). */
  async sync(): Promise<void> {
    for (const entry of this.handles.values()) {
      const fh = await entry.handle.catch(() => undefined);
      if (fh && !this.readOnly) await fh.datasync();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.handles.values()];
    this.handles.clear();
    for (const entry of all) {
      const fh = await entry.handle.catch(() => undefined);
      await fh?.close();
    }
  }
}
