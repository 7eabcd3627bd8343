"""Per-stage timing of TinyConvNet's forward pass: tinygrad's kernels for the tensor-level network
(TinyConvNet.logits, what the engine ran before) against emojicam's scheduled UOp kernels (emojicam.kernels), on the
same real patches, with onnxruntime on the same patches for scale.

    .venv/bin/python benchmarks/kernels.py [--devices CPU CL] [--patches 1152] [--rounds 9]

1152 patches = one CPU lane's share of a 64x36 frame. Every stage is its own TinyJit; rounds are interleaved, so a
change in machine load hits every row alike; min and median ms over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from tinygrad import Device, Tensor, TinyJit, dtypes

from emojicam import kernels, model
from emojicam.grid import Grid, cut_patches
from emojicam.model import _conv3x3_nhwc, _pool2_nhwc

ROOT = Path(__file__).resolve().parent.parent


def real_patches(count: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(ROOT / "samples" / "sample.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok, "samples/sample.mp4"
    patches = cut_patches(cv2.resize(frame, (1280, 720)), Grid(64, 36, 16))
    return np.resize(patches, (count, *patches.shape[1:]))


def stages(net: model.TinyConvNet, device: str) -> dict[str, tuple[object, object]]:
    """stage -> (tensor-level function, kernel function), each of the stage's input Tensor."""
    fast = kernels.InferenceNet(net, device, scheduled=True)
    c1, c2 = net.conv1, net.conv2

    def old_fc(x: Tensor) -> Tensor:
        return net.fc(x.permute(0, 3, 1, 2).flatten(1))

    return {
        "normalise uint8": (lambda x: x.cast(dtypes.float32) * (1 / 255) - 0.5,
                            lambda x: x.cast(dtypes.float32) * (1 / 255) - 0.5),
        "conv1 + ReLU + pool": (lambda x: _pool2_nhwc(_conv3x3_nhwc(x, c1.weight, c1.bias).relu()),
                                lambda x: kernels.conv3x3_relu_maxpool(x, *fast.conv1)),
        "conv2 + ReLU + pool": (lambda x: _pool2_nhwc(_conv3x3_nhwc(x, c2.weight, c2.bias).relu()),
                                lambda x: kernels.conv3x3_relu_maxpool(x, *fast.conv2)),
        "linear": (old_fc, lambda x: kernels.linear(x.reshape(x.shape[0], -1), *fast.fc)),
        "patch mean colour": (lambda x: x.cast(dtypes.float32).mean((1, 2)),
                              kernels.channel_means),
        "whole forward, uint8 -> argmax": (lambda x: net.logits(x).argmax(1),
                                           lambda x: fast.logits(x).argmax(1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=["CPU", "CL"])
    parser.add_argument("--patches", type=int, default=1152)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    patches = real_patches(args.patches)
    rows = []
    for device in args.devices:
        net = model.load(model.DEFAULT_WEIGHTS, device).model
        x = Tensor(patches, device=device).realize()
        inputs = {"normalise uint8": x, "patch mean colour": x, "whole forward, uint8 -> argmax": x}
        xf = (x.cast(dtypes.float32) * (1 / 255) - 0.5).contiguous().realize()
        inputs["conv1 + ReLU + pool"] = xf
        h1 = _pool2_nhwc(_conv3x3_nhwc(xf, net.conv1.weight, net.conv1.bias).relu()).contiguous().realize()
        inputs["conv2 + ReLU + pool"] = h1
        h2 = _pool2_nhwc(_conv3x3_nhwc(h1, net.conv2.weight, net.conv2.bias).relu())
        inputs["linear"] = h2.contiguous().realize()
        jits, times = {}, {}
        for stage, fns in stages(net, device).items():
            for which, fn in zip(("tensor ops", "emojicam kernels"), fns, strict=True):
                jit = TinyJit(lambda t, fn=fn: fn(t).contiguous().realize())
                for _ in range(3):
                    out = jit(inputs[stage])
                jits[stage, which], times[stage, which] = (jit, out.numpy()), []
            a, b = (jits[stage, w][1] for w in ("tensor ops", "emojicam kernels"))
            agree = np.mean(a == b) if a.dtype.kind in "iu" else float(np.abs(a - b).max())
            jits[stage, "agreement"] = agree
        for _ in range(args.rounds):
            for key in times:
                t0 = time.perf_counter()
                jits[key][0](inputs[key[0]])
                Device[device].synchronize()
                times[key].append((time.perf_counter() - t0) * 1e3)
        for stage in stages(net, device):
            old, new = times[stage, "tensor ops"], times[stage, "emojicam kernels"]
            agree = jits[stage, "agreement"]
            rows.append(f"| {device} | {stage} | {min(old):.1f} / {statistics.median(old):.1f} | "
                        f"{min(new):.1f} / {statistics.median(new):.1f} | {min(old) / min(new):.2f}x | "
                        + (f"{agree:.2%} same argmax |" if "argmax" in stage else f"max abs diff {agree:.1e} |"))
    print(f"{args.patches} real patches (64x36 grid of samples/sample.mp4, frame 1), min / median ms over "
          f"{args.rounds} interleaved rounds\n")
    print("| device | stage | tensor ops (TinyConvNet.logits) ms | emojicam kernels ms | speed-up (min) | agreement |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
