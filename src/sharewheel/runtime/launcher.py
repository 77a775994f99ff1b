"""sharewheel's launcher: runs an executable linked to native-lib providers with those providers
findable by the OS's loader, for that process alone. Copied verbatim into wheels; runs without sharewheel."""

# An extension module gets its providers preloaded by the hook, in the process that imports it. An
# executable is a process of its own: nothing is preloaded into it, and when its providers live in
# another sys.path entry (pip install --target, PYTHONPATH, a .pth file) no RPATH reaches them. So
# the copy of each provider is chosen exactly as the hook chooses it (the loader's candidates(),
# preload_copies(), import_finds(): the loader module is passed in, this one only adds the
# directories), and the directories go to the child only:
#
# - Linux: the binary's own ELF interpreter (PT_INTERP, glibc's or musl's) runs it with
#   `--library-path`, which neither loader passes on to the programs the child starts
#   (LD_LIBRARY_PATH is used when the binary names no interpreter that exists);
# - macOS: DYLD_LIBRARY_PATH (repair names providers @rpath/<unique name>; dyld tries the leaf name
#   in DYLD_LIBRARY_PATH before any rpath, so no stale rpath can win);
# - Windows: PATH (searched for the DLLs an .exe imports; AddDllDirectory cannot reach another process).
#
# A console_scripts entry point (repair's generated _sharewheel_launch_<dist> module) calls
# main(); a package that starts an executable it ships calls environ_for() and passes the result
# to subprocess: a copy, os.environ itself is never changed.

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from types import ModuleType

    Record = tuple[str, str, str, tuple[str, ...], str, tuple[str, ...]]  # see the loader's Record

LAUNCHER_MODULE = "_sharewheel_launcher"  # this module's name in a package of a wheel
_MAX_INIT = 1 << 20  # a provider's __init__.py is read for its table of providers; never a large file


def path_variable(platform: str) -> str:
    """The variable the loader of `platform` (a sys.platform value) searches for needed libraries."""
    if platform == "win32":
        return "PATH"
    if platform == "darwin":
        return "DYLD_LIBRARY_PATH"
    return "LD_LIBRARY_PATH"


def _required(package_dir: str) -> "list[Record]":
    """The PROVIDERS table of the sharewheel provider copy in `package_dir` (those its libraries link
    to), read from its __init__.py as the literal sharewheel writes, never by importing it."""
    import ast

    try:
        with open(os.path.join(package_dir, "__init__.py"), encoding="utf-8") as f:
            text = "\n" + f.read(_MAX_INIT)
    except (OSError, UnicodeDecodeError):
        return []
    at = text.find("\nPROVIDERS = ")
    if at < 0:
        return []
    try:
        table = ast.literal_eval(text[at + 13:].partition("\n\n")[0])
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return []
    return [tuple(r) for r in table if isinstance(r, tuple) and len(r) == 6] if isinstance(table, tuple) else []


def library_dirs(runtime: "ModuleType", providers: "Iterable[Record]", needed_by: str,
                 entries: "Sequence[str] | None" = None, here: "str | None" = None) -> "list[str]":
    """The directories of the providers in `providers` (records of a table) and of the providers
    those link to, as the hook would load them from `entries` (default sys.path).
    `runtime`: the loader module. ImportError (the loader's `missing`) for a provider not found."""
    entries = list(sys.path if entries is None else entries)
    if here is None:
        try:
            here = os.getcwd()  # never a provider from the current directory, as the hook
        except OSError:  # removed: nothing is found there either
            here = None
    dirs: list[str] = []
    seen = set()
    pending = [(record, needed_by) for record in providers]
    while pending:
        (package, distribution, requirement, files, strategy, _), by = pending.pop(0)
        if (distribution, files) in seen:
            continue
        seen.add((distribution, files))
        found: list[str] = []
        if strategy == "preload":
            paths: list[str] | None = next(runtime.preload_copies(files, entries, here), None)
            found = [os.path.dirname(p) for p in paths or ()]
        elif strategy == "import":
            package_dir: str | None = runtime.import_finds(package, entries, here)
            for root, _, names in os.walk(package_dir) if package_dir else ():
                if any(os.path.basename(f) in names for f in files):
                    found.append(root)
        else:
            package_dir = next(runtime.candidates(package, files, entries, requirement, here), None)
            if package_dir is not None:
                found = [os.path.join(package_dir, "lib")]
                pending += [(record, distribution) for record in _required(package_dir)]
        if not found:
            error: ImportError = runtime.missing(distribution, requirement, by, None)
            raise error
        dirs += [d for d in found if d not in dirs]
    return dirs


def environ_with(dirs: "Sequence[str]", environ: "Mapping[str, str] | None" = None,
                 platform: "str | None" = None) -> "dict[str, str]":
    """A copy of `environ` (default os.environ) with `dirs` first in the loader's search variable."""
    env = dict(os.environ if environ is None else environ)
    platform = sys.platform if platform is None else platform
    separator = ";" if platform == "win32" else ":"
    name = path_variable(platform)
    if platform == "win32":  # names of the environment are case-insensitive there: Path is PATH
        name = next((key for key in env if key.upper() == "PATH"), name)
    env[name] = separator.join([*dirs, *([env[name]] if env.get(name) else [])])
    return env


def environ_for(environ: "Mapping[str, str] | None" = None, *, table: "ModuleType | None" = None,
                entries: "Sequence[str] | None" = None, platform: "str | None" = None) -> "dict[str, str]":
    """A copy of `environ` (default os.environ) for starting an executable of this package that
    is linked to its providers: subprocess.run([exe, ...], env=environ_for()). `table`: the module
    with the providers (default this package's _sharewheel_providers, which its __init__ imported)."""
    if table is None:
        if not __package__:
            raise RuntimeError("environ_for() outside a package needs the table module")
        import importlib

        table = importlib.import_module(__package__ + "._sharewheel_providers")
    dirs = library_dirs(table._runtime, table.PROVIDERS, table.NEEDED_BY, entries)
    return environ_with(dirs, environ, platform)


def _takes_argv0(loader: str) -> bool:
    """Whether the ELF interpreter `loader` knows --argv0 (glibc >= 2.33, musl >= 1.1.25): its
    option names are strings in the file."""
    try:
        with open(loader, "rb") as f:
            return b"argv0" in f.read(8 << 20)
    except OSError:
        return False


def command_for(runtime: "ModuleType", binary: str, args: "Sequence[str]", dirs: "Sequence[str]", *,
                argv0: "str | None" = None, environ: "Mapping[str, str] | None" = None,
                platform: "str | None" = None) -> "tuple[list[str], dict[str, str]]":
    """The argv (its first item the file to run) and environment that run `binary` with `args`
    and `dirs` searched first for the libraries it needs, the calling environment (default
    os.environ) otherwise unchanged. `argv0`: the program's argv[0] where the ELF interpreter can
    set it (default the binary's path). `runtime`: the loader module (its ELF interpreter reader)."""
    platform = sys.platform if platform is None else platform
    env = dict(os.environ if environ is None else environ)
    if platform.startswith("linux"):
        loader = runtime.interpreter(binary)
        if loader and os.path.isfile(loader):
            search = [*dirs, *([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else [])]
            named = ["--argv0", argv0] if argv0 and _takes_argv0(loader) else []
            return [loader, "--library-path", ":".join(search), *named, binary, *args], env
    return [binary, *args], environ_with(dirs, env, platform)


def main(runtime: "ModuleType", command: str, binary: str, providers: "Sequence[Record]", needed_by: str,
         module_file: str) -> None:
    """Run `command` (a console_scripts entry point): the executable `binary` (relative to the
    directory of `module_file`, the generated module) with this process's arguments, stdin,
    stdout and exit status. On POSIX the launcher becomes the program (exec)."""
    path = os.path.join(os.path.dirname(os.path.realpath(module_file)), *binary.split("/"))
    try:
        dirs = library_dirs(runtime, providers, needed_by)
    except ImportError as e:
        sys.stderr.write(f"{command}: {e}\n")
        raise SystemExit(1) from None
    name = sys.argv[0] or command  # what the program sees as its name: the command's, not the file's
    argv, env = command_for(runtime, path, sys.argv[1:], dirs, argv0=name)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        if sys.platform == "win32":  # no exec there: a child, its exit status passed on
            import subprocess

            raise SystemExit(subprocess.call(argv, env=env))
        os.execve(argv[0], [name, *argv[1:]] if argv[0] == path else argv, env)
    except OSError as e:
        sys.stderr.write(f"{command}: cannot run {path}: {e}\n")
        raise SystemExit(1) from None
