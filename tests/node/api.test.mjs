// The JavaScript API as a page calls it: thrown Error objects, blobs as Uint8Array, limits.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ours, random } from './support.mjs';

const ROOM = ours.newRoom();

function thrownError(action) {
  try {
    action();
  } catch (error) {
    return error;
  }
  assert.fail('expected an exception');
}

test('errors are Error objects with messages', () => {
  const cases = [
    [() => ours.decrypt(ROOM, 'not json'), /the envelope is not valid JSON/],
    [() => ours.decrypt(ROOM, '{"iv":"AAAAAAAAAAAAAAAAAAAAAA==","salt":""}'), /no "ct" field/],
    [() => ours.decrypt(ROOM, '{"iv":"AAAA","salt":"","ct":""}'), /invalid IV of 3 bytes/],
    [() => ours.decrypt(ROOM, '{"mode":"ocb2","iv":"","salt":"","ct":""}'), /unsupported cipher mode "ocb2"/],
    [() => ours.decrypt('#other', ours.encrypt(ROOM, 'x')), /cannot decrypt/],
    [() => ours.channelId('#short'), /expected 22/],
    [() => ours.channelId('#AAAAAAAAAAAAAAAAAAAAA+'), /not a base64url character/],
    [() => ours.decryptBytes(ROOM, new Uint8Array(10)), /shorter than the 41-byte header and tag/],
  ];
  for (const [action, message] of cases) {
    const error = thrownError(action);
    assert.ok(error instanceof Error, `${error} is not an Error`);
    assert.match(error.message, message);
  }
});

test('oversized envelope rejected before parsing', () => {
  const huge = `{"ct":"${'A'.repeat(2 << 20)}"}`;
  assert.throws(() => ours.decrypt(ROOM, huge), /exceeds the limit of 2097152 bytes/);
});

test('blob of 8 MiB round trips', () => {
  const content = random(8 << 20);
  const blob = ours.encryptBytes(ROOM, content);
  assert.ok(blob instanceof Uint8Array);
  assert.equal(blob.length, 25 + content.length + 16);
  const opened = ours.decryptBytes(ROOM, blob);
  assert.ok(opened instanceof Uint8Array);
  assert.ok(Buffer.from(opened).equals(Buffer.from(content)));

  assert.throws(() => ours.encryptBytes(ROOM, new Uint8Array((8 << 20) + 1)), /exceeds the limit of 8388608 bytes/);
});

test('blob header carries version, iterations and page salt', () => {
  const blob = ours.encryptBytes(ROOM, new Uint8Array([1, 2, 3]));
  const view = new DataView(blob.buffer, blob.byteOffset);
  assert.equal(blob[0], 1);
  assert.equal(view.getUint32(1), 10_000);

  // Text envelopes and blobs of one page share its salt, so one PBKDF2 serves both.
  const envelopeSalt = Buffer.from(JSON.parse(ours.encrypt(ROOM, 'x')).salt, 'base64');
  assert.ok(envelopeSalt.equals(Buffer.from(blob.subarray(5, 13))));
  assert.notDeepEqual(blob.subarray(13, 25), ours.encryptBytes(ROOM, new Uint8Array([1, 2, 3])).subarray(13, 25));
});

test('tampered blob rejected', () => {
  const blob = ours.encryptBytes(ROOM, new TextEncoder().encode('a picture'));
  for (let index = 0; index < blob.length; index++) {
    const tampered = blob.slice();
    tampered[index] ^= 0x01;
    assert.throws(() => ours.decryptBytes(ROOM, tampered), Error, `byte ${index}`);
  }
  assert.throws(() => ours.decryptBytes('#other', blob), /cannot decrypt/);
});

test('prehash is 44 characters of base64', () => {
  const value = ours.prehash('dropth.at', 'cda', 'password');
  assert.match(value, /^[A-Za-z0-9+/]{43}=$/);
});
