"""Where sharewheel learns which providers exist and which library names each one offers.

Sources, highest precedence first: ``--provider`` wheel files or directories of them (the
provider may not be installed where repair runs: cibuildwheel builds and repairs in different
environments) or names of installed distributions, then installed distributions that carry
the manifest and a ``sharewheel.providers`` entry point. A wheel without a manifest is a
provider if a plugin (sharewheel.plugin) describes it; such third-party providers are used
only when named with ``--provider``, since they never opted in to being linked to. Only
providers built for the consumer's OS and architecture are considered. Two distributions
offering one library name is an error that names both: silently picking one would link
consumers to an arbitrary library.

A provider's manifest must speak for the wheel or installed distribution it is in (name and
version, see :func:`sharewheel.manifest.check_owner`), and installed distributions are read only
from sharewheel's own environment (:func:`sharewheel.plugin.own_path`): never from the directory
`python -m sharewheel` runs in.
"""

from __future__ import annotations

import importlib.metadata
import logging
import posixpath
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from sharewheel.abi import AbiPolicy, narrow, parse_version
from sharewheel.config import MAX_CONFIG_SIZE, read_small_file
from sharewheel.errors import ProviderError, SharewheelError
from sharewheel.files import run_dir
from sharewheel.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_SIZE,
    Manifest,
    ProvidedLibrary,
    Provides,
    check_owner,
    read_installed,
)
from sharewheel.naming import library_key
from sharewheel.platforms import PlatformKey, keys_of, system_of
from sharewheel.plugin import LazyPlugins, Plugin, own_path, plugin_for
from sharewheel.runtime import Requirement as RuntimeRequirement
from sharewheel.runtime import Strategy
from sharewheel.wheelfile import InputWheel, platform_tags

ENTRY_POINT_GROUP = "sharewheel.providers"
log = logging.getLogger("registry")


@dataclass(frozen=True)
class Provider:
    provides: Provides
    origin: str  # a wheel path or an installed location, for messages
    source: Path  # the wheel file, or the sys.path entry it is installed in
    plugin: Plugin | None = None  # set for third-party providers a plugin describes
    load: Strategy = Strategy.PROVIDER  # its load(); IMPORT: importing `module` loads it; PRELOAD: by path
    module: str | None = None
    needs: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)  # unique → provided it needs
    _files: dict[str, Path] = field(default_factory=dict, compare=False, repr=False)
    consumer_abi: AbiPolicy | None = None  # the consumer's override ([tool.sharewheel.abi]): narrows only

    def copy_library(self, library: ProvidedLibrary, dest: Path) -> None:
        """Stream the provided file to `dest` (some OS tools must see it to leave it alone)."""
        if library.path in self._files:  # already unpacked (its symbols were read): no second inflate
            shutil.copyfile(self._files[library.path], dest)
        elif self.source.is_file():
            try:
                with zipfile.ZipFile(self.source) as zf, zf.open(library.path) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            except (zipfile.BadZipFile, KeyError, EOFError) as e:  # (changed since it was read)
                raise ProviderError(f"{self.origin}: cannot read {library.path} ({e})") from None
        else:
            shutil.copyfile(self.installed_file(library), dest)

    def installed_file(self, library: ProvidedLibrary) -> Path:
        """An installed provider's file, which its manifest listing it does not make exist."""
        path = self.source / library.path
        if not path.is_file():
            raise ProviderError(f"{self.origin}: it provides {library.path}, which is not installed "
                                f"({path} is {'a directory' if path.is_dir() else 'missing'})")
        return path

    def file(self, library: ProvidedLibrary) -> Path:
        """The provided file on disk (installed, or unpacked once from the wheel), to read it."""
        if not self.source.is_file():
            return self.installed_file(library)
        if library.path not in self._files:
            where = Path(tempfile.mkdtemp(prefix="provided-", dir=run_dir())) / posixpath.basename(library.path)
            self.copy_library(library, where)
            self._files[library.path] = where
        return self._files[library.path]

    def runtime(self, files: Iterable[str], floor: Version | None = None) -> RuntimeRequirement:
        """How the consumer hook loads this provider, for a consumer linked to `files` (unique names)."""
        strategy = self.load
        linked = sorted(set(files))
        requirement = str(self.requirement(floor))
        paths = {lib.unique_name: lib.path for lib in self.provides.libraries}
        # the directories of the linked files: the binaries' RPATH fallbacks (musl's hook checks them)
        lib_dirs = tuple(sorted({posixpath.dirname(paths[u]) for u in linked if u in paths}))
        if strategy is Strategy.PROVIDER:
            return RuntimeRequirement(self.provides.package, self.distribution, requirement, tuple(linked),
                                      lib_dirs=lib_dirs)
        if strategy is Strategy.IMPORT:
            assert self.module is not None
            return RuntimeRequirement(self.module, self.distribution, requirement, tuple(linked), strategy, lib_dirs)
        order: list[str] = []  # preload: the linked files and what they need, dependencies first

        def visit(unique: str) -> None:
            if unique not in order:
                for dependency in self.needs.get(unique, ()):
                    visit(dependency)
                order.append(unique)

        for unique in linked:
            visit(unique)
        # their dependencies' directories too: the preload checks every file it loads, and in one
        # site-packages the linked files' own RPATHs find those there
        lib_dirs = tuple(sorted({posixpath.dirname(paths[u]) for u in order}))
        return RuntimeRequirement(
            self.provides.package, self.distribution, requirement, tuple(paths[u] for u in order), strategy, lib_dirs
        )

    @property
    def distribution(self) -> str:
        return self.provides.distribution

    @property
    def version(self) -> Version:
        return parse_version(self.provides.version, f"{self.origin}: provider version")

    @property
    def policy(self) -> AbiPolicy:
        return AbiPolicy.parse(self.provides.abi)

    def requirement(self, floor: Version | None = None) -> Requirement:
        """The Requires-Dist for a consumer of this release; `floor`: an older release of the
        same series the consumer is known to work with (the copy it had vendored)."""
        version = self.version if floor is None else min(floor, self.version)
        requirement = self.policy.requirement(self.distribution, version)
        if self.consumer_abi is None:
            return requirement
        # the consumer links to a unique name that only the provider's series keeps stable: an
        # override may exclude releases the provider's policy admits, never admit others
        narrowed = narrow(requirement, self.consumer_abi.requirement(self.distribution, version))
        if not narrowed.specifier.contains(version, prereleases=True):
            raise ProviderError(
                f"the ABI override {self.consumer_abi.name!r} for {self.distribution} narrows its policy "
                f"({requirement.specifier}) to {narrowed.specifier}, which excludes {version}, the release linked to"
            )
        return narrowed

    @property
    def platform_keys(self) -> set[PlatformKey]:
        return keys_of(self.provides.platform.split("."))


@dataclass(frozen=True)
class Match:
    provider: Provider
    library: ProvidedLibrary


class Registry:
    """Library name (original or unique) → the provider offering it."""

    def __init__(self, providers: Iterable[Provider]) -> None:
        # oldest first, so that of several releases of one distribution the newest offering a
        # name is the one it maps to (a wheelhouse may hold series 3 and series 4)
        self.providers = sorted(providers, key=lambda p: (canonicalize_name(p.distribution), p.version))
        self._by_name: dict[str, Match] = {}
        for provider in self.providers:
            for library in provider.provides.libraries:
                for name in {library_key(library.name), library_key(library.unique_name)}:
                    other = self._by_name.get(name)
                    if other and canonicalize_name(other.provider.distribution) != canonicalize_name(
                        provider.distribution
                    ):
                        raise ProviderError(
                            f"two providers claim {name}: {other.provider.distribution} "
                            f"({other.provider.origin}) and {provider.distribution} ({provider.origin})"
                        )
                    self._by_name[name] = Match(provider, library)

    def lookup(self, name: str) -> Match | None:
        """The provider of a needed library, matched by file name (Mach-O load commands are paths)."""
        return self._by_name.get(library_key(name))

    def older_releases(self, provider: Provider) -> list[Provider]:
        """The releases of `provider`'s distribution older than it in its ABI series (same policy,
        same series: its libraries keep their unique names), oldest first."""
        name, series = canonicalize_name(provider.distribution), provider.policy.series(provider.version)
        return [p for p in self.providers if canonicalize_name(p.distribution) == name and p.version < provider.version
                and p.provides.abi == provider.provides.abi and p.policy.series(p.version) == series]

    def distribution(self, name: str) -> Provider | None:
        """The newest release of a provider distribution."""
        wanted = canonicalize_name(name)
        return next((p for p in reversed(self.providers) if canonicalize_name(p.distribution) == wanted), None)

    @classmethod
    def discover(
        cls,
        provider_paths: Sequence[Path | str],
        platform: set[PlatformKey],
        *,
        include_installed: bool = True,
        plugin_files: Sequence[Path] = (),
        abi: Mapping[str, AbiPolicy] | None = None,
        also: Sequence[Path] = (),
    ) -> Registry:
        """Providers for `platform` from `provider_paths` (wheels, directories, installed
        distribution names), or, when none is given, from the installed environment (a repair
        told its providers does not depend on, nor read, whatever else is installed where it
        runs); `abi`: the consumer's overrides by canonical name, which narrow those providers'
        requirements; `also`: provider wheels read besides, which do not count as given (a set's
        carrier, sharewheel.sets)."""
        given = [p for p in given_providers((*provider_paths, *also), plugin_files) if platform <= p.platform_keys]
        names = {canonicalize_name(p.distribution) for p in given}
        installed = [
            p for p in (_installed() if include_installed and not provider_paths else ())
            if canonicalize_name(p.distribution) not in names and platform <= p.platform_keys
        ]
        overrides = abi or {}
        known = {canonicalize_name(p.distribution) for p in (*given, *installed)}
        for unknown in sorted(set(overrides) - known):  # a typo would otherwise go unnoticed
            log.warning("the ABI override for %s names no provider found (given with --provider or installed)",
                        unknown)
        return cls([
            replace(p, consumer_abi=overrides[key]) if (key := canonicalize_name(p.distribution)) in overrides else p
            for p in (*given, *installed)
        ])


_GIVEN: dict[tuple[object, ...], list[Provider]] = {}


def given_providers(provider_paths: Sequence[Path | str], plugin_files: Sequence[Path]) -> list[Provider]:
    """The providers `--provider` names, read once per process while their files are unchanged
    (a call repairing many wheels reads each provider wheel once, its library unpacked once)."""
    key = (tuple(map(str, provider_paths)), tuple(map(str, plugin_files)), _stamps(provider_paths))
    if key not in _GIVEN:
        _GIVEN[key] = list(_from_paths(provider_paths, LazyPlugins(plugin_files)))
    return _GIVEN[key]


def _stamps(paths: Sequence[Path | str]) -> tuple[tuple[str, int, int], ...]:
    found = []
    for given in paths:
        path = Path(given)
        for wheel in sorted(path.glob("*.whl")) if path.is_dir() else [path]:
            try:
                stat = wheel.stat()
                found.append((str(wheel.absolute()), stat.st_size, stat.st_mtime_ns))
            except OSError:
                found.append((str(wheel), -1, -1))
    return tuple(found)


def _checked(provider: Provider) -> Provider:
    """A provider whose policy and version parse, or an error naming where it came from."""
    try:
        provider.policy.specifier(provider.version)
    except SharewheelError as e:
        raise ProviderError(f"{provider.origin}: {MANIFEST_NAME}: {e}") from None
    return provider


def read_provider_wheel(path: Path, plugins: Sequence[Plugin] = ()) -> Provider | None:
    """The provider a wheel file carries, or None for a wheel that provides nothing; a manifest
    must be this wheel's own (name and version) and list files of it."""
    with InputWheel.open(path, check_record=False) as wheel:
        member = f"{wheel.dist_info}/{MANIFEST_NAME}"
        if member not in wheel.zip.namelist():
            plugin = plugin_for(wheel.name.distribution, plugins)
            if plugin is None:
                return None
            try:
                wheel.check_record()
            except SharewheelError as e:
                # a third-party wheel's own defect, which pip installs regardless (seen on PyPI:
                # scipy-openblas64 0.3.31.188.0 lists a stale size and hash for its libgfortran)
                log.warning("%s; using it as a provider all the same", e)
            pc_files = {}
            for info in wheel.zip.infolist():
                if info.filename.endswith(".pc"):
                    if info.file_size > MAX_CONFIG_SIZE:
                        raise ProviderError(f"{path}: {info.filename} is larger than {MAX_CONFIG_SIZE} bytes")
                    pc_files[info.filename] = wheel.read_text(info.filename)
            return _plugin_provider(
                plugin, wheel.project_name, wheel.name.version, wheel.platforms, wheel.zip.namelist(),
                pc_files, str(path), path,
            )
        wheel.check_record()
        if wheel.zip.getinfo(member).file_size > MAX_MANIFEST_SIZE:  # (zipfile inflates no more than that)
            raise ProviderError(f"{path}: {MANIFEST_NAME} is larger than {MAX_MANIFEST_SIZE} bytes")
        manifest = Manifest.loads(wheel.read_text(member), str(path), ProviderError)
        if manifest.provides is None:
            return None
        check_owner(manifest.provides, wheel.project_name, wheel.name.version, str(path), ProviderError)
        files = {i.filename for i in wheel.zip.infolist() if not i.is_dir()}
        for library in manifest.provides.libraries:
            if library.path not in files:
                raise ProviderError(f"{path}: the manifest lists {library.path}, which is not in the wheel")
        return _checked(Provider(manifest.provides, str(path), path))


_DISTRIBUTION_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


def _from_paths(paths: Sequence[Path | str], plugins: Sequence[Plugin]) -> Iterable[Provider]:
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for wheel in sorted(path.glob("*.whl")):
                if (provider := read_provider_wheel(wheel, plugins)) is not None:
                    yield provider
        elif path.is_file():
            provider = read_provider_wheel(path, plugins)
            if provider is None:
                raise ProviderError(
                    f"{path}: not a native-lib wheel (its dist-info has no {MANIFEST_NAME} that provides a "
                    "library, and no plugin describes it)"
                )
            yield provider
        elif _DISTRIBUTION_NAME.match(str(given)) and "/" not in str(given):
            yield _installed_by_name(str(given), plugins)
        elif path.exists():  # a FIFO or a device (/dev/zero): never opened
            raise ProviderError(f"--provider {given}: not a wheel file or a directory")
        else:
            raise ProviderError(f"--provider {given}: no such file or directory")


def _installed_by_name(name: str, plugins: Sequence[Plugin], path: Sequence[str] | None = None) -> Provider:
    """The provider an installed distribution is, packed or described by a plugin (in `path`,
    default sharewheel's own environment)."""
    found = [d for d in importlib.metadata.distributions(name=name, path=list(own_path() if path is None else path))
             if d.metadata and canonicalize_name(d.metadata["Name"] or "") == canonicalize_name(name)]
    if not found:
        raise ProviderError(
            f"--provider {name}: no such file, directory or installed distribution "
            "(install it, or give its wheel or a directory of wheels)"
        )
    provider = installed_provider(found[0], plugins)
    if provider is None:
        raise ProviderError(
            f"--provider {name}: the installed {found[0].metadata['Name']} is not a native-lib provider "
            f"(no {MANIFEST_NAME}, and no plugin describes it)"
        )
    return provider


def installed_platforms(dist: importlib.metadata.Distribution) -> list[str]:
    """The platform tags of the wheel a distribution was installed from (its WHEEL's Tag lines)."""
    directory = getattr(dist, "_path", None)  # PathDistribution's dist-info: read as a small regular file
    try:
        if isinstance(directory, Path):
            text = read_small_file(directory / "WHEEL", MAX_CONFIG_SIZE).decode("utf-8")
        else:
            text = dist.read_text("WHEEL") or ""
    except (OSError, UnicodeDecodeError):
        return []
    return platform_tags(text)


def installed_identity(dist: importlib.metadata.Distribution) -> tuple[str, str, str]:
    """(name, version, where) of an installed distribution, whose METADATA (unlike a wheel's)
    nothing has checked: both go into requirements, so they must be a PEP 508 name and a PEP 440
    version (`name @ https://...#` would be a direct-URL requirement)."""
    where = str(dist.locate_file(""))
    name = (dist.metadata["Name"] if dist.metadata else None) or ""
    if not _DISTRIBUTION_NAME.match(name):
        raise ProviderError(f"installed distribution in {where}: METADATA Name {name[:100]!r} is not a distribution "
                            "name (PEP 508)")
    version = dist.version or ""
    parse_version(version, f"installed {name} in {where}: METADATA Version")
    return name, version, where


def installed_provider(dist: importlib.metadata.Distribution, plugins: Sequence[Plugin]) -> Provider | None:
    """An installed distribution as a provider: by its manifest, else by a plugin; None if neither."""
    name, version, where = installed_identity(dist)
    origin = f"installed {name} in {where}"
    text = read_installed(dist, origin, ProviderError)
    if text is not None:
        manifest = Manifest.loads(text, origin, ProviderError)
        if manifest.provides is not None:
            check_owner(manifest.provides, name, version, origin, ProviderError)
            return _checked(Provider(manifest.provides, origin, Path(where)))
    plugin = plugin_for(name, plugins)
    if plugin is None:
        return None
    platforms = installed_platforms(dist)
    files = [f.as_posix() for f in dist.files or ()]
    pc_files = {}
    for member in files:
        if member.endswith(".pc") and ".." not in member.split("/") and Path(where, member).is_file():
            try:
                data = read_small_file(Path(where, member), MAX_CONFIG_SIZE)
            except OSError as e:
                raise ProviderError(f"{origin}: cannot read {member} ({e.strerror or e})") from None
            pc_files[member] = data.decode("utf-8", errors="replace")
    return _plugin_provider(plugin, name, version, platforms, files, pc_files, origin, Path(where))


def _plugin_provider(
    plugin: Plugin,
    distribution: str,
    version: str,
    platforms: list[str],
    files: Sequence[str],
    pc_files: dict[str, str],
    origin: str,
    source: Path,
) -> Provider:
    """A third-party wheel (file or installed) as a provider, the way `plugin` describes it."""
    from sharewheel.adapters import adapter_for

    label = f"{origin}: plugin {plugin.name} ({plugin.origin})"
    system = system_of(platforms)
    if system is None:
        raise ProviderError(f"{label}: platform tags {', '.join(platforms) or 'none'} name no single OS")
    paths = plugin.library_paths(system, files)
    if not paths:
        globs = ", ".join(plugin.libraries.get(system, ())) or "none"
        raise ProviderError(f"{label}: no file in the wheel matches its {system} libraries ({globs})")
    adapter = adapter_for(platforms, origin)
    policy = plugin.policy
    parsed = parse_version(version, f"{origin}: version")
    provides = Provides(
        distribution=distribution, version=version, package=paths[0].split("/")[0], abi=policy.template,
        series=policy.series(parsed), platform=".".join(platforms), libraries=(),
    )
    provider = Provider(provides, origin, source, plugin=plugin, load=Strategy.PRELOAD)
    libraries = []
    needs_by_path: dict[str, tuple[str, ...]] = {}
    for path in paths:
        placeholder = ProvidedLibrary(posixpath.basename(path), posixpath.basename(path), path, "")
        described = adapter.describe(provider.file(placeholder))
        if described is None:
            raise ProviderError(f"{label}: {path} is not a {adapter.os} shared library")
        name = posixpath.basename(described.name)
        libraries.append(ProvidedLibrary(name, name, path, ""))
        needs_by_path[path] = tuple(posixpath.basename(n) for n in described.needed)
    names = {lib.unique_name for lib in libraries}
    needs = {lib.unique_name: tuple(n for n in needs_by_path[lib.path] if n in names and n != lib.unique_name)
             for lib in libraries}
    load, module = Strategy.PRELOAD, None
    if plugin.load == "import":
        load, module = Strategy.IMPORT, plugin.module or paths[0].split("/")[0]
    elif plugin.load == "pkgconfig-initpy":
        load, module = Strategy.IMPORT, _initpy_module(pc_files, paths, label)
    return _checked(Provider(
        replace(provides, libraries=tuple(libraries)), origin, source, plugin=plugin, load=load,
        module=module, needs=needs, _files=provider._files,
    ))


def _initpy_module(pc_files: dict[str, str], libraries: Sequence[str], label: str) -> str:
    """The `pkgconf_pypi_initpy` module of the .pc file nearest the first library."""
    candidates = []
    for member, text in sorted(pc_files.items()):
        match = re.search(r"^pkgconf_pypi_initpy\s*=\s*(\S+)\s*$", text, re.MULTILINE)
        if match:
            directory = posixpath.dirname(member)
            candidates.append((not libraries[0].startswith(directory + "/"), member, match.group(1)))
    if not candidates:
        raise ProviderError(f"{label}: no .pc file in the wheel names its loader (pkgconf_pypi_initpy)")
    module = min(candidates)[2]
    if not all(part.isidentifier() for part in module.split(".")):
        raise ProviderError(f"{label}: pkgconf_pypi_initpy {module!r} is not a Python module name")
    return module


_INSTALLED: dict[tuple[str, ...], list[Provider]] = {}


def _installed() -> list[Provider]:
    """The installed sharewheel providers, read once per process for one sys.path (see own_path)."""
    key = tuple(sys.path)
    if key not in _INSTALLED:
        _INSTALLED[key] = list(_read_installed())
    return _INSTALLED[key]


def _read_installed() -> Iterable[Provider]:
    """The distributions of sharewheel's own environment with a sharewheel.providers entry point
    (the first of a name counts, as importlib.metadata.entry_points does)."""
    seen: set[str] = set()
    for dist in importlib.metadata.distributions(path=own_path()):
        key = canonicalize_name((dist.metadata["Name"] if dist.metadata else None) or "")
        if not key or key in seen:
            continue
        seen.add(key)
        if not dist.entry_points.select(group=ENTRY_POINT_GROUP):
            continue
        name, version, where = installed_identity(dist)
        origin = f"installed {name} in {where}"
        text = read_installed(dist, origin, ProviderError)
        if text is None:
            raise ProviderError(f"{origin} has a {ENTRY_POINT_GROUP} entry point but no {MANIFEST_NAME}")
        manifest = Manifest.loads(text, origin, ProviderError)
        if manifest.provides is not None:
            check_owner(manifest.provides, name, version, origin, ProviderError)
            yield _checked(Provider(manifest.provides, origin, Path(where)))
