"""Atomic file writes: the one protocol every file the project writes goes through.

A temporary file is created next to the destination (ordinary new-file permissions), written,
flushed and ``fsync``-ed, then renamed over the destination with ``os.replace`` and the
directory is ``fsync``-ed so the rename is durable.  On any error the temporary file is
removed and an existing destination is left untouched.

Temporary files are named ``.<name>.<pid>.<random>.tmp``; a process killed mid-write leaves
one behind, and the next write of the same destination removes those whose process is
gone (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Iterator

__all__ = ["atomic_open", "new_file_mode", "mkstemp_for", "fsync_dir", "remove_stale_temps"]


def new_file_mode() -> int:
    """Permissions for a new file: 0o666 minus the process umask (mkstemp uses 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or an odd number): leave its file alone
    return True


def remove_stale_temps(path: str) -> int:
    """Remove ``.<name>.<pid>.*.tmp`` files next to ``path`` whose process no longer runs."""
    d = os.path.dirname(os.path.abspath(path))
    prefix = "." + os.path.basename(path) + "."
    n = 0
    try:
        names = os.listdir(d)
    except OSError:
        return 0
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(d, name))
                n += 1
    return n


def mkstemp_for(path: str) -> tuple[int, str]:
    """A temporary file next to ``path`` with ordinary new-file permissions (stale ones of
    dead processes are removed first)."""
    d = os.path.dirname(os.path.abspath(path))
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}.",
                               suffix=".tmp", dir=d)
    try:
        os.fchmod(fd, new_file_mode())
    except OSError:  # pragma: no cover - filesystems without permissions
        pass
    return fd, tmp


def fsync_dir(path: str) -> None:
    """``fsync`` the directory holding ``path`` (some filesystems refuse: then nothing)."""
    try:
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - the data itself is synced
        pass


@contextlib.contextmanager
def atomic_open(path: os.PathLike | str, mode: str = "wb",
                encoding: str | None = None) -> Iterator[IO]:
    """``with atomic_open(p) as f: f.write(...)``: ``p`` appears complete or not at all."""
    p = os.fspath(path)
    fd, tmp = mkstemp_for(p)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(p)
