"""Licences in wheels, as PEP 639 (core metadata 2.4) writes them: a provider's own, and those
of the libraries repair vendors.

A provider wheel redistributes a C library, so it must carry that library's licence: pack
takes the files given with --license-file or, without them, those the prefix installs where
build systems put them (and says so). A vendored copy is redistributed too: repair looks its
source file up in the host's package database (dpkg, rpm, apk), which knows the package's
copyright or licence files, and copies them in; what it cannot find it names in a warning,
since only the maintainer can supply it (an LGPL library must not ship without its terms).
Licence files go to ``<dist-info>/licenses/<path>``, each named by a ``License-File`` header.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression
from packaging.version import InvalidVersion, Version

from sharewheel.errors import ConfigError
from sharewheel.metadata import add_licenses
from sharewheel.wheelfile import CONTROL_CHARACTERS

log = logging.getLogger("licenses")

#: Where PEP 639 puts licence files, inside the dist-info directory.
LICENSES_DIR = "licenses"
#: A licence text is a few KiB; anything above this is not one (or not one to copy blindly).
MAX_LICENSE_BYTES = 1 << 20
#: The file names that hold licence terms at the top of a prefix or in share/doc/<name>/.
_LICENSE_NAMES = ("copying*", "licen[cs]e*", "notice*", "copyright*")
#: How long one package database query may take (a cold rpm database can be slow).
_QUERY_TIMEOUT = 30


@dataclass(frozen=True)
class LicenseFile:
    """A licence file to copy into a wheel: `source` on disk, stored as `path` (the value of its
    License-File header: relative to ``<dist-info>/licenses/``, '/'-separated)."""

    source: Path
    path: str


def expression(text: str, flag: str = "--license") -> str:
    """`text` as the canonical SPDX expression License-Expression holds; a wrong one is refused,
    never guessed at (the expression is a legal statement, not a hint)."""
    try:
        return str(canonicalize_license_expression(text))
    except InvalidLicenseExpression as e:
        raise ConfigError(f"{flag} {text!r}: not a valid SPDX license expression ({e})") from None


def prefix_license_files(prefix: Path, given: Sequence[Path]) -> tuple[LicenseFile, ...]:
    """The licence files of a packed prefix: those `given` (relative to `prefix`, or absolute), or
    else those the prefix installs, said so on stderr with how to choose others."""
    if given:
        files = [_given_file(prefix, path) for path in given]
        stored: dict[str, Path] = {}
        for file in files:
            if file.path in stored and stored[file.path] != file.source:
                raise ConfigError(f"--license-file {stored[file.path]} and {file.source}: both would be stored as "
                                  f"{LICENSES_DIR}/{file.path}; copy one into PREFIX under a path of its own")
            stored[file.path] = file.source
        return tuple(dict.fromkeys(files))
    found = tuple(LicenseFile(path, path.relative_to(prefix).as_posix()) for path in _found_in_prefix(prefix))
    for file in found:
        _check_file(file, "licence file found in PREFIX")
    if found:
        log.warning("%s: licence files found in the prefix, written as License-File: %s (--license-file chooses "
                    "others; --license adds their SPDX expression)", prefix, ", ".join(f.path for f in found))
    return found


def _given_file(prefix: Path, path: Path) -> LicenseFile:
    where = Path(os.path.normpath(prefix / path))  # (an absolute `path` replaces the prefix)
    flag = f"--license-file {path}"
    if where.is_dir():
        raise ConfigError(f"{flag}: a directory; give each licence file in it")
    if not where.exists():
        relative = "" if path.is_absolute() else f" (a relative path is taken from PREFIX {prefix})"
        raise ConfigError(f"{flag}: no such file{relative}")
    inside = where.is_relative_to(prefix)
    file = LicenseFile(where, where.relative_to(prefix).as_posix() if inside else where.name)
    _check_file(file, flag)
    return file


def _check_file(file: LicenseFile, what: str) -> None:
    """A regular file of bounded size, whose path License-File can name (packaging's rules)."""
    if not file.source.is_file():
        raise ConfigError(f"{what} {file.source}: not a regular file")
    size = file.source.stat().st_size
    if size > MAX_LICENSE_BYTES:
        raise ConfigError(f"{what} {file.source}: {size} bytes, more than a licence file's "
                          f"{MAX_LICENSE_BYTES} (give the licence files with --license-file)")
    if not _storable(file.path):
        raise ConfigError(f"{what} {file.source}: License-File cannot name {file.path!r} (no '..', '*', '\\' or "
                          "control characters); copy it under another name")


def _storable(path: str) -> bool:
    return not (".." in path or "*" in path or "\\" in path or CONTROL_CHARACTERS.search(path) or path.startswith("/"))


def _found_in_prefix(prefix: Path) -> list[Path]:
    """Where build systems install licences: share/licenses/<name>/ (all of it), share/doc/<name>/'s
    copyright and licence files, and COPYING*, LICENSE*, NOTICE* at the top."""
    found: list[Path] = []
    licenses = prefix / "share" / "licenses"
    if licenses.is_dir():
        found += sorted(p for p in licenses.rglob("*") if p.is_file())
    docs = prefix / "share" / "doc"
    for directory in sorted(docs.iterdir()) if docs.is_dir() else ():
        if directory.is_dir():
            found += sorted(p for p in directory.iterdir() if p.is_file() and _is_license_name(p.name))
    found += sorted(p for p in prefix.iterdir() if p.is_file() and _is_license_name(p.name))
    return found


def _is_license_name(name: str) -> bool:
    return any(fnmatch.fnmatch(name.lower(), pattern) for pattern in _LICENSE_NAMES)


def write_licenses(dist_info: Path, files: Iterable[LicenseFile], license_expression: str | None = None) -> None:
    """Copy `files` into `dist_info`/licenses/ and name them (and `license_expression`) in its METADATA."""
    paths = copy_into(dist_info, files)
    if paths or license_expression:
        metadata = dist_info / "METADATA"
        text = metadata.read_text(encoding="utf-8")
        _carry_older_license_files(dist_info, text)
        metadata.write_text(add_licenses(text, paths, license_expression), encoding="utf-8")


def _carry_older_license_files(dist_info: Path, text: str) -> None:
    """Before core metadata 2.4, setuptools named files at the top of the dist-info in License-File
    (``<dist-info>/LICENSE``); once Metadata-Version says 2.4 they are looked for under licenses/
    (PyPI refuses an upload without them), so a copy goes there."""
    head = re.split(r"\r?\n\r?\n", text, maxsplit=1)[0]
    version = re.search(r"^Metadata-Version:[ \t]*(\S+)", head, re.MULTILINE | re.IGNORECASE)
    try:
        if version is not None and Version(version.group(1)) >= Version("2.4"):
            return
    except InvalidVersion:
        pass
    for value in re.findall(r"^License-File:[ \t]*(.*?)[ \t]*$", head, re.MULTILINE | re.IGNORECASE):
        target, older = dist_info / LICENSES_DIR / value, dist_info / value
        if value and _storable(value) and not target.exists() and older.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(older, target)


def copy_into(dist_info: Path, files: Iterable[LicenseFile]) -> list[str]:
    """Copy `files` under `dist_info`/licenses/ and return their License-File values: one whose
    path holds another text already goes to `<first part>-2/...` (and so on), never over it."""
    paths = []
    for file in files:
        path = file.path
        for number in range(2, 1000):
            target = dist_info / LICENSES_DIR / path
            if not target.exists() or target.read_bytes() == file.source.read_bytes():
                break
            first, *rest = PurePosixPath(file.path).parts
            path = PurePosixPath(f"{first}-{number}", *rest).as_posix()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file.source, target)
        paths.append(path)
    return list(dict.fromkeys(paths))


# --- the licences of vendored copies ---------------------------------------------------------


@dataclass(frozen=True)
class VendoredLicenses:
    """What repair found for the libraries it vendored."""

    files: tuple[LicenseFile, ...]  # to copy into the wheel
    found: dict[str, str]  # vendored path → where its licence came from (a package, a directory)
    missing: tuple[str, ...]  # vendored paths whose licence was not found


def vendored_licenses(sources: Mapping[str, str]) -> VendoredLicenses:
    """The licence files of each vendored copy (`sources`: vendored path → the file copied), from
    the host's package database, or else from a prefix beside the file (share/licenses/<name>/)."""
    files: dict[str, LicenseFile] = {}
    found: dict[str, str] = {}
    missing = []
    # one dpkg query for every copy (a dpkg-query run costs about 0.1 s; a fresh repair vendors many)
    owners = _dpkg_owners([c for source in sources.values() for c in _candidates(source)])
    for vendored, source in sorted(sources.items()):
        owner = package_licenses(source, owners) or _beside(Path(source))
        if owner is None:
            missing.append(vendored)
            continue
        label, paths = owner
        kept = [(p, stored) for p, stored in paths if p.stat().st_size <= MAX_LICENSE_BYTES and _storable(stored)]
        if not kept:
            missing.append(vendored)
            continue
        found[vendored] = label
        for path, stored in kept:
            files.setdefault(stored, LicenseFile(path, stored))
    return VendoredLicenses(tuple(files.values()), found, tuple(missing))


def package_licenses(source: str, dpkg_owners: Mapping[str, list[str]] | None = None,
                     ) -> tuple[str, list[tuple[Path, str]]] | None:
    """(package, [(licence file, stored path)]) of the package that installed `source`, from
    whichever package database the host has; None where none knows it or it lists no licence.
    `dpkg_owners`: dpkg's answer for many files at once (_dpkg_owners), asked here otherwise."""
    candidates = _candidates(source)
    owners = _dpkg_owners(candidates) if dpkg_owners is None else dpkg_owners
    for owner in (_dpkg(candidates, owners), _rpm(candidates), _apk(candidates)):
        if owner is not None:
            return owner
    return None


def _candidates(source: str) -> list[str]:
    """The names a package database may know `source` by: as given and resolved, each with and
    without /usr (merged-/usr systems install /usr/lib files that dpkg lists under /lib)."""
    names = []
    for path in dict.fromkeys((os.path.abspath(source), os.path.realpath(source))):
        names.append(path)
        parts = PurePosixPath(path).parts
        if parts[1:2] == ("usr",) and parts[2:3] and parts[2].startswith(("lib", "bin", "sbin")):
            names.append(PurePosixPath("/", *parts[2:]).as_posix())
        elif parts[1:2] and parts[1].startswith(("lib", "bin", "sbin")):
            names.append(PurePosixPath("/usr", *parts[1:]).as_posix())
    return list(dict.fromkeys(names))


def _query(*command: str) -> str | None:
    """A package tool's output; None where the tool is missing, fails or hangs (not an error:
    the licence is then reported as not found)."""
    tool = shutil.which(command[0])
    if tool is None:
        return None
    try:
        result = subprocess.run([tool, *command[1:]], check=False, capture_output=True, text=True,
                                timeout=_QUERY_TIMEOUT, stdin=subprocess.DEVNULL, errors="replace")
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout  # (dpkg-query -S exits 1 when any one path is unknown: the rest are printed)


def _dpkg_owners(paths: list[str]) -> dict[str, list[str]]:
    """dpkg: the packages `dpkg-query -S` names for each of `paths` ('libzstd1:amd64: /usr/lib/...');
    empty without dpkg."""
    owners: dict[str, list[str]] = {}
    if not paths:
        return owners
    for line in (_query("dpkg-query", "-S", *dict.fromkeys(paths)) or "").splitlines():
        packages, _, path = line.partition(": ")
        if not line.startswith("diversion "):
            owners.setdefault(path, []).extend(p.strip().split(":")[0] for p in packages.split(","))
    return owners


def _dpkg(candidates: list[str], owners: Mapping[str, list[str]]) -> tuple[str, list[tuple[Path, str]]] | None:
    """The dpkg package of one of `candidates`, with its /usr/share/doc/<package>/copyright, which
    Debian policy requires (and slim images keep)."""
    for candidate in candidates:
        for package in owners.get(candidate, ()):
            copyright_file = Path("/usr/share/doc", package, "copyright")
            if copyright_file.is_file():
                return f"{package} (dpkg)", [(copyright_file, f"{package}/copyright")]
    return None


def _rpm(candidates: list[str]) -> tuple[str, list[tuple[Path, str]]] | None:
    """rpm: `rpm -qf` names the package, `rpm -qL` its %license files."""
    for candidate in candidates:
        output = _query("rpm", "-q", "--qf", "%{NAME}\\n", "-f", candidate) or ""
        if "not owned" in output or not output.split():  # ('file /x is not owned by any package')
            continue
        package = output.split()[0]
        listed = [Path(p) for p in (_query("rpm", "-qL", package) or "").splitlines() if p.startswith("/")]
        files = [(p, f"{package}/{_under(p, Path('/usr/share/licenses', package))}") for p in listed if p.is_file()]
        return (f"{package} (rpm)", files) if files else None
    return None


def _apk(candidates: list[str]) -> tuple[str, list[tuple[Path, str]]] | None:
    """apk: `apk info --who-owns` names the package; its licences are in /usr/share/licenses/<package>/."""
    for candidate in candidates:
        match = re.search(r" is owned by (\S+)-[^-\s]+-r\d+\s*$", _query("apk", "info", "--who-owns", candidate) or "")
        if match is None:
            continue
        package = match.group(1)
        directory = Path("/usr/share/licenses", package)
        files = [(p, f"{package}/{_under(p, directory)}") for p in sorted(directory.rglob("*")) if p.is_file()]
        return (f"{package} (apk)", files) if files else None
    return None


def _under(path: Path, directory: Path) -> str:
    """`path` relative to `directory` where it is inside, else its name."""
    return path.relative_to(directory).as_posix() if path.is_relative_to(directory) else path.name


def _beside(source: Path) -> tuple[str, list[tuple[Path, str]]] | None:
    """Licence files the prefix a library was copied from installs for it (no package database:
    a prefix built by hand, Homebrew, vcpkg): share/licenses/<name>/, share/doc/<name>/, share/<name>/copyright."""
    directory = source.parent
    for _ in range(2):  # lib/ or bin/, or a multiarch lib/<triplet>/
        if directory.name in ("lib", "lib64", "lib32", "bin"):
            break
        directory = directory.parent
    else:
        return None
    root = directory.parent
    stem = source.name.split(".")[0]
    for name in dict.fromkeys([stem.removeprefix("lib"), stem, re.sub(r"-[0-9.]+$", "", stem.removeprefix("lib"))]):
        if not name:
            continue
        licenses = root / "share" / "licenses" / name
        files = sorted(p for p in licenses.glob("**/*") if p.is_file())
        files += sorted(p for p in (root / "share" / "doc" / name).glob("*") if p.is_file() and _is_license_name(p.name))
        files += [p for p in [root / "share" / name / "copyright"] if p.is_file()]
        if files:
            return f"{name} ({root})", [(p, f"{name}/{_under(p, licenses)}") for p in files]
    return None


def warn_missing(wheel: str, found: VendoredLicenses | None, sources: Mapping[str, str]) -> None:
    """One warning line for each vendored library whose licence was not found: said by what the
    user runs (repair, --dry-run, show), not by a plan made on the way (repair --set plans first)."""
    for vendored in found.missing if found is not None else ():
        log.warning("%s: vendored %s as %s: its licence was found neither in the host's package database nor "
                    "beside it; add its licence file to the wheel (PEP 639 License-File) before publishing",
                    wheel, sources.get(vendored, "?"), vendored)


def add_vendored_licenses(dist_info: Path, sources: Mapping[str, str]) -> VendoredLicenses:
    """Copy the licences of the copies repair vendored (`sources`) into `dist_info`/licenses/ and
    name them in METADATA; what was not found is returned, for `warn_missing`."""
    result = vendored_licenses(sources)
    write_licenses(dist_info, result.files)
    return result
