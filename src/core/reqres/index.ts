/** A sans-I/O request/response core over datagrams, with its wire format. */
export { ReqResEndpoint } from './endpoint.js';
export type { ReqResEvent, ReqResOptions, ReqResStats, Responder } from './endpoint.js';
export {
  HEADER_SIZE,
  MAX_MESSAGE,
  MAX_PAYLOAD,
  TYPE_REQUEST,
  TYPE_RESPONSE,
  decodeMessage,
  encodeMessage,
} from './wire.js';
export type { DecodeResult, MessageKind, ReqResMessage } from './wire.js';
