"""Fast readers of the three binary formats: only what repair, show, check and the stand-in
proof need, read straight from the file (mmap and struct), each file once per run.

Why not the libraries the pypa tools use (pyelftools, macholib, pefile): they build a Python
object per symbol, section or import and re-read a file for each question asked of it, which
made analysis most of a repair's time on wheels that are mostly shared libraries (each module
says what was measured). They stay the test oracles, and the pypa tools stay the authority on
policy: the readers only feed their data. Damaged input is one SharewheelError naming the file;
a limit that is reached is an error that says so, never a silently shortened answer.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

_CACHES: list[FileCache[object]] = []


class FileCache(Generic[T]):
    """What `read` returned for each file, kept while the file is unchanged (same size, inode,
    mtime and ctime) and until :func:`forget` is told the file was edited: a file patched within
    one tick of the file system's clock keeps its timestamps."""

    def __init__(self, read: Callable[[str], T], entries: int) -> None:
        self._read = read
        self._entries = entries
        self._cache: OrderedDict[str, tuple[tuple[int, int, int, int], T]] = OrderedDict()
        self._lock = threading.Lock()
        _CACHES.append(self)  # type: ignore[arg-type]

    def __call__(self, path: str | os.PathLike[str]) -> T:
        name = os.path.abspath(os.fspath(path))
        stamp = file_stamp(name)
        with self._lock:
            found = self._cache.get(name)
            if found is not None and found[0] == stamp:
                self._cache.move_to_end(name)
                return found[1]
        value = self._read(name)
        self.put(name, stamp, value)
        return value

    def put(self, name: str, stamp: tuple[int, int, int, int], value: T) -> None:
        """Remember what was read of `name` (an absolute path) elsewhere, at that stamp."""
        with self._lock:
            self._cache[name] = (stamp, value)
            while len(self._cache) > self._entries:
                self._cache.popitem(last=False)

    def forget(self, under: str) -> None:
        prefix = os.path.join(os.path.abspath(under), "")
        with self._lock:
            for name in [n for n in self._cache if n.startswith(prefix) or n == prefix[:-1]]:
                del self._cache[name]


def file_stamp(name: str) -> tuple[int, int, int, int]:
    """What changes when a file is written or replaced: size, inode, mtime and ctime."""
    stat = os.stat(name)
    return stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns


def forget(under: str | os.PathLike[str]) -> None:
    """Drop what every reader cached for files under `under` (a tree about to be edited, or edited)."""
    for cache in _CACHES:
        cache.forget(os.fspath(under))
