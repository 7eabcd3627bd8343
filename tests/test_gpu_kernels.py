"""Every kernel of a frame at full size fits every GPU API's launch limits: rendered for WebGPU (WGSL) and OpenCL
by tinygrad's NULL device (it renders and schedules, runs nothing), through the benchmark script that writes
benchmarks/results/*-gpu-kernels.md (which adds CUDA where NVIDIA's NVRTC library is installed)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

from emojicam.gpu_kernels import LIMITS, Kernel, violations
from emojicam.model import ModelConfig


def kernel(global_size=(1, 1, 1), local_size=(1, 1, 1), buffers=2, scalars=0) -> Kernel:
    return Kernel("k", global_size, local_size, buffers, scalars, 0, 0, "")


def test_each_limit_is_checked():
    assert violations(kernel((65535, 2, 1), (16, 16, 1), buffers=8), LIMITS["WEBGPU"]) == []
    assert violations(kernel(local_size=(16, 32, 1)), LIMITS["WEBGPU"]) == ["512 threads a group (at most 256)"]
    assert violations(kernel(local_size=(1, 1, 128)), LIMITS["CUDA"]) == ["local size 128 on axis 2 (at most 64)"]
    assert violations(kernel((1, 65536, 1)), LIMITS["CUDA"]) == ["65536 groups on axis 1 (at most 65535)"]
    assert violations(kernel((65536, 1, 1)), LIMITS["WEBGPU"]) == ["65536 groups on axis 0 (at most 65535)"]
    assert violations(kernel(buffers=30, scalars=2), LIMITS["METAL"]) == ["32 buffer arguments (at most 31)"]
    assert violations(kernel(buffers=9), LIMITS["WEBGPU"]) == ["9 buffer arguments (at most 8)"]


def test_full_size_frames_fit_the_limits_of_webgpu_and_opencl(tmp_path):
    out = tmp_path / "kernels.json"
    done = subprocess.run([sys.executable, ROOT / "benchmarks" / "gpu_kernels.py", "--renderers", "WGSL,OPENCL",
                           "--sizes", "128x72@1920x1080", "--no-results", "--json", out], capture_output=True,
                          text=True, cwd=ROOT, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    flops = 128 * 72 * ModelConfig(classes=256).flops_per_patch() / 1e9  # 13.1 GFLOP
    assert [r["renderer"] for r in results] == ["WGSL", "OPENCL"]
    for result in results:
        assert "error" not in result, result
        assert [(row["path"], row["grid"]) for row in result["rows"]] == [("host", "128x72"), ("device", "128x72")]
        for row in result["rows"]:
            assert len(row["kernels"]) >= 4 and row["gflop"] > 0.9 * flops, row  # at least the network's FLOPs
            assert [k["broken"] for k in row["kernels"] if k["broken"]] == [], (result["renderer"], row["path"])
    wgsl = json.loads(out.read_text())[0]["rows"][1]["kernels"]
    assert max(k["local"][0] * k["local"][1] * k["local"][2] for k in wgsl) <= 256
