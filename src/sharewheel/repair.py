"""`sharewheel repair`: analyze → plan → apply → write, for one consumer wheel.

The OS adapter vendors what no provider offers (as auditwheel/delocate/delvewheel would) and
relinks what a provider offers to the provider's unique name; sharewheel adds the runtime hook,
the Requires-Dist from the provider's ABI policy and a record of what it linked, then writes
the wheel atomically. The input wheel is only ever read.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import logging
import os
import posixpath
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sharewheel import loader_template
from sharewheel.abi import AbiPolicy
from sharewheel.adapters import BinaryInfo, PlatformAdapter, RepairJob, adapter_for
from sharewheel.errors import SharewheelError
from sharewheel.hooks import install_hooks
from sharewheel.manifest import MANIFEST_NAME, Link, Manifest, Provides
from sharewheel.metadata import add_requirements
from sharewheel.platforms import keys_of
from sharewheel.proof import prove_stand_ins
from sharewheel.registry import Match, Registry
from sharewheel.unvendor import Unvendoring, describe_saved, plan_unvendoring
from sharewheel.vendored import is_vendored_path
from sharewheel.wheelfile import (
    InputWheel,
    Unchanged,
    bytes_to_write,
    copy_wheel,
    work_dir,
    write_wheel,
)

log = logging.getLogger("repair")


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
    progress: Progress | None = None  # told what repair is doing, for a progress bar
    abi: Mapping[str, AbiPolicy] = field(default_factory=dict)  # consumer's overrides (config): narrow only


@dataclass(frozen=True)
class Plan:
    """What repair will do, decided before any file is touched."""

    relink: dict[str, dict[str, str]]
    fallback_dirs: dict[str, tuple[str, ...]]
    links: tuple[Link, ...]
    requirements: tuple[Requirement, ...]
    runtime: tuple[loader_template.Requirement, ...]
    exclude: frozenset[str]
    provided: dict[str, Callable[[Path], None]]  # unique name → writes the provider's file to a path
    matches: dict[tuple[str, str], Match] = field(default_factory=dict)  # (binary, needed name) → stand-in
    provider_platforms: tuple[tuple[str, ...], ...] = ()  # platform tags of each provider linked


@dataclass(frozen=True)
class RepairReport:
    input: Path
    output: Path
    links: tuple[Link, ...]
    vendored: tuple[str, ...]
    platforms: tuple[str, ...]
    requirements: tuple[str, ...] = field(default=())
    unvendored: tuple[str, ...] = field(default=())  # copies removed from an already-repaired wheel
    saved: int = 0  # their bytes
    replaced_by: dict[str, str] = field(default_factory=dict)  # removed copy → the provider standing in
    dry_run: bool = False  # nothing was written; `vendored` names what the OS tool would vendor
    pure: bool = False  # a wheel for any platform: copied unchanged, nothing to repair
    staged: Path | None = None  # written here, for the caller to rename to `output`

    def plan(self) -> list[str]:
        """What repair does (or, dry, would do) and why: `-v` logs it, `--dry-run` prints it."""
        if self.pure:
            return ["copy unchanged: a pure-Python wheel (platform any) has nothing to repair"]
        lines = []
        for link in self.links:
            how = f"replacing the vendored copy {link.original}" if link.original in {
                posixpath.basename(p) for p in self.unvendored} else "not vendored"
            lines.append(f"link {link.binary}: {link.original} -> {link.needed} from {link.provider} "
                         f"{link.version} ({how})")
        for path in self.unvendored:
            why = (f"{self.replaced_by[path]} provides it" if path in self.replaced_by
                   else "only the removed copies needed it")
            lines.append(f"remove {path}: {why}")
        lines += [f"vendor {v}: no provider offers it" for v in self.vendored]
        lines += [f"require {r}" for r in self.requirements]
        lines.append(f"tag {', '.join(self.platforms)}")
        return lines

    def summary(self) -> str:
        if self.dry_run:
            return f"{self.input.name}: dry run, nothing written; repair would write {self.output.name}"
        if self.pure:
            done = "already there" if os.path.realpath(self.input) == os.path.realpath(self.output) else "copied unchanged"
            return f"{self.output.name}: pure Python (platform any), nothing to repair; {done}"
        linked = ", ".join(sorted({f"{l.original} -> {l.needed} ({l.provider} {l.version})" for l in self.links}))
        vendored = ", ".join(posixpath.basename(v) for v in self.vendored)
        removed = ""
        if self.unvendored:
            names = ", ".join(posixpath.basename(v) for v in self.unvendored)
            removed = f"; unvendored {names}, saving {describe_saved(self.saved)}"
        return (
            f"{self.output.name}: linked {linked or 'nothing'}; vendored {vendored or 'nothing'}"
            f"{removed}; tagged {', '.join(self.platforms)}"
        )


def repair_wheel(
    wheel_path: Path, out_dir: Path, options: RepairOptions, *, taken: Mapping[Path, Path] | None = None,
    stage: Path | None = None,
) -> RepairReport:
    """Repair one wheel into `out_dir`; `taken` maps outputs already written in this run to their
    inputs. With `stage`, the wheel is written there under its final name and the caller renames
    it into `out_dir` (sharewheel.batch: several wheels repaired at once commit in input order)."""
    out_dir = out_dir.resolve() if options.dry_run else writable_dir(out_dir)
    progress = options.progress or _NoProgress()
    with errors_name(wheel_path), InputWheel.open(wheel_path) as wheel, \
            work_dir() as tmp:
        if set(wheel.platforms) == {"any"}:
            return _copy_pure(wheel, out_dir, options, taken, stage)
        adapter = adapter_for(wheel.platforms, wheel_path.name)
        tree = Path(tmp, "tree").resolve()
        progress.stage("unpacking", sum(i.compress_size for i in wheel.zip.infolist()))
        unchanged = extract_for_repair(wheel, tree, progress.advance, all_python=adapter.os == "windows")
        unchanged.start_check()
        previous = read_manifest(tree, wheel.dist_info, wheel_path.name)
        progress.stage("analyzing", 0)

        # analyze: which binaries need which names, and which of those a provider offers
        binaries = adapter.binaries(tree)
        if not binaries:
            raise SharewheelError(f"{wheel_path.name}: no native binaries in the wheel, nothing to repair")
        # providers for the wheel's OS, architecture and libc (a linux_<arch> tag names no libc: the binaries do)
        needed = [name for info in binaries.values() for name in info.needed]
        registry = Registry.discover(options.providers, keys_of(wheel.platforms, needed), plugin_files=options.plugins,
                                     abi=options.abi)

        # plan: vendored copies providers replace, links, and the proof each provider can stand in
        unvendoring = plan_unvendoring(tree, binaries, registry, wheel.name.distribution, options.exclude)
        plan = plan_links(wheel.name.distribution, binaries, registry, options, previous, unvendoring)
        prove_stand_ins(adapter, tree, binaries, plan, unvendoring, options.library_path)

        # apply: copies removed; the OS tool vendors the rest; the adapter relinks the provided names
        unvendoring.apply(tree)  # (in the work directory: with --dry-run nothing else is touched)
        # the OS tools read a wheel file: give them one with just what they look at
        slim = wheel_path if adapter.os == "linux" else write_wheel(  # delocate and delvewheel read a wheel file
            tree, wheel.dist_info, Path(tmp, "slim", wheel_path.name), compress=False)
        job = RepairJob(
            wheel=slim,
            tree=tree,
            distribution=wheel.name.distribution,
            platforms=tuple(wheel.platforms),
            relink=plan.relink,
            fallback_dirs=plan.fallback_dirs,
            exclude=plan.exclude,
            plat=options.plat,
            lib_sdir=options.lib_sdir,
            library_path=options.library_path,
            provided=plan.provided,
            require_archs=options.require_archs,
            provider_platforms=plan.provider_platforms,
        )
        if options.dry_run:
            return _dry_run(adapter, job, wheel, out_dir, plan, unvendoring)
        outcome = adapter.repair(job)

        # write: hook, metadata, manifest, tags, RECORD, one atomic zip
        renamed = dict(outcome.moved)
        if options.install_hook:
            musl = any(p.startswith("musllinux_") for p in outcome.platforms)
            renamed |= install_hooks(tree, binaries, plan.runtime, wheel.name.distribution, libc="musl" if musl else "")
        links = tuple(replace(link, binary=renamed.get(link.binary, link.binary)) for link in plan.links)
        # what this repair vendored, and the copies an earlier repair (by any tool) left in place
        earlier = {*previous.vendored, *(b for b in binaries if is_vendored_path(b))}
        vendored = tuple(sorted({*outcome.vendored, *(v for v in earlier if (tree / v).is_file())}))
        _write_dist_info(tree, wheel, plan.requirements, previous.provides, links, vendored, outcome.platforms)
        output = out_dir / wheel.name.with_platforms(list(outcome.platforms))[0].filename
        if output.exists() and output.samefile(wheel_path):
            raise SharewheelError(f"{wheel_path}: the repaired wheel would overwrite its input; choose another -w")
        if taken and output in taken:
            raise SharewheelError(f"{wheel_path}: repairs to {output.name}, which {taken[output]} was just repaired to")
        progress.stage("writing", bytes_to_write(tree, unchanged, wheel.dist_info))
        write_wheel(tree, wheel.dist_info, (stage or out_dir) / output.name, unchanged=unchanged,
                    progress=progress.advance)
        progress.stage("", 0)
    return RepairReport(
        wheel_path, output, links, vendored, outcome.platforms, tuple(str(r) for r in plan.requirements),
        unvendoring.removed, unvendoring.saved, unvendoring.reasons(),
        staged=None if stage is None else stage / output.name,
    )


def _dry_run(
    adapter: PlatformAdapter, job: RepairJob, wheel: InputWheel, out_dir: Path, plan: Plan, unvendoring: Unvendoring
) -> RepairReport:
    """What repair would do, with what the OS tool would vendor (and from where) and the tags."""
    states, platforms = adapter.show(job)
    would_vendor = tuple(sorted({f"{s.name} (from {s.path})" for needs in states.values() for s in needs
                                 if s.state == "external"}))
    output = out_dir / wheel.name.with_platforms(list(platforms))[0].filename
    return RepairReport(
        wheel.path, output, plan.links, would_vendor, platforms, tuple(str(r) for r in plan.requirements),
        unvendoring.removed, unvendoring.saved, unvendoring.reasons(), dry_run=True,
    )


def _write_dist_info(
    tree: Path,
    wheel: InputWheel,
    requirements: Sequence[Requirement],
    provides: Provides | None,
    links: tuple[Link, ...],
    vendored: tuple[str, ...],
    platforms: tuple[str, ...],
) -> None:
    """METADATA's Requires-Dist, the manifest, the WHEEL tags; signatures over the old RECORD go."""
    dist_info = tree / wheel.dist_info
    metadata = dist_info / "METADATA"
    metadata.write_text(
        add_requirements(metadata.read_text(encoding="utf-8"), requirements, f"{wheel.dist_info}/METADATA"),
        encoding="utf-8",
    )
    if provides is not None:
        provides = replace(
            provides,
            platform=".".join(platforms),
            libraries=tuple(replace(lib, sha256=_sha256(tree / lib.path)) for lib in provides.libraries),
        )
    if provides is not None or links:
        (dist_info / MANIFEST_NAME).write_text(Manifest(provides, links, vendored).dumps(), encoding="utf-8")
    for signature in ("RECORD.jws", "RECORD.p7s"):  # invalid once any file changed
        (dist_info / signature).unlink(missing_ok=True)
    _set_wheel_tags(dist_info / "WHEEL", wheel.name.with_platforms(list(platforms))[1])


def _copy_pure(
    wheel: InputWheel, out_dir: Path, options: RepairOptions, taken: Mapping[Path, Path] | None,
    stage: Path | None = None,
) -> RepairReport:
    """A pure-Python wheel has nothing to link or vendor. It is copied byte for byte (after the
    same RECORD checks as any input), so that `repair -w OUT dist/*.whl` in a release script, or
    a repair-wheel-command, leaves exactly one wheel per input in OUT."""
    output = out_dir / wheel.path.name
    if taken and output in taken:
        raise SharewheelError(f"{wheel.path}: copies to {output.name}, which {taken[output]} was just repaired to")
    report = RepairReport(wheel.path, output, (), (), tuple(wheel.platforms), dry_run=options.dry_run, pure=True)
    if options.dry_run or (output.exists() and output.samefile(wheel.path)):
        return report
    unchanged = wheel.extract(out_dir, lambda _: False)  # extracts nothing: checks every entry's hash
    unchanged.start_check()
    copy_wheel(wheel.path, (stage or out_dir) / output.name, check=unchanged.wait_check)
    return report if stage is None else replace(report, staged=stage / output.name)


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
        raise SharewheelError(f"{wheel.name}: {e}") from None


def plan_links(
    distribution: str,
    binaries: dict[str, BinaryInfo],
    registry: Registry,
    options: RepairOptions,
    previous: Manifest,
    unvendoring: Unvendoring | None = None,
) -> Plan:
    """Map every needed name a provider offers (or a vendored copy it replaces) to the
    provider's unique name."""
    unvendoring = unvendoring or Unvendoring()
    earlier = {(link.binary, link.needed): link.original for link in previous.links}
    relink: dict[str, dict[str, str]] = {}
    fallback: dict[str, set[str]] = {}
    links: list[Link] = []
    matches: dict[tuple[str, str], Match] = {}  # (binary, needed name) → its stand-in
    files: dict[str, set[str]] = {}
    providers = {}
    provided: dict[str, Callable[[Path], None]] = {}
    for binary, info in sorted(binaries.items()):
        for name in info.needed:
            match = unvendoring.stand_in(name) or registry.lookup(name)
            if match is None or any(fnmatch.fnmatchcase(name, p) for p in options.exclude):
                continue
            provider, library = match.provider, match.library
            if canonicalize_name(provider.distribution) == canonicalize_name(distribution):
                continue  # a provider's own libraries: never a dependency on itself
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
    requirements = tuple(providers[k].requirement(unvendoring.floors.get(k)) for k in sorted(providers))
    runtime = tuple(providers[k].runtime(files[k], unvendoring.floors.get(k)) for k in sorted(providers))
    exclude = frozenset({*options.exclude, *(name for m in relink.values() for name in m)})
    return Plan(
        relink, {b: tuple(sorted(d)) for b, d in fallback.items()}, tuple(links), requirements, runtime, exclude,
        provided, matches,
        tuple(tuple(providers[k].provides.platform.split(".")) for k in sorted(providers)),
    )


def read_manifest(tree: Path, dist_info: str, wheel: str) -> Manifest:
    """The manifest an earlier repair or pack left in the tree, if any."""
    path = tree / dist_info / MANIFEST_NAME
    if not path.is_file():
        return Manifest()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SharewheelError(f"{wheel}: {dist_info}/{MANIFEST_NAME} is not UTF-8 text") from None
    return Manifest.loads(text, f"{wheel}: {dist_info}/{MANIFEST_NAME}")


def _set_wheel_tags(wheel_file: Path, tag_lines: list[str]) -> None:
    lines = [l for l in wheel_file.read_text(encoding="utf-8").splitlines() if not l.startswith("Tag:")]
    while lines and not lines[-1].strip():
        lines.pop()
    wheel_file.write_text("\n".join([*lines, *(f"Tag: {t}" for t in tag_lines)]) + "\n", encoding="utf-8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def writable_dir(out_dir: Path) -> Path:
    """Create `out_dir` and prove a file can be written there, before doing any work."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".sharewheel-probe-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise SharewheelError(f"-w {out_dir}: cannot write there ({e.strerror or e})") from None
    return out_dir.resolve()
