"""Repair settings from the consumer's ``pyproject.toml``, ``SHAREWHEEL_*`` variables and flags.

cibuildwheel runs one ``repair-wheel-command`` for every platform from the project directory,
so the providers a consumer links to belong in the project, as ``[tool.cibuildwheel]`` does
for cibuildwheel::

    [tool.sharewheel]
    providers = ["acme-native", "wheelhouse/providers"]   # names, wheel paths or directories
    plugins = ["sharewheel-plugins/libfoo.toml"]
    exclude = ["libcuda.so.1"]
    set = true                                             # repair --set (main table only)
    [tool.sharewheel.abi]
    acme-native = "minor"
    [tool.sharewheel.linux]                                # for Linux wheels, over the above
    providers = ["acme-native", "nvidia-cuda-runtime-cu12"]

A ``linux``, ``macos`` or ``windows`` table (with the same keys) replaces, key by key, what the
main table says for wheels of that OS, as ``[tool.cibuildwheel.linux]`` does: one command line
serves every platform even where their providers differ.
The file is the first ``pyproject.toml`` found from the current directory upwards (with or
without a ``[tool.sharewheel]`` table: a project's settings never leak into a nested one), the
project root as cibuildwheel's ``{package}``; the search never goes into a directory another user
could have put one in (see :func:`find_pyproject`). Relative paths in it are relative to its
directory. Config and plugin files are read only as regular files of at most
:data:`MAX_CONFIG_SIZE` bytes (``plugins = ["/dev/zero"]`` would never end). Each setting is taken from the highest of
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
import stat
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
RUN_KEYS = ("set",)  # the main table's only: they decide the run, not each wheel's repair
OSES = ("linux", "macos", "windows")  # per-platform tables, as [tool.cibuildwheel.linux]
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")  # a distribution name (PEP 508)


@dataclass(frozen=True)
class Settings:
    """What one source sets; None: it leaves the setting to the sources below it."""

    providers: tuple[Path | str, ...] | None = None  # wheels, directories, installed distribution names
    plugins: tuple[Path, ...] | None = None
    exclude: tuple[str, ...] | None = None
    abi: Mapping[str, AbiPolicy] | None = None  # canonical provider name → the consumer's override
    set: bool | None = None  # repair the wheels as one release (sharewheel.sets)

    def over(self, lower: Settings) -> Settings:
        """These settings, with what they leave unset taken from `lower`: replace, never merge."""
        return Settings(
            providers=self.providers if self.providers is not None else lower.providers,
            plugins=self.plugins if self.plugins is not None else lower.plugins,
            exclude=self.exclude if self.exclude is not None else lower.exclude,
            abi=self.abi if self.abi is not None else lower.abi,
            set=self.set if self.set is not None else lower.set,
        )

    def describe(self) -> str:
        """What these settings set, for people (`-v`): ``providers = a, b; exclude = c``."""
        parts = [f"{key} = {', '.join(map(str, value)) or '(none)'}"
                 for key in _LISTS if (value := getattr(self, key)) is not None]
        if self.abi is not None:
            parts.append(f"abi = {', '.join(f'{k}={v.name}' for k, v in sorted(self.abi.items())) or '(none)'}")
        if self.set is not None:
            parts.append(f"set = {'true' if self.set else 'false'}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Config:
    """The settings repair and show use, every source applied; `source` is the file, if any,
    and `table` whether it has a ``[tool.sharewheel]`` table."""

    providers: tuple[Path | str, ...] = ()
    plugins: tuple[Path, ...] = ()
    exclude: tuple[str, ...] = ()
    abi: Mapping[str, AbiPolicy] = field(default_factory=dict)
    source: Path | None = None
    table: bool = False
    sources: tuple[tuple[str, str], ...] = ()  # (source, what it sets) for each that sets something: -v
    set: bool = False  # repair the wheels as one release (repair --set)

    @property
    def announcement(self) -> str | None:
        """The line the CLI prints (except with -q) when a file's settings apply: a file found by
        searching upwards must never change a repair unseen."""
        return f"sharewheel: settings from {self.source} [tool.sharewheel]" if self.table else None


def resolve(flags: Settings, *, cwd: Path | None = None, environ: Mapping[str, str] | None = None,
            os_name: str | None = None) -> Config:
    """Flags over ``SHAREWHEEL_*`` variables over the nearest pyproject.toml (see the module doc),
    for wheels of `os_name` (linux, macos, windows) if given."""
    environ = os.environ if environ is None else environ
    pyproject = find_pyproject(Path.cwd() if cwd is None else cwd)
    data = read_toml(pyproject, ConfigError) if pyproject is not None else {}
    from_file = _settings(data, pyproject, os_name) if pyproject is not None else Settings()
    environment = from_environment(environ)
    merged = flags.over(environment.over(from_file))
    table = _sharewheel_table(data)
    in_file = f"{pyproject} [tool.sharewheel]" + (
        f" and [tool.sharewheel.{os_name}]" if isinstance(table, dict) and os_name in table else "")
    sources = tuple((label, text) for label, settings in (
        ("flags", flags), (f"{ENV_PREFIX}* variables", environment), (in_file, from_file),
    ) if (text := settings.describe()))
    return Config(
        merged.providers or (), merged.plugins or (), merged.exclude or (), dict(merged.abi or {}), pyproject,
        table is not None, sources, bool(merged.set),
    )


def find_pyproject(start: Path) -> Path | None:
    """The first pyproject.toml in `start` or a parent: the project cibuildwheel runs repair in.

    The search stops before a directory another user could have put one in — writable by others
    (``/tmp``), or owned by someone other than you, root or the owner of `start` — since its
    settings choose the providers a consumer requires. `start` itself is searched unless others
    can write to it and its pyproject.toml is not yours (POSIX; on Windows every directory counts).
    """
    start = start.absolute()
    trusted = {os.geteuid(), 0, _owner(start)} if hasattr(os, "geteuid") else set()
    trusted.discard(-1)
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        shared = _shared(directory, trusted)
        if shared and directory != start:
            log.debug("not looking for pyproject.toml in %s or above: %s", directory, shared)
            return None
        if os.path.lexists(candidate):  # a FIFO or a directory is refused when read, not skipped
            if shared and _owner(candidate) not in trusted:
                if candidate not in _IGNORED:  # (said once: a command resolves its settings per wheel)
                    _IGNORED.add(candidate)
                    log.warning("ignoring %s: %s, and the file is another user's", candidate, shared)
                return None
            return candidate
    return None


_IGNORED: set[Path] = set()


def _owner(path: Path) -> int:
    try:
        return os.lstat(path).st_uid
    except OSError:
        return -1


def _shared(directory: Path, trusted: set[int]) -> str | None:
    """Why another user could have written `directory`'s files (None: nobody but `trusted`)."""
    if not trusted:
        return None
    try:
        st = os.stat(directory)
    except OSError:
        return None
    if st.st_uid not in trusted:
        return f"owned by user {st.st_uid}"
    if st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_gid != os.getegid()):
        return "writable by other users"
    return None


def read_pyproject(path: Path, os_name: str | None = None) -> Settings:
    """``[tool.sharewheel]`` of `path`, with ``[tool.sharewheel.<os_name>]`` (linux, macos,
    windows) over it, as cibuildwheel's per-platform tables; every mistake is one error naming
    the file and the key."""
    return _settings(read_toml(path, ConfigError), path, os_name)


def _sharewheel_table(data: dict[str, Any]) -> Any:
    tool = data.get("tool", {})
    return tool.get("sharewheel") if isinstance(tool, dict) else None


def _settings(data: dict[str, Any], path: Path, os_name: str | None) -> Settings:
    table = _sharewheel_table(data)
    if table is None:
        return Settings()
    settings = _table(table, path, "[tool.sharewheel]", OSES)
    per_os = {name: _table(table[name], path, f"[tool.sharewheel.{name}]", ()) for name in OSES if name in table}
    return per_os[os_name].over(settings) if os_name in per_os else settings


MAX_CONFIG_SIZE = 1 << 20  # a pyproject.toml or plugin file; the largest real ones are a few kB


def read_small_file(path: Path, limit: int) -> bytes:
    """The bytes of `path`, which must be a regular file of at most `limit` bytes: a name in a
    config, a flag or a manifest may be a FIFO (blocks), a device (``/dev/zero``: never ends) or
    huge. Anything else is an OSError whose strerror says what it is."""
    st = os.stat(path)  # not opened at all unless regular: opening some devices does something
    if not stat.S_ISREG(st.st_mode):
        raise OSError(0, f"{_file_kind(st.st_mode)}, not a regular file")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # replaced since the stat
            raise OSError(0, "not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(0, f"larger than {limit} bytes")
    return data


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "special"


def read_toml(path: Path, error: type[SharewheelError], what: str = "") -> dict[str, Any]:
    """A small TOML file (pyproject.toml, a plugin) as data; every failure one `error` naming it."""
    label = f"{what}{path}"
    try:
        return tomllib.loads(read_small_file(path, MAX_CONFIG_SIZE).decode("utf-8"))
    except OSError as e:
        raise error(f"{label}: cannot read it ({e.strerror or e})") from None
    except RecursionError:  # (tomllib recurses per nested array or inline table)
        raise error(f"{label}: invalid TOML (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as e:  # TOMLDecodeError, and ints past Python's digit limit
        raise error(f"{label}: invalid TOML ({e})") from None


def _table(table: Any, path: Path, name: str, subtables: tuple[str, ...]) -> Settings:
    where = f"{path}: {name}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table, not {_kind(table)}")
    known = (*KEYS, *(RUN_KEYS if subtables else ()), *subtables)  # (an OS table has no run keys)
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(known))})")
    if "set" in table and not isinstance(table["set"], bool):
        raise ConfigError(f"{where} set: must be a boolean (true or false), not {_kind(table['set'])}")
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
        plugins=tuple(_config_plugin(p, base, f"{where} plugins") for p in lists["plugins"])
        if "plugins" in lists else None,
        exclude=tuple(lists["exclude"]) if "exclude" in lists else None,
        abi=abi,
        set=table.get("set"),
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


def _config_plugin(text: str, base: Path, where: str) -> Path:
    """A plugin file relative to the pyproject.toml's directory: a small regular file (it is read whole)."""
    path = base / text
    try:
        st = os.stat(path)
    except OSError as e:
        raise ConfigError(f"{where}: {text}: {(e.strerror or 'cannot read it').lower()} ({path})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{where}: {text}: {_file_kind(st.st_mode)}, not a plugin file ({path})")
    if st.st_size > MAX_CONFIG_SIZE:
        raise ConfigError(f"{where}: {text}: larger than {MAX_CONFIG_SIZE} bytes, not a plugin file ({path})")
    return path


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
