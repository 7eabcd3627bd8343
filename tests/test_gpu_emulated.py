"""The GPU code paths on emulated GPUs: tinygrad renders the kernels for Metal, CUDA (sm_80, also with TF32 allowed)
and AMD (gfx1100) and runs them in its Python emulator (`DEV=PYTHON::ARCH`), which raises IndexError on any
out-of-bounds read or write. The emulator's renderer takes only the GPU's name and tensor cores (its work-group
limits, local memory and vector widths are tinygrad's generic ones), so each run asserts the target it used and
whether its kernels ran on tensor cores, and records a hash of them. Both GPU placements (the host path with the
tensor-level network, the device path with the whole frame in one function) must pick what the CPU host path
picks, on a first frame and on a second one with a moved cell (its own batch size, stability against the first
frame's emoji), and draw the same picture (`auto` background, tiles gathered from the atlas)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from conftest import ROOT

from emojicam import model as model_io
from emojicam.emoji_set import EmojiSet
from emojicam.engine import Emojifier, Settings

# run -> (the emulated GPU, what tinygrad's PythonRenderer calls its device, more environment). The renderer swaps
# only the device name and the tensor cores (generic limits otherwise): float32 gets tensor cores on Metal, on sm_80
# only with ALLOW_TF32 (TF32), never on gfx1100 (RDNA3's take half precision). Without tensor cores sm_80 and
# gfx1100 render what plain PYTHON renders; the test says so rather than counting them as GPUs covered.
RUNS = {"METAL": ("METAL", "METAL", {}), "sm_80": ("sm_80", "CUDA", {}), "gfx1100": ("gfx1100", "AMD", {}),
        "sm_80 TF32": ("sm_80", "CUDA", {"ALLOW_TF32": "1"})}
WITH_TENSOR_CORES = {"METAL", "sm_80 TF32"}
MODELS = ("default", "fast")
# Two cells of a 40x72 frame (the emulator runs a few thousand operations a second: each cell costs seconds)
SETTINGS = {"cols": 2, "tile_px": 8, "stability": 1.0, "cpu_threads": 1}

CHILD = """
import base64, hashlib, json, pickle, sys
import numpy as np
from tinygrad import Device
from tinygrad.uop.ops import Ops
from emojicam import model
from emojicam.emoji_set import EmojiSet
from emojicam.engine import Emojifier, Settings

frames, settings = [np.array(f, np.uint8) for f in json.loads(sys.argv[1])], json.loads(sys.argv[2])
target = Device["PYTHON"].renderer.target
out = {"target": {"device": target.device, "arch": target.arch}, "kernels": {}}
for name in ("default", "fast"):
    ckpt = model.load(model.shipped_weights(model_name=name), "PYTHON")
    for composite in ("host", "device"):
        with_path = Emojifier(ckpt, EmojiSet.load(), Settings(**settings, device="PYTHON", composite=composite))
        assert with_path.on_device == (composite == "device") and not with_path.scheduled
        done = [with_path(frame) for frame in frames]
        out[f"{name} {composite}"] = [{"indices": d.indices.tolist(), "skipped": d.skipped,
                                       "image": d.image.tolist()} for d in done]
        # the emulator's "source" is the kernel's UOps, pickled: tensor cores show as WMMA ops
        kernels = with_path.launches(frames[0].shape).kernels
        ops = [{u.op for u in pickle.loads(base64.b64decode(k.source))} for k in kernels]
        out["kernels"][f"{name} {composite}"] = {
            "count": len(kernels), "tensor_core_kernels": sum(Ops.WMMA in o for o in ops),
            "sha256": hashlib.sha256("\\n".join(k.source for k in kernels).encode()).hexdigest()}
print(json.dumps(out))
"""

@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """A 40x72 crop of the portrait, and the same with its right cell flipped and colour-swapped."""
    photo = cv2.imread(str(ROOT / "samples" / "grace_hopper.jpg"))
    first = np.ascontiguousarray(cv2.resize(photo, (144, 160), interpolation=cv2.INTER_AREA)[40:80, 40:112])
    second = first.copy()
    second[4:-4, 40:-4] = first[4:-4, 40:-4][::-1, ::-1, ::-1]
    return [first, second]


@pytest.fixture(scope="module")
def emulated(frames, tmp_path_factory) -> dict[str, dict]:
    """Every (model, path) in every run: one child process per run (the emulator's GPU is chosen when the process
    starts), side by side, each with a JIT cache of its own (ALLOW_TF32 is not part of the cache's key)."""
    def run(name: str) -> dict:
        arch, _, extra = RUNS[name]
        env = {**os.environ, "DEV": f"PYTHON::{arch}", "EMOJICAM_CACHE": str(tmp_path_factory.mktemp("jit")), **extra}
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps([f.tolist() for f in frames]),
                               json.dumps(SETTINGS)], capture_output=True, text=True, env=env, timeout=3000)
        assert done.returncode == 0, f"{name}: {done.stderr[-3000:]}"
        return json.loads(done.stdout)

    with ThreadPoolExecutor(len(RUNS)) as pool:
        return dict(zip(RUNS, pool.map(run, RUNS), strict=True))


@pytest.fixture(scope="module")
def on_cpu(frames) -> dict:
    """The CPU host path (scheduled kernels) on the same frames: what the GPUs must pick and draw."""
    out = {}
    for name in MODELS:
        engine = Emojifier(model_io.load(model_io.shipped_weights(model_name=name), "CPU"), EmojiSet.load(),
                           Settings(**SETTINGS, device="CPU", composite="host"))
        out[name] = [engine(frame) for frame in frames]
    return out


@pytest.mark.parametrize("run", RUNS)
def test_each_run_rendered_for_its_gpu_and_says_which_kernels(emulated, run, record_property):
    """The renderer target each run used, and what its kernels were: how many, how many on tensor cores, a hash of
    their code per (model, path), printed and recorded (benchmarks/results/2026-12-07-gpu-emulated-kernels.md).
    Tensor cores where the GPU has them for float32, and none elsewhere."""
    arch, device, _ = RUNS[run]
    got = emulated[run]
    assert got["target"] == {"device": device, "arch": arch}
    for path, kernels in got["kernels"].items():
        print(f"{run:11} {path:13} {kernels['count']:3} kernels, {kernels['tensor_core_kernels']} on tensor cores, "
              f"sha256 {kernels['sha256'][:16]}")
        record_property(f"{run} {path}", kernels)
    with_tc = {path for path, kernels in got["kernels"].items() if kernels["tensor_core_kernels"]}
    if run in WITH_TENSOR_CORES:
        assert with_tc, "float32 tensor cores expected on this GPU, and no kernel used them"
    else:
        assert not with_tc, with_tc


def test_tensor_core_runs_render_other_kernels_than_the_generic_ones(emulated):
    """Metal's kernels (tensor cores) differ from those without; sm_80 without TF32 and gfx1100 render the same
    kernels (what plain PYTHON renders: only a WMMA op carries the device name)."""
    digests = {run: {path: k["sha256"] for path, k in got["kernels"].items()} for run, got in emulated.items()}
    assert digests["sm_80"] == digests["gfx1100"]
    for run in WITH_TENSOR_CORES:
        assert all(digests[run][path] != digests["sm_80"][path] for path in digests[run]
                   if emulated[run]["kernels"][path]["tensor_core_kernels"])


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("composite", ["host", "device"])
def test_emulated_gpu_picks_and_draws_what_the_cpu_does(emulated, on_cpu, run, name, composite):
    got, expected = emulated[run][f"{name} {composite}"], on_cpu[name]
    for frame, (gpu, cpu) in enumerate(zip(got, expected, strict=True)):
        assert gpu["indices"] == cpu.indices.tolist(), f"frame {frame}"
        assert gpu["skipped"] == pytest.approx(cpu.skipped), f"frame {frame}"
        image = np.array(gpu["image"], np.uint8)
        assert image.shape == cpu.image.shape
        # the host path composites with the same numpy code; the device path redoes the resize and the `auto`
        # background on the device (device_frame.py), within a level
        assert np.abs(image.astype(int) - cpu.image).mean() <= (0 if composite == "host" else 1.0), f"frame {frame}"
    assert expected[1].skipped == 0.5, "the second frame sends one cell of two through the network"
