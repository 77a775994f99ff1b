"""`sharewheel check` on real installed environments: venvs holding pip-installed provider and
consumer wheels built by the fixtures, checked from inside the venv (`python -m sharewheel
check`) and from outside (`--python`), as a pipx-installed sharewheel would."""

from __future__ import annotations

import importlib.metadata
import json
import os
import venv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    BuildEnv,
    Consumer,
    build_acme,
    build_c_library,
    build_consumer,
    consumer_project,
    elf_dynamic,
    manifest_of,
    one,
    pip_target,
    repair,
    run,
    setuptools_pyproject,
    sharewheel,
    unpack,
)
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import sharewheel as sharewheel_package

ERROR = "sharewheel: error: "


@pytest.fixture(scope="session")
def sharewheel_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with symlinks to the test interpreter's `sharewheel` package and the import
    packages of its dependencies, and nothing else.

    A fresh venv gets it through a `.pth` file, so that `venv/bin/python -m sharewheel` works
    there without reinstalling sharewheel and its dependencies (slow, and needing an index).
    Linking the import packages rather than pointing at the test interpreter's site-packages
    keeps the audited environment what the test installed: no dist-info of the test
    environment is visible, so nothing of it gets audited."""
    where = tmp_path_factory.mktemp("sharewheel-only")
    (where / "sharewheel").symlink_to(Path(sharewheel_package.__file__).resolve().parent)
    seen: set[str] = set()
    todo = ["sharewheel"]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        dist = importlib.metadata.distribution(name)
        for text in dist.requires or ():
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
        if name == "sharewheel":
            continue  # linked above (an editable install's files are elsewhere)
        for file in dist.files or ():
            top = file.parts[0]
            if top in ("..", "__pycache__") or top.endswith((".dist-info", ".egg-info", ".data", ".pth")):
                continue
            if not (where / top).exists():
                (where / top).symlink_to(Path(str(dist.locate_file(top))).resolve())
    return where


@dataclass(frozen=True)
class Env:
    """A venv with wheels pip-installed into its site-packages."""

    root: Path
    site: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def install(self, build_env: BuildEnv, *wheels: Path) -> None:
        build_env.pip("install", "--no-index", "--no-deps", "--target", self.site, *wheels)

    def check_inside(self, *args: str) -> tuple[int, str, str]:
        """`sharewheel check` run by the venv's own interpreter: it audits its own sys.path."""
        result = run([self.python, "-m", "sharewheel", "check", *args], check=False, cwd=self.root.parent,
                     env={"PYTHONPATH": "", "LD_LIBRARY_PATH": ""})
        return result.returncode, result.stdout, result.stderr

    def check_outside(self, *args: str) -> tuple[int, str, str]:
        """`sharewheel check --python`: the test interpreter's sharewheel audits the venv."""
        result = sharewheel("check", "--python", self.python, *args, check=False, cwd=self.root.parent,
                            env={"PYTHONPATH": "", "LD_LIBRARY_PATH": ""})
        return result.returncode, result.stdout, result.stderr

    def both(self, *args: str) -> tuple[int, str]:
        """Both ways, which must agree; the exit status and the output."""
        inside, outside = self.check_inside(*args), self.check_outside(*args)
        assert inside == outside, f"inside: {inside}\noutside: {outside}"
        assert "Traceback" not in inside[2], inside[2]
        return inside[0], inside[1]


@pytest.fixture
def make_env(tmp_path: Path, build_env: BuildEnv, sharewheel_only: Path) -> Callable[..., Env]:
    def make(*wheels: Path, name: str = "venv") -> Env:
        root = tmp_path / name
        venv.create(root, with_pip=False)
        site = one(list((root / "lib").glob("python3*/site-packages")))
        (site / "_sharewheel_for_tests.pth").write_text(f"{sharewheel_only}\n")
        env = Env(root, site)
        if wheels:
            env.install(build_env, *wheels)
        return env

    return make


def installed_library(env: Env) -> Path:
    """The installed acme-native's library file."""
    return one(list((env.site / "acme_native" / "lib").glob("libacme-sw*.so")))


def test_complete_environment_is_ok(consumer: Consumer, make_env: Callable[..., Env]) -> None:
    env = make_env(consumer.provider, consumer.output)
    status, out = env.both()
    assert status == 0, out
    assert out.strip().splitlines()[-1] == "No broken links found (1 link of 1 distribution checked)."

    status, out = env.both("--json")
    assert status == 0
    report = json.loads(out)
    assert report["ok"] is True and report["problems"] == [] and report["duplicates"] == []
    assert str(env.site) in report["paths"]
    [provider] = report["providers"]
    assert (provider["distribution"], provider["version"], provider["kind"]) == ("acme-native", "3.1.4", "packed")
    [link] = report["links"]
    recorded = manifest_of(consumer.output)["links"][0]
    assert link["status"] == "ok" and link["provider_version"] == "3.1.4"
    assert (link["binary"], link["needed"], link["requirement"]) == (
        recorded["binary"], recorded["needed"], recorded["requirement"])
    assert link["file"] == str(installed_library(env))

    # --path audits just the directories given
    result = sharewheel("check", "--path", env.site)
    assert result.stdout.strip() == "No broken links found (1 link of 1 distribution checked)."


def test_missing_provider_is_broken(consumer: Consumer, make_env: Callable[..., Env]) -> None:
    env = make_env(consumer.output)
    requirement = manifest_of(consumer.output)["links"][0]["requirement"]
    status, out = env.both()
    assert status == 1, out
    lines = out.strip().splitlines()
    assert lines[0] == (f"acme-consumer 1.0.0 requires {requirement}, which is not installed "
                        f"(pip install '{requirement}')")
    assert lines[-1] == "1 problem found (1 link of 1 distribution checked)."

    report = json.loads(env.check_outside("--json")[1])
    assert report["ok"] is False
    [problem] = report["problems"]
    assert (problem["kind"], problem["distribution"], problem["provider"], problem["requirement"]) == (
        "provider-missing", "acme-consumer", "acme-native", requirement)
    assert report["links"][0]["status"] == "provider-missing"


def test_provider_outside_the_abi_series_is_broken(consumer: Consumer, packed, make_env: Callable[..., Env]) -> None:
    env = make_env(packed("4.0.0"), consumer.output)
    requirement = manifest_of(consumer.output)["links"][0]["requirement"]
    assert Requirement(requirement).specifier.contains("3.9") and not Requirement(requirement).specifier.contains("4.0.0")
    status, out = env.both()
    assert status == 1, out
    [line] = [l for l in out.splitlines() if l.startswith("acme-consumer")]
    assert line.startswith(f"acme-consumer 1.0.0 requires {requirement} (the ABI series it was linked against), "
                           f"but acme-native 4.0.0 (in {env.site}) is installed")
    report = json.loads(env.check_inside("--json")[1])
    [problem] = report["problems"]
    assert (problem["kind"], problem["requirement"], problem["installed"]) == (
        "outside-policy", requirement, ["4.0.0"])


def test_missing_symbol_is_broken(consumer: Consumer, make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(consumer.provider, consumer.output)
    library = installed_library(env)
    # a libacme under the same unique soname that lacks acme_add (as if the file had been swapped)
    source = tmp_path / "short.c"
    source.write_text('int acme_series(void) { return 3; }\nconst char *acme_version(void) { return "3.1.4"; }\n')
    run(["gcc", "-O2", "-fPIC", "-shared", f"-Wl,-soname,{library.name}", "-o", library, source])
    status, out = env.both()
    assert status == 1, out
    binary = manifest_of(consumer.output)["links"][0]["binary"]
    assert out.splitlines()[0] == (
        f"acme-consumer 1.0.0: {binary} imports acme_add from {library.name}, which {library} (acme-native 3.1.4) "
        "does not export: that provider cannot stand in for it")
    report = json.loads(env.check_outside("--json")[1])
    [problem] = report["problems"]
    # only acme_add: extra_twice comes from the vendored libextra, getenv from libc
    assert (problem["kind"], problem["library"], problem["symbols"]) == ("symbols-missing", library.name, ["acme_add"])

    # the library file gone altogether
    library.unlink()
    status, out = env.both()
    assert status == 1
    assert out.splitlines()[0] == (f"acme-consumer 1.0.0: {binary} links to {library.name}, but acme-native 3.1.4 "
                                   f"lacks its file {library}")


def test_library_vendored_twice_is_listed_with_the_bytes_sharing_saves(
    consumer: Consumer, build_env: BuildEnv, extra_prefix: Path, make_env: Callable[..., Env], tmp_path: Path
) -> None:
    # a second consumer that, like the first, gets libextra vendored by repair (auditwheel's copy)
    project = consumer_project(tmp_path / "src", "acme_twin", extra=True)
    wheel = build_consumer(build_env, project, tmp_path / "twin", provider=consumer.provider,
                           extra_prefix=extra_prefix)
    twin = repair(wheel, tmp_path / "twin" / "wheelhouse", "--provider", consumer.provider,
                  env={"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)})
    env = make_env(consumer.provider, consumer.output, twin)
    copies = sorted([*env.site.glob("acme_consumer.libs/libextra-*"), *env.site.glob("acme_twin.libs/libextra-*")])
    assert len(copies) == 2
    sizes = [c.stat().st_size for c in copies]
    saving = sum(sizes) - max(sizes)

    status, out = env.both()
    assert status == 0, out  # duplicates alone are not broken
    lines = out.strip().splitlines()
    shown = ", ".join(f"{d} 1.0.0 ({c.relative_to(env.site)}, {s:,} bytes)"
                      for d, c, s in zip(("acme-consumer", "acme-twin"), copies, sizes))
    assert lines == [
        "Vendored more than once:",
        (f"  libextra: 2 copies in 2 distributions: {shown}; sharing it would save {saving:,} bytes; "
         "no installed provider offers it"),
        "No broken links found (2 links of 2 distributions checked).",
    ]

    # with libextra packed as a provider and installed, check names it as the replacement
    run_dir = tmp_path / "extra-native"
    sharewheel("pack", extra_prefix, "--name", "extra-native", "--version", "1.0.0", "-w", run_dir)
    env.install(build_env, one(list(run_dir.glob("*.whl"))))
    status, out = env.both("--json")
    assert status == 0
    [duplicate] = json.loads(out)["duplicates"]
    assert duplicate["library"] == "libextra" and duplicate["saving"] == saving
    assert [c["path"] for c in duplicate["copies"]] == [str(c) for c in copies]
    assert duplicate["provider"] == {"distribution": "extra-native", "version": "1.0.0", "location": str(env.site)}
    assert "; sharing it would save" in env.check_inside()[1] and "extra-native 1.0.0 provides it" in env.check_inside()[1]


def test_two_providers_of_one_library_are_broken(consumer: Consumer, make_env: Callable[..., Env],
                                                 tmp_path: Path) -> None:
    prefix = build_acme(tmp_path / "prefix", "3.1.4")
    sharewheel("pack", prefix, "--name", "other-acme", "--version", "3.1.4", "-w", tmp_path / "other")
    env = make_env(consumer.provider, one(list((tmp_path / "other").glob("*.whl"))), consumer.output)
    status, out = env.both()
    assert status == 1, out
    assert out.splitlines()[0] == (f"acme-native 3.1.4 (in {env.site}) and other-acme 3.1.4 (in {env.site}) "
                                   "both provide libacme.so.3")


def test_split_install_with_two_series_is_ok(consumer: Consumer, packed, build_env: BuildEnv,
                                             tmp_path: Path) -> None:
    """The consumer hook finds a provider release in any sys.path entry, also behind another
    series of the same distribution: so does check."""
    site_a4 = pip_target(build_env, packed("4.0.0"), tmp_path / "A4")
    site_b = pip_target(build_env, consumer.output, tmp_path / "B")
    site_a3 = pip_target(build_env, packed("3.1.4"), tmp_path / "A3")
    result = sharewheel("check", "--path", site_a4, "--path", site_b, "--path", site_a3, "--json")
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["problems"] == []
    assert [(p["version"], p["location"]) for p in report["providers"]] == [
        ("4.0.0", str(site_a4)), ("3.1.4", str(site_a3))]
    [link] = report["links"]
    assert (link["status"], link["provider_version"]) == ("ok", "3.1.4")
    assert link["file"].startswith(str(site_a3))

    result = sharewheel("check", "--path", site_a4, "--path", site_b, check=False)
    assert result.returncode == 1 and "but acme-native 4.0.0 (in " in result.stdout


def test_bad_input_is_one_error_line(tmp_path: Path) -> None:
    cases = [
        (["--path", tmp_path / "nowhere"], f"--path {tmp_path / 'nowhere'}: no such directory", 1),
        (["--python", tmp_path / "nopython"], f"--python {tmp_path / 'nopython'}: cannot run it", 1),
        (["--python", "/bin/false"], "--python /bin/false: exited with status 1", 1),
        (["--python", "/bin/false", "--path", tmp_path], "--python and --path are mutually exclusive", 2),
    ]
    for args, message, code in cases:
        result = sharewheel("check", *args, check=False)
        assert result.returncode == code, result
        assert result.stdout == "" and result.stderr.splitlines() == [ERROR + message + (
            " (No such file or directory)" if "cannot run" in message else "")], result.stderr
    assert os.listdir(tmp_path) == []


# --- one rule for unbound imports, in repair's proof and in check -------------------------------

MATH_C = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <acme.h>
{declarations}
static PyObject *measure(PyObject *s, PyObject *args) {{
    double x;
    if (!PyArg_ParseTuple(args, "d", &x)) return NULL;
    return PyLong_FromLong(acme_add((int)floor(x), (int)round(x)){more});
}}
static PyMethodDef methods[] = {{{{"measure", measure, METH_VARARGS, NULL}}, {{NULL, NULL, 0, NULL}}}};
static struct PyModuleDef module = {{PyModuleDef_HEAD_INIT, "_core", NULL, -1, methods}};
PyMODINIT_FUNC PyInit__core(void) {{ return PyModule_Create(&module); }}
"""


def math_consumer(build_env: BuildEnv, provider: Path, where: Path, package: str, *, declarations: str = "",
                  more: str = "") -> tuple[Path, str]:
    """PACKAGE._core calling libacme and libm's floor and round, built against the installed
    provider without -lm and with -fno-builtin: floor and round stay calls, which the linker
    leaves unversioned and bound to no library. (The wheel, the extension's wheel path.)"""
    project = where / package
    (project / "src" / package).mkdir(parents=True)
    (project / "src" / "_core.c").write_text(MATH_C.format(declarations=declarations, more=more))
    (project / "src" / package / "__init__.py").write_text(f'"""{package}: test consumer."""\n')
    setuptools_pyproject(project, package.replace("_", "-"), [package])
    (project / "setup.py").write_text(
        "import shlex, subprocess\nfrom setuptools import Extension, setup\n"
        'cflags = shlex.split(subprocess.check_output(["pkg-config", "--cflags", "acme"], text=True))\n'
        'libs = shlex.split(subprocess.check_output(["pkg-config", "--libs", "acme"], text=True))\n'
        f'setup(ext_modules=[Extension("{package}._core", ["src/_core.c"], '
        'extra_compile_args=[*cflags, "-fno-builtin"], extra_link_args=libs)])\n')
    wheel = build_consumer(build_env, project, where / "build", provider=provider)
    extension = one(list((unpack(wheel, where / "unpacked") / package).glob("_core*.so")))
    # read independently of sharewheel (pyelftools): no libm, and floor and round unversioned imports
    assert not [n for n in elf_dynamic(extension)["needed"] if n.startswith("libm.")], elf_dynamic(extension)
    assert {"floor", "round"} <= unversioned_imports(extension)
    return wheel, f"{package}/{extension.name}"


def unversioned_imports(path: Path) -> set[str]:
    """The undefined dynamic symbols without a symbol version, read with pyelftools."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        versions = elf.get_section_by_name(".gnu.version")
        return {
            symbol.name for index, symbol in enumerate(elf.get_section_by_name(".dynsym").iter_symbols())
            if symbol.name and symbol["st_shndx"] == "SHN_UNDEF"
            and (versions is None or versions.get_symbol(index)["ndx"] in ("VER_NDX_LOCAL", "VER_NDX_GLOBAL"))
        }


def test_imports_the_interpreter_serves_are_not_the_providers(
    build_env: BuildEnv, packed: Callable[..., Path], make_env: Callable[..., Env], tmp_path: Path
) -> None:
    """floor and round, imported unversioned without libm linked, come from the interpreter's
    libm: repair's proof does not ask them of the provider, and check calls the result healthy."""
    provider = packed("3.1.4")
    wheel, binary = math_consumer(build_env, provider, tmp_path, "acme_math")
    unique = one(manifest_of(provider)["provides"]["libraries"])["unique_name"]
    # the proof by elimination (the host does not find the library the build linked) and by that
    # library itself (it does: the case, which repair passed and check did not)
    built_against = tmp_path / "build" / "build-site" / "acme_native" / "lib"
    assert (built_against / unique).is_file()
    output = repair(wheel, tmp_path / "wheelhouse", "--provider", provider)
    repair(wheel, tmp_path / "wheelhouse-host", "--provider", provider, env={"LD_LIBRARY_PATH": str(built_against)})
    assert [(l["binary"], l["needed"]) for l in manifest_of(output)["links"]] == [(binary, unique)]

    env = make_env(provider, output)
    status, out = env.both()
    assert status == 0, out
    assert out.strip() == "No broken links found (1 link of 1 distribution checked)."
    # and healthy it is: the venv's interpreter imports it, its libm serving floor and round
    result = run([env.python, "-c", "from acme_math._core import measure; print(measure(2.5))"],
                 env={"PYTHONPATH": "", "LD_LIBRARY_PATH": ""})
    assert result.stdout.strip() == "5"  # floor(2.5) + round(2.5)


ACME_WITH_NOWHERE = """\
int acme_series(void) { return 3; }
const char *acme_version(void) { return "3.1.4"; }
int acme_add(int a, int b) { return a + b; }
int acme_nowhere(int x) { return x; }
"""


def test_an_import_nothing_exports_is_refused_and_reported_in_the_same_words(
    build_env: BuildEnv, packed: Callable[..., Path], make_env: Callable[..., Env], tmp_path: Path
) -> None:
    """acme_nowhere, imported unversioned, is exported by neither the provider, nor its other
    libraries, nor the interpreter: repair refuses the provider, and check (on a wheel repaired
    with a libacme that had it, then installed with the real provider) reports the same line."""
    provider = packed("3.1.4")
    wheel, binary = math_consumer(build_env, provider, tmp_path, "acme_gap", declarations="int acme_nowhere(int);",
                                  more=" + acme_nowhere(0)")
    unique = one(manifest_of(provider)["provides"]["libraries"])["unique_name"]
    shared = (f"{binary} imports acme_nowhere from {unique}, which ",
              " does not export: that provider cannot stand in for it")

    result = sharewheel("repair", wheel, "-w", tmp_path / "refused", "--provider", provider, check=False)
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert line == (f"{ERROR}{wheel.name}: {shared[0]}acme-native 3.1.4's acme_native/lib/{unique}{shared[1]}")
    assert not (tmp_path / "refused").exists() or not list((tmp_path / "refused").iterdir())

    # a libacme.so.3 that also exports acme_nowhere, packed under the same name: repair accepts it
    prefix = build_c_library(tmp_path / "prefix", "acme", "libacme.so.3", ACME_WITH_NOWHERE)
    sharewheel("pack", prefix, "--name", "acme-native", "--version", "3.1.4", "-w", tmp_path / "having")
    having = one(list((tmp_path / "having").glob("*.whl")))
    assert one(manifest_of(having)["provides"]["libraries"])["unique_name"] == unique
    output = repair(wheel, tmp_path / "wheelhouse", "--provider", having)

    env = make_env(provider, output)  # the real provider: acme_nowhere is nowhere
    status, out = env.both()
    assert status == 1, out
    library = installed_library(env)
    assert out.splitlines()[0] == f"acme-gap 1.0.0: {shared[0]}{library} (acme-native 3.1.4){shared[1]}"
    [problem] = json.loads(env.check_outside("--json")[1])["problems"]
    assert (problem["kind"], problem["symbols"]) == ("symbols-missing", ["acme_nowhere"])  # not floor, round
    # and broken it is: the interpreter cannot import it
    result = run([env.python, "-c", "import acme_gap._core"], env={"PYTHONPATH": "", "LD_LIBRARY_PATH": ""},
                 check=False)
    assert result.returncode == 1 and "undefined symbol: acme_nowhere" in result.stderr, result.stderr
