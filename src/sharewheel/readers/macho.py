"""Mach-O reader: per slice the cputype and the load commands sharewheel and delocate read, and
(only when asked) the symbol table of the stand-in proof. Thin and fat (FAT_MAGIC, FAT_MAGIC_64)
files, mmap and struct only.

Why not macholib (the oracle in tests/test_macho_reader.py): ``MachO()`` builds an object per
load command and section and reads every section's contents, and delocate's otool wrappers,
which sharewheel answered with it, parse the file anew for each question (install names, ids,
rpaths). Its ``SymbolTable`` builds a Python object per nlist entry. Measured on the 71 Mach-O
files (147 MB) of six macOS wheels from PyPI (numpy 2.2.6 x86_64, scipy-openblas64 0.3.31.188.0
arm64, pillow 11.3.0, psycopg2-binary 2.9.10, shapely 2.1.1, pyzmq 27.0.0 universal2), warm page
cache, CPython 3.11, best of 3, two runs on a shared 2-core Linux machine (hence the ranges):

=========================================  ===============  ==============  ===============
                                           macholib 1.16.4  lief 1.0.0      this module
=========================================  ===============  ==============  ===============
parse every file's load commands           0.39-0.42 s      1.2-1.3 s       0.020-0.031 s
install names + ids + rpaths of each file  0.77-1.1 s       -               0.038-0.052 s
  (delocate's three questions, uncached)
symbol tables of every file                10.8-18.8 s      1.6-2.9 s       0.32-0.35 s
numpy's libscipy_openblas64_ (69 MB,       3.3-5.7 s        0.44-0.87 s     0.032-0.039 s
  79,571 nlist entries, 5,135 exports)
=========================================  ===============  ==============  ===============

lief parses everything into C++ objects (a 12 MB binary dependency) and is still 10-25 times
slower; macholib stays the editor (sharewheel.adapters.macho) and the oracle. Here the load
commands are read from the first pages of each slice only (mmap), and a symbol table reads the
n_type byte of every entry in one C-level strided slice and unpacks only the external entries.

Exports are the nlist's external defined symbols (N_EXT|N_SECT), as before, not the export trie
(LC_DYLD_INFO(_ONLY) export_off, LC_DYLD_EXPORTS_TRIE) that dyld binds against: in all 71 files
above and the zig/lld-built test binaries both hold the same names (tests/test_macho_reader.py
checks it), and none has a trie entry the nlist lacks (a re-exported or absolute symbol). A
provider with one would be refused by the stand-in proof: a false "cannot stand in", never a
crash at import time.

Damaged input is one SharewheelError naming the file: ``malformed Mach-O file (...)`` for the
headers and load commands, ``malformed Mach-O symbol table (...)`` for the symbol table. Every
bound against hostile files (ncmds against sizeofcmds, every offset against its slice, at most 19
fat slices as ``is_macho`` says) is such an error; nothing is silently cut short. Segments and
sections are checked against the slice's size, so a truncated file is refused when it is first
read, as macholib refused it. Load commands this reader does not use are skipped (macholib
refused the ones it did not know, such as those of newer linkers). Each file is
read once per version (sharewheel.readers.FileCache: size, inode, mtime and ctime);
sharewheel.adapters.macho calls ``sharewheel.readers.forget`` after each edit, since an in-place
edit within one tick of the file system's clock leaves them unchanged.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sharewheel.errors import BinaryError
from sharewheel.readers import FileCache
from sharewheel.symbols import SymbolTable

T = TypeVar("T")

FAT_MAGIC, FAT_MAGIC_64 = 0xCAFEBABE, 0xCAFEBABF
MH_MAGIC, MH_CIGAM, MH_MAGIC_64, MH_CIGAM_64 = 0xFEEDFACE, 0xCEFAEDFE, 0xFEEDFACF, 0xCFFAEDFE
MACHO_MAGICS = {MH_MAGIC, MH_CIGAM, MH_MAGIC_64, MH_CIGAM_64, FAT_MAGIC, FAT_MAGIC_64}
MAX_FAT_ARCHS = 19  # a Java class file shares FAT_MAGIC; its "count" is a class version >= 45
ARCH_NAMES = {0x7: "i386", 0x01000007: "x86_64", 0xC: "arm", 0x0100000C: "arm64"}

LC_REQ_DYLD = 0x80000000
LC_SEGMENT, LC_SEGMENT_64 = 0x1, 0x19
LC_SYMTAB = 0x2
LC_LOAD_DYLIB, LC_ID_DYLIB = 0xC, 0xD
LC_LOAD_WEAK_DYLIB = 0x18 | LC_REQ_DYLD
LC_RPATH = 0x1C | LC_REQ_DYLD
LC_CODE_SIGNATURE = 0x1D
LC_REEXPORT_DYLIB = 0x1F | LC_REQ_DYLD
LC_LAZY_LOAD_DYLIB = 0x20
LC_LOAD_UPWARD_DYLIB = 0x23 | LC_REQ_DYLD
LC_VERSION_MIN_MACOSX = 0x24
LC_BUILD_VERSION = 0x32
LIBRARY_COMMANDS = frozenset(
    {LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB, LC_LAZY_LOAD_DYLIB, LC_LOAD_UPWARD_DYLIB}
)

# the fixed part of the commands read: a shorter cmdsize is malformed
_FIXED_SIZES = {LC_ID_DYLIB: 24, LC_RPATH: 12, LC_SYMTAB: 24, LC_VERSION_MIN_MACOSX: 16,
                LC_BUILD_VERSION: 24, LC_SEGMENT: 56, LC_SEGMENT_64: 72,
                **{cmd: 24 for cmd in LIBRARY_COMMANDS}}
_ZEROFILL = {0x1, 0xC, 0x12}  # S_ZEROFILL, S_GB_ZEROFILL, S_THREAD_LOCAL_ZEROFILL: no file data


@dataclass(frozen=True)
class _SegmentLayout:
    """Where LC_SEGMENT(_64) and its sections keep the fields checked against the slice."""

    span: str  # struct format of (fileoff, filesize)
    span_at: int
    nsects_at: int
    section_size: int
    section_span: str  # struct format of a section's (size, offset)
    section_span_at: int
    section_flags_at: int


_SEGMENTS = {LC_SEGMENT: _SegmentLayout("II", 32, 48, 68, "II", 36, 56),
             LC_SEGMENT_64: _SegmentLayout("QQ", 40, 64, 80, "QI", 40, 64)}

N_EXT, N_TYPE, N_UNDF, N_SECT, N_WEAK_REF = 0x01, 0x0E, 0x0, 0xE, 0x40


@dataclass(frozen=True)
class Dylib:
    """An LC_ID_DYLIB or a library load command; versions packed as xxxx.yy.zz (``version_string``)."""

    cmd: int
    name: str
    current_version: int
    compatibility_version: int


@dataclass(frozen=True)
class Slice:
    cputype: int
    cpusubtype: int
    filetype: int
    offset: int  # of the slice in the file
    size: int
    is64: bool
    endian: str  # "<" or ">"
    install_id: Dylib | None
    dylibs: tuple[Dylib, ...]  # library load commands in file order: two-level ordinals index them
    rpaths: tuple[str, ...]
    signed: bool  # has LC_CODE_SIGNATURE
    min_version: int | None  # first LC_BUILD_VERSION minos / LC_VERSION_MIN_MACOSX version, packed
    symtab: tuple[int, int, int, int] | None  # symoff, nsyms, stroff, strsize (slice-relative)

    @property
    def arch(self) -> str:
        return ARCH_NAMES.get(self.cputype, f"cputype-{self.cputype:#x}")


@dataclass(frozen=True)
class MachOFile:
    path: str
    fat: bool
    slices: tuple[Slice, ...]


def version_string(packed: int) -> str:
    """X.Y.Z of a packed Mach-O version, as otool and macholib print it."""
    return f"{packed >> 16 & 0xFFFF}.{packed >> 8 & 0xFF}.{packed & 0xFF}"


def is_macho(path: str | os.PathLike[str]) -> bool:
    """Mach-O or universal file by its magic; a Java class file shares the fat magic but not a
    small arch count."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    if len(head) < 8:
        return False
    magic, count = struct.unpack(">II", head)
    if magic in (FAT_MAGIC, FAT_MAGIC_64):
        return 0 < count <= MAX_FAT_ARCHS
    return magic in MACHO_MAGICS


# --- reading once per file version ------------------------------------------------------------


def _answer(path: str | os.PathLike[str], cached: FileCache[T]) -> T:
    """cached(path), its _Malformed as the one error line naming the file as the caller did."""
    try:
        return cached(path)
    except _Malformed as e:
        raise BinaryError(f"{Path(path).name}: malformed Mach-O {e.part} ({e})") from None
    except OSError as e:
        raise BinaryError(f"{Path(path).name}: cannot read it ({e.strerror})") from None


def _mapped(path: str) -> mmap.mmap | bytes:
    with open(path, "rb") as f:
        try:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            return b""


# --- headers and load commands ------------------------------------------------------------------


class _Malformed(Exception):
    part = "file"


class _MalformedSymbols(_Malformed):
    part = "symbol table"


def _cstring(data: mmap.mmap | bytes, start: int, end: int, what: str) -> str:
    nul = data.find(b"\0", start, end)
    if nul < 0:
        raise _Malformed(f"{what} is not NUL-terminated within its load command")
    return data[start:nul].decode("utf-8", "surrogateescape")


def _lc_str(data: mmap.mmap | bytes, endian: str, base: int, cmdsize: int, fixed: int, what: str) -> str:
    (offset,) = struct.unpack_from(endian + "I", data, base + 8)
    if not fixed <= offset < cmdsize:
        raise _Malformed(f"{what} string offset {offset} outside its load command ({cmdsize} bytes)")
    return _cstring(data, base + offset, base + cmdsize, what)


def _check_segment(data: mmap.mmap | bytes, endian: str, base: int, cmd: int, cmdsize: int,
                   size: int, what: str) -> None:
    """The segment's and its sections' file data lie within the slice: what a truncated file
    fails first (dyld refuses it; macholib failed reading the section data)."""
    layout = _SEGMENTS[cmd]
    name = data[base + 8 : base + 24].split(b"\0", 1)[0].decode("ascii", "replace")
    fileoff, filesize = struct.unpack_from(endian + layout.span, data, base + layout.span_at)
    (nsects,) = struct.unpack_from(endian + "I", data, base + layout.nsects_at)
    first = _FIXED_SIZES[cmd]
    if first + nsects * layout.section_size > cmdsize:
        raise _Malformed(f"{what} {name}: {nsects} sections do not fit in its {cmdsize} bytes")
    if fileoff + filesize > size:
        raise _Malformed(f"{what} {name} (file offset {fileoff}, {filesize} bytes) "
                         f"runs past the end ({size} bytes)")
    for j in range(nsects):
        section = base + first + j * layout.section_size
        length, offset = struct.unpack_from(endian + layout.section_span, data, section + layout.section_span_at)
        (flags,) = struct.unpack_from(endian + "I", data, section + layout.section_flags_at)
        if offset and flags & 0xFF not in _ZEROFILL and offset + length > size:
            sectname = data[section : section + 16].split(b"\0", 1)[0].decode("ascii", "replace")
            raise _Malformed(f"{what} {name} section {sectname} (file offset {offset}, {length} bytes) "
                             f"runs past the end ({size} bytes)")


def _thin(data: mmap.mmap | bytes, offset: int, size: int, where: str) -> Slice:
    if size < 28:
        raise _Malformed(f"{where}{size} bytes are too short for a Mach-O header")
    (raw,) = struct.unpack_from(">I", data, offset)
    if raw in (MH_MAGIC, MH_MAGIC_64):
        endian = ">"
    elif raw in (MH_CIGAM, MH_CIGAM_64):
        endian = "<"
    else:
        raise _Malformed(f"{where}unknown Mach-O magic {raw:#010x}")
    is64 = raw in (MH_MAGIC_64, MH_CIGAM_64)
    header = 32 if is64 else 28
    if size < header:
        raise _Malformed(f"{where}{size} bytes are too short for a Mach-O header")
    cputype, cpusubtype, filetype, ncmds, sizeofcmds = struct.unpack_from(
        endian + "iiIII", data, offset + 4)
    end = header + sizeofcmds
    if end > size:
        raise _Malformed(f"{where}load commands ({sizeofcmds} bytes) run past the end ({size} bytes)")
    if ncmds * 8 > sizeofcmds:
        raise _Malformed(f"{where}{ncmds} load commands cannot fit in sizeofcmds ({sizeofcmds} bytes)")
    install_id: Dylib | None = None
    dylibs: list[Dylib] = []
    rpaths: list[str] = []
    signed = False
    min_version: int | None = None
    symtab: tuple[int, int, int, int] | None = None
    pos = header
    for i in range(ncmds):
        base = offset + pos
        if pos + 8 > end:
            raise _Malformed(f"{where}load command {i} starts past sizeofcmds ({sizeofcmds} bytes)")
        cmd, cmdsize = struct.unpack_from(endian + "II", data, base)
        if cmdsize < 8 or pos + cmdsize > end:
            raise _Malformed(f"{where}load command {i} ({cmd:#x}) has size {cmdsize}, "
                             f"past sizeofcmds ({sizeofcmds} bytes)")
        need = _FIXED_SIZES.get(cmd, 8)
        if cmdsize < need:
            raise _Malformed(f"{where}load command {i} ({cmd:#x}) is {cmdsize} bytes, "
                             f"shorter than its {need}-byte structure")
        if cmd == LC_ID_DYLIB or cmd in LIBRARY_COMMANDS:
            name = _lc_str(data, endian, base, cmdsize, 24, f"load command {i} ({cmd:#x}) name")
            current, compatibility = struct.unpack_from(endian + "II", data, base + 16)
            dylib = Dylib(cmd, name, current, compatibility)
            if cmd == LC_ID_DYLIB:
                if install_id is not None:
                    raise _Malformed(f"{where}two LC_ID_DYLIB commands")
                install_id = dylib
            else:
                dylibs.append(dylib)
        elif cmd == LC_RPATH:
            rpaths.append(_lc_str(data, endian, base, cmdsize, 12, f"LC_RPATH {i} path"))
        elif cmd == LC_CODE_SIGNATURE:
            signed = True
        elif cmd == LC_BUILD_VERSION and min_version is None:  # delocate takes the first of either
            (min_version,) = struct.unpack_from(endian + "I", data, base + 12)
        elif cmd == LC_VERSION_MIN_MACOSX and min_version is None:
            (min_version,) = struct.unpack_from(endian + "I", data, base + 8)
        elif cmd == LC_SYMTAB and symtab is None:
            symtab = struct.unpack_from(endian + "IIII", data, base + 8)
        elif cmd in (LC_SEGMENT, LC_SEGMENT_64):
            _check_segment(data, endian, base, cmd, cmdsize, size, f"{where}segment")
        pos += cmdsize
    if pos != end:
        raise _Malformed(f"{where}load commands take {pos - header} bytes, sizeofcmds says {sizeofcmds}")
    return Slice(cputype, cpusubtype, filetype, offset, size, is64, endian, install_id, tuple(dylibs),
                 tuple(rpaths), signed, min_version, symtab)


def _parse(path: str, data: mmap.mmap | bytes) -> MachOFile:
    if len(data) < 8:
        raise _Malformed(f"{len(data)} bytes are too short for a Mach-O file")
    magic, count = struct.unpack_from(">II", data)
    if magic not in (FAT_MAGIC, FAT_MAGIC_64):
        return MachOFile(path, False, (_thin(data, 0, len(data), ""),))
    if not 0 < count <= MAX_FAT_ARCHS:
        raise _Malformed(f"fat header says {count} architectures (at most {MAX_FAT_ARCHS} are read)")
    entry = ">iiQQII" if magic == FAT_MAGIC_64 else ">iiIII"
    width = struct.calcsize(entry)
    if 8 + count * width > len(data):
        raise _Malformed(f"fat header of {count} architectures runs past the end ({len(data)} bytes)")
    slices = []
    for i in range(count):
        _, _, offset, size, *_ = struct.unpack_from(entry, data, 8 + i * width)
        if offset + size > len(data):
            raise _Malformed(f"slice {i} (offset {offset}, {size} bytes) runs past the end "
                             f"({len(data)} bytes)")
        slices.append(_thin(data, offset, size, f"slice {i}: "))
    return MachOFile(path, True, tuple(slices))


def read(path: str | os.PathLike[str]) -> MachOFile:
    """The slices of a thin or fat Mach-O file with their load commands."""
    return _answer(path, _read_cached)


def _read_file(name: str) -> MachOFile:
    data = _mapped(name)
    try:
        return _parse(name, data)
    except struct.error as e:  # a bound not checked above: still one error, never a traceback
        raise _Malformed(str(e)) from None
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


# --- symbols ------------------------------------------------------------------------------------

_EXTERNAL = bytes(1 if byte & N_EXT else 0 for byte in range(256))


def _slice_symbols(data: mmap.mmap | bytes, sl: Slice) -> tuple[dict[str | None, set[str]], set[str]]:
    """(imports by library, exports) of one slice's nlist table: external N_SECT symbols are
    exports; external undefined ones (not common, not weak references) imports, bound by their
    two-level library ordinal (0, 0xFE, 0xFF and ordinals past the load commands: to None)."""
    imports: dict[str | None, set[str]] = {}
    exports: set[str] = set()
    if sl.symtab is None:
        return imports, exports
    symoff, nsyms, stroff, strsize = sl.symtab
    width = 16 if sl.is64 else 12
    if symoff + nsyms * width > sl.size:
        raise _Malformed(f"{nsyms} symbols at offset {symoff} run past the end of the slice "
                         f"({sl.size} bytes)")
    if stroff + strsize > sl.size:
        raise _Malformed(f"string table ({strsize} bytes at offset {stroff}) runs past the end of "
                         f"the slice ({sl.size} bytes)")
    start = sl.offset + symoff
    strings = sl.offset + stroff
    string_end = strings + strsize
    libraries = [d.name for d in sl.dylibs]
    entry = struct.Struct(sl.endian + ("IBBHQ" if sl.is64 else "IBBHI"))
    # n_type of every entry in one slice, flagged; only the external ones are unpacked
    flags = data[start + 4 : start + nsyms * width : width].translate(_EXTERNAL)
    index = flags.find(1)
    while index >= 0:
        strx, n_type, _, n_desc, n_value = entry.unpack_from(data, start + index * width)
        index_now, index = index, flags.find(1, index + 1)
        kind = n_type & N_TYPE
        imported = kind == N_UNDF and n_value == 0 and not n_desc & N_WEAK_REF  # not common, not weak
        if strx == 0 or not (kind == N_SECT or imported):
            continue
        if strx >= strsize:
            raise _Malformed(f"symbol {index_now} names string offset {strx}, past the string "
                             f"table ({strsize} bytes)")
        nul = data.find(b"\0", strings + strx, string_end)
        if nul < 0:
            raise _Malformed(f"symbol {index_now}'s name is not NUL-terminated within the string table")
        if nul == strings + strx:
            continue  # an empty name
        name = data[strings + strx : nul].decode("utf-8", "surrogateescape")
        if kind == N_SECT:
            exports.add(name)
        else:
            ordinal = (n_desc >> 8) & 0xFF
            library = libraries[ordinal - 1] if 1 <= ordinal <= len(libraries) else None
            imports.setdefault(library, set()).add(name)
    return imports, exports


def symbols(path: str | os.PathLike[str]) -> SymbolTable:
    """Imports bound by two-level namespace ordinal to a load command's path, and exports.

    Imports are the union over architectures; exports only what every architecture exports.
    Weak imports may stay unbound at run time and are left out.
    """
    return _answer(path, _symbols_cached)


def _symbols_file(name: str) -> SymbolTable:
    parsed = _read_cached(name)
    data = _mapped(name)
    imports: dict[str | None, set[tuple[str, str | None]]] = {}
    exports: set[str] | None = None
    try:
        for sl in parsed.slices:
            slice_imports, defined = _slice_symbols(data, sl)
            for library, names in slice_imports.items():
                imports.setdefault(library, set()).update((name, None) for name in names)
            exports = defined if exports is None else exports & defined
    except (_Malformed, struct.error) as e:
        raise _MalformedSymbols(str(e)) from None
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    return SymbolTable(
        {k: frozenset(v) for k, v in imports.items()}, {name: frozenset({None}) for name in exports or ()}
    )


_read_cached = FileCache(_read_file, 4096)
_symbols_cached = FileCache(_symbols_file, 64)
