"""Everything sharewheel takes from delvewheel, in one place (issue 13).

delvewheel has no Python API but its command line: sharewheel.adapters.windows calls its
internals, the modules ``delvewheel._wheel_repair``, ``_dll_utils`` and ``_dll_list``, through the
wrappers below, each calling delvewheel with keyword arguments. Every delvewheel name sharewheel
uses is imported here and nowhere else, and listed in ``NAMES``; ``CHECKED_AGAINST`` is the range
they were checked against, the pin in pyproject.toml. tests/test_tool_internals.py imports every
listed name (naming the one a new delvewheel dropped), checks the keywords passed here against
delvewheel's signatures, and checks that no other module of sharewheel imports delvewheel;
.github/workflows/newest-tools.yml runs it, with the whole suite, against the newest delvewheel
every week.

What is used: ``WheelRepair`` vendors what no provider offers (it reads and writes wheel files
itself); ``replace_needed`` renames import and delay-import entries (in section padding, or in a
new section: editing a name in place overwrites the next one); delvewheel's search
(``_find_library_in_path``) and its tables of DLLs every Windows or Python has (``_dll_list``)
say what it would vendor, for sharewheel's report of each binary's needs.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sharewheel.errors import ToolError

#: the delvewheel releases this module was checked against: the pin in pyproject.toml
CHECKED_AGAINST = "delvewheel>=1.13,<1.14"

#: every delvewheel name sharewheel uses, as module:qualified.name
NAMES = (
    "delvewheel._dll_list:MachineType",
    "delvewheel._dll_list:MachineType.platform_tag_to_type",
    "delvewheel._dll_list:ignore_abi3",
    "delvewheel._dll_list:ignore_by_abi_platform",
    "delvewheel._dll_list:ignore_dependency",
    "delvewheel._dll_list:ignore_names_arm64",
    "delvewheel._dll_list:ignore_names_x64",
    "delvewheel._dll_list:ignore_names_x86",
    "delvewheel._dll_list:ignore_regexes",
    "delvewheel._dll_utils:_find_library_in_path",
    "delvewheel._dll_utils:replace_needed",
    "delvewheel._dll_utils:wildcard_contains",
    "delvewheel._wheel_repair:WheelRepair",
    "delvewheel._wheel_repair:WheelRepair._wheel_dirs_casemap",
    "delvewheel._wheel_repair:WheelRepair.repair",
)


def rename_imports(path: Path, names: list[str], mapping: dict[str, str], strip: bool = False) -> None:
    """Rename the imports `names` of the PE file `path` to `mapping`'s names (RuntimeError where
    there is no room; with `strip`, GNU strip first removes an overlay that leaves none, as
    delvewheel's --strip does)."""
    from delvewheel._dll_utils import replace_needed

    with contextlib.redirect_stdout(io.StringIO()):
        replace_needed(lib_path=str(path), old_deps=names, name_map=mapping, strip=strip, direct=False)


@dataclass(frozen=True)
class Repair:
    """What `delvewheel repair` is told: its flags as its CLI hands them to WheelRepair (DLL
    names lowercase), plus `in_wheel`: the DLLs (name → files in the unpacked wheel) to take as
    already in the wheel, in place of delvewheel's own --ignore-existing map of every file."""

    lib_sdir: str = ".libs"
    include: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    ignore_existing: bool = False
    in_wheel: dict[str, list[str]] | None = None
    analyze_existing: bool = False
    analyze_existing_exes: bool = False
    no_mangles: frozenset[str] = frozenset()
    no_mangle_all: bool = False
    with_mangle: bool = False
    strip: bool = False
    namespace_pkgs: frozenset[tuple[str, ...]] = frozenset()
    include_symbols: bool = False
    include_imports: bool = False
    custom_patch: bool = False


def repair_wheel(wheel: Path, unpacked: Path, target: Path, settings: Repair) -> list[str]:
    """`delvewheel repair` of `wheel` (unpacked into `unpacked`) into the directory `target`; the
    warnings it gave (a namespace package not found, ...), each on one line, for sharewheel to
    say in its own words rather than as Python's warning with delvewheel's source line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _repair_wheel(wheel, unpacked, target, settings)
    return list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))


def _repair_wheel(wheel: Path, unpacked: Path, target: Path, settings: Repair) -> None:
    from delvewheel._wheel_repair import WheelRepair

    ignore_existing = settings.ignore_existing or settings.in_wheel is not None
    repairer = WheelRepair(whl_path=str(wheel), extract_dir=str(unpacked), include=set(settings.include),
                           exclude=set(settings.exclude), ignore_existing=ignore_existing,
                           analyze_existing=settings.analyze_existing,
                           analyze_existing_exes=settings.analyze_existing_exes)
    if settings.in_wheel is not None:  # "already in the wheel": only these, not every file of the wheel
        if not hasattr(repairer, "_wheel_dirs_casemap"):
            raise ToolError("this delvewheel cannot be told which DLLs the wheel holds")
        repairer._wheel_dirs_casemap = settings.in_wheel
    repairer.repair(target=str(target), no_mangles=set(settings.no_mangles), no_mangle_all=settings.no_mangle_all,
                    with_mangle=settings.with_mangle, strip=settings.strip, lib_sdir=settings.lib_sdir,
                    log_diagnostics=False, namespace_pkgs=set(settings.namespace_pkgs),
                    include_symbols=settings.include_symbols, include_imports=settings.include_imports,
                    custom_patch=settings.custom_patch)


def machine_type(tag: str) -> Any:
    """delvewheel's MachineType for a platform tag (win_amd64), None for a tag it does not know."""
    from delvewheel._dll_list import MachineType

    return MachineType.platform_tag_to_type(tag=tag)


def find_library(name: str, machine: Any) -> str | None:
    """Where delvewheel finds a DLL of that machine type on PATH, None where it does not."""
    from delvewheel._dll_utils import _find_library_in_path

    found = _find_library_in_path(name=name, arch=machine, include_symbols=False, include_imports=False)
    return None if found is None else found[0]


def matches(name: str, patterns: set[str]) -> bool:
    """delvewheel's --exclude matching: a name, or a pattern with wildcards."""
    from delvewheel._dll_utils import wildcard_contains

    return wildcard_contains(item=name, patterns=patterns)


def system_names(machine: Any) -> set[str]:
    """The DLLs delvewheel takes for granted on Windows for that machine type (x64's for others)."""
    from delvewheel._dll_list import ignore_names_arm64, ignore_names_x64, ignore_names_x86

    table = {"AMD64": ignore_names_x64, "I386": ignore_names_x86, "ARM64": ignore_names_arm64}
    return set(table.get(getattr(machine, "name", ""), ignore_names_x64))


def is_system(lower: str, importer: str, system: set[str]) -> bool:
    """delvewheel's test for a DLL the user's Windows (or Python) has, as `importer` imports it."""
    from delvewheel._dll_list import ignore_dependency, ignore_regexes

    return lower in system or any(r.fullmatch(lower) for r in ignore_regexes) \
        or lower in ignore_dependency.get(importer.lower(), ())


def excluded_by_tags(wheel_name: str) -> set[str]:
    """The DLLs every Python the wheel's tags name ships (vcruntime140.dll for CPython >= 3.9 on
    x64), from delvewheel's tables as its WheelRepair reads them: what all the ABI tags' rows
    share, and for an abi3 wheel what all the Python tags' rows share."""
    from delvewheel._dll_list import ignore_abi3, ignore_by_abi_platform

    *_, pythons, abis, platform = wheel_name.removesuffix(".whl").split("-")

    def common(table: dict[str, set[str]], tags: list[str]) -> set[str]:
        rows = [next((names for pattern, names in table.items() if re.fullmatch(pattern, f"{tag}-{platform}")), None)
                for tag in tags]
        known = [set(row) for row in rows if row is not None]
        return set.intersection(*known) if known and len(known) == len(rows) else set()

    excluded = common(ignore_by_abi_platform, abis.split("."))
    if set(abis.split(".")) <= {"abi3", "abi3t"}:
        excluded |= common(ignore_abi3, pythons.split("."))
    return excluded
