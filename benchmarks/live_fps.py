"""`emojicam live` with its default flags on a 720p source: frames per second of the whole mirror (read, pick,
render, show), against the same run with `--model default`, alternating, in one run.

    .venv/bin/python benchmarks/live_fps.py [--runs 3] [--frames 300] [--window] [--name live-fps]

The source is samples/sample.mp4 (1280x720 H.264), read frame by frame (`--max-frames`, so the rate is the
mirror's own, not the file's 25 fps); the grid is live's default 64x36. With --window the mirror also draws its
window on a virtual screen (Xvfb), as a user sees it. Writes results/<date>-<name>.md with the machine line.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results_md import runs, write_markdown

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "samples" / "sample.mp4"
CLOSING = re.compile(r"^live: (\d+) frames, mean ([\d.]+) fps, device (\S+), (\d+) px network")


def start_xvfb() -> tuple[subprocess.Popen, str]:
    for n in range(90, 190):
        if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists():
            proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(200):
                if Path(f"/tmp/.X11-unix/X{n}").exists():
                    return proc, f":{n}"
                time.sleep(0.1)
            proc.kill()
    raise SystemExit("could not start Xvfb")


def live(flags: list[str], frames: int, display: str | None) -> tuple[float, str, int]:
    """One run: mean fps, device, the network's input px (from live's closing line)."""
    cmd = [sys.executable, "-m", "emojicam", "live", "--source", str(CLIP), "--max-frames", str(frames), *flags,
           *([] if display else ["--no-window"])]
    env = {**os.environ, **({"DISPLAY": display} if display else {})}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=1800)
    line = next((m for m in map(CLOSING.match, done.stdout.splitlines()) if m), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    return float(line[2]), line[3], int(line[4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--window", action="store_true", help="draw the window on Xvfb too")
    parser.add_argument("--name", default="live-fps")
    args = parser.parse_args()
    xvfb, display = start_xvfb() if args.window else (None, None)
    variants = {"default flags": [], "--model default": ["--model", "default"]}
    fps: dict[str, list[float]] = {name: [] for name in variants}
    about: dict[str, tuple[str, int]] = {}
    try:
        live([], 30, display)  # compile (or load) once, so no run below pays for it
        live(["--model", "default"], 30, display)
        for _ in range(args.runs):
            for name, flags in variants.items():
                got, device, px = live(flags, args.frames, display)
                fps[name].append(got)
                about[name] = (device, px)
                print(f"{name}: {got:.1f} fps ({device}, {px} px network)", flush=True)
    finally:
        if xvfb is not None:
            xvfb.terminate()
    from emojicam.bench.machine import machine_line

    shown = "its window on Xvfb" if args.window else "no window (--no-window)"
    lines = ["# `emojicam live` frames per second, default flags against `--model default`", "",
             f"{time.strftime('%Y-%m-%d %H:%M')} UTC; {machine_line()}; `benchmarks/live_fps.py --runs {args.runs} "
             f"--frames {args.frames}{' --window' if args.window else ''}`: samples/sample.mp4 (1280x720 H.264) "
             f"read frame by frame, grid 64x36, {shown}; runs alternate; mean fps from live's closing line.", "",
             "| flags | device | network | fps per run | median fps |", "| --- | --- | --- | --- | --- |"]
    for name, measured in fps.items():
        device, px = about[name]
        lines.append(f"| {name} | {device} | {px} px | {runs(measured)} | {statistics.median(measured):.1f} |")
    ratio = statistics.median(fps["default flags"]) / statistics.median(fps["--model default"])
    lines += ["", f"Default flags run at {ratio:.2f}x the 36 px network's rate in this run."]
    write_markdown(args.name, lines)


if __name__ == "__main__":
    main()
