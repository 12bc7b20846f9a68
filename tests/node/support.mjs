// Shared helpers of the interop tests: the WebAssembly build of dropthat-client bound for node,
// the real sjcl package, and byte and text utilities.
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));

/** Path of a file inside the sjcl package, for tests that read its own test files. */
export function sjclFile(relative) {
  return path.join(here, 'node_modules', 'sjcl', relative);
}

const wasmPath =
  process.env.DROPTHAT_WASM_NODE ??
  path.join(here, '..', '..', 'target', 'node-interop', 'node', 'dropthat_client.js');
if (!existsSync(wasmPath)) {
  throw new Error(`${wasmPath} is missing: run tests/node/build-wasm first`);
}

/** dropthat-client compiled to WebAssembly, with its test exports. */
export const ours = require(wasmPath);

/** The reference peer: the sjcl package pinned in package-lock.json. */
export const sjcl = require('sjcl');

export const utf8 = new TextEncoder();

export function hexToBytes(hex) {
  return Uint8Array.from(Buffer.from(hex.replace(/\s/g, ''), 'hex'));
}

export function bytesToHex(bytes) {
  return Buffer.from(bytes).toString('hex');
}

export function bytesToBase64(bytes) {
  return Buffer.from(bytes).toString('base64');
}

/** Converts bytes to an SJCL bit array. */
export function bytesToBits(bytes) {
  return sjcl.codec.hex.toBits(bytesToHex(bytes));
}

/** Converts an SJCL bit array of whole bytes to bytes. */
export function bitsToBytes(bits) {
  return hexToBytes(sjcl.codec.hex.fromBits(bits));
}

export function random(length) {
  return Uint8Array.from(randomBytes(length));
}

/** Characters of each UTF-8 width, to build texts of an exact byte length. */
export const TEXT_KINDS = {
  ascii: 'a',
  'two-byte UTF-8': 'é',
  'three-byte UTF-8': '€',
  emoji: '🎉',
};

/** Returns a string of exactly `bytes` UTF-8 bytes: `unit` repeated, padded with ASCII. */
export function textOfLength(bytes, unit) {
  const unitBytes = utf8.encode(unit).length;
  const count = Math.floor(bytes / unitBytes);
  const text = unit.repeat(count) + 'z'.repeat(bytes - count * unitBytes);
  if (utf8.encode(text).length !== bytes) {
    throw new Error(`built a text of the wrong length for ${bytes} bytes`);
  }
  return text;
}
