"""Relocatable pkg-config files for provider wheels.

``prefix=${pcfiledir}/../..`` makes the file valid wherever the wheel is installed, and the
``pkgconf_pypi_initpy`` variable is the convention by which pkgconf-pypi and RobotPy's
tooling find the package to import before using the library.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

RELOCATABLE_PREFIX = "${pcfiledir}/../.."


def generated_pc(
    *,
    name: str,
    version: str,
    distribution: str,
    package: str,
    link_names: Sequence[str],
    requires: Sequence[str],
) -> str:
    libs = " ".join(f"-l{n}" for n in link_names)
    lines = [
        f"prefix={RELOCATABLE_PREFIX}",
        "libdir=${prefix}/lib",
        "includedir=${prefix}/include",
        f"pkgconf_pypi_initpy={package}",
        "",
        f"Name: {name}",
        f"Description: {name} from the native-lib wheel {distribution} (packed by sharewheel)",
        f"Version: {version}",
    ]
    if requires:
        lines.append(f"Requires: {', '.join(requires)}")
    lines += [f"Libs: -L${{libdir}} {libs}", "Cflags: -I${includedir}"]
    return "\n".join(lines) + "\n"


def relocated_pc(text: str, *, prefix: str, package: str, renames: dict[str, str]) -> str:
    """A prefix's own .pc made relocatable, its `-lNAME` flags pointing at the unique names."""
    out = []
    for line in text.splitlines():
        if re.match(r"^\s*prefix\s*=", line):
            line = f"prefix={RELOCATABLE_PREFIX}"
        elif re.match(r"^\s*pkgconf_pypi_initpy\s*=", line):
            continue
        else:
            line = line.replace(prefix.rstrip("/"), "${prefix}")
            for old, new in renames.items():
                line = re.sub(rf"(?<!\S)-l{re.escape(old)}(?!\S)", f"-l{new}", line)
        out.append(line)
    position = next((i + 1 for i, l in enumerate(out) if l.startswith("prefix=")), 0)
    out.insert(position, f"pkgconf_pypi_initpy={package}")
    return "\n".join(out) + "\n"
