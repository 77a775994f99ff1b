"""The repair flags of auditwheel, delocate and delvewheel, with the meaning each tool gives them.

A release pipeline switches to sharewheel by replacing `auditwheel repair`, `delocate-wheel` or
`delvewheel repair` in its repair command, flags and all. Each flag belongs to one tool and so to
one OS: it applies to that OS's wheels only (one command line serves a cibuildwheel matrix), and
a flag given for a wheel of another OS is reported, once per wheel, as not used. `--strip` and
`--exclude` exist in two tools with two meanings: each wheel gets its own tool's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

Tool = Literal["auditwheel", "delocate", "delvewheel"]
TOOL_OF_OS: dict[str, Tool] = {"linux": "auditwheel", "macos": "delocate", "windows": "delvewheel"}


@dataclass(frozen=True)
class AuditwheelFlags:
    """`auditwheel repair`'s flags, for Linux wheels."""

    zip_compression_level: int | None = None  # -z: every entry deflated again at this level
    update_tags: bool = True  # --no-update-tags: keep the wheel's own platform tags
    strip: bool = False  # --strip: strip -s the vendored libraries and every ELF file of the wheel
    only_plat: bool = False  # --only-plat: tag --plat's policy only, not also a better one
    disable_isa_ext_check: bool = False  # --disable-isa-ext-check
    allow_pure_python_wheel: bool = False  # --allow-pure-python-wheel (sharewheel copies pure wheels anyway)
    ldpaths: str | None = None  # --ldpaths: replaces the library search path (AUDITWHEEL_LD_LIBRARY_PATH adds)
    patcher: str = "patchelf"  # --patcher: patchelf, lief-patchelf or none (auditwheel 6.8's choices)


@dataclass(frozen=True)
class DelocateFlags:
    """`delocate-wheel`'s flags, for macOS wheels."""

    dylibs_only: bool = False  # -d: only analyse files with known dynamic library extensions
    executable_path: str | None = None  # --executable-path: what @executable_path resolves to
    ignore_missing_dependencies: bool = False  # --ignore-missing-dependencies
    sanitize_rpaths: bool = True  # --no-sanitize-rpaths: keep absolute and relative rpaths
    check_archs: bool = False  # -k: check the architectures of the libraries depended on
    require_archs: str | tuple[str, ...] | None = None  # --require-archs (cibuildwheel's {delocate_archs})
    require_target_macos_version: str | None = None  # --require-target-macos-version (deprecated by delocate)
    exclude: tuple[str, ...] = ()  # -e: exclude libraries whose path contains one of these strings


@dataclass(frozen=True)
class DelvewheelFlags:
    """`delvewheel repair`'s flags, for Windows wheels (delvewheel delimits its lists with os.pathsep)."""

    add_path: tuple[str, ...] = ()  # --add-path: more directories to search for DLLs
    include: tuple[str, ...] = ()  # --include/--add-dll: DLLs vendored even if a system has them
    no_dll: tuple[str, ...] = ()  # --no-dll (delvewheel's --exclude): DLL names never vendored
    ignore_existing: bool = False  # --ignore-existing/--ignore-in-wheel
    analyze_existing: bool = False  # --analyze-existing
    analyze_existing_exes: bool = False  # --analyze-existing-exes
    no_mangle: tuple[str, ...] = ()  # --no-mangle
    no_mangle_all: bool = False  # --no-mangle-all
    with_mangle: bool = False  # --with-mangle
    strip: bool = False  # --strip: strip DLLs with overlays and too little padding to be name-mangled
    namespace_pkg: tuple[str, ...] = ()  # --namespace-pkg
    custom_patch: bool = False  # --custom-patch
    include_symbols: bool = False  # --include-symbols: the .pdb files beside vendored DLLs
    include_imports: bool = False  # --include-imports: the .lib import libraries beside vendored DLLs


@dataclass(frozen=True)
class ToolFlags:
    linux: AuditwheelFlags = AuditwheelFlags()
    macos: DelocateFlags = DelocateFlags()
    windows: DelvewheelFlags = DelvewheelFlags()
    given: tuple[tuple[str, tuple[Tool, ...]], ...] = ()  # (flag, the tools it belongs to) of each flag given

    def unused_for(self, os_name: str | None) -> list[str]:
        """The flags given that belong to no tool of `os_name`, each with its tool (for the "not used" note)."""
        tool = TOOL_OF_OS.get(os_name or "")
        return [f"{flag} ({' and '.join(owners)}'s)" for flag, owners in self.given if tool not in owners]


def defaults_differ(flags: object) -> bool:
    """Whether any field of a flags dataclass differs from its default."""
    return any(getattr(flags, f.name) != f.default for f in fields(flags))  # type: ignore[arg-type]


def split_dlls(values: tuple[str, ...]) -> tuple[str, ...]:
    """delvewheel's DLL lists (repeatable here), as one tuple of names. delvewheel splits them at
    os.pathsep (';' on Windows); ':' too on every OS, as no DLL name holds one."""
    return tuple(name for value in values for part in value.split(os.pathsep) for name in part.split(":") if name)


def split_paths(values: tuple[str, ...]) -> tuple[Path, ...]:
    """delvewheel's --add-path: os.pathsep-delimited, as delvewheel splits it."""
    return tuple(Path(p) for value in values for p in value.split(os.pathsep) if p)
