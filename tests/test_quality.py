"""The quality measures on constructed cases whose answers are known (not the shipped model's score)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import ROOT, run_cli

from emojicam.emoji_set import EmojiSet
from emojicam.evaluate import (
    baseline_indices,
    colour_error,
    colour_fidelity,
    draw_on,
    edge_agreement,
    emoji_coverage,
    emoji_lab,
    lab,
    wallpaper,
)
from emojicam.grid import Grid

TILE = 16


@pytest.fixture(scope="module")
def emoji_set() -> EmojiSet:
    return EmojiSet.load()


def test_one_colour_image_against_itself_and_another_colour():
    grey = np.full((64, 96, 3), 120, np.uint8)
    assert colour_error(grey, grey, TILE) == pytest.approx(0, abs=1e-4)
    assert colour_error(grey, np.full_like(grey, 150), TILE) == pytest.approx(30, abs=1e-3)
    assert edge_agreement(grey, grey, TILE) == 0.0, "no edges: no correlation to speak of"


def test_edges_agree_with_themselves_and_less_with_a_shifted_copy():
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 255, (4, 6, 3)).astype(np.uint8).repeat(TILE, 0).repeat(TILE, 1)  # 64x96 blocks
    shifted = np.roll(blocks, TILE // 2, axis=1)
    assert edge_agreement(blocks, blocks, TILE) == pytest.approx(1.0, abs=1e-6)
    assert edge_agreement(blocks, shifted, TILE) < 0.7
    assert colour_error(blocks, shifted, TILE) > 5


def test_a_picture_made_of_set_tiles_is_rebuilt_exactly_by_the_baseline(emoji_set):
    means = emoji_set.mean_colours("black")
    # pick emoji whose mean colours are far apart, so the nearest-mean answer is unique
    order = np.argsort(means.sum(1))
    chosen = order[:: len(order) // 12][:12]
    grid = Grid(4, 3, TILE)
    frame = draw_on(emoji_set, chosen, grid)
    assert (baseline_indices(emoji_set, frame, grid) == chosen).all()
    rebuilt = draw_on(emoji_set, baseline_indices(emoji_set, frame, grid), grid)
    assert colour_error(frame, rebuilt, TILE) == pytest.approx(0, abs=1e-4)
    assert edge_agreement(frame, rebuilt, TILE) == pytest.approx(1.0, abs=1e-6)


def test_colour_fidelity_is_zero_for_an_emoji_of_the_cells_own_colour_and_the_lab_distance_otherwise(emoji_set):
    emoji = emoji_lab(emoji_set)
    grid = Grid(3, 2, TILE)
    chosen = int(np.argmin(np.abs(emoji[:, 0] - 50)))  # a mid-grey-lightness emoji: its colour is drawable in BGR
    bgr = cv2.cvtColor(emoji[chosen].reshape(1, 1, 3).astype(np.float32), cv2.COLOR_Lab2BGR) * 255
    frame = np.full((2 * 40, 3 * 40, 3), bgr.round().clip(0, 255).reshape(3), np.uint8)
    same, other = np.full(grid.count, chosen), np.full(grid.count, (chosen + 1) % len(emoji))
    assert colour_fidelity(frame, same, grid, emoji) < 1.0, "within one level's rounding"
    expected = np.linalg.norm(emoji[other[0]] - lab(frame[:1, :1])[0, 0])
    assert expected > 5 and colour_fidelity(frame, other, grid, emoji) == pytest.approx(expected, abs=1e-3)


def test_coverage_is_the_mean_opacity_of_the_chosen_emoji(emoji_set):
    cover = emoji_set.coverage()
    full, small = int(cover.argmax()), int(cover.argmin())
    assert emoji_coverage(emoji_set, np.array([full] * 3)) == pytest.approx(cover[full])
    assert emoji_coverage(emoji_set, np.array([full, small])) == pytest.approx((cover[full] + cover[small]) / 2)
    assert 0.5 < cover.mean() < 0.75, "the shipped set averages about 60% coverage"


def test_wallpaper_counts_interior_cells_equal_to_all_four_neighbours():
    grid = Grid(5, 4, TILE)
    assert wallpaper(np.zeros(20, int), grid) == 1.0, "one emoji everywhere: every interior cell"
    assert wallpaper(np.arange(20), grid) == 0.0
    cells = np.arange(20).reshape(4, 5)
    cells[0:3, 0:3] = 7  # a 3x3 block: only its centre (1, 1) has four equal neighbours
    assert wallpaper(cells.ravel(), grid) == 1 / 6, "6 interior cells, 1 of them wallpaper"
    checker = (np.indices((4, 5)).sum(0) % 2).ravel()
    assert wallpaper(checker, grid) == 0.0
    assert wallpaper(np.zeros(10, int), Grid(5, 2, TILE)) == 0.0, "no interior"


def test_variety_breaks_up_a_flat_area_and_a_still_frame_keeps_its_emoji(weights):
    from emojicam import model
    from emojicam.engine import Emojifier, Settings

    ckpt, emoji_set = model.load(weights, "CPU"), EmojiSet.load()
    flat = np.full((180, 320, 3), (200, 150, 90), np.uint8)  # a flat blue-grey sky
    plain = Emojifier(ckpt, emoji_set, Settings(device="CPU", cols=16, variety=0.0))
    varied = Emojifier(ckpt, emoji_set, Settings(device="CPU", cols=16))
    grid = plain.grid_for(flat.shape)
    assert wallpaper(plain(flat).indices, grid) == 1.0, "without variety every cell of a flat frame is the same"
    first = varied(flat).indices.copy()
    assert wallpaper(first, grid) <= 0.15 and len(set(first)) >= 3, np.unique(first, return_counts=True)
    varied.reset()
    np.testing.assert_array_equal(varied(flat).indices, first, "the dither is fixed per cell: same frame, same emoji")


def test_noisy_still_frames_differ_only_by_noise():
    frame = np.full((20, 30, 3), 100, np.uint8)
    a, b = noisy_still(frame, 2, sigma=3.0)
    assert not np.array_equal(a, b)
    assert abs(float(a.mean()) - 100) < 1 and 2 < float(a.astype(float).std()) < 4


def test_evaluate_command_writes_measures_and_contact_sheets(tmp_path, weights):
    photo = ROOT / "samples" / "grace_hopper.jpg"
    done = run_cli("evaluate", photo, "--cols", 16, "-o", tmp_path, "--weights", weights)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "quality.json").read_text())
    row = report["photos"]["grace_hopper.jpg"]
    assert set(row) >= {"emojicam", "baseline", "random", "colour_ratio", "edge_gain"}
    assert row["random"]["colour_error"] > row["baseline"]["colour_error"], "random tiles are the worst mosaic"
    assert (tmp_path / "grace_hopper_sheet.png").stat().st_size > 0
    assert "colour error" in done.stdout


def test_stability_cuts_flicker_on_a_noisy_still_scene(weights):
    from emojicam import model
    from emojicam.engine import Emojifier, Settings
    from emojicam.media.images import read_image

    ckpt, emoji_set = model.load(weights, "CPU"), EmojiSet.load()
    photo = read_image(ROOT / "samples" / "grace_hopper.jpg")
    frames = noisy_still(photo, 6)
    free = Emojifier(ckpt, emoji_set, Settings(device="CPU", stability=0.0))
    held = Emojifier(ckpt, emoji_set, Settings(device="CPU", stability=1.0))
    assert flicker_rate(free, frames, cols=24) > 0.005, "sensor noise alone flips some tiles without hysteresis"
    assert flicker_rate(held, frames, cols=24) < 0.01
    assert cut_lag(held, photo, photo[:, ::-1].copy(), cols=24) == 1, "a real change shows on the next frame"


def flicker_rate(emojifier, frames: list[np.ndarray], cols: int) -> float:
    """Mean share of tiles whose emoji changes from one frame to the next."""
    emojifier.reset()
    changes, prev = [], None
    for frame in frames:
        indices = emojifier.pick(frame, cols=cols).indices
        if prev is not None:
            changes.append(float((indices != prev).mean()))
        prev = indices
    return float(np.mean(changes))


def noisy_still(frame: np.ndarray, count: int, sigma: float = 3.0, seed: int = 0) -> list[np.ndarray]:
    """count copies of frame with fresh Gaussian pixel noise each (a still scene seen by a camera sensor)."""
    rng = np.random.default_rng(seed)
    return [np.clip(frame + rng.normal(0, sigma, frame.shape), 0, 255).astype(np.uint8) for _ in range(count)]


def cut_lag(emojifier, before: np.ndarray, after: np.ndarray, cols: int, settle: float = 0.95) -> int:
    """Frames after a hard cut until `settle` of the tiles show what a stability-free engine would show."""
    target = emojifier.pick_still(after, cols).indices  # no previous frame: no hysteresis
    emojifier.reset()
    for _ in range(3):
        emojifier.pick(before, cols=cols)
    for lag in range(1, 10):
        if (emojifier.pick(after, cols=cols).indices == target).mean() >= settle:
            return lag
    return 10
