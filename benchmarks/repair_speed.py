"""Repair time and peak memory: sharewheel vs `auditwheel repair` on the same wheels, and vs two floors.

    python benchmarks/repair_speed.py [--sizes 1,100,250] [--runs 3] [--work DIR]

Builds a real consumer wheel (gcc-built extension linking libacme, which the packed provider
acme-native offers, and libextra, which no provider offers and both tools vendor), then grows it
to each size (MB unpacked; 1000 works too): half the added payload copies of real shared
libraries from the system's lib dir under acme_consumer/lib/ (only those needing nothing but
what every manylinux policy whitelists, so neither tool vendors more; picked by name order), the
other half incompressible data; all deflated as a build writes them. At 250 MB that is the
issue's "167 MB wheel whose payload is half real shared libraries". For each size, in one run,
medians of --runs:

  sharewheel   sharewheel repair --provider <acme-native wheel>
  auditwheel   auditwheel repair --exclude 'libacme*' (it cannot link to a provider; its nearest job)
  floor a      every entry inflated and deflated again at zlib's default level, in-process
  floor b      every entry copied still compressed, and inflated + SHA-256-checked against RECORD,
               in-process, one thread: the least a repair that verifies the wheel can do

Columns: MB = unpacked size, wheel MB = file size, .so % = share of unpacked bytes in ELF files,
then the medians (s), the ratios sw/aw, sw/a, sw/b, the largest peak RSS of each command over the
runs (MB), and the platform tag auditwheel gave (sharewheel's too when it differs). The floors run
without an interpreter start, so at 1 MB their ratios mean little. Numbers go to RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _fixtures import (MB, build_consumer, build_extra, build_provider, floor_copy_checked, floor_rewrite, grow,
                       measured, platform_tag, wheel_stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,100,250", help="wheel sizes in MB unpacked, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="keep the wheels here (a new directory)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sharewheel-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        provider = build_provider(work)
        extra = build_extra(work)
        consumer = build_consumer(work, provider, extra=extra)
        scripts = Path(sys.executable).parent
        env = {"LD_LIBRARY_PATH": str(extra), "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"}
        print(f"{'MB':>5} {'wheel MB':>8} {'.so %':>5} {'sharewheel s':>12} {'auditwheel s':>12} {'floor a s':>9} "
              f"{'floor b s':>9} {'sw/aw':>6} {'sw/a':>6} {'sw/b':>6} {'sw RSS MB':>9} {'aw RSS MB':>9}  tag",
              flush=True)
        for size in map(int, args.sizes.split(",")):
            wheel = grow(consumer, size, work / f"in-{size}")
            unpacked, elf_share = wheel_stats(wheel)
            times: dict[str, list[float]] = {k: [] for k in ("sw", "aw", "a", "b")}
            rss = {"sw": 0, "aw": 0}
            out = work / f"out-{size}"
            for _ in range(args.runs):
                shutil.rmtree(out, ignore_errors=True)  # the last run's outputs stay with --work
                (out / "floors").mkdir(parents=True)
                for key, cmd in (
                    ("sw", [sys.executable, "-m", "sharewheel", "repair", wheel, "--provider", provider, "-w", out / "sw"]),
                    ("aw", [scripts / "auditwheel", "repair", wheel, "--exclude", "libacme*", "-w", out / "aw"]),
                ):
                    took, peak = measured([cmd], env)
                    times[key].append(took)
                    rss[key] = max(rss[key], peak)
                for key, floor in (("a", floor_rewrite), ("b", floor_copy_checked)):
                    start = time.perf_counter()
                    floor(wheel, out / "floors" / f"{key}.whl")
                    times[key].append(time.perf_counter() - start)
            med = {k: statistics.median(v) for k, v in times.items()}
            tag = platform_tag(out / "aw")
            if platform_tag(out / "sw") != tag:
                tag = f"aw {tag}, sw {platform_tag(out / 'sw')}"
            print(f"{unpacked / MB:>5.0f} {wheel.stat().st_size / MB:>8.0f} {elf_share:>5.0%} {med['sw']:>12.2f} "
                  f"{med['aw']:>12.2f} {med['a']:>9.2f} {med['b']:>9.2f} {med['sw'] / med['aw']:>6.2f} "
                  f"{med['sw'] / med['a']:>6.2f} {med['sw'] / med['b']:>6.2f} {rss['sw'] / 1024:>9.0f} "
                  f"{rss['aw'] / 1024:>9.0f}  {tag}", flush=True)
            if args.work is None:
                shutil.rmtree(wheel.parent)
                shutil.rmtree(out)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
