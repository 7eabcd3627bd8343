"""`emojicam convert` on still images, through the real CLI: formats, odd pixel formats, backgrounds, folders,
and one-line errors (exit status 2, no traceback, no output file) for every kind of bad input."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, digest, run_cli, unwritable

from emojicam.emoji_set import EmojiSet
from emojicam.grid import Grid, cell_means
from emojicam.model import load as load_weights

PHOTO = ROOT / "samples" / "grace_hopper.jpg"  # 512x600
COLS, TILE = 12, 8
ROWS = 14  # round(12 * 600 / 512)
MAGIC = {".png": b"\x89PNG", ".jpg": b"\xff\xd8\xff", ".webp": b"RIFF", ".bmp": b"BM"}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.imread(str(PHOTO))


@pytest.fixture(scope="module")
def emoji_set() -> EmojiSet:
    return EmojiSet.load()


@pytest.fixture(scope="module")
def inputs(photo, tmp_path_factory) -> Path:
    """A folder of 512x600 images (one grid shape): the photo in four formats, and pairs that must convert alike."""
    d = tmp_path_factory.mktemp("photos")
    for ext in (".png", ".webp", ".bmp"):
        assert cv2.imwrite(str(d / f"hopper{ext}"), photo)
    shutil.copy(PHOTO, d / "hopper.jpg")
    grey = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(d / "grey.png"), grey)                                 # 1 channel
    cv2.imwrite(str(d / "grey_as_bgr.png"), cv2.merge([grey] * 3))
    cv2.imwrite(str(d / "deep.png"), photo.astype(np.uint16) * 257)       # 16 bit, same picture as hopper.png
    red = np.zeros((600, 512, 4), np.uint8)
    red[..., 2] = 255                                                      # red, fully transparent
    cv2.imwrite(str(d / "clear_red.png"), red)
    cv2.imwrite(str(d / "white.png"), np.full((600, 512, 3), 255, np.uint8))
    half = np.dstack([photo, np.full((600, 512), 255, np.uint8)])
    half[:, :256] = (0, 0, 255, 0)                                         # left half: transparent red
    cv2.imwrite(str(d / "half_clear.png"), half)
    cv2.imwrite(str(d / "deep_half_clear.png"), half.astype(np.uint16) * 257)  # 16-bit with alpha
    on_white = photo.copy()
    on_white[:, :256] = 255
    cv2.imwrite(str(d / "half_white.png"), on_white)
    return d


@pytest.fixture(scope="module")
def converted(inputs, weights, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One call: a folder plus a single file into -o DIR, default background (auto)."""
    out = tmp_path_factory.mktemp("out") / "new"  # -o creates the folder
    done = run_cli("convert", inputs, PHOTO, "-o", out, "--cols", COLS, "--tile", TILE, "--weights", weights)
    assert done.returncode == 0, done.stderr
    return out, done


def read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def test_folder_and_file_into_output_dir(inputs, converted):
    out, done = converted
    sources = [*sorted(inputs.iterdir()), PHOTO]
    expected = {f"{p.stem}_emoji{p.suffix}" for p in sources}
    assert {p.name for p in out.iterdir()} == expected, "one output per input, no temporary files"
    lines = done.stdout.strip().splitlines()
    assert len(lines) == len(sources)
    for src, line in zip(sources, lines, strict=True):
        assert line == f"{src} -> {out / (src.stem + '_emoji' + src.suffix)}"


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp"])
def test_each_output_format_has_the_grid_size(converted, ext):
    out, _ = converted
    path = out / f"hopper_emoji{ext}"
    assert path.read_bytes().startswith(MAGIC[ext])
    if ext == ".webp":
        assert path.read_bytes()[8:12] == b"WEBP"
    image = read(path)
    assert image.shape == (ROWS * TILE, COLS * TILE, 3) and image.dtype == np.uint8
    assert image.std() > 20, "a picture, not a blank"


@pytest.mark.parametrize(("name", "same_as"), [
    ("grey", "grey_as_bgr"),        # grey is read as grey on all three channels
    ("deep", "hopper"),             # 16-bit values v * 257 are read as v
    ("clear_red", "white"),         # transparent pixels are composited onto white, whatever colour they hide
    ("half_clear", "half_white"),
    ("deep_half_clear", "half_white"),
])
def test_pixel_formats_convert_like_their_8_bit_opaque_twins(converted, name, same_as):
    out, _ = converted
    np.testing.assert_array_equal(read(out / f"{name}_emoji.png"), read(out / f"{same_as}_emoji.png"))


def test_transparent_red_does_not_tint_the_output(converted):
    out, _ = converted
    image = read(out / "clear_red_emoji.png").astype(np.float32)
    b, g, r = image.reshape(-1, 3).mean(0)
    assert r - (b + g) / 2 < 10, f"mean BGR {b:.0f} {g:.0f} {r:.0f}: transparent red leaked into the picture"


@pytest.fixture(scope="module")
def on_backgrounds(converted, weights, tmp_path_factory) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("backgrounds")
    images = {"auto": read(converted[0] / "hopper_emoji.png")}
    for background in ("black", "white"):
        path = out / f"{background}.png"
        done = run_cli("convert", PHOTO, path, "--cols", COLS, "--tile", TILE, "--background", background,
                       "--weights", weights)
        assert done.returncode == 0, done.stderr
        images[background] = read(path)
    return images


def tiles_of(image: np.ndarray) -> np.ndarray:
    return image.reshape(ROWS, TILE, COLS, TILE, 3).transpose(0, 2, 1, 3, 4).reshape(ROWS * COLS, -1)


@pytest.mark.parametrize("background", ["black", "white"])
def test_black_and_white_backgrounds_draw_emoji_tiles(on_backgrounds, emoji_set, background):
    image = on_backgrounds[background]
    assert image.shape == (ROWS * TILE, COLS * TILE, 3)
    atlas = emoji_set.blended_atlas(TILE, background).reshape(len(emoji_set), -1)
    matches = (tiles_of(image)[:, None, :] == atlas[None]).all(2)  # (cells, emoji)
    assert matches.any(1).all(), f"every cell is one emoji drawn on {background}"
    assert len(np.unique(matches.argmax(1))) >= 10, "a photo needs more than a handful of emoji"


def test_auto_background_follows_the_picture(on_backgrounds, photo):
    assert on_backgrounds["auto"].shape == (ROWS * TILE, COLS * TILE, 3)
    assert not np.array_equal(on_backgrounds["auto"], on_backgrounds["black"])
    assert not np.array_equal(on_backgrounds["auto"], on_backgrounds["white"])
    grid = Grid(COLS, ROWS, TILE)
    target = cell_means(photo, grid)
    error = {name: float(np.abs(cell_means(image, grid) - target).mean()) for name, image in on_backgrounds.items()}
    assert error["auto"] < min(error["black"], error["white"]), error


# --- bad input ---------------------------------------------------------------------------------------------------

def png_with_a_bad_filter() -> bytes:
    """A PNG whose first row names a filter type that does not exist (a flipped bit, as fuzzing found)."""
    _, encoded = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    data = encoded.tobytes()
    at = data.find(b"IDAT")
    size = int.from_bytes(data[at - 4:at], "big")
    rows = bytearray(zlib.decompress(data[at + 4:at + 4 + size]))
    rows[0] = 9  # filter types are 0..4
    packed = zlib.compress(bytes(rows))
    return (data[:at - 4] + len(packed).to_bytes(4, "big") + b"IDAT" + packed
            + zlib.crc32(b"IDAT" + packed).to_bytes(4, "big") + data[at + 4 + size + 4:])


def bad_cases(tmp: Path, weights: Path, other: tuple[Path, Path]) -> dict[str, tuple[Path, list, str]]:
    """name -> (input, CLI options, a piece of the expected message)."""
    not_image, empty, truncated, text, garbage_weights = (tmp / n for n in (
        "notes.png", "empty.jpg", "truncated.jpg", "notes.txt", "garbage.safetensors"))
    not_image.write_text("hello, I am not a picture\n")
    empty.touch()
    truncated.write_bytes(PHOTO.read_bytes()[:40_000])  # 61 kB file cut short: no end marker
    text.write_text("hello\n")
    garbage_weights.write_bytes(np.random.default_rng(0).bytes(5000))
    damaged_png = tmp / "damaged.png"
    damaged_png.write_bytes(png_with_a_bad_filter())
    other_set, other_w = other
    w = ["--weights", weights]
    return {
        "missing file": (tmp / "nope.jpg", w, "input: expected a file, got no file"),
        "not an image": (not_image, w, "input: expected an image"),
        "truncated jpeg": (truncated, w, "input: expected"),
        "damaged png": (damaged_png, w, "input: expected an image"),  # libpng printed its own line beside ours
        "zero bytes": (empty, w, "input: expected an image, got an empty file"),
        "unknown input extension": (text, w, "input: expected an image"),
        "unknown output extension": (PHOTO, w, "output: expected one of"),
        "cols 0": (PHOTO, ["--cols", 0, *w], "--cols: expected 1..512 columns, got 0"),
        "cols 100000": (PHOTO, ["--cols", 100000, *w], "--cols: expected 1..512 columns, got 100000"),
        "tile 100000": (PHOTO, ["--tile", 100000, *w], "--tile: expected"),
        "negative still threshold": (PHOTO, ["--still-threshold", -1, *w], "--still-threshold: expected a number"),
        "stability nan": (PHOTO, ["--stability", "nan", *w], "--stability: expected a number >= 0"),
        "set of other weights": (PHOTO, ["--emoji-set", other_set, *w], "weights: expected weights trained on"),
        "weights of another set": (PHOTO, ["--weights", other_w], "weights: expected weights trained on"),
        "weights not safetensors": (PHOTO, ["--weights", garbage_weights], "weights: expected"),
        "missing weights": (PHOTO, ["--weights", tmp / "none.safetensors"], "weights: expected"),
        "device NOPE": (PHOTO, ["--device", "NOPE", *w], "--device: expected a working tinygrad device"),
    }


@pytest.fixture(scope="module")
def bad_runs(weights, other_weights, tmp_path_factory) -> dict[str, tuple[Path, str, subprocess.CompletedProcess]]:
    """Every bad case, two CLI processes at a time, each writing into its own empty folder."""
    tmp = tmp_path_factory.mktemp("bad")
    cases = bad_cases(tmp, weights, other_weights)
    outs = {name: tmp_path_factory.mktemp("out") / ("emoji.xyz" if "output" in name else "emoji.png")
            for name in cases}

    def one(name: str) -> tuple[str, tuple[Path, str, subprocess.CompletedProcess]]:
        src, options, message = cases[name]
        return name, (outs[name], message, run_cli("convert", src, outs[name], *options))

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(one, cases))


BAD = ["missing file", "not an image", "truncated jpeg", "damaged png", "zero bytes", "unknown input extension",
       "unknown output extension", "cols 0", "cols 100000", "tile 100000", "negative still threshold",
       "stability nan", "set of other weights",
       "weights of another set", "weights not safetensors", "missing weights", "device NOPE"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_gets_one_line_and_status_2(bad_runs, case):
    out, message, done = bad_runs[case]
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emojicam: error: "), done.stderr
    assert message in lines[0], lines[0]
    assert list(out.parent.iterdir()) == [], "no output file, no temporary file"


@pytest.mark.parametrize("typed", ["folder", "folder/", "new/"])
def test_a_folder_as_the_output_of_one_input_says_how_to_write_into_it(tmp_path, weights, typed):
    """`convert photo.jpg somefolder/`: the folder as the user typed it (relative here), and the -o form."""
    (tmp_path / "folder").mkdir()
    typed = os.path.relpath(tmp_path, ROOT) + "/" + typed
    done = run_cli("convert", PHOTO, typed, "--weights", weights)
    assert done.returncode == 2 and done.stderr == (
        f"emojicam: error: output: expected a file name, got the folder {typed} (to write into a folder: "
        f"emojicam convert IN... -o {typed})\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"] and not any((tmp_path / "folder").iterdir())


def test_failed_conversion_leaves_an_existing_output_alone(tmp_path, weights):
    empty = tmp_path / "empty.png"
    empty.touch()
    out = tmp_path / "out.png"
    out.write_bytes(b"an older result")
    done = run_cli("convert", empty, out, "--weights", weights)
    assert done.returncode == 2 and done.stderr.startswith("emojicam: error: input: expected an image")
    assert out.read_bytes() == b"an older result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.png", "out.png"]


def test_a_bad_file_in_a_folder_stops_the_batch_before_any_work(tmp_path, weights):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(PHOTO, folder / "a_good.jpg")
    (folder / "b_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)  # a PNG signature, then nothing
    out = tmp_path / "out"
    done = run_cli("convert", folder, "-o", out, "--cols", COLS, "--tile", TILE, "--weights", weights)
    assert done.returncode == 2 and "b_bad.png" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert list(out.iterdir()) == [], "every input is checked before the first conversion"


def test_fast_model_converts_a_photo_with_its_own_patch_size(tmp_path):
    out = tmp_path / "fast.png"
    done = run_cli("convert", PHOTO, out, "--cols", COLS, "--tile", TILE, "--model", "fast", "--device", "CPU")
    assert done.returncode == 0, done.stderr
    image = read(out)
    assert image.shape[1] == COLS * TILE and image.std() > 10


@pytest.mark.parametrize("model", ["default", "fast"])
def test_the_full_set_converts_a_photo_with_its_shipped_weights(tmp_path, model):
    """--set full with either model: the 1,610-emoji set and its weights; the text output names its emoji, and some
    of them are not in the 256 set."""
    from emojicam.emoji_set import EmojiSet, shipped_set

    out = tmp_path / "full.txt"
    done = run_cli("convert", PHOTO, out, "--cols", COLS, "--set", "full", "--model", model, "--device", "CPU")
    assert done.returncode == 0, done.stderr
    glyphs = set(out.read_text(encoding="utf-8")) - {"\n", "\ufe0f", "\u200d"}
    default = {chr(int(cp, 16)) for cp in "-".join(EmojiSet.load(shipped_set()).codepoints).split("-")}
    assert glyphs - default, "every emoji drawn is one the 256 set has too"


# --- outputs that cannot be written, signals ---------------------------------------------------------------------

@pytest.mark.parametrize("fault, reason", [("disk full", "No space left on device"),
                                           ("permission denied", "Permission denied")])
def test_a_still_that_cannot_be_written_fails_on_one_line(fault, reason, tmp_path, small_disk, weights):
    if fault == "disk full":
        folder, wrap = small_disk(4), []  # one page: less than the picture
    else:
        folder = tmp_path / "locked"
        folder.mkdir()
        wrap = unwritable(folder)
    before = digest(PHOTO)
    done = run_cli("convert", PHOTO, folder / "out.png", "--cols", COLS, "--tile", TILE, "--weights", weights,
                   wrap=wrap)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("emojicam: error: output: expected") and f"{folder / 'out.png'}" in lines[0]
    assert reason in lines[0] and list(folder.iterdir()) == [] and digest(PHOTO) == before


def test_train_into_a_folder_it_cannot_write_fails_before_training(other_weights, tmp_path):
    folder = tmp_path / "locked"  # a full disk at the end: tests/test_faults.py (the weights writer)
    folder.mkdir()
    done = run_cli("train", other_weights[0], "-o", folder / "w.safetensors", "--steps", 3, "--batch", 8,
                   "--device", "CPU", wrap=unwritable(folder))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("emojicam: error: output: expected") and str(folder / "w.safetensors") in lines[0]
    assert "Permission denied" in lines[0] and list(folder.iterdir()) == []


@pytest.mark.parametrize("channels", ["8", "0,16", "8,x", "8,16,32"])
def test_train_with_bad_channels_gets_one_line_before_training(other_weights, tmp_path, channels):
    done = run_cli("train", other_weights[0], "-o", tmp_path / "w.safetensors", "--channels", channels,
                   "--steps", 3, "--device", "CPU")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("emojicam: error: --channels: expected two channel counts") and channels in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_train_stopped_by_sigterm_saves_its_weights(other_weights, tmp_path):
    folder, out = other_weights[0], tmp_path / "w.safetensors"  # the fixture compiled these kernels already
    proc = subprocess.Popen([sys.executable, "-m", "emojicam", "train", str(folder), "-o", str(out), "--steps",
                             "100000", "--batch", "8", "--device", "CPU"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        progress = b""
        while b"/100000 steps" not in progress and proc.poll() is None:  # a progress line: the steps have begun
            progress += proc.stderr.read1(4096)
        os.kill(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 143 and stderr.decode().splitlines()[-1] == "emojicam: interrupted by SIGTERM"
    assert f"saving what was learned to {out}" in stdout.decode()
    ckpt = load_weights(out, "CPU")
    assert ckpt.info["steps_done"] < 100000 and ckpt.set_fingerprint == EmojiSet.load(folder).fingerprint
    assert sorted(tmp_path.iterdir()) == [out]
