"""scripts/: the test command's set-up says what it is doing, and waits for a locked package manager."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run


def test_apt_get_waits_while_another_process_holds_the_package_managers_lock() -> None:
    """An unattended upgrade at boot holds dpkg's lock: the set-up waits (saying who holds it)
    instead of failing with apt's own two lines, and goes on once the lock is free."""
    if os.geteuid() != 0:
        pytest.skip("apt-get takes the package manager's lock only as root (CI and this machine run as root)")
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import fcntl, sys, time\n"
         "f = open('/var/lib/dpkg/lock-frontend', 'w')\n"
         "fcntl.lockf(f, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(6)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = run(["sh", ROOT / "scripts" / "apt-get-waiting.sh", "install", "-y", "-qq", "--no-download",
                      "coreutils"], env={"SHAREWHEEL_APT_STEP": "2", "SHAREWHEEL_APT_WAIT": "120"})
    finally:
        holder.kill()
        holder.wait()
    waiting = [line for line in result.stderr.splitlines() if "waiting for the package manager" in line]
    assert waiting and f"(process {holder.pid}: " in waiting[0], result.stderr
    assert "Could not get lock" not in result.stderr and "E: " not in result.stderr


def test_apt_get_gives_up_after_the_limit_with_apts_own_words() -> None:
    if os.geteuid() != 0:
        pytest.skip("apt-get takes the package manager's lock only as root (CI and this machine run as root)")
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import fcntl, time\nf = open('/var/lib/dpkg/lock-frontend', 'w')\n"
         "fcntl.lockf(f, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(30)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = run(["sh", ROOT / "scripts" / "apt-get-waiting.sh", "install", "-y", "-qq", "--no-download",
                      "coreutils"], env={"SHAREWHEEL_APT_STEP": "1", "SHAREWHEEL_APT_WAIT": "3"}, check=False)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert "the package manager stayed locked for 3 s; apt-get said:" in result.stderr
    assert "lock" in result.stderr.splitlines()[-1]


def test_the_test_command_says_what_it_does_before_each_long_step(tmp_path: Path) -> None:
    """Installing the test dependencies and the first Windows build are long and silent: a line
    says what is coming before each (run here with the existing venv, collecting one module)."""
    result = run(["sh", ROOT / "scripts" / "test.sh", "--collect-only", "-q", "tests/test_units.py"],
                 env={"SHAREWHEEL_TEST_JOBS": "0", "SHAREWHEEL_TEST_VENV": str(Path(sys.executable).parents[1])})
    said = [line for line in result.stderr.splitlines() if line.startswith("scripts/test.sh: ")]
    assert any("installing sharewheel and the test dependencies" in line for line in said), result.stderr
    assert any("builds MinGW's runtime with zig" in line for line in said), result.stderr
