/**
 * The load generator of `npm run bench:tracker`, run as its own process so
 * the tracker under test has its own core. Talks to one tracker on
 * 127.0.0.1 only and prints one JSON line with its result.
 *
 *   node dist/bench/tracker-load.js preload <udpPort> <torrents> <peers> <window>
 *       every peer of every torrent announces `started` once over UDP (numwant 0);
 *       lost requests are resent until all are answered
 *   node dist/bench/tracker-load.js udp <udpPort> <torrents> <peers> <window> <seconds>
 *       regular announces from random loaded peers (numwant 50), `window` in flight
 *   node dist/bench/tracker-load.js http <httpPort> <torrents> <peers> <concurrency> <seconds> [keepalive]
 *       the same over HTTP, one request per connection (opentracker closes after each
 *       answer) unless `keepalive`
 *
 * Torrent t's info hash is SHA-1 of the decimal string t, as in the bench's
 * whitelist; peer p of torrent t announces port 10000 + p with a peer id
 * made of t and p, and is a seeder when p = 0.
 */
import { createHash } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { connect } from 'node:net';

const [mode, portText, torrentsText, peersText, windowText, secondsText, extra] = process.argv.slice(2);
const port = Number(portText);
const torrents = Number(torrentsText);
const peers = Number(peersText);
const window = Number(windowText);
const seconds = Number(secondsText ?? 0);
const HOST = '127.0.0.1';

const hashes = Buffer.alloc(torrents * 20);
for (let t = 0; t < torrents; t++) createHash('sha1').update(String(t)).digest().copy(hashes, t * 20);

let rng = 0x2545f491;
function rand(n: number): number {
  rng ^= rng << 13;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  return (rng >>> 0) % n;
}

function writePeer(buf: Buffer, at: number, t: number, p: number): void {
  buf.write('-PKBNCH-', at, 'latin1');
  buf.writeUInt32BE(t, at + 8);
  buf.writeUInt32BE(p, at + 12);
  buf.writeUInt32BE(0x42424242, at + 16);
}

function output(result: object): void {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

// ---------------------------------------------------------------- UDP

interface UdpLane {
  socket: Socket;
  cid: Buffer;
}

async function openLanes(count: number): Promise<UdpLane[]> {
  const lanes: UdpLane[] = [];
  for (let i = 0; i < count; i++) {
    const socket = createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
    await new Promise<void>((resolve) => socket.bind(0, HOST, resolve));
    const cid = await new Promise<Buffer>((resolve, reject) => {
      const req = Buffer.alloc(16);
      req.writeBigUInt64BE(0x41727101980n, 0);
      req.writeUInt32BE(0, 8);
      req.writeUInt32BE(7, 12);
      const timer = setInterval(() => socket.send(req, port, HOST), 250);
      const fail = setTimeout(() => reject(new Error('no connect answer from the tracker')), 10_000);
      socket.once('message', (m: Buffer) => {
        clearInterval(timer);
        clearTimeout(fail);
        resolve(Buffer.from(m.subarray(8, 16)));
      });
      socket.send(req, port, HOST);
    });
    lanes.push({ socket, cid });
  }
  return lanes;
}

/**
 * Keeps `window` announces in flight over several sockets. `next(slot)`
 * picks what slot `slot` announces next (torrent, peer), or -1 when there is
 * nothing left; `done` is called for every answer.
 */
async function udpRun(opts: { started: boolean; numWant: number; next: () => number; stopAt?: number }): Promise<{ answered: number; resent: number; ms: number }> {
  const lanes = await openLanes(Math.min(8, Math.max(1, window >> 5)));
  const pkts: Buffer[] = [];
  const job = new Float64Array(window).fill(-1); // t * peers + p, or -1
  const sentAt = new Float64Array(window);
  const gen = new Uint32Array(window);
  let answered = 0;
  let resent = 0;
  let active = 0;
  const start = performance.now();
  const send = (slot: number): void => {
    const pkt = pkts[slot]!;
    const id = job[slot]!;
    const t = Math.floor(id / peers);
    const p = id - t * peers;
    gen[slot] = (gen[slot]! + 1) & 0xffff;
    pkt.writeUInt32BE(((gen[slot]! << 16) | slot) >>> 0, 12);
    hashes.copy(pkt, 16, t * 20, t * 20 + 20);
    writePeer(pkt, 36, t, p);
    pkt.writeBigUInt64BE(p === 0 ? 0n : 1000n, 64); // left
    pkt.writeUInt32BE(opts.started ? 2 : 0, 80);
    pkt.writeUInt32BE(id >>> 0, 88); // key
    pkt.writeInt32BE(opts.numWant, 92);
    pkt.writeUInt16BE(10000 + p, 96);
    sentAt[slot] = performance.now();
    lanes[slot % lanes.length]!.socket.send(pkt, port, HOST);
  };
  const refill = (slot: number): void => {
    const id = opts.stopAt !== undefined && performance.now() >= opts.stopAt ? -1 : opts.next();
    job[slot] = id;
    if (id < 0) active--;
    else send(slot);
  };
  return new Promise((resolve) => {
    for (const lane of lanes) {
      lane.socket.on('message', (m: Buffer) => {
        if (m.length >= 8 && m.readUInt32BE(0) === 3) {
          process.stderr.write(`tracker-load: the tracker answered with an error: ${m.toString('utf8', 8)}\n`);
          process.exit(1);
        }
        if (m.length < 20 || m.readUInt32BE(0) !== 1) return;
        const tid = m.readUInt32BE(4);
        const slot = tid & 0xffff;
        if (slot >= window || job[slot]! < 0 || tid >>> 16 !== gen[slot]) return;
        answered++;
        refill(slot);
        if (active === 0) finish();
      });
    }
    for (let s = 0; s < window; s++) {
      const pkt = Buffer.alloc(98);
      lanes[s % lanes.length]!.cid.copy(pkt, 0);
      pkt.writeUInt32BE(1, 8);
      pkts.push(pkt);
    }
    const timer = setInterval(() => {
      const now = performance.now();
      for (let s = 0; s < window; s++) {
        if (job[s]! >= 0 && now - sentAt[s]! > 1000) {
          resent++;
          if (opts.stopAt !== undefined && now >= opts.stopAt) {
            job[s] = -1;
            active--;
          } else send(s);
        }
      }
      if (active === 0) finish();
    }, 200);
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearInterval(timer);
      for (const l of lanes) l.socket.close();
      resolve({ answered, resent, ms: performance.now() - start });
    };
    for (let s = 0; s < window; s++) {
      active++;
      refill(s);
    }
    if (active === 0) finish();
  });
}

// ---------------------------------------------------------------- HTTP

function pct(buf: Buffer): string {
  let s = '';
  for (const b of buf) s += `%${b.toString(16).padStart(2, '0')}`;
  return s;
}

function httpRequest(t: number, p: number, keepAlive: boolean): string {
  const pid = Buffer.alloc(20);
  writePeer(pid, 0, t, p);
  const q = `info_hash=${pct(hashes.subarray(t * 20, t * 20 + 20))}&peer_id=${pct(pid)}&port=${10000 + p}&uploaded=0&downloaded=0&left=${p === 0 ? 0 : 1000}&compact=1&numwant=50&key=${(t * peers + p).toString(16)}`;
  return `GET /announce?${q} HTTP/1.1\r\nHost: ${HOST}:${port}\r\n${keepAlive ? '' : 'Connection: close\r\n'}\r\n`;
}

async function httpRun(concurrency: number, keepAlive: boolean): Promise<{ answered: number; failed: number; ms: number }> {
  const stopAt = performance.now() + seconds * 1000;
  let answered = 0;
  let failed = 0;
  const start = performance.now();
  const worker = (): Promise<void> =>
    new Promise((resolve) => {
      const one = (): void => {
        if (performance.now() >= stopAt) {
          resolve();
          return;
        }
        const s = connect({ host: HOST, port });
        s.setNoDelay(true);
        let got = Buffer.alloc(0);
        let count = 0;
        const ask = (): void => {
          const n = rand(torrents * peers);
          got = Buffer.alloc(0);
          s.write(httpRequest(Math.floor(n / peers), n % peers, keepAlive));
        };
        const complete = (): boolean => {
          const end = got.indexOf('\r\n\r\n');
          if (end < 0) return false;
          const m = /content-length: *(\d+)/i.exec(got.toString('latin1', 0, end));
          return m !== null && got.length >= end + 4 + Number(m[1]);
        };
        const check = (): void => {
          const text = got.toString('latin1');
          if (text.startsWith('HTTP/1.') && text.includes(' 200 ') && text.includes('8:intervali') && !text.includes('failure reason')) answered++;
          else failed++;
        };
        s.on('connect', ask);
        s.on('data', (c: Buffer) => {
          got = Buffer.concat([got, c]);
          if (keepAlive && complete()) {
            check();
            count++;
            if (performance.now() < stopAt && count < 1000) ask();
            else s.end();
          }
        });
        s.on('error', () => {});
        s.on('close', () => {
          if (!keepAlive) {
            if (got.length > 0) check();
            else failed++;
          }
          one();
        });
      };
      one();
    });
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { answered, failed, ms: performance.now() - start };
}

// ---------------------------------------------------------------- main

if (mode === 'preload') {
  let next = 0;
  const total = torrents * peers;
  const r = await udpRun({ started: true, numWant: 0, next: () => (next < total ? next++ : -1) });
  output({ mode, announces: total, ...r });
} else if (mode === 'udp') {
  // One second of warm-up, then the measured run.
  const total = torrents * peers;
  await udpRun({ started: false, numWant: 50, next: () => rand(total), stopAt: performance.now() + 1000 });
  const r = await udpRun({ started: false, numWant: 50, next: () => rand(total), stopAt: performance.now() + seconds * 1000 });
  output({ mode, perSecond: (r.answered / r.ms) * 1000, ...r });
} else if (mode === 'http') {
  const r = await httpRun(window, extra === 'keepalive');
  output({ mode, keepAlive: extra === 'keepalive', perSecond: (r.answered / r.ms) * 1000, ...r });
} else {
  process.stderr.write('usage: tracker-load.js preload|udp|http ...\n');
  process.exit(2);
}
