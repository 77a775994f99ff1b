"""sharewheel's runtime: loads the native-lib providers a wheel was linked to before its extension
modules are imported. Copied verbatim into every wheel sharewheel writes; runs without sharewheel."""

# Where it goes: <package>/_sharewheel_runtime.py in a provider and in each consumer package with
# binaries, _sharewheel_runtime_<dist>.py at a consumer wheel's top level. What differs per wheel is
# data, in the module that imports this one: a consumer's _sharewheel_providers.py (require_all of
# its table of providers), a provider's __init__.py (Provider: its libraries and the providers they
# link to). Those modules look this one up in sys.modules first, under a key made of a hash of its
# content, so a process imports it once however many wheels carry it; it keeps no state but what
# every copy shares.
#
# It runs on every Python a wheel may meet (3.8 and later), at every start of an interpreter that
# imports a consumer. So: the standard library only, and nothing start-up has not loaded already:
# no importlib (it imports warnings: about 1 ms), _thread rather than threading, typing only for
# type checkers, no `from __future__` (a third of a millisecond): annotations 3.8 cannot evaluate
# are strings. Its size counts too (reading and unmarshalling the .pyc): comments cost nothing.
#
# Both sides use one function, require: import the provider package; if the copy found first on
# sys.path does not ship the exact library file this wheel was linked to (another ABI series
# shadows it), load a copy that does from another sys.path entry, under a private module name. That
# is what lets two series of one library serve two consumers in one process. Which copy is
# candidates(): a pure function of the sys.path entries and the disk, for `sharewheel check` to
# choose exactly as the hook does.
#
# On musl libc a library loaded by path does not satisfy a later DT_NEEDED (see layout_error): the
# tables of musllinux wheels say so, and each provider is checked against the RPATH fallbacks of
# the binaries that need it.

import _thread
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from types import ModuleType
    from typing import Literal

    Strategy = Literal["provider", "import", "preload"]  # sharewheel.runtime.Strategy
    Libc = Literal["", "musl"]  # sharewheel.runtime.Libc: "" is a loader that reuses a library loaded by path
    # (package, distribution, requirement, files, strategy, lib_dirs): sharewheel.runtime.Requirement.record
    Record = tuple[str, str, str, tuple[str, ...], Strategy, tuple[str, ...]]

RUNTIME_MODULE = "_sharewheel_runtime"  # this module's name in a package of a wheel
SERIES = "_sharewheel_series"  # prefix of the private names of copies the series fallback loads

# One lock for every copy of this module in the process (copies of other sharewheel releases too):
# it guards loading a provider under a private name, which the import system does not.
_fallback_lock: "_thread.RLock" = sys.__dict__.setdefault("_sharewheel_fallback_lock", _thread.RLock())
_preloaded: "dict[tuple[str, ...], list[object]]" = sys.__dict__.setdefault("_sharewheel_preloaded", {})


def truncated(path: str) -> "str | None":
    """Why an ELF file cut inside its segments cannot be loaded, or None. glibc's dlopen maps
    segments past the end of such a file and the process dies of SIGBUS before any error can
    be raised; dyld and Windows' loader report a short file themselves. (os.open and os.read:
    a few system calls, no file object.)"""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        return None
    try:
        head = os.read(fd, 4096)  # the program headers are most often in there too
        if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1, 2):
            return None  # not ELF, or too short for dlopen to try: it says what is wrong
        size = os.fstat(fd).st_size
        order: Literal["little", "big"] = "little" if head[5] == 1 else "big"
        wide = head[4] == 2
        at = (32, 54, 56) if wide else (28, 42, 44)
        phoff = int.from_bytes(head[at[0]:at[0] + (8 if wide else 4)], order)
        entsize = int.from_bytes(head[at[1]:at[1] + 2], order)
        count = int.from_bytes(head[at[2]:at[2] + 2], order)
        table = head[phoff:phoff + entsize * count]
        if len(table) < entsize * count:
            os.lseek(fd, phoff, os.SEEK_SET)
            table = os.read(fd, entsize * count)
    except OSError:
        return None
    finally:
        os.close(fd)
    needed = phoff + entsize * count
    for index in range(count if len(table) == entsize * count else 0):
        entry = table[index * entsize:(index + 1) * entsize]
        if int.from_bytes(entry[0:4], order) == 1:  # PT_LOAD
            offset, filesz = (entry[8:16], entry[32:40]) if wide else (entry[4:8], entry[16:20])
            needed = max(needed, int.from_bytes(offset, order) + int.from_bytes(filesz, order))
    if needed > size:
        return f"the file is {size} bytes but its segments end at byte {needed} (truncated?)"
    return None


def load_file(path: str, distribution: str) -> object:
    """dlopen(RTLD_NOW | RTLD_LOCAL) on POSIX via _ctypes (what ctypes.CDLL calls, without the
    cost of importing ctypes on every start), LoadLibraryEx through ctypes on Windows; a file
    that cannot be loaded is an ImportError naming it, with the loader's own words."""
    reason = truncated(path)
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


def ships(package_dir: str, files: "Iterable[str]") -> bool:
    """Whether the provider copy in `package_dir` has each of `files` in its lib/."""
    lib_dir = os.path.join(package_dir, "lib")
    return all(os.path.isfile(os.path.join(lib_dir, f)) for f in files)


def provider_copies(package: str, entries: "Iterable[str]") -> "Iterator[str]":
    """The copies of provider package `package` in `entries` (sys.path order): the real path of
    each ``<entry>/<package>`` with an ``__init__.py``, once. Only absolute entries count: native
    code is never loaded from the current directory ("" or a relative entry)."""
    seen = set()
    for entry in entries:
        if not entry or not os.path.isabs(entry):
            continue
        package_dir = os.path.realpath(os.path.join(entry, package))
        if package_dir not in seen and os.path.isfile(os.path.join(package_dir, "__init__.py")):
            seen.add(package_dir)
            yield package_dir


def candidates(package: str, files: "Sequence[str]", entries: "Iterable[str]",
               imported: "str | None" = None) -> "Iterator[str]":
    """The copies of provider `package` that ship `files`, in the order they are to be tried.

    `imported`: the directory of the copy ``import package`` gave (None if it failed). It comes
    first when it ships `files`, since it is the one every other ``import package`` in the process
    gets; then every other copy in `entries` that does (see provider_copies). A function of its
    arguments and the disk only, evaluated lazily: the hook looks no further than the copy it
    uses (the first costs no path resolution); ``sharewheel check``, auditing absolute entries,
    passes the first of provider_copies as `imported` (what the import system finds there) and
    so chooses exactly as the hook does.
    """
    if imported is not None and ships(imported, files):
        yield imported
    real = None if imported is None else os.path.realpath(imported)
    for package_dir in provider_copies(package, entries):
        if package_dir != real and ships(package_dir, files):
            yield package_dir


def preload_copies(paths: "Sequence[str]", entries: "Iterable[str]") -> "Iterator[list[str]]":
    """For each absolute entry of `entries` (sys.path order) that has every one of `paths`
    (relative, "/"-separated), their full paths: the copies of a third-party provider's files."""
    for entry in entries:
        if not entry or not os.path.isabs(entry):
            continue  # never load native code from the current directory
        files = [os.path.join(entry, *path.split("/")) for path in paths]
        if all(os.path.isfile(f) for f in files):
            yield files


def layout_error(libc: "Libc", origin: str, fallbacks: "Sequence[str]", loaded: "Iterable[str]",
                 ld_library_path: str, distribution: str, requirement: str, needed_by: str) -> "ImportError | None":
    """The ImportError for a layout the `libc` loader cannot serve, or None.

    glibc (like dyld and Windows) gives a needed library name the library already loaded under it,
    so the preload serves consumers in any sys.path entry. musl does not: it reuses a loaded library
    only when its own search (LD_LIBRARY_PATH, then the needing binary's RPATH: `fallbacks`,
    relative to `origin`, the directory of the module holding the table) reaches that very file.
    `loaded`: the provider's files as loaded (full paths, or bare names when unknown).
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


def check_layout(libc: "Libc", origin: str, fallbacks: "Sequence[str]", loaded: "Iterable[str]",
                 distribution: str, requirement: str, needed_by: str) -> None:
    """Raise layout_error's error, with this process's LD_LIBRARY_PATH."""
    error = layout_error(libc, origin, fallbacks, loaded, os.environ.get("LD_LIBRARY_PATH", ""), distribution,
                         requirement, needed_by)
    if error is not None:
        raise error


def missing(distribution: str, requirement: str, needed_by: str, name: "str | None", detail: str = "") -> ImportError:
    """The ImportError for a provider that is not installed, with the pip command that fixes it."""
    return ImportError(
        f"{needed_by} needs the native library provider {distribution} ({requirement}), "
        f"which is not installed{detail}. Fix it with: pip install '{requirement}'",
        name=name,
    )


def _run_file(name: str, path: str, package_dir: "str | None" = None) -> "ModuleType":
    """Module `name` from the Python file `path` (a package's if `package_dir`), executed but not
    published in sys.modules."""
    from importlib.util import module_from_spec, spec_from_file_location  # the fallback only: rare

    locations = None if package_dir is None else [package_dir]
    spec = spec_from_file_location(name, path, submodule_search_locations=locations)
    assert spec is not None and spec.loader is not None  # a ".py" path always has both
    module = module_from_spec(spec)
    if package_dir is not None:
        # its `from . import _sharewheel_runtime` finds this attribute and imports no submodule:
        # the private copy stays one sys.modules entry
        runtime = os.path.join(package_dir, RUNTIME_MODULE + ".py")
        if os.path.isfile(runtime):
            setattr(module, RUNTIME_MODULE, _run_file(name + "." + RUNTIME_MODULE, runtime))
        sys.modules[name] = module  # a relative import needs its package there; readers hold the lock
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _load_private(package: str, files: "Sequence[str]", package_dir: str) -> "ModuleType":
    """The copy of provider `package` in `package_dir`, under a private module name (the import
    system has one module per name), run once per process."""
    name = SERIES + "." + package + "." + files[0].replace(".", "_").replace("-", "_")
    with _fallback_lock:
        module = sys.modules.get(name)
        if module is None:
            module = _run_file(name, os.path.join(package_dir, "__init__.py"), package_dir)
    return module


def require(package: str, distribution: str, requirement: str, files: "Sequence[str]", needed_by: str, *,
            libc: "Libc" = "", fallbacks: "Sequence[str]" = (), origin: str = "") -> "ModuleType":
    """Load provider `package` from the sys.path entry that ships `files`, and return it;
    `libc`, `fallbacks` and `origin`: see layout_error."""
    imported = None
    module = None
    try:
        __import__(package)  # thread-safe by itself
    except ModuleNotFoundError as e:
        if e.name != package:
            raise
    else:
        module = sys.modules[package]
        file = getattr(module, "__file__", None)
        if file:
            imported = os.path.dirname(file)
    for package_dir in candidates(package, files, sys.path, imported):
        if package_dir != imported or module is None:  # (None only without `imported`: for mypy)
            module = _load_private(package, files, package_dir)
        if libc:
            lib_dir = os.path.join(os.path.realpath(package_dir), "lib")
            check_layout(libc, origin, fallbacks, [os.path.join(lib_dir, f) for f in files], distribution,
                         requirement, needed_by)
        module.load()
        return module
    other = "" if imported is None else (
        f"; the {distribution} found in {os.path.dirname(os.path.realpath(imported))} ships another ABI series"
    )
    raise missing(distribution, requirement, needed_by, package, other)


def import_provider(module: str, distribution: str, requirement: str, needed_by: str, *, libc: "Libc" = "",
                    fallbacks: "Sequence[str]" = (), files: "Sequence[str]" = (), origin: str = "") -> "ModuleType":
    """A third-party provider whose own module loads its libraries when imported."""
    try:
        __import__(module)
    except ModuleNotFoundError as e:
        if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
            raise
    else:
        if libc:
            check_layout(libc, origin, fallbacks, files, distribution, requirement, needed_by)
        return sys.modules[module]
    raise missing(distribution, requirement, needed_by, module)


def preload(distribution: str, requirement: str, paths: "Sequence[str]", needed_by: str, *, libc: "Libc" = "",
            fallbacks: "Sequence[str]" = (), origin: str = "") -> None:
    """Load a third-party provider's files by full path, dependencies first, from the first
    absolute sys.path entry that has them all (a loaded library satisfies later lookups of its name)."""
    key = (distribution, *paths)
    with _fallback_lock:
        if key in _preloaded:
            return
        for files in preload_copies(paths, sys.path):
            if libc:
                check_layout(libc, origin, fallbacks, files, distribution, requirement, needed_by)
            handles: list[object] = []
            for path in files:
                if sys.platform == "win32":
                    handles.append(os.add_dll_directory(os.path.dirname(path)))
                handles.append(load_file(path, distribution))
            _preloaded[key] = handles
            return
    raise missing(distribution, requirement, needed_by, None)


def require_all(records: "Iterable[Record]", needed_by: str, libc: "Libc", module_file: str) -> None:
    """Load each provider of a table, in order; `module_file`: the file of the module holding the
    table, which the records' lib_dirs (musl's RPATH fallbacks) are relative to."""
    origin = os.path.dirname(module_file)
    for package, distribution, requirement, files, strategy, lib_dirs in records:
        if strategy == "import":
            import_provider(package, distribution, requirement, needed_by, libc=libc, fallbacks=lib_dirs,
                            files=files, origin=origin)
        elif strategy == "preload":
            preload(distribution, requirement, files, needed_by, libc=libc, fallbacks=lib_dirs, origin=origin)
        else:
            require(package, distribution, requirement, files, needed_by, libc=libc, fallbacks=lib_dirs,
                    origin=origin)


class Provider:
    """What a provider package's ``__init__.py`` exports: ``load()`` and the ``get_*_dir()``
    helpers, for the package whose ``__init__.py`` is `init_file`."""

    def __init__(self, init_file: str, distribution: str, libraries: "Sequence[str]",
                 requires: "Sequence[Record]" = (), libc: "Libc" = "") -> None:
        self.init_file = init_file
        # resolved: $ORIGIN in the libraries' RPATHs is then where the files really are
        self.here = os.path.dirname(os.path.realpath(init_file))
        self.distribution = distribution
        self.libraries = libraries  # unique file names in lib/, in load order
        self.requires = requires  # the providers they link to, loaded first
        self.libc = libc
        self.handles: list[object] = []
        self.loaded = False
        self._lock = _thread.RLock()

    def load(self) -> None:
        """Load the providers this one needs, then its own libraries; later calls return at once."""
        if self.loaded:
            return
        with self._lock:
            if self.loaded:
                return
            require_all(self.requires, self.distribution, self.libc, self.init_file)
            lib_dir = self.get_lib_dir()
            if sys.platform == "win32":
                self.handles.append(os.add_dll_directory(lib_dir))
            for name in self.libraries:
                self.handles.append(load_file(os.path.join(lib_dir, name), self.distribution))
            self.loaded = True

    def get_lib_dir(self) -> str:
        """The libraries (and the import libraries a consumer links with on Windows)."""
        return os.path.join(self.here, "lib")

    def get_include_dir(self) -> str:
        """The headers."""
        return os.path.join(self.here, "include")

    def get_pkgconfig_dir(self) -> str:
        """A PKG_CONFIG_PATH entry: one .pc file per library."""
        return os.path.join(self.here, "lib", "pkgconfig")

    def get_cmake_dir(self) -> str:
        """A CMAKE_PREFIX_PATH entry: it holds one CMake package per library (lib/cmake/<name>/)."""
        return os.path.join(self.here, "lib", "cmake")


def load_extension(name: str, shim_file: str, moved: str) -> None:
    """Make module `name` (a shim being imported, in `shim_file`) the extension module in the
    file `moved` beside it: see sharewheel's README, "Extension modules outside a package"."""
    from importlib.machinery import ExtensionFileLoader
    from importlib.util import module_from_spec, spec_from_file_location

    path = os.path.join(os.path.dirname(os.path.realpath(shim_file)), moved)
    loader = ExtensionFileLoader(name, path)
    spec = spec_from_file_location(name, path, loader=loader)
    assert spec is not None
    module = module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
