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
 *   npm run bench:sim -- [--events N] [--queue N] [--seed N]
 *
 * Prints one line per pattern with events/s and the final RSS, and a
 * checksum of the run so two runs with the same seed can be compared.
 */
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

console.log(`sim engine: ${totalEvents} events per pattern, standing queue ${queueSize}, seed ${seed}, node ${process.version}`);
for (const run of [() => timers(false), () => timers(false, true), burst, () => timers(true)]) {
  const r = run();
  const rate = r.events / r.seconds;
  const rss = process.memoryUsage().rss / 1024 / 1024;
  console.log(
    `${r.pattern.padEnd(8)} ${(rate / 1e6).toFixed(2)} M events/s  (${r.events} events in ${r.seconds.toFixed(2)} s, RSS ${rss.toFixed(0)} MiB, checksum ${r.checksum})`,
  );
}
