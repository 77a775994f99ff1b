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

    pip install atheris
    python fuzz/make_corpus.py                                # seeds: the test fixtures' wheels
    python fuzz/fuzz_wheel.py fuzz/corpus -max_total_time=300
    python fuzz/fuzz_wheel.py crash-<sha1>                    # replay one input

SHAREWHEEL_FUZZ_KNOWN=TypeName[:text],... treats those exception types (with that text in their
message) as expected too, to keep fuzzing past a crash already reported (and turned into a
regression test). The unpacked-size limit is
64 MiB here (SHAREWHEEL_MAX_UNPACKED_SIZE), so that mutated sizes cannot fill the disk.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import tempfile
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

# "TypeName" or "TypeName:text in the message", comma-separated
KNOWN = [item.partition(":")[::2] for item in os.environ.get("SHAREWHEEL_FUZZ_KNOWN", "").split(",") if item]
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


def expected(error: BaseException) -> bool:
    return isinstance(error, SharewheelError) or any(
        type(error).__name__ == name and text in str(error) for name, text in KNOWN)


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


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
