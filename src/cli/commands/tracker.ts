/**
 * `peerkit tracker`: runs the HTTP and UDP tracker until SIGINT or SIGTERM,
 * then shuts down cleanly (sockets closed, the user store compacted and
 * unlocked). SIGHUP reloads the whitelist file.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { startTracker, type StartTrackerOptions } from '../../tracker/index.js';
import { parsePort, UsageError } from '../format.js';
import type { CliIo } from '../main.js';
import { TrackerSource } from '../../dashboard/tracker-source.js';
import { addDashboardOptions, dashboardSettings, startCliDashboard, type DashboardCliOptions } from '../dashboard-option.js';

interface TrackerCliOptions extends DashboardCliOptions {
  http?: string;
  udp?: string;
  host: string[];
  data?: string;
  whitelist?: string;
  private?: boolean;
  addUser: string[];
  interval?: string;
  maxTorrents?: string;
  maxPeersPerTorrent?: string;
  maxPeers?: string;
  maxNumwant?: string;
  maxConnectionsPerAddress?: string;
  rateLimit: string;
  fullScrape?: boolean;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function positive(text: string | undefined, what: string, allowZero = false): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || (!allowZero && n === 0)) throw new UsageError(`${what}: "${text}" is not a ${allowZero ? 'non-negative' : 'positive'} integer`);
  return n;
}

/** A whitelist file: one 40-digit hex info hash a line; blank lines and `#` comments are ignored (opentracker's format). */
export function readWhitelist(path: string): string[] {
  const out: string[] = [];
  readFileSync(path, 'utf8')
    .split('\n')
    .forEach((raw, i) => {
      const line = raw.replace(/#.*/, '').trim();
      if (line === '') return;
      if (!/^[0-9a-fA-F]{40}$/.test(line)) throw new UsageError(`${path}:${i + 1}: not a 40-digit hex info hash: "${line.slice(0, 60)}"`);
      out.push(line.toLowerCase());
    });
  return out;
}

export function registerTracker(program: Command, io: CliIo): void {
  addDashboardOptions(program
    .command('tracker')
    .description('run a BitTorrent tracker (HTTP and UDP) until SIGINT or SIGTERM')
    .option('--http <port>', 'HTTP port, 0 for any free one (default 6969 when neither --http nor --udp is given)')
    .option('--udp <port>', 'UDP port, 0 for any free one (default 6969 when neither --http nor --udp is given)')
    .option('--host <addr>', 'IP address to bind; repeat for more (default 127.0.0.1; 0.0.0.0 and :: for all)', collect, [])
    .option('--data <dir>', 'directory for users, passkeys and accounting (needed with --private)')
    .option('--whitelist <file>', 'track only the info hashes in this file (40 hex digits a line); SIGHUP reloads it')
    .option('--private', 'require a registered passkey in every announce URL')
    .option('--add-user <name>', 'register a user unless it exists and print its passkey; repeatable', collect, [])
    .option('--interval <seconds>', 'seconds between announces (default 1800)')
    .option('--max-torrents <n>', 'most torrents tracked (default 1000000)')
    .option('--max-peers-per-torrent <n>', 'most peers stored per torrent (default 20000)')
    .option('--max-peers <n>', 'most peers stored in all (default 10000000)')
    .option('--max-numwant <n>', 'most peers sent in one answer (default 200)')
    .option('--max-connections-per-address <n>', 'most HTTP connections open from one IPv4 address or IPv6 /64 (default 64)')
    .option('--rate-limit <n>', 'requests per second per address, bursts of 4x; 0 for no limit', '50')
    .option('--full-scrape', 'allow a scrape without info hashes (lists every torrent)'))
    .action(async (opts: TrackerCliOptions) => {
      const neither = opts.http === undefined && opts.udp === undefined;
      const http = neither ? 6969 : opts.http === undefined ? false : parsePort(opts.http, '--http');
      const udp = neither ? 6969 : opts.udp === undefined ? false : parsePort(opts.udp, '--udp');
      if (opts.private === true && opts.data === undefined) throw new UsageError('--private needs --data DIR to keep passkeys and accounting');
      if (opts.addUser.length > 0 && opts.private !== true) throw new UsageError('--add-user only makes sense with --private');
      if (opts.data !== undefined && opts.private !== true) throw new UsageError('--data only makes sense with --private (an open tracker keeps nothing on disk)');
      const rate = positive(opts.rateLimit, '--rate-limit', true)!;
      const interval = positive(opts.interval, '--interval');
      dashboardSettings(opts); // usage errors before anything starts
      const options: StartTrackerOptions = {
        host: opts.host.length > 0 ? opts.host : '127.0.0.1',
        http,
        udp,
        private: opts.private === true,
        dataDir: opts.data,
        users: opts.addUser,
        whitelist: opts.whitelist === undefined ? undefined : readWhitelist(opts.whitelist),
        interval,
        maxTorrents: positive(opts.maxTorrents, '--max-torrents'),
        maxPeersPerTorrent: positive(opts.maxPeersPerTorrent, '--max-peers-per-torrent'),
        maxPeers: positive(opts.maxPeers, '--max-peers'),
        maxNumWant: positive(opts.maxNumwant, '--max-numwant'),
        maxConnectionsPerAddress: positive(opts.maxConnectionsPerAddress, '--max-connections-per-address'),
        rateLimit: rate === 0 ? false : { perSecond: rate, burst: rate * 4 },
        allowFullScrape: opts.fullScrape === true,
        onError: (e) => io.stderr.write(`peerkit tracker: internal error: ${e instanceof Error ? e.message : String(e)}\n`),
      };
      // Signal handlers go in before anything is printed, so a signal sent as soon as the URLs appear is handled.
      let reloadWhitelist = (): void => {};
      let removeHandlers = (): void => {};
      const stopped = new Promise<NodeJS.Signals>((resolve) => {
        const reload = (): void => reloadWhitelist();
        const stop = (s: NodeJS.Signals): void => {
          removeHandlers();
          resolve(s);
        };
        removeHandlers = (): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          process.off('SIGHUP', reload);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
        process.on('SIGHUP', reload);
      });
      const tracker = await startTracker(options).catch((e: unknown) => {
        removeHandlers();
        throw e;
      });
      reloadWhitelist = (): void => {
        if (opts.whitelist === undefined) return;
        try {
          tracker.core.setWhitelist(readWhitelist(opts.whitelist));
          io.stdout.write(`peerkit tracker: whitelist reloaded, ${tracker.core.whitelistSize} torrents\n`);
        } catch (e) {
          io.stderr.write(`peerkit tracker: whitelist not reloaded: ${e instanceof Error ? e.message : String(e)}\n`);
        }
      };
      const out: string[] = ['peerkit tracker: serving'];
      for (const u of tracker.httpUrls) out.push(`  ${u}`);
      for (const u of tracker.udpUrls) out.push(`  ${u}`);
      for (const u of tracker.httpUrls) out.push(`  stats: ${u.replace(/\/announce$/, '/stats')}  metrics: ${u.replace(/\/announce$/, '/metrics')}`);
      const wl = tracker.core.whitelistSize;
      out.push(`  mode: ${opts.private === true ? `private, ${tracker.users().length} users, data in ${opts.data!}` : 'open'}${wl === undefined ? '' : `, whitelist of ${wl} torrents`}`);
      for (const name of opts.addUser) {
        const u = tracker.users().find((x) => x.name === name);
        if (u === undefined) continue;
        const urls = tracker.announceUrls(u.passkey);
        out.push(`  user ${name}: passkey ${u.passkey}`);
        for (const url of [urls.http, urls.udp]) if (url !== undefined) out.push(`    ${url}`);
      }
      io.stdout.write(`${out.join('\n')}\n`);
      const dashboard = await startCliDashboard(opts, [new TrackerSource('tracker', tracker)], (line) => io.stdout.write(`  ${line}\n`)).catch(async (e: unknown) => {
        removeHandlers();
        await tracker.close();
        throw e;
      });

      const signal = await stopped;
      await dashboard?.close();
      await tracker.close();
      io.stdout.write(`peerkit tracker: stopped (${signal})\n`);
    });
}
