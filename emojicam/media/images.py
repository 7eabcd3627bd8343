"""Still images: careful reading (grey, alpha, 16-bit, truncated files) and atomic writing."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from emojicam.atomic import write_atomic
from emojicam.errors import EmojicamError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any decoded image (grey, grey+alpha, BGR, BGRA; 8/16-bit or float) -> BGR uint8; alpha goes on white."""
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image.astype(np.float32) * (255 if image.max() <= 1 else 1), 0, 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 2:
        image = cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2BGR), image[..., 1]
        image = np.dstack(image)
    if image.shape[2] == 4:
        alpha = image[..., 3:].astype(np.float32) / 255
        return (image[..., :3] * alpha + 255 * (1 - alpha) + 0.5).astype(np.uint8)
    return image


@contextlib.contextmanager
def decoder_quiet() -> Iterator[None]:
    """Silence what C decoders print on file descriptor 2 meanwhile ("libpng error: bad adaptive filter value"):
    a damaged file's one line is ours, and says which file."""
    try:
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no descriptor 2 to silence, or none left
        yield
        return
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def read_image(path: str | Path) -> np.ndarray:
    """Read a still image as BGR uint8, or raise EmojicamError saying what was wrong with it."""
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "no file"
        raise EmojicamError(f"input: expected an image file, got {what} at {path}")
    data = path.read_bytes()
    if not data:
        raise EmojicamError(f"input: expected an image, got an empty file {path}")
    with decoder_quiet():
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise EmojicamError(f"input: expected an image (PNG, JPEG, WebP, BMP), got undecodable data in {path}")
    if data[:2] == b"\xff\xd8" and not data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9"):
        raise EmojicamError(f"input: expected a complete JPEG, got a truncated file {path} (no end marker)")
    return to_bgr8(image)


def check_image_output(path: str | Path) -> Path:
    """The output path, if its extension is one we can write."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTS:
        raise EmojicamError(f"output: expected one of {', '.join(IMAGE_EXTS)}, got '{path.suffix or path.name}'")
    return path


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Encode, then write atomically (see write_atomic): never a half-written file at path."""
    path = check_image_output(path)
    ok, encoded = cv2.imencode(path.suffix.lower(), image)
    if not ok:
        raise EmojicamError(f"output: could not encode a {image.shape[1]}x{image.shape[0]} image as {path.suffix}")
    return write_atomic(path, lambda tmp: tmp.write_bytes(encoded.tobytes()))
