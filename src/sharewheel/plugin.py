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
    usage-policy = {text = "...", url = "https://...", allowed = ["numpy"]}  # optional: what its
                                             # maintainers ask of other projects linking it
    [libraries]                              # per OS: wheel paths (fnmatch per path segment)
    linux = ["scipy_openblas64/lib/libscipy_openblas64_.so"]

An entry-point plugin is code, so it is imported only when a distribution it could match is
looked up (its ``distributions`` are read from its source when the module sets the mapping as a
literal), and entry points are read only from sharewheel's own environment: ``sys.path`` without
the entry Python put first for this run (the current directory for ``python -m``), so neither the
directory sharewheel runs in nor one it audits (``check --path``) can declare one. ``check`` and
``pkgconfig-path``, which audit environments, import none: they use a plugin whose mapping is
such a literal as read from its source, and leave any other out.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import importlib.util
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from packaging.utils import canonicalize_name

from sharewheel.abi import AbiPolicy
from sharewheel.config import MAX_CONFIG_SIZE, read_small_file, read_toml
from sharewheel.errors import ProviderError, SharewheelError

ENTRY_POINT_GROUP = "sharewheel.plugins"
PluginLoad = Literal["import", "preload", "pkgconfig-initpy"]
LOAD_KINDS: tuple[PluginLoad, ...] = ("import", "preload", "pkgconfig-initpy")
OSES = ("linux", "macos", "windows")
_KEYS = {"name", "description", "distributions", "abi", "load", "module", "version-regex", "libraries", "usage-policy"}


@dataclass(frozen=True)
class UsagePolicy:
    """What a provider's maintainers ask of projects taking a runtime dependency on their wheels
    (``usage-policy = {text = "...", url = "https://...", allowed = ["numpy", "scipy"]}``):
    repair and show say it, with its link, to any other distribution linked to them."""

    text: str
    url: str
    allowed: tuple[str, ...] = ()  # canonical names the request does not concern

    @classmethod
    def from_mapping(cls, data: Any, label: str) -> UsagePolicy:
        where = f"{label}: usage-policy"
        if not isinstance(data, Mapping):
            raise ProviderError(f"{where} must be a table {{text = ..., url = ..., allowed = [...]}}")
        unknown = sorted(set(data) - {"text", "url", "allowed"})
        if unknown:
            raise ProviderError(f"{where}: unknown key {unknown[0]!r} (known: allowed, text, url)")
        for key in ("text", "url"):
            if not isinstance(data.get(key), str) or not data[key].strip():
                raise ProviderError(f"{where}: {key} must be a non-empty string")
        if not data["url"].startswith("https://"):
            raise ProviderError(f"{where}: url must be an https:// link, not {data['url']!r}")
        allowed = data.get("allowed", [])
        if not isinstance(allowed, (list, tuple)) or not all(isinstance(a, str) and a for a in allowed):
            raise ProviderError(f"{where}: allowed must be a list of distribution names")
        return cls(" ".join(data["text"].split()), data["url"], tuple(canonicalize_name(a) for a in allowed))

    def allows(self, distribution: str) -> bool:
        return canonicalize_name(distribution) in self.allowed


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
    usage_policy: UsagePolicy | None = field(default=None, compare=False)

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
            usage_policy=UsagePolicy.from_mapping(data["usage-policy"], label) if "usage-policy" in data else None,
        )

    @classmethod
    def from_file(cls, path: Path) -> Plugin:
        """A plugin file (a regular file of at most MAX_CONFIG_SIZE bytes, see sharewheel.config)."""
        return cls.from_mapping(read_toml(path, ProviderError, "plugin file "), str(path))

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
    """The plugins, first wins: `--plugin` files, entry-point plugins, the shipped ones.

    The files are read at once (a broken one is an error even if no wheel needed it). An
    entry-point plugin, third-party code, is imported only by :meth:`find` for a distribution it
    could match, or when the whole sequence is asked for: most commands meet no distribution
    that needs one. Without `run_code` (`check`, `pkgconfig-path`: they audit environments, and
    meet many distributions) none is imported: one whose module sets its mapping as a literal is
    used as read from the source, any other is left out.
    """

    def __init__(self, files: Sequence[Path] = (), *, run_code: bool = True) -> None:
        self._given = _from_files(tuple(files))
        self._run_code = run_code
        self._all: list[Plugin] | None = None

    def _entry_plugin(self, entry: _EntryPointPlugin) -> Plugin | None:
        return entry.load() if self._run_code else entry.literal

    def find(self, distribution: str) -> Plugin | None:
        """The first plugin matching `distribution`, importing only entry-point plugins that could."""
        for plugin in self._given:
            if plugin.matches(distribution):
                return plugin
        for entry in _entry_points():
            if entry.could_match(distribution) and (plugin := self._entry_plugin(entry)) is not None \
                    and plugin.matches(distribution):
                return plugin
        return next((p for p in _shipped() if p.matches(distribution)), None)

    def _loaded(self) -> list[Plugin]:
        if self._all is None:
            entries = [p for p in map(self._entry_plugin, _entry_points()) if p is not None]
            self._all = [*self._given, *entries, *_shipped()]
        return self._all

    def __getitem__(self, index: Any) -> Any:
        return self._loaded()[index]

    def __len__(self) -> int:
        return len(self._loaded())


_FILES: dict[tuple[tuple[str, int, int], ...], list[Plugin]] = {}


def load_plugins(files: Sequence[Path] = (), *, run_code: bool = True) -> LazyPlugins:
    """`--plugin` files first, then entry-point plugins, then the shipped ones; each read once per
    process (a call repairing many wheels asks for each wheel), entry-point ones imported when
    needed (see LazyPlugins).

    An earlier plugin wins for a distribution both match, so a project can override a shipped one.
    """
    return LazyPlugins(files, run_code=run_code)


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


def own_path() -> list[str]:
    """sharewheel's own environment: sys.path without the entry Python put first for this run —
    the script's directory, or the current one for ``python -m`` (which sharewheel's __main__
    makes inert) — so the directory a command runs in never supplies plugins or providers."""
    return list(sys.path if getattr(sys.flags, "safe_path", False) else sys.path[1:])


def _first_entry() -> str | None:
    """The real path of the entry :func:`own_path` leaves out, if any."""
    if getattr(sys.flags, "safe_path", False) or not sys.path:
        return None
    return os.path.realpath(sys.path[0] or os.curdir)


class _EntryPointPlugin:
    """A `sharewheel.plugins` entry point, imported on first :meth:`load`."""

    def __init__(self, entry_point: importlib.metadata.EntryPoint) -> None:
        self.entry_point = entry_point
        self.where = f"entry point {entry_point.name} = {entry_point.value}"
        self.literal = _literal_plugin(entry_point.value, self.where)  # None: not known without importing it
        self.patterns = self.literal.distributions if self.literal is not None else None
        self._plugin: Plugin | None = None

    def could_match(self, distribution: str) -> bool:
        name = canonicalize_name(distribution)
        return self.patterns is None or any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def load(self) -> Plugin:
        if self._plugin is None:
            module = self.entry_point.value.partition(":")[0].strip()
            _refuse_first_entry(module, self.where)
            try:
                value = self.entry_point.load()
            except Exception as e:  # noqa: BLE001 - third-party code: any failure is that plugin's
                raise ProviderError(f"plugin {self.where}: cannot load it ({type(e).__name__}: {e})") from None
            self._plugin = value if isinstance(value, Plugin) else Plugin.from_mapping(value, self.where)
        return self._plugin


_ENTRY_POINTS: list[_EntryPointPlugin] | None = None
_SHIPPED: list[Plugin] | None = None


def _entry_points() -> list[_EntryPointPlugin]:
    """The `sharewheel.plugins` entry points of the distributions in :func:`own_path` (the
    first of a name counts, as importlib.metadata.entry_points does), by name; none imported."""
    global _ENTRY_POINTS
    if _ENTRY_POINTS is None:
        found: list[importlib.metadata.EntryPoint] = []
        seen: set[str] = set()
        for dist in importlib.metadata.distributions(path=own_path()):
            name = dist.metadata["Name"] if dist.metadata else None
            if not name or canonicalize_name(name) in seen:
                continue
            seen.add(canonicalize_name(name))
            found += dist.entry_points.select(group=ENTRY_POINT_GROUP)
        _ENTRY_POINTS = [_EntryPointPlugin(e) for e in sorted(found, key=lambda e: (e.name, e.value))]
    return _ENTRY_POINTS


def _shipped() -> list[Plugin]:
    global _SHIPPED
    if _SHIPPED is None:
        shipped = builtin_dir()
        _SHIPPED = [Plugin.from_file(path) for path in sorted(shipped.glob("*.toml"))] if shipped.is_dir() else []
    return _SHIPPED


def _refuse_first_entry(module: str, where: str) -> None:
    """An installed plugin's module must not come from the directory Python put first on
    sys.path (sharewheel used as a library from `python -c` in an untrusted directory)."""
    first = _first_entry()
    if first is None:
        return
    try:
        spec = importlib.util.find_spec(module.split(".")[0])  # a top-level name: nothing is run
    except (ImportError, ValueError):
        return  # importing it says what is wrong
    if spec is None:
        return
    homes = [*([spec.origin] if spec.has_location and spec.origin else []), *(spec.submodule_search_locations or [])]
    for home in homes:
        real = os.path.realpath(home)
        if real == first or real.startswith(first.rstrip(os.sep) + os.sep):
            raise ProviderError(f"plugin {where}: its module would be imported from {first}, the directory "
                                "Python put first on sys.path, not from where the plugin is installed")


_MUTATORS = {"globals", "vars", "setattr", "exec", "eval", "__import__", "__dict__"}


def _may_change(node: ast.AST, attr: str) -> bool:
    """Whether `node` could rebind or change module attribute `attr` other than by plain assignment."""
    if isinstance(node, ast.Name):
        return node.id in _MUTATORS
    if isinstance(node, ast.Attribute):
        return node.attr in {attr, "__dict__"}
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        return attr in node.names
    if isinstance(node, ast.alias):
        return attr in (node.name, node.asname)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name == attr
    return False


def _literal_plugin(value: str, where: str) -> Plugin | None:
    """The plugin an entry point names, read without running its module: `module:NAME` where the
    module (a file of its own) assigns NAME once, a literal mapping, and nothing else in it names
    NAME or could change it. None when not that simple: such a plugin could match anything, and
    is imported when any distribution is looked up (never by `check` or `pkgconfig-path`)."""
    module, _, attr = value.partition(":")
    module, attr = module.strip(), attr.strip()
    if not module.isidentifier() or not attr.isidentifier():
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.has_location or not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        tree = ast.parse(read_small_file(Path(spec.origin), MAX_CONFIG_SIZE).decode("utf-8"))
    except (OSError, ValueError, SyntaxError, RecursionError, MemoryError):
        return None
    literal = None
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, assigned = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, assigned = statement.target, statement.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == attr:
            if literal is not None:
                return None  # assigned twice
            literal = assigned
    if literal is None:
        return None
    nodes = list(ast.walk(tree))
    if sum(isinstance(n, ast.Name) and n.id == attr for n in nodes) != 1 or any(_may_change(n, attr) for n in nodes):
        return None
    try:
        return Plugin.from_mapping(ast.literal_eval(literal), where)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError, SharewheelError):
        return None  # importing it says what is wrong


def plugin_for(distribution: str, plugins: Sequence[Plugin]) -> Plugin | None:
    """The first plugin matching `distribution` (of LazyPlugins, importing only those that could)."""
    if isinstance(plugins, LazyPlugins):
        return plugins.find(distribution)
    return next((p for p in plugins if p.matches(distribution)), None)
