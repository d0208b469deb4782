/**
 * Who may see the dashboard. By default it listens on 127.0.0.1 only. A
 * bind to any other address needs an access token, and once a token is set
 * every request must carry it (`Authorization: Bearer TOKEN` or
 * `?token=TOKEN`); it is compared in constant time. Without a token the
 * Host header must name a loopback address, so a web page cannot reach a
 * loopback dashboard by rebinding its own DNS name to 127.0.0.1.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';

export class DashboardConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DashboardConfigError';
  }
}

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** `PORT`, `HOST:PORT` or `[IPv6]:PORT`; HOST is an IP literal or `localhost`; the default host is 127.0.0.1. */
export function parseListenAddress(text: string): ListenAddress {
  const m = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):)?(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new DashboardConfigError(`"${text}" is not [HOST:]PORT (e.g. 8080, 127.0.0.1:8080, [::1]:8080)`);
  const host = m[1] ?? m[2] ?? '127.0.0.1';
  if (host !== 'localhost' && isIP(host) === 0) throw new DashboardConfigError(`"${host}" is not an IP address (or localhost)`);
  if (m[1] !== undefined && isIP(host) !== 6) throw new DashboardConfigError(`"${host}" in brackets is not an IPv6 address`);
  return { host, port };
}

/** 127.0.0.0/8, ::1, their IPv4-mapped forms, and `localhost`. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

const TOKEN = /^[A-Za-z0-9._~-]{16,256}$/;

/** Throws unless the token is 16 to 256 URL-safe characters (letters, digits, `.`, `_`, `~`, `-`). */
export function checkTokenFormat(token: string): void {
  if (!TOKEN.test(token)) throw new DashboardConfigError('the dashboard token must be 16 to 256 characters of A-Z a-z 0-9 . _ ~ -');
}

/** Refuses a non-loopback bind without a token. */
export function checkBind(host: string, token: string | undefined): void {
  if (token !== undefined) checkTokenFormat(token);
  if (token === undefined && !isLoopback(host)) {
    throw new DashboardConfigError(`refusing to serve the dashboard on ${host} without an access token (give --dashboard-token or PEERKIT_DASHBOARD_TOKEN, or bind 127.0.0.1)`);
  }
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Constant-time comparison (of SHA-256 digests, so the length does not leak either). */
export function tokenMatches(expected: string, given: string | undefined): boolean {
  if (given === undefined) return false;
  return timingSafeEqual(digest(expected), digest(given));
}

/** The token a request carries: the Authorization bearer, else the `token` query parameter. */
export function requestToken(authorization: string | undefined, url: URL): string | undefined {
  if (authorization !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (m) return m[1];
  }
  return url.searchParams.get('token') ?? undefined;
}

/** Whether a Host header names a loopback address (any port), as a browser sends it. */
export function isLoopbackHostHeader(hostHeader: string | undefined): boolean {
  if (hostHeader === undefined) return false;
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::\d{1,5})?$/.exec(hostHeader.trim());
  if (!m) return false;
  return isLoopback(m[1] ?? m[2]!);
}
