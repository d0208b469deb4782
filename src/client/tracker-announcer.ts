/**
 * Announcing one torrent to its trackers: the I/O side of the pure
 * TrackerTiers schedule. HTTP(S) trackers are asked with a GET (BEP 3,
 * compact BEP 23, IPv6 BEP 7); UDP trackers through the sans-I/O
 * UdpTrackerClient (BEP 15) on a datagram socket of the runtime, each
 * announce carrying the URL's path and query as BEP 41 URLData (so a
 * private tracker's passkey in a udp:// URL reaches it). Peers found
 * are handed to `onPeers`; each tracker's last status is kept for display.
 *
 * Tracker host names come from the torrent or magnet link the user gave; a
 * UDP tracker named by host is resolved with the system resolver just before
 * it is used. Nothing else is ever contacted.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { buildAnnounceUrl, buildScrapeUrl, decodeAnnounceResponse, decodeScrapeResponse, type AnnounceEvent } from '../codec/tracker-http.js';
import { TrackerTiers, type AnnounceAttempt } from '../core/tracker-tiers.js';
import { UdpTrackerClient, type UdpTrackerEvent } from '../core/udp-tracker-client.js';
import { driveDatagramCore, type DriveHandle } from '../runtime/drive.js';
import type { DatagramSocket, Endpoint, Runtime, TimerHandle } from '../runtime/contract.js';

/** Fetches a URL and returns the body; rejects on timeout, HTTP error or a body over `maxBytes`. */
export type HttpGet = (url: string, opts: { timeoutMs: number; maxBytes: number }) => Promise<Buffer>;

export const nodeHttpGet: HttpGet = (url, { timeoutMs, maxBytes }) =>
  new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = get(url, { method: 'GET', headers: { 'user-agent': 'peerkit', 'accept-encoding': 'identity' }, timeout: timeoutMs }, (res: IncomingMessage) => {
      if ((res.statusCode ?? 0) >= 400) {
        res.resume();
        reject(new Error(`HTTP ${res.statusCode}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          req.destroy(new Error(`response larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });

export interface TransferTotals {
  readonly uploaded: number;
  readonly downloaded: number;
  readonly left: number;
}

export interface TrackerStatus {
  readonly url: string;
  readonly tier: number;
  lastAnnounceAt: number | undefined;
  lastResult: 'ok' | 'error' | undefined;
  message: string | undefined;
  seeders: number | undefined;
  leechers: number | undefined;
  peersReceived: number;
}

/** One tracker's answer to a scrape (BEP 48 over HTTP, BEP 15 over UDP). */
export interface ScrapeOutcome {
  readonly url: string;
  readonly seeders?: number;
  readonly leechers?: number;
  /** Completed downloads the tracker counted. */
  readonly completed?: number;
  /** Why there is no answer (refused, no scrape URL, timeout, ...). */
  readonly error?: string;
}

export interface TrackerAnnouncerOptions {
  readonly runtime: Runtime;
  readonly tiers: readonly (readonly string[])[];
  readonly infoHash: Uint8Array;
  readonly peerId: Uint8Array;
  /** Our listening port. */
  readonly port: number;
  readonly totals: () => TransferTotals;
  readonly onPeers: (peers: readonly Endpoint[], url: string) => void;
  readonly onError?: (url: string, message: string) => void;
  readonly numWant?: number;
  readonly httpGet?: HttpGet;
  readonly httpTimeoutMs?: number;
  /** BEP 15 retransmission base (ms); 15 000 by the spec, lower in tests. */
  readonly udpRetransmitBaseMs?: number;
  readonly udpMaxRetransmitExponent?: number;
  /** TrackerTiers timing, in ms (see there). */
  readonly minIntervalFloorMs?: number;
  readonly backoffBaseMs?: number;
}

const MAX_TRACKER_RESPONSE = 1024 * 1024;

/**
 * BEP 41 URLData of a udp:// announce URL: its path and query (for example
 * `/announce/<passkey>` or `/announce?passkey=...`, which private trackers
 * read the passkey from), as bytes. Undefined when there is none, or when it
 * is longer than 1024 bytes (a tracker would drop the datagram).
 */
export function udpUrlData(url: string): Uint8Array | undefined {
  const m = /^udp:\/\/(?:\[[^\]]+\]|[^:/?#]+):\d{1,5}([/?][^#]*)?/i.exec(url);
  const rest = m?.[1];
  if (rest === undefined || rest === '' || rest === '/') return undefined;
  const bytes = new TextEncoder().encode(rest);
  return bytes.length <= 1024 ? bytes : undefined;
}

export class TrackerAnnouncer {
  private readonly tiers: TrackerTiers;
  private readonly key: number;
  private timer: TimerHandle | undefined;
  private closed = false;
  private udp: { socket: DatagramSocket; client: UdpTrackerClient; drive: DriveHandle } | undefined;
  private udpWaiters = new Map<number, (e: UdpTrackerEvent) => void>();
  private trackerId = new Map<string, Uint8Array>();
  private readonly status = new Map<string, TrackerStatus>();
  private stopDone: (() => void) | undefined;

  constructor(private readonly o: TrackerAnnouncerOptions) {
    this.tiers = new TrackerTiers(o.tiers, {
      random: o.runtime.random,
      minIntervalFloorMs: o.minIntervalFloorMs,
      backoffBaseMs: o.backoffBaseMs,
    });
    this.key = o.runtime.random.u32();
    this.tiers.tiers.forEach((tier, t) =>
      tier.forEach((url) => this.status.set(url, { url, tier: t, lastAnnounceAt: undefined, lastResult: undefined, message: undefined, seeders: undefined, leechers: undefined, peersReceived: 0 })),
    );
  }

  get trackers(): readonly TrackerStatus[] {
    return [...this.status.values()];
  }

  get hasTrackers(): boolean {
    return this.status.size > 0;
  }

  start(): void {
    if (!this.hasTrackers) return;
    this.tiers.start(this.o.runtime.clock.now());
    this.schedule();
  }

  /** The download finished: announce `completed`. */
  complete(): void {
    this.tiers.complete(this.o.runtime.clock.now());
    this.schedule();
  }

  /** Ask for more peers now (respecting the tracker's min interval). */
  reannounce(): void {
    this.tiers.reannounce(this.o.runtime.clock.now());
    this.schedule();
  }

  /** Sends `stopped` (best effort, bounded by `timeoutMs`) and releases everything. */
  async stop(timeoutMs = 3000): Promise<void> {
    if (this.closed) return;
    if (this.tiers.state === 'running') {
      this.tiers.stop(this.o.runtime.clock.now());
      const done = new Promise<void>((r) => (this.stopDone = r));
      this.schedule();
      if ((this.tiers.state as string) !== 'stopped') {
        let t: TimerHandle | undefined;
        await Promise.race([done, new Promise<void>((r) => (t = this.o.runtime.timers.at(this.o.runtime.clock.now() + timeoutMs, r)))]);
        t?.cancel();
      }
    }
    this.close();
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
    this.udp?.drive.stop();
    this.udp?.socket.close();
    this.udp = undefined;
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.tiers.state === 'stopped') {
      this.stopDone?.();
      return;
    }
    const at = this.tiers.nextAnnounceAt();
    this.timer?.cancel();
    this.timer = at === undefined ? undefined : this.o.runtime.timers.at(at, () => this.fire());
  }

  private fire(): void {
    this.timer = undefined;
    if (this.closed) return;
    const attempt = this.tiers.poll(this.o.runtime.clock.now());
    if (!attempt) {
      this.schedule();
      return;
    }
    void this.perform(attempt).then(
      (r) => {
        if (this.closed) return;
        this.tiers.succeeded(this.o.runtime.clock.now(), attempt.attempt, { interval: r.interval, minInterval: r.minInterval });
        this.schedule();
      },
      (e: unknown) => {
        if (this.closed) return;
        const message = e instanceof Error ? e.message : String(e);
        const st = this.status.get(attempt.url);
        if (st) {
          st.lastAnnounceAt = this.o.runtime.clock.now();
          st.lastResult = 'error';
          st.message = message;
        }
        if (attempt.event !== 'stopped') this.o.onError?.(attempt.url, message);
        this.tiers.failed(this.o.runtime.clock.now(), attempt.attempt);
        this.schedule();
      },
    );
  }

  private async perform(a: AnnounceAttempt): Promise<{ interval: number; minInterval?: number | undefined }> {
    const totals = this.o.totals();
    const numWant = a.event === 'stopped' ? 0 : (this.o.numWant ?? 50);
    const common = {
      infoHash: this.o.infoHash,
      peerId: this.o.peerId,
      port: this.o.port,
      uploaded: totals.uploaded,
      downloaded: totals.downloaded,
      left: totals.left,
      numWant,
      key: this.key,
    };
    let result: { interval: number; minInterval?: number | undefined; peers: readonly Endpoint[]; seeders?: number | undefined; leechers?: number | undefined };
    if (/^https?:\/\//i.test(a.url)) result = await this.announceHttp(a.url, { ...common, event: a.event });
    else if (/^udp:\/\//i.test(a.url)) result = await this.announceUdp(a.url, { ...common, event: a.event });
    else throw new Error('unsupported tracker scheme');
    const st = this.status.get(a.url);
    if (st) {
      st.lastAnnounceAt = this.o.runtime.clock.now();
      st.lastResult = 'ok';
      st.message = undefined;
      st.seeders = result.seeders;
      st.leechers = result.leechers;
      st.peersReceived += result.peers.length;
    }
    if (result.peers.length > 0 && !this.closed) this.o.onPeers(result.peers, a.url);
    return result;
  }

  private async announceHttp(url: string, p: { event: AnnounceEvent | undefined } & Omit<Parameters<typeof buildAnnounceUrl>[1], 'event'>) {
    const get = this.o.httpGet ?? nodeHttpGet;
    const trackerId = this.trackerId.get(url);
    const full = buildAnnounceUrl(url, { ...p, compact: true, trackerId });
    const body = await get(full, { timeoutMs: this.o.httpTimeoutMs ?? 15_000, maxBytes: MAX_TRACKER_RESPONSE });
    const res = decodeAnnounceResponse(body);
    if (res.failureReason !== undefined) throw new Error(`tracker refused: ${res.failureReason}`);
    if (res.trackerId) this.trackerId.set(url, res.trackerId);
    return { interval: res.interval, minInterval: res.minInterval, peers: res.peers, seeders: res.complete, leechers: res.incomplete };
  }

  /**
   * Asks every tracker of every tier, at once, how many seeders and leechers
   * the torrent has (scrape). Independent of announcing; each tracker's
   * failure is reported in its own outcome, a tracker silent for `timeoutMs`
   * as 'no answer'.
   */
  async scrape(timeoutMs = 15_000): Promise<ScrapeOutcome[]> {
    const rt = this.o.runtime;
    return Promise.all(
      [...this.status.keys()].map(async (url): Promise<ScrapeOutcome> => {
        let timer: TimerHandle | undefined;
        const late = new Promise<ScrapeOutcome>((resolve) => (timer = rt.timers.at(rt.clock.now() + timeoutMs, () => resolve({ url, error: 'no answer' }))));
        const outcome = await Promise.race([this.scrapeOne(url), late]);
        timer?.cancel();
        return outcome;
      }),
    );
  }

  private async scrapeOne(url: string): Promise<ScrapeOutcome> {
    {
      {
        try {
          if (/^https?:\/\//i.test(url)) {
            const get = this.o.httpGet ?? nodeHttpGet;
            const body = await get(buildScrapeUrl(url, [this.o.infoHash]), { timeoutMs: this.o.httpTimeoutMs ?? 15_000, maxBytes: MAX_TRACKER_RESPONSE });
            const res = decodeScrapeResponse(body);
            if (res.failureReason !== undefined) return { url, error: `tracker refused: ${res.failureReason}` };
            const f = res.files.find((x) => x.infoHash.equals(this.o.infoHash));
            return f ? { url, seeders: f.complete, leechers: f.incomplete, completed: f.downloaded } : { url, seeders: 0, leechers: 0, completed: 0 };
          }
          if (/^udp:\/\//i.test(url)) {
            const tracker = await this.udpEndpoint(url);
            const udp = await this.ensureUdp(tracker.host.includes(':') ? 6 : 4);
            const id = udp.client.scrape(this.o.runtime.clock.now(), tracker, [this.o.infoHash]);
            const event = await new Promise<UdpTrackerEvent>((resolve) => {
              this.udpWaiters.set(id, resolve);
              udp.drive.poke();
            });
            if (event.type === 'scraped') {
              const f = event.files[0];
              return { url, seeders: f?.seeders ?? 0, leechers: f?.leechers ?? 0, completed: f?.completed ?? 0 };
            }
            return { url, error: event.type === 'error' ? `tracker refused: ${event.message}` : 'no answer' };
          }
          return { url, error: 'unsupported tracker scheme' };
        } catch (e) {
          return { url, error: (e as Error).message };
        }
      }
    }
  }

  private async udpEndpoint(url: string): Promise<Endpoint> {
    const m = /^udp:\/\/(\[[^\]]+\]|[^:/]+):(\d{1,5})(?:[/?].*)?$/i.exec(url);
    if (!m) throw new Error('bad udp tracker URL');
    const host = m[1]!.replace(/^\[|\]$/g, '');
    const port = Number(m[2]);
    if (port < 1 || port > 65535) throw new Error('bad port');
    if (isIP(host)) return { host, port };
    const { address } = await lookup(host);
    return { host: address, port };
  }

  /**
   * The one UDP socket and client, made on first use. Concurrent callers share
   * the one being made: request ids are per client, and the waiters are keyed
   * by id, so a second client would mix up their answers.
   */
  private ensureUdp(family: 4 | 6): Promise<NonNullable<TrackerAnnouncer['udp']>> {
    if (this.udp) return Promise.resolve(this.udp);
    this.udpMaking ??= this.makeUdp(family).finally(() => (this.udpMaking = undefined));
    return this.udpMaking;
  }

  private udpMaking: Promise<NonNullable<TrackerAnnouncer['udp']>> | undefined;

  private async makeUdp(family: 4 | 6): Promise<NonNullable<TrackerAnnouncer['udp']>> {
    const socket = await this.o.runtime.bindDatagram({ host: family === 6 ? '::' : '0.0.0.0' }).catch(() => this.o.runtime.bindDatagram());
    const client = new UdpTrackerClient({
      random: this.o.runtime.random,
      retransmitBaseMs: this.o.udpRetransmitBaseMs,
      maxRetransmitExponent: this.o.udpMaxRetransmitExponent,
    });
    const drive = driveDatagramCore(this.o.runtime, socket, client, (e) => {
      const w = this.udpWaiters.get(e.id);
      if (w) {
        this.udpWaiters.delete(e.id);
        w(e);
      }
    });
    if (this.closed) {
      drive.stop();
      socket.close();
      throw new Error('closed');
    }
    this.udp = { socket, client, drive };
    return this.udp;
  }

  private async announceUdp(url: string, p: Parameters<UdpTrackerClient['announce']>[2]) {
    const tracker = await this.udpEndpoint(url);
    const udp = await this.ensureUdp(tracker.host.includes(':') ? 6 : 4);
    const urlData = udpUrlData(url);
    const id = udp.client.announce(this.o.runtime.clock.now(), tracker, urlData === undefined ? p : { ...p, urlData });
    const event = await new Promise<UdpTrackerEvent>((resolve) => {
      this.udpWaiters.set(id, resolve);
      udp.drive.poke();
    });
    if (event.type === 'announced') return { interval: event.interval, peers: event.peers, seeders: event.seeders, leechers: event.leechers };
    if (event.type === 'error') throw new Error(`tracker refused: ${event.message}`);
    throw new Error(event.type === 'timeout' ? 'no answer' : 'unexpected answer');
  }
}
