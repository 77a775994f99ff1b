"""`sharewheel repair`: analyze → plan → apply (sharewheel.plan), then write, for one wheel.

The OS adapter vendors what no provider offers (as auditwheel/delocate/delvewheel would) and
relinks what a provider offers to the provider's unique name; sharewheel adds the runtime hook,
the Requires-Dist from the provider's ABI policy and a record of what it linked, then writes
the wheel atomically. The input wheel is only ever read. `--dry-run` renders the same work
instead of writing it (see sharewheel.plan).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sharewheel.errors import ConfigError, InputWheelError
from sharewheel.licenses import warn_missing
from sharewheel.manifest import Link
from sharewheel.plan import Plan, Planned, RepairOptions, _NoProgress, planned
from sharewheel.unvendor import describe_saved
from sharewheel.wheelfile import InputWheel, bytes_to_write, copy_wheel, write_wheel

__all__ = ["RepairOptions", "RepairReport", "removed_if_left_empty", "repair_wheel", "writable_dir"]


@dataclass(frozen=True)
class RepairReport:
    input: Path
    output: Path
    links: tuple[Link, ...]
    vendored: tuple[str, ...]
    platforms: tuple[str, ...]
    requirements: tuple[str, ...] = field(default=())
    unvendored: tuple[str, ...] = field(default=())  # copies removed from an already-repaired wheel
    saved: int = 0  # their bytes
    replaced_by: dict[str, str] = field(default_factory=dict)  # removed copy → the provider standing in
    dry_run: bool = False  # nothing was written
    pure: bool = False  # a wheel for any platform: copied unchanged, nothing to repair
    staged: Path | None = None  # written here, for the caller to rename to `output`
    data: dict[str, Any] | None = None  # --dry-run: the plan as JSON data (sharewheel.show.plan_data)
    sources: dict[str, str] = field(default_factory=dict)  # vendored path → the file it was copied from
    notices: tuple[str, ...] = ()  # the usage policies of linked providers this wheel is not listed in
    files: tuple[str, ...] = ()  # pack --dry-run: the files the wheel would hold
    carried: tuple[tuple[str, str], ...] = ()  # repair --set's carrier: (original, unique name) it carries
    licenses: dict[str, str] = field(default_factory=dict)  # vendored path → where its licence came from ("": not found)

    @classmethod
    def of(cls, done: Planned, out_dir: Path) -> RepairReport:
        """What repair did (or, dry, would do) with a planned wheel."""
        assert done.plan is not None and done.outcome is not None
        plan, unvendoring = done.plan, done.plan.unvendoring
        return cls(
            done.wheel.path, out_dir / done.output_name, done.links, done.vendored, done.outcome.platforms,
            tuple(str(r) for r in plan.requirements), unvendoring.removed, unvendoring.saved,
            unvendoring.reasons(), dry_run=plan.options.dry_run, sources=dict(done.outcome.sources),
            notices=usage_notices(plan), licenses=_licenses(done),
        )

    def plan(self) -> list[str]:
        """What repair does (or, dry, would do) and why: `-v` logs it, `--dry-run` prints it."""
        if self.pure:
            return ["copy unchanged: a pure-Python wheel (platform any) has nothing to repair"]
        lines = [f"carry {original} as {unique} for the set" for original, unique in self.carried]
        for link in self.links:
            how = f"replacing the vendored copy {link.original}" if link.original in {
                posixpath.basename(p) for p in self.unvendored} else "not vendored"
            lines.append(f"link {link.binary}: {link.original} -> {link.needed} from {link.provider} "
                         f"{link.version} ({how})")
        for path in self.unvendored:
            why = (f"{self.replaced_by[path]} provides it" if path in self.replaced_by
                   else "only the removed copies needed it")
            lines.append(f"remove {path}: {why}")
        lines += [f"vendor {v}" + (f" (from {self.sources[v]})" if v in self.sources else "") + ": no provider offers it"
                  for v in self.vendored]
        lines += [f"licence of {v}: " + (f"copied from {self.licenses[v]}" if self.licenses[v] else "not found")
                  for v in self.vendored if v in self.licenses]
        lines += [f"require {r}" for r in self.requirements]
        lines.append(f"tag {', '.join(sorted(self.platforms))}")
        return lines

    def summary(self) -> str:
        if self.dry_run:
            return f"{self.input.name}: dry run, nothing written; repair would write {self.output.name}"
        if self.pure:
            done = "already there" if os.path.realpath(self.input) == os.path.realpath(self.output) else "copied unchanged"
            return f"{self.output.name}: pure Python (platform any), nothing to repair; {done}"
        linked = ", ".join(sorted({_linked(link) for link in self.links}))
        vendored = ", ".join(posixpath.basename(v) for v in self.vendored)
        removed = ""
        if self.unvendored:
            names = ", ".join(posixpath.basename(v) for v in self.unvendored)
            removed = f"; unvendored {names}, saving {describe_saved(self.saved)}"
        carried = "".join(f"carries {original} as {unique} for its set; " for original, unique in self.carried)
        return (
            f"{self.output.name}: {carried}linked {linked or 'nothing'}; vendored {vendored or 'nothing'}"
            f"{removed}; tagged {', '.join(sorted(self.platforms))}"
        )


def usage_notices(plan: Plan) -> tuple[str, ...]:
    """What the maintainers of a linked provider ask of the projects depending on it at run time
    (a plugin's usage policy), for each provider whose policy does not list this distribution:
    linking is the consumer's choice, but it should be an informed one."""
    notices = set()
    for match in plan.matches.values():
        plugin = match.provider.plugin
        policy = plugin.usage_policy if plugin is not None else None
        if policy is not None and not policy.allows(plan.distribution):
            notices.add(f"{match.provider.distribution}: {policy.text} ({policy.url})")
    return tuple(sorted(notices))


def _licenses(done: Planned) -> dict[str, str]:
    """Where the licence of each copy this repair vendored came from ("": found nowhere)."""
    if done.licenses is None:
        return {}
    return {**dict.fromkeys(done.licenses.missing, ""), **done.licenses.found}


def _linked(link: Link) -> str:
    """One link for the summary: a binary built against the installed provider already asks for
    the unique name, and is said to, instead of `X -> X`."""
    if link.original == link.needed:
        return f"{link.needed} (already the provider's name; {link.provider} {link.version})"
    return f"{link.original} -> {link.needed} ({link.provider} {link.version})"


def repair_wheel(
    wheel_path: Path, out_dir: Path, options: RepairOptions, *, taken: Mapping[Path, Path] | None = None,
    stage: Path | None = None,
) -> RepairReport:
    """Repair one wheel into `out_dir`; `taken` maps outputs already written in this run to their
    inputs. With `stage`, the wheel is written there under its final name and the caller renames
    it into `out_dir` (sharewheel.batch: several wheels repaired at once commit in input order)."""
    out_dir = out_dir.resolve() if options.dry_run else writable_dir(out_dir)
    progress = options.progress or _NoProgress()
    with planned(wheel_path, options) as done:  # analyze → plan → apply, in a work tree
        if done.pure:
            return _copy_pure(done.wheel, out_dir, options, taken, stage)
        report = RepairReport.of(done, out_dir)
        if options.dry_run:
            from sharewheel.show import plan_data

            data = plan_data(done, out_dir, plugin_files=options.plugins)
            warn_missing(done.wheel.path.name, done.licenses, report.sources)  # as the real repair would
            return replace(report, data=data)
        # write: the work tree as one atomic zip (the untouched entries copied still compressed)
        output = report.output
        if output.exists() and output.samefile(wheel_path):
            raise InputWheelError(f"{wheel_path}: the repaired wheel would overwrite its input; choose another -w")
        if taken and output in taken:
            raise InputWheelError(f"{wheel_path}: repairs to {output.name}, which {taken[output]} was just repaired to")
        assert done.analysis is not None
        tree, unchanged = done.analysis.tree, done.analysis.unchanged
        progress.stage("writing", bytes_to_write(tree, unchanged, done.wheel.dist_info))
        write_wheel(tree, done.wheel.dist_info, (stage or out_dir) / output.name, unchanged=unchanged,
                    compress_level=done.compress_level, progress=progress.advance)
        progress.stage("", 0)
        warn_missing(done.wheel.path.name, done.licenses, report.sources)  # (once written: no error follows)
    return report if stage is None else replace(report, staged=stage / output.name)


def _copy_pure(
    wheel: InputWheel, out_dir: Path, options: RepairOptions, taken: Mapping[Path, Path] | None,
    stage: Path | None = None,
) -> RepairReport:
    """A pure-Python wheel has nothing to link or vendor. It is copied byte for byte (after the
    same RECORD checks as any input), so that `repair -w OUT dist/*.whl` in a release script, or
    a repair-wheel-command, leaves exactly one wheel per input in OUT."""
    output = out_dir / wheel.path.name
    if taken and output in taken:
        raise InputWheelError(f"{wheel.path}: copies to {output.name}, which {taken[output]} was just repaired to")
    report = RepairReport(wheel.path, output, (), (), tuple(wheel.platforms), dry_run=options.dry_run, pure=True,
                          data={"schema": 1, "wheel": wheel.path.name, "output": output.name, "pure": True})
    if options.dry_run or (output.exists() and output.samefile(wheel.path)):
        return report
    unchanged = wheel.extract(out_dir, lambda _: False)  # extracts nothing: checks every entry's hash
    unchanged.start_check()
    copy_wheel(wheel.path, (stage or out_dir) / output.name, check=unchanged.wait_check)
    return report if stage is None else replace(report, staged=stage / output.name)


_BINARY_SUFFIXES = (".so", ".dylib", ".pyd", ".dll", ".exe")
_BINARY_MAGICS = (b"\x7fELF", b"\xfe\xed\xfa", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba", b"MZ")


@contextlib.contextmanager
def removed_if_left_empty(out_dir: Path) -> Iterator[None]:
    """Remove again the directories of `out_dir`'s path that did not exist before the block, if
    it leaves them empty: a run that wrote nothing leaves no `-w` directory behind (one that
    existed is kept, empty or not)."""
    missing = []
    for directory in (out_dir.absolute(), *out_dir.absolute().parents):
        if os.path.lexists(directory):
            break
        missing.append(directory)
    try:
        yield
    finally:
        for directory in missing:  # the deepest first; one holding anything ends it
            try:
                directory.rmdir()
            except OSError:
                break


def writable_dir(out_dir: Path) -> Path:
    """Create `out_dir` and prove a file can be written there, before doing any work."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".sharewheel-probe-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"-w {out_dir}: cannot write there ({e.strerror or e})") from None
    return out_dir.resolve()
