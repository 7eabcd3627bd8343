"""Experiment (not in the product): a score term on each emoji's own colour (the mean BGR of its opaque pixels)
against the patch's mean colour, `weight * max(0, d - tolerance)**2` (d: RGB distance in 0..1 units per channel),
to make the fast network's emoji truer to the picture (the colour-fidelity goal of issue 32). Quality measures on
the development photos of benchmarks/quality.py, one line per photo.

    EMOJICAM_CACHE=/tmp/some-empty-folder .venv/bin/python benchmarks/emoji_colour_term.py \
        [--model fast] [--weight 40] [--tolerance 0] [--variety 10] [--cols 64]

The term is patched into Scorer.scores for this process only, so the JIT cache must be a fresh folder (its keys do
not know the patch: a cached function would run without the term).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from tinygrad import Tensor

from emojicam import scoring
from emojicam.emoji_set import EmojiSet
from emojicam.engine import open_engine
from emojicam.evaluate import evaluate
from emojicam.grid import PATCH_PX
from emojicam.settings import SHIPPED_MODELS, ModelChoice, Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import ROOT, sample_frames


def opaque_rgb(emoji_set: EmojiSet) -> np.ndarray:
    """(K, 3) float32 each emoji's mean RGB over its pixels of alpha at least one half."""
    premult, alpha = emoji_set.atlas(PATCH_PX)
    opaque = alpha[..., 0] >= 0.5
    own = ((premult / np.maximum(alpha, 1e-6)) * opaque[..., None]).sum((1, 2)) / np.maximum(opaque.sum((1, 2)),
                                                                                             1)[:, None]
    return np.ascontiguousarray(own[:, ::-1], np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=SHIPPED_MODELS, default="fast")
    parser.add_argument("--weight", type=float, default=40.0)
    parser.add_argument("--tolerance", type=float, default=0.0)
    parser.add_argument("--variety", type=float, default=Settings.variety)
    parser.add_argument("--cols", type=int, default=64)
    args = parser.parse_args()
    own = opaque_rgb(EmojiSet.load())
    plain = scoring.Scorer.scores

    def scores(self: scoring.Scorer, x: Tensor, cells: Tensor | None = None) -> Tensor:
        mine = Tensor(own, device=self.device)
        d = ((mine.unsqueeze(0) - self.net.mean_colours(x).unsqueeze(1)) * (1 / 255)).square().sum(2).sqrt()
        return plain(self, x, cells) - args.weight * (d - args.tolerance).relu().square()

    scoring.Scorer.scores = scores
    settings = Settings(cols=args.cols, device="CPU", variety=args.variety)
    with tempfile.TemporaryDirectory() as tmp, open_engine(settings, ModelChoice("default", args.model)) as engine:
        photos = [ROOT / "samples" / "grace_hopper.jpg", *sample_frames(ROOT / "samples" / "sample.mp4", Path(tmp))]
        summary = evaluate(engine, photos, Path(tmp) / "out", cols=args.cols)
    for name, r in summary["photos"].items():
        print(f"| {args.model} | {args.weight:g} | {args.tolerance:g} | {args.variety:g} | {name} | "
              f"{r['emojicam']['delta_e']:.2f} | {r['colour_ratio']:.2f} | {r['edge_gain']:+.3f} | "
              f"{r['emojicam']['coverage']:.3f} | {r['emojicam']['wallpaper']:.3f} |")


if __name__ == "__main__":
    main()
