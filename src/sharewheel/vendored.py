"""Vendored copies in wheels repaired by auditwheel, delocate or delvewheel.

Where each tool puts its copies, and the name a copy had before the tool renamed it:

- auditwheel: ``<dist>.libs/<base>-<8 hex>.<ext>`` from ``<base>.<ext>`` (``libz-a1b2c3d4.so.1.2.13``;
  a copy of an already-renamed library gets a second hash);
- delvewheel: ``<dist>.libs/<root>-<32 hex>.dll`` from ``<root>.dll``;
- delocate: ``<package>/.dylibs/<name>``, name unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sharewheel.naming import library_family

_AUDITWHEEL = re.compile(r"^(?P<base>[^.]+)-[0-9a-f]{8}(?P<ext>\..+)$")
_DELVEWHEEL = re.compile(r"^(?P<root>.+)-[0-9a-f]{32}(?P<ext>\.dll)$", re.IGNORECASE)
_LIBRARY = re.compile(r"\.(so|dylib|dll)(\.|$)", re.IGNORECASE)


def tool_hash(name: str) -> str | None:
    """The content hash auditwheel (`libfoo-<hash8>.so.1`) or delvewheel (`foo-<hash32>.dll`)
    wrote into a copy's file name, as `auditwheel:<hash>` or `delvewheel:<hash>`: equal for
    copies of one original file; None for a name neither tool hashed (delocate keeps names)."""
    if match := re.match(r"^[^.]+-([0-9a-f]{8})\.", name):
        return f"auditwheel:{match[1]}"
    if match := _DELVEWHEEL.match(name):
        return f"delvewheel:{name[len(match['root']) + 1:-len(match['ext'])].lower()}"
    return None


@dataclass(frozen=True)
class VendoredCopy:
    path: str  # wheel- or site-relative POSIX path
    name: str  # the file name, which binaries that use the copy ask for
    size: int

    @property
    def originals(self) -> list[str]:
        return original_names(self.name)

    @property
    def stem(self) -> str:
        """What copies of one library share across tools and versions (see naming.library_family)."""
        return library_family(original_names(self.name)[-1])


def is_vendored_path(path: str) -> bool:
    """Whether a wheel path is where auditwheel/delvewheel (top-level `*.libs/`) or delocate
    (`.dylibs/` inside a package) put vendored libraries."""
    parts = path.split("/")
    if len(parts) == 2 and parts[0].endswith(".libs"):
        return bool(_LIBRARY.search(parts[1]))
    return len(parts) >= 2 and ".dylibs" in parts[:-1] and bool(_LIBRARY.search(parts[-1]))


def original_names(filename: str) -> list[str]:
    """The names a vendored file may have had before the tool renamed it, most recent first:
    each hash a tool appended is taken off in turn, then trailing version components, so that
    `libfoo-0123abcd.so.1.2.3` yields libfoo.so.1.2.3, libfoo.so.1.2, libfoo.so.1, libfoo.so."""
    names = [filename]
    current = filename
    while True:
        match = _AUDITWHEEL.match(current) or _DELVEWHEEL.match(current)
        if not match:
            break
        current = "".join(g for g in match.groups())
        names.append(current)
    while re.search(r"\.so(\.\d+)+$", current):
        current = current.rsplit(".", 1)[0]
        names.append(current)
    return list(dict.fromkeys(names))


def vendored_copies(files: Iterable[tuple[str, int]]) -> list[VendoredCopy]:
    """The vendored copies among (path, size) pairs of a wheel or an installed distribution."""
    return sorted(
        (VendoredCopy(path, path.rsplit("/", 1)[-1], size) for path, size in files if is_vendored_path(path)),
        key=lambda copy: copy.path,
    )
