"""Third-party native-lib wheels from PyPI as providers, through the shipped plugins: a consumer
built with gcc/g++ against the real provider wheel is repaired to link to it (nothing vendored),
gets the plugin's Requires-Dist, and runs from a split install in either sys.path order."""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    PIP_QUIET,
    BuildEnv,
    RunEnv,
    elf_dynamic,
    manifest_of,
    one,
    pip_target,
    repair,
    requires_dist,
    run,
    setuptools_pyproject,
    sharewheel,
    unpack,
)

Site = Callable[..., Path]


@pytest.fixture(scope="session")
def provider_site(pypi_wheel: Callable[[str], Path], build_env: BuildEnv,
                  tmp_path_factory: pytest.TempPathFactory) -> Site:
    """`provider_site(key, role)`: the PyPI wheel `key` pip-installed into a --target directory of
    its own, one per role: consumers are built against the "build" copy and run with the "run" one."""
    sites: dict[tuple[str, str], Path] = {}

    def get(key: str, role: str = "run") -> Path:
        if (key, role) not in sites:
            sites[key, role] = pip_target(build_env, pypi_wheel(key), tmp_path_factory.mktemp(f"{key}-{role}"))
        return sites[key, role]

    return get


MODULE = """
static PyMethodDef methods[] = {{"call", call, METH_VARARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ext", NULL, -1, methods};
PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&module); }
"""


def build_consumer(build_env: BuildEnv, where: Path, package: str, body: str, compile_args: list[str],
                   link_args: list[str], *, cxx: bool = False) -> Path:
    """The wheel of a setuptools project: package PACKAGE whose extension `_ext` has `call`,
    defined by the C (or C++) `body`, built by gcc (g++) with these arguments."""
    project = where / package
    (project / package).mkdir(parents=True)
    source = f"_ext.{'cpp' if cxx else 'c'}"  # outside the package, so not in the wheel
    (project / source).write_text("#define PY_SSIZE_T_CLEAN\n#include <Python.h>\n" + textwrap.dedent(body) + MODULE)
    (project / package / "__init__.py").write_text(f'"""{package}."""\nfrom {package}._ext import call\n')
    setuptools_pyproject(project, package.replace("_", "-"), [package], src_layout=False)
    (project / "setup.py").write_text(textwrap.dedent(f"""\
        from setuptools import Extension, setup
        setup(ext_modules=[Extension("{package}._ext", [{source!r}], language={'c++' if cxx else 'c'!r},
                                     extra_compile_args={compile_args!r}, extra_link_args={link_args!r})])
        """))
    dist = where / "dist"
    run([build_env.python, "-m", "pip", *PIP_QUIET, "wheel", "--no-build-isolation", "--no-deps", "-w", dist,
         project], env={"PATH": f"{build_env.bin}{os.pathsep}{os.environ['PATH']}"})
    return one(list(dist.glob("*.whl")))


def assert_linked(output: Path, tmp: Path, package: str, *, needed: str, distribution: str,
                  requirement: str) -> None:
    """OUTPUT links its extension to the provider's `needed`, vendors nothing (no copy of the provided
    library or of what it needs: its only binary is the extension), requires exactly `requirement`
    and records the link to `distribution`."""
    with zipfile.ZipFile(output) as zf:
        names = zf.namelist()
    assert not [n for n in names if n.split("/")[0].endswith(".libs")], names
    assert [n for n in names if ".so" in n] == [one([n for n in names if n.startswith(f"{package}/_ext.")])]
    assert f"{package}/_sharewheel_providers.py" in names
    dynamic = elf_dynamic(one(list((unpack(output, tmp / "unpacked") / package).glob("_ext.*.so"))))
    assert needed in dynamic["needed"]
    assert all(entry.startswith("$ORIGIN") for entry in dynamic["rpath"]), dynamic["rpath"]  # build RPATHs dropped
    assert [str(r) for r in requires_dist(output)] == [requirement]
    links = manifest_of(output)["links"]
    assert [(l["binary"].split("/")[0], l["needed"], l["provider"], l["requirement"]) for l in links] == [
        (package, needed, distribution, requirement)
    ]


RUN = """
import {package}
print(repr({package}.call{args}))
maps = open("/proc/self/maps").read().split()
print(sorted({{os.path.realpath(p) for p in maps if p.endswith("/{library}")}}))
"""


def assert_runs(build_env: BuildEnv, run_env: RunEnv, output: Path, site_a: Path, tmp: Path, package: str, *,
                args: str, expected: object, library: Path, distribution: str, requirement: str) -> None:
    """Installed apart from the provider (in SITE_A), OUTPUT calls into `library` of SITE_A in either
    sys.path order; without the provider, importing it is an ImportError that says what to install."""
    site_b = pip_target(build_env, output, tmp / "B")
    code = "import os" + RUN.format(package=package, args=args, library=library.name)
    for path in ([site_b, site_a], [site_a, site_b]):
        lines = run_env.run(code, path).stdout.splitlines()
        assert lines == [repr(expected), repr([os.path.realpath(site_a / library)])]
    missing = run_env.run(code, [site_b], check=False)
    assert missing.returncode != 0
    last = missing.stderr.strip().splitlines()[-1]
    consumer = package.replace("_", "-")
    assert last == (f"ImportError: {consumer} needs the native library provider {distribution} ({requirement}), "
                    f"which is not installed. Fix it with: pip install '{requirement}'"), missing.stderr


OPENBLAS = "scipy-openblas64-linux"
OPENBLAS_REQUIREMENT = "scipy-openblas64==0.3.*,>=0.3.31.188.0"
DDOT = """
#include <cblas.h>
_Static_assert(sizeof(blasint) == 8, "ILP64 OpenBLAS: 64-bit integers");
static PyObject *call(PyObject *self, PyObject *args) {
    double x[] = {1, 2, 3}, y[] = {4, 5, 6};
    blasint n = 3;
    return PyFloat_FromDouble(scipy_cblas_ddot64_(n, x, 1, y, 1));
}
"""


@pytest.mark.parametrize("flags", ["python-api", "pkg-config"])
def test_scipy_openblas64(flags: str, pypi_wheel, provider_site: Site, build_env: BuildEnv, run_env: RunEnv,
                          tmp_path: Path) -> None:
    """Flags from the wheel's own get_include_dir()/get_lib_dir()/get_library(), then repaired with the
    provider wheel's path; or from its scipy-openblas.pc, then repaired with the provider named as an
    installed distribution (found on the PYTHONPATH of the sharewheel process)."""
    build_site = provider_site(OPENBLAS, "build")
    if flags == "python-api":
        code = "import scipy_openblas64 as s; print(s.get_include_dir(), s.get_lib_dir(), s.get_library())"
        include, lib_dir, name = run([build_env.python, "-c", code], env={"PYTHONPATH": str(build_site)}).stdout.split()
        compile_args, link_args = [f"-I{include}"], [f"-L{lib_dir}", f"-l{name}"]
    else:
        env = {"PKG_CONFIG_PATH": str(build_site / "scipy_openblas64" / "lib" / "pkgconfig")}
        compile_args, link_args = (shlex.split(run([build_env.bin / "pkg-config", option, "scipy-openblas"],
                                                   env=env).stdout) for option in ("--cflags", "--libs"))
    wheel = build_consumer(build_env, tmp_path / "src", "blas_consumer", DDOT, compile_args, link_args)
    built = elf_dynamic(one(list(unpack(wheel, tmp_path / "built").rglob("_ext.*.so"))))
    assert "libscipy_openblas64_.so" in built["needed"]
    if flags == "pkg-config":  # its Libs: has -Wl,-rpath,${libdir}, a build-machine RPATH that repair drops
        assert os.path.realpath(build_site / "scipy_openblas64/lib") in map(os.path.realpath, built["rpath"])

    if flags == "python-api":
        output = repair(wheel, tmp_path / "out", "--provider", pypi_wheel(OPENBLAS))
    else:  # the name is resolved where the sharewheel process finds distributions: not without PYTHONPATH
        unresolved = sharewheel("repair", wheel, "-w", tmp_path / "out", "--provider", "scipy-openblas64", check=False)
        assert unresolved.returncode != 0 and "--provider scipy-openblas64: no such file" in unresolved.stderr
        output = repair(wheel, tmp_path / "out", "--provider", "scipy-openblas64",
                        env={"PYTHONPATH": str(provider_site(OPENBLAS, "repair"))})
    assert_linked(output, tmp_path, "blas_consumer", needed="libscipy_openblas64_.so",
                  distribution="scipy-openblas64", requirement=OPENBLAS_REQUIREMENT)
    assert_runs(build_env, run_env, output, provider_site(OPENBLAS), tmp_path, "blas_consumer", args="()",
                expected=32.0, library=Path("scipy_openblas64/lib/libscipy_openblas64_.so"),
                distribution="scipy-openblas64", requirement=OPENBLAS_REQUIREMENT)


WPIUTIL = "robotpy-native-wpiutil-linux"
SHA1_BASE64 = """
#include <string>
#include <wpi/Base64.h>
#include <wpi/sha1.h>
static PyObject *call(PyObject *self, PyObject *args) {
    const char *text;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "s#", &text, &size)) return NULL;
    wpi::SHA1 sha1;
    sha1.Update(std::string_view(text, size));
    std::string base64;
    wpi::Base64Encode(std::string_view(text, size), &base64);
    return Py_BuildValue("(ss)", sha1.Final().c_str(), base64.c_str());
}
"""


def test_robotpy_native_wpiutil(pypi_wheel, provider_site: Site, build_env: BuildEnv, run_env: RunEnv,
                                tmp_path: Path) -> None:
    """A C++ consumer of wpiutil (flags from the wheel's robotpy-native-wpiutil.pc); the hook loads
    the library by importing the .pc's pkgconf_pypi_initpy module."""
    env = {"PKG_CONFIG_PATH": str(provider_site(WPIUTIL, "build") / "native" / "wpiutil")}
    cflags, libs = (shlex.split(run([build_env.bin / "pkg-config", option, "robotpy-native-wpiutil"], env=env).stdout)
                    for option in ("--cflags", "--libs"))
    wheel = build_consumer(build_env, tmp_path / "src", "wpi_consumer", SHA1_BASE64, [*cflags, "-std=c++20"], libs,
                           cxx=True)
    output = repair(wheel, tmp_path / "out", "--provider", pypi_wheel(WPIUTIL))
    # the provider exists only for glibc 2.35: the consumer must not claim an older platform
    assert output.name.endswith("-manylinux_2_35_x86_64.whl"), output.name
    requirement = "robotpy-native-wpiutil==2026.2.2"
    assert_linked(output, tmp_path, "wpi_consumer", needed="libwpiutil.so", distribution="robotpy-native-wpiutil",
                  requirement=requirement)
    with zipfile.ZipFile(output) as zf:
        hook = zf.read("wpi_consumer/_sharewheel_providers.py").decode()
    [record] = providers_table(hook)
    assert record[0] == "native.wpiutil._init_robotpy_native_wpiutil" and record[4] == "import"
    text = "sharewheel \u00e9\u00e9"
    expected = (hashlib.sha1(text.encode()).hexdigest(), base64.b64encode(text.encode()).decode())
    assert_runs(build_env, run_env, output, provider_site(WPIUTIL), tmp_path, "wpi_consumer", args=f"({text!r})",
                expected=expected, library=Path("native/wpiutil/lib/libwpiutil.so"),
                distribution="robotpy-native-wpiutil", requirement=requirement)


def providers_table(hook: str) -> tuple:
    """The PROVIDERS table of a generated hook: (package, distribution, requirement, files, strategy, lib_dirs)."""
    import ast

    return ast.literal_eval(hook.split("PROVIDERS = ", 1)[1].split("\n\n", 1)[0])


CUDART = "nvidia-cuda-runtime-cu12-linux"
RUNTIME_VERSION = """
int cudaRuntimeGetVersion(int *version);  /* cuda_runtime_api.h needs nvcc's crt/ headers */
static PyObject *call(PyObject *self, PyObject *args) {
    int version = 0;
    int error = cudaRuntimeGetVersion(&version);
    if (error != 0) return PyErr_Format(PyExc_RuntimeError, "cudaRuntimeGetVersion: %d", (int)error);
    return PyLong_FromLong(version);
}
"""


def test_nvidia_cuda_runtime_cu12(pypi_wheel, provider_site: Site, build_env: BuildEnv, run_env: RunEnv,
                                  tmp_path: Path) -> None:
    """A C consumer of libcudart.so.12 (no GPU needed to ask the runtime its version); the wheel has
    no loader of its own, so the hook preloads the file by its path."""
    runtime = provider_site(CUDART, "build") / "nvidia" / "cuda_runtime"
    wheel = build_consumer(build_env, tmp_path / "src", "cuda_consumer", RUNTIME_VERSION, [],
                           [f"-L{runtime}/lib", "-l:libcudart.so.12"])
    output = repair(wheel, tmp_path / "out", "--provider", pypi_wheel(CUDART))
    requirement = "nvidia-cuda-runtime-cu12==12.*,>=12.9.79"
    assert_linked(output, tmp_path, "cuda_consumer", needed="libcudart.so.12", distribution="nvidia-cuda-runtime-cu12",
                  requirement=requirement)
    with zipfile.ZipFile(output) as zf:
        hook = zf.read("cuda_consumer/_sharewheel_providers.py").decode()
    [record] = providers_table(hook)
    assert record[1] == "nvidia-cuda-runtime-cu12" and record[3] == ("nvidia/cuda_runtime/lib/libcudart.so.12",)
    assert record[4] == "preload"
    assert_runs(build_env, run_env, output, provider_site(CUDART), tmp_path, "cuda_consumer", args="()",
                expected=12090, library=Path("nvidia/cuda_runtime/lib/libcudart.so.12"),
                distribution="nvidia-cuda-runtime-cu12", requirement=requirement)
