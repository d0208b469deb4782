/**
 * The private tracker's persistent store: users (name, passkey) and their
 * uploaded/downloaded/completed totals, in a data directory.
 *
 * Design: a snapshot plus an append-only journal, with no native
 * dependencies.
 *
 *     DIR/users.snapshot   {"version":1,"generation":G,"users":[...]}, replaced atomically
 *     DIR/journal.G        one record a line: "<crc32 hex> <json>\n"
 *     DIR/LOCK             the pid of the process that has the directory open
 *
 * - Every change is one journal line, written with a synchronous write(2)
 *   before the tracker answers the announce that caused it. Once write(2)
 *   returns the bytes are in the kernel: a SIGKILL, an uncaught exception or
 *   an OOM kill of the tracker loses nothing. fsync runs at most
 *   `fsyncIntervalMs` later (default 1 s) for accounting, and at once for
 *   user changes, so a power cut loses at most that last second of byte
 *   counts and never a passkey.
 * - A torn last line (the machine went down mid-write) fails its CRC and is
 *   cut off at the next open; a bad line elsewhere is skipped and counted.
 * - Compaction (every `compactAfterRecords` lines and at close) writes the
 *   whole state to a new snapshot of generation G+1 next to an empty
 *   journal.G+1: first the empty journal (fsynced), then the snapshot
 *   through a temporary file, fsync and rename, then the directory fsync,
 *   then journal.G is removed. The snapshot names the one journal that
 *   belongs to it, so a crash at any point leaves either the old snapshot
 *   with its complete journal or the new one with its (empty) journal, and
 *   no record is ever applied twice.
 * - One process at a time: LOCK holds the owner's pid; a lock left by a
 *   process that no longer exists (killed) is taken over.
 * - Besides the totals, the store keeps each peer's last reported
 *   uploaded/downloaded (by info hash and peer id, for the user it belongs
 *   to), in the same journal line as the credit it came with, so the two
 *   can never disagree after a crash. After a restart the tracker asks for
 *   it when a peer it does not know announces without `started`, and credits
 *   only what the peer reported beyond it: bytes reported across a restart
 *   count exactly once. The table is bounded (`maxPeerReports`, least
 *   recently announced forgotten first); a peer that says `stopped` is
 *   forgotten at once.
 *
 * Why not SQLite or LevelDB: both need native modules (node:sqlite is not in
 * Node 20), and the data is small (one line per user and per announce that
 * moved bytes, compacted to one entry per user); a journal gives the same
 * crash safety with a format anyone can read and repair with a text editor.
 */
import { closeSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync, ftruncateSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { crc32 } from 'node:zlib';

export interface StoredUser {
  readonly name: string;
  readonly passkey: string;
  uploaded: number;
  downloaded: number;
  completed: number;
}

export interface UserStoreOptions {
  /** Longest wait before byte counts are fsynced. Default 1000 ms. */
  readonly fsyncIntervalMs?: number;
  /** Journal lines after which the store compacts. Default 100 000. */
  readonly compactAfterRecords?: number;
  /** Peers whose last report is kept at most; the least recently announced go first. Default 200 000. */
  readonly maxPeerReports?: number;
}

/** A peer's last report: the user's passkey, uploaded, downloaded. */
export interface PeerReport {
  readonly passkey: string;
  readonly uploaded: number;
  readonly downloaded: number;
}

export interface RecoveryReport {
  readonly generation: number;
  /** Journal records applied on open. */
  readonly replayed: number;
  /** Bytes of torn tail cut off. */
  readonly truncatedBytes: number;
  /** Damaged lines skipped (not at the tail). */
  readonly skipped: number;
}

type Record =
  | { t: 'add'; k: string; n: string }
  | { t: 'del'; k: string }
  /** `p`: the peer (info hash and peer id, 80 hex digits); `r`: its report, or null when it left. */
  | { t: 'acct'; k: string; u: number; d: number; c: number; p?: string; r?: [number, number] | null };

const SNAPSHOT = 'users.snapshot';
/** Directories this process has open (a LOCK with our own pid is stale only if we do not). */
const openDirs = new Set<string>();
const LOCK = 'LOCK';

function journalName(gen: number): string {
  return `journal.${gen}`;
}

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on a directory; the rename is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function encodeLine(r: Record): Buffer {
  const json = JSON.stringify(r);
  const sum = crc32(json).toString(16).padStart(8, '0');
  return Buffer.from(`${sum} ${json}\n`, 'utf8');
}

function decodeLine(line: string): Record | undefined {
  if (line.length < 10 || line[8] !== ' ') return undefined;
  const json = line.slice(9);
  if (crc32(json).toString(16).padStart(8, '0') !== line.slice(0, 8)) return undefined;
  try {
    const r = JSON.parse(json) as Record;
    return typeof r === 'object' && r !== null && typeof r.k === 'string' ? r : undefined;
  } catch {
    return undefined;
  }
}

/** The in-memory key of a peer (40 latin1 characters) from its 80 hex digits. */
const peerKey = (hex: string): string => Buffer.from(hex, 'hex').toString('latin1');

const count = (v: unknown): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0);

export class UserStore {
  readonly dir: string;
  readonly recovery: RecoveryReport;
  private readonly users = new Map<string, StoredUser>();
  /** Peer key (40 latin1 characters) -> last report; Map order is least recently announced first. */
  private readonly reports = new Map<string, PeerReport>();
  private readonly maxReports: number;
  private readonly fsyncIntervalMs: number;
  private readonly compactAfter: number;
  private generation: number;
  private fd: number;
  private records = 0;
  private dirty = false;
  private syncTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  private constructor(dir: string, options: UserStoreOptions) {
    this.dir = dir;
    this.fsyncIntervalMs = options.fsyncIntervalMs ?? 1000;
    this.compactAfter = options.compactAfterRecords ?? 100_000;
    this.maxReports = options.maxPeerReports ?? 200_000;
    if (!Number.isSafeInteger(this.maxReports) || this.maxReports < 0) throw new RangeError('maxPeerReports must be a non-negative integer');
    mkdirSync(dir, { recursive: true });
    this.lock();
    try {
      const snap = this.readSnapshot();
      this.generation = snap;
      const report = this.replay();
      this.recovery = report;
      this.fd = openSync(join(dir, journalName(this.generation)), 'a');
      this.removeStale();
    } catch (e) {
      this.unlock();
      throw e;
    }
  }

  /** Opens (creating if needed) the store in `dir`, recovering from any crash. Synchronous. */
  static open(dir: string, options: UserStoreOptions = {}): UserStore {
    return new UserStore(dir, options);
  }

  private lock(): void {
    const path = join(this.dir, LOCK);
    const key = resolve(this.dir);
    if (openDirs.has(key)) throw new Error(`the data directory ${this.dir} is already open in this process`);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(path, 'wx');
        writeSync(fd, `${process.pid}\n`);
        fsyncSync(fd);
        closeSync(fd);
        openDirs.add(key);
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
        if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
          throw new Error(`the data directory ${this.dir} is in use by process ${pid}`, { cause: e });
        }
        rmSync(path, { force: true }); // left by a process that is gone
      }
    }
    throw new Error(`could not lock the data directory ${this.dir}`);
  }

  private readSnapshot(): number {
    const path = join(this.dir, SNAPSHOT);
    if (!existsSync(path)) return 0;
    let data: { version?: unknown; generation?: unknown; users?: unknown; peers?: unknown };
    try {
      data = JSON.parse(readFileSync(path, 'utf8')) as typeof data;
    } catch (e) {
      throw new Error(`${path} is damaged (${(e as Error).message}); restore it from a backup`, { cause: e });
    }
    if (data.version !== 1 || !Number.isSafeInteger(data.generation) || !Array.isArray(data.users)) throw new Error(`${path} is not a peerkit user snapshot`);
    for (const u of data.users as { name?: unknown; passkey?: unknown; uploaded?: unknown; downloaded?: unknown; completed?: unknown }[]) {
      if (typeof u.name !== 'string' || typeof u.passkey !== 'string') continue;
      this.users.set(u.passkey, { name: u.name, passkey: u.passkey, uploaded: count(u.uploaded), downloaded: count(u.downloaded), completed: count(u.completed) });
    }
    // Optional (snapshots written before peer reports existed have none): [peer hex, passkey, uploaded, downloaded].
    if (Array.isArray(data.peers)) {
      for (const e of data.peers as unknown[]) {
        if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'string') continue;
        this.setReport(e[0], e[1], [count(e[2]), count(e[3])]);
      }
    }
    return data.generation as number;
  }

  private apply(r: Record): void {
    if (r.t === 'add') {
      if (!this.users.has(r.k)) this.users.set(r.k, { name: String(r.n), passkey: r.k, uploaded: 0, downloaded: 0, completed: 0 });
    } else if (r.t === 'del') {
      this.users.delete(r.k);
    } else if (r.t === 'acct') {
      const u = this.users.get(r.k);
      if (u === undefined) return;
      u.uploaded += count(r.u);
      u.downloaded += count(r.d);
      u.completed += count(r.c);
      if (typeof r.p === 'string') {
        if (Array.isArray(r.r)) this.setReport(r.p, u.passkey, [count(r.r[0]), count(r.r[1])]);
        else if (r.r === null) this.reports.delete(peerKey(r.p));
      }
    }
  }

  /** Records a peer's report (hex key from the journal), most recent last, within the bound. */
  private setReport(peerHex: string, passkey: string, r: readonly [number, number]): void {
    if (!/^[0-9a-f]{80}$/.test(peerHex)) return;
    const key = peerKey(peerHex);
    this.reports.delete(key);
    if (this.maxReports === 0) return;
    // Share the user's passkey string instead of keeping a copy per peer.
    const owner = this.users.get(passkey)?.passkey ?? passkey;
    this.reports.set(key, { passkey: owner, uploaded: r[0], downloaded: r[1] });
    while (this.reports.size > this.maxReports) {
      const oldest = this.reports.keys().next();
      if (oldest.done === true) break;
      this.reports.delete(oldest.value);
    }
  }

  private replay(): RecoveryReport {
    const path = join(this.dir, journalName(this.generation));
    if (!existsSync(path)) return { generation: this.generation, replayed: 0, truncatedBytes: 0, skipped: 0 };
    const bytes = readFileSync(path);
    let replayed = 0;
    let skipped = 0;
    let goodEnd = 0;
    let pendingBad = 0;
    let start = 0;
    while (start < bytes.length) {
      const nl = bytes.indexOf(0x0a, start);
      if (nl < 0) break; // an unterminated tail: torn
      const r = decodeLine(bytes.toString('utf8', start, nl));
      start = nl + 1;
      if (r === undefined) {
        pendingBad++;
        continue;
      }
      this.apply(r);
      replayed++;
      skipped += pendingBad;
      pendingBad = 0;
      goodEnd = start;
    }
    const truncatedBytes = bytes.length - goodEnd;
    if (truncatedBytes > 0) {
      const fd = openSync(path, 'r+');
      try {
        ftruncateSync(fd, goodEnd);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
    this.records = replayed;
    return { generation: this.generation, replayed, truncatedBytes, skipped };
  }

  private removeStale(): void {
    for (const name of readdirSync(this.dir)) {
      const m = /^journal\.(\d+)$/.exec(name);
      if ((m && Number(m[1]) !== this.generation) || name === `${SNAPSHOT}.tmp`) rmSync(join(this.dir, name), { force: true });
    }
  }

  private append(r: Record, syncNow: boolean): void {
    if (this.closed) throw new Error('the user store is closed');
    const line = encodeLine(r);
    let off = 0;
    while (off < line.length) off += writeSync(this.fd, line, off, line.length - off);
    this.records++;
    if (syncNow) {
      fsyncSync(this.fd);
      this.dirty = false;
    } else {
      this.dirty = true;
      this.syncTimer ??= setTimeout(() => {
        this.syncTimer = undefined;
        this.sync();
      }, this.fsyncIntervalMs).unref();
    }
    if (this.records >= this.compactAfter) this.compact();
  }

  list(): StoredUser[] {
    return [...this.users.values()].map((u) => ({ ...u }));
  }

  get(passkey: string): StoredUser | undefined {
    const u = this.users.get(passkey);
    return u === undefined ? undefined : { ...u };
  }

  byName(name: string): StoredUser | undefined {
    for (const u of this.users.values()) if (u.name === name) return { ...u };
    return undefined;
  }

  /** Adds a user, durably (fsynced before it returns). */
  addUser(name: string, passkey: string): void {
    if (this.users.has(passkey)) throw new Error('passkey already registered');
    const r: Record = { t: 'add', k: passkey, n: name };
    this.append(r, true);
    this.apply(r);
  }

  removeUser(passkey: string): boolean {
    if (!this.users.has(passkey)) return false;
    const r: Record = { t: 'del', k: passkey };
    this.append(r, true);
    this.apply(r);
    return true;
  }

  /**
   * Adds to a user's totals, and with `peer` (40 latin1 characters: info
   * hash and peer id) sets that peer's last report (`null`: forgets it), in
   * one journal line: written at once, fsynced within `fsyncIntervalMs`.
   */
  account(passkey: string, uploaded: number, downloaded: number, completed: number, peer?: string, reported?: readonly [number, number] | null): void {
    if (!this.users.has(passkey)) return;
    const r: Record = { t: 'acct', k: passkey, u: uploaded, d: downloaded, c: completed };
    if (peer !== undefined && peer.length === 40 && reported !== undefined) {
      // Nothing to write for forgetting a peer the store does not hold.
      if (reported === null && !this.reports.has(peer) && uploaded === 0 && downloaded === 0 && completed === 0) return;
      r.p = Buffer.from(peer, 'latin1').toString('hex');
      r.r = reported === null ? null : [reported[0], reported[1]];
    } else if (uploaded === 0 && downloaded === 0 && completed === 0) {
      return;
    }
    this.append(r, false);
    this.apply(r);
  }

  /** A peer's last report (key: 40 latin1 characters, info hash and peer id), if kept. */
  peerReport(peer: string): PeerReport | undefined {
    return this.reports.get(peer);
  }

  /** How many peer reports are kept. */
  get peerReports(): number {
    return this.reports.size;
  }

  /** fsyncs pending journal lines. */
  sync(): void {
    if (this.closed || !this.dirty) return;
    fsyncSync(this.fd);
    this.dirty = false;
  }

  /** Writes a new snapshot and starts an empty journal (see the module comment for the order). */
  compact(): void {
    if (this.closed) return;
    this.sync();
    const next = this.generation + 1;
    const journal = join(this.dir, journalName(next));
    const fd = openSync(journal, 'w');
    fsyncSync(fd);
    fsyncDir(this.dir);
    const tmp = join(this.dir, `${SNAPSHOT}.tmp`);
    const peers: [string, string, number, number][] = [];
    for (const [k, r] of this.reports) peers.push([Buffer.from(k, 'latin1').toString('hex'), r.passkey, r.uploaded, r.downloaded]);
    const snapshot = JSON.stringify({ version: 1, generation: next, users: [...this.users.values()], peers });
    writeFileSync(tmp, snapshot);
    const sfd = openSync(tmp, 'r');
    fsyncSync(sfd);
    closeSync(sfd);
    renameSync(tmp, join(this.dir, SNAPSHOT));
    fsyncDir(this.dir);
    closeSync(this.fd);
    rmSync(join(this.dir, journalName(this.generation)), { force: true });
    this.fd = fd;
    this.generation = next;
    this.records = 0;
  }

  /** Compacts, closes the journal and releases the lock. */
  close(): void {
    if (this.closed) return;
    if (this.syncTimer !== undefined) clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    try {
      if (this.records > 0) this.compact();
      else this.sync();
    } finally {
      this.closed = true;
      closeSync(this.fd);
      this.unlock();
    }
  }

  /**
   * Lets go of the directory the way a crash would: no sync, no compaction,
   * the LOCK left behind (with this process's pid). For crash tests.
   */
  abandon(): void {
    if (this.closed) return;
    if (this.syncTimer !== undefined) clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    this.closed = true;
    closeSync(this.fd);
    openDirs.delete(resolve(this.dir));
  }

  private unlock(): void {
    rmSync(join(this.dir, LOCK), { force: true });
    openDirs.delete(resolve(this.dir));
  }
}
