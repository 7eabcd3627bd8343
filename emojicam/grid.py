"""Grid geometry, patch cutting and tile compositing: plain numpy/OpenCV, no loops over tiles."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from emojicam.errors import EmojicamError

PATCH_PX = 36  # the default network's input: each cell is resized to PATCH_PX x PATCH_PX (ModelConfig.patch_px)
MAX_TILE_PX = 256
MAX_COLS = 512
MAX_OUTPUT_PX = 16384
SLIGHT_SHRINK = 1.25  # cut_patches: below this shrink factor, bilinear instead of area
THUMB_PX = 6  # the side of a cell's thumbnail, for telling which cells moved (--still-threshold)


@dataclass(frozen=True)
class Grid:
    """cols x rows cells; each cell is a 36x36 model patch in and a tile_px x tile_px emoji out."""

    cols: int
    rows: int
    tile_px: int

    @classmethod
    def for_frame(cls, frame_shape: tuple[int, ...], cols: int, tile_px: int) -> Grid:
        """Rows follow the frame's aspect ratio (square cells); checks the sizes a user can get wrong."""
        if not 1 <= cols <= MAX_COLS:
            raise EmojicamError(f"--cols: expected 1..{MAX_COLS} columns, got {cols}")
        check_tile_px(tile_px)
        h, w = frame_shape[:2]
        rows = max(1, round(cols * h / w))
        if max(rows, cols) * tile_px > MAX_OUTPUT_PX:
            raise EmojicamError(f"output: expected at most {MAX_OUTPUT_PX} px a side, "
                                f"got {cols * tile_px}x{rows * tile_px} (fewer --cols or a smaller --tile)")
        return cls(cols, rows, tile_px)

    @property
    def count(self) -> int:
        return self.cols * self.rows

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of the emoji frame."""
        return self.cols * self.tile_px, self.rows * self.tile_px


def check_tile_px(tile_px: int) -> None:
    if not 4 <= tile_px <= MAX_TILE_PX:
        raise EmojicamError(f"--tile: expected 4..{MAX_TILE_PX} pixels, got {tile_px}")


def cut_patches(frame: np.ndarray, grid: Grid, px: int = PATCH_PX) -> np.ndarray:
    """BGR (H, W, 3) uint8 -> (rows*cols, px, px, 3) uint8 RGB patches (px: the model's input size) in row-major
    cell order. Channels-last, as the network computes: the host only regroups whole pixels (half the time of the
    planar layout)."""
    size = (grid.cols * px, grid.rows * px)
    shrink = min(frame.shape[1] / size[0], frame.shape[0] / size[1])
    # a slight shrink (a 1280x720 frame to 64 cells of 18 px: 20 -> 18) is where OpenCV's INTER_AREA takes its
    # slow general path: INTER_LINEAR is 3.5x faster there and within 0.14 levels of it on average
    how = cv2.INTER_LINEAR if 1 < shrink < SLIGHT_SHRINK else cv2.INTER_AREA
    # the resize treats each channel alone, so BGR -> RGB gives the same bytes before it or after: done on the
    # smaller of the two images (a 1280x720 frame is 0.31x the pixels of a 64x36 grid's patches)
    if shrink < 1:
        small = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), size, interpolation=how)
    else:
        small = cv2.cvtColor(cv2.resize(frame, size, interpolation=how), cv2.COLOR_BGR2RGB)
    # each patch row of px pixels moved as one px*3-byte item: numpy copies 1.7x faster than pixel by pixel
    rows = small.reshape(grid.rows, px, grid.cols, px * 3).view(f"V{px * 3}")
    return np.ascontiguousarray(rows.transpose(0, 2, 1, 3)).view(np.uint8).reshape(grid.count, px, px, 3)


def cell_means(frame: np.ndarray, grid: Grid) -> np.ndarray:
    """(rows*cols, 3) float32 mean BGR of each cell (area-averaged)."""
    small = cv2.resize(frame, (grid.cols, grid.rows), interpolation=cv2.INTER_AREA)
    return small.reshape(grid.count, 3).astype(np.float32)


def thumbnails(frame: np.ndarray, grid: Grid, px: int = THUMB_PX) -> np.ndarray:
    """(N, px*px*3) int16: each cell shrunk to px x px by area averaging (sensor noise averages out), to tell
    which cells moved between frames."""
    small = cv2.resize(frame, (grid.cols * px, grid.rows * px), interpolation=cv2.INTER_AREA)
    cells = small.reshape(grid.rows, px, grid.cols, px, 3).transpose(0, 2, 1, 3, 4)
    return cells.reshape(grid.count, px * px * 3).astype(np.int16)


def compose(tiles: np.ndarray, grid: Grid) -> np.ndarray:
    """(rows*cols, t, t, C) tiles in cell order -> (rows*t, cols*t, C) frame."""
    t, channels = grid.tile_px, tiles.shape[-1]
    return np.ascontiguousarray(tiles.reshape(grid.rows, grid.cols, t, t, channels).transpose(0, 2, 1, 3, 4)).reshape(
        grid.rows * t, grid.cols * t, channels)
