/**
 * bench/tracker: announces per second over UDP and HTTP with a loaded
 * tracker (default 100 000 torrents x 10 peers), peerkit vs opentracker in
 * the same run, and the memory each needs per million peers.
 *
 *   npm run bench:tracker -- [--torrents N] [--peers N] [--seconds S] [--window N]
 *                            [--http-concurrency N] [--only peerkit|opentracker]
 *
 * For each tracker, in turn:
 *  1. start it on 127.0.0.1 with a whitelist of the bench's info hashes
 *     (opentracker's Debian build requires one; peerkit gets the same file),
 *     rate limiting and the per-address connection cap off (opentracker has
 *     neither; all the load comes from one address);
 *  2. read its RSS (VmRSS from /proc), then preload every peer with a UDP
 *     `started` announce and read its RSS again: (loaded - empty) / peers is
 *     its memory per peer;
 *  3. measure regular UDP announces (numwant 50; each answer carries the 9
 *     other peers) with `window` requests in flight, for `seconds`;
 *  4. measure HTTP announces with one request per TCP connection (opentracker
 *     closes the connection after each answer), `http-concurrency` at once;
 *     peerkit also with keep-alive.
 *
 * Load comes from a separate process (dist/bench/tracker-load.js), so the
 * tracker and the load generator each have a core of a 2-core machine.
 * Everything is on 127.0.0.1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'node:http';

const args = process.argv.slice(2);
const opt = (name: string, def: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const torrents = opt('--torrents', 100_000);
const peers = opt('--peers', 10);
const seconds = opt('--seconds', 10);
const window = opt('--window', 256);
const httpConcurrency = opt('--http-concurrency', 32);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
const peerkitBin = fileURLToPath(new URL('../../bin/peerkit.js', import.meta.url));
const loadJs = fileURLToPath(new URL('./tracker-load.js', import.meta.url));

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** CPU seconds (user + system, all threads) a process has used so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}

function load(mode: string, port: number, extra: (string | number)[]): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [loadJs, mode, String(port), String(torrents), String(peers), ...extra.map(String)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`load generator (${mode}) exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!) as Record<string, number>);
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Running {
  child: ChildProcess;
  httpPort: number;
  udpPort: number;
  peerCount: () => Promise<number>;
}

async function startPeerkit(whitelist: string): Promise<Running> {
  const child = spawn(process.execPath, [peerkitBin, 'tracker', '--host', '127.0.0.1', '--http', '0', '--udp', '0', '--rate-limit', '0', '--max-connections-per-address', '100000', '--whitelist', whitelist], { stdio: ['ignore', 'pipe', 'inherit'] });
  const text = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (/mode:/.test(out)) resolve(out);
    });
    child.once('exit', (code) => reject(new Error(`peerkit tracker exited with ${code}`)));
  });
  const httpPort = Number(/http:\/\/127\.0\.0\.1:(\d+)\/announce/.exec(text)![1]);
  const udpPort = Number(/udp:\/\/127\.0\.0\.1:(\d+)\/announce/.exec(text)![1]);
  return { child, httpPort, udpPort, peerCount: async () => (JSON.parse(await get(`http://127.0.0.1:${httpPort}/stats`)) as { peers: number }).peers };
}

async function startOpentracker(whitelist: string): Promise<Running> {
  const port = await freePort();
  // -A blesses 127.0.0.1 so that /stats answers (for the peer count).
  const child = spawn('opentracker', ['-i', '127.0.0.1', '-p', String(port), '-P', String(port), '-A', '127.0.0.1', '-w', whitelist], { stdio: ['ignore', 'ignore', 'inherit'] });
  child.once('error', (e) => {
    throw new Error(`cannot run opentracker (apt-get install opentracker): ${e.message}`);
  });
  const r: Running = { child, httpPort: port, udpPort: port, peerCount: async () => Number((await get(`http://127.0.0.1:${port}/stats?mode=peer`)).split('\n')[0]) };
  for (let i = 0; i < 50; i++) {
    try {
      await r.peerCount();
      return r;
    } catch {
      await sleep(100);
    }
  }
  throw new Error('opentracker did not start');
}

interface Result {
  name: string;
  preloadSeconds: number;
  peers: number;
  rssEmptyMB: number;
  rssLoadedMB: number;
  bytesPerPeer: number;
  udp: number;
  /** Tracker CPU time per UDP announce, in microseconds. */
  udpCpuUs: number;
  http: number;
  httpCpuUs: number;
  httpKeepAlive?: number;
}

async function bench(name: string, start: (wl: string) => Promise<Running>, whitelist: string): Promise<Result> {
  const t = await start(whitelist);
  try {
    await sleep(500);
    const pid = t.child.pid!;
    const empty = rssBytes(pid);
    process.stderr.write(`${name}: preloading ${torrents} torrents x ${peers} peers over UDP...\n`);
    const pre = await load('preload', t.udpPort, [Math.max(window, 512)]);
    await sleep(1000);
    const loaded = rssBytes(pid);
    const count = await t.peerCount();
    process.stderr.write(`${name}: ${count} peers loaded in ${(pre.ms! / 1000).toFixed(1)} s; measuring UDP for ${seconds} s...\n`);
    let cpu = cpuSeconds(pid);
    const udp = await load('udp', t.udpPort, [window, seconds]);
    // The udp run has a one-second warm-up whose answers are not counted; count its CPU share out.
    const udpCpu = ((cpuSeconds(pid) - cpu) * (udp.ms! / 1000)) / (udp.ms! / 1000 + 1);
    process.stderr.write(`${name}: measuring HTTP for ${seconds} s...\n`);
    cpu = cpuSeconds(pid);
    const http = await load('http', t.httpPort, [httpConcurrency, seconds]);
    const httpCpu = cpuSeconds(pid) - cpu;
    const result: Result = {
      name,
      preloadSeconds: pre.ms! / 1000,
      peers: count,
      rssEmptyMB: empty / 2 ** 20,
      rssLoadedMB: loaded / 2 ** 20,
      bytesPerPeer: (loaded - empty) / Math.max(1, count),
      udp: udp.perSecond!,
      udpCpuUs: (udpCpu / udp.answered!) * 1e6,
      http: http.perSecond!,
      httpCpuUs: (httpCpu / http.answered!) * 1e6,
    };
    if (http.failed! > 0) process.stderr.write(`${name}: ${http.failed} HTTP requests failed\n`);
    if (udp.resent! > 0) process.stderr.write(`${name}: ${udp.resent} UDP requests timed out\n`);
    if (name === 'peerkit') {
      process.stderr.write(`${name}: measuring HTTP keep-alive for ${seconds} s...\n`);
      result.httpKeepAlive = (await load('http', t.httpPort, [httpConcurrency, seconds, 'keepalive'])).perSecond!;
    }
    return result;
  } finally {
    const exited = new Promise((r) => t.child.once('exit', r));
    t.child.kill('SIGTERM');
    const timer = setTimeout(() => t.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'peerkit-bench-tracker-'));
try {
  const whitelist = join(dir, 'whitelist.txt');
  let wl = '';
  for (let t = 0; t < torrents; t++) wl += `${createHash('sha1').update(String(t)).digest('hex')}\n`;
  writeFileSync(whitelist, wl);
  // opentracker drops its privileges to `nobody` before it reads the whitelist.
  chmodSync(dir, 0o755);
  chmodSync(whitelist, 0o644);
  const results: Result[] = [];
  if (only !== 'opentracker') results.push(await bench('peerkit', startPeerkit, whitelist));
  if (only !== 'peerkit') results.push(await bench('opentracker', startOpentracker, whitelist));

  const cpu = cpus();
  console.log(`\ntracker bench: ${torrents} torrents x ${peers} peers, ${seconds} s per measurement, UDP window ${window}, HTTP concurrency ${httpConcurrency}`);
  console.log(`machine: ${cpu.length} x ${cpu[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}\n`);
  console.log('| tracker | UDP announces/s | tracker CPU per UDP announce | HTTP announces/s (new connection each) | CPU per HTTP announce | RSS empty | RSS loaded | bytes/peer | RSS per million peers |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of results) {
    console.log(
      `| ${r.name} | ${Math.round(r.udp)} | ${r.udpCpuUs.toFixed(1)} µs | ${Math.round(r.http)}${r.httpKeepAlive !== undefined ? ` (keep-alive: ${Math.round(r.httpKeepAlive)})` : ''} | ${r.httpCpuUs.toFixed(1)} µs | ${r.rssEmptyMB.toFixed(1)} MB | ${r.rssLoadedMB.toFixed(1)} MB | ${Math.round(r.bytesPerPeer)} | ${((r.bytesPerPeer * 1e6) / 2 ** 20).toFixed(1)} MiB |`,
    );
  }
  const [a, b] = results;
  if (a !== undefined && b !== undefined) {
    console.log(`\nratios peerkit / opentracker: UDP ${(a.udp / b.udp).toFixed(2)}x, HTTP ${(a.http / b.http).toFixed(2)}x, memory per peer ${(a.bytesPerPeer / b.bytesPerPeer).toFixed(2)}x`);
    console.log(`CPU per announce, opentracker / peerkit (above 1: peerkit needs less): UDP ${(b.udpCpuUs / a.udpCpuUs).toFixed(2)}x, HTTP ${(b.httpCpuUs / a.httpCpuUs).toFixed(2)}x`);
    console.log(`targets: UDP >= 0.5x opentracker: ${a.udp >= 0.5 * b.udp ? 'met' : 'NOT met'}; <= 200 bytes per peer: ${a.bytesPerPeer <= 200 ? 'met' : 'NOT met'}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
