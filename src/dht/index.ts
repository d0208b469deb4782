/** The DHT on a runtime: DhtNode and its helpers. */
export { DhtNode, parseHostPort, resolveEndpoints } from './node.js';
export type { DhtNodeOptions } from './node.js';
