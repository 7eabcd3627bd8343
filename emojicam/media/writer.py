"""Writing video: an FFmpeg sink for emoji frames (.mp4 H.264, .webm VP9, .gif) that keeps the source's sound in sync,
written beside the output under a hidden name and renamed when finished."""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from emojicam.atomic import hidden_temp, remove_temp, write_error
from emojicam.errors import EmojicamError, warn
from emojicam.media.ffmpeg import X264, ffmpeg_exe

OUT_EXTS = (".mp4", ".webm", ".gif")
OS_REASONS = tuple(os.strerror(code) for code in sorted(errno.errorcode))  # how FFmpeg words them too
_DONE = object()


def check_output(path: str | Path) -> Path:
    """The output path, if it names a video file we can write in an existing folder."""
    path = Path(path)
    if path.suffix.lower() not in OUT_EXTS:
        raise EmojicamError(f"output: expected a video file ending {', '.join(OUT_EXTS)}, got {path}")
    if not path.parent.is_dir() or path.is_dir():
        raise EmojicamError(f"output: expected a file name in an existing folder, got {path}")
    return path


def encode_command(exe: str, ext: str, frame_size: tuple[int, int], fps: float, out: Path) -> list[str]:
    """FFmpeg reading raw BGR frames of frame_size on stdin at fps and encoding them into out by its kind (ext)."""
    rate = Fraction(fps).limit_denominator(1001)  # 29.97002997 -> 30000/1001
    cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "{}x{}".format(*frame_size), "-framerate", str(rate), "-i", "-"]
    if ext == ".mp4":
        cmd += ["-c:v", "libx264", *X264, "-pix_fmt", "yuv420p", "-movflags", "+faststart"]
    elif ext == ".webm":
        cmd += ["-c:v", "libvpx-vp9", "-crf", "32", "-b:v", "0", "-deadline", "realtime", "-cpu-used", "8",
                "-row-mt", "1", "-pix_fmt", "yuv420p"]
    else:  # a palette per frame: streams (no whole-clip buffering) and suits busy emoji frames
        cmd += ["-vf", "split[a][b];[a]palettegen=stats_mode=single[p];[b][p]paletteuse=new=1", "-loop", "0"]
    return [*cmd, str(out)]


def first_error(stderr: bytes, returncode: int | None) -> str:
    """FFmpeg's first error line (the cause; later lines are consequences), without its "[x @ 0x..]" tags, with
    the operating system's reason where only a later line gives it; or how FFmpeg ended."""
    lines = [s.strip() for s in stderr.decode(errors="replace").splitlines() if s.strip()]
    if lines:
        line = re.sub(r"^(\[[^\]]*\] )+", "", lines[0])
        # the operating system's reason (disk full, ...) may come on a later line: "Error writing trailer: ..."
        reasons = [r for r in OS_REASONS if any(later.endswith(f": {r}") for later in lines)]
        if reasons and not any(r in line for r in OS_REASONS):
            line += f": {reasons[0]}"
        return line
    if returncode is not None and returncode < 0:  # a file size limit (ulimit -f) ends FFmpeg with SIGXFSZ
        why = f": {os.strerror(errno.EFBIG)}" if returncode == -getattr(signal, "SIGXFSZ", 0) else ""
        return f"FFmpeg was stopped by {signal.Signals(-returncode).name}{why}"
    return f"exit status {returncode}"


def mux_command(exe: str, video: Path, sound: Path, start_s: float, seconds: float, by_samples: bool,
                out: Path) -> list[str]:
    """FFmpeg copying video's frames into out with sound's first audio track (if any) from start_s on (its sound
    before the first frame skipped), padded with silence or cut to exactly `seconds`; by_samples: the sound laid out
    by its samples, end to end, not by its (damaged) time stamps."""
    audio = ["-c:a", "aac", "-b:a", "160k", "-movflags", "+faststart"] if out.suffix.lower() == ".mp4" \
        else ["-c:a", "libopus", "-b:a", "128k"]
    skip = ["-ss", f"{start_s:.6f}"] if start_s > 0 else []
    return [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(video), *skip, "-i", str(sound),
            "-map", "0:v", "-map", "1:a:0?", "-c:v", "copy", "-af", f"{'asetpts=N/SR/TB,' * by_samples}apad",
            "-t", f"{seconds:.6f}", *audio, str(out)]


def audio_readable(exe: str, source: Path) -> bool:
    """Whether FFmpeg decodes the first second of source's sound: tells a bad source from a failed write."""
    return subprocess.run([exe, "-v", "quiet", "-nostdin", "-i", str(source), "-map", "0:a:0", "-t", "1", "-f",
                           "null", "-"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True).returncode == 0


def fit_frame(frame: np.ndarray, size: tuple[int, int], frame_size: tuple[int, int]) -> np.ndarray:
    """A BGR uint8 frame at size (resized if it is not), padded black on the right and bottom to frame_size."""
    w, h = size
    if frame.shape[:2] != (h, w):
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    if frame_size != size:
        frame = cv2.copyMakeBorder(frame, 0, frame_size[1] - h, 0, frame_size[0] - w, cv2.BORDER_CONSTANT)
    return np.ascontiguousarray(frame, dtype=np.uint8)


class FramePump:
    """Frames handed to `write` from a thread of their own: writing into FFmpeg's pipe blocks while it encodes, and
    the caller should not wait for that. The first error (a dead FFmpeg shows up as a broken pipe) is kept in
    `error` for the writer to report; the queue keeps draining after it, so put() never blocks for good."""

    def __init__(self, write: Callable[[np.ndarray], object]):
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._run, args=(write,), name="video-writer", daemon=True)
        self._thread.start()

    def put(self, frame: np.ndarray) -> None:
        self._queue.put(frame)

    def finish(self, drop: bool = False) -> None:
        """Write what is queued (drop: throw it away) and end the thread."""
        if drop:
            with self._queue.mutex:
                self._queue.queue.clear()
                self._queue.not_full.notify_all()
        self._queue.put(_DONE)
        self._thread.join(timeout=5 if drop else None)

    def _run(self, write: Callable[[np.ndarray], object]) -> None:
        try:
            while (frame := self._queue.get()) is not _DONE:
                write(frame)
        except BaseException as e:
            self.error = e
            while self._queue.get() is not _DONE:
                pass


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
        self._sound_by_samples = False
        self._encoded = hidden_temp(self.path, "video") if keep_audio else self._tmp
        self.frames = 0
        self._proc: subprocess.Popen | None = None
        self._cv_writer: cv2.VideoWriter | None = None
        self._closed = False
        if self._exe is not None:
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the writer)
            # own session: Ctrl-C reaches only us, and we decide whether FFmpeg finishes or dies
            self._proc = subprocess.Popen(encode_command(self._exe, ext, self.frame_size, self.fps, self._encoded),
                                          stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=self._stderr, start_new_session=True)
        elif ext == ".mp4":
            warn("FFmpeg not found (imageio-ffmpeg): writing MPEG-4 Part 2 (mp4v) through OpenCV, without audio")
            self._cv_writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                              self.frame_size)
            if not self._cv_writer.isOpened():
                raise EmojicamError(f"output: expected OpenCV to open an mp4v writer, got a failure for {self.path}")
        else:
            raise EmojicamError(f"output: expected FFmpeg (imageio-ffmpeg) to write {ext}, got none; write .mp4")
        self._pump = FramePump((lambda frame: self._proc.stdin.write(frame.data)) if self._proc is not None
                               else self._cv_writer.write)

    def sound_by_samples(self) -> None:
        """Lay the source's sound out by its samples, end to end, not by its time stamps: the source's clock is
        damaged (a jump of hours back makes FFmpeg write the sound's hours again, slowly)."""
        self._sound_by_samples = True

    def _add_audio(self) -> None:
        """Copy the encoded frames and add audio_from's first audio track (if any) from audio_start_s on, padded
        with silence or cut to the frames' exact length."""
        cmd = mux_command(self._exe, self._encoded, self._audio_from, self._audio_start_s, self.frames / self.fps,
                          self._sound_by_samples, self._tmp)
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
                              start_new_session=True)
        if done.returncode == 0:
            return
        if audio_readable(self._exe, self._audio_from):  # then the writing failed (disk full, folder gone, ...)
            self._fail(done.returncode)
        # the source's sound is what failed: keep the emoji frames, which took long to make, and say what is missing
        warn(f"{self.path.name}: could not add the audio of {self._audio_from.name} "
             f"({self._ffmpeg_error(done.returncode)}); wrote the video without sound")
        os.replace(self._encoded, self._tmp)

    def write(self, frame: np.ndarray) -> None:
        """Queue one BGR uint8 frame; frames of another size are resized to the writer's size."""
        if self._closed:
            raise EmojicamError(f"output: expected an open writer, got a closed one for {self.path}")
        if self._pump.error is not None:
            self._fail()
        self._pump.put(fit_frame(frame, self.size, self.frame_size))
        self.frames += 1

    def _ffmpeg_error(self, returncode: int | None) -> str:
        """FFmpeg's first error (see first_error), with the output's name for our temporary ones."""
        self._stderr.seek(0)
        line = first_error(self._stderr.read(), returncode)
        self._stderr.seek(0, os.SEEK_END)
        return line.replace(str(self._encoded), str(self.path)).replace(str(self._tmp), str(self.path))

    def _fail(self, returncode: int | None = None) -> None:
        detail = repr(self._pump.error)
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
        self._pump.finish()
        if self._pump.error is not None:
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
        self._pump.finish(drop=True)
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
