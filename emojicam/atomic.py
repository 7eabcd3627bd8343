"""Writing outputs: nothing half-written ever appears under the name asked for, and a failed write says why in
one line (the path and the operating system's reason)."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

from emojicam.errors import EmojicamError


def hidden_temp(path: Path, tag: str = "part") -> Path:
    """A hidden name beside path for the file being written: .NAME.RANDOM.TAG.EXT (the extension last, since
    FFmpeg and OpenCV choose the format by it); absolute, as "a:b.mp4" would be read as a URL."""
    return path.absolute().with_name(f".{path.stem}.{secrets.token_hex(4)}.{tag}{path.suffix}")


def write_error(path: Path, reason: OSError | str) -> EmojicamError:
    """The one line for an output that could not be written: disk full, permission denied, folder gone, ..."""
    if isinstance(reason, OSError):
        reason = reason.strerror or str(reason)
    return EmojicamError(f"output: expected to write {path}, got an error: {reason}")


def write_atomic(path: Path, write: Callable[[Path], None], make_folder: bool = False) -> Path:
    """write(a hidden temporary path beside path), then rename it onto path. On any error, Ctrl-C or signal the
    temporary file goes and path is left as it was; an OSError becomes one EmojicamError line (write_error)."""
    path = Path(path)
    tmp = hidden_temp(path)
    try:
        if make_folder:
            path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


def check_writable(path: Path) -> None:
    """Raise write_error now if no file can be made beside path (no such folder, read-only, no permission): before a
    long job rather than after it. A missing folder is created, as the writers above do."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise write_error(path, e) from None
