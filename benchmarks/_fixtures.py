"""Real inputs for the benchmarks: gcc-built libraries, a packed provider, setuptools-built consumers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_provider(work: Path, blob_mb: int = 0) -> Path:
    """acme-native 3.1.4 packed from examples/acme; `blob_mb` adds read-only data to libacme."""
    prefix = work / "acme"
    env = dict(os.environ)
    if blob_mb:
        source = work / "acme-blob.c"  # linked into libacme beside acme.c
        source.write_text(f"const char acme_blob[{blob_mb} << 20] = {{1}};\n")
        env["CC"] = f"gcc -x c {source} -x none"
    subprocess.run(["sh", ROOT / "examples" / "acme" / "build.sh", prefix, "3.1.4"], check=True, env=env)
    subprocess.run([sys.executable, "-m", "sharewheel", "pack", prefix, "--name", "acme-native", "--version",
                    "3.1.4", "-w", work / "providers"], check=True, stdout=subprocess.DEVNULL)
    return next((work / "providers").glob("*.whl"))


def build_extra(work: Path) -> Path:
    """libextra.so.1, which no provider offers; returns its directory."""
    extra = work / "extra"
    extra.mkdir(exist_ok=True)
    (extra / "extra.c").write_text("int extra_twice(int x) { return 2 * x; }\n")
    subprocess.run(["gcc", "-O2", "-fPIC", "-shared", "-Wl,-soname,libextra.so.1", "-o", extra / "libextra.so.1",
                    extra / "extra.c"], check=True)
    if not (extra / "libextra.so").exists():
        (extra / "libextra.so").symlink_to("libextra.so.1")
    return extra


def build_consumer(work: Path, provider: Path, package: str = "acme_consumer", extra: Path | None = None) -> Path:
    """examples/acme-consumer renamed to `package`, built against the installed provider."""
    site = work / "build-site"
    if not site.exists():
        with zipfile.ZipFile(provider) as zf:
            zf.extractall(site)
    project = work / f"project-{package}"
    shutil.copytree(ROOT / "examples" / "acme-consumer", project, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    (project / "src" / "acme_consumer").rename(project / "src" / package)
    for path in (project / "pyproject.toml", project / "setup.py", project / "src" / package / "__init__.py"):
        path.write_text(path.read_text().replace("acme_consumer", package).replace("acme-consumer", package.replace("_", "-")))
    if extra is not None:
        setup = project / "setup.py"
        setup.write_text(setup.read_text().replace(
            'extra_link_args=pkg_config("--libs"),', f'extra_link_args=pkg_config("--libs") + ["-L{extra}", "-lextra"],'))
        core = project / "src" / "_core.c"
        core.write_text(core.read_text().replace(
            "return PyLong_FromLong(acme_add(a, b));",
            "extern int extra_twice(int);\n    return PyLong_FromLong(extra_twice(acme_add(a, b)) / 2);"))
    env = {**os.environ, "PKG_CONFIG_PATH": str(site / "acme_native" / "lib" / "pkgconfig"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    dist = work / f"dist-{package}"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w", dist, project],
                   check=True, env=env)
    return next(dist.glob("*.whl"))
