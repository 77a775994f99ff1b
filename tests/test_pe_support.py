"""Tests of the PE test infrastructure (tests/pe_support.py): the zig builders make the DLLs,
import libraries, extension module and host program they promise, the pefile readers see what is
there and catch what is broken, and under wine the loader behaves as DESIGN.md says — a module
already loaded under the DLL file name an import asks for satisfies that import, whatever
directory it came from — before these tools judge sharewheel's Windows support."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pefile  # type: ignore[import-untyped]
import pytest
from pe_support import (
    HOST_LOAD_FAILED,
    HOST_NO_INIT,
    HOST_OK,
    DllBuild,
    PeZig,
    WindowsPrefix,
    Wine,
    host_load,
    implib_imports,
    link_dll_lld,
    pe_checksum,
    pe_checksum_ok,
    pe_export_name,
    pe_exports,
    pe_header_room,
    pe_import_symbols,
    pe_imports,
    pe_machine,
    pe_section_problems,
    pe_sections_ok,
    pyd_result,
    windows_prefix,
    wine_path,
    wine_run,
)

# the session fixtures (pe_zig, windows_prefixes, pe_extra, pe_host_exe, pe_consumer_pyd, wine):
# registered once for the whole run
pytest_plugins = ["pe_support"]

PYD = "_core.cp311-win_amd64.pyd"
ERROR_MOD_NOT_FOUND = 126


def only_system_imports(names: list[str]) -> bool:
    """KERNEL32 and the UCRT's api sets: what zig's MinGW runtime links every binary to."""
    return all(n.upper() == "KERNEL32.DLL" or n.lower().startswith("api-ms-win-crt-")
               for n in names)


def layout(where: Path, *files: Path, names: dict[Path, str] | None = None) -> Path:
    """A fresh directory WHERE holding copies of FILES (renamed per `names`)."""
    where.mkdir(parents=True)
    for f in files:
        shutil.copyfile(f, where / (names or {}).get(f, f.name))
    return where


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """An empty current directory for wine runs."""
    d = tmp_path / "cwd"
    d.mkdir()
    return d


# ---------------------------------------------------------------------------------------------
# Builders


def test_windows_prefix_is_what_a_mingw_build_leaves(windows_prefixes: Callable[..., WindowsPrefix]):
    prefix = windows_prefixes("3.1.4")
    assert prefix.dll == prefix.root / "bin" / "libacme-3.dll"
    assert sorted(p.name for p in (prefix.root / "bin").iterdir()) == ["libacme-3.dll"]  # no .pdb
    assert sorted(p.name for p in (prefix.root / "lib").iterdir()) == ["libacme.dll.a",
                                                                        "pkgconfig"]
    assert prefix.header.read_text() == (Path(__file__).parents[1] / "examples/acme/acme.h"
                                         ).read_text()
    assert "Libs: -L${libdir} -lacme" in prefix.pc.read_text()

    assert pe_machine(prefix.dll) == "amd64"
    assert pe_export_name(prefix.dll) == "libacme-3.dll"
    # __declspec(dllexport) on acme.h's functions: nothing of the CRT is exported
    assert sorted(pe_exports(prefix.dll)) == ["acme_add", "acme_series", "acme_version"]
    imports = pe_imports(prefix.dll)
    assert imports["delay_imports"] == []
    assert "KERNEL32.dll" in imports["imports"] and only_system_imports(imports["imports"])
    # the import library names the DLL file, so a consumer linked with it imports libacme-3.dll
    assert implib_imports(prefix.implib) == {
        "libacme-3.dll": ["acme_add", "acme_series", "acme_version"]}
    assert pe_section_problems(prefix.dll) == []
    stored, computed = pe_checksum(prefix.dll)
    assert stored == 0 and computed != 0  # zig/lld leave the checksum unset


def test_windows_prefix_export_all_and_internal_name(pe_zig: PeZig, tmp_path: Path):
    prefix = windows_prefix(pe_zig, tmp_path / "prefix", "4.0.0", dll_name="acme.dll",
                            export_all=True, internal_name="acme-internal.dll")
    assert prefix.dll.name == "acme.dll" and prefix.series == 4
    assert pe_export_name(prefix.dll) == "acme-internal.dll"
    assert implib_imports(prefix.implib).keys() == {"acme-internal.dll"}
    exports = pe_exports(prefix.dll)
    # --export-all-symbols exports what lld's MinGW driver does not exclude: the CRT's too
    assert {"acme_add", "acme_series", "acme_version"} <= set(exports)
    assert len(exports) > 3


def test_extra_dll(pe_extra: DllBuild):
    assert pe_extra.dll.name == "extra.dll" and pe_extra.implib.name == "libextra.dll.a"
    assert pe_exports(pe_extra.dll) == ["extra_twice"]
    assert pe_export_name(pe_extra.dll) == "extra.dll"
    assert implib_imports(pe_extra.implib) == {"extra.dll": ["extra_twice"]}
    assert only_system_imports(pe_imports(pe_extra.dll)["imports"])


def test_consumer_pyd(pe_consumer_pyd: Path):
    assert pe_consumer_pyd.name == PYD
    assert sorted(p.name for p in pe_consumer_pyd.parent.iterdir()) == [PYD]
    assert pe_machine(pe_consumer_pyd) == "amd64"
    assert pe_exports(pe_consumer_pyd) == ["PyInit__core"]
    assert pe_export_name(pe_consumer_pyd) == PYD
    imports = pe_imports(pe_consumer_pyd)
    assert imports["delay_imports"] == []
    assert imports["imports"][:2] == ["libacme-3.dll", "extra.dll"]
    assert only_system_imports(imports["imports"][2:])  # no python3xx.dll
    symbols = pe_import_symbols(pe_consumer_pyd)
    assert sorted(symbols["libacme-3.dll"]) == ["acme_add", "acme_series"]
    assert symbols["extra.dll"] == ["extra_twice"]
    assert pe_section_problems(pe_consumer_pyd) == []


def test_host_exe(pe_host_exe: Path):
    assert sorted(p.name for p in pe_host_exe.parent.iterdir()) == ["host.exe"]
    assert pe_machine(pe_host_exe) == "amd64"
    assert only_system_imports(pe_imports(pe_host_exe)["imports"])
    pe = pefile.PE(str(pe_host_exe), fast_load=True)
    assert pe.OPTIONAL_HEADER.Subsystem == pefile.SUBSYSTEM_TYPE["IMAGE_SUBSYSTEM_WINDOWS_CUI"]
    assert not pe.FILE_HEADER.Characteristics & pefile.IMAGE_CHARACTERISTICS["IMAGE_FILE_DLL"]
    pe.close()
    assert pe_sections_ok(pe_host_exe)


# ---------------------------------------------------------------------------------------------
# Readers

DELAYED_C = """\
int extra_twice(int);
int acme_add(int, int);
__declspec(dllexport) int delayed(int x) { return extra_twice(acme_add(x, 1)); }
/* read, never run: a stand-in for the CRT's delay-load helper */
void *__delayLoadHelper2(const void *descriptor, void **slot) { (void)descriptor; return *slot; }
"""


def test_delay_imports_are_read(pe_zig: PeZig, windows_prefixes: Callable[..., WindowsPrefix],
                                pe_extra: DllBuild, tmp_path: Path):
    dll = link_dll_lld(pe_zig, tmp_path / "delayed.dll", DELAYED_C,
                       links=[windows_prefixes().implib, pe_extra.implib], delayload=["extra.dll"])
    assert pe_imports(dll) == {"imports": ["libacme-3.dll"], "delay_imports": ["extra.dll"]}
    assert pe_import_symbols(dll) == {"libacme-3.dll": ["acme_add"], "extra.dll": ["extra_twice"]}
    assert pe_exports(dll) == ["delayed"]
    assert pe_section_problems(dll) == []


def test_checksum(pe_zig: PeZig, windows_prefixes: Callable[..., WindowsPrefix], tmp_path: Path):
    zig_dll = windows_prefixes().dll
    assert not pe_checksum_ok(zig_dll)
    assert pe_checksum_ok(zig_dll, allow_zero=True)

    released = link_dll_lld(pe_zig, tmp_path / "released.dll",
                            "__declspec(dllexport) int one(void) { return 1; }\n", release=True)
    stored, _ = pe_checksum(released)
    assert stored != 0 and pe_checksum_ok(released)  # lld-link /release sets it

    fixed = tmp_path / "fixed.dll"
    shutil.copyfile(zig_dll, fixed)
    pe = pefile.PE(str(fixed))
    pe.OPTIONAL_HEADER.CheckSum = pe.generate_checksum()
    data = pe.write()
    pe.close()
    fixed.write_bytes(data)
    assert pe_checksum_ok(fixed)

    text = next(s for s in pefile.PE(str(fixed), fast_load=True).sections
                if s.Name.startswith(b".text"))
    broken = bytearray(fixed.read_bytes())
    broken[text.PointerToRawData + 16] ^= 0xFF
    fixed.write_bytes(bytes(broken))
    assert not pe_checksum_ok(fixed) and not pe_checksum_ok(fixed, allow_zero=True)


def _field_offset(path: Path, header: str, name: str) -> int:
    pe = pefile.PE(str(path), fast_load=True)
    try:
        return getattr(pe, header).get_field_absolute_offset(name)
    finally:
        pe.close()


def _patch(src: Path, dst: Path, offset: int, fmt: str, value: int) -> Path:
    data = bytearray(src.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    dst.write_bytes(bytes(data))
    return dst


def test_section_checks_catch_broken_layouts(windows_prefixes: Callable[..., WindowsPrefix],
                                             tmp_path: Path):
    good = windows_prefixes().dll
    assert pe_section_problems(good) == []
    pe = pefile.PE(str(good), fast_load=True)
    size_of_image, size_of_headers = pe.OPTIONAL_HEADER.SizeOfImage, pe.OPTIONAL_HEADER.SizeOfHeaders
    first, second = pe.sections[0], pe.sections[1]
    first_va_offset = first.get_field_absolute_offset("VirtualAddress")
    second_va_offset = second.get_field_absolute_offset("VirtualAddress")
    first_va, second_va = first.VirtualAddress, second.VirtualAddress
    last_raw_end = max(s.PointerToRawData + s.SizeOfRawData for s in pe.sections)
    pe.close()

    bad = _patch(good, tmp_path / "image.dll", _field_offset(good, "OPTIONAL_HEADER", "SizeOfImage"),
                 "<I", size_of_image + 0x1000)
    assert any("SizeOfImage" in p for p in pe_section_problems(bad))

    swapped = _patch(good, tmp_path / "swapped.dll", first_va_offset, "<I", second_va)
    swapped = _patch(swapped, swapped, second_va_offset, "<I", first_va)
    assert any("ascending and adjacent" in p for p in pe_section_problems(swapped))

    headers = _patch(good, tmp_path / "headers.dll",
                     _field_offset(good, "OPTIONAL_HEADER", "SizeOfHeaders"), "<I", 0x200)
    assert size_of_headers > 0x200
    assert any("past SizeOfHeaders" in p for p in pe_section_problems(headers))

    truncated = tmp_path / "truncated.dll"
    truncated.write_bytes(good.read_bytes()[:last_raw_end - 0x200])
    assert any("past the end of the file" in p for p in pe_section_problems(truncated))
    assert not pe_sections_ok(truncated)


def test_header_room(windows_prefixes: Callable[..., WindowsPrefix], pe_consumer_pyd: Path):
    for path in (windows_prefixes().dll, pe_consumer_pyd):
        data = path.read_bytes()
        (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
        nsections, = struct.unpack_from("<H", data, e_lfanew + 4 + 2)
        (optional_size,) = struct.unpack_from("<H", data, e_lfanew + 4 + 16)
        table_end = e_lfanew + 24 + optional_size + 40 * nsections
        (size_of_headers,) = struct.unpack_from("<I", data, e_lfanew + 24 + 60)
        assert not data[table_end:size_of_headers].strip(b"\0")
        assert pe_header_room(path) == size_of_headers - table_end
        assert pe_header_room(path) >= 40  # room for at least one more section header


# ---------------------------------------------------------------------------------------------
# Under wine: the loader facts sharewheel's Windows support rests on


def test_wine_run_refuses_dlls_next_to_the_program(wine: Wine, pe_host_exe: Path,
                                                   pe_extra: DllBuild, tmp_path: Path, cwd: Path):
    cluttered = layout(tmp_path / "cluttered", pe_extra.dll)
    with pytest.raises(AssertionError, match=r"current directory .* holds \['extra.dll'\]"):
        wine_run(pe_host_exe, cwd=cluttered)
    host_dir = layout(tmp_path / "host", pe_host_exe, pe_extra.dll)
    with pytest.raises(AssertionError, match=r"exe's directory .* holds \['extra.dll'\]"):
        wine_run(host_dir / "host.exe", cwd=cwd)
    assert wine.runs == [] or all("cluttered" not in r for r, _ in wine.runs)


def test_dependencies_beside_the_pyd(wine: Wine, pe_host_exe: Path, pe_consumer_pyd: Path,
                                     windows_prefixes: Callable[..., WindowsPrefix],
                                     pe_extra: DllBuild, tmp_path: Path, cwd: Path):
    b = layout(tmp_path / "B", pe_consumer_pyd, windows_prefixes().dll, pe_extra.dll)
    result = host_load(pe_host_exe, b / PYD, cwd=cwd)
    assert (result.returncode, result.stdout) == (HOST_OK, f"{pyd_result(3)}\n"), result


def test_plain_loadlibrary_does_not_search_the_pyds_directory(
        wine: Wine, pe_host_exe: Path, pe_consumer_pyd: Path,
        windows_prefixes: Callable[..., WindowsPrefix], pe_extra: DllBuild, tmp_path: Path,
        cwd: Path):
    """Without LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR (CPython's flag) the DLLs beside the pyd are not
    found: also proof that neither the current directory nor host.exe's holds them."""
    b = layout(tmp_path / "B", pe_consumer_pyd, windows_prefixes().dll, pe_extra.dll)
    result = host_load(pe_host_exe, b / PYD, cwd=cwd, flags=0)
    assert result.returncode == HOST_LOAD_FAILED, result
    assert result.stdout == f"LoadLibrary failed {wine_path(b / PYD)} {ERROR_MOD_NOT_FOUND}\n"


def test_missing_dependency_fails_with_126(wine: Wine, pe_host_exe: Path, pe_consumer_pyd: Path,
                                           pe_extra: DllBuild, tmp_path: Path, cwd: Path):
    b = layout(tmp_path / "B", pe_consumer_pyd, pe_extra.dll)  # libacme-3.dll is not there
    result = host_load(pe_host_exe, b / PYD, cwd=cwd)
    assert result.returncode == HOST_LOAD_FAILED, result
    assert result.stdout == f"LoadLibrary failed {wine_path(b / PYD)} {ERROR_MOD_NOT_FOUND}\n"


def test_preloaded_by_full_path_satisfies_the_import(
        wine: Wine, pe_host_exe: Path, pe_consumer_pyd: Path,
        windows_prefixes: Callable[..., WindowsPrefix], pe_extra: DllBuild, tmp_path: Path,
        cwd: Path):
    """DESIGN: 'If a DLL with the same module name is already loaded in memory, the system uses
    the loaded DLL, no matter which directory it is in'."""
    a = layout(tmp_path / "A", windows_prefixes().dll)
    b = layout(tmp_path / "B", pe_consumer_pyd, pe_extra.dll)
    result = host_load(pe_host_exe, a / "libacme-3.dll", b / PYD, cwd=cwd)
    assert (result.returncode, result.stdout) == (HOST_OK, f"{pyd_result(3)}\n"), result


def test_preloaded_module_wins_over_a_copy_beside_the_pyd(
        wine: Wine, pe_host_exe: Path, pe_consumer_pyd: Path,
        windows_prefixes: Callable[..., WindowsPrefix], pe_extra: DllBuild, tmp_path: Path,
        cwd: Path):
    series4 = windows_prefixes("4.0.0", dll_name="libacme-3.dll")
    a = layout(tmp_path / "A", series4.dll)
    b = layout(tmp_path / "B", pe_consumer_pyd, windows_prefixes().dll, pe_extra.dll)
    alone = host_load(pe_host_exe, b / PYD, cwd=cwd)
    assert (alone.returncode, alone.stdout) == (HOST_OK, f"{pyd_result(3)}\n"), alone
    preloaded = host_load(pe_host_exe, a / "libacme-3.dll", b / PYD, cwd=cwd)
    assert (preloaded.returncode, preloaded.stdout) == (HOST_OK, f"{pyd_result(4)}\n"), preloaded


def test_matching_is_on_the_file_name_not_the_export_name(
        wine: Wine, pe_zig: PeZig, pe_host_exe: Path, pe_consumer_pyd: Path,
        windows_prefixes: Callable[..., WindowsPrefix], pe_extra: DllBuild, tmp_path: Path,
        cwd: Path):
    b = layout(tmp_path / "B", pe_consumer_pyd, pe_extra.dll)

    # file name libacme-3.dll, export directory says acme-internal.dll: satisfies the import
    internal = windows_prefix(pe_zig, tmp_path / "internal", "3.1.4",
                              internal_name="acme-internal.dll")
    assert pe_export_name(internal.dll) == "acme-internal.dll"
    a = layout(tmp_path / "A", internal.dll)
    result = host_load(pe_host_exe, a / "libacme-3.dll", b / PYD, cwd=cwd)
    assert (result.returncode, result.stdout) == (HOST_OK, f"{pyd_result(3)}\n"), result

    # the real libacme-3.dll (export name libacme-3.dll) preloaded as other.dll: does not
    real = windows_prefixes().dll
    assert pe_export_name(real) == "libacme-3.dll"
    other = layout(tmp_path / "other", real, names={real: "other.dll"})
    result = host_load(pe_host_exe, other / "other.dll", b / PYD, cwd=cwd)
    assert result.returncode == HOST_LOAD_FAILED, result
    assert result.stdout == f"LoadLibrary failed {wine_path(b / PYD)} {ERROR_MOD_NOT_FOUND}\n"


def test_add_dll_directory(wine: Wine, pe_host_exe: Path, pe_consumer_pyd: Path,
                           windows_prefixes: Callable[..., WindowsPrefix], pe_extra: DllBuild,
                           tmp_path: Path, cwd: Path):
    """os.add_dll_directory (AddDllDirectory) also serves LOAD_LIBRARY_SEARCH_DEFAULT_DIRS loads:
    what the provider loader does for its own DLLs' dependencies."""
    a = layout(tmp_path / "A", windows_prefixes().dll)
    b = layout(tmp_path / "B", pe_consumer_pyd, pe_extra.dll)
    result = host_load(pe_host_exe, b / PYD, cwd=cwd, dll_dirs=[a])
    assert (result.returncode, result.stdout) == (HOST_OK, f"{pyd_result(3)}\n"), result


def test_host_reports_a_missing_init(wine: Wine, pe_host_exe: Path,
                                     windows_prefixes: Callable[..., WindowsPrefix],
                                     tmp_path: Path, cwd: Path):
    a = layout(tmp_path / "A", windows_prefixes().dll)
    result = host_load(pe_host_exe, a / "libacme-3.dll", cwd=cwd)
    assert result.returncode == HOST_NO_INIT, result
    assert result.stdout.startswith(f"GetProcAddress failed {wine_path(a / 'libacme-3.dll')} "
                                    f"PyInit__core ")


def test_module_names_match_case_insensitively(
        wine: Wine, pe_host_exe: Path, pe_consumer_pyd: Path,
        windows_prefixes: Callable[..., WindowsPrefix], pe_extra: DllBuild, tmp_path: Path,
        cwd: Path):
    """The pyd imports libacme-3.dll; a module loaded as LIBACME-3.DLL is the same name to the
    loader (so name comparisons in sharewheel must ignore case too, as delvewheel's do)."""
    real = windows_prefixes().dll
    a = layout(tmp_path / "A", real, names={real: "LIBACME-3.DLL"})
    b = layout(tmp_path / "B", pe_consumer_pyd, pe_extra.dll)
    result = host_load(pe_host_exe, a / "LIBACME-3.DLL", b / PYD, cwd=cwd)
    assert (result.returncode, result.stdout) == (HOST_OK, f"{pyd_result(3)}\n"), result
