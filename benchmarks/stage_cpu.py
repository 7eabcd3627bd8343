"""CPU milliseconds per frame of each stage of a conversion, measured one stage at a time on the same frames (CPU time,
not wall time, so a loaded machine changes the figures less): FFmpeg decoding the clip alone, the cut, the network
with its scores (the engine's lanes, every cell), the compositing, FFmpeg encoding the emoji frames alone, and the
Python of one whole conversion around them (its CPU time less the stages').

    .venv/bin/python benchmarks/stage_cpu.py [--model default] [--cols 64] [--frames 60]

Run it with PYTHONPATH=<another checkout> to measure that commit's code the same way (the stages are called through
the engine's public calls, so older commits run it too).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from emojicam import model
from emojicam.bench.machine import machine_line
from emojicam.emoji_set import EmojiSet
from emojicam.engine import Emojifier, Settings
from emojicam.grid import cut_patches
from emojicam.media.reader import ffmpeg_exe, open_video
from emojicam.media.video import convert_video
from emojicam.media.writer import VideoWriter

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "sample.mp4"


def cpu_s(who: int = resource.RUSAGE_SELF) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def per_frame_ms(fn, items: list, who: int = resource.RUSAGE_SELF) -> float:
    c0 = cpu_s(who)
    for item in items:
        fn(item)
    return (cpu_s(who) - c0) / len(items) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--cols", type=int, default=64)
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()
    exe = ffmpeg_exe()
    c0 = cpu_s(resource.RUSAGE_CHILDREN)
    subprocess.run([exe, "-v", "error", "-nostdin", "-i", str(SAMPLE), "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt",
                    "bgr24", "-"], stdout=subprocess.DEVNULL, check=True)
    with open_video(SAMPLE) as video:
        frames = list(video)
    decode = (cpu_s(resource.RUSAGE_CHILDREN) - c0) / len(frames) * 1e3
    ckpt = model.load(model.shipped_weights("default", args.model), "CPU")
    with (Emojifier(ckpt, EmojiSet.load(), Settings(cols=args.cols, device="CPU")) as engine,
          tempfile.TemporaryDirectory() as folder):
        grid = engine.grid_for(frames[0].shape)
        engine.warm_up(grid.count)
        some = frames[:args.frames]
        cut = per_frame_ms(lambda f: cut_patches(f, grid, engine.patch_px), some)
        patches = [cut_patches(f, grid, engine.patch_px) for f in some]
        network = per_frame_ms(engine.classify, patches)
        picked = [engine.pick(f) for f in some]
        composite = per_frame_ms(lambda pf: engine.render(pf[0], pf[1]), list(zip(picked, some, strict=True)))
        images = [engine.render(p, f).image for p, f in zip(picked, some, strict=True)]
        c0 = cpu_s(resource.RUSAGE_CHILDREN)
        with VideoWriter(Path(folder) / "encode.mp4", 30.0, grid.output_size) as out:
            for image in images:
                out.write(image)
        encode = (cpu_s(resource.RUSAGE_CHILDREN) - c0) / len(images) * 1e3
        me, kids, t0 = cpu_s(), cpu_s(resource.RUSAGE_CHILDREN), time.perf_counter()
        stats = convert_video(engine, SAMPLE, Path(folder) / "out.mp4", quiet=True)
        wall = time.perf_counter() - t0
        me, kids = (cpu_s() - me) / stats.frames * 1e3, (cpu_s(resource.RUSAGE_CHILDREN) - kids) / stats.frames * 1e3
    # the conversion sends only the moved cells through the network (stats.skipped of them kept their emoji)
    net_in_convert = network * (1 - stats.skipped)
    python = me - cut - net_in_convert - composite
    shared = decode + cut + composite + encode + python
    print(f"{machine_line()}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; {args.model} at "
          f"{grid.cols}x{grid.rows}, {len(frames)} frames of {SAMPLE.name}")
    print("| decode | cut | network (every cell) | composite | encode | Python and copies | shared | shared / network "
          "| convert: emojicam + FFmpeg CPU ms/frame, fps |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {decode:.1f} | {cut:.1f} | {network:.1f} | {composite:.1f} | {encode:.1f} | {python:.1f} | {shared:.1f} "
          f"| {shared / network:.2f} | {me:.0f} + {kids:.0f}, {stats.frames / wall:.1f} fps (skipped "
          f"{stats.skipped:.0%}) |", flush=True)


if __name__ == "__main__":
    main()
