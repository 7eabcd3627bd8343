"""Training steps per second at the default batch, per network form and device, in one run.

    python benchmarks/train_speed.py [--devices CPU,CL] [--steps 12] [--out benchmarks/results/DATE-train-speed.md]

Forms: `planar` (TinyConvNet.planar_logits: tinygrad's Tensor.conv2d + max_pool2d, what `emojicam train` uses),
`channels-last` (TinyConvNet.logits: shifted-slice matmuls, the inference form the tensor path runs). Each form
trains the same network on the same batches (the shipped set's first 40 emoji, as in the issue, and the whole set)
with the same JIT-compiled Adam step as emojicam/train.py; the step time excludes the host's perturbations, which
are timed apart.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tinygrad import Context, Tensor, TinyJit, nn

from emojicam.augment import perturb
from emojicam.emoji_set import EmojiSet
from emojicam.model import ModelConfig, TinyConvNet
from emojicam.train import TrainConfig

FORMS = {"planar": TinyConvNet.planar_logits, "channels-last": TinyConvNet.logits}


def steps_per_s(form: str, device: str, classes: int, patch_px: int, x: np.ndarray, y: np.ndarray,
                steps: int) -> float:
    Tensor.manual_seed(0)
    model = TinyConvNet(ModelConfig(classes=classes, patch_px=patch_px)).to_(device)
    opt = nn.optim.Adam(nn.state.get_parameters(model), lr=1e-3)
    forward = FORMS[form]

    @TinyJit
    @Context(TRAINING=1)
    def step(xb: Tensor, yb: Tensor) -> Tensor:
        opt.zero_grad()
        loss = forward(model, xb).sparse_categorical_crossentropy(yb).backward()
        return loss.realize(*opt.schedule_step())

    batches = [(Tensor(x[i], device=device).realize(), Tensor(y[i], device=device).realize()) for i in range(len(x))]
    for i in range(3):  # run, capture, first replay
        step(*batches[i % len(batches)]).item()
    t0 = time.perf_counter()
    for i in range(steps):
        step(*batches[i % len(batches)]).item()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="CPU,CL")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    batch = TrainConfig().batch
    full = EmojiSet.load()
    rng = np.random.default_rng(0)
    rows = []
    for classes in (40, len(full)):
        for patch_px in (36, 18):
            rgba = full.rgba_patches(patch_px)[:classes]
            y = rng.integers(0, classes, (4, batch)).astype(np.int32)
            t0 = time.perf_counter()
            x = np.stack([perturb(rgba[labels], rng) for labels in y])
            perturb_ms = (time.perf_counter() - t0) / len(y) * 1e3
            for device in args.devices.split(","):
                for form in FORMS:
                    if form == "channels-last" and patch_px == 18:
                        continue  # the comparison is made at 36 px; 18 px trains in the faster form only
                    rate = steps_per_s(form, device, classes, patch_px, x, y, args.steps)
                    rows.append((classes, patch_px, device, form, rate, perturb_ms))
                    print(f"{classes} emoji, {patch_px} px, {device}, {form}: {rate:.2f} steps/s "
                          f"({1e3 / rate:.0f} ms/step; perturbing a batch on the host {perturb_ms:.0f} ms)", flush=True)
    model = subprocess.run(["sh", "-c", "lscpu | grep 'Model name'"], capture_output=True, text=True).stdout
    model = model.split(":", 1)[-1].strip()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [f"# Training steps per second, batch {batch} ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
             f"Machine: {model or platform.processor()}, {len(os.sched_getaffinity(0))} cores, load average at the "
             f"end {load}; `python benchmarks/train_speed.py`, {args.steps} timed steps after 3 warm-up steps. "
             "Step = JIT-compiled forward + backward + Adam on a batch already on the device; the host's "
             "perturbations (numpy/OpenCV, one core) are timed apart.", "",
             "| emoji | patch px | device | form | steps/s | ms/step | perturb ms/batch |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {c} | {p} | {d} | {f} | {r:.2f} | {1e3 / r:.0f} | {m:.0f} |" for c, p, d, f, r, m in rows]
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
