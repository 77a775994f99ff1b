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
        callback=_check_providers,
    )(function)


def _check_providers(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """`--provider ""` is refused: as a path it would silently be the current directory."""
    for value in values:
        if not value.strip():
            raise SharewheelError(f"--provider {value!r}: empty; give a wheel, a directory of them or a distribution name")
    return values


def _check_lib_sdir(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """-L names a directory inside the wheel: the OS tools join it to the package or project
    directory, so `..` or an absolute path would put vendored libraries outside the tree."""
    if value is None:
        return None
    parts = value.replace("\\", "/").split("/")
    why = ("is empty" if not value.strip() else
           "is an absolute path" if value.startswith(("/", "\\")) else
           "starts with a drive letter" if value[1:2] == ":" else
           "climbs out with '..'" if ".." in parts else
           "contains a control character" if any(ord(c) < 32 or ord(c) == 127 for c in value) else None)
    if why:
        raise SharewheelError(f"-L {value!r}: {why}; it must name a directory inside the wheel (such as .libs)")
    return value


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


_PYPA_LOGGERS = ("auditwheel", "delocate", "delvewheel")  # their INFO lines are their own CLI's output


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """-v/-q, before or after the subcommand (`sharewheel repair -v x.whl`): counted together.
    -v shows repair's plan and each settings source, -vv sharewheel's debug log and the pypa
    tools' own log lines; -q leaves only warnings and errors."""
    if ctx.resilient_parsing:
        return
    root = ctx.find_root()
    settings = root.obj if isinstance(root.obj, dict) else {}
    root.obj = settings
    if param.name == "verbose":
        settings["given_verbose"] = settings.get("given_verbose", 0) + value
    elif value:
        settings["quiet"] = True
    quiet = settings.setdefault("quiet", False)
    verbose = 0 if quiet else settings.get("given_verbose", 0)
    settings["verbose"] = verbose
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(format="sharewheel: %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    for name in _PYPA_LOGGERS:
        logging.getLogger(name).setLevel(level if verbose >= 2 else logging.WARNING)


def _verbosity(function: F) -> F:
    """-v/-q on the group and on every subcommand, with one meaning."""
    function = click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_set_verbosity,
                            help="No progress bar and no summary: only warnings and errors.")(function)
    return click.option("-v", "--verbose", count=True, expose_value=False, callback=_set_verbosity,
                        help="Say more: -v shows repair's plan and where each setting comes from; "
                        "-vv also debug output, and that of auditwheel, delocate and delvewheel.")(function)


@click.group(cls=_Group)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version of sharewheel and of auditwheel, delocate and delvewheel, and exit.")
@_verbosity
@click.pass_context
def main(ctx: click.Context) -> None:
    """Share native libraries between wheels instead of vendoring a copy into each."""
    # (ctx.obj, {"verbose": N, "quiet": bool}, is set by the -v/-q callbacks, which always run)


@main.command()
@_verbosity
@click.argument("prefix", type=click.Path(path_type=Path, file_okay=False))
@click.option("--name", required=True, help="Distribution name of the provider wheel, e.g. acme-native.")
@click.option("--version", "version", required=True, help="Version of the provider wheel, e.g. 3.1.4.")
@click.option("--lib", "libs", multiple=True, metavar="NAME", help="Pack only libNAME (repeatable; default: every shared library in PREFIX/lib).")
@click.option("--abi", default="major", show_default=True, help="ABI policy: major, minor, exact, or a specifier template such as '>={version},=={major}.{minor}.*'.")
@click.option("--requires", multiple=True, metavar="PROVIDER", help="Another provider this one links to and loads first (repeatable).")
@click.option("--plat", default="auto", show_default=True, help="Platform tag (default: the one auditwheel's policies give).")
@click.option("--summary", default="", help="One-line Summary for the wheel's METADATA.")
@click.option("--license", "license_expression", metavar="EXPRESSION",
              help="SPDX license expression of the library, e.g. 'MIT OR Apache-2.0' (METADATA's License-Expression).")
@click.option("--license-file", "license_files", multiple=True, type=click.Path(path_type=Path), metavar="PATH",
              help="A licence file to ship, relative to PREFIX or absolute (repeatable; default: those PREFIX "
              "installs in share/licenses/<name>/, share/doc/<name>/, COPYING*, LICENSE*, NOTICE*).")
@_provider_option
@click.option("-w", "--wheel-dir", type=click.Path(path_type=Path), default=Path("wheelhouse"), show_default=True)
@click.option("--dry-run", is_flag=True, help="Print the wheel's name and the files it would hold, and write nothing.")
@click.pass_context
def pack(ctx: click.Context, prefix: Path, name: str, version: str, libs: tuple[str, ...], abi: str,
         requires: tuple[str, ...], plat: str, summary: str, providers: tuple[str, ...], plugins: tuple[Path, ...],
         wheel_dir: Path, dry_run: bool, license_expression: str | None = None,
         license_files: tuple[Path, ...] = ()) -> None:
    """Pack the C/C++ library installed in PREFIX into a native-lib wheel."""
    from sharewheel.pack import PackOptions
    from sharewheel.pack import pack as run_pack
    from sharewheel.repair import removed_if_left_empty

    if not prefix.is_dir():
        raise SharewheelError(f"{prefix}: no such directory")
    with removed_if_left_empty(wheel_dir):  # a failed pack leaves no new -w behind
        report = run_pack(PackOptions(prefix, name, version, wheel_dir, libs, abi, requires, providers, plat, summary,
                                      plugins, dry_run, license=license_expression, license_files=license_files))
    if dry_run:
        click.echo(f"{report.output.name}: dry run, nothing written to {wheel_dir}; the wheel would hold:")
        click.echo("\n".join(f"  {path}" for path in report.files))
    elif not (ctx.obj or {}).get("quiet"):
        click.echo(report.summary())


def _repair_options(function: F) -> F:
    """The options that decide a repair, shared by repair and show (which shows that repair):
    sharewheel's own, then those of auditwheel, delocate and delvewheel (sharewheel.toolflags)."""
    for option in reversed([
        click.option("-e", "--exclude", multiple=True, metavar="PATTERN",
                     help="Neither vendor nor relink libraries matching this soname pattern (repeatable); on macOS also "
                     "any library whose path contains it (delocate's -e), on Windows ':'-separated DLL names (delvewheel's)."),
        click.option("--plat", envvar="AUDITWHEEL_PLAT", default="auto", show_default=True,
                     help="Linux: platform tag to repair to, as auditwheel's --plat (default: $AUDITWHEEL_PLAT, "
                     "which the manylinux images set, else the best auditwheel's policies allow)."),
        click.option("-L", "--lib-sdir", default=None, callback=_check_lib_sdir,
                     help="Where vendored libraries go, as in auditwheel (default .libs) and delocate (default .dylibs)."),
        click.option("--abi", "abi", multiple=True, metavar="NAME=POLICY",
                     help="Narrow provider NAME's Requires-Dist by an ABI policy (major, minor, exact or a template); "
                     "never widens it (repeatable)."),
        *(click.option(*decls, **kwargs) for _, decls, kwargs, _ in _TOOL_OPTIONS),
    ]):
        function = option(function)
    return _provider_option(function)


def _flag(help_: str, **kwargs: Any) -> dict[str, Any]:
    return {"is_flag": True, "default": False, "help": help_, **kwargs}


_A, _D, _V = ("auditwheel",), ("delocate",), ("delvewheel",)
# (parameter, declarations, click keywords, the tools whose flag it is): see sharewheel.toolflags
_TOOL_OPTIONS: list[tuple[str, tuple[str, ...], dict[str, Any], tuple[str, ...]]] = [
    ("zip_compression_level", ("-z", "--zip-compression-level"),
     {"type": click.IntRange(0, 9), "default": None, "help": "auditwheel: deflate every entry again at this level."}, _A),
    ("no_update_tags", ("--no-update-tags",),
     _flag("auditwheel: keep the wheel's platform tags (file name and WHEEL)."), _A),
    ("strip", ("--strip",), _flag("auditwheel: strip symbols from the vendored libraries and every ELF file of the wheel; "
                                  "delvewheel: strip DLLs with overlays that lack room to be name-mangled."),
     ("auditwheel", "delvewheel")),
    ("only_plat", ("--only-plat",), _flag("auditwheel: tag --plat's policy only, not also a better one."), _A),
    ("disable_isa_ext_check", ("--disable-isa-ext-check",),
     _flag("auditwheel: do not check for extended ISA compatibility (x86_64_v2, ...)."), _A),
    ("allow_pure_python_wheel", ("--allow-pure-python-wheel",),
     _flag("auditwheel: accept pure-Python wheels (sharewheel copies them unchanged anyway)."), _A),
    ("ldpaths", ("--ldpaths",), {"default": None, "metavar": "PATHS",
                                 "help": "auditwheel: ':'-separated directories to search for libraries, instead of "
                                 "the default list (AUDITWHEEL_LD_LIBRARY_PATH adds to either)."}, _A),
    ("patcher", ("--patcher",), {"type": click.Choice(["patchelf", "lief-patchelf", "none"]), "default": "patchelf",
                                 "envvar": "AUDITWHEEL_PATCHER", "help": "auditwheel: the ELF patcher."}, _A),
    ("dylibs_only", ("-d", "--dylibs-only"),
     _flag("delocate: only analyse files with known dynamic library extensions."), _D),
    ("executable_path", ("--executable-path",), {"default": None, "metavar": "PATH",
                                                 "help": "delocate: what @executable_path resolves to."}, _D),
    ("ignore_missing_dependencies", ("--ignore-missing-dependencies",),
     _flag("delocate: skip libraries that cannot be found and vendor the rest."), _D),
    ("sanitize_rpaths", ("--sanitize-rpaths/--no-sanitize-rpaths",),
     {"default": True, "help": "delocate: remove absolute and relative rpaths (default) or keep them."}, _D),
    ("check_archs", ("-k", "--check-archs"), _flag("delocate: check the architectures of the libraries depended on."), _D),
    ("require_archs", ("--require-archs",), {"default": None, "metavar": "ARCHS",
                                             "help": "delocate: architectures every binary must have (arm64,x86_64 or "
                                             "universal2; cibuildwheel's {delocate_archs})."}, _D),
    ("require_target_macos_version", ("--require-target-macos-version",),
     {"default": None, "metavar": "VERSION",
      "help": "delocate: refuse a wheel needing a newer macOS (deprecated there: set MACOSX_DEPLOYMENT_TARGET)."}, _D),
    ("add_path", ("--add-path",), {"multiple": True, "metavar": "PATHS",
                                   "help": "delvewheel: more directories to search for DLLs (os.pathsep-separated)."}, _V),
    ("include", ("--include", "--add-dll"), {"multiple": True, "metavar": "DLLS",
                                             "help": "delvewheel: vendor these DLLs even if the system has them."}, _V),
    ("no_dll", ("--no-dll",), {"multiple": True, "metavar": "DLLS",
                               "help": "delvewheel: never vendor these DLLs (delvewheel's --exclude; ':'-separated)."}, _V),
    ("ignore_existing", ("--ignore-existing", "--ignore-in-wheel"),
     _flag("delvewheel: don't search for or vendor DLLs already in the wheel."), _V),
    ("analyze_existing", ("--analyze-existing",),
     _flag("delvewheel: vendor the dependencies of DLLs already in the wheel."), _V),
    ("analyze_existing_exes", ("--analyze-existing-exes",),
     _flag("delvewheel: vendor the dependencies of EXEs in the wheel."), _V),
    ("no_mangle", ("--no-mangle",), {"multiple": True, "metavar": "DLLS",
                                     "help": "delvewheel: DLL names not to mangle (':'-separated)."}, _V),
    ("no_mangle_all", ("--no-mangle-all",), _flag("delvewheel: mangle no DLL names."), _V),
    ("with_mangle", ("--with-mangle",),
     _flag("delvewheel: with --ignore-existing, mangle the direct dependencies of DLLs in the wheel."), _V),
    ("namespace_pkg", ("--namespace-pkg",), {"multiple": True, "metavar": "PKGS",
                                             "help": "delvewheel: namespace packages (':'-separated)."}, _V),
    ("custom_patch", ("--custom-patch",), _flag("delvewheel: put the DLL search path patch where the wheel marks it."), _V),
    ("include_symbols", ("--include-symbols",), _flag("delvewheel: vendor .pdb files beside the DLLs."), _V),
    ("include_imports", ("--include-imports",), _flag("delvewheel: vendor .lib import libraries beside the DLLs."), _V),
]


def _tool_flags(ctx: click.Context, values: dict[str, Any]) -> Any:
    """The tool flags given, for sharewheel.toolflags; mutually exclusive ones refused as the tools refuse them."""
    from click.core import ParameterSource

    from sharewheel.toolflags import (
        AuditwheelFlags,
        DelocateFlags,
        DelvewheelFlags,
        ToolFlags,
        split_dlls,
        split_paths,
    )

    for a, b in (("no_mangle_all", "with_mangle"), ("namespace_pkg", "custom_patch")):
        if values.get(a) and values.get(b):
            raise click.UsageError(f"--{a.replace('_', '-')} and --{b.replace('_', '-')} cannot be given together")
    given = []
    for name, decls, _, owners in _TOOL_OPTIONS:
        if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            given.append((decls[-1].split("/")[0] if values[name] is not False else decls[-1].split("/")[-1], owners))
    archs = values["require_archs"]
    archs = tuple(a.strip() for a in archs.split(",")) if archs and "," in archs else archs
    return ToolFlags(
        linux=AuditwheelFlags(
            zip_compression_level=values["zip_compression_level"], update_tags=not values["no_update_tags"],
            strip=values["strip"], only_plat=values["only_plat"], disable_isa_ext_check=values["disable_isa_ext_check"],
            allow_pure_python_wheel=values["allow_pure_python_wheel"], ldpaths=values["ldpaths"],
            patcher=values["patcher"],
        ),
        macos=DelocateFlags(
            dylibs_only=values["dylibs_only"], executable_path=values["executable_path"],
            ignore_missing_dependencies=values["ignore_missing_dependencies"],
            sanitize_rpaths=values["sanitize_rpaths"], check_archs=values["check_archs"], require_archs=archs,
            require_target_macos_version=values["require_target_macos_version"],
        ),
        windows=DelvewheelFlags(
            add_path=tuple(map(str, split_paths(values["add_path"]))), include=split_dlls(values["include"]),
            no_dll=split_dlls(values["no_dll"]), ignore_existing=values["ignore_existing"],
            analyze_existing=values["analyze_existing"], analyze_existing_exes=values["analyze_existing_exes"],
            no_mangle=split_dlls(values["no_mangle"]), no_mangle_all=values["no_mangle_all"],
            with_mangle=values["with_mangle"], strip=values["strip"], namespace_pkg=split_dlls(values["namespace_pkg"]),
            custom_patch=values["custom_patch"], include_symbols=values["include_symbols"],
            include_imports=values["include_imports"],
        ),
        given=tuple(given),
    )


TOOL_PARAMETERS = [name for name, _, _, _ in _TOOL_OPTIONS]


def _announce(ctx: click.Context, config: Any) -> None:
    """Which file's [tool.sharewheel] applies (found by searching upwards, it must not change a
    repair unseen), on stderr unless -q; with -v what each source (flags, SHAREWHEEL_*, the
    file and its OS table) sets. Each line once per run, however many wheels it applies to."""
    settings = ctx.obj if isinstance(ctx.obj, dict) else {}
    if settings.get("quiet"):
        return
    lines = [f"sharewheel: settings from {source}: {text}" for source, text in config.sources] \
        if settings.get("verbose") else []
    if config.announcement and not any(line.startswith(config.announcement) for line in lines):
        lines.append(config.announcement)
    shown = settings.setdefault("announced", set())
    for line in lines:
        if line not in shown:
            shown.add(line)
            click.echo(line, err=True)


def _notify(settings: dict[str, Any], notices: Sequence[str]) -> None:
    """A linked provider's usage policy (sharewheel.plugin.UsagePolicy), on stderr, once per run."""
    shown = settings.setdefault("notified", set())
    for notice in notices:
        if notice not in shown:
            shown.add(notice)
            click.echo(f"sharewheel: note: {notice}", err=True)


def _options_for(paths: list[Path], flags: Any, plat: str, lib_sdir: str | None, tools: Any,
                 ctx: click.Context | None = None, **extra: Any) -> list[tuple[Path, Any]]:
    """Each wheel with its RepairOptions: flags over SHAREWHEEL_* over [tool.sharewheel], and the
    wheel's OS's table ([tool.sharewheel.linux], ...) over the main one; a flag of another OS's tool
    is said, once per wheel, not to be used for it."""
    from sharewheel.config import resolve
    from sharewheel.plan import RepairOptions

    options = []
    for path in paths:
        os_name = _wheel_os(path)
        config = resolve(flags, os_name=os_name)
        if ctx is not None:
            _announce(ctx, config)
        unused = tools.unused_for(os_name)
        if unused and os_name is not None:
            system = {"linux": "Linux", "macos": "macOS", "windows": "Windows"}[os_name]
            click.echo(f"sharewheel: {path.name}: not used for this {system} wheel: {', '.join(unused)}", err=True)
        options.append((path, RepairOptions(
            providers=config.providers, plugins=config.plugins, exclude=config.exclude, plat=plat, lib_sdir=lib_sdir,
            require_archs=tools.macos.require_archs, abi=config.abi, tools=tools, **extra,
        )))
    return options


@main.command()
@_verbosity
@click.argument("wheels", nargs=-1, required=True)
@click.option("-w", "--wheel-dir", type=click.Path(path_type=Path), default=Path("wheelhouse"), show_default=True)
@_repair_options
@click.option("--dry-run", is_flag=True, help="Print what repair would link, vendor, remove and require, and write nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print the plans as JSON (a list, one per wheel).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Repair up to N wheels at once (default: the number of CPUs).")
@click.option("--set", "as_set", is_flag=True, default=None,
              help="The wheels are one release: a library several of them would vendor is carried once, by the wheel "
              "all the others require (or by --set-provider), and linked by the others ([tool.sharewheel] set = true).")
@click.option("--set-provider", default=None, metavar="NAME",
              help="With --set: where no wheel of the set is required by all the others, pack the shared libraries "
              "as this new native-lib wheel.")
@click.pass_context
def repair(ctx: click.Context, wheels: tuple[str, ...], wheel_dir: Path, providers: tuple[str, ...],
           plugins: tuple[Path, ...], exclude: tuple[str, ...], plat: str, lib_sdir: str | None, dry_run: bool,
           as_json: bool, abi: tuple[str, ...], jobs: int | None, as_set: bool | None, set_provider: str | None,
           **tool_values: Any) -> int:
    """Link WHEELS to provider wheels instead of vendoring what those provide.

    --provider, --plugin, --exclude and --abi default to SHAREWHEEL_PROVIDERS, _PLUGINS, _EXCLUDE
    and _ABI, then to [tool.sharewheel] of the nearest pyproject.toml (see the README). Each wheel
    is repaired as if on its own; if any fails, the others are still written and the exit status is 1."""
    from sharewheel.batch import repair_all
    from sharewheel.config import Settings, abi_flags, resolve
    from sharewheel.repair import removed_if_left_empty, writable_dir

    if as_json and not dry_run:
        raise click.UsageError("--json prints a plan: give it with --dry-run")
    flags = Settings(providers or None, plugins or None, exclude or None, abi_flags(abi), as_set)
    one_release = resolve(flags).set  # a broken configuration is an error before any wheel is read (each wheel's: announced)
    settings = ctx.obj or {}
    paths = _expand(wheels)
    if set_provider is not None and not one_release:
        raise click.UsageError("--set-provider names the carrier of a set: give it with --set")
    if one_release:
        if as_json:
            raise click.UsageError("--json is not available for --set yet: give --dry-run alone")
        return _repair_set(ctx, paths, wheel_dir, flags, plat, lib_sdir, set_provider, dry_run, tool_values)
    workers = min(jobs or os.cpu_count() or 1, len(paths))
    work = _options_for(paths, flags, plat, lib_sdir, _tool_flags(ctx, tool_values), ctx, dry_run=dry_run)
    for index, (path, options) in enumerate(work):
        if workers == 1 and not settings.get("quiet") and sys.stderr.isatty() and path.is_file() \
                and path.stat().st_size >= PROGRESS_MIN_BYTES:
            work[index] = (path, replace(options, progress=_TerminalProgress()))
    status = 0
    plans = []
    with removed_if_left_empty(wheel_dir):  # a run that wrote nothing leaves no new -w behind
        if not dry_run:
            writable_dir(wheel_dir)  # one error line for all wheels, before any is read
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
            _notify(settings, report.notices)
            if as_json:
                plans.append(report.data)
                continue
            if dry_run or settings.get("verbose"):
                click.echo("\n".join(f"  {line}" for line in report.plan()), err=not dry_run)
            if dry_run or not settings.get("quiet"):
                click.echo(report.summary())
    if as_json:
        click.echo(json.dumps(plans, indent=2))
    return status


def _repair_set(ctx: click.Context, paths: list[Path], wheel_dir: Path, flags: Any, plat: str, lib_sdir: str | None,
                set_provider: str | None, dry_run: bool, tool_values: dict[str, Any]) -> int:
    """`repair --set`: the wheels repaired together (sharewheel.sets), all written or none."""
    from sharewheel.pack import check_text_options
    from sharewheel.repair import removed_if_left_empty
    from sharewheel.sets import repair_set

    if set_provider is not None:
        check_text_options(set_provider, "", flag="--set-provider")
    settings = ctx.obj or {}
    work = _options_for(paths, flags, plat, lib_sdir, _tool_flags(ctx, tool_values), ctx, dry_run=dry_run)
    with removed_if_left_empty(wheel_dir):
        reports = repair_set(work, wheel_dir, set_provider)
    for report in reports:
        _notify(settings, report.notices)
        if dry_run or settings.get("verbose"):
            click.echo("\n".join(f"  {line}" for line in report.plan()), err=not dry_run)
        if dry_run or not settings.get("quiet"):
            click.echo(report.summary())
    return 0


@main.command()
@_verbosity
@click.argument("wheel", type=click.Path(path_type=Path))
@_repair_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def show(ctx: click.Context, wheel: Path, providers: tuple[str, ...], plugins: tuple[Path, ...],
         exclude: tuple[str, ...], plat: str, lib_sdir: str | None, abi: tuple[str, ...], as_json: bool,
         **tool_values: Any) -> None:
    """Show what repair would do to WHEEL (with the same options and [tool.sharewheel] settings):
    for each binary how each needed library is satisfied, what is linked, removed, vendored and
    required, the tags, and, for a provider wheel, what it provides. A pure wheel has nothing to repair."""
    from sharewheel.config import Settings, abi_flags, resolve
    from sharewheel.show import show_wheel

    flags = Settings(providers or None, plugins or None, exclude or None, abi_flags(abi))
    resolve(flags)
    [(path, options)] = _options_for([wheel], flags, plat, lib_sdir, _tool_flags(ctx, tool_values), ctx)
    report = show_wheel(path, options)
    click.echo(json.dumps(report.as_json(), indent=2) if as_json else report.as_text())


@main.command()
@_verbosity
@click.option("--python", "interpreter", default=None, metavar="PYTHON",
              help="Audit this interpreter's sys.path (sharewheel may live apart, e.g. in pipx).")
@click.option("--path", "paths", multiple=True, type=click.Path(path_type=Path), metavar="DIR",
              help="Audit these directories instead of a sys.path (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--verify", is_flag=True,
              help="Also compare each provider's library files with the sha256 its manifest records.")
def check(interpreter: str | None, paths: tuple[Path, ...], as_json: bool, verify: bool) -> int:
    """Check an installed environment: every link recorded by repair still holds (its provider
    installed, inside the ABI policy, the file present and exporting what is imported), each
    consumer served by the provider copy its hook loads; list libraries vendored more than once,
    and warn of runtimes (OpenMP, BLAS, libstdc++) whose copies clash in one process.
    Exit status 1 if something is broken (a clash alone is not)."""
    from sharewheel.check import audit_paths, check_environment

    if interpreter is not None and paths:
        raise click.UsageError("--python and --path are mutually exclusive")
    report = check_environment(audit_paths(interpreter, paths), python=interpreter, verify=verify)
    click.echo(json.dumps(report.as_json(), indent=2) if as_json else report.as_text())
    return 0 if report.ok else 1


@main.command()
@_verbosity
@click.argument("wheelhouse", type=click.Path(path_type=Path))
@click.option("--apply", "apply_", is_flag=True,
              help="Pack each shared library as a native-lib wheel and repair every wheel to link it, into -w.")
@click.option("--provider-prefix", default=None, metavar="NAME",
              help="With --apply: the providers are named NAME-<library> (e.g. acme-libcrypto).")
@click.option("-w", "--wheel-dir", type=click.Path(path_type=Path), default=None, metavar="OUT",
              help="With --apply: where the providers and the repaired wheels go (all of them, or none).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def dedupe(wheelhouse: Path, apply_: bool, provider_prefix: str | None, wheel_dir: Path | None,
           as_json: bool) -> None:
    """Report the libraries the wheels in WHEELHOUSE vendor more than once (auditwheel, delocate
    and delvewheel copies; one library per family, ABI series and platform), in which wheels, and
    the bytes a shared provider would save; with --apply, share them. Never writes into WHEELHOUSE."""
    from sharewheel.dedupe import apply, report
    from sharewheel.repair import removed_if_left_empty

    if not apply_:
        if provider_prefix is not None or wheel_dir is not None:
            raise click.UsageError("--provider-prefix and -w name what --apply writes: give them with --apply")
        found = report(wheelhouse)
        click.echo(json.dumps(found.as_json(), indent=2) if as_json else found.as_text())
        return
    if provider_prefix is None or wheel_dir is None:
        raise click.UsageError("--apply needs --provider-prefix and -w")
    with removed_if_left_empty(wheel_dir):
        applied = apply(wheelhouse, provider_prefix, wheel_dir)
    click.echo(json.dumps(applied.as_json(), indent=2) if as_json else applied.as_text())


def _environment_options(function: F) -> F:
    """--python / --path: which environment's providers (default: the running interpreter's)."""
    function = click.option("--path", "paths", multiple=True, type=click.Path(path_type=Path), metavar="DIR",
                            help="Look in these directories instead of a sys.path (repeatable).")(function)
    return click.option("--python", "interpreter", default=None, metavar="PYTHON",
                        help="Look in this interpreter's sys.path (sharewheel may live apart, e.g. in pipx).")(function)


@main.command("pkgconfig-path")
@_verbosity
@_environment_options
def pkgconfig_path(interpreter: str | None, paths: tuple[Path, ...]) -> None:
    """Print the pkg-config directories of all installed providers, joined for PKG_CONFIG_PATH."""
    from sharewheel.buildpaths import joined
    from sharewheel.check import audit_paths

    if interpreter is not None and paths:
        raise click.UsageError("--python and --path are mutually exclusive")
    click.echo(joined(audit_paths(interpreter, paths), "pkgconfig"))


@main.command("cmake-prefix-path")
@_verbosity
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
