/**
 * `peerkit sim <scenario.json> --out DIR [--seed N]`: runs a simulator
 * scenario and writes its metrics (CSV, JSON), summary and SVG plots to DIR;
 * the summary table goes to stdout. Progress (toward the scenario's goal,
 * simulated time, events per second) is a bar on a terminal and a plain
 * line every few seconds otherwise. `peerkit sim --schema` prints the JSON Schema of scenario files.
 *
 * Only the progress display reads the wall clock; the files are a function
 * of the scenario and the seed.
 */
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { ScenarioRun, parseScenarioText, scenarioJsonSchema } from '../../sim/index.js';
import { UsageError } from '../format.js';
import type { CliIo } from '../main.js';

interface SimCliOptions {
  out?: string;
  seed?: string;
  quiet?: boolean;
  schema?: boolean;
}

const MAX_INPUT_BYTES = 64 * 1024 * 1024;

function readBounded(path: string): string {
  const size = statSync(path).size;
  if (size > MAX_INPUT_BYTES) throw new UsageError(`${path}: ${size} bytes is more than the ${MAX_INPUT_BYTES} a scenario input may have`);
  return readFileSync(path, 'utf8');
}

function formatCount(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

const nextTick = (): Promise<void> => new Promise((r) => setImmediate(r));

export function registerSim(program: Command, io: CliIo): void {
  program
    .command('sim')
    .description('run a simulator scenario (JSON) and write its metrics, summary and plots')
    .argument('[scenario]', 'scenario file (see scenarios/ and `peerkit sim --schema`)')
    .option('--out <dir>', 'directory for the output files (created if missing)')
    .option('--seed <n>', "override the scenario's seed (a non-negative integer)")
    .option('-q, --quiet', 'no progress display')
    .option('--schema', 'print the JSON Schema of scenario files and exit')
    .action(async (file: string | undefined, o: SimCliOptions) => {
      if (o.schema) {
        io.stdout.write(`${JSON.stringify(scenarioJsonSchema(), null, 2)}\n`);
        return;
      }
      if (file === undefined) throw new UsageError('sim: a scenario file is required (or --schema)');
      if (o.out === undefined) throw new UsageError('sim: --out <dir> is required');
      let seed: number | undefined;
      if (o.seed !== undefined) {
        seed = Number(o.seed);
        if (!/^\d+$/.test(o.seed) || !Number.isSafeInteger(seed)) throw new UsageError(`--seed: "${o.seed}" is not a non-negative integer`);
      }
      const scenario = parseScenarioText(readBounded(file));
      const base = dirname(resolve(file));
      const run = new ScenarioRun(scenario, { seed, loadFile: (p) => readBounded(resolve(base, p)) });
      const duration = run.scenario.durationMs;
      // 100 % is where the run should end: the kind's own measure (the flash crowd's pieces), or
      // simulated time over its expected end, not the limit. Kademlia counts settled lookups, so it
      // can pass its "of ~N s" while the last lookups wait out their timeouts.
      const endText = run.endKnown ? `of ~${(run.expectedEndMs / 1000).toFixed(0)} s` : `(limit ${(duration / 1000).toFixed(0)} s)`;
      const TICKS = 1000;

      const tty = io.stderr.isTTY === true && !o.quiet;
      const bar = tty
        ? new cliProgress.SingleBar(
            {
              stream: io.stderr,
              format: 'sim |{bar}| {percentage}%  t={sim} s {end}  {eps} events/s  {events} events',
              barCompleteChar: '█',
              barIncompleteChar: '░',
              hideCursor: true,
              fps: 5,
            },
            cliProgress.Presets.shades_classic,
          )
        : undefined;
      const fields = (eps: number): Record<string, string> => ({
        sim: (run.now / 1000).toFixed(1),
        end: endText,
        eps: formatCount(eps),
        events: formatCount(run.events),
      });
      bar?.start(TICKS, 0, fields(0));
      const started = performance.now();
      let lastLine = started;
      let lastEvents = 0;
      let lastAt = started;
      let eps = 0;
      // Steps of about 100 ms of wall time: the chunking never changes the run, only how often we look.
      let step = 1000;
      for (;;) {
        const t0 = performance.now();
        const over = run.advance(step, 250_000);
        const t1 = performance.now();
        const wall = t1 - t0;
        step = Math.max(1, Math.min(step * 4, wall > 0 ? (step * 100) / wall : step * 4));
        if (t1 - lastAt >= 500 || over) {
          eps = ((run.events - lastEvents) * 1000) / Math.max(1, t1 - lastAt);
          lastEvents = run.events;
          lastAt = t1;
        }
        const progress = run.progress();
        bar?.update(Math.round(progress * TICKS), fields(eps));
        if (!tty && !o.quiet && (t1 - lastLine >= 2000 || over)) {
          lastLine = t1;
          io.stderr.write(`sim: t=${(run.now / 1000).toFixed(1)} s ${endText} ${Math.floor(progress * 100)}%, ${formatCount(run.events)} events, ${formatCount(eps)} events/s\n`);
        }
        if (over) break;
        await nextTick();
      }
      bar?.stop();
      const wallMs = performance.now() - started;
      const result = run.result();
      mkdirSync(o.out, { recursive: true });
      for (const [name, text] of Object.entries(result.files)) writeFileSync(join(o.out, name), text);
      io.stdout.write(result.table);
      if (!o.quiet) {
        io.stderr.write(
          `wrote ${Object.keys(result.files).length} files to ${o.out}; ${run.events} events in ${(wallMs / 1000).toFixed(2)} s of wall time (${formatCount((run.events * 1000) / Math.max(1, wallMs))} events/s)\n`,
        );
      }
    });
}
