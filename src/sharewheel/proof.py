"""The stand-in proof: before anything is relinked, each provider file must export every
symbol (and symbol version) a binary imports from the library it replaces."""

from __future__ import annotations

import functools
import logging
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING

from sharewheel import symbols
from sharewheel.adapters import BinaryInfo, PlatformAdapter
from sharewheel.errors import SharewheelError
from sharewheel.symbols import SymbolTable
from sharewheel.unvendor import Unvendoring

if TYPE_CHECKING:
    from sharewheel.repair import Plan

log = logging.getLogger("repair")


def prove_stand_ins(
    adapter: PlatformAdapter,
    tree: Path,
    binaries: dict[str, BinaryInfo],
    plan: Plan,
    unvendoring: Unvendoring,
    search: tuple[Path, ...] = (),
) -> None:
    """Refuse, before anything is relinked, a provider file that lacks a symbol (or symbol
    version) a binary imports from the library it stands in for.

    What a binary imports from a library is decided by the library it used until now: the
    vendored copy being replaced, else the library the host finds for it (often the very
    file the build linked), else what the binary imports that none of its other libraries
    export — judged only when every one of those was found (see sharewheel.symbols).
    """
    for (binary, needed), match in sorted(plan.matches.items(), key=lambda item: item[0]):
        table = adapter.symbols(tree / binary)
        provider_table = adapter.symbols(match.provider.file(match.library))
        name = posixpath.basename(needed)
        copy = unvendoring.reference(needed)
        if copy is not None:
            lacking = symbols.missing(
                symbols.imports_from(table, needed, reference=adapter.symbols(tree / copy)), provider_table
            )
        else:
            bound = symbols.imports_from(table, needed, reference=SymbolTable())
            unexplained = {s for s in symbols.imports_from(table, needed) - bound if not provider_table.exports_symbol(s)}
            lacking = symbols.missing(bound, provider_table)
            if unexplained:  # only now is it worth asking which library the binary really used
                lacking += _unexplained(adapter, tree, binaries, plan, binary, needed, unexplained, search)
        if lacking:
            where = f"{match.provider.distribution} {match.provider.provides.version}'s {match.library.path}"
            raise SharewheelError(symbols.describe_missing(binary, name, where, sorted(lacking)))


def _unexplained(
    adapter: PlatformAdapter,
    tree: Path,
    binaries: dict[str, BinaryInfo],
    plan: Plan,
    binary: str,
    needed: str,
    candidates: set[symbols.Symbol],
    search: tuple[Path, ...],
) -> list[str]:
    """Of unbound imports the provider lacks, those that came from the replaced library: judged by
    the library the host finds under that name, else by elimination over the binary's other
    libraries (read only until every candidate is explained; not judged at all when one of them
    cannot be found)."""
    name = posixpath.basename(needed)
    resolved = adapter.resolve(tree, binary, search)
    if name in resolved:
        reference = adapter.symbols(resolved[name])
        return symbols.spelled(s for s in candidates if s[0] in reference.exports)
    provided = {posixpath.basename(n): m for (b, n), m in plan.matches.items() if b == binary and n != needed}
    direct = [posixpath.basename(n) for n in binaries[binary].needed if posixpath.basename(n) != name]
    if not all(n in resolved or n in provided for n in direct):
        log.debug("%s: not every library it needs was found; its unversioned imports are not judged", binary)
        return []
    paths = [resolved[n] for n in direct if n in resolved]
    paths += [m.provider.file(m.library) for m in provided.values()]
    paths += [p for n, p in resolved.items() if n not in direct and n != name]
    left = symbols.unexplained(candidates, (functools.partial(adapter.symbols, p) for p in paths))
    return symbols.spelled(left)
