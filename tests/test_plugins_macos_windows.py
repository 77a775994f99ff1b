"""The real macOS and Windows wheels of scipy-openblas64 (PyPI, pinned in conftest.PYPI_WHEELS) as
providers, through the shipped plugin (plugins/scipy-openblas.toml), for consumers built by zig.

Each consumer is an extension module calling `scipy_cblas_ddot64_` (ILP64: int64 n) linked
against the provider's own file: the macOS arm64 `libscipy_openblas64_.dylib` (install id
`@rpath/libscipy_openblas64_.dylib`), or on Windows amd64 `libscipy_openblas64_.lib`, the
import library of `libscipy_openblas64_.dll`. It is wrapped in a wheel, repaired with
`--provider <the PyPI wheel>` and checked as tests/test_macos.py and tests/test_windows.py check
their consumers: load commands / import tables, LC_RPATH fallback, code signature (macho_support's
independent verifier), PE checksum and sections, Requires-Dist, the hook, pip installs; then the
dyld oracle on split installs (macOS) and the Windows loader under wine (a LoadLibrary host:
provider DLL in one directory, consumer in another).
"""

from __future__ import annotations

import ast
import json
import posixpath
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    PYPI_WHEELS,
    BuildEnv,
    manifest_of,
    pip_target_for,
    prebuilt_wheel,
    repair,
    requires_dist,
    sharewheel,
    unpack,
)
from macho_support import build_extension, dyld_resolves, load_commands, verify_code_signature
from packaging.specifiers import SpecifierSet
from pe_support import (
    build_pyd,
    host_load,
    pe_checksum_ok,
    pe_export_name,
    pe_exports,
    pe_import_symbols,
    pe_imports,
    pe_machine,
    pe_sections_ok,
)

pytest_plugins = ["macho_support", "pe_support"]

DISTRIBUTION = "scipy-openblas64"
VERSION = "0.3.31.188.0"
SPECIFIER = SpecifierSet("==0.3.*,>=0.3.31.188.0")  # abi = "minor" in the plugin
MODULE = "scipy_openblas64"
PACKAGE = "blas_consumer"
SYMBOL = "scipy_cblas_ddot64_"

MAC_KEY, WIN_KEY = "scipy-openblas64-macos-arm64", "scipy-openblas64-windows"
MAC_DYLIB = "scipy_openblas64/lib/libscipy_openblas64_.dylib"
MAC_INSTALL_NAME = "@rpath/libscipy_openblas64_.dylib"
MAC_PLATFORM = "macosx_11_0_arm64"  # zig's arm64 target is macos.11.0
MAC_EXT = "_core.cpython-311-darwin.so"
WIN_DLL = "scipy_openblas64/lib/libscipy_openblas64_.dll"
WIN_IMPLIB = "scipy_openblas64/lib/libscipy_openblas64_.lib"
WIN_PLATFORM = "win_amd64"
PYD = "_core.cp311-win_amd64.pyd"

# x·y of (1, 2, 3, 4) and (10, 100, 1000, 10000): each digit shows one term was summed
DDOT_RESULT = 43210
DDOT_SOURCE = r"""
#include <stdint.h>
/* cblas_ddot of scipy-openblas64: ILP64 (blasint = int64_t), symbols prefixed scipy_, suffixed 64_ */
double scipy_cblas_ddot64_(int64_t n, const double *x, int64_t incx, const double *y, int64_t incy);
#ifdef _WIN32
/* no Python C-API (no python3xx.dll): the loader host calls PyInit__core and prints the number */
#define EXPORT __declspec(dllexport)
#define RESULT(v) ((void *)(intptr_t)(v))
#else
/* Python's C-API left undefined (-undefined dynamic_lookup), as setuptools links extensions */
#define EXPORT __attribute__((visibility("default")))
extern void *PyLong_FromLong(long);
#define RESULT(v) PyLong_FromLong(v)
#endif
EXPORT void *PyInit__core(void) {
    static const double x[4] = {1, 2, 3, 4}, y[4] = {10, 100, 1000, 10000};
    int64_t n = 4;
    return RESULT((long)scipy_cblas_ddot64_(n, x, 1, y, 1));
}
"""

# What a Windows extension may import besides the provider: the OS and the UCRT.
WINDOWS_SYSTEM = re.compile(r"^(kernel32\.dll|api-ms-win-crt-[a-z]+-l1-1-0\.dll)$", re.IGNORECASE)
# Names a vendored copy of OpenBLAS or of its Fortran runtime would carry.
OPENBLAS_FILES = re.compile(r"openblas|gfortran|quadmath|gcc_s", re.IGNORECASE)


@dataclass(frozen=True)
class BlasCase:
    system: str           # "macos" or "windows"
    provider: Path        # the PyPI wheel
    library: Path         # the provider's library, in the unpacked provider wheel
    library_path: str     # ... its path in the wheel
    binary: str           # the extension's path in the consumer wheel
    needed: str           # what the repaired extension must name (install name / DLL name)
    extension: Path       # the zig-built extension, before repair
    input: Path
    output: Path

    @property
    def install_platform(self) -> str:
        return PYPI_WHEELS[MAC_KEY if self.system == "macos" else WIN_KEY][2]


@pytest.fixture(scope="module")
def mac_blas(tmp_path_factory, zig, pypi_wheel, build_env: BuildEnv) -> BlasCase:
    base = tmp_path_factory.mktemp("openblas-mac")
    provider = pypi_wheel(MAC_KEY)
    library = unpack(provider, base / "provider") / MAC_DYLIB
    # linked as scipy-openblas's pkg-config says (`${libdir}/<file> -Wl,-rpath,${libdir}`):
    # an absolute build-machine rpath, which repair must drop
    extension = build_extension(zig, "arm64", base / "ext", source=DDOT_SOURCE, links=[library],
                                rpaths=[str(library.parent)])
    wheel = prebuilt_wheel(build_env, base, extension, MAC_PLATFORM, package=PACKAGE)
    output = repair(wheel, base / "wheelhouse", "--provider", provider)
    return BlasCase("macos", provider, library, MAC_DYLIB, f"{PACKAGE}/{MAC_EXT}", MAC_INSTALL_NAME,
                    extension, wheel, output)


@pytest.fixture(scope="module")
def win_blas(tmp_path_factory, pe_zig, pypi_wheel, build_env: BuildEnv) -> BlasCase:
    base = tmp_path_factory.mktemp("openblas-win")
    provider = pypi_wheel(WIN_KEY)
    tree = unpack(provider, base / "provider")
    extension = build_pyd(pe_zig, base / "pyd" / PYD, links=[tree / WIN_IMPLIB], include_dirs=[],
                          source=DDOT_SOURCE)
    wheel = prebuilt_wheel(build_env, base, extension, WIN_PLATFORM, package=PACKAGE)
    output = repair(wheel, base / "wheelhouse", "--provider", provider)
    return BlasCase("windows", provider, tree / WIN_DLL, WIN_DLL, f"{PACKAGE}/{PYD}",
                    posixpath.basename(WIN_DLL), extension, wheel, output)


@pytest.fixture(params=["macos", "windows"])
def blas_case(request) -> BlasCase:
    return request.getfixturevalue({"macos": "mac_blas", "windows": "win_blas"}[request.param])


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def _provider_records(hook_source: str) -> list[tuple]:
    """The hook module's table: (package, distribution, requirement, files, strategy, lib_dirs) of
    each provider it loads, read from its literal `PROVIDERS = (...)`."""
    [records] = [ast.literal_eval(node.value) for node in ast.parse(hook_source).body
                 if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["PROVIDERS"]]
    return list(records)


def test_repaired_wheel_links_vendors_nothing_and_requires_the_provider(blas_case: BlasCase,
                                                                       tmp_path: Path) -> None:
    """What both systems share: nothing of OpenBLAS vendored, the link recorded, Requires-Dist
    from the plugin's `abi = "minor"`, and a hook that imports scipy_openblas64."""
    case = blas_case
    assert case.library_path in _names(case.provider)
    names = _names(case.output)
    assert case.binary in names
    assert not [n for n in names if OPENBLAS_FILES.search(n)], names
    assert not [n for n in names if "/.dylibs/" in n or n.split("/")[0].endswith(".libs")], names

    [requirement] = requires_dist(case.output)
    assert requirement.name == DISTRIBUTION and requirement.specifier == SPECIFIER

    manifest = manifest_of(case.output)
    assert manifest["vendored"] == [] and manifest["provides"] is None
    [link] = manifest["links"]
    assert link["binary"] == case.binary and link["provider"] == DISTRIBUTION
    assert link["version"] == VERSION and link["needed"] == posixpath.basename(case.library_path)
    assert SpecifierSet(link["requirement"].removeprefix(DISTRIBUTION)) == SPECIFIER

    tree = unpack(case.output, tmp_path / "out")
    init = (tree / PACKAGE / "__init__.py").read_text()
    hook_import = init.index("_sharewheel_providers")
    assert hook_import < init.index(f"from {PACKAGE}._core import")  # the hook runs first
    records = _provider_records((tree / PACKAGE / "_sharewheel_providers.py").read_text())
    # load = "import": the hook imports the provider's package (which loads the library itself),
    # it does not load files by path
    assert [(strategy, package, distribution) for package, distribution, _, _, strategy, _ in records] == [
        ("import", MODULE, DISTRIBUTION)], records
    assert SpecifierSet(records[0][2].removeprefix(DISTRIBUTION)) == SPECIFIER


def test_hook_imports_scipy_openblas64_and_explains_when_it_is_missing(blas_case: BlasCase, run_env,
                                                                      build_env: BuildEnv,
                                                                      tmp_path: Path) -> None:
    """The hook is plain Python: run it here. Plugin load = import means it imports the package
    `scipy_openblas64` from sys.path (a stand-in here, since the real one loads a Mach-O / PE
    file with ctypes); without one it names the requirement to install. The hook module is run
    in its installed package, without the package's `__init__.py` (which would then import the
    Mach-O / PE extension)."""
    site = pip_target_for(build_env, blas_case.output, tmp_path / "site", blas_case.install_platform)
    hook = site / PACKAGE / "_sharewheel_providers.py"
    stand_in = tmp_path / "provider" / MODULE
    stand_in.mkdir(parents=True)
    (stand_in / "__init__.py").write_text("IMPORTED_BY_THE_HOOK = True\n")
    code = f"""
        import importlib.util, os, sys, types
        package = types.ModuleType({PACKAGE!r})
        package.__path__ = [{str(hook.parent)!r}]
        sys.modules[{PACKAGE!r}] = package
        spec = importlib.util.spec_from_file_location({PACKAGE + "._sharewheel_providers"!r}, {str(hook)!r})
        try:
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        except ImportError as e:
            print("ImportError:", e)
            raise SystemExit(0)
        module = sys.modules[{MODULE!r}]
        print(module.IMPORTED_BY_THE_HOOK, os.path.dirname(module.__file__))
        """
    found = run_env.run(code, [site, tmp_path / "provider"]).stdout.split()
    assert found == ["True", str(stand_in)]
    missing = run_env.run(code, [site]).stdout
    assert missing.startswith("ImportError:"), missing
    assert DISTRIBUTION in missing and "pip install 'scipy-openblas64==0.3.*,>=0.3.31.188.0'" in missing


def test_show_finds_the_provided_library(blas_case: BlasCase) -> None:
    report = json.loads(sharewheel("show", blas_case.input, "--provider", blas_case.provider, "--json").stdout)
    [needs] = report["binaries"].values()
    [provided] = [n for n in needs if n["state"] == "provided"]
    assert provided["name"] == blas_case.needed and provided["provider"] == DISTRIBUTION
    assert provided["version"] == VERSION
    assert provided["unique_name"] == posixpath.basename(blas_case.library_path)
    assert all(n["state"] == "policy" for n in needs if n is not provided), needs


# ---------------------------------------------------------------------------------------------
# macOS

def test_macos_load_command_names_the_provider_dylib(mac_blas: BlasCase, tmp_path: Path) -> None:
    case = mac_blas
    provided = load_commands(case.library)["arm64"]
    assert provided["id"] == MAC_INSTALL_NAME and provided["filetype"] == 6  # MH_DYLIB
    before = load_commands(case.extension)
    assert sorted(before) == ["arm64"]
    assert MAC_INSTALL_NAME in before["arm64"]["dylibs"]
    assert before["arm64"]["rpaths"] == [str(case.library.parent)]

    assert case.output.name == f"{PACKAGE}-1.0.0-cp311-cp311-{MAC_PLATFORM}.whl"
    tree = unpack(case.output, tmp_path / "out")
    extension = tree / case.binary
    after = load_commands(extension)
    assert sorted(after) == ["arm64"]
    info = after["arm64"]
    # the provider's install name, which is the provider's file name under @rpath
    assert sorted(info["dylibs"]) == sorted(["/usr/lib/libSystem.B.dylib", MAC_INSTALL_NAME])
    assert MAC_INSTALL_NAME == "@rpath/" + posixpath.basename(MAC_DYLIB)
    # the build-machine rpath is gone; the one-site-packages fallback leads to scipy_openblas64/lib
    [rpath] = info["rpaths"]
    assert rpath.startswith("@loader_path/")
    target = posixpath.normpath(posixpath.join(posixpath.dirname(case.binary), rpath[len("@loader_path/"):]))
    assert target == posixpath.dirname(MAC_DYLIB) == "scipy_openblas64/lib"
    assert verify_code_signature(extension) == []


def test_macos_dyld_resolves_split_and_shared_installs(mac_blas: BlasCase, build_env: BuildEnv,
                                                      tmp_path: Path) -> None:
    """The dyld-rule oracle on pip installs: split (provider in A, consumer in B) only with the
    provider preloaded, as importing scipy_openblas64 does (ctypes.CDLL by full path); one
    site-packages by the LC_RPATH fallback alone."""
    case = mac_blas
    platform = case.install_platform
    site_a = pip_target_for(build_env, case.provider, tmp_path / "A", platform)
    site_b = pip_target_for(build_env, case.output, tmp_path / "B", platform)
    provided = site_a / MAC_DYLIB
    extension = site_b / case.binary
    assert provided.is_file() and extension.is_file()
    assert verify_code_signature(extension) == []  # pip copies the file as it is

    preloaded = dyld_resolves([site_b], preloaded=[provided])
    assert preloaded.ok, str(preloaded)
    link = preloaded.link(extension, MAC_INSTALL_NAME)
    assert link.how == "by-install-name" and link.target == provided.resolve()
    # the provider's own Fortran runtime (its .dylibs) resolves from site A
    runtime = preloaded.link(provided, "@loader_path/../.dylibs/libgfortran.5.dylib")
    assert runtime.how == "by-path"
    assert runtime.target == (site_a / MODULE / ".dylibs" / "libgfortran.5.dylib").resolve()

    without = dyld_resolves([site_b])
    assert not without.ok and without.how(extension, MAC_INSTALL_NAME) is None

    site_c = pip_target_for(build_env, case.provider, tmp_path / "C", platform)
    pip_target_for(build_env, case.output, site_c, platform)
    together = dyld_resolves([site_c])
    assert together.ok, str(together)
    link = together.link(site_c / case.binary, MAC_INSTALL_NAME)
    assert link.how == "by-rpath" and link.target == (site_c / MAC_DYLIB).resolve()


# ---------------------------------------------------------------------------------------------
# Windows

def _imported(path: Path) -> list[str]:
    names = pe_imports(path)
    return [*names["imports"], *names["delay_imports"]]


def test_windows_import_table_names_the_provider_dll(win_blas: BlasCase, tmp_path: Path) -> None:
    case = win_blas
    dll_name = posixpath.basename(WIN_DLL)
    assert pe_machine(case.library) == "amd64" and pe_export_name(case.library) == dll_name
    assert SYMBOL in pe_exports(case.library)
    assert dll_name in _imported(case.extension)  # what the import library named

    assert case.output.name == case.input.name  # delvewheel does not retag
    tree = unpack(case.output, tmp_path / "out")
    pyd = tree / case.binary
    imported = _imported(pyd)
    assert dll_name in imported
    assert pe_import_symbols(pyd)[dll_name] == [SYMBOL]
    assert [n for n in imported if n != dll_name and not WINDOWS_SYSTEM.match(n)] == [], imported
    assert pe_machine(pyd) == "amd64"
    assert pe_checksum_ok(pyd) and pe_sections_ok(pyd)
    init = (tree / PACKAGE / "__init__.py").read_text()
    assert "_delvewheel_patch" not in init  # nothing vendored: no delvewheel patch


def _host_numbers(result) -> list[str]:
    # Loading the OpenBLAS DLL alone puts the process's stdout into binary mode (its statically
    # linked libgfortran calls _setmode as it initialises), so the host's wprintf then writes
    # UTF-16LE: drop the NULs. (Without the DLL loaded, the output is plain.)
    return result.stdout.replace("\0", "").split()


def test_windows_loader_runs_the_consumer_through_the_preloaded_provider(win_blas: BlasCase, wine, pe_host_exe,
                                                                         build_env: BuildEnv,
                                                                         tmp_path: Path) -> None:
    """Under wine: the provider DLL is loaded by full path from pip's install in A (what importing
    scipy_openblas64 does with ctypes), then the repaired extension from B resolves its import by
    name and the call goes through OpenBLAS."""
    case = win_blas
    site_a = pip_target_for(build_env, case.provider, tmp_path / "A", case.install_platform)
    site_b = pip_target_for(build_env, case.output, tmp_path / "B", case.install_platform)
    provided = site_a / WIN_DLL
    pyd = site_b / case.binary
    assert provided.is_file() and pyd.is_file()
    empty = tmp_path / "cwd"
    empty.mkdir()
    loaded = host_load(pe_host_exe, provided, pyd, cwd=empty)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert _host_numbers(loaded) == [str(DDOT_RESULT)]
    without = host_load(pe_host_exe, pyd, cwd=empty)
    assert without.returncode != 0 and "126" in without.stdout, without.stdout  # ERROR_MOD_NOT_FOUND
