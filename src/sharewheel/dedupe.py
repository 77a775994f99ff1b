"""`sharewheel dedupe`: the libraries a directory of unrelated wheels vendors more than once.

An organisation's wheelhouse or a distribution's rebuild holds wheels that auditwheel, delocate
and delvewheel each filled with private copies of the same few libraries (OpenSSL, krb5, zlib,
libgfortran...). This report says which, in which wheels, and how many bytes one shared
provider would save; the copies are what the repair tools name them (sharewheel.vendored).

What counts as one library: copies of one family (the library's stem, tools' renaming undone)
and one ABI series (the first component of the version the original file name carries:
``libcrypto.so.3`` and ``libcrypto.so.1.1.1k`` are two libraries; ``libcurl.so.4.8.0`` of two
builds is one), on one platform (OS and architecture of the wheel's tags). Within a library,
copies of the *same original file* are told apart from other builds by the content hash
auditwheel puts in the name (the first 8 hex digits of the original file's sha256), and
otherwise by the copy's own sha256: two builds of one series can usually stand in for each
other, which only the stand-in proof can establish, per wheel, when a provider is applied.
The saving is therefore what a shared provider would save if every copy were replaced: all
copies but the largest.

``--apply`` packs each shared library (ELF) from the copy exporting most symbols, its auditwheel
patches undone, as the native-lib wheel ``<provider-prefix>-<library>``, in dependency order: a
copy that needs other copies of its wheel (libssl needs libcrypto) is packed after their
providers, linked to and requiring them. It is not packed when it needs a library no other
wheel vendors (its provider would carry a second copy of it, the wheel's binaries keep theirs:
two in one process) or when libraries need each other (a cycle), unless another of its copies,
tried in order of exports, avoids that. Then every wheel is repaired with all providers at once
through the unvendoring path: the stand-in proof decides per wheel, and a copy a provider
cannot replace stays in its wheel with the reason in the report, and so do the copies whose
provider needs one of those (libssl's provider needs libcrypto's: a wheel keeping its
libcrypto keeps its libssl). Mach-O and PE copies are reported, not packed: undoing delocate's
and delvewheel's patches (install names, code signatures; mangled import tables) is not done yet.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from sharewheel.errors import SharewheelError
from sharewheel.naming import library_family
from sharewheel.platforms import keys_of
from sharewheel.vendored import original_names, tool_hash, vendored_copies
from sharewheel.wheelfile import InputWheel

_SERIES = re.compile(r"\.so\.(?P<major>\d+)|^[^.]+\.(?P<mac>\d+)(?:\.\d+)*\.dylib$|-(?P<win>\d+)\.dll$",
                     re.IGNORECASE)
#: The architecture some Windows builds append after the series (OpenSSL's libcrypto-3-x64.dll).
_WINDOWS_ARCH = re.compile(r"-(?:x64|x86|arm64)(?=\.dll$)", re.IGNORECASE)


@dataclass(frozen=True)
class WheelCopy:
    """One vendored copy in one wheel."""

    wheel: str  # the wheel's file name
    distribution: str
    version: str
    path: str  # inside the wheel
    size: int
    original: str  # the file name before the tool renamed it
    build: str  # what tells builds apart: auditwheel's content hash, else the copy's sha256

    def as_json(self) -> dict[str, Any]:
        return {"wheel": self.wheel, "distribution": self.distribution, "version": self.version, "path": self.path,
                "size": self.size, "original": self.original, "build": self.build}


@dataclass(frozen=True)
class Shared:
    """One library (family, ABI series, platform) vendored by two or more wheels."""

    library: str  # family
    series: str  # "" when the name carries no version
    platform: str  # e.g. linux-x86_64
    copies: tuple[WheelCopy, ...]

    @property
    def builds(self) -> int:
        return len({c.build for c in self.copies})

    @property
    def saving(self) -> int:
        return sum(c.size for c in self.copies) - max(c.size for c in self.copies)

    @property
    def label(self) -> str:
        return f"{self.library} (series {self.series})" if self.series else self.library

    def as_json(self) -> dict[str, Any]:
        return {"library": self.library, "series": self.series, "platform": self.platform, "builds": self.builds,
                "saving": self.saving, "copies": [c.as_json() for c in self.copies]}

    def as_text(self) -> str:
        wheels = len({c.wheel for c in self.copies})
        builds = "one build" if self.builds == 1 else f"{self.builds} builds"
        copies = ", ".join(f"{c.distribution} {c.version} ({c.path}, {c.size:,} bytes)" for c in self.copies)
        return (f"{self.label} on {self.platform}: {len(self.copies)} copies in {wheels} wheels ({builds}): "
                f"{copies}; a shared provider would save {self.saving:,} bytes")


@dataclass(frozen=True)
class DedupeReport:
    wheels: tuple[str, ...]  # file names, sorted
    shared: tuple[Shared, ...]

    @property
    def saving(self) -> int:
        return sum(s.saving for s in self.shared)

    def as_json(self) -> dict[str, Any]:
        return {"wheels": list(self.wheels), "shared": [s.as_json() for s in self.shared], "saving": self.saving}

    def as_text(self) -> str:
        lines = [s.as_text() for s in self.shared]
        count = len(self.shared)
        lines.append(f"{count} librar{'y' if count == 1 else 'ies'} vendored more than once in {len(self.wheels)} "
                     f"wheels; a shared provider would save {self.saving:,} bytes.")
        return "\n".join(lines)


def series_of(original: str) -> str:
    """The ABI series an original file name carries (`3` for libcrypto.so.3, `1` for
    libcrypto.so.1.1.1k, `3` for libk5crypto.3.1.dylib and libcrypto-3-x64.dll, `5` for
    libgfortran-5.dll); "" for none."""
    match = _SERIES.search(_WINDOWS_ARCH.sub("", original))
    if match is None:
        return ""
    return next(g for g in match.groups() if g is not None)


def wheelhouse(directory: Path) -> list[Path]:
    """The wheels of a directory, sorted by name; an error when it is none or holds none."""
    if not directory.is_dir():
        raise SharewheelError(f"{directory}: no such directory")
    wheels = sorted(p for p in directory.iterdir() if p.name.endswith(".whl"))
    if not wheels:
        raise SharewheelError(f"{directory}: holds no wheel (*.whl)")
    return wheels


def copies_of(path: Path) -> list[WheelCopy]:
    """The vendored copies of one wheel, from its checked zip."""
    with InputWheel.open(path) as wheel:
        sizes = {info.filename: info.file_size for info in wheel.zip.infolist() if not info.is_dir()}
        found = []
        for copy in vendored_copies(sizes.items()):
            build = tool_hash(copy.name) or f"sha256:{hashlib.sha256(wheel.read(copy.path)).hexdigest()}"
            found.append(WheelCopy(path.name, wheel.project_name, wheel.name.version, copy.path, copy.size,
                                   unhashed(copy.name), build))
    return found


def unhashed(filename: str) -> str:
    """The file name before the tools renamed it: every hash they appended taken off, the
    version kept (original_names goes on to shorten the version: where it starts, stop)."""
    names = original_names(filename)
    for current, following in itertools.pairwise(names):
        if following == current.rsplit(".", 1)[0]:
            return current
    return names[-1]


def report(directory: Path) -> DedupeReport:
    """Which libraries the wheels of `directory` vendor more than once, and what sharing saves."""
    paths = wheelhouse(directory)
    groups: dict[tuple[str, str, str], list[WheelCopy]] = {}
    for path in paths:
        with InputWheel.open(path) as wheel:
            platforms = sorted(str(k) for k in keys_of(wheel.name.platforms))
        platform = ",".join(platforms) or "any"
        for copy in copies_of(path):
            key = _copy_key(copy, platform)
            groups.setdefault(key, []).append(copy)
    shared = []
    for (family, series, platform), copies in sorted(groups.items()):
        if len({c.wheel for c in copies}) < 2:  # two releases of one project count: both are stored
            continue
        ordered = tuple(sorted(copies, key=lambda c: (canonicalize_name(c.distribution), c.version, c.path)))
        shared.append(Shared(family, series, platform, ordered))
    return DedupeReport(tuple(p.name for p in paths), tuple(shared))


# --- --apply: one provider per shared library, every wheel repaired onto them ----------------


@dataclass(frozen=True)
class Packed:
    """A shared library packed as a native-lib wheel, from one of its copies."""

    library: str
    series: str
    distribution: str
    wheel: str  # its file name in OUT
    source: WheelCopy  # the copy packed (the one exporting most symbols: others' stand-in)
    offered: str  # the library's name in the provider (see provided_name)
    requires: tuple[str, ...] = ()  # the providers it links to, and theirs (distributions)

    def as_json(self) -> dict[str, Any]:
        return {"library": self.library, "series": self.series, "distribution": self.distribution,
                "wheel": self.wheel, "offered": self.offered, "requires": list(self.requires),
                "source": self.source.as_json()}


@dataclass(frozen=True)
class Kept:
    """A copy a wheel keeps, and why."""

    wheel: str
    path: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"wheel": self.wheel, "path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class Applied:
    report: DedupeReport
    packed: tuple[Packed, ...]
    skipped: tuple[tuple[Shared, str], ...]  # libraries not packed, and why
    outputs: tuple[str, ...]  # every wheel written to OUT: providers, then the repaired ones
    kept: tuple[Kept, ...]  # copies of packed libraries the stand-in proof left in their wheel

    def as_json(self) -> dict[str, Any]:
        return {**self.report.as_json(), "packed": [p.as_json() for p in self.packed],
                "skipped": [{"library": s.library, "series": s.series, "platform": s.platform, "reason": why}
                            for s, why in self.skipped],
                "outputs": list(self.outputs), "kept": [k.as_json() for k in self.kept]}

    def as_text(self) -> str:
        lines = [self.report.as_text()]
        lines += [f"packed {p.offered} from {p.source.distribution} {p.source.version}'s {p.source.path} as {p.wheel}"
                  + (f" (requires {', '.join(p.requires)})" if p.requires else "") for p in self.packed]
        lines += [f"not packed: {s.label}: {why}" for s, why in self.skipped]
        lines += [f"kept: {k.wheel}: {k.path}: {k.reason}" for k in self.kept]
        lines.append(f"Wrote {len(self.outputs)} wheels ({len(self.packed)} providers).")
        return "\n".join(lines)


def apply(directory: Path, provider_prefix: str, out_dir: Path) -> Applied:
    """Pack each shared ELF library into `<provider-prefix>-<library>` (series appended when the
    wheelhouse holds several of one library), its dependencies' providers first, then repair
    every wheel with those providers; a wheel whose copy needs what a provider lacks (the
    stand-in proof) keeps that copy. Everything is built in a work directory and moved into
    `out_dir` at the end: it gets all the wheels, or none."""
    from sharewheel.files import work_dir
    from sharewheel.pack import check_text_options
    from sharewheel.repair import writable_dir

    try:
        check_text_options(provider_prefix, "")
    except SharewheelError as e:  # pack's wording names its own --name
        raise SharewheelError(str(e).replace("--name ", "--provider-prefix ", 1)) from None
    found = report(directory)
    out = writable_dir(out_dir)
    series_count: dict[tuple[str, str], int] = {}
    for shared in found.shared:
        series_count[(shared.library, shared.platform)] = series_count.get((shared.library, shared.platform), 0) + 1
    with work_dir() as tmp, tempfile.TemporaryDirectory(prefix=".sharewheel-dedupe-", dir=out) as staging:
        stage = Path(staging)  # in OUT: the wheels are renamed into place at the end, each whole
        packing = _Packing(directory, tmp, stage, provider_prefix,
                           {_key(s): s for s in found.shared},
                           {_key(s) for s in found.shared if series_count[(s.library, s.platform)] > 1})
        for shared in found.shared:
            packing.library(_key(shared))
        packed = packing.packed
        kept: list[Kept] = []
        outputs = [p.wheel for p in packed.values()]
        for path in sorted(directory.glob("*.whl")):
            written, left = _repair_one(path, stage, packed)
            outputs.append(written)
            kept += left
        for name in outputs:
            if (out / name).exists():
                raise SharewheelError(f"-w {out_dir}: {name} exists already; give an empty directory")
        for name in outputs:
            os.replace(stage / name, out / name)
    skipped = tuple((s, packing.skipped[_key(s)]) for s in found.shared if _key(s) in packing.skipped)
    return Applied(found, tuple(packed.values()), skipped, tuple(outputs), tuple(kept))


_Key = tuple[str, str, str]  # (family, series, platform): one Shared library


def _key(shared: Shared) -> _Key:
    return (shared.library, shared.series, shared.platform)


def _copy_key(copy: WheelCopy, platform: str) -> _Key:
    return (library_family(_WINDOWS_ARCH.sub("", copy.original)), series_of(copy.original), platform)


class _Unpackable(Exception):
    """Why one copy cannot be a library's provider."""


@dataclass
class _Packing:
    """Packs the shared libraries of a wheelhouse in dependency order: a library that needs
    other shared libraries is packed after their providers and linked to them (pack's
    --requires), so that every wheel is repaired against all providers at once and a process
    loads one copy of each. A library needing one that no other wheel vendors is not packed:
    its provider would carry a second copy of that library beside the wheel's own copy, which
    the wheel's other binaries keep using (two copies in one process)."""

    directory: Path
    tmp: Path
    stage: Path
    provider_prefix: str
    groups: dict[_Key, Shared]
    with_series: set[_Key]
    packed: dict[_Key, Packed] = field(default_factory=dict)  # in the order packed
    skipped: dict[_Key, str] = field(default_factory=dict)
    visiting: list[_Key] = field(default_factory=list)

    def library(self, key: _Key) -> Packed | None:
        """The provider of one shared library, packed first if need be; None when it cannot be
        (the reason in `skipped`)."""
        if key in self.packed:
            return self.packed[key]
        if key in self.skipped:
            return None
        shared = self.groups[key]
        if not shared.platform.startswith("linux-"):
            self.skipped[key] = (f"--apply packs ELF libraries of glibc Linux wheels only; {shared.platform} "
                                 "copies are reported, not packed")
            return None
        self.visiting.append(key)
        try:
            reasons = []
            for source, file in self._candidates(shared):
                try:
                    self.packed[key] = self._pack(shared, source, file)
                    return self.packed[key]
                except (_Unpackable, SharewheelError) as e:
                    reasons.append(str(e))
            self.skipped[key] = reasons[0]  # the best candidate's: the one others would stand in for
            return None
        finally:
            self.visiting.pop()

    def _candidates(self, shared: Shared) -> list[tuple[WheelCopy, Path]]:
        """The copies (extracted), the one exporting most first: it can stand in for most."""
        from sharewheel.readers import elf

        ranked = []
        for copy in shared.copies:
            file = self.tmp / "copies" / copy.wheel / copy.path
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(_member(self.directory / copy.wheel, copy.path))
            exported = sum(len(v) for v in elf.symbols(file).exports.values())
            ranked.append(((exported, copy.size, copy.wheel), copy, file))
        ranked.sort(key=lambda r: r[0], reverse=True)
        return [(copy, file) for _, copy, file in ranked]

    def _pack(self, shared: Shared, source: WheelCopy, file: Path) -> Packed:
        """Pack `source` with its needs of other copies of its wheel linked to their providers."""
        from sharewheel.pack import PackOptions, pack
        from sharewheel.readers import elf

        parsed = elf.read(file)
        if parsed is None:
            raise _Unpackable(f"{source.path} in {source.wheel} is no ELF file")
        replace: dict[str, str] = {}
        needs: list[Packed] = []
        for sibling in self._siblings(source, parsed.needed):
            label = f"{source.distribution}'s {source.path} needs {sibling.path.rsplit('/', 1)[-1]}"
            key = _copy_key(sibling, shared.platform)
            if key not in self.groups:
                raise _Unpackable(f"{label}, which no other wheel vendors: its provider would carry a second "
                                  "copy of it beside the wheel's own")
            if key in self.visiting:
                cycle = " -> ".join(self.groups[k].label for k in [*self.visiting[self.visiting.index(key):], key])
                raise _Unpackable(f"{label}, and they need each other (a cycle: {cycle})")
            provider = self.library(key)
            if provider is None:
                raise _Unpackable(f"{label}, whose library is not packed ({self.skipped[key]})")
            if provider.offered not in original_names(sibling.path.rsplit("/", 1)[-1])[1:]:
                raise _Unpackable(f"{label}, and {provider.distribution} offers {provider.offered}, "
                                  "which is none of that copy's names")
            replace[sibling.path.rsplit("/", 1)[-1]] = provider.offered
            needs.append(provider)
        prefix = self.tmp / "prefixes" / f"{shared.library}-{shared.series}-{source.wheel}" / "lib"
        prefix.mkdir(parents=True)
        soname = provided_name(shared) or source.original
        target = prefix / soname
        shutil.copyfile(file, target)
        _patchelf(target, soname, replace)
        key = _key(shared)
        name = f"{self.provider_prefix}-{shared.library}{shared.series if key in self.with_series else ''}"
        result = pack(PackOptions(prefix.parent, name, shared.series or "0", self.stage,
                                  requires=tuple(p.distribution for p in needs),
                                  providers=tuple(self.stage / p.wheel for p in needs)))
        return Packed(shared.library, shared.series, name, result.output.name, source, soname,
                      tuple(sorted({d for p in needs for d in (p.distribution, *p.requires)})))

    def _siblings(self, source: WheelCopy, needed: Iterable[str]) -> list[WheelCopy]:
        """The copies of `source`'s wheel that it needs (by the names its DT_NEEDED give)."""
        by_name = {c.path.rsplit("/", 1)[-1]: c for c in copies_of(self.directory / source.wheel)}
        return [by_name[n] for n in sorted(set(needed)) if n in by_name]


def provided_name(shared: Shared) -> str | None:
    """The name the provider gives the library: the longest one that every copy may have had
    (libkeyutils.so.1 for copies of libkeyutils.so.1.5 and .so.1.6) and that keeps the series, so
    that repair matches every copy to it; None when they share none (libcrypto.so.1.1 and
    libcrypto.so.1.1.1k: the copy packed keeps its own, and the others are kept, with that reason)."""
    common: set[str] | None = None
    for copy in shared.copies:
        names = {n for n in original_names(copy.path.rsplit("/", 1)[-1])[1:] if series_of(n)}
        common = names if common is None else common & names
    return max(common, key=lambda n: (len(n), n)) if common else None


def _repair_one(path: Path, stage: Path, packed: dict[_Key, Packed]) -> tuple[str, list[Kept]]:
    """Repair one wheel onto the providers of the libraries it vendors; each provider the
    stand-in proof refuses for it is left out (its copy stays, the refusal its reason), and so
    is each provider needing one whose library's copy stays: that copy and the provider's
    would both be loaded."""
    from sharewheel.errors import ProofError
    from sharewheel.plan import RepairOptions
    from sharewheel.repair import repair_wheel

    with InputWheel.open(path) as wheel:
        platforms = sorted(str(k) for k in keys_of(wheel.name.platforms))
    platform = ",".join(platforms) or "any"
    mine = {}
    for copy in copies_of(path):
        found = packed.get(_copy_key(copy, platform))
        if found is not None:
            mine[copy.path] = found
    kept: dict[str, Kept] = {}

    for copy_path, p in sorted(mine.items()):  # repair replaces a copy only under a name it had
        if p.offered not in original_names(copy_path.rsplit("/", 1)[-1])[1:]:
            names = ", ".join(original_names(copy_path.rsplit("/", 1)[-1])[1:])
            kept[copy_path] = Kept(path.name, copy_path, f"{p.distribution} offers {p.offered}, which is none of "
                                                         f"the names this copy had ({names})")
    output = ""
    while not output:  # each round leaves out one provider the proof refuses, and what needs it
        changed = True
        while changed:  # a provider needing one whose library this wheel keeps a copy of is left out
            changed = False
            staying = {mine[c].distribution: c for c in kept}
            for copy_path, p in sorted(mine.items()):
                clash = next((d for d in p.requires if d in staying), None)
                if copy_path not in kept and clash is not None:
                    kept[copy_path] = Kept(path.name, copy_path, f"{p.distribution} needs {clash}, which does not "
                                                                 f"replace this wheel's {staying[clash]}: both "
                                                                 "copies would be loaded")
                    changed = True
        chosen = sorted({p.wheel for c, p in mine.items() if c not in kept} - {mine[c].wheel for c in kept})
        if not chosen:
            output = path.name
            shutil.copyfile(path, stage / output)
            break
        try:  # the proof runs before anything is written
            output = repair_wheel(path, stage, RepairOptions(providers=tuple(stage / w for w in chosen))).output.name
        except ProofError as e:
            refused = [c for c, p in mine.items() if canonicalize_name(p.distribution) == canonicalize_name(e.provider)
                       and c not in kept]
            if not refused:
                raise
            for copy_path in refused:
                kept[copy_path] = Kept(path.name, copy_path, f"{mine[copy_path].distribution} cannot stand in "
                                                             f"for it: {e}")
    left = {c.path for c in copies_of(stage / output)}
    for copy_path, p in sorted(mine.items()):  # what repair left unexpectedly: said, not hidden
        if copy_path not in kept and copy_path in left:
            kept[copy_path] = Kept(path.name, copy_path, f"repair did not replace it with {p.distribution}'s "
                                                         f"{p.offered}")
    return output, [kept[c] for c in sorted(kept)]


def _member(wheel: Path, member: str) -> bytes:
    with InputWheel.open(wheel) as opened:
        return opened.read(member)


def _patchelf(path: Path, soname: str, replace: dict[str, str]) -> None:
    """Undo auditwheel's patches on a copy: its own soname back, no $ORIGIN RPATH, and its
    needs of other copies (`replace`, copy name → name) under the names their providers offer."""
    from sharewheel.adapters.manylinux import _patchelf_on_path

    _patchelf_on_path()
    args = ["patchelf", "--set-soname", soname, "--remove-rpath"]
    for old, new in sorted(replace.items()):
        args += ["--replace-needed", old, new]
    try:
        subprocess.run([*args, str(path)], check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise SharewheelError(f"patchelf {path.name}: {detail.strip()}") from None
