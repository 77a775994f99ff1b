"""The README's first command, as a user runs it: build, pack, build consumer, repair, split install, call."""

from __future__ import annotations

from pathlib import Path

from conftest import EXAMPLES, run


def test_bundled_example_runs_end_to_end(tmp_path: Path) -> None:
    result = run(["sh", EXAMPLES / "run.sh"], env={"WORK": str(tmp_path / "work")})
    lines = result.stdout.splitlines()
    assert "acme_consumer.add(2, 3) = 5, from libacme 3.1.4" in lines
    [loaded] = [line for line in lines if line.startswith("libacme loaded from:")]
    assert f"{tmp_path / 'work' / 'site-a' / 'acme_native' / 'lib'}/libacme-sw" in loaded
