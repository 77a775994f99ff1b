"""One plan behind `show`, `repair --dry-run` and `repair` (issue 13, acceptance 1).

For each case — exclude patterns from flags and from [tool.sharewheel], an ABI override, a failed
proof, unvendoring, a plugin provider, and each OS — `show --json`, `repair --dry-run --json` and
the real repair's output (its manifest, METADATA, WHEEL tags and entries) must agree on every
link, removal, vendored name, requirement and tag; a refused repair is refused by all three with
the same words.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Consumer, manifest_of, one, requires_dist, sharewheel
from test_hostile import make_wheel

pytest_plugins = ["macho_support", "pe_support"]


@dataclass(frozen=True)
class Case:
    wheel: Path
    args: tuple[str | Path, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


def _plans(case: Case, tmp: Path) -> tuple[dict, dict, Path]:
    """show --json, repair --dry-run --json (its one plan) and the real repair's output."""
    shown = json.loads(sharewheel("show", case.wheel, *case.args, "--json", env=case.env, cwd=case.cwd).stdout)
    [dry] = json.loads(sharewheel("repair", case.wheel, "-w", tmp / "dry", *case.args, "--dry-run", "--json",
                                  env=case.env, cwd=case.cwd).stdout)
    assert not (tmp / "dry").exists()  # a dry run writes nothing, not even -w
    sharewheel("repair", case.wheel, "-w", tmp / "out", *case.args, env=case.env, cwd=case.cwd)
    return shown, dry, one(list((tmp / "out").glob("*.whl")))


def _wheel_facts(wheel: Path) -> dict:
    """What the real repair wrote, in the plan's terms."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    try:
        manifest = manifest_of(wheel)
    except StopIteration:  # nothing linked: no manifest, the copies are those in the vendoring directories
        manifest = {"links": [], "vendored": sorted(n for n in names if n.split("/")[0].endswith(".libs")
                                                    or "/.dylibs/" in f"/{n}")}
    platforms = sorted(wheel.name.removesuffix(".whl").rsplit("-", 1)[1].split("."))
    return {"links": manifest["links"], "vendored": manifest["vendored"], "platforms": platforms,
            "requirements": sorted(str(r) for r in requires_dist(wheel)), "names": names, "output": wheel.name}


def assert_one_plan(case: Case, tmp: Path) -> dict:
    shown, dry, output = _plans(case, tmp)
    written = _wheel_facts(output)
    for plan in (shown, dry):
        assert plan["output"] == written["output"]
        assert sorted(plan["platforms"]) == written["platforms"]
        assert plan["links"] == written["links"]
        assert plan["vendored"] == written["vendored"]
        assert all(v in written["names"] for v in plan["vendored"])
        assert sorted(plan["requirements"]) == [r for r in written["requirements"]
                                                if any(r.startswith(link["provider"]) for link in plan["links"])] \
            or sorted(plan["requirements"]) == written["requirements"]
        assert not any(removed["path"] in written["names"] for removed in plan["removed"])
    assert {k: v for k, v in shown.items() if k != "binaries"} == {k: v for k, v in dry.items() if k != "binaries"}
    return shown


def _with_extra(consumer: Consumer) -> dict[str, str]:
    return {"LD_LIBRARY_PATH": str(consumer.extra_lib_dir)}


CASES: dict[str, Callable[[pytest.FixtureRequest, Path], Case]] = {
    "linux": lambda r, t: Case(r.getfixturevalue("consumer").input,
                               ("--provider", r.getfixturevalue("consumer").provider),
                               _with_extra(r.getfixturevalue("consumer"))),
    "linux-exclude-flag": lambda r, t: Case(r.getfixturevalue("consumer").input,
                                            ("--provider", r.getfixturevalue("consumer").provider,
                                             "--exclude", "libextra*")),
    "linux-abi-override": lambda r, t: Case(r.getfixturevalue("consumer").input,
                                            ("--provider", r.getfixturevalue("consumer").provider,
                                             "--abi", "acme-native=minor"),
                                            _with_extra(r.getfixturevalue("consumer"))),
}


def _config_case(request: pytest.FixtureRequest, tmp: Path) -> Case:
    """[tool.sharewheel] in the project: the provider is excluded, so libacme is neither linked
    nor vendored (and libextra is vendored as usual)."""
    consumer: Consumer = request.getfixturevalue("consumer")
    project = tmp / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        f'[tool.sharewheel]\nproviders = ["{consumer.provider}"]\nexclude = ["libacme*"]\n')
    return Case(consumer.input, (), _with_extra(consumer), cwd=project)


def _plugin_case(request: pytest.FixtureRequest, tmp: Path) -> Case:
    from test_plugins_linux import OPENBLAS

    return Case(request.getfixturevalue("blas_consumer"), ("--provider", request.getfixturevalue("pypi_wheel")(OPENBLAS)))


def _macos_case(request: pytest.FixtureRequest, tmp: Path) -> Case:
    case = request.getfixturevalue("mac_case")("arm64")
    return Case(case.input, ("--provider", case.provider, "-L", ".dylibs"),
                {"DYLD_LIBRARY_PATH": str(case.extra.parent)})


def _windows_case(request: pytest.FixtureRequest, tmp: Path) -> Case:
    case = request.getfixturevalue("win_case")
    return Case(case.input, ("--provider", case.provider),
                {"PATH": f"{case.extra_dir}{os.pathsep}{os.environ['PATH']}"})


CASES |= {"linux-config-exclude": _config_case, "plugin": _plugin_case,
          "macos": _macos_case, "windows": _windows_case}

from test_macos import mac_case  # noqa: E402,F401 - fixtures of the other OS tests, shared here
from test_plugin_config import blas_consumer  # noqa: E402,F401
from test_unvendor import audited  # noqa: E402,F401
from test_windows import win_case  # noqa: E402,F401


@pytest.mark.parametrize("name", sorted(CASES))
def test_show_dry_run_and_repair_agree(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    plan = assert_one_plan(CASES[name](request, tmp_path), tmp_path)
    if name == "linux-exclude-flag":
        assert plan["vendored"] == [] and len(plan["links"]) == 1  # libextra left alone
    if name == "linux-config-exclude":
        assert plan["links"] == [] and [v.split("/")[-1].split("-")[0] for v in plan["vendored"]] == ["libextra"]
    if name == "linux-abi-override":
        assert "==3.1.*" in plan["requirements"][0]
    if name == "plugin":
        assert plan["links"][0]["provider"] == "scipy-openblas64"


def test_unvendoring_plan_agrees(audited, tmp_path: Path) -> None:
    """An auditwheel-repaired wheel whose copy a provider replaces (both ways auditwheel names it)."""
    plan = assert_one_plan(Case(audited.wheel, ("--provider", audited.provider)), tmp_path)
    assert [r["path"] for r in plan["removed"]] == [audited.copy] and plan["links"]
    assert plan["removed"][0]["provider"] == "acme-native"


def test_a_failed_proof_is_refused_alike(audited, tmp_path: Path) -> None:
    """A provider lacking a symbol the binary imports (a libacme.so.3 without acme_add packed as
    acme-native 3.1.4, so only the proof can tell): show, --dry-run and repair refuse it alike."""
    from conftest import build_c_library
    from test_unvendor import LACKS_ADD

    prefix = build_c_library(tmp_path / "prefix", "acme", "libacme.so.3", LACKS_ADD)
    sharewheel("pack", prefix, "--name", "acme-native", "--version", "3.1.4", "-w", tmp_path / "provider")
    provider = one(list((tmp_path / "provider").glob("*.whl")))
    lines = []
    for command in (["show", audited.wheel, "--provider", provider],
                    ["repair", audited.wheel, "-w", tmp_path / "dry", "--provider", provider, "--dry-run"],
                    ["repair", audited.wheel, "-w", tmp_path / "out", "--provider", provider]):
        result = sharewheel(*command, check=False)
        assert result.returncode == 1, result
        [line] = result.stderr.strip().splitlines()
        lines.append(line)
    assert len(set(lines)) == 1 and "cannot stand in" in lines[0], lines
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_show_of_a_pure_wheel_says_there_is_nothing_to_repair(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "any", {}, dist="acme_docs", python="py3-none")
    result = sharewheel("show", wheel)
    assert result.stdout.strip() == f"{wheel.name}: pure Python (platform any): nothing to repair"
    data = json.loads(sharewheel("show", wheel, "--json").stdout)
    assert data["pure"] is True and data["links"] == [] and data["platforms"] == ["any"]


def test_show_of_a_provider_wheel_says_what_it_provides(consumer: Consumer) -> None:
    data = json.loads(sharewheel("show", consumer.provider, "--json").stdout)["provides"]
    unique = manifest_of(consumer.provider)["provides"]["libraries"][0]["unique_name"]
    assert data["distribution"] == "acme-native" and data["version"] == "3.1.4"
    assert data["abi"] == "major" and data["series"] == "3" and data["requirement"] == "acme-native==3.*,>=3.1.4"
    assert [(lib["name"], lib["unique_name"]) for lib in data["libraries"]] == [("libacme.so.3", unique)]
    text = sharewheel("show", consumer.provider).stdout
    assert f"provides libacme.so.3 as {unique}: acme-native 3.1.4, ABI policy major (series 3" in text
