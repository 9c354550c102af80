"""Writing files without ever destroying what the program reads (the lowest layer: it imports nothing above errors).

Three rules, for every file a command writes for the user (``-o``, ``--plot``, checkpoints, downloads):

* **No input is ever overwritten.** Every file the process reads as an input (a checkpoint, a dataset
  file or image folder, a store, a sweep file, a model's code) is noted here by :func:`note_input`, by
  device and inode, so that an output reached by another name (a zoo name, a symlink, a hard link, a
  relative path) is still recognized. :func:`check_output` refuses such a target, an input the caller
  names before any work starts (see :func:`check_output`'s ``inputs``), a directory and any SQLite file
  (a results store) with one line.
* **A special file is written in place.** A device (``/dev/null``), a FIFO, a terminal, a socket or the
  process's own stdout/stderr (``-o /dev/stdout`` into a pipe) is opened and written; the temp-file and
  rename of a regular file would replace the node itself with a regular file.
* **A regular file is created atomically**: a temp file in the same directory, fsync, rename. A crash or a
  signal leaves the old file or none, never half a file; a full disk or a name too long is one line and
  leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from .errors import UserError

PathLike = str | os.PathLike

# (st_dev, st_ino) → (the path it was read as, what it is): the regular files this process read as inputs
_INPUT_FILES: dict[tuple[int, int], tuple[str, str]] = {}
# folders whose every file is an input (an image-folder dataset), resolved → what it is
_INPUT_TREES: dict[Path, str] = {}

SQLITE_MAGIC = b"SQLite format 3\x00"


def note_input(path: PathLike, what: str = "an input", *, tree: bool = False) -> None:
    """Remember that this process reads ``path`` (a file; with ``tree``, a folder and all below it)."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if tree and stat.S_ISDIR(st.st_mode):
        _INPUT_TREES[Path(os.path.realpath(path))] = what
    elif stat.S_ISREG(st.st_mode):
        _INPUT_FILES[(st.st_dev, st.st_ino)] = (os.fspath(path), what)


def _same_live_file(key: tuple[int, int], path: str) -> bool:
    """The noted input still is that file (an inode number is reused once its file is deleted)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == key


def _inside(target: Path, folder: Path) -> bool:
    return target == folder or folder in target.parents


def input_conflict(target: PathLike, inputs: Iterable[PathLike | None] = ()) -> str | None:
    """What ``target`` is, if writing it would overwrite an input (a noted one or one of ``inputs``), else None.

    ``inputs`` are files or folders the caller is about to read (a folder counts with everything below it).
    """
    real = Path(os.path.realpath(target))
    try:
        st: os.stat_result | None = os.stat(target)
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if key in _INPUT_FILES and _same_live_file(key, _INPUT_FILES[key][0]):
            return _INPUT_FILES[key][1]
    for folder, what in _INPUT_TREES.items():
        if _inside(real, folder):
            return what
    for item in inputs:
        if item is None or not os.fspath(item):
            continue
        try:
            other = os.stat(item)
        except OSError:
            continue
        if stat.S_ISDIR(other.st_mode):
            if _inside(real, Path(os.path.realpath(item))):
                return f"inside input folder {item}"
        elif st is not None and (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            return f"input {item}"
    return None


def check_output(target: PathLike | None, inputs: Iterable[PathLike | None] = (), option: str = "-o") -> None:
    """Refuse, with one line, an output that would destroy something: an input, a results store, a folder.

    Called before any work starts (with the inputs the command will read) and again by :func:`write_output`
    (with every input the process has read by then).
    """
    if target is None or not os.fspath(target):
        return
    shown = os.fspath(target)
    conflict = input_conflict(target, inputs)
    if conflict is not None:
        raise UserError(f"{option} {shown} is {conflict} of this command; choose another output file")
    try:
        st = os.stat(target)
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{option} {shown} is a directory; name a file")
    if stat.S_ISREG(st.st_mode):
        try:
            with open(target, "rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except OSError:
            return
        if head == SQLITE_MAGIC:
            raise UserError(f"{option} {shown} is a results store; refusing to write over it")


def _stream_of(target: PathLike) -> IO[bytes] | None:
    """The process's stdout or stderr when ``target`` is that very file (``/dev/stdout``, ``/dev/fd/1``)."""
    try:
        st = os.stat(target)
    except OSError:
        return None
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # replaced streams (pytest's capture) have no descriptor
            continue
        if os.path.samestat(st, os.fstat(fd)):
            stream.flush()
            return stream.buffer if hasattr(stream, "buffer") else None
    return None


def _os_error(path: PathLike, exc: OSError) -> UserError:
    """A write failure a user can cause (or fix) as one line."""
    why = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.ENAMETOOLONG: "the file name is too long for the file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "the file system is read-only",
        errno.ENOTDIR: "a part of the path is not a directory",
        errno.EISDIR: "it is a directory",
    }.get(exc.errno, exc.strerror or type(exc).__name__)
    return UserError(f"cannot write {os.fspath(path)}: {why}; nothing was written")


def is_special(path: PathLike) -> bool:
    """Whether ``path`` exists and is not a regular file or folder (a device, FIFO, socket, terminal)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def atomic_write(path: PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Write a file through a temp file in the same directory and an atomic rename.

    A crash or Ctrl-C mid-write leaves either the old file or none, never a truncated one. A symlink is
    written through (its target is replaced, the link stays), and the file gets the mode a plain
    ``open`` would give it (the old file's, else 0666 less the umask), not the temp file's 0600. A special
    file (device, FIFO, the process's own stdout) is written in place: renaming onto it would replace it.
    OS errors a user can cause (full disk, name too long, no permission) are one-line UserErrors.
    """
    stream = _stream_of(path)
    if stream is not None:
        write(stream)
        stream.flush()
        return
    if is_special(path):
        try:
            with open(path, "wb") as fh:
                write(fh)
        except OSError as exc:
            raise _os_error(path, exc) from None
        return
    tmp: str | None = None
    try:
        path = Path(path)
        if path.is_symlink():
            path = Path(os.path.realpath(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            mode = stat.S_IMODE(path.stat().st_mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        # the temp name is short: a target whose name is near the file system's limit still gets one
        fd, tmp = tempfile.mkstemp(prefix=".ra-", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise _os_error(path, exc) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def write_output(path: PathLike, data: str | bytes, inputs: Iterable[PathLike | None] = (), option: str = "-o") -> None:
    """Write a user-requested output: checked against every input read so far, then written atomically."""
    check_output(path, inputs, option)
    payload = data.encode() if isinstance(data, str) else data
    atomic_write(path, lambda fh: fh.write(payload))


__all__ = ["atomic_write", "check_output", "input_conflict", "is_special", "note_input", "write_output"]
