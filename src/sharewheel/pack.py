"""`sharewheel pack`: a built C/C++ library prefix → a native-lib (provider) wheel.

The tree is laid out as a provider wheel (see README, "Provider layout"), zipped once as a
``py3-none-linux_<arch>`` wheel, and then handed to the same repair flow as any consumer: it
vendors the libraries' non-provided dependencies as auditwheel would, relinks the ones other
providers offer, adds their Requires-Dist, and gives the manylinux tag. So every provider
wheel is self-contained and tagged exactly like a repaired consumer.
"""

from __future__ import annotations

import logging
import posixpath
import re
import shutil
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from sharewheel import __version__, cmake_package, implib, licenses, pkgconfig
from sharewheel.abi import AbiPolicy, parse_version
from sharewheel.adapters import PlatformAdapter, PrefixLibrary, adapter_for_host_binary
from sharewheel.errors import BinaryError, ConfigError, SharewheelError
from sharewheel.files import work_dir
from sharewheel.manifest import MANIFEST_NAME, Manifest, ProvidedLibrary, Provides
from sharewheel.naming import link_name, unique_name
from sharewheel.platforms import is_musl_libc, keys_of
from sharewheel.registry import ENTRY_POINT_GROUP, Provider, Registry
from sharewheel.repair import RepairOptions, RepairReport, repair_wheel
from sharewheel.runtime import (
    RUNTIME_MODULE,
    Libc,
    loader_source,
    provider_init,
    provider_main_source,
)
from sharewheel.sbom import SBOM_PATH
from sharewheel.wheelfile import CONTROL_CHARACTERS, WheelName, write_wheel

log = logging.getLogger("pack")


@dataclass(frozen=True)
class PackOptions:
    prefix: Path
    name: str
    version: str
    out_dir: Path
    libs: tuple[str, ...] = ()
    abi: str = "major"
    requires: tuple[str, ...] = ()
    providers: tuple[Path | str, ...] = ()
    plat: str = "auto"
    summary: str = ""
    plugins: tuple[Path, ...] = ()
    dry_run: bool = False  # build the wheel in a work directory and report it; write nothing
    package: str | None = None  # the import package (default: the name's); a set's carrier has its own
    library_path: tuple[Path, ...] = ()  # searched after PREFIX/lib for the libraries' own dependencies
    license: str | None = None  # SPDX expression (--license): METADATA's License-Expression, as given, canonical
    license_files: tuple[Path, ...] = ()  # --license-file (relative to PREFIX); none: those PREFIX installs


def pack(options: PackOptions) -> RepairReport:
    check_text_options(options.name, options.summary)
    prefix = options.prefix.resolve()
    if not any((prefix / d).is_dir() for d in ("lib", "lib64", "bin")):
        raise SharewheelError(f"{options.prefix}: not an install prefix (no lib/ or bin/ directory)")
    version = parse_version(options.version, "--version")
    policy = AbiPolicy.parse(options.abi)
    license_expression = licenses.expression(options.license) if options.license is not None else None
    license_files = licenses.prefix_license_files(prefix, options.license_files)
    distribution = canonicalize_name(options.name)
    package = options.package or distribution.replace("-", "_")
    if not package.isidentifier():
        raise SharewheelError(f"--name {options.name}: {package!r} is not a valid Python package name")

    adapter = _prefix_adapter(prefix)
    libraries = _load_order(_select(adapter.prefix_libraries(prefix), options.libs, prefix))
    if policy.name == "major":
        _check_major(libraries, version)
    platform = adapter.platform_tag(libraries[0].path)
    needed = [name for lib in libraries for name in lib.needed]  # a linux_<arch> tag names no libc
    unique = {lib.name: unique_name(distribution, policy.series(version), lib.name) for lib in libraries}

    with work_dir() as tmp:  # (providers' files unpacked to be read go in here too)
        registry = Registry.discover(options.providers, keys_of([platform], needed), plugin_files=options.plugins)
        tree = Path(tmp, "tree")
        package_dir = tree / package
        lib_dir = package_dir / "lib"
        (lib_dir / "pkgconfig").mkdir(parents=True)
        for lib in libraries:
            own = {name: unique[name] for name in map(posixpath.basename, lib.needed) if name in unique}
            adapter.install_library(lib, lib_dir / unique[lib.name], own)
            adapter.link_aids(lib_dir, unique[lib.name], lib.name)
        link_names = _write_import_libraries(prefix, lib_dir, libraries, unique) if adapter.os == "windows" else None
        if (prefix / "include").is_dir():
            shutil.copytree(prefix / "include", package_dir / "include", symlinks=False)
        requires = _required_providers(libraries, registry, options.requires, distribution)
        _write_pkgconfig(prefix, lib_dir / "pkgconfig", libraries, unique, requires, distribution, package, str(version),
                         link_names)
        _write_cmake(lib_dir, libraries, unique, requires, adapter.os, distribution, package, version, policy, platform)
        runtime = [p.runtime(lib.unique_name for lib in p.provides.libraries) for p in requires]
        (package_dir / "__init__.py").write_text(
            provider_init(
                distribution=distribution,
                version=str(version),
                libraries=[unique[lib.name] for lib in libraries],
                requires=runtime,
                libc=Libc.MUSL if any(map(is_musl_libc, needed)) else Libc.OTHER,
                package=package,
            ),
            encoding="utf-8",
        )
        # the code those data run, and `python -m <package> --cmake-dir`: sharewheel's runtime, verbatim
        (package_dir / f"{RUNTIME_MODULE}.py").write_text(loader_source(), encoding="utf-8")
        (package_dir / "__main__.py").write_text(provider_main_source(), encoding="utf-8")

        name = WheelName.parse(f"{distribution.replace('-', '_')}-{version}-py3-none-{platform}.whl")
        dist_info = tree / name.dist_info
        dist_info.mkdir()
        provides = Provides(
            distribution=distribution,
            version=str(version),
            package=package,
            abi=policy.name,
            series=policy.series(version),
            platform=platform,
            libraries=tuple(
                ProvidedLibrary(lib.name, unique[lib.name], f"{package}/lib/{unique[lib.name]}", "")
                for lib in libraries
            ),
            requires=tuple(p.distribution for p in requires),
        )
        (dist_info / MANIFEST_NAME).write_text(Manifest(provides).dumps(), encoding="utf-8")
        _write_dist_info(dist_info, distribution, str(version), package, libraries, platform, options.summary)
        licenses.write_licenses(dist_info, license_files, license_expression)  # PEP 639
        staged = write_wheel(tree, name.dist_info, Path(tmp, "stage", name.filename))
        report = repair_wheel(
            staged,
            options.out_dir,
            RepairOptions(
                providers=options.providers,
                plugins=options.plugins,
                plat=options.plat,
                install_hook=False,
                declared_requires=tuple(p.distribution for p in requires),
                library_path=(*(d for d in (prefix / "lib", prefix / "lib64") if d.is_dir()), *options.library_path),
                dry_run=options.dry_run,
            ),
        )
        if options.dry_run:  # what the wheel would hold: the tree, what repair vendors into it, its RECORD
            files = {path.relative_to(tree).as_posix() for path in tree.rglob("*") if not path.is_dir()}
            sbom = f"{name.dist_info}/{SBOM_PATH}"  # (written by repair's apply, sharewheel.sbom)
            report = replace(report, files=tuple(sorted({*files, *report.vendored, sbom, f"{name.dist_info}/RECORD"})))
        return report


#: PEP 508's name: what pip, twine and PyPI accept (ASCII only: re's IGNORECASE would take 'K').
_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?", re.IGNORECASE | re.ASCII)


def check_text_options(name: str, summary: str, flag: str = "--name") -> None:
    """--name and --summary go into file names and METADATA headers as given: a name pip
    refuses makes a wheel nobody can install, a line break in the summary a header of its own."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{flag} {name!r}: not a distribution name (PEP 508: ASCII letters, digits, '.', '_' "
                          "and '-', beginning and ending with a letter or digit)")
    if CONTROL_CHARACTERS.search(summary):
        raise ConfigError(f"--summary {summary[:80]!r}{'...' if len(summary) > 80 else ''}: "
                          "contains a line break or control character; it must be one line")


def _import_libraries(prefix: Path) -> list[Path]:
    """Windows import libraries (MinGW .dll.a, MSVC .lib) a consumer links with."""
    lib_dir = prefix / "lib"
    return sorted(p for p in lib_dir.glob("*") if p.name.endswith((".dll.a", ".lib")) and p.is_file())


def _write_import_libraries(
    prefix: Path, lib_dir: Path, libraries: list[PrefixLibrary], unique: dict[str, str]
) -> dict[str, str]:
    """Windows: import libraries naming each unique DLL (see sharewheel.implib), under the link
    name of the prefix's own import library for it (libtool's libacme-3.dll: `-lacme`), which
    they replace (it names the original DLL); other .lib/.dll.a files (static libraries, import
    libraries of DLLs not packed) are shipped as they are. Returns each library's `-l` name."""
    own = cmake_package.import_library_for([lib.name for lib in libraries], [p.name for p in _import_libraries(prefix)])
    link_names = {lib.name: link_name(own.get(lib.name, lib.name)) for lib in libraries}
    written: set[str] = set()
    for lib in libraries:
        try:
            paths = implib.write_provider_import_libraries(lib_dir / unique[lib.name], link_names[lib.name])
        except BinaryError as e:  # only forwarders or ordinal-only exports: nothing to link by name
            log.warning("%s; consumers cannot link against it", e)
        else:
            written.update(path.name for path in paths)
    for import_library in _import_libraries(prefix):
        if import_library.name not in {*own.values(), *written}:  # acme.lib beside libacme.dll.a: ours too
            shutil.copyfile(import_library, lib_dir / import_library.name)
    return link_names


def _prefix_adapter(prefix: Path) -> PlatformAdapter:
    """The adapter for the binary format of the prefix's libraries (ELF, Mach-O, PE)."""
    for lib_dir in (prefix / "lib", prefix / "lib64", prefix / "bin"):
        for path in sorted(lib_dir.glob("*")) if lib_dir.is_dir() else ():
            if path.is_file() and (adapter := adapter_for_host_binary(path)) is not None:
                return adapter
    raise SharewheelError(f"{prefix}: no shared libraries in {prefix}/lib")


def _select(libraries: list[PrefixLibrary], names: tuple[str, ...], prefix: Path) -> list[PrefixLibrary]:
    """The libraries named with --lib (by link name, acme; by soname, libacme.so.3; or by the
    name the linker opens for -lacme, libacme.so or libacme.dylib), or all of them."""
    found = ", ".join(lib.name for lib in libraries) or "none"
    if not libraries:
        raise SharewheelError(f"{prefix}: no shared libraries in {prefix}/lib (or bin/ for DLLs)")
    chosen: list[PrefixLibrary] = []
    for wanted in names:
        matches = [lib for lib in libraries if wanted in (
            lib.name, link_name(lib.name), f"lib{link_name(lib.name)}.so", f"lib{link_name(lib.name)}.dylib")]
        if not matches:
            raise SharewheelError(f"--lib {wanted}: no such library in {prefix} (found: {found})")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen or libraries


_SONAME_NUMBER = (
    re.compile(r"\.so\.(\d+)"),  # libacme.so.3
    re.compile(r"^[^.]+\.(\d+)(\.[\d.]+)?\.dylib$"),  # libacme.3.dylib
    re.compile(r"-(\d+)\.dll$", re.IGNORECASE),  # libacme-3.dll (libtool)
)


def _check_major(libraries: list[PrefixLibrary], version: Version) -> None:
    """Warn when --abi major would give the library a series other than its soname's: the
    author promises ABI stability per soname number, and a consumer of `version` would be told
    that every release of the version's major fits (libacme.so.1 packed as 3.0.0)."""
    for lib in libraries:
        number = next((m[1] for pattern in _SONAME_NUMBER if (m := pattern.search(lib.name))), None)
        if number is not None and not version.epoch and int(number) != version.release[0]:
            log.warning("%s: packed as %s with --abi major, but its soname's number is %s, not %d: check "
                        "--version, or give the ABI policy its author keeps (--abi minor, exact or a template)",
                        lib.name, version, number, version.release[0])


def _load_order(libraries: list[PrefixLibrary]) -> list[PrefixLibrary]:
    """Libraries sorted so that each comes after the ones it needs (the loader's order)."""
    by_name = {lib.name: lib for lib in libraries}
    ordered: list[PrefixLibrary] = []
    visiting: set[str] = set()

    def visit(lib: PrefixLibrary) -> None:
        if lib in ordered or lib.name in visiting:
            return
        visiting.add(lib.name)
        for dep in map(posixpath.basename, lib.needed):
            if dep in by_name:
                visit(by_name[dep])
        ordered.append(lib)

    for lib in libraries:
        visit(lib)
    return ordered


def _required_providers(
    libraries: list[PrefixLibrary], registry: Registry, declared: tuple[str, ...], distribution: str
) -> list[Provider]:
    """Providers this one needs: the declared --requires and any whose library is linked."""
    found: dict[str, Provider] = {}
    for name in declared:
        provider = registry.distribution(name)
        if provider is None:
            raise SharewheelError(f"--requires {name}: no such provider (give its wheel with --provider, or install it)")
        found[canonicalize_name(provider.distribution)] = provider
    for lib in libraries:
        for needed in lib.needed:
            match = registry.lookup(needed)
            if match and canonicalize_name(match.provider.distribution) != distribution:
                found.setdefault(canonicalize_name(match.provider.distribution), match.provider)
    return [found[k] for k in sorted(found)]


def _write_pkgconfig(
    prefix: Path,
    pc_dir: Path,
    libraries: list[PrefixLibrary],
    unique: dict[str, str],
    requires: list[Provider],
    distribution: str,
    package: str,
    version: str,
    link_names: dict[str, str] | None = None,  # Windows: the import libraries' names, not the unique DLLs'
) -> None:
    links = link_names or {lib.name: link_name(unique[lib.name]) for lib in libraries}
    renames = {link_name(lib.name): links[lib.name] for lib in libraries}
    own_pc = sorted(p for d in ("lib", "lib64", "share") for p in (prefix / d / "pkgconfig").glob("*.pc"))
    for pc in own_pc:
        text = pc.read_text(encoding="utf-8")
        (pc_dir / pc.name).write_text(
            pkgconfig.relocated_pc(text, prefix=str(prefix), package=package, renames=renames), encoding="utf-8"
        )
    required_pc = sorted({link_name(lib.name) for p in requires for lib in p.provides.libraries})
    for lib in libraries:
        pc_name = link_name(lib.name)
        if (pc_dir / f"{pc_name}.pc").exists():
            continue
        (pc_dir / f"{pc_name}.pc").write_text(
            pkgconfig.generated_pc(
                name=pc_name, version=version, distribution=distribution, package=package,
                link_names=[links[lib.name]], requires=required_pc,
            ),
            encoding="utf-8",
        )


def _write_cmake(
    lib_dir: Path,
    libraries: list[PrefixLibrary],
    unique: dict[str, str],
    requires: list[Provider],
    system: str,
    distribution: str,
    package: str,
    version: Version,
    policy: AbiPolicy,
    platform: str,
) -> None:
    """One relocatable CMake package per library, named like its .pc (see cmake_package)."""
    implibs = cmake_package.import_library_for(  # the .lib (listed last, so chosen) over its .dll.a twin
        [lib.name for lib in libraries],
        sorted((p.name for p in lib_dir.glob("*") if p.name.endswith((".dll.a", ".lib"))), key=lambda n: (n.endswith(".lib"), n)),
    ) if system == "windows" else {}
    # the name -l links: on Windows the import library's (libacme.dll.a for libtool's libacme-3.dll)
    ours = {lib.name: link_name(implibs.get(lib.name, lib.name)) for lib in libraries}
    others = tuple(
        cmake_package.Dependency(name, cmake_package.cmake_version(p.version), p.provides.package)
        for p in requires for name in _cmake_packages(p)
    )
    for lib in libraries:
        name = ours[lib.name]
        directory = lib_dir / "cmake" / name
        if directory.exists():
            continue  # two libraries with one link name: the first (in load order) keeps it
        directory.mkdir(parents=True)
        siblings = sorted({ours[n] for n in map(posixpath.basename, lib.needed) if n in ours and ours[n] != name})
        soname = {"linux": unique[lib.name], "macos": f"@rpath/{unique[lib.name]}"}.get(system)
        target = cmake_package.CMakeLibrary(
            name=name,
            file=f"lib/{unique[lib.name]}",
            soname=soname,
            implib=f"lib/{implibs[lib.name]}" if lib.name in implibs else None,
            has_include=(lib_dir.parent / "include").is_dir(),
            dependencies=(*(cmake_package.Dependency(s) for s in siblings), *others),
        )
        (directory / f"{name}Config.cmake").write_text(
            cmake_package.config_file(target, distribution=distribution, version=str(version), package=package, os=system),
            encoding="utf-8",
        )
        (directory / f"{name}ConfigVersion.cmake").write_text(
            cmake_package.version_file(name, distribution=distribution, version=version, policy=policy, platform=platform),
            encoding="utf-8",
        )


def _cmake_packages(provider: Provider) -> list[str]:
    """The CMake packages another provider ships (none for third-party wheels and providers
    packed before sharewheel wrote them), read from its files: `lib/cmake/<name>/<name>Config.cmake`."""
    root = f"{provider.provides.package}/lib/cmake/"
    if provider.source.is_file():
        with zipfile.ZipFile(provider.source) as zf:
            names = zf.namelist()
    else:
        base = provider.source / root
        names = [f"{root}{p.relative_to(base).as_posix()}" for p in base.glob("*/*Config.cmake")] if base.is_dir() else []
    found = set()
    for name in names:
        parts = name[len(root):].split("/") if name.startswith(root) else []
        if len(parts) == 2 and parts[1] == f"{parts[0]}Config.cmake":
            found.add(parts[0])
    return sorted(found)


def _write_dist_info(
    dist_info: Path,
    distribution: str,
    version: str,
    package: str,
    libraries: list[PrefixLibrary],
    platform: str,
    summary: str,
) -> None:
    names = ", ".join(lib.name for lib in libraries)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\n"
        f"Name: {distribution}\n"
        f"Version: {version}\n"
        f"Summary: {summary or f'Native library {names}, packed as a shared native-lib wheel by sharewheel'}\n"
        "Requires-Python: >=3.8\n"
        "Description-Content-Type: text/plain\n\n"  # (a description: twine check --strict wants one)
        f"The shared library {names}, for other wheels to link against and load at run time: "
        f"a native-lib wheel packed by sharewheel {__version__}.\n",
        encoding="utf-8",
    )
    (dist_info / "WHEEL").write_text(
        "Wheel-Version: 1.0\n"
        f"Generator: sharewheel {__version__}\n"
        "Root-Is-Purelib: false\n"
        f"Tag: py3-none-{platform}\n",
        encoding="utf-8",
    )
    pc_entries = "".join(f"{link_name(lib.name)} = {package}.lib.pkgconfig\n" for lib in libraries)
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n{distribution} = {package}\n\n[pkg_config]\n{pc_entries}"
        # scikit-build-core adds a cmake.prefix entry point's package dir to CMAKE_PREFIX_PATH
        f"\n[cmake.prefix]\n{distribution} = {package}\n",
        encoding="utf-8",
    )
