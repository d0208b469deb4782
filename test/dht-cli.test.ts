/**
 * `peerkit dht` as a user runs it, on 127.0.0.1 only: two long-running
 * nodes (child processes stopped with SIGINT), and one-shot commands that
 * announce, look up, put and get through them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'peerkit.js');

function peerkit(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return peerkitWith([], {}, ...args);
}

function peerkitWith(nodeArgs: string[], env: Record<string, string>, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...nodeArgs, bin, ...args], { timeout: 30_000, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

/** Starts `peerkit dht ...` and resolves with the child and its listening address once it prints it. */
function daemon(args: string[]): Promise<{ child: ChildProcess; address: string; lines: string[] }> {
  const child = spawn(process.execPath, [bin, 'dht', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('daemon did not start')), 10_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line);
      const m = /listening on (\S+),/.exec(line);
      if (m !== null) {
        clearTimeout(timer);
        resolve({ child, address: m[1]!, lines });
      }
    });
    child.on('exit', () => reject(new Error(`daemon exited: ${lines.join('\n')}`)));
  });
}

function stop(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.on('exit', (code) => resolve(code));
    child.kill('SIGINT');
  });
}

test('peerkit dht: run two nodes, announce and look up, put and get immutable and mutable items, get a trackerless magnet with --bootstrap', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'peerkit-dht-cli-'));
  const children: ChildProcess[] = [];
  try {
    const a = await daemon(['--state', join(dir, 'a.json')]);
    children.push(a.child);
    const b = await daemon(['--bootstrap', a.address]);
    children.push(b.child);
    const ih = 'ab'.repeat(20);
    const ann = await peerkit('dht', 'announce', ih, '--peer-port', '5555', '--bootstrap', a.address);
    assert.equal(ann.code, 0, ann.stderr);
    assert.match(ann.stdout, /announced to 2 nodes/);
    const look = await peerkit('dht', 'lookup', ih, '--bootstrap', b.address);
    assert.equal(look.code, 0, look.stderr);
    assert.match(look.stdout, /^127\.0\.0\.1:5555$/m);
    assert.match(look.stdout, /1 peers; hops: \d+/);
    const json = JSON.parse((await peerkit('dht', 'lookup', ih, '--json', '--bootstrap', b.address)).stdout) as { peers: string[]; hops: number };
    assert.deepEqual(json.peers, ['127.0.0.1:5555']);

    const put = await peerkit('dht', 'put', 'hello dht', '--bootstrap', a.address);
    assert.equal(put.code, 0, put.stderr);
    const target = put.stdout.split('\n')[0]!;
    assert.equal(target, 'b300c9a324228057bd1d8f50232aa2cb1b780393'); // sha1("9:hello dht")
    const get = await peerkit('dht', 'get', target, '--bootstrap', b.address);
    assert.equal(get.stdout, 'hello dht\n');

    const key = join(dir, 'key');
    const pub = (await peerkit('dht', 'keygen', key)).stdout.trim();
    assert.match(pub, /^[0-9a-f]{64}$/);
    const m1 = await peerkit('dht', 'put', 'v1', '--key', key, '--seq', '1', '--salt', 'x', '--bootstrap', a.address);
    assert.equal(m1.code, 0, m1.stderr);
    const mt = m1.stdout.split('\n')[0]!;
    assert.equal((await peerkit('dht', 'put', 'v2', '--key', key, '--seq', '2', '--salt', 'x', '--bootstrap', a.address)).code, 0);
    const stale = await peerkit('dht', 'put', 'v0', '--key', key, '--seq', '1', '--salt', 'x', '--bootstrap', a.address);
    assert.equal(stale.code, 1);
    assert.match(stale.stdout, /errors 302/);
    const mg = await peerkit('dht', 'get', mt, '--salt', 'x', '--json', '--bootstrap', b.address);
    assert.deepEqual(JSON.parse(mg.stdout), { target: mt, value: 'v2', seq: 2, k: pub, hops: 1 });

    // Usage errors and a bootstrap node that does not answer.
    assert.equal((await peerkit('dht', 'lookup', 'zz', '--bootstrap', a.address)).code, 1);
    const none = await peerkit('dht', 'lookup', ih);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /--bootstrap/);

    // get/seed --bootstrap: a trackerless magnet through the DHT of the two nodes.
    const seedDir = join(dir, 'seed');
    mkdirSync(seedDir);
    writeFileSync(join(seedDir, 'f.bin'), randomBytes(200_000));
    assert.equal((await peerkit('create', join(seedDir, 'f.bin'), '-o', join(dir, 'f.torrent'))).code, 0);
    const info = JSON.parse((await peerkit('info', join(dir, 'f.torrent'), '--json')).stdout) as { infoHash: string };
    const seeder = spawn(process.execPath, [bin, 'seed', join(dir, 'f.torrent'), '-d', seedDir, '--host', '127.0.0.1', '--port', '0', '--bootstrap', a.address, '-q'], { stdio: 'ignore' });
    children.push(seeder);
    let seen = false;
    for (let i = 0; i < 100 && !seen; i++) {
      const r = await peerkit('dht', 'lookup', info.infoHash, '--json', '--bootstrap', b.address);
      seen = r.code === 0 && (JSON.parse(r.stdout) as { peers: string[] }).peers.length > 0;
      if (!seen) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(seen, 'the seeder announced itself');
    const got = await peerkit('get', `magnet:?xt=urn:btih:${info.infoHash}`, '-o', join(dir, 'out'), '--host', '127.0.0.1', '--port', '0', '--bootstrap', b.address, '-q', '--timeout', '30');
    assert.equal(got.code, 0, got.stderr);
    assert.ok(readFileSync(join(dir, 'out', 'f.bin')).equals(readFileSync(join(seedDir, 'f.bin'))));
    assert.equal(await stop(seeder), 0);

    assert.equal(await stop(b.child), 0);
    assert.equal(await stop(a.child), 0);
    assert.ok(a.lines.some((l) => l === `announce ${ih} 127.0.0.1:5555`));
    const state = JSON.parse(readFileSync(join(dir, 'a.json'), 'utf8')) as { id: string; nodes: { port: number }[] };
    assert.match(state.id, /^[0-9a-f]{40}$/);
    assert.ok(state.nodes.some((n) => `127.0.0.1:${n.port}` === b.address), 'the state file holds the other node');
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Loaded into a child with --import: logs every datagram sent, every TCP
 * connect and every DNS lookup the process makes (one JSON line each), and
 * refuses any that would leave 127.0.0.0/8.
 */
const CONTACT_LOGGER = `
import dgram from 'node:dgram';
import net from 'node:net';
import dns from 'node:dns';
import { appendFileSync } from 'node:fs';
const log = (what) => appendFileSync(process.env.PEERKIT_CONTACT_LOG, JSON.stringify(what) + '\\n');
const send = dgram.Socket.prototype.send;
dgram.Socket.prototype.send = function (...args) {
  const at = args.findLastIndex((a) => typeof a === 'string');
  const host = at >= 0 ? args[at] : '(connected)';
  log({ udp: host + ':' + args[at - 1] });
  if (!host.startsWith('127.')) throw new Error('refusing to send to ' + host);
  return send.apply(this, args);
};
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  const o = typeof args[0] === 'object' && args[0] !== null ? args[0] : { port: args[0], host: args[1] };
  if (o.path === undefined) log({ tcp: (o.host ?? 'localhost') + ':' + o.port });
  return connect.apply(this, args);
};
for (const api of [dns, dns.promises]) {
  const lookup = api.lookup;
  api.lookup = function (name, ...rest) {
    if (net.isIP(name) === 0) log({ dns: name }); // binding to an address literal resolves it locally
    return lookup.call(this, name, ...rest);
  };
}
`;

test('peerkit get --dht with no bootstrap node contacts nobody; with --bootstrap, only the node named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'peerkit-dht-contacts-'));
  const named = createSocket('udp4');
  let received = 0;
  named.on('message', () => received++); // a silent bootstrap node
  await new Promise<void>((r) => named.bind(0, '127.0.0.1', r));
  try {
    const logger = join(dir, 'contacts.mjs');
    writeFileSync(logger, CONTACT_LOGGER);
    const magnet = `magnet:?xt=urn:btih:${randomBytes(20).toString('hex')}`;
    const contacts = async (name: string, ...extra: string[]): Promise<{ code: number; stderr: string; log: Record<string, string>[] }> => {
      const logFile = join(dir, `${name}.log`);
      writeFileSync(logFile, '');
      const r = await peerkitWith(['--import', logger], { PEERKIT_CONTACT_LOG: logFile }, 'get', magnet, '-o', join(dir, name), '--host', '127.0.0.1', '--port', '0', '-q', '--timeout', '4', ...extra);
      const log = readFileSync(logFile, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, string>);
      return { code: r.code, stderr: r.stderr, log };
    };
    const alone = await contacts('alone', '--dht');
    assert.equal(alone.code, 1);
    assert.match(alone.stderr, /not complete after 4 s/);
    assert.deepEqual(alone.log, [], 'no datagram, connection or name lookup');

    const port = named.address().port;
    const withBoot = await contacts('named', '--dht', '--bootstrap', `127.0.0.1:${port}`);
    assert.equal(withBoot.code, 1);
    assert.ok(withBoot.log.length >= 1 && received >= 1, 'the named node was asked');
    assert.deepEqual([...new Set(withBoot.log.map((e) => JSON.stringify(e)))], [JSON.stringify({ udp: `127.0.0.1:${port}` })]);
  } finally {
    named.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
