// Runs the benchmarks in headless Chromium through chromedriver, all on 127.0.0.1:
// `node tests/node/bench/browser.mjs` after tests/node/build-wasm. CHROMIUM and CHROMEDRIVER
// override the binaries' paths.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { toMarkdown } from './cases.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..', '..', '..');
const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium';
const chromedriver = process.env.CHROMEDRIVER ?? '/usr/bin/chromedriver';

/** URL paths of the page and the files it loads. */
const FILES = {
  '/': [path.join(here, 'page.html'), 'text/html'],
  '/cases.mjs': [path.join(here, 'cases.mjs'), 'text/javascript'],
  '/sjcl.js': [path.join(here, '..', 'node_modules', 'sjcl', 'sjcl.js'), 'text/javascript'],
  '/pkg/dropthat_client.js': [path.join(root, 'target/node-interop/web/dropthat_client.js'), 'text/javascript'],
  '/pkg/dropthat_client_bg.wasm': [path.join(root, 'target/node-interop/web/dropthat_client_bg.wasm'), 'application/wasm'],
};

function serveFiles() {
  const server = http.createServer(async (request, response) => {
    const entry = FILES[new URL(request.url, 'http://127.0.0.1').pathname];
    if (!entry) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'Content-Type': entry[1] }).end(await readFile(entry[0]));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** Returns a loopback port that was free a moment ago, for chromedriver's --port. */
function freePort() {
  return new Promise((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function webdriver(base, method, route, body) {
  const response = await fetch(`${base}${route}`, {
    method,
    headers: { 'Content-Type': 'application/json' },
    body: body && JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) {
    throw new Error(`webdriver ${method} ${route} failed: ${JSON.stringify(json.value)}`);
  }
  return json.value;
}

const server = await serveFiles();
const port = await freePort();
const driver = spawn(chromedriver, [`--port=${port}`], { stdio: 'ignore' });
const base = `http://127.0.0.1:${port}`;
let session;
try {
  for (let attempt = 0; ; attempt++) {
    try {
      await webdriver(base, 'GET', '/status');
      break;
    } catch (error) {
      if (attempt >= 50) throw new Error(`chromedriver did not start: ${error}`);
      await sleep(100);
    }
  }

  session = await webdriver(base, 'POST', '/session', {
    capabilities: {
      alwaysMatch: {
        'goog:chromeOptions': {
          binary: chromium,
          // --no-sandbox because CI runs as root, where Chromium's sandbox cannot start.
          args: [
            '--headless=new',
            '--no-sandbox',
            '--disable-gpu',
            '--disable-dev-shm-usage',
            '--disable-background-networking',
            '--disable-component-update',
            '--no-first-run',
          ],
        },
      },
    },
  });
  const sessionBase = `/session/${session.sessionId}`;
  const version = session.capabilities.browserVersion;
  await webdriver(base, 'POST', `${sessionBase}/url`, { url: `http://127.0.0.1:${server.address().port}/` });

  // The page yields between cases, so the driver can run these polls while it works.
  const deadline = Date.now() + 10 * 60 * 1000;
  let outcome;
  while (!outcome) {
    if (Date.now() > deadline) throw new Error('the benchmarks did not finish within 10 minutes');
    await sleep(1000);
    outcome = await webdriver(base, 'POST', `${sessionBase}/execute/sync`, {
      script: 'return window.benchRows ? { rows: window.benchRows } : (window.benchError ? { error: window.benchError } : null);',
      args: [],
    });
  }
  if (outcome.error) throw new Error(`the page failed: ${outcome.error}`);
  console.log(`headless Chromium ${version}\n`);
  console.log(toMarkdown(outcome.rows));
} finally {
  if (session) await webdriver(base, 'DELETE', `/session/${session.sessionId}`).catch(() => {});
  driver.kill();
  server.close();
}
