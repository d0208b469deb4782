// ESLint flat config. Besides the usual TypeScript rules, it enforces the
// sans-I/O boundary: code under src/codec and src/core must not touch
// sockets, files, timers, the clock or ambient randomness. The same rule is
// also checked by test/architecture.test.ts, so a violation fails both
// `npm run lint` and `npm test`.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const ioModules = ['net', 'dgram', 'fs', 'fs/promises', 'timers', 'timers/promises', 'http', 'https', 'child_process', 'worker_threads', 'cluster', 'dns', 'tls', 'perf_hooks'];
const forbiddenImports = ioModules.flatMap((m) => [m, `node:${m}`]);

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.bench-tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { console: 'readonly', process: 'readonly', Buffer: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', queueMicrotask: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly' },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['src/codec/**/*.ts', 'src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: forbiddenImports.map((name) => ({ name, message: 'Protocol cores and codecs are sans-I/O: take I/O, time and randomness through the runtime contract (src/runtime/contract.ts).' })) }],
      'no-restricted-globals': ['error',
        ...['setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval', 'clearImmediate', 'performance', 'fetch'].map((name) => ({ name, message: 'Cores are sans-I/O: time and timers are injected.' }))],
      'no-restricted-properties': ['error',
        { object: 'Date', property: 'now', message: 'Cores read time from the injected clock.' },
        { object: 'Math', property: 'random', message: 'Cores use the injected seeded random source.' },
        { object: 'process', property: 'hrtime', message: 'Cores read time from the injected clock.' }],
      'no-restricted-syntax': ['error',
        { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'Cores read time from the injected clock.' }],
    },
  },
);
