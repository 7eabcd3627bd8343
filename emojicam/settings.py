"""The engine's settings, built once by the command line and read by every stage."""

from __future__ import annotations

from dataclasses import dataclass

COMPOSITES = ("auto", "host", "device")


@dataclass(frozen=True)
class Settings:
    """What the engine needs to know, built once by the command line."""

    cols: int = 64
    tile_px: int = 16
    background: str = "auto"
    device: str | None = None   # tinygrad device string; None = tinygrad's default
    stability: float = 0.0      # score margin a new emoji must win by to replace the old one
    # Scoring (see README, Quality): the network's log-probability picks the shape, the colour term pulls the
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
