"""``python -m <provider> --cmake-dir | --pkgconfig-dir | --include-dir | --lib-dir``: print a
native-lib provider's build directories, for CI scripts and build files that cannot import Python.

``sharewheel pack`` copies this module verbatim into each provider wheel as its ``__main__.py``;
the directories, the distribution and its version come from the provider package itself. Like
the loader it runs without sharewheel, on Python 3.8 and later.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

FLAGS = (
    ("--cmake-dir", "get_cmake_dir", "a CMAKE_PREFIX_PATH entry for find_package(NAME CONFIG)"),
    ("--pkgconfig-dir", "get_pkgconfig_dir", "a PKG_CONFIG_PATH entry for pkg-config and meson"),
    ("--include-dir", "get_include_dir", "the headers"),
    ("--lib-dir", "get_lib_dir", "the libraries"),
)


def main(argv: list[str] | None = None, provider: ModuleType | None = None) -> None:
    """Print the directories asked for, one a line, in the order asked. `provider`: the provider
    package; by default the package this module is the ``__main__`` of (``python -m`` imported it)."""
    if provider is None:
        provider = sys.modules[__package__ or ""]
    distribution = getattr(provider, "DISTRIBUTION", provider.__name__)
    parser = argparse.ArgumentParser(
        prog=f"python -m {provider.__name__}",
        description=f"Print the directories of the native-lib wheel {distribution}, one a line, in the order asked.",
    )
    for flag, function, what in FLAGS:
        parser.add_argument(flag, dest="dirs", action="append_const", const=function, help=what)
    parser.add_argument("--version", action="version", version=f"{distribution} {provider.__version__}")
    args = parser.parse_args(argv)
    if not args.dirs:
        parser.error("give at least one of " + ", ".join(flag for flag, _, _ in FLAGS))
    for function in args.dirs:
        print(getattr(provider, function)())


if __name__ == "__main__":
    main()
