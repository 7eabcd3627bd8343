"""Where the device path and the host path pick differently, and why: the network's top-2 margin on those cells.

    .venv/bin/python benchmarks/device_host_difference.py [--model fast] [--cols 12] [--size 181x321] [--json OUT]
    .venv/bin/python benchmarks/device_host_difference.py --two-engines [--composite host]

Runs tests/test_speed.py's device-against-host comparison (the sample clip's frames 0, 10, 20, 30 and 30 again,
resized to --size, stability 1.0) in this process, then for every cell whose emoji differ: the host path's patch
(OpenCV) against the device path's (device_frame.area_resize), and the scores of the top two emoji on each patch,
computed by the same network outside the captured functions. Prints one JSON object. Run it under SCACHE=0,
NO_MEMORY_PLANNER=1 or JIT=0 to see whether tinygrad's caches change the picks.
--two-engines: two engines with the same settings, the second loading what the first stored in the JIT cache (a
fresh one): how many buffers their captured functions share, and on how many cells the second picks differently
from an engine alone when the first runs in between.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from tinygrad import Tensor
from tinygrad.uop.ops import Ops, buffers

from emojicam import model as model_io
from emojicam.device_frame import area_resize, resize_weights
from emojicam.emoji_set import EmojiSet
from emojicam.engine import Emojifier, Settings
from emojicam.grid import Grid, cut_patches

ROOT = Path(__file__).resolve().parent.parent


def clip_frames(size: tuple[int, int]) -> list[np.ndarray]:
    """The comparison's frames: the sample clip's 0, 10, 20, 30, resized to size (h, w) by area."""
    cap = cv2.VideoCapture(str(ROOT / "samples" / "sample.mp4"))
    clip = [cap.read()[1] for _ in range(31)][::10]
    return [cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA) for f in clip]


def device_patches(frame: np.ndarray, grid: Grid, px: int, device: str) -> np.ndarray:
    """The device path's patches for frame, (N, px, px, 3) uint8 RGB, computed eagerly (as device_frame.run)."""
    size = (grid.rows * px, grid.cols * px)
    small = area_resize(Tensor(frame, device=device), size, resize_weights(frame.shape[:2], size, device))
    cells = small.numpy()[..., ::-1].reshape(grid.rows, px, grid.cols, px, 3).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(cells).reshape(grid.count, px, px, 3).astype(np.uint8)


def top2(scorer, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) indices and (N, 2) scores of each patch's two best emoji (first frame: no hysteresis)."""
    score = scorer.scores(Tensor(patches, device=scorer.device)).numpy()
    order = np.argsort(-score, 1)[:, :2]
    return order, np.take_along_axis(score, order, 1)


def compare(model: str, cols: int, size: tuple[int, int], device: str = "CPU", still: float = 0.0) -> dict:
    """The comparison, then the margins of every disagreeing cell (see the module's docstring)."""
    frames = clip_frames(size)
    ckpt = model_io.load(model_io.shipped_weights(model_name=model), device)
    settings = dict(cols=cols, tile_px=8, device=device, stability=1.0, still_threshold=still, cpu_threads=1)
    emoji_set = EmojiSet.load()
    out: dict = {"frames": []}
    with (Emojifier(ckpt, emoji_set, Settings(**settings, composite="host")) as host,
          Emojifier(ckpt, emoji_set, Settings(**settings, composite="device")) as on_device):
        picks = [(host(f).indices, on_device(f).indices) for f in [*frames, frames[-1]]]
        px, scorer = host.patch_px, host.lanes.scorer
        for frame, (a, b) in zip([*frames, frames[-1]], picks, strict=True):
            grid = host.grid_for(frame.shape)
            ours, theirs = cut_patches(frame, grid, px), device_patches(frame, grid, px, device)
            diff = np.abs(ours.astype(int) - theirs)
            (host_top, host_score), (dev_top, dev_score) = top2(scorer, ours), top2(scorer, theirs)
            cells = []
            for cell in np.flatnonzero(a != b):
                cells.append({"cell": int(cell), "host_pick": int(a[cell]), "device_pick": int(b[cell]),
                              "host_patch_top2": host_top[cell].tolist(),
                              "host_patch_scores": host_score[cell].round(4).tolist(),
                              "device_patch_top2": dev_top[cell].tolist(),
                              "device_patch_scores": dev_score[cell].round(4).tolist(),
                              "patch_levels_differing": int((diff[cell] > 0).sum()),
                              "patch_max_level_diff": int(diff[cell].max())})
            margins = host_score[:, 0] - host_score[:, 1]
            out["frames"].append({"cells": int(grid.count), "differ": int((a != b).sum()), "disagreeing": cells,
                                  "patch_levels_differing_share": round(float((diff > 0).mean()), 5),
                                  "patch_max_level_diff": int(diff.max()),
                                  "network_picks_differ_on_the_two_patch_sets": int((host_top[:, 0] !=
                                                                                      dev_top[:, 0]).sum()),
                                  "smallest_top2_margin": round(float(margins.min()), 5)})
    out["same"] = 1 - sum(f["differ"] for f in out["frames"]) / sum(f["cells"] for f in out["frames"])
    out["env"] = {k: os.environ[k] for k in ("SCACHE", "NO_MEMORY_PLANNER", "JIT") if k in os.environ}
    return out


def captured_buffers(engine: Emojifier) -> set[int]:
    """The ids of the device buffers in an engine's captured functions."""
    path = engine._path
    jits = ([f.jit for f in path._frames.values()] if engine.on_device else
            [jit for lane in engine.lanes._lanes for jit in lane.jits.values()])
    return {id(buffers[u]) for jit in jits for u in jit.captured.linear.toposort()
            if u.op is Ops.BUFFER and u in buffers}


def two_engines(model: str, cols: int, size: tuple[int, int], composite: str, device: str = "CPU") -> dict:
    """See --two-engines in the module's docstring."""
    os.environ["EMOJICAM_CACHE"] = tempfile.mkdtemp(prefix="emojicam-jit-")
    frames = clip_frames(size)
    ckpt = model_io.load(model_io.shipped_weights(model_name=model), device)
    settings = Settings(cols=cols, tile_px=8, device=device, stability=1.0, cpu_threads=1, composite=composite)
    first = Emojifier(ckpt, EmojiSet.load(), settings)
    alone = [first(frame).indices for frame in frames]
    second = Emojifier(ckpt, EmojiSet.load(), settings)
    second(frames[0])
    differ = []
    for n in range(1, len(frames)):
        first(frames[-n])
        differ.append(int((second(frames[n]).indices != alone[n]).sum()))
    return {"composite": composite, "buffers": len(captured_buffers(second)),
            "shared": len(captured_buffers(first) & captured_buffers(second)), "cells_differ": differ}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fast", help="shipped model (default fast)")
    p.add_argument("--cols", type=int, default=12, help="grid columns (default 12)")
    p.add_argument("--size", default="181x321", help="frame HxW (default 181x321)")
    p.add_argument("--device", default="CPU", help="tinygrad device (default CPU)")
    p.add_argument("--json", type=Path, help="also write the result here")
    p.add_argument("--two-engines", action="store_true", help="the shared-buffer check instead (see above)")
    p.add_argument("--composite", default="device", choices=["host", "device"],
                   help="with --two-engines: the path (default device)")
    args = p.parse_args(argv)
    h, w = map(int, args.size.split("x"))
    got = (two_engines(args.model, args.cols, (h, w), args.composite, args.device) if args.two_engines
           else compare(args.model, args.cols, (h, w), args.device))
    text = json.dumps(got)
    print(text)
    if args.json:
        args.json.write_text(text)
    sys.exit(0)


if __name__ == "__main__":
    main()
