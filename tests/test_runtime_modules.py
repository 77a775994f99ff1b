"""The runtime sharewheel copies into wheels (sharewheel.runtime: loader.py, provider_main.py),
tested as the modules they are: in this process, with real directories on a temporary sys.path,
real gcc-built libraries (read back from /proc/self/maps) and the generated tables that drive
them; in fresh interpreters where what matters is what a start-up imports. And as code: mypy
--strict and ruff pass on it, and it runs on the oldest Python a wheel may meet.

Each in-process test uses package and library names of its own: a library once loaded stays
loaded, so no two tests may share one; sys.path and sys.modules are restored after each test.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, find_tool, run

from sharewheel.adapters import BinaryInfo
from sharewheel.hooks import BLOCK_END, BLOCK_START, install_hooks
from sharewheel.runtime import (
    HOOK_MODULE,
    RUNTIME_MODULE,
    Libc,
    Requirement,
    Strategy,
    consumer_hook,
    loader,
    loader_source,
    provider_init,
    provider_main,
    provider_main_source,
    runtime_key,
    top_level_modules,
)

# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcc() -> str:
    return find_tool("gcc", why="the runtime tests load real gcc-built libraries")


def build_library(gcc: str, path: Path, source: str, *args: str | Path) -> Path:
    """A shared library at `path` (its soname is its file name) from C `source`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.parent / f"{path.name}.c"
    src.write_text(source)
    run([gcc, "-O2", "-fPIC", "-shared", f"-Wl,-soname,{path.name}", "-o", path, src, *args])
    return path


def returning(symbol: str, value: int) -> str:
    return f"int {symbol}(void) {{ return {value}; }}\n"


def mapped() -> set[str]:
    """Real paths of the files mapped into this process."""
    with open("/proc/self/maps") as f:
        return {os.path.realpath(fields[5].strip()) for line in f if len(fields := line.split(None, 5)) == 6}


def real(path: Path) -> str:
    return os.path.realpath(path)


def write_provider(gcc: str, entry: Path, package: str, libraries: dict[str, str], *, version: str = "1.0",
                   requires: tuple[Requirement, ...] = ()) -> Path:
    """A provider package as `sharewheel pack` lays it out, in sys.path entry `entry`: its
    libraries built into lib/, its generated __init__.py, the runtime copied beside it."""
    package_dir = entry / package
    for filename, source in libraries.items():
        build_library(gcc, package_dir / "lib" / filename, source)
    (package_dir / "__init__.py").write_text(provider_init(
        distribution=package.replace("_", "-"), version=version, libraries=list(libraries), requires=requires,
        package=package))
    (package_dir / f"{RUNTIME_MODULE}.py").write_text(loader_source())
    importlib.invalidate_caches()
    return package_dir


def literals(source: str) -> dict[str, Any]:
    """The literal module-level assignments of a generated module: its table."""
    return {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(source).body
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, (ast.Constant, ast.Tuple, ast.List))}


@pytest.fixture
def isolated() -> Iterator[None]:
    """sys.path and sys.modules as they were, after the test (its libraries stay loaded)."""
    path = list(sys.path)
    modules = set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def fresh(code: str, cwd: Path) -> Any:
    """Run `code` in a fresh interpreter (no PYTHONPATH); it prints one JSON value, returned."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH")}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- loading one file --------------------------------------------------------------------------


def elf64(phoff: int, entries: list[tuple[int, int, int]], size: int) -> bytes:
    """A little-endian ELF64 header with program headers (type, offset, filesz) at `phoff`, the
    file padded with zeros to `size` bytes (cut there if shorter)."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    header[32:40] = phoff.to_bytes(8, "little")
    header[54:56] = (56).to_bytes(2, "little")
    header[56:58] = len(entries).to_bytes(2, "little")
    data = bytearray(max(size, phoff + 56 * len(entries)))
    data[:64] = header
    for index, (kind, offset, filesz) in enumerate(entries):
        at = phoff + 56 * index
        data[at:at + 4] = kind.to_bytes(4, "little")
        data[at + 8:at + 16] = offset.to_bytes(8, "little")
        data[at + 32:at + 40] = filesz.to_bytes(8, "little")
    return bytes(data[:size])


def test_truncated_reads_the_segments_a_real_library_needs(gcc: str, tmp_path: Path) -> None:
    library = build_library(gcc, tmp_path / "libswttrunc.so.1", returning("swt_trunc", 1))
    data = library.read_bytes()
    assert loader.truncated(str(library)) is None
    for cut in (data[:64], data[: len(data) // 2]):
        short = tmp_path / f"cut-{len(cut)}.so"
        short.write_bytes(cut)
        reason = loader.truncated(str(short))
        assert reason is not None and reason.startswith(f"the file is {len(cut)} bytes but its segments end at byte ")
        assert reason.endswith(" (truncated?)") and int(reason.split()[-2]) > len(cut)
    # program headers past the first 4 KiB are read where they are
    far = tmp_path / "far.so"
    far.write_bytes(elf64(5000, [(1, 0, 9000)], 6000))
    assert loader.truncated(str(far)) == "the file is 6000 bytes but its segments end at byte 9000 (truncated?)"
    far.write_bytes(elf64(5000, [(1, 0, 9000), (4, 0, 99999)], 9000))  # only PT_LOAD counts
    assert loader.truncated(str(far)) is None
    # not ELF, too short for dlopen to try, or unreadable: dlopen says what is wrong
    for name, content in (("text.so", b"not a library\n" * 10), ("tiny.so", b"\x7fELF\x02\x01")):
        (tmp_path / name).write_bytes(content)
        assert loader.truncated(str(tmp_path / name)) is None
    assert loader.truncated(str(tmp_path / "absent.so")) is None


def test_load_file_maps_the_library_or_raises_an_import_error_naming_it(gcc: str, tmp_path: Path) -> None:
    library = build_library(gcc, tmp_path / "libswtload.so.1", returning("swt_load", 7))
    handle = loader.load_file(str(library), "swt-load")
    assert isinstance(handle, int) and handle != 0
    assert real(library) in mapped()

    garbage = tmp_path / "libswtgarbage.so"
    garbage.write_bytes(b"this is not a shared library\n" * 4)
    with pytest.raises(ImportError) as error:
        loader.load_file(str(garbage), "swt-load")
    assert str(error.value).startswith(f"swt-load: cannot load {garbage}: ") and "invalid ELF header" in str(error.value)
    assert error.value.path == str(garbage)

    cut = tmp_path / "libswtcut.so"
    cut.write_bytes(library.read_bytes()[:64])
    with pytest.raises(ImportError) as error:
        loader.load_file(str(cut), "swt-load")
    assert str(error.value).startswith(f"swt-load: cannot load {cut}: the file is 64 bytes but its segments end")
    assert real(cut) not in mapped()


# --- which copy on sys.path: pure functions of the entries and the disk ------------------------


def copy_of(entry: Path, package: str, files: tuple[str, ...] = (), *, init: bool = True) -> Path:
    """A provider copy on disk: `entry/package` with (or without) __init__.py and `files` in lib/."""
    (entry / package / "lib").mkdir(parents=True, exist_ok=True)
    if init:
        (entry / package / "__init__.py").write_text("")
    for name in files:
        (entry / package / "lib" / name).write_bytes(b"")
    return entry / package


def test_candidates_follow_sys_path_and_never_relative_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "cwd"
    copy_of(cwd, "swt_pick", ("libpick-s2.so",))  # found through "" or "rel" only
    copy_of(cwd / "rel", "swt_pick", ("libpick-s2.so",))
    monkeypatch.chdir(cwd)
    a = copy_of(tmp_path / "A", "swt_pick", ("libpick-s1.so",))
    b = copy_of(tmp_path / "B", "swt_pick", ("libpick-s2.so",))
    copy_of(tmp_path / "N", "swt_pick", ("libpick-s2.so",), init=False)  # a namespace portion: no copy
    c = copy_of(tmp_path / "C", "swt_pick", ("libpick-s2.so", "libpick-extra.so"))
    (tmp_path / "B-link").symlink_to(tmp_path / "B")
    entries = ["", "rel", str(tmp_path / "A"), str(tmp_path / "N"), str(tmp_path / "B-link"), str(tmp_path / "B"),
               str(tmp_path / "C")]

    assert list(loader.provider_copies("swt_pick", entries)) == [real(a), real(b), real(c)]
    assert list(loader.candidates("swt_pick", ["libpick-s2.so"], entries)) == [real(b), real(c)]
    assert list(loader.candidates("swt_pick", ["libpick-s2.so", "libpick-extra.so"], entries)) == [real(c)]
    assert list(loader.candidates("swt_pick", ["libpick-s3.so"], entries)) == []
    # copies the requirement admits first (the version is the __version__ line of __init__.py), then
    # the others, each in sys.path order; the entry that is the current directory does not count
    (b / "__init__.py").write_text("__version__ = '2.0.0'\n")
    (c / "__init__.py").write_text("'''docstring'''\n__version__ = '2.1.0'\n")
    assert list(loader.candidates("swt_pick", ["libpick-s2.so"], entries, "swt-pick>=2.1,==2.*")) == [real(c), real(b)]
    assert list(loader.candidates("swt_pick", ["libpick-s2.so"], entries, "swt-pick==2.0.*")) == [real(b), real(c)]
    assert list(loader.candidates("swt_pick", ["libpick-s2.so"], entries, "swt-pick>=2.1", str(tmp_path / "C"))) == [
        real(b)]
    assert loader.import_finds("swt_pick", entries[2:]) == real(a)
    assert loader.import_finds("swt_pick", entries) is None  # "" finds the copy in the current directory first
    assert loader.import_finds("swt_pick", entries[2:], str(tmp_path / "A")) is None

    def untouched() -> Iterator[str]:
        yield str(tmp_path / "B")
        raise AssertionError("the entries were read past the copy that serves")

    assert next(loader.candidates("swt_pick", ["libpick-s2.so"], untouched(), "swt-pick==2.*")) == real(b)


def test_preload_copies_are_the_absolute_entries_with_every_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = ("vendor/lib/libx.so.1", "vendor/lib/liby.so.2")
    for entry, names in (("cwd", paths), ("A", paths[:1]), ("B", paths), ("C", paths)):
        for path in names:
            (tmp_path / entry / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / entry / path).write_bytes(b"")
    monkeypatch.chdir(tmp_path / "cwd")
    entries = ["", ".", str(tmp_path / "A"), str(tmp_path / "B"), str(tmp_path / "C")]
    assert list(loader.preload_copies(paths, entries)) == [
        [str(tmp_path / entry / "vendor" / "lib" / name) for name in ("libx.so.1", "liby.so.2")] for entry in "BC"]


# --- require: the import system's copy, or another series under a private name ----------------


def test_require_loads_the_series_the_consumer_was_linked_to(gcc: str, tmp_path: Path, isolated: None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Series 1 is found first; the consumer of series 2 gets series 2 from a later absolute
    entry, under a private name, as one sys.modules entry; look-alike copies of series 2 under
    "" and a relative entry are never loaded."""
    s1, s2 = "libswtseries-s1.so", "libswtseries-s2.so"
    a = write_provider(gcc, tmp_path / "A", "swt_series", {s1: returning("swt_series", 1)})
    b = write_provider(gcc, tmp_path / "B", "swt_series", {s2: returning("swt_series", 2)}, version="2.0")
    cwd = tmp_path / "cwd"
    decoys = [write_provider(gcc, where, "swt_series", {s2: returning("swt_series", 99)}, version="2.9")
              for where in (cwd, cwd / "rel")]
    monkeypatch.chdir(cwd)
    sys.path[:0] = [str(tmp_path / "A"), "", "rel", str(tmp_path / "B")]

    first = loader.require("swt_series", "swt-series", "swt-series==1.*", (s1,), "swt-consumer1")
    assert first is sys.modules["swt_series"] and first.__file__ == str(a / "__init__.py")
    module = loader.require("swt_series", "swt-series", "swt-series==2.*", (s2,), "swt-consumer2")
    assert module.__name__ == "_sharewheel_series.swt_series.libswtseries_s2_so"
    assert module.__file__ == real(b / "__init__.py") and module.__version__ == "2.0"
    assert sys.modules["swt_series"] is first  # what `import swt_series` gives is unchanged
    assert [n for n in sys.modules if n.startswith(loader.SERIES)] == [module.__name__]
    assert loader.require("swt_series", "swt-series", "swt-series==2.*", (s2,), "swt-consumer3") is module
    loaded = mapped()
    assert {real(a / "lib" / s1), real(b / "lib" / s2)} <= loaded
    assert not {real(d / "lib" / s2) for d in decoys} & loaded
    assert len(module._handles) == len(first._handles) == 1
    # both copies run one runtime: the one the first of them loaded, shared by content
    assert first._runtime is module._runtime is sys.modules[runtime_key()]
    assert module._runtime.__file__ == str(a / f"{RUNTIME_MODULE}.py")


def test_a_copy_with_another_runtime_runs_its_own_and_stays_one_module(gcc: str, tmp_path: Path,
                                                                       isolated: None) -> None:
    """A copy written by another sharewheel release (another runtime) runs its own runtime; the
    fallback attaches it to the private package, so no second sys.modules entry appears."""
    a = write_provider(gcc, tmp_path / "A", "swt_other", {"libswtother-s1.so": returning("swt_other", 1)})
    b = write_provider(gcc, tmp_path / "B", "swt_other", {"libswtother-s2.so": returning("swt_other", 2)})
    init = b / "__init__.py"
    init.write_text(init.read_text().replace(runtime_key(), f"{RUNTIME_MODULE}@another-release"))
    sys.path[:0] = [str(tmp_path / "A"), str(tmp_path / "B")]

    first = importlib.import_module("swt_other")  # the hook itself never imports a copy it does not use
    module = loader.require("swt_other", "swt-other", "swt-other==2.*", ("libswtother-s2.so",), "swt-c")
    assert module.__file__ == real(init)
    assert module._runtime.__file__ == real(b / f"{RUNTIME_MODULE}.py")
    assert first._runtime is not module._runtime
    assert [n for n in sys.modules if n.startswith(loader.SERIES)] == [module.__name__]
    assert sys.modules[f"{RUNTIME_MODULE}@another-release"] is module._runtime
    assert real(a / "lib" / "libswtother-s1.so") in mapped() and real(b / "lib" / "libswtother-s2.so") in mapped()


def test_require_says_which_provider_to_install(gcc: str, tmp_path: Path, isolated: None) -> None:
    requirement = "swt-missing==2.*,>=2.1"
    with pytest.raises(ImportError) as error:
        loader.require("swt_missing", "swt-missing", requirement, ("libswtmissing-s2.so",), "swt-app")
    assert str(error.value) == (f"swt-app needs the native library provider swt-missing ({requirement}), which is "
                                f"not installed. Fix it with: pip install '{requirement}'")
    assert error.value.name == "swt_missing"

    write_provider(gcc, tmp_path / "A", "swt_missing", {"libswtmissing-s1.so": returning("swt_missing", 1)})
    sys.path[:0] = [str(tmp_path / "A")]
    with pytest.raises(ImportError) as error:
        loader.require("swt_missing", "swt-missing", requirement, ("libswtmissing-s2.so",), "swt-app")
    assert str(error.value) == (f"swt-app needs the native library provider swt-missing ({requirement}), which is "
                                f"not installed; the swt-missing found in {real(tmp_path / 'A')} ships another ABI "
                                f"series. Fix it with: pip install '{requirement}'")


# --- third-party providers: import, preload ----------------------------------------------------


def test_import_provider_imports_the_module_or_names_the_requirement(tmp_path: Path, isolated: None) -> None:
    (tmp_path / "swt_imp" / "inner").mkdir(parents=True)
    (tmp_path / "swt_imp" / "__init__.py").write_text("")
    (tmp_path / "swt_imp" / "inner" / "__init__.py").write_text("IMPORTED = True\n")
    (tmp_path / "swt_broken.py").write_text("import swt_not_a_dependency_anywhere\n")
    sys.path[:0] = [str(tmp_path)]
    importlib.invalidate_caches()

    assert loader.import_provider("swt_imp.inner", "swt-imp", "swt-imp==1.*", "c").IMPORTED is True
    for module in ("swt_absent", "swt_absent.inner", "swt_imp.absent"):
        with pytest.raises(ImportError) as error:
            loader.import_provider(module, "swt-absent", "swt-absent==1.*", "c")
        assert str(error.value).startswith("c needs the native library provider swt-absent (swt-absent==1.*)")
        assert error.value.name == module
    with pytest.raises(ModuleNotFoundError) as error:  # the provider's own broken import: not "not installed"
        loader.import_provider("swt_broken", "swt-broken", "swt-broken==1.*", "c")
    assert error.value.name == "swt_not_a_dependency_anywhere"


def test_preload_loads_dependencies_first_once(gcc: str, tmp_path: Path, isolated: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """libswtuse needs libswtdep by soname: loaded by path first, it satisfies that need (glibc
    matches loaded sonames). Look-alikes under a relative entry are not loaded."""
    entry = tmp_path / "site"
    dep = build_library(gcc, entry / "swtvendor" / "lib" / "libswtdep.so.1", returning("swt_dep", 3))
    use = build_library(gcc, entry / "swtvendor" / "lib" / "libswtuse.so.1",
                        "int swt_dep(void);\nint swt_use(void) { return swt_dep() + 1; }\n", f"-L{dep.parent}",
                        "-l:libswtdep.so.1")
    decoy = build_library(gcc, tmp_path / "cwd" / "swtvendor" / "lib" / "libswtdep.so.1", returning("swt_dep", 9))
    build_library(gcc, tmp_path / "cwd" / "swtvendor" / "lib" / "libswtuse.so.1", returning("swt_use", 9))
    monkeypatch.chdir(tmp_path / "cwd")
    sys.path[:0] = ["", str(entry)]
    paths = ("swtvendor/lib/libswtdep.so.1", "swtvendor/lib/libswtuse.so.1")

    loader.preload("swt-vendor", "swt-vendor==1.*", paths, "c")
    handles = sys.__dict__["_sharewheel_preloaded"][("swt-vendor", *paths)]
    assert len(handles) == 2 and {real(dep), real(use)} <= mapped() and real(decoy) not in mapped()
    loader.preload("swt-vendor", "swt-vendor==1.*", paths, "c")
    assert sys.__dict__["_sharewheel_preloaded"][("swt-vendor", *paths)] is handles

    with pytest.raises(ImportError) as error:
        loader.preload("swt-gone", "swt-gone==1.*", ("swtgone/lib/libswtgone.so",), "c")
    assert str(error.value).startswith("c needs the native library provider swt-gone (swt-gone==1.*)")
    assert error.value.name is None


# --- musl: the layout the loader can serve -----------------------------------------------------


def test_layout_error_on_musl_only_when_the_rpath_fallback_misses(tmp_path: Path) -> None:
    site_a, site_b = tmp_path / "A", tmp_path / "B"
    for site in (site_a, site_b):
        (site / "swt_native" / "lib").mkdir(parents=True)
        (site / "swt_native" / "lib" / "libswt-sw1.so").write_bytes(b"")
    (site_b / "swt_consumer").mkdir()
    origin = str(site_b / "swt_consumer")
    fallbacks = ("../swt_native/lib",)
    arguments = ("swt-native", "swt-native==3.*", "swt-consumer")
    here = [str(site_b / "swt_native" / "lib" / "libswt-sw1.so")]
    there = [str(site_a / "swt_native" / "lib" / "libswt-sw1.so")]

    assert loader.layout_error("musl", origin, fallbacks, here, "", *arguments) is None
    (site_b / "swt_native" / "lib" / "libswt-sw1.so").unlink()  # only A has it: the RPATH misses
    error = loader.layout_error("musl", origin, fallbacks, there, "", *arguments)
    assert isinstance(error, ImportError)
    assert str(error) == (
        f"swt-consumer needs swt-native in the same site-packages on musl libc (musllinux): musl's loader does "
        f"not reuse {there[0]} loaded by full path; it looks for libswt-sw1.so only in {site_b / 'swt_native' / 'lib'} "
        f"(the RPATH of swt-consumer's binaries) and LD_LIBRARY_PATH. Install swt-consumer and swt-native into one "
        f"environment (pip install 'swt-native==3.*' there), or start Python with "
        f"LD_LIBRARY_PATH={site_a / 'swt_native' / 'lib'}.")
    assert loader.layout_error("musl", origin, fallbacks, there, f"/nowhere:{site_a / 'swt_native' / 'lib'}",
                               *arguments) is None
    assert loader.layout_error("", origin, fallbacks, there, "", *arguments) is None
    # a provider that loads itself (import): only its file names are known
    bare = loader.layout_error("musl", origin, fallbacks, ["libswt-sw1.so"], "", *arguments)
    assert bare is not None and "reuse libswt-sw1.so loaded by full path from another sys.path entry;" in str(bare)
    assert "LD_LIBRARY_PATH=" not in str(bare)


# --- a provider's load() and a table of providers ----------------------------------------------


def test_provider_load_runs_once_across_threads(gcc: str, tmp_path: Path) -> None:
    package = tmp_path / "swt_prov"
    first = build_library(gcc, package / "lib" / "libswtprovone.so.1", returning("swt_one", 1))
    second = build_library(gcc, package / "lib" / "libswtprovtwo.so.1",
                           "int swt_one(void);\nint swt_two(void) { return swt_one() + 1; }\n", f"-L{first.parent}",
                           "-l:libswtprovone.so.1")
    provider = loader.Provider(str(package / "__init__.py"), "swt-prov", (first.name, second.name))
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def load() -> None:
        barrier.wait()
        try:
            provider.load()
        except (ImportError, OSError) as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and provider.loaded and len(provider.handles) == 2
    assert {real(first), real(second)} <= mapped()
    provider.load()
    assert len(provider.handles) == 2
    assert (provider.get_lib_dir(), provider.get_include_dir(), provider.get_pkgconfig_dir(),
            provider.get_cmake_dir()) == (real(package / "lib"), real(package / "include"),
                                          real(package / "lib" / "pkgconfig"), real(package / "lib" / "cmake"))


def test_require_all_runs_each_strategy_of_a_table(gcc: str, tmp_path: Path, isolated: None) -> None:
    provider = write_provider(gcc, tmp_path / "site", "swt_tab", {"libswttab-sw1.so": returning("swt_tab", 1)})
    (tmp_path / "site" / "swt_tab_imp.py").write_text("IMPORTED = True\n")
    preloaded = build_library(gcc, tmp_path / "site" / "swttabpre" / "lib" / "libswttabpre.so.1",
                              returning("swt_tab_pre", 2))
    sys.path[:0] = [str(tmp_path / "site")]
    records = [
        Requirement("swt_tab", "swt-tab", "swt-tab==1.*", ("libswttab-sw1.so",)),
        Requirement("swt_tab_imp", "swt-tab-imp", "swt-tab-imp==1.*", ("libswttabimp.so",), Strategy.IMPORT),
        Requirement("swttabpre", "swt-tab-pre", "swt-tab-pre==1.*", ("swttabpre/lib/libswttabpre.so.1",),
                    Strategy.PRELOAD),
    ]
    table = tuple(r.record(Libc.OTHER, "swt_tab_consumer") for r in records)
    assert [r[4] for r in table] == ["provider", "import", "preload"]
    loader.require_all(table, "swt-tab-consumer", "", str(tmp_path / "swt_tab_consumer" / "__init__.py"))
    assert sys.modules["swt_tab"].__file__ == str(provider / "__init__.py")
    assert sys.modules["swt_tab_imp"].IMPORTED is True
    assert {real(provider / "lib" / "libswttab-sw1.so"), real(preloaded)} <= mapped()


def test_provider_main_prints_the_directories_asked_for(gcc: str, tmp_path: Path, isolated: None,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    package = write_provider(gcc, tmp_path, "swt_main", {"libswtmain-sw1.so": returning("swt_main", 1)},
                             version="4.2")
    sys.path[:0] = [str(tmp_path)]
    swt_main = importlib.import_module("swt_main")

    provider_main.main(["--lib-dir", "--cmake-dir", "--include-dir", "--pkgconfig-dir"], provider=swt_main)
    assert capsys.readouterr().out.split() == [real(package / "lib"), real(package / "lib" / "cmake"),
                                               real(package / "include"), real(package / "lib" / "pkgconfig")]
    with pytest.raises(SystemExit) as done:
        provider_main.main(["--version"], provider=swt_main)
    assert done.value.code == 0 and capsys.readouterr().out.strip() == "swt-main 4.2"
    with pytest.raises(SystemExit) as done:
        provider_main.main([], provider=swt_main)
    assert done.value.code == 2 and "--cmake-dir" in capsys.readouterr().err


# --- what sharewheel writes: verbatim code, data tables, the __init__ block, shims -------------


def test_the_code_in_wheels_is_the_runtime_package_verbatim_and_the_rest_is_data() -> None:
    runtime_dir = Path(loader.__file__).parent
    assert loader_source() == (runtime_dir / "loader.py").read_text(encoding="utf-8")
    assert provider_main_source() == (runtime_dir / "provider_main.py").read_text(encoding="utf-8")
    digest = hashlib.sha256(loader_source().encode()).hexdigest()[:16]
    assert runtime_key() == f"{RUNTIME_MODULE}@{digest}"
    requirement = Requirement("swt_native", "swt-native", "swt-native==3.*", ("libswt-sw1.so",),
                              lib_dirs=("swt_native/lib",))
    hook = consumer_hook([requirement], "swt-consumer", libc=Libc.MUSL, package="swt_consumer/sub")
    compile(hook, "hook", "exec")
    assert literals(hook) == {
        "RUNTIME": runtime_key(), "NEEDED_BY": "swt-consumer", "LIBC": "musl",
        "PROVIDERS": (("swt_native", "swt-native", "swt-native==3.*", ("libswt-sw1.so",), "provider",
                       ("../../swt_native/lib",)),),
    }
    init = provider_init(distribution="swt-plus", version="1.0", libraries=["libswtplus-sw2.so"],
                         requires=[requirement], package="swt_plus")
    compile(init, "__init__", "exec")
    assert {k: v for k, v in literals(init).items() if k != "__all__"} == {
        "RUNTIME": runtime_key(), "__version__": "1.0", "DISTRIBUTION": "swt-plus",
        "LIBRARIES": ("libswtplus-sw2.so",), "LIBC": "",
        "PROVIDERS": (("swt_native", "swt-native", "swt-native==3.*", ("libswt-sw1.so",), "provider", ()),),
    }
    assert top_level_modules("acme-top") == ("_sharewheel_providers_acme_top", "_sharewheel_runtime_acme_top")


def test_install_hooks_writes_the_block_the_table_and_the_runtime(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "swt_pkg" / "sub").mkdir(parents=True)
    init = tree / "swt_pkg" / "__init__.py"
    source = '"""swt_pkg: a package."""\nfrom __future__ import annotations\n\nfrom swt_pkg._core import f\n'
    init.write_text(source)
    (tree / "swt_pkg" / "sub" / "__init__.py").write_text("")
    binaries = {"swt_pkg/_core.so": BinaryInfo((), True), "swt_pkg/sub/_x.so": BinaryInfo((), True),
                "swt_pkg.libs/libv.so": BinaryInfo((), False)}
    runtime = [Requirement("swt_native", "swt-native", "swt-native==3.*", ("libswt-sw1.so",),
                           lib_dirs=("swt_native/lib",))]

    assert install_hooks(tree, binaries, runtime, "Swt_Pkg", libc="musl") == {}
    hooked = init.read_text()
    block = f"{BLOCK_START}\nfrom . import {HOOK_MODULE}  # noqa: F401\n{BLOCK_END}\n"
    assert hooked == source.replace("annotations\n", "annotations\n" + block, 1)
    table = literals((tree / "swt_pkg" / f"{HOOK_MODULE}.py").read_text())
    assert table["NEEDED_BY"] == "swt-pkg" and table["PROVIDERS"][0][-1] == ("../swt_native/lib",)
    assert (tree / "swt_pkg" / f"{RUNTIME_MODULE}.py").read_text() == loader_source()
    # importing swt_pkg.sub imports swt_pkg first; vendored libraries are not imported
    assert not [p for p in tree.rglob(f"{HOOK_MODULE}.py") if p.parent.name != "swt_pkg"]
    files = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    assert install_hooks(tree, binaries, runtime, "Swt_Pkg", libc=Libc.MUSL) == {}
    assert {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()} == files  # a second repair replaces, never stacks
    assert install_hooks(tree, binaries, (), "Swt_Pkg") == {} and init.read_text() == hooked


EXTENSION_C = """\
#include <Python.h>
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "swt_top", NULL, -1, methods};
PyMODINIT_FUNC PyInit_swt_top(void) { return PyModule_Create(&module); }
"""


def test_an_extension_outside_any_package_becomes_its_shim(gcc: str, tmp_path: Path) -> None:
    """A real extension module at the top level: renamed, its shim loads the providers first (a
    stand-in imported provider here) and then the extension under its own name; the top-level
    table and runtime carry the distribution's name. A second repair changes nothing."""
    tree = tmp_path / "tree"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    build_library(gcc, tree / f"swt_top{suffix}", EXTENSION_C, f"-I{sysconfig.get_paths()['include']}")
    (tmp_path / "dep" / "swt_top_dep").mkdir(parents=True)
    (tmp_path / "dep" / "swt_top_dep" / "__init__.py").write_text("")
    runtime = [Requirement("swt_top_dep", "swt-top-dep", "swt-top-dep==1.*", ("libdep.so",), Strategy.IMPORT)]
    binaries = {f"swt_top{suffix}": BinaryInfo((), True)}

    moved = f"swt_top.sharewheel{suffix}"
    assert install_hooks(tree, binaries, runtime, "swt-top") == {f"swt_top{suffix}": moved}
    names = sorted(p.name for p in tree.iterdir() if p.is_file() and not p.name.endswith(".c"))
    hook, top_runtime = top_level_modules("swt-top")
    assert names == sorted([f"{hook}.py", f"{top_runtime}.py", "swt_top.py", moved])
    assert (tree / f"{top_runtime}.py").read_text() == loader_source()
    shim = (tree / "swt_top.py").read_text()
    assert install_hooks(tree, {moved: BinaryInfo((), True)}, runtime, "swt-top") == {}
    assert (tree / "swt_top.py").read_text() == shim and (tree / moved).is_file()

    code = f"""
import json, sys
sys.path[:0] = [{str(tree)!r}, {str(tmp_path / "dep")!r}]
import swt_top
print(json.dumps([swt_top.answer(), type(swt_top).__name__, swt_top.__spec__.origin, "swt_top_dep" in sys.modules]))
"""
    assert fresh(code, tmp_path) == [42, "module", real(tree / moved), True]
    missing = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tree)!r}); import swt_top"],
                             capture_output=True, text=True, cwd=tmp_path, check=False)
    assert "swt-top needs the native library provider swt-top-dep (swt-top-dep==1.*)" in missing.stderr


def test_a_start_up_imports_the_runtime_once_and_nothing_else(gcc: str, tmp_path: Path) -> None:
    """Importing a hooked consumer in a fresh interpreter adds its package, its table, one
    runtime (the provider reuses the consumer's, by content) and the provider with _ctypes:
    no importlib, warnings, typing, threading or __future__."""
    write_provider(gcc, tmp_path / "P", "swt_fresh_native", {"libswtfresh-sw1.so": returning("swt_fresh", 1)})
    tree = tmp_path / "C"
    (tree / "swt_fresh").mkdir(parents=True)
    (tree / "swt_fresh" / "__init__.py").write_text('"""swt_fresh."""\n')
    install_hooks(tree, {"swt_fresh/_core.so": BinaryInfo((), True)},
                  [Requirement("swt_fresh_native", "swt-fresh-native", "swt-fresh-native==1.*",
                               ("libswtfresh-sw1.so",))], "swt-fresh")
    code = f"""
import json, sys
before = set(sys.modules)
sys.path[:0] = [{str(tree)!r}, {str(tmp_path / "P")!r}]
import swt_fresh
shared = sys.modules[{runtime_key()!r}] is sys.modules["swt_fresh._sharewheel_runtime"]
print(json.dumps([sorted(set(sys.modules) - before), shared, len(sys.modules["swt_fresh_native"]._handles)]))
"""
    added, shared, handles = fresh(code, tmp_path)
    assert added == sorted(["_ctypes", runtime_key(), "swt_fresh", f"swt_fresh.{HOOK_MODULE}",
                            f"swt_fresh.{RUNTIME_MODULE}", "swt_fresh_native"])
    assert shared and handles == 1


# --- the runtime as code -----------------------------------------------------------------------


def test_runtime_type_checks_strictly_and_src_lints() -> None:
    mypy = run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", os.devnull, "src/sharewheel/runtime"],
               cwd=ROOT, check=False)
    assert mypy.returncode == 0, f"mypy --strict src/sharewheel/runtime:\n{mypy.stdout}{mypy.stderr}"
    ruff = run([sys.executable, "-m", "ruff", "check", "--no-cache", "src"], cwd=ROOT, check=False)
    assert ruff.returncode == 0, f"ruff check src:\n{ruff.stdout}{ruff.stderr}"


def older_pythons() -> list[str]:
    """Interpreters older than this one that run (on PATH or pyenv's): wheels' runtime runs from 3.8 on."""
    found = []
    pyenv = Path.home() / ".pyenv" / "versions"
    for minor in range(8, sys.version_info[1]):
        for python in filter(None, [shutil.which(f"python3.{minor}"), *sorted(pyenv.glob(f"3.{minor}.*/bin/python"))]):
            check = subprocess.run([python, "-c", "import sys; print(sys.version_info[1])"], capture_output=True,
                                   text=True, check=False)
            if check.returncode == 0 and check.stdout.strip() == str(minor):
                found.append(str(python))
                break
    return found


def test_runtime_runs_on_older_pythons(gcc: str, tmp_path: Path) -> None:
    """The loader parses as Python 3.8 and runs, as copied into wheels, on every older Python found
    here (and this one): a file check, the copy choice, a load and the musl decision."""
    ast.parse(loader_source(), feature_version=(3, 8))
    ast.parse(provider_main_source(), feature_version=(3, 8))
    library = build_library(gcc, tmp_path / "site" / "swt_old" / "lib" / "libswtold.so.1", returning("swt_old", 1))
    (tmp_path / "site" / "swt_old" / "__init__.py").write_text("")
    (tmp_path / f"{RUNTIME_MODULE}.py").write_text(loader_source())
    code = f"""
import json, sys
sys.path.insert(0, {str(tmp_path)!r})
import {RUNTIME_MODULE} as runtime
provider = runtime.Provider({str(library.parent.parent / "__init__.py")!r}, "swt-old", ("libswtold.so.1",))
provider.load()
print(json.dumps([runtime.truncated({str(library)!r}), list(runtime.candidates("swt_old", ["libswtold.so.1"],
                  ["", {str(tmp_path / "site")!r}])), len(provider.handles),
                  str(runtime.layout_error("musl", "/", (), ["/x/liba.so"], "", "d", "r", "n"))[:10]]))
"""
    pythons = [*older_pythons(), sys.executable]
    for python in pythons:
        result = run([python, "-c", code], cwd=tmp_path)
        assert json.loads(result.stdout) == [None, [real(library.parent.parent)], 1, "n needs d "], python
