/**
 * `peerkit dht`: runs a Mainline DHT node until SIGINT/SIGTERM, or does one
 * thing on the DHT and exits (`lookup`, `announce`, `put`, `get`, `keygen`).
 * No bootstrap node is built in: nothing is contacted unless named with
 * --bootstrap (or saved in a --state file by an earlier run).
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { decode, encode, isBytes, isDict, isList, type BencodeValue } from '../../codec/bencode.js';
import { endpointKey } from '../../runtime/contract.js';
import { immutableTarget, keyPairFromSeed, mutableTarget, signMutableItem } from '../../core/dht/bep44.js';
import type { OperationResult } from '../../core/dht/dht-core.js';
import { DhtNode } from '../../dht/node.js';
import { parsePort, UsageError } from '../format.js';
import type { CliIo } from '../main.js';
import type { DashboardHandle } from '../../dashboard/server.js';
import { addDashboardOptions, dashboardSettings, startDhtDashboard, type DashboardCliOptions } from '../dashboard-option.js';

interface NodeCliOptions {
  port?: string;
  host?: string;
  bootstrap: string[];
  state?: string;
  json?: boolean;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function nodeOptions(cmd: Command): Command {
  return cmd
    .option('--port <n>', 'UDP port (default: any free one; 6881 is customary for a long-running node)')
    .option('--host <addr>', 'address to bind (default 127.0.0.1; 0.0.0.0 or :: to be reachable from other hosts)')
    .option('--bootstrap <host:port>', 'a node to join through; repeatable (no default: nothing is contacted unless named)', collect, [])
    .option('--state <file>', 'keep the node id and routing table in this file across runs')
    .addHelpText('after', '\nThe node options above also apply to the subcommands, e.g. peerkit dht lookup <infohash> --bootstrap HOST:PORT.');
}

/** `oneShot`: a node that lives for one command is read-only (BEP 43), so nobody puts it in a routing table. */
async function startNode(opts: NodeCliOptions, oneShot: boolean): Promise<DhtNode> {
  return DhtNode.start({
    host: opts.host ?? '127.0.0.1',
    port: opts.port === undefined ? 0 : parsePort(opts.port, '--port'),
    ...(opts.state === undefined ? {} : { stateFile: opts.state }),
    dht: { readOnly: oneShot },
  });
}

async function joined(node: DhtNode, opts: NodeCliOptions, io: CliIo): Promise<void> {
  if (opts.bootstrap.length === 0 && opts.state === undefined) throw new UsageError('name at least one --bootstrap HOST:PORT (or a --state file from an earlier run)');
  const r = await node.bootstrap(opts.bootstrap);
  if (r.responses === 0) throw new Error('no bootstrap node answered');
  if (opts.json !== true) io.stderr.write(`peerkit dht: joined through ${r.responses} nodes, ${node.core.stats(node.runtime.clock.now()).nodes} in the routing table\n`);
}

function hex20(text: string, what: string): Buffer {
  if (!/^[0-9a-fA-F]{40}$/.test(text)) throw new UsageError(`${what}: "${text}" is not 40 hex digits`);
  return Buffer.from(text, 'hex');
}

async function readKey(path: string): Promise<Buffer> {
  const raw = await readFile(path);
  const text = raw.toString('latin1').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (raw.length === 32) return raw;
  throw new UsageError(`${path}: a key file holds a 32-byte Ed25519 seed, as 64 hex digits (see peerkit dht keygen)`);
}

function show(v: BencodeValue): unknown {
  if (isBytes(v)) {
    const s = v.toString('utf8');
    return Buffer.from(s, 'utf8').equals(v) ? s : `hex:${v.toString('hex')}`;
  }
  if (isList(v)) return v.map(show);
  if (isDict(v)) return Object.fromEntries([...v].map(([k, x]) => [k, show(x)]));
  return typeof v === 'bigint' ? v.toString() : v;
}

function summary(r: OperationResult): string {
  return `hops: ${r.hops}, queries: ${r.queries}, responses: ${r.responses}`;
}

async function withNode<T>(opts: NodeCliOptions, io: CliIo, fn: (node: DhtNode) => Promise<T>): Promise<T> {
  const node = await startNode(opts, true);
  try {
    await joined(node, opts, io);
    return await fn(node);
  } finally {
    await node.close();
  }
}

export function registerDht(program: Command, io: CliIo): void {
  const dht = addDashboardOptions(nodeOptions(program.command('dht').description('run a Mainline DHT node until SIGINT, or use the DHT (see the subcommands)')));
  dht.action(async (opts: NodeCliOptions & DashboardCliOptions) => {
    dashboardSettings(opts); // usage errors before anything starts
    let removeHandlers = (): void => {};
    const stopped = new Promise<NodeJS.Signals>((resolve) => {
      const stop = (s: NodeJS.Signals): void => {
        removeHandlers();
        resolve(s);
      };
      removeHandlers = (): void => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    let node: DhtNode;
    try {
      node = await startNode(opts, false);
    } catch (e) {
      removeHandlers();
      throw e;
    }
    io.stdout.write(`peerkit dht: listening on ${endpointKey(node.address)}, id ${node.id.toString('hex')}\n`);
    let dashboard: DashboardHandle | undefined;
    try {
      dashboard = await startDhtDashboard(opts, node, (line) => io.stdout.write(`${line}\n`));
    } catch (e) {
      removeHandlers();
      await node.close();
      throw e;
    }
    node.onEvent((e) => {
      if (e.type === 'announce') io.stdout.write(`announce ${e.infoHash.toString('hex')} ${endpointKey(e.peer)}\n`);
      else if (e.type === 'external-address') io.stdout.write(`external address ${endpointKey(e.address)}\n`);
      else if (e.type === 'id-changed') io.stdout.write(`id changed to ${e.id.toString('hex')} (BEP 42)\n`);
    });
    if (opts.bootstrap.length > 0 || opts.state !== undefined) {
      node
        .bootstrap(opts.bootstrap)
        .then((r) => io.stdout.write(`bootstrapped: ${r.responses} nodes answered, ${node.core.stats(node.runtime.clock.now()).nodes} in the routing table\n`))
        .catch((e: unknown) => io.stderr.write(`peerkit dht: bootstrap failed: ${e instanceof Error ? e.message : String(e)}\n`));
    } else {
      io.stdout.write('no --bootstrap given: waiting for other nodes to contact this one\n');
    }
    const signal = await stopped;
    await dashboard?.close();
    await node.close();
    io.stdout.write(`peerkit dht: stopped (${signal})\n`);
  });

  dht
    .command('lookup <infohash>').description('find peers for an infohash (get_peers) and print them with the hop count')
    .option('--json', 'print the result as JSON')
    .action(async (infohash: string, _local: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<NodeCliOptions>();
      const ih = hex20(infohash, 'infohash');
      const r = await withNode(opts, io, (node) => node.getPeers(ih));
      if (opts.json === true) {
        io.stdout.write(`${JSON.stringify({ infoHash: ih.toString('hex'), peers: r.peers.map(endpointKey), hops: r.hops, queries: r.queries, responses: r.responses, nodes: r.nodes.map((n) => ({ id: n.id.toString('hex'), address: endpointKey(n.address) })) })}\n`);
        return;
      }
      for (const p of r.peers) io.stdout.write(`${endpointKey(p)}\n`);
      io.stdout.write(`${r.peers.length} peers; ${summary(r)}\n`);
    });

  dht
    .command('announce <infohash>').description("announce that a peer for the infohash listens on --peer-port (default: this node's port)")
    .option('--peer-port <n>', 'the BitTorrent port to announce')
    .action(async (infohash: string, _local: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<NodeCliOptions & { peerPort?: string }>();
      const ih = hex20(infohash, 'infohash');
      const port = opts.peerPort === undefined ? undefined : parsePort(opts.peerPort, '--peer-port');
      const r = await withNode(opts, io, (node) => node.announce(ih, port));
      io.stdout.write(`announced to ${r.stored} nodes; ${summary(r)}\n`);
      if (!r.ok) throw new Error('no node accepted the announce');
    });

  dht
    .command('put <value>').description('store a BEP 44 item: immutable by default, mutable with --key')
    .option('--key <file>', 'Ed25519 seed file (64 hex digits) for a mutable item')
    .option('--seq <n>', 'sequence number of a mutable item', '1')
    .option('--salt <text>', 'salt of a mutable item')
    .option('--cas <n>', 'only replace the item if its current seq is this')
    .action(async (text: string, _local: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<NodeCliOptions & { key?: string; seq: string; salt?: string; cas?: string }>();
      const value = encode(text);
      if (value.length > 1000) throw new UsageError(`the bencoded value has ${value.length} bytes; BEP 44 allows 1000`);
      const int = (s: string, what: string): number => {
        if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s))) throw new UsageError(`${what}: "${s}" is not a non-negative integer`);
        return Number(s);
      };
      if (opts.key === undefined && (opts.salt !== undefined || opts.cas !== undefined)) throw new UsageError('--salt and --cas need --key');
      const salt = opts.salt === undefined ? undefined : Buffer.from(opts.salt, 'utf8');
      const item = opts.key === undefined ? { value } : signMutableItem(await readKey(opts.key), value, int(opts.seq, '--seq'), salt);
      const target = opts.key === undefined ? immutableTarget(value) : mutableTarget(item.k!, salt);
      const r = await withNode(opts, io, (node) => node.put(item, opts.cas === undefined ? undefined : int(opts.cas, '--cas')));
      io.stdout.write(`${target.toString('hex')}\n`);
      io.stdout.write(`stored at ${r.stored} nodes${r.errors.length > 0 ? `, refused by ${r.errors.length} (errors ${[...new Set(r.errors)].join(', ')})` : ''}; ${summary(r)}\n`);
      if (!r.ok) throw new Error('no node stored the item');
    });

  dht
    .command('get <target>').description('fetch a BEP 44 item by its target (40 hex digits) and print its value')
    .option('--salt <text>', 'salt of a mutable item')
    .option('--json', 'print the result as JSON')
    .action(async (targetHex: string, _local: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<NodeCliOptions & { salt?: string }>();
      const target = hex20(targetHex, 'target');
      const salt = opts.salt === undefined ? undefined : Buffer.from(opts.salt, 'utf8');
      const r = await withNode(opts, io, (node) => node.get(target, salt));
      if (r.item === undefined) throw new Error(`no item found for ${targetHex} (${summary(r)})`);
      const shown = show(decode(r.item.value));
      if (opts.json === true) {
        io.stdout.write(`${JSON.stringify({ target: target.toString('hex'), value: shown, seq: r.item.seq ?? null, k: r.item.k?.toString('hex') ?? null, hops: r.hops })}\n`);
        return;
      }
      io.stdout.write(`${typeof shown === 'string' ? shown : JSON.stringify(shown)}\n`);
      if (r.item.seq !== undefined) io.stderr.write(`mutable item, seq ${r.item.seq}, key ${r.item.k!.toString('hex')}; ${summary(r)}\n`);
    });

  dht
    .command('keygen <file>')
    .description('write a new Ed25519 seed (64 hex digits) for mutable items, and print its public key')
    .action(async (file: string) => {
      const seed = randomBytes(32);
      await writeFile(file, `${seed.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
      io.stdout.write(`${keyPairFromSeed(seed).publicKey.toString('hex')}\n`);
    });
}
