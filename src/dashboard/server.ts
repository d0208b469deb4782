/**
 * The dashboard's HTTP server (node:http). It serves the page and its
 * assets (uPlot's files from the installed package), a Server-Sent Events
 * stream with the sources' state once a tick, the JSON API, CSV exports
 * and Prometheus metrics.
 *
 * Ticks keep a fixed cadence (start + n x intervalMs, so a late tick does
 * not delay the ones after it). The sources' state and tables are read
 * together into a snapshot at most once a tick, when first needed (the
 * event stream, /api/state or a CSV): what the page shows, the JSON and the
 * CSVs of one tick agree, and say which snapshot they are (`t`, and the
 * X-Peerkit-Snapshot header). /metrics is read afresh on every scrape, with
 * the process's `process_*` families once. Besides the snapshot, the only
 * thing kept is the charts' bounded history.
 *
 *     const d = await startDashboard({ port: 8080, sources: [new ClientSource('client', client)] });
 *     console.log(d.url);
 *     ...
 *     await d.close();
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { isProcessMetric, processMetricFamilies } from '../metrics/process.js';
import { mergeFamilies, PROMETHEUS_CONTENT_TYPE, renderPrometheus } from '../metrics/prometheus.js';
import { checkBind, isLoopbackHostHeader, requestToken, tokenMatches } from './access.js';
import { APP_CSS, APP_JS, pageHtml } from './assets.js';
import { toCsv } from './csv.js';
import { History, type Sample } from './history.js';
import type { Cell, DashboardSource, JsonValue, Table } from './source.js';

export interface DashboardOptions {
  /** Address to bind: an IP literal or localhost. Default 127.0.0.1; anything but loopback needs `token`. */
  readonly host?: string;
  /** Port; 0 for any free one. Default 0. */
  readonly port?: number;
  /** Access token (16-256 URL-safe characters); when set, every request must carry it. */
  readonly token?: string;
  readonly sources?: readonly DashboardSource[];
  /** Tick: how often the page is updated and the charts sampled. Default 1000 ms. */
  readonly intervalMs?: number;
  /** Ticks of chart history kept. Default 600. */
  readonly historyLength?: number;
  /** Event streams open at once at most. Default 16. */
  readonly maxStreams?: number;
}

export interface DashboardHandle {
  /** The page's URL, with `?token=` when a token is set. */
  readonly url: string;
  /** The URL without the token. */
  readonly baseUrl: string;
  readonly host: string;
  readonly port: number;
  addSource(source: DashboardSource): void;
  removeSource(id: string): boolean;
  readonly sources: readonly DashboardSource[];
  close(): Promise<void>;
}

const MAX_SOURCES = 128;
const MAX_STREAM_BACKLOG = 1 << 20;

const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cache-Control': 'no-store',
};

let uplotAssets: { js: string; css: string } | undefined;
function uplot(): { js: string; css: string } {
  if (!uplotAssets) {
    const require = createRequire(import.meta.url);
    uplotAssets = {
      js: readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8'),
      css: readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8'),
    };
  }
  return uplotAssets;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export async function startDashboard(options: DashboardOptions = {}): Promise<DashboardHandle> {
  const host = options.host ?? '127.0.0.1';
  const token = options.token;
  checkBind(host, token);
  const intervalMs = options.intervalMs ?? 1000;
  if (!(intervalMs >= 50)) throw new RangeError('intervalMs must be >= 50');
  const maxStreams = options.maxStreams ?? 16;
  const history = new History(options.historyLength ?? 600);
  const sources: DashboardSource[] = [];
  const streams = new Set<ServerResponse>();
  const sockets = new Set<Socket>();

  /** The sources' state and tables, read together; dropped every tick and whenever the sources change. */
  interface Snapshot {
    readonly t: number;
    readonly states: { id: string; kind: string; state: JsonValue }[];
    readonly tables: { id: string; tables: Readonly<Record<string, Table>> }[];
  }
  let snap: Snapshot | undefined;

  const addSource = (s: DashboardSource): void => {
    if (sources.some((x) => x.id === s.id)) throw new Error(`a dashboard source with id "${s.id}" is already there`);
    if (sources.length >= MAX_SOURCES) throw new Error(`a dashboard has at most ${MAX_SOURCES} sources`);
    sources.push(s);
    snap = undefined;
  };
  for (const s of options.sources ?? []) addSource(s);

  const takeSnapshot = (): Snapshot => {
    const t = Date.now() / 1000;
    const states: Snapshot['states'] = [];
    const tables: Snapshot['tables'] = [];
    for (const s of sources) {
      if (s.snapshot) {
        try {
          const both = s.snapshot();
          states.push({ id: s.id, kind: s.kind, state: both.state });
          tables.push({ id: s.id, tables: both.tables });
        } catch (e) {
          states.push({ id: s.id, kind: s.kind, state: { error: errorMessage(e) } });
          tables.push({ id: s.id, tables: {} });
        }
        continue;
      }
      try {
        states.push({ id: s.id, kind: s.kind, state: s.state() });
      } catch (e) {
        states.push({ id: s.id, kind: s.kind, state: { error: errorMessage(e) } });
      }
      try {
        tables.push({ id: s.id, tables: s.tables?.() ?? {} });
      } catch {
        tables.push({ id: s.id, tables: {} }); // a failing source offers no tables
      }
    }
    return { t, states, tables };
  };
  const snapshot = (): Snapshot => (snap ??= takeSnapshot());

  const sample = (): Sample => {
    const charts: Record<string, Record<string, number>> = {};
    for (const s of sources) {
      let values: Readonly<Record<string, number>> | undefined;
      try {
        values = s.series?.();
      } catch {
        values = undefined;
      }
      for (const [chart, v] of Object.entries(values ?? {})) (charts[chart] ??= {})[s.id] = v;
    }
    return { t: Date.now() / 1000, charts };
  };

  const tableNames = (): string[] => {
    const names = new Set<string>();
    for (const { tables } of snapshot().tables) for (const n of Object.keys(tables)) names.add(n);
    return [...names];
  };

  const csv = (name: string): string | undefined => {
    const columns: string[] = ['source'];
    const rows: Cell[][] = [];
    let found = false;
    for (const { id, tables } of snapshot().tables) {
      const table = tables[name];
      if (!table) continue;
      found = true;
      const at = table.columns.map((c) => {
        let i = columns.indexOf(c);
        if (i < 0) i = columns.push(c) - 1;
        return i;
      });
      for (const r of table.rows) {
        const row: Cell[] = [id];
        at.forEach((i, k) => (row[i] = r[k]));
        rows.push(row);
      }
    }
    return found ? toCsv(columns, rows) : undefined;
  };

  const metrics = (): string =>
    renderPrometheus([
      ...mergeFamilies(
        sources.map((s) => {
          try {
            // The process's own figures come once, below, not once per source.
            return { labels: { source: s.id }, families: (s.metrics?.() ?? []).filter((f) => !isProcessMetric(f.name)) };
          } catch {
            return { labels: { source: s.id }, families: [] };
          }
        }),
      ),
      ...processMetricFamilies(),
    ]);

  const send = (req: IncomingMessage, res: ServerResponse, status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}): void => {
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, 'Content-Length': String(bytes.length), ...extra });
    res.end(req.method === 'HEAD' ? undefined : bytes);
  };

  const json = (v: unknown): string => `${JSON.stringify(v)}\n`;

  const openStream = (req: IncomingMessage, res: ServerResponse): void => {
    if (streams.size >= maxStreams) {
      send(req, res, 503, 'text/plain; charset=utf-8', 'too many open event streams\n', { 'Retry-After': '5' });
      return;
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8', 'X-Accel-Buffering': 'no' });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    res.socket?.setNoDelay(true);
    streams.add(res);
    const drop = (): void => {
      streams.delete(res);
    };
    res.on('close', drop);
    res.on('error', drop);
    const now = snapshot();
    res.write(`retry: 2000\n\nevent: hello\ndata: ${JSON.stringify({ intervalMs, historyLength: history.capacity, tables: tableNames(), history: history.toJSON() })}\n\n`);
    res.write(`event: state\ndata: ${JSON.stringify({ t: now.t, sources: now.states, tables: tableNames() })}\n\n`);
  };

  const tick = (): void => {
    snap = undefined;
    const s = sample();
    history.push(s);
    if (streams.size === 0) return;
    const now = snapshot();
    const message = `event: state\ndata: ${JSON.stringify({ t: now.t, sources: now.states, tables: tableNames(), sample: s })}\n\n`;
    for (const res of streams) {
      if (res.writableLength > MAX_STREAM_BACKLOG) {
        // A reader that does not keep up is cut off rather than buffered for without bound.
        res.destroy();
        streams.delete(res);
        continue;
      }
      res.write(message);
    }
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    } catch {
      send(req, res, 400, 'text/plain; charset=utf-8', 'bad request\n');
      return;
    }
    if (token !== undefined) {
      if (!tokenMatches(token, requestToken(req.headers.authorization, url))) {
        send(req, res, 401, 'text/plain; charset=utf-8', 'this dashboard needs its access token (?token= or Authorization: Bearer)\n', { 'WWW-Authenticate': 'Bearer realm="peerkit dashboard"' });
        return;
      }
    } else if (!isLoopbackHostHeader(req.headers.host)) {
      send(req, res, 403, 'text/plain; charset=utf-8', 'this dashboard answers only to a loopback address in the Host header\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(req, res, 405, 'text/plain; charset=utf-8', 'only GET and HEAD\n', { Allow: 'GET, HEAD' });
      return;
    }
    const path = url.pathname;
    if (path === '/' || path === '/index.html') return send(req, res, 200, 'text/html; charset=utf-8', pageHtml(token));
    if (path === '/app.js') return send(req, res, 200, 'text/javascript; charset=utf-8', APP_JS);
    if (path === '/app.css') return send(req, res, 200, 'text/css; charset=utf-8', APP_CSS);
    if (path === '/uPlot.iife.min.js') return send(req, res, 200, 'text/javascript; charset=utf-8', uplot().js);
    if (path === '/uPlot.min.css') return send(req, res, 200, 'text/css; charset=utf-8', uplot().css);
    if (path === '/events') return openStream(req, res);
    if (path === '/api/state') {
      const now = snapshot();
      return send(req, res, 200, 'application/json', json({ t: now.t, sources: now.states }), { 'X-Peerkit-Snapshot': String(now.t) });
    }
    if (path === '/api/history') return send(req, res, 200, 'application/json', json(history.toJSON()));
    if (path === '/api/tables') return send(req, res, 200, 'application/json', json(tableNames()));
    if (path === '/metrics') return send(req, res, 200, PROMETHEUS_CONTENT_TYPE, metrics());
    const m = /^\/([a-z][a-z0-9_]{0,40})\.csv$/.exec(path);
    if (m) {
      const body = csv(m[1]!);
      if (body !== undefined) return send(req, res, 200, 'text/csv; charset=utf-8; header=present', body, { 'Content-Disposition': `attachment; filename="peerkit-${m[1]!}.csv"`, 'X-Peerkit-Snapshot': String(snapshot().t) });
    }
    send(req, res, 404, 'text/plain; charset=utf-8', 'not found\n');
  };

  const server: Server = createServer((req, res) => {
    try {
      handle(req, res);
    } catch (e) {
      if (!res.headersSent) send(req, res, 500, 'text/plain; charset=utf-8', `internal error: ${errorMessage(e)}\n`);
      else res.destroy();
    }
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.maxHeadersCount = 64;
  server.maxConnections = 64;
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('clientError', (_e, socket: Socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: host === 'localhost' ? '127.0.0.1' : host, port: options.port ?? 0 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  const boundHost = host === 'localhost' ? '127.0.0.1' : host;
  // A wildcard bind is reached at loopback from this machine; print that, the user knows their other addresses.
  const shownHost = boundHost === '0.0.0.0' ? '127.0.0.1' : boundHost === '::' ? '::1' : boundHost;
  const baseUrl = `http://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${port}/`;
  const url = token === undefined ? baseUrl : `${baseUrl}?token=${encodeURIComponent(token)}`;

  // A fixed cadence: tick n is due at start + n x intervalMs; one that runs late does not push the others back.
  const started = performance.now();
  let due = 0;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const schedule = (): void => {
    due = Math.max(due + 1, Math.ceil((performance.now() - started) / intervalMs));
    timer = setTimeout(() => {
      if (stopped) return;
      tick();
      schedule();
    }, Math.max(0, started + due * intervalMs - performance.now()));
    timer.unref();
  };
  tick();
  schedule();

  let closing: Promise<void> | undefined;
  return {
    url,
    baseUrl,
    host: boundHost,
    port,
    addSource,
    removeSource(id: string): boolean {
      const i = sources.findIndex((s) => s.id === id);
      if (i < 0) return false;
      sources.splice(i, 1);
      snap = undefined;
      return true;
    },
    get sources(): readonly DashboardSource[] {
      return [...sources];
    },
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        stopped = true;
        clearTimeout(timer);
        for (const res of streams) res.end();
        streams.clear();
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      return closing;
    },
  };
}

