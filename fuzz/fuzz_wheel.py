"""atheris harness: sharewheel's wheel reader and `show` on arbitrary bytes.

Each input is the content of a wheel file. It is written under a wheel file name taken from the
input itself when it can be (the `<name>-<version>.dist-info/` directory and the first `Tag:` of
its WHEEL), so mutations of real wheels get past the name check and reach the deeper code;
otherwise under a fixed linux_x86_64 name. Then:

1. `InputWheel.open(path)` and `extract()` into a temporary directory;
2. `show_wheel(path, providers=())`, what `sharewheel show` runs (with the OS adapter: auditwheel,
   delocate's and sharewheel's Mach-O reader, pefile and delvewheel).

A `SharewheelError` is the expected outcome for bad input (the CLI prints it as one error line).
Any other exception is a crash: libFuzzer stops and writes the input to `crash-<sha1>`.

Mutations: byte-level mutations of a zip almost never get past its CRCs and RECORD's hashes, so
most of the time (SHAREWHEEL_FUZZ_MUTATOR=zip, the default) the custom mutator unzips the input,
mutates one entry (its bytes with libFuzzer's mutator, or its name), drops or duplicates one now
and then, and zips it again with a RECORD that matches (usually): the ELF, Mach-O and PE readers,
the manifest and METADATA parsers see mutated files inside otherwise valid wheels. One mutation in
ten stays at the byte level, for the zip reader itself. SHAREWHEEL_FUZZ_MUTATOR=bytes: libFuzzer's
own mutations only.

    pip install atheris
    python fuzz/make_corpus.py                                # seeds: the test fixtures' wheels
    python fuzz/fuzz_wheel.py fuzz/corpus -max_total_time=300
    python fuzz/fuzz_wheel.py crash-<sha1>                    # replay one input

SHAREWHEEL_FUZZ_KNOWN=TypeName[:text|@function],... treats those exception types (with that text
in their message, or raised through that function) as expected too, to keep fuzzing past a crash
already reported (and turned into a regression test). The unpacked-size limit is
64 MiB here (SHAREWHEEL_MAX_UNPACKED_SIZE), so that mutated sizes cannot fill the disk.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import logging
import os
import random
import re
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path

import atheris

os.environ.setdefault("SHAREWHEEL_MAX_UNPACKED_SIZE", str(64 * 1024 * 1024))
logging.disable(logging.WARNING)  # auditwheel and delocate log about bad input; the result is what counts

with atheris.instrument_imports(include=["sharewheel", "installer", "packaging", "elftools", "macholib", "pefile"]):
    # the adapters are imported lazily by show: import them here so that they are instrumented
    import sharewheel.adapters.codesign
    import sharewheel.adapters.linux
    import sharewheel.adapters.macho
    import sharewheel.adapters.macos
    import sharewheel.adapters.windows  # noqa: F401
    from sharewheel.errors import SharewheelError
    from sharewheel.show import show_wheel
    from sharewheel.wheelfile import InputWheel

# comma-separated "TypeName", "TypeName:text in its message" or "TypeName@function in its traceback"
KNOWN = [re.fullmatch(r"([^:@]+)([:@]?)(.*)", item).groups()
         for item in os.environ.get("SHAREWHEEL_FUZZ_KNOWN", "").split(",") if item]
DEFAULT_NAME = "acme_consumer-1.0.0-cp311-cp311-linux_x86_64.whl"
_DIST_INFO_WHEEL = re.compile(r"^([A-Za-z0-9_.]+)-([A-Za-z0-9_.!+]+)\.dist-info/WHEEL$")
_PART = re.compile(r"[A-Za-z0-9_]+")


def wheel_name(data: bytes) -> str:
    """A wheel file name matching the input's dist-info and the Tag lines of its WHEEL, when it
    has them (several tags compressed as a wheel name writes them: cp311-cp311-a.b)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for name in zf.namelist():
                match = _DIST_INFO_WHEEL.match(name)
                if not match:
                    continue
                text = zf.read(name).decode("utf-8", "replace")
                tags = [l.split(":", 1)[1].strip().split("-") for l in text.splitlines() if l.startswith("Tag:")]
                if tags and all(len(t) == 3 and all(_PART.fullmatch(p) for p in t) for t in tags):
                    parts = (".".join(sorted({t[i] for t in tags})) for i in range(3))
                    return f"{match[1]}-{match[2]}-{'-'.join(parts)}.whl"
    except Exception:  # noqa: BLE001 - the harness's own peek: any failure just means "no name"
        return DEFAULT_NAME
    return DEFAULT_NAME


def _functions(error: BaseException) -> set[str]:
    return {frame.name for frame in traceback.extract_tb(error.__traceback__)}


def expected(error: BaseException) -> bool:
    return isinstance(error, SharewheelError) or any(
        type(error).__name__ == name and (text in _functions(error) if how == "@" else text in str(error))
        for name, how, text in KNOWN)


def TestOneInput(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="sharewheel-fuzz-") as tmp:
        path = Path(tmp, wheel_name(data))
        path.write_bytes(data)
        try:
            with InputWheel.open(path) as wheel:
                wheel.extract(Path(tmp, "tree"))
        except Exception as e:
            if not expected(e):
                raise
        try:
            show_wheel(path, ())
        except Exception as e:
            if not expected(e):
                raise


_BINARY = (".so", ".dylib", ".pyd", ".dll")


def _record(entries: dict[str, bytes]) -> dict[str, bytes]:
    """`entries` with each dist-info RECORD rewritten to match them."""
    records = [n for n in entries if n.endswith(".dist-info/RECORD")]
    for record in records:
        rows = io.StringIO()
        writer = csv.writer(rows, lineterminator="\n")
        for name, content in entries.items():
            if name != record:
                digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
                writer.writerow((name, f"sha256={digest}", len(content)))
        writer.writerow((record, "", ""))
        entries[record] = rows.getvalue().encode()
    return entries


def mutate_entries(data: bytes, max_size: int, seed: int) -> bytes:
    """Mutate one entry of the wheel (see the module docstring); bytes-level if it is no zip."""
    rng = random.Random(seed)
    if rng.random() < 0.1:
        return atheris.Mutate(data, max_size)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            entries = {info.filename: zf.read(info) for info in infos}
            modes = {info.filename: info.external_attr for info in infos}
    except Exception:  # noqa: BLE001 - not a zip (any more): mutate it as bytes
        return atheris.Mutate(data, max_size)
    if not entries:
        return atheris.Mutate(data, max_size)
    names = list(entries)
    # binaries and the dist-info are where the parsers are: pick them more often
    weights = [4 if n.endswith(_BINARY) or ".dist-info/" in n else 1 for n in names]
    name = rng.choices(names, weights)[0]
    action = rng.random()
    if action < 0.75:
        content = entries[name]
        entries[name] = atheris.Mutate(content, max(len(content) * 2, 64))
    elif action < 0.85:
        new = atheris.Mutate(name.encode(), len(name) + 8).decode("utf-8", "replace")
        entries = {new if n == name else n: c for n, c in entries.items()}
        modes[new] = modes.get(name, 0)
    elif action < 0.92:
        del entries[name]
    else:
        entries[name + rng.choice(["", "/", "x"])] = entries[name]
    if rng.random() < 0.9:
        entries = _record(entries)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for entry_name, content in entries.items():
            info = zipfile.ZipInfo(entry_name, (2024, 1, 1, 0, 0, 0))
            info.external_attr = modes.get(entry_name, 0o100644 << 16)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    result = out.getvalue()
    return result if len(result) <= max_size else atheris.Mutate(data, max_size)


def main() -> None:
    if os.environ.get("SHAREWHEEL_FUZZ_MUTATOR", "zip") == "zip":
        atheris.Setup(sys.argv, TestOneInput, custom_mutator=mutate_entries)
    else:
        atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
