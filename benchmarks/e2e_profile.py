"""Where a conversion's CPU time goes, per model: `convert_video` of the bundled clip, timed with the process's and
its FFmpeg children's CPU time, so the end-to-end fps can be compared with what the cores could give.

    .venv/bin/python benchmarks/e2e_profile.py [--models default,fast] [--cols 64] [--device CPU]

Per model: one untimed conversion (compiles, fills the caches), then one timed: fps, wall seconds, CPU seconds of
this process (decoder thread, network lanes, compositor) and of FFmpeg (decode and encode), how many cores were
busy on average, CPU milliseconds per frame, and the median stage times convert_video reports.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from emojicam import model
from emojicam.bench.machine import machine_line
from emojicam.emoji_set import EmojiSet
from emojicam.engine import Emojifier, Settings
from emojicam.media.video import convert_video

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "sample.mp4"


def cpu_s(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="default,fast")
    parser.add_argument("--cols", type=int, default=64)
    parser.add_argument("--device", default="CPU")
    args = parser.parse_args()
    print(f"{machine_line()}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC\n")
    print("| model | fps | wall s | emojicam CPU s | FFmpeg CPU s | cores busy | CPU ms/frame | stage ms (median) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models.split(","):
        ckpt = model.load(model.shipped_weights("default", name), args.device)
        with (Emojifier(ckpt, EmojiSet.load(), Settings(cols=args.cols, device=args.device)) as engine,
              tempfile.TemporaryDirectory() as folder):
            convert_video(engine, SAMPLE, Path(folder) / "warm.mp4", quiet=True)
            me, kids, t0 = cpu_s(resource.RUSAGE_SELF), cpu_s(resource.RUSAGE_CHILDREN), time.perf_counter()
            stats = convert_video(engine, SAMPLE, Path(folder) / "out.mp4", quiet=True)
            wall = time.perf_counter() - t0
            me, kids = cpu_s(resource.RUSAGE_SELF) - me, cpu_s(resource.RUSAGE_CHILDREN) - kids
        stages = ", ".join(f"{k} {v:.1f}" for k, v in stats.stage_ms.items() if v >= 0.5)
        print(f"| {name} | {stats.fps:.1f} | {wall:.1f} | {me:.1f} | {kids:.1f} | {(me + kids) / wall:.2f} | "
              f"{(me + kids) / stats.frames * 1e3:.0f} | {stages} |", flush=True)


if __name__ == "__main__":
    main()
