"""The machine under `emojicam bench`: CPU model, versions, device names and each device's assumed peak GFLOP/s."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from emojicam.devices import kind

# FP32 GFLOP/s from the vendors' spec sheets, matched as a substring of the device name (longest match wins).
KNOWN_PEAK_GFLOPS = {
    "H200": 66900, "H100 PCIe": 51200, "H100": 66900, "A100": 19500, "L40S": 91600, "L4": 30300, "A10G": 31200,
    "T4": 8100, "V100": 15700, "RTX 4090": 82600, "RTX 4080": 48700, "RTX 4070": 29100, "RTX 3090": 35600,
    "RTX 3080": 29800, "RTX 3070": 20300, "RTX 3060": 12700, "RTX 2080": 10100, "GTX 1080": 8900,
    "Apple M1": 2600, "Apple M1 Pro": 5200, "Apple M1 Max": 10400, "Apple M1 Ultra": 20800,
    "Apple M2": 3600, "Apple M2 Pro": 6800, "Apple M2 Max": 13600, "Apple M2 Ultra": 27200,
    "Apple M3": 4100, "Apple M3 Pro": 7400, "Apple M3 Max": 16400, "Apple M4": 4300,
}
# FP32 FLOPs per clock per compute unit of an OpenCL GPU, by vendor: FMA lanes x 2.
GPU_FLOPS_PER_UNIT = {"nvidia": 256, "amd": 128, "advanced micro": 128, "intel": 16, "apple": 256}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Hardware", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        return _run("sysctl", "-n", "machdep.cpu.brand_string") or platform.machine()
    return platform.processor() or platform.machine()


def _run(*cmd: str) -> str | None:
    """stdout of a small system query, or None when the tool is missing or fails."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def cpu_flops_per_cycle() -> tuple[int, str]:
    """FP32 FLOPs one core can retire per clock, assumed from its vector extensions (two FMA pipes)."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return (32, "4 NEON FMA pipes") if sys.platform == "darwin" else (16, "2 NEON FMA pipes")
    try:
        first_cpu = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        first_cpu = ""
    info = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in first_cpu.splitlines())}
    flags = info.get("flags", "").split()
    if "avx512f" in flags and (info.get("vendor_id"), info.get("cpu family")) == ("AuthenticAMD", "25"):
        # Zen 4 runs AVX-512 on its two 256-bit FMA units (Zen 5 and most Intel server cores have 512-bit ones)
        return 32, "AVX-512 on 256-bit FMA x2"
    if "avx512f" in flags:
        return 64, "AVX-512 FMA x2"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2 FMA x2"
    return (16, "AVX") if "avx" in flags else (8, "SSE")


def machine_line() -> str:
    """A results file's machine, in one line: CPU, its vector extension, cores usable here, load average now."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    return f"{cpu_model()} ({cpu_flops_per_cycle()[1]}), {cores} cores, load average {load}"


def opencl_device(device: str) -> dict | None:
    """The pyopencl view of the device tinygrad's CL:n uses (platform 0, GPUs first)."""
    from emojicam.devices import opencl_devices

    devs = opencl_devices()
    if not devs:
        return None
    first = [d for d in devs if d["platform"] == devs[0]["platform"]]
    gpus = [d for d in first if "GPU" in d["type"]]
    index = int(device.split(":")[1]) if ":" in device else 0
    pool = gpus or first
    return pool[index] if index < len(pool) else None


def device_name(device: str) -> str:
    """A human name for a tinygrad device: the CPU model, the OpenCL device, or the GPU's name."""
    backend = kind(device)
    if backend == "CPU":
        return cpu_model()
    if backend == "CL":
        cl = opencl_device(device)
        return f"{cl['device']} ({cl['platform']})" if cl else device
    if backend in ("CUDA", "NV"):
        return (_run("nvidia-smi", "--query-gpu=name", "--format=csv,noheader") or device).splitlines()[0]
    if backend == "METAL":
        return cpu_model()  # the Apple chip's name, e.g. "Apple M2 Pro"
    return device


def peak_gflops(device: str, overrides: dict[str, float]) -> tuple[float | None, str]:
    """(assumed FP32 peak GFLOP/s, how it was worked out); (None, why) when unknown."""
    backend = kind(device)
    for key in (device, backend, "*"):
        if key in overrides:
            return overrides[key], "--peak-gflops"
    name = device_name(device)
    known = [k for k in KNOWN_PEAK_GFLOPS if k.lower() in name.lower()]
    if known and backend != "CPU":
        key = max(known, key=len)
        return float(KNOWN_PEAK_GFLOPS[key]), f"spec sheet of {key}"
    per_cycle, how = cpu_flops_per_cycle()
    cl = opencl_device(device) if backend == "CL" else opencl_device("CL")
    mhz = cl["clock_mhz"] if cl and "CPU" in cl["type"] else _cpu_mhz()
    if backend == "CPU" and mhz:
        # tinygrad's CPU device runs each kernel on one thread; the engine runs one lane per core
        from emojicam.lanes import lane_devices

        lanes = len(lane_devices(device))
        return lanes * mhz * per_cycle / 1e3, f"{lanes} core(s) (one engine lane each) x {mhz} MHz x " \
                                              f"{per_cycle} FLOP/cycle ({how}, assumed)"
    if backend == "CL" and cl:
        if "CPU" in cl["type"]:
            return cl["compute_units"] * cl["clock_mhz"] * per_cycle / 1e3, \
                f"{cl['compute_units']} cores x {cl['clock_mhz']} MHz x {per_cycle} FLOP/cycle ({how}, assumed)"
        vendor = next((v for k, v in GPU_FLOPS_PER_UNIT.items() if k in (cl["platform"] + cl["device"]).lower()), None)
        if vendor:
            return cl["compute_units"] * cl["clock_mhz"] * vendor / 1e3, \
                f"{cl['compute_units']} compute units x {cl['clock_mhz']} MHz x {vendor} FLOP/cycle (assumed)"
    return None, f"unknown for {name} (give --peak-gflops {backend}=N)"


def _cpu_mhz() -> int | None:
    try:
        mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
               if line.startswith("cpu MHz")]
    except (OSError, ValueError):
        mhz = []
    if mhz:
        return round(max(mhz))
    hz = _run("sysctl", "-n", "hw.cpufrequency_max")
    return round(int(hz) / 1e6) if hz and hz.isdigit() else None


def git_commit() -> str | None:
    """Short commit of the checkout emojicam runs from, +dirty with uncommitted changes; None when installed."""
    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists():
        return None
    commit = _run("git", "-C", str(repo), "rev-parse", "--short", "HEAD")
    dirty = _run("git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no")
    return None if commit is None else commit + ("+dirty" if dirty else "")


def environment(devices: tuple[str, ...]) -> dict:
    """Where the numbers were taken: hardware, software versions, load, tinygrad settings."""
    from importlib.metadata import PackageNotFoundError, version

    from tinygrad.helpers import BEAM, CACHELEVEL

    from emojicam.devices import opencl_devices

    versions = {"python": platform.python_version()}
    for package in ("emojicam", "tinygrad", "numpy", "opencv-python", "imageio-ffmpeg", "onnxruntime", "onnx",
                    "torch", "matplotlib", "pyopencl"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    # two machines both called "AMD EPYC" ran this project's kernels 2.2x apart: one had AVX-512, the other AVX2
    return {"cpu": cpu_model(), "cpu_vector": cpu_flops_per_cycle()[1], "cpu_count": os.cpu_count(),
            "os": platform.platform(), "host": platform.node(),
            "versions": versions, "git_commit": git_commit(), "beam": BEAM.value, "cachelevel": CACHELEVEL.value,
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "devices": {d: device_name(d) for d in devices}, "opencl_devices": opencl_devices(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}
