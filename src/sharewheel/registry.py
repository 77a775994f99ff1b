"""Where sharewheel learns which providers exist and which library names each one offers.

Sources, highest precedence first: ``--provider`` wheel files or directories of them (the
provider may not be installed where repair runs: cibuildwheel builds and repairs in different
environments), then installed distributions that carry the manifest and a
``sharewheel.providers`` entry point. Only providers built for the consumer's OS and
architecture are considered. Two distributions offering one library name is an error that
names both: silently picking one would link consumers to an arbitrary library.
"""

from __future__ import annotations

import importlib.metadata
import posixpath
import shutil
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from sharewheel.abi import AbiPolicy, parse_version
from sharewheel.errors import SharewheelError
from sharewheel.manifest import MANIFEST_NAME, Manifest, ProvidedLibrary, Provides
from sharewheel.platforms import PlatformKey, keys_of
from sharewheel.wheelfile import InputWheel

ENTRY_POINT_GROUP = "sharewheel.providers"


@dataclass(frozen=True)
class Provider:
    provides: Provides
    origin: str  # a wheel path or an installed location, for messages
    source: Path  # the wheel file, or the sys.path entry it is installed in

    def copy_library(self, library: ProvidedLibrary, dest: Path) -> None:
        """Stream the provided file to `dest` (some OS tools must see it to leave it alone)."""
        if self.source.is_file():
            with zipfile.ZipFile(self.source) as zf, zf.open(library.path) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        else:
            shutil.copyfile(self.source / library.path, dest)

    @property
    def distribution(self) -> str:
        return self.provides.distribution

    @property
    def version(self) -> Version:
        return parse_version(self.provides.version, f"{self.origin}: provider version")

    @property
    def policy(self) -> AbiPolicy:
        return AbiPolicy.parse(self.provides.abi)

    def requirement(self) -> Requirement:
        return self.policy.requirement(self.distribution, self.version)

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
                for name in {_key(library.name), _key(library.unique_name)}:
                    other = self._by_name.get(name)
                    if other and canonicalize_name(other.provider.distribution) != canonicalize_name(
                        provider.distribution
                    ):
                        raise SharewheelError(
                            f"two providers claim {name}: {other.provider.distribution} "
                            f"({other.provider.origin}) and {provider.distribution} ({provider.origin})"
                        )
                    self._by_name[name] = Match(provider, library)

    def lookup(self, name: str) -> Match | None:
        """The provider of a needed library, matched by file name (Mach-O load commands are paths)."""
        return self._by_name.get(_key(name))

    def distribution(self, name: str) -> Provider | None:
        """The newest release of a provider distribution."""
        wanted = canonicalize_name(name)
        return next((p for p in reversed(self.providers) if canonicalize_name(p.distribution) == wanted), None)

    @classmethod
    def discover(
        cls,
        provider_paths: Sequence[Path],
        platform: set[PlatformKey],
        *,
        include_installed: bool = True,
    ) -> Registry:
        """Providers for `platform` from `provider_paths`, then from the installed environment."""
        given = [p for p in _from_paths(provider_paths) if platform <= p.platform_keys]  # universal2 serves arm64
        names = {canonicalize_name(p.distribution) for p in given}
        installed = [
            p for p in (_installed() if include_installed else ())
            if canonicalize_name(p.distribution) not in names and platform <= p.platform_keys
        ]
        return cls([*given, *installed])


def _checked(provider: Provider) -> Provider:
    """A provider whose policy and version parse, or an error naming where it came from."""
    try:
        provider.policy.specifier(provider.version)
    except SharewheelError as e:
        raise SharewheelError(f"{provider.origin}: {MANIFEST_NAME}: {e}") from None
    return provider


def _key(name: str) -> str:
    """Library names compare by file name; DLL names case-insensitively, as Windows does."""
    base = posixpath.basename(name)
    return base.lower() if base.lower().endswith((".dll", ".pyd")) else base


def read_provider_wheel(path: Path) -> Provider | None:
    """The provider a wheel file carries, or None for a wheel that provides nothing."""
    with InputWheel.open(path) as wheel:
        member = f"{wheel.dist_info}/{MANIFEST_NAME}"
        if member not in wheel.zip.namelist():
            return None
        manifest = Manifest.loads(wheel.read_text(member), str(path))
        if manifest.provides is None:
            return None
        names = set(wheel.zip.namelist())
        for library in manifest.provides.libraries:
            if library.path not in names:
                raise SharewheelError(f"{path}: the manifest lists {library.path}, which is not in the wheel")
        return _checked(Provider(manifest.provides, str(path), path))


def _from_paths(paths: Sequence[Path]) -> Iterable[Provider]:
    for path in paths:
        if path.is_dir():
            for wheel in sorted(path.glob("*.whl")):
                if (provider := read_provider_wheel(wheel)) is not None:
                    yield provider
        elif path.is_file():
            provider = read_provider_wheel(path)
            if provider is None:
                raise SharewheelError(f"{path}: not a native-lib wheel (its dist-info has no {MANIFEST_NAME} that provides a library)")
            yield provider
        else:
            raise SharewheelError(f"--provider {path}: no such file or directory")


def _installed() -> Iterable[Provider]:
    seen: set[str] = set()
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        if dist is None or canonicalize_name(dist.name) in seen:
            continue
        seen.add(canonicalize_name(dist.name))
        text = dist.read_text(MANIFEST_NAME)
        where = str(dist.locate_file(""))
        if text is None:
            raise SharewheelError(f"installed {dist.name} in {where} has a {ENTRY_POINT_GROUP} entry point but no {MANIFEST_NAME}")
        manifest = Manifest.loads(text, f"installed {dist.name} in {where}")
        if manifest.provides is not None:
            yield _checked(Provider(manifest.provides, f"installed {dist.name} in {where}", Path(where)))
