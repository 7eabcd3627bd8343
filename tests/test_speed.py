"""Speed features that must not change what the user sees: skipping still cells in video, the machine's cache of
captured TinyJits (a later process loads the compiled frame function instead of regenerating it), and the CPU
device's batch split across cores."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import ROOT, run_cli
from tinygrad import Tensor

from emojicam import jit_cache, kernels
from emojicam import model as model_io
from emojicam.device_frame import area_resize, resize_weights
from emojicam.emoji_set import EmojiSet
from emojicam.engine import Emojifier, Settings
from emojicam.grid import Grid, cut_patches
from emojicam.lanes import batch_sizes, lane_devices

DEVICE = "CPU"
PHOTO = ROOT / "samples" / "grace_hopper.jpg"
COLS = 8  # 8 x 9 cells on the portrait


@pytest.fixture(scope="module")
def parts(weights):
    return model_io.load(weights, DEVICE), EmojiSet.load()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.imread(str(PHOTO))


def engine(parts, **settings) -> Emojifier:
    return Emojifier(*parts, Settings(**{"cols": COLS, "tile_px": 8, "device": DEVICE, **settings}))


def with_new_cells(photo: np.ndarray, grid, cells: list[tuple[int, int]]) -> np.ndarray:
    """photo with the inside of the given (row, col) cells replaced by a flipped, colour-swapped copy (4 px in from
    the cell's edges, so that resampling at the borders leaves the neighbours as they were)."""
    out = photo.copy()
    h, w = photo.shape[:2]
    for r, c in cells:
        y0, y1 = r * h // grid.rows + 4, (r + 1) * h // grid.rows - 4
        x0, x1 = c * w // grid.cols + 4, (c + 1) * w // grid.cols - 4
        out[y0:y1, x0:x1] = photo[y0:y1, x0:x1][::-1, ::-1, ::-1]
    return out


def test_batch_sizes_are_eighth_quarter_half_and_all():
    assert batch_sizes(2304) == [288, 576, 1152, 2304]
    assert batch_sizes(5) == [1, 2, 3, 5]


def test_lane_devices_one_per_core_on_cpu_only():
    assert lane_devices("CPU", 3) == ["CPU", "CPU:1", "CPU:2"]
    assert lane_devices("CPU", 1) == ["CPU"]
    assert lane_devices("CL", 4) == ["CL"]


def test_cpu_lanes_pick_what_one_lane_picks(parts, photo):
    """Three lanes (uneven shares of an odd batch) and one lane give identical emoji, with and without stability."""
    one, three = engine(parts, cpu_threads=1, stability=1.0), engine(parts, cpu_threads=3, stability=1.0)
    assert three.lanes.devices == ["CPU", "CPU:1", "CPU:2"]
    patches = cut_patches(photo, one.grid_for(photo.shape))[:71]
    shifted = cut_patches(np.roll(photo, 5, axis=1), one.grid_for(photo.shape))[:71]
    first = one.classify(patches)
    np.testing.assert_array_equal(three.classify(patches), first)
    np.testing.assert_array_equal(three.classify(shifted, first), one.classify(shifted, first))
    assert three.lanes.built() == [[24], [24], [23]]


def test_the_gpu_path_picks_what_the_cpu_kernels_pick(parts, photo, tmp_path, monkeypatch):
    """GPUs run the tensor-level network inside the same frame function (scores, stability, in-place inputs);
    run here on the CPU, it picks the emoji the scheduled kernels pick. Each engine gets its own JIT cache, or the
    second would load the first one's captured kernels."""
    frames = [photo, np.roll(photo, 7, axis=1), np.roll(photo, 7, axis=1)]
    outputs = {}
    for scheduled in (False, True):
        monkeypatch.setenv("EMOJICAM_CACHE", str(tmp_path / str(scheduled)))
        monkeypatch.setattr(kernels, "runs_on_cpu", lambda device, scheduled=scheduled: scheduled)
        emojifier = engine(parts, stability=1.0, composite="host")
        assert emojifier.lanes.scheduled == scheduled
        results = [emojifier(frame) for frame in frames]
        assert results[-1].skipped == 1.0, "the repeated frame was not recomputed"
        outputs[scheduled] = [r.image for r in results]
    for tensor_level, scheduled_out in zip(outputs[False], outputs[True], strict=True):
        np.testing.assert_array_equal(tensor_level, scheduled_out)
    assert not np.array_equal(outputs[True][0], outputs[True][1]), "the frames should give different emoji"


def test_only_moved_cells_are_recomputed_and_they_match_a_full_forward(parts, photo):
    skipping, full = engine(parts, still_threshold=4.0), engine(parts)
    grid = skipping.grid_for(photo.shape)
    inner = [(r, c) for r in range(2, grid.rows - 2) for c in range(2, grid.cols - 2)]  # away from cell borders
    changed = with_new_cells(photo, grid, inner[:5])
    first = skipping(photo)
    assert first.skipped == 0.0, "a first frame goes through the network whole"
    second = skipping(changed)
    moved = np.flatnonzero(second.indices != first.indices)
    assert second.skipped == pytest.approx(1 - 5 / grid.count), "exactly the five changed cells"
    assert len(moved) >= 1, "flipped, colour-swapped cells should change emoji"
    # stability 0: the same emoji a whole-frame forward picks, for moved and kept cells alike
    np.testing.assert_array_equal(second.indices, full(changed).indices)


@pytest.mark.parametrize("stability", [0.0, 1.0])
def test_cells_repeated_bit_for_bit_keep_the_emoji_a_full_forward_gives(parts, photo, stability):
    """Without a still threshold (convert) only cells whose patch is exactly the previous frame's are skipped, and
    the emoji are those of a forward pass over every cell of every frame, with stability or without."""
    skipping = engine(parts, stability=stability)
    grid = skipping.grid_for(photo.shape)
    inner = [(r, c) for r in range(2, grid.rows - 2) for c in range(2, grid.cols - 2)]
    changed = with_new_cells(photo, grid, inner[:5])
    noisy = np.clip(photo + np.random.default_rng(1).normal(0, 2.0, photo.shape), 0, 255).astype(np.uint8)
    frames = [photo, photo, changed, changed, noisy, photo]
    reference, previous = [], None
    for frame in frames:  # every cell of every frame through the network, as before this skip existed
        patches = cut_patches(frame, grid)
        previous = skipping.classify(patches) if previous is None else skipping.classify(patches, previous)
        reference.append(previous)
    skipped = []
    for frame, expected in zip(frames, reference, strict=True):
        result = skipping(frame)
        skipped.append(result.skipped)
        np.testing.assert_array_equal(result.indices, expected)
    unchanged = 1 - 5 / grid.count
    assert skipped[:4] == [0.0, 1.0, pytest.approx(unchanged), 1.0], skipped
    assert skipped[4] < 0.5, "sensor noise changes almost every patch: no exact repeat, so no skip"


def test_sensor_noise_is_skipped_but_slow_drift_is_caught(parts, photo):
    skipping = engine(parts, still_threshold=4.0)
    first = skipping(photo)
    rng = np.random.default_rng(0)
    noisy = skipping(np.clip(photo + rng.normal(0, 2.0, photo.shape), 0, 255).astype(np.uint8))
    assert noisy.skipped == 1.0 and np.array_equal(noisy.indices, first.indices)
    skipped = []
    for step in range(1, 9):  # one grey level per frame: never more than 1 between frames, 8 in all
        skipped.append(skipping(np.clip(photo.astype(np.int16) + step, 0, 255).astype(np.uint8)).skipped)
    assert skipped[0] == 1.0, "one level is below the threshold"
    assert min(skipped) < 0.5, f"drift adds up against the thumbnail each emoji was picked on: {skipped}"


def test_a_second_engine_loads_the_captured_jit_and_picks_the_same_emoji(parts, photo, tmp_path, monkeypatch):
    monkeypatch.setenv("EMOJICAM_CACHE", str(tmp_path))
    first = engine(parts, stability=1.0)
    out = first(photo).image
    lanes = len(first.lanes.devices)
    assert len(list(tmp_path.glob("*.jit.pkl"))) == lanes, "each lane's frame function is stored after the first frame"
    second = engine(parts, stability=1.0)
    cells = second.grid_for(photo.shape).count
    np.testing.assert_array_equal(second(photo).image, out)
    assert second.lanes.loaded(cells), "loaded, captured, not compiled again"
    other = engine(parts, stability=1.0, colour_weight=0.0)  # different scores: a different entry
    other.warm_up(cells)
    assert not other.lanes.loaded(cells)


def test_cache_entries_hold_no_intermediate_data(parts, photo, tmp_path, monkeypatch):
    """An entry keeps the weights and constants, not the contents of the buffers its function writes before reading
    them (the arena of intermediates: 25 kB a patch, 29 MB per lane at 64x36, 1.6 MB more for 72 patches than
    for 9 here): entries for 9 to 72 patches are about the same size (kernels of other schedules differ a little),
    and the loaded function picks what a compiled one picks."""
    monkeypatch.setenv("EMOJICAM_CACHE", str(tmp_path))
    first = engine(parts, cpu_threads=1)
    cells = first.grid_for(photo.shape).count
    first.warm_up(cells)
    sizes = sorted(p.stat().st_size for p in tmp_path.glob("*.jit.pkl"))
    assert len(sizes) == len(batch_sizes(cells)) and sizes[-1] - sizes[0] < 300_000, sizes
    expected = first.pick(photo).indices
    second = engine(parts, cpu_threads=1)
    np.testing.assert_array_equal(second.pick(photo).indices, expected)
    assert second.lanes.loaded(cells)


@pytest.mark.parametrize("composite", ["host", "device"])
def test_engines_that_load_the_same_cache_entry_share_no_buffer(composite, tmp_path, monkeypatch):
    """Two engines with the same settings in one process, the second loading what the first stored: each keeps
    its own buffers (tinygrad rebuilds a pickled buffer through its table of live ones: the second engine used to
    share every buffer of the first one's captured function, its stability state too), and each picks on its own
    frames what an engine alone picks on them, while the other runs in between."""
    monkeypatch.setenv("EMOJICAM_CACHE", str(tmp_path))
    frames = clip_frames((181, 321))
    ckpt = model_io.load(model_io.shipped_weights(model_name="fast"), DEVICE)
    settings = Settings(cols=12, tile_px=8, device=DEVICE, stability=1.0, cpu_threads=1, composite=composite)
    first = Emojifier(ckpt, EmojiSet.load(), settings)
    alone = [first(frame).indices for frame in frames]
    second = Emojifier(ckpt, EmojiSet.load(), settings)
    second(frames[0])
    assert list(tmp_path.glob("*.jit.pkl")) and (composite == "device" or second.lanes.loaded(84))
    shared = captured_buffers(first) & captured_buffers(second)
    assert not shared, f"{len(shared)} buffers shared"
    for n in range(1, len(frames)):
        first(frames[-n])  # another engine's frame in between
        np.testing.assert_array_equal(second(frames[n]).indices, alone[n], err_msg=f"frame {n}")


def captured_buffers(engine: Emojifier) -> set[int]:
    """The ids of the device buffers in an engine's captured functions."""
    from tinygrad.uop.ops import Ops, buffers

    path = engine._path
    jits = ([f.jit for f in path._frames.values()] if engine.on_device else
            [jit for lane in engine.lanes._lanes for jit in lane.jits.values()])
    return {id(buffers[u]) for jit in jits for u in jit.captured.linear.toposort()
            if u.op is Ops.BUFFER and u in buffers}


def test_a_broken_cache_entry_is_ignored(parts, photo, tmp_path, monkeypatch):
    monkeypatch.setenv("EMOJICAM_CACHE", str(tmp_path))
    reference = engine(parts)(photo).image
    entries = sorted(tmp_path.glob("*.jit.pkl"))
    assert entries, "the first engine stored its captured functions"
    for entry in entries:
        entry.write_bytes(b"not a pickle")
    np.testing.assert_array_equal(engine(parts)(photo).image, reference)
    assert all(entry.read_bytes() != b"not a pickle" for entry in entries), "compiled again and stored again"
    assert jit_cache.load("no-such-key") is None


def test_a_later_process_uses_the_cache_and_writes_the_same_video(tmp_path):
    clip = ROOT / "samples" / "sample.mp4"
    env = {"EMOJICAM_CACHE": str(tmp_path / "cache")}
    outs = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for out in outs:
        done = run_cli("convert", clip, out, "--cols", "12", "--device", DEVICE, env=env)
        assert done.returncode == 0, done.stderr
    assert list((tmp_path / "cache").glob("*.jit.pkl")), "the first process filled the cache"
    frames = [cv2.VideoCapture(str(p)) for p in outs]
    for _ in range(180):
        (ok_a, a), (ok_b, b) = (cap.read() for cap in frames)
        assert ok_a == ok_b
        if not ok_a:
            break
        np.testing.assert_array_equal(a, b)


def test_the_cache_keeps_the_most_recently_used_entries_within_its_size(parts, photo, tmp_path, monkeypatch):
    monkeypatch.setenv("EMOJICAM_CACHE", str(tmp_path))
    first = engine(parts, cpu_threads=1)  # one lane: one entry per grid
    first(photo)
    (entry,) = tmp_path.glob("*.jit.pkl")
    monkeypatch.setattr(jit_cache, "MAX_BYTES", entry.stat().st_size * 3 // 2)  # room for one entry, not two
    engine(parts, cols=COLS + 1, cpu_threads=1)(photo)  # a new grid: a second entry pushes the older one out
    assert len(list(tmp_path.glob("*.jit.pkl"))) == 1 and not entry.exists()


def test_tune_stores_searched_kernels_that_later_processes_use_with_the_same_emoji(parts, photo, tmp_path,
                                                                                  monkeypatch):
    """`emojicam tune` runs tinygrad's kernel search for the photo's grid and stores the result in the JIT cache; a
    later convert loads it and writes the same picture as a process that never tuned."""
    height, width = cv2.imread(str(PHOTO)).shape[:2]
    options = ("--cols", "3", "--tile", "8", "--device", DEVICE)
    plain, tuned = ({"EMOJICAM_CACHE": str(tmp_path / name)} for name in ("plain", "tuned"))
    done = run_cli("tune", "--size", f"{width}x{height}", "--beam", "1", *options, env=tuned, timeout=1200)
    assert done.returncode == 0, done.stderr
    assert "same emoji for 100.00% of patches" in done.stdout, done.stdout
    stored = "searched kernels stored" in done.stdout  # or, when the search found nothing faster, the defaults
    assert stored or "slower, default kernels kept" in done.stdout, done.stdout
    entries = sorted((tmp_path / "tuned").glob("*.jit.pkl"))
    assert entries, "the searched frame function is stored"
    for env, out in ((plain, tmp_path / "plain.png"), (tuned, tmp_path / "tuned.png")):
        done = run_cli("convert", PHOTO, out, *options, env=env)
        assert done.returncode == 0, done.stderr
    assert sorted((tmp_path / "tuned").glob("*.jit.pkl")) == entries, "convert loaded the tuned entries, added none"
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "tuned.png")), cv2.imread(str(tmp_path / "plain.png")))
    monkeypatch.setenv("EMOJICAM_CACHE", str(tmp_path / "tuned"))
    later = engine(parts, cols=3, stability=1.0)
    later(photo)
    assert later.searched(later.grid_for(photo.shape).count) == int(stored), "the engine knows which kernels it runs"


@pytest.mark.parametrize(("options", "message"), [
    (["--beam", "0"], "--beam: expected a search width >= 1, got 0"),
    (["--size", "12x"], "--size: expected WIDTHxHEIGHT"),
    (["--size", "8x8"], "--size: expected 16..16384 pixels a side"),
])
def test_tune_bad_options_get_one_line_and_status_2(options, message):
    done = run_cli("tune", *options)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("emojicam: error: "), done.stderr
    assert message in lines[0]


def clip_frames(size: tuple[int, int]) -> list[np.ndarray]:
    """The sample clip's frames 0, 10, 20 and 30, resized to size (h, w) by area: real frames of an odd size."""
    cap = cv2.VideoCapture(str(ROOT / "samples" / "sample.mp4"))
    clip = [cap.read()[1] for _ in range(31)][::10]
    return [cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA) for f in clip]


def device_patches(frame: np.ndarray, grid, px: int, device: str) -> np.ndarray:
    """The device path's patches of frame (device_frame.area_resize, as its frame function cuts them), on the host."""
    size = (grid.rows * px, grid.cols * px)
    small = area_resize(Tensor(frame, device=device), size, resize_weights(frame.shape[:2], size, device)).numpy()
    cells = small[..., ::-1].reshape(grid.rows, px, grid.cols, px, 3).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(cells).reshape(grid.count, px, px, 3).astype(np.uint8)


@pytest.mark.parametrize(("size", "cols", "px"), [
    ((181, 321), 12, 36), ((30, 40), 5, 36), ((181, 321), 12, 18), ((90, 160), 8, 36), ((30, 400), 10, 36)])
def test_the_device_paths_resize_is_opencvs(size, cols, px):
    """The device path's area resize against cv2.resize (INTER_AREA) on the host path, on its own: bit for bit on
    the comparison's frames below (shrinking in float, enlarging in OpenCV's fixed point), and where one side grows
    and the other shrinks (400x30 to 10x1 cells of 36 px). device_frame.py says where the two may part by a level;
    none of these frames meets it."""
    for frame in clip_frames(size):
        grid = Grid.for_frame(frame.shape, cols, 8)
        np.testing.assert_array_equal(device_patches(frame, grid, px, "CPU"), cut_patches(frame, grid, px))


@pytest.mark.parametrize(("size", "cols", "device", "still", "model"), [
    ((181, 321), 12, "CPU", 0.0, "default"), ((30, 40), 5, "CPU", 0.0, "default"),
    ((90, 160), 8, "CPU", 4.0, "default"), ((181, 321), 12, "CL", 0.0, "default"),
    ((181, 321), 12, "CPU", 0.0, "fast")])
def test_the_device_path_draws_what_the_host_path_draws(parts, size, cols, device, still, model):
    """--composite device (the whole frame in one compiled function) against the host path on real frames of the
    sample clip, on the CPU device and on OpenCL (PoCL here): an odd frame size, one smaller than the patch grid
    (40x30 px for 5x4 cells of 36 px), the still-cell threshold and the fast model's 18 px patches. Both paths cut
    the same patches here (test above), so the network must pick the same emoji on every cell of every frame; the
    pictures within one level on average (the device path redoes the `auto` background), and the same share of
    cells kept on a repeated frame. In the suite's process, after whatever ran before: a pick that depends on that
    is a bug (benchmarks/results/2026-12-07-device-host-difference.md)."""
    frames = clip_frames(size)
    ckpt = (parts[0] if device == DEVICE and model == "default"
            else model_io.load(model_io.shipped_weights(model_name=model), device))
    settings = dict(cols=cols, tile_px=8, device=device, stability=1.0, still_threshold=still, cpu_threads=1)
    with (Emojifier(ckpt, parts[1], Settings(**settings, composite="host")) as host,
          Emojifier(ckpt, parts[1], Settings(**settings, composite="device")) as on_device):
        assert on_device.on_device and not host.on_device
        for n, frame in enumerate([*frames, frames[-1]]):
            a, b = host(frame), on_device(frame)
            assert b.image.shape == a.image.shape and a.grid == b.grid
            if (differ := np.flatnonzero(a.indices != b.indices)).size:
                score = host.lanes.scorer.scores(Tensor(cut_patches(frame, a.grid, host.patch_px),
                                                        device=host.device)).numpy()
                top2 = np.sort(score[differ], 1)[:, -2:]
                pytest.fail(f"frame {n}: cells {differ.tolist()} differ (host {a.indices[differ].tolist()}, device "
                            f"{b.indices[differ].tolist()}); top-2 scores on the host's patches {top2.tolist()}")
            assert np.abs(a.image.astype(int) - b.image).mean() <= 1.0, f"frame {n}"
            assert b.skipped == pytest.approx(a.skipped), f"frame {n}"
    assert a.skipped == 1.0, "the repeated frame keeps every emoji"


CHILD_CHECK = """
import sys
import numpy as np
from tinygrad.runtime.ops_cl import CLCompiler
from emojicam import lanes, model
from emojicam.emoji_set import EmojiSet
from emojicam.engine import Emojifier, Settings

compiled = []
real = CLCompiler.compile
CLCompiler.compile = lambda self, src: compiled.append(1) or real(self, src)
engine = Emojifier(model.load(model.DEFAULT_WEIGHTS, "CL"), EmojiSet.load(), Settings(device="CL", tile_px=8))
if sys.argv[1] == "here":
    lanes.compiles_in_child = lambda device: False
engine.classify(np.zeros((29, 36, 36, 3), np.uint8))  # the first build: in this process
before = len(compiled)
engine.classify(np.zeros((31, 36, 36, 3), np.uint8))  # a later one (a new grid or batch of moved cells in live)
print("compiled here:", before, len(compiled) - before)
"""


@pytest.mark.parametrize("where", ["child", "here"])
def test_on_opencl_later_builds_compile_in_a_child_process(tmp_path, where):
    """On CL (PoCL) a build after the first compiles in a child process first (emojicam/precompile.py), so this
    process, whose running grid shares PoCL's device and queue, compiles nothing itself: every kernel of the new
    batch size comes from tinygrad's kernel cache. With the child switched off the same build compiles here (the
    check can fail). Fresh caches (tinygrad's, PoCL's, emojicam's) for each run."""
    env = {**os.environ, "CACHEDB": str(tmp_path / "tinygrad.db"), "EMOJICAM_CACHE": str(tmp_path / "jit"),
           "POCL_CACHE_DIR": str(tmp_path / "pocl")}
    done = subprocess.run([sys.executable, "-c", CHILD_CHECK, where], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    first, later = map(int, done.stdout.split("compiled here:")[1].split())
    assert first > 0, "the first build compiles in this process"
    assert (later == 0) if where == "child" else (later > 0), done.stdout


def test_closing_the_builder_stops_a_build_in_its_child_process():
    """Quitting live while a grid is being prepared: close() kills the build's helper process (a real one, which
    would sleep a minute), the build fails at once instead of compiling here, and queued builds never run."""
    from emojicam.builder import Builder
    from emojicam.errors import EmojicamError

    builder, ran = Builder(), []
    running = builder.queue("slow", lambda: builder.run_child([sys.executable, "-c", "import time; time.sleep(60)"],
                                                              600))
    queued = builder.queue("next", lambda: ran.append(1))
    while not running.running():
        pass
    builder.close()
    with pytest.raises(EmojicamError, match="engine closed"):
        running.result(timeout=30)  # not the child's 60 s
    assert queued.cancelled() and not ran


def test_cpu_network_kernels_are_compiled_with_scalar_loads_which_clang_vectorises_wider(parts, photo):
    """The lanes compile the network's kernels on the CPU device without tinygrad's float4 loads (kernels.compiling:
    clang then builds 8-wide FMAs, 1.6x); tinygrad's setting is back as it was afterwards, for everything else
    (training's kernels are slower so)."""
    from tinygrad import Device

    emojifier = engine(parts, cpu_threads=1)
    network = [k for k in emojifier.launches(photo.shape).kernels if k.name.startswith(("conv3x3", "linear"))]
    assert len(network) == 3 and all("float4" not in k.source for k in network), [k.name for k in network]
    assert Device[DEVICE].renderer.supports_float4
    with kernels.compiling(DEVICE):
        assert not Device[DEVICE].renderer.supports_float4
    assert Device[DEVICE].renderer.supports_float4


def test_frames_cut_ahead_in_another_thread_pick_what_pick_does(parts, photo):
    """convert cuts the next frames in its decoder thread while the network runs (Emojifier.cut, then pick_cut in
    frame order): the same emoji, stability and skipped cells as picking each frame whole."""
    from concurrent.futures import ThreadPoolExecutor

    grid = Grid.for_frame(photo.shape, COLS, 8)
    frames = [photo, with_new_cells(photo, grid, [(1, 2), (4, 4)]), with_new_cells(photo, grid, [(6, 1)])]
    whole, ahead = engine(parts, stability=1.0), engine(parts, stability=1.0)
    expected = [whole.pick(f) for f in frames]
    with ThreadPoolExecutor(1) as pool:
        cuts = list(pool.map(ahead.cut, frames))
    got = [ahead.pick_cut(c) for c in cuts]
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(g.indices, e.indices)
        assert g.skipped == e.skipped
    assert got[1].skipped > 0.9

