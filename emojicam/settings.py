"""The engine's settings and the choice of network and emoji set, built once by the command line and checked here,
where they are made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emojicam.errors import EmojicamError
from emojicam.grid import check_tile_px

BACKGROUNDS = ("black", "white", "auto")
TEXT_BACKGROUNDS = ("white", "black")  # text has no background of its own: it is picked for plain white or black
PATHS = ("host", "device")  # where a frame is cut and composited: OpenCV/numpy, or in one compiled function
COMPOSITES = ("auto", *PATHS)  # `--composite`: auto = device on GPUs, host on CPU devices
SHIPPED_MODELS = ("default", "fast")  # the shipped networks: default = 36 px input, fast = 18 px
MODELS = ("auto", *SHIPPED_MODELS)  # `--model`: auto picks one of them (see ModelChoice)
COLS, TILE_PX = 64, 16  # the default grid columns and output pixels per emoji


@dataclass(frozen=True)
class Settings:
    """What the engine needs to know, built once by the command line; a value a user can get wrong is refused here
    with a one-line EmojicamError."""

    cols: int = COLS
    tile_px: int = TILE_PX
    background: str = "auto"
    device: str | None = None   # tinygrad device string; None = devices.default_device()
    stability: float = 0.0      # score margin a new emoji must win by to replace the old one
    # Scoring (see docs/quality.md): the network's log-probability picks the shape, the colour term pulls the
    # tile's mean colour as drawn towards the cell's, the coverage bonus keeps emoji large enough to see.
    colour_weight: float = 2000.0
    coverage_weight: float = 20.0
    # Variety: a fixed dither in 0..variety per cell and emoji (see scoring.dither), so flat areas become a mix of
    # the emoji that fit them about equally well instead of one emoji's wallpaper; fixed, so a still scene keeps them.
    variety: float = 10.0
    # Video and live: a cell whose 6x6 thumbnail moved by at most this many levels (0..255, any pixel and channel)
    # since its emoji was picked keeps that emoji without a forward pass; 0 = every cell through the network.
    still_threshold: float = 0.0
    # CPU device only: how many cores each batch is split across (0 = every core this process may use, up to 8).
    cpu_threads: int = 0
    # Where a frame is cut and composited: "host" (OpenCV/numpy, the network on the device), "device" (the whole
    # frame in one compiled function, device_frame.py), "auto" = device on GPUs, host on CPU devices.
    composite: str = "auto"

    def __post_init__(self) -> None:
        check_tile_px(self.tile_px)
        if self.background not in BACKGROUNDS:
            raise EmojicamError(f"--background: expected one of {', '.join(BACKGROUNDS)}, got {self.background}")
        if self.composite not in COMPOSITES:
            raise EmojicamError(f"--composite: expected one of {', '.join(COMPOSITES)}, got {self.composite}")
        for flag, value in (("--stability", self.stability), ("--still-threshold", self.still_threshold),
                            ("--variety", self.variety)):
            if not value >= 0:
                raise EmojicamError(f"{flag}: expected a number >= 0, got {value}")


def check_text_background(background: str) -> None:
    if background not in TEXT_BACKGROUNDS:
        raise EmojicamError(f"--background: expected white or black for text (text has no background of its own: "
                            f"the reader's is behind it), got {background}")


@dataclass(frozen=True)
class ModelChoice:
    """Which network and emoji set: a shipped pair by name (set_name, model), or a set folder and its weights.
    model "auto": the 36 px network, except on CPU devices where real time matters (live), the fast one."""

    set_name: str = "default"
    model: str = "auto"
    weights: Path | None = None
    emoji_set: Path | None = None

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise EmojicamError(f"--model: expected one of {', '.join(MODELS)}, got {self.model}")
