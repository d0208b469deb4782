/**
 * A small schema language for scenario files: the validator gives the first
 * problem as one message naming the field by its path
 * (`scenario.network.latency.maxMs: must be a number >= 0, got "x"`), and
 * `toJsonSchema` turns the same description into a JSON Schema document for
 * editors (scenarios/schema.json).
 *
 * Validation returns the value with defaults filled in; it never trusts a
 * field it was not told about (unknown fields are errors, with the allowed
 * names in the message, so a typo does not pass silently).
 */

export class ScenarioError extends Error {
  /** The path of the offending field, `scenario.a.b[2].c`. */
  readonly path: string;
  constructor(path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'ScenarioError';
    this.path = path;
  }
}

interface Base {
  readonly description?: string;
}

export interface NumberSchema extends Base {
  readonly type: 'number';
  readonly integer?: boolean;
  readonly min?: number;
  /** Must be strictly greater than this. */
  readonly above?: number;
  readonly max?: number;
}
export interface StringSchema extends Base {
  readonly type: 'string';
  readonly enum?: readonly string[];
  readonly maxLength?: number;
}
export interface BooleanSchema extends Base {
  readonly type: 'boolean';
}
export interface ArraySchema extends Base {
  readonly type: 'array';
  readonly items: Schema;
  readonly minItems?: number;
  readonly maxItems?: number;
}
export interface Property {
  readonly schema: Schema;
  readonly optional?: boolean;
  /** Filled in when the field is absent (implies optional). */
  readonly default?: unknown;
}
export interface ObjectSchema extends Base {
  readonly type: 'object';
  readonly properties: Readonly<Record<string, Property>>;
  /** Fields of which at most one / exactly one must be present. */
  readonly oneOf?: readonly (readonly string[])[];
}
/** Objects told apart by a string field (`"type": "weibull"`). */
export interface UnionSchema extends Base {
  readonly type: 'union';
  readonly tag: string;
  readonly variants: Readonly<Record<string, ObjectSchema>>;
}
/** Any JSON value, checked by the kind itself later. */
export interface AnySchema extends Base {
  readonly type: 'any';
}
export type Schema = NumberSchema | StringSchema | BooleanSchema | ArraySchema | ObjectSchema | UnionSchema | AnySchema;

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const MAX_DEPTH = 32;

/** Checks `value` against `schema`; returns it with defaults filled in. Throws ScenarioError. */
export function validate(value: unknown, schema: Schema, path = 'scenario', depth = 0): unknown {
  if (depth > MAX_DEPTH) throw new ScenarioError(path, 'nested too deeply');
  switch (schema.type) {
    case 'any':
      return value;
    case 'number': {
      const range: string[] = [];
      if (schema.min !== undefined) range.push(`>= ${schema.min}`);
      if (schema.above !== undefined) range.push(`> ${schema.above}`);
      if (schema.max !== undefined) range.push(`<= ${schema.max}`);
      const what = `${schema.integer ? 'an integer' : 'a number'}${range.length ? ` ${range.join(' and ')}` : ''}`;
      if (typeof value !== 'number' || !Number.isFinite(value)) throw new ScenarioError(path, `must be ${what}, got ${show(value)}`);
      if (schema.integer && !Number.isSafeInteger(value)) throw new ScenarioError(path, `must be ${what}, got ${show(value)}`);
      if ((schema.min !== undefined && value < schema.min) || (schema.above !== undefined && !(value > schema.above)) || (schema.max !== undefined && value > schema.max)) {
        throw new ScenarioError(path, `must be ${what}, got ${show(value)}`);
      }
      return value;
    }
    case 'string':
      if (typeof value !== 'string') throw new ScenarioError(path, `must be a string, got ${show(value)}`);
      if (schema.enum && !schema.enum.includes(value)) throw new ScenarioError(path, `must be one of ${schema.enum.map((e) => `"${e}"`).join(', ')}, got ${show(value)}`);
      if (value.length > (schema.maxLength ?? 4096)) throw new ScenarioError(path, `is longer than ${schema.maxLength ?? 4096} characters`);
      return value;
    case 'boolean':
      if (typeof value !== 'boolean') throw new ScenarioError(path, `must be true or false, got ${show(value)}`);
      return value;
    case 'array': {
      if (!Array.isArray(value)) throw new ScenarioError(path, `must be an array, got ${show(value)}`);
      if (schema.minItems !== undefined && value.length < schema.minItems) throw new ScenarioError(path, `must have at least ${schema.minItems} item(s), got ${value.length}`);
      const max = schema.maxItems ?? 100_000;
      if (value.length > max) throw new ScenarioError(path, `must have at most ${max} items, got ${value.length}`);
      return value.map((v, i) => validate(v, schema.items, `${path}[${i}]`, depth + 1));
    }
    case 'object': {
      if (!isPlainObject(value)) throw new ScenarioError(path, `must be an object, got ${show(value)}`);
      const known = Object.keys(schema.properties);
      for (const k of Object.keys(value)) {
        if (!Object.hasOwn(schema.properties, k)) throw new ScenarioError(`${path}.${k}`, `unknown field (expected one of: ${known.join(', ')})`);
      }
      const out: Record<string, unknown> = {};
      for (const [k, prop] of Object.entries(schema.properties)) {
        const v = value[k];
        if (v === undefined) {
          // A default goes through its schema too, so the defaults inside it are filled in (`network: {}`).
          if (prop.default !== undefined) out[k] = validate(structuredClone(prop.default), prop.schema, `${path}.${k}`, depth + 1);
          else if (!prop.optional && !(schema.oneOf ?? []).some((g) => g.includes(k))) throw new ScenarioError(`${path}.${k}`, 'is required');
          continue;
        }
        out[k] = validate(v, prop.schema, `${path}.${k}`, depth + 1);
      }
      for (const group of schema.oneOf ?? []) {
        const present = group.filter((k) => value[k] !== undefined);
        if (present.length !== 1) throw new ScenarioError(path, `needs exactly one of ${group.map((k) => `"${k}"`).join(', ')}${present.length ? `, got ${present.length}` : ''}`);
      }
      return out;
    }
    case 'union': {
      if (!isPlainObject(value)) throw new ScenarioError(path, `must be an object, got ${show(value)}`);
      const tag = value[schema.tag];
      const names = Object.keys(schema.variants);
      if (typeof tag !== 'string' || !Object.hasOwn(schema.variants, tag)) {
        throw new ScenarioError(`${path}.${schema.tag}`, `must be one of ${names.map((n) => `"${n}"`).join(', ')}, got ${show(tag)}`);
      }
      const variant = schema.variants[tag]!;
      const withTag: ObjectSchema = { ...variant, properties: { [schema.tag]: { schema: { type: 'string', enum: [tag] } }, ...variant.properties } };
      return validate(value, withTag, path, depth);
    }
  }
}

/** The same schema as a JSON Schema (draft 2020-12) document. */
export function toJsonSchema(schema: Schema): Record<string, unknown> {
  const d = schema.description === undefined ? {} : { description: schema.description };
  switch (schema.type) {
    case 'any':
      return { ...d };
    case 'number': {
      const o: Record<string, unknown> = { ...d, type: schema.integer ? 'integer' : 'number' };
      if (schema.min !== undefined) o['minimum'] = schema.min;
      if (schema.above !== undefined) o['exclusiveMinimum'] = schema.above;
      if (schema.max !== undefined) o['maximum'] = schema.max;
      return o;
    }
    case 'string':
      return schema.enum ? { ...d, enum: [...schema.enum] } : { ...d, type: 'string' };
    case 'boolean':
      return { ...d, type: 'boolean' };
    case 'array': {
      const o: Record<string, unknown> = { ...d, type: 'array', items: toJsonSchema(schema.items) };
      if (schema.minItems !== undefined) o['minItems'] = schema.minItems;
      if (schema.maxItems !== undefined) o['maxItems'] = schema.maxItems;
      return o;
    }
    case 'object': {
      const properties: Record<string, unknown> = {};
      const required: string[] = [];
      for (const [k, p] of Object.entries(schema.properties)) {
        properties[k] = p.default === undefined ? toJsonSchema(p.schema) : { ...toJsonSchema(p.schema), default: p.default };
        if (!p.optional && p.default === undefined && !(schema.oneOf ?? []).some((g) => g.includes(k))) required.push(k);
      }
      const o: Record<string, unknown> = { ...d, type: 'object', properties, additionalProperties: false };
      if (required.length) o['required'] = required;
      if (schema.oneOf?.length) o['allOf'] = schema.oneOf.map((g) => ({ oneOf: g.map((k) => ({ required: [k] })) }));
      return o;
    }
    case 'union':
      return {
        ...d,
        oneOf: Object.entries(schema.variants).map(([tag, v]) =>
          toJsonSchema({ ...v, properties: { [schema.tag]: { schema: { type: 'string', enum: [tag] } }, ...v.properties } }),
        ),
      };
  }
}
