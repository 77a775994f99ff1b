"""`repair --set` (issue 16) for Windows and macOS wheels: three wheels of one release (acmecore,
and acmebind and acmeplug, which require acmecore) whose extensions link one C library that
keeps a global (libacme, which links libextra), built by zig.

Windows: acme.dll and extra.dll. Fresh (found by --add-path, as delvewheel finds them) and
after real delvewheel (three mangled copies of each, `acmebind.libs/acme-<hash>.dll` importing
`extra-<hash>.dll` ...): repaired as a set, one copy of each is left, in acmecore under the
provider's unique names, the .pyd import acme's unique name (pefile) and acmebind and acmeplug
require acmecore==1.0.0. Under wine, the three wheels installed into three directories: a value
set through one .pyd is seen through the others in one process, one acme module loaded.
Windows Python does not run under wine here, so the load order the hook gives is reproduced by
a small C host: the provider loaded by its full path (what the hook's ctypes load does), then
the extensions.

macOS: libacme.1.dylib and libextra.dylib, fresh (absolute install names, as a build leaves
them) and after real delocate-wheel (three `.dylibs/` copies of each; Apple's otool and
install_name_tool stood in for by LLVM's, see tests/test_flags_delocate.py), and a fresh core
with delocated bindings. dyld cannot run here: the checks are structural (one copy left,
install ids and load commands read with macho_support's struct reader, code signatures,
Requires-Dist) plus macho_support's dyld-rule oracle on the split install, with the carrier's
library preloaded as the hook preloads it.

Two command-line orders of the delvewheel-repaired set give byte-identical outputs
(SOURCE_DATE_EPOCH); tests/test_sets.py covers all six on Linux.
"""

from __future__ import annotations

import posixpath
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    BuildEnv,
    manifest_of,
    one,
    pip_target_for,
    requires_dist,
    run,
    sharewheel,
)
from macho_support import (
    build_dylib,
    build_extension,
    dyld_resolves,
    load_commands,
    verify_code_signature,
)
from packaging.specifiers import SpecifierSet
from pe_support import build_dll, pe_export_name, pe_exports, pe_imports, wine_run
from test_flags_delocate import apple_tools, delocate_wheel  # noqa: F401  (apple_tools: the fixture)
from test_hostile import edit_wheel, make_wheel

pytest_plugins = ["macho_support", "pe_support"]

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
PACKAGES = ("acmebind", "acmecore", "acmeplug")
VERSION = "1.0.0"
WIN_PLATFORM, MAC_PLATFORM = "win_amd64", "macosx_11_0_arm64"
PYD = "_core.cp311-win_amd64.pyd"
SO = "_core.cpython-311-darwin.so"

EXPORT = """\
#ifdef _WIN32
#define EXPORT __declspec(dllexport)
#else
#define EXPORT __attribute__((visibility("default")))
#endif
"""
# libacme keeps the global; it needs libextra, which the wheels vendor too (copies that link copies)
EXTRA_C = EXPORT + "EXPORT int extra_twice(int x) { return 2 * x; }\n"
LIBRARY_C = EXPORT + """\
int extra_twice(int);
static int value;
EXPORT void acme_set(int v) { value = extra_twice(v) / 2; }
EXPORT int acme_get(void) { return value; }
"""

# an extension without Python's C-API: the host calls wheel_set / wheel_get of each
EXTENSION_C = "#include <stdint.h>\n" + EXPORT + """\
void acme_set(int); int acme_get(void);
EXPORT void wheel_set(int v) { acme_set(v); }
EXPORT int wheel_get(void) { return acme_get(); }
EXPORT void *PyInit__core(void) { return (void *)(intptr_t)acme_get(); }
"""

HOST_C = r"""
/* set_host.exe PROVIDER EXT... : load PROVIDER by its full path (the hook's ctypes load), then
   each extension as Python imports one; wheel_set(41) through the first extension, print
   wheel_get of each; wheel_set(7) through the last, print each again; then the number of
   modules named acme* in the process. Exit 2: a load failed (with GetLastError). */
#include <windows.h>
#include <tlhelp32.h>
#include <stdio.h>
#include <wchar.h>

typedef void (*set_fn)(int);
typedef int (*get_fn)(void);

int wmain(int argc, wchar_t **argv) {
    DWORD flags = LOAD_LIBRARY_SEARCH_DEFAULT_DIRS | LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR;
    HMODULE ext[8];
    int n = 0;
    for (int i = 1; i < argc && n < 8; i++) {
        HMODULE h = LoadLibraryExW(argv[i], NULL, flags);
        if (!h) {
            wprintf(L"LoadLibrary failed %ls %lu\n", argv[i], GetLastError());
            return 2;
        }
        if (i > 1) ext[n++] = h;
    }
    ((set_fn)(void *)GetProcAddress(ext[0], "wheel_set"))(41);
    for (int i = 0; i < n; i++) wprintf(L"%d ", ((get_fn)(void *)GetProcAddress(ext[i], "wheel_get"))());
    wprintf(L"\n");
    ((set_fn)(void *)GetProcAddress(ext[n - 1], "wheel_set"))(7);
    for (int i = 0; i < n; i++) wprintf(L"%d ", ((get_fn)(void *)GetProcAddress(ext[i], "wheel_get"))());
    wprintf(L"\n");
    int acme = 0;
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPMODULE, 0);
    MODULEENTRY32W entry = {.dwSize = sizeof(entry)};
    for (BOOL more = Module32FirstW(snap, &entry); more; more = Module32NextW(snap, &entry))
        if (_wcsnicmp(entry.szModule, L"acme", 4) == 0) acme++;
    wprintf(L"%d\n", acme);
    return 0;
}
"""


def with_requirement(wheel: Path, where: Path) -> Path:
    """`wheel` (make_wheel's) requiring acmecore, as bindings and plugins do."""
    with zipfile.ZipFile(wheel) as zf:
        [member] = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(member).decode()
    return edit_wheel(wheel, where, replace={member: f"{metadata}Requires-Dist: acmecore\n".encode()})


def release_wheels(where: Path, platform: str, binary: str, extensions: dict[str, Path]) -> dict[str, Path]:
    """package → its wheel (version 1.0.0) holding `<package>/<binary>`; acmebind and acmeplug require acmecore."""
    wheels = {}
    for package, extension in extensions.items():
        made = make_wheel(where / "made" / package, platform, {f"{package}/{binary}": extension.read_bytes()},
                          dist=package, version=VERSION)
        wheels[package] = made if package == "acmecore" else with_requirement(made, where / "dist" / package)
    return wheels


def repair_set(wheels: list[Path], out: Path, *args: str | Path, env: dict[str, str] | None = None) -> dict[str, Path]:
    """`sharewheel repair --set WHEELS -w OUT ARGS`: the outputs by package (inputs only read)."""
    before = {w: w.read_bytes() for w in wheels}
    sharewheel("repair", "--set", *wheels, "-w", out, *args, env={**EPOCH, **(env or {})})
    assert {w: w.read_bytes() for w in wheels} == before
    assert not [p for p in out.iterdir() if p.suffix != ".whl"]  # no staging left behind
    return {p.name.split("-")[0]: p for p in out.glob("*.whl")}


def names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def library_files(wheel: Path, suffix: str, stem: str = "acme") -> list[str]:
    """The copies of `stem`'s library (libacme.1.dylib, acme.dll, libextra ...) in `wheel`, by name."""
    return sorted(n for n in names(wheel) if posixpath.basename(n).lower().startswith((stem, f"lib{stem}"))
                  and n.lower().endswith(suffix))


def assert_carried_by_core(outputs: dict[str, Path], suffix: str, originals: dict[str, str]) -> dict[str, str]:
    """Each library once, in acmecore (a provider at ==1.0.0); acmebind and acmeplug link it and
    require acmecore==1.0.0. `originals`: stem → the name the extensions were linked against.
    Returns stem → the carried file's path in acmecore's wheel."""
    assert sorted(outputs) == list(PACKAGES)
    provides = manifest_of(outputs["acmecore"])["provides"]
    assert (provides["distribution"], provides["version"], provides["abi"]) == ("acmecore", VERSION, "exact")
    libraries = {lib["name"]: lib for lib in provides["libraries"]}
    assert sorted(libraries) == sorted(originals.values())
    carried = {}
    for stem, original in originals.items():
        assert library_files(outputs["acmebind"], suffix, stem) == library_files(outputs["acmeplug"], suffix, stem) == []
        [carried[stem]] = library_files(outputs["acmecore"], suffix, stem)
        assert carried[stem].startswith("_acmecore_native/lib/") and "-sw" in carried[stem]
        library = libraries[original]
        assert library["path"] == carried[stem] and library["unique_name"] == posixpath.basename(carried[stem])
    assert requires_dist(outputs["acmecore"]) == []
    for package in ("acmebind", "acmeplug"):
        [requirement] = requires_dist(outputs[package])
        assert (requirement.name, requirement.specifier) == ("acmecore", SpecifierSet(f"=={VERSION}"))
        assert [link["provider"] for link in manifest_of(outputs[package])["links"]] == ["acmecore"]
        assert not [n for n in names(outputs[package]) if "/.dylibs/" in n or n.split("/")[0].endswith(".libs")]
    return carried


# --- Windows -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WinRelease:
    dll_dir: Path  # acme.dll and extra.dll, where the build left them
    wheels: dict[str, Path]
    delvewheeled: dict[str, Path]  # package → delvewheel's repair of `wheels` (its own mangled copies)
    host: Path  # set_host.exe, alone in its directory


WIN_ORIGINALS = {"acme": "acme.dll", "extra": "extra.dll"}


@pytest.fixture(scope="module")
def win_release(tmp_path_factory: pytest.TempPathFactory, pe_zig) -> WinRelease:
    base = tmp_path_factory.mktemp("win-set")
    bin_dir, lib_dir = base / "prefix" / "bin", base / "prefix" / "lib"
    extra = build_dll(pe_zig, bin_dir / "extra.dll", EXTRA_C, implib=lib_dir / "libextra.dll.a")
    acme = build_dll(pe_zig, bin_dir / "acme.dll", LIBRARY_C, implib=lib_dir / "libacme.dll.a", links=[extra.implib])
    extensions = {p: build_dll(pe_zig, base / "ext" / p / PYD, EXTENSION_C, implib=base / "ext" / p / "_core.lib",
                               links=[acme.implib]).dll for p in PACKAGES}
    assert pe_imports(extensions["acmecore"])["imports"][0] == "acme.dll"
    wheels = release_wheels(base, WIN_PLATFORM, PYD, extensions)
    delvewheeled = {}
    for package, wheel in wheels.items():
        out = base / "delvewheel" / package
        run([sys.executable, "-m", "delvewheel", "repair", "--add-path", bin_dir, "-w", out, wheel])
        delvewheeled[package] = one(list(out.glob("*.whl")))
    host_dir = base / "host"
    host_dir.mkdir()
    (base / "host.c").write_text(HOST_C)
    pe_zig.cc("-municode", "-o", host_dir / "set_host.exe", base / "host.c", cwd=base, label="set_host.exe")
    return WinRelease(bin_dir, wheels, delvewheeled, host_dir / "set_host.exe")


def check_windows_set(outputs: dict[str, Path], host: Path, build_env: BuildEnv, tmp_path: Path) -> None:
    """acme.dll and extra.dll once, renamed (file and export name; acme's import of extra too);
    the .pyd import acme by that name. Under wine, the three wheels installed into three
    directories and loaded in the hook's order (the provider by full path first): one global,
    one acme module in the process; without the provider the .pyd do not load."""
    carried = assert_carried_by_core(outputs, ".dll", WIN_ORIGINALS)
    unique = {stem: posixpath.basename(path) for stem, path in carried.items()}
    sites = {p: pip_target_for(build_env, w, tmp_path / f"site-{p}", WIN_PLATFORM) for p, w in outputs.items()}
    provider = sites["acmecore"] / carried["acme"]
    assert pe_export_name(provider) == unique["acme"] and {"acme_set", "acme_get"} <= set(pe_exports(provider))
    assert unique["extra"] in pe_imports(provider)["imports"] and "extra.dll" not in pe_imports(provider)["imports"]
    assert pe_export_name(sites["acmecore"] / carried["extra"]) == unique["extra"]
    pyds = {p: sites[p] / p / PYD for p in PACKAGES}
    for package, pyd in pyds.items():
        imports = pe_imports(pyd)["imports"]
        assert unique["acme"] in imports and not [n for n in imports if n.lower().startswith("acme-")
                                                  and n != unique["acme"]], (package, imports)
        assert "acme.dll" not in imports, (package, imports)
        # every package's hook (the carrier's too: Windows has no RPATH) loads the provider first
        assert "_sharewheel_providers" in (sites[package] / package / "__init__.py").read_text()
    native = sites["acmecore"] / "_acmecore_native"  # ... but not the provider package, which loads itself
    assert "_sharewheel_providers" not in (native / "__init__.py").read_text()
    assert not (native / "_sharewheel_providers.py").exists()
    empty = tmp_path / "cwd"
    empty.mkdir()
    for order in (["acmebind", "acmeplug", "acmecore"], ["acmeplug", "acmecore", "acmebind"]):
        loaded = wine_run(host, provider, *(pyds[p] for p in order), cwd=empty)
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        assert loaded.stdout.split("\n")[:3] == ["41 41 41 ", "7 7 7 ", "1"], (order, loaded.stdout)
    alone = wine_run(host, pyds["acmebind"], pyds["acmeplug"], cwd=empty)  # no provider loaded first
    assert alone.returncode == 2 and "126" in alone.stdout, alone.stdout


def test_windows_fresh_set(win_release: WinRelease, build_env: BuildEnv, wine, tmp_path: Path) -> None:
    outputs = repair_set([win_release.wheels[p] for p in PACKAGES], tmp_path / "out", "--add-path",
                         win_release.dll_dir)
    check_windows_set(outputs, win_release.host, build_env, tmp_path)


def test_windows_set_of_delvewheel_repaired_wheels(win_release: WinRelease, build_env: BuildEnv, wine,
                                                   tmp_path: Path) -> None:
    """delvewheel left three copies each of acme.dll and extra.dll (the content hash in their
    names, acme's import of extra mangled too): one of each is left, carried by acmecore under
    the unique names; both orders of the command line give the same bytes."""
    for stem in WIN_ORIGINALS:
        copies = [one(library_files(w, ".dll", stem)) for w in win_release.delvewheeled.values()]
        [name] = {posixpath.basename(c) for c in copies}  # one name: one original file
        assert name.startswith(f"{stem}-") and copies == [f"{p}.libs/{name}" for p in PACKAGES]
    wheels = [win_release.delvewheeled[p] for p in PACKAGES]
    outputs = repair_set(wheels, tmp_path / "out")
    again = repair_set(wheels[::-1], tmp_path / "reversed")
    assert {p.name: p.read_bytes() for p in again.values()} == {p.name: p.read_bytes() for p in outputs.values()}
    check_windows_set(outputs, win_release.host, build_env, tmp_path)


# --- macOS ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MacRelease:
    wheels: dict[str, Path]
    delocated: dict[str, Path]  # package → delocate-wheel's repair of `wheels` (its own .dylibs copies)


MAC_ORIGINALS = {"acme": "libacme.1.dylib", "extra": "libextra.dylib"}


@pytest.fixture(scope="module")
def mac_release(tmp_path_factory: pytest.TempPathFactory, zig, apple_tools: Path) -> MacRelease:  # noqa: F811
    """libacme.1.dylib and libextra.dylib where the build left them (absolute install names)."""
    base = tmp_path_factory.mktemp("mac-set")
    lib = base / "prefix" / "lib"
    build_dylib(zig, "arm64", lib / "libextra.dylib", EXTRA_C, str(lib / "libextra.dylib"))
    build_dylib(zig, "arm64", lib / "libacme.1.dylib", LIBRARY_C, str(lib / "libacme.1.dylib"),
                links=[lib / "libextra.dylib"])
    extensions = {p: build_extension(zig, "arm64", base / "ext" / p, source=EXTENSION_C,
                                     links=[lib / "libacme.1.dylib"]) for p in PACKAGES}
    wheels = release_wheels(base, MAC_PLATFORM, SO, extensions)
    delocated = {}
    for package, wheel in wheels.items():
        outcome = delocate_wheel(apple_tools, wheel, base / "delocated" / package)
        assert outcome.wheel is not None, outcome.refusal
        delocated[package] = outcome.wheel
    return MacRelease(wheels, delocated)


def check_macos_set(outputs: dict[str, Path], build_env: BuildEnv, tmp_path: Path) -> None:
    """libacme and libextra once, renamed (install ids @rpath/<unique>, acme's load of extra
    too); every extension loads acme's unique name, none the build's; signatures valid. Split
    over three directories, dyld's rules (macho_support's oracle: dyld cannot run here) resolve
    every extension's load to the carried file once it is preloaded, as the hook preloads it."""
    carried = assert_carried_by_core(outputs, ".dylib", MAC_ORIGINALS)
    unique = {stem: posixpath.basename(path) for stem, path in carried.items()}
    sites = {p: pip_target_for(build_env, w, tmp_path / f"site-{p}", MAC_PLATFORM) for p, w in outputs.items()}
    provider = sites["acmecore"] / carried["acme"]
    commands = load_commands(provider)["arm64"]
    assert commands["id"] == f"@rpath/{unique['acme']}" and f"@rpath/{unique['extra']}" in commands["dylibs"]
    for path in carried.values():
        assert verify_code_signature(sites["acmecore"] / path) == [], path
    extensions = {p: sites[p] / p / SO for p in PACKAGES}
    for package, extension in extensions.items():
        dylibs = load_commands(extension)["arm64"]["dylibs"]
        assert f"@rpath/{unique['acme']}" in dylibs and not [d for d in dylibs if "libacme.1" in d], (package, dylibs)
        assert verify_code_signature(extension) == [], package
    for package in ("acmebind", "acmeplug"):
        assert "_sharewheel_providers" in (sites[package] / package / "__init__.py").read_text()
    split = dyld_resolves([sites["acmebind"], sites["acmeplug"], sites["acmecore"] / "acmecore"], preloaded=[provider])
    assert split.ok, str(split)
    for extension in extensions.values():
        assert split.link(extension, f"@rpath/{unique['acme']}").target == provider.resolve()
    alone = dyld_resolves([sites["acmebind"]])  # without the provider preloaded: not found
    assert not alone.ok


def test_macos_fresh_set(mac_release: MacRelease, build_env: BuildEnv, tmp_path: Path) -> None:
    outputs = repair_set([mac_release.wheels[p] for p in PACKAGES], tmp_path / "out")
    check_macos_set(outputs, build_env, tmp_path)


def test_macos_set_of_delocated_wheels(mac_release: MacRelease, build_env: BuildEnv, tmp_path: Path) -> None:
    """delocate left three copies each of libacme.1.dylib and libextra.dylib, under their own
    names but with the wheel's path in their install ids (/DLC/<package>/.dylibs/...): equal
    once those are undone, so one of each is left."""
    for stem, original in MAC_ORIGINALS.items():
        copies = {p: library_files(w, ".dylib", stem) for p, w in mac_release.delocated.items()}
        assert copies == {p: [f"{p}/.dylibs/{original}"] for p in PACKAGES}
    outputs = repair_set([mac_release.delocated[p] for p in PACKAGES], tmp_path / "out")
    check_macos_set(outputs, build_env, tmp_path)


def test_macos_fresh_core_with_delocated_bindings(mac_release: MacRelease, tmp_path: Path) -> None:
    """The core as built, the others as delocate left them: the copies the others share are
    carried by the core, whose own extension is relinked to them as the others are."""
    wheels = [mac_release.wheels["acmecore"], mac_release.delocated["acmebind"], mac_release.delocated["acmeplug"]]
    outputs = repair_set(wheels, tmp_path / "out")
    carried = assert_carried_by_core(outputs, ".dylib", MAC_ORIGINALS)
    with zipfile.ZipFile(outputs["acmecore"]) as zf:
        extension = Path(zf.extract(f"acmecore/{SO}", tmp_path / "core"))
    dylibs = load_commands(extension)["arm64"]["dylibs"]
    assert f"@rpath/{posixpath.basename(carried['acme'])}" in dylibs and not [d for d in dylibs if "libacme.1" in d]
