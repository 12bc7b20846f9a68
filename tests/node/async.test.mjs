// The asynchronous functions, which derive keys and encrypt blobs through WebCrypto (node has
// it as globalThis.crypto): the same bytes as the synchronous functions and as SJCL.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { bytesToBase64, ours, random, sjcl, textOfLength } from './support.mjs';

test('webcrypto is present for these tests', () => {
  assert.equal(typeof globalThis.crypto?.subtle?.deriveBits, 'function');
});

test('decryptAsync reads sjcl envelopes', async () => {
  const room = ours.newRoom();
  for (const ks of [128, 192, 256]) {
    for (const ts of [64, 96, 128]) {
      const params = { ks, ts, iter: 1000 + ks + ts, adata: 'a', iv: bytesToBase64(random(12)) };
      const text = textOfLength(300, '🎉');
      assert.equal(await ours.decryptAsync(room, sjcl.encrypt(room, text, params)), text, `ks ${ks}, ts ${ts}`);
    }
  }
});

test('encryptAsync output read by sjcl and decrypt', async () => {
  const room = ours.newRoom();
  for (const length of [0, 1, 65_536]) {
    const text = textOfLength(length, 'é');
    const envelope = await ours.encryptAsync(room, text);
    assert.equal(sjcl.decrypt(room, envelope), text);
    assert.equal(ours.decrypt(room, envelope), text);
  }
});

// The asynchronous blob functions work in chunks of 256 KiB, so the lengths include one chunk,
// one chunk and a byte, and several chunks ending in a partial block.
test('async and sync blobs interchangeable', async () => {
  const room = ours.newRoom();
  for (const length of [0, 1, 15, 16, 17, 4096, 65_537, 262_144, 262_145, 786_437, 8 << 20]) {
    const content = random(length);
    const fromAsync = await ours.encryptBytesAsync(room, content);
    assert.equal(fromAsync.length, 25 + length + 16);
    assert.ok(Buffer.from(ours.decryptBytes(room, fromAsync)).equals(Buffer.from(content)), `${length}: async to sync`);
    const fromSync = ours.encryptBytes(room, content);
    assert.ok(Buffer.from(await ours.decryptBytesAsync(room, fromSync)).equals(Buffer.from(content)), `${length}: sync to async`);
  }
});

// The page may hand over an array and reuse it: whatever happens to it after the call has
// started, the blob is made of the bytes it held then, and the promise settles.
test('encryptBytesAsync input read once', async () => {
  const room = ours.newRoom();
  await ours.encryptBytesAsync(room, random(16)); // derives and imports the key first
  const original = random(786_437);

  const changed = original.slice();
  const pending = ours.encryptBytesAsync(room, changed);
  await new Promise((resolve) => setImmediate(resolve));
  changed.fill(0);
  const fromChanged = await pending;
  assert.ok(Buffer.from(ours.decryptBytes(room, fromChanged)).equals(Buffer.from(original)), 'changed after the call');

  const moved = original.slice();
  const pendingMoved = ours.encryptBytesAsync(room, moved);
  await new Promise((resolve) => setImmediate(resolve));
  structuredClone(moved.buffer, { transfer: [moved.buffer] });
  assert.equal(moved.length, 0, 'the buffer was transferred');
  const fromMoved = await pendingMoved;
  assert.ok(Buffer.from(ours.decryptBytes(room, fromMoved)).equals(Buffer.from(original)), 'transferred after the call');
});

test('async errors match sync errors', async () => {
  const room = ours.newRoom();
  const blob = await ours.encryptBytesAsync(room, new TextEncoder().encode('a picture'));
  for (let index = 0; index < blob.length; index++) {
    const tampered = blob.slice();
    tampered[index] ^= 0x02;
    await assert.rejects(ours.decryptBytesAsync(room, tampered), Error, `byte ${index}`);
  }
  await assert.rejects(ours.decryptBytesAsync('#other', blob), /cannot decrypt/);
  // A byte in each whole chunk of a blob that decrypts in four chunks, in its last chunk (a
  // partial block of 5 bytes), and in its tag. The header is 25 bytes.
  const large = await ours.encryptBytesAsync(room, random(786_437));
  for (const index of [25 + 16, 25 + 262_144, 25 + 2 * 262_144 + 5, 25 + 786_434, large.length - 1]) {
    const tampered = large.slice();
    tampered[index] ^= 0x40;
    await assert.rejects(ours.decryptBytesAsync(room, tampered), /cannot decrypt/, `byte ${index}`);
  }
  await assert.rejects(ours.decryptBytesAsync(room, new Uint8Array(3)), /shorter than the 41-byte header/);
  await assert.rejects(ours.encryptBytesAsync(room, new Uint8Array((8 << 20) + 1)), /exceeds the limit/);
  await assert.rejects(ours.decryptAsync(room, 'nope'), /not valid JSON/);
  await assert.rejects(ours.decryptAsync('#other', ours.encrypt(room, 'x')), /cannot decrypt/);
  const costly = sjcl.encrypt(room, 'x', { iter: 100_001, salt: '' });
  await assert.rejects(ours.decryptAsync(room, costly), /exceeds the limit of 100000/);
});
