/**
 * The dashboard in a real browser: headless Chromium (the Debian package,
 * /usr/bin/chromium, installed by .ci/run) driven by playwright-core. It
 * opens the dashboard of a running swarm on 127.0.0.1 (tracker, seeder,
 * leechers, one of them with a hostile client name, and a small DHT every
 * client joins), sees the peers appear, the rates move and every leecher
 * reach 100 %, sees the DHT panel (every node with a non-empty routing
 * table, the selected node's buckets), downloads the CSV exports and parses them, saves a screenshot, and checks that a token-protected
 * dashboard refuses the page without its token.
 *
 * Chromium must not contact the internet: background networking, component
 * updates, sync and the like are off, every host name but 127.0.0.1 fails to
 * resolve, and the test aborts (and fails on) any request not to 127.0.0.1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { parseCsv } from '../src/dashboard/csv.js';
import { PEER_COLUMNS, TORRENT_COLUMNS } from '../src/dashboard/client-source.js';
import { DHT_NODE_COLUMNS } from '../src/dashboard/dht-source.js';
import { startDashboard } from '../src/dashboard/server.js';
import { TrackerSource } from '../src/dashboard/tracker-source.js';
import { startTracker } from '../src/tracker/index.js';
import { completes, startSwarm } from './dashboard-swarm.js';

const CHROMIUM = '/usr/bin/chromium';

/*
 * The functions below run in the page (Playwright sends their source; the
 * page's CSP forbids string evaluation). The project compiles without the
 * DOM library, so they reach the DOM through these few declared shapes.
 */
interface PageElement {
  readonly dataset: Record<string, string | undefined>;
  readonly textContent: string | null;
  querySelector(selector: string): PageElement | null;
}
interface PageGlobals {
  document: { querySelectorAll(selector: string): Iterable<PageElement>; getElementById(id: string): PageElement | null };
  MutationObserver: new (callback: () => void) => { observe(target: unknown, options: { childList: boolean; subtree: boolean }): void };
  __maxDown?: number;
  __pwned?: number;
}
const HOSTILE = '<img src=x onerror="window.__pwned=1">"\'&amp;';

/** Flags that keep Chromium off the network: only the dashboard on 127.0.0.1 is reachable. */
const CHROMIUM_ARGS = [
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-default-apps',
  '--disable-extensions',
  '--disable-sync',
  '--disable-domain-reliability',
  '--disable-client-side-phishing-detection',
  '--disable-breakpad',
  '--no-pings',
  '--no-first-run',
  '--no-default-browser-check',
  '--metrics-recording-only',
  '--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication,CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
];

async function launch(): Promise<Browser> {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install the Debian package chromium (.ci/run does)`);
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30_000 });
}

/** A context whose pages can reach 127.0.0.1 only; anything else is aborted and recorded. */
async function loopbackContext(browser: Browser, outside: string[]): Promise<BrowserContext> {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1440, height: 1200 }, serviceWorkers: 'block' });
  await context.route('**/*', async (route) => {
    const url = new URL(route.request().url());
    if (url.protocol === 'http:' && url.hostname === '127.0.0.1') await route.continue();
    else if (url.protocol === 'data:') await route.continue();
    else {
      outside.push(url.href);
      await route.abort('blockedbyclient');
    }
  });
  return context;
}

async function downloadCsv(page: Page, link: string): Promise<string[][]> {
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 15_000 }), page.click(`a[data-link="${link}"]`)]);
  assert.equal(download.suggestedFilename(), `peerkit-${link}`);
  const path = await download.path();
  return parseCsv(await readFile(path, 'utf8'));
}

test('the dashboard in headless Chromium: peers appear, rates move, progress reaches 100 %, the DHT panel shows every node and its buckets, CSV downloads, screenshot', { timeout: 180_000 }, async (t) => {
  const swarm = await startSwarm({ bytes: 6 * 1024 * 1024 - 4321, seederUploadLimit: 1024 * 1024, intervalMs: 250, dhtNodes: 6 });
  let browser: Browser | undefined;
  try {
    browser = await launch();
    const outside: string[] = [];
    const context = await loopbackContext(browser, outside);
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });

    const res = await page.goto(swarm.dashboard.url, { timeout: 15_000 });
    assert.equal(res?.status(), 200);
    await page.waitForSelector('#status.live', { timeout: 15_000 });
    await page.waitForSelector('#torrents tbody tr[data-source="seeder"]', { timeout: 15_000 });
    assert.equal(await page.locator('#torrents tbody tr[data-source="seeder"]').getAttribute('data-progress'), '1');
    assert.equal(await page.locator('#peers tbody tr').count(), 0, 'no peers before the leechers start');
    assert.equal(await page.locator('#swarms tbody tr').count(), 1, 'the tracker knows the seeder');

    // Record, in the page, the largest total download rate ever shown, so a fast transfer cannot slip by.
    await page.evaluate(() => {
      const g = globalThis as unknown as PageGlobals;
      g.__maxDown = 0;
      new g.MutationObserver(() => {
        const v = Number(g.document.getElementById('total-down')?.dataset.value ?? 0);
        if (v > (g.__maxDown ?? 0)) g.__maxDown = v;
      }).observe(g.document.getElementById('summary'), { childList: true, subtree: true });
    });

    // The third starts from a magnet link, as in the demo: it shows without metadata first.
    const leechers = [await swarm.addLeecher(), await swarm.addLeecher(HOSTILE), await swarm.addLeecher(undefined, true)];

    // Peers appear.
    await page.waitForFunction(() => [...(globalThis as unknown as PageGlobals).document.querySelectorAll('#peers tbody tr')].length >= 3, undefined, { timeout: 30_000 });
    const rowSources = await page.locator('#peers tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-source')));
    assert.ok(rowSources.includes('seeder') && rowSources.some((s) => s?.startsWith('leecher')), `peers of the seeder and of leechers: ${rowSources.join(', ')}`);
    const addresses = await page.locator('#peers tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-address')));
    for (const a of addresses) assert.match(a ?? '', /^127\.0\.0\.1:\d+$/);

    // The hostile client name is shown as text, never run.
    await page.waitForFunction((name) => [...(globalThis as unknown as PageGlobals).document.querySelectorAll('#peers td.software')].some((td) => td.textContent === name), HOSTILE, { timeout: 30_000 });
    assert.equal(await page.evaluate(() => (globalThis as unknown as PageGlobals).__pwned), undefined);
    assert.equal(await page.locator('main img').count(), 0, 'no element made from a peer name');

    // The peers CSV, downloaded as a user would, while they are connected.
    const peersCsv = await downloadCsv(page, 'peers.csv');
    assert.deepEqual(peersCsv[0], ['source', ...PEER_COLUMNS]);
    assert.ok(peersCsv.length >= 2, 'peer rows');
    const clientCol = peersCsv[0]!.indexOf('client');
    assert.ok(peersCsv.slice(1).every((r) => r.length === peersCsv[0]!.length));
    assert.ok(peersCsv.slice(1).some((r) => r[clientCol] === HOSTILE) || peersCsv.slice(1).every((r) => r[clientCol] === 'peerkit 0.1.0'), 'client names survive the CSV round trip');

    // A screenshot mid-transfer (and one at the end), for people.
    const outDir = process.env.PEERKIT_TEST_OUTPUT ?? join(tmpdir(), 'peerkit-test-output');
    await mkdir(outDir, { recursive: true });
    await page.screenshot({ path: join(outDir, 'dashboard-transfer.png'), fullPage: true });

    // Rates move.
    await page.waitForFunction(() => [...(globalThis as unknown as PageGlobals).document.querySelectorAll('#torrents td.rate-down')].some((td) => Number(td.dataset.value) > 0), undefined, { timeout: 30_000 });

    // Progress reaches 100 % for every leecher, in the page.
    await Promise.all(leechers.map((l) => completes(l, 120_000)));
    await page.waitForFunction(
      () => {
        const l = [...(globalThis as unknown as PageGlobals).document.querySelectorAll('#torrents tbody tr')].filter((r) => r.dataset.source?.startsWith('leecher'));
        return l.length === 3 && l.every((r) => r.dataset.progress === '1' && r.querySelector('.bar b')?.textContent === '100.0 %');
      },
      undefined,
      { timeout: 30_000 },
    );
    const maxDown = (await page.evaluate(() => (globalThis as unknown as PageGlobals).__maxDown)) ?? 0;
    assert.ok(maxDown > 0, 'the total download rate was seen above zero');

    // The charts: one per rate, a line per client.
    await page.waitForSelector('.chart[data-chart="download"] canvas');
    await page.waitForSelector('.chart[data-chart="upload"] canvas');
    const legend = await page.locator('.chart[data-chart="download"] .u-legend .u-series .u-label').allTextContents();
    for (const id of ['seeder', 'leecher 1', 'leecher 2', 'leecher 3']) assert.ok(legend.includes(id), `${id} in the download chart's legend: ${legend.join(', ')}`);

    // The torrents CSV.
    const torrentsCsv = await downloadCsv(page, 'torrents.csv');
    assert.deepEqual(torrentsCsv[0], ['source', ...TORRENT_COLUMNS]);
    const progressCol = torrentsCsv[0]!.indexOf('progress');
    assert.deepEqual(torrentsCsv.slice(1).map((r) => [r[0], r[progressCol]]), [['seeder', '1'], ['leecher 1', '1'], ['leecher 2', '1'], ['leecher 3', '1']]);

    // Every client runs its torrent on the DHT too: the torrents table says so.
    assert.equal(await page.locator('#torrents tbody tr .pill.dht').count(), 4);
    assert.match((await page.locator('#torrents tbody tr[data-source="seeder"] .pill.dht').getAttribute('title')) ?? '', /^On the DHT: \d+ lookup/);

    // The DHT panel: a row per node (the plain ones and each client's), each with a routing table.
    assert.equal(await page.isVisible('#dht-panel'), true);
    const dhtIds = ['dht 1', 'dht 2', 'dht 3', 'dht 4', 'dht 5', 'dht 6', 'seeder dht', 'leecher 1 dht', 'leecher 2 dht', 'leecher 3 dht'];
    await page.waitForFunction(
      (n) => {
        const rows = [...(globalThis as unknown as PageGlobals).document.querySelectorAll('#dht-nodes tbody tr')];
        return rows.length === n && rows.every((r) => Number(r.dataset.nodes) > 0);
      },
      dhtIds.length,
      { timeout: 30_000 },
    );
    const listed = await page.locator('#dht-nodes tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-source') ?? ''));
    assert.deepEqual([...listed].sort(), [...dhtIds].sort());
    // The selected node's buckets add up to its row's node count (one rendering); clicking another row selects it.
    const bucketsOf = (): Promise<{ selected: string | undefined; nodes: number; buckets: number[]; title: string | null | undefined }> =>
      page.evaluate(() => {
        const d = (globalThis as unknown as PageGlobals).document;
        const sel = [...d.querySelectorAll('#dht-nodes tbody tr.selected')][0];
        return { selected: sel?.dataset.source, nodes: Number(sel?.dataset.nodes), buckets: [...d.querySelectorAll('#dht-buckets tbody tr')].map((r) => Number(r.dataset.nodes)), title: d.getElementById('dht-selected')?.textContent };
      });
    const first = await bucketsOf();
    assert.equal(first.selected, 'dht 1', 'the first node is shown at first');
    assert.ok(first.buckets.length >= 1 && first.nodes > 0);
    assert.equal(first.buckets.reduce((a, b) => a + b, 0), first.nodes);
    await page.click('#dht-nodes tbody tr[data-source="leecher 2 dht"]');
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.getElementById('dht-selected')?.textContent?.startsWith('leecher 2 dht') === true, undefined, { timeout: 10_000 });
    const picked = await bucketsOf();
    assert.equal(picked.selected, 'leecher 2 dht');
    assert.ok(picked.nodes > 0 && picked.buckets.reduce((a, b) => a + b, 0) === picked.nodes, JSON.stringify(picked));
    await page.waitForSelector('.chart[data-chart="dht_nodes"] canvas');
    const dhtLegend = await page.locator('.chart[data-chart="dht_nodes"] .u-legend .u-series .u-label').allTextContents();
    for (const id of dhtIds) assert.ok(dhtLegend.includes(id), `${id} in the DHT chart's legend`);
    // The routing tables as CSV.
    const dhtCsv = await downloadCsv(page, 'dht_nodes.csv');
    assert.deepEqual(dhtCsv[0], ['source', ...DHT_NODE_COLUMNS]);
    const col = (name: string): number => dhtCsv[0]!.indexOf(name);
    assert.ok(dhtCsv.length > dhtIds.length, 'rows for every node');
    for (const r of dhtCsv.slice(1)) {
      assert.ok(dhtIds.includes(r[0]!), r[0]);
      assert.match(r[col('node_id')]!, /^[0-9a-f]{40}$/);
      assert.match(r[col('address')]!, /^127\.0\.0\.1:\d+$/);
      assert.ok(['good', 'questionable', 'bad'].includes(r[col('state')]!));
    }
    assert.deepEqual([...new Set(dhtCsv.slice(1).map((r) => r[0]))].sort(), [...dhtIds].sort());

    const shot = join(outDir, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    const png = await readFile(shot);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG');
    t.diagnostic(`screenshots: ${shot}, ${join(outDir, 'dashboard-transfer.png')}`);

    assert.deepEqual(pageErrors, [], 'no errors in the page');
    assert.deepEqual(outside, [], 'the browser asked for nothing but 127.0.0.1');
    await context.close();
  } finally {
    await browser?.close();
    await swarm.close();
  }
});

test('a token-protected dashboard in Chromium: refused without the token, live with it', { timeout: 60_000 }, async () => {
  const token = 'browser-token-0123456789';
  const tracker = await startTracker({ host: '127.0.0.1', http: 0, udp: false });
  const d = await startDashboard({ token, intervalMs: 250, sources: [new TrackerSource('tracker', tracker)] });
  let browser: Browser | undefined;
  try {
    browser = await launch();
    const outside: string[] = [];
    const context = await loopbackContext(browser, outside);
    const page = await context.newPage();
    const refused = await page.goto(d.baseUrl, { timeout: 15_000 });
    assert.equal(refused?.status(), 401);
    assert.match(await page.textContent('body') ?? '', /needs its access token/);
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
    await context.close();
  } finally {
    await browser?.close();
    await d.close();
    await tracker.close();
  }
});
