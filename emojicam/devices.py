"""`emojicam devices`: which tinygrad backends work here (the default marked), and the OpenCL devices."""

from __future__ import annotations

from dataclasses import dataclass

KNOWN = ("CPU", "CL", "METAL", "CUDA", "NV", "AMD", "QCOM", "WEBGPU")  # PYTHON: the reference interpreter, too slow


@dataclass(frozen=True)
class DeviceStatus:
    """One tinygrad backend: whether a tiny real computation ran on it here, and why not when it did not."""

    name: str
    works: bool
    reason: str = ""


def probe_devices(candidates: tuple[str, ...] = KNOWN) -> list[DeviceStatus]:
    """Each candidate backend after a tiny real computation on it (a missing backend raises anything from
    ImportError to RuntimeError, so every exception means "not here")."""
    from tinygrad import Tensor

    from emojicam.caches import open_caches

    open_caches()
    out = []
    for name in candidates:
        try:
            value = Tensor([1.0, 2.0], device=name).mul(2).sum().item()
            out.append(DeviceStatus(name, value == 6.0, "" if value == 6.0 else f"wrong result {value}"))
        except Exception as e:
            out.append(DeviceStatus(name, False, (str(e).strip().splitlines() or [type(e).__name__])[0][:160]))
    return out


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
    from tinygrad import Device

    default = Device.DEFAULT
    statuses = probe_devices()
    working = [s for s in statuses if s.works]
    lines = ["tinygrad devices that work here (* = the default, used when --device is not given):"]
    lines += [f"  {'*' if s.name == default else ' '} {s.name}" for s in working] or ["  none"]
    if default not in {s.name for s in working}:
        lines.append(f"  (the default, {default}, does not work here: pass --device)")
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
