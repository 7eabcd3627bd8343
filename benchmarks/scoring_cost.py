"""What the colour-match + coverage scoring costs: FLOPs and engine fps with and without it, same run.

    .venv/bin/python benchmarks/scoring_cost.py [--device CL] [--cols 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
from tinygrad import GlobalCounters

from emojicam import model
from emojicam.emoji_set import EmojiSet
from emojicam.engine import Emojifier, Settings
from emojicam.model import DEFAULT_WEIGHTS

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--device", default="CL")
parser.add_argument("--cols", type=int, default=64)
parser.add_argument("--frames", type=int, default=20)
args = parser.parse_args()

cap = cv2.VideoCapture("samples/sample.mp4")
frames = [cv2.resize(cap.read()[1], (1280, 720)) for _ in range(args.frames)]
emoji_set, ckpt = EmojiSet.load(), model.load(DEFAULT_WEIGHTS, args.device)
results = {}
network_only = Settings(device=args.device, colour_weight=0, coverage_weight=0, variety=0)
with (Emojifier(ckpt, emoji_set, network_only) as bare,
      Emojifier(ckpt, emoji_set, Settings(device=args.device)) as scored):
    engines = {"network only": bare, "default scoring": scored}
    for name, engine in engines.items():
        for frame in frames[:3]:  # compile + JIT capture
            engine(frame, cols=args.cols)
        GlobalCounters.reset()
        engine(frames[0], cols=args.cols)
        flops = GlobalCounters.global_ops
        results[name] = {"flops": flops, "ms": []}
    for _ in range(2):  # interleave the two engines so load changes hit both alike
        for frame in frames:
            for name, engine in engines.items():
                t = time.perf_counter()
                engine(frame, cols=args.cols)
                results[name]["ms"].append((time.perf_counter() - t) * 1e3)
base = results["network only"]
print(f"device {args.device}, grid {args.cols} cols, {len(frames)} frames x 2, interleaved")
for name, r in results.items():
    ms = statistics.median(r["ms"])
    print(f"{name:16s} {r['flops'] / 1e9:7.3f} GFLOP/frame ({r['flops'] / base['flops']:.3f}x)  "
          f"engine {ms:7.1f} ms = {1e3 / ms:5.2f} fps ({statistics.median(base['ms']) / ms:.3f}x fps)")
