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
# Both sides use one function, require: load the provider copy that fits, from the sys.path entry
# that ships the exact library files this wheel was linked to, under its own name when it is what
# `import package` gives, else under a private module name (the import system has one module per
# name: that is what lets two series of one library serve two consumers in one process). Which
# copy is candidates(): a pure function of the sys.path entries, the disk and the requirement, for
# `sharewheel check` to choose exactly as the hook does. A copy is never imported to learn what it
# is (its __init__ loads its libraries, and the first library of a name loaded serves every later
# need of that name): its version is the `__version__` line of its __init__.py, and the requirement
# (the Requires-Dist string of the table, as the manifest records it) is read by a small PEP 440
# comparator, admits(). A copy that fails to load is skipped for the next (a damaged copy must not
# hide a good one), and the error of none loading names each copy tried. Native code never comes
# from the current directory: not from "" or a relative entry, nor from an absolute entry that is
# the current directory (`python -m`, a script run from there); the hook does not even `import
# package` when that would find it there. Nothing is hashed here (start-up time): `sharewheel
# check --verify` compares the files with the sha256 their manifest records.
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
    # (epoch, release, pre (phase 0-2 for a, b, rc; number), post, dev, local): see parse_version
    Version = tuple[int, tuple[int, ...], tuple[int, int] | None, int | None, int | None, str]

RUNTIME_MODULE = "_sharewheel_runtime"  # this module's name in a package of a wheel
SERIES = "_sharewheel_series"  # prefix of the private names of copies the series fallback loads

# One lock for every copy of this module in the process (copies of other sharewheel releases too):
# it guards loading a provider under a private name, which the import system does not.
_fallback_lock: "_thread.RLock" = sys.__dict__.setdefault("_sharewheel_fallback_lock", _thread.RLock())
_preloaded: "dict[tuple[str, ...], list[object]]" = sys.__dict__.setdefault("_sharewheel_preloaded", {})


def program_headers(path: str) -> "tuple[int, int, list[tuple[int, int, int]]] | None":
    """An ELF file's size, the end of its program header table, and each header's (p_type,
    p_offset, p_filesz) (none if the table is cut short); None for what is not ELF or cannot be
    read. (os.open and os.read: a few system calls, no file object.)"""
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
    headers = []
    for index in range(count if len(table) == entsize * count and entsize >= (56 if wide else 32) else 0):
        entry = table[index * entsize:(index + 1) * entsize]
        offset, filesz = (entry[8:16], entry[32:40]) if wide else (entry[4:8], entry[16:20])
        headers.append((int.from_bytes(entry[0:4], order), int.from_bytes(offset, order),
                        int.from_bytes(filesz, order)))
    return size, phoff + entsize * count, headers


def truncated(path: str) -> "str | None":
    """Why an ELF file cut inside its segments cannot be loaded, or None. glibc's dlopen maps
    segments past the end of such a file and the process dies of SIGBUS before any error can
    be raised; dyld and Windows' loader report a short file themselves."""
    read = program_headers(path)
    if read is None:
        return None
    size, needed, headers = read
    for p_type, offset, filesz in headers:
        if p_type == 1:  # PT_LOAD
            needed = max(needed, offset + filesz)
    if needed > size:
        return f"the file is {size} bytes but its segments end at byte {needed} (truncated?)"
    return None


def interpreter(path: str) -> "str | None":
    """The ELF interpreter (PT_INTERP) a program names, or None (not ELF, static, unreadable)."""
    for p_type, offset, filesz in (program_headers(path) or (0, 0, []))[2]:
        if p_type == 3:  # PT_INTERP
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    return f.read(min(filesz, 4096)).rstrip(b"\0").decode()
            except (OSError, UnicodeDecodeError):
                return None
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


# --- versions: PEP 440 on what sharewheel writes, without `packaging` -------------------------


def parse_version(text: "str | None") -> "Version | None":
    """(epoch, release, pre, post, dev, local) of a PEP 440 version in normal form (as
    str(packaging's Version) writes it: `1!2.0rc1.post3.dev4+abc`, lower case), None for
    anything else: the comparator never guesses."""
    if not text or not text.isascii():
        return None
    public, _, local = text.strip().lower().partition("+")
    epoch, bang, public = public.rpartition("!")
    try:
        dev = post = None
        public, mark, number = public.partition(".dev")
        if mark:
            dev = int(number)
        public, mark, number = public.partition(".post")
        if mark:
            post = int(number)
        release = public.rstrip("0123456789abrc")  # up to the last "." of the release, then its digits
        release += public[len(release):len(public) - len(public[len(release):].lstrip("0123456789"))]
        letters = public[len(release):]
        pre = None
        if letters:
            phase = letters.rstrip("0123456789")
            pre = (("a", "b", "rc").index(phase), int(letters[len(phase):]))
        return (int(epoch) if bang else 0, tuple(int(part) for part in release.split(".")), pre, post, dev, local)
    except ValueError:  # int("") or a phase that is not a, b or rc
        return None


def version_key(version: "Version") -> "tuple[object, ...]":
    """PEP 440's order of a public version: trailing zeros of the release do not count, a
    development release comes before the pre-releases, the release before its post-releases."""
    epoch, release, pre, post, dev, _ = version
    while release and release[-1] == 0:
        release = release[:-1]
    return (epoch, release, (1, *pre) if pre else (0,) if dev is not None and post is None else (2,),
            (0,) if post is None else (1, post), (1,) if dev is None else (0, dev))


def specifiers(requirement: str) -> "list[tuple[str, str]] | None":
    """The (operator, version) pairs of a requirement string (`acme-native==3.*,>=3.1.4`, extras and
    marker allowed); None when it is not one this comparator reads (a URL, an unknown operator)."""
    head = requirement.partition(";")[0]
    if "@" in head:
        return None
    at = next((i for i, c in enumerate(head) if c in "<>=!~"), len(head))
    found = []
    for part in head[at:].split(",") if at < len(head) else ():
        version = part.strip().lstrip("<>=!~")
        operator = part.strip()[:len(part.strip()) - len(version)]
        if operator not in ("==", "!=", "<=", ">=", "<", ">", "~=", "==="):
            return None
        found.append((operator, version.strip()))
    return found


def admits(clauses: "list[tuple[str, str]] | None", text: "str | None") -> "bool | None":
    """Whether every clause (see specifiers) admits the version `text`, pre-releases included, as
    packaging (26) reads PEP 440; None when either cannot be read."""
    version = parse_version(text)
    if clauses is None or version is None:
        return None
    key = version_key(version)
    for operator, wanted in clauses:
        if operator == "===":
            ok = str(text).strip().lower() == wanted.lower()
        elif wanted.endswith(".*") or operator == "~=":
            if operator not in ("==", "!=", "~="):
                return None
            spec = parse_version(wanted[:-2] if operator != "~=" else wanted)
            if spec is None or spec[2:5] != (None, None, None) and operator != "~=":
                return None
            release = spec[1]
            if operator == "~=":  # ~=V.N: >=V.N and ==V.*
                if len(release) < 2 or wanted.endswith(".*"):
                    return None
                release = release[:-1]
            size = len(release)
            same = version[0] == spec[0] and (version[1] + (0,) * size)[:size] == release
            ok = same if operator == "==" else not same if operator == "!=" else same and key >= version_key(spec)
        else:
            spec = parse_version(wanted)
            if spec is None:
                return None
            spec_key = version_key(spec)
            base = key[:2] == spec_key[:2]  # the same epoch and release
            if operator in ("==", "!="):  # a local label counts only if the specifier has one
                same = key == spec_key and (not spec[5] or version[5] == spec[5])
                ok = same if operator == "==" else not same
            elif operator == "<=":
                ok = key <= spec_key
            elif operator == ">=":
                ok = key >= spec_key
            elif operator == "<":  # `< V.dev0` for a final V: not V's pre- or development releases
                ok = key < spec_key and (not base or spec[2] is not None or spec[4] is not None or spec[3] is not None
                                         and (version[2:4] != spec[2:4] or version[4] is None))
            else:  # ">": not a post-release of the version itself (of its pre-release too), unless
                # that is a post- or development release
                ok = key > spec_key and (spec[3] is not None or spec[4] is not None or not base or version[2] != spec[2])
        if not ok:
            return False
    return True


def copy_version(package_dir: str) -> "str | None":
    """The version of the provider copy in `package_dir`: the `__version__ = '...'` line sharewheel
    writes into its __init__.py (a read of a small file; importing it would load its libraries)."""
    try:
        fd = os.open(os.path.join(package_dir, "__init__.py"),
                     os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        head = b"\n" + os.read(fd, 16384)
    except OSError:
        return None
    finally:
        os.close(fd)
    at = head.find(b"\n__version__ = ")
    if at < 0:
        return None
    value = head[at + 15:].partition(b"\n")[0].strip()
    if len(value) < 3 or value[:1] not in (b"'", b'"') or value[-1:] != value[:1]:
        return None
    return value[1:-1].decode("ascii", "replace")


# --- which copy on sys.path -------------------------------------------------------------------


def _identity(path: str) -> "tuple[int, int] | None":
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _current(entry: str, here_id: "tuple[int, int] | None") -> bool:
    """Whether sys.path entry `entry` is the current directory (whose identity is `here_id`): "",
    a relative entry, or the directory itself spelt absolutely."""
    return not entry or not os.path.isabs(entry) or here_id is not None and _identity(entry) == here_id


def provider_copies(package: str, entries: "Iterable[str]", here: "str | None" = None) -> "Iterator[str]":
    """The copies of provider package `package` in `entries` (sys.path order): the real path of
    each ``<entry>/<package>`` with an ``__init__.py``, once. Only absolute entries count, and none
    that is the directory `here` (the hook's current directory): native code is never loaded from
    the current directory, whether sys.path spells it "", relative or absolute (`python -m`)."""
    seen = set()
    here_id = None
    for entry in entries:
        if entry and os.path.isabs(entry) and os.path.isfile(os.path.join(entry, package, "__init__.py")):
            here_id = here_id or (None if here is None else _identity(here))
            if here_id is not None and _identity(entry) == here_id:
                continue
            package_dir = os.path.realpath(os.path.join(entry, package))
            if package_dir not in seen:
                seen.add(package_dir)
                yield package_dir


def candidates(package: str, files: "Sequence[str]", entries: "Iterable[str]", requirement: str = "",
               here: "str | None" = None) -> "Iterator[str]":
    """The copies of provider `package` that ship `files`, in the order they are to be tried.

    First those whose version (copy_version) `requirement` admits, then the others (an older
    release of the series, a version or requirement the comparator cannot read), each in sys.path
    order; see provider_copies for `entries` and `here`. A function of its arguments and the disk
    only, evaluated lazily: the hook looks no further than the copy it loads, and ``sharewheel
    check`` (with `here` None: where it runs is no part of the environment) chooses exactly as
    the hook does.
    """
    clauses = specifiers(requirement)
    later = []
    for package_dir in provider_copies(package, entries, here):
        if ships(package_dir, files):
            if admits(clauses, copy_version(package_dir)):
                yield package_dir
            else:
                later.append(package_dir)
    yield from later


def import_finds(package: str, entries: "Iterable[str]", here: "str | None" = None) -> "str | None":
    """The real directory of the package ``import package`` gives, as the import system's own
    PathFinder finds it in `entries` (with its directory caches, running nothing), or None: none,
    no regular package, or one in the current directory (`here`, by default os.getcwd(): what ""
    and relative entries name), which the hook must not make the import system run."""
    package_dir = _import_dir(package, entries, here)
    return None if package_dir is None else os.path.realpath(package_dir)


def _import_dir(package: str, entries: "Iterable[str]", here: "str | None") -> "str | None":
    """import_finds' directory as the import system spells it (the hook compares directories by
    identity: a stat, where realpath costs one per path component)."""
    from _frozen_importlib_external import PathFinder  # loaded at start-up: the import system

    spec = PathFinder.find_spec(package, list(entries))
    if spec is None or not spec.origin or not spec.submodule_search_locations:
        return None
    package_dir = os.path.dirname(spec.origin)
    here = here or _cwd()
    if _current(os.path.dirname(package_dir), None if here is None else _identity(here)):
        return None
    return package_dir


def preload_copies(paths: "Sequence[str]", entries: "Iterable[str]", here: "str | None" = None) -> "Iterator[list[str]]":
    """For each absolute entry of `entries` (sys.path order) that has every one of `paths`
    (relative, "/"-separated), their full paths: the copies of a third-party provider's files.
    Never the current directory (see provider_copies)."""
    here_id = None if here is None else _identity(here)
    for entry in entries:
        files = [os.path.join(entry, *path.split("/")) for path in paths]
        if entry and os.path.isabs(entry) and all(os.path.isfile(f) for f in files) and not _current(entry, here_id):
            yield files


def _cwd() -> "str | None":
    try:
        return os.getcwd()
    except OSError:  # removed: "" finds nothing there either
        return None


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


def _copy(package: str, files: "Sequence[str]", package_dir: str, here: "str | None",
          own: "str | None" = None) -> "ModuleType":
    """The provider copy in `package_dir` as a module: the one ``import package`` gives (`own`,
    when the caller knows it) when that is this copy (and nothing in the current directory comes
    first), else a private one."""
    module = sys.modules.get(package)
    if module is None:
        own = own or _import_dir(package, sys.path, here)
    else:
        file = getattr(module, "__file__", None)
        own = os.path.dirname(file) if file else None
    wanted = _identity(package_dir)
    if own is not None and _identity(own) == wanted:
        __import__(package)  # thread-safe: waits for another thread's import of it to finish
        module = sys.modules[package]
        file = getattr(module, "__file__", None)
        if file and _identity(os.path.dirname(file)) == wanted:
            return module
    return _load_private(package, files, package_dir)


def _none_found(package: str, distribution: str, here: "str | None") -> str:
    """Why no copy of `package` on sys.path serves (for the ImportError of missing)."""
    first = next(provider_copies(package, sys.path, here), None)
    if first is not None:
        return f"; the {distribution} found in {os.path.dirname(first)} ships another ABI series"
    here_id = None if here is None else _identity(here)
    if any(os.path.isfile(os.path.join(e, package, "__init__.py")) for e in sys.path if _current(e, here_id)):
        return f"; the copy in the current directory ({here}) is not loaded from there"
    return ""


def _only_copy(package: str, package_dir: str) -> bool:
    """Whether no sys.path entry but the one holding `package_dir` has a `package` package (any
    other, also the current directory or another spelling of the same entry, answers False)."""
    own_entry = os.path.dirname(package_dir)
    return not any(entry != own_entry and os.path.isfile(os.path.join(entry or ".", package, "__init__.py"))
                   for entry in sys.path)


def _then(first: "str | None", rest: "Iterable[str]") -> "Iterator[str]":
    if first is not None:
        yield first
    yield from rest


def require(package: str, distribution: str, requirement: str, files: "Sequence[str]", needed_by: str, *,
            libc: "Libc" = "", fallbacks: "Sequence[str]" = (), origin: str = "") -> "ModuleType":
    """Load the first of the candidates() for provider `package` that loads, and return it: a
    damaged copy does not hide a good one further on, and if none loads, the error names each.
    `libc`, `fallbacks` and `origin`: see layout_error."""
    here = _cwd()
    failed = []
    # The usual case, found sooner: the regular package ``import package`` gives (not in the
    # current directory) is candidates()' first if it ships `files` and the requirement admits
    # its version (the import system's first regular package is the first copy in sys.path
    # order), or if it is the only copy (nothing to prefer: its version is not even read); and
    # the import reuses this PathFinder search. Measured cold: 0.3–0.5 ms less per provider than
    # candidates()' scan with realpath and a version read.
    own = None if package in sys.modules else _import_dir(package, sys.path, here)
    first = own is not None and ships(own, files) and (
        _only_copy(package, own) or admits(specifiers(requirement), copy_version(own)))
    tried = set()
    for package_dir in _then(own if first else None, candidates(package, files, sys.path, requirement, here)):
        identity = _identity(package_dir)
        if identity in tried:
            continue
        tried.add(identity)
        try:
            module = _copy(package, files, package_dir, here, own)
            if libc:
                lib_dir = os.path.join(package_dir, "lib")
                check_layout(libc, origin, fallbacks, [os.path.join(lib_dir, f) for f in files], distribution,
                             requirement, needed_by)
            module.load()
            return module
        except Exception as e:  # noqa: BLE001 - whatever the copy raised, the next one may load
            failed.append((package_dir, e))
    if len(failed) == 1:
        raise failed[0][1]
    if failed:
        raise ImportError(
            f"{needed_by} needs the native library provider {distribution} ({requirement}), but none of the "
            f"{len(failed)} copies on sys.path that ship {', '.join(files)} loads: "
            + "; ".join(f"{package_dir}: {e}" for package_dir, e in failed),
            name=package,
        ) from failed[0][1]
    raise missing(distribution, requirement, needed_by, package, _none_found(package, distribution, here))


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
        for files in preload_copies(paths, sys.path, _cwd()):
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
