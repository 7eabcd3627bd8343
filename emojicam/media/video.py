"""Converting a video: decode, emojify and encode side by side (a decoder thread, the engine, a compositor thread,
FFmpeg's encoder), every frame on the output's constant rate and the sound kept in sync."""

from __future__ import annotations

import contextlib
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import cv2
import numpy as np

from emojicam.errors import warn
from emojicam.live.capture import is_url
from emojicam.media.reader import Retiming, open_video
from emojicam.media.writer import VideoWriter
from emojicam.progress import progress_bar

if TYPE_CHECKING:
    from emojicam.engine import Cut, Emojifier, EmojiFrame
    from emojicam.media.reader import VideoFile

_DONE = object()
T = TypeVar("T")


def prefetch(frames: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Iterate `frames` in a thread, `depth` ahead of the caller (FFmpeg and OpenCV work without the GIL)."""
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


STAGE_FRAMES = 2000  # frames whose stage times give a conversion's medians


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


def write_rendered(out: VideoWriter, rendered: EmojiFrame, copies: int = 1) -> dict[str, float]:
    """Write a rendered EmojiFrame's picture `copies` times; its stage times are returned."""
    for _ in range(copies):
        out.write(rendered.image)
    return rendered.stage_ms


def warn_ending(video: VideoFile, retiming: Retiming, stream: bool, dst: Path) -> None:
    """The warnings a finished conversion owes: a damaged clock, frames missing from a file, a stream that
    stopped."""
    # the count a file announces comes from its duration, which means nothing once its time stamps jump
    got = max(retiming.decoded, retiming.written)
    if retiming.breaks:
        warn(f"{video.name}: {retiming.broken_clock()}")
    short = got < video.frame_count - max(2, video.frame_count // 50)
    if video.frame_count and not retiming.jumps and not retiming.breaks and short:
        warn(f"{video.name}: converted {retiming.decoded} of {video.frame_count} expected frames (truncated or "
             f"corrupt input?)")
    elif stream and not video.frame_count:  # a live stream ends when its server stops or the link drops
        warn(f"{video.name}: the stream stopped sending frames after {retiming.decoded} "
             f"({retiming.decoded / video.fps:.1f} s); kept them all in {dst}")


def convert_video(emojifier: Emojifier, src: Path | str, dst: Path, quiet: bool = False) -> ConvertStats:
    """Emojify every frame of src (a file or stream URL) into dst at the source frame rate, keeping the audio in
    sync; decode, inference and encoding overlap (decoder thread, main thread, FFmpeg process)."""
    dst = Path(dst)
    emojifier.reset()
    start = time.perf_counter()
    # stage medians over the last STAGE_FRAMES frames: a list of every frame's times grew by 0.6 kB a frame (11 MB
    # an hour of 5 fps video, a gigabyte for ten hours at 30 fps)
    timings: dict[str, deque[float]] = {k: deque(maxlen=STAGE_FRAMES) for k in ("decode_wait", "emojify", "write")}
    engine_ms: deque[dict[str, float]] = deque(maxlen=STAGE_FRAMES)  # one frame's stages, from the calls that made it
    skipped_sum, picks = 0.0, 0  # the share of cells kept without a forward pass, summed over the frames picked
    with open_video(src) as video:
        w, h = video.size
        grid = emojifier.grid_for((h, w, 3))
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(VideoWriter(dst, video.fps, grid.output_size,
                                                  audio_from=src if video.has_audio else None,
                                                  audio_start_s=video.start_s))
            bar = progress_bar(video.frame_count or None, video.name, "frame", quiet)
            stack.callback(bar.close)
            def cut(run: tuple[np.ndarray, int]) -> tuple[Cut, int]:
                frame, copies = run
                if frame.shape[:2] != (h, w):  # OpenCV's frames after a mid-stream size change: the first's grid
                    frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
                return emojifier.cut(frame, grid.cols), copies

            # frames are decoded and cut in the decoder thread, ahead of the network; two ahead, as each holds its
            # patches (36 MB a frame at 128x72 with the 36 px network)
            frames = prefetch(map(cut, runs(video)), depth=2)
            stack.callback(frames.close)  # stops the decoder thread, also on errors and Ctrl-C
            # frame t is composited (numpy and OpenCV, without the GIL) while frame t+1 goes through the network
            compositor = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="video-compositor"))
            composited, repeats = None, 0  # the frame before, rendering, and how many times it comes
            t0 = time.perf_counter()
            for cut_frame, copies in frames:
                t1 = time.perf_counter()
                picked = emojifier.pick_cut(cut_frame)
                t2 = time.perf_counter()
                if composited is not None:
                    engine_ms.append(write_rendered(out, composited.result(), repeats))
                composited, repeats = compositor.submit(emojifier.render, picked, cut_frame.frame), copies
                t3 = time.perf_counter()
                timings["decode_wait"].append((t1 - t0) * 1e3)
                timings["emojify"].append((t2 - t1) * 1e3)
                timings["write"].append((t3 - t2) * 1e3)
                skipped_sum, picks = skipped_sum + picked.skipped, picks + 1
                bar.update(copies)
                t0 = time.perf_counter()
            if composited is not None:
                engine_ms.append(write_rendered(out, composited.result(), repeats))
            retiming = video.retiming()
            if retiming.breaks:
                out.sound_by_samples()
    warn_ending(video, retiming, is_url(src), dst)
    stage_ms = {k: statistics.median(v) for k, v in timings.items() if v}
    stage_ms |= {k: statistics.median(d[k] for d in engine_ms) for k in (engine_ms[0] if engine_ms else {})}
    return ConvertStats(out.frames, out.fps, video.frame_count, time.perf_counter() - start, video.has_audio, retiming,
                        stage_ms, skipped_sum / picks if picks else 0.0)
