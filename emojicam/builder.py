"""The one background thread, shared by every engine in the process, for each compile, JIT capture and new device
tensor of the engine.

tinygrad keeps process-wide state: the JIT being captured collects whatever any thread schedules, so a tensor made
on another thread meanwhile ends up inside that capture instead of being computed (an engine made while another
one's build captured lost its weights that way). So every build, of every engine, runs on this one thread, and so
does the making of an engine's device tensors (on_compile_thread); the frame path itself only writes into existing
buffers and replays: the live loop keeps showing the current grid while a new shape is prepared here."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from tinygrad import Tensor, TinyJit

from emojicam.errors import EmojicamError

T = TypeVar("T")
_here = threading.local()  # .compiling is set on the compile thread
_COMPILE = ThreadPoolExecutor(1, thread_name_prefix="emojicam-compile",
                              initializer=lambda: setattr(_here, "compiling", True))


def on_compile_thread(make: Callable[[], T]) -> T:
    """make() run on the compile thread, after every build queued before it; its result or its error."""
    if getattr(_here, "compiling", False):
        return make()
    return _COMPILE.submit(make).result()


def capture(fn: Callable[..., Tensor | tuple[Tensor, ...]], *inputs: Tensor) -> TinyJit:
    """fn compiled and captured for these inputs (TinyJit runs it on its first call and captures it on the second);
    call it on the compile thread."""
    jit = TinyJit(fn)
    for _ in range(2):
        jit(*inputs)
    return jit


def wait_idle() -> None:
    """Wait until every build queued so far, by any engine, has finished."""
    on_compile_thread(lambda: None)


class Builder:
    """One engine's builds by key (a batch size, a frame size and grid), each queued at most once until it fails,
    run in order on the process's compile thread."""

    def __init__(self) -> None:
        self._builds: dict[Hashable, Future] = {}
        self._children: set[subprocess.Popen] = set()
        self._lock, self._closed = threading.Lock(), False

    def queue(self, key: Hashable, build: Callable[[], None], again: bool = False) -> Future:
        """The build of key: the one queued, running or done, or a new one (again; or when none succeeded)."""
        job = self._builds.get(key)
        if again or job is None or job.cancelled() or (job.done() and job.exception() is not None):
            if self._closed:
                raise EmojicamError("engine closed: build stopped")
            job = self._builds[key] = _COMPILE.submit(build)
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
        for job in self._builds.values():
            job.cancel()  # the queued ones; a running one ends as said
