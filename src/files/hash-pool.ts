/**
 * SHA-1 of whole pieces in worker threads, so hashing never blocks the
 * thread that moves bytes between peers. A piece's memory is transferred to
 * a worker and back (no copy). With `workers: 0` it hashes inline.
 */
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type { HashJob, HashResult } from './hash-worker.js';

export class HashPool {
  private readonly workers: Worker[] = [];
  private readonly load: number[] = [];
  private readonly waiting = new Map<number, { resolve: (r: { digest: Buffer; buffer: ArrayBuffer }) => void; reject: (e: Error) => void; worker: number }>();
  private nextId = 1;
  private closed = false;

  constructor(private readonly size = 1) {}

  private spawn(): void {
    while (this.workers.length < this.size) {
      const w = new Worker(new URL('./hash-worker.js', import.meta.url));
      const index = this.workers.length;
      w.on('message', (r: HashResult) => {
        const job = this.waiting.get(r.id);
        if (!job) return;
        this.waiting.delete(r.id);
        this.load[index]!--;
        // An idle worker must not keep the process alive; a busy one must.
        if (this.load[index] === 0) w.unref();
        job.resolve({ digest: Buffer.from(r.digests, 0, 20), buffer: r.buffer });
      });
      w.on('error', (e) => {
        for (const [id, job] of this.waiting) {
          if (job.worker === index) {
            this.waiting.delete(id);
            job.reject(e);
          }
        }
      });
      // After the listeners: adding a 'message' listener refs the worker's port again.
      w.unref();
      this.workers.push(w);
      this.load.push(0);
    }
  }

  /**
   * Hashes `length` bytes of `buffer` as one piece. The buffer is detached
   * while the worker has it; the promise gives it back.
   */
  hash(buffer: ArrayBuffer, length: number): Promise<{ digest: Buffer; buffer: ArrayBuffer }> {
    if (this.closed) return Promise.reject(new Error('hash pool closed'));
    if (this.size === 0) {
      return Promise.resolve({ digest: createHash('sha1').update(new Uint8Array(buffer, 0, length)).digest(), buffer });
    }
    this.spawn();
    let w = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.load[i]! < this.load[w]!) w = i;
    const id = this.nextId++;
    this.load[w]!++;
    this.workers[w]!.ref();
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, worker: w });
      const job: HashJob = { id, buffer, length, pieceLength: Math.max(1, length) };
      this.workers[w]!.postMessage(job, [buffer]);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
    for (const job of this.waiting.values()) job.reject(new Error('hash pool closed'));
    this.waiting.clear();
  }
}
