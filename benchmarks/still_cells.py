"""Skipping still cells in video: share skipped, agreement, flicker and fps per threshold, one run.

    .venv/bin/python benchmarks/still_cells.py [--device CL] [--cols 64] [--thresholds 0,2,4,8]

Plays samples/sample.mp4 (1280x720, 180 frames: four photos, each held still for 0.5 s with sensor noise, then
panned or zoomed for 1 s) through the engine with the video defaults (stability 1.0), once per --still-threshold.
Agreement = share of tiles equal to the threshold-0 run's on the same frame (0 = every cell through the network
every frame). Flicker = share of tiles that change from frame to frame while the camera holds still.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from emojicam import model
from emojicam.emoji_set import EmojiSet
from emojicam.engine import Emojifier, Settings
from emojicam.model import DEFAULT_WEIGHTS

ROOT = Path(__file__).resolve().parent.parent
HELD = [(s * 45, s * 45 + 15) for s in range(4)]  # frames in which a photo is held still (0.5 s of each 1.5 s)


def frames_of(clip: Path) -> list[np.ndarray]:
    cap, frames = cv2.VideoCapture(str(clip)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def play(engine: Emojifier, frames: list[np.ndarray]) -> tuple[np.ndarray, list[float], list[float]]:
    """Indices per frame, ms per frame, share of cells skipped per frame."""
    engine.reset()
    picked, ms, skipped = [], [], []
    for frame in frames:
        t0 = time.perf_counter()
        result = engine(frame)
        ms.append((time.perf_counter() - t0) * 1e3)
        picked.append(result.indices)
        skipped.append(result.skipped)
    return np.stack(picked), ms, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--cols", type=int, default=64)
    parser.add_argument("--thresholds", default="0,2,4,6,8,12")
    args = parser.parse_args()
    frames = frames_of(ROOT / "samples" / "sample.mp4")
    emoji_set, ckpt = EmojiSet.load(), model.load(DEFAULT_WEIGHTS, args.device)
    held = np.zeros(len(frames), bool)
    for a, b in HELD:
        held[a + 1:b] = True  # frame a is the cut into the held shot
    rows, reference = [], None
    for threshold in (float(t) for t in args.thresholds.split(",")):
        settings = Settings(cols=args.cols, device=args.device, stability=1.0, still_threshold=threshold)
        with Emojifier(ckpt, emoji_set, settings) as engine:
            engine.warm_up(engine.grid_for(frames[0].shape).count)  # compile every batch size first
            picked, ms, skipped = play(engine, frames)
            device = engine.device
        if reference is None:
            reference = picked
        changes = (picked[1:] != picked[:-1]).mean(1)
        rows.append({"threshold": threshold, "ms_per_frame": float(np.mean(ms)), "fps": 1e3 / float(np.mean(ms)),
                     "skipped": float(np.mean(skipped)), "skipped_held": float(np.mean(np.array(skipped)[held])),
                     "skipped_moving": float(np.mean(np.array(skipped)[~held])),
                     "agreement": float((picked == reference).mean()),
                     "agreement_min_frame": float((picked == reference).mean(1).min()),
                     "flicker_held": float(changes[held[1:]].mean())})
        r = rows[-1]
        print(f"threshold {threshold:4.1f}: {r['fps']:5.2f} fps ({r['ms_per_frame']:6.1f} ms/frame), skipped "
              f"{r['skipped']:6.1%} (held {r['skipped_held']:6.1%}, moving {r['skipped_moving']:6.1%}), agreement "
              f"{r['agreement']:7.2%} (worst frame {r['agreement_min_frame']:6.1%}), "
              f"flicker held {r['flicker_held']:.3%}", flush=True)
    stamp = time.strftime("%Y-%m-%d")
    out = ROOT / "benchmarks" / "results" / f"{stamp}-still-cells.json"
    report = {"date": stamp, "device": device, "cols": args.cols, "rows": rows}
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
