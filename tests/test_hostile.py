"""Hostile inputs for ELF, Mach-O and PE wheels, through the real command line (issue 5, part 1).

Extends the contract of test_cli_errors.py (whose `assert_cli_error` checks it: exactly one
`sharewheel: error: ...` line naming the file and the problem, exit status 1, no traceback, the
inputs byte-for-byte unchanged, nothing left in `-w`, TMPDIR empty afterwards) with one more
rule: nothing is written anywhere else. Each case runs in a sandbox directory holding the inputs,
the `-w` directory, the working directory and TMPDIR, and the whole sandbox is snapshotted
before and after (names, types, sizes, modes, mtimes, file hashes): the only differences allowed
are the (empty) `-w` directory and the (empty) TMPDIR.

test_cli_errors.py already covers, for ELF wheels: not a zip, truncated zip, not a wheel name, no
dist-info, file name vs WHEEL Tag, RECORD hash mismatch, `..`, absolute and backslash entry
names, duplicate and case-only names, symlink entries, broken provider wheels, two providers
claiming one name, `-w` under a regular file or read-only, the same wheel twice. Here: the cases
it does not have (the list is `HOSTILE_CASES` and the tests below it), and its container-level
kinds again on Mach-O and PE wheels.

Cases that fail because of a bug in src/ are marked xfail(strict=True) with the file, the
behaviour and what is expected; they start failing (XPASS) the moment the bug is fixed, and the
mark must then go.

The wheels are rewritten from real ones (the gcc-built `consumer` fixture for ELF, zig-built
Mach-O and PE extension modules) with RECORD regenerated, so each one has exactly the one defect
under test.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Consumer, find_tool, one, sharewheel
from test_cli_errors import HOSTILE, Hostile, assert_cli_error, make_hostile

pytest_plugins = ["macho_support", "pe_support"]


# --- the sandbox: nothing but -w and TMPDIR may change ------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root`: type, mode, size, mtime and (files) sha256 or (links) target."""
    state: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        key = path.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            state[key] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            state[key] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            state[key] = ("file", stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns, sha)
    return state


@dataclass
class Sandbox:
    """A watched directory: inputs go to `inputs`, the CLI runs in `cwd` with `-w out`."""

    root: Path

    @property
    def inputs(self) -> Path:
        return self.root / "in"

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    def refuse(self, *args: str | Path, names: Iterable[str], inputs: Iterable[Path] = (),
               env: dict[str, str] | None = None, status: int | None = 1) -> str:
        """Run the CLI, check test_cli_errors' contract and that nothing else under the sandbox
        changed; return the error line."""
        for directory in (self.inputs, self.cwd):
            directory.mkdir(parents=True, exist_ok=True)
        run_dir = self.root / "run"  # assert_cli_error puts TMPDIR here
        assert not run_dir.exists(), "one refusal per sandbox"
        before = snapshot(self.root)
        line = assert_cli_error(run_dir, *args, names=names, inputs=list(inputs), out_dir=self.out,
                                env=env, cwd=self.cwd, status=status)
        after = snapshot(self.root)
        allowed = {"run", "run/TMPDIR", "out"}  # the empty TMPDIR and -w (checked empty above)
        changed = sorted(k for k in set(before) | set(after)
                         if before.get(k) != after.get(k) and not (k in allowed and k not in before))
        assert changed == [], f"written outside -w and TMPDIR: {changed}"
        return line


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path / "sandbox")


# --- writing wheels with exactly one defect ----------------------------------------------


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def dist_info_of(names: Iterable[str]) -> str:
    return one(sorted({n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}))


def record_of(entries: dict[str, bytes], dist_info: str) -> bytes:
    """A RECORD for `entries`, as a wheel builder writes it."""
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    for name, data in entries.items():
        if name != f"{dist_info}/RECORD" and not name.endswith("/"):
            writer.writerow((name, record_hash(data), len(data)))
    writer.writerow((f"{dist_info}/RECORD", "", ""))
    return rows.getvalue().encode()


def read_entries(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def write_entries(path: Path, entries: dict[str, bytes], *, fix_record: bool = True,
                  modes: dict[str, int] | None = None,
                  compression: dict[str, int] | None = None) -> Path:
    """Zip `entries` into `path`, in order; RECORD (if the wheel has one) regenerated unless
    `fix_record` is false."""
    entries = dict(entries)
    dist_info = dist_info_of(entries) if any(".dist-info/" in n for n in entries) else None
    if fix_record and dist_info and f"{dist_info}/RECORD" in entries:
        del entries[f"{dist_info}/RECORD"]
        entries[f"{dist_info}/RECORD"] = record_of(entries, dist_info)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            info.external_attr = ((modes or {}).get(name, 0o100644 if not name.endswith("/") else 0o40755)) << 16
            info.compress_type = (compression or {}).get(name, zipfile.ZIP_DEFLATED)
            zf.writestr(info, data)
    return path


def make_wheel(where: Path, platform: str, files: dict[str, bytes], *, dist: str = "acme_consumer",
               version: str = "1.0.0", python: str = "cp311-cp311") -> Path:
    """A minimal valid wheel of `files` (a package `dist` with an __init__.py) tagged `platform`."""
    dist_info = f"{dist}-{version}.dist-info"
    entries = {f"{dist}/__init__.py": f'"""{dist}: a test wheel."""\n'.encode(), **files}
    entries[f"{dist_info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {dist.replace('_', '-')}\n"
                                        f"Version: {version}\n").encode()
    entries[f"{dist_info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: sharewheel-tests\n"
                                     f"Root-Is-Purelib: false\nTag: {python}-{platform}\n").encode()
    entries[f"{dist_info}/RECORD"] = b""
    modes = {n: 0o100755 for n in files if n.endswith((".so", ".dylib", ".pyd", ".dll"))}
    return write_entries(where / f"{dist}-{version}-{python}-{platform}.whl", entries, modes=modes)


def edit_wheel(wheel: Path, where: Path, *, replace: dict[str, bytes] | None = None,
               add: dict[str, bytes] | None = None, drop: Iterable[str] = (), name: str | None = None,
               fix_record: bool = True, transform: Callable[[str, bytes], bytes] | None = None,
               compression: dict[str, int] | None = None) -> Path:
    """`wheel` rewritten into `where` (as `name`, default its own name) with entries replaced,
    added, dropped or transformed; RECORD regenerated unless `fix_record` is false."""
    entries = read_entries(wheel)
    for member in drop:
        del entries[member]
    for member, data in (replace or {}).items():
        assert member in entries, member
        entries[member] = data
    if transform is not None:
        entries = {n: transform(n, d) for n, d in entries.items()}
    if add:
        record = [n for n in entries if n.endswith(".dist-info/RECORD")]
        last = {n: entries.pop(n) for n in record}
        entries |= add
        entries |= last  # RECORD stays last
    with zipfile.ZipFile(wheel) as zf:
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist() if i.external_attr >> 16}
    return write_entries(where / (name or wheel.name), entries, fix_record=fix_record, modes=modes,
                         compression=compression)


def patch_central(path: Path, member: str, offset: int, fmt: str, value: int) -> Path:
    """Overwrite a field of `member`'s central directory header (offset from its signature)."""
    data = bytearray(path.read_bytes())
    position, found = 0, 0
    while (position := data.find(b"PK\x01\x02", position)) >= 0:
        name_length = struct.unpack_from("<H", data, position + 28)[0]
        if data[position + 46: position + 46 + name_length] == member.encode():
            struct.pack_into(fmt, data, position + offset, value)
            found += 1
        position += 4
    assert found == 1, (member, found)
    path.write_bytes(bytes(data))
    return path


def compressed_span(path: Path, member: str) -> tuple[int, int]:
    """Where `member`'s compressed bytes are in the file: (start, length)."""
    data = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    return info.header_offset + 30 + name_length + extra_length, info.compress_size


CD_EXTRACT_VERSION, CD_FLAGS, CD_METHOD, CD_CRC, CD_USIZE = 6, 8, 10, 16, 24  # central directory header fields


# --- the hostile wheels -------------------------------------------------------------------


def package_of(wheel: Path) -> str:
    return one(sorted({n.split("/")[0] for n in read_entries(wheel) if n.count("/") == 1
                       and n.endswith("/__init__.py")}))


def member_named(wheel: Path, suffixes: tuple[str, ...]) -> str:
    """The wheel's one extension module (or library) with one of these suffixes."""
    return one(sorted(n for n in read_entries(wheel) if n.endswith(suffixes) and ".libs/" not in n
                      and "/lib/" not in n))


def _dist_info(wheel: Path) -> str:
    return dist_info_of(read_entries(wheel))


def drive_letter(wheel: Path, where: Path) -> Hostile:
    return Hostile(edit_wheel(wheel, where, add={"C:/x": b"print('hi')\n"}), ("'C:/x'", "drive letter"))


def empty_name(wheel: Path, where: Path) -> Hostile:
    return Hostile(edit_wheel(wheel, where, add={"": b"print('hi')\n"}), ("''",))


def name_not_utf8(wheel: Path, where: Path) -> Hostile:
    """An entry flagged as having a UTF-8 name whose name is not UTF-8 (in the central directory)."""
    name = f"{package_of(wheel)}/caf\u00e9.py"  # zipfile sets the UTF-8 flag for it
    path = edit_wheel(wheel, where, add={name: b"print('hi')\n"})
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        central = zf.start_dir
        assert zf.getinfo(name).flag_bits & 0x800
    position = data.index(name.encode(), central)
    data[position: position + len(name.encode())] = name.encode().replace(b"\xc3\xa9", b"\xcf\x28")
    path.write_bytes(bytes(data))
    return Hostile(path, ())


def declared_bomb(wheel: Path, where: Path) -> Hostile:
    """Three small entries whose central directory headers claim ~4 GiB each: 12 GiB declared,
    more than the default 8 GiB limit, refused from the directory alone."""
    path = edit_wheel(wheel, where)
    members = [n for n in read_entries(path) if not n.endswith("/RECORD")][:3]
    for member in members:
        patch_central(path, member, CD_USIZE, "<I", 0xFFFF_FFF0)
    return Hostile(path, ("unpacks to more than", "SHAREWHEEL_MAX_UNPACKED_SIZE"))


REAL_BOMB_LIMIT = 32 * 1024 * 1024


def real_bomb(wheel: Path, where: Path) -> Hostile:
    """A real entry of 64 MiB of zeros (~64 KiB deflated), over a 32 MiB limit."""
    zeros = bytes(2 * REAL_BOMB_LIMIT)
    path = edit_wheel(wheel, where, add={f"{package_of(wheel)}/zeros.bin": zeros})
    assert path.stat().st_size < REAL_BOMB_LIMIT // 100  # small on disk, huge unpacked
    return Hostile(path, ("unpacks to more than", str(REAL_BOMB_LIMIT), "SHAREWHEEL_MAX_UNPACKED_SIZE"))


def small_limit(wheel: Path, where: Path) -> Hostile:
    """The unchanged wheel, with SHAREWHEEL_MAX_UNPACKED_SIZE=1000 (see the case's env)."""
    return Hostile(edit_wheel(wheel, where), ("unpacks to more than 1000 bytes", "SHAREWHEEL_MAX_UNPACKED_SIZE"))


def limit_not_a_number(wheel: Path, where: Path) -> Hostile:
    return Hostile(edit_wheel(wheel, where), ("SHAREWHEEL_MAX_UNPACKED_SIZE", "'lots'"))


def _dist_file(member: str, data: bytes | None, words: tuple[str, ...]) -> Callable[[Path, Path], Hostile]:
    """Replace (or with data=None, remove) <dist-info>/MEMBER."""
    def make(wheel: Path, where: Path) -> Hostile:
        target = f"{_dist_info(wheel)}/{member}"
        if data is None:
            return Hostile(edit_wheel(wheel, where, drop=[target]), (target, *words))
        return Hostile(edit_wheel(wheel, where, replace={target: data}), (member, *words))

    return make


def _tag_of(wheel: Path) -> str:
    text = read_entries(wheel)[f"{_dist_info(wheel)}/WHEEL"].decode()
    return one([l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("Tag:")])


def wheel_file(body: Callable[[str], str], words: tuple[str, ...]) -> Callable[[Path, Path], Hostile]:
    """A WHEEL file made from the wheel's one tag."""
    def make(wheel: Path, where: Path) -> Hostile:
        text = body(_tag_of(wheel)).encode()
        return Hostile(edit_wheel(wheel, where, replace={f"{_dist_info(wheel)}/WHEEL": text}), ("WHEEL", *words))

    return make


def metadata_file(body: str, words: tuple[str, ...]) -> Callable[[Path, Path], Hostile]:
    return _dist_file("METADATA", body.encode(), words)


def record_file(edit: Callable[[bytes, str], bytes], words: tuple[str, ...]) -> Callable[[Path, Path], Hostile]:
    """RECORD = edit(the correct RECORD, the first package file's name)."""
    def make(wheel: Path, where: Path) -> Hostile:
        entries = read_entries(wheel)
        dist_info = _dist_info(wheel)
        good = record_of(entries, dist_info)
        first = f"{package_of(wheel)}/__init__.py"
        record = edit(good, first)
        assert record != good
        path = edit_wheel(wheel, where, replace={f"{dist_info}/RECORD": record}, fix_record=False)
        return Hostile(path, ("RECORD", *words))

    return make


def _row_of(record: bytes, member: str) -> bytes:
    return one([l for l in record.split(b"\n") if l.startswith(member.encode() + b",")])


def _record_without_row(record: bytes, member: str) -> bytes:
    return record.replace(_row_of(record, member) + b"\n", b"")


def _zip_damage(kind: str) -> Callable[[Path, Path], Hostile]:
    """A zip whose entry data or central directory is damaged (RECORD itself is right)."""
    def make(wheel: Path, where: Path) -> Hostile:
        target = f"{package_of(wheel)}/__init__.py"
        path = edit_wheel(wheel, where)
        if kind == "bad-crc":
            patch_central(path, target, CD_CRC, "<I", 0xDEADBEEF)
        elif kind == "bad-deflate":
            start, length = compressed_span(path, target)
            data = bytearray(path.read_bytes())
            for i in range(start, start + length):
                data[i] ^= 0x5A
            path.write_bytes(bytes(data))
        elif kind == "size-lie":  # declares fewer bytes than its data inflates to
            patch_central(path, target, CD_USIZE, "<I", 10)
        elif kind == "unknown-method":
            patch_central(path, target, CD_METHOD, "<H", 99)
        elif kind == "encrypted":
            patch_central(path, target, CD_FLAGS, "<H", 0x1)
        elif kind == "extract-version":
            patch_central(path, target, CD_EXTRACT_VERSION, "<B", 255)
        else:
            raise AssertionError(kind)
        return Hostile(path, ("zip",) if kind == "extract-version" else (target,))

    return make


def data_tampered(wheel: Path, where: Path) -> Hostile:
    """A data file (copied as it is by repair, not unpacked) whose bytes do not match its RECORD row."""
    name = f"{package_of(wheel)}/data/table.txt"
    honest = edit_wheel(wheel, where / "honest", add={name: b"the data RECORD was written for\n"})
    tampered = edit_wheel(honest, where, replace={name: b"THE DATA RECORD WAS WRITTEN FOR\n"}, fix_record=False)
    return Hostile(tampered, ("RECORD", name))


def file_under_file(wheel: Path, where: Path) -> Hostile:
    """`pkg/__init__.py` is a file and also the directory of `pkg/__init__.py/evil.py`."""
    name = f"{package_of(wheel)}/__init__.py/evil.py"
    return Hostile(edit_wheel(wheel, where, add={name: b"print('hi')\n"}), (name,))


def init_not_utf8(wheel: Path, where: Path) -> Hostile:
    """A package __init__.py that is not UTF-8 (and has no coding cookie: Python cannot import it)."""
    init = f"{package_of(wheel)}/__init__.py"
    return Hostile(edit_wheel(wheel, where, replace={init: b"\xff\xfe import nothing\n"}), (init,))


def consumer_manifest_broken(wheel: Path, where: Path) -> Hostile:
    """The consumer's own <dist-info>/sharewheel.json (from an earlier repair) is not JSON."""
    member = f"{_dist_info(wheel)}/sharewheel.json"
    return Hostile(edit_wheel(wheel, where, add={member: b"{not json"}), ("sharewheel.json", "JSON"))


@dataclass(frozen=True)
class Case:
    make: Callable[[Path, Path], Hostile]
    env: dict[str, str] = field(default_factory=dict)
    commands: tuple[str, ...] = ("repair", "show")
    xfail: str | None = None
    xfail_commands: tuple[str, ...] = ("repair", "show")
    names_wheel: bool = True  # False: the line names what is at fault instead (a variable, a binary)


HOSTILE_CASES: dict[str, Case] = {
    # entry names and sizes
    "drive-letter": Case(drive_letter),
    # found by fuzz/fuzz_wheel.py (crash-f851100e...)
    "empty-entry-name": Case(empty_name),
    "declared-size-bomb": Case(declared_bomb),
    "real-compressible-bomb": Case(real_bomb, env={"SHAREWHEEL_MAX_UNPACKED_SIZE": str(REAL_BOMB_LIMIT)}),
    "small-size-limit": Case(small_limit, env={"SHAREWHEEL_MAX_UNPACKED_SIZE": "1000"}),
    "size-limit-not-a-number": Case(limit_not_a_number, env={"SHAREWHEEL_MAX_UNPACKED_SIZE": "lots"},
                                    names_wheel=False),
    "file-under-a-file": Case(file_under_file),
    # damaged zip data
    "bad-crc": Case(_zip_damage("bad-crc")),
    "bad-deflate-data": Case(_zip_damage("bad-deflate")),
    "declared-size-too-small": Case(_zip_damage("size-lie")),  # inflates past what it declares
    "unknown-compression": Case(_zip_damage("unknown-method")),
    "entry-name-not-utf8": Case(name_not_utf8),  # found by fuzz/fuzz_wheel.py (crash-4bd685eb...)
    # found by fuzz/fuzz_wheel.py (crash-b9adefc1...): zipfile refuses the whole archive
    "zip-version-unsupported": Case(_zip_damage("extract-version")),
    "encrypted-entry": Case(_zip_damage("encrypted")),
    # WHEEL
    "wheel-missing": Case(_dist_file("WHEEL", None, ("no ",))),
    "wheel-no-version": Case(wheel_file(lambda tag: f"Root-Is-Purelib: false\nTag: {tag}\n", ("Wheel-Version",))),
    "wheel-not-utf8": Case(_dist_file("WHEEL", b"Wheel-Version: 1.0\nTag: \xff\xfe\n", ("UTF-8",))),
    # a tag with four parts (a dash for an underscore); found again by fuzz/fuzz_wheel.py (crash-80d07800...)
    "wheel-bad-tag-line": Case(wheel_file(lambda tag: f"Wheel-Version: 1.0\nTag: {tag}\nTag: cp311-cp311-linux-x86_64\n",
                                          ("cp311-cp311-linux-x86_64",))),
    "wheel-version-not-a-number": Case(wheel_file(lambda tag: f"Wheel-Version: one point oh\nTag: {tag}\n", ("Wheel-Version",))),
    "wheel-version-2": Case(wheel_file(lambda tag: f"Wheel-Version: 2.0\nTag: {tag}\n", ("Wheel-Version",))),
    # METADATA
    "metadata-missing": Case(_dist_file("METADATA", None, ("no ",))),
    "metadata-without-name": Case(metadata_file("Metadata-Version: 2.1\nVersion: 1.0.0\n", ("METADATA", "Name"))),
    "metadata-other-name": Case(metadata_file("Metadata-Version: 2.1\nName: someone-else\nVersion: 1.0.0\n",
                                              ("someone-else",))),
    "metadata-other-version": Case(metadata_file("Metadata-Version: 2.1\nName: acme-consumer\nVersion: 6.6.6\n",
                                                 ("6.6.6",))),
    "metadata-bad-requirement": Case(metadata_file(
        "Metadata-Version: 2.1\nName: acme-consumer\nVersion: 1.0.0\nRequires-Dist: !!nonsense\n",
        ("!!nonsense",)), commands=("repair",)),
    # RECORD
    "record-missing": Case(_dist_file("RECORD", None, ("RECORD",))),
    "record-row-too-long": Case(record_file(lambda r, f: r + b"a,b,c,d,e\n", ("expected 3 elements",))),
    "record-hash-malformed": Case(record_file(lambda r, f: r.replace(_row_of(r, f), _row_of(r, f).replace(b"sha256=", b"sha256")),
                                              ("hash",))),
    "record-size-not-a-number": Case(record_file(
        lambda r, f: r.replace(_row_of(r, f), _row_of(r, f).rsplit(b",", 1)[0] + b",big"), ("size",))),
    "record-lacks-a-file": Case(record_file(lambda r, f: _record_without_row(r, f), ("not mentioned in RECORD",))),
    # found by fuzz/fuzz_wheel.py (crash-5b96abda...)
    "record-lists-a-missing-file": Case(record_file(
        lambda r, f: r.replace(b"\n", b"\n" + _row_of(r, f).replace(b"__init__.py", b"gone.dat") + b"\n", 1),
        ("gone.dat",))),
    "record-hash-mismatch-in-data": Case(data_tampered, commands=("repair",)),
    # package contents
    "init-not-utf8": Case(init_not_utf8, commands=("repair",)),
    "consumer-manifest-not-json": Case(consumer_manifest_broken),
}


def _case_params(cases: dict[str, Case], commands: Iterable[str] = ("repair", "show")) -> list:
    params = []
    for kind, case in cases.items():
        for command in commands:
            if command not in case.commands:
                continue
            marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] \
                if case.xfail and command in case.xfail_commands else []
            params.append(pytest.param(kind, command, id=f"{kind}-{command}", marks=marks))
    return params


def refuse_wheel(sandbox: Sandbox, hostile: Hostile, command: str, *, providers: Iterable[Path] = (),
                 env: dict[str, str] | None = None, extra_inputs: Iterable[Path] = (),
                 names_wheel: bool = True) -> str:
    provider_args = [a for p in providers for a in ("--provider", p)]
    args = ["repair", hostile.path, "-w", sandbox.out, *provider_args] if command == "repair" \
        else ["show", hostile.path, *provider_args]
    return sandbox.refuse(*args, names=((hostile.path.name,) if names_wheel else ()) + hostile.names,
                          inputs=[hostile.path, *providers, *extra_inputs], env=env)


@pytest.fixture
def elf_env(consumer: Consumer) -> dict[str, str]:
    """libextra can be found, so a missing library never hides the defect under test."""
    return {"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}


@pytest.mark.parametrize("kind,command", _case_params(HOSTILE_CASES))
def test_hostile_elf_wheel(kind: str, command: str, consumer: Consumer, sandbox: Sandbox,
                           elf_env: dict[str, str]) -> None:
    case = HOSTILE_CASES[kind]
    hostile = case.make(consumer.input, sandbox.inputs)
    provider = Path(sandbox.inputs / "providers" / consumer.provider.name)
    provider.parent.mkdir(parents=True)
    provider.write_bytes(consumer.provider.read_bytes())
    refuse_wheel(sandbox, hostile, command, providers=[provider], env={**elf_env, **case.env},
                 names_wheel=case.names_wheel)


def test_hostile_wheels_have_exactly_one_defect(consumer: Consumer, tmp_path: Path) -> None:
    """The rewritten wheels are valid but for the planted defect: the unedited rewrite repairs."""
    plain = edit_wheel(consumer.input, tmp_path / "plain")
    assert read_entries(plain) == read_entries(consumer.input)
    sharewheel("repair", plain, "-w", tmp_path / "out", "--provider", consumer.provider,
               env={"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)})
    bomb = real_bomb(consumer.input, tmp_path / "bomb").path
    with zipfile.ZipFile(bomb) as zf:
        assert zf.getinfo("acme_consumer/zeros.bin").file_size == 2 * REAL_BOMB_LIMIT
    declared = declared_bomb(consumer.input, tmp_path / "declared").path
    with zipfile.ZipFile(declared) as zf:
        assert sum(i.file_size for i in zf.infolist()) > 8 * 1024**3
    assert declared.stat().st_size < 100_000


# --- ELF binaries --------------------------------------------------------------------------


def _elf_binary(make: Callable[[bytes], bytes], words: tuple[str, ...],
                name_binary: bool = True) -> Callable[[Path, Path], Hostile]:
    def build(wheel: Path, where: Path) -> Hostile:
        so = member_named(wheel, (".so",))
        data = read_entries(wheel)[so]
        assert data[:4] == b"\x7fELF"
        return Hostile(edit_wheel(wheel, where, replace={so: make(data)}), ((so,) if name_binary else ()) + words)

    return build


def unresolvable_dynamic_strings(data: bytes) -> bytes:
    """An ELF whose dynamic segment's DT_STRTAB points nowhere and whose section header table is
    gone (e_shoff, e_shnum, e_shstrndx zeroed): what a reader of the dynamic segment must give up on,
    while one that walks sections finds nothing to read. (The shape of fuzz crash-c6bc6e55...)"""
    elf = bytearray(data)
    assert elf[:4] == b"\x7fELF" and elf[4] == 2 and elf[5] == 1, "a 64-bit little-endian ELF"
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    header = one([phoff + i * phentsize for i in range(phnum)
                  if struct.unpack_from("<I", elf, phoff + i * phentsize)[0] == 2])  # PT_DYNAMIC
    offset, = struct.unpack_from("<Q", elf, header + 8)  # p_offset
    size, = struct.unpack_from("<Q", elf, header + 32)  # p_filesz
    strtab = one([offset + i for i in range(0, size, 16) if struct.unpack_from("<q", elf, offset + i)[0] == 5])
    struct.pack_into("<Q", elf, strtab + 8, 0x7FFF_FFFF_0000)  # DT_STRTAB: an address no segment maps
    struct.pack_into("<Q", elf, 0x28, 0)  # e_shoff
    struct.pack_into("<HH", elf, 0x3C, 0, 0)  # e_shnum, e_shstrndx
    return bytes(elf)


def other_arch_elf(wheel: Path, where: Path) -> Hostile:
    """The x86_64 wheel retagged (file name and WHEEL) for aarch64: an aarch64 wheel holding an
    x86_64 extension module."""
    arch = "x86_64"
    assert wheel.name.endswith(f"_{arch}.whl")
    dist_info = _dist_info(wheel)
    wheel_text = read_entries(wheel)[f"{dist_info}/WHEEL"].replace(arch.encode(), b"aarch64")
    so = member_named(wheel, (".so",))
    path = edit_wheel(wheel, where, replace={f"{dist_info}/WHEEL": wheel_text},
                      name=wheel.name.replace(arch, "aarch64"))
    return Hostile(path, (so, "x86_64", "aarch64"))


ELF_CASES: dict[str, Case] = {
    # named like an extension module, so an error naming it, not a wheel without binaries
    "elf-random-bytes": Case(_elf_binary(lambda d: bytes(i * 7919 % 251 for i in range(len(d))),
                                         ("not an ELF file",))),
    "elf-garbage-after-magic": Case(_elf_binary(lambda d: b"\x7fELF" + bytes(range(256)) * 20, ("malformed ELF",)),
                                    names_wheel=False),
    "elf-truncated": Case(_elf_binary(lambda d: d[:1000], ("malformed ELF",)), names_wheel=False),
    "elf-truncated-header": Case(_elf_binary(lambda d: d[:10], ("malformed ELF",)), names_wheel=False),
    "elf-other-arch": Case(other_arch_elf),
    # found by fuzz/fuzz_wheel.py (crash-c6bc6e55...)
    "elf-dynamic-strings-unresolvable": Case(_elf_binary(unresolvable_dynamic_strings, ("malformed ELF",)),
                                             names_wheel=False),  # was 'internal error: AssertionError'
}


@pytest.mark.parametrize("kind,command", _case_params(ELF_CASES))
def test_hostile_elf_binary(kind: str, command: str, consumer: Consumer, sandbox: Sandbox,
                            elf_env: dict[str, str]) -> None:
    """The line names the binary (its path in the wheel; see test_binary_errors_name_their_wheel)."""
    case = ELF_CASES[kind]
    hostile = case.make(consumer.input, sandbox.inputs)
    refuse_wheel(sandbox, hostile, command, providers=[consumer.provider], env={**elf_env, **case.env},
                 names_wheel=case.names_wheel)


def test_needed_library_found_nowhere(consumer: Consumer, sandbox: Sandbox) -> None:
    """libextra.so.1 is a DT_NEEDED no provider offers and nothing on the search path has."""
    wheel = edit_wheel(consumer.input, sandbox.inputs)
    line = sandbox.refuse("repair", wheel, "-w", sandbox.out, "--provider", consumer.provider,
                          names=(wheel.name, "libextra.so.1", "not found"), inputs=[wheel],
                          env={"LD_LIBRARY_PATH": ""})
    assert "_core" in line  # the binary that needs it


# --- providers -------------------------------------------------------------------------------


def _provider(edit: Callable[[dict, dict[str, bytes], str], tuple[dict | bytes | None, list[str]]],
              words: tuple[str, ...]) -> Callable[[Path, Path], Hostile]:
    """A provider wheel whose manifest (and files) `edit` changes: edit(manifest, entries, member)
    returns the new manifest (dict, raw bytes, or None: removed) and members to drop."""
    def make(provider: Path, where: Path) -> Hostile:
        entries = read_entries(provider)
        member = f"{_dist_info(provider)}/sharewheel.json"
        manifest, drop = edit(json.loads(entries[member]), entries, member)
        if manifest is None:
            drop = [*drop, member]
            replace = {}
        else:
            replace = {member: manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()}
        return Hostile(edit_wheel(provider, where, replace=replace, drop=drop), words)

    return make


def _set(path: tuple[str | int, ...], value: object) -> Callable[[dict, dict, str], tuple[dict, list[str]]]:
    def edit(manifest: dict, entries: dict, member: str) -> tuple[dict, list[str]]:
        target = manifest
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return manifest, []

    return edit


_DELETE = object()


def _library_removed(manifest: dict, entries: dict, member: str) -> tuple[dict, list[str]]:
    return manifest, [manifest["provides"]["libraries"][0]["path"]]


PROVIDER_CASES: dict[str, Case] = {
    "provider-without-manifest": Case(_provider(lambda m, e, n: (None, []), ("not a native-lib wheel",))),
    "provider-manifest-not-json": Case(_provider(lambda m, e, n: (b"{'provides': ", []), ("not valid JSON",))),
    "provider-manifest-other-schema": Case(_provider(_set(("schema",), 99), ("schema 99",))),
    "provider-manifest-field-missing": Case(_provider(_set(("provides", "libraries", 0, "unique_name"), _DELETE),
                                                      ("malformed", "unique_name"))),
    "provider-manifest-libraries-not-a-list": Case(_provider(_set(("provides", "libraries"), "libacme"),
                                                             ("malformed",))),
    "provider-manifest-bad-abi": Case(_provider(_set(("provides", "abi"), "{bogus}"), ("{bogus}",))),
    "provider-library-missing": Case(_provider(_library_removed, ("the manifest lists", "not in the wheel"))),
}


@pytest.mark.parametrize("kind,command", _case_params(PROVIDER_CASES))
def test_hostile_provider_wheel(kind: str, command: str, consumer: Consumer, sandbox: Sandbox,
                                elf_env: dict[str, str]) -> None:
    """A broken provider wheel given with --provider: one line naming it; the consumer is not written."""
    hostile = PROVIDER_CASES[kind].make(consumer.provider, sandbox.inputs / "providers")
    wheel = edit_wheel(consumer.input, sandbox.inputs)
    args = ["repair", wheel, "-w", sandbox.out] if command == "repair" else ["show", wheel]
    sandbox.refuse(*args, "--provider", hostile.path, names=(hostile.path.name, *hostile.names),
                   inputs=[wheel, hostile.path], env=elf_env)


def test_provider_manifest_with_a_path_as_unique_name(consumer: Consumer, sandbox: Sandbox,
                                                      elf_env: dict[str, str]) -> None:
    [library] = json.loads(read_entries(consumer.provider)[f"{_dist_info(consumer.provider)}/sharewheel.json"]
                           )["provides"]["libraries"]

    def edit(manifest: dict, entries: dict, member: str) -> tuple[dict, list[str]]:
        manifest["provides"]["libraries"][0]["name"] = library["unique_name"]  # what the consumer needs
        manifest["provides"]["libraries"][0]["unique_name"] = "../../tmp/evil.so"
        return manifest, []

    hostile = _provider(edit, ())(consumer.provider, sandbox.inputs / "providers")
    wheel = edit_wheel(consumer.input, sandbox.inputs)
    sandbox.refuse("repair", wheel, "-w", sandbox.out, "--provider", hostile.path,
                   names=(hostile.path.name, "../../tmp/evil.so"), inputs=[wheel, hostile.path], env=elf_env)


def test_wheelhouse_holding_two_series_of_a_provider(consumer: Consumer, packed: Callable[..., Path],
                                                      tmp_path: Path, elf_env: dict[str, str]) -> None:
    """acme-native 3.1.4 and 4.0.0 in one wheelhouse: a consumer built against series 3 links to
    3.1.4 (each name maps to the newest release offering it; once, only the newest release of a
    distribution counted, and the consumer was refused with 'no provider offers' it)."""
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    for version in ("3.1.4", "4.0.0"):
        shutil.copy(packed(version), wheelhouse)
    sharewheel("repair", consumer.input, "-w", tmp_path / "out", "--provider", wheelhouse, env=elf_env)
    links = json.loads(read_entries(one(list((tmp_path / "out").glob("*.whl"))))[
        f"{_dist_info(consumer.input)}/sharewheel.json"])["links"]
    assert [link["version"] for link in links] == ["3.1.4"]


# --- Mach-O ---------------------------------------------------------------------------------


MAC_EXT = "_core.cpython-311-darwin.so"


@pytest.fixture(scope="module")
def mac_extension(zig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real arm64 extension module (zig), linking only libSystem."""
    from macho_support import build_extension

    return build_extension(zig, "arm64", tmp_path_factory.mktemp("hostile-macho"))


@pytest.fixture(scope="module")
def macho_wheel(mac_extension: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_wheel(tmp_path_factory.mktemp("hostile-macho-wheel"), "macosx_11_0_arm64",
                      {f"acme_consumer/{MAC_EXT}": mac_extension.read_bytes()})


def _binary_in(platform: str, member: str, make: Callable[[bytes], bytes],
               words: tuple[str, ...]) -> Callable[[Path, Path], Hostile]:
    """A wheel tagged `platform` holding make(the real binary) as acme_consumer/<member>."""
    def build(binary: Path, where: Path) -> Hostile:
        wheel = make_wheel(where, platform, {f"acme_consumer/{member}": make(binary.read_bytes())})
        return Hostile(wheel, (f"acme_consumer/{member}", *words))

    return build


MACHO_CASES: dict[str, Case] = {
    "macho-garbage": Case(_binary_in("macosx_11_0_arm64", MAC_EXT, lambda d: b"garbage!" * 512,
                                     ("not a Mach-O file",))),
    "macho-garbage-dylib-after-magic": Case(_binary_in("macosx_11_0_arm64", "libfoo.dylib",
                                                       lambda d: d[:4] + b"garbage!" * 512, ("malformed Mach-O",))),
    "macho-truncated": Case(_binary_in("macosx_11_0_arm64", MAC_EXT, lambda d: d[: len(d) // 3],
                                       ("malformed Mach-O",))),
    "macho-truncated-header": Case(_binary_in("macosx_11_0_arm64", MAC_EXT, lambda d: d[:40],
                                              ("malformed Mach-O",))),
    "macho-arm64-in-x86_64-wheel": Case(_binary_in("macosx_11_0_x86_64", MAC_EXT, lambda d: d,
                                                   ("arm64", "x86_64"))),
}


@pytest.mark.parametrize("kind,command", _case_params(MACHO_CASES))
def test_hostile_macho_binary(kind: str, command: str, mac_extension: Path, sandbox: Sandbox) -> None:
    hostile = MACHO_CASES[kind].make(mac_extension, sandbox.inputs)
    refuse_wheel(sandbox, hostile, command, names_wheel=False)


def test_macho_base_wheel_repairs(macho_wheel: Path, tmp_path: Path) -> None:
    """The unedited Mach-O wheel is fine: the cases above fail for their defect alone."""
    assert sharewheel("repair", macho_wheel, "-w", tmp_path).returncode == 0


# --- PE ---------------------------------------------------------------------------------------

PYD = "_core.cp311-win_amd64.pyd"


@pytest.fixture(scope="module")
def pe_pyd(pe_zig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real x86-64 extension module (zig, MinGW), importing only system DLLs."""
    from pe_support import build_dll

    base = tmp_path_factory.mktemp("hostile-pe")
    return build_dll(pe_zig, base / "pyd" / PYD, "__declspec(dllexport) void *PyInit__core(void) { return 0; }\n",
                     implib=base / "implib" / "_core.lib").dll


@pytest.fixture(scope="module")
def pe_wheel(pe_pyd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_wheel(tmp_path_factory.mktemp("hostile-pe-wheel"), "win_amd64", {f"acme_consumer/{PYD}": pe_pyd.read_bytes()})


PE_CASES: dict[str, Case] = {
    "pe-garbage": Case(_binary_in("win_amd64", PYD, lambda d: b"garbage!" * 512, ("not a PE file",))),
    "pe-garbage-after-mz": Case(_binary_in("win_amd64", PYD, lambda d: d[:0x40] + b"garbage!" * 512,
                                           ("PE",))),
    "pe-truncated": Case(_binary_in("win_amd64", PYD, lambda d: d[:1000], ("malformed PE",))),
    "pe-amd64-in-win32-wheel": Case(_binary_in("win32", PYD.replace("win_amd64", "win32"), lambda d: d,
                                               ("win_amd64", "win32"))),
}


@pytest.mark.parametrize("kind,command", _case_params(PE_CASES))
def test_hostile_pe_binary(kind: str, command: str, pe_pyd: Path, sandbox: Sandbox) -> None:
    hostile = PE_CASES[kind].make(pe_pyd, sandbox.inputs)
    refuse_wheel(sandbox, hostile, command, names_wheel=False)


def test_pe_base_wheel_repairs(pe_wheel: Path, tmp_path: Path) -> None:
    assert sharewheel("repair", pe_wheel, "-w", tmp_path).returncode == 0


# --- container defects on Mach-O and PE wheels -------------------------------------------------
# The zip and dist-info checks come before any binary is read, but a Mach-O or PE wheel goes
# through another adapter afterwards: the kinds that reach furthest are run on those wheels too.

REUSED_KINDS = ["dot-dot", "symlink", "record-mismatch", "duplicate"]  # from test_cli_errors
REUSED_CASES = ["drive-letter", "real-compressible-bomb", "metadata-missing", "record-row-too-long"]


@pytest.mark.parametrize("fmt", ["macho", "pe"])
@pytest.mark.parametrize("kind", REUSED_KINDS + REUSED_CASES)
def test_container_defects_in_other_formats(kind: str, fmt: str, request: pytest.FixtureRequest,
                                            sandbox: Sandbox) -> None:
    base = request.getfixturevalue(f"{fmt}_wheel")
    if kind in HOSTILE:
        hostile, env = make_hostile(kind, base, sandbox.inputs), {}
    else:
        hostile, env = HOSTILE_CASES[kind].make(base, sandbox.inputs), HOSTILE_CASES[kind].env
    refuse_wheel(sandbox, hostile, "repair", env=env)


# --- binary errors name their wheel -------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["elf", "macho", "pe"])
def test_binary_errors_name_their_wheel(fmt: str, request: pytest.FixtureRequest, sandbox: Sandbox) -> None:
    if fmt == "elf":
        hostile = ELF_CASES["elf-truncated"].make(request.getfixturevalue("consumer").input, sandbox.inputs)
    elif fmt == "macho":
        hostile = MACHO_CASES["macho-truncated"].make(request.getfixturevalue("mac_extension"), sandbox.inputs)
    else:
        hostile = PE_CASES["pe-truncated"].make(request.getfixturevalue("pe_pyd"), sandbox.inputs)
    env = {"LD_LIBRARY_PATH": str(request.getfixturevalue("consumer").extra_lib_dir)} if fmt == "elf" else {}
    refuse_wheel(sandbox, hostile, "repair", env=env)


# --- the output directory and the command line --------------------------------------------------


def test_output_dir_is_a_regular_file(consumer: Consumer, sandbox: Sandbox, elf_env: dict[str, str]) -> None:
    wheel = edit_wheel(consumer.input, sandbox.inputs)
    afile = sandbox.inputs / "wheelhouse"
    afile.write_text("a regular file where -w should be\n")
    sandbox.refuse("repair", wheel, "-w", afile, "--provider", consumer.provider, names=("-w", str(afile)),
                   inputs=[wheel, afile], env=elf_env)


def test_output_dir_is_immutable(consumer: Consumer, sandbox: Sandbox, elf_env: dict[str, str]) -> None:
    """Read-only even for root (test_cli_errors' chmod 0o555 case is skipped as root): chattr +i."""
    wheel = edit_wheel(consumer.input, sandbox.inputs)
    sandbox.out.mkdir(parents=True)
    if os.geteuid() != 0:
        sandbox.out.chmod(0o555)
    elif subprocess.run(["chattr", "+i", sandbox.out], check=False, capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here, and root ignores directory permissions")
    try:
        sandbox.refuse("repair", wheel, "-w", sandbox.out, "--provider", consumer.provider,
                       names=("-w", str(sandbox.out)), inputs=[wheel], env=elf_env)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", sandbox.out], check=True)
        sandbox.out.chmod(0o755)


@pytest.mark.parametrize("fmt", ["macho", "pe"])
def test_same_wheel_twice(fmt: str, request: pytest.FixtureRequest, sandbox: Sandbox) -> None:
    base = request.getfixturevalue(f"{fmt}_wheel")
    wheel = edit_wheel(base, sandbox.inputs)
    sandbox.refuse("repair", wheel, sandbox.inputs / ".." / "in" / wheel.name, "-w", sandbox.out,
                   names=(wheel.name, "given twice"), inputs=[wheel])


# --- kill -9 in the middle of a repair ---------------------------------------------------------

PAYLOAD = 200 * 1024 * 1024


@dataclass(frozen=True)
class Killed:
    out: Path  # the -w of the killed run, as it left it
    pid: int
    after: float  # seconds from start to SIGKILL
    output_name: str  # what the run would have written
    leftovers: tuple[str, ...]  # in -w
    tmpdir_leftovers: tuple[str, ...]  # in its TMPDIR (a killed process cannot clean up)


@pytest.fixture(scope="module")
def big_wheel(consumer: Consumer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The real consumer wheel whose extension module carries 200 MB of incompressible data in an
    extra ELF section (objcopy --add-section): a binary repair must unpack, patch and deflate, so a
    repair takes seconds (data beside the binaries is copied still compressed, in a fraction of one)."""
    objcopy = find_tool("objcopy", why="the kill -9 test grows a real extension module with objcopy (binutils)")
    base = tmp_path_factory.mktemp("big")
    so = member_named(consumer.input, (".so",))
    (base / "core.so").write_bytes(read_entries(consumer.input)[so])
    (base / "payload").write_bytes(os.urandom(PAYLOAD))
    subprocess.run([objcopy, "--add-section", f".sharewheel_test_payload={base / 'payload'}",
                    base / "core.so", base / "big.so"], check=True)
    wheel = edit_wheel(consumer.input, base / "wheel", replace={so: (base / "big.so").read_bytes()},
                       compression={so: zipfile.ZIP_STORED})
    for scratch in ("core.so", "payload", "big.so"):
        (base / scratch).unlink()
    yield wheel
    shutil.rmtree(base)


def kill_repair(wheel: Path, consumer: Consumer, base: Path, *, wait_for_output: bool) -> Killed:
    """Start `sharewheel repair`; SIGKILL it as soon as its temporary output exists
    (`wait_for_output`), or as soon as its work directory exists in TMPDIR (a fixed delay would
    depend on how fast the machine is: repair may be past its work directory in a second)."""
    out, tmpdir = base / "wheelhouse", base / "TMPDIR"
    out.mkdir(parents=True)
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir), "LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "sharewheel", "repair", wheel, "-w", out,
                                "--provider", consumer.provider], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while True:
            assert process.poll() is None, f"the run ended before it was killed: {process.communicate()}"
            elapsed = time.monotonic() - start
            if wait_for_output:
                if [p for p in os.listdir(out) if ".whl." in p]:  # the temporary output, being written
                    break
                assert elapsed < 120, "no temporary output after 120 s"
            elif os.listdir(tmpdir):
                break
            assert elapsed < 120, "nothing to kill it at after 120 s"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        after = time.monotonic() - start
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    return Killed(out, process.pid, after, consumer.output.name, tuple(sorted(os.listdir(out))),
                  tuple(sorted(os.listdir(tmpdir))))


@pytest.fixture(scope="module")
def killed_while_writing(big_wheel: Path, consumer: Consumer,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Killed]:
    base = tmp_path_factory.mktemp("killed-writing")
    yield kill_repair(big_wheel, consumer, base, wait_for_output=True)
    shutil.rmtree(base)  # hundreds of MB: the partial output and the killed run's unpacked trees


@pytest.fixture(scope="module")
def killed_in_work_dir(big_wheel: Path, consumer: Consumer,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Killed]:
    base = tmp_path_factory.mktemp("killed-in-work-dir")
    yield kill_repair(big_wheel, consumer, base, wait_for_output=False)
    shutil.rmtree(base)


@pytest.mark.parametrize("when", ["killed_while_writing", "killed_in_work_dir"])
def test_kill_9_leaves_no_wheel(when: str, request: pytest.FixtureRequest) -> None:
    """Whatever a killed run leaves in -w is no wheel: nothing named *.whl (nothing pip or a
    `dist/*.whl` glob picks up), only hidden temporary files, and not the output it was writing."""
    killed: Killed = request.getfixturevalue(when)
    assert killed.output_name not in killed.leftovers
    assert [n for n in killed.leftovers if n.endswith(".whl")] == []
    assert all(n.startswith(".") for n in killed.leftovers), killed.leftovers
    if when == "killed_while_writing":
        assert killed.leftovers, "killed while writing, yet no temporary output: the test did not test"


def test_next_run_removes_the_stale_temporary_file(killed_while_writing: Killed, consumer: Consumer,
                                                   tmp_path: Path) -> None:
    """The design: temporary outputs are named `.<wheel>.<random>.sharewheel-tmp-<pid>`, and a run
    into a directory removes those of pids no longer alive."""
    killed = killed_while_writing
    assert killed.leftovers
    pattern = re.compile(rf"^\.{re.escape(killed.output_name)}\.[A-Za-z0-9_]+\.sharewheel-tmp-(\d+)$")
    for name in killed.leftovers:
        match = pattern.match(name)
        assert match and int(match[1]) == killed.pid, f"{name!r} is not .<wheel>.<random>.sharewheel-tmp-<pid>"
    out = tmp_path / "wheelhouse"
    out.mkdir()
    for name in killed.leftovers:  # the killed run's -w, as it left it
        os.link(killed.out / name, out / name)
    sharewheel("repair", consumer.input, "-w", out, "--provider", consumer.provider,
               env={"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)})
    assert sorted(os.listdir(out)) == [consumer.output.name]


def test_next_run_removes_the_killed_runs_work_directory(killed_in_work_dir: Killed, consumer: Consumer,
                                                         tmp_path: Path) -> None:
    """A killed run's unpacked trees stay in TMPDIR, named `sharewheel-<random>.sharewheel-tmp-<pid>`;
    the next run removes those of pids no longer alive."""
    killed = killed_in_work_dir
    tmpdir = killed.out.parent / "TMPDIR"
    left = sorted(os.listdir(tmpdir))
    assert left, "killed while working, yet no work directory: the test did not test"
    assert all(re.fullmatch(rf"sharewheel-.*\.sharewheel-tmp-{killed.pid}", name) for name in left), left
    sharewheel("repair", consumer.input, "-w", tmp_path / "wheelhouse", "--provider", consumer.provider,
               env={"TMPDIR": str(tmpdir), "LD_LIBRARY_PATH": str(consumer.extra_lib_dir)})
    assert os.listdir(tmpdir) == []
