"""PE (Windows) test infrastructure: real DLLs, extension modules and a loader host built on
Linux with zig, run under wine, and independent checks of PE files.

Builders (`zig cc -target x86_64-windows-gnu`, MinGW-w64 with the UCRT):

- `windows_prefix(zig, PREFIX)`: examples/acme as a MinGW build leaves it: `bin/libacme-3.dll`,
  `lib/libacme.dll.a` (its import library), `include/acme.h`, `lib/pkgconfig/acme.pc`;
- `build_dll(zig, OUT, SOURCE)`: any DLL with its import library (`EXTRA_C`: `extra.dll`);
- `build_pyd(zig, OUT, links=[import libraries])`: `_core.cp311-win_amd64.pyd`, whose
  `PyInit__core` calls through libacme and extra.dll and returns `series * 1000 + 42` as a plain
  integer (no Python C-API, no python3xx.dll): any process can load it and call it;
- `build_host_exe(zig, OUT)`: `host.exe DLL... PYD` loads each argument as Python does
  (`LoadLibraryExW` with LOAD_LIBRARY_SEARCH_DEFAULT_DIRS | LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR: what
  importing an extension and ctypes with a full path use), then calls `PyInit__core` of the last
  one and prints its result (see `HOST_C` for options and exit codes);
- `link_dll_lld(...)`: Debian's `lld-link-16` for what zig cannot make (delay imports, a PE
  checksum).

Wine: `wine_run(exe, *args, cwd=...)` runs a program in the session's WINEPREFIX (created once
by the `wine` fixture; WINEDEBUG=-all, no display); Path arguments become `Z:\\...` paths.
`host_load(host_exe, *dlls, cwd=...)` runs the host. Keep DLLs that must be found only by
preloading out of the current directory and the exe's directory: `wine_run` refuses to run when
either holds a `.dll`/`.pyd` (pass `isolated=False` to allow it).

Readers with pefile (independent of sharewheel, which edits PE files through delvewheel's code):
`pe_imports`, `pe_import_symbols`, `pe_exports`, `pe_export_name`, `pe_machine`,
`pe_checksum`/`pe_checksum_ok`, `pe_section_problems`/`pe_sections_ok`, `pe_header_room`; and
`implib_imports` reads an import library (ar archive of short import members) with `struct`.

Fixtures (session-scoped): `pe_zig`, `windows_prefixes`, `pe_extra`, `pe_host_exe`,
`pe_consumer_pyd`, `wine`. Put `pytest_plugins = ["pe_support"]` in each test module that uses
them (as for macho_support; importing the fixtures by name into several modules would build
everything once per module). The first Windows link of a run compiles MinGW's runtime (75-90 s);
every build shares one ZIG_GLOBAL_CACHE_DIR for the run (`SHAREWHEEL_TEST_ZIG_CACHE` names a
directory to keep it across runs). `wine` and `pe_zig` fail, never skip, when wine or ziglang is
missing. The terminal summary reports how long zig builds and wine runs took.
(PYTEST_DONT_REWRITE: test modules import this module before `pytest_plugins` registers it, and
it raises its own AssertionErrors with messages.)
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import c_source_file, find_tool

__all__ = [
    "ACME_DIR",
    "EXTRA_C",
    "HOST_ADD_DLL_DIR_FAILED",
    "HOST_C",
    "HOST_LOAD_FAILED",
    "HOST_NO_INIT",
    "HOST_OK",
    "HOST_USAGE",
    "LOAD_LIBRARY_SEARCH_DEFAULT_DIRS",
    "LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR",
    "PYTHON_LOAD_FLAGS",
    "WIN_TARGET",
    "DllBuild",
    "PeZig",
    "WindowsPrefix",
    "Wine",
    "build_dll",
    "build_host_exe",
    "build_pyd",
    "find_lld_link",
    "find_wine",
    "host_load",
    "implib_imports",
    "link_dll_lld",
    "pe_checksum",
    "pe_checksum_ok",
    "pe_consumer_pyd",
    "pe_export_name",
    "pe_exports",
    "pe_extra",
    "pe_header_room",
    "pe_host_exe",
    "pe_import_symbols",
    "pe_imports",
    "pe_machine",
    "pe_section_problems",
    "pe_sections_ok",
    "pe_zig",
    "pyd_result",
    "pyd_source",
    "windows_prefix",
    "windows_prefixes",
    "wine",
    "wine_path",
    "wine_run",
]

ACME_DIR = Path(__file__).resolve().parents[1] / "examples" / "acme"
WIN_TARGET = "x86_64-windows-gnu"

LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR = 0x100
LOAD_LIBRARY_SEARCH_DEFAULT_DIRS = 0x1000
# what CPython uses to import an extension module and ctypes for a path (Python >= 3.8)
PYTHON_LOAD_FLAGS = LOAD_LIBRARY_SEARCH_DEFAULT_DIRS | LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR

HOST_OK, HOST_LOAD_FAILED, HOST_NO_INIT, HOST_ADD_DLL_DIR_FAILED, HOST_USAGE = 0, 2, 3, 4, 64

EXTRA_C = "__declspec(dllexport) int extra_twice(int x) { return 2 * x; }\n"

HOST_C = r"""
/* host.exe [--flags=N] [--add-dll-dir=DIR] DLL... : what Python and sharewheel's loader do.
   Each DLL argument (a full path) is loaded in order with LoadLibraryExW(path, NULL, flags);
   flags start as LOAD_LIBRARY_SEARCH_DEFAULT_DIRS | LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR (CPython's
   flags for extension modules and for ctypes with a path); --flags=N changes them for the
   following arguments, --flags=0 means plain LoadLibraryW. --add-dll-dir=DIR calls
   AddDllDirectory (os.add_dll_directory). Then PyInit__core of the last DLL is called and its
   result printed as a decimal number.
   Exit: 0 ok; 2 "LoadLibrary failed <path> <GetLastError()>"; 3 "GetProcAddress failed <path>
   PyInit__core <error>"; 4 "AddDllDirectory failed <dir> <error>"; 64 usage. */
#include <windows.h>
#include <stdio.h>
#include <wchar.h>

typedef void *(*init_fn)(void);

int wmain(int argc, wchar_t **argv) {
    DWORD flags = LOAD_LIBRARY_SEARCH_DEFAULT_DIRS | LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR;
    HMODULE last = NULL;
    const wchar_t *last_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (wcsncmp(argv[i], L"--flags=", 8) == 0) {
            flags = (DWORD)wcstoul(argv[i] + 8, NULL, 0);
            continue;
        }
        if (wcsncmp(argv[i], L"--add-dll-dir=", 14) == 0) {
            if (!AddDllDirectory(argv[i] + 14)) {
                wprintf(L"AddDllDirectory failed %ls %lu\n", argv[i] + 14, GetLastError());
                return 4;
            }
            continue;
        }
        HMODULE h = flags ? LoadLibraryExW(argv[i], NULL, flags) : LoadLibraryW(argv[i]);
        if (!h) {
            wprintf(L"LoadLibrary failed %ls %lu\n", argv[i], GetLastError());
            return 2;
        }
        last = h;
        last_path = argv[i];
    }
    if (!last) {
        wprintf(L"usage: host [--flags=N] [--add-dll-dir=DIR] DLL... (the last exports PyInit__core)\n");
        return 64;
    }
    FARPROC init = GetProcAddress(last, "PyInit__core");
    if (!init) {
        wprintf(L"GetProcAddress failed %ls PyInit__core %lu\n", last_path, GetLastError());
        return 3;
    }
    wprintf(L"%lld\n", (long long)(INT_PTR)((init_fn)(void *)init)());
    return 0;
}
"""


# ---------------------------------------------------------------------------------------------
# zig

@dataclass
class PeZig:
    """`python -m ziglang cc -target x86_64-windows-gnu -O2` with one cache for the whole run;
    `timings` records (output name, seconds) of each call (the first link of a run builds
    MinGW's runtime)."""

    cache_dir: Path
    target: str = WIN_TARGET
    timings: list[tuple[str, float]] = field(default_factory=list)

    def cc(self, *args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
           label: str = "") -> subprocess.CompletedProcess[str]:
        """Run `zig cc -target TARGET -O2 ARGS...`; AssertionError with zig's output on failure."""
        cmd = [sys.executable, "-m", "ziglang", "cc", "-target", self.target, "-O2",
               *map(str, args)]
        env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(self.cache_dir),
               "ZIG_LOCAL_CACHE_DIR": str(self.cache_dir / "local")}
        start = time.monotonic()
        result = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True,
                                stdin=subprocess.DEVNULL, check=False)
        self.timings.append((label or _output_name(args), time.monotonic() - start))
        if result.returncode != 0:
            raise AssertionError(f"zig cc failed ({result.returncode}): {' '.join(cmd)}\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result


def _output_name(args: Sequence[str | os.PathLike[str]]) -> str:
    items = [str(a) for a in args]
    if "-o" in items and items.index("-o") + 1 < len(items):
        return Path(items[items.index("-o") + 1]).name
    return "?"


_ZIG_TIMINGS: list[list[tuple[str, float]]] = []


@pytest.fixture(scope="session")
def pe_zig(tmp_path_factory: pytest.TempPathFactory) -> PeZig:
    """zig cc for x86_64-windows-gnu with one cache for the run (or $SHAREWHEEL_TEST_ZIG_CACHE).
    Fails, never skips, when ziglang is missing."""
    if importlib.util.find_spec("ziglang") is None:
        pytest.fail(f"the `ziglang` package is not importable from {sys.executable}: the Windows "
                    f"tests need it to build PE files (pip install ziglang)", pytrace=False)
    kept = os.environ.get("SHAREWHEEL_TEST_ZIG_CACHE")
    from conftest import run_shared_dir

    cache = Path(kept) if kept else run_shared_dir(tmp_path_factory, "zig-cache-windows")
    cache.mkdir(parents=True, exist_ok=True)
    zig = PeZig(cache)
    _ZIG_TIMINGS.append(zig.timings)
    return zig


# ---------------------------------------------------------------------------------------------
# Builders

@dataclass(frozen=True)
class DllBuild:
    dll: Path
    implib: Path



def build_dll(zig: PeZig, out: str | os.PathLike[str], source: str | os.PathLike[str], *,
              implib: str | os.PathLike[str] | None = None, internal_name: str | None = None,
              links: Sequence[str | os.PathLike[str]] = (),
              include_dirs: Sequence[str | os.PathLike[str]] = (),
              defines: dict[str, str] | None = None, export_all: bool = False,
              extra_args: Sequence[str | os.PathLike[str]] = ()) -> DllBuild:
    """A DLL at OUT (`zig cc -shared`) and its import library (`--out-implib`) at `implib`
    (default: `lib<stem>.dll.a` beside OUT, as MinGW names it).

    `source`: a C file Path or C text (str); export with `__declspec(dllexport)` in it, or
    `export_all` (`-Wl,--export-all-symbols`: lld then also exports the CRT's `_CRT_INIT`,
    `atexit`, `__mingw_module_is_dll`). `links`: import libraries (`.dll.a`) or objects, by path:
    zig's `-lNAME` looks for NAME.dll, NAME.lib, libNAME.a, never libNAME.dll.a.
    `internal_name`: link as that file name (the export directory's Name and the import
    library's DLL name), then copy to OUT under its own name. Only the DLL and the import
    library are written; zig's .pdb stays in a scratch directory.
    """
    out = Path(out)
    implib_path = Path(implib) if implib is not None else out.with_name(f"lib{out.stem}.dll.a")
    out.parent.mkdir(parents=True, exist_ok=True)
    implib_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pe-build-") as tmp:
        scratch = Path(tmp)
        src = c_source_file(source, scratch, Path(internal_name or out.name).stem)
        built = scratch / (internal_name or out.name)
        built_lib = scratch / "implib.dll.a"
        zig.cc("-shared", "-o", built, f"-Wl,--out-implib,{built_lib}", src,
               *(f"-I{d}" for d in include_dirs),
               *(f"-D{k}={v}" for k, v in (defines or {}).items()),
               *(["-Wl,--export-all-symbols"] if export_all else []), *extra_args, *links,
               cwd=scratch, label=out.name)
        shutil.copyfile(built, out)
        shutil.copyfile(built_lib, implib_path)
    return DllBuild(out, implib_path)


def _dllexport_header(header: Path) -> str:
    """The function prototypes of HEADER again, with `__declspec(dllexport)`: force-included
    (`-include`) it makes a library export its API as a Windows build would, without editing
    the sources."""
    protos = re.findall(r"^\s*([A-Za-z_][^;#/{}()]*\b\w+\s*\([^;()]*\))\s*;", header.read_text(),
                        re.MULTILINE)
    if not protos:
        raise AssertionError(f"{header}: no function prototypes found")
    return "".join(f"__declspec(dllexport) {p};\n" for p in protos)


@dataclass(frozen=True)
class WindowsPrefix:
    """examples/acme built for Windows into a prefix, as a MinGW (libtool-style) build leaves it."""

    root: Path
    version: str
    dll_name: str

    @property
    def major(self) -> str:
        return self.version.split(".")[0]

    @property
    def series(self) -> int:
        return int(self.major)

    @property
    def dll(self) -> Path:
        return self.root / "bin" / self.dll_name

    @property
    def implib(self) -> Path:
        return self.root / "lib" / "libacme.dll.a"

    @property
    def header(self) -> Path:
        return self.root / "include" / "acme.h"

    @property
    def include_dir(self) -> Path:
        return self.root / "include"

    @property
    def pc(self) -> Path:
        return self.root / "lib" / "pkgconfig" / "acme.pc"


def windows_prefix(zig: PeZig, prefix: str | os.PathLike[str], version: str = "3.1.4", *,
                   dll_name: str | None = None, export_all: bool = False,
                   internal_name: str | None = None) -> WindowsPrefix:
    """Build examples/acme VERSION into PREFIX: `bin/libacme-MAJOR.dll` (libtool's name; or
    `dll_name`, e.g. "acme.dll" as CMake names it), `lib/libacme.dll.a`, `include/acme.h` and
    `lib/pkgconfig/acme.pc` (absolute prefix). Exports acme.h's functions with
    `__declspec(dllexport)` (a force-included header), or everything with `export_all`.
    `internal_name`: link it as that name (its export directory's Name and the DLL name in the
    import library), then store it as `bin/<dll_name>`."""
    root = Path(prefix)
    major = version.split(".")[0]
    result = WindowsPrefix(root, version, dll_name or f"libacme-{major}.dll")
    for sub in ("bin", "lib/pkgconfig", "include"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pe-acme-") as tmp:
        extra_args: list[str | os.PathLike[str]] = []
        if not export_all:
            exports = Path(tmp) / "acme_dllexport.h"
            exports.write_text(_dllexport_header(ACME_DIR / "acme.h"))
            extra_args = ["-include", exports]
        build_dll(zig, result.dll, ACME_DIR / "acme.c", implib=result.implib,
                  internal_name=internal_name, include_dirs=[ACME_DIR],
                  defines={"ACME_MAJOR": major, "ACME_VERSION": f'"{version}"'},
                  export_all=export_all, extra_args=extra_args)
    shutil.copy(ACME_DIR / "acme.h", result.header)
    result.pc.write_text(
        f"prefix={root}\nexec_prefix=${{prefix}}\nlibdir=${{exec_prefix}}/lib\n"
        f"includedir=${{prefix}}/include\n\nName: acme\n"
        f"Description: The example library of sharewheel\nVersion: {version}\n"
        f"Libs: -L${{libdir}} -lacme\nCflags: -I${{includedir}}\n")
    return result


def pyd_source(module: str = "_core", *, extra: bool = True) -> str:
    """C source of a fake extension module: `PyInit_<module>` returns
    `acme_series() * 1000 + 42` as a plain integer in the pointer (see `pyd_result`); 42 is
    `extra_twice(acme_add(20, 1))`, or `acme_add(40, 2)` without extra."""
    decl = "int extra_twice(int);\n" if extra else ""
    expr = "extra_twice(acme_add(20, 1))" if extra else "acme_add(40, 2)"
    return (f"#include <stdint.h>\n#include \"acme.h\"\n{decl}"
            f"/* no Python C-API (no python3xx.dll): any process can load and call this */\n"
            f"__declspec(dllexport) void *PyInit_{module}(void) {{\n"
            f"    return (void *)(intptr_t)(acme_series() * 1000 + {expr});\n}}\n")


def pyd_result(series: int) -> int:
    """What `PyInit__core` of `build_pyd` returns with libacme of SERIES loaded."""
    return series * 1000 + 42


def build_pyd(zig: PeZig, out: str | os.PathLike[str], *,
              links: Sequence[str | os.PathLike[str]],
              include_dirs: Sequence[str | os.PathLike[str]], extra: bool = True,
              source: str | os.PathLike[str] | None = None) -> Path:
    """An extension module at OUT (e.g. `.../_core.cp311-win_amd64.pyd`) exporting
    `PyInit_<module>` (the module name is OUT's name up to the first dot), linked against
    `links` (import libraries: libacme's, and extra's unless `extra=False`); its import table
    names the DLLs those import libraries name. `include_dirs` must hold acme.h."""
    out = Path(out)
    module = out.name.split(".")[0]
    with tempfile.TemporaryDirectory(prefix="pe-pyd-") as tmp:
        implib = Path(tmp) / f"{module}.lib"  # a .pyd's import library is of no use
        build_dll(zig, out, source if source is not None else pyd_source(module, extra=extra),
                  implib=implib, links=links, include_dirs=include_dirs)
    return out


def build_host_exe(zig: PeZig, out: str | os.PathLike[str]) -> Path:
    """The console program `HOST_C` at OUT (put it in a directory of its own: the exe's directory
    is searched for DLLs)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pe-host-") as tmp:
        src = Path(tmp) / "host.c"
        src.write_text(HOST_C)
        built = Path(tmp) / out.name
        zig.cc("-municode", "-o", built, src, cwd=tmp, label=out.name)
        shutil.copyfile(built, out)
    return out


def find_lld_link() -> str:
    """Debian's lld-link (package lld-16); fails if absent."""
    return find_tool("lld-link-16", "lld-link", why="building PE files with delay imports needs Debian's lld-16 (apt-get install lld-16)")


def link_dll_lld(zig: PeZig, out: str | os.PathLike[str], source: str, *,
                 links: Sequence[str | os.PathLike[str]] = (), delayload: Sequence[str] = (),
                 release: bool = False) -> Path:
    """A CRT-free DLL (`/noentry /nodefaultlib`) compiled by zig and linked by lld-link, for what
    zig cc's driver refuses: `/delayload:NAME` for each of `delayload` (SOURCE must define
    `__delayLoadHelper2`, e.g. a stub: such a DLL is for reading, not for running) and
    `/release` (a valid PE checksum). `links`: import libraries by path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pe-lld-") as tmp:
        src, obj = Path(tmp) / f"{out.stem}.c", Path(tmp) / f"{out.stem}.obj"
        src.write_text(source)
        zig.cc("-c", "-o", obj, src, cwd=tmp, label=f"{out.name} (object)")
        cmd = [find_lld_link(), "/dll", "/noentry", "/nodefaultlib", "/machine:x64",
               f"/out:{Path(tmp) / out.name}", f"/implib:{Path(tmp) / 'implib.lib'}",
               *(f"/delayload:{d}" for d in delayload), *(["/release"] if release else []),
               str(obj), *map(str, links)]
        result = subprocess.run(cmd, text=True, capture_output=True, stdin=subprocess.DEVNULL,
                                check=False)
        if result.returncode != 0:
            raise AssertionError(f"lld-link failed ({result.returncode}): {' '.join(cmd)}\n"
                                 f"{result.stdout}\n{result.stderr}")
        shutil.copyfile(Path(tmp) / out.name, out)
    return out


@pytest.fixture(scope="session")
def windows_prefixes(tmp_path_factory: pytest.TempPathFactory,
                     pe_zig: PeZig) -> Callable[..., WindowsPrefix]:
    """`get(version="3.1.4", dll_name=None) -> WindowsPrefix`, each built once per run."""
    cache: dict[tuple[str, str | None], WindowsPrefix] = {}

    def get(version: str = "3.1.4", dll_name: str | None = None) -> WindowsPrefix:
        if (version, dll_name) not in cache:
            base = tmp_path_factory.mktemp(f"windows-acme-{version}")
            cache[version, dll_name] = windows_prefix(pe_zig, base / "prefix", version,
                                                      dll_name=dll_name)
        return cache[version, dll_name]

    return get


@pytest.fixture(scope="session")
def pe_extra(tmp_path_factory: pytest.TempPathFactory, pe_zig: PeZig) -> DllBuild:
    """`extra.dll` (exports `extra_twice`) in `bin/`, its import library `lib/libextra.dll.a`:
    a dependency no provider offers."""
    base = tmp_path_factory.mktemp("windows-extra")
    return build_dll(pe_zig, base / "bin" / "extra.dll", EXTRA_C,
                     implib=base / "lib" / "libextra.dll.a")


@pytest.fixture(scope="session")
def pe_host_exe(tmp_path_factory: pytest.TempPathFactory, pe_zig: PeZig) -> Path:
    """host.exe, alone in its directory."""
    return build_host_exe(pe_zig, tmp_path_factory.mktemp("windows-host") / "host.exe")


@pytest.fixture(scope="session")
def pe_consumer_pyd(tmp_path_factory: pytest.TempPathFactory, pe_zig: PeZig,
                    windows_prefixes: Callable[..., WindowsPrefix], pe_extra: DllBuild) -> Path:
    """`_core.cp311-win_amd64.pyd` linked against acme 3.1.4's `libacme.dll.a` (so it imports
    `libacme-3.dll`) and `libextra.dll.a` (`extra.dll`), alone in its directory: copy it (and
    the DLLs a test wants beside it) where the test needs it."""
    prefix = windows_prefixes("3.1.4")
    out = tmp_path_factory.mktemp("windows-pyd") / "_core.cp311-win_amd64.pyd"
    return build_pyd(pe_zig, out, links=[prefix.implib, pe_extra.implib],
                     include_dirs=[prefix.include_dir])


# ---------------------------------------------------------------------------------------------
# Wine

def find_wine() -> Path | None:
    """The 64-bit wine loader: $WINE, `wine64` on PATH, Debian's /usr/lib/wine/wine64 (bookworm's
    wine64 package puts no wine64 on PATH), else `wine`."""
    candidates = [os.environ.get("WINE"), shutil.which("wine64"), "/usr/lib/wine/wine64",
                  "/usr/lib/x86_64-linux-gnu/wine/wine64", shutil.which("wine")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return Path(c)
    return None


def _find_wineserver(loader: Path) -> Path | None:
    here = Path(os.path.realpath(loader)).parent
    for c in (os.environ.get("WINESERVER"), here / "wineserver64", here / "wineserver",
              shutil.which("wineserver")):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return Path(c)
    return None


def wine_path(path: str | os.PathLike[str]) -> str:
    """The Windows path of a Linux path (wine's drive Z: is /): `Z:\\tmp\\x\\a.dll`."""
    return "Z:" + os.path.abspath(path).replace("/", "\\")


def _dlls_in(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir()
                  if p.suffix.lower() in (".dll", ".pyd"))


@dataclass
class Wine:
    """A WINEPREFIX for the session and how to run programs in it. `init_seconds`: creating the
    prefix; `runs`: (command, seconds) of each `run`."""

    loader: Path
    server: Path | None
    prefix: Path
    home: Path
    version: str = ""
    init_seconds: float = 0.0
    runs: list[tuple[str, float]] = field(default_factory=list)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("DISPLAY", "WAYLAND_DISPLAY") and not k.startswith("WINE")}
        env.update({
            "WINEPREFIX": str(self.prefix), "WINEARCH": "win64", "WINEDEBUG": "-all",
            # no Mono/Gecko installers, no menu entries written into $HOME
            "WINEDLLOVERRIDES": "mscoree,mshtml=;winemenubuilder.exe=d",
            "XDG_DATA_HOME": str(self.home / "share"), "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_CACHE_HOME": str(self.home / "cache"),
        })
        if self.loader.name == "wine64" and "WINELOADER" not in env:
            env["WINELOADER"] = str(self.loader)
        env.update(extra or {})
        return env

    def run(self, exe: str | os.PathLike[str], *args: str | os.PathLike[str],
            cwd: str | os.PathLike[str], env: dict[str, str] | None = None,
            timeout: float = 120, isolated: bool = True) -> subprocess.CompletedProcess[str]:
        """Run EXE (a Linux path) with ARGS under wine in the directory CWD; Path arguments are
        converted with `wine_path`, strings passed as they are. With `isolated`, refuse to run when
        CWD or EXE's directory holds a .dll/.pyd: both are searched for DLLs, and a test that
        expects a DLL to be found only by preloading would pass for the wrong reason."""
        exe, cwd = Path(exe), Path(cwd)
        if isolated:
            for where, what in ((cwd, "current directory"), (exe.parent, "exe's directory")):
                found = _dlls_in(where)
                if found:
                    raise AssertionError(f"wine_run: the {what} {where} holds {found}: the loader "
                                         f"would find them there (isolated=False to allow it)")
        argv = [str(self.loader), str(exe),
                *(wine_path(a) if isinstance(a, os.PathLike) else str(a) for a in args)]
        start = time.monotonic()
        returncode, out, err = _run_to_files(argv, cwd, self.env(env), timeout)
        self.runs.append((" ".join(argv[1:]), time.monotonic() - start))
        return subprocess.CompletedProcess(argv, returncode, out, err)

    def create_prefix(self) -> None:
        """`wineboot --init`, waiting for its wineserver to write everything and exit; then a
        persistent wineserver for the session, so each run does not start wine's services anew
        (1.5 s a run instead of well under a second)."""
        self.home.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        returncode, out, err = _run_to_files([str(self.loader), "wineboot", "--init"], self.home,
                                             self.env(), 600)
        if self.server is not None:  # wineboot returns before the prefix is fully written
            _run_to_files([str(self.server), "-w"], self.home, self.env(), 600)
        self.init_seconds = time.monotonic() - start
        if returncode != 0 or not (self.prefix / "system.reg").is_file():
            pytest.fail(f"wine: creating the WINEPREFIX {self.prefix} failed ({returncode}):\n"
                        f"{out}\n{err}", pytrace=False)
        z = self.prefix / "dosdevices" / "z:"
        if not z.exists() or z.resolve() != Path("/"):
            pytest.fail(f"wine: {z} should link to / (wine_path relies on it)", pytrace=False)
        if self.server is not None:
            # forks into the background and serves this prefix until `stop`
            _run_to_files([str(self.server), "-p"], self.home, self.env(), 60)

    def stop(self) -> None:
        """Stop this prefix's wineserver (and the processes it runs) and wait for it."""
        if self.server is not None:
            _run_to_files([str(self.server), "-k"], self.home, self.env(), 60)
            _run_to_files([str(self.server), "-w"], self.home, self.env(), 60)


def _run_to_files(argv: list[str], cwd: Path, env: dict[str, str],
                  timeout: float) -> tuple[int, str, str]:
    """Run ARGV with stdout and stderr going to files, not pipes: wine's services and wineserver
    inherit them and outlive the program, and a pipe would be read until they exit."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            returncode = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=err,
                                        stdin=subprocess.DEVNULL, timeout=timeout,
                                        check=False).returncode
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"wine: {argv} did not finish in {timeout} s") from e
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(f.read().decode("utf-8", "replace").replace("\r\n", "\n"))
    return returncode, texts[0], texts[1]


_ACTIVE_WINE: list[Wine] = []
_WINE_SESSIONS: list[Wine] = []


def wine_run(exe: str | os.PathLike[str], *args: str | os.PathLike[str],
             cwd: str | os.PathLike[str], env: dict[str, str] | None = None,
             wine: Wine | None = None, timeout: float = 120,
             isolated: bool = True) -> subprocess.CompletedProcess[str]:
    """`Wine.run` in the session's prefix (the `wine` fixture must be active) or in `wine`.

    Run again (twice at most) when wine's own Linux process dies in glibc's exit-time teardown
    ("Inconsistency detected by ld.so: dl-fini.c", status 127): seen once in ~1,000 runs on
    the CI machine, after the Windows program had finished; a crash of the harness, not an
    outcome of the PE files under test (those never reach ld.so)."""
    if wine is None:
        if not _ACTIVE_WINE:
            raise AssertionError("wine_run: no WINEPREFIX: request the `wine` fixture first")
        wine = _ACTIVE_WINE[-1]
    for _ in range(2):
        result = wine.run(exe, *args, cwd=cwd, env=env, timeout=timeout, isolated=isolated)
        if not (result.returncode == 127 and "Inconsistency detected by ld.so: dl-fini.c" in result.stderr):
            return result
    return wine.run(exe, *args, cwd=cwd, env=env, timeout=timeout, isolated=isolated)


def host_load(host_exe: str | os.PathLike[str], *dlls: str | os.PathLike[str],
              cwd: str | os.PathLike[str], flags: int | None = None,
              dll_dirs: Sequence[str | os.PathLike[str]] = (),
              wine: Wine | None = None) -> subprocess.CompletedProcess[str]:
    """Run host.exe: AddDllDirectory each of `dll_dirs`, load each of DLLS (Linux paths, passed
    as full Windows paths) in order with `flags` (default `PYTHON_LOAD_FLAGS`; 0 = plain
    LoadLibraryW) and call PyInit__core of the last one. stdout: the number, or
    `LoadLibrary failed <path> <error>`; exit status `HOST_*`."""
    args: list[str | os.PathLike[str]] = [f"--add-dll-dir={wine_path(d)}" for d in dll_dirs]
    if flags is not None:
        args.append(f"--flags={flags:#x}")
    args += [Path(d) for d in dlls]
    return wine_run(host_exe, *args, cwd=cwd, wine=wine)


@pytest.fixture(scope="session")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wine]:
    """A WINEPREFIX for the run, created once (`wineboot --init`), removed at the end with its
    wineserver stopped. Fails, never skips, when wine is not installed."""
    loader = find_wine()
    if loader is None:
        pytest.fail("wine is not installed: the Windows loader tests run PE files under wine "
                    "(Debian: apt-get install wine wine64; or set $WINE to the wine64 loader)",
                    pytrace=False)
    base = tmp_path_factory.mktemp("wine")
    w = Wine(loader, _find_wineserver(loader), base / "prefix", base / "home")
    version = subprocess.run([str(loader), "--version"], env=w.env(), capture_output=True,
                             text=True, stdin=subprocess.DEVNULL, timeout=60, check=False)
    w.version = version.stdout.strip()
    w.create_prefix()
    _ACTIVE_WINE.append(w)
    _WINE_SESSIONS.append(w)
    try:
        yield w
    finally:
        _ACTIVE_WINE.remove(w)
        w.stop()
        shutil.rmtree(w.prefix, ignore_errors=True)  # about 700 MB


def pytest_terminal_summary(terminalreporter) -> None:
    """How long the zig builds and wine runs of this session took."""
    lines = []
    for timings in _ZIG_TIMINGS:
        if timings:
            (first, t0), rest = timings[0], [t for _, t in timings[1:]]
            line = f"zig (Windows): first build {first} {t0:.1f} s"
            if rest:
                line += f"; {len(rest)} more: {min(rest):.2f}-{max(rest):.2f} s"
            lines.append(line)
    for w in _WINE_SESSIONS:
        line = f"wine ({w.version or w.loader}): prefix created in {w.init_seconds:.1f} s"
        times = [t for _, t in w.runs]
        if times:
            line += (f"; {len(times)} runs: first {times[0]:.2f} s, then "
                     f"{min(times[1:] or times):.2f}-{max(times[1:] or times):.2f} s")
        lines.append(line)
    if lines:
        terminalreporter.write_sep("-", "pe_support timings")
        for line in lines:
            terminalreporter.write_line(line)


# ---------------------------------------------------------------------------------------------
# Independent PE readers (pefile)

MACHINES = {0x14C: "i386", 0x8664: "amd64", 0xAA64: "arm64", 0xA641: "arm64ec", 0x1C4: "armnt"}


def _pe(path: str | os.PathLike[str], *directories: str):
    import pefile  # type: ignore[import-untyped]

    pe = pefile.PE(os.fspath(path), fast_load=True)
    if directories:
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY[d] for d in directories])
    return pe


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def pe_imports(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """`{"imports": [DLL names of the import directory], "delay_imports": [of the delay-load
    import directory]}`, in file order, as stored (case kept)."""
    pe = _pe(path, "IMAGE_DIRECTORY_ENTRY_IMPORT", "IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT")
    try:
        return {
            "imports": [_name(e.dll) for e in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])],
            "delay_imports": [_name(e.dll)
                              for e in getattr(pe, "DIRECTORY_ENTRY_DELAY_IMPORT", [])],
        }
    finally:
        pe.close()


def pe_import_symbols(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """`{DLL name: [imported symbol names, or "#ordinal"]}` over imports and delay imports."""
    pe = _pe(path, "IMAGE_DIRECTORY_ENTRY_IMPORT", "IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT")
    try:
        result: dict[str, list[str]] = {}
        for entry in [*getattr(pe, "DIRECTORY_ENTRY_IMPORT", []),
                      *getattr(pe, "DIRECTORY_ENTRY_DELAY_IMPORT", [])]:
            result.setdefault(_name(entry.dll), []).extend(
                _name(i.name) if i.name is not None else f"#{i.ordinal}" for i in entry.imports)
        return result
    finally:
        pe.close()


def pe_exports(path: str | os.PathLike[str]) -> list[str]:
    """Exported symbol names (by-ordinal-only exports as "#ordinal")."""
    pe = _pe(path, "IMAGE_DIRECTORY_ENTRY_EXPORT")
    try:
        exports = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
        if exports is None:
            return []
        return [_name(s.name) if s.name is not None else f"#{s.ordinal}" for s in exports.symbols]
    finally:
        pe.close()


def pe_export_name(path: str | os.PathLike[str]) -> str | None:
    """The export directory's Name (the DLL's own idea of its file name), or None."""
    pe = _pe(path, "IMAGE_DIRECTORY_ENTRY_EXPORT")
    try:
        exports = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
        return None if exports is None or exports.name is None else _name(exports.name)
    finally:
        pe.close()


def pe_machine(path: str | os.PathLike[str]) -> str:
    """"amd64", "arm64", "i386", "arm64ec", "armnt", or the Machine field in hex."""
    pe = _pe(path)
    try:
        machine = pe.FILE_HEADER.Machine
        return MACHINES.get(machine, f"{machine:#06x}")
    finally:
        pe.close()


def pe_checksum(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(OptionalHeader.CheckSum as stored, the checksum pefile computes)."""
    pe = _pe(path)
    try:
        return pe.OPTIONAL_HEADER.CheckSum, pe.generate_checksum()
    finally:
        pe.close()


def pe_checksum_ok(path: str | os.PathLike[str], *, allow_zero: bool = False) -> bool:
    """Whether the stored PE checksum is the right one; with `allow_zero`, an unset (0) checksum
    counts as right too (Windows checks it only for drivers and boot-time images; zig/lld leave
    it 0, delvewheel recomputes it only when it was set)."""
    stored, computed = pe_checksum(path)
    return stored == computed or (allow_zero and stored == 0)


def _section_name(section) -> str:
    return section.Name.rstrip(b"\0").decode("latin-1")


def _align(value: int, alignment: int) -> int:
    return value if alignment <= 1 else (value + alignment - 1) // alignment * alignment


def pe_section_problems(path: str | os.PathLike[str]) -> list[str]:
    """What is wrong with the section layout, against the PE/COFF spec and the Windows loader
    (empty if nothing):

    - the section table ends within SizeOfHeaders; SizeOfHeaders is a multiple of
      FileAlignment and no section's raw data starts before it;
    - sections are in ascending, adjacent virtual address order: the first at
      align(SizeOfHeaders, SectionAlignment), each next one at align(VA + VirtualSize,
      SectionAlignment), all multiples of SectionAlignment;
    - raw data: PointerToRawData and SizeOfRawData multiples of FileAlignment, ranges within the
      file and not overlapping, SizeOfRawData not above the aligned VirtualSize;
    - SizeOfImage = align(end of the last section, SectionAlignment);
    - every data directory (but the certificate table, which is a file offset) lies in the image.
    """
    pe = _pe(path)
    try:
        problems: list[str] = []
        oh, fh = pe.OPTIONAL_HEADER, pe.FILE_HEADER
        file_size = len(pe.__data__)
        salign, falign = oh.SectionAlignment, oh.FileAlignment
        table_start = pe.DOS_HEADER.e_lfanew + 4 + 20 + fh.SizeOfOptionalHeader
        table_end = table_start + 40 * fh.NumberOfSections
        sections = list(pe.sections)
        if len(sections) != fh.NumberOfSections:
            problems.append(f"NumberOfSections {fh.NumberOfSections}, {len(sections)} readable")
        if table_end > oh.SizeOfHeaders:
            problems.append(f"section table ends at {table_end:#x}, past SizeOfHeaders "
                            f"{oh.SizeOfHeaders:#x}")
        if oh.SizeOfHeaders % falign:
            problems.append(f"SizeOfHeaders {oh.SizeOfHeaders:#x} is not a multiple of "
                            f"FileAlignment {falign:#x}")
        if salign < falign:
            problems.append(f"SectionAlignment {salign:#x} < FileAlignment {falign:#x}")
        expected_va = _align(oh.SizeOfHeaders, salign)
        raw_ranges: list[tuple[int, int, str]] = []
        for i, s in enumerate(sections):
            name = f"section {i} {_section_name(s)!r}"
            vsize = s.Misc_VirtualSize or s.SizeOfRawData
            if s.VirtualAddress % salign:
                problems.append(f"{name}: VirtualAddress {s.VirtualAddress:#x} not aligned to "
                                f"{salign:#x}")
            if s.VirtualAddress != expected_va:
                problems.append(f"{name}: VirtualAddress {s.VirtualAddress:#x}, expected "
                                f"{expected_va:#x} (sections must be ascending and adjacent)")
            expected_va = _align(s.VirtualAddress + vsize, salign)
            if s.SizeOfRawData:
                start, end = s.PointerToRawData, s.PointerToRawData + s.SizeOfRawData
                if start % falign:
                    problems.append(f"{name}: PointerToRawData {start:#x} not aligned to "
                                    f"{falign:#x}")
                if s.SizeOfRawData % falign:
                    problems.append(f"{name}: SizeOfRawData {s.SizeOfRawData:#x} not a multiple "
                                    f"of {falign:#x}")
                if start < oh.SizeOfHeaders:
                    problems.append(f"{name}: raw data at {start:#x} inside the headers "
                                    f"(SizeOfHeaders {oh.SizeOfHeaders:#x})")
                if end > file_size:
                    problems.append(f"{name}: raw data [{start:#x}, {end:#x}) runs past the end "
                                    f"of the file ({file_size:#x})")
                if s.SizeOfRawData > _align(vsize, salign):
                    problems.append(f"{name}: SizeOfRawData {s.SizeOfRawData:#x} exceeds its "
                                    f"virtual size {vsize:#x}")
                raw_ranges.append((start, end, name))
        raw_ranges.sort()
        for (s1, e1, n1), (s2, _e2, n2) in itertools.pairwise(raw_ranges):
            if s2 < e1:
                problems.append(f"{n1} [{s1:#x}, {e1:#x}) overlaps {n2} at {s2:#x} in the file")
        image_end = expected_va if sections else _align(oh.SizeOfHeaders, salign)
        if oh.SizeOfImage != image_end:
            problems.append(f"SizeOfImage {oh.SizeOfImage:#x}, expected {image_end:#x}")
        for index, d in enumerate(oh.DATA_DIRECTORY[:oh.NumberOfRvaAndSizes]):
            if not d.Size or index == 4:  # 4: the certificate table, a file offset
                continue
            if d.VirtualAddress + d.Size > oh.SizeOfImage:
                problems.append(f"{d.name} [{d.VirtualAddress:#x}, +{d.Size:#x}) is outside the "
                                f"image ({oh.SizeOfImage:#x})")
        return problems
    finally:
        pe.close()


def pe_sections_ok(path: str | os.PathLike[str]) -> bool:
    """Whether `pe_section_problems` finds nothing."""
    return not pe_section_problems(path)


def pe_header_room(path: str | os.PathLike[str]) -> int:
    """Bytes free (all zero) right after the section table, before SizeOfHeaders and the first
    section's raw data: room for `room // 40` new section headers without moving anything."""
    pe = _pe(path)
    try:
        fh, oh = pe.FILE_HEADER, pe.OPTIONAL_HEADER
        table_end = pe.DOS_HEADER.e_lfanew + 4 + 20 + fh.SizeOfOptionalHeader \
            + 40 * fh.NumberOfSections
        limit = min([oh.SizeOfHeaders,
                     *(s.PointerToRawData for s in pe.sections if s.SizeOfRawData)])
        data = bytes(pe.__data__[table_end:limit])
        return len(data) - len(data.lstrip(b"\0"))
    finally:
        pe.close()


# ---------------------------------------------------------------------------------------------
# Import libraries

IMPORT_OBJECT_HDR_SIG2 = 0xFFFF


def implib_imports(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """`{DLL name: [symbols]}` of the short import members (IMPORT_OBJECT_HEADER: Sig1 0,
    Sig2 0xFFFF; what LLVM, zig and MSVC write) of an import library (`.dll.a`/`.lib`, an ar
    archive), read with `struct`: the DLL name a program linked against it will import.
    GNU dlltool's long-format members are not read."""
    data = Path(path).read_bytes()
    if data[:8] != b"!<arch>\n":
        raise ValueError(f"{path}: not an ar archive")
    result: dict[str, list[str]] = {}
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        if header[58:60] != b"`\n":
            raise ValueError(f"{path}: bad ar member header at {pos}")
        size = int(header[48:58].decode("ascii").strip())
        body = data[pos + 60:pos + 60 + size]
        if len(body) >= 20:
            sig1, sig2 = struct.unpack_from("<HH", body, 0)
            if sig1 == 0 and sig2 == IMPORT_OBJECT_HDR_SIG2:
                (size_of_data,) = struct.unpack_from("<I", body, 12)
                strings = body[20:20 + size_of_data].split(b"\0")
                if len(strings) >= 2:
                    result.setdefault(_name(strings[1]), []).append(_name(strings[0]))
        pos += 60 + size + (size & 1)
    return result
