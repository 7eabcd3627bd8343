"""The live mirror's longest gap between displayed frames, with and without a grid change, from empty caches.

    .venv/bin/python benchmarks/live_gaps.py [--device CL] [--cols 64] [--frames 150] [--out benchmarks/results]

Runs `emojicam live`'s own pick step (`emojicam.live.mirror.Picker`: the grid asked for once ready) on the frames of
samples/sample.mp4 as fast as they come, without a window, in three fresh processes, each with an empty JIT cache
and an empty tinygrad kernel cache (what a first-time user has):
- steady: the starting grid only;
- grid change: `+` after frame 10 (the next grid step), prepared in the background while the current grid runs;
- grid change, compiled here: the same, with OpenCL's child-process compile (emojicam/precompile.py) switched off,
  as before it existed (on the CPU device it is the same run again);
- foreground (the behaviour before): the same `+`, every shape compiled when a frame first needs it (the new grid
  on the next frame, each batch size of moved cells on the first frame that uses it), the picture waiting.
Reports per run the longest gap between two displayed frames after the first, the median gap, and for the grid
changes the seconds until the new grid was shown and the frames shown meanwhile.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("steady", "grid change", "grid change, compiled here", "foreground")
PRESS_AT = 10  # frames shown before `+`


def run_scenario(scenario: str, device: str | None, cols: int, frames: int) -> dict:
    """One scenario in this process (caches already pointed at empty folders by main)."""
    import cv2

    from emojicam import lanes, model
    from emojicam.emoji_set import EmojiSet
    from emojicam.engine import Emojifier, Settings
    from emojicam.live.mirror import Picker, View
    from emojicam.live.window import grid_steps

    cap = cv2.VideoCapture(str(ROOT / "samples" / "sample.mp4"))
    clip = []
    while len(clip) < frames and (got := cap.read())[0]:
        clip.append(got[1])
    if scenario == "grid change, compiled here":
        lanes.compiles_in_child = lambda device: False
    settings = Settings(cols=cols, device=device, stability=1.0, still_threshold=4.0)  # live's defaults
    with Emojifier(model.load(model.DEFAULT_WEIGHTS, device), EmojiSet.load(), settings) as engine:
        steps, view = grid_steps(clip[0].shape, settings.tile_px, cols), View(cols, mirror=False)
        picker = Picker(engine, wait_first=True, say=lambda line: None)  # only the very first frame waits
        shown_at, grids, pressed_at, i = [], [], None, 0
        # steady: `frames` frames; a grid change: on until `frames` frames after the new grid shows (or 5 minutes)
        while i < frames or (pressed_at and grids[-1] == grids[0] and time.perf_counter() - pressed_at < 300):
            if i == PRESS_AT and scenario != "steady":
                view, pressed_at = View(next(c for c in steps if c > cols), mirror=False), time.perf_counter()
            if scenario == "foreground":
                result = engine(clip[i % len(clip)], cols=view.cols)  # wait=True: the frame waits for any compile
            else:
                result = picker(clip[i % len(clip)], view.cols, view, True, i).picked
            shown_at.append(time.perf_counter())
            grids.append(f"{result.grid.cols}x{result.grid.rows}")
            i += 1
        gaps = [(b - a) * 1e3 for a, b in itertools.pairwise(shown_at)]  # from the first frame on
        record = {"scenario": scenario, "device": engine.device, "frames": len(grids), "start_grid": grids[0],
                  "end_grid": grids[-1], "longest_gap_ms": max(gaps), "median_gap_ms": statistics.median(gaps)}
        if pressed_at is not None:
            switch = next((i for i, g in enumerate(grids) if g != grids[0]), None)
            record["switched"] = switch is not None
            if switch is not None:
                record["seconds_to_new_grid"] = shown_at[switch] - pressed_at
                record["frames_shown_meanwhile"] = switch - PRESS_AT
        return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--cols", type=int, default=64)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--scenario", choices=SCENARIOS, help=argparse.SUPPRESS)  # the child process's job
    args = parser.parse_args()
    if args.scenario:
        print(json.dumps(run_scenario(args.scenario, args.device, args.cols, args.frames)))
        return
    records = []
    for scenario in SCENARIOS:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "EMOJICAM_CACHE": f"{cache}/jits", "CACHEDB": f"{cache}/kernels.db",
                   "POCL_CACHE_DIR": f"{cache}/pocl"}
            cmd = [sys.executable, __file__, "--scenario", scenario, "--cols", str(args.cols),
                   "--frames", str(args.frames), *(["--device", args.device] if args.device else [])]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            records.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(records[-1], flush=True)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    machine = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    report = {"date": stamp, "machine": machine, "cores": os.cpu_count(), "cols": args.cols, "load_average": load,
              "runs": records}
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{time.strftime('%Y-%m-%d', time.gmtime())}-live-grid-change-{records[0]['device'].lower()}"
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = ["# Live: longest gap between displayed frames, with and without a grid change", "",
             f"{stamp}, {machine}, {os.cpu_count()} cores (load average at the end {load}), device "
             f"{records[0]['device']}; "
             f"`benchmarks/live_gaps.py --cols {args.cols} --frames {args.frames}`; every run from empty caches "
             f"(no captured TinyJits, no compiled kernels, no PoCL cache), samples/sample.mp4 as fast as it is "
             f"emojified, "
             f"live's defaults (stability 1, still threshold 4), `+` after frame {PRESS_AT}.", "",
             "| run | grids | longest gap ms | median gap ms | new grid shown after s | frames shown meanwhile |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in records:
        lines.append(f"| {r['scenario']} | {r['start_grid']} -> {r['end_grid']} | {r['longest_gap_ms']:.0f} | "
                     f"{r['median_gap_ms']:.0f} | {r.get('seconds_to_new_grid', float('nan')):.1f} | "
                     f"{r.get('frames_shown_meanwhile', '-')} |")
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
