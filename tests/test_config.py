"""[tool.sharewheel] in the consumer's pyproject.toml, SHAREWHEEL_* variables and flags.

The acceptance case: a consumer project with `[tool.sharewheel]` is repaired by the bare
`sharewheel repair -w OUT WHEEL` from its directory, exactly as with the same flags; every
configuration mistake is one error line naming the key and the file. ABI overrides only
narrow the provider's own requirement.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    BuildEnv,
    Consumer,
    build_acme,
    build_consumer,
    consumer_project,
    manifest_of,
    one,
    requires_dist,
    sharewheel,
    unpack,
)
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from test_cli_errors import assert_cli_error

from sharewheel.config import Settings, find_pyproject, from_environment, read_pyproject, resolve


def write_project(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(textwrap.dedent(text))
    return root


def with_providers(project: Path, *wheels: Path, name: str = "providers") -> Path:
    """A directory of provider wheels inside the project."""
    directory = project / name
    directory.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        shutil.copy(wheel, directory)
    return directory


def repair_in(project: Path, wheel: Path, out: Path, *args: str | Path, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> tuple[Path, str]:
    """The bare command line of a cibuildwheel repair step, run in the project; → (wheel, stdout)."""
    result = sharewheel("repair", "-w", out, wheel, *args, env=env, cwd=cwd or project)
    return one(list(out.glob("*.whl"))), result.stdout


def linked_version(wheel: Path) -> str:
    [link] = manifest_of(wheel)["links"]
    assert link["provider"] == "acme-native"
    return link["version"]


def requirement(wheel: Path) -> SpecifierSet:
    [req] = requires_dist(wheel)
    assert req.name == "acme-native"
    return req.specifier


# --- the acceptance case --------------------------------------------------------------------


def test_bare_repair_uses_the_projects_providers(consumer: Consumer, tmp_path: Path) -> None:
    project = write_project(tmp_path / "acme-consumer", """\
        [project]
        name = "acme-consumer"
        version = "1.0.0"
        [tool.sharewheel]
        providers = ["providers"]
        """)
    with_providers(project, consumer.provider)
    below = project / "src" / "acme_consumer"  # found from the current directory upwards
    below.mkdir(parents=True)
    env = {"LD_LIBRARY_PATH": str(consumer.extra_lib_dir), "SOURCE_DATE_EPOCH": "1700000000"}

    configured, stdout = repair_in(project, consumer.input, tmp_path / "configured", env=env, cwd=below)
    flagged, _ = repair_in(tmp_path, consumer.input, tmp_path / "flagged", "--provider", consumer.provider, env=env)
    assert configured.name == consumer.output.name
    assert configured.read_bytes() == flagged.read_bytes()  # the configuration is the flag, exactly
    assert stdout.startswith(f"{configured.name}: linked libacme-sw")
    assert linked_version(configured) == "3.1.4"

    # the same command where no pyproject.toml configures a provider fails: the file did it
    bare = write_project(tmp_path / "other", "[project]\nname = 'other'\nversion = '1'\n")
    assert_cli_error(tmp_path / "e", "repair", "-w", tmp_path / "e-out", consumer.input, cwd=bare, env=env,
                     names=("libacme-sw", "no provider"), inputs=[consumer.input], out_dir=tmp_path / "e-out")


def test_an_os_table_replaces_the_main_tables_keys_for_wheels_of_that_os(consumer: Consumer, packed,
                                                                        tmp_path: Path) -> None:
    """One repair-wheel-command for every platform, providers differing by OS: the Linux wheel gets
    [tool.sharewheel.linux]'s providers (3.2.0 here), the macOS table's (not installed here) are
    never looked at, and what the Linux table leaves unset comes from the main table."""
    project = write_project(tmp_path / "p", """\
        [tool.sharewheel]
        providers = ["providers-3.1"]
        exclude = ["libextra.so.1"]
        [tool.sharewheel.linux]
        providers = ["providers-3.2"]
        [tool.sharewheel.macos]
        providers = ["a-provider-only-macos-has"]
        """)
    with_providers(project, consumer.provider, name="providers-3.1")
    with_providers(project, packed("3.2.0"), name="providers-3.2")
    out, stdout = repair_in(project, consumer.input, tmp_path / "out")
    assert linked_version(out) == "3.2.0"
    assert "vendored nothing" in stdout  # the main table's exclude still applies: libextra is left alone
    assert read_pyproject(project / "pyproject.toml", "macos").providers == ("a-provider-only-macos-has",)
    assert read_pyproject(project / "pyproject.toml", "windows").providers == (project / "providers-3.1",)


def test_show_uses_the_projects_providers(consumer: Consumer, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", '[tool.sharewheel]\nproviders = ["providers"]\n')
    with_providers(project, consumer.provider)
    shown = json.loads(sharewheel("show", consumer.input, "--json", cwd=project).stdout)
    states = {n["name"]: n for needs in shown["binaries"].values() for n in needs}
    acme = one([n for name, n in states.items() if name.startswith("libacme-sw")])
    assert acme["state"] == "provided" and acme["provider"] == "acme-native" and acme["version"] == "3.1.4"


# --- which file, relative paths, lists in variables ------------------------------------------


def test_the_nearest_pyproject_wins_even_without_a_table(tmp_path: Path) -> None:
    outer = write_project(tmp_path / "outer", '[tool.sharewheel]\nproviders = ["acme-native"]\nexclude = ["libx*"]\n')
    inner = write_project(outer / "vendor" / "inner", "[project]\nname = 'inner'\nversion = '1'\n")
    deeper = outer / "a" / "b"
    deeper.mkdir(parents=True)
    assert find_pyproject(deeper) == outer / "pyproject.toml"
    assert resolve(Settings(), cwd=deeper, environ={}).providers == ("acme-native",)
    assert find_pyproject(inner) == inner / "pyproject.toml"
    assert resolve(Settings(), cwd=inner, environ={}).providers == ()  # the parent's never leak in
    assert resolve(Settings(), cwd=inner, environ={}).source == inner / "pyproject.toml"


def test_paths_are_relative_to_the_file_and_names_stay_names(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", """\
        [tool.sharewheel]
        providers = ["wheelhouse", "../shared/acme.whl", "acme-native", "scipy_openblas64"]
        plugins = ["tools/foo.toml"]
        """)
    (project / "wheelhouse").mkdir()
    (project / "tools").mkdir()
    (project / "tools" / "foo.toml").write_text("")  # a plugin file must exist (it is read whole)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "acme.whl").write_bytes(b"")
    settings = read_pyproject(project / "pyproject.toml")
    assert settings.providers == (project / "wheelhouse", project / "../shared/acme.whl", "acme-native",
                                  "scipy_openblas64")
    assert settings.plugins == (project / "tools/foo.toml",)
    assert settings.exclude is None and settings.abi is None  # unset: left to other sources


def test_environment_lists_are_pathsep_separated(tmp_path: Path) -> None:
    sep = os.pathsep
    settings = from_environment({
        "SHAREWHEEL_PROVIDERS": f"dir with space{sep} acme-native {sep}{sep}",
        "SHAREWHEEL_EXCLUDE": "",
        "SHAREWHEEL_ABI": f"Acme_Native=minor{sep}scipy-openblas64=>={{version}},<{{major}}.99",
    })
    assert settings.providers == ("dir with space", "acme-native")
    assert settings.exclude == ()  # set and empty: an empty list, which overrides the file
    assert settings.plugins is None
    assert settings.abi is not None
    assert {k: v.template for k, v in settings.abi.items()} == {
        "acme-native": ">={version},=={major}.{minor}.*", "scipy-openblas64": ">={version},<{major}.99"}
    file_settings = write_project(tmp_path / "p", '[tool.sharewheel]\nexclude = ["libx*"]\nproviders = ["a"]\n')
    config = resolve(Settings(providers=("flag",)), cwd=file_settings, environ={"SHAREWHEEL_EXCLUDE": ""})
    assert config.providers == ("flag",) and config.exclude == ()


# --- precedence: flags over variables over the file; each replaces ---------------------------


def test_precedence_flags_over_environment_over_file(consumer: Consumer, packed: Callable[..., Path],
                                                     tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", """\
        [tool.sharewheel]
        providers = ["providers-3.1"]
        exclude = ["libextra*"]
        """)
    with_providers(project, packed("3.1.4"), name="providers-3.1")
    newer = with_providers(tmp_path, packed("3.2.0"), name="providers-3.2")
    env = {"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}

    out, stdout = repair_in(project, consumer.input, tmp_path / "file", env=env)
    assert linked_version(out) == "3.1.4" and "vendored nothing" in stdout  # the file's exclude
    assert requirement(out) == SpecifierSet(">=3.1.4,==3.*")

    env_over = {**env, "SHAREWHEEL_PROVIDERS": str(newer), "SHAREWHEEL_EXCLUDE": ""}
    out, stdout = repair_in(project, consumer.input, tmp_path / "env", env=env_over)
    assert linked_version(out) == "3.2.0" and "vendored libextra-" in stdout
    assert requirement(out) == SpecifierSet(">=3.2.0,==3.*")

    out, stdout = repair_in(project, consumer.input, tmp_path / "flags", "--provider", "providers-3.1",
                            "--exclude", "libnothing*", env={**env_over, "SHAREWHEEL_EXCLUDE": "libextra*"})
    assert linked_version(out) == "3.1.4"  # the flag's path is relative to the current directory
    assert "vendored libextra-" in stdout  # --exclude replaced SHAREWHEEL_EXCLUDE, not added to it


# --- ABI overrides narrow, never widen -------------------------------------------------------

RELEASES = ["3.0.0", "3.1.3", "3.1.4", "3.1.9", "3.2.0", "3.9.1", "4.0.0"]


def admitted(specifier: SpecifierSet) -> list[str]:
    return [v for v in RELEASES if specifier.contains(Version(v))]


def test_abi_override_narrows_the_requirement(consumer: Consumer, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", """\
        [tool.sharewheel]
        providers = ["providers"]
        [tool.sharewheel.abi]
        Acme_Native = "minor"
        """)
    with_providers(project, consumer.provider)
    env = {"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}
    own = SpecifierSet(">=3.1.4,==3.*")  # acme-native's own policy, major

    out, _ = repair_in(project, consumer.input, tmp_path / "minor", env=env)
    assert requirement(out) == own & SpecifierSet(">=3.1.4,==3.1.*")
    assert admitted(requirement(out)) == ["3.1.4", "3.1.9"]
    [link] = manifest_of(out)["links"]
    assert SpecifierSet(link["requirement"].removeprefix("acme-native")) == requirement(out)
    hook = (unpack(out, tmp_path / "tree") / "acme_consumer" / "_sharewheel_providers.py").read_text()
    assert str(one(requires_dist(out))) in hook  # the pip command a missing provider's error shows

    out, _ = repair_in(project, consumer.input, tmp_path / "exact", env={**env, "SHAREWHEEL_ABI": "acme-native=exact"})
    assert admitted(requirement(out)) == ["3.1.4"]

    # looser than the provider's policy: nothing more is admitted
    out, _ = repair_in(project, consumer.input, tmp_path / "loose", "--abi", "acme-native=>={version}",
                       env={**env, "SHAREWHEEL_ABI": "acme-native=exact"})
    assert requirement(out) == own and admitted(own) == ["3.1.4", "3.1.9", "3.2.0", "3.9.1"]

    out, _ = repair_in(project, consumer.input, tmp_path / "none", env={**env, "SHAREWHEEL_ABI": ""})
    assert requirement(out) == own  # the variable, set and empty, replaced the file's table

    # an override for a provider this wheel does not link changes nothing; one that names no
    # provider found at all (a typo?) is said on stderr
    result = sharewheel("repair", "-w", tmp_path / "other", consumer.input, "--abi", "acme-natve=exact",
                        env=env, cwd=project)
    assert requirement(one(list((tmp_path / "other").glob("*.whl")))) == own
    assert result.stderr.splitlines() == [  # the file whose settings apply is always said (-q: not)
        f"sharewheel: settings from {project / 'pyproject.toml'} [tool.sharewheel]",
        ("sharewheel: registry: the ABI override for acme-natve names no provider found (given with --provider or "
         "installed)"),
    ]


def test_abi_override_never_widens_a_minor_provider(packed: Callable[..., Path], build_env: BuildEnv,
                                                    extra_prefix: Path, tmp_path: Path) -> None:
    """A consumer linked against the system's libacme.so.3; its provider promises only 3.1.x."""
    provider = packed("3.1.4", "minor")
    acme = build_acme(tmp_path / "acme", "3.1.4")
    wheel = build_consumer(build_env, consumer_project(tmp_path, "acme_consumer", flags="system"), tmp_path,
                           acme_prefix=acme)
    project = write_project(tmp_path / "p", """\
        [tool.sharewheel]
        providers = ["providers"]
        abi = {acme-native = "major"}
        """)
    with_providers(project, provider)
    out, _ = repair_in(project, wheel, tmp_path / "out")
    assert requirement(out) == SpecifierSet(">=3.1.4,==3.1.*") & SpecifierSet(">=3.1.4,==3.*")
    assert admitted(requirement(out)) == ["3.1.4", "3.1.9"]  # not 3.2.0, which "major" alone admits


def test_abi_override_that_excludes_the_linked_release(consumer: Consumer, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", '[tool.sharewheel]\nproviders = ["providers"]\n'
                                            '[tool.sharewheel.abi]\nacme-native = "<{major}"\n')
    with_providers(project, consumer.provider)
    out = tmp_path / "out"  # (-q: the error alone, without the line saying which settings apply)
    line = assert_cli_error(tmp_path / "e", "-q", "repair", "-w", out, consumer.input, cwd=project,
                            env={"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)},
                            names=(consumer.input.name, "acme-native", "<{major}", "3.1.4"),
                            inputs=[consumer.input], out_dir=out)
    assert "excludes 3.1.4" in line


# --- mistakes: one line naming the key and the file ------------------------------------------

BAD_CONFIGS = {
    "unknown key": ('[tool.sharewheel]\nprovider = ["acme-native"]\n', ("'provider'", "unknown key")),
    "providers a string": ('[tool.sharewheel]\nproviders = "acme-native"\n', ("providers", "a string")),
    "exclude holds a number": ("[tool.sharewheel]\nexclude = [1]\n", ("exclude", "an integer")),
    "plugins holds a table": ("[tool.sharewheel]\nplugins = [{a = 1}]\n", ("plugins", "a table")),
    "empty provider": ('[tool.sharewheel]\nproviders = [""]\n', ("providers", "empty")),
    "missing provider path": ('[tool.sharewheel]\nproviders = ["./wheelhouse"]\n', ("providers", "wheelhouse")),
    "missing plugin file": ('[tool.sharewheel]\nplugins = ["tools/foo.toml"]\n', ("plugins", "tools/foo.toml",
                                                                               "no such file")),
    "plugin a device": ('[tool.sharewheel]\nplugins = ["/dev/zero"]\n', ("plugins", "/dev/zero", "a character device")),
    "plugin a directory": ('[tool.sharewheel]\nplugins = ["."]\n', ("plugins", "a directory")),
    "abi a string": ('[tool.sharewheel]\nabi = "minor"\n', ("abi", "a string")),
    "abi policy a number": ("[tool.sharewheel.abi]\nacme-native = 3\n", ("[tool.sharewheel.abi] acme-native",)),
    "abi policy invalid": ('[tool.sharewheel.abi]\nacme-native = "minr"\n', ("acme-native", "'minr'")),
    "abi unknown placeholder": ('[tool.sharewheel.abi]\nacme-native = ">={major}.{patch}"\n', ("acme-native", "{patch}")),
    "abi key not a name": ('[tool.sharewheel.abi]\n"acme native!" = "major"\n', ("'acme native!'",)),
    "abi name twice": ('[tool.sharewheel.abi]\nacme-native = "major"\nAcme_Native = "minor"\n', ("Acme_Native", "twice")),
    "table not a table": ("[tool]\nsharewheel = 1\n", ("[tool.sharewheel]", "an integer")),
    "unknown key in an OS table": ('[tool.sharewheel.macos]\nprovider = ["x"]\n', ("[tool.sharewheel.macos]", "'provider'")),
    "OS table not a table": ('[tool.sharewheel]\nwindows = "acme-native"\n', ("[tool.sharewheel.windows]", "a string")),
    "OS table within an OS table": ('[tool.sharewheel.linux.macos]\nproviders = []\n', ("[tool.sharewheel.linux]", "'macos'")),
    "abi policy invalid in an OS table": ('[tool.sharewheel.linux.abi]\nacme-native = "minr"\n',
                                          ("[tool.sharewheel.linux.abi] acme-native", "'minr'")),
    "invalid TOML": ("[tool.sharewheel]\nproviders = [\n", ("invalid TOML",)),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_config_mistakes_are_one_line(case: str, consumer: Consumer, tmp_path: Path) -> None:
    text, names = BAD_CONFIGS[case]
    project = write_project(tmp_path / "p", text)
    out = tmp_path / "out"
    pyproject = str(project / "pyproject.toml")
    assert_cli_error(tmp_path / "repair", "repair", "-w", out, consumer.input, cwd=project, names=(pyproject, *names),
                     inputs=[consumer.input, project], out_dir=out)
    assert_cli_error(tmp_path / "show", "show", consumer.input, cwd=project, names=(pyproject, *names),
                     inputs=[consumer.input, project])


@pytest.mark.parametrize(("env", "args", "names"), [
    ({"SHAREWHEEL_ABI": "acme-native"}, (), ("SHAREWHEEL_ABI", "NAME=POLICY")),
    ({"SHAREWHEEL_ABI": "acme-native={nope}"}, (), ("SHAREWHEEL_ABI acme-native", "{nope}")),
    ({}, ("--abi", "acme-native"), ("--abi acme-native", "NAME=POLICY")),
    ({}, ("--abi", "acme-native=sideways"), ("--abi acme-native", "'sideways'")),
], ids=["env-no-equals", "env-bad-policy", "flag-no-equals", "flag-bad-policy"])
def test_bad_variables_and_flags_are_one_line(env: dict[str, str], args: tuple[str, ...], names: tuple[str, ...],
                                              consumer: Consumer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_cli_error(tmp_path, "repair", "-w", out, consumer.input, *args, env=env, names=names,
                     inputs=[consumer.input], out_dir=out)
