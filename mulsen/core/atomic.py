"""Atomic file writes: a crash never leaves a half-written file under its final name."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # temporary files are created 0600; finished ones follow the umask
_DIR_MODE = 0o777 & ~_umask()


@contextlib.contextmanager
def atomic_path(final: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it into place when the block succeeds.

    The temporary name keeps the final suffix so that libraries choosing a format by
    extension still work. On any exception the temporary file is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and final.exists():
        raise FileExistsError(f"{final}: already exists, refusing to overwrite")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        tmp.chmod(_FILE_MODE)
        if not overwrite:
            # os.link fails if the name exists, closing the check-then-rename race.
            os.link(tmp, final)
            tmp.unlink()
        else:
            os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(final: str | Path, data: bytes, overwrite: bool = True) -> None:
    with atomic_path(final, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(final: str | Path, text: str, overwrite: bool = True) -> None:
    atomic_write_bytes(final, text.encode("utf-8"), overwrite=overwrite)


def atomic_write_with(final: str | Path, writer: Callable[[Path], None], overwrite: bool = True) -> None:
    """Call ``writer(tmp_path)`` and move its output into place atomically."""
    with atomic_path(final, overwrite=overwrite) as tmp:
        writer(tmp)


@contextlib.contextmanager
def atomic_folder(final: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; rename it to ``final`` only if the block succeeds.

    An existing ``final`` is never overwritten. On any exception (Ctrl-C included) the temporary
    folder and everything in it are removed, so a half-recorded result never appears.
    """
    import shutil

    from .errors import MulsenError

    final = Path(final)
    if final.exists():
        raise MulsenError(f"{final}: already exists, refusing to overwrite")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        tmp.chmod(_DIR_MODE)
        if final.exists():
            raise MulsenError(f"{final}: appeared while recording, refusing to overwrite")
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
