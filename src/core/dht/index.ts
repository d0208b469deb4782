/** The Mainline DHT core: sans-I/O node, routing table, storage, BEP 42 and BEP 44 helpers. */
export { DhtCore } from './dht-core.js';
export type { DhtCoreInit, DhtEvent, DhtOptions, DhtStats, FoundNode, OperationInfo, OperationKind, OperationResult, TableNode } from './dht-core.js';
export { RoutingTable, NodeEntry } from './routing-table.js';
export type { BucketStats, InsertResult, NodeState, RoutingTableOptions, SavedNode } from './routing-table.js';
export { PeerStore, ItemStore } from './storage.js';
export type { PeerStoreOptions, ItemStoreOptions } from './storage.js';
export { immutableTarget, itemMatchesTarget, keyPairFromSeed, mutableTarget, signMutableItem, signedPayload, targetOf, verifyItemSignature } from './bep44.js';
export type { Item } from './bep44.js';
export { bep42Id, crc32c, isBep42Id, idMatchesAddr } from './id.js';
