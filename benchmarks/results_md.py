"""A benchmark's Markdown result: printed, and written to benchmarks/results/<date>-<name>.md."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def runs(fps: Iterable[float]) -> str:
    """One table cell: each run's fps, in the order they ran."""
    return ", ".join(f"{f:.1f}" for f in fps)


def write_markdown(name: str, lines: list[str]) -> Path:
    """Print the lines and write them to results/<today>-<name>.md; the path written."""
    text = "\n".join(lines) + "\n"
    print(text)
    out = RESULTS / f"{time.strftime('%Y-%m-%d')}-{name}.md"
    out.write_text(text)
    print(f"wrote {out}")
    return out
