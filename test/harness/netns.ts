/**
 * Private test networks made of Linux network namespaces, for real clients
 * that will not talk to peers on 127.0.0.1 (Transmission 3.00: see the top
 * of transmission.ts). Needs root (CAP_NET_ADMIN) and iproute2's `ip`.
 *
 * Topology of createNetwork({ hosts: n }):
 *
 *     root namespace                         namespace peerkit-PID-TAG-i
 *     bridge pkTAGbr [10.A.B.1/24 if rootLink] ── veth pkTAGv<i> ══ eth0 10.A.B.(i+2)/24, lo up
 *
 * - Only the test subnet exists inside a namespace: no default route, so a
 *   program in it can reach its own subnet (the other hosts and, with
 *   rootLink, the root namespace at 10.A.B.1) and nothing else.
 * - The bridge is not connected to any physical interface. With rootLink
 *   (the default) the root namespace gets 10.A.B.1 on the bridge, so a test
 *   process can run a tracker or a peerkit client there and reach the hosts.
 * - A.B is chosen at random among 10.100-10.250 and checked against every
 *   address and route already on the machine.
 * - stop() kills whatever still runs inside the namespaces, deletes them
 *   (which deletes their veth pairs) and the bridge; it is safe to call
 *   twice. A process 'exit' hook does the same synchronously, and
 *   createNetwork first removes networks left by test processes that died
 *   (the creator's PID is in the namespace name).
 */
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { promisify } from 'node:util';
import { spawnManaged, type ManagedProcess, type SpawnOptions } from './proc.js';

const execFileP = promisify(execFile);

export interface NetnsHost {
  /** The namespace's name for `ip netns`. */
  readonly name: string;
  /** Its IPv4 address on the test subnet. */
  readonly address: string;
  /** argv that runs a command inside it: `ip netns exec NAME`. */
  readonly prefix: readonly string[];
}

export interface NetworkOptions {
  /** How many namespaces (hosts). Default 1. */
  readonly hosts?: number;
  /** Give the root namespace an address on the bridge (10.A.B.1). Default true. */
  readonly rootLink?: boolean;
}

export interface TestNetwork {
  /** For example 10.173.42.0/24. */
  readonly subnet: string;
  /** The root namespace's address on the bridge, when rootLink. */
  readonly rootAddress: string | undefined;
  readonly hosts: readonly NetnsHost[];
  /** Every address of this network (hosts and rootAddress): what real clients may be pointed at. */
  readonly addresses: readonly string[];
  /** Runs a command inside `host` to its end (bounded), returning its output; throws on non-zero exit. */
  exec(host: NetnsHost, cmd: string, args: readonly string[], timeoutMs?: number): Promise<{ stdout: string; stderr: string }>;
  /** Starts a long-running command inside `host` (see spawnManaged); stop() of the network stops it too. */
  spawn(host: NetnsHost, cmd: string, args: readonly string[], opts?: SpawnOptions): ManagedProcess;
  /** Stops processes, deletes namespaces and the bridge. Idempotent. */
  stop(): Promise<void>;
}

const NAME_RE = /^peerkit-(\d+)-([a-z0-9]{5})-\d+$/;
const live = new Set<{ namespaces: string[]; bridge: string }>();
let exitHookInstalled = false;

async function ip(args: readonly string[], timeoutMs = 10_000): Promise<string> {
  try {
    const { stdout } = await execFileP('ip', args, { timeout: timeoutMs, killSignal: 'SIGKILL' });
    return stdout;
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') throw new Error('`ip` not found: install iproute2 (.ci/run does)', { cause: e });
    throw new Error(`ip ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`, { cause: e });
  }
}

function ipSync(args: readonly string[]): void {
  spawnSync('ip', args, { stdio: 'ignore', timeout: 5000 });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function killInside(ns: string): void {
  const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5000 });
  for (const p of (r.stdout ?? '').split(/\s+/)) {
    const pid = Number(p);
    if (Number.isSafeInteger(pid) && pid > 1 && pid !== process.pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

function teardownSync(namespaces: readonly string[], bridge: string): void {
  for (const ns of namespaces) {
    killInside(ns);
    ipSync(['netns', 'del', ns]);
  }
  ipSync(['link', 'del', bridge]);
}

/** Removes namespaces (and their bridges) left behind by test processes that no longer run. */
export function cleanupStaleNetworks(): void {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 5000 });
  const stale = new Map<string, string[]>();
  for (const line of (r.stdout ?? '').split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = NAME_RE.exec(name);
    if (!m || alive(Number(m[1]))) continue;
    const tag = m[2]!;
    stale.set(tag, [...(stale.get(tag) ?? []), name]);
  }
  for (const [tag, namespaces] of stale) teardownSync(namespaces, `pk${tag}br`);
}

function toInt(a: string): number {
  return a.split('.').reduce((n, part) => n * 256 + Number(part), 0);
}

/** A random 10.A.B (a /24) overlapping no address or route on the machine. */
async function pickSubnet(): Promise<string> {
  const text = (await ip(['-4', '-o', 'addr', 'show'])) + (await ip(['-4', 'route', 'show', 'table', 'all']));
  const taken: [number, number][] = [];
  for (const m of text.matchAll(/\b(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?:\/(\d{1,2}))?\b/g)) {
    const bits = m[2] === undefined ? 32 : Number(m[2]);
    if (bits > 0) taken.push([toInt(m[1]!), bits]);
  }
  for (let i = 0; i < 100; i++) {
    const prefix = `10.${randomInt(100, 251)}.${randomInt(0, 256)}`;
    const net = toInt(`${prefix}.0`);
    const overlaps = taken.some(([addr, bits]) => {
      const common = Math.min(bits, 24);
      const mask = common === 0 ? 0 : (0xffffffff << (32 - common)) >>> 0;
      return ((addr & mask) >>> 0) === ((net & mask) >>> 0);
    });
    if (!overlaps) return prefix;
  }
  throw new Error('no free 10.x.y.0/24 subnet found');
}

export async function createNetwork(opts: NetworkOptions = {}): Promise<TestNetwork> {
  const count = opts.hosts ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > 50) throw new RangeError(`hosts must be 1..50, not ${count}`);
  const rootLink = opts.rootLink ?? true;
  cleanupStaleNetworks();
  const tag = randomBytes(8).toString('hex').replace(/[^a-z0-9]/g, '').slice(0, 5).padEnd(5, '0');
  const prefix = await pickSubnet();
  const bridge = `pk${tag}br`;
  const record = { namespaces: [] as string[], bridge };
  live.add(record);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const r of live) teardownSync(r.namespaces, r.bridge);
    });
  }
  const hosts: NetnsHost[] = [];
  const processes = new Set<ManagedProcess>();
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await Promise.allSettled([...processes].map((p) => p.stop()));
      teardownSync(record.namespaces, bridge);
      live.delete(record);
    })();
    return stopping;
  };
  try {
    await ip(['link', 'add', bridge, 'type', 'bridge']);
    if (rootLink) await ip(['addr', 'add', `${prefix}.1/24`, 'dev', bridge]);
    await ip(['link', 'set', bridge, 'up']);
    for (let i = 0; i < count; i++) {
      const name = `peerkit-${process.pid}-${tag}-${i}`;
      await ip(['netns', 'add', name]);
      record.namespaces.push(name);
      const veth = `pk${tag}v${i}`;
      await ip(['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]);
      await ip(['link', 'set', veth, 'master', bridge, 'up']);
      const address = `${prefix}.${i + 2}`;
      await ip(['-n', name, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
      await ip(['-n', name, 'link', 'set', 'eth0', 'up']);
      await ip(['-n', name, 'link', 'set', 'lo', 'up']);
      hosts.push({ name, address, prefix: ['ip', 'netns', 'exec', name] });
    }
  } catch (e) {
    await stop();
    throw e;
  }
  const rootAddress = rootLink ? `${prefix}.1` : undefined;
  return {
    subnet: `${prefix}.0/24`,
    rootAddress,
    hosts,
    addresses: [...(rootAddress ? [rootAddress] : []), ...hosts.map((h) => h.address)],
    async exec(host, cmd, args, timeoutMs = 10_000) {
      try {
        const { stdout, stderr } = await execFileP('ip', ['netns', 'exec', host.name, cmd, ...args], { timeout: timeoutMs, killSignal: 'SIGKILL' });
        return { stdout, stderr };
      } catch (e) {
        const err = e as Error & { stderr?: string };
        throw new Error(`in ${host.name}: ${cmd} ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`, { cause: e });
      }
    },
    spawn(host, cmd, args, spawnOpts = {}) {
      const p = spawnManaged(cmd, args, spawnOpts, host.prefix);
      processes.add(p);
      return p;
    },
    stop,
  };
}
