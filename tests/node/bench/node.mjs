// Runs the benchmarks in node: `node tests/node/bench/node.mjs` after tests/node/build-wasm.
import { webcrypto } from 'node:crypto';

import { ours, sjcl } from '../support.mjs';
import { runBenchmarks, toMarkdown } from './cases.mjs';

const rows = await runBenchmarks({
  ours,
  sjcl,
  subtle: webcrypto.subtle,
  progress: (line) => console.error(line),
});
console.log(`node ${process.version}\n`);
console.log(toMarkdown(rows));
