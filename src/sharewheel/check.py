"""`sharewheel check`: audit an installed environment, as `pip check` audits requirements.

repair records every link in ``<dist-info>/sharewheel.json``, but whether a link still holds
depends on what was installed, upgraded or removed afterwards, which only the environment
itself can tell: pip resolves ``Requires-Dist`` but not a later ``pip install --no-deps``, a
provider upgraded across its ABI series, a file deleted or replaced by hand, or two providers
installed side by side that both claim one library name. Each of those fails at import time
on someone's machine; check says so beforehand, naming the distribution and the fix.

Which installed copy of a provider serves a consumer is chosen by the consumer hook's own code,
:func:`sharewheel.runtime.loader.candidates`, run here on the audited entries: check says what the
hook will load, and warns when an older release of the series comes first on the path (what
``import`` gives is then not what the hook loads). ``--verify`` also compares each provider's
library files with the sha256 its manifest records; the hook never hashes (start-up time).

It also lists libraries vendored more than once (auditwheel, delocate, delvewheel copies): not
broken, but the bytes a shared provider would save, and which installed provider could; and, as
warnings, copies of runtimes that clash when loaded into one process (sharewheel.clashes).

Everything is read from disk; nothing in the audited environment is imported or run (except
the interpreter given with ``--python``, once, to print its ``sys.path``). Plugins come from
the running sharewheel: the shipped ones and its own ``sharewheel.plugins`` entry points.
"""

from __future__ import annotations

import csv
import functools
import importlib.metadata
import json
import os
import posixpath
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sharewheel import symbols
from sharewheel.adapters import PlatformAdapter, adapter_for_host_binary
from sharewheel.clashes import Carried, Clash, clashes, family_of
from sharewheel.errors import SharewheelError
from sharewheel.files import sha256_hex
from sharewheel.manifest import MANIFEST_NAME, Link, Manifest, ProvidedLibrary, read_installed
from sharewheel.naming import library_key
from sharewheel.platforms import keys_of
from sharewheel.plugin import Plugin, load_plugins, plugin_for
from sharewheel.proof import interpreter_tables
from sharewheel.registry import Provider, installed_platforms, installed_provider
from sharewheel.runtime import Strategy, loader
from sharewheel.vendored import vendored_copies

_SYS_PATH = "import json, sys; print(json.dumps(sys.path))"
_T = TypeVar("_T")


# --- which paths ------------------------------------------------------------------------------


def interpreter_path(python: str) -> list[str]:
    """Another interpreter's sys.path, by running it: sharewheel is often installed with pipx,
    apart from the environment it should audit. Its `-c` entry (the current directory) is dropped."""
    try:
        result = subprocess.run([python, "-c", _SYS_PATH], check=False, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=120)
    except OSError as e:
        raise SharewheelError(f"--python {python}: cannot run it ({e.strerror or e})") from None
    except subprocess.TimeoutExpired:
        raise SharewheelError(f"--python {python}: did not print its sys.path within 120 s") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [""])[-1]
        detail = f" ({last})" if last else ""
        raise SharewheelError(f"--python {python}: exited with status {result.returncode}{detail}")
    try:
        path = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        path = None
    if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
        raise SharewheelError(f"--python {python}: is not a Python interpreter (it did not print its sys.path)")
    return path


def audit_paths(python: str | None, paths: Sequence[Path]) -> list[str]:
    """The sys.path entries to audit: `paths`, `python`'s sys.path, or the running one's."""
    if python is not None and paths:
        raise SharewheelError("--python and --path are mutually exclusive")
    if paths:
        for path in paths:
            if not path.is_dir():
                raise SharewheelError(f"--path {path}: no such directory")
        entries = [os.path.abspath(p) for p in paths]  # the hook counts absolute entries only
    else:
        entries = interpreter_path(python) if python is not None else _own_path()
    chosen: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        if not entry or not os.path.exists(entry):
            continue
        real = os.path.realpath(entry)
        if real not in seen:
            seen.add(real)
            chosen.append(entry)
    return chosen


def _own_path() -> list[str]:
    """The running interpreter's sys.path without the entry Python put first for this command
    (the script's directory, or the current one for `-m`): where the command runs is no part
    of the environment, and `--python` leaves it out too."""
    safe = getattr(sys.flags, "safe_path", False)  # -P / PYTHONSAFEPATH: nothing was put first
    return list(sys.path if safe else sys.path[1:])


# --- what is installed ------------------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    """One distribution in one sys.path entry."""

    dist: importlib.metadata.Distribution = field(compare=False, repr=False)
    name: str
    version: str
    location: Path  # the sys.path entry it is installed in
    shadowed: bool  # an earlier entry holds a distribution of the same name: imports never see this one

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    def file(self, relative: str) -> Path:
        return self.location / relative


def installed(paths: Sequence[str]) -> list[Installed]:
    """Every readable distribution of `paths`, in sys.path order (see scan)."""
    return scan(paths).items


# What an installed distribution's files cannot be read as: its dist-info's text is not UTF-8, its
# RECORD is no CSV, a file is unreadable. One such distribution is reported; the audit goes on.
UNREADABLE = (OSError, ValueError, csv.Error)


@dataclass(frozen=True)
class Scan:
    items: list[Installed]
    broken: list[tuple[str, str]]  # (dist-info directory, why its metadata cannot be read)
    twins: list[tuple[Installed, tuple[Installed, ...]]]  # the one counted, the others of its name in its entry


def scan(paths: Sequence[str]) -> Scan:
    """Every distribution of `paths`, in sys.path order. Two dist-infos of one name in one entry
    (``pip install --target --upgrade`` leaves the old one) count as one: see _counted."""
    found: list[Installed] = []
    broken: list[tuple[str, str]] = []
    twins: list[tuple[Installed, tuple[Installed, ...]]] = []
    first: set[str] = set()
    for entry in paths:
        groups: dict[str, list[Installed]] = {}
        for dist in importlib.metadata.distributions(path=[entry]):
            try:
                name = dist.metadata["Name"] if dist.metadata else None
                version = dist.version or ""
            except UNREADABLE as e:
                broken.append((_dist_info(dist), f"{type(e).__name__}: {e}"))
                continue
            if name:
                groups.setdefault(canonicalize_name(name), []).append(
                    Installed(dist, name, version, Path(entry), canonicalize_name(name) in first))
        for group in groups.values():
            kept = _counted(group)
            found.append(kept)
            if len(group) > 1:
                twins.append((kept, tuple(item for item in group if item is not kept)))
        first |= set(groups)
    return Scan(found, broken, twins)


def _dist_info(dist: importlib.metadata.Distribution) -> str:
    """The dist-info directory of an installed distribution, for messages about it."""
    path = getattr(dist, "_path", None)  # PathDistribution's
    return str(path) if path is not None else repr(dist)


def _counted(group: list[Installed]) -> Installed:
    """Of the dist-infos of one distribution in one entry, the one its files on disk are: whose
    version is the ``__version__`` of a package it lists (as a provider's __init__.py has it),
    else the highest version."""
    if len(group) == 1:
        return group[0]
    for item in group:
        try:
            packages = {f.parts[0] for f in item.dist.files or () if len(f.parts) == 2 and f.name == "__init__.py"}
        except UNREADABLE:
            continue
        if any(loader.copy_version(str(item.file(p))) == item.version for p in sorted(packages)):
            return item

    def order(item: Installed) -> tuple[int, Version]:
        try:
            return (1, Version(item.version))
        except InvalidVersion:
            return (0, Version("0"))

    return max(group, key=order)


@dataclass(frozen=True)
class InstalledProvider:
    item: Installed
    provider: Provider

    @property
    def kind(self) -> str:
        return "plugin" if self.provider.plugin is not None else "packed"


# --- findings ---------------------------------------------------------------------------------


ProblemKind = Literal["provider-missing", "outside-policy", "library-missing", "file-missing", "binary-missing",
                      "symbols-missing", "conflict", "unreadable", "musl-split-layout", "duplicate-dist-info",
                      "modified"]
LinkState = Literal["ok", "provider-missing", "outside-policy", "library-missing", "file-missing", "binary-missing",
                    "symbols-missing", "unreadable", "musl-split-layout"]


@dataclass(frozen=True)
class Problem:
    """Something broken: a consumer will fail to import, or a provider cannot be trusted."""

    kind: ProblemKind
    message: str
    distribution: str | None = None
    version: str | None = None
    binary: str | None = None
    library: str | None = None
    provider: str | None = None
    requirement: str | None = None
    installed: tuple[str, ...] = ()  # provider versions found, for outside-policy
    symbols: tuple[str, ...] = ()  # missing ones, as name@version

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "message": self.message, "distribution": self.distribution,
            "version": self.version, "binary": self.binary, "library": self.library,
            "provider": self.provider, "requirement": self.requirement,
            "installed": list(self.installed), "symbols": list(self.symbols),
        }


@dataclass(frozen=True)
class LinkStatus:
    """One recorded link and what became of it: `status` is "ok" or the kind of its problem."""

    distribution: str
    version: str
    link: Link
    status: LinkState
    provider_version: str | None = None  # the installed release that serves it
    file: str | None = None  # the provider's file it resolves to

    def as_json(self) -> dict[str, Any]:
        return {
            "distribution": self.distribution, "version": self.version, "binary": self.link.binary,
            "needed": self.link.needed, "original": self.link.original, "provider": self.link.provider,
            "requirement": self.link.requirement, "status": self.status,
            "provider_version": self.provider_version, "file": self.file,
        }


@dataclass(frozen=True)
class Copy:
    distribution: str
    version: str
    location: Path  # the sys.path entry
    relative: str  # the path inside it
    size: int

    @property
    def path(self) -> str:
        return str(self.location / self.relative)


@dataclass(frozen=True)
class Duplicate:
    """One library vendored by several distributions: sharing it would save all but the largest copy."""

    library: str  # the stem the copies share (libgfortran)
    copies: tuple[Copy, ...]
    saving: int
    provider: InstalledProvider | None  # an installed provider offering one of the copies' names

    def as_json(self) -> dict[str, Any]:
        return {
            "library": self.library,
            "copies": [{"distribution": c.distribution, "version": c.version, "path": c.path, "size": c.size}
                       for c in self.copies],
            "saving": self.saving,
            "provider": None if self.provider is None else {
                "distribution": self.provider.item.name, "version": self.provider.item.version,
                "location": str(self.provider.item.location),
            },
        }

    def as_text(self) -> str:
        distributions = {(c.distribution, c.version) for c in self.copies}
        copies = ", ".join(f"{c.distribution} {c.version} ({c.relative}, {c.size:,} bytes)" for c in self.copies)
        replace = (f"{self.provider.item.label} provides it" if self.provider is not None
                   else "no installed provider offers it")
        return (f"{self.library}: {len(self.copies)} copies in {len(distributions)} distributions: {copies}; "
                f"sharing it would save {self.saving:,} bytes; {replace}")


@dataclass(frozen=True)
class CheckReport:
    paths: tuple[str, ...]
    providers: tuple[InstalledProvider, ...]
    links: tuple[LinkStatus, ...]
    problems: tuple[Problem, ...]
    duplicates: tuple[Duplicate, ...]
    warnings: tuple[str, ...] = ()
    clashes: tuple[Clash, ...] = ()

    @property
    def ok(self) -> bool:
        """Nothing broken; duplicates, clashes and warnings alone are not."""
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON object whose keys are always present:

        - ``ok``: bool, no problem found (the exit status is 0 exactly then);
        - ``paths``: the sys.path entries audited, in order;
        - ``providers``: [{distribution, version, location, kind ("packed" | "plugin"),
          libraries: [{name, unique_name, path}]}], every installed provider copy;
        - ``links``: [{distribution, version, binary, needed, original, provider, requirement,
          status ("ok" or a problem kind), provider_version, file}], every recorded link of every
          distribution imports see;
        - ``problems``: [{kind, message, distribution, version, binary, library, provider,
          requirement, installed: [versions], symbols: [name@version]}], null where a key does
          not apply; kind is provider-missing, outside-policy, library-missing, file-missing,
          binary-missing, symbols-missing, conflict, unreadable, musl-split-layout,
          duplicate-dist-info or modified (``--verify``: a provider's file is not what it recorded);
        - ``duplicates``: [{library, copies: [{distribution, version, path, size}], saving (bytes),
          provider: {distribution, version, location} | null}];
        - ``warnings``: [str], what could not be checked, and releases of a provider shadowed by
          an older one first on the path (the hook loads the newer one): not problems.
        """
        return {
            "ok": self.ok,
            "paths": list(self.paths),
            "providers": [
                {
                    "distribution": p.item.name, "version": p.item.version, "location": str(p.item.location),
                    "kind": p.kind,
                    "libraries": [{"name": lib.name, "unique_name": lib.unique_name, "path": lib.path}
                                  for lib in p.provider.provides.libraries],
                }
                for p in self.providers
            ],
            "links": [link.as_json() for link in self.links],
            "problems": [problem.as_json() for problem in self.problems],
            "duplicates": [duplicate.as_json() for duplicate in self.duplicates],
            "warnings": list(self.warnings),
            "clashes": [clash.as_json() for clash in self.clashes],
        }

    def as_text(self) -> str:
        """One line per finding: problems, then warnings, then duplicates, then a summary line."""
        lines = [problem.message for problem in self.problems]
        lines += [f"warning: {warning}" for warning in self.warnings]
        lines += [f"warning: {clash.message}" for clash in self.clashes]
        if self.duplicates:
            lines.append("Vendored more than once:")
            lines += [f"  {duplicate.as_text()}" for duplicate in self.duplicates]
        consumers = {(link.distribution, link.version) for link in self.links}
        checked = f"{len(self.links)} link{'s' * (len(self.links) != 1)} of {len(consumers)} " \
                  f"distribution{'s' * (len(consumers) != 1)} checked"
        if self.problems:
            lines.append(f"{len(self.problems)} problem{'s' * (len(self.problems) != 1)} found ({checked}).")
        else:
            lines.append(f"No broken links found ({checked}).")
        return "\n".join(lines)


# --- the audit --------------------------------------------------------------------------------


def check_environment(paths: Sequence[str], plugins: Sequence[Plugin] | None = None,
                      python: str | None = None, verify: bool = False) -> CheckReport:
    """Audit the distributions installed in `paths` (sys.path order) for the interpreter
    `python` (default: the running one), whose own libraries serve unbound imports; `verify`:
    hash every provider library file too."""
    executable = None if python is None else shutil.which(python) or python
    interpreter = functools.partial(interpreter_tables, executable)
    return _Audit(paths, load_plugins(run_code=False) if plugins is None else plugins, interpreter, verify).run()


@dataclass
class _Resolved:
    """A link resolved to an installed provider's file (pass 1), for its symbol check (pass 2)."""

    link: Link
    provider: InstalledProvider | None = None
    file: Path | None = None
    status: LinkState = "ok"


class _Audit:
    def __init__(self, paths: Sequence[str], plugins: Sequence[Plugin],
                 interpreter: Callable[[], Iterable[symbols.Read]], verify: bool = False) -> None:
        self.paths = tuple(paths)
        self.plugins = plugins
        self.interpreter = interpreter  # the interpreter's libraries, for symbols.lacking
        self.verify = verify
        found = scan(paths)
        self.items = found.items
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.providers: list[InstalledProvider] = []
        self.manifests: dict[int, Manifest] = {}  # id(Installed) → its manifest
        self.broken: set[int] = set()  # id(Installed) of those whose files cannot be read
        for dist_info, why in found.broken:
            self.problems.append(Problem("unreadable", f"{dist_info}: cannot read its metadata ({why})"))
        for kept, others in found.twins:
            self._twins(kept, others)

    def run(self) -> CheckReport:
        for item in self.items:
            self._guarded(item, functools.partial(self._read, item))
        self._conflicts()
        if self.verify:
            for entry in self.providers:
                self._guarded(entry.item, functools.partial(self._verify, entry))
        links: list[LinkStatus] = []
        for item in self.items:
            manifest = self.manifests.get(id(item))
            if manifest is not None and manifest.links and not item.shadowed and id(item) not in self.broken:
                links += self._guarded(item, functools.partial(self._links, item, manifest.links)) or []
        duplicates = tuple(self._duplicates())  # (before the problems: it may find a RECORD unreadable)
        found = tuple(clashes(self._carried(family_of), lambda: self._carried(_binary)))
        return CheckReport(
            self.paths, tuple(self.providers), tuple(links), tuple(self.problems), duplicates, tuple(self.warnings),
            found,
        )

    def _read(self, item: Installed) -> None:
        """Its manifest and, if it is one, the provider it is; a broken manifest is a problem."""
        try:  # (a small regular file: a FIFO or /dev/zero there would hang the audit)
            text = read_installed(item.dist, f"{item.label} in {item.location}")
        except SharewheelError as e:
            self._unreadable(item, str(e))
            return
        manifest = None
        if text is not None:
            try:
                manifest = Manifest.loads(text, f"{item.label} in {item.location}")
            except SharewheelError as e:
                self._unreadable(item, str(e))
                return
            self.manifests[id(item)] = manifest
        if (manifest is None or manifest.provides is None) and plugin_for(item.name, self.plugins) is None:
            return
        try:
            provider = installed_provider(item.dist, self.plugins)
        except SharewheelError as e:
            if manifest is not None:
                self._unreadable(item, str(e))
            else:  # a third-party wheel a plugin matched but could not describe: not ours to fail
                self.warnings.append(f"{item.label} in {item.location}: not checked as a provider ({e})")
            return
        if provider is not None:
            self.providers.append(InstalledProvider(item, provider))

    def _unreadable(self, item: Installed, why: str) -> None:
        self.problems.append(Problem("unreadable", f"{item.label}: {why}", item.name, item.version))

    def _guarded(self, item: Installed, action: Callable[[], _T]) -> _T | None:
        """`action` on one distribution; if its installed files cannot be read, that is one
        problem naming it (once), and the audit goes on with the others."""
        try:
            return action()
        except UNREADABLE as e:
            if id(item) not in self.broken:
                self.broken.add(id(item))
                self._unreadable(item, f"cannot read its installed files (in {item.location}: {type(e).__name__}: {e})")
            return None

    def _twins(self, kept: Installed, others: tuple[Installed, ...]) -> None:
        """Two dist-infos of one distribution side by side: pip uninstall, pip check and this
        audit can trust only one; the files on disk are `kept`'s."""
        stale = sorted(_dist_info(other.dist) for other in others)
        self.problems.append(Problem(
            "duplicate-dist-info",
            f"{kept.name}: {len(others) + 1} dist-infos in {kept.location} ({', '.join(sorted({kept.version, *(o.version for o in others)}))}), "
            f"as `pip install --target` leaves them; the installed files are {kept.version}'s: remove {' and '.join(stale)}",
            kept.name, kept.version, installed=tuple(o.version for o in others),
        ))

    def _verify(self, entry: InstalledProvider) -> None:
        """Each library file of a provider is the one its manifest records (by sha256)."""
        for library in entry.provider.provides.libraries:
            if not library.sha256:  # a plugin's description records none
                continue
            path = entry.item.file(library.path)
            if not path.is_file():
                actual = "it is missing"
            else:
                digest = sha256_hex(path)
                if digest == library.sha256:
                    continue
                actual = f"its sha256 is {digest}, not the {library.sha256} its {MANIFEST_NAME} records"
            self.problems.append(Problem(
                "modified", f"{entry.item.label} (in {entry.item.location}): {library.path} changed since it was "
                            f"installed: {actual}",
                entry.item.name, entry.item.version, library=library.path,
            ))

    def _conflicts(self) -> None:
        """Two distributions offering one library name: which one a consumer gets is arbitrary."""
        claimed: dict[str, InstalledProvider] = {}
        reported: set[tuple[str, str, str]] = set()
        for entry in self.providers:
            for library in entry.provider.provides.libraries:
                for name in dict.fromkeys((library.name, library.unique_name)):
                    other = claimed.setdefault(library_key(name), entry)
                    a, b = canonicalize_name(other.item.name), canonicalize_name(entry.item.name)
                    if a == b or (a, b, library_key(name)) in reported:
                        continue
                    reported.add((a, b, library_key(name)))
                    self.problems.append(Problem(
                        "conflict",
                        f"{other.item.label} (in {other.item.location}) and {entry.item.label} "
                        f"(in {entry.item.location}) both provide {name}",
                        entry.item.name, entry.item.version, library=name, provider=other.item.name,
                    ))

    # links

    def _links(self, item: Installed, links: Sequence[Link]) -> list[LinkStatus]:
        # the hook's table has one row per provider, with every file of it the wheel links to
        files: dict[str, set[str]] = {}
        for link in links:
            files.setdefault(canonicalize_name(link.provider), set()).add(link.needed)
        resolved = [self._resolve(item, link, sorted(files[canonicalize_name(link.provider)])) for link in links]
        # a provider missing or outside the policy: one line per consumer and provider, not per link
        said: set[tuple[str, str]] = set()
        for entry in resolved:
            if entry.status in ("provider-missing", "outside-policy"):
                key = (canonicalize_name(entry.link.provider), entry.link.requirement)
                if key not in said:
                    said.add(key)
                    self.problems.append(self._provider_problem(item, entry))
        by_binary: dict[str, list[_Resolved]] = {}
        for entry in resolved:
            by_binary.setdefault(entry.link.binary, []).append(entry)
        for binary, entries in by_binary.items():
            self._symbols(item, binary, entries)
        return [
            LinkStatus(
                item.name, item.version, entry.link, entry.status,
                entry.provider.item.version if entry.provider else None,
                str(entry.file) if entry.file else None,
            )
            for entry in resolved
        ]

    def _resolve(self, item: Installed, link: Link, files: Sequence[str]) -> _Resolved:
        """The installed provider copy that serves `link`: for a packed provider the one the
        consumer hook loads (loader.candidates on the audited entries, `files` being its table's);
        for a plugin's, any sys.path entry's copy inside the requirement that ships the linked file."""
        copies = [p for p in self.providers if canonicalize_name(p.item.name) == canonicalize_name(link.provider)]
        if not copies:
            return _Resolved(link, status="provider-missing")
        try:
            specifier = Requirement(link.requirement).specifier
        except InvalidRequirement:
            self._unreadable(item, f"{MANIFEST_NAME}: invalid requirement {link.requirement!r}")
            return _Resolved(link, status="unreadable")
        if copies[0].provider.load is Strategy.PROVIDER:
            chosen = self._hook_choice(item, link, files, copies)
            if chosen is not None:
                try:
                    admitted = specifier.contains(Version(chosen.item.version), prereleases=True)
                except InvalidVersion:
                    admitted = False
                if not admitted:  # the hook's last resort: check says what to install
                    return _Resolved(link, status="outside-policy")
                copies = [chosen]
        inside = []
        for copy in copies:
            try:
                if specifier.contains(Version(copy.item.version), prereleases=True):
                    inside.append(copy)
            except InvalidVersion:
                continue
        if not inside:
            return _Resolved(link, status="outside-policy")
        for copy in inside:
            library = _offered(copy, link.needed)
            if library is not None and copy.item.file(library.path).is_file():
                if _musllinux(item) and copy.item.location != item.location:
                    return self._musl_split(item, link, copy)
                return _Resolved(link, copy, copy.item.file(library.path))
        copy = inside[0]
        library = _offered(copy, link.needed)
        if library is None:
            self.problems.append(Problem(
                "library-missing",
                f"{item.label}: {link.binary} links to {link.needed}, which {copy.item.label} "
                f"(in {copy.item.location}) does not provide",
                item.name, item.version, link.binary, link.needed, link.provider, link.requirement,
            ))
            return _Resolved(link, copy, status="library-missing")
        self.problems.append(Problem(
            "file-missing",
            f"{item.label}: {link.binary} links to {link.needed}, but {copy.item.label} lacks its file "
            f"{copy.item.file(library.path)}",
            item.name, item.version, link.binary, link.needed, link.provider, link.requirement,
        ))
        return _Resolved(link, copy, status="file-missing")

    def _hook_choice(self, item: Installed, link: Link, files: Sequence[str],
                     copies: list[InstalledProvider]) -> InstalledProvider | None:
        """The copy the consumer hook loads, by its own code (loader.candidates): the first that
        loads, which check, loading nothing, takes to be the first whose dist-info it read (on
        musl the first in the consumer's own entry: the hook's layout check skips the others).
        Warns when an older release of the series comes first on the path."""
        package = copies[0].provider.provides.package
        by_dir = {os.path.realpath(os.path.join(c.item.location, package)): c for c in copies}
        entries = [os.path.abspath(p) for p in self.paths]
        served = [by_dir[d] for d in loader.candidates(package, files, entries, link.requirement) if d in by_dir]
        if not served:
            return None
        chosen = served[0]
        if _musllinux(item):
            chosen = next((c for c in served if c.item.location == item.location), chosen)
        first = next(loader.provider_copies(package, entries), None)
        shadow = by_dir.get(first or "")
        if shadow is not None and shadow is not chosen and loader.ships(first or "", files):
            warning = (
                f"{shadow.item.label} (in {shadow.item.location}) shadows {chosen.item.label} (in "
                f"{chosen.item.location}): {item.label} requires {_requirement_text(link)}, so its hook loads "
                f"{chosen.item.version} under a private module name, while `import {package}` gives "
                f"{shadow.item.version}; remove {shadow.item.label} from {shadow.item.location}"
            )
            if warning not in self.warnings:
                self.warnings.append(warning)
        return chosen

    def _musl_split(self, item: Installed, link: Link, copy: InstalledProvider) -> _Resolved:
        """musl's loader does not reuse a library the hook loaded by path: a musllinux consumer
        finds its provider only through its $ORIGIN RPATH, i.e. in its own sys.path entry."""
        self.problems.append(Problem(
            "musl-split-layout",
            f"{item.label} (in {item.location}) links to {link.needed} of {copy.item.label}, which is in "
            f"{copy.item.location}: on musl libc it must be installed in the same site-packages "
            f"(pip install '{link.requirement}' there)",
            item.name, item.version, link.binary, link.needed, link.provider, link.requirement,
        ))
        return _Resolved(link, copy, status="musl-split-layout")

    def _provider_problem(self, item: Installed, entry: _Resolved) -> Problem:
        link = entry.link
        requirement = _requirement_text(link)
        if entry.status == "provider-missing":
            return Problem(
                "provider-missing",
                f"{item.label} requires {requirement}, which is not installed (pip install '{requirement}')",
                item.name, item.version, provider=link.provider, requirement=link.requirement,
            )
        copies = [p for p in self.providers if canonicalize_name(p.item.name) == canonicalize_name(link.provider)]
        found = ", ".join(f"{p.item.label} (in {p.item.location})" for p in copies)
        return Problem(
            "outside-policy",
            f"{item.label} requires {requirement} (the ABI series it was linked against), but {found} "
            f"{'is' if len(copies) == 1 else 'are'} installed (pip install '{requirement}')",
            item.name, item.version, provider=link.provider, requirement=link.requirement,
            installed=tuple(p.item.version for p in copies),
        )

    def _symbols(self, item: Installed, binary: str, entries: list[_Resolved]) -> None:
        """Each provider file exports what `binary` imports from it, by the stand-in proof's rule
        (symbols.lacking) on the installed files; a missing binary is a problem."""
        path = item.file(binary)
        if not path.is_file():
            self.problems.append(Problem(
                "binary-missing", f"{item.label}: {binary} is missing", item.name, item.version, binary,
            ))
            for entry in entries:
                entry.status = "binary-missing" if entry.status == "ok" else entry.status
            return
        checkable = [e for e in entries if e.status == "ok" and e.file is not None]
        if not checkable:
            return
        try:
            adapter = adapter_for_host_binary(path)
            if adapter is None:
                raise SharewheelError(f"{path.name}: not a shared library or extension module")
            table = adapter.symbols(path)
        except (SharewheelError, OSError) as e:
            self._unreadable(item, f"{binary}: {e}")
            return
        # ELF's unbound imports: by elimination over the installed libraries, read once per binary
        tables = functools.cache(lambda: self._dependency_tables(item, binary, path, adapter, entries))
        for entry in checkable:
            assert entry.file is not None and entry.provider is not None
            try:
                provider_adapter = adapter_for_host_binary(entry.file)
                if provider_adapter is None:
                    raise SharewheelError(f"{entry.file.name}: not a shared library")
                exported = provider_adapter.symbols(entry.file)
            except (SharewheelError, OSError) as e:
                entry.status = "unreadable"
                self.problems.append(Problem(
                    "unreadable", f"{entry.provider.item.label}: {e}", entry.provider.item.name,
                    entry.provider.item.version, library=entry.link.needed,
                ))
                continue
            absent = symbols.lacking(table, entry.link.needed, exported,
                                     functools.partial(_neighbours, tables, entry.link.needed), self.interpreter)
            if absent:
                entry.status = "symbols-missing"
                shown = f"{entry.file} ({entry.provider.item.label})"
                self.problems.append(Problem(
                    "symbols-missing",
                    f"{item.label}: {symbols.describe_missing(binary, entry.link.needed, shown, absent)}",
                    item.name, item.version, binary, entry.link.needed, entry.link.provider,
                    entry.link.requirement, symbols=tuple(absent),
                ))

    def _dependency_tables(self, item: Installed, binary: str, path: Path, adapter: PlatformAdapter,
                           entries: list[_Resolved]) -> dict[str, symbols.SymbolTable] | None:
        """Symbol tables of the binary's libraries, by name: its direct dependencies (the provider
        files its links resolve to, its distribution's own files (vendored copies), then what the
        host's search finds), then what the search finds they load. None when a direct one
        cannot be found or read: attributing unbound imports by elimination would then blame a
        provider for the symbols of the library not found."""
        described = adapter.describe(path)
        linked = {library_key(e.link.needed): e for e in entries}
        own = {library_key(posixpath.basename(f.as_posix())): f.as_posix() for f in item.dist.files or ()}
        searched: dict[str, Path] | None = None
        tables: dict[str, symbols.SymbolTable] = {}
        for name in (posixpath.basename(n) for n in (described.needed if described else ())):
            key = library_key(name)
            candidate: Path | None = None
            if key in linked:
                candidate = linked[key].file
            elif key in own and item.file(own[key]).is_file():
                candidate = item.file(own[key])
            else:
                if searched is None:
                    searched = adapter.resolve(item.location, binary)
                candidate = searched.get(name)
            try:
                if candidate is None or adapter_for_host_binary(candidate) is None:
                    return None
                tables[key] = adapter.symbols(candidate)
            except (SharewheelError, OSError):  # a system library we cannot read: not the consumer's fault
                return None
        if searched is None:
            searched = adapter.resolve(item.location, binary)
        for name, candidate in searched.items():
            key = library_key(name)
            if key in tables or key in linked:
                continue
            try:
                if adapter_for_host_binary(candidate) is None:
                    return None
                tables[key] = adapter.symbols(candidate)
            except (SharewheelError, OSError):
                return None
        return tables

    # vendored copies

    def _carried(self, select: Callable[[str], object]) -> list[Carried]:
        """The files of the visible, readable distributions whose names `select` accepts, present
        on disk: vendored copies, provider libraries and anything else a RECORD lists."""
        found = []
        for item in self.items:
            if item.shadowed or id(item) in self.broken:
                continue
            for path, _ in self._guarded(item, functools.partial(_listed, item)) or []:
                if select(path.rsplit("/", 1)[-1]) and item.file(path).is_file():
                    found.append(Carried(item.name, item.version, item.location, path))
        return found

    def _duplicates(self) -> list[Duplicate]:
        """Vendored copies (from RECORD, as the tools name them) grouped by library stem."""
        groups: dict[str, list[Copy]] = {}
        originals: dict[str, list[str]] = {}
        for item in self.items:
            if item.shadowed:
                continue
            if id(item) in self.broken:
                continue
            files = self._guarded(item, functools.partial(_listed, item)) or []
            for copy in vendored_copies(files):
                on_disk = item.file(copy.path)
                if not on_disk.is_file():  # listed but gone: it takes no space
                    continue
                size = on_disk.stat().st_size if copy.size < 0 else copy.size
                groups.setdefault(copy.stem, []).append(Copy(item.name, item.version, item.location, copy.path, size))
                originals.setdefault(copy.stem, []).extend(copy.originals)
        offered: dict[str, InstalledProvider] = {}
        for entry in self.providers:
            for library in entry.provider.provides.libraries:
                for name in (library.name, library.unique_name):
                    offered.setdefault(library_key(name), entry)
        duplicates = []
        for stem, copies in sorted(groups.items()):
            if len(copies) < 2 or len({canonicalize_name(c.distribution) for c in copies}) < 2:
                continue
            provider = next((offered[library_key(n)] for n in originals[stem] if library_key(n) in offered), None)
            saving = sum(c.size for c in copies) - max(c.size for c in copies)
            duplicates.append(Duplicate(stem, tuple(copies), saving, provider))
        return duplicates


def _binary(filename: str) -> bool:
    """Whether a file may be an ELF extension module or library, by its name."""
    return filename.endswith(".so") or ".so." in filename


def _listed(item: Installed) -> list[tuple[str, int]]:
    """The files its RECORD lists, with their sizes (-1: not given)."""
    return [(f.as_posix(), -1 if f.size is None else f.size) for f in item.dist.files or ()]


def _neighbours(tables: Callable[[], dict[str, symbols.SymbolTable] | None], needed: str) -> symbols.Neighbours:
    """For the link to `needed`: the binary's other installed libraries (no reference copy:
    the one it used before repair is gone); none when one of them was not found."""
    found = tables()
    if found is None:
        return symbols.Neighbours(others=None)
    return symbols.Neighbours(others=tuple(functools.partial(_read, t) for k, t in found.items() if k != library_key(needed)))


def _read(table: symbols.SymbolTable) -> symbols.SymbolTable:
    """A table read already, as symbols.lacking asks for it."""
    return table


def _musllinux(item: Installed) -> bool:
    """Whether the distribution was installed from a musllinux wheel."""
    return any(key.os == "musllinux" for key in keys_of(installed_platforms(item.dist)))


def _offered(copy: InstalledProvider, needed: str) -> ProvidedLibrary | None:
    return next(
        (lib for lib in copy.provider.provides.libraries if library_key(needed) in (library_key(lib.unique_name), library_key(lib.name))),
        None,
    )


def _requirement_text(link: Link) -> str:
    """The link's requirement as repair wrote it, naming the provider even when it does not parse."""
    try:
        Requirement(link.requirement)
    except InvalidRequirement:
        return f"{link.provider} ({link.requirement})"
    return link.requirement
