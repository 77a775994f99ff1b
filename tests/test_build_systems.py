"""CMake and meson discovery of provider wheels: scikit-build-core (`find_package(acme CONFIG)`)
and meson-python (`dependency('acme')`) consumers built against an installed provider, repaired,
and run from a split install; the CMake version file follows the ABI policy."""

from __future__ import annotations

import os
import subprocess
import textwrap
import venv
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    CONSUMER_C,
    PIP_QUIET,
    BuildEnv,
    RunEnv,
    build_acme,
    build_c_library,
    elf_dynamic,
    manifest_of,
    one,
    pip_target,
    repair,
    run,
    sharewheel,
    unpack,
)
from packaging.version import Version

from sharewheel import cmake_package
from sharewheel.abi import AbiPolicy

CALL = "import {package}; print({package}.add(20, 22), {package}.series(), {package}.version())"
pytest_plugins = ["pe_support", "macho_support"]  # zig-built Windows and macOS prefixes


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> BuildEnv:
    """A venv with the build backends and their tools from PyPI (cmake and ninja wheels, pkgconf):
    CI machines start without them."""
    root = tmp_path_factory.mktemp("tools-venv")
    venv.create(root, with_pip=True)
    env = BuildEnv(root)
    env.pip("install", "scikit-build-core>=0.10", "meson-python>=0.16", "meson>=1.2", "cmake>=3.26",
            "ninja>=1.11", "pkgconf>=2")
    return env


def tool_env(tools: BuildEnv, **extra: str) -> dict[str, str]:
    """The tools venv's cmake, ninja and pkg-config first on PATH; no inherited search paths."""
    return {"PATH": f"{tools.bin}{os.pathsep}{os.environ['PATH']}", "CMAKE_PREFIX_PATH": "",
            "PKG_CONFIG_PATH": "", **extra}


def cmake(tools: BuildEnv, *args: str | Path, env: dict[str, str] | None = None,
          check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([tools.bin / "cmake", *args], env=tool_env(tools, **(env or {})), check=check)


def write_project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


def consumer_sources(package: str) -> dict[str, str]:
    return {
        "src/_core.c": CONSUMER_C.format(module="_core", extra_decl="", add_expr="acme_add(a, b)"),
        f"src/{package}/__init__.py": f'"""{package}: test consumer."""\nfrom {package}._core import add, series, version\n',
    }


def skbuild_project(where: Path, package: str, requires: tuple[str, ...] = ()) -> Path:
    build_requires = ", ".join(f'"{r}"' for r in ("scikit-build-core>=0.10", *requires))
    return write_project(where / package, {
        **consumer_sources(package),
        "pyproject.toml": f"""\
            [build-system]
            requires = [{build_requires}]
            build-backend = "scikit_build_core.build"
            [project]
            name = "{package.replace('_', '-')}"
            version = "1.0.0"
            [tool.scikit-build]
            wheel.packages = ["src/{package}"]
            """,
        "CMakeLists.txt": f"""\
            cmake_minimum_required(VERSION 3.15...3.31)
            project({package} LANGUAGES C)
            find_package(Python COMPONENTS Interpreter Development.Module REQUIRED)
            find_package(acme 3.1 CONFIG REQUIRED)
            python_add_library(_core MODULE src/_core.c WITH_SOABI)
            target_link_libraries(_core PRIVATE acme::acme)
            install(TARGETS _core DESTINATION {package})
            """,
    })


def meson_project(where: Path, package: str, requires: tuple[str, ...] = ()) -> Path:
    build_requires = ", ".join(f'"{r}"' for r in ("meson-python>=0.16", *requires))
    return write_project(where / package, {
        **consumer_sources(package),
        "pyproject.toml": f"""\
            [build-system]
            requires = [{build_requires}]
            build-backend = "mesonpy"
            [project]
            name = "{package.replace('_', '-')}"
            version = "1.0.0"
            """,
        "meson.build": f"""\
            project('{package}', 'c', version: '1.0.0')
            py = import('python').find_installation(pure: false)
            acme = dependency('acme', version: '>=3.1')
            py.extension_module('_core', 'src/_core.c', dependencies: [acme, py.dependency()],
                                install: true, subdir: '{package}')
            py.install_sources('src/{package}/__init__.py', subdir: '{package}')
            """,
    })


def pip_wheel(tools: BuildEnv, project: Path, out: Path, env: dict[str, str], *, isolated: bool,
              find_links: Path | None = None) -> Path:
    """`pip wheel` of PROJECT: in the tools venv, or with build isolation (pip installs the
    project's build-system.requires, the provider among them, from `find_links` and the index)."""
    args = ["--no-deps", "-w", out, project]
    args = [*args] if isolated else ["--no-build-isolation", *args]
    if find_links is not None:
        args = ["--find-links", find_links, *args]
    run([tools.python, "-m", "pip", *PIP_QUIET, "wheel", *args], env=env)
    return one(list(out.glob("*.whl")))


def assert_linked_not_vendored(built: Path, repaired: Path, provider: Path, tmp: Path) -> None:
    """The build linked the provider's unique name itself; repair vendored nothing."""
    unique = manifest_of(provider)["provides"]["libraries"][0]["unique_name"]
    [extension] = [p for p in unpack(built, tmp / "built").rglob("_core*.so")]
    assert unique in elf_dynamic(extension)["needed"]
    manifest = manifest_of(repaired)
    assert manifest["vendored"] == []
    assert [(link["needed"], link["provider"]) for link in manifest["links"]] == [(unique, "acme-native")]
    with zipfile.ZipFile(repaired) as zf:
        assert not [n for n in zf.namelist() if ".libs/" in n or Path(n).name.startswith("libacme")]


def run_split(run_env: RunEnv, package: str, consumer_site: Path, provider_site: Path) -> None:
    assert not (consumer_site / "acme_native").exists()
    for path in ([consumer_site, provider_site], [provider_site, consumer_site]):
        assert run_env.run(CALL.format(package=package), path).stdout.split() == ["42", "3", "3.1.4"]


# --- the provider's build files --------------------------------------------------------------


def test_provider_ships_cmake_package_and_prints_its_directories(packed, build_env: BuildEnv, run_env: RunEnv,
                                                                tmp_path: Path) -> None:
    wheel = packed("3.1.4")
    unique = manifest_of(wheel)["provides"]["libraries"][0]["unique_name"]
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read("acme_native-3.1.4.dist-info/entry_points.txt").decode()
        config = zf.read("acme_native/lib/cmake/acme/acmeConfig.cmake").decode()
    assert {"acme_native/__main__.py", "acme_native/lib/cmake/acme/acmeConfig.cmake",
            "acme_native/lib/cmake/acme/acmeConfigVersion.cmake"} <= names
    assert "[cmake.prefix]\nacme-native = acme_native" in entry_points
    assert "add_library(acme::acme SHARED IMPORTED)" in config
    assert f'IMPORTED_SONAME "{unique}"' in config and f'/lib/{unique}"' in config
    assert "/tmp" not in config and str(tmp_path) not in config  # relocatable: no build paths

    site = pip_target(build_env, wheel, tmp_path / "site")
    package = site / "acme_native"
    printed = run([run_env.python, "-m", "acme_native", "--cmake-dir", "--pkgconfig-dir", "--include-dir",
                   "--lib-dir"], env={"PYTHONPATH": str(site)}).stdout.split()
    assert printed == [str(package / "lib" / "cmake"), str(package / "lib" / "pkgconfig"),
                       str(package / "include"), str(package / "lib")]
    assert run_env.run("import acme_native; print(acme_native.get_cmake_dir())", [site]).stdout.strip() == printed[0]
    no_flag = run([run_env.python, "-m", "acme_native"], env={"PYTHONPATH": str(site)}, check=False)
    assert no_flag.returncode == 2 and "--cmake-dir" in no_flag.stderr

    # sharewheel's commands: the running interpreter's sys.path, --path, and --python
    other = pip_target(build_env, packed("4.0.0"), tmp_path / "other")
    both = [str(site / "acme_native" / "lib" / "cmake"), str(other / "acme_native" / "lib" / "cmake")]
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(other)])}
    assert sharewheel("cmake-prefix-path", env=env).stdout.strip() == both[0]  # 4.0.0 is shadowed, as for imports
    assert sharewheel("cmake-prefix-path", "--path", site).stdout.strip() == both[0]
    assert sharewheel("pkgconfig-path", "--path", site).stdout.strip() == str(package / "lib" / "pkgconfig")
    python = tmp_path / "venv"
    venv.create(python, with_pip=False)
    [purelib] = (python / "lib").glob("python*/site-packages")
    (purelib / "providers.pth").write_text(f"{site}\n")
    assert sharewheel("cmake-prefix-path", "--python", python / "bin" / "python").stdout.strip() == both[0]
    empty = sharewheel("pkgconfig-path", "--path", tmp_path / "venv", check=False)
    assert empty.returncode == 1 and empty.stderr.startswith("sharewheel: error: no installed native-lib provider")


# --- the version file follows the ABI policy -------------------------------------------------

VERSION_DRIVER = """\
function(check requested)
  set(PACKAGE_FIND_VERSION "${requested}")
  string(REPLACE "." ";" parts "${requested}.0.0")
  list(GET parts 0 PACKAGE_FIND_VERSION_MAJOR)
  list(GET parts 1 PACKAGE_FIND_VERSION_MINOR)
  list(GET parts 2 PACKAGE_FIND_VERSION_PATCH)
  include("${VERSION_FILE}")
  message("${requested}=${PACKAGE_VERSION_COMPATIBLE}")
endfunction()
foreach(requested IN LISTS REQUESTED)
  check("${requested}")
endforeach()
"""

POLICY_CASES = {
    # policy: (accepted, rejected) requests for provider version 3.1.4
    "major": (["3", "3.0", "3.1", "3.1.4"], ["2.9", "3.1.5", "3.2", "4", "4.0"]),
    "minor": (["3.1", "3.1.0", "3.1.4"], ["3.0", "3.0.9", "3.1.5", "3.2", "4.1"]),
    "exact": (["3.1.4"], ["3.1", "3.1.3", "3.1.5", "3"]),
    ">={version},<{major}.{minor}.99": (["3.1", "3.1.2", "3.1.4"], ["3.0", "3.1.5", "3.2"]),
    "~={version}": (["3.0", "3.1", "3.1.4"], ["3.2", "2.9", "3.1.5", "4.0"]),  # ~=3.0: >=3.0,==3.*
    ">={version}": (["1", "3", "3.1.4"], ["3.1.5", "4"]),
}


@pytest.mark.parametrize("policy", sorted(POLICY_CASES))
def test_cmake_version_file_follows_the_abi_policy(policy: str, tools: BuildEnv, tmp_path: Path) -> None:
    abi = AbiPolicy.parse(policy)
    version = Version("3.1.4")
    path = tmp_path / "acmeConfigVersion.cmake"
    path.write_text(cmake_package.version_file("acme", distribution="acme-native", version=version, policy=abi,
                                               platform="linux_x86_64"))
    (tmp_path / "driver.cmake").write_text(VERSION_DRIVER)
    accepted, rejected = POLICY_CASES[policy]
    result = cmake(tools, f"-DVERSION_FILE={path}", f"-DREQUESTED={';'.join(accepted + rejected)}",
                   "-P", tmp_path / "driver.cmake")
    verdicts = dict(line.split("=") for line in result.stderr.split())
    assert verdicts == {**{r: "TRUE" for r in accepted}, **{r: "FALSE" for r in rejected}}
    # the same verdicts as the Requires-Dist repair would give a consumer built against each request
    for requested, verdict in verdicts.items():
        assert (version in abi.specifier(Version(requested))) == (verdict == "TRUE"), requested


def test_find_package_accepts_the_series_and_rejects_another(packed, build_env: BuildEnv, tools: BuildEnv,
                                                            tmp_path: Path) -> None:
    site = pip_target(build_env, packed("3.1.4"), tmp_path / "site")
    project = write_project(tmp_path / "project", {
        "CMakeLists.txt": """\
            cmake_minimum_required(VERSION 3.15)
            project(probe LANGUAGES C)
            find_package(acme ${REQUEST} CONFIG)
            message(STATUS "probe: ${acme_FOUND} ${acme_VERSION}")
            """,
    })
    prefix = sharewheel("cmake-prefix-path", "--path", site).stdout.strip()
    verdicts = {}
    for request in ("3.0", "3.1.4", "3.0...<3.1", "3.0...<4", "4", "2.0"):
        build = tmp_path / f"build-{len(verdicts)}"
        out = cmake(tools, "-S", project, "-B", build, "-G", "Ninja", f"-DREQUEST={request}",
                    env={"CMAKE_PREFIX_PATH": prefix}).stdout
        verdicts[request] = next(line for line in out.splitlines() if "probe:" in line).split("probe:")[1].split()
    assert verdicts == {"3.0": ["1", "3.1.4"], "3.1.4": ["1", "3.1.4"], "3.0...<3.1": ["0"], "3.0...<4": ["1", "3.1.4"],
                        "4": ["0"], "2.0": ["0"]}


# --- consumers built with scikit-build-core and meson-python -------------------------------------


@pytest.mark.parametrize("how", ["cmake-prefix-path", "build-isolation"])
def test_scikit_build_core_consumer_builds_repairs_and_runs_split(
    how: str, packed, build_env: BuildEnv, tools: BuildEnv, run_env: RunEnv, tmp_path: Path
) -> None:
    provider = packed("3.1.4")
    package = "acme_skbuild"
    if how == "cmake-prefix-path":
        # against the provider installed in a directory of its own, found through sharewheel
        project = skbuild_project(tmp_path / "src", package)
        build_site = pip_target(build_env, provider, tmp_path / "build-site")
        prefix = sharewheel("cmake-prefix-path", env={"PYTHONPATH": str(build_site)}).stdout.strip()
        built = pip_wheel(tools, project, tmp_path / "dist", tool_env(tools, CMAKE_PREFIX_PATH=prefix), isolated=False)
    else:
        # cibuildwheel's way: the provider in build-system.requires; its cmake.prefix entry point
        # puts it on CMAKE_PREFIX_PATH (scikit-build-core reads those)
        project = skbuild_project(tmp_path / "src", package, requires=("acme-native>=3.1",))
        built = pip_wheel(tools, project, tmp_path / "dist", tool_env(tools), isolated=True, find_links=provider.parent)
    repaired = repair(built, tmp_path / "wheelhouse", "--provider", provider)
    assert_linked_not_vendored(built, repaired, provider, tmp_path)
    run_split(run_env, package, pip_target(build_env, repaired, tmp_path / "B"),
              pip_target(build_env, provider, tmp_path / "A"))


@pytest.mark.parametrize("how", ["pkgconfig-dir", "build-isolation"])
def test_meson_python_consumer_builds_repairs_and_runs_split(
    how: str, packed, build_env: BuildEnv, tools: BuildEnv, run_env: RunEnv, tmp_path: Path
) -> None:
    provider = packed("3.1.4")
    package = "acme_meson"
    if how == "pkgconfig-dir":
        project = meson_project(tmp_path / "src", package)
        build_site = pip_target(build_env, provider, tmp_path / "build-site")
        pc_dir = run([run_env.python, "-m", "acme_native", "--pkgconfig-dir"],
                     env={"PYTHONPATH": str(build_site)}).stdout.strip()
        built = pip_wheel(tools, project, tmp_path / "dist", tool_env(tools, PKG_CONFIG_PATH=pc_dir), isolated=False)
    else:
        # the provider and pkgconf in build-system.requires: pkgconf-pypi's pkg-config finds the
        # .pc through the [pkg_config] entry point (its pkg-config does so with FORCE_PKGCONF_PYPI)
        project = meson_project(tmp_path / "src", package, requires=("pkgconf>=2", "acme-native>=3.1"))
        env = tool_env(tools, FORCE_PKGCONF_PYPI="1")
        built = pip_wheel(tools, project, tmp_path / "dist", env, isolated=True, find_links=provider.parent)
    repaired = repair(built, tmp_path / "wheelhouse", "--provider", provider)
    assert_linked_not_vendored(built, repaired, provider, tmp_path)
    run_split(run_env, package, pip_target(build_env, repaired, tmp_path / "B"),
              pip_target(build_env, provider, tmp_path / "A"))


# --- a provider requiring another: find_dependency ------------------------------------------------


def test_cmake_package_of_a_provider_requiring_another(packed, build_env: BuildEnv, tools: BuildEnv,
                                                       tmp_path: Path) -> None:
    acme = packed("3.1.4")
    acme_prefix = build_acme(tmp_path / "acme", "3.1.4")
    prefix = build_c_library(
        tmp_path / "extra-prefix", "acme-extra", "libacme-extra.so.1",
        "#include <acme.h>\nint acme_extra_value(void) { return acme_add(acme_series(), 100); }\n",
        links=["acme"], lib_dirs=[acme_prefix / "lib"], include_dirs=[acme_prefix / "include"],
    )
    sharewheel("pack", prefix, "--name", "acme-extra-native", "--version", "1.0.0", "--lib", "acme-extra",
               "--requires", "acme-native", "--provider", acme, "-w", tmp_path / "wheelhouse")
    extra = one(list((tmp_path / "wheelhouse").glob("*.whl")))
    with zipfile.ZipFile(extra) as zf:
        config = zf.read("acme_extra_native/lib/cmake/acme-extra/acme-extraConfig.cmake").decode()
    assert "find_dependency(acme 3.1.4 CONFIG" in config and 'INTERFACE_LINK_LIBRARIES "acme::acme"' in config

    project = write_project(tmp_path / "project", {
        "main.c": "int acme_extra_value(void);\nint main(void) { return acme_extra_value() == 103 ? 0 : 1; }\n",
        "CMakeLists.txt": """\
            cmake_minimum_required(VERSION 3.15)
            project(probe LANGUAGES C)
            find_package(acme-extra 1.0 CONFIG REQUIRED)
            add_executable(probe main.c)
            target_link_libraries(probe PRIVATE acme-extra::acme-extra)
            """,
    })
    one_site = pip_target(build_env, extra, pip_target(build_env, acme, tmp_path / "one-site"))
    split = [pip_target(build_env, acme, tmp_path / "A"), pip_target(build_env, extra, tmp_path / "C")]
    cases = {
        "one site, its own cmake dir only": str(one_site / "acme_extra_native" / "lib" / "cmake"),
        "split install": sharewheel("cmake-prefix-path", *(a for s in split for a in ("--path", s))).stdout.strip(),
    }
    for label, prefix_path in cases.items():
        build = tmp_path / f"build-{label.split()[0]}"
        cmake(tools, "-S", project, "-B", build, "-G", "Ninja", env={"CMAKE_PREFIX_PATH": prefix_path})
        cmake(tools, "--build", build)
        needed = elf_dynamic(build / "probe")["needed"]
        assert manifest_of(extra)["provides"]["libraries"][0]["unique_name"] in needed, label
        lib_dirs = [str(one_site / "acme_extra_native" / "lib"), str(one_site / "acme_native" / "lib")]
        run([build / "probe"], env={"LD_LIBRARY_PATH": os.pathsep.join(lib_dirs)})


def test_libraries_of_one_provider_find_each_other(build_env: BuildEnv, tools: BuildEnv, run_env: RunEnv,
                                                   tmp_path: Path) -> None:
    """libfoo needs libbar, both in one provider: foo's package finds bar's beside it."""
    prefix = build_c_library(tmp_path / "prefix", "bar", "libbar.so.1", "int bar(void) { return 40; }\n")
    build_c_library(prefix, "foo", "libfoo.so.1", "int bar(void);\nint foo(void) { return bar() + 2; }\n",
                    links=["bar"], lib_dirs=[prefix / "lib"])
    sharewheel("pack", prefix, "--name", "foobar-native", "--version", "2.0.0", "-w", tmp_path / "wheelhouse")
    wheel = one(list((tmp_path / "wheelhouse").glob("*.whl")))
    uniques = {lib["name"]: lib["unique_name"] for lib in manifest_of(wheel)["provides"]["libraries"]}
    site = pip_target(build_env, wheel, tmp_path / "site")
    project = write_project(tmp_path / "project", {
        # bar() too: linked only through foo::foo's INTERFACE_LINK_LIBRARIES
        "main.c": "int foo(void);\nint bar(void);\nint main(void) { return foo() + bar() == 82 ? 0 : 1; }\n",
        "CMakeLists.txt": """\
            cmake_minimum_required(VERSION 3.15)
            project(probe LANGUAGES C)
            find_package(foo 2 CONFIG REQUIRED)
            if(NOT TARGET bar::bar)
              message(FATAL_ERROR "bar::bar was not imported with foo")
            endif()
            add_executable(probe main.c)
            target_link_libraries(probe PRIVATE foo::foo)
            """,
    })
    prefix_path = run([run_env.python, "-m", "foobar_native", "--cmake-dir"],
                      env={"PYTHONPATH": str(site)}).stdout.strip()
    cmake(tools, "-S", project, "-B", tmp_path / "build", "-G", "Ninja", env={"CMAKE_PREFIX_PATH": prefix_path})
    cmake(tools, "--build", tmp_path / "build")
    assert {uniques["libfoo.so.1"], uniques["libbar.so.1"]} <= set(elf_dynamic(tmp_path / "build" / "probe")["needed"])
    run([tmp_path / "build" / "probe"], env={"LD_LIBRARY_PATH": str(site / "foobar_native" / "lib")})


# --- the generated files on macOS and Windows, read by CMake itself -------------------------------


@pytest.mark.parametrize("system", ["macos", "windows", "windows-mingw-without-import-library"])
def test_imported_target_on_macos_and_windows(system: str, tools: BuildEnv, tmp_path: Path) -> None:
    package = tmp_path / "site" / "acme_native"
    (package / "include").mkdir(parents=True)
    if system == "macos":
        unique, implib = "libacme-sw1cd33bec.dylib", None
        soname = f"@rpath/{unique}"
    else:
        unique, soname = "libacme-sw1cd33bec.dll", None
        implib = "lib/libacme.dll.a" if system == "windows" else None
    library = cmake_package.CMakeLibrary("acme", f"lib/{unique}", soname, implib, True)
    directory = package / "lib" / "cmake" / "acme"
    directory.mkdir(parents=True)
    os_name = system.split("-")[0]
    (directory / "acmeConfig.cmake").write_text(
        cmake_package.config_file(library, distribution="acme-native", version="3.1.4", package="acme_native",
                                  os=os_name))
    project = write_project(tmp_path / "project", {"CMakeLists.txt": """\
        cmake_minimum_required(VERSION 3.15)
        project(probe NONE)
        find_package(acme CONFIG REQUIRED)
        foreach(property TYPE IMPORTED_LOCATION IMPORTED_SONAME IMPORTED_IMPLIB INTERFACE_INCLUDE_DIRECTORIES)
          get_target_property(value acme::acme ${property})
          message(STATUS "probe ${property}=${value}")
        endforeach()
        message(STATUS "probe PYTHON_PACKAGE=${acme_PYTHON_PACKAGE}")
        """})
    out = cmake(tools, "-S", project, "-B", tmp_path / "build", env={"CMAKE_PREFIX_PATH": str(package)}).stdout
    found = dict(line.split("probe ", 1)[1].split("=", 1) for line in out.splitlines() if "probe " in line)
    assert found == {
        "TYPE": "UNKNOWN_LIBRARY" if system.endswith("import-library") else "SHARED_LIBRARY",
        "IMPORTED_LOCATION": f"{package}/lib/{unique}",
        "IMPORTED_SONAME": soname or "value-NOTFOUND",
        "IMPORTED_IMPLIB": f"{package}/{implib}" if implib else "value-NOTFOUND",
        "INTERFACE_INCLUDE_DIRECTORIES": f"{package}/include",
        "PYTHON_PACKAGE": "acme_native",
    }


PROBE_TARGET = """\
    cmake_minimum_required(VERSION 3.15)
    project(probe NONE)
    find_package(acme 3.0 CONFIG REQUIRED)
    foreach(property TYPE IMPORTED_LOCATION IMPORTED_SONAME IMPORTED_IMPLIB)
      get_target_property(value acme::acme ${property})
      message(STATUS "probe ${property}=${value}")
    endforeach()
    """


@pytest.mark.parametrize("system", ["macos", "windows"])
def test_packed_macos_and_windows_providers_describe_their_library(system: str, request: pytest.FixtureRequest,
                                                                  tools: BuildEnv, tmp_path: Path) -> None:
    """Real zig-built prefixes packed: the dylib with its @rpath install name; on Windows the DLL
    and the import library written beside it, under the name -l links (acme.lib: acme, not
    libtool's libacme-3.dll)."""
    if system == "macos":
        root = request.getfixturevalue("macos_prefixes")("arm64").root
    else:
        root = request.getfixturevalue("windows_prefixes")().root
    sharewheel("pack", root, "--name", "acme-native", "--version", "3.1.4", "-w", tmp_path / "wheelhouse")
    wheel = one(list((tmp_path / "wheelhouse").glob("*.whl")))
    unique = manifest_of(wheel)["provides"]["libraries"][0]["unique_name"]
    package = unpack(wheel, tmp_path / "site") / "acme_native"
    project = write_project(tmp_path / "project", {"CMakeLists.txt": PROBE_TARGET})
    out = cmake(tools, "-S", project, "-B", tmp_path / "build", env={"CMAKE_PREFIX_PATH": str(package)}).stdout
    found = dict(line.split("probe ", 1)[1].split("=", 1) for line in out.splitlines() if "probe " in line)
    assert found == {
        "TYPE": "SHARED_LIBRARY",
        "IMPORTED_LOCATION": f"{package}/lib/{unique}",
        "IMPORTED_SONAME": f"@rpath/{unique}" if system == "macos" else "value-NOTFOUND",
        # the import library pack writes for the unique DLL (tests/test_implib.py), MSVC's name
        "IMPORTED_IMPLIB": f"{package}/lib/acme.lib" if system == "windows" else "value-NOTFOUND",
    }


def test_import_library_pairing() -> None:
    pair: Callable[..., dict[str, str]] = cmake_package.import_library_for
    assert pair(["acme.dll"], ["acme.lib"]) == {"acme.dll": "acme.lib"}
    assert pair(["libacme-3.dll"], ["libacme.dll.a"]) == {"libacme-3.dll": "libacme.dll.a"}  # libtool's names
    assert pair(["libfoo.dll", "libbar.dll"], ["libbar.dll.a"]) == {"libbar.dll": "libbar.dll.a"}
    assert pair(["odd.dll"], ["other.lib"]) == {"odd.dll": "other.lib"}  # the only one for the only library
    assert pair(["a.dll", "b.dll"], ["c.lib"]) == {}
    assert cmake_package.pointer_size("manylinux_2_17_x86_64") == 8
    assert cmake_package.pointer_size("win32") == 4 and cmake_package.pointer_size("linux_i686") == 4
