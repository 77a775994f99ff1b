"""sharewheel.readers.pe against pefile, the oracle: every DLL and .pyd of real win_amd64 wheels
from PyPI and PE files built here (zig compiles, Debian's lld-link links: x86-64, i386 and arm64,
delay imports, imports by ordinal, ordinal-only and forwarded exports) read the same machine,
the same imports (per DLL, the same names and ordinals, in order) and the same exports.

pefile is run with its silent limits raised (`max_symbol_exports`, and the 512-byte name limits:
shapely's GEOS exports C++ names longer than that), and its names for ordinal imports of a few
system DLLs (`ordlookup`) are not taken: the file imports `#ordinal`, and so does the reader.
Then damaged files: each is one SharewheelError naming the file, at the reader and at the
command line.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import sharewheel, unpack
from pe_support import PeZig, find_lld_link, pe_imports
from test_cli_errors import assert_cli_error
from test_hostile import make_wheel

from sharewheel.errors import SharewheelError
from sharewheel.readers.pe import is_pe, read_pe, read_symbols, symbol_table
from sharewheel.symbols import SymbolTable

pytest_plugins = ["pe_support"]

# Real win_amd64 wheels for CPython 3.11 (pinned; 27.0 MB in all, five of them shared with
# test_differential_windows.py through the pypi_download cache).
REAL_WHEELS = {
    "numpy": ("numpy", "2.2.6", "win_amd64"),  # 12.9 MB: OpenBLAS and msvcp140 in numpy.libs (delvewheel)
    "shapely": ("shapely", "2.1.1", "win_amd64"),  # 1.7 MB: GEOS (C++ exports > 512 bytes) in shapely.libs
    "gmpy2": ("gmpy2", "2.2.1", "win_amd64"),  # 1.2 MB: MinGW-built GMP, MPFR, MPC in gmpy2.libs
    "h5py": ("h5py", "3.13.0", "win_amd64"),  # 3.0 MB: hdf5.dll, hdf5_hl.dll, zlib.dll beside the modules
    "pygit2": ("pygit2", "1.17.0", "win_amd64"),  # 1.3 MB: git2.dll beside; imports WS2_32.dll by ordinal
    "scipy-openblas64": ("scipy-openblas64", "0.3.31.188.0", "win_amd64"),  # 7.0 MB: a DLL of 9,547 exports
}
OPENBLAS_DLL = "scipy_openblas64/lib/libscipy_openblas64_.dll"
OPENBLAS_IMPLIB = "scipy_openblas64/lib/libscipy_openblas64_.lib"
PEFILE_EXPORT_LIMIT = 8192  # pefile.MAX_SYMBOL_EXPORT_COUNT, its default max_symbol_exports

View = tuple[int, list[tuple[str, tuple[str, ...], bool]], list[tuple[int, str | None, str | None]]]


def pefile_view(path: Path, monkeypatch: pytest.MonkeyPatch) -> View:
    """(machine, [(DLL, names or #ordinals, delayed)], [(ordinal, name, forwarder)]) read by pefile,
    with its limits raised so that it reads everything."""
    import pefile

    for limit in ("MAX_SYMBOL_NAME_LENGTH", "MAX_IMPORT_NAME_LENGTH", "MAX_DLL_LENGTH"):
        monkeypatch.setattr(pefile, limit, 1 << 20)
    pe = pefile.PE(os.fspath(path), fast_load=True)
    pe.max_symbol_exports = 1 << 30
    pe.parse_data_directories([pefile.DIRECTORY_ENTRY[f"IMAGE_DIRECTORY_ENTRY_{d}"]
                               for d in ("IMPORT", "DELAY_IMPORT", "EXPORT")])
    try:
        text = lambda raw: raw.decode("ascii", "replace")  # noqa: E731
        imports = [(text(entry.dll), tuple(text(i.name) if i.name and not i.import_by_ordinal else f"#{i.ordinal}"
                                           for i in entry.imports), delayed)
                   for attribute, delayed in (("DIRECTORY_ENTRY_IMPORT", False), ("DIRECTORY_ENTRY_DELAY_IMPORT", True))
                   for entry in getattr(pe, attribute, [])]
        directory = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
        exports = [(s.ordinal, text(s.name) if s.name else None, text(s.forwarder) if s.forwarder else None)
                   for s in (directory.symbols if directory is not None else [])]
        assert not [w for w in pe.get_warnings() if "Assuming corrupt" in w], pe.get_warnings()
        return pe.FILE_HEADER.Machine, imports, exports
    finally:
        pe.close()


def reader_view(path: Path) -> View:
    symbols = read_symbols(path)
    return (read_pe(path).machine, [(i.dll, i.names, i.delayed) for i in symbols.imports],
            [(e.ordinal, e.name, e.forwarder) for e in symbols.exports])


def table_from(view: View) -> SymbolTable:
    """The SymbolTable windows.py built from pefile before the reader (pe_symbols)."""
    _, imports, exports = view
    found: dict[str | None, set[tuple[str, str | None]]] = {}
    for dll, names, _ in imports:
        for name in names:
            found.setdefault(dll, set()).add((name, None))
    exported = {f"#{ordinal}" for ordinal, _, _ in exports} | {name for _, name, _ in exports if name}
    return SymbolTable({k: frozenset(v) for k, v in found.items()}, {n: frozenset({None}) for n in exported})


def assert_same_as_pefile(path: Path, monkeypatch: pytest.MonkeyPatch) -> View:
    assert is_pe(path), path
    expected = pefile_view(path, monkeypatch)
    assert reader_view(path) == expected, path
    assert read_pe(path).imports == tuple(dict.fromkeys(dll for dll, _, _ in expected[1])), path
    assert symbol_table(path) == table_from(expected), path
    return expected


@pytest.fixture(scope="module")
def real_trees(pypi_download, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each of REAL_WHEELS unpacked."""
    base = tmp_path_factory.mktemp("pe-real")
    return {key: unpack(pypi_download(*spec), base / key) for key, spec in REAL_WHEELS.items()}


def pe_files(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("*") if p.suffix.lower() in (".dll", ".pyd"))


@pytest.mark.parametrize("key", sorted(REAL_WHEELS))
def test_reader_matches_pefile_on_real_wheels(key: str, real_trees: dict[str, Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    files = pe_files(real_trees[key])
    assert files, f"{key}: no DLL or .pyd in the wheel"
    views = [assert_same_as_pefile(path, monkeypatch) for path in files]
    assert all(machine == 0x8664 for machine, _, _ in views)
    assert all(imports for _, imports, _ in views)  # every one imports at least KERNEL32.dll


def test_what_the_real_wheels_exercise(real_trees: dict[str, Path]) -> None:
    """The features the comparison above covers on real files (what it does not is built below)."""
    shapely_exports = [e.name for p in pe_files(real_trees["shapely"]) for e in read_symbols(p).exports if e.name]
    assert max(map(len, shapely_exports)) > 512  # beyond pefile's default name length
    git2 = read_symbols(real_trees["pygit2"] / "pygit2" / "git2.dll")
    [ws2] = [i for i in git2.imports if i.dll.lower() == "ws2_32.dll"]
    by_ordinal = [n for n in ws2.names if re.fullmatch(r"#\d+", n)]
    assert "#3" in by_ordinal and len(by_ordinal) < len(ws2.names)  # by ordinal (closesocket) and by name


def test_every_export_is_read(real_trees: dict[str, Path]) -> None:
    """scipy-openblas64's DLL names 9,547 exports: pefile with its defaults keeps the names of only
    8,192 (the rest become ordinal-only), which made the stand-in proof refuse the provider for
    a consumer importing one of the others. The reader reads them all."""
    import pefile

    dll = real_trees["scipy-openblas64"] / OPENBLAS_DLL
    named = [e.name for e in read_symbols(dll).exports if e.name]
    pe = pefile.PE(os.fspath(dll), fast_load=True)
    pe.parse_data_directories([pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXPORT"]])
    try:
        declared = pe.DIRECTORY_ENTRY_EXPORT.struct.NumberOfNames
        default_named = [s.name for s in pe.DIRECTORY_ENTRY_EXPORT.symbols if s.name]
    finally:
        pe.close()
    assert len(named) == len(set(named)) == declared > PEFILE_EXPORT_LIMIT
    assert len(default_named) == PEFILE_EXPORT_LIMIT
    table = symbol_table(dll)
    assert all(name in table.exports for name in named)


def test_stand_in_proof_reads_past_pefiles_limit(real_trees: dict[str, Path], pypi_download, pe_zig: PeZig,
                                                 tmp_path: Path) -> None:
    """A consumer calling a function that is among the exports pefile's defaults drop (the last
    name of the table), linked against the provider's import library: repair proves the real
    provider can stand in and links it."""
    from pe_support import build_pyd

    dll = real_trees["scipy-openblas64"] / OPENBLAS_DLL
    names = [e.name for e in read_symbols(dll).exports if e.name]
    late = next(n for n in reversed(names) if re.fullmatch(r"scipy_\w+", n))
    assert names.index(late) >= PEFILE_EXPORT_LIMIT
    source = (f"void {late}(void);\n"
              "__declspec(dllexport) void *PyInit__core(void) { return (void *)" + late + "; }\n")
    pyd = build_pyd(pe_zig, tmp_path / "pyd" / "_core.cp311-win_amd64.pyd",
                    links=[real_trees["scipy-openblas64"] / OPENBLAS_IMPLIB], include_dirs=[], source=source)
    assert pe_imports(pyd)["imports"][0].lower() == "libscipy_openblas64_.dll"
    wheel = make_wheel(tmp_path / "in", "win_amd64", {f"blas_consumer/{pyd.name}": pyd.read_bytes()},
                       dist="blas_consumer")
    provider = pypi_download(*REAL_WHEELS["scipy-openblas64"])
    result = sharewheel("repair", wheel, "-w", tmp_path / "out", "--provider", provider, check=False)
    assert result.returncode == 0, result.stderr
    assert "linked libscipy_openblas64_.dll" in result.stdout and "scipy-openblas64 0.3.31.188.0)" in result.stdout


# --- PE files built here -------------------------------------------------------------------

ORD_DEF = """\
LIBRARY ord.dll
EXPORTS
    named_fn
    hidden_fn @7 NONAME
    ticks = kernel32.GetTickCount
    other_ticks = kernel32.#5
"""
ORD_C = "int named_fn(void) { return 1; }\nint hidden_fn(void) { return 2; }\n"
CONSUMER_C = ("int named_fn(void);\nint hidden_fn(void);\n"
              "void *__delayLoadHelper2(void *d, void *f) { return 0; }  /* a stub: for reading only */\n"
              "__declspec(dllexport) int consume(void) { return named_fn() + hidden_fn(); }\n")


@dataclass(frozen=True)
class Arch:
    zig: str  # zig's target (x86: MSVC objects, whose exports lld-link decorates as it should)
    machine: str  # lld-link's /machine
    value: int  # the COFF Machine field


ARCHS = {"x64": Arch("x86_64-windows-gnu", "x64", 0x8664), "x86": Arch("x86-windows-msvc", "x86", 0x14C),
         "arm64": Arch("aarch64-windows-gnu", "arm64", 0xAA64)}


def lld_link(zig: PeZig, arch: Arch, out: Path, source: str, *, def_text: str | None = None,
             links: list[Path] = (), delayload: list[str] = ()) -> Path:
    """A CRT-free DLL: `source` compiled by zig for `arch`, linked by lld-link (a .def file for
    ordinals and forwarders; /delayload), its import library beside it as <stem>.lib."""
    scratch = out.parent / f"{out.stem}-build"
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "src.c").write_text(source)
    PeZig(zig.cache_dir, target=arch.zig, timings=zig.timings).cc("-c", "-o", scratch / "src.obj", scratch / "src.c",
                                                                   cwd=scratch, label=f"{out.name} ({arch.machine})")
    cmd = [find_lld_link(), "/dll", "/noentry", "/nodefaultlib", f"/machine:{arch.machine}", f"/out:{out}",
           f"/implib:{out.with_suffix('.lib')}", *(f"/delayload:{d}" for d in delayload), str(scratch / "src.obj"),
           *map(str, links)]
    if def_text is not None:
        (scratch / "exports.def").write_text(def_text)
        cmd.append(f"/def:{scratch / 'exports.def'}")
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{cmd}\n{result.stdout}{result.stderr}"
    shutil.rmtree(scratch)
    return out


@pytest.fixture(scope="module")
def built(pe_zig: PeZig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per architecture: ord.dll (a named, an ordinal-only and two forwarded exports) and
    consumer.dll importing from it by name and by ordinal; on x64 also one that delay-loads it."""
    base = tmp_path_factory.mktemp("pe-built")
    found = {}
    for key, arch in ARCHS.items():
        where = base / key
        where.mkdir()
        ord_dll = lld_link(pe_zig, arch, where / "ord.dll", ORD_C, def_text=ORD_DEF)
        found[f"{key}/ord.dll"] = ord_dll
        source = CONSUMER_C if key == "x64" else CONSUMER_C.replace("void *__delayLoadHelper2", "void *unused_helper")
        found[f"{key}/consumer.dll"] = lld_link(pe_zig, arch, where / "consumer.dll", source,
                                                links=[ord_dll.with_suffix(".lib")])
        if key == "x64":
            found["x64/delayed.dll"] = lld_link(pe_zig, arch, where / "delayed.dll", source,
                                                links=[ord_dll.with_suffix(".lib")], delayload=["ord.dll"])
    return found


def test_reader_matches_pefile_on_built_files(built: dict[str, Path], pe_consumer_pyd: Path, pe_extra,
                                              windows_prefixes, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, arch in ARCHS.items():
        machine, _, exports = assert_same_as_pefile(built[f"{key}/ord.dll"], monkeypatch)
        assert machine == arch.value
        by_name = {name: (ordinal, forwarder) for ordinal, name, forwarder in exports}
        forwarders = {by_name["ticks"][1], by_name["other_ticks"][1]}
        assert forwarders == {"kernel32.GetTickCount", "kernel32.#5"} or key == "x86"  # lld-link-16 writes
        assert {f.removeprefix("_") for f in forwarders} == {"kernel32.GetTickCount", "kernel32.#5"}  # _kernel32 on x86
        assert (7, None, None) in exports and "named_fn" in by_name
        _, imports, _ = assert_same_as_pefile(built[f"{key}/consumer.dll"], monkeypatch)
        assert [(dll, sorted(names), delayed) for dll, names, delayed in imports] == [
            ("ord.dll", ["#7", "named_fn"], False)], (key, imports)
    _, imports, _ = assert_same_as_pefile(built["x64/delayed.dll"], monkeypatch)
    assert [(dll, sorted(names), delayed) for dll, names, delayed in imports] == [("ord.dll", ["#7", "named_fn"], True)]
    for path in (pe_consumer_pyd, pe_extra.dll, windows_prefixes("3.1.4").dll):  # zig's MinGW builds
        assert_same_as_pefile(path, monkeypatch)
    assert read_pe(pe_consumer_pyd).imports[:2] == ("libacme-3.dll", "extra.dll")


def test_each_file_is_read_once_per_version(built: dict[str, Path], tmp_path: Path) -> None:
    """read_pe answers from its cache while the file's (path, mtime, size) stay; an edited file is
    read again."""
    path = Path(shutil.copy(built["x64/consumer.dll"], tmp_path / "consumer.dll"))
    first = read_pe(path)
    assert read_pe(path) is first and symbol_table(path) is symbol_table(path)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"ord.dll\0", b"ORD.DLL\0"))
    os.utime(path, ns=(1, 1))  # a different mtime, whatever the file system's resolution
    assert read_pe(path).imports == ("ORD.DLL",) and first.imports == ("ord.dll",)


# --- damaged files -------------------------------------------------------------------------

def _directory(pe, name: str) -> tuple[int, int]:
    import pefile

    entry = pe.OPTIONAL_HEADER.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY[f"IMAGE_DIRECTORY_ENTRY_{name}"]]
    return pe.get_offset_from_rva(entry.VirtualAddress), entry.VirtualAddress


def _patch(data: bytes, at: Callable, fmt: str, value: int) -> bytes:
    """`data` with the field at `at(pefile.PE)` set to `value`."""
    import pefile

    pe = pefile.PE(data=data, fast_load=True)
    offset = at(pe)
    pe.close()
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def _no_import_terminator(data: bytes) -> bytes:
    """The import directory's descriptors repeated to the end of its section: no all-zero entry."""
    import pefile

    pe = pefile.PE(data=data, fast_load=True)
    offset, rva = _directory(pe, "IMPORT")
    section = pe.get_section_by_rva(rva)
    end = section.PointerToRawData + section.SizeOfRawData
    pe.close()
    out = bytearray(data)
    first = data[offset:offset + 20]
    for at in range(offset, end - 19, 20):
        out[at:at + 20] = first
    out[at + 20:end] = b"\xff" * (end - at - 20)
    return bytes(out)


DAMAGE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "empty": (lambda d: b"", "no MZ header"),
    "truncated-headers": (lambda d: d[:0x180], "past the end of the file"),
    "truncated-sections": (lambda d: d[:len(d) // 2], "extends past the end of the file (truncated?)"),
    "bad-pe-offset": (lambda d: d[:0x3C] + struct.pack("<I", len(d) + 64) + d[0x40:], "no PE signature"),
    "optional-magic": (lambda d: _patch(d, lambda pe: pe.OPTIONAL_HEADER.get_file_offset(), "<H", 0x1234),
                       "neither PE32 nor PE32+"),
    "export-names-count": (lambda d: _patch(d, lambda pe: _directory(pe, "EXPORT")[0] + 24, "<I", 0x10000000),
                           "export name table has 268435456 entries, more than its section holds"),
    "export-functions-count": (lambda d: _patch(d, lambda pe: _directory(pe, "EXPORT")[0] + 20, "<I", 0x40000000),
                               "export address table has 1073741824 entries, more than its section holds"),
    "import-name-outside": (lambda d: _patch(d, lambda pe: _directory(pe, "IMPORT")[0] + 12, "<I", 0x7FFFFFF0),
                            "imported DLL name at RVA 0x7ffffff0 is outside every section"),
    "import-no-terminator": (_no_import_terminator, "no terminating entry"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_file_is_one_error_naming_it(kind: str, built: dict[str, Path], tmp_path: Path) -> None:
    """Each read of a damaged file (the x64 ord.dll with one defect, importing nothing but
    exporting; consumer.dll for import defects) is one SharewheelError: `NAME: malformed PE file
    (what, where)`, one line."""
    damage, words = DAMAGE[kind]
    source = built["x64/consumer.dll" if kind.startswith("import") else "x64/ord.dll"]
    path = tmp_path / f"damaged-{kind}.dll"
    path.write_bytes(damage(source.read_bytes()))
    readers = [read_symbols] if kind.startswith("export") else [read_pe, read_symbols]
    for read in readers:
        with pytest.raises(SharewheelError) as error:
            read(path)
        message = str(error.value)
        assert "\n" not in message and message.startswith(f"{path.name}: malformed PE file ("), message
        assert words in message, message


def test_damaged_import_table_through_the_command_line(built: dict[str, Path], tmp_path: Path) -> None:
    """`sharewheel show` and `repair` of a wheel holding a .pyd with no end to its import table:
    one error line naming the .pyd and the defect."""
    pyd = "acme_consumer/_core.cp311-win_amd64.pyd"
    wheel = make_wheel(tmp_path / "in", "win_amd64",
                       {pyd: _no_import_terminator(built["x64/consumer.dll"].read_bytes())})
    for command in (["show", wheel], ["repair", wheel, "-w", tmp_path / "out"]):
        line = assert_cli_error(tmp_path / command[0], *command,
                                names=[pyd, "malformed PE file", "no terminating entry"],
                                inputs=[wheel], out_dir=tmp_path / "out")
        assert wheel.name in line


def export_only_pe(names: int, run: int) -> bytes:
    """A minimal PE32+ DLL (headers and one section) exporting `names` functions whose names point
    into one string of `run` bytes (name i at its i-th byte, modulo `run`): tails of each other,
    so a small file can hold names of names × run bytes."""
    section_rva, section_offset = 0x1000, 0x200
    directory = 40
    functions = directory
    name_table = functions + 4 * names
    ordinals = name_table + 4 * names
    string = ordinals + 2 * names
    body = bytearray(string + run + 1)
    struct.pack_into("<IIHHIIIIIII", body, 0, 0, 0, 0, 0, section_rva + string, 1, names, names,
                     section_rva + functions, section_rva + name_table, section_rva + ordinals)
    struct.pack_into(f"<{names}I", body, functions, *(section_rva + string + i for i in range(names)))
    struct.pack_into(f"<{names}I", body, name_table, *(section_rva + string + i % run for i in range(names)))
    struct.pack_into(f"<{names}H", body, ordinals, *range(names))
    body[string:string + run] = b"A" * run
    body += bytes(-len(body) % 0x200)
    head = bytearray(section_offset)
    head[:2], head[0x3C:0x40] = b"MZ", struct.pack("<I", 0x40)
    optional = 112 + 16 * 8
    struct.pack_into("<4sHHIIIHH", head, 0x40, b"PE\0\0", 0x8664, 1, 0, 0, 0, optional, 0x2022)
    at = 0x40 + 24
    struct.pack_into("<HBBIIIII", head, at, 0x20B, 14, 0, 0, len(body), 0, 0, section_rva)
    struct.pack_into("<QII", head, at + 24, 0x180000000, 0x1000, 0x200)
    struct.pack_into("<II", head, at + 56, section_rva + len(body) + 0xFFF & ~0xFFF, section_offset)
    struct.pack_into("<I", head, at + 108, 16)
    struct.pack_into("<II", head, at + 112, section_rva, string)  # the export directory
    struct.pack_into("<8sIIII", head, at + optional, b".edata", len(body), section_rva, len(body), section_offset)
    return bytes(head + body)


def test_overlapping_names_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports whose names overlap: 1,000 names that are tails of one 1,000-byte string are read
    whole (pefile agrees); 60,000 names of about 200 kB each (12 GB of names from a 0.8 MB file)
    are one error, at once."""
    fine = tmp_path / "fine.dll"
    fine.write_bytes(export_only_pe(1000, 1000))
    expected = pefile_view(fine, monkeypatch)
    assert reader_view(fine) == expected and len(expected[2]) == 1000
    assert [name for _, name, _ in expected[2]] == ["A" * (1000 - i) for i in range(1000)]
    hostile = tmp_path / "hostile.dll"
    hostile.write_bytes(export_only_pe(60_000, 200_000))
    with pytest.raises(SharewheelError) as error:
        read_symbols(hostile)
    assert str(error.value) == ("hostile.dll: malformed PE file (its export names overlap into more bytes than "
                                "twice the file's size)")


def test_not_pe_is_not_read(tmp_path: Path) -> None:
    """is_pe is what decides which files are read at all: a file named .dll that is not one is
    refused by the adapter's scan (tests/test_hostile.py), never half-read."""
    fake = tmp_path / "fake.dll"
    fake.write_bytes(b"MZ" + bytes(0x3A) + struct.pack("<I", 0x1000))
    assert not is_pe(fake) and not is_pe(tmp_path / "absent.dll")
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as zf:
        zf.writestr("a", "b")
    assert not is_pe(tmp_path / "z.zip")
