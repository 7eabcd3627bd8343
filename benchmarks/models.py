"""The shipped models and sets side by side, in one run: `emojicam convert` of the 1280x720 H.264 sample clip
(with its audio) per model, and the engine's forward per model x set.

    python benchmarks/models.py [--runs 2] [--device CPU] [--out benchmarks/results/DATE-models.md]

End to end: each model converts the clip once untimed (kernels compiled, the JIT cache filled), then --runs
times, alternating, so that the machine's drift hits both; the figure is the fps `convert` reports, and the
output is checked for an audio stream. Engine: the frame function (forward + scoring) at 64x36 on the clip's
patches, median ms per frame, for each network on each set.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

from emojicam import model as model_io
from emojicam.bench.machine import machine_line
from emojicam.emoji_set import SETS, EmojiSet, shipped_set
from emojicam.engine import Emojifier, Settings
from emojicam.grid import cut_patches
from emojicam.settings import SHIPPED_MODELS

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "samples" / "sample.mp4"


def convert_fps(model: str, out: Path, device: str) -> float:
    done = subprocess.run([sys.executable, "-m", "emojicam", "convert", str(CLIP), str(out), "--model", model,
                           "--cols", "64", "--device", device], capture_output=True, text=True, cwd=ROOT)
    found = re.search(r"at ([\d.]+) fps", done.stdout)
    if done.returncode or not found:
        raise SystemExit(f"convert --model {model} failed: {done.stderr[-400:]}")
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(out)], capture_output=True, text=True).stderr
    if "Audio:" not in probe:
        raise SystemExit(f"convert --model {model}: no audio stream in the output")
    return float(found[1])


def engine_ms(set_name: str, model: str, device: str, frames: list[np.ndarray]) -> tuple[float, int]:
    emoji_set = EmojiSet.load(shipped_set(set_name))
    ckpt = model_io.load(model_io.shipped_weights(set_name, model), device)  # every set ships every model
    with Emojifier(ckpt, emoji_set, Settings(cols=64, device=device)) as emojifier:
        grid = emojifier.grid_for(frames[0].shape)
        batches = [cut_patches(f, grid, emojifier.patch_px) for f in frames]
        emojifier.classify(batches[0])
        emojifier.classify(batches[1])  # compiled and captured
        times = []
        for patches in batches * 2:
            t0 = time.perf_counter()
            emojifier.classify(patches)
            times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), ckpt.model.config.flops_per_patch() * grid.count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--skip-convert", action="store_true")
    args = parser.parse_args()
    lines = [f"# Models and sets ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC)", "",
             f"Machine: {machine_line()} at the start; device {args.device}; "
             f"`python benchmarks/models.py --runs {args.runs} --device {args.device}`.", ""]
    if not args.skip_convert:
        fps: dict[str, list[float]] = {m: [] for m in SHIPPED_MODELS}
        with tempfile.TemporaryDirectory() as tmp:
            for model in SHIPPED_MODELS:
                convert_fps(model, Path(tmp) / f"warm_{model}.mp4", args.device)
            for run in range(args.runs):
                for model in SHIPPED_MODELS:
                    fps[model].append(convert_fps(model, Path(tmp) / f"{model}_{run}.mp4", args.device))
                    print(f"convert --model {model}: {fps[model][-1]:.1f} fps", flush=True)
        lines += ["`emojicam convert samples/sample.mp4` (1280x720 H.264 + AAC, 180 frames) at 64x36, audio kept:", "",
                  "| model | fps per run | best | vs default |", "| --- | --- | --- | --- |"]
        for model, runs in fps.items():
            lines.append(f"| {model} | {', '.join(f'{f:.1f}' for f in runs)} | {max(runs):.1f} | "
                         f"{max(runs) / max(fps['default']):.2f}x |")
        lines.append("")
    cap = cv2.VideoCapture(str(CLIP))
    frames = [cap.read()[1] for _ in range(60)][::10]
    lines += ["Engine (frame function: forward + scoring, 2,304 patches), median of 12 frames:", "",
              "| set | emoji | model | MFLOP/patch | GFLOP/frame | ms/frame | engine fps |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for set_name in SETS:
        for model in SHIPPED_MODELS:
            ms, flops = engine_ms(set_name, model, args.device, frames)
            count = len(EmojiSet.load(shipped_set(set_name)))
            lines.append(f"| {set_name} | {count} | {model} | {flops / 2304 / 1e6:.2f} | {flops / 1e9:.2f} | "
                         f"{ms:.1f} | "
                         f"{1e3 / ms:.1f} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
