"""`delvewheel repair`'s flags given to `sharewheel repair` for Windows wheels (issue 15), against
the real delvewheel, on zig-built wheels, with the results loaded under wine.

Each test runs `delvewheel repair FLAGS` and `sharewheel repair FLAGS` on the same wheel. Without
a provider sharewheel must write what delvewheel writes: every entry but the dist-info, byte for
byte, PE files with their checksum field zeroed (sharewheel makes a vendored DLL's checksum valid
where delvewheel keeps zig's 0) and their time stamp (see _normalized); a wheel delvewheel refuses, sharewheel refuses with delvewheel's
words. Each test also says what the flag changed (vendored names and mangling, which DLLs, where
the __init__ patch goes, .pdb/.lib files, stripped overlays, import tables read with pefile), so
that the agreement is not that of two tools ignoring a flag. With a provider (acme, packed from
zig-built libacme-3.dll), sharewheel links it instead of vendoring it, and its hook must work
beside delvewheel's patch in each patch mode (default, --namespace-pkg, --custom-patch).

The DLLs: `extra.dll` (built with its .pdb and .lib beside it), `bonus.dll` (imported by
nothing: for --include) and acme's `libacme-3.dll`, in two directories given with --add-path.
"""

from __future__ import annotations

import ast
import json
import os
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import manifest_of, one, run, sharewheel, unpack
from pe_support import (
    EXTRA_C,
    build_dll,
    host_load,
    pe_checksum_ok,
    pe_imports,
    pe_sections_ok,
    pyd_result,
    wine_path,
    wine_run,
)
from test_hostile import edit_wheel, make_wheel, read_entries

from sharewheel.hooks import insert_block

pytest_plugins = ["pe_support"]

PYD = "_core.cp311-win_amd64.pyd"
CORE = f"acme_consumer/{PYD}"
LIBS = "acme_consumer.libs"
MANGLED = re.compile(r"^(?P<root>.+)-[0-9a-f]{32}\.dll$")
PLAIN_PYD_C = ("#include <stdint.h>\n"
               "__declspec(dllexport) void *PyInit__core(void) { return (void *)(intptr_t)42; }\n")
A_C = ("int b_fn(int);\nint extra_twice(int);\n"
       "__declspec(dllexport) int a_fn(void) { return extra_twice(b_fn(20)); }\n")
B_C = "__declspec(dllexport) int b_fn(int x) { return x + 1; }\n"
A_PYD_C = ("#include <stdint.h>\nint a_fn(void);\n"
           "__declspec(dllexport) void *PyInit__core(void) { return (void *)(intptr_t)(7000 + a_fn()); }\n")
PLUG_C = "int extra_twice(int);\n__declspec(dllexport) int plug(void) { return extra_twice(50); }\n"
TOOL_C = "#include <stdio.h>\nint extra_twice(int);\nint main(void) { printf(\"%d\\n\", extra_twice(21)); return 0; }\n"


@dataclass(frozen=True)
class Kit:
    bin: Path  # extra.dll with extra.pdb and extra.lib beside it, bonus.dll
    acme_bin: Path  # libacme-3.dll
    provider: Path  # acme-native, packed from acme 3.1.4
    unique: str  # the provider's name for libacme-3.dll
    provided: Path  # that DLL, as installed from the provider wheel
    pyd: Path  # imports libacme-3.dll and extra.dll
    plain_pyd: Path  # imports no DLL of ours
    a_pyd: Path  # imports a.dll
    a_dll: Path  # imports b.dll and extra.dll
    b_dll: Path
    plug_dll: Path  # imports extra.dll, imported by nothing
    tool_exe: Path  # imports extra.dll, prints 42

    @property
    def add_path(self) -> str:
        return os.pathsep.join(map(str, (self.acme_bin, self.bin)))


@pytest.fixture(scope="module")
def kit(tmp_path_factory, pe_zig, windows_prefixes, pe_consumer_pyd) -> Kit:
    base = tmp_path_factory.mktemp("flags-delvewheel")
    dlls, src = base / "bin", base / "src"
    dlls.mkdir()
    src.mkdir()
    (src / "extra.c").write_text(EXTRA_C)  # -g: zig writes extra.pdb beside extra.dll
    pe_zig.cc("-shared", "-g", "-o", dlls / "extra.dll", f"-Wl,--out-implib,{dlls / 'extra.lib'}", src / "extra.c",
              cwd=src)
    assert {p.name for p in dlls.iterdir()} == {"extra.dll", "extra.pdb", "extra.lib"}
    build_dll(pe_zig, dlls / "bonus.dll", "__declspec(dllexport) int bonus(void) { return 1; }\n",
              implib=base / "implib" / "libbonus.dll.a")
    b = build_dll(pe_zig, base / "wheel" / "b.dll", B_C, implib=base / "implib" / "libb.dll.a")
    a = build_dll(pe_zig, base / "wheel" / "a.dll", A_C, implib=base / "implib" / "liba.dll.a",
                  links=[b.implib, dlls / "extra.lib"])
    a_pyd = build_dll(pe_zig, base / "a-pyd" / PYD, A_PYD_C, implib=base / "implib" / "a_core.lib", links=[a.implib]).dll
    plain = build_dll(pe_zig, base / "plain-pyd" / PYD, PLAIN_PYD_C, implib=base / "implib" / "plain.lib").dll
    plug = build_dll(pe_zig, base / "wheel" / "plug.dll", PLUG_C, implib=base / "implib" / "libplug.dll.a",
                     links=[dlls / "extra.lib"]).dll
    (src / "tool.c").write_text(TOOL_C)
    (base / "exe").mkdir()
    pe_zig.cc("-o", base / "exe" / "tool.exe", src / "tool.c", dlls / "extra.lib", cwd=src)
    prefix = windows_prefixes("3.1.4")
    sharewheel("pack", prefix.root, "--name", "acme-native", "--version", "3.1.4", "-w", base / "providers")
    provider = one(list((base / "providers").glob("*.whl")))
    [library] = manifest_of(provider)["provides"]["libraries"]
    provided = unpack(provider, base / "provider") / library["path"]
    return Kit(dlls, prefix.dll.parent, provider, library["unique_name"], provided, pe_consumer_pyd, plain, a_pyd,
               a.dll, b.dll, plug, base / "exe" / "tool.exe")


# --- running both tools -----------------------------------------------------------------------


def _normalized(data: bytes) -> bytes:
    """A PE file with its checksum and COFF time stamp zeroed (GNU strip, which --strip runs,
    stamps the wall-clock time there, ignoring SOURCE_DATE_EPOCH in binutils 2.40); other files
    as they are."""
    if data[:2] != b"MZ" or len(data) < 0x40:
        return data
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    stamp, checksum = e_lfanew + 4 + 4, e_lfanew + 4 + 20 + 64
    return data[:stamp] + bytes(4) + data[stamp + 4:checksum] + bytes(4) + data[checksum + 4:]


def payload(wheel: Path) -> dict[str, bytes]:
    """A wheel's entries but its dist-info and directory entries, PE files normalized."""
    return {name: _normalized(data) for name, data in read_entries(wheel).items()
            if ".dist-info/" not in name and not name.endswith("/")}


@dataclass(frozen=True)
class Both:
    theirs: dict[str, bytes]  # delvewheel's output
    ours: dict[str, bytes]  # sharewheel's
    tree: Path  # sharewheel's output, unpacked
    output: Path  # sharewheel's wheel
    stdout: str  # sharewheel's

    def vendored(self) -> list[str]:
        return sorted(n.removeprefix(f"{LIBS}/") for n in self.ours if n.startswith(f"{LIBS}/"))


def delvewheel(wheel: Path, out: Path, *flags: str | Path, check: bool = True):
    return run([sys.executable, "-m", "delvewheel", "repair", *flags, "-w", out, wheel], check=check)


def both(wheel: Path, tmp: Path, *flags: str | Path, env: dict[str, str] | None = None) -> Both:
    """delvewheel and sharewheel (no provider) repair `wheel` with `flags`: the same payload."""
    delvewheel(wheel, tmp / "delvewheel", *flags)
    result = sharewheel("repair", wheel, "-w", tmp / "sharewheel", *flags, env=env)
    theirs = payload(one(list((tmp / "delvewheel").glob("*.whl"))))
    output = one(list((tmp / "sharewheel").glob("*.whl")))
    ours = payload(output)
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        assert ours[name] == theirs[name], name
    return Both(theirs, ours, unpack(output, tmp / "tree"), output, result.stdout)


def both_refuse(wheel: Path, tmp: Path, *flags: str | Path) -> tuple[str, str]:
    """delvewheel and sharewheel refuse `wheel` with `flags`: delvewheel's stderr (whitespace
    collapsed, as sharewheel's error line has it) and sharewheel's one error line."""
    theirs = delvewheel(wheel, tmp / "delvewheel-refused", *flags, check=False)
    ours = sharewheel("repair", wheel, "-w", tmp / "sharewheel-refused", *flags, check=False)
    assert theirs.returncode != 0 and ours.returncode != 0, (theirs.stdout, ours.stdout)
    assert not list((tmp / "sharewheel-refused").glob("*.whl"))
    [line] = ours.stderr.strip().splitlines()
    assert line.startswith("sharewheel: error: "), ours.stderr
    return " ".join(theirs.stderr.split()), line


def imports_of(path: Path) -> list[str]:
    names = pe_imports(path)
    return [*names["imports"], *names["delay_imports"]]


def mangled(name: str) -> str | None:
    """The name delvewheel mangled `name` from, None if it is no mangled name."""
    match = MANGLED.match(name)
    return f"{match['root']}.dll" if match else None


def basic_wheel(kit: Kit, where: Path, init: str | None = None, pyd: Path | None = None) -> Path:
    """acme_consumer: __init__.py (`init`, default a docstring) and _core.pyd (`pyd`, default the
    one importing libacme-3.dll and extra.dll)."""
    files = {CORE: (pyd or kit.pyd).read_bytes()}
    if init is not None:
        files["acme_consumer/__init__.py"] = init.encode()
    return make_wheel(where, "win_amd64", files)


def empty_dir(tmp: Path) -> Path:
    (tmp / "cwd").mkdir(exist_ok=True)
    return tmp / "cwd"


# --- --add-path ---------------------------------------------------------------------------------


def test_add_path(kit: Kit, wine, pe_host_exe, tmp_path: Path) -> None:
    wheel = basic_wheel(kit, tmp_path / "in")
    theirs, ours = both_refuse(wheel, tmp_path)  # neither DLL is on PATH
    assert "Unable to find library" in theirs and theirs.rsplit("FileNotFoundError: ", 1)[1] in ours
    result = both(wheel, tmp_path, "--add-path", kit.add_path)
    assert sorted(map(mangled, result.vendored())) == ["extra.dll", "libacme-3.dll"]
    assert sorted(imports_of(result.tree / CORE)[:2]) == sorted(result.vendored())
    # the same, the directories given one at a time; and where each copy came from
    dry = sharewheel("repair", wheel, "-w", tmp_path / "dry", "--dry-run", "--json",
                     "--add-path", kit.acme_bin, "--add-path", kit.bin)
    [plan] = json.loads(dry.stdout)
    assert plan["vendored_from"] == {f"{LIBS}/{name}": str((kit.bin if name.startswith("extra") else kit.acme_bin)
                                                           / mangled(name)) for name in result.vendored()}
    loaded = host_load(pe_host_exe, result.tree / CORE, cwd=empty_dir(tmp_path), dll_dirs=[result.tree / LIBS])
    assert loaded.stdout.split() == [str(pyd_result(3))], loaded.stdout


# --- --include / --add-dll --------------------------------------------------------------------


def test_include(kit: Kit, tmp_path: Path) -> None:
    wheel = basic_wheel(kit, tmp_path / "in")
    without = both(wheel, tmp_path / "without", "--add-path", kit.add_path)
    result = both(wheel, tmp_path / "with", "--add-path", kit.add_path, "--include", "BONUS.dll")
    assert set(result.vendored()) - set(without.vendored()) == {"bonus.dll"}  # copied, never mangled
    assert "bonus.dll" not in imports_of(result.tree / CORE)
    # --add-dll, ':'-separated: a DLL already vendored is not copied twice
    again = both(wheel, tmp_path / "alias", "--add-path", kit.add_path, "--add-dll", "bonus.dll:Extra.DLL")
    assert again.vendored() == result.vendored()
    [plan] = json.loads(sharewheel("repair", wheel, "-w", tmp_path / "dry", "--dry-run", "--json",
                                   "--add-path", kit.add_path, "--add-dll", "bonus.dll").stdout)
    assert plan["vendored_from"][f"{LIBS}/bonus.dll"] == str(kit.bin / "bonus.dll")
    # a DLL a provider offers is linked, never also vendored, whatever --include says
    sharewheel("repair", wheel, "-w", tmp_path / "p", "--provider", kit.provider, "--add-path", kit.add_path,
               "--include", "libacme-3.dll:bonus.dll")
    tree = unpack(one(list((tmp_path / "p").glob("*.whl"))), tmp_path / "p-tree")
    assert kit.unique in imports_of(tree / CORE)
    assert sorted(mangled(p.name) or p.name for p in (tree / LIBS).iterdir()) == ["bonus.dll", "extra.dll"]


def test_include_refusals(kit: Kit, tmp_path: Path) -> None:
    wheel = basic_wheel(kit, tmp_path / "in")
    theirs, ours = both_refuse(wheel, tmp_path / "missing", "--add-path", kit.add_path, "--include", "nowhere.dll")
    assert theirs.endswith("FileNotFoundError: nowhere.dll not found") and ours.endswith("delvewheel: nowhere.dll not found")
    theirs, ours = both_refuse(wheel, tmp_path / "both", "--add-path", kit.add_path, "--include", "bonus.dll",
                               "--no-dll", "bonus.dll")
    assert theirs.endswith("ValueError: Cannot force both inclusion and exclusion of {'bonus.dll'}")
    assert ours.endswith("delvewheel: Cannot force both inclusion and exclusion of {'bonus.dll'}")
    theirs, ours = both_refuse(wheel, tmp_path / "pattern", "--add-path", kit.add_path, "--include", "bonus.dll",
                               "--no-dll", "bon*")
    assert theirs.endswith("Cannot force inclusion of bonus.dll if bon* is excluded") and ours.endswith(
        "delvewheel: Cannot force inclusion of bonus.dll if bon* is excluded")


# --- --no-dll, and sharewheel's --exclude -----------------------------------------------------


def test_no_dll(kit: Kit, tmp_path: Path) -> None:
    wheel = basic_wheel(kit, tmp_path / "in")
    result = both(wheel, tmp_path / "one", "--add-path", kit.add_path, "--no-dll", "EXTRA.dll")
    assert [mangled(n) for n in result.vendored()] == ["libacme-3.dll"]
    assert "extra.dll" in imports_of(result.tree / CORE)  # left for the user's system to provide
    # a pattern and a ':'-separated list: nothing left to vendor, the wheel as it was
    none = both(wheel, tmp_path / "none", "--add-path", kit.add_path, "--no-dll", "extra.dll:libacme*")
    assert none.vendored() == [] and none.ours == payload(wheel)
    # sharewheel's own --exclude means delvewheel's --exclude for Windows wheels, lists and all
    delvewheel(wheel, tmp_path / "d-exclude", "--add-path", kit.add_path, "--exclude", "extra.dll:libacme-3.dll")
    sharewheel("repair", wheel, "-w", tmp_path / "s-exclude", "--add-path", kit.add_path,
               "--exclude", "extra.dll:libacme-3.dll")
    assert payload(one(list((tmp_path / "s-exclude").glob("*.whl")))) == \
        payload(one(list((tmp_path / "d-exclude").glob("*.whl")))) == payload(wheel)
    # show: what is never vendored is assumed present, as `delvewheel show` lists it
    shown = json.loads(sharewheel("show", wheel, "--json", "--add-path", kit.add_path, "--no-dll", "extra.dll").stdout)
    states = {n["name"]: n["state"] for n in shown["binaries"][CORE]}
    assert states["extra.dll"] == "policy" and states["libacme-3.dll"] == "external"


# --- --ignore-existing and --with-mangle ------------------------------------------------------


def existing_wheel(kit: Kit, where: Path) -> Path:
    """_core.pyd imports a.dll, which sits in lib/ (not beside it) with b.dll beside it, and
    imports b.dll and extra.dll (outside the wheel)."""
    return make_wheel(where, "win_amd64", {CORE: kit.a_pyd.read_bytes(),
                                           "acme_consumer/lib/a.dll": kit.a_dll.read_bytes(),
                                           "acme_consumer/lib/b.dll": kit.b_dll.read_bytes()})


def test_ignore_existing(kit: Kit, wine, pe_host_exe, tmp_path: Path) -> None:
    """Windows finds b.dll beside a.dll (sharewheel tells delvewheel so), but a.dll only with
    --ignore-existing, which then takes every DLL of the wheel as in it."""
    wheel = existing_wheel(kit, tmp_path / "in")
    theirs, ours = both_refuse(wheel, tmp_path, "--add-path", kit.add_path)
    assert theirs.endswith("Unable to find library: a.dll") and ours.endswith("delvewheel: Unable to find library: a.dll")
    result = both(wheel, tmp_path, "--add-path", kit.add_path, "--ignore-existing")
    assert result.vendored() == ["extra.dll"]  # a direct dependency of a DLL in the wheel: not mangled
    assert result.ours["acme_consumer/lib/a.dll"] == _normalized(kit.a_dll.read_bytes())
    assert imports_of(result.tree / CORE)[0] == "a.dll"
    assert both(wheel, tmp_path / "alias", "--add-path", kit.add_path, "--ignore-in-wheel").ours == result.ours
    lib = result.tree / "acme_consumer" / "lib"
    loaded = host_load(pe_host_exe, result.tree / CORE, cwd=empty_dir(tmp_path), dll_dirs=[lib, result.tree / LIBS])
    assert loaded.stdout.split() == ["7042"], loaded.stdout


def test_with_mangle(kit: Kit, wine, pe_host_exe, tmp_path: Path) -> None:
    wheel = existing_wheel(kit, tmp_path / "in")
    result = both(wheel, tmp_path, "--add-path", kit.add_path, "--ignore-existing", "--with-mangle")
    [copy] = result.vendored()
    assert mangled(copy) == "extra.dll"
    a_dll = result.tree / "acme_consumer" / "lib" / "a.dll"
    assert imports_of(a_dll)[:2] == ["b.dll", copy]  # the DLL in the wheel now asks for the mangled name
    assert pe_sections_ok(a_dll) and pe_checksum_ok(a_dll, allow_zero=True)
    lib = result.tree / "acme_consumer" / "lib"
    loaded = host_load(pe_host_exe, result.tree / CORE, cwd=empty_dir(tmp_path), dll_dirs=[lib, result.tree / LIBS])
    assert loaded.stdout.split() == ["7042"], loaded.stdout
    theirs, ours = both_refuse(wheel, tmp_path / "alone", "--add-path", kit.add_path, "--with-mangle")
    assert theirs.endswith("--with-mangle requires --ignore-existing") and ours.endswith(
        "delvewheel: --with-mangle requires --ignore-existing")
    theirs, ours = both_refuse(wheel, tmp_path / "exclusive", "--ignore-existing", "--with-mangle", "--no-mangle-all")
    assert "not allowed with argument" in theirs and "cannot be given together" in ours


# --- --analyze-existing, --analyze-existing-exes ----------------------------------------------


def test_analyze_existing(kit: Kit, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "in", "win_amd64", {CORE: kit.plain_pyd.read_bytes(),
                                                      "acme_consumer/plugins/plug.dll": kit.plug_dll.read_bytes()})
    without = both(wheel, tmp_path / "without", "--add-path", kit.add_path)
    assert without.vendored() == [] and "vendored nothing" in without.stdout
    result = both(wheel, tmp_path / "with", "--add-path", kit.add_path, "--analyze-existing")
    [copy] = result.vendored()
    assert mangled(copy) == "extra.dll" and imports_of(result.tree / "acme_consumer/plugins/plug.dll")[0] == copy


def test_analyze_existing_exes(kit: Kit, wine, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "in", "win_amd64", {CORE: kit.plain_pyd.read_bytes(),
                                                      "acme_consumer/bin/tool.exe": kit.tool_exe.read_bytes()})
    without = both(wheel, tmp_path / "without", "--add-path", kit.add_path)
    assert without.vendored() == []
    result = both(wheel, tmp_path / "with", "--add-path", kit.add_path, "--analyze-existing-exes")
    [copy] = result.vendored()
    exe = result.tree / "acme_consumer" / "bin" / "tool.exe"
    assert mangled(copy) == "extra.dll" and imports_of(exe)[0] == copy
    shown = json.loads(sharewheel("show", wheel, "--json", "--add-path", kit.add_path, "--analyze-existing-exes").stdout)
    assert {n["name"]: n["state"] for n in shown["binaries"]["acme_consumer/bin/tool.exe"]}["extra.dll"] == "external"
    # the EXE runs, finding the vendored copy by its new name (on PATH, as a user would put it)
    ran = wine_run(exe, cwd=empty_dir(tmp_path), env={"WINEPATH": wine_path(result.tree / LIBS)})
    assert ran.returncode == 0 and ran.stdout.split() == ["42"], ran.stdout + ran.stderr


# --- --no-mangle, --no-mangle-all ---------------------------------------------------------------


def test_no_mangle(kit: Kit, wine, pe_host_exe, tmp_path: Path) -> None:
    wheel = basic_wheel(kit, tmp_path / "in")
    result = both(wheel, tmp_path / "one", "--add-path", kit.add_path, "--no-mangle", "Extra.dll")
    assert [n for n in result.vendored() if not mangled(n)] == ["extra.dll"]
    assert "extra.dll" in imports_of(result.tree / CORE)
    pattern = both(wheel, tmp_path / "pattern", "--add-path", kit.add_path, "--no-mangle", "lib*:extra.dll")
    assert pattern.vendored() == ["extra.dll", "libacme-3.dll"]
    every = both(wheel, tmp_path / "all", "--add-path", kit.add_path, "--no-mangle-all")
    assert every.vendored() == ["extra.dll", "libacme-3.dll"]
    assert every.ours[CORE] == _normalized(kit.pyd.read_bytes())  # no import renamed
    loaded = host_load(pe_host_exe, every.tree / CORE, cwd=empty_dir(tmp_path), dll_dirs=[every.tree / LIBS])
    assert loaded.stdout.split() == [str(pyd_result(3))], loaded.stdout


# --- --strip ----------------------------------------------------------------------------------


def with_overlay(pyd: Path, out: Path) -> Path:
    """`pyd` with no room left in its sections (each one's virtual size grown to its raw size,
    as tightly linked DLLs are) and 4 KiB of overlay after them: a renamed import needs a new
    section, which an overlay forbids."""
    import pefile

    pe = pefile.PE(str(pyd))
    for section in pe.sections:
        section.Misc_VirtualSize = max(section.Misc_VirtualSize, section.SizeOfRawData)
    data = pe.write() + b"overlay!" * 512
    pe.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def pe_end(path: Path) -> int:
    import pefile

    pe = pefile.PE(str(path), fast_load=True)
    try:
        return max(s.PointerToRawData + s.SizeOfRawData for s in pe.sections)
    finally:
        pe.close()


def test_strip(kit: Kit, wine, pe_host_exe, tmp_path: Path) -> None:
    pyd = with_overlay(kit.pyd, tmp_path / "overlay" / PYD)
    assert pe_end(pyd) < pyd.stat().st_size
    wheel = basic_wheel(kit, tmp_path / "in", pyd=pyd)
    theirs, ours = both_refuse(wheel, tmp_path, "--add-path", kit.add_path)
    assert "contains an overlay" in theirs and "contains an overlay" in ours and "--strip" in ours
    result = both(wheel, tmp_path, "--add-path", kit.add_path, "--strip")
    repaired = result.tree / CORE
    assert pe_end(repaired) == repaired.stat().st_size and b"overlay!" not in repaired.read_bytes()
    assert sorted(imports_of(repaired)[:2]) == result.vendored() and pe_sections_ok(repaired)
    loaded = host_load(pe_host_exe, repaired, cwd=empty_dir(tmp_path), dll_dirs=[result.tree / LIBS])
    assert loaded.stdout.split() == [str(pyd_result(3))], loaded.stdout
    # sharewheel's own renaming (to the provider's name) strips too, and only with --strip
    env = {"PATH": f"{kit.bin}{os.pathsep}{os.environ['PATH']}"}
    refused = sharewheel("repair", wheel, "-w", tmp_path / "p-refused", "--provider", kit.provider, env=env, check=False)
    assert refused.returncode == 1 and "cannot rename its imports" in refused.stderr and "overlay" in refused.stderr
    sharewheel("repair", wheel, "-w", tmp_path / "p", "--provider", kit.provider, "--strip", env=env)
    linked = unpack(one(list((tmp_path / "p").glob("*.whl"))), tmp_path / "p-tree") / CORE
    assert kit.unique in imports_of(linked) and pe_end(linked) == linked.stat().st_size
    libs = linked.parent.parent / LIBS
    loaded = host_load(pe_host_exe, kit.provided, linked, cwd=empty_dir(tmp_path), dll_dirs=[libs])
    assert loaded.stdout.split() == [str(pyd_result(3))], loaded.stdout


# --- the patch: --namespace-pkg, --custom-patch, with sharewheel's hook -----------------------

PATCH = re.compile(r"os\.path\.join\(os\.path\.dirname\(__file__\), ((?:os\.pardir, )*)'([^']+)'\)")


def patched_dir(py: Path) -> Path:
    """The directory delvewheel's patch in `py` adds to the DLL search path."""
    [(pardirs, name)] = PATCH.findall(py.read_text())
    return (py.parent.joinpath(*[".."] * pardirs.count("os.pardir")) / name).resolve()


def runs_before(py: Path, first: str, then: str) -> bool:
    """Whether the first top-level statement of `py` holding `first` comes before the first
    holding `then`."""
    source = py.read_text()

    def line(text: str) -> int:
        return min(node.lineno for node in ast.parse(source).body if text in (ast.get_source_segment(source, node) or ""))

    return line(first) < line(then)


def namespace_wheel(kit: Kit, where: Path) -> Path:
    """ns_pkg, a namespace package (no __init__.py) with a module, an extension module at its root
    and a regular subpackage holding another."""
    wheel = make_wheel(where / "made", "win_amd64", {
        f"ns_pkg/{PYD}": kit.pyd.read_bytes(), "ns_pkg/helper.py": b'"""A module."""\nVALUE = 1\n',
        "ns_pkg/sub/__init__.py": b'"""A regular package."""\n', f"ns_pkg/sub/{PYD}": kit.pyd.read_bytes()})
    return edit_wheel(wheel, where, drop=["acme_consumer/__init__.py"])


def test_namespace_pkg(kit: Kit, tmp_path: Path) -> None:
    wheel = namespace_wheel(kit, tmp_path / "in")
    plain = both(wheel, tmp_path / "plain", "--add-path", kit.add_path)
    assert "ns_pkg/__init__.py" in plain.ours  # without the flag, delvewheel makes ns_pkg a regular package
    result = both(wheel, tmp_path / "ns", "--add-path", kit.add_path, "--namespace-pkg", "ns_pkg")
    assert "ns_pkg/__init__.py" not in result.ours
    for py in ("ns_pkg/helper.py", "ns_pkg/sub/__init__.py"):  # its modules carry the patch instead
        assert patched_dir(result.tree / py) == (result.tree / LIBS).resolve(), py
    copies = sorted(n.removeprefix("ns_pkg/") for n in result.ours if n.startswith("ns_pkg/") and n.endswith(".dll"))
    assert copies == result.vendored() and len(copies) == 2  # beside the extension module at its root


def test_namespace_pkg_not_found(kit: Kit, tmp_path: Path) -> None:
    """delvewheel warns of a namespace package the wheel lacks and repairs as without it;
    sharewheel says delvewheel's warning on one line of its own, not as Python's warning."""
    wheel = basic_wheel(kit, tmp_path / "in")
    plain = both(wheel, tmp_path / "plain", "--add-path", kit.add_path)
    result = both(wheel, tmp_path / "missing", "--add-path", kit.add_path, "--namespace-pkg", "nothere")
    assert result.ours == plain.ours
    theirs = delvewheel(wheel, tmp_path / "again", "--add-path", kit.add_path, "--namespace-pkg", "nothere").stderr
    ours = sharewheel("repair", wheel, "-w", tmp_path / "ours", "--add-path", kit.add_path,
                      "--namespace-pkg", "nothere").stderr
    warning = "Namespace package {'nothere'} was not found"
    assert f"UserWarning: {warning}" in theirs
    tools = [line for line in ours.splitlines() if not line.startswith("sharewheel: licenses: ")]  # (test-built DLLs)
    assert tools == [f"sharewheel: {wheel.name}: delvewheel: warning: {warning}"], ours


def test_namespace_pkg_with_the_hook(kit: Kit, wine, pe_host_exe, tmp_path: Path) -> None:
    wheel = namespace_wheel(kit, tmp_path / "in")
    env = {"PATH": f"{kit.bin}{os.pathsep}{os.environ['PATH']}"}
    sharewheel("repair", wheel, "-w", tmp_path / "out", "--provider", kit.provider, "--namespace-pkg", "ns_pkg", env=env)
    tree = unpack(one(list((tmp_path / "out").glob("*.whl"))), tmp_path / "tree")
    assert not (tree / "ns_pkg" / "__init__.py").exists()  # still a namespace package
    sub = tree / "ns_pkg" / "sub" / "__init__.py"  # the hook and the patch, the hook first
    assert patched_dir(sub) == (tree / LIBS).resolve() and runs_before(sub, "_sharewheel_providers", "_delvewheel_patch")
    assert patched_dir(tree / "ns_pkg" / "helper.py") == (tree / LIBS).resolve()
    [root_pyd] = [p for p in (tree / "ns_pkg").glob("_core*.pyd")]  # the loose module, behind sharewheel's shim
    [copy] = [p.name for p in (tree / "ns_pkg").glob("*.dll")]
    assert mangled(copy) == "extra.dll" and {kit.unique, copy} <= set(imports_of(root_pyd))
    loaded = host_load(pe_host_exe, kit.provided, root_pyd, cwd=empty_dir(tmp_path))  # extra found beside it
    assert loaded.stdout.split() == [str(pyd_result(3))], loaded.stdout
    sub_pyd = tree / "ns_pkg" / "sub" / PYD
    loaded = host_load(pe_host_exe, kit.provided, sub_pyd, cwd=empty_dir(tmp_path), dll_dirs=[patched_dir(sub)])
    assert loaded.stdout.split() == [str(pyd_result(3))], loaded.stdout


DELVEWHEEL_PATCH = re.compile(r'^(?:"""""" )?# start delvewheel patch\n.*?^# end delvewheel patch\n',
                              re.MULTILINE | re.DOTALL)
SHAREWHEEL_BLOCK = re.compile(r"^# --- sharewheel: .*?^# --- end sharewheel ---\n", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("init", ["from ._core import *\n", '"""acme_consumer."""\nfrom ._core import *\n'],
                         ids=["no-docstring", "docstring"])
def test_default_patch_with_the_hook(kit: Kit, tmp_path: Path, init: str) -> None:
    """Without a docstring delvewheel opens __init__.py with its patch, an empty docstring on
    its `# start delvewheel patch` line; sharewheel's block goes before the patch (never between
    its markers), as it goes before the patch that follows a docstring."""
    wheel = basic_wheel(kit, tmp_path / "in", init=init)
    default = both(wheel, tmp_path / "default", "--add-path", kit.add_path)
    theirs = (default.tree / "acme_consumer" / "__init__.py").read_text()
    env = {"PATH": f"{kit.bin}{os.pathsep}{os.environ['PATH']}"}
    sharewheel("repair", wheel, "-w", tmp_path / "p", "--provider", kit.provider, env=env)
    tree = unpack(one(list((tmp_path / "p").glob("*.whl"))), tmp_path / "p-tree")
    ours = (tree / "acme_consumer" / "__init__.py").read_text()
    [patch] = DELVEWHEEL_PATCH.findall(ours)
    [block] = SHAREWHEEL_BLOCK.findall(ours)
    assert block not in patch and ours.index(block) < ours.index(patch) < ours.index("from ._core import")
    assert patch.startswith('""""""') == theirs.startswith('""""""') == (not init.startswith('"""'))
    assert ours.replace(block, "") == theirs  # delvewheel's file, sharewheel's block added
    assert patched_dir(tree / "acme_consumer" / "__init__.py") == (tree / LIBS).resolve()
    assert insert_block(ours, block) == ours  # a later repair puts its block in the same place


CUSTOM_INIT = '"""acme_consumer."""\nimport os\n\nREADY = True\n# delvewheel: patch\nfrom ._core import *\n'


def test_custom_patch(kit: Kit, wine, pe_host_exe, tmp_path: Path) -> None:
    theirs, ours = both_refuse(basic_wheel(kit, tmp_path / "none"), tmp_path, "--add-path", kit.add_path,
                               "--custom-patch")
    assert theirs.endswith("'# delvewheel: patch' comment not found") and ours.endswith(
        "delvewheel: '# delvewheel: patch' comment not found")
    wheel = basic_wheel(kit, tmp_path / "in", init=CUSTOM_INIT)
    default = both(wheel, tmp_path / "default", "--add-path", kit.add_path)
    result = both(wheel, tmp_path / "custom", "--add-path", kit.add_path, "--custom-patch")
    init = result.tree / "acme_consumer" / "__init__.py"
    assert "# delvewheel: patch" not in init.read_text() and patched_dir(init) == (result.tree / LIBS).resolve()
    assert runs_before(init, "READY", "_delvewheel_patch")  # where the comment was, not after the docstring
    assert not runs_before(default.tree / "acme_consumer" / "__init__.py", "READY", "_delvewheel_patch")
    # with a provider: sharewheel's hook at the top, delvewheel's patch where the comment was
    env = {"PATH": f"{kit.bin}{os.pathsep}{os.environ['PATH']}"}
    sharewheel("repair", wheel, "-w", tmp_path / "p", "--provider", kit.provider, "--custom-patch", env=env)
    tree = unpack(one(list((tmp_path / "p").glob("*.whl"))), tmp_path / "p-tree")
    init = tree / "acme_consumer" / "__init__.py"
    assert runs_before(init, "_sharewheel_providers", "READY") and runs_before(init, "READY", "_delvewheel_patch")
    assert runs_before(init, "_delvewheel_patch", "from ._core import")
    pyd = tree / CORE
    assert kit.unique in imports_of(pyd)
    loaded = host_load(pe_host_exe, kit.provided, pyd, cwd=empty_dir(tmp_path), dll_dirs=[patched_dir(init)])
    assert loaded.stdout.split() == [str(pyd_result(3))], loaded.stdout


# --- --include-symbols, --include-imports -----------------------------------------------------


def test_include_symbols_and_imports(kit: Kit, tmp_path: Path) -> None:
    wheel = basic_wheel(kit, tmp_path / "in")
    plain = both(wheel, tmp_path / "plain", "--add-path", kit.add_path)
    symbols = both(wheel, tmp_path / "pdb", "--add-path", kit.add_path, "--include-symbols")
    assert set(symbols.vendored()) - set(plain.vendored()) == {"extra.pdb"}  # acme has none
    assert symbols.ours[f"{LIBS}/extra.pdb"] == (kit.bin / "extra.pdb").read_bytes()
    imports = both(wheel, tmp_path / "lib", "--add-path", kit.add_path, "--include-imports")
    assert set(imports.vendored()) - set(plain.vendored()) == {"extra.lib"}
    [plan] = json.loads(sharewheel("repair", wheel, "-w", tmp_path / "dry", "--dry-run", "--json", "--add-path",
                                   kit.add_path, "--include-symbols", "--include-imports").stdout)
    assert {k: v for k, v in plan["vendored_from"].items() if not k.endswith(".dll")} == {
        f"{LIBS}/extra.pdb": str(kit.bin / "extra.pdb"), f"{LIBS}/extra.lib": str(kit.bin / "extra.lib")}
