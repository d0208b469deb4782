/**
 * The `peerkit` command line: a thin shell over the library. Every command
 * reports failure as one line on stderr and a non-zero exit code; `--debug`
 * adds the stack trace.
 */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { CodecError } from '../codec/errors.js';
import { registerCreate } from './commands/create.js';
import { registerDht } from './commands/dht.js';
import { registerInfo } from './commands/info.js';
import { registerScrape } from './commands/scrape.js';
import { registerSim } from './commands/sim.js';
import { registerTracker } from './commands/tracker.js';
import { registerTransfer } from './commands/transfer.js';
import { CliExit, UsageError } from './format.js';

export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function describeError(e: unknown): string {
  if (e instanceof CodecError || e instanceof UsageError || e instanceof CliExit) return e.message;
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    const path = (e as NodeJS.ErrnoException).path;
    if (code === 'ENOENT' && path) return `no such file or directory: ${path}`;
    if (code === 'EACCES' && path) return `permission denied: ${path}`;
    return e.message;
  }
  return String(e);
}

/** Runs the CLI with the given arguments (without node and script) and resolves to the exit code. */
export async function run(argv: string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const debug = argv.includes('--debug');
  const program = new Command('peerkit')
    .description('peer-to-peer toolkit: BitTorrent, DHT and overlays on sans-I/O protocol cores')
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--debug', 'print stack traces of errors')
    .helpOption('-h, --help', 'show help')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(`peerkit: ${s.replace(/^error: /, '')}`),
    });
  registerCreate(program, io);
  registerInfo(program, io);
  registerScrape(program, io);
  registerSim(program, io);
  registerTracker(program, io);
  registerTransfer(program, io);
  registerDht(program, io);

  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version exit through here with code 0; usage errors were already printed.
      return e.exitCode;
    }
    io.stderr.write(`peerkit: ${describeError(e)}\n`);
    if (debug && e instanceof Error && e.stack) io.stderr.write(`${e.stack}\n`);
    return e instanceof CliExit ? e.exitCode : 1;
  }
}
