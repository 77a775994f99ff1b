"""`sharewheel pack` on real gcc-built prefixes: the provider wheel installs, loads, links."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from conftest import (
    BuildEnv,
    RunEnv,
    build_acme,
    build_c_library,
    elf_dynamic,
    manifest_of,
    one,
    pip_target,
    run,
    sharewheel,
)
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet


def test_packed_provider_installs_loads_and_links(packed, build_env: BuildEnv, run_env: RunEnv,
                                                  tmp_path: Path) -> None:
    wheel = packed("3.1.4")
    assert wheel.name.startswith("acme_native-3.1.4-py3-none-manylinux")
    provides = manifest_of(wheel)["provides"]
    [library] = provides["libraries"]
    assert library["name"] == "libacme.so.3"
    unique = library["unique_name"]
    assert unique.startswith("libacme-sw") and unique.endswith(".so")

    site = pip_target(build_env, wheel, tmp_path / "site")
    package = site / "acme_native"
    assert elf_dynamic(package / "lib" / unique)["soname"] == [unique]
    result = run_env.run(
        """
        import acme_native, os
        maps = {line.split()[-1] for line in open("/proc/self/maps") if "libacme" in line}
        print(sorted(maps))
        print(acme_native.get_include_dir(), acme_native.get_lib_dir(), acme_native.get_pkgconfig_dir())
        """,
        [site],
    )
    loaded, dirs = result.stdout.splitlines()
    assert loaded == repr([str(package / "lib" / unique)])  # loaded on import, from its own dir
    assert dirs.split() == [str(package / "include"), str(package / "lib"), str(package / "lib" / "pkgconfig")]

    # pkg-config with the provider's pkgconfig dir compiles and links a program to the unique name
    env = {"PKG_CONFIG_PATH": str(package / "lib" / "pkgconfig")}
    flags = run([build_env.bin / "pkg-config", "--cflags", "--libs", "acme"], env=env).stdout.split()
    include_dirs = [os.path.normpath(f[2:]) for f in flags if f.startswith("-I")]
    assert include_dirs == [str(package / "include")] and f"-l{unique[3:-3]}" in flags
    (tmp_path / "main.c").write_text('#include <acme.h>\nint main(void) { return acme_add(1, 2) == 3 ? 0 : 1; }\n')
    run(["gcc", "-O2", tmp_path / "main.c", "-o", tmp_path / "main", *flags])
    assert elf_dynamic(tmp_path / "main")["needed"][0] == unique
    # a build that passes -lacme itself links through the GNU ld script to the same name
    run(["gcc", "-O2", tmp_path / "main.c", "-o", tmp_path / "main2", f"-I{package / 'include'}",
         f"-L{package / 'lib'}", "-lacme"])
    assert elf_dynamic(tmp_path / "main2")["needed"][0] == unique
    run([tmp_path / "main"], env={"LD_LIBRARY_PATH": str(package / "lib")})

    with zipfile.ZipFile(wheel) as zf:
        entry_points = zf.read("acme_native-3.1.4.dist-info/entry_points.txt").decode()
    assert "[sharewheel.providers]\nacme-native = acme_native" in entry_points
    assert "[pkg_config]\nacme = acme_native.lib.pkgconfig" in entry_points


def test_pack_plat(tmp_path: Path) -> None:
    prefix = build_acme(tmp_path / "prefix", "3.1.4")
    sharewheel("pack", prefix, "--name", "acme-native", "--version", "3.1.4", "--plat", "manylinux_2_28_x86_64",
               "-w", tmp_path / "wheelhouse")
    wheel = one(list((tmp_path / "wheelhouse").glob("*.whl")))
    assert "manylinux_2_28_x86_64" in wheel.name
    assert "manylinux_2_28_x86_64" in manifest_of(wheel)["provides"]["platform"].split(".")


def test_unique_name_follows_the_abi_series_not_the_contents(packed) -> None:
    names = {v: manifest_of(packed(v))["provides"]["libraries"][0]["unique_name"] for v in ("3.1.4", "3.2.0", "4.0.0")}
    shas = {v: manifest_of(packed(v))["provides"]["libraries"][0]["sha256"] for v in ("3.1.4", "3.2.0")}
    assert shas["3.1.4"] != shas["3.2.0"]  # different builds...
    assert names["3.1.4"] == names["3.2.0"]  # ...one series, one name
    assert names["4.0.0"] != names["3.1.4"]
    # with the minor policy, 3.1 and 3.2 are two series
    assert manifest_of(packed("3.2.0", "minor"))["provides"]["libraries"][0]["unique_name"] != names["3.2.0"]


def test_provider_requiring_another_provider(packed, build_env: BuildEnv, run_env: RunEnv, tmp_path: Path) -> None:
    acme = packed("3.1.4")
    acme_prefix = build_acme(tmp_path / "acme", "3.1.4")
    prefix = tmp_path / "extra-prefix"
    build_c_library(prefix, "other", "libother.so.1", "int other_offset(void) { return 100; }\n")
    build_c_library(
        prefix, "acme-extra", "libacme-extra.so.1",
        """
        #include <acme.h>
        int other_offset(void);
        int acme_extra_value(void) { return acme_add(acme_series(), other_offset()); }
        """,
        links=["acme", "other"], lib_dirs=[acme_prefix / "lib", prefix / "lib"],
        include_dirs=[acme_prefix / "include"],
    )
    sharewheel("pack", prefix, "--name", "acme-extra-native", "--version", "1.0.0", "--lib", "acme-extra",
               "--requires", "acme-native", "--provider", acme, "-w", tmp_path / "wheelhouse")
    wheel = one(list((tmp_path / "wheelhouse").glob("*.whl")))
    assert "-py3-none-manylinux" in wheel.name

    manifest = manifest_of(wheel)
    acme_unique = manifest_of(acme)["provides"]["libraries"][0]["unique_name"]
    assert manifest["provides"]["requires"] == ["acme-native"]
    [link] = manifest["links"]
    assert (link["original"], link["needed"], link["provider"]) == ("libacme.so.3", acme_unique, "acme-native")
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read("acme_extra_native-1.0.0.dist-info/METADATA").decode()
        names = zf.namelist()
    [requirement] = [Requirement(l.split(":", 1)[1]) for l in metadata.splitlines() if l.startswith("Requires-Dist:")]
    assert requirement.name == "acme-native" and requirement.specifier == SpecifierSet(">=3.1.4,==3.*")
    vendored = [n for n in names if n.startswith("acme_extra_native.libs/")]
    assert len(vendored) == 1 and Path(vendored[0]).name.startswith("libother-"), names

    site_a = pip_target(build_env, acme, tmp_path / "A")
    site_c = pip_target(build_env, wheel, tmp_path / "C")
    extra_unique = manifest["provides"]["libraries"][0]["unique_name"]
    needed = elf_dynamic(site_c / "acme_extra_native" / "lib" / extra_unique)["needed"]
    assert acme_unique in needed and Path(vendored[0]).name in needed and "libacme.so.3" not in needed
    code = f"""
        import ctypes, os, sys
        import acme_extra_native
        assert "acme_native" in sys.modules, "acme-native must be loaded first"
        lib = ctypes.CDLL(os.path.join(acme_extra_native.get_lib_dir(), {extra_unique!r}))
        print(lib.acme_extra_value())
        """
    # split install, both orders: only the preload can satisfy libacme's unique soname
    assert run_env.run(code, [site_c, site_a]).stdout.strip() == "103"
    assert run_env.run(code, [site_a, site_c]).stdout.strip() == "103"
    failed = run_env.run(code, [site_c], check=False)
    assert failed.returncode != 0 and "pip install 'acme-native" in failed.stderr
