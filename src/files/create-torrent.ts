/**
 * Creating a .torrent from a file or a folder.
 *
 * Files are read once, in torrent order, into a small pool of reusable
 * chunk buffers (a few MiB each) and hashed piece by piece in worker
 * threads, so memory stays constant whatever the size and the hashing uses
 * every core while the next chunk is being read.
 *
 * The file list follows transmission-create's rules, so both tools give the
 * same info hash for the same folder: dot-files and empty files are left
 * out, symbolic links are followed, and files are ordered by their relative
 * path compared byte-wise with ASCII letters folded to lower case.
 */
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { defaultPieceLength, encodeTorrent, parseMetainfo, type Metainfo } from '../codec/metainfo.js';
import { hashPieces, type HashJob, type HashResult } from './hash-worker.js';

export interface SourceFile {
  /** Where it is on disk. */
  readonly absPath: string;
  /** Path components inside the torrent (multi-file), or [name]. */
  readonly path: readonly string[];
  readonly length: number;
}

export interface SourceLayout {
  readonly name: string;
  readonly isMultiFile: boolean;
  readonly files: readonly SourceFile[];
  readonly length: number;
}

export class CreateTorrentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CreateTorrentError';
  }
}

const MAX_DEPTH = 64;
const MAX_FILES = 200_000;

/**
 * ASCII case-insensitive comparison of the UTF-8 bytes, as transmission-create
 * sorts (evutil_ascii_strcasecmp over C `char`, which is signed on x86, so
 * bytes of non-ASCII characters sort before every ASCII byte).
 */
function compareFolded(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a[i]!;
    let y = b[i]!;
    if (x >= 0x41 && x <= 0x5a) x += 32;
    else if (x >= 0x80) x -= 256;
    if (y >= 0x41 && y <= 0x5a) y += 32;
    else if (y >= 0x80) y -= 256;
    if (x !== y) return x - y;
  }
  if (a.length !== b.length) return a.length - b.length;
  return Buffer.compare(a, b);
}

/** Lists what a torrent of `path` holds, in torrent order. */
export async function listSource(path: string, name?: string): Promise<SourceLayout> {
  const root = resolve(path);
  let st;
  try {
    st = await stat(root);
  } catch (e) {
    throw new CreateTorrentError(`${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or folder' : (e as Error).message}`);
  }
  const torrentName = name ?? basename(root);
  if (st.isFile()) {
    if (st.size === 0) throw new CreateTorrentError(`${path}: the file is empty`);
    return { name: torrentName, isMultiFile: false, files: [{ absPath: root, path: [torrentName], length: st.size }], length: st.size };
  }
  if (!st.isDirectory()) throw new CreateTorrentError(`${path}: not a regular file or folder`);
  const found: { file: SourceFile; key: Buffer }[] = [];
  const walk = async (dir: string, rel: string[]): Promise<void> => {
    if (rel.length > MAX_DEPTH) throw new CreateTorrentError(`${dir}: folders nested deeper than ${MAX_DEPTH} (a symlink loop?)`);
    const entries = await readdir(dir);
    for (const entry of entries) {
      if (entry.startsWith('.')) continue;
      const abs = join(dir, entry);
      let est;
      try {
        est = await stat(abs); // follows symbolic links
      } catch {
        continue; // a dangling link: nothing to share
      }
      if (est.isDirectory()) await walk(abs, [...rel, entry]);
      else if (est.isFile() && est.size > 0) {
        if (found.length >= MAX_FILES) throw new CreateTorrentError(`${path}: more than ${MAX_FILES} files`);
        const p = [...rel, entry];
        found.push({ file: { absPath: abs, path: p, length: est.size }, key: Buffer.from(p.join('/')) });
      }
    }
  };
  await walk(root, []);
  if (found.length === 0) throw new CreateTorrentError(`${path}: the folder holds no non-empty files`);
  found.sort((a, b) => compareFolded(a.key, b.key));
  const files = found.map((f) => f.file);
  return { name: torrentName, isMultiFile: true, files, length: files.reduce((s, f) => s + f.length, 0) };
}

export interface HashOptions {
  /** Worker threads to hash with; 0 hashes on the calling thread. Default: up to 2, by core count. */
  workers?: number;
  /** Target chunk size in bytes (rounded to whole pieces). Default 2 MiB. */
  chunkBytes?: number;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

/** Reads the files in order, as one stream of bytes. */
class SequentialReader {
  private fileIndex = 0;
  private fileOffset = 0;
  private handle: FileHandle | undefined;

  constructor(private readonly files: readonly SourceFile[]) {}

  /** Fills `buf` as far as the data goes; returns how many bytes it holds. */
  async fill(buf: Uint8Array): Promise<number> {
    let filled = 0;
    while (filled < buf.length) {
      const file = this.files[this.fileIndex];
      if (!file) break;
      if (this.fileOffset === file.length) {
        await this.handle?.close();
        this.handle = undefined;
        this.fileIndex++;
        this.fileOffset = 0;
        continue;
      }
      this.handle ??= await open(file.absPath, 'r');
      const want = Math.min(buf.length - filled, file.length - this.fileOffset);
      const { bytesRead } = await this.handle.read(buf, filled, want, this.fileOffset);
      if (bytesRead === 0) throw new CreateTorrentError(`${file.absPath} shrank while it was being hashed`);
      filled += bytesRead;
      this.fileOffset += bytesRead;
    }
    return filled;
  }

  async close(): Promise<void> {
    await this.handle?.close();
    this.handle = undefined;
  }
}

/** SHA-1 of every piece of the files, concatenated (the `pieces` field). */
export async function hashSource(files: readonly SourceFile[], pieceLength: number, opts: HashOptions = {}): Promise<Buffer> {
  const total = files.reduce((s, f) => s + f.length, 0);
  const pieceCount = Math.ceil(total / pieceLength);
  const pieces = Buffer.alloc(pieceCount * 20);
  const piecesPerChunk = Math.max(1, Math.floor((opts.chunkBytes ?? 2 * 1024 * 1024) / pieceLength));
  const chunkSize = piecesPerChunk * pieceLength;
  const chunkCount = Math.ceil(total / chunkSize);
  const workerCount = Math.min(opts.workers ?? Math.min(2, availableParallelism()), chunkCount > 2 ? 8 : 0);
  const reader = new SequentialReader(files);
  let done = 0;

  try {
    if (workerCount === 0) {
      const buf = Buffer.allocUnsafe(Math.min(chunkSize, total));
      for (let c = 0; c < chunkCount; c++) {
        const n = await reader.fill(buf);
        hashPieces(buf.subarray(0, n), pieceLength, pieces.subarray(c * piecesPerChunk * 20));
        done += n;
        opts.onProgress?.(done, total);
      }
      return pieces;
    }

    // Pool of chunk buffers: enough to keep every worker busy while the next chunk is read,
    // but never more than 64 MiB however large the pieces are.
    const poolSize = Math.max(2, Math.min(workerCount * 2 + 1, Math.floor((64 * 1024 * 1024) / chunkSize)));
    const free: ArrayBuffer[] = Array.from({ length: poolSize }, () => new ArrayBuffer(chunkSize));
    const workers = Array.from({ length: workerCount }, () => new Worker(new URL('./hash-worker.js', import.meta.url)));
    const pending = new Array<number>(workerCount).fill(0);
    let failure: Error | undefined;
    let wakeReader: (() => void) | undefined;
    let wakeDone: (() => void) | undefined;
    let outstanding = 0;
    const wake = (): void => {
      wakeReader?.();
      wakeDone?.();
    };
    for (const [w, worker] of workers.entries()) {
      worker.on('message', (r: HashResult) => {
        pieces.set(new Uint8Array(r.digests), r.id * piecesPerChunk * 20);
        free.push(r.buffer);
        pending[w]!--;
        outstanding--;
        wake();
      });
      worker.on('error', (e) => {
        failure ??= e;
        wake();
      });
    }
    try {
      for (let c = 0; c < chunkCount; c++) {
        while (free.length === 0 && !failure) await new Promise<void>((r) => (wakeReader = r));
        if (failure) throw failure;
        const buffer = free.pop()!;
        const n = await reader.fill(new Uint8Array(buffer));
        let w = 0;
        for (let i = 1; i < workerCount; i++) if (pending[i]! < pending[w]!) w = i;
        pending[w]!++;
        outstanding++;
        const job: HashJob = { id: c, buffer, length: n, pieceLength };
        workers[w]!.postMessage(job, [buffer]);
        done += n;
        opts.onProgress?.(done, total);
      }
      while (outstanding > 0 && !failure) await new Promise<void>((r) => (wakeDone = r));
      if (failure) throw failure;
    } finally {
      await Promise.all(workers.map((w) => w.terminate()));
    }
    return pieces;
  } finally {
    await reader.close();
  }
}

export interface CreateTorrentOptions {
  /** Bytes per piece; default from the total size (see defaultPieceLength). */
  pieceLength?: number | undefined;
  /** Tracker tiers (BEP 12): [[primary], [backup]] or [[a, b]] for one tier. */
  announce?: readonly (readonly string[])[];
  private?: boolean;
  /** Name stored in the torrent (default: the file or folder name). */
  name?: string | undefined;
  comment?: string | undefined;
  /** Web seeds (BEP 19). */
  urlList?: readonly string[] | undefined;
  createdBy?: string | undefined;
  /** Seconds since the epoch; leave undefined for a reproducible file. */
  creationDate?: number | undefined;
  workers?: number;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface CreatedTorrent {
  readonly torrent: Buffer;
  readonly metainfo: Metainfo;
}

const MIN_PIECE = 16 * 1024;
const MAX_PIECE = 64 * 1024 * 1024;

export async function createTorrent(path: string, opts: CreateTorrentOptions = {}): Promise<CreatedTorrent> {
  const pl = opts.pieceLength;
  if (pl !== undefined && (!Number.isSafeInteger(pl) || pl < MIN_PIECE || pl > MAX_PIECE || (pl & (pl - 1)) !== 0)) {
    throw new CreateTorrentError(`piece length ${pl} must be a power of two from 16 KiB to 64 MiB`);
  }
  const source = await listSource(path, opts.name);
  const pieceLength = pl ?? defaultPieceLength(source.length);
  const pieces = await hashSource(source.files, pieceLength, { workers: opts.workers, onProgress: opts.onProgress });
  const torrent = encodeTorrent({
    info: {
      name: source.name,
      pieceLength,
      pieces,
      private: opts.private === true,
      ...(source.isMultiFile ? { files: source.files } : { length: source.length }),
    },
    announceList: opts.announce,
    urlList: opts.urlList,
    comment: opts.comment,
    createdBy: opts.createdBy,
    creationDate: opts.creationDate,
  });
  return { torrent, metainfo: parseMetainfo(torrent) };
}
