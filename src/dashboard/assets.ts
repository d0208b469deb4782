/**
 * The dashboard page: HTML, CSS and the browser script, served by the
 * process itself (no CDN; uPlot comes from the installed package).
 *
 * The script builds every element with createElement and sets text with
 * textContent, never innerHTML: names in the page (peer client names,
 * torrent names) come from the network. The Content-Security-Policy the
 * server sends allows scripts and styles from the dashboard only.
 *
 * Panels are chosen by a source's `kind` (see source.ts): `client` fills
 * the torrents and peers tables, `tracker` the tracker panel, `dht` the
 * DHT panel (one summary row per node; the selected node's buckets and
 * operations in flight below). A new kind
 * adds a function to RENDERERS below and, for its charts, an entry to
 * CHARTS.
 */

/** The page; asset URLs carry the token when there is one (already checked to be URL-safe). */
export function pageHtml(token: string | undefined): string {
  const q = token === undefined ? '' : `?token=${encodeURIComponent(token)}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>peerkit dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="uPlot.min.css${q}">
<link rel="stylesheet" href="app.css${q}">
</head>
<body>
<header>
  <h1>peerkit <span>dashboard</span></h1>
  <span id="status" class="status">connecting</span>
  <nav id="links"></nav>
</header>
<main>
  <section id="summary" class="cards"></section>
  <section id="charts" class="charts"></section>
  <section class="panel" id="torrents-panel">
    <h2>Torrents</h2>
    <div class="scroll"><table id="torrents">
      <thead><tr><th>Client</th><th>Torrent</th><th>State</th><th class="w-progress">Progress</th><th class="num">Down</th><th class="num">Up</th><th class="num">Downloaded</th><th class="num">Uploaded</th><th class="num" title="uploaded / downloaded (uploaded / size when nothing was downloaded)">Ratio</th><th class="num">Peers</th></tr></thead>
      <tbody></tbody>
    </table></div>
    <p class="empty" id="torrents-empty">No torrents yet.</p>
    <p class="legend" id="pieces-legend">Piece map (below each torrent; a cell is a run of pieces, hover it for its counts). Top strip, what this client holds: <i class="sw held"></i>every piece <i class="sw part"></i>some <i class="sw miss"></i>none. Bottom strip, how many connected peers hold the cell's rarest piece: <i class="sw none"></i>none, and this client lacks some of it <i class="sw only"></i>none, only this client has it <i class="sw avail1"></i>1 <i class="sw avail2"></i>&hellip; <i class="sw avail3"></i>the most (darker = more).</p>
  </section>
  <section class="panel" id="peers-panel">
    <h2>Peers <small id="peers-count"></small></h2>
    <div class="scroll"><table id="peers">
      <thead><tr><th>Client</th><th class="col-torrent">Torrent</th><th title="in: they connected to us; out: we connected">Address</th><th>Software</th><th title="Our side: do we choke them, are we interested in them">We</th><th title="Their side: do they choke us, are they interested in us">They</th><th class="num">Down</th><th class="num">Up</th><th class="num" title="Bytes downloaded from the peer">Bytes down</th><th class="num" title="Bytes uploaded to the peer">Bytes up</th><th class="num" title="uploaded to the peer / downloaded from it (&infin;: only uploaded)">Ratio</th><th class="w-has">Has</th></tr></thead>
      <tbody></tbody>
    </table></div>
    <p class="empty" id="peers-empty">No peers connected.</p>
  </section>
  <section class="panel" id="tracker-panel" hidden>
    <h2>Tracker</h2>
    <div id="tracker-info" class="kv"></div>
    <div class="scroll"><table id="swarms">
      <thead><tr><th>Tracker</th><th>Info hash</th><th>Torrent</th><th class="num">Seeders</th><th class="num">Leechers</th><th class="num">Completed</th></tr></thead>
      <tbody></tbody>
    </table></div>
  </section>
  <section class="panel" id="dht-panel" hidden>
    <h2>DHT <small id="dht-count"></small></h2>
    <div class="scroll"><table id="dht-nodes">
      <thead><tr><th>Node</th><th>Address</th><th class="num" title="Nodes in the routing table">Nodes</th><th class="num" title="Answered us within 15 minutes">Good</th><th class="num" title="Not heard from lately, or one query unanswered">Quest.</th><th class="num" title="Several queries in a row unanswered">Bad</th><th class="num" title="Waiting in the buckets' replacement caches">Repl.</th><th class="num">Buckets</th><th class="num" title="Operations in flight">Ops</th><th class="num" title="Queries received per second">Queries /s</th><th class="num" title="Queries received">Queries in</th><th class="num" title="Answers received to our queries">Answers</th><th class="num" title="Datagrams that were not valid KRPC">Bad msgs</th><th class="num" title="Peers stored for others (announce_peer), on how many infohashes">Stored peers</th><th class="num" title="BEP 44 items stored for others">Items</th></tr></thead>
      <tbody></tbody>
    </table></div>
    <p class="legend">Click a node to see its routing table and operations.</p>
    <div class="dht-detail">
      <div>
        <h3>Routing table of <span id="dht-selected" class="mono"></span></h3>
        <div class="scroll"><table id="dht-buckets">
          <thead><tr><th title="Leading bits shared with the node's id">Bucket</th><th title="The ids the bucket covers start with these bits">Prefix</th><th class="w-progress" title="Green: good, yellow: questionable, red: bad; out of k">Nodes</th><th class="num">Good</th><th class="num">Quest.</th><th class="num">Bad</th><th class="num">Repl.</th><th class="num" title="Seconds since a node joined or answered from it">Changed</th></tr></thead>
          <tbody></tbody>
        </table></div>
      </div>
      <div>
        <h3>Operations in flight <small id="dht-ops-count"></small></h3>
        <div class="scroll"><table id="dht-ops">
          <thead><tr><th>Kind</th><th>Target</th><th>Phase</th><th class="num">Queries</th><th class="num">Answers</th><th class="num">Waiting</th><th class="num">Peers</th><th class="num">Age</th></tr></thead>
          <tbody></tbody>
        </table></div>
        <p class="empty" id="dht-ops-empty">None right now.</p>
      </div>
    </div>
  </section>
</main>
<footer>peerkit &middot; live over Server-Sent Events &middot; <span id="clock"></span></footer>
<script src="uPlot.iife.min.js${q}"></script>
<script src="app.js${q}"></script>
</body>
</html>
`;
}

export const APP_CSS = `
:root {
  --bg: #f4f6f8; --card: #ffffff; --ink: #1d2530; --muted: #66717e; --line: #e2e6eb;
  --head: #17202b; --accent: #1c7ed6; --good: #2f9e44; --warn: #e8590c; --bad: #e03131;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 14px; color: var(--ink); background: var(--bg);
}
* { box-sizing: border-box; }
body { margin: 0; }
header { display: flex; align-items: center; gap: 16px; padding: 10px 20px; background: var(--head); color: #fff; position: sticky; top: 0; z-index: 10; }
header h1 { font-size: 18px; margin: 0; font-weight: 650; letter-spacing: .2px; }
header h1 span { font-weight: 400; color: #aeb8c4; }
header nav { margin-left: auto; display: flex; gap: 12px; flex-wrap: wrap; }
header nav a { color: #cfe3ff; text-decoration: none; font-size: 13px; }
header nav a:hover { text-decoration: underline; }
.status { font-size: 12px; padding: 2px 10px; border-radius: 10px; background: #495057; }
.status.live { background: var(--good); }
.status.down { background: var(--bad); }
main { padding: 16px 20px; display: grid; gap: 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(175px, 1fr)); gap: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .4px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.card .value { font-size: 21px; white-space: nowrap; font-weight: 600; margin-top: 2px; font-variant-numeric: tabular-nums; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }
.chart { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px; min-width: 0; overflow: hidden; }
.chart .u-title { font-size: 14px; font-weight: 600; }
.chart .u-legend { font-size: 12px; }
.chart .u-legend th { font-weight: 500; text-transform: none; letter-spacing: 0; }
.chart .u-legend .u-value { font-variant-numeric: tabular-nums; }
.panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; min-width: 0; }
.panel h2 { font-size: 15px; margin: 0 0 10px; }
.panel h2 small { color: var(--muted); font-weight: 400; }
.scroll { overflow-x: auto; max-width: 100%; }
.panel table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
.panel th, .panel td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); white-space: nowrap; }
.panel th { font-size: 11.5px; color: var(--muted); font-weight: 600; text-transform: uppercase; letter-spacing: .3px; white-space: normal; vertical-align: bottom; }
.one-torrent .col-torrent { display: none; }
td .dir { color: var(--muted); font-family: system-ui, sans-serif; font-size: 11px; margin-left: 4px; }
.w-has { width: 70px; }
.panel tbody tr:hover { background: #f8fafc; }
.num { text-align: right; }
td.name { max-width: 220px; overflow: hidden; text-overflow: ellipsis; }
td.software { max-width: 130px; overflow: hidden; text-overflow: ellipsis; }
td.mono, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.w-progress { width: 120px; }
.bar { position: relative; height: 16px; background: #e9ecef; border-radius: 4px; overflow: hidden; width: 110px; }
.bar > i { position: absolute; inset: 0 auto 0 0; background: var(--accent); }
.bar.done > i { background: var(--good); }
.bar.small { width: 60px; }
.bar > b { position: relative; display: block; text-align: center; font-size: 11px; line-height: 16px; font-weight: 600; color: #1d2530; }
.pill { display: inline-block; font-size: 10.5px; padding: 0 4px; border-radius: 8px; margin-right: 2px; line-height: 16px; border: 1px solid transparent; }
.pill.on { background: #d3f9d8; color: #1b5e20; }
.pill.off { background: #f1f3f5; color: #868e96; }
.pill.int { background: #d0ebff; color: #1864ab; }
.pill.dht { background: #f3f0ff; color: #5f3dc4; }
.pill.noint { background: transparent; color: #adb5bd; border-color: #dee2e6; }
.state { font-size: 12px; padding: 1px 8px; border-radius: 8px; background: #e9ecef; }
.state.seeding, .state.complete { background: #d3f9d8; color: #1b5e20; }
.state.downloading { background: #d0ebff; color: #1864ab; }
.state.error { background: #ffe3e3; color: #c92a2a; }
tr.pieces-row td { padding-top: 0; }
tr.pieces-row:hover { background: transparent; }
.piecemap { display: flex; align-items: center; gap: 12px; }
canvas.pieces { display: block; flex: 1 1 auto; min-width: 160px; width: 100%; height: 22px; image-rendering: pixelated; background: #fff; }
.piecemap .readout { flex: 0 0 auto; width: 290px; font-size: 12px; color: var(--muted); white-space: normal; }
.empty { color: var(--muted); margin: 8px 0 0; }
.legend { color: var(--muted); font-size: 12px; margin: 8px 0 0; }
.legend .sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px 0 12px; vertical-align: -1px; }
.legend .sw:first-child { margin-left: 4px; }
.sw.held { background: #2f9e44; } .sw.part { background: #8ce99a; } .sw.miss { background: #dee2e6; } .sw.only { background: #ced4da; } .sw.none { background: #e03131; }
.sw.avail1 { background: hsl(210, 75%, 78%); } .sw.avail2 { background: hsl(210, 75%, 55%); } .sw.avail3 { background: hsl(210, 75%, 32%); }
.panel h3 { font-size: 13px; margin: 12px 0 6px; }
.panel h3 small { color: var(--muted); font-weight: 400; }
.dht-detail { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
.dht-detail > div { min-width: 0; }
#dht-nodes tbody tr { cursor: pointer; }
#dht-nodes tbody tr.selected { background: #e7f5ff; }
.nodebar { display: flex; height: 14px; width: 120px; background: #e9ecef; border-radius: 3px; overflow: hidden; }
.nodebar i { display: block; height: 100%; }
.nodebar .g { background: var(--good); } .nodebar .q { background: #fab005; } .nodebar .b { background: var(--bad); }
.kv { display: flex; flex-wrap: wrap; gap: 6px 22px; margin-bottom: 10px; color: var(--muted); }
.kv b { color: var(--ink); font-weight: 600; }
footer { color: var(--muted); font-size: 12px; padding: 0 20px 20px; }
.muted { color: var(--muted); }
@media (max-width: 1200px) {
  /* Narrow windows: the choke and interest pills stack, so the peers table fits without scrolling. */
  .panel td.flags .pill { display: block; width: fit-content; margin: 1px 0; }
  .panel th { letter-spacing: 0; }
  .panel th, .panel td { padding: 4px 4px; }
  .nodebar { width: 90px; }
  #dht-buckets .w-progress { width: auto; }
}
`;

export const APP_JS = String.raw`(function () {
  'use strict';
  var token = new URLSearchParams(location.search).get('token');
  function withToken(path) {
    return token === null ? path : path + (path.indexOf('?') >= 0 ? '&' : '?') + 'token=' + encodeURIComponent(token);
  }

  // ------------------------------------------------------------ formatting
  var UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  function bytes(n) {
    if (typeof n !== 'number' || !isFinite(n)) return '\u2014';
    if (n < 1024) return Math.round(n) + ' B';
    var v = n / 1024, i = 0;
    while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
    return v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0) + ' ' + UNITS[i];
  }
  function rate(n) { return typeof n === 'number' && n >= 1 ? bytes(n) + '/s' : '\u2013'; }
  function pct(x) { return (Math.floor(x * 1000) / 10).toFixed(1) + ' %'; }
  function ratio(r) { return typeof r === 'number' && isFinite(r) ? r.toFixed(2) : '\u2014'; }
  function count(n) { return typeof n === 'number' ? n.toLocaleString('en-US') : '\u2014'; }

  // ------------------------------------------------------------ DOM (text only, never innerHTML)
  function h(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function td(text, cls) { return h('td', cls, text); }
  function bar(fraction, small) {
    var f = Math.max(0, Math.min(1, fraction || 0));
    var d = h('div', (f >= 1 ? 'bar done' : 'bar') + (small ? ' small' : ''));
    var fill = h('i');
    fill.style.width = (f * 100).toFixed(2) + '%';
    d.append(fill, h('b', null, pct(f)));
    return d;
  }
  function pill(on, yes, no, clsYes, clsNo) { return h('span', 'pill ' + (on ? clsYes : clsNo), on ? yes : no); }

  // ------------------------------------------------------------ piece map
  // One map per (client, torrent), kept across renders so hovering survives the
  // once-a-second update. Two strips of cells (a cell is a run of piecesPerCell
  // pieces): top, what the client holds; bottom, how many connected peers hold
  // the cell's rarest piece, for held pieces too (a seeder's map shows where
  // the swarm is thin). The readout says it in numbers.
  var CELL_PX = 4, STRIP = 10, GAP = 2;
  var pieceEls = {};
  function availColor(n, max, held) {
    if (!(n > 0)) return held ? '#ced4da' : '#e03131';
    var t = max > 1 ? (n - 1) / (max - 1) : 1;
    return 'hsl(210, 75%, ' + Math.round(78 - 46 * t) + '%)';
  }
  function cellPieces(map, i) {
    var first = i * map.piecesPerCell;
    return [first, Math.min(map.pieceCount, first + map.piecesPerCell) - 1];
  }
  function pieceStats(map) {
    var min = Infinity, max = 0, held = 0, bare = 0;
    for (var i = 0; i < map.have.length; i++) {
      var a = map.rarest[i];
      if (a < min) min = a;
      if (a > max) max = a;
      held += map.have[i];
      if (a === 0 && map.have[i] < cellPieces(map, i)[1] - cellPieces(map, i)[0] + 1) bare++;
    }
    return { min: min === Infinity ? 0 : min, max: max, held: held, bare: bare };
  }
  function drawPieceMap(e) {
    var map = e.map, c = e.canvas;
    if (!map) { c.width = 1; c.height = 1; return; }
    var n = map.have.length;
    c.width = n * CELL_PX;
    c.height = 2 * STRIP + GAP;
    var ctx = c.getContext('2d');
    ctx.clearRect(0, 0, c.width, c.height);
    var st = pieceStats(map);
    for (var i = 0; i < n; i++) {
      var r = cellPieces(map, i), size = r[1] - r[0] + 1, have = map.have[i];
      ctx.fillStyle = have >= size ? '#2f9e44' : have > 0 ? '#8ce99a' : '#dee2e6';
      ctx.fillRect(i * CELL_PX, 0, CELL_PX, STRIP);
      ctx.fillStyle = availColor(map.rarest[i], st.max, have >= size);
      ctx.fillRect(i * CELL_PX, STRIP + GAP, CELL_PX, STRIP);
    }
  }
  function pieceReadout(e) {
    var map = e.map;
    if (!map) { e.readout.textContent = 'no metadata yet'; return; }
    if (e.hover !== null && e.hover < map.have.length) {
      var r = cellPieces(map, e.hover), a = map.rarest[e.hover];
      e.readout.textContent = (r[0] === r[1] ? 'piece ' + r[0] : 'pieces ' + r[0] + '\u2013' + r[1]) + ': ' + map.have[e.hover] + ' of ' + (r[1] - r[0] + 1) + ' held; ' +
        (r[0] === r[1] ? '' : 'the rarest ') + 'held by ' + a + ' connected peer' + (a === 1 ? '' : 's');
      return;
    }
    var st = pieceStats(map);
    e.readout.textContent = st.held + ' of ' + map.pieceCount + ' pieces held; connected peers per piece: ' + (st.min === st.max ? st.min : st.min + '\u2013' + st.max) +
      (st.bare ? '; ' + st.bare + ' cell' + (st.bare === 1 ? '' : 's') + ' with a missing piece nobody connected has' : '') + (map.piecesPerCell > 1 ? ' (' + map.piecesPerCell + ' pieces a cell)' : '');
  }
  function pieceMapEl(key, t) {
    var e = pieceEls[key];
    if (!e) {
      e = { wrap: h('div', 'piecemap'), canvas: h('canvas', 'pieces'), readout: h('div', 'readout'), hover: null, map: null };
      e.wrap.append(e.canvas, e.readout);
      e.canvas.addEventListener('mousemove', function (ev) {
        if (!e.map) return;
        var box = e.canvas.getBoundingClientRect();
        var n = e.map.have.length;
        e.hover = Math.max(0, Math.min(n - 1, Math.floor(((ev.clientX - box.left) / Math.max(box.width, 1)) * n)));
        pieceReadout(e);
      });
      e.canvas.addEventListener('mouseleave', function () { e.hover = null; pieceReadout(e); });
      pieceEls[key] = e;
    }
    e.seen = true;
    e.map = t.pieceMap ? { have: t.pieceMap.have, rarest: t.pieceMap.rarest, piecesPerCell: t.pieceMap.piecesPerCell, pieceCount: t.pieceCount } : null;
    var st = e.map ? pieceStats(e.map) : null;
    e.wrap.dataset.held = st ? String(st.held) : '';
    e.wrap.dataset.rarestMin = st ? String(st.min) : '';
    e.wrap.dataset.rarestMax = st ? String(st.max) : '';
    drawPieceMap(e);
    pieceReadout(e);
    return e.wrap;
  }
  function prunePieceMaps() {
    Object.keys(pieceEls).forEach(function (k) { if (!pieceEls[k].seen) delete pieceEls[k]; else pieceEls[k].seen = false; });
  }

  // ------------------------------------------------------------ charts (uPlot)
  var CHARTS = {
    download: { title: 'Download rate', fmt: function (v) { return v == null ? '\u2013' : bytes(v) + '/s'; } },
    upload: { title: 'Upload rate', fmt: function (v) { return v == null ? '\u2013' : bytes(v) + '/s'; } },
    announces: { title: 'Tracker announces per second', fmt: function (v) { return v == null ? '\u2013' : v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2); } },
    dht_nodes: { title: 'DHT: routing table sizes', aggregate: true, fmt: function (v) { return v == null ? '\u2013' : String(Math.round(v)); } },
    dht_queries: { title: 'DHT: queries received /s', aggregate: true, fmt: function (v) { return v == null ? '\u2013' : v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2); } },
  };
  var COLORS = ['#1c7ed6', '#e8590c', '#2f9e44', '#ae3ec9', '#f08c00', '#0ca678', '#d6336c', '#4263eb', '#74b816', '#868e96'];
  var hist = { t: [], charts: {} };
  var historyLength = 600;
  var plots = {};

  function chartDef(name) { return CHARTS[name] || { title: name, fmt: function (v) { return v == null ? '\u2013' : String(v); } }; }

  function applySample(s) {
    hist.t.push(s.t);
    var n = hist.t.length;
    Object.keys(s.charts).forEach(function (chart) {
      var c = hist.charts[chart] || (hist.charts[chart] = {});
      Object.keys(s.charts[chart]).forEach(function (src) {
        if (!c[src]) { c[src] = []; for (var i = 0; i < n - 1; i++) c[src].push(null); }
      });
    });
    Object.keys(hist.charts).forEach(function (chart) {
      var c = hist.charts[chart];
      var got = s.charts[chart] || {};
      Object.keys(c).forEach(function (src) { c[src].push(Object.prototype.hasOwnProperty.call(got, src) ? got[src] : null); });
    });
    while (hist.t.length > historyLength) {
      hist.t.shift();
      Object.keys(hist.charts).forEach(function (chart) {
        var c = hist.charts[chart];
        Object.keys(c).forEach(function (src) { c[src].shift(); });
      });
    }
  }

  function chartWidth(el) { return Math.max(240, el.clientWidth - 18); }

  // Time-axis labels: the clock time only (one line, fixed width), spaced so they never overlap.
  function two(n) { return (n < 10 ? '0' : '') + n; }
  function clockTime(t) { var d = new Date(t * 1000); return two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds()); }

  // A chart with more lines than this, when its CHARTS entry says aggregate,
  // shows the median, min and max over its sources plus the DHT node selected in the DHT panel.
  var AGGREGATE_OVER = 6;
  function median(sorted) {
    var n = sorted.length;
    return n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  }
  function chartLines(def, c) {
    var ids = Object.keys(c).sort(function (a, b) { return a.localeCompare(b, 'en', { numeric: true }); });
    if (!def.aggregate || ids.length <= AGGREGATE_OVER) {
      return { note: '', lines: ids.map(function (id, i) { return { label: id, values: c[id].slice(), stroke: COLORS[i % COLORS.length], width: 2 }; }) };
    }
    var med = [], lo = [], hi = [];
    for (var k = 0; k < hist.t.length; k++) {
      var vals = [];
      ids.forEach(function (id) { var v = c[id][k]; if (v !== null && v !== undefined) vals.push(v); });
      vals.sort(function (x, y) { return x - y; });
      med.push(vals.length ? median(vals) : null);
      lo.push(vals.length ? vals[0] : null);
      hi.push(vals.length ? vals[vals.length - 1] : null);
    }
    var lines = [
      { label: 'median', values: med, stroke: '#1c7ed6', width: 2.5 },
      { label: 'min', values: lo, stroke: '#adb5bd', width: 1.5, dash: [4, 3] },
      { label: 'max', values: hi, stroke: '#495057', width: 1.5, dash: [4, 3] },
    ];
    if (selectedDht !== null && c[selectedDht]) lines.push({ label: selectedDht, values: c[selectedDht].slice(), stroke: '#e8590c', width: 2 });
    return { note: ids.length + ' nodes', lines: lines };
  }
  // With the cursor off the chart, the legend shows the latest values rather than dashes.
  function latestInLegend(u) {
    var n = u.data[0].length;
    if (u.cursor.idx === null || u.cursor.idx === undefined) { if (n > 0) u.setLegend({ idx: n - 1 }, false); }
  }

  function renderCharts() {
    if (typeof uPlot === 'undefined') return;
    var host = document.getElementById('charts');
    var created = false;
    var order = Object.keys(CHARTS);
    Object.keys(hist.charts).sort(function (a, b) {
      var i = order.indexOf(a), j = order.indexOf(b);
      return (i < 0 ? 99 : i) - (j < 0 ? 99 : j) || (a < b ? -1 : a > b ? 1 : 0);
    }).forEach(function (name) {
      var def = chartDef(name);
      var set = chartLines(def, hist.charts[name]);
      var key = set.note + '\u0001' + set.lines.map(function (l) { return l.label; }).join('\u0000');
      var p = plots[name];
      var data = [hist.t.slice()].concat(set.lines.map(function (l) { return l.values; }));
      if (p && p.key === key) {
        p.plot.setData(data);
        latestInLegend(p.plot);
        p.el.dataset.points = String(data[0].length);
        p.el.dataset.lastT = String(data[0][data[0].length - 1]);
        return;
      }
      created = true;
      var el = h('div', 'chart');
      el.dataset.chart = name;
      el.dataset.points = String(data[0].length);
      el.dataset.lastT = String(data[0][data[0].length - 1]);
      if (set.note) el.dataset.aggregate = set.note;
      if (p) { p.plot.destroy(); p.el.replaceWith(el); } else host.append(el);
      var opts = {
        title: def.title + (set.note ? ' \u00b7 ' + set.note : ''),
        width: p ? p.width : 300,
        height: 220,
        legend: { live: true },
        cursor: { drag: { x: false, y: false } },
        hooks: { setLegend: [latestInLegend] },
        scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
        series: [{ value: function (u, v) { return v == null ? '\u2013' : clockTime(v); } }].concat(set.lines.map(function (l) {
          return { label: l.label, stroke: l.stroke, width: l.width, dash: l.dash, points: { show: false }, value: function (u, v) { return def.fmt(v); } };
        })),
        axes: [
          { stroke: '#66717e', grid: { stroke: '#eef1f4' }, space: 80, values: function (u, splits) { return splits.map(clockTime); } },
          { stroke: '#66717e', size: 78, grid: { stroke: '#eef1f4' }, values: function (u, vals) { return vals.map(function (v) { return def.fmt(v); }); } },
        ],
      };
      plots[name] = { key: key, el: el, width: opts.width, plot: new uPlot(opts, data, el) };
      latestInLegend(plots[name].plot);
    });
    Object.keys(plots).forEach(function (name) {
      if (!hist.charts[name]) { plots[name].plot.destroy(); plots[name].el.remove(); delete plots[name]; }
    });
    if (created) {
      // Keep the charts in CHARTS order, whenever they appeared.
      Object.keys(plots).sort(function (a, b) {
        var i = order.indexOf(a), j = order.indexOf(b);
        return (i < 0 ? 99 : i) - (j < 0 ? 99 : j) || (a < b ? -1 : a > b ? 1 : 0);
      }).forEach(function (name) { host.append(plots[name].el); });
      resizeCharts();
    }
  }
  // Sized once every chart is in the grid, and again when the window changes.
  function resizeCharts() {
    Object.keys(plots).forEach(function (name) {
      var p = plots[name];
      var w = chartWidth(p.el);
      if (w !== p.width) { p.width = w; p.plot.setSize({ width: w, height: 220 }); }
    });
  }
  window.addEventListener('resize', resizeCharts);

  // ------------------------------------------------------------ panels, by source kind
  function card(label, value, id, raw) {
    var c = h('div', 'card');
    var v = h('div', 'value', value);
    v.id = id;
    if (raw !== undefined) v.dataset.value = String(raw);
    c.append(h('div', 'label', label), v);
    return c;
  }

  var RENDERERS = {
    client: function (src, acc) {
      var s = src.state;
      if (!s || !s.totals) return;
      acc.down += s.totals.downloadRate;
      acc.up += s.totals.uploadRate;
      acc.peers += s.totals.peers;
      acc.torrents += s.totals.torrents;
      acc.omitted += s.peersOmitted || 0;
      s.torrents.forEach(function (t) {
        acc.names[t.infoHash] = t.name;
        var tr = h('tr');
        tr.dataset.source = src.id;
        tr.dataset.infohash = t.infoHash;
        tr.dataset.progress = String(t.progress);
        var name = td(t.name, 'name');
        name.title = t.name + '\n' + t.infoHash + (t.size !== null ? '\n' + bytes(t.size) : '') + (t.error ? '\n' + t.error : '');
        var state = h('td'); state.append(h('span', 'state ' + t.state, t.state));
        if (t.dht) {
          var dhtPill = h('span', 'pill dht', 'DHT ' + count(t.dht.peersFound));
          dhtPill.title = 'On the DHT: ' + t.dht.rounds + ' lookup(s), ' + t.dht.peersFound + ' peer address(es) found, announce stored by ' + t.dht.stored + ' node(s)';
          state.append(' ', dhtPill);
        }
        var prog = h('td', 'progress'); prog.append(bar(t.progress));
        var down = td(rate(t.downloadRate), 'num rate-down'); down.dataset.value = String(t.downloadRate);
        var up = td(rate(t.uploadRate), 'num rate-up'); up.dataset.value = String(t.uploadRate);
        tr.append(td(src.id), name, state, prog, down, up, td(bytes(t.downloaded), 'num'), td(bytes(t.uploaded), 'num'), td(ratio(t.ratio), 'num'), td(count(t.peers), 'num'));
        var mapRow = h('tr', 'pieces-row');
        mapRow.dataset.for = src.id;
        mapRow.dataset.infohash = t.infoHash;
        var cell = h('td');
        cell.colSpan = 10;
        cell.append(pieceMapEl(src.id + '\u0000' + t.infoHash, t));
        mapRow.append(cell);
        acc.torrentRows.push(tr, mapRow);
      });
      s.peers.forEach(function (p) {
        var tr = h('tr');
        tr.dataset.source = src.id;
        tr.dataset.address = p.address;
        var tname = td(p.torrentName, 'name'); tname.title = p.torrent;
        var soft = td(p.client, 'software'); soft.title = p.client;
        var we = h('td', 'flags'); we.append(pill(!p.amChoking, 'unchoked', 'choked', 'on', 'off'), pill(p.amInterested, 'interested', 'not int.', 'int', 'noint'));
        var they = h('td', 'flags'); they.append(pill(!p.peerChoking, 'unchoked', 'choked', 'on', 'off'), pill(p.peerInterested, 'interested', 'not int.', 'int', 'noint'));
        var down = td(rate(p.downloadRate), 'num rate-down'); down.dataset.value = String(p.downloadRate);
        var up = td(rate(p.uploadRate), 'num rate-up'); up.dataset.value = String(p.uploadRate);
        var has = h('td'); has.append(bar(p.progress, true));
        tname.className += ' col-torrent';
        var addr = td(p.address, 'mono');
        addr.append(h('span', 'dir', p.direction));
        tr.append(td(src.id), tname, addr, soft, we, they, down, up, td(bytes(p.downloaded), 'num'), td(bytes(p.uploaded), 'num'), td(p.ratio === null && p.uploaded > 0 ? '\u221e' : ratio(p.ratio), 'num'), has);
        acc.peerRows.push(tr);
      });
    },
    tracker: function (src, acc) {
      var s = src.state;
      if (!s || typeof s.torrents !== 'number') return;
      acc.trackers.push(src);
    },
    dht: function (src, acc) {
      var s = src.state;
      if (!s || !s.buckets) return;
      acc.dhts.push(src);
    },
  };

  // ------------------------------------------------------------ the DHT panel
  var selectedDht = null;
  var lastMsg = null;
  function nodeBar(b, k) {
    var d = h('div', 'nodebar');
    d.title = b.good + ' good, ' + b.questionable + ' questionable, ' + b.bad + ' bad of ' + k;
    [['g', b.good], ['q', b.questionable], ['b', b.bad]].forEach(function (p) {
      if (p[1] > 0) { var i = h('i', p[0]); i.style.width = (100 * p[1] / Math.max(k, 1)).toFixed(1) + '%'; d.append(i); }
    });
    return d;
  }
  function num(v, cls) { var c = td(count(v), 'num' + (cls ? ' ' + cls : '')); c.dataset.value = String(v); return c; }
  function renderDht(dhts) {
    var panel = document.getElementById('dht-panel');
    panel.hidden = dhts.length === 0;
    if (dhts.length === 0) return;
    if (!dhts.some(function (d) { return d.id === selectedDht; })) selectedDht = dhts[0].id;
    document.getElementById('dht-count').textContent = dhts.length + ' node' + (dhts.length === 1 ? '' : 's');
    var rows = dhts.map(function (src) {
      var s = src.state;
      var tr = h('tr', src.id === selectedDht ? 'selected' : null);
      tr.dataset.source = src.id;
      tr.dataset.nodes = String(s.nodes);
      var id = td(src.id); id.title = s.id;
      var qps = td(s.queriesPerSecond >= 10 ? s.queriesPerSecond.toFixed(0) : s.queriesPerSecond.toFixed(1), 'num');
      var stored = td(count(s.storedPeers) + (s.storedInfoHashes ? ' / ' + count(s.storedInfoHashes) : ''), 'num');
      tr.append(id, td(s.address, 'mono'), num(s.nodes, 'nodes'), num(s.good), num(s.questionable), num(s.bad), num(s.replacements), num(s.buckets.length), num(s.operations), qps, num(s.queriesReceived), num(s.responsesReceived), num(s.malformed), stored, num(s.storedItems));
      return tr;
    });
    var body = document.querySelector('#dht-nodes tbody');
    body.replaceChildren.apply(body, rows);
    var sel = dhts.filter(function (d) { return d.id === selectedDht; })[0];
    var s = sel.state;
    var label = document.getElementById('dht-selected');
    label.textContent = sel.id + ' (' + s.id.slice(0, 12) + '\u2026)';
    label.title = s.id;
    var bucketRows = s.buckets.map(function (b) {
      var tr = h('tr');
      tr.dataset.bucket = String(b.index);
      tr.dataset.nodes = String(b.nodes);
      var prefix = td(b.prefix === '' ? '(any)' : b.prefix, 'mono');
      prefix.title = b.depth + ' bit' + (b.depth === 1 ? '' : 's');
      var bar = h('td'); bar.append(nodeBar(b, s.k));
      tr.append(td(b.index), prefix, bar, num(b.good), num(b.questionable), num(b.bad), num(b.replacements), td(b.changedSecondsAgo.toFixed(0) + ' s', 'num'));
      return tr;
    });
    var bb = document.querySelector('#dht-buckets tbody');
    bb.replaceChildren.apply(bb, bucketRows);
    var opRows = s.lookups.map(function (o) {
      var tr = h('tr');
      tr.dataset.kind = o.kind;
      var target = td(o.target.slice(0, 16) + '\u2026', 'mono'); target.title = o.target;
      tr.append(td(o.kind + (o.internal ? ' (own)' : '')), target, td(o.phase, 'muted'), num(o.queries), num(o.responses), num(o.inflight), num(o.peers), td(o.ageSeconds.toFixed(1) + ' s', 'num'));
      return tr;
    });
    var ob = document.querySelector('#dht-ops tbody');
    ob.replaceChildren.apply(ob, opRows);
    document.getElementById('dht-ops-empty').hidden = opRows.length > 0;
    document.getElementById('dht-ops-count').textContent = s.lookupsOmitted ? '(' + s.lookupsOmitted + ' more not listed)' : '';
  }
  document.querySelector('#dht-nodes tbody').addEventListener('click', function (ev) {
    var tr = ev.target.closest('tr');
    if (!tr || !tr.dataset.source) return;
    selectedDht = tr.dataset.source;
    if (lastMsg) render(lastMsg);
    renderCharts();
  });

  function renderTracker(trackers, names) {
    var panel = document.getElementById('tracker-panel');
    panel.hidden = trackers.length === 0;
    if (trackers.length === 0) return;
    var info = document.getElementById('tracker-info');
    var items = [];
    trackers.forEach(function (src) {
      var s = src.state;
      [['tracker', src.id], ['torrents', count(s.torrents)], ['peers', count(s.peers)], ['seeders', count(s.seeders)], ['leechers', count(s.leechers)],
        ['announces/s', s.announcesPerSecond.toFixed(1)], ['announces', count(s.announces)], ['scrapes', count(s.scrapes)]].forEach(function (kv) {
        var span = h('span', null, kv[0] + ' ');
        span.append(h('b', null, kv[1]));
        items.push(span);
      });
      [s.httpUrl, s.udpUrl].forEach(function (u) { if (u) items.push(h('span', 'mono', u)); });
    });
    info.replaceChildren.apply(info, items);
    var rows = [];
    trackers.forEach(function (src) {
      src.state.swarms.forEach(function (w) {
        var tr = h('tr');
        tr.dataset.infohash = w.infoHash;
        tr.append(td(src.id), td(w.infoHash, 'mono'), td(names[w.infoHash] || '', 'name'), td(count(w.seeders), 'num'), td(count(w.leechers), 'num'), td(count(w.downloaded), 'num'));
        rows.push(tr);
      });
    });
    var body = document.querySelector('#swarms tbody');
    body.replaceChildren.apply(body, rows);
  }

  var lastState = 0;
  function render(msg) {
    lastState = Date.now();
    lastMsg = { t: msg.t, sources: msg.sources };
    var acc = { down: 0, up: 0, peers: 0, torrents: 0, omitted: 0, torrentRows: [], peerRows: [], trackers: [], dhts: [], names: {} };
    (msg.sources || []).forEach(function (src) {
      var r = RENDERERS[src.kind];
      if (r) r(src, acc);
    });
    var tb = document.querySelector('#torrents tbody');
    tb.replaceChildren.apply(tb, acc.torrentRows);
    document.getElementById('torrents-empty').hidden = acc.torrentRows.length > 0;
    // One torrent on the page: its name in every peer row says nothing.
    document.getElementById('peers').classList.toggle('one-torrent', Object.keys(acc.names).length <= 1);
    var pb = document.querySelector('#peers tbody');
    pb.replaceChildren.apply(pb, acc.peerRows);
    document.getElementById('peers-empty').hidden = acc.peerRows.length > 0;
    document.getElementById('peers-count').textContent = acc.peerRows.length + ' connection' + (acc.peerRows.length === 1 ? '' : 's') + (acc.omitted ? ' (' + acc.omitted + ' quieter ones not listed)' : '');
    prunePieceMaps();
    renderTracker(acc.trackers, acc.names);
    renderDht(acc.dhts);
    var cards = [card('Download', rate(acc.down), 'total-down', acc.down), card('Upload', rate(acc.up), 'total-up', acc.up), card('Connections', count(acc.peers), 'total-peers', acc.peers), card('Torrents', count(acc.torrents), 'total-torrents', acc.torrents)];
    acc.trackers.forEach(function (src) {
      var pre = src.id === 'tracker' ? 'Tracker ' : src.id + ' ';
      cards.push(card(pre + 'swarms', count(src.state.torrents), 'tracker-swarms'));
      cards.push(card(pre + 'seeders', count(src.state.seeders), 'tracker-seeders'));
      cards.push(card(pre + 'leechers', count(src.state.leechers), 'tracker-leechers'));
    });
    if (acc.dhts.length > 0) {
      var dhtNodes = 0, dhtOps = 0;
      acc.dhts.forEach(function (src) { dhtNodes += src.state.nodes; dhtOps += src.state.operations; });
      cards.push(card('DHT nodes', count(acc.dhts.length), 'dht-count-card', acc.dhts.length));
      cards.push(card('DHT table entries', count(dhtNodes), 'dht-table-total', dhtNodes));
      cards.push(card('DHT ops in flight', count(dhtOps), 'dht-ops-total', dhtOps));
    }
    var summary = document.getElementById('summary');
    summary.replaceChildren.apply(summary, cards);
    if (msg.sample) { applySample(msg.sample); renderCharts(); }
    document.getElementById('clock').textContent = new Date(msg.t * 1000).toLocaleTimeString();
  }

  var linkedTables = null;
  function renderLinks(tables) {
    // Tables appear with their sources (a client added later brings peers and torrents): the links follow.
    var key = tables.join(',');
    if (key === linkedTables) return;
    linkedTables = key;
    var nav = document.getElementById('links');
    var links = tables.map(function (t) { return [t + '.csv', t + '.csv']; }).concat([['JSON', 'api/state'], ['metrics', 'metrics']]);
    nav.replaceChildren.apply(nav, links.map(function (l) {
      var a = h('a', null, l[0]);
      a.href = withToken(l[1]);
      if (/\.csv$/.test(l[1])) a.setAttribute('download', 'peerkit-' + l[1]);
      a.dataset.link = l[0];
      return a;
    }));
  }

  // ------------------------------------------------------------ the event stream
  var status = document.getElementById('status');
  function setStatus(text, cls) { status.textContent = text; status.className = 'status ' + cls; }
  var es = new EventSource(withToken('events'));
  es.addEventListener('hello', function (ev) {
    var hello = JSON.parse(ev.data);
    historyLength = hello.historyLength || historyLength;
    document.body.dataset.intervalMs = String(hello.intervalMs);
    hist = { t: hello.history.t.slice(), charts: hello.history.charts };
    renderLinks(hello.tables || []);
    renderCharts();
  });
  var states = 0;
  es.addEventListener('state', function (ev) {
    setStatus('live', 'live');
    var msg = JSON.parse(ev.data);
    if (msg.tables) renderLinks(msg.tables);
    render(msg);
    // For scripts watching the page: how many updates it has shown.
    document.body.dataset.states = String(++states);
  });
  es.addEventListener('error', function () {
    setStatus(es.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting', 'down');
  });
  setInterval(function () { if (lastState && Date.now() - lastState > 5000) setStatus('stale', 'down'); }, 1000);
})();
`;
