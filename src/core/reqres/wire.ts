/**
 * The request/response wire format. Pure and strict.
 *
 *     offset 0  u8    type: 1 = request, 2 = response
 *     offset 1  u32   transaction id, big-endian
 *     offset 5  ...   payload, 0..MAX_PAYLOAD bytes (the rest of the datagram)
 *
 * `decodeMessage` never throws: anything that is not exactly this shape is
 * reported as an error value. `encodeMessage` throws RangeError on values the
 * format cannot carry (a caller bug, not network input).
 */

export const TYPE_REQUEST = 1;
export const TYPE_RESPONSE = 2;
export const HEADER_SIZE = 5;
export const MAX_PAYLOAD = 1200;
export const MAX_MESSAGE = HEADER_SIZE + MAX_PAYLOAD;

export type MessageKind = 'request' | 'response';

export interface ReqResMessage {
  readonly kind: MessageKind;
  /** Unsigned 32-bit transaction id. */
  readonly id: number;
  readonly payload: Uint8Array;
}

export type DecodeResult =
  | { readonly ok: true; readonly message: ReqResMessage }
  | { readonly ok: false; readonly error: string };

export function encodeMessage(message: ReqResMessage): Uint8Array {
  const { kind, id, payload } = message;
  if (kind !== 'request' && kind !== 'response') throw new RangeError(`unknown message kind ${String(kind)}`);
  if (!Number.isInteger(id) || id < 0 || id > 0xffff_ffff) throw new RangeError(`transaction id must be a u32, got ${id}`);
  if (payload.length > MAX_PAYLOAD) throw new RangeError(`payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD}`);
  const out = new Uint8Array(HEADER_SIZE + payload.length);
  out[0] = kind === 'request' ? TYPE_REQUEST : TYPE_RESPONSE;
  out[1] = id >>> 24;
  out[2] = (id >>> 16) & 0xff;
  out[3] = (id >>> 8) & 0xff;
  out[4] = id & 0xff;
  out.set(payload, HEADER_SIZE);
  return out;
}

/** Decodes a datagram. The payload is a view into `data`, not a copy. */
export function decodeMessage(data: Uint8Array): DecodeResult {
  if (data.length < HEADER_SIZE) return { ok: false, error: `truncated: ${data.length} bytes` };
  if (data.length > MAX_MESSAGE) return { ok: false, error: `oversized: ${data.length} bytes` };
  const type = data[0];
  let kind: MessageKind;
  if (type === TYPE_REQUEST) kind = 'request';
  else if (type === TYPE_RESPONSE) kind = 'response';
  else return { ok: false, error: `unknown type ${String(type)}` };
  const id = ((data[1]! << 24) | (data[2]! << 16) | (data[3]! << 8) | data[4]!) >>> 0;
  return { ok: true, message: { kind, id, payload: data.subarray(HEADER_SIZE) } };
}
