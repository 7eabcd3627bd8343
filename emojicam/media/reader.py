"""Reading video: what FFmpeg says a file holds (probe), and a file's or stream's frames on a constant frame rate
(VideoFile): a file decoded by FFmpeg itself, a network stream (or a file where no FFmpeg runs) by OpenCV and
retimed by its frames' time stamps (FrameClock)."""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from emojicam.closing import Closing
from emojicam.errors import EmojicamError, warn
from emojicam.live.capture import is_url, open_source
from emojicam.media.ffmpeg import ffmpeg_exe


@dataclass(frozen=True)
class StreamInfo:
    """What `ffmpeg -i` says about a file: its container (demuxer), video and audio present, duration, video fps,
    where the first video frame sits on the file's timeline (a picture may start after its sound); error = why it
    cannot be read."""

    container: str = ""
    has_video: bool = False
    has_audio: bool = False
    duration_s: float = 0.0
    fps: float = 0.0
    video_start_s: float = 0.0
    error: str = ""


def probe(path: Path) -> StreamInfo | None:
    """Stream facts from FFmpeg's stderr (and its first decoded video frame's time stamp), or None without FFmpeg."""
    exe = ffmpeg_exe()
    if exe is None:
        return None
    text = subprocess.run([exe, "-hide_banner", "-nostdin", "-i", str(path.absolute()), "-map", "0:v:0",
                           "-frames:v", "1", "-vf", "showinfo", "-f", "null", "-"], capture_output=True, text=True,
                          errors="replace", timeout=60).stderr
    if "Input #0" not in text:
        reasons = [m for m in re.findall(r"^\[[^\]]*\] (.+)$", text, re.M) if "misdetection" not in m]
        return StreamInfo(error=(reasons or [text.strip().splitlines()[-1] if text.strip() else "unreadable"])[0])
    duration = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", text)
    seconds = int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3]) if duration else 0.0
    fps = re.search(r"Stream #\S+.*?: Video: .*?([\d.]+) (?:fps|tbr)", text)
    container = re.search(r"^Input #0, ([^,]+),", text, re.M)
    start = re.search(r"\bn: *0 pts: *\S+ +pts_time:(-?[\d.]+)", text)
    return StreamInfo(container=container[1] if container else "",
                      has_video=re.search(r"Stream #\S+.*?: Video: ", text) is not None,
                      has_audio=re.search(r"Stream #\S+.*?: Audio: ", text) is not None, duration_s=seconds,
                      fps=float(fps[1]) if fps else 0.0, video_start_s=float(start[1]) if start else 0.0)


def is_still_image(info: StreamInfo) -> bool:
    """FFmpeg reads single images through its image demuxers (image2, png_pipe, jpeg_pipe, webp_pipe, ...)."""
    return info.container == "image2" or info.container.endswith("_pipe")


@dataclass(frozen=True)
class Retiming:
    """How a video's decoded frames were put on the output's constant frame rate: frames written, frames decoded,
    output frames that repeat the frame before (to fill a gap or a slower stretch), frames dropped (a faster
    stretch), time-stamp jumps joined end to end (a clock that restarts, recordings joined into one file: as FFmpeg
    joins them), and breaks: steps of a damaged clock too long to be a pause (seconds, either way; and where in the
    output, seconds), taken as one frame each."""

    written: int = 0
    decoded: int = 0
    repeated: int = 0
    dropped: int = 0
    jumps: int = 0
    breaks: tuple[tuple[float, float], ...] = ()

    def note(self, fps: float) -> str:
        """What was repeated, dropped or joined and why, for the closing line; empty when nothing was."""
        said = []
        if self.repeated or self.dropped:
            changed = " and ".join(f"{n} {what}" for n, what in ((self.repeated, "repeated"),
                                                                  (self.dropped, "dropped")) if n)
            said.append(f"{changed} to keep the source's timing at a constant {fps:g} fps (its frames are not "
                        f"evenly spaced: a variable frame rate or a gap)")
        if self.jumps:
            said.append(f"{self.jumps} time-stamp jump{'s' * (self.jumps > 1)} joined end to end (a restarted "
                        f"clock or joined recordings)")
        return "; ".join(said)

    def broken_clock(self) -> str:
        """The warning for a damaged clock, naming its longest step; empty when there was none."""
        if not self.breaks:
            return ""
        step, at = max(self.breaks, key=lambda b: abs(b[0]))
        more = len(self.breaks) - 1
        others = f" ({more} more such jump{'s' * (more > 1)})" if more else ""
        return (f"its time stamps jump {'ahead' if step > 0 else 'back'} by {span(abs(step))} at {at:.2f} s{others}, "
                f"more than a pause in it could last: taken as a damaged clock and joined end to end, not filled with "
                f"copies of the frame before")


def span(seconds: float) -> str:
    """A length of time as people read it: 59.0 s, 12 min 5 s, 10 h 0 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    return f"{minutes} min {seconds % 60:.0f} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def clock_repair(start_s: float, rate: Fraction, limit_s: float) -> str:
    """FFmpeg's setpts expression that puts the first frame at 0 and each later one its source step after the one
    before, except a step longer than limit_s either way: a damaged clock (a pause cannot outlast the file), which
    becomes one frame's step, and is printed at warning level (the step, then where: FFmpeg's print()). Without
    such a step the times are the source's own, so the constant rate fills real gaps as before. FFmpeg sets its
    filters up again at a size change, and the expression starts over there (from the source's own time): a break
    followed later by a size change in one file is repaired only up to that change."""
    step = "(PTS-PREV_INPTS)"
    return (f"if(isnan(PREV_INPTS),PTS-({start_s:.6f})/TB,PREV_OUTPTS+if(gt(abs{step},{limit_s:.3f}/TB),"
            f"1/(({rate})*TB)+0*print({step}*TB,24)+0*print(PREV_OUTPTS*TB,24),{step}))")


class VideoFile(Closing):
    """BGR uint8 frames of a video file or stream URL, upright (rotation metadata applied), put on the constant
    rate `fps` (a frame may be repeated or dropped, see retiming); use as a context manager. A file is decoded by
    FFmpeg itself where there is one, so that it reads every file as FFmpeg does (time-stamp jumps, a size change
    mid-stream); a stream (or a file without FFmpeg) by OpenCV, retimed by FrameClock. frame_count is what the
    file announces, 0 for a live stream."""

    def __init__(self, path: Path | str, capture: cv2.VideoCapture, first: np.ndarray, fps: float, frame_count: int,
                 info: StreamInfo | None):
        self.path, self._capture, self._first = path, capture, first
        self.name = path if is_url(path) else Path(path).name
        self.fps, self.frame_count = fps, frame_count
        self.has_audio = info is not None and info.has_audio
        self.start_s = info.video_start_s if info is not None else 0.0
        self.duration_s = info.duration_s if info is not None else 0.0
        self.size = (first.shape[1], first.shape[0])  # (w, h) as decoded, after rotation
        self._exe = ffmpeg_exe() if info is not None else None
        self._clock = FrameClock(fps)
        self._decoder: subprocess.Popen | None = None
        self._stderr = None
        if self._exe is not None:  # FFmpeg decodes from the start again: OpenCV's part ends here
            self._capture.release()

    def __iter__(self) -> Iterator[np.ndarray]:
        """Every output frame; a repeat is the same array again."""
        if self._exe is not None:
            yield from self._ffmpeg_frames()
            return
        before = None
        for stamp_s, frame in self._timed():
            copies = self._clock.advance(stamp_s)  # of the frame before: its time is known once this one's is
            if before is not None:
                yield from (before,) * copies
            before = frame
        if before is not None:
            yield before

    def _timed(self) -> Iterator[tuple[float, np.ndarray]]:
        """(time stamp in seconds, frame) for every frame OpenCV decodes."""
        first, self._first = self._first, None
        if first is not None:
            yield self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000, first
        while True:
            ok, frame = self._capture.read()
            if not ok or frame is None:
                return
            yield self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000, frame

    def _ffmpeg_frames(self) -> Iterator[np.ndarray]:
        """FFmpeg's frames on the constant rate (-fps_mode cfr) from the first frame on (where the sound is cut too),
        deinterlaced where they are interlaced, each the first frame's size: a later size change is scaled into it,
        letterboxed where its shape differs (FFmpeg sets its filters up again then, so the first frame's time is a
        number here, not STARTPTS). A time stamp that jumps further than the file lasts is a break (clock_repair):
        -fps_mode cfr would fill it with copies, a million for a 10 h jump."""
        w, h = self.size
        rate = Fraction(self.fps).limit_denominator(1001)
        # bwdif deinterlaces the frames flagged interlaced (camcorder .mts, broadcast .ts: combs on every edge that
        # moves otherwise) and passes progressive ones through
        # a pause may last as long as the file (its duration runs to its last stamp, as for the count in open_video)
        limit_s = max(FrameClock.JUMP_S, self.duration_s - self.start_s)
        fit = (f"bwdif=mode=send_frame:deint=interlaced,setpts='{clock_repair(self.start_s, rate, limit_s)}',"
               f"scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:-1:-1")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the video)
        self._decoder = subprocess.Popen(
            [self._exe, "-hide_banner", "-nostdin", "-loglevel", "warning",
             "-i", str(Path(self.path).absolute()), "-map", "0:v:0", "-vf", fit,
             "-fps_mode", "cfr", "-r", str(rate), "-f", "rawvideo", "-pix_fmt", "bgr24",
             "-progress", "pipe:2", "-nostats", "-"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, start_new_session=True)
        with contextlib.suppress(ImportError, AttributeError, OSError):  # Linux: a 720p frame in 3 writes, not 40
            import fcntl  # (0.5 ms a frame less, measured)

            fcntl.fcntl(self._decoder.stdout.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        first = True
        while True:
            frame = np.empty((h, w, 3), np.uint8)
            if self._decoder.stdout.readinto(memoryview(frame).cast("B")) != frame.nbytes:
                break
            yield frame
            first = False
        if first:  # OpenCV decoded a first frame, FFmpeg none: say what FFmpeg says
            self._decoder.wait()
            self._stderr.seek(0)
            said = [line for line in self._stderr.read().decode(errors="replace").splitlines() if "=" not in line]
            raise EmojicamError(f"input: expected frames FFmpeg can decode, got none from {self.path} "
                                f"({said[0] if said else f'exit status {self._decoder.returncode}'})")

    def retiming(self) -> Retiming:
        """How the frames handed out so far were put on the output's rate (read once they are all out)."""
        if self._decoder is None:
            return self._clock.retiming()
        self._decoder.wait()
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace")
        fields = {key: int(value) for key, value in re.findall(r"^(frame|dup_frames|drop_frames)=(\d+)$", text, re.M)}
        written, repeated, dropped = (fields.get(k, 0) for k in ("frame", "dup_frames", "drop_frames"))
        printed = [float(x) for x in re.findall(r"^\[Eval @ [^\]]*\] (-?[\d.]+)$", text, re.M)]  # clock_repair's
        breaks = tuple(zip(printed[0::2], printed[1::2], strict=False))  # (a killed FFmpeg may print half a pair)
        return Retiming(written, written - repeated + dropped, repeated, dropped,
                        len(re.findall(r"timestamp discontinuity", text)), breaks)

    def close(self) -> None:
        self._capture.release()
        if self._decoder is not None:
            self._decoder.kill()  # stopped early: FFmpeg need not decode the rest
            self._decoder.wait()
            self._decoder.stdout.close()
            self._stderr.close()


def open_video(path: str | Path) -> VideoFile:
    """Open a video file (or stream URL) and decode its first frame, or raise EmojicamError saying why it cannot be
    read."""
    if is_url(path):
        return open_stream(str(path))
    path = Path(path)
    if not path.is_file():
        raise EmojicamError(f"input: expected a video file, got {'a folder' if path.is_dir() else 'no file'} at {path}")
    if path.stat().st_size == 0:
        raise EmojicamError(f"input: expected a video, got an empty file {path}")
    info = probe(path)
    if info is not None and info.error:
        raise EmojicamError(f"input: expected a video FFmpeg can read, got {path} ({info.error})")
    capture = cv2.VideoCapture(str(path.absolute()))  # absolute: libav reads "a:b.mp4" as protocol "a"
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # OpenCV 5's default, but phone clips depend on it: be explicit
    ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok or first is None:
        capture.release()
        raise EmojicamError(f"input: expected a video with at least one decodable frame, got none in {path}")
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not 0 < fps <= 1000:
        fps = info.fps if info is not None and 0 < info.fps <= 1000 else 25.0
        warn(f"{path.name}: frame rate unknown, writing {fps:g} fps")
    count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    if info is not None and info.duration_s > 0:  # an edit list (a clip cut without re-encoding) leaves frames in
        timed = round((info.duration_s - info.video_start_s) * fps)  # the file that are never shown: fewer play
        count = min(count, timed) if count else timed
    return VideoFile(path, capture, first, fps, count, info)


def open_stream(url: str) -> VideoFile:
    """A network stream as a VideoFile, opened once (a server may take one client only): no probe, so its sound is
    not kept; its length is known only where the server announces one (a file over HTTP, not a live stream)."""
    capture = open_source(url)
    ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok or first is None:
        capture.release()
        raise EmojicamError(f"input: expected video frames from the stream {url}, got "
                            f"{'none' if capture.isOpened() else 'no connection OpenCV can open'}")
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not 0 < fps <= 1000:
        fps = 25.0
        warn(f"{url}: frame rate unknown, writing {fps:g} fps")
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    return VideoFile(url, capture, first, fps, int(count) if 0 < count < 1e9 else 0, None)


def check_video(path: str | Path) -> None:
    """Raise EmojicamError now if path is not a video with a decodable frame (before the weights load)."""
    open_video(path).close()


class FrameClock:
    """Puts the frames of a variable-frame-rate source on the output's constant rate by their time stamps, so that
    the picture keeps the source's timing and stays with its sound: advance(t) says how many output frames the
    frame before fills (0 when both fall on one output frame, and the later one is shown). A stamp that goes back,
    or jumps ahead by more than JUMP_S, starts a new segment one frame after the last, as FFmpeg treats a transport
    stream's discontinuities; a stamp that repeats (none known) counts as one frame on."""

    JUMP_S = 10.0  # FFmpeg's -dts_delta_threshold

    def __init__(self, fps: float):
        self.fps = fps
        self._origin = self._last = 0.0  # the stamp output frame 0 stands for; the last stamp
        self._at = -1  # the output frame the last frame landed on (-1: none yet)
        self._decoded = self._dropped = self._jumps = 0

    def advance(self, stamp_s: float) -> int:
        self._decoded += 1
        if self._at < 0:
            self._origin, self._last, self._at = stamp_s, stamp_s, 0
            return 0
        at = round((stamp_s - self._origin) * self.fps)
        if stamp_s <= self._last or at > self._at + self.JUMP_S * self.fps:
            self._jumps += stamp_s != self._last
            at = self._at + 1
            self._origin = stamp_s - at / self.fps
        at = max(at, self._at)
        copies, self._at, self._last = at - self._at, at, stamp_s
        self._dropped += copies == 0
        return copies

    def retiming(self) -> Retiming:
        """The frames advanced so far, the last one written once."""
        written = self._at + 1
        return Retiming(written, self._decoded, written - self._decoded + self._dropped, self._dropped, self._jumps)
