"""`emojicam web`: the site it writes, served by `emojicam web --serve`, in a real headless Chromium with WebGPU on
SwiftShader (software) and a fake camera playing a clip made here: emoji frames from the camera whose cells are
tiles of the set, the HUD, the keys, the same picks as the Python engine on the CPU device for the same bytes, the
benchmark mode, no request outside the page's origin, no error logged; and the one-sentence messages without
WebGPU or without a camera. SwiftShader runs about 1 GFLOP/s here, so the grids are small (16x9, 32x18)."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from browser import Chromium, fake_camera_flags, need_chromium
from conftest import ROOT, need_tool, run_cli
from media import FFMPEG, ffmpeg
from test_text import SEQUENCES, read_back  # the set's emoji as text, independently of emojicam.media.text

from emojicam import model as model_io
from emojicam.emoji_set import EmojiSet
from emojicam.engine import Emojifier, Settings
from emojicam.gpu_kernels import LIMITS, Kernel, violations, workgroup_bytes
from emojicam.web.site import DEFAULT_GRIDS, SITE_FILES, over_webgpu_defaults, parse_grids

GRIDS = "16x9,32x18"
PHOTO = ROOT / "samples" / "grace_hopper.jpg"
TILE = 16



@pytest.fixture
def needs_chromium() -> None:
    need_chromium()


@dataclass(frozen=True)
class Served:
    """A site written and served by `emojicam web OUT --serve --port 0`."""

    url: str
    site: Path
    process: subprocess.Popen


@contextlib.contextmanager
def serve_site(out: Path, *args: str, says: str = "wrote") -> Iterator[Served]:
    """Run `emojicam web out --serve --port 0 ARGS` until it prints its URL, having said `says` (wrote, or kept an
    unchanged site); SIGTERM at the end, which must stop it as Ctrl-C does (exit 128 + 15, one line)."""
    process = subprocess.Popen([sys.executable, "-m", "emojicam", "web", str(out), "--serve", "--port", "0", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        deadline, said = time.monotonic() + 600, []
        while not (said and " at http://127.0.0.1:" in said[-1]):
            assert process.poll() is None, f"emojicam web exited {process.returncode}: {process.stderr.read()[-2000:]}"
            with contextlib.suppress(queue.Empty):
                said.append(lines.get(timeout=max(0.1, min(1.0, deadline - time.monotonic()))))
            assert time.monotonic() < deadline, f"no URL printed: {said}"
        assert said[0].startswith(f"{says} {out}: {len(SITE_FILES)} files"), said
        yield Served(said[-1].split(" at ")[1].split()[0], out, process)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 128 + signal.SIGTERM, (code, process.stderr.read())


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """sites(model) -> that shipped model's site at GRIDS, written and served once for the module."""
    served: dict[str, Served] = {}
    with contextlib.ExitStack() as stack:
        def get(model: str) -> Served:
            if model not in served:
                out = tmp_path_factory.mktemp("web") / f"site-{model}"
                served[model] = stack.enter_context(serve_site(out, "--grids", GRIDS, "--model", model))
            return served[model]
        yield get


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory) -> Path:
    """What the fake camera plays: FFmpeg's moving test pattern, 640x360 (a 16:9 camera), 6 s in a loop (long
    enough that two frames a few seconds apart never show the same moment of the loop)."""
    clip = tmp_path_factory.mktemp("camera") / "camera.y4m"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=15:duration=6", "-pix_fmt", "yuv420p", clip)
    return clip


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory) -> Path:
    """A camera looking at a still picture: the photo with fresh sensor-like noise in every frame, 1 s in a loop."""
    clip = tmp_path_factory.mktemp("camera") / "still.y4m"
    ffmpeg("-loop", "1", "-i", PHOTO, "-vf", "scale=640:360,noise=alls=4:allf=t,format=yuv420p", "-r", "15", "-t", "1",
           clip)
    return clip


def state(browser: Chromium, tab: str) -> dict:
    return browser.evaluate("window.emojicam.state()", tab)


def frames_after(browser: Chromium, tab: str, count: int, timeout: float = 120) -> dict:
    """The page's state once it has shown `count` more frames."""
    start = state(browser, tab)["frames"]
    browser.wait_for(f"window.emojicam.state().frames >= {start + count}", tab, timeout=timeout)
    return state(browser, tab)


def captured(browser: Chromium, tab: str) -> tuple[dict, np.ndarray]:
    """The next frame the page draws: its picks and backgrounds, and its canvas as (H, W, 3) RGB."""
    frame = browser.evaluate("window.emojicam.frame()", tab)
    rgba = np.frombuffer(base64.b64decode(frame["pixels"]), np.uint8).reshape(frame["height"], frame["width"], 4)
    return frame, rgba[..., :3].astype(np.float32)


def tiles_rgb(emoji_set: EmojiSet) -> tuple[np.ndarray, np.ndarray]:
    """Every emoji of the set at TILE px, resized here from its PNG: (K, t*t, 3) premultiplied RGB, (K, t*t)
    uncovered share (1 - alpha)."""
    small = np.stack([cv2.resize(im, (TILE, TILE), interpolation=cv2.INTER_AREA) for im in emoji_set.bgra])
    alpha = small[..., 3:].astype(np.float32) / 255
    premult = small[..., 2::-1].astype(np.float32) * alpha
    return premult.reshape(len(small), -1, 3), (1 - alpha).reshape(len(small), -1)


def cells_of(image: np.ndarray, cols: int, rows: int) -> np.ndarray:
    return image.reshape(rows, TILE, cols, TILE, 3).transpose(0, 2, 1, 3, 4).reshape(rows * cols, TILE * TILE, 3)


def nearest_tiles(cells: np.ndarray, premult: np.ndarray, uncovered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the set's emoji it looks most like drawn over a flat background (the best one per emoji, by least
    squares, as `auto` chooses one per cell), and the mean absolute difference in levels from that drawing."""
    weight = (uncovered**2).sum(1)[None, :, None] + 1e-6
    back = (np.einsum("kp,npc->nkc", uncovered, cells) - np.einsum("kp,kpc->kc", uncovered, premult)[None]) / weight
    back = back.clip(0, 255)
    drawn = premult[None] + uncovered[None, :, :, None] * back[:, :, None, :]
    error = np.abs(drawn - cells[:, None]).mean((2, 3))
    return error.argmin(1), error.min(1)


# --- the site, without a browser ----------------------------------------------------------------------------------

def test_grids_are_parsed_and_bad_ones_refused():
    assert parse_grids("64x36, 32x18,32x18") == ((32, 18), (64, 36))
    for bad in ("64", "64x", "0x9", "x9", "64x36,abc", "600x10"):
        done = run_cli("web", "unused", "--grids", bad)
        assert done.returncode == 2 and done.stderr.startswith("emojicam: error: --grids: expected COLSxROWS"), bad
        assert done.stderr.count("\n") == 1 and not (ROOT / "unused").exists()


def test_an_out_dir_with_other_files_is_left_alone(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    done = run_cli("web", out, "--grids", "4x2")
    assert done.returncode == 2 and "expected a new or empty folder or an earlier `emojicam web` site" in done.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    (tmp_path / "file").write_text("x")
    done = run_cli("web", tmp_path / "file", "--grids", "4x2", "--port", "70000", "--serve")
    assert done.returncode == 2 and "--port: expected 0..65535" in done.stderr


def test_the_site_holds_its_own_files_and_kernels_within_webgpu_limits(sites):
    site = sites("default").site
    assert sorted(p.name for p in site.iterdir()) == sorted(SITE_FILES), "no temporary folder or file left"
    html = (site / "index.html").read_text()
    assert "://" not in html and html.count("<script src=") == 5
    manifest = json.loads((site / "manifest.js").read_text().split(" = ", 1)[1].rstrip().rstrip(";"))
    weights = json.loads((site / "weights.js").read_text().split(" = ", 1)[1].rstrip().rstrip(";"))
    kernels = json.loads((site / "kernels.js").read_text().splitlines()[1].split(" = ", 1)[1].rstrip(";"))
    webgpu = LIMITS["WEBGPU"]
    assert [g["name"] for g in manifest["grids"]] == ["16x9", "32x18"] and manifest["emoji"] == SEQUENCES
    for grid in manifest["grids"]:
        for program in grid["programs"].values():
            for d in program:
                assert len(d["bindings"]) <= webgpu.buffers and np.prod(d["threads"]) <= webgpu.threads_per_group
                assert d["over_webgpu_defaults"] == [] and d["workgroup_bytes"] <= webgpu.workgroup_bytes
                assert max(d["workgroups"]) <= webgpu.global_size[0] and d["kernel"] in kernels
                assert all(0 <= b < len(grid["buffers"]) for b in d["bindings"])
        consts = [b["data"] for b in grid["buffers"] if b["kind"] == "const"]
        assert all(len(base64.b64decode(weights[key])) == b["bytes"] for key, b in zip(
            consts, [b for b in grid["buffers"] if b["kind"] == "const"], strict=True))
        assert {b["name"] for b in grid["buffers"] if b["kind"] in ("input", "output")} == {
            "rgba", "prev", "margin", "picks", "back"}
        assert list(grid["programs"]) == ["pick"] and 3 <= grid["network"] < len(grid["programs"]["pick"])


# --- the mirror: a fake camera, WebGPU on SwiftShader ---------------------------------------------------------------

@pytest.fixture(scope="module")
def mirror(sites, camera_clip):
    """One page of the default site with the fake camera, started on 16x9, having shown two frames."""
    need_chromium()
    served = sites("default")
    with Chromium(timeout=180, webgpu=True, flags=fake_camera_flags(camera_clip)) as browser:
        tab = browser.open(served.url + "#grid=16x9", watch=True)
        browser.call("Browser.grantPermissions", {"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
        frames_after(browser, tab, 2)
        yield browser, tab, served


def test_the_mirror_shows_emoji_frames_that_follow_the_camera(mirror):
    browser, tab, _ = mirror
    now = frames_after(browser, tab, 1)
    assert now["message"] == "" and now["grid"] == "16x9" and now["fps"] > 0, now
    assert now["adapter"]["architecture"] == "swiftshader", now["adapter"]
    hud = browser.evaluate("document.getElementById('hud').textContent", tab)
    assert " fps  grid 16x9 (144 tiles)" in hud and "google swiftshader" in hud
    assert "classify " in hud and "draw " in hud and "+/- grid" in hud, hud
    assert "main thread " in hud and now["stages"]["main"] > 0 and now["stages"]["latency"] > now["stages"]["main"]
    assert now["inFlightMost"] == 2, "SwiftShader is the bottleneck: the next frame is encoded while one runs"
    first, image = captured(browser, tab)
    assert image.std() > 20, "the canvas is not blank"
    time.sleep(1.5)  # the test pattern moves
    second, later = captured(browser, tab)
    assert np.abs(later - image).mean() > 1 and first["picks"] != second["picks"], "the picture changes"


def test_the_mirror_cells_are_tiles_of_the_set_over_their_background(mirror):
    browser, tab, _ = mirror
    frame, image = captured(browser, tab)
    assert frame["grid"] == "16x9" and image.shape == (9 * TILE, 16 * TILE, 3)
    premult, uncovered = tiles_rgb(EmojiSet.load())
    cells, picks = cells_of(image, 16, 9), np.array(frame["picks"])
    back = np.array(frame["back"], np.float32).reshape(-1, 1, 3)
    drawn = premult[picks] + uncovered[picks][..., None] * back  # the picked tile over the cell's background
    assert np.abs(drawn - cells).max() <= 1.0, "each cell is its picked tile, to the rounding of a level"
    nearest, error = nearest_tiles(cells, premult, uncovered)
    assert error.max() < 1.0, f"cells that are no tile of the set: {np.flatnonzero(error >= 1.0)}"
    assert (nearest == picks).mean() > 0.95, "the nearest tile is the picked one (or one drawn the same)"


def test_the_mirror_keys(mirror):
    browser, tab, _ = mirror
    browser.press("m", tab)
    assert state(browser, tab)["mirror"] is False
    browser.press("m", tab)
    browser.press("o", tab)
    assert state(browser, tab)["view"] == "side-by-side"
    _, image = captured(browser, tab)
    assert image.shape == (9 * TILE, 2 * 16 * TILE, 3), "the picture beside the emoji"
    for _ in range(2):
        browser.press("o", tab)
    assert state(browser, tab)["view"] == "emoji"
    browser.press(" ", tab)
    browser.wait_for("window.emojicam.state().inFlight === 0", tab)  # the frames under way when the key came
    paused = state(browser, tab)
    time.sleep(2)
    assert paused["paused"] and state(browser, tab)["frames"] == paused["frames"], "paused: no new frames"
    browser.press(" ", tab)
    frames_after(browser, tab, 1)
    browser.press("s", tab)
    browser.wait_for("window.emojicam.state().snapshots === 1", tab)
    browser.press("c", tab)
    browser.wait_for("document.getElementById('status').textContent.startsWith('copied')", tab)
    copied = browser.evaluate("navigator.clipboard.readText()", tab, gesture=True)
    assert [len(row) for row in read_back(copied)] == [16] * 9 and copied.endswith("\n"), copied


def webm_frames(path: Path) -> tuple[list[np.ndarray], str]:
    """Every frame FFmpeg decodes from a recording (RGB float32, at its own size), and what FFmpeg says it holds."""
    about = subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, text=True,
                           errors="replace").stderr
    w, h = map(int, re.search(r"Video: \w+.*?, (\d+)x(\d+)", about).groups())
    raw = subprocess.run([FFMPEG, "-v", "error", "-nostdin", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "-"], capture_output=True, timeout=120, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3).astype(np.float32)
    return list(frames), about


def test_record_snapshot_and_copy_buttons_give_files_and_text(mirror, tmp_path):
    """Record (the button, then the key r to stop) a few seconds of the fake camera's mirror to a WebM the browser
    downloads, with the fake microphone's sound; FFmpeg decodes it into frames whose cells are tiles of the set.
    The photo button downloads a PNG of the emoji frame."""
    browser, tab, _ = mirror
    browser.call("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    browser.evaluate("document.getElementById('record').click()", tab, gesture=True)
    browser.wait_for("window.emojicam.state().recording", tab)
    start = state(browser, tab)["frames"]
    browser.wait_for(f"window.emojicam.state().frames >= {start + 6}", tab, timeout=120)
    indicator = browser.evaluate("[getComputedStyle(document.getElementById('recording')).display, "
                                 "document.getElementById('recording').textContent]", tab)
    assert indicator[0] != "none" and re.fullmatch(r"\u25cf REC 0:\d\d", indicator[1]), indicator
    assert browser.evaluate("document.getElementById('record').textContent", tab) == "Stop"
    time.sleep(max(0.0, 3 - int(indicator[1][-2:])))  # at least 3 s recorded
    browser.press("r", tab)
    browser.wait_for("window.emojicam.state().recordings === 1", tab)
    deadline = time.monotonic() + 60
    while not (videos := [p for p in tmp_path.glob("*.webm") if p.stat().st_size > 0]):
        assert time.monotonic() < deadline, list(tmp_path.iterdir())
        time.sleep(0.2)
    assert not browser.evaluate("window.emojicam.state().recording", tab)
    said = browser.evaluate("document.getElementById('status').textContent", tab)
    assert said.startswith("recorded emojicam-") and "silent" not in said, said
    frames, about = webm_frames(videos[0])
    assert "Audio: opus" in about, "the fake microphone's sound is in the recording"
    assert len(frames) >= 4 and frames[0].shape == (9 * TILE, 16 * TILE, 3), (len(frames), frames[0].shape)
    premult, uncovered = tiles_rgb(EmojiSet.load())
    errors = np.concatenate([nearest_tiles(cells_of(f, 16, 9), premult, uncovered)[1] for f in frames[-3:]])
    # VP8/VP9 at 256x144 blurs a 16 px tile's edges and colours (measured: median 7 levels from the nearest drawn
    # tile); a photo, cut the same way, is far from every tile (26): the check tells emoji from a picture
    camera = cv2.resize(cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB), (16 * TILE, 9 * TILE),
                        interpolation=cv2.INTER_AREA).astype(np.float32)
    control = nearest_tiles(cells_of(camera, 16, 9), premult, uncovered)[1]
    assert np.median(errors) < 10 and np.median(control) > 2 * np.median(errors), (np.median(errors),
                                                                                   np.median(control))
    shots = state(browser, tab)["snapshots"]
    browser.evaluate("document.getElementById('snapshot').click()", tab, gesture=True)
    browser.wait_for(f"window.emojicam.state().snapshots === {shots + 1}", tab)
    deadline = time.monotonic() + 60
    while not (pngs := [p for p in tmp_path.glob("*.png") if p.stat().st_size > 0]):
        assert time.monotonic() < deadline, list(tmp_path.iterdir())
        time.sleep(0.2)
    photo = cv2.imread(str(pngs[0]))
    assert photo.shape == (9 * TILE, 16 * TILE, 3)
    assert np.median(nearest_tiles(cells_of(photo[..., ::-1].astype(np.float32), 16, 9), premult, uncovered)[1]) < 1
    browser.evaluate("document.getElementById('copy').click()", tab, gesture=True)
    browser.wait_for("document.getElementById('status').textContent.startsWith('copied')", tab)
    copied = browser.evaluate("navigator.clipboard.readText()", tab, gesture=True)
    assert [len(row) for row in read_back(copied)] == [16] * 9, copied


ACTIONS = ("grid-down", "grid-up", "model", "mirror", "view-mode", "facing", "record", "snapshot", "copy", "bench")


@pytest.mark.usefixtures("needs_chromium")
def test_on_a_phone_the_page_fits_and_every_action_has_a_button_a_thumb_reaches(sites, camera_clip, tmp_path):
    """390x844 CSS px, touch, portrait: no sideways scroll, the mirror as wide as the screen, a button of at least
    44 px for every action in the lower half of the screen, and a tap on the camera button asks for the back one."""
    width, height = 390, 844
    with Chromium(timeout=180, webgpu=True, flags=fake_camera_flags(camera_clip)) as browser:
        tab = browser.open(sites("auto").url + "#grid=16x9", size=(width, height), phone=True, watch=True)
        frames_after(browser, tab, 1)
        page = browser.evaluate("({scroll: document.documentElement.scrollWidth, inner: innerWidth, "
                                "touch: navigator.maxTouchPoints, "
                                "view: document.getElementById('view').getBoundingClientRect().toJSON()})", tab)
        assert page["inner"] == width and page["scroll"] <= width and page["touch"] > 0, page
        assert page["view"]["width"] >= width - 1 and page["view"]["left"] <= 1, page["view"]
        boxes = browser.evaluate(f"{json.dumps(ACTIONS)}.map(id => document.getElementById(id)"
                                 ".getBoundingClientRect().toJSON())", tab)
        for name, box in zip(ACTIONS, boxes, strict=True):
            assert box["width"] >= 44 and box["height"] >= 44, (name, box)
            inside = box["left"] >= 0 and box["right"] <= width and box["bottom"] <= height
            assert inside and box["top"] >= height / 2, (name, box)
        # every label fits its button and every HUD line the screen (a phone once cut "Benchmark" and the HUD)
        cut = browser.evaluate(f"{json.dumps([*ACTIONS, 'hud'])}.filter(id => {{ const e = "
                               "document.getElementById(id); return e.scrollWidth > e.clientWidth + 1; })", tab)
        assert cut == [], cut
        cv2.imwrite(str(tmp_path / "web-phone.png"), browser.screenshot(tab))
        facing = boxes[ACTIONS.index("facing")]
        browser.tap(facing["left"] + facing["width"] / 2, facing["top"] + facing["height"] / 2, tab)
        browser.wait_for("window.emojicam.state().cameraFacing === 'environment'", tab)
        now = frames_after(browser, tab, 1)
        assert now["facing"] == "environment" and now["mirror"] is False and now["message"] == "", now


def test_plus_and_minus_change_the_grid(mirror):
    browser, tab, _ = mirror
    browser.press("-", tab)
    assert "coarsest" in browser.evaluate("document.getElementById('status').textContent", tab)
    browser.press("+", tab)
    assert state(browser, tab)["wanted"] == "32x18"
    browser.wait_for("window.emojicam.state().grid === '32x18'", tab, timeout=120)
    frame, image = captured(browser, tab)
    assert frame["grid"] == "32x18" and image.shape == (18 * TILE, 32 * TILE, 3) and len(frame["picks"]) == 576


def test_the_mirror_asked_nothing_of_other_origins_and_logged_no_error(mirror):
    browser, tab, served = mirror
    origin = served.url.rstrip("/")
    urls = [e["request"]["url"] for e in browser.events_of(tab, "Network.requestWillBeSent")]
    assert f"{origin}/weights.js" in urls and f"{origin}/app.js" in urls
    outside = [u for u in urls if not (u.startswith(origin + "/") or u.startswith(f"blob:{origin}/")
                                       or u.startswith("data:"))]
    assert outside == [], outside
    errors = [e for e in browser.events_of(tab, "Runtime.consoleAPICalled") if e["type"] in ("error", "assert")]
    errors += browser.events_of(tab, "Runtime.exceptionThrown")
    errors += [e for e in browser.events_of(tab, "Log.entryAdded") if e["entry"]["level"] == "error"]
    assert errors == [], errors


@pytest.mark.usefixtures("needs_chromium")
def test_the_site_runs_opened_from_a_folder(sites, still_clip):
    """No server: index.html opened as a file (a USB stick) loads its scripts beside it, which fetch() could not."""
    with Chromium(timeout=180, webgpu=True, flags=fake_camera_flags(still_clip)) as browser:
        tab = browser.open((sites("default").site / "index.html").as_uri() + "#grid=16x9", watch=True)
        now = frames_after(browser, tab, 1)
        assert now["message"] == "" and now["grid"] == "16x9"
        urls = [e["request"]["url"] for e in browser.events_of(tab, "Network.requestWillBeSent")]
        assert all(u.startswith(("file://", "data:", "blob:")) for u in urls), urls


@pytest.mark.usefixtures("needs_chromium")
def test_a_still_picture_keeps_its_emoji(sites, still_clip):
    """No flicker: on a still picture with noise, each cell keeps its emoji (hysteresis, as in Python)."""
    with Chromium(timeout=180, webgpu=True, flags=fake_camera_flags(still_clip)) as browser:
        tab = browser.open(sites("default").url + "#grid=16x9", watch=True)
        frames_after(browser, tab, 2)
        picks = [np.array(captured(browser, tab)[0]["picks"]) for _ in range(5)]
    changed = [float(np.mean(a != b)) for a, b in itertools.pairwise(picks)]
    assert max(changed) <= 0.01, changed


# --- the same emoji as Python ---------------------------------------------------------------------------------------

@pytest.mark.usefixtures("needs_chromium")
@pytest.mark.parametrize("model", ["default", "fast"])
def test_the_page_picks_what_the_python_engine_picks_for_the_same_bytes(sites, model):
    """The bytes the page would classify (RGBA at the grid's patch resolution) to the page's kernels and to the
    Python engine on the CPU device, at two grids: a first frame, then a changed one against its picks
    (hysteresis). Both networks of one site (`--model auto`). Measured on SwiftShader: 100% of cells agree at both
    grids with both models."""
    served = sites("auto")
    weights_path = model_io.shipped_weights("default", model)
    emoji_set = EmojiSet.load()
    engine = Emojifier(model_io.load(weights_path, "CPU"), emoji_set,
                       Settings(device="CPU", composite="host", cpu_threads=1, stability=1.0))
    p = engine.patch_px
    photo = cv2.imread(str(PHOTO))
    with Chromium(timeout=180, webgpu=True) as browser:
        tab = browser.open(served.url, watch=True)
        browser.wait_for("window.emojicam && window.emojicam.state().adapter", tab)
        for grid in parse_grids(GRIDS):
            cols, rows = grid
            name = f"{cols}x{rows}"
            first = cv2.cvtColor(cv2.resize(photo, (cols * p, rows * p), interpolation=cv2.INTER_AREA),
                                 cv2.COLOR_BGR2RGBA)
            second = np.roll(first, 5, axis=1)
            second[..., :3] = np.clip(second[..., :3].astype(np.int16) + 12, 0, 255)
            prev = None
            for rgba in (first, second):
                patches = np.ascontiguousarray(
                    rgba[..., :3].reshape(rows, p, cols, p, 3).transpose(0, 2, 1, 3, 4).reshape(-1, p, p, 3))
                b64 = base64.b64encode(rgba.tobytes()).decode()
                page = np.array(browser.evaluate(
                    f"window.emojicam.classify('{name}', '{b64}', {json.dumps(prev)}, '{model}')", tab))
                python = engine.classify(patches, None if prev is None else np.array(prev))
                agree = float((page == python).mean())
                assert agree >= 0.995, f"{model} {name}: {agree:.2%} of cells agree"
                prev = page.tolist()
    engine.close()


@pytest.mark.usefixtures("needs_chromium")
def test_the_camera_path_gives_what_convert_gives_for_the_same_still(sites, tmp_path):
    """The page's own cut (the camera picture copied to the GPU, cropped, mirrored or not, area-resized there)
    against `emojicam convert` of the same picture: a still through the fake camera (mirror off: convert does not
    mirror) and FFmpeg's decoding of that clip's frame (BT.709, bilinear chroma: as Chromium converts the fake
    camera's I420; measured 0.02 levels from the page's cut) through convert --cols 16, the same network. Each
    cell's emoji is read back from both pictures as the set's tile it is drawn as."""
    still = tmp_path / "still.png"
    ffmpeg("-i", PHOTO, "-vf", "scale=640:360", still)
    clip = tmp_path / "still.y4m"
    ffmpeg("-loop", "1", "-i", still, "-pix_fmt", "yuv420p", "-r", "15", "-t", "1", clip)
    seen = tmp_path / "seen.png"  # what the camera shows
    ffmpeg("-i", clip, "-frames:v", "1", "-vf",
           "scale=in_color_matrix=bt709:flags=bilinear+accurate_rnd+full_chroma_int+full_chroma_inp", seen)
    done = run_cli("convert", seen, tmp_path / "emoji.png", "--cols", "16", "--tile", str(TILE), "--model", "default",
                   "--device", "CPU")
    assert done.returncode == 0, done.stderr
    converted = cv2.imread(str(tmp_path / "emoji.png"))[..., ::-1].astype(np.float32)
    assert converted.shape == (9 * TILE, 16 * TILE, 3)
    with Chromium(timeout=180, webgpu=True, flags=fake_camera_flags(clip)) as browser:
        tab = browser.open(sites("auto").url + "#model=default&grid=16x9", watch=True)
        frames_after(browser, tab, 1)
        browser.press("m", tab)
        frames_after(browser, tab, 3)
        frame, image = captured(browser, tab)
        mirrored = browser.evaluate("window.emojicam.state().mirror", tab)
        browser.press("m", tab)
        frames_after(browser, tab, 3)
        _, flipped = captured(browser, tab)
    assert frame["model"] == "default" and frame["grid"] == "16x9" and mirrored is False
    premult, uncovered = tiles_rgb(EmojiSet.load())
    drawn = {name: nearest_tiles(cells_of(picture, 16, 9), premult, uncovered)
             for name, picture in (("convert", converted), ("page", image), ("mirrored", flipped))}
    assert max(error.max() for _, error in drawn.values()) < 1.0, {k: float(e.max()) for k, (_, e) in drawn.items()}
    agree = float((drawn["page"][0] == drawn["convert"][0]).mean())
    assert agree >= 0.97, f"{agree:.1%} of cells agree with convert"
    # mirrored, most emoji differ from convert's: a wrong flip would not pass the check above
    assert float((drawn["mirrored"][0] == drawn["convert"][0]).mean()) < 0.5


@pytest.mark.usefixtures("needs_chromium")
def test_the_page_chooses_the_grid_and_network_by_the_device_speed_and_the_address_overrides(sites, camera_clip):
    """Both networks on the site; on SwiftShader (about 1 fps, far below 24) the automatic choice stays on the
    cheapest rung, the fast network at the smallest grid, and says so; #model= and #grid= choose instead, and the
    network button switches."""
    served = sites("auto")
    with Chromium(timeout=180, webgpu=True, flags=fake_camera_flags(camera_clip)) as browser:
        tab = browser.open(served.url, watch=True)
        browser.wait_for("window.emojicam.ladder().length", tab)
        assert browser.evaluate("window.emojicam.ladder()", tab) == ["fast 16x9", "default 16x9", "fast 32x18",
                                                                     "default 32x18"]
        browser.wait_for("window.emojicam.state().choice.includes('the smallest')", tab, timeout=300)
        now = state(browser, tab)
        assert now["model"] == "fast" and now["grid"] == "16x9" and now["wantedKey"] == "fast 16x9", now
        hud = browser.evaluate("document.getElementById('hud').textContent", tab)
        assert "auto: fast 16x9, the smallest" in hud and "fast network (18 px)" in hud, hud
        assert not browser.evaluate("document.getElementById('model').hidden", tab)
        browser.evaluate("document.getElementById('model').click()", tab, gesture=True)
        browser.wait_for("window.emojicam.state().model === 'default'", tab, timeout=120)
        assert state(browser, tab)["choice"] == "chosen: default 16x9"
        tab = browser.open(served.url + "#model=default&grid=32x18", watch=True)
        frames_after(browser, tab, 1)
        now = state(browser, tab)
        assert now["model"] == "default" and now["grid"] == "32x18" and now["choice"].startswith("chosen"), now
        limits = ("(binding => { const l = {}; for (const k in app.gpu.device.limits) l[k] = app.gpu.device.limits[k]; "
                  "if (binding) l.maxStorageBufferBindingSize = binding; return l; })")
        assert now["leftOut"] == []
        assert browser.evaluate(f"window.emojicam.unfit('default 32x18', {limits}(0))", tab) is None
        small = browser.evaluate(f"window.emojicam.unfit('default 32x18', {limits}(2 ** 20))", tab)
        assert small.startswith("grid default 32x18 needs a ") and "more than this GPU allows (1 MiB)" in small


# --- the benchmark, the messages, the server ------------------------------------------------------------------------

@pytest.mark.usefixtures("needs_chromium")
def test_the_benchmark_times_the_grids_asked_for_and_gives_json(sites, tmp_path):
    served = sites("default")
    with Chromium(timeout=300, webgpu=True) as browser:
        tab = browser.open(served.url + "#bench=16x9", watch=True)  # #bench alone: every grid
        text = browser.wait_for("document.getElementById('status').textContent.startsWith('benchmark done') && "
                                "document.getElementById('json').value", tab, timeout=300, every=1)
        shown = browser.evaluate("document.getElementById('table').textContent", tab)
    report = json.loads(text)
    assert report["environment"]["adapter"]["architecture"] == "swiftshader" and "Chrome" in report["environment"][
        "browser"]
    assert [r["grid"] for r in report["records"]] == ["16x9"] and "end-to-end fps" in shown
    for r in report["records"]:
        assert r["forward_fps"] > 0 and r["classify_fps"] > 0 and r["e2e_fps"] > 0 and r["achieved_gflops"] > 0
        assert r["kernels_per_frame"] >= 3 and r["ms"]["e2e"] > 0 and 0 < r["main_ms_per_frame"] < r["ms"]["e2e"]
        assert r["frames_in_flight"] == 2 and r["forward_dispatches"] >= 3
        assert r["gflop_per_frame"] == pytest.approx(r["patches"] * r["flops_per_patch"] / 1e9)
    (tmp_path / "laptop.json").write_text(text)
    done = subprocess.run([sys.executable, ROOT / "benchmarks" / "web_results.py", tmp_path / "laptop.json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "| google swiftshader | HeadlessChrome " in done.stdout and "| default 16x9 | 144 |" in done.stdout


@pytest.mark.usefixtures("needs_chromium")
def test_without_webgpu_the_page_says_so_in_one_sentence(sites):
    with Chromium(timeout=60) as browser:  # --disable-gpu, no --enable-unsafe-webgpu: requestAdapter() gives null
        tab = browser.open(sites("default").url, watch=True)
        message = browser.wait_for("window.emojicam.state().message", tab)
        assert message.startswith("This browser has no WebGPU") and "Chrome" in message and message.count(". ") == 0
        assert browser.evaluate("getComputedStyle(document.getElementById('message')).display", tab) != "none"


@pytest.mark.usefixtures("needs_chromium")
def test_with_webgpu_but_no_gpu_canvas_the_page_says_so_in_words_a_user_understands(sites, camera_clip):
    """--enable-unsafe-webgpu beside --disable-gpu: an adapter (SwiftShader compute) but no GPU process to hand the
    camera's frames or a canvas to WebGPU; the page says what to do, not a browser's internal error."""
    with Chromium(timeout=90, flags=["--enable-unsafe-webgpu", *fake_camera_flags(camera_clip)]) as browser:
        tab = browser.open(sites("default").url + "#grid=16x9", watch=True)
        message = browser.wait_for("window.emojicam.state().message", tab, timeout=90)
    assert message.startswith("This browser has WebGPU, but it could not") and "hardware acceleration" in message
    assert "Instance" not in message and "Something failed" not in message


@pytest.mark.usefixtures("needs_chromium")
def test_without_a_camera_the_page_says_what_to_do(sites):
    with Chromium(timeout=60, webgpu=True) as browser:  # no fake camera: there is none
        tab = browser.open(sites("default").url, watch=True)
        message = browser.wait_for("window.emojicam.state().message", tab)
        assert message.startswith("No camera could be opened") and "choose a video file" in message


def test_serve_answers_http_stops_on_sigterm_and_replaces_an_earlier_site(sites, tmp_path):
    out = tmp_path / "site"
    shutil.copytree(sites("default").site, out, copy_function=shutil.copy2)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with (serve_site(out, "--grids", GRIDS, "--model", "default", says="kept") as served,  # the same site: kept
          urllib.request.urlopen(served.url + "manifest.js", timeout=30) as answer):
        assert answer.read() == (out / "manifest.js").read_bytes()
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before, "nothing rewritten"
    with serve_site(out, "--grids", "8x4") as served:  # another site: replaces the earlier one whole
        with urllib.request.urlopen(served.url, timeout=30) as answer:
            assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/html")
            assert b"<script src=\"app.js\"></script>" in answer.read()
        with urllib.request.urlopen(served.url + "manifest.js", timeout=30) as answer:
            assert answer.read() == (out / "manifest.js").read_bytes()
            assert answer.headers["Content-Type"].startswith("text/javascript")
        for outside in ("../site/index.html", "%2e%2e/%2e%2e/etc/passwd", "nothing.js"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(served.url + outside, timeout=30)
            assert refused.value.code == 404, outside
    grids = json.loads((out / "manifest.js").read_text().split(" = ", 1)[1].rstrip().rstrip(";"))["grids"]
    assert [(g["model"], g["name"]) for g in grids] == [("fast", "8x4"), ("default", "8x4")], "--model auto: both"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


WORKFLOW = ROOT / ".github" / "workflows" / "pages.yml"


def test_the_pages_workflow_is_a_valid_github_actions_workflow(tmp_path):
    """The workflow cannot run here: check-jsonschema checks it against GitHub's workflow schema (SchemaStore's, as
    the package ships it), and the check fails on a broken copy."""
    checker = Path(sys.executable).parent / "check-jsonschema"
    need_tool("check-jsonschema", "the Pages workflow is checked against GitHub's schema (pip install -e '.[dev]')",
              checker.exists())
    lint = [str(checker), "--builtin-schema", "vendor.github-workflows"]
    done = subprocess.run([*lint, WORKFLOW], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    text = WORKFLOW.read_text()
    assert "emojicam web site" in text and "path: site" in text and "deploy-pages" in text and "release:" in text
    broken = tmp_path / "pages.yml"
    broken.write_text(text.replace("runs-on:", "runs_on:", 1))
    assert subprocess.run([*lint, broken], capture_output=True, timeout=120).returncode != 0


def test_the_launch_limit_check_covers_bindings_buffers_and_workgroup_memory():
    webgpu = LIMITS["WEBGPU"]
    ok = Kernel("k", (4, 1, 1), (16, 1, 1), 2, 0, 1, 1, "var<workgroup> buf2: array<f32,16>;", (1024, 2**27), 64)
    assert violations(ok, webgpu) == [] and workgroup_bytes(ok.source) == 64
    big = Kernel("k", (4, 1, 1), (16, 1, 1), 2, 0, 1, 1, "var<workgroup> buf2: array<f32,8192>;", (2**28 + 4,),
                 workgroup_bytes("var<workgroup> buf2: array<f32,8192>;"))
    assert violations(big, webgpu) == [f"a {2**28 + 4} byte binding (at most {2**27})",
                                       f"a {2**28 + 4} byte buffer (at most {2**28})",
                                       "32768 bytes of work-group memory (at most 16384)"]


def test_every_grid_the_site_ships_fits_webgpu_defaults(tmp_path):
    """`emojicam web` with its defaults (both networks, every default grid): each dispatch's launch, bindings and
    work-group memory and each buffer within WebGPU's default limits, which every device gives."""
    done = run_cli("web", tmp_path / "site", timeout=1800)
    assert done.returncode == 0 and "asks for more than every WebGPU device allows" not in done.stderr, done.stderr
    manifest = json.loads((tmp_path / "site" / "manifest.js").read_text().splitlines()[1].split(" = ", 1)[1][:-1])
    assert {(g["model"], (g["cols"], g["rows"])) for g in manifest["grids"]} == {
        (m, g) for m in ("fast", "default") for g in DEFAULT_GRIDS}
    for grid in manifest["grids"]:
        assert over_webgpu_defaults(grid) == [], (grid["model"], grid["name"])
