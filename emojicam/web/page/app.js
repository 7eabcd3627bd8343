// emojicam in the browser: the live emoji mirror and a GPU benchmark, on WebGPU.
//
// A frame: WebGPU copies the camera's picture (or a video file's) into a texture (copyExternalImageToTexture, a
// copy on the GPU), a render pass crops, mirrors and area-resizes it to the grid's patch resolution (cut.wgsl), a
// copy puts that into the input buffer of the frame function `emojicam web` captured from tinygrad (kernels.js:
// the cut into patches, the network, the scores, the pick with hysteresis against the previous picks, each cell's
// background), the picks become the next frame's previous picks, and a render pass (render.wgsl) draws each
// cell's tile from the atlas. JavaScript encodes and submits one command buffer a frame; nothing is read back.
// Up to IN_FLIGHT frames are on the GPU at once: the loop waits for the oldest only when that many are, so the
// CPU encodes the next frame while the GPU runs this one. GPU timestamps are read every TIMER_EVERY-th frame,
// without waiting for them.
"use strict";

const SITE = globalThis.EMOJICAM_SITE ?? {};
const VIEWS = ["emoji", "side-by-side", "original"];
const KEYS_HELP = "+/- grid  n network  m mirror  o view  r record  s snapshot  c copy text  space pause";
// what MediaRecorder is asked for, best first: WebM, with the microphone's sound where the user allows it
const RECORD_TYPES = ["video/webm;codecs=vp9,opus", "video/webm;codecs=vp8,opus", "video/webm"];
const BENCH_FRAME = [1280, 720];  // the benchmark's built-in frame
const IN_FLIGHT = 2;  // frames submitted and not yet done, at most
const TIMER_EVERY = 15;  // frames between two GPU timestamp readings
const TARGET_FPS = 24;  // the automatic choice keeps the largest grid and network that hold this (or the camera's rate)
const TRY_S = 2;  // seconds each rung of the automatic choice is measured
const SAY = {
  incomplete: "This page's files are incomplete (manifest.js, kernels.js, weights.js or atlas.js did not load): " +
    "write the site again with `emojicam web OUT_DIR` and copy the whole folder.",
  webgpu: "This browser has no WebGPU, so the emoji mirror cannot run here: open this page in Chrome or Edge " +
    "(Windows, macOS, ChromeOS), Safari 26, or Firefox on Windows.",
  insecure: "Browsers give WebGPU and the camera only to secure pages: open this page from an https:// address " +
    "or from http://127.0.0.1 (`emojicam web OUT_DIR --serve`).",
  camera: "No camera could be opened (none is connected, or this page may not use it): allow the camera for " +
    "this page and reload, or choose a video file above.",
  grids: "None of this site's grids fits this GPU's buffer and texture limits: write the site with smaller " +
    "grids (emojicam web OUT_DIR --grids 32x18).",
  gpu: "This browser has WebGPU, but it could not give this page's picture to the GPU or draw on it (its GPU " +
    "acceleration is off or blocked here): turn on hardware acceleration in the browser's settings and reload, or " +
    "open the page in another browser.",
};

class UserError extends Error {}

const dom = Object.fromEntries(["camera", "file", "bench", "status", "message", "view", "hud", "results", "about",
                                "table", "copy-json", "json", "recording", "grid-down", "grid-up", "model", "mirror",
                                "view-mode", "facing", "record", "snapshot", "copy"]
                               .map(id => [id, document.getElementById(id)]));

function show(message) {  // one sentence instead of the picture: what went wrong and what to do
  dom.message.textContent = message;
  dom.message.hidden = !message;
  if (message) dom.hud.textContent = "";
}

function status(text) { dom.status.textContent = text; }

function fail(error) {
  if (error instanceof UserError) return show(error.message);
  console.error(error);
  show(`Something failed: ${error.message}. Reload the page; if it happens again, send this sentence to the ` +
       "emojicam project.");
}

function bytesOf(base64) {
  const text = atob(base64), bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function base64Of(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

const median = values => [...values].sort((a, b) => a - b)[values.length >> 1];

// --- the GPU: device, constant buffers shared by every grid, pipelines shared by every kernel of the same source

class Gpu {
  static async open() {
    if (!navigator.gpu) throw new UserError(window.isSecureContext ? SAY.webgpu : SAY.insecure);
    const adapter = await navigator.gpu.requestAdapter({powerPreference: "high-performance"});
    if (!adapter) throw new UserError(SAY.webgpu);
    // the adapter's own limits, not WebGPU's defaults: the scores' kernel binds 8 storage buffers, big grids need
    // big buffers, and a GPU that allows more should not be refused for less
    const names = ["maxStorageBuffersPerShaderStage", "maxStorageBufferBindingSize", "maxBufferSize",
                   "maxComputeWorkgroupStorageSize",
                   "maxComputeInvocationsPerWorkgroup", "maxComputeWorkgroupSizeX", "maxComputeWorkgroupSizeY",
                   "maxComputeWorkgroupSizeZ", "maxComputeWorkgroupsPerDimension", "maxTextureDimension2D"];
    const requiredLimits = Object.fromEntries(names.map(name => [name, adapter.limits[name]]));
    const requiredFeatures = adapter.features.has("timestamp-query") ? ["timestamp-query"] : [];
    return new Gpu(adapter, await adapter.requestDevice({requiredLimits, requiredFeatures}));
  }

  constructor(adapter, device) {
    this.device = device;
    this.info = adapter.info ?? {};
    this.infinity = this.upload(new Float32Array([Infinity, 0, 0, 0]), GPUBufferUsage.UNIFORM);  // tinygrad's
    this.constants = new Map();
    this.pipelines = new Map();
    this.timer = device.features.has("timestamp-query") ? new Timer(device) : null;
    device.lost.then(lost => lost.reason !== "destroyed" &&
                     show(`The GPU stopped answering (${lost.message}): reload the page.`));
    device.addEventListener("uncapturederror", event => console.error(`WebGPU: ${event.error.message}`));
  }

  get name() {
    const i = this.info;
    return [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(" ") || "unnamed adapter";
  }

  upload(array, usage) {
    const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
    const buffer = this.device.createBuffer({size: Math.max(16, Math.ceil(bytes.length / 4) * 4), usage,
                                             mappedAtCreation: true});
    new Uint8Array(buffer.getMappedRange()).set(bytes);
    buffer.unmap();
    return buffer;
  }

  constant(key) {
    if (!this.constants.has(key)) this.constants.set(key, this.upload(bytesOf(SITE.weights[key]), GPUBufferUsage.STORAGE));
    return this.constants.get(key);
  }

  // tinygrad's WGSL binds a uniform (INFINITY) at 0 and the kernel's buffers, all read_write storage, from 1 on
  pipeline(key, buffers) {
    if (!this.pipelines.has(key)) {
      const visibility = GPUShaderStage.COMPUTE;
      const entries = [{binding: 0, visibility, buffer: {type: "uniform"}},
                       ...Array.from({length: buffers}, (_, i) => ({binding: i + 1, visibility, buffer: {type: "storage"}}))];
      const layout = this.device.createPipelineLayout({bindGroupLayouts: [this.device.createBindGroupLayout({entries})]});
      const module = this.device.createShaderModule({code: SITE.kernels[key].source, label: SITE.kernels[key].name});
      this.pipelines.set(key, this.device.createComputePipelineAsync({layout, compute: {module}}));
    }
    return this.pipelines.get(key);
  }
}

class Timer {  // GPU timestamps around the classify and draw passes of one frame in TIMER_EVERY, never waited for
  constructor(device) {
    this.querySet = device.createQuerySet({type: "timestamp", count: 4});
    this.resolved = device.createBuffer({size: 32, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC});
    this.readable = device.createBuffer({size: 32, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
    Object.assign(this, {count: 0, reading: false, ms: null});  // ms: [classify, draw] of the last frame read
  }

  // whether this frame writes timestamps: one in TIMER_EVERY, and only once the last reading is in
  due() {
    return this.count++ % TIMER_EVERY === 0 && !this.reading;
  }

  writes(pass) {
    return {querySet: this.querySet, beginningOfPassWriteIndex: 2 * pass, endOfPassWriteIndex: 2 * pass + 1};
  }

  resolve(encoder) {
    encoder.resolveQuerySet(this.querySet, 0, 4, this.resolved, 0);
    encoder.copyBufferToBuffer(this.resolved, 0, this.readable, 0, 32);
  }

  collect() {  // after the frame's submit: the reading arrives when the GPU is done with it; nobody waits for it
    this.reading = true;
    this.readable.mapAsync(GPUMapMode.READ).then(() => {
      const t = new BigUint64Array(this.readable.getMappedRange());
      this.ms = [Number(t[1] - t[0]) / 1e6, Number(t[3] - t[2]) / 1e6];
      this.readable.unmap();
    }).catch(() => {}).finally(() => { this.reading = false; });
  }
}

// --- one grid: its buffers (manifest.js), its programs' pipelines and bind groups, its input texture

class GridRun {
  constructor(gpu, spec) {
    const p = spec.patch_px;
    Object.assign(this, {gpu, spec, name: spec.name, key: keyOf(spec), model: spec.model, cols: spec.cols, rows: spec.rows, width: spec.cols * p,
                         height: spec.rows * p, first: true, prepared: false});
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.buffers = spec.buffers.map(b => b.kind === "const" ? gpu.constant(b.data)
                                         : gpu.device.createBuffer({size: Math.max(4, b.bytes), usage}));
    this.named = Object.fromEntries(spec.buffers.flatMap((b, i) => b.name ? [[b.name, this.buffers[i]]] : []));
    this.texture = gpu.device.createTexture({
      size: [this.width, this.height], format: "rgba8unorm",
      usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_SRC | GPUTextureUsage.COPY_DST |
             GPUTextureUsage.RENDER_ATTACHMENT});
    this.ready = this.prepare();
  }

  async prepare() {
    const t0 = performance.now();
    this.programs = {};
    for (const [name, dispatches] of Object.entries(this.spec.programs)) {
      this.programs[name] = await Promise.all(dispatches.map(async d => {
        const pipeline = await this.gpu.pipeline(d.kernel, d.bindings.length);
        const entries = [{binding: 0, resource: {buffer: this.gpu.infinity}},
                         ...d.bindings.map((b, i) => ({binding: i + 1, resource: {buffer: this.buffers[b]}}))];
        return {pipeline, workgroups: d.workgroups,
                group: this.gpu.device.createBindGroup({layout: pipeline.getBindGroupLayout(0), entries})};
      }));
    }
    this.prepareMs = performance.now() - t0;
    this.prepared = true;
    return this;
  }

  // why this device cannot run the grid (a sentence), or null where it fits every limit the grid meets: its
  // buffers, each dispatch's bindings, launch and work-group memory, its textures
  static unfit(spec, limits) {
    const p = spec.patch_px, tile = SITE.manifest.atlas.tile_px, mib = bytes => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
    const most = Math.max(...spec.buffers.map(b => b.bytes)), dispatches = spec.programs.pick;
    const side = Math.max(spec.cols * Math.max(p, 2 * tile), spec.rows * Math.max(p, tile));
    const threads = Math.max(...dispatches.map(d => d.threads.reduce((a, b) => a * b)));
    const checks = [
      [most, limits.maxStorageBufferBindingSize, v => `a ${mib(v)} buffer binding`, mib],
      [most, limits.maxBufferSize, v => `a ${mib(v)} buffer`, mib],
      [Math.max(...dispatches.map(d => d.bindings.length)), limits.maxStorageBuffersPerShaderStage, v => `${v} storage buffers in one kernel`, String],
      [Math.max(...dispatches.map(d => d.workgroup_bytes ?? 0)), limits.maxComputeWorkgroupStorageSize, v => `${v} bytes of work-group memory`, String],
      [threads, limits.maxComputeInvocationsPerWorkgroup, v => `${v} threads a work-group`, String],
      [Math.max(...dispatches.map(d => d.threads[0])), limits.maxComputeWorkgroupSizeX, v => `work-groups ${v} wide`, String],
      [Math.max(...dispatches.map(d => d.threads[1])), limits.maxComputeWorkgroupSizeY, v => `work-groups ${v} high`, String],
      [Math.max(...dispatches.map(d => d.threads[2])), limits.maxComputeWorkgroupSizeZ, v => `work-groups ${v} deep`, String],
      [Math.max(...dispatches.flatMap(d => d.workgroups)), limits.maxComputeWorkgroupsPerDimension, v => `${v} work-groups in a row`, String],
      [side, limits.maxTextureDimension2D, v => `a picture ${v} px wide`, v => `${v} px`]];
    const over = checks.find(([value, most]) => value > most);
    if (!over) return null;
    const [value, allowed, what, unit] = over;
    return `grid ${keyOf(spec)} needs ${what(value)}, more than this GPU allows (${unit(allowed)}): left out`;
  }

  get kernelsPerFrame() { return this.spec.programs.pick.length + 2; }  // + the cut's and the render pass's draws

  // the input texture into the input buffer, in rows of a multiple of 256 bytes (its width is padded for that)
  encodeInput(encoder) {
    encoder.copyTextureToBuffer({texture: this.texture},
                                {buffer: this.named.rgba, bytesPerRow: this.spec.input[1] * 4, rowsPerImage: this.height},
                                [this.width, this.height]);
  }

  // the program's dispatches, or its first `count` (the benchmark's forward: the network's share of a frame)
  encodeProgram(encoder, name, timestampWrites, count = undefined) {
    const pass = encoder.beginComputePass(timestampWrites ? {timestampWrites} : {});
    for (const d of this.programs[name].slice(0, count)) {
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.group);
      pass.dispatchWorkgroups(...d.workgroups);
    }
    pass.end();
  }

  // one frame's picks: a new emoji must beat a cell's previous one by the stability margin, except on a first frame
  // (margin -inf), as Python's engine does; the picks become the next frame's previous picks
  encodePick(encoder, timestampWrites, margin = SITE.manifest.settings.stability) {
    this.gpu.device.queue.writeBuffer(this.named.margin, 0, new Float32Array([this.first ? -Infinity : margin]));
    this.first = false;
    this.encodeInput(encoder);
    this.encodeProgram(encoder, "pick", timestampWrites);
    encoder.copyBufferToBuffer(this.named.picks, 0, this.named.prev, 0, this.named.picks.size);
  }

  // copies of named buffers made by the encoder's commands, readable once the submitted work is done
  encodeRead(encoder, names) {
    return names.map(name => {
      const source = this.named[name];
      const copy = this.gpu.device.createBuffer({size: source.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
      encoder.copyBufferToBuffer(source, 0, copy, 0, source.size);
      return copy;
    });
  }
}

async function readCopies(copies) {
  return Promise.all(copies.map(async copy => {
    await copy.mapAsync(GPUMapMode.READ);
    const bytes = copy.getMappedRange().slice(0);
    copy.destroy();
    return bytes;
  }));
}

// --- drawing: the render pass over the canvas

class Renderer {
  constructor(gpu, canvas, atlas) {
    const device = gpu.device;
    Object.assign(this, {gpu, canvas, atlas, groups: new Map()});
    this.context = canvas.getContext("webgpu");
    const format = navigator.gpu.getPreferredCanvasFormat();
    this.context.configure({device, format, alphaMode: "opaque"});
    const module = device.createShaderModule({code: SITE.render, label: "render.wgsl"});
    this.pipeline = device.createRenderPipeline({layout: "auto", vertex: {module, entryPoint: "vs"},
                                                 fragment: {module, entryPoint: "fs", targets: [{format}]}});
    this.params = device.createBuffer({size: 32, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST});
    this.sampler = device.createSampler({magFilter: "linear", minFilter: "linear"});
  }

  group(run) {
    if (!this.groups.has(run)) {
      const resources = [{buffer: this.params}, {buffer: run.named.picks}, {buffer: run.named.back},
                         this.atlas.createView(), run.texture.createView(), this.sampler];
      this.groups.set(run, this.gpu.device.createBindGroup({
        layout: this.pipeline.getBindGroupLayout(0), entries: resources.map((resource, binding) => ({binding, resource}))}));
    }
    return this.groups.get(run);
  }

  encode(encoder, run, view, timestampWrites) {
    const tile = SITE.manifest.atlas.tile_px;
    const width = run.cols * tile * (view === "side-by-side" ? 2 : 1), height = run.rows * tile;
    if (this.canvas.width !== width || this.canvas.height !== height) [this.canvas.width, this.canvas.height] = [width, height];
    this.gpu.device.queue.writeBuffer(this.params, 0, new Uint32Array([run.cols, run.rows, tile, SITE.manifest.atlas.cols,
                                                                       VIEWS.indexOf(view), 0, 0, 0]));
    const pass = encoder.beginRenderPass({
      colorAttachments: [{view: this.context.getCurrentTexture().createView(), loadOp: "clear", storeOp: "store",
                          clearValue: [0, 0, 0, 1]}],
      ...(timestampWrites ? {timestampWrites} : {})});
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, this.group(run));
    pass.draw(3);
    pass.end();
  }
}

async function atlasTexture(device) {  // the PNG's bytes as they are: no premultiplying, no colour conversion
  const image = await createImageBitmap(new Blob([bytesOf(SITE.atlas)], {type: "image/png"}),
                                        {premultiplyAlpha: "none", colorSpaceConversion: "none"});
  const texture = device.createTexture({
    size: [image.width, image.height], format: "rgba8unorm",
    usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST | GPUTextureUsage.RENDER_ATTACHMENT});
  device.queue.copyExternalImageToTexture({source: image}, {texture, premultipliedAlpha: false},
                                          [image.width, image.height]);
  return texture;
}

// --- the cut: the picture onto the GPU as it is, then cropped to the grid's aspect ratio, mirrored and resized to
// its patch resolution there (cut.wgsl: the exact area average, as the Python engine resizes)

class Cutter {
  constructor(gpu) {
    const device = gpu.device, module = device.createShaderModule({code: SITE.cut, label: "cut.wgsl"});
    Object.assign(this, {device, source: null, group: null});
    this.pipeline = device.createRenderPipeline({layout: "auto", vertex: {module, entryPoint: "vs"},
                                                 fragment: {module, entryPoint: "fs", targets: [{format: "rgba8unorm"}]}});
    this.params = device.createBuffer({size: 32, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST});
  }

  // a video, canvas or image into the source texture: a copy the browser does on the GPU, no pixel loop here
  upload(image, width, height) {
    try {
      this.copy(image, width, height);
    } catch (error) {  // an OperationError where the browser's GPU process is off: it cannot hand its frames over
      console.warn(error);
      throw new UserError(SAY.gpu);
    }
  }

  copy(image, width, height) {
    if (this.source?.width !== width || this.source?.height !== height) {
      this.source?.destroy();
      this.source = this.device.createTexture({
        size: [width, height], format: "rgba8unorm",
        usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST | GPUTextureUsage.RENDER_ATTACHMENT});
      this.group = this.device.createBindGroup({layout: this.pipeline.getBindGroupLayout(0), entries: [
        {binding: 0, resource: {buffer: this.params}}, {binding: 1, resource: this.source.createView()}]});
    }
    this.device.queue.copyExternalImageToTexture({source: image}, {texture: this.source}, [width, height]);
  }

  encode(encoder, run, mirror) {  // the source texture, centre-cropped to the grid's aspect, into run.texture
    const {width, height} = this.source, aspect = run.width / run.height;
    const w = Math.min(width, height * aspect), h = w / aspect;
    const params = new ArrayBuffer(32);
    new Float32Array(params, 0, 4).set([(width - w) / 2, (height - h) / 2, w / run.width, h / run.height]);
    new Uint32Array(params, 16, 2).set([run.width, mirror ? 1 : 0]);
    this.device.queue.writeBuffer(this.params, 0, params);
    const pass = encoder.beginRenderPass({colorAttachments: [{view: run.texture.createView(), loadOp: "clear",
                                                              storeOp: "store", clearValue: [0, 0, 0, 1]}]});
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, this.group);
    pass.draw(3);
    pass.end();
  }
}

// --- the page's state and its one queue of GPU work

const app = {
  gpu: null, renderer: null, cutter: null, video: document.createElement("video"),
  grids: [], runs: new Map(), run: null, wanted: null, view: "emoji", mirror: true, paused: false,
  benchmarking: false, looping: false, frames: 0, firstFrameMs: null, recent: [], stages: {}, snapshots: 0,
  auto: null, ladder: [], choice: "", cameraFps: null, leftOut: [],  // the automatic choice of grid and network (autoChoose)
  facing: "user", recorder: null, recordings: 0,  // the camera asked for (front: user, back: environment)
  inFlight: [], inFlightMost: 0,  // a promise per frame submitted and not yet done, oldest first; the most seen
  capture: null,  // a test's request for the next frame's pixels and picks
};
let turn = Promise.resolve();

function gpuTurn(work) {  // one piece of GPU work at a time: frames, key actions, the benchmark and tests take turns
  const next = turn.then(work);
  turn = next.catch(() => {});
  return next;
}

const keyOf = spec => `${spec.model} ${spec.name}`;  // a network and a grid: "fast 32x18"

function runFor(key) {
  if (!app.runs.has(key)) {
    const run = new GridRun(app.gpu, app.grids.find(g => keyOf(g) === key));
    run.ready.catch(fail);
    app.runs.set(key, run);
  }
  return app.runs.get(key);
}

function want(key, why) {  // the grid and network to show next (it shows once its pipelines are ready)
  app.wanted = key;
  runFor(key);
  if (why) app.choice = why;
}

// the automatic choice: from the cheapest grid and network up, each measured TRY_S seconds on the camera; the
// first that cannot hold the target rate sends it one step back, where it stays (never below the cheapest)
function autoChoose() {
  const a = app.auto, run = app.run;
  if (!a || a.done || !run || run.key !== app.wanted) return;
  const now = performance.now();
  if (a.key !== run.key) return Object.assign(a, {key: run.key, frames: app.frames, since: now});
  if (now - a.since < TRY_S * 1000 || app.frames - a.frames < 2) return;
  const rate = (app.frames - a.frames) * 1000 / (now - a.since), at = app.ladder.findIndex(g => keyOf(g) === run.key);
  const target = Math.min(TARGET_FPS, app.cameraFps ?? TARGET_FPS) * 0.95, next = app.ladder[at + 1];
  if (rate >= target && next) return want(keyOf(next), `auto: trying ${keyOf(next)} (${run.key} held ${rate.toFixed(0)} fps)`);
  a.done = true;
  if (rate >= target || at === 0) {
    app.choice = rate >= target ? `auto: ${run.key}, the largest, holds ${rate.toFixed(0)} fps`
                                : `auto: ${run.key}, the smallest (${rate.toFixed(1)} fps here, below ${target.toFixed(0)})`;
    return;
  }
  const back = keyOf(app.ladder[at - 1]);
  want(back, `auto: ${back} (${run.key} gave ${rate.toFixed(1)} fps, below ${target.toFixed(0)})`);
}

// the grid on screen: the one asked for once its pipelines are ready, until then the one before (as `live`)
async function currentRun() {
  const wanted = runFor(app.wanted);
  if (!app.run) await wanted.ready;
  if (wanted !== app.run && wanted.prepared) {
    app.run = wanted;
    app.run.first = true;
  }
  return app.run;
}

function fps() {
  const r = app.recent;
  return r.length > 1 ? (r.length - 1) * 1000 / (r[r.length - 1] - r[0]) : 0;
}

function updateHud() {
  const run = app.run, s = app.stages;
  if (!run || s.main === undefined) return;
  const preparing = app.wanted !== run.key ? `  preparing ${app.wanted}` : "";
  const gpu = s.classify != null ? `GPU classify ${s.classify.toFixed(1)}  draw ${s.draw.toFixed(1)}  ` : "";
  const first = app.firstFrameMs === null ? "" : `first frame ${(app.firstFrameMs / 1000).toFixed(1)} s  `;
  dom.hud.textContent = [
    `${fps().toFixed(1)} fps  grid ${run.name} (${run.cols * run.rows} tiles)  ${run.model} network (${run.spec.patch_px} px)${preparing}`,
    app.choice,
    `main thread ${s.main.toFixed(1)} ms  ${gpu}submit to done ${s.latency.toFixed(1)} ms  (${run.kernelsPerFrame} kernels)`,
    `GPU: ${app.gpu.name}`,
    `${first}${app.view}, mirror ${app.mirror ? "on" : "off"}${app.paused ? ", PAUSED" : ""}`,
    KEYS_HELP].join("\n");
}

// one frame's commands: the picture's upload, the cut, the pick and the drawing, in one command buffer
function encodeFrame(run, image, width, height, mirror, view, timer = null) {
  const device = app.gpu.device;
  app.cutter.upload(image, width, height);
  const encoder = device.createCommandEncoder();
  app.cutter.encode(encoder, run, mirror);
  run.encodePick(encoder, timer?.writes(0));
  app.renderer.encode(encoder, run, view, timer?.writes(1));
  timer?.resolve(encoder);
  return encoder;
}

// a mirror frame: encoded and submitted without waiting; its bookkeeping runs once the GPU is done with it
function step(run) {
  const device = app.gpu.device, t0 = performance.now();
  const timer = app.gpu.timer?.due() ? app.gpu.timer : null;
  const encoder = encodeFrame(run, app.video, app.video.videoWidth, app.video.videoHeight, app.mirror, app.view, timer);
  const capture = app.capture, copies = capture ? run.encodeRead(encoder, ["picks", "back"]) : null;
  device.queue.submit([encoder.finish()]);
  timer?.collect();
  const pixels = capture ? canvasPixels() : null;  // now, in this task: the canvas holds this frame until it ends
  const main = performance.now() - t0;  // what this frame cost the page's one thread
  if (capture) {
    app.capture = null;
    readCopies(copies).then(([picks, back]) => capture({
      grid: run.name, model: run.model, picks: Array.from(new Int32Array(picks)), back: Array.from(new Float32Array(back)), ...pixels}));
  }
  const done = device.queue.onSubmittedWorkDone().then(() => {
    const t = performance.now(), [classify, draw] = app.gpu.timer?.ms ?? [null, null];
    app.stages = {main, latency: t - t0, classify, draw};
    app.frames += 1;
    app.recent.push(t);
    while (app.recent.length > 2 && t - app.recent[0] > 1000) app.recent.shift();
    if (app.firstFrameMs === null) app.firstFrameMs = t;  // since the page started loading
    app.inFlight.shift();
    autoChoose();
    updateHud();
  });
  app.inFlight.push(done);
  app.inFlightMost = Math.max(app.inFlightMost, app.inFlight.length);
}

function canvasPixels() {
  const canvas = app.renderer.canvas, copy = document.createElement("canvas");
  [copy.width, copy.height] = [canvas.width, canvas.height];
  const c = copy.getContext("2d");
  c.drawImage(canvas, 0, 0);
  const data = c.getImageData(0, 0, copy.width, copy.height).data;
  return {width: copy.width, height: copy.height, pixels: base64Of(new Uint8Array(data.buffer))};
}

async function mirrorLoop() {
  if (app.looping) return;
  app.looping = true;
  let shown = -1;
  for (;;) {
    await new Promise(requestAnimationFrame);
    const video = app.video;
    // a new picture from the camera or the file (a paused or ended file shows nothing new)
    if (app.paused || app.benchmarking || video.readyState < 2 || !video.videoWidth) continue;
    if (video.srcObject === null && video.currentTime === shown && app.run?.key === app.wanted) continue;
    shown = video.currentTime;
    try {
      if (app.inFlight.length >= IN_FLIGHT) await app.inFlight[0];  // the frame's one wait on the GPU
      await gpuTurn(async () => step(await currentRun()));
    } catch (error) {
      app.looping = false;
      return fail(error);
    }
  }
}

async function useVideo(source) {
  const video = app.video;
  video.srcObject?.getTracks().forEach(track => track.stop());
  Object.assign(video, {muted: true, playsInline: true, loop: typeof source === "string"});
  if (typeof source === "string") {
    video.srcObject = null;
    video.src = source;
  } else {
    video.removeAttribute("src");
    video.srcObject = source;
  }
  await video.play();
  app.mirror = typeof source !== "string";  // a camera is shown as a mirror, a file as it is (as `live`)
  if (app.run) app.run.first = true;
  show("");
  mirrorLoop();
}

async function openCamera() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: {width: {ideal: 1280}, height: {ideal: 720}, facingMode: {ideal: app.facing}}, audio: false});
  } catch (error) {
    throw new UserError(window.isSecureContext ? SAY.camera : SAY.insecure);
  }
  await useVideo(stream);
  app.mirror = app.facing === "user";  // the front camera as a mirror, the back one as the world is
  app.cameraFps = stream.getVideoTracks()[0]?.getSettings().frameRate ?? null;
}

async function flipCamera() {
  app.facing = app.facing === "user" ? "environment" : "user";
  status(`camera: ${app.facing === "user" ? "front" : "back"}`);
  await openCamera();
}

// --- record and share: a WebM of the emoji canvas (MediaRecorder), a PNG, the frame as emoji text

function download(blob, extension) {
  const link = Object.assign(document.createElement("a"), {href: URL.createObjectURL(blob),
    download: `emojicam-${new Date().toISOString().replace(/[:.]/g, "-")}.${extension}`});
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  return link.download;
}

function recordingShown() {
  const recording = app.recorder !== null;
  dom.recording.hidden = !recording;
  dom.record.setAttribute("aria-pressed", String(recording));
  dom.record.textContent = recording ? "Stop" : "Record";
  if (!recording) return;
  const s = Math.floor((performance.now() - app.recordStart) / 1000);
  dom.recording.textContent = `\u25CF REC ${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

async function toggleRecording() {
  if (app.recorder) return app.recorder.stop();
  if (!app.run) return status("nothing to record yet");
  const type = RECORD_TYPES.find(t => MediaRecorder.isTypeSupported(t));
  if (!type) return status("this browser cannot record WebM video");
  const stream = dom.view.captureStream(30);
  let mic = null;
  try {  // the sound is the user's choice: refused or absent, the video is silent
    mic = await navigator.mediaDevices.getUserMedia({audio: true, video: false});
    mic.getAudioTracks().forEach(track => stream.addTrack(track));
  } catch (error) {
    mic = null;
  }
  const recorder = new MediaRecorder(stream, {mimeType: type}), chunks = [];
  recorder.ondataavailable = event => event.data.size && chunks.push(event.data);
  recorder.onstop = () => {
    mic?.getTracks().forEach(track => track.stop());
    clearInterval(app.recordClock);
    app.recorder = null;
    recordingShown();
    const name = download(new Blob(chunks, {type: "video/webm"}), "webm");
    app.recordings += 1;
    status(`recorded ${name}${mic ? "" : " (silent: no microphone allowed)"}`);
  };
  recorder.start(1000);
  Object.assign(app, {recorder, recordStart: performance.now(), recordClock: setInterval(recordingShown, 500)});
  recordingShown();
  status(`recording${mic ? " with sound" : ", silent (no microphone allowed)"}: r or Stop ends it`);
}

// --- keys, as `live`'s

function changeGrid(by) {
  const model = runFor(app.wanted).model, keys = app.grids.filter(g => g.model === model).map(keyOf);
  const at = keys.indexOf(app.wanted), next = Math.min(keys.length - 1, Math.max(0, at + by));
  if (next === at) return status(`grid ${app.wanted}: the ${by > 0 ? "densest" : "coarsest"} this site has`);
  chosen(keys[next]);
}

function changeModel() {  // the other network at the same grid, where this device fits it
  const now = runFor(app.wanted), models = [...new Set(app.grids.map(g => g.model))];
  const model = models[(models.indexOf(now.model) + 1) % models.length];
  const same = app.grids.find(g => g.model === model && g.name === now.name) ?? app.grids.find(g => g.model === model);
  chosen(keyOf(same));
}

function chosen(key) {  // the user's choice: the automatic one stops
  if (app.auto) app.auto.done = true;
  want(key, `chosen: ${key}`);
  status(`grid: ${key}`);
}

function redraw() {  // the last frame's picks in the view now asked for (while paused, say)
  if (!app.run) return;
  gpuTurn(() => {
    const encoder = app.gpu.device.createCommandEncoder();
    app.renderer.encode(encoder, app.run, app.view);
    app.gpu.device.queue.submit([encoder.finish()]);
  }).catch(fail);
}

function snapshot() {
  if (!app.run) return;
  gpuTurn(async () => {
    const encoder = app.gpu.device.createCommandEncoder();
    app.renderer.encode(encoder, app.run, app.view);
    app.gpu.device.queue.submit([encoder.finish()]);
    const blob = await new Promise(done => app.renderer.canvas.toBlob(done, "image/png"));  // asked in this task
    const name = download(blob, "png");
    app.snapshots += 1;
    status(`snapshot: ${name}`);
  }).catch(fail);
}

// the picks as text, one line per grid row, each emoji as `emojicam convert OUT.txt` writes it
async function emojiText() {
  const run = app.run, strings = SITE.manifest.emoji;
  const [picks] = await gpuTurn(async () => {
    const encoder = app.gpu.device.createCommandEncoder(), copies = run.encodeRead(encoder, ["picks"]);
    app.gpu.device.queue.submit([encoder.finish()]);
    return readCopies(copies);
  });
  const cells = Array.from(new Int32Array(picks), i => strings[i]);
  return Array.from({length: run.rows}, (_, r) => cells.slice(r * run.cols, (r + 1) * run.cols).join("") + "\n").join("");
}

async function copyText() {
  if (!app.run) return;
  if (!SITE.manifest.emoji) return status("this emoji set has no codepoints, so its picks cannot be copied as text");
  const text = await emojiText();
  try {
    await navigator.clipboard.writeText(text);
  } catch (error) {  // pages opened from a file, and older browsers, may refuse the clipboard API
    const area = Object.assign(document.createElement("textarea"), {value: text});
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    if (!copied) return status("the browser refused the clipboard: press c again after clicking the page");
  }
  status(`copied ${app.run.name} emoji as text`);
}

const actions = {  // each a key and a button (wired in main)
  gridUp: () => changeGrid(1),
  model: changeModel,
  gridDown: () => changeGrid(-1),
  mirror: () => { app.mirror = !app.mirror; if (app.run) app.run.first = true; status(`mirror: ${app.mirror ? "on" : "off"}`); },
  view: () => { app.view = VIEWS[(VIEWS.indexOf(app.view) + 1) % VIEWS.length]; status(`view: ${app.view}`); redraw(); },
  pause: () => { app.paused = !app.paused; status(app.paused ? "paused" : "resumed"); updateHud(); },
  record: () => toggleRecording().catch(fail),
  snapshot,
  copy: () => copyText().catch(fail),
  facing: () => flipCamera().catch(fail),
};

const KEYS = {"+": "gridUp", "=": "gridUp", "-": "gridDown", "_": "gridDown", "m": "mirror", "o": "view", " ": "pause",
              "r": "record", "s": "snapshot", "c": "copy", "n": "model"};

document.addEventListener("keydown", event => {
  if (event.ctrlKey || event.metaKey || event.altKey || ["INPUT", "TEXTAREA"].includes(event.target.tagName)) return;
  if (!(event.key in KEYS)) return;
  event.preventDefault();
  actions[KEYS[event.key]]();
});

// --- the benchmark: every grid of the site on one built-in frame

function builtInFrame() {  // a fixed test card: gradients, soft discs and text, drawn the same on every machine
  const [w, h] = BENCH_FRAME, canvas = Object.assign(document.createElement("canvas"), {width: w, height: h});
  const c = canvas.getContext("2d", {alpha: false});
  let seed = 12345;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const sky = c.createLinearGradient(0, 0, w, h);
  sky.addColorStop(0, "#5a78a0");
  sky.addColorStop(1, "#d08a50");
  c.fillStyle = sky;
  c.fillRect(0, 0, w, h);
  for (let i = 0; i < 60; i++) {
    c.fillStyle = `rgb(${255 * random() | 0}, ${255 * random() | 0}, ${255 * random() | 0})`;
    c.beginPath();
    c.ellipse(w * random(), h * random(), 20 + 140 * random(), 20 + 140 * random(), Math.PI * random(), 0, 2 * Math.PI);
    c.fill();
  }
  c.fillStyle = "#fff";
  c.font = "bold 64px sans-serif";
  c.fillText("emojicam benchmark", 80, 120);
  return canvas;
}

// ms a frame as the mirror runs them (up to IN_FLIGHT in flight: the GPU's rate where it is the bottleneck), and
// the main thread's median ms a frame to encode and submit: 2 frames to warm up, then at least 3, up to 30 or 2 s
async function timeFrames(encode) {
  const device = app.gpu.device, inFlight = [], main = [];
  const one = () => {
    const t = performance.now(), encoder = encode();
    device.queue.submit([encoder.finish()]);
    main.push(performance.now() - t);
    inFlight.push(device.queue.onSubmittedWorkDone());
  };
  for (let i = 0; i < 2; i++) one();
  await Promise.all(inFlight.splice(0));
  main.length = 0;
  const start = performance.now();
  while (main.length < 30 && (main.length < 3 || performance.now() - start < 2000)) {
    if (inFlight.length >= IN_FLIGHT) await inFlight.shift();
    one();
  }
  await Promise.all(inFlight);
  return {ms: (performance.now() - start) / main.length, main_ms: median(main), frames: main.length};
}

async function benchGrid(run, frame) {
  const device = app.gpu.device, commands = work => () => { const encoder = device.createCommandEncoder(); work(encoder); return encoder; };
  const e2e = await timeFrames(() => encodeFrame(run, frame, frame.width, frame.height, false, "emoji"));
  // the frame's own network dispatches (up to the last that reads a weight), on the input the frames left
  const forward = await timeFrames(commands(encoder => run.encodeProgram(encoder, "pick", undefined, run.spec.network)));
  const classify = await timeFrames(commands(encoder => run.encodePick(encoder)));
  const model = SITE.manifest.models.find(n => n.name === run.model);
  const patches = run.cols * run.rows, gflop = model.flops_per_patch * patches / 1e9;
  return {system: "emojicam-web", device: app.gpu.name, grid: run.name, model: run.model, patch_px: run.spec.patch_px,
          cols: run.cols, rows: run.rows, patches,
          frames: e2e.frames, flops_per_patch: model.flops_per_patch, gflop_per_frame: gflop,
          kernels_per_frame: run.kernelsPerFrame, warmup_s: run.prepareMs / 1000, frames_in_flight: IN_FLIGHT,
          forward_dispatches: run.spec.network, main_ms_per_frame: e2e.main_ms,
          ms: {forward: forward.ms, classify: classify.ms, e2e: e2e.ms, main: e2e.main_ms},
          forward_fps: 1000 / forward.ms, classify_fps: 1000 / classify.ms, e2e_fps: 1000 / e2e.ms,
          achieved_gflops: gflop / (forward.ms / 1000)};
}

function showResults(report) {
  const rows = report.records.map(r => `<tr><td>${r.grid}</td><td>${r.patches}</td><td>${r.forward_fps.toFixed(1)}</td>` +
    `<td>${r.classify_fps.toFixed(1)}</td><td>${r.e2e_fps.toFixed(1)}</td><td>${r.achieved_gflops.toFixed(1)}</td></tr>`);
  dom.table.innerHTML = "<tr><th>grid</th><th>cells</th><th>forward fps</th><th>classify fps</th>" +
    "<th>end-to-end fps</th><th>GFLOP/s</th></tr>" + rows.join("");
  dom.about.textContent = `${report.environment.adapter.name} in ${report.environment.browser}`;
  dom.json.value = JSON.stringify(report, null, 1);
  dom.results.hidden = false;
}

async function benchmark(names = null) {  // names: the grids to time (default: every grid of the site)
  if (app.benchmarking) return null;
  const grids = app.grids.filter(g => !names || names.includes(g.name) || names.includes(keyOf(g)));
  app.benchmarking = true;
  dom.results.hidden = false;
  dom.json.value = "";
  try {
    const frame = builtInFrame(), m = SITE.manifest, records = [];
    const report = {
      environment: {browser: navigator.userAgent, adapter: {name: app.gpu.name, ...pick(app.gpu.info)},
                    timestamp_query: Boolean(app.gpu.timer), date: new Date().toISOString()},
      config: {frame: `built-in ${BENCH_FRAME.join("x")} test card`, emojicam: m.emojicam, models: m.models,
               set: m.set, settings: m.settings},
      records};
    for (const [i, spec] of grids.entries()) {
      status(`benchmark: ${keyOf(spec)} ...`);
      dom.hud.textContent = `benchmark: ${keyOf(spec)} (${i + 1} of ${grids.length}) on ${app.gpu.name} ...`;
      const run = runFor(keyOf(spec));
      await run.ready;
      records.push(await gpuTurn(() => benchGrid(run, frame)));
      showResults(report);
    }
    status("benchmark done: copy the JSON below");
    dom.hud.textContent = `benchmark done on ${app.gpu.name}: the results are below the picture`;
    dom.results.scrollIntoView();
    return report;
  } finally {
    app.benchmarking = false;
    if (app.run) app.run.first = true;
  }
}

function pick(info) {
  return Object.fromEntries(["vendor", "architecture", "device", "description"].map(k => [k, info[k] ?? ""]));
}

// --- start

function parseHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  // #bench (every grid), #bench=32x18,64x36 (those), #grid=32x18 and/or #model=fast (start the mirror there,
  // no automatic choice; a grid alone takes the largest network)
  return {bench: params.has("bench"), benchGrids: params.get("bench") ? params.get("bench").split(",") : null,
          grid: params.get("grid"), model: params.get("model")};
}

async function main() {
  if (!SITE.manifest || !SITE.kernels || !SITE.weights || !SITE.atlas || !SITE.render || !SITE.cut) return show(SAY.incomplete);
  dom.hud.textContent = "starting ...";
  app.gpu = await Gpu.open();
  app.leftOut = SITE.manifest.grids.map(spec => GridRun.unfit(spec, app.gpu.device.limits)).filter(Boolean);
  app.grids = SITE.manifest.grids.filter(spec => !GridRun.unfit(spec, app.gpu.device.limits));
  if (!app.grids.length) throw new UserError(SAY.grids);
  if (app.leftOut.length) status(app.leftOut.join("; "));
  try {  // a browser whose GPU process is off gives an adapter but no canvas to draw on
    app.renderer = new Renderer(app.gpu, dom.view, await atlasTexture(app.gpu.device));
    app.cutter = new Cutter(app.gpu);
  } catch (error) {
    console.warn(error);
    throw new UserError(SAY.gpu);
  }
  const hash = parseHash(), models = SITE.manifest.models.map(n => n.name);
  // the ladder of the automatic choice: fewest cells first, and at the same grid the smaller network first
  app.ladder = [...app.grids].sort((a, b) => a.cols * a.rows - b.cols * b.rows || a.patch_px - b.patch_px);
  if (hash.grid || hash.model) {
    const model = models.includes(hash.model) ? hash.model : models[models.length - 1];
    const grid = app.grids.find(g => g.model === model && g.name === hash.grid) ??
                 app.grids.find(g => g.model === model && g.name === SITE.manifest.start) ?? app.ladder[0];
    want(keyOf(grid), `chosen: ${keyOf(grid)} (the address)`);
  } else {
    app.auto = {done: false, key: null};
    want(keyOf(app.ladder[0]), "auto: measuring this device ...");  // compiles while the camera opens
  }
  dom.camera.onclick = () => openCamera().catch(fail);
  dom.file.onchange = () => dom.file.files[0] && useVideo(URL.createObjectURL(dom.file.files[0])).catch(fail);
  dom.bench.onclick = () => benchmark().catch(fail);
  for (const [id, action] of [["grid-down", "gridDown"], ["grid-up", "gridUp"], ["mirror", "mirror"],
                              ["view-mode", "view"], ["facing", "facing"], ["record", "record"],
                              ["snapshot", "snapshot"], ["copy", "copy"]]) dom[id].onclick = actions[action];
  dom.model.onclick = actions.model;
  dom.model.hidden = models.length < 2;
  dom["copy-json"].onclick = () => navigator.clipboard.writeText(dom.json.value).then(() => status("JSON copied"), fail);
  if (hash.bench) return benchmark(hash.benchGrids);
  dom.hud.textContent = "opening the camera ...";
  await openCamera();
}

function cameraFacing() {  // the facingMode the open camera was asked for (a string, or {ideal: ...} as it was asked)
  const asked = app.video.srcObject?.getVideoTracks()[0]?.getConstraints().facingMode;
  return asked?.ideal ?? asked ?? null;
}

// what the tests drive (tests/test_web.py); nothing on the page uses it
window.emojicam = {
  state: () => ({grid: app.run?.name ?? null, model: app.run?.model ?? null, choice: app.choice,
                 wanted: app.wanted?.split(" ")[1] ?? null, wantedKey: app.wanted, view: app.view, mirror: app.mirror,
                 paused: app.paused, frames: app.frames, inFlight: app.inFlight.length, inFlightMost: app.inFlightMost, fps: fps(), firstFrameMs: app.firstFrameMs,
                 stages: app.stages, adapter: app.gpu ? {name: app.gpu.name, ...pick(app.gpu.info)} : null,
                 message: dom.message.hidden ? "" : dom.message.textContent, snapshots: app.snapshots,
                 grids: app.grids.map(g => g.name), facing: app.facing, recording: app.recorder !== null,
                 recordings: app.recordings, leftOut: app.leftOut,
                 cameraFacing: cameraFacing()}),
  // the picks for RGBA bytes (rows*P, cols*P, 4) as base64, through the same texture, copy and kernels as a frame
  classify: (grid, rgba, prev = null, model = null) => gpuTurn(async () => {
    const run = runFor(`${model ?? SITE.manifest.models.at(-1).name} ${grid}`), device = app.gpu.device;
    await run.ready;
    device.queue.writeTexture({texture: run.texture}, bytesOf(rgba), {bytesPerRow: run.width * 4},
                              [run.width, run.height]);
    run.first = prev === null;
    if (prev !== null) device.queue.writeBuffer(run.named.prev, 0, new Int32Array(prev));
    const encoder = device.createCommandEncoder();
    run.encodePick(encoder);
    const copies = run.encodeRead(encoder, ["picks"]);
    device.queue.submit([encoder.finish()]);
    const [picks] = await readCopies(copies);
    run.first = true;  // the mirror's next frame on this grid starts afresh
    return Array.from(new Int32Array(picks));
  }),
  frame: () => new Promise(resolve => { app.capture = resolve; }),
  ladder: () => app.ladder.map(keyOf),
  unfit: (key, limits) => GridRun.unfit(SITE.manifest.grids.find(g => keyOf(g) === key), limits),
  text: emojiText,
  benchmark,
};

main().catch(fail);
