"""Plugins: native-lib wheels that carry no sharewheel manifest, described from outside.

PyPI already has wheels made to be shared (scipy-openblas, nvidia-*-cu12, robotpy-native-*),
each with its own layout and way of being loaded. A plugin says, for one family of them:
which distributions it matches, which files are the provided libraries on each OS, how the
library gets loaded at run time, and the ABI policy their Requires-Dist follows. The plugins
sharewheel ships live in the repository's ``plugins/`` (installed as ``sharewheel/plugins``);
third parties add theirs through the ``sharewheel.plugins`` entry point or ``--plugin FILE``.

A plugin is a TOML table (or the same keys as a mapping, from an entry point)::

    name = "scipy-openblas"                  # the plugin's own name, for messages
    distributions = ["scipy-openblas64"]     # fnmatch patterns on normalized names
    abi = "minor"                            # major, minor, exact or a specifier template
    load = "import"                          # import | preload | pkgconfig-initpy
    module = "scipy_openblas64"              # import: what to import (default: top-level dir)
    version-regex = 'OpenBLAS ([0-9.]+)'     # optional: a library copy's version, from its bytes
    [libraries]                              # per OS: wheel paths (fnmatch per path segment)
    linux = ["scipy_openblas64/lib/libscipy_openblas64_.so"]
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from packaging.utils import canonicalize_name

from sharewheel.abi import AbiPolicy
from sharewheel.errors import ProviderError, SharewheelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENTRY_POINT_GROUP = "sharewheel.plugins"
PluginLoad = Literal["import", "preload", "pkgconfig-initpy"]
LOAD_KINDS: tuple[PluginLoad, ...] = ("import", "preload", "pkgconfig-initpy")
OSES = ("linux", "macos", "windows")
_KEYS = {"name", "description", "distributions", "abi", "load", "module", "version-regex", "libraries"}


@dataclass(frozen=True)
class Plugin:
    name: str
    distributions: tuple[str, ...]
    libraries: Mapping[str, tuple[str, ...]]  # OS → wheel-path globs
    abi: str
    load: PluginLoad
    origin: str  # where the plugin was defined, for messages
    module: str | None = None
    version_regex: str | None = None
    description: str = field(default="", compare=False)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], origin: str) -> Plugin:
        """A validated plugin; every mistake is one error naming the plugin and the key."""
        if not isinstance(data, Mapping):
            raise ProviderError(f"plugin {origin}: expected a table of keys, got {type(data).__name__}")
        label = f"plugin {data.get('name')!r} ({origin})" if isinstance(data.get("name"), str) else f"plugin {origin}"
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise ProviderError(f"{label}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
        for key in ("name", "distributions", "abi", "load", "libraries"):
            if key not in data:
                raise ProviderError(f"{label}: missing key {key!r}")

        def strings(key: str, value: Any) -> tuple[str, ...]:
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value \
                    or not all(isinstance(v, str) and v for v in value):
                raise ProviderError(f"{label}: {key} must be a non-empty list of strings")
            return tuple(value)

        for key in ("name", "abi", "load", "module", "version-regex", "description"):
            if key in data and not isinstance(data[key], str):
                raise ProviderError(f"{label}: {key} must be a string")
        if data["load"] not in LOAD_KINDS:
            raise ProviderError(f"{label}: load must be one of {', '.join(LOAD_KINDS)}, not {data['load']!r}")
        try:
            AbiPolicy.parse(data["abi"])
        except SharewheelError as e:
            raise ProviderError(f"{label}: abi: {e}") from None
        module = data.get("module")
        if module is not None and not all(part.isidentifier() for part in module.split(".")):
            raise ProviderError(f"{label}: module {module!r} is not a Python module name")
        if module is not None and data["load"] != "import":
            raise ProviderError(f"{label}: module is only used with load = \"import\"")
        regex = data.get("version-regex")
        if regex is not None:
            try:
                if re.compile(regex.encode()).groups != 1:
                    raise ProviderError(f"{label}: version-regex must have exactly one group (the version)")
            except re.error as e:
                raise ProviderError(f"{label}: version-regex: {e}") from None
        libraries = data["libraries"]
        if not isinstance(libraries, Mapping) or not libraries:
            raise ProviderError(f"{label}: libraries must be a table of OS = [globs]")
        for os_name in libraries:
            if os_name not in OSES:
                raise ProviderError(f"{label}: libraries: unknown OS {os_name!r} (use {', '.join(OSES)})")
        globs = {os_name: strings(f"libraries.{os_name}", value) for os_name, value in libraries.items()}
        for os_name, patterns in globs.items():
            for pattern in patterns:
                if pattern.startswith("/") or ".." in pattern.split("/") or "\\" in pattern:
                    raise ProviderError(f"{label}: libraries.{os_name}: {pattern!r} is not a relative wheel path")
        return cls(
            name=data["name"],
            distributions=tuple(canonicalize_name(d) if "*" not in d else d.lower()
                                for d in strings("distributions", data["distributions"])),
            libraries=globs,
            abi=data["abi"],
            load=data["load"],
            origin=origin,
            module=module,
            version_regex=regex,
            description=data.get("description", ""),
        )

    @classmethod
    def from_file(cls, path: Path) -> Plugin:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ProviderError(f"--plugin {path}: cannot read it ({e.strerror or e})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ProviderError(f"plugin file {path}: invalid TOML ({e})") from None
        return cls.from_mapping(data, str(path))

    def matches(self, distribution: str) -> bool:
        name = canonicalize_name(distribution)
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.distributions)

    def library_paths(self, os_name: str, files: Iterable[str]) -> list[str]:
        """The files of a wheel (wheel-relative POSIX paths) that are its provided libraries."""
        patterns = [p.split("/") for p in self.libraries.get(os_name, ())]
        chosen = []
        for path in files:
            parts = path.split("/")
            if any(len(parts) == len(p) and all(map(fnmatch.fnmatchcase, parts, p)) for p in patterns):
                chosen.append(path)
        return sorted(chosen)

    def could_provide(self, os_name: str, names: Iterable[str]) -> bool:
        """Whether a library file called one of `names` looks like one this plugin's wheels provide."""
        patterns = [p.rsplit("/", 1)[-1] for p in self.libraries.get(os_name, ())]
        # only patterns that name a library: `lib*.so.*` matches any library at all
        specific = [p for p in patterns if re.sub(r"^lib|\.(so|dylib|dll).*$|[*?\[\]]", "", p)]
        return any(fnmatch.fnmatchcase(n, p) for n in names for p in specific)

    @property
    def policy(self) -> AbiPolicy:
        return AbiPolicy.parse(self.abi)

    def read_version(self, path: Path) -> str | None:
        """The library version a copy of it states in its bytes, if the plugin says how to read it."""
        if self.version_regex is None:
            return None
        pattern = re.compile(self.version_regex.encode())
        tail = b""
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                if match := pattern.search(tail + chunk):
                    return match.group(1).decode("ascii", "replace")
                tail = chunk[-256:]
        return None


def builtin_dir() -> Path:
    """The plugins shipped with sharewheel: in the installed package, or the source checkout's."""
    here = Path(__file__).resolve().parent
    installed = here / "plugins"
    return installed if installed.is_dir() else here.parents[1] / "plugins"


class LazyPlugins(Sequence[Plugin]):
    """The plugins :func:`load_plugins` would return. The `--plugin` files are read at once (a
    broken one is an error even if no wheel needed it); entry-point plugins, third-party code,
    are imported only when a plugin is first asked for: most repairs meet no wheel that needs one."""

    def __init__(self, files: Sequence[Path] = ()) -> None:
        self._files = tuple(files)
        self._given = _from_files(self._files)
        self._plugins: list[Plugin] | None = None

    def _loaded(self) -> list[Plugin]:
        if self._plugins is None:
            self._plugins = load_plugins(self._files)
        return self._plugins

    def __getitem__(self, index: Any) -> Any:
        return self._loaded()[index]

    def __len__(self) -> int:
        return len(self._loaded())


_FILES: dict[tuple[tuple[str, int, int], ...], list[Plugin]] = {}
_INSTALLED: list[Plugin] | None = None


def load_plugins(files: Sequence[Path] = ()) -> list[Plugin]:
    """`--plugin` files first, then entry-point plugins, then the shipped ones; each read once per
    process (a call repairing many wheels asks for each wheel).

    An earlier plugin wins for a distribution both match, so a project can override a shipped one.
    """
    global _INSTALLED
    if _INSTALLED is None:
        _INSTALLED = _entry_point_and_shipped_plugins()
    return [*_from_files(files), *_INSTALLED]


def _from_files(files: Sequence[Path]) -> list[Plugin]:
    key = tuple(_stamp(path) for path in files)
    if key not in _FILES:
        _FILES[key] = [Plugin.from_file(path) for path in files]
    return _FILES[key]


def _stamp(path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
        return str(path.absolute()), stat.st_size, stat.st_mtime_ns
    except OSError:
        return str(path.absolute()), -1, -1  # reading it says what is wrong


def _entry_point_and_shipped_plugins() -> list[Plugin]:
    plugins = []
    for entry_point in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        where = f"entry point {entry_point.name} = {entry_point.value}"
        try:
            value = entry_point.load()
        except Exception as e:  # noqa: BLE001 - third-party code: any failure is that plugin's
            raise ProviderError(f"plugin {where}: cannot load it ({type(e).__name__}: {e})") from None
        if isinstance(value, Plugin):
            plugins.append(value)
        else:
            plugins.append(Plugin.from_mapping(value, where))
    shipped = builtin_dir()
    plugins += [Plugin.from_file(path) for path in sorted(shipped.glob("*.toml"))] if shipped.is_dir() else []
    return plugins


def plugin_for(distribution: str, plugins: Sequence[Plugin]) -> Plugin | None:
    return next((p for p in plugins if p.matches(distribution)), None)
