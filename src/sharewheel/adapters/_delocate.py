"""Everything sharewheel takes from delocate, in one place (issue 13).

sharewheel.adapters.macos runs the steps of delocate's ``delocate_wheel`` on sharewheel's unpacked
tree (``delocate_wheel`` itself unzips and re-zips the wheel on its own): the wrappers below,
each a delocate function called with keyword arguments. None of delocate's Python API is
documented as stable (its command line is), so public names (``delocate_path``) and private ones
(``_decide_dylib_bundle_directory``) count alike: every one sharewheel uses is imported here and
nowhere else, and listed in ``NAMES``; ``CHECKED_AGAINST`` is the range they were checked against,
the pin in pyproject.toml. tests/test_tool_internals.py imports every listed name (naming the one
a new delocate dropped), checks the keywords passed here and the swap's signatures against
delocate's, and checks that no other module of sharewheel imports delocate;
.github/workflows/newest-tools.yml runs it, with the whole suite, against the newest delocate
every week.

The swap (``backend``, the one place where sharewheel replaces anything of a pypa tool): delocate
runs Apple's otool, install_name_tool, lipo and codesign, which exist only on macOS, while
release pipelines (and our CI) are Linux. For the duration of a repair the functions named in
``SWAPPED`` are replaced, in each module of ``SWAPPED_IN`` that holds them, by
sharewheel.adapters.macho's functions of the same names, signatures and errors (see there why
that backend, on every host), and delocate's search path is prefixed; repairwheel patches
delocate the same way. Everything else delocate decides itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sharewheel.adapters import macho
from sharewheel.errors import ToolError

if TYPE_CHECKING:
    from packaging.version import Version

#: the delocate releases this module was checked against: the pin in pyproject.toml
CHECKED_AGAINST = "delocate>=0.13,<0.14"

#: the functions `backend` replaces, with the module delocate defines each in: delocate's
#: Apple-tool wrappers and the functions built on them, by sharewheel.adapters.macho's;
#: _get_macos_min_version (macholib reading what sharewheel's reader has read already), by
#: macho's too; get_environment_variable_paths, by the same search with sharewheel's paths first
SWAPPED = {
    "_get_install_names": "delocate.tools",
    "_get_install_ids": "delocate.tools",
    "_get_rpaths": "delocate.tools",
    "get_install_names": "delocate.tools",
    "get_install_id": "delocate.tools",
    "get_rpaths": "delocate.tools",
    "get_archs": "delocate.tools",
    "set_install_name": "delocate.tools",
    "set_install_id": "delocate.tools",
    "add_rpath": "delocate.tools",
    "_delete_rpaths": "delocate.tools",
    "replace_signature": "delocate.tools",
    "validate_signature": "delocate.tools",
    "get_environment_variable_paths": "delocate.tools",
    "_get_macos_min_version": "delocate.delocating",
}
#: the modules the swap replaces them in: where they are defined, and where the functions
#: sharewheel calls look them up (delocate imports them by name into libsana and delocating)
SWAPPED_IN = ("delocate.tools", "delocate.libsana", "delocate.delocating")
#: delocate functions that run an Apple tool and are not swapped, and why
NOT_SWAPPED = {"lipo_fuse": "delocate-fuse's and delocate-merge's; nothing sharewheel calls runs it"}
#: delocate modules holding Apple-tool functions that the swap leaves alone, and why
NOT_SWAPPED_IN = {"delocate.fuse": "delocate-fuse's and delocate-merge's; nothing sharewheel calls reaches it"}

#: every delocate name sharewheel uses, as module:qualified.name
NAMES = (
    "delocate.delocating",
    "delocate.delocating:DLC_PREFIX",
    "delocate.delocating:_check_and_update_wheel_name",
    "delocate.delocating:_decide_dylib_bundle_directory",
    "delocate.delocating:_dylibs_only",
    "delocate.delocating:_make_install_name_ids_unique",
    "delocate.delocating:bads_report",
    "delocate.delocating:check_archs",
    "delocate.delocating:delocate_path",
    "delocate.delocating:filter_system_libs",
    "delocate.libsana",
    "delocate.libsana:DelocationError",
    "delocate.libsana:get_dependencies",
    "delocate.tools",
    "delocate.tools:InstallNameError",
    "delocate.tools:_remove_absolute_rpaths",
    *(f"{module}:{name}" for name, module in SWAPPED.items()),
)


@contextmanager
def backend(search_first: list[Path]) -> Iterator[Missing]:
    """delocate with sharewheel's Mach-O backend, searching `search_first` before DYLD_* paths;
    delocate's refusal (DelocationError) as ToolError, naming the first library it did not find;
    yields what delocate logs as not found (`Missing`).

    The only code in sharewheel that replaces a pypa tool's functions: each name of SWAPPED, in
    each module of SWAPPED_IN that holds it, for the duration of the block, then restored."""
    import delocate.delocating
    import delocate.libsana
    import delocate.tools

    environment_paths = delocate.tools.get_environment_variable_paths

    def get_environment_variable_paths() -> tuple[str, ...]:
        return (*map(str, search_first), *environment_paths())

    replacements: dict[str, Callable[..., Any]] = {
        name: getattr(macho, name) for name in SWAPPED if name != "get_environment_variable_paths"
    }
    replacements["get_environment_variable_paths"] = get_environment_variable_paths
    saved = []
    for module in (delocate.tools, delocate.libsana, delocate.delocating):
        for name, function in replacements.items():
            if hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, function)
    missing = Missing()
    logger = logging.getLogger("delocate")
    logger.addHandler(missing)
    propagate, logger.propagate = logger.propagate, False  # its errors become our one error line
    try:
        yield missing
    except delocate.libsana.DelocationError as e:
        detail = f": {next(iter(missing.found.values()))}" if missing.found else ""
        raise ToolError(f"delocate: {str(e).splitlines()[0]}{detail}") from None
    finally:
        logger.propagate = propagate
        logger.removeHandler(missing)
        for module, name, original in reversed(saved):
            setattr(module, name, original)


class Missing(logging.Handler):
    """The libraries delocate logs as not found ('X not found: Needed by: Y'), in order: the error
    line names the first, and with --ignore-missing-dependencies they are what it skipped."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.found: dict[str, str] = {}  # install name → delocate's words for it, shortened

    def emit(self, record: logging.LogRecord) -> None:
        words = record.getMessage().split()
        if words[1:3] in (["not", "found:"], ["not", "found,"]):
            self.found.setdefault(words[0], " ".join(words[:6]))

    def refusal(self, excused: Callable[[str], bool]) -> str | None:
        """delocate's refusal of what it did not find, unless `excused` forgives every one of them."""
        unexcused = [words for name, words in self.found.items() if not excused(name)]
        return f"delocate: Could not find all dependencies.: {unexcused[0]}" if unexcused else None


# --- the steps of delocate_wheel, and what sharewheel reads with delocate --------------------


def is_system_library(path: str) -> bool:
    """delocate's default copy filter: False for /usr/lib and /System libraries (never copied)."""
    from delocate.delocating import filter_system_libs

    return filter_system_libs(libname=path)


def dependencies(path: Path, executable_path: str | None = None) -> Iterator[tuple[str | None, str]]:
    """(resolved path or None, install name) of each library `path` loads, as delocate resolves them
    (`executable_path`: what @executable_path stands for, default the running Python's directory)."""
    from delocate.libsana import get_dependencies

    return get_dependencies(lib_fname=str(path), executable_path=executable_path)


def is_analysed(path: str, dylibs_only: bool) -> bool:
    """Whether delocate_path reads `path`'s dependencies: every file, or with -d/--dylibs-only only
    those named like a library (.so, .dylib)."""
    from delocate.delocating import _dylibs_only

    return not dylibs_only or _dylibs_only(filename=path)


def bundle_directory(tree: Path, distribution: str, lib_sdir: str) -> str:
    """Where delocate_wheel puts the copied libraries: `lib_sdir` inside the package, or
    `<distribution>.dylibs` at the top of the wheel where there is no package."""
    from delocate.delocating import _decide_dylib_bundle_directory

    return _decide_dylib_bundle_directory(wheel_dir=str(tree), package_name=distribution, lib_sdir=lib_sdir)


def copy_libraries(tree: Path, lib_dir: str, copy_filter: Callable[[str], bool], *, dylibs_only: bool = False,
                   executable_path: str | None = None, ignore_missing: bool = False,
                   sanitize_rpaths: bool = True) -> dict[str, dict[str, str]]:
    """delocate_path on the tree: copies what `copy_filter` accepts into `lib_dir`, relinks, and
    removes absolute and relative rpaths (`sanitize_rpaths`) from the binaries it relinked; returns
    delocate's map of copied library → its dependents. The keywords are delocate-wheel's -d,
    --executable-path, --ignore-missing-dependencies and --no-sanitize-rpaths, passed as its
    command line passes them."""
    from delocate.delocating import delocate_path

    return delocate_path(tree_path=str(tree), lib_path=lib_dir, lib_filt_func="dylibs-only" if dylibs_only else None,
                         copy_filt_func=copy_filter, executable_path=executable_path, ignore_missing=ignore_missing,
                         sanitize_rpaths=sanitize_rpaths)


def check_archs(copied: Mapping[str, Mapping[str, str]], require_archs: str | tuple[str, ...]) -> set[Any]:
    """delocate's --require-archs check (and -k's, with no architectures: each copied library has
    those of the binaries that load it): the copied libraries or dependents that lack one."""
    from delocate.delocating import check_archs as delocate_check_archs

    return delocate_check_archs(copied_libs=copied, require_archs=require_archs)


def arch_report(bads: set[Any], tree: Path) -> str:
    """delocate's report of check_archs' findings, on one line, paths relative to the tree."""
    from delocate.delocating import bads_report

    return " ".join(bads_report(bads=bads, path_prefix=str(tree) + os.sep).split())


def make_install_ids_unique(libraries: list[str], lib_dir_in_wheel: str) -> None:
    """delocate's unique install ids for the copied libraries (its /DLC/<lib dir>/ prefix)."""
    from delocate.delocating import DLC_PREFIX, _make_install_name_ids_unique

    _make_install_name_ids_unique(libraries=libraries, install_id_prefix=DLC_PREFIX + lib_dir_in_wheel)


def remove_absolute_rpaths(path: Path) -> None:
    """delocate's removal of every LC_RPATH not relative to @loader_path or @executable_path."""
    from delocate.tools import _remove_absolute_rpaths

    _remove_absolute_rpaths(filename=str(path))


def retag(wheel: Path, tree: Path, target: Version | None) -> Path:
    """delocate's wheel name for the tree: platform tags from the binaries' architectures and
    minimum macOS versions (`target`: --require-target-macos-version or MACOSX_DEPLOYMENT_TARGET,
    which they must not exceed and which the tags then name); its refusal on one line, with the
    binaries' paths in the wheel."""
    from delocate.delocating import _check_and_update_wheel_name
    from delocate.libsana import DelocationError

    try:
        return _check_and_update_wheel_name(wheel_path=wheel, wheel_dir=tree, require_target_macos_version=target)
    except DelocationError as e:
        raise ToolError(f"delocate: {' '.join(str(e).replace(str(tree) + os.sep, '').split())}") from None


def install_name_error(message: str) -> Exception:
    """delocate's InstallNameError, which macho's functions raise where delocate's would."""
    from delocate.tools import InstallNameError

    return InstallNameError(message)
