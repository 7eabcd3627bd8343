"""`emojicam live` end to end: clips made by FFmpeg, a real window on Xvfb, real key presses through xdotool."""

from __future__ import annotations

import glob
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from conftest import ROOT, one_line, run_cli
from media import stream_seconds, stream_server

from emojicam.emoji_set import EmojiSet
from emojicam.live.capture import Capture, LatestFrame
from emojicam.live.mirror import FpsMeter

ENGINE = ("--cols", "16", "--tile", "8")  # 16x9 tiles of 8 px on a 16:9 clip: a 128x72 frame, one small forward
CANVAS = (72, 128)
CLIP_FRAMES = 400                         # 40 s at 10 fps: the paced run never reaches the end


def make_clip(path: Path, seconds: float, fps: int = 10) -> Path:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi",
           "-i", f"testsrc2=size=160x90:rate={fps}:duration={seconds}", "-pix_fmt", "yuv420p", "-c:v", "libx264", path]
    subprocess.run(list(map(str, cmd)), check=True, timeout=120)
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    cap, frames = cv2.VideoCapture(str(path)), []
    while (got := cap.read())[0]:
        frames.append(got[1])
    cap.release()
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("live") / "testsrc.mp4", CLIP_FRAMES / 10)


@pytest.fixture(scope="module")
def atlas() -> tuple[np.ndarray, np.ndarray]:
    return EmojiSet.load().atlas(8)


def emoji_misfit(frame: np.ndarray, atlas: tuple[np.ndarray, np.ndarray], t: int = 8) -> float:
    """RMS error of the best fit of each t x t tile as "one emoji of the set on a flat colour", averaged over tiles:
    about 0 for emoji art saved losslessly, ~13 after H.264, ~44 for the raw test picture."""
    premult, alpha = atlas
    rows, cols = frame.shape[0] // t, frame.shape[1] // t
    x = frame[:rows * t, :cols * t].reshape(rows, t, cols, t, 3).transpose(0, 2, 1, 3, 4)
    x = x.reshape(-1, t * t, 3).astype(np.float32)                                     # (N, P, 3)
    m, a = premult.reshape(len(premult), t * t, 3), (1 - alpha).reshape(len(alpha), t * t, 1)
    bg = (np.einsum("kpo,npc->nkc", a, x) - (a * m).sum(1)[None]) / np.maximum((a * a).sum(1), 1e-6)[None]
    err = np.sqrt(((x[:, None] - m[None] - a[None] * bg[:, :, None, :]) ** 2).mean((2, 3)))  # (N, K)
    return float(err.min(1).mean())


def cell_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of the 16x9 cell means of two pictures: emoji art on `auto` follows its input's colours."""
    def cells(f):
        return cv2.resize(f, (16, 9), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    return float(np.corrcoef(cells(a), cells(b))[0, 1])


def key(display: str, window: str, name: str) -> None:
    subprocess.run(["xdotool", "key", "--window", window, name], env={**os.environ, "DISPLAY": display},
                   check=True, timeout=30, capture_output=True)


def find_window(display: str) -> str:
    """The id of the visible "emojicam" window."""
    found = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name", "^emojicam$"],
                           env={**os.environ, "DISPLAY": display}, capture_output=True, text=True, timeout=60)
    return found.stdout.split()[-1]


class Live:
    """`emojicam live ARGS` running in the background; wait for its stdout lines one by one."""

    def __init__(self, *args, env: dict | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "emojicam", "live", *map(str, args)], cwd=ROOT,
                                     env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self._errors = threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True)
        self._errors.start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float = 180) -> str:
        """The next stdout line starting with prefix (a hang guard, not a speed check)."""
        while (line := self.lines.get(timeout=timeout)) is not None:
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        self.proc.wait(timeout=30)
        pytest.fail(f"live ended (rc {self.proc.returncode}) before printing {prefix!r}: {self.seen} "
                    f"{''.join(self.stderr)[-2000:]}")

    def finish(self, timeout: float = 180) -> tuple[int, list[str]]:
        rc = self.proc.wait(timeout=timeout)
        while (line := self.lines.get(timeout=timeout)) is not None:
            self.seen.append(line)
        self._errors.join(timeout=timeout)
        return rc, self.seen

    def error_lines(self) -> list[str]:
        """What it printed on stderr (after finish())."""
        return "".join(self.stderr).strip().splitlines()

    def __enter__(self) -> Live:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_fps_meter():
    meter = FpsMeter(window_s=1.0)
    assert meter.fps == 0 and meter.mean_fps == 0
    for i in range(31):               # 3 s at 10 fps ...
        meter.tick(100 + i * 0.1)
    assert meter.count == 31 and meter.fps == pytest.approx(10) and meter.mean_fps == pytest.approx(10)
    for i in range(1, 21):            # ... then 1 s at 20 fps: the recent rate follows, the mean lags
        meter.tick(103 + i * 0.05)
    assert meter.fps == pytest.approx(20) and meter.mean_fps == pytest.approx(50 / 4)
    meter.tick(110)                   # a 6 s stall: the window keeps the last two frames, not zero
    assert meter.fps == pytest.approx(1 / 6)


def test_latest_frame_slot_hands_over_newest_frame_once():
    slot = LatestFrame()
    for i in range(100):              # the reader outruns the loop: only the newest frame waits, nothing queues
        assert slot.put(np.full(1, i))
    got = slot.get()
    assert got[0] == 100 and got[1][0] == 99
    assert slot.get(timeout=0.01) is None  # the same frame is never handed over twice
    slot.put(np.full(1, 100))
    slot.close()
    assert slot.get()[1][0] == 100 and slot.get() is None and not slot.put(np.full(1, 0))

    lossless, received = LatestFrame(lossless=True), []
    def produce():
        for i in range(200):
            lossless.put(np.full(1, i))
        lossless.close()
    threading.Thread(target=produce).start()
    while (item := lossless.get()) is not None:
        received.append(int(item[1][0]))
    assert received == list(range(200))


def test_capture_lossless_and_paced(tmp_path):
    short = make_clip(tmp_path / "short.mp4", 1.5)
    expected = read_frames(short)
    with Capture(str(short), every_frame=True) as capture:
        frames = list(capture)
    assert capture.kind == "file" and capture.fps == 10 and capture.end_reason == "end of file" and not capture.failed
    assert len(frames) == len(expected) == 15
    assert all(np.array_equal(a, b) for a, b in zip(frames, expected, strict=True))

    with Capture(str(short)) as capture:  # paced at 10 fps: frames may drop, never repeat or go backwards
        assert capture.paced
        order = [next(i for i, e in enumerate(expected) if np.array_equal(f, e)) for f in capture]
    assert order == sorted(set(order)) and order[-1] == 14 and capture.end_reason == "end of file"


def test_window_run_records_every_frame_as_emoji_art(clip, xvfb, atlas, weights, tmp_path):
    out = tmp_path / "mirror.mp4"
    result = run_cli("live", "--source", clip, "--max-frames", 12, "--record", out, "--snapshots", tmp_path,
                     *ENGINE, "--weights", weights, env={"DISPLAY": xvfb})
    assert result.returncode == 0, result.stderr
    assert "first frame after" in result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("live: 12 frames") and "grid 16x9 (144 tiles)" in summary and "--max-frames" in summary
    recorded, source = read_frames(out), read_frames(clip)[:12]
    assert len(recorded) == 12 and recorded[0].shape[:2] == CANVAS
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FPS) == pytest.approx(10)
    for got, src in zip(recorded, source, strict=True):
        assert got.std() > 20                            # not blank
        assert emoji_misfit(got, atlas) < 25 < emoji_misfit(cv2.resize(src, CANVAS[::-1]), atlas)
        assert cell_corr(got, src) > 0.8 > cell_corr(got, src[:, ::-1])  # this frame, not mirrored (a file)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mirror.mp4"]  # no temp files left


def test_window_keys_and_screen(clip, xvfb, atlas, weights, tmp_path):
    out, snaps = tmp_path / "keys.mp4", tmp_path / "snaps"
    snaps.mkdir()
    with Live("--source", clip, "--record", out, "--snapshots", snaps, *ENGINE, "--weights", weights,
              env={"DISPLAY": xvfb}) as live:
        live.expect("first frame after")
        window = find_window(xvfb)

        def press(name: str, reply: str) -> str:
            key(xvfb, window, name)
            return live.expect(reply)

        def snapshot() -> np.ndarray:
            return cv2.imread(press("s", "snapshot: ").split(": ", 1)[1])

        press("space", "paused")  # the file's clock stops too: the clip cannot run out under the test
        plain = snapshot()
        assert plain.shape[:2] == CANVAS and emoji_misfit(plain, atlas) < 1  # lossless emoji art
        shot, deadline = tmp_path / "screen.png", time.monotonic() + 30
        display = {**os.environ, "DISPLAY": xvfb}
        while True:  # the paused frame stays; a loaded machine may show it some time after the key was handled
            # on top first: Xvfb has no compositor, so a window's picture is what the screen shows where it is
            subprocess.run(["xdotool", "windowraise", window], env=display, check=True, timeout=60)
            subprocess.run(["import", "-window", window, shot], env=display, check=True, timeout=60)
            screen = cv2.imread(str(shot))  # the 128x72 frame shown 10x, heads-up display over the top left
            assert screen.shape[:2] == (720, 1280)
            on_screen = cv2.resize(screen, CANVAS[::-1], interpolation=cv2.INTER_AREA).astype(int)
            if np.abs(on_screen[10:] - plain[10:]).max() <= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        windows = subprocess.run(["xdotool", "search", "--name", "."], env=display, capture_output=True, text=True,
                                 timeout=60).stdout.split()
        assert np.abs(on_screen[10:] - plain[10:]).max() <= 2, (window, windows, on_screen.mean(), plain.mean())
        assert on_screen[:7, :30].mean() < plain[:7, :30].mean()  # darkened behind the HUD text

        press("m", "mirror: on")
        mirrored = snapshot()
        assert cell_corr(mirrored, plain[:, ::-1]) > cell_corr(mirrored, plain)
        press("o", "view: side-by-side")
        side = snapshot()
        assert side.shape[:2] == (72, 256) and np.array_equal(side[:, 128:], mirrored)
        assert emoji_misfit(side[:, :128], atlas) > 25  # the left half is the (mirrored) input itself
        press("plus", "grid: 24 columns")  # a new grid shape: prepared in the background, shown once ready
        live.expect("grid: 24x14 ready")
        finer = snapshot()
        assert finer.shape[:2] == (112, 384)
        press("q", "live: ")
        rc, lines = live.finish()
    assert rc == 0, lines
    summary = lines[-1]
    assert "ended: q pressed" in summary and "grid 24x14" in summary
    assert int(summary.split()[1]) < CLIP_FRAMES
    recorded = read_frames(out)
    assert recorded and all(f.shape[:2] == CANVAS for f in recorded)  # one size, whatever was shown
    assert recorded[0][:10].mean() > 30 and recorded[-1][:10].mean() < 12  # side-by-side ends up letterboxed


def test_a_new_grid_is_prepared_while_the_picture_keeps_moving(clip, xvfb, weights, tmp_path):
    """`+` with empty caches (no captured TinyJits, no compiled kernels): the new grid compiles in the background
    while frames of the current grid keep being shown, and keys pressed meanwhile take effect once each."""
    env = {"DISPLAY": xvfb, "EMOJICAM_CACHE": str(tmp_path / "jits"), "CACHEDB": str(tmp_path / "kernels.db")}
    long_clip = make_clip(tmp_path / "long.mp4", 180)  # paced at 10 fps: cold compiles on 2 cores take a while
    with Live("--source", long_clip, *ENGINE, "--weights", weights, env=env) as live:
        live.expect("first frame after")
        window = find_window(xvfb)
        key(xvfb, window, "plus")
        live.expect("grid: 24 columns")
        # while 24x14 is being prepared (or just after) each press takes effect once; presses a frame apart, as
        # a person's are: OpenCV's Qt backend keeps only the last of the keys that arrive within one frame
        key(xvfb, window, "o")
        live.expect("view: side-by-side")
        key(xvfb, window, "o")
        live.expect("view: original")
        ready = live.expect("grid: 24x14 ready after")
        key(xvfb, window, "q")
        rc, lines = live.finish()
    assert rc == 0, lines
    shown_meanwhile = int(ready.split(", ")[1].split()[0])
    assert shown_meanwhile >= 2, f"frames stopped while the grid compiled: {ready}"
    assert [line for line in lines if line.startswith("view: ")] == ["view: side-by-side", "view: original"], lines
    assert "grid 24x14" in lines[-1] and "ended: q pressed" in lines[-1]


@pytest.mark.parametrize("sig, status, says", [(signal.SIGINT, 0, "interrupted (Ctrl-C)"),
                                               (signal.SIGTERM, 143, "interrupted (SIGTERM)")],
                         ids=["ctrl-c", "sigterm"])
def test_a_signal_finalises_the_recording(clip, weights, tmp_path, sig, status, says):
    """Ctrl-C is how a headless recording is stopped (status 0); SIGTERM does the same, and its status says so."""
    out = tmp_path / "stopped.mp4"
    with Live("--source", clip, "--no-window", "--record", out, *ENGINE, "--weights", weights) as live:
        live.expect("first frame after")
        live.proc.send_signal(sig)
        rc, lines = live.finish()
    assert rc == status and f"ended: {says}" in lines[-1]
    frames = int(lines[-1].split()[1])
    assert 1 <= frames < CLIP_FRAMES and len(read_frames(out)) == frames  # no window: every frame, in order
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stopped.mp4"]


@pytest.mark.parametrize("loss, says", [("server killed", "the stream stopped sending frames"),
                                        ("server stalled", "no frame for 5 s")])
def test_a_lost_stream_ends_live_on_one_line_and_keeps_the_recording(clip, weights, tmp_path, loss, says):
    out = tmp_path / "stream.mp4"
    with stream_server(clip) as (url, server), Live("--source", url, "--no-window", "--record", out, *ENGINE,
                                                     "--weights", weights) as live:
        live.expect("first frame after")
        server.send_signal(signal.SIGKILL if loss == "server killed" else signal.SIGSTOP)
        rc, lines = live.finish()
    errors = live.error_lines()
    assert rc == 2 and len(errors) == 1 and errors[0].startswith("emojicam: error: source: "), errors
    assert says in errors[0] and "the recording so far is kept" in errors[0] and f"ended: {says}" in lines[-1]
    assert len(read_frames(out)) >= 1 and stream_seconds(out, "v") > 0  # finished: it plays to its end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stream.mp4"]


def test_recording_onto_a_full_disk_ends_live_on_one_line(clip, weights, small_disk):
    disk = small_disk(16)  # 40 frames take about 48 kB
    result = run_cli("live", "--source", clip, "--no-window", "--record", disk / "full.mp4", "--max-frames", 40,
                     *ENGINE, "--weights", weights)
    line = one_line(result.stderr)
    assert result.returncode == 2 and line.startswith("emojicam: error: output: expected"), result.stderr[-2000:]
    assert str(disk / "full.mp4") in line and "No space left on device" in line
    assert list(disk.iterdir()) == []


def test_snapshot_onto_a_full_disk_ends_live_on_one_line_and_keeps_the_recording(clip, xvfb, weights, tmp_path,
                                                                                    small_disk):
    disk, out = small_disk(4), tmp_path / "kept.mp4"  # 4 kB: less than one snapshot
    with Live("--source", clip, "--record", out, "--snapshots", disk, *ENGINE, "--weights", weights,
              env={"DISPLAY": xvfb}) as live:
        live.expect("first frame after")
        found = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name", "^emojicam$"],
                               env={**os.environ, "DISPLAY": xvfb}, capture_output=True, text=True, timeout=60)
        key(xvfb, found.stdout.split()[-1], "s")
        rc, _ = live.finish()
    errors = live.error_lines()
    assert rc == 2 and len(errors) == 1 and errors[0].startswith("emojicam: error: output: expected"), errors
    assert f"{disk}/emojicam-" in errors[0] and "No space left on device" in errors[0]
    assert list(disk.iterdir()) == [] and len(read_frames(out)) >= 1 and stream_seconds(out, "v") > 0


@pytest.mark.parametrize("args, env, words", [
    (("--camera", "9", "--no-window"), {}, ("index 9", "v4l2-ctl")),
    (("--camera", "0"), {"DISPLAY": "", "WAYLAND_DISPLAY": ""}, ("display", "--no-window --record")),
    (("--source", "CLIP", "--no-window", "--virtual-camera"), {}, ("--virtual-camera", "install")),
], ids=["no-camera", "no-display", "no-virtual-camera"])
def test_errors_are_one_line(clip, weights, args, env, words):
    if "--virtual-camera" in args and glob.glob("/sys/devices/virtual/video4linux/video*"):
        pytest.skip("a v4l2loopback device exists here: the virtual camera would work")
    result = run_cli("live", *[clip if a == "CLIP" else a for a in args], "--weights", weights, env=env, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("emojicam: error: "), result.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_keys_return_the_view_they_leave(capsys):
    from emojicam.live.mirror import View
    from emojicam.live.window import on_key

    steps, view = [8, 16, 24], View(16, mirror=False)
    assert on_key(ord("+"), view, steps) == (View(24, False), "") and view == View(16, False), "a new view, not this"
    assert on_key(ord("-"), View(8, False), steps) == (View(8, False), ""), "no coarser step: unchanged"
    assert on_key(ord("m"), view, steps)[0].mirror and on_key(ord(" "), view, steps)[0].paused
    assert [on_key(ord("o"), View(16, False, look), steps)[0].look for look in ("emoji", "side-by-side")] == \
        ["side-by-side", "original"]
    assert on_key(ord("q"), view, steps) == (view, "quit") and on_key(27, view, steps) == (view, "quit")
    assert on_key(ord("s"), view, steps) == (view, "snapshot")
    assert capsys.readouterr().out.splitlines() == ["grid: 24 columns", "grid: 8 columns", "mirror: on", "paused",
                                                    "view: side-by-side", "view: original"]


def press_s(display: str, window: str, live: Live, folder: Path) -> str:
    """Press s and return the snapshot's path: the picture shown when the key was read (the grid is compiled in the
    background meanwhile, seconds from empty caches: the key is read within a frame, 30 ms while preparing)."""
    key(display, window, "s")
    path = live.expect("snapshot: ").split(": ", 1)[1]
    assert Path(path).parent == folder
    return path


def test_a_first_start_shows_the_source_while_its_grid_compiles(xvfb, atlas, weights, tmp_path):
    """Empty caches: the window shows the camera's (here the paced file's) picture at once, with how far the grid's
    preparation is in the heads-up display, and the emoji once the grid is ready; the recording holds emoji only."""
    env = {"DISPLAY": xvfb, "EMOJICAM_CACHE": str(tmp_path / "jits"), "CACHEDB": str(tmp_path / "kernels.db")}
    long_clip = make_clip(tmp_path / "long.mp4", 180)
    source, out = read_frames(long_clip)[:600:10], tmp_path / "first.mp4"
    with Live("--source", long_clip, "--record", out, "--snapshots", tmp_path, *ENGINE, "--weights", weights,
              env=env) as live:
        said = live.expect("preparing 16x9: ")
        assert "showing the source meanwhile" in said and "a first start compiles" in said, said
        window = find_window(xvfb)
        shown = cv2.imread(press_s(xvfb, window, live, tmp_path))  # what the window shows, without the display
        live.expect("first frame after", timeout=600)
        key(xvfb, window, "q")
        rc, lines = live.finish()
    assert rc == 0, lines
    assert shown.shape[:2] == CANVAS and shown.std() > 20, "the picture at the grid's size, not blank"
    assert emoji_misfit(shown, atlas) > 25, "the source itself, not emoji"
    assert max(cell_corr(shown, cv2.resize(f, CANVAS[::-1], interpolation=cv2.INTER_AREA)) for f in source) > 0.95
    recorded = read_frames(out)
    assert recorded and max(emoji_misfit(f, atlas) for f in recorded) < 25, "no preparation frame was recorded"


def test_running_line_every_30_s_in_a_log(capsys):
    """A log (not a terminal) gets the frames so far and the rate since the line before, every 30 s."""
    from emojicam.live.window import RunningLine

    line = RunningLine(every_s=30, on=True)
    said = [line(frames, now) for frames, now in ((0, 0.0), (1, 1.0), (100, 20.0), (301, 31.0), (500, 50.0),
                                                  (901, 61.0))]
    assert said == ["", "", "", "running: 301 frames, 10.0 fps over the last 30 s", "",
                    "running: 901 frames, 20.0 fps over the last 30 s"]
    assert capsys.readouterr().out.splitlines() == [s for s in said if s]
    assert RunningLine(every_s=30, on=False)(1000, 1e6) == ""  # a terminal: the heads-up display says it
