"""Wheel I/O: read a wheel only after proving it is one, write one whole or not at all.

Reading validates everything a later step would otherwise trip over with a traceback: the
file name, the zip structure, entry names that could escape the extraction directory, the
dist-info directory, WHEEL tags against the file name, and RECORD (names, sizes, hashes, via
pypa/installer, exactly as pip checks it). Every check is linear in the size of the wheel, and
what the wheel controls is bounded before anything is parsed or read into memory (the limits
below): a small hostile wheel cannot cost minutes or gigabytes. Writing regenerates RECORD,
orders entries canonically (dist-info last, RECORD last), stamps every entry with one time
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
import posixpath
import re
import shutil
import stat
import struct
import threading
import time
import unicodedata
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
#: Only stored and deflated entries (what every wheel builder writes): zipfile inflates a bzip2 or
#: LZMA entry a whole read at a time, unbounded (4 KB of bzip2 can be 3 GB), before any budget applies.
_COMPRESSIONS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_COMPRESSION_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA"}

# What a wheel may make sharewheel do, bounded before it is done (README, "Errors and limits").
# The largest wheels on PyPI hold some 20,000 entries with names under 300 bytes, 20 deep.
MAX_ENTRIES = 200_000
#: zipfile reads the central directory whole, and makes an object of every entry in it.
MAX_CENTRAL_DIRECTORY = 64 * 1024**2
#: zipfile's extra-field parser copies the rest of the field for each record in it (quadratic);
#: real entries carry two or three (zip64 sizes, timestamps, Unicode path).
MAX_EXTRA_RECORDS = 16
#: An entry name, in bytes as stored (or characters once decoded), and each of its parts: a
#: longer part cannot be a file name on Linux, macOS or Windows (NAME_MAX).
MAX_NAME_LENGTH = 1024
MAX_NAME_PART = 255
#: Levels (directories and the file) an entry name may nest: the tree is walked recursively.
MAX_DEPTH = 128
#: Tags a file name or WHEEL expands to (`a.b-c.d-e.f` is eight): compressed tag sets multiply.
MAX_TAGS = 1024
#: Files read whole into memory (WHEEL, METADATA, sharewheel.json, .pc files, ...), RECORD apart.
MAX_TEXT_SIZE = 16 * 1024**2
_READ_LIMITS = {"RECORD": 64 * 1024**2, "WHEEL": 1024**2}
# What str.splitlines (installer's reading of RECORD) breaks lines at.
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"

#: Refuse wheels whose entries unpack to more than this many bytes (a zip bomb guard).
#: Override with the SHAREWHEEL_MAX_UNPACKED_SIZE environment variable (bytes).
DEFAULT_MAX_UNPACKED_SIZE = 8 * 1024**3
_CHUNK = 1 << 20


def max_unpacked_size() -> int:
    value = os.environ.get("SHAREWHEEL_MAX_UNPACKED_SIZE")
    if value is None:
        return DEFAULT_MAX_UNPACKED_SIZE
    try:
        limit = int(value)
    except ValueError:
        limit = -1
    if limit < 0:
        raise ConfigError(f"SHAREWHEEL_MAX_UNPACKED_SIZE={shown(value)} is not a number of bytes") from None
    return limit


def shown(text: str, limit: int = 120) -> str:
    """`text` quoted for an error line: control characters escaped, and cut to `limit`
    characters (a 64 KB entry name is not echoed back)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def _short(error: object, limit: int = 300) -> str:
    """An exception's text (zipfile's and installer's quote entry names) for an error line."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else f"{text[:limit]}..."


def name_key(name: str) -> str:
    """What makes two entry names one file once installed: case (macOS and Windows ignore it),
    Unicode normalisation (macOS ignores it: NFC and NFD are one name) and `.` or empty parts."""
    return unicodedata.normalize("NFC", "/".join(_parts(name))).lower()


def _parts(name: str) -> list[str]:
    return [part for part in name.split("/") if part not in ("", ".")]


def _tag_count(tags: str) -> int:
    """How many tags `interpreters-abis-platforms` expands to, without expanding them."""
    parts = tags.split("-")
    if len(parts) != 3:
        return 1
    count = 1
    for part in parts:
        count *= part.count(".") + 1
    return count


@dataclass(frozen=True)
class WheelName:
    """The parts of a wheel file name (PEP 427), parsed by packaging."""

    distribution: str  # as spelled in the file name (normalised with underscores)
    version: str
    build: str
    tags: frozenset[Tag]

    @classmethod
    def parse(cls, filename: str) -> WheelName:
        count = _tag_count("-".join(filename.removesuffix(".whl").split("-")[-3:]))
        if count > MAX_TAGS:
            raise InputWheelError(f"{shown(filename)}: its tags expand to {count}, more than the {MAX_TAGS} sharewheel reads")
        try:
            _, version, build, tags = parse_wheel_filename(filename)
        except InvalidWheelFilename as e:
            raise InputWheelError(f"{filename}: not a wheel file name ({_short(e)})") from None
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


#: What would end a line of a wheel's text (a name, a METADATA header) or hide in one.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _unsafe_name_reason(name: str) -> str | None:
    if not name:
        return "has an empty name"
    if len(name) > MAX_NAME_LENGTH:
        return f"has a name of {len(name)} characters, more than the {MAX_NAME_LENGTH} sharewheel reads"
    if CONTROL_CHARACTERS.search(name):
        return "contains a control character"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "is an absolute path"
    if len(name) > 1 and name[1] == ":":
        return "starts with a drive letter"
    parts = name.split("/")
    if ".." in parts:
        return "climbs out with '..'"
    kept = _parts(name)
    if not kept:
        return "names no file"
    if len(kept) > MAX_DEPTH:
        return f"is {len(kept)} levels deep, more than the {MAX_DEPTH} sharewheel reads"
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_PART for part in kept):
        return f"has a part longer than {MAX_NAME_PART} bytes, which no file system takes"
    return None


def _check_directory(path: Path) -> None:
    """Bound the zip's central directory before zipfile parses it: its size, its number of
    entries, each name's length and each extra field's number of records. zipfile's own
    end-of-directory reader finds it, so both see the same directory; anything malformed is
    left for zipfile to report."""
    with open(path, "rb") as fp:
        try:
            end = zipfile._EndRecData(fp)  # type: ignore[attr-defined]
        except OSError:
            return
        if not end:
            return
        size, offset = end[zipfile._ECD_SIZE], end[zipfile._ECD_OFFSET]  # type: ignore[attr-defined]
        if size > MAX_CENTRAL_DIRECTORY:
            raise InputWheelError(
                f"{path}: its zip directory is {size} bytes, more than the {MAX_CENTRAL_DIRECTORY} sharewheel reads"
            )
        concat = end[zipfile._ECD_LOCATION] - size - offset  # type: ignore[attr-defined]
        if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # type: ignore[attr-defined]
            concat -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator  # type: ignore[attr-defined]
        if offset + concat < 0:
            return
        fp.seek(offset + concat)
        data = fp.read(size)
    position = count = 0
    while position + 46 <= len(data) and data[position:position + 4] == b"PK\x01\x02":
        count += 1
        if count > MAX_ENTRIES:
            raise InputWheelError(f"{path}: has more than {MAX_ENTRIES} entries, more than sharewheel reads")
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, position + 28)
        start = position + 46
        if name_length > MAX_NAME_LENGTH:
            name = data[start:start + name_length].decode("utf-8", "replace")
            raise InputWheelError(f"{path}: entry {shown(name)} has a name of {name_length} bytes, "
                                  f"more than the {MAX_NAME_LENGTH} sharewheel reads")
        extra, at, records = data[start + name_length:start + name_length + extra_length], 0, 0
        while at + 4 <= len(extra):
            records += 1
            if records > MAX_EXTRA_RECORDS:
                name = data[start:start + name_length].decode("utf-8", "replace")
                raise InputWheelError(f"{path}: entry {shown(name)} has more than {MAX_EXTRA_RECORDS} extra fields")
            at += 4 + struct.unpack_from("<H", extra, at + 2)[0]
        position = start + name_length + extra_length + comment_length


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
        self._record_cache: str | None = None

    @classmethod
    @contextmanager
    def open(cls, path: Path, *, check_record: bool = True) -> Iterator[InputWheel]:
        if not path.is_file():
            raise InputWheelError(f"{path}: no such file")
        name = WheelName.parse(path.name)
        try:
            _check_directory(path)
            zf = zipfile.ZipFile(path)
        except (*_ZIP_ERRORS, UnicodeDecodeError, struct.error) as e:  # also undecodable names, unknown zip versions
            raise InputWheelError(f"{path}: not a zip file sharewheel can read ({_short(e)})") from None
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
        """Every entry name safe to unpack and one file once installed anywhere (no two equal but
        for case, Unicode normalisation or `.` parts; no file that is also a directory), the
        declared sizes within the budget. Linear: directories are a tree of parts, not a set of
        every prefix of every name."""
        seen: dict[str, str] = {}
        nodes: dict[tuple[int, str], int] = {}  # (parent node, part) → node; 0 is the root
        files: set[int] = set()
        directories: set[int] = set()
        total = 0
        limit = max_unpacked_size()
        try:
            infos = zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise InputWheelError(f"{path}: unreadable zip directory ({_short(e)})") from None
        if len(infos) > MAX_ENTRIES:
            raise InputWheelError(f"{path}: has {len(infos)} entries, more than the {MAX_ENTRIES} sharewheel reads")
        for info in infos:
            entry = shown(info.orig_filename)
            reason = _unsafe_name_reason(info.orig_filename)
            if reason:
                raise InputWheelError(f"{path}: entry {entry} {reason}")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise InputWheelError(f"{path}: entry {entry} is a symbolic link")
            if info.flag_bits & 0x1:
                raise InputWheelError(f"{path}: entry {entry} is encrypted")
            if info.compress_type not in _COMPRESSIONS:
                method = _COMPRESSION_NAMES.get(info.compress_type, f"unknown compression method {info.compress_type}")
                raise InputWheelError(f"{path}: entry {entry} uses {method}; sharewheel reads stored and deflated entries")
            key = name_key(info.filename)
            if key in seen:
                raise InputWheelError(f"{path}: entry {entry} {_same_file(info.filename, seen[key])}")
            seen[key] = info.filename
            parts = key.split("/")
            node = 0
            for depth, part in enumerate(parts, 1):
                node = nodes.setdefault((node, part), len(nodes) + 1)
                if depth < len(parts) or info.is_dir():
                    conflict = node in files
                    directories.add(node)
                else:
                    conflict = node in directories
                    files.add(node)
                if conflict:
                    raise InputWheelError(f"{path}: entry {entry} and another entry are a file and a directory of one name")
            total += info.file_size
            if total > limit:
                raise InputWheelError(
                    f"{path}: unpacks to more than {limit} bytes (raise SHAREWHEEL_MAX_UNPACKED_SIZE to allow it)"
                )
        top_dist_infos = {
            n.split("/")[0] for n in seen.values() if n.split("/")[0].endswith(".dist-info") and "/" in n
        }
        if len(top_dist_infos) != 1:
            found = _short(", ".join(sorted(top_dist_infos)) or "none")
            raise InputWheelError(f"{path}: not a wheel: expected one .dist-info directory, found {found}")
        dist_info = top_dist_infos.pop()
        dist, _, version = dist_info[: -len(".dist-info")].partition("-")
        if canonicalize_name(dist) != canonicalize_name(name.distribution) or version != name.version:
            raise InputWheelError(f"{path}: {shown(dist_info)} does not match the file name")
        for info in infos:  # what is read whole into memory (declared sizes: zipfile never yields more)
            member = info.filename
            if member.startswith(f"{dist_info}/") or posixpath.basename(member).startswith(".load-order-"):
                _check_readable(path, info)
        return dist_info

    def _check_dist_info(self) -> None:
        wheel_text = self.read_text(f"{self.dist_info}/WHEEL")
        headers = email.parser.Parser().parsestr(wheel_text)
        count = sum(_tag_count(line) for line in wheel_tags(wheel_text))
        if count > MAX_TAGS:
            raise InputWheelError(f"{self.path}: {self.dist_info}/WHEEL's tags expand to {count}, "
                                  f"more than the {MAX_TAGS} sharewheel reads")
        wheel_version = (headers.get("Wheel-Version") or "").strip()
        major = wheel_version.split(".")[0]
        if not wheel_version:
            raise InputWheelError(f"{self.path}: {self.dist_info}/WHEEL has no Wheel-Version")
        if not major.isdigit() or not all(p.isdigit() for p in wheel_version.split(".")) or int(major) != 1:
            raise InputWheelError(f"{self.path}: {self.dist_info}/WHEEL has Wheel-Version {shown(wheel_version)}; "
                                  "only 1.x wheels can be read")
        declared: set[Tag] = set()
        for line in wheel_tags(wheel_text):
            try:
                declared |= parse_tag(line)
            except InvalidTag:
                raise InputWheelError(f"{self.path}: {self.dist_info}/WHEEL has a malformed Tag line {shown(line)}") from None
        if declared != set(self.name.tags):
            in_file = _short(", ".join(sorted(str(t) for t in declared)) or "none")
            raise InputWheelError(
                f"{self.path}: the file name's tags disagree with the WHEEL file's Tag lines ({in_file})"
            )
        # as packaging's parse_email reads Name and Version (one header each, else none), without
        # its loop over every header name that scans every header (quadratic in their number)
        metadata = email.parser.Parser().parsestr(self.read_text(f"{self.dist_info}/METADATA"))
        names, versions = metadata.get_all("Name") or [], metadata.get_all("Version") or []
        meta_name = names[0] if len(names) == 1 else None
        self.project_name = (meta_name or "").strip() or self.name.distribution  # as its author spells it
        if not meta_name or canonicalize_name(meta_name) != canonicalize_name(self.name.distribution):
            raise InputWheelError(f"{self.path}: METADATA Name {shown(meta_name) if meta_name else None} "
                                  "does not match the file name")
        meta_version = (versions[0] if len(versions) == 1 else "").strip()
        try:
            same = Version(meta_version) == Version(self.name.version)
        except InvalidVersion:
            same = False
        if not same:
            raise InputWheelError(f"{self.path}: METADATA Version {shown(meta_version)} does not match the file name")

    def check_record(self) -> None:
        """RECORD's rows, names and sizes (hashes are checked as entries are read)."""
        self._check_record()

    def _check_record(self) -> None:
        from installer.exceptions import InstallerError
        from installer.records import InvalidRecordEntry, RecordEntry
        from installer.sources import WheelFile

        if f"{self.dist_info}/RECORD" in self.zip.NameToInfo:
            self._record_text()  # its lines counted before installer parses them
        try:
            WheelFile(self.zip).validate_record(validate_contents=False)
        except (ValueError, InstallerError, InvalidRecordEntry) as e:  # one error listing every issue
            issues = getattr(e, "issues", None) or [str(e)]
            more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
            issue = _short(str(issues[0]).removeprefix(f"In {self.zip.filename}, "))
            raise InputWheelError(f"{self.path}: RECORD does not match the wheel: {issue}{more}") from None
        self._rows = self._record_rows()
        self._record = {name: RecordEntry.from_elements(name, digest, size) for name, (digest, size) in self._rows.items()}
        missing = sorted(set(self._record) - set(self.zip.namelist()))
        if missing:
            raise InputWheelError(f"{self.path}: RECORD lists {shown(missing[0])}, which is not in the wheel")
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
        if algorithm not in hashlib.algorithms_available or algorithm.startswith("shake_"):  # (no fixed length)
            raise InputWheelError(f"{self.path}: RECORD uses the unknown hash {shown(algorithm)} for {name}")
        return algorithm

    def _verified(self, name: str, value: str) -> None:
        """Content hashes are checked for every entry sharewheel unpacks or reads, as it streams
        them (installer's copy-with-hashing), and for entries copied unchanged on a thread of
        their own (see Unchanged)."""
        entry = self._record.get(name)
        if entry is not None and entry.hash_ is not None and value != entry.hash_.value:
            raise InputWheelError(f"{self.path}: RECORD does not match the wheel: the hash of {name} differs")

    def read(self, member: str) -> bytes:
        """An entry's content, hash checked; only entries small enough to hold in memory."""
        from installer.utils import copyfileobj_with_hashing

        try:
            info = self.zip.getinfo(member)
            _check_readable(self.path, info)
            with self.zip.open(info) as f:  # read(size) inflates at most that much, whatever the entry holds
                data = f.read(info.file_size)
            value, _ = copyfileobj_with_hashing(io.BytesIO(data), io.BytesIO(), self._algorithm(member))
            self._verified(member, value)
            return data
        except KeyError:
            raise InputWheelError(f"{self.path}: no {member} in the wheel") from None
        except _ZIP_ERRORS as e:
            raise InputWheelError(f"{self.path}: entry {member} is corrupt ({_short(e)})") from None

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
            raise InputWheelError(f"{self.path}: entry {info.filename} is corrupt ({_short(e)})") from None
        self._verified(info.filename, value)
        mode = (info.external_attr >> 16) & 0o777
        target.chmod(0o755 if mode & 0o111 else 0o644)
        return _stamp(target)

    def _record_text(self) -> str:
        """RECORD, read once; no more lines than the wheel has entries (and a line break each):
        installer splits it into lines and maps every row before it checks one."""
        if self._record_cache is None:
            member = f"{self.dist_info}/RECORD"
            try:
                info = self.zip.getinfo(member)
                _check_readable(self.path, info)
                with self.zip.open(info) as f:
                    text = f.read(info.file_size).decode("utf-8")
            except (KeyError, UnicodeDecodeError, *_ZIP_ERRORS) as e:
                raise InputWheelError(f"{self.path}: unreadable RECORD ({_short(e)})") from None
            lines = sum(text.count(c) for c in _LINE_BREAKS)
            if lines > 2 * len(self.zip.filelist) + 2:
                raise InputWheelError(
                    f"{self.path}: RECORD has {lines} line breaks for {len(self.zip.filelist)} entries"
                )
            self._record_cache = text
        return self._record_cache

    def _record_rows(self) -> dict[str, tuple[str, str]]:
        from installer.records import InvalidRecordEntry, parse_record_file

        try:
            return {path: (digest, size) for path, digest, size in parse_record_file(self._record_text().splitlines())}
        except InvalidRecordEntry as e:
            raise InputWheelError(f"{self.path}: unreadable RECORD ({_short(e)})") from None

    def starts_with(self, info: zipfile.ZipInfo, prefixes: tuple[bytes, ...], size: int = 8) -> bool:
        """Whether the entry's content starts with one of `prefixes` (reads only its first `size` bytes)."""
        try:
            with self.zip.open(info) as f:
                return f.read(size).startswith(prefixes)
        except _ZIP_ERRORS as e:
            raise InputWheelError(f"{self.path}: entry {info.filename} is corrupt ({_short(e)})") from None


def _check_readable(path: Path, info: zipfile.ZipInfo) -> None:
    """An entry sharewheel reads whole into memory must be small enough to."""
    limit = _READ_LIMITS.get(posixpath.basename(info.filename), MAX_TEXT_SIZE)
    if info.file_size > limit:
        raise InputWheelError(f"{path}: {shown(info.filename)} is {info.file_size} bytes, more than the {limit} "
                              "sharewheel reads into memory")


def _same_file(name: str, other: str) -> str:
    """Why `name` and `other`, of one name_key, are one file."""
    if name.rstrip("/") == other.rstrip("/"):
        return "is duplicated"
    plain, plain_other = "/".join(_parts(name)), "/".join(_parts(other))
    if plain == plain_other:
        return f"is {shown(other)} again, but for '.' or empty parts"
    if plain.lower() == plain_other.lower():
        return f"differs only in case from {shown(other)}"
    if unicodedata.normalize("NFC", plain) == unicodedata.normalize("NFC", plain_other):
        return f"differs only in Unicode normalisation (NFC/NFD) from {shown(other)}"
    return f"differs only in case and Unicode normalisation from {shown(other)}"


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


_ZIP_FIRST, _ZIP_LAST = 315532800, 4354819199  # 1980-01-01 and 2107-12-31 23:59:59, the dates a zip can store


def zip_timestamp() -> tuple[int, int, int, int, int, int]:
    """The time every entry written is stamped with: SOURCE_DATE_EPOCH (dates before 1980
    become 1980, as zip has none earlier), else now."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    try:
        seconds = int(epoch) if epoch else int(time.time())
    except ValueError:
        raise ConfigError(f"SOURCE_DATE_EPOCH={shown(epoch or '')} is not a number of seconds") from None
    if seconds > _ZIP_LAST:
        raise ConfigError(f"SOURCE_DATE_EPOCH={shown(epoch or '')} is after 2107-12-31, the last date a zip can store")
    return time.gmtime(max(seconds, _ZIP_FIRST))[:6]



def write_wheel(
    tree: Path, dist_info: str, out_path: Path, *, unchanged: Unchanged | None = None, compress: bool = True,
    compress_level: int | None = None, progress: Callable[[int], None] | None = None,
) -> Path:
    """Zip `tree` into `out_path` with a fresh RECORD; the file appears whole or not at all.

    With `unchanged`, its entries (those of the input wheel that were never extracted into
    `tree`, and those extracted but not written to since) are copied still compressed, their
    RECORD rows kept: a repair that edits a few files of a 1 GB wheel neither inflates nor
    deflates the rest, binaries included. `progress` is told the bytes read as they are (file
    sizes, compressed sizes of copied entries): see `bytes_to_write`. With `compress_level`
    (auditwheel's -z) every entry is deflated at that level, the copied ones inflated and
    deflated anew: the level is a promise about the whole file, as auditwheel's dir2zip keeps it.
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

    date_time = zip_timestamp()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    check = None if unchanged is None else unchanged.wait_check  # nothing is committed from an input whose RECORD lies
    with replacing(out_path, before_commit=check) as raw, zipfile.ZipFile(raw, "w") as zf:
        for name in names:
            if name in copied:
                assert unchanged is not None
                if compress_level is None:
                    _copy_raw(unchanged.zip, copied[name], zf, date_time)
                else:
                    _recompress(unchanged.zip, copied[name], zf, date_time, compress_level)
                if progress is not None:
                    progress(copied[name].compress_size)
                continue
            source = tree / name
            info = zipfile.ZipInfo(name, date_time)
            executable = source.stat().st_mode & 0o111
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            if compress_level is not None:
                _deflate_at(info, compress_level)
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


def _deflate_at(info: zipfile.ZipInfo, level: int) -> None:
    """Have `info` written deflated at zlib `level` (what ZipFile.writestr's compresslevel sets,
    for entries streamed through ZipFile.open)."""
    info.compress_type = zipfile.ZIP_DEFLATED
    if hasattr(info, "compress_level"):  # Python >= 3.13
        info.compress_level = level
    else:
        info._compresslevel = level  # type: ignore[attr-defined]


def _recompress(source: zipfile.ZipFile, info: zipfile.ZipInfo, target: zipfile.ZipFile,
                date_time: tuple[int, int, int, int, int, int], level: int) -> None:
    """Append `info`'s data to `target` deflated at `level`, streamed (its CRC checked on the way)."""
    copy = zipfile.ZipInfo(info.filename, date_time)
    executable = (info.external_attr >> 16) & 0o111
    copy.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
    _deflate_at(copy, level)

    def read(src: Any) -> bytes:
        try:
            chunk: bytes = src.read(_CHUNK)
            return chunk
        except _ZIP_ERRORS as e:  # (only reading: a write error is the output's, not the input's)
            raise InputWheelError(f"{source.filename}: entry {info.filename} is corrupt ({_short(e)})") from None

    try:
        src = source.open(info)
    except _ZIP_ERRORS as e:
        raise InputWheelError(f"{source.filename}: entry {info.filename} is corrupt ({_short(e)})") from None
    with src, target.open(copy, "w", force_zip64=info.file_size >= zipfile.ZIP64_LIMIT) as dst:
        while chunk := read(src):
            dst.write(chunk)


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
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
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
