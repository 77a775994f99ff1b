"""The runtime sharewheel puts into wheels: the code, copied verbatim, and each wheel's data.

``loader.py`` (the provider loader and the consumer hook), ``provider_main.py`` (a provider's
``python -m``) and ``launcher.py`` (runs a wheel's executables with their providers:
sharewheel.launchers) are ordinary stdlib-only modules that run without sharewheel; they are linted,
type-checked and tested as such, and copied into wheels from sharewheel's package data. What
differs per wheel is a table, rendered here as Python literals into a small module that binds
the loader (the copy some wheel already loaded, by content: ``runtime_key``, or its own) and
hands it the table:

- a consumer package's ``_sharewheel_providers.py``: ``NEEDED_BY``, ``LIBC`` and ``PROVIDERS``, one
  record per provider (package, distribution, requirement, files, strategy, lib_dirs; see
  :meth:`Requirement.record`), then ``require_all`` of them;
- a provider's ``__init__.py``: ``DISTRIBUTION``, ``LIBRARIES``, ``LIBC`` and the ``PROVIDERS`` its
  libraries link to, then a ``Provider`` whose ``load()`` and ``get_*_dir()`` it exports.

In a package the loader is ``_sharewheel_runtime.py``. At a wheel's top level (extension modules
outside any package) the loader and the table carry the distribution in their names, so that two
wheels installed into one site-packages never overwrite each other's.
"""

from __future__ import annotations

import functools
import hashlib
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from importlib.resources import files as package_files

from sharewheel.runtime.loader import RUNTIME_MODULE

HOOK_MODULE = "_sharewheel_providers"  # the table module a consumer package's __init__ imports
SHIM_MARK = "# sharewheel extension shim"
RECORD_FIELDS = "(package, distribution, requirement, files, strategy, lib_dirs)"


class Strategy(str, Enum):
    """How a wheel's hook gets a provider's libraries loaded (loader.require_all)."""

    PROVIDER = "provider"  # a sharewheel provider: its package's load(), series fallback included
    IMPORT = "import"  # a third-party package that loads its libraries when imported
    PRELOAD = "preload"  # a third-party wheel without a loader: its files, by path, dependencies first


class Libc(str, Enum):
    """The C library of a wheel's binaries, as far as loading providers goes."""

    OTHER = ""  # glibc, like dyld and Windows, lets a library loaded by path serve later lookups of its name
    MUSL = "musl"  # musl does not: the binaries' RPATH fallback must reach the provider (loader.layout_error)


@dataclass(frozen=True)
class Requirement:
    """One provider a wheel needs at run time: a record of its table."""

    package: str  # the provider's import package (import: the module to import)
    distribution: str
    requirement: str  # the Requires-Dist, shown in the pip command of the error
    files: tuple[str, ...]  # unique library files the wheel was linked to; preload: their paths
    strategy: Strategy = Strategy.PROVIDER
    lib_dirs: tuple[str, ...] = ()  # where the linked files lie in the provider's wheel (RPATH fallbacks)

    def record(self, libc: Libc, directory: str) -> tuple[str, str, str, tuple[str, ...], str, tuple[str, ...]]:
        """This requirement as a row of the table of a module in wheel directory `directory` (""
        at the top level). Only musl needs the lib_dirs, as RPATH fallbacks relative to the module:
        elsewhere they are left out, so the table does not depend on where the module is."""
        fallbacks = tuple(posixpath.relpath(d, directory or ".") for d in self.lib_dirs) if libc is Libc.MUSL else ()
        return (self.package, self.distribution, self.requirement, self.files, self.strategy.value, fallbacks)


@functools.cache
def loader_source() -> str:
    """The loader, as copied into wheels (``_sharewheel_runtime.py``)."""
    return package_files(__name__).joinpath("loader.py").read_text(encoding="utf-8")


@functools.cache
def provider_main_source() -> str:
    """A provider's ``__main__.py``."""
    return package_files(__name__).joinpath("provider_main.py").read_text(encoding="utf-8")


@functools.cache
def launcher_source() -> str:
    """The launcher of executables linked to providers, as copied into wheels (launcher.py)."""
    return package_files(__name__).joinpath("launcher.py").read_text(encoding="utf-8")


def runtime_key() -> str:
    """The sys.modules key the loader is shared under: every wheel carrying this very loader
    (by content) uses the copy loaded first, so a process imports it once, not once per wheel."""
    return f"{RUNTIME_MODULE}@{hashlib.sha256(loader_source().encode()).hexdigest()[:16]}"


def _bootstrap(import_runtime: str) -> str:
    """The lines that bind `_runtime` in a table module: the shared loader (runtime_key), or
    this wheel's copy of it (`import_runtime`), then published for the next wheel."""
    return f"""import sys as _sys

RUNTIME = {runtime_key()!r}  # sharewheel's runtime, by content: loaded once for all wheels
_runtime = _sys.modules.get(RUNTIME)
if _runtime is None:
    {import_runtime}
    _sys.modules[RUNTIME] = _runtime
"""


def top_level_modules(needed_by: str) -> tuple[str, str]:
    """The table and loader module names at the top level of `needed_by`'s wheel."""
    suffix = needed_by.replace("-", "_").replace(".", "_")
    return f"{HOOK_MODULE}_{suffix}", f"{RUNTIME_MODULE}_{suffix}"


def _table(requirements: Sequence[Requirement], libc: Libc, directory: str) -> str:
    rows = "".join(f"    {r.record(libc, directory)!r},\n" for r in requirements)
    return f"(\n{rows})" if rows else "()"


def consumer_hook(requirements: Sequence[Requirement], needed_by: str, *, libc: Libc = Libc.OTHER,
                  package: str = "") -> str:
    """The table module a consumer package imports before any of its extension modules.

    `libc`: MUSL for a musllinux wheel (its binaries load only under musl's loader, so the tag is
    exact where a run-time guess from the stdlib is not), which adds the layout check; `package`:
    the module's directory in the wheel ("" at the top level), which its RPATH fallbacks are
    relative to and which says how it imports the loader.
    """
    runtime = RUNTIME_MODULE if package else top_level_modules(needed_by)[1]
    how = f"from . import {runtime} as _runtime" if package else f"import {runtime} as _runtime"
    return f'''"""Generated by sharewheel: the native-lib providers {needed_by} was linked to, loaded before its
extension modules. This module is data; the code is {runtime}, sharewheel's runtime."""

{_bootstrap(how)}
NEEDED_BY = {needed_by!r}
LIBC = {libc.value!r}
# {RECORD_FIELDS} of each provider
PROVIDERS = {_table(requirements, libc, package)}

_runtime.require_all(PROVIDERS, NEEDED_BY, LIBC, __file__)
'''


def provider_init(*, distribution: str, version: str, libraries: Sequence[str], requires: Sequence[Requirement],
                  libc: Libc = Libc.OTHER, package: str = "") -> str:
    """The provider package's ``__init__.py``: its table, and load() and the get_*_dir() helpers
    of the runtime's Provider. `libc` MUSL (its libraries link musl's) checks the layout of the
    providers it requires, whose lib_dirs are relative to `package`, its directory in the wheel."""
    return f'''"""{distribution} {version}: native libraries packed by sharewheel.

Importing this package loads {", ".join(libraries)} (RTLD_LOCAL, dependencies first), so that
extension modules linked to those names find them wherever on sys.path they are installed.
Generated: this module is data; the code is {RUNTIME_MODULE}, sharewheel's runtime (standard library only).
"""

{_bootstrap(f"from . import {RUNTIME_MODULE} as _runtime")}
__version__ = {version!r}
__all__ = ["load", "get_lib_dir", "get_include_dir", "get_pkgconfig_dir", "get_cmake_dir"]

DISTRIBUTION = {distribution!r}
LIBRARIES = {tuple(libraries)!r}  # in load order
LIBC = {libc.value!r}
# {RECORD_FIELDS} of each provider these libraries link to
PROVIDERS = {_table(requires, libc, package)}

_provider = _runtime.Provider(__file__, DISTRIBUTION, LIBRARIES, PROVIDERS, LIBC)
_handles = _provider.handles
load = _provider.load
get_lib_dir = _provider.get_lib_dir
get_include_dir = _provider.get_include_dir
get_pkgconfig_dir = _provider.get_pkgconfig_dir
get_cmake_dir = _provider.get_cmake_dir

load()
'''


def extension_shim(module: str, moved_file: str, needed_by: str) -> str:
    """A `<module>.py` that loads the providers, then the extension renamed to `moved_file`.

    For an extension module outside any regular package there is no ``__init__.py`` to hook:
    the extension is renamed to a file name no import can find (it has a dot in its module
    part) in the same directory, so its $ORIGIN-relative RPATH still holds, and this shim takes
    its import name.
    """
    hook = top_level_modules(needed_by)[0]
    return (
        f"{SHIM_MARK}: {module} is the extension module {moved_file}, loaded after its native-lib\n"
        "# providers (generated; see sharewheel's README, \"Extension modules outside a package\").\n"
        f"import {hook} as _providers\n"
        "\n"
        f"_providers._runtime.load_extension(__name__, __file__, {moved_file!r})\n"
    )


def launch_modules(needed_by: str) -> tuple[str, str]:
    """The top-level modules of `needed_by`'s wheel that launch its executables: the generated
    table (launch_module) and the launcher (launcher.py)."""
    suffix = needed_by.replace("-", "_").replace(".", "_")
    return f"_sharewheel_launch_{suffix}", f"_sharewheel_launcher_{suffix}"


def launch_module(commands: Sequence[tuple[str, str, Sequence[Requirement]]], needed_by: str) -> str:
    """The module `needed_by`'s console_scripts entry points call, ``main_<n>`` for the n-th
    command: (command, executable relative to the wheel's root, the providers it needs) each."""
    runtime = top_level_modules(needed_by)[1]
    launcher = launch_modules(needed_by)[1]
    rows = "".join(f"    {command!r}: ({binary!r}, {_table(providers, Libc.OTHER, '')}),\n"
                   for command, binary, providers in commands)
    mains = "".join(f"\n\ndef main_{n}() -> None:  # {command}\n"
                    f"    _launcher.main(_runtime, {command!r}, *COMMANDS[{command!r}], NEEDED_BY, __file__)\n"
                    for n, (command, _, _) in enumerate(commands))
    return f'''"""Generated by sharewheel: the console scripts of {needed_by} that run executables linked to
native-lib providers, found for that process only. This module is data; the code is {launcher}."""

{_bootstrap(f"import {runtime} as _runtime")}
import {launcher} as _launcher

NEEDED_BY = {needed_by!r}
# command: (its executable, relative to this module; the providers it needs, as the hook's PROVIDERS)
COMMANDS = {{
{rows}}}
{mains}'''
