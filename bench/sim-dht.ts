/**
 * bench/sim-dht: the kademlia scenario at growing N: events per second, peak
 * RSS, lookup success and hops, and the fit hops = a + b log2 N.
 *
 *   npm run bench:sim-dht -- [--sizes 1000,3000,10000] [--lookups N] [--churn F] [--seed S]
 *
 * Each size: N nodes join over 60 s through one bootstrap node, refresh
 * once, then `lookups` (default N) find_node lookups for other nodes' ids
 * over 120 s. `--churn F`: a fraction F of sessions drops within the lookup
 * window (exponential sessions, half crashes, back after 1-3 min).
 * Uniform 10-100 ms latencies, 1 % loss. One process per run is not needed:
 * sizes run one after another, and RSS is read after each (peak so far).
 */
import { ScenarioRun, parseScenario, fitLog2 } from '../src/sim/index.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : def;
};
const sizes = opt('--sizes', '1000,3000,10000').split(',').map(Number);
const lookupsArg = opt('--lookups', '');
const churn = Number(opt('--churn', '0'));
const seed = Number(opt('--seed', '1'));

console.log(`sim DHT: sizes ${sizes.join(', ')}, churn ${churn}, seed ${seed}, node ${process.version}`);
const hops: number[] = [];
let peakRss = 0;
for (const n of sizes) {
  const lookups = lookupsArg === '' ? n : Number(lookupsArg);
  const joinOverMs = 60_000;
  const lookupsStartMs = joinOverMs + 30_000 + 30_000;
  const lookupsOverMs = 120_000;
  const raw: Record<string, unknown> = {
    kind: 'kademlia',
    seed,
    durationMs: 3_600_000,
    sampleIntervalMs: 10_000,
    network: { latency: { model: 'uniform', minMs: 10, maxMs: 100 }, loss: 0.01 },
    params: { nodes: n, lookups, joinOverMs, lookupsStartMs, lookupsOverMs },
  };
  if (churn > 0) {
    raw['churn'] = {
      group: 'nodes',
      startMs: lookupsStartMs,
      session: { type: 'exponential', dropFraction: churn, withinMs: lookupsOverMs },
      offline: { type: 'uniform', minMs: 60_000, maxMs: 180_000 },
      crashFraction: 0.5,
    };
  }
  const run = new ScenarioRun(parseScenario(raw));
  const t0 = performance.now();
  while (!run.advance(10_000)) peakRss = Math.max(peakRss, process.memoryUsage().rss);
  const wall = (performance.now() - t0) / 1000;
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  const r = run.result();
  const ops = r.summary['operations'] as { kind: string; count: number; ok: number; hopsMean: number; messagesMean: number; latencyMs: { p50: number } }[];
  const l = ops.find((o) => o.kind === 'lookup')!;
  hops.push(l.hopsMean);
  console.log(
    `N=${n}: ${run.events} events in ${wall.toFixed(1)} s = ${(run.events / wall / 1e6).toFixed(2)} M events/s; peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB; ` +
      `lookups ${l.ok}/${l.count} ok, hops ${l.hopsMean.toFixed(2)}, queries ${l.messagesMean.toFixed(1)}, latency p50 ${l.latencyMs.p50.toFixed(0)} ms; simulated ${(run.now / 1000).toFixed(0)} s`,
  );
}
if (sizes.length >= 2) {
  const f = fitLog2(sizes, hops);
  console.log(`fit: hops = ${f.a.toFixed(3)} + ${f.b.toFixed(3)} * log2(N)   (R^2 ${f.r2.toFixed(3)})`);
}
