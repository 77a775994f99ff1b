"""The runtime hook repair puts into a consumer wheel: each package with binaries imports a
generated table module that loads the wheel's providers before any extension module is imported;
an extension module outside any regular package gets a shim that takes its import name.

The code those modules run is sharewheel.runtime's loader, copied beside them; this module
decides where they go and puts the import into ``__init__.py`` (a marked block, after the
docstring and ``from __future__`` imports, replaced by a later repair).
"""

from __future__ import annotations

import io
import os
import posixpath
import re
from collections.abc import Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from sharewheel.adapters import BinaryInfo
from sharewheel.errors import SharewheelError
from sharewheel.runtime import (
    HOOK_MODULE,
    RUNTIME_MODULE,
    Libc,
    Requirement,
    consumer_hook,
    extension_shim,
    loader_source,
    top_level_modules,
)

__all__ = ["BLOCK_END", "BLOCK_START", "HOOK_MODULE", "init_block", "insert_block", "install_hooks", "remove_block"]

BLOCK_START = "# --- sharewheel: load native-lib providers before extension modules (generated) ---"
BLOCK_END = "# --- end sharewheel ---"


def install_hooks(
    tree: Path,
    binaries: dict[str, BinaryInfo],
    runtime: Sequence[Requirement],
    distribution: str,
    libc: Libc | str = Libc.OTHER,
) -> dict[str, str]:
    """Make every importable package with binaries load the providers first.

    A package gets the table module ``_sharewheel_providers.py`` and the loader beside it, and its
    ``__init__.py`` a marked block importing the table. Extension modules outside any regular
    package get a shim each, and the table and loader at the top level, named after the
    distribution (see sharewheel.runtime). Returns the binaries renamed for shims, old path →
    new path. `libc` MUSL (a musllinux wheel): each table also checks that its binaries' RPATH
    fallbacks reach the providers (see sharewheel.runtime.loader.layout_error).
    """
    if not runtime:
        return {}
    libc = Libc(libc)
    needed_by = canonicalize_name(distribution)
    packages: set[str] = set()
    loose: list[str] = []
    for binary, info in sorted(binaries.items()):
        parts = binary.split("/")
        if parts[0].endswith((".libs", ".data", ".dist-info", ".dylibs")):
            continue
        package = next(
            ("/".join(parts[:i]) for i in range(1, len(parts)) if (tree.joinpath(*parts[:i], "__init__.py")).is_file()),
            None,
        )
        if package is not None:
            packages.add(package)
        elif info.is_extension:
            loose.append(binary)
    for package in sorted(packages):
        hook = consumer_hook(runtime, needed_by, libc=libc, package=package)
        (tree / package / f"{HOOK_MODULE}.py").write_text(hook, encoding="utf-8")
        (tree / package / f"{RUNTIME_MODULE}.py").write_text(loader_source(), encoding="utf-8")
        init = tree / package / "__init__.py"
        block = init_block(f"from . import {HOOK_MODULE}  # noqa: F401")
        source, encoding = _read_python(init, f"{package}/__init__.py")
        init.write_text(insert_block(source, block), encoding=encoding)
    renamed: dict[str, str] = {}
    if loose:
        top_hook, top_runtime = top_level_modules(needed_by)
        (tree / f"{top_hook}.py").write_text(consumer_hook(runtime, needed_by, libc=libc), encoding="utf-8")
        (tree / f"{top_runtime}.py").write_text(loader_source(), encoding="utf-8")
        for binary in loose:
            directory, filename = posixpath.split(binary)
            module, _, rest = filename.partition(".")
            if not rest.startswith("sharewheel."):
                rest = f"sharewheel.{rest}"
                moved = posixpath.join(directory, f"{module}.{rest}")
                os.replace(tree / binary, tree / moved)
                renamed[binary] = moved
            shim = extension_shim(module, f"{module}.{rest}", needed_by)
            (tree / directory / f"{module}.py").write_text(shim, encoding="utf-8")
    return renamed


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


def _read_python(path: Path, where: str) -> tuple[str, str]:
    """A Python source and its encoding (PEP 263 cookie or UTF-8), as the interpreter reads it."""
    import tokenize

    data = path.read_bytes()
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding), encoding
    except (SyntaxError, UnicodeDecodeError, LookupError) as e:
        raise SharewheelError(f"{where}: cannot read this Python file ({e})") from None
