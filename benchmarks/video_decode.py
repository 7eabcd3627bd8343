"""What the two video readers cost: a file decoded by FFmpeg onto the constant rate (a pipe of BGR frames), against
OpenCV's reader retimed by FrameClock (what streams use, and files where no FFmpeg runs; before 2026-12-06 every
file). CPU milliseconds per frame of this process and its children, and frames per second, reading only.

    .venv/bin/python benchmarks/video_decode.py [--source samples/sample.mp4] [--rounds 5]

Each round reads the clip once with each reader, alternately, in a fresh child process (the OpenCV reader is the
one open_video picks when FFmpeg is not found: IMAGEIO_FFMPEG_EXE pointing nowhere).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from emojicam.bench.machine import machine_line

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "sample.mp4"
READ = """
import json, resource, sys, time
from emojicam.media.reader import open_video
def cpu():
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
with open_video(sys.argv[1]) as video:
    c0, t0 = cpu(), time.perf_counter()
    frames = sum(1 for _ in video)
    wall = time.perf_counter() - t0
print(json.dumps({"frames": frames, "cpu_ms": (cpu() - c0) / frames * 1e3, "fps": frames / wall}))
"""


def read(source: Path, reader: str) -> dict:
    env = dict(os.environ)
    if reader == "opencv":
        env["IMAGEIO_FFMPEG_EXE"] = "/nonexistent/ffmpeg"
    done = subprocess.run([sys.executable, "-c", READ, str(source)], capture_output=True, text=True, env=env,
                          check=True, timeout=600)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SAMPLE)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{machine_line()}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; {args.source.name}\n")
    runs: dict[str, list[dict]] = {"ffmpeg": [], "opencv": []}
    for _ in range(args.rounds):
        for reader in runs:
            runs[reader].append(read(args.source, reader))
    print("| reader | frames | CPU ms/frame (median, min) | frames/s (median) |")
    print("| --- | --- | --- | --- |")
    for reader, rows in runs.items():
        cpu = [r["cpu_ms"] for r in rows]
        print(f"| {reader} | {rows[0]['frames']} | {statistics.median(cpu):.2f}, {min(cpu):.2f} | "
              f"{statistics.median(r['fps'] for r in rows):.0f} |")


if __name__ == "__main__":
    main()
