"""Repair time and peak memory: sharewheel vs `auditwheel repair` on the same wheels, and vs two floors.

    python benchmarks/repair_speed.py [--sizes 1,100,1000] [--runs 3] [--work DIR]

Builds a real consumer wheel (gcc-built extension linking libacme, which the packed provider
acme-native offers, and libextra, which no provider offers and both tools vendor), then grows it
with incompressible payload entries to each size (MB). For each size, in one run, it times:

- sharewheel repair --provider <acme-native wheel>
- auditwheel repair --exclude 'libacme*' (auditwheel cannot link to a provider; this is its nearest job)
- floor (a): read every entry and write it again at zipfile's default deflate level
- floor (b): copy every entry still compressed (no inflate, no deflate)

and prints the medians, peak RSS of each command, and the ratios. Numbers go to RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from _fixtures import build_consumer, build_extra, build_provider

CHUNK = 16 * 1024 * 1024


def measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall time and the child's peak RSS (KiB) of one command."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "took = time.perf_counter() - start\n"
        "print(took, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], env={**os.environ, **(env or {})},
                         capture_output=True, text=True, check=True)
    took, rss, code = out.stdout.split()
    if code != "0":
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return float(took), int(rss)


def grow(wheel: Path, size_mb: int, out_dir: Path) -> Path:
    """`wheel` plus incompressible payload entries (deflated, as a build writes them) up to `size_mb`."""
    import base64
    import hashlib

    out_dir.mkdir(parents=True)
    out = out_dir / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        record = src.read(record_name).decode()
        for info in src.infolist():
            if info.filename != record_name:
                dst.writestr(info, src.read(info))
        left, index = size_mb * 1024 * 1024 - wheel.stat().st_size, 0
        while left > 0:
            data = os.urandom(min(CHUNK, left))
            name = f"acme_consumer/payload/blob{index:04d}.bin"
            dst.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record += f"{name},sha256={digest},{len(data)}\n"
            left, index = left - len(data), index + 1
        dst.writestr(record_name, record)
    return out


def floor_rewrite(wheel: Path, out: Path) -> None:
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            with src.open(info) as reader, dst.open(zipfile.ZipInfo(info.filename, info.date_time), "w") as writer:
                shutil.copyfileobj(reader, writer, CHUNK)


def floor_copy(wheel: Path, out: Path) -> None:
    from sharewheel.wheelfile import _copy_raw

    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            _copy_raw(src, info, dst, info.date_time)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,100,1000", help="wheel sizes in MB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sharewheel-bench-"))
    provider = build_provider(work)
    extra = build_extra(work)
    consumer = build_consumer(work, provider, extra=extra)
    scripts = Path(sys.executable).parent
    env = {"LD_LIBRARY_PATH": str(extra), "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"}
    print(f"{'MB':>6} {'sharewheel s':>12} {'auditwheel s':>12} {'floor a s':>9} {'floor b s':>9} "
          f"{'sw/aw':>6} {'sw/a':>6} {'sw/b':>6} {'sw RSS MB':>9} {'aw RSS MB':>9}")
    for size in map(int, args.sizes.split(",")):
        wheel = grow(consumer, size, work / f"in-{size}")
        times: dict[str, list[float]] = {k: [] for k in ("sw", "aw", "a", "b")}
        rss: dict[str, int] = {"sw": 0, "aw": 0}
        for run in range(args.runs):
            out = work / f"out-{size}-{run}"
            took, peak = measured([sys.executable, "-m", "sharewheel", "repair", str(wheel), "--provider",
                                   str(provider), "-w", str(out / "sw")], env)
            times["sw"].append(took)
            rss["sw"] = max(rss["sw"], peak)
            took, peak = measured([str(scripts / "auditwheel"), "repair", str(wheel), "--exclude", "libacme*",
                                   "-w", str(out / "aw")], env)
            times["aw"].append(took)
            rss["aw"] = max(rss["aw"], peak)
            (out / "floors").mkdir(parents=True)
            start = time.perf_counter()
            floor_rewrite(wheel, out / "floors" / "a.whl")
            times["a"].append(time.perf_counter() - start)
            start = time.perf_counter()
            floor_copy(wheel, out / "floors" / "b.whl")
            times["b"].append(time.perf_counter() - start)
            shutil.rmtree(out)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{size:>6} {med['sw']:>12.2f} {med['aw']:>12.2f} {med['a']:>9.2f} {med['b']:>9.2f} "
              f"{med['sw'] / med['aw']:>6.2f} {med['sw'] / med['a']:>6.2f} {med['sw'] / med['b']:>6.2f} "
              f"{rss['sw'] / 1024:>9.0f} {rss['aw'] / 1024:>9.0f}", flush=True)
        shutil.rmtree(wheel.parent)
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
