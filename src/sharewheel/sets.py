"""`sharewheel repair --set`: the wheels of one release repaired together, each library carried once.

A project that ships a core wheel and bindings or plugins built from one source tree gets one
private copy of its shared library per wheel from auditwheel: two copies in one process, each
with its own globals. Repaired as a set, a library that two or more wheels would vendor (the
same original file, the same soname from the same build prefix, or copies auditwheel named
with the same content hash) is carried by one wheel and linked by the others:

1. find: every wheel is planned as repair plans it (sharewheel.plan), in a work tree; what the
   OS tool would vendor (its source file) and the copies an earlier repair left are grouped
   (a copy with its original names restored: soname, install id, imports of other copies);
2. carry: the wheel that every other distribution of the set already requires (its
   Requires-Dist) carries the library. It is packed by sharewheel's own ``pack`` (unique name,
   loader package ``_<dist>_native``, manifest) at the release version with ABI policy
   ``exact``, and that provider tree is merged into the carrier wheel, which is then repaired
   with itself as provider: its own binaries are relinked to the unique name, the copies it
   vendored go. A carrier is a provider like any packed one (`read_provider_wheel`), so
   nothing downstream knows the difference. Where no wheel is required by all the others, the
   packed provider is a native-lib wheel of its own, named by ``--set-provider NAME``;
3. link: every other wheel is repaired with the carrier as ``--provider``: relinked, its copies
   removed, ``Requires-Dist: <carrier>==<version>`` and the runtime hook added, so that it
   loads the carried library also from another sys.path entry.

Wheels are taken in file-name order and grouped by platform (an x86_64 binding is carried by
the x86_64 core), so the outputs do not depend on the command line's order; with
SOURCE_DATE_EPOCH they are byte-identical. The set is all or nothing: every output is staged
in ``-w`` and renamed into place only when every wheel of the set was repaired (a dry run
repairs the set in a private directory and keeps nothing).
"""

from __future__ import annotations

import configparser
import contextlib
import io
import logging
import os
import posixpath
import shutil
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from sharewheel.errors import ConfigError, InputWheelError
from sharewheel.files import TMP_MARK, remove_stale_temporaries, sha256_hex, work_dir
from sharewheel.manifest import MANIFEST_NAME, Manifest
from sharewheel.metadata import add_requirements
from sharewheel.pack import PackOptions, pack
from sharewheel.plan import Planned, RepairOptions, planned
from sharewheel.platforms import PlatformKey, keys_of
from sharewheel.registry import read_provider_wheel
from sharewheel.repair import RepairReport, repair_wheel, writable_dir
from sharewheel.vendored import is_vendored_path, original_names, tool_hash
from sharewheel.wheelfile import InputWheel, WheelName, write_wheel

log = logging.getLogger("sets")

Key = tuple[str, ...]


@dataclass(frozen=True)
class Vendored:
    """One library one wheel vendors (or would): what recognises other copies of it, and its bytes."""

    wheel: str  # the wheel's file name
    name: str  # the name its users were linked against: soname, or a copy's name before the tool renamed it
    keys: frozenset[Key]  # equal keys: the same library (see _keys_of_source, _keys_of_copy)
    file: Path  # a copy of the original (or of the vendored copy, its soname restored)
    needed: tuple[str, ...] = ()  # the names of other vendored copies it links to (rewritten like `name`)
    search: tuple[Path, ...] = ()  # the directory the original was found in (its build prefix)
    copy: bool = False  # an earlier repair's copy (its soname is a guess from its file name)


@dataclass(frozen=True)
class Shared:
    """A library two or more wheels of the set would vendor: packed once."""

    name: str
    file: Path
    wheels: tuple[str, ...]
    search: tuple[Path, ...] = ()  # where its own dependencies were found (the build prefix)
    siblings: tuple[Path, ...] = ()  # vendored copies it links that are not shared (kept copies)


def repair_set(jobs: Sequence[tuple[Path, RepairOptions]], out_dir: Path,
               set_provider: str | None = None) -> list[RepairReport]:
    """Repair each (wheel, options) as one release into `out_dir` (see the module doc); the
    reports in file-name order, a --set-provider wheel first. Any error: nothing is written.
    A dry run repairs the set in a private directory (the carrier must exist for the others to
    be planned against it) and reports what repair would write."""
    dry_run = any(options.dry_run for _, options in jobs)
    given = {path: replace(options, dry_run=False) for path, options in jobs}
    ordered = sorted(given, key=lambda p: p.name)
    names = {path: WheelName.parse(path.name) for path in ordered}
    _check_one_release(names)
    with work_dir() as tmp:
        if dry_run:
            out, stage = Path(tmp, "out"), Path(tmp, "stage")
        else:
            out = writable_dir(out_dir)
            remove_stale_temporaries(out)
            stage = out / f".sharewheel-set{TMP_MARK}{os.getpid()}"
        stage.mkdir()
        try:
            reports: list[RepairReport] = []
            for index, (_, members) in enumerate(_by_platform(ordered, names)):
                reports += _repair_members(members, out, stage, Path(tmp, str(index)), given, set_provider)
            reports = [replace(r, output=out_dir.resolve() / r.output.name, dry_run=dry_run) for r in reports]
            _check_outputs(reports)
            if not dry_run:
                for report in reports:
                    if report.staged is not None:
                        os.replace(report.staged, report.output)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return [replace(report, staged=None) for report in reports]


def _check_one_release(names: dict[Path, WheelName]) -> None:
    """A set is one release: its wheels share one version, the one the others will require."""
    versions = sorted({Version(name.version) for name in names.values()})
    if len(versions) > 1:
        by_version = "; ".join(
            f"{v}: {', '.join(p.name for p, n in names.items() if Version(n.version) == v)}" for v in versions)
        raise InputWheelError(f"--set: the wheels of a set are one release, but they have {len(versions)} versions "
                              f"({by_version})")


def _by_platform(paths: list[Path], names: dict[Path, WheelName]) -> list[tuple[str, list[Path]]]:
    """The wheels grouped by the OS and architecture they run on (pure wheels on their own):
    only wheels of one platform can share a loaded library."""
    groups: dict[str, list[Path]] = {}
    for path in paths:
        keys: set[PlatformKey] = keys_of(names[path].platforms)
        groups.setdefault(",".join(sorted(map(str, keys))) or "any", []).append(path)
    return sorted(groups.items())


def _repair_members(members: list[Path], out_dir: Path, stage: Path, tmp: Path,
                    given: dict[Path, RepairOptions], set_provider: str | None) -> list[RepairReport]:
    """Find what the wheels of one platform share, pack it once, repair every wheel against it.
    (Their options are those of one OS: [tool.sharewheel.<os>] applies to all of them alike.)"""
    tmp.mkdir(parents=True)
    # a wheel of the set that is a provider already (a carrier repaired before) serves the others
    carriers = tuple(p for p in members if read_provider_wheel(p) is not None)
    given = {p: replace(given[p], set_providers=carriers) for p in members}
    options = given[members[0]]
    shared = find_shared(members, given, tmp / "found")
    if not shared:
        return [repair_wheel(p, out_dir, given[p], stage=stage) for p in members]
    projects = {path: _project(path) for path in members}
    carrier = _carrier(projects)
    listed = ", ".join(s.name for s in shared)
    if carrier is None and set_provider is None:
        raise ConfigError(
            f"--set: {listed} would be vendored by {_wheels(shared)}, but no wheel of the set is required by all the "
            "others to carry it: name a new native-lib wheel for it with --set-provider NAME"
        )
    version = WheelName.parse(members[0].name).version
    prefix = _prefix(shared, tmp / "prefix")
    own_names: dict[str, str] = {canonicalize_name(name): name for name, _ in projects.values()}
    if carrier is None and set_provider is not None and canonicalize_name(set_provider) in own_names:
        raise ConfigError(f"--set-provider {set_provider}: a wheel of the set has that name; choose another")
    if carrier is not None and set_provider is not None:
        log.warning("--set-provider %s: not used; %s, which every other wheel of the set requires, carries %s",
                    set_provider, own_names[carrier], listed)
    carried_by = own_names[carrier] if carrier is not None else set_provider
    assert carried_by is not None
    package = f"_{canonicalize_name(carried_by).replace('-', '_')}_native" if carrier is not None else None
    packed = pack(PackOptions(
        prefix, carried_by, version, tmp / "packed", libs=tuple(s.name for s in shared), abi="exact",
        providers=options.providers, plugins=options.plugins, package=package,
        library_path=tuple(sorted({d for s in shared for d in s.search})),
        summary=f"{listed}, shared by the wheels of {carried_by} {version} (sharewheel repair --set)",
    ))
    reports: list[RepairReport] = []
    providers: list[Path] = []
    if carrier is None:
        staged = stage / packed.output.name
        shutil.move(packed.output, staged)
        reports.append(replace(packed, output=out_dir / packed.output.name, staged=staged,
                               carried=_carried(staged)))
        providers.append(staged)
    for path in members:
        if carrier is not None and canonicalize_name(projects[path][0]) == carrier:
            merged = carry(path, packed.output, tmp / "merged" / path.stem)
            own = replace(given[path], set_providers=(merged,))
            report = repair_wheel(merged, out_dir, own, stage=stage)
            reports.append(replace(report, input=path, carried=_carried(packed.output)))
            assert report.staged is not None
            providers.append(report.staged)
    for path in members:
        if carrier is None or canonicalize_name(projects[path][0]) != carrier:
            linked = replace(given[path], set_providers=tuple(providers[:1]))
            reports.append(repair_wheel(path, out_dir, linked, stage=stage))
    return reports


def _wheels(shared: Iterable[Shared]) -> str:
    return ", ".join(sorted({w for s in shared for w in s.wheels}))


# --- find ----------------------------------------------------------------------------------------


def find_shared(paths: Sequence[Path], given: dict[Path, RepairOptions], keep: Path) -> list[Shared]:
    """The libraries two or more of `paths` would vendor, each once (copies kept under `keep`)."""
    found: list[Vendored] = []
    for index, path in enumerate(paths):
        with _quiet(), planned(path, replace(given[path], dry_run=True, progress=None)) as done:
            if not done.pure:
                found += vendored_by(done, keep / str(index))
    groups = _groups(found)
    shared = []
    for group in groups:
        wheels = tuple(sorted({v.wheel for v in group}))
        if len(wheels) >= 2:
            first = min(group, key=lambda v: (v.copy, v.wheel, v.name))  # a real soname before a guessed one
            shared.append(Shared(first.name, first.file, wheels, first.search))
    names = {s.name for s in shared}
    for index, s in enumerate(shared):  # the copies a shared copy links that are not shared themselves
        owner = next(v for v in found if v.file == s.file)
        siblings = tuple(v.file for v in found if v.wheel == owner.wheel and v.name in owner.needed and v.name not in names)
        shared[index] = replace(s, siblings=siblings)
    clashing = sorted({s.name for s in shared if sum(t.name == s.name for t in shared) > 1})
    if clashing:
        raise InputWheelError(f"--set: the wheels vendor different libraries named {clashing[0]} "
                              f"({_wheels(s for s in shared if s.name == clashing[0])}): they cannot be carried once")
    return sorted(shared, key=lambda s: s.name)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Logged warnings off: the find pass plans each wheel only to look (what it would vendor is
    mostly carried instead), the repair that follows warns about what it really does, once."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def vendored_by(done: Planned, keep: Path) -> list[Vendored]:
    """What a planned wheel vendors: the files the OS tool copied in (by their source), and the
    copies an earlier repair (auditwheel, delocate, delvewheel) left in the wheel."""
    assert done.analysis is not None and done.outcome is not None
    adapter, tree, wheel = done.analysis.adapter, done.analysis.tree, done.wheel.path.name
    keep.mkdir(parents=True, exist_ok=True)
    found = []
    for _, source in sorted(done.outcome.sources.items()):
        real = Path(source).resolve()
        described = adapter.describe(real)
        name = posixpath.basename(described.name) if described is not None else real.name
        kept = keep / name
        shutil.copyfile(real, kept)
        found.append(Vendored(wheel, name, _keys_of_source(real, name), kept, search=(real.parent,)))
    copies = {posixpath.basename(p): p for p in done.analysis.binaries if is_vendored_path(p) and (tree / p).is_file()}
    restored = {name: _original(name) for name in copies}
    for name, path in sorted(copies.items()):
        kept = keep / restored[name]
        shutil.copyfile(tree / path, kept)
        # (a Mach-O load command names a path: delocate's `@loader_path/<copy>`)
        needed = {n: restored[posixpath.basename(n)] for n in done.analysis.binaries[path].needed
                  if posixpath.basename(n) in copies}
        _restore_names(adapter.os, kept, restored[name], needed)
        found.append(Vendored(wheel, restored[name], _keys_of_copy(kept, name), kept,
                              tuple(sorted(set(needed.values()))), copy=True))
    return found


def _original(name: str) -> str:
    """A vendored copy's name before its tool renamed it (auditwheel's and delvewheel's hash taken off)."""
    names = original_names(name)
    return names[1] if len(names) > 1 else name


def _keys_of_source(real: Path, soname: str) -> frozenset[Key]:
    """A library about to be vendored: its file, its soname in its directory (the build prefix),
    and the name auditwheel gives its copy (the content's hash), which an earlier repair's copy
    of the same file carries."""
    digest = sha256_hex(real)
    return frozenset({("file", str(real)), ("prefix", soname, str(real.parent)),
                      ("tool", f"auditwheel:{digest[:8]}"), ("content", digest)})


def _keys_of_copy(path: Path, name: str) -> frozenset[Key]:
    """A copy an earlier repair left: auditwheel's and delvewheel's names hash the original's
    content (equal names, equal originals); delocate keeps the name, so equal bytes it is, once
    its names are restored (`path`: delocate writes each wheel's own path into the install id)."""
    hashed = tool_hash(name)
    return frozenset({("tool", hashed) if hashed else ("content", sha256_hex(path))})


def _groups(found: list[Vendored]) -> list[list[Vendored]]:
    """Vendored libraries joined by any key they share (union-find), in a stable order."""
    parent = list(range(len(found)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[Key, int] = {}
    for index, vendored in enumerate(found):
        for key in sorted(vendored.keys):
            if key in first:
                parent[root(index)] = root(first[key])
            else:
                first[key] = index
    groups: dict[int, list[Vendored]] = {}
    for index, vendored in enumerate(found):
        groups.setdefault(root(index), []).append(vendored)
    return sorted(groups.values(), key=lambda g: sorted((v.wheel, v.name) for v in g))


def _restore_names(system: str, path: Path, name: str, needed: dict[str, str]) -> None:
    """Give a kept copy its original name back (ELF soname, Mach-O install id), and its links to
    other copies (`needed`: the name it loads → that copy's original name) theirs, so that pack
    packs it under the name its users were linked against, and copies of one library that
    delocate edited per wheel are equal bytes again. A PE copy's export name is delvewheel's
    original; only its imports of other copies were mangled."""
    path.chmod(0o755)
    pairs = [(old, new) for old, new in sorted(needed.items()) if old != new]
    if system == "macos":
        from sharewheel.adapters import macho

        # the id delocate gave it (/DLC/<package>/.dylibs/<name>) differs per wheel: @rpath, as a
        # relocatable build names it; its loads of other copies (@loader_path/<name>) alike
        macho.edit(path, install_id=f"@rpath/{name}", change={old: f"@rpath/{new}" for old, new in pairs})
        return
    if system == "windows":
        from sharewheel.adapters import windows

        windows.rename_imports(path, dict(pairs))
        return
    from sharewheel import readers
    from sharewheel.adapters import manylinux

    patcher = manylinux.elf_patcher("linux")
    patcher.set_soname(path, name)
    if pairs:
        patcher.replace_needed(path, *pairs)
    patcher.apply_updates()
    readers.forget(path)


def _prefix(shared: list[Shared], prefix: Path) -> Path:
    """An install prefix holding the shared libraries under their original names (and the
    vendored copies they link that are not shared: pack vendors those into the carrier)."""
    lib = prefix / "lib"
    lib.mkdir(parents=True)
    for s in shared:
        for source, name in ((s.file, s.name), *((f, f.name) for f in s.siblings)):
            if not (lib / name).exists():
                shutil.copyfile(source, lib / name)
                (lib / name).chmod(0o755)
    return prefix


# --- carry ---------------------------------------------------------------------------------------


def _project(path: Path) -> tuple[str, list[Requirement]]:
    """A wheel's project name (METADATA's) and its unconditional Requires-Dist."""
    with InputWheel.open(path) as wheel:
        text = wheel.read_text(f"{wheel.dist_info}/METADATA")
        name = wheel.project_name
    requirements = []
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "requires-dist":
            try:
                requirement = Requirement(value.strip())
            except InvalidRequirement:
                continue  # (repair says so, with the file's name)
            if requirement.marker is None:
                requirements.append(requirement)
    return name, requirements


def _carrier(projects: dict[Path, tuple[str, list[Requirement]]]) -> str | None:
    """The distribution (canonical name) every other distribution of the set requires, if any:
    it carries the shared libraries (the first by name, should two require each other)."""
    distributions = {canonicalize_name(name) for name, _ in projects.values()}
    requires: dict[str, set[str]] = {d: set() for d in distributions}
    for name, requirements in projects.values():
        requires[canonicalize_name(name)] |= {canonicalize_name(r.name) for r in requirements}
    candidates = sorted(d for d in distributions if len(distributions) > 1 and
                        all(d in requires[other] for other in distributions if other != d))
    return candidates[0] if candidates else None


def carry(wheel_path: Path, provider_path: Path, out: Path) -> Path:
    """`wheel_path` with the provider wheel `provider_path` (packed under the same name and
    version) merged in: its package, its manifest's `provides`, its entry points and
    requirements. Repaired with itself as provider, the result links its own binaries to it."""
    with work_dir() as tmp, InputWheel.open(wheel_path) as wheel, InputWheel.open(provider_path) as provider:
        tree = Path(tmp, "tree")
        wheel.extract(tree)
        dist_info = tree / wheel.dist_info
        for info in provider.zip.infolist():
            if info.is_dir() or info.filename.startswith(f"{provider.dist_info}/"):
                continue
            target = tree.joinpath(*info.filename.split("/"))
            data = provider.read(info.filename)
            if target.exists() and target.read_bytes() != data:
                raise InputWheelError(f"{wheel_path.name}: already has {info.filename}; it cannot carry the set's "
                                      "libraries")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(0o755 if (info.external_attr >> 16) & 0o111 else 0o644)
        given = Manifest.loads(provider.read_text(f"{provider.dist_info}/{MANIFEST_NAME}"), provider_path.name)
        manifest_path = dist_info / MANIFEST_NAME
        own = Manifest.loads(manifest_path.read_text(encoding="utf-8"), wheel_path.name, InputWheelError) \
            if manifest_path.is_file() else Manifest()
        if own.provides is not None and own.provides.package != (given.provides.package if given.provides else None):
            raise InputWheelError(f"{wheel_path.name}: already a native-lib wheel ({own.provides.package}); "
                                  "it cannot carry the set's libraries as well")
        manifest_path.write_text(
            Manifest(given.provides, own.links, tuple(sorted({*own.vendored, *given.vendored}))).dumps(),
            encoding="utf-8")
        _merge_entry_points(dist_info / "entry_points.txt", provider.read_text(f"{provider.dist_info}/entry_points.txt"))
        top_level = dist_info / "top_level.txt"  # (setuptools' list of import packages, where there is one)
        if top_level.is_file() and given.provides is not None:
            names = top_level.read_text(encoding="utf-8").split()
            top_level.write_text("\n".join(sorted({*names, given.provides.package})) + "\n", encoding="utf-8")
        metadata = dist_info / "METADATA"
        added = [Requirement(line.split(":", 1)[1].strip()) for line in
                 provider.read_text(f"{provider.dist_info}/METADATA").splitlines() if line.startswith("Requires-Dist:")]
        if added:
            metadata.write_text(add_requirements(metadata.read_text(encoding="utf-8"), added, str(metadata)),
                                encoding="utf-8")
        (dist_info / "RECORD").unlink()
        return write_wheel(tree, wheel.dist_info, out / wheel_path.name)


def _carried(provider_path: Path) -> tuple[tuple[str, str], ...]:
    """(original, unique name) of each library a packed provider holds: what its carrier carries."""
    with zipfile.ZipFile(provider_path) as zf:
        member = next(n for n in zf.namelist() if n.endswith(f".dist-info/{MANIFEST_NAME}"))
        provides = Manifest.loads(zf.read(member).decode("utf-8"), provider_path.name).provides
    return tuple((lib.name, lib.unique_name) for lib in provides.libraries) if provides is not None else ()


def _merge_entry_points(path: Path, added: str) -> None:
    """The carrier's entry_points.txt with the provider's groups added (sharewheel.providers,
    pkg_config, cmake.prefix), its own entries kept."""
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    if path.is_file():
        parser.read_string(path.read_text(encoding="utf-8"), str(path))
    extra = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    extra.optionxform = str  # type: ignore[assignment,method-assign]
    extra.read_string(added)
    for section in extra.sections():
        if not parser.has_section(section):
            parser.add_section(section)
        for key, value in extra.items(section):
            parser.set(section, key, value)
    text = io.StringIO()
    parser.write(text)
    path.write_text(text.getvalue().rstrip("\n") + "\n", encoding="utf-8")


# --- commit --------------------------------------------------------------------------------------


def _check_outputs(reports: list[RepairReport]) -> None:
    """No output overwrites an input or another output (checked before any is renamed into place)."""
    outputs: dict[Path, Path] = {}
    for report in reports:
        if report.output.exists() and report.input.exists() and report.output.samefile(report.input):
            raise InputWheelError(f"{report.input}: the repaired wheel would overwrite its input; choose another -w")
        if report.output in outputs:
            raise InputWheelError(f"{report.input.name} and {outputs[report.output].name} both repair to "
                                  f"{report.output.name}")
        outputs[report.output] = report.input
