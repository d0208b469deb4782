/**
 * TEST STUB, not a tracker: an HTTP server that answers every /announce with
 * the same compact (BEP 23) peer list, the endpoints a test gives it. It lets
 * a harness self-test hand Transmission a peer (transmission-cli cannot be
 * told one on its command line) without depending on the project's tracker
 * (src/tracker) or on opentracker, which CI does not install. It records the
 * announces it saw. IPv4 peers only.
 */
import { createServer, type Server } from 'node:http';
import { isIPv4 } from 'node:net';

export interface StubAnnounce {
  readonly infoHashHex: string;
  readonly port: number;
  readonly event: string | undefined;
  readonly left: number | undefined;
  readonly from: string;
}

export interface TrackerStub {
  /** http://HOST:PORT/announce */
  readonly announceUrl: string;
  readonly announces: readonly StubAnnounce[];
  /** Replaces the peers every announce gets. */
  setPeers(peers: readonly { host: string; port: number }[]): void;
  close(): Promise<void>;
  /** The same as close(). */
  stop(): Promise<void>;
}

/** The info_hash query parameter is percent-encoded binary: decode it by hand, not as UTF-8. */
function rawParam(query: string, key: string): Buffer | undefined {
  for (const part of query.split('&')) {
    const [k, v = ''] = part.split('=');
    if (k !== key) continue;
    const bytes: number[] = [];
    for (let i = 0; i < v.length; i++) {
      if (v[i] === '%' && i + 2 < v.length && /^[0-9a-f]{2}$/i.test(v.slice(i + 1, i + 3))) {
        bytes.push(parseInt(v.slice(i + 1, i + 3), 16));
        i += 2;
      } else bytes.push(v.charCodeAt(i) & 0xff);
    }
    return Buffer.from(bytes);
  }
  return undefined;
}

export async function startTrackerStub(opts: { host?: string; port?: number; peers?: readonly { host: string; port: number }[]; interval?: number } = {}): Promise<TrackerStub> {
  const host = opts.host ?? '127.0.0.1';
  let peers = [...(opts.peers ?? [])];
  const announces: StubAnnounce[] = [];
  const server: Server = createServer((req, res) => {
    const [path = '', query = ''] = (req.url ?? '').split('?');
    if (path !== '/announce') {
      res.writeHead(404).end();
      return;
    }
    const q = new URLSearchParams(query);
    const left = q.get('left');
    announces.push({
      infoHashHex: rawParam(query, 'info_hash')?.toString('hex') ?? '',
      port: Number(q.get('port')),
      event: q.get('event') ?? undefined,
      left: left === null ? undefined : Number(left),
      from: req.socket.remoteAddress ?? '',
    });
    const compact = Buffer.concat(
      peers.filter((p) => isIPv4(p.host)).map((p) => {
        const b = Buffer.alloc(6);
        p.host.split('.').forEach((octet, i) => b.writeUInt8(Number(octet), i));
        b.writeUInt16BE(p.port, 4);
        return b;
      }),
    );
    const interval = opts.interval ?? 30;
    // Keys in byte order, as bencode wants.
    const body = Buffer.concat([
      Buffer.from(`d8:completei0e10:incompletei0e8:intervali${interval}e12:min intervali${interval}e5:peers${compact.length}:`, 'latin1'),
      compact,
      Buffer.from('e', 'latin1'),
    ]);
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length }).end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  };
  return {
    announceUrl: `http://${host.includes(':') ? `[${host}]` : host}:${port}/announce`,
    announces,
    setPeers(p) {
      peers = [...p];
    },
    close,
    stop: close,
  };
}
