"""`emojicam live --terminal`: the grid and glyph choices, the in-place redraw bytes, and the whole mirror in a real
terminal: Debian's tmux, started by the test with a fixed size, read back with capture-pane, resized, sent q and
Ctrl-C."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, need_tool, run_cli
from media import make_clip

from emojicam.emoji_set import EmojiSet
from emojicam.live.terminal import Screen, draws_two_wide, fit_grid, terminal_glyphs

CLIP_SIZE = (160, 90)  # FFmpeg's moving test pattern, 16:9
SESSIONS = itertools.count()  # each tmux server gets a socket of its own


def expected_grid(size: tuple[int, int], frame: tuple[int, int] = CLIP_SIZE) -> tuple[int, int]:
    """(cols, rows) the mirror should use in a terminal of size (columns, lines): two columns per emoji, one line
    for the status, rows following the frame's aspect ratio (worked out here, not with emojicam's code)."""
    best = (0, 0)
    for cols in range(1, size[0] // 2 + 1):
        rows = max(1, round(cols * frame[1] / frame[0]))
        if rows <= size[1] - 1:
            best = (cols, rows)
    return best


# --- pieces ---------------------------------------------------------------------------------------------------------

def test_the_grid_fills_the_terminal_at_two_columns_per_emoji():
    for size in [(80, 24), (44, 16), (60, 20), (200, 50), (12, 30)]:
        grid = fit_grid((90, 160, 3), size, None, 16)
        assert (grid.cols, grid.rows) == expected_grid(size), size
    assert (fit_grid((90, 160, 3), (200, 50), 20, 16).cols) == 20, "--cols caps it"
    assert fit_grid((900, 160, 3), (80, 3), None, 16) is None, "not one emoji fits"


def test_every_glyph_draws_two_columns_wide():
    emoji_set = EmojiSet.load()
    strings, glyphs = emoji_set.strings(), terminal_glyphs(emoji_set, "white")
    assert all(draws_two_wide(g) for g in glyphs)
    assert all(g == s for g, s in zip(glyphs, strings, strict=True) if draws_two_wide(s)), "drawable ones kept"
    woman_student = strings[emoji_set.labels.index("woman student")]
    assert glyphs[emoji_set.labels.index("woman student")] == woman_student.split("\u200d")[0] == "\U0001f469"
    assert not draws_two_wide("a") and not draws_two_wide("\u270d\ufe0f") and draws_two_wide("\u2b1b")


def drawn(ids_a: np.ndarray, ids_b: np.ndarray, glyphs: list[str]) -> tuple[str, str]:
    """What Screen writes for two frames in a row (through a pipe instead of a terminal)."""
    read, write = os.pipe()
    try:
        screen = Screen("white", out=write, inp=read)
        chunks = []
        for ids in (ids_a, ids_b):
            screen.frame(ids, glyphs, "status", 40, 10)
            chunks.append(os.read(read, 1 << 16).decode())
        return chunks[0], chunks[1]
    finally:
        os.close(read)
        os.close(write)


def test_only_changed_cells_are_rewritten_after_the_cursor_goes_home():
    glyphs = ["\U0001f7e6", "\U0001f7e5", "\u2b1b"]
    first = np.zeros((3, 4), int)
    second = first.copy()
    second[1, 2] = 1
    second[2, 0:2] = 2
    a, b = drawn(first, second, glyphs)
    assert "\x1b[2J" not in a + b, "no clearing between frames"
    assert a.count(glyphs[0]) == 12 and a.startswith("\x1b[?2026h\x1b[H")
    grid_part = b.split("\x1b[0m")[0]
    # row 2 col 3 -> terminal line 2, column 5; row 3 cols 1-2 -> one run from line 3, column 1
    assert grid_part.endswith(f"\x1b[2;5H{glyphs[1]}\x1b[3;1H{glyphs[2]}{glyphs[2]}")
    assert glyphs[0] not in b and b.endswith("\x1b[10;1Hstatus\x1b[K\x1b[?2026l")


# --- in a real terminal -------------------------------------------------------------------------------------------

class Tmux:
    """A tmux server of its own (no config) with one detached session of a fixed size, running bash in ROOT with
    the prompt `PROMPT$`."""

    def __init__(self, name: str, size: tuple[int, int]):
        self.socket, self.env = f"emojicam-test-{os.getpid()}-{name}", {**os.environ, "LANG": "C.UTF-8"}
        self.env.pop("TMUX", None)
        self.tmux("new-session", "-d", "-s", "main", "-x", size[0], "-y", size[1], "bash --norc --noprofile")
        self.type(f"cd {ROOT} && export PS1='PROMPT$ ' && clear")
        self.wait(lambda lines: lines[:1] == ["PROMPT$"], "the prompt")

    def tmux(self, *args) -> str:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *map(str, args)], env=self.env,
                              check=True, capture_output=True, text=True, timeout=30).stdout

    def type(self, line: str) -> None:
        self.tmux("send-keys", "-t", "main", "-l", line)
        self.tmux("send-keys", "-t", "main", "Enter")

    def lines(self, escapes: bool = False) -> list[str]:
        """The pane as text, wrapped lines joined, trailing blank lines dropped."""
        text = self.tmux("capture-pane", "-p", "-J", *(["-e"] if escapes else []), "-t", "main")
        return [line.rstrip(" ") for line in text.rstrip("\n").split("\n")] if text.strip() else []

    def show(self, fmt: str) -> str:
        return self.tmux("display", "-p", "-t", "main", fmt).strip()

    def wait(self, ready, what: str, timeout: float = 240) -> list[str]:
        deadline = time.monotonic() + timeout
        while not ready(lines := self.lines()):
            if time.monotonic() > deadline:
                pytest.fail(f"tmux pane never showed {what}: {lines}")
            time.sleep(0.25)
        return lines

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True, timeout=30)


def emoji_count(line: str) -> int:
    return sum(unicodedata.east_asian_width(ch) == "W" for ch in line)


def grid_of(lines: list[str], cols: int, rows: int) -> list[str] | None:
    """The grid rows when the pane shows a cols x rows grid of emoji (and nothing else on them) above a status line
    naming that grid; else None."""
    if len(lines) < rows + 1 or f"grid {cols}x{rows}" not in lines[-1] or "fps" not in lines[-1]:
        return None
    grid = [line.rstrip() for line in lines[:rows]]
    ok = all(emoji_count(line) == cols and len(line.replace("\ufe0f", "")) == cols for line in grid)
    return grid if ok and not any(lines[rows:-1]) else None


@pytest.fixture(scope="module")
def moving_clip(tmp_path_factory) -> Path:
    """Two minutes of FFmpeg's moving test pattern at 10 fps: the mirror never reaches its end while tested."""
    return make_clip(tmp_path_factory.mktemp("terminal") / "moving.mp4", CLIP_SIZE, fps=10, seconds=120, audio=False)


@pytest.fixture
def tmux():
    need_tool("tmux", "the terminal mirror is tested in a real terminal (apt-get install tmux; ./setup.sh test "
              "installs it)")
    sessions = []

    def start(size: tuple[int, int]) -> Tmux:
        sessions.append(Tmux(f"{next(SESSIONS)}", size))
        return sessions[-1]

    yield start
    for session in sessions:
        session.close()


def command(clip: Path, *extra) -> str:
    """The mirror on one core: one CPU lane, so each batch shape compiles once instead of once per core."""
    pin = "taskset -c 0 " if shutil.which("taskset") else ""
    return f"{pin}{sys.executable} -m emojicam live --terminal --device CPU --source {clip} {' '.join(map(str, extra))}"


def test_the_mirror_fills_the_terminal_moves_follows_a_resize_and_q_restores_the_terminal(tmux, moving_clip, weights,
                                                                                          tmp_path):
    term = tmux((44, 16))
    term.type(f"stty -g > {tmp_path / 'before'}")
    term.type(command(moving_clip, "--weights", weights))
    cols, rows = expected_grid((44, 16))
    assert (cols, rows) == (22, 12)
    first = grid_of(term.wait(lambda lines: grid_of(lines, cols, rows), f"a {cols}x{rows} grid"), cols, rows)
    assert term.show("#{alternate_on} #{cursor_flag}") == "1 0", "alternate screen, cursor hidden"
    term.wait(lambda lines: (now := grid_of(lines, cols, rows)) is not None and now != first, "the grid changing")

    term.tmux("resize-window", "-t", "main", "-x", 60, "-y", 20)
    cols, rows = expected_grid((60, 20))
    assert (cols, rows) == (30, 17)
    term.wait(lambda lines: grid_of(lines, cols, rows), f"a {cols}x{rows} grid after the resize")

    term.tmux("send-keys", "-t", "main", "q")
    lines = term.wait(lambda lines: lines and lines[-1] == "PROMPT$", "the prompt again")
    # capture-pane joins wrapped rows: where the typed command ends exactly at the pane's edge (it holds the test's
    # temporary paths, whose length varies), the next line's output is joined onto it
    summary = [line[line.index("live: "):] for line in lines if "live: " in line]
    assert len(summary) == 1 and summary[0].endswith("ended: q pressed") and "grid 30x17" in summary[0], lines
    assert not any(emoji_count(line) for line in lines), "the emoji went with the alternate screen"
    assert term.show("#{alternate_on} #{cursor_flag}") == "0 1", "main screen, cursor shown"
    assert "\x1b[" not in "\n".join(term.lines(escapes=True)), "no colours or attributes left behind"
    term.type(f"stty -g > {tmp_path / 'after'}")
    term.wait(lambda _: (tmp_path / "after").exists() and (tmp_path / "after").read_text(), "stty")
    assert (tmp_path / "after").read_text() == (tmp_path / "before").read_text(), "tty mode restored"


def test_ctrl_c_and_max_frames_end_it_with_the_terminal_restored(tmux, moving_clip, weights):
    term = tmux((44, 16))  # the grid of the test above: its compiled shapes are in the JIT cache
    term.type(command(moving_clip, "--weights", weights, "--max-frames", 3))
    lines = term.wait(lambda lines: lines and lines[-1] == "PROMPT$" and len(lines) > 2, "the prompt again")
    assert any(line.startswith("live: 3 frames") and line.endswith("ended: --max-frames 3 reached") for line in lines)

    term.type("clear")
    term.type(command(moving_clip, "--weights", weights))
    cols, rows = expected_grid((44, 16))
    term.wait(lambda lines: grid_of(lines, cols, rows), f"a {cols}x{rows} grid")
    term.tmux("send-keys", "-t", "main", "C-c")
    lines = term.wait(lambda lines: lines and lines[-1] == "PROMPT$", "the prompt again")
    assert any(line.endswith("ended: interrupted (Ctrl-C)") for line in lines), lines
    assert term.show("#{alternate_on} #{cursor_flag}") == "0 1"
    assert "\x1b[" not in "\n".join(term.lines(escapes=True))


@pytest.mark.parametrize(("options", "words"), [
    ([], "--terminal: expected to run in a terminal, got stdin or stdout redirected"),
    (["--background", "auto"], "--background: expected white or black for text"),
])
def test_bad_terminal_runs_get_one_line(moving_clip, weights, options, words):
    done = run_cli("live", "--terminal", "--source", moving_clip, "--weights", weights, *options)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in done.stderr, lines


def test_a_first_start_draws_the_picture_in_blocks_while_the_grid_compiles(tmux, moving_clip, weights, tmp_path):
    """Empty caches: while the grid compiles, the terminal shows the picture as blocks of the cells' colours and a
    status line with the preparation's progress, then the emoji grid."""
    term = tmux((44, 16))
    empty = f"EMOJICAM_CACHE={tmp_path / 'jits'} CACHEDB={tmp_path / 'kernels.db'}"
    term.type(f"{empty} {command(moving_clip, '--weights', weights)}")
    cols, rows = expected_grid((44, 16))
    lines = term.wait(lambda lines: lines and f"preparing {cols}x{rows}: " in lines[-1], "the preparation")
    assert re.search(rf"q quits  preparing {cols}x{rows}: \d+ of \d+ built, \d+ s", lines[-1]), lines[-1]
    colours = re.findall(r"\x1b\[48;2;(\d+);(\d+);(\d+)m", "\n".join(term.lines(escapes=True)))
    assert len(set(colours)) > 20, "the picture's colours, cell by cell"
    term.wait(lambda lines: grid_of(lines, cols, rows), f"a {cols}x{rows} grid", timeout=600)
    term.tmux("send-keys", "-t", "main", "q")
    term.wait(lambda lines: lines and lines[-1] == "PROMPT$", "the prompt again")
