"""Proving that a provider's file can stand in for the library a binary was linked against.

Relinking a binary to another file is only safe if that file exports every symbol (and
symbol version) the binary imports from the library it replaces; otherwise the failure shows
up at import time on a user's machine. The OS adapters read symbol tables into
:class:`SymbolTable`; the attribution of imports to libraries happens here, once for all
formats:

- Mach-O two-level namespace and PE import tables bind each import to one library by name,
  and ELF binds versioned imports through the version's file (``vna_file``).
- ELF's unversioned imports are bound to no library. They are attributed to the replaced
  library by its *reference copy* when one exists (the vendored copy being removed, or the
  library the build linked): the imports that copy exports. Without a copy, an unversioned
  import counts unless another library the binary loads exports it, or it is one of the
  interpreter's own (``Py``/``_Py``) symbols.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from sharewheel.naming import library_key

Symbol = tuple[str, "str | None"]  # (name, version); version None: unversioned


@dataclass(frozen=True)
class SymbolTable:
    # library name the import is bound to (None: bound to none, ELF unversioned) → symbols
    imports: Mapping[str | None, frozenset[Symbol]] = field(default_factory=dict)
    exports: Mapping[str, frozenset[str | None]] = field(default_factory=dict)  # name → versions

    def exports_symbol(self, symbol: Symbol) -> bool:
        name, version = symbol
        versions = self.exports.get(name)
        return versions is not None and (version is None or version in versions)


def imports_from(
    binary: SymbolTable,
    library: str,
    *,
    reference: SymbolTable | None = None,
    others: Iterable[SymbolTable] = (),
) -> set[Symbol]:
    """The symbols `binary` imports from the library it names `library`."""
    bound = {sym for name, syms in binary.imports.items() if name is not None and library_key(name) == library_key(library)
             for sym in syms}
    unbound = binary.imports.get(None, frozenset())
    if reference is not None:
        bound |= {sym for sym in unbound if sym[0] in reference.exports}
    else:
        others = list(others)
        bound |= {
            sym for sym in unbound
            if not sym[0].startswith(("Py", "_Py")) and not any(o.exports_symbol(sym) for o in others)
        }
    return bound


def unexplained(candidates: Iterable[Symbol], others: Iterable[Callable[[], SymbolTable]]) -> set[Symbol]:
    """The candidates no other library exports; each table is read only while some are left
    (the binary's own libraries first: libc is the costliest to read and rarely needed)."""
    left = set(candidates)
    for read in others:
        if not left:
            break
        table = read()
        left = {s for s in left if not table.exports_symbol(s)}
    return left


def missing(needed: Iterable[Symbol], provider: SymbolTable) -> list[str]:
    """The needed symbols the provider does not export, sorted, as `name@version`."""
    return spelled(s for s in set(needed) if not provider.exports_symbol(s))


def spelled(found: Iterable[Symbol]) -> list[str]:
    """Symbols as `name` or `name@version`, sorted."""
    return sorted(name if version is None else f"{name}@{version}" for name, version in set(found))


def describe_missing(binary: str, library: str, provider_file: str, names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
    return (
        f"{binary} imports {shown} from {library}, which {provider_file} does not export: "
        "that provider cannot stand in for it"
    )
