"""The live mirror's one frame loop, whichever way it is shown: a window (live.py), the terminal (terminal.py), or
nothing on screen (--no-window: a recording, a virtual camera). Every turn runs the same steps:

    read a frame -> pick its emoji (Picker) -> render it for the output -> show and record it -> keys -> count it

An Output (the window with its sinks, the terminal screen) says which grid it wants and does the rendering,
showing and keys; the loop knows nothing about windows, terminals or tensors.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from emojicam.atomic import check_writable, unwritable
from emojicam.errors import EmojicamError, Interrupted

if TYPE_CHECKING:
    from emojicam.engine import Emojifier, EmojiFrame
    from emojicam.grid import Grid
    from emojicam.live.capture import Capture

LOOKS = ("emoji", "side-by-side", "original")
FIRST_START = ("a first start compiles this machine's kernels, once; later starts load them from the cache in "
               "seconds")


@dataclass(frozen=True)
class LiveOptions:
    """What `emojicam live` was asked to do, next to the engine's Settings."""

    camera: int = 0
    source: str | None = None          # a file or stream URL instead of the camera
    record: Path | None = None
    window: bool = True
    max_frames: int | None = None      # with a file: also read every frame instead of pacing at its fps
    virtual_camera: bool = False
    snapshot_dir: Path = Path(".")


@dataclass(frozen=True)
class View:
    """What the keys change: the grid asked for (columns), mirrored or not, the look, paused or not."""

    cols: int
    mirror: bool
    look: str = "emoji"
    paused: bool = False


@dataclass(frozen=True)
class Preparing:
    """A grid asked for that cannot be shown yet (the first start): its builds done of those needed, and for how
    many seconds it has been prepared."""

    grid: Grid
    done: int
    needed: int
    seconds: float

    def __str__(self) -> str:
        left = (f"about {self.seconds / self.done * (self.needed - self.done):.0f} s to go" if self.done
                else FIRST_START)
        return (f"preparing {self.grid.cols}x{self.grid.rows}: {self.done} of {self.needed} built, "
                f"{self.seconds:.0f} s; {left}")


@dataclass(frozen=True)
class Shot:
    """One turn of the mirror: the frame as shown (flipped when mirrored), its emoji (None while no grid is ready),
    whether it is a new frame from the source (not the held one while paused), and the grid being prepared."""

    frame: np.ndarray
    picked: EmojiFrame | None
    fresh: bool
    preparing: Preparing | None = None


@dataclass(frozen=True)
class Ending:
    """How a mirror run ended: why, frames shown and their rates, seconds to the first emoji frame, the grid then,
    and the error to raise once the outputs are closed (a failed write, a signal, a source that went away)."""

    reason: str
    frames: int
    mean_fps: float
    first_s: float
    grid: Grid | None
    error: BaseException | None = None


class Output(Protocol):
    """Where the mirror goes: the window with its recording (live.py), or the terminal (terminal.py)."""

    def cols(self, frame_shape: tuple[int, ...], view: View) -> int | None:
        """The grid wanted for frames of this shape (None: none fits, nothing to pick)."""

    def render(self, shot: Shot, view: View) -> Any:
        """What this output shows for a shot (a picture, glyph ids)."""

    def show(self, rendered: Any, shot: Shot, status: Status) -> None:
        """Show (and record) it."""

    def keys(self, view: View, rendered: Any) -> tuple[View, str]:
        """The keys pressed since the last turn: the view they leave, and a reason to stop ("" to go on)."""


class FpsMeter:
    """Frames per second over the last `window_s` seconds, and the mean rate since the first frame."""

    def __init__(self, window_s: float = 1.0):
        self.window_s, self.count, self.first, self.last = window_s, 0, 0.0, 0.0
        self._recent: deque[float] = deque()

    def tick(self, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        self.first = now if self.count == 0 else self.first
        self.count, self.last = self.count + 1, now
        self._recent.append(now)
        while len(self._recent) > 2 and now - self._recent[0] > self.window_s:
            self._recent.popleft()

    @property
    def fps(self) -> float:
        r = self._recent
        return (len(r) - 1) / (r[-1] - r[0]) if len(r) > 1 and r[-1] > r[0] else 0.0

    @property
    def mean_fps(self) -> float:
        return (self.count - 1) / (self.last - self.first) if self.last > self.first else 0.0


@dataclass(frozen=True)
class Status:
    """What a heads-up display or status line reports about the mirror so far."""

    fps: float
    frames: int
    first_s: float  # seconds from the process's start to the first emoji frame (0 before it)
    view: View


class Picker:
    """The pick step: a frame's emoji at the grid asked for once that grid is ready, at the grid shown meanwhile
    (prepared in the background: the picture never waits for a compile), or nothing while no grid is ready yet
    (the first start; with wait_first, as when a file is read frame by frame, the first frame waits instead)."""

    def __init__(self, engine: Emojifier, wait_first: bool, say: Callable[[str], None]):
        self.engine, self.wait_first, self.say = engine, wait_first, say
        self.shown: int | None = None      # the columns on screen
        self.asked: tuple[int, float, int] = (0, time.perf_counter(), 0)  # columns, when, frames shown by then
        self.mirrored: bool | None = None

    def __call__(self, frame: np.ndarray, cols: int | None, view: View, fresh: bool, shown_frames: int) -> Shot:
        if view.mirror != self.mirrored:  # the picture moved: stability against the old one means nothing
            self.engine.reset()
            self.mirrored = view.mirror
        frame = cv2.flip(frame, 1) if view.mirror else frame
        if cols is None:
            return Shot(frame, None, fresh)
        if cols != self.asked[0]:
            self.asked = (cols, time.perf_counter(), shown_frames)
        self.engine.prepare_grid(frame.shape, cols)  # queued once per shape; the whole grid first
        if cols != self.shown and ((self.shown is None and self.wait_first) or self.engine.grid_ready(frame.shape,
                                                                                                       cols)):
            self._switch(frame.shape, cols, shown_frames)
        if self.shown is None:
            grid, (done, needed) = self.engine.grid_for(frame.shape, cols), self.engine.progress(frame.shape, cols)
            return Shot(frame, None, fresh, Preparing(grid, done, needed, time.perf_counter() - self.asked[1]))
        return Shot(frame, self.engine.pick(frame, self.shown, wait=False), fresh)

    def _switch(self, frame_shape: tuple[int, ...], cols: int, shown_frames: int) -> None:
        """Show the grid asked for from now on; one line when it replaces one on screen (how long it took, and that
        the picture kept moving meanwhile)."""
        if self.shown is not None:
            grid = self.engine.grid_for(frame_shape, cols)
            self.say(f"grid: {grid.cols}x{grid.rows} ready after {time.perf_counter() - self.asked[1]:.1f} s, "
                     f"{shown_frames - self.asked[2]} frames shown while it was prepared")
        self.shown = cols


def run_mirror(capture: Capture, picker: Picker, output: Output, view: View, max_frames: int | None,
               on_first: Callable[[], float]) -> Ending:
    """The mirror until the output stops it (q, a closed window), --max-frames, the end of the source, Ctrl-C or
    a signal; on_first() is called at the first emoji frame and returns the seconds it took to get there."""
    meter, frames, frame, first_s, picked = FpsMeter(), iter(capture), None, 0.0, None
    try:
        while True:
            fresh = frame is None or not view.paused
            if fresh and (frame := next(frames, None)) is None:                              # read
                return Ending(capture.end_reason, meter.count, meter.mean_fps, first_s, picked)
            shot = picker(frame, output.cols(frame.shape, view), view, fresh, meter.count)   # pick
            rendered = output.render(shot, view)                                           # render
            output.show(rendered, shot, Status(meter.fps, meter.count, first_s, view))    # show, record
            view, stop = output.keys(view, rendered)                                       # keys
            capture.pause(view.paused)
            if shot.picked is not None:                                                    # count
                picked = shot.picked.grid
                if fresh:
                    meter.tick()
                    first_s = first_s or on_first()
            if stop or (max_frames is not None and meter.count >= max_frames):
                return Ending(stop or f"--max-frames {max_frames} reached", meter.count, meter.mean_fps, first_s,
                              picked)
    except Interrupted as e:  # SIGTERM, SIGHUP: like Ctrl-C, but the exit status says which signal
        return Ending(f"interrupted ({e})", meter.count, meter.mean_fps, first_s, picked, e)
    except KeyboardInterrupt:  # Ctrl-C is how the mirror is stopped: exit status 0
        return Ending("interrupted (Ctrl-C)", meter.count, meter.mean_fps, first_s, picked)
    except EmojicamError as e:  # a snapshot or the recording failed: the outputs still close properly first
        return Ending(f"failed: {e}", meter.count, meter.mean_fps, first_s, picked, e)


class Front(Protocol):
    """How a mirror is shown (the window with its sinks, the terminal): what it opens before the engine loads and
    the Output it then shows through; every_frame: read a file frame by frame rather than at its fps."""

    every_frame: bool
    recorded: Path | None

    def open(self, stack: ExitStack, capture: Capture) -> None:
        """Open what needs no engine (windows, recordings), on stack."""

    def output(self, stack: ExitStack, capture: Capture, engine: Emojifier) -> Output:
        """The Output for this engine, its resources on stack."""

    def first_frame(self, t_start: float, t_open: float, t_engine: float) -> float:
        """Called at the first emoji frame (with when the process started, the source opened and the engine was
        ready): the seconds from the start to it."""


def run_session(opts: LiveOptions, cols: int, front: Front, open_engine: Callable[[], Emojifier],
                say: Callable[[str], None]) -> None:
    """One mirror session, whichever front shows it: open the source, the front and the engine, run the loop from
    a grid of cols columns until it ends, print the closing line, and raise what ended it badly (a failed
    recording or snapshot, a signal, a lost source). say: the Picker's lines (a terminal's screen is its own)."""
    from emojicam.live.capture import Capture

    t_start = time.perf_counter() - seconds_since_process_start()
    with ExitStack() as stack:
        capture = stack.enter_context(Capture(opts.camera if opts.source is None else opts.source, front.every_frame))
        t_open = time.perf_counter()
        front.open(stack, capture)
        engine = stack.enter_context(open_engine())
        t_engine = time.perf_counter()
        output = front.output(stack, capture, engine)
        picker = Picker(engine, wait_first=front.every_frame, say=say)
        ending = run_mirror(capture, picker, output, View(cols, mirror=capture.kind == "camera"),
                            opts.max_frames, lambda: front.first_frame(t_start, t_open, t_engine))
    print(closing_line(ending, engine, front.recorded), flush=True)
    if ending.error is not None:
        raise ending.error
    if (lost := source_lost(capture, ending, front.recorded is not None)) is not None:
        raise lost


def source_lost(capture: Capture, ending: Ending, recorded: bool) -> EmojicamError | None:
    """The error for a source that stopped sending frames before the user quit (None: it ended, as files do)."""
    if not capture.failed:
        return None
    return EmojicamError(f"source: expected frames from {capture.name} until you quit, got none after frame "
                         f"{ending.frames}: {capture.end_reason}{'; the recording so far is kept' if recorded else ''}")


def closing_line(ending: Ending, engine: Emojifier, recorded: Path | None = None) -> str:
    """The one line a mirror prints when it stops (on the restored terminal, for --terminal)."""
    grid = ending.grid
    shape = f"grid {grid.cols}x{grid.rows} ({grid.count} tiles)" if grid else "no grid shown"
    return (f"live: {ending.frames} frames, mean {ending.mean_fps:.1f} fps, device {engine.device}, "
            f"{engine.patch_px} px network, {shape}, first frame {ending.first_s:.2f} s; ended: {ending.reason}"
            f"{f'; recorded {recorded}' if recorded is not None else ''}")


def seconds_since_process_start() -> float:
    """How long ago this process started (Linux /proc), so first-frame latency includes Python's start-up."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return float(Path("/proc/uptime").read_text().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def check_options(opts: LiveOptions, out_exts: tuple[str, ...]) -> None:
    """Refuse now what would fail later: --max-frames below 1, a recording that is not a video in an existing
    folder it can write (out_exts: the writer's), a snapshot folder that is missing or cannot be written."""
    if opts.max_frames is not None and opts.max_frames < 1:
        raise EmojicamError(f"--max-frames: expected at least 1, got {opts.max_frames}")
    if opts.record is not None:
        if opts.record.suffix.lower() not in out_exts:
            raise EmojicamError(f"--record: expected a video name ({' '.join(out_exts)}), "
                                f"got '{opts.record.suffix or opts.record.name}'")
        if not opts.record.parent.is_dir():
            raise EmojicamError(f"--record: expected an existing folder, got {opts.record.parent}")
        check_writable(opts.record)
    if opts.window and not opts.snapshot_dir.is_dir():
        raise EmojicamError(f"--snapshots: expected an existing folder, got {opts.snapshot_dir}")
    if opts.window and (why := unwritable(opts.snapshot_dir)):
        raise EmojicamError(f"--snapshots: expected a folder to write snapshots into, got {opts.snapshot_dir}: {why}")
