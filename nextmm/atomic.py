"""Writing files and folders so that a crash never leaves one that looks complete but is not.

Everything is written under a temporary name beside its target and renamed into place at the end; on
failure the temporary is removed and the old target, if any, is untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def staged_folder(target: str | Path) -> Iterator[Path]:
    """An empty folder beside ``target`` to fill; when the block ends without error it replaces ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_UMASK)  # mkdtemp makes 0700; give the folder the user's usual mode
        replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def staged_file(target: str | Path) -> Iterator[Path]:
    """A temporary path beside ``target`` (same suffix) to write; when the block ends without error it
    replaces ``target``."""
    target = Path(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    staging = Path(name)
    try:
        yield staging
        os.chmod(staging, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the user's usual mode
        os.replace(staging, target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def disk_full(path: str | Path, margin: int = 1 << 20) -> bool:
    """Whether the filesystem holding ``path`` has less than ``margin`` bytes left for this process: asked after a
    library failed to write there, since libraries report a full disk in their own words (libsndfile's "System
    error.", ffmpeg's broken pipe)."""
    stats = os.statvfs(path)
    free = stats.f_bfree if os.geteuid() == 0 else stats.f_bavail  # root may write the reserved blocks too
    return free * stats.f_frsize < margin


def replace_dir(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``, replacing it; the swap is two renames on one filesystem."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
