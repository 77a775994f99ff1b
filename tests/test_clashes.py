"""`sharewheel check` warns of runtimes that clash when two installed wheels each carry a copy:
gcc-built OpenMP extensions repaired by auditwheel (each vendoring a hashed libgomp copy: of the
system's libgomp, named alike in two wheels, or of another build), pip-installed into one --target
directory and imported together; and a libstdc++.so.6 older than a C++ extension beside it needs."""

from __future__ import annotations

import json
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    PIP_QUIET,
    BuildEnv,
    RunEnv,
    auditwheel_repair,
    one,
    pip_target,
    run,
    setuptools_pyproject,
    sharewheel,
)

OPENMP_C = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <omp.h>
static PyObject *total(PyObject *s, PyObject *args) {{
    long n, sum = 0;
    if (!PyArg_ParseTuple(args, "l", &n)) return NULL;
    #pragma omp parallel for reduction(+:sum)
    for (long i = 1; i <= n; i++) sum += i;
    return PyLong_FromLong(sum);
}}
static PyObject *threads(PyObject *s, PyObject *a) {{ return PyLong_FromLong(omp_get_max_threads()); }}
static PyMethodDef methods[] = {{{{"total", total, METH_VARARGS, NULL}}, {{"threads", threads, METH_NOARGS, NULL}},
                                 {{NULL, NULL, 0, NULL}}}};
static struct PyModuleDef module = {{PyModuleDef_HEAD_INIT, "_omp", NULL, -1, methods}};
PyMODINIT_FUNC PyInit__omp(void) {{ return PyModule_Create(&module); }}
"""


def openmp_wheel(build_env: BuildEnv, where: Path, package: str, libgomp_dir: Path | None = None) -> Path:
    """PACKAGE._omp built with gcc -fopenmp, then repaired by auditwheel: PACKAGE.libs holds its
    copy of libgomp (the system's, or the one in `libgomp_dir`)."""
    project = where / package
    (project / "src" / package).mkdir(parents=True)
    (project / "src" / "_omp.c").write_text(OPENMP_C.format())
    (project / "src" / package / "__init__.py").write_text(f'"""{package}: OpenMP test wheel."""\n')
    setuptools_pyproject(project, package.replace("_", "-"), [package])
    (project / "setup.py").write_text(
        "from setuptools import Extension, setup\n"
        f'setup(ext_modules=[Extension("{package}._omp", ["src/_omp.c"], extra_compile_args=["-fopenmp"], '
        'extra_link_args=["-fopenmp"])])\n')
    run([build_env.python, "-m", "pip", *PIP_QUIET, "wheel", "--no-build-isolation", "--no-deps",
         "-w", where / "dist", project])
    built = one(list((where / "dist").glob(f"{package}-*.whl")))
    return auditwheel_repair(built, where / "audited", [libgomp_dir] if libgomp_dir is not None else [])


def libgomp_copy(wheel: Path, package: str) -> str:
    """The wheel path of its vendored libgomp, read from the zip."""
    with zipfile.ZipFile(wheel) as zf:
        return one([n for n in zf.namelist() if re.fullmatch(rf"{package}\.libs/libgomp-[0-9a-f]{{8}}\.so\.1.*", n)])


@dataclass(frozen=True)
class Sites:
    same: Path  # omp-one and omp-two: the system's libgomp, which auditwheel names alike in both
    other: Path  # omp-one and omp-three: omp-three's libgomp is another build (another name)
    copies: dict[str, str]  # distribution → its libgomp copy's path in the wheel


def another_libgomp(where: Path) -> Path:
    """The system's libgomp.so.1 with one more note section: another file, as another toolchain's
    libgomp is, so auditwheel hashes it to another name. Its code is the same: it runs."""
    system = Path(one([l.split(" => ")[1] for l in run(["/sbin/ldconfig", "-p"]).stdout.splitlines()
                       if "libgomp.so.1 (" in l and "x86-64" in l]).strip())
    where.mkdir(parents=True)
    note = where / "note"
    note.write_bytes(b"another build\0")
    run(["objcopy", "--add-section", f".note.another={note}", system, where / "libgomp.so.1"])
    return where


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory, build_env: BuildEnv) -> Sites:
    base = tmp_path_factory.mktemp("openmp")
    wheels, copies = {}, {}
    for package, libgomp_dir in (("omp_one", None), ("omp_two", None), ("omp_three", another_libgomp(base / "gomp"))):
        wheels[package] = openmp_wheel(build_env, base / package, package, libgomp_dir)
        copies[package.replace("_", "-")] = libgomp_copy(wheels[package], package)
    assert copies["omp-one"].split("/")[1] == copies["omp-two"].split("/")[1] != copies["omp-three"].split("/")[1]
    for site, packages in ((base / "same", ("omp_one", "omp_two")), (base / "other", ("omp_one", "omp_three"))):
        for package in packages:
            pip_target(build_env, wheels[package], site)
    return Sites(base / "same", base / "other", copies)


LOADED = """
import importlib, sys
results = [importlib.import_module(f"{name}._omp").total(1000) for name in sys.argv[1:]]
print(results)
print(sorted({l.split()[-1] for l in open("/proc/self/maps") if "/libgomp" in l}))
"""


def loaded(run_env: RunEnv, site: Path, *packages: str) -> list[str]:
    """The libgomp files mapped into one process that imported PACKAGES (each computing a sum)."""
    result = run([run_env.python, "-c", LOADED, *packages], env={"PYTHONPATH": str(site), "LD_LIBRARY_PATH": ""})
    sums, files = result.stdout.splitlines()
    assert eval(sums) == [500500] * len(packages)
    return eval(files)


def test_two_openmp_runtimes_are_a_warning_naming_both(sites: Sites, run_env: RunEnv) -> None:
    site = sites.other
    copies = {d: sites.copies[d] for d in ("omp-one", "omp-three")}
    # the clash is real: one process that imports both maps both copies
    assert loaded(run_env, site, "omp_one", "omp_three") == sorted(str(site / p) for p in copies.values())

    result = sharewheel("check", "--path", site, check=False)
    assert result.returncode == 0, result  # a warning: nothing recorded is broken
    listed = ", ".join(f"{d} 1.0.0 ({p})" for d, p in sorted(copies.items()))
    lines = result.stdout.strip().splitlines()
    assert lines[0] == (
        "warning: OpenMP runtimes: each copy runs its own thread pool, and libiomp5/libomp abort or hang next to "
        f"another copy: 2 copies in 2 distributions, which clash when imported into one process: {listed}")
    assert lines[1] == "Vendored more than once:" and lines[2].startswith("  libgomp: 2 copies in 2 distributions")
    assert lines[-1] == "No broken links found (0 links of 0 distributions checked)."

    report = json.loads(sharewheel("check", "--path", site, "--json").stdout)
    assert report["ok"] is True and report["problems"] == []
    [clash] = report["clashes"]
    assert clash["family"] == "openmp" and clash["needed_by"] == [] and clash["message"] == lines[0][len("warning: "):]
    assert [(c["distribution"], c["path"]) for c in clash["copies"]] == [
        (d, str(site / p)) for d, p in sorted(copies.items())]


def test_copies_of_one_soname_are_loaded_once_and_do_not_clash(sites: Sites, run_env: RunEnv) -> None:
    site = sites.same
    # auditwheel named both copies alike: the loader maps the first imported only, for both
    [mapped] = loaded(run_env, site, "omp_two", "omp_one")
    assert mapped == str(site / sites.copies["omp-two"])
    result = sharewheel("check", "--path", site)
    assert "warning:" not in result.stdout
    assert "  libgomp: 2 copies in 2 distributions" in result.stdout  # still bytes sharing would save
    report = json.loads(sharewheel("check", "--path", site, "--json").stdout)
    assert report["clashes"] == [] and [d["library"] for d in report["duplicates"]] == ["libgomp"]


FAKE_STDCXX = "int fake_old(void) { return 1; }\nint fake_older(void) { return 2; }\n"
FAKE_MAP = "GLIBCXX_3.4 { global: fake_older; local: *; };\nGLIBCXX_3.4.20 { global: fake_old; } GLIBCXX_3.4;\n"
CXX = """\
#include <Python.h>
#include <string>
static PyObject *text(PyObject *s, PyObject *a) { std::string t = std::to_string(42); return PyUnicode_FromString(t.c_str()); }
static PyMethodDef methods[] = {{"text", text, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cxx", NULL, -1, methods};
PyMODINIT_FUNC PyInit__cxx(void) { return PyModule_Create(&module); }
"""


def setuptools_wheel(build_env: BuildEnv, project: Path, out: Path, setup: str, files: dict[str, str | bytes]) -> Path:
    for relative, content in files.items():
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (project / relative).write_bytes(content)
        else:
            (project / relative).write_text(content)
    (project / "setup.py").write_text(setup)
    run([build_env.python, "-m", "pip", *PIP_QUIET, "wheel", "--no-build-isolation", "--no-deps", "-w", out, project])
    return one(list(out.glob("*.whl")))


def glibcxx_needed(path: Path) -> list[str]:
    """The GLIBCXX versions a binary needs of libstdc++.so.6, read with pyelftools."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        section = ELFFile(f).get_section_by_name(".gnu.version_r")
        return [aux.name for verneed, auxes in section.iter_versions() if verneed.name == "libstdc++.so.6"
                for aux in auxes if aux.name.startswith("GLIBCXX_")]


def test_old_libstdcxx_under_its_plain_soname_is_a_warning(build_env: BuildEnv, tmp_path: Path) -> None:
    """A wheel carrying a libstdc++.so.6 that defines GLIBCXX up to 3.4.20, beside a C++ extension
    built here (g++ 12: its std::string needs GLIBCXX_3.4.21 at least)."""
    source = tmp_path / "fake.c"
    source.write_text(FAKE_STDCXX)
    (tmp_path / "fake.map").write_text(FAKE_MAP)
    library = tmp_path / "libstdc++.so.6"
    run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libstdc++.so.6", f"-Wl,--version-script={tmp_path / 'fake.map'}",
         "-o", library, source])
    old = setuptools_wheel(
        build_env, tmp_path / "oldcxx", tmp_path / "old",
        'from setuptools import setup\nsetup(name="oldcxx", version="1.0.0", packages=["oldcxx"], '
        'package_data={"oldcxx": ["lib/*"]})\n',
        {"oldcxx/__init__.py": "", "oldcxx/lib/libstdc++.so.6": library.read_bytes()})
    user = setuptools_wheel(
        build_env, tmp_path / "cxxuser", tmp_path / "user",
        'from setuptools import Extension, setup\nsetup(name="cxxuser", version="1.0.0", packages=["cxxuser"], '
        'ext_modules=[Extension("cxxuser._cxx", ["_cxx.cpp"], language="c++")])\n',
        {"cxxuser/__init__.py": "", "_cxx.cpp": CXX})
    site = tmp_path / "site"
    for wheel in (old, user):
        pip_target(build_env, wheel, site)
    extension = one(list((site / "cxxuser").glob("_cxx*.so")))
    newest = max(glibcxx_needed(extension), key=lambda v: tuple(int(p) for p in v.split("_")[1].split(".")))
    assert tuple(int(p) for p in newest.split("_")[1].split(".")) > (3, 4, 20), newest

    result = sharewheel("check", "--path", site, check=False)
    assert result.returncode == 0, result
    assert result.stdout.splitlines()[0] == (
        "warning: libstdc++: oldcxx 1.0.0 (oldcxx/lib/libstdc++.so.6) is named libstdc++.so.6 but defines GLIBCXX up "
        f"to 3.4.20 only, while cxxuser 1.0.0 (cxxuser/{extension.name}) needs {newest}: imported after it, "
        "they fail to load")
    [clash] = json.loads(sharewheel("check", "--path", site, "--json").stdout)["clashes"]
    assert clash["family"] == "libstdc++"
    assert [c["path"] for c in clash["needed_by"]] == [str(extension)]

    # and it is so: the old copy loaded first, the extension does not load
    code = (f"import ctypes; ctypes.CDLL({str(site / 'oldcxx/lib/libstdc++.so.6')!r}, mode=ctypes.RTLD_GLOBAL); "
            "import cxxuser._cxx")
    result = run([sys.executable, "-c", code], env={"PYTHONPATH": str(site)}, check=False)
    assert result.returncode == 1, result
    missing = rf"oldcxx/lib/libstdc\+\+\.so\.6: version `[A-Z_0-9.]+' not found \(required by {re.escape(str(extension))}"
    assert re.search(missing, result.stderr), result.stderr
