"""Runtime code sharewheel writes into wheels: the provider loader and the consumer hook.

Everything here is rendered to stdlib-only Python that runs without sharewheel installed.
Both the provider (for the providers it requires) and the consumer hook use one function,
``_require``: import the provider package; if the copy found first on sys.path does not
ship the exact library file this wheel was linked to (another ABI series shadows it), look
for a copy that does in the other sys.path entries and load that one under a private module
name. That is what lets two series of one library serve two consumers in one process.
"""

from __future__ import annotations

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


_REQUIRE = '''
import _thread
import importlib
import os
import sys

_load_lock = _thread.RLock()  # _thread, not threading: this code runs on every import
# One lock for every copy of this code in the process (each hook and provider carries one):
# it guards loading a provider under a private name, which the import system does not.
_fallback_lock = sys.__dict__.setdefault("_sharewheel_fallback_lock", _thread.RLock())


def _ships(package_dir, files):
    lib_dir = os.path.join(package_dir, "lib")
    return all(os.path.isfile(os.path.join(lib_dir, f)) for f in files)


def _require(package, distribution, requirement, files, needed_by):
    """Load provider `package` from the sys.path entry that ships `files`, and return it."""
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


def _import_provider(module, distribution, requirement, needed_by):
    """A third-party provider whose own module loads its libraries when imported."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
            raise
    raise _missing(distribution, requirement, needed_by, module)


_preloaded = sys.__dict__.setdefault("_sharewheel_preloaded", {})


def _preload(distribution, requirement, paths, needed_by):
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
            handles = []
            for path in files:
                try:
                    if sys.platform == "win32":
                        import ctypes

                        handles.append(os.add_dll_directory(os.path.dirname(path)))
                        handles.append(ctypes.CDLL(path))
                    else:
                        from _ctypes import dlopen

                        handles.append(dlopen(path, os.RTLD_NOW | os.RTLD_LOCAL))
                except OSError as e:
                    raise ImportError(f"{distribution}: cannot load {path}: {e}", path=path) from e
            _preloaded[key] = handles
            return
    raise _missing(distribution, requirement, needed_by, None)
'''


def _require_calls(requirements: Sequence[Requirement], needed_by: str, indent: str) -> str:
    lines = []
    for r in requirements:
        if r.how == "import":
            call = f"_import_provider({r.package!r}, {r.distribution!r}, {r.requirement!r}, {needed_by!r})"
        elif r.how == "preload":
            call = f"_preload({r.distribution!r}, {r.requirement!r}, {r.files!r}, {needed_by!r})"
        else:
            call = f"_require({r.package!r}, {r.distribution!r}, {r.requirement!r}, {r.files!r}, {needed_by!r})"
        lines.append(indent + call)
    return "\n".join(lines) or f"{indent}pass"


def provider_init(
    *,
    distribution: str,
    version: str,
    libraries: Sequence[str],
    requires: Sequence[Requirement],
) -> str:
    """The provider package's ``__init__.py``: load() and the get_*_dir() helpers."""
    return f'''"""{distribution} {version}: native libraries packed by sharewheel.

Importing this package loads {", ".join(libraries)} (RTLD_LOCAL, dependencies first), so that
extension modules linked to those names find them wherever on sys.path they are installed.
Generated code, standard library only.
"""
{_REQUIRE}

__version__ = {version!r}
__all__ = ["load", "get_lib_dir", "get_include_dir", "get_pkgconfig_dir"]

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


def _dlopen(path):
    """dlopen(RTLD_NOW | RTLD_LOCAL) on POSIX via _ctypes (what ctypes.CDLL calls, without the
    cost of importing ctypes on every start); LoadLibraryEx through ctypes on Windows."""
    if sys.platform == "win32":
        import ctypes

        return ctypes.CDLL(path)
    from _ctypes import dlopen

    return dlopen(path, os.RTLD_NOW | os.RTLD_LOCAL)


def load():
    """Load the providers this one needs, then its own libraries; later calls return at once."""
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
{_require_calls(requires, distribution, " " * 8)}
        lib_dir = get_lib_dir()
        if sys.platform == "win32":
            _handles.append(os.add_dll_directory(lib_dir))
        for name in _LIBRARIES:
            path = os.path.join(lib_dir, name)
            try:
                _handles.append(_dlopen(path))
            except OSError as e:
                raise ImportError(f"{distribution}: cannot load {{path}}: {{e}}", path=path) from e
        _loaded = True


load()
'''


def consumer_hook(requirements: Sequence[Requirement], needed_by: str) -> str:
    """The hook module a consumer package imports before any of its extension modules."""
    return f'''"""Generated by sharewheel: loads the native-lib providers {needed_by} was linked to."""
{_REQUIRE}

{_require_calls(requirements, needed_by, "")}
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
