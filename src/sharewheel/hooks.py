"""The runtime hook repair puts into a consumer wheel: each package with binaries imports a
generated module that loads the wheel's providers before any extension module is imported;
an extension module outside any regular package gets a shim that takes its import name."""

from __future__ import annotations

import io
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from sharewheel import loader_template
from sharewheel.adapters import BinaryInfo
from sharewheel.errors import SharewheelError


def install_hooks(
    tree: Path,
    binaries: dict[str, BinaryInfo],
    runtime: Sequence[loader_template.Requirement],
    distribution: str,
    libc: str = "",
) -> dict[str, str]:
    """Make every importable package with binaries load the providers first.

    A package's ``__init__.py`` gets a marked block importing a generated hook module. An
    extension module outside any regular package gets a shim (see loader_template). Returns the
    binaries renamed for shims, old path → new path. `libc` "musl" (a musllinux wheel): each hook
    also checks that its binaries' RPATH fallbacks reach the providers (see loader_template).
    """
    if not runtime:
        return {}
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
        hook = loader_template.consumer_hook(runtime, needed_by, libc=libc, package=package)
        (tree / package / f"{loader_template.HOOK_MODULE}.py").write_text(hook, encoding="utf-8")
        init = tree / package / "__init__.py"
        block = loader_template.init_block(f"from . import {loader_template.HOOK_MODULE}  # noqa: F401")
        source, encoding = _read_python(init, f"{package}/__init__.py")
        init.write_text(loader_template.insert_block(source, block), encoding=encoding)
    renamed: dict[str, str] = {}
    if loose:
        top_hook = f"{loader_template.HOOK_MODULE}_{needed_by.replace('-', '_')}"
        (tree / f"{top_hook}.py").write_text(loader_template.consumer_hook(runtime, needed_by, libc=libc), encoding="utf-8")
        for binary in loose:
            directory, filename = posixpath.split(binary)
            module, _, rest = filename.partition(".")
            if not rest.startswith("sharewheel."):
                rest = f"sharewheel.{rest}"
                moved = posixpath.join(directory, f"{module}.{rest}")
                os.replace(tree / binary, tree / moved)
                renamed[binary] = moved
            shim = loader_template.extension_shim(module, f"{module}.{rest}", top_hook)
            (tree / directory / f"{module}.py").write_text(shim, encoding="utf-8")
    return renamed


def _read_python(path: Path, where: str) -> tuple[str, str]:
    """A Python source and its encoding (PEP 263 cookie or UTF-8), as the interpreter reads it."""
    import tokenize

    data = path.read_bytes()
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding), encoding
    except (SyntaxError, UnicodeDecodeError, LookupError) as e:
        raise SharewheelError(f"{where}: cannot read this Python file ({e})") from None
