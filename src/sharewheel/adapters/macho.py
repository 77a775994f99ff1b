"""Pure-Python Mach-O reading and editing: what otool, install_name_tool and lipo do for delocate.

Why this backend on every host, macOS included: delocate shells out to Apple's tools, which
exist only on macOS, while release pipelines (and our CI) are Linux; one backend everywhere is
also one behaviour to test. Reading is sharewheel.readers.macho (see there why not macholib:
each file parsed once per run, load commands only: 20-50 times faster). Editing is macholib:
delocate already depends on it, and its header rewriting is what install_name_tool does — load
commands are rewritten in place within the header padding, section data never moves, so both
chained-fixup and classic (dyld_info) binding formats stay valid. lief would rebuild the file
(and leaves arm64 signatures invalid anyway). Every edited file is re-signed ad hoc
(sharewheel.adapters.codesign) and forgotten by the reader's cache.

The functions named like delocate.tools' own (``_get_install_names``, ``set_install_name``, …)
and delocate.delocating's ``_get_macos_min_version`` keep their signatures and errors: the swap
in sharewheel.adapters._delocate installs them into delocate for the duration of a repair
(tests/test_tool_internals.py compares the signatures with delocate's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from sharewheel import readers
from sharewheel.adapters import codesign
from sharewheel.errors import SharewheelError
from sharewheel.readers import macho as reader
from sharewheel.readers.macho import (  # noqa: F401 - the names this module always had
    ARCH_NAMES,
    LC_CODE_SIGNATURE,
    LC_ID_DYLIB,
    LC_RPATH,
    LIBRARY_COMMANDS,
    MACHO_MAGICS,
    is_macho,
)
from sharewheel.symbols import SymbolTable

if TYPE_CHECKING:
    from packaging.version import Version


class HeaderFull(SharewheelError):
    """The load commands would overrun the first section: install_name_tool's 'do not fit' error."""


def _load(path: str | PathLike[str]):  # type: ignore[no-untyped-def]
    """macholib's view of the file, for editing."""
    from macholib.MachO import MachO

    try:
        return MachO(str(path))
    except Exception as e:  # noqa: BLE001 - macholib raises ValueError, struct.error, KeyError, ...
        raise SharewheelError(f"{Path(path).name}: malformed Mach-O file ({type(e).__name__}: {e})") from None


def _name(entry) -> str:  # type: ignore[no-untyped-def]
    from macholib.MachO import lc_str_value

    load, command, _ = entry
    field = command.path if load.cmd == LC_RPATH else command.name
    return lc_str_value(field, entry).decode("utf-8", "surrogateescape")


def _per_arch(
    path: str | PathLike[str], pick: Callable[[reader.Slice], list[str]]
) -> dict[str, list[str]]:
    """pick(slice) per architecture, as fresh lists; of two slices with one name (arm64 and
    arm64e) the later wins, as it did when macholib answered."""
    if not is_macho(path):
        return {}
    return {sl.arch: pick(sl) for sl in reader.read(path).slices}


# --- reading, with delocate.tools' signatures ------------------------------------------------


def _get_install_names(filename: str | PathLike[str]) -> dict[str, list[str]]:
    """Per architecture, the libraries `filename` loads (not its own install id)."""
    return _per_arch(filename, lambda sl: [dylib.name for dylib in sl.dylibs])


def _get_install_ids(filename: str | PathLike[str]) -> dict[str, str]:
    ids = _per_arch(filename, lambda sl: [sl.install_id.name] if sl.install_id else [])
    return {arch: names[0] for arch, names in ids.items() if names}


def _get_rpaths(filename: str | PathLike[str]) -> dict[str, list[str]]:
    return _per_arch(filename, lambda sl: list(sl.rpaths))


def _union(per_arch: dict[str, list[str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for names in per_arch.values() for name in names))


def get_install_names(filename: str | PathLike[str]) -> tuple[str, ...]:
    return _union(_get_install_names(filename))


def get_install_id(filename: str | PathLike[str]) -> str | None:
    ids = set(_get_install_ids(filename).values())
    if len(ids) > 1:
        raise NotImplementedError(f"{filename} has a different install id per architecture")
    return ids.pop() if ids else None


def get_dylib_versions(filename: str | PathLike[str]) -> tuple[str, str]:
    """(current, compatibility) version of a dylib's LC_ID_DYLIB, as `X.Y.Z`: a text stub must
    state them, since dyld refuses a library older than the compatibility version a consumer records."""
    for sl in reader.read(filename).slices:
        if sl.install_id is not None:
            return (reader.version_string(sl.install_id.current_version),
                    reader.version_string(sl.install_id.compatibility_version))
    raise SharewheelError(f"{Path(filename).name}: not a dylib (no LC_ID_DYLIB)")


def get_rpaths(filename: str | PathLike[str]) -> tuple[str, ...]:
    return _union(_get_rpaths(filename))


def get_archs(libname: str | PathLike[str]) -> frozenset[str]:
    if not Path(libname).is_file():
        raise RuntimeError(f"{libname} is not a file")
    if not is_macho(libname):
        return frozenset()
    return frozenset(sl.arch for sl in reader.read(libname).slices)


def _get_macos_min_version(dylib_path: str | PathLike[str]) -> Iterator[tuple[str, Version]]:
    """delocate.delocating's: per slice, its cputype's macholib name and the first LC_BUILD_VERSION
    minos or LC_VERSION_MIN_MACOSX version as major.minor (delocate's reading, bit masks included);
    nothing for a file that is not Mach-O."""
    from macholib.mach_o import CPU_TYPE_NAMES
    from packaging.version import Version

    if not is_macho(dylib_path):
        return
    for sl in reader.read(dylib_path).slices:
        if sl.min_version is not None:
            major, minor = sl.min_version >> 16 & 0xFF, sl.min_version >> 8 & 0xFF
            yield CPU_TYPE_NAMES.get(sl.cputype, "unknown"), Version(f"{major}.{minor}")


# --- editing, with delocate.tools' signatures ------------------------------------------------


def set_install_name(filename: str | PathLike[str], oldname: str, newname: str, ad_hoc_sign: bool = True) -> None:
    from sharewheel.adapters import _delocate

    if oldname not in get_install_names(filename):
        raise _delocate.install_name_error(f"{oldname} not in install names for {filename}")
    edit(Path(filename), change={oldname: newname}, sign=ad_hoc_sign)


def set_install_id(filename: str | PathLike[str], install_id: str, ad_hoc_sign: bool = True) -> None:
    from sharewheel.adapters import _delocate

    if not _get_install_ids(filename):
        raise _delocate.install_name_error(f"{filename} has no install id")
    edit(Path(filename), install_id=install_id, sign=ad_hoc_sign)


def add_rpath(filename: str | PathLike[str], newpath: str, ad_hoc_sign: bool = True) -> None:
    edit(Path(filename), add_rpaths=[newpath], sign=ad_hoc_sign)


def _delete_rpaths(filename: str | PathLike[str], rpaths: Iterable[str], ad_hoc_sign: bool = True) -> None:
    edit(Path(filename), delete_rpaths=list(rpaths), sign=ad_hoc_sign)


def replace_signature(filename: str | PathLike[str], identity: str) -> None:
    if identity != "-":
        raise SharewheelError(f"{filename}: only ad-hoc signing ('-') is possible without Apple's codesign")
    _sign(Path(filename))


def validate_signature(filename: str | PathLike[str]) -> None:
    """Replace an invalid signature with an ad-hoc one, as delocate's version does."""
    if is_macho(filename) and not codesign.signature_is_valid(Path(filename)):
        _sign(Path(filename))


def _sign(path: Path) -> None:
    try:
        codesign.sign_file(path)
    finally:
        readers.forget(path)


# --- sharewheel's own entry point ------------------------------------------------------------


def edit(
    path: Path,
    *,
    change: dict[str, str] | None = None,
    install_id: str | None = None,
    add_rpaths: Iterable[str] = (),
    delete_rpaths: Iterable[str] = (),
    sign: bool = True,
) -> bool:
    """Rewrite load commands in every slice, then ad-hoc sign; returns whether anything changed.

    `change` maps a loaded library's name to its new name; `delete_rpaths` removes every
    LC_RPATH with one of those paths; `add_rpaths` appends the ones not yet present.
    """
    from macholib.mach_o import load_command, rpath_command
    from macholib.ptypes import sizeof

    change = change or {}
    to_delete = set(delete_rpaths)
    macho = _load(path)
    changed = False
    for header in macho.headers:
        for index, entry in reversed(list(enumerate(header.commands))):
            load = entry[0]
            if load.cmd in LIBRARY_COMMANDS and _name(entry) in change and change[_name(entry)] != _name(entry):
                header.rewriteDataForCommand(index, change[_name(entry)].encode())
                changed = True
            elif load.cmd == LC_ID_DYLIB and install_id is not None and _name(entry) != install_id:
                header.rewriteDataForCommand(index, install_id.encode())
                changed = True
            elif load.cmd == LC_RPATH and _name(entry) in to_delete:
                del header.commands[index]
                header.header.ncmds -= 1
                header.changedHeaderSizeBy(-load.cmdsize)
                changed = True
        present = {_name(entry) for entry in header.commands if entry[0].cmd == LC_RPATH}
        for rpath in add_rpaths:
            if rpath in present:
                continue
            data = rpath.encode() + b"\0"
            data += b"\0" * (-len(data) % 8)
            size = sizeof(load_command) + sizeof(rpath_command) + len(data)
            header.commands.append((
                load_command(cmd=LC_RPATH, cmdsize=size, _endian_=header.endian),
                rpath_command(path=size - len(data), _endian_=header.endian),
                data,
            ))
            header.header.ncmds += 1
            header.changedHeaderSizeBy(size)
            present.add(rpath)
            changed = True
    if not changed:
        return False
    for header in macho.headers:
        unsigned = sign and not any(entry[0].cmd == LC_CODE_SIGNATURE for entry in header.commands)
        if header.total_size + header.sizediff + (16 if unsigned else 0) > header.low_offset:
            raise HeaderFull(
                f"{path.name}: not enough room in the Mach-O header for the new load commands "
                "(link it with -headerpad_max_install_names)"
            )
    try:
        with open(path, "r+b") as f:
            macho.write(f)
    finally:  # size and mtime may not change within one timer tick: the reader must not trust them
        readers.forget(path)
    if sign:
        _sign(path)
    return True


def symbols(path: Path) -> SymbolTable:
    """Imports bound by two-level namespace ordinal to a load command's path, and exports.

    Imports are the union over architectures; exports only what every architecture exports.
    Weak imports may stay unbound at run time and are left out.
    """
    return reader.symbols(path)
