"""Import cost of the consumer hook + provider preload vs a bare import of the same extension.

    python benchmarks/import_cost.py [--runs 50]

Both interpreters import the same extension module `acme_consumer._core`. "hooked": the repaired
wheel, provider and consumer in different sys.path entries (hook table → runtime → provider
load() → dlopen). "bare": the unrepaired wheel, whose __init__ has no hook, with the provider's
lib dir on LD_LIBRARY_PATH so the dynamic loader finds libacme by itself. `python -X importtime`,
median of the cumulative time of `acme_consumer` over many fresh interpreters, the two kinds
alternating (a machine whose load changes during the run biases neither). Then the hooked
import's modules, each with the median of its own (self) time.
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


def import_times(python: str, env: dict[str, str]) -> dict[str, tuple[int, int]]:
    """(self, cumulative) microseconds of each module `import acme_consumer` imports, itself included."""
    out = subprocess.run([python, "-X", "importtime", "-c", "import acme_consumer"], env=env,
                         capture_output=True, text=True, check=True)
    lines = out.stderr.splitlines()
    start = max(i for i, line in enumerate(lines) if line.rstrip().endswith("| site")) + 1
    times = {}
    for line in lines[start:]:
        own, cumulative, name = line.split("|")
        times[name.strip()] = (int(own.split(":")[1]), int(cumulative))
    return times


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
    envs = {
        "hooked": {**base, "PYTHONPATH": f"{sites['hooked']}{os.pathsep}{sites['provider']}"},
        "bare": {**base, "PYTHONPATH": str(sites["bare"]),
                 "LD_LIBRARY_PATH": str(sites["provider"] / "acme_native" / "lib")},
    }
    runs: dict[str, list[dict[str, tuple[int, int]]]] = {"hooked": [], "bare": []}
    for _ in range(args.runs):
        for kind, env in envs.items():
            runs[kind].append(import_times(python, env))
    hooked, bare = (statistics.median(r["acme_consumer"][1] for r in runs[kind]) for kind in ("hooked", "bare"))
    print(f"import acme_consumer, median of {args.runs}: bare {bare / 1000:.2f} ms, "
          f"hook + preload {hooked / 1000:.2f} ms, cost {(hooked - bare) / 1000:.2f} ms per provider")
    for module in runs["hooked"][0]:
        own = statistics.median(r[module][0] for r in runs["hooked"] if module in r)
        print(f"  {module:40} {own / 1000:.2f} ms")


if __name__ == "__main__":
    main()
