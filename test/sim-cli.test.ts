/** `peerkit sim` as a user runs it: a child process, the files it writes, its exit code. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'peerkit.js');

function peerkit(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const scenario = {
  kind: 'flash-crowd',
  name: 'cli-test',
  seed: 4,
  durationMs: 300_000,
  network: { latency: { model: 'matrix', file: 'matrix.csv' } },
  churn: { group: 'leechers', session: { type: 'pareto', shape: 1.5, dropFraction: 0.2, withinMs: 10_000 }, offline: { type: 'constant', ms: 3000 } },
  params: { fileBytes: 1 << 20, pieceBytes: 32768, leechers: 4, natFraction: 0.25, seeder: { uploadBps: 1_000_000 }, leecher: { uploadBps: 500_000, downloadBps: 1_000_000 } },
};

test('peerkit sim writes the metrics, summary and plots; the same seed gives byte-identical files', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-sim-'));
  try {
    await writeFile(join(dir, 'matrix.csv'), ',a,b\na,5,40\nb,40,8\n');
    await writeFile(join(dir, 's.json'), JSON.stringify(scenario));
    const a = peerkit('sim', join(dir, 's.json'), '--out', join(dir, 'a'), '--seed', '11');
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stdout, /op download\s+4\/4 ok/);
    assert.match(a.stderr, /sim: t=.* \(limit 300 s\) 100%, .* events\/s/); // plain progress lines: stderr is not a terminal
    assert.match(a.stderr, /wrote \d+ files/);
    const b = peerkit('sim', join(dir, 's.json'), '--out', join(dir, 'b'), '--seed', '11', '--quiet');
    assert.equal(b.code, 0, b.stderr);
    assert.equal(b.stderr, '');
    assert.equal(a.stdout, b.stdout);
    const files = (await readdir(join(dir, 'a'))).sort();
    assert.deepEqual(files, (await readdir(join(dir, 'b'))).sort());
    for (const f of ['operations.csv', 'timeseries.csv', 'timeseries.json', 'summary.json', 'cdf-download.svg', 'network-size.svg']) assert.ok(files.includes(f), f);
    for (const f of files) assert.ok((await readFile(join(dir, 'a', f))).equals(await readFile(join(dir, 'b', f))), `${f} differs`);
    const summary = JSON.parse(await readFile(join(dir, 'a', 'summary.json'), 'utf8')) as { seed: number };
    assert.equal(summary.seed, 11);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('peerkit sim: a wrong field is named, a missing --out or a bad seed is a usage error, --schema prints the schema', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerkit-sim-'));
  try {
    await writeFile(join(dir, 'bad.json'), JSON.stringify({ ...scenario, network: { latency: { model: 'constant', ms: 5 } }, churn: { ...scenario.churn, session: { type: 'weibull', shape: 0 } } }));
    const bad = peerkit('sim', join(dir, 'bad.json'), '--out', join(dir, 'o'));
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /scenario\.churn\.session\.shape: must be a number > 0, got 0/);
    // A group the kind lacks is refused before anything runs, naming the event.
    await writeFile(join(dir, 'group.json'), JSON.stringify({ kind: 'kademlia', durationMs: 60_000, events: [{ atMs: 5000, type: 'crash', count: 1, group: 'leechers' }], params: { nodes: 20, lookups: 5 } }));
    const group = peerkit('sim', join(dir, 'group.json'), '--out', join(dir, 'g'));
    assert.equal(group.code, 1);
    assert.match(group.stderr, /scenario\.events\[0\]\.group: unknown group "leechers" for kind kademlia; expected one of "\*", "bootstrap", "nodes"/);
    assert.doesNotMatch(group.stderr, /RangeError|sim: t=/);
    // A kademlia run: its progress goes to 100 % when the last lookup settles, near the expected end, not at durationMs.
    await writeFile(join(dir, 'kad.json'), JSON.stringify({ kind: 'kademlia', durationMs: 3_600_000, params: { nodes: 30, lookups: 10, joinOverMs: 5000, refreshAfterMs: 5000, lookupsOverMs: 5000 } }));
    const kad = peerkit('sim', join(dir, 'kad.json'), '--out', join(dir, 'k'));
    assert.equal(kad.code, 0, kad.stderr);
    const lines = kad.stderr.split('\n').filter((l) => l.startsWith('sim: '));
    assert.match(lines.at(-1)!, /^sim: t=\d+\.\d s of ~45 s 100%, /);
    const noOut = peerkit('sim', join(dir, 'bad.json'));
    assert.equal(noOut.code, 1);
    assert.match(noOut.stderr, /--out/);
    const seed = peerkit('sim', join(dir, 'bad.json'), '--out', join(dir, 'o'), '--seed', '-3');
    assert.equal(seed.code, 1);
    assert.match(seed.stderr, /--seed/);
    const schema = peerkit('sim', '--schema');
    assert.equal(schema.code, 0);
    assert.match(schema.stdout, /"flash-crowd"/);
    const noMatrix = peerkit('sim', join(dir, 'none.json'), '--out', join(dir, 'o'));
    assert.equal(noMatrix.code, 1);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
