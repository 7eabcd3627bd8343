"""Video files: an OpenCV frame source, an FFmpeg sink that keeps the audio, and the threaded convert loop."""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from emojicam.atomic import hidden_temp, remove_temp, write_error
from emojicam.capture import is_url, open_source
from emojicam.errors import EmojicamError, warn
from emojicam.progress import progress_bar

OUT_EXTS = (".mp4", ".webm", ".gif")
OS_REASONS = tuple(os.strerror(code) for code in sorted(errno.errorcode))  # how FFmpeg words them too
_DONE = object()


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str | None:
    """The FFmpeg binary imageio-ffmpeg finds (honours IMAGEIO_FFMPEG_EXE), or None if there is none that runs."""
    import imageio_ffmpeg

    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None
    return shutil.which(exe)


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
    stretch), and time-stamp jumps joined end to end (a clock that restarts, recordings joined into one file)."""

    written: int = 0
    decoded: int = 0
    repeated: int = 0
    dropped: int = 0
    jumps: int = 0

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


class VideoFile:
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
        each the first frame's size: a later size change is scaled into it, letterboxed where its shape differs
        (FFmpeg sets its filters up again then, so the first frame's time is a number here, not STARTPTS)."""
        w, h = self.size
        rate = Fraction(self.fps).limit_denominator(1001)
        fit = f"setpts=PTS-({self.start_s:.6f})/TB,scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:-1:-1"
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
        return Retiming(written, written - repeated + dropped, repeated, dropped,
                        len(re.findall(r"timestamp discontinuity", text)))

    def close(self) -> None:
        self._capture.release()
        if self._decoder is not None:
            self._decoder.kill()  # stopped early: FFmpeg need not decode the rest
            self._decoder.wait()
            self._decoder.stdout.close()
            self._stderr.close()

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


def check_output(path: str | Path) -> Path:
    """The output path, if it names a video file we can write in an existing folder."""
    path = Path(path)
    if path.suffix.lower() not in OUT_EXTS:
        raise EmojicamError(f"output: expected a video file ending {', '.join(OUT_EXTS)}, got {path}")
    if not path.parent.is_dir() or path.is_dir():
        raise EmojicamError(f"output: expected a file name in an existing folder, got {path}")
    return path


class VideoWriter:
    """Sink for BGR uint8 frames: .mp4 (H.264), .webm (VP9 + Opus) or .gif through FFmpeg, keeping the audio of
    `audio_from` from `audio_start_s` on (where its first video frame is); written to a hidden temp file beside
    `path` and renamed on a clean close."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], audio_from: Path | None = None,
                 audio_start_s: float = 0.0):
        self.path, self.fps, self.size = check_output(path), float(fps), (int(size[0]), int(size[1]))
        ext = self.path.suffix.lower()
        if not (0 < self.fps <= 1000 and min(self.size) > 0):
            raise EmojicamError(f"output: expected fps in (0, 1000] and a positive size, got {fps} fps, {size}")
        # yuv420p needs even sides: pad one black pixel on the right/bottom rather than crop a tile's edge away
        w, h = self.size
        self.frame_size = (w + w % 2, h + h % 2) if ext != ".gif" else self.size
        self._exe = ffmpeg_exe()
        self._tmp = hidden_temp(self.path)
        # with audio the frames go to a video-only file first, and close() adds the audio cut to exactly their
        # length: FFmpeg's -shortest overshoots by up to half a second when frames come slower than real time
        keep_audio = audio_from is not None and ext != ".gif" and self._exe is not None
        self._audio_from = Path(audio_from).absolute() if keep_audio else None
        self._audio_start_s = max(0.0, audio_start_s)
        self._encoded = hidden_temp(self.path, "video") if keep_audio else self._tmp
        self.frames = 0
        self._proc: subprocess.Popen | None = None
        self._cv_writer: cv2.VideoWriter | None = None
        self._error: BaseException | None = None
        self._closed = False
        if self._exe is not None:
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the writer)
            # own session: Ctrl-C reaches only us, and we decide whether FFmpeg finishes or dies
            self._proc = subprocess.Popen(self._encode_command(self._exe, ext), stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=self._stderr, start_new_session=True)
        elif ext == ".mp4":
            warn("FFmpeg not found (imageio-ffmpeg): writing MPEG-4 Part 2 (mp4v) through OpenCV, without audio")
            self._cv_writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                              self.frame_size)
            if not self._cv_writer.isOpened():
                raise EmojicamError(f"output: expected OpenCV to open an mp4v writer, got a failure for {self.path}")
        else:
            raise EmojicamError(f"output: expected FFmpeg (imageio-ffmpeg) to write {ext}, got none; write .mp4")
        # writing a frame into the pipe blocks while FFmpeg encodes: a thread takes that wait off the caller
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._pump, name="video-writer", daemon=True)
        self._thread.start()

    def _encode_command(self, exe: str, ext: str) -> list[str]:
        rate = Fraction(self.fps).limit_denominator(1001)  # 29.97002997 -> 30000/1001
        cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "{}x{}".format(*self.frame_size), "-framerate", str(rate),
               "-i", "-"]
        if ext == ".mp4":
            cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart"]
        elif ext == ".webm":
            cmd += ["-c:v", "libvpx-vp9", "-crf", "32", "-b:v", "0", "-deadline", "realtime", "-cpu-used", "8",
                    "-row-mt", "1", "-pix_fmt", "yuv420p"]
        else:  # a palette per frame: streams (no whole-clip buffering) and suits busy emoji frames
            cmd += ["-vf", "split[a][b];[a]palettegen=stats_mode=single[p];[b][p]paletteuse=new=1", "-loop", "0"]
        return [*cmd, str(self._encoded)]

    def _add_audio(self) -> None:
        """Copy the encoded frames and add audio_from's first audio track (if any) from audio_start_s on, padded
        with silence or cut to the frames' exact length."""
        seconds = f"{self.frames / self.fps:.6f}"
        audio = ["-c:a", "aac", "-b:a", "160k", "-movflags", "+faststart"] if self.path.suffix.lower() == ".mp4" \
            else ["-c:a", "libopus", "-b:a", "128k"]
        skip = ["-ss", f"{self._audio_start_s:.6f}"] if self._audio_start_s > 0 else []  # sound before frame 1
        done = subprocess.run([self._exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                               "-i", str(self._encoded), *skip, "-i", str(self._audio_from),
                               "-map", "0:v", "-map", "1:a:0?", "-c:v", "copy",
                               "-af", "apad", "-t", seconds, *audio, str(self._tmp)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
                              start_new_session=True)
        if done.returncode == 0:
            return
        if self._audio_readable():  # then it was the writing that failed (disk full, folder gone, ...)
            self._fail(done.returncode)
        # the source's sound is what failed: keep the emoji frames, which took long to make, and say what is missing
        warn(f"{self.path.name}: could not add the audio of {self._audio_from.name} "
             f"({self._ffmpeg_error(done.returncode)}); wrote the video without sound")
        os.replace(self._encoded, self._tmp)

    def _audio_readable(self) -> bool:
        """Whether FFmpeg decodes the first second of audio_from's sound: tells a bad source from a failed write."""
        return subprocess.run([self._exe, "-v", "quiet", "-nostdin", "-i", str(self._audio_from), "-map", "0:a:0",
                               "-t", "1", "-f", "null", "-"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True).returncode == 0

    def _pump(self) -> None:
        try:
            while (frame := self._queue.get()) is not _DONE:
                if self._proc is not None:
                    self._proc.stdin.write(frame.data)
                else:
                    self._cv_writer.write(frame)
        except BaseException as e:  # a dead FFmpeg shows up here as a broken pipe; close() reports it
            self._error = e
            while self._queue.get() is not _DONE:  # keep draining so the caller never blocks on a full queue
                pass

    def write(self, frame: np.ndarray) -> None:
        """Queue one BGR uint8 frame; frames of another size are resized to the writer's size."""
        if self._closed:
            raise EmojicamError(f"output: expected an open writer, got a closed one for {self.path}")
        if self._error is not None:
            self._fail()
        w, h = self.size
        if frame.shape[:2] != (h, w):
            frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        if self.frame_size != self.size:
            frame = cv2.copyMakeBorder(frame, 0, self.frame_size[1] - h, 0, self.frame_size[0] - w,
                                       cv2.BORDER_CONSTANT)
        self._queue.put(np.ascontiguousarray(frame, dtype=np.uint8))
        self.frames += 1

    def _ffmpeg_error(self, returncode: int | None) -> str:
        """FFmpeg's first error line (the cause; later lines are consequences), without its "[x @ 0x..]" tags and
        with the output's name for our temporary ones; or how it ended."""
        self._stderr.seek(0)
        lines = [s.strip() for s in self._stderr.read().decode(errors="replace").splitlines() if s.strip()]
        self._stderr.seek(0, os.SEEK_END)
        if lines:
            line = re.sub(r"^(\[[^\]]*\] )+", "", lines[0])
            # the operating system's reason (disk full, ...) may come on a later line: "Error writing trailer: ..."
            reasons = [r for r in OS_REASONS if any(later.endswith(f": {r}") for later in lines)]
            if reasons and not any(r in line for r in OS_REASONS):
                line += f": {reasons[0]}"
            return line.replace(str(self._encoded), str(self.path)).replace(str(self._tmp), str(self.path))
        if returncode is not None and returncode < 0:  # a file size limit (ulimit -f) ends FFmpeg with SIGXFSZ
            why = f": {os.strerror(errno.EFBIG)}" if returncode == -getattr(signal, "SIGXFSZ", 0) else ""
            return f"FFmpeg was stopped by {signal.Signals(-returncode).name}{why}"
        return f"exit status {returncode}"

    def _fail(self, returncode: int | None = None) -> None:
        detail = repr(self._error)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)  # a broken pipe can come before FFmpeg has finished saying why
            detail = self._ffmpeg_error(self._proc.returncode if returncode is None else returncode)
        self.abort()
        raise EmojicamError(f"output: expected FFmpeg to write {self.path}, got an error: {detail}")

    def close(self) -> None:
        """Finish encoding and move the finished file to `path`; raises EmojicamError (and keeps nothing) on failure."""
        if self._closed:
            return
        try:
            self._finish()
        except OSError as e:  # the folder was removed or made read-only while we wrote, ...
            self.abort()
            raise write_error(self.path, e) from None
        except BaseException:  # also Ctrl-C while FFmpeg finishes: no temp file stays behind
            self.abort()
            raise

    def _finish(self) -> None:
        self._queue.put(_DONE)
        self._thread.join()
        if self._error is not None:
            self._fail()
        if self._proc is not None:
            with contextlib.suppress(BrokenPipeError):  # FFmpeg gone: its exit status says why
                self._proc.stdin.close()
            if self._proc.wait() != 0:
                self._fail()
            if self._audio_from is not None:
                if not self._tmp.parent.is_dir():  # removed while we wrote: FFmpeg would call our file its input
                    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
                self._add_audio()
                self._encoded.unlink(missing_ok=True)
            self._stderr.close()
        else:
            self._cv_writer.release()
        os.replace(self._tmp, self.path)
        self._closed = True

    def abort(self) -> None:
        """Stop at once: kill FFmpeg and delete the temp file; `path` is left untouched."""
        if self._closed:
            return
        self._closed = True
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._stderr.close()
        with self._queue.mutex:
            self._queue.queue.clear()
            self._queue.not_full.notify_all()
        self._queue.put(_DONE)
        self._thread.join(timeout=5)
        if self._cv_writer is not None:
            self._cv_writer.release()
        remove_temp(self._tmp)
        remove_temp(self._encoded)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def prefetch(frames: Iterable[np.ndarray], depth: int = 4) -> Iterator[np.ndarray]:
    """Iterate `frames` in a thread, `depth` ahead of the caller (OpenCV decodes without the GIL)."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():  # the consumer may be gone: never block on a full buffer forever
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def run() -> None:
        try:
            for frame in frames:
                if not put(frame):
                    return
            put(_DONE)
        except BaseException as e:  # re-raised in the consumer's thread
            put(e)

    thread = threading.Thread(target=run, name="video-decoder", daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


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


@dataclass(frozen=True)
class ConvertStats:
    """What one conversion did: frames written at the output's frame rate, the count the input announced, wall time,
    how the frames were put on that rate, per-stage median ms, and the share of cells that kept their emoji without
    a forward pass (repeated from the frame before, or still: see pick)."""

    frames: int
    frame_rate: float
    expected_frames: int
    seconds: float
    has_audio: bool
    retiming: Retiming
    stage_ms: dict[str, float] = field(default_factory=dict)
    skipped: float = 0.0

    @property
    def fps(self) -> float:
        """Conversion speed: frames written per second of wall time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def runs(frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, int]]:
    """(frame, how many times in a row it comes): a repeat (to keep a constant rate, or a still scene) is then
    emojified and composited once and written again."""
    before, count = None, 0
    for frame in frames:
        if before is not None and (frame is before or (np.array_equal(frame[::61], before[::61])  # most differ here
                                                        and np.array_equal(frame, before))):
            count += 1
            continue
        if before is not None:
            yield before, count
        before, count = frame, 1
    if before is not None:
        yield before, count


def write_rendered(out: VideoWriter, rendered, copies: int = 1) -> dict[str, float]:
    """Write a rendered EmojiFrame's picture `copies` times; its stage times are returned."""
    for _ in range(copies):
        out.write(rendered.image)
    return rendered.stage_ms


def convert_video(emojifier, src: Path, dst: Path, quiet: bool = False) -> ConvertStats:
    """Emojify every frame of src (a file or stream URL) into dst at the source frame rate, keeping the audio in
    sync; decode, inference and encoding overlap (decoder thread, main thread, FFmpeg process)."""
    dst = Path(dst)
    emojifier.reset()
    start = time.perf_counter()
    timings: dict[str, list[float]] = {"decode_wait": [], "emojify": [], "write": []}
    engine_ms: list[dict[str, float]] = []  # one frame's stages, from the calls that made it
    skipped: list[float] = []
    with open_video(src) as video:
        w, h = video.size
        grid = emojifier.grid_for((h, w, 3))
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(VideoWriter(dst, video.fps, grid.output_size,
                                                  audio_from=src if video.has_audio else None,
                                                  audio_start_s=video.start_s))
            bar = progress_bar(video.frame_count or None, video.name, "frame", quiet)
            stack.callback(bar.close)
            frames = prefetch(runs(video))
            stack.callback(frames.close)  # stops the decoder thread, also on errors and Ctrl-C
            # frame t is composited (numpy and OpenCV, without the GIL) while frame t+1 goes through the network
            compositor = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="video-compositor"))
            composited, repeats = None, 0  # the frame before, rendering, and how many times it comes
            t0 = time.perf_counter()
            for frame, copies in frames:
                t1 = time.perf_counter()
                if frame.shape[:2] != (h, w):  # OpenCV's frames after a mid-stream size change: the first's grid
                    frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
                picked = emojifier.pick(frame, grid.cols)
                t2 = time.perf_counter()
                if composited is not None:
                    engine_ms.append(write_rendered(out, composited.result(), repeats))
                composited, repeats = compositor.submit(emojifier.render, picked, frame), copies
                t3 = time.perf_counter()
                timings["decode_wait"].append((t1 - t0) * 1e3)
                timings["emojify"].append((t2 - t1) * 1e3)
                timings["write"].append((t3 - t2) * 1e3)
                skipped.append(picked.skipped)
                bar.update(copies)
                t0 = time.perf_counter()
            if composited is not None:
                engine_ms.append(write_rendered(out, composited.result(), repeats))
            retiming = video.retiming()
    # the count a file announces comes from its duration, which means nothing once its time stamps jump
    got = max(retiming.decoded, retiming.written)
    if video.frame_count and not retiming.jumps and got < video.frame_count - max(2, video.frame_count // 50):
        warn(f"{video.name}: converted {retiming.decoded} of {video.frame_count} expected frames (truncated or "
             f"corrupt input?)")
    elif is_url(src) and not video.frame_count:  # a live stream ends when its server stops or the link drops
        warn(f"{video.name}: the stream stopped sending frames after {retiming.decoded} "
             f"({retiming.decoded / video.fps:.1f} s); kept them all in {dst}")
    stage_ms = {k: statistics.median(v) for k, v in timings.items() if v}
    stage_ms |= {k: statistics.median(d[k] for d in engine_ms) for k in (engine_ms[0] if engine_ms else {})}
    return ConvertStats(out.frames, out.fps, video.frame_count, time.perf_counter() - start, video.has_audio, retiming,
                        stage_ms, statistics.fmean(skipped) if skipped else 0.0)
