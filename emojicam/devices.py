"""Which tinygrad device emojicam uses without --device, which backends work here (`emojicam devices`), and the
OpenCL devices."""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tinygrad import Tensor

KNOWN = ("CPU", "CL", "METAL", "CUDA", "NV", "AMD", "QCOM", "WEBGPU")  # PYTHON: the reference interpreter, too slow
GPUS = ("METAL", "AMD", "NV", "CUDA", "CL")  # in tinygrad's own order of preference; CL only on a GPU
# tinygrad's own drivers for AMD and NVIDIA GPUs talk to these device nodes: without them, opening the backend only
# fails, after 0.3 s (AMD) and 1.3 s (NV) of looking on a machine without such a GPU
DRIVER_NODES = {"AMD": "/dev/kfd", "NV": "/dev/nvidiactl"}
# measured on 2 cores, the CPU device with one lane per core is faster than PoCL at every grid, end to end too
# (docs/benchmarks.md); tinygrad itself would pick CL, the first backend that opens
CPU_OVER_CPU_OPENCL = "tinygrad's CPU device, one lane per core: faster than OpenCL on the CPU (PoCL) here"


def kind(device: str) -> str:
    """The backend of a tinygrad device string: "CPU" for "CPU:1", "CL" for "CL:0"."""
    return device.split(":")[0]


def on_host(device: str) -> bool:
    """tinygrad's CPU device: its buffers are host memory that numpy can read and write in place (GPU backends
    may keep theirs where the host cannot see them)."""
    return kind(device) == "CPU"


def write_into(tensor: Tensor, a: np.ndarray, host: bool) -> None:
    """Copy an array into a realized tensor's buffer: in place on tinygrad's CPU device (host), else one copy.
    Building and realizing new tensors from numpy cost tinygrad 2-3 ms per array, and would schedule work while a
    background build captures."""
    from tinygrad.device import Buffer

    buf, data = tensor.uop.buffer, memoryview(np.ascontiguousarray(a)).cast("B")
    if host:
        buf.as_memoryview(force_zero_copy=True)[:] = data  # synchronizes with the device first
    else:
        buf.copy_from(Buffer("PYTHON", buf.size, buf.dtype, opaque=data))


def read_from(tensor: Tensor, dtype: type, host: bool) -> np.ndarray:
    """A finished tensor's buffer as a flat numpy copy (read in place on tinygrad's CPU device)."""
    return np.frombuffer(tensor.uop.buffer.as_memoryview(force_zero_copy=host), dtype).copy()


@functools.cache
def runs_on_cpu(device: str) -> bool:
    """True for tinygrad's CPU device and for an OpenCL driver that runs on the CPU (PoCL): the devices emojicam's
    hand-written kernel schedule was chosen on. GPUs (CUDA, METAL, AMD, CL on a GPU) get tinygrad's heuristics."""
    if kind(device) != "CL":
        return kind(device) == "CPU"
    from tinygrad import Device
    from tinygrad.runtime.autogen import opencl as cl

    device_type = ctypes.c_uint64()
    cl.clGetDeviceInfo(Device[device].cl_dev, cl.CL_DEVICE_TYPE, ctypes.sizeof(device_type),
                       ctypes.byref(device_type), None)
    return bool(device_type.value & cl.CL_DEVICE_TYPE_CPU)


@dataclass(frozen=True)
class DefaultDevice:
    """The device used when --device is not given, and why that one."""

    name: str
    reason: str


def default_device() -> DefaultDevice:
    """The fastest device that works here (open the caches first, caches.open_caches: probing one compiles): the
    one `DEV` names if set; else the first GPU backend that works
    (METAL, AMD, NV, CUDA, OpenCL on a GPU); else tinygrad's CPU device, ahead of an OpenCL driver that runs on the
    CPU (see CPU_OVER_CPU_OPENCL); else tinygrad's own choice."""
    from tinygrad import Device
    from tinygrad.helpers import DEV

    if DEV.device:
        return DefaultDevice(Device.canonicalize(DEV.device), f"DEV={os.environ.get('DEV', DEV.device)} is set")
    for name in GPUS:
        if name in DRIVER_NODES and sys.platform == "linux" and not os.path.exists(DRIVER_NODES[name]):
            continue
        try:
            on_cpu = name == "CL" and runs_on_cpu(name)  # opens the backend: fails fast where it is missing
        except Exception:
            continue
        if not on_cpu and probe(name).works:
            return DefaultDevice(name, "the first GPU backend that works here")
    if probe("CPU").works:
        return DefaultDevice("CPU", "no GPU backend works here; " + CPU_OVER_CPU_OPENCL)
    return DefaultDevice(Device.DEFAULT, "tinygrad's default (no GPU backend and no CPU device work here)")


@dataclass(frozen=True)
class DeviceStatus:
    """One tinygrad backend: whether a tiny real computation ran on it here, and why not when it did not."""

    name: str
    works: bool
    reason: str = ""


def probe(name: str) -> DeviceStatus:
    """One backend after a tiny real computation on it (a missing backend raises anything from ImportError to
    RuntimeError, so every exception means "not here")."""
    from tinygrad import Tensor

    try:
        value = Tensor([1.0, 2.0], device=name).mul(2).sum().item()
    except Exception as e:
        return DeviceStatus(name, False, (str(e).strip().splitlines() or [type(e).__name__])[0][:160])
    return DeviceStatus(name, value == 6.0, "" if value == 6.0 else f"wrong result {value}")


def probe_devices(candidates: tuple[str, ...] = KNOWN) -> list[DeviceStatus]:
    """Each candidate backend, probed."""
    return [probe(name) for name in candidates]


def working_devices(candidates: tuple[str, ...] = KNOWN) -> list[str]:
    """The names of the backends that work here, in KNOWN's order."""
    return [d.name for d in probe_devices(candidates) if d.works]


def opencl_devices() -> list[dict]:
    """OpenCL platforms/devices with compute units, clock and memory; empty without pyopencl or a driver."""
    try:
        import pyopencl as cl
        platforms = cl.get_platforms()
    except Exception:  # no pyopencl, or no ICD loader/driver
        return []
    out = []
    for platform in platforms:
        for dev in platform.get_devices():
            out.append({"platform": platform.name.strip(), "device": dev.name.strip(),
                        "type": cl.device_type.to_string(dev.type), "compute_units": dev.max_compute_units,
                        "clock_mhz": dev.max_clock_frequency, "memory_mib": dev.global_mem_size // 2**20})
    return out


def describe_devices(verbose: bool = False) -> str:
    """What works here, the default marked with '*'; one line for the backends that do not (their errors when
    verbose)."""
    default = default_device()
    statuses = probe_devices()
    working = [s for s in statuses if s.works]
    lines = ["tinygrad devices that work here (* = the one used when --device is not given):"]
    lines += [f"  {'*' if s.name == default.name else ' '} {s.name}" for s in working] or ["  none"]
    if default.name in {s.name for s in working}:
        lines.append(f"  {default.name}: {default.reason}")
    else:
        lines.append(f"  (the default, {default.name}, does not work here: pass --device)")
    missing = [s for s in statuses if not s.works]
    if missing:
        if verbose:
            lines.append("not available here:")
            lines += [f"    {s.name:7s} {s.reason}" for s in missing]
        else:
            lines.append(f"not available here: {', '.join(s.name for s in missing)} (--verbose says why)")
    cl_devs = opencl_devices()
    if cl_devs:
        lines.append("OpenCL devices (pyopencl):")
        lines += [f"    {d['platform']}: {d['device']} ({d['type']}), {d['compute_units']} compute units, "
                  f"{d['clock_mhz']} MHz, {d['memory_mib']} MiB" for d in cl_devs]
    elif "CL" in {s.name for s in working}:
        lines.append("OpenCL device details: install the `opencl` extra (pyopencl) to see them")
    return "\n".join(lines)
