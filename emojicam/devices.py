"""`emojicam devices`: which tinygrad backends work here, and the OpenCL devices pyopencl can see."""

from __future__ import annotations

KNOWN = ("CPU", "CL", "METAL", "CUDA", "NV", "AMD", "QCOM", "WEBGPU", "PYTHON")


def working_devices(candidates: tuple[str, ...] = KNOWN) -> dict[str, str]:
    """{device: "ok" or the reason it failed} after a tiny real computation on each."""
    from tinygrad import Tensor

    status = {}
    for name in candidates:
        if name == "PYTHON":
            continue  # the reference interpreter: works everywhere, far too slow to be useful
        try:
            value = Tensor([1.0, 2.0], device=name).mul(2).sum().item()
            status[name] = "ok" if value == 6.0 else f"wrong result {value}"
        except Exception as e:  # a missing backend raises anything from ImportError to RuntimeError
            status[name] = (str(e).strip().splitlines() or [type(e).__name__])[0][:100]
    return status


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


def describe_devices() -> str:
    from tinygrad import Device

    lines = [f"tinygrad default device: {Device.DEFAULT}"]
    lines += [f"  {name:7s} {'works' if s == 'ok' else 'unavailable: ' + s}" for name, s in working_devices().items()]
    cl_devs = opencl_devices()
    if cl_devs:
        lines.append("OpenCL devices (pyopencl):")
        lines += [f"  {d['platform']}: {d['device']} ({d['type']}), {d['compute_units']} compute units, "
                  f"{d['clock_mhz']} MHz, {d['memory_mib']} MiB" for d in cl_devs]
    else:
        lines.append("OpenCL devices: none found (needs the `opencl` extra and a driver, e.g. pocl-opencl-icd)")
    return "\n".join(lines)
