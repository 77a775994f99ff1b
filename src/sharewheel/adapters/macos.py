"""macOS (Mach-O) adapter: delocate decides and vendors, sharewheel's Mach-O backend edits and signs.

delocate is reached through sharewheel.adapters._delocate only, delocate's one module in
sharewheel (its names listed there, with the range in pyproject.toml they were checked
against): ``delocate_path`` and the steps ``delocate_wheel`` runs around it, on sharewheel's
unpacked tree. While they run, delocate's Apple-tool wrappers (and its macholib reading of
minimum macOS versions) are replaced by sharewheel.adapters.macho (see there why), the same
functions on every host: the swap, ``_delocate.backend``.

Provided libraries: each load command naming one (by its unique install name, its original name
or an absolute build path: matched by file name) is first rewritten to ``@rpath/<unique name>``.
A copy of the provider's file is put on delocate's search path so that delocate resolves it —
and then does not copy it, because its copy filter rejects that directory (delocate#207: an
excluded library must still be found). Afterwards each relinked binary gets an LC_RPATH
``@loader_path/…`` to the provider's directory in the one-site-packages case; its absolute and
relative rpaths are removed, as delocate removes those of the binaries it relinks (both kept with
--no-sanitize-rpaths).

delocate-wheel's flags (``plan.options.tools.macos``) reach the delocate functions they reach in
delocate-wheel, as it passes them; -e/--exclude also takes sharewheel's fnmatch patterns of names,
and a library it excludes need not be found; a library found through --executable-path is not
walked into, where delocate 0.13 would relink it outside the wheel (tests/test_flags_delocate.py
compares each flag with the real delocate-wheel). dyld matches ``@rpath/NAME`` against the install names of images
already loaded before it searches any rpath, so the provider's preload serves split installs.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import posixpath
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sharewheel.adapters import (
    BinaryInfo,
    NeededState,
    PrefixLibrary,
    RepairOutcome,
    _delocate,
    macho,
    scan_binaries,
)
from sharewheel.errors import BinaryError, ProviderError, ToolError
from sharewheel.naming import link_name
from sharewheel.symbols import SymbolTable

if TYPE_CHECKING:
    from packaging.version import Version

    from sharewheel.plan import Plan

_EXTENSION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[^/]*)?\.so$")
_SYSTEM = ("/usr/lib/", "/System/")


#: the swap, kept under the name tests/test_differential_macos.py imports
_delocate_backend = _delocate.backend


def _materialize_provided(plan: Plan, tree: Path) -> Path:
    """The provided libraries as files, where delocate can resolve (and then skip) them; also
    those a set's carrier (sharewheel.sets) carries itself, which its binaries are relinked to
    before their fallback LC_RPATH exists."""
    providers = tree.parent / "provided"
    providers.mkdir(exist_ok=True)
    for unique, copy in plan.provided.items():
        if not (providers / unique).exists():
            copy(providers / unique)
    for unique, path in _carried(plan, tree).items():
        if not (providers / unique).exists():
            shutil.copyfile(path, providers / unique)
    return providers


def _carried(plan: Plan, tree: Path) -> dict[str, Path]:
    """The libraries the wheel itself provides that its binaries are relinked to (unique name →
    file in the tree): a set's carrier links its own binaries to what it carries."""
    found = {}
    for binary, mapping in plan.relink.items():
        for unique in mapping.values():
            if unique not in plan.provided:
                for directory in plan.fallback_dirs.get(binary, ()):
                    if (tree / directory / unique).is_file():
                        found[unique] = tree / directory / unique
    return found


def _install_name_for(unique: str) -> str:
    return f"@rpath/{unique}"


def _excluded(path: str, patterns: Sequence[str]) -> bool:
    """delocate's -e (the string anywhere in the library's path or, when not found, its install
    name) or sharewheel's --exclude (an fnmatch pattern of the needed name or its file name)."""
    name = posixpath.basename(path)
    return any(p in path or fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def _target_version(text: str | None) -> Version | None:
    """--require-target-macos-version (else MACOSX_DEPLOYMENT_TARGET) as delocate-wheel reads it."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text) if text else None
    except InvalidVersion:
        raise ToolError(f"macOS version {text!r} (--require-target-macos-version or MACOSX_DEPLOYMENT_TARGET) "
                        "is not a version") from None


class MacOSAdapter:
    os = "macos"

    def binaries(self, tree: Path) -> dict[str, BinaryInfo]:
        def read(path: Path) -> BinaryInfo | None:
            if not macho.is_macho(path):
                return None
            return BinaryInfo(macho.get_install_names(path), bool(_EXTENSION.match(path.name)))

        return scan_binaries(tree, read, (".so", ".dylib"), "Mach-O")

    def repair(self, plan: Plan, tree: Path) -> RepairOutcome:
        from sharewheel.wheelfile import WheelName

        flags = plan.options.tools.macos
        patterns = (*plan.options.exclude, *flags.exclude)
        self._check_tagged_archs(plan, tree)
        providers = _materialize_provided(plan, tree)
        carried = _carried(plan, tree)
        target = _target_version(flags.require_target_macos_version or os.environ.get("MACOSX_DEPLOYMENT_TARGET"))
        needs: dict[str, tuple[NeededState, ...]] | None = None
        try:
            with _delocate.backend([providers, *plan.options.library_path]) as missing:
                needs = self._needs(plan, tree)
                missing.found.clear()  # what delocate_path does not find is what counts (provided names are relinked)
                # what each binary loads by an excluded name, wherever it was found (a symlink's target has another name)
                excluded_paths = {n.path for ns in needs.values() for n in ns if n.path and _excluded(n.name, patterns)}
                # --executable-path: delocate 0.13 resolves @executable_path with it while walking the tree but
                # not while mapping what to copy (tree_libs_from_directory does not pass it on), so a library
                # reached so is never copied, and delocate would copy what it loads and relink it where it is,
                # outside the wheel: sharewheel neither copies nor walks it
                if flags.executable_path is not None:
                    excluded_paths |= {n.path for ns in needs.values() for n in ns
                                       if n.path and n.name.startswith("@executable_path/")}

                def copy_filter(path: str) -> bool:
                    # a provided library is never copied, wherever delocate found it (a build rpath may
                    # point at the provider installed in the build environment)
                    provided = Path(path).name in plan.provided or Path(path).name in carried
                    excluded = path in excluded_paths or _excluded(path, patterns)
                    return _delocate.is_system_library(path) and not provided and not excluded

                unfound = [n for ns in needs.values() for n in ns if n.state == "missing" and not _excluded(n.name, patterns)]
                if plan.options.tolerate_missing and unfound and not flags.ignore_missing_dependencies:
                    tagged = _delocate.retag(plan.source, tree, None)  # show: report, vendor nothing
                    return RepairOutcome(tuple(WheelName.parse(tagged.name).platforms), needs=needs)
                for binary, mapping in sorted(plan.relink.items()):
                    macho.edit(tree / binary, change={old: _install_name_for(new) for old, new in mapping.items()})
                lib_sdir = _delocate.bundle_directory(tree, plan.distribution, plan.options.lib_sdir or ".dylibs")
                lib_path = Path(lib_sdir)
                existed = lib_path.exists()
                # an excluded library need not be found (delocate's -e still needs it: delocate#207), so with
                # exclusions delocate goes on past what it cannot find and sharewheel refuses the rest instead.
                # Not with --executable-path: delocate 0.13 walks the tree with it but maps what it copies
                # without it, and going on past that would have it relink a library outside the wheel.
                forgive = bool(patterns) and not flags.ignore_missing_dependencies and flags.executable_path is None
                copied = _delocate.copy_libraries(
                    tree, lib_sdir, copy_filter, dylibs_only=flags.dylibs_only, executable_path=flags.executable_path,
                    ignore_missing=flags.ignore_missing_dependencies or forgive, sanitize_rpaths=flags.sanitize_rpaths,
                )
                refusal = missing.refusal(lambda name: _excluded(name, patterns)) if forgive else None
                if refusal:
                    raise ToolError(refusal)
                if copied and existed:
                    raise ToolError(f"{plan.source.name}: {lib_path.relative_to(tree)} already exists but libraries "
                                    "must be copied into it")
                if lib_path.is_dir() and not any(lib_path.iterdir()):
                    lib_path.rmdir()
                require_archs = plan.options.require_archs if plan.options.require_archs is not None \
                    else flags.require_archs
                if require_archs is None and flags.check_archs:
                    require_archs = ()  # -k: as delocate-wheel passes it, each library has its dependents' archs
                if require_archs is not None:
                    bads = _delocate.check_archs(copied, require_archs)
                    if bads:
                        raise ToolError(f"{plan.source.name}: {_delocate.arch_report(bads, tree)}")
                self._check_provided_archs(plan, tree, providers)
                vendored = sorted(str(lib_path / Path(lib).name) for lib in copied)
                _delocate.make_install_ids_unique(vendored, os.path.relpath(lib_sdir, tree))
                if flags.sanitize_rpaths:  # delocate's, from what sharewheel relinked as from what delocate did
                    for binary in sorted(plan.relink):
                        _delocate.remove_absolute_rpaths(tree / binary)
                for binary in sorted(plan.relink):
                    fallbacks = [
                        "@loader_path/" + posixpath.relpath(d, posixpath.dirname(binary) or ".")
                        for d in plan.fallback_dirs.get(binary, ())
                    ]
                    try:
                        macho.edit(tree / binary, add_rpaths=sorted(fallbacks))
                    except macho.HeaderFull:  # only a fallback: the provider's preload is what resolves it
                        logging.getLogger(__name__).warning(
                            "%s: no room in its Mach-O header for the fallback LC_RPATH %s", binary, ", ".join(fallbacks)
                        )
                new_name = _delocate.retag(plan.source, tree, target)
        except ToolError as e:
            # delocate names the binaries by their paths in sharewheel's temporary tree: name them as in the wheel
            message = str(e)
            for root in {str(tree), os.path.realpath(tree)}:
                message = message.replace(root + os.sep, "")
            if plan.options.tolerate_missing and needs is not None:  # show: what repair would say
                return RepairOutcome(plan.platforms, needs=needs, refusal=message)
            if message == str(e):
                raise
            raise ToolError(message) from None
        platforms = tuple(WheelName.parse(new_name.name).platforms)
        sources = {(lib_path / Path(lib).name).relative_to(tree).as_posix(): str(lib) for lib in copied}
        return RepairOutcome(platforms, tuple(Path(v).relative_to(tree).as_posix() for v in vendored), needs=needs,
                             sources=sources)

    def _needs(self, plan: Plan, tree: Path) -> dict[str, tuple[NeededState, ...]]:
        """Each binary's dependencies as delocate resolves them, before anything is relinked; with
        -d/--dylibs-only, of the binaries delocate reads only (it leaves the others as they are)."""
        flags = plan.options.tools.macos
        report: dict[str, tuple[NeededState, ...]] = {}
        for binary in self.binaries(tree):
            if binary not in plan.relink and not _delocate.is_analysed(str(tree / binary), flags.dylibs_only):
                continue
            states = []
            for path, name in _delocate.dependencies(tree / binary, flags.executable_path):
                if name in plan.relink.get(binary, {}):
                    states.append(NeededState(name, "provided"))
                elif name.startswith(_SYSTEM) or (path or "").startswith(_SYSTEM):
                    states.append(NeededState(name, "policy"))
                elif path is None:
                    states.append(NeededState(name, "missing"))
                elif Path(path).resolve().is_relative_to(tree.resolve()):
                    states.append(NeededState(name, "vendored"))
                else:
                    states.append(NeededState(name, "external", path))
            report[binary] = tuple(states)
        return report

    def _check_tagged_archs(self, plan: Plan, tree: Path) -> None:
        """Every binary has the slices its wheel's tag promises."""
        from sharewheel.platforms import keys_of

        promised = {key.arch for key in keys_of(list(plan.platforms)) if key.os == "macos"}
        for binary in self.binaries(tree):
            missing = promised - macho.get_archs(tree / binary)
            if missing:
                built = ", ".join(sorted(macho.get_archs(tree / binary))) or "nothing"
                raise BinaryError(f"{binary}: built for {built}, but the wheel is tagged {', '.join(plan.platforms)}")

    def _check_provided_archs(self, plan: Plan, tree: Path, providers: Path) -> None:
        """A consumer slice needs the same slice in the provider's library."""
        for binary, mapping in sorted(plan.relink.items()):
            needed = macho.get_archs(tree / binary)
            for unique in sorted(set(mapping.values())):
                missing = needed - macho.get_archs(providers / unique)
                if missing:
                    raise ProviderError(
                        f"{plan.source.name}: {binary} is built for {', '.join(sorted(missing))}, "
                        f"which the provider's {unique} lacks"
                    )

    def prefix_libraries(self, prefix: Path) -> list[PrefixLibrary]:
        by_file: dict[Path, PrefixLibrary] = {}
        lib_dir = prefix / "lib"
        for path in sorted(lib_dir.glob("*.dylib")) if lib_dir.is_dir() else ():
            real = path.resolve()
            if real in by_file or not real.is_file() or not macho.is_macho(real):
                continue
            install_id = macho.get_install_id(real)
            if install_id is None:
                continue
            by_file[real] = PrefixLibrary(real, posixpath.basename(install_id), macho.get_install_names(real))
        return sorted(by_file.values(), key=lambda lib: lib.name)

    def describe(self, path: Path) -> PrefixLibrary | None:
        if not macho.is_macho(path):
            return None
        install_id = macho.get_install_id(path)
        return PrefixLibrary(path, posixpath.basename(install_id or path.name), macho.get_install_names(path))

    def symbols(self, path: Path) -> SymbolTable:
        return macho.symbols(path)

    def resolve(self, tree: Path, binary: str, search: tuple[Path, ...] = ()) -> dict[str, Path]:
        return {}  # two-level namespace binds every import to its library: nothing to resolve

    def install_library(self, library: PrefixLibrary, dest: Path, relink: dict[str, str]) -> None:
        shutil.copyfile(library.path, dest)
        dest.chmod(0o755)
        change = {name: _install_name_for(relink[posixpath.basename(name)])
                  for name in library.needed if posixpath.basename(name) in relink}
        absolute = [r for r in macho.get_rpaths(dest) if not r.startswith(("@loader_path", "@executable_path"))]
        macho.edit(dest, install_id=_install_name_for(dest.name), change=change, delete_rpaths=absolute,
                   add_rpaths=["@loader_path"] if change else ())

    def link_aids(self, lib_dir: Path, unique: str, original: str) -> list[Path]:
        """A text stub `lib<name>.tbd` (TAPI v4, what Apple's SDKs ship and ld64, lld and zig
        read): `-l<name>` links the unique dylib, whose install name the stub carries."""
        stub = lib_dir / f"lib{link_name(original)}.tbd"
        dylib = lib_dir / unique
        archs = sorted(macho.get_archs(dylib))
        current, compatibility = macho.get_dylib_versions(dylib)
        targets = ", ".join(f"{arch}-macos" for arch in archs)
        exported = ", ".join(f"'{name}'" for name in sorted(macho.symbols(dylib).exports))
        stub.write_text(
            "--- !tapi-tbd\n"
            "tbd-version:     4\n"
            f"targets:         [ {targets} ]\n"
            f"install-name:    '{_install_name_for(unique)}'\n"
            f"current-version: {current}\n"
            f"compatibility-version: {compatibility}\n"
            "exports:\n"
            f"  - targets:         [ {targets} ]\n"
            f"    symbols:         [ {exported} ]\n"
            "...\n"
        )
        return [stub]

    def platform_tag(self, path: Path) -> str:
        archs = macho.get_archs(path)
        versions = [version for _, version in macho._get_macos_min_version(path)]
        if not archs or not versions:
            raise BinaryError(f"{path}: no architecture or minimum macOS version in this Mach-O file")
        version = max(versions)
        arch = "universal2" if archs == {"arm64", "x86_64"} else "_".join(sorted(archs))
        minor = 0 if version.major >= 11 else version.minor
        return f"macosx_{version.major}_{minor}_{arch}"

