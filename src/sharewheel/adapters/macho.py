"""Pure-Python Mach-O reading and editing: what otool, install_name_tool and lipo do for delocate.

Why this backend on every host, macOS included: delocate shells out to Apple's tools, which
exist only on macOS, while release pipelines (and our CI) are Linux; one backend everywhere is
also one behaviour to test. Why macholib: delocate already depends on it, and its header
rewriting is what install_name_tool does — load commands are rewritten in place within the
header padding, section data never moves, so both chained-fixup and classic (dyld_info) binding
formats stay valid. lief would rebuild the file (and leaves arm64 signatures invalid anyway).
Every edited file is re-signed ad hoc (sharewheel.adapters.codesign).

The functions named like delocate.tools' own (``_get_install_names``, ``set_install_name``, …)
keep their signatures and errors: the macOS adapter installs them into delocate for the
duration of a repair.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from os import PathLike
from pathlib import Path

from sharewheel.adapters import codesign
from sharewheel.errors import SharewheelError
from sharewheel.symbols import SymbolTable, cached_by_file

MACHO_MAGICS = {0xFEEDFACE, 0xFEEDFACF, 0xCEFAEDFE, 0xCFFAEDFE, 0xCAFEBABE, 0xCAFEBABF}
ARCH_NAMES = {0x7: "i386", 0x01000007: "x86_64", 0xC: "arm", 0x0100000C: "arm64"}
LC_ID_DYLIB = 0xD
LC_RPATH = 0x8000001C
LC_CODE_SIGNATURE = 0x1D
LIBRARY_COMMANDS = {0xC, 0x18 | 0x80000000, 0x1F | 0x80000000, 0x20, 0x23 | 0x80000000}
# LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB, LC_LAZY_LOAD_DYLIB, LC_LOAD_UPWARD_DYLIB


class HeaderFull(SharewheelError):
    """The load commands would overrun the first section: install_name_tool's 'do not fit' error."""


def is_macho(path: str | PathLike[str]) -> bool:
    """Mach-O or universal file; a Java class file shares the fat magic but not a small arch count."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    if len(head) < 8:
        return False
    magic, count = struct.unpack(">II", head)
    if magic in (0xCAFEBABE, 0xCAFEBABF):
        return 0 < count < 20
    return magic in MACHO_MAGICS


def _load(path: str | PathLike[str]):  # type: ignore[no-untyped-def]
    from macholib.MachO import MachO

    try:
        return MachO(str(path))
    except Exception as e:  # noqa: BLE001 - macholib raises ValueError, struct.error, KeyError, ...
        raise SharewheelError(f"{Path(path).name}: malformed Mach-O file ({type(e).__name__}: {e})") from None


def _arch(header) -> str:  # type: ignore[no-untyped-def]
    cputype = header.header.cputype
    return ARCH_NAMES.get(cputype, f"cputype-{cputype:#x}")


def _name(entry) -> str:  # type: ignore[no-untyped-def]
    from macholib.MachO import lc_str_value

    load, command, _ = entry
    field = command.path if load.cmd == LC_RPATH else command.name
    return lc_str_value(field, entry).decode("utf-8", "surrogateescape")


def _per_arch(path: str | PathLike[str], pick: Callable[..., bool]) -> dict[str, list[str]]:
    if not is_macho(path):
        return {}
    return {
        _arch(header): [_name(entry) for entry in header.commands if pick(entry[0].cmd)]
        for header in _load(path).headers
    }


# --- reading, with delocate.tools' signatures ------------------------------------------------


def _get_install_names(filename: str | PathLike[str]) -> dict[str, list[str]]:
    """Per architecture, the libraries `filename` loads (not its own install id)."""
    return _per_arch(filename, lambda cmd: cmd in LIBRARY_COMMANDS)


def _get_install_ids(filename: str | PathLike[str]) -> dict[str, str]:
    return {arch: ids[0] for arch, ids in _per_arch(filename, lambda cmd: cmd == LC_ID_DYLIB).items() if ids}


def _get_rpaths(filename: str | PathLike[str]) -> dict[str, list[str]]:
    return _per_arch(filename, lambda cmd: cmd == LC_RPATH)


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
    for header in _load(filename).headers:
        for load, command, _ in header.commands:
            if load.cmd == LC_ID_DYLIB:  # macholib's version fields print as X.Y.Z
                return str(command.current_version), str(command.compatibility_version)
    raise SharewheelError(f"{Path(filename).name}: not a dylib (no LC_ID_DYLIB)")


def get_rpaths(filename: str | PathLike[str]) -> tuple[str, ...]:
    return _union(_get_rpaths(filename))


def get_archs(libname: str | PathLike[str]) -> frozenset[str]:
    if not Path(libname).is_file():
        raise RuntimeError(f"{libname} is not a file")
    if not is_macho(libname):
        return frozenset()
    return frozenset(_arch(header) for header in _load(libname).headers)


# --- editing, with delocate.tools' signatures ------------------------------------------------


def set_install_name(filename: str | PathLike[str], oldname: str, newname: str, ad_hoc_sign: bool = True) -> None:
    from delocate.tools import InstallNameError

    if oldname not in get_install_names(filename):
        raise InstallNameError(f"{oldname} not in install names for {filename}")
    edit(Path(filename), change={oldname: newname}, sign=ad_hoc_sign)


def set_install_id(filename: str | PathLike[str], install_id: str, ad_hoc_sign: bool = True) -> None:
    from delocate.tools import InstallNameError

    if not _get_install_ids(filename):
        raise InstallNameError(f"{filename} has no install id")
    edit(Path(filename), install_id=install_id, sign=ad_hoc_sign)


def add_rpath(filename: str | PathLike[str], newpath: str, ad_hoc_sign: bool = True) -> None:
    edit(Path(filename), add_rpaths=[newpath], sign=ad_hoc_sign)


def _delete_rpaths(filename: str | PathLike[str], rpaths: Iterable[str], ad_hoc_sign: bool = True) -> None:
    edit(Path(filename), delete_rpaths=list(rpaths), sign=ad_hoc_sign)


def replace_signature(filename: str | PathLike[str], identity: str) -> None:
    if identity != "-":
        raise SharewheelError(f"{filename}: only ad-hoc signing ('-') is possible without Apple's codesign")
    codesign.sign_file(Path(filename))


def validate_signature(filename: str | PathLike[str]) -> None:
    """Replace an invalid signature with an ad-hoc one, as delocate's version does."""
    if is_macho(filename) and not codesign.signature_is_valid(Path(filename)):
        codesign.sign_file(Path(filename))


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
    with open(path, "r+b") as f:
        macho.write(f)
    if sign:
        codesign.sign_file(path)
    return True


@cached_by_file
def symbols(path: Path) -> SymbolTable:
    """Imports bound by two-level namespace ordinal to a load command's path, and exports.

    Imports are the union over architectures; exports only what every architecture exports.
    Weak imports may stay unbound at run time and are left out.
    """
    from macholib.SymbolTable import SymbolTable as MachOSymbols

    N_EXT, N_TYPE, N_UNDF, N_SECT, N_WEAK_REF = 0x01, 0x0E, 0x0, 0xE, 0x40
    imports: dict[str | None, set[tuple[str, str | None]]] = {}
    exports: set[str] | None = None
    macho = _load(path)
    for header in macho.headers:
        libraries = [_name(entry) for entry in header.commands if entry[0].cmd in LIBRARY_COMMANDS]
        try:
            table = MachOSymbols(macho, header)
        except Exception as e:  # noqa: BLE001 - macholib raises whatever a bad offset causes
            raise SharewheelError(f"{Path(path).name}: malformed Mach-O symbol table ({type(e).__name__}: {e})") from None
        defined: set[str] = set()
        for nl, raw in getattr(table, "nlists", []):
            name = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
            if not name or not nl.n_type & N_EXT:
                continue
            kind = nl.n_type & N_TYPE
            if kind == N_SECT:
                defined.add(name)
            elif kind == N_UNDF and nl.n_value == 0 and not nl.n_desc & N_WEAK_REF:
                ordinal = (nl.n_desc >> 8) & 0xFF
                library = libraries[ordinal - 1] if 1 <= ordinal <= len(libraries) else None
                imports.setdefault(library, set()).add((name, None))
        exports = defined if exports is None else exports & defined
    return SymbolTable(
        {k: frozenset(v) for k, v in imports.items()}, {name: frozenset({None}) for name in exports or ()}
    )
