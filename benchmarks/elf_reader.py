"""What sharewheel's ELF reader costs against pyelftools (what auditwheel reads with) and lief.

    python benchmarks/elf_reader.py FILE.so [FILE.so ...] [--runs 3]

For each file, the median of `--runs` fresh reads (caches cleared) of:

- header: what the analysis asks of every file — DT_NEEDED, SONAME, RPATH/RUNPATH, the version
  needs, the ISA note, and "is it a Python extension" (a PyInit_ lookup). pyelftools: what
  auditwheel 6.8 does for one file (`elf_is_python_extension`, `elf_find_versioned_symbols`, the
  dynamic segment walk of `lddtree`, `_get_platform`, `get_undefined_symbols` for the blacklist);
  sharewheel: `readers.elf.read` plus `find_symbols` for the PyInit_ and blacklisted names.
- symbols: the whole dynamic symbol table with versions, what only the stand-in proof reads.
  pyelftools: sharewheel's former pyelftools reader's loop; lief: `lief.ELF.parse` and a pass
  over `dynamic_symbols` (only if lief is importable: `pip install lief`).

The numbers go to the docstring of src/sharewheel/readers/elf.py by hand.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from sharewheel import readers
from sharewheel.readers import elf


def timed(action: Callable[[], object], runs: int, clear: Callable[[], None] = lambda: None) -> float:
    times = []
    for _ in range(runs):
        clear()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sharewheel_header(path: Path) -> None:
    found = elf.read(path)
    assert found is not None
    module = path.name.split(".", 1)[0]
    elf.find_symbols(path, [f"PyInit_{module}", f"init{module}", f"_cffi_pypyinit_{module}", "_dist_code"])


def pyelftools_header(path: Path) -> None:
    from auditwheel.elfutils import elf_find_versioned_symbols, elf_is_python_extension, get_undefined_symbols
    from auditwheel.lddtree import _get_platform
    from elftools.elf.dynamic import DynamicSegment
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        parsed = ELFFile(f)
        _get_platform(parsed)
        for segment in parsed.iter_segments():
            if isinstance(segment, DynamicSegment):
                list(segment.iter_tags())
        list(elf_find_versioned_symbols(parsed))
        elf_is_python_extension(path, parsed)
    get_undefined_symbols(path)


def pyelftools_symbols(path: Path) -> None:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    with open(path, "rb") as f:
        for section in ELFFile(f).iter_sections():
            if isinstance(section, SymbolTableSection) and section["sh_type"] == "SHT_DYNSYM":
                for symbol in section.iter_symbols():
                    symbol.name, symbol["st_info"], symbol["st_shndx"], symbol["st_other"]


def lief_symbols(path: Path) -> None:
    import lief

    parsed = lief.ELF.parse(str(path))
    for symbol in parsed.dynamic_symbols:
        symbol.name, symbol.binding, symbol.symbol_version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    try:
        import lief  # noqa: F401

        have_lief = True
    except ImportError:
        have_lief = False

    def clear() -> None:
        readers.forget("/")

    print(f"{'file':<32} {'MB':>6} {'symbols':>8} | header: {'sw ms':>8} {'pyelf ms':>9} {'ratio':>7} | "
          f"symbols: {'sw ms':>8} {'pyelf ms':>9} {'lief ms':>8}")
    for path in args.files:
        path = path.resolve()
        count = sum(map(len, elf.symbols(path).imports.values())) + len(elf.symbols(path).exports)
        header_sw = timed(lambda: sharewheel_header(path), args.runs, clear)
        header_py = timed(lambda: pyelftools_header(path), args.runs)
        symbols_sw = timed(lambda: elf.symbols(path), args.runs, clear)
        symbols_py = timed(lambda: pyelftools_symbols(path), args.runs)
        symbols_lief = timed(lambda: lief_symbols(path), args.runs) if have_lief else float("nan")
        print(f"{path.name[:32]:<32} {path.stat().st_size / 1e6:>6.1f} {count:>8} | "
              f"{header_sw * 1e3:>14.2f} {header_py * 1e3:>9.0f} {header_py / header_sw:>7.0f} | "
              f"{symbols_sw * 1e3:>17.0f} {symbols_py * 1e3:>9.0f} {symbols_lief * 1e3:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
