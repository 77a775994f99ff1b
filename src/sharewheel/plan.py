"""analyze → plan → apply: every decision repair makes, made once, for repair, --dry-run and show.

:func:`planned` reads a wheel (:func:`analyze`), finds its providers, decides what to link,
unvendor and prove (:func:`make_plan`) and carries it out in a private work tree
(:func:`apply`): the OS tool vendors and tags there, the hook and the dist-info are written
there. `repair` then writes that tree as the output wheel; `repair --dry-run` and `show` render
the same :class:`Planned` instead, so the three cannot disagree — nothing before the output file
is ever left out of a dry run, only the output file itself.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import posixpath
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from packaging.requirements import Requirement as Specified
from packaging.utils import canonicalize_name

from sharewheel.abi import AbiPolicy
from sharewheel.adapters import BinaryInfo, PlatformAdapter, RepairOutcome, adapter_for
from sharewheel.errors import InputWheelError, SharewheelError
from sharewheel.files import sha256_hex, work_dir
from sharewheel.hooks import install_hooks
from sharewheel.launchers import install_launchers
from sharewheel.licenses import VendoredLicenses, add_vendored_licenses
from sharewheel.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_SIZE,
    Link,
    Manifest,
    Provides,
    check_owner,
)
from sharewheel.metadata import add_requirements, forget_requirements
from sharewheel.platforms import keys_of
from sharewheel.proof import oldest_stand_ins, prove_stand_ins
from sharewheel.registry import Match, Provider, Registry
from sharewheel.runtime import Libc, Requirement
from sharewheel.sbom import write_repaired
from sharewheel.toolflags import ToolFlags
from sharewheel.unvendor import Unvendoring, plan_unvendoring
from sharewheel.vendored import is_vendored_path
from sharewheel.wheelfile import InputWheel, Unchanged, WheelName


class Progress(Protocol):
    """Where repair reports its stages and the bytes it has got through (a terminal's bar)."""

    def stage(self, label: str, total: int) -> None: ...  # total 0: no measure; label "": finished

    def advance(self, done: int) -> None: ...


class _NoProgress:
    def stage(self, label: str, total: int) -> None:
        pass

    def advance(self, done: int) -> None:
        pass


@dataclass(frozen=True)
class RepairOptions:
    """What repair, --dry-run and show are told (flags, [tool.sharewheel], SHAREWHEEL_*)."""

    providers: tuple[Path | str, ...] = ()  # wheels, directories of wheels, installed distribution names
    plugins: tuple[Path, ...] = ()  # plugin files (sharewheel.plugin), before installed and shipped ones
    exclude: tuple[str, ...] = ()  # fnmatch patterns: neither vendored nor relinked
    plat: str = "auto"
    lib_sdir: str | None = None  # None: the OS tool's default (.libs, .dylibs)
    require_archs: str | tuple[str, ...] | None = None
    install_hook: bool = True  # False for provider wheels: their own load() loads what they need
    declared_requires: tuple[str, ...] = ()  # providers required even if no binary links them
    library_path: tuple[Path, ...] = ()  # searched first for libraries to vendor
    dry_run: bool = False  # decide and report, write nothing
    tolerate_missing: bool = False  # show: a library not found is reported, not an error
    progress: Progress | None = None  # told what repair is doing, for a progress bar
    abi: Mapping[str, AbiPolicy] = field(default_factory=dict)  # consumer's overrides (config): narrow only
    set_providers: tuple[Path, ...] = ()  # repair --set: its carrier, beside the providers given or installed
    tools: ToolFlags = field(default_factory=ToolFlags)  # auditwheel's, delocate's, delvewheel's own flags


@dataclass(frozen=True)
class Analysis:
    """A wheel as read: its name, its unpacked tree, its binaries and what an earlier repair recorded."""

    wheel: InputWheel
    tree: Path  # unpacked: what repair may read or change (the rest stays in the zip)
    unchanged: Unchanged  # the entries left in the zip, copied still compressed
    adapter: PlatformAdapter
    binaries: dict[str, BinaryInfo]
    previous: Manifest  # an earlier repair's or pack's manifest (empty if none)

    @property
    def distribution(self) -> str:
        return self.wheel.name.distribution


@dataclass(frozen=True)
class Plan:
    """What repair does, decided before the OS tool runs: links, unvendoring, requirements, hook.

    The adapter gets the plan and the tree; what the OS tool then decides (what it vendors, the
    tags, each binary's needs) comes back as the :class:`~sharewheel.adapters.RepairOutcome`."""

    wheel: WheelName
    source: Path  # the input wheel file
    dist_info: str
    options: RepairOptions
    relink: dict[str, dict[str, str]]  # binary → {needed name: provider's unique name}
    fallback_dirs: dict[str, tuple[str, ...]]  # binary → tree-relative provider lib dirs
    links: tuple[Link, ...]
    requirements: tuple[Specified, ...]  # the Requires-Dist added
    runtime: tuple[Requirement, ...]  # how the hook loads each provider (sharewheel.runtime)
    exclude: frozenset[str]  # names never vendored: the provided ones and --exclude patterns
    provided: dict[str, Callable[[Path], None]]  # unique name → writes the provider's file to a path
    matches: dict[tuple[str, str], Match] = field(default_factory=dict)  # (binary, needed name) → stand-in
    provider_platforms: tuple[tuple[str, ...], ...] = ()  # platform tags of each provider linked
    unvendoring: Unvendoring = field(default_factory=Unvendoring)

    @property
    def distribution(self) -> str:
        return self.wheel.distribution

    @property
    def platforms(self) -> tuple[str, ...]:
        """The wheel's platform tags before repair."""
        return tuple(self.wheel.platforms)


@dataclass(frozen=True)
class Planned:
    """A wheel analysed, planned and repaired in its work tree: what repair writes, or --dry-run
    and show render. For a pure wheel only `wheel` is set: there is nothing to repair."""

    wheel: InputWheel
    analysis: Analysis | None = None
    plan: Plan | None = None
    outcome: RepairOutcome | None = None
    links: tuple[Link, ...] = ()  # the plan's links, binaries renamed as the hook renamed them
    vendored: tuple[str, ...] = ()  # what this repair vendored, and copies an earlier one left
    provides: Provides | None = None  # a provider wheel's own manifest, updated
    licenses: VendoredLicenses | None = None  # the licences of what this repair vendored (sharewheel.licenses)

    @property
    def pure(self) -> bool:
        return self.analysis is None

    @property
    def output_name(self) -> str:
        if self.outcome is None or self.keeps_tags:  # auditwheel --no-update-tags: the input's own name
            return self.wheel.path.name
        return self.wheel.name.with_platforms(list(self.outcome.platforms))[0].filename

    @property
    def keeps_tags(self) -> bool:
        """auditwheel's --no-update-tags on a Linux wheel: file name and WHEEL stay as they came."""
        return self.plan is not None and self.analysis is not None and _keeps_tags(self.analysis, self.plan)

    @property
    def compress_level(self) -> int | None:
        """auditwheel's -z on a Linux wheel: every entry deflated anew at this level (None: as written)."""
        if self.plan is None or self.analysis is None or self.analysis.adapter.os != "linux":
            return None
        return self.plan.options.tools.linux.zip_compression_level


def _keeps_tags(analysis: Analysis, plan: Plan) -> bool:
    """auditwheel's --no-update-tags applies (a Linux wheel's flag only)."""
    return analysis.adapter.os == "linux" and not plan.options.tools.linux.update_tags


@contextlib.contextmanager
def planned(wheel_path: Path, options: RepairOptions) -> Iterator[Planned]:
    """Analyze, plan and apply one wheel in a private work tree (removed afterwards)."""
    progress = options.progress or _NoProgress()
    with errors_name(wheel_path), InputWheel.open(wheel_path) as wheel, work_dir() as tmp:
        if set(wheel.platforms) == {"any"}:
            yield Planned(wheel)
            return
        analysis = analyze(wheel, Path(tmp, "tree").resolve(), progress)
        # providers for the wheel's OS, architecture and libc (a linux_<arch> tag names no libc: the binaries do)
        needed = [name for info in analysis.binaries.values() for name in info.needed]
        registry = Registry.discover(options.providers, keys_of(wheel.platforms, needed),
                                     plugin_files=options.plugins, abi=options.abi, also=options.set_providers)
        plan = make_plan(analysis, registry, options)
        yield apply(analysis, plan)


def analyze(wheel: InputWheel, tree: Path, progress: Progress | None = None) -> Analysis:
    """Unpack what repair may read or change and read its binaries and earlier manifest."""
    progress = progress or _NoProgress()
    adapter = adapter_for(wheel.platforms, wheel.path.name)
    progress.stage("unpacking", sum(i.compress_size for i in wheel.zip.infolist()))
    unchanged = extract_for_repair(wheel, tree, progress.advance, all_python=adapter.os == "windows")
    progress.stage("analyzing", 0)
    binaries = adapter.binaries(tree)  # (every ELF file is read now, before any other thread runs)
    unchanged.start_check()
    if not binaries:
        raise InputWheelError(f"{wheel.path.name}: no native binaries in the wheel, nothing to repair")
    return Analysis(wheel, tree, unchanged, adapter, binaries, read_manifest(tree, wheel.dist_info, wheel.path.name))


def make_plan(analysis: Analysis, registry: Registry, options: RepairOptions) -> Plan:
    """The vendored copies providers replace, the links, the requirements and the hook; refused
    before anything is relinked where a provider cannot stand in for what it replaces."""
    unvendoring = plan_unvendoring(analysis.tree, analysis.binaries, registry, options.exclude)
    plan = plan_links(analysis, registry, options, unvendoring)
    prove_stand_ins(analysis.adapter, analysis.tree, analysis.binaries, plan, unvendoring, options.library_path)
    # the requirement's floor: the oldest release at hand that stands in too (or the vendored copy's)
    oldest = oldest_stand_ins(analysis.adapter, analysis.tree, analysis.binaries, plan, unvendoring, registry,
                              options.library_path)
    floors = {**unvendoring.floors, **{k: min(v, unvendoring.floors.get(k, v)) for k, v in oldest.items()}}
    if floors != unvendoring.floors:
        plan = plan_links(analysis, registry, options, replace(unvendoring, floors=floors))
    return plan


def apply(analysis: Analysis, plan: Plan) -> Planned:
    """Carry `plan` out in the work tree: copies removed, the OS tool vendoring the rest and the
    provided names relinked, the hook installed, the dist-info rewritten."""
    tree, wheel = analysis.tree, analysis.wheel
    plan.unvendoring.apply(tree)
    outcome = analysis.adapter.repair(plan, tree)
    renamed = dict(outcome.moved)
    if plan.options.install_hook:
        musl = any(p.startswith("musllinux_") for p in outcome.platforms)
        # a set's carrier (Windows): its provider package loads its own libraries, it gets no hook
        own = tuple(f"{r.package}/" for r in plan.runtime
                    if canonicalize_name(r.distribution) == canonicalize_name(plan.distribution))
        hooked = {b: info for b, info in analysis.binaries.items() if not b.startswith(own)}
        renamed |= install_hooks(tree, hooked, plan.runtime, plan.distribution,
                                 libc=Libc.MUSL if musl else Libc.OTHER, wheel=wheel)
        renamed |= install_launchers(tree, plan.links, renamed, plan.runtime, plan.distribution, wheel.dist_info,
                                     wheel)
    links = tuple(replace(link, binary=renamed.get(link.binary, link.binary)) for link in plan.links)
    # what this repair vendored, and the copies an earlier repair (by any tool) left in place
    earlier = {*analysis.previous.vendored, *(b for b in analysis.binaries if is_vendored_path(b))}
    vendored = tuple(sorted({*outcome.vendored, *(v for v in earlier if (tree / v).is_file())}))
    forget_requirements(tree / wheel.dist_info / "METADATA", [link.requirement for link in analysis.previous.links])
    provides = _write_dist_info(tree, wheel, plan.requirements, analysis.previous.provides, links, vendored,
                                outcome.platforms, retag=not _keeps_tags(analysis, plan))
    # the vendored copies' licence files, from the host's package database (PEP 639 License-File)
    licenses = add_vendored_licenses(tree / wheel.dist_info, outcome.sources)
    done = Planned(wheel, analysis, plan, outcome, links, vendored, provides, licenses)
    write_repaired(done)  # <dist-info>/sboms/sharewheel.cdx.json (sharewheel.sbom)
    return done


def plan_links(analysis: Analysis, registry: Registry, options: RepairOptions, unvendoring: Unvendoring) -> Plan:
    """Map every needed name a provider offers (or a vendored copy it replaces) to the
    provider's unique name."""
    distribution = analysis.distribution
    earlier = {(link.binary, link.needed): link.original for link in analysis.previous.links}
    relink: dict[str, dict[str, str]] = {}
    fallback: dict[str, set[str]] = {}
    links: list[Link] = []
    matches: dict[tuple[str, str], Match] = {}  # (binary, needed name) → its stand-in
    files: dict[str, set[str]] = {}
    providers = {}
    provided: dict[str, Callable[[Path], None]] = {}
    own: dict[str, tuple[Provider, set[str]]] = {}  # a set's carrier: its own DLLs its binaries link
    removed = set(unvendoring.removed)  # (a replaced copy that needed another: gone, nothing to relink)
    for binary, info in sorted(analysis.binaries.items()):
        if binary in removed:
            continue
        for name in info.needed:
            match = unvendoring.stand_in(name) or registry.lookup(name)
            if match is None or any(fnmatch.fnmatchcase(name, p) for p in options.exclude):
                continue
            provider, library = match.provider, match.library
            if canonicalize_name(provider.distribution) == canonicalize_name(distribution):
                # a provider's own libraries: never a dependency on itself; but a wheel that
                # carries a library for its set (sharewheel.sets) links its own binaries to it
                if name != library.unique_name:
                    matches[binary, name] = match
                    relink.setdefault(binary, {})[name] = library.unique_name
                    fallback.setdefault(binary, set()).add(posixpath.dirname(library.path))
                if analysis.adapter.os == "windows" and not binary.startswith(f"{provider.provides.package}/"):
                    own.setdefault(canonicalize_name(provider.distribution), (provider, set()))[1].add(
                        library.unique_name)  # no RPATH on Windows: its hook loads it, as the others' do
                continue
            matches[binary, name] = match
            key = canonicalize_name(provider.distribution)
            providers[key] = provider
            files.setdefault(key, set()).add(library.unique_name)
            relink.setdefault(binary, {})[name] = library.unique_name
            provided[library.unique_name] = functools.partial(provider.copy_library, library)
            fallback.setdefault(binary, set()).add(posixpath.dirname(library.path))
            original = earlier.get((binary, name), name)
            floor = unvendoring.floors.get(key)
            links.append(
                Link(binary, library.unique_name, original, provider.distribution, provider.provides.version,
                     str(provider.requirement(floor)))
            )
    for declared in options.declared_requires:
        required = registry.distribution(declared)
        if required is None:
            raise SharewheelError(
                f"--requires {declared}: no such provider (give its wheel with --provider, or install it)"
            )
        key = canonicalize_name(required.distribution)
        providers[key] = required
        files.setdefault(key, {lib.unique_name for lib in required.provides.libraries})
    wheel = analysis.wheel
    return Plan(
        wheel=wheel.name,
        source=wheel.path,
        dist_info=wheel.dist_info,
        options=options,
        relink=relink,
        fallback_dirs={b: tuple(sorted(d)) for b, d in fallback.items()},
        links=tuple(links),
        requirements=tuple(providers[k].requirement(unvendoring.floors.get(k)) for k in sorted(providers)),
        runtime=(*(providers[k].runtime(files[k], unvendoring.floors.get(k)) for k in sorted(providers)),
                 *(provider.runtime(unique) for provider, unique in own.values())),
        exclude=frozenset({*options.exclude, *(name for m in relink.values() for name in m)}),
        provided=provided,
        matches=matches,
        provider_platforms=tuple(tuple(providers[k].provides.platform.split(".")) for k in sorted(providers)),
        unvendoring=unvendoring,
    )


def _write_dist_info(
    tree: Path,
    wheel: InputWheel,
    requirements: Sequence[Specified],
    provides: Provides | None,
    links: tuple[Link, ...],
    vendored: tuple[str, ...],
    platforms: tuple[str, ...],
    *,
    retag: bool = True,
) -> Provides | None:
    """METADATA's Requires-Dist, the manifest, the WHEEL tags (unless not `retag`: auditwheel's
    --no-update-tags leaves WHEEL as it is); signatures over the old RECORD go."""
    dist_info = tree / wheel.dist_info
    metadata = dist_info / "METADATA"
    metadata.write_text(
        add_requirements(metadata.read_text(encoding="utf-8"), requirements, f"{wheel.dist_info}/METADATA"),
        encoding="utf-8",
    )
    if provides is not None:
        provides = replace(
            provides,
            platform=".".join(sorted(platforms)),  # (as WHEEL lists them: the same however it was reached)
            libraries=tuple(replace(lib, sha256=sha256_hex(tree / lib.path)) for lib in provides.libraries),
        )
    if provides is not None or links:  # (a wheel nothing was linked in stays as auditwheel would write it)
        (dist_info / MANIFEST_NAME).write_text(Manifest(provides, links, vendored).dumps(), encoding="utf-8")
    for signature in ("RECORD.jws", "RECORD.p7s"):  # invalid once any file changed
        (dist_info / signature).unlink(missing_ok=True)
    if retag:
        _set_wheel_tags(dist_info / "WHEEL", wheel.name.with_platforms(list(platforms))[1])
    return provides


_BINARY_SUFFIXES = (".so", ".dylib", ".pyd", ".dll", ".exe")
_BINARY_MAGICS = (b"\x7fELF", b"\xfe\xed\xfa", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba", b"MZ")


def extract_for_repair(wheel: InputWheel, tree: Path, progress: Callable[[int], None] | None = None, *,
                       all_python: bool = True) -> Unchanged:
    """Unpack what repair may read or change — binaries, dist-info, delvewheel's load-order
    files (unvendoring prunes them), the packages' `__init__.py` (the hook goes there) and, with
    `all_python` (delvewheel reads and patches them), every Python file — and leave the rest
    (data and Python sources, often most of a large wheel) in the zip to be copied as it is."""

    def wanted(info: zipfile.ZipInfo) -> bool:
        name = info.filename
        if name.endswith((".py", ".pyi")):  # never loaded as native code: no need to look inside
            return all_python or posixpath.basename(name) == "__init__.py"
        return (
            name.startswith(f"{wheel.dist_info}/")
            or name.endswith(_BINARY_SUFFIXES)
            or posixpath.basename(name).startswith(".load-order-")
            or wheel.starts_with(info, _BINARY_MAGICS)
        )

    return wheel.extract(tree, wanted, progress)


@contextlib.contextmanager
def errors_name(wheel: Path) -> Iterator[None]:
    """Every error while working on `wheel` names it: with dist/*.whl the culprit is clear."""
    try:
        yield
    except SharewheelError as e:
        if wheel.name in str(e):
            raise
        named = type(e)(f"{wheel.name}: {e}")
        named.__dict__.update(e.__dict__)  # what an error carries beside its message (ProofError.provider)
        raise named from None


def read_manifest(tree: Path, dist_info: str, wheel: str) -> Manifest:
    """The manifest an earlier repair or pack left in the tree, if any, checked as the wheel's
    own (see :func:`check_own_manifest`)."""
    path = tree / dist_info / MANIFEST_NAME
    where = f"{wheel}: {dist_info}"  # (the errors name the manifest)
    if not path.is_file():
        return Manifest()
    if path.stat().st_size > MAX_MANIFEST_SIZE:
        raise InputWheelError(f"{where}/{MANIFEST_NAME} is larger than {MAX_MANIFEST_SIZE} bytes")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputWheelError(f"{where}/{MANIFEST_NAME} is not UTF-8 text") from None
    manifest = Manifest.loads(text, where, InputWheelError)
    check_own_manifest(manifest, tree, dist_info, where)
    return manifest


def check_own_manifest(manifest: Manifest, tree: Path, dist_info: str, where: str) -> None:
    """What repair keeps of an earlier manifest must be this wheel's: the provider it says it is
    (rewritten with its files' hashes) is this distribution at this version, and every file it
    provides is a file of the wheel. (Its vendored paths and link binaries stay inside the wheel:
    Manifest.loads checks that.)"""
    if manifest.provides is None:
        return
    name, _, version = dist_info[: -len(".dist-info")].partition("-")  # checked against the file name and METADATA
    check_owner(manifest.provides, name, version, where, InputWheelError)
    for library in manifest.provides.libraries:
        path = tree / library.path
        if path.is_symlink() or not path.is_file():
            what = "a directory" if path.is_dir() else "not a library file in the wheel"
            raise InputWheelError(f"{where}: {MANIFEST_NAME} provides {library.path}, which is {what}")


def _set_wheel_tags(wheel_file: Path, tag_lines: list[str]) -> None:
    lines = [line for line in wheel_file.read_text(encoding="utf-8").splitlines() if not line.startswith("Tag:")]
    while lines and not lines[-1].strip():
        lines.pop()
    wheel_file.write_text("\n".join([*lines, *(f"Tag: {t}" for t in tag_lines)]) + "\n", encoding="utf-8")
