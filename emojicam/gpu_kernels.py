"""What a captured function asks of a GPU: its kernels (launch sizes, buffers, FLOPs, bytes, source) and each GPU
API's limits on them.

tinygrad's NULL device renders and schedules every kernel for any of its renderers at full size without running
one (`DEV=NULL:WGSL`, `NULL:OPENCL`, `NULL::gfx1100`, ...), so the kernels a frame of 1920x1080 at 128x72 cells
needs on a GPU can be listed and checked here, on a machine without one (benchmarks/gpu_kernels.py, tests)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from tinygrad import TinyJit
from tinygrad.uop.ops import Ops, UOp


@dataclass(frozen=True)
class Kernel:
    """One kernel launch of a captured function: global_size counts work-groups (blocks, threadgroups) per
    dimension, local_size threads per work-group, as every GPU API's dispatch takes them."""

    name: str
    global_size: tuple[int, int, int]
    local_size: tuple[int, int, int]
    buffers: int   # buffer arguments
    scalars: int   # scalar arguments (variables)
    ops: int       # tinygrad's estimate of its arithmetic operations
    bytes: int     # tinygrad's estimate of the bytes it reads and writes (each byte once)
    source: str    # the rendered code (empty where the target has none, such as the AMD assembler)
    binding_bytes: tuple[int, ...] = ()  # each buffer argument's size in bytes
    workgroup_bytes: int = 0             # the work-group's shared memory its source declares

    @property
    def threads_per_group(self) -> int:
        return math.prod(self.local_size)


@dataclass(frozen=True)
class Launches:
    """Everything one call of a captured function runs: its kernels in order, and the bytes of its copies between
    buffers (a copy costs a launch of its own on most APIs)."""

    kernels: tuple[Kernel, ...]
    copies: tuple[int, ...]

    @property
    def ops(self) -> int:
        return sum(k.ops for k in self.kernels)

    @property
    def bytes(self) -> int:
        return sum(k.bytes for k in self.kernels) + 2 * sum(self.copies)


@dataclass(frozen=True)
class Limits:
    """A GPU API's limits on one kernel launch (the portable ones: what every device of that API allows)."""

    api: str
    threads_per_group: int
    local_size: tuple[int, int, int]    # threads per work-group, per dimension
    global_size: tuple[int, int, int]   # work-groups per dimension
    buffers: int | None = None          # buffer (and scalar) arguments per kernel
    binding_bytes: int | None = None    # bytes one buffer argument may bind
    buffer_bytes: int | None = None     # bytes one buffer may hold
    workgroup_bytes: int | None = None  # shared memory a work-group may declare


# CUDA: 1024 threads a block, blockDim (1024, 1024, 64), gridDim (2^31-1, 65535, 65535). Metal: 1024 threads a
# threadgroup on every Apple GPU since A11, 31 buffer arguments (scalars are passed as buffers too). WebGPU: the
# limits every adapter guarantees (maxComputeInvocationsPerWorkgroup 256, maxComputeWorkgroupSize (256, 256, 64),
# maxComputeWorkgroupsPerDimension 65535, maxStorageBuffersPerShaderStage 8, maxStorageBufferBindingSize 128 MiB,
# maxBufferSize 256 MiB, maxComputeWorkgroupStorageSize 16 KiB). AMD (HIP/KFD): 1024 threads a
# work-group, 2^32-1 threads per grid dimension. OpenCL: 256 threads a work-group is what GPUs of every vendor allow.
LIMITS = {
    "CUDA": Limits("CUDA", 1024, (1024, 1024, 64), (2**31 - 1, 65535, 65535)),
    "METAL": Limits("METAL", 1024, (1024, 1024, 1024), (2**32 - 1,) * 3, buffers=31),
    "WEBGPU": Limits("WEBGPU", 256, (256, 256, 64), (65535,) * 3, buffers=8, binding_bytes=1 << 27,
                     buffer_bytes=1 << 28, workgroup_bytes=1 << 14),
    "AMD": Limits("AMD", 1024, (1024, 1024, 1024), (2**32 - 1,) * 3),
    "OPENCL": Limits("OPENCL", 256, (256, 256, 256), (2**32 - 1,) * 3),
}


def calls(linear: UOp) -> Iterator[UOp]:
    """The CALLs of a captured linear, graphs (batches of kernels) opened up."""
    for call in linear.src:
        ast = call.src[0]
        if ast.op is Ops.CUSTOM_FUNCTION and ast.arg == "graph":
            yield from calls(ast.src[0])
        else:
            yield call


TYPE_BYTES = {"f32": 4, "i32": 4, "u32": 4, "f16": 2, "float": 4, "int": 4, "uint": 4, "half": 2, "double": 8,
              "char": 1, "uchar": 1, "short": 2, "ushort": 2, "long": 8, "ulong": 8, "bool": 1}
# shared memory as the renderers declare it: WGSL `var<workgroup> buf2: array<f32,16>;`, C-style
# `__shared__ __align__(16) float buf2[16];` (CUDA), `threadgroup ... float buf2[16];` (Metal), `__local float ...`
SHARED = (re.compile(r"var<workgroup>\s+\w+\s*:\s*array<(\w+),\s*(\d+)>"),
          re.compile(r"(?:__shared__|threadgroup|__local)\b[^;{]*?\b(\w+)\s+\w+\[(\d+)\];"))


def workgroup_bytes(source: str) -> int:
    """The bytes of shared memory a kernel's source declares (an unknown element type counts 8 bytes)."""
    return sum(TYPE_BYTES.get(kind, 8) * int(count) for pattern in SHARED for kind, count in pattern.findall(source))


def _padded(size: tuple | None) -> tuple[int, int, int]:
    values = [int(v) for v in (size or ())]
    return tuple(values + [1] * (3 - len(values)))[:3]


def launches(jit: TinyJit) -> Launches:
    """The kernels and copies of a captured TinyJit (after its second call), in the order they run."""
    if jit.captured is None:
        raise ValueError("expected a captured TinyJit (call it twice first), got one not captured yet")
    kernels, copies = [], []
    for call in calls(jit.captured.linear):
        ast = call.src[0]
        if ast.op is Ops.COPY:
            copies.append(math.prod(call.src[1].shape) * call.src[1].dtype.itemsize)
        elif ast.op is Ops.PROGRAM:
            info, estimates = ast.arg, ast.src[0].arg.estimates
            source = next((str(u.arg) for u in ast.src if u.op is Ops.SOURCE), "")
            args = call.src[1:]
            sizes = tuple(math.prod(args[g].shape) * args[g].dtype.itemsize for g in info.globals)
            kernels.append(Kernel(re.sub(r"\x1b\[[0-9;]*m", "", info.name), _padded(info.global_size),
                                  _padded(info.local_size), len(info.globals), len(info.vars),
                                  int(estimates.ops), int(estimates.mem), source, sizes, workgroup_bytes(source)))
    return Launches(tuple(kernels), tuple(copies))


def violations(kernel: Kernel, limits: Limits) -> list[str]:
    """What in one kernel's launch an API refuses (empty: it launches everywhere that API runs)."""
    found = []
    if kernel.threads_per_group > limits.threads_per_group:
        found.append(f"{kernel.threads_per_group} threads a group (at most {limits.threads_per_group})")
    for axis, (got, most) in enumerate(zip(kernel.local_size, limits.local_size, strict=True)):
        if got > most:
            found.append(f"local size {got} on axis {axis} (at most {most})")
    for axis, (got, most) in enumerate(zip(kernel.global_size, limits.global_size, strict=True)):
        if got > most:
            found.append(f"{got} groups on axis {axis} (at most {most})")
    if limits.buffers is not None and kernel.buffers + kernel.scalars > limits.buffers:
        found.append(f"{kernel.buffers + kernel.scalars} buffer arguments (at most {limits.buffers})")
    for most, what in ((limits.binding_bytes, "binding"), (limits.buffer_bytes, "buffer")):
        if most is not None and kernel.binding_bytes and max(kernel.binding_bytes) > most:
            found.append(f"a {max(kernel.binding_bytes)} byte {what} (at most {most})")
    if limits.workgroup_bytes is not None and kernel.workgroup_bytes > limits.workgroup_bytes:
        found.append(f"{kernel.workgroup_bytes} bytes of work-group memory (at most {limits.workgroup_bytes})")
    return found
