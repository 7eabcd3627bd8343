"""Test media made on the spot with the FFmpeg binary (lavfi test sources), and ffprobe-like checks of outputs.

Nothing here uses emojicam: the checks are independent of the code they check.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
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


# --- a stream server ----------------------------------------------------------------------------------------------

def _listening(port: int) -> bool:
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(r.split()[1].endswith(f":{port:04X}") and r.split()[3] == "0A" for r in rows)


@contextlib.contextmanager
def stream_server(clip: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """FFmpeg serving clip in a loop, in real time, as MPEG-TS over TCP on 127.0.0.1 to one client: yields its URL and
    the server process (kill it, or SIGSTOP it, to lose the stream); killed at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([FFMPEG, "-v", "quiet", "-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy",
                               "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1"], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not _listening(port) and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _listening(port), "the FFmpeg stream server did not start listening"
        yield f"tcp://127.0.0.1:{port}", server
    finally:
        server.kill()  # also a stopped (SIGSTOP) one
        server.wait()


# --- picture and sound in sync --------------------------------------------------------------------------------------

# a sweeping tone, so that the sound can be recognised (correlated), and at BEEP_S a loud 1 kHz beep
TONE = "0.2*sin(2*PI*(300+200*t)*t)+if(between(t,{at},{at}+0.2),0.7*sin(2*PI*1000*t),0)"


def flash_and_beep(path: Path, at_s: float = 1.0, seconds: float = 2.0, fps: int = 25, keep: str | None = None,
                   size: tuple[int, int] = (160, 90)) -> Path:
    """A clip of the moving test pattern that flashes white for 60 ms at at_s, the same instant its sound beeps.
    keep: an FFmpeg select expression that drops frames and keeps the others' time stamps (variable frame rate)."""
    picture = (f"testsrc2=size={size[0]}x{size[1]}:rate={fps}:duration={seconds},"
               f"drawbox=c=white:t=fill:enable='between(t,{at_s},{at_s + 0.059})'")
    vfr = []
    if keep:
        picture += f",select='{keep}'"
        vfr = ["-fps_mode", "vfr"]
    ffmpeg("-f", "lavfi", "-i", picture, "-f", "lavfi", "-i", f"aevalsrc='{TONE.format(at=at_s)}':s=44100:d={seconds}",
           *vfr, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", path)
    return path


def frame_times(path: Path) -> list[tuple[float, float]]:
    """(time stamp on the file's timeline, mean luma) of every frame, as FFmpeg decodes them."""
    text = ffmpeg("-i", path, "-map", "0:v:0", "-vf", "showinfo", "-f", "null", "-")
    return [(float(t), float(y)) for t, y in re.findall(r"pts_time:(-?[\d.]+).*?mean:\[(\d+)", text)]


def flash_s(path: Path) -> float:
    """When the picture first turns bright (a white flash over the test pattern)."""
    return next(t for t, luma in frame_times(path) if luma > 200)


def flashes_s(path: Path) -> list[float]:
    """When the picture turns bright, every time (a frame after a dark one), on the file's timeline."""
    times = frame_times(path)
    return [t for (_, before), (t, luma) in zip([(0.0, 0.0), *times[:-1]], times, strict=True) if luma > 200 >= before]


def beeps_s(samples: np.ndarray, rate: int = 16000) -> list[float]:
    """When each beep starts: a loud sample after at least 0.3 s without one."""
    loud = np.flatnonzero(np.abs(samples) > 0.5)
    return [float(i) / rate for i, gap in zip(loud, np.diff(loud, prepend=-rate), strict=True) if gap > 0.3 * rate]


def joined_ts(parts: list[Path], dst: Path, starts_s: list[float] | None = None) -> Path:
    """The parts remuxed to MPEG-TS and joined byte by byte (`cat a.ts b.ts`), as recordings of a camcorder, a
    capture card or HLS come: each part's clock starts again at the same time (or at starts_s[i], its own offset:
    a jump), and its picture size may differ."""
    data = b""
    for i, part in enumerate(parts):
        ts = dst.with_name(f"{dst.stem}.part{i}.ts")
        offset = ["-output_ts_offset", str(starts_s[i])] if starts_s else []
        ffmpeg("-i", part, "-c", "copy", *offset, "-f", "mpegts", ts)
        data += ts.read_bytes()
        ts.unlink()
    dst.write_bytes(data)
    return dst


def ffmpeg_count(path: Path, fps: float | None = None) -> int:
    """Video frames FFmpeg's command line decodes from path (`ffmpeg -i IN -f null -`), or puts on a constant rate
    of fps (`-fps_mode cfr -r FPS`)."""
    rate = ["-fps_mode", "cfr", "-r", str(fps)] if fps else []
    return int(re.findall(r"frame= *(\d+)", ffmpeg("-i", path, "-map", "0:v:0", *rate, "-f", "null", "-"))[-1])


def sound(path: Path, rate: int = 16000) -> np.ndarray:
    """The first audio track as mono float samples on the file's timeline (silence before a late start, encoder
    delay trimmed)."""
    raw = subprocess.run([FFMPEG, "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0",
                          "-af", "aresample=first_pts=0", "-ac", "1", "-ar", str(rate), "-f", "s16le", "-"],
                         capture_output=True, check=True, timeout=120).stdout
    return np.frombuffer(raw, np.int16).astype(np.float32) / 32768


def beep_s(samples: np.ndarray, rate: int = 16000) -> float:
    """When the beep starts: the first sample louder than the tone under it can be."""
    return float(np.argmax(np.abs(samples) > 0.5)) / rate


def _pts(b: bytes) -> int:
    return ((b[0] >> 1) & 7) << 30 | (b[1] << 7 | b[2] >> 1) << 15 | (b[3] << 7 | b[4] >> 1)


def _pts_bytes(value: int, prefix: int) -> bytes:
    v = value & ((1 << 33) - 1)
    return bytes([prefix << 4 | (v >> 30 & 7) << 1 | 1, v >> 22 & 0xFF, (v >> 15 & 0x7F) << 1 | 1, v >> 7 & 0xFF,
                  (v & 0x7F) << 1 | 1])


def damaged_pts(src_ts: Path, dst: Path, index: int, jump_s: float) -> Path:
    """src_ts with the presentation time of its index-th video PES packet moved by jump_s, its decode time left
    alone: one damaged stamp, as a bit error in a broadcast or a camera's capture leaves it (the transport stream's
    own discontinuity handling looks at decode times, so FFmpeg passes it on)."""
    data = bytearray(src_ts.read_bytes())
    at, found = 0, []
    while (at := data.find(b"\x00\x00\x01\xe0", at)) >= 0:  # a video PES header: H.264 never has this start code
        if data[at + 7] >> 6 == 3:  # carries PTS and DTS
            found.append(at + 9)
        at += 4
    at = found[index]
    data[at:at + 5] = _pts_bytes(_pts(data[at:at + 5]) + round(jump_s * 90000), data[at] >> 4)
    dst.write_bytes(data)
    return dst


def damaged_clusters(src_mkv: Path, dst: Path, first: int, jump_s: float) -> Path:
    """src_mkv (clusters of 4-byte time stamps in ms, as a clock far from 0 gives them) with every cluster's time
    from the first-th on moved by jump_s: a clock that jumps and stays there, which Matroska's demuxer passes on as
    it is. Its Duration (an end time in FFmpeg's muxer) becomes the length, as a recorder that starts at 0 writes."""
    data = bytearray(src_mkv.read_bytes())
    at, n, start = 0, 0, None
    while (at := data.find(b"\x1f\x43\xb6\x75", at)) >= 0:
        stamp = data.find(b"\xe7\x84", at, at + 16) + 2  # the Timestamp element, 4 bytes long
        value = int.from_bytes(data[stamp:stamp + 4], "big")
        start = value if start is None else start
        if n >= first:
            data[stamp:stamp + 4] = (value + round(jump_s * 1000)).to_bytes(4, "big")
        at, n = at + 4, n + 1
    duration = data.find(b"\x44\x89\x88") + 3  # an 8-byte float, in ms
    data[duration:duration + 8] = struct.pack(">d", struct.unpack(">d", data[duration:duration + 8])[0] - start)
    if n <= first:
        raise RuntimeError(f"{src_mkv} has {n} clusters, none after cluster {first}")
    dst.write_bytes(data)
    return dst
