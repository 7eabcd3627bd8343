"""The device path: the whole frame in one compiled function, BGR frame in, emoji frame out (GPUs).

The host path (engine.HostPath, on CPU devices) cuts patches with OpenCV, runs the network on the device and
composites with numpy. Here one TinyJit per frame size and grid does every step on the device, so a frame costs
one upload of H x W x 3 bytes and one download of the emoji frame (plus the cells' emoji, 4 bytes each):

    frame (H, W, 3) uint8 BGR -> area resize to (rows*36, cols*36) and to (rows, cols) -> RGB patches
    -> network + scores (scoring.Scorer) -> stability -> moved cells (exact, or --still-threshold)
    -> tiles gathered from the atlas on the device, `auto` background -> (rows*t, cols*t, 3) uint8

The resize is area averaging (each output pixel the mean of the input area it covers, up or down), in whole
levels: what cv2.resize's INTER_AREA computes for the host path. Shrinking, OpenCV works in float and rounds; so
do we. Enlarging, OpenCV works in fixed point (11-bit weights, its vector code's shifts); we do the same integer
steps, except at the ends of rows, which OpenCV's scalar tail rounds once instead of twice, and where one side
grows and the other shrinks (OpenCV then uses two-tap weights on the shrinking side; we keep true area there).
The host path itself leaves area for bilinear on slight shrinks (under grid.SLIGHT_SHRINK, such as 720p at 64
columns of 18 px), where INTER_AREA is slow and the two differ by 0.14 levels on average; here area stays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from tinygrad import Tensor, TinyJit, dtypes

from emojicam.grid import PATCH_PX, THUMB_PX, Grid
from emojicam.scoring import auto_background, hysteresis, moved_cells_tensor  # shared with the host path

if TYPE_CHECKING:
    from emojicam.compositor import TileArrays

RESIZE_COEF_SCALE = 2048  # OpenCV's INTER_RESIZE_COEF_SCALE: the fixed point of its enlarging weights


def area_weights(n: int, m: int) -> tuple[int, np.ndarray]:
    """Resampling n pixels to m by area: the axis splits into g = gcd(n, m) blocks of n' = n/g inputs and
    m' = m/g outputs that see only each other (a small matrix per block, not an n x m one, unless the sizes share
    no factor); returns g and the (n', m') weights of one block, each column summing to 1. Measured in 1/m' of an
    input pixel, input i covers [i*m', (i+1)*m') and output j covers [j*n', (j+1)*n')."""
    g = math.gcd(n, m)
    ni, mo = n // g, m // g
    i, j = np.arange(ni)[:, None], np.arange(mo)[None, :]
    weights = np.maximum(np.minimum((i + 1) * mo, (j + 1) * ni) - np.maximum(i * mo, j * ni), 0) / ni
    return g, weights.astype(np.float32)


def enlarges(frame_hw: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether OpenCV's INTER_AREA takes its fixed-point path (either side enlarged) for this resize."""
    return size[0] > frame_hw[0] or size[1] > frame_hw[1]


def resize_weights(frame_hw: tuple[int, int], size: tuple[int, int], device: str) -> tuple[Tensor, Tensor]:
    """area_weights along H and along W as tensors for area_resize: float32, or when enlarging the int32 weights
    OpenCV uses (rounded to 1/2048)."""
    weights = [area_weights(n, m)[1] for n, m in zip(frame_hw, size, strict=True)]
    if enlarges(frame_hw, size):
        weights = [np.round(w * RESIZE_COEF_SCALE).astype(np.int32) for w in weights]
    return tuple(Tensor(w, device=device).realize() for w in weights)


def area_resize(x: Tensor, size: tuple[int, int], weights: tuple[Tensor, Tensor]) -> Tensor:
    """(H, W, C) uint8 -> (h, w, C) float32 whole levels by area averaging along W, then along H; weights from
    resize_weights. Shrinking: exact in float32, rounded half up (OpenCV's float path). Enlarging: OpenCV's
    fixed point, step for step (its vector code: 11-bit weights, the row sums shifted right by 4 before a
    16-bit high multiply by the column weight, then rounded by 2 bits)."""
    h, w = size
    (H, W, C), (wy, wx) = x.shape, weights
    gy, gx = H // wy.shape[0], W // wx.shape[0]
    x = x.cast(wx.dtype)
    x = (x.reshape(H, gx, wx.shape[0], 1, C) * wx.reshape(1, 1, *wx.shape, 1)).sum(2).reshape(H, w, C)
    if wx.dtype == dtypes.int32:
        x = (x // 16).reshape(gy, wy.shape[0], 1, w, C) * wy.reshape(1, *wy.shape, 1, 1) // 65536
        return ((x.sum(1) + 2) // 4).reshape(h, w, C).cast(dtypes.float32)
    x = (x.reshape(gy, wy.shape[0], 1, w, C) * wy.reshape(1, *wy.shape, 1, 1)).sum(1).reshape(h, w, C)
    return (x + 0.5).floor()


@dataclass(frozen=True)
class Tiles:
    """The emoji tiles at the output size, on the device, for gathering by index."""

    bgr: Tensor      # (K, 3) mean BGR of each emoji on black (premultiplied)
    cover: Tensor    # (K,) coverage
    premult: Tensor  # (K, t, t, 3) premultiplied BGR + 0.5 (for rounding), `auto` background
    uncover: Tensor  # (K, t, t, 1) 1 - alpha, `auto` background
    blended: Tensor | None  # (K, t, t, 3) uint8 on a fixed background (black/white), else None

    @classmethod
    def upload(cls, arrays: TileArrays, device: str) -> Tiles:
        """The host's tile arrays (compositor.tile_arrays) as tensors on device."""
        def up(a: np.ndarray) -> Tensor:
            return Tensor(np.ascontiguousarray(a), device=device).realize()
        return cls(up(arrays.bgr), up(arrays.cover), up(arrays.premult), up(arrays.uncover),
                   up(arrays.blended) if arrays.blended is not None else None)


@dataclass
class DeviceFrame:
    """One frame size x grid on one device: the compiled frame function and its two inputs. The state it keeps
    between frames (each cell's emoji and the patches or thumbnails they were picked on) lives inside it."""

    jit: TinyJit
    frame: Tensor   # (H, W, 3) uint8
    params: Tensor  # (3,) float32: stability margin, still threshold, 1 on a first frame (forget the state)


def frame_function(scores: Callable[[Tensor, Tensor], Tensor], tiles: Tiles, frame_shape: tuple[int, ...], grid: Grid,
                   still: bool, device: str, patch_px: int = PATCH_PX) -> DeviceFrame:
    """Build (not yet compile: the first two calls do) the frame function for this frame size and grid. scores:
    (N, P, P, 3) uint8 RGB patches (P = patch_px, the network's input) and (N,) cell indices -> (N, K) scores, as
    the host path's.
    still: compare 6x6 thumbnails against the threshold (live) instead of whole patches bit for bit."""
    (h, w), n, t = frame_shape[:2], grid.count, grid.tile_px

    def weights(rows: int, cols: int) -> tuple[Tensor, Tensor]:
        return resize_weights((h, w), (rows, cols), device)

    to_patches, to_cells = weights(grid.rows * patch_px, grid.cols * patch_px), weights(grid.rows, grid.cols)
    to_thumbs = weights(grid.rows * THUMB_PX, grid.cols * THUMB_PX) if still else None
    # what each cell's emoji was picked on: its thumbnail (float levels), or its patch as uint8 (a quarter of the bytes
    # that float32 moved every frame)
    picked_on = (Tensor.zeros(n, THUMB_PX * THUMB_PX * 3, device=device) if still else
                 Tensor.zeros(n, patch_px * patch_px * 3, dtype=dtypes.uint8, device=device)).contiguous().realize()
    shown = Tensor.zeros(n, dtype=dtypes.int32, device=device).contiguous().realize()
    # each cell's index (the variety dither's), kept on the device: made inside the function, it was copied up from
    # the host on every frame
    cell_ids = Tensor(np.arange(n, dtype=np.int32), device=device).realize()

    def cells(x: Tensor, px: int) -> Tensor:  # (rows*px, cols*px, 3) -> (N, px, px, 3), row-major cell order
        return x.reshape(grid.rows, px, grid.cols, px, 3).permute(0, 2, 1, 3, 4).reshape(n, px, px, 3)

    def run(frame: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        small = area_resize(frame, (grid.rows * patch_px, grid.cols * patch_px), to_patches)
        patches = cells(small.flip(2), patch_px).cast(dtypes.uint8).contiguous()  # RGB, as the network learnt
        score = scores(patches, cell_ids)
        margin, threshold, first = params[0], params[1], params[2] > 0
        pick = hysteresis(score, shown, margin)  # margin -inf on a first frame: the best
        if still:
            seen = cells(area_resize(frame, (grid.rows * THUMB_PX, grid.cols * THUMB_PX), to_thumbs),
                         THUMB_PX).reshape(n, -1)
        else:
            seen = patches.reshape(n, -1)
        moved = first | moved_cells_tensor(seen, picked_on, threshold)  # threshold 0 without still: exact
        keep = moved.unsqueeze(1).where(seen, picked_on) if still else seen
        indices = moved.where(pick, shown)
        if tiles.blended is not None:
            out = tiles.blended[indices]
        else:
            means = area_resize(frame, (grid.rows, grid.cols), to_cells).reshape(n, 1, 1, 3)
            back = auto_background(means, tiles.bgr[indices].reshape(n, 1, 1, 3),
                                   1 - tiles.cover[indices].reshape(n, 1, 1, 1))
            out = (tiles.uncover[indices] * back + tiles.premult[indices]).cast(dtypes.uint8)
        image = out.reshape(grid.rows, grid.cols, t, t, 3).permute(0, 2, 1, 3, 4).reshape(grid.rows * t,
                                                                                          grid.cols * t, 3).contiguous()
        # each cell's emoji, then how many moved; the count in a kernel of its own (fused into the join, each of the
        # N+1 outputs summed all N cells again, one thread per work-group)
        report = indices.cat(moved.cast(dtypes.int32).sum().reshape(1).contiguous())
        Tensor.realize(image, report, shown.assign(indices), picked_on.assign(keep))
        return image, report

    frame = Tensor.zeros(h, w, 3, dtype=dtypes.uint8, device=device).contiguous().realize()
    params = Tensor([0.0, 0.0, 1.0], device=device).realize()
    return DeviceFrame(TinyJit(run), frame, params)
