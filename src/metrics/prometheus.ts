/**
 * The Prometheus text exposition format (0.0.4), shared by the tracker's
 * `/metrics` and the dashboard's. A metric family is built as data, so
 * families from several sources can be merged (same name, samples told
 * apart by a label) before one rendering: the format wants each family's
 * HELP, TYPE and samples together, once.
 */

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type MetricType = 'counter' | 'gauge';
export type Labels = Readonly<Record<string, string>>;
export type Sample = readonly [Labels | undefined, number];

export interface MetricFamily {
  /** [a-zA-Z_:][a-zA-Z0-9_:]*, with the unit and, for counters, `_total` at the end. */
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly samples: readonly Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A label value with `\`, `"` and newlines escaped. */
export function escapeLabelValue(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

function escapeHelp(v: string): string {
  return v.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Renders families; throws a RangeError on an invalid metric or label name (a programming error). */
export function renderPrometheus(families: readonly MetricFamily[]): string {
  const out: string[] = [];
  for (const f of families) {
    if (!NAME.test(f.name)) throw new RangeError(`invalid metric name ${JSON.stringify(f.name)}`);
    out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const [labels, value] of f.samples) {
      let l = '';
      if (labels !== undefined) {
        const parts: string[] = [];
        for (const [k, v] of Object.entries(labels)) {
          if (!LABEL.test(k) || k.startsWith('__')) throw new RangeError(`invalid label name ${JSON.stringify(k)}`);
          parts.push(`${k}="${escapeLabelValue(v)}"`);
        }
        if (parts.length > 0) l = `{${parts.join(',')}}`;
      }
      out.push(`${f.name}${l} ${formatValue(value)}`);
    }
  }
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}

/**
 * Merges groups of families into one list, in first-seen order: every
 * sample gets its group's labels (first, before its own), and families
 * of the same name become one. A family whose type differs from the first
 * one of its name is dropped rather than rendered invalid.
 */
export function mergeFamilies(groups: readonly { readonly labels: Labels; readonly families: readonly MetricFamily[] }[]): MetricFamily[] {
  const byName = new Map<string, { name: string; type: MetricType; help: string; samples: Sample[] }>();
  for (const g of groups) {
    for (const f of g.families) {
      let m = byName.get(f.name);
      if (m === undefined) {
        m = { name: f.name, type: f.type, help: f.help, samples: [] };
        byName.set(f.name, m);
      } else if (m.type !== f.type) {
        continue;
      }
      for (const [labels, value] of f.samples) m.samples.push([{ ...g.labels, ...labels }, value]);
    }
  }
  return [...byName.values()];
}
