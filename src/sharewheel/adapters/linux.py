"""Linux (ELF) adapter: auditwheel decides and vendors, patchelf edits, sharewheel relinks.

auditwheel is reached through sharewheel.adapters.manylinux only, auditwheel's one module in
sharewheel (its names listed there, with the range in pyproject.toml they were checked
against): its policies decide the platform tag and what is external (fed by sharewheel's ELF
reader, see there), and the helpers auditwheel's ``repair_wheel`` is made of (``copylib``,
``append_rpath_within_wheel``) vendor with its ``ElfPatcher``. ``repair_wheel`` itself cannot
be called: it unpacks and re-zips the wheel on its own, whereas sharewheel edits one tree that
also receives the runtime hook, the metadata and the manifest, and writes it once.
The provided names are passed to auditwheel as excludes, so it neither looks them up nor
vendors them; sharewheel then points them at the provider's unique soname.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sharewheel import readers
from sharewheel.adapters import (
    BinaryInfo,
    NeededState,
    PrefixLibrary,
    RepairOutcome,
    manylinux,
    scan_binaries,
)
from sharewheel.errors import BinaryError, ConfigError, InputWheelError, SharewheelError, ToolError
from sharewheel.naming import link_name
from sharewheel.readers import elf as elf_reader
from sharewheel.sbom import sbom_dir
from sharewheel.symbols import SymbolTable

if TYPE_CHECKING:
    from sharewheel.plan import Plan


@contextmanager
def _inside(path: Path) -> Iterator[None]:
    """auditwheel's helpers take paths relative to the wheel root, as cwd."""
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _read_elf(path: Path) -> tuple[tuple[str, ...], str | None, bool] | None:
    """(DT_NEEDED, DT_SONAME, is a Python extension) of an ELF file, None if it is not one."""
    elf = elf_reader.read(path)
    if elf is None:
        return None
    return elf.needed, elf.soname, manylinux.is_python_extension(path)[0]


#: GNU ld scripts are small text files; a larger or binary file named .so is no script.
_LD_SCRIPT_MAX = 64 * 1024
_LD_SCRIPT_COMMAND = re.compile(rb"\b(?:INPUT|GROUP|AS_NEEDED|OUTPUT_FORMAT|OUTPUT_ARCH|SEARCH_DIR)\s*\(")


def is_ld_script(path: Path) -> bool:
    """Whether `path` is a GNU ld script (`INPUT(libfoo.so.3)`, as glibc's libc.so and
    sharewheel's link aids are): text naming what `-lfoo` links, which the loader never reads."""
    with open(path, "rb") as f:
        head = f.read(_LD_SCRIPT_MAX + 1)
    if len(head) > _LD_SCRIPT_MAX or b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return _LD_SCRIPT_COMMAND.search(head) is not None


def elf_symbols(path: Path) -> SymbolTable:
    """Imports (by version file, or unbound) and exports of an ELF file's dynamic symbol table."""
    return elf_reader.symbols(path)


def _elf_arch(path: Path) -> str | None:
    """The baseline architecture an ELF file is built for (auditwheel's names), None if unknown."""
    elf = elf_reader.read(path)
    if elf is None:
        return None
    try:
        return manylinux.platform(elf).baseline_architecture.value
    except ValueError:
        return None


@dataclass(frozen=True)
class _Analysis:
    abi: Any  # auditwheel.wheel_abi.WheelAbIInfo
    policy: Any  # the auditwheel Policy whose external references get vendored
    platforms: tuple[str, ...]


class LinuxAdapter:
    os = "linux"

    def __init__(self) -> None:
        self._resolved: dict[tuple[Path, tuple[Path, ...]], dict[Path, Any]] = {}

    def binaries(self, tree: Path) -> dict[str, BinaryInfo]:
        def read(path: Path) -> BinaryInfo | None:
            elf = _read_elf(path)
            return None if elf is None else BinaryInfo(elf[0], elf[2])

        # a wheel may hold GNU ld scripts named lib*.so (ours do): text, not a broken binary
        return scan_binaries(tree, read, (".so",), "ELF", other=is_ld_script)

    def _analyze(self, plan: Plan, tree: Path) -> _Analysis:
        arch = manylinux.wheel_architecture(plan.source.name)
        libc = manylinux.wheel_libc(plan.source.name)
        if libc is None:
            libc = manylinux.libc_of(self.binaries(tree))
        if arch is not None:  # auditwheel would only warn, then fail without naming the file
            for binary in self.binaries(tree):
                built = _elf_arch(tree / binary)
                if built is not None and built != arch.baseline.value:
                    raise BinaryError(f"{binary}: built for {built}, but the wheel is tagged {', '.join(plan.platforms)}")
        flags = plan.options.tools.linux
        plat_base = plan.options.plat
        if arch is not None and plat_base.endswith(f"_{arch.value}"):
            plat_base = plat_base[: -len(arch.value) - 1]
        try:
            with manylinux.refusals(plan.source.name):
                abi = manylinux.analyze_wheel_abi(
                    tree=tree,
                    files=_files(tree),
                    wheel_fn=plan.source,
                    libc=libc,
                    architecture=arch,
                    exclude=plan.exclude,
                    disable_isa_ext_check=flags.disable_isa_ext_check,
                    allow_graft=True,
                    requested_policy_base_name=plat_base,
                    args_ldpaths=manylinux.ld_paths_arg(plan.options.library_path, libc, flags.ldpaths),
                )
        except RuntimeError as e:  # shared libraries in purelib
            raise InputWheelError(f"{plan.source.name}: {' '.join(str(e).split())}") from None
        except (ValueError, KeyError, IndexError, AssertionError, OSError) as e:  # pyelftools on a blacklist check
            raise BinaryError(f"{plan.source.name}: an ELF file auditwheel cannot read ({type(e).__name__}: {e})") from None

        policies = abi.policies
        overall = abi.overall_policy
        floor = _provider_floor(policies, plan.provider_platforms)
        if floor is not None and overall > floor:
            overall = floor  # a consumer is only installable where its providers are
        if plat_base == "auto":
            policy = policies.lowest if overall == policies.linux else overall
        else:
            try:
                policy = policies.get_policy_by_name(f"{plat_base}_{policies.architecture.value}")
            except LookupError:
                raise ConfigError(
                    f"--plat {plan.options.plat}: not a platform tag auditwheel knows for {policies.architecture.value} "
                    f"{libc} binaries"
                ) from None
            if floor is not None and policy > floor:
                raise ConfigError(
                    f"--plat {plan.options.plat}: older than {floor.name}, the oldest platform its providers' wheels support"
                )
        limits = (
            (abi.sym_policy, "it uses too-recent versioned symbols (build on an older toolchain)"),
            (abi.ucs_policy, "it was built against a UCS2 Python"),
            (abi.blacklist_policy, "it depends on black-listed symbols"),
            (abi.machine_policy, "it depends on unsupported ISA extensions"),
        )
        for limit, why in limits:
            if policy > limit:
                if why.endswith("ISA extensions"):
                    needs = manylinux.isa_needs(tree, sorted(self.binaries(tree)), policies.architecture)
                    why += f" ({'; '.join(needs)}; --disable-isa-ext-check skips this check)" if needs else ""
                raise ToolError(f"{plan.source.name}: cannot repair to {policy.name} because {why}")
        abis = [policy.name, *policy.aliases]
        if policy < overall and not flags.only_plat:  # --only-plat: --plat's policy only
            abis = [overall.name, *overall.aliases, *abis]
        if flags.update_tags:
            replaced = set(manylinux.replace_platforms(abis[0]))
            # (an audited wheel's older tags go too where its providers' wheels are newer: a
            # re-repair keeps them otherwise, as auditwheel does, promising what pip cannot install)
            platforms = [p for p in plan.platforms if p not in replaced and not _older_than(policies, p, floor)]
            platforms = list(dict.fromkeys([*platforms, *abis]))
        else:  # --no-update-tags: vendored for abis[0]'s policy, tagged as it came
            platforms = list(plan.platforms)
        return _Analysis(abi, policies.get_policy_by_name(abis[0]), tuple(platforms))

    def repair(self, plan: Plan, tree: Path) -> RepairOutcome:
        analysis = self._analyze(plan, tree)
        needs = self._needs(plan, tree, analysis)
        flags = plan.options.tools.linux
        patcher = manylinux.elf_patcher(analysis.policy.name, flags.patcher)
        dest_dir = Path(plan.distribution + (plan.options.lib_sdir or ".libs"))
        grafted: dict[str, tuple[str, Path]] = {}
        moved: dict[str, Path] = {}  # .data/scripts executables moved behind auditwheel's shim
        sources: list[Path] = []
        copied: dict[str, Path] = {}  # soname → the file vendored under it
        with _inside(tree), manylinux.patching(flags.patcher):
            # Vendoring, as auditwheel.repair.repair_wheel does it.
            for binary, refs in sorted(analysis.abi.full_external_refs.items()):
                external = refs[analysis.policy.name].libs
                replacements = []
                for soname, source in sorted(external.items()):
                    if manylinux.is_libpython(soname):
                        patcher.remove_needed(binary, soname)
                        continue
                    if source is None:
                        if plan.options.tolerate_missing:  # show: reported as missing, nothing to copy
                            continue
                        raise ToolError(
                            f"{plan.source.name}: {binary.as_posix()} needs {soname}, which no provider "
                            "offers and which was not found (add its directory to LD_LIBRARY_PATH, "
                            "or give its provider with --provider)"
                        )
                    dest_dir.mkdir(exist_ok=True)
                    sources.append(source)
                    copied[soname] = source
                    grafted[soname] = manylinux.copy_library(source, dest_dir, patcher)
                    replacements.append((soname, grafted[soname][0]))
                if replacements:
                    patcher.replace_needed(binary, *replacements)
                if external:
                    if manylinux.is_script(binary):  # executables move to platlib behind a shim
                        moved[binary.as_posix()] = manylinux.shim_script(plan.distribution, binary)
                        patcher.update_elf_path(binary, moved[binary.as_posix()])
                    target = moved.get(binary.as_posix(), binary)
                    libs_rpath = Path("$ORIGIN") / os.path.relpath(dest_dir, target.parent)
                    manylinux.append_rpath(target, str(libs_rpath), tree, patcher)
            for _, path in grafted.values():
                needed = _read_elf(path)
                inner = [(n, grafted[n][0]) for n in (needed[0] if needed else ()) if n in grafted]
                if inner:
                    patcher.set_rpath(path, "$ORIGIN")
                    patcher.replace_needed(path, *inner)
                else:
                    patcher.clear_rpath(path)
            # Relinking to providers, with an $ORIGIN fallback for the one-site-packages case.
            for binary, mapping in sorted(plan.relink.items()):
                path = moved.get(binary, Path(binary))
                pairs = [(old, new) for old, new in sorted(mapping.items()) if old != new]
                if pairs:
                    patcher.replace_needed(path, *pairs)
                fallbacks = [
                    "$ORIGIN/" + posixpath.relpath(d, path.parent.as_posix())
                    for d in plan.fallback_dirs.get(binary, ())
                ]
                current = patcher.get_rpath(path)
                kept = [r for r in current.split(":") if _inside_tree(r, path, tree)]
                rpath = ":".join(dict.fromkeys([*kept, *sorted(fallbacks)]))
                if rpath != current:  # patchelf rewrites the file even for an equal value
                    patcher.set_rpath(path, rpath)
            if flags.strip:  # as auditwheel: before patching (auditwheel#716), every ELF file it analysed
                binaries = [moved.get(b.as_posix(), b) for b in sorted(analysis.abi.full_external_refs)]
                manylinux.strip_symbols([*(p for _, p in sorted(grafted.values())), *binaries])
            patcher.apply_updates()
            readers.forget(tree)
            _write_sbom(plan, tree, analysis.platforms, [source for source in sources if source is not None])
        vendored = tuple(sorted(p.as_posix() for _, p in grafted.values()))
        return RepairOutcome(analysis.platforms, vendored, {old: new.as_posix() for old, new in moved.items()}, needs,
                             {grafted[soname][1].as_posix(): str(source) for soname, source in copied.items()})

    def _needs(self, plan: Plan, tree: Path, analysis: _Analysis) -> dict[str, tuple[NeededState, ...]]:
        """Each binary's needed libraries as auditwheel's policy judges them, before vendoring."""
        whitelist = analysis.policy.whitelist
        report: dict[str, tuple[NeededState, ...]] = {}
        for binary, info in self.binaries(tree).items():
            refs = analysis.abi.full_external_refs.get(Path(binary), {})
            external = refs[analysis.policy.name].libs if refs else {}
            states = []
            for name in info.needed:
                if name in plan.relink.get(binary, {}):
                    states.append(NeededState(name, "provided"))
                elif name in whitelist or "ld-linux" in name or name.startswith(("ld64.so",)):
                    states.append(NeededState(name, "policy"))
                elif name in external:
                    found = external[name]
                    states.append(NeededState(name, "missing" if found is None else "external", str(found) if found else None))
                else:
                    states.append(NeededState(name, "vendored"))
            for name, found in sorted(external.items()):
                if name not in info.needed:  # needed through an external library
                    states.append(NeededState(name, "missing" if found is None else "external", str(found) if found else None))
            report[binary] = tuple(states)
        return report

    def prefix_libraries(self, prefix: Path) -> list[PrefixLibrary]:
        by_file: dict[Path, PrefixLibrary] = {}
        for lib_dir in (prefix / "lib", prefix / "lib64"):
            for path in sorted(lib_dir.glob("*.so*")) if lib_dir.is_dir() else ():
                real = path.resolve()
                if real in by_file or not real.is_file():
                    continue
                elf = _read_elf(real)
                if elf is None or ".so" not in real.name:
                    continue  # GNU ld scripts and other non-ELF files named .so
                needed, soname, _ = elf
                by_file[real] = PrefixLibrary(real, soname or real.name, needed)
        return sorted(by_file.values(), key=lambda lib: lib.name)

    def describe(self, path: Path) -> PrefixLibrary | None:
        elf = _read_elf(path)
        return None if elf is None else PrefixLibrary(path, elf[1] or path.name, elf[0])

    def symbols(self, path: Path) -> SymbolTable:
        return elf_symbols(path)

    def resolve(self, tree: Path, binary: str, search: tuple[Path, ...] = ()) -> dict[str, Path]:
        """The libraries `binary` loads (direct and indirect) that auditwheel's search finds,
        `search` first (pack's PREFIX/lib), from the roots that load it: a vendored library
        without RPATH finds its neighbours through the RPATH of the extension loading it."""
        libc = manylinux.libc_of(self.binaries(tree))
        ldpaths = manylinux.ld_paths_arg(search, libc)
        try:
            found = manylinux.ldd(tree / binary, ldpaths=manylinux.search_paths(ldpaths))
            if any(lib.realpath is None for lib in found.libraries.values()):  # look from its loaders
                key = (tree, search)
                if key not in self._resolved:
                    self._resolved[key] = manylinux.dependency_trees(tree, _files(tree), libc, ldpaths)
                found = self._resolved[key].get(Path(binary), found)
        except (SharewheelError, ValueError, OSError):
            return {}
        return {name: Path(lib.realpath) for name, lib in found.libraries.items() if lib.realpath}

    def install_library(self, library: PrefixLibrary, dest: Path, relink: dict[str, str]) -> None:
        shutil.copyfile(library.path, dest)
        dest.chmod(dest.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)
        patcher = manylinux.elf_patcher("linux")
        patcher.set_soname(dest, dest.name)
        pairs = [(old, new) for old, new in sorted(relink.items()) if old != new]
        if pairs:
            patcher.replace_needed(dest, *pairs)
        patcher.set_rpath(dest, "$ORIGIN")
        patcher.apply_updates()
        readers.forget(dest)

    def link_aids(self, lib_dir: Path, unique: str, original: str) -> list[Path]:
        """A GNU ld script `libNAME.so` = INPUT(unique): `-lNAME` links the unique file."""
        script = lib_dir / f"lib{link_name(original)}.so"
        if script.name == unique:
            return []
        script.write_text(f"/* GNU ld script written by sharewheel: -l{link_name(original)} links the provider's library */\nINPUT({unique})\n")
        return [script]

    def platform_tag(self, path: Path) -> str:
        """`linux_<arch>` from the file alone (auditwheel's ldd would also walk, and may trip on,
        whatever its dependencies' names find on this host)."""
        arch = _elf_arch(path)
        if arch is None:
            raise BinaryError(f"{path}: unknown ELF architecture")
        return f"linux_{arch}"


def _write_sbom(plan: Plan, tree: Path, platforms: tuple[str, ...], sources: list[Path]) -> None:
    """auditwheel's CycloneDX SBOM of the vendored system libraries, where it can name their packages."""
    output_name = plan.wheel.with_platforms(list(platforms))[0].filename
    sbom = manylinux.sbom(output_name, sources)
    if sbom:
        dist_info = tree / plan.dist_info
        sbom_dir(tree, plan.dist_info).mkdir(exist_ok=True)  # (an error if the wheel has a file there)
        (dist_info / "sboms" / "auditwheel.cdx.json").write_text(json.dumps(sbom))


def _older_than(policies: Any, tag: str, floor: Any) -> bool:
    """Whether `tag` is a policy of this libc and architecture more compatible than `floor`."""
    if floor is None:
        return False
    try:
        return bool(policies.get_policy_by_name(tag) > floor)
    except LookupError:
        return False


def _provider_floor(policies: Any, provider_platforms: tuple[tuple[str, ...], ...]) -> Any:
    """The least compatible of the providers' best policies (None without providers): the
    consumer's tag must not promise more than pip can find providers for."""
    best = []
    for tags in provider_platforms:
        known = []
        for tag in tags:
            try:
                known.append(policies.get_policy_by_name(tag))
            except LookupError:
                continue  # another libc's or architecture's tag
        if known:
            best.append(max(known))
    return min(best) if best else None


def _files(tree: Path) -> list[str]:
    """The tree's files, tree-relative, in the order the analysis meets them (sorted, as the
    wheel is written; auditwheel walks RECORD, which sharewheel writes in this order too)."""
    return sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())


def _inside_tree(rpath: str, binary: Path, tree: Path) -> bool:
    """Whether an RPATH entry resolves inside the wheel (kept); build-machine paths are dropped."""
    if not rpath.startswith(("$ORIGIN", "${ORIGIN}")):
        return False
    relative = rpath.replace("${ORIGIN}", "$ORIGIN").replace("$ORIGIN", str(binary.parent), 1)
    resolved = os.path.normpath(os.path.join(tree, relative))
    return resolved == str(tree) or resolved.startswith(str(tree) + os.sep)
