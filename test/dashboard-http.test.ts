/**
 * The dashboard over HTTP, on 127.0.0.1: a real swarm (tracker, seeder,
 * leechers) behind it; the page and its assets, the event stream, the JSON
 * API, CSV exports, Prometheus metrics, status codes, security headers, the
 * token on every endpoint, the Host check; a small DHT (plain nodes and a
 * client's node) with its state, CSV exports and metrics; and the
 * --dashboard flag of `peerkit tracker` and `peerkit seed` as a user runs them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFile, writeFile } from 'node:fs/promises';
import { request, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseCsv } from '../src/dashboard/csv.js';
import { PEER_COLUMNS, TORRENT_COLUMNS, type ClientState } from '../src/dashboard/client-source.js';
import { startDashboard } from '../src/dashboard/server.js';
import { TrackerSource } from '../src/dashboard/tracker-source.js';
import { DHT_BUCKET_COLUMNS, DHT_NODE_COLUMNS, DhtSource, type DhtState } from '../src/dashboard/dht-source.js';
import { clientSources } from '../src/dashboard/client-source.js';
import { Client } from '../src/client/client.js';
import { DhtNode } from '../src/dht/node.js';
import { startDhtDashboard } from '../src/cli/dashboard-option.js';
import { startTracker } from '../src/tracker/index.js';
import { completes, startSwarm } from './dashboard-swarm.js';
import { checkPrometheus } from './dashboard-prometheus.js';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'peerkit.js');

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function http(url: string, o: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: o.method ?? 'GET', headers: o.headers, agent: false, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
    req.end();
  });
}

/** The first `n` events of an event stream. */
function events(url: string, n: number): Promise<{ event: string; data: unknown }[]> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      assert.equal(res.statusCode, 200);
      assert.match(res.headers['content-type'] ?? '', /^text\/event-stream/);
      let buf = '';
      const got: { event: string; data: unknown }[] = [];
      res.on('data', (c: Buffer) => {
        buf += c.toString('utf8');
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = /^event: (.+)$/m.exec(block)?.[1];
          const data = /^data: (.+)$/m.exec(block)?.[1];
          if (ev !== undefined && data !== undefined) got.push({ event: ev, data: JSON.parse(data) });
          if (got.length >= n) {
            req.destroy();
            resolve(got);
            return;
          }
        }
      });
    });
    req.setTimeout(10_000, () => req.destroy(new Error('event stream timeout')));
    req.on('error', (e) => ((e as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(e)));
    req.end();
  });
}

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A JSON value as its CSV cell reads back. */
const cell = (v: string | number | boolean | null): string => (v === null ? '' : String(v));

interface StateJson {
  sources: { id: string; kind: string; state: { torrents: unknown; peers?: { client: string; address: string }[]; swarms?: { infoHash: string; seeders: number; leechers: number }[] } & Record<string, unknown> }[];
}

/** The whole exposition checked (see dashboard-prometheus.ts); the sample lines of each family, by name. */
function checkExposition(text: string): Map<string, string[]> {
  const fams = checkPrometheus(text);
  // The process's figures come once, for the whole process; everything else is labelled by its source.
  for (const name of ['process_resident_memory_bytes', 'process_start_time_seconds', 'process_cpu_seconds_total']) {
    const f = fams.get(name);
    assert.ok(f, name);
    assert.equal(f.samples.length, 1, `${name} once`);
    assert.deepEqual(f.samples[0]!.labels, {}, `${name} has no source label`);
  }
  for (const f of fams.values()) if (!f.name.startsWith('process_')) for (const x of f.samples) assert.ok(x.labels.source !== undefined, `${x.line} has a source label`);
  return new Map([...fams].map(([name, f]) => [name, f.samples.map((x) => x.line)]));
}

/** GETs with the X-Peerkit-Snapshot header's value. */
async function snapshotGet(url: string): Promise<{ body: string; snapshot: string }> {
  const r = await http(url);
  assert.equal(r.status, 200, url);
  const snapshot = r.headers['x-peerkit-snapshot'];
  assert.equal(typeof snapshot, 'string', `${url} says its snapshot`);
  return { body: r.body, snapshot: snapshot as string };
}

test('dashboard over HTTP: page, assets, event stream, JSON, CSV and metrics of a live swarm', { timeout: 90_000 }, async () => {
  const swarm = await startSwarm({ bytes: 3 * 1024 * 1024 - 777, seederUploadLimit: 512 * 1024 });
  try {
    const base = swarm.dashboard.baseUrl;
    assert.match(base, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.equal(swarm.dashboard.url, base, 'no token, no query');
    const a = await swarm.addLeecher();
    const b = await swarm.addLeecher();

    // While they download: peers in the JSON and the CSV.
    const state = await until('peers in /api/state', async () => {
      const s = JSON.parse((await http(`${base}api/state`)).body) as StateJson;
      const l1 = s.sources.find((x) => x.id === 'leecher 1');
      return l1?.state.peers && l1.state.peers.length > 0 ? s : undefined;
    });
    assert.deepEqual(state.sources.map((s) => [s.id, s.kind]), [['tracker', 'tracker'], ['seeder', 'client'], ['leecher 1', 'client'], ['leecher 2', 'client']]);
    const peersCsv = await http(`${base}peers.csv`);
    assert.equal(peersCsv.status, 200);
    assert.match(peersCsv.headers['content-type']!, /^text\/csv; charset=utf-8/);
    assert.match(peersCsv.headers['content-disposition']!, /attachment; filename="peerkit-peers.csv"/);
    const peerRows = parseCsv(peersCsv.body);
    assert.deepEqual(peerRows[0], ['source', ...PEER_COLUMNS]);
    assert.ok(peerRows.length > 1, 'peers listed');
    for (const r of peerRows.slice(1)) {
      assert.equal(r.length, peerRows[0]!.length);
      assert.match(r[3]!, /^127\.0\.0\.1:\d+$/);
      assert.equal(r[2], swarm.metainfo.name);
    }

    // One tick's /api/state and CSVs are one snapshot: the same values, row for row.
    const same = await until('/api/state and the CSVs from one snapshot', async () => {
      const st = await snapshotGet(`${base}api/state`);
      const pc = await snapshotGet(`${base}peers.csv`);
      const tc = await snapshotGet(`${base}torrents.csv`);
      return st.snapshot === pc.snapshot && pc.snapshot === tc.snapshot ? { state: JSON.parse(st.body) as { t: number; sources: { id: string; kind: string; state: ClientState }[] }, peers: parseCsv(pc.body), torrents: parseCsv(tc.body) } : undefined;
    });
    const clients = same.state.sources.filter((x) => x.kind === 'client');
    const jsonPeers = clients.flatMap((x) => x.state.peers.map((p) => [x.id, p.torrent, p.torrentName, p.address, p.client, p.direction, p.amChoking, p.amInterested, p.peerChoking, p.peerInterested, p.downloadRate, p.uploadRate, p.downloaded, p.uploaded, p.ratio, p.progress].map(cell)));
    assert.deepEqual(same.peers.slice(1), jsonPeers);
    const jsonTorrents = clients.flatMap((x) => x.state.torrents.map((t) => [x.id, t.infoHash, t.name, t.state, t.size, t.progress, t.piecesDone, t.pieceCount, t.downloadRate, t.uploadRate, t.downloaded, t.uploaded, t.wasted, t.ratio, t.peers].map(cell)));
    assert.deepEqual(same.torrents.slice(1), jsonTorrents);
    assert.ok(jsonPeers.length >= 2, 'peers in the snapshot');

    const [hello, first] = await events(`${base}events`, 2);
    assert.equal(hello!.event, 'hello');
    const h = hello!.data as { intervalMs: number; historyLength: number; tables: string[]; history: { t: number[]; charts: Record<string, Record<string, unknown[]>> } };
    assert.equal(h.intervalMs, 250);
    assert.deepEqual(h.tables.sort(), ['peers', 'swarms', 'torrents']);
    assert.ok(h.history.t.length >= 1);
    assert.ok(h.history.charts.download && 'seeder' in h.history.charts.upload!);
    assert.equal(first!.event, 'state');
    assert.equal((first!.data as StateJson).sources.length, 4);

    await Promise.all([completes(a), completes(b)]);
    const done = JSON.parse((await http(`${base}api/state`)).body) as StateJson;
    for (const id of ['seeder', 'leecher 1', 'leecher 2']) {
      const t = (done.sources.find((s) => s.id === id)!.state.torrents as { progress: number; state: string; size: number }[])[0]!;
      assert.equal(t.progress, 1, id);
      assert.equal(t.state, 'seeding');
      assert.equal(t.size, swarm.metainfo.length);
    }
    const torrents = parseCsv((await http(`${base}torrents.csv`)).body);
    assert.deepEqual(torrents[0], ['source', ...TORRENT_COLUMNS]);
    assert.deepEqual(torrents.slice(1).map((r) => [r[0], r[1], r[5]]), [['seeder', swarm.metainfo.infoHashHex, '1'], ['leecher 1', swarm.metainfo.infoHash.toString('hex'), '1'], ['leecher 2', swarm.metainfo.infoHash.toString('hex'), '1']]);
    const uploadedTotal = torrents.slice(1).reduce((n, r) => n + Number(r[torrents[0]!.indexOf('uploaded_bytes')]), 0);
    const downloadedTotal = torrents.slice(1).reduce((n, r) => n + Number(r[torrents[0]!.indexOf('downloaded_bytes')]), 0);
    assert.ok(downloadedTotal >= 2 * swarm.metainfo.length, 'both leechers got the whole file');
    assert.ok(uploadedTotal >= 2 * swarm.metainfo.length, 'and someone in the swarm sent it');

    const swarms = parseCsv((await http(`${base}swarms.csv`)).body);
    assert.deepEqual(swarms[0], ['source', 'info_hash', 'seeders', 'leechers', 'completed']);
    assert.equal(swarms[1]![1], swarm.metainfo.infoHashHex);
    // The tracker's swarm: the seeder and both leechers seed once the leechers have announced their completion.
    const trackerState = await until('the tracker counts both completions', async () => {
      const j = JSON.parse((await http(`${base}api/state`)).body) as StateJson;
      const w = j.sources.find((x) => x.id === 'tracker')!.state.swarms!;
      return w[0]?.seeders === 3 ? w : undefined;
    });
    assert.deepEqual(trackerState.map((w) => [w.infoHash, w.seeders, w.leechers]), [[swarm.metainfo.infoHashHex, 3, 0]]);
    const swarmsNow = parseCsv((await http(`${base}swarms.csv`)).body);
    assert.deepEqual(swarmsNow.slice(1).map((r) => r.slice(0, 4)), [['tracker', swarm.metainfo.infoHashHex, '3', '0']]);

    const metrics = await http(`${base}metrics`);
    assert.equal(metrics.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    const fams = checkExposition(metrics.body);
    const ih = swarm.metainfo.infoHashHex;
    const up = fams.get('peerkit_client_uploaded_bytes_total')!;
    assert.equal(up.length, 3);
    assert.ok(up.some((l) => new RegExp(`^peerkit_client_uploaded_bytes_total\\{source="seeder",torrent="${ih}"\\} [1-9]`).test(l)));
    assert.ok(fams.get('peerkit_client_verified_pieces')!.every((l) => l.endsWith(` ${swarm.metainfo.pieceCount}`)));
    assert.ok(fams.get('peerkit_tracker_announces_total')!.some((l) => /\{source="tracker",protocol="http"\} [1-9]/.test(l)));
    assert.deepEqual(fams.get('peerkit_client_torrent_info')!.length, 3);

    // The page and its assets, with the security headers.
    const page = await http(base);
    assert.equal(page.status, 200);
    assert.match(page.headers['content-type']!, /^text\/html/);
    assert.match(String(page.headers['content-security-policy']), /default-src 'none'; script-src 'self'/);
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    assert.equal(page.headers['referrer-policy'], 'no-referrer');
    assert.match(page.body, /<script src="app\.js"><\/script>/);
    assert.doesNotMatch(page.body, /https?:\/\//, 'no external URL in the page');
    for (const [path, type, marker] of [['app.js', 'text/javascript', 'EventSource'], ['app.css', 'text/css', '.bar'], ['uPlot.iife.min.js', 'text/javascript', 'uPlot'], ['uPlot.min.css', 'text/css', '.uplot']] as const) {
      const r = await http(base + path);
      assert.equal(r.status, 200, path);
      assert.match(r.headers['content-type']!, new RegExp(`^${type}`));
      assert.ok(r.body.includes(marker), path);
    }
    const head = await http(base, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    assert.equal((await http(base, { method: 'POST' })).status, 405);
    assert.equal((await http(`${base}nothing`)).status, 404);
    assert.equal((await http(`${base}nothing.csv`)).status, 404);
    const rebound = await http(base, { headers: { host: 'evil.example:80' } });
    assert.equal(rebound.status, 403, 'a token-less dashboard answers only to loopback Host names');
    assert.equal((await http(base, { headers: { host: 'localhost' } })).status, 200);
  } finally {
    await swarm.close();
  }
});

test('a DHT on the dashboard: state with buckets and operations in flight, routing table and bucket CSV, peerkit_dht_* metrics, charts', { timeout: 60_000 }, async () => {
  const nodes: DhtNode[] = [];
  let client: Client | undefined;
  // A UDP socket on 127.0.0.1 that never answers: a ping to it stays in flight.
  const sink = createSocket('udp4');
  await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
  const d = await startDashboard({ intervalMs: 100 });
  try {
    for (let i = 0; i < 5; i++) nodes.push(await DhtNode.start({ host: '127.0.0.1', port: 0, dht: { timeoutMs: 5000 } }));
    const boot = `127.0.0.1:${nodes[0]!.address.port}`;
    await Promise.all(nodes.slice(1).map((n) => n.bootstrap([boot])));
    await nodes[0]!.bootstrap();
    client = await Client.create({ port: 0, host: '127.0.0.1', dht: { bootstrap: [boot] } });
    nodes.forEach((n, i) => d.addSource(new DhtSource(`dht ${i + 1}`, n)));
    for (const src of clientSources('client', client)) d.addSource(src);
    assert.deepEqual(d.sources.map((x) => `${x.id}:${x.kind}`), ['dht 1:dht', 'dht 2:dht', 'dht 3:dht', 'dht 4:dht', 'dht 5:dht', 'client:client', 'client dht:dht']);
    const sinkPort = (sink.address()).port;
    void nodes[0]!.ping({ host: '127.0.0.1', port: sinkPort });
    const base = d.baseUrl;

    // The JSON state: every node has a table; buckets add up; the ping is in flight on dht 1.
    type DhtSourceJson = { id: string; kind: string; state: DhtState };
    const state = await until('the client\'s DHT node knows nodes', async () => {
      const st = JSON.parse((await http(`${base}api/state`)).body) as { sources: DhtSourceJson[] };
      return st.sources.find((x) => x.id === 'client dht')!.state.nodes > 0 ? st : undefined;
    });
    for (const x of state.sources.filter((y) => y.kind === 'dht')) {
      assert.ok(x.state.nodes > 0, `${x.id} has nodes`);
      assert.equal(x.state.buckets.reduce((a, b) => a + b.nodes, 0), x.state.nodes);
      assert.match(x.state.id, /^[0-9a-f]{40}$/);
      assert.match(x.state.address, /^127\.0\.0\.1:\d+$/);
    }
    const dht1 = state.sources.find((x) => x.id === 'dht 1')!.state;
    assert.ok(dht1.lookups.some((l) => l.kind === 'ping' && l.phase === 'ping' && l.inflight === 1), JSON.stringify(dht1.lookups));
    assert.ok(dht1.queriesReceived > 0, 'the others asked dht 1');

    // The routing tables as CSV: one row per entry, labelled by source.
    const table = parseCsv((await http(`${base}dht_nodes.csv`)).body);
    assert.deepEqual(table[0], ['source', ...DHT_NODE_COLUMNS]);
    const c = (name: string): number => table[0]!.indexOf(name);
    const ports = new Set([...nodes.map((n) => n.address.port), client.dht!.address.port]);
    for (const r of table.slice(1)) {
      assert.match(r[c('node_id')]!, /^[0-9a-f]{40}$/);
      const m = /^127\.0\.0\.1:(\d+)$/.exec(r[c('address')]!);
      assert.ok(m !== null && ports.has(Number(m[1])), `${r[c('address')]} is one of the test's nodes`);
      assert.ok(['good', 'questionable', 'bad'].includes(r[c('state')]!));
      assert.ok(['true', 'false'].includes(r[c('replacement')]!));
    }
    assert.deepEqual([...new Set(table.slice(1).map((r) => r[0]))].sort(), ['client dht', 'dht 1', 'dht 2', 'dht 3', 'dht 4', 'dht 5']);
    const buckets = parseCsv((await http(`${base}dht_buckets.csv`)).body);
    assert.deepEqual(buckets[0], ['source', ...DHT_BUCKET_COLUMNS]);
    const bc = (name: string): number => buckets[0]!.indexOf(name);
    for (const r of buckets.slice(1)) {
      assert.match(r[bc('prefix')]!, /^[01]*$/);
      assert.equal(r[bc('prefix')]!.length, Number(r[bc('depth')]));
      assert.equal(Number(r[bc('good')]) + Number(r[bc('questionable')]) + Number(r[bc('bad')]), Number(r[bc('nodes')]));
    }

    // Prometheus: one family each, every sample labelled by source.
    const fams = checkExposition((await http(`${base}metrics`)).body);
    for (const name of ['peerkit_dht_nodes', 'peerkit_dht_replacement_nodes', 'peerkit_dht_buckets', 'peerkit_dht_bucket_nodes', 'peerkit_dht_operations', 'peerkit_dht_transactions', 'peerkit_dht_queries_received_total', 'peerkit_dht_responses_received_total', 'peerkit_dht_malformed_messages_total', 'peerkit_dht_unmatched_responses_total', 'peerkit_dht_sent_datagrams_total', 'peerkit_dht_stored_peers', 'peerkit_dht_stored_infohashes', 'peerkit_dht_stored_items']) {
      assert.ok(fams.has(name), name);
    }
    assert.ok(fams.get('peerkit_dht_nodes')!.some((l) => /^peerkit_dht_nodes\{source="dht 1",state="good"\} [1-9]/.test(l)));
    assert.ok(fams.get('peerkit_dht_nodes')!.some((l) => /^peerkit_dht_nodes\{source="client dht",state="good"\} [1-9]/.test(l)));
    assert.ok(fams.get('peerkit_dht_operations')!.includes('peerkit_dht_operations{source="dht 1",kind="ping"} 1'));
    assert.ok(fams.get('peerkit_dht_operations')!.includes('peerkit_dht_operations{source="dht 1",kind="get_peers"} 0'), 'an idle kind reads 0');
    assert.ok(fams.get('peerkit_dht_queries_received_total')!.some((l) => /^peerkit_dht_queries_received_total\{source="dht 1"\} [1-9]/.test(l)));
    assert.ok(fams.get('peerkit_dht_bucket_nodes')!.every((l) => /\{source="[^"]+",bucket="\d+"\} \d+$/.test(l)));

    // The charts: nodes in the table for every DHT source.
    const history = await until('DHT chart series', async () => {
      const h = JSON.parse((await http(`${base}api/history`)).body) as { charts: Record<string, Record<string, (number | null)[]>> };
      return h.charts.dht_nodes?.['client dht']?.some((v) => v !== null && v > 0) ? h : undefined;
    });
    assert.deepEqual(Object.keys(history.charts.dht_nodes!).sort(), ['client dht', 'dht 1', 'dht 2', 'dht 3', 'dht 4', 'dht 5']);
    assert.ok(history.charts.dht_queries !== undefined);
  } finally {
    await d.close();
    await client?.close();
    await Promise.all(nodes.map((n) => n.close()));
    sink.close();
  }
});

test('startDhtDashboard (for peerkit dht --dashboard): nothing without --dashboard; with it, the node as source `dht`', { timeout: 30_000 }, async () => {
  const node = await DhtNode.start({ host: '127.0.0.1', port: 0 });
  const said: string[] = [];
  try {
    assert.equal(await startDhtDashboard({}, node, (l) => said.push(l)), undefined);
    await assert.rejects(startDhtDashboard({ dashboard: '0.0.0.0:0' }, node, () => undefined, {}), /without an access token/);
    const d = await startDhtDashboard({ dashboard: '127.0.0.1:0' }, node, (l) => said.push(l), {});
    try {
      assert.deepEqual(said, [`dashboard: ${d!.url}`]);
      const st = JSON.parse((await http(`${d!.baseUrl}api/state`)).body) as { sources: { id: string; kind: string; state: DhtState }[] };
      assert.deepEqual(st.sources.map((x) => [x.id, x.kind, x.state.address]), [['dht', 'dht', `127.0.0.1:${node.address.port}`]]);
    } finally {
      await d!.close();
    }
  } finally {
    await node.close();
  }
});

test('a token-protected dashboard refuses every request without the right token', { timeout: 30_000 }, async () => {
  const token = 'tok-0123456789abcdef';
  const tracker = await startTracker({ host: '127.0.0.1', http: 0, udp: false });
  const d = await startDashboard({ token, sources: [new TrackerSource('tracker', tracker)] });
  try {
    assert.equal(d.url, `${d.baseUrl}?token=${token}`);
    for (const path of ['', 'index.html', 'app.js', 'app.css', 'uPlot.iife.min.js', 'events', 'api/state', 'api/history', 'metrics', 'swarms.csv', 'nothing']) {
      const none = await http(d.baseUrl + path);
      assert.equal(none.status, 401, `/${path} without a token`);
      assert.match(String(none.headers['www-authenticate']), /^Bearer/);
      assert.doesNotMatch(none.body, /peerkit_|swarms|<html/, 'nothing leaks');
      assert.equal((await http(`${d.baseUrl}${path}?token=tok-0123456789abcdeX`)).status, 401, `/${path} with a wrong token`);
      assert.equal((await http(d.baseUrl + path, { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status, 401);
    }
    const ok = await http(`${d.baseUrl}metrics?token=${token}`);
    assert.equal(ok.status, 200);
    assert.match(ok.body, /peerkit_tracker_torrents\{source="tracker"\} 0/);
    assert.equal((await http(`${d.baseUrl}swarms.csv`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
    const page = await http(d.url);
    assert.equal(page.status, 200);
    assert.ok(page.body.includes(`src="app.js?token=${token}"`), 'the page asks for its assets with the token');
    // With a token, the Host check is not needed (the token is the guard).
    assert.equal((await http(d.url, { headers: { host: 'dashboard.example' } })).status, 200);
    const [hello] = await events(`${d.baseUrl}events?token=${token}`, 1);
    assert.equal(hello!.event, 'hello');
  } finally {
    await d.close();
    await tracker.close();
  }
});

test('startDashboard: a non-loopback bind without a token, a bad token, too many event streams', { timeout: 30_000 }, async () => {
  await assert.rejects(startDashboard({ host: '0.0.0.0' }), /without an access token/);
  await assert.rejects(startDashboard({ host: '::' }), /without an access token/);
  await assert.rejects(startDashboard({ token: 'short' }), /16 to 256/);
  const d = await startDashboard({ maxStreams: 1 });
  try {
    const open = request(`${d.baseUrl}events`, { agent: false });
    const opened = new Promise<void>((resolve) => open.on('response', () => resolve()));
    open.on('error', () => undefined);
    open.end();
    await opened;
    const second = await http(`${d.baseUrl}events`);
    assert.equal(second.status, 503);
    open.destroy();
    const s = JSON.parse((await http(`${d.baseUrl}api/state`)).body) as StateJson;
    assert.deepEqual(s.sources, []);
  } finally {
    await d.close();
  }
});

test('--dashboard on peerkit tracker, peerkit seed (with its DHT node) and peerkit dht; refused on 0.0.0.0 without a token', { timeout: 60_000 }, async () => {
  const r = spawnSync(process.execPath, [bin, 'tracker', '--http', '0', '--dashboard', '0.0.0.0:0'], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^peerkit: --dashboard: refusing to serve the dashboard on 0\.0\.0\.0 without an access token/);
  const r2 = spawnSync(process.execPath, [bin, 'tracker', '--http', '0', '--dashboard-token', 'abcdefghijklmnopq'], { encoding: 'utf8', timeout: 10_000 });
  assert.match(r2.stderr, /--dashboard-token needs --dashboard/);

  const runUntilUrl = async (args: string[], stream: 'stdout' | 'stderr', env: NodeJS.ProcessEnv = process.env): Promise<{ url: string; stop: () => Promise<number | null> }> => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no dashboard URL from ${args.join(' ')}`)), 15_000);
      createInterface({ input: child[stream]! }).on('line', (l) => {
        const m = /dashboard: (http:\/\/127\.0\.0\.1:\d+\/\S*)/.exec(l);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.once('exit', () => reject(new Error(`${args.join(' ')} exited before printing its dashboard`)));
    }).catch((e: unknown) => {
      child.kill('SIGKILL');
      throw e;
    });
    return {
      url,
      stop: async () => {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        const code = await exit;
        clearTimeout(t);
        return code;
      },
    };
  };

  const token = 'env-token-0123456789';
  const tr = await runUntilUrl(['tracker', '--http', '0', '--udp', '0', '--dashboard', '127.0.0.1:0'], 'stdout', { ...process.env, PEERKIT_DASHBOARD_TOKEN: token });
  try {
    assert.ok(tr.url.endsWith(`?token=${token}`), 'the token from the environment is required and shown in the URL');
    assert.equal((await http(tr.url.replace(/\?.*/, ''))).status, 401);
    const s = JSON.parse((await http(tr.url.replace('/?', '/api/state?'))).body) as StateJson;
    assert.deepEqual(s.sources.map((x) => x.kind), ['tracker']);
  } finally {
    assert.equal(await tr.stop(), 0);
  }

  // `seed --bootstrap` (the DHT on): the dashboard shows the client and its DHT node, which joins the test's node.
  const swarm = await startSwarm({ bytes: 100_000, dhtNodes: 1 });
  try {
    const torrentFile = join(swarm.work, 'dash.torrent');
    await writeFile(torrentFile, swarm.torrent);
    const boot = `127.0.0.1:${swarm.dhtNodes[0]!.address.port}`;
    const seed = await runUntilUrl(['seed', torrentFile, '-d', join(swarm.work, 'seeder'), '-p', '0', '--host', '127.0.0.1', '--bootstrap', boot, '-q', '--dashboard', '0'], 'stderr');
    try {
      const s = await until('the seeding torrent and its DHT node in a table', async () => {
        const j = JSON.parse((await http(`${seed.url}api/state`)).body) as StateJson;
        const t = (j.sources[0]?.state.torrents as { state: string; progress: number }[] | undefined)?.[0];
        return t?.state === 'seeding' && Number(j.sources[1]?.state.nodes) > 0 ? j : undefined;
      });
      assert.deepEqual(s.sources.map((x) => [x.id, x.kind]), [['client', 'client'], ['client dht', 'dht']]);
      assert.match((await http(`${seed.url}metrics`)).body, /^peerkit_dht_nodes\{source="client dht",state="good"\} [1-9]/m);
    } finally {
      assert.equal(await seed.stop(), 0);
    }
    // `get --seed --dashboard`: the download, then the same process seeding, on its dashboard; SIGTERM once complete exits 0.
    const got = await runUntilUrl(['get', torrentFile, '-o', join(swarm.work, 'get-seed'), '-p', '0', '--host', '127.0.0.1', '--peer', `127.0.0.1:${swarm.seeder.port}`, '--seed', '-q', '--dashboard', '0'], 'stderr');
    try {
      const s = await until('the downloaded torrent seeding on the get --seed dashboard', async () => {
        const j = JSON.parse((await http(`${got.url}api/state`)).body) as StateJson;
        const t = (j.sources[0]?.state.torrents as { state: string; progress: number }[] | undefined)?.[0];
        return t?.state === 'seeding' && t.progress === 1 ? j : undefined;
      });
      assert.deepEqual(s.sources.map((x) => [x.id, x.kind]), [['client', 'client']]);
      assert.match((await http(`${got.url}torrents.csv`)).body, new RegExp(swarm.metainfo.infoHashHex));
    } finally {
      assert.equal(await got.stop(), 0);
    }
    assert.ok((await readFile(join(swarm.work, 'get-seed', swarm.metainfo.name))).equals(await readFile(join(swarm.work, 'seeder', swarm.metainfo.name))), 'the copy is the seeder\'s file');
    // `peerkit dht --dashboard`: the node alone, joined to the test's node.
    const dht = await runUntilUrl(['dht', '--port', '0', '--bootstrap', boot, '--dashboard', '0'], 'stdout');
    try {
      const s = await until('the DHT node with nodes in its table', async () => {
        const j = JSON.parse((await http(`${dht.url}api/state`)).body) as StateJson;
        return Number(j.sources[0]?.state.nodes) > 0 ? j : undefined;
      });
      assert.deepEqual(s.sources.map((x) => [x.id, x.kind]), [['dht', 'dht']]);
      assert.match((await http(`${dht.url}metrics`)).body, /^peerkit_dht_nodes\{source="dht",state="good"\} [1-9]/m);
    } finally {
      assert.equal(await dht.stop(), 0);
    }
  } finally {
    await swarm.close();
  }
});
