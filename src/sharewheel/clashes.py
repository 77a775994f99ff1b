"""Runtimes that misbehave when several copies are loaded into one process.

Most libraries vendored twice only waste bytes (check lists them as duplicates). A few are
process-wide runtimes whose copies interfere once two wheels that carry them are imported
together:

- OpenMP (libgomp, libiomp5, libomp): each copy starts its own thread pool, so threads
  oversubscribe the cores; libiomp5 aborts ("OMP: Error #15") when it finds another copy
  initialised, and mixing GNU and LLVM/Intel runtimes has deadlocked fork()ing programs.
- BLAS (OpenBLAS and its scipy-openblas builds, MKL): each copy has its own thread pool and
  buffers, and threadpoolctl-style control reaches one of them only.
- libstdc++: a copy that keeps the plain soname ``libstdc++.so.6`` serves every later
  ``libstdc++.so.6`` need of the process when loaded first; a wheel needing a newer GLIBCXX
  version then fails to import, depending on import order.

Copies the loader knows by one name (ELF sonames, which auditwheel makes alike for identical
copies; Windows module names) are loaded once, so only copies of two names clash; Mach-O loads
by path, so there every copy counts.

They are warnings, not problems (check's exit status stays 0): whether one bites depends on
which wheels one process imports, and in which order; check's status says whether a recorded
link is broken, which these are not. The fix is one shared copy (``sharewheel dedupe``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sharewheel.errors import BinaryError
from sharewheel.naming import library_family
from sharewheel.readers import elf
from sharewheel.vendored import original_names

Family = Literal["openmp", "blas", "libstdc++"]

_OPENMP = {"libgomp", "libiomp5", "libiomp5md", "libomp", "libomp5", "vcomp140"}
_LIBRARY = re.compile(r"\.(so|dylib|dll)(\.[0-9]+)*$", re.IGNORECASE)
_GLIBCXX = re.compile(r"^GLIBCXX_(\d+(?:\.\d+)*)$")
_STDCXX_SONAME = "libstdc++.so.6"

_WHY: dict[Family, str] = {
    "openmp": "OpenMP runtimes: each copy runs its own thread pool, and libiomp5/libomp abort or hang next to "
              "another copy",
    "blas": "BLAS runtimes: each copy runs its own thread pool and buffers, and thread limits reach only one",
    "libstdc++": "libstdc++",
}


def family_of(filename: str) -> Family | None:
    """The clashing family a library file belongs to, by its original name (tools' hashes undone)."""
    if not _LIBRARY.search(filename):
        return None
    stem = library_family(original_names(filename)[-1])
    if stem in _OPENMP:
        return "openmp"
    if "openblas" in stem or stem.startswith(("libmkl_", "mkl_")):
        return "blas"
    if stem == "libstdc++":
        return "libstdc++"
    return None


@dataclass(frozen=True)
class Carried:
    """A library file one installed distribution carries (vendored or as a provider)."""

    distribution: str
    version: str
    location: Path  # the sys.path entry
    relative: str

    @property
    def path(self) -> Path:
        return self.location / self.relative

    def as_json(self) -> dict[str, Any]:
        return {"distribution": self.distribution, "version": self.version, "path": str(self.path)}

    def as_text(self) -> str:
        return f"{self.distribution} {self.version} ({self.relative})"


@dataclass(frozen=True)
class Clash:
    family: Family
    copies: tuple[Carried, ...]
    message: str
    needed_by: tuple[Carried, ...] = ()  # libstdc++: the binaries that need more than the copy defines

    def as_json(self) -> dict[str, Any]:
        return {"family": self.family, "message": self.message, "copies": [c.as_json() for c in self.copies],
                "needed_by": [c.as_json() for c in self.needed_by]}


def clashes(carried: Sequence[Carried], binaries: Callable[[], Sequence[Carried]]) -> list[Clash]:
    """The clashes among the `carried` library files of the audited distributions; `binaries`
    (every ELF file of them, read only for a plain-soname libstdc++ copy) for the GLIBCXX rule."""
    groups: dict[Family, list[Carried]] = {}
    for item in carried:
        family = family_of(item.relative.rsplit("/", 1)[-1])
        if family is not None:
            groups.setdefault(family, []).append(item)
    found = []
    runtimes: tuple[Family, ...] = ("openmp", "blas")
    for runtime in runtimes:
        copies = sorted(groups.get(runtime, ()), key=lambda c: (c.distribution.lower(), c.relative))
        distributions = {c.distribution.lower() for c in copies}
        if len(distributions) >= 2 and len({_loaded_as(c) for c in copies}) >= 2:
            listed = ", ".join(c.as_text() for c in copies)
            found.append(Clash(runtime, tuple(copies), (
                f"{_WHY[runtime]}: {len(copies)} copies in {len(distributions)} distributions, which clash when "
                f"imported into one process: {listed}")))
    for copy in sorted(groups.get("libstdc++", ()), key=lambda c: (c.distribution.lower(), c.relative)):
        clash = _old_libstdcxx(copy, binaries)
        if clash is not None:
            found.append(clash)
    return found


def _loaded_as(copy: Carried) -> str:
    """The name the loader knows a copy by once loaded: copies of one name are loaded once per
    process, whichever wheel asks first, so they do not clash. ELF: the soname; a DLL: its
    file name, case-folded; otherwise (Mach-O loads by install-name path) the path."""
    try:
        parsed = elf.read(copy.path)
    except (OSError, BinaryError):
        parsed = None
    if parsed is not None:
        return parsed.soname or copy.relative.rsplit("/", 1)[-1]
    name = copy.relative.rsplit("/", 1)[-1]
    return name.lower() if name.lower().endswith(".dll") else str(copy.path)


def _old_libstdcxx(copy: Carried, binaries: Callable[[], Sequence[Carried]]) -> Clash | None:
    """A libstdc++ copy named libstdc++.so.6 that defines no GLIBCXX version as new as another
    distribution's binary needs: loaded first, it serves that binary, which then fails to import."""
    try:
        parsed = elf.read(copy.path)
        if parsed is None or parsed.soname != _STDCXX_SONAME:
            return None  # a renamed copy (auditwheel's) serves only the binaries that ask for its name
        defined = [_glibcxx(v) for versions in elf.symbols(copy.path).exports.values() for v in versions if v]
        newest = max((d for d in defined if d is not None), default=None)
    except (OSError, BinaryError):
        return None
    if newest is None:
        return None
    needing: list[tuple[tuple[int, ...], Carried]] = []
    for binary in binaries():
        if binary.distribution.lower() == copy.distribution.lower():
            continue
        try:
            parsed = elf.read(binary.path)
        except (OSError, BinaryError):
            continue
        if parsed is None:
            continue
        wanted = [_glibcxx(v) for file, versions in parsed.version_needs if file == _STDCXX_SONAME for v in versions]
        most = max((w for w in wanted if w is not None), default=None)
        if most is not None and most > newest:
            needing.append((most, binary))
    if not needing:
        return None
    most = max(v for v, _ in needing)
    users = tuple(b for _, b in needing)
    shown = ", ".join(b.as_text() for b in users)
    return Clash("libstdc++", (copy,), (
        f"libstdc++: {copy.as_text()} is named {_STDCXX_SONAME} but defines GLIBCXX up to "
        f"{'.'.join(map(str, newest))} only, while {shown} need{'s' * (len(users) == 1)} GLIBCXX_"
        f"{'.'.join(map(str, most))}: imported after it, they fail to load"), users)


def _glibcxx(version: str) -> tuple[int, ...] | None:
    match = _GLIBCXX.match(version)
    return tuple(int(p) for p in match[1].split(".")) if match else None
