"""macOS (Mach-O) adapter: delocate decides and vendors, sharewheel's Mach-O backend edits and signs.

Calls delocate internals (hence the pinned range in pyproject.toml), all of them here:
``delocate_path`` and the steps ``delocate_wheel`` runs around it (``_decide_dylib_bundle_directory``,
``check_archs``, ``_make_install_name_ids_unique``, ``_check_and_update_wheel_name``), on
sharewheel's unpacked tree. While they run, delocate's Apple-tool wrappers (and its macholib
reading of minimum macOS versions) are replaced by sharewheel.adapters.macho (see there why),
the same functions on every host.

Provided libraries: each load command naming one (by its unique install name, its original name
or an absolute build path: matched by file name) is first rewritten to ``@rpath/<unique name>``.
A copy of the provider's file is put on delocate's search path so that delocate resolves it —
and then does not copy it, because its copy filter rejects that directory (delocate#207: an
excluded library must still be found). Afterwards each relinked binary gets an LC_RPATH
``@loader_path/…`` to the provider's directory in the one-site-packages case; absolute rpaths are
removed from every binary. dyld matches ``@rpath/NAME`` against the install names of images
already loaded before it searches any rpath, so the provider's preload serves split installs.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sharewheel.adapters import (
    BinaryInfo,
    NeededState,
    PrefixLibrary,
    RepairJob,
    RepairOutcome,
    macho,
    scan_binaries,
)
from sharewheel.errors import SharewheelError
from sharewheel.naming import link_name
from sharewheel.symbols import SymbolTable

_BACKEND_FUNCTIONS = (
    "_get_install_names", "_get_install_ids", "_get_rpaths", "get_install_names", "get_install_id",
    "get_rpaths", "get_archs", "set_install_name", "set_install_id", "add_rpath", "_delete_rpaths",
    "replace_signature", "validate_signature", "_get_macos_min_version",
)
_EXTENSION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[^/]*)?\.so$")
_SYSTEM = ("/usr/lib/", "/System/")


@contextmanager
def _delocate_backend(search_first: list[Path]) -> Iterator[None]:
    """delocate with sharewheel's Mach-O backend, searching `search_first` before DYLD_* paths."""
    import delocate.delocating
    import delocate.libsana
    import delocate.tools

    environment_paths = delocate.tools.get_environment_variable_paths
    replacements: dict[str, Callable[..., Any]] = {name: getattr(macho, name) for name in _BACKEND_FUNCTIONS}
    replacements["get_environment_variable_paths"] = lambda: (*map(str, search_first), *environment_paths())
    saved = []
    for module in (delocate.tools, delocate.libsana, delocate.delocating):
        for name, function in replacements.items():
            if hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, function)
    missing = _MissingCollector()
    logger = logging.getLogger("delocate")
    logger.addHandler(missing)
    propagate, logger.propagate = logger.propagate, False  # its errors become our one error line
    try:
        yield
    except delocate.libsana.DelocationError as e:
        detail = f": {missing.first}" if missing.first else ""
        raise SharewheelError(f"delocate: {str(e).splitlines()[0]}{detail}") from None
    finally:
        logger.propagate = propagate
        logger.removeHandler(missing)
        for module, name, original in reversed(saved):
            setattr(module, name, original)


class _MissingCollector(logging.Handler):
    """Keeps delocate's 'X not found: Needed by: Y' so the error line can name them."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.first is None and "not found" in record.getMessage():
            self.first = " ".join(record.getMessage().split()[:6])


def _materialize_provided(job: RepairJob) -> Path:
    """The provided libraries as files, where delocate can resolve (and then skip) them."""
    providers = job.tree.parent / "provided"
    providers.mkdir(exist_ok=True)
    for unique, copy in job.provided.items():
        copy(providers / unique)
    return providers


def _install_name_for(unique: str) -> str:
    return f"@rpath/{unique}"


class MacOSAdapter:
    os = "macos"

    def binaries(self, tree: Path) -> dict[str, BinaryInfo]:
        def read(path: Path) -> BinaryInfo | None:
            if not macho.is_macho(path):
                return None
            return BinaryInfo(macho.get_install_names(path), bool(_EXTENSION.match(path.name)))

        return scan_binaries(tree, read, (".so", ".dylib"), "Mach-O")

    def repair(self, job: RepairJob) -> RepairOutcome:
        from delocate.delocating import (
            DLC_PREFIX,
            _check_and_update_wheel_name,
            _decide_dylib_bundle_directory,
            _make_install_name_ids_unique,
            check_archs,
            delocate_path,
            filter_system_libs,
        )
        from delocate.tools import _remove_absolute_rpaths

        self._check_tagged_archs(job)
        providers = _materialize_provided(job)

        def copy_filter(path: str) -> bool:
            # a provided library is never copied, wherever delocate found it (a build rpath may
            # point at the provider installed in the build environment)
            provided = Path(path).name in job.provided
            excluded = any(pattern in path for pattern in job.exclude)  # delocate's --exclude: substrings
            return filter_system_libs(path) and not provided and not excluded

        with _delocate_backend([providers, *job.library_path]):
            for binary, mapping in sorted(job.relink.items()):
                macho.edit(job.tree / binary, change={old: _install_name_for(new) for old, new in mapping.items()})
            lib_sdir = _decide_dylib_bundle_directory(str(job.tree), job.distribution, job.lib_sdir or ".dylibs")
            lib_path = Path(lib_sdir)
            existed = lib_path.exists()
            copied = delocate_path(str(job.tree), lib_sdir, None, copy_filter, sanitize_rpaths=True)
            if copied and existed:
                raise SharewheelError(f"{job.wheel.name}: {lib_path.relative_to(job.tree)} already exists but libraries must be copied into it")
            if lib_path.is_dir() and not any(lib_path.iterdir()):
                lib_path.rmdir()
            if job.require_archs is not None:
                bads = check_archs(copied, job.require_archs)
                if bads:
                    raise SharewheelError(f"{job.wheel.name}: {_arch_report(bads, job.tree)}")
            self._check_provided_archs(job, providers)
            vendored = sorted(str(lib_path / Path(lib).name) for lib in copied)
            _make_install_name_ids_unique(vendored, DLC_PREFIX + os.path.relpath(lib_sdir, job.tree))
            for binary in self.binaries(job.tree):
                _remove_absolute_rpaths(str(job.tree / binary))
            for binary in sorted(job.relink):
                fallbacks = [
                    "@loader_path/" + posixpath.relpath(d, posixpath.dirname(binary) or ".")
                    for d in job.fallback_dirs.get(binary, ())
                ]
                try:
                    macho.edit(job.tree / binary, add_rpaths=sorted(fallbacks))
                except macho.HeaderFull:  # only a fallback: the provider's preload is what resolves it
                    logging.getLogger(__name__).warning(
                        "%s: no room in its Mach-O header for the fallback LC_RPATH %s", binary, ", ".join(fallbacks)
                    )
            target = os.environ.get("MACOSX_DEPLOYMENT_TARGET")
            from packaging.version import Version

            new_name = _check_and_update_wheel_name(job.wheel, job.tree, Version(target) if target else None)
        from sharewheel.wheelfile import WheelName

        platforms = tuple(WheelName.parse(new_name.name).platforms)
        return RepairOutcome(platforms, tuple(Path(v).relative_to(job.tree).as_posix() for v in vendored))

    def _check_tagged_archs(self, job: RepairJob) -> None:
        """Every binary has the slices its wheel's tag promises."""
        from sharewheel.platforms import keys_of

        promised = {key.arch for key in keys_of(list(job.platforms)) if key.os == "macos"}
        for binary in self.binaries(job.tree):
            missing = promised - macho.get_archs(job.tree / binary)
            if missing:
                built = ", ".join(sorted(macho.get_archs(job.tree / binary))) or "nothing"
                raise SharewheelError(
                    f"{binary}: built for {built}, but the wheel is tagged {', '.join(job.platforms)}"
                )

    def _check_provided_archs(self, job: RepairJob, providers: Path) -> None:
        """A consumer slice needs the same slice in the provider's library."""
        for binary, mapping in sorted(job.relink.items()):
            needed = macho.get_archs(job.tree / binary)
            for unique in sorted(set(mapping.values())):
                missing = needed - macho.get_archs(providers / unique)
                if missing:
                    raise SharewheelError(
                        f"{job.wheel.name}: {binary} is built for {', '.join(sorted(missing))}, "
                        f"which the provider's {unique} lacks"
                    )

    def show(self, job: RepairJob) -> tuple[dict[str, list[NeededState]], tuple[str, ...]]:
        from delocate.delocating import _check_and_update_wheel_name
        from delocate.libsana import get_dependencies

        from sharewheel.wheelfile import WheelName

        self._check_tagged_archs(job)
        report: dict[str, list[NeededState]] = {}
        with _delocate_backend([_materialize_provided(job), *job.library_path]):
            for binary in self.binaries(job.tree):
                states = []
                for path, name in get_dependencies(str(job.tree / binary)):
                    if name in job.relink.get(binary, {}):
                        states.append(NeededState(name, "provided"))
                    elif name.startswith(_SYSTEM) or (path or "").startswith(_SYSTEM):
                        states.append(NeededState(name, "policy"))
                    elif path is None:
                        states.append(NeededState(name, "missing"))
                    elif Path(path).resolve().is_relative_to(job.tree.resolve()):
                        states.append(NeededState(name, "vendored"))
                    else:
                        states.append(NeededState(name, "external", path))
                report[binary] = states
            tagged = _check_and_update_wheel_name(job.wheel, job.tree, None)
        return report, tuple(WheelName.parse(tagged.name).platforms)

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
            raise SharewheelError(f"{path}: no architecture or minimum macOS version in this Mach-O file")
        version = max(versions)
        arch = "universal2" if archs == {"arm64", "x86_64"} else "_".join(sorted(archs))
        minor = 0 if version.major >= 11 else version.minor
        return f"macosx_{version.major}_{minor}_{arch}"


def _arch_report(bads: set[Any], tree: Path) -> str:
    from delocate.delocating import bads_report

    return " ".join(bads_report(bads, str(tree) + os.sep).split())
