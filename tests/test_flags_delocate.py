"""delocate-wheel's flags in `sharewheel repair`, each compared with the real delocate-wheel on one wheel.

The oracle is delocate 0.13's own command, `delocate-wheel -w OUT [FLAGS] WHEEL`, run here on Linux
with Apple's tools stood in for on PATH: `otool` is tests/test_differential_macos.py's wrapper
around llvm-objdump-16, `install_name_tool` and `lipo` are LLVM's Apple-compatible
llvm-install-name-tool-16 and llvm-lipo-16 (same options, same `lipo -info` lines), and `codesign`
is a stub that finds every signature valid (so delocate never re-signs: signatures are not what a
flag changes, and tests/test_macos.py checks sharewheel's). sharewheel runs the same wheel with the
same flags, without providers, so that only delocate's part of a repair is compared: the
vendored libraries, every Mach-O file's install id, load commands and rpaths per slice (read with
macho_support's struct reader), the output wheel's name (its tags), or the refusal and its reason.

Two comparisons are structural, where delocate-wheel cannot be the oracle: --executable-path with
--ignore-missing-dependencies, where delocate 0.13 relinks a library outside the wheel and sharewheel
does not, and a --require-target-macos-version that is not a version, which delocate-wheel's
argparse refuses with its usage text. The last test checks that delocate's flags given for a
Linux wheel are said not to be used for it.

The wheels are built by zig (and the universal2 file by macho_support's fat writer); the
libraries they load live outside the wheel, where a build leaves them.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import find_tool, one, run, sharewheel, unpack
from macho_support import Zig, build_dylib, build_extension, is_macho, load_commands, make_fat
from test_differential_macos import OTOOL_WRAPPER
from test_hostile import make_wheel, write_entries

pytest_plugins = ["macho_support"]

EXT = "acme_consumer/_core.cpython-311-darwin.so"
TOOL = "acme_consumer/bin/acme-tool"
ARM64 = "macosx_11_0_arm64"


@pytest.fixture(scope="module")
def apple_tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory that, first on PATH, gives delocate its otool, install_name_tool, lipo and codesign."""
    objdump = find_tool("llvm-objdump-16", why="delocate's otool is LLVM's here (apt-get install llvm-16)")
    where = tmp_path_factory.mktemp("apple-tools")
    (where / "otool").write_text(OTOOL_WRAPPER.format(objdump=objdump))
    for name, llvm in (("install_name_tool", "llvm-install-name-tool-16"), ("lipo", "llvm-lipo-16")):
        (where / name).symlink_to(find_tool(llvm, why=f"delocate's {name} is LLVM's here (apt-get install llvm-16)"))
    (where / "codesign").write_text("#!/bin/sh\n# codesign --verify: every signature is valid; --sign: nothing to do\nexit 0\n")
    for tool in ("otool", "codesign"):
        (where / tool).chmod(0o755)
    return where


@dataclass(frozen=True)
class Outcome:
    """A repair's result: the wheel written, or the refusal (delocate's exception, sharewheel's error line)."""

    wheel: Path | None
    refusal: str

    def contents(self, where: Path) -> dict[str, object]:
        """What a flag can change: the wheel's name, what was vendored, every Mach-O file's load commands."""
        assert self.wheel is not None, self.refusal
        tree = unpack(self.wheel, where)
        machos = {path.relative_to(tree).as_posix(): {arch: (info["id"], info["dylibs"], info["rpaths"])
                                                       for arch, info in load_commands(path).items()}
                  for path in sorted(tree.rglob("*")) if path.is_file() and is_macho(path)}
        return {"name": self.wheel.name, "vendored": sorted(p for p in machos if "/.dylibs/" in p), "machos": machos}


def delocate_wheel(tools: Path, wheel: Path, out: Path, *flags: str, env: dict[str, str] | None = None) -> Outcome:
    """The real `delocate-wheel -w OUT FLAGS WHEEL` with `tools` first on PATH."""
    command = Path(sys.executable).parent / "delocate-wheel"
    result = run([command, "-w", out, *flags, wheel], check=False,
                 env={"PATH": f"{tools}{os.pathsep}{os.environ['PATH']}", **(env or {})})
    if result.returncode == 0:
        return Outcome(one(list(out.glob("*.whl"))), "")
    assert "DelocationError: " in result.stderr, result.stderr
    return Outcome(None, result.stderr.split("DelocationError: ", 1)[1].strip())


def sharewheel_repair(wheel: Path, out: Path, *flags: str, env: dict[str, str] | None = None) -> Outcome:
    result = sharewheel("repair", wheel, "-w", out, *flags, env=env, check=False)
    if result.returncode == 0:
        return Outcome(one(list(out.glob("*.whl"))), "")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert not list(out.glob("*.whl"))
    [line] = result.stderr.strip().splitlines()
    return Outcome(None, line.removeprefix("sharewheel: error: "))


@dataclass(frozen=True)
class Compare:
    """delocate-wheel and sharewheel repair, side by side on one wheel."""

    tools: Path
    wheel: Path
    base: Path

    def both(self, *flags: str, env: dict[str, str] | None = None) -> tuple[Outcome, Outcome]:
        where = self.base / "runs" / (self.wheel.parent.name + "-".join(("", *flags)).replace("/", "_"))
        shutil.rmtree(where, ignore_errors=True)
        return (delocate_wheel(self.tools, self.wheel, where / "delocate", *flags, env=env),
                sharewheel_repair(self.wheel, where / "sharewheel", *flags, env=env))

    def same(self, *flags: str, env: dict[str, str] | None = None) -> dict[str, object]:
        """Both write a wheel, the same in everything a flag can change; returns its contents."""
        theirs, ours = self.both(*flags, env=env)
        where = self.base / "runs" / "unpacked"
        shutil.rmtree(where, ignore_errors=True)
        expected = theirs.contents(where / "delocate")
        assert ours.contents(where / "sharewheel") == expected, flags
        return expected


@dataclass(frozen=True)
class Libraries:
    """Libraries a build leaves outside the wheel, built once per module."""

    zig: Zig
    root: Path

    def dylib(self, name: str, *, target: str = "arm64", install_name: str | None = None,
              links: tuple[Path, ...] = (), where: str = "lib") -> Path:
        """ROOT/WHERE/NAME exporting `<stem>_twice` (install name: its own path unless given)."""
        path = self.root / where / name
        if not path.exists():
            symbol = name.split(".")[0].removeprefix("lib")
            build_dylib(self.zig, target, path, f"int {symbol}_twice(int x) {{ return 2 * x; }}\n",
                        install_name or str(path), links=links)
        return path


@pytest.fixture(scope="module")
def libraries(zig: Zig, tmp_path_factory: pytest.TempPathFactory) -> Libraries:
    return Libraries(zig, tmp_path_factory.mktemp("build-machine"))


@pytest.fixture
def compare(apple_tools: Path, tmp_path: Path) -> Callable[[Path], Compare]:
    return lambda wheel: Compare(apple_tools, wheel, tmp_path)


def extension(libraries: Libraries, where: Path, links: list[Path], *, rpaths: tuple[str, ...] = (),
              target: str = "arm64") -> bytes:
    calls = [f"{link.name.split('.')[0].removeprefix('lib')}_twice" for link in links]
    return build_extension(libraries.zig, target, where, calls=calls, links=links, rpaths=rpaths).read_bytes()


# --- the wheels ------------------------------------------------------------------------------


def plain_wheel(libraries: Libraries, where: Path) -> Path:
    """An arm64 extension loading libextra from the build machine, with an absolute, a relative
    and an @loader_path rpath."""
    extra = libraries.dylib("libextra.1.dylib")
    rpaths = (str(extra.parent), "../rel", "@loader_path/keep")
    return make_wheel(where, ARM64, {EXT: extension(libraries, where / "ext", [extra], rpaths=rpaths)})


def missing_wheel(libraries: Libraries, where: Path) -> Path:
    """An extension loading libextra and libgone, which is no longer where it was built."""
    extra = libraries.dylib("libextra.1.dylib")
    gone = libraries.dylib("libgone.1.dylib", where="gone")
    binary = extension(libraries, where / "ext", [extra, gone])
    shutil.rmtree(gone.parent)
    return make_wheel(where, ARM64, {EXT: binary})


def test_ignore_missing_dependencies(libraries: Libraries, compare, tmp_path: Path) -> None:
    """Without the flag both refuse, naming the library not found; with it both vendor what they
    find and leave the load command of what they do not."""
    check = compare(missing_wheel(libraries, tmp_path / "missing"))
    gone = str(libraries.root / "gone" / "libgone.1.dylib")
    theirs, ours = check.both()
    assert theirs.wheel is None and ours.wheel is None
    assert theirs.refusal == "Could not find all dependencies."
    assert ours.refusal == f"{check.wheel.name}: delocate: Could not find all dependencies.: {gone} not found: Needed by: {EXT}"
    result = check.same("--ignore-missing-dependencies")
    assert result["vendored"] == ["acme_consumer/.dylibs/libextra.1.dylib"]
    assert result["machos"][EXT]["arm64"][1] == [  # type: ignore[index]
        "/usr/lib/libSystem.B.dylib", "@loader_path/.dylibs/libextra.1.dylib", gone]


def test_sanitize_rpaths(libraries: Libraries, compare, tmp_path: Path) -> None:
    """--sanitize-rpaths (delocate-wheel's default) removes the absolute and the relative rpath and
    keeps @loader_path's; --no-sanitize-rpaths keeps all three."""
    check = compare(plain_wheel(libraries, tmp_path / "plain"))
    rpaths = {flags: check.same(*flags)["machos"][EXT]["arm64"][2]  # type: ignore[index]
              for flags in [(), ("--sanitize-rpaths",), ("--no-sanitize-rpaths",)]}
    assert rpaths[()] == rpaths[("--sanitize-rpaths",)] == ["@loader_path/keep"]
    assert rpaths[("--no-sanitize-rpaths",)] == [str(libraries.root / "lib"), "../rel", "@loader_path/keep"]


def test_exclude_by_path_and_by_name(libraries: Libraries, compare, tmp_path: Path) -> None:
    """delocate's -e: a library whose path contains the string is not copied and its load command
    stays. sharewheel's --exclude is also an fnmatch pattern of the library's name, which delocate
    takes as a literal string (and so copies the library): sharewheel's wheel for the pattern is
    delocate's for a string of the path."""
    check = compare(plain_wheel(libraries, tmp_path / "plain"))
    extra = str(libraries.root / "lib" / "libextra.1.dylib")
    for flags in [("-e", "/lib/libextra"), ("--exclude", "build-machine")]:
        result = check.same(*flags)
        assert result["vendored"] == []
        assert result["machos"][EXT]["arm64"][1] == ["/usr/lib/libSystem.B.dylib", extra]  # type: ignore[index]
    theirs, ours = check.both("-e", "libextra.*.dylib")
    assert one(theirs.contents(tmp_path / "delocate")["vendored"]) == "acme_consumer/.dylibs/libextra.1.dylib"
    assert ours.contents(tmp_path / "ours") == check.same("-e", "libextra")


def test_exclude_forgives_a_library_not_found(libraries: Libraries, compare, tmp_path: Path) -> None:
    """A library excluded need not be found: sharewheel writes the wheel delocate writes with
    --ignore-missing-dependencies. delocate 0.13 itself still refuses (it looks an excluded library
    up before its copy filter excludes it), so this is where sharewheel's -e forgives more; a
    library not found and not excluded is refused by both, for the same reason."""
    check = compare(missing_wheel(libraries, tmp_path / "missing"))
    gone = str(libraries.root / "gone" / "libgone.1.dylib")
    for flags in [("-e", "gone/"), ("--exclude", "libgone.*")]:
        theirs, ours = check.both(*flags)
        assert theirs.wheel is None and theirs.refusal == "Could not find all dependencies."
        forgiven = ours.contents(tmp_path / "ours" / flags[1].replace("/", "_"))
        assert forgiven == check.same("--ignore-missing-dependencies")
        assert forgiven["machos"][EXT]["arm64"][1][-1] == gone  # type: ignore[index]
    theirs, ours = check.both("-e", "libextra")
    assert theirs.wheel is None and theirs.refusal == "Could not find all dependencies."
    assert ours.wheel is None
    assert ours.refusal == f"{check.wheel.name}: delocate: Could not find all dependencies.: {gone} not found: Needed by: {EXT}"


def tool_wheel(libraries: Libraries, where: Path) -> Path:
    """An extension loading libextra and the framework-style library Acme (a file without a
    library's extension), and an executable acme-tool loading libtooldep."""
    extra = libraries.dylib("libextra.1.dylib")
    framework = libraries.dylib("Acme", where="Frameworks/Acme.framework/Versions/A")
    tooldep = libraries.dylib("libtooldep.1.dylib")
    source = where / "tool.c"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("extern int tooldep_twice(int);\nint main(void) { return tooldep_twice(1); }\n")
    libraries.zig.cc("arm64", "-o", where / "acme-tool", source, tooldep)
    assert load_commands(where / "acme-tool")["arm64"]["filetype"] == 2  # MH_EXECUTE
    linkable = where / "link" / "libAcme.dylib"  # zig links only files named like a library
    linkable.parent.mkdir(parents=True, exist_ok=True)
    linkable.symlink_to(framework)
    files = {EXT: build_extension(libraries.zig, "arm64", where / "ext", calls=["extra_twice", "Acme_twice"],
                                  links=[extra, linkable]).read_bytes(),
             TOOL: (where / "acme-tool").read_bytes()}
    wheel = make_wheel(where / "dist", ARM64, {})
    return write_entries(wheel, {**_entries(wheel), **files}, modes={EXT: 0o100755, TOOL: 0o100755})


def _entries(wheel: Path) -> dict[str, bytes]:
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_dylibs_only(libraries: Libraries, compare, tmp_path: Path) -> None:
    """-d: only files named like a library (.so, .dylib) are read and only such libraries copied:
    the executable and what it loads stay as they are, and so does the framework library."""
    check = compare(tool_wheel(libraries, tmp_path / "tool"))
    everything = check.same()
    assert everything["vendored"] == ["acme_consumer/.dylibs/Acme", "acme_consumer/.dylibs/libextra.1.dylib",
                                      "acme_consumer/.dylibs/libtooldep.1.dylib"]
    assert "@loader_path/../.dylibs/libtooldep.1.dylib" in everything["machos"][TOOL]["arm64"][1]  # type: ignore[index]
    for flag in ("-d", "--dylibs-only"):
        only = check.same(flag)
        assert only["vendored"] == ["acme_consumer/.dylibs/libextra.1.dylib"]
        assert str(libraries.root / "lib" / "libtooldep.1.dylib") in only["machos"][TOOL]["arm64"][1]  # type: ignore[index]
        framework = str(libraries.root / "Frameworks" / "Acme.framework" / "Versions" / "A" / "Acme")
        assert framework in only["machos"][EXT]["arm64"][1]  # type: ignore[index]


def executable_path_wheel(own: Libraries, where: Path) -> tuple[Path, Path]:
    """An extension loading `@executable_path/../lib/libexe.1.dylib` (the build machine's
    MACHINE/app/lib/libexe.1.dylib, which loads MACHINE/lib/libdeep.1.dylib); and libexe."""
    deep = own.dylib("libdeep.1.dylib")
    exe = own.dylib("libexe.1.dylib", where="app/lib", install_name="@executable_path/../lib/libexe.1.dylib",
                    links=(deep,))
    return make_wheel(where, ARM64, {EXT: extension(own, where / "ext", [exe])}), exe


def test_executable_path(libraries: Libraries, compare, tmp_path: Path) -> None:
    """--executable-path resolves @executable_path while delocate 0.13 walks the tree, not while it
    maps what to copy (tree_libs_from_directory does not pass it on): both refuse a library loaded
    by @executable_path, with and without the flag, naming it; with --ignore-missing-dependencies
    both leave its load command. There delocate differs, so this part is compared structurally:
    with both flags it walks into the library it found by the flag, vendors what that library
    loads and relinks the build machine's library in place (outside the wheel, and of no use to
    the wheel, which still loads the original); sharewheel walks no further and changes no file
    outside the wheel, so its wheel is the one without the flag."""
    own = Libraries(libraries.zig, tmp_path / "machine")  # delocate edits this libexe: not the module's
    wheel, exe = executable_path_wheel(own, tmp_path / "exe")
    check = compare(wheel)
    app_bin = str(exe.parent.parent / "bin")
    for flags in [(), ("--executable-path", app_bin)]:
        theirs, ours = check.both(*flags)
        assert theirs.wheel is None and theirs.refusal == "Could not find all dependencies.", flags
        assert ours.refusal == (f"{wheel.name}: delocate: Could not find all dependencies.: "
                                f"@executable_path/../lib/libexe.1.dylib not found: Needed by: {EXT}"), flags
    ignoring = check.same("--ignore-missing-dependencies")
    assert ignoring["vendored"] == []
    assert "@executable_path/../lib/libexe.1.dylib" in ignoring["machos"][EXT]["arm64"][1]  # type: ignore[index]

    flags = ("--executable-path", app_bin, "--ignore-missing-dependencies")
    built = exe.read_bytes()
    theirs = delocate_wheel(check.tools, wheel, tmp_path / "delocate", *flags)
    assert theirs.contents(tmp_path / "theirs")["vendored"] == ["acme_consumer/.dylibs/libdeep.1.dylib"]
    assert exe.read_bytes() != built, "delocate 0.13 relinks the build machine's library"
    relinked = load_commands(exe)["arm64"]["dylibs"]
    assert any(name.startswith("@loader_path/") and name.endswith("/.dylibs/libdeep.1.dylib") for name in relinked)
    exe.write_bytes(built)
    ours = sharewheel_repair(wheel, tmp_path / "sharewheel", *flags)
    assert exe.read_bytes() == built
    assert ours.contents(tmp_path / "ours") == ignoring


def fat_wheel(libraries: Libraries, where: Path) -> Path:
    """A universal2 extension loading libthin, which the build machine has for arm64 only: its
    x86_64 slice was linked against an x86_64 build of libthin of the same install name."""
    thin = libraries.dylib("libthin.1.dylib")
    thin_x86 = libraries.dylib("libthin.1.dylib", target="x86_64", where="x86_64", install_name=str(thin))
    slices = [build_extension(libraries.zig, target, where / target, calls=["thin_twice"], links=[lib])
              for target, lib in (("arm64", thin), ("x86_64", thin_x86))]
    fat = make_fat(where / "fat" / Path(EXT).name, slices)
    return make_wheel(where, "macosx_10_13_universal2", {EXT: fat.read_bytes()})


def test_check_archs_and_require_archs(libraries: Libraries, compare, tmp_path: Path) -> None:
    """-k refuses a vendored library lacking an architecture of the binary loading it, and so
    does --require-archs, whatever architectures it names (as a list, universal2 or one: they are
    required besides the dependents'), with delocate's report; without them both write the same wheel."""
    check = compare(fat_wheel(libraries, tmp_path / "fat"))
    assert check.same()["vendored"] == ["acme_consumer/.dylibs/libthin.1.dylib"]
    thin = libraries.root / "lib" / "libthin.1.dylib"
    for flags in [("-k",), ("--check-archs",), ("--require-archs", "universal2"), ("--require-archs", "arm64,x86_64"),
                  ("--require-archs", "x86_64"), ("--require-archs", "arm64"), ("-k", "--require-archs", "arm64")]:
        theirs, ours = check.both(*flags)
        assert theirs.wheel is None and ours.wheel is None, flags
        report = " ".join(theirs.refusal.split())
        # a required arch the library lacks is reported (by delocate's bads_report) against the dependent
        expected = (f"Required arch x86_64 missing from {EXT}" if "x86_64" in "".join(flags) or "universal2" in flags
                    else f"{EXT} needs arch x86_64 missing from {thin}")
        assert report == f"Some missing architectures in wheel {expected}", flags
        assert ours.refusal == f"{check.wheel.name}: {report.removeprefix('Some missing architectures in wheel ')}"


def _without_tmp(report: str) -> str:
    """An arch report with each path cut to its file name."""
    return " ".join(word.rsplit("/", 1)[-1] for word in report.split())


def new_macos_wheel(libraries: Libraries, where: Path) -> Path:
    """An arm64 extension (macOS 11) loading libnew, which the build machine built for macOS 13."""
    new = libraries.dylib("libnew.1.dylib", target="aarch64-macos.13.0", where="macos13")
    return make_wheel(where, ARM64, {EXT: extension(libraries, where / "ext", [new])})


def test_require_target_macos_version(libraries: Libraries, compare, tmp_path: Path) -> None:
    """The wheel's tag names the newest minimum macOS of its binaries (13: the vendored libnew);
    --require-target-macos-version (or MACOSX_DEPLOYMENT_TARGET, which the flag overrides) below
    it is refused with delocate's reason, one at or above it names the tag."""
    check = compare(new_macos_wheel(libraries, tmp_path / "new"))
    assert check.same()["name"] == "acme_consumer-1.0.0-cp311-cp311-macosx_13_0_arm64.whl"
    for flags, env in [(("--require-target-macos-version", "14.0"), None),
                       ((), {"MACOSX_DEPLOYMENT_TARGET": "14.0"}),
                       (("--require-target-macos-version", "14.0"), {"MACOSX_DEPLOYMENT_TARGET": "12.0"})]:
        assert check.same(*flags, env=env)["name"] == "acme_consumer-1.0.0-cp311-cp311-macosx_14_0_arm64.whl"
    for flags, env in [(("--require-target-macos-version", "12.0"), None),
                       ((), {"MACOSX_DEPLOYMENT_TARGET": "12.0"}),
                       (("--require-target-macos-version", "12.0"), {"MACOSX_DEPLOYMENT_TARGET": "14.0"})]:
        theirs, ours = check.both(*flags, env=env)
        assert theirs.wheel is None and ours.wheel is None, (flags, env)
        assert theirs.refusal.startswith("Library dependencies do not satisfy target MacOS version 12.0:")
        assert ours.refusal.startswith(f"{check.wheel.name}: delocate: "), ours.refusal
        # delocate names libnew by its path in its own temporary directory, sharewheel by its path in the wheel
        assert "acme_consumer/.dylibs/libnew.1.dylib has a minimum target of 13.0" in ours.refusal
        assert _without_tmp(ours.refusal.removeprefix(f"{check.wheel.name}: delocate: ")) == \
            _without_tmp(theirs.refusal), (flags, env)


def test_require_target_macos_version_not_a_version(libraries: Libraries, tmp_path: Path) -> None:
    """A version packaging cannot read: delocate-wheel's argparse refuses it (exit 2, usage
    text; not compared), sharewheel with one error line, writing nothing."""
    wheel = new_macos_wheel(libraries, tmp_path / "new")
    before = wheel.read_bytes()
    for flags, env in [(("--require-target-macos-version", "thirteen"), None),
                       ((), {"MACOSX_DEPLOYMENT_TARGET": "thirteen"})]:
        ours = sharewheel_repair(wheel, tmp_path / "out", *flags, env=env)
        assert ours.wheel is None
        assert ours.refusal == (f"{wheel.name}: macOS version 'thirteen' (--require-target-macos-version or "
                                "MACOSX_DEPLOYMENT_TARGET) is not a version")
    assert wheel.read_bytes() == before


def test_delocate_flag_for_a_linux_wheel_is_said_unused(tmp_path: Path) -> None:
    """delocate's flags, given for a Linux wheel (one command line for a cibuildwheel matrix), are
    said once, at default verbosity, not to be used for it; the repair goes on."""
    source = tmp_path / "core.c"
    source.write_text("int core_answer(void) { return 42; }\n")
    binary = tmp_path / "_core.cpython-311-x86_64-linux-gnu.so"
    run([find_tool("gcc", why="the Linux wheel's extension is built with gcc"), "-shared", "-fPIC", "-o", binary,
         source])
    wheel = make_wheel(tmp_path / "dist", "linux_x86_64", {f"acme_consumer/{binary.name}": binary.read_bytes()})
    result = sharewheel("repair", wheel, "-w", tmp_path / "out", "--require-archs", "arm64", "-k")
    notes = [line for line in result.stderr.splitlines() if "not used" in line]
    assert notes == [(f"sharewheel: {wheel.name}: not used for this Linux wheel: "
                      "--check-archs (delocate's), --require-archs (delocate's)")]
    assert one(list((tmp_path / "out").glob("*.whl")))
