"""macOS wheels, packed and repaired on this (Linux) host, with real Mach-O files built by zig and lld.

What is verified here is structural: load commands, install names, rpaths, code signatures (by an
independent verifier) and, with a model of dyld's search rules, that every load command of the
installed layout resolves. Whether dyld loads it is for a Mac to confirm (see the README).
"""

from __future__ import annotations

import json
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
    sharewheel,
    unpack,
)
from macho_support import (
    build_bundle_lld,
    build_dylib,
    build_extension,
    dyld_resolves,
    load_commands,
    make_fat,
    verify_code_signature,
)
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

pytest_plugins = ["macho_support"]

TARGETS = {"arm64": ["arm64"], "x86_64": ["x86_64"], "universal2": ["x86_64", "arm64"]}
PLATFORMS = {"arm64": "macosx_11_0_arm64", "x86_64": "macosx_10_13_x86_64", "universal2": "macosx_10_13_universal2"}






def machos(tree: Path) -> list[Path]:
    return [p for p in sorted(tree.rglob("*")) if p.is_file() and p.suffix in (".so", ".dylib")]


def build_for(variant: str, build_one, out: Path) -> Path:
    """A thin file, or the universal2 file of both thin builds."""
    if len(TARGETS[variant]) == 1:
        return build_one(TARGETS[variant][0], out)
    return make_fat(out, [build_one(target, out.parent / target / out.name) for target in TARGETS[variant]])


@dataclass(frozen=True)
class MacCase:
    variant: str
    prefix: object
    provider: Path
    unique: str
    extra: Path
    input: Path
    output: Path


@pytest.fixture(scope="module")
def mac_case(request, tmp_path_factory, zig, macos_prefixes, build_env: BuildEnv):
    cache: dict[str, MacCase] = {}

    def get(variant: str) -> MacCase:
        if variant in cache:
            return cache[variant]
        base = tmp_path_factory.mktemp(f"mac-{variant}")
        prefix = macos_prefixes(variant)
        sharewheel("pack", prefix.root, "--name", "acme-native", "--version", "3.1.4", "-w", base / "providers")
        provider = one(list((base / "providers").glob("*.whl")))
        unique = manifest_of(provider)["provides"]["libraries"][0]["unique_name"]
        installed = unpack(provider, base / "build-site") / "acme_native" / "lib" / unique
        extra_dir = base / "extra" / "lib"
        extra = build_for(variant, lambda target, out: build_dylib(
            zig, target, out, "int extra_twice(int x) { return 2 * x; }\n",
            str(extra_dir / "libextra.1.dylib")), extra_dir / "libextra.1.dylib")
        extension = build_for(variant, lambda target, out: build_extension(
            zig, target, out.parent, calls=["acme_add", "extra_twice"], links=[installed, extra],
            rpaths=[str(installed.parent)]),  # a build-machine rpath, as a real build leaves
            base / "ext" / "_core.cpython-311-darwin.so")
        wheel = prebuilt_wheel(build_env, base, extension, PLATFORMS[variant])
        output = repair(wheel, base / "wheelhouse", "--provider", provider)
        cache[variant] = MacCase(variant, prefix, provider, unique, extra, wheel, output)
        return cache[variant]

    return get


@pytest.mark.parametrize("variant", ["arm64", "x86_64", "universal2"])
def test_pack_gives_an_rpath_install_name_and_a_valid_signature(variant: str, macos_prefixes, tmp_path: Path) -> None:
    prefix = macos_prefixes(variant)
    sharewheel("pack", prefix.root, "--name", "acme-native", "--version", "3.1.4", "-w", tmp_path)
    wheel = one(list(tmp_path.glob("*.whl")))
    assert wheel.name.endswith(f"-py3-none-{PLATFORMS[variant]}.whl")
    [library] = manifest_of(wheel)["provides"]["libraries"]
    assert library["name"] == "libacme.3.dylib"
    tree = unpack(wheel, tmp_path / "tree")
    dylib = tree / library["path"]
    commands = load_commands(dylib)
    assert sorted(commands) == sorted(TARGETS[variant])
    for arch, info in commands.items():
        assert info["id"] == f"@rpath/{library['unique_name']}", arch
        assert not [r for r in info["rpaths"] if r.startswith("/")]
    assert verify_code_signature(dylib) == []
    assert (tree / "acme_native" / "lib" / "pkgconfig" / "acme.pc").is_file()
    assert (tree / "acme_native" / "include" / "acme.h").is_file()


@pytest.mark.parametrize("variant", ["arm64", "universal2"])
def test_repair_relinks_vendors_and_signs(variant: str, mac_case, tmp_path: Path) -> None:
    case = mac_case(variant)
    assert case.output.name == f"acme_consumer-1.0.0-cp311-cp311-{PLATFORMS[variant]}.whl"
    tree = unpack(case.output, tmp_path / "out")
    names = [p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()]
    assert not [n for n in names if "libacme" in n], names
    assert "acme_consumer/.dylibs/libextra.1.dylib" in names
    extension = tree / "acme_consumer" / "_core.cpython-311-darwin.so"
    for arch, info in load_commands(extension).items():  # each slice of a universal2 file
        assert f"@rpath/{case.unique}" in info["dylibs"], arch
        assert "@loader_path/.dylibs/libextra.1.dylib" in info["dylibs"], arch
        assert info["rpaths"] == ["@loader_path/../acme_native/lib"], arch
    assert sorted(load_commands(extension)) == sorted(TARGETS[variant])
    for binary in machos(tree):
        for arch, info in load_commands(binary).items():
            absolute = [n for n in [*info["dylibs"], *info["rpaths"], info["id"] or ""]
                        if n.startswith("/") and not n.startswith(("/usr/lib/", "/System/", "/DLC/"))]
            assert absolute == [], (binary, arch)
        assert verify_code_signature(binary) == [], binary
    metadata = (tree / "acme_consumer-1.0.0.dist-info" / "METADATA").read_text()
    [requirement] = [Requirement(l.split(":", 1)[1]) for l in metadata.splitlines() if l.startswith("Requires-Dist:")]
    assert requirement.name == "acme-native" and requirement.specifier == SpecifierSet(">=3.1.4,==3.*")
    assert "_sharewheel_providers" in (tree / "acme_consumer" / "__init__.py").read_text()


def test_consumer_built_against_the_original_install_name(mac_case, zig, build_env: BuildEnv, tmp_path: Path) -> None:
    case = mac_case("arm64")
    extension = build_extension(zig, "arm64", tmp_path / "ext", calls=["acme_add"], links=[case.prefix.link])
    assert case.prefix.install_name in load_commands(extension)["arm64"]["dylibs"]
    wheel = prebuilt_wheel(build_env, tmp_path, extension, PLATFORMS["arm64"])
    output = repair(wheel, tmp_path / "wheelhouse", "--provider", case.provider)
    tree = unpack(output, tmp_path / "out")
    info = load_commands(tree / "acme_consumer" / "_core.cpython-311-darwin.so")["arm64"]
    assert f"@rpath/{case.unique}" in info["dylibs"] and case.prefix.install_name not in info["dylibs"]
    assert verify_code_signature(tree / "acme_consumer" / "_core.cpython-311-darwin.so") == []


@pytest.mark.parametrize("variant", ["arm64", "universal2"])
def test_minus_l_original_name_links_the_unique_dylib_through_the_text_stub(variant: str, mac_case, zig,
                                                                           tmp_path: Path) -> None:
    """Builds that pass `-lacme` themselves (setuptools `libraries=["acme"]`) and take only `-L` from
    pkg-config: the wheel's lib/libacme.tbd names the unique dylib, so zig's linker records
    @rpath/<unique> with the dylib's own versions (dyld compares the compatibility version)."""
    case = mac_case(variant)
    lib_dir = unpack(case.provider, tmp_path / "site") / "acme_native" / "lib"
    stub = (lib_dir / "libacme.tbd").read_text()
    assert f"install-name:    '@rpath/{case.unique}'" in stub and "'_acme_add'" in stub
    assert f"targets:         [ {', '.join(f'{a}-macos' for a in sorted(TARGETS[variant]))} ]" in stub
    dylib_id = load_commands(lib_dir / case.unique)
    extension = build_for(variant, lambda target, out: build_extension(
        zig, target, out.parent, calls=["acme_add"], extra_args=[f"-L{lib_dir}", "-lacme"]),
        tmp_path / "ext" / "_core.cpython-311-darwin.so")
    for arch, info in load_commands(extension).items():
        assert f"@rpath/{case.unique}" in info["dylibs"], (arch, info)
        assert not [d for d in info["dylibs"] if "libacme.3" in d or d.endswith("libacme.tbd")]
    assert sorted(load_commands(extension)) == sorted(dylib_id)


def test_bundle_with_chained_fixups(mac_case, zig, build_env: BuildEnv, tmp_path: Path) -> None:
    """What Xcode makes: an MH_BUNDLE with LC_DYLD_CHAINED_FIXUPS and little header padding."""
    case = mac_case("arm64")
    bundle = build_bundle_lld(zig, "arm64", tmp_path / "ext" / "_core.cpython-311-darwin.so",
                              calls=["acme_add", "extra_twice"], links=[case.prefix.link, case.extra])
    before = load_commands(bundle)["arm64"]
    assert before["filetype"] == 8 and before["chained_fixups"]
    wheel = prebuilt_wheel(build_env, tmp_path, bundle, PLATFORMS["arm64"])
    output = repair(wheel, tmp_path / "wheelhouse", "--provider", case.provider)
    tree = unpack(output, tmp_path / "out")
    repaired = tree / "acme_consumer" / "_core.cpython-311-darwin.so"
    after = load_commands(repaired)["arm64"]
    assert after["filetype"] == 8 and after["chained_fixups"]
    assert sorted(after["dylibs"]) == sorted(
        ["/usr/lib/libSystem.B.dylib", f"@rpath/{case.unique}", "@loader_path/.dylibs/libextra.1.dylib"])
    assert verify_code_signature(repaired) == []


def test_dyld_resolves_the_installed_layout_only_with_the_preload(mac_case, build_env: BuildEnv, tmp_path: Path) -> None:
    case = mac_case("arm64")
    site_a = pip_target_for(build_env, case.provider, tmp_path / "A", PLATFORMS["arm64"])
    site_b = pip_target_for(build_env, case.output, tmp_path / "B", PLATFORMS["arm64"])
    provided = site_a / "acme_native" / "lib" / case.unique
    extension = site_b / "acme_consumer" / "_core.cpython-311-darwin.so"

    preloaded = dyld_resolves([site_b], preloaded=[provided])
    assert preloaded.ok, str(preloaded)
    assert preloaded.how(extension, f"@rpath/{case.unique}") == "by-install-name"

    without = dyld_resolves([site_b])
    assert not without.ok and without.how(extension, f"@rpath/{case.unique}") is None

    # one site-packages: the LC_RPATH fallback alone finds it
    site_c = pip_target_for(build_env, case.provider, tmp_path / "C", PLATFORMS["arm64"])
    pip_target_for(build_env, case.output, site_c, PLATFORMS["arm64"])
    together = dyld_resolves([site_c / "acme_consumer"])
    assert together.ok, str(together)
    assert together.how(site_c / "acme_consumer" / "_core.cpython-311-darwin.so", f"@rpath/{case.unique}") == "by-rpath"


def test_show_understands_macos_wheels(mac_case) -> None:
    case = mac_case("arm64")
    report = json.loads(sharewheel("show", case.input, "--provider", case.provider, "--json").stdout)
    states = {n["name"]: n["state"] for needs in report["binaries"].values() for n in needs}
    assert states[f"@rpath/{case.unique}"] == "provided"
    assert states[str(case.extra)] == "external"
    assert states["/usr/lib/libSystem.B.dylib"] == "policy"


def _error_line(result) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("sharewheel: error: ")
    return line


def test_bad_macho_input(mac_case, build_env: BuildEnv, tmp_path: Path) -> None:
    case = mac_case("arm64")
    truncated = tmp_path / "trunc" / "_core.cpython-311-darwin.so"
    truncated.parent.mkdir()
    truncated.write_bytes(case.extra.read_bytes()[:600])
    wrong_magic = tmp_path / "magic" / "_core.cpython-311-darwin.so"
    wrong_magic.parent.mkdir()
    wrong_magic.write_text("#!/bin/sh\necho not a Mach-O file\n")
    for binary, words in ((truncated, "malformed Mach-O"), (wrong_magic, "not a Mach-O file")):
        wheel = prebuilt_wheel(build_env, binary.parent, binary, PLATFORMS["arm64"])
        out = binary.parent / "wheelhouse"
        line = _error_line(sharewheel("repair", wheel, "--provider", case.provider, "-w", out, check=False))
        assert words in line and "_core.cpython-311-darwin.so" in line
        assert not list(out.glob("*.whl"))

    # a fat file missing an architecture --require-archs asks for
    out = tmp_path / "archs"
    line = _error_line(sharewheel("repair", case.input, "--provider", case.provider, "--require-archs",
                                  "universal2", "-w", out, check=False))
    assert "x86_64" in line
    assert not list(out.glob("*.whl"))


def test_require_archs_and_reproducibility(mac_case, tmp_path: Path) -> None:
    case = mac_case("universal2")
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    first = repair(case.input, tmp_path / "one", "--provider", case.provider, "--require-archs", "arm64,x86_64", env=env)
    second = repair(case.input, tmp_path / "two", "--provider", case.provider, "--require-archs", "universal2", env=env)
    assert first.read_bytes() == second.read_bytes()
    again = repair(first, tmp_path / "again", "--provider", case.provider, env=env)
    assert again.read_bytes() == first.read_bytes()
