"""Alternative tinygrad formulations of the TinyConvNet forward, same weights: time per frame and argmax agreement.

    .venv/bin/python benchmarks/forward_variants.py [--devices CPU CL] [--cols 64] [--runs 5] [--only NAME ...]

Every variant is TinyJit-compiled, warmed up with 3 calls, then timed as the median of --runs calls of
upload (Tensor from numpy) + forward + argmax + download, on one frame's patches. Agreement is the share of
patches (over --frames frames of samples/sample.mp4) whose argmax equals the current `ck.model(x).argmax(1)`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
from tinygrad import Device, Tensor, TinyJit, dtypes

from emojicam import model
from emojicam.grid import Grid, cut_patches

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--devices", nargs="+", default=["CPU", "CL"])
parser.add_argument("--cols", type=int, default=64)
parser.add_argument("--rows", type=int, default=36)
parser.add_argument("--runs", type=int, default=5)
parser.add_argument("--frames", type=int, default=4)
parser.add_argument("--only", nargs="*", default=None, help="variant names to run (baseline always runs)")
args = parser.parse_args()

cap = cv2.VideoCapture("samples/sample.mp4")
frames = []
for i in range(args.frames * 10):  # every 10th frame, so the frames differ
    ok, frame = cap.read()
    if not ok:
        break
    if i % 10 == 0:
        frames.append(cv2.resize(frame, (1280, 720)))
grid = Grid(args.cols, args.rows, 16)
nhwc = [cut_patches(f, grid) for f in frames]                        # (N, 36, 36, 3) uint8, what the engine uploads
nchw = [np.ascontiguousarray(p.transpose(0, 3, 1, 2)) for p in nhwc]  # (N, 3, 36, 36) uint8, the engine's input before

OFFSETS = [(0, 0), (0, 1), (1, 0), (1, 1)]  # the 4 positions inside a 2x2 pool window


def pooled_kernel(w: np.ndarray) -> np.ndarray:
    """(O, I, 3, 3) -> (4*O, I, 4, 4): conv3x3 at the 4 offsets of a 2x2 pool window, as one 4x4 stride-2 conv."""
    o, i = w.shape[:2]
    w4 = np.zeros((4, o, i, 4, 4), np.float32)
    for g, (dy, dx) in enumerate(OFFSETS):
        w4[g, :, :, dy:dy + 3, dx:dx + 3] = w
    return w4.reshape(4 * o, i, 4, 4)


class Weights:
    """The checkpoint's weights in the layouts the variants want, all on `dev`."""

    def __init__(self, ck: model.Checkpoint, dev: str, half: bool = False):
        m = ck.model
        w1, b1 = m.conv1.weight.numpy(), m.conv1.bias.numpy()
        w2, b2 = m.conv2.weight.numpy(), m.conv2.bias.numpy()
        wf, bf = m.fc.weight.numpy(), m.fc.bias.numpy()
        c2, k = w2.shape[0], wf.shape[0]
        fp = wf.shape[1] // c2
        side = round(fp ** 0.5)
        # x/255 - 0.5 folded into conv1: w*(x/255 - 0.5) + b = (w/255)*x + (b - 0.5*sum(w))
        w1f, b1f = w1 / 255, b1 - 0.5 * w1.sum((1, 2, 3))
        dt = np.float16 if half else np.float32

        def t(a: np.ndarray) -> Tensor:
            return Tensor(np.ascontiguousarray(a.astype(dt)), device=dev).realize()

        self.w1, self.b1, self.w2, self.b2, self.wf, self.bf = t(w1), t(b1), t(w2), t(b2), t(wf), t(bf)
        self.w1f, self.b1f = t(w1f), t(b1f)
        # NHWC matmul layouts: rows ordered (ky, kx, cin)
        self.m1 = t(w1f.transpose(2, 3, 1, 0).reshape(-1, w1.shape[0]))        # (27, 8)
        self.m2 = t(w2.transpose(2, 3, 1, 0).reshape(-1, c2))                  # (72, 16)
        self.wf_hwc = t(wf.reshape(k, c2, side, side).transpose(0, 2, 3, 1).reshape(k, -1).T)  # (784, K), HWC rows
        self.wf_t = t(wf.T)                                                    # (784, K), CHW rows
        # pool-fused 4x4 stride-2 kernels
        self.p1 = t(pooled_kernel(w1f))                                        # (32, 3, 4, 4)
        self.p2 = t(pooled_kernel(w2))                                         # (64, 8, 4, 4)
        self.pm1 = t(pooled_kernel(w1f).transpose(2, 3, 1, 0).reshape(-1, 4 * w1.shape[0]))  # (48, 32)
        self.pm2 = t(pooled_kernel(w2).transpose(2, 3, 1, 0).reshape(-1, 4 * c2))            # (128, 64)
        self.dt = dtypes.half if half else dtypes.float32


def im2col(x: Tensor, k: int, out: int, stride: int = 1) -> Tensor:
    """NHWC (N, H, W, C) -> (N, out, out, k*k*C), columns ordered (ky, kx, c)."""
    span = stride * (out - 1) + 1
    cols = [x[:, ky:ky + span:stride, kx:kx + span:stride, :] for ky in range(k) for kx in range(k)]
    return cols[0].cat(*cols[1:], dim=3)


def pool2_nhwc(x: Tensor) -> Tensor:
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :2 * h2, :2 * w2, :].reshape(n, h2, 2, w2, 2, c).max((2, 4))


def conv3x3_nhwc(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """x (N, H, W, Cin), w (Cout, Cin, 3, 3) as nn.Conv2d holds it -> (N, H-2, W-2, Cout): 9 shifted slices @ w."""
    h, wd = x.shape[1] - 2, x.shape[2] - 2
    wk = w.permute(2, 3, 1, 0)  # (3, 3, Cin, Cout), a view
    return sum(x[:, ky:ky + h, kx:kx + wd, :] @ wk[ky, kx] for ky in range(3) for kx in range(3)) + b


def logits_nhwc(m: model.TinyConvNet, x: Tensor) -> Tensor:
    """Drop-in for TinyConvNet.logits (same (N, 3, 36, 36) input, same weights, no host-side weight prep)."""
    x = x.permute(0, 2, 3, 1).cast(dtypes.float32) * (1 / 255) - 0.5
    x = pool2_nhwc(conv3x3_nhwc(x, m.conv1.weight, m.conv1.bias).relu()).contiguous()
    x = pool2_nhwc(conv3x3_nhwc(x, m.conv2.weight, m.conv2.bias).relu()).contiguous()
    return m.fc(x.permute(0, 3, 1, 2).flatten(1))


def nhwc_im2col(w: Weights, x: Tensor, dtype) -> Tensor:
    """NHWC im2col + matmul forward in dtype (float32, or half with the half weights) -> int32 argmax."""
    n = x.shape[0]
    y = im2col(x.cast(dtype), 3, 34) @ w.m1 + w.b1f
    y = pool2_nhwc(y.relu())
    y = pool2_nhwc((im2col(y, 3, 15) @ w.m2 + w.b2).relu())
    return (y.reshape(n, -1) @ w.wf_hwc + w.bf).float().argmax(1).cast(dtypes.int32)


def make_variants(ck: model.Checkpoint, dev: str) -> dict[str, tuple[str, object]]:
    """name -> (input layout 'nchw'|'nhwc', function of the uploaded uint8 tensor returning int32 argmax)."""
    m = ck.model
    W = Weights(ck, dev)
    v: dict[str, tuple[str, object]] = {}

    def baseline(x):
        return m(x).argmax(1).cast(dtypes.int32)
    v["baseline: ck.model(x).argmax(1)"] = ("nhwc", baseline)

    def logits_only(x):
        return m.logits(x).argmax(1).cast(dtypes.int32)
    v["logits, no log_softmax"] = ("nhwc", logits_only)

    def folded(x):  # normalisation folded into conv1, no log_softmax
        x = x.cast(dtypes.float32).conv2d(W.w1f, W.b1f).relu().max_pool2d(2)
        x = x.conv2d(W.w2, W.b2).relu().max_pool2d(2)
        return (x.flatten(1) @ W.wf_t + W.bf).argmax(1).cast(dtypes.int32)
    v["fold /255-0.5 into conv1"] = ("nchw", folded)

    def pool_fused(x):  # conv+pool as 4x4 stride-2 conv with 4x channels, max over the 4 groups, then bias+relu
        n = x.shape[0]
        y = x.cast(dtypes.float32).conv2d(W.p1, stride=2)
        y = (y.reshape(n, 4, -1, *y.shape[2:]).max(1) + W.b1f.reshape(1, -1, 1, 1)).relu()
        y = y.conv2d(W.p2, stride=2)
        y = (y.reshape(n, 4, -1, *y.shape[2:]).max(1) + W.b2.reshape(1, -1, 1, 1)).relu()
        return (y.flatten(1) @ W.wf_t + W.bf).argmax(1).cast(dtypes.int32)
    v["pool-fused 4x4/s2 convs (NCHW)"] = ("nchw", pool_fused)

    v["NHWC im2col+matmul"] = ("nhwc", lambda x: nhwc_im2col(W, x, dtypes.float32))

    def nhwc_shift(x):  # explicit sum of shifted slices times (Cin, Cout) weight slabs
        n = x.shape[0]
        xf = x.cast(dtypes.float32)
        m1 = W.m1.reshape(9, 3, -1)
        y = sum(xf[:, ky:ky + 34, kx:kx + 34, :] @ m1[3 * ky + kx] for ky in range(3) for kx in range(3)) + W.b1f
        y = pool2_nhwc(y.relu())
        m2 = W.m2.reshape(9, 8, -1)
        y = sum(y[:, ky:ky + 15, kx:kx + 15, :] @ m2[3 * ky + kx] for ky in range(3) for kx in range(3)) + W.b2
        y = pool2_nhwc(y.relu())
        return (y.reshape(n, -1) @ W.wf_hwc + W.bf).argmax(1).cast(dtypes.int32)
    v["NHWC shifted-slice sums"] = ("nhwc", nhwc_shift)

    def nhwc_shift_contig(x):  # as above, pooled activations materialised
        n = x.shape[0]
        xf = x.cast(dtypes.float32)
        m1 = W.m1.reshape(9, 3, -1)
        y = sum(xf[:, ky:ky + 34, kx:kx + 34, :] @ m1[3 * ky + kx] for ky in range(3) for kx in range(3)) + W.b1f
        y = pool2_nhwc(y.relu()).contiguous()
        m2 = W.m2.reshape(9, 8, -1)
        y = sum(y[:, ky:ky + 15, kx:kx + 15, :] @ m2[3 * ky + kx] for ky in range(3) for kx in range(3)) + W.b2
        y = pool2_nhwc(y.relu()).contiguous()
        return (y.reshape(n, -1) @ W.wf_hwc + W.bf).argmax(1).cast(dtypes.int32)
    v["NHWC shifted-slice sums, .contiguous() after pools"] = ("nhwc", nhwc_shift_contig)

    def nchw_shift(x):  # shifted-slice sums on the engine's NCHW input, output NCHW so fc keeps its layout
        def conv(x, w, b, out):
            o, i = w.shape[:2]
            acc = sum((x[:, :, ky:ky + out, kx:kx + out].unsqueeze(1) * w[:, :, ky, kx].reshape(1, o, i, 1, 1)).sum(2)
                      for ky in range(3) for kx in range(3))
            return acc + b.reshape(1, -1, 1, 1)
        y = conv(x.cast(dtypes.float32), W.w1f, W.b1f, 34).relu().max_pool2d(2)
        y = conv(y, W.w2, W.b2, 15).relu().max_pool2d(2)
        return (y.flatten(1) @ W.wf_t + W.bf).argmax(1).cast(dtypes.int32)
    v["NCHW shifted-slice sums"] = ("nchw", nchw_shift)

    def nchw_in_shift(x):  # the engine's NCHW upload, permuted to NHWC on the device, then shifted-slice sums
        return nhwc_shift_contig(x.permute(0, 2, 3, 1))
    v["NCHW input, on-device permute, NHWC shifted sums, .contiguous()"] = ("nchw", nchw_in_shift)

    def conv_pool(x, m, b, out):  # NHWC conv3x3 evaluated only at the 4 pool offsets (stride 2), max, bias, relu
        cin = x.shape[3]
        span = 2 * (out - 1) + 1
        mk = m.reshape(9, cin, -1)
        best = None
        for dy, dx in OFFSETS:
            acc = sum(x[:, dy + ky:dy + ky + span:2, dx + kx:dx + kx + span:2, :] @ mk[3 * ky + kx]
                      for ky in range(3) for kx in range(3))
            best = acc if best is None else best.maximum(acc)
        return (best + b).relu()

    def nhwc_shift_pool(x):
        n = x.shape[0]
        y = conv_pool(x.cast(dtypes.float32), W.m1, W.b1f, 17).contiguous()
        y = conv_pool(y, W.m2, W.b2, 7).contiguous()
        return (y.reshape(n, -1) @ W.wf_hwc + W.bf).argmax(1).cast(dtypes.int32)
    v["NHWC shifted sums at the 4 pool offsets, max"] = ("nhwc", nhwc_shift_pool)

    def nchw_in_shift_pool(x):
        return nhwc_shift_pool(x.permute(0, 2, 3, 1))
    v["NCHW input, on-device permute, shifted sums at pool offsets"] = ("nchw", nchw_in_shift_pool)

    def adoptable(x):
        return logits_nhwc(m, x).log_softmax(1).argmax(1).cast(dtypes.int32)
    v["engine drop-in: logits_nhwc(model, x).log_softmax(1)"] = ("nchw", adoptable)

    def nhwc_pool_fused(x):
        n = x.shape[0]
        y = im2col(x.cast(dtypes.float32), 4, 17, stride=2) @ W.pm1           # (N, 17, 17, 32)
        y = (y.reshape(n, 17, 17, 4, -1).max(3) + W.b1f).relu()
        y = im2col(y, 4, 7, stride=2) @ W.pm2                                   # (N, 7, 7, 64)
        y = (y.reshape(n, 7, 7, 4, -1).max(3) + W.b2).relu()
        return (y.reshape(n, -1) @ W.wf_hwc + W.bf).argmax(1).cast(dtypes.int32)
    v["NHWC pool-fused im2col+matmul"] = ("nhwc", nhwc_pool_fused)

    def nhwc_im2col_contig(x):  # same as NHWC im2col, with the im2col buffers materialised
        n = x.shape[0]
        y = im2col(x.cast(dtypes.float32), 3, 34).contiguous() @ W.m1 + W.b1f
        y = pool2_nhwc(y.relu()).contiguous()
        y = pool2_nhwc((im2col(y, 3, 15).contiguous() @ W.m2 + W.b2).relu())
        return (y.reshape(n, -1) @ W.wf_hwc + W.bf).argmax(1).cast(dtypes.int32)
    v["NHWC im2col+matmul, .contiguous() cols"] = ("nhwc", nhwc_im2col_contig)

    def conv_contig(x):  # current formulation with the pooled activations materialised
        x = x.cast(dtypes.float32).conv2d(W.w1f, W.b1f).relu().max_pool2d(2).contiguous()
        x = x.conv2d(W.w2, W.b2).relu().max_pool2d(2).contiguous()
        return (x.flatten(1) @ W.wf_t + W.bf).argmax(1).cast(dtypes.int32)
    v["fold + .contiguous() after pools"] = ("nchw", conv_contig)

    if dev == "CL":
        H = Weights(ck, dev, half=True)

        def half_fold(x):
            x = x.cast(dtypes.half).conv2d(H.w1f, H.b1f).relu().max_pool2d(2)
            x = x.conv2d(H.w2, H.b2).relu().max_pool2d(2)
            return (x.flatten(1) @ H.wf_t + H.bf).float().argmax(1).cast(dtypes.int32)
        v["float16, fold (NCHW)"] = ("nchw", half_fold)

        v["float16, NHWC im2col+matmul"] = ("nhwc", lambda x: nhwc_im2col(H, x, dtypes.half))
    return v


def compile_variant(fn, inputs: list[np.ndarray], dev: str):
    """(call: numpy -> numpy argmax, argmax over all frames, compile + 3 warm-up calls in s)."""
    jit = TinyJit(lambda x: fn(x).realize())

    def call(a: np.ndarray) -> np.ndarray:
        return jit(Tensor(a, device=dev)).numpy()

    t0 = time.perf_counter()
    for i in range(3):
        call(inputs[i % len(inputs)])
    warm = time.perf_counter() - t0
    return call, np.concatenate([call(a) for a in inputs]), warm


def time_once(call, a: np.ndarray, dev: str) -> float:
    Device[dev].synchronize()
    t = time.perf_counter()
    call(a)
    Device[dev].synchronize()
    return (time.perf_counter() - t) * 1000


rows = []
for dev in args.devices:
    ck = model.load("weights/default.safetensors", dev)
    compiled = {}
    ref = None
    for name, (layout, fn) in make_variants(ck, dev).items():
        if args.only and ref is not None and not any(o in name for o in args.only):
            continue
        inputs = nchw if layout == "nchw" else nhwc
        try:
            call, preds, warm = compile_variant(fn, inputs, dev)
        except Exception as e:  # a formulation the backend cannot compile: report, go on
            print(f"{dev:4} {name:60} FAILED: {type(e).__name__}: {str(e)[:200]}", flush=True)
            rows.append((name, dev, None, None, None))
            continue
        ref = preds if ref is None else ref
        compiled[name] = (call, inputs[0], 100 * float((preds == ref).mean()), warm)
        print(f"{dev:4} {name:60} compiled, warm-up {warm:5.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in compiled}
    for _ in range(args.runs):  # round-robin, so a change in machine load hits every variant alike
        for name, (call, a, _, _) in compiled.items():
            times[name].append(time_once(call, a, dev))
    base_ms = statistics.median(next(iter(times.values())))
    for name, (_, _, agree, _) in compiled.items():
        ms = statistics.median(times[name])
        rows.append((name, dev, ms, base_ms / ms, agree))
        spread = f"{min(times[name]):.0f}-{max(times[name]):.0f}"
        print(f"{dev:4} {name:60} {ms:8.1f} ms ({spread})  x{base_ms / ms:5.2f}  agree {agree:6.2f}%", flush=True)

print(f"\n{len(nchw)} frames x {grid.count} patches; median of {args.runs} round-robin timed calls\n")
print("| variant | device | ms / frame | speed-up | argmax agreement |")
print("|---|---|---:|---:|---:|")
for name, dev, ms, sp, agree in rows:
    if ms is None:
        print(f"| {name} | {dev} | failed | | |")
    else:
        print(f"| {name} | {dev} | {ms:.1f} | {sp:.2f}x | {agree:.2f}% |")
