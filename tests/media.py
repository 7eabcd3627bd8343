"""Test media made on the spot with the FFmpeg binary (lavfi test sources), and ffprobe-like checks of outputs.

Nothing here uses emojicam: the checks are independent of the code they check.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()

# (video codec args, audio codec args) per container
CODECS = {
    ".mp4": (["-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart"], ["-c:a", "aac"]),
    ".mov": (["-c:v", "libx264", "-pix_fmt", "yuv420p"], ["-c:a", "aac"]),
    ".mkv": (["-c:v", "libx264", "-pix_fmt", "yuv420p"], ["-c:a", "aac"]),
    ".webm": (["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"], ["-c:a", "libopus"]),
    ".avi": (["-c:v", "mjpeg", "-q:v", "4"], ["-c:a", "pcm_s16le"]),
    ".gif": ([], []),
}


def ffmpeg(*args: str | Path) -> str:
    """Run the FFmpeg binary; returns its stderr, raises with its last line on failure."""
    done = subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-y", *map(str, args)], capture_output=True,
                          text=True, errors="replace", timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(map(str, args))}: {done.stderr.strip().splitlines()[-1:]}")
    return done.stderr


def make_clip(path: Path, size: tuple[int, int] = (160, 90), fps: float = 25, seconds: float = 1.0,
              audio: bool = True, source: str = "testsrc2", video_args: list[str] | None = None) -> Path:
    """A clip of FFmpeg's moving test pattern (+ a 440 Hz tone), encoded as the extension says.
    Odd sizes are scaled to after the source, since the test sources themselves round to even sizes."""
    w, h = size
    vargs, aargs = CODECS[path.suffix.lower()]
    graph = f"{source}=size={w + w % 2}x{h + h % 2}:rate={fps}:duration={seconds}"
    if w % 2 or h % 2:
        graph += f",scale={w}:{h},format=yuv444p"
        vargs = [a for a in vargs if a not in ("-pix_fmt", "yuv420p")]
    inputs: list[str] = ["-f", "lavfi", "-i", graph]
    if audio and aargs:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    ffmpeg(*inputs, *(video_args if video_args is not None else vargs), *(aargs if audio else []), path)
    return path


def rotated(src: Path, dst: Path, degrees: int = 90) -> Path:
    """The same stream with display-rotation metadata, as phones write it (no re-encode)."""
    ffmpeg("-display_rotation", str(degrees), "-i", src, "-c", "copy", dst)
    return dst


def truncated(src: Path, dst: Path, keep: float = 0.5) -> Path:
    """The first `keep` share of src's bytes: a download or recording cut short."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


@dataclass(frozen=True)
class Probe:
    """What FFmpeg says about a file: codec names of its streams; the first video stream's stored size, fps and
    display rotation (degrees counter-clockwise)."""

    video: str | None
    audio: str | None
    size: tuple[int, int]
    fps: float
    rotation: float = 0.0

    @property
    def display_size(self) -> tuple[int, int]:
        w, h = self.size
        return (h, w) if abs(self.rotation) % 180 == 90 else (w, h)


def probe(path: Path) -> Probe:
    text = subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, text=True,
                          errors="replace").stderr
    video = re.search(r"Stream #\S+.*?: Video: (\w+).*?, (\d+)x(\d+)[, ].*?([\d.]+) (?:fps|tbr)", text)
    audio = re.search(r"Stream #\S+.*?: Audio: (\w+)", text)
    rotation = re.search(r"rotation of (-?[\d.]+) degrees", text)
    if video is None:
        return Probe(None, audio[1] if audio else None, (0, 0), 0.0)
    return Probe(video[1], audio[1] if audio else None, (int(video[2]), int(video[3])), float(video[4]),
                 float(rotation[1]) if rotation else 0.0)


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame OpenCV decodes (BGR), to count them and look at them."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def ffmpeg_frame(path: Path, index: int = 0) -> np.ndarray:
    """One frame as FFmpeg itself decodes it (rotation applied, as players do), BGR."""
    w, h = probe(path).display_size
    raw = subprocess.run([FFMPEG, "-v", "error", "-nostdin", "-i", str(path), "-vf", f"select=eq(n\\,{index})",
                          "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"], capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(h, w, 3)


def stream_seconds(path: Path, stream: str) -> float:
    """Decoded duration of the first 'v' or 'a' stream, from FFmpeg's last progress report."""
    text = ffmpeg("-i", path, "-map", f"0:{stream}:0", "-f", "null", "-")
    times = re.findall(r"time=(\d+):(\d\d):(\d\d(?:\.\d+)?)", text)
    h, m, s = times[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)
