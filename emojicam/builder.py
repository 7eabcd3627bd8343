"""One background thread for every compile, JIT capture and new device tensor of the engine.

tinygrad keeps process-wide state (the JIT being captured collects whatever any thread schedules), so two builds
never overlap, and the frame path itself only writes into existing buffers and replays: the live loop keeps
showing the current grid while a new shape is prepared here."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor


class Builder:
    """Builds by key (a batch size, a frame size and grid), each queued at most once until it fails."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="emojicam-compile")
        self._builds: dict[Hashable, Future] = {}

    def queue(self, key: Hashable, build: Callable[[], None], again: bool = False) -> Future:
        """The build of key: the one queued, running or done, or a new one (again; or when none succeeded)."""
        job = self._builds.get(key)
        if again or job is None or job.cancelled() or (job.done() and job.exception() is not None):
            job = self._builds[key] = self._pool.submit(build)
        return job

    def raise_failed(self, key: Hashable) -> None:
        """Raise the error of key's build if it failed in the background (the next queue() tries again)."""
        if (job := self._builds.get(key)) is not None and job.done() and not job.cancelled():
            job.result()

    def withdraw(self, keep: Callable[[Hashable], bool]) -> None:
        """Take back the queued builds not yet started whose key keep() refuses (a grid no longer wanted)."""
        for key, job in list(self._builds.items()):
            if not keep(key) and job.cancel():
                del self._builds[key]

    def busy(self) -> bool:
        """Whether a build is queued or running."""
        return any(not job.done() for job in self._builds.values())
