"""x264 settings for emoji frames: the bundled clip emojified once (64x36, tiles of 16 px, the fast network), then
the same BGR frames piped to FFmpeg with each setting in turn, alternating, several rounds: encode CPU
milliseconds per frame (FFmpeg's own, from the children's rusage), file size, and PSNR of the decoded file against
the frames sent.

    .venv/bin/python benchmarks/encoder_settings.py [--rounds 3] [--cols 64]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from emojicam import model
from emojicam.bench.machine import machine_line
from emojicam.emoji_set import EmojiSet
from emojicam.engine import Emojifier, Settings
from emojicam.media.reader import ffmpeg_exe, open_video

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "sample.mp4"
SETTINGS = {
    "veryfast crf 20": ["-preset", "veryfast", "-crf", "20"],
    "superfast crf 20": ["-preset", "superfast", "-crf", "20"],
    "superfast crf 20, 1 thread": ["-preset", "superfast", "-crf", "20", "-threads", "1"],
    "ultrafast crf 20": ["-preset", "ultrafast", "-crf", "20"],
    "ultrafast crf 22": ["-preset", "ultrafast", "-crf", "22"],
    "ultrafast crf 24": ["-preset", "ultrafast", "-crf", "24"],
    "ultrafast crf 22, 1 thread": ["-preset", "ultrafast", "-crf", "22", "-threads", "1"],
    "ultrafast crf 20 cabac, 2 B-frames": ["-preset", "ultrafast", "-crf", "20", "-x264-params", "cabac=1:bframes=2"],
}


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def encode(frames: list[np.ndarray], fps: float, args: list[str], out: Path) -> float:
    """Encode the frames with these x264 arguments; FFmpeg's CPU seconds."""
    h, w = frames[0].shape[:2]
    c0 = children_cpu_s()
    proc = subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo",
                             "-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-framerate", f"{fps}", "-i", "-",
                             "-c:v", "libx264", *args, "-pix_fmt", "yuv420p", str(out)], stdin=subprocess.PIPE)
    for frame in frames:
        proc.stdin.write(frame.data)
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit(f"FFmpeg failed for {args}")
    return children_cpu_s() - c0


def psnr(frames: list[np.ndarray], path: Path) -> float:
    with open_video(path) as video:
        decoded = list(video)
    err = statistics.fmean(float(np.mean((a.astype(np.float32) - b) ** 2)) for a, b in zip(frames, decoded,
                                                                                           strict=True))
    return 10 * np.log10(255**2 / err)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cols", type=int, default=64)
    args = parser.parse_args()
    ckpt = model.load(model.shipped_weights("default", "fast"), "CPU")
    with Emojifier(ckpt, EmojiSet.load(), Settings(cols=args.cols, device="CPU")) as engine, open_video(SAMPLE) as v:
        fps = v.fps
        frames = [engine(frame).image for frame in v]
    print(f"{machine_line()}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; {len(frames)} emoji frames "
          f"of {frames[0].shape[1]}x{frames[0].shape[0]} from {SAMPLE.name} at {args.cols} columns\n")
    cpu: dict[str, list[float]] = {name: [] for name in SETTINGS}
    size: dict[str, int] = {}
    quality: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for name, x264 in SETTINGS.items():
                out = Path(folder) / f"{len(cpu[name])}.mp4"
                cpu[name].append(encode(frames, fps, x264, out) / len(frames) * 1e3)
                size[name] = out.stat().st_size
                if name not in quality:
                    quality[name] = psnr(frames, out)
    base = statistics.median(cpu["veryfast crf 20"])
    print("| x264 | encode CPU ms/frame (median; runs) | vs veryfast | file KiB | PSNR dB |")
    print("| --- | --- | --- | --- | --- |")
    for name in SETTINGS:
        runs = ", ".join(f"{c:.1f}" for c in cpu[name])
        print(f"| {name} | {statistics.median(cpu[name]):.1f} ({runs}) | {statistics.median(cpu[name]) / base:.2f}x "
              f"| {size[name] / 1024:.0f} | {quality[name]:.1f} |")


if __name__ == "__main__":
    main()
