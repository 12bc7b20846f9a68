// The benchmark cases, shared by the node and headless Chromium runners: PBKDF2-SHA256 and
// AES-CCM in our WebAssembly, in SJCL, and (for PBKDF2) in WebCrypto, plus the cost of the
// limits a hostile sender can reach.

const KIB = 1024;
const MIB = 1024 * KIB;

/**
 * Times `action` (sync or async): one warm-up, then samples until `budgetMs` or `maxRuns`.
 * Each sample runs the action `repeat` times and counts the mean, so actions shorter than a
 * page's coarse timer (0.1 ms in Chromium) still get measured.
 */
async function measure(action, { budgetMs = 1500, minRuns = 5, maxRuns = 30, repeat = 1 } = {}) {
  await action();
  const times = [];
  const start = performance.now();
  while (times.length < minRuns || (times.length < maxRuns && performance.now() - start < budgetMs)) {
    const before = performance.now();
    for (let i = 0; i < repeat; i++) {
      await action();
    }
    times.push((performance.now() - before) / repeat);
  }
  times.sort((a, b) => a - b);
  return { median: times[times.length >> 1], min: times[0], runs: times.length * repeat };
}

const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/** Yields to the event loop, so a page stays responsive to the driver between cases. */
const breathe = () => new Promise((resolve) => setTimeout(resolve, 0));

/**
 * Runs every case and returns rows of { case, impl, median, min, runs }, times in milliseconds.
 * `ours` is the wasm-bindgen module built with test exports, `sjcl` the sjcl package and
 * `subtle` a WebCrypto SubtleCrypto.
 */
export async function runBenchmarks({ ours, sjcl, subtle, progress = () => {} }) {
  const rows = [];
  const record = async (name, impl, action, options) => {
    await breathe();
    const result = await measure(action, options);
    rows.push({ case: name, impl, ...result });
    progress(`${name} / ${impl}: ${result.median.toFixed(2)} ms`);
  };

  const password = '#AAAAAAAAAAAAAAAAAAAAAA';
  const passwordBytes = new TextEncoder().encode(password);
  const salt = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const saltBits = sjcl.codec.hex.toBits('0102030405060708');
  const baseKey = await subtle.importKey('raw', passwordBytes, 'PBKDF2', false, ['deriveBits']);

  for (const iterations of [10_000, 25_000, 100_000]) {
    const name = `PBKDF2-SHA256, ${iterations.toLocaleString('en')} iterations`;
    await record(name, 'ours (wasm)', () => ours.testPbkdf2Sha256(passwordBytes, salt, iterations, 32));
    await record(name, 'WebCrypto', () =>
      subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, baseKey, 256));
    if (iterations <= 25_000) {
      await record(name, 'SJCL', () => sjcl.misc.pbkdf2(password, saltBits, iterations));
    }
  }

  // The whole decryption of a text envelope whose salt is new to the cache: one derivation
  // (in WebAssembly for decrypt, through WebCrypto for decryptAsync) plus a short AES-CCM.
  for (const iterations of [10_000, 100_000]) {
    const name = `decrypt a 100-byte envelope with a new salt, ${iterations.toLocaleString('en')} iterations`;
    const fresh = (count) => Array.from({ length: count }, () =>
      ours.testEncryptWith(password, 'x'.repeat(100), iterations, 128, 64, new Uint8Array(16).fill(3), new Uint8Array()));
    const options = { minRuns: 5, maxRuns: 15, budgetMs: 1500 };
    let pool = fresh(options.maxRuns + 1);
    await record(name, 'ours, decrypt (wasm)', () => ours.decrypt(password, pool.pop()), options);
    pool = fresh(options.maxRuns + 1);
    await record(name, 'ours, decryptAsync (WebCrypto)', () => ours.decryptAsync(password, pool.pop()), options);
    pool = fresh(options.maxRuns + 1);
    await record(name, 'SJCL, sjcl.decrypt', () => sjcl.decrypt(password, pool.pop()), options);
  }

  const key = new Uint8Array(16).fill(7);
  const iv = new Uint8Array(16).fill(9);
  const noAdata = new Uint8Array();
  const prp = new sjcl.cipher.aes(sjcl.codec.hex.toBits('07'.repeat(16)));
  const ivBits = sjcl.codec.hex.toBits('09'.repeat(16));
  for (const size of [KIB, 64 * KIB, MIB]) {
    const label = size >= MIB ? `${size / MIB} MiB` : `${size / KIB} KiB`;
    const plaintext = new Uint8Array(size).map((_, i) => i * 31);
    const sealed = ours.testCcmEncrypt(key, iv, noAdata, plaintext, 64);
    const plainBits = sjcl.codec.hex.toBits(toHex(plaintext));
    const sealedBits = sjcl.mode.ccm.encrypt(prp, plainBits, ivBits, [], 64);
    let repeat = 64;
    if (size >= MIB) {
      repeat = 1;
    } else if (size >= 64 * KIB) {
      repeat = 8;
    }
    const budget = { budgetMs: size >= MIB ? 3000 : 1000, repeat };

    await record(`AES-CCM encrypt, ${label}`, 'ours, raw CCM (wasm)',
      () => ours.testCcmEncrypt(key, iv, noAdata, plaintext, 64), budget);
    await record(`AES-CCM encrypt, ${label}`, 'SJCL',
      () => sjcl.mode.ccm.encrypt(prp, plainBits, ivBits, [], 64), budget);
    await record(`AES-CCM decrypt, ${label}`, 'ours, raw CCM (wasm)',
      () => ours.testCcmDecrypt(key, iv, noAdata, sealed, 64), budget);
    await record(`AES-CCM decrypt, ${label}`, 'SJCL',
      () => sjcl.mode.ccm.decrypt(prp, sealedBits, ivBits, [], 64), budget);

    // The blob functions around the same AES-CCM work, key cached: the synchronous ones in
    // WebAssembly, the asynchronous ones through WebCrypto's AES-CBC and AES-CTR.
    const blob = ours.encryptBytes(password, plaintext);
    await record(`AES-CCM encrypt, ${label}`, 'ours, encryptBytes (wasm)',
      () => ours.encryptBytes(password, plaintext), budget);
    await record(`AES-CCM encrypt, ${label}`, 'ours, encryptBytesAsync (WebCrypto)',
      () => ours.encryptBytesAsync(password, plaintext), budget);
    await record(`AES-CCM decrypt, ${label}`, 'ours, decryptBytes (wasm)',
      () => ours.decryptBytes(password, blob), budget);
    await record(`AES-CCM decrypt, ${label}`, 'ours, decryptBytesAsync (WebCrypto)',
      () => ours.decryptBytesAsync(password, blob), budget);
  }

  // The parts that bound the WebCrypto path: bare AES-CBC and AES-CTR calls over 1 MiB, alone,
  // together and in 256 KiB calls, one round trip with a single block, and a fresh 1 MiB array.
  const aesKey = new Uint8Array(16).fill(5);
  const cbcKey = await subtle.importKey('raw', aesKey, 'AES-CBC', false, ['encrypt']);
  const ctrKey = await subtle.importKey('raw', aesKey, 'AES-CTR', false, ['encrypt']);
  const zeroIv = new Uint8Array(16);
  const cbc = (data, cbcIv = zeroIv) => subtle.encrypt({ name: 'AES-CBC', iv: cbcIv }, cbcKey, data);
  const ctr = (data) => subtle.encrypt({ name: 'AES-CTR', counter: zeroIv, length: 64 }, ctrKey, data);
  const mebibyte = new Uint8Array(MIB).map((_, i) => i * 7);
  const bareOptions = { budgetMs: 2000 };
  await record('WebCrypto AES, 1 MiB', 'AES-CBC, one call', () => cbc(mebibyte), bareOptions);
  await record('WebCrypto AES, 1 MiB', 'AES-CBC, chained calls of 256 KiB', async () => {
    let chainIv = zeroIv;
    for (let start = 0; start < MIB; start += 256 * KIB) {
      const output = new Uint8Array(await cbc(mebibyte.subarray(start, start + 256 * KIB), chainIv));
      chainIv = output.slice(output.length - 32, output.length - 16);
    }
  }, bareOptions);
  await record('WebCrypto AES, 1 MiB', 'AES-CTR, one call', () => ctr(mebibyte), bareOptions);
  await record('WebCrypto AES, 1 MiB', 'AES-CBC and AES-CTR requested together',
    () => Promise.all([cbc(mebibyte), ctr(mebibyte)]), bareOptions);
  await record('WebCrypto AES, 16 bytes', 'AES-CTR, one call', () => ctr(aesKey), { repeat: 64 });
  await record('a new 1 MiB array, filled', 'Uint8Array and set', () => new Uint8Array(MIB).set(mebibyte),
    { budgetMs: 1000, repeat: 8 });

  // The limits: the largest text envelope and blob a sender may make, with the key cached.
  const largestText = 'x'.repeat(1_572_000);
  const envelope = ours.encrypt(password, largestText);
  await record(`decrypt a ${(envelope.length / MIB).toFixed(2)} MiB envelope, key cached`, 'ours, decrypt (wasm)',
    () => ours.decrypt(password, envelope), { budgetMs: 3000 });
  const largestBlob = ours.encryptBytes(password, new Uint8Array(8 * MIB));
  await record('decrypt an 8 MiB blob, key cached', 'ours, decryptBytes (wasm)',
    () => ours.decryptBytes(password, largestBlob), { budgetMs: 4000 });
  await record('decrypt an 8 MiB blob, key cached', 'ours, decryptBytesAsync (WebCrypto)',
    () => ours.decryptBytesAsync(password, largestBlob), { budgetMs: 4000 });

  return rows;
}

/** Formats milliseconds with two decimals, or three below 0.1 ms. */
const ms = (value) => value.toFixed(value < 0.1 ? 3 : 2);

/** Formats rows as a Markdown table. */
export function toMarkdown(rows) {
  const lines = ['| case | implementation | median ms | min ms | calls |', '|---|---|---:|---:|---:|'];
  for (const row of rows) {
    lines.push(`| ${row.case} | ${row.impl} | ${ms(row.median)} | ${ms(row.min)} | ${row.runs} |`);
  }
  return lines.join('\n');
}
