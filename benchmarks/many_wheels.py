"""Many small wheels: one `sharewheel repair` call for all vs one `auditwheel repair` call per wheel.

    python benchmarks/many_wheels.py [--count 40] [--mb 1] [--runs 5] [--work DIR]

Builds --count real consumers (the acme-consumer extension linking libacme from the packed provider
acme-native and libextra, which both tools vendor), each under its own distribution and package
name, each grown to --mb MB unpacked with the payload repair_speed.py uses (half copies of real
system shared libraries, half incompressible data). A release script repairs dist/*.whl; with
auditwheel that is one process per wheel, with sharewheel one process for them all. Medians of --runs:

  N wheels   sharewheel repair w1 ... wN --provider <acme-native wheel> -w OUT (one call)
             vs auditwheel repair --exclude 'libacme*' wI -w OUT, N calls one after another
  1 wheel    the first of those wheels alone: one call of each

Columns: the medians (s), sw/aw, and the peak RSS (MB) of the largest process of each job.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _fixtures import build_consumer, build_extra, build_provider, grow, measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--mb", type=float, default=1.0, help="size of each wheel in MB unpacked")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None, help="keep the wheels here (a new directory)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sharewheel-many-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        provider = build_provider(work)
        extra = build_extra(work)
        wheels = []
        for index in range(args.count):
            package = f"acme_consumer{index:02d}"
            consumer = build_consumer(work, provider, package=package, extra=extra)
            wheels.append(grow(consumer, args.mb, work / "dist", package=package))
        scripts = Path(sys.executable).parent
        env = {"LD_LIBRARY_PATH": str(extra), "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"}
        out = work / "out"

        def sharewheel(batch: list[Path]) -> list[list[str | Path]]:
            return [[sys.executable, "-m", "sharewheel", "repair", *batch, "--provider", provider, "-w", out / "sw"]]

        def auditwheel(batch: list[Path]) -> list[list[str | Path]]:
            return [[scripts / "auditwheel", "repair", wheel, "--exclude", "libacme*", "-w", out / "aw"]
                    for wheel in batch]

        print(f"{'job':<24} {'sharewheel s':>12} {'auditwheel s':>12} {'sw/aw':>6} {'sw RSS MB':>9} {'aw RSS MB':>9}",
              flush=True)
        jobs = ((f"{len(wheels)} wheels, {args.mb:g} MB each", wheels), (f"1 wheel, {args.mb:g} MB", wheels[:1]))
        for label, batch in jobs:
            times: dict[str, list[float]] = {"sw": [], "aw": []}
            rss = {"sw": 0, "aw": 0}
            for _ in range(args.runs):
                for key, cmds in (("sw", sharewheel(batch)), ("aw", auditwheel(batch))):
                    shutil.rmtree(out, ignore_errors=True)
                    took, peak = measured(cmds, env)
                    times[key].append(took)
                    rss[key] = max(rss[key], peak)
                    made = len(list((out / key).glob("*.whl")))
                    if made != len(batch):
                        raise SystemExit(f"{key}: {made} wheels out of {len(batch)}")
            sw, aw = statistics.median(times["sw"]), statistics.median(times["aw"])
            print(f"{label:<24} {sw:>12.2f} {aw:>12.2f} {sw / aw:>6.2f} {rss['sw'] / 1024:>9.0f} "
                  f"{rss['aw'] / 1024:>9.0f}", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
