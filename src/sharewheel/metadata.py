"""Core metadata edits: add the Requires-Dist a provider's ABI policy dictates, and the
License-File headers of the licences repair copies in.

METADATA is edited as text, header by header, so that everything sharewheel does not touch
(long description, unusual headers, their order) stays byte-for-byte as the build wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from sharewheel.abi import narrow, parse_requirement, same_project


def _split(text: str) -> tuple[list[str], str]:
    """Header fields (continuation lines joined to their field), and what follows them verbatim."""
    end = re.search(r"\r?\n\r?\n", text)
    head, tail = (text[: end.start()], text[end.start() :]) if end else (text, "\n")
    fields: list[str] = []
    for line in head.replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1] += "\n" + line
        elif line:
            fields.append(line)
    return fields, tail


def add_requirements(text: str, wanted: Iterable[Requirement], where: str) -> str:
    """METADATA `text` requiring each of `wanted`: existing requirements on the same project
    are narrowed (extras and markers kept); an unconditional one is added when none exists."""
    fields, tail = _split(text)
    for requirement in wanted:
        unconditional = False
        last = None
        for index, field in enumerate(fields):
            key, _, value = field.partition(":")
            if key.strip().lower() != "requires-dist":
                continue
            last = index
            existing = parse_requirement(" ".join(value.split()), where)
            if same_project(existing.name, requirement.name):
                fields[index] = f"Requires-Dist: {narrow(existing, requirement)}"
                unconditional |= existing.marker is None
        if not unconditional:
            position = len(fields) if last is None else last + 1
            fields.insert(position, f"Requires-Dist: {requirement}")
    return "\n".join(fields) + tail


def forget_requirements(metadata: Path, previous: Iterable[str]) -> None:
    """Take out of METADATA what an earlier repair added (`previous`: the requirements its
    manifest records), so that repairing a repaired wheel recomputes them instead of narrowing
    them further (``==1.*,>=1.2.0,>=1.3.0``): a Requires-Dist that is exactly one of them goes, one
    the project wrote and repair narrowed keeps the project's own clauses."""
    earlier = []
    for text in dict.fromkeys(previous):
        try:
            earlier.append(Requirement(text))
        except InvalidRequirement:  # (a manifest is checked when read; nothing to forget then)
            continue
    if not earlier:
        return
    fields, tail = _split(metadata.read_text(encoding="utf-8"))
    kept = []
    for field in fields:
        key, _, value = field.partition(":")
        existing = ours = None
        if key.strip().lower() == "requires-dist":
            try:
                existing = Requirement(" ".join(value.split()))
            except InvalidRequirement:  # (add_requirements says so)
                pass
        if existing is not None:
            ours = next((r for r in earlier if same_project(existing.name, r.name)), None)
        if ours is None or existing is None:
            kept.append(field)
            continue
        own = SpecifierSet(",".join(str(s) for s in existing.specifier if s not in set(ours.specifier)))
        if not own and not existing.extras and existing.marker is None:
            continue  # repair's own line: add_requirements writes it anew
        existing.specifier = own
        kept.append(f"Requires-Dist: {existing}")
    metadata.write_text("\n".join(kept) + tail, encoding="utf-8")


def add_licenses(text: str, paths: Iterable[str], expression: str | None = None) -> str:
    """METADATA `text` naming each of `paths` in a License-File header (PEP 639), and with
    `expression` as License-Expression if it has none, after the licence headers already there
    (all kept as they are); Metadata-Version is raised to 2.4, the first with both, where lower."""
    fields, tail = _split(text)
    keys = [field.partition(":")[0].strip().lower() for field in fields]
    present = {" ".join(f.partition(":")[2].split()) for f, k in zip(fields, keys) if k == "license-file"}
    added = [f"License-File: {path}" for path in dict.fromkeys(paths) if path not in present]
    if expression and "license-expression" not in keys:
        added.insert(0, f"License-Expression: {expression}")
    if not added:
        return text
    for index, key in enumerate(keys):
        if key == "metadata-version":
            try:
                older = Version(fields[index].partition(":")[2].strip()) < Version("2.4")
            except InvalidVersion:
                older = True
            if older:
                fields[index] = "Metadata-Version: 2.4"
    licence = [i for i, k in enumerate(keys) if k in ("license", "license-expression", "license-file")]
    # (none yet: before the requirements, which repair adds at the end and a re-repair re-adds there)
    after = [i for i, k in enumerate(keys) if k in ("requires-dist", "provides-extra")]
    position = licence[-1] + 1 if licence else after[0] if after else len(fields)
    fields[position:position] = added
    return "\n".join(fields) + tail
