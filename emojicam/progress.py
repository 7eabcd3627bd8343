"""Progress where someone watches: a tqdm bar when stderr is a terminal, else a plain line every few seconds.
A total is what the caller expects (a video's announced frame count); once the count passes it, the total is
dropped and the count goes on alone, instead of showing "60/31" and 194%."""

from __future__ import annotations

import sys
import time

LINE_EVERY_S = 10.0  # a log gets a progress line at most this often


class LineProgress:
    """tqdm's update/set_postfix/write/close for a log: a line now and then, and a last one on close."""

    def __init__(self, total: int | None, desc: str, unit: str, every_s: float = LINE_EVERY_S):
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.n, self.postfix = 0, ""
        self._start = self._last = time.perf_counter()
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total and self.n > self.total:
            self.total = None
        if (now := time.perf_counter()) - self._last >= self.every_s:
            self._last = now
            self._line()

    def set_postfix(self, refresh: bool = False, **values: object) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def write(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def _line(self) -> None:
        elapsed = time.perf_counter() - self._start
        of = f"/{self.total}" if self.total else ""
        rate = f", {self.n / elapsed:.1f} {self.unit}/s" if elapsed > 0 else ""
        extra = f", {self.postfix}" if self.postfix else ""
        self.write(f"{self.desc}: {self.n}{of} {self.unit}s{rate}{extra}")

    def close(self) -> None:
        if not self._closed and self.n and time.perf_counter() - self._start >= self.every_s:
            self._line()  # long jobs end their log with the final count; short ones only print their result line
        self._closed = True


class Silent(LineProgress):
    """--quiet: counts, prints nothing."""

    def write(self, text: str) -> None:
        pass


def progress_bar(total: int | None, desc: str, unit: str, quiet: bool = False):
    """A tqdm bar on a terminal; LineProgress on a pipe or file; Silent with quiet."""
    if quiet:
        return Silent(total, desc, unit)
    if sys.stderr.isatty():
        from tqdm import tqdm

        class Bar(tqdm):
            def update(self, n: int = 1) -> bool | None:
                if self.total and self.n + n > self.total:
                    self.total = None  # a bar without an end, rather than past it
                return super().update(n)

        return Bar(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)
    return LineProgress(total, desc, unit)
