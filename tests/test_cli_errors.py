"""Bad input through the real command line.

The contract (README, "Errors and limits"): every bad input gives exactly one line
`sharewheel: error: ...` on stderr that names the file or option at fault, exit status 1, no
traceback, no output file (nor a temporary one) in `-w`, and the input is left byte-for-byte as
it was. The hostile wheels are rewritten from the real wheels of the `consumer` fixture.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import warnings
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Consumer, build_acme, one, sharewheel

ERROR = "sharewheel: error: "


# --- the contract, checked the same way for every case -------------------------------------


def digest(path: Path) -> str:
    """sha256 of a file, or of a whole directory tree (names, file bytes, symlink targets)."""
    h = hashlib.sha256()
    if path.is_file() and not path.is_symlink():
        h.update(path.read_bytes())
        return h.hexdigest()
    assert path.is_dir(), f"{path} must exist before the command runs"
    for item in sorted(path.rglob("*")):
        h.update(item.relative_to(path).as_posix().encode() + b"\0")
        if item.is_symlink():
            h.update(b"link:" + os.readlink(item).encode())
        elif item.is_file():
            h.update(item.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def assert_cli_error(tmp_path: Path, *args: str | Path, names: Iterable[str], inputs: Iterable[Path] = (),
                     out_dir: Path | None = None, env: dict[str, str] | None = None,
                     cwd: Path | None = None, status: int | None = 1, done: Iterable[str] = ()) -> str:
    """Run the CLI and check the error contract; return the error line.

    `status`: the exit status (README: 1 for bad input; None: any non-zero one). `done`: output
    files that earlier wheels of the same command legitimately wrote; anything else in `-w` fails.
    """
    done = sorted(done)
    inputs = list(inputs)
    before = {path: digest(path) for path in inputs}
    tmpdir = tmp_path / "TMPDIR"  # where sharewheel's temporary directories go: must end up empty
    tmpdir.mkdir(parents=True)
    environment = {"TMPDIR": str(tmpdir), "SHAREWHEEL_DEBUG": "", **(env or {})}
    result = sharewheel(*args, env=environment, check=False, cwd=cwd)
    shown = f"exit {result.returncode}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"

    assert result.returncode != 0, shown
    if status is not None:
        assert result.returncode == status, shown
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr, shown
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected exactly one error line\n{shown}"
    line = lines[0]
    assert line.startswith(ERROR) and line[len(ERROR):].strip(), shown
    for name in names:
        assert name in line, f"the error line does not name {name!r}: {line!r}"
    # only what was really done is reported as done
    assert [out.split(":")[0] for out in result.stdout.splitlines()] == done, shown

    if out_dir is not None and out_dir.exists():
        left = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*"))
        assert [n for n in left if n.endswith(".whl")] == done, left
        assert left == done, f"-w {out_dir} holds leftovers: {left}"
    assert sorted(os.listdir(tmpdir)) == [], "temporary files left behind"
    for path, sha in before.items():
        assert digest(path) == sha, f"{path} was modified"
    return line


# --- hostile wheels, rewritten from real ones -----------------------------------------------


Edit = Callable[[zipfile.ZipInfo, bytes], "tuple[zipfile.ZipInfo, bytes] | None"]


def rewrite(src: Path, dst: Path, *, edit: Edit | None = None,
            extra: Iterable[tuple[zipfile.ZipInfo, bytes]] = ()) -> Path:
    """Copy the wheel `src` entry by entry into `dst` (RECORD untouched), editing or adding entries."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we add on purpose
        for info in zin.infolist():
            data = zin.read(info)
            if edit is not None:
                edited = edit(info, data)
                if edited is None:
                    continue
                info, data = edited
            zout.writestr(info, data)
        for info, data in extra:
            zout.writestr(info, data)
    return dst


def entry(name: str, mode: int = 0o100644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
    info.external_attr = mode << 16
    return info


def member(wheel: Path, predicate: Callable[[str], bool]) -> str:
    with zipfile.ZipFile(wheel) as zf:
        return one([n for n in zf.namelist() if predicate(n)])


def top_package(wheel: Path) -> str:
    """The package directory that holds the wheel's __init__.py."""
    return member(wheel, lambda n: n.count("/") == 1 and n.endswith("/__init__.py")).split("/")[0]


def other_arch() -> str:
    return "aarch64" if platform.machine() != "aarch64" else "x86_64"


@dataclass(frozen=True)
class Hostile:
    path: Path
    names: tuple[str, ...]  # besides the file name, what the error line must mention


def not_a_zip(wheel: Path, where: Path) -> Hostile:
    # a real binary (the wheel's own extension module / library), not a zip, named like a wheel
    with zipfile.ZipFile(wheel) as zf:
        binary = zf.read(member(wheel, lambda n: n.endswith(".so") and "/lib/libacme.so" not in n
                                and not n.startswith(("acme_consumer.libs/",))))
    assert binary[:4] == b"\x7fELF"
    path = where / f"x-1.0-cp311-cp311-linux_{platform.machine()}.whl"
    path.write_bytes(binary)
    return Hostile(path, ("not a zip",))


def truncated(wheel: Path, where: Path) -> Hostile:
    data = wheel.read_bytes()
    path = where / wheel.name
    path.write_bytes(data[: len(data) // 2])
    return Hostile(path, ())


def not_a_wheel_name(wheel: Path, where: Path) -> Hostile:
    path = where / "notawheel.zip"
    shutil.copyfile(wheel, path)
    return Hostile(path, ())


def no_dist_info(wheel: Path, where: Path) -> Hostile:
    path = rewrite(wheel, where / wheel.name,
                   edit=lambda info, data: None if ".dist-info/" in info.filename else (info, data))
    return Hostile(path, (".dist-info",))


def tags_disagree(wheel: Path, where: Path) -> Hostile:
    arch = platform.machine()
    assert arch in wheel.name
    path = where / wheel.name.replace(arch, other_arch())
    shutil.copyfile(wheel, path)
    return Hostile(path, ("Tag",))


def record_mismatch(wheel: Path, where: Path) -> Hostile:
    tampered = f"{top_package(wheel)}/__init__.py"

    def edit(info: zipfile.ZipInfo, data: bytes) -> tuple[zipfile.ZipInfo, bytes]:
        return (info, data + b"# one more line, RECORD not updated\n") if info.filename == tampered else (info, data)

    return Hostile(rewrite(wheel, where / wheel.name, edit=edit), ("RECORD", tampered))


def _with_entry(name: str, mode: int = 0o100644, data: bytes = b"print('hi')\n") -> Callable[[Path, Path], Hostile]:
    def make(wheel: Path, where: Path) -> Hostile:
        entry_name = name.format(package=top_package(wheel))
        path = rewrite(wheel, where / wheel.name, extra=[(entry(entry_name, mode), data)])
        return Hostile(path, (repr(entry_name),))

    make.__name__ = name
    return make


dot_dot = _with_entry("{package}/../../evil.py")
absolute = _with_entry("/tmp/sharewheel-evil.py")
backslash = _with_entry("{package}\\evil.py")
duplicate = _with_entry("{package}/__init__.py")
case_only = _with_entry("{package}/__INIT__.py")
symlink = _with_entry("{package}/link.py", mode=0o120777, data=b"__init__.py")

HOSTILE = {
    "not-a-zip": not_a_zip,
    "truncated": truncated,
    "not-a-wheel-name": not_a_wheel_name,
    "no-dist-info": no_dist_info,
    "tags-disagree": tags_disagree,
    "record-mismatch": record_mismatch,
    "dot-dot": dot_dot,
    "absolute": absolute,
    "backslash": backslash,
    "duplicate": duplicate,
    "case-only": case_only,
    "symlink": symlink,
}


def make_hostile(kind: str, wheel: Path, where: Path) -> Hostile:
    where.mkdir(parents=True, exist_ok=True)
    hostile = HOSTILE[kind](wheel, where)
    assert hostile.path.is_file()
    return hostile


def base_wheel(consumer: Consumer, which: str) -> Path:
    return {"input": consumer.input, "output": consumer.output}[which]


@pytest.fixture
def env(consumer: Consumer) -> dict[str, str]:
    """libextra can be found, so a missing-library error never hides the one under test."""
    return {"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}


# --- hostile wheels given to repair and show --------------------------------------------------


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("which,command", [("input", "repair"), ("output", "repair"), ("input", "show"),
                                           ("output", "show")])
def test_hostile_wheel(kind: str, which: str, command: str, consumer: Consumer, tmp_path: Path,
                       env: dict[str, str]) -> None:
    hostile = make_hostile(kind, base_wheel(consumer, which), tmp_path / "in")
    out = tmp_path / "out"
    args = ["repair", hostile.path, "-w", out, "--provider", consumer.provider] if command == "repair" \
        else ["show", hostile.path, "--provider", consumer.provider]
    assert_cli_error(tmp_path, *args, names=(hostile.path.name, *hostile.names), inputs=[hostile.path],
                     out_dir=out, env=env)


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_provider_wheel(kind: str, consumer: Consumer, tmp_path: Path, env: dict[str, str]) -> None:
    """A broken provider wheel is refused the same way, and the consumer wheel is not written."""
    hostile = make_hostile(kind, consumer.provider, tmp_path / "providers")
    wheel = Path(shutil.copy(consumer.input, tmp_path))
    out = tmp_path / "out"
    assert_cli_error(tmp_path, "repair", wheel, "-w", out, "--provider", hostile.path,
                     names=(hostile.path.name, *hostile.names), inputs=[wheel, hostile.path], out_dir=out,
                     env=env)


def test_hostile_wheels_are_real_rewrites(consumer: Consumer, tmp_path: Path) -> None:
    """The rewritten wheels differ from the real one only by the planted defect."""
    with zipfile.ZipFile(consumer.input) as zf:
        original = {i.filename: zf.read(i) for i in zf.infolist()}
    added = zipfile.ZipFile(make_hostile("dot-dot", consumer.input, tmp_path / "a").path)
    assert {n: added.read(n) for n in original} == original
    assert len(added.namelist()) == len(original) + 1
    link = zipfile.ZipFile(make_hostile("symlink", consumer.input, tmp_path / "b").path).getinfo("acme_consumer/link.py")
    assert (link.external_attr >> 16) == 0o120777


# --- providers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["repair", "show", "pack"])
def test_provider_path_that_does_not_exist(command: str, consumer: Consumer, tmp_path: Path,
                                           env: dict[str, str], acme_prefix: Path) -> None:
    missing = tmp_path / "wheelhouse" / "acme_native-9.9.9-py3-none-any.whl"
    wheel = Path(shutil.copy(consumer.input, tmp_path))
    out = tmp_path / "out"
    if command == "repair":
        args, inputs = ["repair", wheel, "-w", out], [wheel]
    elif command == "show":
        args, inputs = ["show", wheel], [wheel]
    else:
        args, inputs = ["pack", acme_prefix, "--name", "acme-other", "--version", "3.1.4", "-w", out], [acme_prefix]
    assert_cli_error(tmp_path, *args, "--provider", missing, names=("--provider", str(missing)),
                     inputs=inputs, out_dir=out, env=env)


@pytest.mark.parametrize("which", ["input", "output"])
@pytest.mark.parametrize("command", ["repair", "show"])
def test_provider_that_is_a_consumer_wheel(which: str, command: str, consumer: Consumer, tmp_path: Path,
                                           env: dict[str, str]) -> None:
    (tmp_path / "providers").mkdir()
    not_provider = Path(shutil.copy(base_wheel(consumer, which), tmp_path / "providers"))
    wheel = Path(shutil.copy(consumer.input, tmp_path))
    out = tmp_path / "out"
    args = ["repair", wheel, "-w", out] if command == "repair" else ["show", wheel]
    line = assert_cli_error(tmp_path, *args, "--provider", not_provider, names=(not_provider.name,),
                            inputs=[wheel, not_provider], out_dir=out, env=env)
    assert "not a native-lib wheel" in line


@pytest.fixture(scope="module")
def acme_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libacme 3.1.4 installed into a prefix, as a C build leaves it."""
    return build_acme(tmp_path_factory.mktemp("acme-prefix") / "prefix", "3.1.4")


@pytest.fixture(scope="module")
def rival_providers(acme_prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One libacme prefix packed twice, as acme-native and as acme-fork: both offer libacme.so.3."""
    wheels = []
    for name in ("acme-native", "acme-fork"):
        out = tmp_path_factory.mktemp(name)
        sharewheel("pack", acme_prefix, "--name", name, "--version", "3.1.4", "-w", out)
        wheels.append(one(list(out.glob("*.whl"))))
    return wheels[0], wheels[1]


@pytest.mark.parametrize("command", ["repair", "show"])
def test_two_providers_claiming_one_soname(command: str, rival_providers: tuple[Path, Path],
                                           consumer: Consumer, tmp_path: Path, env: dict[str, str]) -> None:
    native, fork = rival_providers
    wheel = Path(shutil.copy(consumer.input, tmp_path))
    out = tmp_path / "out"
    args = ["repair", wheel, "-w", out] if command == "repair" else ["show", wheel]
    assert_cli_error(tmp_path, *args, "--provider", native, "--provider", fork,
                     names=("acme-native", "acme-fork", "libacme.so.3", native.name, fork.name),
                     inputs=[wheel, native, fork], out_dir=out, env=env)


def test_rival_providers_are_each_valid_alone(rival_providers: tuple[Path, Path], consumer: Consumer,
                                              env: dict[str, str]) -> None:
    """The conflict is the pair, not either wheel: each one alone is a usable provider."""
    for provider in rival_providers:
        result = sharewheel("show", consumer.input, "--provider", provider, "--json", env=env)
        assert result.returncode == 0 and result.stderr == ""


# --- the output directory ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["repair", "pack"])
def test_output_dir_under_a_regular_file(command: str, consumer: Consumer, tmp_path: Path,
                                         env: dict[str, str], acme_prefix: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("a regular file, not a directory\n")
    out = afile / "out"
    if command == "repair":
        wheel = Path(shutil.copy(consumer.input, tmp_path))
        args, inputs = ["repair", wheel, "--provider", consumer.provider], [wheel, afile]
    else:
        args, inputs = ["pack", acme_prefix, "--name", "acme-native", "--version", "3.1.4"], [acme_prefix, afile]
    assert_cli_error(tmp_path, *args, "-w", out, names=("-w", str(out)), inputs=inputs, out_dir=out, env=env)
    assert afile.is_file()


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: root bypasses directory permissions, "
                    "so a chmod 0o555 directory is still writable and cannot provoke the error")
def test_output_dir_without_write_permission(consumer: Consumer, tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "readonly"
    out.mkdir()
    out.chmod(0o555)
    try:
        wheel = Path(shutil.copy(consumer.input, tmp_path))
        assert_cli_error(tmp_path, "repair", wheel, "-w", out, "--provider", consumer.provider,
                         names=("-w", str(out)), inputs=[wheel], out_dir=out, env=env)
    finally:
        out.chmod(0o755)


# --- wheel arguments ----------------------------------------------------------------------------


def test_same_wheel_given_twice(consumer: Consumer, tmp_path: Path, env: dict[str, str]) -> None:
    wheel = Path(shutil.copy(consumer.input, tmp_path))
    out = tmp_path / "out"
    line = assert_cli_error(tmp_path, "repair", wheel, wheel, "-w", out, "--provider", consumer.provider,
                            names=(wheel.name,), inputs=[wheel], out_dir=out, env=env)
    assert "twice" in line


def test_same_wheel_given_twice_through_a_glob(consumer: Consumer, tmp_path: Path, env: dict[str, str]) -> None:
    wheel = Path(shutil.copy(consumer.input, tmp_path))
    out = tmp_path / "out"
    assert_cli_error(tmp_path, "repair", wheel, str(tmp_path / "acme_consumer-*.whl"), "-w", out,
                     "--provider", consumer.provider, names=(wheel.name, "twice"), inputs=[wheel],
                     out_dir=out, env=env)


def test_same_wheel_given_twice_spelled_differently(consumer: Consumer, tmp_path: Path,
                                                    env: dict[str, str]) -> None:
    wheel = Path(shutil.copy(consumer.input, tmp_path))
    out = tmp_path / "out"
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    for spelling in (wheel, f"./{wheel.name}", tmp_path / "link" / wheel.name):
        assert_cli_error(tmp_path / "run", "repair", wheel.name, spelling, "-w", out, "--provider", consumer.provider,
                         names=(wheel.name, "twice"), inputs=[wheel], out_dir=out, env=env, cwd=tmp_path)
        shutil.rmtree(tmp_path / "run")


def test_two_wheels_with_one_output_name(consumer: Consumer, tmp_path: Path, env: dict[str, str]) -> None:
    """A wheel and its repaired copy both repair to one file name: the second must not silently
    replace the first's output. The first is done (and reported); the second is one error."""
    unrepaired = Path(shutil.copy(consumer.input, tmp_path))
    (tmp_path / "repaired").mkdir()
    repaired = Path(shutil.copy(consumer.output, tmp_path / "repaired"))
    out = tmp_path / "out"
    line = assert_cli_error(tmp_path, "repair", unrepaired, repaired, "-w", out, "--provider", consumer.provider,
                            names=(str(repaired), consumer.output.name, str(unrepaired)),
                            inputs=[unrepaired, repaired], out_dir=out, env=env, done=[consumer.output.name])
    assert line.index(str(repaired)) < line.index(str(unrepaired))  # the culprit first, then the earlier input
    with zipfile.ZipFile(out / consumer.output.name) as zf:
        assert zf.testzip() is None  # the first output is whole


@pytest.mark.parametrize("command", ["repair", "show"])
def test_wheel_that_does_not_exist(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "acme_consumer-1.0.0-cp311-cp311-linux_x86_64.whl"
    out = tmp_path / "out"
    args = ["repair", missing, "-w", out] if command == "repair" else ["show", missing]
    assert_cli_error(tmp_path, *args, names=(str(missing),), out_dir=out)


def test_glob_that_matches_nothing(tmp_path: Path) -> None:
    pattern = str(tmp_path / "dist" / "*.whl")
    out = tmp_path / "out"
    assert_cli_error(tmp_path, "repair", pattern, "-w", out, names=(pattern,), out_dir=out)


# --- pack -----------------------------------------------------------------------------------------


def pack_args(prefix: Path, out: Path, *extra: str) -> list[str | Path]:
    return ["pack", prefix, "--name", "acme-native", "--version", "3.1.4", "-w", out, *extra]


def test_pack_prefix_without_lib(acme_prefix: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    shutil.copytree(acme_prefix / "include", prefix / "include")  # a prefix with headers but no lib/
    out = tmp_path / "out"
    line = assert_cli_error(tmp_path, *pack_args(prefix, out), names=(str(prefix),), inputs=[prefix], out_dir=out)
    assert "lib/" in line


@pytest.mark.parametrize("extra,names", [
    (["--abi", "garbage{x}"], ["garbage{x}"]),
    (["--abi", "garbage"], ["garbage"]),
    (["--version", "not-a-version"], ["--version", "not-a-version"]),
    (["--lib", "nosuchlib"], ["--lib", "nosuchlib"]),
    (["--requires", "no-such-provider"], ["--requires", "no-such-provider"]),
    (["--name", "1-acme"], ["--name", "1-acme"]),
    (["--abi", ">={version},=={major"], [">={version},=={major"]),
], ids=["abi-unknown-placeholder", "abi-not-a-specifier", "version", "lib", "requires", "name",
        "abi-unbalanced-brace"])
def test_pack_bad_option(extra: list[str], names: list[str], acme_prefix: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = pack_args(acme_prefix, out)
    if extra[0] in args:  # --version / --name replace the defaults
        index = args.index(extra[0])
        args[index + 1] = extra[1]
    else:
        args += extra
    assert_cli_error(tmp_path, *args, names=names, inputs=[acme_prefix], out_dir=out)


def test_pack_missing_prefix(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-prefix"
    out = tmp_path / "out"
    assert_cli_error(tmp_path, *pack_args(missing, out), names=(str(missing),), out_dir=out)
    assert not missing.exists()


# Usage errors are click's own. They get the one-line form too; their exit status is click's 2
# (README says 1 for every bad input and keeps 2 for internal errors), so it is not pinned here.


def test_pack_prefix_that_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "prefix.tar"
    afile.write_bytes(b"not a directory\n")
    out = tmp_path / "out"
    assert_cli_error(tmp_path, *pack_args(afile, out), names=(str(afile),), inputs=[afile], out_dir=out,
                     status=None)


@pytest.mark.parametrize("args,names", [
    (["pack", "PREFIX", "--version", "1.0", "-w", "OUT"], ["--name"]),
    (["repair", "-w", "OUT"], ["WHEELS"]),
    (["show", "--json"], ["WHEEL"]),
    (["repair", "x.whl", "--no-such-option", "-w", "OUT"], ["--no-such-option"]),
], ids=["pack-without-name", "repair-without-wheels", "show-without-wheel", "unknown-option"])
def test_usage_errors(args: list[str], names: list[str], tmp_path: Path, acme_prefix: Path) -> None:
    out = tmp_path / "out"
    args = [{"PREFIX": str(acme_prefix), "OUT": str(out)}.get(a, a) for a in args]
    assert_cli_error(tmp_path, *args, names=names, inputs=[acme_prefix], out_dir=out, status=None, cwd=tmp_path)
    assert not (tmp_path / "wheelhouse").exists()  # nor in the default -w
