// iidm serve — the sparse-layout editor page.
//
// The label map is a Uint8Array of class ids at the model's native size (from
// /api/health), drawn 1:1 into #label-canvas and scaled up by CSS. Every edit that
// ends (stroke, fill, undo/redo, clear, load, style or setting change) schedules a
// debounced POST /api/generate; results go to #result-image and the history strip.
// No framework, no build step: the server serves this file as it is.
'use strict';

(() => {
  // Quiet time after an edit before generating. A stroke or a fill is one finished
  // edit: it generates at once (the next frame), and if the person goes on, the server
  // abandons the running request for the newer one at its next denoising step. Edits that
  // come in bursts (undo/redo held down, settings typed, a style clicked through) wait
  // for a pause instead.
  const STROKE_END_MS = 16;
  const DEBOUNCE_MS = 250;
  const UNDO_LIMIT = 100; // snapshots kept (one map is only W*H bytes)
  const HISTORY_LIMIT = 40; // results kept in the strip
  const BUSY_RETRY_MS = 1500; // wait before retrying after 503 (queue full)
  const CHECKER = [[0x45, 0x49, 0x50], [0x38, 0x3c, 0x42]]; // unlabelled pixels
  const UNKNOWN = [0xff, 0x00, 0xff]; // an id that is neither a class nor "unlabelled"

  const $ = (selector) => document.querySelector(selector);
  const canvas = $('#label-canvas');
  const ctx = canvas.getContext('2d');
  const resultImage = $('#result-image');
  const stylePreview = $('#style-preview');

  const state = {
    ready: false,
    width: 256,
    height: 192,
    ignore: 255,
    labels: new Uint8Array(256 * 192).fill(255),
    classes: [],
    lut: new Uint8Array(256 * 3), // RGB per label value
    tool: 'brush',
    classId: 0,
    brushSize: 10,
    undo: [],
    redo: [],
    styles: [], // bundled: {name, url, blob?}
    masks: [], // bundled: {name, url, labels?}
    style: null, // the chosen reference: {name, url, blob}
    seq: 0, // number of the last generate request sent
    outcomeSeq: 0, // number of the newest request whose outcome (image or error) is shown
    pending: 0, // generate requests in flight
    timer: null, // debounce timer
    lastMs: null,
    lastSeed: null,
    error: null, // message shown in #status until the next success
    history: [], // {seq, blob, url, labels, style, seed, ms}
    result: null, // the history entry shown in #result-image
  };

  // A random id per page load: the server lets a newer request of the same client
  // replace its older one, queued or running (answering the old one 409).
  const clientId = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, '0')).join('');

  // ---------------------------------------------------------------- status line

  function renderStatus() {
    const el = $('#status');
    let stateName = 'idle';
    let text = 'Ready: paint on the map, the image appears on the right.';
    const last = state.lastMs != null ? `${state.lastMs} ms` : '';
    if (state.pending > 0) {
      stateName = 'working';
      text = `Generating…${last ? ` (last took ${last})` : ''}`;
    } else if (state.error) {
      stateName = 'error';
      text = state.error;
    } else if (!state.ready) {
      text = 'Loading…';
    } else if (last) {
      stateName = 'ok';
      text = `Done in ${last}${state.lastSeed != null ? ` · seed ${state.lastSeed}` : ''}`;
    }
    el.dataset.state = stateName;
    $('#status-text').textContent = text;
    el.title = text;
    spin(stateName === 'working');
  }

  // The spinner turns in eighths, 8 times a second, from a timer rather than a CSS
  // animation: a browser without GPU compositing redraws a CSS animation at 60 frames a
  // second, and the page often shares a 2-core machine with the model. Headless Chromium
  // here, 5 s of spinning: 0.4-0.7 s of CPU with the CSS animation, 0.3-0.4 s with
  // steps(8), 0.2 s with this timer, 0.05-0.2 s with none.
  let spinTimer = null;
  let spinAngle = 0;
  function spin(on) {
    const el = $('#status .spinner');
    if (on && spinTimer === null) {
      spinTimer = setInterval(() => {
        spinAngle = (spinAngle + 45) % 360;
        el.style.transform = `rotate(${spinAngle}deg)`;
      }, 125);
    } else if (!on && spinTimer !== null) {
      clearInterval(spinTimer);
      spinTimer = null;
    }
  }

  function showError(message) {
    state.error = message;
    renderStatus();
  }

  // The server answers errors as JSON {"error": "..."}; fall back to the status text.
  async function errorMessage(res) {
    let detail = '';
    try {
      const body = await res.text();
      try {
        detail = JSON.parse(body).error || body;
      } catch {
        detail = body;
      }
    } catch {
      /* no body */
    }
    return `Error ${res.status}: ${(detail || res.statusText || 'request failed').trim()}`;
  }

  async function getJSON(url) {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`${url}: ${await errorMessage(res)}`);
    return res.json();
  }

  // ---------------------------------------------------------------- drawing the map

  let image = null; // ImageData of the map, W x H
  let renderQueued = false;

  function hexToRgb(hex) {
    const m = /^#?([0-9a-f]{6})$/i.exec(hex || '');
    if (!m) return UNKNOWN;
    const v = parseInt(m[1], 16);
    return [v >> 16, (v >> 8) & 255, v & 255];
  }

  function buildLut() {
    for (let v = 0; v < 256; v++) state.lut.set(UNKNOWN, v * 3);
    for (const c of state.classes) state.lut.set(hexToRgb(c.color), c.id * 3);
  }

  function render() {
    renderQueued = false;
    const { width: w, labels, lut, ignore } = state;
    const px = image.data;
    for (let i = 0, o = 0; i < labels.length; i++, o += 4) {
      const v = labels[i];
      if (v === ignore) {
        const x = i % w;
        const y = (i - x) / w;
        const c = CHECKER[((x >> 3) + (y >> 3)) & 1];
        px[o] = c[0];
        px[o + 1] = c[1];
        px[o + 2] = c[2];
      } else {
        px[o] = lut[v * 3];
        px[o + 1] = lut[v * 3 + 1];
        px[o + 2] = lut[v * 3 + 2];
      }
      px[o + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
  }

  // Many dabs per frame during a stroke: draw once per animation frame.
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(render);
  }

  // ---------------------------------------------------------------- undo / redo

  function updateUndoButtons() {
    $('#undo').disabled = state.undo.length === 0;
    $('#redo').disabled = state.redo.length === 0;
  }

  function pushUndo(previous) {
    state.undo.push(previous);
    if (state.undo.length > UNDO_LIMIT) state.undo.shift();
    state.redo = [];
    updateUndoButtons();
  }

  function sameLabels(a, b) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  // Replace the whole map as one undoable edit; returns whether anything changed.
  function commit(labels) {
    if (sameLabels(labels, state.labels)) return false;
    pushUndo(state.labels);
    state.labels = labels;
    scheduleRender();
    return true;
  }

  // Undo and redo move the current map between the two stacks, in opposite directions.
  function travel(from, to) {
    if (!from.length) return;
    to.push(state.labels);
    state.labels = from.pop();
    updateUndoButtons();
    scheduleRender();
    scheduleGenerate();
  }
  function undo() { travel(state.undo, state.redo); }
  function redo() { travel(state.redo, state.undo); }

  // ---------------------------------------------------------------- tools

  function setTool(tool) {
    state.tool = tool;
    for (const b of document.querySelectorAll('.tool')) {
      b.classList.toggle('active', b.dataset.tool === tool);
      b.setAttribute('aria-pressed', b.dataset.tool === tool);
    }
    canvas.dataset.tool = tool;
  }

  function selectClass(id) {
    state.classId = id;
    for (const s of document.querySelectorAll('.swatch')) {
      s.classList.toggle('active', Number(s.dataset.id) === id);
      s.setAttribute('aria-pressed', Number(s.dataset.id) === id);
    }
    if (state.tool === 'eraser') setTool('brush'); // picking a colour means painting with it
  }

  function setBrushSize(size) {
    state.brushSize = Math.max(1, Math.min(48, Math.round(size)));
    $('#brush-size').value = state.brushSize;
    $('#brush-size-value').textContent = state.brushSize;
  }

  // A round dab of the brush's diameter centred on the pixel under (x, y).
  function dab(x, y, value) {
    const { width: w, height: h, labels } = state;
    const cx = Math.floor(x);
    const cy = Math.floor(y);
    const r = state.brushSize / 2;
    const reach = Math.ceil(r);
    let changed = false;
    for (let dy = -reach; dy <= reach; dy++) {
      const py = cy + dy;
      if (py < 0 || py >= h) continue;
      for (let dx = -reach; dx <= reach; dx++) {
        const px = cx + dx;
        if (px < 0 || px >= w || dx * dx + dy * dy > r * r) continue;
        const i = py * w + px;
        if (labels[i] !== value) {
          labels[i] = value;
          changed = true;
        }
      }
    }
    return changed;
  }

  // Dabs every quarter brush (at least every pixel) from a to b, so that a fast
  // stroke, whose pointer events are far apart, still paints a continuous line.
  function line(ax, ay, bx, by, value) {
    const spacing = Math.max(1, state.brushSize / 4);
    const steps = Math.max(1, Math.ceil(Math.hypot(bx - ax, by - ay) / spacing));
    let changed = false;
    for (let s = 1; s <= steps; s++) {
      const t = s / steps;
      if (dab(ax + (bx - ax) * t, ay + (by - ay) * t, value)) changed = true;
    }
    return changed;
  }

  // 4-connected flood fill of the region of equal labels under (x, y).
  function floodFill(x, y, value) {
    const { width: w, height: h } = state;
    const labels = state.labels.slice();
    const start = Math.floor(y) * w + Math.floor(x);
    const target = labels[start];
    if (target === value) return null;
    const stack = new Int32Array(w * h);
    let top = 0;
    stack[top++] = start;
    labels[start] = value;
    while (top > 0) {
      const i = stack[--top];
      const px = i % w;
      // Each pixel is pushed once: it is relabelled when pushed.
      if (px > 0 && labels[i - 1] === target) { labels[i - 1] = value; stack[top++] = i - 1; }
      if (px < w - 1 && labels[i + 1] === target) { labels[i + 1] = value; stack[top++] = i + 1; }
      if (i >= w && labels[i - w] === target) { labels[i - w] = value; stack[top++] = i - w; }
      if (i < w * (h - 1) && labels[i + w] === target) { labels[i + w] = value; stack[top++] = i + w; }
    }
    return labels;
  }

  // ---------------------------------------------------------------- pointer input
  // Pointer Events cover mouse, pen and touch alike; one pointer paints at a time
  // (a second finger is ignored rather than drawing a line between the two).

  let stroke = null; // {pointerId, x, y, before, changed}

  function toMap(e) {
    const r = canvas.getBoundingClientRect();
    return {
      x: Math.min(state.width - 1e-3, Math.max(0, ((e.clientX - r.left) * state.width) / r.width)),
      y: Math.min(state.height - 1e-3, Math.max(0, ((e.clientY - r.top) * state.height) / r.height)),
    };
  }

  function paintValue() {
    return state.tool === 'eraser' ? state.ignore : state.classId;
  }

  function onPointerDown(e) {
    if (!state.ready || stroke || (e.pointerType === 'mouse' && e.button !== 0)) return;
    e.preventDefault();
    const p = toMap(e);
    if (state.tool === 'fill') {
      const filled = floodFill(p.x, p.y, state.classId);
      if (filled && commit(filled)) scheduleGenerate(STROKE_END_MS);
      return;
    }
    canvas.setPointerCapture(e.pointerId);
    // No generation in the middle of a stroke: a pending one waits for its end.
    const resume = state.timer !== null;
    clearTimeout(state.timer);
    state.timer = null;
    stroke = { pointerId: e.pointerId, x: p.x, y: p.y, before: state.labels.slice(), changed: false, resume };
    stroke.changed = dab(p.x, p.y, paintValue());
    scheduleRender();
  }

  function onPointerMove(e) {
    if (!stroke || e.pointerId !== stroke.pointerId) return;
    // Coalesced events are the points the browser merged into this one event.
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) {
      const p = toMap(ev);
      if (line(stroke.x, stroke.y, p.x, p.y, paintValue())) stroke.changed = true;
      stroke.x = p.x;
      stroke.y = p.y;
    }
    scheduleRender();
  }

  function onPointerEnd(e) {
    if (!stroke || e.pointerId !== stroke.pointerId) return;
    const { before, changed, resume } = stroke;
    stroke = null;
    if (changed) pushUndo(before);
    if (changed || resume) scheduleGenerate(STROKE_END_MS);
  }

  // ---------------------------------------------------------------- label map files

  function decodeBase64(text) {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  // The server reads a label PNG exactly as `iidm generate` does (palette PNGs give
  // their indices, which a canvas cannot) and resizes it to the model's size.
  async function decodeLabelMap(blob, name) {
    const form = new FormData();
    form.append('mask', blob, name || 'mask.png');
    const res = await fetch('/api/label-map', { method: 'POST', body: form });
    if (!res.ok) throw new Error(await errorMessage(res));
    const json = await res.json();
    const labels = decodeBase64(json.labels);
    if (json.width !== state.width || json.height !== state.height || labels.length !== state.width * state.height) {
      throw new Error(`The server sent a ${json.width}x${json.height} map, expected ${state.width}x${state.height}`);
    }
    return labels;
  }

  // A grey PNG of class ids: R = G = B = id, A = 255 (opaque, so no premultiplication
  // can change a value); the server and `iidm generate` read it as grey.
  function labelsToPng(labels) {
    const c = document.createElement('canvas');
    c.width = state.width;
    c.height = state.height;
    const g = c.getContext('2d');
    const img = g.createImageData(state.width, state.height);
    for (let i = 0, o = 0; i < labels.length; i++, o += 4) {
      img.data[o] = img.data[o + 1] = img.data[o + 2] = labels[i];
      img.data[o + 3] = 255;
    }
    g.putImageData(img, 0, 0);
    return new Promise((resolve, reject) =>
      c.toBlob((b) => (b ? resolve(b) : reject(new Error('Could not encode the label map'))), 'image/png'));
  }

  function saveBlob(blob, filename) {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = filename;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  // A small coloured picture of a label map for the example buttons.
  function thumbnail(labels) {
    const c = document.createElement('canvas');
    c.width = state.width;
    c.height = state.height;
    const g = c.getContext('2d');
    const img = g.createImageData(state.width, state.height);
    for (let i = 0, o = 0; i < labels.length; i++, o += 4) {
      const v = labels[i];
      const rgb = v === state.ignore ? CHECKER[0] : state.lut.subarray(v * 3, v * 3 + 3);
      img.data.set(rgb, o);
      img.data[o + 3] = 255;
    }
    g.putImageData(img, 0, 0);
    return c;
  }

  async function loadMask(mask, button) {
    try {
      if (!mask.labels) mask.labels = await decodeLabelMap(await (await fetch(mask.url)).blob(), `${mask.name}.png`);
      if (button && !button.firstChild) button.append(thumbnail(mask.labels));
      return mask.labels;
    } catch (err) {
      showError(`Example map ${mask.name}: ${err.message}`);
      return null;
    }
  }

  // ---------------------------------------------------------------- style reference

  function setStyle(style) {
    state.style = style;
    stylePreview.classList.remove('broken');
    stylePreview.src = style.url;
    stylePreview.dataset.name = style.name;
    stylePreview.title = `Style: ${style.name}`;
    for (const b of document.querySelectorAll('.style-thumb')) b.classList.toggle('active', b.dataset.name === style.name && !!style.bundled);
  }

  async function chooseBundledStyle(style) {
    try {
      if (!style.blob) {
        const res = await fetch(style.url);
        if (!res.ok) throw new Error(await errorMessage(res));
        style.blob = await res.blob();
      }
      setStyle({ name: style.name, url: style.url, blob: style.blob, bundled: true });
      return true;
    } catch (err) {
      showError(`Style ${style.name}: ${err.message}`);
      return false;
    }
  }

  // ---------------------------------------------------------------- generation

  function scheduleGenerate(delay = DEBOUNCE_MS) {
    clearTimeout(state.timer);
    state.timer = setTimeout(generate, delay);
  }

  function settingsFields(form) {
    const seed = $('#seed').value.trim();
    if (/^\d+$/.test(seed)) form.append('seed', seed);
    const preset = $('#preset').value;
    if (preset) form.append('preset', preset);
    const steps = $('#steps').value.trim();
    if (steps) form.append('steps', steps);
    const guidance = $('#guidance').value.trim();
    if (guidance) form.append('guidance', guidance);
  }

  async function generate() {
    clearTimeout(state.timer);
    state.timer = null;
    if (!state.ready) return;
    if (!state.style) {
      showError('Choose a style reference first.');
      return;
    }
    const seq = ++state.seq;
    const labels = state.labels.slice();
    const style = state.style;
    const form = new FormData();
    form.append('mask', await labelsToPng(labels), 'mask.png');
    form.append('style', style.blob, style.name);
    settingsFields(form);
    form.append('client', clientId);

    state.pending++;
    renderStatus();
    const started = performance.now();
    let res;
    try {
      res = await fetch('/api/generate', { method: 'POST', body: form });
    } catch (err) {
      state.pending--;
      if (seq > state.outcomeSeq) {
        state.outcomeSeq = seq;
        state.error = `Cannot reach the server: ${err.message}`;
      }
      renderStatus();
      return;
    }
    // 409: a newer request of this page replaced this one (queued or running). Expected
    // while editing quickly, so it is not an error; the newer one will answer.
    if (res.status === 409) {
      state.pending--;
      renderStatus();
      return;
    }
    if (!res.ok) {
      const message = await errorMessage(res);
      state.pending--;
      if (res.status === 503 && seq === state.seq) {
        // Queue full (other users): try again unless a newer edit comes first.
        state.error = `Server busy (queue full), retrying…`;
        setTimeout(() => seq === state.seq && !state.timer && generate(), BUSY_RETRY_MS);
      } else if (seq > state.outcomeSeq) {
        state.outcomeSeq = seq;
        state.error = message;
      }
      renderStatus();
      return;
    }
    let blob;
    try {
      blob = await res.blob();
    } catch (err) {
      blob = null;
    }
    state.pending--;
    // Results can overtake each other; never show an older one over a newer outcome.
    if (blob && seq > state.outcomeSeq) {
      state.outcomeSeq = seq;
      state.error = null;
      const serverMs = Number(res.headers.get('X-Generation-Ms')) || null; // the model's time, without queueing
      state.lastMs = serverMs ?? Math.round(performance.now() - started);
      state.lastSeed = res.headers.get('X-Seed');
      const entry = { seq, blob, url: URL.createObjectURL(blob), labels, style, seed: state.lastSeed, ms: state.lastMs, serverMs };
      addHistory(entry);
      showResult(entry);
    } else if (!blob && seq > state.outcomeSeq) {
      state.outcomeSeq = seq;
      state.error = 'The connection broke while receiving the image.';
    }
    renderStatus();
  }

  function showResult(entry) {
    state.result = entry;
    resultImage.src = entry.url;
    resultImage.dataset.seq = entry.seq;
    resultImage.title = `seed ${entry.seed ?? '?'} · ${entry.ms} ms`;
    resultImage.hidden = false;
    $('#result-placeholder').hidden = true;
    $('#download-image').disabled = false;
    for (const item of document.querySelectorAll('#history .item')) item.classList.toggle('active', Number(item.dataset.seq) === entry.seq);
  }

  // ---------------------------------------------------------------- history strip
  // Oldest on the left, newest on the right (scrolled into view).

  function addHistory(entry) {
    state.history.push(entry);
    const item = document.createElement('button');
    item.className = 'item';
    item.dataset.seq = entry.seq;
    item.title = `Result ${entry.seq}: ${entry.style.name}, seed ${entry.seed ?? '?'}, ${entry.ms} ms. Click to restore its map and style.`;
    const img = document.createElement('img');
    img.src = entry.url;
    img.alt = `Result ${entry.seq}`;
    const label = document.createElement('small');
    label.textContent = entry.seq;
    item.append(img, label);
    item.addEventListener('click', () => restore(entry));
    const strip = $('#history');
    strip.append(item);
    while (state.history.length > HISTORY_LIMIT) {
      const old = state.history.shift();
      strip.querySelector(`.item[data-seq="${old.seq}"]`)?.remove();
      if (old !== state.result) URL.revokeObjectURL(old.url);
    }
    strip.scrollLeft = strip.scrollWidth;
  }

  // Show an earlier result again with the map, style and seed that made it; no new
  // generation is needed, and answers still on their way must not replace it.
  function restore(entry) {
    clearTimeout(state.timer);
    state.timer = null;
    state.outcomeSeq = state.seq;
    commit(entry.labels.slice());
    setStyle(entry.style);
    if (entry.seed != null) $('#seed').value = entry.seed;
    state.error = null;
    state.lastMs = entry.ms;
    state.lastSeed = entry.seed;
    showResult(entry);
    renderStatus();
  }

  // ---------------------------------------------------------------- building the UI

  function buildPalette() {
    const palette = $('#palette');
    palette.replaceChildren();
    for (const c of state.classes) {
      const b = document.createElement('button');
      b.className = 'swatch';
      b.dataset.id = c.id;
      b.title = `${c.name} (class ${c.id})`;
      const chip = document.createElement('i');
      chip.style.background = c.color;
      const name = document.createElement('span');
      name.textContent = c.name;
      b.append(chip, name);
      b.addEventListener('click', () => selectClass(c.id));
      palette.append(b);
    }
  }

  function buildStyles() {
    const box = $('#styles');
    for (const s of state.styles) {
      const b = document.createElement('button');
      b.className = 'style-thumb';
      b.dataset.name = s.name;
      b.title = `Style: ${s.name}`;
      const img = document.createElement('img');
      img.src = s.url;
      img.alt = s.name;
      b.append(img);
      b.addEventListener('click', async () => {
        if (await chooseBundledStyle(s)) scheduleGenerate();
      });
      box.append(b);
    }
  }

  function buildMasks() {
    const box = $('#masks');
    const buttons = [];
    for (const m of state.masks) {
      const b = document.createElement('button');
      b.className = 'mask-thumb';
      b.dataset.name = m.name;
      b.title = `Example map: ${m.name}`;
      b.addEventListener('click', async () => {
        const labels = await loadMask(m, b);
        if (labels && commit(labels.slice())) scheduleGenerate();
      });
      box.append(b);
      buttons.push(b);
    }
    return buttons;
  }

  // Scale the map and the result to the largest size that fits their panels.
  function fitStages() {
    for (const [stage, el] of [[canvas.parentElement, canvas], [resultImage.parentElement, resultImage]]) {
      const scale = Math.min(stage.clientWidth / state.width, stage.clientHeight / state.height);
      if (!(scale > 0)) continue;
      el.style.width = `${Math.floor(state.width * scale)}px`;
      el.style.height = `${Math.floor(state.height * scale)}px`;
    }
  }

  // Fields keep their own keys (typing, a number field's undo); the size slider does not need them.
  function isTyping(target) {
    if (target instanceof HTMLInputElement) return target.type !== 'range';
    return target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement;
  }

  function onKeyDown(e) {
    if (isTyping(e.target)) return;
    const key = e.key.toLowerCase();
    if (e.ctrlKey || e.metaKey) {
      if (key === 'z' && !e.shiftKey) undo();
      else if ((key === 'z' && e.shiftKey) || key === 'y') redo();
      else return;
      e.preventDefault();
      return;
    }
    if (e.altKey) return;
    if (key === 'b') setTool('brush');
    else if (key === 'e') setTool('eraser');
    else if (key === 'f') setTool('fill');
    else if (key === '[') setBrushSize(state.brushSize - 2);
    else if (key === ']') setBrushSize(state.brushSize + 2);
    else if (key === 'g') generate();
  }

  function bindControls() {
    canvas.addEventListener('pointerdown', onPointerDown);
    canvas.addEventListener('pointermove', onPointerMove);
    canvas.addEventListener('pointerup', onPointerEnd);
    canvas.addEventListener('pointercancel', onPointerEnd);
    canvas.addEventListener('lostpointercapture', onPointerEnd);
    canvas.addEventListener('contextmenu', (e) => e.preventDefault());

    for (const b of document.querySelectorAll('.tool')) b.addEventListener('click', () => setTool(b.dataset.tool));
    $('#brush-size').addEventListener('input', (e) => setBrushSize(Number(e.target.value)));
    $('#undo').addEventListener('click', undo);
    $('#redo').addEventListener('click', redo);
    $('#clear').addEventListener('click', () => {
      if (commit(new Uint8Array(state.width * state.height).fill(state.ignore))) scheduleGenerate();
    });
    document.addEventListener('keydown', onKeyDown);

    $('#mask-upload').addEventListener('change', async (e) => {
      const file = e.target.files[0];
      e.target.value = ''; // choosing the same file again still fires 'change'
      if (!file) return;
      try {
        if (commit(await decodeLabelMap(file, file.name))) scheduleGenerate();
        state.error = null;
        renderStatus();
      } catch (err) {
        showError(`Label map ${file.name}: ${err.message}`);
      }
    });
    $('#style-upload').addEventListener('change', (e) => {
      const file = e.target.files[0];
      e.target.value = '';
      if (!file) return;
      // Not checked here: the server decodes it and names the problem if it cannot.
      setStyle({ name: file.name, url: URL.createObjectURL(file), blob: file });
      scheduleGenerate();
    });
    stylePreview.addEventListener('error', () => stylePreview.classList.add('broken'));

    $('#generate').addEventListener('click', generate);
    $('#new-seed').addEventListener('click', () => {
      $('#seed').value = randomSeed();
      generate();
    });
    for (const id of ['#seed', '#preset', '#steps', '#guidance']) $(id).addEventListener('change', () => scheduleGenerate());
    $('#download-labels').addEventListener('click', async () => saveBlob(await labelsToPng(state.labels), 'labels.png'));
    $('#download-image').addEventListener('click', () => {
      if (state.result) saveBlob(state.result.blob, `iidm-${state.result.seed ?? state.result.seq}.png`);
    });

    const observer = new ResizeObserver(fitStages);
    observer.observe(canvas.parentElement);
    observer.observe(resultImage.parentElement);
  }

  function randomSeed() {
    return crypto.getRandomValues(new Uint32Array(1))[0] % 1000000;
  }

  async function init() {
    bindControls();
    renderStatus();
    let health, classes, styles, masks;
    try {
      [health, classes, styles, masks] = await Promise.all(
        ['/api/health', '/api/classes', '/api/styles', '/api/masks'].map(getJSON));
    } catch (err) {
      showError(`Cannot load the editor from the server: ${err.message}`);
      return;
    }
    state.width = health.width;
    state.height = health.height;
    state.ignore = classes.ignore_label ?? health.ignore_label ?? 255;
    state.classes = classes.classes;
    state.styles = styles.styles;
    state.masks = masks.masks;
    canvas.width = state.width;
    canvas.height = state.height;
    document.documentElement.style.setProperty('--aspect', `${state.width} / ${state.height}`);
    image = ctx.createImageData(state.width, state.height);
    state.labels = new Uint8Array(state.width * state.height).fill(state.ignore);
    buildLut();
    buildPalette();
    selectClass(state.classes[0]?.id ?? 0);
    setTool('brush');
    setBrushSize(state.brushSize);
    for (const p of health.presets || []) $('#preset').append(new Option(p, p, false, p === health.preset));
    $('#seed').value = randomSeed(); // a fixed seed: edits change the layout, not the noise
    buildStyles();
    const maskButtons = buildMasks();
    fitStages();

    // Start from the first bundled example map (and style), so that the first
    // result is meaningful; Clear gives the empty start of a sparse layout.
    const [maps] = await Promise.all([
      Promise.all(maskButtons.map((b, i) => loadMask(state.masks[i], b))),
      state.styles[0] ? chooseBundledStyle(state.styles[0]) : null,
    ]);
    if (maps[0]) state.labels = maps[0].slice();
    render();
    state.ready = true;
    renderStatus();
  }

  // For tests and the console: read-only views of the editor's state.
  window.iidmEditor = {
    get ready() { return state.ready; },
    get width() { return state.width; },
    get height() { return state.height; },
    labels: () => state.labels.slice(),
    idle: () => state.pending === 0 && state.timer === null,
    lastRequest: () => state.seq,
    shownResult: () => (state.result ? state.result.seq : 0),
    resultStyle: () => (state.result ? state.result.style.name : null),
    // The server's own time for the shown result (X-Generation-Ms), null if it sent none.
    resultServerMs: () => (state.result ? state.result.serverMs : null),
    clientId,
  };

  init();
})();
