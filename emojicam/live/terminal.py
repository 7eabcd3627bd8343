"""`emojicam live --terminal`: the live mirror drawn as emoji characters in the terminal it runs in (over SSH too).

Two terminal columns per emoji, the grid as large as the terminal allows (and again after a resize), redrawn in
place: the cursor goes home and only the cells whose emoji changed are written, in one write per frame, so nothing
is cleared and nothing flickers. The last line is a status line with fps. `q` or Ctrl-C quits (SIGTERM and SIGHUP
too), and the terminal is left as it was: main screen back, cursor shown, colours reset, tty mode restored.
"""

from __future__ import annotations

import ctypes
import os
import select
import sys
import termios
import time
import tty
import unicodedata
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emojicam.errors import EmojicamError
from emojicam.grid import MAX_COLS, Grid, cell_means
from emojicam.live.capture import Capture
from emojicam.live.mirror import (
    LiveOptions,
    Shot,
    Status,
    View,
    check_options,
    run_session,
)
from emojicam.settings import check_text_background

if TYPE_CHECKING:
    from emojicam.emoji_set import EmojiSet
    from emojicam.engine import Emojifier
    from emojicam.settings import ModelChoice, Settings

ZWJ, VS16 = "\u200d", "\ufe0f"
# 256-colour codes for pure white and black (the 8 basic colours are themed: "white" is often light grey)
CELL_BACKGROUND = {"white": "\x1b[48;5;231m", "black": "\x1b[48;5;16m"}
ENTER = "\x1b[?1049h\x1b[?25l\x1b[?7l\x1b[H\x1b[2J"  # alternate screen, cursor hidden, no autowrap, cleared once
# colours reset, the alternate screen cleared (tmux 3.3 otherwise shows some of its lines on the main screen after
# a resize), autowrap and cursor back, main screen back
LEAVE = "\x1b[0m\x1b[H\x1b[2J\x1b[?7h\x1b[?25h\x1b[?1049l"
SYNC_BEGIN, SYNC_END = "\x1b[?2026h", "\x1b[?2026l"   # synchronized output: terminals that know it show whole frames


def _libc_wcwidth() -> Callable[[str], int] | None:
    """The C library's wcwidth, which terminal programs such as tmux use for a character's width; None where there
    is none or the locale is not UTF-8 (then it knows no wide characters at all)."""
    try:
        wcwidth = ctypes.CDLL(None).wcwidth
    except (OSError, AttributeError):
        return None
    wcwidth.argtypes, wcwidth.restype = [ctypes.c_wchar], ctypes.c_int
    return wcwidth if wcwidth("\u4e00") == 2 else None


def draws_two_wide(text: str, wcwidth: Callable[[str], int] | None = None) -> bool:
    """Whether terminals draw this emoji two columns wide: one code point (U+FE0F aside) that Unicode's East Asian
    Width calls wide and, where the C library can say, the C library too. Not so: ZWJ sequences (many terminals
    draw each part), text-style emoji that only U+FE0F makes emoji (one column in most), and emoji newer than the
    system's tables (zero columns, which corrupts the line)."""
    base = text.removesuffix(VS16)
    return (len(base) == 1 and unicodedata.east_asian_width(base) == "W"
            and (wcwidth is None or wcwidth(base) == 2))


def terminal_glyphs(emoji_set: EmojiSet, background: str) -> list[str]:
    """Per emoji of the set, what the terminal shows for it: the emoji itself where it draws two columns wide,
    else the first part of a ZWJ sequence (the person without the profession or sign), else the emoji of the set
    that looks most like it on the background (nearest tile by pixels) and does draw two wide."""
    strings, wcwidth = emoji_set.strings(), _libc_wcwidth()
    safe = np.array([draws_two_wide(s, wcwidth) for s in strings])
    if not safe.any():
        raise EmojicamError("--terminal: expected emoji this terminal draws two columns wide, got none in the set")
    tiles = emoji_set.blended_atlas(16, background).reshape(len(strings), -1).astype(np.float32)
    glyphs = list(strings)
    for i in np.flatnonzero(~safe):
        first = strings[i].split(ZWJ)[0]
        if ZWJ in strings[i] and draws_two_wide(first, wcwidth):
            glyphs[i] = first.removesuffix(VS16)
        else:
            candidates = np.flatnonzero(safe)
            glyphs[i] = strings[candidates[((tiles[candidates] - tiles[i]) ** 2).sum(1).argmin()]]
    return glyphs


def fit_grid(frame_shape: tuple[int, ...], size: tuple[int, int], max_cols: int | None, tile_px: int) -> Grid | None:
    """The largest grid (rows follow the frame's aspect ratio) that fits a terminal of size (columns, lines) at two
    columns per emoji, with one line left for the status; None when not even one emoji fits."""
    columns, lines = size
    best = None
    for cols in range(1, min(columns // 2, max_cols or MAX_COLS, MAX_COLS) + 1):
        try:
            grid = Grid.for_frame(frame_shape, cols, tile_px)
        except EmojicamError:
            break
        if grid.rows > lines - 1:
            break
        best = grid
    return best


class Screen:
    """The terminal while the mirror runs: alternate screen, cbreak mode (keys arrive at once, unechoed), no cursor;
    draws grids of glyphs rewriting only the cells that changed. Everything is put back on exit."""

    def __init__(self, background: str, out: int | None = None, inp: int | None = None):
        self.out = sys.stdout.fileno() if out is None else out
        self.inp = sys.stdin.fileno() if inp is None else inp
        self.cell_background = CELL_BACKGROUND[background]
        self.shown: np.ndarray | None = None  # (rows, cols) glyph ids on screen now
        self._saved = None

    def __enter__(self) -> Screen:
        self._saved = termios.tcgetattr(self.inp)
        tty.setcbreak(self.inp)
        self.write(ENTER)
        return self

    def __exit__(self, *exc) -> None:
        with suppress(OSError):  # a terminal that hung up (SIGHUP) has nothing left to restore
            self.write(LEAVE)
        with suppress(OSError, termios.error):
            termios.tcsetattr(self.inp, termios.TCSADRAIN, self._saved)

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        while data:
            data = data[os.write(self.out, data):]

    def size(self) -> tuple[int, int]:
        """(columns, lines), asked of the terminal each frame: it follows a resize without a SIGWINCH handler."""
        return tuple(os.get_terminal_size(self.out))

    def clear(self) -> None:
        """After a resize: the old picture is in the wrong place, so the screen is cleared once."""
        self.shown = None
        self.write("\x1b[0m\x1b[2J")

    def blocks(self, colours: np.ndarray, status: str, columns: int, lines: int) -> None:
        """Draw a (rows, cols, 3) grid of BGR colours as plain blocks, two columns each, and the status line: the
        picture while the first grid is prepared (24-bit colour, which terminals without it round)."""
        parts = [SYNC_BEGIN]
        for r, row in enumerate(colours.astype(int)):
            parts.append(f"\x1b[{r + 1};1H" + "".join(f"\x1b[48;2;{c[2]};{c[1]};{c[0]}m  " for c in row))
        parts += [f"\x1b[0m\x1b[{lines};1H", status[:max(0, columns - 1)], "\x1b[K", SYNC_END]
        self.shown = None  # every emoji cell is drawn again after this
        self.write("".join(parts))

    def frame(self, ids: np.ndarray | None, glyphs: list[str], status: str, columns: int, lines: int) -> None:
        """Draw a (rows, cols) grid of glyph ids (None: nothing) and the status line, as one write: cursor home,
        then for each run of changed cells in a row its position and its glyphs."""
        parts = [SYNC_BEGIN, "\x1b[H"]
        if ids is not None:
            changed = np.ones(ids.shape, bool) if self.shown is None or self.shown.shape != ids.shape else (
                ids != self.shown)
            parts.append(self.cell_background)
            for r, c in zip(*np.nonzero(changed), strict=True):
                if c == 0 or not changed[r, c - 1]:  # a run starts: move there, 1-based, two columns per emoji
                    parts.append(f"\x1b[{r + 1};{2 * c + 1}H")
                parts.append(glyphs[ids[r, c]])
            self.shown = ids
        parts += [f"\x1b[0m\x1b[{lines};1H", status[:max(0, columns - 1)], "\x1b[K", SYNC_END]
        self.write("".join(parts))

    def quit_pressed(self) -> bool:
        """Whether q was typed since the last look (never waits)."""
        pressed = False
        while select.select([self.inp], [], [], 0)[0]:
            data = os.read(self.inp, 256)
            if not data:
                break
            pressed |= b"q" in data or b"Q" in data
        return pressed


def check_terminal(opts: LiveOptions) -> None:
    if not (os.isatty(sys.stdout.fileno()) and os.isatty(sys.stdin.fileno())):
        raise EmojicamError("--terminal: expected to run in a terminal, got stdin or stdout redirected; run it in "
                            "a terminal, or record a file instead: emojicam live --no-window --record OUT.mp4")
    if opts.record is not None or opts.virtual_camera:
        raise EmojicamError("--terminal: expected the terminal alone, got --record or --virtual-camera too; those go "
                            "with the window (or --no-window)")
    check_options(opts, ())


class TerminalOutput:
    """The mirror as emoji characters in this terminal: the largest grid that fits (again after a resize), glyphs
    drawn in place; while a grid is prepared, the picture as blocks of the cells' colours; q quits."""

    def __init__(self, engine: Emojifier, screen: Screen, max_cols: int | None, background: str):
        glyph_of = terminal_glyphs(engine.emoji_set, background)
        self.glyphs = sorted(set(glyph_of))
        self.glyph_ids = np.array([self.glyphs.index(g) for g in glyph_of])  # the same glyph, the same id
        self.engine, self.screen, self.max_cols, self.tile_px = engine, screen, max_cols, engine.settings.tile_px
        self.size: tuple[int, int] | None = None
        self.grid: Grid | None = None

    def cols(self, frame_shape: tuple[int, ...], view: View) -> int | None:
        """The grid that fits the terminal now (asked each frame: it follows a resize without a SIGWINCH handler)."""
        if (size := self.screen.size()) != self.size:
            self.size, self.grid = size, fit_grid(frame_shape, size, self.max_cols, self.tile_px)
            self.screen.clear()  # the old picture is in the wrong place
        return self.grid.cols if self.grid is not None else None

    def render(self, shot: Shot, view: View) -> np.ndarray | None:
        """(rows, cols) glyph ids, or None where the grid shown does not fit (the terminal shrank) or none is ready."""
        picked = shot.picked
        if picked is None or self.grid is None or picked.grid.cols > self.grid.cols or picked.grid.rows > \
                self.grid.rows:
            return None
        return self.glyph_ids[picked.indices].reshape(picked.grid.rows, picked.grid.cols)

    def show(self, rendered: np.ndarray | None, shot: Shot, status: Status) -> None:
        if self.grid is None:
            self.screen.frame(None, self.glyphs, f"q quits  terminal {self.size[0]}x{self.size[1]} too small",
                              *self.size)
        elif rendered is None:
            self.screen.blocks(cell_means(shot.frame, self.grid).reshape(self.grid.rows, self.grid.cols, 3),
                               f"q quits  {shot.preparing or 'preparing'}", *self.size)
        else:
            grid = shot.picked.grid
            self.screen.frame(rendered, self.glyphs, f"q quits  {status.fps:4.1f} fps  grid {grid.cols}x{grid.rows}"
                                                     f"  {self.engine.device}", *self.size)

    def keys(self, view: View, rendered: np.ndarray | None) -> tuple[View, str]:
        if not self.screen.quit_pressed():
            if rendered is None:
                time.sleep(0.03)  # while preparing: a few redraws a second, not a busy loop
            return view, ""
        return view, "q pressed"


@dataclass(frozen=True)
class TerminalFront:
    """The live mirror as text in this terminal: the screen opens once the engine is loaded."""

    settings: Settings
    max_cols: int | None
    every_frame: bool
    recorded: Path | None = None

    def open(self, stack: ExitStack, capture: Capture) -> None:
        pass

    def output(self, stack: ExitStack, capture: Capture, engine: Emojifier) -> TerminalOutput:
        screen = stack.enter_context(Screen(self.settings.background))
        return TerminalOutput(engine, screen, self.max_cols, self.settings.background)

    def first_frame(self, t_start: float, t_open: float, t_engine: float) -> float:
        return time.perf_counter() - t_start


def run_terminal(opts: LiveOptions, settings: Settings, choice: ModelChoice, max_cols: int | None = None) -> None:
    """Run the terminal mirror until q, Ctrl-C, --max-frames or the end of the source; then print a one-line
    summary on the restored terminal. settings: the engine's (background white or black); choice: the network
    (for real time); max_cols: at most this many emoji a row (None: as many as fit)."""
    check_text_background(settings.background)
    check_terminal(opts)
    # a file is paced at its own fps unless --max-frames asks for every frame (as in the window mode)
    front = TerminalFront(settings, max_cols, every_frame=opts.max_frames is not None)
    from emojicam.engine import open_engine

    run_session(opts, settings.cols, front, lambda: open_engine(settings, choice, real_time=True),
                say=lambda line: None)  # the screen is ours
