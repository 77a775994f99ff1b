"""The README's cibuildwheel configuration, through cibuildwheel's own code, on real wheels.

cibuildwheel (installed from PyPI by the test extra) reads the README's `pyproject.toml` block
with its own option reader, and formats `repair-wheel-command` with its own `prepare_command`
and the values its platforms/{linux,macos,windows}.py pass; the command then runs, through
cibuildwheel's own `shell`, on the Linux, macOS and Windows consumer wheels the other tests
build, in a project directory holding just that block (the provider installed, as its
`before-build` would). What cibuildwheel then expects of `{dest_dir}` is checked as its code
checks it, and more strictly: exactly one file, the wheel.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cibuildwheel.options import CommandLineArguments, compute_options
from cibuildwheel.util.cmd import shell
from cibuildwheel.util.helpers import prepare_command
from conftest import (
    PIP_QUIET,
    ROOT,
    BuildEnv,
    Consumer,
    manifest_of,
    one,
    pip_target,
    pip_target_for,
    requires_dist,
    run,
)
from packaging.specifiers import SpecifierSet
from packaging.utils import parse_wheel_filename
from test_flags_auditwheel import Demo, demo, hashed_name, symbol_counts, vendored_sources  # noqa: F401
from test_macos import PLATFORMS as MAC_PLATFORMS
from test_macos import MacCase, mac_case  # noqa: F401 - fixtures, built once for this module
from test_windows import WinCase, win_case  # noqa: F401

pytest_plugins = ["macho_support", "pe_support"]


def readme_config() -> str:
    """The first ```toml block of the README's cibuildwheel section: what users copy."""
    section = (ROOT / "README.md").read_text().split("### cibuildwheel and release scripts", 1)[1]
    return re.search(r"```toml\n(.*?)```", section, re.DOTALL)[1]


@dataclasses.dataclass(frozen=True)
class Step:
    """One repair step as cibuildwheel runs it: its directories and the command it ran."""

    built_wheel: Path
    dest_dir: Path
    command: str
    stdout: str


def cibuildwheel_repair(tmp_path: Path, build_env: BuildEnv, platform: str, identifier: str, wheel: Path,
                        provider: Path | None, capfd: pytest.CaptureFixture[str], env: dict[str, str] | None = None,
                        config: str | None = None, tool: str = "sharewheel") -> Step:
    """What cibuildwheel's platforms/<platform>.py does for the repair step of `identifier`, with
    the README's configuration or `config`, whose repair command runs `tool`."""
    project = tmp_path / "project"
    project.mkdir(parents=True)
    (project / "pyproject.toml").write_text(readme_config() if config is None else config)
    args = dataclasses.replace(CommandLineArguments.defaults(), platform=platform, package_dir=project)
    build_options = compute_options(platform, args, env={}).build_options(identifier)  # type: ignore[arg-type]
    assert f"{tool} repair" in build_options.repair_command, build_options.repair_command

    # the environment cibuildwheel runs it in: the README's `before-build` installed sharewheel
    # (our test interpreter's) and the provider, for the wheel's platform
    site = tmp_path / "build-env-site"
    if provider is None:
        site.mkdir()
    elif platform == "linux":
        pip_target(build_env, provider, site)
    else:  # pip's --platform install of the provider wheel's own tag
        pip_target_for(build_env, provider, site, one(sorted(parse_wheel_filename(provider.name)[3])).platform)
    tmpdir = tmp_path / "TMPDIR"
    tmpdir.mkdir()
    extra = env or {}
    environment = {
        **os.environ, **extra,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), extra.get("PATH", os.environ["PATH"])]),
        "PYTHONPATH": str(site), "TMPDIR": str(tmpdir),
    }

    # cibuildwheel's temporary layout: built_wheel/ holds the build's wheel, repaired_wheel/ is
    # created empty (platforms/linux.py: `mkdir -p repaired_wheel_dir`; macos.py, windows.py:
    # `repaired_wheel_dir.mkdir()`)
    built_dir, dest_dir = tmp_path / "cibw" / "built_wheel", tmp_path / "cibw" / "repaired_wheel"
    built_dir.mkdir(parents=True)
    dest_dir.mkdir()
    built_wheel = built_dir / wheel.name
    built_wheel.write_bytes(wheel.read_bytes())
    if platform == "linux":  # platforms/linux.py, in the container: the project is /project
        command = prepare_command(build_options.repair_command, wheel=built_wheel, dest_dir=dest_dir,
                                  package=project, project=project)
    elif platform == "macos":  # platforms/macos.py
        if identifier.endswith("universal2"):
            delocate_archs = "x86_64,arm64"
        elif identifier.endswith("arm64"):
            delocate_archs = "arm64"
        else:
            delocate_archs = "x86_64"
        command = prepare_command(build_options.repair_command, wheel=built_wheel, dest_dir=dest_dir,
                                  delocate_archs=delocate_archs, package=build_options.package_dir, project=".")
    else:  # platforms/windows.py
        command = prepare_command(build_options.repair_command, wheel=built_wheel, dest_dir=dest_dir,
                                  package=build_options.package_dir, project=".")
    assert "{" not in command, command  # every placeholder the README uses was filled in

    capfd.readouterr()
    # linux.py runs `sh -c COMMAND` in the container, macos.py and windows.py `shell(COMMAND)`
    # (subprocess with shell=True): the same call here; a non-zero exit raises, as there
    shell(command, env=environment, cwd=project)
    stdout = capfd.readouterr().out

    assert_dest_dir_as_cibuildwheel_expects(dest_dir, platform)
    assert os.listdir(tmpdir) == [], "temporary files left behind"
    assert built_wheel.read_bytes() == wheel.read_bytes()  # the input is only read
    return Step(built_wheel, dest_dir, command, stdout)


def assert_dest_dir_as_cibuildwheel_expects(dest_dir: Path, platform: str) -> Path:
    """cibuildwheel 4.3's checks after the repair step, mirrored (they are inline, not functions):
    platforms/linux.py:405-411 (`match container.glob(repaired_wheel_dir, "*.whl")`: none is
    RepairStepProducedNoWheelError, more than one RepairStepProducedMultipleWheelsError),
    platforms/macos.py:633-636 and platforms/windows.py:578-581 (`next(repaired_wheel_dir.glob("*.whl"))`,
    StopIteration: RepairStepProducedNoWheelError). Stricter here: nothing else at all."""
    wheels = list(dest_dir.glob("*.whl"))
    assert wheels, "RepairStepProducedNoWheelError"
    if platform == "linux":
        assert len(wheels) == 1, f"RepairStepProducedMultipleWheelsError: {wheels}"
    assert sorted(os.listdir(dest_dir)) == [wheels[0].name], "more than the wheel in {dest_dir}"
    return wheels[0]


def assert_linked(repaired: Path, reference: Path) -> None:
    """Repaired as the fixture's `--provider` repair did: same name, links and requirement."""
    assert repaired.name == reference.name
    links = manifest_of(repaired)["links"]
    assert links and links == manifest_of(reference)["links"]
    [requirement] = requires_dist(repaired)
    assert requirement.name == "acme-native" and requirement.specifier == SpecifierSet(">=3.1.4,==3.*")


def assert_log(step: Step, repaired: Path) -> None:
    """cibuildwheel's `+ command` echo, then sharewheel's one line naming the wheel it wrote."""
    lines = step.stdout.splitlines()
    assert lines[0] == f"+ {step.command}", lines
    assert len(lines) == 2 and lines[1].startswith(f"{repaired.name}: linked "), lines
    assert "acme-native 3.1.4)" in lines[1] and "; tagged " in lines[1], lines


def test_readme_config_is_valid_for_cibuildwheel_and_sharewheel(tmp_path: Path) -> None:
    from sharewheel.config import read_pyproject

    (tmp_path / "pyproject.toml").write_text(readme_config())
    commands = {}
    for platform, identifier in [("linux", "cp311-manylinux_x86_64"), ("macos", "cp311-macosx_arm64"),
                                 ("windows", "cp311-win_amd64")]:
        args = dataclasses.replace(CommandLineArguments.defaults(), platform=platform, package_dir=tmp_path)
        commands[platform] = compute_options(platform, args, env={}).build_options(identifier).repair_command  # type: ignore[arg-type]
    assert commands["linux"] == commands["windows"] == "sharewheel repair -w {dest_dir} {wheel}"
    assert commands["macos"] == "sharewheel repair --require-archs {delocate_archs} -w {dest_dir} {wheel}"
    assert read_pyproject(tmp_path / "pyproject.toml").providers == ("acme-native",)


def test_linux_wheel(consumer: Consumer, build_env: BuildEnv, tmp_path: Path,
                     capfd: pytest.CaptureFixture[str]) -> None:
    import platform

    step = cibuildwheel_repair(tmp_path, build_env, "linux", f"cp311-manylinux_{platform.machine()}", consumer.input,
                               consumer.provider, capfd, env={"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)})
    repaired = one(list(step.dest_dir.iterdir()))
    assert_linked(repaired, consumer.output)
    assert_log(step, repaired)


@pytest.mark.parametrize("variant", ["arm64", "universal2"])
def test_macos_wheel(variant: str, mac_case: Callable[[str], MacCase], build_env: BuildEnv,  # noqa: F811
                     tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    case = mac_case(variant)
    step = cibuildwheel_repair(tmp_path, build_env, "macos", f"cp311-macosx_{variant}", case.input, case.provider, capfd)
    expected = {"arm64": "--require-archs arm64 ", "universal2": "--require-archs x86_64,arm64 "}[variant]
    assert expected in step.command
    repaired = one(list(step.dest_dir.iterdir()))
    assert repaired.name.endswith(f"-{MAC_PLATFORMS[variant]}.whl")
    assert_linked(repaired, case.output)
    assert_log(step, repaired)


def test_windows_wheel(win_case: WinCase, build_env: BuildEnv, tmp_path: Path,  # noqa: F811
                       capfd: pytest.CaptureFixture[str]) -> None:
    # delvewheel finds the DLLs no provider offers on PATH (cibuildwheel's `environment` sets it)
    step = cibuildwheel_repair(tmp_path, build_env, "windows", "cp311-win_amd64", win_case.input, win_case.provider, capfd,
                               env={"PATH": f"{win_case.extra_dir}{os.pathsep}{os.environ['PATH']}"})
    repaired = one(list(step.dest_dir.iterdir()))
    assert_linked(repaired, win_case.output)
    assert_log(step, repaired)


# --- pure-Python wheels: copied unchanged ----------------------------------------------------


@pytest.fixture(scope="module")
def pure_wheel(tmp_path_factory: pytest.TempPathFactory, build_env: BuildEnv) -> Path:
    """A setuptools-built py3-none-any wheel."""
    base = tmp_path_factory.mktemp("pure")
    project = base / "pure-project"
    (project / "purepkg").mkdir(parents=True)
    (project / "purepkg" / "__init__.py").write_text('"""A pure-Python package."""\nVALUE = 42\n')
    (project / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=69"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "purepkg"
        version = "1.0"
        [tool.setuptools]
        packages = ["purepkg"]
        """))
    run([build_env.python, "-m", "pip", *PIP_QUIET, "wheel", "--no-build-isolation", "--no-deps",
         "-w", base / "dist", project])
    wheel = one(list((base / "dist").glob("*.whl")))
    assert wheel.name == "purepkg-1.0-py3-none-any.whl"
    return wheel


def test_pure_wheel_through_the_repair_command(pure_wheel: Path, consumer: Consumer, build_env: BuildEnv,
                                               tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """cibuildwheel stops before its repair step when a build makes a pure wheel
    (NonPlatformWheelError); the command itself still copies one unchanged, exit status 0."""
    step = cibuildwheel_repair(tmp_path, build_env, "linux", "cp311-manylinux_x86_64", pure_wheel, consumer.provider, capfd)
    copied = one(list(step.dest_dir.iterdir()))
    assert copied.name == pure_wheel.name and copied.read_bytes() == pure_wheel.read_bytes()
    assert step.stdout.splitlines()[1:] == [
        f"{pure_wheel.name}: pure Python (platform any), nothing to repair; copied unchanged"]


def test_release_script(pure_wheel: Path, consumer: Consumer, tmp_path: Path) -> None:
    """The README's release script: `sharewheel repair -w wheelhouse dist/*.whl` in the project,
    whose dist/ holds a platform wheel and a pure one."""
    project = tmp_path / "project"
    (project / "dist").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[tool.sharewheel]\nproviders = ["providers"]\n')
    (project / "providers").mkdir()
    (project / "providers" / consumer.provider.name).write_bytes(consumer.provider.read_bytes())
    for wheel in (pure_wheel, consumer.input):
        (project / "dist" / wheel.name).write_bytes(wheel.read_bytes())
    result = run(["sh", "-c", "sharewheel repair -w wheelhouse dist/*.whl"], cwd=project, env={
        "LD_LIBRARY_PATH": str(consumer.extra_lib_dir),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    # nothing on stderr but which [tool.sharewheel] applies (said unless -q)
    assert result.stderr.splitlines() == [f"sharewheel: settings from {project / 'pyproject.toml'} [tool.sharewheel]"]
    assert sorted(os.listdir(project / "wheelhouse")) == sorted([pure_wheel.name, consumer.output.name])
    assert (project / "wheelhouse" / pure_wheel.name).read_bytes() == pure_wheel.read_bytes()
    assert_linked(project / "wheelhouse" / consumer.output.name, consumer.output)
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == sorted([consumer.output.name, pure_wheel.name])


def test_pure_wheel_whose_record_lies_is_not_copied(pure_wheel: Path, tmp_path: Path) -> None:
    """The same RECORD checks as any input: a changed byte (same size) is an error, -w stays empty."""
    from test_cli_errors import assert_cli_error, rewrite

    def edit(info: zipfile.ZipInfo, data: bytes) -> tuple[zipfile.ZipInfo, bytes]:
        return (info, data.replace(b"42", b"43")) if info.filename == "purepkg/__init__.py" else (info, data)

    tampered = rewrite(pure_wheel, tmp_path / "dist" / pure_wheel.name, edit=edit)
    out = tmp_path / "out"
    assert_cli_error(tmp_path / "e", "repair", "-w", out, tampered, inputs=[tampered], out_dir=out,
                     names=(pure_wheel.name, "RECORD", "purepkg/__init__.py"))


# --- an auditwheel configuration, `auditwheel` replaced by `sharewheel` (issue 15) ----------------

AUDITWHEEL_CONFIG = """\
[tool.cibuildwheel.linux]
repair-wheel-command = "auditwheel repair --strip --exclude libfoo.so.1 -w {dest_dir} {wheel}"
"""


def test_auditwheel_repair_command_with_sharewheel_alone(demo: Demo, build_env: BuildEnv,  # noqa: F811
                                                         tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A project's `repair-wheel-command` using auditwheel's --strip and --exclude works with the
    tool's name replaced and nothing else: through cibuildwheel's option reading, formatting and
    shell, on the same gcc-built wheel, both commands write the same wheel — libfoo.so.1 left out
    (--exclude), libextra.so.1 vendored, every ELF file stripped (--strip)."""
    import platform

    identifier = f"cp311-manylinux_{platform.machine()}"
    repaired = {}
    for tool in ("auditwheel", "sharewheel"):
        config = AUDITWHEEL_CONFIG.replace("auditwheel repair", f"{tool} repair")
        step = cibuildwheel_repair(tmp_path / tool, build_env, "linux", identifier, demo.wheel, None, capfd,
                                   env={"LD_LIBRARY_PATH": str(demo.lib_dir)}, config=config, tool=tool)
        assert step.command.startswith(f"{tool} repair --strip --exclude libfoo.so.1 -w "), step.command
        repaired[tool] = one(list(step.dest_dir.iterdir()))
    theirs, ours = repaired["auditwheel"], repaired["sharewheel"]
    assert ours.name == theirs.name and ours.name != demo.wheel.name
    assert vendored_sources(ours) == vendored_sources(theirs) == [hashed_name(demo.lib_dir / "libextra.so.1")]
    symbols = symbol_counts(ours, tmp_path / "ours")
    assert symbols == symbol_counts(theirs, tmp_path / "theirs")
    assert len(symbols) == 2 and all(symtab == 0 for symtab, _ in symbols.values()), symbols
