"""Windows (PE) adapter: delvewheel vendors and mangles, sharewheel renames the provided imports.

delvewheel is reached through sharewheel.adapters._delvewheel only, delvewheel's one module in
sharewheel (its internals listed there, with the range in pyproject.toml they were checked
against): its ``replace_needed`` renames import and delay-import entries, and its
``WheelRepair`` vendors what no provider offers. WheelRepair reads and writes wheel files
itself, so the tree is zipped for it and its output unpacked back into the tree.

The Windows loader reuses an already-loaded module whose name matches an import table entry,
whatever directory it came from. So each import of a provided DLL (by its original or unique
name, case-insensitively) is renamed to the provider's unique name before delvewheel runs, and
delvewheel is told to leave those names alone; the provider's load() has loaded that DLL by full
path before the extension module is imported.

Reading (which DLLs a binary imports, its machine, its symbols) is sharewheel.readers.pe's; pefile
is used only where a file is edited. A DLL a binary imports that sits in the binary's own
directory is in the wheel: CPython loads extension modules with LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR,
so Windows finds it there (h5py ships hdf5.dll beside its modules). delvewheel looks for what
is not on PATH only in the whole wheel (--ignore-existing) or nowhere; it is told exactly those
names, with their files, where every importer of the name has it beside itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sharewheel import readers
from sharewheel.adapters import (
    BinaryInfo,
    NeededState,
    PrefixLibrary,
    RepairOutcome,
    _delvewheel,
    scan_binaries,
)
from sharewheel.errors import BinaryError, SharewheelError, ToolError
from sharewheel.readers.pe import is_pe, read_pe, symbol_table
from sharewheel.symbols import SymbolTable
from sharewheel.vendored import original_names

if TYPE_CHECKING:
    from sharewheel.plan import Plan

__all__ = ["MACHINE_TAGS", "WindowsAdapter", "imports", "is_pe", "machine_tag", "pe_symbols", "set_export_name"]

MACHINE_TAGS = {0x8664: "win_amd64", 0x14C: "win32", 0xAA64: "win_arm64"}


def _pe(path: Path, imports: bool = True, exports: bool = False) -> Any:
    """pefile's view of a file, for editing it."""
    import pefile

    data = path.read_bytes()
    try:
        pe = pefile.PE(data=data, fast_load=True)
        for section in pe.sections:
            if section.PointerToRawData + section.SizeOfRawData > len(data):
                name = section.Name.rstrip(b"\0").decode("ascii", "replace")
                raise ValueError(f"section {name} extends past the end of the file (truncated?)")
        wanted = [pefile.DIRECTORY_ENTRY[n] for n, on in (
            ("IMAGE_DIRECTORY_ENTRY_IMPORT", imports), ("IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT", imports),
            ("IMAGE_DIRECTORY_ENTRY_EXPORT", exports)) if on]
        pe.parse_data_directories(wanted)
    except (pefile.PEFormatError, struct.error, ValueError, IndexError) as e:
        raise SharewheelError(f"{path.name}: malformed PE file ({e})") from None
    return pe


def imports(path: Path) -> tuple[str, ...]:
    """The DLL names `path` imports, directly or delay-loaded, as its import tables spell them."""
    return read_pe(path).imports


def pe_symbols(path: Path) -> SymbolTable:
    """Imports per DLL (by name, or `#ordinal`) and exports (names and `#ordinal`s)."""
    return symbol_table(path)


def machine_tag(path: Path) -> str:
    machine = read_pe(path).machine
    if machine not in MACHINE_TAGS:
        raise SharewheelError(f"{path.name}: PE machine type {machine:#x} is not one wheels can tag")
    return MACHINE_TAGS[machine]


def _fix_checksum(path: Path) -> None:
    """Windows checks the checksum of drivers only, but tools compare it: keep it valid."""
    pe = _pe(path, imports=False)
    try:
        pe.OPTIONAL_HEADER.CheckSum = pe.generate_checksum()
        data = pe.write()
    finally:
        pe.close()
    path.write_bytes(data)
    readers.forget(path)  # every edit ends here: the file's cached reading is stale


def _rename_imports(path: Path, mapping: dict[str, str]) -> None:
    present = [name for name in imports(path) if name in mapping]
    if not present:
        return
    try:
        _delvewheel.rename_imports(path, present, {name: mapping[name] for name in present})
    except RuntimeError as e:
        raise SharewheelError(f"{path.name}: cannot rename its imports ({' '.join(str(e).split())})") from None
    _fix_checksum(path)


def set_export_name(path: Path, name: str) -> None:
    """Point the export directory's DLL name at `name`, written into section padding if it is longer."""
    pe = _pe(path, imports=False, exports=True)
    try:
        exports = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
        if exports is None:
            raise SharewheelError(f"{path.name}: exports nothing, so it is not a library to pack")
        data = name.encode("ascii") + b"\0"
        old_rva = exports.struct.Name
        old = pe.get_string_at_rva(old_rva) or b""
        if len(data) <= len(old) + 1:
            pe.set_bytes_at_rva(old_rva, data + bytes(len(old) + 1 - len(data)))
        else:
            section = pe.get_section_by_rva(old_rva)
            later = [s.VirtualAddress for s in pe.sections if s.VirtualAddress > section.VirtualAddress]
            rva = section.VirtualAddress + section.Misc_VirtualSize
            fits_file = section.Misc_VirtualSize + len(data) <= section.SizeOfRawData
            fits_memory = not later or rva + len(data) <= min(later)
            if not (fits_file and fits_memory):
                raise SharewheelError(f"{path.name}: no room in its sections for the export name {name}")
            pe.set_bytes_at_offset(section.PointerToRawData + section.Misc_VirtualSize, data)
            section.Misc_VirtualSize += len(data)
            exports.struct.Name = rva
        pe.OPTIONAL_HEADER.CheckSum = 0
        out = pe.write()
    finally:
        pe.close()
    path.write_bytes(out)
    _fix_checksum(path)


@contextlib.contextmanager
def _search_path(first: tuple[Path, ...]) -> Iterator[None]:
    """delvewheel finds DLLs on PATH (its --add-path prepends there)."""
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([*map(str, first), saved])
    try:
        yield
    finally:
        os.environ["PATH"] = saved


class WindowsAdapter:
    os = "windows"

    def binaries(self, tree: Path) -> dict[str, BinaryInfo]:
        def read(path: Path) -> BinaryInfo | None:
            return BinaryInfo(imports(path), path.suffix.lower() == ".pyd") if is_pe(path) else None

        return scan_binaries(tree, read, (".pyd", ".dll"), "PE")

    def _check_machines(self, plan: Plan, tree: Path) -> None:
        tags = {p for p in plan.platforms if p in MACHINE_TAGS.values()}
        for binary in self.binaries(tree):
            tag = machine_tag(tree / binary)
            if tags and tag not in tags:
                raise BinaryError(f"{binary}: built for {tag}, but the wheel is tagged {', '.join(sorted(tags))}")

    def repair(self, plan: Plan, tree: Path) -> RepairOutcome:
        from sharewheel.wheelfile import InputWheel, write_wheel

        self._check_machines(plan, tree)
        needs = self._needs(plan, tree)
        if plan.options.tolerate_missing and any(n.state == "missing" for ns in needs.values() for n in ns):
            return RepairOutcome(plan.platforms, needs=needs)  # show: report, vendor nothing
        for binary, mapping in sorted(plan.relink.items()):
            _rename_imports(tree / binary, mapping)
        work = tree.parent / "delvewheel"
        staged = write_wheel(tree, plan.dist_info, work / "in" / plan.source.name)
        before = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
        exclude = {name.lower() for name in (*plan.provided, *plan.exclude)}
        # a wheel without extension modules (a provider) is analysed from its DLLs
        analyze_dlls = not any(p.suffix.lower() == ".pyd" for p in tree.rglob("*"))
        unpacked = work / "unpacked"
        beside = {name: [str(unpacked / path) for path in paths]
                  for name, paths in _beside(tree, self.binaries(tree)).items()}
        log = io.StringIO()
        try:
            with _search_path(plan.options.library_path), contextlib.redirect_stdout(log):
                _delvewheel.repair_wheel(staged, unpacked, work / "out", exclude, beside, analyze_dlls,
                                         plan.options.lib_sdir or ".libs")
        except (FileNotFoundError, RuntimeError, ValueError, NotImplementedError) as e:
            refusal = f"delvewheel: {' '.join(str(e).split())}"
            if plan.options.tolerate_missing:  # show: what repair would say, with the needs it saw
                return RepairOutcome(plan.platforms, needs=needs, refusal=refusal)
            raise ToolError(refusal) from None
        outputs = list((work / "out").glob("*.whl"))
        if outputs:  # delvewheel copies nothing when there was nothing to vendor
            shutil.rmtree(tree)
            readers.forget(tree)
            with InputWheel.open(outputs[0]) as repaired:
                repaired.extract(tree)
        after = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
        vendored = tuple(sorted(p for p in after - before if p.lower().endswith(".dll")))
        for path in vendored:  # delvewheel keeps a zero checksum zero; make every edited file's valid
            _fix_checksum(tree / path)
        found = {n.name.lower(): n.path for states in needs.values() for n in states if n.state == "external" and n.path}
        sources = {path: found[original.lower()] for path in vendored
                   for original in original_names(posixpath.basename(path)) if original.lower() in found}
        return RepairOutcome(plan.platforms, vendored, needs=needs, sources=sources)

    def _needs(self, plan: Plan, tree: Path) -> dict[str, tuple[NeededState, ...]]:
        """Each binary's DLLs as delvewheel would treat them, and those its external DLLs need
        in turn (delvewheel vendors those too)."""
        binaries = self.binaries(tree)
        in_tree = {p.name.lower() for p in tree.rglob("*") if p.is_file()}
        shared = set(_beside(tree, binaries))  # what delvewheel is told is in the wheel
        excluded = _delvewheel.excluded_by_tags(plan.source.name)
        never = {name.lower() for name in plan.exclude}
        report: dict[str, tuple[NeededState, ...]] = {}
        with _search_path(plan.options.library_path):
            for binary, info in binaries.items():
                path = tree / binary
                machine = _delvewheel.machine_type(machine_tag(path))
                system = _delvewheel.system_names(machine) | excluded
                states = []
                for name in info.needed:
                    lower = name.lower()
                    if name in plan.relink.get(binary, {}):
                        states.append(NeededState(name, "provided"))
                    elif _delvewheel.is_system(lower, path.name, system):
                        states.append(NeededState(name, "policy"))
                    elif lower in in_tree:  # beside it (Windows loads it from there), or where a tool put it
                        states.append(NeededState(name, "vendored"))
                    elif (found := _delvewheel.find_library(lower, machine)) is not None:
                        states.append(NeededState(name, "external", found))
                    else:
                        states.append(NeededState(name, "missing"))
                listed = {state.name.lower() for state in states}
                queue = [Path(state.path) for state in states if state.state == "external" and state.path]
                while queue:  # as delvewheel follows an external DLL's imports
                    dll = queue.pop(0)
                    for name in imports(dll):
                        lower = name.lower()
                        if lower in listed or lower in shared or _delvewheel.is_system(lower, dll.name, system) \
                                or _delvewheel.matches(lower, never):
                            continue
                        listed.add(lower)
                        if (found := _delvewheel.find_library(lower, machine)) is not None:
                            states.append(NeededState(name, "external", found))
                            queue.append(Path(found))
                        else:
                            states.append(NeededState(name, "missing"))
                report[binary] = tuple(states)
        return report

    def prefix_libraries(self, prefix: Path) -> list[PrefixLibrary]:
        found = []
        for lib_dir in (prefix / "bin", prefix / "lib"):
            for path in sorted(lib_dir.glob("*.dll")) if lib_dir.is_dir() else ():
                if path.is_file() and is_pe(path):
                    found.append(PrefixLibrary(path.resolve(), path.name, imports(path)))
        return found

    def describe(self, path: Path) -> PrefixLibrary | None:
        return PrefixLibrary(path, path.name, imports(path)) if is_pe(path) else None

    def symbols(self, path: Path) -> SymbolTable:
        return pe_symbols(path)

    def resolve(self, tree: Path, binary: str, search: tuple[Path, ...] = ()) -> dict[str, Path]:
        return {}  # import tables bind every import to its DLL: nothing to resolve

    def install_library(self, library: PrefixLibrary, dest: Path, relink: dict[str, str]) -> None:
        shutil.copyfile(library.path, dest)
        set_export_name(dest, dest.name)
        _rename_imports(dest, {name: relink[name] for name in library.needed if name in relink})

    def link_aids(self, lib_dir: Path, unique: str, original: str) -> list[Path]:
        return []  # consumers link with the prefix's import library; repair renames the import

    def platform_tag(self, path: Path) -> str:
        return machine_tag(path)


def _beside(tree: Path, binaries: dict[str, BinaryInfo]) -> dict[str, list[str]]:
    """The DLL names every importer in the tree finds in its own directory, with those files
    (tree-relative): Windows loads them from there (LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR, which
    CPython uses for extension modules; a DLL loaded so finds its own imports beside it too). A
    file of another machine type is no match, as for the loader."""
    found: dict[str, dict[str, None]] = {}
    elsewhere: set[str] = set()
    listings: dict[Path, dict[str, Path]] = {}
    for binary, info in binaries.items():
        path = tree / binary
        directory = path.parent
        if directory not in listings:
            listings[directory] = {p.name.lower(): p for p in directory.iterdir() if p.is_file()}
        for name in info.needed:
            lower = name.lower()
            match = listings[directory].get(lower)
            if match is not None and is_pe(match) and read_pe(match).machine == read_pe(path).machine:
                found.setdefault(lower, {})[match.relative_to(tree).as_posix()] = None
            else:
                elsewhere.add(lower)
    return {name: list(files) for name, files in sorted(found.items()) if name not in elsewhere}
