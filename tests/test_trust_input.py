"""What a wheel or a flag says is not trusted (issue 14): each class of input that once made
sharewheel cost quadratic time, cut a file, overwrite one of the wheel's own, miss a broken
binary or write outside its tree, as a real crafted file or flag through the real command line.

Refusals are checked by test_hostile's Sandbox (test_cli_errors' contract: exit status 1, exactly
one `sharewheel: error:` line, no traceback, the inputs byte-for-byte unchanged, `-w` and TMPDIR
empty) and nothing else under the sandbox changed. What must keep working (markers inside a
string, a GNU ld script named .so, a PEP 508 name with dots and capitals) is repaired or packed,
installed with pip and imported in a fresh interpreter.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import BuildEnv, Consumer, RunEnv, build_acme, one, pip_target, repair, sharewheel
from test_hostile import Sandbox, edit_wheel, member_named, read_entries

from sharewheel.hooks import BLOCK_END, BLOCK_START, init_block, insert_block, remove_block

PACKAGE = "acme_consumer"
#: An error line echoes at most a short piece of what the wheel says (wheelfile.shown).
MAX_LINE = 600


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path / "sandbox")


@pytest.fixture
def elf_env(consumer: Consumer) -> dict[str, str]:
    """libextra can be found, so a missing library never hides the defect under test."""
    return {"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refuse(sandbox: Sandbox, wheel: Path, command: str, words: tuple[str, ...], *, consumer: Consumer,
           env: dict[str, str]) -> str:
    """`repair` or `show` of `wheel` (with the consumer's provider) refused by one short line
    naming the wheel and `words`; the wheel's sha256 unchanged."""
    before = sha256(wheel)
    args = ["repair", wheel, "-w", sandbox.out] if command == "repair" else ["show", wheel]
    line = sandbox.refuse(*args, "--provider", consumer.provider, names=(wheel.name, *words),
                          inputs=[wheel, consumer.provider], env=env)
    assert len(line) < MAX_LINE, line
    assert sha256(wheel) == before
    return line


# --- cost linear in the input: names, depth --------------------------------------------------


DEEP = 32_000


def deep_name_wheel(wheel: Path, where: Path) -> Path:
    """`wheel` with one more entry, a name 32,000 directories deep (64 KB): the wheel stays
    about 128 KB, but a set of every parent of every name would hold 32,000 strings of up to
    64 KB (a gigabyte, and quadratic time to hash them)."""
    name = f"{wheel.name.split('-')[0]}/" + "a/" * DEEP + "x.py"
    path = edit_wheel(wheel, where, add={name: b"x = 1\n"})
    assert path.stat().st_size < wheel.stat().st_size + 200_000
    return path


def finishes(args: list[str | Path], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The command ends (within a generous timeout: a quadratic reading of the deep name takes
    hours) with status 1 and one short line; no timing is asserted."""
    result = subprocess.run([sys.executable, "-m", "sharewheel", *map(str, args)], check=False, capture_output=True,
                            text=True, timeout=300, env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result
    assert len(result.stderr.splitlines()) == 1 and len(result.stderr) < MAX_LINE, result.stderr[:2000]
    return result


@pytest.mark.parametrize("command", ["repair", "show"])
def test_deep_entry_name(command: str, consumer: Consumer, sandbox: Sandbox, elf_env: dict[str, str]) -> None:
    wheel = deep_name_wheel(consumer.input, sandbox.inputs)
    finishes([command, wheel, "--provider", consumer.provider, *(["-w", sandbox.root / "x"] if command == "repair"
                                                               else [])], elf_env)
    line = refuse(sandbox, wheel, command, ("more than the 1024",), consumer=consumer, env=elf_env)
    assert "a/" * 100 not in line  # the name is cut, not echoed
    assert f"{2 * DEEP + len(PACKAGE) + 5} characters" in line


def test_deep_entry_name_in_a_provider_directory(consumer: Consumer, sandbox: Sandbox,
                                                 elf_env: dict[str, str]) -> None:
    """The same entry in a provider wheel that only lies in a `--provider DIR`."""
    providers = sandbox.inputs / "providers"
    hostile = deep_name_wheel(consumer.provider, providers)
    wheel = edit_wheel(consumer.input, sandbox.inputs)
    before = sha256(hostile)
    finishes(["repair", wheel, "-w", sandbox.root / "x", "--provider", providers], elf_env)
    line = sandbox.refuse("repair", wheel, "-w", sandbox.out, "--provider", providers,
                          names=(hostile.name, "more than the 1024"), inputs=[wheel, hostile], env=elf_env)
    assert len(line) < MAX_LINE and "a/" * 100 not in line
    assert sha256(hostile) == before


@pytest.mark.parametrize("name,words", [
    (f"{PACKAGE}/{'n' * 60_000}.py", ("60017 bytes", "more than the 1024")),  # one part, 60 KB
    (f"{PACKAGE}/" + "d/" * 200 + "x.py", ("202 levels deep", "more than the 128")),  # short, but deep
    (f"{PACKAGE}/{'p' * 300}/x.py", ("longer than 255 bytes",)),  # a part no file system takes
], ids=["name-too-long", "too-deep", "part-too-long"])
def test_entry_name_limits(name: str, words: tuple[str, ...], consumer: Consumer, sandbox: Sandbox,
                           elf_env: dict[str, str]) -> None:
    wheel = edit_wheel(consumer.input, sandbox.inputs, add={name: b"x = 1\n"})
    line = refuse(sandbox, wheel, "repair", words, consumer=consumer, env=elf_env)
    assert name not in line


# --- one file once installed: duplicates by normalisation and '.' parts ------------------------


CAFE = f"{PACKAGE}/caf\u00e9.py"


@pytest.mark.parametrize("first,second,words", [
    (CAFE, unicodedata.normalize("NFD", CAFE), ("Unicode normalisation",)),
    (f"{PACKAGE}/x.py", f"{PACKAGE}/./x.py", ("'.' or empty parts",)),
    (f"{PACKAGE}/x.py", f"{PACKAGE}//x.py", ("'.' or empty parts",)),
    (f"{PACKAGE}/Data.txt", f"{PACKAGE}/data.TXT", ("case",)),
], ids=["nfc-nfd", "dot-segment", "empty-segment", "case"])
@pytest.mark.parametrize("command", ["repair", "show"])
def test_names_equal_once_installed(first: str, second: str, words: tuple[str, ...], command: str,
                                    consumer: Consumer, sandbox: Sandbox, elf_env: dict[str, str]) -> None:
    assert first != second
    wheel = edit_wheel(consumer.input, sandbox.inputs, add={first: b"one = 1\n", second: b"two = 2\n"})
    assert len(read_entries(wheel)) == len(read_entries(consumer.input)) + 2  # two entries in the zip
    refuse(sandbox, wheel, command, words, consumer=consumer, env=elf_env)


# --- files the hook writes are never the wheel's own ----------------------------------------------


def top_level_extension(wheel: Path, where: Path, add: dict[str, bytes]) -> Path:
    """`wheel` with its extension module moved out of the package to the top level (where the
    hook is a shim `_core.py` and a table `_sharewheel_providers_acme_consumer.py`), plus `add`."""
    so = member_named(wheel, (".so",))
    entries = read_entries(wheel)
    top = so.split("/")[-1]
    return edit_wheel(wheel, where, drop=[so], add={top: entries[so], **add})


OWN = b'"""The wheel\'s own module, not sharewheel\'s."""\nOWN = True\n'


@pytest.mark.parametrize("make,words", [
    (lambda w, d: edit_wheel(w, d, add={f"{PACKAGE}/_SHAREWHEEL_PROVIDERS.py": OWN}),
     ("_SHAREWHEEL_PROVIDERS.py", "case", "table of providers")),
    (lambda w, d: edit_wheel(w, d, add={f"{PACKAGE}/_sharewheel_providers.py": OWN}),
     (f"{PACKAGE}/_sharewheel_providers.py", "own file")),
    (lambda w, d: edit_wheel(w, d, add={f"{PACKAGE}/_sharewheel_providers/__init__.py": OWN}),
     ("_sharewheel_providers/__init__.py", "import name")),
    (lambda w, d: edit_wheel(w, d, add={f"{PACKAGE}/_sharewheel_runtime.py": OWN}),
     (f"{PACKAGE}/_sharewheel_runtime.py", "runtime")),
    (lambda w, d: top_level_extension(w, d, {"_core.py": OWN}), ("_core.py", "shim")),
    (lambda w, d: top_level_extension(w, d, {"_sharewheel_providers_acme_consumer.py": OWN}),
     ("_sharewheel_providers_acme_consumer.py", "own file")),
], ids=["table-other-case", "table-own", "table-a-package", "runtime-own", "shim-own", "top-level-table-own"])
@pytest.mark.parametrize("command", ["repair", "show"])
def test_hook_file_of_the_wheels_own(make: Callable[[Path, Path], Path], words: tuple[str, ...], command: str,
                                     consumer: Consumer, sandbox: Sandbox, elf_env: dict[str, str]) -> None:
    """Refused, where repair used to replace the wheel's file (or, for a file repair does not
    unpack, ship both); show says so too (it plans and applies what repair would)."""
    wheel = make(consumer.input, sandbox.inputs)
    refuse(sandbox, wheel, command, words, consumer=consumer, env=elf_env)


MARKERS = f'''"""acme_consumer: its own text about sharewheel's markers."""
from __future__ import annotations

TEXT = """
{BLOCK_START}
kept, a string
{BLOCK_END}
"""
START_ONLY = "{BLOCK_START}"  # and no end after it
from acme_consumer._core import add, series, version
'''


def test_markers_inside_a_string_are_a_string(consumer: Consumer, build_env: BuildEnv, run_env: RunEnv,
                                              tmp_path: Path, elf_env: dict[str, str]) -> None:
    """The hook's marker comments inside strings of `__init__.py` are not a block: repair (twice)
    inserts one block and cuts nothing; pip installs the wheel and it imports."""
    init = f"{PACKAGE}/__init__.py"
    wheel = edit_wheel(consumer.input, tmp_path / "in", replace={init: MARKERS.encode()})
    once = repair(wheel, tmp_path / "once", "--provider", consumer.provider, env=elf_env)
    twice = repair(once, tmp_path / "twice", "--provider", consumer.provider, env=elf_env)
    sources = [read_entries(w)[init].decode() for w in (once, twice)]
    assert sources[0] == sources[1]
    assert sources[0] == insert_block(MARKERS, init_block("from . import _sharewheel_providers  # noqa: F401"))
    assert sources[0].count(BLOCK_START) == 3 and "kept, a string" in sources[0]
    site_a = pip_target(build_env, consumer.provider, tmp_path / "A")
    site_b = pip_target(build_env, twice, tmp_path / "B")
    code = f"""
    import acme_consumer
    assert {BLOCK_START!r} in acme_consumer.TEXT and {BLOCK_END!r} in acme_consumer.TEXT
    print(acme_consumer.add(1, 2), acme_consumer.START_ONLY == {BLOCK_START!r})
    """
    assert run_env.run(code, [site_b, site_a]).stdout.split() == ["3", "True"]


@pytest.mark.parametrize("source", [
    f'X = """\n{BLOCK_START}\ncut me not\n{BLOCK_END}\n"""\n',
    f'X = f"""\n{{1}}\n{BLOCK_START}\n"""\ny = 1\nZ = """\n{BLOCK_END}\n"""\n',
    f"call(\n{BLOCK_START}\n    1,\n{BLOCK_END}\n)\n",  # comments inside brackets: not where a block goes
    f"'''{BLOCK_START}'''\n{BLOCK_END}\nx = 1\n",
], ids=["both-in-a-string", "start-and-end-in-two-strings", "inside-brackets", "start-in-docstring"])
def test_remove_block_reads_tokens_not_text(source: str) -> None:
    assert remove_block(source) == source
    block = init_block("from . import _sharewheel_providers  # noqa: F401")
    hooked = insert_block(source, block)
    assert remove_block(hooked) == source
    assert insert_block(hooked, block) == hooked


def test_source_that_is_not_python_is_refused_not_cut() -> None:
    with pytest.raises(ValueError, match="not valid Python"):
        insert_block(f'{BLOCK_START}\nx = """never closed\n{BLOCK_END}\n', init_block("import x"))


# --- a file named like a binary must be one -------------------------------------------------------


@pytest.mark.parametrize("command", ["repair", "show"])
def test_garbage_named_like_the_extension_module(command: str, consumer: Consumer, sandbox: Sandbox,
                                                 elf_env: dict[str, str]) -> None:
    so = member_named(consumer.input, (".so",))
    wheel = edit_wheel(consumer.input, sandbox.inputs, replace={so: bytes(range(256)) * 64})
    refuse(sandbox, wheel, command, (so, "not an ELF file"), consumer=consumer, env=elf_env)


LD_SCRIPT = b"/* GNU ld script\n   -lfoo links the real library */\nOUTPUT_FORMAT(elf64-x86-64)\nINPUT(libfoo.so.1)\n"


def test_gnu_ld_script_named_so_is_not_a_binary(consumer: Consumer, tmp_path: Path,
                                                elf_env: dict[str, str]) -> None:
    """A GNU ld script named libfoo.so (as glibc's libc.so, and providers' link aids) is text,
    neither a binary nor an error: the wheel repairs and the script is carried as it is."""
    script = f"{PACKAGE}/lib/libfoo.so"
    wheel = edit_wheel(consumer.input, tmp_path / "in", add={script: LD_SCRIPT})
    output = repair(wheel, tmp_path / "out", "--provider", consumer.provider, env=elf_env)
    assert read_entries(output)[script] == LD_SCRIPT


# --- flags: paths inside the tree, one-line text, PEP 508 names -----------------------------------


@pytest.mark.parametrize("value,words", [
    ("../../escaped", ("'..'",)),
    (".libs/../../../escaped", ("'..'",)),
    ("ABSOLUTE", ("absolute",)),
    ("", ("empty",)),
], ids=["dot-dot", "dot-dot-inside", "absolute", "empty"])
@pytest.mark.parametrize("command", ["repair", "show"])
def test_lib_sdir_outside_the_tree(value: str, words: tuple[str, ...], command: str, consumer: Consumer,
                                   sandbox: Sandbox, elf_env: dict[str, str]) -> None:
    """-L .. (or an absolute path) once put vendored libraries outside the wheel's tree; the
    sandbox snapshot would see them (an absolute -L points into it)."""
    value = str(sandbox.root / "escaped") if value == "ABSOLUTE" else value
    wheel = edit_wheel(consumer.input, sandbox.inputs)
    args = ["repair", wheel, "-w", sandbox.out] if command == "repair" else ["show", wheel]
    sandbox.refuse(*args, "--provider", consumer.provider, "-L", value, names=("-L", repr(value), *words),
                   inputs=[wheel, consumer.provider], env=elf_env)


@pytest.fixture(scope="module")
def acme_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_acme(tmp_path_factory.mktemp("trust-prefix") / "prefix", "3.1.4")


@pytest.mark.parametrize("command", ["repair", "show", "pack"])
def test_empty_provider(command: str, consumer: Consumer, sandbox: Sandbox, acme_prefix: Path,
                        elf_env: dict[str, str]) -> None:
    """`--provider ""` was the current directory, silently (the sandbox's cwd holds a wheel)."""
    wheel = edit_wheel(consumer.input, sandbox.inputs)
    sandbox.cwd.mkdir(parents=True)
    here = Path(shutil.copy(consumer.provider, sandbox.cwd))
    args: list[str | Path] = {
        "repair": ["repair", wheel, "-w", sandbox.out],
        "show": ["show", wheel],
        "pack": ["pack", acme_prefix, "--name", "acme-other", "--version", "3.1.4", "-w", sandbox.out],
    }[command]
    sandbox.refuse(*args, "--provider", "", names=("--provider", "''", "empty"), inputs=[wheel, here, acme_prefix],
                   env=elf_env)


@pytest.mark.parametrize("option,value,words", [
    ("--summary", "A library\nName: evil", ("--summary", "line break")),
    ("--summary", "A library\rRequires-Dist: evil", ("--summary", "line break")),
    ("--name", "Acme.Native_", ("--name", "'Acme.Native_'", "PEP 508")),
    ("--name", "-acme", ("--name", "PEP 508")),
    ("--name", "acme native", ("--name", "PEP 508")),
    ("--name", "acme\u212anative", ("--name", "PEP 508")),  # KELVIN SIGN: 'k' to a case-blind match
], ids=["summary-newline", "summary-carriage-return", "name-trailing-underscore", "name-leading-dash",
        "name-space", "name-non-ascii"])
def test_pack_text_flags(option: str, value: str, words: tuple[str, ...], acme_prefix: Path,
                         sandbox: Sandbox) -> None:
    name = value if option == "--name" else "acme-native"
    args: list[str | Path] = ["pack", acme_prefix, "--name", name, "--version", "3.1.4", "-w", sandbox.out]
    if option == "--summary":
        args += ["--summary", value]
    sandbox.refuse(*args, names=words, inputs=[acme_prefix])


def test_pack_accepts_any_pep_508_name(acme_prefix: Path, build_env: BuildEnv, run_env: RunEnv,
                                       tmp_path: Path) -> None:
    """Dots, capitals and a one-line summary are fine: normalised in the file name, installable."""
    out = tmp_path / "out"
    sharewheel("pack", acme_prefix, "--name", "Acme.Native", "--version", "3.1.4", "--summary",
               "libacme, shared", "-w", out)
    wheel = one(list(out.glob("*.whl")))
    assert wheel.name.startswith("acme_native-3.1.4-")
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read("acme_native-3.1.4.dist-info/METADATA").decode()
    assert "\nSummary: libacme, shared\n" in metadata
    site = pip_target(build_env, wheel, tmp_path / "site")
    assert run_env.run("import acme_native; print(acme_native.LIBRARIES)", [site]).stdout.strip()
