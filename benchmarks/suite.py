"""The full benchmark ladder (32x18 .. 128x72 on every working device, with peers) into benchmarks/results/.

    .venv/bin/python benchmarks/suite.py                 # writes results/<date>-<host>-<cpu>.{json,md,png}
    .venv/bin/python benchmarks/suite.py --device CL     # any `emojicam bench` flag passes through
Run it on a quiet machine: the numbers are only as steady as the load average the report records.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from emojicam.bench.machine import cpu_model

RESULTS = Path(__file__).resolve().parent / "results"


def result_stem() -> str:
    """<date>-<host>-<cpu>, lower case, safe as a file name."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{platform.node()}-{cpu_model()}".lower()).strip("-")
    return f"{time.strftime('%Y-%m-%d')}-{slug[:60]}"


if __name__ == "__main__":
    stem = RESULTS / result_stem()
    sys.exit(subprocess.run([sys.executable, "-m", "emojicam", "bench", "--json", f"{stem}.json", "--markdown",
                             f"{stem}.md", "--plot", f"{stem}.png", *sys.argv[1:]]).returncode)
