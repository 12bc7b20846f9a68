// SJCL's own test vectors, read from the installed package at test time, run against our
// AES-CCM and PBKDF2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';

import {
  bitsToBytes,
  bytesToBits,
  bytesToHex,
  hexToBytes,
  ours,
  sjcl,
  sjclFile,
  utf8,
} from './support.mjs';

/** Evaluates one of SJCL's test files with `sandbox` as its global object. */
function runSjclFile(name, sandbox) {
  vm.runInNewContext(readFileSync(sjclFile(`test/${name}`), 'utf8'), sandbox, { filename: name });
  return sandbox;
}

test('sjcl ccm_vectors.js match our AES-CCM', () => {
  const vectors = runSjclFile('ccm_vectors.js', { sjcl: { test: { vector: {} } } }).sjcl.test
    .vector.ccm;
  assert.ok(vectors.length >= 1000, `only ${vectors.length} vectors found`);

  for (const [index, vector] of vectors.entries()) {
    const key = hexToBytes(vector.key);
    const iv = hexToBytes(vector.iv);
    const adata = hexToBytes(vector.adata);
    const plaintext = hexToBytes(vector.pt);
    const tagBits = vector.tag.length * 4;
    // Some vectors pad their hex with spaces or use capitals, which sjcl.codec.hex ignores.
    const expected = (vector.ct + vector.tag).replace(/\s/g, '').toLowerCase();

    const sealed = ours.testCcmEncrypt(key, iv, adata, plaintext, tagBits);
    assert.equal(bytesToHex(sealed), expected, `vector ${index}: encrypt`);
    const opened = ours.testCcmDecrypt(key, iv, adata, sealed, tagBits);
    assert.equal(bytesToHex(opened), bytesToHex(plaintext), `vector ${index}: decrypt`);

    sealed[index % sealed.length] ^= 0x04;
    assert.throws(
      () => ours.testCcmDecrypt(key, iv, adata, sealed, tagBits),
      /cannot decrypt/,
      `vector ${index}: tampered`,
    );
  }
});

test('sjcl pbkdf2_test.js passes with our PBKDF2', () => {
  // SJCL's test case calls sjcl.misc.pbkdf2 and checks the output with this.require; here
  // sjcl.misc.pbkdf2 is ours, behind SJCL's calling convention.
  const cases = [];
  const pbkdf2 = (password, salt, count, lengthBits) => {
    const passwordBytes = typeof password === 'string' ? utf8.encode(password) : bitsToBytes(password);
    const saltBytes = typeof salt === 'string' ? utf8.encode(salt) : bitsToBytes(salt);
    const output = ours.testPbkdf2Sha256(passwordBytes, saltBytes, count, (lengthBits ?? 256) / 8);
    return bytesToBits(output);
  };
  runSjclFile('pbkdf2_test.js', {
    sjcl: {
      test: { TestCase: function (name, body) { cases.push({ name, body }); } },
      misc: { pbkdf2, hmac: {} },
      hash: { sha256: {} },
      codec: { hex: sjcl.codec.hex },
    },
  });
  assert.ok(cases.length >= 1, 'pbkdf2_test.js defined no test case');

  for (const { name, body } of cases) {
    const checks = [];
    const context = {
      require: (condition) => checks.push(condition),
      fail: (error) => assert.fail(`${name}: ${error}`),
      unimplemented: () => assert.fail(`${name}: reported as unimplemented`),
    };
    let finished = false;
    body.call(context, () => { finished = true; });
    assert.ok(finished, `${name} did not finish`);
    assert.ok(checks.length >= 1, `${name} made no check`);
    checks.forEach((passed, i) => assert.equal(passed, true, `${name}: check ${i}`));
  }
});
