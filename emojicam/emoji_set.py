"""EmojiSet: a folder of emoji PNGs -> class order, fingerprint, model inputs and tile atlases."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np

from emojicam.errors import EmojicamError
from emojicam.grid import PATCH_PX
from emojicam.resources import shipped

DEFAULT_SET = shipped("emoji_set")
SETS = {"default": "", "full": "full"}  # `--set`: the shipped sets, as folders inside emoji_set/ (build.py)


def shipped_set(name: str = "default") -> Path:
    """The folder of a shipped emoji set: default = 256 Twemoji, full = every Twemoji but flags and components."""
    if name not in SETS:
        raise EmojicamError(f"--set: expected one of {', '.join(SETS)}, got {name}")
    return DEFAULT_SET / SETS[name] if SETS[name] else DEFAULT_SET


class EmojiSet:
    """The emoji a model can choose from, in class order, as premultiplied BGRA images."""

    def __init__(self, names: list[str], bgra: np.ndarray, fingerprint: str, labels: list[str] | None = None,
                 codepoints: list[str] | None = None):
        self.names = names            # class order: file names
        self.labels = labels or names  # human-readable names (from the manifest when there is one)
        # each emoji's Unicode sequence as the manifest spells it, "1F324-FE0F" (fully qualified: with U+FE0F where
        # the emoji needs it); None for a set without them (a folder of PNGs), which cannot be written as text
        self.codepoints = codepoints
        self.bgra = bgra              # (K, S, S, 4) uint8, straight (not premultiplied) alpha
        self.fingerprint = fingerprint
        self._atlases: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._blended: dict[tuple[int, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def load(cls, folder: str | Path = DEFAULT_SET) -> EmojiSet:
        """Load a folder of RGBA or RGB PNGs; `manifest.json`, when present, gives the class order."""
        folder = Path(folder)
        if not folder.is_dir():
            raise EmojicamError(f"emoji set: expected a folder of PNGs, got {folder}")
        manifest = folder / "manifest.json"
        if manifest.exists():
            classes = json.loads(manifest.read_text())["classes"]
            names, labels = [c["file"] for c in classes], [c.get("name", c["file"]) for c in classes]
            codepoints = [c["codepoint"] for c in classes] if all(c.get("codepoint") for c in classes) else None
        else:
            names = sorted(p.name for p in folder.glob("*.png"))
            labels = codepoints = None
        if len(names) < 2:
            raise EmojicamError(f"emoji set: expected at least 2 PNGs in {folder}, got {len(names)}")
        digest = hashlib.sha256()
        images = []
        for name in names:
            data = (folder / name).read_bytes() if (folder / name).exists() else b""
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
            if image is None:
                raise EmojicamError(f"emoji set: expected a PNG image, got an unreadable file {folder / name}")
            images.append(_to_bgra(image))
            digest.update(name.encode() + b"\0" + data)
        size = max(im.shape[0] for im in images)
        bgra = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) if im.shape[0] != size else im
                         for im in images])
        return cls(names, bgra, digest.hexdigest()[:16], labels, codepoints)

    def strings(self) -> list[str]:
        """Each emoji as the characters a text holds: its fully qualified Unicode sequence ("1F324-FE0F" -> U+1F324
        U+FE0F), in class order (text outputs, the terminal mirror, the page's copy); EmojicamError for a set
        without codepoints."""
        if self.codepoints is None:
            raise EmojicamError("text output needs each emoji's codepoints, and this emoji set has none (a folder of "
                                "PNGs without a manifest.json giving a \"codepoint\" per emoji, as "
                                "emoji_set/manifest.json does); write a picture (.png) instead")
        return ["".join(chr(int(part, 16)) for part in seq.split("-")) for seq in self.codepoints]

    def check_trained_on(self, fingerprint: str, class_names: list[str], flag: str = "weights") -> None:
        """One line (EmojicamError, naming the flag) unless weights with this fingerprint and class order were
        trained on this set: their outputs would name the wrong emoji."""
        if fingerprint != self.fingerprint or list(class_names) != self.names:
            raise EmojicamError(f"{flag}: expected weights trained on this emoji set (fingerprint "
                                f"{self.fingerprint}), got weights for set {fingerprint}")

    def rgba_patches(self, px: int = PATCH_PX) -> np.ndarray:
        """(K, px, px, 4) float32 RGBA in [0, 1] at the model's input size, for training."""
        small = np.stack([cv2.resize(im, (px, px), interpolation=cv2.INTER_AREA) for im in self.bgra])
        return small[..., [2, 1, 0, 3]].astype(np.float32) / 255

    def tiles(self, tile_px: int) -> np.ndarray:
        """(K, t, t, 4) uint8 BGRA tiles at tile_px, straight alpha: what atlas() and the browser page draw."""
        interp = cv2.INTER_AREA if tile_px < self.bgra.shape[1] else cv2.INTER_LINEAR
        return np.stack([cv2.resize(im, (tile_px, tile_px), interpolation=interp) for im in self.bgra])

    def atlas(self, tile_px: int) -> tuple[np.ndarray, np.ndarray]:
        """Tiles at tile_px: (K, t, t, 3) float32 premultiplied BGR and (K, t, t, 1) float32 alpha, cached."""
        if tile_px not in self._atlases:
            tiles = self.tiles(tile_px)
            alpha = tiles[..., 3:].astype(np.float32) / 255
            self._atlases[tile_px] = (tiles[..., :3].astype(np.float32) * alpha, alpha)
        return self._atlases[tile_px]

    def blended_atlas(self, tile_px: int, background: str) -> np.ndarray:
        """(K, t, t, 3) uint8 BGR tiles pre-blended on a black or white background."""
        key = (tile_px, background)
        if key not in self._blended:
            if background not in ("black", "white"):
                raise EmojicamError(f"background: expected black or white for a pre-blended atlas, got {background}")
            premult, alpha = self.atlas(tile_px)
            bg = 0.0 if background == "black" else 255.0
            self._blended[key] = np.clip(premult + bg * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)
        return self._blended[key]

    def mean_colours(self, background: str = "black", tile_px: int = PATCH_PX) -> np.ndarray:
        """(K, 3) float32 mean BGR of each emoji drawn at tile_px on a black or white background, 0..255."""
        premult, alpha = self.atlas(tile_px)
        bg = 0.0 if background == "black" else 255.0
        return (premult + bg * (1 - alpha)).mean((1, 2)).astype(np.float32)

    def coverage(self) -> np.ndarray:
        """(K,) mean opacity of each emoji: how much of its tile it covers."""
        return self.bgra[..., 3].mean((1, 2)) / 255


def _to_bgra(image: np.ndarray) -> np.ndarray:
    """Any decoded PNG (grey, grey+alpha, BGR, BGRA, 8 or 16 bit) -> square BGRA uint8."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGRA)
    elif image.shape[2] == 2:
        grey, alpha = image[..., 0], image[..., 1]
        image = np.dstack([grey, grey, grey, alpha])
    elif image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    h, w = image.shape[:2]
    if h != w:  # pad to a square, transparent
        side = max(h, w)
        square = np.zeros((side, side, 4), np.uint8)
        square[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = image
        image = square
    return np.ascontiguousarray(image)
