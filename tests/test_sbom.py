"""CycloneDX SBOMs (issue 17): `<dist-info>/sboms/sharewheel.cdx.json` in wheels repaired on all
three OSes and in provider wheels, validated against the CycloneDX 1.6 JSON schema (strict: no
property the schema does not define) that cyclonedx-python-lib bundles, and checked against the
provider manifests and the bytes in the wheels."""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    CONSUMER_C,
    BuildEnv,
    RunEnv,
    manifest_of,
    one,
    pip_target,
    pip_target_for,
    prebuilt_wheel,
    repair,
    requires_dist,
    run,
    sharewheel,
    unpack,
)
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from macho_support import build_dylib, build_extension
from test_hostile import edit_wheel

pytest_plugins = ["macho_support", "pe_support"]

SBOM = ".dist-info/sboms/sharewheel.cdx.json"


def libgomp() -> Path:
    """GCC's OpenMP runtime (Debian's libgomp1, which gcc depends on): a library auditwheel vendors
    and the host's dpkg knows."""
    found = Path(run(["gcc", "-print-file-name=libgomp.so.1"]).stdout.strip())
    if not found.is_absolute() or not found.is_file():
        pytest.fail("gcc has no libgomp.so.1: the Linux cases vendor it (apt-get install libgomp1)", pytrace=False)
    return found


def sbom_text(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(one([n for n in zf.namelist() if n.endswith(SBOM)])).decode()


def validated(wheel: Path) -> dict:
    """The wheel's SBOM, after the CycloneDX 1.6 schema (strict) accepted it."""
    text = sbom_text(wheel)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, f"{wheel.name}: {error}"
    return json.loads(text)


def properties(component: dict) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for prop in component.get("properties", []):
        found.setdefault(prop["name"], []).append(prop["value"])
    return found


def sha256_of(component: dict) -> str:
    return one([h["content"] for h in component["hashes"] if h["alg"] == "SHA-256"])


def check_consumer_sbom(wheel: Path, provider: Path) -> dict[str, dict]:
    """The checks every repaired wheel's SBOM passes; returns its vendored components by path."""
    sbom = validated(wheel)
    assert sbom["specVersion"] == "1.6" and "timestamp" not in sbom["metadata"]  # (no SOURCE_DATE_EPOCH)
    wheel_ref = sbom["metadata"]["component"]["bom-ref"]
    assert wheel_ref == f"pkg:pypi/acme-consumer@1.0.0?file_name={wheel.name}"
    provides = manifest_of(provider)["provides"]
    [component] = [c for c in sbom["components"] if c["name"] == "acme-native"]
    assert component["version"] == provides["version"] == "3.1.4"
    assert component["purl"] == "pkg:pypi/acme-native@3.1.4"
    [library] = component["components"]
    [provided] = provides["libraries"]
    assert library["name"] == provided["unique_name"]
    assert sha256_of(library) == provided["sha256"]
    with zipfile.ZipFile(provider) as zf:
        assert provided["sha256"] == hashlib.sha256(zf.read(provided["path"])).hexdigest()
    assert properties(library)["sharewheel:original-name"] == [provided["name"]]
    assert properties(component)["sharewheel:requirement"] == [str(r) for r in requires_dist(wheel)]
    [consumer_deps] = [d for d in sbom["dependencies"] if d["ref"] == wheel_ref]
    assert component["bom-ref"] in consumer_deps["dependsOn"]
    vendored = {one(properties(c)["sharewheel:vendored-path"]): c for c in sbom["components"]
                if "sharewheel:vendored-path" in properties(c)}
    with zipfile.ZipFile(wheel) as zf:
        for path, entry in vendored.items():
            assert sha256_of(entry) == hashlib.sha256(zf.read(path)).hexdigest(), path
            assert entry["bom-ref"] in consumer_deps["dependsOn"]
    return vendored


def test_the_validator_rejects_what_the_schema_does_not_allow(tmp_path: Path) -> None:
    """The check below is live: a hash algorithm the schema does not list fails it."""
    bad = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
           "components": [{"type": "library", "name": "x", "hashes": [{"alg": "sha256", "content": "00"}]}]}
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bad)) is not None


# --- Linux: gcc-built, vendoring libextra (no package) and Debian's libz, linking the provider ---


@pytest.fixture(scope="module")
def linux_case(tmp_path_factory: pytest.TempPathFactory, build_env: BuildEnv, packed: Callable[..., Path],
               extra_prefix: Path) -> tuple[Path, Path, Path]:
    """(provider, input wheel, repaired wheel)."""
    base = tmp_path_factory.mktemp("sbom-linux")
    provider = packed("3.1.4")
    site = pip_target(build_env, provider, base / "build-site")
    source = base / "_core.c"
    source.write_text(CONSUMER_C.format(
        module="_core", extra_decl="int extra_twice(int); int omp_get_max_threads(void);",
        add_expr="extra_twice(acme_add(a, b)) / 2 + (omp_get_max_threads() > 0) - 1"))
    so = base / "ext" / f"_core{sysconfig.get_config_var('EXT_SUFFIX')}"
    so.parent.mkdir()
    run(["gcc", "-O2", "-fPIC", "-shared", "-o", so, source, f"-I{sysconfig.get_paths()['include']}",
         f"-I{site / 'acme_native' / 'include'}", f"-L{site / 'acme_native' / 'lib'}", "-lacme",
         f"-L{extra_prefix / 'lib'}", "-lextra", libgomp()])
    wheel = prebuilt_wheel(build_env, base, so, "linux_x86_64")
    output = repair(wheel, base / "wheelhouse", "--provider", provider,
                    env={"LD_LIBRARY_PATH": str(extra_prefix / "lib")})
    return provider, wheel, output


def test_linux_repaired_wheel(linux_case, build_env: BuildEnv, run_env: RunEnv, extra_prefix: Path,
                              tmp_path: Path) -> None:
    provider, _, output = linux_case
    vendored = check_consumer_sbom(output, provider)
    by_name = {path.rsplit("/", 1)[1].split("-")[0]: c for path, c in vendored.items()}
    assert sorted(by_name) == ["libextra", "libgomp"], sorted(vendored)
    gomp = by_name["libgomp"]  # its source package, as dpkg names it
    assert gomp["name"] == "libgomp1" and gomp["purl"].startswith("pkg:deb/debian/libgomp1@")
    assert properties(gomp)["sharewheel:source-package"] == [gomp["purl"]]
    extra = by_name["libextra"]  # built here: no package knows it, and the SBOM says so
    assert "purl" not in extra and properties(extra)["sharewheel:source-package"][0].startswith("unknown")
    assert properties(extra)["sharewheel:original-name"][0].startswith("libextra.so.1")
    # the wheel's RECORD lists it and pip installs the wheel; it runs with the provider elsewhere
    with zipfile.ZipFile(output) as zf:
        record = zf.read(one([n for n in zf.namelist() if n.endswith(".dist-info/RECORD")])).decode()
    assert any(line.startswith(one([n for n in zf.namelist() if n.endswith(SBOM)]) + ",sha256=")
               for line in record.splitlines())
    consumer_site = pip_target(build_env, output, tmp_path / "consumer")
    provider_site = pip_target(build_env, provider, tmp_path / "provider")
    result = run_env.run("import acme_consumer._core as c; print(c.add(2, 3))", [consumer_site, provider_site])
    assert result.stdout.strip() == "5"
    assert (consumer_site / one([p.name for p in consumer_site.glob("*.dist-info")]) / "sboms"
            / "sharewheel.cdx.json").is_file()


def test_linux_sbom_is_deterministic_and_dated_by_source_date_epoch(linux_case, extra_prefix: Path,
                                                                     tmp_path: Path) -> None:
    provider, wheel, output = linux_case
    env = {"LD_LIBRARY_PATH": str(extra_prefix / "lib")}
    again = repair(wheel, tmp_path / "again", "--provider", provider, env=env)
    dated = repair(wheel, tmp_path / "dated", "--provider", provider, env={**env, "SOURCE_DATE_EPOCH": "1700000000"})
    assert sbom_text(again) == sbom_text(output)
    # repairing the repaired wheel: its vendored copies described as the first repair described them
    rerepaired = repair(output, tmp_path / "rerepaired", "--provider", provider, env=env)
    assert sbom_text(rerepaired) == sbom_text(output)
    sbom = validated(dated)
    assert sbom["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"
    assert sbom["serialNumber"].startswith("urn:uuid:")
    assert sbom["serialNumber"] != json.loads(sbom_text(output))["serialNumber"]


def test_dry_run_and_show_are_unaffected(linux_case, extra_prefix: Path, tmp_path: Path) -> None:
    provider, wheel, _ = linux_case
    env = {"LD_LIBRARY_PATH": str(extra_prefix / "lib")}
    dry = sharewheel("repair", wheel, "-w", tmp_path / "out", "--provider", provider, "--dry-run", env=env)
    assert not list(tmp_path.rglob("*.whl")) and "sbom" not in dry.stdout + dry.stderr
    shown = sharewheel("show", wheel, "--provider", provider, env=env)
    assert "acme-native" in shown.stdout and "sbom" not in shown.stdout + shown.stderr


def test_a_linux_wheel_nothing_is_linked_in_gets_its_sbom_too(build_env: BuildEnv, tmp_path: Path) -> None:
    """Every repaired wheel has one (issue 17), also one that links no provider: beside auditwheel's
    own SBOM (left as auditwheel writes it), sharewheel's names the vendored libgomp, its bytes'
    SHA-256 and its Debian package; no provider component, no link."""
    source = tmp_path / "_core.c"
    source.write_text("int omp_get_max_threads(void);\nint threads(void) { return omp_get_max_threads(); }\n")
    so = tmp_path / "ext" / f"_core{sysconfig.get_config_var('EXT_SUFFIX')}"
    so.parent.mkdir()
    run(["gcc", "-O2", "-fPIC", "-shared", "-o", so, source, libgomp()])
    output = repair(prebuilt_wheel(build_env, tmp_path, so, "linux_x86_64"), tmp_path / "out")
    sbom = validated(output)
    with zipfile.ZipFile(output) as zf:
        [copy] = [n for n in zf.namelist() if "libgomp" in n and n.split("/")[0].endswith(".libs")]
        expected = hashlib.sha256(zf.read(copy)).hexdigest()
    [component] = [c for c in sbom["components"] if properties(c).get("sharewheel:vendored-path") == [copy]]
    assert sha256_of(component) == expected
    assert component.get("purl", "").startswith("pkg:deb/debian/libgomp1@"), component
    assert not [c for c in sbom["components"] if c.get("purl", "").startswith("pkg:pypi/")]


@pytest.mark.parametrize(("entry", "said"), [
    ("sboms", "sboms in the wheel is not a directory"),
    ("sboms/sharewheel.cdx.json/x", "sboms/sharewheel.cdx.json in the wheel is not a file"),
])
def test_a_wheel_with_something_else_where_the_sbom_goes(linux_case, extra_prefix: Path, entry: str, said: str,
                                                         tmp_path: Path) -> None:
    """One error line, exit 1, no output; the input stays as it was."""
    provider, wheel, _ = linux_case
    bad = edit_wheel(wheel, tmp_path, add={f"acme_consumer-1.0.0.dist-info/{entry}": b"not an SBOM\n"})
    before = bad.read_bytes()
    result = sharewheel("repair", bad, "-w", tmp_path / "out", "--provider", provider, check=False,
                        env={"LD_LIBRARY_PATH": str(extra_prefix / "lib")})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("sharewheel: error: ") and said in line, line
    assert bad.read_bytes() == before and not list(tmp_path.glob("out/*"))


# --- macOS: zig-built Mach-O ----------------------------------------------------------------


def test_macos_repaired_wheel(zig, macos_prefixes, build_env: BuildEnv, tmp_path: Path) -> None:
    prefix = macos_prefixes("arm64")
    sharewheel("pack", prefix.root, "--name", "acme-native", "--version", "3.1.4", "-w", tmp_path / "providers")
    provider = one(list((tmp_path / "providers").glob("*.whl")))
    unique = manifest_of(provider)["provides"]["libraries"][0]["unique_name"]
    installed = unpack(provider, tmp_path / "build-site") / "acme_native" / "lib" / unique
    extra = build_dylib(zig, "arm64", tmp_path / "extra" / "lib" / "libextra.1.dylib",
                        "int extra_twice(int x) { return 2 * x; }\n",
                        str(tmp_path / "extra" / "lib" / "libextra.1.dylib"))
    extension = build_extension(zig, "arm64", tmp_path / "ext", calls=["acme_add", "extra_twice"],
                                links=[installed, extra], rpaths=[str(installed.parent)])
    wheel = prebuilt_wheel(build_env, tmp_path, extension, "macosx_11_0_arm64")
    output = repair(wheel, tmp_path / "wheelhouse", "--provider", provider)
    vendored = check_consumer_sbom(output, provider)
    assert list(vendored) == ["acme_consumer/.dylibs/libextra.1.dylib"]
    [source] = properties(vendored["acme_consumer/.dylibs/libextra.1.dylib"])["sharewheel:source-package"]
    assert source == "unknown: delocate records no source package"
    assert properties(vendored["acme_consumer/.dylibs/libextra.1.dylib"])["sharewheel:original-name"] == [
        "libextra.1.dylib"]
    pip_target_for(build_env, output, tmp_path / "installed", "macosx_11_0_arm64")  # RECORD holds


# --- Windows: zig-built PE ------------------------------------------------------------------


def test_windows_repaired_wheel(windows_prefixes, pe_extra, pe_consumer_pyd, build_env: BuildEnv,
                                tmp_path: Path) -> None:
    prefix = windows_prefixes("3.1.4")
    sharewheel("pack", prefix.root, "--name", "acme-native", "--version", "3.1.4", "-w", tmp_path / "providers")
    provider = one(list((tmp_path / "providers").glob("*.whl")))
    wheel = prebuilt_wheel(build_env, tmp_path, pe_consumer_pyd, "win_amd64")
    output = repair(wheel, tmp_path / "wheelhouse", "--provider", provider,
                    env={"PATH": f"{pe_extra.dll.parent}{os.pathsep}{os.environ['PATH']}"})
    vendored = check_consumer_sbom(output, provider)
    [path] = vendored
    assert path.startswith("acme_consumer.libs/extra-") and path.endswith(".dll")
    assert properties(vendored[path])["sharewheel:source-package"] == [
        "unknown: delvewheel records no source package"]
    assert properties(vendored[path])["sharewheel:original-name"] == ["extra.dll"]  # before delvewheel's mangling
    pip_target_for(build_env, output, tmp_path / "installed", "win_amd64")  # RECORD holds
    validated(provider)  # the Windows provider's own


# --- provider wheels ------------------------------------------------------------------------


def test_provider_wheel_from_pack(tmp_path: Path, build_env: BuildEnv) -> None:
    from conftest import build_acme

    prefix = build_acme(tmp_path / "prefix", "3.1.4")
    sharewheel("pack", prefix, "--name", "acme-native", "--version", "3.1.4", "--license", "MIT",
               "-w", tmp_path / "wheelhouse")
    provider = one(list((tmp_path / "wheelhouse").glob("*.whl")))
    sbom = validated(provider)
    component = sbom["metadata"]["component"]
    assert (component["name"], component["version"]) == ("acme-native", "3.1.4")
    assert component["licenses"] == [{"expression": "MIT"}]
    [provided] = manifest_of(provider)["provides"]["libraries"]
    [library] = [c for c in sbom["components"] if c["name"] == provided["unique_name"]]
    assert library["version"] == "3.1.4" and library["licenses"] == [{"expression": "MIT"}]
    with zipfile.ZipFile(provider) as zf:
        assert sha256_of(library) == provided["sha256"] == hashlib.sha256(zf.read(provided["path"])).hexdigest()
    assert properties(library)["sharewheel:original-name"] == ["libacme.so.3"]
    pip_target(build_env, provider, tmp_path / "installed")  # RECORD holds
    dry = sharewheel("pack", prefix, "--name", "acme-native", "--version", "3.1.4", "-w", tmp_path / "dry",
                     "--dry-run")
    assert "acme_native-3.1.4.dist-info/sboms/sharewheel.cdx.json" in dry.stdout
