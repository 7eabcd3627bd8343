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
from emojicam.grid import Grid, cut_patches

# arch -> what tinygrad's PythonRenderer names the device. It swaps only the device name and the tensor cores (its
# limits are tinygrad's generic ones), and float32 gets tensor cores only on METAL, and on sm_80 with ALLOW_TF32
# (RDNA3's are half precision); emojicam's network uses them only where tinygrad may pad (TC_OPT=2, or a BEAM
# search: `emojicam tune`). So the grid runs below run generic kernels on every GPU, and TENSOR_CORES runs the
# network on tensor cores apart.
ARCHS = {"METAL": "METAL", "sm_80": "CUDA", "gfx1100": "AMD"}
TENSOR_CORES = {"METAL": ("METAL", {"TC_OPT": "2"}), "sm_80 TF32": ("sm_80", {"TC_OPT": "2", "ALLOW_TF32": "1"})}
MODELS = ("default", "fast")
# Two cells of a 40x72 frame (the emulator runs a few thousand operations a second: each cell costs seconds)
SETTINGS = {"cols": 2, "tile_px": 8, "stability": 1.0, "cpu_threads": 1}

# a kernel as the children hash it: its UOps in order (op, dtype, arg, sources by position), not the pickle's bytes,
# which differ for equal programs from one process to the next (measured: equal args, different hashes)
CANONICAL = """
def canonical(kernel):
    uops = pickle.loads(base64.b64decode(kernel.source))
    at = {id(u): i for i, u in enumerate(uops)}
    return kernel.name + repr([(u.op.name, str(u.dtype), repr(u.arg), [at.get(id(x), -1) for x in u.src])
                               for u in uops])
"""

CHILD = """
import base64, hashlib, json, pickle, sys
import numpy as np
from tinygrad import Device
from tinygrad.uop.ops import Ops
from emojicam import model
from emojicam.emoji_set import EmojiSet
from emojicam.engine import Emojifier, Settings

# CANONICAL

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
            "sha256": hashlib.sha256("\\n".join(canonical(k) for k in kernels).encode()).hexdigest()}
print(json.dumps(out))
"""

# the network alone (the host path's classify) on 8 patches: tensor cores take 8 rows at least
TENSOR_CORE_CHILD = """
import base64, hashlib, json, pickle, sys
import numpy as np
from tinygrad import Device
from tinygrad.uop.ops import Ops
from emojicam import model
from emojicam.emoji_set import EmojiSet
from emojicam.engine import Emojifier, Settings

# CANONICAL

patches, settings = np.array(json.loads(sys.argv[1]), np.uint8), json.loads(sys.argv[2])
target = Device["PYTHON"].renderer.target
engine = Emojifier(model.load(model.shipped_weights(model_name="fast"), "PYTHON"), EmojiSet.load(),
                   Settings(**settings, device="PYTHON", composite="host"))
indices = engine.classify(patches).tolist()
kernels = engine.lanes.launches(len(patches)).kernels
print(json.dumps({"target": {"device": target.device, "arch": target.arch}, "indices": indices,
                  "tensor_core_kernels": [k.name for k in kernels
                                          if Ops.WMMA in {u.op for u in pickle.loads(base64.b64decode(k.source))}],
                  "sha256": hashlib.sha256("\\n".join(canonical(k) for k in kernels).encode()).hexdigest()}))
"""

CHILD, TENSOR_CORE_CHILD = (c.replace("# CANONICAL\n", CANONICAL) for c in (CHILD, TENSOR_CORE_CHILD))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """A 40x72 crop of the portrait, and the same with its right cell flipped and colour-swapped."""
    photo = cv2.imread(str(ROOT / "samples" / "grace_hopper.jpg"))
    first = np.ascontiguousarray(cv2.resize(photo, (144, 160), interpolation=cv2.INTER_AREA)[40:80, 40:112])
    second = first.copy()
    second[4:-4, 40:-4] = first[4:-4, 40:-4][::-1, ::-1, ::-1]
    return [first, second]


@pytest.fixture(scope="module")
def emulated(frames, patches, tmp_path_factory) -> dict[str, dict]:
    """Every (model, path) on every emulated GPU, and the network on tensor cores: one child process per run (the
    emulator's GPU is chosen when the process starts), side by side, each with a JIT cache of its own (TC_OPT and
    ALLOW_TF32 are not part of the cache's key)."""
    runs = {**{arch: (arch, {}, CHILD, frames) for arch in ARCHS},
            **{f"{run} tensor cores": (arch, extra, TENSOR_CORE_CHILD, patches)
               for run, (arch, extra) in TENSOR_CORES.items()}}

    def run(name: str) -> dict:
        arch, extra, child, data = runs[name]
        env = {**os.environ, "DEV": f"PYTHON::{arch}", "EMOJICAM_CACHE": str(tmp_path_factory.mktemp("jit")), **extra}
        done = subprocess.run([sys.executable, "-c", child, json.dumps([d.tolist() for d in data]),
                               json.dumps(SETTINGS)], capture_output=True, text=True, env=env, timeout=3000)
        assert done.returncode == 0, f"{name}: {done.stderr[-3000:]}"
        return json.loads(done.stdout)

    with ThreadPoolExecutor(len(runs)) as pool:
        return dict(zip(runs, pool.map(run, runs), strict=True))


@pytest.fixture(scope="module")
def patches() -> np.ndarray:
    """8 patches of 18 px (the fast model's) from the portrait."""
    photo = cv2.imread(str(ROOT / "samples" / "grace_hopper.jpg"))
    return cut_patches(photo, Grid.for_frame(photo.shape, 3, 8), 18)[:8]


@pytest.fixture(scope="module")
def on_cpu(frames) -> dict:
    """The CPU host path (scheduled kernels) on the same frames: what the GPUs must pick and draw."""
    out = {}
    for name in MODELS:
        engine = Emojifier(model_io.load(model_io.shipped_weights(model_name=name), "CPU"), EmojiSet.load(),
                           Settings(**SETTINGS, device="CPU", composite="host"))
        out[name] = [engine(frame) for frame in frames]
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_each_gpu_run_rendered_for_its_gpu_and_says_which_kernels(emulated, arch, record_property):
    """The renderer target each run used and its kernels per (model, path): how many, a hash of their code,
    printed and recorded (benchmarks/results/2026-12-07-gpu-emulated-kernels.md); none on tensor cores (float32,
    no padding: see ARCHS)."""
    got = emulated[arch]
    assert got["target"] == {"device": ARCHS[arch], "arch": arch}
    for path, kernels in got["kernels"].items():
        print(f"{arch:8} {path:15} {kernels['count']:3} kernels, {kernels['tensor_core_kernels']} on tensor cores, "
              f"sha256 {kernels['sha256'][:16]}")
        record_property(f"{arch} {path}", kernels)
        assert kernels["tensor_core_kernels"] == 0, path


def test_without_tensor_cores_every_gpu_runs_the_same_kernels(emulated):
    """What the three grid runs cover: without tensor cores the renderer's only difference is the device name, which
    no other kernel carries, so they run byte-identical kernels (those plain PYTHON runs; measured for the network,
    benchmarks/results/2026-12-07-gpu-emulated-kernels.md). If tinygrad starts rendering them differently, this
    says so, and the grid runs start covering more than one GPU."""
    digests = {arch: {path: k["sha256"] for path, k in emulated[arch]["kernels"].items()} for arch in ARCHS}
    assert digests["sm_80"] == digests["gfx1100"] == digests["METAL"], digests


@pytest.mark.parametrize("run", TENSOR_CORES)
def test_the_network_on_tensor_cores_picks_what_the_cpu_does(emulated, patches, run, record_property):
    """Metal's float32 tensor cores, and sm_80's TF32 ones, run the network's convolutions and its linear layer
    (tinygrad's WMMA: kernels the CPU never runs) and pick what the CPU picks on the same patches. The emulator
    multiplies TF32 inputs at full float32 precision, which sm_80 does not."""
    arch, _ = TENSOR_CORES[run]
    got = emulated[f"{run} tensor cores"]
    print(f"{run:11} tensor cores: {got['tensor_core_kernels']}, sha256 {got['sha256'][:16]}")
    record_property(f"{run} tensor cores", got)
    assert got["target"] == {"device": ARCHS[arch], "arch": arch}
    assert len(got["tensor_core_kernels"]) == 3, got["tensor_core_kernels"]  # conv1, conv2, linear
    cpu = Emojifier(model_io.load(model_io.shipped_weights(model_name="fast"), "CPU"), EmojiSet.load(),
                    Settings(**SETTINGS, device="CPU", composite="host"))
    assert got["indices"] == cpu.classify(patches).tolist()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("composite", ["host", "device"])
def test_emulated_gpu_picks_and_draws_what_the_cpu_does(emulated, on_cpu, arch, name, composite):
    got, expected = emulated[arch][f"{name} {composite}"], on_cpu[name]
    for frame, (gpu, cpu) in enumerate(zip(got, expected, strict=True)):
        assert gpu["indices"] == cpu.indices.tolist(), f"frame {frame}"
        assert gpu["skipped"] == pytest.approx(cpu.skipped), f"frame {frame}"
        image = np.array(gpu["image"], np.uint8)
        assert image.shape == cpu.image.shape
        # the host path composites with the same numpy code; the device path redoes the resize and the `auto`
        # background on the device (device_frame.py), within a level
        assert np.abs(image.astype(int) - cpu.image).mean() <= (0 if composite == "host" else 1.0), f"frame {frame}"
    assert expected[1].skipped == 0.5, "the second frame sends one cell of two through the network"
