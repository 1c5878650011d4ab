#!/usr/bin/env node
// Latency of the `iidm serve` editor as a person feels it: from the end of a stroke
// (the pointerup on the canvas) to the generated image shown on the page (the load
// of #result-image with that stroke's request), through the page's debounce, its
// label PNG encoding, the HTTP round trip, the model and the browser's decode.
//
//   node tools/bench_editor.mjs --iidm build/iidm [--repo .] [--strokes 20]
//        [--unet FILE] [--preset NAME|FILE] [--threads 2] [--out build/bench-editor] [--pause-ms 300]
//
// Starts the real server (the demo student if bundled, --port 0) and Debian's Chromium through
// playwright-core (npm ci in tests/web), paints STROKES strokes of changing classes
// over the first example map with the first bundled style, one at a time as a
// person does (each waits for its image, then PAUSE_MS), and prints one line per
// stroke, then the median and the 95th percentile (nearest rank) in ms, with the
// server's own generation time beside them. A benchmark, not a test: it asserts
// nothing about the numbers. Writes DIR/bench-editor.png and DIR/server.log.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const opts = { repo: '.', strokes: '20', threads: '2', out: 'build/bench-editor', 'pause-ms': '300' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const m = /^--(iidm|repo|strokes|threads|out|pause-ms|preset|unet)(?:=(.*))?$/.exec(argv[i]);
  if (!m) usage(`unknown argument '${argv[i]}'`);
  opts[m[1]] = m[2] ?? argv[++i];
  if (!opts[m[1]]) usage(`--${m[1]} needs a value`);
}
if (!opts.iidm) usage('--iidm is required');
for (const k of ['strokes', 'threads', 'pause-ms']) {
  if (!/^\d+$/.test(opts[k]) || (k !== 'pause-ms' && Number(opts[k]) < 1)) usage(`--${k} must be a positive integer`);
}

function usage(problem) {
  console.error(`bench_editor.mjs: ${problem}\nusage: node tools/bench_editor.mjs --iidm PATH/iidm [--repo REPO] ` +
    '[--strokes N] [--unet FILE] [--preset NAME|FILE] [--threads N] [--out DIR] [--pause-ms MS]');
  process.exit(2);
}

const IIDM = path.resolve(opts.iidm);
const REPO = path.resolve(opts.repo);
const OUT = path.resolve(opts.out);
const STROKES = Number(opts.strokes);
const DEMO = path.join(REPO, 'models/demo');
fs.mkdirSync(OUT, { recursive: true });

// playwright-core lives in tests/web/node_modules (the browser test's package).
let chromium;
try {
  ({ chromium } = createRequire(path.join(REPO, 'tests/web/package.json'))('playwright-core'));
} catch (err) {
  console.error(`bench_editor.mjs: cannot load playwright-core (${err.message}); run 'npm ci --prefix tests/web'`);
  process.exit(2);
}

// Server start, browser flags and strokes: the browser test's harness.
const { CHROMIUM, CHROMIUM_ARGS, mouseStroke, startServer } =
  await import(pathToFileURL(path.join(REPO, 'tests/web/harness.mjs')).href);

// ------------------------------------------------------------------ the server

// The demo student with its preset when it is bundled, else the demo U-Net with the
// server's default preset (or the U-Net and preset given).
const student = path.join(DEMO, 'student.safetensors');
const hasStudent = fs.existsSync(student) && fs.existsSync(path.join(DEMO, 'preset-student.json'));
const unet = opts.unet ? path.resolve(opts.unet) : hasStudent ? student : path.join(DEMO, 'unet.safetensors');
const preset = opts.preset ?? (hasStudent && !opts.unet ? path.join(DEMO, 'preset-student.json') : null);
const args = ['--threads', opts.threads, 'serve', '--model', path.join(DEMO, 'model.json'), '--unet', unet,
  '--autoencoder', path.join(DEMO, 'autoencoder.safetensors'), '--port', '0'];
if (preset) args.push('--preset', preset);

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130)); // runs the exit hooks
const server = await startServer(IIDM, args, path.join(OUT, 'server.log')).catch((err) => {
  console.error(`bench_editor.mjs: ${err.message}`);
  process.exit(1);
});

// ------------------------------------------------------------------ the page

const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
const page = await (await browser.newContext({ viewport: { width: 1366, height: 768 } })).newPage();
await page.goto(server.url + '/');
await page.waitForFunction(() => window.iidmEditor && window.iidmEditor.ready, null, { timeout: 20000 });
const shownPreset = await page.$eval('#preset', (s) => s.value);
const { width: W, height: H } = await page.evaluate(() => ({ width: window.iidmEditor.width, height: window.iidmEditor.height }));

// In the page: the time of each stroke's end, and of each result image's load with
// the request number it shows (the page sets data-seq before src).
await page.evaluate(() => {
  window.__ends = [];
  window.__shown = [];
  document.querySelector('#label-canvas').addEventListener('pointerup', () => window.__ends.push(performance.now()));
  const img = document.querySelector('#result-image');
  img.addEventListener('load', () => window.__shown.push({ seq: Number(img.dataset.seq), at: performance.now() }));
});

// A warm-up generation (first-call allocations, oneDNN primitive creation) that is not counted.
await page.click('#generate');
await page.waitForFunction(() => window.iidmEditor.idle() && window.iidmEditor.shownResult() === window.iidmEditor.lastRequest(),
  null, { timeout: 60000 });

const classes = [1, 4, 5, 6, 9, 11, 13, 15, 17, 20]; // visible, distinct landscape classes
const rows = [];
for (let i = 0; i < STROKES; i++) {
  // A diagonal stroke of ~40% of the map's width at a place that moves each time, in a class
  // that is not under its points yet (a stroke that changes nothing generates nothing).
  const y0 = Math.round(H * (0.15 + 0.7 * ((i * 7) % 10) / 10));
  const x0 = Math.round(W * (0.05 + 0.5 * ((i * 3) % 10) / 10));
  const points = [[x0, y0], [x0 + W * 0.2, y0 + H * 0.05], [x0 + W * 0.4, y0 - H * 0.05]].map(([x, y]) => [Math.round(x), Math.round(y)]);
  const map = await page.evaluate(() => Array.from(window.iidmEditor.labels()));
  const under = new Set(points.map(([x, y]) => map[y * W + x]));
  const cls = [...classes.slice(i % classes.length), ...classes].find((c) => !under.has(c));
  await page.click(`.swatch[data-id="${cls}"]`);
  const before = await page.evaluate(() => window.iidmEditor.lastRequest());
  await mouseStroke(page, points, 4);
  await page.waitForFunction((before) => window.iidmEditor.idle() && window.iidmEditor.lastRequest() > before &&
    window.__shown.some((s) => s.seq === window.iidmEditor.lastRequest()), before, { timeout: 60000 })
    .catch(async () => {
      const state = await page.evaluate(() => ({ last: window.iidmEditor.lastRequest(), idle: window.iidmEditor.idle(),
        shown: window.__shown, ends: window.__ends.length, status: document.querySelector('#status').innerText }));
      throw new Error(`stroke ${i + 1}: no image within 60 s (requests before ${before}, page ${JSON.stringify(state)})`);
    });
  // The stroke's times and the server's for its request (X-Generation-Ms; the request is shown, see above).
  const t = await page.evaluate(() => {
    const seq = window.iidmEditor.lastRequest();
    return { end: window.__ends.at(-1), shown: window.__shown.find((s) => s.seq === seq).at,
      server: window.iidmEditor.resultServerMs() };
  });
  const ms = t.server ?? NaN;
  rows.push({ latency: t.shown - t.end, server: ms });
  console.log(`stroke ${String(i + 1).padStart(2)}: ${(t.shown - t.end).toFixed(0).padStart(5)} ms stroke end -> image shown` +
    ` (server ${Number.isFinite(ms) ? ms.toFixed(0) : '?'} ms)`);
  await page.waitForTimeout(Number(opts['pause-ms']));
}
await page.screenshot({ path: path.join(OUT, 'bench-editor.png') });
await browser.close();
await server.stop();

const rank = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
};
const median = (values) => {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const lat = rows.map((r) => r.latency);
const srv = rows.map((r) => r.server).filter(Number.isFinite);
console.log(`editor ${W}x${H}, preset ${shownPreset}, unet ${path.relative(REPO, unet)}, ` +
  `--threads ${opts.threads}, ${STROKES} strokes (debounce included)`);
console.log(`stroke end -> image shown: median ${median(lat).toFixed(0)} ms, p95 ${rank(lat, 0.95).toFixed(0)} ms, ` +
  `max ${Math.max(...lat).toFixed(0)} ms`);
if (srv.length) console.log(`server time per request: median ${median(srv).toFixed(0)} ms, p95 ${rank(srv, 0.95).toFixed(0)} ms`);
console.log(`screenshot: ${path.join(OUT, 'bench-editor.png')}`);
