"""One adapter per OS behind one small protocol, in the spirit of cibuildwheel's platforms/.

An adapter knows its binary format and which pypa tool vendors libraries for it. The generic
flows (sharewheel.pack, sharewheel.repair, sharewheel.show) never look inside a binary
themselves; they hand an adapter an unpacked wheel tree and say which needed names are
provided (relink them, don't vendor them) and which are not (vendor them as the OS tool does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from sharewheel.errors import BinaryError, InputWheelError
from sharewheel.platforms import systems
from sharewheel.symbols import SymbolTable

if TYPE_CHECKING:
    from sharewheel.plan import Plan


@dataclass(frozen=True)
class BinaryInfo:
    """A binary in a wheel tree: the library names it needs and whether Python imports it."""

    needed: tuple[str, ...]
    is_extension: bool


@dataclass(frozen=True)
class PrefixLibrary:
    """A shared library found in a build prefix, to be packed."""

    path: Path  # the real file
    name: str  # the name consumers were linked against (soname, install name, DLL name)
    needed: tuple[str, ...]


NeedState = Literal["provided", "vendored", "policy", "external", "missing"]


@dataclass(frozen=True)
class NeededState:
    """One needed library of one binary, as the OS tool judged it before vendoring."""

    name: str
    state: NeedState
    path: str | None = None  # where it was found, for external libraries


@dataclass(frozen=True)
class RepairOutcome:
    """What the OS tool decided and did in the work tree."""

    platforms: tuple[str, ...]  # platform tags of the repaired wheel
    vendored: tuple[str, ...] = field(default=())  # tree-relative paths of vendored copies
    moved: dict[str, str] = field(default_factory=dict)  # binaries the OS tool moved: old → new path
    needs: dict[str, tuple[NeededState, ...]] = field(default_factory=dict)  # binary → its needs, before repair
    sources: dict[str, str] = field(default_factory=dict)  # vendored tree path → the file it was copied from
    refusal: str | None = None  # show only: why repair refuses the wheel (the OS tool's error)


class PlatformAdapter(Protocol):
    os: str

    def binaries(self, tree: Path) -> dict[str, BinaryInfo]:
        """Every binary in `tree` (tree-relative POSIX path) with what it needs."""

    def repair(self, plan: Plan, tree: Path) -> RepairOutcome:
        """In the unpacked `tree`: judge each binary's needs, vendor what `plan` does not provide
        (as the OS tool does), relink what it provides, and choose the platform tags."""

    def prefix_libraries(self, prefix: Path) -> list[PrefixLibrary]:
        """The shared libraries of a build prefix."""

    def describe(self, path: Path) -> PrefixLibrary | None:
        """A library file's name as linkers record it (soname, install id, DLL name) and what it needs."""

    def symbols(self, path: Path) -> SymbolTable:
        """What a binary imports (bound to a library where the format says) and exports."""

    def resolve(self, tree: Path, binary: str, search: tuple[Path, ...] = ()) -> dict[str, Path]:
        """Libraries the binary loads that the host finds, where the format leaves imports unbound."""

    def install_library(self, library: PrefixLibrary, dest: Path, relink: dict[str, str]) -> None:
        """Copy `library` to `dest` (named by its unique name), renamed and relinked."""

    def link_aids(self, lib_dir: Path, unique: str, original: str) -> list[Path]:
        """Files that let `-l<original name>` link to the unique file (GNU ld scripts, .tbd)."""

    def platform_tag(self, path: Path) -> str:
        """The unrepaired platform tag of a binary (`linux_x86_64`), before the OS tool retags."""


def scan_binaries(
    tree: Path, read: Callable[[Path], BinaryInfo | None], named_like: tuple[str, ...], kind: str, *,
    other: Callable[[Path], bool] | None = None,
) -> dict[str, BinaryInfo]:
    """Every binary under `tree` that `read` recognises. A file named like one (a suffix in
    `named_like`) that is not one is an error, not a wheel with one binary less, unless `other`
    knows it as something else (a GNU ld script)."""
    found: dict[str, BinaryInfo] = {}
    for path in sorted(tree.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(tree).as_posix()
        try:
            info = read(path)
        except BinaryError as e:
            raise type(e)(f"{relative}: {str(e).removeprefix(path.name + ': ')}") from None
        if info is not None:
            found[relative] = info
        elif path.name.lower().endswith(named_like) and not (other is not None and other(path)):
            article = "an" if kind[0] in "AEIOU" else "a"
            raise BinaryError(f"{relative}: named like a binary, but not {article} {kind} file (wrong magic number)")
    return found


def adapter_for(platforms: list[str] | tuple[str, ...], where: str) -> PlatformAdapter:
    """The adapter for a wheel's platform tags; one OS per wheel."""
    found = systems(platforms)
    if found == {"linux"}:
        from sharewheel.adapters.linux import LinuxAdapter

        return LinuxAdapter()
    if found == {"macos"}:
        from sharewheel.adapters.macos import MacOSAdapter

        return MacOSAdapter()
    if found == {"windows"}:
        from sharewheel.adapters.windows import WindowsAdapter

        return WindowsAdapter()
    if not found:
        raise InputWheelError(f"{where}: platform tags {', '.join(platforms)} are not platform-specific; nothing to repair")
    raise InputWheelError(f"{where}: a wheel for several systems ({', '.join(sorted(found))}) cannot be repaired")


def adapter_for_host_binary(path: Path) -> PlatformAdapter | None:
    """The adapter for a library in a build prefix, by its file format; None for other files."""
    from sharewheel.adapters import macho

    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"\x7fELF":
        from sharewheel.adapters.linux import LinuxAdapter

        return LinuxAdapter()
    if macho.is_macho(path):
        from sharewheel.adapters.macos import MacOSAdapter

        return MacOSAdapter()
    from sharewheel.adapters.windows import WindowsAdapter, is_pe

    if is_pe(path):
        return WindowsAdapter()
    return None


def slim_wheel(plan: Plan, tree: Path) -> Path:
    """The tree zipped without compression into a wheel file, for OS tools that read one (delocate
    reads its name, delvewheel the whole wheel): written once, beside the tree."""
    from sharewheel.wheelfile import write_wheel

    path = tree.parent / "slim" / plan.source.name
    return path if path.is_file() else write_wheel(tree, plan.dist_info, path, compress=False)
