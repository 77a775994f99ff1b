"""What a user sees: --dry-run prints the plan and writes nothing, -v logs the plan, a progress
bar appears for large wheels only on a terminal (checked in a real pseudo-terminal), --version
names the pypa tools in use, and `python -m sharewheel` is the command."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import Consumer, one, sharewheel

from sharewheel.cli import PROGRESS_MIN_BYTES


def repair_args(consumer: Consumer, out: Path) -> list[str | Path]:
    return ["repair", consumer.input, "-w", out, "--provider", consumer.provider]


def test_dry_run_prints_the_plan_and_writes_nothing(consumer: Consumer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}
    result = sharewheel(*repair_args(consumer, out), "--dry-run", env=env)
    assert not out.exists()
    lines = result.stdout.splitlines()
    assert any(l.startswith("  link acme_consumer/_core.") and "-> libacme-sw" in l and "from acme-native 3.1.4" in l
               for l in lines), lines
    assert any(re.fullmatch(r"  vendor acme_consumer\.libs/libextra-[0-9a-f]{8}\.so\.1[.0-9]* \(from /\S+/libextra\.so\.1[.0-9]*\): "
                            r"no provider offers it", l) for l in lines), lines
    assert "  require acme-native==3.*,>=3.1.4" in lines
    assert lines[-1].endswith(f"dry run, nothing written; repair would write {consumer.output.name}")


def test_verbose_logs_the_plan_on_stderr(consumer: Consumer, tmp_path: Path) -> None:
    env = {"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}
    result = sharewheel("-v", *repair_args(consumer, tmp_path / "out"), env=env)
    assert "  require acme-native==3.*,>=3.1.4" in result.stderr.splitlines()
    assert any(l.startswith("  vendor acme_consumer.libs/libextra-") for l in result.stderr.splitlines())
    assert result.stdout.count("\n") == 1  # stdout: the one summary line, as without -v
    quiet = sharewheel("-q", *repair_args(consumer, tmp_path / "quiet"), env=env)
    assert quiet.stderr == "" and quiet.stdout == ""  # -q: not even the summary (the wheel is written)
    assert [p.name for p in (tmp_path / "quiet").iterdir()] == [consumer.output.name]


@pytest.fixture(scope="module")
def large_wheel(consumer: Consumer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The consumer with incompressible data making it larger than PROGRESS_MIN_BYTES (RECORD updated)."""
    import base64
    import hashlib

    where = tmp_path_factory.mktemp("large")
    data = os.urandom(PROGRESS_MIN_BYTES + (1 << 20))
    large = where / consumer.input.name
    with zipfile.ZipFile(consumer.input) as src, zipfile.ZipFile(large, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            content = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                content += f"acme_consumer/blob.bin,sha256={digest},{len(data)}\n".encode()
                dst.writestr("acme_consumer/blob.bin", data)
            dst.writestr(info, content)
    return large


def run_in_terminal(args: list[str | Path], env: dict[str, str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (stdout a pipe): (status, stdout, what the terminal got)."""
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "sharewheel", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=slave, stdin=subprocess.DEVNULL, env={**os.environ, **env})
    os.close(slave)
    terminal = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        terminal += chunk
    stdout = process.stdout.read().decode() if process.stdout else ""
    status = process.wait(60)
    os.close(master)
    return status, stdout, terminal.decode(errors="replace")


def test_progress_bar_only_on_a_terminal(consumer: Consumer, large_wheel: Path, tmp_path: Path) -> None:
    env = {"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}
    args: list[str | Path] = ["repair", large_wheel, "--provider", consumer.provider]
    status, stdout, terminal = run_in_terminal([*args, "-w", tmp_path / "tty"], env)
    assert status == 0, terminal
    assert "unpacking" in terminal and "writing" in terminal and "100%" in terminal, terminal
    assert stdout.startswith(consumer.output.name)  # the summary still goes to stdout
    assert one(list((tmp_path / "tty").glob("*.whl"))).stat().st_size > PROGRESS_MIN_BYTES

    status, _, terminal = run_in_terminal(["-q", *args, "-w", tmp_path / "quiet"], env)
    assert status == 0 and "writing" not in terminal and "%" not in terminal, terminal

    piped = sharewheel(*args, "-w", tmp_path / "piped", env=env)
    assert "writing" not in piped.stderr and "%" not in piped.stderr

    # a small wheel gets no bar even on a terminal
    status, _, terminal = run_in_terminal(["repair", consumer.input, "--provider", consumer.provider,
                                           "-w", tmp_path / "small"], env)
    assert status == 0 and "writing" not in terminal, terminal


def test_version_names_the_tools_in_use() -> None:
    import importlib.metadata

    line = sharewheel("--version").stdout.strip()
    versions = {tool: importlib.metadata.version(tool) for tool in ("auditwheel", "delocate", "delvewheel")}
    assert line.startswith("sharewheel ") and all(f"{t} {v}" in line for t, v in versions.items()), line
    assert subprocess.run([sys.executable, "-m", "sharewheel", "--help"], capture_output=True, text=True,
                          check=True).stdout.startswith("Usage: python -m sharewheel")
