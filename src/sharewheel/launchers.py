"""Console executables linked to providers: repair turns each into a console_scripts entry point
that finds the providers as the hook does and hands them to that process only.

An executable in ``<dist>.data/scripts`` is installed into ``bin/`` (``Scripts\\``), where no RPATH
reaches a provider in another sys.path entry and no hook preloads anything. So repair moves it into
the wheel's root as ``<dist>.scripts/sharewheel/<name>`` (two levels down, as ``.data/scripts`` is:
every ``$ORIGIN``/``@loader_path``-relative path the OS tool and the relinking wrote still holds;
one auditwheel already moved behind its shim stays in ``<dist>.scripts/`` and loses the shim) and
registers ``<name> = _sharewheel_launch_<dist>:main_<n>`` (see sharewheel.runtime.launcher).

An executable a package ships and starts itself cannot be intercepted: its package gets the
launcher as ``_sharewheel_launcher.py`` beside its hook, whose ``environ_for()`` is the environment
to start it with.
"""

from __future__ import annotations

import configparser
import io
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from sharewheel.errors import InputWheelError, SharewheelError
from sharewheel.manifest import Link
from sharewheel.readers import elf, macho, pe
from sharewheel.runtime import (
    HOOK_MODULE,
    Requirement,
    launch_module,
    launch_modules,
    launcher_source,
    loader_source,
    top_level_modules,
)
from sharewheel.runtime.launcher import LAUNCHER_MODULE
from sharewheel.wheelfile import InputWheel, name_key, shown

__all__ = ["install_launchers"]

GROUP = "console_scripts"
MOVED_DIR = "sharewheel"  # under <dist>.scripts/: the executables repair moved (auditwheel's own are beside it)


def install_launchers(tree: Path, links: Sequence[Link], renamed: dict[str, str], runtime: Sequence[Requirement],
                      distribution: str, dist_info: str, wheel: InputWheel | None = None) -> dict[str, str]:
    """Give every executable in .data/scripts (or moved out of it, by auditwheel or an earlier
    repair) that links a provider a console_scripts launcher. `links`: the plan's, by the binaries'
    paths in the input; `renamed`: where the OS tool and the hook moved binaries. Returns the
    binaries moved here, old → new path. Refused before anything is written: an entry point or a
    file of the wheel's own where a launcher goes."""
    scripts_dir = f"{distribution}.scripts"
    data_scripts = f"{dist_info.removesuffix('.dist-info')}.data/scripts"
    needs: dict[str, set[str]] = {}
    for link in links:
        needs.setdefault(link.binary, set()).add(canonicalize_name(link.provider))
    # command → (its path in the input, now, once launched, the providers it needs)
    commands: dict[str, tuple[str, str, str, tuple[Requirement, ...]]] = {}
    packages: set[str] = set()  # those shipping an executable linked to a provider
    for binary, providers in sorted(needs.items()):
        current = renamed.get(binary, binary)
        parts = current.split("/")
        hooked = [posixpath.join(*parts[:i]) for i in range(len(parts) - 1, 0, -1)
                  if (tree.joinpath(*parts[:i], f"{HOOK_MODULE}.py")).is_file()]
        if hooked and is_executable(tree / current):
            packages.add(hooked[0])
            continue
        if len(parts) == 3 and parts[0].endswith(".data") and parts[1] == "scripts":
            final = posixpath.join(scripts_dir, MOVED_DIR, parts[2])
        elif parts[0] == scripts_dir and not current.endswith(".py") and (
                current != binary or wheel is None or f"{data_scripts}/{parts[-1]}" not in wheel.zip.NameToInfo):
            final = current  # moved by auditwheel, or by an earlier repair (an input's auditwheel shim: kept)
        else:
            continue
        name = parts[-1]
        command = name[:-4] if name.lower().endswith(".exe") else name
        required = tuple(r for r in runtime if canonicalize_name(r.distribution) in providers)
        if command in commands:
            raise InputWheelError(f"{commands[command][0]} and {binary} would both be the command {command}")
        commands[command] = (binary, current, final, required)
    _check_package_launchers(tree, wheel, sorted(packages))
    if not commands:
        _install_package_launchers(tree, sorted(packages))
        return {}
    needed_by = canonicalize_name(distribution)
    launch, launcher = launch_modules(needed_by)
    loader = top_level_modules(needed_by)[1]
    entry_points = f"{dist_info}/entry_points.txt"
    parser = _entry_points(tree, entry_points, wheel)
    _check(tree, wheel, commands, parser, [f"{m}.py" for m in (launch, launcher, loader)], launch)
    _install_package_launchers(tree, sorted(packages))

    moved: dict[str, str] = {}
    for binary, current, final, _ in commands.values():
        if current != binary:  # auditwheel's shim in .data/scripts: the entry point replaces it
            (tree / binary).unlink(missing_ok=True)
        if final != current:
            (tree / final).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tree / current, tree / final)
            moved[binary] = final
    ordered = sorted(commands.items())
    (tree / f"{launch}.py").write_text(
        launch_module([(c, final, req) for c, (_, _, final, req) in ordered], needed_by), encoding="utf-8")
    (tree / f"{launcher}.py").write_text(launcher_source(), encoding="utf-8")
    (tree / f"{loader}.py").write_text(loader_source(), encoding="utf-8")
    if not parser.has_section(GROUP):
        parser.add_section(GROUP)
    for n, (command, _) in enumerate(ordered):
        parser.set(GROUP, command, f"{launch}:main_{n}")
    text = io.StringIO()
    parser.write(text)
    (tree / entry_points).parent.mkdir(parents=True, exist_ok=True)
    (tree / entry_points).write_text(text.getvalue().rstrip("\n") + "\n", encoding="utf-8")
    return moved


def _entry_points(tree: Path, member: str, wheel: InputWheel | None) -> configparser.ConfigParser:
    """The wheel's entry_points.txt (the work tree's copy, else the input's), names kept as written."""
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    if (tree / member).is_file():
        text = (tree / member).read_text(encoding="utf-8")
    elif wheel is not None and member in wheel.zip.NameToInfo:
        text = wheel.read_text(member)
    else:
        return parser
    try:
        parser.read_string(text, member)
    except configparser.Error as e:
        raise InputWheelError(f"{member}: not an entry points file ({' '.join(str(e).split())})") from None
    return parser


def _check(tree: Path, wheel: InputWheel | None, commands: dict[str, tuple[str, str, str, tuple[Requirement, ...]]],
           parser: configparser.ConfigParser, modules: list[str], launch: str) -> None:
    """Refuse a launcher that would replace an entry point or a file of the wheel's own."""
    for group in (GROUP, "gui_scripts"):
        for command in commands:
            ours = f"{launch}:main_"
            if parser.has_option(group, command) and not parser.get(group, command).startswith(ours):
                raise InputWheelError(f"{commands[command][0]}: the wheel already has the {group} entry point "
                                      f"{command} = {parser.get(group, command)}, where repair puts its launcher")
    names = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
    if wheel is not None:
        names.update(n.rstrip("/") for n in wheel.zip.namelist())
    by_key = {name_key(n): n for n in names}
    for binary, current, final, _ in commands.values():
        other = by_key.get(name_key(final)) or by_key.get(name_key(posixpath.dirname(final)))
        if final != current and other is not None:  # (also one differing only in case: one file on macOS, Windows)
            raise InputWheelError(f"{shown(other)}: the wheel's own file, where repair moves {binary}")
    generated = ('"""Generated by sharewheel', '"""sharewheel\'s')
    for module in modules:
        other = by_key.get(name_key(module))
        if other is not None and not _generated(tree, wheel, other, generated):
            raise InputWheelError(f"{shown(other)}: the wheel's own file, where repair writes its launcher")


def _generated(tree: Path, wheel: InputWheel | None, name: str, marks: tuple[str, ...]) -> bool:
    """Whether `name` is a file sharewheel wrote (an earlier repair's, or this one's loader)."""
    path = tree / name
    prefixes = tuple(m.encode() for m in marks)
    if path.is_file():
        with open(path, "rb") as f:
            return f.read(64).startswith(prefixes)
    if wheel is not None and name in wheel.zip.NameToInfo:
        return wheel.starts_with(wheel.zip.getinfo(name), prefixes, size=64)
    return False


def _check_package_launchers(tree: Path, wheel: InputWheel | None, packages: list[str]) -> None:
    """Refuse a package launcher that would replace a file of the package's own."""
    for package in packages:
        target = f"{package}/{LAUNCHER_MODULE}.py"
        if ((tree / target).is_file() or wheel is not None and target in wheel.zip.NameToInfo) \
                and not _generated(tree, wheel, target, ('"""sharewheel\'s',)):
            raise InputWheelError(f"{shown(target)}: the wheel's own file, where repair writes its launcher")


def _install_package_launchers(tree: Path, packages: list[str]) -> None:
    """The launcher beside the hook of each package in `packages`."""
    for package in packages:
        (tree / package / f"{LAUNCHER_MODULE}.py").write_text(launcher_source(), encoding="utf-8")


MH_EXECUTE = 2  # Mach-O filetype of a program


def is_executable(path: Path) -> bool:
    """Whether `path` is a program rather than a library: an ELF file naming an interpreter, a PE
    file without the DLL flag, a Mach-O file (its first slice, if fat) of type MH_EXECUTE. (The
    readers' answers, cached from the analysis that read every binary already.)"""
    try:
        if elf.is_elf(path):
            found = elf.read(path)
            return found is not None and found.interpreter is not None
        if pe.is_pe(path):
            return not pe.read_pe(path).dll
        if macho.is_macho(path):
            return macho.read(path).slices[0].filetype == MH_EXECUTE
    except (OSError, SharewheelError, IndexError):
        return False
    return False
