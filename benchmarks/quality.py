"""Quality measures on the development photos: the matplotlib portrait and four frames of samples/sample.mp4.

    .venv/bin/python benchmarks/quality.py [--cols 64] [--name quality] [--model fast] [--set full] [--variety 10]
writes results/<date>-<name>.{json,md} and the contact sheets.
The frames are taken at 1/8, 3/8, 5/8 and 7/8 of the clip (one per photo in it). Never train on these.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2

from emojicam.engine import open_engine
from emojicam.evaluate import evaluate, format_summary
from emojicam.settings import SHIPPED_MODELS, ModelChoice, Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def sample_frames(clip: Path, folder: Path) -> list[Path]:
    """Write the four development frames of clip as PNGs into folder."""
    cap = cv2.VideoCapture(str(clip))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    paths = []
    for eighth in (1, 3, 5, 7):
        cap.set(cv2.CAP_PROP_POS_FRAMES, count * eighth // 8)
        ok, frame = cap.read()
        if not ok:
            raise SystemExit(f"could not read frame {count * eighth // 8} of {clip}")
        paths.append(folder / f"sample_frame_{eighth}of8.png")
        cv2.imwrite(str(paths[-1]), frame)
    cap.release()
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cols", type=int, default=64)
    parser.add_argument("--name", default="quality", help="results file name after the date (default quality)")
    parser.add_argument("--model", choices=SHIPPED_MODELS, default="default")
    parser.add_argument("--set", default="default", dest="set_name")
    parser.add_argument("--variety", type=float, default=Settings.variety)
    parser.add_argument("--colour-weight", type=float, default=None,
                        help="the scores' colour-match weight (default: the model's, see Settings)")
    parser.add_argument("--device", default=None)
    mine = parser.parse_args()
    cols = mine.cols
    flags = [f"--model {mine.model}", f"--set {mine.set_name}", f"--variety {mine.variety:g}"]
    weight = {} if mine.colour_weight is None else {"colour_weight": mine.colour_weight}
    flags += [f"--colour-weight {mine.colour_weight:g}"] if weight else []
    settings = Settings(cols=cols, variety=mine.variety, device=mine.device, **weight)
    with tempfile.TemporaryDirectory() as tmp, open_engine(settings, ModelChoice(mine.set_name, mine.model)) as engine:
        photos = [ROOT / "samples" / "grace_hopper.jpg", *sample_frames(ROOT / "samples" / "sample.mp4", Path(tmp))]
        out = RESULTS / f"{time.strftime('%Y-%m-%d')}-{mine.name}"
        summary = evaluate(engine, photos, out, cols=cols)
    text = format_summary(summary)
    print(text)
    title = f"# Quality at {cols} columns, {time.strftime('%Y-%m-%d %H:%M')} UTC, {', '.join(flags)}"
    out.with_suffix(".md").write_text(f"{title}\n\n```\n{text}\n```\n")
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
