"""`repair --set` (issue 16, acceptance 1 and 2): one source tree, one C library (a global it
keeps), three wheels built from it by setuptools — ringcore, and ringbind and ringplug, which
require ringcore. Repaired as a set, the library is carried once (by ringcore, which all others
require), the others link it and require ringcore==1.0.0, and a value set through one wheel is
seen through the others in one process: in one site-packages and split over three --target
directories. The same from auditwheel's output (three copies). Order of the command line:
byte-identical outputs. No carrier: --set-provider packs a native-lib wheel; without it, or
with wheels of two versions, one error line and nothing written."""

from __future__ import annotations

import hashlib
import itertools
import os
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    PIP_QUIET,
    BuildEnv,
    RunEnv,
    auditwheel_repair,
    build_c_library,
    elf_dynamic,
    manifest_of,
    one,
    pip_target,
    requires_dist,
    run,
    setuptools_pyproject,
    sharewheel,
)
from packaging.specifiers import SpecifierSet

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}

RING_C = """\
static int value;
void ring_set(int v) { value = v; }
int ring_get(void) { return value; }
"""

EXT_C = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>
void ring_set(int); int ring_get(void);
static PyObject *set(PyObject *s, PyObject *args) {
    int v;
    if (!PyArg_ParseTuple(args, "i", &v)) return NULL;
    ring_set(v);
    Py_RETURN_NONE;
}
static PyObject *get(PyObject *s, PyObject *a) { return PyLong_FromLong(ring_get()); }
static PyMethodDef methods[] = {
    {"set", set, METH_VARARGS, NULL}, {"get", get, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL},
};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ext", NULL, -1, methods};
PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&module); }
"""

PACKAGES = ("ringbind", "ringcore", "ringplug")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ring_project(tree: Path, package: str, prefix: Path, version: str = "1.0.0") -> Path:
    """A setuptools project in the source tree: PACKAGE._ext linked to libring in the tree's prefix."""
    project = tree / f"{package}-{version}"
    (project / "src" / package).mkdir(parents=True)
    (project / "src" / "_ext.c").write_text(EXT_C)
    (project / "src" / package / "__init__.py").write_text(f'"""{package}."""\nfrom {package}._ext import get, set\n')
    setuptools_pyproject(project, package, [package], version=version,
                         dependencies=("ringcore",) if package != "ringcore" else ())
    lib = prefix / "lib"
    (project / "setup.py").write_text(textwrap.dedent(f"""\
        from setuptools import Extension, setup
        setup(ext_modules=[Extension("{package}._ext", ["src/_ext.c"],
                                     extra_link_args=["-L{lib}", "-lring", "-Wl,-rpath,{lib}"])])
        """))
    return project


def build_wheel(build_env: BuildEnv, project: Path, dist: Path) -> Path:
    before = set(dist.glob("*.whl")) if dist.is_dir() else set()
    run([build_env.python, "-m", "pip", *PIP_QUIET, "wheel", "--no-build-isolation", "--no-deps", "-w", dist, project])
    return one(sorted(set(dist.glob("*.whl")) - before))


@dataclass(frozen=True)
class Release:
    wheels: dict[str, Path]  # package → the wheel setuptools built
    plug_101: Path  # ringplug 1.0.1: another release
    audited: dict[str, Path]  # package → auditwheel's repair of `wheels` (its own copy of libring)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, build_env: BuildEnv) -> Release:
    tree = tmp_path_factory.mktemp("ring-tree")
    prefix = build_c_library(tree / "prefix", "ring", "libring.so.1", RING_C)
    wheels = {p: build_wheel(build_env, ring_project(tree, p, prefix), tree / "dist") for p in PACKAGES}
    plug_101 = build_wheel(build_env, ring_project(tree, "ringplug", prefix, "1.0.1"), tree / "dist-101")
    audited = {}
    for package, wheel in wheels.items():
        audited[package] = auditwheel_repair(wheel, tree / "audited" / package)
    return Release(wheels, plug_101, audited)


def ring_files(wheel: Path) -> list[str]:
    """The ELF files of `wheel` that are a libring (by name): its copies of the library."""
    with zipfile.ZipFile(wheel) as zf:
        return sorted(n for n in zf.namelist() if os.path.basename(n).startswith("libring")
                      and zf.read(n)[:4] == b"\x7fELF")


def repair_set(wheels: list[Path], out: Path, *args: str, cwd: Path, flag: bool = True) -> dict[str, Path]:
    """`sharewheel repair --set` of `wheels` into OUT (without `flag`: `set = true` in CWD's
    pyproject.toml instead of --set): the outputs by package."""
    before = {w: sha256(w) for w in wheels}
    if not flag:
        (cwd / "pyproject.toml").write_text("[tool.sharewheel]\nset = true\n")
    sharewheel("repair", *(["--set"] if flag else []), *wheels, "-w", out, *args, env=EPOCH, cwd=cwd)
    assert {w: sha256(w) for w in wheels} == before  # inputs only read
    outputs = {p.name.split("-")[0]: p for p in out.glob("*.whl")}
    assert not [p for p in out.iterdir() if p.suffix != ".whl"]  # no staging left behind
    return outputs


SHARED = """
import os, sys
import {first}, {second}, {third}
{first}.set(41)
print({first}.get(), {second}.get(), {third}.get())
{third}.set(7)
print({first}.get(), {second}.get(), {third}.get())
maps = {{os.path.realpath(p) for p in open("/proc/self/maps").read().split() if p.startswith("/")}}
print(len([p for p in maps if os.path.basename(p).startswith("libring")]))
"""


def assert_one_library_at_run_time(outputs: dict[str, Path], build_env: BuildEnv, run_env: RunEnv,
                                   tmp_path: Path) -> None:
    """A value set through one wheel is seen through the others, one libring mapped: in one
    site-packages and split over three --target directories (both sys.path orders), whichever
    wheel is imported first."""
    one_site = tmp_path / "site"
    for wheel in outputs.values():
        pip_target(build_env, wheel, one_site)
    assert sharewheel("check", "--path", one_site, cwd=tmp_path).returncode == 0  # every link holds
    split = {package: pip_target(build_env, wheel, tmp_path / f"site-{package}") for package, wheel in outputs.items()}
    layouts = [[one_site], [split[p] for p in sorted(split)], [split[p] for p in sorted(split, reverse=True)]]
    packages = [p for p in sorted(outputs) if p.startswith("ring")]
    for path, order in itertools.product(layouts, [packages, packages[::-1]]):
        result = run_env.run(SHARED.format(first=order[0], second=order[1], third=order[2]), path)
        assert result.stdout.split("\n")[:3] == ["41 41 41", "7 7 7", "1"], (path, order, result.stdout)


def assert_carried_by_core(outputs: dict[str, Path], tmp_path: Path) -> None:
    """libring once, in ringcore as a provider; ringbind and ringplug link it and require ringcore==1.0.0."""
    assert sorted(outputs) == list(PACKAGES)
    copies = {p: ring_files(w) for p, w in outputs.items()}
    assert copies["ringbind"] == [] and copies["ringplug"] == []
    [carried] = copies["ringcore"]
    assert carried.startswith("_ringcore_native/lib/libring-sw") and carried.endswith(".so")
    provides = manifest_of(outputs["ringcore"])["provides"]
    assert (provides["distribution"], provides["version"], provides["abi"]) == ("ringcore", "1.0.0", "exact")
    unique = os.path.basename(carried)
    for package in ("ringbind", "ringplug"):
        [requirement] = [r for r in requires_dist(outputs[package]) if r.name == "ringcore"]
        assert requirement.specifier == SpecifierSet("==1.0.0")
        with zipfile.ZipFile(outputs[package]) as zf:
            [ext] = [n for n in zf.namelist() if n.startswith(f"{package}/_ext") and n.endswith(".so")]
            (tmp_path / package).mkdir(parents=True)
            extracted = Path(zf.extract(ext, tmp_path / package))
        assert unique in elf_dynamic(extracted)["needed"]
        assert [link["provider"] for link in manifest_of(outputs[package])["links"]] == ["ringcore"]
    assert requires_dist(outputs["ringcore"]) == []


@pytest.fixture(scope="module")
def repaired(release: Release, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("set")
    return repair_set([release.wheels[p] for p in PACKAGES], base / "out", cwd=base)


def test_set_carries_the_library_once_in_the_core(repaired: dict[str, Path], build_env: BuildEnv, run_env: RunEnv,
                                                  tmp_path: Path) -> None:
    assert_carried_by_core(repaired, tmp_path / "x")
    assert_one_library_at_run_time(repaired, build_env, run_env, tmp_path)


def test_outputs_do_not_depend_on_the_order(release: Release, repaired: dict[str, Path], tmp_path: Path) -> None:
    """All six orders give the same bytes; half of them from `set = true` in [tool.sharewheel]."""
    expected = {p.name: p.read_bytes() for p in repaired.values()}
    wheels = [release.wheels[p] for p in PACKAGES]
    for index, order in enumerate(itertools.permutations(wheels)):
        if list(order) == wheels:
            continue  # the fixture's
        cwd = tmp_path / f"project-{index}"
        cwd.mkdir()
        outputs = repair_set(list(order), tmp_path / str(index), cwd=cwd, flag=index % 2 == 1)
        assert {p.name: p.read_bytes() for p in outputs.values()} == expected, [w.name for w in order]


def test_repairing_the_repaired_set_gives_the_same_bytes(repaired: dict[str, Path], tmp_path: Path) -> None:
    """The carrier is a provider now: it serves the others of the set again, nothing changes."""
    again = repair_set(list(repaired.values()), tmp_path / "again", cwd=tmp_path)
    assert {p.name: p.read_bytes() for p in again.values()} == {p.name: p.read_bytes() for p in repaired.values()}


def test_dry_run_says_what_the_set_repair_writes(release: Release, repaired: dict[str, Path],
                                                 tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = sharewheel("repair", "--set", "--dry-run", *(release.wheels[p] for p in PACKAGES), "-w", out,
                        cwd=tmp_path)
    assert not out.exists()
    lines = result.stdout.splitlines()
    assert len([line for line in lines if line.startswith("  carry libring.so.1 as libring-sw")]) == 1
    assert lines.count("  require ringcore==1.0.0") == 2
    summaries = [line for line in lines if not line.startswith("  ")]
    assert sorted(line.rsplit(" ", 1)[1] for line in summaries) == sorted(p.name for p in repaired.values())
    assert all(": dry run, nothing written; repair would write " in line for line in summaries)


def test_set_of_auditwheel_repaired_wheels_keeps_one_copy(release: Release, build_env: BuildEnv, run_env: RunEnv,
                                                          tmp_path: Path) -> None:
    audited = [release.audited[p] for p in PACKAGES]
    assert [len(ring_files(w)) for w in audited] == [1, 1, 1]  # auditwheel: three copies
    assert len({os.path.basename(one(ring_files(w))) for w in audited}) == 1  # of one file (its hash in the name)
    outputs = repair_set(audited, tmp_path / "out", cwd=tmp_path)
    assert_carried_by_core(outputs, tmp_path / "x")
    for package in PACKAGES:  # auditwheel's copies are gone, with their directories
        with zipfile.ZipFile(outputs[package]) as zf:
            assert not [n for n in zf.namelist() if n.startswith(f"{package}.libs/")]
    assert_one_library_at_run_time(outputs, build_env, run_env, tmp_path)


def test_fresh_core_with_auditwheel_repaired_bindings(release: Release, tmp_path: Path) -> None:
    """A copy auditwheel made is recognised as the file the core would vendor (its content hash
    is in the copy's name): carried once all the same, under the core's real soname."""
    wheels = [release.wheels["ringcore"], release.audited["ringbind"], release.audited["ringplug"]]
    outputs = repair_set(wheels, tmp_path / "out", cwd=tmp_path)
    assert_carried_by_core(outputs, tmp_path / "x")
    assert [lib["name"] for lib in manifest_of(outputs["ringcore"])["provides"]["libraries"]] == ["libring.so.1"]


def test_no_carrier_needs_set_provider(release: Release, build_env: BuildEnv, run_env: RunEnv,
                                       tmp_path: Path) -> None:
    """ringbind and ringplug without ringcore: neither requires the other, so neither can carry
    libring. Without --set-provider: one error line naming the flag, nothing written; with it,
    a native-lib wheel carries libring and both require it ==1.0.0."""
    wheels = [release.wheels["ringbind"], release.wheels["ringplug"]]
    out = tmp_path / "refused"
    result = sharewheel("repair", "--set", *wheels, "-w", out, check=False, cwd=tmp_path)
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert line.startswith("sharewheel: error: --set: libring.so.1 would be vendored by ringbind-1.0.0-")
    assert line.endswith("no wheel of the set is required by all the others to carry it: name a new native-lib "
                         "wheel for it with --set-provider NAME")
    assert not out.exists()
    for name, message in (("ringbind", "--set-provider ringbind: a wheel of the set has that name; choose another"),
                          ("ring native", "--set-provider 'ring native': not a distribution name")):
        result = sharewheel("repair", "--set", *wheels, "-w", out, "--set-provider", name, check=False, cwd=tmp_path)
        assert result.returncode == 1, result
        [line] = result.stderr.splitlines()
        assert line.startswith(f"sharewheel: error: {message}"), line
        assert not out.exists()

    outputs = repair_set(wheels, tmp_path / "out", "--set-provider", "ring-native", cwd=tmp_path)
    assert sorted(outputs) == ["ring_native", "ringbind", "ringplug"]
    assert ring_files(outputs["ringbind"]) == ring_files(outputs["ringplug"]) == []
    [carried] = ring_files(outputs["ring_native"])
    assert carried.startswith("ring_native/lib/libring-sw")
    provides = manifest_of(outputs["ring_native"])["provides"]
    assert (provides["distribution"], provides["version"], provides["abi"]) == ("ring-native", "1.0.0", "exact")
    for package in ("ringbind", "ringplug"):
        required = {r.name: r.specifier for r in requires_dist(outputs[package])}
        assert required == {"ringcore": SpecifierSet(), "ring-native": SpecifierSet("==1.0.0")}
    code = """
    import ringbind, ringplug
    ringbind.set(5)
    print(ringplug.get())
    """
    split = [pip_target(build_env, w, tmp_path / f"site-{p}") for p, w in sorted(outputs.items())]
    for path in (split, split[::-1]):
        assert run_env.run(code, path).stdout.split() == ["5"]


def test_wheels_of_two_releases_are_refused(release: Release, tmp_path: Path) -> None:
    wheels = [release.wheels["ringcore"], release.wheels["ringbind"], release.plug_101]
    before = [sha256(w) for w in wheels]
    out = tmp_path / "out"
    result = sharewheel("repair", "--set", *wheels, "-w", out, check=False, cwd=tmp_path)
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert line.startswith("sharewheel: error: --set: the wheels of a set are one release, but they have 2 versions "
                           "(1.0.0: ringbind-1.0.0-"), line
    assert "; 1.0.1: ringplug-1.0.1-" in line
    assert not out.exists()
    assert [sha256(w) for w in wheels] == before


def test_set_provider_without_set_is_a_usage_error(release: Release, tmp_path: Path) -> None:
    result = sharewheel("repair", release.wheels["ringbind"], "--set-provider", "ring-native", "-w", tmp_path / "out",
                        check=False, cwd=tmp_path)
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == ["sharewheel: error: --set-provider names the carrier of a set: give it with --set"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("table", "message"), [
    ('[tool.sharewheel]\nset = "yes"\n', "[tool.sharewheel] set: must be a boolean (true or false), not a string"),
    ("[tool.sharewheel.linux]\nset = true\n",
     "[tool.sharewheel.linux]: unknown key 'set' (known keys: abi, exclude, plugins, providers)"),
])
def test_set_in_the_configuration_is_checked(table: str, message: str, tmp_path: Path) -> None:
    """`set` is a boolean of the main table (it decides the run, not one OS's wheels): anything
    else is one line naming the file, before any wheel is read."""
    (tmp_path / "pyproject.toml").write_text(table)
    result = sharewheel("repair", tmp_path / "none-1.0.0-cp311-cp311-linux_x86_64.whl", "-w", tmp_path / "out",
                        check=False, cwd=tmp_path)
    assert result.returncode == 1, result
    assert result.stderr.splitlines() == [f"sharewheel: error: {tmp_path / 'pyproject.toml'}: {message}"]
    assert not (tmp_path / "out").exists()
