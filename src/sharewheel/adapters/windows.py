"""Windows (PE) adapter: delvewheel vendors and mangles, sharewheel renames the provided imports.

Calls delvewheel internals (hence the pinned range in pyproject.toml), all of them here:
``_dll_utils.replace_needed`` renames import and delay-import entries (in section padding, or
in a new section — editing a name in place overwrites the next one), and
``_wheel_repair.WheelRepair`` vendors what no provider offers. WheelRepair reads and writes wheel
files itself, so the tree is zipped for it and its output unpacked back into the tree.

The Windows loader reuses an already-loaded module whose name matches an import table entry,
whatever directory it came from. So each import of a provided DLL (by its original or unique
name, case-insensitively) is renamed to the provider's unique name before delvewheel runs, and
delvewheel is told to leave those names alone; the provider's load() has loaded that DLL by full
path before the extension module is imported.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sharewheel.adapters import (
    BinaryInfo,
    NeededState,
    PrefixLibrary,
    RepairJob,
    RepairOutcome,
    scan_binaries,
)
from sharewheel.errors import SharewheelError
from sharewheel.symbols import SymbolTable, cached_by_file

MACHINE_TAGS = {0x8664: "win_amd64", 0x14C: "win32", 0xAA64: "win_arm64"}


def is_pe(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(0x40)
            if len(head) < 0x40 or head[:2] != b"MZ":
                return False
            f.seek(struct.unpack_from("<I", head, 0x3C)[0])
            return f.read(4) == b"PE\0\0"
    except (OSError, struct.error):
        return False


def _pe(path: Path, imports: bool = True, exports: bool = False) -> Any:
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
    pe = _pe(path)
    try:
        names = [e.dll.decode("ascii", "replace") for e in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])]
        names += [e.dll.decode("ascii", "replace") for e in getattr(pe, "DIRECTORY_ENTRY_DELAY_IMPORT", [])]
    finally:
        pe.close()
    return tuple(dict.fromkeys(names))


@cached_by_file
def pe_symbols(path: Path) -> SymbolTable:
    """Imports per DLL (by name, or `#ordinal`) and exports (names and `#ordinal`s)."""
    pe = _pe(path, exports=True)
    try:
        found: dict[str | None, set[tuple[str, str | None]]] = {}
        for entry in [*getattr(pe, "DIRECTORY_ENTRY_IMPORT", []), *getattr(pe, "DIRECTORY_ENTRY_DELAY_IMPORT", [])]:
            dll = entry.dll.decode("ascii", "replace")
            for imported in entry.imports:
                name = imported.name.decode("ascii", "replace") if imported.name else f"#{imported.ordinal}"
                found.setdefault(dll, set()).add((name, None))
        exported: set[str] = set()
        directory = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
        for symbol in directory.symbols if directory is not None else ():
            exported.add(f"#{symbol.ordinal}")
            if symbol.name:
                exported.add(symbol.name.decode("ascii", "replace"))
    finally:
        pe.close()
    return SymbolTable({k: frozenset(v) for k, v in found.items()}, {name: frozenset({None}) for name in exported})


def machine_tag(path: Path) -> str:
    pe = _pe(path, imports=False)
    try:
        machine = pe.FILE_HEADER.Machine
    finally:
        pe.close()
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


def _rename_imports(path: Path, mapping: dict[str, str]) -> None:
    from delvewheel._dll_utils import replace_needed

    present = [name for name in imports(path) if name in mapping]
    if not present:
        return
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            replace_needed(str(path), present, {name: mapping[name] for name in present}, False, False)
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

    def _check_machines(self, job: RepairJob) -> None:
        tags = {p for p in job.platforms if p in MACHINE_TAGS.values()}
        for binary in self.binaries(job.tree):
            tag = machine_tag(job.tree / binary)
            if tags and tag not in tags:
                raise SharewheelError(f"{binary}: built for {tag}, but the wheel is tagged {', '.join(sorted(tags))}")

    def repair(self, job: RepairJob) -> RepairOutcome:
        from delvewheel._wheel_repair import WheelRepair

        from sharewheel.wheelfile import InputWheel, write_wheel

        self._check_machines(job)
        for binary, mapping in sorted(job.relink.items()):
            _rename_imports(job.tree / binary, mapping)
        [dist_info] = [p.name for p in job.tree.glob("*.dist-info")]
        work = job.tree.parent / "delvewheel"
        staged = write_wheel(job.tree, dist_info, work / "in" / job.wheel.name)
        before = {p.relative_to(job.tree).as_posix() for p in job.tree.rglob("*") if p.is_file()}
        exclude = {name.lower() for name in (*job.provided, *job.exclude)}
        # a wheel without extension modules (a provider) is analysed from its DLLs
        analyze_dlls = not any(p.suffix.lower() == ".pyd" for p in job.tree.rglob("*"))
        log = io.StringIO()
        try:
            with _search_path(job.library_path), contextlib.redirect_stdout(log):
                repairer = WheelRepair(str(staged), str(work / "unpacked"), None, exclude, False, analyze_dlls, False)
                repairer.repair(str(work / "out"), set(), False, False, False, job.lib_sdir or ".libs", False,
                                set(), False, False, False)
        except (FileNotFoundError, RuntimeError, ValueError, NotImplementedError) as e:
            raise SharewheelError(f"delvewheel: {' '.join(str(e).split())}") from None
        outputs = list((work / "out").glob("*.whl"))
        if outputs:  # delvewheel copies nothing when there was nothing to vendor
            shutil.rmtree(job.tree)
            with InputWheel.open(outputs[0]) as repaired:
                repaired.extract(job.tree)
        after = {p.relative_to(job.tree).as_posix() for p in job.tree.rglob("*") if p.is_file()}
        vendored = tuple(sorted(p for p in after - before if p.lower().endswith(".dll")))
        for path in vendored:  # delvewheel keeps a zero checksum zero; make every edited file's valid
            _fix_checksum(job.tree / path)
        return RepairOutcome(tuple(job.platforms), vendored)

    def show(self, job: RepairJob) -> tuple[dict[str, list[NeededState]], tuple[str, ...]]:
        from delvewheel._dll_list import MachineType, ignore_regexes
        from delvewheel._dll_utils import _find_library_in_path

        self._check_machines(job)
        in_tree = {p.name.lower() for p in job.tree.rglob("*") if p.is_file()}
        report: dict[str, list[NeededState]] = {}
        with _search_path(job.library_path):
            for binary, info in self.binaries(job.tree).items():
                machine = MachineType.platform_tag_to_type(machine_tag(job.tree / binary))
                system = _system_names(machine)
                states = []
                for name in info.needed:
                    lower = name.lower()
                    if name in job.relink.get(binary, {}):
                        states.append(NeededState(name, "provided"))
                    elif lower in system or any(r.fullmatch(lower) for r in ignore_regexes):
                        states.append(NeededState(name, "policy"))
                    elif lower in in_tree:
                        states.append(NeededState(name, "vendored"))
                    elif (found := _find_library_in_path(lower, machine, False, False)) is not None:
                        states.append(NeededState(name, "external", found[0]))
                    else:
                        states.append(NeededState(name, "missing"))
                report[binary] = states
        return report, tuple(job.platforms)

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


def _system_names(machine: Any) -> set[str]:
    from delvewheel import _dll_list

    table = {"AMD64": "ignore_names_x64", "I386": "ignore_names_x86", "ARM64": "ignore_names_arm64"}
    return set(getattr(_dll_list, table.get(getattr(machine, "name", ""), "ignore_names_x64"), ()))
