"""Shared test helpers: run the real CLI in a subprocess, find the shipped weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emojicam.emoji_set import DEFAULT_SET

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights" / "default.safetensors"


def run_cli(*args: str | Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m emojicam ARGS` as a user would; returns the finished process (text output)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "emojicam", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=full_env)


@pytest.fixture(scope="session")
def weights() -> Path:
    if not WEIGHTS.exists():
        pytest.fail(f"shipped weights missing: {WEIGHTS}")
    return WEIGHTS


@pytest.fixture(scope="session")
def other_weights(tmp_path_factory) -> tuple[Path, Path]:
    """`emojicam train` (a few steps) on three emoji: a real weights file for another set, and that set: a folder of
    PNGs without a manifest, so without codepoints."""
    d = tmp_path_factory.mktemp("other")
    folder = d / "three"
    folder.mkdir()
    for name in json.loads((DEFAULT_SET / "manifest.json").read_text())["classes"][:3]:
        shutil.copy(DEFAULT_SET / name["file"], folder / name["file"])
    out = d / "three.safetensors"
    done = run_cli("train", folder, "-o", out, "--steps", 3, "--batch", 8, "--device", "CPU")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].endswith(f"perturbed emoji; wrote {out}")
    assert sorted(p.name for p in d.iterdir()) == ["three", "three.safetensors"], "no temporary file left"
    return folder, out
