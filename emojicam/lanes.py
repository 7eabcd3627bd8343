"""The host path's network: each batch of patches split across lanes (a core each on tinygrad's CPU device), one
captured TinyJit per lane and batch size, compiled on the Builder's thread or loaded from the JIT cache."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tinygrad import Context, Device, Tensor, TinyJit
from tinygrad.helpers import BEAM

from emojicam import jit_cache
from emojicam.builder import Builder, capture
from emojicam.devices import kind, on_host, read_from, write_into
from emojicam.gpu_kernels import Launches, launches
from emojicam.kernels import InferenceNet, compiling
from emojicam.scoring import Scorer, pick_inputs

if TYPE_CHECKING:
    from emojicam.compositor import TileArrays
    from emojicam.model import ModelConfig, TinyConvNet
    from emojicam.settings import Settings

MAX_LANES = 8  # CPU device: default cap on the cores one batch is split across
CHILD_TIMEOUT_S = 600  # a child that compiles longer than this is stopped


def compiles_in_child(device: str) -> bool:
    """Whether a background build on this device compiles in a child process first: OpenCL (measured on PoCL)."""
    return kind(device) == "CL"


def child_spec(device: str, config: ModelConfig, settings: Settings, scheduled: bool, batch: int) -> str:
    return json.dumps({"device": device, "config": asdict(config), "settings": asdict(settings),
                       "scheduled": scheduled, "batch": batch})


def child_command(spec: str) -> list[str]:
    """The command line of the child that compiles first (emojicam/precompile.py; Builder.run_child runs it, and a
    failed child only means the build compiles here)."""
    return [sys.executable, "-m", "emojicam.precompile", spec]


def lane_devices(device: str, cpu_threads: int = 0) -> list[str]:
    """The devices one batch is split across. tinygrad 0.14's CPU device runs every kernel on the calling thread
    (its THREAD optimisation loops over the thread ids in turn), so on CPU each core gets its own device, CPU:i,
    and its share of the batch, run from a thread pool (1.9x on 2 cores, docs/benchmarks.md).
    Other devices spread each kernel over their cores or GPU themselves. By default one lane per core this process
    may use, at most MAX_LANES: every lane compiles its own copy of each kernel on a cold start."""
    if kind(device) != "CPU":
        return [device]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return [Device.canonicalize(f"CPU:{i}") for i in range(max(1, cpu_threads or min(usable, MAX_LANES)))]


def batch_sizes(cells: int) -> list[int]:
    """The batch sizes the moved cells of a frame are padded to: 1/8, 1/4, 1/2 and all of the grid's cells."""
    return sorted({-(-cells // d) for d in (8, 4, 2, 1)})


def split_batch(batch: int, parts: int) -> list[range]:
    """The patches of a batch each of `parts` lanes takes: equal parts, in lane order, the first ones one more where
    it does not divide (as np.array_split); ranges, so a lane's part of an array is a view, not a copy."""
    size, extra = divmod(batch, parts)
    ends = [i * size + min(i, extra) for i in range(parts + 1)]
    return [range(a, b) for a, b in itertools.pairwise(ends)]


@dataclass(frozen=True)
class Classified:
    """What one batch through the lanes gave: each patch's emoji and the upload/forward/download milliseconds."""

    indices: np.ndarray  # (N,) int32
    ms: dict[str, float]


@dataclass
class Lane:
    """One device's scorer, its captured functions by batch size and their input tensors (patches, cell indices,
    previous emoji, margin), which each batch is copied into."""

    scorer: Scorer
    jits: dict[int, TinyJit] = field(default_factory=dict)  # batch size -> captured function, ready to replay
    beam: dict[int, int] = field(default_factory=dict)  # batch size -> BEAM width its kernels were searched with
    loaded: dict[int, bool] = field(default_factory=dict)  # batch size -> came from the JIT cache (not compiled)
    inputs: dict[int, tuple[Tensor, ...]] = field(default_factory=dict)

    def build(self, batch: int, patch_px: int, fresh: bool, cache_parts: tuple, builder: Builder, busy: bool,
              child: dict) -> None:
        """Compile and capture the function for batches of `batch` patches, or load it from this machine's JIT cache
        when an earlier process captured it (unless fresh), with its input tensors; published into the dicts only
        when it is ready to replay. busy: the device may be running meanwhile, so on OpenCL the kernels are
        compiled first in a child process (precompile.py) from the spec child."""
        dev = self.scorer.device
        key = jit_cache.cache_key(dev, *cache_parts, self.scorer.net.scheduled, batch)
        inputs = pick_inputs(batch, patch_px, dev)
        loaded = not fresh and (cached := jit_cache.load(key))
        if loaded:
            jit, beam = cached
        else:
            if not fresh and busy and compiles_in_child(dev):
                builder.run_child(child_command(child), CHILD_TIMEOUT_S)
            with compiling(dev) if self.scorer.net.scheduled else contextlib.nullcontext():
                jit, beam = capture(lambda *xs: self.scorer.pick(*xs).realize(), *inputs), BEAM.value
            jit_cache.save(key, jit, beam)
        Device[dev].synchronize()
        self.inputs[batch], self.beam[batch], self.loaded[batch] = inputs, beam, bool(loaded)
        self.jits[batch] = jit  # last: a batch counts as ready once its JIT is here

    def upload(self, *arrays: np.ndarray) -> tuple[Tensor, ...]:
        """Copy this lane's part of a batch (patches, cells, previous emoji, margin) into its input tensors."""
        tensors = self.inputs[len(arrays[0])]
        for tensor, a in zip(tensors, arrays, strict=True):
            write_into(tensor, a, on_host(self.scorer.device))
        return tensors

    def run(self, inputs: tuple[Tensor, ...]) -> Tensor:
        """The forward pass (a replay of the captured function) on inputs, finished on the device."""
        out = self.jits[inputs[0].shape[0]](*inputs)
        Device[self.scorer.device].synchronize()
        return out


class Lanes:
    """classify(): uint8 RGB patches -> each patch's emoji, the batch split in equal parts across the lanes, which
    run at the same time. Batch sizes are built in the background (prepare) or when first needed (classify)."""

    def __init__(self, model: TinyConvNet, device: str, tiles: TileArrays, settings: Settings,
                 cache_parts: tuple, builder: Builder):
        self._lanes = [Lane(Scorer(InferenceNet(model, dev), tiles.bgr, tiles.cover, settings))
                       for dev in lane_devices(device, settings.cpu_threads)]
        self.patch_px, self._cache_parts, self._builder = model.config.patch_px, cache_parts, builder
        self._config, self._settings = model.config, settings
        self._pool = ThreadPoolExecutor(len(self._lanes)) if len(self._lanes) > 1 else None

    @property
    def devices(self) -> list[str]:
        return [lane.scorer.device for lane in self._lanes]

    @property
    def scorer(self) -> Scorer:
        """The first lane's scorer: the one on the engine's own device."""
        return self._lanes[0].scorer

    @property
    def scheduled(self) -> bool:
        """Whether the network runs the CPU-scheduled kernels (kernels.py) rather than tinygrad's own."""
        return self.scorer.net.scheduled

    def built(self) -> list[list[int]]:
        """Per lane, the batch sizes it has a captured function for."""
        return [sorted(lane.jits) for lane in self._lanes]

    def loaded(self, batch: int) -> bool:
        """Whether the first lane's function for batches of `batch` patches came from the JIT cache."""
        return self._lanes[0].loaded.get(len(self._shares(batch)[0]), False)

    def _shares(self, batch: int) -> list[range]:
        return split_batch(batch, len(self._lanes))

    def _build(self, batch: int, fresh: bool = False) -> None:
        for lane, share in zip(self._lanes, self._shares(batch), strict=True):
            if fresh or len(share) not in lane.jits:
                spec = child_spec(lane.scorer.device, self._config, self._settings, lane.scorer.net.scheduled,
                                  len(share))
                # something may be running on this device meanwhile (live) once another lane has a function
                lane.build(len(share), self.patch_px, fresh, self._cache_parts, self._builder,
                           busy=any(other.jits for other in self._lanes), child=spec)

    def _queue(self, batch: int, fresh: bool = False):
        return self._builder.queue(("batch", batch), lambda: self._build(batch, fresh), again=fresh)

    def ready(self, batch: int) -> bool:
        """Whether batches of `batch` patches run without a compile: every lane's function is captured. A build of
        that size that failed in the background raises its error here."""
        self._builder.raise_failed(("batch", batch))
        return all(len(share) in lane.jits for lane, share in zip(self._lanes, self._shares(batch), strict=True))

    def prepare(self, cells: int) -> None:
        """Compile (or load from the JIT cache) in the background every batch size a grid of `cells` cells uses,
        the whole grid first; returns at once (see ready). Builds queued for other sizes and not yet started go
        back in the queue behind these: the grid asked for last is the one the user waits for."""
        wanted = sorted(batch_sizes(cells), reverse=True)
        self._builder.withdraw(lambda key: key[0] != "batch" or key[1] in wanted)
        for batch in wanted:
            self._queue(batch)

    def warm_up(self, cells: int) -> None:
        """Compile (or load) every batch size a grid of `cells` cells uses in video, and wait: all of them, and
        the 1/8, 1/4, 1/2 batches of cells that changed."""
        for batch in batch_sizes(cells):
            self._ensure(batch)

    def _ensure(self, batch: int) -> None:
        """Wait until batches of `batch` patches are ready, building them now if no build is queued."""
        if not self.ready(batch):
            self._queue(batch).result()

    def tune(self, batch: int, beam: int = 2) -> None:
        """Compile the function for batches of `batch` patches again with tinygrad's kernel search (BEAM) at this
        width, and store it in this machine's JIT cache in place of the default one (`emojicam tune`)."""
        with Context(BEAM=beam):
            self._queue(batch, fresh=True).result()

    def progress(self, batch: int) -> tuple[int, int]:
        """(lanes whose function for batches of `batch` patches is ready, lanes)."""
        shares = zip(self._lanes, self._shares(batch), strict=True)
        return sum(len(share) in lane.jits for lane, share in shares), len(self._lanes)

    def close(self) -> None:
        """End the lanes' threads (a classify after this fails)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def launches(self, batch: int) -> Launches:
        """The kernels the first lane runs for batches of `batch` patches (built first if needed)."""
        self._ensure(batch)
        lane, share = self._lanes[0], self._shares(batch)[0]
        return launches(lane.jits[len(share)])

    def searched(self, batch: int) -> int:
        """The BEAM width the kernels for batches of `batch` patches were searched with (0 = tinygrad's default
        heuristics), once that batch size has run."""
        return min(lane.beam.get(len(share), 0) for lane, share in zip(self._lanes, self._shares(batch), strict=True))

    def classify(self, patches: np.ndarray, prev: np.ndarray | None = None,
                 cells: np.ndarray | None = None) -> Classified:
        """(N, P, P, 3) uint8 RGB patches -> each one's emoji. prev: the previous emoji of these cells (with
        the settings' stability > 0, hysteresis: see Scorer.pick); cells: each patch's cell index in its grid (the
        variety dither; None = 0..N-1). Compiles (or loads) the function for this batch size first if needed."""
        self._ensure(len(patches))
        t0 = time.perf_counter()
        stability = self._settings.stability
        stable = prev is not None and stability > 0
        margin = np.array([stability if stable else -np.inf], np.float32)
        prev = prev.astype(np.int32) if stable else np.zeros(len(patches), np.int32)
        cells = np.arange(len(patches), dtype=np.int32) if cells is None else cells.astype(np.int32)
        inputs = []
        for lane, share in zip(self._lanes, self._shares(len(patches)), strict=True):
            part = slice(share.start, share.stop)  # views, not copies
            inputs.append(lane.upload(patches[part], cells[part], prev[part], margin))
        t1 = time.perf_counter()
        if self._pool is None:
            outs = [self._lanes[0].run(inputs[0])]
        else:
            outs = list(self._pool.map(Lane.run, self._lanes, inputs))
        t2 = time.perf_counter()
        indices = np.concatenate([read_from(out, np.int32, on_host(lane.scorer.device))
                                  for lane, out in zip(self._lanes, outs, strict=True)])
        t3 = time.perf_counter()
        return Classified(indices, {"upload": (t1 - t0) * 1e3, "forward": (t2 - t1) * 1e3,
                                    "download": (t3 - t2) * 1e3})

    def classify_moved(self, patches: np.ndarray, moved: np.ndarray, prev: np.ndarray, wait: bool) -> Classified:
        """Only the cells marked moved go through the network, padded to one of four batch sizes (1/8, 1/4, 1/2,
        all cells) so that at most four compiled shapes exist per grid; the others keep their previous emoji.
        wait=False never waits for a compile: the cells go into the smallest batch size already compiled (the
        whole grid's is), and the one they fit is prepared in the background."""
        moved = np.flatnonzero(moved)
        indices = prev.copy()
        if moved.size == 0:
            return Classified(indices, dict.fromkeys(("upload", "forward", "download"), 0.0))
        fits = [b for b in batch_sizes(len(patches)) if b >= moved.size]
        batch = fits[0] if wait else next((b for b in fits if self.ready(b)), fits[-1])
        if batch != fits[0]:
            self._queue(fits[0])
        if moved.size == len(patches):  # every cell moved (most frames of a moving video): no gathered copy
            got = self.classify(patches, prev)
        else:
            take = np.concatenate([moved, np.repeat(moved[:1], batch - moved.size)])
            got = self.classify(patches[take], prev[take], take)
        indices[moved] = got.indices[:moved.size]
        return Classified(indices, got.ms)
