"""Training perturbations (blur, colour, shift, scale, backgrounds) and the fixed hold-out set."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from emojicam.grid import PATCH_PX


@dataclass(frozen=True)
class Perturbation:
    """Ranges of the random perturbations; saved with the weights."""

    max_blur: int = 4          # box blur kernel 0..max_blur (0 and 1 = none)
    colour: float = 0.14       # per-channel gain in 1 +- colour
    brightness: float = 0.10   # overall gain in 1 +- brightness
    max_shift: float = 5.0     # pixels, each axis
    scale: float = 0.10        # zoom in 1 +- scale
    noise: float = 4.0         # Gaussian pixel noise sigma, 0..255 scale (sensor-like)

    def as_dict(self) -> dict:
        return asdict(self)


def backgrounds(count: int, rng: np.random.Generator, px: int = PATCH_PX) -> np.ndarray:
    """(count, px, px, 3) float32 RGB in [0, 1]: solid colours, two-colour gradients and noisy textures."""
    a, b = rng.random((2, count, 1, 1, 3), dtype=np.float32)
    ramp = np.linspace(0, 1, px, dtype=np.float32)
    angle = rng.random(count).astype(np.float32) * 2 * np.pi
    t = (np.cos(angle)[:, None, None] * ramp[None, :, None] + np.sin(angle)[:, None, None] * ramp[None, None, :])
    t = ((t - t.min((1, 2), keepdims=True)) / (np.ptp(t, (1, 2), keepdims=True) + 1e-6))[..., None]
    kind = rng.integers(0, 3, count)[:, None, None, None]
    mix = np.where(kind == 0, 0.0, t)  # solid, else gradient
    bg = a * (1 - mix) + b * mix
    texture = rng.normal(0, 0.08, (count, px, px, 1)).astype(np.float32) * (kind == 2)
    return np.clip(bg + texture, 0, 1)


def perturb(rgba: np.ndarray, rng: np.random.Generator, p: Perturbation = Perturbation()) -> np.ndarray:
    """(B, P, P, 4) float32 RGBA emoji -> (B, P, P, 3) uint8 RGB training patches. Shifts and blur are given in
    pixels of a 36 px patch and scaled to P, so every patch size sees the same perturbations of the picture."""
    count, px = len(rgba), rgba.shape[1]
    ratio = px / PATCH_PX
    warped = np.empty_like(rgba)
    scale = 1 + rng.uniform(-p.scale, p.scale, count)
    shift = rng.uniform(-p.max_shift, p.max_shift, (count, 2)) * ratio
    blur = np.rint(rng.integers(0, p.max_blur + 1, count) * ratio).astype(int)
    centre = (px - 1) / 2
    for i in range(count):  # per training sample, not per tile: cv2 has no batched warp
        m = np.array([[scale[i], 0, centre * (1 - scale[i]) + shift[i, 0]],
                      [0, scale[i], centre * (1 - scale[i]) + shift[i, 1]]], np.float32)
        warped[i] = cv2.warpAffine(rgba[i], m, (px, px), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    alpha = warped[..., 3:]
    image = warped[..., :3] * alpha + backgrounds(count, rng, px) * (1 - alpha)
    for i in np.flatnonzero(blur > 1):
        image[i] = cv2.blur(image[i], (int(blur[i]), int(blur[i])))
    gain = (1 + rng.uniform(-p.colour, p.colour, (count, 1, 1, 3))) * (1 + rng.uniform(-p.brightness, p.brightness,
                                                                                         (count, 1, 1, 1)))
    image = image * gain * 255 + rng.normal(0, p.noise, image.shape)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def holdout(rgba: np.ndarray, per_class: int = 8, seed: int = 20211031,
            p: Perturbation = Perturbation()) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded set of perturbed emoji: (K*per_class, P, P, 3) uint8 and (K*per_class,) labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(rgba)), per_class)
    return perturb(rgba[labels], rng, p), labels.astype(np.int32)
