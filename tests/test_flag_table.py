"""The README's table of auditwheel's, delocate's and delvewheel's flags names every one sharewheel takes.

A pipeline switches to sharewheel from that table alone: a flag missing there is a flag its users
never find, and a flag listed there that the command line rejects breaks their repair command.
"""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from sharewheel.cli import _TOOL_OPTIONS, main

ROOT = Path(__file__).resolve().parents[1]


def _table() -> list[list[str]]:
    section = (ROOT / "README.md").read_text().split("#### Flags of auditwheel, delocate and delvewheel", 1)[1]
    rows = [line for line in section.split("\n\n", 3)[2].splitlines() if line.startswith("| ") and "---" not in line]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def test_every_tool_flag_is_in_the_table_with_its_tool() -> None:
    listed: dict[str, set[str]] = {}
    for tool, its_flag, _, _ in _table():
        for flag in re.findall(r"--[a-z-]+", its_flag):
            listed.setdefault(flag, set()).add(tool)
    for _, decls, _, owners in _TOOL_OPTIONS:
        long_names = [d for decl in decls for d in decl.split("/") if d.startswith("--")]
        assert any(name in listed for name in long_names), decls
        for owner in owners:
            assert any(owner in listed.get(name, ()) for name in long_names), (decls, owner)


def test_every_flag_in_the_table_is_accepted_by_repair() -> None:
    help_text = CliRunner().invoke(main, ["repair", "--help"]).output
    for tool, _, ours, _ in _table():
        for flag in re.findall(r"--[a-z-]+|-[a-zA-Z]\b", ours):
            assert re.search(rf"(^|[\s,/]){re.escape(flag)}([\s,/=]|$)", help_text, re.MULTILINE), (tool, flag)
