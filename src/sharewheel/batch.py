"""Many wheels in one `sharewheel repair` call: repaired side by side, committed in input order.

A release repairs a matrix of wheels; one process for all of them pays the interpreter start,
the imports and the reading of every provider wheel (and its symbol table) once per worker
instead of once per wheel. The result is the same as repairing the wheels one by one: each
wheel is written to a private staging directory inside `-w` and renamed into place by the
parent, in the order the wheels were given, so that two inputs repairing to one file name are
refused for the later one exactly as a sequential run refuses it. One failing wheel does not
stop the others; the caller learns which failed.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import shutil
import sys
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sharewheel.errors import SharewheelError
from sharewheel.files import TMP_MARK, remove_stale_temporaries, run_dir
from sharewheel.repair import RepairOptions, RepairReport, repair_wheel


@dataclass(frozen=True)
class Outcome:
    """One wheel's result: its report, or the one line saying why it failed."""

    wheel: Path
    report: RepairReport | None = None
    error: str | None = None
    internal: bool = False  # the error is a bug (a traceback on SHAREWHEEL_DEBUG), not bad input


def repair_all(
    jobs: Sequence[tuple[Path, RepairOptions]], out_dir: Path, workers: int
) -> Iterator[Outcome]:
    """Repair each (wheel, options) into `out_dir`, `workers` at a time; outcomes in input order."""
    taken: dict[Path, Path] = {}  # output → the input repaired to it
    if workers <= 1 or len(jobs) <= 1:
        for wheel, options in jobs:
            outcome = _repair_one(wheel, out_dir, options, taken)
            if outcome.report is not None and not outcome.report.dry_run:
                taken[outcome.report.output] = wheel
            yield outcome
        return
    dry_run = all(options.dry_run for _, options in jobs)
    stage_root = None
    if not dry_run:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out_dir)
        stage_root = out_dir / f".sharewheel-jobs{TMP_MARK}{os.getpid()}"
        stage_root.mkdir()
    fork = sys.platform.startswith("linux")
    if fork:  # what the workers inherit instead of each reading it again
        _prepare_shared(options for _, options in jobs)
    context = multiprocessing.get_context("fork" if fork else "spawn")
    try:
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
            futures = []
            for index, (wheel, options) in enumerate(jobs):
                stage = None if stage_root is None or options.dry_run else stage_root / str(index)
                futures.append(pool.submit(_repair_staged, wheel, out_dir, replace(options, progress=None), stage))
            for (wheel, _), future in zip(jobs, futures):
                try:
                    outcome = future.result()
                except concurrent.futures.process.BrokenProcessPool as e:
                    outcome = Outcome(wheel, error=f"{wheel.name}: its worker process died ({e})", internal=True)
                yield _commit(outcome, taken)
    finally:
        if stage_root is not None:
            shutil.rmtree(stage_root, ignore_errors=True)


def _prepare_shared(all_options: Iterable[RepairOptions]) -> None:
    """Read the given providers (and make the run directory their files unpack into) once, in
    the parent: forked workers share it. A provider that cannot be read is left for each
    wheel's repair to report."""
    from sharewheel.registry import given_providers

    run_dir()
    for key in {(options.providers, options.plugins) for options in all_options}:
        try:
            given_providers(*key)
        except SharewheelError:
            pass


def _repair_one(wheel: Path, out_dir: Path, options: RepairOptions, taken: dict[Path, Path]) -> Outcome:
    try:
        return Outcome(wheel, repair_wheel(wheel, out_dir, options, taken=taken))
    except SharewheelError as e:
        return Outcome(wheel, error=str(e))
    except Exception as e:  # noqa: BLE001 - a bug: still one line for this wheel, the others go on
        if os.environ.get("SHAREWHEEL_DEBUG"):
            traceback.print_exc()
        return Outcome(wheel, error=f"{type(e).__name__}: {e}", internal=True)


def _repair_staged(wheel: Path, out_dir: Path, options: RepairOptions, stage: Path | None) -> Outcome:
    """In a worker: repair into `stage` (the parent renames into `out_dir`)."""
    if stage is not None:
        stage.mkdir()
    try:
        return Outcome(wheel, repair_wheel(wheel, out_dir, options, stage=stage))
    except SharewheelError as e:
        return Outcome(wheel, error=str(e))
    except Exception as e:  # noqa: BLE001 - as in _repair_one
        if os.environ.get("SHAREWHEEL_DEBUG"):
            traceback.print_exc()
        return Outcome(wheel, error=f"{type(e).__name__}: {e}", internal=True)


def _commit(outcome: Outcome, taken: dict[Path, Path]) -> Outcome:
    """Rename a staged wheel into place, unless an earlier input of this run was repaired to it."""
    report = outcome.report
    if report is None or report.dry_run:
        return outcome
    if report.output in taken:
        if report.staged is not None:
            report.staged.unlink(missing_ok=True)
        verb = "copies" if report.pure else "repairs"
        return Outcome(outcome.wheel, error=f"{outcome.wheel}: {verb} to {report.output.name}, which "
                                            f"{taken[report.output]} was just repaired to")
    if report.staged is not None:
        os.replace(report.staged, report.output)
    taken[report.output] = outcome.wheel
    return Outcome(outcome.wheel, replace(report, staged=None))
