"""Emoji-art quality measures on real photos: colour error, edge agreement, emoji coverage, vs baselines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from emojicam.emoji_set import EmojiSet
from emojicam.grid import PATCH_PX, Grid, cell_means, compose

if TYPE_CHECKING:
    from emojicam.engine import Emojifier


def colour_error(original: np.ndarray, output: np.ndarray, tile_px: int) -> float:
    """RMSE (0..255) between the original resized to the output and the output, both Gaussian-blurred with
    sigma = tile/2: the colour a viewer sees from a few steps back."""
    ref = cv2.resize(original, output.shape[1::-1], interpolation=cv2.INTER_AREA).astype(np.float32)
    sigma = tile_px / 2
    a = cv2.GaussianBlur(ref, (0, 0), sigma)
    b = cv2.GaussianBlur(output.astype(np.float32), (0, 0), sigma)
    return float(np.sqrt(((a - b) ** 2).mean()))


def edge_agreement(original: np.ndarray, output: np.ndarray, tile_px: int) -> float:
    """Pearson correlation of the Sobel gradient magnitudes of the grey original and grey output, each
    Gaussian-blurred with sigma = tile/4 first: do the picture's edges survive?"""
    ref = cv2.resize(original, output.shape[1::-1], interpolation=cv2.INTER_AREA)

    def gradient(image: np.ndarray) -> np.ndarray:
        grey = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), tile_px / 4)
        return np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)).ravel()

    a, b = gradient(ref), gradient(output)
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def emoji_coverage(emoji_set: EmojiSet, indices: np.ndarray) -> float:
    """Mean opacity of the chosen emoji: the share of the picture that is emoji (0..1)."""
    return float(emoji_set.coverage()[indices].mean())


def wallpaper(indices: np.ndarray, grid: Grid) -> float:
    """Share of interior cells (not on the border) whose emoji equals all four neighbours': how much of the picture
    is one emoji repeated like wallpaper (0..1; 0 when the grid has no interior)."""
    if grid.rows < 3 or grid.cols < 3:
        return 0.0
    g = np.asarray(indices).reshape(grid.rows, grid.cols)
    centre = g[1:-1, 1:-1]
    same = (centre == g[:-2, 1:-1]) & (centre == g[2:, 1:-1]) & (centre == g[1:-1, :-2]) & (centre == g[1:-1, 2:])
    return float(same.mean())


def baseline_indices(emoji_set: EmojiSet, frame: np.ndarray, grid: Grid, background: str = "black") -> np.ndarray:
    """The classic emoji mosaic: per cell, the emoji whose mean colour on the background (black or white) is
    nearest the cell's mean."""
    means, emoji = cell_means(frame, grid), emoji_set.mean_colours(background)
    dist = (means**2).sum(1)[:, None] - 2 * means @ emoji.T + (emoji**2).sum(1)[None, :]
    return dist.argmin(1)


def draw_on(emoji_set: EmojiSet, indices: np.ndarray, grid: Grid, background: str = "black") -> np.ndarray:
    """The chosen emoji drawn on a plain black or white background."""
    return compose(emoji_set.blended_atlas(grid.tile_px, background)[indices], grid)


def lab(bgr: np.ndarray) -> np.ndarray:
    """BGR 0..255 (any shape, last axis 3) -> CIE Lab in its own units (L 0..100), float32."""
    flat = (np.asarray(bgr, np.float32) / 255).reshape(1, -1, 3)
    return cv2.cvtColor(flat, cv2.COLOR_BGR2Lab).reshape(np.shape(bgr))


def emoji_lab(emoji_set: EmojiSet) -> np.ndarray:
    """(K, 3) each emoji's mean Lab colour over its own opaque pixels (alpha at least one half), as drawn in the set."""
    premult, alpha = emoji_set.atlas(PATCH_PX)
    opaque = alpha[..., 0] >= 0.5
    colours = lab(premult / np.maximum(alpha, 1e-6))
    return (colours * opaque[..., None]).sum((1, 2)) / np.maximum(opaque.sum((1, 2)), 1)[:, None]


def colour_fidelity(frame: np.ndarray, indices: np.ndarray, grid: Grid, emoji: np.ndarray) -> float:
    """Median CIE76 delta E between each cell's emoji (emoji: emoji_lab) and the cell's mean Lab colour: how true
    the emoji themselves are to the picture's colours, whatever the background behind them."""
    cells = cv2.resize(lab(frame), (grid.cols, grid.rows), interpolation=cv2.INTER_AREA).reshape(grid.count, 3)
    return float(np.median(np.linalg.norm(emoji[indices] - cells, axis=1)))


def measure(emoji_set: EmojiSet, frame: np.ndarray, output: np.ndarray, indices: np.ndarray, grid: Grid) -> dict:
    """All five measures for one output."""
    return {"colour_error": round(colour_error(frame, output, grid.tile_px), 3),
            "delta_e": round(colour_fidelity(frame, indices, grid, emoji_lab(emoji_set)), 2),
            "edge_agreement": round(edge_agreement(frame, output, grid.tile_px), 4),
            "coverage": round(emoji_coverage(emoji_set, indices), 4),
            "wallpaper": round(wallpaper(indices, grid), 4)}


def evaluate(emojifier: Emojifier, photos: list[Path], out_dir: Path, cols: int = 64, seed: int = 0) -> dict:
    """Measures for emojicam's settings, the classic mosaic and random tiles on each photo, plus a contact
    sheet (original | emojicam | baseline) per photo; results also go to out_dir/quality.json. The mosaic and the
    random tiles are drawn on black, or on the engine's background where that is plain (white or black: text)."""
    from emojicam.atomic import write_atomic
    from emojicam.media.images import read_image, write_image

    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    emoji_set, results = emojifier.emoji_set, {}
    plain = emojifier.settings.background if emojifier.settings.background in ("black", "white") else "black"
    for photo in photos:
        frame = read_image(photo)
        emojifier.reset()
        result = emojifier(frame, cols=cols)
        ours, grid, indices = result.image, result.grid, result.indices
        base_idx = baseline_indices(emoji_set, frame, grid, plain)
        base = draw_on(emoji_set, base_idx, grid, plain)
        rand_idx = rng.integers(0, len(emoji_set), grid.count)
        rand = draw_on(emoji_set, rand_idx, grid, plain)
        row = {"emojicam": measure(emoji_set, frame, ours, indices, grid),
               "baseline": measure(emoji_set, frame, base, base_idx, grid),
               "random": measure(emoji_set, frame, rand, rand_idx, grid)}
        row["colour_ratio"] = round(row["emojicam"]["colour_error"] / row["baseline"]["colour_error"], 3)
        row["edge_gain"] = round(row["emojicam"]["edge_agreement"] - row["baseline"]["edge_agreement"], 4)
        results[photo.name] = row
        original = cv2.resize(frame, ours.shape[1::-1], interpolation=cv2.INTER_AREA)
        write_image(out_dir / f"{photo.stem}_sheet.png", np.hstack([original, ours, base]))
    summary = {"cols": cols, "background": emojifier.settings.background, "baseline_background": plain,
               "photos": results,
               "mean_coverage": round(float(np.mean([r["emojicam"]["coverage"] for r in results.values()])), 4),
               "max_colour_ratio": max(r["colour_ratio"] for r in results.values()),
               "min_edge_gain": min(r["edge_gain"] for r in results.values()),
               "max_wallpaper": max(r["emojicam"]["wallpaper"] for r in results.values()),
               "max_delta_e": max(r["emojicam"]["delta_e"] for r in results.values())}
    write_atomic(out_dir / "quality.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=1) + "\n"))
    return summary


def format_summary(summary: dict) -> str:
    """A small table: one row per photo and method."""
    lines = [f"{'photo':24s} {'method':9s} {'colour err':>10s} {'edges':>7s} {'coverage':>8s} {'wallpaper':>9s} "
             f"{'delta E':>7s}"]
    for name, row in summary["photos"].items():
        for method in ("emojicam", "baseline", "random"):
            m = row[method]
            lines.append(f"{name[:24]:24s} {method:9s} {m['colour_error']:10.2f} {m['edge_agreement']:7.3f} "
                         f"{m['coverage']:8.3f} {m['wallpaper']:9.3f} {m['delta_e']:7.2f}")
        lines.append(f"{'':24s} colour error {row['colour_ratio']:.2f}x the baseline's, edges "
                     f"{row['edge_gain']:+.3f}")
    lines.append(f"mean emoji coverage {summary['mean_coverage']:.3f}, worst wallpaper share "
                 f"{summary['max_wallpaper']:.3f} at {summary['cols']} columns; background "
                 f"{summary['background']}, baseline and random on {summary['baseline_background']}")
    return "\n".join(lines)
