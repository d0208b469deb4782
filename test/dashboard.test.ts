/**
 * The dashboard's pure parts: CSV rendering and parsing, the Prometheus
 * text format and the merging of families across sources, the access
 * rules (listen addresses, loopback, tokens, Host headers), the charts'
 * bounded history, and the DHT source's bucket prefixes and bounds (on a
 * DhtCore driven by hand).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CsvError, parseCsv, toCsv } from '../src/dashboard/csv.js';
import { checkBind, checkTokenFormat, DashboardConfigError, isLoopback, isLoopbackHostHeader, parseListenAddress, requestToken, tokenMatches } from '../src/dashboard/access.js';
import { History } from '../src/dashboard/history.js';
import { bucketPrefix, DHT_OPERATION_KINDS, DhtSource, type DhtState } from '../src/dashboard/dht-source.js';
import { DhtCore } from '../src/core/dht/dht-core.js';
import { commonPrefixBits, idOf } from '../src/core/dht/id.js';
import { decodeKrpc, encodeKrpc } from '../src/codec/krpc.js';
import { seededRandom } from '../src/runtime/sim/index.js';
import { escapeLabelValue, mergeFamilies, renderPrometheus, type MetricFamily } from '../src/metrics/prometheus.js';
import { prometheusText } from '../src/tracker/metrics.js';
import { checkPrometheus } from './dashboard-prometheus.js';

// ---------------------------------------------------------------- CSV

test('CSV: header row, CRLF, quoting of comma, quote, CR and LF; numbers, booleans and empty cells', () => {
  const csv = toCsv(
    ['name', 'n', 'ok', 'note'],
    [
      ['plain', 1.5, true, null],
      ['a,b', 0, false, 'say "hi"'],
      ['two\nlines', -3, true, 'cr\rhere'],
      ['', Infinity, false, undefined],
    ],
  );
  assert.equal(csv, 'name,n,ok,note\r\nplain,1.5,true,\r\n"a,b",0,false,"say ""hi"""\r\n"two\nlines",-3,true,"cr\rhere"\r\n,,false,\r\n');
});

test('CSV: text a spreadsheet would run as a formula gets a leading apostrophe (peer names come from the network)', () => {
  const csv = toCsv(['client'], [['=HYPERLINK("http://x","y")'], ['+1'], ['-cmd'], ['@SUM(A1)'], ['\tx'], ['ok=1']]);
  assert.deepEqual(parseCsv(csv).slice(1).map((r) => r[0]), ['\'=HYPERLINK("http://x","y")', "'+1", "'-cmd", "'@SUM(A1)", "'\tx", 'ok=1']);
  assert.equal(parseCsv(toCsv(['n'], [[-5]]))[1]![0], '-5', 'numbers are numbers, not text');
});

test('CSV: parse(toCsv(rows)) gives the rows back (text not starting like a formula)', () => {
  const text = fc.string({ unit: fc.constantFrom('a', 'b', ',', '"', '\n', '\r', ' ', 'é', '1'), maxLength: 12 }).filter((s) => !/^[=+\-@\t\r]/.test(s));
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 5 }), fc.array(fc.array(text, { minLength: 5, maxLength: 5 }), { maxLength: 8 }), (width, rows) => {
      const columns = Array.from({ length: width }, (_x, i) => `c${i}`);
      const cut = rows.map((r) => r.slice(0, width));
      assert.deepEqual(parseCsv(toCsv(columns, cut)), [columns, ...cut]);
    }),
  );
});

test('CSV parser: malformed input is a CsvError', () => {
  for (const bad of ['"open', 'a"b,c', '"x"y', 'a\rb']) assert.throws(() => parseCsv(bad), CsvError, JSON.stringify(bad));
  assert.deepEqual(parseCsv(''), []);
  assert.deepEqual(parseCsv('a,b\n1,2'), [['a', 'b'], ['1', '2']]);
});

// ---------------------------------------------------------------- Prometheus

test('Prometheus: HELP and TYPE once per family, labels escaped, special values', () => {
  const text = renderPrometheus([
    { name: 'peerkit_x_bytes_total', type: 'counter', help: 'Bytes.\nMore \\ help.', samples: [[{ torrent: 'a"b\\c\nd' }, 12], [undefined, 3]] },
    { name: 'peerkit_y', type: 'gauge', help: 'Y.', samples: [[undefined, NaN], [{ k: 'v' }, Infinity], [{}, -Infinity]] },
  ]);
  assert.equal(
    text,
    '# HELP peerkit_x_bytes_total Bytes.\\nMore \\\\ help.\n# TYPE peerkit_x_bytes_total counter\npeerkit_x_bytes_total{torrent="a\\"b\\\\c\\nd"} 12\npeerkit_x_bytes_total 3\n' +
      '# HELP peerkit_y Y.\n# TYPE peerkit_y gauge\npeerkit_y NaN\npeerkit_y{k="v"} +Inf\npeerkit_y -Inf\n',
  );
  assert.equal(renderPrometheus([]), '');
  assert.equal(escapeLabelValue('plain'), 'plain');
});

test('Prometheus: invalid metric or label names are refused', () => {
  assert.throws(() => renderPrometheus([{ name: 'bad-name', type: 'gauge', help: '', samples: [] }]), RangeError);
  assert.throws(() => renderPrometheus([{ name: 'ok', type: 'gauge', help: '', samples: [[{ 'bad-label': 'x' }, 1]] }]), RangeError);
  assert.throws(() => renderPrometheus([{ name: 'ok', type: 'gauge', help: '', samples: [[{ __reserved: 'x' }, 1]] }]), RangeError);
});

test('Prometheus: families from several sources merge into one per name, each sample labelled by its source', () => {
  const fam = (v: number): MetricFamily[] => [
    { name: 'peerkit_client_uploaded_bytes_total', type: 'counter', help: 'Up.', samples: [[{ torrent: 'aa' }, v]] },
    { name: 'peerkit_client_torrents', type: 'gauge', help: 'T.', samples: [[undefined, 1]] },
  ];
  const merged = mergeFamilies([
    { labels: { source: 'seeder' }, families: fam(10) },
    { labels: { source: 'leecher 1' }, families: fam(20) },
    { labels: { source: 'odd' }, families: [{ name: 'peerkit_client_torrents', type: 'counter', help: 'wrong type', samples: [[undefined, 9]] }] },
  ]);
  const text = renderPrometheus(merged);
  assert.equal((text.match(/# TYPE peerkit_client_uploaded_bytes_total counter/g) ?? []).length, 1);
  assert.match(text, /peerkit_client_uploaded_bytes_total\{source="seeder",torrent="aa"\} 10\npeerkit_client_uploaded_bytes_total\{source="leecher 1",torrent="aa"\} 20\n/);
  assert.match(text, /peerkit_client_torrents\{source="seeder"\} 1\npeerkit_client_torrents\{source="leecher 1"\} 1\n/);
  assert.doesNotMatch(text, /source="odd"/, 'a family of another type is dropped, not rendered invalid');
});

test('Prometheus: the tracker\'s whole exposition follows the conventions; no pre-computed rate, process figures under their standard names', () => {
  const stats = {
    torrents: 1, peers: 2, seeders: 1, leechers: 1, users: 0, announcesPerSecond: 0.5, announces: { http: 3, udp: 4 }, scrapes: { http: 0, udp: 1 }, udpConnects: 2,
    failures: { 'bad-request': 1, 'unregistered-torrent': 0, 'bad-passkey': 0, 'tracker-full': 0, 'peer-id-in-use': 0, 'rate-limited': 0, 'full-scrape': 0 },
    dropped: { malformed: 0, forgedConnectionId: 0, rateLimited: 0 }, peersRefused: 0, peersExpired: 0, peerMemoryBytes: 4096, httpRequests: 5, internalErrors: 0, residentMemoryBytes: 1e8, uptimeSeconds: 9,
  };
  const fams = checkPrometheus(prometheusText(stats), { requireSamples: true });
  for (const name of fams.keys()) assert.match(name, /^(peerkit_tracker|process)_[a-z_]+$/);
  assert.deepEqual(fams.get('peerkit_tracker_announces_total')!.samples.map((x) => [x.labels.protocol, x.value]), [['http', 3], ['udp', 4]]);
  assert.ok(!fams.has('peerkit_tracker_announces_per_second'), 'rate(peerkit_tracker_announces_total[1m]) is the rate');
  assert.ok(!fams.has('peerkit_tracker_resident_memory_bytes') && !fams.has('peerkit_tracker_uptime_seconds'));
  const rss = fams.get('process_resident_memory_bytes')!;
  assert.equal(rss.type, 'gauge');
  assert.ok(rss.samples[0]!.value > 0);
  const start = fams.get('process_start_time_seconds')!.samples[0]!.value;
  assert.ok(start > Date.now() / 1000 - process.uptime() - 5 && start <= Date.now() / 1000, `a unix time in seconds: ${start}`);
  assert.equal(fams.get('process_cpu_seconds_total')!.type, 'counter');
});

test('Prometheus conventions checker: a valid exposition passes; each kind of mistake is caught', () => {
  const ok = '# HELP a_bytes_total Bytes sent.\n# TYPE a_bytes_total counter\na_bytes_total{x="1",y="q\\"\\\\\\n"} 3\na_bytes_total{x="2"} 0\n# HELP b_seconds Age in seconds.\n# TYPE b_seconds gauge\nb_seconds -1.5e3\nb_seconds{k="v"} NaN\n';
  const fams = checkPrometheus(ok);
  assert.deepEqual([...fams.keys()], ['a_bytes_total', 'b_seconds']);
  assert.deepEqual(fams.get('a_bytes_total')!.samples[0]!.labels, { x: '1', y: 'q"\\\n' });
  const bad: [string, string, RegExp][] = [
    ['counter without _total', '# HELP a Things.\n# TYPE a counter\na 1\n', /does not end in _total/],
    ['gauge with _total', '# HELP a_total Things.\n# TYPE a_total gauge\na_total 1\n', /reserved for counters/],
    ['family twice', '# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\n# HELP a A.\n# TYPE a gauge\na 2\n', /appears twice/],
    ['no TYPE', '# HELP a A.\na 1\n', /outside its family|HELP without TYPE/],
    ['no HELP', '# TYPE a gauge\na 1\n', /TYPE before HELP/],
    ['sample before HELP', 'a 1\n# HELP a A.\n# TYPE a gauge\n', /outside its family/],
    ['another family\'s sample', '# HELP a A.\n# TYPE a gauge\nb 1\n', /outside its family/],
    ['bad label syntax', '# HELP a A.\n# TYPE a gauge\na{x=1} 1\n', /not quoted/],
    ['label name', '# HELP a A.\n# TYPE a gauge\na{x-y="1"} 1\n', /bad label name/],
    ['reserved label', '# HELP a A.\n# TYPE a gauge\na{__x="1"} 1\n', /reserved/],
    ['label twice', '# HELP a A.\n# TYPE a gauge\na{x="1",x="2"} 1\n', /twice/],
    ['bad escape', '# HELP a A.\n# TYPE a gauge\na{x="\\t"} 1\n', /bad escape/],
    ['same series twice', '# HELP a A.\n# TYPE a gauge\na{x="1"} 1\na{x="1"} 2\n', /same series/],
    ['bad value', '# HELP a A.\n# TYPE a gauge\na 1,5\n', /not a float/],
    ['negative counter', '# HELP a_total A.\n# TYPE a_total counter\na_total -1\n', /below 0/],
    ['milliseconds', '# HELP a_milliseconds A.\n# TYPE a_milliseconds gauge\na_milliseconds 1\n', /base units/],
    ['MiB', '# HELP a_mib A.\n# TYPE a_mib gauge\na_mib 1\n', /base units/],
    ['rate in the name', '# HELP announces_per_second Announces.\n# TYPE announces_per_second gauge\nannounces_per_second 1\n', /pre-computed rate/],
    ['rate in the help', '# HELP announces Announces per second.\n# TYPE announces gauge\nannounces 1\n', /pre-computed rate/],
    ['unit not at the end', '# HELP a_bytes_sent_total A.\n# TYPE a_bytes_sent_total counter\na_bytes_sent_total 1\n', /goes at the end/],
    ['unit missing from the name', '# HELP uptime Seconds since start.\n# TYPE uptime gauge\nuptime 1\n', /no _seconds suffix/],
    ['upper case', '# HELP aB A.\n# TYPE aB gauge\naB 1\n', /lower snake case/],
    ['colon', '# HELP a:b A.\n# TYPE a:b gauge\na:b 1\n', /lower snake case/],
    ['other comment', '# a note\n', /neither HELP nor TYPE/],
    ['blank line', '# HELP a A.\n# TYPE a gauge\na 1\n\n', /blank line/],
    ['no final newline', '# HELP a A.\n# TYPE a gauge\na 1', /newline/],
  ];
  for (const [what, text, why] of bad) assert.throws(() => checkPrometheus(text), why, what);
  assert.throws(() => checkPrometheus('# HELP a A.\n# TYPE a gauge\n', { requireSamples: true }), /without samples: a/);
  assert.doesNotThrow(() => checkPrometheus('# HELP a A.\n# TYPE a gauge\n'));
});

// ---------------------------------------------------------------- access

test('listen addresses: PORT, HOST:PORT, [IPv6]:PORT; the default host is loopback', () => {
  assert.deepEqual(parseListenAddress('8080'), { host: '127.0.0.1', port: 8080 });
  assert.deepEqual(parseListenAddress('0'), { host: '127.0.0.1', port: 0 });
  assert.deepEqual(parseListenAddress('0.0.0.0:9000'), { host: '0.0.0.0', port: 9000 });
  assert.deepEqual(parseListenAddress('[::1]:9000'), { host: '::1', port: 9000 });
  assert.deepEqual(parseListenAddress('localhost:1'), { host: 'localhost', port: 1 });
  for (const bad of ['', 'x', '65536', 'example.com:80', '::1:80', '[127.0.0.1]:80', '1.2.3.4:', ':80', '80:1.2.3.4', '[::1]']) {
    assert.throws(() => parseListenAddress(bad), DashboardConfigError, bad);
  }
});

test('loopback: 127/8, ::1, mapped 127/8 and localhost; nothing else', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1', 'localhost', 'LOCALHOST']) assert.ok(isLoopback(h), h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', '::ffff:10.0.0.1', 'example.com', '1127.0.0.1']) assert.ok(!isLoopback(h), h);
});

test('a non-loopback bind is refused without a token; tokens must be long and URL-safe', () => {
  assert.doesNotThrow(() => checkBind('127.0.0.1', undefined));
  assert.doesNotThrow(() => checkBind('::1', undefined));
  assert.throws(() => checkBind('0.0.0.0', undefined), /without an access token/);
  assert.throws(() => checkBind('::', undefined), /without an access token/);
  assert.throws(() => checkBind('192.168.1.5', undefined), /without an access token/);
  assert.doesNotThrow(() => checkBind('0.0.0.0', 'a-long-enough-token'));
  assert.throws(() => checkBind('0.0.0.0', 'short'), /16 to 256/);
  assert.throws(() => checkTokenFormat('has spaces in it, sixteen+'), /16 to 256/);
  assert.throws(() => checkTokenFormat('quote"injection<tag>x'), /16 to 256/);
  assert.throws(() => checkTokenFormat('x'.repeat(257)), /16 to 256/);
});

test('token checks: exact match only, from the bearer header or the query', () => {
  const t = 'correct-horse-battery';
  assert.ok(tokenMatches(t, t));
  for (const other of [undefined, '', 'correct-horse-batter', 'correct-horse-battery ', 'CORRECT-HORSE-BATTERY', `${t}x`]) assert.ok(!tokenMatches(t, other), String(other));
  const url = (q: string): URL => new URL(`http://127.0.0.1/x${q}`);
  assert.equal(requestToken('Bearer abc', url('')), 'abc');
  assert.equal(requestToken('bearer   abc ', url('?token=zzz')), 'abc', 'the header wins');
  assert.equal(requestToken(undefined, url('?token=q%2Dq')), 'q-q');
  assert.equal(requestToken('Basic abc', url('?token=qq')), 'qq');
  assert.equal(requestToken(undefined, url('')), undefined);
});

test('Host header: only loopback names pass (no DNS rebinding to a token-less dashboard)', () => {
  for (const h of ['127.0.0.1:8080', '127.0.0.1', 'localhost:1', '[::1]:80', '[::1]']) assert.ok(isLoopbackHostHeader(h), h);
  for (const h of [undefined, '', 'evil.example', 'evil.example:8080', '127.0.0.1.evil.example', '10.0.0.1:80', '[::]:80', 'localhost.evil:80']) assert.ok(!isLoopbackHostHeader(h), String(h));
});

// ---------------------------------------------------------------- history

test('history: bounded, aligned, new series padded with nulls, vanished ones dropped after a full window', () => {
  const h = new History(3);
  h.push({ t: 1, charts: { download: { a: 10 } } });
  h.push({ t: 2, charts: { download: { a: 11, b: 5 } } });
  assert.deepEqual(h.toJSON(), { t: [1, 2], charts: { download: { a: [10, 11], b: [null, 5] } } });
  h.push({ t: 3, charts: { download: { b: 6 }, announces: { tracker: 0.5 } } });
  h.push({ t: 4, charts: { download: { b: 7 } } });
  assert.deepEqual(h.toJSON(), { t: [2, 3, 4], charts: { download: { a: [11, null, null], b: [5, 6, 7] }, announces: { tracker: [null, 0.5, null] } } });
  h.push({ t: 5, charts: { download: { b: NaN } } });
  assert.deepEqual(h.toJSON(), { t: [3, 4, 5], charts: { download: { b: [6, 7, null] }, announces: { tracker: [0.5, null, null] } } });
  h.push({ t: 6, charts: {} });
  h.push({ t: 7, charts: {} });
  assert.deepEqual(h.toJSON(), { t: [5, 6, 7], charts: {} }, 'series and charts gone for a whole window are dropped');
  assert.equal(h.length, 3);
  assert.throws(() => new History(1), RangeError);
});

test('history: every series always has one value per time, whatever is reported', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 6 }),
      fc.array(fc.dictionary(fc.constantFrom('download', 'upload'), fc.dictionary(fc.constantFrom('a', 'b', 'c'), fc.double({ min: 0, max: 1e9, noNaN: true }))), { maxLength: 20 }),
      (cap, ticks) => {
        const h = new History(cap);
        ticks.forEach((charts, i) => h.push({ t: i, charts }));
        const j = h.toJSON();
        assert.ok(j.t.length <= cap);
        for (const series of Object.values(j.charts)) for (const values of Object.values(series)) assert.equal(values.length, j.t.length);
      },
    ),
  );
});

// ---------------------------------------------------------------- DHT source

test('bucket prefixes: an id starting with bucket i\'s prefix shares exactly i bits with ours (the last bucket: at least i)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 20, maxLength: 20 }), fc.uint8Array({ minLength: 20, maxLength: 20 }), fc.integer({ min: 1, max: 40 }), (self, other, count) => {
      const shared = commonPrefixBits(idOf(self), idOf(other));
      const bits = (b: Uint8Array, n: number): string => Array.from({ length: n }, (_, i) => String((b[i >> 3]! >> (7 - (i & 7))) & 1)).join('');
      for (let i = 0; i < count; i++) {
        const { prefix, depth } = bucketPrefix(self, i, count);
        assert.equal(depth, i === count - 1 ? i : i + 1);
        const shown = prefix.endsWith('…') ? prefix.slice(0, -1) : prefix;
        assert.equal(shown.length, Math.min(depth, 32));
        const inBucket = Math.min(shared, count - 1) === i;
        // Within the bits shown, membership and the prefix agree.
        if (depth <= 32) assert.equal(bits(other, depth) === prefix, inBucket, `bucket ${i} of ${count}`);
        else if (inBucket) assert.equal(bits(other, 32), shown);
      }
    }),
  );
  assert.deepEqual(bucketPrefix(new Uint8Array(20), 0, 1), { prefix: '', depth: 0 });
  assert.deepEqual(bucketPrefix(Buffer.alloc(20, 0xff), 0, 3), { prefix: '0', depth: 1 });
  assert.deepEqual(bucketPrefix(Buffer.alloc(20, 0xff), 2, 3), { prefix: '11', depth: 2 });
});

test('DhtSource on a hand-driven core: buckets add up, operations listed up to the cap, query rate, CSV rows capped, metric families', () => {
  let now = 0;
  const core = new DhtCore({ id: Buffer.alloc(20, 0), random: seededRandom(5), now, options: { k: 4 } });
  const src = new DhtSource('dht', { core, address: { host: '127.0.0.1', port: 6881 }, runtime: { clock: { now: () => now } } }, { maxOperations: 2, maxNodes: 3 });
  // Fill the table: nodes answer a bootstrap lookup.
  const seeds = Array.from({ length: 6 }, (_, i) => ({ id: Buffer.from([0x80 >> i, ...Array<number>(19).fill(i)]), address: { host: `10.0.${i}.1`, port: 6881 } }));
  core.bootstrap(now, seeds);
  for (let round = 0; round < 4; round++) {
    for (let t = core.pollTransmit(); t !== undefined; t = core.pollTransmit()) {
      const seed = seeds.find((s) => s.address.host === t.to.host)!;
      core.handleDatagram(now, t.to, encodeKrpc({ y: 'r', t: decodeKrpc(t.data).t, id: seed.id }));
    }
  }
  const s1 = src.state() as unknown as DhtState;
  // The lookup asks the k = 4 closest: those answered and are in the table.
  assert.equal(s1.nodes, 4);
  assert.equal(s1.good, 4);
  assert.equal(s1.buckets.length, core.stats(now).buckets);
  assert.equal(s1.k, 4);
  assert.equal(s1.buckets.reduce((a, b) => a + b.nodes, 0), 4);
  assert.deepEqual(s1.buckets.map((b) => b.prefix.length), s1.buckets.map((b) => b.depth));
  assert.equal(s1.address, '127.0.0.1:6881');
  // Three lookups in flight, two listed.
  for (let i = 0; i < 3; i++) core.findNode(now, Buffer.alloc(20, 0x11 * (i + 1)));
  const s2 = src.state() as unknown as DhtState;
  assert.equal(s2.lookups.length, 2);
  assert.equal(s2.lookupsOmitted, 1);
  assert.deepEqual(s2.lookups.map((l) => l.kind), ['find_node', 'find_node']);
  // Queries received: 5 pings over 2 s is 2.5 per second.
  src.series();
  now += 2000;
  for (let i = 0; i < 5; i++) core.handleDatagram(now, { host: '10.9.0.1', port: 1000 + i }, encodeKrpc({ y: 'q', t: Buffer.from([1, i]), id: Buffer.alloc(20, 0x42), ro: false, q: 'ping' }));
  assert.deepEqual(src.series(), { dht_nodes: 4, dht_queries: 2.5 });
  const tables = src.tables();
  assert.equal(tables.dht_nodes!.rows.length, 3, 'capped');
  assert.equal(tables.dht_buckets!.rows.length, s1.buckets.length);
  const text = renderPrometheus(src.metrics());
  assert.match(text, /^peerkit_dht_nodes\{state="good"\} 4$/m);
  assert.match(text, /^peerkit_dht_queries_received_total 5$/m);
  assert.match(text, /^peerkit_dht_operations\{kind="find_node"\} 3$/m);
  assert.match(text, /^# TYPE peerkit_dht_sent_datagrams_total counter$/m);
  // Every kind has a sample, 0 when none is in flight: a dashboard or alert sees 0, not an absent series.
  const ops = checkPrometheus(text, { requireSamples: true }).get('peerkit_dht_operations')!;
  assert.deepEqual(Object.fromEntries(ops.samples.map((x) => [x.labels.kind, x.value])), { bootstrap: 0, refresh: 0, find_node: 3, get_peers: 0, announce: 0, get: 0, put: 0, ping: 0 });
  assert.deepEqual(ops.samples.map((x) => x.labels.kind), [...DHT_OPERATION_KINDS]);
  const idle = new DhtSource('idle', { core: new DhtCore({ id: Buffer.alloc(20, 7), random: seededRandom(6), now: 0 }), address: { host: '127.0.0.1', port: 1 }, runtime: { clock: { now: () => 0 } } });
  assert.ok(checkPrometheus(renderPrometheus(idle.metrics())).get('peerkit_dht_operations')!.samples.every((x) => x.value === 0));
});
