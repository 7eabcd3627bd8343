"""Compiling a lane's kernels in a child process, for OpenCL (PoCL on the CPU).

On PoCL a program build (clBuildProgram) and the first run of each new kernel (PoCL compiles its work-group
function then) happen on the one device and command queue the running grid uses too, so while the background
thread captured a new batch size in the same process the live picture stopped for seconds
(benchmarks/results/2026-12-02-live-grid-change.md). A child process builds and runs the same kernels first, with
random weights of the same shape (the kernels' code does not depend on the weights' values), which fills
tinygrad's kernel cache and PoCL's; the capture in this process then only loads what was compiled.

    python -m emojicam.precompile SPEC_JSON     (the child; SPEC_JSON from child_spec)
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import numpy as np

from emojicam.model import ModelConfig
from emojicam.settings import Settings

TIMEOUT_S = 600


def compiles_in_child(device: str) -> bool:
    """Whether a background build on this device compiles in a child process first: OpenCL (measured on PoCL)."""
    return device.split(":")[0] == "CL"


def child_spec(device: str, config: ModelConfig, settings: Settings, scheduled: bool, batch: int) -> str:
    return json.dumps({"device": device, "config": asdict(config), "settings": asdict(settings),
                       "scheduled": scheduled, "batch": batch})


def child_command(spec: str) -> list[str]:
    """The child's command line (Builder.run_child runs it; a failed child only means the build compiles here)."""
    return [sys.executable, "-m", "emojicam.precompile", spec]


def main(spec: str) -> None:
    from tinygrad import Device

    from emojicam.kernels import InferenceNet
    from emojicam.lanes import batch_inputs, capture
    from emojicam.model import TinyConvNet
    from emojicam.scoring import Scorer

    s = json.loads(spec)
    config = ModelConfig(**{**s["config"], "channels": tuple(s["config"]["channels"])})
    device, batch, k = s["device"], s["batch"], config.classes
    model = TinyConvNet(config).to_(device)
    scorer = Scorer(InferenceNet(model, device, scheduled=s["scheduled"]), np.zeros((k, 3), np.float32),
                    np.zeros(k, np.float32), Settings(**s["settings"]))
    capture(scorer, batch_inputs(batch, config.patch_px, device))  # as Lanes captures it
    Device[device].synchronize()


if __name__ == "__main__":
    main(sys.argv[1])
