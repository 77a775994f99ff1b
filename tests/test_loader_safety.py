"""The runtime loader's safety (issue 5, part 2), on Linux with real gcc-built libraries.

The provider's `load()` and the consumer's hook load only files inside their own package
directory (compared as resolved real paths) — never a look-alike in the current directory, in
LD_LIBRARY_PATH, on PATH or under an empty or relative sys.path entry; concurrent imports from 8
threads load each library once; a second `load()` does nothing; a missing provider is an
ImportError naming the distribution and the pip command; a provider file that fails to load is
reported with the dynamic loader's own words.

Each check runs a fresh interpreter (the `run_env` venv: nothing installed) with sys.path set
explicitly, and reads what the process really mapped from /proc/self/maps. `dlopen` calls are
counted by wrapping `_ctypes.dlopen` (what the loader and ctypes.CDLL call) in the child.

The decoys are real: libacme 3.9.9 packed by sharewheel has the same unique name as 3.1.4 (same
ABI series) but `acme_version()` says "3.9.9", so the wrong file shows in the answer as well as
in the maps.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    EXTRA_SOURCE,
    BuildEnv,
    Consumer,
    RunEnv,
    build_c_library,
    manifest_of,
    pip_target,
    requires_dist,
    run,
)

# Run in the child before the test's code: what the process mapped, and every dlopen it made.
PRELUDE = r'''
import json, os, sys, threading, time
import _ctypes

DLOPENS = []
_real_dlopen = _ctypes.dlopen
_dlopen_lock = threading.Lock()

def _counting_dlopen(path, *args):
    if path:  # dlopen(NULL), the main program (ctypes.pythonapi), is not a library load
        with _dlopen_lock:
            DLOPENS.append(os.path.realpath(path))
    return _real_dlopen(path, *args)

_ctypes.dlopen = _counting_dlopen
try:
    import ctypes
    ctypes._dlopen = _counting_dlopen  # ctypes.CDLL keeps its own reference
except ImportError:
    pass

def mapped(fragment):
    """Real paths of the mapped files whose name contains `fragment`."""
    paths = set()
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(None, 5)
            if len(fields) == 6 and fragment in os.path.basename(fields[5].strip()):
                paths.add(os.path.realpath(fields[5].strip()))
    return sorted(paths)

ENTRIES = json.loads(os.environ["LOADER_TEST_SYS_PATH"])
sys.path[:] = ENTRIES + [p for p in sys.path if p and p.startswith(sys.base_prefix)]
'''


def child(run_env: RunEnv, code: str, sys_path: list[str | Path], *, cwd: Path,
          env: dict[str, str] | None = None, check: bool = True) -> dict:
    """Run PRELUDE + `code` in a fresh interpreter with exactly `sys_path` in front of the
    standard library; `code` prints one JSON object, returned."""
    environment = {"LOADER_TEST_SYS_PATH": json.dumps([str(p) for p in sys_path]), "PYTHONPATH": "",
                   "LD_LIBRARY_PATH": "", "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    result = run([run_env.python, "-c", PRELUDE + textwrap.dedent(code)], env=environment, cwd=cwd, check=check)
    if not check and result.returncode != 0:
        return {"returncode": result.returncode, "stderr": result.stderr}
    return json.loads(result.stdout.strip().splitlines()[-1])


def unique_name(provider: Path) -> str:
    [library] = manifest_of(provider)["provides"]["libraries"]
    return library["unique_name"]


def real(path: Path) -> str:
    return os.path.realpath(path)


@dataclass(frozen=True)
class Installed:
    provider: Path  # sys.path entry with acme_native 3.1.4
    consumer: Path  # sys.path entry with acme_consumer (repaired against 3.1.4)
    unique: str  # libacme-sw….so
    library: str  # real path of the installed provider library

    @property
    def package(self) -> str:
        return real(self.provider / "acme_native")


@pytest.fixture(scope="module")
def installed(consumer: Consumer, build_env: BuildEnv, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("loader-safety")
    site_a = pip_target(build_env, consumer.provider, base / "A")
    site_b = pip_target(build_env, consumer.output, base / "B")
    unique = unique_name(consumer.provider)
    return Installed(site_a, site_b, unique, real(site_a / "acme_native" / "lib" / unique))


@pytest.fixture(scope="module")
def decoy_library(packed: Callable[..., Path], consumer: Consumer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libacme 3.9.9 as sharewheel packs it: the same file name (and soname) as 3.1.4's unique
    library, another answer from acme_version()."""
    provider = packed("3.9.9")
    unique = unique_name(provider)
    assert unique == unique_name(consumer.provider)  # one ABI series, one name: a perfect look-alike
    out = tmp_path_factory.mktemp("decoy") / unique
    with zipfile.ZipFile(provider) as zf:
        out.write_bytes(zf.read(f"acme_native/lib/{unique}"))
    return out


def plant_decoys(directory: Path, decoy: Path, names: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(decoy, directory / name)
    return directory


CALL = """
import acme_consumer
print(json.dumps({"answer": [acme_consumer.add(20, 22), acme_consumer.version()],
                  "acme": mapped("libacme"), "extra": mapped("libextra"), "dlopens": DLOPENS,
                  "provider": os.path.realpath(sys.modules["acme_native"].__file__)}))
"""


def test_decoys_in_cwd_ld_library_path_path_and_relative_entries_are_never_loaded(
        installed: Installed, decoy_library: Path, consumer: Consumer, run_env: RunEnv, tmp_path: Path) -> None:
    """Look-alikes of the provider's library (and of the consumer's vendored libextra) in the
    current directory, in LD_LIBRARY_PATH and PATH, and in an empty ("") and a relative sys.path
    entry — both as a bare file and as `acme_native/lib/<name>` (a namespace portion, no
    __init__.py): the provider's own file is the only libacme mapped, from its package dir."""
    vendored = [Path(v).name for v in manifest_of(consumer.output)["vendored"]]
    assert [v for v in vendored if v.startswith("libextra-")], vendored
    # a libextra that answers differently: extra_twice(x) = 3x would make add(20, 22) 63
    fake_extra = build_c_library(tmp_path / "fake-extra", "extra", "libextra.so.1",
                                 EXTRA_SOURCE.replace("2 * x", "3 * x")) / "lib" / "libextra.so.1.0"
    names = [installed.unique, "libacme.so.3", "libacme.so"]
    cwd = plant_decoys(tmp_path / "cwd", decoy_library, names)
    for name in vendored:
        shutil.copyfile(fake_extra, cwd / name)
    plant_decoys(cwd / "acme_native" / "lib", decoy_library, names)  # under "" : namespace portion
    relative = plant_decoys(cwd / "rel", decoy_library, names)
    plant_decoys(relative / "acme_native" / "lib", decoy_library, names)
    ld_dir = plant_decoys(tmp_path / "ld", decoy_library, names)
    for name in vendored:
        shutil.copyfile(fake_extra, ld_dir / name)
    env = {"LD_LIBRARY_PATH": f"{ld_dir}:{cwd}:.", "PATH": f"{ld_dir}:{cwd}:.:{os.environ['PATH']}"}

    for sys_path in (["", "rel", installed.consumer, installed.provider],
                     [installed.consumer, "", "rel", installed.provider],
                     [installed.consumer, installed.provider, "", "rel"]):
        result = child(run_env, CALL, sys_path, cwd=cwd, env=env)
        assert result["answer"] == [42, "3.1.4"], (sys_path, result)
        assert result["acme"] == [installed.library], (sys_path, result)
        assert result["provider"].startswith(installed.package + os.sep)
        assert [p for p in result["dlopens"] if "libacme" in p] == [installed.library]
        assert all(p.startswith(installed.package + os.sep) for p in result["dlopens"]), result["dlopens"]
        libs_dir = real(installed.consumer / "acme_consumer.libs")
        assert [os.path.dirname(p) for p in result["extra"]] == [libs_dir], result["extra"]


def test_series_fallback_skips_empty_and_relative_entries(
        installed: Installed, packed: Callable[..., Path], build_env: BuildEnv, decoy_library: Path,
        run_env: RunEnv, tmp_path: Path) -> None:
    """When the acme_native found first ships another series, the hook searches the other
    sys.path entries for one that ships the consumer's file. Full look-alike provider packages of
    the right series (the 3.9.9 build) under "" and a relative entry come before the real one on
    sys.path: they are skipped, the real 3.1.4 is loaded under its private name."""
    series4 = pip_target(build_env, packed("4.0.0"), tmp_path / "A4")
    cwd = tmp_path / "cwd"
    pip_target(build_env, packed("3.9.9"), cwd)  # acme_native 3.9.9 in the current directory
    pip_target(build_env, packed("3.9.9"), cwd / "rel")
    result = child(run_env, CALL.replace('sys.modules["acme_native"]', 'sys.modules[[m for m in sys.modules '
                                         'if m.startswith("_sharewheel_series.acme_native.")][0]]'),
                   [series4, "", "rel", installed.provider, installed.consumer], cwd=cwd)
    assert result["answer"] == [42, "3.1.4"], result
    # the copy of series 4 found first is not imported: the hook loads only the copy it uses
    assert result["acme"] == [installed.library], result
    assert result["provider"].startswith(installed.package + os.sep)


THREADS = """
import threading
barrier = threading.Barrier(8)
errors = []
slowed = []

def slow_first_private_import(frame, event, arg):
    # Widen the window a real race has: the first time a provider module is executed under a
    # private name (the series fallback), pause its execution for 0.3 s. Any loader that
    # publishes a module before it is fully executed is then caught every time, not once in 20.
    if (event == "call" and frame.f_code.co_name == "<module>" and not slowed
            and frame.f_globals.get("__name__", "").startswith("_sharewheel_series.")):
        slowed.append(frame.f_globals["__name__"])
        time.sleep(0.3)

def work(i):
    try:
        barrier.wait()
        if i % 2:
            import {consumer_a} as m
        else:
            import {consumer_b} as m
        m.add(1, 2)
        import acme_native
        acme_native.load()
    except BaseException as e:
        errors.append(repr(e))

threading.setprofile(slow_first_private_import)
threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
series = [m for n, m in sys.modules.items() if n.startswith("_sharewheel_series.")]
providers = [sys.modules["acme_native"], *series]
print(json.dumps({{"errors": errors, "acme": mapped("libacme"), "dlopens": DLOPENS, "slowed": slowed,
                  "handles": [len(getattr(p, "_handles", ())) for p in providers],
                  "series_modules": len(series)}}))
"""


def consumer_copy(site: Path, name: str) -> Path:
    """The installed acme_consumer again as package `name` (its own hook module), in `site`."""
    source = site / "acme_consumer"
    target = site / name
    if not target.exists():
        shutil.copytree(source, target)
        init = target / "__init__.py"
        init.write_text(init.read_text().replace("from acme_consumer.", f"from {name}."))
    return target


@pytest.mark.parametrize("layout", [
    "first-on-path",
    "series-fallback",
])
def test_eight_threads_load_each_library_once(layout: str, installed: Installed, packed: Callable[..., Path],
                                              build_env: BuildEnv, run_env: RunEnv, tmp_path: Path) -> None:
    """8 threads wait on a barrier, then import two consumers (two hook modules) and call
    acme_native.load(): one dlopen per library, one handle each, one mapping. With
    `series-fallback` a series-4 acme_native is found first, so both hooks load 3.1.4 through
    the fallback path under its private module name, concurrently."""
    consumer_copy(installed.consumer, "acme_consumer_b")
    sys_path: list[str | Path] = [installed.consumer, installed.provider]
    if layout == "series-fallback":
        sys_path.insert(0, pip_target(build_env, packed("4.0.0"), tmp_path / "A4"))
    code = THREADS.format(consumer_a="acme_consumer", consumer_b="acme_consumer_b")
    for attempt in range(2):  # a fresh process each time: the first import is the racy one
        result = child(run_env, code, sys_path, cwd=tmp_path)
        assert bool(result["slowed"]) == (layout == "series-fallback")
        assert result["errors"] == [], (attempt, result)
        libacme = [p for p in result["dlopens"] if "libacme" in p]
        assert installed.library in libacme
        assert sorted(libacme) == sorted(set(libacme)), f"a library was dlopened twice: {libacme}"
        assert result["handles"] == [1] * len(result["handles"])
        assert len(result["acme"]) == (2 if layout == "series-fallback" else 1), result["acme"]
        assert result["series_modules"] == (1 if layout == "series-fallback" else 0)


def test_second_load_is_free(installed: Installed, run_env: RunEnv, tmp_path: Path) -> None:
    """After the first load(), load() and a further consumer import make no dlopen call, and
    load() costs a tiny fraction of the first import."""
    code = """
    t0 = time.perf_counter()
    import acme_native
    first = time.perf_counter() - t0
    before = list(DLOPENS)
    t0 = time.perf_counter()
    for _ in range(10000):
        acme_native.load()
    again = (time.perf_counter() - t0) / 10000
    import acme_consumer  # its hook calls load() too
    print(json.dumps({"first": first, "again": again, "before": before, "after": DLOPENS,
                      "handles": len(acme_native._handles)}))
    """
    result = child(run_env, code, [installed.consumer, installed.provider], cwd=tmp_path)
    assert result["before"] == [installed.library]
    assert result["after"] == result["before"], "load() or the hook dlopened again"
    assert result["handles"] == 1
    assert result["again"] < result["first"] / 100, result
    assert result["again"] < 20e-6, result


def test_missing_provider_is_an_import_error_naming_distribution_and_pip_command(
        installed: Installed, consumer: Consumer, decoy_library: Path, run_env: RunEnv, tmp_path: Path) -> None:
    """No acme_native anywhere but look-alike files (in the current directory, LD_LIBRARY_PATH
    and a relative entry): an ImportError, not a decoy loaded and not a loader error."""
    cwd = plant_decoys(tmp_path / "cwd", decoy_library, [installed.unique])
    plant_decoys(cwd / "rel" / "acme_native" / "lib", decoy_library, [installed.unique])
    code = """
    try:
        import acme_consumer
    except ImportError as e:
        print(json.dumps({"type": type(e).__name__, "name": e.name, "message": str(e),
                          "acme": mapped("libacme"), "dlopens": DLOPENS}))
    """
    result = child(run_env, code, [installed.consumer, "", "rel"], cwd=cwd, env={"LD_LIBRARY_PATH": str(cwd)})
    [requirement] = [str(r) for r in requires_dist(consumer.output)]
    assert result["type"] == "ImportError" and result["name"] == "acme_native", result
    assert result["message"] == (
        f"acme-consumer needs the native library provider acme-native ({requirement}), which is not "
        f"installed. Fix it with: pip install '{requirement}'")
    assert result["acme"] == [] and result["dlopens"] == []


@pytest.mark.parametrize("damage,words", [
    ("empty", "file too short"),
    ("garbage", "invalid ELF header"),
])
def test_provider_file_that_fails_to_load_reports_the_loader_error(
        damage: str, words: str, consumer: Consumer, build_env: BuildEnv, run_env: RunEnv, tmp_path: Path) -> None:
    """The installed library is damaged: the ImportError (from the consumer's import and from
    importing the provider) carries dlerror's own text and the file's path."""
    site_a = pip_target(build_env, consumer.provider, tmp_path / "A")
    site_b = pip_target(build_env, consumer.output, tmp_path / "B")
    library = site_a / "acme_native" / "lib" / unique_name(consumer.provider)
    data = library.read_bytes()
    library.write_bytes({"empty": b"", "garbage": b"this is not a shared library\n" * 4,
                         "elf-header-only": data[:64]}[damage])
    code = """
    import ctypes
    try:
        ctypes.CDLL(os.environ["LIBRARY"])
    except OSError as e:
        dlerror = str(e)
    out = {"dlerror": dlerror}
    for module in ("acme_consumer", "acme_native"):
        sys.modules.pop("acme_native", None)
        try:
            __import__(module)
        except ImportError as e:
            out[module] = [type(e).__name__, str(e), getattr(e, "path", None)]
    print(json.dumps(out))
    """
    result = child(run_env, code, [site_b, site_a], cwd=tmp_path, env={"LIBRARY": real(library)})
    assert words in result["dlerror"], result  # what dlopen itself says about this file
    for module in ("acme_consumer", "acme_native"):
        kind, message, path = result[module]
        assert kind == "ImportError", result
        assert message == f"acme-native: cannot load {real(library)}: {result['dlerror']}", result
        assert path == real(library)


@pytest.mark.parametrize("keep", ["elf-header", "half"])
def test_truncated_provider_file_is_an_import_error_not_a_crash(
        keep: str, consumer: Consumer, build_env: BuildEnv, run_env: RunEnv, tmp_path: Path) -> None:
    """A library cut inside its segments (an interrupted copy, a full disk): glibc's dlopen would
    map past the end of the file and the process would die of SIGBUS; the loader reads the
    program headers first and raises an ImportError saying so."""
    site_a = pip_target(build_env, consumer.provider, tmp_path / "A")
    site_b = pip_target(build_env, consumer.output, tmp_path / "B")
    library = site_a / "acme_native" / "lib" / unique_name(consumer.provider)
    data = library.read_bytes()
    cut = data[:64] if keep == "elf-header" else data[: len(data) // 2]
    library.write_bytes(cut)
    code = """
    out = {}
    for module in ("acme_consumer", "acme_native"):
        sys.modules.pop("acme_native", None)
        try:
            __import__(module)
        except ImportError as e:
            out[module] = [str(e), getattr(e, "path", None)]
    print(json.dumps(out))
    """
    result = child(run_env, code, [site_b, site_a], cwd=tmp_path)
    for module in ("acme_consumer", "acme_native"):
        message, path = result[module]
        assert message.startswith(f"acme-native: cannot load {real(library)}: the file is {len(cut)} bytes "
                                  "but its segments end at byte "), result
        assert message.endswith(" (truncated?)") and path == real(library)
