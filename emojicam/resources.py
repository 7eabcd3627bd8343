"""Where the shipped data is: the emoji set, the weights and the samples, found through importlib.resources.

In a checkout they are the top-level folders emoji_set/, weights/ and samples/; the packaging (pyproject.toml)
maps them into the installed package as emojicam.data.*, so the same lookup works from a wheel, an sdist install
and an editable install, from any folder."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from emojicam.errors import EmojicamError

SHIPPED = ("emoji_set", "weights", "samples")


def shipped(folder: str, name: str = "") -> Path:
    """The file system path of a shipped data folder (one of SHIPPED), or of `name` inside it."""
    if folder not in SHIPPED:
        raise ValueError(f"expected one of {SHIPPED}, got {folder!r}")
    try:
        root = Path(str(files(f"emojicam.data.{folder}")))
    except ModuleNotFoundError:  # an install that left the data out: say so instead of failing later
        raise EmojicamError(f"install: expected emojicam's shipped {folder}/ beside the package, got none "
                            f"(reinstall with `pip install --force-reinstall emojicam`)") from None
    return root / name if name else root
