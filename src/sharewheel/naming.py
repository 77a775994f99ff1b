"""Unique library names: the mechanism that lets one loaded copy serve every consumer.

Dynamic loaders match a needed library against the names of libraries already loaded (ELF
DT_SONAME, Mach-O install name, Windows module name). A provider's library therefore gets a
name that is unique to (distribution, ABI series, library), and stable across releases of one
series: upgrading within the series keeps old consumers working, two series get two names and
can live in one process. It never depends on file contents.
"""

from __future__ import annotations

import hashlib
import posixpath
import re

from packaging.utils import canonicalize_name

UNIQUE_MARK = "-sw"
_ELF_SONAME = re.compile(r"^(?P<stem>.+?)\.so(\.[0-9.]+)?$")
_UNIQUE = re.compile(rf"^(?P<stem>.+{UNIQUE_MARK}[0-9a-f]{{8}})\.(so|dylib|dll)$", re.IGNORECASE)


def series_hash(distribution: str, series: str, stem: str) -> str:
    key = f"sharewheel:{canonicalize_name(distribution)}:{series}:{stem}"
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def library_stem(filename: str) -> str:
    """`libacme` for `libacme.so.3`, `libacme.3.dylib`, `acme.dll`; unique names map to their stem."""
    match = _ELF_SONAME.match(filename)
    if match:
        stem = match["stem"]
    elif filename.endswith(".dylib"):
        stem = filename[: -len(".dylib")].split(".")[0]
    elif filename.lower().endswith(".dll"):
        stem = filename[:-4]
    else:
        stem = filename.split(".")[0]
    return re.sub(rf"{UNIQUE_MARK}[0-9a-f]{{8}}$", "", stem)


def library_family(filename: str) -> str:
    """What copies of one library share across tools, versions and OSes: its stem (the one rule
    above), lower-cased, without the version a Windows build appends (`libgfortran` for
    libgfortran.so.5, libgfortran.5.dylib and libgfortran-5.dll). Callers pass a vendored copy's
    original name (sharewheel.vendored undoes the tools' renaming)."""
    return re.sub(r"-\d+$", "", library_stem(filename)).lower()


def unique_name(distribution: str, series: str, original: str) -> str:
    """The name a provided library gets, e.g. ``libacme-sw1a2b3c4d.so`` for ``libacme.so.3``."""
    stem = library_stem(original)
    if original.endswith(".dylib"):
        suffix = ".dylib"
    elif original.lower().endswith(".dll"):
        suffix = ".dll"
    else:
        suffix = ".so"
    return f"{stem}{UNIQUE_MARK}{series_hash(distribution, series, stem)}{suffix}"


def link_name(filename: str) -> str:
    """The `-l` name of a library file: ``acme`` for ``libacme.so.3``, ``acme-sw1a2b3c4d`` for its unique name."""
    unique = _UNIQUE.match(filename)
    stem = unique["stem"] if unique else library_stem(filename)
    return stem.removeprefix("lib")


def library_key(name: str) -> str:
    """How loaders compare library names: by file name (Mach-O load commands are paths), DLL
    names case-insensitively, as Windows does."""
    base = posixpath.basename(name)
    return base.lower() if base.lower().endswith((".dll", ".pyd")) else base
