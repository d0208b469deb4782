import { readFile, stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { parseMetainfo, type Metainfo } from '../../codec/metainfo.js';
import { buildMagnet, parseMagnet, type Magnet } from '../../codec/magnet.js';
import { formatBytes } from '../format.js';
import type { CliIo } from '../main.js';

const MAX_TORRENT_FILE = 32 * 1024 * 1024;

function torrentJson(m: Metainfo): object {
  return {
    type: 'torrent',
    name: m.name,
    infoHash: m.infoHashHex,
    magnet: buildMagnet({ infoHash: m.infoHash, name: m.name, trackers: m.announceList.flat() }),
    length: m.length,
    pieceLength: m.pieceLength,
    pieceCount: m.pieceCount,
    private: m.private,
    multiFile: m.isMultiFile,
    announceList: m.announceList,
    urlList: m.urlList,
    comment: m.comment ?? null,
    createdBy: m.createdBy ?? null,
    creationDate: m.creationDate ?? null,
    files: m.files.map((f) => ({ path: f.path.join('/'), length: f.length, offset: f.offset })),
  };
}

function magnetJson(m: Magnet): object {
  return { type: 'magnet', infoHash: m.infoHashHex, name: m.name ?? null, trackers: m.trackers, peers: m.peers.map((p) => `${p.host.includes(':') ? `[${p.host}]` : p.host}:${p.port}`) };
}

function torrentText(m: Metainfo): string {
  const lines: string[] = [];
  const row = (k: string, v: string): void => {
    lines.push(`${`${k}:`.padEnd(13)}${v}`);
  };
  row('name', m.name);
  row('info hash', m.infoHashHex);
  row('magnet', buildMagnet({ infoHash: m.infoHash, name: m.name, trackers: m.announceList.flat() }));
  row('size', `${formatBytes(m.length)} (${m.length} bytes)`);
  const last = m.length - (m.pieceCount - 1) * m.pieceLength;
  row('pieces', `${m.pieceCount} x ${formatBytes(m.pieceLength)}${last !== m.pieceLength ? ` (last ${formatBytes(last)})` : ''}`);
  row('private', m.private ? 'yes' : 'no');
  if (m.createdBy) row('created by', m.createdBy);
  if (m.creationDate !== undefined) row('created on', new Date(m.creationDate * 1000).toISOString());
  if (m.comment) row('comment', m.comment);
  if (m.announceList.length === 0) row('trackers', 'none (trackerless: DHT or peer exchange only)');
  m.announceList.forEach((tier, i) => row(i === 0 ? 'trackers' : '', `tier ${i + 1}: ${tier.join(', ')}`));
  for (const [i, u] of m.urlList.entries()) row(i === 0 ? 'web seeds' : '', u);
  lines.push(`files (${m.files.length}):`);
  const shown = m.files.slice(0, 1000);
  for (const f of shown) lines.push(`  ${formatBytes(f.length).padStart(10)}  ${m.isMultiFile ? `${m.name}/${f.path.join('/')}` : m.name}`);
  if (m.files.length > shown.length) lines.push(`  ... and ${m.files.length - shown.length} more (see --json)`);
  return lines.join('\n') + '\n';
}

function magnetText(m: Magnet): string {
  const lines = [`info hash:   ${m.infoHashHex}`];
  if (m.name !== undefined) lines.push(`name:        ${m.name}`);
  lines.push(`trackers:    ${m.trackers.length ? m.trackers.join(', ') : 'none'}`);
  if (m.peers.length) lines.push(`peers:       ${m.peers.map((p) => `${p.host}:${p.port}`).join(', ')}`);
  lines.push('(a magnet link carries no file list: peerkit get fetches it from peers)');
  return lines.join('\n') + '\n';
}

export function registerInfo(program: Command, io: CliIo): void {
  program
    .command('info')
    .description('show what a .torrent file or a magnet link holds')
    .argument('<torrent|magnet>', 'path of a .torrent file, or a magnet: link')
    .option('--json', 'print JSON instead of text')
    .action(async (target: string, opts: { json?: boolean }) => {
      if (target.startsWith('magnet:')) {
        const m = parseMagnet(target);
        io.stdout.write(opts.json ? `${JSON.stringify(magnetJson(m), null, 2)}\n` : magnetText(m));
        return;
      }
      const size = (await stat(target)).size;
      if (size > MAX_TORRENT_FILE) throw new Error(`${target}: ${formatBytes(size)} is too large for a .torrent file`);
      const bytes = await readFile(target);
      const m = parseMetainfo(bytes);
      io.stdout.write(opts.json ? `${JSON.stringify(torrentJson(m), null, 2)}\n` : torrentText(m));
    });
}
