// What the browser test (tests/web/editor.test.mjs) and the latency benchmark
// (tools/bench_editor.mjs) both need: the real `iidm serve` as a child process, Debian's
// Chromium with the flags a headless machine needs, and strokes on the page's canvas in
// map pixels. No assertions here; callers decide what a failure means.

import { spawn } from 'node:child_process';
import fs from 'node:fs';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// Starts `iidm ARGS` (a `serve` command line with --port 0), logging all its output to
// logPath, and resolves when it prints "listening on http://HOST:PORT" with
// {child, url, output(), stop()}. Rejects (and kills the child) when it exits first, cannot
// be started or stays silent for 60 s. The child is killed when this process exits.
export function startServer(iidm, args, logPath) {
  const logFile = fs.createWriteStream(logPath);
  logFile.write(`$ ${iidm} ${args.join(' ')}\n`);
  const child = spawn(iidm, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  process.on('exit', () => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'));
  let output = '';
  let server = null;
  return new Promise((resolve, reject) => {
    const fail = (why) => {
      clearTimeout(timer);
      if (child.exitCode === null) child.kill('SIGKILL'); // e.g. still loading after 60 s
      reject(new Error(`${why}; its output:\n${output.slice(-2000) || '(none)'}`));
    };
    const timer = setTimeout(() => fail('the server printed no "listening on http://HOST:PORT" line within 60 s'), 60000);
    const collect = (chunk) => {
      output += chunk;
      logFile.write(chunk);
      const m = /listening on (http:\/\/[^\s/]+)/.exec(output);
      if (m && !server) {
        clearTimeout(timer);
        server = { child, url: m[1], output: () => output, stopping: false, stop: () => stopServer(server) };
        resolve(server);
      }
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', (err) => fail(`cannot start ${iidm}: ${err.message}`));
    child.on('exit', (code, signal) => {
      if (!server) fail(`the server exited (code ${code}, signal ${signal}) before listening`);
      else if (!server.stopping) console.log(`# the server exited unexpectedly (code ${code}, signal ${signal})`);
    });
  });
}

// SIGTERM, then SIGKILL if it has not exited within 5 s.
async function stopServer(server) {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return;
  server.stopping = true;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timeout = new Promise((resolve) => setTimeout(() => resolve('timeout'), 5000));
  if ((await Promise.race([exited, timeout])) === 'timeout') child.kill('SIGKILL');
}

// Screen position of the centre of map pixel (x, y): the canvas holds the map 1:1
// (canvas.width x canvas.height) and CSS scales it to its box.
export async function screenPoint(page, x, y) {
  const c = await page.$eval('#label-canvas', (el) => {
    const r = el.getBoundingClientRect();
    return { left: r.left, top: r.top, w: r.width, h: r.height, W: el.width, H: el.height };
  });
  return { x: c.left + ((x + 0.5) * c.w) / c.W, y: c.top + ((y + 0.5) * c.h) / c.H };
}

// A mouse stroke through map points, `steps` intermediate mouse events between two
// points (few: the page must join them with lines itself).
export async function mouseStroke(page, points, steps = 2) {
  const first = await screenPoint(page, ...points[0]);
  await page.mouse.move(first.x, first.y);
  await page.mouse.down();
  for (const p of points.slice(1)) {
    const s = await screenPoint(page, ...p);
    await page.mouse.move(s.x, s.y, { steps });
  }
  await page.mouse.up();
}
