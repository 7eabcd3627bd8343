"""TinyConvNet's inference kernels, written in tinygrad UOps, with a schedule chosen for CPUs.

For this network tinygrad's own kernels reach 6-15 GFLOP/s on a CPU core: its heuristics vectorise the batch axis
of a 3-channel convolution and split a 3x3 convolution into nine reductions. Written out as three kernels
(conv3x3 + ReLU + 2x2 max-pool twice, then the linear layer), each one reduction over channels-last data with the
output channels contiguous, and given an explicit schedule (upcast the output channels, unroll the pool window and
the kernel rows), clang vectorises them across output channels: 35-46 GFLOP/s a core, 4.9x the forward pass on the
CPU device and 3.3x on OpenCL on the CPU; tinygrad's kernel search (BEAM=2) found nothing faster. On the CPU device
they are compiled with tinygrad's grouping of loads into float4 turned off (`compiling`): clang then vectorises the
output channels 8 wide instead of 4, 1.6x again, and two patches at a time share each weight load (1.1x; figures in
docs/benchmarks.md). Same maths as TinyConvNet.logits, same weights; the tests check them against a float64 numpy
forward. On GPUs, where this schedule was not measured, InferenceNet runs the tensor-level network, whose kernels
tinygrad schedules itself (and `emojicam tune` can search).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tinygrad import Device, Tensor, UOp, dtypes
from tinygrad.codegen.opt import Opt, OptOps
from tinygrad.renderer.cstyle import ClangRenderer
from tinygrad.uop.ops import AxisType, KernelInfo, Ops

from emojicam.devices import kind, runs_on_cpu

if TYPE_CHECKING:
    from emojicam.model import TinyConvNet


def _largest_divisor(n: int, choices: tuple[int, ...]) -> int:
    return next((c for c in choices if n % c == 0), 1)


def _schedule(*opts: Opt | None) -> tuple[Opt, ...]:
    return tuple(opt for opt in opts if opt is not None)


def _opencl(t: Tensor) -> bool:
    return kind(str(t.device)) == "CL"


def conv3x3_relu_maxpool(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """x (N, H, W, C) float32, weight (3, 3, C, O), bias (O,) -> maxpool2(relu(conv3x3(x) + bias)), (N, (H-2)//2,
    (W-2)//2, O): valid padding, floor pooling, as nn.Conv2d + max_pool2d compute it on channels-last data."""
    n, h, w, _ = x.shape
    out_ch = weight.shape[3]
    # kernel axes: n, py, px, o | dy, dx, ky, kx*c (tinygrad merges kx and c); axes of size 1 disappear
    out_w = (w - 2) // 2
    o_axis = sum(size > 1 for size in (n, (h - 2) // 2, out_w))
    upcast = _largest_divisor(out_ch, (16, 8, 4, 2))
    opencl = _opencl(x)
    opts = _schedule(Opt(OptOps.UPCAST, o_axis, upcast) if upcast > 1 else None,
                     # CPU: two patches share each weight load and give clang twice the independent sums
                     Opt(OptOps.UPCAST, 0, 2) if not opencl and n > 1 and n % 2 == 0 else None,
                     *[Opt(OptOps.UNROLL, 0, 0)] * 3,  # unroll dy, dx, ky: each takes the first reduce axis left
                     # OpenCL (PoCL): a row of pooled pixels per work-group, 1.1x over one pixel each
                     Opt(OptOps.LOCAL, o_axis - 1, out_w) if opencl and out_w > 1 else None)

    def kernel(out: UOp, x: UOp, weight: UOp, bias: UOp) -> UOp:
        b, py, px, o = (UOp.range(size, axis) for axis, size in enumerate(out.shape))
        dy, dx, ky, kx, c = (UOp.range(size, 4 + axis, AxisType.REDUCE)
                             for axis, size in enumerate((2, 2, 3, 3, x.shape[3])))
        conv = (x[b, py * 2 + dy + ky, px * 2 + dx + kx, c] * weight[ky, kx, c, o]).reduce(ky, kx, c, arg=Ops.ADD)
        pooled = (conv + bias[o]).maximum(0.0).reduce(dy, dx, arg=Ops.MAX)
        return out[b, py, px, o].store(pooled).end(b, py, px, o).sink(
            arg=KernelInfo(name=f"conv3x3_relu_maxpool_{out_ch}", opts_to_apply=opts))

    out = Tensor.empty(n, (h - 2) // 2, (w - 2) // 2, out_ch, device=x.device)
    return out.custom_kernel(x, weight, bias, fxn=kernel)[0]


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """x (N, R) @ weight (R, K) + bias (K,) -> (N, K). A block of rows by 16 classes per step of the reduction:
    on a CPU core 9 rows (18 vectors of 8 sums) ran 1.3x the 6 rows a block of an earlier form (docs/benchmarks.md)."""
    n, k = x.shape[0], weight.shape[1]
    opencl = _opencl(x)
    k_upcast = _largest_divisor(k, (16, 8, 4, 2))
    n_upcast = _largest_divisor(n, (4, 2) if opencl else (9, 8, 6, 4, 3, 2))
    opts = _schedule(Opt(OptOps.UPCAST, int(n > 1), k_upcast) if k_upcast > 1 else None,
                     Opt(OptOps.UPCAST, 0, n_upcast) if n > 1 and n_upcast > 1 else None,
                     Opt(OptOps.UNROLL, 0, 2) if opencl and x.shape[1] % 2 == 0 else None)

    def kernel(out: UOp, x: UOp, weight: UOp, bias: UOp) -> UOp:
        i, j, r = UOp.range(n, 0), UOp.range(k, 1), UOp.range(x.shape[1], 2, AxisType.REDUCE)
        return out[i, j].store((x[i, r] * weight[r, j]).reduce(r, arg=Ops.ADD) + bias[j]).end(i, j).sink(
            arg=KernelInfo(name=f"linear_{k}", opts_to_apply=opts))

    return Tensor.empty(n, k, device=x.device).custom_kernel(x, weight, bias, fxn=kernel)[0]


def channel_means(x: Tensor) -> Tensor:
    """(N, H, W, C) uint8 -> (N, C) float32 mean of each channel (a patch's mean colour), summed as integers in
    float32, which is exact in any order. On the CPU device each patch's rows are summed first, along whole rows of
    W*C contiguous bytes (vectorised 12 or 9 wide), then the W pixels of the row sums by channel: on a core 1.8-2.5x
    (36 px patches) and 1.4x (18 px) summing each channel over pixels C bytes apart, which OpenCL keeps (PoCL ran
    the rows-first form 1.9x slower on 18 px patches)."""
    n, h, w, ch = x.shape
    if _opencl(x):
        return _pixel_means(x)
    row = w * ch
    opts = _schedule(Opt(OptOps.UPCAST, int(n > 1), _largest_divisor(row, (12, 9, 8, 6, 4, 2))) if row > 1 else None,
                     Opt(OptOps.UNROLL, 0, _largest_divisor(h, (4, 3, 2))) if h > 1 else None)

    def kernel(out: UOp, x: UOp) -> UOp:
        i, j, r = UOp.range(n, 0), UOp.range(row, 1), UOp.range(h, 2, AxisType.REDUCE)
        total = x.reshape(n, h, row)[i, r, j].cast(dtypes.float32).reduce(r, arg=Ops.ADD)
        return out[i, j].store(total).end(i, j).sink(arg=KernelInfo(name="row_sums", opts_to_apply=opts))

    sums = Tensor.empty(n, row, device=x.device).custom_kernel(x, fxn=kernel)[0]
    return sums.reshape(n, w, ch).sum(1) * (1 / (h * w))


def _pixel_means(x: Tensor) -> Tensor:
    """channel_means as one reduction of each channel over a patch's pixels."""
    n, h, w, ch = x.shape
    opts = _schedule(Opt(OptOps.UPCAST, int(n > 1), ch) if ch <= 16 else None,
                     Opt(OptOps.UPCAST, 0, _largest_divisor(n, (4, 2))) if n > 1 and n % 2 == 0 else None,
                     Opt(OptOps.UNROLL, 0, 4) if h * w % 4 == 0 else None)

    def kernel(out: UOp, x: UOp) -> UOp:
        i, c, p = UOp.range(n, 0), UOp.range(ch, 1), UOp.range(h * w, 2, AxisType.REDUCE)
        total = x.reshape(n, h * w, ch)[i, p, c].cast(dtypes.float32).reduce(p, arg=Ops.ADD)
        return out[i, c].store(total * (1 / (h * w))).end(i, c).sink(
            arg=KernelInfo(name="channel_means", opts_to_apply=opts))

    return Tensor.empty(n, ch, device=x.device).custom_kernel(x, fxn=kernel)[0]


class _ClangScalarLoads(ClangRenderer):
    """tinygrad's C renderer for CPUs without its float4 loads (see compiling). A class of its own: tinygrad's compile
    workers rebuild a renderer from its class and target, so an attribute set on an instance would not reach them."""

    supports_float4 = False


@contextlib.contextmanager
def compiling(device: str) -> Iterator[None]:
    """Compile the kernels built inside on tinygrad's CPU device with scalar loads: tinygrad groups neighbouring
    floats into float4 loads, and clang's vectoriser then stops at 4 lanes (xmm); from scalar loads it builds 8-lane
    FMAs across the output channels (ymm): the three kernels above 1.6x faster on an AVX-512 EPYC. Not for all
    kernels: training's convolutions run up to 1.4x slower so (docs/benchmarks.md), so only around a build. Other
    devices and renderers (LLVM, OpenCL: mixed on PoCL) compile as they are."""
    dev = Device[device]
    renderer = dev.renderer
    key = (ClangRenderer, renderer.target)  # how the device keeps the renderer it made (tinygrad 0.14)
    if type(renderer) is not ClangRenderer or dev.cached_renderer.get(key) is not renderer:
        yield
        return
    dev.cached_renderer[key] = _ClangScalarLoads(renderer.target)
    try:
        yield
    finally:
        dev.cached_renderer[key] = renderer


class InferenceNet:
    """TinyConvNet on one device as the engine runs it: from uint8 patches to logits (and patch mean colours).
    Where the device runs on the CPU (default; `scheduled` overrides) its weights are laid out for the kernels above
    (channels-last, output channels contiguous); elsewhere it runs the tensor-level network."""

    def __init__(self, net: TinyConvNet, device: str, scheduled: bool | None = None):
        self.device = device
        self.scheduled = runs_on_cpu(device) if scheduled is None else scheduled
        if not self.scheduled:
            self.net = net if net.fc.weight.device == device else net.replica(device)
            return
        classes, (_, c2), side = net.config.classes, net.config.channels, net.config.feature_px

        def packed(t: Tensor) -> Tensor:
            return t.to(device).contiguous().realize()

        self.conv1 = packed(net.conv1.weight.permute(2, 3, 1, 0)), packed(net.conv1.bias)  # (ky, kx, c, o)
        self.conv2 = packed(net.conv2.weight.permute(2, 3, 1, 0)), packed(net.conv2.bias)
        # the linear layer reads features in (y, x, channel) order; its weights were trained on (channel, y, x).
        # Its classes are padded with zeros to a multiple of 16, the widest the kernel upcasts them by: the full
        # set's 1,610 (= 2 x 5 x 7 x 23) otherwise got vectors of 2, 2.6-9.7x slower (logits cut back to K after)
        self.classes, pad = classes, -classes % 16
        self.fc = (packed(net.fc.weight.reshape(classes, c2, side, side).permute(2, 3, 1, 0).reshape(-1, classes)
                          .pad(((0, 0), (0, pad)))), packed(net.fc.bias.pad(((0, pad),))))

    def logits(self, patches: Tensor) -> Tensor:
        """(N, 36, 36, 3) uint8 RGB patches -> (N, K) logits."""
        if not self.scheduled:
            return self.net.logits(patches)
        x = (patches.cast(dtypes.float32) * (1 / 255) - 0.5).contiguous()
        x = conv3x3_relu_maxpool(x, *self.conv1)
        x = conv3x3_relu_maxpool(x, *self.conv2)
        return linear(x.reshape(x.shape[0], -1), *self.fc)[:, :self.classes]

    def mean_colours(self, patches: Tensor) -> Tensor:
        """(N, 36, 36, 3) uint8 RGB patches -> (N, 3) float32 mean colour of each."""
        return channel_means(patches) if self.scheduled else patches.cast(dtypes.float32).mean((1, 2))

    def __call__(self, patches: Tensor) -> Tensor:
        """(N, K) log-probabilities."""
        return self.logits(patches).log_softmax(1)
