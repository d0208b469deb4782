/**
 * The HTML report of a simulation run: one self-contained page (no scripts,
 * no external assets) with the summary table, every plot inline and links
 * to the CSV and JSON files beside it. Pure: the same run gives the same
 * bytes.
 */

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

export interface ReportInput {
  readonly title: string;
  /** The summary table, as printed: [label, value]. */
  readonly rows: readonly (readonly [string, string])[];
  /** The run's output files by name (SVG plots are embedded, the rest linked). */
  readonly files: Readonly<Record<string, string>>;
}

export function htmlReport(r: ReportInput): string {
  const names = Object.keys(r.files).sort();
  const plots = names.filter((n) => n.endsWith('.svg'));
  const data = names.filter((n) => /\.(csv|json|txt)$/.test(n));
  const out: string[] = [];
  out.push('<!doctype html>');
  out.push('<html lang="en"><head><meta charset="utf-8">');
  out.push(`<title>${escapeHtml(r.title)}</title>`);
  out.push('<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'; img-src data:">');
  out.push('<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}h1{font-size:1.4em}table{border-collapse:collapse}td{padding:.25em .8em;border-bottom:1px solid #ddd;vertical-align:top}td:first-child{font-weight:600;white-space:nowrap}.plots{display:flex;flex-wrap:wrap;gap:1em}.plot{border:1px solid #ddd;padding:.5em}.plot h2{font-size:1em;margin:.2em 0}</style>');
  out.push('</head><body>');
  out.push(`<h1>${escapeHtml(r.title)}</h1>`);
  out.push('<table>');
  for (const [k, v] of r.rows) out.push(`<tr><td>${escapeHtml(k)}</td><td>${escapeHtml(v)}</td></tr>`);
  out.push('</table>');
  out.push('<div class="plots">');
  for (const n of plots) {
    // The plots come from our own SVG writer (src/sim/svg.ts), which escapes its text.
    out.push(`<div class="plot"><h2>${escapeHtml(n)}</h2>${r.files[n]!.replace(/^<\?xml[^>]*>\s*/, '')}</div>`);
  }
  out.push('</div>');
  out.push('<h2>Data</h2><ul>');
  for (const n of data) out.push(`<li><a href="${encodeURIComponent(n)}">${escapeHtml(n)}</a></li>`);
  out.push('</ul>');
  out.push('</body></html>');
  return `${out.join('\n')}\n`;
}
