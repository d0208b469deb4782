/**
 * `peerkit get` and `peerkit seed`: the client from the command line. Both
 * are thin: they build a Client, add one torrent, show progress, and stop
 * cleanly (announce `stopped`, write resume data) on completion or on
 * SIGINT/SIGTERM.
 */
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { Client } from '../../client/client.js';
import type { Torrent, TorrentOptions } from '../../client/torrent.js';
import { parsePeerAddress } from '../../codec/magnet.js';
import type { Endpoint } from '../../runtime/contract.js';
import { parseHostPort } from '../../dht/node.js';
import { join } from 'node:path';
import { formatBytes, formatRate, parsePort, parseSize, UsageError } from '../format.js';
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
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function common(cmd: Command): Command {
  return addDashboardOptions(cmd)
    .option('-p, --port <n>', 'TCP port to listen on for peers (0: any free port)', '6881')
    .option('--host <addr>', 'address to listen on', '0.0.0.0')
    .option('--max-peers <n>', 'most peers to connect to for this torrent', '50')
    .option('--peer <host:port>', 'connect to this peer directly; repeatable', collect, [])
    .option('-t, --tracker <url>', 'announce to this tracker too; repeatable', collect, [])
    .option('--upload-limit <rate>', 'upload limit in bytes per second (e.g. 500KiB)')
    .option('--download-limit <rate>', 'download limit in bytes per second (e.g. 2MiB)')
    .option('--no-pex', 'do not exchange peers with peers (BEP 11)')
    .option('--dht', 'find peers on the Mainline DHT too (BEP 5; public torrents only)')
    .option('--dht-port <n>', 'UDP port of the DHT node (default: the --port number)')
    .option('--bootstrap <host:port>', 'join the DHT through this node; repeatable; implies --dht. Nothing is contacted unless named', collect, [])
    .option('--recheck', 'ignore resume data and hash what is on disk')
    .option('-q, --quiet', 'no progress output');
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

/** Progress: a bar on a terminal, one plain line per second otherwise. */
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
    if (this.io.stderr.isTTY) {
      this.bar = new cliProgress.SingleBar(
        {
          stream: this.io.stderr,
          format: '{name} |{bar}| {percentage}% {done}  ↓ {down} ↑ {up}  peers {peers}  ETA {eta}',
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
    const left = s.left ?? total;
    const eta = s.downloadRate > 0 ? left / s.downloadRate : Infinity;
    return {
      name: this.t.name.slice(0, 30),
      done: s.hasMetadata ? `${formatBytes(total - left)}/${formatBytes(total)}` : `metadata ${(s.metadataProgress * 100).toFixed(0)}%`,
      down: formatRate(s.downloadRate),
      up: formatRate(s.uploadRate),
      peers: String(s.peers),
      eta: left === 0 ? '0:00' : formatEta(eta),
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
    this.io.stdout.write(`${this.percent().toFixed(1)}% ${f.done} down ${f.down} up ${f.up} peers ${f.peers} eta ${f.eta}\n`);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.bar?.stop();
  }
}

async function runTransfer(io: CliIo, source: string, dir: string, o: TransferOptions, keepSeeding: boolean): Promise<void> {
  const port = parsePort(o.port, '--port');
  const maxPeers = o.maxPeers === undefined ? undefined : Number(o.maxPeers);
  if (maxPeers !== undefined && !(Number.isInteger(maxPeers) && maxPeers > 0 && maxPeers <= 1000)) throw new UsageError('--max-peers takes a number from 1 to 1000');
  const timeoutSec = o.timeout === undefined ? undefined : Number(o.timeout);
  if (timeoutSec !== undefined && !(timeoutSec > 0)) throw new UsageError('--timeout takes a number of seconds');
  const peers = parsePeers(o.peer);
  const uploadLimit = o.uploadLimit ? parseSize(o.uploadLimit, '--upload-limit') : 0;
  const downloadLimit = o.downloadLimit ? parseSize(o.downloadLimit, '--download-limit') : 0;
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
  };
  let progress: Progress | undefined;
  const say = (line: string): void => {
    if (!o.quiet) io.stderr.write(`${io.stderr.isTTY ? '\r\x1b[K' : ''}${line}\n`);
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
    client.on('torrent', (t) => {
      t.on('checking', (done, total) => {
        if (!o.quiet && io.stderr.isTTY) io.stderr.write(`\rchecking existing data ${done}/${total}`);
      });
    });
    torrent = await client.add(source, opts);
    const t = torrent;
    say(`peerkit: ${t.name} (${t.infoHashHex}) listening on port ${client.port}`);
    t.on('metadata', (m) => say(`metadata: ${m.name}, ${formatBytes(m.length)} in ${m.files.length} file(s)`));
    t.on('banned', (e, reason) => say(`banned ${e.host}:${e.port}: ${reason}`));
    t.on('piece-failed', (i) => say(`piece ${i} failed its hash check; fetching it again`));
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
    }
    progress = new Progress(io, t, o.quiet === true);
    progress.start();
    const timer = timeoutSec === undefined ? undefined : setTimeout(() => stopping?.('timeout'), timeoutSec * 1000);
    const why = await finished;
    if (timer) clearTimeout(timer);
    progress.stop();
    if (why === 'SIGINT' || why === 'SIGTERM') say(`stopping (${why}): resume data saved, trackers told`);
    await client.close();
    if (why.startsWith('error: ')) throw new Error(why.slice(7));
    if (why === 'timeout') throw new Error(`not complete after ${timeoutSec} s (${t.stats().piecesDone} of ${t.stats().pieceCount} pieces)`);
    if ((why === 'SIGINT' || why === 'SIGTERM') && !keepSeeding && !t.isComplete) process.exitCode = 130;
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
      await runTransfer(io, source, o.out, o, o.seed === true);
    });

  common(
    program
      .command('seed')
      .description('check a torrent\'s data in a folder, then seed it until Ctrl-C (SIGINT) or SIGTERM')
      .argument('<torrent>', '.torrent file (or magnet link, once the data and metadata are in the folder)')
      .requiredOption('-d, --dir <dir>', 'folder that holds the data'),
  ).action(async (source: string, o: TransferOptions & { dir: string }) => {
    await runTransfer(io, source, o.dir, o, true);
  });
}
