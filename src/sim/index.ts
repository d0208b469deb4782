/**
 * The simulator's scenario layer: scenario files, the registry of kinds, the
 * runner, churn and metrics. Importing this module registers the built-in
 * kinds.
 */
import './kinds/flash-crowd.js';
import './kinds/kademlia.js';

export { ScenarioRun, parseScenario, parseScenarioText, registerKind, scenarioKinds, scenarioJsonSchema } from './scenario.js';
export type { Scenario, ScenarioKind, KindRun, KindContext, KindSummary, RunOptions as ScenarioRunOptions, RunResult as ScenarioRunResult } from './scenario.js';
export { ScenarioError } from './schema.js';
export { Lifecycle } from './lifecycle.js';
export type { ChurnSpec, ScenarioEvent, NodeControl, Departure } from './lifecycle.js';
export { Metrics, fitLog2, quantile } from './metrics.js';
export type { OperationRecord, LogFit, OperationSummary } from './metrics.js';
export { sample, resolveDistribution, cdf, mean } from './distributions.js';
export type { Distribution, DistributionSpec } from './distributions.js';
export { flashCrowd, fluidLowerBoundMs, leecherClassCounts } from './kinds/flash-crowd.js';
export type { FlashCrowdParams, LeecherClass } from './kinds/flash-crowd.js';
export { kademlia } from './kinds/kademlia.js';
export type { KademliaParams } from './kinds/kademlia.js';
export { TorrentNode } from './torrent-node.js';
