/**
 * `npm run demo` (dist/scripts/demo.js) as a user runs it, apart from the
 * browser (test/dashboard-browser.test.ts drives its dashboard): options
 * are checked before anything starts (unknown ones, a --dashboard without
 * its value, a non-loopback dashboard without a token: exit 2); with
 * --keep, a closed stdout does not stop it and SIGTERM shuts it down
 * cleanly (exit 0, its work folder gone); SIGTERM before the checks are
 * done exits 143, also without leaving its folder. Each run gets its own
 * TMPDIR, so anything left behind is seen.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { ClientState } from '../src/dashboard/client-source.js';

const DEMO = join(import.meta.dirname, '..', 'scripts', 'demo.js');

function envFor(dir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: dir };
  delete env.PEERKIT_DASHBOARD_TOKEN;
  return env;
}

/** Runs the demo to its end; its exit code and output. */
function runDemo(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [DEMO, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env, timeout: 30_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function getJson(url: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    request(url, { agent: false, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))));
    })
      .on('error', reject)
      .end();
  });
}

/** Every line of `stream`, kept; `waitFor` resolves with the first (past or future) line matching `re`. */
function lines(stream: NodeJS.ReadableStream): { all: string[]; waitFor: (re: RegExp, ms: number) => Promise<RegExpExecArray> } {
  const all: string[] = [];
  const waiters = new Set<{ re: RegExp; resolve: (m: RegExpExecArray) => void; reject: (e: Error) => void }>();
  let ended = false;
  const rl = createInterface({ input: stream });
  rl.on('line', (l) => {
    all.push(l);
    for (const w of waiters) {
      const m = w.re.exec(l);
      if (m) {
        waiters.delete(w);
        w.resolve(m);
      }
    }
  });
  rl.on('close', () => {
    ended = true;
    for (const w of waiters) w.reject(new Error(`the stream ended before a line matching ${w.re}:\n${all.join('\n')}`));
    waiters.clear();
  });
  const waitFor = (re: RegExp, ms: number): Promise<RegExpExecArray> => {
    for (const l of all) {
      const m = re.exec(l);
      if (m) return Promise.resolve(m);
    }
    if (ended) return Promise.reject(new Error(`the stream ended before a line matching ${re}:\n${all.join('\n')}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`no line matching ${re} within ${ms} ms:\n${all.join('\n')}`));
      }, ms);
      const w = { re, resolve: (m: RegExpExecArray) => (clearTimeout(timer), resolve(m)), reject: (e: Error) => (clearTimeout(timer), reject(e)) };
      waiters.add(w);
    });
  };
  return { all, waitFor };
}

test('demo options: unknown ones, a bare --dashboard, bad numbers and an open dashboard without a token are refused (exit 2) before anything starts; --help lists them', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-demo-args-'));
  try {
    const env = envFor(dir);
    const cases: [string[], RegExp][] = [
      [['--bogus'], /^demo: unknown option '--bogus'/],
      [['--dashboard'], /^demo: option '--dashboard <\[host:\]port>' argument missing/],
      [['--dashboard', '--keep'], /^demo: --dashboard needs \[HOST:\]PORT, not --keep/],
      [['--keep', 'now'], /^demo: too many arguments/],
      [['--leechers', '0'], /^demo: option '--leechers <n>' argument '0' is invalid/],
      [['--size', 'big'], /^demo: option '--size <MiB>' argument 'big' is invalid/],
      [['--dashboard', '0.0.0.0:0'], /^demo: --dashboard: refusing to serve the dashboard on 0\.0\.0\.0 without an access token/],
      [['--dashboard', '[::]:0', '--dashboard-token', 'short'], /^demo: --dashboard: the dashboard token must be 16 to 256 characters/],
    ];
    const runs = await Promise.all(cases.map(([args]) => runDemo(args, env)));
    runs.forEach((r, i) => {
      assert.equal(r.code, 2, cases[i]![0].join(' '));
      assert.match(r.stderr, cases[i]![1]);
      assert.equal(r.stdout, '', 'nothing started');
    });
    const help = await runDemo(['--help'], env);
    assert.equal(help.code, 0);
    for (const o of ['--size <MiB>', '--leechers <n>', '--dht-nodes <n>', '--limit <MiB>', '--keep', '--dashboard <[host:]port>', '--dashboard-token <token>', '--no-dashboard']) assert.ok(help.stdout.includes(o), o);
    assert.deepEqual(await readdir(dir), [], 'no work folder made');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('demo --keep: carries on when its stdout is closed, keeps serving, and SIGTERM shuts it down with exit 0 and no work folder left', { timeout: 90_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-demo-keep-'));
  const child = spawn(process.execPath, [DEMO, '--keep', '--size', '1', '--leechers', '2', '--dht-nodes', '3'], { stdio: ['ignore', 'pipe', 'pipe'], env: envFor(dir) });
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const out = lines(child.stdout);
  const err = lines(child.stderr);
  try {
    const url = (await out.waitFor(/^dashboard: (http:\/\/127\.0\.0\.1:\d+\/)$/, 30_000))[1]!;
    // As `npm run demo -- --keep | head -3` would: the reading end goes away; the demo's next lines hit EPIPE.
    child.stdout.destroy();
    await err.waitFor(/^demo: stdout is closed; carrying on/, 30_000);
    await err.waitFor(/^demo: all checks passed$/, 60_000);
    await err.waitFor(/^keeping everything running \(files in .*, seeding, dashboard at http:\/\/127\.0\.0\.1:\d+\/\) until Ctrl-C or SIGTERM$/, 10_000);
    // Still serving: both leechers complete on its dashboard.
    const st = (await getJson(`${url}api/state`)) as { sources: { id: string; kind: string; state: ClientState }[] };
    const leechers = st.sources.filter((x) => x.kind === 'client' && x.id.startsWith('leecher'));
    assert.deepEqual(leechers.map((x) => [x.id, x.state.torrents[0]!.progress]), [['leecher 1', 1], ['leecher 2', 1]]);
    assert.equal((await readdir(dir)).length, 1, 'its work folder, while it runs');
    child.kill('SIGTERM');
    assert.equal(await exit, 0);
    await err.waitFor(/^demo: SIGTERM, shutting down$/, 5000);
    assert.ok(!err.all.some((l) => /Error/.test(l)), err.all.join('\n'));
    assert.deepEqual(await readdir(dir), [], 'the work folder is removed');
  } finally {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});

test('demo: SIGTERM before the checks are done exits 143 and removes its work folder', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-demo-term-'));
  const child = spawn(process.execPath, [DEMO, '--size', '8', '--limit', '0.5', '--leechers', '1', '--dht-nodes', '2'], { stdio: ['ignore', 'pipe', 'pipe'], env: envFor(dir) });
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const out = lines(child.stdout);
  const err = lines(child.stderr);
  try {
    await out.waitFor(/^== downloading$/, 30_000);
    assert.equal((await readdir(dir)).length, 1, 'its work folder, while it runs');
    child.kill('SIGTERM');
    assert.equal(await exit, 143);
    await out.waitFor(/^demo: interrupted \(SIGTERM\)$/, 5000);
    assert.deepEqual(await readdir(dir), []);
  } finally {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
  assert.deepEqual(err.all, []);
});
