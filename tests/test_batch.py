"""Many wheels in one `sharewheel repair` call (issue 12): the same outputs, lines and exit
status as repairing them one by one, whatever -j says; one failing wheel does not stop the others."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import pytest

from conftest import Consumer, sharewheel
from test_hostile import edit_wheel, make_wheel, read_entries

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


def with_version(wheel: Path, version: str, where: Path) -> Path:
    """`wheel` as another release: the dist-info renamed, METADATA's Version and RECORD rewritten."""
    entries = read_entries(wheel)
    old = next(n.split("/")[0] for n in entries if n.split("/")[0].endswith(".dist-info"))
    distribution, current = old[: -len(".dist-info")].split("-")
    new = f"{distribution}-{version}.dist-info"

    def renamed(name: str) -> str:
        return name.replace(old, new, 1) if name.startswith(f"{old}/") else name

    def transform(name: str, data: bytes) -> bytes:
        return data.replace(f"Version: {current}\n".encode(), f"Version: {version}\n".encode()) \
            if name == f"{old}/METADATA" else data

    staged = edit_wheel(wheel, where / "staging", transform=transform)
    with zipfile.ZipFile(staged) as zf:
        entries = {renamed(i.filename): zf.read(i) for i in zf.infolist()}
        modes = {renamed(i.filename): i.external_attr >> 16 for i in zf.infolist()}
    from test_hostile import write_entries

    name = wheel.name.replace(f"-{current}-", f"-{version}-")
    return write_entries(where / name, entries, modes=modes)


@pytest.fixture(scope="module")
def releases(consumer: Consumer, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three releases of the real consumer and a pure wheel, in one directory."""
    where = tmp_path_factory.mktemp("releases")
    wheels = [with_version(consumer.input, v, where) for v in ("1.0.1", "1.0.2", "1.0.3")]
    pure = make_wheel(where, "any", {}, dist="acme_docs", python="py3-none")
    return [*wheels, pure]


def _env(consumer: Consumer) -> dict[str, str]:
    return {**EPOCH, "LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}


def _outputs(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_one_call_writes_what_one_by_one_writes(jobs: str, releases: list[Path], consumer: Consumer,
                                                 tmp_path: Path) -> None:
    one_by_one = tmp_path / "one-by-one"
    lines = []
    for wheel in releases:
        result = sharewheel("repair", wheel, "-w", one_by_one, "--provider", consumer.provider, env=_env(consumer))
        lines += result.stdout.splitlines()
    together = tmp_path / "together"
    result = sharewheel("repair", *releases, "-w", together, "--provider", consumer.provider, "-j", jobs,
                        env=_env(consumer))
    assert result.stdout.splitlines() == lines  # one summary per wheel, in the order given
    assert _outputs(together) == _outputs(one_by_one)  # byte for byte
    assert len(_outputs(together)) == len(releases)
    assert not [n for n in os.listdir(together) if n.startswith(".")]  # no staging left behind


def test_a_failing_wheel_does_not_stop_the_others(releases: list[Path], consumer: Consumer, tmp_path: Path) -> None:
    broken = edit_wheel(releases[1], tmp_path / "broken", fix_record=False,
                        transform=lambda name, data: data + b"# tampered\n" if name.endswith("__init__.py") else data)
    inputs = [releases[0], broken, releases[2]]
    before = {p: p.read_bytes() for p in inputs}
    result = sharewheel("repair", *inputs, "-w", tmp_path / "out", "--provider", consumer.provider, "-j", "2",
                        env=_env(consumer), check=False)
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("sharewheel: error: ") and broken.name in errors[0]
    assert "RECORD does not match" in errors[0]
    written = sorted(os.listdir(tmp_path / "out"))
    tags = consumer.output.name.split("-")[-1]  # manylinux1_x86_64.manylinux_2_5_x86_64.whl
    assert written == [re.sub(r"linux_x86_64\.whl$", tags, p.name) for p in (releases[0], releases[2])]
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == written
    assert {p: p.read_bytes() for p in inputs} == before  # inputs never modified


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_two_inputs_repairing_to_one_name(jobs: str, consumer: Consumer, tmp_path: Path) -> None:
    """The same wheel from two directories repairs to one file name: the later input is refused,
    as a one-by-one run refuses it, and the earlier one's output stays."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    for directory in (first, second):
        (directory / consumer.input.name).write_bytes(consumer.input.read_bytes())
    result = sharewheel("repair", first / consumer.input.name, second / consumer.input.name, "-w", tmp_path / "out",
                        "--provider", consumer.provider, "-j", jobs, env=_env(consumer), check=False)
    assert result.returncode == 1
    [error] = result.stderr.strip().splitlines()
    assert error.startswith(f"sharewheel: error: {second / consumer.input.name}: repairs to ")
    assert f"which {first / consumer.input.name} was just repaired to" in error
    assert os.listdir(tmp_path / "out") == [consumer.output.name]
