/**
 * Resume data: which pieces are verified, saved atomically (temp file, fsync,
 * rename, fsync of the folder), so a client killed at any instant finds
 * either the previous or the new record, never a torn one.
 *
 * On load, the recorded pieces are trusted only where the files they live in
 * still have the recorded size. Pieces not recorded are checked by hashing
 * only if a file they touch changed since the save (writes after the last
 * save, e.g. after SIGKILL); otherwise they are known to be missing.
 */
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { decode, encode, isBytes, isDict, isInteger, isList } from '../codec/bencode.js';

export interface ResumeRecord {
  infoHashHex: string;
  /** One bit per piece, BitTorrent bitfield order (high bit of byte 0 = piece 0). */
  have: Uint8Array;
  /** Per file: size and mtime at save time, or undefined when absent. */
  files: ({ size: number; mtimeMs: number } | undefined)[];
}

export function resumePath(dir: string, infoHashHex: string): string {
  return join(dir, `${infoHashHex}.resume`);
}

export async function saveResume(path: string, rec: ResumeRecord): Promise<void> {
  const bytes = encode({
    version: 1,
    'info hash': rec.infoHashHex,
    have: rec.have,
    files: rec.files.map((f) => (f ? [f.size, f.mtimeMs] : [])),
  });
  const tmp = `${path}.${process.pid}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  // Make the rename itself durable.
  const d = await open(dirname(path), 'r');
  try {
    await d.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the rename is still atomic.
  } finally {
    await d.close();
  }
}

/** Loads a resume record; undefined when there is none or it is unreadable or for another torrent. */
export async function loadResume(path: string, infoHashHex: string, pieceCount: number, fileCount: number): Promise<ResumeRecord | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch {
    return undefined;
  }
  try {
    const v = decode(bytes, { maxInputBytes: 64 * 1024 * 1024 });
    if (!isDict(v)) return undefined;
    const ih = v.get('info hash');
    const have = v.get('have');
    const files = v.get('files');
    if (!isBytes(ih) || ih.toString('latin1') !== infoHashHex) return undefined;
    if (!isBytes(have) || have.length !== Math.ceil(pieceCount / 8)) return undefined;
    if (!isList(files) || files.length !== fileCount) return undefined;
    const stats = files.map((f) => {
      if (!isList(f) || f.length !== 2) return undefined;
      const [size, mtime] = f;
      return typeof size === 'number' && typeof mtime === 'number' && isInteger(size) ? { size, mtimeMs: mtime } : undefined;
    });
    return { infoHashHex, have: Uint8Array.from(have), files: stats };
  } catch {
    return undefined;
  }
}

export interface ResumePlan {
  /** Pieces known good without reading them. */
  trusted: boolean[];
  /** Pieces that must be hashed to find out. */
  toCheck: number[];
}

/**
 * Decides, from a resume record and the current file stats, which pieces to
 * trust and which to check. `filesOfPiece(i)` lists the files piece i touches.
 */
export function planResume(
  rec: ResumeRecord | undefined,
  current: ({ size: number; mtimeMs: number } | undefined)[],
  expectedSizes: number[],
  pieceCount: number,
  filesOfPiece: (i: number) => number[],
): ResumePlan {
  const trusted = new Array<boolean>(pieceCount).fill(false);
  const toCheck: number[] = [];
  for (let i = 0; i < pieceCount; i++) {
    const files = filesOfPiece(i);
    // A piece can only be good where every file it touches exists at full size.
    const present = files.every((f) => current[f] !== undefined && current[f]!.size === expectedSizes[f]);
    if (!present) continue;
    if (!rec) {
      toCheck.push(i);
      continue;
    }
    const recorded = (rec.have[i >> 3]! & (0x80 >> (i & 7))) !== 0;
    const sizesAsSaved = files.every((f) => rec.files[f] !== undefined && rec.files[f]!.size === current[f]!.size);
    const unchanged = files.every((f) => rec.files[f] !== undefined && rec.files[f]!.mtimeMs === current[f]!.mtimeMs && rec.files[f]!.size === current[f]!.size);
    if (recorded && sizesAsSaved) trusted[i] = true;
    else if (!unchanged) toCheck.push(i);
  }
  return { trusted, toCheck };
}
