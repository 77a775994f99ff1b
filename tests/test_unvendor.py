"""Unvendoring: a wheel already repaired by auditwheel (copies in `<pkg>.libs/`) is repaired again
with a provider: the copy the provider offers goes, with every copy only it needed; its users are
relinked to the provider once the provider is proven to export what they import from the copy; the
requirement's floor is the copy's version where the provider's plugin can read it.
Synthetic (acme, vendored by auditwheel itself) and real (numpy 2.2.6 onto scipy-openblas64)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    ROOT,
    BuildEnv,
    RunEnv,
    auditwheel_repair,
    build_acme,
    build_c_library,
    build_consumer,
    consumer_project,
    elf_dynamic,
    manifest_of,
    one,
    pip_target,
    requires_dist,
    run,
    sharewheel,
    unpack,
)
from packaging.specifiers import SpecifierSet

UNITS = {"bytes": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def libs_of(wheel: Path, libs_dir: str) -> dict[str, int]:
    """The files under LIBS_DIR/ in WHEEL and their sizes."""
    with zipfile.ZipFile(wheel) as zf:
        return {i.filename: i.file_size for i in zf.infolist() if i.filename.startswith(f"{libs_dir}/") and not i.is_dir()}


def assert_unvendored(stdout: str, removed: dict[str, int]) -> str:
    """The summary line names the removed copies and the bytes saved (to its rounding); returns its unit."""
    match = re.search(r"; unvendored (.+), saving ([0-9.]+) (bytes|KB|MB|GB); tagged ", stdout)
    assert match, stdout
    assert sorted(match[1].split(", ")) == sorted(os.path.basename(p) for p in removed)
    unit = UNITS[match[3]]
    assert 1 <= sum(removed.values()) / unit < 1000
    assert abs(float(match[2]) * unit - sum(removed.values())) <= 0.05 * unit, (match[0], removed)
    return match[3]


def mapped(stdout: str, marker: str) -> list[str]:
    """The realpaths a fresh interpreter printed on its line `MARKER ...` (see MAPS)."""
    return one([line for line in stdout.splitlines() if line.startswith(f"{marker} ")]).split()[1:]


MAPS = """
import os
def maps(marker, *needles):
    paths = {{os.path.realpath(p) for p in open("/proc/self/maps").read().split() if p.startswith("/")}}
    print(marker, *sorted(p for p in paths if any(n in os.path.basename(p) for n in needles)))
{body}
"""


# --- synthetic: acme-native 3.1.4 and libextra, both vendored by auditwheel ----------------------

@dataclass(frozen=True)
class Audited:
    provider: Path  # acme-native 3.1.4
    wheel: Path  # auditwheel's output: acme_uv.libs/ holds copy and extra
    copy: str  # the copy of the provider's libacme-sw<hash>.so, or of the system's libacme.so.3
    extra: str  # the copy of libextra.so.1, which no provider offers
    sizes: dict[str, int]


@pytest.fixture(scope="session", params=["pkg-config", "system"])
def audited(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, build_env: BuildEnv, packed,
            extra_prefix: Path) -> Audited:
    """Built against the installed provider (the copy has its unique name) or against a system
    libacme 3.0.1 (the copy has its soname libacme.so.3), then vendored by auditwheel."""
    base = tmp_path_factory.mktemp(f"audited-{request.param}")
    provider = packed("3.1.4")
    project = consumer_project(base, "acme_uv", extra=True, flags=request.param)
    if request.param == "pkg-config":
        wheel = build_consumer(build_env, project, base, provider=provider, extra_prefix=extra_prefix)
        acme_lib = base / "build-site" / "acme_native" / "lib"
    else:
        acme = build_acme(base / "acme", "3.0.1")
        wheel = build_consumer(build_env, project, base, acme_prefix=acme, extra_prefix=extra_prefix)
        acme_lib = acme / "lib"
    lib_dirs = [acme_lib, extra_prefix / "lib"]
    audited = auditwheel_repair(wheel, base / "audited", lib_dirs)
    sizes = libs_of(audited, "acme_uv.libs")
    unique = one(manifest_of(provider)["provides"]["libraries"])["unique_name"]
    pattern = rf"{re.escape(unique[:-3])}-[0-9a-f]{{8}}\.so" if request.param == "pkg-config" else \
        r"libacme-[0-9a-f]{8}\.so\.3\.0\.1"
    copy = one([p for p in sizes if re.fullmatch(pattern, p.split("/")[1])])
    extra = one([p for p in sizes if p.split("/")[1].startswith("libextra-")])
    assert sorted(sizes) == sorted([copy, extra])  # auditwheel vendored both
    return Audited(provider, audited, copy, extra, sizes)


@pytest.fixture(scope="session")
def unvendored(audited: Audited, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, bool]:
    """sharewheel repair of auditwheel's output with the provider: (output, stdout, input unchanged)."""
    out = tmp_path_factory.mktemp("unvendored")
    before = sha256(audited.wheel)
    result = sharewheel("repair", audited.wheel, "-w", out, "--provider", audited.provider)
    return one(list(out.glob("*.whl"))), result.stdout, sha256(audited.wheel) == before


CALL = MAPS.format(body="""
import acme_uv
print(acme_uv.add(20, 22), acme_uv.series(), acme_uv.version())
maps("maps", "libacme", "libextra")
""")


def test_auditwheel_copy_replaced_by_provider(audited: Audited, unvendored, build_env: BuildEnv, run_env: RunEnv,
                                              tmp_path: Path) -> None:
    output, stdout, input_unchanged = unvendored
    assert input_unchanged
    unique = one(manifest_of(audited.provider)["provides"]["libraries"])["unique_name"]
    copy, extra = os.path.basename(audited.copy), os.path.basename(audited.extra)

    # the provided copy is gone, the unprovided one stays, and the extension now needs the provider
    assert list(libs_of(output, "acme_uv.libs")) == [audited.extra]
    extension = one(list((unpack(output, tmp_path / "tree") / "acme_uv").glob("_core*.so")))
    needed = elf_dynamic(extension)["needed"]
    assert unique in needed and extra in needed and copy not in needed
    [requirement] = [r for r in requires_dist(output) if r.name == "acme-native"]
    assert requirement.specifier == SpecifierSet(">=3.1.4,==3.*")
    links = manifest_of(output)["links"]
    assert [(l["binary"], l["needed"], l["original"], l["provider"]) for l in links] == [
        (f"acme_uv/{extension.name}", unique, copy, "acme-native")]
    assert assert_unvendored(stdout, {audited.copy: audited.sizes[audited.copy]}) in ("KB", "bytes")

    # installed apart from the provider, in either sys.path order: libacme from A, libextra from B
    site_a = pip_target(build_env, audited.provider, tmp_path / "A")
    site_b = pip_target(build_env, output, tmp_path / "B")
    for path in ([site_b, site_a], [site_a, site_b]):
        result = run_env.run(CALL, path).stdout
        assert result.splitlines()[0].split() == ["42", "3", "3.1.4"]
        assert mapped(result, "maps") == sorted([os.path.realpath(site_a / "acme_native" / "lib" / unique),
                                                 os.path.realpath(site_b / audited.extra)])


LACKS_ADD = """\
int acme_series(void) { return 3; }
const char *acme_version(void) { return "3.1.4"; }
"""


def test_provider_lacking_an_imported_symbol_is_refused(audited: Audited, tmp_path: Path) -> None:
    """A libacme.so.3 without acme_add, packed as acme-native 3.1.4: the same unique name as the real
    provider (names never depend on contents), so only the symbol proof can tell them apart."""
    prefix = build_c_library(tmp_path / "prefix", "acme", "libacme.so.3", LACKS_ADD)
    sharewheel("pack", prefix, "--name", "acme-native", "--version", "3.1.4", "--abi", "major",
               "-w", tmp_path / "provider")
    lacking = one(list((tmp_path / "provider").glob("*.whl")))
    assert [(l["unique_name"], l["path"]) for l in manifest_of(lacking)["provides"]["libraries"]] == [
        (l["unique_name"], l["path"]) for l in manifest_of(audited.provider)["provides"]["libraries"]]
    before = sha256(audited.wheel)
    out = tmp_path / "out"
    result = sharewheel("repair", audited.wheel, "-w", out, "--provider", lacking, check=False)
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert line.startswith(f"sharewheel: error: {audited.wheel.name}: acme_uv/_core")
    assert f" imports acme_add from {os.path.basename(audited.copy)}, which acme-native 3.1.4" in line
    assert "acme_series" not in line and "acme_version" not in line
    assert not out.exists() or not list(out.iterdir())
    assert sha256(audited.wheel) == before


@pytest.mark.parametrize("host_finds_it", [False, True])
def test_fresh_repair_refuses_a_provider_lacking_a_symbol(host_finds_it: bool, build_env: BuildEnv,
                                                         tmp_path: Path) -> None:
    """Nothing vendored: the consumer was built against a system libacme.so.3. Whether this machine
    finds that library (then it says what the binary imports from it) or not (then by elimination
    over the binary's other libraries), the provider lacking acme_add is refused before any write."""
    acme = build_acme(tmp_path / "acme", "3.0.1")
    wheel = build_consumer(build_env, consumer_project(tmp_path / "src", "acme_fresh", flags="system"),
                           tmp_path / "build", acme_prefix=acme)
    prefix = build_c_library(tmp_path / "prefix", "acme", "libacme.so.3", LACKS_ADD)
    sharewheel("pack", prefix, "--name", "acme-native", "--version", "3.1.4", "-w", tmp_path / "provider")
    lacking = one(list((tmp_path / "provider").glob("*.whl")))
    env = {"LD_LIBRARY_PATH": str(acme / "lib")} if host_finds_it else {}
    result = sharewheel("repair", wheel, "-w", tmp_path / "out", "--provider", lacking, env=env, check=False)
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert "acme_fresh/_core" in line and " imports acme_add from libacme.so.3, which acme-native 3.1.4" in line
    assert "acme_series" not in line and "PyModule_Create" not in line
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# --- real: numpy 2.2.6 (OpenBLAS, libgfortran, libquadmath in numpy.libs/) onto scipy-openblas64 ---

@dataclass(frozen=True)
class Numpy:
    input: Path
    blas: Path  # scipy-openblas64 0.3.31.188.0
    output: Path
    stdout: str
    removed: dict[str, int]  # numpy.libs/ of the input
    input_unchanged: bool


@pytest.fixture(scope="session")
def numpy_repaired(pypi_wheel, tmp_path_factory: pytest.TempPathFactory) -> Numpy:
    wheel, blas = pypi_wheel("numpy-linux"), pypi_wheel("scipy-openblas64-linux")
    out = tmp_path_factory.mktemp("numpy")
    before = sha256(wheel)
    result = sharewheel("repair", wheel, "-w", out, "--provider", blas)
    return Numpy(wheel, blas, one(list(out.glob("*.whl"))), result.stdout, libs_of(wheel, "numpy.libs"),
                 sha256(wheel) == before)


def test_numpy_unvendors_openblas_and_its_fortran_runtime(numpy_repaired: Numpy, tmp_path: Path) -> None:
    np = numpy_repaired
    assert np.input_unchanged
    assert sorted(re.sub(r"-[0-9a-f]{8}.*", "", os.path.basename(p)) for p in np.removed) == [
        "libgfortran", "libquadmath", "libscipy_openblas64_"]
    copy = one([p for p in np.removed if "openblas" in p])
    with zipfile.ZipFile(np.input) as zf:
        assert b"OpenBLAS 0.3.29" in zf.read(copy)  # where the floor comes from
    assert not libs_of(np.output, "numpy.libs")
    assert assert_unvendored(np.stdout, np.removed) == "MB"
    assert [str(r) for r in requires_dist(np.output) if r.name == "scipy-openblas64"] == [
        "scipy-openblas64==0.3.*,>=0.3.29"]

    # every binary that used the copy needs the provider's library; none names a removed copy
    tree = unpack(np.output, tmp_path / "tree")
    needed = {str(p.relative_to(tree)): elf_dynamic(p)["needed"] for p in tree.rglob("*.so")}
    assert "libscipy_openblas64_.so" in needed[one([p for p in needed if "/_multiarray_umath." in p])]
    assert not {n for names in needed.values() for n in names} & {os.path.basename(p) for p in np.removed}
    linked = sorted(p for p, names in needed.items() if "libscipy_openblas64_.so" in names)
    assert sorted(l["binary"] for l in manifest_of(np.output)["links"]) == linked
    assert len(linked) >= 3  # _multiarray_umath, _umath_linalg, lapack_lite


SUITE = MAPS.format(body="""
import sys, pytest
code = pytest.main(["-q", "-p", "no:cacheprovider", "--noconftest", sys.argv[1]])
import numpy
a = numpy.arange(9.0).reshape(3, 3)
print("product", (a @ a).tolist(), numpy.__file__)
maps("maps", "openblas", "gfortran", "quadmath")
sys.exit(code)
""")


def test_numpy_own_linalg_suite_runs_on_the_provider(numpy_repaired: Numpy, build_env: BuildEnv, run_env: RunEnv,
                                                     tmp_path: Path) -> None:
    site_a = pip_target(build_env, numpy_repaired.blas, tmp_path / "A")
    site_b = pip_target(build_env, numpy_repaired.output, tmp_path / "B")
    assert not (site_b / "numpy.libs").exists()
    provider_libs = sorted(os.path.realpath(p) for p in (site_a / "scipy_openblas64" / "lib").glob("lib*.so*"))
    assert [os.path.basename(p).split("-")[0].split(".")[0] for p in provider_libs] == [
        "libgfortran", "libquadmath", "libscipy_openblas64_"]
    product = str([[15.0, 18.0, 21.0], [42.0, 54.0, 66.0], [69.0, 90.0, 111.0]])

    # numpy's own linalg tests in a fresh interpreter (the test venv has pytest, not numpy)
    tests = site_b / "numpy" / "linalg" / "tests" / "test_linalg.py"
    result = run([sys.executable, "-c", SUITE, tests], check=False, cwd=tmp_path,
                 env={"PYTHONPATH": os.pathsep.join(map(str, [site_b, site_a])), "LD_LIBRARY_PATH": ""})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = re.search(r"(\d+) passed", result.stdout)
    assert summary and int(summary[1]) >= 400 and " failed" not in result.stdout, result.stdout[-2000:]
    assert one([l for l in result.stdout.splitlines() if l.startswith("product ")]).split(" ", 1)[1] == (
        f"{product} {site_b / 'numpy' / '__init__.py'}")
    assert mapped(result.stdout, "maps") == provider_libs

    # and a small run in the other sys.path order
    small = MAPS.format(body="""
import numpy
a = numpy.arange(9.0).reshape(3, 3)
print("product", (a @ a).tolist())
maps("maps", "openblas", "gfortran", "quadmath")
""")
    lines = run_env.run(small, [site_a, site_b]).stdout
    assert one([l for l in lines.splitlines() if l.startswith("product ")]) == f"product {product}"
    assert mapped(lines, "maps") == provider_libs


def test_copy_outside_the_providers_series_is_refused(pypi_wheel, tmp_path: Path) -> None:
    """A plugin that pins OpenBLAS exactly: the copy's 0.3.29 is not the provider's 0.3.31.188.0."""
    shipped = (ROOT / "plugins" / "scipy-openblas.toml").read_text()
    assert shipped.count('abi = "minor"') == 1
    plugin = tmp_path / "scipy-openblas-exact.toml"
    plugin.write_text(shipped.replace('abi = "minor"', 'abi = "exact"'))
    wheel = pypi_wheel("numpy-linux")
    out = tmp_path / "out"
    result = sharewheel("repair", wheel, "-w", out, "--provider", pypi_wheel("scipy-openblas64-linux"),
                        "--plugin", plugin, check=False)
    assert result.returncode == 1, result
    [line] = [l for l in result.stderr.splitlines() if l.startswith("sharewheel: error:")]
    assert line.startswith(f"sharewheel: error: {wheel.name}: numpy.libs/libscipy_openblas64_-")
    assert "is version 0.3.29" in line and "scipy-openblas64==0.3.31.188.0" in line
    assert not out.exists() or not list(out.iterdir())


def test_show_names_the_plugin_and_the_copies(numpy_repaired: Numpy) -> None:
    """Without --provider, show points at the copy a plugin's wheels could replace; with it,
    it shows the provider (and the plugin describing it) and what repair would remove."""
    hint = sharewheel("show", numpy_repaired.input).stdout
    copy = one([p for p in numpy_repaired.removed if "openblas" in p])
    assert (f"  {copy}: a vendored copy that scipy-openblas32 or scipy-openblas64 could replace "
            "(plugin scipy-openblas; repair with --provider NAME)") in hint.splitlines()
    report = json.loads(sharewheel("show", numpy_repaired.input, "--provider", numpy_repaired.blas,
                                   "--json").stdout)
    provided = [n for needs in report["binaries"].values() for n in needs if n["state"] == "provided"]
    assert len(provided) >= 3 and {(n["provider"], n["plugin"], n["unique_name"]) for n in provided} == {
        ("scipy-openblas64", "scipy-openblas", "libscipy_openblas64_.so")}
    assert sorted(c["path"] for c in report["removed"]) == sorted(numpy_repaired.removed)
    assert report["saved"] == sum(numpy_repaired.removed.values())
    assert report["replaceable"] == []
