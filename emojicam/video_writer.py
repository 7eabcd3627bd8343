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
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from emojicam.atomic import hidden_temp, remove_temp, write_error
from emojicam.errors import EmojicamError, warn
from emojicam.ffmpeg import X264, ffmpeg_exe

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
            cmd += ["-c:v", "libx264", *X264, "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart"]
        elif ext == ".webm":
            cmd += ["-c:v", "libvpx-vp9", "-crf", "32", "-b:v", "0", "-deadline", "realtime", "-cpu-used", "8",
                    "-row-mt", "1", "-pix_fmt", "yuv420p"]
        else:  # a palette per frame: streams (no whole-clip buffering) and suits busy emoji frames
            cmd += ["-vf", "split[a][b];[a]palettegen=stats_mode=single[p];[b][p]paletteuse=new=1", "-loop", "0"]
        return [*cmd, str(self._encoded)]

    def sound_by_samples(self) -> None:
        """Lay the source's sound out by its samples, end to end, not by its time stamps: the source's clock is
        damaged (a jump of hours back makes FFmpeg write the sound's hours again, slowly)."""
        self._sound_by_samples = True

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
                               "-af", f"{'asetpts=N/SR/TB,' * self._sound_by_samples}apad", "-t", seconds, *audio,
                               str(self._tmp)],
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
