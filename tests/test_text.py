"""Emoji art as text: codepoints from the manifest, the round trip (set emoji on white -> text naming them), the
--max-chars limit across aspect ratios, the HTML page in a real headless Chromium, and one-line errors."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import pytest
from browser import Chromium, need_chromium
from conftest import ROOT, run_cli
from media import make_clip

from emojicam import model as model_io
from emojicam.emoji_set import DEFAULT_SET, EmojiSet
from emojicam.engine import Emojifier, Settings
from emojicam.grid import PATCH_PX, Grid, compose
from emojicam.media.text import art_lines, art_text, fewest_chars, most_cols, text_art

PHOTO = ROOT / "samples" / "grace_hopper.jpg"
MANIFEST = json.loads((DEFAULT_SET / "manifest.json").read_text())["classes"]
DEVICE = "CPU"


def chars(codepoint: str) -> str:
    """'1F469-200D-1F393' -> the characters, decoded here independently of emojicam.media.text."""
    return "".join(chr(int(h, 16)) for h in codepoint.split("-"))


SEQUENCES = [chars(c["codepoint"]) for c in MANIFEST]


def read_back(text: str) -> list[list[int]]:
    """Split text into the set's emoji, longest sequence first at each place; fails on anything else."""
    by_length = sorted(range(len(SEQUENCES)), key=lambda i: -len(SEQUENCES[i]))
    rows = []
    for line in text.split("\n")[:-1]:
        row, at = [], 0
        while at < len(line):
            match = next((i for i in by_length if line.startswith(SEQUENCES[i], at)), None)
            assert match is not None, f"not an emoji of the set at {at} in {line!r}"
            row.append(match)
            at += len(SEQUENCES[match])
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def emoji_set() -> EmojiSet:
    return EmojiSet.load()


@pytest.fixture(scope="module")
def engine(weights, emoji_set) -> Emojifier:
    # one CPU lane: each new batch shape compiles once, not once per core (the picks are the same, test_speed.py)
    return Emojifier(model_io.load(weights, DEVICE), emoji_set,
                     Settings(background="white", device=DEVICE, cpu_threads=1))


def on_white(emoji_set: EmojiSet, indices: np.ndarray, cols: int) -> np.ndarray:
    """The emoji drawn at 36 px (the model's patch size) on white, cols per row."""
    return compose(emoji_set.blended_atlas(PATCH_PX, "white")[indices], Grid(cols, len(indices) // cols, PATCH_PX))


# --- codepoints -------------------------------------------------------------------------------------------------

def test_the_manifest_gives_every_emoji_its_fully_qualified_codepoints(emoji_set):
    assert emoji_set.strings() == SEQUENCES
    for c in MANIFEST:
        assert c["file"] == c["codepoint"].lower() + ".png", c
        text = chars(c["codepoint"])
        # Unicode: an emoji whose default is text style (one code point that is not East Asian wide) shows as an
        # emoji only when U+FE0F follows it (emoji newer than Python's Unicode tables are left out: unassigned)
        single = len(text.removesuffix("\ufe0f")) == 1 and unicodedata.category(text[0]) != "Cn"
        if single and unicodedata.east_asian_width(text[0]) != "W":
            assert text.endswith("\ufe0f"), c
    assert sum(s.endswith("\ufe0f") for s in SEQUENCES) >= 20 and sum("\u200d" in s for s in SEQUENCES) >= 20


def test_text_of_every_emoji_reads_back_as_the_same_emoji(emoji_set):
    indices = np.random.default_rng(0).permutation(len(emoji_set))
    grid = Grid(16, 16, 16)
    text = art_text(art_lines(emoji_set.strings(), indices, grid))
    assert text.count("\n") == 16 and text.endswith("\n")
    assert read_back(text) == indices.reshape(16, 16).tolist()


# --- the round trip through the command line --------------------------------------------------------------------

# Emoji of every kind of sequence: plain (BMP and astral), with U+FE0F, ZWJ sequences with and without it, and the
# longest (8 code points), among faces, food, animals, things and colour blocks.
ROUND_TRIP = ["face with tears of joy", "woman: blond hair", "writing hand", "kiss: man, man", "camping",
              "alarm clock", "heavy large circle", "technologist", "couple with heart: woman, woman",
              "exclamation question mark", "lion face", "octopus", "sunflower", "pineapple", "strawberry",
              "hamburger", "sushi", "rocket", "rainbow", "trophy", "jack-o-lantern", "television",
              "large blue square", "black large square"]


def test_a_frame_of_set_emoji_on_white_becomes_text_naming_exactly_them(emoji_set, weights, tmp_path):
    indices = np.array([emoji_set.labels.index(name) for name in ROUND_TRIP])
    frame = tmp_path / "emoji.png"
    cv2.imwrite(str(frame), on_white(emoji_set, indices, 6))
    out = tmp_path / "emoji.txt"
    done = run_cli("convert", frame, out, "--cols", 6, "--weights", weights)
    assert done.returncode == 0, done.stderr
    assert "(grid 6x4, " in done.stdout
    expected = "".join("".join(chars(MANIFEST[i]["codepoint"]) for i in row) + "\n" for row in indices.reshape(4, 6))
    assert out.read_bytes() == expected.encode("utf-8")


def test_the_whole_set_on_white_comes_back(emoji_set, engine):
    # measured with the shipped weights: 253 of 256; the others are mostly white on white (turkey as white square
    # button, sun behind small cloud as face in clouds, white medium small square as white large square)
    indices = np.random.default_rng(1).permutation(len(emoji_set))
    art = text_art(engine, on_white(emoji_set, indices, 16), emoji_set.strings(), cols=16)
    got = np.array(read_back(art.text)).ravel()
    assert (got == indices).mean() >= 0.98, [emoji_set.labels[i] for i in indices[got != indices]]


# --- --max-chars --------------------------------------------------------------------------------------------------

ASPECTS = {"wide 4:1": (1600, 400), "16:9": (1280, 720), "square": (700, 700), "tall 1:3": (300, 900)}


@pytest.mark.parametrize("aspect", ASPECTS)
@pytest.mark.parametrize("limit", [300, 2000])
def test_max_chars_picks_the_densest_grid_that_fits(engine, emoji_set, aspect, limit):
    frame = cv2.resize(cv2.imread(str(PHOTO)), ASPECTS[aspect], interpolation=cv2.INTER_AREA)
    strings = emoji_set.strings()
    art = text_art(engine, frame, strings, max_chars=limit)
    assert art.chars == len(art.text) <= limit
    assert art.grid == engine.grid_for(frame.shape, art.grid.cols)
    assert [len(row) for row in read_back(art.text)] == [art.grid.cols] * art.grid.rows
    top = most_cols(frame.shape, limit, None, engine.settings.tile_px)
    assert fewest_chars(frame.shape, top + 1, engine.settings.tile_px) > limit, "no denser grid could fit"
    batch = engine.grid_for(frame.shape, top).count
    for cols in range(art.grid.cols + 1, top + 1):  # the search's own shape: no compile
        picked = engine.pick_still(frame, cols, batch)
        assert len(art_text(art_lines(strings, picked.indices, picked.grid))) > limit, f"{cols} columns fit too"


def test_max_chars_writes_what_the_same_grid_gives_without_it(engine, emoji_set):
    frame, strings = cv2.imread(str(PHOTO)), emoji_set.strings()
    art = text_art(engine, frame, strings, max_chars=1000)
    assert art.text == text_art(engine, frame, strings, cols=art.grid.cols).text


def test_max_chars_through_the_command_line_says_which_grid(weights, tmp_path):
    out = tmp_path / "hopper.txt"
    done = run_cli("convert", PHOTO, out, "--max-chars", 2000, "--weights", weights)
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    rows = read_back(text)
    cols = len(rows[0])
    assert len(text) <= 2000 and {len(r) for r in rows} == {cols}
    assert f"(grid {cols}x{len(rows)}, {len(text):,} characters of at most 2,000)" in done.stdout


# --- the HTML page in Chromium ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def page(weights, tmp_path_factory) -> tuple[Path, str]:
    """The photo at 40 columns as .html and as .txt (the text the page must copy)."""
    d = tmp_path_factory.mktemp("html")
    for ext in (".html", ".txt"):
        done = run_cli("convert", PHOTO, d / f"hopper{ext}", "--cols", 40, "--weights", weights)
        assert done.returncode == 0, done.stderr
    return d / "hopper.html", (d / "hopper.txt").read_text(encoding="utf-8")


def test_the_page_is_self_contained(page):
    html = page[0].read_text(encoding="utf-8")
    for outside in ("http:", "https:", "://", "<link", "src=", "@import", "url("):
        assert outside not in html, outside


def test_the_page_in_chromium_shows_the_grid_aligned_and_copies_the_text(page):
    need_chromium()
    path, text = page
    lines = text.split("\n")[:-1]
    rows, cols = len(lines), len(read_back(text)[0])
    with Chromium() as browser:
        tab = browser.open(path.as_uri())
        assert browser.evaluate("performance.getEntriesByType('resource').length", tab) == 0, "nothing fetched"
        cells = browser.evaluate("""Array.from(document.querySelectorAll('#art > div'), row =>
            Array.from(row.children, cell => { const r = cell.getBoundingClientRect();
                                               return [cell.textContent, r.left, r.top, r.width, r.height]; }))""",
                                 tab)
        assert len(cells) == rows and {len(row) for row in cells} == {cols}
        assert ["".join(cell[0] for cell in row) for row in cells] == lines
        left = [cell[1] for cell in cells[0]]
        width, height = cells[0][0][3], cells[0][0][4]
        for r, row in enumerate(cells):  # every column at the same x, rows stacked without gaps or overlaps
            assert [cell[1] for cell in row] == pytest.approx(left)
            assert [cell[2] for cell in row] == pytest.approx([cells[0][0][2] + r * height] * cols)
        assert left == pytest.approx([left[0] + c * width for c in range(cols)]) and width == pytest.approx(height)

        browser.call("Browser.grantPermissions", {"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
        status = browser.evaluate("document.getElementById('copy').click(), new Promise(done => setTimeout(() => "
                                  "done(document.getElementById('status').textContent), 300))", tab, gesture=True)
        assert status == "copied"
        assert browser.evaluate("navigator.clipboard.readText()", tab, gesture=True) == text

        shot = browser.screenshot(tab)
        x0, y0 = round(left[0]), round(cells[0][0][2])
        art = shot[y0:y0 + round(rows * height), x0:x0 + round(cols * width)]
        assert art.size and art.std() > 30, "the art area is not blank"
        hsv = cv2.cvtColor(art, cv2.COLOR_BGR2HSV)
        colourful = ((hsv[..., 1] > 100) & (hsv[..., 2] > 60)).mean()
        assert colourful > 0.02, ("emoji drawn without colour: install a colour emoji font "
                                  f"(fonts-noto-color-emoji); {colourful:.1%} colourful pixels")


# --- bad input ----------------------------------------------------------------------------------------------------

def one_line_error(done, words: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emojicam: error: ") and "Traceback" not in done.stderr, lines
    assert words in lines[0], lines[0]


@pytest.mark.parametrize("ext", [".txt", ".html"])
def test_a_set_without_codepoints_cannot_write_text(other_weights, tmp_path, ext):
    folder, weights = other_weights
    out = tmp_path / "out"
    out.mkdir()
    done = run_cli("convert", PHOTO, out / f"hopper{ext}", "--cols", 8, "--emoji-set", folder, "--weights", weights)
    one_line_error(done, "text output needs each emoji's codepoints")
    assert list(out.iterdir()) == [], "nothing written, not even a temporary file"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=0.4, audio=False)


@pytest.mark.parametrize("ext", [".txt", ".html"])
def test_a_video_asked_for_text_is_told_what_to_do(clip, weights, tmp_path, ext):
    done = run_cli("convert", clip, tmp_path / f"clip{ext}", "--weights", weights)
    one_line_error(done, f"text ({ext}) is for stills")
    assert "emojicam live --terminal --source clip.mp4" in done.stderr and "-frames:v 1 frame.png" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing written"


@pytest.mark.parametrize(("out", "options", "words"), [
    ("a.txt", ["--background", "auto"], "--background: expected white or black for text"),
    ("a.png", ["--max-chars", 2000], "--max-chars: expected a text output (.txt .html), got .png"),
    ("a.txt", ["--max-chars", 1], "--max-chars: expected at least 2 characters"),
    ("missing/a.txt", [], "output: expected an existing folder"),
])
def test_bad_text_options_get_one_line_and_nothing_is_written(weights, tmp_path, out, options, words):
    done = run_cli("convert", PHOTO, tmp_path / out, *options, "--weights", weights)
    one_line_error(done, words)
    assert list(tmp_path.iterdir()) == []
