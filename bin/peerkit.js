#!/usr/bin/env node
// Thin launcher: the CLI itself is compiled TypeScript in dist/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write('peerkit: not built yet; run `npm run build` in the peerkit folder first\n');
  process.exit(1);
}
const { run } = await import(main.href);
// run() resolves to the exit code; nothing else in the CLI sets process.exitCode.
process.exitCode = await run(process.argv.slice(2));
