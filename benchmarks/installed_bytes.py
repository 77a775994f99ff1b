"""Installed bytes: N consumers sharing one provider vs the same consumers vendoring its library.

    python benchmarks/installed_bytes.py [--consumers 5] [--provider-mb 30]

libacme carries `--provider-mb` MB of data. Each consumer is built against the installed
provider; "shared": each repaired by sharewheel, installed with one provider into one directory;
"vendored": each repaired by `auditwheel repair` (libacme copied into every wheel), installed
into one directory. Sizes are the bytes of the installed files.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _fixtures import build_consumer, build_provider


def installed_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--consumers", type=int, default=5)
    parser.add_argument("--provider-mb", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sharewheel-bytes-"))
    provider = build_provider(work, blob_mb=args.provider_mb)
    lib_dir = work / "build-site" / "acme_native" / "lib"
    scripts = Path(sys.executable).parent
    env = {**os.environ, "LD_LIBRARY_PATH": str(lib_dir), "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"}
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target"]
    subprocess.run([*pip, work / "shared", provider], check=True)
    for index in range(args.consumers):
        consumer = build_consumer(work, provider, package=f"acme_consumer{index}")
        subprocess.run([sys.executable, "-m", "sharewheel", "repair", consumer, "--provider", provider, "-w",
                        work / f"sw{index}"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([scripts / "auditwheel", "repair", consumer, "-w", work / f"aw{index}"], check=True,
                       env=env, capture_output=True)
        subprocess.run([*pip, work / "shared", next((work / f"sw{index}").glob("*.whl"))], check=True)
        subprocess.run([*pip, work / "vendored", next((work / f"aw{index}").glob("*.whl"))], check=True)
    shared, vendored = installed_bytes(work / "shared"), installed_bytes(work / "vendored")
    print(f"{args.consumers} consumers, {args.provider_mb} MB library: shared {shared / 2**20:.1f} MiB, "
          f"vendored {vendored / 2**20:.1f} MiB, ratio {vendored / shared:.2f}x")


if __name__ == "__main__":
    main()
