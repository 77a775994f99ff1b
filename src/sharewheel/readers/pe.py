"""PE/COFF (Windows DLL, .pyd) reader: the machine, the import and delay-import tables and the
export directory, read straight from the file (mmap and struct), each file once per run.

Measured on a shared 2-core Linux machine (CPython 3.11, CPU time, best of 7, the range of two
runs; pefile 2024.8.26 as windows.py used it: the file read into memory, `fast_load`, then the
import and delay-import directories for the DLL names, the export directory too for all of
them; lief 1.0.0), "DLL names / all" in ms:

                                                 size  pefile           this module    lief
scipy-openblas64 0.3.31.188.0's
  libscipy_openblas64_.dll (9,547 exports)    20.4 MB  85-126/203-296*  0.5-0.8/18-20  15-16/26-27
numpy 2.2.6's _multiarray_umath...pyd          4.2 MB   88-113/ 86-139  0.5/1.5-1.6    3.0-3.7/3.0-3.8
h5py 3.13.0's hdf5.dll (3,767 exports)         3.3 MB  102-126/182-210  0.4-0.7/7-9    2.5-3.1/6-8
shapely 2.1.1's geos-...dll (6,145 exports)    2.5 MB   75-113/179-211  0.5-0.7/13-22  2.1-2.2/17-24
all 64 DLLs and .pyd of those four wheels     69.0 MB  6.8-6.9 s/       35-38/         89-94/
  and of gmpy2 2.2.1 and pygit2 1.17.0                 7.6-7.8 s        148-174        160-161

(* with its defaults pefile kept the names of only 8,192 of those exports, its
``max_symbol_exports``: the stand-in proof then refused the provider for a consumer importing one
of the others. With the limit raised, 218-253 ms. pefile also cuts names at 512 bytes, which GEOS's
C++ exports exceed, and names the ordinal imports of a few system DLLs from a table of its own.)

The DLL names are what `sharewheel show` and every repair ask of every binary: pefile builds a
Python object per header field and entry, and windows.py read each whole file for them; this module reads
the headers and the import descriptors only, a few pages whatever the file's size. lief is as
fast for symbols, slower for names, and a compiled dependency for what a few hundred lines of
struct do. So: this module; pefile stays the oracle (tests/test_pe_reader.py compares every DLL
of those wheels) and the editor (delvewheel's replace_needed, the checksum) in
sharewheel.adapters.windows.

No silent limits: every import and export is read, names whole; an import by ordinal is
`#ordinal`, as it binds. Against hostile files every table must lie in its section's file data
(a count of entries larger than the bytes there, or a table with no terminating entry, is an
error that says so), each string is scanned once however names overlap, and names that overlap
into more than twice the file's size are an error too; damaged input is one SharewheelError
naming the file.
"""

from __future__ import annotations

import mmap
import os
import struct
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

from sharewheel.errors import BinaryError
from sharewheel.readers import FileCache
from sharewheel.symbols import SymbolTable

EXPORT_DIRECTORY, IMPORT_DIRECTORY, DELAY_IMPORT_DIRECTORY = 0, 1, 13
PE32, PE32_PLUS = 0x10B, 0x20B
T = TypeVar("T")


@dataclass(frozen=True)
class PeFile:
    """What repair and show ask of every binary."""

    machine: int  # the COFF header's Machine (0x8664 x86-64, 0x14c i386, 0xaa64 arm64)
    imports: tuple[str, ...]  # DLL names as spelled: import table, then delay-import table, each once
    dll: bool = True  # IMAGE_FILE_DLL in the COFF header's Characteristics (False: a program, .exe)


@dataclass(frozen=True)
class ImportedDll:
    """One import (or delay-import) descriptor."""

    dll: str
    names: tuple[str, ...]  # imported names, or `#ordinal`, in table order
    delayed: bool


class Export(NamedTuple):  # a tuple, not a dataclass: a large DLL has ten thousand of them
    ordinal: int
    name: str | None  # None: exported by ordinal only
    forwarder: str | None  # `OTHER.name` or `OTHER.#ordinal`: resolved in another DLL; else None
    code: bool = True  # its address lies in an executable section (a function), else data


@dataclass(frozen=True)
class PeSymbols:
    imports: tuple[ImportedDll, ...]  # import descriptors in table order, then delay-import ones
    exports: tuple[Export, ...]  # named exports in name-table order, then ordinal-only ones


class _Malformed(Exception):
    pass


@dataclass(frozen=True)
class _Section:
    name: str
    rva: int
    span: int  # bytes of address space it covers: max(VirtualSize, SizeOfRawData)
    offset: int  # PointerToRawData
    raw: int  # SizeOfRawData: the bytes the file holds; the rest of the span is zero-filled
    executable: bool = False  # IMAGE_SCN_CNT_CODE or IMAGE_SCN_MEM_EXECUTE


def is_pe(path: str | os.PathLike[str]) -> bool:
    """An MZ header pointing at a PE signature (what the loader checks before anything else)."""
    try:
        with open(path, "rb") as f:
            head = f.read(0x40)
            if len(head) < 0x40 or head[:2] != b"MZ":
                return False
            f.seek(struct.unpack_from("<I", head, 0x3C)[0])
            return f.read(4) == b"PE\0\0"
    except (OSError, struct.error, ValueError, OverflowError):
        return False


class _Image:
    """The file mapped, its headers and section table read; RVAs resolved to file data, every
    read bounds-checked against it."""

    def __init__(self, data: mmap.mmap | bytes) -> None:
        self.data = data
        if len(data) < 0x40 or data[:2] != b"MZ":
            raise _Malformed("no MZ header")
        pe = self.unpack("<I", 0x3C)[0]
        if data[pe:pe + 4] != b"PE\0\0":
            raise _Malformed("no PE signature")
        self.machine, count, _, _, _, optional_size, self.characteristics = self.unpack("<HHIIIHH", pe + 4)
        optional = pe + 24
        magic = self.unpack("<H", optional)[0]
        if magic == PE32_PLUS:
            self.wide, self.image_base, directories_at = True, self.unpack("<Q", optional + 24)[0], optional + 112
        elif magic == PE32:
            self.wide, self.image_base, directories_at = False, self.unpack("<I", optional + 28)[0], optional + 96
        else:
            raise _Malformed(f"optional header magic {magic:#x} is neither PE32 nor PE32+")
        self.size_of_headers = min(self.unpack("<I", optional + 60)[0], len(data))
        declared = self.unpack("<I", directories_at - 4)[0]
        room = max(0, (optional + optional_size - directories_at) // 8)
        self.directories = [(rva, size) for rva, size in (self.unpack("<II", directories_at + 8 * i)
                                                           for i in range(min(declared, room, 16)))]
        table = optional + optional_size
        if table + 40 * count > len(data):
            raise _Malformed(f"its table of {count} sections extends past the end of the file (truncated?)")
        sections = []
        for i in range(count):
            name, vsize, rva, raw, offset = struct.unpack_from("<8sIIII", data, table + 40 * i)
            flags = struct.unpack_from("<I", data, table + 40 * i + 36)[0]
            label = name.rstrip(b"\0").decode("ascii", "replace")
            if offset + raw > len(data):
                raise _Malformed(f"section {label} extends past the end of the file (truncated?)")
            sections.append(_Section(label, rva, max(vsize, raw), offset, raw, bool(flags & 0x20000020)))
        self.sections = sorted(sections, key=lambda s: s.rva)
        self._starts = [s.rva for s in self.sections]
        # names may share bytes (a string and its tail), but a table of names each running to the
        # same far NUL would have a small file decode into gigabytes: a bound with its own error
        self._name_budget = 2 * len(data) + (1 << 20)

    def unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        try:
            return struct.unpack_from(fmt, self.data, offset)
        except struct.error:
            raise _Malformed(f"its headers extend past the end of the file (at {offset:#x})") from None

    def executable(self, rva: int) -> bool:
        """Whether `rva` lies in a section the loader maps executable."""
        i = bisect_right(self._starts, rva) - 1
        return i >= 0 and rva < self.sections[i].rva + self.sections[i].span and self.sections[i].executable

    def directory(self, index: int) -> tuple[int, int]:
        return self.directories[index] if index < len(self.directories) else (0, 0)

    def _extent(self, rva: int, what: str) -> tuple[int, int]:
        """The file offset of `rva` and the end of the file data it lies in (its section's, or
        the headers')."""
        i = bisect_right(self._starts, rva) - 1
        if i >= 0 and rva < self.sections[i].rva + self.sections[i].span:
            section = self.sections[i]
            if rva >= section.rva + section.raw:
                raise _Malformed(f"{what} at RVA {rva:#x} lies in the zero-filled part of section {section.name}")
            return section.offset + rva - section.rva, section.offset + section.raw
        if rva < self.size_of_headers:
            return rva, self.size_of_headers
        raise _Malformed(f"{what} at RVA {rva:#x} is outside every section")

    def offset(self, rva: int, size: int, what: str) -> int:
        """The file offset of `size` bytes at `rva`, which must all lie in the same file data."""
        at, end = self._extent(rva, what)
        if at + size > end:
            raise _Malformed(f"{what} at RVA {rva:#x} runs past the end of its section ({size} bytes)")
        return at

    def array(self, fmt: str, count: int, rva: int, what: str) -> tuple[int, ...]:
        """`count` entries of `fmt` at `rva`: one bounds check, one unpack."""
        if count == 0:
            return ()
        at, end = self._extent(rva, what)
        if at + count * struct.calcsize(fmt) > end:
            raise _Malformed(f"{what} has {count} entries, more than its section holds")
        return struct.unpack_from(f"<{count}{fmt}", self.data, at)

    def strings(self, rvas: Sequence[int], what: str) -> list[str]:
        """The NUL-terminated strings at `rvas`, found in one sweep in file order: each byte is
        scanned once however the strings overlap (no hostile table makes this quadratic)."""
        if not rvas:
            return []
        first, last = min(rvas), max(rvas)
        at, end = self._extent(first, what)
        if self._extent(last, what)[1] == end:  # the usual case: all in one section
            located = [(at + rva - first, end) for rva in rvas]
        else:
            located = [self._extent(rva, what) for rva in rvas]
        found = [""] * len(rvas)
        nul = -1
        for i in sorted(range(len(rvas)), key=located.__getitem__):
            offset, end = located[i]
            if not offset <= nul < end:
                nul = self.data.find(b"\0", offset, end)
                if nul < 0:
                    raise _Malformed(f"{what} at RVA {rvas[i]:#x} is not NUL-terminated within its section")
            self._name_budget -= nul - offset
            if self._name_budget < 0:
                raise _Malformed(f"its {what}s overlap into more bytes than twice the file's size")
            found[i] = self.data[offset:nul].decode("ascii", "replace")
        return found

    def lookup_table(self, rva: int, what: str) -> list[str]:
        """An import lookup table: names (via their hint/name entries) or `#ordinal`, up to its zero entry."""
        at, end = self._extent(rva, what)
        width, fmt, by_ordinal = (8, "<Q", 1 << 63) if self.wide else (4, "<I", 1 << 31)
        values = []
        while True:
            if at + width > end:
                raise _Malformed(f"{what} at RVA {rva:#x} runs past the end of its section (no terminating entry)")
            value = struct.unpack_from(fmt, self.data, at)[0]
            if value == 0:
                break
            values.append(value)
            at += width
        named = self.strings([(v & 0x7FFFFFFF) + 2 for v in values if not v & by_ordinal], f"{what}: name")
        names = iter(named)
        return [f"#{v & 0xFFFF}" if v & by_ordinal else next(names) for v in values]

    def descriptors(self, index: int, fmt: str, what: str) -> list[tuple[int, ...]]:
        """A directory's descriptors, up to its all-zero entry (the loader does not read its size)."""
        rva = self.directory(index)[0]
        if not rva:
            return []
        size = struct.calcsize(fmt)
        at, end = self._extent(rva, what)
        found: list[tuple[int, ...]] = []
        while True:
            if at + size > end:
                raise _Malformed(f"{what} at RVA {rva:#x} runs past the end of its section (no terminating entry)")
            fields = struct.unpack_from(fmt, self.data, at)
            if not any(fields):
                return found
            found.append(fields)
            at += size

    def imports(self, with_names: bool) -> list[ImportedDll]:
        direct = self.descriptors(IMPORT_DIRECTORY, "<5I", "import directory")
        delayed = []
        for attributes, name, _, _, lookup, *_ in self.descriptors(
                DELAY_IMPORT_DIRECTORY, "<8I", "delay-import directory"):
            if not attributes & 1:  # Visual C++ 6 wrote virtual addresses, not RVAs
                name, lookup = (v - self.image_base if v else 0 for v in (name, lookup))
            delayed.append((name, lookup))
        dlls = self.strings([d[3] for d in direct] + [name for name, _ in delayed], "imported DLL name")
        found = []
        for dll, (lookup, _, _, _, address) in zip(dlls, direct):
            names = self.lookup_table(lookup or address, f"import table of {dll}") if with_names else ()
            found.append(ImportedDll(dll, tuple(names), False))
        for dll, (_, lookup) in zip(dlls[len(direct):], delayed):
            names = self.lookup_table(lookup, f"delay-import table of {dll}") if with_names and lookup else ()
            found.append(ImportedDll(dll, tuple(names), True))
        return found

    def exports(self) -> list[Export]:
        rva, size = self.directory(EXPORT_DIRECTORY)
        if not rva:
            return []
        at = self.offset(rva, 40, "export directory")
        base, functions, count, at_functions, at_names, at_ordinals = struct.unpack_from("<6I", self.data, at + 16)
        addresses = self.array("I", functions, at_functions, "export address table")
        names = self.strings(self.array("I", count, at_names, "export name table"), "export name")
        indexes = self.array("H", count, at_ordinals, "export ordinal table")
        end = rva + size  # an address inside the export directory is a forwarder string
        if indexes and max(indexes) >= functions:
            raise _Malformed(f"its export name table points at function {max(indexes)} of {functions}")
        named = set(indexes)
        order = [*zip(indexes, names), *((index, None) for index in range(functions) if index not in named)]
        order = [(index, name) for index, name in order if addresses[index]]  # a zero address is an unused slot
        forwarded = sorted({addresses[index] for index, _ in order if rva <= addresses[index] < end})
        forwarders = dict(zip(forwarded, self.strings(forwarded, "export forwarder")))
        return [Export(base + index, name, forwarders.get(addresses[index]), self.executable(addresses[index]))
                for index, name in order]


def _read(path: Path, parse: Callable[[_Image], T]) -> T:
    """`parse` of the file mapped; damage is one SharewheelError naming the file."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data: mmap.mmap | bytes = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except (OSError, ValueError) as e:
        raise BinaryError(f"{path.name}: cannot read it ({e})") from None
    try:
        return parse(_Image(data))
    except _Malformed as e:
        raise BinaryError(f"{path.name}: malformed PE file ({e})") from None
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


def _pe_file(image: _Image) -> PeFile:
    return PeFile(image.machine, tuple(dict.fromkeys(entry.dll for entry in image.imports(False))),
                  bool(image.characteristics & 0x2000))


_read_pe = FileCache(lambda name: _read(Path(name), _pe_file), 4096)


def read_pe(path: str | os.PathLike[str]) -> PeFile:
    """The machine and the imported DLL names, once per file version (show and repair ask again)."""
    return _read_pe(path)


def read_symbols(path: str | os.PathLike[str]) -> PeSymbols:
    """Every import (per descriptor, with its names and ordinals) and every export."""
    return _read(Path(path), lambda image: PeSymbols(tuple(image.imports(True)), tuple(image.exports())))


def symbol_table(path: Path) -> SymbolTable:
    """Imports per DLL (by name, or `#ordinal`) and exports (names and `#ordinal`s, forwarders too),
    once per file version."""
    return _symbol_table(path)


def _read_symbol_table(name: str) -> SymbolTable:
    symbols = read_symbols(Path(name))
    imports: dict[str | None, set[tuple[str, str | None]]] = {}
    for entry in symbols.imports:
        for symbol in entry.names:
            imports.setdefault(entry.dll, set()).add((symbol, None))
    exported = {f"#{e.ordinal}" for e in symbols.exports} | {e.name for e in symbols.exports if e.name}
    return SymbolTable({k: frozenset(v) for k, v in imports.items()}, {name: frozenset({None}) for name in exported})


_symbol_table = FileCache(_read_symbol_table, 64)
