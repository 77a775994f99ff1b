"""Which installed copy of a provider the consumer hook trusts, and `sharewheel check` with it
(issue 14): a release the recorded requirement admits before an older one of the series found
first, copies that fail to load skipped (every one tried named when none loads), nothing loaded
from the current directory; check choosing by the hook's own code (loader.candidates) and
reporting shadowed releases, two dist-infos side by side, library files changed since install
(--verify) and distributions it cannot read, without giving up on the rest.

The provider is real: libtrust built by gcc at 1.2.0, 1.3.0 (which adds trust_new) and 2.0.0 (another
ABI series), packed by sharewheel; the consumer calls trust_new, so it is built and repaired
against 1.3.0 and requires trust-native>=1.3.0,==1.*. Installs are pip's (--target), imports run
in fresh interpreters, and what they loaded is read from /proc/self/maps.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import packaging
import pytest
from conftest import (
    PIP_QUIET,
    BuildEnv,
    RunEnv,
    build_c_library,
    find_tool,
    manifest_of,
    one,
    pip_target,
    repair,
    requires_dist,
    run,
    sharewheel,
)
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from sharewheel.runtime import loader

LIBRARY_C = """\
const char *trust_version(void) {{ return "{version}"; }}
int trust_series(void) {{ return {series}; }}
"""
NEW_C = "int trust_new(int x) { return 10 * x; }\n"  # only from 1.3.0 on

CONSUMER_C = """\
#include <Python.h>
const char *trust_version(void);
int trust_new(int);
static PyObject *version(PyObject *s, PyObject *a) { return PyUnicode_FromString(trust_version()); }
static PyObject *new_(PyObject *s, PyObject *a) { return PyLong_FromLong(trust_new(4)); }
static PyMethodDef methods[] = {{"version", version, METH_NOARGS, NULL}, {"new", new_, METH_NOARGS, NULL},
                                {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_core", NULL, -1, methods};
PyMODINIT_FUNC PyInit__core(void) { return PyModule_Create(&module); }
"""

# In the child: the consumer's answer, the libtrust files mapped, and where `trust_native` came from.
CALL = """
import json, os, sys
import trust_consumer
maps = sorted({os.path.realpath(line.split(None, 5)[5].strip()) for line in open("/proc/self/maps")
               if len(line.split(None, 5)) == 6 and "libtrust" in line})
module = sys.modules.get("trust_native")
print(json.dumps({"answer": [trust_consumer.new(), trust_consumer.version()], "maps": maps,
                  "imported": module is not None and os.path.realpath(module.__file__)}))
"""

ERROR = "sharewheel: error: "


@dataclass(frozen=True)
class Trust:
    wheels: dict[str, Path]  # version → provider wheel
    consumer: Path  # trust_consumer, repaired against 1.3.0
    build_env: BuildEnv
    requirement: str  # its Requires-Dist on trust-native, as its manifest and hook record it

    def install(self, what: str, target: Path) -> Path:
        """`what` (a provider version, or "consumer") pip-installed into `target`."""
        return pip_target(self.build_env, self.consumer if what == "consumer" else self.wheels[what], target)


def library(site: Path) -> Path:
    """The installed provider's library file."""
    return one(list((site / "trust_native" / "lib").glob("libtrust-*.so")))


@pytest.fixture(scope="module")
def trust(build_env: BuildEnv, tmp_path_factory: pytest.TempPathFactory) -> Trust:
    find_tool("gcc", why="libtrust and the consumer are built with gcc")
    base = tmp_path_factory.mktemp("trust")
    wheels = {}
    for version in ("1.2.0", "1.3.0", "1.3.1", "2.0.0"):
        series = version.split(".")[0]
        source = LIBRARY_C.format(version=version, series=series) + ("" if version == "1.2.0" else NEW_C)
        prefix = build_c_library(base / f"prefix-{version}", "trust", f"libtrust.so.{series}", source)
        sharewheel("pack", prefix, "--name", "trust-native", "--version", version, "-w", base / f"wh-{version}")
        wheels[version] = one(list((base / f"wh-{version}").glob("*.whl")))
    project = base / "trust_consumer"
    (project / "trust_consumer").mkdir(parents=True)
    (project / "trust_consumer" / "__init__.py").write_text('"""trust_consumer."""\nfrom ._core import new, version\n')
    (project / "_core.c").write_text(CONSUMER_C)
    (project / "setup.py").write_text(textwrap.dedent(f"""\
        from setuptools import Extension, setup
        setup(name="trust-consumer", version="1.0.0", packages=["trust_consumer"],
              ext_modules=[Extension("trust_consumer._core", ["_core.c"],
                                     extra_link_args=["-L{base / 'prefix-1.3.0' / 'lib'}", "-ltrust"])])
        """))
    run([build_env.python, "-m", "pip", *PIP_QUIET, "wheel", "--no-build-isolation", "--no-deps", "-w",
         base / "dist", project])
    consumer = repair(one(list((base / "dist").glob("*.whl"))), base / "wheelhouse", "--provider", wheels["1.3.0"])
    [requirement] = requires_dist(consumer)
    assert requirement.specifier == SpecifierSet(">=1.3.0,==1.*"), requirement
    [link] = manifest_of(consumer)["links"]
    return Trust(wheels, consumer, build_env, link["requirement"])


def child(run_env: RunEnv, code: str, path: list[Path], *, cwd: Path, check: bool = True) -> dict:
    """`python -c code` in a fresh interpreter run in `cwd` ("" first on its sys.path), with
    PYTHONPATH `path`; the JSON object it prints, or its exit status and stderr."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, path)), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("LD_LIBRARY_PATH", None)
    result = run([run_env.python, "-c", textwrap.dedent(code)], env=env, cwd=cwd, check=check)
    if result.returncode != 0:
        return {"returncode": result.returncode, "stderr": result.stderr}
    return json.loads(result.stdout.strip().splitlines()[-1])


def check(*args: str | Path) -> tuple[int, str]:
    result = sharewheel("check", *args, check=False)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    return result.returncode, result.stdout


# --- the comparator the hook reads requirements with -------------------------------------------

VERSIONS = ["0", "1", "1.0", "1.0.0", "1.2", "1.2.0", "1.2.1", "1.3.0", "1.3.0a2", "1.3.0b1", "1.3.0rc1", "1.3.0.dev1",
            "1.3.0rc1.dev2", "1.3.0rc1.post1", "1.3.0.post1", "1.3.0.post1.dev3", "1.3.0.post2", "1.3.0+local",
            "1.3.0+abc.1", "1.3.0.post1+x", "1.3.1", "2.0", "2.0.0.post0", "1!1.0", "1!2.0", "3.1.4", "3.10", "10.0",
            "1.2.3.4"]
SPECIFIERS = ["", "==1.*", "==1.3.*", "!=1.3.*", ">=1.3.0", ">1.3.0", "<1.3.0", "<=1.3.0", "~=1.3", "~=1.3.0",
              "~=1.2.post1", "==1.3", "==1.3.0+local", "!=1.3.0", ">=1.3.0rc1", "<1.3.0rc1", ">1.3.0.post0", "<2",
              ">1.3", ">=1.3.0,==1.*", ">=3,>=3.1.4,==3.*", "===1.3.0", "==1!1.*", ">=1!1.0", "<1.3.0.dev1",
              "==1.2.3.4.*", "~=1.2.3.4", "<1.3.0.post1.dev1", ">1.3.0.post1.dev3"]
# where packaging's releases read PEP 440 differently, the loader reads it as 26 does
SINCE_26 = [">1.3.0.dev1", ">1.3.0rc1", "<1.3.0.post1"]


def test_the_loader_reads_requirements_as_packaging_does() -> None:
    specifiers = SPECIFIERS + (SINCE_26 if Version(packaging.__version__) >= Version("26") else [])
    for specifier in specifiers:
        clauses = loader.specifiers(f"trust-native[extra]{specifier}; python_version >= '3.8'")
        for text in VERSIONS:
            version = str(Version(text))  # normal form: what dist-infos and __version__ lines hold
            expected = SpecifierSet(specifier).contains(Version(text), prereleases=True)
            assert loader.admits(clauses, version) is expected, (specifier, version)
    # what it cannot read it says so (None), and candidates() then tries the copy after the admitted ones
    assert loader.specifiers("trust-native @ https://example.org/t.whl") is None
    assert loader.specifiers("trust-native=1.0") is None
    assert loader.admits(loader.specifiers("trust-native>=1"), "1.0-final") is None
    assert loader.admits(loader.specifiers("trust-native>=1"), None) is None
    assert loader.admits(loader.specifiers("trust-native"), "1.0") is True


# --- the hook ----------------------------------------------------------------------------------


def test_older_release_first_on_the_path_the_hook_loads_the_one_required_and_check_says_so(
        trust: Trust, run_env: RunEnv, tmp_path: Path) -> None:
    """1.2.0 (without trust_new) first, 1.3.0 after it, one series: the hook loads 1.3.0 (under a
    private name; `import trust_native` still gives 1.2.0); check reports the same choice and
    warns about the shadowed release."""
    site_c = trust.install("consumer", tmp_path / "C")
    site_old = trust.install("1.2.0", tmp_path / "old")
    site_new = trust.install("1.3.0", tmp_path / "new")
    assert library(site_old).name == library(site_new).name  # one series, one file name

    result = child(run_env, CALL, [site_c, site_old, site_new], cwd=tmp_path)
    assert result["answer"] == [40, "1.3.0"], result
    assert result["maps"] == [os.path.realpath(library(site_new))]
    assert result["imported"] is False  # the 1.2.0 copy was not imported: its library is not loaded
    later = child(run_env, CALL + "import trust_native; print(json.dumps(trust_native.__version__))",
                  [site_c, site_old, site_new], cwd=tmp_path)
    assert later == "1.2.0"

    status, out = check("--path", site_c, "--path", site_old, "--path", site_new)
    assert status == 0, out
    assert out.splitlines()[0] == (
        f"warning: trust-native 1.2.0 (in {site_old}) shadows trust-native 1.3.0 (in {site_new}): trust-consumer "
        f"1.0.0 requires {trust.requirement}, so its hook loads 1.3.0 under a private module name, while "
        f"`import trust_native` gives 1.2.0; remove trust-native 1.2.0 from {site_old}")
    report = json.loads(check("--path", site_c, "--path", site_old, "--path", site_new, "--json")[1])
    [link] = report["links"]
    assert (link["status"], link["provider_version"], link["file"]) == ("ok", "1.3.0", str(library(site_new)))

    # the newer release first: nothing shadowed, both choose it
    assert child(run_env, CALL, [site_c, site_new, site_old], cwd=tmp_path)["answer"] == [40, "1.3.0"]
    status, out = check("--path", site_c, "--path", site_new, "--path", site_old)
    assert (status, out) == (0, "No broken links found (1 link of 1 distribution checked).\n")
    # only 1.2.0: the hook's last resort, which cannot serve trust_new; check says what to install
    status, out = check("--path", site_c, "--path", site_old)
    assert status == 1 and out.splitlines()[0] == (
        f"trust-consumer 1.0.0 requires {trust.requirement} (the ABI series it was linked against), but "
        f"trust-native 1.2.0 (in {site_old}) is installed (pip install '{trust.requirement}')")
    failed = child(run_env, CALL, [site_c, site_old], cwd=tmp_path, check=False)
    assert "undefined symbol: trust_new" in failed["stderr"], failed


def test_copies_that_fail_to_load_are_skipped_and_each_one_tried_is_named(
        trust: Trust, run_env: RunEnv, tmp_path: Path) -> None:
    """A damaged copy of another series first on the path, then a damaged 1.3.0, then a good one:
    the good one is loaded. With every copy of the series damaged, the error names each."""
    site_c = trust.install("consumer", tmp_path / "C")
    other = trust.install("2.0.0", tmp_path / "series2")
    library(other).write_bytes(b"")  # damaged: importing it fails
    damaged = trust.install("1.3.0", tmp_path / "damaged")
    library(damaged).write_bytes(b"this is not a shared library\n" * 4)
    good = trust.install("1.3.1", tmp_path / "good")

    result = child(run_env, CALL, [site_c, other, damaged, good], cwd=tmp_path)
    assert result["answer"] == [40, "1.3.1"], result
    assert result["maps"] == [os.path.realpath(library(good))]

    library(good).write_bytes(library(good).read_bytes()[:64])  # truncated
    failed = child(run_env, CALL, [site_c, other, damaged, good], cwd=tmp_path, check=False)
    last = failed["stderr"].strip().splitlines()[-1]
    assert last.startswith("ImportError: trust-consumer needs the native library provider trust-native "
                           f"({trust.requirement}), but none of the 2 copies on sys.path that ship "
                           f"{library(good).name} loads: "), last
    assert f"{os.path.realpath(damaged / 'trust_native')}: trust-native: cannot load {os.path.realpath(library(damaged))}: " in last
    assert "invalid ELF header" in last and "(truncated?)" in last
    assert f"{os.path.realpath(good / 'trust_native')}: trust-native: cannot load {os.path.realpath(library(good))}: " in last
    assert str(other) not in last


def test_a_provider_planted_in_the_current_directory_is_never_loaded(
        trust: Trust, run_env: RunEnv, tmp_path: Path) -> None:
    """Under `python -c` ("" first on sys.path) and with the current directory also given as an
    absolute entry, a trust_native 1.3.1 planted there (admitted, newer) is neither imported nor
    loaded: the installed 1.3.0 is."""
    site_c = trust.install("consumer", tmp_path / "C")
    site = trust.install("1.3.0", tmp_path / "site")
    cwd = trust.install("1.3.1", tmp_path / "cwd")
    expected = {"answer": [40, "1.3.0"], "maps": [os.path.realpath(library(site))], "imported": False}
    assert child(run_env, CALL, [site_c, site], cwd=cwd) == expected
    assert child(run_env, CALL, [cwd, site_c, site], cwd=cwd) == expected  # the cwd spelt absolutely
    assert child(run_env, CALL, [site_c, "rel-nowhere", site], cwd=cwd) == expected
    # the copy in the current directory is the only one: not loaded, and the error says why
    failed = child(run_env, CALL, [site_c], cwd=cwd, check=False)
    assert failed["stderr"].strip().splitlines()[-1] == (
        f"ImportError: trust-consumer needs the native library provider trust-native ({trust.requirement}), "
        f"which is not installed; the copy in the current directory ({cwd}) is not loaded from there. "
        f"Fix it with: pip install '{trust.requirement}'")
    # run from elsewhere, the same directory is an ordinary install
    assert child(run_env, CALL, [site_c, cwd], cwd=tmp_path)["answer"] == [40, "1.3.1"]


# --- check -------------------------------------------------------------------------------------


def test_check_verify_names_the_library_file_that_changed(trust: Trust, tmp_path: Path) -> None:
    site_c = trust.install("consumer", tmp_path / "C")
    site = trust.install("1.3.0", tmp_path / "site")
    assert check("--path", site_c, "--path", site, "--verify")[0] == 0
    changed = library(site)
    data = bytearray(changed.read_bytes())
    data[-1] ^= 0xFF  # in the section headers' tail: the library still loads
    changed.write_bytes(bytes(data))
    [recorded] = manifest_of(trust.wheels["1.3.0"])["provides"]["libraries"]

    assert check("--path", site_c, "--path", site)[0] == 0  # without --verify nothing is hashed
    status, out = check("--path", site_c, "--path", site, "--verify")
    assert status == 1
    assert out.splitlines()[0] == (
        f"trust-native 1.3.0 (in {site}): {recorded['path']} changed since it was installed: its sha256 is "
        f"{hashlib.sha256(bytes(data)).hexdigest()}, not the {recorded['sha256']} its sharewheel.json records")
    [problem] = json.loads(check("--path", site_c, "--path", site, "--verify", "--json")[1])["problems"]
    assert (problem["kind"], problem["distribution"], problem["library"]) == ("modified", "trust-native", recorded["path"])

    changed.unlink()
    status, out = check("--path", site, "--verify")
    assert status == 1 and out.splitlines()[0] == (
        f"trust-native 1.3.0 (in {site}): {recorded['path']} changed since it was installed: it is missing")


def test_two_dist_infos_left_side_by_side_by_pip_target(trust: Trust, run_env: RunEnv, tmp_path: Path) -> None:
    """`pip install --target DIR --upgrade` replaces the package but leaves the old dist-info:
    check names both, says whose files are installed, and audits with that one."""
    site_c = trust.install("consumer", tmp_path / "C")
    site = trust.install("1.3.0", tmp_path / "site")
    trust.build_env.pip("install", "--no-index", "--no-deps", "--upgrade", "--target", site, trust.wheels["1.2.0"])
    trust.build_env.pip("install", "--no-index", "--no-deps", "--upgrade", "--target", site, trust.wheels["1.3.1"])
    infos = sorted(p.name for p in site.glob("*.dist-info"))
    assert infos == ["trust_native-1.2.0.dist-info", "trust_native-1.3.0.dist-info", "trust_native-1.3.1.dist-info"]
    assert child(run_env, CALL, [site_c, site], cwd=tmp_path)["answer"] == [40, "1.3.1"]

    status, out = check("--path", site_c, "--path", site)
    assert status == 1
    assert out.splitlines() == [
        (f"trust-native: 3 dist-infos in {site} (1.2.0, 1.3.0, 1.3.1), as `pip install --target` leaves them; the "
         f"installed files are 1.3.1's: remove {site / infos[0]} and {site / infos[1]}"),
        "1 problem found (1 link of 1 distribution checked).",
    ]
    report = json.loads(check("--path", site_c, "--path", site, "--json")[1])
    assert [(p["distribution"], p["version"]) for p in report["providers"]] == [("trust-native", "1.3.1")]
    assert [(link["status"], link["provider_version"]) for link in report["links"]] == [("ok", "1.3.1")]
    assert report["problems"][0]["kind"] == "duplicate-dist-info"


def test_one_broken_distribution_is_reported_and_the_rest_is_checked(trust: Trust, tmp_path: Path) -> None:
    """A dist-info whose METADATA is not UTF-8 and one whose RECORD is not: one line naming each,
    the consumer's link still checked, exit status 1 (not an internal error)."""
    site_c = trust.install("consumer", tmp_path / "C")
    site = trust.install("1.3.0", tmp_path / "site")
    metadata = site / "garbled-1.0.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_bytes(b"Metadata-Version: 2.1\nName: garbled\nVersion: 1.0\nSummary: \xff\xfe\n")
    record = site / "recorded-1.0.dist-info"
    record.mkdir()
    (record / "METADATA").write_bytes(b"Metadata-Version: 2.1\nName: recorded\nVersion: 1.0\n")
    (record / "RECORD").write_bytes(b"recorded/__init__.py,,\n\xff\xfe,,\n")
    before = {p: p.read_bytes() for p in (metadata / "METADATA", record / "RECORD")}

    status, out = check("--path", site_c, "--path", site)
    assert status == 1, out
    lines = out.splitlines()
    assert lines[-1] == "2 problems found (1 link of 1 distribution checked)."
    assert lines[0].startswith(f"{metadata}: cannot read its metadata (UnicodeDecodeError: ")
    assert lines[1].startswith(f"recorded 1.0: cannot read its installed files (in {site}: UnicodeDecodeError: ")
    assert len(lines) == 3
    assert {p: p.read_bytes() for p in before} == before
    report = json.loads(check("--path", site_c, "--path", site, "--json")[1])
    assert [p["kind"] for p in report["problems"]] == ["unreadable", "unreadable"]
    assert [link["status"] for link in report["links"]] == ["ok"]


def test_check_verify_bad_input_is_one_error_line(tmp_path: Path) -> None:
    result = sharewheel("check", "--verify", "--path", tmp_path / "nowhere", check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [f"{ERROR}--path {tmp_path / 'nowhere'}: no such directory"]
