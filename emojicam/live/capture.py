"""Live frame sources: a camera, video file or stream read in its own thread, handing over the newest frame.

Cameras and streams are read as fast as they deliver; the loop gets the newest frame and older ones are dropped,
so a slow frame loop never adds latency and nothing queues up. A file is either paced at its own fps (a mirror of
a video plays in real time, dropping frames the loop cannot keep up with) or, with `every_frame=True`, read
lossless: the reader waits until the loop has taken each frame, still decoding the next one while the loop works.
"""

from __future__ import annotations

import glob
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from emojicam.closing import Closing
from emojicam.errors import EmojicamError

STALL_S = 5.0         # a camera or stream that sends nothing for this long has gone away
READ_RETRIES = 5      # cameras fail single reads now and then; this many in a row means it is gone
STALLED = f"no frame for {STALL_S:g} s"


def is_url(source: object) -> bool:
    """A network stream (rtsp://, http://, tcp://, ...) rather than a file or camera."""
    return "://" in str(source)


class LatestFrame:
    """A one-slot mailbox between a reader thread and the frame loop: the newest frame, each handed over once."""

    def __init__(self, lossless: bool = False):
        self.lossless = lossless  # put() waits until the previous frame was taken instead of replacing it
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._id = self._taken = 0
        self.closed = False

    def put(self, frame: np.ndarray) -> bool:
        """Publish a frame, replacing one not yet taken (lossless: wait until it is taken); False once closed."""
        with self._cond:
            if self.lossless:
                self._cond.wait_for(lambda: self._taken == self._id or self.closed)
            if self.closed:
                return False
            self._frame, self._id = frame, self._id + 1
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> tuple[int, np.ndarray] | None:
        """(frame id, frame) for the newest frame not handed over yet; None when closed and empty, or on timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self._id > self._taken or self.closed, timeout)
            if self._id == self._taken:
                return None
            frame, self._frame, self._taken = self._frame, None, self._id
            self._cond.notify_all()
            return self._taken, frame

    def close(self) -> None:
        """Wake everyone; get() still hands over a frame that was published before."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def open_source(target: int | str) -> cv2.VideoCapture:
    """cv2.VideoCapture without OpenCV's multi-line warnings from every backend it tries; a stream's reads give up
    after STALL_S (FFmpeg's own timeout is 30 s)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        if is_url(target):
            return cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, [cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(STALL_S * 1000)])
        return cv2.VideoCapture(target)
    finally:
        cv2.utils.logging.setLogLevel(level)


def _no_camera(index: int) -> EmojicamError:
    if sys.platform.startswith("linux"):
        found = sorted(glob.glob("/dev/video*"))
        have = f"/dev/video* has {', '.join(found)}" if found else "there is no /dev/video* device"
        how = "list cameras with `v4l2-ctl --list-devices` (or `ls /dev/video*`)"
    else:
        have, how = "no other index was tried", "try --camera 1, 2, ... or check the system's camera privacy settings"
    return EmojicamError(f"--camera: expected a camera at index {index}, got none (tried index {index}; {have}); "
                         f"{how}, or give a file or URL with --source")


class Capture(Closing):
    """A camera (index or /dev/video path), video file or stream URL read in its own thread.

    Iterate for frames: the newest one each time, never the same one twice; iteration ends when the source ends,
    then `end_reason` says why and `failed` whether it went away unexpectedly (a camera unplugged, a stall).
    """

    def __init__(self, source: int | str, every_frame: bool = False):
        self.kind = "camera" if isinstance(source, int) or str(source).startswith("/dev/video") else (
            "stream" if is_url(source) else "file")
        self.name = f"camera {source}" if isinstance(source, int) else str(source)
        if self.kind == "file" and not Path(source).is_file():
            what = "a folder" if Path(source).is_dir() else "no file"
            raise EmojicamError(f"--source: expected a video file or stream URL, got {what} at {source}")
        self._cap = open_source(source)
        try:
            ok, first = False, None
            for _ in range(READ_RETRIES if self.kind == "camera" else 1):  # cameras may need a moment to start
                if self._cap.isOpened() and (got := self._cap.read())[0] and got[1] is not None:
                    ok, first = got
                    break
            if not ok:
                if isinstance(source, int) and not self._cap.isOpened():
                    raise _no_camera(source)
                got = "a device that gives no frames (in use by another program?)" if self.kind == "camera" else (
                    "nothing OpenCV can read" if self._cap.isOpened() else "a source OpenCV cannot open")
                flag = "--camera" if isinstance(source, int) else "--source"
                raise EmojicamError(f"{flag}: expected video frames from {self.name}, got {got}")
        except BaseException:
            self._cap.release()
            raise
        if self.kind == "camera":
            self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # hold no stale frames in the driver either
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1 <= fps <= 240 else 30.0  # cameras and streams often report 0 or nonsense
        length = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)  # a live stream has none (OpenCV says 0 or nonsense)
        self._length = length if 0 < length < 1e9 else 0
        self.frame_shape: tuple[int, ...] = first.shape
        self.paced = self.kind == "file" and not every_frame
        self.end_reason, self.failed = "", False
        self._slot = LatestFrame(lossless=every_frame and self.kind == "file")
        self._slot.put(first)
        self._resume = threading.Event()  # set = running; a paced file waits for the loop's first request
        if not self.paced:
            self._resume.set()
        self._thread = threading.Thread(target=self._read, name=f"capture {self.name}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        """Reader thread: read, pace (files), publish; ends by closing the slot with a reason."""
        t0, n, misses = time.perf_counter(), 0, 0
        timed_out_at = -STALL_S  # when a stream's read last gave up waiting (it still hands over what it buffered)
        try:
            while not self._slot.closed:
                if self.paced and not self._resume.is_set():
                    paused_at = time.perf_counter()
                    self._resume.wait()
                    t0 += time.perf_counter() - paused_at  # the file's clock stops while paused
                n += 1
                due = t0 + n / self.fps
                if self.paced and time.perf_counter() > due + 1 / self.fps:
                    if not self._cap.grab():  # late by more than a frame: skip it without decoding
                        return self._end("end of file")
                    continue
                started = time.perf_counter()
                ok, frame = self._cap.read()
                if (now := time.perf_counter()) - started >= STALL_S * 0.9:  # open_source's read timeout
                    timed_out_at = now
                if not ok:
                    misses += 1
                    if self.kind == "camera" and misses < READ_RETRIES:
                        time.sleep(0.05)
                        continue
                    return self._end(*self._why_ended(stalled=now - timed_out_at < STALL_S))
                misses = 0
                if self.paced:
                    time.sleep(max(0.0, due - time.perf_counter()))
                if not self._slot.put(frame):
                    return None
        except Exception as e:  # a backend blowing up mid-stream: end the run cleanly and say why
            return self._end(f"{self.name} failed: {e}", failed=True)
        return None

    def _why_ended(self, stalled: bool) -> tuple[str, bool]:
        """Why reads stopped, and whether unexpectedly: a file ends; a camera, or a stream that stalls or stops
        short of its announced length (a live stream has none), has gone away."""
        if self.kind == "file":
            return "end of file", False
        if self.kind == "camera":
            return "the camera stopped sending frames (unplugged?)", True
        if stalled:
            return STALLED, True
        if self._length and self._cap.get(cv2.CAP_PROP_POS_FRAMES) >= self._length - 1:
            return "end of the stream", False
        return "the stream stopped sending frames (its server went away or the connection dropped)", True

    def _end(self, reason: str, failed: bool = False) -> None:
        if not self._slot.closed:
            self.end_reason, self.failed = reason, failed
        self._slot.close()

    def pause(self, paused: bool) -> None:
        """Stop the clock of a paced file; cameras and streams keep being drained so the next frame is fresh."""
        (self._resume.clear if paused else self._resume.set)()

    def __iter__(self) -> Iterator[np.ndarray]:
        timeout = None if self.kind == "file" else STALL_S
        self.pause(False)  # a paced file's clock starts now, not while the engine was still loading
        while (item := self._slot.get(timeout)) is not None:
            yield item[1]
        if not self._slot.closed:  # timed out
            self._end(STALLED, failed=True)

    def close(self) -> None:
        """Stop the reader and release the device; safe to call twice."""
        self._end("stopped")
        self._resume.set()
        self._thread.join(timeout=STALL_S)
        if not self._thread.is_alive():  # never release a capture that a stuck read() is still using
            self._cap.release()
