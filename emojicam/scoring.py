"""Scoring: each emoji's score for each patch on one device (the network's logits, the colour match, the coverage
bonus, the variety dither) and the pick with hysteresis. Builds tensor graphs for TinyJit to capture: the host
path's lanes and the device path's frame function both score through a Scorer."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np
from tinygrad import Tensor, dtypes

if TYPE_CHECKING:
    from emojicam.kernels import InferenceNet
    from emojicam.settings import Settings

T = TypeVar("T", np.ndarray, Tensor)


def auto_background(cell_mean: T, emoji_mean: T, uncovered: T) -> T:
    """The `auto` background: the colour behind an emoji's transparent pixels that makes the tile's mean colour
    as drawn (emoji_mean + uncovered * background) equal to its cell's mean, clipped to 0..255. Works on numpy
    arrays and tinygrad Tensors alike (colours 0..255, emoji_mean premultiplied by alpha, uncovered = 1 - coverage).
    An opaque emoji's background does not matter; where the emoji's own colour is too far off, the clip keeps the
    background the nearest drawable colour, and the colour term in the score does the rest."""
    return ((cell_mean - emoji_mean) / (uncovered + 1e-3)).clip(0, 255)


def emoji_keys(classes: int) -> np.ndarray:
    """(K,) uint32: each emoji's part of the dither hash (a Scorer keeps it on its device)."""
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


def pick_inputs(batch: int, patch_px: int, device: str) -> tuple[Tensor, ...]:
    """Scorer.pick's input tensors for batches of `batch` patches, to capture it with and copy each batch into:
    patches, cell indices, previous emoji, margin. The patches are only allocated (any bytes are patches; copying
    in zeros cost tinygrad 3-30 ms a lane); the previous emoji must be real indices, as the capture runs."""
    patches = Tensor.empty(batch, patch_px, patch_px, 3, dtype=dtypes.uint8, device=device).realize()
    patches.uop.buffer.ensure_allocated()
    return (patches, *(Tensor(a, device=device).realize() for a in (
        np.arange(batch, dtype=np.int32), np.zeros(batch, np.int32), np.array([-np.inf], np.float32))))


class Scorer:
    """The network on one device and the per-emoji constants the score needs there."""

    def __init__(self, net: InferenceNet, tile_bgr: np.ndarray, tile_cover: np.ndarray, settings: Settings):
        """net: the network on its device; tile_bgr (K, 3) each emoji's premultiplied mean BGR and tile_cover (K,)
        its coverage, both at the output tile size."""
        self.net, self.device, self.settings = net, net.device, settings
        # (K, 4): each emoji's mean RGB and coverage in one buffer, so that the kernel of the scores takes 8 buffers,
        # as many as WebGPU guarantees (maxStorageBuffersPerShaderStage)
        emoji = np.concatenate([tile_bgr[:, ::-1], tile_cover[:, None]], 1).astype(np.float32)
        self.emoji = Tensor(emoji, device=self.device).realize()
        self.emoji_keys = Tensor(emoji_keys(len(tile_cover)), device=self.device).realize()  # (K,) uint32

    def scores(self, x: Tensor, cells: Tensor | None = None) -> Tensor:
        """(N, K) score of each emoji for each patch x (N, P, P, 3) uint8 RGB: the network's log-probability,
        minus how far the tile's mean colour as drawn is from the patch's (squared, 0..1 units), plus a bonus for
        covering the tile, plus the variety dither of each patch's cell (cells: (N,) int32 cell indices; None =
        0..N-1, a whole grid). The log-probability is taken as the logit: they differ by the same amount for every
        emoji of a patch, which cancels in everything done with scores (argmax, the hysteresis gap), and saves a
        log-softmax."""
        logp = self.net.logits(x)
        cfg = self.settings
        if cfg.variety > 0:
            cells = Tensor(np.arange(x.shape[0], dtype=np.int32), device=x.device) if cells is None else cells
            logp = logp + cfg.variety * dither(cells, self.emoji_keys)
        if cfg.colour_weight == 0 and cfg.coverage_weight == 0:
            return logp
        patch_mean = self.net.mean_colours(x).unsqueeze(1)  # (N, 1, 3) RGB
        cover = self.emoji[:, 3]
        emoji, uncovered = self.emoji[:, :3].unsqueeze(0), 1 - cover.reshape(1, -1, 1)
        if cfg.background == "auto":
            background = auto_background(patch_mean, emoji, uncovered)
        else:
            background = 0.0 if cfg.background == "black" else 255.0
        drawn = emoji + uncovered * background
        colour_err = ((drawn - patch_mean) * (1 / 255)).square().sum(2)
        return logp - cfg.colour_weight * colour_err + cfg.coverage_weight * cover.unsqueeze(0)

    def pick(self, x: Tensor, cells: Tensor, prev: Tensor, margin: Tensor) -> Tensor:
        """(N,) int32: the best-scoring emoji per patch, with hysteresis against prev (see hysteresis)."""
        return hysteresis(self.scores(x, cells), prev, margin)


# What each cell gets on a new frame, on both paths: the host path decides which cells moved in numpy (moved_cells)
# and picks on the device, the device path does both in its frame function (moved_cells_tensor, hysteresis).

def hysteresis(score: Tensor, prev: Tensor, margin: Tensor) -> Tensor:
    """(N,) int32: each row's best-scoring emoji, unless it beats the row's previous emoji (prev) by no more than
    margin (a margin of -inf, as on a first frame, always takes the best): no flicker between near-equal emoji."""
    best = score.argmax(1).cast(dtypes.int32)
    gap = score.max(1) - score.gather(1, prev.unsqueeze(1)).squeeze(1)
    return (gap > margin).where(best, prev)


def moved_cells(now: np.ndarray, before: np.ndarray, threshold: float) -> np.ndarray:
    """(N,) bool: the cells whose values (N, ...) moved by more than threshold (0..255 levels, any value) since
    before; threshold 0 is exact: any change (uint8 patches are then compared as whole rows, 8 bytes at a time
    where the size allows: 1 ms for a 64x36 grid of 36 px patches)."""
    n = len(now)
    if threshold == 0 and now.dtype == np.uint8:
        row = next(t for t in (np.uint64, np.uint32, np.uint8) if now[0].nbytes % np.dtype(t).itemsize == 0)
        return (now.reshape(n, -1).view(row) != before.reshape(n, -1).view(row)).any(1)
    return np.abs(now.reshape(n, -1).astype(np.int16) - before.reshape(n, -1)).max(1) > threshold


def moved_cells_tensor(now: Tensor, before: Tensor, threshold: Tensor) -> Tensor:
    """moved_cells on the device: now and before (N, D) levels (float32, or uint8 read as float32 in the same kernel),
    threshold a scalar tensor."""
    return (now.cast(dtypes.float32) - before.cast(dtypes.float32)).abs().max(1) > threshold
