/**
 * The child process behind webtorrent.ts: one WebTorrent 1.9.7 client (its
 * own event loop and RSS) seeding or downloading one torrent. Not a test and
 * not for direct use: it does nothing unless PEERKIT_WEBTORRENT_CHILD holds
 * its JSON config (Node 20's `node --test dist/test/` also loads this file,
 * as it loads every .js below a folder named test).
 *
 * Talks JSON lines: events on stdout ({"type":"listening",...}, "metadata",
 * "ready", "wire", "progress", "done", "warning", "error"), commands on stdin
 * ({"cmd":"addPeer","addr":"127.0.0.1:6881"}, {"cmd":"stop"}). It exits when
 * stdin closes (the parent is gone), on SIGTERM/SIGINT, or after an error.
 */
import { createRequire } from 'node:module';
import net from 'node:net';
import { readFileSync } from 'node:fs';

export interface WebTorrentChildConfig {
  mode: 'seed' | 'download';
  /** A .torrent path or a magnet link. */
  torrent: string;
  dir: string;
  /** 0: any free port. */
  torrentPort: number;
  /** Address the peer listener binds (WebTorrent itself would bind every interface). */
  bindHost: string;
  /** Tracker URLs: these replace the torrent's own. */
  announce: string[];
  /** host:port peers to dial at start. */
  peers: string[];
  pex: boolean;
  progressIntervalMs: number;
}

// Just enough of WebTorrent 1.9.7's shapes.
interface Wire {
  remoteAddress?: string;
  remotePort?: number;
}
interface Torrent {
  infoHash: string;
  name: string;
  length: number;
  pieces: unknown[];
  info: unknown;
  downloaded: number;
  uploaded: number;
  progress: number;
  numPeers: number;
  downloadSpeed: number;
  uploadSpeed: number;
  done: boolean;
  addPeer(addr: string): boolean;
  on(event: 'metadata' | 'ready' | 'done', f: () => void): void;
  on(event: 'wire', f: (wire: Wire, addr?: string) => void): void;
  on(event: 'warning' | 'error', f: (e: Error | string) => void): void;
}
interface Client {
  torrentPort: number;
  add(id: unknown, opts: Record<string, unknown>): Torrent;
  on(event: 'listening', f: () => void): void;
  on(event: 'error', f: (e: Error | string) => void): void;
  destroy(cb: (e?: Error) => void): void;
}
type WebTorrentCtor = new (opts: Record<string, unknown>) => Client;
interface ParsedTorrent {
  announce?: string[];
  urlList?: string[];
  peerAddresses?: string[];
  xs?: unknown;
  as?: unknown;
  ws?: unknown;
}

const emit = (event: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(event)}\n`);
};

function main(cfg: WebTorrentChildConfig): void {
  const require = createRequire(import.meta.url);
  const wtRequire = createRequire(require.resolve('webtorrent'));
  const WebTorrent = require('webtorrent') as WebTorrentCtor;
  const parseTorrent = wtRequire('parse-torrent') as (id: string | Buffer) => ParsedTorrent;
  const bencode = wtRequire('bencode') as { encode(v: unknown): Buffer };

  // WebTorrent 1.9.7 listens with server.listen(port): every interface. Pin its
  // listener (the only server it opens with DHT, LSD and uTP off) to bindHost.
  const listen = net.Server.prototype.listen as (...args: unknown[]) => net.Server;
  net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]): net.Server {
    if (typeof args[0] === 'number' && (args.length === 1 || typeof args[1] === 'function')) args.splice(1, 0, cfg.bindHost);
    return listen.apply(this, args);
  } as typeof net.Server.prototype.listen;

  // Outgoing peer connections leave from bindHost too (net.connect is looked up at
  // call time in WebTorrent 1.9.7): Transmission 3.00 keeps one peer per IP
  // address, so clients on loopback need sources of their own (127.0.0.2, ...).
  const connect = net.connect as (...args: unknown[]) => net.Socket;
  const loopback = (h: string): boolean => h === '::1' || h.startsWith('127.');
  (net as { connect: unknown }).connect = function (...args: unknown[]): net.Socket {
    const o = args[0] as { host?: unknown; localAddress?: unknown } | null;
    if (typeof o === 'object' && o !== null && typeof o.host === 'string' && o.localAddress === undefined) {
      const host = o.host.replace(/^\[|\]$/g, '');
      if (net.isIP(host) === net.isIP(cfg.bindHost) && loopback(host) === loopback(cfg.bindHost)) args[0] = { ...o, localAddress: cfg.bindHost };
    }
    return connect.apply(net, args);
  };

  // Only the trackers and peers the test named: drop the torrent's or magnet's own
  // trackers, web seeds and exact sources (xs, which WebTorrent would fetch over HTTP).
  const parsed = parseTorrent(cfg.torrent.startsWith('magnet:') ? cfg.torrent : readFileSync(cfg.torrent));
  parsed.announce = [...cfg.announce];
  parsed.urlList = [];
  parsed.peerAddresses = [];
  delete parsed.xs;
  delete parsed.as;
  delete parsed.ws;

  const client = new WebTorrent({
    dht: false,
    lsd: false,
    utp: false,
    natUpnp: false,
    natPmp: false,
    webSeeds: false,
    tracker: cfg.announce.length > 0 ? {} : false,
    torrentPort: cfg.torrentPort,
  });
  let stopping = false;
  const stop = (code: number): void => {
    if (stopping) return;
    stopping = true;
    const force = setTimeout(() => process.exit(code), 3000);
    force.unref();
    client.destroy(() => process.exit(code));
  };
  const fail = (e: Error | string): void => {
    emit({ type: 'error', message: String(typeof e === 'string' ? e : (e.stack ?? e.message)) });
    stop(1);
  };
  client.on('error', fail);
  client.on('listening', () => emit({ type: 'listening', port: client.torrentPort, host: cfg.bindHost }));

  // pex:false -> the torrent is treated as private, which in WebTorrent 1.9.7 only
  // leaves out ut_pex (DHT is off anyway); the infohash does not change.
  const torrent = client.add(parsed, { path: cfg.dir, private: !cfg.pex });
  const pending: string[] = [...cfg.peers];
  let haveInfoHash = false;
  const addPeer = (addr: string): void => {
    if (!haveInfoHash) {
      pending.push(addr);
      return;
    }
    emit({ type: 'addPeer', addr, accepted: torrent.addPeer(addr) });
  };
  const progress = (): Record<string, unknown> => ({
    type: 'progress',
    downloaded: torrent.downloaded,
    uploaded: torrent.uploaded,
    progress: torrent.progress,
    numPeers: torrent.numPeers,
    downloadSpeed: Math.round(torrent.downloadSpeed),
    uploadSpeed: Math.round(torrent.uploadSpeed),
    done: torrent.done,
    rss: process.memoryUsage().rss,
  });
  // 'infoHash' fires as soon as the id is parsed; addPeer is allowed from then on.
  (torrent as unknown as { on(e: 'infoHash', f: () => void): void }).on('infoHash', () => {
    haveInfoHash = true;
    for (const addr of pending.splice(0)) addPeer(addr);
  });
  torrent.on('metadata', () => {
    // The info dictionary as WebTorrent holds it, so the parent can check the data of a magnet download.
    const info = bencode.encode(torrent.info).toString('base64');
    emit({ type: 'metadata', infoHash: torrent.infoHash, name: torrent.name, length: torrent.length, pieces: torrent.pieces.length, info });
  });
  torrent.on('ready', () => {
    emit({ type: 'ready', infoHash: torrent.infoHash, done: torrent.done });
    if (cfg.mode === 'seed' && !torrent.done) {
      // Checked once verification is over ('ready' comes after it): a seeder that
      // would start downloading means the test's data is wrong.
      setImmediate(() => {
        if (!torrent.done) fail(`seed data in ${cfg.dir} is incomplete: progress ${torrent.progress}`);
      });
    }
  });
  torrent.on('done', () => {
    emit(progress());
    emit({ type: 'done' });
  });
  torrent.on('wire', (wire, addr) => emit({ type: 'wire', addr: addr ?? `${wire.remoteAddress}:${wire.remotePort}` }));
  torrent.on('warning', (e) => emit({ type: 'warning', message: String(typeof e === 'string' ? e : e.message) }));
  torrent.on('error', fail);
  const timer = setInterval(() => emit(progress()), cfg.progressIntervalMs);
  timer.unref();

  let buffered = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (!line) continue;
      try {
        const msg = JSON.parse(line) as { cmd?: string; addr?: string };
        if (msg.cmd === 'addPeer' && typeof msg.addr === 'string') addPeer(msg.addr);
        else if (msg.cmd === 'stop') stop(0);
        else emit({ type: 'warning', message: `unknown command ${line}` });
      } catch (e) {
        emit({ type: 'warning', message: `bad command ${line}: ${(e as Error).message}` });
      }
    }
  });
  process.stdin.on('end', () => stop(0));
  process.on('SIGTERM', () => stop(0));
  process.on('SIGINT', () => stop(0));
}

const raw = process.env.PEERKIT_WEBTORRENT_CHILD;
if (raw !== undefined) main(JSON.parse(raw) as WebTorrentChildConfig);
