"""The rough edges a new user hits (issue 15), one test each."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

from conftest import (
    EXAMPLES,
    BuildEnv,
    Consumer,
    build_acme,
    build_c_library,
    manifest_of,
    one,
    pip_target,
    prebuilt_wheel,
    repair,
    requires_dist,
    run,
    sharewheel,
)
from packaging.requirements import Requirement
from test_plugins_linux import DDOT, OPENBLAS
from test_plugins_linux import build_consumer as build_ext_consumer


def _summary(consumer: Consumer, out: Path) -> str:
    result = sharewheel("repair", consumer.input, "-w", out, "--provider", consumer.provider,
                        env={"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)})
    [line] = result.stdout.splitlines()
    return line


def test_summary_tags_are_in_a_fixed_order_and_an_unchanged_name_is_said_plainly(consumer: Consumer,
                                                                                 tmp_path: Path) -> None:
    """The tags are listed sorted (run after run the same line), and a binary built against the
    installed provider, which already asks for the unique name, is not shown as `X -> X`."""
    first, second = _summary(consumer, tmp_path / "a"), _summary(consumer, tmp_path / "b")
    assert first == second
    tags = first.rsplit("; tagged ", 1)[1].split(", ")
    assert tags == sorted(tags) and len(tags) == 2
    assert "(already the provider's name; acme-native 3.1.4)" in first
    assert " -> " not in first


def _run_in(where: Path, *args: str | Path, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    return sharewheel(*args, env=env, check=check, cwd=where)


def test_verbosity_flags_work_after_the_subcommand_and_say_each_source_once(consumer: Consumer,
                                                                            tmp_path: Path) -> None:
    """`repair -v` means `-v repair`: the plan and each settings source once, readably (no dataclass
    repr), and none of auditwheel's own log lines (those come with -vv); `-q` silences the summary."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.sharewheel]\nexclude = ["libnothing.so.9"]\n'
                                            '[tool.sharewheel.linux]\nabi = {acme-native = "minor"}\n')
    env = {"LD_LIBRARY_PATH": str(consumer.extra_lib_dir), "SHAREWHEEL_PLUGINS": ""}
    common = (consumer.input, "--provider", consumer.provider)
    after = _run_in(project, "repair", "-v", *common, "-w", tmp_path / "after", env=env)
    before = _run_in(project, "-v", "repair", *common, "-w", tmp_path / "before", env=env)
    assert after.stderr == before.stderr and after.stdout.replace("after", "before") == before.stdout
    lines = after.stderr.splitlines()
    sources = [line for line in lines if line.startswith("sharewheel: settings from")]
    assert sources == [
        f"sharewheel: settings from flags: providers = {consumer.provider}",
        "sharewheel: settings from SHAREWHEEL_* variables: plugins = (none)",
        (f"sharewheel: settings from {project / 'pyproject.toml'} [tool.sharewheel] and [tool.sharewheel.linux]: "
         "exclude = libnothing.so.9; abi = acme-native=minor"),
    ]
    assert "  require acme-native==3.*,==3.1.*,>=3.1.4" in lines  # the override narrows the provider's policy
    assert not [line for line in lines if "auditwheel" in line or "Settings(" in line], lines
    assert len(after.stdout.splitlines()) == 1  # the summary

    chatty = _run_in(project, "repair", "-vv", *common, "-w", tmp_path / "chatty", env=env)
    assert "sharewheel: auditwheel.repair: Grafting" in chatty.stderr  # -vv: the pypa tools' own log too

    quiet = _run_in(project, "repair", *common, "-q", "-w", tmp_path / "quiet", env=env)
    assert quiet.stdout == "" and quiet.stderr == ""
    assert [p.name for p in (tmp_path / "quiet").iterdir()] == [consumer.output.name]


def test_a_failed_run_leaves_no_new_wheel_directory(consumer: Consumer, tmp_path: Path) -> None:
    """A -w directory repair or pack created (with its parents) is removed when nothing was written
    into it; one that existed is kept; the input wheel is unchanged."""
    before = consumer.input.read_bytes()
    failed = sharewheel("repair", consumer.input, "-w", tmp_path / "new" / "wheelhouse", "--provider",
                        tmp_path / "no-such-provider", check=False)
    assert failed.returncode == 1 and failed.stderr.count("\n") == 1 and "sharewheel: error: " in failed.stderr
    assert not (tmp_path / "new").exists()
    (tmp_path / "existing").mkdir()
    failed = sharewheel("repair", consumer.input, "-w", tmp_path / "existing", "--provider",
                        tmp_path / "no-such-provider", check=False)
    assert failed.returncode == 1 and (tmp_path / "existing").is_dir()
    prefix = build_acme(tmp_path / "prefix", "3.1.4")
    failed = sharewheel("pack", prefix, "--name", "acme-native", "--version", "3.1.4", "--lib", "nosuch",
                        "-w", tmp_path / "packed" / "here", check=False)
    assert failed.returncode == 1 and failed.stderr.startswith("sharewheel: error: --lib nosuch: no such library")
    assert not (tmp_path / "packed").exists()
    assert consumer.input.read_bytes() == before


def test_repairing_a_repaired_wheel_recomputes_its_requirement(consumer: Consumer, packed: Callable[..., Path],
                                                                tmp_path: Path) -> None:
    """consumer.output was repaired against 3.1.4 (==3.*,>=3.1.4). Repaired again against 3.2.0
    only, it requires ==3.*,>=3.2.0, not ==3.*,>=3.1.4,>=3.2.0; and back with both at hand, >=3.1.4."""
    newer = tmp_path / "newer"
    newer.mkdir()
    shutil.copy(packed("3.2.0"), newer)
    again = repair(consumer.output, tmp_path / "again", "--provider", newer)
    assert requires_dist(again) == [Requirement("acme-native==3.*,>=3.2.0")]
    assert [link["version"] for link in manifest_of(again)["links"]] == ["3.2.0"]
    shutil.copy(consumer.provider, newer)
    back = repair(again, tmp_path / "back", "--provider", newer)
    assert [str(r.specifier) for r in requires_dist(back)] == [str(Requirement("acme-native==3.*,>=3.1.4").specifier)]



STATX = """\
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
int acme_statx_here(void) { struct statx s; return statx(AT_FDCWD, ".", 0, STATX_SIZE, &s); }
"""


def test_a_re_repaired_wheel_drops_tags_older_than_its_providers(consumer: Consumer, tmp_path: Path) -> None:
    """consumer.output is tagged manylinux_2_5 (and manylinux1); repaired again against a provider
    built for manylinux_2_28 only, it must not keep promising the older platforms, where pip would
    find no provider (auditwheel itself keeps an audited wheel's tags on a re-repair)."""
    old = set(consumer.output.name.removesuffix(".whl").split("-")[-1].split("."))
    assert "manylinux_2_5_x86_64" in old, old
    base = tmp_path / "provider"
    base.mkdir()
    (base / "statx.c").write_text(STATX)  # statx@GLIBC_2.28 makes libacme a manylinux_2_28 library
    run(["sh", EXAMPLES / "acme" / "build.sh", base / "prefix", "3.1.4"], env={"CC": f"gcc {base / 'statx.c'}"})
    sharewheel("pack", base / "prefix", "--name", "acme-native", "--version", "3.1.4", "-w", base / "wheelhouse")
    assert one(list((base / "wheelhouse").glob("*.whl"))).name.endswith("-manylinux_2_28_x86_64.whl")
    again = repair(consumer.output, tmp_path / "again", "--provider", base / "wheelhouse")
    platforms = set(again.name.removesuffix(".whl").split("-")[-1].split("."))
    assert platforms == {"manylinux_2_28_x86_64"}, platforms


FOO = {
    "1.2.0": "int foo_a(void) { return 12; }\n",
    "1.3.0": "int foo_a(void) { return 13; }\nint foo_b(void) { return 130; }\n",
}


def test_the_floor_is_the_oldest_release_at_hand_that_stands_in(build_env: BuildEnv, tmp_path: Path) -> None:
    """Repaired with foo-native 1.2.0 and 1.3.0 at hand, a consumer that calls only foo_a (in both)
    requires >=1.2.0, though it is linked to 1.3.0's file; one calling foo_b, new in 1.3.0, >=1.3.0."""
    providers = tmp_path / "providers"
    for version, source in FOO.items():
        prefix = build_c_library(tmp_path / f"foo-{version}", "foo", "libfoo.so.1", source)
        sharewheel("pack", prefix, "--name", "foo-native", "--version", version, "-w", providers)
    assert len(list(providers.glob("*.whl"))) == 2
    for function, floor in (("foo_a", "1.2.0"), ("foo_b", "1.3.0")):
        where = tmp_path / function
        where.mkdir()
        source = where / "_core.c"
        source.write_text(f"int {function}(void);\nint call(void) {{ return {function}(); }}\n")
        binary = where / "_core.so"
        run(["gcc", "-shared", "-fPIC", "-o", binary, source, f"-L{tmp_path / 'foo-1.3.0' / 'lib'}", "-lfoo"])
        wheel = prebuilt_wheel(build_env, where, binary, "linux_x86_64", package=f"uses_{function}")
        output = repair(wheel, where / "out", "--provider", providers)
        assert requires_dist(output) == [Requirement(f"foo-native==1.*,>={floor}")]
        assert [(link["version"], link["original"]) for link in manifest_of(output)["links"]] == [("1.3.0", "libfoo.so.1")]


def test_pack_lib_names_major_warning_and_dry_run(tmp_path: Path) -> None:
    """--lib takes the link name, the soname or the file -l opens (libacme.so) alike; --abi major with
    a version whose major is not the soname's number is one warning line; --dry-run names the wheel
    and its files and writes nothing."""
    prefix = build_acme(tmp_path / "prefix", "3.1.4")
    contents = {}
    for lib in ("acme", "libacme.so.3", "libacme.so"):
        result = sharewheel("pack", prefix, "--name", "acme-native", "--version", "3.1.4", "--lib", lib,
                            "-w", tmp_path / lib)
        assert result.stderr == ""
        with zipfile.ZipFile(one(list((tmp_path / lib).glob("*.whl")))) as zf:
            contents[lib] = sorted(zf.namelist())
    assert contents["acme"] == contents["libacme.so.3"] == contents["libacme.so"]
    assert sharewheel("pack", prefix, "--name", "acme-native", "--version", "3.1.4", "--lib", "libacme.so.2",
                      "-w", tmp_path / "no", check=False).returncode == 1

    mismatch = sharewheel("pack", prefix, "--name", "acme-native", "--version", "1.0.0", "-w", tmp_path / "one")
    assert mismatch.stderr.splitlines() == [
        ("sharewheel: pack: libacme.so.3: packed as 1.0.0 with --abi major, but its soname's number is 3, not 1: "
         "check --version, or give the ABI policy its author keeps (--abi minor, exact or a template)")]
    assert sharewheel("pack", prefix, "--name", "acme-native", "--version", "1.0.0", "--abi", "exact",
                      "-w", tmp_path / "exact").stderr == ""

    dry = sharewheel("pack", prefix, "--name", "acme-native", "--version", "3.1.4", "--dry-run", "-w", tmp_path / "dry")
    assert not (tmp_path / "dry").exists()
    head, *files = dry.stdout.splitlines()
    real = one(list((tmp_path / "acme").glob("*.whl")))
    assert head == f"{real.name}: dry run, nothing written to {tmp_path / 'dry'}; the wheel would hold:"
    assert [f.strip() for f in files] == contents["acme"]


def test_a_plugin_usage_policy_is_said_once_to_other_consumers(pypi_wheel: Callable[[str], Path],
                                                               build_env: BuildEnv, tmp_path: Path) -> None:
    """The scipy-openblas maintainers ask that only NumPy and SciPy depend on their wheels at run
    time: repair says so once, with the link, however many other consumers it links to them, and
    show says it; a consumer named numpy is not told."""
    code = "import scipy_openblas64 as s; print(s.get_include_dir(), s.get_lib_dir(), s.get_library())"
    include, lib_dir, name = run([build_env.python, "-c", code],
                                 env={"PYTHONPATH": str(pip_target(build_env, pypi_wheel(OPENBLAS), tmp_path / "site"))}
                                 ).stdout.split()
    wheels = {package: build_ext_consumer(build_env, tmp_path / package, package, DDOT, [f"-I{include}"],
                                          [f"-L{lib_dir}", f"-l{name}"])
              for package in ("blas_one", "blas_two", "numpy")}
    provider = pypi_wheel(OPENBLAS)
    note = ("sharewheel: note: scipy-openblas64: the OpenBLAS-libs maintainers ask that only NumPy and SciPy take "
            "a runtime dependency on the scipy-openblas wheels; other projects should vendor OpenBLAS "
            "(https://github.com/MacPython/openblas-libs/issues/203)")
    both = sharewheel("repair", wheels["blas_one"], wheels["blas_two"], "-w", tmp_path / "out", "--provider", provider)
    notes = [line for line in both.stderr.splitlines() if line.startswith("sharewheel: note:")]
    assert notes == [note], both.stderr
    assert len(list((tmp_path / "out").glob("*.whl"))) == 2
    numpy = sharewheel("repair", wheels["numpy"], "-w", tmp_path / "numpy", "--provider", provider)
    assert "note:" not in numpy.stderr and one(list((tmp_path / "numpy").glob("numpy-*.whl")))
    shown = sharewheel("show", wheels["blas_one"], "--provider", provider).stdout.splitlines()
    assert f"  note: {note.removeprefix('sharewheel: note: ')}" in shown
