/**
 * Transmission 3.00 (`transmission-cli`, Debian package transmission-cli) as a
 * seeder or leecher for interop tests.
 *
 * Findings on loopback (Transmission 3.00, Debian build, checked on this machine
 * and against libtransmission 3.00's peer-mgr.c and net.c):
 *
 * 1. It never dials a peer at 127.0.0.0/8 or ::1 that it learns from a
 *    tracker (or PEX/DHT). tr_peerMgrAddPex() keeps a peer only if
 *    tr_address_is_valid_for_peers(), whose isMartianAddr() rejects 0/8,
 *    127/8, multicast, ::, ::1 and ff00::/8. With a loopback tracker that
 *    answers 127.0.0.1:PORT, Transmission logs "Got 1 peers from tracker" and
 *    stays at "dl from 0 of 0 peers"; the seeder never sees a connection.
 *    127.0.0.2 is refused the same way, so it is not about its own address.
 *    (Transmission 4 allows loopback for incoming/LPD/resume peers only.)
 * 2. It is not about its own IP: inside a namespace, a tracker answer naming
 *    Transmission's own address (another port) is dialed and works.
 * 3. It is not the port mapping: -M only turns NAT-PMP/UPnP off and plays no
 *    part in accepting peers (not tried with mapping on, which would send
 *    UPnP/NAT-PMP traffic off the machine).
 * 4. A peer that connects to Transmission is accepted from 127.0.0.1:
 *    tr_peerMgrAddIncoming() checks only the blocklist. So on plain loopback
 *    Transmission seeds to peers that dial it, and downloads from a seeder
 *    that dials it (WebTorrent's addPeer to Transmission's port), including
 *    a magnet's metadata.
 * 5. For Transmission to dial out, give the peers it hears of a non-loopback
 *    address: run it in a network namespace (netns.ts), e.g. Transmission at
 *    10.A.B.2, tracker and peers on the root side of the bridge at 10.A.B.1.
 * 6. One peer per IP address per torrent: peer atoms and handshakes are keyed
 *    by address alone (comparePeerAtomToAddress ignores the port), so a
 *    second client from the same IP is dropped. Two WebTorrents dialing from
 *    127.0.0.1 got one transfer; from 127.0.0.2 and 127.0.0.3 both did
 *    (webtorrent.ts binds outgoing connections to its `host`).
 * 7. Interest and unchoking happen in its rechoke pulse (every 10 s), so a
 *    transfer with Transmission on either side starts up to 10 s after the
 *    connection; budget about 10 s per transfer in test timeouts. Its upload
 *    to WebTorrent then ramps up slowly (4 MiB took about 11 s).
 * 8. Its status line is redrawn with printf and no fflush: on a pipe it comes
 *    in 4 KiB blocks, seconds late; stdbuf -o0 fixes that. Completion shows as
 *    "Seeding, ..." and, on stderr, 'State changed from "Incomplete" to
 *    "Complete"'. A fresh leecher sent event=stopped before event=started
 *    to the tracker stub (it adds the torrent paused, then starts it).
 *
 * Settings: settings.json in a fresh -g folder turns DHT, LPD, PEX (unless
 * asked), uTP, port forwarding, RPC, blocklists, queues, speed and ratio
 * limits off and binds the peer socket to `host` (127.0.0.1 or the
 * namespace's address) and ::1. Trackers and web seeds of the torrent must be
 * on loopback or in the test network (checked before start).
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMetainfo, type Metainfo } from '../../src/codec/metainfo.js';
import { verifyPieces } from '../../src/files/verify-pieces.js';
import type { NetnsHost } from './netns.js';
import { assertLocalEndpoint, freePort, lineSplitter, spawnManaged, waitUntil, withTimeout, type ManagedProcess } from './proc.js';

export type TransmissionStatus =
  | { readonly kind: 'waiting-verify'; readonly line: string }
  | { readonly kind: 'verifying'; readonly percent: number; readonly validPercent: number; readonly line: string }
  | {
      readonly kind: 'downloading';
      readonly percent: number;
      /** Peers we are downloading from, and peers connected at all. */
      readonly peersSending: number;
      readonly peersConnected: number;
      readonly line: string;
    }
  | { readonly kind: 'seeding'; readonly peersGetting: number; readonly peersConnected: number; readonly line: string }
  | { readonly kind: 'other'; readonly line: string };

/** Parses one status line of transmission-cli 3.00 (cli.c getStatusStr). */
export function parseTransmissionStatus(line: string): TransmissionStatus {
  let m: RegExpExecArray | null;
  if ((m = /^Verifying local files \(([\d.]+)%, ([\d.]+)% valid\)/.exec(line))) {
    return { kind: 'verifying', percent: Number(m[1]), validPercent: Number(m[2]), line };
  }
  if (/^Waiting to verify local files/.test(line)) return { kind: 'waiting-verify', line };
  if ((m = /^Progress: ([\d.]+)%, dl from (\d+) of (\d+) peers/.exec(line))) {
    return { kind: 'downloading', percent: Number(m[1]), peersSending: Number(m[2]), peersConnected: Number(m[3]), line };
  }
  if ((m = /^Seeding, uploading to (\d+) of (\d+) peer/.exec(line))) {
    return { kind: 'seeding', peersGetting: Number(m[1]), peersConnected: Number(m[2]), line };
  }
  return { kind: 'other', line };
}

export interface TransmissionOptions {
  /** 'seed': verify the existing data in `dir` (-v) and seed it; 'leech': download into `dir`. */
  readonly mode: 'seed' | 'leech';
  /** A .torrent file, or a magnet link (leech only). */
  readonly torrent: string;
  /** Data folder (-w): where the seeder's data is, or where the leecher writes. Created if missing. */
  readonly dir: string;
  /** Peer port. Default: a free port on `host`, or 51413 inside a namespace. */
  readonly port?: number;
  /** Address the peer socket binds (bind-address-ipv4). Default 127.0.0.1, or the namespace's address. */
  readonly host?: string;
  /** Run inside this network namespace (see netns.ts): needed for Transmission to dial tracker-given peers. */
  readonly netns?: NetnsHost;
  /** Addresses besides loopback that the torrent's trackers may be at (a test network's addresses). */
  readonly allowedHosts?: readonly string[];
  /** Config folder (-g), written fresh. Default: a new temporary folder, removed by stop(). */
  readonly configDir?: string;
  /** ut_pex. Default false. */
  readonly pex?: boolean;
  /** MSE/PE: 'tolerated' (plaintext preferred, the default: WebTorrent has no MSE), 'preferred', 'required'. */
  readonly encryption?: 'tolerated' | 'preferred' | 'required';
  /** Verify existing data first (-v). Default: true when seeding, false when leeching. */
  readonly verify?: boolean;
  /**
   * Log level on stderr: 0 none, 1 errors, 2 info, 3 debug. Default 3: in the
   * Debian build that adds only a few lines, e.g. "Got 1 peers from tracker".
   */
  readonly messageLevel?: number;
  /** Extra settings.json keys, applied last. */
  readonly settings?: Readonly<Record<string, unknown>>;
  /** Append Transmission's stdout and stderr here. */
  readonly logFile?: string;
  /** How long to wait for the first status line. Default 15 s. */
  readonly startTimeoutMs?: number;
}

export interface TransmissionHandle {
  readonly pid: number;
  /** The address and port peers reach it at. */
  readonly host: string;
  readonly port: number;
  readonly configDir: string;
  readonly dir: string;
  readonly process: ManagedProcess;
  /** The last status line, parsed. */
  readonly status: TransmissionStatus | undefined;
  /** Recent distinct lines of stdout and stderr (status lines and the log), for messages. */
  output(): string;
  /** Resolves with the first status satisfying `pred`; rejects on timeout or if Transmission exits. */
  waitForStatus(what: string, timeoutMs: number, pred: (s: TransmissionStatus) => boolean): Promise<TransmissionStatus>;
  /** Verification done and seeding (for a seeder: ready to serve). */
  waitForSeeding(timeoutMs: number): Promise<void>;
  /**
   * Download finished: Transmission says it is seeding, then (unless verify is
   * false) every piece of the data on disk matches the torrent's hashes.
   */
  waitForComplete(timeoutMs: number, opts?: { verify?: boolean }): Promise<void>;
  /** The torrent's metainfo (from the .torrent given, or the copy Transmission saved after a magnet's metadata arrived). */
  metainfo(): Metainfo | undefined;
  /**
   * SIGINT (Transmission then sends `stopped` to its trackers), SIGKILL of its
   * process group after 4 s; removes the config folder if the harness made it.
   * Idempotent.
   */
  stop(): Promise<void>;
}

/** Writes a settings.json with every discovery and port-mapping feature off. */
export function transmissionSettings(o: { host: string; port: number; pex: boolean; encryption: 0 | 1 | 2; messageLevel: number }): Record<string, unknown> {
  return {
    'dht-enabled': false,
    'lpd-enabled': false,
    'pex-enabled': o.pex,
    'utp-enabled': false,
    'port-forwarding-enabled': false,
    'bind-address-ipv4': o.host,
    'bind-address-ipv6': '::1',
    'peer-port': o.port,
    'peer-port-random-on-start': false,
    'rpc-enabled': false,
    'blocklist-enabled': false,
    'watch-dir-enabled': false,
    'incomplete-dir-enabled': false,
    'encryption': o.encryption,
    'speed-limit-up-enabled': false,
    'speed-limit-down-enabled': false,
    'alt-speed-enabled': false,
    'alt-speed-time-enabled': false,
    'ratio-limit-enabled': false,
    'idle-seeding-limit-enabled': false,
    'download-queue-enabled': false,
    'seed-queue-enabled': false,
    'queue-stalled-enabled': false,
    'start-added-torrents': true,
    'scrape-paused-torrents-enabled': false,
    'message-level': o.messageLevel,
  };
}

function trackersOf(torrent: string): string[] {
  if (torrent.startsWith('magnet:')) {
    const q = new URLSearchParams(torrent.slice(torrent.indexOf('?') + 1));
    return [...q.getAll('tr'), ...q.getAll('ws'), ...q.getAll('xs').filter((x) => /^[a-z]+:\/\//i.test(x))];
  }
  const m = parseMetainfo(readFileSync(torrent));
  return [...m.announceList.flat(), ...m.urlList];
}

export async function startTransmission(opts: TransmissionOptions): Promise<TransmissionHandle> {
  const host = opts.host ?? opts.netns?.address ?? '127.0.0.1';
  const allowed = [...(opts.allowedHosts ?? []), ...(opts.netns ? [opts.netns.address] : [])];
  for (const url of trackersOf(opts.torrent)) assertLocalEndpoint('Transmission tracker', url, allowed);
  if (opts.mode === 'seed' && opts.torrent.startsWith('magnet:')) throw new Error('a Transmission seeder needs a .torrent file');
  const port = opts.port ?? (opts.netns ? 51413 : await freePort(host));
  const configDir = opts.configDir ?? mkdtempSync(join(tmpdir(), 'peerkit-transmission-'));
  mkdirSync(configDir, { recursive: true });
  mkdirSync(opts.dir, { recursive: true });
  const encryption = { tolerated: 0, preferred: 1, required: 2 } as const;
  const enc = opts.encryption ?? 'tolerated';
  writeFileSync(
    join(configDir, 'settings.json'),
    JSON.stringify({ ...transmissionSettings({ host, port, pex: opts.pex ?? false, encryption: encryption[enc], messageLevel: opts.messageLevel ?? 3 }), ...opts.settings }, null, 2),
  );

  let status: TransmissionStatus | undefined;
  const waiters = new Set<() => void>();
  // Status lines repeat five times a second: keep each distinct line once, with the log lines.
  const history: string[] = [];
  const remember = (line: string): void => {
    if (history[history.length - 1] === line) return;
    history.push(line);
    if (history.length > 300) history.splice(0, history.length - 200);
  };
  const onLine = lineSplitter((line) => {
    remember(line);
    const s = parseTransmissionStatus(line);
    if (s.kind === 'other') return;
    status = s;
    for (const w of waiters) w();
  });
  const verify = opts.verify ?? opts.mode === 'seed';
  const args = [
    '-g', configDir,
    '-w', opts.dir,
    '-p', String(port),
    '-M', '-D', '-U',
    { tolerated: '-et', preferred: '-ep', required: '-er' }[enc],
    ...(verify ? ['-v'] : []),
    opts.torrent,
  ];
  // transmission-cli redraws its status line with printf and no fflush: on a pipe it
  // would reach us in 4 KiB blocks, seconds late. stdbuf -o0 makes stdout unbuffered.
  const proc = spawnManaged(
    'stdbuf',
    ['-o0', 'transmission-cli', ...args],
    { onStdout: onLine, onStderr: lineSplitter(remember), logFile: opts.logFile },
    opts.netns?.prefix ?? [],
  );

  const fail = (what: string): Error => {
    const e = proc.exitInfo;
    const how = e ? `transmission-cli exited (code ${e.code}, signal ${e.signal})` : 'transmission-cli still running';
    return new Error(`${what}: ${how}; last output:\n${history.slice(-40).join('\n')}`);
  };

  const waitForStatus = async (what: string, timeoutMs: number, pred: (s: TransmissionStatus) => boolean): Promise<TransmissionStatus> => {
    if (status && pred(status)) return status;
    let done!: (s: TransmissionStatus) => void;
    const got = new Promise<TransmissionStatus>((resolve) => (done = resolve));
    const waiter = (): void => {
      if (status && pred(status)) done(status);
    };
    waiters.add(waiter);
    try {
      return await withTimeout(
        `Transmission: ${what}`,
        timeoutMs,
        Promise.race([
          got,
          proc.exited.then(() => {
            throw fail(`Transmission: ${what}`);
          }),
        ]),
      );
    } catch (e) {
      throw (e as Error).message.startsWith('timed out') ? fail((e as Error).message) : e;
    } finally {
      waiters.delete(waiter);
    }
  };

  const metainfo = (): Metainfo | undefined => {
    if (!opts.torrent.startsWith('magnet:')) return parseMetainfo(readFileSync(opts.torrent));
    try {
      const saved = readdirSync(join(configDir, 'torrents')).find((f) => f.endsWith('.torrent'));
      return saved ? parseMetainfo(readFileSync(join(configDir, 'torrents', saved))) : undefined;
    } catch {
      return undefined;
    }
  };

  const handle: TransmissionHandle = {
    pid: proc.pid,
    host,
    port,
    configDir,
    dir: opts.dir,
    process: proc,
    get status() {
      return status;
    },
    output: () => history.join('\n'),
    waitForStatus,
    async waitForSeeding(timeoutMs) {
      await waitForStatus('seeding', timeoutMs, (s) => s.kind === 'seeding');
    },
    async waitForComplete(timeoutMs, o = {}) {
      const deadline = Date.now() + timeoutMs;
      await waitForStatus('download complete (seeding)', timeoutMs, (s) => s.kind === 'seeding');
      if (o.verify === false) return;
      let last = '';
      await waitUntil('the downloaded data to match every piece hash', Math.max(1, deadline - Date.now()), async () => {
        const m = metainfo();
        if (!m) return false;
        const r = await verifyPieces(opts.dir, m);
        last = `${r.validCount}/${r.pieceCount} pieces valid`;
        return r.validCount === r.pieceCount;
      }, 200).catch((e: Error) => {
        throw fail(`${e.message} (${last})`);
      });
    },
    metainfo,
    async stop() {
      await proc.stop('SIGINT', 4000);
      if (!opts.configDir) rmSync(configDir, { recursive: true, force: true });
    },
  };

  try {
    await waitForStatus('its first status line', opts.startTimeoutMs ?? 15_000, () => true);
  } catch (e) {
    await handle.stop();
    throw e;
  }
  return handle;
}
