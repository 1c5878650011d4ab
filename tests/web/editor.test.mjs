#!/usr/bin/env node
// Headless-browser test of the `iidm serve` editor page (web/).
//
//   node tests/web/editor.test.mjs --iidm build/iidm --repo . --out DIR
//
// Starts the real server (demo model, --port 0) as a child process, drives Debian's
// Chromium through playwright-core (npm ci in tests/web first) and checks the page
// as a person would use it: painting with mouse and touch, fill, undo/redo, eraser,
// example maps, style uploads, server errors, superseded requests, the history strip
// and the downloads (the saved label map must read back unchanged, through the
// server and through `iidm generate`). Writes DIR/editor.png (1366x768) and
// DIR/editor-touch.png (800x1000, touch) for a human to look at, DIR/server.log,
// and DIR/labels.png, DIR/result.png, DIR/from-page.png.
//
// Node 18 or newer (its fetch/FormData/Blob), ES modules, no test framework: one
// line per step, a summary, exit code 1 on any failure.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { CHROMIUM, CHROMIUM_ARGS, mouseStroke, screenPoint, startServer as startIidm } from './harness.mjs';

const started = Date.now();

// ------------------------------------------------------------------ arguments

function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(iidm|repo|out)(?:=(.*))?$/.exec(argv[i]);
    if (!m) usage(`unknown argument '${argv[i]}'`);
    opts[m[1]] = m[2] ?? argv[++i];
    if (!opts[m[1]]) usage(`--${m[1]} needs a value`);
  }
  for (const k of ['iidm', 'repo', 'out']) if (!opts[k]) usage(`--${k} is required`);
  return opts;
}

function usage(problem) {
  console.error(`editor.test.mjs: ${problem}\nusage: node tests/web/editor.test.mjs --iidm PATH/iidm --repo REPO --out DIR`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const IIDM = path.resolve(opts.iidm);
const REPO = path.resolve(opts.repo);
const OUT = path.resolve(opts.out);
const DEMO = path.join(REPO, 'models/demo');
const MODEL_ARGS = [
  '--model', path.join(DEMO, 'model.json'),
  '--unet', path.join(DEMO, 'unet.safetensors'),
  '--autoencoder', path.join(DEMO, 'autoencoder.safetensors'),
];
fs.mkdirSync(OUT, { recursive: true });

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (err) {
  console.error(`editor.test.mjs: cannot load playwright-core (${err.message}); run 'npm ci' in tests/web`);
  process.exit(2);
}

// ------------------------------------------------------------------ assertions

class AssertionError extends Error {}
function assert(condition, message) {
  if (!condition) throw new AssertionError(message);
}

const steps = [];
function step(name, fn) {
  steps.push({ name, fn });
}

// ------------------------------------------------------------------ the server

let server = null; // {child, url, output(), stop()} from harness.mjs

async function startServer() {
  const args = ['--threads', '2', 'serve', ...MODEL_ARGS, '--port', '0'];
  server = await startIidm(IIDM, args, path.join(OUT, 'server.log')).catch((err) => {
    throw new AssertionError(err.message);
  });
  return server;
}

async function stopServer() {
  if (server) await server.stop();
}

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130)); // runs the exit hooks

async function api(route, init) {
  const res = await fetch(server.url + route, init);
  const type = res.headers.get('content-type') || '';
  const body = type.includes('json') ? await res.json() : Buffer.from(await res.arrayBuffer());
  return { status: res.status, body };
}

// The server's reading of a label PNG (bytes) as W*H class ids.
async function serverLabels(png, name = 'labels.png') {
  const form = new FormData();
  form.append('mask', new Blob([png], { type: 'image/png' }), name);
  const { status, body } = await api('/api/label-map', { method: 'POST', body: form });
  assert(status === 200, `POST /api/label-map answered ${status}: ${JSON.stringify(body)}`);
  return { width: body.width, height: body.height, labels: new Uint8Array(Buffer.from(body.labels, 'base64')) };
}

function run(cmd, args) {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 1 << 24 }, (err, stdout, stderr) =>
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }));
  });
}

// Width and height from a PNG's IHDR.
function pngSize(buf) {
  assert(buf.length > 24 && buf.readUInt32BE(0) === 0x89504e47, 'not a PNG file');
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

// ------------------------------------------------------------------ page helpers

let W = 256;
let H = 192;

async function labels(page) {
  return Uint8Array.from(await page.evaluate(() => Array.from(window.iidmEditor.labels())));
}

function equal(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function differences(a, b) {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

const at = (map, x, y) => map[y * W + x];

// Waits until no request is pending or scheduled and a result newer than `after`
// (a request number) is shown; returns its number.
async function waitForResult(page, after, what) {
  try {
    await page.waitForFunction((after) => {
      const img = document.querySelector('#result-image');
      return window.iidmEditor.idle() && !img.hidden && img.complete && img.naturalWidth > 0 &&
        Number(img.dataset.seq) > after;
    }, after, { timeout: 30000 });
  } catch {
    throw new AssertionError(`no new result ${what} within 30 s; status: '${await statusText(page)}'`);
  }
  return page.evaluate(() => window.iidmEditor.shownResult());
}

async function waitIdle(page) {
  await page.waitForFunction(() => window.iidmEditor.idle(), null, { timeout: 30000 });
}

const statusText = (page) => page.locator('#status').innerText().catch(() => '?');
const statusState = (page) => page.locator('#status').getAttribute('data-state');
const historyCount = (page) => page.locator('#history .item').count();
const lastRequest = (page) => page.evaluate(() => window.iidmEditor.lastRequest());

// Records every data-state the status line takes, so a short 'working' is not missed.
async function recordStatus(page) {
  await page.evaluate(() => {
    window.__statusStates = [];
    const el = document.querySelector('#status');
    new MutationObserver(() => window.__statusStates.push(el.dataset.state))
      .observe(el, { attributes: true, attributeFilter: ['data-state'] });
  });
}

async function openEditor(context, consoleLog) {
  const page = await context.newPage();
  page.on('console', (m) => consoleLog.push({ type: m.type(), text: m.text() }));
  page.on('pageerror', (err) => consoleLog.push({ type: 'pageerror', text: err.message }));
  await page.goto(server.url + '/');
  await page.waitForFunction(() => window.iidmEditor && window.iidmEditor.ready, null, { timeout: 20000 });
  await recordStatus(page);
  return page;
}

// Console errors other than the browser's own "Failed to load resource" lines for
// the error statuses this test provokes on purpose (409 superseded, 4xx bad style).
function unexpectedConsole(log) {
  return log.filter((m) => (m.type === 'error' || m.type === 'pageerror') &&
    !/Failed to load resource: the server responded with a status of 4\d\d/.test(m.text));
}

// ------------------------------------------------------------------ the steps

let browser;
let page; // the desktop page (1366x768)
const consoleLog = [];
const touchConsoleLog = [];
const responses = []; // status of every /api/generate answer to the desktop page
let firstResult; // {seq, labels} of the first stroke's result

step('the server starts and answers /api/health', async () => {
  await startServer();
  const { status, body } = await api('/api/health');
  assert(status === 200 && body.status === 'ok', `/api/health answered ${status}: ${JSON.stringify(body)}`);
  W = body.width;
  H = body.height;
  assert(W > 0 && H > 0, `/api/health gave no width/height: ${JSON.stringify(body)}`);
});

step('the page loads without console errors', async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 }, acceptDownloads: true });
  page = await openEditor(context, consoleLog);
  page.on('response', (r) => r.url().endsWith('/api/generate') && responses.push(r.status()));
  await page.waitForTimeout(300); // late errors of the start-up requests
  const errors = unexpectedConsole(consoleLog);
  assert(errors.length === 0, `console errors: ${errors.map((e) => e.text).join(' | ')}`);
  const size = await page.evaluate(() => [window.iidmEditor.width, window.iidmEditor.height]);
  assert(size[0] === W && size[1] === H, `the page's map is ${size}, the model's ${W}x${H}`);
  const labelled = (await labels(page)).filter((v) => v !== 255).length;
  assert(labelled > 0, 'the page did not start with the first example map loaded');
});

step('the palette has the server\'s 29 classes as named swatches', async () => {
  const { body } = await api('/api/classes');
  const swatches = await page.$$eval('.swatch', (els) => els.map((e) => ({ id: Number(e.dataset.id), name: e.textContent.trim() })));
  assert(swatches.length === 29, `${swatches.length} swatches, expected 29`);
  assert(body.classes.length === 29, `/api/classes has ${body.classes.length} classes`);
  for (const c of body.classes) {
    const s = swatches.find((x) => x.id === c.id);
    assert(s && s.name === c.name, `class ${c.id} '${c.name}' has swatch ${JSON.stringify(s)}`);
  }
});

step('a mouse stroke sends a request, shows working, then a 256x192 result and one history item', async () => {
  // The stroke runs along y = 40..44; paint it with a class that is not there yet
  // (the example map may well have sky up there).
  const stroke = [[20, 40], [120, 44], [235, 40]];
  const onStroke = [20, 70, 120, 180, 235].map((x) =>
    [x, x <= 120 ? Math.round(40 + (4 * (x - 20)) / 100) : Math.round(44 - (4 * (x - 120)) / 115)]);
  const start = await labels(page);
  const cls = [1, 11, 4].find((c) => onStroke.every(([x, y]) => at(start, x, y) !== c));
  await page.click(`.swatch[data-id="${cls}"]`);
  await page.click('#tool-brush');
  const request = page.waitForRequest((r) => r.url().endsWith('/api/generate') && r.method() === 'POST', { timeout: 5000 });
  await mouseStroke(page, stroke);
  await request.catch(() => { throw new AssertionError('no POST /api/generate within 5 s of the stroke'); });
  const seq = await waitForResult(page, 0, 'after the stroke');
  const states = await page.evaluate(() => window.__statusStates);
  assert(states.includes('working'), `the status never showed working (states: ${states.join(', ')})`);
  assert((await statusState(page)) === 'ok', `status is '${await statusText(page)}' after the result`);
  assert(/\d+ ms/.test(await statusText(page)), `the status shows no time: '${await statusText(page)}'`);
  const natural = await page.$eval('#result-image', (img) => [img.naturalWidth, img.naturalHeight]);
  assert(natural[0] === W && natural[1] === H, `the result image is ${natural.join('x')}, expected ${W}x${H}`);
  assert((await historyCount(page)) === 1, `${await historyCount(page)} history items, expected 1`);
  const map = await labels(page);
  for (const [x, y] of onStroke) {
    assert(at(map, x, y) === cls, `map pixel (${x},${y}) is ${at(map, x, y)} after a stroke of class ${cls}: the stroke has gaps`);
  }
  firstResult = { seq, labels: map };
});

let beforeFill;
let afterFill;
step('fill with another class relabels the contiguous region under the click', async () => {
  beforeFill = await labels(page);
  const [x, y] = [128, 160];
  const old = at(beforeFill, x, y);
  const cls = old === 5 ? 6 : 5;
  await page.click(`.swatch[data-id="${cls}"]`);
  await page.click('#tool-fill');
  const p = await screenPoint(page, x, y);
  await page.mouse.click(p.x, p.y);
  afterFill = await labels(page);
  assert(at(afterFill, x, y) === cls, `the clicked pixel is ${at(afterFill, x, y)}, expected ${cls}`);
  let changed = 0;
  for (let i = 0; i < afterFill.length; i++) {
    if (afterFill[i] === beforeFill[i]) continue;
    changed++;
    assert(beforeFill[i] === old && afterFill[i] === cls, `pixel ${i} went ${beforeFill[i]} -> ${afterFill[i]}, not ${old} -> ${cls}`);
  }
  assert(changed > 1, `fill changed ${changed} pixels`);
});

step('undo and redo (buttons, Ctrl+Z, Ctrl+Shift+Z, Ctrl+Y) restore and re-apply the fill', async () => {
  const check = async (how, expected, name) => {
    const map = await labels(page);
    assert(equal(map, expected), `after ${how} the map differs from ${name} in ${differences(map, expected)} pixels`);
  };
  await page.click('#undo');
  await check('the undo button', beforeFill, 'the map before the fill');
  await page.click('#redo');
  await check('the redo button', afterFill, 'the filled map');
  await page.keyboard.press('Control+z');
  await check('Ctrl+Z', beforeFill, 'the map before the fill');
  await page.keyboard.press('Control+Shift+z');
  await check('Ctrl+Shift+Z', afterFill, 'the filled map');
  await page.keyboard.press('Control+z');
  await page.keyboard.press('Control+y');
  await check('Ctrl+Z, Ctrl+Y', afterFill, 'the filled map');
});

step('the eraser paints unlabelled (255)', async () => {
  await page.click('#tool-eraser');
  await mouseStroke(page, [[60, 10], [60, 180]]);
  const map = await labels(page);
  for (let y = 10; y <= 180; y += 10) assert(at(map, 60, y) === 255, `map pixel (60,${y}) is ${at(map, 60, y)} after erasing`);
  await page.click('#tool-brush');
});

step('a touch stroke (800x1000 touch screen) paints, and its result appears', async () => {
  const context = await browser.newContext({ viewport: { width: 800, height: 1000 }, hasTouch: true, acceptDownloads: true });
  const touch = await openEditor(context, touchConsoleLog);
  await touch.evaluate(() => {
    window.__pointerTypes = [];
    document.querySelector('#label-canvas').addEventListener('pointerdown', (e) => window.__pointerTypes.push(e.pointerType));
  });
  await touch.tap('.swatch[data-id="12"]');
  const before = await labels(touch);
  // Real touch input through the DevTools protocol: Chromium turns it into
  // pointer events of pointerType 'touch', as a finger on a screen would.
  const cdp = await context.newCDPSession(touch);
  const points = [];
  for (let x = 30; x <= 220; x += 19) points.push(await screenPoint(touch, x, 100));
  const touchPoint = (p) => [{ x: p.x, y: p.y, radiusX: 4, radiusY: 4, force: 1, id: 1 }];
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: touchPoint(points[0]) });
  for (const p of points.slice(1)) await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: touchPoint(p) });
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  const types = await touch.evaluate(() => window.__pointerTypes);
  assert(types.includes('touch'), `the canvas saw pointer types [${types}], no 'touch'`);
  const after = await labels(touch);
  assert(differences(before, after) > 0, 'the touch stroke did not change the map');
  for (let x = 30; x <= 220; x += 10) assert(at(after, x, 100) === 12, `map pixel (${x},100) is ${at(after, x, 100)} after a touch stroke of class 12`);
  await waitForResult(touch, 0, 'after the touch stroke');
  await touch.screenshot({ path: path.join(OUT, 'editor-touch.png'), fullPage: true });
  const errors = unexpectedConsole(touchConsoleLog);
  assert(errors.length === 0, `console errors on the touch page: ${errors.map((e) => e.text).join(' | ')}`);
  await context.close();
});

step('an example mask picked in the page loads as the server reads it', async () => {
  await waitIdle(page);
  const { body } = await api('/api/masks');
  assert(body.masks.length >= 2, `/api/masks lists ${body.masks.length} masks`);
  const mask = body.masks[1];
  const expected = (await serverLabels((await api(mask.url)).body, `${mask.name}.png`)).labels;
  await page.click(`.mask-thumb[data-name="${mask.name}"]`);
  await page.waitForFunction((n) => window.iidmEditor.labels().length === n, expected.length);
  let map;
  for (let tries = 0; tries < 50; tries++) {
    map = await labels(page);
    if (equal(map, expected)) break;
    await page.waitForTimeout(100);
  }
  assert(equal(map, expected), `after picking ${mask.name} the map differs from the server's reading in ${differences(map, expected)} pixels`);
  await waitForResult(page, await page.evaluate(() => window.iidmEditor.shownResult()), `after picking ${mask.name}`);
});

step('an uploaded style photo is shown and used', async () => {
  const file = path.join(DEMO, 'examples/reference-3.jpg');
  const shown = await page.evaluate(() => window.iidmEditor.shownResult());
  const request = page.waitForRequest((r) => r.url().endsWith('/api/generate'), { timeout: 5000 });
  await page.setInputFiles('#style-upload', file);
  await request.catch(() => { throw new AssertionError('no POST /api/generate within 5 s of the upload'); });
  await page.waitForFunction(() => {
    const img = document.querySelector('#style-preview');
    return img.dataset.name === 'reference-3.jpg' && img.complete && img.naturalWidth > 0;
  }, null, { timeout: 5000 }).catch(() => { throw new AssertionError('the uploaded style is not shown in #style-preview'); });
  await waitForResult(page, shown, 'with the uploaded style');
  assert((await statusState(page)) === 'ok', `status '${await statusText(page)}'`);
  const used = await page.evaluate(() => window.iidmEditor.resultStyle());
  assert(used === 'reference-3.jpg', `the result shown was made with style '${used}'`);
});

step('a non-image as style shows the server\'s error, and the server still answers', async () => {
  const file = path.join(OUT, 'not-an-image.txt');
  fs.writeFileSync(file, 'This is a text file, not a photo.\n');
  const response = page.waitForResponse((r) => r.url().endsWith('/api/generate') && r.status() !== 409 && r.status() !== 200, { timeout: 30000 });
  await page.setInputFiles('#style-upload', file);
  const res = await response.catch(() => { throw new AssertionError('no error answer to a text file as style'); });
  assert(res.status() >= 400 && res.status() < 500, `a text file as style answered ${res.status()}, expected 4xx`);
  const json = await res.json().catch(() => ({}));
  assert(typeof json.error === 'string' && json.error.length > 0, `the error answer has no JSON "error": ${await res.text()}`);
  await page.waitForFunction((msg) => {
    const el = document.querySelector('#status');
    return el.dataset.state === 'error' && el.textContent.includes(msg);
  }, json.error, { timeout: 5000 }).catch(async () => {
    throw new AssertionError(`the status line shows '${await statusText(page)}', not the server's error '${json.error}'`);
  });
  assert(await page.locator('#status').isVisible(), 'the status line is not visible');
  const health = await api('/api/health');
  assert(health.status === 200 && health.body.status === 'ok', `/api/health after the bad upload: ${health.status}`);
});

step('picking a bundled style recovers from the error', async () => {
  const shown = await page.evaluate(() => window.iidmEditor.shownResult());
  await page.click('.style-thumb >> nth=0');
  await waitForResult(page, shown, 'after picking a bundled style');
  assert((await statusState(page)) === 'ok', `status '${await statusText(page)}'`);
  const name = await page.$eval('#style-preview', (img) => img.dataset.name);
  const first = await page.$eval('.style-thumb', (b) => b.dataset.name);
  assert(name === first, `the style shown is '${name}', expected '${first}'`);
});

step('rapid strokes: only the latest result is shown, superseded requests are no error', async () => {
  const before = responses.length;
  const sentBefore = await lastRequest(page);
  const classes = [0, 2, 7, 9, 13, 22];
  for (let i = 0; i < classes.length; i++) {
    await page.click(`.swatch[data-id="${classes[i]}"]`);
    await mouseStroke(page, [[30 + 30 * i, 120], [40 + 30 * i, 170]]);
    await page.waitForTimeout(320); // just over the page's debounce: one request per stroke
  }
  const latest = await lastRequest(page);
  await page.waitForFunction((latest) => window.iidmEditor.idle() && window.iidmEditor.shownResult() === latest, latest, { timeout: 30000 })
    .catch(async () => {
      throw new AssertionError(`the shown result is request ${await page.evaluate(() => window.iidmEditor.shownResult())}, the latest request ${latest}`);
    });
  const statuses = responses.slice(before);
  const superseded = statuses.filter((s) => s === 409).length;
  assert(latest - sentBefore >= 3, `only ${latest - sentBefore} requests for ${classes.length} spaced strokes`);
  assert(statuses.every((s) => s === 200 || s === 409), `answers to the rapid requests: ${statuses.join(', ')}`);
  assert((await statusState(page)) === 'ok', `status '${await statusText(page)}' after superseded requests`);
  console.log(`#   ${latest - sentBefore} requests: ${statuses.filter((s) => s === 200).length} answered 200, ${superseded} superseded (409)`);
});

step('clicking the first history item restores its label map', async () => {
  const sent = await lastRequest(page);
  await page.click('#history .item >> nth=0');
  const map = await labels(page);
  assert(equal(map, firstResult.labels), `the restored map differs from the first result's in ${differences(map, firstResult.labels)} pixels`);
  const [shownSrc, itemSrc] = await page.evaluate(() =>
    [document.querySelector('#result-image').src, document.querySelector('#history .item img').src]);
  assert(shownSrc === itemSrc, 'the result image is not the first history item\'s');
  await page.waitForTimeout(400);
  assert((await lastRequest(page)) === sent, 'restoring a history item sent a new request');
});

step('the downloaded label map reads back unchanged (server and iidm generate)', async () => {
  const file = path.join(OUT, 'labels.png');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-labels')]);
  await download.saveAs(file);
  const png = fs.readFileSync(file);
  const size = pngSize(png);
  assert(size.width === W && size.height === H, `labels.png is ${size.width}x${size.height}`);
  const map = await labels(page);
  const back = await serverLabels(png);
  assert(equal(back.labels, map), `labels.png read by the server differs from the page's map in ${differences(back.labels, map)} pixels`);
  const out = path.join(OUT, 'from-page.png');
  fs.rmSync(out, { force: true });
  const args = ['--threads', '2', 'generate', ...MODEL_ARGS, '--mask', file,
    '--style', path.join(DEMO, 'examples/reference-1.jpg'), '--preset', path.join(REPO, 'configs/presets/interactive.json'), '--out', out];
  const r = await run(IIDM, args);
  assert(r.code === 0, `iidm generate --mask labels.png exited ${r.code}: ${(r.stderr || r.stdout).slice(-1000)}`);
  assert(fs.existsSync(out), 'iidm generate wrote no from-page.png');
});

step('the image downloads as a 256x192 PNG', async () => {
  const file = path.join(OUT, 'result.png');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-image')]);
  await download.saveAs(file);
  const size = pngSize(fs.readFileSync(file));
  assert(size.width === W && size.height === H, `result.png is ${size.width}x${size.height}, expected ${W}x${H}`);
});

step('1366x768: map and result side by side on one screen (editor.png)', async () => {
  await page.screenshot({ path: path.join(OUT, 'editor.png') });
  const box = async (sel) => page.locator(sel).boundingBox();
  const [map, result, history, palette] = await Promise.all(['#label-canvas', '#result-image', '#history', '#palette'].map(box));
  const inside = (b) => b && b.x >= 0 && b.y >= 0 && b.x + b.width <= 1366 && b.y + b.height <= 768;
  for (const [name, b] of [['map', map], ['result', result], ['history', history], ['palette', palette]]) {
    assert(inside(b), `the ${name} is not inside the 1366x768 screen: ${JSON.stringify(b)}`);
  }
  assert(result.x >= map.x + map.width, 'the result is not beside the map');
  assert(map.width >= 2 * W, `the map is shown at only ${Math.round(map.width)} px wide`);
  const errors = unexpectedConsole(consoleLog);
  assert(errors.length === 0, `console errors during the test: ${errors.map((e) => e.text).join(' | ')}`);
});

// ------------------------------------------------------------------ run

let passed = 0;
let failed = 0;
let skipped = 0;
for (const { name, fn } of steps) {
  if (failed) {
    console.log(`skip - ${name}`);
    skipped++;
    continue;
  }
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok  - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (err) {
    failed++;
    console.log(`FAIL - ${name}: ${err instanceof AssertionError ? err.message : err.stack}`);
  }
}
if (failed && page) await page.screenshot({ path: path.join(OUT, 'editor-failure.png') }).catch(() => {});
if (failed && server) console.log(`# server output (tail; all of it in ${path.join(OUT, 'server.log')}):\n${server.output().slice(-1500)}`);
await browser?.close().catch(() => {});
await stopServer();
console.log(`# ${((Date.now() - started) / 1000).toFixed(1)} s, output in ${OUT}`);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed ? 1 : 0);
