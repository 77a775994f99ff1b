"""Wheel I/O: read a wheel only after proving it is one, write one whole or not at all.

Reading validates everything a later step would otherwise trip over with a traceback: the
file name, the zip structure, entry names that could escape the extraction directory, the
dist-info directory, WHEEL tags against the file name, and RECORD (names, sizes, hashes, via
pypa/installer, exactly as pip checks it). Writing regenerates RECORD, orders entries
canonically (dist-info last, RECORD last), stamps every entry with one time
(SOURCE_DATE_EPOCH when set) and renames the finished file into place atomically.
"""

from __future__ import annotations

import base64
import concurrent.futures
import csv
import email.parser
import hashlib
import io
import os
import shutil
import stat
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.tags import Tag, parse_tag
from packaging.utils import (
    InvalidTag,
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from sharewheel.errors import ConfigError, InputWheelError
from sharewheel.files import digest_of, replacing

#: What zipfile raises for damaged entries (bad CRC, bad deflate data, sizes that lie).
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError, RuntimeError, NotImplementedError)
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)

#: Refuse wheels whose entries unpack to more than this many bytes (a zip bomb guard).
#: Override with the SHAREWHEEL_MAX_UNPACKED_SIZE environment variable (bytes).
DEFAULT_MAX_UNPACKED_SIZE = 8 * 1024**3
_CHUNK = 1 << 20


def max_unpacked_size() -> int:
    value = os.environ.get("SHAREWHEEL_MAX_UNPACKED_SIZE")
    if value is None:
        return DEFAULT_MAX_UNPACKED_SIZE
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"SHAREWHEEL_MAX_UNPACKED_SIZE={value!r} is not a number of bytes") from None


@dataclass(frozen=True)
class WheelName:
    """The parts of a wheel file name (PEP 427), parsed by packaging."""

    distribution: str  # as spelled in the file name (normalised with underscores)
    version: str
    build: str
    tags: frozenset[Tag]

    @classmethod
    def parse(cls, filename: str) -> WheelName:
        try:
            _, version, build, tags = parse_wheel_filename(filename)
        except InvalidWheelFilename as e:
            raise InputWheelError(f"{filename}: not a wheel file name ({e})") from None
        build_text = "".join(str(part) for part in build) if build else ""
        return cls(filename.split("-")[0], str(version), build_text, frozenset(tags))

    @property
    def platforms(self) -> list[str]:
        return sorted({t.platform for t in self.tags})

    def with_platforms(self, platforms: list[str]) -> tuple[WheelName, list[str]]:
        """This name with its platform tags replaced; also the WHEEL `Tag` lines that go with it."""
        interpreters_abis = sorted({(t.interpreter, t.abi) for t in self.tags})
        tags = frozenset(Tag(i, a, p) for i, a in interpreters_abis for p in platforms)
        lines = [f"{i}-{a}-{p}" for i, a in interpreters_abis for p in sorted(platforms)]
        return WheelName(self.distribution, self.version, self.build, tags), lines

    @property
    def filename(self) -> str:
        interpreters = ".".join(sorted({t.interpreter for t in self.tags}))
        abis = ".".join(sorted({t.abi for t in self.tags}))
        platforms = ".".join(self.platforms)
        build = f"-{self.build}" if self.build else ""
        return f"{self.distribution}-{self.version}{build}-{interpreters}-{abis}-{platforms}.whl"

    @property
    def dist_info(self) -> str:
        return f"{self.distribution}-{self.version}.dist-info"


def wheel_tags(wheel_text: str) -> list[str]:
    """The `Tag:` lines of a WHEEL file (an email-header file), stripped: the one reader of them."""
    return [line.strip() for line in email.parser.Parser().parsestr(wheel_text).get_all("Tag") or []]


def platform_tags(wheel_text: str) -> list[str]:
    """The platform tags a WHEEL file's Tag lines name, sorted."""
    return sorted({p for tag in wheel_tags(wheel_text) for p in tag.rsplit("-", 1)[-1].split(".")})


def _unsafe_name_reason(name: str) -> str | None:
    if not name:
        return "has an empty name"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "is an absolute path"
    if len(name) > 1 and name[1] == ":":
        return "starts with a drive letter"
    parts = PurePosixPath(name).parts
    if ".." in parts:
        return "climbs out with '..'"
    if "\0" in name:
        return "contains a NUL byte"
    return None


class InputWheel:
    """A validated wheel, open for reading. Use :meth:`open`; the input file is never written."""

    def __init__(self, path: Path, name: WheelName, zf: zipfile.ZipFile, dist_info: str) -> None:
        self.path = path
        self.name = name
        self.zip = zf
        self.dist_info = dist_info
        self.project_name = name.distribution  # replaced by METADATA's Name once it is checked
        self._rows: dict[str, tuple[str, str]] = {}  # RECORD as read: name → (hash, size)
        self._record: dict[str, Any] = {}  # the same as installer's RecordEntry, once RECORD is checked

    @classmethod
    @contextmanager
    def open(cls, path: Path, *, check_record: bool = True) -> Iterator[InputWheel]:
        if not path.is_file():
            raise InputWheelError(f"{path}: no such file")
        name = WheelName.parse(path.name)
        try:
            zf = zipfile.ZipFile(path)
        except (*_ZIP_ERRORS, UnicodeDecodeError) as e:  # also undecodable names, unknown zip versions
            raise InputWheelError(f"{path}: not a zip file sharewheel can read ({e})") from None
        try:
            wheel = cls(path, name, zf, cls._check_entries(path, zf, name))
            wheel._check_dist_info()
            if check_record:
                wheel._check_record()
            yield wheel
        finally:
            zf.close()

    @staticmethod
    def _check_entries(path: Path, zf: zipfile.ZipFile, name: WheelName) -> str:
        seen: dict[str, str] = {}
        files: set[str] = set()
        directories: set[str] = set()
        total = 0
        limit = max_unpacked_size()
        try:
            infos = zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise InputWheelError(f"{path}: unreadable zip directory ({e})") from None
        for info in infos:
            reason = _unsafe_name_reason(info.filename)
            if reason:
                raise InputWheelError(f"{path}: entry {info.filename!r} {reason}")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise InputWheelError(f"{path}: entry {info.filename!r} is a symbolic link")
            if info.flag_bits & 0x1:
                raise InputWheelError(f"{path}: entry {info.filename!r} is encrypted")
            if info.compress_type not in _COMPRESSIONS:
                raise InputWheelError(f"{path}: entry {info.filename!r} uses unknown compression method {info.compress_type}")
            key = info.filename.rstrip("/").lower()
            parents = {str(p) for p in PurePosixPath(key).parents}
            if parents & files or (not info.is_dir() and key in directories):
                raise InputWheelError(f"{path}: entry {info.filename!r} and another entry are a file and a directory of one name")
            directories |= parents
            if not info.is_dir():
                files.add(key)
            if key in seen:
                other = seen[key]
                what = "is duplicated" if other == info.filename else f"differs only in case from {other!r}"
                raise InputWheelError(f"{path}: entry {info.filename!r} {what}")
            seen[key] = info.filename
            total += info.file_size
            if total > limit:
                raise InputWheelError(
                    f"{path}: unpacks to more than {limit} bytes (raise SHAREWHEEL_MAX_UNPACKED_SIZE to allow it)"
                )
        top_dist_infos = {
            n.split("/")[0] for n in seen.values() if n.split("/")[0].endswith(".dist-info") and "/" in n
        }
        if len(top_dist_infos) != 1:
            found = ", ".join(sorted(top_dist_infos)) or "none"
            raise InputWheelError(f"{path}: not a wheel: expected one .dist-info directory, found {found}")
        dist_info = top_dist_infos.pop()
        dist, _, version = dist_info[: -len(".dist-info")].partition("-")
        if canonicalize_name(dist) != canonicalize_name(name.distribution) or version != name.version:
            raise InputWheelError(f"{path}: {dist_info} does not match the file name")
        return dist_info

    def _check_dist_info(self) -> None:
        wheel_text = self.read_text(f"{self.dist_info}/WHEEL")
        headers = email.parser.Parser().parsestr(wheel_text)
        wheel_version = (headers.get("Wheel-Version") or "").strip()
        major = wheel_version.split(".")[0]
        if not wheel_version:
            raise InputWheelError(f"{self.path}: {self.dist_info}/WHEEL has no Wheel-Version")
        if not major.isdigit() or not all(p.isdigit() for p in wheel_version.split(".")) or int(major) != 1:
            raise InputWheelError(f"{self.path}: {self.dist_info}/WHEEL has Wheel-Version {wheel_version!r}; only 1.x wheels can be read")
        declared: set[Tag] = set()
        for line in wheel_tags(wheel_text):
            try:
                declared |= parse_tag(line)
            except InvalidTag:
                raise InputWheelError(f"{self.path}: {self.dist_info}/WHEEL has a malformed Tag line {line!r}") from None
        if declared != set(self.name.tags):
            in_file = ", ".join(sorted(str(t) for t in declared)) or "none"
            raise InputWheelError(
                f"{self.path}: the file name's tags disagree with the WHEEL file's Tag lines ({in_file})"
            )
        from packaging.metadata import parse_email

        raw, _ = parse_email(self.read_text(f"{self.dist_info}/METADATA"))  # packaging's reading of METADATA
        meta_name = raw.get("name")
        self.project_name = (meta_name or "").strip() or self.name.distribution  # as its author spells it
        if not meta_name or canonicalize_name(meta_name) != canonicalize_name(self.name.distribution):
            raise InputWheelError(f"{self.path}: METADATA Name {meta_name!r} does not match the file name")
        meta_version = (raw.get("version") or "").strip()
        try:
            same = Version(meta_version) == Version(self.name.version)
        except InvalidVersion:
            same = False
        if not same:
            raise InputWheelError(f"{self.path}: METADATA Version {meta_version!r} does not match the file name")

    def check_record(self) -> None:
        """RECORD's rows, names and sizes (hashes are checked as entries are read)."""
        self._check_record()

    def _check_record(self) -> None:
        from installer.exceptions import InstallerError
        from installer.records import InvalidRecordEntry, RecordEntry
        from installer.sources import WheelFile

        try:
            WheelFile(self.zip).validate_record(validate_contents=False)
        except (ValueError, InstallerError, InvalidRecordEntry) as e:  # one error listing every issue
            issues = getattr(e, "issues", None) or [str(e)]
            more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
            raise InputWheelError(f"{self.path}: RECORD does not match the wheel: {issues[0]}{more}") from None
        self._rows = self._record_rows()
        self._record = {name: RecordEntry.from_elements(name, digest, size) for name, (digest, size) in self._rows.items()}
        missing = sorted(set(self._record) - set(self.zip.namelist()))
        if missing:
            raise InputWheelError(f"{self.path}: RECORD lists {missing[0]}, which is not in the wheel")
        for info in self.zip.infolist():
            entry = self._record.get(info.filename)
            if entry is not None and entry.size is not None and entry.size != info.file_size:
                raise InputWheelError(
                    f"{self.path}: RECORD does not match the wheel: {info.filename} is {info.file_size} bytes, "
                    f"RECORD says {entry.size}"
                )

    def _algorithm(self, name: str) -> str:
        """The hash RECORD uses for `name` (sha256 for a row without one: nothing to compare)."""
        entry = self._record.get(name)
        algorithm = entry.hash_.name if entry is not None and entry.hash_ is not None else "sha256"
        if algorithm not in hashlib.algorithms_available:
            raise InputWheelError(f"{self.path}: RECORD uses the unknown hash {algorithm} for {name}")
        return algorithm

    def _verified(self, name: str, value: str) -> None:
        """Content hashes are checked for every entry sharewheel unpacks or reads, as it streams
        them (installer's copy-with-hashing), and for entries copied unchanged on a thread of
        their own (see Unchanged)."""
        entry = self._record.get(name)
        if entry is not None and entry.hash_ is not None and value != entry.hash_.value:
            raise InputWheelError(f"{self.path}: RECORD does not match the wheel: the hash of {name} differs")

    def read(self, member: str) -> bytes:
        from installer.utils import copyfileobj_with_hashing

        try:
            data = self.zip.read(member)
            value, _ = copyfileobj_with_hashing(io.BytesIO(data), io.BytesIO(), self._algorithm(member))
            self._verified(member, value)
            return data
        except KeyError:
            raise InputWheelError(f"{self.path}: no {member} in the wheel") from None
        except _ZIP_ERRORS as e:
            raise InputWheelError(f"{self.path}: entry {member} is corrupt ({e})") from None

    def read_text(self, member: str) -> str:
        try:
            return self.read(member).decode("utf-8")
        except UnicodeDecodeError:
            raise InputWheelError(f"{self.path}: {member} is not UTF-8 text") from None

    @property
    def platforms(self) -> list[str]:
        return self.name.platforms

    def extract(self, dest: Path, wanted: Callable[[zipfile.ZipInfo], bool] | None = None,
                progress: Callable[[int], None] | None = None) -> Unchanged:
        """Unpack into `dest` the entries `wanted` selects (default all), keeping executable bits;
        the byte budget is enforced while writing. Returns the others, for write_wheel to copy.
        `progress` is told each entry's compressed size as it is done with it.

        Large entries are inflated on as many threads as there are cores (zlib, hashing and
        writing release the GIL): a wheel that is mostly shared libraries is mostly inflating."""
        budget = _Budget(self.path, max_unpacked_size())
        left: dict[str, zipfile.ZipInfo] = {}
        chosen: list[tuple[zipfile.ZipInfo, Path]] = []
        for info in self.zip.infolist():
            if info.is_dir():
                continue
            if wanted is not None and not wanted(info):
                left[info.filename] = info
                if progress is not None:
                    progress(info.compress_size)
                continue
            chosen.append((info, dest.joinpath(*PurePosixPath(info.filename).parts)))
        for directory in sorted({target.parent for _, target in chosen}):
            directory.mkdir(parents=True, exist_ok=True)
        extracted: dict[str, tuple[zipfile.ZipInfo, tuple[int, ...]]] = {}

        def one(info: zipfile.ZipInfo, target: Path, zf: zipfile.ZipFile) -> None:
            extracted[info.filename] = (info, self._extract_entry(zf, info, target, budget))
            if progress is not None:
                progress(info.compress_size)

        big = sorted((c for c in chosen if c[0].file_size >= _PARALLEL_MIN), key=lambda c: -c[0].file_size)
        workers = min(len(big), os.cpu_count() or 1)
        if workers > 1:
            with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="sharewheel-unpack") as pool:
                handles = threading.local()

                def threaded(info: zipfile.ZipInfo, target: Path) -> None:
                    if not hasattr(handles, "zip"):  # one file handle per thread
                        handles.zip = zipfile.ZipFile(self.path)
                        opened.append(handles.zip)
                    one(info, target, handles.zip)

                opened: list[zipfile.ZipFile] = []
                try:
                    for future in [pool.submit(threaded, info, target) for info, target in big]:
                        future.result()
                finally:
                    for handle in opened:
                        handle.close()
            done = {info.filename for info, _ in big}
            chosen = [c for c in chosen if c[0].filename not in done]
        for info, target in chosen:
            one(info, target, self.zip)
        return Unchanged(self.zip, left, self._rows or self._record_rows(), extracted)

    def _extract_entry(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: _Budget) -> tuple[int, ...]:
        """Inflate one entry to `target`, checking its RECORD hash as it streams; its stamp."""
        from installer.utils import copyfileobj_with_hashing

        try:
            with zf.open(info) as src, open(target, "wb") as out:
                value, _ = copyfileobj_with_hashing(src, budget.writer(out), self._algorithm(info.filename))
        except _ZIP_ERRORS as e:
            raise InputWheelError(f"{self.path}: entry {info.filename} is corrupt ({e})") from None
        self._verified(info.filename, value)
        mode = (info.external_attr >> 16) & 0o777
        target.chmod(0o755 if mode & 0o111 else 0o644)
        return _stamp(target)

    def _record_rows(self) -> dict[str, tuple[str, str]]:
        from installer.records import parse_record_file

        try:
            text = self.zip.read(f"{self.dist_info}/RECORD").decode("utf-8")
        except (KeyError, UnicodeDecodeError, *_ZIP_ERRORS) as e:
            raise InputWheelError(f"{self.path}: unreadable RECORD ({e})") from None
        return {path: (digest, size) for path, digest, size in parse_record_file(text.splitlines())}

    def starts_with(self, info: zipfile.ZipInfo, prefixes: tuple[bytes, ...]) -> bool:
        """Whether the entry's content starts with one of `prefixes` (reads only its first bytes)."""
        try:
            with self.zip.open(info) as f:
                return f.read(8).startswith(prefixes)
        except _ZIP_ERRORS as e:
            raise InputWheelError(f"{self.path}: entry {info.filename} is corrupt ({e})") from None


_PARALLEL_MIN = 1 << 20  # entries this large are inflated on a thread pool


class _Budget:
    """The bytes a wheel may still unpack to (a zip bomb guard), shared by the unpacking threads."""

    def __init__(self, wheel: Path, limit: int) -> None:
        self._wheel, self._left, self._lock = wheel, limit, threading.Lock()

    def spend(self, size: int) -> None:
        with self._lock:
            self._left -= size
            if self._left < 0:
                raise InputWheelError(f"{self._wheel}: unpacks to more than allowed")

    def writer(self, out: Any) -> Any:
        """`out`, spending from the budget before each write."""
        budget = self

        class _Writer:
            def write(self, data: bytes) -> int:
                budget.spend(len(data))
                return out.write(data)

        return _Writer()


def _stamp(path: Path) -> tuple[int, ...]:
    """What changes when a file is written or replaced (ctime also when it is written within
    one tick of the clock, and cannot be set back)."""
    stat_result = path.stat()
    return stat_result.st_size, stat_result.st_ino, stat_result.st_mtime_ns, stat_result.st_ctime_ns


def _record_entry(name: str, data_path: Path) -> Any:
    """installer's RecordEntry for a file of the tree: its sha256 and size."""
    from installer.records import Hash, RecordEntry

    digest, size = digest_of(data_path)
    return RecordEntry(name, Hash("sha256", base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()), size)


def _canonical_order(names: Iterable[str], dist_info: str) -> list[str]:
    """`names` sorted, dist-info last and its RECORD very last."""
    record = f"{dist_info}/RECORD"
    files = sorted(set(names) - {record})
    body = [f for f in files if not f.startswith(f"{dist_info}/")]
    meta = [f for f in files if f.startswith(f"{dist_info}/")]
    return [*body, *meta, record]


def _timestamp() -> tuple[int, int, int, int, int, int]:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    try:
        seconds = int(epoch) if epoch else int(time.time())
    except ValueError:
        raise ConfigError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds") from None
    seconds = max(seconds, 315532800)  # zip cannot store dates before 1980
    return time.gmtime(seconds)[:6]


def write_wheel(
    tree: Path, dist_info: str, out_path: Path, *, unchanged: Unchanged | None = None, compress: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Zip `tree` into `out_path` with a fresh RECORD; the file appears whole or not at all.

    With `unchanged`, its entries (those of the input wheel that were never extracted into
    `tree`, and those extracted but not written to since) are copied still compressed, their
    RECORD rows kept: a repair that edits a few files of a 1 GB wheel neither inflates nor
    deflates the rest, binaries included. `progress` is told the bytes read as they are (file
    sizes, compressed sizes of copied entries): see `bytes_to_write`.
    """
    for path in tree.rglob("*"):
        if path.is_symlink():
            raise InputWheelError(f"{path.relative_to(tree)}: a wheel cannot hold a symbolic link")
    files = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
    copied = {} if unchanged is None else unchanged.to_copy(tree, files, f"{dist_info}/RECORD")
    from installer.records import RecordEntry

    names = _canonical_order(files | set(copied), dist_info)
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    for name in names[:-1]:
        row = unchanged.record.get(name) if name in copied and unchanged else None
        entry = RecordEntry.from_elements(name, *row) if row and row[0] else _record_entry(name, tree / name)
        writer.writerow(entry.to_row())
    writer.writerow(RecordEntry(names[-1], None, None).to_row())
    (tree / names[-1]).write_text(rows.getvalue(), encoding="utf-8")

    date_time = _timestamp()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    check = None if unchanged is None else unchanged.wait_check  # nothing is committed from an input whose RECORD lies
    with replacing(out_path, before_commit=check) as raw, zipfile.ZipFile(raw, "w") as zf:
        for name in names:
            if name in copied:
                assert unchanged is not None
                _copy_raw(unchanged.zip, copied[name], zf, date_time)
                if progress is not None:
                    progress(copied[name].compress_size)
                continue
            source = tree / name
            info = zipfile.ZipInfo(name, date_time)
            executable = source.stat().st_mode & 0o111
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            big = source.stat().st_size >= zipfile.ZIP64_LIMIT
            with open(source, "rb") as src, zf.open(info, "w", force_zip64=big) as dst:
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
    return out_path


def bytes_to_write(tree: Path, unchanged: Unchanged | None, dist_info: str) -> int:
    """What write_wheel will report to its `progress` in all: the total of a progress bar."""
    files = {p.relative_to(tree).as_posix(): p.stat().st_size for p in tree.rglob("*") if p.is_file()}
    copied = {} if unchanged is None else unchanged.to_copy(tree, set(files), f"{dist_info}/RECORD")
    return sum(size for name, size in files.items() if name not in copied) + sum(i.compress_size for i in copied.values())


def copy_wheel(source: Path, out_path: Path, *, check: Callable[[], None] | None = None) -> Path:
    """Copy `source` to `out_path` byte for byte, appearing whole or not at all as write_wheel's
    output does; `check` (the input's RECORD check) must pass before the copy is renamed into place."""
    with replacing(out_path, before_commit=check) as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out, _CHUNK)
    return out_path


@dataclass
class Unchanged:
    """Entries of an input wheel to copy as they are (compressed), with their RECORD rows.

    Their content hashes are checked on a thread of their own, with its own file handle, while
    the repair runs and the output is written; the output is committed only if they match.
    """

    zip: zipfile.ZipFile
    entries: dict[str, zipfile.ZipInfo]  # never extracted
    record: dict[str, tuple[str, str]]
    extracted: dict[str, tuple[zipfile.ZipInfo, tuple[int, ...]]] = field(default_factory=dict)  # name → stamp
    _check: concurrent.futures.Future[None] | None = None

    def to_copy(self, tree: Path, files: set[str], record: str) -> dict[str, zipfile.ZipInfo]:
        """The entries to copy still compressed into a wheel of `tree` (whose files are `files`):
        those never extracted, and those extracted and left as they were (their hash was checked
        as they were extracted). RECORD is always written anew."""
        copy = {n: i for n, i in self.entries.items() if n not in files}
        for name, (info, stamp) in self.extracted.items():
            if name in files and name != record and _stamp(tree / name) == stamp:
                copy[name] = info
        return copy

    def start_check(self) -> None:
        if self.entries and self._check is None:
            pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sharewheel-record")
            self._check = pool.submit(self._verify)
            pool.shutdown(wait=False)

    def wait_check(self) -> None:
        """Raise the mismatch the check found, if any."""
        if self._check is not None:
            self._check.result()

    def _verify(self) -> None:
        from installer.records import InvalidRecordEntry, RecordEntry

        where = str(self.zip.filename)
        with zipfile.ZipFile(where) as zf:
            for name, info in self.entries.items():
                row = self.record.get(name)
                if not row or not row[0]:
                    continue
                try:
                    entry = RecordEntry.from_elements(name, row[0], row[1])
                    with zf.open(info) as src:
                        valid = entry.validate_stream(src)
                except _ZIP_ERRORS as e:
                    raise InputWheelError(f"{where}: entry {name} is corrupt ({e})") from None
                except InvalidRecordEntry as e:
                    raise InputWheelError(f"{where}: RECORD's row for {name} is invalid ({e})") from None
                if not valid:
                    raise InputWheelError(f"{where}: RECORD does not match the wheel: the hash of {name} differs")


def _copy_raw(source: zipfile.ZipFile, info: zipfile.ZipInfo, target: zipfile.ZipFile,
              date_time: tuple[int, int, int, int, int, int]) -> None:
    """Append `info`'s compressed bytes to `target` under a fresh header.

    zipfile has no public way to copy an entry without inflating it; this mirrors what
    ZipFile.write does for one entry (header, data, bookkeeping), with the data read raw.
    """
    fp = source.fp
    assert fp is not None and target.fp is not None
    fp.seek(info.header_offset)
    header = fp.read(30)
    if header[:4] != b"PK\x03\x04":
        raise InputWheelError(f"{source.filename}: entry {info.filename} has a corrupt local header")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    fp.seek(info.header_offset + 30 + name_length + extra_length)
    copy = zipfile.ZipInfo(info.filename, date_time)
    copy.compress_type = info.compress_type
    copy.CRC, copy.compress_size, copy.file_size = info.CRC, info.compress_size, info.file_size
    executable = (info.external_attr >> 16) & 0o111
    copy.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
    copy.flag_bits = info.flag_bits & 0x800  # keep UTF-8 names; sizes are in the header, no descriptor
    zip64 = max(info.file_size, info.compress_size) >= zipfile.ZIP64_LIMIT
    copy.header_offset = target.fp.tell()
    target.fp.write(copy.FileHeader(zip64))
    remaining = info.compress_size
    while remaining:
        chunk = fp.read(min(_CHUNK, remaining))
        if not chunk:
            raise InputWheelError(f"{source.filename}: entry {info.filename} is truncated")
        target.fp.write(chunk)
        remaining -= len(chunk)
    target.filelist.append(copy)
    target.NameToInfo[copy.filename] = copy
    target.start_dir = target.fp.tell()
    target._didModify = True  # type: ignore[attr-defined]
