"""Emoji art as text: each cell's emoji as its Unicode sequence, one line per grid row (`.txt`), the densest grid
whose text fits a character budget (`--max-chars`), and a self-contained HTML page of the same text (`.html`).

Text has no background of its own (the reader's chat or page is behind it), so text is always picked for a plain
white or black background, never `auto`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emojicam.atomic import write_atomic
from emojicam.errors import EmojicamError
from emojicam.grid import MAX_COLS, Grid

if TYPE_CHECKING:
    from emojicam.engine import Emojifier

TEXT_EXTS = (".txt", ".html")


def art_lines(strings: list[str], indices: np.ndarray, grid: Grid) -> list[list[str]]:
    """The cells' characters, row by row."""
    cells = [strings[i] for i in indices.tolist()]
    return [cells[r * grid.cols:(r + 1) * grid.cols] for r in range(grid.rows)]


def art_text(lines: list[list[str]]) -> str:
    """One line per grid row, a newline after every row."""
    return "".join("".join(row) + "\n" for row in lines)


@dataclass(frozen=True)
class TextArt:
    """Emoji art as text: its grid, its cells row by row, and how many characters the text has."""

    grid: Grid
    lines: list[list[str]]

    @property
    def text(self) -> str:
        return art_text(self.lines)

    @property
    def chars(self) -> int:
        return len(self.text)


def fewest_chars(frame_shape: tuple[int, ...], cols: int, tile_px: int) -> int:
    """The shortest text a grid of cols columns can have: one character per emoji and a newline per row."""
    grid = Grid.for_frame(frame_shape, cols, tile_px)
    return grid.rows * (grid.cols + 1)


def most_cols(frame_shape: tuple[int, ...], max_chars: int, max_cols: int | None, tile_px: int) -> int:
    """The most columns (up to max_cols, else 512) whose shortest possible text fits max_chars: where the search
    for the densest grid that fits starts."""
    least = fewest_chars(frame_shape, 1, tile_px)
    if max_chars < least:
        raise EmojicamError(f"--max-chars: expected at least {least} characters (one emoji column and its newlines "
                            f"for this picture), got {max_chars}")
    cols, top = 1, min(max_cols or MAX_COLS, MAX_COLS)
    while cols < top:  # arithmetic only, no picks
        try:
            if fewest_chars(frame_shape, cols + 1, tile_px) > max_chars:
                break
        except EmojicamError:  # a grid the output-size limit refuses (a very tall picture)
            break
        cols += 1
    return cols


def text_art(emojifier: Emojifier, frame: np.ndarray, strings: list[str], cols: int | None = None,
             max_chars: int | None = None) -> TextArt:
    """A still's emoji as text at cols columns (None: the engine's); with max_chars, at the grid with the most
    columns (at most cols) whose text, newlines included, has at most max_chars characters as Python counts them.
    Emoji take 1 to 8 characters (ZWJ sequences are long), so a grid's length is known only once its emoji are
    picked: grids are tried from the densest whose shortest possible text fits, down, and the first that fits is
    the answer (typically 2-5 tries, all in the densest grid's compiled batch: see Emojifier.pick_still)."""
    if max_chars is None:
        picked = emojifier.pick_still(frame, cols)
        return TextArt(picked.grid, art_lines(strings, picked.indices, picked.grid))
    top = most_cols(frame.shape, max_chars, cols, emojifier.settings.tile_px)
    batch = emojifier.grid_for(frame.shape, top).count
    for c in range(top, 0, -1):
        picked = emojifier.pick_still(frame, c, batch)
        if (art := TextArt(picked.grid, art_lines(strings, picked.indices, picked.grid))).chars <= max_chars:
            return art
    raise EmojicamError(f"--max-chars: expected room for one column of this picture's emoji, got {max_chars} "
                        f"characters (the 1-column text takes {art.chars})")


def write_art(path: Path, art: TextArt, title: str, background: str) -> Path:
    """`.txt`: the text, UTF-8; `.html`: the page. Atomic: nothing half-written appears at path."""
    data = art.text if path.suffix.lower() == ".txt" else html_page(art, title, background)
    encoded = data.encode("utf-8")
    return write_atomic(path, lambda tmp: tmp.write_bytes(encoded))


def html_page(art: TextArt, title: str, background: str) -> str:
    """One self-contained page (no network, no script from elsewhere) showing the art as text in the system's emoji
    font, each emoji in a fixed square box so rows stay aligned whatever the font's advance, with a button that
    copies the same text the .txt would hold."""
    back, fore = ("#fff", "#222") if background == "white" else ("#000", "#ddd")
    rows = "\n".join(f"<div>{''.join(f'<span>{html.escape(cell)}</span>' for cell in row)}</div>"
                     for row in art.lines)
    grid = art.grid
    about = f"{grid.cols}x{grid.rows} emoji, {art.chars:,} characters"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} (emojicam)</title>
<style>
  body {{ margin: 16px; background: {back}; color: {fore}; font: 14px system-ui, sans-serif; }}
  header {{ display: flex; gap: 12px; align-items: center; margin-bottom: 12px; }}
  #art {{ font-family: "Apple Color Emoji", "Segoe UI Emoji", "Noto Color Emoji", "Twemoji Mozilla",
          "EmojiOne Color", emoji, sans-serif; font-size: 16px; line-height: 1; font-variant-emoji: emoji; }}
  #art div {{ display: flex; height: 1.25em; }}
  #art span {{ display: block; flex: none; width: 1.25em; height: 1.25em; line-height: 1.25em; text-align: center;
               overflow: hidden; white-space: nowrap; }}
</style>
</head>
<body>
<header><button id="copy" type="button">Copy text</button><span id="about">{about}</span>
<span id="status" role="status"></span></header>
<div id="art" data-cols="{grid.cols}" data-rows="{grid.rows}">
{rows}
</div>
<script>
  "use strict";
  // The text a chat gets: each row's emoji and a newline, exactly the .txt emojicam writes.
  function artText() {{
    return Array.from(document.getElementById("art").children, row => row.textContent + "\\n").join("");
  }}
  function copyBySelection(text) {{  // pages opened from a file, and older browsers, may refuse the clipboard API
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }}
  document.getElementById("copy").addEventListener("click", async () => {{
    const text = artText(), status = document.getElementById("status");
    let ok = false;
    try {{ await navigator.clipboard.writeText(text); ok = true; }} catch (e) {{ ok = copyBySelection(text); }}
    status.textContent = ok ? "copied" : "the browser refused: select the emoji and copy them by hand";
  }});
</script>
</body>
</html>
"""
