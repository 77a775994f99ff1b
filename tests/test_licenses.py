"""Licences (issue 17): a provider wheel carries its library's licence files and SPDX expression
as PEP 639 writes them, and repair copies in the licence of each library it vendors that the
host's package database knows, warning about the others."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import (
    PIP_QUIET,
    BuildEnv,
    RunEnv,
    build_acme,
    build_c_library,
    one,
    pip_target,
    run,
    sharewheel,
)
from packaging.metadata import Metadata
from test_hostile import edit_wheel

from sharewheel.licenses import package_licenses
from sharewheel.metadata import add_licenses

ACME_LICENSE = "Copyright (c) acme authors\n\nPermission is hereby granted, free of charge ...\n"


def _metadata(wheel: Path) -> tuple[str, Metadata, set[str]]:
    """METADATA's text, as packaging reads and validates it, and the wheel's entries."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        text = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    return text, Metadata.from_email(text, validate=True), names


def _twine_check(wheel: Path) -> None:
    """twine's own metadata check, warnings as errors (what PyPI would refuse or mis-render)."""
    result = run([sys.executable, "-m", "twine", "check", "--strict", wheel], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _acme_prefix(tmp_path: Path) -> Path:
    prefix = build_acme(tmp_path / "prefix", "1.2.0")
    (prefix / "share" / "licenses" / "acme").mkdir(parents=True)
    (prefix / "share" / "licenses" / "acme" / "LICENSE").write_text(ACME_LICENSE)
    return prefix


def test_pack_ships_the_prefix_licence_and_the_expression(tmp_path: Path) -> None:
    prefix = _acme_prefix(tmp_path)
    result = sharewheel("pack", prefix, "--name", "acme-native", "--version", "1.2.0", "--license", "mit or apache-2.0",
                        "-w", tmp_path / "wheelhouse")
    [said] = [line for line in result.stderr.splitlines() if "licence files found" in line]
    assert "share/licenses/acme/LICENSE" in said and "--license-file" in said
    wheel = one(list((tmp_path / "wheelhouse").glob("*.whl")))

    text, metadata, names = _metadata(wheel)
    assert text.startswith("Metadata-Version: 2.4\n")
    assert metadata.license_expression == "MIT OR Apache-2.0"  # canonical SPDX, as given
    assert metadata.license_files == ["share/licenses/acme/LICENSE"]
    stored = "acme_native-1.2.0.dist-info/licenses/share/licenses/acme/LICENSE"
    assert stored in names
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read(stored).decode() == ACME_LICENSE
    _twine_check(wheel)

    # pip installs it; `pip show` lists the licence file, the installed metadata has the expression
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    run([python, "-m", "pip", *PIP_QUIET, "install", "--no-index", "--no-deps", wheel])
    shown = run([python, "-m", "pip", "show", "-f", "acme-native"]).stdout
    assert f"  {stored}" in shown.splitlines(), shown
    if "License-Expression:" in shown:  # (pip >= 25.1 shows it; older ones show the License field only)
        assert "License-Expression: MIT OR Apache-2.0" in shown, shown
    code = ("import importlib.metadata as m; d = m.distribution('acme-native'); "
            "print(d.metadata['License-Expression']); print(d.metadata.get_all('License-File'))")
    installed = run([python, "-c", code]).stdout
    assert installed.splitlines() == ["MIT OR Apache-2.0", "['share/licenses/acme/LICENSE']"]


def test_license_files_given_replace_the_ones_found(tmp_path: Path) -> None:
    prefix = _acme_prefix(tmp_path)
    (prefix / "COPYING.acme").write_text("acme's terms\n")
    outside = tmp_path / "elsewhere" / "NOTICE"
    outside.parent.mkdir()
    outside.write_text("acme notice\n")
    result = sharewheel("pack", prefix, "--name", "acme-native", "--version", "1.2.0",
                        "--license-file", "COPYING.acme", "--license-file", outside, "-w", tmp_path / "wheelhouse")
    assert "licence files found" not in result.stderr
    wheel = one(list((tmp_path / "wheelhouse").glob("*.whl")))
    text, metadata, names = _metadata(wheel)
    assert metadata.license_files == ["COPYING.acme", "NOTICE"]
    assert "License-Expression" not in text  # never guessed
    licenses = sorted(n for n in names if "/licenses/" in n)
    assert licenses == ["acme_native-1.2.0.dist-info/licenses/COPYING.acme",
                        "acme_native-1.2.0.dist-info/licenses/NOTICE"]
    _twine_check(wheel)


def test_pack_without_any_licence_writes_none(tmp_path: Path) -> None:
    """Nothing found, nothing given: no License-* header (never guessed), Metadata-Version as before."""
    prefix = build_acme(tmp_path / "prefix", "1.2.0")
    result = sharewheel("pack", prefix, "--name", "acme-native", "--version", "1.2.0", "-w", tmp_path / "wheelhouse")
    assert result.stderr == ""
    text, metadata, names = _metadata(one(list((tmp_path / "wheelhouse").glob("*.whl"))))
    assert not metadata.license_files and not any("/licenses/" in n for n in names)
    assert text.startswith("Metadata-Version: 2.1\n") and "License" not in text


@pytest.mark.parametrize(("args", "expected"), [
    (["--license-file", "no/such/LICENSE"], "no/such/LICENSE: no such file (a relative path is taken from PREFIX"),
    (["--license-file", "share/licenses"], "share/licenses: a directory; give each licence file"),
    (["--license-file", "fifo"], "fifo: not a regular file"),
    (["--license-file", "HUGE"], "more than a licence file's 1048576"),
    (["--license", "MIT ANDD GPL-2.0-only"], "--license 'MIT ANDD GPL-2.0-only': not a valid SPDX license expression"),
    (["--license", "Not-A-Licence-1.0"], "not a valid SPDX license expression"),
])
def test_bad_licence_options_are_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    prefix = _acme_prefix(tmp_path)
    os.mkfifo(prefix / "fifo")
    (prefix / "HUGE").write_bytes(b"x" * ((1 << 20) + 1))
    out = tmp_path / "wheelhouse"
    result = sharewheel("pack", prefix, "--name", "acme-native", "--version", "1.2.0", *args, "-w", out, check=False)
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert line.startswith("sharewheel: error: ") and expected in line, line
    assert not out.exists()


# --- repair: the licences of vendored libraries ----------------------------------------------

EXTENSION_C = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>
unsigned ZSTD_versionNumber(void);  /* libzstd1's runtime library, linked by path: no -dev package */
int extra_twice(int);
int bare_three(void);
static PyObject *check(PyObject *s, PyObject *a) {
    return Py_BuildValue("(Iii)", ZSTD_versionNumber(), extra_twice(21), bare_three());
}
static PyMethodDef methods[] = {{"check", check, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_core", NULL, -1, methods};
PyMODINIT_FUNC PyInit__core(void) { return PyModule_Create(&module); }
"""


def _debian_library(soname: str) -> tuple[Path, str]:
    """A library of the host's (Debian's) and the package dpkg says installed it."""
    if shutil.which("dpkg-query") is None:
        pytest.fail("dpkg-query not found: the vendored licence comes from Debian's package database "
                    "(the tests run on Debian)", pytrace=False)
    found = [line.split()[-1] for line in run(["/sbin/ldconfig", "-p"]).stdout.splitlines()
             if line.strip().startswith(f"{soname} ") and "x86-64" in line]
    if not found:
        pytest.fail(f"{soname} not installed (Debian's libzstd1, which apt and dpkg need)", pytrace=False)
    owner = run(["dpkg-query", "-S", os.path.realpath(found[0])]).stdout.split(":")[0]
    return Path(found[0]), owner


def _consumer_wheel(build_env: BuildEnv, tmp_path: Path, libraries: list[str | Path]) -> Path:
    """A setuptools project (readme, `license = "BSD-3-Clause"`, a LICENSE file) whose extension
    links `libraries`: its wheel carries setuptools' own License-Expression and License-File."""
    project = tmp_path / "project"
    (project / "src" / "lic_consumer").mkdir(parents=True)
    (project / "src" / "lic_consumer" / "__init__.py").write_text('"""A test consumer."""\n')
    (project / "src" / "_core.c").write_text(EXTENSION_C)
    (project / "README.md").write_text("# lic-consumer\n\nA consumer linking libraries repair vendors.\n")
    (project / "LICENSE").write_text("BSD 3-clause terms of lic-consumer\n")
    (project / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=77"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "lic-consumer"
        version = "1.0.0"
        description = "A consumer whose wheel vendors libraries"
        readme = "README.md"
        license = "BSD-3-Clause"
        license-files = ["LICENSE"]
        [tool.setuptools]
        package-dir = {"" = "src"}
        packages = ["lic_consumer"]
        """))
    (project / "setup.py").write_text(
        "from setuptools import Extension, setup\n"
        f"setup(ext_modules=[Extension('lic_consumer._core', ['src/_core.c'], extra_link_args={list(map(str, libraries))!r})])\n")
    run([build_env.python, "-m", "pip", *PIP_QUIET, "wheel", "--no-build-isolation", "--no-deps",
         "-w", tmp_path / "dist", project])
    return one(list((tmp_path / "dist").glob("*.whl")))


def test_repair_copies_the_licences_of_vendored_libraries(
    tmp_path: Path, build_env: BuildEnv, run_env: RunEnv, extra_prefix: Path
) -> None:
    zstd, package = _debian_library("libzstd.so.1")
    copyright_file = Path("/usr/share/doc", package, "copyright")
    # libextra's prefix installs its licence (share/licenses/extra/LICENSE); libbare's none
    bare = build_c_library(tmp_path / "bare", "bare", "libbare.so.1", "int bare_three(void) { return 3; }\n")
    wheel = _consumer_wheel(build_env, tmp_path, [
        zstd, f"-L{extra_prefix / 'lib'}", "-lextra", f"-L{bare / 'lib'}", "-lbare"])
    before, _, _ = _metadata(wheel)
    env = {"LD_LIBRARY_PATH": f"{extra_prefix / 'lib'}{os.pathsep}{bare / 'lib'}"}

    # --dry-run decides the same: the same warning, nothing written
    dry = sharewheel("repair", wheel, "-w", tmp_path / "dry", "--dry-run", env=env)
    assert [line for line in dry.stderr.splitlines() if "licence was found neither" in line] == [
        line for line in dry.stderr.splitlines() if "libbare" in line] != []
    assert not (tmp_path / "dry").exists()
    shown = sharewheel("show", wheel, env=env)
    assert [line for line in shown.stderr.splitlines() if "licence was found neither" in line] == [
        line for line in shown.stderr.splitlines() if "libbare" in line] != []
    licence_lines = sorted(re.sub(r"-[0-9a-f]{8}\.so[.0-9]*:", ".so:", line)
                           for line in dry.stdout.splitlines() if line.startswith("  licence of "))
    assert licence_lines == [
        "  licence of lic_consumer.libs/libbare.so: not found",
        f"  licence of lic_consumer.libs/libextra.so: copied from extra ({extra_prefix})",
        f"  licence of lic_consumer.libs/libzstd.so: copied from {package} (dpkg)",
    ], dry.stdout

    result = sharewheel("repair", wheel, "-w", tmp_path / "out", env=env)
    warnings = [line for line in result.stderr.splitlines() if "licence was found neither" in line]
    assert len(warnings) == 1, result.stderr
    assert f"vendored {bare / 'lib' / 'libbare.so.1'}" in warnings[0], warnings
    assert "libzstd" not in result.stderr and "libextra" not in result.stderr
    repaired = one(list((tmp_path / "out").glob("*.whl")))

    text, metadata, names = _metadata(repaired)
    dist_info = "lic_consumer-1.0.0.dist-info"
    assert {n for n in names if n.startswith(f"{dist_info}/licenses/")} == {
        f"{dist_info}/licenses/LICENSE", f"{dist_info}/licenses/{package}/copyright",
        f"{dist_info}/licenses/extra/LICENSE"}
    with zipfile.ZipFile(repaired) as zf:
        assert zf.read(f"{dist_info}/licenses/{package}/copyright") == copyright_file.read_bytes()
        assert zf.read(f"{dist_info}/licenses/extra/LICENSE") == (extra_prefix / "share/licenses/extra/LICENSE").read_bytes()
    assert metadata.license_files == ["LICENSE", "extra/LICENSE", f"{package}/copyright"]
    assert metadata.license_expression == "BSD-3-Clause"  # the project's own, kept
    # every other header and the description as setuptools wrote them
    assert [line for line in text.splitlines() if not line.startswith("License-File:")] == \
        [line for line in before.splitlines() if not line.startswith("License-File:")]
    _twine_check(repaired)

    # and the repaired wheel works: its vendored copies load from the wheel
    site = pip_target(build_env, repaired, tmp_path / "site")
    version = subprocess.run([sys.executable, "-c", "import ctypes; print(ctypes.CDLL('libzstd.so.1').ZSTD_versionNumber())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    checked = run_env.run("import lic_consumer._core as c; print(c.check())", [site]).stdout.strip()
    assert checked == f"({version}, 42, 3)"


def test_older_metadata_repaired_twice(tmp_path: Path, build_env: BuildEnv, extra_prefix: Path) -> None:
    """A Metadata 2.1 wheel as setuptools < 77 wrote it (`License:`, and `License-File: LICENSE`
    naming `<dist-info>/LICENSE`) becomes 2.4 with its licence also under licenses/, where 2.4
    looks for it; repaired again, it names each licence file once."""
    zstd, package = _debian_library("libzstd.so.1")
    built = _consumer_wheel(build_env, tmp_path, [zstd, f"-L{extra_prefix / 'lib'}", "-lextra"])
    dist_info = "lic_consumer-1.0.0.dist-info"

    def older(name: str, data: bytes) -> bytes:
        if name != f"{dist_info}/METADATA":
            return data
        return data.replace(b"Metadata-Version: 2.4\n", b"Metadata-Version: 2.1\n").replace(
            b"License-Expression: BSD-3-Clause\n", b"License: BSD-3-Clause\n")

    with zipfile.ZipFile(built) as zf:
        licence = zf.read(f"{dist_info}/licenses/LICENSE")
    (tmp_path / "old").mkdir()
    wheel = edit_wheel(built, tmp_path / "old", transform=older, drop=[f"{dist_info}/licenses/LICENSE"],
                       add={f"{dist_info}/LICENSE": licence})
    env = {"LD_LIBRARY_PATH": str(extra_prefix / "lib")}
    sharewheel("repair", wheel, "-w", tmp_path / "once", env=env)
    once = one(list((tmp_path / "once").glob("*.whl")))
    text, metadata, names = _metadata(once)
    assert text.startswith("Metadata-Version: 2.4\n") and "\nLicense: BSD-3-Clause\n" in text
    assert metadata.license_files == ["LICENSE", "extra/LICENSE", f"{package}/copyright"]
    assert {f"{dist_info}/LICENSE", f"{dist_info}/licenses/LICENSE"} <= names
    _twine_check(once)

    sharewheel("repair", once, "-w", tmp_path / "twice", env=env)
    _, metadata, names = _metadata(one(list((tmp_path / "twice").glob("*.whl"))))
    assert metadata.license_files == ["LICENSE", "extra/LICENSE", f"{package}/copyright"]
    assert sum(n.endswith(f"licenses/{package}/copyright") for n in names) == 1


def test_merged_usr_paths_are_found_in_dpkg() -> None:
    """On merged-/usr Debian, dpkg lists many libraries under /lib while lddtree finds them under
    /usr/lib: the lookup tries both names."""
    if shutil.which("dpkg-query") is None:
        pytest.fail("dpkg-query not found: this is about Debian's package database (the tests run on Debian)",
                    pytrace=False)
    for soname in ("libz.so.1", "libexpat.so.1", "liblzma.so.5", "libbz2.so.1.0"):
        found = [line.split()[-1] for line in run(["/sbin/ldconfig", "-p"]).stdout.splitlines()
                 if line.strip().startswith(f"{soname} ") and "x86-64" in line]
        real = os.path.realpath(found[0]) if found else None
        if real and run(["dpkg-query", "-S", real], check=False).returncode != 0 and real.startswith("/usr/lib/") \
                and run(["dpkg-query", "-S", real[len("/usr"):]], check=False).returncode == 0:
            break
    else:
        pytest.fail("no library here that dpkg lists under /lib only: not a merged-/usr Debian (12 and later "
                    "are; the tests run on one)", pytrace=False)
    owner = package_licenses(real)
    assert owner is not None, real
    package = run(["dpkg-query", "-S", real[len("/usr"):]]).stdout.split(":")[0]
    assert owner == (f"{package} (dpkg)", [(Path("/usr/share/doc", package, "copyright"), f"{package}/copyright")])


def test_license_files_added_to_older_metadata_keep_the_rest() -> None:
    """A Metadata 2.1 METADATA (setuptools < 77) gets License-File after its License header,
    Metadata-Version 2.4, and every other header and its description byte for byte."""
    before = ("Metadata-Version: 2.1\nName: old\nVersion: 1.0\nLicense: BSD\n  with a continuation\n"
              "Classifier: License :: OSI Approved\nRequires-Dist: numpy\n\nThe description.\n\nLicense: not a header\n")
    after = add_licenses(before, ["libz1/copyright", "libz1/copyright", "x/COPYING"])
    assert after == ("Metadata-Version: 2.4\nName: old\nVersion: 1.0\nLicense: BSD\n  with a continuation\n"
                     "License-File: libz1/copyright\nLicense-File: x/COPYING\n"
                     "Classifier: License :: OSI Approved\nRequires-Dist: numpy\n\nThe description.\n\n"
                     "License: not a header\n")
    assert add_licenses(after, ["x/COPYING"]) == after  # named once
