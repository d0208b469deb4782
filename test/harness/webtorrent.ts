/**
 * WebTorrent 1.9.7 (devDependency) as a seeder or leecher for interop tests,
 * in a child node process of its own (webtorrent-child.ts), so its event loop
 * and memory are apart from the test's.
 *
 * The client runs with DHT, LSD, uTP, UPnP, NAT-PMP and web seeds off, its
 * peer listener bound to one address (127.0.0.1 unless told), and only the
 * trackers the test names (the torrent's own announce list, web seeds and a
 * magnet's xs/x.pe are dropped). PEX is off unless asked for. Peers come from
 * those trackers or from addPeer (at start with `peers`, or later).
 *
 * WebTorrent 1.9.7 speaks no MSE/PE: a Transmission peer must not require
 * encryption (transmission.ts defaults to 'tolerated').
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseMagnet } from '../../src/codec/magnet.js';
import { parseInfoDictionary, parseMetainfo, type Metainfo } from '../../src/codec/metainfo.js';
import { verifyPieces } from '../../src/files/verify-pieces.js';
import type { NetnsHost } from './netns.js';
import { assertLocalEndpoint, lineSplitter, spawnManaged, waitUntil, withTimeout, type ManagedProcess } from './proc.js';
import type { WebTorrentChildConfig } from './webtorrent-child.js';

export type WebTorrentEvent =
  | { type: 'listening'; port: number; host: string }
  | { type: 'metadata'; infoHash: string; name: string; length: number; pieces: number; info: string }
  | { type: 'ready'; infoHash: string; done: boolean }
  | { type: 'wire'; addr: string }
  | { type: 'addPeer'; addr: string; accepted: boolean }
  | { type: 'progress'; downloaded: number; uploaded: number; progress: number; numPeers: number; downloadSpeed: number; uploadSpeed: number; done: boolean; rss: number }
  | { type: 'done' }
  | { type: 'warning'; message: string }
  | { type: 'error'; message: string };

export type WebTorrentProgress = Extract<WebTorrentEvent, { type: 'progress' }>;

export interface WebTorrentOptions {
  /** 'seed': serve the existing data in `dir` (verified first; fails if incomplete); 'download': fetch into `dir`. */
  readonly mode: 'seed' | 'download';
  /** A .torrent file or a magnet link (download only). */
  readonly torrent: string;
  readonly dir: string;
  /** torrentPort. Default 0: a free one, reported as `port`. */
  readonly port?: number;
  /**
   * Address the peer listener binds and outgoing peer connections leave from.
   * Default 127.0.0.1, or the namespace's address. Give each client on
   * loopback its own (127.0.0.2, 127.0.0.3, ...) when several talk to one
   * Transmission: it keeps only one peer per IP address.
   */
  readonly host?: string;
  /** Tracker announce URLs; they replace the torrent's own. Default none. */
  readonly announce?: readonly string[];
  /** Peers (host:port) to connect to at start; more later with addPeer(). */
  readonly peers?: readonly string[];
  /** ut_pex. Default false. */
  readonly pex?: boolean;
  /** Run inside this network namespace (see netns.ts). */
  readonly netns?: NetnsHost;
  /** Addresses besides loopback that trackers and peers may be at (a test network's addresses). */
  readonly allowedHosts?: readonly string[];
  /** How often the child reports progress. Default 500 ms. */
  readonly progressIntervalMs?: number;
  readonly logFile?: string;
  /** How long to wait for the listener. Default 15 s. */
  readonly startTimeoutMs?: number;
}

export interface WebTorrentHandle {
  readonly pid: number;
  readonly host: string;
  /** The peer port it listens on. */
  readonly port: number;
  readonly process: ManagedProcess;
  /** Every event so far, in order, except progress reports. */
  readonly events: readonly WebTorrentEvent[];
  /** The latest progress report. */
  readonly progress: WebTorrentProgress | undefined;
  /**
   * Resolves with the first event (past or future) matching; for 'progress',
   * the latest report once it matches. Rejects on timeout, an 'error' event or exit.
   */
  waitForEvent<T extends WebTorrentEvent['type']>(type: T, timeoutMs: number, pred?: (e: Extract<WebTorrentEvent, { type: T }>) => boolean): Promise<Extract<WebTorrentEvent, { type: T }>>;
  /** A seeder has verified its data and serves it. */
  waitForSeeding(timeoutMs: number): Promise<void>;
  /** WebTorrent says done, then (unless verify is false) every piece on disk matches the torrent's hashes. */
  waitForComplete(timeoutMs: number, opts?: { verify?: boolean }): Promise<void>;
  /** The torrent's metainfo: from the .torrent, or for a magnet the info dictionary WebTorrent fetched (checked against the infohash). */
  metainfo(): Metainfo | undefined;
  /** Dials a peer (host:port). */
  addPeer(addr: string): void;
  /** Asks the child to close (SIGTERM), SIGKILL after 3 s. Idempotent. */
  stop(): Promise<void>;
}

const CHILD = fileURLToPath(new URL('./webtorrent-child.js', import.meta.url));

export async function startWebTorrent(opts: WebTorrentOptions): Promise<WebTorrentHandle> {
  const host = opts.host ?? opts.netns?.address ?? '127.0.0.1';
  const allowed = [...(opts.allowedHosts ?? []), ...(opts.netns ? [opts.netns.address] : [])];
  for (const url of opts.announce ?? []) assertLocalEndpoint('WebTorrent tracker', url, allowed);
  for (const peer of opts.peers ?? []) assertLocalEndpoint('WebTorrent peer', peer, allowed);
  assertLocalEndpoint('WebTorrent listener', `${host.includes(':') ? `[${host}]` : host}:0`, allowed);
  if (opts.mode === 'seed' && opts.torrent.startsWith('magnet:')) throw new Error('a WebTorrent seeder needs a .torrent file');
  // Fail early on a bad magnet; the torrent's own trackers are ignored below.
  if (opts.torrent.startsWith('magnet:')) parseMagnet(opts.torrent);
  else parseMetainfo(readFileSync(opts.torrent));
  mkdirSync(opts.dir, { recursive: true });

  const config: WebTorrentChildConfig = {
    mode: opts.mode,
    torrent: opts.torrent,
    dir: opts.dir,
    torrentPort: opts.port ?? 0,
    bindHost: host,
    announce: [...(opts.announce ?? [])],
    peers: [...(opts.peers ?? [])],
    pex: opts.pex ?? false,
    progressIntervalMs: opts.progressIntervalMs ?? 500,
  };
  const env: NodeJS.ProcessEnv = { ...process.env, PEERKIT_WEBTORRENT_CHILD: JSON.stringify(config) };
  // Set by node --test in its children; meaningless (and misleading) for ours.
  delete env.NODE_TEST_CONTEXT;
  delete env.NODE_OPTIONS;

  const events: WebTorrentEvent[] = [];
  const waiters = new Set<() => void>();
  let progress: WebTorrentProgress | undefined;
  const proc = spawnManaged(
    process.execPath,
    [CHILD],
    {
      env,
      stdin: 'pipe',
      logFile: opts.logFile,
      onStdout: lineSplitter((line) => {
        let e: WebTorrentEvent;
        try {
          e = JSON.parse(line) as WebTorrentEvent;
        } catch {
          return;
        }
        // Progress comes twice a second: keep only the latest; every other event is kept.
        if (e.type === 'progress') progress = e;
        else events.push(e);
        for (const w of waiters) w();
      }),
    },
    opts.netns?.prefix ?? [],
  );

  const fail = (what: string): Error => {
    const e = proc.exitInfo;
    const how = e ? `the WebTorrent child exited (code ${e.code}, signal ${e.signal})` : 'the WebTorrent child still runs';
    const err = events.find((x) => x.type === 'error');
    const recent = proc
      .tail()
      .split('\n')
      .filter((l) => !l.startsWith('{"type":"progress"'))
      .slice(-30)
      .join('\n');
    const p = progress ? ` (last progress: ${JSON.stringify(progress)})` : '';
    return new Error(`${what}: ${how}${err && err.type === 'error' ? `: ${err.message}` : ''}${p}; last output:\n${recent}`);
  };

  const waitForEvent = async <T extends WebTorrentEvent['type']>(
    type: T,
    timeoutMs: number,
    pred: (e: Extract<WebTorrentEvent, { type: T }>) => boolean = () => true,
  ): Promise<Extract<WebTorrentEvent, { type: T }>> => {
    const find = (): Extract<WebTorrentEvent, { type: T }> | undefined =>
      (type === 'progress' && progress ? [progress] : events).find(
        (e): e is Extract<WebTorrentEvent, { type: T }> => e.type === type && pred(e as Extract<WebTorrentEvent, { type: T }>),
      );
    const what = `WebTorrent: ${type}`;
    let done!: (e: Extract<WebTorrentEvent, { type: T }>) => void;
    let failed!: (e: Error) => void;
    const got = new Promise<Extract<WebTorrentEvent, { type: T }>>((resolve, reject) => {
      done = resolve;
      failed = reject;
    });
    const waiter = (): void => {
      const e = find();
      if (e) done(e);
      else if (type !== 'error' && events.some((x) => x.type === 'error')) failed(fail(what));
    };
    waiters.add(waiter);
    waiter();
    try {
      return await withTimeout(
        what,
        timeoutMs,
        Promise.race([
          got,
          proc.exited.then(() => {
            waiter();
            throw fail(what);
          }),
        ]),
      );
    } catch (e) {
      throw (e as Error).message.startsWith('timed out') ? fail((e as Error).message) : e;
    } finally {
      waiters.delete(waiter);
    }
  };

  let port = 0;
  const handle: WebTorrentHandle = {
    pid: proc.pid,
    host,
    get port() {
      return port;
    },
    process: proc,
    events,
    get progress() {
      return progress;
    },
    waitForEvent,
    async waitForSeeding(timeoutMs) {
      await waitForEvent('ready', timeoutMs);
      await waitForEvent('done', timeoutMs);
    },
    async waitForComplete(timeoutMs, o = {}) {
      const deadline = Date.now() + timeoutMs;
      await waitForEvent('done', timeoutMs);
      if (o.verify === false) return;
      const m = handle.metainfo();
      if (!m) throw fail('WebTorrent: done without metadata');
      let last = '';
      await waitUntil('the downloaded data to match every piece hash', Math.max(1, deadline - Date.now()), async () => {
        const r = await verifyPieces(opts.dir, m);
        last = `${r.validCount}/${r.pieceCount} pieces valid`;
        return r.validCount === r.pieceCount;
      }, 200).catch((e: Error) => {
        throw fail(`${e.message} (${last})`);
      });
    },
    metainfo() {
      if (!opts.torrent.startsWith('magnet:')) return parseMetainfo(readFileSync(opts.torrent));
      const e = events.find((x) => x.type === 'metadata');
      if (!e || e.type !== 'metadata') return undefined;
      return parseInfoDictionary(Buffer.from(e.info, 'base64'), Buffer.from(e.infoHash, 'hex'));
    },
    addPeer(addr) {
      assertLocalEndpoint('WebTorrent peer', addr, allowed);
      proc.child.stdin?.write(`${JSON.stringify({ cmd: 'addPeer', addr })}\n`);
    },
    stop: () => proc.stop('SIGTERM', 3000),
  };

  try {
    const l = await waitForEvent('listening', opts.startTimeoutMs ?? 15_000);
    port = l.port;
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return handle;
}
