"""This machine's cache of captured TinyJits, so a process does not redo tinygrad's kernel generation.

tinygrad caches compiled kernel binaries on disk, but every new process still schedules and generates the code of
each kernel again: about 6 s per batch shape for this network on a 2-core CPU, paid on every start of
`emojicam live` and at every new grid or batch size. A captured TinyJit pickles (tinygrad's own mechanism: the
kernels, their buffers and the weights baked into them) and loads in a fraction of a second. The cache lives in
~/.cache/emojicam (or $EMOJICAM_CACHE), is built on this machine the first time a shape runs, never shipped, and is
keyed by everything the captured program depends on, so a change to any of them makes a new entry.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

from tinygrad import TinyJit
from tinygrad.dtype import AddrSpace
from tinygrad.uop.ops import Ops, ParamArg, UOp

# An entry holds the frame's buffers too (about 15 kB per patch in the batch: 35 MB at 64x36), so the cache keeps the
# most recently used entries up to this many bytes.
MAX_BYTES = 1 << 30
SOURCES = ("model.py", "kernels.py", "scoring.py", "lanes.py", "compositor.py", "engine.py", "device_frame.py",
           "jit_cache.py")


def cache_dir() -> Path | None:
    """$EMOJICAM_CACHE, else emojicam/ in $XDG_CACHE_HOME or ~/.cache; None for a user without a home folder."""
    folder = Path(os.environ.get("EMOJICAM_CACHE") or Path(os.environ.get("XDG_CACHE_HOME")
                                                           or os.path.expanduser("~/.cache")) / "emojicam")
    return folder if folder.is_absolute() else None


@functools.cache
def _code_digest() -> bytes:
    """tinygrad's version and the source of the modules that build the captured program (read once)."""
    digest = hashlib.sha256(version("tinygrad").encode())
    here = Path(__file__).resolve().parent
    for name in SOURCES:
        digest.update((here / name).read_bytes())
    return digest.digest()


def cache_key(*parts: object) -> str:
    """A digest of the parts (device, batch, settings, weights and set digests, ...) and of the code."""
    return hashlib.sha256(_code_digest() + repr(parts).encode()).hexdigest()[:24]


def _uop_with_own_buffer(op: Ops, *args: object) -> UOp:
    """UOp(op, *args) as pickle rebuilds it, but a device buffer gets a slot number of its own in this process."""
    if op is Ops.BUFFER and isinstance(arg := args[2], ParamArg) and arg.addrspace is AddrSpace.GLOBAL:
        args = (*args[:2], replace(arg, slot=next(UOp.unique_num)), *args[3:])
    return UOp(op, *args)


class _Unpickler(pickle.Unpickler):
    """Reads an entry whose buffers stay its own. tinygrad rebuilds a pickled UOp through its table of live UOps,
    keyed by (slot number, size, dtype, device), and slot numbers are only a counter per process: a buffer of the
    entry that met a live one with the same key became that live buffer, its own contents dropped. Two engines
    with the same settings in one process then shared one captured function's buffers (the stability state
    too: one engine's frames changed the other's picks), and an entry written by another process could take over
    any tensor of this one that happened to match."""

    def find_class(self, module: str, name: str) -> object:
        found = super().find_class(module, name)
        return _uop_with_own_buffer if found is UOp else found


def load(key: str) -> tuple[TinyJit, int] | None:
    """The captured TinyJit stored under key and the BEAM width its kernels were searched with (0 = tinygrad's
    default heuristics), or None (absent, unreadable, or from an incompatible tinygrad)."""
    if (folder := cache_dir()) is None:
        return None
    path = folder / f"{key}.jit.pkl"
    try:
        with path.open("rb") as f:
            entry = _Unpickler(f).load()
        jit, beam = entry["jit"], int(entry["beam"])
    except Exception:  # a missing or stale entry only costs a recompile
        return None
    with contextlib.suppress(OSError):  # a read-only cache is still read
        path.touch()  # recently used entries are the ones kept
    return (jit, beam) if getattr(jit, "captured", None) is not None else None


def save(key: str, jit: TinyJit, beam: int = 0) -> None:
    """Store a captured TinyJit and the BEAM width its kernels were searched with (atomic: temp file + rename),
    then drop the least recently used entries beyond MAX_BYTES. Best effort: a read-only or full disk only means
    the next process compiles again."""
    if (folder := cache_dir()) is None or getattr(jit, "captured", None) is None:
        return  # nothing captured (tinygrad's JIT=0, for one): nothing to store
    tmp = folder / f".{key}.{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with tmp.open("wb") as f:
                pickle.dump({"jit": jit, "beam": beam}, f, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(folder / f"{key}.jit.pkl")
        finally:
            tmp.unlink(missing_ok=True)  # a full disk leaves no partial entry behind
        total = 0
        for entry in sorted(folder.glob("*.jit.pkl"), key=lambda p: p.stat().st_mtime, reverse=True):
            total += entry.stat().st_size
            if total > MAX_BYTES:
                entry.unlink(missing_ok=True)
    except OSError:
        return
