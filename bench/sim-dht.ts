/**
 * bench/sim-dht: the kademlia scenario at growing N: events per second, wall
 * and CPU time, peak RSS, lookup success and hops, and the fit
 * hops = a + b log2 N with its R².
 *
 *   npm run bench:sim-dht -- [--sizes 1000,3000,10000,30000,100000] [--lookups N] [--churn F] [--seed S]
 *                            [--warm] [--semi-space MB] [--in-process]
 *
 * Each size: N nodes join over 60 s through one bootstrap node (each
 * refreshes its far buckets after its join), then from 120 s `lookups`
 * (default N) find_node lookups for other nodes' ids over 120 s. `--churn F`: a fraction F of sessions drops within the lookup
 * window (exponential sessions, half crashes, back after 1-3 min).
 * Uniform 10-100 ms latencies, 1 % loss. `--warm`: the scenario's warm start
 * instead of the join (every node begins at 0 with a table an oracle filled
 * as a long-running node's; nodes that come back after churn still join for
 * real), with the lookups and the churn from 10 s.
 *
 * Every size runs in a child process of its own, so its peak RSS is its own
 * (`--in-process` runs them one after another in this process instead; RSS
 * is then the peak so far). The children run with V8's
 * --max-semi-space-size=256 (`--semi-space MB` to change it, 0 for V8's
 * default of 16): a larger young generation means fewer scavenges of the
 * simulation's many medium-lived objects (in-flight lookups, transactions
 * and datagrams). The first 10 simulated seconds of the 100k case ran at
 * 48.7k events/s with 256 MB against 35.8k with 64 MB, for a few hundred MiB
 * more RSS. Large sizes print their progress to stderr.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
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
const child = opt('--child', '');
const semiSpace = Number(opt('--semi-space', '256'));
const warm = args.includes('--warm');

interface SizeResult {
  n: number;
  events: number;
  deliveries: number;
  wallS: number;
  cpuS: number;
  peakRssMiB: number;
  lookups: number;
  ok: number;
  hops: number;
  queries: number;
  latencyP50: number;
  simulatedS: number;
}

function runSize(n: number): SizeResult {
  const lookups = lookupsArg === '' ? n : Number(lookupsArg);
  const joinOverMs = 60_000;
  const lookupsStartMs = warm ? 10_000 : joinOverMs + 30_000 + 30_000;
  const lookupsOverMs = 120_000;
  const raw: Record<string, unknown> = {
    kind: 'kademlia',
    seed,
    durationMs: 3_600_000,
    sampleIntervalMs: 10_000,
    network: { latency: { model: 'uniform', minMs: 10, maxMs: 100 }, loss: 0.01 },
    params: { nodes: n, lookups, joinOverMs, lookupsStartMs, lookupsOverMs, warmStart: warm },
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
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const run = new ScenarioRun(parseScenario(raw));
  let peakRss = 0;
  let reported = t0;
  while (!run.advance(10_000)) {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    const now = performance.now();
    if (n >= 30_000 && now - reported >= 30_000) {
      reported = now;
      const wall = (now - t0) / 1000;
      process.stderr.write(`  N=${n}: t=${(run.now / 1000).toFixed(0)} s simulated, ${run.events} events, ${wall.toFixed(0)} s wall, ${(run.events / wall / 1000).toFixed(1)}k events/s, RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB\n`);
    }
  }
  const wallS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  peakRss = Math.max(peakRss, process.memoryUsage().rss, process.resourceUsage().maxRSS * 1024);
  const r = run.result();
  const ops = r.summary['operations'] as { kind: string; count: number; ok: number; hopsMean: number; messagesMean: number; latencyMs: { p50: number } }[];
  const l = ops.find((o) => o.kind === 'lookup')!;
  return {
    n,
    events: run.events,
    deliveries: run.network.stats.datagramsDelivered,
    wallS,
    cpuS: (cpu.user + cpu.system) / 1e6,
    peakRssMiB: peakRss / 2 ** 20,
    lookups: l.count,
    ok: l.ok,
    hops: l.hopsMean,
    queries: l.messagesMean,
    latencyP50: l.latencyMs.p50,
    simulatedS: run.now / 1000,
  };
}

if (child !== '') {
  process.stdout.write(`${JSON.stringify(runSize(Number(child)))}\n`);
} else {
  console.log(`sim DHT: sizes ${sizes.join(', ')}, churn ${churn}, ${warm ? 'warm start' : 'joins'}, seed ${seed}${semiSpace > 0 && !args.includes('--in-process') ? `, semi-space ${semiSpace} MB` : ''}, node ${process.version}`);
  const results: SizeResult[] = [];
  for (const n of sizes) {
    let r: SizeResult;
    if (args.includes('--in-process')) r = runSize(n);
    else {
      const self = fileURLToPath(import.meta.url);
      const pass = args.filter((a, i) => a !== '--in-process' && a !== '--sizes' && args[i - 1] !== '--sizes');
      const v8flags = semiSpace > 0 ? [`--max-semi-space-size=${semiSpace}`] : [];
      const out = spawnSync(process.execPath, [...process.execArgv, ...v8flags, self, ...pass, '--child', String(n)], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 20 });
      if (out.status !== 0) throw new Error(`N=${n}: the child process failed (status ${out.status}, signal ${out.signal})`);
      r = JSON.parse(out.stdout.trim().split('\n').pop()!) as SizeResult;
    }
    results.push(r);
    console.log(
      `N=${r.n}: ${r.events} events (${r.deliveries} datagrams delivered) in ${r.wallS.toFixed(1)} s wall, ${r.cpuS.toFixed(1)} s CPU = ${(r.events / r.wallS / 1000).toFixed(1)}k events/s; ` +
        `peak RSS ${r.peakRssMiB.toFixed(0)} MiB; lookups ${r.ok}/${r.lookups} ok (${((100 * r.ok) / r.lookups).toFixed(1)} %), hops ${r.hops.toFixed(2)}, queries ${r.queries.toFixed(1)}, ` +
        `latency p50 ${r.latencyP50.toFixed(0)} ms; simulated ${r.simulatedS.toFixed(0)} s`,
    );
  }
  if (results.length >= 2) {
    const f = fitLog2(
      results.map((r) => r.n),
      results.map((r) => r.hops),
    );
    console.log(`fit: hops = ${f.a.toFixed(3)} + ${f.b.toFixed(3)} * log2(N)   (R^2 ${f.r2.toFixed(3)})`);
  }
}
