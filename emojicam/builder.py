"""One background thread for every compile, JIT capture and new device tensor of the engine.

tinygrad keeps process-wide state (the JIT being captured collects whatever any thread schedules), so two builds
never overlap, and the frame path itself only writes into existing buffers and replays: the live loop keeps
showing the current grid while a new shape is prepared here."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor

from emojicam.errors import EmojicamError


class Builder:
    """Builds by key (a batch size, a frame size and grid), each queued at most once until it fails."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="emojicam-compile")
        self._builds: dict[Hashable, Future] = {}
        self._children: set[subprocess.Popen] = set()
        self._lock, self._closed = threading.Lock(), False

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

    def run_child(self, cmd: list[str], timeout_s: float) -> bool:
        """Run a helper process for a build (precompile.py) and wait: True when it succeeded. After close() it is
        stopped, and the build it belongs to fails instead of compiling here."""
        with self._lock:
            if self._closed:
                raise EmojicamError("engine closed: build stopped")
            child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._children.add(child)
        try:
            code = child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.wait()
        finally:
            with self._lock:
                self._children.discard(child)
        if self._closed:
            raise EmojicamError("engine closed: build stopped")
        return code == 0

    def close(self) -> None:
        """Take back every queued build and stop the helper processes of a running one, so that a program that
        quits while a grid is being prepared does not wait for it (a compile inside this process still ends)."""
        with self._lock:
            self._closed = True
            for child in self._children:
                child.kill()
        self._pool.shutdown(wait=False, cancel_futures=True)  # the queued builds are cancelled
