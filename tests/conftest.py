"""Shared test helpers: run the real CLI in a subprocess, find the shipped weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
