"""Platform tags reduced to what decides binary compatibility between two wheels: OS and arch."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_LINUX = re.compile(r"^(?P<family>manylinux|musllinux|linux)(?:_\d+_\d+|1|2010|2014)?_(?P<arch>.+)$")
_MACOS = re.compile(r"^macosx_\d+_\d+_(?P<arch>.+)$")
_WINDOWS = {"win32": "x86", "win_amd64": "amd64", "win_arm64": "arm64"}


@dataclass(frozen=True)
class PlatformKey:
    os: str  # linux (glibc), musllinux, macos, windows
    arch: str

    def __str__(self) -> str:
        return f"{self.os}-{self.arch}"


def platform_key(tag: str) -> PlatformKey | None:
    """`linux-x86_64` for manylinux_2_17_x86_64 and linux_x86_64 alike; None for `any`."""
    if match := _LINUX.match(tag):
        family = "musllinux" if match["family"] == "musllinux" else "linux"
        return PlatformKey(family, match["arch"])
    if match := _MACOS.match(tag):
        return PlatformKey("macos", match["arch"])
    if tag in _WINDOWS:
        return PlatformKey("windows", _WINDOWS[tag])
    return None


_FAT_ARCHS = {"universal2": ("arm64", "x86_64"), "universal": ("i386", "x86_64"), "intel": ("i386", "x86_64")}


def is_musl_libc(needed: str) -> bool:
    """Whether a DT_NEEDED names musl's libc as musllinux binaries link it: `libc.musl-<arch>.so.1`
    (Alpine's soname, what auditwheel's musllinux policies allow)."""
    return needed.startswith("libc.musl-")


def keys_of(tags: list[str], needed: Iterable[str] = ()) -> set[PlatformKey]:
    """The OS-architecture pairs binaries with these tags run on; macOS fat tags name each slice.

    A plain `linux_<arch>` tag (a wheel before repair) names no libc: it is musllinux when
    `needed` (its binaries' DT_NEEDED) names musl's libc, so a musl consumer finds musl providers.
    """
    musl = any(map(is_musl_libc, needed))
    keys = set()
    for tag in tags:
        key = platform_key(tag)
        if key is None:
            continue
        if musl and tag.startswith("linux_"):
            key = PlatformKey("musllinux", key.arch)
        for arch in _FAT_ARCHS.get(key.arch, (key.arch,)) if key.os == "macos" else (key.arch,):
            keys.add(PlatformKey(key.os, arch))
    return keys


def systems(tags: list[str] | tuple[str, ...]) -> set[str]:
    """The operating systems platform tags name — linux (glibc or musl), macos, windows — the one
    mapping from tags to an OS: which adapter repairs a wheel, which [tool.sharewheel.<os>] table
    applies, which libraries of a plugin's wheel are the provided ones."""
    return {"linux" if key.os == "musllinux" else key.os for key in keys_of(list(tags))}


def system_of(tags: list[str] | tuple[str, ...]) -> str | None:
    """The one OS the tags name, None if they name none or several."""
    found = systems(tags)
    return found.pop() if len(found) == 1 else None
