/**
 * The deterministic simulator: a seeded PRNG, a discrete-event engine and a
 * virtual network whose hosts each expose a Runtime.
 *
 *     const net = new SimNetwork({ seed: 42, latencyMs: 50, loss: 0.2 });
 *     const a = net.addHost(); // 10.0.0.1
 *     const b = net.addHost(); // 10.0.0.2
 *     // ... bind sockets / drive cores on a.runtime and b.runtime ...
 *     net.engine.run({ until: 60_000 });
 */
export { SeededRandom, RandomBase, seededRandom, seedKey, forkKey } from './prng.js';
export type { Seed } from './prng.js';
export { EventQueue, QueueEntry } from './event-queue.js';
export { SimEngine, SimLimitError } from './engine.js';
export type { RunOptions, RunResult, RunStopReason, SimEngineOptions } from './engine.js';
export { SimNetwork, SimHost, SimNetError } from './network.js';
export type { AddHostOptions, LinkFunction, SimBindOptions, SimNetworkOptions, SimNetworkStats } from './network.js';
export { Flow, FlowScheduler, maxMinFair } from './bandwidth.js';
export type { LinkEnds } from './bandwidth.js';
export {
  constantLatency,
  uniformLatency,
  geographicLatency,
  matrixLatency,
  parseLatencyMatrix,
  checkMatrix,
  hash32,
  hashUnit,
  LatencyMatrixError,
} from './latency.js';
export type { GeoRegion, GeoOptions, GeoModel, GeoPlacement, LatencyMatrix } from './latency.js';
