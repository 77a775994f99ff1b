"""What sharewheel trusts (issue 14): manifests, configuration files and plugins.

A manifest is the word of whoever made the wheel, a pyproject.toml found by searching upwards
may be someone else's, and a plugin is code. Each test here is one way of abusing that, through
the real command line: a provider wheel or installed distribution whose sharewheel.json lies,
a consumer's own earlier manifest that does, JSON nested until the parser recurses too deeply,
SOURCE_DATE_EPOCH past what a zip stores, a pyproject.toml in a directory another user controls,
a plugin that is /dev/zero, and a directory `python -m sharewheel` runs in that declares a
plugin. Refusals keep test_cli_errors' contract (one `sharewheel: error:` line, exit 1, inputs
unchanged, nothing in -w), checked by test_hostile's sandbox (nothing written anywhere else).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import BuildEnv, Consumer, manifest_of, one, pip_target, sharewheel
from test_cli_errors import assert_cli_error
from test_hostile import Sandbox, edit_wheel

from sharewheel.config import MAX_CONFIG_SIZE, find_pyproject

ERROR = "sharewheel: error: "
NESTED = b"[" * 200_000 + b"]" * 200_000  # json recurses once per level: RecursionError, not a value


@pytest.fixture
def env(consumer: Consumer) -> dict[str, str]:
    """libextra can be found, so a missing-library error never hides the one under test."""
    return {"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}


def manifest_member(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        return one([n for n in zf.namelist() if n.endswith(".dist-info/sharewheel.json")])


def lying(wheel: Path, where: Path, edit: Callable[[dict], None] | None = None, raw: bytes | None = None) -> Path:
    """`wheel` with its sharewheel.json edited (or replaced by `raw`), RECORD regenerated, so the
    manifest is the wheel's only defect."""
    data = manifest_of(wheel)
    if edit is not None:
        edit(data)
    text = raw if raw is not None else json.dumps(data, indent=2).encode()
    return edit_wheel(wheel, where, replace={manifest_member(wheel): text})


def provides(**fields: str) -> Callable[[dict], None]:
    return lambda manifest: manifest["provides"].update(fields)


def library(**fields: str) -> Callable[[dict], None]:
    return lambda manifest: manifest["provides"]["libraries"][0].update(fields)


# --- a provider's manifest speaks for its own wheel, in valid names and versions ----------------

# (the edit, what the error line names); the packed provider is acme-native 3.1.4
PROVIDER_LIES: dict[str, tuple[Callable[[dict], None], tuple[str, ...]]] = {
    "another distribution": (provides(distribution="numpy"), ("'numpy'", "acme")),
    "a direct URL": (provides(distribution="acme-native @ https://example.invalid/acme.whl#"),
                     ("not a distribution name",)),
    "a lower version": (provides(version="3.1.3"), ("'3.1.3'", "3.1.4")),
    "a marker for a version": (provides(version="3.1.4; os_name == 'nt'"), ("not a version",)),
    "a marker for a name": (provides(distribution="acme-native; python_version < '4'"), ("not a distribution name",)),
    "an invalid abi": (provides(abi="nonsense"), ("abi", "'nonsense'")),
    "a missing library": (library(path="acme_native/lib/libgone.so", unique_name="libgone.so"),
                          ("acme_native/lib/libgone.so",)),
    "a directory for a library": (library(path="acme_native/lib", unique_name="lib"), ("acme_native/lib",)),
}


@pytest.mark.parametrize("case", PROVIDER_LIES)
def test_lying_provider_wheel_is_refused(case: str, consumer: Consumer, tmp_path: Path, env: dict[str, str]) -> None:
    edit, names = PROVIDER_LIES[case]
    box = Sandbox(tmp_path / "sandbox")
    box.inputs.mkdir(parents=True)
    wheel = Path(shutil.copy(consumer.input, box.inputs))
    provider = lying(consumer.provider, box.inputs / "providers", edit)
    line = box.refuse("repair", wheel, "-w", box.out, "--provider", provider, names=(provider.name, *names),
                      inputs=[wheel, provider], env=env)
    assert "sharewheel.json" in line or "manifest" in line


@pytest.mark.parametrize("case", [c for c in PROVIDER_LIES if c not in ("a direct URL", "a marker for a name")])
def test_lying_manifest_of_the_wheel_repaired_is_refused(case: str, consumer: Consumer, tmp_path: Path) -> None:
    """A provider wheel given to repair (an earlier pack's manifest is kept and rewritten): what it
    says it provides must be this wheel and its files."""
    edit, names = PROVIDER_LIES[case]
    box = Sandbox(tmp_path / "sandbox")
    wheel = lying(consumer.provider, box.inputs, edit)
    line = box.refuse("repair", wheel, "-w", box.out, names=(wheel.name, "sharewheel.json", *names), inputs=[wheel])
    if case == "a directory for a library":
        assert "a directory" in line


CONSUMER_LIES: dict[str, tuple[Callable[[dict], None] | None, bytes | None, tuple[str, ...]]] = {
    "vendored outside the tree": (lambda m: m.update(vendored=["../../evil.so"]), None, ("'../../evil.so'",)),
    "vendored absolute": (lambda m: m.update(vendored=["/etc/passwd"]), None, ("'/etc/passwd'",)),
    "a link's binary outside": (lambda m: m["links"][0].update(binary="../x.so"), None, ("'../x.so'",)),
    "nested JSON": (None, NESTED, ("nested too deeply",)),
}


@pytest.mark.parametrize("case", CONSUMER_LIES)
def test_lying_manifest_of_a_repaired_consumer_is_refused(case: str, consumer: Consumer, tmp_path: Path,
                                                           env: dict[str, str]) -> None:
    """Repairing an already repaired wheel again reads the manifest the first repair left."""
    edit, raw, names = CONSUMER_LIES[case]
    box = Sandbox(tmp_path / "sandbox")
    wheel = lying(consumer.output, box.inputs, edit, raw)
    box.refuse("repair", wheel, "-w", box.out, "--provider", consumer.provider,
               names=(wheel.name, "sharewheel.json", *names), inputs=[wheel], env=env)


def test_nested_json_in_a_provider_wheel(consumer: Consumer, tmp_path: Path, env: dict[str, str]) -> None:
    box = Sandbox(tmp_path / "sandbox")
    box.inputs.mkdir(parents=True)
    wheel = Path(shutil.copy(consumer.input, box.inputs))
    provider = lying(consumer.provider, box.inputs / "providers", raw=NESTED)
    box.refuse("repair", wheel, "-w", box.out, "--provider", provider,
               names=(provider.name, "sharewheel.json", "nested too deeply"), inputs=[wheel, provider], env=env)


# --- an installed provider: its manifest against its METADATA, its files on disk ----------------


@pytest.fixture
def installed(consumer: Consumer, build_env: BuildEnv, tmp_path: Path) -> Path:
    """acme-native 3.1.4 installed by pip into a directory of its own (then put on PYTHONPATH)."""
    return pip_target(build_env, consumer.provider, tmp_path / "site")


INSTALLED_LIES: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "a lower version": (lambda site: _edit_installed(site, provides(version="3.1.3")), ("'3.1.3'", "3.1.4")),
    "another distribution": (lambda site: _edit_installed(site, provides(distribution="numpy")), ("'numpy'",)),
    "nested JSON": (lambda site: _manifest_path(site).write_bytes(NESTED), ("nested too deeply",)),
    "METADATA not a version": (lambda site: _edit_metadata(site, "Version: 3.1.4", "Version: 3.1.4 @ https://x#"),
                               ("METADATA Version",)),
    "a provided file missing": (lambda site: _library_path(site).unlink(), ("not installed", "missing")),
    "a provided file a directory": (lambda site: (_library_path(site).unlink(), _library_path(site).mkdir()),
                                    ("not installed", "a directory")),
    "a manifest that is a FIFO": (lambda site: (_manifest_path(site).unlink(), os.mkfifo(_manifest_path(site))),
                                  ("a FIFO",)),
}


def _manifest_path(site: Path) -> Path:
    return one(list(site.glob("acme_native-*.dist-info"))) / "sharewheel.json"


def _library_path(site: Path) -> Path:
    return site / json.loads(_manifest_path(site).read_text())["provides"]["libraries"][0]["path"]


def _edit_metadata(site: Path, old: str, new: str) -> None:
    metadata = _manifest_path(site).with_name("METADATA")
    text = metadata.read_text()
    assert old in text
    metadata.write_text(text.replace(old, new))


def _edit_installed(site: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(_manifest_path(site).read_text())
    edit(data)
    _manifest_path(site).write_text(json.dumps(data))


@pytest.mark.parametrize("case", INSTALLED_LIES)
def test_lying_installed_provider_is_refused(case: str, installed: Path, consumer: Consumer, tmp_path: Path,
                                             env: dict[str, str]) -> None:
    change, names = INSTALLED_LIES[case]
    change(installed)
    box = Sandbox(tmp_path / "sandbox")
    box.inputs.mkdir(parents=True)
    wheel = Path(shutil.copy(consumer.input, box.inputs))
    box.refuse("repair", wheel, "-w", box.out, "--provider", "acme-native", names=(str(installed), *names),
               inputs=[wheel, installed], env={**env, "PYTHONPATH": str(installed)})


def test_source_date_epoch_out_of_range(consumer: Consumer, tmp_path: Path, env: dict[str, str]) -> None:
    box = Sandbox(tmp_path / "sandbox")
    box.inputs.mkdir(parents=True)
    wheel = Path(shutil.copy(consumer.input, box.inputs))
    box.refuse("repair", wheel, "-w", box.out, "--provider", consumer.provider,
               names=("SOURCE_DATE_EPOCH", "99999999999999"), inputs=[wheel],
               env={**env, "SOURCE_DATE_EPOCH": "99999999999999"})


# --- the configuration file: the project's own, said, and small ---------------------------------

# a [tool.sharewheel] that breaks any command it applies to: whether it was used shows
BROKEN_TABLE = '[tool.sharewheel]\nplugins = ["no-such-plugin.toml"]\n'


def show(consumer: Consumer, cwd: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    return sharewheel(*flags, "show", consumer.input, "--provider", consumer.provider, env=env, cwd=cwd, check=False)


def test_the_settings_used_are_said(consumer: Consumer, tmp_path: Path, env: dict[str, str]) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[tool.sharewheel]\nexclude = ["libnothing.so.*"]\n')
    result = show(consumer, project / "src", env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"sharewheel: settings from {project / 'pyproject.toml'} [tool.sharewheel]"]
    quiet = show(consumer, project / "src", env, "-q")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n')  # no table: nothing to say
    assert show(consumer, project / "src", env).stderr == ""


def test_pyproject_in_a_world_writable_parent_is_not_used(consumer: Consumer, tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    shared = tmp_path / "shared"  # as /tmp: anyone could have put the pyproject.toml there
    (shared / "checkout").mkdir(parents=True)
    (shared / "pyproject.toml").write_text(BROKEN_TABLE)
    shared.chmod(0o777)
    assert find_pyproject(shared / "checkout") is None
    result = show(consumer, shared / "checkout", env)
    assert result.returncode == 0 and "settings from" not in result.stderr, result.stderr

    shared.chmod(0o755)  # the control: once only its owner can write there, it is the project's
    assert find_pyproject(shared / "checkout") == shared / "pyproject.toml"
    line = assert_cli_error(tmp_path / "e", "show", consumer.input, cwd=shared / "checkout", env=env,
                            names=("no-such-plugin.toml",))
    assert str(shared / "pyproject.toml") in line


def test_pyproject_the_start_directory_shares_with_others(consumer: Consumer, tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    """Run in a world-writable directory: its pyproject.toml counts only if it is yours (or root's)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a non-root user cannot create a file owned by another user to test with")
    shared = tmp_path / "drop"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "pyproject.toml").write_text(BROKEN_TABLE)
    assert find_pyproject(shared) == shared / "pyproject.toml"  # root's own file
    os.chown(shared / "pyproject.toml", 65534, 65534)  # nobody's
    assert find_pyproject(shared) is None
    result = show(consumer, shared, env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        (f"sharewheel: config: ignoring {shared / 'pyproject.toml'}: writable by other users, and the file is "
         "another user's"),
    ]


def test_pyproject_in_a_parent_owned_by_another_user_is_not_used(consumer: Consumer, tmp_path: Path,
                                                                 env: dict[str, str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: a non-root user cannot chown a directory to another user (the rule is the "
                    "same function as for a world-writable one, tested above)")
    other = tmp_path / "other"
    (other / "mine").mkdir(parents=True)
    (other / "pyproject.toml").write_text(BROKEN_TABLE)
    os.chown(other, 65534, 65534)
    assert find_pyproject(other / "mine") is None
    result = show(consumer, other / "mine", env)
    assert result.returncode == 0 and "settings from" not in result.stderr, result.stderr
    os.chown(other, 0, 0)  # the control: root's directory is trusted
    assert find_pyproject(other / "mine") == other / "pyproject.toml"


def run_bounded(args: list[str | Path], cwd: Path, env: dict[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The CLI, which must finish (a read of /dev/zero would not) and fail with one error line."""
    result = subprocess.run([sys.executable, "-m", "sharewheel", *map(str, args)], check=False, cwd=cwd,
                            text=True,
                            capture_output=True, env={**os.environ, **(env or {})}, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert line.startswith(ERROR) and "Traceback" not in result.stderr
    return result


@pytest.mark.parametrize("how", ["pyproject", "flag", "variable"])
@pytest.mark.parametrize("plugin", ["/dev/zero", "fifo", "huge"])
def test_a_plugin_file_is_read_only_if_small_and_regular(how: str, plugin: str, consumer: Consumer, tmp_path: Path,
                                                         env: dict[str, str]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    if plugin == "fifo":
        os.mkfifo(project / "fifo")  # opening it would block until someone writes
    elif plugin == "huge":
        (project / "huge").write_bytes(b"#" * (MAX_CONFIG_SIZE + 1))
    path = plugin if plugin.startswith("/") else str(project / plugin)
    out = tmp_path / "out"
    args: list[str | Path] = ["repair", consumer.input, "-w", out, "--provider", consumer.provider]
    extra = dict(env)
    if how == "pyproject":
        (project / "pyproject.toml").write_text(f'[tool.sharewheel]\nplugins = ["{path}"]\n')
    elif how == "flag":
        args += ["--plugin", path]
    else:
        extra["SHAREWHEEL_PLUGINS"] = path
    line = run_bounded(args, project, extra).stderr
    assert path in line or plugin in line
    assert {"/dev/zero": "character device", "fifo": "FIFO", "huge": "larger than"}[plugin] in line
    assert not out.exists() or not list(out.iterdir())


@pytest.mark.parametrize("what", ["pyproject", "plugin"])
def test_deeply_nested_toml(what: str, consumer: Consumer, tmp_path: Path, env: dict[str, str]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    nested = "x = " + "[" * 100_000 + "]" * 100_000 + "\n"
    if what == "pyproject":
        (project / "pyproject.toml").write_text("[tool.sharewheel]\n" + nested)
        name = "pyproject.toml"
    else:
        (project / "nested.toml").write_text(nested)
        name = "nested.toml"
    args = ["repair", consumer.input, "-w", tmp_path / "out", "--provider", consumer.provider,
            *(["--plugin", project / name] if what == "plugin" else [])]
    line = run_bounded(args, project, env).stderr
    assert name in line and "nested too deeply" in line


# --- plugins are code: imported only from sharewheel's environment, and only when needed --------

EVIL_PLUGIN = """\
import pathlib
pathlib.Path({marker!r}).write_text("imported")
PLUGIN = dict(name="evil", distributions=["*"], abi="major", load="import", libraries={{"linux": ["x/*.so"]}})
"""


def plugin_distribution(site: Path, name: str, module: str, body: str) -> None:
    """A distribution `name` 1.0 installed in `site` whose `sharewheel.plugins` entry point is `module:PLUGIN`."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(body)
    dist_info = site / f"{module}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[sharewheel.plugins]\n{name} = {module}:PLUGIN\n")


def test_python_m_in_an_untrusted_directory_imports_nothing_from_it(consumer: Consumer, tmp_path: Path,
                                                                     env: dict[str, str]) -> None:
    """`python -m sharewheel` puts the current directory first on sys.path: a directory being
    audited or repaired must supply neither modules nor plugin entry points nor providers."""
    marker = tmp_path / "IMPORTED"
    untrusted = tmp_path / "download"
    plugin_distribution(untrusted, "evil-plugin", "evil_plugin", EVIL_PLUGIN.format(marker=str(marker)))
    (untrusted / "click.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('click')\n")
    for args in (["check"], ["check", "--path", untrusted], ["pkgconfig-path"],
                 ["show", consumer.input, "--provider", consumer.provider]):
        result = sharewheel(*args, cwd=untrusted, env=env, check=False)
        assert result.returncode == (1 if args == ["pkgconfig-path"] else 0), result  # (1: no provider found)
        assert not marker.exists(), (args, marker.read_text())
    line = assert_cli_error(tmp_path / "e", "show", consumer.input, "--provider", "evil-plugin", cwd=untrusted,
                            env=env, names=("--provider evil-plugin", "no such file, directory or installed"))
    assert line and not marker.exists()

    # the control: the same distribution installed (on PYTHONPATH) is a plugin, imported when a
    # repair looks up a distribution (it matches any: its mapping is no literal)
    trusted = tmp_path / "site"
    plugin_distribution(trusted, "evil-plugin", "evil_plugin", EVIL_PLUGIN.format(marker=str(marker)))
    sharewheel("show", consumer.input, "--provider", "evil-plugin", cwd=tmp_path,
               env={**env, "PYTHONPATH": str(trusted)}, check=False)
    assert marker.read_text() == "imported"


LITERAL_PLUGIN = """\
import pathlib
pathlib.Path({marker!r}).write_text("imported")
PLUGIN = {{"name": "libfoo", "distributions": ["libfoo-native"], "abi": "major", "load": "import",
          "libraries": {{"linux": ["libfoo_native/lib/libfoo.so.*"]}}}}
"""


def installed_dist(site: Path, name: str, files: dict[str, str]) -> None:
    """A distribution without a manifest (pip's RECORD lists its files), as pip leaves it."""
    dist_info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist_info / "WHEEL").write_text(f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: py3-none-linux_{os.uname().machine}\n")
    for path, text in files.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_text(text)
    (dist_info / "RECORD").write_text("".join(f"{p},,\n" for p in [*files, f"{dist_info.name}/RECORD"]))


def test_entry_point_plugins_are_never_imported_by_audits(consumer: Consumer, tmp_path: Path) -> None:
    """`check` and `pkgconfig-path` import no entry-point plugin: one whose module sets its mapping
    as a literal is read from the source (and used), any other left out."""
    marker = tmp_path / "IMPORTED"
    site = tmp_path / "site"
    plugin_distribution(site, "libfoo-sharewheel", "libfoo_sharewheel", LITERAL_PLUGIN.format(marker=str(marker)))
    env = {"PYTHONPATH": str(site)}
    audited = tmp_path / "audited"
    installed_dist(audited, "other-native", {"other_native/lib/pkgconfig/other.pc": "Name: other\n",
                                             "other_native/__init__.py": ""})
    assert sharewheel("check", "--path", audited, cwd=tmp_path, env=env).returncode == 0
    sharewheel("pkgconfig-path", cwd=tmp_path, env={**env, "PYTHONPATH": f"{site}{os.pathsep}{audited}"},
               check=False)
    sharewheel("pkgconfig-path", "--path", audited, cwd=tmp_path, env=env, check=False)
    assert not marker.exists()

    # a distribution it matches: the plugin, read from its source, describes it (no such library)
    installed_dist(audited, "libfoo-native", {"libfoo_native/__init__.py": ""})
    result = sharewheel("check", "--path", audited, cwd=tmp_path, env=env, check=False)
    assert "plugin libfoo (entry point libfoo-sharewheel = libfoo_sharewheel:PLUGIN)" in result.stderr + result.stdout
    assert not marker.exists()

    # the control: a repair that looks libfoo-native up does import it
    sharewheel("show", consumer.input, "--provider", "libfoo-native", cwd=tmp_path,
               env={"PYTHONPATH": f"{site}{os.pathsep}{audited}"}, check=False)
    assert marker.read_text() == "imported"
