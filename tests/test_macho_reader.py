"""sharewheel.readers.macho against macholib, the oracle (delocate's own reading of minimum macOS
versions too), on every Mach-O file of six real macOS wheels from PyPI and on zig/lld-built ones:
thin arm64 and x86_64, universal2 (FAT_MAGIC and the same file as FAT_MAGIC_64), MH_BUNDLEs with
chained fixups, weak, re-exported, upward and lazy library load commands, rpaths, weak imports.

Compared per slice: architecture, file type, LC_ID_DYLIB and library load commands (kind, name,
versions, in order), rpaths, LC_CODE_SIGNATURE, minimum macOS version; per file the symbol table
of the stand-in proof (macholib's nlists read with sharewheel's semantics as they were before
the reader: `macholib_symbols` below), and the export trie dyld binds against, which must agree
with the nlist exports (the reader's docstring relies on it). Then the adapter
functions delocate calls, damaged files (one error line naming the file, whatever the damage)
and the cache (one parse per file version; an edit is seen at once).
"""

from __future__ import annotations

import os
import shutil
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import macho_support as ms
import pytest
from macho_support import build_bundle_lld, build_dylib, build_extension, make_fat, write_tbd
from macholib import mach_o
from macholib.MachO import MachO, lc_str_value
from macholib.SymbolTable import SymbolTable as MachOSymbols

from sharewheel.adapters import macho
from sharewheel.errors import SharewheelError
from sharewheel.readers import macho as reader
from sharewheel.symbols import SymbolTable

pytest_plugins = ["macho_support"]

# Real macOS wheels for CPython 3.11 that vendor dylibs with delocate (41.7 MB in all): thin
# x86_64 with LC_VERSION_MIN_MACOSX and a 69 MB OpenBLAS (numpy), thin arm64 (the others),
# universal2 (pyzmq). Also the differential test's wheels (tests/test_differential_macos.py).
MACOS_WHEELS = {
    "numpy": ("numpy", "2.2.6", "macosx_10_13_x86_64"),  # 21.2 MB
    "scipy-openblas64": ("scipy-openblas64", "0.3.31.188.0", "macosx_14_0_arm64"),  # 9.6 MB
    "pillow": ("pillow", "11.3.0", "macosx_11_0_arm64"),  # 4.7 MB
    "psycopg2-binary": ("psycopg2-binary", "2.9.10", "macosx_14_0_arm64"),  # 3.3 MB
    "shapely": ("shapely", "2.1.1", "macosx_11_0_arm64"),  # 1.6 MB
    "pyzmq": ("pyzmq", "27.0.0", "macosx_10_15_universal2"),  # 1.3 MB
}

N_EXT, N_TYPE, N_UNDF, N_SECT, N_WEAK_REF = 0x01, 0x0E, 0x0, 0xE, 0x40
LC_DYLD_INFO, LC_DYLD_INFO_ONLY, LC_DYLD_EXPORTS_TRIE = 0x22, 0x80000022, 0x80000033


def unpacked_machos(wheel: Path, dest: Path) -> list[Path]:
    """The wheel unpacked into `dest` (once), and its Mach-O files by macho_support's own reader."""
    if not dest.is_dir():
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(dest)
    return [p for p in sorted(dest.rglob("*")) if p.is_file() and ms.is_macho(p)]


@pytest.fixture(scope="session")
def wheel_machos(pypi_download, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    base = tmp_path_factory.mktemp("macos-wheels")
    return {key: unpacked_machos(pypi_download(*spec), base / key) for key, spec in MACOS_WHEELS.items()}


def as_fat64(fat: Path, out: Path) -> Path:
    """The same universal file with a FAT_MAGIC_64 header (what lipo writes for slices past 4 GB);
    the slices stay where they are."""
    data = fat.read_bytes()
    magic, count = struct.unpack_from(">2I", data)
    assert magic == ms.FAT_MAGIC
    entries = [struct.unpack_from(">5I", data, 8 + 20 * i) for i in range(count)]
    header = struct.pack(">2I", ms.FAT_MAGIC_64, count) + b"".join(
        struct.pack(">2I2Q2I", cputype, subtype, offset, size, align, 0) for cputype, subtype, offset, size, align in entries)
    assert len(header) <= min(entry[2] for entry in entries)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(header + data[len(header):])
    return out


def retyped(src: Path, dst: Path, changes: dict[str, int]) -> Path:
    """A thin file with the library load commands named in `changes` turned into another kind of
    library load command (same dylib_command layout): how upward and lazy loads are made here."""
    data = bytearray(src.read_bytes())
    _fat, (sl,) = ms._parse(bytes(data))
    for c in sl.commands:
        if c.cmd in ms.DYLIB_COMMANDS and ms._lc_str(bytes(data), sl, c) in changes:
            struct.pack_into("<I", data, c.offset, changes[ms._lc_str(bytes(data), sl, c)])
    dst.write_bytes(bytes(data))
    return dst


@dataclass(frozen=True)
class Built:
    files: dict[str, Path]
    acme: str  # libacme's install name, which the bundles load
    reexported: str  # the install name the mixed bundle re-exports


@pytest.fixture(scope="session")
def built_machos(zig, macos_prefixes, tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("macho-reader")
    arm64, x86_64, universal2 = (macos_prefixes(v) for v in ("arm64", "x86_64", "universal2"))
    extra = build_dylib(zig, "arm64", base / "lib" / "libextra.1.dylib",
                        "int extra_twice(int x) { return 2 * x; }\n", "@rpath/libextra.1.dylib",
                        extra_args=["-Wl,-current_version,1.2.3", "-Wl,-compatibility_version,1.0.0"])
    zlib = write_tbd(base / "lib" / "libz.tbd", "/usr/lib/libz.1.dylib", ["_deflate"], current_version="1.2.12")
    mixed_source = (
        "extern int acme_add(int, int); extern int extra_twice(int);\n"
        "extern int maybe(void) __attribute__((weak_import));\n"
        "extern void *PyLong_FromLong(long);\n"
        "void *PyInit__core(void) { return PyLong_FromLong(acme_add(1, 2) + extra_twice(3) + (maybe ? maybe() : 0)); }\n"
    )
    mixed = build_bundle_lld(zig, "arm64", base / "mixed" / "_core.cpython-311-darwin.so", mixed_source,
                             links=[arm64.lib], rpaths=["@loader_path/../lib", "/build/prefix/lib"],
                             extra_ld_args=["-weak_library", str(extra), "-reexport_library", str(zlib)])
    bundle_x86 = build_bundle_lld(zig, "x86_64", base / "x86" / "_core.cpython-311-darwin.so",
                                  calls=["acme_add"], links=[x86_64.lib])
    bundle_arm = build_bundle_lld(zig, "arm64", base / "arm" / "_core.cpython-311-darwin.so",
                                  calls=["acme_add"], links=[arm64.lib])
    files = {
        "libacme arm64": arm64.lib,
        "libacme x86_64": x86_64.lib,
        "libacme universal2": universal2.lib,
        "libacme universal2 fat64": as_fat64(universal2.lib, base / "fat64" / "libacme.3.dylib"),
        "libextra (versions)": extra,
        "extension with rpaths": build_extension(zig, "arm64", base / "ext", calls=["acme_add"], links=[arm64.lib],
                                                 rpaths=["/build/prefix/lib", "@loader_path/../acme_native/lib"]),
        "bundle weak/reexport/rpaths": mixed,
        "bundle x86_64": bundle_x86,
        "bundle universal2": make_fat(base / "fat" / "_core.cpython-311-darwin.so", [bundle_x86, bundle_arm]),
        "bundle upward/lazy": retyped(mixed, base / "retyped.so", {
            arm64.install_name: ms.LC_LOAD_UPWARD_DYLIB, "/usr/lib/libSystem.B.dylib": ms.LC_LAZY_LOAD_DYLIB}),
    }
    return Built(files, arm64.install_name, "/usr/lib/libz.1.dylib")


@pytest.fixture(scope="session")
def every_macho(wheel_machos: dict[str, list[Path]], built_machos: Built) -> list[Path]:
    return [*built_machos.files.values(), *(p for paths in wheel_machos.values() for p in paths)]


# --- the oracle: macholib ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceView:
    arch: str
    filetype: int
    install_id: tuple[str, str, str] | None  # name, current, compatibility
    dylibs: tuple[tuple[int, str, str, str], ...]  # cmd, name, current, compatibility
    rpaths: tuple[str, ...]
    signed: bool
    min_version: int | None


def macholib_view(path: Path) -> tuple[bool, list[SliceView]]:
    """(is fat, slices) as macholib reads them."""
    parsed = MachO(str(path))
    views = []
    for header in parsed.headers:
        install_id, dylibs, rpaths, signed, min_version = None, [], [], False, None
        for entry in header.commands:
            load, command, _ = entry
            if load.cmd == mach_o.LC_ID_DYLIB or load.cmd in ms.DYLIB_COMMANDS:
                versioned = (lc_str_value(command.name, entry).decode("utf-8", "surrogateescape"),
                             str(command.current_version), str(command.compatibility_version))
                if load.cmd == mach_o.LC_ID_DYLIB:
                    install_id = versioned
                else:
                    dylibs.append((load.cmd, *versioned))
            elif load.cmd == mach_o.LC_RPATH:
                rpaths.append(lc_str_value(command.path, entry).decode("utf-8", "surrogateescape"))
            elif load.cmd == mach_o.LC_CODE_SIGNATURE:
                signed = True
            elif load.cmd == mach_o.LC_BUILD_VERSION and min_version is None:
                min_version = int(command.minos)
            elif load.cmd == mach_o.LC_VERSION_MIN_MACOSX and min_version is None:
                min_version = int(command.version)
        views.append(SliceView(mach_o.CPU_TYPE_NAMES[header.header.cputype].lower(), header.header.filetype,
                               install_id, tuple(dylibs), tuple(rpaths), signed, min_version))
    return parsed.fat is not None, views


def reader_view(path: Path) -> tuple[bool, list[SliceView]]:
    parsed = reader.read(path)

    def versioned(d: reader.Dylib) -> tuple[str, str, str]:
        return d.name, reader.version_string(d.current_version), reader.version_string(d.compatibility_version)

    return parsed.fat, [
        SliceView(sl.arch, sl.filetype, versioned(sl.install_id) if sl.install_id else None,
                  tuple((d.cmd, *versioned(d)) for d in sl.dylibs), sl.rpaths, sl.signed, sl.min_version)
        for sl in parsed.slices
    ]


def macholib_slice_symbols(parsed: MachO, header) -> tuple[dict[str | None, set[str]], set[str]]:  # type: ignore[no-untyped-def]
    """sharewheel's symbol semantics as they were written on macholib before the reader."""
    libraries = [lc_str_value(command.name, (load, command, data)).decode("utf-8", "surrogateescape")
                 for load, command, data in header.commands if load.cmd in ms.DYLIB_COMMANDS]
    imports: dict[str | None, set[str]] = {}
    defined: set[str] = set()
    for nl, raw in getattr(MachOSymbols(parsed, header), "nlists", []):
        name = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
        if not name or not nl.n_type & N_EXT:
            continue
        kind = nl.n_type & N_TYPE
        if kind == N_SECT:
            defined.add(name)
        elif kind == N_UNDF and nl.n_value == 0 and not nl.n_desc & N_WEAK_REF:
            ordinal = (nl.n_desc >> 8) & 0xFF
            imports.setdefault(libraries[ordinal - 1] if 1 <= ordinal <= len(libraries) else None, set()).add(name)
    return imports, defined


def macholib_symbols(path: Path) -> SymbolTable:
    parsed = MachO(str(path))
    imports: dict[str | None, set[tuple[str, str | None]]] = {}
    exports: set[str] | None = None
    for header in parsed.headers:
        slice_imports, defined = macholib_slice_symbols(parsed, header)
        for library, names in slice_imports.items():
            imports.setdefault(library, set()).update((name, None) for name in names)
        exports = defined if exports is None else exports & defined
    return SymbolTable({k: frozenset(v) for k, v in imports.items()},
                       {name: frozenset({None}) for name in exports or ()})


def trie_exports(data: bytes, header) -> dict[str, int] | None:  # type: ignore[no-untyped-def]
    """name → flags of the export trie (LC_DYLD_INFO(_ONLY) export_off or LC_DYLD_EXPORTS_TRIE) of
    a macholib header; None if it has none."""
    where = None
    for load, command, _ in header.commands:
        if load.cmd in (LC_DYLD_INFO, LC_DYLD_INFO_ONLY) and command.export_size:
            where = (command.export_off, command.export_size)
        elif load.cmd == LC_DYLD_EXPORTS_TRIE:
            where = (command.dataoff, command.datasize)
    if where is None:
        return None
    trie = data[header.offset + where[0] : header.offset + where[0] + where[1]]

    def uleb(pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = trie[pos]
            value |= (byte & 0x7F) << shift
            shift, pos = shift + 7, pos + 1
            if byte < 0x80:
                return value, pos

    found: dict[str, int] = {}
    stack, seen = [(0, b"")], set()
    while stack:
        node, prefix = stack.pop()
        assert node not in seen, "a cycle in the export trie"
        seen.add(node)
        size, pos = uleb(node)
        if size:
            found[prefix.decode("utf-8", "surrogateescape")] = uleb(pos)[0]
        pos += size
        children, pos = trie[pos], pos + 1
        for _ in range(children):
            end = trie.index(b"\0", pos)
            label, pos = trie[pos:end], end + 1
            child, pos = uleb(pos)
            stack.append((child, prefix + label))
    return found


# --- the reader against the oracle ------------------------------------------------------------------


def test_the_corpus_has_every_kind_of_file(every_macho: list[Path], built_machos: Built,
                                           wheel_machos: dict[str, list[Path]]) -> None:
    """Read with macho_support's struct reader, independent of both: what the comparisons cover."""
    views = [ms.load_commands(p) for p in every_macho]
    slices = [info for view in views for info in view.values()]
    commands = {cmd for info in slices for cmd in info["commands"]}
    assert {ms.LC_LOAD_DYLIB, ms.LC_LOAD_WEAK_DYLIB, ms.LC_REEXPORT_DYLIB, ms.LC_LAZY_LOAD_DYLIB,
            ms.LC_LOAD_UPWARD_DYLIB, ms.LC_ID_DYLIB, ms.LC_RPATH, ms.LC_CODE_SIGNATURE,
            ms.LC_DYLD_CHAINED_FIXUPS, mach_o.LC_BUILD_VERSION, mach_o.LC_VERSION_MIN_MACOSX,
            LC_DYLD_INFO_ONLY, LC_DYLD_EXPORTS_TRIE} <= commands
    assert {"arm64", "x86_64"} <= {arch for view in views for arch in view}
    assert {ms.MH_DYLIB, ms.MH_BUNDLE} <= {info["filetype"] for info in slices}
    magics = {struct.unpack(">I", p.read_bytes()[:4])[0] for p in every_macho}
    assert {ms.FAT_MAGIC, ms.FAT_MAGIC_64} <= magics
    assert sum(map(len, wheel_machos.values())) == 71  # .so and .dylib files: no other Mach-O in them


def test_load_commands_match_macholib(every_macho: list[Path]) -> None:
    for path in every_macho:
        assert reader_view(path) == macholib_view(path), path


def test_symbols_match_macholib(every_macho: list[Path]) -> None:
    total = 0
    for path in every_macho:
        ours = reader.symbols(path)
        assert ours == macholib_symbols(path), path
        assert macho.symbols(path) == ours
        total += len(ours.exports)
    assert total > 30000  # the comparison is not of empty tables


def test_weak_imports_are_left_out_and_flat_lookups_bound_to_none(built_machos: Built) -> None:
    table = reader.symbols(built_machos.files["bundle weak/reexport/rpaths"])
    assert table.imports[built_machos.acme] == {("_acme_add", None)}
    everything = {name for names in table.imports.values() for name, _ in names}
    assert "_extra_twice" not in everything  # from the weakly loaded library: a weak reference
    assert "_maybe" not in everything  # weak_import
    assert ("_PyLong_FromLong", None) in table.imports[None]  # -undefined dynamic_lookup: no library
    assert set(table.exports) == {"_PyInit__core"}


def test_nlist_exports_are_the_export_trie(every_macho: list[Path]) -> None:
    """What the reader's docstring says: on all these files the nlist's external defined symbols are
    exactly the names in the export trie dyld binds against, none of them a re-export or absolute."""
    tries = 0
    for path in every_macho:
        parsed = MachO(str(path))
        data = path.read_bytes()
        for header in parsed.headers:
            trie = trie_exports(data, header)
            if trie is None:
                continue
            tries += 1
            _, defined = macholib_slice_symbols(parsed, header)
            assert set(trie) == defined, (path, header.header.cputype)
            assert not [name for name, flags in trie.items() if flags & 0x08 or flags & 0x03 == 0x02], path
    assert tries >= len(every_macho)


def test_min_macos_version_matches_delocates_own_reading(every_macho: list[Path], tmp_path: Path) -> None:
    from delocate.delocating import _get_macos_min_version

    for path in every_macho:
        assert list(macho._get_macos_min_version(path)) == list(_get_macos_min_version(path)), path
    text = tmp_path / "module.py"
    text.write_text("print('not Mach-O')\n")
    assert list(macho._get_macos_min_version(text)) == list(_get_macos_min_version(text)) == []


def test_adapter_functions_match_macholib(every_macho: list[Path]) -> None:
    """The functions swapped into delocate, per file, as they answered on macholib."""
    for path in every_macho:
        _fat, views = macholib_view(path)
        assert macho._get_install_names(path) == {v.arch: [d[1] for d in v.dylibs] for v in views}, path
        assert macho._get_install_ids(path) == {v.arch: v.install_id[0] for v in views if v.install_id}, path
        assert macho._get_rpaths(path) == {v.arch: list(v.rpaths) for v in views}, path
        assert macho.get_archs(path) == frozenset(v.arch for v in views)
        assert macho.get_install_names(path) == tuple(dict.fromkeys(d[1] for v in views for d in v.dylibs))
        assert macho.get_rpaths(path) == tuple(dict.fromkeys(r for v in views for r in v.rpaths))
        ids = {v.install_id for v in views if v.install_id}
        assert macho.get_install_id(path) == (next(iter(ids))[0] if ids else None)
        if ids:
            assert macho.get_dylib_versions(path) == next(iter(ids))[1:]
        else:
            with pytest.raises(SharewheelError, match=f"^{path.name}: not a dylib"):
                macho.get_dylib_versions(path)


def test_versions_of_a_dylib(built_machos: Built) -> None:
    assert macho.get_dylib_versions(built_machos.files["libextra (versions)"]) == ("1.2.3", "1.0.0")
    dylibs = reader.read(built_machos.files["bundle weak/reexport/rpaths"]).slices[0].dylibs
    assert [(d.cmd, d.name) for d in dylibs if d.cmd != ms.LC_LOAD_DYLIB] == [
        (ms.LC_LOAD_WEAK_DYLIB, "@rpath/libextra.1.dylib"), (ms.LC_REEXPORT_DYLIB, built_machos.reexported)]
    [weak] = [d for d in dylibs if d.cmd == ms.LC_LOAD_WEAK_DYLIB]
    assert reader.version_string(weak.current_version) == "1.2.3"


def test_non_macho_and_not_a_file(tmp_path: Path) -> None:
    java = tmp_path / "Main.class"
    java.write_bytes(struct.pack(">IHH", 0xCAFEBABE, 0, 61) + bytes(64))  # class file version 61
    empty = tmp_path / "empty.so"
    empty.write_bytes(b"")
    script = tmp_path / "run.so"
    script.write_text("#!/bin/sh\n")
    for path in (java, empty, script, tmp_path):
        assert not macho.is_macho(path)
        assert macho._get_install_names(path) == macho._get_install_ids(path) == macho._get_rpaths(path) == {}
    assert macho.get_archs(script) == frozenset()
    with pytest.raises(RuntimeError, match="is not a file"):
        macho.get_archs(tmp_path)
    for path in (java, empty, script):
        with pytest.raises(SharewheelError, match=f"^{path.name}: malformed Mach-O file"):
            macho.get_dylib_versions(path)


def test_different_install_ids_per_architecture(zig, tmp_path: Path) -> None:
    thin = [build_dylib(zig, arch, tmp_path / arch / "libx.dylib", "int x(void) { return 1; }\n", f"@rpath/libx-{arch}.dylib")
            for arch in ("x86_64", "arm64")]
    fat = make_fat(tmp_path / "libx.dylib", thin)
    assert macho._get_install_ids(fat) == {"x86_64": "@rpath/libx-x86_64.dylib", "arm64": "@rpath/libx-arm64.dylib"}
    with pytest.raises(NotImplementedError, match="different install id per architecture"):
        macho.get_install_id(fat)


# --- damaged files ------------------------------------------------------------------------------------


def _commands(data: bytes) -> list[tuple[int, int, int]]:
    """[(offset, cmd, cmdsize)] of a little-endian 64-bit thin file's load commands."""
    (ncmds,) = struct.unpack_from("<I", data, 16)
    commands, pos = [], 32
    for _ in range(ncmds):
        cmd, size = struct.unpack_from("<II", data, pos)
        commands.append((pos, cmd, size))
        pos += size
    return commands


def _patched(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def _command(data: bytes, cmd: int) -> tuple[int, int]:
    return next((offset, size) for offset, c, size in _commands(data) if c == cmd)


def _symtab_edit(data: bytes, edit: Callable[[bytes, int, int, int, int, int], bytes]) -> bytes:
    offset, _ = _command(data, mach_o.LC_SYMTAB)
    symoff, nsyms, stroff, strsize = struct.unpack_from("<4I", data, offset + 8)
    return edit(data, offset, symoff, nsyms, stroff, strsize)


def _external(data: bytes, symoff: int, nsyms: int) -> int:
    """Offset of the first external defined nlist entry."""
    return next(symoff + 16 * i for i in range(nsyms) if data[symoff + 16 * i + 4] & N_EXT
                and data[symoff + 16 * i + 4] & N_TYPE == N_SECT)


THIN_DAMAGE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "garbage after the magic": (lambda d: d[:4] + b"garbage!" * 512, "load commands"),
    "truncated header": (lambda d: d[:20], "too short for a Mach-O header"),
    "truncated after the load commands": (lambda d: d[: len(d) // 3], "runs past the end"),
    "ncmds beyond sizeofcmds": (lambda d: _patched(d, 16, "<I", 0x0FFFFFFF), "cannot fit in sizeofcmds"),
    "sizeofcmds past the end": (lambda d: _patched(d, 20, "<I", 0x7FFFFFF0), "run past the end"),
    "a load command of size 0": (lambda d: _patched(d, 32 + 4, "<I", 0), "has size 0"),
    "a load command past sizeofcmds": (lambda d: _patched(d, _commands(d)[-1][0] + 4, "<I", 0x10000),
                                       "past sizeofcmds"),
    "fewer commands than sizeofcmds": (lambda d: _patched(d, 16, "<I", len(_commands(d)) - 1),
                                       "sizeofcmds says"),
    "a name offset outside its command": (lambda d: _patched(d, _command(d, ms.LC_LOAD_DYLIB)[0] + 8, "<I", 4096),
                                          "outside its load command"),
    "a name without its NUL": (lambda d: (lambda o, s: d[:o + 24] + b"A" * (s - 24) + d[o + s:])(
        *_command(d, ms.LC_LOAD_DYLIB)), "not NUL-terminated"),
    "two install ids": (lambda d: _patched(d, _command(d, ms.LC_LOAD_DYLIB)[0], "<I", ms.LC_ID_DYLIB),
                        "two LC_ID_DYLIB"),
    "an LC_SYMTAB too short": (lambda d: _patched(d, _command(d, mach_o.LC_SYMTAB)[0] + 4, "<I", 16), "shorter than"),
}
SYMBOL_DAMAGE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "symbols past the end": (lambda d: _symtab_edit(d, lambda d, o, so, n, st, ss: _patched(d, o + 8, "<I", len(d) - 8)),
                             "run past the end of the slice"),
    "strings past the end": (lambda d: _symtab_edit(d, lambda d, o, so, n, st, ss: _patched(d, o + 20, "<I", len(d))),
                             "string table"),
    "a name past the string table": (lambda d: _symtab_edit(d, lambda d, o, so, n, st, ss: _patched(
        d, _external(d, so, n), "<I", ss + 100)), "past the string table"),
    "a name without its NUL": (lambda d: _symtab_edit(d, lambda d, o, so, n, st, ss: d[:st] + b"A" * ss + d[st + ss:]),
                               "not NUL-terminated"),
}


def _one_error_line(call: Callable[[], object], name: str, words: str) -> str:
    with pytest.raises(SharewheelError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{name}: ") and words in message, message
    return message


# damage macholib reads past (it strips the name from the command's bytes) but dyld refuses
MACHOLIB_TOLERATES = {"a name offset outside its command", "a name without its NUL"}


@pytest.mark.parametrize("damage", THIN_DAMAGE)
def test_damaged_load_commands(damage: str, built_machos: Built, tmp_path: Path) -> None:
    make, words = THIN_DAMAGE[damage]
    path = tmp_path / "libacme.3.dylib"
    path.write_bytes(make(built_machos.files["libacme arm64"].read_bytes()))
    assert words in _one_error_line(lambda: reader.read(path), path.name, "malformed Mach-O file (")
    for call in (lambda: reader.symbols(path), lambda: macho._get_install_names(path), lambda: macho.get_archs(path),
                 lambda: macho.get_dylib_versions(path), lambda: list(macho._get_macos_min_version(path))):
        assert words in _one_error_line(call, path.name, "malformed Mach-O file (")
    if damage not in MACHOLIB_TOLERATES:
        with pytest.raises(Exception):  # noqa: B017 - the oracle refuses it too, its own way
            MachO(str(path))


@pytest.mark.parametrize("damage", SYMBOL_DAMAGE)
def test_damaged_symbol_table(damage: str, built_machos: Built, tmp_path: Path) -> None:
    make, words = SYMBOL_DAMAGE[damage]
    path = tmp_path / "libacme.3.dylib"
    path.write_bytes(make(built_machos.files["libacme arm64"].read_bytes()))
    assert reader.read(path).slices[0].install_id is not None  # the load commands are fine
    assert words in _one_error_line(lambda: macho.symbols(path), path.name, "malformed Mach-O symbol table (")


FAT_DAMAGE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "a slice past the end": (lambda d: _patched(d, 8 + 20 + 12, ">I", len(d)), "slice 1 (offset"),
    "20 architectures": (lambda d: _patched(d, 4, ">I", 20), "20 architectures"),
    "a truncated fat table": (lambda d: d[:8 + 30], "fat header of 2 architectures runs past the end"),
    "a slice of garbage": (lambda d: (lambda off: d[:off] + b"garbage!" * 8 + d[off + 64:])(
        struct.unpack_from(">I", d, 8 + 8)[0]), "slice 0: unknown Mach-O magic"),
}


@pytest.mark.parametrize("damage", FAT_DAMAGE)
def test_damaged_fat_file(damage: str, built_machos: Built, tmp_path: Path) -> None:
    make, words = FAT_DAMAGE[damage]
    path = tmp_path / "libacme.3.dylib"
    path.write_bytes(make(built_machos.files["libacme universal2"].read_bytes()))
    assert words in _one_error_line(lambda: reader.read(path), path.name, "malformed Mach-O file (")
    if damage == "20 architectures":  # a Java class file's "count", as is_macho knows
        assert not macho.is_macho(path) and macho._get_install_names(path) == {}
    else:
        assert words in _one_error_line(lambda: macho._get_install_names(path), path.name, "malformed Mach-O file (")


@pytest.mark.parametrize("which", ["libacme universal2", "bundle weak/reexport/rpaths"])
def test_every_truncation_is_one_error_or_the_same_answer(which: str, built_machos: Built, tmp_path: Path) -> None:
    """Cut anywhere: the load commands and symbols read are the whole file's, or one error line."""
    source = built_machos.files[which]
    data = source.read_bytes()
    full = (reader_view(source), reader.symbols(source))
    path = tmp_path / source.name
    errors = 0
    for cut in sorted({*range(0, len(data), max(1, len(data) // 97)), 7, 8, 28, 31, 33, 4096 + 40}):
        path.write_bytes(data[:cut])
        try:
            assert (reader_view(path), reader.symbols(path)) == full, cut
        except SharewheelError as e:
            errors += 1
            assert "\n" not in str(e) and str(e).startswith(f"{path.name}: malformed Mach-O "), (cut, e)
    assert errors > 90


# --- the cache ---------------------------------------------------------------------------------------


def test_each_file_is_parsed_once(built_machos: Built) -> None:
    """Until it changes or sharewheel.readers.forget is told it was edited."""
    from sharewheel import readers

    path = built_machos.files["libacme universal2"]
    assert reader.read(path) is reader.read(str(path)) is reader.read(path.parent / ".." / path.parent.name / path.name)
    assert reader.symbols(path) is reader.symbols(path)
    first = reader.read(path)
    readers.forget(path.parent)
    assert reader.read(path) is not first and reader.read(path) == first


def test_an_edit_is_seen_at_once(built_machos: Built, tmp_path: Path) -> None:
    """In place, same size and (restored) mtime: what a second edit within one timer tick leaves."""
    path = tmp_path / "libacme.3.dylib"
    shutil.copyfile(built_machos.files["libacme arm64"], path)
    original = macho.get_install_id(path)
    assert original is not None
    assert reader.read(path) is reader.read(path)
    new = original[:-1] + "X"
    macho.set_install_id(path, new)  # as delocate calls it: edited, then signed (a new file)
    assert macho.get_install_id(path) == new and macho._get_install_ids(path) == {"arm64": new}
    assert macho.get_rpaths(path) == ()
    before = os.stat(path)
    macho.edit(path, add_rpaths=["@loader_path/x"], sign=False)  # in place, within the header padding
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert macho.get_rpaths(path) == ("@loader_path/x",)


def test_a_symlink_reads_as_its_target_and_errors_name_it(built_machos: Built, tmp_path: Path) -> None:
    link = tmp_path / "libacme.dylib"
    link.symlink_to(built_machos.files["libacme arm64"])
    assert reader.read(link).slices == reader.read(built_machos.files["libacme arm64"]).slices
    bad = tmp_path / "libbad.1.dylib"
    bad.write_bytes(built_machos.files["libacme arm64"].read_bytes()[:40])
    (tmp_path / "libbad.dylib").symlink_to(bad.name)
    _one_error_line(lambda: reader.read(tmp_path / "libbad.dylib"), "libbad.dylib", "malformed Mach-O file")
