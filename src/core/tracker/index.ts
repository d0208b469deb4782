/** The sans-I/O tracker: swarm registry, connection ids, rate limiting and the protocol core. */
export { TrackerCore, infoHashKey, keyNumber, routeOf } from './tracker-core.js';
export type { TrackerCoreOptions, TrackerUser, TrackerEvent, AccountingEvent, TrackerStats, FailureKind, HttpReply } from './tracker-core.js';
export { SwarmRegistry, PeerArena, sizeClasses, WordScratch } from './swarm.js';
export type { SwarmOptions } from './swarm.js';
export { ConnectionIds } from './connection-id.js';
export type { ConnectionIdOptions } from './connection-id.js';
export { RateLimiter } from './rate-limit.js';
export type { RateLimitOptions } from './rate-limit.js';
