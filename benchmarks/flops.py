"""Analytic against measured FLOPs, layer by layer, for one batch of patches on one tinygrad device.

    .venv/bin/python benchmarks/flops.py [--device CPU] [--patches 576] [--weights weights/default.safetensors]
Analytic: 2 FLOPs per multiply-add of the convolutions and the linear layer, worked out here from the layer shapes
(an independent check of ModelConfig.flops_per_patch). Measured: tinygrad's GlobalCounters.global_ops around each
layer realized on its own, then around the whole forward realized at once (kernels fused).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tinygrad import Tensor
from tinygrad.helpers import GlobalCounters

from emojicam import model


def measured(fn, x: Tensor) -> tuple[Tensor, int, int]:
    GlobalCounters.reset()
    out = fn(x).realize()
    return out, GlobalCounters.global_ops, GlobalCounters.kernel_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="CPU", help="tinygrad device (default CPU)")
    parser.add_argument("--patches", type=int, default=576, help="batch size (default 576 = a 32x18 grid)")
    parser.add_argument("--weights", type=Path, default=model.DEFAULT_WEIGHTS, help="weights (default: shipped)")
    args = parser.parse_args()
    net = model.load(args.weights, args.device).model
    cfg, n = net.config, args.patches
    c1, c2 = cfg.channels
    s1 = cfg.patch_px - 2            # conv1 output side
    s2 = s1 // 2 - 2                 # conv2 output side
    steps = [  # name, layer, analytic FLOPs for the batch (None: not counted by flops_per_patch)
        ("normalise", lambda x: x.cast("float32") * (1 / 255) - 0.5, None),
        ("conv1", net.conv1, 2 * n * s1 * s1 * c1 * 3 * 9),
        ("relu+pool1", lambda x: x.relu().max_pool2d(2), None),
        ("conv2", net.conv2, 2 * n * s2 * s2 * c2 * c1 * 9),
        ("relu+pool2", lambda x: x.relu().max_pool2d(2), None),
        ("linear", lambda x: net.fc(x.flatten(1)), 2 * n * net.fc.weight.shape[1] * cfg.classes),
        ("log_softmax", lambda x: x.log_softmax(1), None),
        ("argmax", lambda x: x.argmax(1), None),
    ]
    patches = np.random.default_rng(0).integers(0, 256, (n, 3, cfg.patch_px, cfg.patch_px), dtype=np.uint8)
    x = Tensor(patches, device=args.device).realize()
    print(f"{n} patches on {args.device}, {cfg.classes} classes, channels {cfg.channels}")
    print(f"{'layer':12s} {'analytic MFLOP':>15s} {'measured MFLOP':>15s} {'ratio':>6s} {'kernels':>8s}")
    total_measured = 0
    for name, layer, analytic in steps:
        x, ops, kernels = measured(layer, x)
        total_measured += ops
        ratio = f"{ops / analytic:6.3f}" if analytic else "     -"
        print(f"{name:12s} {(analytic or 0) / 1e6:15.2f} {ops / 1e6:15.2f} {ratio} {kernels:8d}")
    analytic_total = cfg.flops_per_patch() * n
    _, fused, kernels = measured(lambda t: net(t).argmax(1), Tensor(patches, device=args.device).realize())
    for name, ops in (("sum", total_measured), ("fused", fused)):
        print(f"{name:12s} {analytic_total / 1e6:15.2f} {ops / 1e6:15.2f} {ops / analytic_total:6.3f}"
              + (f" {kernels:8d}" if name == "fused" else ""))
    print(f"per patch: analytic {cfg.flops_per_patch() / 1e6:.3f} MFLOP (ModelConfig.flops_per_patch), "
          f"measured {fused / n / 1e6:.3f} MFLOP; reference design 2.2 MFLOP")


if __name__ == "__main__":
    main()
