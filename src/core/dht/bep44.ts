/**
 * BEP 44 items: targets, the signed payload, Ed25519 signing and
 * verification with node:crypto (deterministic, so allowed in a core), and
 * the checks a storing node applies to a put.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { MAX_ITEM_VALUE_BYTES, MAX_SALT_BYTES } from '../../codec/krpc.js';
import { ownedCopy } from './id.js';

const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export interface Item {
  /** The bencoded value (at most 1000 bytes). */
  readonly value: Buffer;
  /** Mutable items: the Ed25519 public key (32 bytes). */
  readonly k?: Buffer;
  readonly sig?: Buffer;
  readonly seq?: number;
  readonly salt?: Buffer;
}

export function sha1(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha1');
  for (const p of parts) h.update(p);
  return h.digest();
}

export function immutableTarget(value: Uint8Array): Buffer {
  return sha1(value);
}

export function mutableTarget(k: Uint8Array, salt?: Uint8Array): Buffer {
  return salt === undefined || salt.length === 0 ? sha1(k) : sha1(k, salt);
}

export function targetOf(item: Item): Buffer {
  return item.k === undefined ? immutableTarget(item.value) : mutableTarget(item.k, item.salt);
}

/** The bytes a mutable item's signature covers: `[4:salt<salt>]3:seqi<seq>e1:v<value>`. */
export function signedPayload(value: Uint8Array, seq: number, salt?: Uint8Array): Buffer {
  const parts: Buffer[] = [];
  if (salt !== undefined && salt.length > 0) parts.push(Buffer.from(`4:salt${salt.length}:`, 'latin1'), Buffer.from(salt));
  parts.push(Buffer.from(`3:seqi${seq}e1:v`, 'latin1'), Buffer.from(value));
  return Buffer.concat(parts);
}

function publicKeyObject(k: Uint8Array): KeyObject | undefined {
  if (k.length !== 32) return undefined;
  try {
    return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, k]), format: 'der', type: 'spki' });
  } catch {
    return undefined;
  }
}

export function verifyItemSignature(k: Uint8Array, sig: Uint8Array, value: Uint8Array, seq: number, salt?: Uint8Array): boolean {
  if (sig.length !== 64) return false;
  const key = publicKeyObject(k);
  if (key === undefined) return false;
  try {
    return verify(null, signedPayload(value, seq, salt), key, sig);
  } catch {
    return false;
  }
}

/** An Ed25519 key pair from a 32-byte seed (the private key in BEP 44 terms). */
export function keyPairFromSeed(seed: Uint8Array): { publicKey: Buffer; privateKey: KeyObject } {
  if (seed.length !== 32) throw new RangeError('an Ed25519 seed has 32 bytes');
  const privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return { publicKey: ownedCopy(spki.subarray(spki.length - 32)), privateKey };
}

/** Builds a signed mutable item. Ed25519 signatures are deterministic: no randomness involved. */
export function signMutableItem(seed: Uint8Array, value: Uint8Array, seq: number, salt?: Uint8Array): Item {
  checkItem(value, salt);
  const { publicKey, privateKey } = keyPairFromSeed(seed);
  const s = salt === undefined || salt.length === 0 ? undefined : ownedCopy(salt);
  const sig = sign(null, signedPayload(value, seq, s), privateKey);
  return { value: ownedCopy(value), k: publicKey, sig, seq, ...(s === undefined ? {} : { salt: s }) };
}

export function checkItem(value: Uint8Array, salt?: Uint8Array): void {
  if (value.length > MAX_ITEM_VALUE_BYTES) throw new RangeError(`item value of ${value.length} bytes exceeds ${MAX_ITEM_VALUE_BYTES}`);
  if (salt !== undefined && salt.length > MAX_SALT_BYTES) throw new RangeError(`salt of ${salt.length} bytes exceeds ${MAX_SALT_BYTES}`);
}

/** Whether an item received for `target` is genuine: its hash for immutable items, its signature for mutable ones. */
export function itemMatchesTarget(item: Item, target: Uint8Array): boolean {
  if (item.k === undefined) return immutableTarget(item.value).equals(target);
  if (item.sig === undefined || item.seq === undefined) return false;
  if (!mutableTarget(item.k, item.salt).equals(target)) return false;
  return verifyItemSignature(item.k, item.sig, item.value, item.seq, item.salt);
}
