"""Which emoji a model confuses on its hold-out set, and how alike the confused pairs look.

    .venv/bin/python benchmarks/confusions.py WEIGHTS [--set full] [--top 25]

Runs the weights on the same seeded hold-out set `emojicam train` reports (augment.holdout), prints top-1 and,
for the most frequent confusions, both emoji's names, how often, and the mean absolute difference of the two
clean emoji at the network's input size (0..255 per channel; small = the two look nearly the same there).
Also top-1 counted up to "look-alikes": a pick whose clean image is within --alike levels of the truth's.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
from tinygrad import Tensor

from emojicam import model as model_io
from emojicam.augment import Perturbation, holdout
from emojicam.emoji_set import EmojiSet, shipped_set


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("--set", default="full")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--alike", type=float, default=12.0)
    args = ap.parse_args()
    device = "CPU"
    emoji_set = EmojiSet.load(shipped_set(args.set))
    ckpt = model_io.load(args.weights, device)
    px = ckpt.model.config.patch_px
    rgba = emoji_set.rgba_patches(px)
    hx, hy = holdout(rgba, p=Perturbation())
    pred = np.concatenate([ckpt.model.planar_logits(Tensor(hx[i:i + 2048], device=device)).argmax(1).numpy()
                           for i in range(0, len(hx), 2048)])
    # clean emoji at the input size, composited on mid grey: what the network tells apart
    alpha = rgba[..., 3:]
    clean = (rgba[..., :3] * alpha + 0.5 * (1 - alpha)) * 255
    wrong = pred != hy
    diff = np.abs(clean[pred[wrong]] - clean[hy[wrong]]).mean((1, 2, 3))
    print(f"{args.weights}: hold-out top-1 {1 - wrong.mean():.2%} on {len(hy)} perturbed emoji ({px} px input)")
    alike = np.zeros(len(hy), bool)
    alike[np.flatnonzero(wrong)[diff <= args.alike]] = True
    print(f"top-1 counting a pick within {args.alike:g} mean levels of the truth's clean image as right: "
          f"{1 - (wrong & ~alike).mean():.2%}; {(diff <= args.alike).mean():.0%} of the errors are such look-alikes")
    pairs = Counter(zip(hy[wrong].tolist(), pred[wrong].tolist(), strict=True))
    dist = {(int(t), int(p)): float(d) for t, p, d in zip(hy[wrong], pred[wrong], diff, strict=True)}
    print("| truth | picked | times (of 8) | clean difference |\n| --- | --- | --- | --- |")
    for (t, p), n in pairs.most_common(args.top):
        print(f"| {emoji_set.labels[t]} | {emoji_set.labels[p]} | {n} | {dist[(t, p)]:.1f} |")


if __name__ == "__main__":
    main()
