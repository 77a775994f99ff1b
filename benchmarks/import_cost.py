"""Import cost of the consumer hook + provider preload vs a bare import of the same extension.

    python benchmarks/import_cost.py [--runs 50]

Both interpreters import the same extension module `acme_consumer._core`. "hooked": the repaired
wheel, provider and consumer in different sys.path entries (hook → provider load() → dlopen).
"bare": the unrepaired wheel, whose __init__ has no hook, with the provider's lib dir on
LD_LIBRARY_PATH so the dynamic loader finds libacme by itself. `python -X importtime`, median
of the cumulative time of `acme_consumer` over many fresh interpreters.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _fixtures import build_consumer, build_provider


def cumulative_us(python: str, env: dict[str, str]) -> int:
    out = subprocess.run([python, "-X", "importtime", "-c", "import acme_consumer"], env=env,
                         capture_output=True, text=True, check=True)
    line = next(l for l in out.stderr.splitlines() if l.rstrip().endswith("| acme_consumer"))
    return int(line.split("|")[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sharewheel-import-"))
    provider = build_provider(work)
    consumer = build_consumer(work, provider)
    subprocess.run([sys.executable, "-m", "sharewheel", "repair", consumer, "--provider", provider, "-w",
                    work / "wheelhouse"], check=True, stdout=subprocess.DEVNULL)
    repaired = next((work / "wheelhouse").glob("*.whl"))
    sites = {}
    for name, wheel in (("provider", provider), ("hooked", repaired), ("bare", consumer)):
        # pip compiles .pyc files at install, as a user's install would have them
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", work / name, wheel],
                       check=True)
        sites[name] = work / name
    python = sys.executable
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH")}
    hooked_env = {**base, "PYTHONPATH": f"{sites['hooked']}{os.pathsep}{sites['provider']}"}
    bare_env = {**base, "PYTHONPATH": str(sites["bare"]),
                "LD_LIBRARY_PATH": str(sites["provider"] / "acme_native" / "lib")}
    hooked = statistics.median(cumulative_us(python, hooked_env) for _ in range(args.runs))
    bare = statistics.median(cumulative_us(python, bare_env) for _ in range(args.runs))
    print(f"import acme_consumer, median of {args.runs}: bare {bare / 1000:.2f} ms, "
          f"hook + preload {hooked / 1000:.2f} ms, cost {(hooked - bare) / 1000:.2f} ms per provider")


if __name__ == "__main__":
    main()
