"""Reproducible output (issue 5, part 3).

With SOURCE_DATE_EPOCH, `pack` and `repair` give the same bytes on every run and whatever order
their inputs come in: a prefix copied into two directories whose files were created in opposite
orders (on tmpfs, where that is the listing order), every directory listing of the process
reversed or shuffled (os.listdir and os.scandir wrapped in the child: glob, pathlib, os.walk and
shutil all list through them), provider directories listing their wheels in different orders,
`--provider` options in different orders, and an input wheel with its entries in another order.
ELF wheels, and Mach-O and PE ones (pack, and repair against the packed provider).

Without SOURCE_DATE_EPOCH, two runs differ only in the zip timestamps: same names, same entry
bytes, and the same zip file byte for byte once the date and time fields of every local and
central directory header are masked.
"""

from __future__ import annotations

import calendar
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import (
    EXTRA_SOURCE,
    BuildEnv,
    Consumer,
    build_acme,
    build_c_library,
    manifest_of,
    one,
    prebuilt_wheel,
    run,
    unpack,
)

pytest_plugins = ["macho_support", "pe_support"]

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}

# Every directory listing of the process in another order (LISTING_ORDER).
REORDER = r'''
import os, random, sys

ORDER = os.environ["LISTING_ORDER"]

def arrange(items):
    items = list(items)
    if ORDER == "reversed":
        items.reverse()
    elif ORDER == "shuffled":
        random.Random(20240501).shuffle(items)
    return items

_listdir, _scandir = os.listdir, os.scandir

def listdir(path="."):
    return arrange(_listdir(path))

class Scandir:
    def __init__(self, path):
        with _scandir(path) as it:
            self._entries = iter(arrange(it))
    def __iter__(self):
        return self
    def __next__(self):
        return next(self._entries)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return False
    def close(self):
        pass

os.listdir = listdir
os.scandir = lambda path=".": Scandir(path)
'''

REORDERED_CLI = REORDER + """
sys.argv[0] = "sharewheel"
from sharewheel.cli import main
main()
"""


def sharewheel_listing(order: str, *args: str | Path, env: dict[str, str] | None = None) -> None:
    """`sharewheel ARGS` with directory listings in `order` (natural, reversed, shuffled)."""
    run([sys.executable, "-c", REORDERED_CLI, *args], env={"LISTING_ORDER": order, **(env or {})})


def test_the_listing_order_wrapper_reorders(tmp_path: Path) -> None:
    """What the reordering rests on: listdir, scandir, glob, pathlib and os.walk all change order."""
    for name in "abcdefgh":
        (tmp_path / name).mkdir()
        (tmp_path / name / "file").write_text(name)
    show = REORDER + """
import glob, json, pathlib
root = sys.argv[1]
print(json.dumps([os.listdir(root), [e.name for e in os.scandir(root)], sorted(glob.glob(root + "/*")) == glob.glob(root + "/*"),
                  [p.name for p in pathlib.Path(root).iterdir()], [p.parent.name for p in pathlib.Path(root).rglob("file")],
                  [os.path.basename(d) for d, _, _ in os.walk(root)][1:]]))
"""
    seen = {order: run([sys.executable, "-c", show, tmp_path], env={"LISTING_ORDER": order}).stdout
            for order in ("natural", "reversed", "shuffled")}
    natural, reversed_, shuffled = (json.loads(seen[o]) for o in ("natural", "reversed", "shuffled"))
    for index in (0, 1, 3, 4, 5):
        assert natural[index] != reversed_[index] and natural[index] != shuffled[index], index
        assert sorted(natural[index]) == sorted(reversed_[index]) == sorted(shuffled[index]), index


def only_wheel(directory: Path) -> Path:
    return one(list(directory.glob("*.whl")))


@contextmanager
def tmpfs_dir(tmp_path: Path, name: str) -> Iterator[Path]:
    """A scratch directory on tmpfs (/dev/shm), where a directory lists its files in the order they
    were created (newest first: ext4 lists them by hash); under `tmp_path` where there is none."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        directory = Path(tempfile.mkdtemp(prefix=f"sharewheel-{name}-", dir=shm))
        try:
            yield directory
        finally:
            shutil.rmtree(directory)
    else:
        (tmp_path / name).mkdir()
        yield tmp_path / name


def copy_in_order(source: Path, target: Path, *, reverse: bool) -> Path:
    """Copy the tree `source` to `target` creating its files (and symlinks, and directories) in
    sorted or reverse-sorted order."""
    items = sorted(source.rglob("*"), key=lambda p: p.relative_to(source).as_posix(), reverse=reverse)
    target.mkdir(parents=True)
    for directory in sorted((p for p in items if p.is_dir() and not p.is_symlink()), key=lambda p: len(p.parts)):
        (target / directory.relative_to(source)).mkdir(parents=True, exist_ok=True)
    for item in items:
        dest = target / item.relative_to(source)
        if item.is_symlink():
            dest.symlink_to(os.readlink(item))
        elif item.is_file():
            shutil.copy2(item, dest)
    return target


def listing_orders_differ(one_dir: Path, other: Path) -> bool:
    return any(os.listdir(one_dir / sub.relative_to(other)) != os.listdir(sub)
               for sub in [other, *(p for p in other.rglob("*") if p.is_dir() and not p.is_symlink())]
               if len(os.listdir(sub)) > 1)


def wheels_from_orders(tmp_path: Path, prefix: Path, pack_args: list[str]) -> dict[str, bytes]:
    """pack `prefix` from two copies created in opposite orders, twice, and with every listing
    reversed and shuffled; {how: wheel bytes}."""
    results: dict[str, bytes] = {}
    with tmpfs_dir(tmp_path, "prefixes") as scratch:
        forward = copy_in_order(prefix, scratch / "forward" / "prefix", reverse=False)
        backward = copy_in_order(prefix, scratch / "backward" / "prefix", reverse=True)
        if str(scratch).startswith("/dev/shm"):
            assert listing_orders_differ(forward, backward), "the two copies list their files alike"
        for how, source, order in (("forward", forward, "natural"), ("forward-again", forward, "natural"),
                                   ("backward", backward, "natural"), ("reversed", forward, "reversed"),
                                   ("shuffled", backward, "shuffled")):
            out = tmp_path / "out" / how
            sharewheel_listing(order, "pack", source, *pack_args, "-w", out, env=EPOCH)
            results[how] = only_wheel(out).read_bytes()
    return results


def assert_all_equal(results: dict[str, bytes]) -> None:
    first = next(iter(results.values()))
    differ = [how for how, data in results.items() if data != first]
    assert differ == [], f"{differ} differ from {next(iter(results))}"


# --- ELF ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def elf_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libacme plus two more libraries (one needing another) and several headers and .pc files:
    enough files per directory for an order to matter."""
    prefix = build_acme(tmp_path_factory.mktemp("repro-elf") / "prefix", "3.1.4")
    build_c_library(prefix, "extra", "libextra.so.1", EXTRA_SOURCE)
    build_c_library(prefix, "zeta", "libzeta.so.2", "int extra_twice(int);\nint zeta(int x) { return extra_twice(x) + 1; }\n",
                    links=["extra"], lib_dirs=[prefix / "lib"])
    for name in ("alpha", "omega", "mid", "zeta", "extra"):
        (prefix / "include" / f"{name}.h").write_text(f"int {name}_fn(void);\n")
        (prefix / "lib" / "pkgconfig" / f"{name}.pc").write_text(
            f"prefix={prefix}\nlibdir=${{prefix}}/lib\nincludedir=${{prefix}}/include\n\nName: {name}\n"
            f"Description: {name}\nVersion: 1.0\nLibs: -L${{libdir}} -l{name}\nCflags: -I${{includedir}}\n")
    (prefix / "include" / "sub").mkdir()
    for name in ("b.h", "a.h", "c.h"):
        (prefix / "include" / "sub" / name).write_text(f"/* {name} */\n")
    for source in prefix.glob("*.c"):
        source.unlink()  # build_c_library leaves its source beside lib/
    return prefix


def test_pack_elf_is_reproducible_across_runs_and_file_orders(elf_prefix: Path, tmp_path: Path) -> None:
    results = wheels_from_orders(tmp_path, elf_prefix, ["--name", "acme-native", "--version", "3.1.4"])
    assert_all_equal(results)
    libraries = manifest_of(only_wheel(tmp_path / "out" / "forward"))["provides"]["libraries"]
    assert sorted(lib["name"] for lib in libraries) == ["libacme.so.3", "libextra.so.1", "libzeta.so.2"]


@pytest.fixture(scope="module")
def provider_dirs(packed: Callable[..., Path], consumer: Consumer, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[Path, Path]]:
    """Two wheelhouses holding the same wheels — acme-native 3.1.4 and 3.2.0 (the newer one is
    used) and a consumer wheel (not a provider: ignored) — created in opposite orders."""
    wheels = [packed("3.1.4"), packed("3.2.0"), consumer.input]
    with tmpfs_dir(tmp_path_factory.mktemp("wheelhouses"), "wheelhouses") as scratch:
        dirs = []
        for name, order in (("forward", wheels), ("backward", wheels[::-1])):
            directory = scratch / name
            directory.mkdir()
            for wheel in order:
                shutil.copy2(wheel, directory / wheel.name)
            dirs.append(directory)
        if str(scratch).startswith("/dev/shm"):
            assert os.listdir(dirs[0]) != os.listdir(dirs[1])
        yield dirs[0], dirs[1]


def reversed_entries(wheel: Path, target: Path) -> Path:
    """`wheel` with its zip entries in reverse order (same bytes per entry)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in reversed(zin.infolist()):
            zout.writestr(info, zin.read(info))
    return target


def forward_entries(wheel: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
    return target


def test_repair_elf_is_reproducible_across_runs_and_input_orders(
        consumer: Consumer, provider_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    forward, backward = provider_dirs
    env = {**EPOCH, "LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}
    wheel = forward_entries(consumer.input, tmp_path / "in-forward" / consumer.input.name)
    backwards_wheel = reversed_entries(consumer.input, tmp_path / "in-backward" / consumer.input.name)
    runs = {
        "forward": (wheel, "natural", ["--provider", forward]),
        "again": (wheel, "natural", ["--provider", forward]),
        "backward-dir": (wheel, "natural", ["--provider", backward]),
        "both-dirs": (wheel, "natural", ["--provider", forward, "--provider", backward]),
        "both-dirs-swapped": (wheel, "natural", ["--provider", backward, "--provider", forward]),
        "files": (wheel, "natural", [a for w in sorted(forward.glob("acme_native-*.whl")) for a in ("--provider", w)]),
        "files-swapped": (wheel, "natural", [a for w in sorted(forward.glob("acme_native-*.whl"), reverse=True)
                                             for a in ("--provider", w)]),
        "reversed-listings": (wheel, "reversed", ["--provider", forward]),
        "shuffled-listings": (wheel, "shuffled", ["--provider", backward]),
        "entries-reversed": (backwards_wheel, "natural", ["--provider", forward]),
    }
    results = {}
    for how, (source, order, provider_args) in runs.items():
        out = tmp_path / "out" / how
        sharewheel_listing(order, "repair", source, "-w", out, *provider_args, env=env)
        results[how] = only_wheel(out).read_bytes()
    assert_all_equal(results)
    output = only_wheel(tmp_path / "out" / "forward")
    assert [link["version"] for link in manifest_of(output)["links"]] == ["3.2.0"]  # the newest was used


# --- Mach-O and PE ----------------------------------------------------------------------------


def test_pack_and_repair_macho_are_reproducible(macos_prefixes, zig, build_env: BuildEnv, tmp_path: Path) -> None:
    from macho_support import build_extension

    prefix = macos_prefixes("arm64")
    assert_all_equal(wheels_from_orders(tmp_path / "pack", prefix.root, ["--name", "acme-native", "--version", "3.1.4"]))
    provider = only_wheel(tmp_path / "pack" / "out" / "forward")
    unique = manifest_of(provider)["provides"]["libraries"][0]["unique_name"]
    dylib = unpack(provider, tmp_path / "provider") / "acme_native" / "lib" / unique
    extension = build_extension(zig, "arm64", tmp_path / "ext", calls=["acme_add"], links=[dylib])
    wheel = prebuilt_wheel(build_env, tmp_path / "consumer", extension, "macosx_11_0_arm64")
    results = {}
    for how, order in (("natural", "natural"), ("again", "natural"), ("reversed", "reversed"), ("shuffled", "shuffled")):
        sharewheel_listing(order, "repair", wheel, "-w", tmp_path / "repaired" / how, "--provider", provider, env=EPOCH)
        results[how] = only_wheel(tmp_path / "repaired" / how).read_bytes()
    assert_all_equal(results)


def test_pack_and_repair_pe_are_reproducible(windows_prefixes, pe_zig, build_env: BuildEnv, tmp_path: Path) -> None:
    from pe_support import build_pyd

    prefix = windows_prefixes("3.1.4")
    assert_all_equal(wheels_from_orders(tmp_path / "pack", prefix.root, ["--name", "acme-native", "--version", "3.1.4"]))
    provider = only_wheel(tmp_path / "pack" / "out" / "forward")
    pyd = build_pyd(pe_zig, tmp_path / "pyd" / "_core.cp311-win_amd64.pyd", links=[prefix.implib],
                    include_dirs=[prefix.include_dir], extra=False)
    wheel = prebuilt_wheel(build_env, tmp_path / "consumer", pyd, "win_amd64")
    results = {}
    for how, order in (("natural", "natural"), ("again", "natural"), ("reversed", "reversed"), ("shuffled", "shuffled")):
        sharewheel_listing(order, "repair", wheel, "-w", tmp_path / "repaired" / how, "--provider", provider, env=EPOCH)
        results[how] = only_wheel(tmp_path / "repaired" / how).read_bytes()
    assert_all_equal(results)


# --- without SOURCE_DATE_EPOCH: only the timestamps differ -------------------------------------


def masked(path: Path) -> bytes:
    """The zip file with the modification date and time of every local and central directory
    header zeroed (and nothing else changed)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        position = zf.start_dir
    for info in infos:
        assert data[info.header_offset: info.header_offset + 4] == b"PK\x03\x04"
        data[info.header_offset + 10: info.header_offset + 14] = bytes(4)
        assert data[position: position + 4] == b"PK\x01\x02", "central directory out of step"
        data[position + 12: position + 16] = bytes(4)
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, position + 28)
        position += 46 + name_length + extra_length + comment_length
    return bytes(data)


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def stamps(path: Path) -> set[tuple[int, ...]]:
    with zipfile.ZipFile(path) as zf:
        return {info.date_time for info in zf.infolist()}


def test_without_source_date_epoch_only_timestamps_differ(elf_prefix: Path, consumer: Consumer,
                                                          tmp_path: Path) -> None:
    env = {"SOURCE_DATE_EPOCH": "", "LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}
    outputs: dict[str, list[Path]] = {"pack": [], "repair": []}
    started: list[float] = []
    finished = 0.0
    for attempt in range(2):
        # zip times have 2 s resolution: the second run starts 2.1 s after the first one's last
        # write (not after its start: a slow first run would leave both in one 2 s slot)
        time.sleep(max(0.0, finished + 2.1 - time.time()))
        started.append(time.time())
        out = tmp_path / f"pack-{attempt}"
        sharewheel_listing("natural", "pack", elf_prefix, "--name", "acme-native", "--version", "3.1.4",
                           "-w", out, env=env)
        outputs["pack"].append(only_wheel(out))
        out = tmp_path / f"repair-{attempt}"
        sharewheel_listing("natural", "repair", consumer.input, "-w", out, "--provider", consumer.provider, env=env)
        outputs["repair"].append(only_wheel(out))
        finished = time.time()
    for command, (first, second) in outputs.items():
        assert first.name == second.name, command
        assert entries(first) == entries(second), command  # names, order and bytes
        assert masked(first) == masked(second), f"{command}: more than the timestamps differ"
        assert first.read_bytes() != second.read_bytes(), f"{command}: no timestamp moved: the test proves nothing"
        assert len(stamps(first)) == 1 and stamps(first) != stamps(second), command
        # the stamp is the time of the run (UTC, as zip times are written)
        for path, start in ((first, started[0]), (second, started[1])):
            [stamp] = stamps(path)
            written = calendar.timegm((*stamp, 0, 0, 0))
            assert start - 4 <= written <= time.time() + 4, (command, stamp, start)
