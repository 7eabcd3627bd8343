"""Build the default emoji set from Twemoji (npm package `emoji-datasource-twitter`).

Run from the repo root:  python emoji_set/build.py [--count 256]   (the default set, in this folder)
                         python emoji_set/build.py --full          (every candidate, in full/)

It fetches the package with `npm pack`, drops flags, skin-tone variants and
components (the package lists skin tones as variations of their base emoji, not as
entries of their own) and emoji whose picture is another's pixel for pixel (26 in
16.0.0, nearly all family sequences); the full set keeps every emoji left (1,610),
and for the default set picks COUNT emoji by farthest-point sampling over a colour +
shape descriptor (mean Lab colour of the opaque pixels, coverage, and a 4x4 Lab
thumbnail on grey), so the set covers dark, light, red, green, blue, skin and
grey tiles and many shapes. The pick is deterministic: it starts at the emoji
nearest the mean descriptor and breaks ties by Unicode sort order.
The chosen 64x64 PNGs, `manifest.json` and the CC-BY 4.0 attribution
(`LICENSE.md`) are written beside this script, or into full/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import cv2
import numpy as np

PACKAGE = "emoji-datasource-twitter@16.0.0"
HERE = Path(__file__).resolve().parent
FULL = "full"  # the subfolder of the full set (`--set full`)
EXCLUDED_CATEGORIES = {"Flags", "Component"}


def fetch_package(workdir: Path) -> Path:
    """`npm pack` the Twemoji data package into workdir and unpack it."""
    out = subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=workdir, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    with tarfile.open(workdir / out) as tar:
        tar.extractall(workdir, filter="data")
    return workdir / "package"


def descriptor(rgba: np.ndarray) -> np.ndarray:
    """Colour and shape descriptor of one 64x64 RGBA (OpenCV BGRA) emoji."""
    alpha = rgba[..., 3:].astype(np.float32) / 255
    bgr = rgba[..., :3].astype(np.float32) / 255
    on_grey = (bgr * alpha + 0.5 * (1 - alpha)).astype(np.float32)
    lab = cv2.cvtColor(on_grey, cv2.COLOR_BGR2Lab)
    opaque_lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab)
    weight = alpha[..., 0].sum() + 1e-6
    mean_lab = (opaque_lab * alpha).sum((0, 1)) / weight
    thumb = cv2.resize(lab, (4, 4), interpolation=cv2.INTER_AREA).ravel()
    coverage = alpha.mean() * 100
    return np.concatenate([2 * mean_lab, [coverage], thumb / 2]).astype(np.float64)


def farthest_points(features: np.ndarray, count: int) -> list[int]:
    """Greedy farthest-point sampling, started at the point nearest the mean."""
    chosen = [int(np.argmin(((features - features.mean(0)) ** 2).sum(1)))]
    dist = ((features - features[chosen[0]]) ** 2).sum(1)
    while len(chosen) < count:
        nxt = int(np.argmax(dist))  # argmax takes the first maximum: ties go to sort order
        chosen.append(nxt)
        dist = np.minimum(dist, ((features - features[nxt]) ** 2).sum(1))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=256, help="number of emoji to pick (default 256)")
    parser.add_argument("--full", action="store_true", help=f"every candidate, into {FULL}/ (ignores --count)")
    args = parser.parse_args()
    target = HERE / FULL if args.full else HERE
    target.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        package = fetch_package(Path(tmp))
        entries = json.loads((package / "emoji.json").read_text())
        entries = sorted((e for e in entries if e["has_img_twitter"] and e["category"] not in EXCLUDED_CATEGORIES),
                         key=lambda e: e["sort_order"])
        images = [cv2.imread(str(package / "img/twitter/64" / e["image"]), cv2.IMREAD_UNCHANGED) for e in entries]
        keep = [i for i, im in enumerate(images) if im is not None and im.shape == (64, 64, 4)]
        entries, images = [entries[i] for i in keep], [images[i] for i in keep]
        # a few emoji share one picture (Twemoji draws most family sequences alike): keep the first in sort order,
        # since a second copy adds nothing to draw with and a class that cannot be told apart from another
        first = {}
        unique = [i for i, im in enumerate(images) if first.setdefault(im.tobytes(), i) == i]
        dropped = len(entries) - len(unique)
        entries, images = [entries[i] for i in unique], [images[i] for i in unique]
        if args.full:
            chosen = list(range(len(entries)))
        else:
            chosen = sorted(farthest_points(np.stack([descriptor(im) for im in images]), args.count))
        for old in target.glob("*.png"):
            old.unlink()
        manifest = []
        for i in chosen:
            e = entries[i]
            shutil.copyfile(package / "img/twitter/64" / e["image"], target / e["image"])
            name = (e["name"] or e["short_name"]).lower()
            # `unified` is the fully qualified sequence (U+FE0F where the emoji needs it; `non_qualified` drops
            # it): what text output writes (emojicam/text.py)
            manifest.append({"file": e["image"], "codepoint": e["unified"], "name": name, "category": e["category"]})
        if target != HERE:
            shutil.copyfile(HERE / "LICENSE.md", target / "LICENSE.md")
        (target / "manifest.json").write_text(json.dumps({"source": PACKAGE, "license": "CC-BY-4.0",
                                                        "classes": manifest}, indent=1) + "\n")
        print(f"wrote {len(manifest)} emoji from {len(entries)} candidates ({dropped} with the picture of an "
              f"earlier one left out) to {target}")


if __name__ == "__main__":
    main()
