"""sharewheel's Windows analysis against delvewheel's, on real wheels from PyPI; and DLLs that sit
beside the binary importing them, which Windows' loader finds there.

Differential: `sharewheel show --json` (no providers) classifies each DLL a binary needs as
policy, vendored, external or missing; `delvewheel show` (run as a subprocess) lists the DLLs it
would copy into the wheel, those already in it and those it assumes the user's Windows has. Both
start from the extension modules and follow the DLLs they load (sharewheel's report is followed
the same way: through each binary's `vendored` names to that binary's own report, and its
`external` entries include what external DLLs need in turn). They must agree:

- on each wheel as published, minus delvewheel's DELVEWHEEL marker where it has one (with it,
  delvewheel refuses to analyse a wheel it repaired), with `--ignore-existing`: nothing to copy,
  the same DLLs in the wheel, the same system DLLs;
- on an unrepaired variant of each delvewheel-repaired wheel: its `<dist>.libs/` removed (with
  the marker, the `.load-order-*` file, delvewheel's patch in `__init__.py` and their RECORD
  rows), those DLLs put in a directory both tools search (delvewheel `--add-path DIR`, sharewheel
  `PATH`, which delvewheel searches): the same DLLs (and files) to copy, the same system DLLs;
  and `sharewheel repair` vendors what `delvewheel repair` does, under the same names.

Wheels (win_amd64, CPython 3.11, pinned; 20.1 MB in all, cached by `pypi_download` and shared
with tests/test_pe_reader.py): numpy 2.2.6 (12.9 MB), shapely 2.1.1 (1.7 MB) and gmpy2 2.2.1
(1.2 MB), repaired by delvewheel (mangled and unmangled names, DLLs that need DLLs); h5py 3.13.0
(3.0 MB) and pygit2 1.17.0 (1.3 MB), which ship their DLLs beside their extension modules.

Beside: CPython imports an extension module with LoadLibraryExW(LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR
| ...), so a DLL in the module's directory is found there; delvewheel alone stops at h5py with
"Unable to find library: hdf5.dll". sharewheel repairs such wheels as they are, and vendors what
those DLLs need from outside: checked on h5py and pygit2, and on a zig-built wheel run under wine.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import pip_target_for, run, sharewheel, unpack
from pe_support import build_dll, host_load, pe_checksum_ok, pe_imports
from test_hostile import edit_wheel, make_wheel, read_entries

pytest_plugins = ["pe_support"]

REPAIRED = {  # delvewheel-repaired: <dist>.libs/ and a DELVEWHEEL marker
    "numpy": ("numpy", "2.2.6", "win_amd64"),
    "shapely": ("shapely", "2.1.1", "win_amd64"),
    "gmpy2": ("gmpy2", "2.2.1", "win_amd64"),
}
BESIDE = {  # DLLs beside the extension modules that load them
    "h5py": ("h5py", "3.13.0", "win_amd64"),
    "pygit2": ("pygit2", "1.17.0", "win_amd64"),
}
BESIDE_DLLS = {"h5py": {"hdf5.dll", "hdf5_hl.dll", "zlib.dll"}, "pygit2": {"git2.dll"}}
# delvewheel's patch in __init__.py; before 1.8 it opened with an empty docstring when there was none
PATCH = re.compile(r'^(?:"""""" )?# start delvewheel patch\r?\n.*?^# end delvewheel patch\r?\n',
                   re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Verdict:
    """Lowercase DLL names by what a tool would do with them."""

    copied: frozenset[str]  # copied into the wheel (found outside it)
    copied_from: frozenset[str]  # ... the files they would be copied from
    missing: frozenset[str]  # needed, found nowhere (delvewheel lists them as copied, "Not Found")
    in_wheel: frozenset[str]
    system: frozenset[str]


def delvewheel_show(wheel: Path, *args: str | Path) -> Verdict:
    """`delvewheel show`'s three lists, parsed."""
    result = run([sys.executable, "-m", "delvewheel", "show", *args, wheel])
    assert "has already repaired this wheel" not in result.stdout, result.stdout
    sections: dict[str, dict[str, str]] = {"copied": {}, "in_wheel": {}, "system": {}}
    current = None
    for line in result.stdout.splitlines():
        if line.startswith("The following DLLs will be copied"):
            current = "copied"
        elif line.startswith("The following DLLs are already in the wheel"):
            current = "in_wheel"
        elif line.startswith("The following DLLs are assumed to be present"):
            current = "system"
        elif line.startswith("    ") and current and line.strip() != "None":
            name, _, detail = line.strip().partition(" (")
            sections[current][name.lower()] = detail.removesuffix(")")
    copied = sections["copied"]
    return Verdict(frozenset(n for n, d in copied.items() if d != "Error: Not Found"),
                   frozenset(d for d in copied.values() if d != "Error: Not Found"),
                   frozenset(n for n, d in copied.items() if d == "Error: Not Found"),
                   frozenset(sections["in_wheel"]), frozenset(sections["system"]))


def sharewheel_show(wheel: Path, env: dict[str, str] | None = None) -> tuple[Verdict, dict]:
    """`sharewheel show --json`, followed from the extension modules as delvewheel follows them."""
    report = json.loads(sharewheel("show", wheel, "--json", env=env).stdout)
    binaries: dict[str, list[dict]] = report["binaries"]
    by_name: dict[str, list[str]] = {}
    for binary in binaries:
        by_name.setdefault(posixpath.basename(binary).lower(), []).append(binary)
    todo = [b for b in binaries if b.lower().endswith(".pyd")]
    seen = set(todo)
    states: dict[str, dict[str, str | None]] = {s: {} for s in ("policy", "vendored", "external", "missing")}
    while todo:
        for need in binaries[todo.pop()]:
            lower = need["name"].lower()
            states[need["state"]][lower] = need.get("path")
            for loaded in by_name.get(lower, []) if need["state"] == "vendored" else []:
                if loaded not in seen:
                    seen.add(loaded)
                    todo.append(loaded)
    verdict = Verdict(frozenset(states["external"]), frozenset(p for p in states["external"].values() if p),
                      frozenset(states["missing"]), frozenset(states["vendored"]), frozenset(states["policy"]))
    return verdict, report


def without_marker(wheel: Path, where: Path) -> Path:
    """The wheel without delvewheel's DELVEWHEEL marker (RECORD rewritten), or itself if it has none."""
    marker = [n for n in read_entries(wheel) if n.endswith(".dist-info/DELVEWHEEL")]
    return edit_wheel(wheel, where, drop=marker) if marker else wheel


def unrepaired(wheel: Path, where: Path) -> tuple[Path, Path, set[str]]:
    """The wheel as it was before delvewheel: no <dist>.libs/ (its DLLs written to a directory of
    their own, returned), no marker, no patch in __init__.py; RECORD rewritten. Also returns the
    lowercase names of the DLLs that were in <dist>.libs."""
    entries = read_entries(wheel)
    libs = [n for n in entries if n.split("/")[0].endswith(".libs")]
    assert libs, f"{wheel.name} has no <dist>.libs directory"
    dll_dir = where / "dlls"
    dll_dir.mkdir(parents=True)
    for name in libs:
        if not name.endswith("/") and not posixpath.basename(name).startswith(".load-order"):
            (dll_dir / posixpath.basename(name)).write_bytes(entries[name])
    patched = {n: PATCH.sub("", d.decode()).encode() for n, d in entries.items()
               if n.endswith("__init__.py") and PATCH.search(d.decode("utf-8", "replace"))}
    marker = [n for n in entries if n.endswith(".dist-info/DELVEWHEEL")]
    out = edit_wheel(wheel, where / "wheel", drop=[*libs, *marker], replace=patched)
    return out, dll_dir, {p.name.lower() for p in dll_dir.glob("*.dll")}


def on_path(directory: Path) -> dict[str, str]:
    return {"PATH": f"{directory}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.parametrize("key", sorted(REPAIRED) + sorted(BESIDE))
def test_published_wheel(key: str, pypi_download, tmp_path: Path) -> None:
    wheel = without_marker(pypi_download(*{**REPAIRED, **BESIDE}[key]), tmp_path)
    theirs = delvewheel_show(wheel, "--ignore-existing")
    ours, _ = sharewheel_show(wheel)
    assert theirs.copied == ours.copied == frozenset() and theirs.missing == ours.missing == frozenset()
    assert theirs.in_wheel == ours.in_wheel and theirs.in_wheel
    assert theirs.system == ours.system and "kernel32.dll" in ours.system
    if key in BESIDE:
        assert BESIDE_DLLS[key] <= ours.in_wheel


@pytest.mark.parametrize("key", sorted(REPAIRED))
def test_unrepaired_wheel(key: str, pypi_download, tmp_path: Path) -> None:
    wheel, dll_dir, removed = unrepaired(pypi_download(*REPAIRED[key]), tmp_path)
    theirs = delvewheel_show(wheel, "--add-path", dll_dir)
    ours, _ = sharewheel_show(wheel, env=on_path(dll_dir))
    assert theirs.copied == ours.copied == removed  # every DLL of <dist>.libs, direct or not
    assert theirs.copied_from == ours.copied_from == {str(dll_dir / name) for name in os.listdir(dll_dir)
                                                       if name.lower() in removed}
    assert theirs.missing == ours.missing == frozenset()
    assert theirs.in_wheel == ours.in_wheel == frozenset()
    # sharewheel reports the system DLLs of the wheel's binaries; delvewheel's list also has those of
    # the DLLs it copies, where sharewheel reports only what it would copy besides them
    beyond = {name.lower() for path in ours.copied_from for kind in pe_imports(path).values() for name in kind}
    assert theirs.system == ours.system | (beyond - ours.copied) and "kernel32.dll" in ours.system


@pytest.mark.parametrize("key", sorted(REPAIRED))
def test_unrepaired_wheel_repairs_as_delvewheel_does(key: str, pypi_download, tmp_path: Path) -> None:
    """The same DLLs vendored under the same (mangled) names, and every binary importing the same
    names, whether delvewheel or sharewheel repairs the unrepaired wheel."""
    wheel, dll_dir, removed = unrepaired(pypi_download(*REPAIRED[key]), tmp_path)
    run([sys.executable, "-m", "delvewheel", "repair", "--add-path", dll_dir, "-w", tmp_path / "delvewheel", wheel])
    sharewheel("repair", wheel, "-w", tmp_path / "sharewheel", env=on_path(dll_dir))
    trees = {tool: unpack(next((tmp_path / tool).glob("*.whl")), tmp_path / f"{tool}-tree")
             for tool in ("delvewheel", "sharewheel")}
    binaries = {tool: {p.relative_to(tree).as_posix(): p for p in tree.rglob("*")
                       if p.suffix.lower() in (".dll", ".pyd")} for tool, tree in trees.items()}
    assert binaries["delvewheel"].keys() == binaries["sharewheel"].keys()
    vendored = {posixpath.basename(n) for n in binaries["sharewheel"] if n.split("/")[0].endswith(".libs")}
    assert len(vendored) == len(removed)
    for name, path in binaries["sharewheel"].items():
        assert pe_imports(path) == pe_imports(binaries["delvewheel"][name]), name


# --- DLLs beside the binary that imports them ----------------------------------------------

@pytest.mark.parametrize("key", sorted(BESIDE))
def test_real_wheel_with_dlls_beside_its_modules(key: str, pypi_download, tmp_path: Path) -> None:
    wheel = pypi_download(*BESIDE[key])
    alone = run([sys.executable, "-m", "delvewheel", "repair", "-w", tmp_path / "delvewheel", wheel], check=False)
    assert alone.returncode != 0 and "Unable to find library" in alone.stderr, alone.stderr  # why this matters
    result = sharewheel("repair", wheel, "-w", tmp_path / "out")
    assert "vendored nothing" in result.stdout, result.stdout
    before, after = read_entries(wheel), read_entries(next((tmp_path / "out").glob("*.whl")))
    payload = lambda entries: {n: d for n, d in entries.items() if ".dist-info/" not in n}  # noqa: E731
    assert payload(after) == payload(before)  # the DLLs stay beside their modules, untouched
    _, report = sharewheel_show(wheel)
    states = {(posixpath.basename(b), n["name"].lower()): n["state"] for b, needs in report["binaries"].items()
              for n in needs}
    assert not [k for k, state in states.items() if state in ("external", "missing")], states
    assert {name for (_, name), state in states.items() if state == "vendored"} == BESIDE_DLLS[key]


A_C = ("int b_fn(int);\nint extra_twice(int);\n"
       "__declspec(dllexport) int a_fn(void) { return extra_twice(b_fn(20)); }\n")
B_C = "__declspec(dllexport) int b_fn(int x) { return x + 1; }\n"
PYD_C = ("#include <stdint.h>\nint a_fn(void);\n"
         "__declspec(dllexport) void *PyInit__core(void) { return (void *)(intptr_t)(7000 + a_fn()); }\n")
PYD = "_core.cp311-win_amd64.pyd"


@dataclass(frozen=True)
class BesideCase:
    wheel: Path  # acme_consumer/_core.pyd, a.dll and b.dll side by side
    extra_dir: Path  # extra.dll, which a.dll imports: found on PATH only
    files: dict[str, bytes]


@pytest.fixture(scope="module")
def beside_case(pe_zig, pe_extra, tmp_path_factory: pytest.TempPathFactory) -> BesideCase:
    """_core.pyd imports a.dll, which imports b.dll (both beside it) and extra.dll (elsewhere)."""
    base = tmp_path_factory.mktemp("beside")
    b = build_dll(pe_zig, base / "pkg" / "b.dll", B_C, implib=base / "implib" / "libb.dll.a")
    a = build_dll(pe_zig, base / "pkg" / "a.dll", A_C, implib=base / "implib" / "liba.dll.a",
                  links=[b.implib, pe_extra.implib])
    pyd = build_dll(pe_zig, base / "pkg" / PYD, PYD_C, implib=base / "implib" / "_core.lib", links=[a.implib]).dll
    assert pe_imports(a.dll)["imports"][:2] == ["b.dll", "extra.dll"] and pe_imports(pyd)["imports"][0] == "a.dll"
    files = {f"acme_consumer/{p.name}": p.read_bytes() for p in (pyd, a.dll, b.dll)}
    return BesideCase(make_wheel(base / "wheel", "win_amd64", files), pe_extra.dll.parent, files)


def test_beside_dlls_stay_and_what_they_need_is_vendored(beside_case: BesideCase, build_env, wine, pe_host_exe,
                                                         tmp_path: Path) -> None:
    """a.dll and b.dll are in the wheel (beside the module); extra.dll, which a.dll needs, is not:
    repair vendors extra.dll alone, and the Windows loader (wine) loads the installed module."""
    env = on_path(beside_case.extra_dir)
    _, report = sharewheel_show(beside_case.wheel, env=env)
    states = {b: {n["name"]: n["state"] for n in needs} for b, needs in report["binaries"].items()}
    assert states[f"acme_consumer/{PYD}"]["a.dll"] == "vendored"
    assert {k: v for k, v in states["acme_consumer/a.dll"].items() if k in ("b.dll", "extra.dll")} == \
        {"b.dll": "vendored", "extra.dll": "external"}
    dry = sharewheel("repair", beside_case.wheel, "-w", tmp_path / "dry", "--dry-run", env=env)
    vendor_lines = [line for line in dry.stdout.splitlines() if line.startswith("  vendor ")]
    assert len(vendor_lines) == 1 and re.match(r"  vendor acme_consumer\.libs/extra(-[0-9a-f]+)?\.dll \(from .*extra\.dll\)",
                                               vendor_lines[0]), dry.stdout

    sharewheel("repair", beside_case.wheel, "-w", tmp_path / "out", env=env)
    output = next((tmp_path / "out").glob("*.whl"))
    entries = read_entries(output)
    vendored = [n for n in entries if n.startswith("acme_consumer.libs/") and n.endswith(".dll")]
    assert [posixpath.basename(n).split("-")[0].split(".")[0] for n in vendored] == ["extra"], vendored
    assert entries["acme_consumer/b.dll"] == beside_case.files["acme_consumer/b.dll"]
    assert entries[f"acme_consumer/{PYD}"] == beside_case.files[f"acme_consumer/{PYD}"]

    site = pip_target_for(build_env, output, tmp_path / "site", "win_amd64")
    a_dll = site / "acme_consumer" / "a.dll"
    assert posixpath.basename(vendored[0]) in pe_imports(a_dll)["imports"] and pe_checksum_ok(a_dll, allow_zero=True)
    empty = tmp_path / "cwd"
    empty.mkdir()
    libs = site / "acme_consumer.libs"  # what delvewheel's patch adds with os.add_dll_directory
    loaded = host_load(pe_host_exe, site / "acme_consumer" / PYD, cwd=empty, dll_dirs=[libs])
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert loaded.stdout.split() == ["7042"]  # 7000 + extra_twice(b_fn(20))
    without = host_load(pe_host_exe, site / "acme_consumer" / PYD, cwd=empty)  # a.dll, b.dll found; extra not
    assert without.returncode != 0 and "126" in without.stdout, without.stdout


def test_a_dll_not_beside_every_importer_is_left_to_delvewheel(beside_case: BesideCase, tmp_path: Path) -> None:
    """Another module, in a subdirectory, imports a.dll too, which is not beside it: Windows would
    not find it there, so a.dll is not declared in the wheel, and delvewheel looks for it on PATH
    (and stops: it is not there)."""
    files = {**beside_case.files, f"acme_consumer/sub/{PYD}": beside_case.files[f"acme_consumer/{PYD}"]}
    wheel = make_wheel(tmp_path / "in", "win_amd64", files)
    result = sharewheel("repair", wheel, "-w", tmp_path / "out", env=on_path(beside_case.extra_dir), check=False)
    assert result.returncode == 1 and result.stderr.strip().endswith("delvewheel: Unable to find library: a.dll"), \
        result.stderr
