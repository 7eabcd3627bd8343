"""Tabulate the browser page's benchmark results: the JSON its benchmark mode (index.html#bench) gives to copy,
one file per GPU and browser, as Markdown: by grid, fastest end to end first.

    python benchmarks/web_results.py benchmarks/results/web/*.json [--markdown OUT.md]

Field names follow `emojicam bench --json` where they mean the same (forward_fps, classify_fps, e2e_fps,
achieved_gflops, kernels_per_frame); the page times its own steps on a built-in 1280x720 frame: forward = the
network alone, classify = input copy + network + scoring + pick, end to end = the browser's resize + all of that +
the render pass, each a median of submitted frames waited for one at a time.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

COLUMNS = ("GPU (WebGPU adapter)", "browser", "network and grid", "cells", "forward fps", "classify fps",
           "end-to-end fps", "GFLOP/s", "kernels", "file")


def browser_name(agent: str) -> str:
    """'... HeadlessChrome/156.0.0.0 Safari/537.36' -> 'HeadlessChrome 156': the browser and its major version."""
    for pattern in (r"(Edg)/(\d+)", r"(Firefox)/(\d+)", r"(HeadlessChrome|Chrome)/(\d+)", r"Version/(\d+).*(Safari)"):
        if found := re.search(pattern, agent):
            a, b = found.groups()
            return f"{b} {a}" if a.isdigit() else f"{'Edge' if a == 'Edg' else a} {b}"
    return agent[:40] or "unknown"


def rows(name: str, report: dict) -> list[list[str]]:
    env = report["environment"]
    adapter, browser = env["adapter"]["name"], browser_name(env.get("browser", ""))
    return [[adapter, browser, f"{r.get('model', '')} {r['grid']}".strip(), str(r["patches"]),
             *(f"{r[k]:.3g}" for k in ("forward_fps", "classify_fps", "e2e_fps", "achieved_gflops")),
             str(r["kernels_per_frame"]), name]
            for r in report["records"]]


def table(reports: list[tuple[str, dict]]) -> str:
    """The Markdown table of (name, report) pairs."""
    found = sorted((row for name, report in reports for row in rows(name, report)),
                   key=lambda r: (int(r[3]), -float(r[6])))
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in found]) + "\n"


def markdown(paths: list[Path]) -> str:
    return table([(path.name, json.loads(path.read_text())) for path in paths])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="JSON files the page's benchmark gave")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    try:
        text = markdown(args.files)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"web_results: expected JSON files from the page's benchmark, got an error: {e}", file=sys.stderr)
        return 2
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
