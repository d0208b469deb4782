/**
 * DhtNode: a DhtCore on a runtime (the real one by default) with a promise
 * API. It binds one UDP socket, wires the core with the generic driver, and
 * keeps the routing table in a state file: loaded at start (the saved nodes
 * become bootstrap seeds, so they are verified again before they count) and
 * written atomically on `save()`, after a bootstrap and on `close()`.
 *
 * Nothing is contacted unless the caller names it: there is no default
 * bootstrap node.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isIP } from 'node:net';
import { DhtCore, type DhtEvent, type DhtOptions, type OperationResult } from '../core/dht/dht-core.js';
import { signMutableItem, type Item } from '../core/dht/bep44.js';
import type { SavedNode } from '../core/dht/routing-table.js';
import type { DatagramSocket, Endpoint, Runtime, TimerHandle } from '../runtime/contract.js';
import { driveDatagramCore, type DriveHandle } from '../runtime/drive.js';
import { createRealRuntime } from '../runtime/real/runtime.js';

export interface DhtNodeOptions {
  /** The runtime (default: the real one). */
  runtime?: Runtime;
  /** Address to bind (default 127.0.0.1; 0.0.0.0 or :: to be reachable from other hosts). */
  host?: string;
  /** UDP port (default 0: any free port). */
  port?: number;
  /** Node id (20 bytes); by default the saved one, else random. */
  id?: Uint8Array;
  /** A JSON file keeping our id and routing table across runs. */
  stateFile?: string;
  /** Core options (k, alpha, timeouts, limits, BEP 42 behaviour). */
  dht?: DhtOptions;
  /** With a state file: also save it this often, in ms (default 10 minutes; 0: only after a bootstrap and on close). */
  saveIntervalMs?: number;
}

interface StateFile {
  version: 1;
  id: string;
  nodes: SavedNode[];
}

/** Parses `HOST:PORT` or `[V6]:PORT`. */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:\s]+):(\d+)$/.exec(text);
  if (m === null) throw new RangeError(`"${text}" is not HOST:PORT`);
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`"${text}": port out of range`);
  return { host: m[1]!, port };
}

/** Resolves names (only those the user gave) to addresses of the wanted family. */
export async function resolveEndpoints(list: readonly (string | Endpoint)[], family: 4 | 6): Promise<Endpoint[]> {
  const out: Endpoint[] = [];
  for (const item of list) {
    const e = typeof item === 'string' ? parseHostPort(item) : item;
    if (isIP(e.host) !== 0) {
      out.push(e);
      continue;
    }
    const found = await dnsLookup(e.host, { family, all: true });
    for (const a of found) out.push({ host: a.address, port: e.port });
  }
  return out;
}

async function loadState(path: string): Promise<StateFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const s = JSON.parse(text) as Partial<StateFile>;
    if (s.version !== 1 || typeof s.id !== 'string' || !/^[0-9a-f]{40}$/.test(s.id) || !Array.isArray(s.nodes)) return undefined;
    const nodes = s.nodes
      .filter((n): n is SavedNode => typeof n === 'object' && n !== null && typeof n.id === 'string' && /^[0-9a-f]{40}$/.test(n.id) && typeof n.host === 'string' && isIP(n.host) !== 0 && Number.isInteger(n.port) && n.port > 0 && n.port < 65536)
      .slice(0, 2000);
    return { version: 1, id: s.id, nodes };
  } catch {
    return undefined; // a corrupt state file is as good as none
  }
}

export class DhtNode {
  readonly core: DhtCore;
  readonly runtime: Runtime;
  private readonly socket: DatagramSocket;
  private readonly handle: DriveHandle;
  private readonly pending = new Map<number, (r: OperationResult) => void>();
  private readonly listeners: ((e: DhtEvent) => void)[] = [];
  private readonly stateFile: string | undefined;
  private readonly saved: SavedNode[];
  private closed = false;
  private saveTimer: TimerHandle | undefined;
  private saveIntervalMs = 0;
  private saving: Promise<void> = Promise.resolve();

  private constructor(runtime: Runtime, socket: DatagramSocket, core: DhtCore, stateFile: string | undefined, saved: SavedNode[]) {
    this.runtime = runtime;
    this.socket = socket;
    this.core = core;
    this.stateFile = stateFile;
    this.saved = saved;
    this.handle = driveDatagramCore(runtime, socket, core, (e) => this.dispatch(e));
  }

  static async start(options: DhtNodeOptions = {}): Promise<DhtNode> {
    const runtime = options.runtime ?? createRealRuntime();
    const state = options.stateFile === undefined ? undefined : await loadState(options.stateFile);
    const socket = await runtime.bindDatagram({ host: options.host ?? '127.0.0.1', port: options.port ?? 0 });
    const family = socket.local.host.includes(':') ? 6 : 4;
    const id = options.id ?? (state === undefined ? undefined : Buffer.from(state.id, 'hex'));
    const core = new DhtCore({ ...(id === undefined ? {} : { id }), random: runtime.random, now: runtime.clock.now(), options: { family, ...options.dht } });
    const node = new DhtNode(runtime, socket, core, options.stateFile, state?.nodes ?? []);
    node.handle.poke(); // arm the maintenance timer
    if (options.stateFile !== undefined) {
      node.saveIntervalMs = options.saveIntervalMs ?? 10 * 60_000;
      node.scheduleSave();
    }
    return node;
  }

  /** The bound address. */
  get address(): Endpoint {
    return this.socket.local;
  }

  get id(): Buffer {
    return this.core.id;
  }

  /** Adds a listener for the core's events (announces received, external address, id changes, results). */
  onEvent(fn: (e: DhtEvent) => void): void {
    this.listeners.push(fn);
  }

  private dispatch(x: DhtEvent): void {
    if (x.type === 'done') {
      const resolve = this.pending.get(x.op);
      this.pending.delete(x.op);
      resolve?.(x.result);
    }
    for (const l of this.listeners) l(x);
  }

  private run(start: (now: number) => number): Promise<OperationResult> {
    if (this.closed) return Promise.reject(new Error('the DHT node is closed'));
    return new Promise((resolve) => {
      const op = start(this.runtime.clock.now());
      this.pending.set(op, resolve);
      this.handle.poke();
    });
  }

  /**
   * Joins the network through the given nodes (HOST:PORT strings or
   * endpoints; names are resolved) plus the nodes saved in the state file.
   */
  async bootstrap(seeds: readonly (string | Endpoint)[] = []): Promise<OperationResult> {
    const family = this.core.family;
    const resolved = await resolveEndpoints(seeds, family);
    const saved = this.saved.filter((n) => n.host.includes(':') === (family === 6)).map((n) => ({ id: Buffer.from(n.id, 'hex'), address: { host: n.host, port: n.port } }));
    const r = await this.run((now) => this.core.bootstrap(now, [...resolved, ...saved]));
    if (this.stateFile !== undefined && !this.closed) await this.save();
    return r;
  }

  /** Iterative find_node: the nodes closest to `target`. */
  lookup(target: Uint8Array): Promise<OperationResult> {
    return this.run((now) => this.core.findNode(now, target));
  }

  getPeers(infoHash: Uint8Array): Promise<OperationResult> {
    return this.run((now) => this.core.getPeers(now, infoHash));
  }

  /** Announces that we serve `infoHash` on `port` (omitted: the DHT port, via implied_port). */
  announce(infoHash: Uint8Array, port?: number): Promise<OperationResult> {
    return this.run((now) => this.core.announce(now, infoHash, port));
  }

  /** BEP 44 put of an immutable item (its bencoded value) or a ready signed item. */
  put(item: Item, cas?: number): Promise<OperationResult> {
    return this.run((now) => this.core.put(now, item, cas));
  }

  /** BEP 44 put of a mutable item signed with an Ed25519 seed (32 bytes). */
  putMutable(seed: Uint8Array, value: Uint8Array, seq: number, options: { salt?: Uint8Array; cas?: number } = {}): Promise<OperationResult> {
    return this.put(signMutableItem(seed, value, seq, options.salt), options.cas);
  }

  get(target: Uint8Array, salt?: Uint8Array): Promise<OperationResult> {
    return this.run((now) => this.core.get(now, target, salt));
  }

  ping(to: Endpoint): Promise<OperationResult> {
    return this.run((now) => this.core.ping(now, to));
  }

  /**
   * Writes our id and routing table to the state file (atomically). Saves
   * run one after another: a periodic save still writing when `close()` saves
   * would otherwise rename the shared temporary file from under it.
   */
  save(): Promise<void> {
    const next = this.saving.then(() => this.writeState());
    this.saving = next.catch(() => undefined);
    return next;
  }

  private async writeState(): Promise<void> {
    if (this.stateFile === undefined) return;
    const state: StateFile = { version: 1, id: this.core.id.toString('hex'), nodes: this.core.exportNodes() };
    await mkdir(dirname(this.stateFile), { recursive: true });
    const tmp = `${this.stateFile}.tmp`;
    await writeFile(tmp, JSON.stringify(state));
    await rename(tmp, this.stateFile);
  }

  private scheduleSave(): void {
    if (this.saveIntervalMs <= 0 || this.closed) return;
    this.saveTimer = this.runtime.timers.at(this.runtime.clock.now() + this.saveIntervalMs, () => {
      this.save()
        .catch(() => undefined) // a failed periodic save is retried at the next one and on close
        .finally(() => this.scheduleSave());
    });
  }

  /**
   * Saves the table, stops the core and closes the socket. Operations still
   * running resolve at once with `ok: false` and what they had not found.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.saveTimer?.cancel();
    try {
      await this.save();
    } finally {
      this.handle.stop();
      this.socket.close();
      const pending = [...this.pending.values()];
      this.pending.clear();
      const none: OperationResult = { kind: 'find_node', target: Buffer.alloc(20), ok: false, nodes: [], peers: [], hops: 0, queries: 0, responses: 0, stored: 0, errors: [] };
      for (const resolve of pending) resolve(none);
    }
  }
}
