"""`emojicam live`: the live emoji mirror in a window with a heads-up display and keys, a recording, a virtual
webcam; the frame loop itself is mirror.py's.

Keys: q/Esc quit, +/- grid density, m mirror, o original/emoji/side-by-side, s PNG snapshot, space pause.
Capture runs in its own thread (emojicam.live.capture), so reading overlaps with inference, compositing and display.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from emojicam.closing import Closing
from emojicam.errors import EmojicamError
from emojicam.grid import Grid
from emojicam.live.capture import Capture
from emojicam.live.mirror import (
    LOOKS,
    LiveOptions,
    Shot,
    Status,
    View,
    check_options,
    run_session,
)
from emojicam.media.images import write_image
from emojicam.media.writer import OUT_EXTS, VideoWriter

if TYPE_CHECKING:
    from emojicam.engine import Emojifier
    from emojicam.settings import ModelChoice, Settings

WINDOW = "emojicam"
DISPLAY_MAX = (1280, 720)  # largest window; smaller art is scaled up by a whole number so emoji stay crisp
COLS_STEPS = (8, 12, 16, 24, 32, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512)
RUNNING_LINE_S = 30.0  # a status line this often in a log (not on a terminal)
KEYS_HELP = "q quit  +/- grid  m mirror  o view  s snapshot  space pause"
NO_WINDOW_HINT = "; run with --no-window --record OUT.mp4 (or --virtual-camera) instead"


def on_key(key: int, view: View, steps: list[int]) -> tuple[View, str]:
    """The view after one key press and what else it asks for ("quit", "snapshot" or ""); prints what changed, one
    line, so scripts (and tests) can follow."""
    ch = chr(key) if 0 <= key < 128 else ""
    if key == 27 or ch == "q":
        return view, "quit"
    if ch and ch in "+=-_":
        options = [c for c in steps if (c > view.cols if ch in "+=" else c < view.cols)]
        view = View(options[0] if ch in "+=" else options[-1], view.mirror, view.look, view.paused) if options \
            else view
        print(f"grid: {view.cols} columns", flush=True)
    elif ch == "m":
        view = View(view.cols, not view.mirror, view.look, view.paused)
        print(f"mirror: {'on' if view.mirror else 'off'}", flush=True)
    elif ch == "o":
        view = View(view.cols, view.mirror, LOOKS[(LOOKS.index(view.look) + 1) % len(LOOKS)], view.paused)
        print(f"view: {view.look}", flush=True)
    elif ch == " ":
        view = View(view.cols, view.mirror, view.look, not view.paused)
        print("paused" if view.paused else "resumed", flush=True)
    elif ch == "s":
        return view, "snapshot"
    return view, ""


def picture(engine: Emojifier, shot: Shot, look: str) -> np.ndarray:
    """What the window and the recording show for a shot: the emoji frame, the frame itself at the emoji frame's
    size, or both side by side (LOOKS); while the first grid is prepared, the frame at that grid's size."""
    if shot.picked is None:
        size = shot.preparing.grid.output_size if shot.preparing is not None else shot.frame.shape[1::-1]
        return cv2.resize(shot.frame, size, interpolation=cv2.INTER_AREA)
    emoji = engine.render(shot.picked, shot.frame).image
    if look == "emoji":
        return emoji
    original = cv2.resize(shot.frame, (emoji.shape[1], emoji.shape[0]), interpolation=cv2.INTER_AREA)
    return original if look == "original" else np.hstack([original, emoji])


def hud_lines(engine: Emojifier, shot: Shot, status: Status, wanted: Grid | None) -> list[str]:
    """fps, grid, device and network (and the grid being prepared); ms per engine stage of the frame shown; the
    time to the first frame and the view; the keys. While no grid is ready, how far its preparation is."""
    view = status.view
    state = f"{view.look}, mirror {'on' if view.mirror else 'off'}" + (", PAUSED" if view.paused else "")
    if shot.picked is None:
        return [f"{engine.device}, {engine.patch_px} px network", str(shot.preparing or "no grid"), state, KEYS_HELP]
    grid = shot.picked.grid
    stages = " ".join(f"{name} {ms:.1f}" for name, ms in shot.picked.stage_ms.items())
    preparing = f"  preparing {wanted.cols}x{wanted.rows}" if wanted is not None and wanted != grid else ""
    return [f"{status.fps:.1f} fps  grid {grid.cols}x{grid.rows} ({grid.count} tiles)  {engine.device}{preparing}",
            f"{stages} ms", f"first frame {status.first_s:.1f} s  {state}", KEYS_HELP]


class RunningLine:
    """A line every `every_s` seconds when stdout is not a terminal (a log, a script): the frames so far and the
    rate since the line before, so that a long run's rate can be followed from outside (a window's heads-up display
    cannot be read by a script)."""

    def __init__(self, every_s: float = RUNNING_LINE_S, on: bool | None = None):
        self.every_s, self.on = every_s, (not sys.stdout.isatty()) if on is None else on
        self._last: tuple[float, int] | None = None  # when, frames then

    def __call__(self, frames: int, now: float) -> str:
        """The line printed now, or ""."""
        if not self.on or frames == 0:
            return ""
        if self._last is None:
            self._last = (now, frames)
        if now - self._last[0] < self.every_s:
            return ""
        line = (f"running: {frames} frames, {(frames - self._last[1]) / (now - self._last[0]):.1f} fps over the "
                f"last {now - self._last[0]:.0f} s")
        self._last = (now, frames)
        print(line, flush=True)
        return line


class PictureOutput:
    """The mirror as pictures: the window (with its heads-up display and keys, unless --no-window) and the sinks
    (recording, virtual camera), which get emoji frames only."""

    def __init__(self, engine: Emojifier, window: Window | None, sinks: list[FixedSizeSink], snapshot_dir: Path,
                 steps: list[int]):
        self.engine, self.window, self.sinks, self.snapshot_dir, self.steps = engine, window, sinks, snapshot_dir, steps
        self._shown: Shot | None = None
        self._view: View | None = None
        self._running = RunningLine()

    def cols(self, frame_shape: tuple[int, ...], view: View) -> int:
        return view.cols

    def render(self, shot: Shot, view: View) -> np.ndarray:
        return picture(self.engine, shot, view.look)

    def show(self, rendered: np.ndarray, shot: Shot, status: Status) -> None:
        if shot.preparing is not None and self._shown is None:
            print(f"{shot.preparing}: showing the source meanwhile", flush=True)
        if shot.picked is not None:  # a recording holds emoji frames only, not the first start's preparation
            changed, now = shot.fresh or status.view != self._view, time.perf_counter()
            for sink in self.sinks:
                sink.write(rendered, changed, now)
        if self.window is not None:
            wanted = self.engine.grid_for(shot.frame.shape, status.view.cols)
            self.window.show(rendered, hud_lines(self.engine, shot, status, wanted))
        self._running(status.frames, time.perf_counter())
        self._shown, self._view = shot, status.view

    def keys(self, view: View, rendered: np.ndarray) -> tuple[View, str]:
        """Every key pressed since the last frame, in order (none without a window)."""
        if self.window is None:
            return view, ""
        wait_ms = 30 if view.paused or self._shown is None or self._shown.picked is None else 1
        while (key := self.window.key(wait_ms)) != -1:
            shown = view
            view, asked = on_key(key, view, self.steps)
            if asked == "quit":
                return view, "q pressed"
            if asked == "snapshot":
                name = f"emojicam-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}.png"
                print(f"snapshot: {write_image(self.snapshot_dir / name, rendered)}", flush=True)
            if view != shown:  # the keys after it wait for the next turn: a snapshot then saves the new view
                break
            wait_ms = 1
        return view, "window closed" if self.window.closed else ""


def letterbox(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """frame scaled to fit (w, h) with its aspect kept, centred on black: sinks have one fixed size."""
    w, h = size
    fh, fw = frame.shape[:2]
    if (fw, fh) == (w, h):
        return frame
    s = min(w / fw, h / fh)
    nw, nh = max(1, round(fw * s)), max(1, round(fh * s))
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    out[y:y + nh, x:x + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


class FixedSizeSink:
    """Feeds shown frames to a sink at its fixed size. by_clock: write as many copies as wall-clock time asks
    (a recording then plays at the speed it was shown, pauses and slow frames included); else one per change."""

    def __init__(self, sink, size: tuple[int, int], fps: float, by_clock: bool):
        self.sink, self.size, self.fps, self.by_clock = sink, size, fps, by_clock
        self.written, self.t0 = 0, None

    def write(self, frame: np.ndarray, changed: bool, now: float) -> None:
        if self.by_clock:
            self.t0 = now if self.t0 is None else self.t0
            copies = int((now - self.t0) * self.fps) + 1 - self.written
        else:
            copies = int(changed)
        if copies > 0:
            fitted = np.ascontiguousarray(letterbox(frame, self.size))
            for _ in range(copies):
                self.sink.write(fitted)
            self.written += copies


def import_pyvirtualcam():
    try:
        import pyvirtualcam
    except ImportError:
        raise EmojicamError("--virtual-camera: expected the pyvirtualcam package, got none installed; "
                            "pip install 'emojicam[virtualcam]'") from None
    return pyvirtualcam


class VirtualCamera(Closing):
    """The emoji feed as a webcam other programs can pick (pyvirtualcam: v4l2loopback on Linux, OBS elsewhere)."""

    def __init__(self, size: tuple[int, int], fps: float):
        pyvirtualcam = import_pyvirtualcam()
        try:
            self.cam = pyvirtualcam.Camera(size[0], size[1], fps, fmt=pyvirtualcam.PixelFormat.BGR)
        except Exception as e:  # pyvirtualcam raises RuntimeError (and others) when no backend is present
            why = (str(e).strip().split(". ")[0] or type(e).__name__)[:120]
            how = ("sudo apt install v4l2loopback-dkms && sudo modprobe v4l2loopback exclusive_caps=1"
                   if sys.platform.startswith("linux") else "install OBS Studio and start its virtual camera once")
            raise EmojicamError(f"--virtual-camera: expected a virtual camera backend, got none ({why}); "
                                f"{how}") from None
        print(f"virtual camera: {self.cam.device} ({size[0]}x{size[1]})", flush=True)

    def write(self, frame: np.ndarray) -> None:
        self.cam.send(frame)

    def close(self) -> None:
        self.cam.close()


def check_display() -> None:
    """Raise EmojicamError when no window can open; checked before the camera is touched."""
    if not sys.platform.startswith(("linux", "freebsd", "openbsd")):
        return
    display, wayland = os.environ.get("DISPLAY"), os.environ.get("WAYLAND_DISPLAY")
    if not display and not wayland:
        raise EmojicamError(f"window: expected a display, got none (DISPLAY and WAYLAND_DISPLAY unset){NO_WINDOW_HINT}")
    if display and not wayland and not _x_server_answers(display):
        raise EmojicamError(f"window: expected an X server at DISPLAY={display}, got no answer{NO_WINDOW_HINT}")


def _x_server_answers(display: str) -> bool:
    """Knock on the X server's socket: OpenCV's Qt aborts the whole process when it cannot connect."""
    host, sep, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not sep or not number.isdigit():
        return True  # a form we do not know: let the window try
    if host not in ("", "unix"):
        try:
            socket.create_connection((host, 6000 + int(number)), timeout=2).close()
            return True
        except OSError:
            return False
    path = f"/tmp/.X11-unix/X{number}"
    for address in (path, "\0" + path):  # the socket file, or Linux's abstract socket of the same name
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(address)
                return True
            except OSError:
                pass
    return False


class Window:
    """The "emojicam" window: frames scaled to fit DISPLAY_MAX, with the heads-up display drawn on top."""

    def __enter__(self) -> Window:
        try:
            cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as e:
            why = (str(e).strip().splitlines() or ["?"])[-1][:120]
            raise EmojicamError(f"window: expected a display OpenCV can open a window on, got: {why}"
                                f"{NO_WINDOW_HINT}") from None
        return self

    def show(self, frame: np.ndarray, hud: list[str]) -> None:
        h, w = frame.shape[:2]
        scale = min(DISPLAY_MAX[0] / w, DISPLAY_MAX[1] / h)
        scale = math.floor(scale) if scale >= 1 else scale
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(frame, size, interpolation=cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA)
        font, line_px = cv2.FONT_HERSHEY_SIMPLEX, 18
        width = max(cv2.getTextSize(line, font, 0.45, 1)[0][0] for line in hud) + 12
        image[:line_px * len(hud) + 6, :width] //= 3  # darken behind the text so it reads on any picture
        for i, line in enumerate(hud):
            cv2.putText(image, line, (6, 16 + i * line_px), font, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.imshow(WINDOW, image)

    def key(self, wait_ms: int) -> int:
        """The key pressed (ASCII code) while waiting up to wait_ms, or -1; also runs the window's events."""
        k = cv2.waitKey(wait_ms)
        return k & 0xFF if k >= 0 else -1

    @property
    def closed(self) -> bool:
        try:
            return cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            return True

    def __exit__(self, *exc) -> None:
        try:
            cv2.destroyWindow(WINDOW)
            cv2.waitKey(1)  # let the toolkit actually take the window down
        except cv2.error:
            pass


def grid_steps(frame_shape: tuple[int, ...], tile_px: int, cols: int) -> list[int]:
    """The grid densities +/- step through: COLS_STEPS and the starting cols, where the output size allows."""
    steps = []
    for c in sorted({*COLS_STEPS, cols}):
        try:
            Grid.for_frame(frame_shape, c, tile_px)
            steps.append(c)
        except EmojicamError:
            pass
    return steps


def report_first_frame(t_start: float, t_open: float, t_engine: float) -> float:
    """Print and return the seconds from process start to the first emoji frame, split by stage."""
    now = time.perf_counter()
    print(f"first frame after {now - t_start:.2f} s (start-up and source {t_open - t_start:.2f} s, engine "
          f"{t_engine - t_open:.2f} s, first emoji frame {now - t_engine:.2f} s)", flush=True)
    return now - t_start


@dataclass
class WindowFront:
    """The live mirror in a window (or with --no-window, only its recording and virtual camera): the sinks and
    the window open before the engine loads, and a start-up line says where the first frame's time went."""

    opts: LiveOptions
    settings: Settings
    every_frame: bool
    recorded: Path | None = None
    sinks: list[FixedSizeSink] = field(default_factory=list)
    window: Window | None = None

    def open(self, stack: ExitStack, capture: Capture) -> None:
        size = Grid.for_frame(capture.frame_shape, self.settings.cols, self.settings.tile_px).output_size
        self.sinks = open_sinks(stack, self.opts, capture, size)
        self.window = stack.enter_context(Window()) if self.opts.window else None

    def output(self, stack: ExitStack, capture: Capture, engine: Emojifier) -> PictureOutput:
        steps = grid_steps(capture.frame_shape, self.settings.tile_px, self.settings.cols)
        return PictureOutput(engine, self.window, self.sinks, self.opts.snapshot_dir, steps)

    def first_frame(self, t_start: float, t_open: float, t_engine: float) -> float:
        return report_first_frame(t_start, t_open, t_engine)


def run_live(opts: LiveOptions, settings: Settings, choice: ModelChoice) -> None:
    """Run the mirror until q/Esc, Ctrl-C, --max-frames or the end of the source; prints a one-line summary."""
    check_options(opts, OUT_EXTS)
    if opts.window:
        check_display()
    if opts.virtual_camera:
        import_pyvirtualcam()
    # files: with --max-frames, or with nothing watching in real time, read every frame instead of pacing
    every_frame = opts.max_frames is not None or not (opts.window or opts.virtual_camera)
    from emojicam.engine import open_engine

    run_session(opts, settings.cols, WindowFront(opts, settings, every_frame, opts.record),
                lambda: open_engine(settings, choice, real_time=True), say=lambda line: print(line, flush=True))


def open_sinks(stack: ExitStack, opts: LiveOptions, capture: Capture, size: tuple[int, int]) -> list[FixedSizeSink]:
    """The virtual camera and the recording asked for, at the starting grid's output size (each has one size)."""
    sinks = []
    if opts.virtual_camera:
        sinks.append(FixedSizeSink(stack.enter_context(VirtualCamera(size, capture.fps)), size, capture.fps,
                                   by_clock=False))
    if opts.record is not None:
        writer = stack.enter_context(VideoWriter(opts.record, capture.fps, size))
        # a recording plays at the speed it was shown, unless a file is read frame by frame
        sinks.append(FixedSizeSink(writer, size, capture.fps, by_clock=capture.paced or capture.kind != "file"))
    return sinks
