"""`<dist-info>/sharewheel.json`: what a provider offers, and what a consumer was linked to.

One file, two optional halves: ``provides`` (written by ``pack``) and ``links`` (written by
``repair``, and by ``pack`` when a provider links to another provider). Readers check the schema
version and every field, so a broken manifest is one clear error instead of a KeyError later.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sharewheel.errors import SharewheelError

MANIFEST_NAME = "sharewheel.json"
SCHEMA_VERSION = 1


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
    def loads(cls, text: str, where: str) -> Manifest:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise SharewheelError(f"{where}: {MANIFEST_NAME} is not valid JSON ({e})") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
            schema = data.get("schema") if isinstance(data, dict) else None
            raise SharewheelError(
                f"{where}: {MANIFEST_NAME} has schema {schema!r}; this sharewheel reads schema {SCHEMA_VERSION}"
            )
        try:
            provides = data.get("provides")
            if provides is not None:
                libs = tuple(ProvidedLibrary(**_strings(lib)) for lib in provides.pop("libraries"))
                requires = _string_list(provides.pop("requires", []))
                provides = Provides(libraries=libs, requires=requires, **_strings(provides))
                if not libs:
                    raise ValueError("provides no library")
                if not provides.package.isidentifier():
                    raise ValueError(f"package {provides.package!r} is not a Python package name")
                for lib in libs:
                    _check_library(lib, provides.package)
            links = tuple(Link(**_strings(link)) for link in data.get("links", ()))
            vendored = _string_list(data.get("vendored", []))
        except (TypeError, KeyError, AttributeError, ValueError) as e:
            raise SharewheelError(f"{where}: malformed {MANIFEST_NAME}: {e}") from None
        return cls(provides, links, vendored)


def _strings(obj: Any) -> dict[str, str]:
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise ValueError(f"expected an object of strings, got {obj!r}")
    return obj


def _check_library(lib: ProvidedLibrary, package: str) -> None:
    """Names end up in DT_NEEDED / load commands / import tables: only plain file names will do."""
    for name in (lib.name, lib.unique_name):
        if not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
            raise ValueError(f"library name {name!r} is not a plain file name")
    parts = lib.path.split("/")
    if parts[0] != package or ".." in parts or parts[-1] != lib.unique_name:
        raise ValueError(f"library path {lib.path!r} is not {package}/.../{lib.unique_name}")


def _string_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def _generator() -> str:
    from sharewheel import __version__

    return f"sharewheel {__version__}"
