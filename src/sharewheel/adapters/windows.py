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

`delvewheel repair`'s flags (sharewheel.toolflags.DelvewheelFlags) are handed to WheelRepair as
its command line hands them, so each keeps delvewheel's meaning; sharewheel adds the provided
names to --no-dll's, and --strip also lets its own renaming strip an overlay. delvewheel's patch
(adding the vendored DLLs' directory to the DLL search path) goes where delvewheel puts it: after
the docstring, into a namespace package's modules (--namespace-pkg), or at each
`# delvewheel: patch` line (--custom-patch). sharewheel's hook block is inserted afterwards,
after the docstring and `from __future__` imports, so it comes before a default patch and never
between its markers: providers are loaded by full path first. The order does not matter to the
loader (the patch only adds a directory, neither imports an extension module), but it is fixed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import os
import posixpath
import shutil
import struct
import sys
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
from sharewheel.toolflags import split_dlls
from sharewheel.vendored import original_names

if TYPE_CHECKING:
    from sharewheel.plan import Plan

__all__ = ["MACHINE_TAGS", "WindowsAdapter", "imports", "is_pe", "machine_tag", "pe_symbols", "rename_imports",
           "set_export_name"]

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


def _rename_imports(path: Path, mapping: dict[str, str], strip: bool = False) -> None:
    present = [name for name in imports(path) if name in mapping]
    if not present:
        return
    try:
        _delvewheel.rename_imports(path, present, {name: mapping[name] for name in present}, strip=strip)
    except (RuntimeError, FileNotFoundError) as e:
        raise SharewheelError(f"{path.name}: cannot rename its imports ({' '.join(str(e).split())})") from None
    _fix_checksum(path)


def rename_imports(path: Path, mapping: dict[str, str]) -> None:
    """Rename the import (and delay-import) entries of `path` found in `mapping`, checksum kept valid."""
    _rename_imports(path, mapping)


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

        flags = plan.options.tools.windows
        if flags.with_mangle and not flags.ignore_existing:
            raise ToolError("delvewheel: --with-mangle requires --ignore-existing")
        include = {name.strip().lower() for name in flags.include if name.strip()}
        _check_include(include, _never(plan, user=True))
        self._check_machines(plan, tree)
        needs = self._needs(plan, tree)
        if plan.options.tolerate_missing and any(n.state == "missing" for ns in needs.values() for n in ns):
            return RepairOutcome(plan.platforms, needs=needs)  # show: report, vendor nothing
        for binary, mapping in sorted(plan.relink.items()):
            _rename_imports(tree / binary, mapping, strip=flags.strip)
        work = tree.parent / "delvewheel"
        staged = write_wheel(tree, plan.dist_info, work / "in" / plan.source.name)
        before = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
        unpacked = work / "unpacked"
        # what Windows finds beside its importer is in the wheel; --ignore-existing: all the wheel holds
        beside = {name: [str(unpacked / path) for path in paths]
                  for name, paths in _beside(tree, self.binaries(tree)).items()}
        settings = _delvewheel.Repair(
            # --include of a DLL a provider offers: linked, as every provided DLL, not also vendored
            lib_sdir=plan.options.lib_sdir or ".libs", include=frozenset(include - _provided(plan)),
            exclude=frozenset(_never(plan)),
            ignore_existing=flags.ignore_existing, in_wheel=beside if beside and not flags.ignore_existing else None,
            # a wheel without extension modules (a provider) is analysed from its DLLs
            analyze_existing=flags.analyze_existing or not any(p.suffix.lower() == ".pyd" for p in tree.rglob("*")),
            analyze_existing_exes=flags.analyze_existing_exes,
            no_mangles=frozenset(name.strip().lower() for name in flags.no_mangle if name.strip()),
            no_mangle_all=flags.no_mangle_all, with_mangle=flags.with_mangle, strip=flags.strip,
            namespace_pkgs=frozenset(tuple(p.strip().split(".")) for p in flags.namespace_pkg if p.strip()),
            include_symbols=flags.include_symbols, include_imports=flags.include_imports,
            custom_patch=flags.custom_patch,
        )
        log = io.StringIO()
        try:
            with _search_path(_search_dirs(plan)), contextlib.redirect_stdout(log):
                warned = _delvewheel.repair_wheel(staged, unpacked, work / "out", settings)
        except (FileNotFoundError, RuntimeError, ValueError, NotImplementedError) as e:
            refusal = f"delvewheel: {' '.join(str(e).split())}"
            if plan.options.tolerate_missing:  # show: what repair would say, with the needs it saw
                return RepairOutcome(plan.platforms, needs=needs, refusal=refusal)
            raise ToolError(refusal) from None
        for message in warned:
            print(f"sharewheel: {plan.source.name}: delvewheel: warning: {message}", file=sys.stderr)
        outputs = list((work / "out").glob("*.whl"))
        if outputs:  # delvewheel copies nothing when there was nothing to vendor
            shutil.rmtree(tree)
            readers.forget(tree)
            with InputWheel.open(outputs[0]) as repaired:
                repaired.extract(tree)
        after = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
        # the DLLs, and with --include-symbols/--include-imports the .pdb/.lib files beside them
        vendored = tuple(sorted(p for p in after - before if p.lower().endswith((".dll", ".pdb", ".lib"))))
        for path in vendored:  # delvewheel keeps a zero checksum zero; make every edited file's valid
            if path.lower().endswith(".dll"):
                _fix_checksum(tree / path)
        return RepairOutcome(plan.platforms, vendored, needs=needs, sources=_sources(plan, tree, vendored, needs))

    def _needs(self, plan: Plan, tree: Path) -> dict[str, tuple[NeededState, ...]]:
        """Each binary's DLLs as delvewheel would treat them, and those its external DLLs need
        in turn (delvewheel vendors those too); with --analyze-existing-exes its EXEs' too."""
        flags = plan.options.tools.windows
        binaries = self.binaries(tree)
        if flags.analyze_existing_exes:
            binaries |= {p.relative_to(tree).as_posix(): BinaryInfo(imports(p), False)
                         for p in sorted(tree.rglob("*")) if p.suffix.lower() == ".exe" and p.is_file() and is_pe(p)}
        in_tree = {p.name.lower() for p in tree.rglob("*") if p.is_file()}
        # what delvewheel is told is in the wheel: with --ignore-existing every file, else those beside
        shared = in_tree if flags.ignore_existing else set(_beside(tree, binaries))
        excluded = _delvewheel.excluded_by_tags(plan.source.name)
        never = _never(plan)
        include = {name.strip().lower() for name in flags.include}
        report: dict[str, tuple[NeededState, ...]] = {}
        with _search_path(_search_dirs(plan)):
            for binary, info in binaries.items():
                path = tree / binary
                machine = _delvewheel.machine_type(machine_tag(path))
                system = _delvewheel.system_names(machine) | excluded
                states = []
                for name in info.needed:
                    lower = name.lower()
                    if name in plan.relink.get(binary, {}):
                        states.append(NeededState(name, "provided"))
                    elif lower in include:  # --include: copied from PATH whatever else is true of it
                        found = _delvewheel.find_library(lower, machine)
                        states.append(NeededState(name, "external", found) if found else NeededState(name, "missing"))
                    elif _delvewheel.is_system(lower, path.name, system) or _delvewheel.matches(lower, never):
                        states.append(NeededState(name, "policy"))  # (delvewheel: "assumed to be present")
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


def _search_dirs(plan: Plan) -> tuple[Path, ...]:
    """Where DLLs are looked for before PATH: --add-path's directories (absolute, as delvewheel
    makes them), then the plan's library path."""
    return (*(Path(os.path.abspath(p)) for p in plan.options.tools.windows.add_path), *plan.options.library_path)


def _never(plan: Plan, *, user: bool = False) -> set[str]:
    """The DLL names and patterns never vendored, lowercase as delvewheel matches them: --no-dll
    (delvewheel's --exclude) and --exclude, its ':'-separated lists split as delvewheel splits
    them, and (unless `user`: only what the user excluded) the names providers offer, also the
    unique names a set's carrier (sharewheel.sets) relinks its own binaries to: in the wheel, not beside them."""
    excluded = plan.options.exclude if user else (
        *plan.exclude, *plan.provided, *(unique for mapping in plan.relink.values() for unique in mapping.values()))
    return {name.strip().lower() for name in (*split_dlls(tuple(excluded)), *plan.options.tools.windows.no_dll)
            if name.strip()}


def _provided(plan: Plan) -> set[str]:
    """The DLL names providers stand in for (imported names and unique names), lowercase."""
    return {name.lower() for name in (*plan.provided, *(n for mapping in plan.relink.values() for n in mapping))}


def _check_include(include: set[str], never: set[str]) -> None:
    """delvewheel's refusal to both include and exclude a DLL."""
    if both := include & never:
        raise ToolError(f"delvewheel: Cannot force both inclusion and exclusion of {both}")
    for pattern in (p for p in never if "*" in p):
        for name in sorted(include):
            if fnmatch.fnmatch(name, pattern):
                raise ToolError(f"delvewheel: Cannot force inclusion of {name} if {pattern} is excluded")


def _sources(plan: Plan, tree: Path, vendored: tuple[str, ...],
             needs: dict[str, tuple[NeededState, ...]]) -> dict[str, str]:
    """The file each vendored copy came from: a DLL's from the needs (or, --include, from where
    delvewheel finds it), a .pdb or .lib from beside its DLL's (delvewheel copies them by name)."""
    found = {n.name.lower(): n.path for states in needs.values() for n in states if n.state == "external" and n.path}
    include = {name.strip().lower() for name in plan.options.tools.windows.include}
    sources: dict[str, str] = {}
    directories: dict[str, Path] = {}  # a DLL's original stem → where it came from
    with _search_path(_search_dirs(plan)):
        for path in (p for p in vendored if p.lower().endswith(".dll")):
            for original in (o.lower() for o in original_names(posixpath.basename(path))):
                if original not in found and original in include:
                    found[original] = _delvewheel.find_library(original, _delvewheel.machine_type(machine_tag(tree / path)))
                if found.get(original):
                    sources[path] = found[original]
                    directories[Path(original).stem] = Path(found[original]).parent
                    break
    for path in (p for p in vendored if not p.lower().endswith(".dll")):
        name = posixpath.basename(path)
        directory = directories.get(Path(name).stem.lower())
        if directory is not None and (directory / name).is_file():
            sources[path] = str(directory / name)
    return sources


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
