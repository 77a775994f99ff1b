"""Unvendoring: a wheel already repaired by auditwheel, delocate or delvewheel carries private
copies of libraries; where a provider offers one, the copy goes and its users are relinked.

Decided here, before anything is touched: which copies a provider replaces (by the name the
copy had before the tool renamed it, see sharewheel.vendored), whether the copy's version (if
the provider's plugin can read one) lies in the provider's ABI series, and which other vendored
copies only the replaced ones needed (a Fortran runtime only OpenBLAS used): those go too.
The symbol proof that the provider can stand in is made by the repair flow for every link,
with the copy as the reference for what its users import from it.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sharewheel.adapters import BinaryInfo
from sharewheel.errors import SharewheelError
from sharewheel.naming import library_key
from sharewheel.registry import Match, Registry
from sharewheel.vendored import VendoredCopy, is_vendored_path

log = logging.getLogger("unvendor")


@dataclass(frozen=True)
class Unvendoring:
    replaced: dict[str, Match] = field(default_factory=dict)  # copy's file name (key) → stand-in
    copies: dict[str, str] = field(default_factory=dict)  # copy's file name (key) → tree path
    removed: tuple[str, ...] = ()  # tree paths: the replaced copies and what only they needed
    floors: dict[str, Version] = field(default_factory=dict)  # provider → version of the copy
    saved: int = 0  # bytes

    def stand_in(self, needed: str) -> Match | None:
        return self.replaced.get(library_key(posixpath.basename(needed)))

    def reference(self, needed: str) -> str | None:
        """The tree path of the copy a needed name referred to, if it is being replaced."""
        return self.copies.get(library_key(posixpath.basename(needed)))

    def reasons(self) -> dict[str, str]:
        """Each removed copy a provider replaces → that provider's distribution."""
        return {self.copies[key]: match.provider.distribution for key, match in self.replaced.items()}

    def apply(self, tree: Path) -> None:
        """Remove the copies; drop them from delvewheel's load-order files; remove emptied dirs."""
        for path in self.removed:
            (tree / path).unlink()
        names = {library_key(posixpath.basename(p)) for p in self.removed}
        for directory in sorted({posixpath.dirname(p) for p in self.removed}):
            for order in (tree / directory).glob(".load-order-*"):
                kept = [n for n in order.read_text(encoding="utf-8").split() if library_key(n) not in names]
                if kept:
                    order.write_text("\n".join(kept) + "\n", encoding="utf-8")
                else:
                    order.unlink()
            if not any((tree / directory).iterdir()):
                (tree / directory).rmdir()


def plan_unvendoring(
    tree: Path,
    binaries: Mapping[str, BinaryInfo],
    registry: Registry,
    exclude: Iterable[str] = (),
) -> Unvendoring:
    """Which vendored copies in `tree` providers replace, and what else goes with them. A copy of
    a library the wheel itself provides goes too: a set's carrier (sharewheel.sets) links its own."""
    import fnmatch

    patterns = list(exclude)
    copies = {
        path: VendoredCopy(path, posixpath.basename(path), (tree / path).stat().st_size)
        for path in binaries if is_vendored_path(path)
    }
    replaced: dict[str, Match] = {}
    paths: dict[str, str] = {}
    floors: dict[str, Version] = {}
    for path, copy in sorted(copies.items()):
        match = next((m for m in map(registry.lookup, copy.originals) if m is not None), None)
        if match is None:
            continue
        if any(fnmatch.fnmatchcase(name, p) for name in copy.originals for p in patterns):
            continue
        floor = _copy_version(tree / path, match, path)
        if floor is not None:
            key = canonicalize_name(match.provider.distribution)
            floors[key] = min(floor, floors.get(key, floor))
        replaced[library_key(copy.name)] = match
        paths[library_key(copy.name)] = path
    if not replaced:
        return Unvendoring()

    # what stays reachable from the wheel's own binaries once the replaced copies are gone
    by_name = {library_key(copy.name): path for path, copy in copies.items()}
    reachable: set[str] = set()
    pending = [b for b in binaries if b not in copies]
    while pending:
        binary = pending.pop()
        for needed in binaries[binary].needed:
            name = library_key(posixpath.basename(needed))
            target = by_name.get(name)
            if target is None or name in replaced or target in reachable:
                continue
            reachable.add(target)
            pending.append(target)
    removed = tuple(sorted(set(copies) - reachable))
    saved = sum(copies[p].size for p in removed)
    return Unvendoring(replaced, paths, removed, floors, saved)


def _copy_version(path: Path, match: Match, where: str) -> Version | None:
    """The copy's version if the provider's plugin can read it; an error if outside the series."""
    plugin = match.provider.plugin
    text = plugin.read_version(path) if plugin is not None else None
    if text is None:
        return None
    try:
        version = Version(text)
    except InvalidVersion:
        log.warning("%s: version %r read from the copy is not a version; not checked", where, text)
        return None
    provider = match.provider
    if provider.policy.series(version) != provider.policy.series(provider.version):
        raise SharewheelError(
            f"{where} is version {version}, outside the ABI series of {provider.distribution} "
            f"{provider.version} ({provider.requirement()}): that provider cannot replace it"
        )
    return version


def describe_saved(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    return str(size)

