/**
 * Worker thread for torrent creation: SHA-1 of whole pieces in a chunk the
 * main thread read from disk. The chunk's memory is handed back so the
 * reader can reuse it (no allocation per chunk).
 */
import { parentPort } from 'node:worker_threads';
import { createHash } from 'node:crypto';

export interface HashJob {
  readonly id: number;
  readonly buffer: ArrayBuffer;
  readonly length: number;
  readonly pieceLength: number;
}

export interface HashResult {
  readonly id: number;
  readonly buffer: ArrayBuffer;
  readonly digests: ArrayBuffer;
}

export function hashPieces(data: Uint8Array, pieceLength: number, out: Uint8Array): void {
  for (let at = 0, i = 0; at < data.length; at += pieceLength, i++) {
    const digest = createHash('sha1').update(data.subarray(at, Math.min(at + pieceLength, data.length))).digest();
    out.set(digest, i * 20);
  }
}

if (parentPort) {
  const port = parentPort;
  port.on('message', (job: HashJob) => {
    const data = new Uint8Array(job.buffer, 0, job.length);
    const digests = new Uint8Array(Math.ceil(job.length / job.pieceLength) * 20);
    hashPieces(data, job.pieceLength, digests);
    const result: HashResult = { id: job.id, buffer: job.buffer, digests: digests.buffer };
    port.postMessage(result, [job.buffer, digests.buffer]);
  });
}
