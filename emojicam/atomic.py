"""Writing outputs: nothing half-written ever appears under the name asked for, and a failed write says why in
one line (the path and the operating system's reason)."""

from __future__ import annotations

import errno
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

from emojicam.errors import EmojicamError, warn


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
        remove_temp(tmp)
    return path


def remove_temp(tmp: Path) -> None:
    """Delete a temporary file if it is there. Cleanup never raises over the error that led to it (a read-only or
    vanished folder refuses even the unlink of a file that was never made); a file it cannot remove is named in a
    warning, so that nothing is left behind unsaid."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError as e:
        if os.path.lexists(tmp):
            warn(f"could not remove the temporary file {tmp}: {e.strerror or e}")


def check_writable(path: Path) -> None:
    """Raise write_error now if no file can be made beside path (no such folder, read-only, no permission): before a
    long job rather than after it. A missing folder is created, as the writers above do."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise write_error(path, e) from None


def unwritable(folder: Path) -> str:
    """Why no file could be made in folder (or, where it is missing, in the nearest folder above it that exists,
    where it would be made), or '' when one could; nothing is made to find out."""
    existing = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if os.access(existing, os.W_OK | os.X_OK):
        return ""
    return os.strerror(errno.EROFS if os.statvfs(existing).f_flag & os.ST_RDONLY else errno.EACCES)
