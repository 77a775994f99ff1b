"""Files sharewheel writes: whole or not at all, its temporaries named so that a later run can
clean up after a killed one, and chunked digests of files too large to read at once."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

_CHUNK = 1 << 20


@contextmanager
def replacing(path: Path, *, mode: int = 0o644, before_commit: Callable[[], None] | None = None) -> Iterator[BinaryIO]:
    """A file to write that replaces `path` by rename when the block ends without an error (and
    `before_commit` passes), flushed to disk first: readers see the old file or the new one,
    never a part. Its temporary name carries this process's id (see remove_stale_temporaries)."""
    remove_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{TMP_MARK}{os.getpid()}", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if before_commit is not None:
            before_commit()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def digest_of(path: Path, algorithm: str = "sha256") -> tuple[Any, int]:
    """The hash object of a file's content and its size, read in chunks."""
    digest = hashlib.new(algorithm)
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest, size


def sha256_hex(path: Path) -> str:
    """A file's SHA-256 as hex, as manifests record provided libraries."""
    return digest_of(path)[0].hexdigest()


TMP_MARK = ".sharewheel-tmp-"


def remove_stale_temporaries(directory: Path, pattern: str = f".*{TMP_MARK}*") -> None:
    """Temporary files and directories of runs that were killed (their pid is gone) are removed."""
    for path in directory.glob(pattern):
        pid = path.name.rsplit(TMP_MARK, 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@contextmanager
def work_dir() -> Iterator[Path]:
    """A temporary directory named with this process's pid; those of killed runs go first."""
    base = _system_tempdir()
    remove_stale_temporaries(Path(base), f"sharewheel-*{TMP_MARK}*")
    with tempfile.TemporaryDirectory(prefix="sharewheel-", suffix=f"{TMP_MARK}{os.getpid()}", dir=base) as tmp:
        outer, tempfile.tempdir = tempfile.tempdir, tmp  # the OS tools' own temporaries go in here too
        try:
            yield Path(tmp)
        finally:
            tempfile.tempdir = outer


_SYSTEM_TEMPDIR: str | None = None
_RUN_DIR: tuple[int, Path] | None = None  # (pid of its maker, directory)


def _system_tempdir() -> str:
    """The temporary directory of the system (TMPDIR), not a work directory set as tempfile's."""
    global _SYSTEM_TEMPDIR
    if _SYSTEM_TEMPDIR is None:
        _SYSTEM_TEMPDIR = tempfile.gettempdir()
    return _SYSTEM_TEMPDIR


def run_dir() -> Path:
    """A directory for this process's whole run, removed when it exits (or, if it is killed, by
    the next run): files that serve many wheels — a provider's library unpacked to read its
    symbols — are unpacked there once."""
    global _RUN_DIR
    if _RUN_DIR is None:  # (a forked worker uses its parent's, which the parent removes)
        import atexit

        directory = Path(tempfile.mkdtemp(prefix="sharewheel-run-", suffix=f"{TMP_MARK}{os.getpid()}",
                                          dir=_system_tempdir()))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        _RUN_DIR = (os.getpid(), directory)
    return _RUN_DIR[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


