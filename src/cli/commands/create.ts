import { writeFile, rename } from 'node:fs/promises';
import type { Command } from 'commander';
import { createTorrent } from '../../files/create-torrent.js';
import { buildMagnet } from '../../codec/magnet.js';
import { formatBytes, formatRate, parseSize, UsageError } from '../format.js';
import type { CliIo } from '../main.js';
import { packageVersion } from '../main.js';

interface CreateOptions {
  output: string;
  tracker: string[];
  pieceLength?: string;
  private?: boolean;
  name?: string;
  comment?: string;
  webSeed: string[];
  date: boolean;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

export function registerCreate(program: Command, io: CliIo): void {
  program
    .command('create')
    .description('create a .torrent file (BitTorrent v1) from a file or a folder')
    .argument('<path>', 'file or folder to share')
    .requiredOption('-o, --output <file>', 'where to write the .torrent')
    .option('-t, --tracker <url>', 'tracker announce URL; repeat for more (each is its own tier)', collect, [])
    .option('--piece-length <bytes>', 'piece length, a power of two (e.g. 262144, 256KiB, 1MiB); default chosen from the size')
    .option('--private', 'mark the torrent private (BEP 27): no DHT or peer exchange')
    .option('--name <name>', 'name stored in the torrent (default: the file or folder name)')
    .option('--comment <text>', 'free-text comment')
    .option('--web-seed <url>', 'web seed URL (BEP 19); repeat for more', collect, [])
    .option('--no-date', 'leave out the creation date (makes the .torrent file reproducible)')
    .action(async (path: string, opts: CreateOptions) => {
      const pieceLength = opts.pieceLength === undefined ? undefined : parseSize(opts.pieceLength, '--piece-length');
      for (const url of [...opts.tracker, ...opts.webSeed]) {
        if (!/^(https?|udp|wss?):\/\/./i.test(url)) throw new UsageError(`"${url}" is not an http(s)://, udp:// or ws(s):// URL`);
      }
      const started = performance.now();
      const showProgress = io.stderr.isTTY === true;
      let lastDraw = 0;
      const { torrent, metainfo } = await createTorrent(path, {
        pieceLength,
        announce: opts.tracker.map((t) => [t]),
        private: opts.private === true,
        name: opts.name,
        comment: opts.comment,
        urlList: opts.webSeed.length > 0 ? opts.webSeed : undefined,
        createdBy: `peerkit/${packageVersion()}`,
        creationDate: opts.date ? Math.floor(Date.now() / 1000) : undefined,
        onProgress: showProgress
          ? (done: number, total: number) => {
              const t = performance.now();
              if (t - lastDraw < 100 && done < total) return;
              lastDraw = t;
              const pct = total === 0 ? 100 : (100 * done) / total;
              const rate = done / Math.max(0.001, (t - started) / 1000);
              io.stderr.write(`\rhashing ${pct.toFixed(1).padStart(5)}%  ${formatBytes(done)} of ${formatBytes(total)}  ${formatRate(rate)}   `);
            }
          : undefined,
      });
      if (showProgress) io.stderr.write('\n');
      // Write atomically: a crash never leaves a half-written .torrent behind.
      const tmp = `${opts.output}.${process.pid}.tmp`;
      await writeFile(tmp, torrent);
      await rename(tmp, opts.output);
      const seconds = (performance.now() - started) / 1000;
      io.stdout.write(
        `${opts.output}: ${metainfo.name}, ${formatBytes(metainfo.length)} in ${metainfo.pieceCount} pieces of ${formatBytes(metainfo.pieceLength)}` +
          ` (hashed in ${seconds.toFixed(2)} s, ${formatRate(metainfo.length / Math.max(seconds, 0.001))})\n` +
          `info hash: ${metainfo.infoHashHex}\n` +
          `magnet:    ${buildMagnet({ infoHash: metainfo.infoHash, name: metainfo.name, trackers: metainfo.announceList.flat() })}\n`,
      );
    });
}
