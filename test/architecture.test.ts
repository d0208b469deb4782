/**
 * Keeps the sans-I/O split honest: codecs (src/codec) and protocol cores
 * (src/core) may not import I/O modules, set timers, read the clock or use
 * ambient randomness. ESLint checks the same thing (eslint.config.js); this
 * test makes `npm test` fail too, and it parses the code rather than grepping
 * it, so comments and strings do not count.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';

const root = join(import.meta.dirname, '..', '..');
const PURE_DIRS = ['src/codec', 'src/core'];

const IO_MODULES = new Set(['net', 'dgram', 'fs', 'fs/promises', 'timers', 'timers/promises', 'http', 'https', 'http2', 'child_process', 'worker_threads', 'cluster', 'dns', 'dns/promises', 'tls', 'perf_hooks', 'readline', 'os']);
const FORBIDDEN_GLOBAL_CALLS = new Set(['setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval', 'clearImmediate', 'fetch', 'require']);
const FORBIDDEN_MEMBERS = new Set(['Date.now', 'Math.random', 'performance.now', 'process.hrtime', 'crypto.randomBytes', 'crypto.randomInt', 'crypto.getRandomValues', 'crypto.randomUUID']);
const FORBIDDEN_NAMED_IMPORTS = new Set(['randomBytes', 'randomInt', 'randomFill', 'randomFillSync', 'randomUUID', 'getRandomValues']);

function isIoModule(spec: string): boolean {
  const name = spec.startsWith('node:') ? spec.slice(5) : spec;
  return IO_MODULES.has(name);
}

export function findViolations(fileName: string, source: string): string[] {
  const sf = ts.createSourceFile(fileName, source, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const found: string[] = [];
  const where = (n: ts.Node): string => `${fileName}:${sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1}`;
  const visit = (n: ts.Node): void => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
      const spec = n.moduleSpecifier.text;
      if (isIoModule(spec)) found.push(`${where(n)} imports ${spec}`);
      if ((spec === 'node:crypto' || spec === 'crypto') && ts.isImportDeclaration(n)) {
        const named = n.importClause?.namedBindings;
        if (named && ts.isNamedImports(named)) {
          for (const el of named.elements) {
            const imported = (el.propertyName ?? el.name).text;
            if (FORBIDDEN_NAMED_IMPORTS.has(imported)) found.push(`${where(el)} imports ambient randomness ${imported}`);
          }
        }
      }
    }
    if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = n.arguments[0];
      if (arg && ts.isStringLiteral(arg) && isIoModule(arg.text)) found.push(`${where(n)} dynamically imports ${arg.text}`);
    }
    if (ts.isCallExpression(n) && ts.isIdentifier(n.expression) && FORBIDDEN_GLOBAL_CALLS.has(n.expression.text)) {
      found.push(`${where(n)} calls ${n.expression.text}`);
    }
    if (ts.isPropertyAccessExpression(n) && ts.isIdentifier(n.expression)) {
      const member = `${n.expression.text}.${n.name.text}`;
      if (FORBIDDEN_MEMBERS.has(member)) found.push(`${where(n)} uses ${member}`);
    }
    if (ts.isNewExpression(n) && ts.isIdentifier(n.expression) && n.expression.text === 'Date' && (n.arguments?.length ?? 0) === 0) {
      found.push(`${where(n)} reads the clock with new Date()`);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return found;
}

function tsFiles(dir: string): string[] {
  let out: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out = out.concat(tsFiles(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

test('the checker itself flags every kind of violation', () => {
  const bad = [
    "import { createSocket } from 'node:dgram';",
    "import * as fs from 'fs';",
    "export { connect } from 'node:net';",
    "const t = await import('node:timers');",
    'setTimeout(() => 1, 5);',
    'const now = Date.now();',
    'const r = Math.random();',
    'const t2 = performance.now();',
    'const d = new Date();',
    "import { randomBytes } from 'node:crypto';",
  ];
  for (const line of bad) assert.equal(findViolations('bad.ts', line).length, 1, line);
  const good = [
    "import { createHash } from 'node:crypto';",
    'const d = new Date(0);',
    '// Date.now() in a comment',
    "const s = 'setTimeout(x)';",
    'function f(now: number) { return now + 1; }',
  ];
  for (const line of good) assert.deepEqual(findViolations('good.ts', line), [], line);
});

test('codecs and protocol cores are sans-I/O', () => {
  const files = PURE_DIRS.flatMap((d) => tsFiles(join(root, d)));
  assert.ok(files.length > 0, 'no source files found under the pure folders');
  const violations = files.flatMap((f) => findViolations(relative(root, f), readFileSync(f, 'utf8')));
  assert.deepEqual(violations, []);
});
