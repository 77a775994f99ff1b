"""Windows wheels, packed and repaired on this (Linux) host, with real PE files built by zig and
the Windows loader's behaviour checked under wine."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    BuildEnv,
    manifest_of,
    one,
    pip_target_for,
    prebuilt_wheel,
    repair,
    run,
    sharewheel,
    unpack,
)
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from pe_support import (
    build_pyd,
    host_load,
    link_dll_lld,
    pe_checksum_ok,
    pe_export_name,
    pe_imports,
    pe_machine,
    pe_sections_ok,
    pyd_result,
)

pytest_plugins = ["pe_support"]

PYD = "_core.cp311-win_amd64.pyd"






def imported(path: Path) -> list[str]:
    names = pe_imports(path)
    return [*names["imports"], *names["delay_imports"]]


@dataclass(frozen=True)
class WinCase:
    prefix: object
    provider: Path
    unique: str
    extra_dir: Path
    input: Path
    output: Path


@pytest.fixture(scope="module")
def win_case(tmp_path_factory, windows_prefixes, pe_extra, pe_consumer_pyd, build_env: BuildEnv) -> WinCase:
    base = tmp_path_factory.mktemp("win")
    prefix = windows_prefixes("3.1.4")
    sharewheel("pack", prefix.root, "--name", "acme-native", "--version", "3.1.4", "-w", base / "providers")
    provider = one(list((base / "providers").glob("*.whl")))
    unique = manifest_of(provider)["provides"]["libraries"][0]["unique_name"]
    wheel = prebuilt_wheel(build_env, base, pe_consumer_pyd, "win_amd64")
    extra_dir = pe_extra.dll.parent
    output = repair(wheel, base / "wheelhouse", "--provider", provider,
                    env={"PATH": f"{extra_dir}{os.pathsep}{os.environ['PATH']}"})
    return WinCase(prefix, provider, unique, extra_dir, wheel, output)


def test_pack_renames_the_dll_and_its_export_name(win_case: WinCase, tmp_path: Path) -> None:
    assert win_case.provider.name == "acme_native-3.1.4-py3-none-win_amd64.whl"
    [library] = manifest_of(win_case.provider)["provides"]["libraries"]
    assert library["name"] == win_case.prefix.dll.name
    assert library["unique_name"].endswith(".dll") and "-sw" in library["unique_name"]
    tree = unpack(win_case.provider, tmp_path)
    dll = tree / library["path"]
    assert pe_export_name(dll) == library["unique_name"]
    assert pe_machine(dll) == "amd64"
    assert pe_checksum_ok(dll) and pe_sections_ok(dll)
    assert (tree / "acme_native" / "lib" / win_case.prefix.implib.name).is_file()  # consumers link with it


def test_repair_renames_imports_and_vendors_as_delvewheel(win_case: WinCase, tmp_path: Path) -> None:
    assert win_case.output.name == win_case.input.name  # delvewheel does not retag
    tree = unpack(win_case.output, tmp_path)
    pyd = tree / "acme_consumer" / PYD
    names = imported(pyd)
    assert win_case.unique in names and win_case.prefix.dll.name not in names
    vendored = sorted(p.name for p in (tree / "acme_consumer.libs").glob("*.dll"))
    assert len(vendored) == 1 and vendored[0].startswith("extra-") and vendored[0] != "extra.dll"
    assert vendored[0] in names and "extra.dll" not in names  # mangled, as delvewheel does
    assert not [p for p in tree.rglob("*") if "libacme" in p.name.lower()]
    for binary in (pyd, tree / "acme_consumer.libs" / vendored[0]):
        assert pe_checksum_ok(binary) and pe_sections_ok(binary), binary
    init = (tree / "acme_consumer" / "__init__.py").read_text()
    assert "_sharewheel_providers" in init and "_delvewheel_patch" in init  # both hooks coexist
    metadata = next(tree.glob("*.dist-info")).joinpath("METADATA").read_text()
    [requirement] = [Requirement(l.split(":", 1)[1]) for l in metadata.splitlines() if l.startswith("Requires-Dist:")]
    assert requirement.name == "acme-native" and requirement.specifier == SpecifierSet(">=3.1.4,==3.*")


def test_hook_is_added_when_delvewheel_has_nothing_to_vendor(win_case: WinCase, pe_zig, build_env: BuildEnv,
                                                             tmp_path: Path) -> None:
    pyd = build_pyd(pe_zig, tmp_path / "pyd" / PYD, links=[win_case.prefix.implib],
                    include_dirs=[win_case.prefix.include_dir], extra=False)
    wheel = prebuilt_wheel(build_env, tmp_path, pyd, "win_amd64")
    tree = unpack(repair(wheel, tmp_path / "wheelhouse", "--provider", win_case.provider), tmp_path / "out")
    assert win_case.unique in imported(tree / "acme_consumer" / PYD)
    init = (tree / "acme_consumer" / "__init__.py").read_text()
    assert "_sharewheel_providers" in init and "_delvewheel_patch" not in init
    assert not (tree / "acme_consumer.libs").exists()


def test_windows_loader_uses_the_preloaded_provider(win_case: WinCase, wine, pe_host_exe, build_env: BuildEnv,
                                                    tmp_path: Path) -> None:
    """What Python and the provider's load() do: the provider DLL is loaded by full path from
    directory A, then the repaired extension from directory B resolves its import by name."""
    site_a = pip_target_for(build_env, win_case.provider, tmp_path / "A", "win_amd64")
    site_b = pip_target_for(build_env, win_case.output, tmp_path / "B", "win_amd64")
    provided = site_a / "acme_native" / "lib" / win_case.unique
    libs = site_b / "acme_consumer.libs"  # what delvewheel's __init__ patch adds with add_dll_directory
    pyd = site_b / "acme_consumer" / PYD
    empty = tmp_path / "cwd"
    empty.mkdir()
    loaded = host_load(pe_host_exe, provided, pyd, cwd=empty, dll_dirs=[libs])
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert loaded.stdout.split() == [str(pyd_result(3))]
    without = host_load(pe_host_exe, pyd, cwd=empty, dll_dirs=[libs])
    assert without.returncode != 0 and "126" in without.stdout, without.stdout


def _error_line(result) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("sharewheel: error: ")
    return line


def test_bad_pe_input(win_case: WinCase, pe_consumer_pyd: Path, build_env: BuildEnv, tmp_path: Path) -> None:
    truncated = tmp_path / "trunc" / PYD
    truncated.parent.mkdir()
    truncated.write_bytes(pe_consumer_pyd.read_bytes()[:1000])
    wheel = prebuilt_wheel(build_env, truncated.parent, truncated, "win_amd64")
    out = tmp_path / "out1"
    line = _error_line(sharewheel("repair", wheel, "--provider", win_case.provider, "-w", out, check=False))
    assert PYD in line and ("malformed PE" in line or "not a PE file" in line)
    assert not list(out.glob("*.whl"))

    # an x86-64 extension in a wheel tagged for 32-bit Windows
    wrong = tmp_path / "machine"
    wrong.mkdir()
    wheel = prebuilt_wheel(build_env, wrong, pe_consumer_pyd, "win32")
    out = tmp_path / "out2"
    line = _error_line(sharewheel("repair", wheel, "-w", out, check=False))
    assert "win_amd64" in line and "win32" in line
    assert not list(out.glob("*.whl"))


def test_delay_imports_are_renamed_too(win_case: WinCase, pe_zig, build_env: BuildEnv, tmp_path: Path) -> None:
    source = (
        "int acme_add(int, int);\n"
        "void *__delayLoadHelper2(void *d, void *f) { return 0; }  /* a stub: this file is for reading */\n"
        "__declspec(dllexport) void *PyInit__core(void) { return (void *)(long long)acme_add(1, 2); }\n"
    )
    pyd = link_dll_lld(pe_zig, tmp_path / "pyd" / PYD, source, links=[win_case.prefix.implib],
                       delayload=[win_case.prefix.dll.name])
    assert pe_imports(pyd)["delay_imports"] == [win_case.prefix.dll.name]
    wheel = prebuilt_wheel(build_env, tmp_path, pyd, "win_amd64")
    tree = unpack(repair(wheel, tmp_path / "wheelhouse", "--provider", win_case.provider), tmp_path / "out")
    repaired = tree / "acme_consumer" / PYD
    assert pe_imports(repaired)["delay_imports"] == [win_case.unique]
    assert pe_checksum_ok(repaired) and pe_sections_ok(repaired)


def test_delvewheel_copy_is_unvendored_and_its_load_order_pruned(win_case: WinCase, tmp_path: Path) -> None:
    """A wheel delvewheel repaired (both DLLs vendored under mangled names, a .load-order file
    naming them): sharewheel removes the provided copy, relinks the pyd to the provider and
    drops the copy from the load-order file, which delvewheel's patch reads on older Pythons."""
    # delvewheel writes the load-order file only for wheels that may run on Python < 3.10: py3
    cp311 = Path(shutil.copy(win_case.input, tmp_path))
    run([sys.executable, "-m", "wheel", "tags", "--python-tag", "py3", "--abi-tag", "none", cp311])
    py3 = one(list(tmp_path.glob("*-py3-none-win_amd64.whl")))
    dll_dirs = os.pathsep.join(map(str, (win_case.prefix.dll.parent, win_case.extra_dir)))
    run([sys.executable, "-m", "delvewheel", "repair", "--add-path", dll_dirs, "-w", tmp_path / "delvewheel", py3])
    delvewheeled = one(list((tmp_path / "delvewheel").glob("*.whl")))
    before = unpack(delvewheeled, tmp_path / "before")
    [order_file] = (before / "acme_consumer.libs").glob(".load-order-*")
    copies = order_file.read_text().split()
    acme_copy = one([c for c in copies if c.lower().startswith("libacme-3-")])
    extra_copy = one([c for c in copies if c.lower().startswith("extra-")])

    output = repair(delvewheeled, tmp_path / "out", "--provider", win_case.provider)
    after = unpack(output, tmp_path / "after")
    assert sorted(p.name for p in (after / "acme_consumer.libs").iterdir()) == sorted([extra_copy, order_file.name])
    assert (after / "acme_consumer.libs" / order_file.name).read_text().split() == [extra_copy]
    names = imported(after / "acme_consumer" / PYD)
    assert win_case.unique in names and extra_copy in names and acme_copy not in names
