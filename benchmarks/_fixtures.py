"""Real inputs for the benchmarks: gcc-built libraries, a packed provider, setuptools-built consumers,
consumers grown with real system libraries, and the timing helpers the speed benchmarks share."""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import io
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_LIB_DIRS = (Path("/usr/lib/x86_64-linux-gnu"), Path("/lib/x86_64-linux-gnu"))
MB = 1024 * 1024
CHUNK = 16 * MB


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


def _manylinux_policies() -> list[dict]:
    import auditwheel

    policies = json.loads((Path(auditwheel.__file__).parent / "policy" / "manylinux-policy.json").read_text())
    return [p for p in policies if p["lib_whitelist"]]  # not the generic "linux" policy


def _eligible(path: Path, allowed: set[str], versions: dict[str, set[str]], blacklist: set[str]) -> bool:
    """A shared library (not itself a whitelisted one) that auditwheel keeps as it is: every DT_NEEDED
    whitelisted by every manylinux policy, no RPATH, baseline ISA, and no symbol version or blacklisted
    symbol that would leave the wheel without a manylinux tag, so that both repairs succeed."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection
    from elftools.elf.sections import NoteSection, SymbolTableSection

    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return False
        f.seek(0)
        try:
            elf = ELFFile(f)
            if elf.elfclass != 64 or elf["e_type"] != "ET_DYN" or elf["e_machine"] != "EM_X86_64":
                return False
            if any(seg["p_type"] == "PT_INTERP" for seg in elf.iter_segments()):
                return False  # a PIE executable or ld.so itself
            dynamic = next((s for s in elf.iter_sections() if isinstance(s, DynamicSection)), None)
            if dynamic is None:
                return False
            tags = list(dynamic.iter_tags())
            sonames = [t.soname for t in tags if t.entry.d_tag == "DT_SONAME"]
            needed = [t.needed for t in tags if t.entry.d_tag == "DT_NEEDED"]
            if not sonames or sonames[0] in allowed or sonames[0].startswith("ld-linux"):
                return False
            if any(t.entry.d_tag in ("DT_RPATH", "DT_RUNPATH") for t in tags) or not set(needed) <= allowed:
                return False
            for section in elf.iter_sections():
                if isinstance(section, GNUVerNeedSection):
                    for verneed, auxiliaries in section.iter_versions():
                        for aux in auxiliaries:
                            prefix, _, version = aux.name.partition("_")
                            if prefix in versions and version not in versions[prefix]:
                                return False  # GLIBC_PRIVATE, or newer than auditwheel's newest policy
                elif isinstance(section, NoteSection):
                    for note in section.iter_notes():
                        if note["n_type"] == "NT_GNU_PROPERTY_TYPE_0":
                            for prop in note["n_desc"]:
                                if prop.pr_type == "GNU_PROPERTY_X86_ISA_1_NEEDED" and prop.pr_data & ~1:
                                    return False
                elif isinstance(section, SymbolTableSection) and section.name == ".dynsym":
                    for symbol in section.iter_symbols():
                        if symbol["st_shndx"] == "SHN_UNDEF" and symbol.name in blacklist:
                            return False
        except (ELFError, ValueError, KeyError, AttributeError):
            return False
    return True


@functools.cache
def payload_libraries() -> tuple[tuple[Path, int], ...]:
    """The system's shared libraries a wheel may carry as they are, as (path, size), sorted by name.

    Real code, symbol tables and relocations (what repair tools parse and compress) rather than random
    bytes; only those whose dependencies every manylinux policy whitelists, so that neither tool vendors
    anything more and the grown wheel stays repairable. Sorted so that every run picks the same ones.
    """
    policies = _manylinux_policies()
    allowed = set.intersection(*(set(p["lib_whitelist"]) for p in policies))
    newest = max(policies, key=lambda p: tuple(map(int, p["name"].split("_")[1:3])))
    versions = {name: set(vers) for name, vers in newest["symbol_versions"]["x86_64"].items()}
    blacklist = {symbol for p in policies for symbols in p["blacklist"].values() for symbol in symbols}
    found: dict[str, Path] = {}  # by name: entry names in the wheel must not clash
    real: set[Path] = set()  # /lib is often /usr/lib
    for directory in SYSTEM_LIB_DIRS:
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                if ".so" in path.name and path.is_file() and not path.is_symlink() and path.resolve() not in real:
                    real.add(path.resolve())
                    found.setdefault(path.name, path)
    libraries = tuple((path, path.stat().st_size) for name, path in sorted(found.items())
                      if _eligible(path, allowed, versions, blacklist))
    if not libraries:
        raise SystemExit(f"no eligible shared libraries in {', '.join(map(str, SYSTEM_LIB_DIRS))}")
    return libraries


def _record_row(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}\n"


def grow(wheel: Path, size_mb: float, out_dir: Path, package: str = "acme_consumer") -> Path:
    """`wheel` grown to `size_mb` MB unpacked: half the added payload copies of real system libraries
    under `package`/lib/ (whole files, as many as fit, cycling with numbered copies when they run out),
    the rest incompressible data; every entry deflated at zlib's default level, as a build writes them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / wheel.name
    noise = random.Random(f"{package}-{size_mb}")  # incompressible, and the same bytes on every run
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        record = src.read(record_name).decode()
        for info in src.infolist():
            if info.filename != record_name:
                dst.writestr(info, src.read(info))
        payload = int(size_mb * MB) - sum(info.file_size for info in src.infolist())
        libraries = payload_libraries()
        smallest = min(size for _, size in libraries)
        left, copy = payload // 2, 0
        while left >= smallest:
            for path, size in libraries:
                if size <= left:
                    name = f"{package}/lib/{path.name}" if copy == 0 else f"{package}/lib/copy{copy}/{path.name}"
                    info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o100755 << 16
                    data = path.read_bytes()
                    dst.writestr(info, data)
                    record += _record_row(name, data)
                    left -= size
            copy += 1
        left, index = payload - (payload // 2 - left), 0
        while left > 0:
            data = noise.randbytes(min(CHUNK, left))
            name = f"{package}/payload/blob{index:04d}.bin"
            dst.writestr(name, data)
            record += _record_row(name, data)
            left, index = left - len(data), index + 1
        dst.writestr(record_name, record)
    return out


def wheel_stats(wheel: Path) -> tuple[int, float]:
    """Unpacked bytes, and the share of them in ELF files."""
    total = elf = 0
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            total += info.file_size
            if info.file_size >= 4:
                with zf.open(info) as f:
                    elf += info.file_size if f.read(4) == b"\x7fELF" else 0
    return total, elf / total if total else 0.0


def measured(cmds: list[list[str]], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall time of running `cmds` one after another, and the peak RSS (KiB) of the largest process
    among them: a wrapper interpreter times them, so neither number includes this script's own state."""
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "for cmd in json.loads(sys.argv[1]):\n"
        "    out = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
        "    if out.returncode:\n"
        "        sys.exit(' '.join(cmd) + ' failed:\\n' + out.stderr)\n"
        "took = time.perf_counter() - start\n"
        "print(took, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, json.dumps([[str(a) for a in cmd] for cmd in cmds])],
                         env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    took, rss = out.stdout.split()
    return float(took), int(rss)


def platform_tag(directory: Path) -> str:
    """The manylinux/musllinux level of the one wheel in `directory`, e.g. manylinux_2_17."""
    from packaging.utils import parse_wheel_filename

    wheel = next(directory.glob("*.whl"))
    platforms = sorted({tag.platform for tag in parse_wheel_filename(wheel.name)[3]})
    levels = [m.group() for p in platforms if (m := re.match(r"(many|musl)linux_\d+_\d+", p))]
    return levels[0] if levels else platforms[0]


def floor_rewrite(wheel: Path, out: Path) -> None:
    """Floor (a): every entry inflated and deflated again at zlib's default level (what auditwheel does)."""
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            target = zipfile.ZipInfo(info.filename, info.date_time)
            target.compress_type = zipfile.ZIP_DEFLATED
            with src.open(info) as reader, dst.open(target, "w") as writer:
                shutil.copyfileobj(reader, writer, CHUNK)


def floor_copy_checked(wheel: Path, out: Path) -> None:
    """Floor (b): every entry copied still compressed, and inflated and hashed against its RECORD row.

    One thread, one read of each entry: its compressed bytes go both to the output and to the inflate +
    hash, so this is the least work a repair that verifies what it copies can do. (A repair that hashes
    on a second core can come in under it on the clock.)
    """
    read = 1 * MB
    with zipfile.ZipFile(wheel) as src, open(wheel, "rb") as fp, zipfile.ZipFile(out, "w") as dst:
        assert dst.fp is not None
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        rows = {row[0]: row[1] for row in csv.reader(io.StringIO(src.read(record_name).decode())) if len(row) > 1}
        for info in src.infolist():
            fp.seek(info.header_offset)
            name_length, extra_length = struct.unpack("<HH", fp.read(30)[26:30])
            fp.seek(info.header_offset + 30 + name_length + extra_length)
            copy = zipfile.ZipInfo(info.filename, info.date_time)
            copy.compress_type, copy.CRC = info.compress_type, info.CRC
            copy.compress_size, copy.file_size = info.compress_size, info.file_size
            copy.external_attr = info.external_attr
            copy.header_offset = dst.fp.tell()
            dst.fp.write(copy.FileHeader(max(info.file_size, info.compress_size) >= zipfile.ZIP64_LIMIT))
            algorithm, _, expected = rows.get(info.filename, "").partition("=")
            digest = hashlib.new(algorithm) if expected else None
            inflate = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
            remaining = info.compress_size
            while remaining:
                chunk = fp.read(min(read, remaining))
                remaining -= len(chunk)
                dst.fp.write(chunk)
                if digest is not None:
                    digest.update(inflate.decompress(chunk) if inflate is not None else chunk)
            if digest is not None:
                if inflate is not None:
                    digest.update(inflate.flush())
                if base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode() != expected:
                    raise SystemExit(f"{wheel}: the hash of {info.filename} differs from RECORD")
            dst.filelist.append(copy)
            dst.NameToInfo[copy.filename] = copy
            dst.start_dir = dst.fp.tell()
        dst._didModify = True  # type: ignore[attr-defined]
