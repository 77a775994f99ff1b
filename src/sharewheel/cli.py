"""The `sharewheel` command line: a thin click layer over pack, repair and show."""

from __future__ import annotations

import glob
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click

from sharewheel import __version__
from sharewheel.errors import SharewheelError

F = TypeVar("F", bound=Callable[..., Any])


def _provider_option(function: F) -> F:
    function = click.option(
        "--plugin",
        "plugins",
        multiple=True,
        type=click.Path(path_type=Path, dir_okay=False),
        help="A plugin file (TOML) describing third-party provider wheels (repeatable); "
        "it takes precedence over installed and shipped plugins.",
    )(function)
    return click.option(
        "--provider",
        "providers",
        multiple=True,
        help="A native-lib wheel, a directory of them, or the name of an installed provider "
        "distribution, to link to (repeatable). Without it, the installed sharewheel providers are used; "
        "with it, only those given. Third-party wheels a plugin describes are used only when given here.",
    )(function)


class _Group(click.Group):
    """Every bad input, ours or click's usage errors, becomes one `sharewheel: error: ...` line."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any) -> Any:  # type: ignore[override]
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.ClickException as e:
            if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):
                e.show()  # `sharewheel` alone: the help, not an error line
            else:
                click.echo(f"sharewheel: error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("sharewheel: aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SharewheelError as e:
            click.echo(f"sharewheel: error: {e}", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as e:  # noqa: BLE001 - a bug: still one line, the traceback on request
            if os.environ.get("SHAREWHEEL_DEBUG"):
                traceback.print_exc()
            click.echo(
                f"sharewheel: internal error: {type(e).__name__}: {e} (SHAREWHEEL_DEBUG=1 shows the traceback; please report it)",
                err=True,
            )
            sys.exit(3)


def _versions() -> str:
    """sharewheel's version and those of the pypa tools whose internals it calls."""
    import importlib.metadata

    tools = []
    for tool in ("auditwheel", "delocate", "delvewheel"):
        try:
            tools.append(f"{tool} {importlib.metadata.version(tool)}")
        except importlib.metadata.PackageNotFoundError:
            tools.append(f"{tool} not installed")
    return f"sharewheel {__version__} ({', '.join(tools)}; Python {sys.version.split()[0]})"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_versions())
        ctx.exit()


class _TerminalProgress:
    """A progress bar per stage of a repair, on stderr, only when it is a terminal."""

    def __init__(self) -> None:
        self._bar: Any = None

    def stage(self, label: str, total: int) -> None:
        self._finish()
        if label:
            self._bar = click.progressbar(length=max(total, 1), label=f"{label:<10}", file=sys.stderr,
                                          show_eta=False, show_percent=total > 0, width=30)
            self._bar.__enter__()

    def advance(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(min(done, self._bar.length - self._bar.pos))

    def _finish(self) -> None:
        if self._bar is not None:
            self._bar.update(self._bar.length - self._bar.pos)
            self._bar.__exit__(None, None, None)
            self._bar = None


PROGRESS_MIN_BYTES = 16 << 20  # smaller wheels repair in a second or two: no bar


@click.group(cls=_Group)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version of sharewheel and of auditwheel, delocate and delvewheel, and exit.")
@click.option("-v", "--verbose", count=True, help="Log more: -v shows repair's plan (repeat for debug output).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, and only warnings and errors.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Share native libraries between wheels instead of vendoring a copy into each."""
    level = logging.ERROR if quiet else logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="sharewheel: %(name)s: %(message)s")
    ctx.obj = {"verbose": 0 if quiet else verbose, "quiet": quiet}


@main.command()
@click.argument("prefix", type=click.Path(path_type=Path, file_okay=False))
@click.option("--name", required=True, help="Distribution name of the provider wheel, e.g. acme-native.")
@click.option("--version", "version", required=True, help="Version of the provider wheel, e.g. 3.1.4.")
@click.option("--lib", "libs", multiple=True, metavar="NAME", help="Pack only libNAME (repeatable; default: every shared library in PREFIX/lib).")
@click.option("--abi", default="major", show_default=True, help="ABI policy: major, minor, exact, or a specifier template such as '>={version},=={major}.{minor}.*'.")
@click.option("--requires", multiple=True, metavar="PROVIDER", help="Another provider this one links to and loads first (repeatable).")
@click.option("--plat", default="auto", show_default=True, help="Platform tag (default: the one auditwheel's policies give).")
@click.option("--summary", default="", help="One-line Summary for the wheel's METADATA.")
@_provider_option
@click.option("-w", "--wheel-dir", type=click.Path(path_type=Path), default=Path("wheelhouse"), show_default=True)
def pack(prefix: Path, name: str, version: str, libs: tuple[str, ...], abi: str, requires: tuple[str, ...],
         plat: str, summary: str, providers: tuple[str, ...], plugins: tuple[Path, ...], wheel_dir: Path) -> None:
    """Pack the C/C++ library installed in PREFIX into a native-lib wheel."""
    from sharewheel.pack import PackOptions
    from sharewheel.pack import pack as run_pack

    if not prefix.is_dir():
        raise SharewheelError(f"{prefix}: no such directory")
    report = run_pack(PackOptions(prefix, name, version, wheel_dir, libs, abi, requires, providers, plat, summary, plugins))
    click.echo(report.summary())


def _repair_options(function: F) -> F:
    """The options that decide a repair, shared by repair and show (which shows that repair)."""
    for option in reversed([
        click.option("--exclude", multiple=True, metavar="PATTERN",
                     help="Neither vendor nor relink libraries matching this soname pattern (repeatable)."),
        click.option("--plat", envvar="AUDITWHEEL_PLAT", default="auto", show_default=True,
                     help="Linux: platform tag to repair to, as auditwheel's --plat (default: $AUDITWHEEL_PLAT, "
                     "which the manylinux images set, else the best auditwheel's policies allow)."),
        click.option("-L", "--lib-sdir", default=None,
                     help="Where vendored libraries go, as in auditwheel (default .libs) and delocate (default .dylibs)."),
        click.option("--require-archs", default=None, metavar="ARCHS",
                     help="macOS: architectures every binary must have (arm64,x86_64 or universal2; cibuildwheel's "
                     "{delocate_archs})."),
        click.option("--abi", "abi", multiple=True, metavar="NAME=POLICY",
                     help="Narrow provider NAME's Requires-Dist by an ABI policy (major, minor, exact or a template); "
                     "never widens it (repeatable)."),
    ]):
        function = option(function)
    return _provider_option(function)


def _options_for(paths: list[Path], flags: Any, plat: str, lib_sdir: str | None, require_archs: str | None,
                 **extra: Any) -> list[tuple[Path, Any]]:
    """Each wheel with its RepairOptions: flags over SHAREWHEEL_* over [tool.sharewheel], and the
    wheel's OS's table ([tool.sharewheel.linux], ...) over the main one."""
    from sharewheel.config import resolve
    from sharewheel.plan import RepairOptions

    archs = tuple(a.strip() for a in require_archs.split(",")) if require_archs and "," in require_archs else require_archs
    options = []
    for path in paths:
        config = resolve(flags, os_name=_wheel_os(path))
        options.append((path, RepairOptions(
            providers=config.providers, plugins=config.plugins, exclude=config.exclude, plat=plat, lib_sdir=lib_sdir,
            require_archs=archs, abi=config.abi, **extra,
        )))
    return options


@main.command()
@click.argument("wheels", nargs=-1, required=True)
@click.option("-w", "--wheel-dir", type=click.Path(path_type=Path), default=Path("wheelhouse"), show_default=True)
@_repair_options
@click.option("--dry-run", is_flag=True, help="Print what repair would link, vendor, remove and require, and write nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print the plans as JSON (a list, one per wheel).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Repair up to N wheels at once (default: the number of CPUs).")
@click.pass_context
def repair(ctx: click.Context, wheels: tuple[str, ...], wheel_dir: Path, providers: tuple[str, ...],
           plugins: tuple[Path, ...], exclude: tuple[str, ...], plat: str, lib_sdir: str | None,
           require_archs: str | None, dry_run: bool, as_json: bool, abi: tuple[str, ...], jobs: int | None) -> int:
    """Link WHEELS to provider wheels instead of vendoring what those provide.

    --provider, --plugin, --exclude and --abi default to SHAREWHEEL_PROVIDERS, _PLUGINS, _EXCLUDE
    and _ABI, then to [tool.sharewheel] of the nearest pyproject.toml (see the README). Each wheel
    is repaired as if on its own; if any fails, the others are still written and the exit status is 1."""
    from sharewheel.batch import repair_all
    from sharewheel.config import Settings, abi_flags, resolve
    from sharewheel.repair import writable_dir

    if as_json and not dry_run:
        raise click.UsageError("--json prints a plan: give it with --dry-run")
    flags = Settings(providers or None, plugins or None, exclude or None, abi_flags(abi))
    resolve(flags)  # a broken configuration is an error before any wheel is read
    settings = ctx.obj or {}
    paths = _expand(wheels)
    workers = min(jobs or os.cpu_count() or 1, len(paths))
    work = _options_for(paths, flags, plat, lib_sdir, require_archs, dry_run=dry_run)
    for index, (path, options) in enumerate(work):
        if workers == 1 and not settings.get("quiet") and sys.stderr.isatty() and path.is_file() \
                and path.stat().st_size >= PROGRESS_MIN_BYTES:
            work[index] = (path, replace(options, progress=_TerminalProgress()))
    if not dry_run:
        writable_dir(wheel_dir)  # one error line for all wheels, before any is read
    status = 0
    plans = []
    for outcome in repair_all(work, wheel_dir, workers):
        if outcome.report is None:
            if outcome.internal:
                status = 3
                click.echo(f"sharewheel: internal error: {outcome.error} (SHAREWHEEL_DEBUG=1 shows the "
                           "traceback; please report it)", err=True)
            else:
                status = status or 1
                click.echo(f"sharewheel: error: {outcome.error}", err=True)
            continue
        report = outcome.report
        if as_json:
            plans.append(report.data)
            continue
        if dry_run or settings.get("verbose"):
            click.echo("\n".join(f"  {line}" for line in report.plan()), err=not dry_run)
        click.echo(report.summary())
    if as_json:
        click.echo(json.dumps(plans, indent=2))
    return status


@main.command()
@click.argument("wheel", type=click.Path(path_type=Path))
@_repair_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def show(wheel: Path, providers: tuple[str, ...], plugins: tuple[Path, ...], exclude: tuple[str, ...], plat: str,
         lib_sdir: str | None, require_archs: str | None, abi: tuple[str, ...], as_json: bool) -> None:
    """Show what repair would do to WHEEL (with the same options and [tool.sharewheel] settings):
    for each binary how each needed library is satisfied, what is linked, removed, vendored and
    required, the tags, and, for a provider wheel, what it provides. A pure wheel has nothing to repair."""
    from sharewheel.config import Settings, abi_flags
    from sharewheel.show import show_wheel

    flags = Settings(providers or None, plugins or None, exclude or None, abi_flags(abi))
    [(path, options)] = _options_for([wheel], flags, plat, lib_sdir, require_archs)
    report = show_wheel(path, options)
    click.echo(json.dumps(report.as_json(), indent=2) if as_json else report.as_text())


@main.command()
@click.option("--python", "interpreter", default=None, metavar="PYTHON",
              help="Audit this interpreter's sys.path (sharewheel may live apart, e.g. in pipx).")
@click.option("--path", "paths", multiple=True, type=click.Path(path_type=Path), metavar="DIR",
              help="Audit these directories instead of a sys.path (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check(interpreter: str | None, paths: tuple[Path, ...], as_json: bool) -> int:
    """Check an installed environment: every link recorded by repair still holds (its provider
    installed, inside the ABI policy, the file present and exporting what is imported); list
    libraries vendored more than once. Exit status 1 if something is broken."""
    from sharewheel.check import audit_paths, check_environment

    if interpreter is not None and paths:
        raise click.UsageError("--python and --path are mutually exclusive")
    report = check_environment(audit_paths(interpreter, paths), python=interpreter)
    click.echo(json.dumps(report.as_json(), indent=2) if as_json else report.as_text())
    return 0 if report.ok else 1


def _environment_options(function: F) -> F:
    """--python / --path: which environment's providers (default: the running interpreter's)."""
    function = click.option("--path", "paths", multiple=True, type=click.Path(path_type=Path), metavar="DIR",
                            help="Look in these directories instead of a sys.path (repeatable).")(function)
    return click.option("--python", "interpreter", default=None, metavar="PYTHON",
                        help="Look in this interpreter's sys.path (sharewheel may live apart, e.g. in pipx).")(function)


@main.command("pkgconfig-path")
@_environment_options
def pkgconfig_path(interpreter: str | None, paths: tuple[Path, ...]) -> None:
    """Print the pkg-config directories of all installed providers, joined for PKG_CONFIG_PATH."""
    from sharewheel.buildpaths import joined
    from sharewheel.check import audit_paths

    if interpreter is not None and paths:
        raise click.UsageError("--python and --path are mutually exclusive")
    click.echo(joined(audit_paths(interpreter, paths), "pkgconfig"))


@main.command("cmake-prefix-path")
@_environment_options
def cmake_prefix_path(interpreter: str | None, paths: tuple[Path, ...]) -> None:
    """Print the CMake package directories of all installed providers, joined for CMAKE_PREFIX_PATH."""
    from sharewheel.buildpaths import joined
    from sharewheel.check import audit_paths

    if interpreter is not None and paths:
        raise click.UsageError("--python and --path are mutually exclusive")
    click.echo(joined(audit_paths(interpreter, paths), "cmake"))


def _wheel_os(path: Path) -> str | None:
    """linux, macos or windows, from a wheel file name's platform tags; None if they name none
    (or the name is no wheel name: reading the wheel then says what is wrong)."""
    from sharewheel.platforms import system_of
    from sharewheel.wheelfile import WheelName

    try:
        return system_of(WheelName.parse(path.name).platforms)
    except SharewheelError:
        return None


def _expand(patterns: tuple[str, ...]) -> list[Path]:
    """Wheel arguments, globs expanded (for shells and CI configs that pass them quoted)."""
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise SharewheelError(f"{pattern}: no wheel matches")
        for match in matches:
            path = Path(match)
            if any(os.path.realpath(path) == os.path.realpath(p) for p in paths):
                raise SharewheelError(f"{path}: given twice")
            paths.append(path)
    return paths
