/**
 * `peerkit get` and `peerkit seed`: the client from the command line. Both
 * are thin: they build a Client, add one torrent, show progress, and stop
 * cleanly (announce `stopped`, write resume data) on completion or on
 * SIGINT/SIGTERM.
 */
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { Client } from '../../client/client.js';
import type { ChokingOptions, Torrent, TorrentOptions } from '../../client/torrent.js';
import { parsePeerAddress } from '../../codec/magnet.js';
import type { Endpoint } from '../../runtime/contract.js';
import { parseHostPort } from '../../dht/node.js';
import { join } from 'node:path';
import { CliExit, formatBytes, formatRate, parsePort, parseSize, UsageError } from '../format.js';
import { endpointKey } from '../../runtime/contract.js';
import type { CliIo } from '../main.js';
import { clientSources } from '../../dashboard/client-source.js';
import type { DashboardHandle } from '../../dashboard/server.js';
import { addDashboardOptions, dashboardSettings, startCliDashboard, type DashboardCliOptions } from '../dashboard-option.js';

interface TransferOptions extends DashboardCliOptions {
  port: string;
  host: string;
  maxPeers?: string;
  peer: string[];
  tracker: string[];
  uploadLimit?: string;
  downloadLimit?: string;
  sequential?: boolean;
  recheck?: boolean;
  pex: boolean;
  dht?: boolean;
  dhtPort?: string;
  bootstrap: string[];
  timeout?: string;
  quiet?: boolean;
  verbose?: boolean;
  maxConnections?: string;
  unchokeSlots?: string;
  optimisticSlots?: string;
  optimisticInterval?: string;
  rechokeInterval?: string;
  snubTimeout?: string;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function common(cmd: Command): Command {
  return addDashboardOptions(cmd)
    .option('-p, --port <n>', 'TCP port to listen on for peers (0: any free port)', '6881')
    .option('--host <addr>', 'address to listen on', '0.0.0.0')
    .option('--max-peers <n>', 'most peers to connect to for this torrent', '50')
    .option('--max-connections <n>', 'most peer connections in all (incoming ones too)', '200')
    .option('--peer <host:port>', 'connect to this peer directly; repeatable', collect, [])
    .option('-t, --tracker <url>', 'announce to this tracker too; repeatable', collect, [])
    .option('--upload-limit <rate>', 'upload limit in bytes per second (e.g. 500KiB)')
    .option('--download-limit <rate>', 'download limit in bytes per second (e.g. 2MiB)')
    .option('--no-pex', 'do not exchange peers with peers (BEP 11)')
    .option('--dht', 'find peers on the Mainline DHT too (BEP 5; public torrents only)')
    .option('--dht-port <n>', 'UDP port of the DHT node (default: the --port number)')
    .option('--bootstrap <host:port>', 'join the DHT through this node; repeatable; implies --dht. Nothing is contacted unless named', collect, [])
    .option('--recheck', 'ignore resume data and hash what is on disk')
    .option('--unchoke-slots <n>', 'peers unchoked by their rate (tit-for-tat)', '4')
    .option('--optimistic-slots <n>', 'peers unchoked regardless of rate', '1')
    .option('--optimistic-interval <seconds>', 'how often the optimistic unchoke rotates', '30')
    .option('--rechoke-interval <seconds>', 'how often the unchoked peers are chosen again', '10')
    .option('--snub-timeout <seconds>', 'a peer that sends us nothing for this long loses its slot', '60')
    .option('-q, --quiet', 'no progress output')
    .option('-v, --verbose', 'report every peer connection, disconnection (with its reason) and failed connection attempt');
}

function parseCount(text: string | undefined, what: string, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new UsageError(`${what} takes a whole number from ${min} to ${max}`);
  return n;
}

function parseSeconds(text: string | undefined, what: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!(n > 0 && n <= 86_400)) throw new UsageError(`${what} takes a number of seconds (more than 0, at most 86400)`);
  return Math.round(n * 1000);
}

function chokingOptions(o: TransferOptions): ChokingOptions {
  return {
    unchokeSlots: parseCount(o.unchokeSlots, '--unchoke-slots', 0, 1000),
    optimisticSlots: parseCount(o.optimisticSlots, '--optimistic-slots', 0, 1000),
    optimisticIntervalMs: parseSeconds(o.optimisticInterval, '--optimistic-interval'),
    rechokeIntervalMs: parseSeconds(o.rechokeInterval, '--rechoke-interval'),
    snubTimeoutMs: parseSeconds(o.snubTimeout, '--snub-timeout'),
  };
}

function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0 || seconds > 99 * 3600) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h > 0 ? `${h}:${String(m).padStart(2, '0')}` : m}:${String(s % 60).padStart(2, '0')}`;
}

function parsePeers(list: string[]): Endpoint[] {
  return list.map((p) => {
    try {
      return parsePeerAddress(p);
    } catch {
      throw new UsageError(`--peer: "${p}" is not host:port`);
    }
  });
}

/** Progress: a bar when stdout is a terminal, one plain line per second on stdout otherwise. */
class Progress {
  private bar: cliProgress.SingleBar | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly io: CliIo,
    private readonly t: Torrent,
    private readonly quiet: boolean,
  ) {}

  start(): void {
    if (this.quiet) return;
    if (this.io.stdout.isTTY) {
      this.bar = new cliProgress.SingleBar(
        {
          stream: this.io.stdout,
          format: '{name} |{bar}| {percentage}% {done}  ↓ {down} ↑ {up}  peers {peers}  ETA {etaText}',
          barCompleteChar: '█',
          barIncompleteChar: '░',
          hideCursor: true,
          fps: 5,
          etaBuffer: 20,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(100, 0, this.fields());
    }
    this.timer = setInterval(() => this.draw(), 1000);
    this.draw();
  }

  private fields(): Record<string, string> {
    const s = this.t.stats();
    const total = this.t.metainfo?.length ?? 0;
    // Unknown until the metadata is in (a magnet link): the ETA shows --:--, not 0:00.
    const left = s.left;
    const eta = left !== undefined && s.downloadRate > 0 ? left / s.downloadRate : Infinity;
    return {
      name: this.t.name.slice(0, 30),
      done: s.hasMetadata && left !== undefined ? `${formatBytes(total - left)}/${formatBytes(total)}` : `metadata ${(s.metadataProgress * 100).toFixed(0)}%`,
      down: formatRate(s.downloadRate),
      up: formatRate(s.uploadRate),
      peers: String(s.peers),
      // Not `eta`: cli-progress fills a token of that name itself (its own estimate, 0 or INF while unknown).
      etaText: left === 0 ? '0:00' : formatEta(eta),
    };
  }

  private percent(): number {
    const s = this.t.stats();
    return s.pieceCount === 0 ? 0 : Math.floor((1000 * s.piecesDone) / s.pieceCount) / 10;
  }

  draw(): void {
    if (this.quiet) return;
    if (this.bar) {
      this.bar.update(this.percent(), this.fields());
      return;
    }
    const f = this.fields();
    this.io.stdout.write(`${this.percent().toFixed(1)}% ${f.done} down ${f.down} up ${f.up} peers ${f.peers} eta ${f.etaText}\n`);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.bar?.stop();
  }
}

const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };
/** Distinct warnings printed, at most (a tracker that keeps failing the same way is reported once). */
const MAX_WARNINGS_REMEMBERED = 256;

/**
 * `get` (command 'get': exits once complete, unless --seed) and `seed`. Every
 * way `get` can end without the whole torrent verified throws, so the exit
 * code is non-zero: a CliExit (130/143) for SIGINT/SIGTERM, an Error (1) for
 * --timeout, a disk error, or a magnet link with no way to find peers.
 */
async function runTransfer(io: CliIo, command: 'get' | 'seed', source: string, dir: string, o: TransferOptions, keepSeeding: boolean): Promise<void> {
  const port = parsePort(o.port, '--port');
  const maxPeers = parseCount(o.maxPeers, '--max-peers', 1, 1000);
  const maxConnections = parseCount(o.maxConnections, '--max-connections', 1, 10_000);
  const timeoutSec = o.timeout === undefined ? undefined : Number(o.timeout);
  if (timeoutSec !== undefined && !(timeoutSec > 0)) throw new UsageError('--timeout takes a number of seconds');
  const peers = parsePeers(o.peer);
  const uploadLimit = o.uploadLimit ? parseSize(o.uploadLimit, '--upload-limit') : 0;
  const downloadLimit = o.downloadLimit ? parseSize(o.downloadLimit, '--download-limit') : 0;
  const choking = chokingOptions(o);
  dashboardSettings(o); // usage errors before anything starts
  const useDht = o.dht === true || o.bootstrap.length > 0 || o.dhtPort !== undefined;
  const dhtPort = o.dhtPort === undefined ? port : parsePort(o.dhtPort, '--dht-port');
  for (const b of o.bootstrap) {
    try {
      parseHostPort(b);
    } catch {
      throw new UsageError(`--bootstrap: "${b}" is not host:port`);
    }
  }
  const client = await Client.create({
    port,
    host: o.host,
    uploadLimit,
    downloadLimit,
    maxConnections,
    // The routing table is kept beside the resume data, so the next run rejoins without a bootstrap node.
    dht: useDht ? { port: dhtPort, bootstrap: o.bootstrap, stateFile: join(dir, '.peerkit', 'dht.json') } : undefined,
  });
  const opts: TorrentOptions = {
    dir,
    seed: keepSeeding,
    sequential: o.sequential === true,
    recheck: o.recheck === true,
    maxPeers,
    peers,
    trackers: o.tracker.map((t) => [t]),
    pex: o.pex,
    choking,
  };
  let progress: Progress | undefined;
  const clearLine = (): string => (io.stderr.isTTY ? '\r\x1b[K' : '');
  const say = (line: string): void => {
    if (!o.quiet) io.stderr.write(`${clearLine()}${line}\n`);
  };
  // Warnings are shown even with --quiet: they say why a download may not be moving.
  const warned = new Set<string>();
  const warn = (line: string): void => {
    if (warned.has(line)) return;
    if (warned.size >= MAX_WARNINGS_REMEMBERED) warned.clear();
    warned.add(line);
    io.stderr.write(`${clearLine()}warning: ${line}\n`);
  };
  const verbose = (line: string): void => {
    if (o.verbose) io.stderr.write(`${clearLine()}${line}\n`);
  };
  let stopping: ((code: string) => void) | undefined;
  const finished = new Promise<string>((resolve) => (stopping = resolve));
  const onSignal = (sig: NodeJS.Signals): void => stopping?.(sig);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let torrent: Torrent | undefined;
  let dashboard: DashboardHandle | undefined;
  try {
    dashboard = await startCliDashboard(o, clientSources('client', client), (line) => io.stderr.write(`${line}\n`));
    client.on('warning', warn);
    client.on('torrent', (t) => {
      t.on('checking', (done, total) => {
        if (!o.quiet && io.stderr.isTTY) io.stderr.write(`\rchecking existing data ${done}/${total}`);
      });
    });
    torrent = await client.add(source, opts);
    const t = torrent;
    const src = t.sources;
    if (!t.isComplete && src.trackers === 0 && src.peers === 0 && !src.dht) {
      if (command === 'get' && /^magnet:/i.test(source)) {
        throw new UsageError('the magnet link gives no way to find peers (no tr= tracker, no x.pe= peer): add --tracker URL, --peer HOST:PORT or --bootstrap HOST:PORT (DHT)');
      }
      warn(`the torrent names no tracker and no --tracker, --peer or --bootstrap was given: only peers that connect to port ${client.port} can help`);
    }
    say(`peerkit: ${t.name} (${t.infoHashHex}) listening on port ${client.port}`);
    const userPeersWarned = new Set<string>();
    t.on('metadata', (m) => say(`metadata: ${m.name}, ${formatBytes(m.length)} in ${m.files.length} file(s)`));
    t.on('banned', (e, reason) => say(`banned ${e.host}:${e.port}: ${reason}`));
    t.on('piece-failed', (i) => say(`piece ${i} failed its hash check; fetching it again`));
    t.on('warning', warn);
    t.on('peer', (e, name) => verbose(`connected to ${endpointKey(e)} (${name})`));
    t.on('disconnect', (e, reason, kind) => {
      if (kind === 'violation') warn(`dropped peer ${endpointKey(e)}: protocol violation: ${reason}`);
      else verbose(`disconnected from ${endpointKey(e)}: ${reason}`);
    });
    t.on('connect-failed', (e, reason, from) => {
      const key = endpointKey(e);
      verbose(`could not connect to ${key} (from ${from}): ${reason}`);
      // A peer the user named is reported once; it is retried every 30 s at most, until --timeout.
      if (from === 'user' && !o.verbose && !userPeersWarned.has(key)) {
        userPeersWarned.add(key);
        warn(`cannot connect to peer ${key}: ${reason}; will keep trying`);
      }
    });
    t.on('error', (e) => stopping?.(`error: ${e.message}`));
    t.on('complete', () => {
      progress?.draw();
      say(`${t.name}: complete, every piece verified`);
      if (!keepSeeding) stopping?.('complete');
      else say('seeding; press Ctrl-C to stop');
    });
    if (t.isComplete) {
      say(`${t.name}: all ${t.metainfo?.pieceCount ?? 0} pieces verified on disk`);
      if (!keepSeeding) stopping?.('complete');
      else say('seeding; press Ctrl-C to stop');
    } else if (command === 'seed') {
      const s = t.stats();
      say(
        s.hasMetadata
          ? `${t.name}: the data in ${dir} is incomplete (${s.piecesDone} of ${s.pieceCount} pieces verified); downloading the rest, seeding meanwhile`
          : `${t.name}: no metadata in ${dir} yet; fetching it from peers, then the data`,
      );
    }
    progress = new Progress(io, t, o.quiet === true);
    progress.start();
    const timer = timeoutSec === undefined ? undefined : setTimeout(() => stopping?.('timeout'), timeoutSec * 1000);
    const why = await finished;
    if (timer) clearTimeout(timer);
    progress.stop();
    const st = t.stats();
    const got = st.hasMetadata ? `${st.piecesDone} of ${st.pieceCount} pieces verified` : 'the metadata not fetched yet';
    const signal = why === 'SIGINT' || why === 'SIGTERM';
    if (signal) say(`stopping (${why}): resume data saved, trackers told`);
    await client.close();
    if (why.startsWith('error: ')) throw new Error(why.slice(7));
    if (why === 'timeout') throw new Error(`not complete after ${timeoutSec} s (${got}, ${st.peers} peer(s) connected)`);
    if (signal && command === 'get' && !t.isComplete) {
      throw new CliExit(`interrupted by ${why} before the download completed (${got}); run the same command again to resume`, SIGNAL_EXIT[why]!);
    }
  } finally {
    progress?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await client.close();
    await dashboard?.close();
  }
}

export function registerTransfer(program: Command, io: CliIo): void {
  common(
    program
      .command('get')
      .description('download a torrent (a .torrent file or a magnet link); exits once every piece is verified')
      .argument('<torrent|magnet>', '.torrent file or magnet: link')
      .requiredOption('-o, --out <dir>', 'folder to download into'),
  )
    .option('--seed', 'keep seeding after the download completes (until Ctrl-C)')
    .option('--sequential', 'download pieces in order (for streaming)')
    .option('--timeout <seconds>', 'give up (exit 1) if not complete by then')
    .action(async (source: string, o: TransferOptions & { out: string; seed?: boolean }) => {
      await runTransfer(io, 'get', source, o.out, o, o.seed === true);
    });

  common(
    program
      .command('seed')
      .description('check a torrent\'s data in a folder, then seed it until Ctrl-C (SIGINT) or SIGTERM')
      .argument('<torrent>', '.torrent file (or magnet link, once the data and metadata are in the folder)')
      .requiredOption('-d, --dir <dir>', 'folder that holds the data'),
  ).action(async (source: string, o: TransferOptions & { dir: string }) => {
    await runTransfer(io, 'seed', source, o.dir, o, true);
  });
}
