/**
 * The HTTP side of the tracker on node:http: `/announce` and `/scrape` (with
 * an optional passkey, `/announce/<passkey>`, `/<passkey>/announce` or
 * `?passkey=`) answered by the core, `/stats` (JSON) and `/metrics`
 * (Prometheus text) from its counters.
 *
 * Hostile clients: request heads are capped at 8 KiB (431 otherwise), slow
 * ones are cut off (headers in 5 s, the whole request in 10 s, idle
 * keep-alive after 5 s; Node checks these every second, not every 30 s as by
 * default, so a half-sent request holds its socket for 6 s at most),
 * connections are capped in all and per address (an IPv4 address or an IPv6
 * /64, like the rate limiter: one address holding half-sent requests can
 * take only its own share, not lock everyone else out), a request that does
 * not parse as HTTP gets a 400 and a closed connection, any method but GET
 * and HEAD a 405, and bodies are discarded unread. Nothing a client sends
 * can throw out of the handler: an unexpected error is a 500 and a counter.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP, type Socket } from 'node:net';
import { parseIpv6 } from '../codec/ip.js';
import { PROMETHEUS_CONTENT_TYPE, prometheusText, statsJson } from './metrics.js';
import type { TrackerService } from './service.js';

export interface HttpServerOptions {
  readonly host: string;
  readonly port: number;
  /** Open connections at most. Default 8192. */
  readonly maxConnections?: number;
  /** Open connections at most from one IPv4 address or IPv6 /64; more are closed at once. Default 64. */
  readonly maxConnectionsPerAddress?: number;
  /** A request's head must arrive within this. Default 5000 ms. */
  readonly headersTimeoutMs?: number;
  /** A whole request must arrive within this (at least headersTimeoutMs). Default 10 000 ms. */
  readonly requestTimeoutMs?: number;
}

/** The key connections are counted under: the IPv4 address, or the IPv6 /64. */
export function connectionKey(host: string): string {
  if (isIP(host) !== 6) return host;
  const ip = parseIpv6(host);
  return ip === undefined ? host : `${Buffer.from(ip.subarray(0, 8)).toString('hex')}/64`;
}

/** Strips the IPv4-mapped prefix a dual-stack socket reports. */
function remoteHost(socket: Socket): string | undefined {
  const a = socket.remoteAddress;
  if (a === undefined) return undefined;
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

function send(res: ServerResponse, status: number, contentType: string, body: Buffer | string, head: boolean): void {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  res.writeHead(status, { 'content-type': contentType, 'content-length': bytes.length, 'cache-control': 'no-store' });
  res.end(head ? undefined : bytes);
}

function handle(service: TrackerService, req: IncomingMessage, res: ServerResponse): void {
  service.httpRequests++;
  req.resume(); // a GET has no body worth reading; drain whatever came
  try {
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.setHeader('allow', 'GET, HEAD');
      send(res, 405, 'text/plain', 'method not allowed\n', false);
      return;
    }
    const host = remoteHost(req.socket);
    if (host === undefined) {
      res.destroy();
      return;
    }
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    const now = service.now();
    if (path === '/stats' || path === '/metrics') {
      if (!service.core.admit(now, host)) {
        send(res, 429, 'text/plain', 'rate limit exceeded\n', head);
        return;
      }
      const stats = service.stats();
      if (path === '/stats') send(res, 200, 'application/json', statsJson(stats), head);
      else send(res, 200, PROMETHEUS_CONTENT_TYPE, prometheusText(stats), head);
      return;
    }
    const reply = service.core.handleHttp(now, { host, port: req.socket.remotePort ?? 0 }, target);
    service.afterInput(); // persist accounting before answering
    send(res, reply.status, reply.contentType, reply.body, head);
  } catch (error) {
    service.fault(error);
    if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n', false);
    else res.destroy();
  }
}

/** Starts listening; resolves once bound (port 0: any free port, see `server.address()`). */
export function listenHttp(service: TrackerService, options: HttpServerOptions): Promise<Server> {
  const headersTimeout = options.headersTimeoutMs ?? 5_000;
  const requestTimeout = Math.max(headersTimeout, options.requestTimeoutMs ?? 10_000);
  const server = createServer(
    {
      maxHeaderSize: 8192,
      requestTimeout,
      headersTimeout,
      keepAliveTimeout: 5_000,
      // How often Node looks for connections past headersTimeout/requestTimeout (default 30 s).
      connectionsCheckingInterval: Math.min(1000, headersTimeout),
      noDelay: true,
    },
    (req, res) => handle(service, req, res),
  );
  server.maxConnections = options.maxConnections ?? 8192;
  // Open connections per address. An entry lives only while its address has a connection
  // open, so the map holds at most maxConnections entries.
  const perAddress = options.maxConnectionsPerAddress ?? 64;
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const host = remoteHost(socket);
    if (host === undefined) {
      socket.destroy();
      return;
    }
    const key = connectionKey(host);
    const n = open.get(key) ?? 0;
    if (n >= perAddress) {
      service.httpConnectionsRefused++;
      socket.destroy();
      return;
    }
    open.set(key, n + 1);
    socket.once('close', () => {
      const left = (open.get(key) ?? 1) - 1;
      if (left <= 0) open.delete(key);
      else open.set(key, left);
    });
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || socket.destroyed) {
      socket.destroy();
      return;
    }
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => {
      server.close();
      reject(error);
    };
    server.once('error', onError);
    server.listen({ host: options.host, port: options.port, exclusive: true, ipv6Only: isIP(options.host) === 6 }, () => {
      server.off('error', onError);
      server.on('error', (error) => service.fault(error));
      resolve(server);
    });
  });
}

/** Stops accepting and closes every connection, idle or not. */
export function closeHttp(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
