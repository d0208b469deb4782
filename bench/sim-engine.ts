/**
 * bench/sim-engine: events per second of the simulator's discrete-event
 * engine on one core, for three event patterns:
 *
 *   timers   N self-rescheduling timers, each re-armed a random 0-100 ms ahead
 *            (the shape of a large DHT run: a standing queue of N events);
 *   burst    every event schedules one follow-up at the same instant or 1 ms
 *            later (FIFO-heavy, like message chains on a zero-latency link);
 *   cancel   as `timers`, but every event also arms and cancels a timeout
 *            (the request-timeout pattern of every protocol core);
 *   messages as `timers`, but with `post` (no handle, not cancellable): the
 *            path of the simulated network's datagram and segment deliveries.
 *
 *   npm run bench:sim -- [--events N] [--queue N] [--seed N] [--vs-ns3]
 *
 * Prints one line per pattern with events/s and the final RSS, and a
 * checksum of the run so two runs with the same seed can be compared.
 *
 * `--vs-ns3` also runs the same patterns on ns-3's simulator core (Debian's
 * libns3-dev, `apt-get install libns3-dev`; bench/ns3/engine.cc is built
 * with g++ into dist/bench/) with its default scheduler (map) and its
 * fastest one here (priority queue), each pattern in a process of its own
 * right after ours, and prints ours / ns-3. ns-3 has one kind of event, so
 * "messages" is set beside its timers; its cancel is the lazy `EventId::Cancel`
 * it recommends (the event stays queued, flagged).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SimEngine } from '../src/runtime/sim/engine.js';
import { seededRandom } from '../src/runtime/sim/prng.js';

const args = process.argv.slice(2);
const opt = (name: string, def: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const totalEvents = opt('--events', 5_000_000);
const queueSize = opt('--queue', 100_000);
const seed = opt('--seed', 1);
const vsNs3 = args.includes('--vs-ns3');

interface Result {
  pattern: string;
  events: number;
  seconds: number;
  checksum: number;
}

function timers(cancel: boolean, post = false): Result {
  const engine = new SimEngine();
  const rnd = seededRandom(seed);
  let checksum = 0;
  let left = totalEvents;
  const fire = (id: number) => (): void => {
    checksum = (checksum * 31 + id + engine.now) % 1_000_000_007;
    if (cancel) engine.after(30_000, noop).cancel();
    if (--left > 0) {
      if (post) engine.postAfter(rnd.below(100), fns[id]!);
      else engine.after(rnd.below(100), fns[id]!);
    }
  };
  const noop = (): void => {};
  const fns: (() => void)[] = [];
  for (let i = 0; i < queueSize; i++) fns.push(fire(i));
  for (let i = 0; i < queueSize; i++) engine.after(rnd.below(100), fns[i]!);
  const t0 = process.hrtime.bigint();
  const events = engine.run({ maxEvents: totalEvents }).events;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { pattern: post ? 'messages' : cancel ? 'cancel' : 'timers', events, seconds, checksum };
}

function burst(): Result {
  const engine = new SimEngine();
  const rnd = seededRandom(seed);
  let checksum = 0;
  let left = totalEvents;
  const fire = (): void => {
    checksum = (checksum * 31 + engine.now) % 1_000_000_007;
    if (--left > 0) engine.after(rnd.below(2), fire);
  };
  for (let i = 0; i < 64; i++) engine.after(0, fire);
  const t0 = process.hrtime.bigint();
  const events = engine.run({ maxEvents: totalEvents }).events;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { pattern: 'burst', events, seconds, checksum };
}

const NS3_SCHEDULERS = [
  ['map', 'ns3::MapScheduler'],
  ['pq', 'ns3::PriorityQueueScheduler'],
] as const;

/** Builds bench/ns3/engine.cc (when missing or older than its source) and returns the binary's path. */
function buildNs3(): string {
  const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
  const src = join(here, '..', '..', 'bench', 'ns3', 'engine.cc');
  const bin = join(here, 'ns3-engine');
  if (!existsSync('/usr/include/ns3/core-module.h')) {
    throw new Error('--vs-ns3 needs ns-3 (Debian: apt-get install libns3-dev) and g++');
  }
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(src).mtimeMs) {
    mkdirSync(here, { recursive: true });
    execFileSync('g++', ['-O2', '-std=c++17', '-o', bin, src, '-lns3-core'], { stdio: 'inherit' });
  }
  return bin;
}

function ns3Rate(bin: string, pattern: string, scheduler: string): { rate: number; rssMiB: number } {
  const ns3Pattern = pattern === 'messages' ? 'timers' : pattern;
  const out = execFileSync(bin, [ns3Pattern, scheduler, String(totalEvents), String(queueSize), String(seed)], { encoding: 'utf8' }).trim().split(' ');
  const events = Number(out[1]);
  const seconds = Number(out[2]);
  if (events !== totalEvents || !(seconds > 0)) throw new Error(`ns-3 ran ${events} events, not ${totalEvents}`);
  return { rate: events / seconds, rssMiB: Number(out[4]) / 1024 };
}

const ns3Bin = vsNs3 ? buildNs3() : '';
console.log(`sim engine: ${totalEvents} events per pattern, standing queue ${queueSize}, seed ${seed}, node ${process.version}`);
const ratios: string[] = [];
for (const run of [() => timers(false), () => timers(false, true), burst, () => timers(true)]) {
  const r = run();
  const rate = r.events / r.seconds;
  const rss = process.memoryUsage().rss / 1024 / 1024;
  console.log(
    `${r.pattern.padEnd(8)} ${(rate / 1e6).toFixed(2)} M events/s  (${r.events} events in ${r.seconds.toFixed(2)} s, RSS ${rss.toFixed(0)} MiB, checksum ${r.checksum})`,
  );
  if (vsNs3) {
    const parts: string[] = [];
    for (const [name, scheduler] of NS3_SCHEDULERS) {
      const theirs = ns3Rate(ns3Bin, r.pattern, scheduler);
      console.log(`  ns-3 ${name.padEnd(3)} ${(theirs.rate / 1e6).toFixed(2)} M events/s  (RSS ${theirs.rssMiB.toFixed(0)} MiB)`);
      parts.push(`${(rate / theirs.rate).toFixed(2)}x ${name}`);
    }
    ratios.push(`${r.pattern} ${parts.join(', ')}`);
  }
}
if (vsNs3) console.log(`ours / ns-3 (events/s): ${ratios.join('; ')}`);
