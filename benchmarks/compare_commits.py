"""Two commits of emojicam side by side on the same machine in one run: `convert` of the bundled clip and
`live --no-window` on it, alternating, so that a change that must not slow anything down is measured against what
came before under the same load.

    .venv/bin/python benchmarks/compare_commits.py BEFORE AFTER [--rounds 3] [--name refactor]
        [--flags "--composite device"]

BEFORE and AFTER are commits (or anything `git worktree add` takes); each is checked out into a temporary worktree
and run with this virtual environment's packages and shipped data. Writes results/<date>-<name>.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_md import runs, write_markdown

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "samples" / "sample.mp4"
# the same device and network for both commits, whatever their defaults
SAME = ["--device", "CPU", "--model", "default"]
JOBS = {
    "convert clip (fps)": (["convert", str(CLIP), "{out}/clip.mp4", "--quiet", *SAME], None),
    "live --no-window (fps)": (["live", "--source", str(CLIP), "--no-window", "--max-frames", "300", *SAME],
                               re.compile(r"^live: \d+ frames, mean ([\d.]+) fps", re.M)),
}


def run(checkout: Path, args: list[str], out: Path, pattern: re.Pattern | None) -> float:
    """fps of one run: from the job's own closing line, or frames over wall time for convert."""
    cmd = [sys.executable, "-m", "emojicam", *(a.format(out=out) for a in args)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=checkout, env={**os.environ, "PYTHONPATH":
                                                                                   str(checkout)}, timeout=1800)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: {' '.join(cmd)} failed: {done.stderr[-2000:]}")
    if pattern is not None:
        return float(pattern.search(done.stdout)[1])
    frames = int(subprocess.run([sys.executable, "-c", "import cv2,sys; c=cv2.VideoCapture(sys.argv[1]); "
                                 "print(int(c.get(cv2.CAP_PROP_FRAME_COUNT)))", str(out / "clip.mp4")],
                                capture_output=True, text=True, check=True).stdout)
    return frames / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default="before-after")
    parser.add_argument("--flags", default="", help="more options for both jobs, e.g. '--composite device'")
    args = parser.parse_args()
    jobs = {job: ([*cmd, *shlex.split(args.flags)], pattern) for job, (cmd, pattern) in JOBS.items()}
    fps: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for label in ("before", "after"):
            trees[label] = Path(tmp) / label
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(trees[label]), getattr(args, label)],
                           cwd=ROOT, check=True)
        try:
            for tree in trees.values():  # compile (or load) once each, so no timed run pays for it
                for cmd, pattern in jobs.values():
                    run(tree, cmd, Path(tmp), pattern)
            for _ in range(args.rounds):
                for job, (cmd, pattern) in jobs.items():
                    for label, tree in trees.items():
                        fps.setdefault((job, label), []).append(run(tree, cmd, Path(tmp), pattern))
                        print(f"{job} {label}: {fps[(job, label)][-1]:.1f}", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    from emojicam.bench.machine import machine_line

    commits = {label: subprocess.run(["git", "rev-parse", "--short", getattr(args, label)], cwd=ROOT,
                                     capture_output=True, text=True).stdout.strip() for label in ("before", "after")}
    lines = [f"# Before and after: {commits['before']} against {commits['after']}", "",
             f"{time.strftime('%Y-%m-%d %H:%M')} UTC; {machine_line()}; `benchmarks/compare_commits.py "
             f"{args.before} {args.after} --rounds {args.rounds}`: samples/sample.mp4 (1280x720 H.264), "
             f"`{' '.join([*SAME, args.flags]).strip()}` (the same work whatever each commit's defaults), the two "
             "commits alternating.", "",
             "| job | before: fps per round | after: fps per round | median after / before |",
             "| --- | --- | --- | --- |"]
    for job in jobs:
        before, after = fps[(job, "before")], fps[(job, "after")]
        lines.append(f"| {job} | {runs(before)} | {runs(after)} | "
                     f"{statistics.median(after) / statistics.median(before):.2f} |")
    write_markdown(args.name, lines)


if __name__ == "__main__":
    main()
