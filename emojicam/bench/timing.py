"""Timing loops shared by `emojicam bench` and `emojicam tune`: seconds per call, and their median in ms."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def timed_loop(step: Callable[[int], object], frames: int, max_seconds: float) -> list[float]:
    """Seconds per call of step(i) for i = 0, 1, ...: up to `frames` calls, fewer once max_seconds have passed
    (but never fewer than 3 unless `frames` is)."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < frames and (len(times) < 3 or time.perf_counter() - start < max_seconds):
        t0 = time.perf_counter()
        step(len(times))
        times.append(time.perf_counter() - t0)
    return times
