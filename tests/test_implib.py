"""Import libraries for the provider's unique DLL name (sharewheel.implib, issue 17): the archive
checked member by member against llvm-dlltool's for the same exports, and consumers linked
against the packed wheel's `acme.lib` by lld-link and `libacme.dll.a` by MinGW's GNU ld, which
then import `acme-sw<hash>.dll` and run under wine with the provider loaded from another
directory."""

from __future__ import annotations

import re
import shutil
import struct
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import find_tool, manifest_of, one, run, sharewheel, unpack
from pe_support import (
    PeZig,
    build_dll,
    find_lld_link,
    host_load,
    implib_imports,
    link_dll_lld,
    pe_import_symbols,
    pe_imports,
    pyd_result,
)

from sharewheel.errors import BinaryError
from sharewheel.implib import import_library, import_symbols

pytest_plugins = ["pe_support"]

PROVIDER_C = """\
__declspec(dllexport) int acme_counter = 40;  /* data: only __imp_acme_counter is defined */
__declspec(dllexport) int acme_add(int a, int b) { return a + b; }
__declspec(dllexport) int acme_series(void) { return 3; }
"""

# PyInit__core for host.exe: acme_series() * 1000 + 42, as pyd_result(3) expects
CONSUMER_C = """\
#include <stdint.h>
__declspec(dllimport) extern int acme_counter;
__declspec(dllimport) int acme_add(int a, int b);
int acme_series(void);  /* no dllimport: called through the import library's jump thunk */
__declspec(dllexport) void *PyInit__core(void) {
    return (void *)(intptr_t)(acme_series() * 1000 + acme_add(acme_counter, 2));
}
int _DllMainCRTStartup(void *module, unsigned long reason, void *reserved) {
    (void)module; (void)reason; (void)reserved;
    return 1;
}
"""

SYMBOLS = ["acme_add", "acme_counter", "acme_series"]
BUILT_AS = "acme-built-by-cmake.dll"


@dataclass(frozen=True)
class Packed:
    lib_dir: Path  # the installed provider package's lib/
    unique: str


@pytest.fixture(scope="module")
def packed(pe_zig: PeZig, tmp_path_factory: pytest.TempPathFactory) -> Packed:
    """acme.dll (CMake's name) with its own import library `lib/acme.lib` naming the DLL as
    built, packed; the wheel unpacked as pip installs it. (Linked under a longer name: this tiny
    DLL has no section padding for an export name longer than its own.)"""
    base = tmp_path_factory.mktemp("implib")
    prefix = base / "prefix"
    build_dll(pe_zig, prefix / "bin" / "acme.dll", PROVIDER_C, implib=prefix / "lib" / "acme.lib",
              internal_name=BUILT_AS)
    (prefix / "include").mkdir()
    (prefix / "include" / "acme.h").write_text("int acme_add(int a, int b);\n")
    assert implib_imports(prefix / "lib" / "acme.lib") == {BUILT_AS: SYMBOLS}
    shutil.copyfile(prefix / "lib" / "acme.lib", prefix / "lib" / "libacme.dll.a")  # both names, both replaced
    sharewheel("pack", prefix, "--name", "acme-native", "--version", "3.1.4", "-w", base / "wheelhouse")
    wheel = one(list((base / "wheelhouse").glob("*.whl")))
    unique = manifest_of(wheel)["provides"]["libraries"][0]["unique_name"]
    return Packed(unpack(wheel, base / "site") / "acme_native" / "lib", unique)


def test_pack_writes_import_libraries_naming_the_unique_dll(packed: Packed) -> None:
    """acme.lib (MSVC) and libacme.dll.a (MinGW), one content, replacing the prefix's acme.lib;
    the .pc links them with pkgconf's --msvc-syntax too, CMake's IMPORTED_IMPLIB is the .lib."""
    lib, mingw = packed.lib_dir / "acme.lib", packed.lib_dir / "libacme.dll.a"
    assert packed.unique.startswith("acme-sw") and packed.unique.endswith(".dll")
    assert lib.read_bytes() == mingw.read_bytes()
    assert implib_imports(lib) == {packed.unique: SYMBOLS}
    assert sorted(p.name for p in packed.lib_dir.iterdir() if p.is_file()) == sorted(
        ["acme.lib", "libacme.dll.a", packed.unique])
    pkgconf = Path(sys.executable).with_name("pkgconf")
    env = {"PKG_CONFIG_PATH": str(packed.lib_dir / "pkgconfig")}
    libpath, name = run([pkgconf, "--msvc-syntax", "--libs", "acme"], env=env).stdout.split()
    assert Path(libpath.removeprefix("/libpath:")).resolve() == packed.lib_dir.resolve()
    assert (packed.lib_dir / name).read_bytes() == lib.read_bytes()  # link.exe's ACME.LIB
    directory, flag = run([pkgconf, "--libs", "acme"], env=env).stdout.split()
    assert (Path(directory.removeprefix("-L")).resolve(), flag) == (packed.lib_dir.resolve(), "-lacme")
    config = (packed.lib_dir / "cmake" / "acme" / "acmeConfig.cmake").read_text()
    assert 'IMPORTED_IMPLIB "${_sharewheel_acme_prefix}/lib/acme.lib"' in config


def _link_mingw(zig: PeZig, out: Path, source: str, libs: Path) -> Path:
    """CONSUMER_C compiled by zig, linked by MinGW's GNU ld with `-L LIBS -lacme` (which opens
    libacme.dll.a first), without a CRT."""
    ld = find_tool("x86_64-w64-mingw32-ld", why="linking against libacme.dll.a with MinGW's GNU ld needs "
                   "Debian's binutils-mingw-w64-x86-64")
    src, obj = out.with_suffix(".c"), out.with_suffix(".o")
    src.write_text(source)
    zig.cc("-c", "-o", obj, src, label=f"{out.name} (object)")
    run([ld, "--shared", "-e", "_DllMainCRTStartup", "-o", out, obj, f"-L{libs}", "-lacme"])
    return out


@pytest.mark.parametrize("linker", ["lld-link", "mingw-ld"])
def test_consumer_linked_against_the_import_library_runs_under_wine(
        linker: str, packed: Packed, pe_zig: PeZig, pe_host_exe: Path, wine, tmp_path: Path) -> None:
    """Acceptance 1: the consumer imports the unique name (pefile), and runs with the provider
    loaded by full path from another directory first (as the runtime hook does), not without."""
    consumer_dir = tmp_path / "consumer"
    consumer_dir.mkdir()
    out = consumer_dir / "_core.dll"
    if linker == "lld-link":
        link_dll_lld(pe_zig, out, CONSUMER_C, links=[packed.lib_dir / "acme.lib"])
    else:
        _link_mingw(pe_zig, out, CONSUMER_C, packed.lib_dir)
    assert pe_imports(out) == {"imports": [packed.unique], "delay_imports": []}
    assert sorted(pe_import_symbols(out)[packed.unique]) == SYMBOLS
    empty = tmp_path / "cwd"
    empty.mkdir()
    loaded = host_load(pe_host_exe, packed.lib_dir / packed.unique, out, cwd=empty)
    assert (loaded.returncode, loaded.stdout.strip()) == (0, str(pyd_result(3))), loaded
    alone = host_load(pe_host_exe, out, cwd=empty)
    assert alone.returncode == 2 and "LoadLibrary failed" in alone.stdout, alone


# --- the archive against llvm-dlltool's -----------------------------------------------------

REFERENCE_C = PROVIDER_C + "int hidden(void) { return 7; }\n"
REFERENCE_DEF = """\
EXPORTS
acme_add
acme_counter
acme_series
hidden @7 NONAME
forwarded = kernel32.GetTickCount
"""
ARCHS = {  # zig target, lld-link /machine, llvm-dlltool -m
    "x64": ("x86_64-windows-gnu", "x64", "i386:x86-64"),
    "arm64": ("aarch64-windows-gnu", "arm64", "arm64"),
    "x86": ("x86-windows-msvc", "x86", "i386"),
}


def _members(path: Path) -> list[bytes]:
    """The archive's object members (not the linker members or the longnames), in order; short
    import members with their hint zeroed (llvm-dlltool writes 0 without a .def ordinal)."""
    data, pos, found = path.read_bytes(), 8, []
    assert data[:8] == b"!<arch>\n"
    while pos < len(data):
        name, size = data[pos:pos + 16].strip(), int(data[pos + 48:pos + 58])
        body = data[pos + 60:pos + 60 + size]
        if name not in (b"/", b"//"):
            if body[:4] == b"\0\0\xff\xff":
                body = body[:16] + b"\0\0" + body[18:]
            found.append(body)
        pos += 60 + size + size % 2
    return found


@pytest.mark.parametrize("arch", list(ARCHS))
def test_members_match_llvm_dlltool(arch: str, pe_zig: PeZig, tmp_path: Path) -> None:
    """Every object member byte for byte as llvm-dlltool writes it for the DLL's exports (DATA
    from the section, forwarders and ordinal-only exports left out; on x86 the `_` decoration);
    the symbol index as llvm-nm reads it; the hints are the export name table's indexes."""
    target, machine, dlltool_machine = ARCHS[arch]
    (tmp_path / "src.c").write_text(REFERENCE_C)
    PeZig(pe_zig.cache_dir, target=target, timings=pe_zig.timings).cc(
        "-c", "-o", tmp_path / "src.obj", tmp_path / "src.c", cwd=tmp_path, label=f"reference ({arch})")
    (tmp_path / "exports.def").write_text(REFERENCE_DEF)
    dll = tmp_path / "acme.dll"
    run([find_lld_link(), "/dll", "/noentry", "/nodefaultlib", f"/machine:{machine}", f"/out:{dll}",
         f"/def:{tmp_path / 'exports.def'}", tmp_path / "src.obj"])
    ours = tmp_path / "ours.lib"
    ours.write_bytes(import_library(dll, "acme-sw1a2b3c4d.dll"))
    (tmp_path / "ref.def").write_text("LIBRARY acme-sw1a2b3c4d.dll\nEXPORTS\nacme_add\nacme_counter DATA\n"
                                      "acme_series\n")
    reference = tmp_path / "ref.lib"
    dlltool = find_tool("llvm-dlltool-16", "llvm-dlltool", why="the import library oracle is Debian's llvm-16")
    run([dlltool, "-m", dlltool_machine, "-d", tmp_path / "ref.def", "-l", reference])
    assert _members(ours) == _members(reference)
    nm = find_tool("llvm-nm-16", "llvm-nm", why="reading archive symbols needs Debian's llvm-16")
    assert run([nm, ours]).stdout.replace("ours.lib", "") == run([nm, reference]).stdout.replace("ref.lib", "")
    imports = run([find_tool("llvm-readobj-16", "llvm-readobj", why="llvm-16"), "--coff-imports", ours]).stdout
    assert imports.count("Type: data") == 1 and imports.count("Type: code") == 2
    hints = [struct.unpack_from("<H", m, 16)[0] for m in _raw_short_members(ours)]
    assert hints == [0, 1, 2]  # acme_add, acme_counter, acme_series in the sorted name table


def _raw_short_members(path: Path) -> list[bytes]:
    data, pos, found = path.read_bytes(), 8, []
    while pos < len(data):
        size = int(data[pos + 48:pos + 58])
        if data[pos + 60:pos + 64] == b"\0\0\xff\xff":
            found.append(data[pos + 60:pos + 60 + size])
        pos += 60 + size + size % 2
    return found


def test_real_dlls(pypi_download, tmp_path: Path) -> None:
    """scipy-openblas64's DLL (9,547 exports): the same `__imp_` symbols as the import library
    the project ships (GNU dlltool's long format, read by llvm-nm); h5py's hdf5.dll: HDF5's
    globals (`*_g`, `H5AC_BT`) are data, its functions code."""
    openblas = unpack(pypi_download("scipy-openblas64", "0.3.31.188.0", "win_amd64"), tmp_path / "openblas")
    lib_dir = openblas / "scipy_openblas64" / "lib"
    ours = tmp_path / "ours.lib"
    ours.write_bytes(import_library(lib_dir / "libscipy_openblas64_.dll", "libscipy_openblas64_.dll"))
    nm = find_tool("llvm-nm-16", "llvm-nm", why="reading archive symbols needs Debian's llvm-16")
    imp = lambda path: sorted(w for w in run([nm, path]).stdout.split() if w.startswith("__imp_"))
    theirs = imp(lib_dir / "libscipy_openblas64_.lib")
    assert len(theirs) == 9547 and imp(ours) == theirs
    h5py = unpack(pypi_download("h5py", "3.13.0", "win_amd64"), tmp_path / "h5py")
    machine, symbols = import_symbols(h5py / "h5py" / "hdf5.dll")
    kinds = {s.name: s.data for s in symbols}
    assert machine == 0x8664 and len(kinds) == 3767
    assert [name for name, data in kinds.items() if name.endswith("_g") and not data] == []
    assert kinds["H5T_NATIVE_INT_g"] and kinds["H5AC_BT"] and not kinds["H5open"] and not kinds["H5Fcreate"]


def test_deterministic(packed: Packed, tmp_path: Path) -> None:
    dll = packed.lib_dir / packed.unique
    assert import_library(dll, packed.unique) == import_library(dll, packed.unique)
    assert import_library(dll, packed.unique) == (packed.lib_dir / "acme.lib").read_bytes()


# --- bad input ------------------------------------------------------------------------------


def test_no_exports_or_no_pe_is_one_clear_error(pe_zig: PeZig, tmp_path: Path) -> None:
    text = tmp_path / "notes.dll"
    text.write_text("not a DLL\n")
    nothing = link_dll_lld(pe_zig, tmp_path / "nothing.dll", "static int unused;\n")
    for path, message in [(text, "notes.dll: not a PE file (DLL)"), (Path(sys.executable).resolve(), "not a PE file"),
                          (nothing, "nothing.dll: exports nothing by name")]:
        with pytest.raises(BinaryError, match=re.escape(message)):
            import_library(path, "acme-sw1a2b3c4d.dll")


def test_pack_of_a_dll_with_only_forwarded_exports_says_so(pe_zig: PeZig, tmp_path: Path) -> None:
    """Nothing a consumer can link by name: packed, with a warning, and no import library."""
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (tmp_path / "src.c").write_text("static int unused;\n")
    pe_zig.cc("-c", "-o", tmp_path / "src.obj", tmp_path / "src.c", cwd=tmp_path)
    (tmp_path / "exports.def").write_text("EXPORTS\nnow = kernel32.GetTickCount\n")
    built = tmp_path / "forwarder-built-long-name.dll"  # room for the longer unique export name
    run([find_lld_link(), "/dll", "/noentry", "/nodefaultlib", "/machine:x64", f"/out:{built}",
         f"/def:{tmp_path / 'exports.def'}", tmp_path / "src.obj"])
    shutil.copyfile(built, prefix / "bin" / "fwd.dll")
    result = sharewheel("pack", prefix, "--name", "fwd-native", "--version", "1.0", "-w", tmp_path / "wh")
    warning = one([line for line in result.stderr.splitlines() if "exports nothing by name" in line])
    assert "fwd-sw" in warning and "consumers cannot link against it" in warning, result.stderr
    with zipfile.ZipFile(one(list((tmp_path / "wh").glob("*.whl")))) as zf:
        assert not [n for n in zf.namelist() if n.endswith((".lib", ".dll.a"))]


def test_pack_of_a_dll_without_exports_is_one_clear_error(pe_zig: PeZig, tmp_path: Path) -> None:
    """Nothing to link against: pack refuses it, one line, exit 1, no wheel."""
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    link_dll_lld(pe_zig, prefix / "bin" / "res.dll", "static int unused;\n")
    result = sharewheel("pack", prefix, "--name", "res-native", "--version", "1.0", "-w", tmp_path / "wh", check=False)
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 1 and len(errors) == 1 and "exports nothing" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("wh/*.whl"))
