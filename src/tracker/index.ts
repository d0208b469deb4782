/**
 * A BitTorrent tracker as a library: `startTracker(options)` binds HTTP and
 * UDP on the given addresses (127.0.0.1 and ephemeral ports by default),
 * drives one sans-I/O TrackerCore from both, and, for a private tracker with
 * a data directory, keeps users and their accounting in a crash-safe store.
 *
 *     const tracker = await startTracker();              // 127.0.0.1, ports chosen by the OS
 *     createTorrent(dir, { announce: [[tracker.httpUrl!], [tracker.udpUrl!]] });
 *     ...
 *     await tracker.close();
 */
import type { Server } from 'node:http';
import { isIP } from 'node:net';
import { TrackerCore, type TrackerCoreOptions, type TrackerUser } from '../core/tracker/tracker-core.js';
import type { DatagramSocket, Random } from '../runtime/contract.js';
import { createRealRuntime } from '../runtime/real/runtime.js';
import { closeHttp, listenHttp } from './http-server.js';
import type { FullStats } from './metrics.js';
import { TrackerService } from './service.js';
import { UserStore } from './store.js';
import { bindUdp } from './udp-server.js';

export { prometheusText, statsJson, PROMETHEUS_CONTENT_TYPE } from './metrics.js';
export type { FullStats, ServerStats } from './metrics.js';
export { UserStore } from './store.js';
export type { StoredUser, UserStoreOptions, RecoveryReport } from './store.js';

export interface StartTrackerOptions extends Omit<TrackerCoreOptions, 'random'> {
  /** Addresses to bind, literal IPs. Default 127.0.0.1. Give '0.0.0.0' and '::' for all of both families. */
  readonly host?: string | readonly string[];
  /** HTTP port; 0 for any free one, false for no HTTP. Default 0. */
  readonly http?: number | false;
  /** UDP port; 0 for any free one, false for no UDP. Default 0. */
  readonly udp?: number | false;
  /**
   * Where a private tracker keeps users and accounting (created if needed).
   * Without it a private tracker keeps them in memory only.
   */
  readonly dataDir?: string;
  /** Users to have (by name): created with a fresh passkey unless the store already has them. */
  readonly users?: readonly string[];
  /** Randomness for passkeys, connection-id secrets and peer selection. Default: node:crypto. */
  readonly random?: Random;
  /** HTTP connections at most. Default 8192. */
  readonly maxConnections?: number;
  /** HTTP connections at most from one IPv4 address or IPv6 /64. Default 64. */
  readonly maxConnectionsPerAddress?: number;
  /** An HTTP request's head must arrive within this. Default 5000 ms. */
  readonly headersTimeoutMs?: number;
  /** A whole HTTP request must arrive within this. Default 10 000 ms. */
  readonly requestTimeoutMs?: number;
  /** Private trackers with a data directory: peers whose last report is kept (for accounting across restarts). Default 200 000. */
  readonly maxPeerReports?: number;
  /** Longest wait before accounting is fsynced. Default 1000 ms. */
  readonly fsyncIntervalMs?: number;
  /** Called with unexpected errors (the tracker keeps running). Default: ignore. */
  readonly onError?: (error: unknown) => void;
}

export interface TrackerHandle {
  /** The HTTP announce URL on the first address, e.g. http://127.0.0.1:40123/announce. */
  readonly httpUrl: string | undefined;
  /** The UDP announce URL on the first address, e.g. udp://127.0.0.1:40124/announce. */
  readonly udpUrl: string | undefined;
  /** Announce URLs on every address. */
  readonly httpUrls: readonly string[];
  readonly udpUrls: readonly string[];
  readonly httpPort: number | undefined;
  readonly udpPort: number | undefined;
  readonly core: TrackerCore;
  /** The announce URLs with a passkey in the path (private trackers). */
  announceUrls(passkey: string): { http: string | undefined; udp: string | undefined };
  /** Registers a user (persisted when there is a data directory) and returns its new passkey. */
  addUser(name: string): string;
  /** Unregisters a passkey; false if it was not registered. */
  removeUser(passkey: string): boolean;
  users(): TrackerUser[];
  stats(): FullStats;
  /** Stops serving, closes every socket and the store. */
  close(): Promise<void>;
}

function hostPart(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

function checkPort(port: number | false | undefined, what: string): number | false {
  const p = port ?? 0;
  if (p !== false && (!Number.isInteger(p) || p < 0 || p > 65535)) throw new RangeError(`${what} port must be 0..65535 or false`);
  return p;
}

export async function startTracker(options: StartTrackerOptions = {}): Promise<TrackerHandle> {
  const hosts = typeof options.host === 'string' ? [options.host] : [...(options.host ?? ['127.0.0.1'])];
  if (hosts.length === 0) throw new RangeError('at least one host');
  for (const h of hosts) if (isIP(h) === 0) throw new RangeError(`not an IP address: ${h}`);
  const httpPort = checkPort(options.http, 'http');
  const udpPort = checkPort(options.udp, 'udp');
  if (httpPort === false && udpPort === false) throw new RangeError('neither HTTP nor UDP: nothing to serve');

  const runtime = createRealRuntime(options.random !== undefined ? { random: options.random } : {});
  const store =
    options.dataDir !== undefined && options.private === true
      ? UserStore.open(options.dataDir, { fsyncIntervalMs: options.fsyncIntervalMs, maxPeerReports: options.maxPeerReports })
      : undefined;
  let core: TrackerCore;
  try {
    // Each peer's last report lives in the store, so accounting continues across a restart.
    core = new TrackerCore({ ...options, random: runtime.random, ...(store !== undefined ? { lastReported: (peer: string) => store.peerReport(peer) } : {}) });
  } catch (e) {
    store?.close();
    throw e;
  }
  const service = new TrackerService(core, runtime, store, options.onError ?? (() => {}));
  const servers: Server[] = [];
  const sockets: DatagramSocket[] = [];
  const httpUrls: string[] = [];
  const udpUrls: string[] = [];
  let closed = false;

  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    service.close();
    for (const s of sockets) s.close();
    await Promise.all(servers.map(closeHttp));
    store?.close();
  };

  try {
    if (store !== undefined) for (const u of store.list()) core.addUser(u.name, u.passkey, u);
    const addUser = (name: string): string => {
      const passkey = core.newPasskey();
      store?.addUser(name, passkey);
      core.addUser(name, passkey);
      return passkey;
    };
    for (const name of options.users ?? []) {
      if (!core.users().some((u) => u.name === name)) addUser(name);
    }

    // With port 0 the first address picks a port and the others try the same one.
    let hp = httpPort;
    let up = udpPort;
    for (const host of hosts) {
      if (hp !== false) {
        const httpOptions = {
          maxConnections: options.maxConnections,
          maxConnectionsPerAddress: options.maxConnectionsPerAddress,
          headersTimeoutMs: options.headersTimeoutMs,
          requestTimeoutMs: options.requestTimeoutMs,
        };
        const server = await listenHttp(service, { host, port: hp, ...httpOptions }).catch((e: NodeJS.ErrnoException) => {
          if (httpPort === 0 && e.code === 'EADDRINUSE') return listenHttp(service, { host, port: 0, ...httpOptions });
          throw e;
        });
        servers.push(server);
        const port = (server.address() as { port: number }).port;
        if (hp === 0) hp = port;
        httpUrls.push(`http://${hostPart(host)}:${port}/announce`);
      }
      if (up !== false) {
        const socket = await bindUdp(service, runtime, host, up).catch((e: NodeJS.ErrnoException) => {
          if (udpPort === 0 && e.code === 'EADDRINUSE') return bindUdp(service, runtime, host, 0);
          throw e;
        });
        sockets.push(socket);
        if (up === 0) up = socket.local.port;
        udpUrls.push(`udp://${hostPart(host)}:${socket.local.port}/announce`);
      }
    }

    return {
      httpUrl: httpUrls[0],
      udpUrl: udpUrls[0],
      httpUrls,
      udpUrls,
      httpPort: servers[0] === undefined ? undefined : (servers[0].address() as { port: number }).port,
      udpPort: sockets[0]?.local.port,
      core,
      // `/<passkey>/announce`: its last path component still starts with "announce", so clients
      // can derive the scrape URL (`/<passkey>/scrape`) by BEP 48's rule.
      announceUrls: (passkey) => ({
        http: httpUrls[0]?.replace(/\/announce$/, `/${passkey}/announce`),
        udp: udpUrls[0]?.replace(/\/announce$/, `/${passkey}/announce`),
      }),
      addUser,
      removeUser: (passkey) => {
        store?.removeUser(passkey);
        return core.removeUser(passkey);
      },
      users: () => core.users(),
      stats: () => service.stats(),
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
