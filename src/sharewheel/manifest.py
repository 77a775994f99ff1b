"""`<dist-info>/sharewheel.json`: what a provider offers, and what a consumer was linked to.

One file, two optional halves: ``provides`` (written by ``pack``) and ``links`` (written by
``repair``, and by ``pack`` when a provider links to another provider). Readers check the schema
version and every field, so a broken manifest is one clear error instead of a KeyError later.

A manifest comes from whoever made the wheel, and its fields end up in requirements, file names,
paths and generated code, so each is checked for what it is: names are PEP 508 names, versions
PEP 440 versions, the policy a policy and the series the one it gives, library names plain file
names, paths relative and inside the provider's package, tags platform tags. Who the manifest
speaks for is checked by its readers (:func:`check_owner`): the wheel or installed distribution
it is in.
"""

from __future__ import annotations

import importlib.metadata
import json
import keyword
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sharewheel.abi import AbiPolicy
from sharewheel.config import read_small_file
from sharewheel.errors import SharewheelError
from sharewheel.platforms import system_of

MANIFEST_NAME = "sharewheel.json"
SCHEMA_VERSION = 1
MAX_MANIFEST_SIZE = 16 << 20  # a consumer of thousands of binaries, each with its links, stays far below


@dataclass(frozen=True)
class ProvidedLibrary:
    name: str  # the original name consumers may have been built against (libacme.so.3)
    unique_name: str  # the series-stable name the library carries in the wheel
    path: str  # wheel-relative POSIX path of the file
    sha256: str


@dataclass(frozen=True)
class Provides:
    distribution: str
    version: str
    package: str  # import package whose load() loads the libraries
    abi: str  # policy name or specifier template, see sharewheel.abi
    series: str
    platform: str  # wheel platform tag the libraries were built for
    libraries: tuple[ProvidedLibrary, ...]
    requires: tuple[str, ...] = ()  # distributions of other providers loaded first


@dataclass(frozen=True)
class Link:
    binary: str  # wheel-relative path of the binary that needs the library
    needed: str  # the name it now asks for (the unique name)
    original: str  # the name it asked for before repair
    provider: str
    version: str  # provider version found at repair time
    requirement: str


@dataclass(frozen=True)
class Manifest:
    provides: Provides | None = None
    links: tuple[Link, ...] = ()
    vendored: tuple[str, ...] = field(default=())  # wheel-relative paths of vendored copies

    def dumps(self) -> str:
        data: dict[str, Any] = {"schema": SCHEMA_VERSION, "generator": _generator()}
        data["provides"] = asdict(self.provides) if self.provides else None
        data["links"] = [asdict(link) for link in self.links]
        data["vendored"] = list(self.vendored)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def loads(cls, text: str, where: str, error: type[SharewheelError] = SharewheelError) -> Manifest:
        """The manifest in `text`, every field checked; any fault is one `error` naming `where`."""
        if len(text) > MAX_MANIFEST_SIZE:
            raise error(f"{where}: {MANIFEST_NAME} is larger than {MAX_MANIFEST_SIZE} bytes")
        try:
            data = json.loads(text)
        except RecursionError:
            raise error(f"{where}: {MANIFEST_NAME} is not valid JSON (nested too deeply)") from None
        except ValueError as e:
            raise error(f"{where}: {MANIFEST_NAME} is not valid JSON ({e})") from None
        schema = data.get("schema") if isinstance(data, dict) else None
        if type(schema) is not int or schema != SCHEMA_VERSION:  # (true == 1 in JSON's Python)
            raise error(
                f"{where}: {MANIFEST_NAME} has schema {_shown(schema)}; this sharewheel reads schema {SCHEMA_VERSION}"
            )
        try:
            provides = data.get("provides")
            if provides is not None:
                if not isinstance(provides, dict):
                    raise ValueError(f"provides: expected an object, got {_shown(provides)}")
                provides = dict(provides)
                libs = tuple(ProvidedLibrary(**_strings(lib)) for lib in _list(provides.pop("libraries")))
                requires = _string_list(provides.pop("requires", []))
                provides = Provides(libraries=libs, requires=requires, **_strings(provides))
                _check_provides(provides)
            links = tuple(Link(**_strings(link)) for link in _list(data.get("links", [])))
            for link in links:
                _check_link(link)
            vendored = _string_list(data.get("vendored", []))
            for path in vendored:
                _check_relative_path(path, "vendored path")
        except (TypeError, KeyError, AttributeError, ValueError) as e:
            raise error(f"{where}: malformed {MANIFEST_NAME}: {e}") from None
        return cls(provides, links, vendored)


def check_owner(provides: Provides, distribution: str, version: str, where: str,
                error: type[SharewheelError] = SharewheelError) -> None:
    """A manifest provides for the wheel or installed distribution it is in, and no other: its
    name and version become the consumer's Requires-Dist (`numpy` in an acme_native wheel would
    make consumers require numpy)."""
    if canonicalize_name(provides.distribution) != canonicalize_name(distribution):
        raise error(f"{where}: {MANIFEST_NAME} provides for {_shown(provides.distribution)}, but it is in "
                    f"{distribution}'s distribution")
    try:
        same = Version(provides.version) == Version(version)
    except InvalidVersion:
        same = False
    if not same:
        raise error(f"{where}: {MANIFEST_NAME} says version {_shown(provides.version)}, but {distribution} is version "
                    f"{version!r}")


def read_installed(dist: importlib.metadata.Distribution, where: str,
                   error: type[SharewheelError] = SharewheelError) -> str | None:
    """An installed distribution's manifest text (None: it has none), read as a regular file of
    at most MAX_MANIFEST_SIZE bytes: a FIFO or /dev/zero in a dist-info would block or never end."""
    directory = getattr(dist, "_path", None)  # PathDistribution's dist-info directory
    try:
        if isinstance(directory, Path):
            path = directory / MANIFEST_NAME
            if not path.exists() and not path.is_symlink():
                return None
            return read_small_file(path, MAX_MANIFEST_SIZE).decode("utf-8")
        return dist.read_text(MANIFEST_NAME)  # another kind of distribution (a zip): nothing special there
    except OSError as e:
        raise error(f"{where}: cannot read its {MANIFEST_NAME} ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise error(f"{where}: its {MANIFEST_NAME} is not UTF-8 text") from None


# what each field may hold (checked on read: a field ends up in a requirement, a name or code)
_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)  # PEP 508
_PACKAGE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$")  # no path, no option, no quote or space
_TAG = re.compile(r"^[a-z0-9_]+$")
_SHA256 = re.compile(r"^([0-9a-f]{64})?$")  # empty while pack stages the wheel


def _check_provides(provides: Provides) -> None:
    _check_name(provides.distribution, "distribution")
    version = _check_version(provides.version, "version")
    if not _PACKAGE.match(provides.package) or keyword.iskeyword(provides.package):
        raise ValueError(f"package {_shown(provides.package)} is not a Python package name")
    try:
        policy = AbiPolicy.parse(provides.abi)
    except SharewheelError as e:
        raise ValueError(f"abi: {e}") from None
    if provides.series != policy.series(version):
        raise ValueError(f"series {_shown(provides.series)} is not {policy.series(version)!r}, the series "
                         f"{_shown(provides.abi)} gives {provides.version}")
    tags = provides.platform.split(".")
    if not all(_TAG.match(tag) for tag in tags) or system_of(tags) is None:
        raise ValueError(f"platform {_shown(provides.platform)} is not platform tags of one OS")
    if not provides.libraries:
        raise ValueError("provides no library")
    for lib in provides.libraries:
        _check_library(lib, provides.package)
    for required in provides.requires:
        _check_name(required, "requires")


def _check_library(lib: ProvidedLibrary, package: str) -> None:
    """Names end up in DT_NEEDED / load commands / import tables: only plain file names will do."""
    for name in (lib.name, lib.unique_name):
        _check_file_name(name)
    parts = lib.path.split("/")
    if parts[0] != package or parts[-1] != lib.unique_name or not all(_FILE_NAME.match(p) for p in parts):
        raise ValueError(f"library path {_shown(lib.path)} is not {package}/.../{lib.unique_name}")
    if not _SHA256.match(lib.sha256):
        raise ValueError(f"sha256 {_shown(lib.sha256)} of {lib.path} is not a SHA-256 in hex")


def _check_link(link: Link) -> None:
    _check_relative_path(link.binary, "binary")
    _check_file_name(link.needed)
    if not link.original or not link.original.isprintable():  # a Mach-O install name may be a path
        raise ValueError(f"original name {_shown(link.original)} is not a library name or path")
    _check_name(link.provider, "provider")
    _check_version(link.version, "version")
    try:
        requirement = Requirement(link.requirement)
    except InvalidRequirement:
        raise ValueError(f"requirement {_shown(link.requirement)} is not a requirement (PEP 508)") from None
    if canonicalize_name(requirement.name) != canonicalize_name(link.provider) or requirement.url             or requirement.marker or requirement.extras:
        raise ValueError(f"requirement {_shown(link.requirement)} is not {link.provider} with version specifiers")


def _check_name(name: str, what: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"{what} {_shown(name)} is not a distribution name (PEP 508)")


def _check_version(text: str, what: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise ValueError(f"{what} {_shown(text)} is not a version (PEP 440)") from None


def _check_file_name(name: str) -> None:
    if not _FILE_NAME.match(name):
        raise ValueError(f"library name {_shown(name)} is not a plain file name")


def _check_relative_path(path: str, what: str) -> None:
    """A wheel-relative POSIX path that stays inside the wheel."""
    parts = path.split("/")
    if not path.isprintable() or "\\" in path or ":" in parts[0] or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{what} {_shown(path)} is not a relative path inside the wheel")


def _shown(value: Any) -> str:
    """`value` for an error line, cut short: a field may be megabytes."""
    text = repr(value)
    return text if len(text) <= 100 else f"{text[:97]}..."


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {_shown(value)}")
    return value


def _strings(obj: Any) -> dict[str, str]:
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise ValueError(f"expected an object of strings, got {_shown(obj)}")
    return obj


def _string_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {_shown(value)}")
    return tuple(value)


def _generator() -> str:
    from sharewheel import __version__

    return f"sharewheel {__version__}"
