"""`sharewheel pkgconfig-path` and `sharewheel cmake-prefix-path`: where installed providers keep
their build files, joined for ``PKG_CONFIG_PATH`` and ``CMAKE_PREFIX_PATH`` in CI scripts.

Nothing is imported (a provider's ``__init__`` loads its library, which a build machine may not
be able to): a packed provider's manifest names its package, whose ``lib/pkgconfig`` and
``lib/cmake`` are the directories; a third-party wheel a plugin describes contributes the
directories of the ``.pc`` and ``<name>Config.cmake`` / ``<name>-config.cmake`` files it
installed. The order is ``sys.path`` order, and a distribution shadowed by an earlier entry
is left out, as imports never see it. A distribution without a manifest is matched against the
plugins only when it has such files (only then could a plugin's answer change the result), and
no entry-point plugin (code) is imported: one whose mapping is a literal is read from its source.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from typing import Literal

from sharewheel.check import installed
from sharewheel.errors import ProviderError, SharewheelError
from sharewheel.manifest import Manifest, check_owner, read_installed
from sharewheel.plugin import Plugin, load_plugins, plugin_for

Kind = Literal["pkgconfig", "cmake"]


def _third_party(kind: Kind, files: Sequence[str]) -> list[str]:
    """Directories (relative, POSIX) of a third-party wheel's build files of `kind`."""
    if kind == "pkgconfig":
        wanted = [f for f in files if f.endswith(".pc")]
    else:
        wanted = [f for f in files if f.endswith(("Config.cmake", "-config.cmake"))]
    return sorted({posixpath.dirname(f) for f in wanted})


def build_dirs(paths: Sequence[str], kind: Kind, plugins: Sequence[Plugin] | None = None) -> list[str]:
    """The `kind` directories of every provider installed in `paths`, in sys.path order."""
    plugins = load_plugins(run_code=False) if plugins is None else plugins  # (imports none: see LazyPlugins)
    found: list[str] = []
    for item in installed(paths):
        if item.shadowed:
            continue
        where = f"installed {item.label} in {item.location}"
        text = read_installed(item.dist, where, ProviderError)
        if text is not None:
            manifest = Manifest.loads(text, where, ProviderError)
            if manifest.provides is None:
                continue
            check_owner(manifest.provides, item.name, item.version, where, ProviderError)
            directory = os.path.abspath(item.location / manifest.provides.package / "lib" / kind)
            candidates = [directory] if os.path.isdir(directory) else []
        else:
            dirs = _third_party(kind, [f.as_posix() for f in item.dist.files or ()])
            if not dirs or plugin_for(item.name, plugins) is None:
                continue
            candidates = [os.path.abspath(item.location.joinpath(*d.split("/")))
                          for d in dirs if d and ".." not in d.split("/")]
            candidates = [c for c in candidates if os.path.isdir(c)]
        found += [c for c in candidates if c not in found]
    return found


def joined(paths: Sequence[str], kind: Kind) -> str:
    """`build_dirs` joined with os.pathsep, or an error when no provider is installed."""
    dirs = build_dirs(paths, kind)
    if not dirs:
        raise SharewheelError(
            f"no installed native-lib provider has {'pkg-config files' if kind == 'pkgconfig' else 'a CMake package'} "
            f"in {len(paths)} sys.path entr{'y' if len(paths) == 1 else 'ies'} (install one, or give --python or --path)"
        )
    return os.pathsep.join(dirs)
