"""Emojifier: BGR frame in, emoji frame out (patch cut, one batched forward, stability, compositing)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import TypeVar

import cv2
import numpy as np
from tinygrad import Context, Device, Tensor, TinyJit, dtypes
from tinygrad import helpers as tinygrad_helpers
from tinygrad.device import Buffer
from tinygrad.helpers import BEAM
from tinygrad.nn.state import get_state_dict

from emojicam import jit_cache
from emojicam.device_frame import DeviceFrame, Tiles, frame_function
from emojicam.emoji_set import BACKGROUNDS, EmojiSet
from emojicam.errors import EmojicamError
from emojicam.grid import Grid, cell_means, check_tile_px, compose, cut_patches, thumbnails
from emojicam.kernels import InferenceNet, runs_on_cpu
from emojicam.model import Checkpoint

T = TypeVar("T", np.ndarray, Tensor)
STAGES = ("cut", "upload", "forward", "download", "composite")
MAX_LANES = 8  # CPU device: default cap on the cores one batch is split across


@dataclass(frozen=True)
class Settings:
    """What the engine needs to know, built once by the command line."""

    cols: int = 64
    tile_px: int = 16
    background: str = "auto"
    device: str | None = None   # tinygrad device string; None = tinygrad's default
    stability: float = 0.0      # score margin a new emoji must win by to replace the old one
    # Scoring (see README, Quality): the network's log-probability picks the shape, the colour term pulls the
    # tile's mean colour as drawn towards the cell's, the coverage bonus keeps emoji large enough to see.
    colour_weight: float = 2000.0
    coverage_weight: float = 20.0
    # Variety: a fixed dither in 0..variety per cell and emoji (see dither), so flat areas become a mix of the
    # emoji that fit them about equally well instead of one emoji's wallpaper; fixed, so a still scene keeps them.
    variety: float = 10.0
    # Video and live: a cell whose 6x6 thumbnail moved by at most this many levels (0..255, any pixel and channel)
    # since its emoji was picked keeps that emoji without a forward pass; 0 = every cell through the network.
    still_threshold: float = 0.0
    # CPU device only: how many cores each batch is split across (0 = every core this process may use, up to 8).
    cpu_threads: int = 0
    # Where a frame is cut and composited: "host" (OpenCV/numpy, the network on the device), "device" (the whole
    # frame in one compiled function, device_frame.py), "auto" = device on GPUs, host on CPU devices.
    composite: str = "auto"


COMPOSITES = ("auto", "host", "device")


def resolve_device(device: str | None) -> str:
    """Canonical tinygrad device name that works here, or a one-line EmojicamError."""
    name = Device.DEFAULT if device is None else device.upper()
    try:
        name = Device.canonicalize(name)
        Tensor([1.0], device=name).add(1).realize().numpy()
    except Exception as e:  # tinygrad raises many types when a backend is missing
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise EmojicamError(f"--device: expected a working tinygrad device (see `emojicam devices`), "
                            f"got {device or name}: {msg}") from None
    return name


def auto_background(cell_mean: T, emoji_mean: T, uncovered: T) -> T:
    """The `auto` background: the colour behind an emoji's transparent pixels that makes the tile's mean colour
    as drawn (emoji_mean + uncovered * background) equal to its cell's mean, clipped to 0..255. Works on numpy
    arrays and tinygrad Tensors alike (colours 0..255, emoji_mean premultiplied by alpha, uncovered = 1 - coverage).
    An opaque emoji's background does not matter; where the emoji's own colour is too far off, the clip keeps the
    background the nearest drawable colour, and the colour term in the score does the rest."""
    return ((cell_mean - emoji_mean) / (uncovered + 1e-3)).clip(0, 255)


def share_kernel_cache() -> None:
    """Let every thread use tinygrad's on-disk kernel cache. tinygrad opens one sqlite connection per process, bound
    to the thread that first compiled something, but the engine compiles on its own thread (see Emojifier) while
    other code (the device check, the tests, the benchmark's peers) compiles on the main one. sqlite3 here is
    built serialized (threadsafety 3), so one connection opened without the same-thread check serves both."""
    if sqlite3.threadsafety < 3 or getattr(tinygrad_helpers.db_connection, "_shared", False):
        return
    os.makedirs(os.path.dirname(tinygrad_helpers.CACHEDB), exist_ok=True)
    conn = sqlite3.connect(tinygrad_helpers.CACHEDB, timeout=60, isolation_level="IMMEDIATE", check_same_thread=False)
    with suppress(sqlite3.OperationalError):  # another process holds the lock while it sets the same mode
        conn.execute("PRAGMA journal_mode=WAL").fetchone()
    conn.execute("PRAGMA synchronous=NORMAL")
    tinygrad_helpers._db_connection = conn
    tinygrad_helpers.db_connection._shared = True


def emoji_keys(classes: int) -> np.ndarray:
    """(K,) uint32: each emoji's part of the dither hash (a lane keeps it on its device)."""
    return np.arange(classes, dtype=np.uint32) * np.uint32(0x85EBCA77)


def dither(cells: T, keys: T) -> T:
    """(N, K) float32 in [0, 1): a fixed pseudo-random number per cell index (N,) and emoji (keys: emoji_keys),
    the same on every device and in numpy (a uint32 integer hash: multiply, xor-shift, wrapping as C does).
    Parallel over cells, no pass in raster order: a cell's numbers depend only on where it is."""
    if isinstance(cells, Tensor):
        h = cells.cast(dtypes.uint32).reshape(-1, 1) * 0x9E3779B1 + keys.reshape(1, -1)
    else:
        h = cells.astype(np.uint32).reshape(-1, 1) * np.uint32(0x9E3779B1) + keys.reshape(1, -1)
    for shift, mul in ((16, 0x7FEB352D), (15, 0x846CA68B)):
        h = (h ^ (h >> shift)) * (mul if isinstance(h, Tensor) else np.uint32(mul))
    h = h ^ (h >> 16)
    return (h >> 8).cast(dtypes.float32) * 2**-24 if isinstance(h, Tensor) else (h >> 8).astype(np.float32) * 2**-24


def lane_devices(device: str, cpu_threads: int = 0) -> list[str]:
    """The devices one batch is split across. tinygrad 0.14's CPU device runs every kernel on the calling thread
    (its THREAD optimisation loops over the thread ids in turn), so on CPU each core gets its own device, CPU:i,
    and its share of the batch, run from a thread pool (1.9x on 2 cores, benchmarks/results/2026-11-24-cpu-lanes.md).
    Other devices spread each kernel over their cores or GPU themselves. By default one lane per core this process
    may use, at most MAX_LANES: every lane compiles its own copy of each kernel on a cold start."""
    if device.split(":")[0] != "CPU":
        return [device]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return [Device.canonicalize(f"CPU:{i}") for i in range(max(1, cpu_threads or min(usable, MAX_LANES)))]


@dataclass
class Lane:
    """One device's copy of the network and scoring constants, its compiled functions by batch size and their
    input tensors (patches, cell indices, previous emoji, margin), which each frame is copied into."""

    device: str
    net: InferenceNet
    emoji_rgb: Tensor  # (K, 3) RGB premultiplied mean colour of each emoji at the tile size
    emoji_cover: Tensor  # (K,) coverage of each emoji at the tile size
    emoji_keys: Tensor  # (K,) uint32 each emoji's part of the variety dither's hash
    jits: dict[int, TinyJit] = field(default_factory=dict)  # batch size -> captured function, ready to replay
    beam: dict[int, int] = field(default_factory=dict)  # batch size -> BEAM width its kernels were searched with
    inputs: dict[int, tuple[Tensor, ...]] = field(default_factory=dict)

    def upload(self, *arrays: np.ndarray) -> tuple[Tensor, ...]:
        """The batch's input tensors (made with its compiled function) holding these arrays: written into their
        buffers, in place on the CPU device, else with one copy. Building and realizing new tensors from numpy
        cost tinygrad 2-3 ms per array, and would schedule work while a background build captures."""
        inputs = self.inputs[len(arrays[0])]
        for tensor, a in zip(inputs, arrays, strict=True):
            write_into(tensor, a, self.on_host)
        return inputs

    def download(self, out: Tensor) -> np.ndarray:
        """A finished output tensor as a numpy copy (read in place on the CPU device)."""
        return read_from(out, np.int32, self.on_host)

    @property
    def on_host(self) -> bool:
        """tinygrad's CPU device: its buffers are host memory that numpy can read and write in place (GPU
        backends may keep theirs where the host cannot see them)."""
        return self.device.split(":")[0] == "CPU"


@dataclass(frozen=True)
class EmojiFrame:
    """What one call made of one frame: its grid, each cell's emoji, the share of cells that kept their emoji
    without a forward pass, milliseconds per stage (STAGES) and, once rendered, the emoji frame itself. Returned by
    the call that made it, so two threads (the network and the compositor) never mix two frames' figures."""

    grid: Grid
    indices: np.ndarray  # (N,) int32, row-major cell order
    skipped: float
    stage_ms: dict[str, float]
    image: np.ndarray | None = None  # (rows*tile, cols*tile, 3) BGR uint8, after render


@dataclass(frozen=True)
class Previous:
    """What the engine keeps of the previous frame for the next one."""

    grid: Grid
    indices: np.ndarray  # (N,) the emoji shown
    patches: np.ndarray  # (N, P, P, 3) the patches cut from it
    thumbs: np.ndarray | None  # (N, 108) with still_threshold > 0: per cell, the thumbnail its emoji was picked on


def write_into(tensor: Tensor, a: np.ndarray, on_host: bool) -> None:
    """Copy an array into a realized tensor's buffer: in place on tinygrad's CPU device (on_host), else one copy."""
    buf, data = tensor.uop.buffer, memoryview(np.ascontiguousarray(a)).cast("B")
    if on_host:
        buf.as_memoryview(force_zero_copy=True)[:] = data  # synchronizes with the device first
    else:
        buf.copy_from(Buffer("PYTHON", buf.size, buf.dtype, opaque=data))


def read_from(tensor: Tensor, dtype: type, on_host: bool) -> np.ndarray:
    """A finished tensor's buffer as a flat numpy copy (read in place on tinygrad's CPU device)."""
    return np.frombuffer(tensor.uop.buffer.as_memoryview(force_zero_copy=on_host), dtype).copy()


def batch_sizes(cells: int) -> list[int]:
    """The batch sizes the moved cells of a frame are padded to: 1/8, 1/4, 1/2 and all of the grid's cells."""
    return sorted({-(-cells // d) for d in (8, 4, 2, 1)})


class Emojifier:
    """Turns frames into emoji frames with one TinyJit-compiled forward pass per grid shape."""

    def __init__(self, ckpt: Checkpoint, emoji_set: EmojiSet, settings: Settings):
        if ckpt.set_fingerprint != emoji_set.fingerprint or ckpt.class_names != emoji_set.names:
            raise EmojicamError(f"weights: expected weights trained on this emoji set (fingerprint "
                                f"{emoji_set.fingerprint}), got weights for set {ckpt.set_fingerprint}")
        if settings.background not in BACKGROUNDS:
            raise EmojicamError(f"--background: expected one of {', '.join(BACKGROUNDS)}, got {settings.background}")
        check_tile_px(settings.tile_px)
        if settings.composite not in COMPOSITES:
            raise EmojicamError(f"--composite: expected one of {', '.join(COMPOSITES)}, got {settings.composite}")
        for flag, value in (("--stability", settings.stability), ("--still-threshold", settings.still_threshold)):
            if not value >= 0:
                raise EmojicamError(f"{flag}: expected a number >= 0, got {value}")
        share_kernel_cache()
        self.device = resolve_device(settings.device)
        self.model, self.emoji_set, self.settings = ckpt.model, emoji_set, settings
        self.patch_px = ckpt.model.config.patch_px
        weights = hashlib.sha256(b"".join(t.numpy().tobytes() for t in get_state_dict(ckpt.model).values()))
        self._cache_parts = (str(getattr(Device[self.device], "arch", "")), settings.tile_px, settings.background,
                             settings.colour_weight, settings.coverage_weight, settings.variety, emoji_set.fingerprint,
                             weights.hexdigest())
        # each emoji's mean colour on black (= its premultiplied mean) and coverage at the output tile size, for
        # the colour-match term and the `auto` background
        self._tile_bgr = emoji_set.mean_colours("black", settings.tile_px)  # (K, 3) BGR
        premult, alpha = emoji_set.atlas(settings.tile_px)
        self._tile_cover = alpha.mean((1, 2, 3))  # (K,)
        # what `auto` compositing multiplies and adds per emoji: 1 - alpha (K, t, t, 1), premultiplied BGR + 0.5
        # for rounding (K, t, t, 3)
        self._tile_uncover, self._tile_premult = (1 - alpha).astype(np.float32), (premult + 0.5).astype(np.float32)
        self.lanes = [Lane(dev, InferenceNet(ckpt.model, dev),
                           Tensor(self._tile_bgr[:, ::-1].copy(), device=dev).realize(),
                           Tensor(self._tile_cover, device=dev).realize(),
                           Tensor(emoji_keys(len(emoji_set)), device=dev).realize())
                      for dev in lane_devices(self.device, settings.cpu_threads)]
        self._pool = ThreadPoolExecutor(len(self.lanes)) if len(self.lanes) > 1 else None
        # Every compile, JIT capture and new device tensor happens on this one thread, one batch size at a time,
        # so that the live loop can keep replaying captured functions while a new shape is prepared. tinygrad
        # keeps process-wide state (the JIT being captured collects whatever any thread schedules), so two
        # builds never overlap, and the frame path itself only writes into existing buffers and replays.
        self._builder = ThreadPoolExecutor(1, thread_name_prefix="emojicam-compile")
        self._builds: dict = {}  # batch size (or device path: frame h, w, grid) -> its build Future
        self._prev: Previous | None = None
        # the device path: frame functions by (frame height, width, grid), and which one ran last (None: forget)
        self.on_device = settings.composite == "device" or (settings.composite == "auto" and not runs_on_cpu(
            self.device))
        self._frames: dict[tuple[int, int, Grid], DeviceFrame] = {}
        self._last_frame_key: tuple[int, int, Grid] | None = None
        self._tiles = self._device_tiles() if self.on_device else None

    def grid_for(self, frame_shape: tuple[int, ...], cols: int | None = None) -> Grid:
        return Grid.for_frame(frame_shape, cols or self.settings.cols, self.settings.tile_px)

    def _build_lane(self, lane: int, batch: int, fresh: bool = False) -> None:
        """Compile and capture one lane's function for batches of `batch` patches, or load it from this machine's
        JIT cache when an earlier process captured it (unless fresh), with its input tensors; published into the
        lane's dicts only when it is ready to replay. The function: the best-scoring emoji per patch, unless it
        beats the patch's previous emoji by no more than margin (hysteresis; a margin of -inf, as on a first frame,
        always takes the best)."""
        on = self.lanes[lane]
        key = jit_cache.cache_key(on.device, *self._cache_parts, batch)
        inputs = tuple(Tensor(a, device=on.device).realize() for a in (
            np.zeros((batch, self.patch_px, self.patch_px, 3), np.uint8), np.arange(batch, dtype=np.int32),
            np.zeros(batch, np.int32), np.array([-np.inf], np.float32)))
        if not fresh and (cached := jit_cache.load(key)):
            jit, beam = cached
        else:
            def pick(x: Tensor, cells: Tensor, prev: Tensor, margin: Tensor) -> Tensor:
                score = self.scores(x, lane, cells)
                best = score.argmax(1).cast(dtypes.int32)
                gap = score.max(1) - score.gather(1, prev.unsqueeze(1)).squeeze(1)
                return (gap > margin).where(best, prev).realize()

            jit, beam = TinyJit(pick), BEAM.value
            for _ in range(2):  # TinyJit runs the function on its first call and captures it on the second
                jit(*inputs)
            jit_cache.save(key, jit, beam)
        Device[on.device].synchronize()
        on.inputs[batch], on.beam[batch] = inputs, beam
        on.jits[batch] = jit  # last: a lane's batch counts as ready once its JIT is here

    def _device_tiles(self) -> Tiles:
        dev, blended = self.device, None
        if self.settings.background != "auto":
            blended = Tensor(self.emoji_set.blended_atlas(self.settings.tile_px, self.settings.background), device=dev)
        return Tiles(*(Tensor(np.ascontiguousarray(a, np.float32), device=dev).realize() for a in (
            self._tile_bgr, self._tile_cover, self._tile_premult, self._tile_uncover)),
            blended.realize() if blended is not None else None)

    def _build_frame(self, key: tuple[int, int, Grid]) -> None:
        """Compile the device path's frame function for this frame size and grid (two calls: run, capture), or
        load it from this machine's JIT cache. Its state lives inside it, so a loaded one needs only new inputs."""
        h, w, grid = key
        still = self.settings.still_threshold > 0
        # the whole grid every frame: scores' default cells (0..N-1) are the grid's, as the variety dither needs
        built = frame_function(lambda x: self.scores(x, 0), self._tiles, (h, w, 3), grid, still, self.device,
                               self.patch_px)
        cache_key = jit_cache.cache_key(self.device, *self._cache_parts, "frame", h, w, grid.cols, grid.rows, still)
        if cached := jit_cache.load(cache_key):
            built = DeviceFrame(cached[0], built.frame, built.params)
        else:
            for _ in range(2):
                built.jit(built.frame, built.params)
            jit_cache.save(cache_key, built.jit)
        Device[self.device].synchronize()
        self._frames[key] = built

    def _build(self, batch: int, fresh: bool = False) -> None:
        for lane, share in enumerate(self._shares(batch)):
            if fresh or len(share) not in self.lanes[lane].jits:
                self._build_lane(lane, len(share), fresh)

    def ready(self, batch: int) -> bool:
        """Whether batches of `batch` patches run without a compile: every lane's function is captured. A build of
        that size that failed in the background raises its error here."""
        if (build := self._builds.get(batch)) is not None and build.done() and not build.cancelled():
            build.result()
        return all(len(share) in lane.jits for lane, share in zip(self.lanes, self._shares(batch), strict=True))

    def traffic(self, frame_shape: tuple[int, ...], cols: int | None = None) -> tuple[int, int]:
        """Bytes uploaded and downloaded per frame when every cell goes through the network. Host path: the
        patches, previous emoji and margin up, the emoji down; device path: the frame and three numbers up, the
        emoji frame and each cell's emoji (and the moved count) down."""
        grid, lanes = self.grid_for(frame_shape, cols), len(self.lanes)
        if self.on_device:
            width, height = grid.output_size
            return frame_shape[0] * frame_shape[1] * 3 + 3 * 4, width * height * 3 + (grid.count + 1) * 4
        return grid.count * (self.patch_px**2 * 3 + 4 + 4) + lanes * 4, grid.count * 4

    def grid_ready(self, frame_shape: tuple[int, ...], cols: int | None = None) -> bool:
        """Whether frames of this shape at this grid run without a compile (the whole grid's batch, or on the
        device path its frame function)."""
        grid = self.grid_for(frame_shape, cols)
        if self.on_device:
            key = (*frame_shape[:2], grid)
            if key not in self._frames and (build := self._builds.get(key)) is not None and build.done():
                build.result()  # a build that failed in the background raises its error here
            return key in self._frames
        return self.ready(grid.count)

    def prepare_grid(self, frame_shape: tuple[int, ...], cols: int | None = None) -> None:
        """prepare for frames of this shape at this grid: in the background, returns at once (see grid_ready)."""
        grid = self.grid_for(frame_shape, cols)
        if self.on_device:
            key = (*frame_shape[:2], grid)
            if key not in self._builds:
                self._builds[key] = self._builder.submit(self._build_frame, key)
        else:
            self.prepare(grid.count)

    def prepare(self, cells: int) -> None:
        """Compile (or load from the JIT cache) in the background every batch size a grid of `cells` cells uses,
        the whole grid first; returns at once (see ready). Builds queued for other sizes and not yet started go
        back in the queue behind these: the grid asked for last is the one the user waits for."""
        wanted = sorted(batch_sizes(cells), reverse=True)
        for batch, build in list(self._builds.items()):
            if isinstance(batch, int) and batch not in wanted and build.cancel():
                del self._builds[batch]
        for batch in wanted:
            self._queue_build(batch)

    def preparing(self) -> bool:
        """Whether a background build is queued or running."""
        return any(not build.done() for build in self._builds.values())

    def _queue_build(self, batch: int, fresh: bool = False) -> Future:
        build = self._builds.get(batch)
        if fresh or build is None or build.cancelled() or (build.done() and build.exception() is not None):
            build = self._builds[batch] = self._builder.submit(self._build, batch, fresh)
        return build

    def _ensure(self, batch: int) -> None:
        """Wait until batches of `batch` patches are ready, building them now if no build is queued."""
        if not self.ready(batch):
            self._queue_build(batch).result()

    def scores(self, x: Tensor, lane: int = 0, cells: Tensor | None = None) -> Tensor:
        """(N, K) score of each emoji for each patch: the network's log-probability, minus how far the tile's
        mean colour as drawn is from the patch's (squared, 0..1 units), plus a bonus for covering the tile, plus
        the variety dither of each patch's cell (cells: (N,) int32 cell indices; None = 0..N-1, a whole grid). The
        log-probability is taken as the logit: they differ by the same amount for every emoji of a patch, which
        cancels in everything the engine does with scores (argmax, the hysteresis gap), and saves a log-softmax."""
        on = self.lanes[lane]
        logp = on.net.logits(x)
        cfg = self.settings
        if cfg.variety > 0:
            cells = Tensor(np.arange(x.shape[0], dtype=np.int32), device=x.device) if cells is None else cells
            logp = logp + cfg.variety * dither(cells, on.emoji_keys)
        if cfg.colour_weight == 0 and cfg.coverage_weight == 0:
            return logp
        patch_mean = on.net.mean_colours(x).unsqueeze(1)  # (N, 1, 3) RGB
        emoji, uncovered = on.emoji_rgb.unsqueeze(0), 1 - on.emoji_cover.reshape(1, -1, 1)
        if cfg.background == "auto":
            background = auto_background(patch_mean, emoji, uncovered)
        else:
            background = 0.0 if cfg.background == "black" else 255.0
        drawn = emoji + uncovered * background
        colour_err = ((drawn - patch_mean) * (1 / 255)).square().sum(2)
        return logp - cfg.colour_weight * colour_err + cfg.coverage_weight * on.emoji_cover.unsqueeze(0)

    def _shares(self, batch: int) -> list[np.ndarray]:
        """The indices of a batch each lane takes: equal parts, in lane order."""
        return np.array_split(np.arange(batch), len(self.lanes))

    def searched(self, batch: int) -> int:
        """The BEAM width the kernels for batches of `batch` patches were searched with (0 = tinygrad's default
        heuristics; >0 after `emojicam tune`), once that batch size has run."""
        return min(lane.beam.get(len(share), 0) for lane, share in zip(self.lanes, self._shares(batch), strict=True))

    def tune(self, batch: int, beam: int = 2) -> None:
        """Compile the frame function for batches of `batch` patches again with tinygrad's kernel search (BEAM) at
        this width, and store it in this machine's JIT cache in place of the default one: later processes load the
        searched kernels without searching (`emojicam tune`). The search times candidate kernels on the device, so
        it takes minutes and wants an otherwise idle machine. beam=0 stores tinygrad's default kernels again."""
        with Context(BEAM=beam):
            self._queue_build(batch, fresh=True).result()

    def warm_up(self, cells: int) -> None:
        """Compile (or load from the JIT cache) the frame function for every batch size a grid of `cells` cells
        uses in video, and wait: all of them, and the 1/8, 1/4, 1/2 batches of cells that changed."""
        for batch in batch_sizes(cells):
            self._ensure(batch)

    def classify(self, patches: np.ndarray, prev: np.ndarray | None = None,
                 cells: np.ndarray | None = None) -> np.ndarray:
        """(N, P, P, 3) uint8 RGB patches -> (N,) int32 emoji indices; prev enables stability; cells: each patch's
        cell index in its grid (for the variety dither; None = 0..N-1, a whole grid). Compiles (or loads) the
        function for this batch size first if needed."""
        return self._forward(patches, prev, cells)[0]

    def _forward(self, patches: np.ndarray, prev: np.ndarray | None = None,
                 cells: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, float]]:
        """classify, and its upload/forward/download milliseconds. The batch is split in equal parts across the
        lanes (one per core on CPU), which run at the same time."""
        self._ensure(len(patches))
        t0 = time.perf_counter()
        stable = prev is not None and self.settings.stability > 0
        margin = np.array([self.settings.stability if stable else -np.inf], np.float32)
        prev = prev.astype(np.int32) if stable else np.zeros(len(patches), np.int32)
        cells = np.arange(len(patches), dtype=np.int32) if cells is None else cells.astype(np.int32)
        parts = self._shares(len(patches))
        inputs = [lane.upload(patches[part], cells[part], prev[part], margin)
                  for lane, part in zip(self.lanes, parts, strict=True)]
        t1 = time.perf_counter()
        if self._pool is None:
            outs = [self._run(0, inputs[0])]
        else:
            outs = list(self._pool.map(self._run, range(len(self.lanes)), inputs))
        t2 = time.perf_counter()
        indices = np.concatenate([lane.download(out) for lane, out in zip(self.lanes, outs, strict=True)])
        t3 = time.perf_counter()
        return indices, {"upload": (t1 - t0) * 1e3, "forward": (t2 - t1) * 1e3, "download": (t3 - t2) * 1e3}

    def _run(self, lane: int, inputs: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """One lane's forward pass (a replay of its captured function), finished on its device."""
        out = self.lanes[lane].jits[inputs[0].shape[0]](*inputs)
        Device[self.lanes[lane].device].synchronize()
        return out

    def _classify_moved(self, patches: np.ndarray, moved: np.ndarray, prev: np.ndarray,
                        wait: bool) -> tuple[np.ndarray, dict[str, float]]:
        """Only the cells marked moved go through the network, padded to one of four batch sizes (1/8, 1/4, 1/2,
        all cells) so that at most four compiled shapes exist per grid; the others keep their previous emoji.
        wait=False never waits for a compile: the cells go into the smallest batch size already compiled (the
        whole grid's is), and the one they fit is prepared in the background."""
        moved = np.flatnonzero(moved)
        indices = prev.copy()
        if moved.size == 0:
            return indices, dict.fromkeys(("upload", "forward", "download"), 0.0)
        fits = [b for b in batch_sizes(len(patches)) if b >= moved.size]
        batch = fits[0] if wait else next((b for b in fits if self.ready(b)), fits[-1])
        if batch != fits[0]:
            self._queue_build(fits[0])
        take = np.concatenate([moved, np.repeat(moved[:1], batch - moved.size)])
        picked, ms = self._forward(patches[take], prev[take], take)
        indices[moved] = picked[:moved.size]
        return indices, ms

    def render(self, picked: EmojiFrame, frame: np.ndarray) -> EmojiFrame:
        """Composite the chosen emoji tiles of a picked frame; `auto` gives each tile the background that brings
        its mean colour to its cell's (see auto_background). Reads nothing pick writes: safe in another thread.
        On the device path the frame came composited: returned as it is."""
        if picked.image is not None:
            return picked
        t0 = time.perf_counter()
        grid, indices = picked.grid, picked.indices
        if self.settings.background == "auto":
            uncovered = 1 - self._tile_cover[indices, None]
            back = auto_background(cell_means(frame, grid), self._tile_bgr[indices], uncovered).astype(np.float32)
            # premult + (1 - alpha) * background, rounded: the emoji planes composed first (alpha has one channel),
            # the background blown up to the frame by cv2, then one multiply-add in float32 over the frame: 14.6
            # -> 8.0 ms at 64x36 (the per-tile float64 expression before), same pixels
            background = cv2.resize(back.reshape(grid.rows, grid.cols, 3), grid.output_size,
                                    interpolation=cv2.INTER_NEAREST)
            out = compose(self._tile_uncover[indices], grid) * background
            out += compose(self._tile_premult[indices], grid)
            out = out.astype(np.uint8)
        else:
            out = compose(self.emoji_set.blended_atlas(grid.tile_px, self.settings.background)[indices], grid)
        return replace(picked, image=out, stage_ms={**picked.stage_ms, "composite": (time.perf_counter() - t0) * 1e3})

    def __call__(self, frame: np.ndarray, cols: int | None = None, wait: bool = True) -> EmojiFrame:
        """One BGR uint8 frame -> its emoji frame (in .image); consecutive calls share stability state (see pick)."""
        return self.render(self.pick(frame, cols, wait), frame)

    def pick(self, frame: np.ndarray, cols: int | None = None, wait: bool = True) -> EmojiFrame:
        """One BGR uint8 frame -> its grid and the emoji of each cell, without compositing (render does that);
        consecutive calls share stability state. A cell whose patch is bit for bit the previous frame's keeps its
        emoji without a forward pass: the network would score it as before, and with or without stability it would
        pick what it picked then, so this is exact (static scenes, letterboxes and encoders' skipped blocks repeat
        pixels exactly). With still_threshold > 0 (live), cells whose thumbnail moved no more than that since their
        emoji was picked are skipped too (slow drift adds up and is caught). wait=False: see _classify_moved."""
        grid = self.grid_for(frame.shape, cols)
        if self.on_device:
            return self._pick_on_device(frame, grid)
        t0 = time.perf_counter()
        patches = cut_patches(frame, grid, self.patch_px)
        cut_ms = (time.perf_counter() - t0) * 1e3
        threshold = self.settings.still_threshold
        thumbs = thumbnails(frame, grid) if threshold > 0 else None
        if self._prev is None or self._prev.grid != grid:
            (indices, ms), skipped = self._forward(patches), 0.0
        else:
            prev = self._prev
            if thumbs is None:
                # compared as whole rows (8 bytes at a time where the patch size allows): 1 ms for a 64x36 grid
                row = next(t for t in (np.uint64, np.uint32, np.uint8) if patches[0].nbytes % np.dtype(t).itemsize == 0)
                moved = (patches.reshape(grid.count, -1).view(row) !=
                         prev.patches.reshape(grid.count, -1).view(row)).any(1)
            else:
                moved = np.abs(thumbs - prev.thumbs).max(1) > threshold
                thumbs = np.where(moved[:, None], thumbs, prev.thumbs)  # per cell, the thumbnail its emoji fits
            indices, ms = self._classify_moved(patches, moved, prev.indices, wait)
            skipped = 1 - int(moved.sum()) / grid.count
        self._prev = Previous(grid, indices, patches, thumbs)
        return EmojiFrame(grid, indices, skipped, {"cut": cut_ms, **ms})

    def _pick_on_device(self, frame: np.ndarray, grid: Grid) -> EmojiFrame:
        """The device path: frame up, one compiled function, emoji frame and each cell's emoji down."""
        key = (*frame.shape[:2], grid)
        if key not in self._frames:
            if (build := self._builds.get(key)) is not None and build.done():
                del self._builds[key]  # it failed: try again, and let its error show this time
            self.prepare_grid(frame.shape, grid.cols)
            self._builds[key].result()
        built, on_host = self._frames[key], self.lanes[0].on_host
        first = self._last_frame_key != key
        stable = not first and self.settings.stability > 0
        t0 = time.perf_counter()
        write_into(built.frame, frame, on_host)
        write_into(built.params, np.array([self.settings.stability if stable else -np.inf,
                                           self.settings.still_threshold, float(first)], np.float32), on_host)
        t1 = time.perf_counter()
        image, report = built.jit(built.frame, built.params)
        Device[self.device].synchronize()
        t2 = time.perf_counter()
        out = read_from(image, np.uint8, on_host).reshape(image.shape)
        report = read_from(report, np.int32, on_host)
        t3 = time.perf_counter()
        self._last_frame_key = key
        ms = {"cut": 0.0, "upload": (t1 - t0) * 1e3, "forward": (t2 - t1) * 1e3, "download": (t3 - t2) * 1e3,
              "composite": 0.0}
        return EmojiFrame(grid, report[:-1], 0.0 if first else 1 - report[-1] / grid.count, ms, out)

    def reset(self) -> None:
        """Forget the previous frame (start of a new video or after a cut)."""
        self._prev = None
        self._last_frame_key = None
