"""This machine's cache of captured TinyJits, so a process does not redo tinygrad's kernel generation.

tinygrad caches compiled kernel binaries on disk, but every new process still schedules and generates the code of
each kernel again: about 6 s per batch shape for this network on a 2-core CPU, paid on every start of
`emojicam live` and at every new grid or batch size. A captured TinyJit pickles (tinygrad's own mechanism: the
kernels, their buffers and the weights baked into them; written here without the contents of the buffers it only
uses as scratch) and loads in a fraction of a second. The cache lives in
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
from tinygrad.device import Buffer
from tinygrad.dtype import AddrSpace
from tinygrad.engine.realize import get_call_arg_uops, get_call_outs_ins
from tinygrad.uop.ops import Ops, ParamArg, UOp, buffers

# The cache keeps the most recently used entries up to this many bytes (an entry holds the weights and constants, its
# kernels and its buffers' sizes: about 1 MB for the 36 px network at 64x36)
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


def _bytes_of(arg: UOp) -> tuple[UOp, int, int] | None:
    """(the BUFFER a kernel argument lies in, its first byte there, one past its last), or None (an input)."""
    if arg.op is Ops.BUFFER:
        return arg, 0, arg.numel() * arg.dtype.itemsize
    if (view := arg.contiguous_view()) is None:
        return None
    base, offset = view
    start = offset * base.dtype.itemsize
    return base, start, start + arg.numel() * arg.dtype.itemsize


def scratch_buffers(jit: TinyJit) -> set[int]:
    """The ids of the Buffers whose every byte a captured function reads it writes first (its intermediates, which
    tinygrad packs into one arena buffer, and its outputs): their contents at capture time mean nothing. A buffer
    read anywhere before it is written there (weights, constants, state kept between calls) keeps its contents, as
    does one reached in a way not followed here (a graph of kernels, an argument that is not a contiguous view)."""
    written: dict[UOp, list[tuple[int, int]]] = {}  # buffer -> byte ranges written so far
    read_first: set[UOp] = set()
    for call in jit.captured.linear.src:
        if call.op is not Ops.CALL:
            continue
        args, (outs, _) = get_call_arg_uops(call), get_call_outs_ins(call)
        places = [_bytes_of(arg) for arg in args]
        if not outs and any(place is not None for place in places):  # a call whose writes are not known
            read_first.update(place[0] for place in places if place is not None)
            continue
        for k, place in enumerate(places):
            if place is not None and k not in outs and not _covered(written.get(place[0], []), *place[1:]):
                read_first.add(place[0])
        for k in outs:
            if (place := places[k]) is not None:
                written.setdefault(place[0], []).append(place[1:])
    return {id(buf) for uop in written.keys() - read_first if isinstance(buf := buffers.get(uop), Buffer)}


def _covered(ranges: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether the byte ranges cover start..end."""
    for a, b in sorted(ranges):
        if a > start:
            break
        start = max(start, b)
    return start >= end


class _Pickler(pickle.Pickler):
    """Writes an entry without the contents of its scratch buffers (see scratch_buffers): a captured function for a
    64x36 grid held 29 MB of them a lane, read back and copied on every load. They are allocated again at the first
    replay."""

    def __init__(self, file: object, scratch: set[int]):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.scratch = scratch

    def reducer_override(self, obj: object) -> object:
        if type(obj) is Buffer and id(obj) in self.scratch and obj._base is None:
            return Buffer, (obj.device, obj.size, obj.dtype, None, obj.options, None, obj.uop_refcount)
        return NotImplemented


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
                _Pickler(f, scratch_buffers(jit)).dump({"jit": jit, "beam": beam})
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
