/**
 * CSV as RFC 4180 has it: a header row, CRLF line ends, fields with a
 * comma, quote, CR or LF quoted, quotes doubled. Text cells that a
 * spreadsheet would run as a formula (starting with = + - @, tab or CR)
 * get a leading apostrophe: peer client names come from the network.
 */
import type { Cell } from './source.js';

function field(c: Cell): string {
  if (c === null || c === undefined) return '';
  if (typeof c === 'number') return Number.isFinite(c) ? String(c) : '';
  if (typeof c === 'boolean') return c ? 'true' : 'false';
  const s = /^[=+\-@\t\r]/.test(c) ? `'${c}` : c;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(columns: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const lines = [columns.map(field).join(',')];
  for (const r of rows) lines.push(columns.map((_c, i) => field(r[i])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

export class CsvError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CsvError';
  }
}

/** Parses RFC 4180 CSV (CRLF or LF line ends) into rows of strings; the inverse of toCsv for text. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let i = 0;
  const n = text.length;
  if (n === 0) return rows;
  for (;;) {
    let value = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        const q = text.indexOf('"', i);
        if (q < 0) throw new CsvError('unterminated quoted field');
        value += text.slice(i, q);
        i = q + 1;
        if (text[i] === '"') {
          value += '"';
          i++;
        } else break;
      }
      if (i < n && text[i] !== ',' && text[i] !== '\r' && text[i] !== '\n') throw new CsvError(`unexpected character after a quoted field at ${i}`);
    } else {
      let j = i;
      while (j < n && text[j] !== ',' && text[j] !== '\r' && text[j] !== '\n') j++;
      value = text.slice(i, j);
      if (value.includes('"')) throw new CsvError(`quote inside an unquoted field at ${i}`);
      i = j;
    }
    row.push(value);
    if (i >= n) {
      rows.push(row);
      return rows;
    }
    if (text[i] === ',') {
      i++;
      continue;
    }
    if (text[i] === '\r') {
      if (text[i + 1] !== '\n') throw new CsvError(`bare CR at ${i}`);
      i++;
    }
    i++; // the LF
    rows.push(row);
    row = [];
    if (i >= n) return rows;
  }
}
