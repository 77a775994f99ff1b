"""auditwheel 6.8's repair flags, as sharewheel takes them (issue 15): each one is given to
`auditwheel repair` and to `sharewheel repair` on the same gcc-built wheel, in the same
environment, and what the flag changes is compared — the tags in the file name and WHEEL, the
symbols left after --strip, how every entry is compressed, which library files are vendored.

The wheel: `flagdemo/_core<EXT_SUFFIX>` (built with -g, so that it has symbols to strip) needs
libfoo.so.1 and libextra.so.1, gcc-built into a directory of their own; `flagdemo/data.txt`
is a compressible file the build deflated at level 1.
"""

from __future__ import annotations

import os
import stat
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BuildEnv, one, prebuilt_wheel, run, unpack
from test_cli_errors import assert_cli_error
from test_differential_linux import (
    EXT_SUFFIX,
    NO_SETTINGS,
    SCRIPTS,
    gcc_extension,
    platforms_of,
    record_line,
    rewrite_wheel,
    vendored,
    wheel_tags,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="auditwheel repairs on Linux only")

FOO = "int foo_value(int x) { return x + 7; }\n"
FOO_OTHER = "int foo_value(int x) { return x + 70; }\n"  # another libfoo.so.1: another file, another hash
EXTRA = "int extra_twice(int x) { return 2 * x; }\n"
CORE = ("int foo_value(int);\nint extra_twice(int);\n"
        "void *PyInit__core(void) { return (void *)(long)(foo_value(1) + extra_twice(2)); }\n")


def _data() -> bytes:
    """Text of random words: deflated to a different size at each level tested (0, 1, 6, 9)."""
    import random

    rng = random.Random(15)
    words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(2, 9))) for _ in range(400)]
    return " ".join(rng.choice(words) for _ in range(60000)).encode()


DATA = _data()


def shared_library(where: Path, soname: str, source: str) -> Path:
    """`soname` built by gcc from C `source` into `where` (with -g: symbols for --strip to remove)."""
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{soname}.c").write_text(source)
    run(["gcc", "-g", "-O2", "-fPIC", "-shared", f"-Wl,-soname,{soname}", "-o", where / soname, where / f"{soname}.c"])
    return where / soname


@dataclass(frozen=True)
class Demo:
    wheel: Path  # flagdemo-1.0.0-cp3x-cp3x-linux_x86_64.whl, unrepaired
    lib_dir: Path  # libfoo.so.1 and libextra.so.1
    other_foo: Path  # a directory with another libfoo.so.1


def demo_wheel(build_env: BuildEnv, where: Path, *cflags: str) -> Path:
    """The unrepaired wheel of an extension built with `cflags`, plus data.txt deflated at level 1."""
    lib_dir = where.parent / "lib"
    ext = gcc_extension(where / "ext", CORE, "-g", *cflags, lib_dir / "libfoo.so.1", lib_dir / "libextra.so.1")
    built = prebuilt_wheel(build_env, where / "built", ext, "linux_x86_64", package="flagdemo")
    return rewrite_wheel(built, where / "input", add={"flagdemo/data.txt": DATA})


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, build_env: BuildEnv) -> Demo:
    base = tmp_path_factory.mktemp("flagdemo")
    shared_library(base / "lib", "libfoo.so.1", FOO)
    shared_library(base / "lib", "libextra.so.1", EXTRA)
    shared_library(base / "other", "libfoo.so.1", FOO_OTHER)
    return Demo(demo_wheel(build_env, base / "plain"), base / "lib", base / "other")


@dataclass(frozen=True)
class Both:
    theirs: Path  # auditwheel's output
    ours: Path  # sharewheel's


def environment(library_path: list[Path], **extra: str) -> dict[str, str]:
    """LD_LIBRARY_PATH = `library_path` only, auditwheel's patchelf on PATH, no sharewheel settings."""
    return {"LD_LIBRARY_PATH": os.pathsep.join(map(str, library_path)), "AUDITWHEEL_LD_LIBRARY_PATH": "",
            "PATH": f"{SCRIPTS}{os.pathsep}{os.environ['PATH']}", **NO_SETTINGS, **extra}


def repair_both(wheel: Path, tmp: Path, *flags: str | Path, env: dict[str, str]) -> Both:
    """`auditwheel repair FLAGS` and `sharewheel repair FLAGS` on `wheel`; both must succeed."""
    outputs = []
    for tool in ("auditwheel", "sharewheel"):
        out = tmp / f"by-{tool}"
        cwd = tmp / f"cwd-{tool}"
        cwd.mkdir(parents=True)
        run([sys.executable, "-m", tool, "repair", "-w", out, *flags, wheel], env=env, cwd=cwd)
        outputs.append(one(sorted(out.glob("*.whl"))))
    return Both(*outputs)


def run_auditwheel(wheel: Path, out: Path, *flags: str | Path, env: dict[str, str]) -> int:
    cwd = out.parent / "cwd-auditwheel"
    cwd.mkdir(parents=True, exist_ok=True)
    return run([sys.executable, "-m", "auditwheel", "repair", "-w", out, *flags, wheel], env=env, cwd=cwd,
               check=False).returncode


def assert_same_repair(both: Both) -> None:
    """The flags compared here change nothing else: same file name, WHEEL tags and vendored files."""
    assert both.ours.name == both.theirs.name
    assert wheel_tags(both.ours) == wheel_tags(both.theirs)
    assert vendored(both.ours) == vendored(both.theirs)


def loads(wheel: Path, where: Path) -> int:
    """The repaired extension loaded with ctypes in a fresh interpreter (its vendored libraries
    found through its RPATH), PyInit__core called: foo_value(1) + extra_twice(2)."""
    tree = unpack(wheel, where)
    ext = one(list(tree.glob(f"flagdemo/_core{EXT_SUFFIX}")))
    code = ("import ctypes, sys; f = ctypes.CDLL(sys.argv[1]).PyInit__core; f.restype = ctypes.c_long; "
            "print(f())")
    environment = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    result = run([sys.executable, "-c", code, ext], env=environment)
    return int(result.stdout)


# --- -z/--zip-compression-level ----------------------------------------------------------------


def deflated_size(data: bytes, level: int) -> int:
    """The size of `data` deflated (raw, as in a zip) at zlib `level`."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return len(compressor.compress(data) + compressor.flush())


def assert_deflated_at(wheel: Path, level: int) -> None:
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.is_dir():  # (auditwheel writes directory entries too; they hold nothing)
                continue
            assert info.compress_type == zipfile.ZIP_DEFLATED, info.filename
            assert info.compress_size == deflated_size(zf.read(info), level), (info.filename, level)


@pytest.mark.parametrize("level", [0, 1, 9])
def test_zip_compression_level(level: int, demo: Demo, tmp_path: Path) -> None:
    """Every entry of both outputs is deflated at the level, data.txt (copied untouched by a
    repair without -z, as the build deflated it) included."""
    with zipfile.ZipFile(demo.wheel) as zf:
        assert zf.getinfo("flagdemo/data.txt").compress_size != deflated_size(DATA, level)
    both = repair_both(demo.wheel, tmp_path, "-z", str(level), env=environment([demo.lib_dir]))
    assert_same_repair(both)
    assert_deflated_at(both.theirs, level)
    assert_deflated_at(both.ours, level)
    assert loads(both.ours, tmp_path / "tree") == 12


def test_without_zip_compression_level_entries_are_copied(demo: Demo, tmp_path: Path) -> None:
    """Without -z, sharewheel copies an entry it did not change still compressed, as the build
    deflated it (auditwheel deflates everything at zlib's default level, 6)."""
    out = tmp_path / "out"
    run([sys.executable, "-m", "sharewheel", "repair", "-w", out, demo.wheel], env=environment([demo.lib_dir]))
    with zipfile.ZipFile(demo.wheel) as before, zipfile.ZipFile(one(list(out.glob("*.whl")))) as after:
        assert after.getinfo("flagdemo/data.txt").compress_size == before.getinfo("flagdemo/data.txt").compress_size


def test_zip_compression_level_out_of_range(demo: Demo, tmp_path: Path) -> None:
    """auditwheel's choices are 0..9: both refuse 10, sharewheel with one error line."""
    env = environment([demo.lib_dir])
    assert run_auditwheel(demo.wheel, tmp_path / "a", "-z", "10", env=env) != 0
    out = tmp_path / "out"
    assert_cli_error(tmp_path / "e", "repair", "-w", out, "-z", "10", demo.wheel, inputs=[demo.wheel], out_dir=out,
                     names=("-z", "10"), env=env, status=None)


# --- --no-update-tags --------------------------------------------------------------------------


def test_no_update_tags(demo: Demo, tmp_path: Path) -> None:
    """The wheel keeps its own name and WHEEL; the libraries are still vendored (for the policy
    the tags would have named)."""
    env = environment([demo.lib_dir])
    both = repair_both(demo.wheel, tmp_path, "--no-update-tags", env=env)
    assert_same_repair(both)
    assert both.ours.name == demo.wheel.name
    assert wheel_tags(both.ours) == wheel_tags(demo.wheel)
    assert sorted(n.split("/")[-1].split("-")[0] for n in vendored(both.ours)) == ["libextra", "libfoo"]
    retagged = repair_both(demo.wheel, tmp_path / "default", env=env)  # the flag is what keeps them
    assert platforms_of(retagged.ours.name) == platforms_of(retagged.theirs.name) != ["linux_x86_64"]
    assert loads(both.ours, tmp_path / "tree") == 12


# --- --strip -----------------------------------------------------------------------------------


def symbol_counts(wheel: Path, where: Path) -> dict[str, tuple[int, int]]:
    """(.symtab symbols, .dynsym symbols) of every ELF file in the wheel, read with pyelftools."""
    from elftools.elf.elffile import ELFFile

    tree = unpack(wheel, where)
    counts = {}
    for path in sorted(tree.rglob("*")):
        if not path.is_file():
            continue
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                continue
            f.seek(0)
            elf = ELFFile(f)
            symtab, dynsym = elf.get_section_by_name(".symtab"), elf.get_section_by_name(".dynsym")
            counts[path.relative_to(tree).as_posix()] = (symtab.num_symbols() if symtab else 0,
                                                         dynsym.num_symbols() if dynsym else 0)
    return counts


def test_strip(demo: Demo, tmp_path: Path) -> None:
    """The vendored libraries and the extension lose their symbol tables in both outputs (the
    dynamic ones stay: the extension still loads and calls into them)."""
    env = environment([demo.lib_dir])
    unstripped = symbol_counts(repair_both(demo.wheel, tmp_path / "plain", env=env).ours, tmp_path / "plain-tree")
    both = repair_both(demo.wheel, tmp_path / "strip", "--strip", env=env)
    assert_same_repair(both)
    theirs, ours = symbol_counts(both.theirs, tmp_path / "theirs"), symbol_counts(both.ours, tmp_path / "ours")
    assert ours == theirs
    assert sorted(ours) == sorted(unstripped) and len(ours) == 3  # the extension and two vendored libraries
    for name, (symtab, dynsym) in ours.items():
        assert unstripped[name][0] > 0 and symtab == 0, name
        assert dynsym == unstripped[name][1] > 0, name
    assert loads(both.ours, tmp_path / "tree") == 12


# --- --only-plat -------------------------------------------------------------------------------


@pytest.mark.parametrize("only_plat", [False, True])
def test_only_plat(only_plat: bool, demo: Demo, tmp_path: Path) -> None:
    """--plat manylinux_2_28: the wheel (gcc-built against this glibc, with symbols old enough
    for manylinux_2_5) is also tagged with the better policy, unless --only-plat."""
    flags = ["--plat", "manylinux_2_28_x86_64", *(["--only-plat"] if only_plat else [])]
    both = repair_both(demo.wheel, tmp_path, *flags, env=environment([demo.lib_dir]))
    assert_same_repair(both)
    platforms = platforms_of(both.ours.name)
    if only_plat:
        assert platforms == ["manylinux_2_28_x86_64"]
    else:
        assert "manylinux_2_28_x86_64" in platforms and len(platforms) > 1, platforms


# --- --disable-isa-ext-check -------------------------------------------------------------------


@pytest.fixture(scope="module")
def v3_wheel(tmp_path_factory: pytest.TempPathFactory, build_env: BuildEnv, demo: Demo) -> Path:
    """The demo extension marked as needing x86-64-v3 (a GNU property note the linker writes)."""
    base = tmp_path_factory.mktemp("flagdemo-v3")
    (base / "lib").symlink_to(demo.lib_dir)
    wheel = demo_wheel(build_env, base / "v3", "-march=x86-64-v3", "-Wl,-z,x86-64-v3")
    tree = unpack(wheel, base / "tree")
    note = run(["readelf", "-n", one(list(tree.glob("flagdemo/_core*")))]).stdout
    assert "x86 ISA needed: x86-64-v3" in note, note
    return wheel


def test_isa_ext_check(v3_wheel: Path, demo: Demo, tmp_path: Path) -> None:
    """Without the flag both tools refuse to tag an x86-64-v3 extension manylinux; sharewheel
    says why in one line."""
    env = environment([demo.lib_dir])
    assert run_auditwheel(v3_wheel, tmp_path / "a", env=env) != 0
    out = tmp_path / "out"
    assert_cli_error(tmp_path / "e", "repair", "-w", out, v3_wheel, inputs=[v3_wheel], out_dir=out,
                     names=(v3_wheel.name, "ISA extensions", f"flagdemo/_core{EXT_SUFFIX} needs x86_64_v3"), env=env)


def test_disable_isa_ext_check(v3_wheel: Path, demo: Demo, tmp_path: Path) -> None:
    both = repair_both(v3_wheel, tmp_path, "--disable-isa-ext-check", env=environment([demo.lib_dir]))
    assert_same_repair(both)
    assert all(p.startswith("manylinux") for p in platforms_of(both.ours.name)), both.ours.name


# --- --allow-pure-python-wheel -----------------------------------------------------------------


@pytest.fixture(scope="module")
def pure_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """purepkg-1.0-py3-none-any.whl, as a build backend writes one."""
    wheel = tmp_path_factory.mktemp("pure") / "purepkg-1.0-py3-none-any.whl"
    files = {
        "purepkg/__init__.py": b"VALUE = 42\n",
        "purepkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: purepkg\nVersion: 1.0\n",
        "purepkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        record = [record_line(name, data) for name, data in files.items()]
        zf.writestr("purepkg-1.0.dist-info/RECORD", "\n".join([*record, "purepkg-1.0.dist-info/RECORD,,"]) + "\n")
    return wheel


def test_allow_pure_python_wheel(pure_wheel: Path, tmp_path: Path) -> None:
    """With the flag, both copy a pure wheel byte for byte into -w (exit 0). Without it auditwheel
    refuses the wheel; sharewheel copies it all the same (README: `repair -w OUT dist/*.whl`
    leaves one wheel per input), so the flag changes nothing there and is never in the way."""
    env = environment([])
    both = repair_both(pure_wheel, tmp_path, "--allow-pure-python-wheel", env=env)
    assert both.theirs.read_bytes() == both.ours.read_bytes() == pure_wheel.read_bytes()
    assert both.ours.name == pure_wheel.name
    assert run_auditwheel(pure_wheel, tmp_path / "refused", env=env) != 0
    assert not list((tmp_path / "refused").glob("*.whl"))
    out = tmp_path / "by-sharewheel-default"
    run([sys.executable, "-m", "sharewheel", "repair", "-w", out, pure_wheel], env=env)
    assert one(list(out.iterdir())).read_bytes() == pure_wheel.read_bytes()


# --- --ldpaths -----------------------------------------------------------------------------------


def vendored_sources(wheel: Path) -> list[str]:
    """The vendored files by name: `<base>-<sha256[:8] of the file copied>.<ext>`, so the names say
    which copy of a library was found."""
    return sorted(name.split("/")[-1] for name in vendored(wheel))


def hashed_name(library: Path) -> str:
    import hashlib

    base, ext = library.name.split(".", 1)
    return f"{base}-{hashlib.sha256(library.read_bytes()).hexdigest()[:8]}.{ext}"


def test_ldpaths_replaces_ld_library_path(demo: Demo, tmp_path: Path) -> None:
    """LD_LIBRARY_PATH finds the other libfoo first; --ldpaths replaces that search: both tools
    vendor the libfoo of --ldpaths' directory."""
    env = environment([demo.other_foo, demo.lib_dir])
    default = repair_both(demo.wheel, tmp_path / "default", env=env)
    assert vendored_sources(default.ours) == vendored_sources(default.theirs)
    assert hashed_name(demo.other_foo / "libfoo.so.1") in vendored_sources(default.ours)
    both = repair_both(demo.wheel, tmp_path / "ldpaths", "--ldpaths", demo.lib_dir, env=env)
    assert_same_repair(both)
    assert vendored_sources(both.ours) == sorted([hashed_name(demo.lib_dir / "libfoo.so.1"),
                                                  hashed_name(demo.lib_dir / "libextra.so.1")])
    assert loads(both.ours, tmp_path / "tree") == 12


def test_auditwheel_ld_library_path_adds_to_ldpaths(demo: Demo, tmp_path: Path) -> None:
    """AUDITWHEEL_LD_LIBRARY_PATH is searched before --ldpaths' directories, in both tools."""
    env = environment([], AUDITWHEEL_LD_LIBRARY_PATH=str(demo.other_foo))
    both = repair_both(demo.wheel, tmp_path, "--ldpaths", demo.lib_dir, env=env)
    assert_same_repair(both)
    assert vendored_sources(both.ours) == sorted([hashed_name(demo.other_foo / "libfoo.so.1"),
                                                  hashed_name(demo.lib_dir / "libextra.so.1")])
    assert loads(both.ours, tmp_path / "tree") == 75  # the other libfoo: 1 + 70, + 2 * 2


def test_ldpaths_without_a_library(demo: Demo, tmp_path: Path) -> None:
    """--ldpaths naming a directory without libextra: LD_LIBRARY_PATH, which has it, is not
    searched, and both tools fail; sharewheel names the library in one line."""
    env = environment([demo.lib_dir])
    assert run_auditwheel(demo.wheel, tmp_path / "a", "--ldpaths", demo.other_foo, env=env) != 0
    out = tmp_path / "out"
    assert_cli_error(tmp_path / "e", "repair", "-w", out, "--ldpaths", demo.other_foo, demo.wheel,
                     inputs=[demo.wheel], out_dir=out, names=(demo.wheel.name, "libextra.so.1"), env=env)


# --- --patcher -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lief_patchelf_stand_in(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a `lief-patchelf` that runs the real patchelf and logs its arguments.

    lief-patchelf ships with LIEF's SDK, not its PyPI wheel; auditwheel calls it with patchelf's
    command line. This one lets the test see that each tool runs the patcher it was given."""
    where = tmp_path_factory.mktemp("lief-bin")
    script = where / "lief-patchelf"
    script.write_text(f'#!/bin/sh\necho "$@" >> "$LIEF_PATCHELF_LOG"\nexec {SCRIPTS / "patchelf"} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return where


@pytest.mark.parametrize("how", ["flag", "AUDITWHEEL_PATCHER"])
def test_patcher_lief_patchelf(how: str, demo: Demo, lief_patchelf_stand_in: Path, tmp_path: Path) -> None:
    """Both tools run `lief-patchelf` from PATH, with the same patches: the same wheel results."""
    logs = {tool: tmp_path / f"{tool}.log" for tool in ("auditwheel", "sharewheel")}
    path = f"{lief_patchelf_stand_in}{os.pathsep}{SCRIPTS}{os.pathsep}{os.environ['PATH']}"
    outputs = []
    for tool, log in logs.items():
        env = environment([demo.lib_dir], PATH=path, LIEF_PATCHELF_LOG=str(log))
        flags = ["--patcher", "lief-patchelf"] if how == "flag" else []
        if how == "AUDITWHEEL_PATCHER":
            env["AUDITWHEEL_PATCHER"] = "lief-patchelf"
        out, cwd = tmp_path / f"by-{tool}", tmp_path / f"cwd-{tool}"
        cwd.mkdir()
        run([sys.executable, "-m", tool, "repair", "-w", out, *flags, demo.wheel], env=env, cwd=cwd)
        outputs.append(one(list(out.glob("*.whl"))))
    assert_same_repair(Both(*outputs))
    for log in logs.values():
        calls = log.read_text().splitlines()
        assert any("--set-soname" in c for c in calls) and any("--replace-needed" in c for c in calls), calls
    assert loads(outputs[1], tmp_path / "tree") == 12


def test_patcher_lief_patchelf_missing(demo: Demo, tmp_path: Path) -> None:
    """Without lief-patchelf on PATH both tools fail; sharewheel in one line naming it."""
    env = environment([demo.lib_dir], PATH=f"{SCRIPTS}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert run_auditwheel(demo.wheel, tmp_path / "a", "--patcher", "lief-patchelf", env=env) != 0
    out = tmp_path / "out"
    assert_cli_error(tmp_path / "e", "repair", "-w", out, "--patcher", "lief-patchelf", demo.wheel,
                     inputs=[demo.wheel], out_dir=out, names=("lief-patchelf",), env=env)


def test_patcher_none_refuses_to_vendor(demo: Demo, tmp_path: Path) -> None:
    """`none` patches nothing: a wheel whose libraries must be vendored fails in both tools."""
    env = environment([demo.lib_dir])
    assert run_auditwheel(demo.wheel, tmp_path / "a", "--patcher", "none", env=env) != 0
    out = tmp_path / "out"
    assert_cli_error(tmp_path / "e", "repair", "-w", out, "--patcher", "none", demo.wheel, inputs=[demo.wheel],
                     out_dir=out, names=(demo.wheel.name, "--patcher none"), env=env)


def test_patcher_none_retags(build_env: BuildEnv, tmp_path: Path) -> None:
    """A wheel needing only what the policy allows needs no patch: `none` retags it, in both tools."""
    ext = gcc_extension(tmp_path / "ext", "void *PyInit__core(void) { return (void *)42; }\n")
    wheel = prebuilt_wheel(build_env, tmp_path / "wheel", ext, "linux_x86_64", package="flagdemo")
    both = repair_both(wheel, tmp_path, "--patcher", "none", env=environment([]))
    assert_same_repair(both)
    assert vendored(both.ours) == [] and platforms_of(both.ours.name) != ["linux_x86_64"]


def test_patcher_unknown(demo: Demo, tmp_path: Path) -> None:
    env = environment([demo.lib_dir])
    assert run_auditwheel(demo.wheel, tmp_path / "a", "--patcher", "elfedit", env=env) != 0
    out = tmp_path / "out"
    assert_cli_error(tmp_path / "e", "repair", "-w", out, "--patcher", "elfedit", demo.wheel, inputs=[demo.wheel],
                     out_dir=out, names=("--patcher", "elfedit"), env=env, status=None)

