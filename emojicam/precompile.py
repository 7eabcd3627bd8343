"""The child process that compiles a lane's kernels first, for OpenCL (PoCL on the CPU): lanes.py starts it.

On PoCL a program build (clBuildProgram) and the first run of each new kernel (PoCL compiles its work-group
function then) happen on the one device and command queue the running grid uses too, so while the background
thread captured a new batch size in the same process the live picture would stop for seconds
(docs/benchmarks.md). This child builds and runs the same kernels first, with
random weights of the same shape (the kernels' code does not depend on the weights' values), which fills
tinygrad's kernel cache and PoCL's; the capture in the parent then only loads what was compiled.

    python -m emojicam.precompile SPEC_JSON     (SPEC_JSON from lanes.child_spec)
"""

from __future__ import annotations

import json
import sys

import numpy as np
from tinygrad import Device

from emojicam.builder import capture
from emojicam.kernels import InferenceNet
from emojicam.model import ModelConfig, TinyConvNet
from emojicam.scoring import Scorer, pick_inputs
from emojicam.settings import Settings


def main(spec: str) -> None:
    s = json.loads(spec)
    config = ModelConfig(**{**s["config"], "channels": tuple(s["config"]["channels"])})
    device, batch, k = s["device"], s["batch"], config.classes
    model = TinyConvNet(config).to_(device)
    scorer = Scorer(InferenceNet(model, device, scheduled=s["scheduled"]), np.zeros((k, 3), np.float32),
                    np.zeros(k, np.float32), Settings(**s["settings"]))
    capture(lambda *xs: scorer.pick(*xs).realize(), *pick_inputs(batch, config.patch_px, device))  # as Lanes does
    Device[device].synchronize()


if __name__ == "__main__":
    main(sys.argv[1])
