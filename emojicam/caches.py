"""The on-disk caches that make a second start fast: tinygrad's kernel cache (sqlite, ~/.cache/tinygrad), PoCL's
(OpenCL on a CPU, ~/.cache/pocl) and emojicam's captured JITs (jit_cache.py, ~/.cache/emojicam).

A home that is read-only or missing (a container, a service account, a read-only install's sandbox) must cost only
that speed-up: a cache that cannot be written is skipped (PoCL, which cannot build kernels without a folder, gets a
temporary one), with one warning line for all of them.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sqlite3
import tempfile
from contextlib import suppress
from pathlib import Path

from tinygrad import helpers as tinygrad_helpers

from emojicam import jit_cache
from emojicam.atomic import unwritable
from emojicam.errors import warn


def cache_unwritable(folder: Path | None) -> str:
    """Why a cache folder cannot be written, or ''; None is the cache folder of a user without a home folder."""
    return "no home folder" if folder is None else unwritable(folder)


def open_kernel_cache() -> str:
    """Open tinygrad's kernel cache once for every thread, or turn it off (CACHELEVEL=0) and say why. tinygrad
    opens one sqlite connection per process, bound to the thread that first compiled something, but the engine
    compiles on its own thread (see Emojifier) while other code (the device check, the tests, the benchmark's peers)
    compiles on the main one. sqlite3 here is built serialized (threadsafety 3), so one connection opened without
    the same-thread check serves both."""
    if tinygrad_helpers.CACHELEVEL.value < 1 or getattr(tinygrad_helpers.db_connection, "_shared", False):
        return ""
    path = Path(tinygrad_helpers.CACHEDB)
    why = cache_unwritable(None if "~" in path.parts else path.parent)  # abspath("~/...") of a user without a home
    if not why and path.exists() and not os.access(path, os.W_OK):
        why = f"{path.name} is read-only"
    if not why and sqlite3.threadsafety >= 3:
        try:
            conn = sqlite3.connect(path, timeout=60, isolation_level="IMMEDIATE", check_same_thread=False)
            with suppress(sqlite3.OperationalError):  # another process holds the lock while it sets the same mode
                conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as e:
            why = str(e)
        else:
            tinygrad_helpers._db_connection = conn
            tinygrad_helpers.db_connection._shared = True
    if why:
        tinygrad_helpers.CACHELEVEL.value = 0
        os.environ["CACHELEVEL"] = "0"  # and in the children that compile ahead (precompile.py)
        return f"tinygrad's kernels ({path.parent}: {why})"
    return ""


def pocl_cache() -> str:
    """Give PoCL a temporary folder (removed at exit) where its own cannot be written, and say so. Read by PoCL when
    OpenCL starts: call before tinygrad's CL device is made."""
    if os.environ.get("POCL_CACHE_DIR"):
        return ""
    base = Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"))
    if not (why := cache_unwritable(base / "pocl" if base.is_absolute() else None)):
        return ""
    folder = tempfile.mkdtemp(prefix="emojicam-pocl-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["POCL_CACHE_DIR"] = folder
    return f"PoCL's kernels ({base / 'pocl'}: {why}; a temporary folder instead)"


@functools.cache
def open_caches() -> None:
    """Set up the three caches once per process, before tinygrad picks or uses a device; one warning line names
    those that cannot be written."""
    skipped = [why for why in (open_kernel_cache(), pocl_cache()) if why]
    if why := cache_unwritable(folder := jit_cache.cache_dir()):
        skipped.append(f"emojicam's JITs ({folder or '~/.cache/emojicam'}: {why})")
    if skipped:
        warn(f"caches skipped, so each start compiles again: {'; '.join(skipped)}")
