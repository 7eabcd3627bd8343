"""Quality of emoji art as text on the development photos: emoji picked for a plain white or black background (what
`.txt`, `.html` and `live --terminal` use), against the classic mosaic on the same background, with the picture
default (`auto`) beside them.

    .venv/bin/python benchmarks/text_quality.py [--cols 64]    # writes results/<date>-text-quality.{json,md} + sheets
The measures are taken on the set's own tiles drawn on the plain background: a reader's emoji font draws other
glyphs for the same codepoints, so this is what the text shows in Twemoji (Discord, for one, draws Twemoji).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from quality import RESULTS, ROOT, sample_frames

from emojicam.engine import open_engine
from emojicam.evaluate import evaluate
from emojicam.settings import Settings

BACKGROUNDS = ("white", "black", "auto")


def table(summaries: dict[str, dict]) -> str:
    """One row per photo: text on white and on black against the mosaic on the same background; the picture."""
    head = ("| photo | white: colour error (text / mosaic) | ratio | edges (text / mosaic) | coverage (text / mosaic) "
            "| black: colour error (text / mosaic) | ratio | edges (text / mosaic) | coverage (text / mosaic) "
            "| picture (auto): colour error / edges / coverage |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for photo in summaries["white"]["photos"]:
        cells = [photo]
        for bg in ("white", "black"):
            row = summaries[bg]["photos"][photo]
            ours, base = row["emojicam"], row["baseline"]
            cells += [f"{ours['colour_error']:.2f} / {base['colour_error']:.2f}", f"{row['colour_ratio']:.2f}",
                      f"{ours['edge_agreement']:.3f} / {base['edge_agreement']:.3f}",
                      f"{ours['coverage']:.2f} / {base['coverage']:.2f}"]
        auto = summaries["auto"]["photos"][photo]["emojicam"]
        cells.append(f"{auto['colour_error']:.2f} / {auto['edge_agreement']:.3f} / {auto['coverage']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    means = [f"{summaries[bg]['mean_coverage']:.3f}" for bg in BACKGROUNDS]
    lines.append(f"| mean coverage | | | | {means[0]} | | | | {means[1]} | {means[2]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cols", type=int, default=64)
    cols = parser.parse_args().cols
    date = time.strftime("%Y-%m-%d")
    out = RESULTS / f"{date}-text-quality"
    summaries = {}
    with tempfile.TemporaryDirectory() as tmp:
        photos = [ROOT / "samples" / "grace_hopper.jpg", *sample_frames(ROOT / "samples" / "sample.mp4", Path(tmp))]
        for bg in BACKGROUNDS:
            with open_engine(Settings(cols=cols, background=bg)) as engine:  # the 36 px network, as convert
                summaries[bg] = evaluate(engine, photos, out / bg, cols=cols)
    text = table(summaries)
    print(text)
    out.with_suffix(".json").write_text(json.dumps(summaries, indent=1) + "\n")
    out.with_suffix(".md").write_text(
        f"# Text quality at {cols} columns, {date}\n\n`python benchmarks/text_quality.py`: `emojicam evaluate` with "
        f"`--background white`, `black` and `auto` on the development photos (the portrait and frames 1/8, 3/8, 5/8, "
        f"7/8 of `samples/sample.mp4`). Text (`.txt`, `.html`, `live --terminal`) picks its emoji for a plain white "
        f"or black background; the classic mosaic (each cell the emoji whose mean colour on that background is "
        f"nearest the cell's) is drawn on the same background; the picture default (`auto`) is beside them. "
        f"Measured on the set's tiles drawn on the background: a reader's emoji font draws other glyphs for the "
        f"same codepoints. ratio = text / mosaic colour error.\n\n{text}\n")


if __name__ == "__main__":
    main()
