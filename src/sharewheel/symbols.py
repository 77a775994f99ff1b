"""Proving that a provider's file can stand in for the library a binary was linked against.

Relinking a binary to another file is only safe if that file exports every symbol (and
symbol version) the binary imports from the library it replaces; otherwise the failure shows
up at import time on a user's machine. The OS adapters read symbol tables into
:class:`SymbolTable`; the attribution of imports to libraries happens here, in
:func:`lacking`, once for all formats and for both `repair`'s proof and `check`:

- Mach-O two-level namespace and PE import tables bind each import to one library by name,
  and ELF binds versioned imports through the version's file (``vna_file``).
- ELF's unversioned imports are bound to no library. The interpreter's ``Py``/``_Py`` API is
  never the replaced library's. Of the rest, the library's are those its *reference copy*
  exports when there is one (the vendored copy being removed, or the library the host finds
  under that name); without one, those that neither the binary's other libraries nor the
  interpreter's own libraries export (the latter are the process's global scope, which the
  loader searches before any library an extension brings) — not judged when one of the
  binary's libraries cannot be found.
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


Read = Callable[[], SymbolTable]  # a symbol table, read only when asked for


@dataclass(frozen=True)
class Neighbours:
    """What attributes a binary's unbound imports to one of its libraries; asked for only when
    some are left to attribute (finding them may mean searching the host)."""

    reference: SymbolTable | None = None  # the library it used until now: a vendored copy, the host's file
    others: Iterable[Read] | None = ()  # its other libraries, own ones first; None: one was not found


def lacking(
    binary: SymbolTable,
    library: str,
    provider: SymbolTable,
    neighbours: Callable[[], Neighbours],
    interpreter: Callable[[], Iterable[Read]],
) -> list[str]:
    """What `binary` imports from the library it names `library` that `provider` does not
    export, as sorted `name@version`: the one rule of `repair`'s proof and `check`.

    The reference copy, when there is one, decides before the interpreter: the binary relied
    on what it exports wherever the interpreter lacks it (this one may link libexpat, another
    not). Without one, an import some other library of the process serves is not the
    provider's to export; `interpreter` is read only for imports none of the binary's own
    libraries explains.
    """
    key = library_key(library)
    needed = {sym for name, syms in binary.imports.items() if name is not None and library_key(name) == key
              for sym in syms}
    absent = {s for s in needed if not provider.exports_symbol(s)}
    candidates = {s for s in binary.imports.get(None, ()) if not provider.exports_symbol(s) and not _python_api(s)}
    if candidates:  # only now is it worth asking which library the binary really used
        around = neighbours()
        if around.reference is not None:
            absent |= {s for s in candidates if s[0] in around.reference.exports}
        elif around.others is not None:
            left = unexplained(candidates, around.others)
            absent |= unexplained(left, interpreter()) if left else left
    return spelled(absent)


def _python_api(symbol: Symbol) -> bool:
    """The interpreter's C API, whichever Python a wheel is for (the running one may be older)."""
    return symbol[0].startswith(("Py", "_Py"))


def unexplained(candidates: Iterable[Symbol], others: Iterable[Read]) -> set[Symbol]:
    """The candidates no other library exports; each table is read only while some are left
    (the binary's own libraries first: libc is the costliest to read and rarely needed)."""
    left = set(candidates)
    for read in others:
        if not left:
            break
        table = read()
        left = {s for s in left if not table.exports_symbol(s)}
    return left


def spelled(found: Iterable[Symbol]) -> list[str]:
    """Symbols as `name` or `name@version`, sorted."""
    return sorted(name if version is None else f"{name}@{version}" for name, version in set(found))


def describe_missing(binary: str, library: str, provider_file: str, names: list[str], limit: int = 5) -> str:
    """The one wording of a failed proof, for `repair` and `check` alike."""
    shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
    return (
        f"{binary} imports {shown} from {library}, which {provider_file} does not export: "
        "that provider cannot stand in for it"
    )
