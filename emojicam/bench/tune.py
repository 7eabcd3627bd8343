"""`emojicam tune`: tinygrad's kernel search (BEAM) for one grid, kept only where it is faster than the defaults."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from emojicam import jit_cache
from emojicam.bench.timing import median_ms, timed_loop
from emojicam.lanes import batch_sizes

if TYPE_CHECKING:
    from emojicam.engine import Emojifier


@dataclass(frozen=True)
class TuneOptions:
    """What `emojicam tune` was asked to search: the frame shape the grid is laid on, the search width, and
    whether the smaller batches of live's still cells are searched too."""

    frame_shape: tuple[int, int, int]
    beam: int = 2
    still_sizes: bool = False


@dataclass(frozen=True)
class TuneResult:
    """One batch size: ms per forward before and after the search, the share of equal picks, whether kept."""

    batch: int
    before_ms: float
    after_ms: float
    same_picks: float
    search_s: float
    kept: bool


def tune(emojifier: Emojifier, opts: TuneOptions, say: Callable[[str], None] = print) -> list[TuneResult]:
    """Search the kernels of the grid of frames of this shape (and its moved-cell batches with still_sizes); a
    search that found nothing faster (or that timing noise misled) is undone and the default kernels kept."""
    grid = emojifier.grid_for(opts.frame_shape)
    sizes = batch_sizes(grid.count) if opts.still_sizes else [grid.count]
    say(f"tune: {emojifier.device} ({len(emojifier.lane_devices)} lane(s)), grid {grid.cols}x{grid.rows}, "
        f"BEAM={opts.beam}, batches of {', '.join(map(str, sizes))} patches; the search takes minutes")
    px = emojifier.patch_px
    patches = np.random.default_rng(0).integers(0, 256, (grid.count, px, px, 3), dtype=np.uint8)

    def forward_ms(batch: np.ndarray) -> tuple[float, np.ndarray]:
        picks = emojifier.classify(batch)  # compiles or loads first
        return median_ms(timed_loop(lambda _: emojifier.classify(batch), 5, math.inf)), picks

    results = []
    for size in sorted(sizes, reverse=True):
        before, picks = forward_ms(patches[:size])
        t0 = time.perf_counter()
        emojifier.tune(size, opts.beam)
        searched = time.perf_counter() - t0
        after, tuned = forward_ms(patches[:size])
        kept = after < before
        if not kept:
            emojifier.tune(size, beam=0)
        result = TuneResult(size, before, after, float(np.mean(picks == tuned)), searched, kept)
        say(f"  {size} patches: {before:.1f} -> {after:.1f} ms per forward ({before / after:.2f}x), same emoji for "
            f"{result.same_picks:.2%} of patches, search {searched:.0f} s; "
            f"{'searched kernels stored' if kept else 'slower, default kernels kept'}")
        results.append(result)
    say(f"stored in {jit_cache.cache_dir()}; `convert` and `live` with the same grid, device and settings use it")
    return results
