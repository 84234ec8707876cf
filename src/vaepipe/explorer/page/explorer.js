// The latent-space explorer: the run's exported encoder and decoder, run in the page.
// Everything is read from files beside this one (run.json, images.bin, mu.bin, and the
// model: weights.bin for the notes' MLP, which the page runs itself, or encoder.onnx and
// decoder.onnx with onnxruntime-web for any other architecture); nothing is fetched from
// anywhere else. window.explorer is what the tests drive.
"use strict";
(() => {
  let SIDE, CHANNELS, PLANE, PIXELS;  // the images' side and channels (run.json): 28 and 1 for MNIST
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const colorOf = (label) => (label < 0 ? "#555" : COLORS[label % COLORS.length]);  // −1: unlabelled
  const ex = (window.explorer = { ready: null, z: null, drawn: null, drawnMu: null });
  const $ = (id) => document.getElementById(id);
  // an element holding `children` (text or elements): no string is ever parsed as HTML
  const element = (tag, ...children) => { const node = document.createElement(tag); node.append(...children); return node; };

  // --- the model: y = W x + b with W stored [out, in], as the ONNX Gemm's B (transB = 1)
  let run, layers, images, mus;

  // a layer, then the run's activation (ReLU or tanh) unless it is the last
  function linear([W, b], x, activate) {
    const n = x.length, y = new Float64Array(b.length), tanh = run.activation === "tanh";
    for (let o = 0; o < b.length; o++) {
      let s = b[o];
      for (let i = 0, row = o * n; i < n; i++) s += W[row + i] * x[i];
      y[o] = !activate ? s : tanh ? Math.tanh(s) : s < 0 ? 0 : s;
    }
    return y;
  }
  const through = (net, x) => net.reduce((h, layer, i) => linear(layer, h, i < net.length - 1), x);

  // the mean of p(x|z), as the figures draw it: sigmoid(l), or the continuous Bernoulli's
  // 1/(1 − e^−l) − 1/l with its series near l = 0 (vaepipe.model.loss.decoded_mean)
  function mean(l) {
    if (run.likelihood !== "continuous-bernoulli" && run.likelihood !== "discretized") return 1 / (1 + Math.exp(-l));
    if (Math.abs(l) < 0.5) return 0.5 + l / 12 - l ** 3 / 720 + l ** 5 / 30240;
    return 1 / (1 - Math.exp(-l)) - 1 / l;
  }

  ex.decode = (z) => through(layers.decoder, z).map(mean);
  ex.encode = (x) => {
    const out = through(layers.encoder, x);
    return { mu: out.slice(0, run.d), logvar: out.slice(run.d) };
  };

  // any other architecture: its ONNX files in onnxruntime-web (copied beside the page), one
  // run at a time; decode and encode then answer promises, which `then` below waits for
  async function useRuntime() {
    await new Promise((loaded, failed) => {
      const script = Object.assign(document.createElement("script"), { src: "ort.wasm.min.js" });
      script.onload = loaded;
      script.onerror = () => failed(new Error("ort.wasm.min.js could not be loaded"));
      document.head.append(script);
    });
    Object.assign(ort.env.wasm, { numThreads: 1, wasmPaths: new URL("./", location.href).href });
    const [encoder, decoder] = await Promise.all(["encoder.onnx", "decoder.onnx"].map((name) => ort.InferenceSession.create(name)));
    let queue = Promise.resolve();
    const infer = (session, name, values) => {
      const result = queue.then(() => session.run({ [name]: new ort.Tensor("float32", Float32Array.from(values), [1, values.length]) }));
      queue = result.catch(() => {});
      return result;
    };
    ex.decode = (z) => infer(decoder, "z", z).then((out) => Float64Array.from(out.x_mean.data));
    ex.encode = (x) => infer(encoder, "x", x).then((out) => ({ mu: Float64Array.from(out.mu.data), logvar: Float64Array.from(out.logvar.data) }));
  }
  const then = (value, use) => (value instanceof Promise ? value.then(use) : use(value));

  // --- drawing images: grey, or colour as the red plane, then green, then blue; as 0…255
  function paint(canvas, pixels, x0 = 0, y0 = 0) {
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(SIDE, SIDE);
    for (let i = 0; i < PLANE; i++) {
      for (let c = 0; c < 3; c++)
        img.data[4 * i + c] = Math.round(Math.min(1, Math.max(0, pixels[(CHANNELS === 1 ? 0 : c) * PLANE + i])) * 255);
      img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, x0, y0);
  }
  const testImage = (i) => Float64Array.from(images.subarray(i * PIXELS, (i + 1) * PIXELS), (v) => v / 255);
  const testMu = (i) => Float64Array.from(mus.subarray(i * run.d, (i + 1) * run.d));

  // --- the current z, its sliders and its picture
  const sliders = [];
  function redraw() {
    const start = performance.now();
    return then(ex.decode(ex.z), (pixels) => { paint($("out"), pixels); ex.lastDrawMs = performance.now() - start; });
  }
  function setZ(z) {
    ex.z = Float64Array.from(z);
    for (const { dim, input, value } of sliders) {
      input.value = ex.z[dim];
      value.textContent = ex.z[dim].toFixed(2);
    }
    return redraw();
  }
  function buildSliders() {
    for (const { dim, kl, active } of run.dims) {
      const label = document.createElement("label");
      label.className = active ? "" : "inactive";
      label.title = `KL ${kl.toFixed(3)} nats per image${active ? "" : " (inactive: its μ hardly varies)"}`;
      label.append(element("span", `z${dim} · ${kl.toFixed(2)}${active ? "" : " ∅"}`));
      const input = Object.assign(document.createElement("input"), { type: "range", min: -4, max: 4, step: 0.01, value: 0 });
      input.dataset.dim = dim;
      const value = document.createElement("span");
      input.addEventListener("input", () => {
        ex.z[dim] = Number(input.value);
        value.textContent = ex.z[dim].toFixed(2);
        redraw();
      });
      label.append(input, value);
      $("sliders").append(label);
      sliders.push({ dim, input, value });
    }
  }

  // --- the map
  let toCanvas;
  function drawMap(marked = []) {
    const canvas = $("map"), ctx = canvas.getContext("2d"), xy = run.map.xy;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    xy.forEach(([x, y], i) => {
      const [cx, cy] = toCanvas(x, y);
      ctx.fillStyle = colorOf(run.map.labels[i]);
      ctx.fillRect(cx - 2, cy - 2, 4, 4);
    });
    if (marked.length) {
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 2;
      let sx = 0, sy = 0;
      for (const i of marked) {
        const [cx, cy] = toCanvas(...xy[i]);
        sx += cx / marked.length;
        sy += cy / marked.length;
        ctx.beginPath(); ctx.arc(cx, cy, 6, 0, 2 * Math.PI); ctx.stroke();
      }
      ctx.beginPath(); ctx.moveTo(sx - 10, sy); ctx.lineTo(sx + 10, sy); ctx.moveTo(sx, sy - 10); ctx.lineTo(sx, sy + 10); ctx.stroke();
    }
  }
  function setUpMap() {
    const xs = run.map.xy.map((p) => p[0]), ys = run.map.xy.map((p) => p[1]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const size = $("map").width, pad = 10, scale = (size - 2 * pad) / Math.max(x1 - x0, y1 - y0, 1e-9);
    toCanvas = (x, y) => [pad + (x - x0) * scale, size - pad - (y - y0) * scale];
    ex.pointPosition = (i) => toCanvas(...run.map.xy[i]);  // canvas pixels, for the tests
    $("mapkind").textContent = run.d === 2 ? "(μ itself: d = 2)" : `(${run.params["project.method"] ?? "projection"} of epoch ${run.map.epoch})`;
    // class names are the user's folder names: text nodes, never markup
    $("legend").replaceChildren(...run.classes.slice(0, 20).flatMap((name, k) => {
      const swatch = element("span");
      swatch.style.background = colorOf(k);
      return [swatch, document.createTextNode(`${name} `)];
    }));
    const nearest = (event) => {
      const rect = $("map").getBoundingClientRect();
      const mx = ((event.clientX - rect.left) * $("map").width) / rect.width, my = ((event.clientY - rect.top) * $("map").height) / rect.height;
      let best = -1, bestDist = 64;
      run.map.xy.forEach((p, i) => {
        const [cx, cy] = toCanvas(...p), dist = (cx - mx) ** 2 + (cy - my) ** 2;
        if (dist < bestDist) [best, bestDist] = [i, dist];
      });
      return best;
    };
    const show = (i) => {
      paint($("picked"), testImage(i));
      $("pickedLabel").textContent = `test image ${i}` + (run.classes.length ? `, label ${run.classes[run.map.labels[i]]}` : "");
      ex.picked = i;
      return then(ex.decode(testMu(i)), (pixels) => paint($("pickedRecon"), pixels));
    };
    $("map").addEventListener("mousemove", (event) => { const i = nearest(event); if (i >= 0) show(i); });
    $("map").addEventListener("click", (event) => {
      const i = nearest(event);
      if (i >= 0) { show(i); setZ(testMu(i)); }
    });
    drawMap();
    return show;
  }

  // --- draw a digit: a soft round brush on the 28 × 28 grid
  function setUpDrawing() {
    const canvas = $("draw");
    let down = false;
    const brush = (event) => {
      const rect = canvas.getBoundingClientRect();
      const fx = ((event.clientX - rect.left) / rect.width) * SIDE - 0.5, fy = ((event.clientY - rect.top) / rect.height) * SIDE - 0.5;
      for (let y = Math.floor(fy - 2); y <= Math.ceil(fy + 2); y++)
        for (let x = Math.floor(fx - 2); x <= Math.ceil(fx + 2); x++) {
          if (x < 0 || y < 0 || x >= SIDE || y >= SIDE) continue;
          const ink = Math.min(1, Math.max(0, 1.6 - Math.hypot(x - fx, y - fy)));
          ex.drawn[y * SIDE + x] = Math.max(ex.drawn[y * SIDE + x], ink);
        }
      paint(canvas, ex.drawn);
    };
    const encodeDrawn = () => then(ex.encode(ex.drawn), ({ mu }) => {
      ex.drawnMu = mu;
      setZ(mu);
      const dist = run.map.xy.map((_, i) => { let s = 0; for (let u = 0; u < run.d; u++) s += (mus[i * run.d + u] - mu[u]) ** 2; return [s, i]; });
      ex.nearest = dist.sort((a, b) => a[0] - b[0]).slice(0, 5).map((p) => p[1]);
      drawMap(ex.nearest);
      $("drawnNote").textContent = run.classes.length ? `nearest test means: labels ${ex.nearest.map((i) => run.classes[run.map.labels[i]]).join(", ")}` : "";
    });
    if (CHANNELS > 1) return setUpPicture(canvas, encodeDrawn);
    canvas.addEventListener("pointerdown", (event) => { down = true; canvas.setPointerCapture(event.pointerId); brush(event); });
    canvas.addEventListener("pointermove", (event) => { if (down) brush(event); });
    canvas.addEventListener("pointerup", () => { if (down) { down = false; encodeDrawn(); } });
    $("clear").addEventListener("click", () => { ex.drawn.fill(0); paint(canvas, ex.drawn); drawMap(); });
    paint(canvas, ex.drawn);
  }

  // colour: a picture chosen or dropped instead of a stroke, its centred square scaled to
  // side × side in the page, encoded, its reconstruction shown and its neighbours marked
  function setUpPicture(canvas, encodeDrawn) {
    $("drawTitle").textContent = "Encode a picture";
    $("pictureRow").hidden = false;
    $("clear").hidden = true;
    ex.usePicture = async (blob) => {
      const bitmap = await createImageBitmap(blob), edge = Math.min(bitmap.width, bitmap.height);
      const small = Object.assign(document.createElement("canvas"), { width: SIDE, height: SIDE }).getContext("2d");
      small.drawImage(bitmap, (bitmap.width - edge) / 2, (bitmap.height - edge) / 2, edge, edge, 0, 0, SIDE, SIDE);
      const rgba = small.getImageData(0, 0, SIDE, SIDE).data;
      for (let i = 0; i < PLANE; i++) for (let c = 0; c < 3; c++) ex.drawn[c * PLANE + i] = rgba[4 * i + c] / 255;
      paint(canvas, ex.drawn);
      await encodeDrawn();
      await then(ex.decode(ex.drawnMu), (pixels) => { ex.drawnRecon = pixels; paint($("drawnRecon"), pixels); });
    };
    $("picture").addEventListener("change", () => { if ($("picture").files.length) ex.usePicture($("picture").files[0]); });
    canvas.addEventListener("dragover", (event) => event.preventDefault());
    canvas.addEventListener("drop", (event) => {
      event.preventDefault();
      if (event.dataTransfer.files.length) ex.usePicture(event.dataTransfer.files[0]);
    });
    paint(canvas, ex.drawn);
  }

  // --- morph between two codes, and samples of the prior and of the fitted mixture
  let seed = 1;
  function uniform() {  // mulberry32: a seeded generator, so a page shows the same samples each time
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  function priorCode() { return Float64Array.from({ length: run.d }, normal); }
  function mixtureCode() {
    const { weights, means, cholesky } = run.mixture;
    let u = uniform(), k = 0;
    while (k < weights.length - 1 && (u -= weights[k]) > 0) k++;
    const eps = priorCode();
    return Float64Array.from(means[k], (m, i) => m + cholesky[k][i].reduce((s, l, j) => s + l * eps[j], 0));
  }
  function showSamples(draw, { moveZ = true } = {}) {  // moveZ: the decoded z becomes the first sample
    const codes = Array.from({ length: 8 }, draw);
    ex.samples = codes;
    if (moveZ) setZ(codes[0]);
    return Promise.all(codes.map((z, n) => then(ex.decode(z), (pixels) => paint($("samples"), pixels, (n % 4) * SIDE, Math.floor(n / 4) * SIDE))));
  }
  let codeA, codeB;
  function drawMorph() {
    for (let s = 0; s < 10; s++) {
      const t = s / 9;
      then(ex.decode(codeA.map((a, u) => (1 - t) * a + t * codeB[u])), (pixels) => paint($("morph"), pixels, s * SIDE, 0));
    }
  }
  function setUpMorph() {
    const first = (label) => Math.max(0, run.map.labels.indexOf(label));  // unlabelled: the first two images
    codeA = testMu(run.classes.length ? first(3 % run.classes.length) : 0);
    codeB = testMu(run.classes.length ? first(8 % run.classes.length) : 1);
    $("setA").addEventListener("click", () => { codeA = Float64Array.from(ex.z); drawMorph(); });
    $("setB").addEventListener("click", () => { codeB = Float64Array.from(ex.z); drawMorph(); });
    $("t").addEventListener("input", () => { const t = Number($("t").value); setZ(codeA.map((a, u) => (1 - t) * a + t * codeB[u])); });
    drawMorph();
  }

  function describeRun() {
    const p = run.params, m = run.metrics;
    const number = (v) => (typeof v === "number" && !Number.isInteger(v) ? String(Number(v.toPrecision(4))) : String(v));
    const params = Object.entries(p).map(([k, v]) => `${k}=${number(v)}`).join(" · ");
    // every value is text: a param or metric holding markup shows as written
    const metrics = Object.entries(m).flatMap(([k, v], i) => [`${i ? " · " : ""}${k} `, element("b", number(v))]);
    $("run").replaceChildren(element("div", "run: ", element("b", params)), element("div", ...metrics));
    document.title = `explorer · β=${p.beta} d=${p.d} ${p.model}`;
  }

  ex.ready = (async () => {
    const fetchOk = async (name) => { const r = await fetch(name); if (!r.ok) throw new Error(`${name}: HTTP ${r.status}`); return r; };
    const [runFile, imageFile, muFile] = await Promise.all(["run.json", "images.bin", "mu.bin"].map(fetchOk));
    run = await runFile.json();
    images = new Uint8Array(await imageFile.arrayBuffer());
    mus = new Float32Array(await muFile.arrayBuffer());
    if (run.runtime) {
      await useRuntime();
    } else {
      const weights = new Float32Array(await (await fetchOk("weights.bin")).arrayBuffer());
      let offset = 0;
      const take = (shape) => { const n = shape.reduce((a, b) => a * b, 1), t = weights.subarray(offset, offset + n); offset += n; return t; };
      layers = {};
      for (const part of ["encoder", "decoder"]) {
        const shapes = run.layers[part];
        const t = shapes.map(take);  // weight, bias, weight, bias, …
        layers[part] = t.filter((_, i) => i % 2 === 0).map((W, i) => [W, t[2 * i + 1]]);
      }
    }
    ex.run = run;
    [SIDE, CHANNELS] = [run.side, run.channels];
    [PLANE, PIXELS] = [SIDE * SIDE, CHANNELS * SIDE * SIDE];
    ex.drawn = new Float64Array(PIXELS);
    for (const [id, cols, rows] of [["out", 1, 1], ["picked", 1, 1], ["pickedRecon", 1, 1], ["draw", 1, 1], ["drawnRecon", 1, 1], ["samples", 4, 2], ["morph", 10, 1]])
      [$(id).width, $(id).height] = [cols * SIDE, rows * SIDE];
    describeRun();
    buildSliders();
    const showTest = setUpMap();
    setUpDrawing();
    setUpMorph();
    $("zero").addEventListener("click", () => setZ(new Float64Array(run.d)));
    $("prior").addEventListener("click", () => showSamples(priorCode));
    $("mixture").addEventListener("click", () => showSamples(mixtureCode));
    // the first view is never black squares: z = 0 decoded, samples of the prior, the first test image
    await Promise.all([setZ(new Float64Array(run.d)), showSamples(priorCode, { moveZ: false }), showTest(0)]);
    ex.readyMs = performance.now();
    return true;
  })().catch((error) => { $("status").textContent = `could not load the explorer's data: ${error.message}`; throw error; });
})();
