"""Emojifier: BGR frame in, emoji frame out. Two paths with one interface, side by side below:

    HostPath    (CPU devices)  cut patches with OpenCV -> still cells (Previous) -> the network on lanes (lanes.py)
                               -> composite with numpy (compositor.py)
    DevicePath  (GPUs)         the whole frame in one compiled function (device_frame.py): frame up, emoji frame down

Emojifier is the one engine every command uses (made by open_engine, closed by `with`): it picks the path
(--composite) and gives the frame loops in video.py and mirror.py the same calls whichever runs: pick, render,
prepare_grid / grid_ready / progress, reset; pick_still for stills (text); classify, tune and launches for the
tools (tune, bench, the kernel check).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tinygrad import Device, Tensor
from tinygrad.nn.state import get_state_dict

from emojicam import jit_cache, model
from emojicam.builder import Builder, on_compile_thread
from emojicam.caches import open_caches
from emojicam.closing import Closing
from emojicam.compositor import Compositor, TileArrays, tile_arrays
from emojicam.device_frame import DeviceFrame, Tiles, frame_function
from emojicam.devices import default_device, on_host, read_from, runs_on_cpu, write_into
from emojicam.emoji_set import EmojiSet, shipped_set
from emojicam.errors import EmojicamError
from emojicam.gpu_kernels import Launches, launches
from emojicam.grid import Grid, cut_patches, thumbnails
from emojicam.lanes import Lanes
from emojicam.model import Checkpoint
from emojicam.scoring import Scorer, moved_cells
from emojicam.settings import COMPOSITES, ModelChoice, Settings

__all__ = ["COMPOSITES", "STAGES", "EmojiFrame", "Emojifier", "Settings", "resolve_device"]
STAGES = ("cut", "upload", "forward", "download", "composite")


def resolve_device(device: str | None) -> str:
    """Canonical tinygrad device name that works here (None: devices.default_device), or a one-line
    EmojicamError."""
    open_caches()  # before tinygrad picks a device: picking one compiles
    name = default_device().name if device is None else device.upper()
    try:
        name = Device.canonicalize(name)
        Tensor([1.0], device=name).add(1).realize().numpy()
    except Exception as e:  # tinygrad raises many types when a backend is missing
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise EmojicamError(f"--device: expected a working tinygrad device (see `emojicam devices`), "
                            f"got {device or name}: {msg}") from None
    return name


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
    """What the host path keeps of the previous frame for the next one."""

    grid: Grid
    indices: np.ndarray  # (N,) the emoji shown
    patches: np.ndarray  # (N, P, P, 3) the patches cut from it
    thumbs: np.ndarray | None  # (N, 108) with still_threshold > 0: per cell, the thumbnail its emoji was picked on

    def moved(self, patches: np.ndarray, thumbs: np.ndarray | None,
              threshold: float) -> tuple[np.ndarray, np.ndarray | None]:
        """(N,) bool: the cells of this frame that changed since their emoji was picked, and per cell the
        thumbnail its emoji now fits. Without thumbnails, exact: the patch is not bit for bit the previous one.
        With them, the thumbnail moved by more than threshold from the one the emoji was picked on (slow drift adds
        up)."""
        if thumbs is None:
            return moved_cells(patches, self.patches, 0), None
        moved = moved_cells(thumbs, self.thumbs, threshold)
        return moved, np.where(moved[:, None], thumbs, self.thumbs)


@dataclass(frozen=True)
class Cut:
    """A frame made ready for its pick (Emojifier.cut): on the host path its patches (and thumbnails) cut, which
    depends on nothing earlier, so it can run in another thread ahead of the picks; the device path cuts on the
    device, and keeps only the frame."""

    frame: np.ndarray  # BGR uint8
    grid: Grid
    patches: np.ndarray | None = None  # (N, P, P, 3) RGB, host path
    thumbs: np.ndarray | None = None  # (N, 108) with still_threshold > 0, host path
    ms: float = 0.0


class HostPath:
    """Cut on the host, the network on lanes, composite on the host: the path for CPU devices."""

    def __init__(self, lanes: Lanes, tiles: TileArrays, settings: Settings):
        self._lanes, self._compositor, self._settings = lanes, Compositor(tiles), settings
        self._prev: Previous | None = None

    def ready(self, frame_shape: tuple[int, ...], grid: Grid) -> bool:
        return self._lanes.ready(grid.count)

    def prepare(self, frame_shape: tuple[int, ...], grid: Grid) -> None:
        self._lanes.prepare(grid.count)

    def progress(self, frame_shape: tuple[int, ...], grid: Grid) -> tuple[int, int]:
        return self._lanes.progress(grid.count)

    def launches(self, frame_shape: tuple[int, ...], grid: Grid) -> Launches:
        return self._lanes.launches(grid.count)

    def traffic(self, frame_shape: tuple[int, ...], grid: Grid) -> tuple[int, int]:
        """The patches, cell indices, previous emoji and margin up; the emoji down."""
        px = self._lanes.patch_px
        return grid.count * (px**2 * 3 + 4 + 4) + len(self._lanes.devices) * 4, grid.count * 4

    def cut(self, frame: np.ndarray, grid: Grid) -> Cut:
        t0 = time.perf_counter()
        patches = cut_patches(frame, grid, self._lanes.patch_px)
        thumbs = thumbnails(frame, grid) if self._settings.still_threshold > 0 else None
        return Cut(frame, grid, patches, thumbs, (time.perf_counter() - t0) * 1e3)

    def pick(self, cut: Cut, wait: bool) -> EmojiFrame:
        grid, patches, thumbs, threshold = cut.grid, cut.patches, cut.thumbs, self._settings.still_threshold
        if self._prev is None or self._prev.grid != grid:
            got, skipped = self._lanes.classify(patches), 0.0
        else:
            moved, thumbs = self._prev.moved(patches, thumbs, threshold)
            got = self._lanes.classify_moved(patches, moved, self._prev.indices, wait)
            skipped = 1 - int(moved.sum()) / grid.count
        self._prev = Previous(grid, got.indices, patches, thumbs)
        return EmojiFrame(grid, got.indices, skipped, {"cut": cut.ms, **got.ms})

    def render(self, picked: EmojiFrame, frame: np.ndarray) -> EmojiFrame:
        t0 = time.perf_counter()
        image = self._compositor.render(picked.grid, picked.indices, frame)
        return replace(picked, image=image, stage_ms={**picked.stage_ms, "composite": (time.perf_counter() - t0) * 1e3})

    def reset(self) -> None:
        self._prev = None


class DevicePath:
    """The whole frame in one compiled function per frame size and grid, its state kept inside it: for GPUs."""

    def __init__(self, scorer: Scorer, tiles: TileArrays, settings: Settings, patch_px: int, cache_parts: tuple,
                 builder: Builder):
        dev = self.device = scorer.device
        self._scorer, self._settings, self._patch_px = scorer, settings, patch_px
        self._cache_parts, self._builder = cache_parts, builder
        self._tiles = Tiles.upload(tiles, dev)
        self._frames: dict[tuple[int, int, Grid], DeviceFrame] = {}
        self._last: tuple[int, int, Grid] | None = None  # the frame function that ran last (None: forget)

    def _build(self, key: tuple[int, int, Grid]) -> None:
        """Compile the frame function for this frame size and grid (two calls: run, capture), or load it from
        this machine's JIT cache. Its state lives inside it, so a loaded one needs only new inputs."""
        h, w, grid = key
        still = self._settings.still_threshold > 0
        built = frame_function(self._scorer.scores, self._tiles, (h, w, 3), grid, still, self.device,
                               self._patch_px)
        cache_key = jit_cache.cache_key(self.device, *self._cache_parts, "frame", h, w, grid.cols, grid.rows, still)
        if cached := jit_cache.load(cache_key):
            built = DeviceFrame(cached[0], built.frame, built.params)
        else:
            for _ in range(2):
                built.jit(built.frame, built.params)
            jit_cache.save(cache_key, built.jit)
        Device[self.device].synchronize()
        self._frames[key] = built

    def _queue(self, key: tuple[int, int, Grid]):
        return self._builder.queue(("frame", key), lambda: self._build(key))

    def ready(self, frame_shape: tuple[int, ...], grid: Grid) -> bool:
        key = (*frame_shape[:2], grid)
        if key not in self._frames:
            self._builder.raise_failed(("frame", key))  # a build that failed in the background raises here
        return key in self._frames

    def prepare(self, frame_shape: tuple[int, ...], grid: Grid) -> None:
        self._queue((*frame_shape[:2], grid))

    def progress(self, frame_shape: tuple[int, ...], grid: Grid) -> tuple[int, int]:
        return int((*frame_shape[:2], grid) in self._frames), 1

    def launches(self, frame_shape: tuple[int, ...], grid: Grid) -> Launches:
        key = (*frame_shape[:2], grid)
        self._queue(key).result()
        return launches(self._frames[key].jit)

    def traffic(self, frame_shape: tuple[int, ...], grid: Grid) -> tuple[int, int]:
        """The frame and three numbers up; the emoji frame and each cell's emoji (and the moved count) down."""
        width, height = grid.output_size
        return frame_shape[0] * frame_shape[1] * 3 + 3 * 4, width * height * 3 + (grid.count + 1) * 4

    def cut(self, frame: np.ndarray, grid: Grid) -> Cut:
        return Cut(frame, grid)

    def pick(self, cut: Cut, wait: bool) -> EmojiFrame:
        """Frame up, one compiled function, emoji frame and each cell's emoji down (a new frame size or grid waits
        for its function: the live loop asks ready() first)."""
        frame, grid = cut.frame, cut.grid
        key = (*frame.shape[:2], grid)
        if key not in self._frames:
            self._queue(key).result()  # a failed build is tried again here, and its error shows
        built, host = self._frames[key], on_host(self.device)
        first = self._last != key
        stable = not first and self._settings.stability > 0
        t0 = time.perf_counter()
        write_into(built.frame, frame, host)
        write_into(built.params, np.array([self._settings.stability if stable else -np.inf,
                                           self._settings.still_threshold, float(first)], np.float32), host)
        t1 = time.perf_counter()
        image, report = built.jit(built.frame, built.params)
        Device[self.device].synchronize()
        t2 = time.perf_counter()
        out = read_from(image, np.uint8, host).reshape(image.shape)
        report = read_from(report, np.int32, host)
        t3 = time.perf_counter()
        self._last = key
        ms = {"cut": 0.0, "upload": (t1 - t0) * 1e3, "forward": (t2 - t1) * 1e3, "download": (t3 - t2) * 1e3,
              "composite": 0.0}
        return EmojiFrame(grid, report[:-1], 0.0 if first else 1 - report[-1] / grid.count, ms, out)

    def render(self, picked: EmojiFrame, frame: np.ndarray) -> EmojiFrame:
        return picked  # composited on the device already

    def reset(self) -> None:
        self._last = None


class Emojifier(Closing):
    """Turns frames into emoji frames with one TinyJit-compiled function per grid shape, on the host path or the
    device path (see the module's docstring); the network on lanes serves classify() on either."""

    def __init__(self, ckpt: Checkpoint, emoji_set: EmojiSet, settings: Settings):
        emoji_set.check_trained_on(ckpt.set_fingerprint, ckpt.class_names)
        open_caches()
        self.model, self.emoji_set, self.settings = ckpt.model, emoji_set, settings
        self.patch_px = ckpt.model.config.patch_px
        tiles = tile_arrays(emoji_set, settings.tile_px, settings.background)
        builder = self._builder = Builder()

        def make_paths() -> tuple[str, bool, Lanes, HostPath | DevicePath]:
            """The device check and the device tensors, made on the compile thread: never while another engine's
            JIT captures (see builder.py)."""
            device = resolve_device(settings.device)
            weights = hashlib.sha256(b"".join(t.numpy().tobytes() for t in get_state_dict(ckpt.model).values()))
            renderer = Device[device].renderer  # the code differs by renderer and target (PYTHON::METAL, NULL:WGSL)
            cache_parts = (f"{type(renderer).__name__}:{renderer.target!r}", settings.tile_px, settings.background,
                           settings.colour_weight, settings.coverage_weight, settings.variety, emoji_set.fingerprint,
                           weights.hexdigest())
            lanes = Lanes(ckpt.model, device, tiles, settings, cache_parts, builder)
            on_device = settings.composite == "device" or (settings.composite == "auto" and not runs_on_cpu(device))
            return device, on_device, lanes, (
                DevicePath(lanes.scorer, tiles, settings, self.patch_px, cache_parts, builder) if on_device
                else HostPath(lanes, tiles, settings))

        self.device, self.on_device, self.lanes, self._path = on_compile_thread(make_paths)

    @property
    def lane_devices(self) -> list[str]:
        """The devices a batch of patches is split across (one per core on tinygrad's CPU device)."""
        return self.lanes.devices

    @property
    def scheduled(self) -> bool:
        """Whether the network runs emojicam's CPU-scheduled kernels (kernels.py) rather than tinygrad's own."""
        return self.lanes.scheduled

    def grid_for(self, frame_shape: tuple[int, ...], cols: int | None = None) -> Grid:
        return Grid.for_frame(frame_shape, cols or self.settings.cols, self.settings.tile_px)

    def pick(self, frame: np.ndarray, cols: int | None = None, wait: bool = True) -> EmojiFrame:
        """One BGR uint8 frame -> its grid and the emoji of each cell, without compositing (render does that);
        consecutive calls share stability state. A cell whose patch is bit for bit the previous frame's keeps its
        emoji without a forward pass: the network would score it as before, and with or without stability it would
        pick what it picked then, so this is exact (static scenes, letterboxes and encoders' skipped blocks repeat
        pixels exactly). With still_threshold > 0 (live), cells whose thumbnail moved no more than that since their
        emoji was picked are skipped too (slow drift adds up and is caught). wait=False (host path): never wait for
        the compile of a batch size of moved cells (see Lanes.classify_moved). The device path composites here."""
        return self.pick_cut(self.cut(frame, cols), wait)

    def cut(self, frame: np.ndarray, cols: int | None = None) -> Cut:
        """The first step of pick: on the host path the frame's patches cut for the network. Reads no state, so a
        video's next frames can be cut in another thread while this one goes through the network (pick_cut)."""
        return self._path.cut(frame, self.grid_for(frame.shape, cols))

    def pick_cut(self, cut: Cut, wait: bool = True) -> EmojiFrame:
        """pick, for a frame cut already (see cut); picks must come in frame order."""
        return self._path.pick(cut, wait)

    def render(self, picked: EmojiFrame, frame: np.ndarray) -> EmojiFrame:
        """Composite the chosen emoji tiles of a picked frame (see Compositor.render). Reads nothing pick writes:
        safe in another thread. On the device path the frame came composited: returned as it is."""
        return self._path.render(picked, frame)

    def __call__(self, frame: np.ndarray, cols: int | None = None, wait: bool = True) -> EmojiFrame:
        """One BGR uint8 frame -> its emoji frame (in .image); consecutive calls share stability state (see pick)."""
        return self.render(self.pick(frame, cols, wait), frame)

    def grid_ready(self, frame_shape: tuple[int, ...], cols: int | None = None) -> bool:
        """Whether frames of this shape at this grid run without a compile (the whole grid's batch, or on the
        device path its frame function). A build that failed in the background raises its error here."""
        return self._path.ready(frame_shape, self.grid_for(frame_shape, cols))

    def prepare_grid(self, frame_shape: tuple[int, ...], cols: int | None = None) -> None:
        """Prepare for frames of this shape at this grid in the background; returns at once (see grid_ready)."""
        self._path.prepare(frame_shape, self.grid_for(frame_shape, cols))

    def progress(self, frame_shape: tuple[int, ...], cols: int | None = None) -> tuple[int, int]:
        """(done, needed): how many of the builds that frames of this shape at this grid need before they run are
        ready (the host path: one per lane; the device path: the frame function)."""
        return self._path.progress(frame_shape, self.grid_for(frame_shape, cols))

    def pick_still(self, frame: np.ndarray, cols: int | None = None, batch: int | None = None) -> EmojiFrame:
        """A still's grid and emoji, without the previous frame (no stability, no skipped cells); its patches go
        through the network in a batch padded to `batch` patches (None: the grid's), so that stills at several grids
        share one compiled shape (text's --max-chars search tries 2-5 grids)."""
        grid = self.grid_for(frame.shape, cols)
        patches = cut_patches(frame, grid, self.patch_px)
        pad = max(0, (batch or grid.count) - grid.count)
        got = self.lanes.classify(np.concatenate([patches, np.zeros((pad, *patches.shape[1:]), np.uint8)]))
        return EmojiFrame(grid, got.indices[:grid.count], 0.0, got.ms)

    def traffic(self, frame_shape: tuple[int, ...], cols: int | None = None) -> tuple[int, int]:
        """Bytes uploaded and downloaded per frame when every cell goes through the network."""
        return self._path.traffic(frame_shape, self.grid_for(frame_shape, cols))

    def launches(self, frame_shape: tuple[int, ...], cols: int | None = None) -> Launches:
        """What the device runs for a frame of this shape at this grid when every cell goes through the network:
        the kernels (launch sizes, buffers, FLOPs, bytes) of the compiled function (the host path: one lane's
        network and scores for the whole grid; the device path: the frame function). Builds it first if needed."""
        return self._path.launches(frame_shape, self.grid_for(frame_shape, cols))

    def reset(self) -> None:
        """Forget the previous frame (start of a new video or after a cut)."""
        self._path.reset()

    def close(self) -> None:
        """Release the engine: queued builds are dropped, a running build's helper process is stopped (so quitting
        never waits for a grid nobody will see) and the lanes' threads end. Every command closes its engine (with)."""
        self._builder.close()
        self.lanes.close()

    def classify(self, patches: np.ndarray, prev: np.ndarray | None = None,
                 cells: np.ndarray | None = None) -> np.ndarray:
        """(N, P, P, 3) uint8 RGB patches -> (N,) int32 emoji indices; prev enables stability; cells: each patch's
        cell index in its grid (for the variety dither; None = 0..N-1, a whole grid). Compiles (or loads) the
        function for this batch size first if needed."""
        return self.lanes.classify(patches, prev, cells).indices

    def warm_up(self, cells: int) -> None:
        """Compile (or load) the host path's function for every batch size a grid of `cells` cells uses in video,
        and wait (see Lanes.warm_up)."""
        self.lanes.warm_up(cells)

    def tune(self, batch: int, beam: int = 2) -> None:
        """Search the kernels for batches of `batch` patches with tinygrad's BEAM and store them (see Lanes.tune)."""
        self.lanes.tune(batch, beam)

    def searched(self, batch: int) -> int:
        return self.lanes.searched(batch)


def model_files(choice: ModelChoice, on_cpu: bool, real_time: bool = False) -> tuple[Path, Path]:
    """(emoji set folder, weights file) that choice names for a CPU device or a GPU (see ModelChoice,
    model.auto_model)."""
    name = choice.model if choice.model != "auto" else model.auto_model(on_cpu, real_time)
    weights = choice.weights if choice.weights is not None else model.shipped_weights(choice.set_name, name)
    return (choice.emoji_set if choice.emoji_set is not None else shipped_set(choice.set_name)), weights


def open_engine(settings: Settings, choice: ModelChoice = ModelChoice(), real_time: bool = False) -> Emojifier:
    """Load the emoji set and weights that choice names and build the engine on settings' device (real_time: for
    the live mirror, see ModelChoice)."""
    device = resolve_device(settings.device)
    set_dir, weights = model_files(choice, runs_on_cpu(device), real_time)
    return Emojifier(model.load(weights, device), EmojiSet.load(set_dir), settings)
