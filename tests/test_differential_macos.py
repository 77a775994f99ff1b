"""sharewheel's Mach-O analysis against delocate's own, on real delocated wheels from PyPI.

The oracle is delocate reading with its own otool wrappers (delocate.tools), here on Linux:
Apple's otool does not exist, so the `otool` on PATH is a shell wrapper (written by the fixture)
that answers delocate's three calls `otool -arch all -m -L|-D|-l FILE` with Debian's
`llvm-objdump-16 --macho --arch=all --dylibs-used|--dylib-id|--private-headers FILE` (package
llvm-16). Its output is otool's format and delocate's parser takes it as it is: per slice a
`FILE (architecture ARCH):` header, and for a thin file a bare `FILE:`, as Apple's otool prints
(delocate keys that one ''). `llvm-otool-16` itself cannot serve: it rejects `-m`, and with
`-arch all` it lists only the first slice of a universal file, as LLVM 14's does.

Compared, on the six wheels of tests/test_macho_reader.py (41.7 MB; 71 Mach-O files, thin
arm64 and x86_64 and universal2):

- every binary's load commands: delocate.tools' ``_get_install_names``, ``_get_install_ids``,
  ``_get_rpaths`` with LLVM's otool against sharewheel's (sharewheel.readers.macho), per slice;
- every binary's dependencies: the real command ``delocate-listdeps --all --depending WHEEL``
  against ``sharewheel show WHEEL --json``: per binary the same libraries, those in the wheel
  ``vendored``, the system's ``policy``, nothing else;
- what delocate would copy: delocate_path's own analysis (``tree_libs_from_directory`` with its
  filters, then ``_analyze_tree_libs``) of the whole wheel and of package directories whose
  vendored libraries lie outside them, once with the oracle and once with sharewheel's backend
  swapped in as during a repair: the same dependency map (resolved paths, dependents, install
  names), the same libraries to copy and to relink.
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import find_tool, run, sharewheel
from test_macho_reader import MACOS_WHEELS, unpacked_machos

from sharewheel.adapters import macho
from sharewheel.adapters.macos import _delocate_backend
from sharewheel.readers import macho as reader

# package directories whose binaries load libraries vendored outside them: delocate_path run on
# one of them would copy those libraries in (what it does for a wheel it has not repaired yet)
SUBTREES = {
    "numpy": ("numpy/_core", "numpy/linalg"),
    "scipy-openblas64": ("scipy_openblas64/lib",),
    "pyzmq": ("zmq/backend/cython",),
}

OTOOL_WRAPPER = """\
#!/bin/sh
# otool as delocate calls it (otool -arch all -m -L|-D|-l FILE), answered by {objdump} --macho
args=""
while [ $# -gt 1 ]; do
  case "$1" in
    -arch) shift; args="$args --arch=$1" ;;
    -m) ;;
    -L) args="$args --dylibs-used" ;;
    -D) args="$args --dylib-id" ;;
    -l) args="$args --private-headers" ;;
    *) echo "otool wrapper: unexpected argument $1" >&2; exit 2 ;;
  esac
  shift
done
exec {objdump} --macho $args "$1"
"""


@pytest.fixture(scope="session")
def otool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose `otool` is LLVM's, for delocate; fails (never skips) without llvm-16."""
    objdump = find_tool("llvm-objdump-16", why="delocate's otool is LLVM's here (apt-get install llvm-16)")
    where = tmp_path_factory.mktemp("otool")
    (where / "otool").write_text(OTOOL_WRAPPER.format(objdump=objdump))
    (where / "otool").chmod(0o755)
    return where


@contextmanager
def delocate_with_llvm_otool(otool_dir: Path) -> Iterator[None]:
    """delocate.tools' own functions (not sharewheel's) see LLVM's otool first on PATH."""
    import delocate.tools

    assert delocate.tools._get_install_names.__module__ == "delocate.tools"  # not swapped
    saved = os.environ["PATH"]
    os.environ["PATH"] = f"{otool_dir}{os.pathsep}{saved}"
    try:
        yield
    finally:
        os.environ["PATH"] = saved


@pytest.fixture(scope="session")
def unpacked(pypi_download, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, list[Path]]]:
    """key → (wheel, its unpacked tree (real path), its Mach-O files)."""
    base = Path(os.path.realpath(tmp_path_factory.mktemp("differential")))
    result = {}
    for key, spec in MACOS_WHEELS.items():
        wheel = pypi_download(*spec)
        result[key] = (wheel, base / key, unpacked_machos(wheel, base / key))
    return result


def test_otool_wrapper_lists_every_slice(otool_dir: Path, unpacked) -> None:
    """What makes llvm-objdump usable and llvm-otool-16 not: every slice of a universal2 file."""
    _wheel, tree, _files = unpacked["pyzmq"]
    fat = tree / "zmq" / ".dylibs" / "libzmq.5.dylib"
    listing = run([otool_dir / "otool", "-arch", "all", "-m", "-L", fat]).stdout
    assert f"{fat} (architecture x86_64):" in listing and f"{fat} (architecture arm64):" in listing
    llvm_otool = find_tool("llvm-otool-16", why="the comparison with LLVM's own otool (apt-get install llvm-16)")
    assert run([llvm_otool, "-arch", "all", "-m", "-L", fat], check=False).returncode != 0  # no -m
    only_first = run([llvm_otool, "-arch", "all", "-L", fat]).stdout
    assert "architecture" not in only_first and only_first.count("libSystem.B.dylib") == 1


@pytest.mark.parametrize("key", MACOS_WHEELS)
def test_load_commands_match_delocates_otool_reading(key: str, otool_dir: Path, unpacked) -> None:
    import delocate.tools

    _wheel, _tree, files = unpacked[key]
    with delocate_with_llvm_otool(otool_dir):
        for path in files:
            archs = [sl.arch for sl in reader.read(path).slices]

            def keyed(found: dict) -> dict:  # otool names no architecture for a thin file
                return {(archs[0] if arch == "" and len(archs) == 1 else arch): value for arch, value in found.items()}

            assert keyed(delocate.tools._get_install_names(path)) == macho._get_install_names(path), path
            assert keyed(delocate.tools._get_install_ids(path)) == macho._get_install_ids(path), path
            assert keyed(delocate.tools._get_rpaths(path)) == macho._get_rpaths(path), path
            assert sorted(keyed(delocate.tools._get_rpaths(path))) == sorted(archs)


def listdeps(wheel: Path, otool_dir: Path) -> dict[str, set[str]]:
    """`delocate-listdeps --all --depending WHEEL`: library → the wheel's binaries that load it."""
    command = Path(sys.executable).parent / "delocate-listdeps"
    out = run([command, "--all", "--depending", wheel],
              env={"PATH": f"{otool_dir}{os.pathsep}{os.environ['PATH']}"}).stdout
    found: dict[str, set[str]] = {}
    library = None
    for line in out.splitlines():
        if line.startswith(" "):
            assert library is not None, out
            found[library].add(line.strip())
        elif line:
            assert line.endswith(":"), out
            library = line[:-1]
            found[library] = set()
    return found


@pytest.mark.parametrize("key", MACOS_WHEELS)
def test_show_matches_delocate_listdeps(key: str, otool_dir: Path, unpacked) -> None:
    wheel, _tree, files = unpacked[key]
    oracle = listdeps(wheel, otool_dir)
    report = json.loads(sharewheel("show", wheel, "--json").stdout)["binaries"]
    assert set(report) == {binary for binaries in oracle.values() for binary in binaries}
    assert len(report) == len(files)
    outside = [library for library in oracle if library.startswith("/") and not library.startswith(("/usr/lib/", "/System/"))]
    assert outside == []  # in the wheel (a relative path) or the system's
    for binary, needs in report.items():
        expected = sorted((posixpath.basename(library), "policy" if library.startswith("/") else "vendored")
                          for library, binaries in oracle.items() if binary in binaries)
        assert sorted((posixpath.basename(n["name"]), n["state"]) for n in needs) == expected, binary
    assert any(n["state"] == "vendored" for needs in report.values() for n in needs)


def delocate_path_analysis(root: Path) -> tuple[dict[str, dict[str, str]], set[str], set[str]]:
    """What delocate_path decides for `root` before it copies anything: the dependency map, the
    libraries to copy in and the ones to relink."""
    from delocate.delocating import _analyze_tree_libs, _delocate_filter_function, filter_system_libs
    from delocate.libsana import _allow_all, tree_libs_from_directory

    filt = functools.partial(_delocate_filter_function, lib_filt_func=_allow_all, copy_filt_func=filter_system_libs)
    lib_dict = tree_libs_from_directory(str(root), lib_filt_func=filt, copy_filt_func=filt)
    copying, delocating = _analyze_tree_libs(lib_dict, str(root))
    return lib_dict, set(copying), set(delocating)


@pytest.mark.parametrize("key,subtree", [(key, ".") for key in MACOS_WHEELS] + [
    (key, subtree) for key, subtrees in SUBTREES.items() for subtree in subtrees])
def test_what_delocate_would_copy(key: str, subtree: str, otool_dir: Path, unpacked) -> None:
    _wheel, tree, _files = unpacked[key]
    root = tree / subtree
    with delocate_with_llvm_otool(otool_dir):
        oracle = delocate_path_analysis(root)
    with _delocate_backend([]):
        import delocate.tools

        assert delocate.tools._get_install_names is macho._get_install_names
        ours = delocate_path_analysis(root)
    assert ours == oracle
    lib_dict, copying, delocating = ours
    assert lib_dict
    if subtree == ".":  # a repaired wheel: everything it loads is in it (relinked) or the system's
        assert copying == set() and delocating
    else:  # what it loads lies outside: all copied in
        assert copying and all("/.dylibs/" in library for library in copying) and delocating == set()
