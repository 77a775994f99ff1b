"""Write the fuzzing seed corpus: the wheels the test fixtures build, and their hostile variants.

    python fuzz/make_corpus.py [--out fuzz/corpus] [--no-macos] [--no-windows]

Builds with the test suite's own builders (tests/conftest.py, macho_support.py, pe_support.py),
outside pytest:

- ELF: acme-native 3.1.4 packed from a gcc-built prefix; the acme_consumer wheel (setuptools,
  built against the installed provider, needing libextra too) and its repaired wheel, as the
  `consumer` fixture makes them;
- Mach-O (zig + lld, unless --no-macos): acme-native packed from the arm64 prefix, an arm64
  consumer extension and its repaired wheel;
- PE (zig, MinGW, unless --no-windows; the first build compiles MinGW's runtime, 70-90 s, or
  reuses $SHAREWHEEL_TEST_ZIG_CACHE): acme-native packed from the Windows prefix, a consumer .pyd
  and its repaired wheel;
- every hostile kind of tests/test_cli_errors.py and tests/test_hostile.py applied to the ELF
  consumer wheel (and the binary-level ones to the Mach-O and PE wheels): seeds next to each
  error path.

Needs gcc and, for the build venv, pip access to setuptools, wheel and pkgconf (as the tests do).
The corpus is gitignored: it is megabytes of binaries, rebuilt by this script.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path.insert(0, str(TESTS))

import conftest
from conftest import (
    EXTRA_SOURCE,
    BuildEnv,
    build_acme,
    build_c_library,
    build_consumer,
    consumer_project,
    one,
    prebuilt_wheel,
    sharewheel,
)


def pack(prefix: Path, out: Path) -> Path:
    sharewheel("pack", prefix, "--name", "acme-native", "--version", "3.1.4", "-w", out)
    return one(list(out.glob("*.whl")))


def repair(wheel: Path, out: Path, *args: str | Path, env: dict[str, str] | None = None) -> Path:
    sharewheel("repair", wheel, "-w", out, *args, env=env)
    return one(list(out.glob("*.whl")))


def build_env(work: Path) -> BuildEnv:
    root = work / "build-venv"
    venv.create(root, with_pip=True)
    env = BuildEnv(root)
    env.pip("install", "setuptools>=69", "wheel", "pkgconf")
    return env


def elf_seeds(work: Path, env: BuildEnv) -> dict[str, Path]:
    provider = pack(build_acme(work / "acme" / "prefix", "3.1.4"), work / "acme" / "wheelhouse")
    extra = build_c_library(work / "extra", "extra", "libextra.so.1", EXTRA_SOURCE)
    project = consumer_project(work / "src", "acme_consumer", extra=True)
    wheel = build_consumer(env, project, work / "consumer", provider=provider, extra_prefix=extra)
    repaired = repair(wheel, work / "consumer" / "wheelhouse", "--provider", provider,
                      env={"LD_LIBRARY_PATH": str(extra / "lib")})
    return {"elf-provider": provider, "elf-consumer": wheel, "elf-consumer-repaired": repaired}


def macos_seeds(work: Path, env: BuildEnv) -> dict[str, Path]:
    import macho_support

    zig = macho_support.Zig(work / "zig-cache")
    prefix = macho_support.macos_prefix(zig, work / "mac" / "prefix", "arm64")
    provider = pack(prefix.root, work / "mac" / "wheelhouse")
    unique = conftest.manifest_of(provider)["provides"]["libraries"][0]["unique_name"]
    dylib = conftest.unpack(provider, work / "mac" / "site") / "acme_native" / "lib" / unique
    extension = macho_support.build_extension(zig, "arm64", work / "mac" / "ext", calls=["acme_add"], links=[dylib])
    wheel = prebuilt_wheel(env, work / "mac" / "consumer", extension, "macosx_11_0_arm64")
    repaired = repair(wheel, work / "mac" / "repaired", "--provider", provider)
    return {"macho-provider": provider, "macho-consumer": wheel, "macho-consumer-repaired": repaired}


def windows_seeds(work: Path, env: BuildEnv) -> dict[str, Path]:
    import pe_support

    kept = os.environ.get("SHAREWHEEL_TEST_ZIG_CACHE")
    zig = pe_support.PeZig(Path(kept) if kept else work / "zig-cache-windows")
    zig.cache_dir.mkdir(parents=True, exist_ok=True)
    prefix = pe_support.windows_prefix(zig, work / "win" / "prefix")
    provider = pack(prefix.root, work / "win" / "wheelhouse")
    pyd = pe_support.build_pyd(zig, work / "win" / "pyd" / "_core.cp311-win_amd64.pyd", links=[prefix.implib],
                               include_dirs=[prefix.include_dir], extra=False)
    wheel = prebuilt_wheel(env, work / "win" / "consumer", pyd, "win_amd64")
    repaired = repair(wheel, work / "win" / "repaired", "--provider", provider)
    return {"pe-provider": provider, "pe-consumer": wheel, "pe-consumer-repaired": repaired}


def hostile_seeds(seeds: dict[str, Path], work: Path) -> dict[str, Path]:
    """The hostile kinds of the test suite, applied to the fixtures' wheels."""
    import test_cli_errors
    import test_hostile

    made: dict[str, Path] = {}

    def add(label: str, build) -> None:
        where = work / "hostile" / label
        try:
            made[label] = build(where).path
        except Exception as e:  # noqa: BLE001 - a kind that does not apply to this wheel
            print(f"  skipped {label}: {type(e).__name__}: {e}", file=sys.stderr)

    consumer = seeds["elf-consumer"]
    for kind in test_cli_errors.HOSTILE:
        add(f"elf-{kind}", lambda where, kind=kind: test_cli_errors.make_hostile(kind, consumer, where))
    for kind, case in test_hostile.HOSTILE_CASES.items():
        if kind not in ("declared-size-bomb", "real-compressible-bomb"):  # megabytes, nothing new to a fuzzer
            add(f"elf-{kind}", lambda where, case=case: case.make(consumer, where))
    for kind, case in test_hostile.ELF_CASES.items():
        add(f"elf-{kind}", lambda where, case=case: case.make(consumer, where))
    for kind, case in test_hostile.PROVIDER_CASES.items():
        add(f"elf-{kind}", lambda where, case=case: case.make(seeds["elf-provider"], where))
    for fmt, cases, member in (("macho", test_hostile.MACHO_CASES, ".so"), ("pe", test_hostile.PE_CASES, ".pyd")):
        if f"{fmt}-consumer" not in seeds:
            continue
        binary = work / f"{fmt}-binary{member}"
        entries = test_hostile.read_entries(seeds[f"{fmt}-consumer"])
        binary.write_bytes(entries[test_hostile.member_named(seeds[f"{fmt}-consumer"], (member,))])
        for kind, case in cases.items():
            add(kind, lambda where, case=case, binary=binary: case.make(binary, where))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "corpus")
    parser.add_argument("--no-macos", action="store_true", help="skip the Mach-O seeds (zig, lld-16)")
    parser.add_argument("--no-windows", action="store_true", help="skip the PE seeds (zig, MinGW)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sharewheel-corpus-") as tmp:
        work = Path(tmp)
        env = build_env(work)
        seeds = elf_seeds(work, env)
        if not args.no_macos:
            seeds |= macos_seeds(work, env)
        if not args.no_windows:
            seeds |= windows_seeds(work, env)
        seeds |= hostile_seeds(seeds, work)
        for label, path in sorted(seeds.items()):
            data = path.read_bytes()
            target = args.out / f"{label}-{hashlib.sha1(data).hexdigest()[:12]}.whl"
            shutil.copyfile(path, target)
        total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"{len(seeds)} seeds in {args.out} ({total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
