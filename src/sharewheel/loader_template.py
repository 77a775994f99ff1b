"""Runtime code sharewheel writes into wheels: the provider loader and the consumer hook.

Everything here is rendered to stdlib-only Python that runs without sharewheel installed.
Both the provider (for the providers it requires) and the consumer hook use one function,
``_require``: import the provider package; if the copy found first on sys.path does not
ship the exact library file this wheel was linked to (another ABI series shadows it), look
for a copy that does in the other sys.path entries and load that one under a private module
name. That is what lets two series of one library serve two consumers in one process.

On musl libc the preload does not satisfy the binaries' DT_NEEDED (see ``_layout_error``): hooks of
musllinux wheels also check that the binaries' RPATH fallback reaches the provider's files.
"""

from __future__ import annotations

import posixpath
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

HOOK_MODULE = "_sharewheel_providers"
BLOCK_START = "# --- sharewheel: load native-lib providers before extension modules (generated) ---"
BLOCK_END = "# --- end sharewheel ---"
SHIM_MARK = "# sharewheel extension shim"


@dataclass(frozen=True)
class Requirement:
    """One provider a wheel needs at run time."""

    package: str  # import package of the provider
    distribution: str
    requirement: str  # the Requires-Dist, shown in the pip command of the error
    files: tuple[str, ...]  # unique library files the wheel was linked to; preload: their paths
    how: str = "provider"  # provider: its load(); import: importing `package` loads them; preload
    lib_dirs: tuple[str, ...] = ()  # where the linked files lie in the provider's wheel (RPATH fallbacks)


_REQUIRE = '''
import _thread
import importlib
import os
import sys

_load_lock = _thread.RLock()  # _thread, not threading: this code runs on every import
# One lock for every copy of this code in the process (each hook and provider carries one):
# it guards loading a provider under a private name, which the import system does not.
_fallback_lock = sys.__dict__.setdefault("_sharewheel_fallback_lock", _thread.RLock())


def _truncated(path):
    """Why an ELF file cut inside its segments cannot be loaded, or None. glibc's dlopen maps
    segments past the end of such a file and the process dies of SIGBUS before any error can
    be raised; dyld and Windows' loader report a short file themselves."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1, 2):
                return None  # not ELF, or too short for dlopen to try: it says what is wrong
            size = os.fstat(f.fileno()).st_size
            order = "little" if head[5] == 1 else "big"
            wide = head[4] == 2
            at = (32, 54, 56) if wide else (28, 42, 44)
            phoff = int.from_bytes(head[at[0]:at[0] + (8 if wide else 4)], order)
            entsize = int.from_bytes(head[at[1]:at[1] + 2], order)
            count = int.from_bytes(head[at[2]:at[2] + 2], order)
            f.seek(phoff)
            table = f.read(entsize * count)
    except OSError:
        return None
    needed = phoff + entsize * count
    for index in range(count if len(table) == entsize * count else 0):
        entry = table[index * entsize:(index + 1) * entsize]
        if int.from_bytes(entry[0:4], order) == 1:  # PT_LOAD
            offset, filesz = (entry[8:16], entry[32:40]) if wide else (entry[4:8], entry[16:20])
            needed = max(needed, int.from_bytes(offset, order) + int.from_bytes(filesz, order))
    if needed > size:
        return f"the file is {size} bytes but its segments end at byte {needed} (truncated?)"
    return None


def _load_file(path, distribution):
    """dlopen(RTLD_NOW | RTLD_LOCAL) on POSIX via _ctypes (what ctypes.CDLL calls, without the
    cost of importing ctypes on every start), LoadLibraryEx through ctypes on Windows; a file
    that cannot be loaded is an ImportError naming it, with the loader's own words."""
    reason = _truncated(path)
    if reason:
        raise ImportError(f"{distribution}: cannot load {path}: {reason}", path=path)
    try:
        if sys.platform == "win32":
            import ctypes

            return ctypes.CDLL(path)
        from _ctypes import dlopen

        return dlopen(path, os.RTLD_NOW | os.RTLD_LOCAL)
    except OSError as e:
        raise ImportError(f"{distribution}: cannot load {path}: {e}", path=path) from e


def _ships(package_dir, files):
    lib_dir = os.path.join(package_dir, "lib")
    return all(os.path.isfile(os.path.join(lib_dir, f)) for f in files)


def _layout_error(libc, origin, fallbacks, loaded, ld_library_path, distribution, requirement, needed_by):
    """The ImportError for a layout the `libc` loader cannot serve, or None.

    glibc (like dyld and Windows) gives a needed library name the library already loaded under it,
    so the preload serves consumers in any sys.path entry. musl does not: it reuses a loaded library
    only when its own search (LD_LIBRARY_PATH, then the needing binary's RPATH: `fallbacks`,
    relative to `origin`, the directory of this module) reaches that very file. `loaded`: the
    provider's files as loaded (full paths, or bare names when unknown).
    """
    if libc != "musl":
        return None
    dirs = [os.path.join(origin, d) for d in fallbacks] + [d for d in ld_library_path.split(os.pathsep) if d]
    for path in loaded:
        name = os.path.basename(path)
        if any(os.path.isfile(os.path.join(d, name)) for d in dirs):
            continue
        where = os.path.normpath(os.path.join(origin, fallbacks[0])) if fallbacks else origin
        lib_dir = os.path.dirname(path)
        return ImportError(
            f"{needed_by} needs {distribution} in the same site-packages on musl libc (musllinux): "
            f"musl's loader does not reuse {path} loaded by full path"
            f"{'' if lib_dir else ' from another sys.path entry'}; it looks for {name} only in "
            f"{where} (the RPATH of {needed_by}'s binaries) and LD_LIBRARY_PATH. Install {needed_by} "
            f"and {distribution} into one environment (pip install '{requirement}' there)"
            f"{', or start Python with LD_LIBRARY_PATH=' + lib_dir if lib_dir else ''}."
        )
    return None


def _check_layout(libc, fallbacks, loaded, distribution, requirement, needed_by):
    error = _layout_error(libc, os.path.dirname(__file__), fallbacks, loaded,
                          os.environ.get("LD_LIBRARY_PATH", ""), distribution, requirement, needed_by)
    if error is not None:
        raise error


def _require(package, distribution, requirement, files, needed_by, libc="", fallbacks=()):
    """Load provider `package` from the sys.path entry that ships `files`, and return it;
    `libc`, `fallbacks`: see _layout_error."""
    found = None
    try:
        module = importlib.import_module(package)  # thread-safe by itself
    except ModuleNotFoundError as e:
        if e.name != package:
            raise
    else:
        if getattr(module, "__file__", None):
            found = os.path.dirname(os.path.realpath(module.__file__))
        if found is not None and _ships(found, files):
            if libc:
                _check_layout(libc, fallbacks, [os.path.join(found, "lib", f) for f in files], distribution,
                              requirement, needed_by)
            module.load()
            return module
    for entry in sys.path:
        if not entry or not os.path.isabs(entry):
            continue  # never load native code from the current directory
        package_dir = os.path.realpath(os.path.join(entry, package))
        init = os.path.join(package_dir, "__init__.py")
        if package_dir == found or not os.path.isfile(init) or not _ships(package_dir, files):
            continue
        name = "_sharewheel_series." + package + "." + files[0].replace(".", "_").replace("-", "_")
        with _fallback_lock:
            module = sys.modules.get(name)
            if module is None:
                from importlib.util import module_from_spec, spec_from_file_location

                spec = spec_from_file_location(name, init, submodule_search_locations=[package_dir])
                module = module_from_spec(spec)
                spec.loader.exec_module(module)
                sys.modules[name] = module  # published only once it has run
        if libc:
            _check_layout(libc, fallbacks, [os.path.join(package_dir, "lib", f) for f in files], distribution,
                          requirement, needed_by)
        module.load()
        return module
    other = "" if found is None else (
        f"; the {distribution} found in {os.path.dirname(found)} ships another ABI series"
    )
    raise _missing(distribution, requirement, needed_by, package, other)


def _missing(distribution, requirement, needed_by, name, detail=""):
    return ImportError(
        f"{needed_by} needs the native library provider {distribution} ({requirement}), "
        f"which is not installed{detail}. Fix it with: pip install '{requirement}'",
        name=name,
    )


def _import_provider(module, distribution, requirement, needed_by, libc="", fallbacks=(), files=()):
    """A third-party provider whose own module loads its libraries when imported."""
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
            raise
    else:
        if libc:
            _check_layout(libc, fallbacks, files, distribution, requirement, needed_by)
        return imported
    raise _missing(distribution, requirement, needed_by, module)


_preloaded = sys.__dict__.setdefault("_sharewheel_preloaded", {})


def _preload(distribution, requirement, paths, needed_by, libc="", fallbacks=()):
    """Load a third-party provider's files by full path, dependencies first, from the first
    absolute sys.path entry that has them all (a loaded library satisfies later lookups of its name)."""
    key = (distribution,) + tuple(paths)
    with _fallback_lock:
        if key in _preloaded:
            return
        for entry in sys.path:
            if not entry or not os.path.isabs(entry):
                continue  # never load native code from the current directory
            files = [os.path.join(entry, *path.split("/")) for path in paths]
            if not all(os.path.isfile(f) for f in files):
                continue
            if libc:
                _check_layout(libc, fallbacks, files, distribution, requirement, needed_by)
            handles = []
            for path in files:
                if sys.platform == "win32":
                    handles.append(os.add_dll_directory(os.path.dirname(path)))
                handles.append(_load_file(path, distribution))
            _preloaded[key] = handles
            return
    raise _missing(distribution, requirement, needed_by, None)
'''


def _require_calls(
    requirements: Sequence[Requirement], needed_by: str, indent: str, *, libc: str = "", package: str = ""
) -> str:
    """The calls that load `requirements`; with libc "musl" each also names the binaries' RPATH
    fallbacks relative to `package` (the wheel directory of the module holding the calls)."""
    lines = []
    for r in requirements:
        musl = ""
        if libc == "musl":
            fallbacks = tuple(posixpath.relpath(d, package or ".") for d in r.lib_dirs)
            musl = f", libc='musl', fallbacks={fallbacks!r}"
        if r.how == "import":
            files = f", files={r.files!r}" if musl else ""
            call = f"_import_provider({r.package!r}, {r.distribution!r}, {r.requirement!r}, {needed_by!r}{musl}{files})"
        elif r.how == "preload":
            call = f"_preload({r.distribution!r}, {r.requirement!r}, {r.files!r}, {needed_by!r}{musl})"
        else:
            call = f"_require({r.package!r}, {r.distribution!r}, {r.requirement!r}, {r.files!r}, {needed_by!r}{musl})"
        lines.append(indent + call)
    return "\n".join(lines) or f"{indent}pass"


def provider_init(
    *,
    distribution: str,
    version: str,
    libraries: Sequence[str],
    requires: Sequence[Requirement],
    libc: str = "",
    package: str = "",
) -> str:
    """The provider package's ``__init__.py``: load() and the get_*_dir() helpers; `libc` "musl"
    (its libraries link musl's) checks the layout of the providers it requires (see _require_calls)."""
    return f'''"""{distribution} {version}: native libraries packed by sharewheel.

Importing this package loads {", ".join(libraries)} (RTLD_LOCAL, dependencies first), so that
extension modules linked to those names find them wherever on sys.path they are installed.
Generated code, standard library only.
"""
{_REQUIRE}

__version__ = {version!r}
__all__ = ["load", "get_lib_dir", "get_include_dir", "get_pkgconfig_dir", "get_cmake_dir"]

_HERE = os.path.dirname(os.path.realpath(__file__))
_LIBRARIES = {tuple(libraries)!r}  # in load order
_handles = []
_loaded = False


def get_lib_dir():
    return os.path.join(_HERE, "lib")


def get_include_dir():
    return os.path.join(_HERE, "include")


def get_pkgconfig_dir():
    return os.path.join(_HERE, "lib", "pkgconfig")


def get_cmake_dir():
    """A CMAKE_PREFIX_PATH entry: it holds one CMake package per library (lib/cmake/<name>/)."""
    return os.path.join(_HERE, "lib", "cmake")


def load():
    """Load the providers this one needs, then its own libraries; later calls return at once."""
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
{_require_calls(requires, distribution, " " * 8, libc=libc, package=package)}
        lib_dir = get_lib_dir()
        if sys.platform == "win32":
            _handles.append(os.add_dll_directory(lib_dir))
        for name in _LIBRARIES:
            _handles.append(_load_file(os.path.join(lib_dir, name), {distribution!r}))
        _loaded = True


load()
'''


def provider_main(distribution: str, package: str) -> str:
    """The provider package's ``__main__.py``: ``python -m <package> --cmake-dir`` and friends
    print the build directories, for CI scripts and build files that cannot import Python."""
    return f'''"""python -m {package} --cmake-dir | --pkgconfig-dir | --include-dir | --lib-dir (generated by sharewheel)."""

import argparse

from . import __version__, get_cmake_dir, get_include_dir, get_lib_dir, get_pkgconfig_dir


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m {package}",
        description="Print the directories of the native-lib wheel {distribution}, one a line, in the order asked.",
    )
    for flag, function, what in (
        ("--cmake-dir", get_cmake_dir, "a CMAKE_PREFIX_PATH entry for find_package(NAME CONFIG)"),
        ("--pkgconfig-dir", get_pkgconfig_dir, "a PKG_CONFIG_PATH entry for pkg-config and meson"),
        ("--include-dir", get_include_dir, "the headers"),
        ("--lib-dir", get_lib_dir, "the libraries"),
    ):
        parser.add_argument(flag, dest="dirs", action="append_const", const=function, help=what)
    parser.add_argument("--version", action="version", version="{distribution} " + __version__)
    args = parser.parse_args(argv)
    if not args.dirs:
        parser.error("give at least one of --cmake-dir, --pkgconfig-dir, --include-dir, --lib-dir")
    for function in args.dirs:
        print(function())


if __name__ == "__main__":
    main()
'''


def consumer_hook(requirements: Sequence[Requirement], needed_by: str, *, libc: str = "", package: str = "") -> str:
    """The hook module a consumer package imports before any of its extension modules.

    `libc`: "musl" for a musllinux wheel (its binaries load only under musl's loader, so the tag is
    exact where a run-time guess from the stdlib is not), which adds the layout check; `package`:
    the hook's directory in the wheel ("" at the top level), which its RPATH fallbacks are relative to.
    """
    return f'''"""Generated by sharewheel: loads the native-lib providers {needed_by} was linked to."""
{_REQUIRE}

{_require_calls(requirements, needed_by, "", libc=libc, package=package)}
'''


def init_block(hook_import: str) -> str:
    return f"{BLOCK_START}\n{hook_import}\n{BLOCK_END}\n"


def insert_block(source: str, block: str) -> str:
    """`source` with `block` at its top, after a docstring and `from __future__` imports.

    A block from an earlier repair is replaced, so repairing twice changes nothing.
    """
    source = remove_block(source)
    lines = re.split(r"(?<=\n)", source)  # as ast counts lines: only at \n, not at \f or \x85
    position = _after_docstring_and_future(source)
    if position and not lines[position - 1].endswith("\n"):
        lines[position - 1] += "\n"
    return "".join(lines[:position]) + block + "".join(lines[position:])


def remove_block(source: str) -> str:
    start = source.find(BLOCK_START)
    if start < 0:
        return source
    end = source.find(BLOCK_END, start)
    if end < 0:
        return source
    end = source.find("\n", end)
    return source[:start] + (source[end + 1 :] if end >= 0 else "")


def _after_docstring_and_future(source: str) -> int:
    """Line index after the module docstring and `from __future__` imports (0 if none)."""
    import ast

    try:
        module = ast.parse(source)
    except SyntaxError:
        return 0
    position = 0
    for index, node in enumerate(module.body):
        is_docstring = (
            index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        )
        is_future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        if not (is_docstring or is_future):
            break
        position = node.end_lineno or position
    return position


def extension_shim(module: str, moved_file: str, hook_module: str) -> str:
    """A `<module>.py` that loads the providers, then the extension renamed to `moved_file`.

    For an extension module outside any regular package there is no ``__init__.py`` to hook:
    the extension is renamed to a file name no import can find (it has a dot in its module
    part) in the same directory, so its $ORIGIN-relative RPATH still holds, and this shim takes
    its import name.
    """
    return textwrap.dedent(
        f'''\
        {SHIM_MARK}: {module} is the extension module {moved_file}, loaded after its native-lib
        # providers (generated; see sharewheel's README, "extension modules outside a package").
        import importlib.machinery
        import importlib.util
        import os
        import sys

        import {hook_module}  # noqa: F401

        _path = os.path.join(os.path.dirname(os.path.realpath(__file__)), {moved_file!r})
        _loader = importlib.machinery.ExtensionFileLoader(__name__, _path)
        _spec = importlib.util.spec_from_file_location(__name__, _path, loader=_loader)
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[__name__] = _module
        _loader.exec_module(_module)
        '''
    )
