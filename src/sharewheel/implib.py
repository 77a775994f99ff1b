"""Windows import libraries (`acme.lib`, `libacme.dll.a`) for a provider DLL's unique name.

A consumer built with MSVC, clang-cl or MinGW links against an import library, and the DLL name
in it is the one the consumer will import. The prefix's own import library names the original
DLL (`acme.dll`); this module writes one naming the unique name (`acme-sw1a2b3c4d.dll`), so a
consumer linked against the provider wheel imports the provider's file directly and needs no
repair. No tool that writes these runs on every host (`lib.exe` is Windows-only, `llvm-dlltool`
and GNU `dlltool` are not on every CI image), and the format is small, so it is written here.

The format is what `lib.exe /def:` and `llvm-dlltool` write (Microsoft PE/COFF specification,
"Archive (Library) File Format" and "Import Library Format"): an `ar` archive with the first
(big-endian) and second (little-endian, sorted) linker members, a longnames member for a DLL
name of 16 characters or more (every member is named after the DLL, as lib.exe names them), then

- the import descriptor object (`__IMPORT_DESCRIPTOR_<stem>`: the `.idata$2` entry and the DLL
  name in `.idata$6`), which pulls in the two terminators below;
- `__NULL_IMPORT_DESCRIPTOR` (the all-zero `.idata$3` entry ending the import directory);
- `\\x7f<stem>_NULL_THUNK_DATA` (the zero entries ending this DLL's lookup and address tables);
- one *short import* member per export (IMPORT_OBJECT_HEADER, the symbol and DLL names), from
  which the linker makes `__imp_<name>` and, for code, the `<name>` jump thunk.

lld-link, link.exe and GNU ld (BFD's "ILF" support) all read short import members, so one file
serves as both names. Bytes are deterministic: every timestamp is 0. The objects are byte for
byte llvm-dlltool's but for the hint (tests/test_implib.py).

What the export table cannot say is recovered from the image: an export whose address lies in an
executable section is CODE, any other is DATA (only `__imp_<name>` is defined, so a consumer
must declare it `__declspec(dllimport)`, as for any DLL's data). Forwarded exports (resolved in
another DLL) and exports by ordinal only (no name a consumer can write) are left out. Each
import carries its export-name-table index as the loader's hint. On i386 the C symbol is the
export name with the leading underscore of cdecl decoration (IMPORT_NAME_NOPREFIX, which strips
it again), unless the export is already decorated (`_f@8`, `?f@@...`, imported as spelled).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path, PurePath

from sharewheel.errors import BinaryError
from sharewheel.readers.pe import is_pe, read_pe, read_symbols

log = logging.getLogger("implib")

I386, AMD64, ARM64 = 0x14C, 0x8664, 0xAA64
#: IMAGE_REL_*_ADDR32NB: the image-relative relocation of the import descriptor's three RVAs
_ADDR32NB = {I386: 0x0007, AMD64: 0x0003, ARM64: 0x0002}
_MACHINES = {I386: "i386", AMD64: "x86-64", ARM64: "arm64"}

IMPORT_CODE, IMPORT_DATA = 0, 1
IMPORT_NAME, IMPORT_NAME_NOPREFIX = 1, 2

_SECTION_DATA = 0x40 | 0x40000000 | 0x80000000  # initialized data, read, write
_ALIGN_2, _ALIGN_4, _ALIGN_8 = 0x200000, 0x300000, 0x400000
_EXTERNAL, _STATIC, _SECTION = 2, 3, 104  # symbol storage classes
_32BIT_MACHINE = 0x0100

NULL_IMPORT_DESCRIPTOR = "__NULL_IMPORT_DESCRIPTOR"


@dataclass(frozen=True)
class ImportSymbol:
    """One export as the import library offers it."""

    symbol: str  # the C symbol a consumer references (`__imp_` + this is always defined)
    name: str  # the name imported from the DLL
    hint: int  # its index in the DLL's export name table
    data: bool


def import_symbols(dll: Path) -> tuple[int, list[ImportSymbol]]:
    """The machine and the importable exports of `dll`; one clear error for what has none."""
    if not is_pe(dll):
        raise BinaryError(f"{dll.name}: not a PE file (DLL): cannot write an import library for it")
    machine = read_pe(dll).machine
    if machine not in _ADDR32NB:
        raise BinaryError(f"{dll.name}: machine {machine:#06x} is not supported for import libraries "
                          f"(supported: {', '.join(_MACHINES.values())})")
    found = []
    for hint, export in enumerate(read_symbols(dll).exports):
        if export.name is None or export.forwarder is not None:
            continue
        if not export.name.isascii() or "\ufffd" in export.name:
            log.warning("%s: export %r is not ASCII: left out of its import library", dll.name, export.name)
            continue
        decorated = export.name.startswith("?") or (export.name.startswith("_") and "@" in export.name)
        symbol = f"_{export.name}" if machine == I386 and not decorated else export.name
        found.append(ImportSymbol(symbol, export.name, hint, not export.code))
    if not found:
        raise BinaryError(f"{dll.name}: exports nothing by name (forwarders and ordinal-only exports aside): "
                          "no import library can be written for it")
    return machine, found


def import_library(dll: Path, dll_name: str) -> bytes:
    """An import library whose imports name `dll_name`, for the exports of `dll`."""
    if not dll_name.isascii():
        raise BinaryError(f"{dll_name}: an import library names its DLL in ASCII; this name is not")
    machine, symbols = import_symbols(dll)
    stem = PurePath(dll_name).stem
    members: list[tuple[bytes, list[str]]] = [
        (_import_descriptor(machine, dll_name, stem), [f"__IMPORT_DESCRIPTOR_{stem}"]),
        (_null_import_descriptor(machine), [NULL_IMPORT_DESCRIPTOR]),
        (_null_thunk(machine, stem), [f"\x7f{stem}_NULL_THUNK_DATA"]),
    ]
    for s in symbols:
        members.append((_short_import(machine, dll_name, s),
                        [f"__imp_{s.symbol}"] if s.data else [f"__imp_{s.symbol}", s.symbol]))
    return _archive(dll_name, members)


def write_provider_import_libraries(dll: Path, stem: str) -> tuple[Path, ...]:
    """`<stem>.lib` and `lib<stem>.dll.a` beside `dll` (the provider's unique file), naming it: the
    names MSVC (`acme.lib`, pkgconf --msvc-syntax's `-lacme`) and MinGW (`-lacme`) look for; one
    content, since both linkers read it."""
    data = import_library(dll, dll.name)
    written = (dll.with_name(f"{stem}.lib"), dll.with_name(f"lib{stem}.dll.a"))
    for path in written:
        path.write_bytes(data)
    return written


# --- COFF objects ---------------------------------------------------------------------------


def _file_header(machine: int, sections: int, symbol_table: int, symbols: int) -> bytes:
    return struct.pack("<HHIIIHH", machine, sections, 0, symbol_table, symbols, 0,
                       _32BIT_MACHINE if machine == I386 else 0)


def _section(name: bytes, size: int, data_at: int, relocations_at: int, relocations: int, flags: int) -> bytes:
    return struct.pack("<8sIIIIIIHHI", name, 0, 0, size, data_at, relocations_at, 0, relocations, 0, flags)


def _symbol(name: bytes | int, section: int, storage: int) -> bytes:
    """A symbol table entry: `name` inline (at most 8 bytes) or an offset into the string table."""
    raw = struct.pack("<II", 0, name) if isinstance(name, int) else name
    return struct.pack("<8sIhHBB", raw, 0, section, 0, storage, 0)


def _string_table(*names: str) -> tuple[bytes, list[int]]:
    """The string table (its size first) and the offset of each name in it."""
    offsets, body = [], b""
    for name in names:
        offsets.append(4 + len(body))
        body += name.encode("ascii") + b"\0"
    return struct.pack("<I", 4 + len(body)) + body, offsets


def _import_descriptor(machine: int, dll_name: str, stem: str) -> bytes:
    name = dll_name.encode("ascii") + b"\0"
    sections_end = 20 + 2 * 40
    relocations_at = sections_end + 20
    name_at = relocations_at + 3 * 10
    symbols_at = name_at + len(name)
    strings, (descriptor, null, thunk) = _string_table(
        f"__IMPORT_DESCRIPTOR_{stem}", NULL_IMPORT_DESCRIPTOR, f"\x7f{stem}_NULL_THUNK_DATA")
    reloc = _ADDR32NB[machine]
    return b"".join([
        _file_header(machine, 2, symbols_at, 7),
        _section(b".idata$2", 20, sections_end, relocations_at, 3, _ALIGN_4 | _SECTION_DATA),
        _section(b".idata$6", len(name), name_at, 0, 0, _ALIGN_2 | _SECTION_DATA),
        bytes(20),  # the import directory entry: its RVAs filled by the three relocations
        struct.pack("<IIH", 12, 2, reloc),  # Name → .idata$6
        struct.pack("<IIH", 0, 3, reloc),  # ImportLookupTable → .idata$4
        struct.pack("<IIH", 16, 4, reloc),  # ImportAddressTable → .idata$5
        name,
        _symbol(descriptor, 1, _EXTERNAL),
        _symbol(b".idata$2", 1, _SECTION),
        _symbol(b".idata$6", 2, _STATIC),
        _symbol(b".idata$4", 0, _SECTION),
        _symbol(b".idata$5", 0, _SECTION),
        _symbol(null, 0, _EXTERNAL),
        _symbol(thunk, 0, _EXTERNAL),
        strings,
    ])


def _null_import_descriptor(machine: int) -> bytes:
    strings, (name,) = _string_table(NULL_IMPORT_DESCRIPTOR)
    return b"".join([
        _file_header(machine, 1, 20 + 40 + 20, 1),
        _section(b".idata$3", 20, 20 + 40, 0, 0, _ALIGN_4 | _SECTION_DATA),
        bytes(20),
        _symbol(name, 1, _EXTERNAL),
        strings,
    ])


def _null_thunk(machine: int, stem: str) -> bytes:
    width = 4 if machine == I386 else 8
    align = _ALIGN_4 if machine == I386 else _ALIGN_8
    strings, (name,) = _string_table(f"\x7f{stem}_NULL_THUNK_DATA")
    data_at = 20 + 2 * 40
    return b"".join([
        _file_header(machine, 2, data_at + 2 * width, 1),
        _section(b".idata$5", width, data_at, 0, 0, align | _SECTION_DATA),
        _section(b".idata$4", width, data_at + width, 0, 0, align | _SECTION_DATA),
        bytes(2 * width),
        _symbol(name, 1, _EXTERNAL),
        strings,
    ])


def _short_import(machine: int, dll_name: str, symbol: ImportSymbol) -> bytes:
    name_type = IMPORT_NAME_NOPREFIX if symbol.symbol != symbol.name else IMPORT_NAME
    body = symbol.symbol.encode("ascii") + b"\0" + dll_name.encode("ascii") + b"\0"
    kind = IMPORT_DATA if symbol.data else IMPORT_CODE
    hint = symbol.hint if symbol.hint <= 0xFFFF else 0  # only a hint: the loader then searches by name
    header = struct.pack("<HHHHIIHH", 0, 0xFFFF, 0, machine, 0, len(body), hint, (name_type << 2) | kind)
    return header + body


# --- the archive ----------------------------------------------------------------------------


def _member_header(name: str, size: int, mode: str = "644") -> bytes:
    return f"{name:<16}{'0':<12}{'0':<6}{'0':<6}{mode:<8}{size:<10}`\n".encode("ascii")


def _padded(data: bytes) -> bytes:
    return data + b"\n" if len(data) % 2 else data


def _archive(member_name: str, members: list[tuple[bytes, list[str]]]) -> bytes:
    """An MSVC-style archive: every member named `member_name` (the DLL name, as lib.exe and
    llvm-dlltool name them), symbols indexed by both linker members."""
    symbols = [(name, index) for index, (_, names) in enumerate(members) for name in names]
    strings = b"".join(name.encode("ascii") + b"\0" for name, _ in symbols)
    ordered = sorted(symbols, key=lambda s: s[0].encode("ascii"))
    sorted_strings = b"".join(name.encode("ascii") + b"\0" for name, _ in ordered)
    first_size = 4 + 4 * len(symbols) + len(strings)
    second_size = 4 + 4 * len(members) + 4 + 2 * len(symbols) + len(sorted_strings)
    if len(member_name) < 16 and "/" not in member_name:
        longnames, header_name = b"", f"{member_name}/"
    else:
        longnames, header_name = member_name.encode("ascii") + b"\0", "/0"
    at = 8 + 60 + first_size + first_size % 2 + 60 + second_size + second_size % 2
    if longnames:
        at += 60 + len(longnames) + len(longnames) % 2
    offsets = []
    for data, _ in members:
        offsets.append(at)
        at += 60 + len(data) + len(data) % 2
    first = (struct.pack(f">I{len(symbols)}I", len(symbols), *(offsets[i] for _, i in symbols)) + strings)
    second = (struct.pack(f"<I{len(members)}I", len(members), *offsets)
              + struct.pack(f"<I{len(ordered)}H", len(ordered), *(i + 1 for _, i in ordered)) + sorted_strings)
    out = [b"!<arch>\n", _member_header("/", first_size, "0"), _padded(first),
           _member_header("/", second_size, "0"), _padded(second)]
    if longnames:
        out += [_member_header("//", len(longnames), "0"), _padded(longnames)]
    for data, _ in members:
        out += [_member_header(header_name, len(data)), _padded(data)]
    return b"".join(out)
