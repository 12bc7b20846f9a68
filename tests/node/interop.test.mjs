// Both directions against the real sjcl package: whatever SJCL encrypts we decrypt, and the
// reverse, across plaintext lengths, text kinds, key and tag sizes, IV lengths and adata.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  TEXT_KINDS,
  bytesToBase64,
  ours,
  random,
  sjcl,
  textOfLength,
  utf8,
} from './support.mjs';

const PASSWORD = ours.newRoom();

/** Iterations of the parameter matrix: low, so each fresh salt costs SJCL little. */
const MATRIX_ITERATIONS = 1000;

/** Around CCM's length-field switch from 2 to 3 bytes at 65,536 for a 16-byte IV. */
const LENGTHS = [0, 1, 15, 16, 17, 255, 256, 65_535, 65_536, 1 << 20];

describe('default parameters', () => {
  for (const [kind, unit] of Object.entries(TEXT_KINDS)) {
    for (const length of LENGTHS) {
      const text = textOfLength(length, unit);

      test(`sjcl to ours, ${kind}, ${length} bytes`, () => {
        const envelope = sjcl.encrypt(PASSWORD, text);
        assert.equal(ours.decrypt(PASSWORD, envelope), text);
      });

      test(`ours to sjcl, ${kind}, ${length} bytes`, () => {
        const envelope = ours.encrypt(PASSWORD, text);
        assert.equal(sjcl.decrypt(PASSWORD, envelope), text);
        const fields = JSON.parse(envelope);
        assert.deepEqual(
          [fields.v, fields.iter, fields.ks, fields.ts, fields.mode, fields.cipher],
          [1, 10_000, 128, 64, 'ccm', 'aes'],
        );
      });
    }
  }
});

describe('every key size, tag size, IV length and adata', () => {
  const texts = Object.values(TEXT_KINDS).flatMap((unit) =>
    [0, 1, 17, 255].map((length) => textOfLength(length, unit)),
  );
  let round = 0;

  for (const ks of [128, 192, 256]) {
    for (const ts of [64, 96, 128]) {
      for (const ivLength of [8, 12, 16]) {
        for (const adata of ['', 'header: room 7 ✓']) {
          const label = `ks ${ks}, ts ${ts}, ${ivLength}-byte IV, ${adata ? 'with' : 'no'} adata`;
          const text = texts[round++ % texts.length];

          test(`sjcl to ours, ${label}`, () => {
            const params = { ks, ts, adata, iter: MATRIX_ITERATIONS, iv: bytesToBase64(random(ivLength)) };
            const envelope = sjcl.encrypt(PASSWORD, text, params);
            assert.equal(ours.decrypt(PASSWORD, envelope), text);
          });

          test(`ours to sjcl, ${label}`, () => {
            const envelope = ours.testEncryptWith(
              PASSWORD, text, MATRIX_ITERATIONS, ks, ts, random(ivLength), utf8.encode(adata),
            );
            assert.equal(sjcl.decrypt(PASSWORD, envelope), text);
            const fields = JSON.parse(envelope);
            assert.deepEqual([fields.ks, fields.ts], [ks, ts]);
          });
        }
      }
    }
  }

  for (const ivLength of [7, 8, 12]) {
    test(`both directions, ${ivLength}-byte IV, 65536 bytes`, () => {
      const text = textOfLength(65_536, '€');
      const iv = random(ivLength);
      const fromSjcl = sjcl.encrypt(PASSWORD, text, { iter: MATRIX_ITERATIONS, iv: bytesToBase64(iv) });
      assert.equal(ours.decrypt(PASSWORD, fromSjcl), text);
      const fromOurs = ours.testEncryptWith(PASSWORD, text, MATRIX_ITERATIONS, 128, 64, iv, new Uint8Array());
      assert.equal(sjcl.decrypt(PASSWORD, fromOurs), text);
    });
  }
});

describe('non-default envelopes that sjcl.encrypt accepts', () => {
  test('empty and long salts, high iterations', () => {
    for (const salt of ['', bytesToBase64(random(1)), bytesToBase64(random(64))]) {
      const envelope = sjcl.encrypt(PASSWORD, 'salted', { salt, iter: 101 });
      assert.equal(ours.decrypt(PASSWORD, envelope), 'salted');
    }
    const envelope = sjcl.encrypt(PASSWORD, 'costly', { iter: 100_000 });
    assert.equal(ours.decrypt(PASSWORD, envelope), 'costly');
  });

  test('extra parameters written into the envelope', () => {
    const envelope = sjcl.encrypt(PASSWORD, 'extra', { iter: 101, note: 'kept', flag: true });
    assert.match(envelope, /"note":"kept"/);
    assert.equal(ours.decrypt(PASSWORD, envelope), 'extra');
  });

  test('passwords of any text', () => {
    for (const password of ['', 'pässwörd', '🎉'.repeat(50), ours.newRoom()]) {
      const envelope = sjcl.encrypt(password, 'text', { iter: 101 });
      assert.equal(ours.decrypt(password, envelope), 'text');
      assert.equal(sjcl.decrypt(password, ours.testEncryptWith(password, 'text', 101, 128, 64, random(16), new Uint8Array())), 'text');
    }
  });

  test('iterations above our limit rejected', () => {
    const envelope = sjcl.encrypt(PASSWORD, 'too costly', { iter: 100_001, salt: '' });
    assert.throws(() => ours.decrypt(PASSWORD, envelope), /100001 PBKDF2 iterations exceeds the limit of 100000/);
  });
});

describe('channel ids and prehashes from sjcl primitives', () => {
  /** Computes a channel id by the original page's rule, with SJCL's primitives. */
  function sjclChannelId(fragment) {
    const digest = sjcl.hash.sha256.hash(fragment);
    return sjcl.codec.base64url.fromBits(sjcl.bitArray.bitSlice(digest, 128, 256)).slice(1);
  }

  /** Computes the original page's preHash with SJCL's primitives. */
  function sjclPrehash(site, username, password) {
    const salt = sjcl.codec.base64.fromBits(sjcl.hash.sha256.hash(site + username)).slice(0, 10);
    return sjcl.codec.base64.fromBits(sjcl.misc.pbkdf2(password, salt, 25_000));
  }

  test('channel ids of random rooms match', () => {
    for (let i = 0; i < 50; i++) {
      const fragment = i % 2 ? ours.newRoom() : `#${Buffer.from(random(16)).toString('base64url')}`;
      const id = ours.channelId(fragment);
      assert.equal(id.length, 21);
      assert.equal(id, sjclChannelId(fragment), fragment);
    }
  });

  test('prehashes of random inputs match', () => {
    const pieces = ['dropth.at', 'cda', 'ü', '🎉', ' ', 'a$b', ''];
    for (let i = 0; i < 6; i++) {
      const pick = () => pieces[random(1)[0] % pieces.length] + Buffer.from(random(6)).toString('base64');
      const [site, username, password] = [pick(), pick(), pick()];
      assert.equal(ours.prehash(site, username, password), sjclPrehash(site, username, password));
    }
    assert.equal(ours.prehash('', '', ''), sjclPrehash('', '', ''));
  });
});
