"""Executables linked to a provider (issue 17): repair makes each one in .data/scripts a
console_scripts launcher that finds the providers as the hook does and hands them to that process
only; a package's own executable gets environ_for(). Real gcc/zig-built programs, real wheels,
real pip installs split over two sys.path entries, run for real (Linux) or under wine (Windows)."""

from __future__ import annotations

import configparser
import json
import os
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
    manifest_of,
    one,
    pip_target,
    pip_target_for,
    repair,
    run,
    sharewheel,
    unpack,
)

pytest_plugins = ["pe_support", "macho_support"]

PROG_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <acme.h>
int main(int argc, char **argv) {
    char line[256] = "";
    const char *ld = getenv("LD_LIBRARY_PATH");
    if (!fgets(line, sizeof line, stdin)) line[0] = 0;
    line[strcspn(line, "\r\n")] = 0;
    printf("sum=%d version=%s stdin=%s ld=%s argv0=%s\n", argc > 2 ? acme_add(atoi(argv[1]), atoi(argv[2])) : -1,
           acme_version(), line, ld ? ld : "(unset)", argv[0]);
    return argc > 3 ? atoi(argv[3]) : 0;
}
"""

LAUNCH = "_sharewheel_launch_acme_tool"


def scripts_wheel(build_env: BuildEnv, where: Path, script: Path, platform: str, *,
                  package_binary: Path | None = None, console_scripts: tuple[str, ...] = ()) -> Path:
    """A setuptools-built wheel `acme-tool` holding the executable `script` in .data/scripts (and
    `package_binary` in its package acme_tool), tagged for `platform`. setuptools copies scripts as
    text; the build_scripts below copies them as they are."""
    project = where / "acme-tool-project"
    (project / "bin").mkdir(parents=True)
    (project / "acme_tool").mkdir()
    shutil.copy(script, project / "bin" / script.name)
    (project / "acme_tool" / "__init__.py").write_text('"""acme_tool: test consumer."""\n')
    data = []
    if package_binary is not None:
        shutil.copy(package_binary, project / "acme_tool" / package_binary.name)
        data = [package_binary.name]
    (project / "setup.py").write_text(textwrap.dedent(f"""\
        import os
        from distutils.command.build_scripts import build_scripts
        from setuptools import setup
        from setuptools.dist import Distribution

        class CopyScripts(build_scripts):
            def copy_scripts(self):
                self.mkpath(self.build_dir)
                out = [os.path.join(self.build_dir, os.path.basename(s)) for s in self.scripts]
                for source, target in zip(self.scripts, out):
                    self.copy_file(source, target)
                return out, out

        class BinaryDistribution(Distribution):
            def has_ext_modules(self):
                return True

        setup(name="acme-tool", version="1.0.0", packages=["acme_tool"], package_data={{"acme_tool": {data!r}}},
              scripts=["bin/{script.name}"], entry_points={{"console_scripts": {list(console_scripts)!r}}}, cmdclass={{"build_scripts": CopyScripts}},
              distclass=BinaryDistribution, options={{"bdist_wheel": {{"plat_name": {platform!r}}}}})
        """))
    dist = where / "dist"
    run([build_env.python, "-m", "pip", *PIP_QUIET, "wheel", "--no-build-isolation", "--no-deps", "-w", dist,
         project])
    return one(list(dist.glob("*.whl")))


def entry_points(wheel_dir: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(one(list(wheel_dir.glob("*.dist-info"))) / "entry_points.txt")
    return parser


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "PYTHONPATH")}
    return {**env, **extra}


def run_tool(argv: list, env: dict[str, str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """An installed command, run as a user's shell runs it; its stdin is `stdin`."""
    return subprocess.run(argv, input=stdin, text=True, capture_output=True, env=env, cwd=cwd, check=False)


def launcher_plan(site: Path, entries: list[Path], command: str, args: list[str], platform: str,
                  python: str = sys.executable) -> dict:
    """What the installed launcher in `site` chooses for `command`, computed by that copy in a fresh
    interpreter (sys.path `entries`) for `platform`: {"dirs", "argv", "env"} (env: what it sets)."""
    code = textwrap.dedent(f"""\
        import json, os, sys
        import {LAUNCH} as launch
        binary, providers = launch.COMMANDS[{command!r}]
        here = os.path.dirname(os.path.realpath(launch.__file__))
        dirs = launch._launcher.library_dirs(launch._runtime, providers, launch.NEEDED_BY, {list(map(str, entries))!r})
        argv, env = launch._launcher.command_for(launch._runtime, os.path.join(here, *binary.split("/")), {args!r}, dirs,
                                                 argv0={command!r}, environ={{}}, platform={platform!r})
        print(json.dumps({{"dirs": dirs, "argv": argv, "env": env}}))
        """)
    result = run([python, "-I", "-c", f"import sys; sys.path[:0] = [{str(site)!r}]\n{code}"],
                 env=clean_env(), cwd=site)
    return json.loads(result.stdout)


# --- Linux: real runs -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def linux_tool(tmp_path_factory: pytest.TempPathFactory, packed, build_env: BuildEnv):
    """acme-tool's wheel (gcc-built console program in .data/scripts, another in the package),
    repaired against acme-native 3.1.4."""
    base = tmp_path_factory.mktemp("linux-tool")
    provider = packed("3.1.4")
    package = pip_target(build_env, provider, base / "build-site") / "acme_native"
    (base / "prog.c").write_text(PROG_C)
    built = []
    for name in ("acme-tool", "acme-prog"):
        run(["gcc", "-O2", base / "prog.c", "-o", base / name, f"-I{package / 'include'}",
             f"-L{package / 'lib'}", "-lacme"])
        built.append(base / name)
    wheel = scripts_wheel(build_env, base, built[0], "linux_x86_64", package_binary=built[1])
    return provider, wheel, repair(wheel, base / "wheelhouse", "--provider", provider)


def test_script_executable_becomes_an_entry_point_launcher(linux_tool, tmp_path: Path) -> None:
    provider, _, repaired = linux_tool
    tree = unpack(repaired, tmp_path / "t")
    assert not (tree / "acme_tool-1.0.0.data" / "scripts" / "acme-tool").exists()
    moved = tree / "acme_tool.scripts" / "sharewheel" / "acme-tool"
    with zipfile.ZipFile(repaired) as zf:
        assert zf.getinfo("acme_tool.scripts/sharewheel/acme-tool").external_attr >> 16 & 0o111
    assert entry_points(tree).get("console_scripts", "acme-tool") == f"{LAUNCH}:main_0"
    assert {"acme_tool.scripts/sharewheel/acme-tool", "acme_tool/acme-prog"} <= \
        {link["binary"] for link in manifest_of(repaired)["links"]}
    # the package's own executable: its launcher beside the hook
    assert (tree / "acme_tool" / "_sharewheel_launcher.py").is_file()
    # repairing the repaired wheel changes nothing of it
    again = unpack(repair(repaired, tmp_path / "again", "--provider", provider), tmp_path / "a")
    assert entry_points(again).get("console_scripts", "acme-tool") == f"{LAUNCH}:main_0"
    assert (again / "acme_tool.scripts" / "sharewheel" / "acme-tool").read_bytes() == moved.read_bytes()
    assert (again / f"{LAUNCH}.py").read_text() == (tree / f"{LAUNCH}.py").read_text()


def test_console_script_runs_from_a_split_install(linux_tool, build_env: BuildEnv, tmp_path: Path) -> None:
    """Provider in one --target directory on PYTHONPATH, consumer in a real venv: the venv's
    `acme-tool` runs the program with libacme from the provider's directory, passing argv, stdin
    and the exit status through, and sets no LD_LIBRARY_PATH (ld.so --library-path)."""
    provider, _, repaired = linux_tool
    site_a = pip_target(build_env, provider, tmp_path / "site-a")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    build_env.pip("--python", env_dir / "bin" / "python", "install", "--no-index", "--no-deps", repaired)
    command = env_dir / "bin" / "acme-tool"
    result = run_tool([command, "2", "3", "7"], clean_env(PYTHONPATH=str(site_a)), tmp_path, stdin="hello\n")
    assert result.returncode == 7, result.stderr
    assert result.stdout.split() == ["sum=5", "version=3.1.4", "stdin=hello", "ld=(unset)", f"argv0={command}"]
    assert "LD_LIBRARY_PATH" not in os.environ or os.environ.get("LD_LIBRARY_PATH") == clean_env().get(
        "LD_LIBRARY_PATH")

    # both --target installs on PYTHONPATH: pip --target's bin/ script
    site_b = pip_target(build_env, repaired, tmp_path / "site-b")
    result = run_tool([site_b / "bin" / "acme-tool", "40", "2"], clean_env(PYTHONPATH=f"{site_b}{os.pathsep}{site_a}"),
                      tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:4] == ["sum=42", "version=3.1.4", "stdin=", "ld=(unset)"]

    # without the provider: one line naming it and the pip command, exit status 1
    missing = run_tool([command, "1", "2"], clean_env(), tmp_path)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr, missing.stderr
    [line] = missing.stderr.strip().splitlines()
    assert line.startswith("acme-tool: acme-tool needs the native library provider acme-native") and \
        "pip install 'acme-native" in line


def test_package_executable_runs_with_environ_for(linux_tool, build_env: BuildEnv, run_env, tmp_path: Path) -> None:
    """A package starting the executable it ships: environ_for() is a copy with the provider's
    directory in LD_LIBRARY_PATH; the calling process's environment is unchanged."""
    provider, _, repaired = linux_tool
    site_a = pip_target(build_env, provider, tmp_path / "site-a")
    site_b = pip_target(build_env, repaired, tmp_path / "site-b")
    result = run_env.run("""
        import os, subprocess
        import acme_tool
        from acme_tool import _sharewheel_launcher
        env = _sharewheel_launcher.environ_for()
        assert "LD_LIBRARY_PATH" not in os.environ, os.environ["LD_LIBRARY_PATH"]
        done = subprocess.run([os.path.join(os.path.dirname(acme_tool.__file__), "acme-prog"), "5", "6", "3"],
                              env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        print(done.returncode, done.stdout.split()[0], env["LD_LIBRARY_PATH"])
        """, [site_b, site_a])
    status, total, library_path = result.stdout.split()
    assert (status, total) == ("3", "sum=11")
    assert library_path == str(site_a / "acme_native" / "lib")


def test_script_moved_by_auditwheel_loses_its_shim(packed, build_env: BuildEnv, extra_prefix: Path,
                                                    tmp_path: Path) -> None:
    """A program that also needs a vendored library: auditwheel moves it to <dist>.scripts/ behind
    its shim; the launcher replaces the shim and runs it from a split install."""
    provider = packed("3.1.4")
    package = pip_target(build_env, provider, tmp_path / "build-site") / "acme_native"
    (tmp_path / "prog.c").write_text(PROG_C.replace("acme_add(atoi(argv[1]), atoi(argv[2]))",
                                                    "extra_twice(acme_add(atoi(argv[1]), atoi(argv[2])))")
                                     .replace("#include <acme.h>", "#include <acme.h>\nint extra_twice(int);"))
    run(["gcc", "-O2", tmp_path / "prog.c", "-o", tmp_path / "acme-tool", f"-I{package / 'include'}",
         f"-L{package / 'lib'}", "-lacme", f"-L{extra_prefix / 'lib'}", "-lextra"])
    wheel = scripts_wheel(build_env, tmp_path, tmp_path / "acme-tool", "linux_x86_64")
    repaired = repair(wheel, tmp_path / "out", "--provider", provider,
                      env={"LD_LIBRARY_PATH": str(extra_prefix / "lib")})
    with zipfile.ZipFile(repaired) as zf:
        names = set(zf.namelist())
    assert "acme_tool-1.0.0.data/scripts/acme-tool" not in names and "acme_tool.scripts/acme-tool" in names
    site_a = pip_target(build_env, provider, tmp_path / "site-a")
    site_b = pip_target(build_env, repaired, tmp_path / "site-b")
    result = run_tool([site_b / "bin" / "acme-tool", "1", "2"], clean_env(PYTHONPATH=f"{site_b}{os.pathsep}{site_a}"),
                      tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "sum=6"


def test_a_same_named_entry_point_is_refused(linux_tool, build_env: BuildEnv, tmp_path: Path) -> None:
    provider = linux_tool[0]
    script = tmp_path / "acme-tool"
    with zipfile.ZipFile(linux_tool[1]) as zf:
        script.write_bytes(zf.read("acme_tool-1.0.0.data/scripts/acme-tool"))
    edited = scripts_wheel(build_env, tmp_path, script, "linux_x86_64", console_scripts=("acme-tool = acme_tool:main",))
    before = edited.read_bytes()
    result = sharewheel("repair", edited, "-w", tmp_path / "out", "--provider", provider, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "already has the console_scripts entry point acme-tool = acme_tool:main" in line, line
    assert edited.read_bytes() == before and not list((tmp_path / "out").glob("*.whl"))


# --- Windows: the launcher's command run under wine ---------------------------------------------


def test_windows_console_script_runs_split_under_wine(windows_prefixes, pe_zig, wine, build_env: BuildEnv,
                                                     tmp_path: Path) -> None:
    """A zig-built .exe in .data/scripts linked to a zig-built provider DLL: repaired, installed
    split (pip --platform win_amd64), the installed launcher's choice (argv, PATH) run under wine.
    (No Windows Python runs under wine here, so the entry point itself does not; wine's programs
    get PATH from WINEPATH, which the launcher's PATH entries go to.)"""
    from pe_support import pe_imports, wine_path, wine_run

    prefix = windows_prefixes("3.1.4")
    sharewheel("pack", prefix.root, "--name", "acme-native", "--version", "3.1.4", "-w", tmp_path / "providers")
    provider = one(list((tmp_path / "providers").glob("*.whl")))
    unique = manifest_of(provider)["provides"]["libraries"][0]["unique_name"]
    (tmp_path / "prog.c").write_text(PROG_C)
    exe = tmp_path / "exe" / "acme-tool.exe"
    exe.parent.mkdir()
    pe_zig.cc("-o", exe, tmp_path / "prog.c", f"-I{prefix.include_dir}", prefix.implib)
    wheel = scripts_wheel(build_env, tmp_path, exe, "win_amd64")
    repaired = repair(wheel, tmp_path / "out", "--provider", provider)
    tree = unpack(repaired, tmp_path / "t")
    moved = tree / "acme_tool.scripts" / "sharewheel" / "acme-tool.exe"
    assert unique in pe_imports(moved)["imports"]
    assert entry_points(tree).get("console_scripts", "acme-tool") == f"{LAUNCH}:main_0"
    assert not list(tree.glob("*.data/scripts/*"))

    site_a = pip_target_for(build_env, provider, tmp_path / "A", "win_amd64")
    site_b = pip_target_for(build_env, repaired, tmp_path / "B", "win_amd64")
    plan = launcher_plan(site_b, [site_b, site_a], "acme-tool", ["4", "5", "9"], "win32")
    lib_dir = site_a / "acme_native" / "lib"
    assert plan["dirs"] == [str(lib_dir)]
    assert plan["argv"] == [str(site_b / "acme_tool.scripts" / "sharewheel" / "acme-tool.exe"), "4", "5", "9"]
    assert plan["env"] == {"PATH": str(lib_dir)}
    empty = tmp_path / "cwd"
    empty.mkdir()
    winepath = ";".join(wine_path(d) for d in plan["env"]["PATH"].split(";"))
    result = wine_run(plan["argv"][0], *plan["argv"][1:], cwd=empty, env={"WINEPATH": winepath})
    assert result.returncode == 9, result.stdout + result.stderr
    assert result.stdout.split()[:2] == ["sum=9", "version=3.1.4"]
    without = wine_run(plan["argv"][0], "1", "2", cwd=empty)
    assert without.returncode != 0 and "sum=" not in without.stdout


# --- macOS: structure, and the environment the launcher builds ----------------------------------


def test_macos_console_script_is_launched_with_the_provider_dir(macos_prefixes, zig, build_env: BuildEnv,
                                                               tmp_path: Path) -> None:
    from macho_support import load_commands

    prefix = macos_prefixes("arm64")
    sharewheel("pack", prefix.root, "--name", "acme-native", "--version", "3.1.4", "-w", tmp_path / "providers")
    provider = one(list((tmp_path / "providers").glob("*.whl")))
    unique = manifest_of(provider)["provides"]["libraries"][0]["unique_name"]
    (tmp_path / "prog.c").write_text(PROG_C)
    exe = tmp_path / "exe" / "acme-tool"
    exe.parent.mkdir()
    zig.cc("arm64", "-o", exe, tmp_path / "prog.c", f"-I{prefix.include}", prefix.link)
    wheel = scripts_wheel(build_env, tmp_path, exe, "macosx_11_0_arm64")
    repaired = repair(wheel, tmp_path / "out", "--provider", provider)
    tree = unpack(repaired, tmp_path / "t")
    moved = tree / "acme_tool.scripts" / "sharewheel" / "acme-tool"
    commands = load_commands(moved)
    assert f"@rpath/{unique}" in json.dumps(commands), commands
    assert entry_points(tree).get("console_scripts", "acme-tool") == f"{LAUNCH}:main_0"
    assert not list(tree.glob("*.data/scripts/*"))

    site_a = pip_target_for(build_env, provider, tmp_path / "A", "macosx_11_0_arm64")
    site_b = pip_target_for(build_env, repaired, tmp_path / "B", "macosx_11_0_arm64")
    plan = launcher_plan(site_b, [site_b, site_a], "acme-tool", ["1"], "darwin")
    assert plan["argv"] == [str(site_b / "acme_tool.scripts" / "sharewheel" / "acme-tool"), "1"]
    assert plan["env"] == {"DYLD_LIBRARY_PATH": str(site_a / "acme_native" / "lib")}


# --- the launcher as code -------------------------------------------------------------------------


def test_launcher_follows_the_providers_a_provider_links_to(tmp_path: Path) -> None:
    """A provider packed with --requires: the directories of both copies, found in two sys.path
    entries from the table sharewheel writes into the first one's __init__.py; missing: ImportError."""
    from sharewheel.runtime import Requirement, launcher, loader, provider_init

    two = Requirement("swl_two", "swl-two", "swl-two==2.*", ("libswltwo-sw1.so",))
    for entry, package, version, libraries, requires in (
            (tmp_path / "a", "swl_one", "1.0", ["libswlone-sw2.so"], [two]),
            (tmp_path / "b", "swl_two", "2.1", ["libswltwo-sw1.so"], [])):
        (entry / package / "lib").mkdir(parents=True)
        (entry / package / "lib" / libraries[0]).write_bytes(b"")
        (entry / package / "__init__.py").write_text(provider_init(
            distribution=package.replace("_", "-"), version=version, libraries=libraries, requires=requires))
    one_ = Requirement("swl_one", "swl-one", "swl-one>=1", ("libswlone-sw2.so",)).record(launcher_libc(), "")
    entries = [str(tmp_path / "a"), str(tmp_path / "b")]
    assert launcher.library_dirs(loader, [one_], "swl-consumer", entries) == \
        [str(tmp_path / "a" / "swl_one" / "lib"), str(tmp_path / "b" / "swl_two" / "lib")]
    with pytest.raises(ImportError, match=r"swl-one needs the native library provider swl-two \(swl-two==2\.\*\)"):
        launcher.library_dirs(loader, [one_], "swl-consumer", entries[:1])
    before = dict(os.environ)
    env = launcher.environ_with(["/x", "/y"], platform="linux")
    assert env["LD_LIBRARY_PATH"].split(":")[:2] == ["/x", "/y"] and dict(os.environ) == before
    assert launcher.environ_with(["C:\\p"], {"Path": "C:\\w"}, platform="win32") == {"Path": "C:\\p;C:\\w"}


def launcher_libc():
    from sharewheel.runtime import Libc

    return Libc.OTHER


def test_launcher_parses_as_the_oldest_python_and_chooses_the_interpreter(linux_tool, build_env: BuildEnv,
                                                                          tmp_path: Path) -> None:
    """The launcher as installed parses as 3.8 (the oldest Python the runtime supports; no 3.8
    interpreter is available to CI's Debian, so it is parsed, not run, there) and chooses, in a
    fresh interpreter, the binary's own ELF interpreter with --library-path and --argv0 (glibc)."""
    import ast

    from sharewheel.runtime import launcher_source

    ast.parse(launcher_source(), feature_version=(3, 8))
    provider, _, repaired = linux_tool
    site_a = pip_target(build_env, provider, tmp_path / "site-a")
    site_b = pip_target(build_env, repaired, tmp_path / "site-b")
    plan = launcher_plan(site_b, [site_b, site_a], "acme-tool", ["1"], "linux")
    binary = str(site_b / "acme_tool.scripts" / "sharewheel" / "acme-tool")
    assert plan["argv"][0].startswith("/lib") and "ld-linux" in plan["argv"][0], plan
    assert plan["argv"][1:] == ["--library-path", str(site_a / "acme_native" / "lib"), "--argv0", "acme-tool", binary, "1"]
    assert plan["env"] == {}


@pytest.mark.parametrize("case", ["entry points", "package launcher"])
def test_bad_input_is_one_error_line(case: str, linux_tool, tmp_path: Path) -> None:
    """An entry_points.txt that is no INI file, or a package's own _sharewheel_launcher.py: one
    line, exit status 1, no output wheel."""
    from sharewheel.wheelfile import write_wheel

    provider, wheel, _ = linux_tool
    tree = unpack(wheel, tmp_path / "t")
    dist_info = one(list(tree.glob("*.dist-info"))).name
    if case == "entry points":
        (tree / dist_info / "entry_points.txt").write_text("console_scripts]\nx = y:z\n")
        expected = f"{dist_info}/entry_points.txt: not an entry points file"
    else:
        (tree / "acme_tool" / "_sharewheel_launcher.py").write_text("OWN = 1\n")
        expected = "'acme_tool/_sharewheel_launcher.py': the wheel's own file, where repair writes its launcher"
    edited = write_wheel(tree, dist_info, tmp_path / "in" / wheel.name)
    result = sharewheel("repair", edited, "-w", tmp_path / "out", "--provider", provider, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert expected in line, line
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
