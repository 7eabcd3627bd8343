"""`emojicam live`: the live emoji mirror: a window with a heads-up display and keys, recording, a virtual webcam.

Keys: q/Esc quit, +/- grid density, m mirror, o original/emoji/side-by-side, s PNG snapshot, space pause.
Capture runs in its own thread (emojicam.capture), so reading overlaps with inference, compositing and display.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from emojicam.atomic import check_writable, unwritable
from emojicam.capture import Capture
from emojicam.convert import VIDEO_OUT_EXTS
from emojicam.errors import EmojicamError, Interrupted
from emojicam.grid import Grid
from emojicam.images import write_image

WINDOW = "emojicam"
DISPLAY_MAX = (1280, 720)  # largest window; smaller art is scaled up by a whole number so emoji stay crisp
COLS_STEPS = (8, 12, 16, 24, 32, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512)
VIEWS = ("emoji", "side-by-side", "original")
KEYS_HELP = "q quit  +/- grid  m mirror  o view  s snapshot  space pause"
NO_WINDOW_HINT = "; run with --no-window --record OUT.mp4 (or --virtual-camera) instead"


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


@dataclass
class LiveState:
    """What the keys change while the mirror runs."""

    cols: int                # the grid density asked for (keys); shown once compiled
    mirror: bool
    steps: list[int] = field(default_factory=list)  # the grid densities +/- move between
    view: str = "emoji"
    paused: bool = False
    quit: bool = False
    rerender: bool = False   # emojify the held frame again (a key changed how it looks)
    reset: bool = False      # forget the stability state (the picture moved: mirror toggled)
    shown_cols: int = 0      # the grid density on screen: the last one asked for that is compiled
    asked: tuple[float, int] = (0.0, 0)  # when the last +/- was pressed: (perf_counter, frames shown by then)


def on_key(key: int, st: LiveState, shown: np.ndarray, snapshot_dir: Path, frame_no: int) -> None:
    """Apply one key press; prints what changed, one line, so scripts (and tests) can follow."""
    ch = chr(key) if 0 <= key < 128 else ""
    if key == 27 or ch == "q":
        st.quit = True
    elif ch and ch in "+=-_":
        finer = ch in "+="
        options = [c for c in st.steps if (c > st.cols if finer else c < st.cols)]
        if options:
            st.cols, st.rerender = (options[0] if finer else options[-1]), True
            st.asked = (time.perf_counter(), frame_no)
        print(f"grid: {st.cols} columns", flush=True)
    elif ch == "m":
        st.mirror, st.rerender, st.reset = not st.mirror, True, True
        print(f"mirror: {'on' if st.mirror else 'off'}", flush=True)
    elif ch == "o":
        st.view, st.rerender = VIEWS[(VIEWS.index(st.view) + 1) % len(VIEWS)], True
        print(f"view: {st.view}", flush=True)
    elif ch == " ":
        st.paused = not st.paused
        print("paused" if st.paused else "resumed", flush=True)
    elif ch == "s":
        name = f"emojicam-{time.strftime('%Y%m%d-%H%M%S')}-{frame_no:06d}.png"
        print(f"snapshot: {write_image(snapshot_dir / name, shown)}", flush=True)


def render(emojifier, frame: np.ndarray, st: LiveState):
    """Mirror -> emojify -> the chosen view (the original at the emoji frame's size); returns the picture and the
    engine's EmojiFrame. A grid asked for that is not compiled yet is prepared in the background while the grid on
    screen keeps running (only the very first frame waits for its grid); it is shown from the first frame after
    it is ready. Never waits for a batch size of moved cells either (see Emojifier.pick)."""
    if st.reset:
        emojifier.reset()
        st.reset = False
    if st.mirror:
        frame = cv2.flip(frame, 1)
    emojifier.prepare_grid(frame.shape, st.cols)  # queued once per shape; the whole grid first
    if not st.shown_cols or emojifier.grid_ready(frame.shape, st.cols):
        st.shown_cols = st.cols
    result = emojifier(frame, cols=st.shown_cols, wait=False)
    emoji = result.image
    if st.view == "emoji":
        return emoji, result
    original = cv2.resize(frame, (emoji.shape[1], emoji.shape[0]), interpolation=cv2.INTER_AREA)
    return (original if st.view == "original" else np.hstack([original, emoji])), result


def report_switch(before, after, st: LiveState, frame_no: int) -> None:
    """One line when the grid on screen changes (Grids before -> after): how long the new one took to prepare and
    how many frames were shown meanwhile, so scripts (and tests) see the picture never waited."""
    if before is not None and after != before:
        print(f"grid: {after.cols}x{after.rows} ready after {time.perf_counter() - st.asked[0]:.1f} s, "
              f"{frame_no - st.asked[1]} frames shown while it was prepared", flush=True)


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


class VirtualCamera:
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

    def __enter__(self) -> VirtualCamera:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


def hud_lines(meter: FpsMeter, emojifier, result, frame_shape: tuple[int, ...], first_s: float,
              st: LiveState) -> list[str]:
    """fps, grid, device (and the grid being prepared); ms per engine stage of the frame shown (result, an
    EmojiFrame); first-frame latency and the view; the keys."""
    grid, wanted = result.grid, emojifier.grid_for(frame_shape, st.cols)
    stages = " ".join(f"{name} {ms:.1f}" for name, ms in result.stage_ms.items())
    state = f"{st.view}, mirror {'on' if st.mirror else 'off'}" + (", PAUSED" if st.paused else "")
    preparing = f"  preparing {wanted.cols}x{wanted.rows}" if wanted != grid else ""
    return [f"{meter.fps:.1f} fps  grid {grid.cols}x{grid.rows} ({grid.count} tiles)  {emojifier.device}{preparing}",
            f"{stages} ms", f"first frame {first_s:.1f} s  {state}", KEYS_HELP]


def seconds_since_process_start() -> float:
    """How long ago this process started (Linux /proc), so first-frame latency includes Python's start-up."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return float(Path("/proc/uptime").read_text().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def report_first_frame(t_start: float, t_open: float, t_engine: float) -> float:
    """Print and return the seconds from process start to the first shown frame, split by stage."""
    now = time.perf_counter()
    print(f"first frame after {now - t_start:.2f} s (start-up and source {t_open - t_start:.2f} s, engine "
          f"{t_engine - t_open:.2f} s, first emoji frame {now - t_engine:.2f} s)", flush=True)
    return now - t_start


def check_options(opts: LiveOptions) -> None:
    if opts.max_frames is not None and opts.max_frames < 1:
        raise EmojicamError(f"--max-frames: expected at least 1, got {opts.max_frames}")
    if opts.record is not None:
        if opts.record.suffix.lower() not in VIDEO_OUT_EXTS:
            raise EmojicamError(f"--record: expected a video name ({' '.join(VIDEO_OUT_EXTS)}), "
                                f"got '{opts.record.suffix or opts.record.name}'")
        if not opts.record.parent.is_dir():
            raise EmojicamError(f"--record: expected an existing folder, got {opts.record.parent}")
        check_writable(opts.record)  # now, not when the first frame comes
    if opts.window and not opts.snapshot_dir.is_dir():
        raise EmojicamError(f"--snapshots: expected an existing folder, got {opts.snapshot_dir}")
    if opts.window and (why := unwritable(opts.snapshot_dir)):
        raise EmojicamError(f"--snapshots: expected a folder to write snapshots into, got {opts.snapshot_dir}: {why}")


def end_of_mirror(meter: FpsMeter, device: str, shape: str, first_s: float, reason: str, capture,
                  recorded: str = "") -> EmojicamError | None:
    """Print the closing line of a mirror (window or terminal); the error to raise if the source stopped sending
    frames before the user quit (None: it did not)."""
    print(f"live: {meter.count} frames, mean {meter.mean_fps:.1f} fps, device {device}, {shape}, first frame "
          f"{first_s:.2f} s; ended: {reason}{recorded}", flush=True)
    if not capture.failed:
        return None
    return EmojicamError(f"source: expected frames from {capture.name} until you quit, got none after frame "
                         f"{meter.count}: {reason}{'; the recording so far is kept' if recorded else ''}")


def run_live(opts: LiveOptions, settings, make_engine: Callable) -> None:
    """Run the mirror until q/Esc, Ctrl-C, --max-frames or the end of the source; prints a one-line summary.

    settings: the engine's Settings (cols, tile_px); make_engine() builds the Emojifier once the source is open.
    """
    t_start = time.perf_counter() - seconds_since_process_start()
    check_options(opts)
    if opts.window:
        check_display()
    if opts.virtual_camera:
        import_pyvirtualcam()
    # files: with --max-frames, or with nothing watching in real time, read every frame instead of pacing
    every_frame = opts.max_frames is not None or not (opts.window or opts.virtual_camera)
    with ExitStack() as stack:
        capture = stack.enter_context(Capture(opts.camera if opts.source is None else opts.source, every_frame))
        t_open = time.perf_counter()
        size = Grid.for_frame(capture.frame_shape, settings.cols, settings.tile_px).output_size
        by_clock = capture.paced or capture.kind != "file"
        sinks = []
        if opts.virtual_camera:
            sinks.append(FixedSizeSink(stack.enter_context(VirtualCamera(size, capture.fps)), size, capture.fps,
                                       by_clock=False))
        if opts.record is not None:
            from emojicam.video import VideoWriter

            writer = stack.enter_context(VideoWriter(opts.record, capture.fps, size))
            sinks.append(FixedSizeSink(writer, size, capture.fps, by_clock))
        window = stack.enter_context(Window()) if opts.window else None
        emojifier = make_engine()
        stack.callback(emojifier.close)
        t_engine = time.perf_counter()
        st = LiveState(cols=settings.cols, mirror=capture.kind == "camera",
                       steps=grid_steps(capture.frame_shape, settings.tile_px, settings.cols))
        meter, frames, reason, first_s, result = FpsMeter(), iter(capture), "", 0.0, None
        failed: EmojicamError | None = None  # a snapshot or the recording could not be written
        signalled: Interrupted | None = None  # re-raised once the recording is finished
        try:
            while True:
                fresh = not st.paused
                if fresh and (frame := next(frames, None)) is None:
                    reason = capture.end_reason
                    break
                # paused on a grid that was being prepared: show it once it is ready
                switch = st.paused and st.shown_cols != st.cols and emojifier.grid_ready(frame.shape, st.cols)
                if changed := fresh or st.rerender or switch:
                    before = result.grid if result is not None else None
                    (shown, result), st.rerender = render(emojifier, frame, st), False
                    report_switch(before, result.grid, st, meter.count)
                now = time.perf_counter()
                for sink in sinks:
                    sink.write(shown, changed, now)
                if window is not None:
                    window.show(shown, hud_lines(meter, emojifier, result, frame.shape, first_s, st))
                    wait_ms = 30 if st.paused else 1
                    while (key := window.key(wait_ms)) != -1:  # every key pressed since the last frame, in order
                        on_key(key, st, shown, opts.snapshot_dir, meter.count)
                        wait_ms = 1
                    capture.pause(st.paused)
                if fresh:
                    meter.tick()
                    first_s = first_s or report_first_frame(t_start, t_open, t_engine)
                if st.quit or (window is not None and window.closed):
                    reason = "q pressed" if st.quit else "window closed"
                    break
                if opts.max_frames is not None and meter.count >= opts.max_frames:
                    reason = f"--max-frames {opts.max_frames} reached"
                    break
        except Interrupted as e:  # SIGTERM, SIGHUP: like Ctrl-C, but the exit status says which signal
            reason, signalled = f"interrupted ({e})", e
        except KeyboardInterrupt:
            reason = "interrupted (Ctrl-C)"
        except EmojicamError as e:  # the with-block still finishes the recording (unless it was what failed)
            failed = e
    if failed is not None:
        raise failed
    grid = emojifier.grid_for(capture.frame_shape, st.shown_cols or st.cols)
    recorded = f"; recorded {opts.record}" if opts.record is not None else ""
    stopped = end_of_mirror(meter, emojifier.device, f"grid {grid.cols}x{grid.rows} ({grid.count} tiles)", first_s,
                            reason, capture, recorded)
    if signalled is not None:
        raise signalled
    if stopped is not None:
        raise stopped
