/**
 * A strict reader of the Prometheus text exposition format (0.0.4) that
 * also checks the naming conventions of https://prometheus.io/docs/practices/naming/
 * on a whole /metrics output. Used by the dashboard tests on real
 * expositions; its own failures are tested in test/dashboard.test.ts.
 * Not a test file itself (npm test runs *.test.js only).
 *
 * It refuses (throws an Error saying which line and why):
 *  - a line that is not `# HELP`, `# TYPE` or a sample, other comments, blank lines;
 *  - a family without HELP or TYPE, with them twice, after its samples, or
 *    appearing again after another family (every family once, together);
 *  - a metric name that is not lower snake case ([a-z_][a-z0-9_]*; no colons,
 *    which are for recording rules), a label name outside [a-zA-Z_][a-zA-Z0-9_]*
 *    or starting with `__`, a label twice in a sample, a badly quoted or
 *    escaped label value, the same series (name and labels) twice;
 *  - a counter whose name does not end in `_total`, or a gauge whose does;
 *  - a value that is not a float (NaN and ±Inf allowed), a counter below 0 or NaN;
 *  - units that are not base units (`_milliseconds`, `_kilobytes`, `_mib`,
 *    `_minutes`, `_percent`...), `bytes` or `seconds` anywhere but as the
 *    unit suffix (before `_total`), a HELP that talks of bytes or seconds
 *    for a name without that unit, and pre-computed rates (`_per_second` in
 *    the name, "per second" in the HELP): Prometheus computes rates with rate().
 *  - with `requireSamples`, a family with no sample at all.
 */

export interface PromSample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  readonly line: string;
}

export interface PromFamily {
  readonly name: string;
  readonly type: 'counter' | 'gauge' | 'untyped' | 'summary' | 'histogram';
  readonly help: string;
  readonly samples: PromSample[];
}

const METRIC_NAME = /^[a-z_][a-z0-9_]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const NOT_BASE_UNITS = /_(milliseconds|microseconds|nanoseconds|ms|us|ns|minutes|hours|days|kilobytes|megabytes|gigabytes|kibibytes|mebibytes|kb|mb|gb|kib|mib|gib|bits|percent|percentage)(_|$)/;

function fail(lineNo: number, line: string, why: string): never {
  throw new Error(`/metrics line ${lineNo}: ${why}: ${JSON.stringify(line)}`);
}

/** Parses `{a="x",b="y"}` (the braces included); throws on any syntax error. */
function parseLabels(text: string, lineNo: number, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 1;
  if (text[text.length - 1] !== '}') fail(lineNo, line, 'label set not closed');
  const end = text.length - 1;
  while (i < end) {
    const eq = text.indexOf('=', i);
    if (eq < 0) fail(lineNo, line, 'label without a value');
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name)) fail(lineNo, line, `bad label name ${JSON.stringify(name)}`);
    if (name.startsWith('__')) fail(lineNo, line, `label name ${name} is reserved`);
    if (Object.hasOwn(labels, name)) fail(lineNo, line, `label ${name} twice`);
    if (text[eq + 1] !== '"') fail(lineNo, line, `label ${name} value not quoted`);
    let j = eq + 2;
    let value = '';
    for (;;) {
      if (j >= end) fail(lineNo, line, `label ${name} value not closed`);
      const c = text[j]!;
      if (c === '"') break;
      if (c === '\n') fail(lineNo, line, 'raw newline in a label value');
      if (c === '\\') {
        const e = text[j + 1];
        if (e === '\\' || e === '"') value += e;
        else if (e === 'n') value += '\n';
        else fail(lineNo, line, `bad escape \\${e ?? ''} in label ${name}`);
        j += 2;
        continue;
      }
      value += c;
      j++;
    }
    labels[name] = value;
    i = j + 1;
    if (i < end) {
      if (text[i] !== ',') fail(lineNo, line, 'labels not separated by a comma');
      i++;
      if (i === end) break; // a trailing comma is allowed by the format
    }
  }
  return labels;
}

function parseValue(v: string, lineNo: number, line: string): number {
  if (v === 'NaN') return NaN;
  if (v === '+Inf' || v === 'Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  if (!/^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(v)) fail(lineNo, line, `value ${JSON.stringify(v)} is not a float`);
  return Number(v);
}

function checkName(f: PromFamily, lineNo: number, line: string): void {
  const n = f.name;
  if (!METRIC_NAME.test(n)) fail(lineNo, line, `metric name ${n} is not lower snake case (no colons outside recording rules)`);
  if (f.type === 'counter' && !n.endsWith('_total')) fail(lineNo, line, `counter ${n} does not end in _total`);
  if (f.type !== 'counter' && n.endsWith('_total')) fail(lineNo, line, `${f.type} ${n} ends in _total (reserved for counters)`);
  if (NOT_BASE_UNITS.test(n)) fail(lineNo, line, `${n}: use base units (seconds, bytes, ratios 0-1)`);
  if (/_per_second(_|$)|_rate$/.test(n) || /\bper second\b/i.test(f.help)) fail(lineNo, line, `${n} is a pre-computed rate; export the counter and let rate() compute it`);
  const base = n.endsWith('_total') ? n.slice(0, -'_total'.length) : n;
  for (const unit of ['bytes', 'seconds']) {
    const at = base.indexOf(`_${unit}`);
    if (at >= 0 && !base.endsWith(`_${unit}`)) fail(lineNo, line, `${n}: the unit ${unit} goes at the end (before _total)`);
    if (new RegExp(`\\b${unit}\\b`, 'i').test(f.help) && at < 0) fail(lineNo, line, `${n}: its HELP speaks of ${unit} but the name has no _${unit} suffix`);
  }
}

/** Reads and checks a whole exposition; the families by name, in order. */
export function checkPrometheus(text: string, o: { requireSamples?: boolean } = {}): Map<string, PromFamily> {
  const families = new Map<string, PromFamily>();
  const series = new Set<string>();
  let current: { name: string; help?: string; type?: PromFamily['type']; family?: PromFamily } | undefined;
  const lines = text.split('\n');
  if (text !== '' && lines.pop() !== '') throw new Error('/metrics does not end with a newline');
  const close = (): void => {
    if (current && !current.family) throw new Error(`family ${current.name}: HELP without TYPE`);
  };
  lines.forEach((line, k) => {
    const lineNo = k + 1;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([^ ]+) (.*)$/.exec(line);
      if (!m) fail(lineNo, line, 'a comment that is neither HELP nor TYPE');
      const [, kind, name, rest] = m as unknown as [string, 'HELP' | 'TYPE', string, string];
      if (families.has(name) && current?.name !== name) fail(lineNo, line, `family ${name} appears twice`);
      if (current?.name !== name) {
        close();
        if (families.has(name)) fail(lineNo, line, `family ${name} appears twice`);
        if (kind !== 'HELP') fail(lineNo, line, `family ${name}: TYPE before HELP`);
        current = { name };
      }
      if (kind === 'HELP') {
        if (current.help !== undefined) fail(lineNo, line, `family ${name}: HELP twice`);
        if (rest.trim() === '') fail(lineNo, line, `family ${name}: empty HELP`);
        current.help = rest;
      } else {
        if (current.type !== undefined) fail(lineNo, line, `family ${name}: TYPE twice`);
        if (!['counter', 'gauge', 'untyped', 'summary', 'histogram'].includes(rest)) fail(lineNo, line, `unknown type ${rest}`);
        current.type = rest as PromFamily['type'];
        const family: PromFamily = { name, type: current.type, help: current.help!, samples: [] };
        checkName(family, lineNo, line);
        current.family = family;
        families.set(name, family);
      }
      return;
    }
    if (line === '') fail(lineNo, line, 'blank line');
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? ([^ ]+)( -?\d+)?$/.exec(line);
    if (!m) fail(lineNo, line, 'not a sample line');
    const [, name, labelText, valueText] = m as unknown as [string, string, string | undefined, string];
    if (!current?.family || current.name !== name) fail(lineNo, line, `sample of ${name} outside its family's HELP and TYPE block`);
    const labels = labelText === undefined ? {} : parseLabels(labelText, lineNo, line);
    const value = parseValue(valueText, lineNo, line);
    if (current.family.type === 'counter' && !(value >= 0)) fail(lineNo, line, 'a counter below 0 or NaN');
    const key = `${name}${JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)))}`;
    if (series.has(key)) fail(lineNo, line, 'the same series twice');
    series.add(key);
    current.family.samples.push({ labels, value, line });
  });
  close();
  if (o.requireSamples) {
    const empty = [...families.values()].filter((f) => f.samples.length === 0).map((f) => f.name);
    if (empty.length > 0) throw new Error(`families without samples: ${empty.join(', ')}`);
  }
  return families;
}
