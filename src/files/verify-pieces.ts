/**
 * Checks data on disk against a torrent's piece hashes, streaming: memory
 * stays at one read buffer however large the torrent is. Pieces may span
 * files; a missing or short file makes the pieces it covers fail, not the
 * whole check.
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

/** The part of a parsed metainfo that says where each piece lives. */
export interface PieceLayout {
  readonly name: string;
  readonly pieceLength: number;
  readonly length: number;
  readonly pieces: Buffer;
  readonly isMultiFile: boolean;
  readonly files: readonly { readonly path: readonly string[]; readonly length: number }[];
}

export interface VerifyResult {
  /** One entry per piece: true when its data is present and its SHA-1 matches. */
  readonly valid: boolean[];
  readonly validCount: number;
  readonly pieceCount: number;
  readonly bytesRead: number;
}

/** Where a file of the torrent lives under `dir`. */
export function filePathOnDisk(dir: string, layout: PieceLayout, index: number): string {
  const file = layout.files[index];
  if (!file) throw new RangeError(`no file ${index}`);
  return layout.isMultiFile ? join(dir, layout.name, ...file.path) : join(dir, layout.name);
}

export async function verifyPieces(
  dir: string,
  layout: PieceLayout,
  onProgress?: (piecesDone: number, pieceCount: number) => void,
): Promise<VerifyResult> {
  const pieceCount = layout.pieces.length / 20;
  const valid: boolean[] = new Array<boolean>(pieceCount).fill(false);
  const buf = Buffer.allocUnsafe(layout.pieceLength);
  const handles = new Map<number, FileHandle | null>();
  let bytesRead = 0;
  let validCount = 0;

  const handle = async (i: number): Promise<FileHandle | null> => {
    if (!handles.has(i)) {
      try {
        handles.set(i, await open(filePathOnDisk(dir, layout, i), 'r'));
      } catch {
        handles.set(i, null);
      }
    }
    return handles.get(i) ?? null;
  };

  try {
    let fileIndex = 0;
    let fileStart = 0; // torrent offset where files[fileIndex] starts
    for (let piece = 0; piece < pieceCount; piece++) {
      const pieceStart = piece * layout.pieceLength;
      const pieceLen = Math.min(layout.pieceLength, layout.length - pieceStart);
      let filled = 0;
      let complete = true;
      while (filled < pieceLen) {
        const file = layout.files[fileIndex];
        if (!file) {
          complete = false;
          break;
        }
        const at = pieceStart + filled;
        if (at >= fileStart + file.length) {
          fileStart += file.length;
          fileIndex++;
          continue;
        }
        const want = Math.min(pieceLen - filled, fileStart + file.length - at);
        const fh = await handle(fileIndex);
        let got = 0;
        if (fh) {
          while (got < want) {
            const { bytesRead: n } = await fh.read(buf, filled + got, want - got, at - fileStart + got);
            if (n === 0) break;
            got += n;
          }
        }
        bytesRead += got;
        if (got < want) complete = false;
        filled += want;
      }
      if (complete) {
        const digest = createHash('sha1').update(buf.subarray(0, pieceLen)).digest();
        if (digest.equals(layout.pieces.subarray(piece * 20, piece * 20 + 20))) {
          valid[piece] = true;
          validCount++;
        }
      }
      onProgress?.(piece + 1, pieceCount);
    }
  } finally {
    for (const fh of handles.values()) await fh?.close();
  }
  return { valid, validCount, pieceCount, bytesRead };
}
