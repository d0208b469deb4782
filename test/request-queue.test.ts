/** The request pipeline's depth (bandwidth-delay product) and the latency estimate behind it: src/core/torrent/request-queue.ts. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DEFAULT_LATENCY_MS, LatencyEstimator, MIN_LATENCY_MS, QUEUE_GAIN, QUEUE_HEADROOM, QUEUE_MAX_DEPTH, QUEUE_MIN_DEPTH, requestQueueDepth } from '../src/core/torrent/request-queue.js';

const BLOCK = 16 * 1024;
const MB = 1_000_000;

test('depth = rate x latency / 16 KiB x gain + headroom, for a link past the floors', () => {
  // 2 MB/s at 1.5 s: 184 blocks in flight, x1.5, +8.
  assert.equal(requestQueueDepth(2 * MB, 1500, 2000), Math.ceil(((2 * MB * 1.5) / BLOCK) * QUEUE_GAIN) + QUEUE_HEADROOM);
  assert.equal(requestQueueDepth(2 * MB, 1500, 2000), 283);
});

test('depth grows with the rate and with the latency', () => {
  const at = (mbps: number, ms: number): number => requestQueueDepth(mbps * MB, ms, 2000);
  // With the rate, at a fixed latency.
  assert.ok(at(0.5, 1200) < at(1, 1200) && at(1, 1200) < at(2, 1200) && at(2, 1200) < at(4, 1200), [at(0.5, 1200), at(1, 1200), at(2, 1200), at(4, 1200)].join(' '));
  // With the latency, at a fixed rate (above the floor).
  assert.ok(at(1, 1200) < at(1, 1800) && at(1, 1800) < at(1, 2400), [at(1, 1200), at(1, 1800), at(1, 2400)].join(' '));
  // Below the latency floor, the floor counts.
  assert.equal(at(4, 1), at(4, MIN_LATENCY_MS));
  // Unknown latency (nothing measured yet): the default.
  assert.equal(requestQueueDepth(4 * MB, NaN, 2000), at(4, DEFAULT_LATENCY_MS));
});

test('property: depth is monotone in rate and latency and stays within [min, min(reqq, max)]', () => {
  fc.assert(
    fc.property(
      fc.double({ min: 0, max: 2e9, noNaN: true }),
      fc.double({ min: 0, max: 2e9, noNaN: true }),
      fc.double({ min: 0, max: 5000, noNaN: true }),
      fc.double({ min: 0, max: 5000, noNaN: true }),
      fc.integer({ min: 1, max: 5000 }),
      fc.integer({ min: 1, max: 3000 }),
      (r1, r2, l1, l2, reqq, max) => {
        const [ra, rb] = r1 <= r2 ? [r1, r2] : [r2, r1];
        const [la, lb] = l1 <= l2 ? [l1, l2] : [l2, l1];
        const d = (r: number, l: number): number => requestQueueDepth(r, l, reqq, BLOCK, max);
        assert.ok(d(ra, la) <= d(rb, la), 'monotone in rate');
        assert.ok(d(ra, la) <= d(ra, lb), 'monotone in latency');
        for (const v of [d(ra, la), d(rb, lb)]) {
          const upper = Math.min(reqq, max);
          assert.ok(v <= upper, `${v} <= ${upper}`);
          assert.ok(v >= Math.min(QUEUE_MIN_DEPTH, upper), `${v} >= min`);
          assert.ok(Number.isInteger(v));
        }
      },
    ),
  );
});

test('the bounds: the peer\'s reqq and the maximum cap a fast, far peer; a slow one gets the minimum', () => {
  assert.equal(requestQueueDepth(1e9, 1000, 2000), QUEUE_MAX_DEPTH);
  assert.equal(requestQueueDepth(1e9, 1000, 250), 250);
  assert.equal(requestQueueDepth(1e9, 1000, 2000, BLOCK, 1500), 1500);
  assert.equal(requestQueueDepth(0, 1000, 2000), QUEUE_MIN_DEPTH);
  assert.equal(requestQueueDepth(0, 1000, 3), 3, 'never more than the peer takes');
  assert.equal(requestQueueDepth(-5, -5, 2000), QUEUE_MIN_DEPTH, 'nonsense in, the minimum out');
  assert.equal(requestQueueDepth(Infinity, Infinity, 2000), QUEUE_MIN_DEPTH);
});

test('latency: exact samples from requests sent with nothing outstanding, smoothed', () => {
  const e = new LatencyEstimator();
  assert.equal(e.latencyMs, undefined);
  e.sample(80, 0, BLOCK, 0);
  assert.equal(e.latencyMs, 80);
  for (let i = 0; i < 100; i++) e.sample(200, 0, BLOCK, 0);
  assert.ok(Math.abs(e.latencyMs! - 200) < 1, String(e.latencyMs));
});

test('latency: a sample queued behind our own requests counts without the wait; it can raise the estimate, not lower it', () => {
  const e = new LatencyEstimator();
  e.sample(50, 0, BLOCK, 0);
  // 1.6384 MB/s = 100 blocks/s: 20 requests ahead waited 200 ms, so a 250 ms sample is 50 ms of latency.
  for (let i = 0; i < 50; i++) e.sample(250, 20, BLOCK, 100 * BLOCK);
  assert.ok(Math.abs(e.latencyMs! - 50) < 2, String(e.latencyMs));
  // Samples that come out lower (the pipeline, not the peer, was the limit) leave the exact estimate alone.
  for (let i = 0; i < 50; i++) e.sample(210, 20, BLOCK, 100 * BLOCK);
  assert.ok(e.latencyMs! >= 50, String(e.latencyMs));
  // The peer got slower to answer: 150 ms beyond the wait.
  for (let i = 0; i < 50; i++) e.sample(350, 20, BLOCK, 100 * BLOCK);
  assert.ok(Math.abs(e.latencyMs! - 150) < 5, String(e.latencyMs));
  // Jitter widens it: samples alternating 100 and 200 ms beyond the wait.
  const j = new LatencyEstimator();
  j.sample(10, 0, BLOCK, 0);
  for (let i = 0; i < 100; i++) j.sample(200 + (i % 2 === 0 ? 100 : 200), 20, BLOCK, 100 * BLOCK);
  assert.ok(j.latencyMs! > 150, `mean plus deviation: ${j.latencyMs}`);
  // Nonsense is ignored.
  const n = new LatencyEstimator();
  n.sample(-1, 0, BLOCK, 0);
  n.sample(NaN, 0, BLOCK, 0);
  n.sample(100, 5, BLOCK, 0);
  assert.equal(n.latencyMs, undefined);
});
