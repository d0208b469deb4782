/**
 * The dashboard in a real browser: headless Chromium (the Debian package,
 * /usr/bin/chromium, installed by .ci/run) driven by playwright-core.
 *
 * 1. The running demo (dist/scripts/demo.js --keep, as `npm run demo` runs
 *    it, with a smaller file and an upload limit so the transfer can be
 *    watched): the test reads the dashboard URL it prints, opens it, sees
 *    peers appear, rates change, every leecher reach 100 %, the charts
 *    advance on every update at the default 1 s tick, the piece maps show
 *    availability (the seeder's too), the DHT panel and its aggregated
 *    charts; downloads peers.csv and torrents.csv and parses them (real
 *    choke/interest values, rates, bytes, ratios; equal to /api/state of the
 *    same snapshot); checks the whole /metrics against Prometheus
 *    conventions; checks the layout at 1024 px; saves screenshots; then
 *    stops the demo with SIGINT: exit code 0 and no work folder left.
 * 2. A small in-process swarm with a hostile client name: shown as text,
 *    never run, and written to the CSV with the formula guard.
 * 3. A token-protected dashboard refuses the page without its token.
 *
 * Chromium must not contact the internet: background networking, component
 * updates, sync and the like are off, every host name but 127.0.0.1 fails to
 * resolve, and the test aborts (and fails on) any request not to 127.0.0.1.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { parseCsv } from '../src/dashboard/csv.js';
import { PEER_COLUMNS, TORRENT_COLUMNS, type ClientState } from '../src/dashboard/client-source.js';
import type { DhtState } from '../src/dashboard/dht-source.js';
import { startDashboard } from '../src/dashboard/server.js';
import { TrackerSource } from '../src/dashboard/tracker-source.js';
import { startTracker } from '../src/tracker/index.js';
import { checkPrometheus } from './dashboard-prometheus.js';
import { startSwarm } from './dashboard-swarm.js';

const CHROMIUM = '/usr/bin/chromium';
const DEMO = join(import.meta.dirname, '..', 'scripts', 'demo.js');

/*
 * The functions below run in the page (Playwright sends their source; the
 * page's CSP forbids string evaluation). The project compiles without the
 * DOM library, so they reach the DOM through these few declared shapes.
 */
interface PageElement {
  readonly dataset: Record<string, string | undefined>;
  readonly textContent: string | null;
  readonly scrollWidth: number;
  readonly clientWidth: number;
  readonly parentElement: PageElement | null;
  querySelector(selector: string): PageElement | null;
  getBoundingClientRect(): { left: number; right: number; width: number; top: number };
}
interface PageGlobals {
  document: { body: PageElement; querySelector(selector: string): PageElement | null; querySelectorAll(selector: string): Iterable<PageElement>; getElementById(id: string): PageElement | null };
  getComputedStyle(e: PageElement): { textTransform: string };
  MutationObserver: new (callback: () => void) => { observe(target: unknown, options: { childList: boolean; subtree: boolean; characterData?: boolean }): void };
  __watch?: Watch;
  __pwned?: number;
}
/** What the page recorder saw, update by update. */
interface Watch {
  downRates: number[];
  upRates: number[];
  maxPeerRows: number;
  maxTorrentRate: number;
  seederRarestMax: number;
  /** At every update: the number shown, and the download chart's points and last time. */
  updates: { states: number; points: number; lastT: number }[];
}

/** Flags that keep Chromium off the network: only the dashboard on 127.0.0.1 is reachable. */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-extensions',
  '--disable-domain-reliability',
  '--disable-client-side-phishing-detection',
  '--disable-breakpad',
  '--no-pings',
  '--no-default-browser-check',
  '--metrics-recording-only',
  '--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication,CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
];

/** Requests the pages made to anything but 127.0.0.1 (aborted); each test checks it made none. */
const outside: string[] = [];
let shared: Promise<BrowserContext> | undefined;
let profile: string | undefined;

/**
 * Chromium with a fresh profile folder (launched once for this file), whose
 * pages reach 127.0.0.1 only: anything else is aborted and recorded in `outside`.
 */
function browser(): Promise<BrowserContext> {
  shared ??= (async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install the Debian package chromium (.ci/run does)`);
    profile = await mkdtemp(join(tmpdir(), 'peerkit-chromium-'));
    const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30_000, acceptDownloads: true, viewport: { width: 1440, height: 1100 }, serviceWorkers: 'block' });
    await context.route('**/*', async (route) => {
      const url = new URL(route.request().url());
      if ((url.protocol === 'http:' && url.hostname === '127.0.0.1') || url.protocol === 'data:') await route.continue();
      else {
        outside.push(url.href);
        await route.abort('blockedbyclient');
      }
    });
    return context;
  })();
  return shared;
}

after(async () => {
  if (shared) await (await shared).close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

async function downloadCsv(page: Page, link: string): Promise<string[][]> {
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 15_000 }), page.click(`a[data-link="${link}"]`)]);
  assert.equal(download.suggestedFilename(), `peerkit-${link}`);
  return parseCsv(await readFile(await download.path(), 'utf8'));
}

function get(url: string): Promise<{ status: number; body: string; snapshot: string | undefined }> {
  return new Promise((resolve, reject) => {
    request(url, { agent: false, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8'), snapshot: res.headers['x-peerkit-snapshot'] as string | undefined }));
    })
      .on('error', reject)
      .end();
  });
}

async function outputDir(): Promise<string> {
  const base = process.env.PEERKIT_TEST_OUTPUT ?? tmpdir();
  await mkdir(base, { recursive: true });
  return mkdtemp(join(base, 'peerkit-dashboard-shots-'));
}

async function screenshot(page: Page, path: string): Promise<void> {
  await page.screenshot({ path, fullPage: true });
  assert.deepEqual([...(await readFile(path)).subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${path} is a PNG`);
}

/** The demo as a child process; its stdout lines, and a way to wait for one. */
function startDemo(args: string[], env: NodeJS.ProcessEnv): { lines: string[]; waitFor: (re: RegExp, ms: number) => Promise<RegExpExecArray>; exit: Promise<number | null>; child: ReturnType<typeof spawn>; stderr: () => string } {
  const child = spawn(process.execPath, [DEMO, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (m: RegExpExecArray) => void }[] = [];
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  createInterface({ input: child.stdout! }).on('line', (l) => {
    lines.push(l);
    for (const w of [...waiters]) {
      const m = w.re.exec(l);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const waitFor = (re: RegExp, ms: number): Promise<RegExpExecArray> => {
    for (const l of lines) {
      const m = re.exec(l);
      if (m) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the demo did not print ${re} within ${ms} ms; stdout:\n${lines.join('\n')}\nstderr:\n${err}`)), ms);
      waiters.push({
        re,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
      void exit.then(() => setTimeout(() => reject(new Error(`the demo exited before printing ${re}; stdout:\n${lines.join('\n')}\nstderr:\n${err}`)), 100));
    });
  };
  return { lines, waitFor, exit, child, stderr: () => err };
}

/** In the page: records every update (rates shown, peer rows, the seeder's piece-map availability, the chart's points). */
function installWatch(): void {
  const d = (globalThis as unknown as PageGlobals).document;
  const w: Watch = { downRates: [], upRates: [], maxPeerRows: 0, maxTorrentRate: 0, seederRarestMax: 0, updates: [] };
  (globalThis as unknown as PageGlobals).__watch = w;
  new ((globalThis as unknown as PageGlobals).MutationObserver)(() => {
    const states = Number(d.body.dataset.states ?? 0);
    if (w.updates.length > 0 && w.updates[w.updates.length - 1]!.states === states) return;
    w.downRates.push(Number(d.getElementById('total-down')?.dataset.value ?? 0));
    w.upRates.push(Number(d.getElementById('total-up')?.dataset.value ?? 0));
    w.maxPeerRows = Math.max(w.maxPeerRows, [...d.querySelectorAll('#peers tbody tr')].length);
    for (const td of d.querySelectorAll('#torrents td.rate-down')) w.maxTorrentRate = Math.max(w.maxTorrentRate, Number(td.dataset.value));
    w.seederRarestMax = Math.max(w.seederRarestMax, Number(d.querySelector('#torrents tr.pieces-row[data-for="seeder"] .piecemap')?.dataset.rarestMax ?? 0));
    const chart = d.querySelector('.chart[data-chart="download"]');
    w.updates.push({ states, points: Number(chart?.dataset.points ?? 0), lastT: Number(chart?.dataset.lastT ?? 0) });
  }).observe(d.getElementById('clock'), { childList: true, subtree: true, characterData: true });
}

type Sources = { id: string; kind: string; state: unknown }[];

test('the running demo in headless Chromium: peers appear, rates change, 100 % everywhere, live charts, piece maps, DHT, CSV downloads, /metrics, 1024 px, screenshots, SIGINT', { timeout: 150_000 }, async (t) => {
  const demoTmp = await mkdtemp(join(tmpdir(), 'peerkit-demo-tmp-'));
  const shots = await outputDir();
  const context = await browser(); // before the demo: the page opens as soon as the URL is printed
  outside.length = 0;
  const demo = startDemo(['--keep', '--size', '10', '--limit', '1'], { ...process.env, TMPDIR: demoTmp });
  try {
    const url = (await demo.waitFor(/^dashboard: (http:\/\/127\.0\.0\.1:\d+\/)$/, 30_000))[1]!;
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
    const res = await page.goto(url, { timeout: 15_000 });
    assert.equal(res?.status(), 200);
    await page.waitForSelector('#status.live', { timeout: 15_000 });
    const leechersStartedBefore = demo.lines.some((l) => l.startsWith('== a seeder and'));
    const firstRows = await page.locator('#peers tbody tr').count();
    await page.evaluate(installWatch);
    assert.equal(await page.evaluate(() => (globalThis as unknown as PageGlobals).document.body.dataset.intervalMs), '1000', 'the default tick: an update every second');

    // Peers appear (none before the clients start: the page was live before the demo reached them).
    assert.ok(firstRows === 0 || leechersStartedBefore, `no peers at first (${firstRows})`);
    await page.waitForFunction(() => [...(globalThis as unknown as PageGlobals).document.querySelectorAll('#peers tbody tr')].length >= 5, undefined, { timeout: 40_000 });
    const addresses = await page.locator('#peers tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-address') ?? ''));
    for (const a of addresses) assert.match(a, /^127\.0\.0\.1:\d+$/);

    // Rates move: the total shown changes between updates and goes above zero.
    await page.waitForFunction(() => new Set((globalThis as unknown as PageGlobals).__watch!.downRates).size >= 3 && Math.max(...(globalThis as unknown as PageGlobals).__watch!.downRates) > 0, undefined, { timeout: 30_000 });
    await screenshot(page, join(shots, 'demo-transfer-1440.png'));

    // Mid-transfer, over HTTP: /api/state, peers.csv and torrents.csv of one snapshot agree value for value.
    let same: { state: Sources; peers: string[][]; torrents: string[][] } | undefined;
    for (let i = 0; i < 10 && same === undefined; i++) {
      const [st, pc, tc] = [await get(`${url}api/state`), await get(`${url}peers.csv`), await get(`${url}torrents.csv`)];
      if (st.snapshot !== undefined && st.snapshot === pc.snapshot && pc.snapshot === tc.snapshot) same = { state: (JSON.parse(st.body) as { sources: Sources }).sources, peers: parseCsv(pc.body), torrents: parseCsv(tc.body) };
    }
    assert.ok(same, 'the JSON and the CSVs of one snapshot');
    const cell = (v: unknown): string => (v === null ? '' : String(v));
    const clientStates = same.state.filter((s) => s.kind === 'client').map((s) => ({ id: s.id, state: s.state as ClientState }));
    assert.deepEqual(same.peers.slice(1), clientStates.flatMap((c) => c.state.peers.map((p) => [c.id, p.torrent, p.torrentName, p.address, p.client, p.direction, p.amChoking, p.amInterested, p.peerChoking, p.peerInterested, p.downloadRate, p.uploadRate, p.downloaded, p.uploaded, p.ratio, p.progress].map(cell))));
    assert.deepEqual(same.torrents.slice(1), clientStates.flatMap((c) => c.state.torrents.map((x) => [c.id, x.infoHash, x.name, x.state, x.size, x.progress, x.piecesDone, x.pieceCount, x.downloadRate, x.uploadRate, x.downloaded, x.uploaded, x.wasted, x.ratio, x.peers].map(cell))));

    // The peers CSV as a user downloads it, mid-transfer: real values.
    const peersCsv = await downloadCsv(page, 'peers.csv');
    assert.deepEqual(peersCsv[0], ['source', ...PEER_COLUMNS]);
    const pc = (r: string[], name: string): string => r[peersCsv[0]!.indexOf(name)]!;
    const peerRows = peersCsv.slice(1);
    assert.ok(peerRows.length >= 5, `peer rows: ${peerRows.length}`);
    for (const r of peerRows) {
      assert.match(pc(r, 'address'), /^127\.0\.0\.1:\d+$/);
      assert.equal(pc(r, 'client'), 'peerkit 0.1.0');
      for (const f of ['am_choking', 'am_interested', 'peer_choking', 'peer_interested']) assert.ok(['true', 'false'].includes(pc(r, f)), `${f}: ${pc(r, f)}`);
      for (const f of ['download_rate_bytes_per_second', 'upload_rate_bytes_per_second', 'downloaded_bytes', 'uploaded_bytes']) assert.ok(Number(pc(r, f)) >= 0, `${f}: ${pc(r, f)}`);
      const down = Number(pc(r, 'downloaded_bytes'));
      const up = Number(pc(r, 'uploaded_bytes'));
      if (down > 0) assert.ok(Math.abs(Number(pc(r, 'ratio')) - up / down) < 1e-9, 'ratio = uploaded / downloaded');
      else assert.equal(pc(r, 'ratio'), '');
      assert.ok(Number(pc(r, 'progress')) >= 0 && Number(pc(r, 'progress')) <= 1);
    }
    // A seeder is not interested in anyone and its leechers are in it; the two directions differ.
    const seederRows = peerRows.filter((r) => r[0] === 'seeder');
    assert.ok(seederRows.length > 0 && seederRows.every((r) => pc(r, 'am_interested') === 'false'), 'the seeder wants nothing from its peers');
    assert.ok(seederRows.some((r) => pc(r, 'peer_interested') === 'true'), 'a leecher is interested in the seeder');
    assert.ok(peerRows.some((r) => pc(r, 'am_choking') !== pc(r, 'peer_choking')), 'choking differs between the two sides somewhere');
    assert.ok(peerRows.some((r) => Number(pc(r, 'downloaded_bytes')) > 0) && peerRows.some((r) => Number(pc(r, 'uploaded_bytes')) > 0), 'bytes move both ways');

    // Progress reaches 100 % for every leecher, in the page.
    await page.waitForFunction(
      () => {
        const l = [...(globalThis as unknown as PageGlobals).document.querySelectorAll('#torrents tbody tr[data-source]')].filter((r) => r.dataset.source?.startsWith('leecher'));
        return l.length === 5 && l.every((r) => r.dataset.progress === '1' && r.querySelector('.bar b')?.textContent === '100.0 %');
      },
      undefined,
      { timeout: 60_000 },
    );
    await demo.waitFor(/^demo: all checks passed$/, 30_000);
    await demo.waitFor(/^keeping everything running/, 10_000);
    // The demo's own checks: the tracker saw every client that has its URL and handed peers to each leecher that asked.
    assert.ok(demo.lines.some((l) => /^ok {3}the tracker saw announces from all 5 clients with its URL \(\d+ over HTTP, \d+ over UDP\)$/.test(l)), demo.lines.join('\n'));
    assert.ok(demo.lines.some((l) => /^ok {3}the tracker handed out peers to every leecher that asked: [1-9]\d*, [1-9]\d*, [1-9]\d*, [1-9]\d* addresses$/.test(l)), demo.lines.join('\n'));
    assert.ok(!demo.lines.some((l) => l.startsWith('FAIL')));

    // What the recorder saw over the transfer.
    const w = (await page.evaluate(() => (globalThis as unknown as PageGlobals).__watch))!;
    assert.ok(w.maxPeerRows >= 5 && w.maxTorrentRate > 0, `peers and a torrent's rate seen: ${w.maxPeerRows}, ${w.maxTorrentRate}`);
    assert.ok(w.seederRarestMax > 0, 'the seeder\'s piece map showed pieces held by its peers, not just its own');
    // The charts advance with every update: one point more each time, later each time (until the 600-point window is full).
    let compared = 0;
    for (let i = 1; i < w.updates.length; i++) {
      const [a, c] = [w.updates[i - 1]!, w.updates[i]!];
      if (a.points === 0) continue; // the chart appears with the first client, with the history so far
      assert.equal(c.points - a.points, c.states - a.states, `update ${i}: a point per update`);
      assert.ok(c.lastT > a.lastT, `update ${i}: a later sample`);
      compared++;
    }
    assert.ok(compared >= 8, `updates of the download chart seen: ${compared}`);
    const hist = JSON.parse((await get(`${url}api/history`)).body) as { t: number[] };
    const spacing = (hist.t[hist.t.length - 1]! - hist.t[0]!) / (hist.t.length - 1);
    t.diagnostic(`history: ${hist.t.length} samples, ${spacing.toFixed(3)} s apart on average; ${w.updates.length} updates seen by the page`);
    assert.ok(hist.t.length >= 10 && spacing <= 1.2, `about one sample a second at the default tick (a fixed cadence): ${spacing.toFixed(3)} s`);

    // The torrents CSV at the end.
    const torrentsCsv = await downloadCsv(page, 'torrents.csv');
    assert.deepEqual(torrentsCsv[0], ['source', ...TORRENT_COLUMNS]);
    const tcol = (r: string[], name: string): string => r[torrentsCsv[0]!.indexOf(name)]!;
    assert.deepEqual(torrentsCsv.slice(1).map((r) => [r[0], tcol(r, 'progress'), tcol(r, 'state')]), ['seeder', 'leecher 1', 'leecher 2', 'leecher 3', 'leecher 4', 'leecher 5'].map((s) => [s, '1', 'seeding']));
    const size = Number(tcol(torrentsCsv[1]!, 'size_bytes'));
    assert.ok(size > 9 * 1024 * 1024);
    for (const r of torrentsCsv.slice(1)) {
      const down = Number(tcol(r, 'downloaded_bytes'));
      const up = Number(tcol(r, 'uploaded_bytes'));
      if (r[0] !== 'seeder') assert.ok(down >= size, `${r[0]} downloaded the whole file`);
      assert.ok(Math.abs(Number(tcol(r, 'ratio')) - up / (down > 0 ? down : size)) < 1e-9, `${r[0]}: ratio`);
    }
    const uploaded = torrentsCsv.slice(1).reduce((n, r) => n + Number(tcol(r, 'uploaded_bytes')), 0);
    assert.ok(uploaded >= 5 * size, 'the swarm sent five copies');

    // The tracker panel: the seeder and the four leechers that use the tracker seed (the fifth is trackerless).
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.querySelector('#swarms tbody tr td.num')?.textContent === '5', undefined, { timeout: 15_000 });
    assert.equal(await page.locator('#swarms tbody tr').count(), 1);
    assert.match((await page.locator('#swarms tbody tr').textContent()) ?? '', /peerkit-demo\.bin/);
    const swarmRow = await page.locator('#swarms tbody tr td.num').allTextContents();
    assert.deepEqual(swarmRow.slice(0, 2), ['5', '0'], `seeders and leechers: ${swarmRow.join(' ')}`);

    // Piece maps: a legend, one map per torrent, and hovering a cell tells its counts.
    assert.equal(await page.locator('#pieces-legend').isVisible(), true);
    assert.equal(await page.locator('#torrents tr.pieces-row .piecemap canvas').count(), 6);
    const seederMap = page.locator('#torrents tr.pieces-row[data-for="seeder"] canvas');
    const box = (await seederMap.boundingBox())!;
    await page.mouse.move(box.x + 3, box.y + box.height / 2);
    assert.match((await page.locator('#torrents tr.pieces-row[data-for="seeder"] .readout').textContent()) ?? '', /^pieces? 0(–\d+)?: \d+ of \d+ held; (the rarest )?held by \d+ connected peers?$/);
    await page.mouse.move(0, 0);

    // The DHT panel: 20 plain nodes and each client's, each with a routing table; the selected node's buckets add up.
    const dhtRows = await page.locator('#dht-nodes tbody tr').evaluateAll((rows) => rows.map((r) => [r.getAttribute('data-source') ?? '', Number(r.getAttribute('data-nodes'))] as const));
    assert.equal(dhtRows.length, 26);
    assert.ok(dhtRows.every(([, n]) => n > 0), 'every node knows others');
    const selected = async (): Promise<{ id: string | undefined; nodes: number; buckets: number }> =>
      page.evaluate(() => {
        const d = (globalThis as unknown as PageGlobals).document;
        const sel = [...d.querySelectorAll('#dht-nodes tbody tr.selected')][0];
        return { id: sel?.dataset.source, nodes: Number(sel?.dataset.nodes), buckets: [...d.querySelectorAll('#dht-buckets tbody tr')].reduce((n, r) => n + Number(r.dataset.nodes), 0) };
      });
    const first = await selected();
    assert.equal(first.id, 'dht 01');
    assert.equal(first.buckets, first.nodes);
    // Its charts: the median, min and max over the 26 nodes, and the selected node; selecting another shows that one.
    const dhtLegend = (): Promise<string[]> => page.locator('.chart[data-chart="dht_nodes"] .u-legend .u-series .u-label').allTextContents();
    assert.deepEqual((await dhtLegend()).slice(1), ['median', 'min', 'max', 'dht 01']);
    assert.equal(await page.locator('.chart[data-chart="dht_nodes"]').getAttribute('data-aggregate'), '26 nodes');
    await page.click('#dht-nodes tbody tr[data-source="leecher 3 dht"]');
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.getElementById('dht-selected')?.textContent?.startsWith('leecher 3 dht') === true, undefined, { timeout: 10_000 });
    assert.deepEqual((await dhtLegend()).slice(1), ['median', 'min', 'max', 'leecher 3 dht']);
    const picked = await selected();
    assert.ok(picked.id === 'leecher 3 dht' && picked.nodes > 0 && picked.buckets === picked.nodes, JSON.stringify(picked));
    const dhtState = (JSON.parse((await get(`${url}api/state`)).body) as { sources: Sources }).sources.filter((s) => s.kind === 'dht').map((s) => s.state as DhtState);
    assert.equal(dhtState.length, 26);

    // Chart legends: as written (not upper case), with the latest values rather than dashes.
    assert.equal(await page.locator('.chart .u-legend th').first().evaluate((e) => (globalThis as unknown as PageGlobals).getComputedStyle(e as unknown as PageElement).textTransform), 'none');
    const values = await page.locator('.chart[data-chart="download"] .u-legend .u-series .u-value').allTextContents();
    assert.equal(values.length, 7, 'time and six clients');
    for (const v of values.slice(1)) assert.match(v, /^\d+(\.\d+)? (B|KiB|MiB)\/s$/, `a live legend value: ${v}`);

    // The whole /metrics: Prometheus conventions, the process's figures once, everything else by source.
    const fams = checkPrometheus((await get(`${url}metrics`)).body, { requireSamples: true });
    for (const name of ['process_resident_memory_bytes', 'process_start_time_seconds', 'process_cpu_seconds_total']) assert.deepEqual(fams.get(name)?.samples.map((x) => x.labels), [{}], name);
    for (const f of fams.values()) if (!f.name.startsWith('process_')) assert.ok(f.samples.every((x) => x.labels.source !== undefined), f.name);
    assert.equal(fams.get('peerkit_dht_operations')!.samples.length, 26 * 8, 'every kind of operation for every node');
    assert.ok(!fams.has('peerkit_tracker_announces_per_second'));

    await screenshot(page, join(shots, 'demo-done-1440.png'));

    // 1024 px: every table fits its panel (no sideways scrolling), the piece maps are on screen.
    await page.setViewportSize({ width: 1024, height: 900 });
    await page.waitForFunction(() => Number((globalThis as unknown as PageGlobals).document.body.dataset.states) > 0, undefined, { timeout: 5000 });
    await page.waitForTimeout(1200); // one update at the new width
    const fit = await page.evaluate(() => ['torrents', 'dht-nodes', 'swarms', 'dht-buckets', 'peers'].map((id) => { const e = (globalThis as unknown as PageGlobals).document.getElementById(id)!; return [id, e.scrollWidth, e.parentElement!.clientWidth] as const; }));
    for (const [id, inner, outer] of fit) assert.ok(inner <= outer + 1, `#${id}: ${inner} px in ${outer} px`);
    const maps = await page.locator('#torrents tr.pieces-row canvas').evaluateAll((cs) => cs.map((c) => c.getBoundingClientRect().right));
    assert.ok(maps.every((r) => r <= 1024), `piece maps within the window: ${maps.join(', ')}`);
    await screenshot(page, join(shots, 'demo-done-1024.png'));
    t.diagnostic(`screenshots in ${shots}`);

    assert.deepEqual(pageErrors, [], 'no errors in the page');
    assert.deepEqual(outside, [], 'the browser asked for nothing but 127.0.0.1');

    // Ctrl-C: everything closed, exit code 0, the work folder gone.
    demo.child.kill('SIGINT');
    assert.equal(await demo.exit, 0, demo.stderr());
    assert.ok(demo.lines.includes('demo: SIGINT, shutting down'));
    assert.deepEqual(await readdir(demoTmp), [], 'nothing left in the temp folder');
    await page.close();
  } finally {
    demo.child.kill('SIGKILL');
    await rm(demoTmp, { recursive: true, force: true });
  }
});

// Starts like a formula (the CSV guard), has quotes and a comma (CSV quoting) and markup (the page must show it as text).
const HOSTILE = '=1+2<img src=x onerror="window.__pwned=1">"\',&amp;';

test('a hostile client name in Chromium: shown as text, never run; in the CSV with the formula guard', { timeout: 60_000 }, async () => {
  const [swarm, context] = await Promise.all([startSwarm({ bytes: 3 * 1024 * 1024 - 4321, seederUploadLimit: 512 * 1024 }), browser()]);
  outside.length = 0;
  const page = await context.newPage();
  try {
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    assert.equal((await page.goto(swarm.dashboard.url, { timeout: 15_000 }))?.status(), 200);
    await page.waitForSelector('#status.live', { timeout: 15_000 });
    await swarm.addLeecher(HOSTILE);
    await page.waitForFunction((name) => [...(globalThis as unknown as PageGlobals).document.querySelectorAll('#peers tr[data-source="seeder"] td.software')].some((td) => td.textContent === name), HOSTILE, { timeout: 30_000 });
    assert.equal(await page.evaluate(() => (globalThis as unknown as PageGlobals).__pwned), undefined);
    assert.equal(await page.locator('main img').count(), 0, 'no element made from a peer name');
    // The CSV taken now holds the row the page shows: the name comes back with its leading apostrophe, nothing else changed.
    const csv = await downloadCsv(page, 'peers.csv');
    const col = csv[0]!.indexOf('client');
    const seederRows = csv.slice(1).filter((r) => r[0] === 'seeder');
    assert.deepEqual(seederRows.map((r) => r[col]), [`'${HOSTILE}`]);
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(outside, []);
  } finally {
    await page.close();
    await swarm.close();
  }
});

test('a token-protected dashboard in Chromium: refused without the token, live with it', { timeout: 60_000 }, async () => {
  const token = 'browser-token-0123456789';
  const tracker = await startTracker({ host: '127.0.0.1', http: 0, udp: false });
  const d = await startDashboard({ token, sources: [new TrackerSource('tracker', tracker)] });
  const context = await browser();
  outside.length = 0;
  const page = await context.newPage();
  try {
    const refused = await page.goto(d.baseUrl, { timeout: 15_000 });
    assert.equal(refused?.status(), 401);
    assert.match((await page.textContent('body')) ?? '', /needs its access token/);
    const wrong = await page.goto(`${d.baseUrl}?token=browser-token-0123456780`, { timeout: 15_000 });
    assert.equal(wrong?.status(), 401);
    const metrics = await page.goto(`${d.baseUrl}metrics`, { timeout: 15_000 });
    assert.equal(metrics?.status(), 401);

    const ok = await page.goto(d.url, { timeout: 15_000 });
    assert.equal(ok?.status(), 200);
    await page.waitForSelector('#status.live', { timeout: 15_000 });
    assert.equal(await page.isVisible('#tracker-panel'), true);
    const href = await page.locator('a[data-link="metrics"]').getAttribute('href');
    assert.equal(href, `metrics?token=${token}`, 'links carry the token');
    assert.deepEqual(outside, []);
  } finally {
    await page.close();
    await d.close();
    await tracker.close();
  }
});
