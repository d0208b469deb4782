/**
 * `peerkit scrape <torrent|magnet> [-t URL]... [--json]`: asks each tracker of
 * a torrent how many seeders and leechers it has and how often it was
 * completed (BEP 48 scrape over HTTP, BEP 15 over UDP), without announcing.
 */
import type { Command } from 'commander';
import { resolveSource } from '../../client/client.js';
import { TrackerAnnouncer } from '../../client/tracker-announcer.js';
import { createRealRuntime } from '../../runtime/real/runtime.js';
import { UsageError } from '../format.js';
import type { CliIo } from '../main.js';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

export function registerScrape(program: Command, io: CliIo): void {
  program
    .command('scrape')
    .description("ask a torrent's trackers for its seeder, leecher and download counts")
    .argument('<torrent|magnet>', 'path of a .torrent file, or a magnet: link')
    .option('-t, --tracker <url>', 'ask this tracker too; repeatable', collect, [])
    .option('--timeout <seconds>', 'wait this long for each tracker', '15')
    .option('--json', 'print JSON instead of text')
    .action(async (target: string, opts: { tracker: string[]; timeout: string; json?: boolean }) => {
      const timeoutSec = Number(opts.timeout);
      if (!(timeoutSec > 0 && timeoutSec <= 300)) throw new UsageError('--timeout takes a number of seconds (at most 300)');
      const src = await resolveSource(target);
      const tiers = [...(src.metainfo?.announceList ?? []), ...src.trackers, ...opts.tracker.map((t) => [t])];
      if (tiers.length === 0) throw new UsageError('the torrent names no tracker; give one with --tracker');
      const runtime = createRealRuntime();
      const announcer = new TrackerAnnouncer({
        runtime,
        tiers,
        infoHash: src.infoHash,
        peerId: Buffer.alloc(20),
        port: 0,
        totals: () => ({ uploaded: 0, downloaded: 0, left: 0 }),
        onPeers: () => undefined,
        httpTimeoutMs: timeoutSec * 1000,
        // BEP 15's retransmissions (15 s, 30 s, ...) cut to fit the timeout: 3 tries.
        udpRetransmitBaseMs: Math.max(100, Math.floor((timeoutSec * 1000) / 7)),
        udpMaxRetransmitExponent: 2,
      });
      try {
        const results = await announcer.scrape(timeoutSec * 1000);
        if (opts.json) {
          io.stdout.write(`${JSON.stringify({ infoHash: src.infoHash.toString('hex'), trackers: results }, null, 2)}\n`);
        } else {
          for (const r of results) {
            io.stdout.write(r.error !== undefined ? `${r.url}: ${r.error}\n` : `${r.url}: ${r.seeders} seeders, ${r.leechers} leechers, ${r.completed} completed\n`);
          }
        }
        if (results.every((r) => r.error !== undefined)) throw new Error('no tracker answered the scrape');
      } finally {
        announcer.close();
      }
    });
}
