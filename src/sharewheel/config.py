"""Repair settings from the consumer's ``pyproject.toml``, ``SHAREWHEEL_*`` variables and flags.

cibuildwheel runs one ``repair-wheel-command`` for every platform from the project directory,
so the providers a consumer links to belong in the project, as ``[tool.cibuildwheel]`` does
for cibuildwheel::

    [tool.sharewheel]
    providers = ["acme-native", "wheelhouse/providers"]   # names, wheel paths or directories
    plugins = ["sharewheel-plugins/libfoo.toml"]
    exclude = ["libcuda.so.1"]
    [tool.sharewheel.abi]
    acme-native = "minor"
    [tool.sharewheel.linux]                                # for Linux wheels, over the above
    providers = ["acme-native", "nvidia-cuda-runtime-cu12"]

A ``linux``, ``macos`` or ``windows`` table (with the same keys) replaces, key by key, what the
main table says for wheels of that OS, as ``[tool.cibuildwheel.linux]`` does: one command line
serves every platform even where their providers differ.
The file is the first ``pyproject.toml`` found from the current directory upwards (with or
without a ``[tool.sharewheel]`` table: a project's settings never leak into a nested one);
relative paths in it are relative to its directory. Each setting is taken from the highest of
flags, then environment variables, then the file, and replaces what a lower source says (as
cibuildwheel's ``CIBW_*`` variables replace its configuration): a list given by flags is not
added to the file's list. Lists in environment variables are separated by ``os.pathsep``, as
in PATH, so that paths may hold spaces; ``SHAREWHEEL_ABI`` is a list of ``NAME=POLICY``.
A variable that is set but empty sets an empty list.

An ABI override only narrows: the Requires-Dist is the intersection of the provider's policy
and the override (see :meth:`sharewheel.registry.Provider.requirement`), because the consumer
is linked to a unique name that only the provider's own series keeps stable.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from sharewheel.abi import AbiPolicy
from sharewheel.errors import ConfigError, SharewheelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

log = logging.getLogger("config")

ENV_PREFIX = "SHAREWHEEL_"
_LISTS = ("providers", "plugins", "exclude")
KEYS = (*_LISTS, "abi")
OSES = ("linux", "macos", "windows")  # per-platform tables, as [tool.cibuildwheel.linux]
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")  # a distribution name (PEP 508)


@dataclass(frozen=True)
class Settings:
    """What one source sets; None: it leaves the setting to the sources below it."""

    providers: tuple[Path | str, ...] | None = None  # wheels, directories, installed distribution names
    plugins: tuple[Path, ...] | None = None
    exclude: tuple[str, ...] | None = None
    abi: Mapping[str, AbiPolicy] | None = None  # canonical provider name → the consumer's override

    def over(self, lower: Settings) -> Settings:
        """These settings, with what they leave unset taken from `lower`: replace, never merge."""
        return Settings(
            providers=self.providers if self.providers is not None else lower.providers,
            plugins=self.plugins if self.plugins is not None else lower.plugins,
            exclude=self.exclude if self.exclude is not None else lower.exclude,
            abi=self.abi if self.abi is not None else lower.abi,
        )


@dataclass(frozen=True)
class Config:
    """The settings repair and show use, every source applied; `source` is the file, if any."""

    providers: tuple[Path | str, ...] = ()
    plugins: tuple[Path, ...] = ()
    exclude: tuple[str, ...] = ()
    abi: Mapping[str, AbiPolicy] = field(default_factory=dict)
    source: Path | None = None


def resolve(flags: Settings, *, cwd: Path | None = None, environ: Mapping[str, str] | None = None,
            os_name: str | None = None) -> Config:
    """Flags over ``SHAREWHEEL_*`` variables over the nearest pyproject.toml (see the module doc),
    for wheels of `os_name` (linux, macos, windows) if given."""
    environ = os.environ if environ is None else environ
    pyproject = find_pyproject(Path.cwd() if cwd is None else cwd)
    from_file = read_pyproject(pyproject, os_name) if pyproject is not None else Settings()
    merged = flags.over(from_environment(environ).over(from_file))
    if pyproject is not None:
        log.info("settings from %s, SHAREWHEEL_* variables and flags: %s", pyproject, merged)
    return Config(
        merged.providers or (), merged.plugins or (), merged.exclude or (), dict(merged.abi or {}), pyproject
    )


def find_pyproject(start: Path) -> Path | None:
    """The first pyproject.toml in `start` or a parent: the project cibuildwheel runs repair in."""
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_pyproject(path: Path, os_name: str | None = None) -> Settings:
    """``[tool.sharewheel]`` of `path`, with ``[tool.sharewheel.<os_name>]`` (linux, macos,
    windows) over it, as cibuildwheel's per-platform tables; every mistake is one error naming
    the file and the key."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: invalid TOML ({e})") from None
    tool = data.get("tool", {})
    table = tool.get("sharewheel") if isinstance(tool, dict) else None
    if table is None:
        return Settings()
    settings = _table(table, path, "[tool.sharewheel]", OSES)
    per_os = {name: _table(table[name], path, f"[tool.sharewheel.{name}]", ()) for name in OSES if name in table}
    return per_os[os_name].over(settings) if os_name in per_os else settings


def _table(table: Any, path: Path, name: str, subtables: tuple[str, ...]) -> Settings:
    where = f"{path}: {name}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table, not {_kind(table)}")
    unknown = sorted(set(table) - set(KEYS) - set(subtables))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted((*KEYS, *subtables)))})")
    base = path.parent
    lists = {key: _strings(table[key], f"{where} {key}") for key in _LISTS if key in table}
    abi: dict[str, AbiPolicy] | None = None
    if "abi" in table:
        if not isinstance(table["abi"], dict):
            raise ConfigError(f"{where} abi: must be a table of provider = policy, not {_kind(table['abi'])}")
        abi = {}
        for provider, policy in table["abi"].items():
            here = f"{path}: {name[:-1]}.abi] {provider}"
            if not isinstance(policy, str):
                raise ConfigError(f"{here}: must be a string, not {_kind(policy)}")
            _add_override(abi, provider, policy, here)
    return Settings(
        providers=tuple(_config_provider(p, base, f"{where} providers") for p in lists["providers"])
        if "providers" in lists else None,
        plugins=tuple(base / p for p in lists["plugins"]) if "plugins" in lists else None,
        exclude=tuple(lists["exclude"]) if "exclude" in lists else None,
        abi=abi,
    )


def from_environment(environ: Mapping[str, str]) -> Settings:
    """SHAREWHEEL_PROVIDERS, _PLUGINS, _EXCLUDE, _ABI: os.pathsep-separated lists, paths relative
    to the current directory (as flags are)."""

    def items(key: str) -> list[str] | None:
        value = environ.get(ENV_PREFIX + key.upper())
        return None if value is None else [v.strip() for v in value.split(os.pathsep) if v.strip()]

    abi: dict[str, AbiPolicy] | None = None
    entries = items("abi")
    if entries is not None:
        abi = {}
        for entry in entries:
            name, equals, policy = entry.partition("=")
            if not equals or not name.strip() or not policy.strip():
                raise ConfigError(f"{ENV_PREFIX}ABI: {entry!r} is not NAME=POLICY (e.g. acme-native=minor)")
            _add_override(abi, name.strip(), policy.strip(), f"{ENV_PREFIX}ABI {name.strip()}")
    providers, plugins, exclude = items("providers"), items("plugins"), items("exclude")
    return Settings(
        providers=None if providers is None else tuple(providers),
        plugins=None if plugins is None else tuple(Path(p) for p in plugins),
        exclude=None if exclude is None else tuple(exclude),
        abi=abi,
    )


def abi_flags(values: tuple[str, ...]) -> dict[str, AbiPolicy] | None:
    """``--abi NAME=POLICY`` (repeatable), or None when not given."""
    if not values:
        return None
    abi: dict[str, AbiPolicy] = {}
    for value in values:
        name, equals, policy = value.partition("=")
        if not equals or not name.strip() or not policy.strip():
            raise ConfigError(f"--abi {value}: expected NAME=POLICY (e.g. acme-native=minor)")
        _add_override(abi, name.strip(), policy.strip(), f"--abi {name.strip()}")
    return abi


def _add_override(abi: dict[str, AbiPolicy], name: str, policy: str, where: str) -> None:
    if not _NAME.match(name):
        raise ConfigError(f"{where}: {name!r} is not a distribution name")
    key = canonicalize_name(name)
    if key in abi:
        raise ConfigError(f"{where}: {key} is given twice")
    try:
        abi[key] = AbiPolicy.parse(policy)
    except SharewheelError as e:
        raise ConfigError(f"{where}: {e}") from None


def _config_provider(text: str, base: Path, where: str) -> Path | str:
    """A path relative to the pyproject.toml's directory, or the name of an installed distribution."""
    path = base / text
    if path.exists():
        return path
    if _NAME.match(text):
        return text
    raise ConfigError(f"{where}: {text}: no such file or directory ({path})")


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        bad = value if not isinstance(value, list) else next(v for v in value if not isinstance(v, str))
        what = _kind(value) if not isinstance(value, list) else f"a list holding {_kind(bad)} {bad!r}"
        raise ConfigError(f"{where}: must be a list of strings, not {what}")
    if any(not v.strip() for v in value):
        raise ConfigError(f"{where}: an empty string is neither a path nor a name")
    return value


def _kind(value: Any) -> str:
    return {
        str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list", dict: "a table",
    }.get(type(value), type(value).__name__)
