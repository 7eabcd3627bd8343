"""Emojifier: BGR frame in, emoji frame out (patch cut, one batched forward, stability, compositing)."""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import cv2
import numpy as np
from tinygrad import Context, Device, Tensor, TinyJit, dtypes
from tinygrad.device import Buffer
from tinygrad.helpers import BEAM
from tinygrad.nn.state import get_state_dict

from emojicam import jit_cache
from emojicam.emoji_set import BACKGROUNDS, EmojiSet
from emojicam.errors import EmojicamError
from emojicam.grid import Grid, cell_means, check_tile_px, compose, cut_patches, thumbnails
from emojicam.kernels import InferenceNet
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
    jits: dict[int, TinyJit] = field(default_factory=dict)
    beam: dict[int, int] = field(default_factory=dict)  # batch size -> BEAM width its kernels were searched with
    inputs: dict[int, tuple[Tensor, ...]] = field(default_factory=dict)

    def upload(self, *arrays: np.ndarray) -> tuple[Tensor, ...]:
        """The batch's input tensors holding these arrays. The tensors are made once per batch size; later frames
        are written into their buffers: in place on the CPU device, else with one copy. Building and realizing
        new tensors from numpy cost tinygrad 2-3 ms per array."""
        if (inputs := self.inputs.get(len(arrays[0]))) is None:
            inputs = self.inputs[len(arrays[0])] = tuple(Tensor(a, device=self.device).realize() for a in arrays)
            return inputs
        for tensor, a in zip(inputs, arrays, strict=True):
            buf, data = tensor.uop.buffer, memoryview(np.ascontiguousarray(a)).cast("B")
            if self.on_host:
                buf.as_memoryview(force_zero_copy=True)[:] = data  # synchronizes with the device first
            else:
                buf.copy_from(Buffer("PYTHON", buf.size, buf.dtype, opaque=data))
        return inputs

    def download(self, out: Tensor) -> np.ndarray:
        """A finished output tensor as a numpy copy (read in place on the CPU device)."""
        return np.frombuffer(out.uop.buffer.as_memoryview(force_zero_copy=self.on_host), np.int32).copy()

    @property
    def on_host(self) -> bool:
        """tinygrad's CPU device: its buffers are host memory that numpy can read and write in place (GPU
        backends may keep theirs where the host cannot see them)."""
        return self.device.split(":")[0] == "CPU"


@dataclass(frozen=True)
class Previous:
    """What the engine keeps of the previous frame for the next one."""

    grid: Grid
    indices: np.ndarray  # (N,) the emoji shown
    patches: np.ndarray  # (N, P, P, 3) the patches cut from it
    thumbs: np.ndarray | None  # (N, 108) with still_threshold > 0: per cell, the thumbnail its emoji was picked on


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
        for flag, value in (("--stability", settings.stability), ("--still-threshold", settings.still_threshold)):
            if not value >= 0:
                raise EmojicamError(f"{flag}: expected a number >= 0, got {value}")
        self.device = resolve_device(settings.device)
        self.model, self.emoji_set, self.settings = ckpt.model, emoji_set, settings
        self.patch_px = ckpt.model.config.patch_px
        self._unsaved: dict[tuple[int, int], str] = {}  # (lane, batch) -> cache key of a JIT not yet in jit_cache
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
        self._prev: Previous | None = None
        self.skipped = 0.0  # share of the last frame's cells that kept their emoji without a forward pass
        self.timings_ms: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    def grid_for(self, frame_shape: tuple[int, ...], cols: int | None = None) -> Grid:
        return Grid.for_frame(frame_shape, cols or self.settings.cols, self.settings.tile_px)

    def _jit(self, lane: int, batch: int, fresh: bool = False) -> TinyJit:
        """The compiled function for a lane's batch of patches, from this machine's JIT cache when an earlier
        process captured it (unless fresh): the best-scoring emoji per patch, unless it beats the patch's previous
        emoji by no more than margin (hysteresis; a margin of -inf, as on a first frame, always takes the best)."""
        jits = self.lanes[lane].jits
        if batch in jits and not fresh:
            return jits[batch]
        key = jit_cache.cache_key(self.lanes[lane].device, *self._cache_parts, batch)
        if not fresh and (cached := jit_cache.load(key)):
            jits[batch], self.lanes[lane].beam[batch] = cached
        else:
            self._unsaved[lane, batch] = key

            def pick(x: Tensor, cells: Tensor, prev: Tensor, margin: Tensor) -> Tensor:
                score = self.scores(x, lane, cells)
                best = score.argmax(1).cast(dtypes.int32)
                gap = score.max(1) - score.gather(1, prev.unsqueeze(1)).squeeze(1)
                return (gap > margin).where(best, prev).realize()

            jits[batch] = TinyJit(pick)
        return jits[batch]

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
        for lane, share in enumerate(self._shares(batch)):
            self._jit(lane, len(share), fresh=True)
        with Context(BEAM=beam):
            self.classify(np.zeros((batch, self.patch_px, self.patch_px, 3), np.uint8))

    def warm_up(self, cells: int) -> None:
        """Compile (or load from the JIT cache) the frame function for every batch size a grid of `cells` cells
        uses in video: all of them, and the 1/8, 1/4, 1/2 batches of cells that changed."""
        for batch in batch_sizes(cells):
            self.classify(np.zeros((batch, self.patch_px, self.patch_px, 3), np.uint8))

    def classify(self, patches: np.ndarray, prev: np.ndarray | None = None,
                 cells: np.ndarray | None = None) -> np.ndarray:
        """(N, P, P, 3) uint8 RGB patches -> (N,) int32 emoji indices; prev enables stability; cells: each patch's
        cell index in its grid (for the variety dither; None = 0..N-1, a whole grid). The batch is split in equal
        parts across the lanes (one per core on CPU), which run at the same time."""
        t0 = time.perf_counter()
        stable = prev is not None and self.settings.stability > 0
        margin = np.array([self.settings.stability if stable else -np.inf], np.float32)
        prev = prev.astype(np.int32) if stable else np.zeros(len(patches), np.int32)
        cells = np.arange(len(patches), dtype=np.int32) if cells is None else cells.astype(np.int32)
        parts = self._shares(len(patches))
        inputs = [lane.upload(patches[part], cells[part], prev[part], margin)
                  for lane, part in zip(self.lanes, parts, strict=True)]
        t1 = time.perf_counter()
        jits = [self._jit(i, len(part)) for i, part in enumerate(parts)]
        if self._pool is None or any(jit.captured is None for jit in jits):
            outs = [self._run(i, jit, inputs[i]) for i, jit in enumerate(jits)]  # capture outside the pool
        else:
            outs = list(self._pool.map(self._run, range(len(jits)), jits, inputs))
        t2 = time.perf_counter()
        indices = np.concatenate([lane.download(out) for lane, out in zip(self.lanes, outs, strict=True)])
        t3 = time.perf_counter()
        self.timings_ms.update(upload=(t1 - t0) * 1e3, forward=(t2 - t1) * 1e3, download=(t3 - t2) * 1e3)
        return indices

    def _run(self, lane: int, jit: TinyJit, inputs: list[Tensor]) -> Tensor:
        """One lane's forward pass, finished on its device; the first call of a JIT also captures and caches it."""
        out = jit(*inputs)
        if jit.captured is None:  # run it again now so that it is captured (and cached) after its first frame
            out = jit(*inputs)
        batch = inputs[0].shape[0]
        if (key := self._unsaved.pop((lane, batch), None)) is not None:
            self.lanes[lane].beam[batch] = BEAM.value
            jit_cache.save(key, jit, BEAM.value)
        Device[self.lanes[lane].device].synchronize()
        return out

    def _classify_moved(self, patches: np.ndarray, moved: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """Only the cells marked moved go through the network, padded to one of four batch sizes (1/8, 1/4, 1/2,
        all cells) so that at most four compiled shapes exist per grid; the others keep their previous emoji."""
        moved = np.flatnonzero(moved)
        self.skipped = 1 - moved.size / len(patches)
        indices = prev.copy()
        if moved.size == 0:
            self.timings_ms.update(upload=0.0, forward=0.0, download=0.0)
            return indices
        batch = next(b for b in batch_sizes(len(patches)) if b >= moved.size)
        take = np.concatenate([moved, np.repeat(moved[:1], batch - moved.size)])
        indices[moved] = self.classify(patches[take], prev[take], take)[:moved.size]
        return indices

    def render(self, indices: np.ndarray, frame: np.ndarray, grid: Grid) -> np.ndarray:
        """Composite the chosen emoji tiles; `auto` gives each tile the background that brings its mean colour
        to its cell's (see auto_background)."""
        t0 = time.perf_counter()
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
        self.timings_ms["composite"] = (time.perf_counter() - t0) * 1e3
        return out

    def __call__(self, frame: np.ndarray, cols: int | None = None) -> np.ndarray:
        """One BGR uint8 frame -> its emoji frame; consecutive calls share stability state (see pick)."""
        grid, indices = self.pick(frame, cols)
        return self.render(indices, frame, grid)

    def pick(self, frame: np.ndarray, cols: int | None = None) -> tuple[Grid, np.ndarray]:
        """One BGR uint8 frame -> its grid and the emoji of each cell, without compositing (render does that);
        consecutive calls share stability state. A cell whose patch is bit for bit the previous frame's keeps its
        emoji without a forward pass: the network would score it as before, and with or without stability it would
        pick what it picked then, so this is exact (static scenes, letterboxes and encoders' skipped blocks repeat
        pixels exactly). With still_threshold > 0 (live), cells whose thumbnail moved no more than that since their
        emoji was picked are skipped too (slow drift adds up and is caught)."""
        grid = self.grid_for(frame.shape, cols)
        t0 = time.perf_counter()
        patches = cut_patches(frame, grid, self.patch_px)
        self.timings_ms["cut"] = (time.perf_counter() - t0) * 1e3
        threshold = self.settings.still_threshold
        thumbs = thumbnails(frame, grid) if threshold > 0 else None
        if self._prev is None or self._prev.grid != grid:
            indices, self.skipped = self.classify(patches), 0.0
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
            indices = self._classify_moved(patches, moved, prev.indices)
        self._prev = Previous(grid, indices, patches, thumbs)
        self.last_grid, self.last_indices = grid, indices
        return grid, indices

    def reset(self) -> None:
        """Forget the previous frame (start of a new video or after a cut)."""
        self._prev = None
