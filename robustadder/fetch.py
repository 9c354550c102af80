"""Where robustadder keeps downloaded files, and the one way it downloads them.

Weights and datasets are fetched on first use into ``ROBUSTADDER_HOME`` (default
``$XDG_CACHE_HOME/robustadder`` or ``~/.cache/robustadder``) and verified against a checksum before they
are moved into place: a partial or tampered download never ends up where the next run would trust it.
Offline, a user copies the file into the same place by hand; the same checksum then vouches for it.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from .errors import UserError


def robustadder_home() -> Path:
    """Root of the cache: ``$ROBUSTADDER_HOME``, else the user's cache directory."""
    if os.environ.get("ROBUSTADDER_HOME"):
        return Path(os.environ["ROBUSTADDER_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "robustadder"


def weights_dir() -> Path:
    """Directory of downloaded zoo weights."""
    return robustadder_home() / "weights"


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(
    url: str, dest: Path, *, digest: str, max_bytes: int, algorithm: str = "sha256", timeout: float = 60.0
) -> Path:
    """Fetch ``url`` to ``dest`` if its checksum matches; atomic, leaves nothing behind on failure.

    ``max_bytes`` bounds what is read (the caller knows how large the file can be: a zoo model by its
    architecture's parameter count, a dataset release by its size): a server or a ``file://`` URL that
    sends more, or announces more, is refused before the disk fills. An interruption (Ctrl-C, SIGTERM
    under the CLI) removes the partial file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    h = hashlib.new(algorithm)
    too_big = UserError(f"download of {url} is larger than the {max_bytes:,} bytes such a file can have; nothing was saved")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            if total is not None and total > max_bytes:
                raise too_big
            read = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}", leave=False) as bar:
                for block in iter(lambda: resp.read(1 << 20), b""):
                    read += len(block)
                    if read > max_bytes:
                        raise too_big
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
        got = h.hexdigest()
        if got != digest:
            raise UserError(
                f"download of {url} has {algorithm} {got}, expected {digest}; nothing was saved (retry, or check the source)"
            )
        os.replace(tmp, dest)
        return dest
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise UserError(
            f"could not download {url} ({getattr(exc, 'reason', exc)}); offline, copy the file to {dest} by hand"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
