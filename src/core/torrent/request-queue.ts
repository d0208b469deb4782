/**
 * How many block requests to keep outstanding at a peer: enough to cover the
 * bandwidth-delay product, so that the peer never runs out of requests while
 * the next ones are on their way to it.
 *
 *   depth = ceil(rate × latency × GAIN / blockSize) + HEADROOM
 *
 * bounded below by MIN_DEPTH and above by the peer's `reqq` and MAX_DEPTH.
 * `rate` is what the peer sends us (bytes/s, measured); `latency` is the
 * request round trip estimated by LatencyEstimator: from sending a request
 * to its block arriving, less the time the request waited behind our earlier
 * ones at the peer. GAIN > 1 lets the rate grow when the pipeline is what
 * limits it (then rate = depth × blockSize / latency, so the next depth is
 * GAIN times larger until the link or the peer is the limit).
 *
 * Pure: samples and time come in as numbers.
 */

export const QUEUE_MIN_DEPTH = 8;
/** 500 × 16 KiB = 8 MiB in flight at one peer: 27 ms of a 300 MB/s link, 2.7 s of 3 MB/s (as libtorrent's default). */
export const QUEUE_MAX_DEPTH = 500;
export const QUEUE_GAIN = 1.5;
export const QUEUE_HEADROOM = 8;
/**
 * The latency used before any is measured: one second, so a new fast peer
 * is not starved while we learn (the rate, measured from nothing, keeps the
 * depth small until data flows anyway).
 */
export const DEFAULT_LATENCY_MS = 1000;
/**
 * Latencies below this count as this: the smallest time of data in flight
 * we plan for (x GAIN), the "one second of the rate" most clients keep. The
 * estimate below is exact for a peer that answers as requests come, but a
 * peer that answers in pulses hides its round trip: Transmission 3.00 sends
 * what was asked for in its 500 ms peer pulse, so most of a block's wait looks
 * like queueing behind our own requests and is subtracted. With a 250 ms
 * floor a Transmission seeder settled at 17 MB/s to us on loopback, at 1 s
 * it gave 28 MB/s (bench:download --only b --size 256, the same machine,
 * one after the other). On a fast local link the measured latency is a few
 * milliseconds anyway, and a peer stalls now and then for tens of them.
 * Longer round trips (satellite, a congested far peer) count in full.
 */
export const MIN_LATENCY_MS = 1000;

export function requestQueueDepth(rateBytesPerSec: number, latencyMs: number, reqq: number, blockSize = 16 * 1024, maxDepth = QUEUE_MAX_DEPTH): number {
  const rate = Number.isFinite(rateBytesPerSec) && rateBytesPerSec > 0 ? rateBytesPerSec : 0;
  const latency = Number.isFinite(latencyMs) ? Math.max(MIN_LATENCY_MS, latencyMs) : DEFAULT_LATENCY_MS;
  const bdp = (rate * latency) / 1000 / blockSize;
  const depth = Math.ceil(bdp * QUEUE_GAIN) + QUEUE_HEADROOM;
  const upper = Math.max(1, Math.min(reqq, maxDepth));
  return Math.min(upper, Math.max(QUEUE_MIN_DEPTH, depth));
}

/**
 * The request round trip of one peer, smoothed (as TCP smooths its RTT:
 * gains 1/8 for the mean, 1/4 for the mean deviation).
 *
 * A block's time from request to arrival is the latency plus the time its
 * request waited at the peer behind the ones we had sent before it
 * (`ahead` of them). Two estimates are kept:
 *  - idle: requests sent when nothing else was outstanding: no wait, an
 *    exact sample (the first request after an unchoke, after a stall);
 *  - busy: other samples, less `ahead × blockSize / rate`, the wait if the
 *    peer was sending to us all along. Exact while it is; when the pipeline
 *    is too short to keep it busy this subtracts too much (the estimate comes
 *    out low), so it can only raise the idle estimate, never lower it.
 * The latency is the larger of the two, plus twice the mean deviation of the
 * busy samples for jitter.
 */
export class LatencyEstimator {
  private idle: number | undefined;
  private busy: number | undefined;
  private busyDev = 0;

  /** `rttMs`: request sent to block received; `ahead`: our requests outstanding at the peer when it was sent; `rate`: bytes/s from the peer now. */
  sample(rttMs: number, ahead: number, blockBytes: number, rateBytesPerSec: number): void {
    if (!(rttMs >= 0) || !Number.isFinite(rttMs)) return;
    if (ahead === 0) {
      this.idle = this.idle === undefined ? rttMs : this.idle + (rttMs - this.idle) / 8;
      return;
    }
    if (!(rateBytesPerSec > 0)) return;
    const s = Math.max(0, rttMs - (ahead * blockBytes * 1000) / rateBytesPerSec);
    if (this.busy === undefined) {
      this.busy = s;
      this.busyDev = s / 2;
      return;
    }
    this.busyDev += (Math.abs(s - this.busy) - this.busyDev) / 4;
    this.busy += (s - this.busy) / 8;
  }

  /** Estimated latency in ms; undefined before any sample. */
  get latencyMs(): number | undefined {
    if (this.idle === undefined && this.busy === undefined) return undefined;
    return Math.max(this.idle ?? 0, this.busy ?? 0) + 2 * this.busyDev;
  }
}
