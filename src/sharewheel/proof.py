"""The stand-in proof: before anything is relinked, each provider file must export every
symbol (and symbol version) a binary imports from the library it replaces.

Which imports those are is one rule, :func:`sharewheel.symbols.lacking`, which `check` applies
too; this module finds what it needs in a wheel tree, and the interpreter's libraries (for
both)."""

from __future__ import annotations

import functools
import logging
import os
import posixpath
import sys
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name
from packaging.version import Version

from sharewheel import symbols
from sharewheel.adapters import BinaryInfo, PlatformAdapter, manylinux
from sharewheel.errors import ProofError, SharewheelError
from sharewheel.readers import elf as elf_reader
from sharewheel.registry import Match, Provider, Registry
from sharewheel.symbols import Neighbours, SymbolTable
from sharewheel.unvendor import Unvendoring

if TYPE_CHECKING:
    from sharewheel.plan import Plan

log = logging.getLogger("repair")


def prove_stand_ins(
    adapter: PlatformAdapter,
    tree: Path,
    binaries: dict[str, BinaryInfo],
    plan: Plan,
    unvendoring: Unvendoring,
    search: tuple[Path, ...] = (),
) -> None:
    """Refuse, before anything is relinked, a provider file that lacks a symbol (or symbol
    version) a binary imports from the library it stands in for.

    What a binary imports from a library is decided by the library it used until now: the
    vendored copy being replaced, else the library the host finds for it (often the very
    file the build linked), else what the binary imports that none of its other libraries nor
    the interpreter's export — judged only when every one of those was found (see
    sharewheel.symbols.lacking).
    """
    for (binary, needed), match in sorted(plan.matches.items(), key=lambda item: item[0]):
        lacking = _lacking(adapter, tree, binaries, plan, unvendoring, search, binary, needed, match)
        if lacking:
            where = f"{match.provider.distribution} {match.provider.provides.version}'s {match.library.path}"
            raise ProofError(symbols.describe_missing(binary, posixpath.basename(needed), where, lacking),
                             match.provider.distribution)


def oldest_stand_ins(
    adapter: PlatformAdapter,
    tree: Path,
    binaries: dict[str, BinaryInfo],
    plan: Plan,
    unvendoring: Unvendoring,
    registry: Registry,
    search: tuple[Path, ...] = (),
) -> dict[str, Version]:
    """For each provider linked (by canonical name), the oldest older release of its ABI series
    among those found that passes the proof above for every library it stands in for: the
    requirement's floor. A consumer built against 1.2.0 and repaired with 1.2.0 and 1.3.0 at hand
    requires >=1.2.0, not >=1.3.0; one importing a symbol new in 1.3.0 requires >=1.3.0."""
    linked: dict[str, list[tuple[str, str, Match]]] = {}
    for (binary, needed), match in sorted(plan.matches.items(), key=lambda item: item[0]):
        linked.setdefault(canonicalize_name(match.provider.distribution), []).append((binary, needed, match))
    floors = {}
    for name, matches in linked.items():
        newest = max((match.provider for _, _, match in matches), key=lambda p: p.version)
        for release in registry.older_releases(newest):
            if all(_stands_in(adapter, tree, binaries, plan, unvendoring, search, binary, needed, match, release)
                   for binary, needed, match in matches):
                floors[name] = release.version
                break
    return floors


def _stands_in(adapter: PlatformAdapter, tree: Path, binaries: dict[str, BinaryInfo], plan: Plan,
               unvendoring: Unvendoring, search: tuple[Path, ...], binary: str, needed: str, match: Match,
               release: Provider) -> bool:
    """Whether `release` offers `match`'s library under the same unique name, lacking nothing."""
    library = next((lib for lib in release.provides.libraries if lib.unique_name == match.library.unique_name), None)
    return library is not None and not _lacking(adapter, tree, binaries, plan, unvendoring, search, binary, needed,
                                                Match(release, library))


def _lacking(adapter: PlatformAdapter, tree: Path, binaries: dict[str, BinaryInfo], plan: Plan,
             unvendoring: Unvendoring, search: tuple[Path, ...], binary: str, needed: str, match: Match) -> list[str]:
    """What `binary` imports from `needed` that `match`'s file does not export (see above)."""
    copy = unvendoring.reference(needed)
    neighbours = functools.partial(_neighbours, adapter, tree, binaries, plan, binary, needed, search,
                                   None if copy is None else tree / copy)
    return symbols.lacking(adapter.symbols(tree / binary), needed,
                           adapter.symbols(match.provider.file(match.library)), neighbours, interpreter_tables)


def _neighbours(
    adapter: PlatformAdapter,
    tree: Path,
    binaries: dict[str, BinaryInfo],
    plan: Plan,
    binary: str,
    needed: str,
    search: tuple[Path, ...],
    copy: Path | None,
) -> Neighbours:
    """The vendored copy being replaced, else the library the host finds under the replaced
    name, else the binary's other libraries: direct ones first (as found, or their providers'
    files), then what those load; none when a direct one cannot be found."""
    if copy is not None:
        return Neighbours(adapter.symbols(copy))
    name = posixpath.basename(needed)
    resolved = adapter.resolve(tree, binary, search)
    if name in resolved:
        return Neighbours(adapter.symbols(resolved[name]))
    provided = {posixpath.basename(n): m for (b, n), m in plan.matches.items() if b == binary and n != needed}
    direct = [posixpath.basename(n) for n in binaries[binary].needed if posixpath.basename(n) != name]
    if not all(n in resolved or n in provided for n in direct):
        log.debug("%s: not every library it needs was found; its unversioned imports are not judged", binary)
        return Neighbours(others=None)
    paths = [resolved[n] for n in direct if n in resolved]
    paths += [m.provider.file(m.library) for m in provided.values()]
    paths += [p for n, p in resolved.items() if n not in direct and n != name]
    return Neighbours(others=tuple(functools.partial(adapter.symbols, p) for p in paths))


# --- the interpreter's libraries --------------------------------------------------------------


def interpreter_tables(executable: str | None = None) -> tuple[symbols.Read, ...]:
    """The symbol tables of :func:`interpreter_libraries`, each read when first asked for."""
    return tuple(functools.partial(_table, path) for path in interpreter_libraries(executable))


def _table(path: Path) -> SymbolTable:
    """A library of the interpreter's, or nothing if it cannot be read (it explains nothing then)."""
    try:
        return elf_reader.symbols(path)
    except (SharewheelError, OSError):
        return SymbolTable()


@functools.lru_cache(maxsize=8)
def interpreter_libraries(executable: str | None = None) -> tuple[Path, ...]:
    """The files of an interpreter's process whose exports serve every extension's unbound
    imports: the executable (default: the running one), its shared libpython, and what they
    need (libm, libc, libpthread, ...), found as the loader finds them. These are the process's
    global scope, which the loader searches before any library an extension brings.

    Empty where the interpreter is no ELF file (a macOS or Windows host): there only the
    ``Py``/``_Py`` rule applies. auditwheel's ldd leaves libpython alone, so it is looked up
    here: in the RPATH, LD_LIBRARY_PATH and RUNPATH of the file needing it, then where libc &
    co. were found, then (for the running interpreter) its LIBDIR."""
    root = Path(os.path.realpath(executable or sys.executable))
    try:
        first = elf_reader.read(root)
    except (SharewheelError, OSError):
        first = None
    if first is None:
        return ()
    found: dict[Path, None] = {}
    todo = [root]
    while todo:
        path = todo.pop(0)
        if path in found:
            continue
        found[path] = None
        try:
            loaded = manylinux.ldd(path)
        except (SharewheelError, ValueError, OSError) as e:
            log.debug("%s: its libraries not found (%s); only what was found counts as the interpreter's", path, e)
            continue
        libraries = [Path(lib.realpath) for lib in loaded.libraries.values() if lib.realpath]
        dirs = [*loaded.rpath, *os.environ.get("LD_LIBRARY_PATH", "").split(":"), *loaded.runpath,
                *(str(p.parent) for p in libraries)]
        if root == Path(os.path.realpath(sys.executable)):
            dirs.append(sysconfig.get_config_var("LIBDIR") or "")
        for name, lib in loaded.libraries.items():
            if not lib.realpath:
                library = _locate(name, [d for d in dirs if d], first)
                if library is not None:
                    todo.append(library)
        found.update(dict.fromkeys(libraries))
    return tuple(found)


def _locate(name: str, dirs: list[str], like: elf_reader.ElfFile) -> Path | None:
    """The first `name` in `dirs` built for the executable's machine, as the loader picks it."""
    for directory in dict.fromkeys(dirs):
        candidate = Path(os.path.realpath(os.path.join(directory, name)))
        try:
            elf = elf_reader.read(candidate) if candidate.is_file() else None
        except (SharewheelError, OSError):
            continue
        if elf is not None and (elf.elf_class, elf.machine) == (like.elf_class, like.machine):
            return candidate
    return None
